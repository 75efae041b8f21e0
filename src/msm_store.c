#include "msm_store.h"

#include <string.h>
#include <apr_strings.h>

/* How often a conditional write reads again after losing a race (another
 * request wrote in between): each round some request's write landed. */
#define PUT_ROUNDS 8

/* Deferred work, run after the response (or at once without
 * MsmBackupAsync). */
typedef enum {
    LATER_BACKUP,               /* the backup copy of a write */
    LATER_REPAIR,               /* overwrite an older copy on one node */
    LATER_REFRESH,              /* re-write primary (cas) and backup */
    LATER_KEEPALIVE,            /* sticky: touch primary and backup */
    LATER_TOUCH                 /* restore a copy's expiry after a gats */
} later_kind_e;

typedef struct msm_later {
    later_kind_e kind;
    msm_node_t *node;           /* REPAIR: the node to write; otherwise the
                                 * primary's node */
    const char *key;
    msm_copy_meta_t meta;
    const char *payload;
    apr_size_t len;
    apr_uint64_t cas;           /* REFRESH: of the primary copy */
    int fresh;                  /* BACKUP of a new id: nothing is there */
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

/* Session ids are credentials: log lines carry their tag. */
static const char *tag_of(msm_store_ctx_t *ctx, const msm_id_t *id)
{
    char *tag = apr_palloc(ctx->pool, MSM_ID_TAG_LEN + 1);

    msm_id_tag(id, tag);
    return tag;
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

/* ": <why>" for mod_msm's own failure codes, which apr_strerror cannot
 * word; *log_rv is what the log line's "(code)text" prefix should show. */
static const char *reason_of(msm_store_ctx_t *ctx, apr_status_t rv,
                             apr_status_t *log_rv)
{
    const char *why = msm_mc_reason(ctx->pool, rv);

    *log_rv = why ? APR_SUCCESS : rv;
    return why ? apr_pstrcat(ctx->pool, ": ", why, NULL) : "";
}

static void node_done(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      msm_node_t *n, apr_status_t rv, apr_time_t started)
{
    apr_time_t now = apr_time_now();
    long retry = (long)apr_time_sec(c->nodes->retry);
    apr_status_t log_rv = rv;
    const char *why = "";
    msm_node_change_e change;

    if (msm_mc_node_failed(rv)) {
        APR_ARRAY_PUSH(ctx->failed, msm_node_t *) = n;
    }
    change = msm_node_report(n, rv, c->nodes->retry, now - started, now);

    if (change == MSM_NODE_WENT_DOWN || change == MSM_NODE_STILL_DOWN) {
        why = reason_of(ctx, rv, &log_rv);
    }
    switch (change) {
    case MSM_NODE_WENT_DOWN:
        ctx->went_down = 1;
        store_log(ctx, MSM_LOG_WARNING, log_rv, "MSM00101: memcached node %s "
                  "(%s) is down%s; skipped, tried again every %ld s",
                  n->id, n->address, why, retry);
        break;
    case MSM_NODE_STILL_DOWN:
        store_log(ctx, MSM_LOG_WARNING, log_rv, "MSM00102: memcached node %s "
                  "(%s) is still down%s; next try in %ld s",
                  n->id, n->address, why, retry);
        break;
    case MSM_NODE_CAME_UP:
        store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00103: memcached node %s "
                  "(%s) is back", n->id, n->address);
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

/* The next node after "from" that may hold its backup; NULL at the end. */
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

static apr_status_t reported(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_node_t *n, apr_status_t rv, apr_time_t t0)
{
    node_done(c, ctx, n, rv, t0);
    return rv;
}

apr_status_t msm_store_node_get(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_node_t *n,
                                const char *key, int touch,
                                msm_mc_item_t *item)
{
    apr_time_t t0 = apr_time_now();

    return reported(c, ctx, n, touch
                    ? msm_mc_get_touch(n->mc, ctx->pool, key, c->idle, item)
                    : msm_mc_get(n->mc, ctx->pool, key, item), t0);
}

apr_status_t msm_store_node_store(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  msm_mc_store_mode_e mode, const char *key,
                                  const char *value, apr_size_t len,
                                  apr_uint32_t exptime, apr_uint64_t cas)
{
    apr_time_t t0 = apr_time_now();

    return reported(c, ctx, n, msm_mc_store(n->mc, mode, key, value, len, 0,
                                            exptime, cas), t0);
}

apr_status_t msm_store_node_delete(const msm_store_conf_t *c,
                                   msm_store_ctx_t *ctx, msm_node_t *n,
                                   const char *key)
{
    apr_time_t t0 = apr_time_now();

    return reported(c, ctx, n, msm_mc_delete(n->mc, key), t0);
}

apr_status_t msm_store_node_delete_cas(const msm_store_conf_t *c,
                                       msm_store_ctx_t *ctx, msm_node_t *n,
                                       const char *key, apr_uint64_t cas)
{
    apr_time_t t0 = apr_time_now();

    return reported(c, ctx, n, msm_mc_delete_cas(n->mc, key, cas), t0);
}

apr_status_t msm_store_node_touch(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  const char *key, apr_uint32_t exptime)
{
    apr_time_t t0 = apr_time_now();

    return reported(c, ctx, n, msm_mc_touch(n->mc, key, exptime), t0);
}

static int backup_on(const msm_store_conf_t *c)
{
    return c->backup && c->nodes->count > 1;
}

/* A primary copy lives MsmIdleTimeout, sliding with every read. Any other
 * copy lives twice that (reads do not refresh it; see maybe_refresh), and
 * so does a tombstone: it must outlive every copy it stands against. */
static apr_uint32_t twice_idle(const msm_store_conf_t *c)
{
    return c->idle > MSM_EXPTIME_MAX / 2 ? MSM_EXPTIME_MAX : c->idle * 2;
}

static apr_uint32_t copy_exptime(const msm_store_conf_t *c,
                                 const msm_copy_meta_t *meta,
                                 const msm_node_t *n)
{
    return meta->kind == MSM_COPY_SESSION && strcmp(meta->primary, n->id) == 0
           ? c->idle : twice_idle(c);
}

static char *key_of(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                    const msm_id_t *id)
{
    return msm_id_key(ctx->pool, MSM_NS_SESSION, c->prefix, id);
}

static void meta_init(msm_copy_meta_t *m, char kind, apr_uint64_t version,
                      const msm_node_t *primary)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->version = version;
    m->written = apr_time_now();
    if (primary) {
        apr_cpystrn(m->primary, primary->id, sizeof(m->primary));
    }
}

/* A new version of a session, written by this server. */
static void meta_session(const msm_store_conf_t *c, msm_copy_meta_t *m,
                         apr_uint64_t version, const msm_node_t *primary)
{
    meta_init(m, MSM_COPY_SESSION, version, primary);
    if (c->route) {
        apr_cpystrn(m->route, c->route, sizeof(m->route));
    }
}

/* ---- copies on nodes ---- */

/* A value sealed with MsmEncryptKeyFile, opened (else *value as it is).
 * 0: it cannot be read as a copy, and *seen says why. */
static int unseal(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                  msm_node_t *n, const char *key, msm_mc_item_t *item,
                  msm_seen_t *seen)
{
    apr_uint32_t key_id;
    char *plain;
    apr_size_t len;
    apr_status_t rv;

    if (c->crypt == NULL) {
        return 1;
    }
    rv = msm_crypt_open(c->crypt, ctx->pool, key, item->value, item->len,
                        &plain, &len, &key_id);
    switch (rv) {
    case APR_SUCCESS:
        item->value = plain;
        item->len = len;
        return 1;
    case MSM_CRYPT_ENOKEY:
        /* Perhaps a key another server already seals with: not served,
         * and not written over. */
        seen->what = MSM_SEEN_TOOBIG;
        seen->sealed_with = key_id;
        if (msm_crypt_first_miss(c->crypt, key_id)) {
            store_log(ctx, MSM_LOG_WARNING, 0, "MSM00170: node %s holds "
                      "sessions sealed with key id %08x, which "
                      "MsmEncryptKeyFile does not hold: they are not read "
                      "here (logged once per key id)", n->id, key_id);
        }
        return 0;
    default:
        seen->what = MSM_SEEN_CORRUPT;
        seen->cas = item->cas;
        store_log(ctx, MSM_LOG_WARNING, 0, "MSM00171: node %s holds a value "
                  "under a session key that %s: ignored, and replaced by "
                  "the next write", n->id, rv == MSM_CRYPT_EPLAIN
                  ? "is not sealed (clear text while MsmEncryptKeyFile is "
                    "set)"
                  : "does not open with its key (altered, or copied from "
                    "another session's key)");
        return 0;
    }
}

/* Reads the copy n holds into *seen (MSM_SEEN_FAILED when n failed). */
static apr_status_t observe(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_node_t *n, const char *key, int touch,
                            msm_seen_t *seen)
{
    msm_mc_item_t item;
    apr_status_t rv = msm_store_node_get(c, ctx, n, key, touch, &item);

    memset(seen, 0, sizeof(*seen));
    if (rv == APR_SUCCESS && unseal(c, ctx, n, key, &item, seen)) {
        msm_copy_decode(item.value, item.len, seen);
        seen->cas = item.cas;
        if (seen->what == MSM_SEEN_CORRUPT) {
            store_log(ctx, MSM_LOG_INFO, 0, "MSM00108: node %s holds an item "
                      "under a session key that is not a mod_msm copy "
                      "(ignored, and replaced by the next write)", n->id);
        }
    }
    else if (rv != APR_SUCCESS) {
        seen->what = rv == APR_NOTFOUND ? MSM_SEEN_NONE
                   : rv == MSM_MC_ETOOBIG ? MSM_SEEN_TOOBIG : MSM_SEEN_FAILED;
    }
    return rv;
}

/* Writes a copy to n: encoded, and sealed under key when MsmEncryptKeyFile
 * is set. */
static apr_status_t store_copy(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_node_t *n,
                               msm_mc_store_mode_e how, const char *key,
                               const msm_copy_meta_t *meta,
                               const char *payload, apr_size_t len,
                               apr_uint32_t exptime, apr_uint64_t cas)
{
    apr_size_t vlen;
    char *value = msm_copy_encode(ctx->pool, meta, payload, len, &vlen);

    if (c->crypt && msm_crypt_seal(c->crypt, ctx->pool, key, value, vlen,
                                   &value, &vlen) != APR_SUCCESS) {
        store_log(ctx, MSM_LOG_ERR, 0, "MSM00172: OpenSSL could not seal "
                  "a session copy for node %s: not written", n->id);
        return APR_EGENERAL;
    }
    return msm_store_node_store(c, ctx, n, how, key, value, vlen, exptime,
                                cas);
}

/* A node failed, as opposed to a write that was refused or dropped. */
static int node_failed(apr_status_t rv)
{
    return msm_mc_node_failed(rv) && rv != MSM_STORE_GONE
        && rv != MSM_STORE_CONTENDED && rv != MSM_STORE_UNREADABLE;
}

/* What the nodes other than n hold of key: 1 if one holds the tombstone;
 * *newest their newest session copy (kind 0: none). */
static int survey_others(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                         const msm_node_t *n, const char *key,
                         msm_copy_meta_t *newest)
{
    int i;

    memset(newest, 0, sizeof(*newest));
    for (i = 0; i < c->nodes->count; i++) {
        msm_node_t *m = &c->nodes->node[i];
        msm_seen_t seen;

        if (m == n || !usable(c, ctx, m)
            || observe(c, ctx, m, key, 0, &seen) != APR_SUCCESS
            || seen.what != MSM_SEEN_COPY) {
            continue;
        }
        if (seen.meta.kind == MSM_COPY_DESTROYED) {
            return 1;
        }
        if (newest->kind == 0 || msm_copy_order(&seen.meta, newest) > 0) {
            *newest = seen.meta;
        }
    }
    return 0;
}

/* Puts a copy on n the way msm_decide_write says, reading first when what
 * n holds is not known (*seen MSM_SEEN_FAILED), and again after losing a
 * race. A session copy of an id that existed is added to a node that lacks
 * it (it restarted empty, say) only where no other node holds the id's
 * tombstone, unless the caller verified that already (absent_ok: a new
 * id, or a search just asked every node). *seen ends as what n holds: the
 * copy written, or the one that made the write unnecessary.
 * APR_SUCCESS (written, or n holds it or a newer copy), MSM_STORE_GONE (the
 * id is destroyed), MSM_STORE_UNREADABLE (n holds a copy too large to
 * read), MSM_STORE_CONTENDED, MSM_MC_ETOOBIG, or a node failure. */
static apr_status_t put_copy(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_node_t *n, const char *key,
                             msm_write_mode_e mode, msm_copy_meta_t *meta,
                             const char *payload, apr_size_t len,
                             msm_seen_t *seen, int absent_ok)
{
    int round;

    for (round = 0; round < PUT_ROUNDS; round++) {
        msm_mc_store_mode_e how = MSM_MC_SET;
        apr_status_t rv;

        if (seen->what == MSM_SEEN_FAILED && mode != MSM_WRITE_TOMBSTONE) {
            rv = observe(c, ctx, n, key, 0, seen);
            if (msm_mc_node_failed(rv)) {
                return rv;
            }
        }
        switch (msm_decide_write(mode, seen, meta)) {
        case MSM_DO_DROP:
            return MSM_STORE_GONE;
        case MSM_DO_NOTHING:
            return seen->what == MSM_SEEN_TOOBIG ? MSM_STORE_UNREADABLE
                                                 : APR_SUCCESS;
        case MSM_DO_ADD:
            if (!absent_ok) {
                msm_copy_meta_t newest;
                int gone = survey_others(c, ctx, n, key, &newest);
                absent_ok = 1;
                switch (msm_decide_add(mode, gone, &newest, meta)) {
                case MSM_DO_DROP:
                    return MSM_STORE_GONE;
                case MSM_DO_NOTHING:
                    return APR_SUCCESS;
                default:
                    break;
                }
            }
            how = MSM_MC_ADD;
            break;
        case MSM_DO_CAS:
            how = MSM_MC_CAS;
            break;
        case MSM_DO_SET:
            break;
        }
        rv = store_copy(c, ctx, n, how, key, meta, payload, len,
                        copy_exptime(c, meta, n), seen->cas);
        if (rv == APR_SUCCESS) {
            memset(seen, 0, sizeof(*seen));
            seen->what = MSM_SEEN_COPY;
            seen->meta = *meta;
            seen->payload = meta->kind == MSM_COPY_SESSION ? payload : "";
            seen->len = meta->kind == MSM_COPY_SESSION ? len : 0;
            return APR_SUCCESS;
        }
        if (rv != APR_EEXIST && rv != APR_NOTFOUND) {
            return rv;
        }
        seen->what = MSM_SEEN_FAILED;   /* it changed: look again */
    }
    store_log(ctx, MSM_LOG_WARNING, 0, "MSM00112: node %s: a session copy "
              "changed %d times while this request wrote it; not written",
              n->id, PUT_ROUNDS);
    return MSM_STORE_CONTENDED;
}

/* ---- deferred work ---- */

static void run_one(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                    const msm_later_t *op);

static void later_add(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      const msm_later_t *op)
{
    if (!c->backup_async) {
        run_one(c, ctx, op);
        return;
    }
    *(msm_later_t *)apr_array_push(ctx->later) = *op;
}

/* fresh: a backup of a new id, which no node can hold yet. */
static void later_copy(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                       later_kind_e kind, msm_node_t *n, const char *key,
                       const msm_copy_meta_t *meta, const char *payload,
                       apr_size_t len, int fresh)
{
    msm_later_t op;

    if (kind == LATER_BACKUP && !backup_on(c)) {
        return;
    }
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    op.node = n;
    op.key = key;
    op.meta = *meta;
    op.payload = payload;
    op.len = len;
    op.fresh = fresh;
    later_add(c, ctx, &op);
}

typedef apr_status_t backup_fn(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_node_t *n,
                               const msm_later_t *op);

/* Runs fn on the backup node of op->node: the first node after it, in
 * MsmNodes order, that is usable and does not fail. */
static void on_backup_node(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                           const msm_later_t *op, backup_fn *fn)
{
    msm_node_t *n;
    int pos = 0;

    while ((n = next_backup(c, ctx, op->node, &pos)) != NULL) {
        if (!node_failed(fn(c, ctx, n, op))) {
            return;
        }
    }
}

/* A replica: written only over older copies (writes may land out of
 * order: each request writes its backup after its response). */
static apr_status_t put_replica(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_node_t *n,
                                const msm_later_t *op)
{
    msm_copy_meta_t meta = op->meta;
    msm_seen_t seen;

    memset(&seen, 0, sizeof(seen));
    seen.what = op->fresh ? MSM_SEEN_NONE : MSM_SEEN_FAILED;
    return put_copy(c, ctx, n, op->key, MSM_WRITE_REPLICA, &meta, op->payload,
                    op->len, &seen, op->fresh);
}

/* A session only read keeps its primary alive through gats, but not its
 * backup: once half the idle time has passed since the last full write,
 * write both again. cas, so that a request that changed the session in
 * the meantime is not undone by this one's older copy. */
static void run_refresh(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                        const msm_later_t *op)
{
    msm_later_t fresh = *op;

    if (ctx->wrote) {
        return;                 /* this request's save wrote both already */
    }
    fresh.meta.written = apr_time_now();
    if (store_copy(c, ctx, op->node, MSM_MC_CAS, op->key, &fresh.meta,
                   op->payload, op->len, c->idle, op->cas) == APR_SUCCESS
        && backup_on(c)) {
        on_backup_node(c, ctx, &fresh, put_replica);
    }
}

/* Keeps a node's copy alive: touched when it holds this copy or a newer
 * one (never a tombstone: touching would shorten it), written where it is
 * missing or older (never where the id is destroyed elsewhere). */
static apr_status_t keep_copy(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_node_t *n, const msm_later_t *op)
{
    msm_seen_t seen;
    apr_status_t rv = observe(c, ctx, n, op->key, 0, &seen);

    if (rv != APR_SUCCESS && rv != APR_NOTFOUND) {
        return rv;
    }
    if (seen.what == MSM_SEEN_COPY && seen.meta.kind == MSM_COPY_DESTROYED) {
        return MSM_STORE_GONE;
    }
    if (seen.what == MSM_SEEN_COPY
        && msm_copy_order(&seen.meta, &op->meta) >= 0) {
        return msm_store_node_touch(c, ctx, n, op->key,
                                    copy_exptime(c, &seen.meta, n));
    }
    return put_replica(c, ctx, n, op);
}

static void run_keepalive(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          const msm_later_t *op)
{
    if (ctx->wrote || !usable(c, ctx, op->node)) {
        return;
    }
    if (keep_copy(c, ctx, op->node, op) != MSM_STORE_GONE && backup_on(c)) {
        on_backup_node(c, ctx, op, keep_copy);
    }
}

/* A read's gats gave the copy on n a primary's expiry; a tombstone or a
 * backup keeps twice that. */
static void run_touch(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                      const msm_later_t *op)
{
    if (usable(c, ctx, op->node)) {
        msm_store_node_touch(c, ctx, op->node, op->key,
                             copy_exptime(c, &op->meta, op->node));
    }
}

static void run_one(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                    const msm_later_t *op)
{
    switch (op->kind) {
    case LATER_BACKUP:
        on_backup_node(c, ctx, op, put_replica);
        break;
    case LATER_REPAIR:
        if (usable(c, ctx, op->node)) {
            put_replica(c, ctx, op->node, op);
        }
        break;
    case LATER_REFRESH:
        run_refresh(c, ctx, op);
        break;
    case LATER_KEEPALIVE:
        run_keepalive(c, ctx, op);
        break;
    case LATER_TOUCH:
        run_touch(c, ctx, op);
        break;
    }
}

/* ---- failures seen elsewhere ----
 *
 * A copy from before a node's last failure is served only after a search
 * (msm_decide_read). A server knows the failures it saw itself; one that
 * sent nothing to a node while it hung would trust the node's old copies
 * when it comes back, after another server moved or destroyed those
 * sessions. So each server publishes the failures it knows under
 * "<MsmKeyPrefix>msm-failures" on every live node (lines "<host>:<port>
 * <apr_time_t>", the latest failure per address) when it sees one, and
 * once per second, before a load reads memcached, reads the list of one
 * live node (another each second) and adds what that list lacks (a node
 * that restarted empty lost it). A server that just started (after a
 * kill -9 it forgot what it knew) reads every live node's list before its
 * first load reads a copy. */
#define FAILURES_KEY "msm-failures"
#define FAILURES_MAX 64                 /* addresses kept in the list */
#define LEARN_INTERVAL apr_time_from_sec(1)

typedef struct failure {
    const char *addr;
    apr_time_t at;
} failure_t;


/* Parses the published list (lines "<addr> <time>"; anything else is
 * skipped) into up to FAILURES_MAX entries; returns how many. */
static int parse_failures(msm_store_ctx_t *ctx, const char *text,
                          failure_t *out)
{
    char *copy = apr_pstrdup(ctx->pool, text ? text : ""), *last, *line;
    int n = 0;

    for (line = apr_strtok(copy, "\n", &last); line && n < FAILURES_MAX;
         line = apr_strtok(NULL, "\n", &last)) {
        char *space = strchr(line, ' '), *end;
        apr_int64_t at;

        if (space == NULL || space == line) {
            continue;
        }
        *space = '\0';
        at = apr_strtoi64(space + 1, &end, 10);
        if (*end == '\0' && at > 0) {
            out[n].addr = line;
            out[n++].at = (apr_time_t)at;
        }
    }
    return n;
}

/* Merges this server's failures into the list; 1 if it changed. */
static int merge_failures(const msm_store_conf_t *c, failure_t *list,
                          int *count)
{
    int i, j, changed = 0;

    for (i = 0; i < c->nodes->count; i++) {
        const msm_node_t *n = &c->nodes->node[i];
        apr_time_t at = msm_node_last_failure(n);

        if (at == 0) {
            continue;
        }
        for (j = 0; j < *count && strcmp(list[j].addr, n->address) != 0; j++) {
        }
        if (j == *count && *count < FAILURES_MAX) {
            list[(*count)++].addr = n->address;
            list[j].at = 0;
        }
        if (j < *count && list[j].at < at) {
            list[j].at = at;
            changed = 1;
        }
    }
    return changed;
}

static const char *format_failures(msm_store_ctx_t *ctx,
                                   const failure_t *list, int count)
{
    const char *text = "";
    int i;

    for (i = 0; i < count; i++) {
        text = apr_psprintf(ctx->pool, "%s%s %" APR_TIME_T_FMT "\n", text,
                            list[i].addr, list[i].at);
    }
    return text;
}

static void apply_failures(const msm_store_conf_t *c, const failure_t *list,
                           int count)
{
    int i, j;

    for (j = 0; j < c->nodes->count; j++) {
        msm_node_t *n = &c->nodes->node[j];
        for (i = 0; i < count; i++) {
            if (strcmp(n->address, list[i].addr) == 0) {
                msm_node_learn_failure(n, list[i].at);
            }
        }
    }
}

/* Learns the failures listed on n, and adds those this server knows and
 * the list lacks (a node that restarted empty lost its list): gets, then
 * cas or add when something is new to it. */
static void exchange_with(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          msm_node_t *n, const char *key)
{
    int tries;

    for (tries = 0; tries < 3; tries++) {
        failure_t list[FAILURES_MAX];
        msm_mc_item_t item;
        apr_status_t rv = msm_store_node_get(c, ctx, n, key, 0, &item);
        int count = rv == APR_SUCCESS ? parse_failures(ctx, item.value, list)
                                      : 0;
        const char *text;

        if (rv != APR_SUCCESS && rv != APR_NOTFOUND) {
            return;
        }
        apply_failures(c, list, count);
        if (!merge_failures(c, list, &count)) {
            return;                     /* it knows them all */
        }
        text = format_failures(ctx, list, count);
        rv = msm_store_node_store(c, ctx, n, rv == APR_SUCCESS ? MSM_MC_CAS
                                                               : MSM_MC_ADD,
                                  key, text, strlen(text), twice_idle(c),
                                  item.cas);
        if (rv != APR_EEXIST && rv != APR_NOTFOUND) {
            return;
        }
    }
}

/* With every live node (the one that failed does not hold its own
 * failure; one that restarted holds no list). */
static void exchange_failures(const msm_store_conf_t *c,
                              msm_store_ctx_t *ctx)
{
    const char *key = apr_pstrcat(ctx->pool, c->prefix, FAILURES_KEY, NULL);
    int i;

    for (i = 0; i < c->nodes->count; i++) {
        msm_node_t *n = &c->nodes->node[i];
        if (msm_node_is_live(n) && !failed_here(ctx, n)) {
            exchange_with(c, ctx, n, key);
        }
    }
}

/* Once per interval per server, before a load reads memcached: with one
 * live node, a different one each interval (one gets a second). A server
 * that just started (after a kill -9 it forgot what it knew) asks every
 * live node at once: the one it would ask first may be the node whose
 * failure it needs to learn, which that node's list does not hold. And
 * each of its requests does so until one of them has finished: a request
 * that went on while another one learned served a copy a move had
 * replaced while its node hung (both found by the checker, t/27 block 9). */
static void learn_failures(const msm_store_conf_t *c, msm_store_ctx_t *ctx)
{
    apr_time_t now = apr_time_now();
    int count = c->nodes->count, i, due;

    if (count < 2 || !(due = msm_nodes_learn_due(c->nodes, LEARN_INTERVAL,
                                                 now))) {
        return;
    }
    if (due == 2) {
        exchange_failures(c, ctx);
        msm_nodes_learned(c->nodes, apr_time_now());
        return;
    }
    for (i = 0; i < count; i++) {
        msm_node_t *n = &c->nodes->node[(now / LEARN_INTERVAL + i) % count];
        if (msm_node_is_live(n) && !failed_here(ctx, n)) {
            exchange_with(c, ctx, n, apr_pstrcat(ctx->pool, c->prefix,
                                                 FAILURES_KEY, NULL));
            return;
        }
    }
}

void msm_store_run_later(const msm_store_conf_t *c, msm_store_ctx_t *ctx)
{
    int i;

    for (i = 0; i < ctx->later->nelts; i++) {
        run_one(c, ctx, &APR_ARRAY_IDX(ctx->later, i, msm_later_t));
    }
    apr_array_clear(ctx->later);
    if (ctx->went_down) {
        ctx->went_down = 0;
        exchange_failures(c, ctx);
    }
}

/* ---- load ---- */

static void schedule_refresh(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             const msm_session_t *s, const char *key)
{
    msm_later_t op;

    memset(&op, 0, sizeof(op));
    op.kind = LATER_REFRESH;
    op.node = s->node;
    op.key = key;
    op.meta = s->meta;
    op.payload = s->value;
    op.len = s->len;
    op.cas = s->cas;
    later_add(c, ctx, &op);
}

static void maybe_refresh(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          const msm_session_t *s, const char *key)
{
    apr_time_t age = apr_time_now() - s->meta.written;

    if (backup_on(c) && age >= apr_time_from_sec(c->idle) / 2) {
        schedule_refresh(c, ctx, s, key);
    }
}

apr_status_t msm_store_claim(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_session_t *s)
{
    msm_copy_meta_t meta;
    apr_status_t rv;

    if (c->route == NULL || s->node == NULL || s->cas == 0) {
        return APR_EINVAL;
    }
    meta_session(c, &meta, s->meta.version + 1, s->node);
    rv = store_copy(c, ctx, s->node, MSM_MC_CAS, key_of(c, ctx, &s->id),
                    &meta, s->value, s->len, c->idle, s->cas);
    if (rv == APR_SUCCESS) {
        s->meta = meta;
        s->cas = 0;
    }
    return rv;
}

void msm_store_keepalive(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                         const msm_session_t *s)
{
    if (s->node) {
        later_copy(c, ctx, LATER_KEEPALIVE, s->node, key_of(c, ctx, &s->id),
                   &s->meta, s->value, s->len, 0);
    }
}

/* s's primary copy is the one seen on n from now on. */
static void take_copy(msm_session_t *s, msm_node_t *n, const msm_seen_t *seen)
{
    s->node = n;
    s->value = seen->payload;
    s->len = seen->len;
    s->meta = seen->meta;
    s->cas = seen->cas;
    if (strcmp(s->id.node, n->id) != 0) {
        apr_cpystrn(s->id.node, n->id, sizeof(s->id.node));
        s->id_changed = 1;
    }
}

static apr_status_t gone(const msm_store_conf_t *c, msm_session_t *s)
{
    MSM_STAT_INC(c->stats, load_miss);
    s->destroyed = 1;
    return APR_NOTFOUND;
}

static apr_status_t unreadable(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, const msm_session_t *s,
                               const msm_seen_t *at)
{
    if (at->sealed_with) {
        MSM_STAT_INC(c->stats, load_miss);  /* MSM00170 told why */
        return MSM_MC_ETOOBIG;
    }
    MSM_STAT_INC(c->stats, too_large);
    store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00107: session %s on node %s is "
              "larger than MsmMaxSessionSize (%" APR_SIZE_T_FMT "): not read",
              tag_of(ctx, &s->id), s->id.node, c->nodes->max_value);
    return MSM_MC_ETOOBIG;
}

/* Writes the newest copy found where the session lives from now on
 * (RESTORE: back onto its primary node; MOVE: as a new version whose
 * primary is the node holding it). *there ends as what that node holds. */
static apr_status_t reinstate(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              const msm_resolution_t *res,
                              const msm_seen_t *newest, msm_node_t *primary,
                              const char *key, msm_seen_t *there)
{
    msm_copy_meta_t meta = newest->meta;

    if (res->found == MSM_FOUND_MOVE) {
        meta_session(c, &meta, newest->meta.version + 1, primary);
    }
    return put_copy(c, ctx, primary, key, MSM_WRITE_REPLICA, &meta,
                    newest->payload, newest->len, there, 1);
}

/* Older copies that claim to be primaries are overwritten with the copy
 * served, whose header names the real primary. */
static void schedule_repairs(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             unsigned int stale, const char *key,
                             const msm_session_t *s)
{
    int i;

    for (i = 0; i < c->nodes->count && i < 32; i++) {
        if (stale & (1u << i)) {
            later_copy(c, ctx, LATER_REPAIR, &c->nodes->node[i], key,
                       &s->meta, s->value, s->len, 0);
        }
    }
}

/* Copies that outlived a destroy (their node was unreachable then) get a
 * tombstone, so that reads through them stop searching. */
static void schedule_tombstones(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, unsigned int stale,
                                const char *key, const msm_seen_t *seen)
{
    msm_copy_meta_t tomb;
    int i;

    for (i = 0; i < c->nodes->count && i < 32; i++) {
        if (stale & (1u << i)) {
            meta_init(&tomb, MSM_COPY_DESTROYED, seen[i].meta.version + 1,
                      NULL);
            later_copy(c, ctx, LATER_REPAIR, &c->nodes->node[i], key, &tomb,
                       NULL, 0, 0);
        }
    }
}

static apr_status_t adopt(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                          msm_session_t *s, const char *key,
                          const msm_search_t *search,
                          const msm_resolution_t *res, int suspect)
{
    msm_node_t *primary = &c->nodes->node[res->primary];
    const msm_seen_t *newest = &search->seen[res->newest];
    msm_seen_t there = search->seen[res->primary];
    msm_node_t *was = s->node;
    apr_status_t rv = APR_SUCCESS;

    if (res->found == MSM_FOUND_AT_PRIMARY) {
        there = *newest;
    }
    else {
        rv = reinstate(c, ctx, res, newest, primary, key, &there);
        if (rv == MSM_STORE_GONE) {
            return gone(c, s);
        }
        if (rv != APR_SUCCESS) {
            /* Served from where it was found; a later request tries
             * again. */
            primary = &c->nodes->node[res->newest];
            there = *newest;
        }
    }
    take_copy(s, primary, &there);
    MSM_STAT_INC(c->stats, load_hit);
    if (&c->nodes->node[res->newest] != was) {
        MSM_STAT_INC(c->stats, backup_hits);   /* not the cookie's node's */
    }
    if (res->found == MSM_FOUND_MOVE && rv == APR_SUCCESS) {
        MSM_STAT_INC(c->stats, relocated);
        store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00110: session %s moved to "
                  "node %s", tag_of(ctx, &s->id), primary->id);
    }
    if (res->found != MSM_FOUND_AT_PRIMARY && rv == APR_SUCCESS) {
        later_copy(c, ctx, LATER_BACKUP, primary, key, &s->meta, s->value,
                   s->len, 0);
    }
    else if (suspect && primary == was) {
        schedule_refresh(c, ctx, s, key);   /* no longer from before */
    }
    schedule_repairs(c, ctx, res->stale, key, s);
    return APR_SUCCESS;
}

