/* Read hits per second of the sticky tier (src/msm_tier.c), from processes
 * and threads sharing one table, as httpd children do.
 *
 *   make tier_bench && ./tier_bench                 the standard runs
 *   ./tier_bench -p 16 -t 1 -s 5 [-w 10] [-m] [-k 10000] [-l 600]
 *       -p processes, -t threads each, -s seconds, -w percent of puts,
 *       -m every get under one apr_global_mutex (the tier before this
 *          table, mod_socache_shmcb, took one around each access),
 *       -k sessions, -l payload bytes
 *
 * The table has the default sizes (MSM_TIER_DEFAULT_BYTES, _SLOT_BYTES).
 * The get loop makes no system call: `strace -c -f ./tier_bench -p 16 -s 2`
 * shows only the set-up, whatever the number of gets. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "msm_tier.h"

#define MAX_WORKERS 256

typedef struct options {
    int procs, threads, seconds, keys, len, put_pct, mutex;
} options_t;

typedef struct shared {
    volatile apr_uint32_t stop;
    struct {
        apr_uint64_t gets, hits, puts;
        char pad[64 - 24];
    } w[MAX_WORKERS];
} shared_t;

typedef struct worker {
    const options_t *o;
    msm_tier_t *t;
    shared_t *sh;
    apr_global_mutex_t *mutex;
    int index;
} worker_t;

static msm_tier_key_t key_of(int n)
{
    msm_tier_key_t k;
    apr_uint64_t x = (apr_uint64_t)n * APR_UINT64_C(0x9e3779b97f4a7c15) + 1;
    unsigned int i;

    k.scope = 42;
    for (i = 0; i < sizeof(k.id); i++) {
        x ^= x >> 29;
        x *= APR_UINT64_C(0xbf58476d1ce4e5b9);
        k.id[i] = (unsigned char)(x >> 56);
    }
    return k;
}

static msm_copy_meta_t meta_of(apr_uint64_t version)
{
    msm_copy_meta_t m;

    memset(&m, 0, sizeof(m));
    m.kind = MSM_COPY_SESSION;
    m.version = version;
    m.written = (apr_time_t)version;
    apr_cpystrn(m.primary, "n1", sizeof(m.primary));
    return m;
}

static void *APR_THREAD_FUNC run_worker(apr_thread_t *th, void *arg)
{
    worker_t *w = arg;
    const options_t *o = w->o;
    apr_size_t bufsize = msm_tier_payload_max(w->t) + 1;
    char *buf = malloc(bufsize), *payload = malloc((apr_size_t)o->len + 1);
    apr_uint64_t rnd = 88172645463325252ULL ^ ((apr_uint64_t)w->index << 32);
    apr_uint64_t gets = 0, hits = 0, puts = 0, version = 1000;
    apr_time_t now = apr_time_now();    /* as a request's request_time */
    msm_tier_entry_t e;

    memset(payload, 'v', (apr_size_t)o->len);
    while (!__atomic_load_n(&w->sh->stop, __ATOMIC_RELAXED)) {
        msm_tier_key_t k;
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        k = key_of((int)(rnd % (apr_uint64_t)o->keys));
        if (o->put_pct && (int)((rnd >> 40) % 100) < o->put_pct) {
            msm_copy_meta_t m = meta_of(++version * MAX_WORKERS + w->index);
            msm_tier_put(w->t, &k, &m, now, payload, (apr_size_t)o->len);
            puts++;
            continue;
        }
        if (w->mutex) {
            apr_global_mutex_lock(w->mutex);
        }
        hits += msm_tier_get(w->t, &k, now, &e, buf, bufsize) == MSM_TIER_HIT;
        if (w->mutex) {
            apr_global_mutex_unlock(w->mutex);
        }
        gets++;
    }
    w->sh->w[w->index].gets = gets;
    w->sh->w[w->index].hits = hits;
    w->sh->w[w->index].puts = puts;
    free(buf);
    free(payload);
    return NULL;
}

static void run_process(worker_t *proto, int first, apr_pool_t *p)
{
    apr_thread_t *th[MAX_WORKERS];
    worker_t w[MAX_WORKERS];
    apr_status_t rv;
    int i, n = proto->o->threads;

    if (proto->mutex) {
        apr_global_mutex_child_init(&proto->mutex,
                                    apr_global_mutex_lockfile(proto->mutex),
                                    p);
    }
    for (i = 0; i < n; i++) {
        w[i] = *proto;
        w[i].index = first + i;
    }
    if (n == 1) {
        run_worker(NULL, &w[0]);
        return;
    }
    for (i = 0; i < n; i++) {
        apr_thread_create(&th[i], NULL, run_worker, &w[i], p);
    }
    for (i = 0; i < n; i++) {
        apr_thread_join(&rv, th[i]);
    }
}

static void fill(msm_tier_t *t, const options_t *o)
{
    char *payload = malloc((apr_size_t)o->len + 1);
    msm_copy_meta_t m = meta_of(1);
    int i;

    memset(payload, 'v', (apr_size_t)o->len);
    for (i = 0; i < o->keys; i++) {
        msm_tier_key_t k = key_of(i);
        msm_tier_put(t, &k, &m, apr_time_now(), payload, (apr_size_t)o->len);
    }
    free(payload);
}

/* CPU seconds of the reaped children: the machine may be shared, so
 * throughput per CPU second tells the cost of a get better than per
 * second of wall time. */
