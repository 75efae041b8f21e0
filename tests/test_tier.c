/* msm_tier: sizes, format/attach, reads, the put rule, touch, eviction,
 * and writers that die or stop holding a bucket lock. */
#include "unit.h"
#include "msm_tier.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#define SLOT 256
#define T0 apr_time_from_sec(1700000000)

static char big[MSM_TIER_MAX_SLOT_BYTES + 1];   /* payload source */

/* A table in anonymous shared memory, as httpd's parent makes it (forked
 * children share it). */
static msm_tier_t *make_tier(apr_pool_t *p, apr_uint32_t slots,
                             apr_size_t slot_bytes)
{
    apr_size_t bytes = msm_tier_bytes(slots, slot_bytes);
    apr_shm_t *shm;
    msm_tier_t *t;

    if (apr_shm_create(&shm, bytes, NULL, p) != APR_SUCCESS) {
        fprintf(stderr, "apr_shm_create(%lu) failed\n", (unsigned long)bytes);
        exit(2);
    }
    t = msm_tier_format(apr_shm_baseaddr_get(shm), bytes, slot_bytes);
    if (t == NULL) {
        fprintf(stderr, "msm_tier_format(%lu, %lu) failed\n",
                (unsigned long)bytes, (unsigned long)slot_bytes);
        exit(2);
    }
    return t;
}

static msm_tier_key_t key_of(apr_uint64_t scope, unsigned int n)
{
    msm_tier_key_t k;
    unsigned int i;

    k.scope = scope;
    for (i = 0; i < sizeof(k.id); i++) {
        k.id[i] = (unsigned char)(n * 131u + i * 17u + (n >> 8));
    }
    return k;
}

static msm_copy_meta_t meta_of(char kind, apr_uint64_t version,
                               apr_time_t written)
{
    msm_copy_meta_t m;

    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.version = version;
    m.written = written;
    if (kind == MSM_COPY_SESSION) {
        apr_cpystrn(m.primary, "n1", sizeof(m.primary));
    }
    return m;
}

#define S(v) meta_of(MSM_COPY_SESSION, (v), T0)
#define D(v) meta_of(MSM_COPY_DESTROYED, (v), T0)

static msm_tier_put_e put_text(msm_tier_t *t, const msm_tier_key_t *k,
                               msm_copy_meta_t m, const char *text)
{
    return msm_tier_put(t, k, &m, T0, text, strlen(text));
}

static msm_tier_put_e put_len(msm_tier_t *t, const msm_tier_key_t *k,
                              msm_copy_meta_t m, apr_size_t len)
{
    return msm_tier_put(t, k, &m, T0, big, len);
}

/* get into a buffer of the right size */
static msm_tier_get_e get(msm_tier_t *t, const msm_tier_key_t *k,
                          msm_tier_entry_t *e, char *buf)
{
    return msm_tier_get(t, k, T0, e, buf, msm_tier_payload_max(t) + 1);
}