/* The node the cookie names did not serve the session: ask every other
 * node and let msm_decide_found tell where it is. */
static apr_status_t search(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                           msm_session_t *s, const char *key,
                           const msm_seen_t *at_cookie, int suspect)
{
    int count = c->nodes->count, i;
    msm_seen_t *seen = apr_pcalloc(ctx->pool, sizeof(*seen) * count);
    const char **ids = apr_palloc(ctx->pool, sizeof(*ids) * count);
    apr_time_t *failed = apr_palloc(ctx->pool, sizeof(*failed) * count);
    msm_search_t sr;
    msm_resolution_t res;

    for (i = 0; i < count; i++) {
        msm_node_t *n = &c->nodes->node[i];
        ids[i] = n->id;
        failed[i] = msm_node_last_failure(n);
        if (n == s->node) {
            seen[i] = *at_cookie;
        }
        else if (usable(c, ctx, n)) {
            MSM_STAT_INC(c->stats, backup_reads);
            observe(c, ctx, n, key, 0, &seen[i]);
        }
    }
    sr.count = count;
    sr.node_ids = ids;
    sr.seen = seen;
    sr.last_failure = failed;
    sr.need_trusted = backup_on(c);
    msm_decide_found(&sr, &res);
    switch (res.found) {
    case MSM_FOUND_GONE:
        schedule_tombstones(c, ctx, res.stale, key, &seen[0]);
        return gone(c, s);
    case MSM_FOUND_NOTHING:
    case MSM_FOUND_UNKNOWN:
        MSM_STAT_INC(c->stats, load_miss);
        return res.found == MSM_FOUND_NOTHING ? APR_NOTFOUND : APR_EGENERAL;
    default:
        return adopt(c, ctx, s, key, &sr, &res, suspect);
    }
}

