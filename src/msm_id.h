/* Session ids, cookie values and memcached keys.
 *
 * A session id is 128 random bits as 32 lowercase hex digits. The cookie value
 * is "<hex>-<node>" or, in sticky mode, "<hex>-<node>.<route>": the node says
 * which memcached holds the session, the route is read by mod_proxy_balancer
 * (it routes on the text after the last dot). The parser is strict because
 * the parts end up in memcached keys: anything that is not exactly this shape
 * is no session at all.
 */
#ifndef MSM_ID_H
#define MSM_ID_H

#include <apr_pools.h>
#include <apr_errno.h>

#define MSM_ID_BYTES     16
#define MSM_ID_HEX_LEN   (MSM_ID_BYTES * 2)
#define MSM_NAME_MAX     16   /* node ids and routes: [A-Za-z0-9_]{1,16} */
#define MSM_COOKIE_MAX   64   /* longest cookie value the parser accepts */
#define MSM_PREFIX_MAX   64   /* longest MsmKeyPrefix */

typedef struct msm_id {
    char hex[MSM_ID_HEX_LEN + 1];
    char node[MSM_NAME_MAX + 1];
    char route[MSM_NAME_MAX + 1];    /* "" when the cookie carries no route */
} msm_id_t;

/* Key namespaces: the session's copies (the same key on every node: see
 * msm_copy.h), its lock. */
#define MSM_NS_SESSION ""
#define MSM_NS_LOCK    "lock:"

/* A session's tag in log lines: the id is a credential and is never
 * logged; the tag is the first 8 hex digits of the SHA-1 of its hex part,
 * which an operator can compute from a cookie to find its lines
 * (printf %s <hex> | sha1sum | cut -c1-8). */
#define MSM_ID_TAG_LEN 8

/* Fills id->hex with fresh random bits; node and route are left empty. */
apr_status_t msm_id_generate(msm_id_t *id);

/* 1 if value is exactly "<32 lowercase hex>-<name>[.<name>]", filling *id;
 * 0 for anything else (id is then cleared). */
int msm_id_parse(const char *value, msm_id_t *id);

/* 1 if s matches [A-Za-z0-9_]{1,16}. */
int msm_name_is_valid(const char *s);

/* NULL if prefix is a usable MsmKeyPrefix, else why not. */
const char *msm_key_prefix_check(const char *prefix);

/* "<hex>-<node>" plus ".<route>" when id->route is set. */
char *msm_id_cookie_value(apr_pool_t *p, const msm_id_t *id);

/* "<ns><prefix><hex>": neither node nor route takes part in a key; the
 * node is where the primary copy is, not what the session is. */
char *msm_id_key(apr_pool_t *p, const char *ns, const char *prefix,
                 const msm_id_t *id);

/* The log tag of id (see MSM_ID_TAG_LEN), NUL-terminated. */
void msm_id_tag(const msm_id_t *id, char tag[MSM_ID_TAG_LEN + 1]);

/* 16 bits of the random part, to spread new sessions over nodes
 * without asking for more randomness. */
unsigned int msm_id_spread(const msm_id_t *id);

#endif
