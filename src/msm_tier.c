#include "msm_tier.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <apr_strings.h>

#define TIER_MAGIC        0x544d534du   /* "MSMT" */
#define TIER_LAYOUT       1             /* bump on any change of the layout */
#define HEADER_BYTES      128
/* The header starts on a cache line: apr_shm's base is only 8-aligned (APR
 * keeps the size in front of it), so every table keeps a line of slack. */
#define SLACK_BYTES       MSM_TIER_SLOT_ALIGN
#define OVERHEAD_BYTES    (SLACK_BYTES + HEADER_BYTES)
#define BUCKET_HEAD_BYTES 64

/* The protocol, per slot (the seqlock; see write_begin and slot_read):
 *   writer (holding the bucket lock): seq = odd; release fence; store the
 *       entry and payload words (relaxed); seq = even (release store)
 *   reader: seq1 = seq (acquire load); copy the words (relaxed loads);
 *       acquire fence; a copy is consistent iff seq1 is even and seq
 *       still equals seq1
 * and per bucket: the lock is taken with an acquire compare-and-swap and
 * released with a release store, so each writer sees all that the previous
 * one wrote. Readers write only the coarse last-used time (relaxed). */
#define READ_TRIES   64     /* seqlock attempts before a read gives up */
#define SPIN_ROUNDS  128    /* a writer spins this long on a held lock, */
#define YIELD_ROUNDS 1024   /* then yields the CPU this often, */
#define SLEEP_US     100    /* then sleeps between attempts */

#define STATE_EMPTY  0
#define STATE_FULL   'F'    /* a copy with its payload */
#define STATE_MARKER 'M'    /* a copy's metadata only: its payload was too
                             * large */

/* Slots are copied in and out as whole words: a word is read and written
 * atomically (relaxed, so a plain load or store) on every platform,
 * 32-bit ones included, and concurrent accesses are never a data race. */
typedef uintptr_t word_t;
#define WORD sizeof(word_t)

/* The header, at the start of the block. */
struct msm_tier {
    /* set by format, read by every access */
    apr_uint32_t magic;
    apr_uint32_t layout;
    apr_uint32_t word_bytes;
    apr_uint32_t head_bytes;
    apr_uint32_t ways;
    apr_uint32_t slot_bytes;
    apr_uint32_t buckets;
    apr_uint32_t unused;
    apr_uint64_t bytes;
    char pad0[64 - 40];
    /* counters, on their own line: written by writers only (words: no
     * 64-bit atomics needed on 32-bit platforms, where they may wrap) */
    word_t evicted;
    word_t marked;
    word_t refused;
    word_t recovered;
    char pad1[64 - 4 * sizeof(word_t)];
};

typedef struct bucket_head {
    apr_uint32_t lock;                  /* the owner's pid; 0: free */
    apr_uint32_t unused;
    apr_uint32_t tag[MSM_TIER_WAYS];    /* a hash of each slot's key; 0:
                                         * empty. Exact under the lock, a
                                         * hint for readers. */
    char pad[BUCKET_HEAD_BYTES - 8 - 4 * MSM_TIER_WAYS];
} bucket_head_t;

/* A slot's entry, as its words are copied out (and in). */
typedef struct slot_entry {
    apr_uint64_t scope;
    unsigned char id[MSM_ID_BYTES];
    apr_uint64_t version;
    apr_time_t written;
    apr_time_t touched;
    apr_uint32_t len;
    char state;
    char kind;
    char primary[MSM_NAME_MAX + 1];
} slot_entry_t;

#define ENTRY_WORDS ((sizeof(slot_entry_t) + WORD - 1) / WORD)

typedef struct slot {
    apr_uint32_t seq;           /* odd while a writer is in the slot */
    apr_uint32_t used;          /* apr_time_sec of the last use */
    word_t entry[ENTRY_WORDS];
    word_t payload[];
} slot_t;

#define SLOT_HEAD_BYTES offsetof(slot_t, payload)

