/* msm_store: the session life cycle of src/msm_copy.h as src/msm_store.c
 * executes it, against real memcached servers (MSM_TEST_MEMCACHED=
 * "port1,port2[,port3]") and closed ports for dead nodes. Skipped (77)
 * without them.
 *
 * Every check looks behind the store: the copies each server holds under
 * "<prefix><hex>" (decoded header, payload, remaining time to live), the
 * session the store returned, and for the operation counts memcached's own
 * "stats". Races are made deterministic with an observer on the store's
 * connections that runs "another request" (a raw write) right after the
 * store's n-th operation on a node. Outages are made by pointing a node's
 * connections at a closed port and back, the node's health (shared table)
 * staying the same.
 *
 * Three-node scenarios need a third server: a third port in
 * MSM_TEST_MEMCACHED, or else this test starts "memcached" from PATH on a
 * free port itself, under a supervisor that stops it when the test ends or
 * dies; without one they are skipped (and said so).
 *
 * Each fixture (one "server": nodes, health, configuration) has a key
 * prefix of its own, so that the failures it publishes for others to
 * learn stay within its test; fx_share puts two in one cluster. */
#include "unit.h"
#include "msm_store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_strings.h>

#define MS(n) apr_time_from_msec(n)
#define SEC(n) apr_time_from_sec(n)
#define TIMEOUT MS(300)
#define MAXV (64 * 1024)
#define IDLE 600
#define MAXN 3

static apr_pool_t *root;
static const char *prefix;      /* of this run; each fixture adds its own
                                 * number (see fx_new) */
static int fixtures;
static int NSRV;                /* live memcached servers: 2 or 3 */
static int SRV[MAXN];           /* their ports */
static int DEADP[MAXN];         /* closed ports */
static pid_t spawned;           /* the third server, when started here */

/* ------------------------------------------------------------------ */
/* Raw access to the servers, to look behind the store                 */

static msm_mc_server_t *rawsrv[MAXN];

static msm_mc_server_t *raw(int port)
{
    int i;

    for (i = 0; i < NSRV && SRV[i] != port; i++) {
    }
    if (i == NSRV) {
        fprintf(stderr, "raw: %d is not a test server\n", port);
        exit(2);
    }
    if (rawsrv[i] == NULL) {
        apr_sockaddr_t *sa;
        if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET,
                                  (apr_port_t)port, 0, root) != APR_SUCCESS
            || msm_mc_server_create(root, sa, MS(2000), 4 * 1024 * 1024, 2,
                                    NULL, &rawsrv[i]) != APR_SUCCESS) {
            exit(2);
        }
    }
    return rawsrv[i];
}

static void raw_del(int port, const char *key)
{
    apr_status_t rv = msm_mc_delete(raw(port), key);

    CHECK_MSG(rv == APR_SUCCESS || rv == APR_NOTFOUND, "raw delete: %d", rv);
}

static void raw_set(int port, const char *key, const char *value,
                    apr_size_t len, apr_uint32_t exptime)
{
    CHECK_STATUS(msm_mc_store(raw(port), MSM_MC_SET, key, value, len, 0,
                              exptime, 0), APR_SUCCESS);
}

/* One request on a connection of its own; the answer up to and including
 * the first occurrence of "term" at its end, or NULL. */
static char *raw_talk(apr_pool_t *p, int port, const char *req,
                      const char *term)
{
    apr_sockaddr_t *sa;
    apr_socket_t *sock;
    apr_size_t cap = 16384, len = 0, n = strlen(req), tl = strlen(term);
    char *buf = apr_palloc(p, cap);
    int done = 0;

    if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, (apr_port_t)port,
                              0, p) != APR_SUCCESS
        || apr_socket_create(&sock, APR_INET, SOCK_STREAM, APR_PROTO_TCP, p)
           != APR_SUCCESS) {
        return NULL;
    }
    apr_socket_timeout_set(sock, SEC(2));
    if (apr_socket_connect(sock, sa) == APR_SUCCESS
        && apr_socket_send(sock, req, &n) == APR_SUCCESS) {
        while (len < cap - 1) {
            n = cap - 1 - len;
            if (apr_socket_recv(sock, buf + len, &n) != APR_SUCCESS) {
                break;
            }
            len += n;
            buf[len] = '\0';
            if (len >= tl && memcmp(buf + len - tl, term, tl) == 0) {
                done = 1;
                break;
            }
        }
    }
    apr_socket_close(sock);
    return done ? buf : NULL;
}

/* The remaining time to live of key ("mg <key> t"): seconds, -1 for none,
 * -2 when the key is missing, -3 on any error. */
static int raw_ttl(int port, const char *key)
{
    apr_pool_t *p;
    char *a;
    int ttl = -3;

    apr_pool_create(&p, root);
    a = raw_talk(p, port, apr_psprintf(p, "mg %s t\r\n", key), "\r\n");
    if (a && strncmp(a, "HD t", 4) == 0) {
        ttl = atoi(a + 4);
    }
    else if (a && strncmp(a, "EN", 2) == 0) {
        ttl = -2;
    }
    apr_pool_destroy(p);
    return ttl;
}

#define CHECK_TTL_IN(port, key, lo, hi) \
    do { \
        int ttl_ = raw_ttl(port, key); \
        CHECK_MSG(ttl_ >= (lo) && ttl_ <= (hi), \
                  "ttl on %d is %d, expected %d..%d", port, ttl_, \
                  (int)(lo), (int)(hi)); \
    } while (0)

/* ttl within [want - 3, want] */
#define CHECK_TTL(port, key, want) CHECK_TTL_IN(port, key, (want) - 3, want)

/* memcached's counters of one server ("stats") */
typedef struct mcstat {
    apr_uint64_t get, set, touch, get_misses, touch_misses, cas, del;
} mcstat_t;

static void stat_add(mcstat_t *st, const char *name, apr_uint64_t v)
{
    static const struct {
        const char *name;
        apr_size_t off;
    } map[] = {
        { "cmd_get", APR_OFFSETOF(mcstat_t, get) },
        { "cmd_set", APR_OFFSETOF(mcstat_t, set) },      /* set, add, cas */
        { "cmd_touch", APR_OFFSETOF(mcstat_t, touch) },  /* touch, gats */
        { "get_misses", APR_OFFSETOF(mcstat_t, get_misses) },
        { "touch_misses", APR_OFFSETOF(mcstat_t, touch_misses) },
        { "cas_hits", APR_OFFSETOF(mcstat_t, cas) },
        { "cas_misses", APR_OFFSETOF(mcstat_t, cas) },
        { "cas_badval", APR_OFFSETOF(mcstat_t, cas) },
        { "delete_hits", APR_OFFSETOF(mcstat_t, del) },
        { "delete_misses", APR_OFFSETOF(mcstat_t, del) },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(name, map[i].name) == 0) {
            *(apr_uint64_t *)(void *)((char *)st + map[i].off) += v;
        }
    }
}

static int raw_stats(int port, mcstat_t *st)
{
    apr_pool_t *p;
    char *a, *line, *last;
    int ok = 0;

    memset(st, 0, sizeof(*st));
    apr_pool_create(&p, root);
    a = raw_talk(p, port, "stats\r\n", "END\r\n");
    for (line = a ? apr_strtok(a, "\r\n", &last) : NULL; line;
         line = apr_strtok(NULL, "\r\n", &last)) {
        char name[64];
        unsigned long long v;
        if (sscanf(line, "STAT %63s %llu", name, &v) != 2) {
            continue;
        }
        ok = 1;
        stat_add(st, name, (apr_uint64_t)v);
    }
    apr_pool_destroy(p);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Copies: what a server holds under a session key                     */

typedef struct copy {
    int present;                /* the key exists */
    int copy;                   /* and holds a well-formed copy */
    msm_copy_meta_t meta;
    const char *payload;        /* NUL-terminated */
    apr_size_t len;
    const char *raw;
    apr_size_t rawlen;
} copy_t;

/* c->copy and the copy's fields, when value is a well-formed copy. */
static void decode_into(copy_t *c, const char *value, apr_size_t len)
{
    msm_seen_t seen;

    msm_copy_decode(value, len, &seen);
    if (seen.what == MSM_SEEN_COPY) {
        c->copy = 1;
        c->meta = seen.meta;
        c->payload = seen.payload;
        c->len = seen.len;
    }
}

static copy_t peek(int port, const char *key)
{
    msm_mc_item_t item;
    copy_t c;

    memset(&c, 0, sizeof(c));
    if (msm_mc_get(raw(port), root, key, &item) != APR_SUCCESS) {
        return c;
    }
    c.present = 1;
    c.raw = item.value;
    c.rawlen = item.len;
    decode_into(&c, item.value, item.len);
    return c;
}

static const char *describe(const copy_t *c)
{
    if (!c->present) {
        return "nothing";
    }
    if (!c->copy) {
        return apr_psprintf(root, "not a copy (%lu bytes)",
                            (unsigned long)c->rawlen);
    }
    return apr_psprintf(root, "%c%" APR_UINT64_T_FMT "@%s written %"
                        APR_INT64_T_FMT ", payload \"%.40s\"%s",
                        c->meta.kind, c->meta.version,
                        c->meta.primary[0] ? c->meta.primary : "-",
                        (apr_int64_t)c->meta.written, c->payload,
                        c->len > 40 ? "..." : "");
}

/* spec: "-" nothing, "?" an item that is not a copy, "D" or "D<v>" a
 * tombstone, "S<v>@<primary>[:<payload>]" a session copy (<v> "*": any
 * version; no ":": any payload). */
static int copy_matches(const copy_t *c, const char *spec)
{
    char *end;

    switch (spec[0]) {
    case '-':
        return !c->present;
    case '?':
        return c->present && !c->copy;
    case 'D':
        return c->copy && c->meta.kind == 'D' && c->meta.primary[0] == '\0'
            && c->len == 0
            && (spec[1] == '\0'
                || c->meta.version == strtoull(spec + 1, NULL, 10));
    case 'S': {
        const char *at = strchr(spec, '@'), *colon;
        apr_size_t plen;
        if (!c->copy || c->meta.kind != 'S' || at == NULL) {
            return 0;
        }
        if (spec[1] != '*'
            && c->meta.version != strtoull(spec + 1, &end, 10)) {
            return 0;
        }
        colon = strchr(at, ':');
        plen = colon ? (apr_size_t)(colon - at - 1) : strlen(at + 1);
        if (strlen(c->meta.primary) != plen
            || strncmp(c->meta.primary, at + 1, plen) != 0) {
            return 0;
        }
        return colon == NULL
            || (c->len == strlen(colon + 1)
                && memcmp(c->payload, colon + 1, c->len) == 0);
    }
    }
    return 0;
}

#define CHECK_COPY_AS(what, port, key, spec) \
    do { \
        copy_t c_ = peek(port, key); \
        const char *s_ = (spec); \
        CHECK_MSG(copy_matches(&c_, s_), "%s: server %d holds %s, " \
                  "expected %s", what, port, describe(&c_), s_); \
    } while (0)

#define CHECK_COPY(port, key, spec) CHECK_COPY_AS("copy", port, key, spec)

static const char *S(unsigned long long v, const char *primary,
                     const char *payload)
{
    apr_uint64_t v64 = v;

    return payload ? apr_psprintf(root, "S%" APR_UINT64_T_FMT "@%s:%s", v64,
                                  primary, payload)
                   : apr_psprintf(root, "S%" APR_UINT64_T_FMT "@%s", v64,
                                  primary);
}

/* A copy as the format says, written here rather than by msm_copy_encode. */
static const char *copy_text(char kind, apr_uint64_t version,
                             apr_time_t written, const char *primary,
                             const char *payload)
{
    return apr_psprintf(root, "MSM1 %c %016" APR_UINT64_T_HEX_FMT " %016"
                        APR_UINT64_T_HEX_FMT " %s\n%s", kind, version,
                        (apr_uint64_t)written,
                        primary && *primary ? primary : "-",
                        kind == 'S' && payload ? payload : "");
}

static void plant(int port, const char *key, char kind, apr_uint64_t version,
                  apr_time_t written, const char *primary,
                  const char *payload, apr_uint32_t exptime)
{
    const char *v = copy_text(kind, version, written, primary, payload);

    raw_set(port, key, v, strlen(v), exptime);
}

/* A value larger than MAXV: a well-formed copy this test's stores cannot
 * read. */
static const char *big_copy(const char *primary, apr_size_t len)
{
    char *payload = apr_palloc(root, len + 1);

    memset(payload, 'b', len);
    payload[len] = '\0';
    return copy_text('S', 1, apr_time_now() - SEC(10), primary, payload);
}

#define GARBAGE "k=v&user=x"    /* a 1.x value: not a copy */

/* Puts what spec says on a server: "-" nothing, "?" garbage, "!" a copy
 * too large to read, "D" a tombstone, "S<v>@<primary>[t<s>]:<payload>" a
 * session copy written at base + s seconds. */
static void plant_spec(int port, const char *key, const char *spec,
                       apr_time_t base)
{
    switch (spec[0]) {
    case '-':
        raw_del(port, key);
        break;
    case '?':
        raw_set(port, key, GARBAGE, strlen(GARBAGE), 2 * IDLE);
        break;
    case '!': {
        const char *v = big_copy("n1", MAXV + 1000);
        raw_set(port, key, v, strlen(v), 2 * IDLE);
        break;
    }
    case 'D':
        plant(port, key, 'D', 1, base, NULL, NULL, 2 * IDLE);
        break;
    case 'S': {
        char *end, primary[MSM_NAME_MAX + 1];
        unsigned long long v = strtoull(spec + 1, &end, 10);
        const char *colon = strchr(end, ':'), *t;
        apr_size_t n;
        apr_time_t written = base;
        t = memchr(end + 1, 't', (apr_size_t)(colon - end - 1));
        n = (apr_size_t)((t ? t : colon) - end - 1);
        memcpy(primary, end + 1, n);
        primary[n] = '\0';
        if (t) {
            written += SEC(atoi(t + 1));
        }
        plant(port, key, 'S', v, written, primary, colon + 1, 2 * IDLE);
        break;
    }
    }
}

/* ------------------------------------------------------------------ */
/* Fixtures: nodes, store configuration, log                           */

/* Counts the store's operations on one node and runs "another request"
 * after its n-th one. */
typedef struct tap {
    int ops;
    int fire_at;
    int repeat;                 /* fire after every operation from then */
    void (*fire)(void *arg);
    void *arg;
} tap_t;

static void tap_done(void *baton, apr_status_t rv, apr_interval_time_t took)
{
    tap_t *t = baton;

    (void)rv;
    (void)took;
    t->ops++;
    if (t->fire && t->ops >= t->fire_at) {
        void (*fn)(void *) = t->fire;
        if (!t->repeat) {
            t->fire = NULL;
        }
        fn(t->arg);
    }
}

#define LOGMAX 128

typedef struct logcap {
    int n;
    int level[LOGMAX];
    char msg[LOGMAX][300];
} logcap_t;

static void cap_log(void *baton, int level, apr_status_t rv, const char *msg)
{
    logcap_t *l = baton;

    (void)rv;
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

typedef struct fx {
    apr_pool_t *p;
    msm_nodes_t *nodes;
    int port[MAXN];             /* the node's server, or a closed port */
    msm_mc_server_t *live[MAXN];
    msm_mc_server_t *down[MAXN];    /* at a closed port: an outage */
    tap_t tap[MAXN];
    msm_store_conf_t c;
    msm_stats_t stats;
    logcap_t log;
} fx_t;

/* layout: "n1:0 n2:1 n3:x": node ids and the index of their server in
 * SRV ("x": a closed port). Own health table, MsmBackup On, async. */
static fx_t *fx_new(const char *layout, apr_uint32_t idle, apr_size_t maxv)
{
    apr_pool_t *p;
    fx_t *f;
    char *argv[MAXN], *words, *w, *last;
    const char *err;
    void *health;
    int n = 0, dead = 0, i;

    apr_pool_create(&p, root);
    f = apr_pcalloc(p, sizeof(*f));
    f->p = p;
    words = apr_pstrdup(p, layout);
    for (w = apr_strtok(words, " ", &last); w && n < MAXN;
         w = apr_strtok(NULL, " ", &last)) {
        char *colon = strchr(w, ':');
        *colon = '\0';
        f->port[n] = colon[1] == 'x' ? DEADP[dead++] : SRV[atoi(colon + 1)];
        argv[n] = apr_psprintf(p, "%s:127.0.0.1:%d", w, f->port[n]);
        n++;
    }
    err = msm_nodes_parse(p, n, argv, &f->nodes);
    if (err == NULL) {
        err = msm_nodes_resolve(f->nodes, p);
    }
    if (err == NULL) {
        health = apr_pcalloc(p, msm_health_size(8));
        msm_health_format(health, 8);
        err = msm_nodes_attach_health(f->nodes, health);
    }
    if (err) {
        fprintf(stderr, "nodes: %s\n", err);
        exit(2);
    }
    f->nodes->retry = SEC(30);
    f->nodes->timeout = TIMEOUT;
    f->nodes->max_value = maxv;
    for (i = 0; i < n; i++) {
        msm_mc_observer_t obs;
        memset(&obs, 0, sizeof(obs));
        obs.op_done = tap_done;
        obs.baton = &f->tap[i];
        if (msm_mc_server_create(p, f->nodes->node[i].addr, TIMEOUT,
                                 MSM_STORE_ITEM_MAX(maxv), 4, &obs,
                                 &f->live[i]) != APR_SUCCESS) {
            exit(2);
        }
        f->nodes->node[i].mc = f->live[i];
    }
    f->c.nodes = f->nodes;
    /* Keys of its own: the failures a fixture publishes (see "failures
     * seen elsewhere" in msm_store.c) are read by the fixtures that share
     * its prefix, as by the servers of one cluster (fx_share). */
    f->c.prefix = apr_psprintf(p, "%s%d:", prefix, ++fixtures);
    f->c.idle = idle;
    f->c.backup = 1;
    f->c.backup_async = 1;
    f->c.stats = &f->stats;
    return f;
}

static fx_t *fx2(void)
{
    return fx_new("n1:0 n2:1", IDLE, MAXV);
}

/* "to" is another server of "from"'s cluster: the same keys. */
static void fx_share(fx_t *to, const fx_t *from)
{
    to->c.prefix = apr_pstrdup(to->p, from->c.prefix);
}

static void fx_done(fx_t *f)
{
    apr_pool_destroy(f->p);
}

/* One request's context. */
static msm_store_ctx_t *rq(fx_t *f)
{
    msm_store_ctx_t *x = apr_pcalloc(f->p, sizeof(*x));

    msm_store_ctx_init(x, f->p, cap_log, &f->log);
    return x;
}

static int port_of(const fx_t *f, const msm_node_t *n)
{
    return n ? f->port[n->index] : -1;
}

static msm_node_t *other_node(fx_t *f, const msm_node_t *n)
{
    return &f->nodes->node[(n->index + 1) % f->nodes->count];
}

static int ops_of(const fx_t *f, const msm_node_t *n)
{
    return f->tap[n->index].ops;
}

/* The node's memcached becomes unreachable (its connections go to a closed
 * port); its health is still the node's. */
static void node_down(fx_t *f, msm_node_t *n)
{
    int i = n->index;

    if (f->down[i] == NULL) {
        apr_sockaddr_t *sa;
        msm_mc_observer_t obs;
        memset(&obs, 0, sizeof(obs));
        obs.op_done = tap_done;
        obs.baton = &f->tap[i];
        if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET,
                                  (apr_port_t)DEADP[MAXN - 1], 0, f->p)
                != APR_SUCCESS
            || msm_mc_server_create(f->p, sa, TIMEOUT,
                                    MSM_STORE_ITEM_MAX(f->nodes->max_value),
                                    2, &obs, &f->down[i]) != APR_SUCCESS) {
            exit(2);
        }
    }
    n->mc = f->down[i];
}

