/* msm_lock: backoff (always), and locks on a real memcached when
 * MSM_TEST_MEMCACHED is set. */
#include "unit.h"
#include "msm_lock.h"

#include <unistd.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

static void test_backoff(void)
{
    apr_uint32_t rnd = 12345;
    int attempt, i;
    apr_interval_time_t d = MSM_LOCK_BACKOFF_MIN;

    CHECK_INT_EQ(MSM_LOCK_BACKOFF_MIN, 5000);
    CHECK_INT_EQ(MSM_LOCK_BACKOFF_MAX, 100000);
    for (attempt = 0; attempt < 12; attempt++) {
        apr_interval_time_t lo = APR_INT64_MAX, hi = 0, first = -1;
        int out = 0, all_equal = 1;
        apr_uint32_t before;

        for (i = 0; i < 2000; i++) {
            apr_interval_time_t w;
            before = rnd;
            w = msm_lock_backoff(attempt, &rnd);
            if (w < d / 2 || w > d) {
                if (out++ < 3) {
                    fprintf(stderr, "    attempt %d: %ld not in [%ld, %ld]\n",
                            attempt, (long)w, (long)(d / 2), (long)d);
                }
            }
            if (first < 0) {
                first = w;
            }
            all_equal &= w == first;
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
            if (rnd == before) {
                out++;          /* the state must move on */
            }
        }
        CHECK_MSG(out == 0, "attempt %d: %d draws out of [d/2, d] (d=%ld)",
                  attempt, out, (long)d);
        CHECK_MSG(!all_equal, "attempt %d: no jitter", attempt);
        /* the draws cover the range: near both ends */
        CHECK_MSG(lo < d / 2 + d / 20 && hi > d - d / 20,
                  "attempt %d: draws in [%ld, %ld] of [%ld, %ld]", attempt,
                  (long)lo, (long)hi, (long)(d / 2), (long)d);
        d = d * 2 > MSM_LOCK_BACKOFF_MAX ? MSM_LOCK_BACKOFF_MAX : d * 2;
    }
    /* the cap: attempts 5 and beyond wait at most 100 ms, at least 50 */
    rnd = 1;
    for (i = 0; i < 100; i++) {
        apr_interval_time_t w = msm_lock_backoff(1000 + i, &rnd);
        if (w > MSM_LOCK_BACKOFF_MAX || w < MSM_LOCK_BACKOFF_MAX / 2) {
            break;
        }
    }
    CHECK_INT_EQ(i, 100);
    /* a zero state is not stuck at zero */
    rnd = 0;
    msm_lock_backoff(0, &rnd);
    CHECK(rnd != 0);
    {
        apr_uint32_t r2 = 0;
        apr_interval_time_t a = msm_lock_backoff(3, &rnd);
        apr_interval_time_t b = msm_lock_backoff(3, &rnd);
        apr_interval_time_t c = msm_lock_backoff(3, &rnd);
        CHECK(!(a == b && b == c));
        /* two requests with different states do not wait alike */
        rnd = 1;
        r2 = 2;
        for (i = 0, a = 0; i < 20; i++) {
            a += msm_lock_backoff(4, &rnd) != msm_lock_backoff(4, &r2);
        }
        CHECK(a > 10);
    }
}

/* ---- with memcached ---- */

static int log_count;

static void count_log(void *baton, int level, apr_status_t rv,
                      const char *msg)
{
    log_count++;
}

static msm_nodes_t *lock_nodes(apr_pool_t *p, int port, int dead_port)
{
    char *argv[2];
    msm_nodes_t *nodes;
    int i;

    argv[0] = apr_psprintf(p, "live:127.0.0.1:%d", port);
    argv[1] = apr_psprintf(p, "dead:127.0.0.1:%d", dead_port);
    if (msm_nodes_parse(p, 2, argv, &nodes) != NULL
        || msm_nodes_resolve(nodes, p) != NULL) {
        fprintf(stderr, "cannot set up the nodes\n");
        exit(2);
    }
    {
        void *health = apr_pcalloc(p, msm_health_size(8));
        msm_health_format(health, 8);
        msm_nodes_attach_health(nodes, health);
    }
    nodes->retry = apr_time_from_sec(10);
    nodes->timeout = apr_time_from_msec(300);
    nodes->max_value = 1024 * 1024;
    for (i = 0; i < nodes->count; i++) {
        if (msm_mc_server_create(p, nodes->node[i].addr, nodes->timeout,
                                 nodes->max_value, 4, NULL,
                                 &nodes->node[i].mc) != APR_SUCCESS) {
            exit(2);
        }
    }
    return nodes;
}

