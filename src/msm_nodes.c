#include "msm_nodes.h"

#include <stdlib.h>
#include <string.h>
#include <apr_atomic.h>
#include <apr_lib.h>
#include <apr_strings.h>

/* 0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000 ms */
const apr_interval_time_t msm_latency_bounds[MSM_LATENCY_BUCKETS] = {
    100, 500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000
};

/* "unix:/path" (after "id:"): a memcached on this machine (memcached -s). */
#define UNIX_PREFIX "unix:"
#define UNIX_PATH_MAX 107           /* sockaddr_un.sun_path, NUL included */

static const char *parse_unix(apr_pool_t *p, const char *word,
                              const char *path, msm_node_t *n)
{
    const char *c;

    if (*path != '/') {
        return apr_psprintf(p, "'%s': a Unix socket needs an absolute path",
                            word);
    }
    if (strlen(path) > UNIX_PATH_MAX) {
        return apr_psprintf(p, "'%s': a Unix socket path has at most %d "
                            "characters", word, UNIX_PATH_MAX);
    }
    for (c = path; *c; c++) {
        /* It is a word of the failure lists and a JSON/Prometheus string. */
        if (apr_isspace(*c) || apr_iscntrl(*c) || *c == '"' || *c == '\\') {
            return apr_psprintf(p, "'%s': the socket path has a space, a "
                                "control character, '\"' or '\\'", word);
        }
    }
    n->host = apr_pstrdup(p, path);
    n->port = 0;
    n->transport = "unix";
    n->address = apr_pstrcat(p, UNIX_PREFIX, path, NULL);
    return NULL;
}

/* "host:port", "[v6]:port" (after "id:") */
static const char *parse_tcp(apr_pool_t *p, const char *word,
                             const char *host, msm_node_t *n)
{
    const char *portstr;
    char *end;
    long port;

    if (*host == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL || close[1] != ':') {
            return apr_psprintf(p, "'%s': bad [IPv6]:port", word);
        }
        n->host = apr_pstrmemdup(p, host + 1, (apr_size_t)(close - host - 1));
        portstr = close + 2;
    }
    else {
        const char *last = strrchr(host, ':');
        if (last == NULL || last == host) {
            return apr_psprintf(p, "'%s' is not id:host:port", word);
        }
        n->host = apr_pstrmemdup(p, host, (apr_size_t)(last - host));
        portstr = last + 1;
    }
    port = strtol(portstr, &end, 10);
    if (*n->host == '\0' || *portstr == '\0' || *end != '\0' || port < 1
        || port > 65535) {
        return apr_psprintf(p, "'%s': port must be 1-65535", word);
    }
    n->port = (apr_port_t)port;
    n->transport = "tcp";
    /* As it was written: an IPv6 address keeps its brackets in logs and
     * status ("[::1]:11211", not "::1:11211"). */
    n->address = apr_psprintf(p, strchr(n->host, ':') ? "[%s]:%u" : "%s:%u",
                              n->host, (unsigned)n->port);
    return NULL;
}

