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

/* The token at the start of s (tokens are separated by spaces). */
static apr_size_t token_len(const char *s)
{
    const char *space = strchr(s, ' ');
    return space ? (apr_size_t)(space - s) : strlen(s);
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ') {
        s++;
    }
    return s;
}

/* Whether the token at t[0..n) is followed, later in the value, by its
 * departure mark "-<token>". */
static int departed(const char *t, apr_size_t n)
{
    const char *s = skip_spaces(t + n);

    while (*s) {
        apr_size_t m = token_len(s);
        if (m == n + 1 && s[0] == '-' && memcmp(s + 1, t, n) == 0) {
            return 1;
        }
        s = skip_spaces(s + m);
    }
    return 0;
}

/* Calls fn for each token still in the queue, in order; stops when fn
 * returns non-zero and returns that. */
typedef int token_fn(void *baton, const char *t, apr_size_t n);

static int each_queued(const char *value, token_fn *fn, void *baton)
{
    const char *s = skip_spaces(value);

    while (*s) {
        apr_size_t n = token_len(s);
        int rv;
        if (s[0] != '-' && !departed(s, n) && (rv = fn(baton, s, n)) != 0) {
            return rv;
        }
        s = skip_spaces(s + n);
    }
    return 0;
}

typedef struct {
    const char *token;
    apr_size_t len;
    int pos;
} find_t;

static int find_token(void *baton, const char *t, apr_size_t n)
{
    find_t *f = baton;

    if (n == f->len && memcmp(t, f->token, n) == 0) {
        return 1;
    }
    f->pos++;
    return 0;
}

int msm_lock_position(const char *value, const char *token)
{
    find_t f = { token, strlen(token), 0 };

    return each_queued(value, find_token, &f) ? f.pos : -1;
}

typedef struct {
    find_t skip;
    int skipped;
    char *out, *o;
} join_t;

static int join_token(void *baton, const char *t, apr_size_t n)
{
    join_t *j = baton;

    if (!j->skipped && n == j->skip.len && memcmp(t, j->skip.token, n) == 0) {
        j->skipped = 1;
        return 0;
    }
    if (j->o != j->out) {
        *j->o++ = ' ';
    }
    memcpy(j->o, t, n);
    j->o += n;
    return 0;
}

char *msm_lock_value_without(apr_pool_t *p, const char *value,
                             const char *token)
{
    join_t j;

    j.skip.token = token;
    j.skip.len = strlen(token);
    j.skipped = 0;
    j.out = j.o = apr_palloc(p, strlen(value) + 1);
    each_queued(value, join_token, &j);
    *j.o = '\0';
    return j.out;
}

/* One store/get on the lock's key and node. */
static apr_status_t lock_store(const msm_store_conf_t *c,
                               msm_store_ctx_t *ctx, msm_lock_t *lock,
                               msm_mc_store_mode_e mode, const char *value,
                               apr_uint64_t cas)
{
    return msm_store_node_store(c, ctx, lock->node, mode, lock->key, value,
                                strlen(value), lock->expire, cas);
}

static apr_status_t lock_get(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_lock_t *lock, msm_mc_item_t *item)
{
    return msm_store_node_get(c, ctx, lock->node, lock->key, 0, item);
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

/* Leaves the queue when we stop waiting, by appending "-<token>": an
 * append keeps the item's expiry (a cas would have to set one, and the lock
 * is another request's). If the lock was handed to us meanwhile, it is ours
 * after all: APR_SUCCESS. */
static apr_status_t leave_queue(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_lock_t *lock)
{
    msm_mc_item_t item;

    lock_store(c, ctx, lock, MSM_MC_APPEND,
               apr_pstrcat(ctx->pool, " -", lock->token, NULL), 0);
    if (lock_get(c, ctx, lock, &item) == APR_SUCCESS
        && msm_lock_position(item.value, lock->token) == 0) {
        return APR_SUCCESS;
    }
    return MSM_LOCK_TIMEOUT;
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
    /* memcached's clock ticks once a second, so an item set with exptime
     * N may go after N - 1 seconds: one more keeps the lock for
     * MsmLockExpire at least (and a crashed holder's for MsmLockExpire + 1
     * at most). */
    lock->expire = lc->expire + 1;
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

/* Deletes the lock, nobody waiting, as read with cas: only if it is still
 * the same item (memcached's compare-and-delete, "md <key> C<cas>"). A
 * server without meta commands (twemproxy, yrmcds) gets a plain delete:
 * there, if the lock expires and another request takes it between our
 * read and the delete, that request's lock is deleted (README,
 * "Locking"). */
static apr_status_t release_unqueued(const msm_store_conf_t *c,
                                     msm_store_ctx_t *ctx, msm_lock_t *lock,
                                     apr_uint64_t cas)
{
    apr_status_t rv = msm_store_node_delete_cas(c, ctx, lock->node, lock->key,
                                                cas);

    if (rv == APR_ENOTIMPL) {
        rv = msm_store_node_delete(c, ctx, lock->node, lock->key);
    }
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
            rv = release_unqueued(c, ctx, lock, item.cas);
            if (rv != APR_EEXIST) {
                return rv;
            }
            continue;           /* a waiter joined meanwhile: look again */
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
