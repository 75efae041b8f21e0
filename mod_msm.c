/* mod_msm: a mod_session storage provider keeping sessions in memcached.
 *
 * This file is the glue between mod_session and the store in src/: the
 * session hooks, the cookie, locking around a request, and the hooks that
 * set up shared memory and connections. See README for the directives. */
#include "mod_msm.h"

#include "apr_shm.h"
#include "apr_strings.h"
#include "ap_mpm.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_cookies.h"

#include <dlfcn.h>

#define MSM_COOKIE_FILTER "MSM_COOKIE"

/* ---- helpers ---- */

void msm_log_cb(void *baton, int level, apr_status_t rv, const char *msg)
{
    ap_log_rerror(APLOG_MARK, level, rv, (request_rec *)baton, "%s", msg);
}

const char *msm_req_tag(const msm_req_t *q)
{
    char *tag = apr_palloc(q->r->pool, MSM_ID_TAG_LEN + 1);

    msm_id_tag(&q->s.id, tag);
    return tag;
}

/* Every child finds out for itself (one failed gats or md each); the log
 * line is written once per node for all of them. */
static int first_to_tell(volatile apr_uint32_t *told)
{
    return apr_atomic_cas32(told, 1, 0) == 0;
}

static void log_no_gat(void *baton)
{
    msm_node_t *n = baton;

    if (first_to_tell(&n->shared->no_gats)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, NULL, MSMLOGNO(00130)
                     "memcached node %s (%s) does not know gats "
                     "(twemproxy, yrmcds?): using gets + touch", n->id,
                     n->address);
    }
}

static void count_handshake(void *baton, int resumed)
{
    msm_node_t *n = baton;

    apr_atomic_inc64(&n->shared->tls_handshakes);
    if (resumed) {
        apr_atomic_inc64(&n->shared->tls_resumed);
    }
}

static void log_no_meta(void *baton)
{
    msm_node_t *n = baton;

    if (first_to_tell(&n->shared->no_meta)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, NULL, MSMLOGNO(00131)
                     "memcached node %s (%s) has no meta commands "
                     "(twemproxy, yrmcds?): locks are released with gets + "
                     "delete, without compare-and-delete", n->id,
                     n->address);
    }
}

static request_rec *top_request(request_rec *r)
{
    while (r->main || r->prev) {
        r = r->main ? r->main : r->prev;
    }
    return r;
}

static msm_req_t *req_get(request_rec *r)
{
    return ap_get_module_config(top_request(r)->request_config, &msm_module);
}

/* The configuration in effect, or NULL where mod_msm is not enabled. */
static const msm_server_conf_t *enabled_conf(request_rec *r,
                                             const msm_dir_conf_t **dcp)
{
    static int warned;
    const msm_dir_conf_t *dc = ap_get_module_config(r->per_dir_config,
                                                    &msm_module);
    const msm_server_conf_t *sc;

    if (dc == NULL || dc->cookie_name == NULL) {
        return NULL;
    }
    sc = ap_get_module_config(r->server->module_config, &msm_module);
    if (sc->store.nodes == NULL) {
        if (!warned) {
            warned = 1;
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MSMLOGNO(00120)
                          "MsmCookieName is set for %s but this server has "
                          "no MsmNodes: sessions are not kept", r->uri);
        }
        return NULL;
    }
    *dcp = dc;
    return sc;
}

static int lock_wanted(const msm_req_t *q)
{
    return q->dc->locking == MSM_LOCK_ON
        || (q->dc->locking == MSM_LOCK_AUTO && !q->read_only);
}

static void release_lock(msm_req_t *q)
{
    apr_status_t rv;

    if (!q->lock.held) {
        return;
    }
    rv = msm_lock_release(&q->sc->store, &q->ctx, &q->lock);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, q->r, MSMLOGNO(00145)
                  "session %s: lock on node %s released (token %.6s)",
                  msm_req_tag(q), q->lock.node->id, q->lock.token);
    if (rv == APR_EEXIST || rv == APR_NOTFOUND) {
        MSM_STAT_INC(q->sc->store.stats, lock_lost);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, MSMLOGNO(00140)
                      "session lock of %s expired before the request "
                      "ended (MsmLockExpire %u s is too short?)",
                      msm_req_tag(q), q->sc->lock.expire);
    }
}

/* After the response: release the lock if still held, then the deferred
 * backup writes and deletes. */
