/* msm_store: sessions on memcached nodes with backup copies, against two
 * real memcached servers (MSM_TEST_MEMCACHED="port1,port2") and closed
 * ports for dead nodes. Skipped (77) without them. */
#include "unit.h"
#include "msm_store.h"

#include <signal.h>
#include <unistd.h>
#include <apr_strings.h>

#define MS(n) apr_time_from_msec(n)
#define TIMEOUT MS(300)
#define MAXV (64 * 1024)
#define IDLE 600

static apr_pool_t *root;
static const char *prefix;
static int P1, P2;              /* live memcached ports */
static int D1, D2;              /* closed ports */

/* ---- raw access to the memcached servers, to look behind the store ---- */

static msm_mc_server_t *raw1, *raw2;

static msm_mc_server_t *raw(int port)
{
    msm_mc_server_t **s = port == P1 ? &raw1 : &raw2;

    if (*s == NULL) {
        apr_sockaddr_t *sa;
        apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, (apr_port_t)port,
                              0, root);
        msm_mc_server_create(root, sa, MS(1000), 1024 * 1024, 2, NULL, s);
    }
    return *s;
}

/* The value under key on the server at port, or NULL. */
static const char *raw_get(int port, const char *key, apr_uint32_t *flags)
{
    msm_mc_item_t item;

    if (msm_mc_get(raw(port), root, key, &item) != APR_SUCCESS) {
        return NULL;
    }
    if (flags) {
        *flags = item.flags;
    }
    return item.value;
}

/* The remaining time to live of key (meta get "mg <key> t"): seconds,
 * -1 for none, -2 when the key is missing, -3 on any error. */
static int raw_ttl(int port, const char *key)
{
    apr_pool_t *p;
    apr_sockaddr_t *sa;
    apr_socket_t *sock;
    char buf[128];
    apr_size_t len = 0, n;
    const char *req;
    int ttl = -3;

    apr_pool_create(&p, root);
    req = apr_psprintf(p, "mg %s t\r\n", key);
    n = strlen(req);
    if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, (apr_port_t)port,
                              0, p) != APR_SUCCESS
        || apr_socket_create(&sock, APR_INET, SOCK_STREAM, APR_PROTO_TCP, p)
           != APR_SUCCESS) {
        apr_pool_destroy(p);
        return ttl;
    }
    apr_socket_timeout_set(sock, apr_time_from_sec(1));
    if (apr_socket_connect(sock, sa) == APR_SUCCESS
        && apr_socket_send(sock, req, &n) == APR_SUCCESS) {
        while (len < sizeof(buf) - 1 && !memchr(buf, '\n', len)) {
            n = sizeof(buf) - 1 - len;
            if (apr_socket_recv(sock, buf + len, &n) != APR_SUCCESS) {
                break;
            }
            len += n;
        }
        buf[len] = '\0';
        if (strncmp(buf, "HD t", 4) == 0) {
            ttl = atoi(buf + 4);
        }
        else if (strncmp(buf, "EN", 2) == 0) {
            ttl = -2;
        }
    }
    apr_socket_close(sock);
    apr_pool_destroy(p);
    return ttl;
}

/* ttl within [want - 3, want] */
#define CHECK_TTL(port, key, want) \
    do { \
        int ttl_ = raw_ttl(port, key); \
        CHECK_MSG(ttl_ <= (want) && ttl_ >= (want) - 3, \
                  "ttl of %s is %d, expected %d", key, ttl_, (int)(want)); \
    } while (0)

/* operations made on all nodes, from the shared counters */
static apr_uint64_t ops_of(const msm_nodes_t *nodes)
{
    apr_uint64_t sum = 0;
    int i;

    for (i = 0; i < nodes->count; i++) {
        sum += nodes->node[i].shared->ops;
    }
    return sum;
}

static int now_sec(void)
{
    return (int)apr_time_sec(apr_time_now());
}

/* ---- nodes, config, log ---- */

static int port_of(const msm_node_t *n)
{
    return n ? n->port : -1;
}

/* every node list made, to close its idle connections at the end */
static msm_nodes_t *all_nodes[64];
static int nall;

static void close_all(void)
{
    int i, j;

    for (i = 0; i < nall; i++) {
        for (j = 0; j < all_nodes[i]->count; j++) {
            msm_mc_server_close_idle(all_nodes[i]->node[j].mc);
        }
    }
    if (raw1) {
        msm_mc_server_close_idle(raw1);
    }
    if (raw2) {
        msm_mc_server_close_idle(raw2);
    }
}