static void test_sizes(apr_pool_t *p)
{
    static const struct {
        apr_uint64_t bytes, slot_bytes;
        const char *err_has;            /* NULL: valid */
        apr_uint32_t slots;
    } cases[] = {
        { MSM_TIER_DEFAULT_BYTES, MSM_TIER_DEFAULT_SLOT_BYTES, NULL, 32512 },
        { 16 << 20, 2048, NULL, 8160 },
        { 192 + 64 + 8 * 128, 128, NULL, 8 },
        { 192 + 64 + 8 * 128 - 1, 128, "hold no table", 0 },
        { 192 + 2 * (64 + 8 * 128) - 1, 128, NULL, 8 },
        { 1 << 20, 100, "multiple of 64", 0 },
        { 1 << 20, 64, "from 128 to 65536", 0 },
        { 1 << 20, 0, "slot size 0", 0 },
        { 64 << 20, 65536 + 64, "multiple of 64 from 128", 0 },
        { 64 << 20, 65536, NULL, 1016 },
        { 0, 1024, "hold no table", 0 },
        { MSM_TIER_MAX_BYTES + 1, 1024, "more than the", 0 },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *err = msm_tier_check_size(p, cases[i].bytes,
                                              cases[i].slot_bytes);
        apr_uint32_t slots = cases[i].bytes <= APR_SIZE_MAX
            ? msm_tier_slots((apr_size_t)cases[i].bytes,
                             (apr_size_t)cases[i].slot_bytes) : 0;
        if (cases[i].err_has) {
            CHECK_MSG(err && strstr(err, cases[i].err_has),
                      "case %lu: '%s' lacks '%s'", (unsigned long)i,
                      err ? err : "(valid)", cases[i].err_has);
        }
        else {
            CHECK_MSG(err == NULL, "case %lu: %s", (unsigned long)i, err);
        }
        CHECK_MSG(slots == cases[i].slots, "case %lu: %lu slots, not %lu",
                  (unsigned long)i, (unsigned long)slots,
                  (unsigned long)cases[i].slots);
    }
    /* bytes() is what slots() inverts: whole buckets of 8 */
    CHECK_INT_EQ(msm_tier_bytes(1, 128), 192 + 64 + 8 * 128);
    CHECK_INT_EQ(msm_tier_bytes(8, 128), 192 + 64 + 8 * 128);
    CHECK_INT_EQ(msm_tier_bytes(9, 128), 192 + 2 * (64 + 8 * 128));
    CHECK_INT_EQ(msm_tier_bytes(0, 128), 192 + 64 + 8 * 128);
    CHECK_INT_EQ(msm_tier_slots(msm_tier_bytes(1000, 1024), 1024), 1000);
    CHECK_INT_EQ(msm_tier_slots(msm_tier_bytes(1001, 1024), 1024), 1008);
}

