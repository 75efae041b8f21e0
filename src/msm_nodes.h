/* The memcached nodes of one server (vhost): parsing MsmNodes, health shared
 * by all httpd children, and the choice of node for a new session and for
 * a backup copy. */
#ifndef MSM_NODES_H
#define MSM_NODES_H

#include <apr_pools.h>
#include <apr_network_io.h>
#include <apr_time.h>

#include "msm_id.h"
#include "msm_mc.h"

/* Latency buckets of the per-node histogram, upper bounds in µs. */
#define MSM_LATENCY_BUCKETS 9
extern const apr_interval_time_t msm_latency_bounds[MSM_LATENCY_BUCKETS];

/* The part of a node that lives in shared memory: every child sees the same
 * health and counters. Written with atomics only. One per memcached
 * address, in a table that outlives graceful restarts (msm_health_*). */
typedef struct msm_node_shared {
    volatile apr_uint32_t dead;
    volatile apr_uint32_t no_gats;      /* logged that gats is unknown */
    volatile apr_uint32_t no_meta;      /* logged that md is unknown */
    volatile apr_uint64_t retry_at;     /* apr_time_t: next probe when dead */
    volatile apr_uint64_t since;        /* apr_time_t of the last change */
    volatile apr_uint64_t last_failure; /* apr_time_t of the last failed op */
    volatile apr_uint64_t all_dead_logged;  /* see msm_nodes_all_dead_log_due */
    volatile apr_uint64_t learn_at;     /* see msm_nodes_learn_due; 0 until
                                         * msm_nodes_learned */
    volatile apr_uint64_t ops;
    volatile apr_uint64_t errors;
    volatile apr_uint64_t timeouts;
    volatile apr_uint64_t tls_handshakes;   /* MsmTLS: full and resumed */
    volatile apr_uint64_t tls_resumed;
    volatile apr_uint64_t latency[MSM_LATENCY_BUCKETS + 1];  /* +1: slower */
    volatile apr_uint64_t latency_sum_us;
} msm_node_shared_t;

typedef struct msm_node {
    const char *id;
    const char *host;           /* for "unix": the socket's path */
    apr_port_t port;            /* 0 for "unix" */
    const char *transport;      /* "tcp" or "unix" */
    const char *address;        /* "host:port" or "unix:<path>": logs,
                                 * status, the health table, the
                                 * published failure lists */
    apr_sockaddr_t *addr;
    int index;                  /* position in MsmNodes */
    int failover;               /* listed in MsmFailoverNodes */
    const char *tls_name;       /* MsmTLS: the name its certificate must
                                 * hold; NULL: no TLS (off, or a Unix
                                 * socket, which crosses no network) */
    msm_node_shared_t *shared;
    msm_mc_server_t *mc;        /* per child, made at child init */
} msm_node_t;

typedef struct msm_nodes {
    msm_node_t *node;
    int count;
    apr_interval_time_t retry;  /* MsmNodeRetry */
    apr_interval_time_t timeout;    /* MsmOperationTimeout */
    apr_size_t max_value;       /* MsmMaxSessionSize */
    const char *auth_user;      /* MsmAuth: NULL, or both set */
    const char *auth_password;
    struct ssl_ctx_st *tls;     /* MsmTLS: the context (msm_tls.h), or NULL */
} msm_nodes_t;

/* MsmNodes lists at most this many nodes. */
#define MSM_NODES_MAX 32

/* What msm_node_usable() says about a node now. */
typedef enum {
    MSM_NODE_SKIP = 0,          /* dead, not yet time to try again */
    MSM_NODE_LIVE,
    MSM_NODE_PROBE              /* dead, and this caller won the retry */
} msm_node_use_e;

/* What msm_node_report() changed, to log transitions once. */
typedef enum {
    MSM_NODE_UNCHANGED = 0,
    MSM_NODE_WENT_DOWN,
    MSM_NODE_CAME_UP,
    MSM_NODE_STILL_DOWN         /* a probe failed */
} msm_node_change_e;

/* Parses "id:host:port" words (host may be "[v6addr]"); NULL or an error
 * text. Addresses are not resolved here. */
