/* Copies of a session and the life-cycle decisions about them.
 *
 * Every memcached node holds at most one copy of a session, all under the
 * same key "<MsmKeyPrefix><hex>": the primary copy on the node the cookie
 * names, a backup copy on the next live node, and possibly older copies
 * left where a node was unreachable. Each copy starts with a header:
 *
 *     "MSM1 <kind> <version> <written> <primary>[ <route>]\n" <payload>
 *
 *   kind     S: a session (payload: mod_session's encoded string)
 *            D: destroyed (logout, new id at login); no payload. Final: a
 *               destroyed id never holds a session again.
 *   version  16 hex digits; each write of a session takes the version it
 *            read plus one, so the newest copy has the highest version.
 *   written  16 hex digits, apr_time_t (µs) of the write: breaks version
 *            ties and tells copies that predate a node's outage.
 *   primary  the node id that held the primary copy when it was written
 *            ("-" for D). A copy on any other node is a backup, or an old
 *            copy left behind by a move: never served without a search.
 *   route    sessions written by a sticky server: its MsmRoute. A sticky
 *            server keeps a copy in its local tier only when it wrote it
 *            itself: another route's copy means another server serves the
 *            session now, and its later writes would not reach the tier.
 *
 * The functions here decide; msm_store.c does the memcached operations
 * they ask for. They are pure (no I/O, no clock, no shared state), so that
 * tests/test_copy.c can check them as tables of cases.
 */
#ifndef MSM_COPY_H
#define MSM_COPY_H

#include <apr_pools.h>
#include <apr_time.h>

#include "msm_id.h"

#define MSM_COPY_SESSION   'S'
#define MSM_COPY_DESTROYED 'D'

/* "MSM1 S " + 16 + " " + 16 + " " + name + " " + name + "\n" */
#define MSM_COPY_HEADER_MAX (7 + 16 + 1 + 16 + 1 + MSM_NAME_MAX + 1 \
                             + MSM_NAME_MAX + 1)

/* memcached keeps an expiry above 30 days as an absolute Unix time. */
#define MSM_EXPTIME_MAX 2592000u

typedef struct msm_copy_meta {
    char kind;                          /* MSM_COPY_SESSION / _DESTROYED */
    apr_uint64_t version;
    apr_time_t written;
    char primary[MSM_NAME_MAX + 1];     /* "" for a destroyed id */
    char route[MSM_NAME_MAX + 1];       /* the writer's MsmRoute; "" when
                                         * not sticky, and for D */
} msm_copy_meta_t;

/* What one node said about a session's key. */
typedef enum {
    MSM_SEEN_FAILED = 0,        /* not asked (dead, or failed here) or failed */
    MSM_SEEN_NONE,              /* no such key */
    MSM_SEEN_COPY,              /* a well-formed copy: meta is set */
    MSM_SEEN_CORRUPT,           /* an item that is not a copy: treated as
                                 * absent, and may be overwritten */
    MSM_SEEN_TOOBIG             /* larger than MsmMaxSessionSize, or sealed
                                 * with an unknown key: it exists but
                                 * cannot be read here */
} msm_seen_e;

typedef struct msm_seen {
    msm_seen_e what;
    msm_copy_meta_t meta;       /* MSM_SEEN_COPY */
    apr_uint64_t cas;           /* MSM_SEEN_COPY, _CORRUPT */
    const char *payload;        /* MSM_SEEN_COPY */
    apr_size_t len;
    apr_uint32_t sealed_with;   /* MSM_SEEN_TOOBIG: 0 when too large, else
                                 * the key id (MsmEncryptKeyFile) it is
                                 * sealed with, which this server lacks */
} msm_seen_t;

/* ---- the format ---- */

/* The value to store: header and payload (NUL-terminated). */
char *msm_copy_encode(apr_pool_t *p, const msm_copy_meta_t *meta,
                      const char *payload, apr_size_t len,
                      apr_size_t *value_len);

/* Reads a stored value into *seen: MSM_SEEN_COPY with meta and payload
 * (pointing into value), or MSM_SEEN_CORRUPT. */
void msm_copy_decode(const char *value, apr_size_t len, msm_seen_t *seen);

/* ---- ordering ---- */

/* <0, 0, >0 as a is older than, the same write as, newer than b: by
 * version, then by write time. Kinds are not compared. */
int msm_copy_order(const msm_copy_meta_t *a, const msm_copy_meta_t *b);

/* Whether incoming may replace what a node holds (NULL: nothing usable
 * there). A destroyed id is never replaced; a tombstone replaces any
 * session; a session replaces only an older session. */
int msm_copy_supersedes(const msm_copy_meta_t *incoming,
                        const msm_copy_meta_t *existing);

/* ---- reading ---- */

/* What to do with the answer of the node the cookie names. */
typedef enum {
    MSM_READ_SERVE = 0,         /* it is the primary copy: serve it */
    MSM_READ_GONE,              /* destroyed */
    MSM_READ_UNREADABLE,        /* too large for this server */
    MSM_READ_SEARCH             /* ask the other nodes */
} msm_read_e;