/* ids[i] on 127.0.0.1:ports[i], shared memory of their own. */
static msm_nodes_t *mk_nodes(apr_pool_t *p, int count, const char *const *ids,
                             const int *ports)
{
    char **argv = apr_pcalloc(p, sizeof(char *) * (apr_size_t)count);
    msm_nodes_t *nodes;
    const char *err;
    int i;

    for (i = 0; i < count; i++) {
        argv[i] = apr_psprintf(p, "%s:127.0.0.1:%d", ids[i], ports[i]);
    }
    err = msm_nodes_parse(p, count, argv, &nodes);
    if (err == NULL) {
        err = msm_nodes_resolve(nodes, p);
    }
    if (err) {
        fprintf(stderr, "nodes: %s\n", err);
        exit(2);
    }
    msm_nodes_attach_shared(nodes, apr_pcalloc(p,
                                               msm_nodes_shared_size(nodes)));
    nodes->retry = apr_time_from_sec(30);
    nodes->timeout = TIMEOUT;
    nodes->max_value = MAXV;
    for (i = 0; i < count; i++) {
        if (msm_mc_server_create(p, nodes->node[i].addr, TIMEOUT, MAXV, 4,
                                 NULL, &nodes->node[i].mc) != APR_SUCCESS) {
            exit(2);
        }
    }
    if (nall < 64) {
        all_nodes[nall++] = nodes;
    }
    return nodes;
}

static msm_nodes_t *mk2(apr_pool_t *p, const char *id1, int port1,
                        const char *id2, int port2)
{
    const char *ids[2];
    int ports[2];

    ids[0] = id1;
    ids[1] = id2;
    ports[0] = port1;
    ports[1] = port2;
    return mk_nodes(p, 2, ids, ports);
}

#define LOGMAX 64

typedef struct {
    int n;
    int level[LOGMAX];
    char msg[LOGMAX][300];
} logcap_t;

static void cap_log(void *baton, int level, apr_status_t rv, const char *msg)
{
    logcap_t *l = baton;

    if (l->n < LOGMAX) {
        l->level[l->n] = level;
        apr_cpystrn(l->msg[l->n], msg, sizeof(l->msg[0]));
        l->n++;
    }
}

static int log_count(const logcap_t *l, const char *code)
{
    int i, n = 0;

    for (i = 0; i < l->n; i++) {
        n += strncmp(l->msg[i], code, strlen(code)) == 0;
    }
    return n;
}

static void log_dump(const logcap_t *l)
{
    int i;

    for (i = 0; i < l->n; i++) {
        fprintf(stderr, "    log[%d] %d: %s\n", i, l->level[i], l->msg[i]);
    }
}

typedef struct {
    apr_pool_t *p;
    msm_store_conf_t c;
    msm_stats_t stats;
    logcap_t log;
    msm_store_ctx_t ctx;
} fx_t;

static void fx_init(fx_t *f, msm_nodes_t *nodes, int async)
{
    memset(f, 0, sizeof(*f));
    apr_pool_create(&f->p, root);
    f->c.nodes = nodes;
    f->c.prefix = prefix;
    f->c.idle = IDLE;
    f->c.backup = 1;
    f->c.backup_async = async;
    f->c.stats = &f->stats;
    msm_store_ctx_init(&f->ctx, f->p, cap_log, &f->log);
}

/* The next request: a fresh context. */
static void fx_request(fx_t *f)
{
    msm_store_ctx_init(&f->ctx, f->p, cap_log, &f->log);
}

static const char *key_of(const char *ns, const msm_id_t *id)
{
    return msm_id_key(root, ns, prefix, id);
}

/* A session as a request with its cookie sees it before the load. */
static void from_cookie(msm_session_t *s, const msm_id_t *id)
{
    memset(s, 0, sizeof(*s));
    s->id = *id;
    s->has_id = 1;
}

static msm_node_t *other_node(msm_nodes_t *nodes, const msm_node_t *n)
{
    return &nodes->node[(n->index + 1) % nodes->count];
}

/* Saves a new session with value v; the caller's fixture is left at a
 * fresh request. */
static int save_new(fx_t *f, msm_session_t *s, const char *v)
{
    apr_status_t rv;

    memset(s, 0, sizeof(*s));
    fx_request(f);
    rv = msm_store_save(&f->c, &f->ctx, s, v, strlen(v));
    msm_store_run_later(&f->c, &f->ctx);
    fx_request(f);
    return rv == APR_SUCCESS && s->has_id && s->node;
}

/* ---- scenarios ---- */

