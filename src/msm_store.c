#include "msm_store.h"

#include <string.h>
#include <apr_strings.h>

/* Deferred work, run after the response (or at once without MsmBackupAsync). */
typedef enum {
    LATER_BACKUP_SET,           /* write the backup of a session */
    LATER_DELETE,               /* delete a key on one node */
    LATER_BACKUP_DELETE,        /* delete a session's backup */
    LATER_REFRESH,              /* re-write primary (cas) and backup */
    LATER_KEEPALIVE             /* sticky: touch primary and backup */
} later_kind_e;

typedef struct msm_later {
    later_kind_e kind;
    msm_node_t *node;
    msm_id_t id;
    const char *key;
    const char *value;
    apr_size_t len;
    apr_uint64_t cas;
} msm_later_t;

static void store_log(msm_store_ctx_t *ctx, int level, apr_status_t rv,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void store_log(msm_store_ctx_t *ctx, int level, apr_status_t rv,
                      const char *fmt, ...)
{
    va_list ap;

    if (ctx->log == NULL) {
        return;
    }
    va_start(ap, fmt);
    ctx->log(ctx->log_baton, level, rv, apr_pvsprintf(ctx->pool, fmt, ap));
    va_end(ap);
}

void msm_store_ctx_init(msm_store_ctx_t *ctx, apr_pool_t *p, msm_log_fn *log,
                        void *baton)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->pool = p;
    ctx->log = log;
    ctx->log_baton = baton;
    ctx->later = apr_array_make(p, 4, sizeof(msm_later_t));
    ctx->failed = apr_array_make(p, 2, sizeof(msm_node_t *));
}

static void node_done(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      msm_node_t *n, apr_status_t rv, apr_time_t started)
{
    apr_time_t now = apr_time_now();
    long retry = (long)apr_time_sec(c->nodes->retry);

    if (msm_mc_node_failed(rv)) {
        APR_ARRAY_PUSH(ctx->failed, msm_node_t *) = n;
    }
    switch (msm_node_report(n, rv, c->nodes->retry, now - started, now)) {
    case MSM_NODE_WENT_DOWN:
        store_log(ctx, MSM_LOG_WARNING, rv, "MSM00101: memcached node %s "
                  "(%s:%d) is down; skipped, tried again every %ld s",
                  n->id, n->host, n->port, retry);
        break;
    case MSM_NODE_STILL_DOWN:
        store_log(ctx, MSM_LOG_WARNING, rv, "MSM00102: memcached node %s "
                  "(%s:%d) is still down; next try in %ld s",
                  n->id, n->host, n->port, retry);
        break;
    case MSM_NODE_CAME_UP:
        store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00103: memcached node %s "
                  "(%s:%d) is back", n->id, n->host, n->port);
        break;
    default:
        if (rv == MSM_MC_EREPLY) {
            store_log(ctx, MSM_LOG_ERR, rv, "MSM00104: memcached node %s "
                      "refused a request (ERROR reply)", n->id);
        }
        break;
    }
}

/* ---- which nodes this request may use ---- */

/* A node that failed during this request is not tried again in it, even
 * when its retry falls due meanwhile (one request would otherwise pay the
 * timeout of a hanging node several times). */
static int failed_here(const msm_store_ctx_t *ctx, const msm_node_t *n)
{
    int i;

    for (i = 0; i < ctx->failed->nelts; i++) {
        if (APR_ARRAY_IDX(ctx->failed, i, msm_node_t *) == n) {
            return 1;
        }
    }
    return 0;
}

static int usable(const msm_store_conf_t *c, const msm_store_ctx_t *ctx,
                  msm_node_t *n)
{
    return n && !failed_here(ctx, n)
        && msm_node_usable(n, c->nodes->retry, apr_time_now())
           != MSM_NODE_SKIP;
}

/* A node for a new or moved session (see msm_nodes_pick_new). */
static msm_node_t *pick_new(const msm_store_conf_t *c,
                            const msm_store_ctx_t *ctx, unsigned int spread)
{
    msm_node_t *n = msm_nodes_pick_new(c->nodes, spread, apr_time_now());

    return n && !failed_here(ctx, n) ? n : NULL;
}

/* The next node after "from" that may hold its backup (all nodes when from
 * is NULL); NULL at the end. */
static msm_node_t *next_backup(const msm_store_conf_t *c,
                               const msm_store_ctx_t *ctx,
                               const msm_node_t *from, int *pos)
{
    msm_node_t *n;

    while ((n = msm_nodes_next_backup_candidate(c->nodes, from, pos,
                                                apr_time_now())) != NULL) {
        if (!failed_here(ctx, n)) {
            return n;
        }
    }
    return NULL;
}

