/* msm_nodes: MsmNodes parsing, shared health, picking nodes. */
#include "unit.h"
#include "msm_nodes.h"

#include <apr_strings.h>
#include <apr_thread_proc.h>

#define RETRY apr_time_from_sec(10)

static void *shared_blocks[64];
static int nshared;

static char **split_words(apr_pool_t *p, const char *list, int *argc)
{
    char *last, *w, *copy = apr_pstrdup(p, list);
    char **argv = apr_pcalloc(p, sizeof(char *) * 32);

    *argc = 0;
    for (w = apr_strtok(copy, " ", &last); w;
         w = apr_strtok(NULL, " ", &last)) {
        argv[(*argc)++] = w;
    }
    return argv;
}

static const char *parse_list(apr_pool_t *p, const char *list,
                              msm_nodes_t **out)
{
    int argc;
    char **argv = split_words(p, list, &argc);

    *out = NULL;
    return msm_nodes_parse(p, argc, argv, out);
}

/* Parsed, with calloc'ed shared memory, retry 10 s. */
static msm_nodes_t *make_nodes(apr_pool_t *p, const char *list,
                               const char *failover)
{
    msm_nodes_t *nodes;
    const char *err = parse_list(p, list, &nodes);
    void *mem;

    if (err) {
        fprintf(stderr, "make_nodes(%s): %s\n", list, err);
        exit(2);
    }
    if (failover) {
        int argc;
        char **argv = split_words(p, failover, &argc);
        err = msm_nodes_set_failover(p, nodes, argc, argv);
        if (err) {
            fprintf(stderr, "set_failover(%s): %s\n", failover, err);
            exit(2);
        }
    }
    mem = calloc(1, msm_health_size(64));
    shared_blocks[nshared++] = mem;
    msm_health_format(mem, 64);
    if ((err = msm_nodes_attach_health(nodes, mem)) != NULL) {
        fprintf(stderr, "attach_health(%s): %s\n", list, err);
        exit(2);
    }
    nodes->retry = RETRY;
    nodes->timeout = apr_time_from_msec(300);
    nodes->max_value = 1024 * 1024;
    return nodes;
}

static void kill_node(msm_node_t *n, apr_time_t now)
{
    msm_node_report(n, APR_ECONNREFUSED, RETRY, 0, now);
}