static void test_save_new(void)
{
    fx_t f;
    msm_session_t s;
    msm_node_t *other;
    apr_uint32_t flags = 0;
    const char *v;
    int i, on[2] = { 0, 0 }, t0 = now_sec();

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, "hello=world", 11),
                 APR_SUCCESS);
    CHECK_INT_EQ(s.has_id, 1);
    CHECK_INT_EQ(s.id_changed, 1);
    CHECK_INT_EQ(f.ctx.wrote, 1);
    CHECK(s.node != NULL);
    if (s.node == NULL) {
        return;
    }
    CHECK_STR_EQ(s.id.node, s.node->id);
    CHECK_INT_EQ(strlen(s.id.hex), MSM_ID_HEX_LEN);
    CHECK(s.node == &f.c.nodes->node[0] || s.node == &f.c.nodes->node[1]);
    CHECK(msm_node_is_live(s.node));
    CHECK(s.written_at >= (apr_uint32_t)t0);
    other = other_node(f.c.nodes, s.node);
    /* the primary is on its node, and only there */
    v = raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), &flags);
    CHECK_STR_EQ(v, "hello=world");
    CHECK(flags >= (apr_uint32_t)t0 && flags <= (apr_uint32_t)now_sec());
    CHECK(raw_get(port_of(other), key_of(MSM_NS_SESSION, &s.id), NULL)
          == NULL);
    /* backup_async: the backup waits for run_later */
    CHECK(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL)
          == NULL);
    CHECK_INT_EQ(f.ctx.later->nelts, 1);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_INT_EQ(f.ctx.later->nelts, 0);
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id),
                         NULL), "hello=world");
    CHECK(raw_get(port_of(s.node), key_of(MSM_NS_BACKUP, &s.id), NULL)
          == NULL);
    /* the primary lives MsmIdleTimeout, its backup twice that */
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), IDLE);
    CHECK_TTL(port_of(other), key_of(MSM_NS_BACKUP, &s.id), 2 * IDLE);
    CHECK_INT_EQ(f.stats.created, 1);
    CHECK_INT_EQ(f.stats.saved, 1);
    CHECK_INT_EQ(f.log.n, 0);

    /* new sessions spread over both nodes */
    for (i = 0; i < 40; i++) {
        msm_session_t x;
        if (save_new(&f, &x, "x")) {
            on[x.node->index]++;
        }
    }
    CHECK_INT_EQ(on[0] + on[1], 40);
    CHECK(on[0] > 3 && on[1] > 3);
    CHECK_INT_EQ(f.stats.created, 41);

    /* without backup_async the backup is there at once */
    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 0);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, "sync", 4), APR_SUCCESS);
    CHECK_INT_EQ(f.ctx.later->nelts, 0);
    if (s.node) {
        CHECK_STR_EQ(raw_get(port_of(other_node(f.c.nodes, s.node)),
                             key_of(MSM_NS_BACKUP, &s.id), NULL), "sync");
    }
    /* no backup at all when backups are off */
    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 0);
    f.c.backup = 0;
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, "nobak", 5), APR_SUCCESS);
    if (s.node) {
        CHECK(raw_get(port_of(other_node(f.c.nodes, s.node)),
                      key_of(MSM_NS_BACKUP, &s.id), NULL) == NULL);
        CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                             NULL), "nobak");
    }
    /* one node: backups are off whatever MsmBackup says */
    {
        const char *ids[1];
        int ports[1];
        ids[0] = "solo";
        ports[0] = P1;
        fx_init(&f, mk_nodes(root, 1, ids, ports), 1);
        memset(&s, 0, sizeof(s));
        CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, "solo", 4),
                     APR_SUCCESS);
        CHECK_INT_EQ(f.ctx.later->nelts, 0);
        msm_mc_delete(raw(P1), key_of(MSM_NS_SESSION, &s.id));
    }
    /* the route of the cookie is kept, not part of the key */
    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 0);
    memset(&s, 0, sizeof(s));
    apr_cpystrn(s.id.route, "r7", sizeof(s.id.route));
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, "routed", 6), APR_SUCCESS);
    CHECK_STR_EQ(s.id.route, "r7");
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "routed");
}

