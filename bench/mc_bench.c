/* What one memcached round trip costs through mod_msm's client
 * (src/msm_mc.c), over TCP loopback, over a Unix socket, over TLS and with
 * encryption at rest: wall time and CPU (this process plus the memcached it
 * talks to) per operation.
 *
 *   make mc_bench
 *   ./mc_bench -a t:127.0.0.1:11211 -a u:unix:/tmp/mc.sock [-n 20000] [-r 5]
 *              [-a tls:s:127.0.0.1:11212 -c ca.pem] [-a enc:e:127.0.0.1:11211 -k keys]
 *       -a  a node as MsmNodes writes it (repeatable; the runs alternate
 *           between them); "tls:" before it: MsmTLS On (one pooled
 *           connection: its handshake happens before the timed gets),
 *           verified against -c; "enc:" before it: the value is sealed as
 *           MsmEncryptKeyFile -k seals it and every get opens it
 *       -p  memcached's pid for each -a, in the same order (its CPU is
 *           read from /proc/<pid>/stat; without it only this process's)
 *       -n  gets per run, -r runs per address, -l value bytes (1000)
 *
 * Each run: one connection, n gets of one key (the size of a session
 * copy), one after another, as a prefork child does. Prints each run and
 * the median per address. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_network_io.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "msm_crypt.h"
#include "msm_mc.h"
#include "msm_nodes.h"
#include "msm_tls.h"

#define MAX_ADDRS 4
#define MAX_RUNS 64

typedef struct target {
    const char *spec;
    const char *node;           /* spec without "tls:" / "enc:" */
    int tls, enc;
    long pid;
    apr_sockaddr_t *addr;
    double wall_us[MAX_RUNS], cpu_us[MAX_RUNS];
} target_t;

static double self_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* utime + stime of pid, in µs (0 without a pid) */
static double proc_cpu_us(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;

    if (pid <= 0) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL
        || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                  &ut, &st) != 2) {
        return 0;
    }
    return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* The node's address, through MsmNodes' own parser; NULL and a message on
 * stderr if it is not one. */
static const char *resolve(apr_pool_t *p, target_t *t)
{
    char *const words[] = { (char *)t->node };
    msm_nodes_t *nodes;
    const char *err = msm_nodes_parse(p, 1, words, &nodes);

    if (err == NULL) {
        err = msm_nodes_resolve(nodes, p);
    }
    if (err == NULL) {
        t->addr = nodes->node[0].addr;
    }
    return err;
}

static msm_tls_ctx_t *tls_ctx;     /* -c */
static msm_crypt_t *crypt_keys;     /* -k */

/* A get as mod_msm does it: with "enc:", the value opened. */
static int get_one(msm_mc_server_t *s, apr_pool_t *op, const target_t *t,
                   apr_size_t len)
{
    msm_mc_item_t item;
    char *plain;
    apr_size_t plen;
    apr_uint32_t id;

    if (msm_mc_get(s, op, "mc_bench", &item) != APR_SUCCESS) {
        return 0;
    }
    if (!t->enc) {
        return item.len == len;
    }
    return msm_crypt_open(crypt_keys, op, "mc_bench", item.value, item.len,
                          &plain, &plen, &id) == APR_SUCCESS && plen == len;
}

static int one_run(apr_pool_t *parent, target_t *t, int run, int n,
                   apr_size_t len)
{
    apr_pool_t *p;
    msm_mc_server_t *s;
    char *value = malloc(len), *stored = value;
    apr_size_t slen = len;
    double w0, c0, m0;
    int i, ok = 1;

    apr_pool_create(&p, parent);
    memset(value, 'v', len);
    if (t->enc && msm_crypt_seal(crypt_keys, p, "mc_bench", value, len,
                                 &stored, &slen) != APR_SUCCESS) {
        ok = 0;
    }
    if (!ok || msm_mc_server_create(p, t->addr, apr_time_from_sec(2), 1 << 20,
                                    1, NULL, &s) != APR_SUCCESS) {
        fprintf(stderr, "%s: no server\n", t->spec);
        ok = 0;
    }
    if (ok && t->tls) {
        msm_mc_server_set_tls(s, tls_ctx, "127.0.0.1");
    }
    if (ok && msm_mc_store(s, MSM_MC_SET, "mc_bench", stored, slen, 0, 60, 0)
              != APR_SUCCESS) {
        fprintf(stderr, "%s: cannot store\n", t->spec);
        ok = 0;
    }
    w0 = (double)apr_time_now();
    c0 = self_cpu_us();
    m0 = proc_cpu_us(t->pid);
    for (i = 0; ok && i < n; i++) {
        apr_pool_t *op;
        apr_pool_create(&op, p);
        ok = get_one(s, op, t, len);
        apr_pool_destroy(op);
    }
    t->wall_us[run] = ((double)apr_time_now() - w0) / n;
    t->cpu_us[run] = (self_cpu_us() - c0 + proc_cpu_us(t->pid) - m0) / n;
    apr_pool_destroy(p);
    free(value);
    if (!ok) {
        fprintf(stderr, "%s: a get failed\n", t->spec);
    }
    return ok;
}

