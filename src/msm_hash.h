/* Fingerprint of a session's entries, to skip writing sessions that did not
 * change. It covers the decoded entries, not the encoded string: with
 * mod_session_crypto the encoded string differs on every save (random IV),
 * and mod_session refreshes its "expiry" entry on every request when
 * SessionMaxAge is set, so that entry is left out. */
#ifndef MSM_HASH_H
#define MSM_HASH_H

#include <apr_tables.h>
#include <apr_sha1.h>

typedef struct msm_hash {
    unsigned char digest[APR_SHA1_DIGESTSIZE];
} msm_hash_t;

/* Hashes every entry of t except those named skip_key (may be NULL), in
 * table order, and returns how many entries were hashed. */
int msm_hash_entries(const apr_table_t *t, const char *skip_key,
                     msm_hash_t *out);

int msm_hash_equal(const msm_hash_t *a, const msm_hash_t *b);

#endif
