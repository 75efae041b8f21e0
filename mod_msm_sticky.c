/* Sticky mode: the local tier. Sessions this server's route owns are kept
 * in a table in shared memory (src/msm_tier.c) that every child reads
 * without a lock, so a read costs no memcached operation and no system
 * call; memcached keeps the copy another server takes over when this one
 * fails.
 *
 * An entry is keyed by the server's scope (its node addresses and key
 * prefix: the sessions it shares with others through memcached) and the
 * session id, and holds the copy's version: a put never replaces a newer
 * copy or a tombstone, so a child that read an older copy from memcached
 * cannot push it over a newer write of another child, nor bring back a
 * session destroyed meanwhile.
 *
 * A local entry is served only when the cookie carries this server's
 * route: a cookie with another route means a balancer failover happened
 * and memcached, not an older local copy, has the current session.
 *
 * The table outlives graceful restarts (its segment lives in the process
 * pool, found again through ap_retained_data) as long as MsmStickyCache
 * keeps its sizes; it holds no addresses and no per-generation state, and
 * old and new children share it during the restart. */
#include "mod_msm.h"

#include "apr_shm.h"
#include "apr_strings.h"
#include "ap_mpm.h"
#include "http_core.h"
#include "mpm_common.h"

APLOG_USE_MODULE(msm);

#define TIER_RETAINED_KEY "mod_msm sticky tier"

typedef struct tier_retained {
    apr_shm_t *shm;
    apr_size_t bytes;
    apr_size_t slot_bytes;
} tier_retained_t;

static msm_tier_t *tier;        /* NULL: no vhost is sticky */

static int any_sticky(server_rec *s)
{
    for (; s; s = s->next) {
        msm_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                     &msm_module);
        if (sc->sticky == 1 && sc->store.nodes) {
            return 1;
        }
    }
    return 0;
}

/* The table of the previous generation when the sizes did not change,
 * else a new one. */
static msm_tier_t *tier_segment(server_rec *s, apr_size_t bytes,
                                apr_size_t slot_bytes, int *kept_old)
{
    tier_retained_t *kept = ap_retained_data_get(TIER_RETAINED_KEY);
    const char *why = NULL;
    msm_tier_t *t;

    if (kept == NULL) {
        kept = ap_retained_data_create(TIER_RETAINED_KEY, sizeof(*kept));
    }
    *kept_old = 0;
    if (kept->shm && kept->bytes == bytes && kept->slot_bytes == slot_bytes
        && (t = msm_tier_attach(apr_shm_baseaddr_get(kept->shm), bytes,
                                slot_bytes, &why)) != NULL) {
        *kept_old = 1;
        return t;
    }
    /* A segment of other sizes stays with the old children using it. */
    if (apr_shm_create(&kept->shm, bytes, NULL, s->process->pool)
            != APR_SUCCESS) {
        kept->shm = NULL;
        return NULL;
    }
    kept->bytes = bytes;
    kept->slot_bytes = slot_bytes;
    return msm_tier_format(apr_shm_baseaddr_get(kept->shm), bytes,
                           slot_bytes);
}

apr_status_t msm_sticky_post_config(apr_pool_t *p, server_rec *s)
{
    msm_server_conf_t *main_conf = ap_get_module_config(s->module_config,
                                                        &msm_module);
    apr_size_t bytes = (apr_size_t)(main_conf->sticky_bytes != MSM_UNSET
                                    ? main_conf->sticky_bytes
                                    : (apr_int64_t)MSM_TIER_DEFAULT_BYTES);
    apr_size_t slot_bytes = (apr_size_t)(main_conf->sticky_slot != MSM_UNSET
                                         ? main_conf->sticky_slot
                                         : MSM_TIER_DEFAULT_SLOT_BYTES);
    int kept_old;

    tier = NULL;
    /* httpd reads its configuration twice at start-up: the first pass
     * serves no request and needs no tier. */
    if (!any_sticky(s)
        || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return APR_SUCCESS;
    }
    tier = tier_segment(s, bytes, slot_bytes, &kept_old);
    if (tier == NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, MSMLOGNO(00150)
                     "cannot create %" APR_SIZE_T_FMT " bytes of shared "
                     "memory for the sticky tier (MsmStickyCache)", bytes);
        return APR_EGENERAL;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, MSMLOGNO(00151)
                 "sticky tier: %u slots of %" APR_SIZE_T_FMT " bytes "
                 "(sessions up to %" APR_SIZE_T_FMT " bytes), %s",
                 msm_tier_slots(bytes, slot_bytes), slot_bytes,
                 msm_tier_payload_max(tier),
                 kept_old ? "kept from before the restart" : "new");
    return APR_SUCCESS;
}

/* The parent, about once a second: writers that died holding a bucket's
 * lock (a child killed -9) are noticed by the next writer anyway; this
 * also covers a dead writer's pid being reused before that. */
static int sticky_monitor(apr_pool_t *p, server_rec *s)
{
    if (tier) {
        msm_tier_recover(tier);
    }
    return DECLINED;
}

void msm_sticky_register_hooks(apr_pool_t *p)
{
    ap_hook_monitor(sticky_monitor, NULL, NULL, APR_HOOK_MIDDLE);
}

