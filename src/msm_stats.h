/* Counters kept in shared memory for all children (mod_status, msm-status).
 * Only atomic adds on the hot path; no lock. */
#ifndef MSM_STATS_H
#define MSM_STATS_H

#include <apr_atomic.h>

typedef struct msm_stats {
    volatile apr_uint64_t created;
    volatile apr_uint64_t load_hit;
    volatile apr_uint64_t load_miss;
    volatile apr_uint64_t saved;
    volatile apr_uint64_t skipped_unmodified;
    volatile apr_uint64_t deleted;
    volatile apr_uint64_t relocated;
    volatile apr_uint64_t backup_reads;
    volatile apr_uint64_t backup_hits;
    volatile apr_uint64_t local_hits;       /* sticky mode */
    volatile apr_uint64_t takeovers;        /* sticky mode */
    volatile apr_uint64_t lock_acquired;
    volatile apr_uint64_t lock_waits;       /* acquired after waiting */
    volatile apr_uint64_t lock_wait_us;     /* total wait of those */
    volatile apr_uint64_t lock_timeouts;
    volatile apr_uint64_t lock_lost;        /* released after expiry */
    volatile apr_uint64_t too_large;
    volatile apr_uint64_t dropped_readonly; /* MsmLocking Auto GET writes */
    volatile apr_uint64_t regenerated;      /* new id after login */
    volatile apr_uint64_t unavailable;      /* no node could be used */
} msm_stats_t;

/* Works with a NULL stats pointer, so the core runs without shared memory
 * in unit tests. */
#define MSM_STAT_ADD(stats, field, n) \
    do { if (stats) apr_atomic_add64(&(stats)->field, (n)); } while (0)
#define MSM_STAT_INC(stats, field) MSM_STAT_ADD(stats, field, 1)

#endif