static apr_status_t req_cleanup(void *data)
{
    msm_req_t *q = data;

    release_lock(q);
    msm_store_run_later(&q->sc->store, &q->ctx);
    return APR_SUCCESS;
}

static void read_cookie(msm_req_t *q)
{
    const char *val = NULL;

    if (ap_cookie_read(q->r, q->dc->cookie_name, &val, 0) != APR_SUCCESS
        || val == NULL) {
        return;
    }
    if (!msm_id_parse(val, &q->s.id)) {
        /* The value is not logged: it may hold anything, CR/LF included. */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, q->r, MSMLOGNO(00121)
                      "ignoring malformed %s cookie (%" APR_SIZE_T_FMT
                      " bytes)", q->dc->cookie_name, strlen(val));
        return;
    }
    q->s.has_id = 1;
    q->cookie_in = 1;
}

static msm_req_t *req_open(request_rec *r, const msm_server_conf_t *sc,
                           const msm_dir_conf_t *dc)
{
    request_rec *top = top_request(r);
    msm_req_t *q = ap_get_module_config(top->request_config, &msm_module);

    if (q) {
        return q;
    }
    q = apr_pcalloc(top->pool, sizeof(*q));
    q->r = top;
    q->sc = sc;
    q->dc = dc;
    q->read_only = dc->locking == MSM_LOCK_AUTO
                   && top->method_number == M_GET;
    msm_store_ctx_init(&q->ctx, top->pool, msm_log_cb, top);
    read_cookie(q);
    ap_set_module_config(top->request_config, &msm_module, q);
    apr_pool_pre_cleanup_register(top->pool, q, req_cleanup);
    return q;
}

/* Reads the session named by the cookie from memcached (or the sticky
 * tier), once per request. */
static void load_session(msm_req_t *q)
{
    apr_status_t rv;

    q->loaded = 1;
    if (!q->s.has_id) {
        return;
    }
    if (q->sc->sticky == 1 && msm_sticky_get(q)) {
        return;
    }
    rv = msm_store_load(&q->sc->store, &q->ctx, &q->s);
    if (rv == APR_SUCCESS) {
        if (q->sc->sticky == 1) {
            msm_sticky_loaded(q);
        }
        return;
    }
    if (q->s.destroyed && q->sc->sticky == 1) {
        msm_sticky_destroyed(q, &q->s.id, q->s.meta.version + 1);
    }
    /* Expired, destroyed or unreachable: no session. The cookie is left
     * alone: the browser may hold a newer one by now (a login that
     * answered while this request was on its way). */
    q->s.has_id = 0;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, q->r, MSMLOGNO(00122)
                  "session %s %s", msm_req_tag(q),
                  q->s.destroyed ? "is destroyed" : "not found");
}

/* ---- locking, before anything loads the session ---- */

static apr_status_t lock_node(msm_req_t *q, msm_node_t *node)
{
    const msm_store_conf_t *st = &q->sc->store;
    apr_interval_time_t waited;
    apr_interval_time_t wait_max = q->dc->lock_timeout != MSM_UNSET
                                   ? q->dc->lock_timeout
                                   : MSM_DEFAULT_LOCK_TIMEOUT;
    apr_status_t rv = msm_lock_acquire(st, &q->ctx, &q->sc->lock, &q->lock,
                                       node, &q->s.id, wait_max, &waited);

    if (rv == APR_SUCCESS) {
        MSM_STAT_INC(st->stats, lock_acquired);
        if (waited >= MSM_LOCK_BACKOFF_MIN / 2) {
            MSM_STAT_INC(st->stats, lock_waits);
            MSM_STAT_ADD(st->stats, lock_wait_us, (apr_uint64_t)waited);
        }
    }
    /* Which request held which session's lock, and when: the evidence a
     * lost update under locking needs (debug: one line per lock). */
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv == MSM_LOCK_TIMEOUT ? 0 : rv,
                  q->r, MSMLOGNO(00144) "session %s: lock on node %s %s "
                  "after %" APR_TIME_T_FMT " ms (token %.6s)", msm_req_tag(q),
                  node->id, rv == APR_SUCCESS ? "taken"
                  : rv == MSM_LOCK_TIMEOUT ? "not taken" : "failed",
                  apr_time_as_msec(waited), q->lock.token);
    return rv;
}

/* The lock lives on the node of the session's primary copy, so that the
 * requests of one session meet there whichever node their cookies name.
 * The cookie's node is a guess: the session is loaded under that lock,
 * and when the load finds the primary elsewhere (a request with an older
 * cookie, a node that died) the lock moves there and the session is read
 * again under it. */