static void test_parse(apr_pool_t *p)
{
    msm_nodes_t *nodes;
    const char *err;
    static const struct { const char *list, *err_has; } bad[] = {
        { "n1", "is not id:host:port" },
        { "n1:127.0.0.1", "is not id:host:port" },
        { "n1:localhost", "is not id:host:port" },
        { "n1:127.0.0.1:", "port must be 1-65535" },
        { "n1:127.0.0.1:0", "port must be 1-65535" },
        { "n1:127.0.0.1:65536", "port must be 1-65535" },
        { "n1:127.0.0.1:99999999999999999999", "port must be 1-65535" },
        { "n1:127.0.0.1:-1", "port must be 1-65535" },
        { "n1:127.0.0.1:abc", "port must be 1-65535" },
        { "n1:127.0.0.1:11211x", "port must be 1-65535" },
        { "n1:127.0.0.1:0x10", "port must be 1-65535" },
        { "n1::11211", "is not id:host:port" },
        { "n-1:127.0.0.1:11211", "must be 1-16" },
        { "n.1:127.0.0.1:11211", "must be 1-16" },
        { "n/1:127.0.0.1:11211", "must be 1-16" },
        { ":127.0.0.1:11211", "must be 1-16" },
        { "n2345678901234567:127.0.0.1:11211", "must be 1-16" },
        { "v6:[::1:11211", "bad [IPv6]:port" },
        { "v6:[::1]11211", "bad [IPv6]:port" },
        { "v6:[::1]:", "port must be 1-65535" },
        { "v6:[::1]:0", "port must be 1-65535" },
        { "v6:[]:11211", "port must be 1-65535" },
        { "n1:127.0.0.1:11211 n1:127.0.0.2:11211", "used twice" },
        { "a:h:1 b:h:2 a:h:3", "used twice" },
        { "n1:127.0.0.1:11211 n2", "is not id:host:port" },
        { "u:unix:", "port must be 1-65535" },
        { "u:unix:run/mc.sock", "needs an absolute path" },
        { "u:unix:/run/mc\"sock", "a space" },
        { "u:unix:/run/mc\\sock", "a space" },
        { "u:unix:/run/123456789012345678901234567890123456789012345678901"
          "234567890123456789012345678901234567890123456789012345.sock",
          "at most 107 characters" },
    };
    apr_size_t i;

    err = parse_list(p, "n1:127.0.0.1:11211", &nodes);
    CHECK(err == NULL);
    if (err == NULL) {
        CHECK_INT_EQ(nodes->count, 1);
        CHECK_STR_EQ(nodes->node[0].id, "n1");
        CHECK_STR_EQ(nodes->node[0].host, "127.0.0.1");
        CHECK_INT_EQ(nodes->node[0].port, 11211);
        CHECK_INT_EQ(nodes->node[0].index, 0);
        CHECK_INT_EQ(nodes->node[0].failover, 0);
        CHECK(nodes->node[0].addr == NULL);     /* resolved later */
        CHECK_STR_EQ(nodes->node[0].transport, "tcp");
        CHECK_STR_EQ(nodes->node[0].address, "127.0.0.1:11211");
    }
    /* a Unix socket; a host named "unix" is still a host */
    err = parse_list(p, "u:unix:/run/memcached/mc.sock h:unix:11211", &nodes);
    CHECK(err == NULL);
    if (err == NULL) {
        CHECK_STR_EQ(nodes->node[0].transport, "unix");
        CHECK_STR_EQ(nodes->node[0].host, "/run/memcached/mc.sock");
        CHECK_INT_EQ(nodes->node[0].port, 0);
        CHECK_STR_EQ(nodes->node[0].address, "unix:/run/memcached/mc.sock");
        CHECK_STR_EQ(nodes->node[1].transport, "tcp");
        CHECK_STR_EQ(nodes->node[1].host, "unix");
        CHECK_INT_EQ(nodes->node[1].port, 11211);
    }
    err = parse_list(p, "v6:[::1]:11211", &nodes);
    CHECK(err == NULL);
    if (err == NULL) {
        CHECK_STR_EQ(nodes->node[0].id, "v6");
        CHECK_STR_EQ(nodes->node[0].host, "::1");
        CHECK_INT_EQ(nodes->node[0].port, 11211);
        CHECK_STR_EQ(nodes->node[0].address, "[::1]:11211");
    }
    err = parse_list(p, "a:mc1.example.com:1 B_2:localhost:65535 "
                     "n234567890123456:[fe80::1]:11212 d:mc-4:11211", &nodes);
    CHECK(err == NULL);
    if (err == NULL) {
        CHECK_INT_EQ(nodes->count, 4);
        CHECK_STR_EQ(nodes->node[0].host, "mc1.example.com");
        CHECK_INT_EQ(nodes->node[0].port, 1);
        CHECK_STR_EQ(nodes->node[1].id, "B_2");
        CHECK_STR_EQ(nodes->node[1].host, "localhost");
        CHECK_INT_EQ(nodes->node[1].port, 65535);
        CHECK_STR_EQ(nodes->node[2].id, "n234567890123456");
        CHECK_STR_EQ(nodes->node[2].host, "fe80::1");
        CHECK_STR_EQ(nodes->node[3].host, "mc-4");
        for (i = 0; i < 4; i++) {
            CHECK_INT_EQ(nodes->node[i].index, i);
        }
        CHECK(msm_nodes_find(nodes, "B_2") == &nodes->node[1]);
        CHECK(msm_nodes_find(nodes, "d") == &nodes->node[3]);
        CHECK(msm_nodes_find(nodes, "b_2") == NULL);
        CHECK(msm_nodes_find(nodes, "x") == NULL);
        CHECK(msm_nodes_find(nodes, "") == NULL);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = parse_list(p, bad[i].list, &nodes);
        CHECK_MSG(err != NULL, "'%s' accepted", bad[i].list);
        if (err) {
            CHECK_MSG(strstr(err, bad[i].err_has) != NULL,
                      "'%s': error '%s' lacks '%s'", bad[i].list, err,
                      bad[i].err_has);
        }
    }
    err = msm_nodes_parse(p, 0, NULL, &nodes);
    CHECK(err != NULL && strstr(err, "at least one") != NULL);
    {   /* one quoted word of httpd.conf */
        char *const spaced[] = { "u:unix:/run/my mc.sock",
                                 "u:unix:/run/mc\tsock" };
        for (i = 0; i < 2; i++) {
            err = msm_nodes_parse(p, 1, &spaced[i], &nodes);
            CHECK(err != NULL && strstr(err, "a space") != NULL);
        }
    }
}

/* A Unix socket resolves without a name lookup; its path is its identity
 * (scope, health slot), like host:port for TCP. */
static void test_resolve_unix(apr_pool_t *p)
{
    msm_nodes_t *a = make_nodes(p, "u:unix:/run/mc-a.sock t:127.0.0.1:1",
                                NULL);
    msm_nodes_t *b = make_nodes(p, "u:unix:/run/mc-b.sock t:127.0.0.1:1",
                                NULL);
    msm_nodes_t *a2 = make_nodes(p, "x:unix:/run/mc-a.sock y:127.0.0.1:1",
                                 NULL);

    CHECK(msm_nodes_resolve(a, p) == NULL);
    CHECK(msm_nodes_resolve(b, p) == NULL);
    CHECK(msm_nodes_resolve(a2, p) == NULL);
    CHECK(a->node[0].addr != NULL && a->node[0].addr->family == APR_UNIX);
    CHECK(a->node[1].addr != NULL && a->node[1].addr->family != APR_UNIX);
    CHECK(msm_nodes_scope(a, "p:") != msm_nodes_scope(b, "p:"));
    CHECK(msm_nodes_scope(a, "p:") == msm_nodes_scope(a2, "p:"));
}