/* ---- one operation on one node, with its outcome reported ---- */

apr_status_t msm_store_node_get(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_node_t *n,
                                const char *key, int touch,
                                msm_mc_item_t *item)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = touch
        ? msm_mc_get_touch(n->mc, ctx->pool, key, c->idle, item)
        : msm_mc_get(n->mc, ctx->pool, key, item);

    node_done(c, ctx, n, rv, t0);
    return rv;
}

apr_status_t msm_store_node_store(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  msm_mc_store_mode_e mode, const char *key,
                                  const char *value, apr_size_t len,
                                  apr_uint32_t exptime, apr_uint64_t cas)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = msm_mc_store(n->mc, mode, key, value, len,
                                   (apr_uint32_t)apr_time_sec(t0), exptime,
                                   cas);

    node_done(c, ctx, n, rv, t0);
    return rv;
}

apr_status_t msm_store_node_delete(const msm_store_conf_t *c,
                                   msm_store_ctx_t *ctx, msm_node_t *n,
                                   const char *key)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = msm_mc_delete(n->mc, key);

    node_done(c, ctx, n, rv, t0);
    return rv;
}

static int backup_on(const msm_store_conf_t *c)
{
    return c->backup && c->nodes->count > 1;
}

/* A backup outlives its primary: it is written with twice the idle time
 * and re-written once half the idle time has passed (see maybe_refresh). */
static apr_uint32_t backup_exptime(const msm_store_conf_t *c)
{
    return c->idle * 2;
}

static char *key_of(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                    const char *ns, const msm_id_t *id)
{
    return msm_id_key(ctx->pool, ns, c->prefix, id);
}

/* ---- deferred work ---- */

static void later_add(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      const msm_later_t *op);

static msm_later_t later_make(later_kind_e kind, msm_node_t *n,
                              const msm_id_t *id, const char *value,
                              apr_size_t len)
{
    msm_later_t op;

    memset(&op, 0, sizeof(op));
    op.kind = kind;
    op.node = n;
    op.id = *id;
    op.value = value;
    op.len = len;
    return op;
}

static void later_backup_set(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             const msm_session_t *s, const char *value,
                             apr_size_t len)
{
    msm_later_t op = later_make(LATER_BACKUP_SET, s->node, &s->id, value,
                                len);

    if (backup_on(c)) {
        later_add(c, ctx, &op);
    }
}

static void later_delete(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                         later_kind_e kind, msm_node_t *n, const msm_id_t *id,
                         const char *key)
{
    msm_later_t op = later_make(kind, n, id, NULL, 0);

    op.key = key;
    later_add(c, ctx, &op);
}

typedef apr_status_t backup_fn(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_node_t *n,
                               const msm_later_t *op);

/* Runs fn on the backup node of op->node: the first node after it, in
 * MsmNodes order, that is usable and does not fail (where a read looks
 * first). */
static void on_backup_node(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                           const msm_later_t *op, backup_fn *fn)
{
    msm_node_t *n;
    int pos = 0;

    while ((n = next_backup(c, ctx, op->node, &pos)) != NULL) {
        if (!msm_mc_node_failed(fn(c, ctx, n, op))) {
            return;
        }
    }
}

static apr_status_t backup_set(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_node_t *n,
                               const msm_later_t *op)
{
    return msm_store_node_store(c, ctx, n, MSM_MC_SET,
                      key_of(c, ctx, MSM_NS_BACKUP, &op->id), op->value,
                      op->len, backup_exptime(c), 0);
}

static apr_status_t backup_delete(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  const msm_later_t *op)
{
    return msm_store_node_delete(c, ctx, n, key_of(c, ctx, MSM_NS_BACKUP, &op->id));
}

/* A session only read keeps its primary alive through gats, but not its
 * backup: once half the idle time has passed since the last full write,
 * write both again. cas, so that a request that changed the session in
 * the meantime is not undone by this one's older copy. */
static void run_refresh(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                        const msm_later_t *op)
{
    apr_status_t rv;

    if (ctx->wrote) {
        return;                 /* this request's save wrote both already */
    }
    rv = msm_store_node_store(c, ctx, op->node, MSM_MC_CAS,
                    key_of(c, ctx, MSM_NS_SESSION, &op->id), op->value,
                    op->len, c->idle, op->cas);
    if (rv == APR_SUCCESS) {
        on_backup_node(c, ctx, op, backup_set);
    }
}