_Static_assert(sizeof(struct msm_tier) == HEADER_BYTES, "header size");
_Static_assert(sizeof(bucket_head_t) == BUCKET_HEAD_BYTES, "bucket size");
_Static_assert(__atomic_always_lock_free(sizeof(word_t), 0),
               "word copies must be lock-free");
_Static_assert(SLOT_HEAD_BYTES + 32 <= MSM_TIER_MIN_SLOT_BYTES,
               "a slot has room for a payload");

void (*msm_tier_test_hook)(void);

/* ---- sizes ---- */

static apr_size_t bucket_bytes(apr_size_t slot_bytes)
{
    return BUCKET_HEAD_BYTES + MSM_TIER_WAYS * slot_bytes;
}

typedef enum {
    SIZE_OK = 0,
    SIZE_BAD_SLOT,
    SIZE_TOO_SMALL,
    SIZE_TOO_LARGE,
    SIZE_UNMAPPABLE
} size_problem_e;

static size_problem_e size_problem(apr_uint64_t bytes, apr_uint64_t slot_bytes)
{
    if (slot_bytes < MSM_TIER_MIN_SLOT_BYTES
        || slot_bytes > MSM_TIER_MAX_SLOT_BYTES
        || slot_bytes % MSM_TIER_SLOT_ALIGN != 0) {
        return SIZE_BAD_SLOT;
    }
    if (bytes < OVERHEAD_BYTES + bucket_bytes((apr_size_t)slot_bytes)) {
        return SIZE_TOO_SMALL;
    }
    if (bytes > MSM_TIER_MAX_BYTES) {
        return SIZE_TOO_LARGE;
    }
    return bytes > APR_SIZE_MAX ? SIZE_UNMAPPABLE : SIZE_OK;
}

const char *msm_tier_check_size(apr_pool_t *p, apr_uint64_t bytes,
                                apr_uint64_t slot_bytes)
{
    switch (size_problem(bytes, slot_bytes)) {
    case SIZE_BAD_SLOT:
        return apr_psprintf(p, "slot size %" APR_UINT64_T_FMT " must be a "
                            "multiple of %d from %d to %d bytes", slot_bytes,
                            MSM_TIER_SLOT_ALIGN, MSM_TIER_MIN_SLOT_BYTES,
                            MSM_TIER_MAX_SLOT_BYTES);
    case SIZE_TOO_SMALL:
        return apr_psprintf(p, "%" APR_UINT64_T_FMT " bytes hold no table: "
                            "at least %lu for slots of %" APR_UINT64_T_FMT
                            " bytes", bytes, (unsigned long)(OVERHEAD_BYTES
                            + bucket_bytes((apr_size_t)slot_bytes)),
                            slot_bytes);
    case SIZE_TOO_LARGE:
        return apr_psprintf(p, "%" APR_UINT64_T_FMT " bytes is more than the "
                            "%" APR_UINT64_T_FMT " allowed", bytes,
                            MSM_TIER_MAX_BYTES);
    case SIZE_UNMAPPABLE:
        return apr_psprintf(p, "%" APR_UINT64_T_FMT " bytes is more than "
                            "this platform can map", bytes);
    default:
        return NULL;
    }
}

static apr_uint32_t bucket_count(apr_size_t bytes, apr_size_t slot_bytes)
{
    return (apr_uint32_t)((bytes - OVERHEAD_BYTES) / bucket_bytes(slot_bytes));
}

apr_uint32_t msm_tier_slots(apr_size_t bytes, apr_size_t slot_bytes)
{
    if (size_problem(bytes, slot_bytes) != SIZE_OK) {
        return 0;
    }
    return bucket_count(bytes, slot_bytes) * MSM_TIER_WAYS;
}

apr_size_t msm_tier_bytes(apr_uint32_t slots, apr_size_t slot_bytes)
{
    apr_size_t buckets = ((apr_size_t)slots + MSM_TIER_WAYS - 1)
                         / MSM_TIER_WAYS;

    return OVERHEAD_BYTES + (buckets ? buckets : 1) * bucket_bytes(slot_bytes);
}