static apr_status_t take_lock(msm_req_t *q)
{
    msm_node_t *node = msm_nodes_find(q->sc->store.nodes, q->s.id.node);
    apr_status_t rv;
    int moves;

    /* A node that fails here is not waited for: the load finds where the
     * session lives now, and it is locked there. */
    if (node && msm_node_is_live(node)
        && (rv = lock_node(q, node)) == MSM_LOCK_TIMEOUT) {
        return rv;
    }
    load_session(q);
    for (moves = 0; moves < 2 && q->s.has_id && q->s.node
         && !(q->lock.held && q->lock.node == q->s.node); moves++) {
        release_lock(q);
        if ((rv = lock_node(q, q->s.node)) != APR_SUCCESS) {
            return rv;
        }
        load_session(q);
    }
    return APR_SUCCESS;
}

static int msm_header_parser(request_rec *r)
{
    const msm_dir_conf_t *dc;
    const msm_server_conf_t *sc = enabled_conf(r, &dc);
    msm_req_t *q;
    apr_status_t rv;

    if (sc == NULL || r->main) {
        return DECLINED;
    }
    q = req_open(r, sc, dc);
    if (!lock_wanted(q) || !q->s.has_id || q->lock_tried) {
        return DECLINED;
    }
    q->lock_tried = 1;
    rv = take_lock(q);
    if (rv != MSM_LOCK_TIMEOUT) {
        return DECLINED;        /* held, or its node failed: go unlocked */
    }
    MSM_STAT_INC(sc->store.stats, lock_timeouts);
    if (dc->lock_fail == MSM_LOCKFAIL_PROCEED) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MSMLOGNO(00141)
                      "session %s stayed locked by another request: "
                      "going on without the lock (MsmLockFail Proceed)",
                      msm_req_tag(q));
        return DECLINED;
    }
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MSMLOGNO(00142)
                  "session %s stayed locked by another request: 503",
                  msm_req_tag(q));
    apr_table_setn(r->err_headers_out, "Retry-After", "1");
    return HTTP_SERVICE_UNAVAILABLE;
}

/* ---- mod_session hooks ---- */

static apr_status_t msm_session_load(request_rec *r, session_rec **z)
{
    const msm_dir_conf_t *dc;
    const msm_server_conf_t *sc = enabled_conf(r, &dc);
    msm_req_t *q;
    session_rec *zz;

    if (sc == NULL) {
        return DECLINED;
    }
    q = req_open(r, sc, dc);
    if (q->z == NULL) {
        if (!q->loaded) {
            load_session(q);
        }
        /* The same session_rec for the whole request: mod_session calls
         * this hook from several places and the handler's changes live in
         * it. It is made even when there is no session yet. */
        zz = apr_pcalloc(q->r->pool, sizeof(*zz));
        zz->pool = q->r->pool;
        zz->entries = apr_table_make(zz->pool, 10);
        zz->encoded = q->s.has_id ? q->s.value : NULL;
        q->z = zz;
    }
    *z = q->z;
    return OK;
}

/* The logged-in user as mod_auth_form keeps it: the values of "user" and
 * "<AuthName>-user", joined; NULL when there is none. */
typedef struct {
    apr_pool_t *pool;
    const char *users;
} user_scan_t;

static int scan_user(void *rec, const char *key, const char *val)
{
    user_scan_t *scan = rec;
    apr_size_t n = strlen(key);

    if (strcmp(key, MOD_SESSION_USER) == 0
        || (n > 5 && strcmp(key + n - 5, "-" MOD_SESSION_USER) == 0)) {
        scan->users = apr_pstrcat(scan->pool, scan->users ? scan->users : "",
                                  key, "=", val, "\n", NULL);
    }
    return 1;
}

static const char *session_users(apr_pool_t *p, apr_table_t *entries)
{
    user_scan_t scan = { p, NULL };

    apr_table_do(scan_user, &scan, entries, NULL);
    return scan.users;
}

/* Runs after mod_session's own decoding (and mod_session_crypto's): the
 * entries as loaded are fingerprinted once, to tell at save time whether
 * the handler changed anything. */