int msm_sticky_tier_stats(msm_tier_stats_t *out)
{
    if (tier == NULL) {
        return 0;
    }
    msm_tier_stats(tier, out);
    return 1;
}

/* ---- entries ---- */

/* ids are validated lowercase hex */
static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static void key_of(const msm_req_t *q, const msm_id_t *id,
                   msm_tier_key_t *key)
{
    int i;

    key->scope = q->sc->scope;
    for (i = 0; i < MSM_ID_BYTES; i++) {
        key->id[i] = (unsigned char)(hex_value(id->hex[2 * i]) << 4
                                     | hex_value(id->hex[2 * i + 1]));
    }
}

static void put(msm_req_t *q, const msm_id_t *id, const msm_copy_meta_t *meta,
                const char *value, apr_size_t len)
{
    msm_tier_key_t key;

    key_of(q, id, &key);
    msm_tier_put(tier, &key, meta, apr_time_now(), value, len);
}

static int own_route(const msm_req_t *q)
{
    return strcmp(q->s.id.route, q->sc->route) == 0;
}

int msm_sticky_get(msm_req_t *q)
{
    apr_size_t size = tier ? msm_tier_payload_max(tier) + 1 : 0;
    msm_tier_key_t key;
    msm_tier_entry_t e;
    msm_node_t *node;
    char *buf;

    if (tier == NULL || !own_route(q)) {
        return 0;
    }
    key_of(q, &q->s.id, &key);
    buf = apr_palloc(q->r->pool, size);
    switch (msm_tier_get(tier, &key, q->r->request_time, &e, buf, size)) {
    case MSM_TIER_DESTROYED:
        q->s.has_id = 0;
        q->s.destroyed = 1;
        return 1;
    case MSM_TIER_HIT:
        break;
    default:
        return 0;
    }
    if ((node = msm_nodes_find(q->sc->store.nodes, e.meta.primary)) == NULL) {
        return 0;               /* its node is no longer configured */
    }
    q->s.node = node;
    if (strcmp(q->s.id.node, node->id) != 0) {
        /* an older cookie: the session moved since */
        apr_cpystrn(q->s.id.node, node->id, sizeof(q->s.id.node));
        q->s.id_changed = 1;
    }
    q->s.value = buf;
    q->s.len = e.len;
    q->s.meta = e.meta;
    /* the tier keeps only copies this server wrote */
    apr_cpystrn(q->s.meta.route, q->sc->route, sizeof(q->s.meta.route));
    q->s.cas = 0;
    q->s.loaded_at = q->r->request_time;
    q->from_local = 1;
    MSM_STAT_INC(q->sc->store.stats, local_hits);
    MSM_STAT_INC(q->sc->store.stats, load_hit);
    /* memcached's copies must outlive a session only read from here. */
    if (q->r->request_time - e.touched
        >= apr_time_from_sec(q->sc->store.idle) / 4) {
        msm_store_keepalive(&q->sc->store, &q->ctx, &q->s);
        msm_tier_touch(tier, &key, &e.meta, q->r->request_time);
    }
    return 1;
}

static int written_here(const msm_req_t *q)
{
    return strcmp(q->s.meta.route, q->sc->route) == 0;
}

void msm_sticky_loaded(msm_req_t *q)
{
    if (tier == NULL) {
        return;
    }
    if (!own_route(q)) {
        /* A takeover (or this server's own session coming back after
         * another served it): the cookie moves to our route, and the copy
         * in memcached is written again naming it, so that the server
         * that served it before no longer keeps it locally (below). */
        q->s.id_changed = 1;
        if (q->s.id.route[0]) {
            MSM_STAT_INC(q->sc->store.stats, takeovers);
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, q->r, MSMLOGNO(00153)
                          "session %s taken over from route %s",
                          msm_req_tag(q), q->s.id.route);
        }
        if (!written_here(q)) {
            msm_store_claim(&q->sc->store, &q->ctx, &q->s);
        }
    }
    /* A copy another route wrote, under our own route's cookie: an old
     * cookie of ours, while another server serves the session. It is
     * served, not kept: that server's next writes would not reach our
     * tier. */
    if (written_here(q)) {
        put(q, &q->s.id, &q->s.meta, q->s.value, q->s.len);
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, q->r, MSMLOGNO(00154)
                      "session %s last written by route %s: not kept "
                      "locally", msm_req_tag(q),
                      q->s.meta.route[0] ? q->s.meta.route : "(none)");
    }
}

void msm_sticky_put(msm_req_t *q, const char *value, apr_size_t len)
{
    if (tier) {
        put(q, &q->s.id, &q->s.meta, value, len);
    }
}

void msm_sticky_destroyed(msm_req_t *q, const msm_id_t *id,
                          apr_uint64_t version)
{
    msm_copy_meta_t tomb;

    if (tier == NULL) {
        return;
    }
    memset(&tomb, 0, sizeof(tomb));
    tomb.kind = MSM_COPY_DESTROYED;
    tomb.version = version;
    tomb.written = apr_time_now();
    put(q, id, &tomb, NULL, 0);
}