apr_size_t msm_tier_payload_max(const msm_tier_t *t)
{
    return t->slot_bytes - SLOT_HEAD_BYTES;
}

/* ---- the block ---- */

/* Where the header of a table in mem starts. */
static msm_tier_t *aligned(void *mem)
{
    uintptr_t at = (uintptr_t)mem;

    return (msm_tier_t *)(at + (-at & (MSM_TIER_SLOT_ALIGN - 1)));
}

msm_tier_t *msm_tier_format(void *mem, apr_size_t bytes,
                            apr_size_t slot_bytes)
{
    msm_tier_t *t = aligned(mem);
    apr_uint32_t buckets;

    if (mem == NULL || size_problem(bytes, slot_bytes) != SIZE_OK) {
        return NULL;
    }
    buckets = bucket_count(bytes, slot_bytes);
    /* Zero: every lock free, every tag empty, every counter even. */
    memset(t, 0, HEADER_BYTES + buckets * bucket_bytes(slot_bytes));
    t->magic = TIER_MAGIC;
    t->layout = TIER_LAYOUT;
    t->word_bytes = WORD;
    t->head_bytes = SLOT_HEAD_BYTES;
    t->ways = MSM_TIER_WAYS;
    t->slot_bytes = (apr_uint32_t)slot_bytes;
    t->buckets = buckets;
    t->bytes = bytes;
    return t;
}

msm_tier_t *msm_tier_attach(void *mem, apr_size_t bytes,
                            apr_size_t slot_bytes, const char **why)
{
    msm_tier_t *t = aligned(mem);

    if (mem == NULL || bytes < OVERHEAD_BYTES) {
        *why = "no usable memory";
    }
    else if (t->magic != TIER_MAGIC) {
        *why = "not a formatted table";
    }
    else if (t->layout != TIER_LAYOUT || t->word_bytes != WORD
             || t->head_bytes != SLOT_HEAD_BYTES
             || t->ways != MSM_TIER_WAYS) {
        *why = "the table has another layout";
    }
    else if (t->slot_bytes != slot_bytes) {
        *why = "the slot size changed";
    }
    else if (t->bytes != bytes || size_problem(bytes, slot_bytes) != SIZE_OK
             || t->buckets != bucket_count(bytes, slot_bytes)) {
        *why = "the table size changed";
    }
    else {
        *why = NULL;
        return t;
    }
    return NULL;
}

/* ---- where a key lives ---- */

