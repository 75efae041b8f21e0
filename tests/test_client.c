/* msm_mc: the memcached client, against real memcached servers
 * (MSM_TEST_MEMCACHED="port1,port2" on 127.0.0.1) and against fake servers
 * in a thread that play canned bytes. Without MSM_TEST_MEMCACHED only the
 * fake-server and deadline parts run and the test reports "skipped". */
#include "unit.h"
#include "msm_mc.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_poll.h>
#include <apr_allocator.h>

#define MS(n) apr_time_from_msec(n)

static apr_pool_t *root;

/* ---- observer ---- */

typedef struct {
    volatile apr_uint32_t ops;
    volatile apr_uint32_t no_gat;
    volatile apr_uint32_t no_meta;
    apr_status_t last;
} obs_t;

static void obs_op_done(void *baton, apr_status_t rv, apr_interval_time_t t)
{
    obs_t *o = baton;

    apr_atomic_inc32(&o->ops);
    o->last = rv;
}

static void obs_no_gat(void *baton)
{
    obs_t *o = baton;

    apr_atomic_inc32(&o->no_gat);
}

static void obs_no_meta(void *baton)
{
    obs_t *o = baton;

    apr_atomic_inc32(&o->no_meta);
}

static msm_mc_server_t *make_server(apr_pool_t *p, apr_port_t port,
                                    apr_interval_time_t timeout,
                                    apr_size_t max_value, obs_t *o)
{
    apr_sockaddr_t *sa;
    msm_mc_server_t *s;
    msm_mc_observer_t ob;

    memset(&ob, 0, sizeof(ob));
    if (o) {
        memset(o, 0, sizeof(*o));
        ob.op_done = obs_op_done;
        ob.no_gat = obs_no_gat;
        ob.no_meta = obs_no_meta;
        ob.baton = o;
    }
    if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, port, 0, p)
            != APR_SUCCESS
        || msm_mc_server_create(p, sa, timeout, max_value, 4,
                                o ? &ob : NULL, &s) != APR_SUCCESS) {
        fprintf(stderr, "cannot create a server for port %d\n", port);
        exit(2);
    }
    return s;
}

/* ---- a fake memcached in a thread ---- */

enum {
    F_CLOSE = 1,        /* close the connection after the reply */
    F_DRIP = 2,         /* one byte every 5 ms */
    F_NOREPLY = 4,      /* send nothing */
    F_HOLD = 8          /* send split bytes, wait hold_ms, send the rest */
};

typedef struct {
    const char *expect;     /* the request line starts with this */
    const char *reply;
    apr_size_t len;         /* 0: strlen(reply) */
    int flags;
    apr_size_t split;
    int hold_ms;
} fstep_t;

#define FMAX 16

typedef struct {
    apr_pool_t *pool;
    apr_socket_t *listener;
    apr_port_t port;
    const fstep_t *steps;
    int nsteps;
    char got[FMAX][300];
    int conn_of[FMAX];
    int accepts;
    int done;
    int mismatch;
    char rbuf[64 * 1024];
    apr_size_t rlen;
    apr_thread_t *thread;
} fake_t;

static const char *find_crlf(const char *b, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i + 1 < n; i++) {
        if (b[i] == '\r' && b[i + 1] == '\n') {
            return b + i;
        }
    }
    return NULL;
}

/* Reads one request (with its data for storage commands); 0 on EOF,
 * error or timeout. */
static int fake_read_request(fake_t *f, apr_socket_t *s, char *line,
                             apr_size_t cap)
{
    for (;;) {
        const char *crlf = find_crlf(f->rbuf, f->rlen);
        apr_size_t n;

        if (crlf) {
            apr_size_t ll = (apr_size_t)(crlf - f->rbuf), need = ll + 2;
            if (strncmp(f->rbuf, "set ", 4) == 0
                || strncmp(f->rbuf, "add ", 4) == 0
                || strncmp(f->rbuf, "cas ", 4) == 0) {
                char tmp[300];
                char *last, *w;
                int field = 0;
                apr_size_t bytes = 0;
                apr_cpystrn(tmp, f->rbuf, ll + 1 < sizeof(tmp) ? ll + 1
                                                               : sizeof(tmp));
                for (w = apr_strtok(tmp, " ", &last); w;
                     w = apr_strtok(NULL, " ", &last)) {
                    if (field++ == 4) {
                        bytes = (apr_size_t)atol(w);
                    }
                }
                need += bytes + 2;
            }
            if (f->rlen >= need) {
                apr_cpystrn(line, f->rbuf, ll + 1 < cap ? ll + 1 : cap);
                memmove(f->rbuf, f->rbuf + need, f->rlen - need);
                f->rlen -= need;
                return 1;
            }
        }
        n = sizeof(f->rbuf) - f->rlen;
        if (n == 0 || apr_socket_recv(s, f->rbuf + f->rlen, &n)
                          != APR_SUCCESS) {
            return 0;
        }
        f->rlen += n;
    }
}

static void fake_send(apr_socket_t *s, const char *b, apr_size_t n)
{
    while (n > 0) {
        apr_size_t k = n;
        if (apr_socket_send(s, b, &k) != APR_SUCCESS) {
            return;
        }
        b += k;
        n -= k;
    }
}

/* apr_socket_accept does not wait out a timeout: poll first. */
static apr_status_t fake_accept(fake_t *f, apr_socket_t **c)
{
    apr_pollfd_t pfd;
    apr_int32_t n = 0;
    apr_status_t rv;

    memset(&pfd, 0, sizeof(pfd));
    pfd.p = f->pool;
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.reqevents = APR_POLLIN;
    pfd.desc.s = f->listener;
    rv = apr_poll(&pfd, 1, &n, apr_time_from_sec(3));
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return apr_socket_accept(c, f->listener, f->pool);
}