static void test_resolve_clone(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:127.0.0.1:11211 b:localhost:11212",
                                    NULL);
    void *table = shared_blocks[nshared - 1];      /* make_nodes' */
    msm_nodes_t *copy;
    const char *err = msm_nodes_resolve(nodes, p);
    void *mem;

    CHECK(err == NULL);
    CHECK(nodes->node[0].addr != NULL && nodes->node[1].addr != NULL);
    if (nodes->node[0].addr) {
        char *ip = NULL;
        apr_sockaddr_ip_get(&ip, nodes->node[0].addr);
        CHECK_STR_EQ(ip, "127.0.0.1");
        CHECK_INT_EQ(nodes->node[0].addr->port, 11211);
    }
    kill_node(&nodes->node[0], apr_time_now());
    copy = msm_nodes_clone(p, nodes);
    CHECK_INT_EQ(copy->count, 2);
    CHECK(copy->node != nodes->node);
    CHECK(copy->node[0].shared == NULL && copy->node[1].shared == NULL);
    CHECK(copy->node[0].mc == NULL);
    CHECK_STR_EQ(copy->node[1].id, "b");
    CHECK(copy->retry == nodes->retry);
    /* health belongs to an address: in the same table the copy sees node
     * a dead as well; in another table it has health of its own */
    mem = calloc(1, msm_health_size(8));
    shared_blocks[nshared++] = mem;
    msm_health_format(mem, 8);
    CHECK(msm_nodes_attach_health(copy, mem) == NULL);
    CHECK(!msm_node_is_live(&nodes->node[0]));
    CHECK(msm_node_is_live(&copy->node[0]));
    CHECK(msm_nodes_attach_health(copy, table) == NULL);
    CHECK(!msm_node_is_live(&copy->node[0]));
    CHECK(copy->node[0].shared == nodes->node[0].shared);
}

static void test_failover(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2 c:h:3", NULL);
    char *one[] = { "c" }, *two[] = { "b", "c" }, *all[] = { "a", "b", "c" };
    char *unknown[] = { "b", "zz" }, *dup[] = { "c", "c" };
    char *dup_all[] = { "a", "b", "b", "c" };
    const char *err;

    err = msm_nodes_set_failover(p, nodes, 1, one);
    CHECK(err == NULL);
    CHECK(!nodes->node[0].failover && !nodes->node[1].failover
          && nodes->node[2].failover);
    err = msm_nodes_set_failover(p, nodes, 2, two);
    CHECK(err == NULL);
    CHECK(!nodes->node[0].failover && nodes->node[1].failover
          && nodes->node[2].failover);
    err = msm_nodes_set_failover(p, nodes, 2, dup);
    CHECK(err == NULL);
    CHECK(!nodes->node[1].failover && nodes->node[2].failover);
    err = msm_nodes_set_failover(p, nodes, 2, unknown);
    CHECK(err != NULL && strstr(err, "'zz'") != NULL);
    err = msm_nodes_set_failover(p, nodes, 3, all);
    CHECK(err != NULL && strstr(err, "every node") != NULL);
    err = msm_nodes_set_failover(p, nodes, 4, dup_all);
    CHECK(err != NULL && strstr(err, "every node") != NULL);
    err = msm_nodes_set_failover(p, nodes, 0, NULL);
    CHECK(err == NULL);
    CHECK(!nodes->node[0].failover && !nodes->node[1].failover
          && !nodes->node[2].failover);
}

/* Failure lists: every caller until the server has learned them once (a
 * server that just started asks every node before it reads), then once
 * per interval. */
static void test_learn_due(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2", NULL);
    apr_time_t t = apr_time_from_sec(1000);

    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1), t), 2);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1), t), 2);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1),
                                     t + apr_time_from_sec(5)), 2);
    msm_nodes_learned(nodes, t);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1), t), 0);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1),
                                     t + apr_time_from_msec(999)), 0);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1),
                                     t + apr_time_from_sec(1)), 1);
    CHECK_INT_EQ(msm_nodes_learn_due(nodes, apr_time_from_sec(1),
                                     t + apr_time_from_sec(1)), 0);
}