/* It answers again, and a probe saw that. */
static void node_up(fx_t *f, msm_node_t *n)
{
    n->mc = f->live[n->index];
    apr_sleep(10);
    msm_node_report(n, APR_SUCCESS, f->nodes->retry, 0, apr_time_now());
    CHECK(msm_node_is_live(n));
}

/* An operation on it failed (its last failure is now), and it is back. */
static void node_blip(fx_t *f, msm_node_t *n)
{
    msm_node_report(n, APR_ECONNREFUSED, f->nodes->retry, 0, apr_time_now());
    CHECK(msm_node_last_failure(n) != 0);
    node_up(f, n);
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

static const char *key_of(const fx_t *f, const msm_id_t *id)
{
    return msm_id_key(root, MSM_NS_SESSION, f->c.prefix, id);
}

/* A session as a request with this cookie sees it before the load (node:
 * the cookie's node id, NULL: the id's). */
static void from_cookie(msm_session_t *s, const msm_id_t *id,
                        const char *node)
{
    memset(s, 0, sizeof(*s));
    s->id = *id;
    if (node) {
        apr_cpystrn(s->id.node, node, sizeof(s->id.node));
    }
    s->has_id = 1;
}

/* A new session with payload v, its backup written. */
static int create(fx_t *f, msm_session_t *s, const char *v)
{
    msm_store_ctx_t *x = rq(f);
    apr_status_t rv;

    memset(s, 0, sizeof(*s));
    rv = msm_store_save(&f->c, x, s, v, strlen(v));
    msm_store_run_later(&f->c, x);
    return CHECK_OK(rv == APR_SUCCESS && s->has_id && s->node);
}

/* A load in a request of its own (the request's later work is run). */
static apr_status_t load_by(fx_t *f, const msm_id_t *id, const char *node,
                            msm_session_t *out)
{
    msm_store_ctx_t *x = rq(f);
    apr_status_t rv;

    from_cookie(out, id, node);
    rv = msm_store_load(&f->c, x, out);
    msm_store_run_later(&f->c, x);
    return rv;
}

/* A load first reads the failures other servers published, at most once a
 * second (msm_store.c, "failures seen elsewhere"): a load here makes sure
 * that the next ones within the second do not, where a test counts or
 * interleaves operations. */
static void settle_learning(fx_t *f)
{
    msm_id_t probe;
    msm_session_t pl;

    msm_id_generate(&probe);
    apr_cpystrn(probe.node, f->nodes->node[0].id, sizeof(probe.node));
    load_by(f, &probe, NULL, &pl);
}

/* ------------------------------------------------------------------ */
/* Create, read, modify, destroy                                       */

static void test_create(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x = rq(f);
    msm_session_t s;
    msm_node_t *b;
    const char *key;
    copy_t pc, bc;
    apr_time_t t0 = apr_time_now(), t1;
    int i, on[2] = { 0, 0 };

    memset(&s, 0, sizeof(s));
    apr_cpystrn(s.id.route, "r7", sizeof(s.id.route));
    CHECK_STATUS(msm_store_save(&f->c, x, &s, "hello=world", 11),
                 APR_SUCCESS);
    t1 = apr_time_now();
    if (!CHECK_OK(s.node != NULL)) {
        return;
    }
    CHECK_INT_EQ(s.has_id, 1);
    CHECK_INT_EQ(s.id_changed, 1);
    CHECK_INT_EQ(s.destroyed, 0);
    CHECK_INT_EQ(x->wrote, 1);
    CHECK_STR_EQ(s.id.node, s.node->id);
    CHECK_STR_EQ(s.id.route, "r7");
    CHECK_INT_EQ(strlen(s.id.hex), MSM_ID_HEX_LEN);
    CHECK_MEM_EQ(s.value, s.len, "hello=world", 11);
    CHECK_INT_EQ(s.meta.kind, 'S');
    CHECK_INT_EQ(s.meta.version, 1);
    CHECK_STR_EQ(s.meta.primary, s.node->id);
    CHECK(s.meta.written >= t0 && s.meta.written <= t1);
    CHECK(msm_node_is_live(s.node));
    b = other_node(f, s.node);

    /* one key for every copy: "<prefix><hex>", neither node nor route */
    key = key_of(f, &s.id);
    CHECK_STR_EQ(key, apr_pstrcat(root, f->c.prefix, s.id.hex, NULL));
    CHECK_STR_EQ(peek(port_of(f, s.node), key).raw,
                 copy_text('S', 1, s.meta.written, s.node->id,
                           "hello=world"));
    CHECK_COPY(port_of(f, s.node), apr_pstrcat(root, key, "-", s.id.node,
                                               NULL), "-");
    CHECK_COPY(port_of(f, b), apr_pstrcat(root, "bak:", key, NULL), "-");

    /* the backup copy waits for the deferred work */
    CHECK_COPY(port_of(f, b), key, "-");
    CHECK_INT_EQ(x->later->nelts, 1);
    msm_store_run_later(&f->c, x);
    CHECK_INT_EQ(x->later->nelts, 0);
    pc = peek(port_of(f, s.node), key);
    bc = peek(port_of(f, b), key);
    CHECK_COPY(port_of(f, b), key, S(1, s.node->id, "hello=world"));
    CHECK(pc.copy && bc.copy && bc.meta.written == pc.meta.written);
    /* a primary copy lives MsmIdleTimeout, any other twice that */
    CHECK_TTL(port_of(f, s.node), key, IDLE);
    CHECK_TTL(port_of(f, b), key, 2 * IDLE);
    CHECK_INT_EQ(f->stats.created, 1);
    CHECK_INT_EQ(f->stats.saved, 1);
    CHECK_INT_EQ(f->log.n, 0);

    /* new sessions spread over both nodes */
    for (i = 0; i < 40; i++) {
        msm_session_t y;
        if (create(f, &y, "x")) {
            on[y.node->index]++;
        }
    }
    CHECK_INT_EQ(on[0] + on[1], 40);
    CHECK(on[0] > 3 && on[1] > 3);
    fx_done(f);

    /* without MsmBackupAsync the backup is there at once */
    f = fx2();
    f->c.backup_async = 0;
    x = rq(f);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f->c, x, &s, "sync", 4), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    if (s.node) {
        CHECK_COPY(port_of(f, other_node(f, s.node)), key_of(f, &s.id),
                   S(1, s.id.node, "sync"));
    }
    fx_done(f);

    /* MsmBackup Off: no copy but the primary */
    f = fx2();
    f->c.backup = 0;
    x = rq(f);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f->c, x, &s, "nobak", 5), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    msm_store_run_later(&f->c, x);
    if (s.node) {
        CHECK_COPY(port_of(f, s.node), key_of(f, &s.id),
                   S(1, s.id.node, "nobak"));
        CHECK_COPY(port_of(f, other_node(f, s.node)), key_of(f, &s.id), "-");
    }
    fx_done(f);

    /* one node: no backup whatever MsmBackup says */
    f = fx_new("solo:0", IDLE, MAXV);
    x = rq(f);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f->c, x, &s, "solo", 4), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK_COPY(SRV[0], key_of(f, &s.id), S(1, "solo", "solo"));
    CHECK_COPY(SRV[1], key_of(f, &s.id), "-");
    fx_done(f);
}

static void test_read(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *b;
    const char *key;
    int pp, bp;

    if (!create(f, &s, "v=1")) {
        return;
    }
    b = other_node(f, s.node);
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, b);

    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "v=1", 3);
    CHECK(l.node == s.node);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_STR_EQ(l.id.node, s.id.node);
    CHECK_INT_EQ(l.id_changed, 0);
    CHECK_INT_EQ(l.destroyed, 0);
    CHECK_INT_EQ(l.meta.kind, 'S');
    CHECK_INT_EQ(l.meta.version, 1);
    CHECK(l.meta.written == s.meta.written);
    CHECK_STR_EQ(l.meta.primary, s.node->id);
    CHECK(l.cas != 0);
    CHECK_INT_EQ(x->later->nelts, 0);       /* fresh: no refresh */
    CHECK_INT_EQ(x->wrote, 0);
    CHECK_INT_EQ(f->stats.load_hit, 1);
    CHECK_INT_EQ(f->stats.backup_reads, 0);

    /* a read slides the primary's expiry back to MsmIdleTimeout, and
     * leaves the backup's alone */
    CHECK_STATUS(msm_mc_touch(raw(pp), key, 100), APR_SUCCESS);
    CHECK_STATUS(msm_mc_touch(raw(bp), key, 1000), APR_SUCCESS);
    CHECK_TTL(pp, key, 100);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_TTL(pp, key, IDLE);
    CHECK_TTL(bp, key, 1000);
    /* nothing was written by reads */
    CHECK_COPY(pp, key, S(1, s.id.node, "v=1"));
    CHECK_COPY(bp, key, S(1, s.id.node, "v=1"));
    CHECK(peek(pp, key).meta.written == s.meta.written);

    /* an id no node has: not found, not destroyed, nothing written */
    {
        msm_id_t id = s.id;
        msm_id_generate(&id);
        apr_cpystrn(id.node, s.id.node, sizeof(id.node));
        x = rq(f);
        from_cookie(&l, &id, NULL);
        CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_NOTFOUND);
        CHECK(l.value == NULL);
        CHECK_INT_EQ(l.destroyed, 0);
        CHECK_INT_EQ(x->later->nelts, 0);
        CHECK_INT_EQ(f->stats.load_miss, 1);
        CHECK_COPY(pp, key_of(f, &id), "-");
        CHECK_COPY(bp, key_of(f, &id), "-");
    }
    CHECK_INT_EQ(f->log.n, 0);

    /* the primary lost its copy: served from the backup (and restored) */
    raw_del(pp, key);
    f->stats.backup_reads = 0;
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "v=1", 3);
    CHECK_INT_EQ(f->stats.backup_reads, 1);
    CHECK_MSG(f->stats.backup_hits == 1, "backup_hits %d after a load "
              "served from the backup copy", (int)f->stats.backup_hits);
    CHECK_INT_EQ(f->stats.relocated, 0);
    fx_done(f);
}

static void test_modify(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    const char *key, *pid;
    apr_time_t t0, t1;
    int pp, bp;

    if (!create(f, &s, "v=1")) {
        return;
    }
    key = key_of(f, &s.id);
    pid = s.node->id;
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));

    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "v=2", 3), APR_SUCCESS);
    t1 = apr_time_now();
    CHECK_INT_EQ(l.id_changed, 0);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_STR_EQ(l.id.node, pid);
    CHECK(l.node == s.node);
    CHECK_INT_EQ(l.meta.version, 2);
    CHECK(l.meta.written >= t0 && l.meta.written <= t1);
    CHECK_STR_EQ(l.meta.primary, pid);
    CHECK_INT_EQ(x->wrote, 1);
    /* the primary at once, the backup after the response */
    CHECK_COPY(pp, key, S(2, pid, "v=2"));
    CHECK(peek(pp, key).meta.written == l.meta.written);
    CHECK_TTL(pp, key, IDLE);
    CHECK_COPY(bp, key, S(1, pid, "v=1"));
    msm_store_run_later(&f->c, x);
    CHECK_COPY(bp, key, S(2, pid, "v=2"));
    CHECK(peek(bp, key).meta.written == l.meta.written);
    CHECK_TTL(bp, key, 2 * IDLE);

    /* a second save in the same request: the next version */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "v=3", 3), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "v=4", 3), APR_SUCCESS);
    CHECK_INT_EQ(l.meta.version, 4);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, S(4, pid, "v=4"));
    CHECK_COPY(bp, key, S(4, pid, "v=4"));

    /* a save that did not load first still writes the newest version */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    l.node = s.node;
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "blind", 5), APR_SUCCESS);
    CHECK_INT_EQ(l.meta.version, 5);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, S(5, pid, "blind"));
    CHECK_COPY(bp, key, S(5, pid, "blind"));
    CHECK_INT_EQ(f->stats.saved, 5);
    CHECK_INT_EQ(f->log.n, 0);
    fx_done(f);
}

