/* Encryption at rest (src/msm_crypt.c), without memcached:
 *   - the key file, as a table of texts: what parses (padding, CRLF,
 *     spaces, comments, blank lines) and what is refused, each error
 *     naming its line and never quoting a key;
 *   - key ids: the first 4 bytes of SHA-256 of the key (a known vector
 *     from the openssl command line, and OpenSSL's SHA256 for others);
 *   - seal / open: round trips (empty, binary, 64 KiB), the exact
 *     overhead, a fresh nonce per seal, the AAD binding, every single bit
 *     flip and every truncation of a sealed value;
 *   - rotation: [new, old] opens what [old] sealed and seals with new;
 *     [old] alone does not open what new sealed (ENOKEY, its key id);
 *   - msm_crypt_first_miss: once per key id, also from many threads. */
#include "unit.h"
#include "msm_crypt.h"

#include <apr_base64.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <openssl/sha.h>

static apr_pool_t *root;

/* The 32 bytes 00 01 02 ... 1f. Its key id, 630dcd29, was computed once
 * with the openssl command line, not with the code under test:
 *   echo -n AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= \
 *     | openssl base64 -d -A | openssl dgst -sha256 -binary \
 *     | head -c4 | xxd -p
 */
#define K0      "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define K0_BARE "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define K0_ID   0x630dcd29u

/* ---- keys ---- */

/* n bytes (seed-dependent) in standard base64, with its padding. */
static const char *b64_bytes(int seed, int n)
{
    unsigned char raw[64];
    char *out = apr_palloc(root, (apr_size_t)apr_base64_encode_len(n));
    int i;

    for (i = 0; i < n; i++) {
        raw[i] = (unsigned char)(seed * 37 + i * 11 + 5);
    }
    apr_base64_encode_binary(out, raw, n);
    return out;
}

/* A key (32 bytes) other than K0 for every seed. */
static const char *key_text(int seed)
{
    return b64_bytes(seed, MSM_CRYPT_KEY_LEN);
}

/* The key id of a base64 key, computed here with OpenSSL's SHA256. */
static apr_uint32_t id_of_text(const char *b64)
{
    unsigned char raw[64], d[SHA256_DIGEST_LENGTH];
    char padded[64];

    apr_cpystrn(padded, b64, sizeof(padded));
    if (strlen(padded) == 43) {
        strcat(padded, "=");
    }
    if (apr_base64_decode_binary(raw, padded) != MSM_CRYPT_KEY_LEN) {
        return 0;
    }
    SHA256(raw, MSM_CRYPT_KEY_LEN, d);
    return (apr_uint32_t)d[0] << 24 | (apr_uint32_t)d[1] << 16
         | (apr_uint32_t)d[2] << 8 | d[3];
}

static msm_crypt_t *keys(const char *text)
{
    msm_crypt_t *c = NULL;
    const char *err = msm_crypt_parse_keys(root, text, strlen(text), &c);

    if (err || c == NULL) {
        fprintf(stderr, "test keys refused: %s\n", err ? err : "?");
        exit(2);
    }
    return c;
}

/* 1 if err quotes 8 or more consecutive base64 characters of a key line
 * of text (a line that is not a comment). */
static int leaks_key(const char *err, const char *text)
{
    const char *s = text;

    while (*s) {
        const char *eol = strchr(s, '\n'), *p;
        apr_size_t n = eol ? (apr_size_t)(eol - s) : strlen(s);
        char *line = apr_pstrndup(root, s, n);

        s += n + (eol != NULL);
        if (strchr(line, '#')) {
            continue;
        }
        for (p = line; strlen(p) >= 8; p++) {
            char w[9];
            memcpy(w, p, 8);
            w[8] = '\0';
            if (strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                       "vwxyz0123456789+/") == 8 && strstr(err, w)) {
                return 1;
            }
        }
    }
    return 0;
}

typedef struct parse_case {
    const char *name;
    const char *text;
    int keys;                   /* the count when it parses */
    const char *err;            /* NULL: parses; else the error's start */
    apr_uint32_t first_id;      /* 0: unchecked */
} parse_case_t;

#define NOT_A_KEY "not a key (32 bytes in base64"