static void test_health_table(apr_pool_t *p)
{
    msm_nodes_t *nodes, *again, *other, *many;
    char *mem = calloc(1, msm_health_size(4));
    apr_time_t now = apr_time_now();
    int i;

    CHECK_INT_EQ(msm_health_capacity(mem), 0);      /* not formatted */
    msm_health_format(mem, 4);
    CHECK_INT_EQ(msm_health_capacity(mem), 4);
    parse_list(p, "a:h:1 b:h:2 c:h:3", &nodes);
    CHECK(msm_nodes_attach_health(nodes, mem) == NULL);
    for (i = 0; i < 3; i++) {
        char *s = (char *)nodes->node[i].shared;
        CHECK(s > mem && s + sizeof(msm_node_shared_t)
                         <= mem + msm_health_size(4));
        CHECK(((apr_uintptr_t)s & 7) == 0);
        CHECK(msm_node_is_live(&nodes->node[i]));
        CHECK(msm_node_last_failure(&nodes->node[i]) == 0);
    }
    CHECK(nodes->node[0].shared != nodes->node[1].shared);
    /* a report on one node changes that node only, and dates it */
    kill_node(&nodes->node[1], now);
    CHECK(msm_node_is_live(&nodes->node[0]));
    CHECK(!msm_node_is_live(&nodes->node[1]));
    CHECK(msm_node_is_live(&nodes->node[2]));
    CHECK(msm_node_last_failure(&nodes->node[1]) == now);
    CHECK(msm_node_last_failure(&nodes->node[0]) == 0);
    /* a graceful restart parses the list anew: the same addresses find
     * their state (other ids, other order: the address is what counts) */
    parse_list(p, "x:h:3 y:h:2", &again);
    CHECK(msm_nodes_attach_health(again, mem) == NULL);
    CHECK(again->node[1].shared == nodes->node[1].shared);
    CHECK(!msm_node_is_live(&again->node[1]));
    CHECK(msm_node_last_failure(&again->node[1]) == now);
    CHECK(msm_node_is_live(&again->node[0]));
    /* one slot left: a new address takes it, the next does not fit */
    parse_list(p, "d:h:4", &other);
    CHECK(msm_nodes_attach_health(other, mem) == NULL);
    parse_list(p, "e:h:5", &many);
    CHECK(msm_nodes_attach_health(many, mem) != NULL);
    free(mem);
}

