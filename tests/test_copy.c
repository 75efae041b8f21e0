/* The life-cycle decisions of src/msm_copy.c, as tables of cases: the
 * copy format, which copy wins, what a read does with the answer of the
 * cookie's node and with the answers of all nodes, how a write goes onto
 * a node, and when the cookie changes. */
#include "unit.h"
#include "msm_copy.h"

#include <apr_strings.h>

static apr_pool_t *root;

/* ---- building copies ---- */

static msm_copy_meta_t meta_of(char kind, apr_uint64_t version,
                               apr_time_t written, const char *primary)
{
    msm_copy_meta_t m;

    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.version = version;
    m.written = written;
    apr_cpystrn(m.primary, primary, sizeof(m.primary));
    return m;
}

/* A node's answer: "-" not asked / failed, "0" no key, "?" corrupt,
 * "!" too big, "D<v>" tombstone, "S<v>@<primary>[t<written>]" a session. */
static msm_seen_t seen_of(const char *spec)
{
    msm_seen_t s;
    char *end;

    memset(&s, 0, sizeof(s));
    switch (spec[0]) {
    case '-': s.what = MSM_SEEN_FAILED; break;
    case '0': s.what = MSM_SEEN_NONE; break;
    case '?': s.what = MSM_SEEN_CORRUPT; s.cas = 9; break;
    case '!': s.what = MSM_SEEN_TOOBIG; break;
    case 'D':
        s.what = MSM_SEEN_COPY;
        s.meta = meta_of('D', strtoul(spec + 1, &end, 10), 100, "");
        s.cas = 7;
        break;
    default: {
        const char *at = strchr(spec, '@'), *t;
        char node[MSM_NAME_MAX + 1];
        apr_time_t written = 100;
        apr_size_t n;

        t = strchr(at + 1, 't');
        n = t ? (apr_size_t)(t - at - 1) : strlen(at + 1);
        memcpy(node, at + 1, n);
        node[n] = '\0';
        if (t) {
            written = (apr_time_t)strtoul(t + 1, &end, 10);
        }
        s.what = MSM_SEEN_COPY;
        s.meta = meta_of('S', strtoul(spec + 1, &end, 10), written, node);
        s.cas = 5;
        s.payload = "k=v";
        s.len = 3;
        break;
    }
    }
    return s;
}

/* ---- the format ---- */