static void test_parse_table(void)
{
    const char *k1 = key_text(1), *k2 = key_text(2);
    char bad_char[64], url[64], inner_space[64];
    const parse_case_t cases[] = {
        { "one key, padded", K0 "\n", 1, NULL, K0_ID },
        { "one key, no padding", K0_BARE "\n", 1, NULL, K0_ID },
        { "no final newline", K0, 1, NULL, K0_ID },
        { "CRLF", apr_pstrcat(root, K0, "\r\n", k1, "\r\n", NULL), 2, NULL,
          K0_ID },
        { "spaces and tabs around", apr_pstrcat(root, "  \t", K0, " \t\r\n",
          "\t", k1, "   ", NULL), 2, NULL, K0_ID },
        { "comments and blank lines", apr_pstrcat(root, "# keys\n\n   \n"
          "\t# old key below\n", k2, "\n\n# end\n", K0, NULL), 2, NULL,
          id_of_text(k2) },
        { "a bad character", bad_char, 0, "line 1: " NOT_A_KEY, 0 },
        { "base64url", url, 0, "line 2: " NOT_A_KEY, 0 },
        { "a space inside", inner_space, 0, "line 1: " NOT_A_KEY, 0 },
        { "a comment after the key", K0 " # new\n", 0, "line 1: " NOT_A_KEY,
          0 },
        { "31 bytes", b64_bytes(3, 31), 0, "line 1: " NOT_A_KEY, 0 },
        { "31 bytes, no padding",
          apr_pstrndup(root, b64_bytes(3, 31), 42), 0, "line 1: " NOT_A_KEY,
          0 },
        { "33 bytes", b64_bytes(3, 33), 0, "line 1: " NOT_A_KEY, 0 },
        { "33 bytes after a good key", apr_pstrcat(root, K0, "\n",
          b64_bytes(3, 33), "\n", NULL), 0, "line 2: " NOT_A_KEY, 0 },
        { "two paddings", K0 "=", 0, "line 1: " NOT_A_KEY, 0 },
        { "a bad line after comments", apr_pstrcat(root, "# a\n\n# b\n",
          K0, "\nnot-a-key\n", NULL), 0, "line 5: " NOT_A_KEY, 0 },
        { "empty file", "", 0, "holds no key", 0 },
        { "blank lines only", "\n\r\n  \n", 0, "holds no key", 0 },
        { "only comments", "# one\n#two\n\n  # three\n", 0, "holds no key",
          0 },
        { "the same key twice", apr_pstrcat(root, K0, "\n", k1, "\n", K0,
          "\n", NULL), 0, "line 3: the same key as line 1's (key id "
          "630dcd29)", 0 },
        { "the same key with and without padding",
          apr_pstrcat(root, K0, "\n", K0_BARE, "\n", NULL), 0,
          "line 2: the same key as line 1's (key id 630dcd29)", 0 },
        /* the line of the first one, counting comments and blank lines */
        { "the same key twice, comments between", apr_pstrcat(root,
          "# current\n", K0, "\n\n# previous\n", k1, "\n", K0, "\n", NULL),
          0, "line 6: the same key as line 2's (key id 630dcd29)", 0 },
    };
    size_t i;

    apr_cpystrn(bad_char, K0, sizeof(bad_char));
    bad_char[10] = '*';
    url[0] = '\n';              /* line 1 empty, the key on line 2 */
    apr_cpystrn(url + 1, K0, sizeof(url) - 1);
    url[6] = '-';
    url[7] = '_';
    apr_cpystrn(inner_space, K0, sizeof(inner_space));
    inner_space[20] = ' ';

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const parse_case_t *k = &cases[i];
        msm_crypt_t *c = NULL;
        const char *err = msm_crypt_parse_keys(root, k->text,
                                               strlen(k->text), &c);

        if (k->err == NULL) {
            CHECK_MSG(err == NULL && c != NULL, "%s: refused: %s", k->name,
                      err ? err : "(no error, no keys)");
            if (c) {
                CHECK_MSG(msm_crypt_key_count(c) == k->keys, "%s: %d keys, "
                          "expected %d", k->name, msm_crypt_key_count(c),
                          k->keys);
                CHECK_MSG(msm_crypt_key_id(c, 0) == k->first_id, "%s: key "
                          "id %08x, expected %08x", k->name,
                          msm_crypt_key_id(c, 0), k->first_id);
            }
            continue;
        }
        CHECK_MSG(err != NULL && strncmp(err, k->err, strlen(k->err)) == 0,
                  "%s: error \"%s\", expected \"%s...\"", k->name,
                  err ? err : "(none)", k->err);
        CHECK_MSG(c == NULL, "%s: refused, yet keys were returned", k->name);
        CHECK_MSG(err == NULL || !leaks_key(err, k->text),
                  "%s: the error quotes a key: %s", k->name, err);
    }
    /* the leak check itself sees a quoted key */
    CHECK(leaks_key("line 1: AAECAwQFBgcI is bad", K0));
    CHECK(!leaks_key("line 1: AAECAwQFBgcI is bad", "# " K0));
}

