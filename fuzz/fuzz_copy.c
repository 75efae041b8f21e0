/* libFuzzer target: the copy header parser (src/msm_copy.c). What it
 * accepts must encode back to the same bytes, header and payload: a copy
 * read from memcached is written again as it was (backups, repairs); what
 * it refuses must leave no metadata behind. */
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_pools.h>

#include "msm_copy.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static apr_pool_t *pool;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const msm_copy_meta_t none;
    char *value;
    msm_seen_t seen, again;
    apr_size_t len;
    const char *encoded;

    if (pool == NULL) {
        apr_initialize();
        apr_pool_create(&pool, NULL);
    }
    value = malloc(size + 1);
    memcpy(value, data, size);
    value[size] = '\0';
    msm_copy_decode(value, size, &seen);
    if (seen.what == MSM_SEEN_COPY) {
        encoded = msm_copy_encode(pool, &seen.meta, seen.payload, seen.len,
                                  &len);
        msm_copy_decode(encoded, len, &again);
        if (len != size || memcmp(encoded, value, size) != 0
            || again.what != MSM_SEEN_COPY
            || memcmp(&again.meta, &seen.meta, sizeof(seen.meta)) != 0
            || size - seen.len > MSM_COPY_HEADER_MAX) {
            abort();
        }
    }
    else if (seen.what != MSM_SEEN_CORRUPT
             || memcmp(&seen.meta, &none, sizeof(none)) != 0) {
        abort();
    }
    free(value);
    apr_pool_clear(pool);
    return 0;
}