/* seen: the answer of node node_id (MSM_SEEN_FAILED when it was not
 * asked). last_down: when this server last saw that node fail (0: never);
 * a copy written before then may have been superseded while the node was
 * unreachable, and is served only after a search confirms it. */
msm_read_e msm_decide_read(const msm_seen_t *seen, const char *node_id,
                           apr_time_t last_down);

/* After a search: every configured node's answer, in MsmNodes order. */
typedef struct msm_search {
    int count;
    const char *const *node_ids;    /* [count] */
    const msm_seen_t *seen;         /* [count]; MSM_SEEN_FAILED: not asked
                                     * (dead) or failed */
    const apr_time_t *last_failure; /* [count], as for msm_decide_read; NULL:
                                     * no node ever failed */
    /* Sessions have backups (MsmBackup, 2+ nodes): a live session then has
     * a copy written after its node's last failure somewhere. When every
     * copy found predates its node's last failure, the evidence that would
     * supersede them (newer copies, the tombstone) may have been lost with
     * another node; they are not served. */
    int need_trusted;
} msm_search_t;

typedef enum {
    MSM_FOUND_NOTHING = 0,      /* no node has it, and none failed */
    MSM_FOUND_UNKNOWN,          /* not found, but a node could not be asked
                                 * (or holds it too large to read), or only
                                 * copies older than their node's last
                                 * failure were found (need_trusted) */
    MSM_FOUND_GONE,             /* some node holds its tombstone */
    MSM_FOUND_AT_PRIMARY,       /* the newest copy is where its header says:
                                 * serve it from there */
    MSM_FOUND_RESTORE,          /* its primary node lost it (restart,
                                 * eviction): write it back there */
    MSM_FOUND_MOVE              /* its primary node is gone: the node that
                                 * has the newest copy becomes primary */
} msm_found_e;

typedef struct msm_resolution {
    msm_found_e found;
    int newest;                 /* index of the newest copy (AT_PRIMARY,
                                 * RESTORE, MOVE); else -1 */
    int primary;                /* where the session lives from now on
                                 * (AT_PRIMARY, RESTORE, MOVE); else -1 */
    /* Nodes whose copy must be overwritten, bit i for node i. Found: the
     * older copies whose header claims they are the primary (left as they
     * are, a read through an old cookie would trust them); the executor
     * writes the newest copy there, whose header names the real primary.
     * GONE: the session copies that outlived the destroy; the executor
     * writes the tombstone there. */
    unsigned int stale;
} msm_resolution_t;

void msm_decide_found(const msm_search_t *search, msm_resolution_t *out);

/* ---- writing ---- */

typedef enum {
    MSM_WRITE_PRIMARY = 0,      /* a request's save: last writer wins, over
                                 * any session, never over a tombstone */
    MSM_WRITE_REPLICA,          /* a backup, a restore, a repair: only over
                                 * older copies */
    MSM_WRITE_TOMBSTONE         /* a destroy: over anything */
} msm_write_mode_e;

typedef enum {
    MSM_DO_ADD = 0,             /* nothing there: add */
    MSM_DO_CAS,                 /* replace what was seen: cas */
    MSM_DO_SET,                 /* unconditionally (tombstones) */
    MSM_DO_NOTHING,             /* what is there is as new or newer */
    MSM_DO_DROP                 /* the id is destroyed: drop the write */
} msm_write_e;

/* How to put incoming onto a node that holds seen (MSM_SEEN_FAILED: not
 * read yet; a conditional write then reads first, see msm_store.c). In
 * MSM_WRITE_PRIMARY mode incoming->version is raised above the version
 * seen, so that the write is the newest copy. */
msm_write_e msm_decide_write(msm_write_mode_e mode, const msm_seen_t *seen,
                             msm_copy_meta_t *incoming);

/* A copy of an id that existed goes onto a node that lacks it (it
 * restarted empty, say): what the other nodes hold decides. Their newest
 * session copy (newest->kind 0: none) and whether one holds the tombstone
 * (gone). MSM_DO_DROP: destroyed; MSM_DO_NOTHING: a replica older than a
 * copy elsewhere (the next read finds that one); MSM_DO_ADD: add it (a
 * replica of the newest copy too), in MSM_WRITE_PRIMARY mode with a
 * version above any elsewhere. */
msm_write_e msm_decide_add(msm_write_mode_e mode, int gone,
                           const msm_copy_meta_t *newest,
                           msm_copy_meta_t *incoming);

/* ---- the cookie ---- */

typedef enum {
    MSM_COOKIE_KEEP = 0,
    MSM_COOKIE_SET,
    MSM_COOKIE_CLEAR
} msm_cookie_e;

typedef struct msm_cookie_facts {
    int cookie_in;              /* the request carried a valid cookie */
    int has_id;                 /* the session exists after this request */
    int id_changed;             /* new id or new node in this request */
    int destroyed_here;         /* this request destroyed the session */
    int sliding_max_age;        /* SessionMaxAge: the cookie is resent */
} msm_cookie_facts_t;

/* Only a request that destroyed the session clears the cookie: one that
 * merely did not find it must not, because the browser may hold a newer
 * cookie by now (a login that answered meanwhile). */
msm_cookie_e msm_decide_cookie(const msm_cookie_facts_t *f);

#endif