static void test_max_keys(void)
{
    char *text = "";
    msm_crypt_t *c = NULL;
    const char *err;
    int i;

    for (i = 0; i < MSM_CRYPT_MAX_KEYS; i++) {
        text = apr_pstrcat(root, text, key_text(100 + i), "\n", NULL);
    }
    err = msm_crypt_parse_keys(root, text, strlen(text), &c);
    CHECK_MSG(err == NULL && c, "%d keys: %s", MSM_CRYPT_MAX_KEYS,
              err ? err : "");
    if (c) {
        CHECK_INT_EQ(msm_crypt_key_count(c), MSM_CRYPT_MAX_KEYS);
        /* in the file's order, each with its own id */
        for (i = 0; i < MSM_CRYPT_MAX_KEYS; i++) {
            CHECK_MSG(msm_crypt_key_id(c, i) == id_of_text(key_text(100 + i)),
                      "key %d: id %08x", i, msm_crypt_key_id(c, i));
        }
    }
    c = NULL;
    text = apr_pstrcat(root, "# 65 keys\n", text, key_text(99), "\n", NULL);
    err = msm_crypt_parse_keys(root, text, strlen(text), &c);
    CHECK_STR_EQ(err, "line 66: more than 64 keys");
    CHECK(c == NULL);
}

static void test_key_id(void)
{
    msm_crypt_t *c = keys(K0 "\n");
    int i;

    CHECK_INT_EQ(msm_crypt_key_id(c, 0), K0_ID);
    CHECK_INT_EQ(id_of_text(K0), K0_ID);     /* the helper agrees */
    for (i = 0; i < 16; i++) {
        const char *k = key_text(i);
        c = keys(k);
        CHECK_MSG(msm_crypt_key_id(c, 0) == id_of_text(k), "%s: key id %08x,"
                  " SHA-256 says %08x", k, msm_crypt_key_id(c, 0),
                  id_of_text(k));
    }
}

/* ---- seal and open ---- */

static apr_uint32_t id_in(const char *v)
{
    const unsigned char *u = (const unsigned char *)v + 4;

    return (apr_uint32_t)u[0] << 24 | (apr_uint32_t)u[1] << 16
         | (apr_uint32_t)u[2] << 8 | u[3];
}

static int seal(const msm_crypt_t *c, const char *aad, const char *plain,
                apr_size_t len, char **out, apr_size_t *out_len)
{
    return CHECK_OK(msm_crypt_seal(c, root, aad, plain, len, out, out_len)
                    == APR_SUCCESS);
}

static apr_status_t open_value(const msm_crypt_t *c, const char *aad,
                               const char *v, apr_size_t len,
                               apr_uint32_t *key_id)
{
    char *plain = NULL;
    apr_size_t plen = 0;

    return msm_crypt_open(c, root, aad, v, len, &plain, &plen, key_id);
}

#define AAD "msm:0123456789abcdef0123456789abcdef"

static void test_round_trip(void)
{
    msm_crypt_t *c = keys(K0);
    char bin[300], *big = malloc(64 * 1024);
    struct {
        const char *name;
        const char *plain;
        apr_size_t len;
    } cases[] = {
        { "empty", "", 0 },
        { "one byte", "x", 1 },
        { "a copy", "MSM1 S 0000000000000001 00060a2418202240 n1\nk=v", 48 },
        { "binary", bin, sizeof(bin) },
        { "64 KiB", big, 64 * 1024 },
    };
    size_t i;

    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (char)(i * 7);             /* NULs, 0xff, \r\n ... */
    }
    for (i = 0; i < 64 * 1024; i++) {
        big[i] = (char)(i >> 3);
    }
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *v, *plain = NULL;
        apr_size_t vlen, plen = 0;
        apr_uint32_t id = 0;

        if (!seal(c, AAD, cases[i].plain, cases[i].len, &v, &vlen)) {
            continue;
        }
        CHECK_MSG(vlen == cases[i].len + MSM_CRYPT_OVERHEAD && vlen
                  == cases[i].len + 36, "%s: %lu bytes sealed", cases[i].name,
                  (unsigned long)vlen);
        CHECK_MSG(memcmp(v, "MSME", 4) == 0, "%s: no magic", cases[i].name);
        CHECK_INT_EQ(id_in(v), K0_ID);
        CHECK_INT_EQ(v[vlen], '\0');
        if (cases[i].len >= 8) {
            CHECK_MSG(!memmem(v, vlen, cases[i].plain, 8), "%s: the sealed "
                      "value holds the plain text", cases[i].name);
        }
        CHECK_STATUS(msm_crypt_open(c, root, AAD, v, vlen, &plain, &plen,
                                    &id), APR_SUCCESS);
        CHECK_MEM_EQ(plain, plen, cases[i].plain, cases[i].len);
        CHECK(plain && plain[plen] == '\0');
        CHECK_INT_EQ(id, K0_ID);
    }
    free(big);
}

