/* msm_id: session ids, cookie values, memcached keys. */
#include "unit.h"
#include "msm_id.h"

#include <apr_strings.h>

#define HEX "0123456789abcdef0123456789abcdef"
#define HEX_TAG "b1775a78"     /* sha1sum of HEX */

static int is_lower_hex(const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int id_is_cleared(const msm_id_t *id)
{
    static const msm_id_t zero;

    return memcmp(id, &zero, sizeof(zero)) == 0;
}

static int cmp_hex(const void *a, const void *b)
{
    return strcmp(((const msm_id_t *)a)->hex, ((const msm_id_t *)b)->hex);
}

static void test_generate(void)
{
    static msm_id_t ids[1000];
    int i, bad_len = 0, bad_hex = 0, dup = 0, not_empty = 0;
    int gen_fail = 0;
    unsigned int spread_seen[4] = { 0, 0, 0, 0 };

    for (i = 0; i < 1000; i++) {
        memset(&ids[i], 'x', sizeof(ids[i]));   /* generate must clear it */
        if (msm_id_generate(&ids[i]) != APR_SUCCESS) {
            gen_fail++;
        }
        if (strlen(ids[i].hex) != MSM_ID_HEX_LEN) {
            bad_len++;
        }
        if (!is_lower_hex(ids[i].hex, MSM_ID_HEX_LEN)) {
            bad_hex++;
        }
        if (ids[i].node[0] || ids[i].route[0]) {
            not_empty++;
        }
        spread_seen[msm_id_spread(&ids[i]) % 4]++;
    }
    CHECK_INT_EQ(gen_fail, 0);
    CHECK_INT_EQ(bad_len, 0);
    CHECK_INT_EQ(bad_hex, 0);
    CHECK_INT_EQ(not_empty, 0);
    qsort(ids, 1000, sizeof(ids[0]), cmp_hex);
    for (i = 1; i < 1000; i++) {
        dup += strcmp(ids[i - 1].hex, ids[i].hex) == 0;
    }
    CHECK_INT_EQ(dup, 0);
    /* spread is random enough to feed all of 4 nodes */
    for (i = 0; i < 4; i++) {
        CHECK_MSG(spread_seen[i] > 150, "spread %% 4 == %d: %u of 1000", i,
                  spread_seen[i]);
    }
}

typedef struct {
    const char *what;
    const char *value;
} bad_case_t;

static void test_parse_malformed(apr_pool_t *p)
{
    char big[301];
    char nul_hex[64], nul_dash[64];
    const char *long_node = HEX "-" "n2345678901234567";          /* 17 */
    const char *long_route = HEX "-n1." "r2345678901234567";      /* 17 */
    bad_case_t cases[] = {
        { "empty", "" },
        { "31 hex", "0123456789abcdef0123456789abcde-n1" },
        { "33 hex", HEX "0-n1" },
        { "uppercase hex", "0123456789ABCDEF0123456789abcdef-n1" },
        { "one uppercase hex", "0123456789abcdef0123456789abcdeF-n1" },
        { "non-hex g", "0123456789abcdeg0123456789abcdef-n1" },
        { "non-hex space in hex", "0123456789abcdef 123456789abcdef-n1" },
        { "hex only", HEX },
        { "missing dash", HEX "n1" },
        { "underscore for dash", HEX "_n1" },
        { "empty node", HEX "-" },
        { "empty node with route", HEX "-.r1" },
        { "node 17 chars", long_node },
        { "node with dot only", HEX "-n.1.r" },
        { "node with slash", HEX "-n/1" },
        { "node ../", HEX "-../n1" },
        { "node with ../ inside", HEX "-n1/../x" },
        { "node with space", HEX "-n 1" },
        { "node with CR", HEX "-n1\r" },
        { "node with LF", HEX "-n1\n" },
        { "node with CRLF header injection", HEX "-n1\r\nSet-Cookie: x" },
        { "node with tab", HEX "-n1\t" },
        { "node with colon", HEX "-n1:x" },
        { "node with dash", HEX "-n-1" },
        { "trailing dot, empty route", HEX "-n1." },
        { "route 17 chars", long_route },
        { "two dots", HEX "-n1..r1" },
        { "two routes", HEX "-n1.r1.r2" },
        { "route with slash", HEX "-n1.r/1" },
        { "leading space", " " HEX "-n1" },
        { "trailing space", HEX "-n1 " },
        { "trailing space after route", HEX "-n1.r1 " },
        { "-n1 alone", "-n1" },
        { "dash alone", "-" },
        { "unicode in node", HEX "-n\xc3\xa9" },
        { "unicode in route", HEX "-n1.\xc3\xa9" },
        { "unicode in hex", "\xc3\xa9" "23456789abcdef0123456789abcdef-n1" },
        { "quoted", "\"" HEX "-n1\"" },
        { "semicolon", HEX "-n1;" },
        { "0x80 byte", HEX "-n1\x80" },
        { "0x7f byte", HEX "-n1\x7f" },
        { "300 bytes", big },
        { "NUL inside the hex", nul_hex },
        { "NUL before the dash", nul_dash },
    };
    apr_size_t i;
    int parsed_nonzero = 0;

    /* a 300-byte value that starts like a valid one */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, HEX "-n1.", 36);
    /* C strings: a NUL ends the value, what precedes must not pass */
    memcpy(nul_hex, HEX "-n1", 36);
    nul_hex[10] = '\0';
    memcpy(nul_dash, HEX "-n1", 36);
    nul_dash[32] = '\0';

    CHECK(sizeof(cases) / sizeof(cases[0]) >= 25);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msm_id_t id;
        int r;

        memset(&id, 'z', sizeof(id));   /* the parser must clear it */
        r = msm_id_parse(cases[i].value, &id);
        CHECK_MSG(r == 0, "case '%s' parsed as valid (node '%s')",
                  cases[i].what, id.node);
        CHECK_MSG(id_is_cleared(&id), "case '%s': id not cleared",
                  cases[i].what);
        parsed_nonzero += r;
    }
    CHECK_INT_EQ(parsed_nonzero, 0);
    {
        msm_id_t id;
        memset(&id, 'z', sizeof(id));
        CHECK_INT_EQ(msm_id_parse(NULL, &id), 0);
        CHECK(id_is_cleared(&id));
    }
    (void)p;
}

