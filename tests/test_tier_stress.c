/* msm_tier under load, bounded in time (MSM_TIER_STRESS_MS per phase,
 * default 2500) and in operations.
 *
 * Phase A: PROCS processes x THREADS threads read, put, touch and destroy
 * the same keys (one id in two scopes) and keys of their own, in a table
 * large enough that nothing is evicted. Every payload carries its key, its
 * version, its write time, its length and a checksum. A read must be a
 * miss or a copy that matches all of them; per reader, the versions of a
 * key never go down and a tombstone stays one; a worker reads back exactly
 * what it put to its own keys; and at the end every key holds the newest
 * copy put (or its tombstone, or nothing when that copy was too large),
 * once.
 *
 * Phase B: writer processes fill a table of 32 slots with 128 keys (every
 * put evicts) while the parent kills them with SIGKILL at random and starts
 * new ones (a put in four lingers in its critical section, so that kills
 * land there); reader threads check every copy they read. At the end no
 * bucket stays locked. */
#include "unit.h"
#include "msm_tier.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#define PROCS 4
#define THREADS 4
#define WORKERS (PROCS * THREADS)
#define SHARED_IDS 48                   /* in 2 scopes: 96 keys */
#define OWN_KEYS 2                      /* per worker */
#define KEYS_A (2 * SHARED_IDS + WORKERS * OWN_KEYS)
#define SLOT_A 1024

#define WRITERS_B 3
#define READERS_B 2                     /* processes */
#define READER_THREADS_B 2
#define KEYS_B 128
#define SLOT_B 512

#define OPS_MAX 50000000L               /* per worker and phase */
#define ERRORS_SHOWN 20

typedef struct counts {
    apr_uint64_t gets, hits, destroyed, misses;
    apr_uint64_t puts, stored, marked, refused, touches;
    apr_uint64_t errors;
} counts_t;

/* Shared by every process of the test. */
typedef struct shared {
    volatile apr_uint32_t stop;
    volatile apr_uint32_t errors_shown;
    apr_uint64_t next_version[KEYS_A > KEYS_B ? KEYS_A : KEYS_B];
    apr_uint64_t top[KEYS_A];           /* newest put: version << 1 | big */
    apr_uint32_t dead[KEYS_A];          /* a tombstone was put */
    counts_t counts[WORKERS + WRITERS_B + READERS_B * READER_THREADS_B];
} shared_t;

/* What every payload starts with. */
typedef struct stamp {
    apr_uint64_t scope;
    unsigned char id[MSM_ID_BYTES];
    apr_uint64_t version;
    apr_int64_t written;
    apr_uint64_t len;
    apr_uint64_t sum;                   /* FNV-1a of the payload, sum 0 */
} stamp_t;

typedef struct worker {
    shared_t *sh;
    msm_tier_t *t;
    int index;                          /* into sh->counts */
    int keys;
    apr_uint64_t rnd;
    counts_t *c;
} worker_t;

static shared_t *sh;

/* ---- keys and payloads ---- */

/* Keys 2i and 2i+1 share an id in scopes 1 and 2. */
static msm_tier_key_t key_at(int k)
{
    msm_tier_key_t key;
    apr_uint64_t x = (apr_uint64_t)(k / 2) * APR_UINT64_C(0x9e3779b97f4a7c15);
    unsigned int i;

    key.scope = 1 + (apr_uint64_t)(k % 2);
    for (i = 0; i < sizeof(key.id); i++) {
        x ^= x >> 29;
        x *= APR_UINT64_C(0xbf58476d1ce4e5b9);
        key.id[i] = (unsigned char)(x >> 56);
    }
    return key;
}

static apr_time_t written_of(apr_uint64_t version)
{
    return (apr_time_t)(version * 1000 + 7);
}

static void primary_of(apr_uint64_t version, char *out)
{
    apr_snprintf(out, MSM_NAME_MAX + 1, "node%u",
                 (unsigned int)(version % 10));
}

static msm_copy_meta_t meta_of(char kind, apr_uint64_t version)
{
    msm_copy_meta_t m;

    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.version = version;
    m.written = written_of(version);
    if (kind == MSM_COPY_SESSION) {
        primary_of(version, m.primary);
    }
    return m;
}