static void test_load_and_update(void)
{
    fx_t f;
    msm_session_t s, l;
    msm_node_t *other;
    apr_uint32_t flags;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "v=1"))) {
        return;
    }
    other = other_node(f.c.nodes, s.node);

    /* a hit */
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.value, "v=1");
    CHECK_INT_EQ(l.len, 3);
    CHECK(l.node == s.node);
    CHECK_INT_EQ(l.id_changed, 0);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_STR_EQ(l.id.node, s.id.node);
    CHECK(l.written_at >= s.written_at);
    CHECK(l.cas != 0);
    CHECK_INT_EQ(f.ctx.later->nelts, 0);    /* fresh: no refresh */
    CHECK_INT_EQ(f.ctx.wrote, 0);
    CHECK_INT_EQ(f.stats.load_hit, 1);
    /* a load slides the primary's expiry back to MsmIdleTimeout */
    CHECK_STATUS(msm_mc_touch(raw(port_of(s.node)),
                              key_of(MSM_NS_SESSION, &s.id), 100),
                 APR_SUCCESS);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), 100);
    fx_request(&f);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), IDLE);
    fx_request(&f);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);

    /* an update keeps the id, writes primary and (later) backup */
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &l, "v=2", 3), APR_SUCCESS);
    CHECK_INT_EQ(l.id_changed, 0);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK(l.node == s.node);
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "v=2");
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "v=1");
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "v=2");

    /* a miss: no node has that id */
    fx_request(&f);
    {
        msm_id_t id = s.id;
        msm_id_generate(&id);
        apr_cpystrn(id.node, s.id.node, sizeof(id.node));
        from_cookie(&l, &id);
        CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_NOTFOUND);
        CHECK(l.value == NULL);
        CHECK_INT_EQ(f.stats.load_miss, 1);
        CHECK_INT_EQ(f.ctx.later->nelts, 0);
    }

    /* the primary's flags hold its last full write: older than idle/2, the
     * load queues a refresh of primary (cas) and backup */
    fx_request(&f);
    CHECK_STATUS(msm_mc_store(raw(port_of(s.node)), MSM_MC_SET,
                              key_of(MSM_NS_SESSION, &s.id), "v=3", 3,
                              (apr_uint32_t)(now_sec() - IDLE / 2 - 5), IDLE,
                              0), APR_SUCCESS);
    msm_mc_delete(raw(port_of(other)), key_of(MSM_NS_BACKUP, &s.id));
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.value, "v=3");
    CHECK(l.written_at < (apr_uint32_t)(now_sec() - IDLE / 2));
    CHECK_INT_EQ(f.ctx.later->nelts, 1);
    msm_store_run_later(&f.c, &f.ctx);
    flags = 0;
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         &flags), "v=3");
    CHECK(flags >= (apr_uint32_t)(now_sec() - 2));
    flags = 0;
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id),
                         &flags), "v=3");
    CHECK(flags >= (apr_uint32_t)(now_sec() - 2));
    CHECK_TTL(port_of(other), key_of(MSM_NS_BACKUP, &s.id), 2 * IDLE);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), IDLE);
    /* just under idle/2: no refresh */
    fx_request(&f);
    msm_mc_store(raw(port_of(s.node)), MSM_MC_SET,
                 key_of(MSM_NS_SESSION, &s.id), "v=4", 3,
                 (apr_uint32_t)(now_sec() - IDLE / 2 + 5), IDLE, 0);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_INT_EQ(f.ctx.later->nelts, 0);

    /* a refresh must not undo a newer write made in the meantime */
    fx_request(&f);
    msm_mc_store(raw(port_of(s.node)), MSM_MC_SET,
                 key_of(MSM_NS_SESSION, &s.id), "old", 3,
                 (apr_uint32_t)(now_sec() - IDLE), IDLE, 0);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_INT_EQ(f.ctx.later->nelts, 1);
    msm_mc_store(raw(port_of(s.node)), MSM_MC_SET,
                 key_of(MSM_NS_SESSION, &s.id), "newer", 5, 1, IDLE, 0);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "newer");
    {
        const char *bv = raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id),
                                 NULL);
        CHECK(bv == NULL || strcmp(bv, "old") != 0);
    }
    /* a refresh is dropped when the same request saved the session */
    fx_request(&f);
    msm_mc_store(raw(port_of(s.node)), MSM_MC_SET,
                 key_of(MSM_NS_SESSION, &s.id), "old2", 4,
                 (apr_uint32_t)(now_sec() - IDLE), IDLE, 0);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &l, "saved", 5), APR_SUCCESS);
    {
        apr_uint64_t before = ops_of(f.c.nodes);
        msm_store_run_later(&f.c, &f.ctx);
        /* the backup write only: the refresh saw the request wrote */
        CHECK_INT_EQ(ops_of(f.c.nodes) - before, 1);
    }
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "saved");
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "saved");
    CHECK_INT_EQ(f.log.n, 0);
}

/* The primary is gone from a live node (restart, eviction): the backup
 * serves, and the primary is written again on the same node. */
