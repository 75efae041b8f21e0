/* Encryption at rest (MsmEncryptKeyFile): every copy mod_msm writes to
 * memcached is sealed with AES-256-GCM before it leaves httpd, so that
 * whoever reads memcached (its port, a dump, a shared managed service)
 * sees neither the session's entries nor its header.
 *
 *     "MSME" <key id: 4 bytes> <nonce: 12 bytes> <ciphertext> <tag: 16 bytes>
 *
 *   key id   the first 4 bytes of SHA-256 of the key: which key of the
 *            file sealed it, without naming the key.
 *   nonce    random for every write (OpenSSL's RAND, fork-safe).
 *   AAD      the memcached key the value is stored under ("<prefix><hex>"):
 *            a value copied under another session's key does not open.
 *
 * The key file holds one key per line, 32 bytes in base64 (e.g.
 * "openssl rand -base64 32"); '#' lines and empty lines are ignored. The
 * first key seals, every key opens: a new key goes first, the old one stays
 * below it until every session sealed with it has expired.
 *
 * Keys are read once, as root, before the children fork; sealing and
 * opening derive nothing per request. */
#ifndef MSM_CRYPT_H
#define MSM_CRYPT_H

#include <apr_errno.h>
#include <apr_pools.h>

#define MSM_CRYPT_KEY_LEN   32
#define MSM_CRYPT_MAX_KEYS  64
/* What sealing adds to a value: magic, key id, nonce, tag. */
#define MSM_CRYPT_OVERHEAD  (4 + 4 + 12 + 16)

/* The value is sealed with a key this server does not hold. */
#define MSM_CRYPT_ENOKEY (APR_OS_START_USERERR + 740)
/* Sealed with a key held here, but it does not open: altered, truncated,
 * or copied from another key (session id or prefix). */
#define MSM_CRYPT_EBAD   (APR_OS_START_USERERR + 741)
/* Not sealed at all (written in clear text, e.g. before encryption was
 * turned on, or by someone with access to memcached). */
#define MSM_CRYPT_EPLAIN (APR_OS_START_USERERR + 742)

typedef struct msm_crypt msm_crypt_t;

/* Parses a key file's text. NULL and *out set, or what is wrong, naming
 * the line (never a key's bytes). */
const char *msm_crypt_parse_keys(apr_pool_t *p, const char *text,
                                 apr_size_t len, msm_crypt_t **out);

int msm_crypt_key_count(const msm_crypt_t *c);

/* The key id of key i (0: the one that seals), as the logs print it. */
apr_uint32_t msm_crypt_key_id(const msm_crypt_t *c, int i);

/* Seals plain (len bytes) for storage under aad. *out is NUL-terminated,
 * *out_len = len + MSM_CRYPT_OVERHEAD. APR_EGENERAL if OpenSSL failed. */
apr_status_t msm_crypt_seal(const msm_crypt_t *c, apr_pool_t *p,
                            const char *aad, const char *plain,
                            apr_size_t len, char **out, apr_size_t *out_len);

/* Opens a value read under aad: APR_SUCCESS with the plain text in *out
 * (NUL-terminated), or MSM_CRYPT_ENOKEY, MSM_CRYPT_EBAD, MSM_CRYPT_EPLAIN.
 * *key_id is the value's key id when it had one (else 0). */
apr_status_t msm_crypt_open(const msm_crypt_t *c, apr_pool_t *p,
                            const char *aad, const char *value,
                            apr_size_t len, char **out, apr_size_t *out_len,
                            apr_uint32_t *key_id);

/* 1 the first time this process asks about key_id, then 0, so that a value
 * sealed with an unknown key is logged once per key id, not per request.
 * Thread-safe; after MSM_CRYPT_MAX_KEYS distinct ids, 0. */
int msm_crypt_first_miss(msm_crypt_t *c, apr_uint32_t key_id);

#endif