static void test_destroy(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l, late;
    const char *key;
    copy_t t;
    apr_time_t t0, t1;
    int pp, bp;

    if (!create(f, &s, "bye")) {
        return;
    }
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));

    /* a request that loaded before the destroy */
    x = rq(f);
    from_cookie(&late, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &late), APR_SUCCESS);

    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
    t1 = apr_time_now();
    CHECK_INT_EQ(l.has_id, 0);
    CHECK(l.node == NULL);
    CHECK(l.value == NULL);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_INT_EQ(x->wrote, 1);
    /* a tombstone on every node before remove returns, nothing deferred */
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK_COPY(pp, key, "D2");
    CHECK_COPY(bp, key, "D2");
    t = peek(pp, key);
    CHECK(t.meta.written >= t0 && t.meta.written <= t1);
    CHECK_STR_EQ(t.raw, copy_text('D', 2, t.meta.written, NULL, NULL));
    CHECK_TTL(pp, key, 2 * IDLE);
    CHECK_TTL(bp, key, 2 * IDLE);
    CHECK_INT_EQ(f->stats.deleted, 1);

    /* the old id is destroyed, and stays so */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 1);
    CHECK(l.value == NULL);
    /* reading a destroyed id must not shorten its tombstone: it has to
     * outlive every copy it stands against (2 x idle). The read's gats
     * gave it a primary's expiry; it gets its own back after the
     * response (one touch, deferred) */
    CHECK_INT_EQ(x->later->nelts, 1);
    msm_store_run_later(&f->c, x);
    CHECK_TTL(pp, key, 2 * IDLE);
    CHECK_TTL(bp, key, 2 * IDLE);
    CHECK_COPY(pp, key, "D2");

    /* the save of the request that loaded before the destroy: dropped */
    x = rq(f);
    CHECK_STATUS(msm_store_save(&f->c, x, &late, "late", 4), MSM_STORE_GONE);
    CHECK_INT_EQ(late.destroyed, 1);
    CHECK_INT_EQ(late.has_id, 0);
    CHECK_INT_EQ(x->wrote, 0);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK_INT_EQ(log_count(&f->log, "MSM00111"), 1);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, "D2");
    CHECK_COPY(bp, key, "D2");

    /* removing what is already destroyed changes nothing that matters */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, "D");
    CHECK_COPY(bp, key, "D");
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 1);
    fx_done(f);
}

static void test_regenerate(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_id_t old;
    int i;

    if (!create(f, &s, "anon")) {
        return;
    }
    old = s.id;
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    apr_cpystrn(l.id.route, "r1", sizeof(l.id.route));
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_regenerate(&f->c, x, &l, "user=alice", 10),
                 APR_SUCCESS);
    CHECK(strcmp(l.id.hex, old.hex) != 0);
    CHECK_INT_EQ(l.has_id, 1);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_STR_EQ(l.id.route, "r1");
    CHECK_INT_EQ(l.meta.version, 1);
    if (!CHECK_OK(l.node != NULL)) {
        return;
    }
    CHECK_STR_EQ(l.id.node, l.node->id);
    /* the old id is destroyed everywhere at once, the new one written */
    for (i = 0; i < 2; i++) {
        CHECK_COPY(f->port[i], key_of(f, &old), "D");
        CHECK_TTL(f->port[i], key_of(f, &old), 2 * IDLE);
    }
    CHECK_COPY(port_of(f, l.node), key_of(f, &l.id),
               S(1, l.id.node, "user=alice"));
    CHECK_COPY(port_of(f, other_node(f, l.node)), key_of(f, &l.id), "-");
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, other_node(f, l.node)), key_of(f, &l.id),
               S(1, l.id.node, "user=alice"));
    CHECK_INT_EQ(f->stats.regenerated, 1);

    /* the new cookie reads the session, the old one nothing */
    {
        msm_session_t n;
        CHECK_STATUS(load_by(f, &l.id, NULL, &n), APR_SUCCESS);
        CHECK_MEM_EQ(n.value, n.len, "user=alice", 10);
    }
    CHECK_STATUS(load_by(f, &old, NULL, &s), APR_NOTFOUND);
    CHECK_INT_EQ(s.destroyed, 1);
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Operation counts per path, from memcached's "stats"                 */

/* What one path costs on the session's primary node and on the other. */
typedef struct opwant {
    int get, set, touch, cas, miss;
} opwant_t;

typedef struct opstate {
    fx_t *f;
    msm_session_t s;
    const msm_node_t *primary;  /* set by act when it creates */
} opstate_t;

typedef struct opcase {
    const char *name;
    void (*prepare)(opstate_t *st);
    void (*act)(opstate_t *st);
    opwant_t want[2];           /* primary node, other node */
} opcase_t;

static void prep_none(opstate_t *st)
{
    memset(&st->s, 0, sizeof(st->s));
}

static void prep_session(opstate_t *st)
{
    create(st->f, &st->s, "counted");
    st->primary = st->s.node;
}

static void prep_primary_lost(opstate_t *st)
{
    prep_session(st);
    if (st->primary) {
        raw_del(port_of(st->f, st->primary), key_of(st->f, &st->s.id));
    }
}

static void prep_old_copy(opstate_t *st)
{
    prep_session(st);
    if (st->primary) {
        plant(port_of(st->f, st->primary), key_of(st->f, &st->s.id), 'S', 1,
              apr_time_now() - SEC(IDLE / 2 + 5), st->primary->id,
              "counted", IDLE);
    }
}

static void act_read(opstate_t *st)
{
    msm_store_ctx_t *x = rq(st->f);
    msm_session_t l;

    from_cookie(&l, &st->s.id, NULL);
    CHECK_STATUS(msm_store_load(&st->f->c, x, &l), APR_SUCCESS);
    msm_store_run_later(&st->f->c, x);
}

static void act_create(opstate_t *st)
{
    msm_store_ctx_t *x = rq(st->f);

    CHECK_STATUS(msm_store_save(&st->f->c, x, &st->s, "new", 3), APR_SUCCESS);
    st->primary = st->s.node;
    msm_store_run_later(&st->f->c, x);
}

static void act_modify(opstate_t *st)
{
    msm_store_ctx_t *x = rq(st->f);
    msm_session_t l;

    from_cookie(&l, &st->s.id, NULL);
    CHECK_STATUS(msm_store_load(&st->f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&st->f->c, x, &l, "changed", 7), APR_SUCCESS);
    msm_store_run_later(&st->f->c, x);
}

static void act_destroy(opstate_t *st)
{
    msm_store_ctx_t *x = rq(st->f);
    msm_session_t l;

    from_cookie(&l, &st->s.id, NULL);
    CHECK_STATUS(msm_store_remove(&st->f->c, x, &l), APR_SUCCESS);
    msm_store_run_later(&st->f->c, x);
}

static void act_keepalive(opstate_t *st)
{
    msm_store_ctx_t *x = rq(st->f);

    msm_store_keepalive(&st->f->c, x, &st->s);
    msm_store_run_later(&st->f->c, x);
}

static const opcase_t opcases[] = {
    /*                                        get set touch cas miss */
    { "read (gats), unmodified: nothing more", prep_session, act_read,
      { { 0, 0, 1, 0, 0 }, { 0, 0, 0, 0, 0 } } },
    { "create: add + backup add", prep_none, act_create,
      { { 0, 1, 0, 0, 0 }, { 0, 1, 0, 0, 0 } } },
    { "modify: gats, cas + backup gets, cas", prep_session, act_modify,
      { { 0, 1, 1, 1, 0 }, { 1, 1, 0, 1, 0 } } },
    { "destroy: one set per node", prep_session, act_destroy,
      { { 0, 1, 0, 0, 0 }, { 0, 1, 0, 0, 0 } } },
    { "primary lost: gats miss, gets, add + backup gets", prep_primary_lost,
      act_read, { { 0, 1, 1, 0, 1 }, { 2, 0, 0, 0, 0 } } },
    { "refresh: gats, cas + backup gets, cas", prep_old_copy, act_read,
      { { 0, 1, 1, 1, 0 }, { 1, 1, 0, 1, 0 } } },
    /* keepalive reads first: it never touches a tombstone (that would
     * shorten it) nor keeps an older copy than memcached's */
    { "keepalive: gets, touch + backup gets, touch", prep_session,
      act_keepalive, { { 1, 0, 1, 0, 0 }, { 1, 0, 1, 0, 0 } } },
};