static void *APR_THREAD_FUNC fake_main(apr_thread_t *th, void *arg)
{
    fake_t *f = arg;
    apr_socket_t *c = NULL;
    int i = 0, fails = 0;

    while (i < f->nsteps) {
        const fstep_t *st = &f->steps[i];
        apr_size_t len = st->len ? st->len
                                 : (st->reply ? strlen(st->reply) : 0);
        char line[300];

        if (c == NULL) {
            apr_status_t arv = fake_accept(f, &c);
            if (arv != APR_SUCCESS) {
                fprintf(stderr, "    fake server: accept: %d\n", arv);
                break;
            }
            f->accepts++;
            f->rlen = 0;
            apr_socket_timeout_set(c, apr_time_from_sec(3));
        }
        if (!fake_read_request(f, c, line, sizeof(line))) {
            apr_socket_close(c);
            c = NULL;
            if (++fails > 10) {
                break;
            }
            continue;
        }
        apr_cpystrn(f->got[i], line, sizeof(f->got[i]));
        f->conn_of[i] = f->accepts;
        if (strncmp(line, st->expect, strlen(st->expect)) != 0) {
            f->mismatch++;
            fprintf(stderr, "    fake server step %d: got \"%s\", expected "
                    "\"%s...\"\n", i, line, st->expect);
        }
        if (st->flags & F_NOREPLY) {
            /* nothing */
        }
        else if (st->flags & F_DRIP) {
            apr_size_t k;
            for (k = 0; k < len; k++) {
                fake_send(c, st->reply + k, 1);
                apr_sleep(MS(5));
            }
        }
        else if (st->flags & F_HOLD) {
            fake_send(c, st->reply, st->split);
            apr_sleep(MS(st->hold_ms));
            fake_send(c, st->reply + st->split, len - st->split);
        }
        else {
            fake_send(c, st->reply, len);
        }
        i++;
        f->done = i;
        if (st->flags & F_CLOSE) {
            apr_socket_close(c);
            c = NULL;
        }
    }
    if (c) {
        apr_socket_close(c);
    }
    (void)th;   /* return, not apr_thread_exit(): ASan trips on pthread_exit */
    return NULL;
}

static apr_socket_t *listen_local(apr_pool_t *p, apr_port_t *port)
{
    apr_sockaddr_t *sa, *local;
    apr_socket_t *s;

    if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, 0, 0, p)
            != APR_SUCCESS
        || apr_socket_create(&s, APR_INET, SOCK_STREAM, APR_PROTO_TCP, p)
            != APR_SUCCESS
        || apr_socket_opt_set(s, APR_SO_REUSEADDR, 1) != APR_SUCCESS
        || apr_socket_bind(s, sa) != APR_SUCCESS
        || apr_socket_listen(s, 16) != APR_SUCCESS
        || apr_socket_addr_get(&local, APR_LOCAL, s) != APR_SUCCESS) {
        fprintf(stderr, "cannot listen on 127.0.0.1\n");
        exit(2);
    }
    *port = local->port;
    return s;
}

static fake_t *fake_start(const fstep_t *steps, int nsteps)
{
    fake_t *f = calloc(1, sizeof(*f));

    apr_pool_create(&f->pool, root);
    f->steps = steps;
    f->nsteps = nsteps;
    f->listener = listen_local(f->pool, &f->port);
    apr_socket_timeout_set(f->listener, apr_time_from_sec(3));
    if (apr_thread_create(&f->thread, NULL, fake_main, f, root)
            != APR_SUCCESS) {
        fprintf(stderr, "cannot start a thread\n");
        exit(2);
    }
    return f;
}

/* Waits for the server thread; 1 if every step ran as expected. */
static int fake_stop(fake_t *f)
{
    apr_status_t trv;
    int ok;

    apr_thread_join(&trv, f->thread);
    ok = f->done == f->nsteps && f->mismatch == 0;
    if (!ok) {
        fprintf(stderr, "    fake server: %d of %d steps, %d mismatches\n",
                f->done, f->nsteps, f->mismatch);
    }
    return ok;
}

static void fake_free(fake_t *f)
{
    apr_socket_close(f->listener);
    apr_pool_destroy(f->pool);
    free(f);
}

#define NSTEPS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- fake-server tests ---- */