static void test_parse_valid(apr_pool_t *p)
{
    msm_id_t id;
    const char *v;

    memset(&id, 'z', sizeof(id));
    CHECK_INT_EQ(msm_id_parse(HEX "-n1", &id), 1);
    CHECK_STR_EQ(id.hex, HEX);
    CHECK_STR_EQ(id.node, "n1");
    CHECK_STR_EQ(id.route, "");

    memset(&id, 'z', sizeof(id));
    CHECK_INT_EQ(msm_id_parse(HEX "-Node_9.route_A", &id), 1);
    CHECK_STR_EQ(id.hex, HEX);
    CHECK_STR_EQ(id.node, "Node_9");
    CHECK_STR_EQ(id.route, "route_A");

    /* 16-char node alone: 49 chars */
    v = HEX "-n234567890123456";
    CHECK_INT_EQ(msm_id_parse(v, &id), 1);
    CHECK_STR_EQ(id.node, "n234567890123456");
    CHECK_STR_EQ(id.route, "");

    /* 1-char names */
    CHECK_INT_EQ(msm_id_parse(HEX "-a.b", &id), 1);
    CHECK_STR_EQ(id.node, "a");
    CHECK_STR_EQ(id.route, "b");

    /* node and route of 16 characters each are valid names, but their
     * cookie would be 66 bytes: over the parser's 64. */
    memset(&id, 0, sizeof(id));
    memcpy(id.hex, HEX, MSM_ID_HEX_LEN);
    apr_cpystrn(id.node, "n234567890123456", sizeof(id.node));
    apr_cpystrn(id.route, "r234567890123456", sizeof(id.route));
    v = msm_id_cookie_value(p, &id);
    CHECK_INT_EQ((long long)strlen(v), 66);
    /* The parser's limit is 64 bytes (the configuration refuses a route
     * and node ids that would not fit), so such a value is no session. */
    CHECK_INT_EQ(msm_id_parse(v, &id), 0);
    v = HEX "-n23456789012345.r234567890123456";   /* 65 chars */
    CHECK_INT_EQ(msm_id_parse(v, &id), 0);
    v = HEX "-n2345678901234.r234567890123456";    /* 64 chars */
    CHECK_INT_EQ(msm_id_parse(v, &id), 1);
    CHECK_STR_EQ(id.node, "n2345678901234");
}