static void test_format_attach(apr_pool_t *p)
{
    apr_size_t bytes = msm_tier_bytes(64, SLOT);
    char *raw = apr_palloc(p, bytes + 64);
    char *mem = raw + (64 - (apr_uintptr_t)raw % 64);
    msm_tier_key_t k = key_of(1, 1);
    msm_tier_entry_t e;
    char buf[SLOT];
    const char *why = "unset";
    msm_tier_t *t;

    CHECK(msm_tier_format(mem, bytes, 100) == NULL);
    CHECK(msm_tier_format(mem, 100, SLOT) == NULL);
    CHECK(msm_tier_format(NULL, bytes, SLOT) == NULL);
    /* the table starts on the block's first cache line */
    memset(mem, 0x5a, bytes);
    t = msm_tier_format(mem + 8, bytes, SLOT);
    CHECK(t == (msm_tier_t *)(mem + 64));
    CHECK(msm_tier_attach(mem + 8, bytes, SLOT, &why) == t);
    CHECK(msm_tier_attach(mem, bytes, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "not a formatted table");
    t = msm_tier_format(mem, bytes, SLOT);
    if (!CHECK_OK(t == (msm_tier_t *)mem)) {
        return;
    }
    CHECK_INT_EQ(msm_tier_payload_max(t), SLOT - 80);
    CHECK_INT_EQ(put_text(t, &k, S(1), "kept"), MSM_TIER_STORED);

    /* the same sizes attach, and keep the entries (a graceful restart) */
    CHECK(msm_tier_attach(mem, bytes, SLOT, &why) == t);
    CHECK(why == NULL);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "kept");
    CHECK(msm_tier_attach(mem, bytes, SLOT * 2, &why) == NULL);
    CHECK_STR_EQ(why, "the slot size changed");
    CHECK(msm_tier_attach(mem, bytes - 64, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "the table size changed");
    CHECK(msm_tier_attach(mem, bytes + 4096, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "the table size changed");
    CHECK(msm_tier_attach(NULL, bytes, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "no usable memory");
    mem[4]++;                           /* the layout version */
    CHECK(msm_tier_attach(mem, bytes, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "the table has another layout");
    mem[4]--;
    mem[0]++;                           /* the magic */
    CHECK(msm_tier_attach(mem, bytes, SLOT, &why) == NULL);
    CHECK_STR_EQ(why, "not a formatted table");
    mem[0]--;
    CHECK(msm_tier_attach(mem, bytes, SLOT, &why) == t);
    /* formatting again empties it */
    CHECK(msm_tier_format(mem, bytes, SLOT) == t);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
}

static void test_hit_miss(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, 64, SLOT);
    msm_tier_key_t k = key_of(7, 1), other = key_of(7, 2);
    msm_copy_meta_t m = meta_of(MSM_COPY_SESSION, 42, T0 + 5);
    msm_tier_entry_t e;
    msm_tier_stats_t st;
    char buf[SLOT];

    memset(buf, 'x', sizeof(buf));
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
    apr_cpystrn(m.primary, "node_16_chars_xx", sizeof(m.primary));
    CHECK_INT_EQ(msm_tier_put(t, &k, &m, T0 + 9, "a=1&b=2", 7),
                 MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_HIT);
    CHECK_INT_EQ(e.len, 7);
    CHECK_STR_EQ(buf, "a=1&b=2");               /* NUL-terminated */
    CHECK_INT_EQ(e.meta.kind, MSM_COPY_SESSION);
    CHECK_INT_EQ(e.meta.version, 42);
    CHECK_INT_EQ(e.meta.written, T0 + 5);
    CHECK_STR_EQ(e.meta.primary, "node_16_chars_xx");
    CHECK_INT_EQ(e.touched, T0 + 9);
    CHECK_INT_EQ(get(t, &other, &e, buf), MSM_TIER_MISS);
    /* a buffer too small for the payload and its NUL: a miss */
    CHECK_INT_EQ(msm_tier_get(t, &k, T0, &e, buf, 7), MSM_TIER_MISS);
    CHECK_INT_EQ(msm_tier_get(t, &k, T0, &e, buf, 8), MSM_TIER_HIT);
    /* an empty payload */
    CHECK_INT_EQ(put_text(t, &other, S(1), ""), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &other, &e, buf), MSM_TIER_HIT);
    CHECK_INT_EQ(e.len, 0);
    CHECK_STR_EQ(buf, "");
    /* a payload of every length up to the slot's capacity, exactly */
    {
        apr_size_t len, max = msm_tier_payload_max(t);
        int bad = 0;
        for (len = 0; len <= max; len++) {
            msm_tier_key_t kl = key_of(8, (unsigned int)len);
            if (put_len(t, &kl, S(1), len) != MSM_TIER_STORED
                || get(t, &kl, &e, buf) != MSM_TIER_HIT || e.len != len
                || memcmp(buf, big, len) != 0 || buf[len] != '\0') {
                bad++;
            }
        }
        CHECK_MSG(bad == 0, "%d lengths failed", bad);
    }
    msm_tier_stats(t, &st);
    CHECK_INT_EQ(st.slots, 64);
    CHECK_INT_EQ(st.in_use, 64);        /* full by now */
    CHECK_INT_EQ(st.slot_bytes, SLOT);
    CHECK_INT_EQ(st.payload_max, SLOT - 80);
}

static void test_scope(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, 64, SLOT);
    msm_tier_key_t a = key_of(1, 5), b = key_of(2, 5);
    msm_tier_entry_t e;
    char buf[SLOT];

    /* same id, same meta, different scope: never the same entry */
    CHECK_INT_EQ(put_text(t, &a, S(3), "scope one"), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &b, &e, buf), MSM_TIER_MISS);
    CHECK_INT_EQ(put_text(t, &b, S(3), "scope two"), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &a, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "scope one");
    CHECK_INT_EQ(get(t, &b, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "scope two");
    /* what happens to one leaves the other alone */
    CHECK_INT_EQ(put_text(t, &a, D(4), ""), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &a, &e, buf), MSM_TIER_DESTROYED);
    CHECK_INT_EQ(get(t, &b, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "scope two");
    CHECK_INT_EQ(put_text(t, &b, S(2), "older"), MSM_TIER_REFUSED);
    CHECK_INT_EQ(put_text(t, &b, S(9), "newer two"), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &a, &e, buf), MSM_TIER_DESTROYED);
    /* keys that differ in one id byte or one scope bit */
    {
        msm_tier_key_t c = b, d = b;
        c.id[15] ^= 1;
        d.scope ^= APR_UINT64_C(1) << 63;
        CHECK_INT_EQ(get(t, &c, &e, buf), MSM_TIER_MISS);
        CHECK_INT_EQ(get(t, &d, &e, buf), MSM_TIER_MISS);
    }
}