static void test_fake_gats_error(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "gats 60 k", "ERROR\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 7 5 42\r\nhello\r\nEND\r\n", 0, 0, 0, 0 },
        { "touch k 60", "TOUCHED\r\n", 0, 0, 0, 0 },
        /* known now: gets + touch straight away */
        { "gets k", "VALUE k 7 3 43\r\nbye\r\nEND\r\n", 0, 0, 0, 0 },
        { "touch k 30", "TOUCHED\r\n", 0, 0, 0, 0 },
        /* a miss: no touch */
        { "gets k", "END\r\n", 0, 0, 0, 0 },
        { "version", "VERSION fake\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    char *v;

    CHECK_STATUS(msm_mc_get_touch(s, p, "k", 60, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "hello");
    CHECK_INT_EQ(item.flags, 7);
    CHECK(item.cas == 42);
    CHECK_INT_EQ(o.no_gat, 1);
    CHECK_STATUS(msm_mc_get_touch(s, p, "k", 30, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "bye");
    CHECK_STATUS(msm_mc_get_touch(s, p, "k", 30, &item), APR_NOTFOUND);
    CHECK(item.value == NULL);
    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    CHECK_STR_EQ(v, "fake");
    CHECK_INT_EQ(o.no_gat, 1);
    CHECK_INT_EQ(o.ops, 7);
    CHECK(fake_stop(f));
    /* after the ERROR reply the connection was dropped; the rest shared
     * one connection */
    CHECK_INT_EQ(f->conn_of[0], 1);
    CHECK_INT_EQ(f->conn_of[1], 2);
    CHECK_INT_EQ(f->conn_of[6], 2);
    CHECK_INT_EQ(f->accepts, 2);
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* twemproxy closes the connection on an unknown command */
static void test_fake_gats_closed(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "gats 60 k", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
        { "gets k", "VALUE k 0 2\r\nok\r\nEND\r\n", 0, 0, 0, 0 },
        { "touch k 60", "TOUCHED\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;

    CHECK_STATUS(msm_mc_get_touch(s, p, "k", 60, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "ok");
    CHECK_INT_EQ(o.no_gat, 1);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* md (compare-and-delete): yrmcds answers ERROR, twemproxy closes the
 * connection; either way it is found out once, and then not sent again */
static void test_fake_meta_unknown(apr_pool_t *p)
{
    static const fstep_t error_steps[] = {
        { "md k C7", "ERROR\r\n", 0, 0, 0, 0 },
        { "version", "VERSION fake\r\n", 0, 0, 0, 0 },
    };
    static const fstep_t closed_steps[] = {
        { "md k C7", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
        { "version", "VERSION fake\r\n", 0, 0, 0, 0 },
    };
    const fstep_t *steps[] = { error_steps, closed_steps };
    int i;

    for (i = 0; i < 2; i++) {
        fake_t *f = fake_start(steps[i], 2);
        obs_t o;
        msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
        apr_status_t rv = msm_mc_delete_cas(s, "k", 7);
        char *v;

        CHECK_STATUS(rv, APR_ENOTIMPL);
        CHECK(!msm_mc_node_failed(rv));
        CHECK_INT_EQ(o.no_meta, 1);
        /* known now: not sent again */
        CHECK_STATUS(msm_mc_delete_cas(s, "k", 7), APR_ENOTIMPL);
        if (i == 0) {
            CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
        }
        CHECK_INT_EQ(o.no_meta, 1);
        CHECK_INT_EQ(o.ops, 2);
        CHECK(fake_stop(f));
        msm_mc_server_close_idle(s);
        fake_free(f);
    }
}

/* a server that closes on md and is really gone: a node failure, not a
 * missing command */
static void test_fake_meta_gone(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "md k C7", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(300), 1024, &o);
    apr_status_t rv;

    /* after the close nobody answers: the "version" check times out */
    rv = msm_mc_delete_cas(s, "k", 7);
    CHECK(msm_mc_node_failed(rv));
    CHECK_INT_EQ(o.no_meta, 0);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* gets worked but the node failed on the touch: a failure */
static void test_fake_touch_fails(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "gats 60 k", "ERROR\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 0 2\r\nok\r\nEND\r\n", 0, 0, 0, 0 },
        { "touch k 60", "TOUCHED\r\n", 0, F_HOLD, 0, 400 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(150), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;

    rv = msm_mc_get_touch(s, p, "k", 60, &item);
    CHECK_STATUS(rv, APR_TIMEUP);
    CHECK(msm_mc_node_failed(rv));
    CHECK_INT_EQ(o.no_gat, 0);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* a server that refuses gats and gets alike is not "without gats" */
static void test_fake_all_errors(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "gats 60 k", "ERROR\r\n", 0, 0, 0, 0 },
        { "gets k", "SERVER_ERROR busy\r\n", 0, 0, 0, 0 },
        { "gats 60 k", "VALUE k 0 1 1\r\nx\r\nEND\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;

    rv = msm_mc_get_touch(s, p, "k", 60, &item);
    CHECK_STATUS(rv, MSM_MC_EREPLY);
    CHECK(!msm_mc_node_failed(rv));
    CHECK_INT_EQ(o.no_gat, 0);
    /* still unknown: gats is tried again */
    CHECK_STATUS(msm_mc_get_touch(s, p, "k", 60, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "x");
    CHECK_INT_EQ(o.no_gat, 0);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

static void test_fake_drip(apr_pool_t *p)
{
    static const char reply[] = "VALUE k 3 5 99\r\nhello\r\nEND\r\n";
    static const fstep_t steps[] = {
        { "gets k", reply, 0, F_DRIP, 0, 0 },
        { "gets k", reply, 0, F_DRIP | F_CLOSE, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_server_t *s2 = make_server(p, f->port, MS(80), 1024, NULL);
    msm_mc_item_t item;
    apr_time_t t0;
    apr_status_t rv;

    /* 29 bytes, 5 ms apart: ~150 ms, within a 1 s deadline */
    t0 = apr_time_now();
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_SUCCESS);
    t0 = apr_time_now() - t0;
    CHECK_STR_EQ(item.value, "hello");
    CHECK_INT_EQ(item.flags, 3);
    CHECK(item.cas == 99);
    CHECK(t0 >= MS(100));
    msm_mc_server_close_idle(s);    /* the fake serves one conn at a time */
    /* the deadline is for the whole operation, not for each byte */
    t0 = apr_time_now();
    rv = msm_mc_get(s2, p, "k", &item);
    t0 = apr_time_now() - t0;
    CHECK_STATUS(rv, APR_TIMEUP);
    CHECK(item.value == NULL);
    CHECK_MSG(t0 >= MS(80) && t0 < MS(80 + 150), "took %ld us", (long)t0);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* A reply that stops in the middle of the value and closes: a failure,
 * not retried, and the next operation is fine on a new connection. */
static void test_fake_cut(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "version", "VERSION 1\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 0 10\r\nhello", 0, F_CLOSE, 0, 0 },
        { "gets k", "VALUE k 0 10\r\nhelloworld\r\nEND\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;
    char *v;

    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    rv = msm_mc_get(s, p, "k", &item);
    CHECK(msm_mc_node_failed(rv));
    CHECK(item.value == NULL);
    CHECK_INT_EQ(f->done, 2);       /* not retried */
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "helloworld");
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->conn_of[1], 1);
    CHECK_INT_EQ(f->conn_of[2], 2);
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* The reply stalls mid-value past the deadline, then the rest arrives on
 * that connection: it must never be read as the answer to a later
 * request. */
static void test_fake_stall(apr_pool_t *p)
{
    static const char stale[] = "VALUE k 0 5\r\nSTALE\r\nEND\r\n";
    static const fstep_t steps[] = {
        { "gets k", stale, 0, F_HOLD, 15, 300 },
        { "gets k", "VALUE k 0 5\r\nfresh\r\nEND\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(150), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;

    rv = msm_mc_get(s, p, "k", &item);
    CHECK_STATUS(rv, APR_TIMEUP);
    apr_sleep(MS(200));             /* the rest has been sent by now */
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "fresh");
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->conn_of[1], 2);
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* memcached -Y: credentials first on each new connection, not again on a
 * pooled one; a refusal is MSM_MC_EAUTH (a node failure) and the
 * connection is not kept; a server that wants credentials none were
 * configured for says so on the first request; a server that does not
 * answer the credentials is a timeout within the operation's deadline. */
static void test_fake_auth(apr_pool_t *p)
{
    static const fstep_t ok_steps[] = {
        { "set msm-auth 0 -1 13", "STORED\r\n", 0, 0, 0, 0 },
        { "gets k", "END\r\n", 0, 0, 0, 0 },
        { "gets k", "END\r\n", 0, 0, 0, 0 },
    };
    static const fstep_t refused_steps[] = {
        { "set msm-auth 0 -1 12",
          "CLIENT_ERROR authentication failure\r\n", 0, F_CLOSE, 0, 0 },
        { "gets k", "CLIENT_ERROR unauthenticated\r\n", 0, 0, 0, 0 },
        { "set msm-auth 0 -1 13", "STORED\r\n", 0, F_HOLD, 0, 700 },
    };
    fake_t *f = fake_start(ok_steps, NSTEPS(ok_steps));
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, NULL);
    msm_mc_item_t item;
    apr_time_t t0;

    msm_mc_server_set_auth(s, "msm", "secret-pw");
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_NOTFOUND);
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->accepts, 1);
    CHECK(strstr(f->got[0], "secret-pw") == NULL);      /* the line only */
    msm_mc_server_close_idle(s);
    fake_free(f);

    f = fake_start(refused_steps, NSTEPS(refused_steps));
    s = make_server(p, f->port, MS(300), 1024, NULL);
    msm_mc_server_set_auth(s, "msm", "wrong-pw");
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), MSM_MC_EAUTH);
    CHECK(msm_mc_node_failed(MSM_MC_EAUTH));
    CHECK(msm_mc_reason(p, MSM_MC_EAUTH) != NULL
          && strstr(msm_mc_reason(p, MSM_MC_EAUTH), "authentication") != NULL);
    s = make_server(p, f->port, MS(300), 1024, NULL);      /* none */
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), MSM_MC_EAUTH);
    s = make_server(p, f->port, MS(300), 1024, NULL);
    msm_mc_server_set_auth(s, "msm", "secret-pw");
    t0 = apr_time_now();
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_TIMEUP);
    CHECK(apr_time_now() - t0 < MS(600));
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->accepts, 3);
    fake_free(f);
}

static void test_auth_problem(void)
{
    static const struct { const char *user, *password; int ok; } cases[] = {
        { "msm", "secret", 1 },
        { "msm", "a password with spaces", 1 },
        { "", "secret", 0 },
        { "msm", "", 0 },
        { "m sm", "secret", 0 },
        { "m\tsm", "secret", 0 },
        { "msm", "sec\r\nret", 0 },
        { "msm", "sec\nret", 0 },
    };
    apr_size_t i;
    char big[300];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_MSG((msm_mc_auth_problem(cases[i].user, cases[i].password)
                   == NULL) == cases[i].ok, "case %d", (int)i);
    }
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(msm_mc_auth_problem(big, "secret") != NULL);
    CHECK(msm_mc_auth_problem("msm", big) != NULL);
    big[250] = '\0';
    CHECK(msm_mc_auth_problem(big, big) == NULL);
}

/* A pooled connection the server closed while idle: retried once. */
static void test_fake_stale_idle(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "version", "VERSION 1\r\n", 0, 0, 0, 0 },
        { "gets k", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
        { "gets k", "VALUE k 0 1\r\nz\r\nEND\r\n", 0, 0, 0, 0 },
        { "delete k", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
        { "delete k", NULL, 0, F_NOREPLY | F_CLOSE, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;
    char *v;

    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "z");
    CHECK_INT_EQ(o.ops, 2);         /* one operation, one report */
    /* closed again on the fresh connection too: a failure, one retry only */
    rv = msm_mc_delete(s, "k");
    CHECK(msm_mc_node_failed(rv));
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->accepts, 3);
    msm_mc_server_close_idle(s);
    fake_free(f);
}

static void test_fake_bad_replies(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "gets k", "VALUE other 0 5\r\nhello\r\nEND\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 0 999999999\r\n", 0, 0, 0, 0 },
        { "set k 0 0 1", "STORED\r\nSTORED\r\n", 0, 0, 0, 0 },
        { "set k 0 0 1", "CLIENT_ERROR bad data chunk\r\n", 0, 0, 0, 0 },
        { "delete k", "STORED\r\n", 0, 0, 0, 0 },
        { "touch k 5", "DELETED\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 0 11\r\nhello world\r\nEND\r\n", 0, 0, 0, 0 },
        { "gets k", "VALUE k 0 1\r\nx\nEND\r\n\r\n", 0, 0, 0, 0 },
        { "gets k", "END\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;
    apr_time_t t0;

    /* a VALUE for another key: never returned */
    rv = msm_mc_get(s, p, "k", &item);
    CHECK_STATUS(rv, MSM_MC_EPROTO);
    CHECK(msm_mc_node_failed(rv));
    CHECK(item.value == NULL);
    /* a huge value: refused from its header line, at once; too big to
     * read is not the node's failure (another client may read it) */
    t0 = apr_time_now();
    rv = msm_mc_get(s, p, "k", &item);
    t0 = apr_time_now() - t0;
    CHECK_STATUS(rv, MSM_MC_ETOOBIG);
    CHECK(!msm_mc_node_failed(rv));
    CHECK(item.value == NULL);
    CHECK_MSG(t0 < MS(200), "took %ld us", (long)t0);
    /* more than one reply: out of step */
    rv = msm_mc_store(s, MSM_MC_SET, "k", "v", 1, 0, 0, 0);
    CHECK_STATUS(rv, MSM_MC_EPROTO);
    /* CLIENT_ERROR: refused, not a node failure */
    rv = msm_mc_store(s, MSM_MC_SET, "k", "v", 1, 0, 0, 0);
    CHECK_STATUS(rv, MSM_MC_EREPLY);
    CHECK(!msm_mc_node_failed(rv));
    /* replies of the wrong kind */
    CHECK_STATUS(msm_mc_delete(s, "k"), MSM_MC_EPROTO);
    CHECK_STATUS(msm_mc_touch(s, "k", 5), MSM_MC_EPROTO);
    /* a value larger than max_value (10 here) */
    {
        msm_mc_server_t *small = make_server(p, f->port, MS(1000), 10, NULL);
        CHECK_STATUS(msm_mc_get(small, p, "k", &item), MSM_MC_ETOOBIG);
        CHECK(item.value == NULL);
        msm_mc_server_close_idle(small);
        /* a bare LF inside the framing */
        CHECK_STATUS(msm_mc_get(s, p, "k", &item), MSM_MC_EPROTO);
        msm_mc_server_close_idle(small);
    }
    CHECK_STATUS(msm_mc_get(s, p, "k", &item), APR_NOTFOUND);
    CHECK_INT_EQ(o.ops, 8);
    CHECK(fake_stop(f));
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* Good replies reuse one connection. */
static void test_fake_pooling(apr_pool_t *p)
{
    static const fstep_t steps[] = {
        { "version", "VERSION 1\r\n", 0, 0, 0, 0 },
        { "set a 5 60 3", "STORED\r\n", 0, 0, 0, 0 },
        { "add a 5 60 3", "NOT_STORED\r\n", 0, 0, 0, 0 },
        { "cas a 5 60 3 77", "EXISTS\r\n", 0, 0, 0, 0 },
        { "cas a 5 60 3 78", "NOT_FOUND\r\n", 0, 0, 0, 0 },
        { "delete a", "NOT_FOUND\r\n", 0, 0, 0, 0 },
        { "touch a 9", "NOT_FOUND\r\n", 0, 0, 0, 0 },
        { "gats 9 a", "END\r\n", 0, 0, 0, 0 },
        { "gats 9 a", "VALUE a 5 3 1\r\nabc\r\nEND\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    obs_t o;
    msm_mc_server_t *s = make_server(p, f->port, MS(1000), 1024, &o);
    msm_mc_item_t item;
    char *v;

    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, "a", "abc", 3, 5, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_ADD, "a", "abc", 3, 5, 60, 0),
                 APR_EEXIST);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, "a", "abc", 3, 5, 60, 77),
                 APR_EEXIST);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, "a", "abc", 3, 5, 60, 78),
                 APR_NOTFOUND);
    CHECK_STATUS(msm_mc_delete(s, "a"), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_touch(s, "a", 9), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get_touch(s, p, "a", 9, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get_touch(s, p, "a", 9, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "abc");
    CHECK_INT_EQ(o.no_gat, 0);
    CHECK(fake_stop(f));
    CHECK_INT_EQ(f->accepts, 1);
    /* the exact request lines */
    CHECK_STR_EQ(f->got[1], "set a 5 60 3");
    CHECK_STR_EQ(f->got[3], "cas a 5 60 3 77");
    CHECK_STR_EQ(f->got[5], "delete a");     /* no legacy time argument */
    CHECK_STR_EQ(f->got[6], "touch a 9");
    CHECK_STR_EQ(f->got[7], "gats 9 a");
    msm_mc_server_close_idle(s);
    fake_free(f);
}

/* Destroying the pool of a server with idle connections frees them all,
 * their read buffers (malloc'ed) included: httpd destroys pchild at child
 * exit without calling msm_mc_server_close_idle(). Measured with glibc's
 * mallinfo2() around a pool with an allocator of its own; under ASan,
 * LeakSanitizer reports it at exit. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33) \
    && !defined(__SANITIZE_ADDRESS__)
#define MEASURE_MALLOC 1
#endif

static void test_pool_cleanup(void)
{
    static const fstep_t steps[] = {
        { "version", "VERSION 1\r\n", 0, 0, 0, 0 },
    };
    fake_t *f = fake_start(steps, NSTEPS(steps));
    apr_allocator_t *al;
    apr_pool_t *sp;
    msm_mc_server_t *s;
    char *v;
#ifdef MEASURE_MALLOC
    struct mallinfo2 before, after;
    long leaked;
#endif

    apr_allocator_create(&al);
#ifdef MEASURE_MALLOC
    before = mallinfo2();
#endif
    apr_pool_create_ex(&sp, NULL, NULL, al);
    apr_allocator_owner_set(al, sp);
    s = make_server(sp, f->port, MS(1000), 1024, NULL);
    CHECK_STATUS(msm_mc_version(s, sp, &v), APR_SUCCESS);
    CHECK(fake_stop(f));
    apr_pool_destroy(sp);           /* the allocator goes with it */
#ifdef MEASURE_MALLOC
    after = mallinfo2();
    leaked = (long)after.uordblks - (long)before.uordblks;
    CHECK_MSG(leaked < 8192, "%ld bytes still allocated after the server's "
              "pool was destroyed (an idle connection's buffer?)", leaked);
#endif
    fake_free(f);
}