static void test_format(void)
{
    msm_copy_meta_t m = meta_of('S', 0x2a, 1700000000123456LL, "n1");
    apr_size_t len;
    char *v = msm_copy_encode(root, &m, "a=1&b=2", 7, &len);
    msm_seen_t s;
    static const char bin[] = "x\ny\0z\r\nEND";

    CHECK_STR_EQ(v, "MSM1 S 000000000000002a 00060a2418202240 n1\na=1&b=2");
    CHECK_INT_EQ(len, strlen(v));
    CHECK(len <= MSM_COPY_HEADER_MAX + 7);
    msm_copy_decode(v, len, &s);
    CHECK_INT_EQ(s.what, MSM_SEEN_COPY);
    CHECK_INT_EQ(s.meta.kind, 'S');
    CHECK(s.meta.version == 0x2a);
    CHECK(s.meta.written == 1700000000123456LL);
    CHECK_STR_EQ(s.meta.primary, "n1");
    CHECK_MEM_EQ(s.payload, s.len, "a=1&b=2", 7);

    /* a payload may hold anything, newlines and NULs included */
    v = msm_copy_encode(root, &m, bin, sizeof(bin), &len);
    msm_copy_decode(v, len, &s);
    CHECK_INT_EQ(s.what, MSM_SEEN_COPY);
    CHECK_MEM_EQ(s.payload, s.len, bin, sizeof(bin));

    /* a tombstone: no payload, no primary, the longest node id */
    m = meta_of('D', 7, 5, "");
    v = msm_copy_encode(root, &m, "ignored", 7, &len);
    CHECK_STR_EQ(v, "MSM1 D 0000000000000007 0000000000000005 -\n");
    msm_copy_decode(v, len, &s);
    CHECK_INT_EQ(s.what, MSM_SEEN_COPY);
    CHECK_INT_EQ(s.meta.kind, 'D');
    CHECK_STR_EQ(s.meta.primary, "");
    CHECK_INT_EQ(s.len, 0);
    m = meta_of('S', 1, 1, "abcdefghijklmnop");
    v = msm_copy_encode(root, &m, "", 0, &len);
    CHECK_INT_EQ(len, MSM_COPY_HEADER_MAX - MSM_NAME_MAX - 1);
    msm_copy_decode(v, len, &s);
    CHECK_STR_EQ(s.meta.primary, "abcdefghijklmnop");
    CHECK_STR_EQ(s.meta.route, "");

    /* a sticky server's write names its route; the longest header */
    apr_cpystrn(m.route, "ABCDEFGHIJKLMNOP", sizeof(m.route));
    v = msm_copy_encode(root, &m, "k=v", 3, &len);
    CHECK_STR_EQ(v, "MSM1 S 0000000000000001 0000000000000001 abcdefghijklmnop"
                    " ABCDEFGHIJKLMNOP\nk=v");
    CHECK_INT_EQ(len, MSM_COPY_HEADER_MAX + 3);
    msm_copy_decode(v, len, &s);
    CHECK_INT_EQ(s.what, MSM_SEEN_COPY);
    CHECK_STR_EQ(s.meta.primary, "abcdefghijklmnop");
    CHECK_STR_EQ(s.meta.route, "ABCDEFGHIJKLMNOP");
    CHECK_MEM_EQ(s.payload, s.len, "k=v", 3);
    /* a tombstone never names one */
    m = meta_of('D', 7, 5, "");
    apr_cpystrn(m.route, "web1", sizeof(m.route));
    v = msm_copy_encode(root, &m, NULL, 0, &len);
    CHECK_STR_EQ(v, "MSM1 D 0000000000000007 0000000000000005 -\n");
}

static void test_corrupt(void)
{
    static const char *const bad[] = {
        "",
        "hello",
        "k=v&user=x",                                           /* 1.x value */
        "MSM1 S 000000000000002a 00060a24181e4240 n1",          /* no LF */
        "MSM2 S 000000000000002a 00060a24181e4240 n1\nx",
        "MSM1 X 000000000000002a 00060a24181e4240 n1\nx",
        "MSM1 S 000000000000002A 00060a24181e4240 n1\nx",       /* upper */
        "MSM1 S 00000000000002a 00060a24181e4240 n1\nx",        /* 15 */
        "MSM1 S 000000000000002a  00060a24181e4240 n1\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 \nx",         /* no node */
        "MSM1 S 000000000000002a 00060a24181e4240 n.1\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 abcdefghijklmnopq\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 -\nx",        /* no primary */
        "MSM1 D 000000000000002a 00060a24181e4240 n1\n",        /* primary */
        "MSM1 D 000000000000002a 00060a24181e4240 -\nx",        /* payload */
        "MSM1 D 000000000000002a 00060a24181e4240 - web1\n",    /* route */
        "MSM1 S 000000000000002a 00060a24181e4240 n1 \nx",      /* empty */
        "MSM1 S 000000000000002a 00060a24181e4240 n1  web1\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 n1 web1 x\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 n1 we.b1\nx",
        "MSM1 S 000000000000002a 00060a24181e4240 n1 abcdefghijklmnopq\nx",
    };
    apr_size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msm_seen_t s;
        memset(&s, 0x55, sizeof(s));
        msm_copy_decode(bad[i], strlen(bad[i]), &s);
        CHECK_MSG(s.what == MSM_SEEN_CORRUPT, "case %d: \"%s\"", (int)i,
                  bad[i]);
        CHECK(s.payload == NULL && s.len == 0 && s.meta.kind == 0);
    }
    /* a NUL inside a name (found by fuzz/fuzz_copy.c) */
    {
        static const char nul_primary[] =
            "MSM1 S 0000000000000001 0000000000000001 5\0\0\nk=v";
        static const char nul_route[] =
            "MSM1 S 0000000000000001 0000000000000001 n1 a\0b\nk=v";
        msm_seen_t s;

        msm_copy_decode(nul_primary, sizeof(nul_primary) - 1, &s);
        CHECK_INT_EQ(s.what, MSM_SEEN_CORRUPT);
        msm_copy_decode(nul_route, sizeof(nul_route) - 1, &s);
        CHECK_INT_EQ(s.what, MSM_SEEN_CORRUPT);
    }
}