static void test_report(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1", NULL);
    msm_node_t *n = &nodes->node[0];
    msm_node_shared_t *sh;
    apr_time_t t = apr_time_from_sec(1000000);
    static const apr_status_t not_failures[] = {
        APR_SUCCESS, APR_NOTFOUND, APR_EEXIST, MSM_MC_EREPLY, MSM_MC_ETOOBIG,
        APR_EINVAL
    };
    static const apr_status_t failures[] = {
        APR_TIMEUP, APR_ECONNREFUSED, APR_EOF, APR_ECONNRESET, MSM_MC_EPROTO,
        APR_EGENERAL, APR_ENOMEM
    };
    apr_size_t i;
    static const struct { apr_interval_time_t took; int bucket; } lat[] = {
        { 0, 0 }, { 100, 0 }, { 101, 1 }, { 500, 1 }, { 501, 2 },
        { 1000, 2 }, { 1001, 3 }, { 5000, 3 }, { 10000, 4 }, { 50000, 5 },
        { 100000, 6 }, { 500000, 7 }, { 1000000, 8 }, { 1000001, 9 },
        { 60000000, 9 }, { -5, 0 }
    };

    for (i = 0; i < sizeof(not_failures) / sizeof(not_failures[0]); i++) {
        CHECK_INT_EQ(msm_mc_node_failed(not_failures[i]), 0);
    }
    for (i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        CHECK_INT_EQ(msm_mc_node_failed(failures[i]), 1);
    }

    sh = n->shared;
    /* answers that are not failures keep it live */
    for (i = 0; i < sizeof(not_failures) / sizeof(not_failures[0]); i++) {
        CHECK_INT_EQ(msm_node_report(n, not_failures[i], RETRY, 50, t),
                     MSM_NODE_UNCHANGED);
    }
    CHECK(msm_node_is_live(n));
    CHECK_INT_EQ(sh->ops, 6);
    CHECK_INT_EQ(sh->errors, 0);
    CHECK_INT_EQ(sh->timeouts, 0);
    CHECK_INT_EQ(sh->since, 0);

    /* a timeout: down, once */
    CHECK_INT_EQ(msm_node_report(n, APR_TIMEUP, RETRY, 300000, t + 1),
                 MSM_NODE_WENT_DOWN);
    CHECK(!msm_node_is_live(n));
    CHECK_INT_EQ(sh->errors, 1);
    CHECK_INT_EQ(sh->timeouts, 1);
    CHECK_INT_EQ(sh->since, t + 1);
    CHECK_INT_EQ(sh->retry_at, t + 1 + RETRY);
    /* operations that were in flight when it went down (they began before,
     * in other threads and children) failing with it: the same outage,
     * counted, not reported again (else one stall under mpm_event logged
     * an MSM00102 per waiting thread), and the probe is not put off */
    CHECK_INT_EQ(msm_node_report(n, APR_TIMEUP, RETRY, 300000, t + 2),
                 MSM_NODE_UNCHANGED);
    CHECK_INT_EQ(msm_node_report(n, APR_ECONNREFUSED, RETRY, 50, t + 2),
                 MSM_NODE_UNCHANGED);
    CHECK(!msm_node_is_live(n));
    CHECK_INT_EQ(sh->errors, 3);
    CHECK_INT_EQ(sh->timeouts, 2);
    CHECK_INT_EQ(sh->retry_at, t + 1 + RETRY);
    /* operations that began after it went down (the probe) and failed */
    CHECK_INT_EQ(msm_node_report(n, APR_ECONNREFUSED, RETRY, 0, t + 2),
                 MSM_NODE_STILL_DOWN);
    CHECK_INT_EQ(msm_node_report(n, MSM_MC_EPROTO, RETRY, 1, t + 3),
                 MSM_NODE_STILL_DOWN);
    CHECK_INT_EQ(sh->errors, 5);
    CHECK_INT_EQ(sh->timeouts, 2);
    CHECK_INT_EQ(sh->since, t + 1);         /* the change, not the last op */
    CHECK_INT_EQ(sh->retry_at, t + 3 + RETRY);
    CHECK_INT_EQ(sh->ops, 11);
    /* an answer that is not a failure: back, once */
    /* a success of an operation that began before the node went down
     * (another child's, in flight): says nothing about it now */
    CHECK_INT_EQ(msm_node_report(n, APR_SUCCESS, RETRY, 10, t + 3),
                 MSM_NODE_UNCHANGED);
    CHECK(!msm_node_is_live(n));
    CHECK_INT_EQ(msm_node_report(n, APR_NOTFOUND, RETRY, 0, t + 4),
                 MSM_NODE_CAME_UP);
    CHECK(msm_node_is_live(n));
    CHECK_INT_EQ(sh->since, t + 4);
    CHECK_INT_EQ(msm_node_report(n, APR_SUCCESS, RETRY, 50, t + 5),
                 MSM_NODE_UNCHANGED);
    CHECK_INT_EQ(msm_node_report(n, MSM_MC_EREPLY, RETRY, 50, t + 6),
                 MSM_NODE_UNCHANGED);
    CHECK(msm_node_is_live(n));
    CHECK_INT_EQ(msm_node_report(n, APR_EOF, RETRY, 0, t + 7),
                 MSM_NODE_WENT_DOWN);
    CHECK_INT_EQ(msm_node_report(n, APR_TIMEUP, RETRY, 0, t + 8),
                 MSM_NODE_STILL_DOWN);
    CHECK_INT_EQ(sh->timeouts, 3);
    CHECK_INT_EQ(sh->errors, 7);
    CHECK_INT_EQ(sh->ops, 17);
    CHECK_INT_EQ(msm_node_report(n, APR_SUCCESS, RETRY, 0, t + 9),
                 MSM_NODE_CAME_UP);

    /* latency buckets */
    {
        msm_nodes_t *one = make_nodes(p, "z:h:1", NULL);
        msm_node_shared_t *s1 = one->node[0].shared;
        apr_uint64_t expect[MSM_LATENCY_BUCKETS + 1];
        apr_uint64_t sum = 0;
        int b, same = 1;

        memset(expect, 0, sizeof(expect));
        for (i = 0; i < sizeof(lat) / sizeof(lat[0]); i++) {
            msm_node_report(&one->node[0], APR_SUCCESS, RETRY, lat[i].took, t);
            expect[lat[i].bucket]++;
            sum += lat[i].took > 0 ? (apr_uint64_t)lat[i].took : 0;
        }
        for (b = 0; b <= MSM_LATENCY_BUCKETS; b++) {
            if (s1->latency[b] != expect[b]) {
                same = 0;
                fprintf(stderr, "    bucket %d: %lu, expected %lu\n", b,
                        (unsigned long)s1->latency[b],
                        (unsigned long)expect[b]);
            }
        }
        CHECK(same);
        CHECK_INT_EQ(s1->latency_sum_us, sum);
        CHECK_INT_EQ(s1->ops, sizeof(lat) / sizeof(lat[0]));
        CHECK_INT_EQ(msm_latency_bounds[0], 100);
        CHECK_INT_EQ(msm_latency_bounds[MSM_LATENCY_BUCKETS - 1], 1000000);
    }
}