static apr_uint64_t mix64(apr_uint64_t x)
{
    x ^= x >> 30;
    x *= APR_UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= APR_UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static bucket_head_t *bucket_at(const msm_tier_t *t, apr_uint32_t b)
{
    return (bucket_head_t *)((char *)t + HEADER_BYTES
                             + (apr_size_t)b * bucket_bytes(t->slot_bytes));
}

static slot_t *slot_at(const msm_tier_t *t, bucket_head_t *bh, int way)
{
    return (slot_t *)((char *)bh + BUCKET_HEAD_BYTES
                      + (apr_size_t)way * t->slot_bytes);
}

typedef struct place {
    bucket_head_t *bh;
    apr_uint32_t tag;           /* never 0 */
} place_t;

static place_t locate(const msm_tier_t *t, const msm_tier_key_t *key)
{
    apr_uint64_t lo, hi, h;
    place_t at;

    memcpy(&lo, key->id, sizeof(lo));
    memcpy(&hi, key->id + sizeof(lo), sizeof(hi));
    h = mix64(mix64(mix64(key->scope) ^ lo) ^ hi);
    /* high half picks the bucket (multiply-shift: any count), low half
     * the tag */
    at.bh = bucket_at(t, (apr_uint32_t)(((h >> 32) * t->buckets) >> 32));
    at.tag = (apr_uint32_t)h | 1;
    return at;
}

/* ---- copying a slot's words ---- */

static void entry_load(const slot_t *s, slot_entry_t *e)
{
    word_t w[ENTRY_WORDS];
    apr_size_t i;

    for (i = 0; i < ENTRY_WORDS; i++) {
        w[i] = __atomic_load_n(&s->entry[i], __ATOMIC_RELAXED);
    }
    memcpy(e, w, sizeof(*e));
}

static void entry_store(slot_t *s, const slot_entry_t *e)
{
    word_t w[ENTRY_WORDS];
    apr_size_t i;

    memset(w, 0, sizeof(w));
    memcpy(w, e, sizeof(*e));
    for (i = 0; i < ENTRY_WORDS; i++) {
        __atomic_store_n(&s->entry[i], w[i], __ATOMIC_RELAXED);
    }
}

static void payload_load(char *dst, const word_t *src, apr_size_t len)
{
    apr_size_t i, whole = len / WORD;
    word_t w;

    for (i = 0; i < whole; i++) {
        w = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
        memcpy(dst + i * WORD, &w, WORD);
    }
    if (len % WORD) {
        w = __atomic_load_n(&src[whole], __ATOMIC_RELAXED);
        memcpy(dst + whole * WORD, &w, len % WORD);
    }
}

static void payload_store(word_t *dst, const char *src, apr_size_t len)
{
    apr_size_t i, whole = len / WORD;
    word_t w;

    for (i = 0; i < whole; i++) {
        memcpy(&w, src + i * WORD, WORD);
        __atomic_store_n(&dst[i], w, __ATOMIC_RELAXED);
    }
    if (len % WORD) {
        w = 0;
        memcpy(&w, src + whole * WORD, len % WORD);
        __atomic_store_n(&dst[whole], w, __ATOMIC_RELAXED);
    }
}

/* ---- entries ---- */

static int entry_has_key(const slot_entry_t *e, const msm_tier_key_t *key)
{
    return e->state != STATE_EMPTY && e->scope == key->scope
           && memcmp(e->id, key->id, MSM_ID_BYTES) == 0;
}

static void entry_meta(const slot_entry_t *e, msm_copy_meta_t *m)
{
    memset(m, 0, sizeof(*m));
    m->kind = e->kind;
    m->version = e->version;
    m->written = e->written;
    memcpy(m->primary, e->primary, MSM_NAME_MAX);
}

/* The new entry of key; whether its payload fits. */
static msm_tier_put_e entry_fill(slot_entry_t *e, const msm_tier_key_t *key,
                                 const msm_copy_meta_t *meta,
                                 apr_time_t touched, apr_size_t len,
                                 apr_size_t payload_max)
{
    memset(e, 0, sizeof(*e));
    e->scope = key->scope;
    memcpy(e->id, key->id, MSM_ID_BYTES);
    e->version = meta->version;
    e->written = meta->written;
    e->touched = touched;
    e->kind = meta->kind;
    memcpy(e->primary, meta->primary, MSM_NAME_MAX);
    e->state = STATE_FULL;
    if (meta->kind == MSM_COPY_DESTROYED) {
        return MSM_TIER_STORED;
    }
    if (len > payload_max) {
        e->state = STATE_MARKER;
        return MSM_TIER_MARKED;
    }
    e->len = (apr_uint32_t)len;
    return MSM_TIER_STORED;
}

/* ---- readers ---- */

#define NOT_HERE (-1)

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* What a consistent copy of key's entry says. */
static int entry_out(const slot_entry_t *e, apr_size_t len,
                     msm_tier_entry_t *out, char *buf)
{
    entry_meta(e, &out->meta);
    out->touched = e->touched;
    out->len = len;
    buf[len] = '\0';
    if (e->state != STATE_FULL) {
        return MSM_TIER_MISS;
    }
    return e->kind == MSM_COPY_DESTROYED ? MSM_TIER_DESTROYED
         : e->kind == MSM_COPY_SESSION ? MSM_TIER_HIT : MSM_TIER_MISS;
}

/* The seqlock read of one slot: NOT_HERE if it holds another key (or was
 * being changed to or from another key: a miss either way), else an
 * msm_tier_get_e. */
static int slot_read(const slot_t *s, const msm_tier_key_t *key,
                     apr_size_t payload_max, msm_tier_entry_t *out,
                     char *buf, apr_size_t bufsize)
{
    slot_entry_t e;
    int tries;

    for (tries = 0; tries < READ_TRIES; tries++) {
        /* Acquire: what we copy next was written no earlier than the
         * write that left this counter (its release store). */
        apr_uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        apr_size_t len;

        if (seq & 1) {
            cpu_relax();
            continue;
        }
        entry_load(s, &e);
        if (!entry_has_key(&e, key)) {
            return NOT_HERE;
        }
        /* e may be torn until the counter is checked: bound the copy */
        len = e.state == STATE_FULL && e.kind == MSM_COPY_SESSION
              ? (e.len < payload_max ? e.len : payload_max) : 0;
        payload_load(buf, s->payload, len < bufsize ? len : 0);
        /* Acquire fence: the copy is done before the counter is read
         * again. If any word came from a writer that entered after us,
         * that writer's release fence (write_begin) makes its odd
         * counter visible here. */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == seq) {
            return len < bufsize ? entry_out(&e, len, out, buf)
                                 : MSM_TIER_MISS;
        }
    }
    return MSM_TIER_MISS;
}