/* ---- ordering ---- */

static void test_order(void)
{
    static const struct {
        char ik; apr_uint64_t iv; apr_time_t it;     /* incoming */
        char ek; apr_uint64_t ev; apr_time_t et;     /* existing */
        int order, supersedes;
    } t[] = {
        { 'S', 2, 1, 'S', 1, 9, 1, 1 },     /* higher version wins */
        { 'S', 1, 9, 'S', 2, 1, -1, 0 },    /* an older one never */
        { 'S', 2, 5, 'S', 2, 4, 1, 1 },     /* a tie: the later write */
        { 'S', 2, 5, 'S', 2, 5, 0, 0 },     /* the same write */
        { 'D', 1, 1, 'S', 9, 9, -1, 1 },    /* a tombstone replaces any */
        { 'S', 9, 9, 'D', 1, 1, 1, 0 },     /* and is final */
        { 'D', 9, 9, 'D', 1, 1, 1, 0 },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        msm_copy_meta_t in = meta_of(t[i].ik, t[i].iv, t[i].it, "a");
        msm_copy_meta_t ex = meta_of(t[i].ek, t[i].ev, t[i].et, "b");
        int o = msm_copy_order(&in, &ex);
        CHECK_MSG((o > 0) - (o < 0) == t[i].order, "case %d", (int)i);
        CHECK_MSG(msm_copy_supersedes(&in, &ex) == t[i].supersedes,
                  "case %d", (int)i);
    }
    {
        msm_copy_meta_t any = meta_of('S', 1, 1, "a");
        CHECK(msm_copy_supersedes(&any, NULL));
    }
}

/* ---- reading the cookie's node ---- */