/* gats gave the copy read the expiry of a primary copy: a tombstone or a
 * backup gets its own back after the response. */
static void restore_expiry(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                           msm_node_t *n, const char *key,
                           const msm_seen_t *seen)
{
    if (seen->what == MSM_SEEN_COPY
        && copy_exptime(c, &seen->meta, n) != c->idle) {
        later_copy(c, ctx, LATER_TOUCH, n, key, &seen->meta, NULL, 0, 0);
    }
}

apr_status_t msm_store_load(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s)
{
    const char *key = key_of(c, ctx, &s->id);
    apr_time_t last_failure = 0;
    msm_seen_t at;

    s->node = msm_nodes_find(c->nodes, s->id.node);
    s->value = NULL;
    s->cas = 0;
    s->destroyed = 0;
    s->loaded_at = apr_time_now();
    memset(&s->meta, 0, sizeof(s->meta));
    memset(&at, 0, sizeof(at));
    learn_failures(c, ctx);
    if (usable(c, ctx, s->node)) {
        observe(c, ctx, s->node, key, 1, &at);
        last_failure = msm_node_last_failure(s->node);
        restore_expiry(c, ctx, s->node, key, &at);
    }
    switch (msm_decide_read(&at, s->id.node, last_failure)) {
    case MSM_READ_SERVE:
        take_copy(s, s->node, &at);
        MSM_STAT_INC(c->stats, load_hit);
        maybe_refresh(c, ctx, s, key);
        return APR_SUCCESS;
    case MSM_READ_GONE:
        return gone(c, s);
    case MSM_READ_UNREADABLE:
        return unreadable(c, ctx, s, &at);
    default:
        return search(c, ctx, s, key, &at,
                      at.what == MSM_SEEN_COPY
                      && strcmp(at.meta.primary, s->id.node) == 0);
    }
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
    store_log(ctx, MSM_LOG_ERR, 0, "MSM00106: %s%s not saved: %"
              APR_SIZE_T_FMT " bytes is more than MsmMaxSessionSize (%"
              APR_SIZE_T_FMT ")", s->has_id ? "session " : "new session",
              s->has_id ? tag_of(ctx, &s->id) : "", len,
              c->nodes->max_value);
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
        msm_seen_t none;
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
        apr_cpystrn(id.route, s->id.route, sizeof(id.route));
        meta_session(c, &s->meta, 1, n);
        memset(&none, 0, sizeof(none));
        none.what = MSM_SEEN_NONE;
        rv = put_copy(c, ctx, n, key_of(c, ctx, &id), MSM_WRITE_REPLICA,
                      &s->meta, value, len, &none, 1);
        if (rv == APR_SUCCESS) {
            s->id = id;
            s->has_id = 1;
            s->node = n;
            s->id_changed = 1;
            MSM_STAT_INC(c->stats, created);
            return APR_SUCCESS;
        }
        if (rv == MSM_MC_ETOOBIG) {
            return rv;
        }
    }
    return rv;
}