static void test_cookie_and_key(apr_pool_t *p)
{
    msm_id_t id, back;
    const char *names[][2] = {
        { "n1", "" }, { "n1", "r1" }, { "node_A", "route_B" },
        { "a", "b" }, { "n234567890123456", "" },
        { "n2345678901234", "r2345678901234" },
    };
    apr_size_t i;
    char *cv, *key;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        msm_id_generate(&id);
        apr_cpystrn(id.node, names[i][0], sizeof(id.node));
        apr_cpystrn(id.route, names[i][1], sizeof(id.route));
        cv = msm_id_cookie_value(p, &id);
        CHECK_STR_EQ(cv, names[i][1][0]
                     ? apr_pstrcat(p, id.hex, "-", names[i][0], ".",
                                   names[i][1], NULL)
                     : apr_pstrcat(p, id.hex, "-", names[i][0], NULL));
        CHECK_INT_EQ(msm_id_parse(cv, &back), 1);
        CHECK(memcmp(&id, &back, sizeof(id)) == 0);
    }

    CHECK_INT_EQ(msm_id_parse(HEX "-n1.r1", &id), 1);
    key = msm_id_key(p, MSM_NS_SESSION, "app1:", &id);
    CHECK_STR_EQ(key, "app1:" HEX);
    key = msm_id_key(p, MSM_NS_LOCK, "", &id);
    CHECK_STR_EQ(key, "lock:" HEX);
    CHECK(strstr(msm_id_key(p, MSM_NS_SESSION, "x:", &id), "r1") == NULL);
    /* same id with or without a route, on another node: the same key (the
     * node only says where the primary copy is) */
    CHECK_INT_EQ(msm_id_parse(HEX "-n1", &back), 1);
    CHECK_STR_EQ(msm_id_key(p, MSM_NS_SESSION, "p:", &id),
                 msm_id_key(p, MSM_NS_SESSION, "p:", &back));
    CHECK_INT_EQ(msm_id_parse(HEX "-n2.r1", &back), 1);
    CHECK_STR_EQ(msm_id_key(p, MSM_NS_SESSION, "p:", &id),
                 msm_id_key(p, MSM_NS_SESSION, "p:", &back));
    /* another prefix: another key */
    CHECK(strcmp(msm_id_key(p, MSM_NS_SESSION, "p:", &id),
                 msm_id_key(p, MSM_NS_SESSION, "q:", &id)) != 0);
}

/* The log tag: 8 hex digits of SHA-1(hex), never a part of the id. */
static void test_tag(void)
{
    msm_id_t id;
    char tag[MSM_ID_TAG_LEN + 1];

    CHECK_INT_EQ(msm_id_parse(HEX "-n1", &id), 1);
    msm_id_tag(&id, tag);
    CHECK_INT_EQ(strlen(tag), MSM_ID_TAG_LEN);
    CHECK(strstr(HEX, tag) == NULL);
    /* printf %s <HEX> | sha1sum | cut -c1-8 */
    CHECK_STR_EQ(tag, HEX_TAG);
    CHECK_INT_EQ(msm_id_parse(HEX "-n2.r1", &id), 1);
    msm_id_tag(&id, tag);
    CHECK_STR_EQ(tag, HEX_TAG);
}