static void test_op_counts(void)
{
    fx_t *f = fx2();
    size_t k;

    for (k = 0; k < sizeof(opcases) / sizeof(opcases[0]); k++) {
        const opcase_t *oc = &opcases[k];
        int attempt, clean = 0;

        /* The servers are shared with the other tests of a parallel "make
         * check": a measure counts only when memcached's counters moved by
         * exactly the operations this store made. */
        for (attempt = 0; attempt < 100 && !clean; attempt++) {
            opstate_t st;
            mcstat_t before[2], after[2];
            int ops0[2], i, r;

            memset(&st, 0, sizeof(st));
            st.f = f;
            oc->prepare(&st);
            settle_learning(f);
            for (i = 0; i < 2; i++) {
                ops0[i] = f->tap[i].ops;
                raw_stats(f->port[i], &before[i]);
            }
            oc->act(&st);
            for (i = 0; i < 2; i++) {
                raw_stats(f->port[i], &after[i]);
            }
            clean = st.primary != NULL;
            for (i = 0; i < 2 && clean; i++) {
                apr_uint64_t seen = (after[i].get - before[i].get)
                    + (after[i].set - before[i].set)
                    + (after[i].touch - before[i].touch)
                    + (after[i].del - before[i].del);
                clean = seen == (apr_uint64_t)(f->tap[i].ops - ops0[i]);
            }
            if (!clean) {
                apr_sleep(MS(20));
                continue;
            }
            for (r = 0; r < 2; r++) {
                int i2 = r == 0 ? st.primary->index
                                : (st.primary->index + 1) % 2;
                const opwant_t *w = &oc->want[r];
                mcstat_t *a = &after[i2], *b = &before[i2];
                const char *role = r == 0 ? "primary" : "other";
                CHECK_MSG(a->get - b->get == (apr_uint64_t)w->get
                          && a->set - b->set == (apr_uint64_t)w->set
                          && a->touch - b->touch == (apr_uint64_t)w->touch
                          && a->cas - b->cas == (apr_uint64_t)w->cas
                          && (a->get_misses - b->get_misses)
                             + (a->touch_misses - b->touch_misses)
                             == (apr_uint64_t)w->miss
                          && a->del == b->del,
                          "%s, %s node: get %llu set %llu touch %llu cas %llu "
                          "miss %llu delete %llu; expected get %d set %d "
                          "touch %d cas %d miss %d delete 0", oc->name, role,
                          (unsigned long long)(a->get - b->get),
                          (unsigned long long)(a->set - b->set),
                          (unsigned long long)(a->touch - b->touch),
                          (unsigned long long)(a->cas - b->cas),
                          (unsigned long long)((a->get_misses - b->get_misses)
                              + (a->touch_misses - b->touch_misses)),
                          (unsigned long long)(a->del - b->del),
                          w->get, w->set, w->touch, w->cas, w->miss);
            }
        }
        CHECK_MSG(clean, "%s: memcached's counters never settled", oc->name);
    }
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Where a load finds the session: one row per situation               */

typedef struct search_case {
    const char *name;
    const char *layout;
    const char *before[MAXN];   /* see plant_spec */
    const char *cookie;         /* the cookie's node id */
    unsigned int blip;          /* nodes that failed after the copies were
                                 * written (bit i: node i) */
    apr_status_t rv;
    const char *served;         /* NULL: nothing */
    const char *node;           /* the cookie's node after the load */
    int changed, destroyed;
    int refreshed;              /* the primary's copy is rewritten */
    const char *after[MAXN];    /* after the deferred work; "x": unchecked */
    int ttl[MAXN];              /* 1: idle, 2: 2 x idle, 0: unchecked */
} search_case_t;

static const search_case_t search_cases[] = {
    { "the primary copy is served", "n1:0 n2:1",
      { "S1@n1:a", "S1@n1:a" }, "n1", 0,
      APR_SUCCESS, "a", "n1", 0, 0, 0, { "S1@n1:a", "S1@n1:a" }, { 1, 2 } },
    { "a cookie naming the backup's node moves to the primary", "n1:0 n2:1",
      { "S1@n1:a", "S1@n1:a" }, "n2", 0,
      APR_SUCCESS, "a", "n1", 1, 0, 0, { "S1@n1:a", "S1@n1:a" }, { 0, 2 } },
    { "a primary that lost its copy gets it back", "n1:0 n2:1",
      { "-", "S1@n1:a" }, "n1", 0,
      APR_SUCCESS, "a", "n1", 0, 0, 0, { "S1@n1:a", "S1@n1:a" }, { 1, 2 } },
    { "a primary with an older copy gets the newest", "n1:0 n2:1",
      { "S1@n1:old", "S2@n1:new" }, "n1", 1,
      APR_SUCCESS, "new", "n1", 0, 0, 0, { "S2@n1:new", "S2@n1:new" },
      { 1, 0 } },
    { "a tombstone at the cookie's node", "n1:0 n2:1",
      { "D", "S1@n1:a" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 1, 0, { "D", "S1@n1:a" }, { 0, 0 } },
    { "a tombstone on another node", "n1:0 n2:1",
      { "-", "D" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 1, 0, { "-", "D" }, { 0, 0 } },
    { "a tombstone elsewhere, a backup at the cookie's node: tombstoned",
      "n1:0 n2:1", { "S1@n2:a", "D" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 1, 0, { "D2", "D" }, { 2, 0 } },
    { "a tombstone elsewhere, an old primary after an outage: tombstoned",
      "n1:0 n2:1", { "S1@n1:a", "D" }, "n1", 1,
      APR_NOTFOUND, NULL, NULL, 0, 1, 0, { "D2", "D" }, { 2, 0 } },
    { "no copy anywhere", "n1:0 n2:1",
      { "-", "-" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 0, 0, { "-", "-" }, { 0, 0 } },
    { "the newest copy wins, not the first node (2nd)", "n1:0 n2:1",
      { "S1@n9:old", "S2@n9:new" }, "n9", 0,
      APR_SUCCESS, "new", "n2", 1, 0, 0, { "S3@n2:new", "S3@n2:new" },
      { 2, 1 } },
    { "the newest copy wins, not the last node (1st)", "n1:0 n2:1",
      { "S2@n9:new", "S1@n9:old" }, "n9", 0,
      APR_SUCCESS, "new", "n1", 1, 0, 0, { "S3@n1:new", "S3@n1:new" },
      { 1, 2 } },
    { "equal versions: the later write wins", "n1:0 n2:1",
      { "S2@n9t0:older", "S2@n9t1:newer" }, "n9", 0,
      APR_SUCCESS, "newer", "n2", 1, 0, 0,
      { "S3@n2:newer", "S3@n2:newer" }, { 2, 1 } },
    { "the primary's node is down: moved to the copy", "n1:x n2:1",
      { "x", "S1@n1:a" }, "n1", 0,
      APR_SUCCESS, "a", "n2", 1, 0, 0, { "x", "S2@n2:a" }, { 0, 1 } },
    { "the node the copy names lost it: restored there", "n1:0 n2:1",
      { "S1@n2:a", "-" }, "n1", 0,
      APR_SUCCESS, "a", "n2", 1, 0, 0, { "S1@n2:a", "S1@n2:a" }, { 0, 1 } },
    { "an old primary after an outage is repaired", "n1:0 n2:1",
      { "S1@n1:old", "S2@n2:new" }, "n1", 1,
      APR_SUCCESS, "new", "n2", 1, 0, 0, { "S2@n2:new", "S2@n2:new" },
      { 2, 0 } },
    { "a copy from before an outage, still the newest: refreshed",
      "n1:0 n2:1", { "S1@n1:a", "S1@n1:a" }, "n1", 1,
      APR_SUCCESS, "a", "n1", 0, 0, 1, { "S1@n1:a", "S1@n1:a" }, { 1, 2 } },
    { "a corrupt item at the cookie's node is replaced", "n1:0 n2:1",
      { "?", "S1@n1:a" }, "n1", 0,
      APR_SUCCESS, "a", "n1", 0, 0, 0, { "S1@n1:a", "S1@n1:a" }, { 1, 2 } },
    { "a corrupt item alone is no session", "n1:0 n2:1",
      { "?", "-" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 0, 0, { "?", "-" }, { 0, 0 } },
    { "too large at the cookie's node", "n1:0 n2:1",
      { "!", "S1@n1:a" }, "n1", 0,
      MSM_MC_ETOOBIG, NULL, NULL, 0, 0, 0, { "S1@n1", "S1@n1:a" }, { 0, 0 } },
    { "too large elsewhere: not known", "n1:0 n2:1",
      { "-", "!" }, "n1", 0,
      APR_EGENERAL, NULL, NULL, 0, 0, 0, { "-", "S1@n1" }, { 0, 0 } },
    { "the cookie's node is down, nothing elsewhere: not known",
      "n1:x n2:1", { "x", "-" }, "n1", 0,
      APR_EGENERAL, NULL, NULL, 0, 0, 0, { "x", "-" }, { 0, 0 } },
    /* three nodes */
    { "the newest backup one node further", "n1:0 n2:1 n3:2",
      { "-", "S1@n1:old", "S2@n1:new" }, "n1", 0,
      APR_SUCCESS, "new", "n1", 0, 0, 0,
      { "S2@n1:new", "S2@n1:new", "S2@n1:new" }, { 1, 2, 0 } },
    { "a tombstone on the last node", "n1:0 n2:1 n3:2",
      { "-", "S1@n1:a", "D" }, "n1", 0,
      APR_NOTFOUND, NULL, NULL, 0, 1, 0, { "-", "D2", "D" }, { 0, 2, 0 } },
    { "primary down: moved to the newest of two copies", "n1:x n2:0 n3:1",
      { "x", "S1@n1:old", "S2@n1:new" }, "n1", 0,
      APR_SUCCESS, "new", "n3", 1, 0, 0,
      { "x", "S3@n3:new", "S3@n3:new" }, { 0, 2, 1 } },
};

static void run_search_case(const search_case_t *k)
{
    fx_t *f = fx_new(k->layout, IDLE, MAXV);
    msm_store_ctx_t *x = rq(f);
    msm_session_t l;
    msm_id_t id;
    const char *key;
    apr_time_t base = apr_time_now() - SEC(10), t0;
    apr_status_t rv;
    int i, n = f->nodes->count;

    msm_id_generate(&id);
    key = key_of(f, &id);
    for (i = 0; i < n; i++) {
        if (k->before[i][0] != 'x') {
            plant_spec(f->port[i], key, k->before[i], base);
        }
    }
    for (i = 0; i < n; i++) {
        if (k->blip & (1u << i)) {
            node_blip(f, &f->nodes->node[i]);
        }
    }
    from_cookie(&l, &id, k->cookie);
    t0 = apr_time_now();
    rv = msm_store_load(&f->c, x, &l);
    CHECK_MSG(rv == k->rv, "%s: load returned %d, expected %d", k->name,
              (int)rv, (int)k->rv);
    if (k->served) {
        CHECK_MSG(l.value && l.len == strlen(k->served)
                  && memcmp(l.value, k->served, l.len) == 0,
                  "%s: served \"%.*s\", expected \"%s\"", k->name,
                  l.value ? (int)l.len : 6, l.value ? l.value : "(null)",
                  k->served);
        CHECK_MSG(l.node && strcmp(l.id.node, k->node) == 0
                  && strcmp(l.node->id, k->node) == 0,
                  "%s: the cookie names %s, expected %s", k->name, l.id.node,
                  k->node);
        /* what was served is what the primary holds now */
        if (l.node) {
            copy_t c = peek(port_of(f, l.node), key);
            CHECK_MSG(c.copy && c.meta.version == l.meta.version
                      && strcmp(c.meta.primary, l.node->id) == 0,
                      "%s: the session's node holds %s, loaded version %llu",
                      k->name, describe(&c),
                      (unsigned long long)l.meta.version);
        }
    }
    else {
        CHECK_MSG(l.value == NULL, "%s: served something", k->name);
    }
    CHECK_MSG(l.id_changed == k->changed, "%s: id_changed %d", k->name,
              l.id_changed);
    CHECK_MSG(l.destroyed == k->destroyed, "%s: destroyed %d", k->name,
              l.destroyed);
    CHECK_STR_EQ(l.id.hex, id.hex);
    msm_store_run_later(&f->c, x);
    for (i = 0; i < n; i++) {
        if (k->after[i] && k->after[i][0] != 'x') {
            CHECK_COPY_AS(k->name, f->port[i], key, k->after[i]);
        }
        if (k->ttl[i]) {
            int want = k->ttl[i] == 1 ? IDLE : 2 * IDLE, t;
            t = raw_ttl(f->port[i], key);
            CHECK_MSG(t >= want - 3 && t <= want, "%s: ttl on node %d is %d, "
                      "expected %d", k->name, i, t, want);
        }
        /* unreadable or corrupt items are no node failures */
        if (k->before[i][0] != 'x') {
            CHECK_MSG(msm_node_is_live(&f->nodes->node[i]),
                      "%s: node %d marked dead", k->name, i);
        }
    }
    if (k->refreshed && l.node) {
        copy_t c = peek(port_of(f, l.node), key);
        CHECK_MSG(c.copy && c.meta.written >= t0, "%s: not refreshed: %s",
                  k->name, describe(&c));
    }
    for (i = 0; i < n; i++) {
        if (k->before[i][0] != 'x') {
            raw_del(f->port[i], key);
        }
    }
    fx_done(f);
}

static void test_search_table(void)
{
    size_t k;
    int skipped = 0;

    for (k = 0; k < sizeof(search_cases) / sizeof(search_cases[0]); k++) {
        if (strstr(search_cases[k].layout, ":2") && NSRV < 3) {
            skipped++;
            continue;
        }
        run_search_case(&search_cases[k]);
    }
    if (skipped) {
        printf("test_store: %d three-node search cases skipped (no third "
               "memcached)\n", skipped);
    }
}

/* ------------------------------------------------------------------ */
/* G1: a destroyed id never comes back                                 */

typedef enum {
    AFTER_NOTHING,
    AFTER_PRIMARY_RESTARTED,        /* its tombstone lost */
    AFTER_BACKUP_RESTARTED,
    AFTER_STALE_ON_BACKUP,          /* an old session copy reappears */
    AFTER_STALE_ON_PRIMARY_BLIP,    /* there, after the node failed once */
    AFTER_LATE_SAVE,                /* of a request that loaded before */
    AFTER_KEEPALIVE,                /* sticky: a local copy kept alive */
    AFTER_KEEPALIVE_PRIMARY_RESTARTED
} g1_after_e;

typedef struct g1_case {
    const char *name;
    int a_saves_before;     /* A's save is before the destroy, its backup
                             * after */
    int a_reads_old;        /* A's load schedules a refresh */
    g1_after_e after;
    int backup_out;         /* the backup's node is unreachable during the
                             * destroy, and back after it */
} g1_case_t;

static const g1_case_t g1_cases[] = {
    { "destroyed", 0, 0, AFTER_NOTHING, 0 },
    { "primary restarted empty", 0, 0, AFTER_PRIMARY_RESTARTED, 0 },
    { "backup node restarted empty", 0, 0, AFTER_BACKUP_RESTARTED, 0 },
    { "stale copy back on the backup node", 0, 0, AFTER_STALE_ON_BACKUP, 0 },
    { "stale copy back on the primary after a failure", 0, 0,
      AFTER_STALE_ON_PRIMARY_BLIP, 0 },
    { "late save of a request that loaded before", 0, 0, AFTER_LATE_SAVE, 0 },
    { "late save, the backup's node out at the destroy", 0, 0,
      AFTER_LATE_SAVE, 1 },
    { "late backup of a save before the destroy", 1, 0, AFTER_NOTHING, 0 },
    { "late refresh of a read before the destroy", 0, 1, AFTER_NOTHING, 0 },
    { "the backup's node out at the destroy", 0, 0, AFTER_NOTHING, 1 },
    { "keepalive of a local copy", 0, 0, AFTER_KEEPALIVE, 0 },
    { "keepalive after the primary restarted empty", 0, 0,
      AFTER_KEEPALIVE_PRIMARY_RESTARTED, 0 },
};

static void run_g1_case(const g1_case_t *k)
{
    fx_t *f = fx2();
    msm_store_ctx_t *xa, *xb, *xc;
    msm_session_t s, a, b, c;
    msm_node_t *pn, *bn;
    const char *key;
    apr_status_t rv;
    int i;

    if (!create(f, &s, "secret")) {
        return;
    }
    pn = s.node;
    bn = other_node(f, pn);
    key = key_of(f, &s.id);
    if (k->a_reads_old) {
        plant(port_of(f, pn), key, 'S', 1, apr_time_now() - SEC(IDLE),
              pn->id, "secret", IDLE);
    }
    /* request A loads (and maybe saves), B loads and destroys */
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    if (k->a_saves_before) {
        CHECK_STATUS(msm_store_save(&f->c, xa, &a, "A", 1), APR_SUCCESS);
    }
    xb = rq(f);
    from_cookie(&b, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    if (k->backup_out) {
        node_down(f, bn);
    }
    CHECK_STATUS(msm_store_remove(&f->c, xb, &b), APR_SUCCESS);
    if (k->backup_out) {
        node_up(f, bn);
    }
    CHECK_COPY_AS(k->name, port_of(f, pn), key, "D");
    CHECK_COPY_AS(k->name, port_of(f, bn), key,
                  k->backup_out ? S(1, pn->id, "secret") : "D");

    switch (k->after) {
    case AFTER_NOTHING:
        break;
    case AFTER_PRIMARY_RESTARTED:
        raw_del(port_of(f, pn), key);
        break;
    case AFTER_BACKUP_RESTARTED:
        raw_del(port_of(f, bn), key);
        break;
    case AFTER_STALE_ON_BACKUP:
        plant(port_of(f, bn), key, 'S', 1, s.meta.written, pn->id, "secret",
              2 * IDLE);
        break;
    case AFTER_STALE_ON_PRIMARY_BLIP:
        plant(port_of(f, pn), key, 'S', 1, s.meta.written, pn->id, "secret",
              IDLE);
        node_blip(f, pn);
        break;
    case AFTER_LATE_SAVE:
        rv = msm_store_save(&f->c, xa, &a, "late", 4);
        CHECK_MSG(rv == MSM_STORE_GONE, "%s: save returned %d", k->name,
                  (int)rv);
        CHECK_INT_EQ(a.destroyed, 1);
        CHECK_INT_EQ(a.has_id, 0);
        break;
    case AFTER_KEEPALIVE:
        msm_store_keepalive(&f->c, xa, &a);
        break;
    case AFTER_KEEPALIVE_PRIMARY_RESTARTED:
        raw_del(port_of(f, pn), key);
        msm_store_keepalive(&f->c, xa, &a);
        break;
    }
    msm_store_run_later(&f->c, xa);
    msm_store_run_later(&f->c, xb);
    if (k->after == AFTER_KEEPALIVE) {
        /* touching a tombstone must not shorten it */
        CHECK_TTL(port_of(f, pn), key, 2 * IDLE);
        CHECK_TTL(port_of(f, bn), key, 2 * IDLE);
    }

    /* a request with the old cookie finds it destroyed */
    xc = rq(f);
    from_cookie(&c, &s.id, NULL);
    rv = msm_store_load(&f->c, xc, &c);
    CHECK_MSG(rv == APR_NOTFOUND && c.destroyed && c.value == NULL,
              "%s: old cookie: load returned %d, destroyed %d, value %s",
              k->name, (int)rv, c.destroyed, c.value ? c.value : "(none)");
    msm_store_run_later(&f->c, xc);
    rv = load_by(f, &s.id, NULL, &c);
    CHECK_MSG(rv == APR_NOTFOUND, "%s: later load returned %d", k->name,
              (int)rv);
    rv = load_by(f, &s.id, bn->id, &c);
    CHECK_MSG(rv == APR_NOTFOUND, "%s: load via the backup's node returned "
              "%d", k->name, (int)rv);
    /* no session copy is left: the ones that outlived the destroy got the
     * tombstone when a read found them */
    for (i = 0; i < 2; i++) {
        copy_t cp = peek(f->port[i], key);
        CHECK_MSG(!(cp.copy && cp.meta.kind == 'S'),
                  "%s: node %d holds a session copy: %s", k->name, i,
                  describe(&cp));
    }
    CHECK_COPY_AS(k->name, port_of(f, bn), key,
                  k->after == AFTER_BACKUP_RESTARTED ? "-" : "D");
    fx_done(f);
}

static void test_g1_no_resurrection(void)
{
    size_t k;

    for (k = 0; k < sizeof(g1_cases) / sizeof(g1_cases[0]); k++) {
        run_g1_case(&g1_cases[k]);
    }
}

/* The logout-vs-backup race, in sequence: A loads, B destroys (its
 * deferred work not run yet), C misses the primary: the backup must not
 * bring the session back. */
static void test_logout_vs_backup(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *xa, *xb, *xc;
    msm_session_t s, a, b, c;
    const char *key;
    int pp, bp;

    if (!create(f, &s, "user=bob")) {
        return;
    }
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    xb = rq(f);
    from_cookie(&b, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    CHECK_STATUS(msm_store_remove(&f->c, xb, &b), APR_SUCCESS);
    raw_del(pp, key);
    xc = rq(f);
    from_cookie(&c, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xc, &c), APR_NOTFOUND);
    CHECK_INT_EQ(c.destroyed, 1);
    CHECK(c.value == NULL);
    CHECK_COPY(pp, key, "-");           /* nothing restored */
    CHECK_COPY(bp, key, "D");
    CHECK_STATUS(msm_store_save(&f->c, xa, &a, "user=bob&x=1", 12),
                 MSM_STORE_GONE);
    msm_store_run_later(&f->c, xa);
    msm_store_run_later(&f->c, xb);
    msm_store_run_later(&f->c, xc);
    CHECK_COPY(pp, key, "-");
    CHECK_COPY(bp, key, "D");
    CHECK_STATUS(load_by(f, &s.id, NULL, &c), APR_NOTFOUND);
    CHECK_INT_EQ(c.destroyed, 1);
    fx_done(f);
}

/* The backup node was down at the last save (the backup went one node
 * further), then came back with an older backup: the destroy reaches
 * every node, and before it a lost primary comes back from the newest
 * backup, not the first one in node order. */
static void test_backup_one_node_further(void)
{
    fx_t *f;
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *p, *q, *r;
    const char *key;

    if (NSRV < 3) {
        printf("test_store: three-node destroy skipped (no third "
               "memcached)\n");
        return;
    }
    f = fx_new("n1:0 n2:1 n3:2", IDLE, MAXV);
    if (!create(f, &s, "v1")) {
        return;
    }
    p = s.node;
    q = &f->nodes->node[(p->index + 1) % 3];
    r = &f->nodes->node[(p->index + 2) % 3];
    key = key_of(f, &s.id);
    CHECK_COPY(port_of(f, q), key, S(1, p->id, "v1"));
    CHECK_COPY(port_of(f, r), key, "-");

    /* q is down at the next save: its backup goes to r */
    node_down(f, q);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "v2", 2), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    CHECK(!msm_node_is_live(q));
    node_up(f, q);
    CHECK_COPY(port_of(f, p), key, S(2, p->id, "v2"));
    CHECK_COPY(port_of(f, q), key, S(1, p->id, "v1"));
    CHECK_COPY(port_of(f, r), key, S(2, p->id, "v2"));

    /* the primary restarts empty: the newest backup wins */
    raw_del(port_of(f, p), key);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "v2", 2);
    CHECK_INT_EQ(l.meta.version, 2);
    CHECK_COPY(port_of(f, p), key, S(2, p->id, "v2"));
    CHECK_COPY(port_of(f, q), key, S(2, p->id, "v2"));

    /* destroy: a tombstone on all three */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
    CHECK_COPY(port_of(f, p), key, "D");
    CHECK_COPY(port_of(f, q), key, "D");
    CHECK_COPY(port_of(f, r), key, "D");
    msm_store_run_later(&f->c, x);
    /* whichever tombstones get lost, one is enough */
    raw_del(port_of(f, p), key);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 1);
    raw_del(port_of(f, q), key);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 1);
    CHECK_COPY(port_of(f, p), key, "-");
    CHECK_COPY(port_of(f, q), key, "-");
    CHECK_COPY(port_of(f, r), key, "D");

    /* a backup deferred past a destroy stops at the tombstone on the
     * backup's node; it must not go on to the next node, which was out
     * during the destroy and has none */
    if (!create(f, &s, "w1")) {
        return;
    }
    p = s.node;
    q = &f->nodes->node[(p->index + 1) % 3];
    r = &f->nodes->node[(p->index + 2) % 3];
    key = key_of(f, &s.id);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "w2", 2), APR_SUCCESS);
    node_down(f, r);
    {
        msm_store_ctx_t *y = rq(f);
        msm_session_t d;
        from_cookie(&d, &s.id, NULL);
        CHECK_STATUS(msm_store_remove(&f->c, y, &d), APR_SUCCESS);
    }
    node_up(f, r);
    CHECK_COPY(port_of(f, p), key, "D");
    CHECK_COPY(port_of(f, q), key, "D");
    CHECK_COPY(port_of(f, r), key, "-");
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, q), key, "D");
    CHECK_COPY_AS("the late backup", port_of(f, r), key, "-");
    fx_done(f);
}