/* "tls:" and "enc:" of each -a; the TLS context and the keys they need. */
static int setup_options(apr_pool_t *p, target_t *t, int nt, const char *ca,
                         const char *keyfile)
{
    msm_tls_files_t files = { ca, NULL, NULL };
    const char *err = NULL;
    int i, tls = 0, enc = 0;

    for (i = 0; i < nt; i++) {
        t[i].node = t[i].spec;
        if (strncmp(t[i].node, "tls:", 4) == 0) {
            t[i].tls = tls = 1;
            t[i].node += 4;
        }
        else if (strncmp(t[i].node, "enc:", 4) == 0) {
            t[i].enc = enc = 1;
            t[i].node += 4;
        }
    }
    if (tls) {
        err = msm_tls_ctx_make(p, &files, &tls_ctx);
    }
    if (err == NULL && enc) {
        char buf[16384];
        FILE *f = keyfile ? fopen(keyfile, "r") : NULL;
        size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
        if (f) {
            fclose(f);
        }
        err = f ? msm_crypt_parse_keys(p, buf, n, &crypt_keys)
                : "enc: needs -k keyfile";
    }
    if (err) {
        fprintf(stderr, "mc_bench: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_RUNS];

    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    target_t t[MAX_ADDRS];
    int nt = 0, np = 0, n = 20000, runs = 5, i, r, c;
    apr_size_t len = 1000;
    apr_pool_t *pool;

    memset(t, 0, sizeof(t));
    const char *ca = NULL, *keyfile = NULL;

    while ((c = getopt(argc, argv, "a:p:n:r:l:c:k:")) != -1) {
        switch (c) {
        case 'a': if (nt < MAX_ADDRS) t[nt++].spec = optarg; break;
        case 'p': if (np < MAX_ADDRS) t[np++].pid = atol(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 'l': len = (apr_size_t)atol(optarg); break;
        case 'c': ca = optarg; break;
        case 'k': keyfile = optarg; break;
        default: return 2;
        }
    }
    if (nt == 0 || n < 1 || runs < 1 || runs > MAX_RUNS || len < 1) {
        fprintf(stderr, "usage: %s -a [tls:|enc:]addr [-a addr] [-p pid ...] "
                "[-n N] [-r runs] [-l bytes] [-c ca.pem] [-k keyfile]\n",
                argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (setup_options(pool, t, nt, ca, keyfile) != 0) {
        return 1;
    }
    for (i = 0; i < nt; i++) {
        const char *err = resolve(pool, &t[i]);
        if (err) {
            fprintf(stderr, "%s: %s\n", t[i].spec, err);
            return 1;
        }
    }
    printf("%d gets of %lu bytes per run, runs alternating\n", n,
           (unsigned long)len);
    for (r = 0; r < runs; r++) {
        for (i = 0; i < nt; i++) {
            if (!one_run(pool, &t[i], r, n, len)) {
                return 1;
            }
            printf("run %d %-40s %7.2f us wall %7.2f us cpu per get\n", r + 1,
                   t[i].spec, t[i].wall_us[r], t[i].cpu_us[r]);
        }
    }
    for (i = 0; i < nt; i++) {
        printf("median %-37s %7.2f us wall %7.2f us cpu per get%s\n",
               t[i].spec, median(t[i].wall_us, runs),
               median(t[i].cpu_us, runs),
               t[i].pid ? " (client + memcached)" : " (client)");
    }
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