/* s was loaded before its node's last failure: while the node was
 * unreachable the session may have moved or been destroyed, and the cas
 * loaded could still match the node's old copy. Where does it live now? */
static apr_status_t where_now(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_session_t *s)
{
    msm_session_t now = *s;
    apr_status_t rv = msm_store_load(c, ctx, &now);

    if (rv == APR_SUCCESS) {
        s->node = now.node;
        s->cas = now.cas;
        if (now.meta.version > s->meta.version) {
            s->meta = now.meta;
        }
        if (strcmp(s->id.node, now.id.node) != 0) {
            apr_cpystrn(s->id.node, now.id.node, sizeof(s->id.node));
            s->id_changed = 1;
        }
        return APR_SUCCESS;
    }
    return now.destroyed ? MSM_STORE_GONE : rv;
}

/* Writes the session on n as the newest copy, with what n is known to
 * hold (*there; MSM_SEEN_FAILED: read it first). */
static apr_status_t write_primary(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_session_t *s,
                                  msm_node_t *n, msm_seen_t *there,
                                  const char *value, apr_size_t len)
{
    msm_copy_meta_t meta;
    apr_status_t rv;

    meta_session(c, &meta, s->meta.version + 1, n);
    rv = put_copy(c, ctx, n, key_of(c, ctx, &s->id), MSM_WRITE_PRIMARY, &meta,
                  value, len, there, 0);
    if (rv == APR_SUCCESS) {
        take_copy(s, n, there);
        s->cas = 0;
    }
    return rv;
}