static apr_status_t msm_session_decode(request_rec *r, session_rec *z)
{
    msm_req_t *q = req_get(r);

    if (q == NULL || q->z != z || q->hashed) {
        return DECLINED;
    }
    q->hashed = 1;
    msm_hash_entries(z->entries, MSM_SESSION_EXPIRY, &q->loaded_hash);
    q->loaded_expiry = z->expiry;
    if (q->dc->regenerate != 0) {
        q->loaded_user = session_users(q->r->pool, z->entries);
    }
    return OK;
}

/* With SessionMaxAge the stored value carries mod_session's expiry; an
 * unmodified session is written again once that is a tenth of the max age
 * old, so that a session in use does not expire in mod_session's eyes. */
static int expiry_stale(const msm_req_t *q, const session_rec *z)
{
    if (z->maxage <= 0 || z->expiry <= 0) {
        return 0;
    }
    if (q->loaded_expiry <= 0) {
        return 1;
    }
    return z->expiry - q->loaded_expiry >= apr_time_from_sec(z->maxage) / 10;
}

/* A user logged in (or another user did): a session id that may have been
 * known before the login must not carry it (session fixation). */
static int logged_in(const msm_req_t *q, const session_rec *z)
{
    const char *now;

    if (q->dc->regenerate == 0 || !q->s.has_id) {
        return 0;
    }
    now = session_users(q->r->pool, z->entries);
    return now && (q->loaded_user == NULL || strcmp(now, q->loaded_user));
}

static void remove_session(msm_req_t *q)
{
    if (q->s.has_id) {
        msm_store_remove(&q->sc->store, &q->ctx, &q->s);
        if (q->sc->sticky == 1) {
            msm_sticky_destroyed(q, &q->s.id, q->s.meta.version + 1);
        }
        q->destroyed_here = 1;
    }
}

static void write_session(msm_req_t *q, const session_rec *z)
{
    const char *value = z->encoded ? z->encoded : "";
    apr_size_t len = strlen(value);
    msm_session_t before = q->s;
    int regenerate = logged_in(q, z);
    apr_status_t rv = regenerate
        ? msm_store_regenerate(&q->sc->store, &q->ctx, &q->s, value, len)
        : msm_store_save(&q->sc->store, &q->ctx, &q->s, value, len);

    if (q->sc->sticky != 1) {
        return;
    }
    if (rv == APR_SUCCESS) {
        msm_sticky_put(q, value, len);
    }
    if ((rv == APR_SUCCESS && regenerate) || rv == MSM_STORE_GONE) {
        msm_sticky_destroyed(q, &before.id, before.meta.version + 1);
    }
}

static apr_status_t msm_session_save(request_rec *r, session_rec *z)
{
    const msm_dir_conf_t *dc;
    const msm_server_conf_t *sc = enabled_conf(r, &dc);
    msm_req_t *q;
    msm_hash_t now;
    int entries, unchanged;

    if (sc == NULL) {
        return DECLINED;
    }
    q = req_open(r, sc, dc);
    entries = msm_hash_entries(z->entries, MSM_SESSION_EXPIRY, &now);
    unchanged = q->s.has_id && q->hashed
                && msm_hash_equal(&now, &q->loaded_hash)
                && !expiry_stale(q, z);
    if (q->read_only) {
        if (!unchanged && (entries > 0 || q->s.has_id)) {
            MSM_STAT_INC(sc->store.stats, dropped_readonly);
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MSMLOGNO(00143)
                          "session change by %s %s dropped: MsmLocking Auto "
                          "keeps GET and HEAD read-only", r->method, r->uri);
        }
        return OK;
    }
    if (entries == 0) {
        /* Emptied (logout, SessionMaxAge reached) or never filled: a
         * request without a session costs no memcached operation. */
        remove_session(q);
    }
    else if (unchanged) {
        MSM_STAT_INC(sc->store.stats, skipped_unmodified);
    }
    else {
        write_session(q, z);
    }
    /* Errors are logged by mod_msm; mod_session would log them again. */
    return OK;
}

/* ---- the cookie, once per response ---- */