static void test_decide_read(void)
{
    static const struct {
        const char *seen;
        apr_time_t last_failure;
        msm_read_e expect;
        const char *why;
    } t[] = {
        { "S3@a", 0, MSM_READ_SERVE, "its primary copy" },
        { "S3@at200", 100, MSM_READ_SERVE, "written after the failure" },
        { "S3@at100", 100, MSM_READ_SEARCH, "from before the failure" },
        { "S3@at50", 100, MSM_READ_SEARCH, "from before the failure" },
        { "S3@b", 0, MSM_READ_SEARCH, "a backup of b's" },
        { "D4", 0, MSM_READ_GONE, "destroyed" },
        { "D4", 500, MSM_READ_GONE, "destroyed, whenever" },
        { "0", 0, MSM_READ_SEARCH, "lost (restart, eviction)" },
        { "?", 0, MSM_READ_SEARCH, "not a copy" },
        { "-", 0, MSM_READ_SEARCH, "node down or not asked" },
        { "!", 0, MSM_READ_UNREADABLE, "too large here" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        msm_seen_t s = seen_of(t[i].seen);
        CHECK_MSG(msm_decide_read(&s, "a", t[i].last_failure) == t[i].expect,
                  "case %d (%s): %s", (int)i, t[i].seen, t[i].why);
    }
}

/* ---- reading after a search ---- */

static void test_decide_found(void)
{
    static const char *const ids[] = { "a", "b", "c" };
    static const struct {
        const char *seen[3];    /* answers of a, b, c */
        msm_found_e found;
        int newest, primary;
        unsigned int stale;
        const char *why;
        apr_time_t last_failure[3];     /* of a, b, c (0: never) */
        int need_trusted;
    } t[] = {
        { { "0", "0", "0" }, MSM_FOUND_NOTHING, -1, -1, 0, "nowhere", { 0, 0, 0 }, 0 },
        { { "-", "0", "0" }, MSM_FOUND_UNKNOWN, -1, -1, 0,
          "nowhere that answered", { 0, 0, 0 }, 0 },
        { { "0", "!", "S3@a" }, MSM_FOUND_UNKNOWN, -1, -1, 0,
          "an unreadable copy may be the newest", { 0, 0, 0 }, 0 },
        { { "S3@a", "D4", "S3@a" }, MSM_FOUND_GONE, -1, -1, 5,
          "one tombstone is enough; the copies that outlived it get it", { 0, 0, 0 }, 0 },
        { { "-", "S3@a", "D1" }, MSM_FOUND_GONE, -1, -1, 2,
          "even an old tombstone: ids are never reused", { 0, 0, 0 }, 0 },
        { { "D2", "D2", "0" }, MSM_FOUND_GONE, -1, -1, 0, "nothing to repair", { 0, 0, 0 }, 0 },
        /* the primary lost it: restore there */
        { { "0", "S3@a", "0" }, MSM_FOUND_RESTORE, 1, 0, 0,
          "a restarted empty, backup on b", { 0, 0, 0 }, 0 },
        { { "?", "S3@a", "0" }, MSM_FOUND_RESTORE, 1, 0, 0,
          "a holds garbage", { 0, 0, 0 }, 0 },
        { { "S2@a", "S3@a", "0" }, MSM_FOUND_RESTORE, 1, 0, 0,
          "a holds an older copy", { 0, 0, 0 }, 0 },
        /* the primary is down: the holder of the newest copy takes over */
        { { "-", "S3@a", "0" }, MSM_FOUND_MOVE, 1, 1, 0, "a down", { 0, 0, 0 }, 0 },
        { { "-", "S2@a", "S3@a" }, MSM_FOUND_MOVE, 2, 2, 0,
          "the newest backup, not the first", { 0, 0, 0 }, 0 },
        { { "-", "S3@at5", "S3@at9" }, MSM_FOUND_MOVE, 2, 2, 0,
          "a version tie: the later write", { 0, 0, 0 }, 0 },
        /* the newest copy is where its header says */
        { { "S3@b", "S3@b", "0" }, MSM_FOUND_AT_PRIMARY, 0, 1, 0,
          "an old cookie naming a's backup of b", { 0, 0, 0 }, 0 },
        { { "S2@a", "S5@b", "S5@b" }, MSM_FOUND_AT_PRIMARY, 1, 1, 1,
          "a came back with an old primary copy: overwrite it", { 0, 0, 0 }, 0 },
        { { "S5@at50", "S5@at50", "0" }, MSM_FOUND_AT_PRIMARY, 0, 0, 0,
          "a suspect copy confirmed by its backup", { 0, 0, 0 }, 0 },
        { { "S5@at50", "S5@at90", "0" }, MSM_FOUND_RESTORE, 1, 0, 0,
          "a suspect copy a later write of the same version superseded", { 0, 0, 0 }, 0 },
        { { "S4@a", "S6@c", "S5@c" }, MSM_FOUND_RESTORE, 1, 2, 1,
          "c lost its newest copy; a's is stale too", { 0, 0, 0 }, 0 },
        { { "-", "S3@z", "0" }, MSM_FOUND_MOVE, 1, 1, 0,
          "its primary is no longer configured", { 0, 0, 0 }, 0 },
        /* with backups, a live session has a copy written after its node's
         * last failure somewhere; copies that all predate their node's
         * failure may stand against a lost tombstone or newer copy */
        { { "0", "S3@a", "0" }, MSM_FOUND_UNKNOWN, -1, -1, 0,
          "a restarted empty, b's backup predates b's outage",
          { 0, 200, 0 }, 1 },
        { { "0", "S3@a", "0" }, MSM_FOUND_RESTORE, 1, 0, 0,
          "the same without backups: served (nothing else to go by)",
          { 0, 200, 0 }, 0 },
        { { "S3@at50", "S3@at50", "0" }, MSM_FOUND_AT_PRIMARY, 0, 0, 0,
          "a's copy predates a's failure, b's backup confirms it",
          { 100, 0, 0 }, 1 },
        { { "S4@at50", "S3@at40", "0" }, MSM_FOUND_AT_PRIMARY, 0, 0, 0,
          "a's newer copy from before a's failure: b confirms the session",
          { 100, 0, 0 }, 1 },
        { { "S4@at50", "S3@at40", "0" }, MSM_FOUND_UNKNOWN, -1, -1, 0,
          "both predate their node's failure", { 100, 100, 0 }, 1 },
        { { "S4@at50", "D5", "0" }, MSM_FOUND_GONE, -1, -1, 1,
          "a tombstone needs no trust", { 100, 100, 0 }, 1 },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        msm_seen_t seen[3];
        msm_search_t s;
        msm_resolution_t r;
        int j;

        for (j = 0; j < 3; j++) {
            seen[j] = seen_of(t[i].seen[j]);
        }
        s.count = 3;
        s.node_ids = ids;
        s.seen = seen;
        s.last_failure = t[i].last_failure;
        s.need_trusted = t[i].need_trusted;
        memset(&r, 0x55, sizeof(r));
        msm_decide_found(&s, &r);
        CHECK_MSG(r.found == t[i].found && r.newest == t[i].newest
                  && r.primary == t[i].primary && r.stale == t[i].stale,
                  "case %d (%s): found %d newest %d primary %d stale %x",
                  (int)i, t[i].why, r.found, r.newest, r.primary, r.stale);
    }
}

/* ---- writing ---- */

static void test_decide_write(void)
{
    static const struct {
        msm_write_mode_e mode;
        const char *seen;
        apr_uint64_t version;   /* of the incoming copy */
        msm_write_e expect;
        apr_uint64_t version_after;
        const char *why;
    } t[] = {
        { MSM_WRITE_PRIMARY, "0", 1, MSM_DO_ADD, 1, "nothing there" },
        { MSM_WRITE_PRIMARY, "S4@a", 5, MSM_DO_CAS, 5, "as loaded" },
        { MSM_WRITE_PRIMARY, "S6@a", 5, MSM_DO_CAS, 7,
          "another write landed: last writer wins, newest version" },
        { MSM_WRITE_PRIMARY, "S9@b", 5, MSM_DO_CAS, 10, "over a backup" },
        { MSM_WRITE_PRIMARY, "D6", 5, MSM_DO_DROP, 5, "destroyed meanwhile" },
        { MSM_WRITE_PRIMARY, "?", 5, MSM_DO_CAS, 5, "over garbage" },
        { MSM_WRITE_PRIMARY, "!", 5, MSM_DO_NOTHING, 5, "unreadable" },
        { MSM_WRITE_PRIMARY, "-", 5, MSM_DO_NOTHING, 5, "never blind" },
        { MSM_WRITE_REPLICA, "0", 5, MSM_DO_ADD, 5, "nothing there" },
        { MSM_WRITE_REPLICA, "S4@a", 5, MSM_DO_CAS, 5, "older there" },
        { MSM_WRITE_REPLICA, "S5@a", 5, MSM_DO_NOTHING, 5, "the same write" },
        { MSM_WRITE_REPLICA, "S6@a", 5, MSM_DO_NOTHING, 5,
          "a late backup never overwrites a newer one" },
        { MSM_WRITE_REPLICA, "D2", 5, MSM_DO_DROP, 5, "destroyed" },
        { MSM_WRITE_REPLICA, "-", 5, MSM_DO_NOTHING, 5, "never blind" },
        { MSM_WRITE_TOMBSTONE, "-", 5, MSM_DO_SET, 5, "no need to look" },
        { MSM_WRITE_TOMBSTONE, "S9@a", 5, MSM_DO_SET, 5, "over anything" },
        { MSM_WRITE_TOMBSTONE, "D2", 5, MSM_DO_NOTHING, 5, "already" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        msm_seen_t s = seen_of(t[i].seen);
        msm_copy_meta_t in = meta_of(t[i].mode == MSM_WRITE_TOMBSTONE
                                     ? 'D' : 'S', t[i].version, 100, "a");
        msm_write_e got = msm_decide_write(t[i].mode, &s, &in);
        CHECK_MSG(got == t[i].expect && in.version == t[i].version_after,
                  "case %d (%s): got %d, version %" APR_UINT64_T_FMT,
                  (int)i, t[i].why, got, in.version);
    }
}

/* A copy of an existing id onto a node that lacks it. */
static void test_decide_add(void)
{
    static const struct {
        msm_write_mode_e mode;
        int gone;
        const char *elsewhere;  /* newest session copy on the other nodes */
        apr_uint64_t version;
        msm_write_e expect;
        apr_uint64_t version_after;
        const char *why;
    } t[] = {
        { MSM_WRITE_PRIMARY, 1, "S3@a", 5, MSM_DO_DROP, 5,
          "a restarted empty; the tombstone is on b" },
        { MSM_WRITE_REPLICA, 1, "-", 5, MSM_DO_DROP, 5, "the same, a backup" },
        { MSM_WRITE_PRIMARY, 0, "-", 5, MSM_DO_ADD, 5, "nothing anywhere" },
        { MSM_WRITE_PRIMARY, 0, "S7@a", 5, MSM_DO_ADD, 8,
          "a newer copy elsewhere: the write becomes the newest" },
        { MSM_WRITE_REPLICA, 0, "S7@a", 5, MSM_DO_NOTHING, 5,
          "a stale backup is not added" },
        { MSM_WRITE_REPLICA, 0, "S5@a", 5, MSM_DO_ADD, 5,
          "the same copy elsewhere (its primary): replicated" },
        { MSM_WRITE_REPLICA, 0, "S4@a", 5, MSM_DO_ADD, 5, "an older one" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        msm_seen_t other = seen_of(t[i].elsewhere);
        msm_copy_meta_t newest = other.meta;
        msm_copy_meta_t in = meta_of('S', t[i].version, 100, "a");
        msm_write_e got = msm_decide_add(t[i].mode, t[i].gone, &newest, &in);
        CHECK_MSG(got == t[i].expect && in.version == t[i].version_after,
                  "case %d (%s): got %d, version %" APR_UINT64_T_FMT,
                  (int)i, t[i].why, got, in.version);
    }
}

/* ---- the cookie ---- */

static void test_decide_cookie(void)
{
    static const struct {
        msm_cookie_facts_t f;   /* cookie_in, has_id, id_changed,
                                 * destroyed_here, sliding_max_age */
        msm_cookie_e expect;
        const char *why;
    } t[] = {
        { { 1, 1, 0, 0, 0 }, MSM_COOKIE_KEEP, "read" },
        { { 1, 1, 1, 0, 0 }, MSM_COOKIE_SET, "moved or new id" },
        { { 0, 1, 1, 0, 0 }, MSM_COOKIE_SET, "created" },
        { { 1, 1, 0, 0, 1 }, MSM_COOKIE_SET, "Max-Age slides" },
        { { 1, 0, 0, 0, 0 }, MSM_COOKIE_KEEP,
          "not found: the browser may hold a newer cookie" },
        { { 1, 0, 0, 0, 1 }, MSM_COOKIE_KEEP, "not found, with a max age" },
        { { 1, 0, 1, 1, 0 }, MSM_COOKIE_CLEAR, "logout" },
        { { 1, 0, 1, 1, 1 }, MSM_COOKIE_CLEAR, "logout, with a max age" },
        { { 0, 0, 1, 1, 0 }, MSM_COOKIE_KEEP, "nothing to clear" },
        { { 0, 0, 0, 0, 0 }, MSM_COOKIE_KEEP, "no session at all" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        CHECK_MSG(msm_decide_cookie(&t[i].f) == t[i].expect, "case %d (%s)",
                  (int)i, t[i].why);
    }
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&root, NULL);
    unit_name = "test_copy";
    test_format();
    test_corrupt();
    test_order();
    test_decide_read();
    test_decide_found();
    test_decide_write();
    test_decide_add();
    test_decide_cookie();
    apr_pool_destroy(root);
    apr_terminate();
    return unit_done();
}
