/* libFuzzer target: the session cookie parser. Whatever it accepts must be
 * exactly the strict shape, and must format back to the same bytes: only
 * such values can ever become part of a memcached key. */
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_pools.h>

#include "msm_id.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static apr_pool_t *pool;

static int is_key_safe(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *value;
    msm_id_t id;

    if (pool == NULL) {
        apr_initialize();
        apr_pool_create(&pool, NULL);
    }
    value = malloc(size + 1);
    memcpy(value, data, size);
    value[size] = '\0';
    if (msm_id_parse(value, &id)) {
        const char *again = msm_id_cookie_value(pool, &id);
        const char *key = msm_id_key(pool, MSM_NS_LOCK, "p:", &id);
        if (strcmp(again, value) != 0 || strlen(value) > MSM_COOKIE_MAX
            || strlen(id.hex) != MSM_ID_HEX_LEN || !is_key_safe(key)
            || strchr(key, '.') != NULL) {
            abort();
        }
    }
    else if (id.hex[0] || id.node[0] || id.route[0]) {
        abort();                /* a refused value leaves nothing behind */
    }
    free(value);
    apr_pool_clear(pool);
    return 0;
}