/* The put rule: what a second put does to the first one's entry. */
static void test_put_rule(apr_pool_t *p)
{
    apr_size_t max;
    static const struct {
        const char *name;
        char kind1; apr_uint64_t v1; apr_time_t w1; int big1;
        char kind2; apr_uint64_t v2; apr_time_t w2; int big2;
        msm_tier_put_e put2;
        msm_tier_get_e got;             /* after both */
        apr_uint64_t got_version;       /* of the entry, when not a miss */
    } cases[] = {
        { "newer version", 'S', 5, 10, 0, 'S', 6, 1, 0,
          MSM_TIER_STORED, MSM_TIER_HIT, 6 },
        { "older version", 'S', 6, 10, 0, 'S', 5, 99, 0,
          MSM_TIER_REFUSED, MSM_TIER_HIT, 6 },
        { "same copy", 'S', 5, 10, 0, 'S', 5, 10, 0,
          MSM_TIER_REFUSED, MSM_TIER_HIT, 5 },
        { "same version, later write", 'S', 5, 10, 0, 'S', 5, 11, 0,
          MSM_TIER_STORED, MSM_TIER_HIT, 5 },
        { "same version, earlier write", 'S', 5, 10, 0, 'S', 5, 9, 0,
          MSM_TIER_REFUSED, MSM_TIER_HIT, 5 },
        { "tombstone over newer session", 'S', 9, 10, 0, 'D', 1, 1, 0,
          MSM_TIER_STORED, MSM_TIER_DESTROYED, 1 },
        { "session over tombstone", 'D', 1, 1, 0, 'S', 9, 99, 0,
          MSM_TIER_REFUSED, MSM_TIER_DESTROYED, 1 },
        { "tombstone over tombstone", 'D', 1, 1, 0, 'D', 2, 2, 0,
          MSM_TIER_REFUSED, MSM_TIER_DESTROYED, 1 },
        { "newer too large: marker", 'S', 5, 10, 0, 'S', 6, 10, 1,
          MSM_TIER_MARKED, MSM_TIER_MISS, 0 },
        { "older after a marker", 'S', 6, 10, 1, 'S', 5, 10, 0,
          MSM_TIER_REFUSED, MSM_TIER_MISS, 0 },
        { "same copy after a marker", 'S', 6, 10, 1, 'S', 6, 10, 0,
          MSM_TIER_REFUSED, MSM_TIER_MISS, 0 },
        { "newer after a marker", 'S', 6, 10, 1, 'S', 7, 10, 0,
          MSM_TIER_STORED, MSM_TIER_HIT, 7 },
        { "marker over marker", 'S', 6, 10, 1, 'S', 7, 10, 1,
          MSM_TIER_MARKED, MSM_TIER_MISS, 0 },
        { "tombstone over a marker", 'S', 6, 10, 1, 'D', 1, 1, 0,
          MSM_TIER_STORED, MSM_TIER_DESTROYED, 1 },
        { "tombstone ignores its payload", 'S', 6, 10, 0, 'D', 7, 1, 1,
          MSM_TIER_STORED, MSM_TIER_DESTROYED, 7 },
    };
    msm_tier_t *t = make_tier(p, 1024, SLOT);
    apr_size_t i;

    max = msm_tier_payload_max(t);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msm_tier_key_t k = key_of(3, (unsigned int)i);
        msm_copy_meta_t m1 = meta_of(cases[i].kind1, cases[i].v1,
                                     cases[i].w1);
        msm_copy_meta_t m2 = meta_of(cases[i].kind2, cases[i].v2,
                                     cases[i].w2);
        apr_size_t len1 = cases[i].big1 ? max + 1 : 10;
        apr_size_t len2 = cases[i].big2 ? max + 1 : 20;
        msm_tier_put_e r1 = put_len(t, &k, m1, len1);
        msm_tier_put_e r2 = put_len(t, &k, m2, len2);
        msm_tier_entry_t e;
        char buf[SLOT];
        msm_tier_get_e got = get(t, &k, &e, buf);

        CHECK_MSG(r1 == (cases[i].big1 ? MSM_TIER_MARKED : MSM_TIER_STORED),
                  "%s: first put %d", cases[i].name, (int)r1);
        CHECK_MSG(r2 == cases[i].put2, "%s: put %d, expected %d",
                  cases[i].name, (int)r2, (int)cases[i].put2);
        CHECK_MSG(got == cases[i].got, "%s: get %d, expected %d",
                  cases[i].name, (int)got, (int)cases[i].got);
        if (got != MSM_TIER_MISS) {
            CHECK_MSG(e.meta.version == cases[i].got_version,
                      "%s: version %lu", cases[i].name,
                      (unsigned long)e.meta.version);
        }
        if (got == MSM_TIER_HIT) {
            apr_size_t want = r2 == MSM_TIER_STORED ? 20 : 10;
            CHECK_MSG(e.len == want && memcmp(buf, big, want) == 0,
                      "%s: payload of %lu bytes", cases[i].name,
                      (unsigned long)e.len);
        }
        if (got == MSM_TIER_DESTROYED) {
            CHECK_MSG(e.len == 0 && e.meta.kind == MSM_COPY_DESTROYED,
                      "%s: tombstone with %lu bytes", cases[i].name,
                      (unsigned long)e.len);
        }
    }
}