const char *msm_nodes_parse(apr_pool_t *p, int argc, char *const argv[],
                            msm_nodes_t **out);

/* Marks the named nodes as failover nodes; NULL or an error text. */
const char *msm_nodes_set_failover(apr_pool_t *p, msm_nodes_t *nodes,
                                   int argc, char *const argv[]);

/* Resolves every node's address; NULL or an error text. */
const char *msm_nodes_resolve(msm_nodes_t *nodes, apr_pool_t *p);

/* A copy with its own health and connections (a vhost that inherits the
 * node list but changes how it is used). */
msm_nodes_t *msm_nodes_clone(apr_pool_t *p, const msm_nodes_t *nodes);

msm_node_t *msm_nodes_find(const msm_nodes_t *nodes, const char *id);

/* What sessions a server shares with others: a hash of the node addresses
 * (in order) and the key prefix. Two servers with the same scope read and
 * write the same memcached keys. */
apr_uint64_t msm_nodes_scope(const msm_nodes_t *nodes, const char *prefix);

/* The health table: one slot per memcached address ("host:port"), in a
 * block of shared memory that the caller keeps across graceful restarts,
 * so that a new generation of children knows which nodes failed and when
 * (msm_node_last_failure). Formatted once; slots are claimed in
 * post_config, by the parent alone. */
apr_size_t msm_health_size(int capacity);
void msm_health_format(void *mem, int capacity);
/* The capacity of a formatted table, 0 if mem is not one. */
int msm_health_capacity(const void *mem);
/* Points every node at its address's slot (claiming free slots); NULL, or
 * an error text when the table is full. */
const char *msm_nodes_attach_health(msm_nodes_t *nodes, void *mem);

msm_node_use_e msm_node_usable(msm_node_t *n, apr_interval_time_t retry,
                               apr_time_t now);
int msm_node_is_live(const msm_node_t *n);

/* When an operation on n last failed (0: never, as far as this server
 * knows): a copy written before then may have been superseded on another
 * node while n was unreachable. */
apr_time_t msm_node_last_failure(const msm_node_t *n);

/* Records the outcome of an operation (rv as from msm_mc_*). */
msm_node_change_e msm_node_report(msm_node_t *n, apr_status_t rv,
                                  apr_interval_time_t retry,
                                  apr_interval_time_t took, apr_time_t now);

/* A node for a new session: a live primary picked by spread, else a live
 * failover node, else a dead node whose retry is due (this caller probes
 * it); NULL when none can be tried. */
msm_node_t *msm_nodes_pick_new(msm_nodes_t *nodes, unsigned int spread,
                               apr_time_t now);

/* Where a backup copy of a session on node "from" goes, and is looked for:
 * every node after it in MsmNodes order, wrapping, never "from" itself
 * (all nodes when from is NULL: a node id no longer configured). Call with
 * *pos = 0 first; returns NULL at the end. Nodes that are dead (and not
 * due for a probe) are skipped. A backup is written to the first of these
 * that does not fail. */
msm_node_t *msm_nodes_next_backup_candidate(msm_nodes_t *nodes,
                                            const msm_node_t *from, int *pos,
                                            apr_time_t now);

/* Raises n's last failure to t if t is later (a failure another server
 * saw, see msm_store.c "failures seen elsewhere"). */
void msm_node_learn_failure(msm_node_t *n, apr_time_t t);

/* 2 while the server has not read the failures other servers published
 * (it started and knows no failure yet): every caller, until one of them
 * called msm_nodes_learned, since a request must not read a copy before
 * then. Afterwards 1 if the caller should read them now (at most once per
 * interval across all children), else 0. */
int msm_nodes_learn_due(msm_nodes_t *nodes, apr_interval_time_t interval,
                        apr_time_t now);

/* The server has read the failures of every live node (at now). */
void msm_nodes_learned(msm_nodes_t *nodes, apr_time_t now);

/* 1 if the caller should log "all nodes are dead" now (at most once per
 * retry interval across all children). */
int msm_nodes_all_dead_log_due(msm_nodes_t *nodes, apr_time_t now);

#endif
