/* Sticky mode: the local tier. Sessions this server's route owns are kept
 * in a mod_socache cache (shmcb by default) shared by all children, so a
 * read costs no memcached operation; memcached keeps the copy another
 * server takes over when this one fails.
 *
 * A local entry is served only when the cookie carries this server's route:
 * a cookie with another route means a balancer failover happened and
 * memcached, not an older local copy, has the current session. */
#include "mod_msm.h"

#include "apr_strings.h"
#include "ap_mpm.h"
#include "http_protocol.h"
#include "util_mutex.h"

APLOG_USE_MODULE(msm);

#define STICKY_MUTEX   "msm-sticky"
#define STICKY_MAGIC   0x4d534d31u     /* "MSM1" */
#define STICKY_MAX_ENTRY (64 * 1024)   /* larger sessions skip the tier */

static const ap_socache_provider_t *provider;
static ap_socache_instance_t *cache;
static apr_global_mutex_t *mutex;

/* Stored in front of the session value. */
typedef struct sticky_entry {
    apr_uint32_t magic;
    apr_uint32_t written_at;    /* memcached flags of the copy it mirrors */
    apr_time_t touched_at;      /* last refresh of memcached's expiry */
    char node[MSM_NAME_MAX + 1];
} sticky_entry_t;

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

static int sticky_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp)
{
    return ap_mutex_register(pconf, STICKY_MUTEX, NULL, APR_LOCK_DEFAULT, 0)
           == APR_SUCCESS ? OK : !OK;
}

void msm_sticky_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(sticky_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
}

apr_status_t msm_sticky_post_config(apr_pool_t *p, server_rec *s)
{
    static const struct ap_socache_hints hints = { 40, 512, 0 };
    msm_server_conf_t *main_conf = ap_get_module_config(s->module_config,
                                                        &msm_module);
    const char *spec = main_conf->sticky_cache
        ? main_conf->sticky_cache
        : MSM_DEFAULT_STICKY_CACHE ":" MSM_DEFAULT_STICKY_CACHE_ARGS;
    const char *colon = strchr(spec, ':');
    const char *name = colon ? apr_pstrmemdup(p, spec, colon - spec) : spec;
    const char *err;
    apr_status_t rv;

    provider = NULL;
    cache = NULL;
    if (!any_sticky(s)) {
        return APR_SUCCESS;
    }
    provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                                  AP_SOCACHE_PROVIDER_VERSION);
    if (provider == NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, MSMLOGNO(00150)
                     "MsmSticky: socache provider '%s' is not loaded "
                     "(LoadModule socache_%s_module)", name, name);
        return APR_EGENERAL;
    }
    err = provider->create(&cache, colon ? colon + 1 : NULL, p, p);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, MSMLOGNO(00151)
                     "MsmStickyCache: %s", err);
        return APR_EGENERAL;
    }
    if (provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        rv = ap_global_mutex_create(&mutex, NULL, STICKY_MUTEX, NULL, s, p, 0);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    rv = provider->init(cache, "msm-sticky", &hints, s, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MSMLOGNO(00152)
                     "cannot initialise the sticky session cache");
    }
    return rv;
}

void msm_sticky_child_init(apr_pool_t *p, server_rec *s)
{
    if (mutex) {
        apr_global_mutex_child_init(&mutex,
                                    apr_global_mutex_lockfile(mutex), p);
    }
}

/* ids are validated lowercase hex */
static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* shmcb picks its subcache by the key's first byte: a byte of the random
 * id comes first (hex digits alone would reach 16 subcaches at most; a
 * key prefix would put every session in one). */
static const char *entry_key(const msm_req_t *q, unsigned int *len)
{
    const char *hex = q->s.id.hex;
    char *key = apr_pstrcat(q->r->pool, "_", q->sc->store.prefix, hex, NULL);

    key[0] = (char)(hex_value(hex[0]) << 4 | hex_value(hex[1]));
    *len = (unsigned int)strlen(key + 1) + 1;
    return key;
}

static void cache_lock(void)
{
    if (mutex) {
        apr_global_mutex_lock(mutex);
    }
}

static void cache_unlock(void)
{
    if (mutex) {
        apr_global_mutex_unlock(mutex);
    }
}