static void write_cookie(msm_req_t *q, request_rec *r)
{
    const msm_dir_conf_t *dc = q->dc;
    long maxage = q->z ? q->z->maxage : 0;
    msm_cookie_facts_t facts;

    q->cookie_written = 1;
    facts.cookie_in = q->cookie_in;
    facts.has_id = q->s.has_id;
    facts.id_changed = q->s.id_changed;
    facts.destroyed_here = q->destroyed_here;
    facts.sliding_max_age = maxage > 0;     /* the cookie is resent */
    switch (msm_decide_cookie(&facts)) {
    case MSM_COOKIE_SET:
        if (q->sc->sticky == 1) {
            apr_cpystrn(q->s.id.route, q->sc->route, sizeof(q->s.id.route));
        }
        ap_cookie_write(r, dc->cookie_name,
                        msm_id_cookie_value(r->pool, &q->s.id),
                        dc->cookie_attrs, maxage, r->err_headers_out, NULL);
        break;
    case MSM_COOKIE_CLEAR:
        ap_cookie_remove(r, dc->cookie_name, dc->cookie_attrs,
                         r->err_headers_out, NULL);
        break;
    default:
        break;
    }
}

/* Runs after mod_session's output filter (which saves the session) and
 * before the headers go out: the session is final here. */
static apr_status_t msm_cookie_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    msm_req_t *q = req_get(f->r);

    if (q && f->r->main == NULL) {
        release_lock(q);
        if (!q->cookie_written) {
            write_cookie(q, f->r);
        }
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void msm_insert_filter(request_rec *r)
{
    const msm_dir_conf_t *dc;

    if (r->main == NULL && (req_get(r) || enabled_conf(r, &dc))) {
        ap_add_output_filter(MSM_COOKIE_FILTER, NULL, r, r->connection);
    }
}

/* ---- start-up ---- */

static int msm_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    const char *err = msm_config_finalize(pconf, s);

    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     MSMLOGNO(00100) "%s", err);
        return !OK;
    }
    return OK;
}

/* The counters and the node health table live in one anonymous shared
 * segment that outlives graceful restarts (kept in the process pool,
 * found again through ap_retained_data): the new generation of children
 * knows which nodes failed and when (msm_node_last_failure), which a copy
 * from before a node's outage must be checked against. It is made anew
 * only when the nodes no longer fit. */
#define MSM_RETAINED_KEY "mod_msm shared segment"

typedef struct msm_retained {
    apr_shm_t *shm;
    int capacity;               /* node addresses it holds */
} msm_retained_t;

static apr_size_t segment_size(int capacity)
{
    return APR_ALIGN_DEFAULT(sizeof(msm_stats_t)) + msm_health_size(capacity);
}

/* The health table of the segment, made (or made larger) as needed. */
static void *shared_segment(server_rec *s, int needed, msm_stats_t **stats)
{
    msm_retained_t *kept = ap_retained_data_get(MSM_RETAINED_KEY);
    int capacity = needed < 64 ? 64 : 2 * needed;
    char *mem;

    if (kept == NULL) {
        kept = ap_retained_data_create(MSM_RETAINED_KEY, sizeof(*kept));
    }
    if (kept->shm == NULL || kept->capacity < needed) {
        /* The old segment (if any) stays with the children that use it. */
        if (apr_shm_create(&kept->shm, segment_size(capacity), NULL,
                           s->process->pool) != APR_SUCCESS) {
            kept->shm = NULL;
            return NULL;
        }
        kept->capacity = capacity;
        mem = apr_shm_baseaddr_get(kept->shm);
        memset(mem, 0, APR_ALIGN_DEFAULT(sizeof(msm_stats_t)));
        msm_health_format(mem + APR_ALIGN_DEFAULT(sizeof(msm_stats_t)),
                          capacity);
    }
    mem = apr_shm_baseaddr_get(kept->shm);
    *stats = (msm_stats_t *)mem;
    return mem + APR_ALIGN_DEFAULT(sizeof(msm_stats_t));
}

