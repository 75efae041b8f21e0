/* Session locks with memcached add/delete, for apps that send parallel
 * requests with one session.
 *
 * The lock is "lock:<key>" on the session's node, added with a token unique
 * to the request and an expiry, so a crashed holder frees it eventually.
 * Release deletes it only while it still holds our token: a request that
 * outlived its lock must not delete the lock of the request that took it
 * over. The delete is a compare-and-delete (memcached's meta "md" with the
 * cas read), so the lock cannot change hands between the check and the
 * delete; servers without meta commands get gets + delete.
 *
 * Waiters queue in the lock's value: "<holder> <waiter1> <waiter2> ...",
 * each appending its token (and "-<token>" when it gives up: waiters only
 * ever append, which keeps the item's expiry). Release hands the lock to
 * the first waiter still queued (cas of the queue without the holder's
 * token, with a fresh expiry) instead of deleting it, so
 * the requests of one session are served first come, first served; a
 * plain retry loop lets newcomers, which retry sooner, starve the requests
 * that have waited longest. The next waiter in line polls every 5 ms, the
 * others back off (5 ms doubling to 100 ms, jittered). An uncontended lock
 * costs add + gets + md (or delete). */
#ifndef MSM_LOCK_H
#define MSM_LOCK_H

#include "msm_store.h"

#define MSM_LOCK_TOKEN_MAX 48

/* msm_lock_acquire: another request held the lock all the time (a node
 * that does not answer in time is a node failure, APR_TIMEUP, instead). */
#define MSM_LOCK_TIMEOUT (APR_OS_START_USERERR + 730)
#define MSM_LOCK_BACKOFF_MIN apr_time_from_msec(5)
#define MSM_LOCK_BACKOFF_MAX apr_time_from_msec(100)

typedef struct msm_lock_conf {
    apr_uint32_t expire;        /* MsmLockExpire, seconds */
} msm_lock_conf_t;

typedef struct msm_lock {
    int held;
    msm_node_t *node;
    const char *key;
    char token[MSM_LOCK_TOKEN_MAX];
    apr_uint32_t rnd;           /* jitter state */
    apr_uint32_t expire;
} msm_lock_t;

/* Where token stands in a lock value: 0 holds the lock, n is the n-th
 * waiter, -1 is not in it (or gave up: "-<token>" follows it). */
int msm_lock_position(const char *value, const char *token);

/* The queue in value without token: the tokens still queued, in order,
 * one space apart, departure marks and departed tokens dropped. */
char *msm_lock_value_without(apr_pool_t *p, const char *value,
                             const char *token);

/* Takes the lock of session id on node, waiting (with backoff) at most
 * wait_max. APR_SUCCESS: held; MSM_LOCK_TIMEOUT: another request held it all the
 * time; anything else: the node failed and nothing is held. *waited is how
 * long it took. */
apr_status_t msm_lock_acquire(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              const msm_lock_conf_t *lc, msm_lock_t *lock,
                              msm_node_t *node, const msm_id_t *id,
                              apr_interval_time_t wait_max,
                              apr_interval_time_t *waited);

/* Releases a held lock. APR_SUCCESS: deleted; APR_EEXIST: it had expired
 * and belongs to another request now (left alone); APR_NOTFOUND: it had
 * expired; else the node failed. */
apr_status_t msm_lock_release(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_lock_t *lock);

/* The wait before attempt n (from 0): 5 ms doubling to 100 ms, each
 * between half and all of that, from *rnd. */
apr_interval_time_t msm_lock_backoff(int attempt, apr_uint32_t *rnd);

#endif