static double children_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void run(const options_t *o, apr_pool_t *p)
{
    apr_size_t bytes = (apr_size_t)MSM_TIER_DEFAULT_BYTES;
    apr_shm_t *tshm, *sshm;
    worker_t proto;
    pid_t pids[MAX_WORKERS];
    apr_uint64_t gets = 0, hits = 0, puts = 0;
    int i, workers = o->procs * o->threads;
    double cpu;

    memset(&proto, 0, sizeof(proto));
    if (apr_shm_create(&tshm, bytes, NULL, p) != APR_SUCCESS
        || apr_shm_create(&sshm, sizeof(shared_t), NULL, p) != APR_SUCCESS) {
        fprintf(stderr, "no shared memory\n");
        exit(2);
    }
    proto.o = o;
    proto.t = msm_tier_format(apr_shm_baseaddr_get(tshm), bytes,
                              MSM_TIER_DEFAULT_SLOT_BYTES);
    proto.sh = apr_shm_baseaddr_get(sshm);
    memset(proto.sh, 0, sizeof(shared_t));
    if (o->mutex && apr_global_mutex_create(&proto.mutex, NULL,
                                            APR_LOCK_DEFAULT, p)
                    != APR_SUCCESS) {
        fprintf(stderr, "no mutex\n");
        exit(2);
    }
    fill(proto.t, o);
    fflush(stdout);
    cpu = children_cpu();
    for (i = 0; i < o->procs; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            run_process(&proto, i * o->threads, p);
            _exit(0);
        }
    }
    apr_sleep(apr_time_from_sec(o->seconds));
    __atomic_store_n(&proto.sh->stop, 1, __ATOMIC_RELAXED);
    for (i = 0; i < o->procs; i++) {
        waitpid(pids[i], NULL, 0);
    }
    cpu = children_cpu() - cpu;
    for (i = 0; i < workers; i++) {
        gets += proto.sh->w[i].gets;
        hits += proto.sh->w[i].hits;
        puts += proto.sh->w[i].puts;
    }
    printf("%3d procs x %2d threads%s%s: %11.0f gets/s (%.0f per worker), "
           "hits %.2f%%", o->procs, o->threads,
           o->mutex ? ", one global mutex" : "",
           o->put_pct ? ", with puts" : "", (double)gets / o->seconds,
           (double)gets / o->seconds / workers,
           gets ? 100.0 * (double)hits / (double)gets : 0.0);
    if (puts) {
        printf(", %.0f puts/s (%d%%)", (double)puts / o->seconds, o->put_pct);
    }
    printf("; %.2f CPU s, %.0f ns of CPU per operation\n", cpu,
           cpu * 1e9 / (double)(gets + puts ? gets + puts : 1));
    if (proto.mutex) {
        apr_global_mutex_destroy(proto.mutex);
    }
    apr_shm_destroy(tshm);
    apr_shm_destroy(sshm);
}

static void print_memory(void)
{
    apr_size_t bytes = (apr_size_t)MSM_TIER_DEFAULT_BYTES;
    apr_uint32_t slots = msm_tier_slots(bytes, MSM_TIER_DEFAULT_SLOT_BYTES);
    apr_size_t small = msm_tier_bytes(8, MSM_TIER_DEFAULT_SLOT_BYTES);
    void *mem = malloc(small);
    msm_tier_t *t = msm_tier_format(mem, small, MSM_TIER_DEFAULT_SLOT_BYTES);

    printf("table: %lu bytes, %lu slots of %d bytes (payload up to %lu), "
           "%.1f bytes of memory per slot\n", (unsigned long)bytes,
           (unsigned long)slots, MSM_TIER_DEFAULT_SLOT_BYTES,
           (unsigned long)msm_tier_payload_max(t),
           (double)msm_tier_bytes(slots, MSM_TIER_DEFAULT_SLOT_BYTES) / slots);
    free(mem);
}

int main(int argc, char **argv)
{
    options_t o = { 1, 1, 2, 10000, 600, 0, 0 };
    apr_pool_t *p;
    int c, custom = 0;

    while ((c = getopt(argc, argv, "p:t:s:w:k:l:m")) != -1) {
        custom = 1;
        switch (c) {
        case 'p': o.procs = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 's': o.seconds = atoi(optarg); break;
        case 'w': o.put_pct = atoi(optarg); break;
        case 'k': o.keys = atoi(optarg); break;
        case 'l': o.len = atoi(optarg); break;
        case 'm': o.mutex = 1; break;
        default:
            fprintf(stderr, "usage: %s [-p procs] [-t threads] [-s seconds] "
                    "[-w put%%] [-k keys] [-l bytes] [-m]\n", argv[0]);
            return 2;
        }
    }
    if (o.procs < 1 || o.threads < 1 || o.procs * o.threads > MAX_WORKERS
        || o.seconds < 1 || o.keys < 1 || o.len < 0 || o.put_pct < 0
        || o.put_pct > 100) {
        fprintf(stderr, "bad options\n");
        return 2;
    }
    apr_initialize();
    apr_pool_create(&p, NULL);
    printf("%ld CPUs; %d sessions of %d bytes; mutex: %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), o.keys, o.len,
           apr_proc_mutex_defname());
    print_memory();
    if (custom) {
        run(&o, p);
    }
    else {
        static const int runs[][4] = {  /* procs, threads, put %, mutex */
            { 1, 1, 0, 0 }, { 16, 1, 0, 0 }, { 1, 16, 0, 0 }, { 4, 4, 0, 0 },
            { 16, 1, 10, 0 }, { 1, 1, 0, 1 }, { 16, 1, 0, 1 },
        };
        apr_size_t i;
        for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
            o.procs = runs[i][0];
            o.threads = runs[i][1];
            o.put_pct = runs[i][2];
            o.mutex = runs[i][3];
            run(&o, p);
        }
    }
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