static void test_usable(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2", NULL);
    msm_node_t *n = &nodes->node[0];
    apr_time_t t = apr_time_from_sec(2000000);

    CHECK_INT_EQ(msm_node_usable(n, RETRY, t), MSM_NODE_LIVE);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t), MSM_NODE_LIVE);
    kill_node(n, t);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + RETRY - 1), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + RETRY), MSM_NODE_PROBE);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + RETRY), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + RETRY + 1), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 2 * RETRY - 1), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 2 * RETRY), MSM_NODE_PROBE);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 2 * RETRY), MSM_NODE_SKIP);
    /* the probe failed: retry counts from then */
    CHECK_INT_EQ(msm_node_report(n, APR_TIMEUP, RETRY, 10, t + 2 * RETRY + 5),
                 MSM_NODE_STILL_DOWN);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 3 * RETRY), MSM_NODE_SKIP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 3 * RETRY + 5),
                 MSM_NODE_PROBE);
    /* long after: one probe, then skip */
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 100 * RETRY), MSM_NODE_PROBE);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 100 * RETRY + 1),
                 MSM_NODE_SKIP);
    /* the probe worked */
    CHECK_INT_EQ(msm_node_report(n, APR_SUCCESS, RETRY, 10, t + 100 * RETRY),
                 MSM_NODE_CAME_UP);
    CHECK_INT_EQ(msm_node_usable(n, RETRY, t + 100 * RETRY + 2),
                 MSM_NODE_LIVE);
    /* the other node was never touched */
    CHECK_INT_EQ(msm_node_usable(&nodes->node[1], RETRY, t), MSM_NODE_LIVE);
}

/* Threads see the retry due at once: exactly one probes. (A smoke test:
 * the window of a lost race is too short to be hit every time.) */
typedef struct {
    msm_node_t *n;
    apr_time_t now;
    volatile apr_uint32_t *go;
    volatile apr_uint32_t probes;
    volatile apr_uint32_t skips;
} race_t;

static void *APR_THREAD_FUNC race_thread(apr_thread_t *th, void *arg)
{
    race_t *r = arg;
    msm_node_use_e u;

    while (apr_atomic_read32(r->go) == 0) {
        ;
    }
    u = msm_node_usable(r->n, RETRY, r->now);
    if (u == MSM_NODE_PROBE) {
        apr_atomic_inc32(&r->probes);
    }
    else if (u == MSM_NODE_SKIP) {
        apr_atomic_inc32(&r->skips);
    }
    (void)th;   /* return, not apr_thread_exit(): ASan trips on pthread_exit */
    return NULL;
}

static void test_usable_race(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1", NULL);
    apr_time_t t = apr_time_from_sec(3000000);
    volatile apr_uint32_t go = 0;
    race_t r;
    apr_thread_t *th[4];
    int round, i, ok_rounds = 0;

    kill_node(&nodes->node[0], t);
    for (round = 1; round <= 50; round++) {
        memset(&r, 0, sizeof(r));
        r.n = &nodes->node[0];
        r.now = t + round * RETRY;
        r.go = &go;
        apr_atomic_set32(&go, 0);
        for (i = 0; i < 4; i++) {
            apr_thread_create(&th[i], NULL, race_thread, &r, p);
        }
        apr_atomic_set32(&go, 1);
        for (i = 0; i < 4; i++) {
            apr_status_t trv;
            apr_thread_join(&trv, th[i]);
        }
        ok_rounds += r.probes == 1 && r.skips == 3;
    }
    CHECK_INT_EQ(ok_rounds, 50);
}

static int slot(msm_node_t *const *N, const msm_node_t *n)
{
    int i;

    for (i = 0; i < 4; i++) {
        if (N[i] == n) {
            return i;
        }
    }
    return 0;
}