/* ---- deadlines ---- */

static void test_deadlines(apr_pool_t *p)
{
    apr_port_t port, closed;
    apr_socket_t *l = listen_local(p, &port);
    obs_t o;
    msm_mc_server_t *s = make_server(p, port, MS(200), 1024, &o);
    msm_mc_item_t item;
    apr_status_t rv;
    apr_time_t t0, took;
    int i;

    /* a server that accepts in the kernel and never answers */
    for (i = 0; i < 3; i++) {
        t0 = apr_time_now();
        rv = i == 1 ? msm_mc_store(s, MSM_MC_SET, "k", "v", 1, 0, 0, 0)
                    : msm_mc_get(s, p, "k", &item);
        took = apr_time_now() - t0;
        CHECK_STATUS(rv, APR_TIMEUP);
        CHECK(msm_mc_node_failed(rv));
        CHECK_MSG(took >= MS(200) && took <= MS(350),
                  "operation %d took %ld us (timeout 200 ms)", i, (long)took);
    }
    CHECK_INT_EQ(o.ops, 3);
    CHECK_STATUS(o.last, APR_TIMEUP);
    apr_socket_close(l);

    /* connection refused: a node failure, fast */
    closed = unit_closed_port(p);
    CHECK(closed != 0);
    s = make_server(p, closed, MS(200), 1024, &o);
    t0 = apr_time_now();
    rv = msm_mc_get(s, p, "k", &item);
    took = apr_time_now() - t0;
    CHECK(rv != APR_SUCCESS);
    CHECK(msm_mc_node_failed(rv));
    CHECK_MSG(took < MS(100), "refused after %ld us", (long)took);
    t0 = apr_time_now();
    rv = msm_mc_get_touch(s, p, "k", 5, &item);
    took = apr_time_now() - t0;
    CHECK(msm_mc_node_failed(rv));
    CHECK(took < MS(100));
    CHECK_INT_EQ(o.no_gat, 0);
    CHECK_INT_EQ(o.ops, 2);
}

