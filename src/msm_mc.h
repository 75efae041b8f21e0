/* A small memcached text-protocol client with a deadline on every operation.
 *
 * Why not apr_memcache: as shipped it sets no I/O timeout after connect (a
 * stopped memcached blocks a request forever), sends "delete <key> 0"
 * (rejected by twemproxy and yrmcds), and has no gat/gats/touch/cas.
 *
 * One msm_mc_server_t is one memcached endpoint inside one httpd child: a
 * small stack of idle connections, each used by one thread at a time. An
 * operation is one write and, normally, one read: the socket is blocking with
 * SO_RCVTIMEO/SO_SNDTIMEO set to what is left of the operation's deadline.
 * A connection that saw any error is closed, never put back half-read.
 * TLS connections (MsmTLS) are the exception to the blocking socket: one
 * SSL_read may need several reads, so they are non-blocking and every
 * wait is a poll() for what is left of the deadline.
 */
#ifndef MSM_MC_H
#define MSM_MC_H

#include <apr_pools.h>
#include <apr_network_io.h>
#include <apr_time.h>

typedef struct msm_mc_server msm_mc_server_t;

/* Outcomes of an operation besides APR_SUCCESS:
 *   APR_NOTFOUND   miss (gets/gats), NOT_FOUND (delete, touch, cas)
 *   APR_EEXIST     NOT_STORED (add) or EXISTS (cas)
 *   MSM_MC_EREPLY  the server answered ERROR/CLIENT_ERROR/SERVER_ERROR:
 *                  it is alive but refused this request
 *   MSM_MC_ETOOBIG a value to store is larger than max_value (nothing was
 *                  sent), or the item read is (it was not read; the
 *                  connection is closed, the node is not at fault)
 *   APR_ENOTIMPL   the server does not know the command (meta commands on
 *                  twemproxy or yrmcds); nothing changed
 *   APR_EINVAL     a key memcached cannot take; nothing was sent
 *   MSM_MC_EAUTH   memcached (-Y) refused the credentials, or wants some
 *                  and none are configured: the node counts as failed
 *   MSM_MC_ETLS... TLS failed (MsmTLS): the handshake, the server's
 *                  certificate (ETLS_VERIFY + X509_V_ERR_*) or a TLS
 *                  error later (ETLS_SSL + OpenSSL's reason code); the
 *                  node counts as failed. Nothing is ever sent in clear
 *                  instead.
 *   anything else  the node failed: connect, timeout, I/O or a malformed
 *                  reply (use msm_mc_node_failed()) */
#define MSM_MC_EREPLY  (APR_OS_START_USERERR + 701)
#define MSM_MC_ETOOBIG (APR_OS_START_USERERR + 702)
#define MSM_MC_EPROTO  (APR_OS_START_USERERR + 703)
#define MSM_MC_EAUTH   (APR_OS_START_USERERR + 704)
#define MSM_MC_ETLS    (APR_OS_START_USERERR + 705)
/* A TLS server that refuses the client certificate (TLS 1.3) closes the
 * connection after the handshake; the first request meets a reset. */
#define MSM_MC_ETLS_RESET (APR_OS_START_USERERR + 706)
#define MSM_MC_ETLS_RANGE  1000         /* X509_V_ERR_* are below it */
#define MSM_MC_ETLS_VERIFY (APR_OS_START_USERERR + 1000)
#define MSM_MC_ETLS_SSL_RANGE 3000      /* SSL_R_* and alerts (1000+) */
#define MSM_MC_ETLS_SSL    (APR_OS_START_USERERR + 2000)

/* Words for mod_msm's own outcomes in a log line (NULL for APR's own, which
 * apr_strerror words); TLS failures name OpenSSL's reason. */
const char *msm_mc_reason(apr_pool_t *p, apr_status_t rv);

/* memcached's text-protocol authentication takes "<user> <password>" as
 * the value of a set: the user without white space, neither with CR or
 * LF, both 1-250 bytes. NULL if they can be sent, else why not. */
const char *msm_mc_auth_problem(const char *user, const char *password);

#define MSM_MC_KEY_MAX 250
/* memcached's largest item (-I 1024m): a longer VALUE is not memcached. */
#define MSM_MC_ITEM_MAX (1024u * 1024u * 1024u)

int msm_mc_node_failed(apr_status_t rv);

typedef struct msm_mc_item {
    char *value;              /* NUL-terminated copy in the caller's pool */
    apr_size_t len;
    apr_uint32_t flags;
    apr_uint64_t cas;
} msm_mc_item_t;

typedef enum {
    MSM_MC_SET,
    MSM_MC_ADD,
    MSM_MC_CAS,
    MSM_MC_APPEND
} msm_mc_store_mode_e;

/* Called after every operation with its outcome and duration (for
 * statistics), and once when the server turns out not to know gats, or
 * meta commands, and after each TLS handshake. Any member may be NULL. */
typedef struct msm_mc_observer {
    void (*op_done)(void *baton, apr_status_t rv, apr_interval_time_t took);
    void (*no_gat)(void *baton);
    void (*no_meta)(void *baton);
    void (*handshake)(void *baton, int resumed);    /* MsmTLS */
    void *baton;
} msm_mc_observer_t;

