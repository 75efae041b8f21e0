/* The sticky tier: copies of sessions in shared memory, read without a lock.
 *
 * A fixed-size table in one block of shared memory that the httpd parent
 * creates (anonymous apr_shm) and formats; children inherit the mapping
 * across fork, and the threads of a child share it. Nothing in it is a
 * pointer: every position is an offset from the start of the block.
 *
 * Layout: a 128-byte header on the first cache line of the block (64 bytes
 * are kept for that alignment), then buckets of MSM_TIER_WAYS slots, each
 * bucket led by a 64-byte line holding its writer lock and one tag (a hash
 * of the key) per slot. A key lives in exactly one bucket, in at most one
 * slot of it. A slot is a sequence counter, a coarse last-used time, the
 * entry (key, copy metadata, touched, payload length) and the payload.
 *
 * Reads take no lock and make no system call: a seqlock per slot (read the
 * counter, copy, read it again; odd means a writer is in the slot). A read
 * that keeps meeting a writer gives up and misses: the caller then reads
 * memcached, which is always right.
 *
 * Writes serialize per bucket on a spin lock that holds the owner's pid; a
 * writer that finds the owner dead (kill(pid, 0) fails with ESRCH) takes the
 * lock over and empties the slot the dead writer left half written.
 * Limits: a zombie counts as alive until reaped; an owner stopped
 * (SIGSTOP, a debugger) makes the writers of its bucket wait until it goes
 * on or dies (readers never wait); and if a dead owner's pid is reused
 * before any writer notices, the bucket waits for that process. Calling
 * msm_tier_recover() once a second from the parent (httpd's monitor hook,
 * right after it reaped its children) closes that window. An entry evicted,
 * or emptied after its writer died, forgets its version like any absent
 * key: a put of an older copy is then accepted (a put from a load that
 * raced with a newer write, in that window only).
 *
 * A graceful restart may keep the table: the layout holds no address and no
 * per-generation state, so a new generation can attach to the segment of the
 * previous one (msm_tier_attach) while old children still use it, as long
 * as the sizes did not change. The segment must then come from a pool that
 * outlives the restart (not pconf). Never format a segment that is in use.
 */
#ifndef MSM_TIER_H
#define MSM_TIER_H

#include <apr_pools.h>
#include <apr_time.h>

#include "msm_copy.h"

#define MSM_TIER_WAYS 8                 /* slots per bucket */

/* MsmStickyCache <total-bytes> [<slot-bytes>]. A session with
 * mod_auth_form and mod_session_crypto is 300-700 bytes: 1 KiB slots hold
 * it (944 payload bytes on 64-bit) at 1032 bytes of memory per slot, so the
 * default 32 MiB keeps about 32500 sessions. Larger sessions are still
 * served, from memcached. */
#define MSM_TIER_DEFAULT_BYTES      ((apr_uint64_t)32 * 1024 * 1024)
#define MSM_TIER_DEFAULT_SLOT_BYTES 1024
#define MSM_TIER_SLOT_ALIGN         64          /* a cache line */
#define MSM_TIER_MIN_SLOT_BYTES     128
#define MSM_TIER_MAX_SLOT_BYTES     (64 * 1024)
#define MSM_TIER_MAX_BYTES          ((apr_uint64_t)64 * 1024 * 1024 * 1024)

typedef struct msm_tier msm_tier_t;    /* lives in the shared block */

/* scope: a hash of the vhost's node list and key prefix; id: the session
 * id's 128 bits. Keys that differ in anything never share an entry. */
typedef struct msm_tier_key {
    apr_uint64_t scope;
    unsigned char id[MSM_ID_BYTES];
} msm_tier_key_t;

/* What a read found, besides the payload. */
typedef struct msm_tier_entry {
    msm_copy_meta_t meta;
    apr_time_t touched;         /* last refresh of memcached's expiry */
    apr_size_t len;             /* payload bytes */
} msm_tier_entry_t;

typedef enum {
    MSM_TIER_MISS = 0,          /* not here (or not readable now) */
    MSM_TIER_HIT,               /* a session: entry and payload are set */
    MSM_TIER_DESTROYED          /* a tombstone: the id is gone */
} msm_tier_get_e;