/* ---- real memcached ---- */

static const char *prefix;

static const char *K(apr_pool_t *p, const char *name)
{
    return apr_pstrcat(p, prefix, name, NULL);
}

static void test_real_basic(apr_pool_t *p, int port)
{
    obs_t o;
    msm_mc_server_t *s = make_server(p, (apr_port_t)port, MS(1000),
                                     1024 * 1024, &o);
    msm_mc_item_t item, item2;
    const char *k = K(p, "basic");
    const char *k2 = K(p, "add");
    char *v = NULL;
    apr_uint64_t cas;
    static const char bin[] = "a\0b\r\nEND\r\nVALUE x 0 1\r\n\xff";

    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    CHECK(v != NULL && v[0] >= '1' && v[0] <= '9');

    msm_mc_delete(s, k);
    msm_mc_delete(s, k2);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_NOTFOUND);
    CHECK(item.value == NULL && item.len == 0);
    CHECK_STATUS(msm_mc_get_touch(s, p, k, 60, &item), APR_NOTFOUND);

    /* set / gets */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, "value1", 6, 4242, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "value1");
    CHECK_INT_EQ(item.len, 6);
    CHECK_INT_EQ(item.flags, 4242);
    CHECK(item.cas != 0);
    /* gats */
    CHECK_STATUS(msm_mc_get_touch(s, p, k, 120, &item2), APR_SUCCESS);
    CHECK_STR_EQ(item2.value, "value1");
    CHECK_INT_EQ(item2.flags, 4242);
    CHECK(item2.cas == item.cas);
    CHECK_INT_EQ(o.no_gat, 0);      /* memcached knows gats */
    /* flags: all 32 bits */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, "v", 1, 0xffffffffu, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK(item.flags == 0xffffffffu);

    /* binary data survives */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, bin, sizeof(bin) - 1, 1, 60,
                              0), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK_MEM_EQ(item.value, item.len, bin, sizeof(bin) - 1);
    CHECK(item.value[item.len] == '\0');
    /* empty value */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, "", 0, 1, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK_INT_EQ(item.len, 0);
    CHECK_STR_EQ(item.value, "");

    /* add */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_ADD, k2, "first", 5, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_ADD, k2, "second", 6, 0, 60, 0),
                 APR_EEXIST);
    CHECK_STATUS(msm_mc_get(s, p, k2, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "first");

    /* cas */
    cas = item.cas;
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k2, "changed", 7, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, k2, "stale", 5, 0, 60, cas),
                 APR_EEXIST);
    CHECK_STATUS(msm_mc_get(s, p, k2, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "changed");
    CHECK(item.cas != cas);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, k2, "current", 7, 9, 60,
                              item.cas), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k2, &item2), APR_SUCCESS);
    CHECK_STR_EQ(item2.value, "current");
    CHECK_INT_EQ(item2.flags, 9);
    CHECK(item2.cas != item.cas);
    /* the cas of a touch (gats) is the same: a refresh after a read works */
    CHECK_STATUS(msm_mc_get_touch(s, p, k2, 60, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, k2, "again", 5, 0, 60,
                              item.cas), APR_SUCCESS);

    /* delete */
    CHECK_STATUS(msm_mc_delete(s, k2), APR_SUCCESS);
    CHECK_STATUS(msm_mc_delete(s, k2), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get(s, p, k2, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_CAS, k2, "x", 1, 0, 60, 1),
                 APR_NOTFOUND);

    /* touch */
    CHECK_STATUS(msm_mc_touch(s, k, 60), APR_SUCCESS);
    CHECK_STATUS(msm_mc_touch(s, k2, 60), APR_NOTFOUND);
    CHECK_INT_EQ(o.no_gat, 0);
    msm_mc_delete(s, k);
    msm_mc_server_close_idle(s);
}