static void test_touch(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, 64, SLOT);
    msm_tier_key_t k = key_of(4, 1), gone = key_of(4, 2), big_k = key_of(4, 3);
    msm_copy_meta_t m = S(5), later = meta_of(MSM_COPY_SESSION, 5, T0 + 1);
    msm_copy_meta_t as_tomb = D(5), tomb = D(2);
    msm_tier_entry_t e;
    char buf[SLOT];

    CHECK_INT_EQ(put_text(t, &k, m, "v5"), MSM_TIER_STORED);
    CHECK_INT_EQ(msm_tier_touch(t, &k, &m, T0 + 100), 1);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_HIT);
    CHECK_INT_EQ(e.touched, T0 + 100);
    CHECK_STR_EQ(buf, "v5");
    /* not the exact copy: another version, write time or kind */
    {
        msm_copy_meta_t older = S(4), newer = S(6);
        CHECK_INT_EQ(msm_tier_touch(t, &k, &older, T0 + 200), 0);
        CHECK_INT_EQ(msm_tier_touch(t, &k, &newer, T0 + 200), 0);
    }
    CHECK_INT_EQ(msm_tier_touch(t, &k, &later, T0 + 200), 0);
    CHECK_INT_EQ(msm_tier_touch(t, &k, &as_tomb, T0 + 200), 0);
    /* never back in time */
    CHECK_INT_EQ(msm_tier_touch(t, &k, &m, T0 + 50), 0);
    CHECK_INT_EQ(msm_tier_touch(t, &k, &m, T0 + 100), 0);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_HIT);
    CHECK_INT_EQ(e.touched, T0 + 100);
    /* no entry; a marker (no copy to serve) */
    CHECK_INT_EQ(msm_tier_touch(t, &gone, &m, T0 + 300), 0);
    CHECK_INT_EQ(put_len(t, &big_k, m, msm_tier_payload_max(t) + 1),
                 MSM_TIER_MARKED);
    CHECK_INT_EQ(msm_tier_touch(t, &big_k, &m, T0 + 300), 0);
    /* a tombstone is its own exact copy */
    CHECK_INT_EQ(put_text(t, &gone, tomb, ""), MSM_TIER_STORED);
    CHECK_INT_EQ(msm_tier_touch(t, &gone, &tomb, T0 + 300), 1);
    CHECK_INT_EQ(get(t, &gone, &e, buf), MSM_TIER_DESTROYED);
    CHECK_INT_EQ(e.touched, T0 + 300);
}