static void test_primary_lost(void)
{
    fx_t f;
    msm_session_t s, l;
    msm_node_t *other;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "precious"))) {
        return;
    }
    /* the same nodes, the session's one now a failover node: a new
     * session would never go there, the lost primary must */
    {
        char *fo[1];
        fo[0] = (char *)s.id.node;
        fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
        CHECK(msm_nodes_set_failover(root, f.c.nodes, 1, fo) == NULL);
        s.node = msm_nodes_find(f.c.nodes, s.id.node);
    }
    other = other_node(f.c.nodes, s.node);
    CHECK_STATUS(msm_mc_delete(raw(port_of(s.node)),
                               key_of(MSM_NS_SESSION, &s.id)), APR_SUCCESS);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.value, "precious");
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_STR_EQ(l.id.node, s.id.node);
    CHECK(l.node == s.node);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), IDLE);
    CHECK_INT_EQ(l.id_changed, 0);
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "precious");
    CHECK_INT_EQ(f.stats.backup_reads, 1);
    CHECK_INT_EQ(f.stats.backup_hits, 1);
    CHECK_INT_EQ(f.stats.relocated, 0);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "precious");
    CHECK(msm_node_is_live(s.node));
    CHECK_INT_EQ(f.log.n, 0);

    /* primary and backup gone: not found */
    fx_request(&f);
    msm_mc_delete(raw(port_of(s.node)), key_of(MSM_NS_SESSION, &s.id));
    msm_mc_delete(raw(port_of(other)), key_of(MSM_NS_BACKUP, &s.id));
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_NOTFOUND);
    CHECK(l.value == NULL);
}

/* The session's node is down: the load finds the backup and moves the
 * session to a live node under a new node id. */
static void test_relocate(void)
{
    fx_t f, g;
    msm_session_t s, l;
    msm_node_t *old, *live;
    int live_port;
    apr_time_t t0;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "moving"))) {
        return;
    }
    live_port = port_of(other_node(f.c.nodes, s.node));
    /* the same ids, the session's node now at a closed port */
    fx_init(&g, strcmp(s.id.node, "n1") == 0
                ? mk2(root, "n1", D1, "n2", P2)
                : mk2(root, "n1", P1, "n2", D1), 1);
    old = msm_nodes_find(g.c.nodes, s.id.node);
    live = other_node(g.c.nodes, old);
    CHECK_INT_EQ(port_of(live), live_port);

    from_cookie(&l, &s.id);
    apr_cpystrn(l.id.route, "rt", sizeof(l.id.route));
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_load(&g.c, &g.ctx, &l), APR_SUCCESS);
    t0 = apr_time_now() - t0;
    CHECK(t0 < 2 * TIMEOUT);
    CHECK_STR_EQ(l.value, "moving");
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_STR_EQ(l.id.node, live->id);
    CHECK_STR_EQ(l.id.route, "rt");
    CHECK(l.node == live);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK(!msm_node_is_live(old));
    CHECK_STR_EQ(raw_get(live_port, key_of(MSM_NS_SESSION, &l.id), NULL),
                 "moving");
    CHECK_TTL(live_port, key_of(MSM_NS_SESSION, &l.id), IDLE);
    CHECK_INT_EQ(g.stats.relocated, 1);
    CHECK_INT_EQ(log_count(&g.log, "MSM00101"), 1);    /* went down */
    CHECK_INT_EQ(log_count(&g.log, "MSM00110"), 1);    /* moved */
    /* the old backup (on the live node) goes after the response */
    CHECK_STR_EQ(raw_get(live_port, key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "moving");
    msm_store_run_later(&g.c, &g.ctx);
    CHECK(raw_get(live_port, key_of(MSM_NS_BACKUP, &s.id), NULL) == NULL);
    /* the moved session loads from its new node */
    fx_request(&g);
    {
        msm_session_t m;
        msm_id_t moved_id = l.id;
        from_cookie(&m, &moved_id);
        CHECK_STATUS(msm_store_load(&g.c, &g.ctx, &m), APR_SUCCESS);
        CHECK_STR_EQ(m.value, "moving");
        CHECK_INT_EQ(m.id_changed, 0);
    }
    /* a cookie with the old node id again (a parallel request): the dead
     * node is skipped without waiting, the backup is gone: not found, and
     * quickly */
    fx_request(&g);
    from_cookie(&l, &s.id);
    t0 = apr_time_now();
    {
        apr_status_t rv = msm_store_load(&g.c, &g.ctx, &l);
        /* its node is down: the session may be there, "not found" would
         * be a lie */
        CHECK(rv != APR_SUCCESS && rv != APR_NOTFOUND);
    }
    CHECK(apr_time_now() - t0 < MS(100));
    msm_mc_delete(raw(live_port), key_of(MSM_NS_SESSION, &l.id));
}