static apr_uint64_t fnv(const unsigned char *p, apr_size_t len)
{
    apr_uint64_t h = APR_UINT64_C(0xcbf29ce484222325);

    while (len--) {
        h = (h ^ *p++) * APR_UINT64_C(0x100000001b3);
    }
    return h;
}

static void payload_make(char *buf, apr_size_t len, const msm_tier_key_t *k,
                         apr_uint64_t version)
{
    stamp_t s;
    apr_size_t i;

    memset(&s, 0, sizeof(s));
    s.scope = k->scope;
    memcpy(s.id, k->id, sizeof(s.id));
    s.version = version;
    s.written = written_of(version);
    s.len = len;
    for (i = sizeof(s); i < len; i++) {
        buf[i] = (char)(version * 31 + i * 7 + k->scope);
    }
    memcpy(buf, &s, sizeof(s));
    s.sum = fnv((unsigned char *)buf, len);
    memcpy(buf, &s, sizeof(s));
}

/* NULL if what a read returned is a miss or a true copy of key k. */
static const char *copy_problem(const msm_tier_key_t *k, msm_tier_get_e got,
                                const msm_tier_entry_t *e, char *buf)
{
    char primary[MSM_NAME_MAX + 1];
    stamp_t s;
    apr_uint64_t sum;

    if (got == MSM_TIER_MISS) {
        return NULL;
    }
    if (e->meta.written != written_of(e->meta.version)) {
        return "meta of another copy";
    }
    if (got == MSM_TIER_DESTROYED) {
        return e->meta.kind != MSM_COPY_DESTROYED || e->len != 0
               || e->meta.primary[0] ? "bad tombstone" : NULL;
    }
    primary_of(e->meta.version, primary);
    if (e->meta.kind != MSM_COPY_SESSION || strcmp(e->meta.primary, primary)) {
        return "bad session meta";
    }
    if (e->len < sizeof(s) || buf[e->len] != '\0') {
        return "bad length";
    }
    memcpy(&s, buf, sizeof(s));
    if (s.scope != k->scope || memcmp(s.id, k->id, sizeof(s.id)) != 0) {
        return "FOREIGN payload (another key's)";
    }
    if (s.version != e->meta.version || s.written != e->meta.written
        || s.len != e->len) {
        return "payload of another copy";
    }
    sum = s.sum;
    s.sum = 0;
    memcpy(buf, &s, sizeof(s));
    if (fnv((unsigned char *)buf, e->len) != sum) {
        return "TORN payload (checksum)";
    }
    return NULL;
}

/* ---- a worker's operations ---- */

static apr_uint64_t rnd_next(worker_t *w)
{
    w->rnd ^= w->rnd >> 12;
    w->rnd ^= w->rnd << 25;
    w->rnd ^= w->rnd >> 27;
    return w->rnd * APR_UINT64_C(0x2545f4914f6cdd1d);
}

static void fail(worker_t *w, int k, const char *what, apr_uint64_t v)
{
    w->c->errors++;
    if (apr_atomic_inc32(&w->sh->errors_shown) < ERRORS_SHOWN) {
        fprintf(stderr, "pid %ld worker %d key %d: %s (version %lu)\n",
                (long)getpid(), w->index, k, what, (unsigned long)v);
    }
}

static msm_tier_get_e do_get(worker_t *w, int k, msm_tier_entry_t *e,
                             char *buf, apr_size_t bufsize)
{
    msm_tier_key_t key = key_at(k);
    msm_tier_get_e got = msm_tier_get(w->t, &key, apr_time_now(), e, buf,
                                      bufsize);
    const char *problem = copy_problem(&key, got, e, buf);

    w->c->gets++;
    w->c->hits += got == MSM_TIER_HIT;
    w->c->destroyed += got == MSM_TIER_DESTROYED;
    w->c->misses += got == MSM_TIER_MISS;
    if (problem) {
        fail(w, k, problem, e->meta.version);
    }
    return problem ? MSM_TIER_MISS : got;
}