/* One bucket: 8 slots that every key shares. */
static void test_eviction(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, MSM_TIER_WAYS, SLOT);
    msm_tier_entry_t e;
    msm_tier_stats_t st;
    char buf[SLOT];
    unsigned int i, present;

    for (i = 0; i < MSM_TIER_WAYS; i++) {
        msm_tier_key_t k = key_of(5, i);
        msm_copy_meta_t m = S(1);
        CHECK_INT_EQ(msm_tier_put(t, &k, &m, T0 + apr_time_from_sec(i),
                                  "x", 1), MSM_TIER_STORED);
    }
    /* full: updates and refusals do not evict or duplicate */
    for (i = 0; i < MSM_TIER_WAYS; i++) {
        msm_tier_key_t k = key_of(5, i);
        msm_copy_meta_t m = S(2);
        CHECK_INT_EQ(msm_tier_put(t, &k, &m, T0 + apr_time_from_sec(i),
                                  "y", 1), MSM_TIER_STORED);
        CHECK_INT_EQ(msm_tier_put(t, &k, &m, T0 + apr_time_from_sec(i),
                                  "y", 1), MSM_TIER_REFUSED);
    }
    msm_tier_stats(t, &st);
    CHECK_INT_EQ(st.in_use, MSM_TIER_WAYS);
    CHECK_INT_EQ(st.evicted, 0);
    CHECK_INT_EQ(st.refused, MSM_TIER_WAYS);

    /* key 0 was put first, but is read last: key 1 goes */
    CHECK_INT_EQ(msm_tier_get(t, &(msm_tier_key_t){0}, T0, &e, buf,
                              sizeof(buf)), MSM_TIER_MISS);
    {
        msm_tier_key_t k0 = key_of(5, 0), k1 = key_of(5, 1);
        msm_tier_key_t k8 = key_of(5, 8);
        msm_copy_meta_t m = S(1);
        CHECK_INT_EQ(msm_tier_get(t, &k0, T0 + apr_time_from_sec(20), &e,
                                  buf, sizeof(buf)), MSM_TIER_HIT);
        CHECK_INT_EQ(msm_tier_put(t, &k8, &m, T0 + apr_time_from_sec(21),
                                  "z", 1), MSM_TIER_STORED);
        CHECK_INT_EQ(get(t, &k0, &e, buf), MSM_TIER_HIT);
        CHECK_INT_EQ(get(t, &k1, &e, buf), MSM_TIER_MISS);
        CHECK_INT_EQ(get(t, &k8, &e, buf), MSM_TIER_HIT);
    }
    /* a key read every second survives a stream of new keys */
    for (i = 9; i < 40; i++) {
        msm_tier_key_t k0 = key_of(5, 0), k = key_of(5, i);
        msm_copy_meta_t m = S(1);
        apr_time_t now = T0 + apr_time_from_sec(21 + i);
        CHECK(msm_tier_get(t, &k0, now, &e, buf, sizeof(buf))
              == MSM_TIER_HIT);
        CHECK(msm_tier_put(t, &k, &m, now, "n", 1) == MSM_TIER_STORED);
    }
    for (i = present = 0; i < 40; i++) {
        msm_tier_key_t k = key_of(5, i);
        present += get(t, &k, &e, buf) == MSM_TIER_HIT;
    }
    CHECK_INT_EQ(present, MSM_TIER_WAYS);
    {
        msm_tier_key_t k0 = key_of(5, 0), k39 = key_of(5, 39);
        CHECK_INT_EQ(get(t, &k0, &e, buf), MSM_TIER_HIT);
        CHECK_INT_EQ(get(t, &k39, &e, buf), MSM_TIER_HIT);
    }
    msm_tier_stats(t, &st);
    CHECK_INT_EQ(st.in_use, MSM_TIER_WAYS);
    CHECK_INT_EQ(st.evicted, 1 + 31);
}

/* ---- writers that die or stop inside their critical section ---- */

static int hook_fd = -1;

static void die_in_hook(void)
{
    _exit(0);
}

static void stop_in_hook(void)
{
    char c = 'x';

    if (write(hook_fd, &c, 1) != 1) {
        _exit(3);
    }
    for (;;) {
        pause();
    }
}

