/* mod_msm: mod_session storage provider keeping sessions in memcached, with
 * backup copies on another node, failover, locking and a sticky local tier.
 *
 * The storage logic lives in src/ (APR only, unit tested); the files here
 * are the httpd glue: mod_msm.c (session hooks, cookie, locking, start-up),
 * mod_msm_config.c (directives), mod_msm_sticky.c (the sticky local tier),
 * mod_msm_status.c (statistics). */
#ifndef MOD_MSM_H
#define MOD_MSM_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_session.h"

#include "msm_copy.h"
#include "msm_id.h"
#include "msm_hash.h"
#include "msm_lock.h"
#include "msm_nodes.h"
#include "msm_stats.h"
#include "msm_store.h"
#include "msm_tier.h"
#include "msm_tls.h"

/* Log message numbers: "MSM" and five digits, like httpd's APLOGNO. */
#define MSMLOGNO(n) "MSM" #n ": "

/* mod_session's own entry holding the expiry time (SessionMaxAge). */
#define MSM_SESSION_EXPIRY   "expiry"

#define MSM_UNSET            -1
#define MSM_DEFAULT_TIMEOUT  apr_time_from_msec(1000)
#define MSM_DEFAULT_IDLE     1800
#define MSM_DEFAULT_RETRY    apr_time_from_sec(10)
/* memcached's default item limit is 1 MiB including key and header. */
#define MSM_DEFAULT_MAX_SIZE (1024 * 1024 - 1024)
#define MSM_DEFAULT_LOCK_EXPIRE   5
#define MSM_DEFAULT_LOCK_TIMEOUT  apr_time_from_msec(3000)

typedef enum {
    MSM_LOCK_OFF = 0,
    MSM_LOCK_ON,
    MSM_LOCK_AUTO               /* GET/HEAD read-only, other methods lock */
} msm_locking_e;

typedef enum {
    MSM_LOCKFAIL_ERROR = 0,     /* 503 with Retry-After */
    MSM_LOCKFAIL_PROCEED        /* go on unlocked, log a warning */
} msm_lockfail_e;

/* Per server (vhost). Unset fields are MSM_UNSET / NULL and inherit. */
typedef struct msm_server_conf {
    msm_nodes_t *nodes;             /* MsmNodes (shared with the vhosts that
                                     * inherit it unchanged) */
    apr_array_header_t *failover;   /* MsmFailoverNodes ids */
    apr_interval_time_t timeout;    /* MsmOperationTimeout */
    const char *prefix;             /* MsmKeyPrefix */
    apr_int64_t idle;               /* MsmIdleTimeout, seconds */
    int backup;                     /* MsmBackup */
    int backup_async;               /* MsmBackupAsync */
    apr_interval_time_t retry;      /* MsmNodeRetry */
    apr_int64_t max_size;           /* MsmMaxSessionSize */
    apr_int64_t lock_expire;        /* MsmLockExpire, seconds */
    int sticky;                     /* MsmSticky */
    const char *route;              /* MsmRoute */
    apr_int64_t sticky_bytes;       /* MsmStickyCache size (main server) */
    apr_int64_t sticky_slot;        /* MsmStickyCache slot size */
    const char *auth_user;          /* MsmAuth / MsmAuthFile */
    const char *auth_password;
    int tls;                        /* MsmTLS */
    msm_tls_files_t tls_files;      /* MsmTLS*File (absolute paths) */
    const char *tls_name;           /* MsmTLSVerifyName */
    msm_crypt_t *crypt;             /* MsmEncryptKeyFile */

    /* Resolved at check_config/post_config. */
    msm_store_conf_t store;
    msm_lock_conf_t lock;
    apr_uint64_t scope;             /* what sessions this server shares
                                     * (node addresses, key prefix): the
                                     * sticky tier's key covers it */
} msm_server_conf_t;

/* Per directory. */
typedef struct msm_dir_conf {
    const char *cookie_name;        /* MsmCookieName: mod_msm on here */
    const char *cookie_attrs;       /* normalised "a;b;c" */
    int cookie_set;
    int locking;                    /* MsmLocking */
    apr_interval_time_t lock_timeout;  /* MsmLockTimeout */
    int lock_fail;                  /* MsmLockFail */
    int regenerate;                 /* MsmRegenerateOnLogin */
} msm_dir_conf_t;

/* One top-level request's session, shared by its subrequests and internal
 * redirects (mod_session calls the load hook many times per request). */
typedef struct msm_req {
    request_rec *r;                 /* the top request */
    const msm_server_conf_t *sc;
    const msm_dir_conf_t *dc;
    session_rec *z;
    msm_session_t s;
    msm_store_ctx_t ctx;
    msm_hash_t loaded_hash;
    int hashed;                     /* loaded_hash is set */
    apr_time_t loaded_expiry;       /* mod_session's expiry as loaded */
    const char *loaded_user;        /* "<AuthName>-user" values as loaded */
    int loaded;                     /* load_session() ran */
    int cookie_in;                  /* the request carried a valid cookie */
    int read_only;                  /* MsmLocking Auto on GET/HEAD */
    int lock_tried;
    int from_local;                 /* sticky: served by the local tier */
    int destroyed_here;             /* this request destroyed the session */
    int cookie_written;
    msm_lock_t lock;
} msm_req_t;

extern module AP_MODULE_DECLARE_DATA msm_module;

/* mod_msm_config.c */
extern const command_rec msm_cmds[];
void *msm_create_server_conf(apr_pool_t *p, server_rec *s);
void *msm_merge_server_conf(apr_pool_t *p, void *basev, void *addv);
void *msm_create_dir_conf(apr_pool_t *p, char *dir);
void *msm_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
/* Resolves inheritance into each server's store settings; an error text
 * naming the directive, or NULL. */
const char *msm_config_finalize(apr_pool_t *p, server_rec *s);
/* Every distinct node list of the configuration (msm_nodes_t *). */
apr_array_header_t *msm_config_all_nodes(void);

/* mod_msm_status.c */
void msm_status_register_hooks(apr_pool_t *p);
msm_stats_t *msm_status_stats(void);
void msm_status_set_shared(msm_stats_t *stats, apr_array_header_t *all_nodes);

/* mod_msm_sticky.c: the local shared-memory tier of sticky mode. */
apr_status_t msm_sticky_post_config(apr_pool_t *p, server_rec *s);
void msm_sticky_register_hooks(apr_pool_t *p);
/* 1 if the local tier answered for q's session (its cookie carries our
 * route): q->s is the session, or the id is destroyed (q->s.destroyed). */
int msm_sticky_get(msm_req_t *q);
/* After a load from memcached: keep it locally; a foreign route is a
 * takeover and the cookie moves to this server's route. */
void msm_sticky_loaded(msm_req_t *q);
/* After a save: q->s as written. */
void msm_sticky_put(msm_req_t *q, const char *value, apr_size_t len);
/* The tier's numbers (for the statistics); 0 when there is no tier. */
int msm_sticky_tier_stats(msm_tier_stats_t *out);
/* id is destroyed (logout, new id at login, found destroyed). */
void msm_sticky_destroyed(msm_req_t *q, const msm_id_t *id,
                          apr_uint64_t version);

/* mod_msm.c helpers used by the other glue files */
void msm_log_cb(void *baton, int level, apr_status_t rv, const char *msg);
/* The log tag of q's session (never the id itself: it is a credential). */
const char *msm_req_tag(const msm_req_t *q);

#endif