/* compare-and-delete on a real memcached (>= 1.6) */
static void test_real_delete_cas(apr_pool_t *p, int port)
{
    obs_t o;
    msm_mc_server_t *s = make_server(p, (apr_port_t)port, MS(1000), 1024, &o);
    const char *k = K(p, "mdcas");
    msm_mc_item_t item;

    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, "v1", 2, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    /* another cas: left alone */
    CHECK_STATUS(msm_mc_delete_cas(s, k, item.cas + 1), APR_EEXIST);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    /* changed since it was read: left alone */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, "v2", 2, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_delete_cas(s, k, item.cas), APR_EEXIST);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK_STR_EQ(item.value, "v2");
    /* as read: deleted */
    CHECK_STATUS(msm_mc_delete_cas(s, k, item.cas), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_delete_cas(s, k, 1), APR_NOTFOUND);
    CHECK_INT_EQ(o.no_meta, 0);
    msm_mc_server_close_idle(s);
}

static void test_real_sizes_and_keys(apr_pool_t *p, int port)
{
    apr_size_t big = 500 * 1024, i;
    char *v = malloc(big), *kk;
    obs_t o;
    msm_mc_server_t *s = make_server(p, (apr_port_t)port, MS(1000),
                                     600 * 1024, &o);
    msm_mc_server_t *huge = make_server(p, (apr_port_t)port, MS(1000),
                                        4 * 1024 * 1024, NULL);
    msm_mc_server_t *small = make_server(p, (apr_port_t)port, MS(1000),
                                         1000, NULL);
    msm_mc_item_t item;
    const char *k = K(p, "big");
    apr_uint32_t ops;
    apr_status_t rv;
    static const char *const bad_keys[] = {
        "a b", "a\tb", "a\rb", "a\nb", "a\x7f", "", " ", "a\x01"
    };

    for (i = 0; i < big; i++) {
        v[i] = (char)('A' + (i * 7 + i / 1000) % 60);
    }
    /* 500 KB round trip, twice (the buffer grows and shrinks) */
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, k, v, big, 1, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, k, &item), APR_SUCCESS);
    CHECK_MEM_EQ(item.value, item.len, v, big);
    CHECK_STATUS(msm_mc_get_touch(s, p, k, 60, &item), APR_SUCCESS);
    CHECK_MEM_EQ(item.value, item.len, v, big);
    CHECK_STATUS(msm_mc_version(s, p, &kk), APR_SUCCESS);
    /* a client with a smaller max_value refuses to read it, and the node
     * is not at fault; its next operation works on a new connection */
    rv = msm_mc_get(small, p, k, &item);
    CHECK_STATUS(rv, MSM_MC_ETOOBIG);
    CHECK(!msm_mc_node_failed(rv));
    CHECK(item.value == NULL);
    CHECK_STATUS(msm_mc_version(small, p, &kk), APR_SUCCESS);

    /* over max_value: refused without sending */
    ops = o.ops;
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, K(p, "toobig"), v,
                              600 * 1024 + 1, 0, 60, 0), MSM_MC_ETOOBIG);
    CHECK(!msm_mc_node_failed(MSM_MC_ETOOBIG));
    CHECK_INT_EQ(o.ops, ops);
    CHECK_STATUS(msm_mc_get(s, p, K(p, "toobig"), &item), APR_NOTFOUND);
    /* exactly max_value is sent */
    {
        char *m = malloc(600 * 1024);
        memset(m, 'm', 600 * 1024);
        CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, K(p, "max"), m, 600 * 1024,
                                  0, 60, 0), APR_SUCCESS);
        CHECK_STATUS(msm_mc_get(s, p, K(p, "max"), &item), APR_SUCCESS);
        CHECK_INT_EQ(item.len, 600 * 1024);
        msm_mc_delete(s, K(p, "max"));
        free(m);
    }
    /* larger than memcached takes (1 MB items): it refuses, alive */
    {
        apr_size_t n = 2 * 1024 * 1024;
        char *m = malloc(n);
        memset(m, 'h', n);
        rv = msm_mc_store(huge, MSM_MC_SET, K(p, "huge"), m, n, 0, 60, 0);
        CHECK_STATUS(rv, MSM_MC_EREPLY);
        CHECK(!msm_mc_node_failed(rv));
        CHECK_STATUS(msm_mc_get(huge, p, k, &item), APR_SUCCESS);
        CHECK_INT_EQ(item.len, big);
        free(m);
    }

    /* keys memcached cannot take: refused, nothing sent */
    ops = o.ops;
    for (i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        const char *bk = bad_keys[i];
        CHECK_STATUS(msm_mc_get(s, p, bk, &item), APR_EINVAL);
        CHECK_STATUS(msm_mc_get_touch(s, p, bk, 5, &item), APR_EINVAL);
        CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, bk, "v", 1, 0, 0, 0),
                     APR_EINVAL);
        CHECK_STATUS(msm_mc_delete(s, bk), APR_EINVAL);
        CHECK_STATUS(msm_mc_touch(s, bk, 5), APR_EINVAL);
    }
    kk = malloc(252);
    memset(kk, 'k', 251);
    kk[251] = '\0';
    CHECK_STATUS(msm_mc_get(s, p, kk, &item), APR_EINVAL);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, kk, "v", 1, 0, 0, 0),
                 APR_EINVAL);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_ADD, kk, "v", 1, 0, 0, 0),
                 APR_EINVAL);
    CHECK_STATUS(msm_mc_delete(s, kk), APR_EINVAL);
    CHECK_STATUS(msm_mc_touch(s, kk, 1), APR_EINVAL);
    CHECK_STATUS(msm_mc_get_touch(s, p, kk, 1, &item), APR_EINVAL);
    CHECK(!msm_mc_node_failed(APR_EINVAL));
    CHECK_INT_EQ(o.ops, ops);
    /* 250 is fine */
    kk[250] = '\0';
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, kk, "v", 1, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, kk, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_delete(s, kk), APR_SUCCESS);
    free(kk);
    msm_mc_delete(s, k);
    free(v);
    msm_mc_server_close_idle(s);
    msm_mc_server_close_idle(huge);
    msm_mc_server_close_idle(small);
}