static void test_pick_new(apr_pool_t *p)
{
    /* the failover node sits between the primaries in MsmNodes order */
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 f:h:4 b:h:2 c:h:3", "f");
    apr_time_t t = apr_time_from_sec(4000000);
    int count[4], i, nulls;
    unsigned int s;
    msm_node_t *N[4];

    /* N[0..2]: the primaries a, b, c; N[3]: the failover node f */
    N[0] = msm_nodes_find(nodes, "a");
    N[1] = msm_nodes_find(nodes, "b");
    N[2] = msm_nodes_find(nodes, "c");
    N[3] = msm_nodes_find(nodes, "f");
    CHECK(N[3]->failover && !N[0]->failover && N[3]->index == 1);

    /* all live: the primaries share, the failover node gets nothing */
    memset(count, 0, sizeof(count));
    for (s = 0; s < 1000; s++) {
        msm_node_t *n = msm_nodes_pick_new(nodes, s, t);
        if (n) {
            count[slot(N, n)]++;
        }
    }
    CHECK(count[0] > 300 && count[1] > 300 && count[2] > 300);
    CHECK_INT_EQ(count[3], 0);
    CHECK_INT_EQ(count[0] + count[1] + count[2], 1000);
    /* stable for the same spread */
    CHECK(msm_nodes_pick_new(nodes, 12345, t)
          == msm_nodes_pick_new(nodes, 12345, t));

    /* b dead: a and c share */
    kill_node(N[1], t);
    memset(count, 0, sizeof(count));
    for (s = 0; s < 1000; s++) {
        msm_node_t *n = msm_nodes_pick_new(nodes, s, t + 1);
        if (n) {
            count[slot(N, n)]++;
        }
    }
    CHECK(count[0] > 400 && count[2] > 400);
    CHECK_INT_EQ(count[1], 0);
    CHECK_INT_EQ(count[3], 0);
    CHECK_INT_EQ(count[0] + count[2], 1000);
    /* b is due again, but live nodes come first: no probe by pick_new */
    CHECK(msm_nodes_pick_new(nodes, 1, t + RETRY) != N[1]);
    CHECK_INT_EQ(msm_node_usable(N[1], RETRY, t + RETRY),
                 MSM_NODE_PROBE);

    /* all primaries dead: the failover node takes everything */
    kill_node(N[0], t);
    kill_node(N[1], t);
    kill_node(N[2], t);
    memset(count, 0, sizeof(count));
    for (s = 0; s < 1000; s++) {
        msm_node_t *n = msm_nodes_pick_new(nodes, s, t + 1);
        if (n) {
            count[slot(N, n)]++;
        }
    }
    CHECK_INT_EQ(count[3], 1000);
    /* even when the primaries are due for a retry */
    CHECK(msm_nodes_pick_new(nodes, 4, t + RETRY) == N[3]);

    /* all dead, none due: nothing */
    kill_node(N[3], t);
    nulls = 0;
    for (s = 0; s < 100; s++) {
        nulls += msm_nodes_pick_new(nodes, s, t + 1) == NULL;
    }
    CHECK_INT_EQ(nulls, 100);
    CHECK(msm_nodes_pick_new(nodes, 0, t + RETRY - 1) == NULL);
    /* all due: each call probes another node, then nothing is left */
    memset(count, 0, sizeof(count));
    for (i = 0; i < 4; i++) {
        msm_node_t *n = msm_nodes_pick_new(nodes, 2, t + RETRY);
        CHECK(n != NULL);
        if (n) {
            count[slot(N, n)]++;
            CHECK(!msm_node_is_live(n));
        }
    }
    CHECK(count[0] == 1 && count[1] == 1 && count[2] == 1 && count[3] == 1);
    CHECK(msm_nodes_pick_new(nodes, 2, t + RETRY) == NULL);
    CHECK(msm_nodes_pick_new(nodes, 0, t + RETRY + 1) == NULL);
    /* the probe starts at the spread's node (in MsmNodes order) */
    CHECK(msm_nodes_pick_new(nodes, 5, t + 2 * RETRY) == N[3]);
    CHECK(msm_nodes_pick_new(nodes, 5, t + 2 * RETRY) == N[1]);
    /* one came back: it takes all */
    msm_node_report(N[2], APR_SUCCESS, RETRY, 10, t + 2 * RETRY);
    nulls = 0;
    for (s = 0; s < 100; s++) {
        nulls += msm_nodes_pick_new(nodes, s, t + 2 * RETRY + 1)
                 != N[2];
    }
    CHECK_INT_EQ(nulls, 0);
}

/* The backup node of primary: where a backup write goes first. */
static msm_node_t *first_backup(msm_nodes_t *nodes, const msm_node_t *primary,
                                apr_time_t now)
{
    int pos = 0;

    return msm_nodes_next_backup_candidate(nodes, primary, &pos, now);
}

static void test_pick_backup(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2 c:h:3 d:h:4", NULL);
    msm_nodes_t *single = make_nodes(p, "s:h:1", NULL);
    msm_node_t *n = nodes->node;
    apr_time_t t = apr_time_from_sec(5000000);
    int i, never_self = 1;

    CHECK(first_backup(nodes, &n[0], t) == &n[1]);
    CHECK(first_backup(nodes, &n[1], t) == &n[2]);
    CHECK(first_backup(nodes, &n[2], t) == &n[3]);
    CHECK(first_backup(nodes, &n[3], t) == &n[0]);   /* wraps */
    CHECK(first_backup(single, &single->node[0], t) == NULL);

    kill_node(&n[1], t);
    CHECK(first_backup(nodes, &n[0], t) == &n[2]);
    kill_node(&n[2], t);
    CHECK(first_backup(nodes, &n[0], t) == &n[3]);
    CHECK(first_backup(nodes, &n[3], t) == &n[0]);
    CHECK(first_backup(nodes, &n[2], t) == &n[3]);   /* dead prim. */
    kill_node(&n[3], t);
    CHECK(first_backup(nodes, &n[0], t) == NULL);    /* not itself */
    CHECK(first_backup(nodes, &n[1], t) == &n[0]);
    /* a dead node whose retry is due may be tried (a probe), once */
    CHECK(first_backup(nodes, &n[0], t + RETRY) == &n[1]);
    CHECK(first_backup(nodes, &n[0], t + RETRY) == &n[2]);
    CHECK(first_backup(nodes, &n[0], t + RETRY) == &n[3]);
    CHECK(first_backup(nodes, &n[0], t + RETRY) == NULL);
    /* whatever is dead, never the primary */
    for (i = 0; i < 4; i++) {
        msm_node_t *b = first_backup(nodes, &n[i], t + 3 * RETRY);
        never_self &= b != &n[i];
    }
    CHECK(never_self);
    /* a primary that is dead itself still has a backup */
    msm_node_report(&n[3], APR_SUCCESS, RETRY, 0, t + 3 * RETRY);
    CHECK(first_backup(nodes, &n[1], t + 3 * RETRY + 1) == &n[3]);
}