/* A save that meets the tombstone on its node is dropped: it is no node
 * failure, and must not be written on another node instead. The session
 * lives on n2 (it moved there in an outage of n1), n1 is out again during
 * the destroy and comes back with an old copy. */
static void test_save_meets_tombstone(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *xa, *xb;
    msm_session_t s, m, a, b, l;
    msm_node_t *p1, *p2;
    apr_status_t rv;

    if (!create(f, &s, "v1")) {
        return;
    }
    p1 = s.node;
    p2 = other_node(f, p1);
    node_down(f, p1);
    CHECK_STATUS(load_by(f, &s.id, NULL, &m), APR_SUCCESS);
    CHECK(m.node == p2);
    node_up(f, p1);
    xa = rq(f);
    from_cookie(&a, &m.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    CHECK(a.node == p2);
    node_down(f, p1);
    xb = rq(f);
    from_cookie(&b, &m.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    CHECK_STATUS(msm_store_remove(&f->c, xb, &b), APR_SUCCESS);
    node_up(f, p1);
    CHECK_COPY(port_of(f, p2), key_of(f, &s.id), "D");
    CHECK_COPY(port_of(f, p1), key_of(f, &s.id), S(1, p1->id, "v1"));
    rv = msm_store_save(&f->c, xa, &a, "late", 4);
    CHECK_MSG(rv == MSM_STORE_GONE, "the late save returned %d and wrote on "
              "%s", (int)rv, a.node ? a.node->id : "-");
    msm_store_run_later(&f->c, xa);
    CHECK_COPY(port_of(f, p1), key_of(f, &s.id), S(1, p1->id, "v1"));
    rv = load_by(f, &a.id, NULL, &l);
    CHECK_MSG(rv == APR_NOTFOUND, "the late save's cookie (%s) reads \"%s\"",
              a.id.node, l.value ? l.value : "");
    CHECK_STATUS(load_by(f, &m.id, NULL, &l), APR_NOTFOUND);
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* An outage of the primary's node                                     */

/* The session moved while its node was out; the node comes back with its
 * old copy. An old cookie must get the current session, and the old copy
 * is repaired. */
static void test_stale_primary_after_outage(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l, m;
    msm_node_t *a, *b;
    const char *key;
    apr_time_t t0;

    if (!create(f, &s, "old")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);

    node_down(f, a);
    x = rq(f);
    from_cookie(&m, &s.id, NULL);
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_load(&f->c, x, &m), APR_SUCCESS);
    CHECK(apr_time_now() - t0 < 2 * TIMEOUT);
    CHECK_MEM_EQ(m.value, m.len, "old", 3);
    CHECK(m.node == b);
    CHECK_STR_EQ(m.id.node, b->id);
    CHECK_STR_EQ(m.id.hex, s.id.hex);
    CHECK_INT_EQ(m.id_changed, 1);
    CHECK_INT_EQ(m.meta.version, 2);
    CHECK(!msm_node_is_live(a));
    CHECK(msm_node_last_failure(a) != 0);
    CHECK_COPY(port_of(f, b), key, S(2, b->id, "old"));
    CHECK_TTL(port_of(f, b), key, IDLE);
    CHECK_INT_EQ(f->stats.relocated, 1);
    CHECK_INT_EQ(log_count(&f->log, "MSM00101"), 1);
    CHECK_INT_EQ(log_count(&f->log, "MSM00110"), 1);
    CHECK_STATUS(msm_store_save(&f->c, x, &m, "current", 7), APR_SUCCESS);
    CHECK_INT_EQ(m.meta.version, 3);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, b), key, S(3, b->id, "current"));

    /* the node returns with its copy from before */
    node_up(f, a);
    CHECK_COPY(f->port[a->index], key, S(1, a->id, "old"));
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STR_EQ(l.id.node, a->id);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "current", 7);
    CHECK(l.node == b);
    CHECK_STR_EQ(l.id.node, b->id);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_INT_EQ(l.meta.version, 3);
    CHECK_COPY(f->port[a->index], key, S(1, a->id, "old"));
    msm_store_run_later(&f->c, x);
    /* repaired: a copy that names the real primary */
    CHECK_COPY(f->port[a->index], key, S(3, b->id, "current"));
    CHECK_TTL(f->port[a->index], key, 2 * IDLE);
    CHECK_COPY(port_of(f, b), key, S(3, b->id, "current"));
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "current", 7);
    CHECK_STATUS(load_by(f, &m.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "current", 7);
    CHECK_INT_EQ(l.id_changed, 0);
    fx_done(f);
}

/* A request loaded before the outage and saves after the session moved
 * and the node came back: it must not leave two primaries that tell two
 * different sessions depending on the cookie. */
static void test_late_save_after_move(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *xa, *xb;
    msm_session_t s, a, b, l1, l2;
    msm_node_t *pa, *pb;
    apr_status_t r1, r2;

    if (!create(f, &s, "v1")) {
        return;
    }
    pa = s.node;
    pb = other_node(f, pa);
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    node_down(f, pa);
    xb = rq(f);
    from_cookie(&b, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    CHECK(b.node == pb);
    CHECK_STATUS(msm_store_save(&f->c, xb, &b, "from B", 6), APR_SUCCESS);
    msm_store_run_later(&f->c, xb);
    node_up(f, pa);
    /* A's save: after B's, it is the last writer */
    CHECK_STATUS(msm_store_save(&f->c, xa, &a, "from A", 6), APR_SUCCESS);
    msm_store_run_later(&f->c, xa);
    r1 = load_by(f, &s.id, pa->id, &l1);
    r2 = load_by(f, &s.id, pb->id, &l2);
    CHECK_STATUS(r1, APR_SUCCESS);
    CHECK_STATUS(r2, APR_SUCCESS);
    CHECK_MSG(r1 == r2 && l1.value && l2.value && l1.len == l2.len
              && memcmp(l1.value, l2.value, l1.len) == 0,
              "a cookie naming %s reads \"%s\", one naming %s reads \"%s\"",
              pa->id, l1.value ? l1.value : "(none)", pb->id,
              l2.value ? l2.value : "(none)");
    fx_done(f);
}

/* The failures one server sees are published on the other nodes, and the
 * other servers of the cluster learn them: a node that comes back with an
 * old copy is then not trusted by a server that never saw it fail. */
static void test_failures_published(void)
{
    fx_t *x = fx2(), *y = fx_new("n1:0 n2:1", IDLE, MAXV);
    msm_store_ctx_t *c1;
    msm_session_t s, m, l;
    msm_node_t *xa, *xb, *ya;
    const char *fkey, *key;
    apr_time_t seen, t0;
    copy_t list;
    int learned = 0, probes = 0, probes_ok = 0;

    fx_share(y, x);
    if (!create(x, &s, "old")) {
        return;
    }
    xa = s.node;
    xb = other_node(x, xa);
    ya = &y->nodes->node[xa->index];
    key = key_of(x, &s.id);

    /* server x sees n1 fail, moves the session and changes it */
    node_down(x, xa);
    c1 = rq(x);
    from_cookie(&m, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&x->c, c1, &m), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&x->c, c1, &m, "current", 7), APR_SUCCESS);
    CHECK_INT_EQ(c1->went_down, 1);
    msm_store_run_later(&x->c, c1);
    CHECK_INT_EQ(c1->went_down, 0);
    node_up(x, xa);
    seen = msm_node_last_failure(xa);

    /* the list, on the node that did not fail: "<host>:<port> <time>" */
    fkey = apr_pstrcat(root, x->c.prefix, "msm-failures", NULL);
    list = peek(port_of(x, xb), fkey);
    CHECK_STR_EQ(list.present ? list.raw : NULL,
                 apr_psprintf(root, "127.0.0.1:%d %" APR_TIME_T_FMT "\n",
                              port_of(x, xa), seen));
    CHECK_TTL(port_of(x, xb), fkey, 2 * IDLE);
    CHECK_COPY(port_of(x, xa), fkey, "-");
    CHECK_COPY(port_of(x, xa), key, S(1, xa->id, "old"));

    /* server y, which saw nothing, learns it (one node read a second) */
    CHECK_INT_EQ(msm_node_last_failure(ya), 0);
    t0 = apr_time_now();
    while (!learned && apr_time_now() - t0 < SEC(3)) {
        msm_id_t probe;
        msm_session_t pl;
        msm_id_generate(&probe);
        apr_cpystrn(probe.node, xb->id, sizeof(probe.node));
        probes_ok += load_by(y, &probe, NULL, &pl) == APR_NOTFOUND;
        probes++;
        learned = msm_node_last_failure(ya) != 0;
        if (!learned) {
            apr_sleep(MS(50));
        }
    }
    CHECK_INT_EQ(probes_ok, probes);
    CHECK_MSG(learned, "server y did not learn n1's failure in 3 s");
    CHECK(msm_node_last_failure(ya) == seen);
    CHECK(msm_node_is_live(ya));
    CHECK_INT_EQ(msm_node_last_failure(&y->nodes->node[xb->index]), 0);

    /* and answers the old cookie with the current session */
    CHECK_STATUS(load_by(y, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "current", 7);
    CHECK_STR_EQ(l.id.node, xb->id);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_COPY(port_of(x, xa), key, S(3, xb->id, "current"));
    fx_done(y);
    fx_done(x);
}

/* ------------------------------------------------------------------ */
/* G2: the newest write wins                                           */

static void test_last_writer_wins(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *xa, *xb;
    msm_session_t s, a, b, l;
    const char *key, *pid;
    int pp, bp;

    if (!create(f, &s, "v1")) {
        return;
    }
    key = key_of(f, &s.id);
    pid = s.node->id;
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));

    /* both load version 1; the later save is the content and the higher
     * version; its backup, written first, is not undone by the older */
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    xb = rq(f);
    from_cookie(&b, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, xa, &a, "from A", 6), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, xb, &b, "from B", 6), APR_SUCCESS);
    CHECK_INT_EQ(a.meta.version, 2);
    CHECK_INT_EQ(b.meta.version, 3);
    CHECK_COPY(pp, key, S(3, pid, "from B"));
    msm_store_run_later(&f->c, xb);
    CHECK_COPY(bp, key, S(3, pid, "from B"));
    msm_store_run_later(&f->c, xa);
    CHECK_COPY(bp, key, S(3, pid, "from B"));
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "from B", 6);

    /* in the other order of the deferred work too */
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    xb = rq(f);
    from_cookie(&b, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xb, &b), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, xa, &a, "A2", 2), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, xb, &b, "B2", 2), APR_SUCCESS);
    msm_store_run_later(&f->c, xa);
    CHECK_COPY(bp, key, S(4, pid, "A2"));
    msm_store_run_later(&f->c, xb);
    CHECK_COPY(bp, key, S(5, pid, "B2"));
    CHECK_COPY(pp, key, S(5, pid, "B2"));

    /* a save whose cas is stale (someone wrote version 9 meanwhile)
     * re-reads and wins with the version above it */
    xa = rq(f);
    from_cookie(&a, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, xa, &a), APR_SUCCESS);
    plant(pp, key, 'S', 9, apr_time_now(), pid, "someone", IDLE);
    CHECK_STATUS(msm_store_save(&f->c, xa, &a, "mine", 4), APR_SUCCESS);
    CHECK_INT_EQ(a.meta.version, 10);
    CHECK_COPY(pp, key, S(10, pid, "mine"));
    msm_store_run_later(&f->c, xa);
    CHECK_COPY(bp, key, S(10, pid, "mine"));
    CHECK_INT_EQ(f->log.n, 0);
    fx_done(f);
}

/* "Another request" writes, at a chosen point inside the store's work. */
typedef struct inject {
    int port;
    int port2;                  /* and this one too (0: none) */
    const char *key;
    char kind;
    apr_uint64_t version;
    const char *primary;
    const char *payload;
    apr_uint32_t exptime;
    int count;
} inject_t;

static void do_inject(void *arg)
{
    inject_t *in = arg;

    in->count++;
    plant(in->port, in->key, in->kind, in->version, apr_time_now(),
          in->primary, in->payload, in->exptime);
    if (in->port2) {
        plant(in->port2, in->key, in->kind, in->version, apr_time_now(),
              in->primary, in->payload, in->exptime);
    }
    if (in->version) {
        in->version += 10;      /* for the next time */
    }
}

static void arm(fx_t *f, msm_node_t *n, int after_ops, inject_t *in,
                int repeat)
{
    tap_t *t = &f->tap[n->index];

    t->fire_at = t->ops + after_ops;
    t->fire = do_inject;
    t->arg = in;
    t->repeat = repeat;
}

static void disarm(fx_t *f, msm_node_t *n)
{
    f->tap[n->index].fire = NULL;
}

/* A restore or a move after a primary miss writes only over older copies:
 * a save that lands in between wins, and is what the load serves. */