/* Hits write the slot's line at most once a second. */
static void mark_used(slot_t *s, apr_time_t now)
{
    apr_uint32_t sec = (apr_uint32_t)apr_time_sec(now);

    if (sec > __atomic_load_n(&s->used, __ATOMIC_RELAXED)) {
        __atomic_store_n(&s->used, sec, __ATOMIC_RELAXED);
    }
}

msm_tier_get_e msm_tier_get(msm_tier_t *t, const msm_tier_key_t *key,
                            apr_time_t now, msm_tier_entry_t *e,
                            char *buf, apr_size_t bufsize)
{
    place_t at = locate(t, key);
    int way;

    for (way = 0; way < MSM_TIER_WAYS; way++) {
        if (__atomic_load_n(&at.bh->tag[way], __ATOMIC_RELAXED) == at.tag) {
            slot_t *s = slot_at(t, at.bh, way);
            int found = slot_read(s, key, msm_tier_payload_max(t), e, buf,
                                  bufsize);
            if (found != NOT_HERE) {
                if (found != MSM_TIER_MISS) {
                    mark_used(s, now);
                }
                return (msm_tier_get_e)found;
            }
        }
    }
    return MSM_TIER_MISS;
}

/* ---- writers ---- */

static apr_uint32_t write_begin(slot_t *s)
{
    apr_uint32_t odd = __atomic_load_n(&s->seq, __ATOMIC_RELAXED) + 1;

    __atomic_store_n(&s->seq, odd, __ATOMIC_RELAXED);
    /* Release fence: the odd counter is ordered before every store that
     * follows, so a reader that copies any of them sees the counter
     * changed when it checks again. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return odd;
}

static void write_end(slot_t *s, apr_uint32_t odd)
{
    /* Release: the slot's stores are visible before the even counter. */
    __atomic_store_n(&s->seq, odd + 1, __ATOMIC_RELEASE);
}

/* Writes e (and payload unless NULL) into the slot at way. */
static void slot_write(bucket_head_t *bh, slot_t *s, int way,
                       apr_uint32_t tag, const slot_entry_t *e,
                       const char *payload)
{
    apr_uint32_t odd = write_begin(s);

    entry_store(s, e);
    if (msm_tier_test_hook) {
        msm_tier_test_hook();
    }
    if (payload) {
        payload_store(s->payload, payload, e->len);
    }
    __atomic_store_n(&bh->tag[way], tag, __ATOMIC_RELAXED);
    write_end(s, odd);
}