static void test_prefix_and_names(apr_pool_t *p)
{
    char c64[65], c65[66];

    memset(c64, 'a', 64);
    c64[64] = '\0';
    memset(c65, 'a', 65);
    c65[65] = '\0';

    CHECK(msm_key_prefix_check("app1:") == NULL);
    CHECK(msm_key_prefix_check("") == NULL);
    CHECK(msm_key_prefix_check("a.b-c_d:/~!") == NULL);
    CHECK(msm_key_prefix_check(c64) == NULL);
    CHECK(msm_key_prefix_check(c65) != NULL);
    CHECK(msm_key_prefix_check("app 1:") != NULL);
    CHECK(msm_key_prefix_check("app\t1:") != NULL);
    CHECK(msm_key_prefix_check("app1:\r") != NULL);
    CHECK(msm_key_prefix_check("app1:\n") != NULL);
    CHECK(msm_key_prefix_check("app\x7f") != NULL);
    CHECK(msm_key_prefix_check("app\x80") != NULL);
    CHECK(msm_key_prefix_check("\xc3\xa9") != NULL);
    CHECK(msm_key_prefix_check("\x01") != NULL);

    CHECK_INT_EQ(msm_name_is_valid("n1"), 1);
    CHECK_INT_EQ(msm_name_is_valid("A_z_0_9"), 1);
    CHECK_INT_EQ(msm_name_is_valid("_"), 1);
    CHECK_INT_EQ(msm_name_is_valid("n234567890123456"), 1);
    CHECK_INT_EQ(msm_name_is_valid("n2345678901234567"), 0);
    CHECK_INT_EQ(msm_name_is_valid(""), 0);
    CHECK_INT_EQ(msm_name_is_valid("n-1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n.1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n 1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n1 "), 0);
    CHECK_INT_EQ(msm_name_is_valid(" n1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n/1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n:1"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n\xc3\xa9"), 0);
    CHECK_INT_EQ(msm_name_is_valid("n1\n"), 0);
    (void)p;
}

static void test_spread(void)
{
    msm_id_t a, b;
    unsigned int s1, s2;
    int i, stable = 1, in_range = 1, differs = 0;

    CHECK_INT_EQ(msm_id_parse("0000" "456789abcdef0123456789abcdef-n1", &a),
                 1);
    CHECK_INT_EQ(msm_id_spread(&a), 0);
    CHECK_INT_EQ(msm_id_parse("ffff" "456789abcdef0123456789abcdef-n1", &a),
                 1);
    CHECK_INT_EQ(msm_id_spread(&a), 0xffff);
    CHECK_INT_EQ(msm_id_parse("12ab" "456789abcdef0123456789abcdef-n1", &a),
                 1);
    CHECK_INT_EQ(msm_id_spread(&a), 0x12ab);
    /* node and route do not take part */
    CHECK_INT_EQ(msm_id_parse("12ab" "456789abcdef0123456789abcdef-n2.r", &b),
                 1);
    CHECK_INT_EQ(msm_id_spread(&b), 0x12ab);

    for (i = 0; i < 200; i++) {
        msm_id_generate(&a);
        s1 = msm_id_spread(&a);
        b = a;
        apr_cpystrn(b.node, "other", sizeof(b.node));
        s2 = msm_id_spread(&b);
        stable &= s1 == s2 && s1 == msm_id_spread(&a);
        in_range &= s1 <= 0xffff;
        if (i > 0 && s1 != msm_id_spread(&a)) {
            stable = 0;
        }
        differs += (s1 & 1);
    }
    CHECK(stable);
    CHECK(in_range);
    CHECK(differs > 20 && differs < 180);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_id");

    test_generate();
    test_parse_malformed(p);
    test_parse_valid(p);
    test_cookie_and_key(p);
    test_prefix_and_names(p);
    test_spread();
    test_tag();
    return unit_done();
}
