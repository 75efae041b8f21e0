#include "msm_hash.h"

#include <string.h>

/* Each key and value is length-prefixed, so ("a=b", "") and ("a", "b=")
 * cannot hash alike. */
static void hash_field(apr_sha1_ctx_t *ctx, const char *s)
{
    apr_uint32_t len = s ? (apr_uint32_t)strlen(s) : 0;
    unsigned char lenbuf[4];

    lenbuf[0] = (unsigned char)(len >> 24);
    lenbuf[1] = (unsigned char)(len >> 16);
    lenbuf[2] = (unsigned char)(len >> 8);
    lenbuf[3] = (unsigned char)len;
    apr_sha1_update_binary(ctx, lenbuf, sizeof(lenbuf));
    if (len) {
        apr_sha1_update_binary(ctx, (const unsigned char *)s, len);
    }
}

int msm_hash_entries(const apr_table_t *t, const char *skip_key,
                     msm_hash_t *out)
{
    const apr_array_header_t *arr = apr_table_elts(t);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    apr_sha1_ctx_t ctx;
    int i, hashed = 0;

    apr_sha1_init(&ctx);
    for (i = 0; i < arr->nelts; i++) {
        if (e[i].key == NULL
            || (skip_key && strcmp(e[i].key, skip_key) == 0)) {
            continue;
        }
        hash_field(&ctx, e[i].key);
        hash_field(&ctx, e[i].val);
        hashed++;
    }
    apr_sha1_final(out->digest, &ctx);
    return hashed;
}

int msm_hash_equal(const msm_hash_t *a, const msm_hash_t *b)
{
    return memcmp(a->digest, b->digest, sizeof(a->digest)) == 0;
}