static int owner_is_dead(apr_uint32_t pid)
{
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* A dead writer may have left one slot odd (half written): empty it. */
static void repair_bucket(msm_tier_t *t, bucket_head_t *bh)
{
    slot_entry_t empty;
    int way;

    /* The owner is gone (reaped); order its last stores before ours. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memset(&empty, 0, sizeof(empty));
    for (way = 0; way < MSM_TIER_WAYS; way++) {
        slot_t *s = slot_at(t, bh, way);
        apr_uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        if (seq & 1) {
            entry_store(s, &empty);
            __atomic_store_n(&bh->tag[way], 0, __ATOMIC_RELAXED);
            write_end(s, seq);
        }
    }
    __atomic_fetch_add(&t->recovered, 1, __ATOMIC_RELAXED);
}

/* Takes the lock from a dead owner; 1 if this caller did. */
static int take_over(msm_tier_t *t, bucket_head_t *bh, apr_uint32_t owner,
                     apr_uint32_t me)
{
    if (!owner_is_dead(owner)
        || !__atomic_compare_exchange_n(&bh->lock, &owner, me, 0,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return 0;
    }
    repair_bucket(t, bh);
    return 1;
}

static void lock_backoff(unsigned int round)
{
    if (round < SPIN_ROUNDS) {
        cpu_relax();
    }
    else if (round < SPIN_ROUNDS + YIELD_ROUNDS) {
        sched_yield();
    }
    else {
        apr_sleep(SLEEP_US);
    }
}

static void lock_bucket(msm_tier_t *t, bucket_head_t *bh)
{
    apr_uint32_t me = (apr_uint32_t)getpid();
    unsigned int round;

    for (round = 0;; round++) {
        apr_uint32_t owner = __atomic_load_n(&bh->lock, __ATOMIC_RELAXED);
        /* Acquire: the previous owner's stores (released by its unlock)
         * happen before ours. */
        if (owner == 0
            && __atomic_compare_exchange_n(&bh->lock, &owner, me, 0,
                                           __ATOMIC_ACQUIRE,
                                           __ATOMIC_RELAXED)) {
            return;
        }
        if (owner != 0 && round >= SPIN_ROUNDS
            && take_over(t, bh, owner, me)) {
            return;
        }
        lock_backoff(round);
    }
}

static void unlock_bucket(bucket_head_t *bh)
{
    __atomic_store_n(&bh->lock, 0, __ATOMIC_RELEASE);
}

/* The way holding key, its entry in *e; -1 if none. Under the lock. */
static int find_way(const msm_tier_t *t, bucket_head_t *bh,
                    const place_t *at, const msm_tier_key_t *key,
                    slot_entry_t *e)
{
    int way;

    for (way = 0; way < MSM_TIER_WAYS; way++) {
        if (__atomic_load_n(&bh->tag[way], __ATOMIC_RELAXED) == at->tag) {
            entry_load(slot_at(t, bh, way), e);
            if (entry_has_key(e, key)) {
                return way;
            }
        }
    }
    return -1;
}

/* An empty way, else the least recently used one. Under the lock. */
static int take_way(msm_tier_t *t, bucket_head_t *bh)
{
    apr_uint32_t oldest = 0;
    int way, victim = -1;

    for (way = 0; way < MSM_TIER_WAYS; way++) {
        apr_uint32_t used;
        if (__atomic_load_n(&bh->tag[way], __ATOMIC_RELAXED) == 0) {
            return way;
        }
        used = __atomic_load_n(&slot_at(t, bh, way)->used, __ATOMIC_RELAXED);
        if (victim < 0 || used < oldest) {
            victim = way;
            oldest = used;
        }
    }
    __atomic_fetch_add(&t->evicted, 1, __ATOMIC_RELAXED);
    return victim;
}

static int may_replace(const msm_copy_meta_t *incoming,
                       const slot_entry_t *held)
{
    msm_copy_meta_t m;

    entry_meta(held, &m);
    return msm_copy_supersedes(incoming, &m);
}

msm_tier_put_e msm_tier_put(msm_tier_t *t, const msm_tier_key_t *key,
                            const msm_copy_meta_t *meta, apr_time_t touched,
                            const char *payload, apr_size_t len)
{
    place_t at = locate(t, key);
    slot_entry_t held, e;
    msm_tier_put_e result;
    slot_t *s;
    int way;

    lock_bucket(t, at.bh);
    way = find_way(t, at.bh, &at, key, &held);
    if (way >= 0 && !may_replace(meta, &held)) {
        unlock_bucket(at.bh);
        __atomic_fetch_add(&t->refused, 1, __ATOMIC_RELAXED);
        return MSM_TIER_REFUSED;
    }
    if (way < 0) {
        way = take_way(t, at.bh);
    }
    result = entry_fill(&e, key, meta, touched, len, msm_tier_payload_max(t));
    s = slot_at(t, at.bh, way);
    slot_write(at.bh, s, way, at.tag, &e, payload);
    __atomic_store_n(&s->used, (apr_uint32_t)apr_time_sec(touched),
                     __ATOMIC_RELAXED);
    unlock_bucket(at.bh);
    if (result == MSM_TIER_MARKED) {
        __atomic_fetch_add(&t->marked, 1, __ATOMIC_RELAXED);
    }
    return result;
}

static int holds_copy(const slot_entry_t *e, const msm_copy_meta_t *meta)
{
    msm_copy_meta_t m;

    entry_meta(e, &m);
    return e->state == STATE_FULL && e->kind == meta->kind
           && msm_copy_order(meta, &m) == 0;
}

int msm_tier_touch(msm_tier_t *t, const msm_tier_key_t *key,
                   const msm_copy_meta_t *meta, apr_time_t touched)
{
    place_t at = locate(t, key);
    slot_entry_t e;
    int way, done;

    lock_bucket(t, at.bh);
    way = find_way(t, at.bh, &at, key, &e);
    done = way >= 0 && holds_copy(&e, meta) && touched > e.touched;
    if (done) {
        slot_t *s = slot_at(t, at.bh, way);
        e.touched = touched;
        slot_write(at.bh, s, way, at.tag, &e, NULL);
        mark_used(s, touched);
    }
    unlock_bucket(at.bh);
    return done;
}

int msm_tier_recover(msm_tier_t *t)
{
    apr_uint32_t me = (apr_uint32_t)getpid(), b;
    int recovered = 0;

    for (b = 0; b < t->buckets; b++) {
        bucket_head_t *bh = bucket_at(t, b);
        apr_uint32_t owner = __atomic_load_n(&bh->lock, __ATOMIC_RELAXED);
        if (owner != 0 && take_over(t, bh, owner, me)) {
            unlock_bucket(bh);
            recovered++;
        }
    }
    return recovered;
}

void msm_tier_stats(const msm_tier_t *t, msm_tier_stats_t *out)
{
    apr_uint32_t b;
    int way;

    memset(out, 0, sizeof(*out));
    out->slots = t->buckets * MSM_TIER_WAYS;
    out->slot_bytes = t->slot_bytes;
    out->payload_max = msm_tier_payload_max(t);
    for (b = 0; b < t->buckets; b++) {
        bucket_head_t *bh = bucket_at(t, b);
        for (way = 0; way < MSM_TIER_WAYS; way++) {
            out->in_use += __atomic_load_n(&bh->tag[way], __ATOMIC_RELAXED)
                           != 0;
        }
    }
    out->evicted = __atomic_load_n(&t->evicted, __ATOMIC_RELAXED);
    out->marked = __atomic_load_n(&t->marked, __ATOMIC_RELAXED);
    out->refused = __atomic_load_n(&t->refused, __ATOMIC_RELAXED);
    out->recovered = __atomic_load_n(&t->recovered, __ATOMIC_RELAXED);
}