static void test_fresh_nonces(void)
{
    msm_crypt_t *c = keys(K0);
    enum { N = 64 };
    char *v[N];
    apr_size_t len;
    int i, j, same_nonce = 0, same_body = 0;

    for (i = 0; i < N; i++) {
        if (!seal(c, AAD, "k=v&user=alice", 14, &v[i], &len)) {
            return;
        }
    }
    for (i = 0; i < N; i++) {
        for (j = i + 1; j < N; j++) {
            same_nonce += memcmp(v[i] + 8, v[j] + 8, 12) == 0;
            same_body += memcmp(v[i] + 20, v[j] + 20, len - 20) == 0;
        }
    }
    CHECK_INT_EQ(same_nonce, 0);
    CHECK_INT_EQ(same_body, 0);
}

static void test_aad(void)
{
    msm_crypt_t *c = keys(K0);
    const char *others[] = {
        "msm:0123456789abcdef0123456789abcdee",     /* another id */
        "app2:0123456789abcdef0123456789abcdef",    /* another prefix */
        "msm:0123456789abcdef0123456789abcdef ",
        "msm:0123456789abcdef0123456789abcde",
        "",
    };
    char *v;
    apr_size_t len, i;
    apr_uint32_t id;

    if (!seal(c, AAD, "user=alice", 10, &v, &len)) {
        return;
    }
    CHECK_STATUS(open_value(c, AAD, v, len, &id), APR_SUCCESS);
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        id = 0;
        CHECK_STATUS(open_value(c, others[i], v, len, &id), MSM_CRYPT_EBAD);
        CHECK_INT_EQ(id, K0_ID);
    }
    /* the empty AAD works as an AAD of its own */
    if (seal(c, "", "x", 1, &v, &len)) {
        CHECK_STATUS(open_value(c, "", v, len, &id), APR_SUCCESS);
        CHECK_STATUS(open_value(c, "x", v, len, &id), MSM_CRYPT_EBAD);
    }
}

/* Every single bit flip of a sealed value, by the region it falls in. */
static void test_bit_flips(void)
{
    msm_crypt_t *c = keys(K0), *two = keys(apr_pstrcat(root, K0, "\n",
                                                       key_text(7), NULL));
    static const char plain[] = "MSM1 S 0000000000000001 0 n1\nuser=bob";
    const apr_size_t plen = sizeof(plain) - 1;
    struct {
        const char *region;
        apr_size_t from, to;
        apr_status_t want;
    } regions[] = {
        { "magic", 0, 4, MSM_CRYPT_EPLAIN },
        { "key id", 4, 8, MSM_CRYPT_ENOKEY },
        { "nonce", 8, 20, MSM_CRYPT_EBAD },
        { "ciphertext", 20, 20 + plen, MSM_CRYPT_EBAD },
        { "tag", 20 + plen, 36 + plen, MSM_CRYPT_EBAD },
    };
    char *v, *w;
    apr_size_t len, r, at;
    int bit, wrong;

    if (!seal(c, AAD, plain, plen, &v, &len)) {
        return;
    }
    CHECK_INT_EQ(regions[4].to, len);
    w = apr_palloc(root, len);
    for (r = 0; r < sizeof(regions) / sizeof(regions[0]); r++) {
        wrong = 0;
        for (at = regions[r].from; at < regions[r].to; at++) {
            for (bit = 0; bit < 8; bit++) {
                apr_uint32_t id;
                apr_status_t rv;
                memcpy(w, v, len);
                w[at] ^= (char)(1 << bit);
                rv = open_value(c, AAD, w, len, &id);
                if (rv != regions[r].want) {
                    if (wrong++ < 3) {
                        fprintf(stderr, "    byte %lu bit %d (%s): %d\n",
                                (unsigned long)at, bit, regions[r].region,
                                (int)rv);
                    }
                }
                else if (rv == MSM_CRYPT_ENOKEY && id != id_in(w)) {
                    wrong++;    /* names the id it read */
                }
            }
        }
        CHECK_MSG(wrong == 0, "%s: %d of %d bit flips not %d",
                  regions[r].region,
                  wrong, (int)(8 * (regions[r].to - regions[r].from)),
                  (int)regions[r].want);
    }
    /* a key id changed to that of another key held: it does not open */
    memcpy(w, v, len);
    w[4] = (char)(msm_crypt_key_id(two, 1) >> 24);
    w[5] = (char)(msm_crypt_key_id(two, 1) >> 16);
    w[6] = (char)(msm_crypt_key_id(two, 1) >> 8);
    w[7] = (char)msm_crypt_key_id(two, 1);
    {
        apr_uint32_t id;
        CHECK_STATUS(open_value(two, AAD, v, len, &id), APR_SUCCESS);
        CHECK_STATUS(open_value(two, AAD, w, len, &id), MSM_CRYPT_EBAD);
        CHECK_INT_EQ(id, msm_crypt_key_id(two, 1));
    }
}