/* Saving a session whose node is down moves it. */
static void test_save_moved(void)
{
    fx_t f, g;
    msm_session_t s, l;
    msm_node_t *old, *live;
    int live_port;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "before"))) {
        return;
    }
    live_port = port_of(other_node(f.c.nodes, s.node));
    fx_init(&g, strcmp(s.id.node, "n1") == 0
                ? mk2(root, "n1", D1, "n2", P2)
                : mk2(root, "n1", P1, "n2", D1), 1);
    old = msm_nodes_find(g.c.nodes, s.id.node);
    live = other_node(g.c.nodes, old);
    l = s;
    l.node = old;
    l.id_changed = 0;
    CHECK_STATUS(msm_store_save(&g.c, &g.ctx, &l, "after", 5), APR_SUCCESS);
    CHECK(l.node == live);
    CHECK_STR_EQ(l.id.node, live->id);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_STR_EQ(raw_get(live_port, key_of(MSM_NS_SESSION, &l.id), NULL),
                 "after");
    msm_store_run_later(&g.c, &g.ctx);
    /* the old backup is not left behind */
    CHECK(raw_get(live_port, key_of(MSM_NS_BACKUP, &s.id), NULL) == NULL);
    /* now the dead node is known: the next save skips it at once */
    fx_request(&g);
    l = s;
    l.node = old;
    CHECK_STATUS(msm_store_save(&g.c, &g.ctx, &l, "again", 5), APR_SUCCESS);
    CHECK(l.node == live);
    msm_mc_delete(raw(live_port), key_of(MSM_NS_SESSION, &l.id));
}

/* A cookie whose node id is no longer configured: its backup is looked
 * for on every node. */
static void test_unconfigured_node(void)
{
    fx_t f, g;
    msm_session_t s, l;
    int holder_port, ports[2];
    const char *ids[2];

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "orphan"))) {
        return;
    }
    holder_port = port_of(other_node(f.c.nodes, s.node));
    /* n3 on the session's old port, then the holder under another id */
    ids[0] = "n3";
    ports[0] = port_of(s.node);
    ids[1] = "n4";
    ports[1] = holder_port;
    fx_init(&g, mk_nodes(root, 2, ids, ports), 1);
    CHECK(msm_nodes_find(g.c.nodes, s.id.node) == NULL);

    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&g.c, &g.ctx, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.value, "orphan");
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK(l.node != NULL);
    if (l.node) {
        CHECK(strcmp(l.id.node, "n3") == 0 || strcmp(l.id.node, "n4") == 0);
        CHECK_STR_EQ(l.id.node, l.node->id);
        CHECK_STR_EQ(raw_get(port_of(l.node), key_of(MSM_NS_SESSION, &l.id),
                             NULL), "orphan");
    }
    CHECK_INT_EQ(l.id_changed, 1);
    msm_store_run_later(&g.c, &g.ctx);
    CHECK(raw_get(holder_port, key_of(MSM_NS_BACKUP, &s.id), NULL) == NULL);
    /* a save of a session with an unconfigured node: a new id */
    fx_request(&g);
    l = s;
    l.node = NULL;
    l.id_changed = 0;
    CHECK_STATUS(msm_store_save(&g.c, &g.ctx, &l, "fresh", 5), APR_SUCCESS);
    CHECK(strcmp(l.id.hex, s.id.hex) != 0);
    CHECK(strcmp(l.id.node, "n3") == 0 || strcmp(l.id.node, "n4") == 0);
    CHECK_INT_EQ(l.id_changed, 1);
    msm_mc_delete(raw(P1), key_of(MSM_NS_SESSION, &s.id));
    msm_mc_delete(raw(P2), key_of(MSM_NS_SESSION, &s.id));
}

static void test_remove(void)
{
    fx_t f;
    msm_session_t s, l;
    msm_node_t *other;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "bye"))) {
        return;
    }
    other = other_node(f.c.nodes, s.node);
    CHECK(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL)
          != NULL);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_remove(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_INT_EQ(l.has_id, 0);
    CHECK(l.node == NULL);
    CHECK(l.value == NULL);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_INT_EQ(f.ctx.wrote, 1);
    CHECK(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), NULL)
          == NULL);
    CHECK(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL)
          != NULL);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL)
          == NULL);
    CHECK_INT_EQ(f.stats.deleted, 1);
    /* removing what is already gone is fine */
    fx_request(&f);
    from_cookie(&l, &s.id);
    l.node = s.node;
    CHECK_STATUS(msm_store_remove(&f.c, &f.ctx, &l), APR_SUCCESS);
    msm_store_run_later(&f.c, &f.ctx);
    fx_request(&f);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_NOTFOUND);
}