/* A put of the key's next version; its length, 0 for a tombstone. */
static msm_tier_put_e do_put(worker_t *w, int k, char kind, char *buf,
                             apr_uint64_t *version, apr_size_t *len)
{
    msm_tier_key_t key = key_at(k);
    apr_size_t max = msm_tier_payload_max(w->t);
    apr_uint64_t r = rnd_next(w);
    msm_copy_meta_t m;
    msm_tier_put_e done;

    *version = __atomic_add_fetch(&w->sh->next_version[k], 1,
                                  __ATOMIC_RELAXED);
    m = meta_of(kind, *version);
    /* mostly small, some up to the capacity, 2% too large */
    *len = r % 100 < 2 ? max + 1 + r % 64
         : r % 100 < 20 ? sizeof(stamp_t) + (r >> 8) % (max - sizeof(stamp_t))
         : sizeof(stamp_t) + (r >> 8) % 200;
    if (kind == MSM_COPY_DESTROYED) {
        *len = 0;
    }
    payload_make(buf, *len, &key, *version);
    done = msm_tier_put(w->t, &key, &m, apr_time_now(), buf, *len);
    w->c->puts++;
    w->c->stored += done == MSM_TIER_STORED;
    w->c->marked += done == MSM_TIER_MARKED;
    w->c->refused += done == MSM_TIER_REFUSED;
    return done;
}