/* The newest copy on s's node, or, when that node is down (or no longer
 * configured), on a live one: the cookie then names the new node. */
static apr_status_t save_existing(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_session_t *s,
                                  const char *value, apr_size_t len)
{
    msm_node_t *was = s->node, *n;
    apr_time_t failed_at = s->node ? msm_node_last_failure(s->node) : 0;
    msm_seen_t there;
    apr_status_t rv = APR_EGENERAL;

    if (failed_at != 0 && failed_at >= s->loaded_at
        && usable(c, ctx, s->node)) {
        rv = where_now(c, ctx, s);
        if (rv == MSM_STORE_GONE || rv == MSM_MC_ETOOBIG) {
            return rv == MSM_STORE_GONE ? rv : MSM_STORE_UNREADABLE;
        }
    }
    memset(&there, 0, sizeof(there));
    if (usable(c, ctx, s->node)) {
        if (s->cas) {                   /* as loaded from there */
            there.what = MSM_SEEN_COPY;
            there.meta = s->meta;
            there.cas = s->cas;
        }
        rv = write_primary(c, ctx, s, s->node, &there, value, len);
        if (!node_failed(rv)) {
            return rv;
        }
    }
    /* Its node is down. Other requests may be moving the session right
     * now: it goes where a read moves it (the node with the newest copy),
     * so that all of them agree on one primary. */
    if ((rv = where_now(c, ctx, s)) == MSM_STORE_GONE
        || rv == MSM_MC_ETOOBIG) {
        return rv == MSM_STORE_GONE ? rv : MSM_STORE_UNREADABLE;
    }
    if (rv == APR_SUCCESS && usable(c, ctx, s->node)) {
        memset(&there, 0, sizeof(there));
        rv = write_primary(c, ctx, s, s->node, &there, value, len);
        if (!node_failed(rv)) {
            return rv;
        }
    }
    if ((n = pick_new(c, ctx, msm_id_spread(&s->id))) == NULL) {
        log_unavailable(c, ctx);
        return APR_EGENERAL;
    }
    memset(&there, 0, sizeof(there));
    rv = write_primary(c, ctx, s, n, &there, value, len);
    if (rv == APR_SUCCESS && was) {
        MSM_STAT_INC(c->stats, relocated);
    }
    return rv;
}