/* touch, and set where the key is gone (eviction, restarted node). */
static apr_status_t touch_or_set(const msm_store_conf_t *c,
                                 msm_store_ctx_t *ctx, msm_node_t *n,
                                 const char *key, const msm_later_t *op,
                                 apr_uint32_t exptime)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = msm_mc_touch(n->mc, key, exptime);

    node_done(c, ctx, n, rv, t0);
    if (rv == APR_NOTFOUND) {
        rv = msm_store_node_store(c, ctx, n, MSM_MC_SET, key, op->value, op->len,
                        exptime, 0);
    }
    return rv;
}

static apr_status_t backup_keepalive(const msm_store_conf_t *c,
                                     msm_store_ctx_t *ctx, msm_node_t *n,
                                     const msm_later_t *op)
{
    return touch_or_set(c, ctx, n, key_of(c, ctx, MSM_NS_BACKUP, &op->id),
                        op, backup_exptime(c));
}

static void run_keepalive(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          const msm_later_t *op)
{
    if (ctx->wrote || !usable(c, ctx, op->node)) {
        return;
    }
    touch_or_set(c, ctx, op->node, key_of(c, ctx, MSM_NS_SESSION, &op->id),
                 op, c->idle);
    if (backup_on(c)) {
        on_backup_node(c, ctx, op, backup_keepalive);
    }
}

static void run_one(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                    const msm_later_t *op)
{
    switch (op->kind) {
    case LATER_BACKUP_SET:
        on_backup_node(c, ctx, op, backup_set);
        break;
    case LATER_DELETE:
        if (usable(c, ctx, op->node)) {
            msm_store_node_delete(c, ctx, op->node, op->key);
        }
        break;
    case LATER_BACKUP_DELETE:
        on_backup_node(c, ctx, op, backup_delete);
        break;
    case LATER_REFRESH:
        run_refresh(c, ctx, op);
        break;
    case LATER_KEEPALIVE:
        run_keepalive(c, ctx, op);
        break;
    }
}

static void later_add(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      const msm_later_t *op)
{
    if (!c->backup_async) {
        run_one(c, ctx, op);
        return;
    }
    *(msm_later_t *)apr_array_push(ctx->later) = *op;
}

void msm_store_run_later(const msm_store_conf_t *c, msm_store_ctx_t *ctx)
{
    int i;

    for (i = 0; i < ctx->later->nelts; i++) {
        run_one(c, ctx, &APR_ARRAY_IDX(ctx->later, i, msm_later_t));
    }
    apr_array_clear(ctx->later);
}

/* ---- load ---- */

static void maybe_refresh(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          const msm_session_t *s)
{
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    msm_later_t op = later_make(LATER_REFRESH, s->node, &s->id, s->value,
                                s->len);

    if (backup_on(c) && now - s->written_at >= c->idle / 2) {
        op.cas = s->cas;
        later_add(c, ctx, &op);
    }
}

void msm_store_keepalive(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                         const msm_session_t *s)
{
    msm_later_t op = later_make(LATER_KEEPALIVE, s->node, &s->id, s->value,
                                s->len);

    if (s->node) {
        later_add(c, ctx, &op);
    }
}

static void take_item(msm_session_t *s, const msm_mc_item_t *item)
{
    s->value = item->value;
    s->len = item->len;
    s->written_at = item->flags;
    s->cas = item->cas;
}

/* Looks for the backup copy on the nodes after s->node. */
static msm_node_t *find_backup(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_session_t *s,
                               int *failed)
{
    const char *key = key_of(c, ctx, MSM_NS_BACKUP, &s->id);
    msm_node_t *n;
    int pos = 0;

    while ((n = next_backup(c, ctx, s->node, &pos)) != NULL) {
        msm_mc_item_t item;
        apr_status_t rv = msm_store_node_get(c, ctx, n, key, 0, &item);

        MSM_STAT_INC(c->stats, backup_reads);
        if (rv == APR_SUCCESS) {
            MSM_STAT_INC(c->stats, backup_hits);
            take_item(s, &item);
            return n;
        }
        *failed |= rv != APR_NOTFOUND;
    }
    return NULL;
}

/* The session was found only as a backup on "holder": write it as a primary
 * again, on its own node when that is alive but lost it (restart,
 * eviction), else on a live node with a new node id in its cookie. */