static void test_reinstate_vs_concurrent_save(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *a, *b;
    const char *key;
    inject_t in;

    /* restore onto the primary's node: add */
    if (!create(f, &s, "v1")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);
    raw_del(port_of(f, a), key);
    memset(&in, 0, sizeof(in));
    in.port = port_of(f, a);
    in.key = key;
    in.kind = 'S';
    in.version = 2;
    in.primary = a->id;
    in.payload = "concurrent";
    in.exptime = IDLE;
    settle_learning(f);
    arm(f, b, 1, &in, 0);           /* after the search read b */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(in.count, 1);
    CHECK_MEM_EQ(l.value, l.len, "concurrent", 10);
    CHECK_INT_EQ(l.meta.version, 2);
    CHECK(l.node == a);
    CHECK_COPY(port_of(f, a), key, S(2, a->id, "concurrent"));
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, b), key, S(2, a->id, "concurrent"));

    /* a move onto the node holding the copy: cas */
    node_down(f, a);
    in.port = port_of(f, b);
    in.version = 7;
    in.primary = b->id;
    in.payload = "moved by another";
    in.count = 0;
    settle_learning(f);
    arm(f, b, 1, &in, 0);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(in.count, 1);
    CHECK_MEM_EQ(l.value, l.len, "moved by another", 16);
    CHECK_INT_EQ(l.meta.version, 7);
    CHECK(l.node == b);
    CHECK_COPY(port_of(f, b), key, S(7, b->id, "moved by another"));
    msm_store_run_later(&f->c, x);
    disarm(f, b);
    node_up(f, a);

    /* a destroy (a tombstone on every node) between a save's read and
     * its cas: the save is dropped */
    x = rq(f);
    from_cookie(&l, &s.id, b->id);
    l.node = b;
    memset(&in, 0, sizeof(in));
    in.port = port_of(f, b);
    in.port2 = port_of(f, a);
    in.key = key;
    in.kind = 'D';
    in.exptime = 2 * IDLE;
    arm(f, b, 1, &in, 0);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "too late", 8), MSM_STORE_GONE);
    CHECK_INT_EQ(in.count, 1);
    CHECK_INT_EQ(l.destroyed, 1);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK_COPY(port_of(f, b), key, "D");
    CHECK_COPY(port_of(f, a), key, "D");
    fx_done(f);
}

/* A copy that changes under every write: the save gives up after a few
 * rounds instead of looping. */
/* The primary dies while requests hold the session: one saves, others
 * only read. Each of them moves the session; they must agree on one
 * primary (the node with the newest copy), or two nodes would each hold
 * a primary of their own and reads would depend on the cookie. */
static void test_movers_agree(void)
{
    fx_t *f;
    msm_store_ctx_t *xr, *xw;
    msm_session_t s, r, w, l;
    msm_node_t *p, *q;
    int k;

    if (NSRV < 3) {
        printf("test_store: movers agree skipped (no third memcached)\n");
        return;
    }
    for (k = 0; k < 4; k++) {
        f = fx_new("n1:0 n2:1 n3:2", IDLE, MAXV);
        if (!create(f, &s, "v1")) {
            return;
        }
        p = s.node;
        q = &f->nodes->node[(p->index + 1) % 3];    /* its backup */
        /* both loaded before the primary died */
        xw = rq(f);
        from_cookie(&w, &s.id, NULL);
        CHECK_STATUS(msm_store_load(&f->c, xw, &w), APR_SUCCESS);
        xr = rq(f);
        from_cookie(&r, &s.id, NULL);
        node_down(f, p);
        /* the reader moves it first (k even) or the writer saves first */
        if (k % 2 == 0) {
            CHECK_STATUS(msm_store_load(&f->c, xr, &r), APR_SUCCESS);
        }
        CHECK_STATUS(msm_store_save(&f->c, xw, &w, "v2", 2), APR_SUCCESS);
        if (k % 2 == 1) {
            CHECK_STATUS(msm_store_load(&f->c, xr, &r), APR_SUCCESS);
        }
        msm_store_run_later(&f->c, xw);
        msm_store_run_later(&f->c, xr);
        CHECK(w.node == q);
        CHECK(r.node == q);
        /* through either cookie: the saved value */
        CHECK_STATUS(load_by(f, &w.id, NULL, &l), APR_SUCCESS);
        CHECK_MEM_EQ(l.value, l.len, "v2", 2);
        CHECK_STATUS(load_by(f, &r.id, NULL, &l), APR_SUCCESS);
        CHECK_MEM_EQ(l.value, l.len, "v2", 2);
        fx_done(f);
    }
}

static void test_write_rounds_bounded(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x = rq(f);
    msm_session_t s, l;
    inject_t in;
    apr_status_t rv;

    if (!create(f, &s, "v1")) {
        return;
    }
    memset(&in, 0, sizeof(in));
    in.port = port_of(f, s.node);
    in.key = key_of(f, &s.id);
    in.kind = 'S';
    in.version = 20;
    in.primary = s.node->id;
    in.payload = "busy";
    in.exptime = IDLE;
    from_cookie(&l, &s.id, NULL);
    l.node = s.node;
    arm(f, s.node, 1, &in, 1);
    rv = msm_store_save(&f->c, x, &l, "never", 5);
    disarm(f, s.node);
    CHECK_STATUS(rv, MSM_STORE_CONTENDED);
    CHECK(in.count >= 8 && in.count <= 20);
    CHECK_INT_EQ(log_count(&f->log, "MSM00112"), 1);
    CHECK_INT_EQ(x->wrote, 0);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK(msm_node_is_live(s.node));
    CHECK_COPY(in.port, in.key, apr_psprintf(root, "S*@%s:busy",
                                             s.node->id));
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Node failures                                                       */

static void test_dead_nodes(void)
{
    fx_t *f, *g;
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *a, *b;
    const char *key;
    apr_time_t t0;
    int i, ok = 0, before;

    /* a dead node (closed port): new sessions go to the other, once
     * logged, without backup */
    f = fx_new("n1:x n2:1", IDLE, MAXV);
    for (i = 0; i < 10; i++) {
        if (create(f, &s, "one") && strcmp(s.id.node, "n2") == 0) {
            ok++;
            CHECK_COPY(SRV[1], key_of(f, &s.id), S(1, "n2", "one"));
        }
    }
    CHECK_INT_EQ(ok, 10);
    CHECK(!msm_node_is_live(&f->nodes->node[0]));
    CHECK_INT_EQ(log_count(&f->log, "MSM00101"), 1);
    CHECK_INT_EQ(log_count(&f->log, "MSM00105"), 0);
    CHECK_INT_EQ(f->stats.created, 10);
    /* a destroy: one write on the reachable node, none on the dead one */
    if (ok) {
        int d0 = ops_of(f, &f->nodes->node[0]);
        int d1 = ops_of(f, &f->nodes->node[1]);
        x = rq(f);
        from_cookie(&l, &s.id, NULL);
        CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
        msm_store_run_later(&f->c, x);
        CHECK_INT_EQ(ops_of(f, &f->nodes->node[0]) - d0, 0);
        CHECK_INT_EQ(ops_of(f, &f->nodes->node[1]) - d1, 1);
        CHECK_COPY(SRV[1], key_of(f, &s.id), "D");
    }
    fx_done(f);

    /* a save whose node is down moves the session: same id, new node */
    f = fx2();
    if (!create(f, &s, "before")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);
    node_down(f, a);
    x = rq(f);
    l = s;
    l.id_changed = 0;
    l.cas = 0;
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "after", 5), APR_SUCCESS);
    CHECK(apr_time_now() - t0 < 2 * TIMEOUT);
    CHECK(l.node == b);
    CHECK_STR_EQ(l.id.node, b->id);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_INT_EQ(l.id_changed, 1);
    /* it goes where a read moves it (the backup's node, as version 2:
     * requests moving it at the same time agree on one primary), then the
     * new value is written there */
    CHECK_INT_EQ(l.meta.version, 3);
    CHECK_INT_EQ(f->stats.relocated, 1);
    CHECK_COPY(port_of(f, b), key, S(3, b->id, "after"));
    CHECK_TTL(port_of(f, b), key, IDLE);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, b), key, S(3, b->id, "after"));
    /* the dead node is known now: skipped without an operation */
    before = ops_of(f, a);
    x = rq(f);
    l = s;
    l.cas = 0;
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "again", 5), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    CHECK_INT_EQ(ops_of(f, a), before);
    CHECK(l.node == b);
    CHECK_COPY(port_of(f, b), key, S(4, b->id, "again"));
    /* ... and a load through the old cookie finds it without waiting */
    t0 = apr_time_now();
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK(apr_time_now() - t0 < MS(100));
    CHECK_MEM_EQ(l.value, l.len, "again", 5);
    CHECK_INT_EQ(ops_of(f, a), before);
    fx_done(f);

    /* a cookie whose node is no longer configured: found by a search */
    f = fx2();
    if (!create(f, &s, "orphan")) {
        return;
    }
    g = fx_new("n3:0 n4:1", IDLE, MAXV);
    fx_share(g, f);
    fx_done(f);
    f = g;
    key = key_of(f, &s.id);
    CHECK(msm_nodes_find(f->nodes, s.id.node) == NULL);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "orphan", 6);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK_INT_EQ(l.id_changed, 1);
    if (CHECK_OK(l.node != NULL)) {
        CHECK_STR_EQ(l.id.node, l.node->id);
        CHECK_INT_EQ(l.meta.version, 2);
        CHECK_COPY(port_of(f, l.node), key, S(2, l.node->id, "orphan"));
        CHECK_TTL(port_of(f, l.node), key, IDLE);
        msm_store_run_later(&f->c, x);
        CHECK_COPY(port_of(f, other_node(f, l.node)), key,
                   S(2, l.node->id, "orphan"));
        CHECK_INT_EQ(f->stats.relocated, 1);
    }
    /* a save of such a session: the same id on a live node, above every
     * version seen there */
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    l.node = NULL;
    l.meta.version = 1;
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "fresh", 5), APR_SUCCESS);
    CHECK_STR_EQ(l.id.hex, s.id.hex);
    CHECK(strcmp(l.id.node, "n3") == 0 || strcmp(l.id.node, "n4") == 0);
    CHECK_INT_EQ(l.id_changed, 1);
    CHECK_INT_EQ(l.meta.version, 3);
    if (l.node) {
        CHECK_COPY(port_of(f, l.node), key, S(3, l.node->id, "fresh"));
    }
    fx_done(f);

    /* every node dead: answers at once, never "not found" */
    f = fx_new("n1:x n2:x", IDLE, MAXV);
    {
        msm_id_t id;
        apr_status_t rv;
        msm_id_generate(&id);
        apr_cpystrn(id.node, "n1", sizeof(id.node));
        x = rq(f);
        from_cookie(&l, &id, NULL);
        t0 = apr_time_now();
        rv = msm_store_load(&f->c, x, &l);
        CHECK(rv != APR_SUCCESS && rv != APR_NOTFOUND);
        CHECK_INT_EQ(l.destroyed, 0);
        CHECK(l.value == NULL);
        CHECK(!msm_node_is_live(&f->nodes->node[0]));
        CHECK(!msm_node_is_live(&f->nodes->node[1]));
        memset(&s, 0, sizeof(s));
        rv = msm_store_save(&f->c, x, &s, "x", 1);
        CHECK(rv != APR_SUCCESS);
        CHECK_INT_EQ(s.has_id, 0);
        CHECK(msm_store_save(&f->c, x, &s, "x", 1) != APR_SUCCESS);
        l.has_id = 1;
        l.node = &f->nodes->node[0];
        CHECK(msm_store_save(&f->c, x, &l, "y", 1) != APR_SUCCESS);
        CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
        CHECK_MSG(apr_time_now() - t0 < 2 * TIMEOUT, "took %ld us",
                  (long)(apr_time_now() - t0));
        CHECK_INT_EQ(log_count(&f->log, "MSM00105"), 1);
        CHECK_INT_EQ(log_count(&f->log, "MSM00101"), 2);
        CHECK(f->stats.unavailable >= 2);
        CHECK_INT_EQ(f->stats.saved, 0);
        msm_store_run_later(&f->c, x);
    }
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Sizes and foreign items: never a node failure                       */

static void test_too_large(void)
{
    fx_t *f = fx2(), *small;
    msm_store_ctx_t *x;
    msm_session_t s, l;
    char *big = malloc(MAXV + 1);
    const char *key;
    apr_size_t fits;
    apr_status_t rv;
    int i;

    memset(big, 'b', MAXV + 1);
    x = rq(f);
    memset(&s, 0, sizeof(s));
    CHECK_STATUS(msm_store_save(&f->c, x, &s, big, MAXV + 1),
                 MSM_MC_ETOOBIG);
    CHECK_INT_EQ(s.has_id, 0);
    CHECK_INT_EQ(log_count(&f->log, "MSM00106"), 1);
    CHECK_INT_EQ(f->stats.too_large, 1);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK(msm_node_is_live(&f->nodes->node[0]));
    CHECK(msm_node_is_live(&f->nodes->node[1]));
    /* MsmMaxSessionSize is the largest session written: exactly that
     * many bytes are saved and read back */
    memset(&s, 0, sizeof(s));
    rv = msm_store_save(&f->c, x, &s, big, MAXV);
    CHECK_MSG(rv == APR_SUCCESS, "a session of MsmMaxSessionSize (%d) bytes: "
              "save returned %d; %s", MAXV, (int)rv,
              f->log.n ? f->log.msg[f->log.n - 1] : "");
    msm_store_run_later(&f->c, x);
    /* what fits with the header is saved and read back */
    fits = MAXV - strlen(copy_text('S', 1, 0, "n1", ""));
    memset(&s, 0, sizeof(s));
    x = rq(f);
    CHECK_STATUS(msm_store_save(&f->c, x, &s, big, fits), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    if (s.has_id) {
        CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
        CHECK_INT_EQ(l.len, fits);
        /* a session that grows too large keeps its copy */
        x = rq(f);
        from_cookie(&l, &s.id, NULL);
        CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
        CHECK_STATUS(msm_store_save(&f->c, x, &l, big, MAXV + 1),
                     MSM_MC_ETOOBIG);
        CHECK_INT_EQ(l.has_id, 1);
        CHECK_STR_EQ(l.id.hex, s.id.hex);
        CHECK_INT_EQ(peek(port_of(f, s.node), key_of(f, &s.id)).len, fits);
    }
    free(big);

    /* a copy larger than another configuration reads: unreadable there,
     * and no failure of the node */
    if (!create(f, &s, apr_psprintf(root, "%04000d", 7))) {
        return;
    }
    key = key_of(f, &s.id);
    small = fx_new("n1:0 n2:1", IDLE, 1024);
    fx_share(small, f);
    x = rq(small);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&small->c, x, &l), MSM_MC_ETOOBIG);
    CHECK(l.value == NULL);
    CHECK_INT_EQ(l.destroyed, 0);
    CHECK_INT_EQ(log_count(&small->log, "MSM00107"), 1);
    CHECK_INT_EQ(small->stats.too_large, 1);
    for (i = 0; i < 2; i++) {
        CHECK(msm_node_is_live(&small->nodes->node[i]));
        CHECK_INT_EQ(msm_node_last_failure(&small->nodes->node[i]), 0);
    }
    /* it is not written over blind; the refusal does not blame the
     * 5 bytes of the new value (MSM00106: "more than MsmMaxSessionSize") */
    CHECK_STATUS(msm_store_save(&small->c, x, &l, "small", 5),
                 MSM_STORE_UNREADABLE);
    CHECK_INT_EQ(log_count(&small->log, "MSM00109"), 1);
    CHECK_MSG(log_count(&small->log, "MSM00106") == 0, "%s",
              small->log.msg[small->log.n ? small->log.n - 1 : 0]);
    msm_store_run_later(&small->c, x);
    CHECK_COPY(port_of(f, s.node), key, S(1, s.node->id, NULL));
    CHECK_INT_EQ(peek(port_of(f, s.node), key).len, 4000);
    /* found too large elsewhere: not known, not destroyed */
    raw_del(port_of(f, s.node), key);
    x = rq(small);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&small->c, x, &l), APR_EGENERAL);
    CHECK_INT_EQ(l.destroyed, 0);
    msm_store_run_later(&small->c, x);
    CHECK_COPY(port_of(f, s.node), key, "-");
    for (i = 0; i < 2; i++) {
        CHECK(msm_node_is_live(&small->nodes->node[i]));
    }
    fx_done(small);
    fx_done(f);
}