static void test_regenerate(void)
{
    fx_t f;
    msm_session_t s, l;
    msm_id_t old;
    msm_node_t *oldnode;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "anon"))) {
        return;
    }
    old = s.id;
    oldnode = s.node;
    from_cookie(&l, &s.id);
    apr_cpystrn(l.id.route, "r1", sizeof(l.id.route));
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_regenerate(&f.c, &f.ctx, &l, "user=alice", 10),
                 APR_SUCCESS);
    CHECK(strcmp(l.id.hex, old.hex) != 0);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_INT_EQ(l.has_id, 1);
    CHECK_STR_EQ(l.id.route, "r1");
    CHECK(l.node != NULL);
    /* the old primary is gone at once, the new one is there */
    CHECK(raw_get(port_of(oldnode), key_of(MSM_NS_SESSION, &old), NULL)
          == NULL);
    if (l.node) {
        CHECK_STR_EQ(raw_get(port_of(l.node), key_of(MSM_NS_SESSION, &l.id),
                             NULL), "user=alice");
    }
    msm_store_run_later(&f.c, &f.ctx);
    CHECK(raw_get(port_of(other_node(f.c.nodes, oldnode)),
                  key_of(MSM_NS_BACKUP, &old), NULL) == NULL);
    if (l.node) {
        CHECK_STR_EQ(raw_get(port_of(other_node(f.c.nodes, l.node)),
                             key_of(MSM_NS_BACKUP, &l.id), NULL),
                     "user=alice");
    }
    CHECK_INT_EQ(f.stats.regenerated, 1);
    /* the old cookie finds nothing */
    fx_request(&f);
    from_cookie(&s, &old);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &s), APR_NOTFOUND);
}

/* Sticky mode keepalive: memcached's copies are touched, and written where
 * they were lost. */
static void test_keepalive(void)
{
    fx_t f;
    msm_session_t s;
    msm_node_t *other;

    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    if (!CHECK_OK(save_new(&f, &s, "kept"))) {
        return;
    }
    other = other_node(f.c.nodes, s.node);
    /* touched: both expiries slide */
    msm_mc_touch(raw(port_of(s.node)), key_of(MSM_NS_SESSION, &s.id), 50);
    msm_mc_touch(raw(port_of(other)), key_of(MSM_NS_BACKUP, &s.id), 50);
    msm_store_keepalive(&f.c, &f.ctx, &s);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), 50);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_TTL(port_of(s.node), key_of(MSM_NS_SESSION, &s.id), IDLE);
    CHECK_TTL(port_of(other), key_of(MSM_NS_BACKUP, &s.id), 2 * IDLE);
    fx_request(&f);
    /* lost: written again */
    msm_mc_delete(raw(port_of(other)), key_of(MSM_NS_BACKUP, &s.id));
    msm_store_keepalive(&f.c, &f.ctx, &s);
    CHECK(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL)
          == NULL);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_STR_EQ(raw_get(port_of(other), key_of(MSM_NS_BACKUP, &s.id), NULL),
                 "kept");
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "kept");
    /* primary lost too */
    fx_request(&f);
    msm_mc_delete(raw(port_of(s.node)), key_of(MSM_NS_SESSION, &s.id));
    msm_store_keepalive(&f.c, &f.ctx, &s);
    msm_store_run_later(&f.c, &f.ctx);
    CHECK_STR_EQ(raw_get(port_of(s.node), key_of(MSM_NS_SESSION, &s.id),
                         NULL), "kept");
}

static void test_all_dead(void)
{
    fx_t f;
    msm_session_t s, l;
    msm_id_t id;
    apr_status_t rv;
    apr_time_t t0;

    fx_init(&f, mk2(root, "n1", D1, "n2", D2), 1);
    msm_id_generate(&id);
    apr_cpystrn(id.node, "n1", sizeof(id.node));
    from_cookie(&l, &id);
    t0 = apr_time_now();
    rv = msm_store_load(&f.c, &f.ctx, &l);
    t0 = apr_time_now() - t0;
    CHECK(rv != APR_SUCCESS && rv != APR_NOTFOUND);
    CHECK_MSG(t0 < 2 * TIMEOUT, "load took %ld us", (long)t0);
    CHECK(l.value == NULL);
    CHECK(!msm_node_is_live(&f.c.nodes->node[0]));
    CHECK(!msm_node_is_live(&f.c.nodes->node[1]));

    fx_request(&f);
    memset(&s, 0, sizeof(s));
    t0 = apr_time_now();
    rv = msm_store_save(&f.c, &f.ctx, &s, "x", 1);
    CHECK(rv != APR_SUCCESS);
    CHECK_INT_EQ(s.has_id, 0);
    rv = msm_store_save(&f.c, &f.ctx, &s, "x", 1);
    CHECK(rv != APR_SUCCESS);
    /* a session with an id on a dead node cannot move either */
    l.has_id = 1;
    l.node = &f.c.nodes->node[0];
    rv = msm_store_save(&f.c, &f.ctx, &l, "y", 1);
    CHECK(rv != APR_SUCCESS);
    t0 = apr_time_now() - t0;
    CHECK_MSG(t0 < 2 * TIMEOUT, "saves took %ld us", (long)t0);
    CHECK_INT_EQ(f.ctx.wrote, 0);
    CHECK_MSG(log_count(&f.log, "MSM00105") == 1, "MSM00105 logged %d times",
              log_count(&f.log, "MSM00105"));
    CHECK_INT_EQ(log_count(&f.log, "MSM00101"), 2);    /* each node, once */
    CHECK(f.stats.unavailable >= 2);
    CHECK_INT_EQ(f.stats.saved, 0);
    msm_store_run_later(&f.c, &f.ctx);
    if (unit_failed) {
        log_dump(&f.log);
    }
}

