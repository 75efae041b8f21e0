/* A tiny header-only unit test harness for the httpd-free core.
 *
 *   CHECK(cond)                 any condition
 *   CHECK_OK(cond)              the same, and yields 1 if it held
 *   CHECK_MSG(cond, fmt, ...)   with a message printed on failure
 *   CHECK_INT_EQ(a, b)          integers (compared as long long)
 *   CHECK_STR_EQ(a, b)          NUL-terminated strings (NULL allowed)
 *   CHECK_MEM_EQ(a, alen, b, blen)  byte ranges
 *   CHECK_STATUS(rv, expected)  apr_status_t values, printed with their text
 *
 * Each failure prints file:line and the values. unit_done() prints
 * "<name>: N checks, M failed" and returns the exit status of the test
 * (0: all passed, 1: any failure). UNIT_SKIP (77) is automake's "skipped".
 */
#ifndef MSM_UNIT_H
#define MSM_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_errno.h>
#include <apr_atomic.h>
#include <apr_pools.h>
#include <apr_network_io.h>

#define UNIT_SKIP 77

static int unit_checks;
static int unit_failed;
static const char *unit_name = "test";

static inline int unit_report(int ok, const char *file, int line,
                              const char *expr)
{
    unit_checks++;
    if (!ok) {
        unit_failed++;
        fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, expr);
    }
    return ok;
}

#define CHECK(cond) \
    ((void)unit_report((cond) ? 1 : 0, __FILE__, __LINE__, #cond))

/* CHECK that also yields the outcome: if (!CHECK_OK(x)) return; */
#define CHECK_OK(cond) \
    unit_report((cond) ? 1 : 0, __FILE__, __LINE__, #cond)

#define CHECK_MSG(cond, ...) \
    do { \
        if (!unit_report((cond) ? 1 : 0, __FILE__, __LINE__, #cond)) { \
            fprintf(stderr, "    "); \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n"); \
        } \
    } while (0)

#define CHECK_INT_EQ(a, b) \
    do { \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b); \
        if (!unit_report(unit_a_ == unit_b_, __FILE__, __LINE__, \
                         #a " == " #b)) { \
            fprintf(stderr, "    got %lld, expected %lld\n", unit_a_, \
                    unit_b_); \
        } \
    } while (0)

#define CHECK_STR_EQ(a, b) \
    do { \
        const char *unit_a_ = (a), *unit_b_ = (b); \
        int unit_ok_ = (unit_a_ == NULL || unit_b_ == NULL) \
            ? unit_a_ == unit_b_ : strcmp(unit_a_, unit_b_) == 0; \
        if (!unit_report(unit_ok_, __FILE__, __LINE__, #a " eq " #b)) { \
            fprintf(stderr, "    got \"%s\", expected \"%s\"\n", \
                    unit_a_ ? unit_a_ : "(null)", \
                    unit_b_ ? unit_b_ : "(null)"); \
        } \
    } while (0)

#define CHECK_MEM_EQ(a, alen, b, blen) \
    do { \
        const void *unit_a_ = (a), *unit_b_ = (b); \
        size_t unit_al_ = (size_t)(alen), unit_bl_ = (size_t)(blen); \
        int unit_ok_ = unit_al_ == unit_bl_ && unit_a_ && unit_b_ \
            && memcmp(unit_a_, unit_b_, unit_al_) == 0; \
        if (!unit_report(unit_ok_, __FILE__, __LINE__, #a " eq " #b)) { \
            fprintf(stderr, "    lengths %lu and %lu\n", \
                    (unsigned long)unit_al_, (unsigned long)unit_bl_); \
        } \
    } while (0)

static inline const char *unit_status_text(apr_status_t rv, char *buf,
                                           size_t len)
{
    switch (rv - APR_OS_START_USERERR) {
    case 701: return "MSM_MC_EREPLY";
    case 702: return "MSM_MC_ETOOBIG";
    case 703: return "MSM_MC_EPROTO";
    }
    apr_strerror(rv, buf, (apr_size_t)len);
    return buf;
}

#define CHECK_STATUS(rv, expected) \
    do { \
        apr_status_t unit_r_ = (rv), unit_e_ = (expected); \
        if (!unit_report(unit_r_ == unit_e_, __FILE__, __LINE__, \
                         #rv " is " #expected)) { \
            char unit_b1_[128], unit_b2_[128]; \
            fprintf(stderr, "    got %d (%s), expected %d (%s)\n", \
                    (int)unit_r_, \
                    unit_status_text(unit_r_, unit_b1_, sizeof(unit_b1_)), \
                    (int)unit_e_, \
                    unit_status_text(unit_e_, unit_b2_, sizeof(unit_b2_))); \
        } \
    } while (0)

/* apr_initialize, apr_atomic_init and a root pool. */
static inline apr_pool_t *unit_init(const char *name)
{
    apr_pool_t *p = NULL;

    unit_name = name;
    if (apr_initialize() != APR_SUCCESS) {
        fprintf(stderr, "%s: apr_initialize failed\n", name);
        exit(2);
    }
    atexit(apr_terminate);
    if (apr_pool_create(&p, NULL) != APR_SUCCESS
        || apr_atomic_init(p) != APR_SUCCESS) {
        fprintf(stderr, "%s: no pool\n", name);
        exit(2);
    }
    return p;
}

/* Ports of the memcached servers in MSM_TEST_MEMCACHED ("p1,p2"); how
 * many were found (0 when unset). */
static inline int unit_mc_ports(int *ports, int max)
{
    const char *env = getenv("MSM_TEST_MEMCACHED");
    int n = 0;

    while (env && *env && n < max) {
        char *end;
        long v = strtol(env, &end, 10);
        if (end == env || v < 1 || v > 65535) {
            break;
        }
        ports[n++] = (int)v;
        env = *end == ',' ? end + 1 : end;
        if (*end != ',') {
            break;
        }
    }
    return n;
}

/* A 127.0.0.1 port nothing listens on: bound, then closed. */
static inline apr_port_t unit_closed_port(apr_pool_t *p)
{
    apr_sockaddr_t *sa = NULL, *local = NULL;
    apr_socket_t *s = NULL;
    apr_port_t port = 0;

    if (apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, 0, 0, p)
            == APR_SUCCESS
        && apr_socket_create(&s, APR_INET, SOCK_STREAM, APR_PROTO_TCP, p)
            == APR_SUCCESS
        && apr_socket_bind(s, sa) == APR_SUCCESS
        && apr_socket_addr_get(&local, APR_LOCAL, s) == APR_SUCCESS) {
        port = local->port;
    }
    if (s) {
        apr_socket_close(s);
    }
    return port;
}

static inline int unit_done(void)
{
    printf("%s: %d checks, %d failed\n", unit_name, unit_checks, unit_failed);
    fflush(stdout);
    return unit_failed ? 1 : 0;
}

/* unit_done() for a test whose remaining part cannot run here (no memcached):
 * its checks so far count, and it exits "skipped" unless one failed. */
static inline int unit_done_skipping(const char *what)
{
    int rc = unit_done();

    printf("%s: MSM_TEST_MEMCACHED unset: %s skipped\n", unit_name, what);
    return rc ? rc : UNIT_SKIP;
}

#endif