/* A child that puts k (version v) with hook set, and dies or stops in it. */
static pid_t writer_child(msm_tier_t *t, const msm_tier_key_t *k,
                          apr_uint64_t v, void (*hook)(void))
{
    pid_t pid = fork();

    if (pid == 0) {
        msm_copy_meta_t m = S(v);
        msm_tier_test_hook = hook;
        msm_tier_put(t, k, &m, T0, "half written", 12);
        _exit(4);                       /* the hook did not run */
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

static void test_dead_writer(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, MSM_TIER_WAYS, SLOT);
    msm_tier_key_t k = key_of(6, 1), j = key_of(6, 2), i3 = key_of(6, 3);
    msm_tier_entry_t e;
    msm_tier_stats_t st;
    char buf[SLOT];
    pid_t pid;
    int status;

    CHECK_INT_EQ(put_text(t, &k, S(1), "v1"), MSM_TIER_STORED);
    CHECK_INT_EQ(put_text(t, &j, S(1), "j1"), MSM_TIER_STORED);
    pid = writer_child(t, &k, 2, die_in_hook);
    status = reap(pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the half-written slot is unreadable; the rest of the bucket reads
     * as before, without waiting */
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
    CHECK_INT_EQ(get(t, &j, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "j1");
    /* the next writer of the bucket takes the lock over and empties the
     * slot: v1 is gone, not back */
    CHECK_INT_EQ(put_text(t, &i3, S(1), "i1"), MSM_TIER_STORED);
    msm_tier_stats(t, &st);
    CHECK_INT_EQ(st.recovered, 1);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
    CHECK_INT_EQ(get(t, &i3, &e, buf), MSM_TIER_HIT);
    CHECK_INT_EQ(put_text(t, &k, S(3), "v3"), MSM_TIER_STORED);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "v3");
    CHECK_INT_EQ(msm_tier_recover(t), 0);

    /* the sweep: a zombie still counts as alive, a reaped owner not */
    pid = writer_child(t, &k, 4, die_in_hook);
    {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        CHECK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0);
    }
    CHECK_INT_EQ(msm_tier_recover(t), 0);
    reap(pid);
    CHECK_INT_EQ(msm_tier_recover(t), 1);
    CHECK_INT_EQ(msm_tier_recover(t), 0);
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
    CHECK_INT_EQ(get(t, &j, &e, buf), MSM_TIER_HIT);
    msm_tier_stats(t, &st);
    CHECK_INT_EQ(st.recovered, 2);
}

typedef struct blocked_put {
    msm_tier_t *t;
    msm_tier_key_t key;
    volatile apr_uint32_t done;
} blocked_put_t;

static void *APR_THREAD_FUNC put_thread(apr_thread_t *th, void *arg)
{
    blocked_put_t *b = arg;
    msm_copy_meta_t m = S(7);

    msm_tier_put(b->t, &b->key, &m, T0, "after the kill", 14);
    apr_atomic_set32(&b->done, 1);
    return NULL;
}

/* A writer stopped in its critical section: readers go on, writers of the
 * bucket wait; kill -9 frees them. */
static void test_killed_writer(apr_pool_t *p)
{
    msm_tier_t *t = make_tier(p, MSM_TIER_WAYS, SLOT);
    msm_tier_key_t k = key_of(7, 1), j = key_of(7, 2);
    blocked_put_t b;
    apr_thread_t *th;
    apr_status_t trv;
    msm_tier_entry_t e;
    char buf[SLOT], c;
    int fds[2], i, status;
    pid_t pid;

    CHECK_INT_EQ(put_text(t, &k, S(1), "v1"), MSM_TIER_STORED);
    CHECK_INT_EQ(put_text(t, &j, S(1), "j1"), MSM_TIER_STORED);
    if (!CHECK_OK(pipe(fds) == 0)) {
        return;
    }
    hook_fd = fds[1];
    pid = writer_child(t, &k, 2, stop_in_hook);
    CHECK(read(fds[0], &c, 1) == 1);    /* it is inside */
    b.t = t;
    b.key = key_of(7, 3);
    b.done = 0;
    apr_thread_create(&th, NULL, put_thread, &b, p);
    for (i = 0; i < 1000; i++) {
        CHECK(get(t, &j, &e, buf) == MSM_TIER_HIT);
        CHECK(get(t, &k, &e, buf) == MSM_TIER_MISS);
    }
    apr_sleep(apr_time_from_msec(200));
    CHECK_INT_EQ(apr_atomic_read32(&b.done), 0);
    kill(pid, SIGKILL);
    status = reap(pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    apr_thread_join(&trv, th);
    CHECK_INT_EQ(apr_atomic_read32(&b.done), 1);
    CHECK_INT_EQ(get(t, &b.key, &e, buf), MSM_TIER_HIT);
    CHECK_STR_EQ(buf, "after the kill");
    CHECK_INT_EQ(get(t, &k, &e, buf), MSM_TIER_MISS);
    CHECK_INT_EQ(get(t, &j, &e, buf), MSM_TIER_HIT);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_tier");
    apr_size_t i;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (char)('a' + i % 26);
    }
    test_sizes(p);
    test_format_attach(p);
    test_hit_miss(p);
    test_scope(p);
    test_put_rule(p);
    test_touch(p);
    test_eviction(p);
    test_dead_writer(p);
    test_killed_writer(p);
    return unit_done();
}
