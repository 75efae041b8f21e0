/* libFuzzer target: encryption at rest. The first byte picks what the rest
 * is: a key file (it parses into 1..MSM_CRYPT_MAX_KEYS keys, or is refused
 * with a reason), or a value read from memcached (it opens only if it was
 * sealed under this key and AAD: random bytes never do, and its length is
 * the value's minus the overhead). Whatever is sealed opens back to the
 * same bytes, and not under another AAD. */
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_pools.h>

#include "msm_crypt.h"

#define KEYS "# fuzz\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static apr_pool_t *pool;        /* cleared after each input */
static apr_pool_t *keep;        /* the fixed keys */
static msm_crypt_t *fixed;

static void try_keys(const char *text, apr_size_t len)
{
    msm_crypt_t *c = NULL;
    const char *err = msm_crypt_parse_keys(pool, text, len, &c);

    if ((err == NULL) == (c == NULL)) {
        abort();
    }
    if (c && (msm_crypt_key_count(c) < 1
              || msm_crypt_key_count(c) > MSM_CRYPT_MAX_KEYS)) {
        abort();
    }
}

static void try_value(const char *v, apr_size_t len)
{
    char *plain, *sealed;
    apr_size_t plain_len, sealed_len;
    apr_uint32_t id;
    apr_status_t rv = msm_crypt_open(fixed, pool, "k1", v, len, &plain,
                                     &plain_len, &id);

    if (rv == APR_SUCCESS && plain_len != len - MSM_CRYPT_OVERHEAD) {
        abort();
    }
    if (msm_crypt_seal(fixed, pool, "k1", v, len, &sealed, &sealed_len)
        != APR_SUCCESS
        || sealed_len != len + MSM_CRYPT_OVERHEAD
        || msm_crypt_open(fixed, pool, "k1", sealed, sealed_len, &plain,
                          &plain_len, &id) != APR_SUCCESS
        || plain_len != len || memcmp(plain, v, len) != 0
        || msm_crypt_open(fixed, pool, "k2", sealed, sealed_len, &plain,
                          &plain_len, &id) != MSM_CRYPT_EBAD) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (pool == NULL) {
        apr_initialize();
        apr_pool_create(&pool, NULL);
        apr_pool_create(&keep, NULL);
        if (msm_crypt_parse_keys(keep, KEYS, strlen(KEYS), &fixed) != NULL) {
            abort();
        }
    }
    if (size < 1) {
        return 0;
    }
    if (data[0] & 1) {
        try_keys((const char *)data + 1, size - 1);
    }
    else {
        try_value((const char *)data + 1, size - 1);
    }
    apr_pool_clear(pool);
    return 0;
}
