/* Sessions on memcached nodes: the executor of the decisions in
 * msm_copy.h. It reads and writes copies on nodes, reports every
 * operation's outcome to the node's health, and defers what can wait
 * until after the response. mod_msm.c turns requests into these calls. */
#ifndef MSM_STORE_H
#define MSM_STORE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "msm_copy.h"
#include "msm_crypt.h"
#include "msm_id.h"
#include "msm_mc.h"
#include "msm_nodes.h"
#include "msm_stats.h"

/* Levels as syslog and APLOG_* number them. */
#define MSM_LOG_ERR     3
#define MSM_LOG_WARNING 4
#define MSM_LOG_NOTICE  5
#define MSM_LOG_INFO    6
#define MSM_LOG_DEBUG   7

/* The id is destroyed: a write to it was dropped. */
#define MSM_STORE_GONE (APR_OS_START_USERERR + 720)
/* The node holds a copy too large to read: it is not written over. */
#define MSM_STORE_UNREADABLE (APR_OS_START_USERERR + 721)
/* Other requests kept changing the copy while this one wrote it. */
#define MSM_STORE_CONTENDED (APR_OS_START_USERERR + 722)

/* The largest item mod_msm writes or reads: MsmMaxSessionSize, the
 * copy's header and what sealing adds (the memcached client's max_value). */
#define MSM_STORE_ITEM_MAX(max_session) \
    ((max_session) + MSM_COPY_HEADER_MAX + MSM_CRYPT_OVERHEAD)

/* msg starts with its "MSMnnnnn: " number. */
typedef void msm_log_fn(void *baton, int level, apr_status_t rv,
                        const char *msg);

typedef struct msm_store_conf {
    msm_nodes_t *nodes;
    const char *prefix;         /* MsmKeyPrefix */
    apr_uint32_t idle;          /* MsmIdleTimeout, seconds */
    int backup;                 /* backup copies on (needs 2+ nodes) */
    int backup_async;           /* write them after the response */
    const char *route;          /* sticky: MsmRoute, named in the copies
                                 * this server writes; else NULL */
    msm_crypt_t *crypt;         /* MsmEncryptKeyFile: copies are sealed;
                                 * NULL: written in clear text */
    msm_stats_t *stats;         /* may be NULL */
} msm_store_conf_t;

/* One request's work with the store. */
typedef struct msm_store_ctx {
    apr_pool_t *pool;
    msm_log_fn *log;
    void *log_baton;
    apr_array_header_t *later;  /* deferred operations (msm_later_t) */
    apr_array_header_t *failed; /* nodes that failed in this request */
    int wrote;                  /* the session was saved or removed */
    int went_down;              /* a node was marked down in this request:
                                 * publish it (see msm_store_run_later) */
} msm_store_ctx_t;

/* A session as this request sees it. */
typedef struct msm_session {
    msm_id_t id;
    int has_id;                 /* id is set (from a cookie or a save) */
    msm_node_t *node;           /* node of its primary copy; NULL: the
                                 * cookie names a node no longer configured */
    const char *value;          /* payload as loaded; NULL when not found */
    apr_size_t len;
    msm_copy_meta_t meta;       /* of the copy loaded or written last
                                 * (version 0: none) */
    apr_uint64_t cas;           /* of that copy on node; 0: not known (a
                                 * write then reads first) */
    int id_changed;             /* new id or node: the cookie must change */
    int destroyed;              /* the load found the id destroyed */
    apr_time_t loaded_at;       /* when it was read (a save checks whether
                                 * its node failed since) */
} msm_session_t;

void msm_store_ctx_init(msm_store_ctx_t *ctx, apr_pool_t *p, msm_log_fn *log,
                        void *baton);

/* Loads s->id. APR_SUCCESS: s->value is the session (its primary may have
 * moved: then s->id_changed). APR_NOTFOUND: no node has it, or it is
 * destroyed (s->destroyed). MSM_MC_ETOOBIG: it is larger than this server
 * reads. Otherwise nodes failed and it could not be told. */
apr_status_t msm_store_load(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s);

/* Writes value as the session: a new id when s has none, the same id
 * otherwise (on another node if its node is down or no longer
 * configured), as the newest copy (last writer wins) but never over a
 * tombstone: MSM_STORE_GONE when the id was destroyed meanwhile. Queues
 * the backup copy. */
apr_status_t msm_store_save(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                            msm_session_t *s, const char *value,
                            apr_size_t len);

/* Destroys the session: a tombstone replaces its copy on every node that
 * can be reached, before this returns; s no longer has an id. */
apr_status_t msm_store_remove(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                              msm_session_t *s);

/* Moves s to a fresh id (session fixation after a login): the value is
 * written under the new id and the old id destroyed at once. */
apr_status_t msm_store_regenerate(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_session_t *s,
                                  const char *value, apr_size_t len);

/* Sticky mode, a takeover: writes the copy s just loaded again as a new
 * version naming this server's route (c->route), if the node still holds
 * that copy (cas), so that the server that served it before sees that it
 * no longer does. The backup is left as it is. */
apr_status_t msm_store_claim(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                             msm_session_t *s);

/* Sticky mode, a session served from the local tier: memcached's copies
 * must not expire meanwhile. Touches primary and backup after the
 * response, writing s's copy where memcached lost it (never over a newer
 * copy). */
void msm_store_keepalive(const msm_store_conf_t *c, msm_store_ctx_t *ctx,
                         const msm_session_t *s);

/* Runs what was deferred (backup writes, refreshes, repairs), and
 * publishes the node failures this request saw to the other nodes. */
void msm_store_run_later(const msm_store_conf_t *c, msm_store_ctx_t *ctx);

/* One operation on one node, its outcome reported to the node's health
 * (a state change is logged once) and counted; also used by the locks. */
apr_status_t msm_store_node_get(const msm_store_conf_t *c,
                                msm_store_ctx_t *ctx, msm_node_t *n,
                                const char *key, int touch,
                                msm_mc_item_t *item);
apr_status_t msm_store_node_store(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  msm_mc_store_mode_e mode, const char *key,
                                  const char *value, apr_size_t len,
                                  apr_uint32_t exptime, apr_uint64_t cas);
apr_status_t msm_store_node_delete(const msm_store_conf_t *c,
                                   msm_store_ctx_t *ctx, msm_node_t *n,
                                   const char *key);
/* Deletes key only while its cas is cas (APR_ENOTIMPL: the node has no
 * compare-and-delete; nothing was done). */
apr_status_t msm_store_node_delete_cas(const msm_store_conf_t *c,
                                       msm_store_ctx_t *ctx, msm_node_t *n,
                                       const char *key, apr_uint64_t cas);
apr_status_t msm_store_node_touch(const msm_store_conf_t *c,
                                  msm_store_ctx_t *ctx, msm_node_t *n,
                                  const char *key, apr_uint32_t exptime);

#endif