static void raise_top(apr_uint64_t *top, apr_uint64_t v)
{
    apr_uint64_t old = __atomic_load_n(top, __ATOMIC_RELAXED);

    while (old < v && !__atomic_compare_exchange_n(top, &old, v, 0,
                                                   __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {
    }
}

/* ---- phase A ---- */

typedef struct reader_view {
    apr_uint64_t last[KEYS_A];          /* newest version read */
    char dead[KEYS_A];                  /* read a tombstone */
} reader_view_t;

static void check_order(worker_t *w, reader_view_t *v, int k,
                        msm_tier_get_e got, apr_uint64_t version)
{
    if (v->dead[k] && got != MSM_TIER_DESTROYED) {
        fail(w, k, "a tombstone went away", version);
    }
    if (got == MSM_TIER_DESTROYED) {
        v->dead[k] = 1;
    }
    if (got == MSM_TIER_HIT) {
        if (version < v->last[k]) {
            fail(w, k, "version went DOWN", version);
        }
        v->last[k] = version;
    }
}

/* Only this worker writes its own keys: it reads back what it put. */
static void own_key_round(worker_t *w, char *buf, apr_size_t bufsize)
{
    int k = 2 * SHARED_IDS + w->index * OWN_KEYS
            + (int)(rnd_next(w) % OWN_KEYS);
    msm_tier_entry_t e;
    apr_uint64_t version;
    apr_size_t len;
    msm_tier_put_e done = do_put(w, k, MSM_COPY_SESSION, buf, &version, &len);
    msm_tier_get_e got = do_get(w, k, &e, buf, bufsize);

    raise_top(&w->sh->top[k], version << 1 | (done == MSM_TIER_MARKED));
    if (done == MSM_TIER_REFUSED
        || got != (done == MSM_TIER_STORED ? MSM_TIER_HIT : MSM_TIER_MISS)
        || (got == MSM_TIER_HIT && (e.meta.version != version
                                    || e.len != len))) {
        fail(w, k, "did not read back its own put", version);
    }
}

/* A few shared keys are destroyed, at random times. */
static int mortal(int k)
{
    return k % 16 == 15;
}

static void shared_key_round(worker_t *w, reader_view_t *v, char *buf,
                             apr_size_t bufsize)
{
    apr_uint64_t r = rnd_next(w), version;
    int k = (int)(r % (2 * SHARED_IDS)), op = (int)((r >> 32) % 100);
    msm_tier_entry_t e;
    msm_tier_get_e got;
    apr_size_t len;

    if (op < 60) {
        got = do_get(w, k, &e, buf, bufsize);
        check_order(w, v, k, got, e.meta.version);
        if (got == MSM_TIER_HIT && op < 5) {
            msm_tier_key_t key = key_at(k);
            w->c->touches += msm_tier_touch(w->t, &key, &e.meta,
                                            apr_time_now());
        }
    }
    else if (op < 99 || !mortal(k)) {
        msm_tier_put_e done = do_put(w, k, MSM_COPY_SESSION, buf, &version,
                                     &len);
        raise_top(&w->sh->top[k], version << 1 | (done == MSM_TIER_MARKED));
    }
    else {
        do_put(w, k, MSM_COPY_DESTROYED, buf, &version, &len);
        __atomic_store_n(&w->sh->dead[k], 1, __ATOMIC_RELAXED);
    }
}

/* Any worker's own keys, read by everyone. */
static void other_key_round(worker_t *w, reader_view_t *v, char *buf,
                            apr_size_t bufsize)
{
    int k = 2 * SHARED_IDS + (int)(rnd_next(w) % (WORKERS * OWN_KEYS));
    msm_tier_entry_t e;
    msm_tier_get_e got = do_get(w, k, &e, buf, bufsize);

    check_order(w, v, k, got, e.meta.version);
}

static void *APR_THREAD_FUNC phase_a_thread(apr_thread_t *th, void *arg)
{
    worker_t *w = arg;
    apr_size_t bufsize = msm_tier_payload_max(w->t) + 1;
    char *buf = malloc(bufsize + 64 * 2);   /* puts write up to max + 64 */
    reader_view_t *v = calloc(1, sizeof(*v));
    long ops;

    for (ops = 0; ops < OPS_MAX && !apr_atomic_read32(&w->sh->stop); ops++) {
        apr_uint64_t r = rnd_next(w) % 10;
        if (r == 0) {
            own_key_round(w, buf, bufsize);
        }
        else if (r == 1) {
            other_key_round(w, v, buf, bufsize);
        }
        else {
            shared_key_round(w, v, buf, bufsize);
        }
    }
    free(buf);
    free(v);
    return NULL;
}

/* ---- phase B ---- */

/* One put in four lingers in its critical section, so that kills land
 * there too. */
static apr_uint32_t linger_rnd;

static void linger(void)
{
    linger_rnd = linger_rnd * 1103515245u + 12345u;
    if ((linger_rnd >> 16) % 4 == 0) {
        apr_sleep(200);
    }
}

static void writer_b(worker_t *w)
{
    char *buf = malloc(msm_tier_payload_max(w->t) + 64);
    apr_uint64_t version;
    apr_size_t len;
    long ops;

    for (ops = 0; ops < OPS_MAX && !apr_atomic_read32(&w->sh->stop); ops++) {
        do_put(w, (int)(rnd_next(w) % KEYS_B), MSM_COPY_SESSION, buf,
               &version, &len);
    }
    free(buf);
}

static void *APR_THREAD_FUNC reader_b_thread(apr_thread_t *th, void *arg)
{
    worker_t *w = arg;
    apr_size_t bufsize = msm_tier_payload_max(w->t) + 1;
    char *buf = malloc(bufsize);
    msm_tier_entry_t e;
    long ops;

    for (ops = 0; ops < OPS_MAX && !apr_atomic_read32(&w->sh->stop); ops++) {
        do_get(w, (int)(rnd_next(w) % KEYS_B), &e, buf, bufsize);
    }
    free(buf);
    return NULL;
}

/* ---- processes ---- */

static void worker_init(worker_t *w, msm_tier_t *t, int index)
{
    w->sh = sh;
    w->t = t;
    w->index = index;
    w->c = &sh->counts[index];
    w->rnd = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 20)
             ^ ((apr_uint64_t)index << 40) ^ 1;
}

/* A process of nthreads threads running fn on counts first..; exits. */
static pid_t spawn(msm_tier_t *t, int first, int nthreads,
                   apr_thread_start_t fn)
{
    pid_t pid = fork();

    if (pid == 0) {
        apr_pool_t *p;
        apr_thread_t *th[THREADS];
        worker_t w[THREADS];
        apr_status_t rv;
        int i;

        apr_pool_create(&p, NULL);
        for (i = 0; i < nthreads; i++) {
            worker_init(&w[i], t, first + i);
            if (apr_thread_create(&th[i], NULL, fn, &w[i], p) != APR_SUCCESS) {
                _exit(2);
            }
        }
        for (i = 0; i < nthreads; i++) {
            apr_thread_join(&rv, th[i]);
        }
        _exit(0);
    }
    return pid;
}

static pid_t spawn_writer_b(msm_tier_t *t, int index)
{
    pid_t pid = fork();

    if (pid == 0) {
        worker_t w;
        worker_init(&w, t, index);
        linger_rnd = (apr_uint32_t)w.rnd;
        msm_tier_test_hook = linger;
        writer_b(&w);
        _exit(0);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int status = -1;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

static void *shared_block(apr_pool_t *p, apr_size_t bytes)
{
    apr_shm_t *shm;

    if (apr_shm_create(&shm, bytes, NULL, p) != APR_SUCCESS) {
        fprintf(stderr, "apr_shm_create(%lu) failed\n", (unsigned long)bytes);
        exit(2);
    }
    memset(apr_shm_baseaddr_get(shm), 0, bytes);
    return apr_shm_baseaddr_get(shm);
}

static msm_tier_t *make_tier(apr_pool_t *p, apr_uint32_t slots,
                             apr_size_t slot_bytes)
{
    apr_size_t bytes = msm_tier_bytes(slots, slot_bytes);

    return msm_tier_format(shared_block(p, bytes), bytes, slot_bytes);
}

static void sum_counts(int from, int to, counts_t *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    for (i = from; i < to; i++) {
        const counts_t *c = &sh->counts[i];
        out->gets += c->gets;
        out->hits += c->hits;
        out->destroyed += c->destroyed;
        out->misses += c->misses;
        out->puts += c->puts;
        out->stored += c->stored;
        out->marked += c->marked;
        out->refused += c->refused;
        out->touches += c->touches;
        out->errors += c->errors;
    }
}

static void print_counts(const char *phase, const counts_t *c, double secs)
{
    printf("%s: %.0f ops/s; gets %lu (hits %lu, tombstones %lu, misses %lu),"
           " puts %lu (stored %lu, markers %lu, refused %lu), touches %lu,"
           " errors %lu\n", phase,
           (double)(c->gets + c->puts + c->touches) / secs,
           (unsigned long)c->gets, (unsigned long)c->hits,
           (unsigned long)c->destroyed, (unsigned long)c->misses,
           (unsigned long)c->puts, (unsigned long)c->stored,
           (unsigned long)c->marked, (unsigned long)c->refused,
           (unsigned long)c->touches, (unsigned long)c->errors);
    fflush(stdout);             /* before the next fork */
}

static apr_interval_time_t phase_length(void)
{
    const char *env = getenv("MSM_TIER_STRESS_MS");
    long ms = env ? atol(env) : 2500;

    return apr_time_from_msec(ms > 0 ? ms : 2500);
}

/* Every key holds the newest copy put, once. */
static void check_final_a(msm_tier_t *t)
{
    char buf[SLOT_A];
    msm_tier_stats_t st;
    int k, bad = 0, keys = 0;

    for (k = 0; k < KEYS_A; k++) {
        msm_tier_key_t key = key_at(k);
        msm_tier_entry_t e;
        msm_tier_get_e got = msm_tier_get(t, &key, apr_time_now(), &e, buf,
                                          sizeof(buf));
        apr_uint64_t top = sh->top[k];
        msm_tier_get_e want = sh->dead[k] ? MSM_TIER_DESTROYED
                            : top & 1 ? MSM_TIER_MISS : MSM_TIER_HIT;

        keys += top != 0 || sh->dead[k];
        if (top == 0 && !sh->dead[k]) {
            want = MSM_TIER_MISS;
        }
        if (got != want || copy_problem(&key, got, &e, buf)
            || (got == MSM_TIER_HIT && e.meta.version != top >> 1)) {
            if (bad++ < 5) {
                fprintf(stderr, "key %d: got %d version %lu, newest put %lu"
                        " (%s)%s\n", k, (int)got,
                        (unsigned long)e.meta.version,
                        (unsigned long)(top >> 1), top & 1 ? "marker" : "fits",
                        sh->dead[k] ? ", destroyed" : "");
            }
        }
    }
    CHECK_MSG(bad == 0, "%d keys do not hold their newest copy", bad);
    msm_tier_stats(t, &st);
    CHECK_MSG(st.evicted == 0, "%lu evictions", (unsigned long)st.evicted);
    CHECK_MSG((int)st.in_use == keys, "%lu slots used for %d keys",
              (unsigned long)st.in_use, keys);
}

static void phase_a(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, 64 * KEYS_A, SLOT_A);
    pid_t pids[PROCS];
    apr_time_t start = apr_time_now();
    counts_t c;
    int i, failed = 0;

    for (i = 0; i < PROCS; i++) {
        pids[i] = spawn(t, i * THREADS, THREADS, phase_a_thread);
    }
    apr_sleep(phase_length());
    apr_atomic_set32(&sh->stop, 1);
    for (i = 0; i < PROCS; i++) {
        int status = reap(pids[i]);
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    CHECK_INT_EQ(failed, 0);
    sum_counts(0, WORKERS, &c);
    print_counts("phase A (4 procs x 4 threads, same and own keys)", &c,
                 (double)(apr_time_now() - start) / APR_USEC_PER_SEC);
    CHECK_INT_EQ(c.errors, 0);
    CHECK(c.hits > 0 && c.destroyed > 0 && c.stored > 0 && c.marked > 0
          && c.refused > 0 && c.touches > 0);
    check_final_a(t);
}

/* Kills a random writer every 1-8 ms and starts another. */
static int chaos(msm_tier_t *t, pid_t *writers)
{
    apr_time_t end = apr_time_now() + phase_length();
    apr_uint64_t r = (apr_uint64_t)getpid() * 2654435761u;
    int kills = 0;

    while (apr_time_now() < end) {
        int i;
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        apr_sleep(apr_time_from_msec(1 + (r >> 33) % 8));
        i = (int)((r >> 40) % WRITERS_B);
        kill(writers[i], SIGKILL);
        reap(writers[i]);
        kills++;
        writers[i] = spawn_writer_b(t, WORKERS + i);
    }
    return kills;
}

/* After the kills: every key can be written and read back. */
static void check_final_b(msm_tier_t *t)
{
    char buf[SLOT_B];
    int k, bad = 0;

    msm_tier_recover(t);
    for (k = 0; k < KEYS_B; k++) {
        msm_tier_key_t key = key_at(k);
        msm_copy_meta_t m = meta_of(MSM_COPY_SESSION, APR_UINT64_C(1) << 40);
        msm_tier_entry_t e;
        payload_make(buf, 100, &key, m.version);
        if (msm_tier_put(t, &key, &m, apr_time_now(), buf, 100)
                != MSM_TIER_STORED
            || msm_tier_get(t, &key, apr_time_now(), &e, buf, sizeof(buf))
                != MSM_TIER_HIT
            || e.meta.version != m.version) {
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d keys not written after the kills", bad);
}

static void phase_b(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, 32, SLOT_B);
    pid_t writers[WRITERS_B], readers[READERS_B];
    apr_time_t start = apr_time_now();
    msm_tier_stats_t st;
    counts_t c;
    int i, kills, failed = 0;

    memset(sh->next_version, 0, sizeof(sh->next_version));
    apr_atomic_set32(&sh->stop, 0);
    for (i = 0; i < READERS_B; i++) {
        readers[i] = spawn(t, WORKERS + WRITERS_B + i * READER_THREADS_B,
                           READER_THREADS_B, reader_b_thread);
    }
    for (i = 0; i < WRITERS_B; i++) {
        writers[i] = spawn_writer_b(t, WORKERS + i);
    }
    kills = chaos(t, writers);
    apr_atomic_set32(&sh->stop, 1);
    for (i = 0; i < WRITERS_B; i++) {
        reap(writers[i]);
    }
    for (i = 0; i < READERS_B; i++) {
        int status = reap(readers[i]);
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    CHECK_INT_EQ(failed, 0);
    sum_counts(WORKERS, WORKERS + WRITERS_B + READERS_B * READER_THREADS_B,
               &c);
    print_counts("phase B (3 writers killed -9 at random, 2 procs x 2 reader"
                 " threads, 128 keys in 32 slots)", &c,
                 (double)(apr_time_now() - start) / APR_USEC_PER_SEC);
    msm_tier_stats(t, &st);
    printf("phase B: %d writers killed, %lu locks taken over from dead "
           "writers, %lu evictions\n", kills, (unsigned long)st.recovered,
           (unsigned long)st.evicted);
    CHECK_INT_EQ(c.errors, 0);
    CHECK(c.hits > 0 && c.stored > 0 && kills > 0);
    check_final_b(t);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_tier_stress");

    alarm(120);                         /* a wedged lock fails, not hangs */
    sh = shared_block(p, sizeof(*sh));
    phase_a(p);
    phase_b(p);
    return unit_done();
}