/* max_idle: idle connections kept (the child's thread count is right);
 * max_value: largest value sent or accepted. */
apr_status_t msm_mc_server_create(apr_pool_t *p, apr_sockaddr_t *addr,
                                  apr_interval_time_t timeout,
                                  apr_size_t max_value, int max_idle,
                                  const msm_mc_observer_t *observer,
                                  msm_mc_server_t **out);

/* Authenticates every new connection first (memcached -Y): "set <key> 0 -1
 * <len>" with "<user> <password>", within the deadline of the operation
 * that opened it. Call before the first operation; see
 * msm_mc_auth_problem. */
void msm_mc_server_set_auth(msm_mc_server_t *s, const char *user,
                            const char *password);

/* Speaks TLS on every new connection (MsmTLS), before anything else and
 * within the deadline of the operation that opened it: ctx from
 * msm_tls_ctx_make; the server's certificate must be valid for name (a
 * host name, also sent as SNI, or an IP address). Call before the first
 * operation. */
struct ssl_ctx_st;
void msm_mc_server_set_tls(msm_mc_server_t *s, struct ssl_ctx_st *ctx,
                           const char *name);

/* gets: the value with its flags and cas. */
apr_status_t msm_mc_get(msm_mc_server_t *s, apr_pool_t *p, const char *key,
                        msm_mc_item_t *item);

/* gats: the same, and the item's expiry slides to exptime, in one round
 * trip; on servers without gats (twemproxy, yrmcds) gets + touch. */
apr_status_t msm_mc_get_touch(msm_mc_server_t *s, apr_pool_t *p,
                              const char *key, apr_uint32_t exptime,
                              msm_mc_item_t *item);

/* set, add, cas or append (cas_unique is used for MSM_MC_CAS only). */
apr_status_t msm_mc_store(msm_mc_server_t *s, msm_mc_store_mode_e mode,
                          const char *key, const char *value, apr_size_t len,
                          apr_uint32_t flags, apr_uint32_t exptime,
                          apr_uint64_t cas_unique);

/* "delete <key>": without the legacy time argument twemproxy and yrmcds
 * reject. */
apr_status_t msm_mc_delete(msm_mc_server_t *s, const char *key);

/* Compare-and-delete ("md <key> C<cas>", memcached >= 1.6): deletes the
 * key only while its cas is still cas. APR_SUCCESS: deleted; APR_EEXIST:
 * it changed; APR_NOTFOUND: gone; APR_ENOTIMPL: the server has no meta
 * commands (found out once: twemproxy, yrmcds), nothing was deleted. */
apr_status_t msm_mc_delete_cas(msm_mc_server_t *s, const char *key,
                               apr_uint64_t cas);

apr_status_t msm_mc_touch(msm_mc_server_t *s, const char *key,
                          apr_uint32_t exptime);

apr_status_t msm_mc_version(msm_mc_server_t *s, apr_pool_t *p,
                            char **version);

/* Closes the idle connections (child exit, tests). */
void msm_mc_server_close_idle(msm_mc_server_t *s);

/* ---- The reply parser, exposed for unit tests and fuzzing. ---- */

typedef enum {
    MSM_MC_REPLY_RETRIEVAL,   /* gets, gats */
    MSM_MC_REPLY_STORAGE,     /* set, add, cas */
    MSM_MC_REPLY_DELETE,
    MSM_MC_REPLY_TOUCH,
    MSM_MC_REPLY_VERSION,
    MSM_MC_REPLY_META_DELETE  /* md: HD, NF, EX */
} msm_mc_reply_kind_e;

typedef enum {
    MSM_MC_R_VALUE, MSM_MC_R_END, MSM_MC_R_STORED, MSM_MC_R_NOT_STORED,
    MSM_MC_R_EXISTS, MSM_MC_R_NOT_FOUND, MSM_MC_R_DELETED, MSM_MC_R_TOUCHED,
    MSM_MC_R_VERSION, MSM_MC_R_ERROR, MSM_MC_R_CLIENT_ERROR,
    MSM_MC_R_SERVER_ERROR
} msm_mc_reply_type_e;

typedef struct msm_mc_reply {
    msm_mc_reply_type_e type;
    const char *data;         /* value, version or error text; not NUL-ended */
    apr_size_t len;
    apr_uint32_t flags;
    apr_uint64_t cas;
} msm_mc_reply_t;

/* Parses one whole reply of the given kind from buf[0..len).
 * APR_SUCCESS: *reply is set and *consumed says how many bytes it took;
 * APR_INCOMPLETE: more bytes are needed; MSM_MC_EPROTO: the bytes are not a
 * reply to this request (wrong key, bad numbers, ...) and the connection
 * must be dropped; MSM_MC_ETOOBIG: a well-formed VALUE header announces
 * more than max_value bytes (the connection must be dropped too, but the
 * server is not at fault). key is the key asked for (retrievals
 * only): a VALUE for any other key is a protocol error. */
apr_status_t msm_mc_parse_reply(msm_mc_reply_kind_e kind, const char *key,
                                const char *buf, apr_size_t len,
                                apr_size_t max_value, msm_mc_reply_t *reply,
                                apr_size_t *consumed);

#endif