static void relocate(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                     msm_session_t *s, msm_node_t *holder, int primary_missed)
{
    msm_node_t *old = s->node;
    msm_session_t moved = *s;
    msm_node_t *target = primary_missed ? old
        : pick_new(c, ctx, msm_id_spread(&s->id));

    if (target == NULL) {
        return;                 /* served from the backup, left where it is */
    }
    moved.node = target;
    apr_cpystrn(moved.id.node, target->id, sizeof(moved.id.node));
    if (msm_store_node_store(c, ctx, target, MSM_MC_SET,
                   key_of(c, ctx, MSM_NS_SESSION, &moved.id), s->value,
                   s->len, c->idle, 0) != APR_SUCCESS) {
        return;
    }
    moved.written_at = (apr_uint32_t)apr_time_sec(apr_time_now());
    moved.cas = 0;
    moved.id_changed = s->id_changed || target != old;
    later_backup_set(c, ctx, &moved, s->value, s->len);
    if (target != old) {
        later_delete(c, ctx, LATER_DELETE, holder, &s->id,
                     key_of(c, ctx, MSM_NS_BACKUP, &s->id));
        if (old) {
            later_delete(c, ctx, LATER_DELETE, old, &s->id,
                         key_of(c, ctx, MSM_NS_SESSION, &s->id));
        }
        MSM_STAT_INC(c->stats, relocated);
        store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00110: session %s-%s moved to "
                  "node %s", s->id.hex, s->id.node, target->id);
    }
    *s = moved;
}

apr_status_t msm_store_load(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s)
{
    int primary_missed = 0, failed = 0;
    msm_node_t *holder;

    s->node = msm_nodes_find(c->nodes, s->id.node);
    s->value = NULL;
    if (usable(c, ctx, s->node)) {
        msm_mc_item_t item;
        apr_status_t rv = msm_store_node_get(c, ctx, s->node,
                                   key_of(c, ctx, MSM_NS_SESSION, &s->id), 1,
                                   &item);
        if (rv == APR_SUCCESS) {
            take_item(s, &item);
            MSM_STAT_INC(c->stats, load_hit);
            maybe_refresh(c, ctx, s);
            return APR_SUCCESS;
        }
        /* Only a miss says the session is not there: an error reply
         * (SERVER_ERROR out of memory) says nothing. */
        primary_missed = rv == APR_NOTFOUND;
        failed = !primary_missed;
    }
    else if (s->node) {
        failed = 1;
    }
    holder = backup_on(c) ? find_backup(c, ctx, s, &failed) : NULL;
    if (holder == NULL) {
        MSM_STAT_INC(c->stats, load_miss);
        return failed ? APR_EGENERAL : APR_NOTFOUND;
    }
    MSM_STAT_INC(c->stats, load_hit);
    relocate(c, ctx, s, holder, primary_missed);
    return APR_SUCCESS;
}

/* ---- save, remove ---- */

static void log_unavailable(const msm_store_conf_t *c, msm_store_ctx_t *ctx)
{
    MSM_STAT_INC(c->stats, unavailable);
    if (msm_nodes_all_dead_log_due(c->nodes, apr_time_now())) {
        store_log(ctx, MSM_LOG_WARNING, 0, "MSM00105: no memcached node is "
                  "reachable: sessions are neither loaded nor saved");
    }
}

static apr_status_t refuse_too_large(const msm_store_conf_t *c,
                                     msm_store_ctx_t *ctx,
                                     const msm_session_t *s, apr_size_t len)
{
    MSM_STAT_INC(c->stats, too_large);
    store_log(ctx, MSM_LOG_ERR, 0, "MSM00106: %s%s%s%s not saved: %"
              APR_SIZE_T_FMT " bytes is more than MsmMaxSessionSize (%"
              APR_SIZE_T_FMT ")", s->has_id ? "session " : "new session",
              s->has_id ? s->id.hex : "", s->has_id ? "-" : "",
              s->has_id ? s->id.node : "", len, c->nodes->max_value);
    return MSM_MC_ETOOBIG;
}

/* Writes a brand-new id with add, so that it can never overwrite another
 * session's key; tries the next node when one fails, each node once. */
