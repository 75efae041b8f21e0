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

/* The token at the start of s (tokens are separated by single spaces). */
static apr_size_t token_len(const char *s)
{
    const char *space = strchr(s, ' ');
    return space ? (apr_size_t)(space - s) : strlen(s);
}

int msm_lock_position(const char *value, const char *token)
{
    apr_size_t want = strlen(token);
    int pos = 0;

    while (*value) {
        apr_size_t n = token_len(value);
        if (n == want && memcmp(value, token, n) == 0) {
            return pos;
        }
        value += n;
        while (*value == ' ') {
            value++;
        }
        pos++;
    }
    return -1;
}

char *msm_lock_value_without(apr_pool_t *p, const char *value,
                             const char *token)
{
    apr_size_t want = strlen(token);
    char *out = apr_palloc(p, strlen(value) + 1), *o = out;
    int removed = 0;

    while (*value == ' ') {
        value++;
    }
    while (*value) {
        apr_size_t n = token_len(value);
        if (!removed && n == want && memcmp(value, token, n) == 0) {
            removed = 1;
        }
        else {
            if (o != out) {
                *o++ = ' ';
            }
            memcpy(o, value, n);
            o += n;
        }
        value += n;
        while (*value == ' ') {
            value++;
        }
    }
    *o = '\0';
    return out;
}

/* One store/get on the lock's node, with the node's health updated. */
static apr_status_t lock_store(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_lock_t *lock,
                               msm_mc_store_mode_e mode, const char *value,
                               apr_uint64_t cas)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = msm_mc_store(lock->node->mc, mode, lock->key, value,
                                   strlen(value), 0, lock->expire, cas);

    msm_store_node_done(c, ctx, lock->node, rv, t0);
    return rv;
}

static apr_status_t lock_get(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_lock_t *lock, msm_mc_item_t *item)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv = msm_mc_get(lock->node->mc, ctx->pool, lock->key, item);

    msm_store_node_done(c, ctx, lock->node, rv, t0);
    return rv;
}

/* add the lock, or join its queue. APR_SUCCESS: held; APR_EEXIST: queued;
 * else the node failed. */
static apr_status_t take_or_queue(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_lock_t *lock)
{
    const char *entry = apr_pstrcat(ctx->pool, " ", lock->token, NULL);
    int tries;
    apr_status_t rv = APR_EGENERAL;

    /* Bounded: each round the lock either exists (append works) or not
     * (add works) unless it comes and goes in between. */
    for (tries = 0; tries < 3; tries++) {
        rv = lock_store(c, ctx, lock, MSM_MC_ADD, lock->token, 0);
        if (rv != APR_EEXIST) {
            return rv;
        }
        rv = lock_store(c, ctx, lock, MSM_MC_APPEND, entry, 0);
        if (rv == APR_SUCCESS) {
            return APR_EEXIST;
        }
        if (rv != APR_EEXIST) {      /* NOT_STORED: the lock just went */
            return rv;
        }
    }
    return APR_EEXIST;              /* neither: wait and look again */
}

/* Takes our token out of the queue when we stop waiting. If the lock was
 * handed to us meanwhile, it is ours after all: APR_SUCCESS. */
static apr_status_t leave_queue(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_lock_t *lock)
{
    int tries;

    for (tries = 0; tries < 5; tries++) {
        msm_mc_item_t item;
        apr_status_t rv = lock_get(c, ctx, lock, &item);
        int pos;

        if (rv != APR_SUCCESS) {
            return APR_TIMEUP;
        }
        pos = msm_lock_position(item.value, lock->token);
        if (pos == 0) {
            return APR_SUCCESS;
        }
        if (pos < 0
            || lock_store(c, ctx, lock, MSM_MC_CAS,
                          msm_lock_value_without(ctx->pool, item.value,
                                                 lock->token),
                          item.cas) != APR_EEXIST) {
            return APR_TIMEUP;
        }
    }
    return APR_TIMEUP;
}

apr_status_t msm_lock_acquire(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              const msm_lock_conf_t *lc, msm_lock_t *lock,
                              msm_node_t *node, const msm_id_t *id,
                              apr_interval_time_t wait_max,
                              apr_interval_time_t *waited)
{
    apr_time_t start = apr_time_now();
    apr_status_t rv;
    int attempt, pos = -1;

    memset(lock, 0, sizeof(*lock));
    *waited = 0;
    if ((rv = make_token(lock)) != APR_SUCCESS) {
        return rv;
    }
    lock->node = node;
    lock->expire = lc->expire;
    lock->key = msm_id_key(ctx->pool, MSM_NS_LOCK, c->prefix, id);
    rv = take_or_queue(c, ctx, lock);
    for (attempt = 0; rv == APR_EEXIST; attempt++) {
        msm_mc_item_t item;
        apr_interval_time_t pause = pos == 1 ? MSM_LOCK_BACKOFF_MIN
                                    : msm_lock_backoff(attempt, &lock->rnd);

        *waited = apr_time_now() - start;
        if (*waited >= wait_max) {
            rv = leave_queue(c, ctx, lock);
            break;
        }
        /* The last pause ends at wait_max, for one last look. */
        apr_sleep(*waited + pause > wait_max ? wait_max - *waited : pause);
        rv = lock_get(c, ctx, lock, &item);
        if (rv == APR_NOTFOUND) {
            /* The holder died and its lock expired: the queue went with it. */
            rv = take_or_queue(c, ctx, lock);
            pos = -1;
            continue;
        }
        if (rv != APR_SUCCESS) {
            break;
        }
        pos = msm_lock_position(item.value, lock->token);
        rv = pos == 0 ? APR_SUCCESS
             : pos > 0 ? APR_EEXIST : take_or_queue(c, ctx, lock);
    }
    *waited = apr_time_now() - start;
    lock->held = rv == APR_SUCCESS;
    return rv;
}

apr_status_t msm_lock_release(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_lock_t *lock)
{
    int tries;

    if (!lock->held) {
        return APR_SUCCESS;
    }
    lock->held = 0;
    for (tries = 0; tries < 5; tries++) {
        msm_mc_item_t item;
        apr_status_t rv = lock_get(c, ctx, lock, &item);
        const char *rest;

        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (msm_lock_position(item.value, lock->token) != 0) {
            return APR_EEXIST;      /* expired, and taken by another */
        }
        rest = msm_lock_value_without(ctx->pool, item.value, lock->token);
        if (*rest == '\0') {
            apr_time_t t0 = apr_time_now();
            rv = msm_mc_delete(lock->node->mc, lock->key);
            msm_store_node_done(c, ctx, lock->node, rv, t0);
            return rv;
        }
        /* Hand it to the first waiter, with a fresh expiry. EXISTS: a
         * waiter joined meanwhile; look again. */
        rv = lock_store(c, ctx, lock, MSM_MC_CAS, rest, item.cas);
        if (rv != APR_EEXIST) {
            return rv;
        }
    }
    return APR_EGENERAL;
}