static void test_truncations(void)
{
    msm_crypt_t *c = keys(K0);
    char *v, *w;
    apr_size_t len, n;
    int wrong = 0;
    apr_uint32_t id;

    if (!seal(c, AAD, "user=carol&cart=3", 17, &v, &len)) {
        return;
    }
    for (n = 0; n < len; n++) {
        apr_status_t rv;
        w = apr_pmemdup(root, v, n + 1);    /* a copy: no reading past n */
        rv = open_value(c, AAD, w, n, &id);
        if (rv != (n < 4 ? MSM_CRYPT_EPLAIN : MSM_CRYPT_EBAD)) {
            fprintf(stderr, "    %lu of %lu bytes: %d\n", (unsigned long)n,
                    (unsigned long)len, (int)rv);
            wrong++;
        }
    }
    CHECK_MSG(wrong == 0, "%d truncations did not fail as expected", wrong);
    /* one byte more, or the tag moved */
    w = apr_palloc(root, len + 1);
    memcpy(w, v, len);
    w[len] = 'x';
    CHECK_STATUS(open_value(c, AAD, w, len + 1, &id), MSM_CRYPT_EBAD);
    /* clear text: nothing sealed */
    CHECK_STATUS(open_value(c, AAD, "MSM1 S 1 0 n1\nk=v", 17, &id),
                 MSM_CRYPT_EPLAIN);
    CHECK_INT_EQ(id, 0);
    CHECK_STATUS(open_value(c, AAD, "msme", 4, &id), MSM_CRYPT_EPLAIN);
    CHECK_STATUS(open_value(c, AAD, "", 0, &id), MSM_CRYPT_EPLAIN);
}

static void test_rotation(void)
{
    const char *old_k = key_text(20), *new_k = key_text(21);
    msm_crypt_t *old = keys(old_k);
    msm_crypt_t *both = keys(apr_pstrcat(root, "# new first\n", new_k,
                                         "\n", old_k, "\n", NULL));
    msm_crypt_t *other = keys(key_text(22));
    char *v_old, *v_new, *plain;
    apr_size_t l_old, l_new, plen;
    apr_uint32_t id;

    CHECK_INT_EQ(msm_crypt_key_count(both), 2);
    CHECK_INT_EQ(msm_crypt_key_id(both, 0), id_of_text(new_k));
    CHECK_INT_EQ(msm_crypt_key_id(both, 1), id_of_text(old_k));
    if (!seal(old, AAD, "sealed=old", 10, &v_old, &l_old)
        || !seal(both, AAD, "sealed=new", 10, &v_new, &l_new)) {
        return;
    }
    CHECK_INT_EQ(id_in(v_old), id_of_text(old_k));
    CHECK_INT_EQ(id_in(v_new), id_of_text(new_k));
    /* [new, old] opens both */
    CHECK_STATUS(msm_crypt_open(both, root, AAD, v_old, l_old, &plain, &plen,
                                &id), APR_SUCCESS);
    CHECK_MEM_EQ(plain, plen, "sealed=old", 10);
    CHECK_INT_EQ(id, id_of_text(old_k));
    CHECK_STATUS(msm_crypt_open(both, root, AAD, v_new, l_new, &plain, &plen,
                                &id), APR_SUCCESS);
    CHECK_MEM_EQ(plain, plen, "sealed=new", 10);
    /* [old] alone: what new sealed names a key it lacks */
    CHECK_STATUS(open_value(old, AAD, v_new, l_new, &id), MSM_CRYPT_ENOKEY);
    CHECK_INT_EQ(id, id_of_text(new_k));
    CHECK_STATUS(open_value(old, AAD, v_old, l_old, &id), APR_SUCCESS);
    /* a server with another key: neither */
    CHECK_STATUS(open_value(other, AAD, v_old, l_old, &id), MSM_CRYPT_ENOKEY);
    CHECK_INT_EQ(id, id_of_text(old_k));
    CHECK_STATUS(open_value(other, AAD, v_new, l_new, &id), MSM_CRYPT_ENOKEY);
}