apr_status_t msm_store_save(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s, const char *value,
                            apr_size_t len)
{
    int fresh = !s->has_id;
    apr_status_t rv;

    if (len > c->nodes->max_value) {
        return refuse_too_large(c, ctx, s, len);
    }
    rv = fresh ? save_new(c, ctx, s, value, len)
               : save_existing(c, ctx, s, value, len);
    if (rv == MSM_MC_ETOOBIG) {
        return refuse_too_large(c, ctx, s, len);
    }
    if (rv == MSM_STORE_UNREADABLE) {
        MSM_STAT_INC(c->stats, too_large);
        store_log(ctx, MSM_LOG_NOTICE, 0, "MSM00109: session %s not saved: "
                  "its copy on node %s cannot be read here (larger than "
                  "MsmMaxSessionSize (%" APR_SIZE_T_FMT "), or sealed with "
                  "a key this server lacks), and is not written over unread",
                  tag_of(ctx, &s->id), s->id.node, c->nodes->max_value);
    }
    if (rv == MSM_STORE_GONE) {
        store_log(ctx, MSM_LOG_INFO, 0, "MSM00111: session %s was destroyed "
                  "by another request: this request's change is dropped",
                  tag_of(ctx, &s->id));
        s->has_id = 0;
        s->destroyed = 1;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ctx->wrote = 1;
    s->value = value;
    s->len = len;
    MSM_STAT_INC(c->stats, saved);
    later_copy(c, ctx, LATER_BACKUP, s->node, key_of(c, ctx, &s->id),
               &s->meta, value, len, fresh);
    return APR_SUCCESS;
}

/* A tombstone on every node that can be reached, before the response: a
 * request that misses the primary must not find a live copy elsewhere
 * (and bring it back). Nodes that cannot be reached now are covered when
 * they return: their copies predate their failure (msm_decide_read). */
static void destroy_everywhere(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, const msm_id_t *id,
                               apr_uint64_t version)
{
    const char *key = key_of(c, ctx, id);
    msm_copy_meta_t tomb;
    int i;

    meta_init(&tomb, MSM_COPY_DESTROYED, version, NULL);
    for (i = 0; i < c->nodes->count; i++) {
        msm_node_t *n = &c->nodes->node[i];
        if (usable(c, ctx, n)) {
            msm_seen_t seen;
            memset(&seen, 0, sizeof(seen));
            put_copy(c, ctx, n, key, MSM_WRITE_TOMBSTONE, &tomb, NULL, 0,
                     &seen, 1);
        }
    }
}

apr_status_t msm_store_remove(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_session_t *s)
{
    if (s->has_id) {
        destroy_everywhere(c, ctx, &s->id, s->meta.version + 1);
        MSM_STAT_INC(c->stats, deleted);
    }
    ctx->wrote = 1;
    s->has_id = 0;
    s->node = NULL;
    s->value = NULL;
    s->id_changed = 1;
    return APR_SUCCESS;
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
    if (old.has_id) {
        /* At once: the old id may be known to an attacker. */
        destroy_everywhere(c, ctx, &old.id, old.meta.version + 1);
    }
    MSM_STAT_INC(c->stats, regenerated);
    return APR_SUCCESS;
}