/* A store on a live node (memcached on port) and a closed one, locks that
 * expire after expire seconds, and a fresh session id on the live node. */
static void lock_setup(apr_pool_t *p, int port, const char *tag,
                       apr_uint32_t expire, msm_log_fn *log,
                       msm_store_conf_t *c, msm_lock_conf_t *lc,
                       msm_store_ctx_t *ctx, msm_id_t *id)
{
    memset(c, 0, sizeof(*c));
    c->nodes = lock_nodes(p, port, unit_closed_port(p));
    c->prefix = apr_psprintf(p, "%s%ld:", tag, (long)getpid());
    c->idle = 60;
    lc->expire = expire;
    msm_store_ctx_init(ctx, p, log, NULL);
    msm_id_generate(id);
    apr_cpystrn(id->node, "live", sizeof(id->node));
}

typedef struct {
    msm_mc_server_t *mc;
    const char *key;
    apr_status_t rv;
} deleter_t;

static void *APR_THREAD_FUNC deleter(apr_thread_t *th, void *arg)
{
    deleter_t *d = arg;

    apr_sleep(apr_time_from_msec(50));
    d->rv = msm_mc_delete(d->mc, d->key);
    (void)th;   /* return, not apr_thread_exit(): ASan trips on pthread_exit */
    return NULL;
}

