/* Encryption at rest: see msm_crypt.h for the format and the key file. */
#include "msm_crypt.h"

#include <limits.h>
#include <string.h>
#include <apr_atomic.h>
#include <apr_base64.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define MAGIC     "MSME"
#define MAGIC_LEN 4
#define ID_LEN    4
#define NONCE_LEN 12
#define TAG_LEN   16
#define HEAD_LEN  (MAGIC_LEN + ID_LEN + NONCE_LEN)
/* 32 bytes in base64: 43 characters and one '=' of padding. */
#define KEY_B64_LEN 44

typedef struct {
    unsigned char bytes[MSM_CRYPT_KEY_LEN];
    apr_uint32_t id;
    int line;                   /* in the key file */
} crypt_key_t;

struct msm_crypt {
    int count;
    crypt_key_t key[MSM_CRYPT_MAX_KEYS];
    apr_uint32_t missed[MSM_CRYPT_MAX_KEYS];    /* unknown ids logged; 0:
                                                 * free slot */
    apr_uint32_t missed_zero;   /* key id 0 logged (not a slot value) */
};

/* ---- the key file ---- */

static int is_b64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
        || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}

/* Exactly 32 bytes of standard base64, padding optional. */
static int decode_key(const char *b64, apr_size_t len, unsigned char *out)
{
    char buf[KEY_B64_LEN + 1];
    unsigned char raw[KEY_B64_LEN];
    apr_size_t i;

    if (len == KEY_B64_LEN && b64[len - 1] == '=') {
        len--;
    }
    if (len != KEY_B64_LEN - 1) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!is_b64_char(b64[i])) {
            return 0;
        }
    }
    memcpy(buf, b64, len);
    buf[len] = '=';
    buf[len + 1] = '\0';
    if (apr_base64_decode_binary(raw, buf) != MSM_CRYPT_KEY_LEN) {
        return 0;
    }
    memcpy(out, raw, MSM_CRYPT_KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(buf, sizeof(buf));
    return 1;
}

static apr_uint32_t get_id(const unsigned char *at)
{
    return (apr_uint32_t)at[0] << 24 | (apr_uint32_t)at[1] << 16
         | (apr_uint32_t)at[2] << 8 | at[3];
}

/* A key's id: the first 4 bytes of its SHA-256, read as a value is. */
static apr_uint32_t id_of(const unsigned char *key)
{
    unsigned char d[SHA256_DIGEST_LENGTH];

    SHA256(key, MSM_CRYPT_KEY_LEN, d);
    return get_id(d);
}

static const char *add_key(apr_pool_t *p, msm_crypt_t *c, const char *line,
                           apr_size_t len, int lineno)
{
    crypt_key_t *k;
    int i;

    if (c->count == MSM_CRYPT_MAX_KEYS) {
        return apr_psprintf(p, "line %d: more than %d keys", lineno,
                            MSM_CRYPT_MAX_KEYS);
    }
    k = &c->key[c->count];
    if (!decode_key(line, len, k->bytes)) {
        return apr_psprintf(p, "line %d: not a key (32 bytes in base64, "
                            "e.g. from 'openssl rand -base64 32')", lineno);
    }
    k->id = id_of(k->bytes);
    k->line = lineno;
    for (i = 0; i < c->count; i++) {
        if (c->key[i].id == k->id) {
            return apr_psprintf(p, "line %d: the same key as line %d's "
                                "(key id %08x)", lineno, c->key[i].line,
                                k->id);
        }
    }
    c->count++;
    return NULL;
}

static void trim(const char **s, apr_size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++, (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'
                    || (*s)[*len - 1] == '\r')) {
        (*len)--;
    }
}

const char *msm_crypt_parse_keys(apr_pool_t *p, const char *text,
                                 apr_size_t len, msm_crypt_t **out)
{
    msm_crypt_t *c = apr_pcalloc(p, sizeof(*c));
    const char *end = text + len;
    int lineno = 0;

    while (text < end) {
        const char *nl = memchr(text, '\n', (apr_size_t)(end - text));
        const char *line = text;
        apr_size_t n = (apr_size_t)((nl ? nl : end) - text);
        const char *err;

        text = nl ? nl + 1 : end;
        lineno++;
        trim(&line, &n);
        if (n == 0 || *line == '#') {
            continue;
        }
        if ((err = add_key(p, c, line, n, lineno)) != NULL) {
            OPENSSL_cleanse(c, sizeof(*c));
            return err;
        }
    }
    if (c->count == 0) {
        return "holds no key (one per line: 32 bytes in base64, e.g. from "
               "'openssl rand -base64 32')";
    }
    *out = c;
    return NULL;
}

int msm_crypt_key_count(const msm_crypt_t *c)
{
    return c->count;
}

apr_uint32_t msm_crypt_key_id(const msm_crypt_t *c, int i)
{
    return c->key[i].id;
}

/* ---- sealing and opening ---- */

static void put_id(unsigned char *at, apr_uint32_t id)
{
    at[0] = (unsigned char)(id >> 24);
    at[1] = (unsigned char)(id >> 16);
    at[2] = (unsigned char)(id >> 8);
    at[3] = (unsigned char)id;
}