typedef enum {
    MSM_TIER_STORED = 0,        /* the entry holds the new copy */
    MSM_TIER_MARKED,            /* too large for a slot: the entry holds its
                                 * metadata only (reads miss, older puts are
                                 * still refused) */
    MSM_TIER_REFUSED            /* the entry holds the same copy, a newer
                                 * one, or a tombstone: nothing changed */
} msm_tier_put_e;

typedef struct msm_tier_stats {
    apr_uint32_t slots;
    apr_uint32_t in_use;        /* slots holding an entry */
    apr_size_t slot_bytes;
    apr_size_t payload_max;
    apr_uint64_t evicted;       /* since format */
    apr_uint64_t marked;
    apr_uint64_t refused;
    apr_uint64_t recovered;     /* locks taken over from dead writers */
} msm_tier_stats_t;

/* ---- sizes ---- */

/* NULL if bytes and slot_bytes make a table (for httpd -t), else why not.
 * bytes is 64-bit so that a size a 32-bit server cannot map is reported. */
const char *msm_tier_check_size(apr_pool_t *p, apr_uint64_t bytes,
                                apr_uint64_t slot_bytes);

/* How many slots a block of bytes holds (0: sizes not valid). */
apr_uint32_t msm_tier_slots(apr_size_t bytes, apr_size_t slot_bytes);

/* The bytes a table of at least slots slots needs. */
apr_size_t msm_tier_bytes(apr_uint32_t slots, apr_size_t slot_bytes);

/* The largest payload a slot holds. */
apr_size_t msm_tier_payload_max(const msm_tier_t *t);

/* ---- the block ---- */

/* Formats fresh memory (bytes from msm_tier_bytes or the directive; any
 * alignment: the table starts on the first cache line in mem): an empty
 * table. NULL if the sizes are not valid. */
msm_tier_t *msm_tier_format(void *mem, apr_size_t bytes,
                            apr_size_t slot_bytes);

/* The table a previous format left in mem, if it has this layout and these
 * sizes; else NULL and *why says what differs. */
msm_tier_t *msm_tier_attach(void *mem, apr_size_t bytes,
                            apr_size_t slot_bytes, const char **why);

/* ---- entries ---- */

/* Copies key's entry out, taking no lock and making no system call. buf
 * (bufsize bytes) receives the payload and a NUL: msm_tier_payload_max + 1
 * always suffice. now (e.g. the request time) marks the entry as used for
 * eviction, at most once a second. */
msm_tier_get_e msm_tier_get(msm_tier_t *t, const msm_tier_key_t *key,
                            apr_time_t now, msm_tier_entry_t *e,
                            char *buf, apr_size_t bufsize);

/* Stores a copy if msm_copy_supersedes(meta, what the entry holds) or the
 * key has no entry: an older or equal copy never replaces a newer one, and
 * nothing replaces a tombstone. A tombstone's payload is ignored. The entry
 * counts as used at touched. A full bucket gives up its least recently
 * used entry. */
msm_tier_put_e msm_tier_put(msm_tier_t *t, const msm_tier_key_t *key,
                            const msm_copy_meta_t *meta, apr_time_t touched,
                            const char *payload, apr_size_t len);

/* Sets the entry's touched time if it holds exactly the copy meta (same
 * kind, msm_copy_order() == 0, with its payload) and touched is later than
 * the one it has. 1 if it did. */
int msm_tier_touch(msm_tier_t *t, const msm_tier_key_t *key,
                   const msm_copy_meta_t *meta, apr_time_t touched);

/* Takes over and repairs every bucket whose writer died holding its lock;
 * how many. Costs one load per bucket when none did. */
int msm_tier_recover(msm_tier_t *t);

/* Counters and occupancy (walks the tags: for status pages). */
void msm_tier_stats(const msm_tier_t *t, msm_tier_stats_t *out);

/* Tests only: called by a writer inside its critical section, after the
 * slot's counter went odd and its entry was written, before the payload. */
extern void (*msm_tier_test_hook)(void);

#endif