static void test_locks(apr_pool_t *p, int port)
{
    msm_store_conf_t c;
    msm_store_ctx_t ctx;
    msm_lock_conf_t lc;
    msm_lock_t l1, l2;
    msm_id_t id;
    msm_mc_item_t item;
    apr_interval_time_t waited;
    apr_status_t rv;
    apr_time_t t0;
    msm_node_t *live;
    const char *key;

    lock_setup(p, port, "utl", 5, count_log, &c, &lc, &ctx, &id);
    live = &c.nodes->node[0];
    key = msm_id_key(p, MSM_NS_LOCK, c.prefix, &id);

    rv = msm_lock_acquire(&c, &ctx, &lc, &l1, live, &id,
                          apr_time_from_msec(100), &waited);
    CHECK_STATUS(rv, APR_SUCCESS);
    CHECK_INT_EQ(l1.held, 1);
    CHECK_STR_EQ(l1.key, key);
    CHECK(waited < apr_time_from_msec(50));
    CHECK(strlen(l1.token) > 8);
    CHECK_STATUS(msm_mc_get(live->mc, p, key, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, l1.token);

    /* a second request waits, then gives up after about wait_max */
    t0 = apr_time_now();
    rv = msm_lock_acquire(&c, &ctx, &lc, &l2, live, &id,
                          apr_time_from_msec(60), &waited);
    t0 = apr_time_now() - t0;
    CHECK_STATUS(rv, MSM_LOCK_TIMEOUT);
    CHECK_INT_EQ(l2.held, 0);
    CHECK_MSG(t0 >= apr_time_from_msec(60) && t0 < apr_time_from_msec(200),
              "gave up after %ld us", (long)t0);
    CHECK(waited >= apr_time_from_msec(55));
    CHECK(strcmp(l1.token, l2.token) != 0);
    /* wait_max 0: one try */
    rv = msm_lock_acquire(&c, &ctx, &lc, &l2, live, &id, 0, &waited);
    CHECK_STATUS(rv, MSM_LOCK_TIMEOUT);
    CHECK(waited < apr_time_from_msec(20));

    /* released: the key is gone, the next one gets it at once */
    CHECK_STATUS(msm_lock_release(&c, &ctx, &l1), APR_SUCCESS);
    CHECK_INT_EQ(l1.held, 0);
    CHECK_STATUS(msm_mc_get(live->mc, p, key, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_lock_release(&c, &ctx, &l1), APR_SUCCESS);  /* no-op */
    rv = msm_lock_acquire(&c, &ctx, &lc, &l2, live, &id,
                          apr_time_from_msec(100), &waited);
    CHECK_STATUS(rv, APR_SUCCESS);

    /* a waiter gets it once the holder's lock goes (deleted by another
     * thread after 50 ms) */
    {
        msm_lock_t l3;
        apr_thread_t *th;
        apr_status_t trv;
        deleter_t d;

        d.mc = live->mc;
        d.key = key;
        d.rv = -1;
        apr_thread_create(&th, NULL, deleter, &d, p);
        t0 = apr_time_now();
        rv = msm_lock_acquire(&c, &ctx, &lc, &l3, live, &id,
                              apr_time_from_sec(1), &waited);
        t0 = apr_time_now() - t0;
        apr_thread_join(&trv, th);
        CHECK_STATUS(d.rv, APR_SUCCESS);
        CHECK_STATUS(rv, APR_SUCCESS);
        CHECK_MSG(t0 >= apr_time_from_msec(50)
                  && t0 < apr_time_from_msec(300), "took %ld us", (long)t0);
        /* l2 outlived its lock: its release leaves l3's lock alone */
        CHECK_STATUS(msm_lock_release(&c, &ctx, &l2), APR_EEXIST);
        CHECK_STATUS(msm_mc_get(live->mc, p, key, &item), APR_SUCCESS);
        CHECK_STR_EQ(item.value, l3.token);
        /* l3's lock expired and nobody took it */
        CHECK_STATUS(msm_mc_delete(live->mc, key), APR_SUCCESS);
        CHECK_STATUS(msm_lock_release(&c, &ctx, &l3), APR_NOTFOUND);
    }

    /* a dead node: a failure, fast, nothing held */
    log_count = 0;
    t0 = apr_time_now();
    rv = msm_lock_acquire(&c, &ctx, &lc, &l1, &c.nodes->node[1], &id,
                          apr_time_from_sec(1), &waited);
    t0 = apr_time_now() - t0;
    CHECK(msm_mc_node_failed(rv));
    CHECK_INT_EQ(l1.held, 0);
    CHECK(t0 < apr_time_from_msec(100));
    CHECK(!msm_node_is_live(&c.nodes->node[1]));
    CHECK_INT_EQ(log_count, 1);     /* MSM00101 */
    msm_mc_server_close_idle(c.nodes->node[0].mc);
    msm_mc_server_close_idle(c.nodes->node[1].mc);
}

/* memcached's clock ticks once a second: an item set with exptime N lives
 * between N - 1 and N seconds. A lock must be held for MsmLockExpire
 * seconds at least, and a crashed holder's lock must go by MsmLockExpire
 * + 1. */
static void test_expire_bounds(apr_pool_t *p, int port)
{
    msm_store_conf_t c;
    msm_store_ctx_t ctx;
    msm_lock_conf_t lc;
    msm_lock_t l;
    msm_id_t id;
    msm_mc_item_t item;
    apr_interval_time_t waited;
    apr_time_t t0;
    const char *key;
    int round, gone;

    lock_setup(p, port, "ute", 1, NULL, &c, &lc, &ctx, &id);
    key = msm_id_key(p, MSM_NS_LOCK, c.prefix, &id);
    /* three rounds at different points of memcached's second */
    for (round = 0; round < 3; round++) {
        CHECK_STATUS(msm_lock_acquire(&c, &ctx, &lc, &l, &c.nodes->node[0],
                                      &id, 0, &waited), APR_SUCCESS);
        apr_sleep(apr_time_from_msec(950 - 300 * round));
        CHECK_MSG(msm_lock_release(&c, &ctx, &l) == APR_SUCCESS,
                  "round %d: a lock with MsmLockExpire 1 was gone after "
                  "%d ms", round, 950 - 300 * round);
    }
    /* a holder that never releases: its lock goes within 2 s */
    CHECK_STATUS(msm_lock_acquire(&c, &ctx, &lc, &l, &c.nodes->node[0], &id,
                                  0, &waited), APR_SUCCESS);
    t0 = apr_time_now();
    gone = 0;
    while (!gone && apr_time_now() - t0 < apr_time_from_msec(2300)) {
        apr_sleep(apr_time_from_msec(50));
        gone = msm_mc_get(c.nodes->node[0].mc, p, key, &item) == APR_NOTFOUND;
    }
    t0 = apr_time_now() - t0;
    CHECK_MSG(gone && t0 <= apr_time_from_msec(2100),
              "an abandoned lock with MsmLockExpire 1 went after %ld ms",
              (long)apr_time_as_msec(t0));
    msm_mc_server_close_idle(c.nodes->node[0].mc);
}

/* The waiter queue kept in the lock's value. */
static void test_queue_value(apr_pool_t *p)
{
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3", "a1"), 0);
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3", "b2"), 1);
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3", "c3"), 2);
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3", "b"), -1);
    CHECK_INT_EQ(msm_lock_position("a1 b22", "b2"), -1);
    CHECK_INT_EQ(msm_lock_position("", "a1"), -1);
    CHECK_INT_EQ(msm_lock_position("other", "a1"), -1);
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 b2 c3", "a1"), "b2 c3");
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 b2 c3", "b2"), "a1 c3");
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 b2 c3", "c3"), "a1 b2");
    CHECK_INT_EQ(msm_lock_position("a1 b2 ", "b2"), 1);
    CHECK_STR_EQ(msm_lock_value_without(p, "a1", "a1"), "");
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 b2", "zz"), "a1 b2");
    CHECK_STR_EQ(msm_lock_value_without(p, "other a1", "a1"), "other");
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 a1 b2", "a1"), "a1 b2");
    /* a waiter that gave up: "-<token>" after it */
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3 -b2", "b2"), -1);
    CHECK_INT_EQ(msm_lock_position("a1 b2 c3 -b2", "c3"), 1);
    CHECK_INT_EQ(msm_lock_position("a1 -b2 b2", "b2"), 1);  /* mark before */
    CHECK_STR_EQ(msm_lock_value_without(p, "a1 b2 c3 -b2", "a1"), "c3");
    CHECK_STR_EQ(msm_lock_value_without(p, "other a1 -a1", "zz"), "other");
    CHECK_INT_EQ(msm_lock_position("other a1 -a1", "other"), 0);
}

typedef struct {
    const msm_store_conf_t *c;
    const msm_lock_conf_t *lc;
    msm_node_t *node;
    const msm_id_t *id;
    msm_lock_t lock;
    apr_status_t rv;
    apr_time_t got_at;
} waiter_t;

static void *APR_THREAD_FUNC wait_for_lock(apr_thread_t *t, void *data)
{
    waiter_t *w = data;
    apr_pool_t *p;
    msm_store_ctx_t ctx;
    apr_interval_time_t waited;

    apr_pool_create(&p, NULL);
    msm_store_ctx_init(&ctx, p, NULL, NULL);
    w->rv = msm_lock_acquire(w->c, &ctx, w->lc, &w->lock, w->node, w->id,
                             apr_time_from_sec(3), &waited);
    w->got_at = apr_time_now();
    if (w->rv == APR_SUCCESS) {
        apr_sleep(apr_time_from_msec(20));      /* work under the lock */
        w->rv = msm_lock_release(w->c, &ctx, &w->lock);
    }
    apr_pool_destroy(p);
    return NULL;
}

/* Waiters get the lock in the order they queued, each when the one before
 * releases it: first come, first served. */
static void test_fifo(apr_pool_t *p, int port)
{
    msm_store_conf_t c;
    msm_lock_conf_t lc;
    msm_store_ctx_t ctx;
    msm_lock_t holder;
    msm_id_t id;
    waiter_t w[3];
    apr_thread_t *th[3];
    apr_interval_time_t waited;
    msm_mc_item_t item;
    int i;

    lock_setup(p, port, "utq", 5, NULL, &c, &lc, &ctx, &id);
    CHECK_STATUS(msm_lock_acquire(&c, &ctx, &lc, &holder, &c.nodes->node[0],
                                  &id, 0, &waited), APR_SUCCESS);
    for (i = 0; i < 3; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].c = &c;
        w[i].lc = &lc;
        w[i].node = &c.nodes->node[0];
        w[i].id = &id;
        apr_thread_create(&th[i], NULL, wait_for_lock, &w[i], p);
        apr_sleep(apr_time_from_msec(30));      /* queue in this order */
    }
    CHECK_STATUS(msm_mc_get(c.nodes->node[0].mc, p,
                            msm_id_key(p, MSM_NS_LOCK, c.prefix, &id), &item),
                 APR_SUCCESS);
    CHECK_INT_EQ(msm_lock_position(item.value, holder.token), 0);
    CHECK_MSG(strchr(item.value, ' ') != NULL, "queue: \"%s\"", item.value);
    CHECK_STATUS(msm_lock_release(&c, &ctx, &holder), APR_SUCCESS);
    for (i = 0; i < 3; i++) {
        apr_status_t trv;
        apr_thread_join(&trv, th[i]);
    }
    for (i = 0; i < 3; i++) {
        CHECK_STATUS(w[i].rv, APR_SUCCESS);
    }
    CHECK_MSG(w[0].got_at < w[1].got_at && w[1].got_at < w[2].got_at,
              "served out of order: %ld %ld %ld", (long)w[0].got_at,
              (long)w[1].got_at, (long)w[2].got_at);
    /* the last one deleted it: nobody is queued */
    CHECK_STATUS(msm_mc_get(c.nodes->node[0].mc, p,
                            msm_id_key(p, MSM_NS_LOCK, c.prefix, &id), &item),
                 APR_NOTFOUND);
    msm_mc_server_close_idle(c.nodes->node[0].mc);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_lock");
    int ports[2];

    test_backoff();
    test_queue_value(p);
    if (unit_mc_ports(ports, 2) < 1) {
        return unit_done_skipping("the lock tests on memcached");
    }
    test_locks(p, ports[0]);
    test_fifo(p, ports[0]);
    test_expire_bounds(p, ports[0]);
    return unit_done();
}