static apr_status_t save_new(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_session_t *s, const char *value,
                             apr_size_t len)
{
    int attempt;
    apr_status_t rv = APR_EGENERAL;

    /* count + 2: a node may fail each time, and two add collisions of a
     * fresh 128-bit id will not happen. */
    for (attempt = 0; attempt < c->nodes->count + 2; attempt++) {
        msm_id_t id;
        msm_node_t *n;

        if ((rv = msm_id_generate(&id)) != APR_SUCCESS) {
            return rv;
        }
        n = pick_new(c, ctx, msm_id_spread(&id));
        if (n == NULL) {
            log_unavailable(c, ctx);
            return APR_EGENERAL;
        }
        apr_cpystrn(id.node, n->id, sizeof(id.node));
        id.route[0] = '\0';
        rv = msm_store_node_store(c, ctx, n, MSM_MC_ADD,
                        key_of(c, ctx, MSM_NS_SESSION, &id), value, len,
                        c->idle, 0);
        if (rv == APR_SUCCESS) {
            apr_cpystrn(id.route, s->id.route, sizeof(id.route));
            s->id = id;
            s->has_id = 1;
            s->node = n;
            s->id_changed = 1;
            MSM_STAT_INC(c->stats, created);
            return APR_SUCCESS;
        }
        if (rv == MSM_MC_ETOOBIG) {
            return refuse_too_large(c, ctx, s, len);
        }
    }
    return rv;
}

/* The session's node is down: move it to a live one, new node id. */
static apr_status_t save_moved(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_session_t *s,
                               const char *value, apr_size_t len)
{
    msm_node_t *old = s->node;
    msm_id_t id = s->id;
    msm_node_t *n = pick_new(c, ctx, msm_id_spread(&s->id));
    apr_status_t rv;

    if (n == NULL || n == old) {
        log_unavailable(c, ctx);
        return APR_EGENERAL;
    }
    apr_cpystrn(id.node, n->id, sizeof(id.node));
    rv = msm_store_node_store(c, ctx, n, MSM_MC_SET, key_of(c, ctx, MSM_NS_SESSION, &id),
                    value, len, c->idle, 0);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (old && backup_on(c)) {
        later_delete(c, ctx, LATER_BACKUP_DELETE, old, &s->id, NULL);
    }
    s->id = id;
    s->node = n;
    s->id_changed = 1;
    MSM_STAT_INC(c->stats, relocated);
    return APR_SUCCESS;
}

apr_status_t msm_store_save(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s, const char *value,
                            apr_size_t len)
{
    apr_status_t rv;

    if (s->has_id && usable(c, ctx, s->node)) {
        rv = msm_store_node_store(c, ctx, s->node, MSM_MC_SET,
                        key_of(c, ctx, MSM_NS_SESSION, &s->id), value, len,
                        c->idle, 0);
        if (rv == MSM_MC_ETOOBIG) {
            return refuse_too_large(c, ctx, s, len);
        }
        if (msm_mc_node_failed(rv)) {
            rv = save_moved(c, ctx, s, value, len);
        }
    }
    else if (s->has_id && s->node) {
        rv = save_moved(c, ctx, s, value, len);
    }
    else {
        rv = save_new(c, ctx, s, value, len);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ctx->wrote = 1;
    s->value = value;
    s->len = len;
    s->written_at = (apr_uint32_t)apr_time_sec(apr_time_now());
    MSM_STAT_INC(c->stats, saved);
    later_backup_set(c, ctx, s, value, len);
    return APR_SUCCESS;
}

apr_status_t msm_store_remove(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_session_t *s)
{
    apr_status_t rv = APR_SUCCESS;

    if (s->has_id && s->node) {
        if (usable(c, ctx, s->node)) {
            rv = msm_store_node_delete(c, ctx, s->node,
                             key_of(c, ctx, MSM_NS_SESSION, &s->id));
        }
        if (backup_on(c)) {
            later_delete(c, ctx, LATER_BACKUP_DELETE, s->node, &s->id, NULL);
        }
        MSM_STAT_INC(c->stats, deleted);
    }
    ctx->wrote = 1;
    s->has_id = 0;
    s->node = NULL;
    s->value = NULL;
    s->id_changed = 1;
    return rv == APR_NOTFOUND ? APR_SUCCESS : rv;
}

apr_status_t msm_store_regenerate(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_session_t *s,
                                  const char *value, apr_size_t len)
{
    msm_session_t old = *s;
    apr_status_t rv;

    s->has_id = 0;
    s->node = NULL;
    rv = msm_store_save(c, ctx, s, value, len);
    if (rv != APR_SUCCESS) {
        *s = old;
        return rv;
    }
    if (old.has_id && old.node) {
        /* At once, not later: the old id may be known to an attacker. */
        if (usable(c, ctx, old.node)) {
            msm_store_node_delete(c, ctx, old.node,
                        key_of(c, ctx, MSM_NS_SESSION, &old.id));
        }
        if (backup_on(c)) {
            later_delete(c, ctx, LATER_BACKUP_DELETE, old.node, &old.id,
                         NULL);
        }
    }
    MSM_STAT_INC(c->stats, regenerated);
    return APR_SUCCESS;
}