/* ---- once per key id ---- */

typedef struct miss_run {
    msm_crypt_t *c;
    volatile apr_uint32_t *go;
    int firsts[32];             /* this thread's 1s, by id index */
    int offset;
} miss_run_t;

static void *APR_THREAD_FUNC miss_thread(apr_thread_t *th, void *arg)
{
    miss_run_t *r = arg;
    int pass, i, spins = 0;

    while (apr_atomic_read32(r->go) == 0 && spins++ < 100000000) {
    }
    for (pass = 0; pass < 50; pass++) {
        for (i = 0; i < 32; i++) {
            int k = (i + r->offset) % 32;
            r->firsts[k] += msm_crypt_first_miss(r->c,
                                                 0x1000u + (apr_uint32_t)k);
        }
    }
    apr_thread_exit(th, APR_SUCCESS);
    return NULL;
}

static void test_first_miss(void)
{
    msm_crypt_t *c = keys(K0);
    enum { T = 8 };
    miss_run_t run[T];
    apr_thread_t *th[T];
    volatile apr_uint32_t go = 0;
    int i, k, ones = 0, full = 0;

    /* once per id, each id once */
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xdeadbeef), 1);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xdeadbeef), 0);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xdeadbeef), 0);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0x12345678), 1);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0x12345678), 0);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xdeadbeef), 0);
    /* the ids at the ends of the range are ids like any other */
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0), 1);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0), 0);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xffffffffu), 1);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0xffffffffu), 0);
    /* another set of keys keeps its own memory */
    CHECK_INT_EQ(msm_crypt_first_miss(keys(K0), 0xdeadbeef), 1);

    /* after MSM_CRYPT_MAX_KEYS ids, no more (bounded memory); the ones
     * seen stay seen */
    c = keys(K0);
    for (i = 0; i < MSM_CRYPT_MAX_KEYS; i++) {
        full += msm_crypt_first_miss(c, 0x100u + (apr_uint32_t)i);
    }
    CHECK_INT_EQ(full, MSM_CRYPT_MAX_KEYS);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0x100u), 0);
    CHECK_INT_EQ(msm_crypt_first_miss(c, 0x9999u), 0);

    /* T threads ask about the same 32 ids at once, each in its own
     * order: every id is a first miss exactly once in all */
    c = keys(K0);
    for (i = 0; i < T; i++) {
        memset(&run[i], 0, sizeof(run[i]));
        run[i].c = c;
        run[i].go = &go;
        run[i].offset = i * 5;
        if (apr_thread_create(&th[i], NULL, miss_thread, &run[i], root)
            != APR_SUCCESS) {
            fprintf(stderr, "no thread\n");
            exit(2);
        }
    }
    apr_atomic_set32(&go, 1);
    for (i = 0; i < T; i++) {
        apr_status_t trv;
        apr_thread_join(&trv, th[i]);
    }
    for (k = 0; k < 32; k++) {
        int n = 0;
        for (i = 0; i < T; i++) {
            n += run[i].firsts[k];
        }
        CHECK_MSG(n == 1, "id %x: first miss %d times", 0x1000 + k, n);
        ones += n;
    }
    CHECK_INT_EQ(ones, 32);
}

int main(void)
{
    root = unit_init("test_crypt");

    test_parse_table();
    test_max_keys();
    test_key_id();
    test_round_trip();
    test_fresh_nonces();
    test_aad();
    test_bit_flips();
    test_truncations();
    test_rotation();
    test_first_miss();
    return unit_done();
}