/* One node dead: new sessions go to the other one, with no backup. */
static void test_one_dead(void)
{
    fx_t f;
    msm_session_t s;
    int i, ok = 0;

    fx_init(&f, mk2(root, "n1", D1, "n2", P2), 1);
    for (i = 0; i < 10; i++) {
        if (save_new(&f, &s, "one") && strcmp(s.id.node, "n2") == 0) {
            ok++;
        }
    }
    CHECK_INT_EQ(ok, 10);
    CHECK_INT_EQ(log_count(&f.log, "MSM00101"), 1);
    CHECK_INT_EQ(log_count(&f.log, "MSM00105"), 0);
    CHECK_INT_EQ(f.stats.created, 10);
}

static void test_too_large(void)
{
    fx_t f;
    msm_session_t s, l;
    char *big = malloc(MAXV + 1);
    apr_status_t rv;

    memset(big, 'b', MAXV + 1);
    fx_init(&f, mk2(root, "n1", P1, "n2", P2), 1);
    memset(&s, 0, sizeof(s));
    rv = msm_store_save(&f.c, &f.ctx, &s, big, MAXV + 1);
    CHECK_STATUS(rv, MSM_MC_ETOOBIG);
    CHECK_INT_EQ(s.has_id, 0);
    CHECK_INT_EQ(log_count(&f.log, "MSM00106"), 1);
    CHECK_INT_EQ(f.stats.too_large, 1);
    CHECK(msm_node_is_live(&f.c.nodes->node[0]));
    CHECK(msm_node_is_live(&f.c.nodes->node[1]));
    CHECK_INT_EQ(f.ctx.later->nelts, 0);
    /* exactly MAXV is fine */
    CHECK_STATUS(msm_store_save(&f.c, &f.ctx, &s, big, MAXV), APR_SUCCESS);
    msm_store_run_later(&f.c, &f.ctx);
    /* an existing session that grows too large keeps its old value */
    fx_request(&f);
    from_cookie(&l, &s.id);
    CHECK_STATUS(msm_store_load(&f.c, &f.ctx, &l), APR_SUCCESS);
    CHECK_INT_EQ(l.len, MAXV);
    rv = msm_store_save(&f.c, &f.ctx, &l, big, MAXV + 1);
    CHECK_STATUS(rv, MSM_MC_ETOOBIG);
    CHECK_INT_EQ(log_count(&f.log, "MSM00106"), 2);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    {
        msm_mc_item_t item;
        CHECK_STATUS(msm_mc_get(raw(port_of(s.node)), root,
                                key_of(MSM_NS_SESSION, &s.id), &item),
                     APR_SUCCESS);
        CHECK_INT_EQ(item.len, MAXV);
    }
    free(big);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_store");
    int ports[2];

    signal(SIGPIPE, SIG_IGN);
    if (unit_mc_ports(ports, 2) < 2) {
        printf("test_store: needs MSM_TEST_MEMCACHED=port1,port2: skipped\n");
        return UNIT_SKIP;
    }
    root = p;
    P1 = ports[0];
    P2 = ports[1];
    D1 = unit_closed_port(p);
    D2 = unit_closed_port(p);
    prefix = apr_psprintf(p, "uts%ld:", (long)getpid());

    test_save_new();
    test_load_and_update();
    test_primary_lost();
    test_relocate();
    test_save_moved();
    test_unconfigured_node();
    test_remove();
    test_regenerate();
    test_keepalive();
    test_all_dead();
    test_one_dead();
    test_too_large();
    close_all();
    return unit_done();
}