static void test_backup_candidates(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2 c:h:3 d:h:4", NULL);
    msm_nodes_t *single = make_nodes(p, "s:h:1", NULL);
    msm_node_t *n = nodes->node, *c;
    apr_time_t t = apr_time_from_sec(6000000);
    int pos, calls;
    char seen[16];

#define VISIT(nodes_, from_, now_) \
    do { \
        int k = 0; \
        pos = 0; \
        calls = 0; \
        while (calls++ < 50 \
               && (c = msm_nodes_next_backup_candidate(nodes_, from_, &pos, \
                                                       now_)) != NULL) { \
            seen[k++] = c->id[0]; \
        } \
        seen[k] = '\0'; \
    } while (0)

    VISIT(nodes, &n[1], t);
    CHECK_STR_EQ(seen, "cda");
    /* after the end it stays at the end */
    CHECK(msm_nodes_next_backup_candidate(nodes, &n[1], &pos, t) == NULL);
    VISIT(nodes, &n[0], t);
    CHECK_STR_EQ(seen, "bcd");
    VISIT(nodes, &n[3], t);
    CHECK_STR_EQ(seen, "abc");
    VISIT(nodes, NULL, t);
    CHECK_STR_EQ(seen, "abcd");
    VISIT(single, &single->node[0], t);
    CHECK_STR_EQ(seen, "");
    VISIT(single, NULL, t);
    CHECK_STR_EQ(seen, "s");

    kill_node(&n[2], t);
    VISIT(nodes, &n[1], t);
    CHECK_STR_EQ(seen, "da");
    VISIT(nodes, NULL, t);
    CHECK_STR_EQ(seen, "abd");
    /* all dead: it ends, visiting nothing */
    kill_node(&n[0], t);
    kill_node(&n[1], t);
    kill_node(&n[3], t);
    VISIT(nodes, &n[1], t + 1);
    CHECK_STR_EQ(seen, "");
    CHECK(calls == 1);
    VISIT(nodes, NULL, t + 1);
    CHECK_STR_EQ(seen, "");
    CHECK(calls == 1);
    /* all due: each one visited once (each visit is that node's probe) */
    VISIT(nodes, &n[1], t + RETRY);
    CHECK_STR_EQ(seen, "cda");
    VISIT(nodes, NULL, t + RETRY);
    CHECK_STR_EQ(seen, "b");        /* the others' probes were taken above */
    VISIT(nodes, NULL, t + RETRY);
    CHECK_STR_EQ(seen, "");
#undef VISIT
}

static void test_all_dead_log(apr_pool_t *p)
{
    msm_nodes_t *nodes = make_nodes(p, "a:h:1 b:h:2", NULL);
    apr_time_t t = apr_time_from_sec(7000000);
    int i, due = 0;

    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t), 1);
    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t), 0);
    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t + RETRY - 1), 0);
    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t + RETRY), 1);
    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t + RETRY), 0);
    CHECK_INT_EQ(msm_nodes_all_dead_log_due(nodes, t + RETRY + 1), 0);
    /* one per interval over a long stretch of calls every 100 ms */
    for (i = 1; i <= 1000; i++) {
        due += msm_nodes_all_dead_log_due(nodes, t + RETRY
                                          + apr_time_from_msec(100) * i);
    }
    CHECK_INT_EQ(due, 10);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_nodes");
    int i;

    test_parse(p);
    test_resolve_clone(p);
    test_failover(p);
    test_learn_due(p);
    test_resolve_unix(p);
    test_health_table(p);
    test_report(p);
    test_usable(p);
    test_usable_race(p);
    test_pick_new(p);
    test_pick_backup(p);
    test_backup_candidates(p);
    test_all_dead_log(p);
    for (i = 0; i < nshared; i++) {
        free(shared_blocks[i]);
    }
    return unit_done();
}
