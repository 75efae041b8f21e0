#include "msm_id.h"

#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_sha1.h>

static const char hexdigits[] = "0123456789abcdef";

apr_status_t msm_id_generate(msm_id_t *id)
{
    unsigned char raw[MSM_ID_BYTES];
    apr_status_t rv;
    int i;

    memset(id, 0, sizeof(*id));
    rv = apr_generate_random_bytes(raw, sizeof(raw));
    if (rv != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < MSM_ID_BYTES; i++) {
        id->hex[2 * i] = hexdigits[raw[i] >> 4];
        id->hex[2 * i + 1] = hexdigits[raw[i] & 0x0f];
    }
    return APR_SUCCESS;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '_';
}

/* Length of the name starting at s (stops at the first non-name char), or 0
 * when it is empty or longer than MSM_NAME_MAX. */
static apr_size_t name_span(const char *s)
{
    apr_size_t n = 0;

    while (is_name_char(s[n])) {
        if (++n > MSM_NAME_MAX) {
            return 0;
        }
    }
    return n;
}

int msm_name_is_valid(const char *s)
{
    apr_size_t n = name_span(s);

    return n > 0 && s[n] == '\0';
}

int msm_id_parse(const char *value, msm_id_t *id)
{
    const char *p = value;
    apr_size_t n;
    int i;

    memset(id, 0, sizeof(*id));
    if (value == NULL || strnlen(value, MSM_COOKIE_MAX + 1) > MSM_COOKIE_MAX) {
        return 0;
    }
    for (i = 0; i < MSM_ID_HEX_LEN; i++, p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return 0;
        }
    }
    if (*p++ != '-' || (n = name_span(p)) == 0) {
        return 0;
    }
    memcpy(id->hex, value, MSM_ID_HEX_LEN);
    memcpy(id->node, p, n);
    p += n;
    if (*p == '.') {
        p++;
        if ((n = name_span(p)) == 0) {
            goto invalid;
        }
        memcpy(id->route, p, n);
        p += n;
    }
    if (*p == '\0') {
        return 1;
    }
invalid:
    memset(id, 0, sizeof(*id));
    return 0;
}

const char *msm_key_prefix_check(const char *prefix)
{
    const unsigned char *p = (const unsigned char *)prefix;

    if (strlen(prefix) > MSM_PREFIX_MAX) {
        return "is longer than 64 characters";
    }
    for (; *p; p++) {
        /* memcached's text protocol splits keys on space and ends lines on
         * CR/LF; anything outside printable ASCII has no place in a key. */
        if (*p <= 0x20 || *p >= 0x7f) {
            return "may only hold printable ASCII characters without spaces";
        }
    }
    return NULL;
}

char *msm_id_cookie_value(apr_pool_t *p, const msm_id_t *id)
{
    if (id->route[0]) {
        return apr_pstrcat(p, id->hex, "-", id->node, ".", id->route, NULL);
    }
    return apr_pstrcat(p, id->hex, "-", id->node, NULL);
}

char *msm_id_key(apr_pool_t *p, const char *ns, const char *prefix,
                 const msm_id_t *id)
{
    return apr_pstrcat(p, ns, prefix, id->hex, NULL);
}

void msm_id_tag(const msm_id_t *id, char tag[MSM_ID_TAG_LEN + 1])
{
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha;
    int i;

    apr_sha1_init(&sha);
    apr_sha1_update(&sha, id->hex, (unsigned int)strlen(id->hex));
    apr_sha1_final(digest, &sha);
    for (i = 0; i < MSM_ID_TAG_LEN / 2; i++) {
        tag[2 * i] = hexdigits[digest[i] >> 4];
        tag[2 * i + 1] = hexdigits[digest[i] & 0x0f];
    }
    tag[MSM_ID_TAG_LEN] = '\0';
}

unsigned int msm_id_spread(const msm_id_t *id)
{
    unsigned int v = 0;
    int i;

    /* 16 random bits are plenty to pick among a handful of nodes. */
    for (i = 0; i < 4; i++) {
        const char *d = strchr(hexdigits, id->hex[i]);
        v = (v << 4) | (unsigned int)(d ? d - hexdigits : 0);
    }
    return v;
}