/* The entry of q's session, or NULL. */
static const sticky_entry_t *entry_get(msm_req_t *q, const char **value,
                                       apr_size_t *len)
{
    unsigned int klen, dlen = STICKY_MAX_ENTRY + sizeof(sticky_entry_t);
    const char *key = entry_key(q, &klen);
    unsigned char *data = apr_palloc(q->r->pool, dlen + 1);
    apr_status_t rv;

    cache_lock();
    rv = provider->retrieve(cache, q->r->server, (const unsigned char *)key,
                            klen, data, &dlen, q->r->pool);
    cache_unlock();
    if (rv != APR_SUCCESS || dlen < sizeof(sticky_entry_t)
        || ((sticky_entry_t *)data)->magic != STICKY_MAGIC) {
        return NULL;
    }
    data[dlen] = '\0';
    *value = (const char *)data + sizeof(sticky_entry_t);
    *len = dlen - sizeof(sticky_entry_t);
    return (const sticky_entry_t *)data;
}

static void entry_put(msm_req_t *q, const char *value, apr_size_t len,
                      apr_time_t touched_at)
{
    unsigned int klen;
    const char *key = entry_key(q, &klen);
    apr_size_t dlen = sizeof(sticky_entry_t) + len;
    unsigned char *data;
    sticky_entry_t e;

    if (len > STICKY_MAX_ENTRY || !q->s.node) {
        return;
    }
    memset(&e, 0, sizeof(e));
    e.magic = STICKY_MAGIC;
    e.written_at = q->s.written_at;
    e.touched_at = touched_at;
    apr_cpystrn(e.node, q->s.node->id, sizeof(e.node));
    data = apr_palloc(q->r->pool, dlen);
    memcpy(data, &e, sizeof(e));
    memcpy(data + sizeof(e), value, len);
    cache_lock();
    provider->store(cache, q->r->server, (const unsigned char *)key, klen,
                    apr_time_now()
                    + apr_time_from_sec(q->sc->store.idle),
                    data, (unsigned int)dlen, q->r->pool);
    cache_unlock();
}

static int own_route(const msm_req_t *q)
{
    return strcmp(q->s.id.route, q->sc->route) == 0;
}

int msm_sticky_get(msm_req_t *q)
{
    const sticky_entry_t *e;
    const char *value;
    apr_size_t len;
    apr_time_t now;

    if (cache == NULL || !own_route(q)
        || (e = entry_get(q, &value, &len)) == NULL
        || strcmp(e->node, q->s.id.node) != 0) {
        return 0;
    }
    q->s.node = msm_nodes_find(q->sc->store.nodes, q->s.id.node);
    q->s.value = value;
    q->s.len = len;
    q->s.written_at = e->written_at;
    q->s.cas = 0;
    q->from_local = 1;
    MSM_STAT_INC(q->sc->store.stats, local_hits);
    MSM_STAT_INC(q->sc->store.stats, load_hit);
    /* memcached's copies must outlive a session only read from here. */
    now = apr_time_now();
    if (now - e->touched_at >= apr_time_from_sec(q->sc->store.idle) / 4) {
        msm_store_keepalive(&q->sc->store, &q->ctx, &q->s);
        entry_put(q, value, len, now);
    }
    return 1;
}

void msm_sticky_loaded(msm_req_t *q)
{
    const sticky_entry_t *e;
    const char *value;
    apr_size_t len;

    if (cache == NULL) {
        return;
    }
    if (!own_route(q)) {
        /* A takeover (or this server's own session coming back after
         * another served it): the cookie moves to our route, and a local
         * copy from before is stale. */
        q->cookie = MSM_COOKIE_SET;
        if (q->s.id.route[0]) {
            MSM_STAT_INC(q->sc->store.stats, takeovers);
        }
        e = entry_get(q, &value, &len);
        if (e && (e->written_at != q->s.written_at || len != q->s.len
                  || memcmp(value, q->s.value, len) != 0)) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, MSMLOGNO(00153)
                          "session %s-%s: local copy was older than "
                          "memcached's (route %s to %s), replaced",
                          q->s.id.hex, q->s.id.node, q->s.id.route,
                          q->sc->route);
        }
    }
    entry_put(q, q->s.value, q->s.len, apr_time_now());
}

void msm_sticky_put(msm_req_t *q, const char *value, apr_size_t len)
{
    if (cache) {
        entry_put(q, value, len, apr_time_now());
    }
}

void msm_sticky_remove(msm_req_t *q)
{
    unsigned int klen;
    const char *key;

    if (cache == NULL) {
        return;
    }
    key = entry_key(q, &klen);
    cache_lock();
    provider->remove(cache, q->r->server, (const unsigned char *)key, klen,
                     q->r->pool);
    cache_unlock();
}