static const crypt_key_t *key_by_id(const msm_crypt_t *c, apr_uint32_t id)
{
    int i;

    for (i = 0; i < c->count; i++) {
        if (c->key[i].id == id) {
            return &c->key[i];
        }
    }
    return NULL;
}

/* One keyed context per thread and direction, kept: a call sets only the
 * nonce, so the key schedule and OpenSSL's cipher context are made once per
 * key, not per request (0.4 instead of 1.5 µs a pass). The key's bytes say
 * whether it is still the one set. */
static __thread EVP_CIPHER_CTX *keyed_ctx[2];
static __thread unsigned char keyed_with[2][MSM_CRYPT_KEY_LEN];

static EVP_CIPHER_CTX *keyed(int enc, const crypt_key_t *k)
{
    EVP_CIPHER_CTX *x = keyed_ctx[enc];

    if (x && memcmp(keyed_with[enc], k->bytes, MSM_CRYPT_KEY_LEN) == 0) {
        return x;
    }
    if (x == NULL && (x = keyed_ctx[enc] = EVP_CIPHER_CTX_new()) == NULL) {
        return NULL;
    }
    if (EVP_CipherInit_ex(x, EVP_aes_256_gcm(), NULL, k->bytes, NULL, enc)
        != 1) {
        memset(keyed_with[enc], 0, MSM_CRYPT_KEY_LEN);
        return NULL;
    }
    memcpy(keyed_with[enc], k->bytes, MSM_CRYPT_KEY_LEN);
    return x;
}

/* One AES-256-GCM pass (enc 1: seal, 0: open) over in into out; the tag is
 * written (seal) or checked (open). 1 on success. */
static int gcm(int enc, const crypt_key_t *k, const unsigned char *nonce,
               const char *aad, const unsigned char *in, apr_size_t len,
               unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *x = keyed(enc, k);
    int n;

    return x != NULL && len <= INT_MAX
        && EVP_CipherInit_ex(x, NULL, NULL, NULL, nonce, enc)
        && EVP_CipherUpdate(x, NULL, &n, (const unsigned char *)aad,
                            (int)strlen(aad))
        && EVP_CipherUpdate(x, out, &n, in, (int)len)
        && (enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag))
        && EVP_CipherFinal_ex(x, out + n, &n)
        && (!enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                        tag));
}

apr_status_t msm_crypt_seal(const msm_crypt_t *c, apr_pool_t *p,
                            const char *aad, const char *plain,
                            apr_size_t len, char **out, apr_size_t *out_len)
{
    const crypt_key_t *k = &c->key[0];
    unsigned char *v = apr_palloc(p, len + MSM_CRYPT_OVERHEAD + 1);

    memcpy(v, MAGIC, MAGIC_LEN);
    put_id(v + MAGIC_LEN, k->id);
    if (RAND_bytes(v + MAGIC_LEN + ID_LEN, NONCE_LEN) != 1
        || !gcm(1, k, v + MAGIC_LEN + ID_LEN, aad,
                (const unsigned char *)plain, len, v + HEAD_LEN,
                v + HEAD_LEN + len)) {
        return APR_EGENERAL;
    }
    v[len + MSM_CRYPT_OVERHEAD] = '\0';
    *out = (char *)v;
    *out_len = len + MSM_CRYPT_OVERHEAD;
    return APR_SUCCESS;
}

apr_status_t msm_crypt_open(const msm_crypt_t *c, apr_pool_t *p,
                            const char *aad, const char *value,
                            apr_size_t len, char **out, apr_size_t *out_len,
                            apr_uint32_t *key_id)
{
    const unsigned char *v = (const unsigned char *)value;
    unsigned char tag[TAG_LEN];
    const crypt_key_t *k;
    apr_size_t n;
    char *plain;

    *key_id = 0;
    if (len < MAGIC_LEN || memcmp(v, MAGIC, MAGIC_LEN) != 0) {
        return MSM_CRYPT_EPLAIN;
    }
    if (len < MSM_CRYPT_OVERHEAD) {
        return MSM_CRYPT_EBAD;
    }
    *key_id = get_id(v + MAGIC_LEN);
    if ((k = key_by_id(c, *key_id)) == NULL) {
        return MSM_CRYPT_ENOKEY;
    }
    n = len - MSM_CRYPT_OVERHEAD;
    plain = apr_palloc(p, n + 1);
    memcpy(tag, v + HEAD_LEN + n, TAG_LEN);
    if (!gcm(0, k, v + MAGIC_LEN + ID_LEN, aad, v + HEAD_LEN, n,
             (unsigned char *)plain, tag)) {
        return MSM_CRYPT_EBAD;
    }
    plain[n] = '\0';
    *out = plain;
    *out_len = n;
    return APR_SUCCESS;
}

int msm_crypt_first_miss(msm_crypt_t *c, apr_uint32_t key_id)
{
    int i;

    if (key_id == 0) {          /* 0 marks a free slot: a flag of its own */
        return apr_atomic_cas32(&c->missed_zero, 1, 0) == 0;
    }
    for (i = 0; i < MSM_CRYPT_MAX_KEYS; i++) {
        apr_uint32_t was = apr_atomic_cas32(&c->missed[i], key_id, 0);
        if (was == 0) {
            return 1;
        }
        if (was == key_id) {
            return 0;
        }
    }
    return 0;
}