static int msm_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    apr_array_header_t *all = msm_config_all_nodes();
    server_rec *main_server = s;
    msm_stats_t *stats = NULL;
    void *health;
    int i, needed = 0;

    for (i = 0; i < all->nelts; i++) {
        needed += APR_ARRAY_IDX(all, i, msm_nodes_t *)->count;
    }
    health = shared_segment(s, needed, &stats);
    if (health == NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, MSMLOGNO(00101)
                     "cannot create shared memory for node state");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (i = 0; i < all->nelts; i++) {
        const char *err = msm_nodes_attach_health(
                              APR_ARRAY_IDX(all, i, msm_nodes_t *), health);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, MSMLOGNO(00103)
                         "%s", err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    msm_status_set_shared(stats, all);
    for (; s; s = s->next) {
        msm_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                     &msm_module);
        sc->store.stats = msm_status_stats();
    }
    return msm_sticky_post_config(pconf, main_server) == APR_SUCCESS
           ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static void msm_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_array_header_t *all = msm_config_all_nodes();
    int threads = 1, i, j;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    for (i = 0; i < all->nelts; i++) {
        msm_nodes_t *nodes = APR_ARRAY_IDX(all, i, msm_nodes_t *);
        for (j = 0; j < nodes->count; j++) {
            msm_node_t *n = &nodes->node[j];
            msm_mc_observer_t obs;
            apr_status_t rv;

            memset(&obs, 0, sizeof(obs));
            obs.no_gat = log_no_gat;
            obs.no_meta = log_no_meta;
            obs.handshake = count_handshake;
            obs.baton = n;
            rv = msm_mc_server_create(pchild, n->addr,
                                                   nodes->timeout,
                                   MSM_STORE_ITEM_MAX(nodes->max_value),
                                                   threads > 0 ? threads : 1,
                                                   &obs, &n->mc);
            if (rv != APR_SUCCESS) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MSMLOGNO(00102)
                             "cannot set up memcached node %s", n->id);
            }
            else {
                if (n->tls_name) {
                    msm_mc_server_set_tls(n->mc, nodes->tls, n->tls_name);
                }
                if (nodes->auth_user) {
                    msm_mc_server_set_auth(n->mc, nodes->auth_user,
                                           nodes->auth_password);
                }
            }
        }
    }
}

/* mod_session's hooks are looked up, not linked: Debian reads
 * mods-enabled/msm.load before session.load (alphabetical order), and a
 * module that referred to ap_hook_session_* would not load before
 * mod_session ("undefined symbol"). 0 while mod_session is not loaded. */
typedef void any_fn(void);

static any_fn *session_symbol(const char *name)
{
    union { void *obj; any_fn *fn; } sym;

    sym.obj = dlsym(RTLD_DEFAULT, name);
    return sym.fn;
}

/* fn, the registration function of mod_session's hook NAME, typed as
 * mod_session.h declares it. */
#define SESSION_HOOK(name, fn) \
    ((void (*)(ap_HOOK_##name##_t *, const char *const *, \
               const char *const *, int))(fn))

static int register_session_hooks(void)
{
    static const char *const after_session[] = { "mod_session.c", NULL };
    any_fn *load = session_symbol("ap_hook_session_load");
    any_fn *save = session_symbol("ap_hook_session_save");
    any_fn *decode = session_symbol("ap_hook_session_decode");

    if (load == NULL || save == NULL || decode == NULL) {
        return 0;
    }
    SESSION_HOOK(session_load, load)(msm_session_load, NULL, NULL,
                                     APR_HOOK_MIDDLE);
    SESSION_HOOK(session_save, save)(msm_session_save, NULL, NULL,
                                     APR_HOOK_MIDDLE);
    SESSION_HOOK(session_decode, decode)(msm_session_decode, after_session,
                                         NULL, APR_HOOK_REALLY_LAST);
    return 1;
}

/* mod_msm was loaded before mod_session: its hooks once every LoadModule
 * has run. */
static int msm_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp)
{
    if (!register_session_hooks()) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, NULL, MSMLOGNO(00155)
                     "mod_msm needs mod_session: LoadModule session_module "
                     "(a2enmod session)");
        return !OK;
    }
    return OK;
}

static void msm_register_hooks(apr_pool_t *p)
{
    if (!register_session_hooks()) {
        ap_hook_pre_config(msm_pre_config, NULL, NULL, APR_HOOK_REALLY_FIRST);
    }
    ap_hook_check_config(msm_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(msm_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(msm_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_header_parser(msm_header_parser, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(MSM_COOKIE_FILTER, msm_cookie_filter, NULL,
                              AP_FTYPE_CONTENT_SET + 5);
    ap_hook_insert_filter(msm_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(msm_insert_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    msm_status_register_hooks(p);
    msm_sticky_register_hooks(p);
}

AP_DECLARE_MODULE(msm) = {
    STANDARD20_MODULE_STUFF,
    msm_create_dir_conf,
    msm_merge_dir_conf,
    msm_create_server_conf,
    msm_merge_server_conf,
    msm_cmds,
    msm_register_hooks,
#if AP_MODULE_MAGIC_AT_LEAST(AP_MODULE_FLAGS_MMN_MAJOR, AP_MODULE_FLAGS_MMN_MINOR)
    AP_MODULE_FLAG_NONE
#endif
};