static void test_corrupt_items(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *a, *b;
    const char *key;

    if (!create(f, &s, "v1")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);

    /* a foreign item at the primary, nothing elsewhere: no session, a
     * note in the log, and the node is fine */
    raw_set(port_of(f, a), key, GARBAGE, strlen(GARBAGE), IDLE);
    raw_del(port_of(f, b), key);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 0);
    CHECK(msm_node_is_live(a));
    CHECK_INT_EQ(msm_node_last_failure(a), 0);
    CHECK_INT_EQ(log_count(&f->log, "MSM00108"), 1);
    /* the next save of that id replaces it */
    l.has_id = 1;
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "fixed", 5), APR_SUCCESS);
    CHECK(l.node == a);
    CHECK_INT_EQ(l.meta.version, 1);
    CHECK_COPY(port_of(f, a), key, S(1, a->id, "fixed"));
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, b), key, S(1, a->id, "fixed"));
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, "fixed", 5);

    /* a foreign item at the backup's node is replaced by the backup */
    raw_set(port_of(f, b), key, GARBAGE, strlen(GARBAGE), IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "again", 5), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, b), key, S(2, a->id, "again"));
    CHECK(msm_node_is_live(b));
    CHECK_INT_EQ(msm_node_last_failure(b), 0);
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Encryption at rest (MsmEncryptKeyFile)                              */

/* Three keys, as "openssl rand -base64 32" makes them. */
#define KEY_A "jRwzpOJw9ojPL1tglk3G2ShySdYLQwi+Ep8xugoMYOc="
#define KEY_B "1TfJgQo+bh2eHr82vzX6U5w4Y9uGY6iH5TCB+ng96iw="
#define KEY_C "XuFh56KZ1bWThxDHCrXBR9nmPtsOBvMGBojv8KvzniQ="

static void fx_crypt(fx_t *f, const char *key_file_text)
{
    const char *err = msm_crypt_parse_keys(f->p, key_file_text,
                                           strlen(key_file_text),
                                           &f->c.crypt);

    if (err) {
        fprintf(stderr, "keys: %s\n", err);
        exit(2);
    }
}

static apr_uint32_t sealed_id(const copy_t *c)
{
    const unsigned char *u = (const unsigned char *)c->raw + 4;

    return c->rawlen < 8 ? 0 : (apr_uint32_t)u[0] << 24
           | (apr_uint32_t)u[1] << 16 | (apr_uint32_t)u[2] << 8 | u[3];
}

/* What a server holds under key, sealed with key id "id" and opened with
 * the keys of f: raw (the stored bytes) and the copy inside (present 0
 * when there is no value, copy 0 when it is not sealed that way or does
 * not open). secret must not be in the stored bytes. */
static copy_t peek_sealed(const fx_t *f, int port, const char *key,
                          apr_uint32_t id, const char *secret)
{
    copy_t c = peek(port, key), in;
    char *plain;
    apr_size_t len;
    apr_uint32_t got;

    memset(&in, 0, sizeof(in));
    if (!c.present) {
        return in;
    }
    in.present = 1;
    in.raw = c.raw;
    in.rawlen = c.rawlen;
    CHECK_MSG(c.rawlen >= 8 && memcmp(c.raw, "MSME", 4) == 0
              && sealed_id(&c) == id, "server %d, %s: not sealed with key "
              "id %08x (%lu bytes: %.8s...)", port, key, id,
              (unsigned long)c.rawlen, c.raw);
    CHECK_MSG(!c.copy && !memmem(c.raw, c.rawlen, "MSM1", 4)
              && !memmem(c.raw, c.rawlen, secret, strlen(secret)),
              "server %d holds \"%s\" or a copy's header in clear", port,
              secret);
    if (msm_crypt_open(f->c.crypt, root, key, c.raw, c.rawlen, &plain, &len,
                       &got) == APR_SUCCESS) {
        decode_into(&in, plain, len);
    }
    return in;
}

#define CHECK_SEALED(f, port, key, id, secret, spec) \
    do { \
        copy_t c_ = peek_sealed(f, port, key, id, secret); \
        const char *s_ = (spec); \
        CHECK_MSG(copy_matches(&c_, s_), "sealed: server %d holds %s, " \
                  "expected %s", port, describe(&c_), s_); \
    } while (0)

/* s's copies cannot be read (MSM_SEEN_CORRUPT on both nodes): the next
 * save of the id replaces them with version 1 of v, sealed with f's key on
 * both nodes, and that is what a load returns. */
static void resave_sealed(fx_t *f, const msm_session_t *s, const char *v)
{
    msm_store_ctx_t *x = rq(f);
    const char *key = key_of(f, &s->id);
    apr_uint32_t id = msm_crypt_key_id(f->c.crypt, 0);
    msm_session_t l;

    from_cookie(&l, &s->id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_NOTFOUND);
    l.has_id = 1;
    CHECK_STATUS(msm_store_save(&f->c, x, &l, v, strlen(v)), APR_SUCCESS);
    msm_store_run_later(&f->c, x);
    CHECK_SEALED(f, port_of(f, s->node), key, id, v,
                 S(1, s->node->id, v));
    CHECK_SEALED(f, port_of(f, other_node(f, s->node)), key, id, v,
                 S(1, s->node->id, v));
    CHECK_STATUS(load_by(f, &s->id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, v, strlen(v));
}

static void test_encrypted(void)
{
    fx_t *f = fx2(), *other, *rot, *clear;
    msm_store_ctx_t *x;
    msm_session_t s, s2, l, n;
    const char *key, *key2, *secret = "pw=Hunter2-c8e1";
    apr_uint32_t id_a, id_c;
    copy_t before[2];
    int pp, bp, ops0, ops1, i, k;

    fx_crypt(f, "# current key\n" KEY_A "\n");
    id_a = msm_crypt_key_id(f->c.crypt, 0);
    if (!create(f, &s, apr_pstrcat(root, "user=alice&", secret, NULL))) {
        return;
    }
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));
    /* both copies sealed, the session inside */
    CHECK_SEALED(f, pp, key, id_a, secret,
                 S(1, s.node->id, apr_pstrcat(root, "user=alice&", secret,
                                              NULL)));
    CHECK_SEALED(f, bp, key, id_a, secret, S(1, s.node->id, NULL));
    CHECK_INT_EQ(peek(pp, key).rawlen, strlen(copy_text('S', 1, 0,
        s.node->id, apr_pstrcat(root, "user=alice&", secret, NULL)))
        + MSM_CRYPT_OVERHEAD);
    /* a read: one get (gats), on the primary only */
    settle_learning(f);
    ops0 = ops_of(f, s.node);
    ops1 = ops_of(f, other_node(f, s.node));
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, apr_pstrcat(root, "user=alice&", secret,
                                             NULL), 11 + strlen(secret));
    CHECK_INT_EQ(ops_of(f, s.node) - ops0, 1);
    CHECK_INT_EQ(ops_of(f, other_node(f, s.node)) - ops1, 0);
    CHECK_INT_EQ(f->log.n, 0);

    /* a sealed value copied under another session's key: not served (it
     * does not open under that key), and the next save replaces it */
    if (!create(f, &s2, "user=mallory")) {
        return;
    }
    key2 = key_of(f, &s2.id);
    for (i = 0; i < 2; i++) {
        copy_t c = peek(pp, key);
        raw_set(f->port[i], key2, c.raw, c.rawlen, IDLE);
    }
    CHECK_STATUS(load_by(f, &s2.id, NULL, &l), APR_NOTFOUND);
    CHECK(l.value == NULL);
    CHECK_INT_EQ(l.destroyed, 0);
    CHECK_MSG(log_count(&f->log, "MSM00171") >= 1, "MSM00171 %d times",
              log_count(&f->log, "MSM00171"));
    CHECK(f->log.n > 0 && strstr(f->log.msg[f->log.n - 1],
                                 "does not open with its key") != NULL);
    CHECK_INT_EQ(log_count(&f->log, "MSM00170"), 0);
    for (i = 0; i < 2; i++) {
        CHECK(msm_node_is_live(&f->nodes->node[i]));
    }
    resave_sealed(f, &s2, "user=mallory&v=2");

    /* a server of the cluster with another key: the session is not
     * served, not written over (its save makes a new id), and said once
     * (MSM00170), however many requests meet it */
    other = fx2();
    fx_share(other, f);
    fx_crypt(other, KEY_B);
    for (i = 0; i < 2; i++) {
        before[i] = peek(f->port[i], key);
    }
    for (k = 0; k < 4; k++) {
        x = rq(other);
        from_cookie(&l, &s.id, NULL);
        CHECK_STATUS(msm_store_load(&other->c, x, &l), MSM_MC_ETOOBIG);
        CHECK(l.value == NULL);
        CHECK_INT_EQ(l.destroyed, 0);
        if (k == 0) {
            /* a save under that id is refused, the copies stay */
            CHECK_STATUS(msm_store_save(&other->c, x, &l, "b=1", 3),
                         MSM_STORE_UNREADABLE);
        }
        /* mod_msm: no session; a save makes a new id */
        l.has_id = 0;
        CHECK_STATUS(msm_store_save(&other->c, x, &l, "b=1", 3),
                     APR_SUCCESS);
        CHECK(strcmp(l.id.hex, s.id.hex) != 0);
        msm_store_run_later(&other->c, x);
        CHECK_SEALED(other, port_of(other, l.node), key_of(other, &l.id),
                     msm_crypt_key_id(other->c.crypt, 0), secret,
                     S(1, l.node->id, "b=1"));
    }
    CHECK_INT_EQ(log_count(&other->log, "MSM00170"), 1);
    CHECK_INT_EQ(log_count(&other->log, "MSM00107"), 0);
    CHECK_INT_EQ(log_count(&other->log, "MSM00171"), 0);
    CHECK(strstr(other->log.msg[0], apr_psprintf(root, "key id %08x",
                                                 id_a)) != NULL);
    /* the loads count as misses; only the refused save counts as a
     * copy it cannot read */
    CHECK_INT_EQ(other->stats.load_miss, 4);
    CHECK_INT_EQ(other->stats.too_large, 1);
    for (i = 0; i < 2; i++) {
        copy_t now = peek(f->port[i], key);
        CHECK_MEM_EQ(now.raw, now.rawlen, before[i].raw, before[i].rawlen);
        CHECK(msm_node_is_live(&other->nodes->node[i]));
    }
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, apr_pstrcat(root, "user=alice&", secret,
                                             NULL), 11 + strlen(secret));
    fx_done(other);

    /* rotation: [C, A] reads what A sealed and seals with C; A alone no
     * longer reads the sessions rewritten since */
    rot = fx2();
    fx_share(rot, f);
    fx_crypt(rot, KEY_C "\n" KEY_A "\n");
    id_c = msm_crypt_key_id(rot->c.crypt, 0);
    x = rq(rot);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&rot->c, x, &l), APR_SUCCESS);
    CHECK_MEM_EQ(l.value, l.len, apr_pstrcat(root, "user=alice&", secret,
                                             NULL), 11 + strlen(secret));
    CHECK_STATUS(msm_store_save(&rot->c, x, &l, "user=alice&v=3", 14),
                 APR_SUCCESS);
    msm_store_run_later(&rot->c, x);
    CHECK_SEALED(rot, pp, key, id_c, secret,
                 S(2, s.node->id, "user=alice&v=3"));
    CHECK_SEALED(rot, bp, key, id_c, secret,
                 S(2, s.node->id, "user=alice&v=3"));
    CHECK_INT_EQ(rot->log.n, 0);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), MSM_MC_ETOOBIG);
    CHECK_INT_EQ(log_count(&f->log, "MSM00170"), 1);
    fx_done(rot);

    /* a copy in clear text (a server without MsmEncryptKeyFile) is not
     * served with it, and the next save replaces it */
    clear = fx2();
    fx_share(clear, f);
    if (create(clear, &n, "clear=1")) {
        CHECK_COPY(port_of(clear, n.node), key_of(f, &n.id),
                   S(1, n.node->id, "clear=1"));
        k = log_count(&f->log, "MSM00171");
        CHECK_STATUS(load_by(f, &n.id, NULL, &l), APR_NOTFOUND);
        CHECK_INT_EQ(l.destroyed, 0);
        CHECK(log_count(&f->log, "MSM00171") > k);
        CHECK(strstr(f->log.msg[f->log.n - 1], "is not sealed") != NULL);
        resave_sealed(f, &n, "sealed=1");
    }
    fx_done(clear);

    /* tombstones are sealed too, and still stop a resurrection from the
     * backup's node */
    f->log.n = 0;
    if (create(f, &s, "user=bob")) {
        key = key_of(f, &s.id);
        pp = port_of(f, s.node);
        bp = port_of(f, other_node(f, s.node));
        x = rq(f);
        from_cookie(&l, &s.id, NULL);
        CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
        msm_store_run_later(&f->c, x);
        CHECK_SEALED(f, pp, key, id_a, "user=bob", "D");
        CHECK_SEALED(f, bp, key, id_a, "user=bob", "D");
        raw_del(pp, key);
        CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_NOTFOUND);
        CHECK_INT_EQ(l.destroyed, 1);
        CHECK(l.value == NULL);
        CHECK_COPY(pp, key, "-");
        CHECK_SEALED(f, bp, key, id_a, "user=bob", "D");
        CHECK_INT_EQ(f->log.n, 0);
    }
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Refresh of a session only read, and sticky keepalive                */

