#include "msm_lock.h"

#include <string.h>
#include <unistd.h>
#include <apr_strings.h>

apr_interval_time_t msm_lock_backoff(int attempt, apr_uint32_t *rnd)
{
    apr_interval_time_t d = MSM_LOCK_BACKOFF_MIN;
    apr_uint32_t x = *rnd ? *rnd : 0x9e3779b9u;

    while (attempt-- > 0 && d < MSM_LOCK_BACKOFF_MAX) {
        d *= 2;
    }
    if (d > MSM_LOCK_BACKOFF_MAX) {
        d = MSM_LOCK_BACKOFF_MAX;
    }
    /* xorshift32: jitter needs no more than this */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *rnd = x;
    return d / 2 + (apr_interval_time_t)(x % (apr_uint32_t)(d / 2 + 1));
}

static apr_status_t make_token(msm_lock_t *lock)
{
    unsigned char raw[8];
    apr_status_t rv = apr_generate_random_bytes(raw, sizeof(raw));
    int i, n;

    if (rv != APR_SUCCESS) {
        return rv;
    }
    for (i = 0, n = 0; i < 8; i++) {
        n += apr_snprintf(lock->token + n, sizeof(lock->token) - n, "%02x",
                          raw[i]);
    }
    apr_snprintf(lock->token + n, sizeof(lock->token) - n, ".%ld",
                 (long)getpid());
    memcpy(&lock->rnd, raw, sizeof(lock->rnd));
    return APR_SUCCESS;
}

apr_status_t msm_lock_acquire(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              const msm_lock_conf_t *lc, msm_lock_t *lock,
                              msm_node_t *node, const msm_id_t *id,
                              apr_interval_time_t wait_max,
                              apr_interval_time_t *waited)
{
    apr_time_t start = apr_time_now();
    apr_status_t rv;
    int attempt;

    memset(lock, 0, sizeof(*lock));
    *waited = 0;
    if ((rv = make_token(lock)) != APR_SUCCESS) {
        return rv;
    }
    lock->node = node;
    lock->key = msm_id_key(ctx->pool, MSM_NS_LOCK, c->prefix, id);
    for (attempt = 0;; attempt++) {
        apr_time_t t0 = apr_time_now();
        apr_interval_time_t pause;

        rv = msm_mc_store(node->mc, MSM_MC_ADD, lock->key, lock->token,
                          strlen(lock->token), 0, lc->expire, 0);
        msm_store_node_done(c, ctx, node, rv, t0);
        *waited = apr_time_now() - start;
        if (rv == APR_SUCCESS) {
            lock->held = 1;
            return APR_SUCCESS;
        }
        if (rv != APR_EEXIST) {
            return rv;
        }
        pause = msm_lock_backoff(attempt, &lock->rnd);
        if (*waited + pause > wait_max) {
            /* Sleep out what is left, then one last try. */
            pause = wait_max - *waited;
            if (pause <= 0) {
                return APR_TIMEUP;
            }
            apr_sleep(pause);
            wait_max = 0;
            continue;
        }
        apr_sleep(pause);
    }
}

apr_status_t msm_lock_release(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_lock_t *lock)
{
    msm_mc_item_t item;
    apr_time_t t0;
    apr_status_t rv;

    if (!lock->held) {
        return APR_SUCCESS;
    }
    lock->held = 0;
    t0 = apr_time_now();
    rv = msm_mc_get(lock->node->mc, ctx->pool, lock->key, &item);
    msm_store_node_done(c, ctx, lock->node, rv, t0);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (strcmp(item.value, lock->token) != 0) {
        return APR_EEXIST;
    }
    t0 = apr_time_now();
    rv = msm_mc_delete(lock->node->mc, lock->key);
    msm_store_node_done(c, ctx, lock->node, rv, t0);
    return rv;
}