/* "id:host:port", "id:[v6]:port", "id:unix:/path" */
static const char *parse_node(apr_pool_t *p, const char *word, msm_node_t *n)
{
    const char *colon = strchr(word, ':'), *path;

    if (colon == NULL) {
        return apr_psprintf(p, "'%s' is not id:host:port", word);
    }
    n->id = apr_pstrmemdup(p, word, (apr_size_t)(colon - word));
    if (!msm_name_is_valid(n->id)) {
        return apr_psprintf(p, "node id '%s' must be 1-16 of A-Z a-z 0-9 _",
                            n->id);
    }
    /* "unix:<digits>" is a host named unix */
    path = colon + 1 + strlen(UNIX_PREFIX);
    if (strncmp(colon + 1, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0
        && *path != '\0' && !apr_isdigit(*path)) {
        return parse_unix(p, word, path, n);
    }
    return parse_tcp(p, word, colon + 1, n);
}

const char *msm_nodes_parse(apr_pool_t *p, int argc, char *const argv[],
                            msm_nodes_t **out)
{
    msm_nodes_t *nodes = apr_pcalloc(p, sizeof(*nodes));
    int i, j;

    if (argc < 1) {
        return "needs at least one id:host:port";
    }
    if (argc > MSM_NODES_MAX) {
        return apr_psprintf(p, "lists %d nodes; at most %d are supported",
                            argc, MSM_NODES_MAX);
    }
    nodes->node = apr_pcalloc(p, sizeof(msm_node_t) * (apr_size_t)argc);
    nodes->count = argc;
    for (i = 0; i < argc; i++) {
        const char *err = parse_node(p, argv[i], &nodes->node[i]);
        if (err) {
            return err;
        }
        nodes->node[i].index = i;
        for (j = 0; j < i; j++) {
            if (strcmp(nodes->node[j].id, nodes->node[i].id) == 0) {
                return apr_psprintf(p, "node id '%s' is used twice",
                                    nodes->node[i].id);
            }
        }
    }
    *out = nodes;
    return NULL;
}

const char *msm_nodes_set_failover(apr_pool_t *p, msm_nodes_t *nodes,
                                   int argc, char *const argv[])
{
    int i, failover = 0;

    for (i = 0; i < nodes->count; i++) {
        nodes->node[i].failover = 0;
    }
    for (i = 0; i < argc; i++) {
        msm_node_t *n = msm_nodes_find(nodes, argv[i]);
        if (n == NULL) {
            return apr_psprintf(p, "'%s' is not a node id of MsmNodes",
                                argv[i]);
        }
        failover += !n->failover;
        n->failover = 1;
    }
    if (failover == nodes->count) {
        return "lists every node: at least one must be a regular node";
    }
    return NULL;
}

const char *msm_nodes_resolve(msm_nodes_t *nodes, apr_pool_t *p)
{
    int i;

    for (i = 0; i < nodes->count; i++) {
        msm_node_t *n = &nodes->node[i];
        int unix_socket = strcmp(n->transport, "unix") == 0;
        apr_status_t rv = apr_sockaddr_info_get(&n->addr, n->host,
                                                unix_socket ? APR_UNIX
                                                            : APR_UNSPEC,
                                                n->port, 0, p);
        if (rv != APR_SUCCESS) {
            char buf[120];
            return apr_psprintf(p, "cannot resolve '%s' of node %s: %s",
                                n->host, n->id,
                                apr_strerror(rv, buf, sizeof(buf)));
        }
    }
    return NULL;
}

msm_nodes_t *msm_nodes_clone(apr_pool_t *p, const msm_nodes_t *nodes)
{
    msm_nodes_t *copy = apr_pmemdup(p, nodes, sizeof(*nodes));
    int i;

    copy->node = apr_pmemdup(p, nodes->node,
                             sizeof(msm_node_t) * (apr_size_t)nodes->count);
    copy->tls = NULL;               /* the copy's usage sets its own */
    for (i = 0; i < copy->count; i++) {
        copy->node[i].shared = NULL;
        copy->node[i].mc = NULL;
        copy->node[i].tls_name = NULL;
    }
    return copy;
}

msm_node_t *msm_nodes_find(const msm_nodes_t *nodes, const char *id)
{
    int i;

    for (i = 0; i < nodes->count; i++) {
        if (strcmp(nodes->node[i].id, id) == 0) {
            return &nodes->node[i];
        }
    }
    return NULL;
}

/* FNV-1a: the scope only tells configurations apart, and no client
 * chooses what it hashes. */
static apr_uint64_t fnv1a(apr_uint64_t h, const char *s, apr_size_t n)
{
    while (n--) {
        h ^= (unsigned char)*s++;
        h *= 0x100000001b3ULL;
    }
    return h;
}

apr_uint64_t msm_nodes_scope(const msm_nodes_t *nodes, const char *prefix)
{
    apr_uint64_t h = fnv1a(0xcbf29ce484222325ULL, prefix, strlen(prefix) + 1);
    int i;

    /* The resolved address: two spellings of one server share its keys. */
    for (i = 0; i < nodes->count; i++) {
        const msm_node_t *n = &nodes->node[i];
        char ip[64] = "", addr[300];
        int len;

        if (n->addr && n->port != 0) {
            apr_sockaddr_ip_getbuf(ip, sizeof(ip), n->addr);
        }
        len = ip[0] ? apr_snprintf(addr, sizeof(addr), "%s:%u", ip,
                                   (unsigned)n->port)
                    : apr_snprintf(addr, sizeof(addr), "%s", n->address);
        h = fnv1a(h, addr, (apr_size_t)len + 1);
    }
    return h;
}

/* ---- the health table ---- */

#define HEALTH_MAGIC 0x4d534d48u    /* "MSMH" */
#define ADDR_KEY_MAX 280            /* "host:port", host up to 255 */

typedef struct health_slot {
    char addr[ADDR_KEY_MAX];
    msm_node_shared_t shared;
} health_slot_t;

typedef struct health_table {
    apr_uint32_t magic;
    apr_uint32_t capacity;
    apr_uint32_t used;
    health_slot_t slot[1];
} health_table_t;

apr_size_t msm_health_size(int capacity)
{
    return APR_OFFSETOF(health_table_t, slot)
        + sizeof(health_slot_t) * (apr_size_t)(capacity > 0 ? capacity : 1);
}

void msm_health_format(void *mem, int capacity)
{
    health_table_t *t = mem;

    memset(mem, 0, msm_health_size(capacity));
    t->magic = HEALTH_MAGIC;
    t->capacity = (apr_uint32_t)capacity;
}

int msm_health_capacity(const void *mem)
{
    const health_table_t *t = mem;

    return t && t->magic == HEALTH_MAGIC ? (int)t->capacity : 0;
}

static msm_node_shared_t *health_slot(health_table_t *t, const char *addr)
{
    apr_uint32_t i;

    for (i = 0; i < t->used; i++) {
        if (strcmp(t->slot[i].addr, addr) == 0) {
            return &t->slot[i].shared;
        }
    }
    if (t->used == t->capacity) {
        return NULL;
    }
    apr_cpystrn(t->slot[t->used].addr, addr, ADDR_KEY_MAX);
    return &t->slot[t->used++].shared;
}

const char *msm_nodes_attach_health(msm_nodes_t *nodes, void *mem)
{
    int i;

    for (i = 0; i < nodes->count; i++) {
        msm_node_t *n = &nodes->node[i];

        if ((n->shared = health_slot(mem, n->address)) == NULL) {
            return "the node health table is full";
        }
    }
    return NULL;
}

apr_time_t msm_node_last_failure(const msm_node_t *n)
{
    return (apr_time_t)apr_atomic_read64(
        (volatile apr_uint64_t *)&n->shared->last_failure);
}

int msm_node_is_live(const msm_node_t *n)
{
    return apr_atomic_read32((volatile apr_uint32_t *)&n->shared->dead) == 0;
}

msm_node_use_e msm_node_usable(msm_node_t *n, apr_interval_time_t retry,
                               apr_time_t now)
{
    apr_uint64_t at;

    if (msm_node_is_live(n)) {
        return MSM_NODE_LIVE;
    }
    at = apr_atomic_read64(&n->shared->retry_at);
    if ((apr_uint64_t)now < at) {
        return MSM_NODE_SKIP;
    }
    /* Of all the children that see the retry is due, one moves it on and
     * probes; the others keep skipping the node. */
    if (apr_atomic_cas64(&n->shared->retry_at, (apr_uint64_t)(now + retry),
                         at) == at) {
        return MSM_NODE_PROBE;
    }
    return MSM_NODE_SKIP;
}

static void count_latency(msm_node_shared_t *sh, apr_interval_time_t took)
{
    int b = 0;

    while (b < MSM_LATENCY_BUCKETS && took > msm_latency_bounds[b]) {
        b++;
    }
    apr_atomic_inc64(&sh->latency[b]);
    apr_atomic_add64(&sh->latency_sum_us, (apr_uint64_t)(took > 0 ? took : 0));
}

/* The operation began before the node's last change of state (dead or
 * back): it was in flight meanwhile, in another thread or child. */
static int began_before_change(msm_node_shared_t *sh,
                               apr_interval_time_t took, apr_time_t now)
{
    return (apr_uint64_t)(now - took) < apr_atomic_read64(&sh->since);
}

msm_node_change_e msm_node_report(msm_node_t *n, apr_status_t rv,
                                  apr_interval_time_t retry,
                                  apr_interval_time_t took, apr_time_t now)
{
    msm_node_shared_t *sh = n->shared;

    apr_atomic_inc64(&sh->ops);
    count_latency(sh, took);
    if (!msm_mc_node_failed(rv)) {
        /* One that began before the node was marked dead says nothing
         * about it now. */
        if (began_before_change(sh, took, now)) {
            return MSM_NODE_UNCHANGED;
        }
        if (apr_atomic_cas32(&sh->dead, 0, 1) == 1) {
            apr_atomic_set64(&sh->since, (apr_uint64_t)now);
            return MSM_NODE_CAME_UP;
        }
        return MSM_NODE_UNCHANGED;
    }
    apr_atomic_inc64(&sh->errors);
    apr_atomic_set64(&sh->last_failure, (apr_uint64_t)now);
    if (rv == APR_TIMEUP) {
        apr_atomic_inc64(&sh->timeouts);
    }
    /* A failure of one that began before the node was marked dead is the
     * outage already reported, seen by another thread that was waiting
     * too: counted, not reported again, the probe not put off. */
    if (apr_atomic_read32(&sh->dead) && began_before_change(sh, took, now)) {
        return MSM_NODE_UNCHANGED;
    }
    apr_atomic_set64(&sh->retry_at, (apr_uint64_t)(now + retry));
    if (apr_atomic_cas32(&sh->dead, 1, 0) == 0) {
        apr_atomic_set64(&sh->since, (apr_uint64_t)now);
        return MSM_NODE_WENT_DOWN;
    }
    return MSM_NODE_STILL_DOWN;
}

/* The k-th (from 0) live node with the given failover flag, or NULL. */
static msm_node_t *nth_live(msm_nodes_t *nodes, int failover, unsigned int k)
{
    int i;

    for (i = 0; i < nodes->count; i++) {
        msm_node_t *n = &nodes->node[i];
        if (n->failover == failover && msm_node_is_live(n) && k-- == 0) {
            return n;
        }
    }
    return NULL;
}

static unsigned int count_live(const msm_nodes_t *nodes, int failover)
{
    unsigned int live = 0;
    int i;

    for (i = 0; i < nodes->count; i++) {
        live += nodes->node[i].failover == failover
                && msm_node_is_live(&nodes->node[i]);
    }
    return live;
}

msm_node_t *msm_nodes_pick_new(msm_nodes_t *nodes, unsigned int spread,
                               apr_time_t now)
{
    int failover, i;

    for (failover = 0; failover <= 1; failover++) {
        unsigned int live = count_live(nodes, failover);
        if (live > 0) {
            msm_node_t *n = nth_live(nodes, failover, spread % live);
            if (n) {            /* NULL only if one died in between */
                return n;
            }
        }
    }
    for (i = 0; i < nodes->count; i++) {
        msm_node_t *n = &nodes->node[(spread + (unsigned int)i)
                                     % (unsigned int)nodes->count];
        if (msm_node_usable(n, nodes->retry, now) != MSM_NODE_SKIP) {
            return n;
        }
    }
    return NULL;
}

msm_node_t *msm_nodes_next_backup_candidate(msm_nodes_t *nodes,
                                            const msm_node_t *from, int *pos,
                                            apr_time_t now)
{
    int span = from ? nodes->count - 1 : nodes->count;
    int base = from ? from->index + 1 : 0;

    while (*pos < span) {
        msm_node_t *n = &nodes->node[(base + (*pos)++) % nodes->count];
        if (msm_node_usable(n, nodes->retry, now) != MSM_NODE_SKIP) {
            return n;
        }
    }
    return NULL;
}

void msm_node_learn_failure(msm_node_t *n, apr_time_t t)
{
    volatile apr_uint64_t *at = &n->shared->last_failure;
    apr_uint64_t seen = apr_atomic_read64(at);

    while (seen < (apr_uint64_t)t) {
        apr_uint64_t was = apr_atomic_cas64(at, (apr_uint64_t)t, seen);
        if (was == seen) {
            return;
        }
        seen = was;
    }
}

/* One caller per interval: the one whose cas moves the time on. */
static int once_per(volatile apr_uint64_t *last_at,
                    apr_interval_time_t interval, apr_time_t now)
{
    apr_uint64_t last = apr_atomic_read64(last_at);

    if (last != 0 && (apr_uint64_t)now < last + (apr_uint64_t)interval) {
        return 0;
    }
    return apr_atomic_cas64(last_at, (apr_uint64_t)now, last) == last;
}

/* The first node's slot holds the list's throttles. */
int msm_nodes_learn_due(msm_nodes_t *nodes, apr_interval_time_t interval,
                        apr_time_t now)
{
    volatile apr_uint64_t *learn_at = &nodes->node[0].shared->learn_at;

    if (apr_atomic_read64(learn_at) == 0) {
        return 2;                       /* never learned yet */
    }
    return once_per(learn_at, interval, now);
}

void msm_nodes_learned(msm_nodes_t *nodes, apr_time_t now)
{
    apr_atomic_set64(&nodes->node[0].shared->learn_at, (apr_uint64_t)now);
}

int msm_nodes_all_dead_log_due(msm_nodes_t *nodes, apr_time_t now)
{
    return once_per(&nodes->node[0].shared->all_dead_logged, nodes->retry,
                    now);
}