static void test_refresh(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x, *y;
    msm_session_t s, l, m;
    msm_node_t *a, *b;
    const char *key;
    apr_time_t t0, old;
    copy_t pc, bc;
    int before[2];

    if (!create(f, &s, "v=3")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);

    /* idle/2 after its write: primary (cas) and backup written again */
    old = apr_time_now() - SEC(IDLE / 2 + 5);
    plant(port_of(f, a), key, 'S', 1, old, a->id, "v=3", IDLE);
    raw_del(port_of(f, b), key);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK(l.meta.written == old);
    CHECK_INT_EQ(x->later->nelts, 1);
    CHECK(peek(port_of(f, a), key).meta.written == old);
    msm_store_run_later(&f->c, x);
    pc = peek(port_of(f, a), key);
    bc = peek(port_of(f, b), key);
    CHECK_COPY(port_of(f, a), key, S(1, a->id, "v=3"));
    CHECK_COPY(port_of(f, b), key, S(1, a->id, "v=3"));
    CHECK(pc.meta.written >= t0);
    CHECK(bc.meta.written == pc.meta.written);
    CHECK_TTL(port_of(f, a), key, IDLE);
    CHECK_TTL(port_of(f, b), key, 2 * IDLE);

    /* just under idle/2: nothing */
    old = apr_time_now() - SEC(IDLE / 2 - 5);
    plant(port_of(f, a), key, 'S', 1, old, a->id, "v=3", IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    msm_store_run_later(&f->c, x);
    CHECK(peek(port_of(f, a), key).meta.written == old);

    /* a refresh never undoes a newer write made meanwhile */
    old = apr_time_now() - SEC(IDLE);
    plant(port_of(f, a), key, 'S', 1, old, a->id, "v=3", IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 1);
    y = rq(f);
    from_cookie(&m, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, y, &m), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, y, &m, "newer", 5), APR_SUCCESS);
    msm_store_run_later(&f->c, y);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(port_of(f, a), key, S(2, a->id, "newer"));
    CHECK_COPY(port_of(f, b), key, S(2, a->id, "newer"));

    /* dropped when the same request saved: the save's backup only */
    plant(port_of(f, a), key, 'S', 3, apr_time_now() - SEC(IDLE), a->id,
          "old", IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "saved", 5), APR_SUCCESS);
    before[0] = ops_of(f, a);
    before[1] = ops_of(f, b);
    msm_store_run_later(&f->c, x);
    CHECK_INT_EQ(ops_of(f, a) - before[0], 0);
    CHECK_INT_EQ(ops_of(f, b) - before[1], 2);      /* gets + cas */
    CHECK_COPY(port_of(f, a), key, S(4, a->id, "saved"));
    CHECK_COPY(port_of(f, b), key, S(4, a->id, "saved"));

    /* without backups there is nothing to refresh */
    f->c.backup = 0;
    plant(port_of(f, a), key, 'S', 4, apr_time_now() - SEC(IDLE), a->id,
          "saved", IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    f->c.backup = 1;

    /* without MsmBackupAsync at once, within the load */
    f->c.backup_async = 0;
    old = apr_time_now() - SEC(IDLE);
    plant(port_of(f, a), key, 'S', 4, old, a->id, "saved", IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    t0 = apr_time_now();
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_INT_EQ(x->later->nelts, 0);
    CHECK(peek(port_of(f, a), key).meta.written >= t0);
    CHECK(peek(port_of(f, b), key).meta.written >= t0);
    CHECK_INT_EQ(f->log.n, 0);
    fx_done(f);
}

static void test_keepalive(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l;
    msm_node_t *a, *b;
    const char *key;
    int pp, bp, before[2];

    if (!create(f, &s, "kept")) {
        return;
    }
    a = s.node;
    b = other_node(f, a);
    key = key_of(f, &s.id);
    pp = port_of(f, a);
    bp = port_of(f, b);

    /* both expiries slide, after the response, nothing rewritten */
    msm_mc_touch(raw(pp), key, 50);
    msm_mc_touch(raw(bp), key, 50);
    x = rq(f);
    msm_store_keepalive(&f->c, x, &s);
    CHECK_TTL(pp, key, 50);
    msm_store_run_later(&f->c, x);
    CHECK_TTL(pp, key, IDLE);
    CHECK_TTL(bp, key, 2 * IDLE);
    CHECK(peek(pp, key).meta.written == s.meta.written);
    CHECK(peek(bp, key).meta.written == s.meta.written);

    /* a lost backup is written again */
    raw_del(bp, key);
    x = rq(f);
    msm_store_keepalive(&f->c, x, &s);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(bp, key, S(1, a->id, "kept"));
    CHECK_TTL(bp, key, 2 * IDLE);
    CHECK_COPY(pp, key, S(1, a->id, "kept"));

    /* a lost primary too */
    raw_del(pp, key);
    x = rq(f);
    msm_store_keepalive(&f->c, x, &s);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, S(1, a->id, "kept"));
    CHECK_TTL(pp, key, IDLE);

    /* never over a newer copy */
    plant(pp, key, 'S', 5, apr_time_now(), a->id, "newer", IDLE);
    plant(bp, key, 'S', 5, apr_time_now(), a->id, "newer", 2 * IDLE);
    x = rq(f);
    msm_store_keepalive(&f->c, x, &s);
    msm_store_run_later(&f->c, x);
    CHECK_COPY(pp, key, S(5, a->id, "newer"));
    CHECK_COPY(bp, key, S(5, a->id, "newer"));

    /* the primary lost the newer copy, the backup has it: keepalive must
     * not put the older one back as the primary */
    raw_del(pp, key);
    x = rq(f);
    msm_store_keepalive(&f->c, x, &s);
    msm_store_run_later(&f->c, x);
    CHECK_STATUS(load_by(f, &s.id, NULL, &l), APR_SUCCESS);
    CHECK_MSG(l.value && strcmp(l.value, "newer") == 0,
              "after keepalive the session reads \"%s\"",
              l.value ? l.value : "(none)");

    /* nothing when the request wrote */
    plant(pp, key, 'S', 6, apr_time_now(), a->id, "reset", IDLE);
    plant(bp, key, 'S', 6, apr_time_now(), a->id, "reset", 2 * IDLE);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "written", 7), APR_SUCCESS);
    msm_store_keepalive(&f->c, x, &l);
    before[0] = ops_of(f, a);
    before[1] = ops_of(f, b);
    msm_store_run_later(&f->c, x);
    CHECK_INT_EQ(ops_of(f, a) - before[0], 0);
    CHECK_INT_EQ(ops_of(f, b) - before[1], 2);      /* the backup */
    fx_done(f);
}

/* Sticky servers name their route in the copies they write; a takeover
 * claims the copy it loaded, only if it is still that copy. */
static void test_writer_route(void)
{
    fx_t *f = fx2();
    msm_store_ctx_t *x;
    msm_session_t s, l, m;
    const char *key;
    int pp, bp;

    f->c.route = "web1";
    if (!create(f, &s, "v1")) {
        fx_done(f);
        return;
    }
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));
    CHECK_STR_EQ(peek(pp, key).meta.route, "web1");
    CHECK_STR_EQ(peek(bp, key).meta.route, "web1");     /* a replica */

    /* another server takes it over: a new version naming it, same value */
    f->c.route = "web2";
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_load(&f->c, x, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.meta.route, "web1");
    m = l;                                  /* loaded at the same time */
    CHECK_STATUS(msm_store_claim(&f->c, x, &l), APR_SUCCESS);
    CHECK_STR_EQ(l.meta.route, "web2");
    CHECK(l.meta.version == 2);
    CHECK_COPY(pp, key, S(2, s.node->id, "v1"));
    CHECK_STR_EQ(peek(pp, key).meta.route, "web2");
    CHECK_STR_EQ(peek(bp, key).meta.route, "web1");     /* left alone */

    /* a claim of a copy that changed since it was loaded does nothing */
    f->c.route = "web3";
    CHECK(msm_store_claim(&f->c, x, &m) != APR_SUCCESS);
    CHECK_STR_EQ(m.meta.route, "web1");
    CHECK_STR_EQ(peek(pp, key).meta.route, "web2");
    CHECK(peek(pp, key).meta.version == 2);

    /* not sticky: no route, and nothing to claim */
    f->c.route = NULL;
    x = rq(f);
    CHECK_STATUS(msm_store_save(&f->c, x, &l, "v3", 2), APR_SUCCESS);
    CHECK_STR_EQ(peek(pp, key).meta.route, "");
    CHECK(msm_store_claim(&f->c, x, &l) != APR_SUCCESS);
    fx_done(f);
}

/* Exptimes are capped where memcached would read them as a date. */
static void test_exptime_cap(void)
{
    fx_t *f = fx_new("n1:0 n2:1", 2000000, MAXV);
    msm_store_ctx_t *x;
    msm_session_t s, l;
    const char *key;
    int pp, bp;

    if (!create(f, &s, "long")) {
        return;
    }
    key = key_of(f, &s.id);
    pp = port_of(f, s.node);
    bp = port_of(f, other_node(f, s.node));
    CHECK_TTL(pp, key, 2000000);
    CHECK_TTL(bp, key, (int)MSM_EXPTIME_MAX);
    x = rq(f);
    from_cookie(&l, &s.id, NULL);
    CHECK_STATUS(msm_store_remove(&f->c, x, &l), APR_SUCCESS);
    CHECK_TTL(pp, key, (int)MSM_EXPTIME_MAX);
    CHECK_TTL(bp, key, (int)MSM_EXPTIME_MAX);
    fx_done(f);
}

/* ------------------------------------------------------------------ */
/* Races with expiry (MsmIdleTimeout 2 s, a few seconds of sleep)      */

static void sleep_until(apr_time_t t)
{
    apr_time_t now = apr_time_now();

    if (t > now) {
        apr_sleep(t - now);
    }
}

/* X: the backup's node is unreachable at the destroy and comes back with
 * the backup; a read of the destroyed id must not shorten the primary's
 * tombstone below the backup's life, or the backup restores the session.
 * Y: the primary's node is unreachable at the destroy and comes back with
 * its copy; reads through old cookies must not keep that copy alive past
 * the tombstones, or it is served again. */
static void test_destroy_vs_expiry(void)
{
    fx_t *fx = fx_new("n1:0 n2:1", 2, MAXV), *fy = fx_new("n1:0 n2:1", 2,
                                                          MAXV);
    msm_store_ctx_t *x;
    msm_session_t sx, sy, l;
    msm_node_t *xa, *xb, *ya;
    apr_time_t t0;
    apr_status_t rv;
    int i;

    fx->c.backup_async = 0;
    fy->c.backup_async = 0;
    if (!create(fx, &sx, "x") || !create(fy, &sy, "y")) {
        return;
    }
    t0 = apr_time_now();
    xa = sx.node;
    xb = other_node(fx, xa);
    ya = sy.node;

    node_down(fx, xb);
    x = rq(fx);
    from_cookie(&l, &sx.id, NULL);
    CHECK_STATUS(msm_store_remove(&fx->c, x, &l), APR_SUCCESS);
    node_up(fx, xb);
    CHECK_COPY(port_of(fx, xa), key_of(fx, &sx.id), "D");
    CHECK_COPY(port_of(fx, xb), key_of(fx, &sx.id), S(1, xa->id, "x"));
    CHECK_STATUS(load_by(fx, &sx.id, NULL, &l), APR_NOTFOUND);
    CHECK_INT_EQ(l.destroyed, 1);
    CHECK_TTL_IN(port_of(fx, xa), key_of(fx, &sx.id), 3, 4);

    node_down(fy, ya);
    x = rq(fy);
    from_cookie(&l, &sy.id, NULL);
    CHECK_STATUS(msm_store_remove(&fy->c, x, &l), APR_SUCCESS);
    node_up(fy, ya);
    CHECK_COPY(port_of(fy, ya), key_of(fy, &sy.id), S(1, ya->id, "y"));
    CHECK_COPY(port_of(fy, other_node(fy, ya)), key_of(fy, &sy.id), "D");

    for (i = 1; i <= 9; i++) {
        sleep_until(t0 + MS(500) * i);
        rv = load_by(fy, &sy.id, NULL, &l);
        if (i <= 5) {
            CHECK_MSG(rv == APR_NOTFOUND && l.destroyed,
                      "Y at %d ms: load returned %d", 500 * i, (int)rv);
        }
        else if (i == 9) {
            CHECK_MSG(rv == APR_NOTFOUND && l.value == NULL,
                      "Y after the tombstones expired: load returned %d, "
                      "served \"%s\"", (int)rv, l.value ? l.value : "");
        }
        if (i == 5) {
            /* X at 2.5 s: its tombstone lived 2 x idle from the destroy;
             * the backup lives until at least 3 s */
            rv = load_by(fx, &sx.id, NULL, &l);
            CHECK_MSG(rv == APR_NOTFOUND, "X at 2.5 s: load returned %d, "
                      "served \"%s\"", (int)rv, l.value ? l.value : "");
        }
    }
    fx_done(fx);
    fx_done(fy);
}

/* ------------------------------------------------------------------ */

/* The third server, when started here, runs under a small supervisor that
 * stops it when this test's end of a pipe closes: at the end, and also if
 * the test crashes (memcached itself drops root with -u, which clears a
 * parent-death signal). */
static int spawn_pipe = -1;

static void stop_spawned(void)
{
    if (spawned > 0) {
        close(spawn_pipe);
        waitpid(spawned, NULL, 0);
        spawned = 0;
    }
}

static void run_supervisor(int in, const char *port)
{
    pid_t mc = fork();
    int fd;

    if (mc == 0) {
        close(in);
        if ((fd = open("/dev/null", O_RDWR)) >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (getuid() == 0) {
            execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port,
                   "-U", "0", "-m", "16", "-u", "nobody", (char *)NULL);
        }
        else {
            execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port,
                   "-U", "0", "-m", "16", (char *)NULL);
        }
        _exit(127);
    }
    if (mc > 0) {
        for (;;) {
            struct pollfd pfd;
            char c;
            pfd.fd = in;
            pfd.events = POLLIN;
            if (waitpid(mc, NULL, WNOHANG) == mc) {
                _exit(1);                   /* memcached did not start */
            }
            if (poll(&pfd, 1, 50) > 0 && read(in, &c, 1) <= 0) {
                break;                      /* the test is done */
            }
        }
        kill(mc, SIGTERM);
        waitpid(mc, NULL, 0);
    }
    _exit(0);
}

/* Starts memcached on a free port; 0 when it cannot. */
static int spawn_memcached(apr_pool_t *p)
{
    int port = unit_closed_port(p), i, fds[2];
    char ps[16];
    pid_t pid;

    if (port == 0 || pipe(fds) != 0) {
        return 0;
    }
    apr_snprintf(ps, sizeof(ps), "%d", port);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        close(fds[1]);
        run_supervisor(fds[0], ps);
    }
    close(fds[0]);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    spawn_pipe = fds[1];
    spawned = pid;
    for (i = 0; i < 150; i++) {
        apr_pool_t *q;
        char *a;
        apr_pool_create(&q, p);
        a = raw_talk(q, port, "version\r\n", "\r\n");
        apr_pool_destroy(q);
        if (a) {
            return port;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            spawned = 0;
            close(spawn_pipe);
            return 0;
        }
        apr_sleep(MS(20));
    }
    stop_spawned();
    return 0;
}

int main(void)
{
    apr_pool_t *p = unit_init("test_store");
    int i;
    apr_time_t t0 = apr_time_now();

    signal(SIGPIPE, SIG_IGN);
    NSRV = unit_mc_ports(SRV, MAXN);
    if (NSRV < 2) {
        printf("test_store: needs MSM_TEST_MEMCACHED=port1,port2: skipped\n");
        return UNIT_SKIP;
    }
    root = p;
    for (i = 0; i < MAXN; i++) {
        DEADP[i] = unit_closed_port(p);
    }
    prefix = apr_psprintf(p, "uts%ld:", (long)getpid());
    if (NSRV < 3) {
        atexit(stop_spawned);
        if ((SRV[2] = spawn_memcached(p)) != 0) {
            NSRV = 3;
        }
        else {
            printf("test_store: no third memcached (none in PATH?)\n");
        }
    }

    test_create();
    test_read();
    test_modify();
    test_destroy();
    test_regenerate();
    test_op_counts();
    test_search_table();
    test_g1_no_resurrection();
    test_logout_vs_backup();
    test_backup_one_node_further();
    test_save_meets_tombstone();
    test_stale_primary_after_outage();
    test_late_save_after_move();
    test_failures_published();
    test_last_writer_wins();
    test_reinstate_vs_concurrent_save();
    test_movers_agree();
    test_write_rounds_bounded();
    test_dead_nodes();
    test_too_large();
    test_corrupt_items();
    test_encrypted();
    test_refresh();
    test_keepalive();
    test_writer_route();
    test_exptime_cap();
    test_destroy_vs_expiry();

    for (i = 0; i < MAXN; i++) {
        if (rawsrv[i]) {
            msm_mc_server_close_idle(rawsrv[i]);
        }
    }
    stop_spawned();
    printf("test_store: %.1f s\n", (double)(apr_time_now() - t0) / 1e6);
    return unit_done();
}