/* exptime: gats and touch slide it, a plain get does not. */
static void test_real_expiry(apr_pool_t *p, int port)
{
    msm_mc_server_t *s = make_server(p, (apr_port_t)port, MS(1000), 4096,
                                     NULL);
    msm_mc_item_t item;
    const char *a = K(p, "exp-gats"), *b = K(p, "exp-none");
    const char *c = K(p, "exp-touch"), *d = K(p, "exp-get");

    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, a, "a", 1, 0, 1, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, b, "b", 1, 0, 1, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, c, "c", 1, 0, 1, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_store(s, MSM_MC_SET, d, "d", 1, 0, 1, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get_touch(s, p, a, 60, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_touch(s, c, 60), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, d, &item), APR_SUCCESS);
    apr_sleep(MS(2100));
    CHECK_STATUS(msm_mc_get(s, p, a, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, b, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get(s, p, c, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(s, p, d, &item), APR_NOTFOUND);
    msm_mc_delete(s, a);
    msm_mc_delete(s, c);
    msm_mc_server_close_idle(s);
}

/* One server object shared by threads: every answer to its own request. */
typedef struct {
    msm_mc_server_t *s;
    int n;
    volatile apr_uint32_t *bad;
} worker_t;

static void *APR_THREAD_FUNC worker(apr_thread_t *th, void *arg)
{
    worker_t *w = arg;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < 100; i++) {
        char *key = apr_psprintf(p, "%sthr%d-%d", prefix, w->n, i % 5);
        char *val = apr_psprintf(p, "value-%d-%d", w->n, i);
        msm_mc_item_t item;

        if (msm_mc_store(w->s, MSM_MC_SET, key, val, strlen(val), 0, 60, 0)
                != APR_SUCCESS
            || msm_mc_get(w->s, p, key, &item) != APR_SUCCESS
            || strcmp(item.value, val) != 0) {
            apr_atomic_inc32(w->bad);
        }
        if (i % 20 == 19) {
            apr_pool_clear(p);
        }
    }
    apr_pool_destroy(p);
    (void)th;   /* return, not apr_thread_exit(): ASan trips on pthread_exit */
    return NULL;
}

static void test_real_threads(apr_pool_t *p, int port)
{
    obs_t o;
    msm_mc_server_t *s = make_server(p, (apr_port_t)port, MS(2000), 4096,
                                     &o);
    volatile apr_uint32_t bad = 0;
    worker_t w[8];
    apr_thread_t *th[8];
    int i;

    for (i = 0; i < 8; i++) {
        w[i].s = s;
        w[i].n = i;
        w[i].bad = &bad;
        apr_thread_create(&th[i], NULL, worker, &w[i], p);
    }
    for (i = 0; i < 8; i++) {
        apr_status_t trv;
        apr_thread_join(&trv, th[i]);
    }
    CHECK_INT_EQ(bad, 0);
    CHECK_INT_EQ(o.ops, 8 * 100 * 2);
    msm_mc_server_close_idle(s);
}

/* Two servers are two stores. */
static void test_real_two(apr_pool_t *p, int port1, int port2)
{
    msm_mc_server_t *a = make_server(p, (apr_port_t)port1, MS(1000), 4096,
                                     NULL);
    msm_mc_server_t *b = make_server(p, (apr_port_t)port2, MS(1000), 4096,
                                     NULL);
    msm_mc_item_t item;
    const char *k = K(p, "two");

    msm_mc_delete(a, k);
    msm_mc_delete(b, k);
    CHECK_STATUS(msm_mc_store(a, MSM_MC_SET, k, "on-a", 4, 0, 60, 0),
                 APR_SUCCESS);
    CHECK_STATUS(msm_mc_get(b, p, k, &item), APR_NOTFOUND);
    CHECK_STATUS(msm_mc_get(a, p, k, &item), APR_SUCCESS);
    CHECK_STATUS(msm_mc_delete(a, k), APR_SUCCESS);
    msm_mc_server_close_idle(a);
    msm_mc_server_close_idle(b);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_client");
    int ports[2], nports = unit_mc_ports(ports, 2);

    signal(SIGPIPE, SIG_IGN);
    root = p;
    prefix = apr_psprintf(p, "utc%ld:", (long)getpid());

    test_fake_gats_error(p);
    test_fake_gats_closed(p);
    test_fake_meta_unknown(p);
    test_fake_meta_gone(p);
    test_fake_all_errors(p);
    test_fake_touch_fails(p);
    test_fake_drip(p);
    test_fake_cut(p);
    test_fake_stall(p);
    test_fake_stale_idle(p);
    test_fake_auth(p);
    test_auth_problem();
    test_fake_bad_replies(p);
    test_fake_pooling(p);
    test_deadlines(p);
    test_pool_cleanup();
    if (nports < 1) {
        return unit_done_skipping("the real memcached tests");
    }
    test_real_basic(p, ports[0]);
    test_real_sizes_and_keys(p, ports[0]);
    test_real_delete_cas(p, ports[0]);
    test_real_expiry(p, ports[0]);
    test_real_threads(p, ports[0]);
    if (nports >= 2) {
        test_real_two(p, ports[0], ports[1]);
    }
    return unit_done();
}
