/* Statistics: a mod_status section and the msm-status handler (JSON, or
 * Prometheus text with ?format=prometheus). The counters live in the shared
 * segment made at post_config, so every child's work shows. */
#include "mod_msm.h"

#include <stddef.h>
#include "apr_strings.h"
#include "http_protocol.h"
#include "mod_status.h"

static msm_stats_t *stats;
static apr_array_header_t *node_lists;

static const struct {
    const char *name;           /* JSON key; Prometheus msm_<name>_total */
    const char *help;
    apr_size_t offset;
    const char *prom;           /* Prometheus name when not msm_<name>_total */
    double scale;               /* Prometheus value = counter / scale */
} counters[] = {
#define C(field, help) { #field, help, offsetof(msm_stats_t, field), NULL, 1 }
    C(created, "Sessions given a new id"),
    C(load_hit, "Sessions found in memcached or the local tier"),
    C(load_miss, "Session cookies whose session was not found"),
    C(saved, "Session writes"),
    C(skipped_unmodified, "Saves skipped because nothing changed"),
    C(deleted, "Sessions destroyed (emptied by the application)"),
    C(relocated, "Sessions moved to another node after a node failure"),
    C(backup_reads, "Reads of backup copies"),
    C(backup_hits, "Backup copies found"),
    C(local_hits, "Sticky mode: reads served by the local tier"),
    C(takeovers, "Sticky mode: sessions taken over from another route"),
    C(lock_acquired, "Session locks taken"),
    C(lock_waits, "Session locks taken after waiting"),
    { "lock_wait_us", "Seconds spent waiting for session locks",
      offsetof(msm_stats_t, lock_wait_us), "msm_lock_wait_seconds_total",
      1e6 },
    C(lock_timeouts, "Session locks not obtained within MsmLockTimeout"),
    C(lock_lost, "Session locks that expired before their release"),
    C(too_large, "Sessions refused for exceeding MsmMaxSessionSize"),
    C(dropped_readonly, "Changes dropped by MsmLocking Auto on GET/HEAD"),
    C(regenerated, "Session ids regenerated at login"),
    C(unavailable, "Saves with no reachable memcached node"),
#undef C
};
#define NCOUNTERS (sizeof(counters) / sizeof(counters[0]))

msm_stats_t *msm_status_stats(void)
{
    return stats;
}

void msm_status_set_shared(msm_stats_t *shared, apr_array_header_t *all)
{
    stats = shared;
    node_lists = all;
}

static apr_uint64_t counter(apr_size_t i)
{
    return apr_atomic_read64((volatile apr_uint64_t *)
                             ((char *)stats + counters[i].offset));
}

static apr_uint64_t read64(const volatile apr_uint64_t *v)
{
    return apr_atomic_read64((volatile apr_uint64_t *)v);
}

/* Calls fn for every node of every node list. */
typedef void node_fn(request_rec *r, void *baton, int list,
                     const msm_node_t *n);

static void each_node(request_rec *r, node_fn *fn, void *baton)
{
    int i, j;

    for (i = 0; node_lists && i < node_lists->nelts; i++) {
        const msm_nodes_t *nodes = APR_ARRAY_IDX(node_lists, i, msm_nodes_t *);
        for (j = 0; j < nodes->count; j++) {
            if (nodes->node[j].shared) {
                fn(r, baton, i, &nodes->node[j]);
            }
        }
    }
}

/* msm_latency_bounds in seconds, as Prometheus "le" labels. */
static const char *const bound_labels[MSM_LATENCY_BUCKETS + 1] = {
    "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1",
    "+Inf"
};

/* Per-node values shown as they are. */
static const struct {
    const char *name;           /* JSON key */
    const char *metric;         /* Prometheus name */
    const char *help;
    apr_size_t offset;
} node_counters[] = {
    { "ops", "msm_node_operations_total",
      "memcached operations sent to the node",
      offsetof(msm_node_shared_t, ops) },
    { "errors", "msm_node_errors_total",
      "Operations that failed (connect, I/O, timeout, protocol)",
      offsetof(msm_node_shared_t, errors) },
    { "timeouts", "msm_node_timeouts_total",
      "Operations that ran past MsmOperationTimeout",
      offsetof(msm_node_shared_t, timeouts) },
    { "tls_handshakes", "msm_node_tls_handshakes_total",
      "TLS handshakes with the node, resumed ones included (MsmTLS)",
      offsetof(msm_node_shared_t, tls_handshakes) },
    { "tls_resumed", "msm_node_tls_resumptions_total",
      "TLS handshakes that resumed an earlier session",
      offsetof(msm_node_shared_t, tls_resumed) },
};
#define NNODECOUNTERS (sizeof(node_counters) / sizeof(node_counters[0]))

static apr_uint64_t node_counter(const msm_node_t *n, apr_size_t i)
{
    return read64((const volatile apr_uint64_t *)
                  ((const char *)n->shared + node_counters[i].offset));
}

static apr_uint64_t node_since(const msm_node_t *n)
{
    return read64(&n->shared->since) / APR_USEC_PER_SEC;
}

/* ---- JSON ---- */

static void json_node(request_rec *r, void *baton, int list,
                      const msm_node_t *n)
{
    int *first = baton, b;
    apr_size_t i;

    ap_rprintf(r, "%s\n    {\"list\": %d, \"id\": \"%s\", \"address\": "
               "\"%s\", \"transport\": \"%s\", \"tls\": %s, \"live\": %s, "
               "\"since\": %" APR_UINT64_T_FMT, *first ? "" : ",", list, n->id,
               n->address, n->transport, n->tls_name ? "true" : "false",
               msm_node_is_live(n) ? "true" : "false", node_since(n));
    for (i = 0; i < NNODECOUNTERS; i++) {
        ap_rprintf(r, ", \"%s\": %" APR_UINT64_T_FMT, node_counters[i].name,
                   node_counter(n, i));
    }
    ap_rprintf(r, ", \"latency_sum_us\": %" APR_UINT64_T_FMT
               ", \"latency_buckets\": {", read64(&n->shared->latency_sum_us));
    for (b = 0; b <= MSM_LATENCY_BUCKETS; b++) {
        ap_rprintf(r, "%s\"%s\": %" APR_UINT64_T_FMT, b ? ", " : "",
                   bound_labels[b], read64(&n->shared->latency[b]));
    }
    ap_rputs("}}", r);
    *first = 0;
}

/* ---- the sticky tier ---- */

static const struct {
    const char *name;           /* JSON key; Prometheus msm_sticky_tier_<name> */
    const char *help;
    const char *type;           /* Prometheus type */
} tier_fields[] = {
    { "slots", "Slots of the sticky tier", "gauge" },
    { "entries", "Slots holding a session or a tombstone", "gauge" },
    { "slot_bytes", "Shared memory per slot, in bytes", "gauge" },
    { "payload_max", "Largest session a slot holds, in bytes", "gauge" },
    { "evictions_total", "Entries evicted to make room", "counter" },
    { "too_large_total", "Sessions too large for a slot (read from "
      "memcached)", "counter" },
    { "recovered_total", "Slot locks taken over from dead writers",
      "counter" },
};
#define NTIERFIELDS (sizeof(tier_fields) / sizeof(tier_fields[0]))

/* The tier's numbers in tier_fields' order; 0 without a tier. */
static int tier_values(apr_uint64_t v[NTIERFIELDS])
{
    msm_tier_stats_t ts;

    if (!msm_sticky_tier_stats(&ts)) {
        return 0;
    }
    v[0] = ts.slots;
    v[1] = ts.in_use;
    v[2] = ts.slot_bytes;
    v[3] = ts.payload_max;
    v[4] = ts.evicted;
    v[5] = ts.marked;
    v[6] = ts.recovered;
    return 1;
}

static void write_json(request_rec *r)
{
    apr_uint64_t tier[NTIERFIELDS];
    int first = 1;
    apr_size_t i;

    ap_set_content_type(r, "application/json");
    ap_rputs("{\n  \"counters\": {", r);
    for (i = 0; i < NCOUNTERS; i++) {
        ap_rprintf(r, "%s\n    \"%s\": %" APR_UINT64_T_FMT, i ? "," : "",
                   counters[i].name, counter(i));
    }
    ap_rputs("\n  },\n  \"nodes\": [", r);
    each_node(r, json_node, &first);
    ap_rputs("\n  ],\n  \"sticky_tier\": ", r);
    if (!tier_values(tier)) {
        ap_rputs("null\n}\n", r);
        return;
    }
    for (i = 0; i < NTIERFIELDS; i++) {
        ap_rprintf(r, "%s\n    \"%s\": %" APR_UINT64_T_FMT, i ? "," : "{",
                   tier_fields[i].name, tier[i]);
    }
    ap_rputs("\n  }\n}\n", r);
}

/* ---- Prometheus text format: each metric family in one group ---- */

static const char *prom_labels(request_rec *r, int list, const msm_node_t *n)
{
    return apr_psprintf(r->pool, "list=\"%d\",node=\"%s\",address=\"%s\","
                        "transport=\"%s\",tls=\"%s\"", list, n->id,
                        n->address, n->transport, n->tls_name ? "on" : "off");
}

static void prom_header(request_rec *r, const char *name, const char *type,
                        const char *help)
{
    ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef enum { FAMILY_UP, FAMILY_SINCE, FAMILY_COUNTER,
               FAMILY_HISTOGRAM } family_e;

typedef struct {
    family_e family;
    apr_size_t counter;         /* FAMILY_COUNTER: index in node_counters */
} prom_pass_t;

static void prom_histogram(request_rec *r, const char *labels,
                           const msm_node_t *n)
{
    apr_uint64_t cumulative = 0;
    int b;

    for (b = 0; b <= MSM_LATENCY_BUCKETS; b++) {
        cumulative += read64(&n->shared->latency[b]);
        ap_rprintf(r, "msm_node_operation_duration_seconds_bucket{%s,"
                   "le=\"%s\"} %" APR_UINT64_T_FMT "\n", labels,
                   bound_labels[b], cumulative);
    }
    ap_rprintf(r, "msm_node_operation_duration_seconds_sum{%s} %.6f\n",
               labels, (double)read64(&n->shared->latency_sum_us) / 1e6);
    ap_rprintf(r, "msm_node_operation_duration_seconds_count{%s} %"
               APR_UINT64_T_FMT "\n", labels, cumulative);
}

static void prom_node(request_rec *r, void *baton, int list,
                      const msm_node_t *n)
{
    const prom_pass_t *pass = baton;
    const char *labels = prom_labels(r, list, n);

    switch (pass->family) {
    case FAMILY_UP:
        ap_rprintf(r, "msm_node_up{%s} %d\n", labels, msm_node_is_live(n));
        break;
    case FAMILY_SINCE:
        ap_rprintf(r, "msm_node_state_since_seconds{%s} %" APR_UINT64_T_FMT
                   "\n", labels, node_since(n));
        break;
    case FAMILY_COUNTER:
        ap_rprintf(r, "%s{%s} %" APR_UINT64_T_FMT "\n",
                   node_counters[pass->counter].metric, labels,
                   node_counter(n, pass->counter));
        break;
    case FAMILY_HISTOGRAM:
        prom_histogram(r, labels, n);
        break;
    }
}

static void prom_tier(request_rec *r)
{
    apr_uint64_t tier[NTIERFIELDS];
    apr_size_t i;

    if (!tier_values(tier)) {
        return;
    }
    for (i = 0; i < NTIERFIELDS; i++) {
        const char *name = apr_pstrcat(r->pool, "msm_sticky_tier_",
                                       tier_fields[i].name, NULL);
        prom_header(r, name, tier_fields[i].type, tier_fields[i].help);
        ap_rprintf(r, "%s %" APR_UINT64_T_FMT "\n", name, tier[i]);
    }
}

static void write_prometheus(request_rec *r)
{
    prom_pass_t pass = { FAMILY_UP, 0 };
    apr_size_t i;

    ap_set_content_type(r, "text/plain; version=0.0.4");
    for (i = 0; i < NCOUNTERS; i++) {
        const char *name = counters[i].prom ? counters[i].prom
            : apr_pstrcat(r->pool, "msm_", counters[i].name, "_total", NULL);
        prom_header(r, name, "counter", counters[i].help);
        if (counters[i].scale != 1) {
            ap_rprintf(r, "%s %.6f\n", name,
                       (double)counter(i) / counters[i].scale);
        }
        else {
            ap_rprintf(r, "%s %" APR_UINT64_T_FMT "\n", name, counter(i));
        }
    }
    prom_header(r, "msm_node_up", "gauge", "1 if the node is live");
    each_node(r, prom_node, &pass);
    pass.family = FAMILY_SINCE;
    prom_header(r, "msm_node_state_since_seconds", "gauge",
                "Unix time of the node's last state change (0: never)");
    each_node(r, prom_node, &pass);
    pass.family = FAMILY_COUNTER;
    for (pass.counter = 0; pass.counter < NNODECOUNTERS; pass.counter++) {
        prom_header(r, node_counters[pass.counter].metric, "counter",
                    node_counters[pass.counter].help);
        each_node(r, prom_node, &pass);
    }
    pass.family = FAMILY_HISTOGRAM;
    prom_header(r, "msm_node_operation_duration_seconds", "histogram",
                "Duration of memcached operations");
    each_node(r, prom_node, &pass);
    prom_tier(r);
}

/* ---- the handler and the mod_status section ---- */

static int msm_status_handler(request_rec *r)
{
    const char *format;

    if (strcmp(r->handler, "msm-status") != 0) {
        return DECLINED;
    }
    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (stats == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    format = r->args ? ap_strstr_c(r->args, "format=") : NULL;
    if (format && strncmp(format + 7, "prometheus", 10) == 0) {
        write_prometheus(r);
    }
    else {
        write_json(r);
    }
    return OK;
}

static void status_node(request_rec *r, void *baton, int list,
                        const msm_node_t *n)
{
    int short_report = *(int *)baton;

    if (short_report) {
        ap_rprintf(r, "MsmNode%d_%s: %s %" APR_UINT64_T_FMT " ops %"
                   APR_UINT64_T_FMT " errors\n", list, n->id,
                   msm_node_is_live(n) ? "live" : "dead",
                   node_counter(n, 0), node_counter(n, 1));
        return;
    }
    ap_rprintf(r, "<tr><td>%d</td><td>%s</td><td>%s</td><td>%s</td>"
               "<td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT
               "</td><td>%" APR_UINT64_T_FMT "</td></tr>\n", list,
               ap_escape_html(r->pool, n->id),
               ap_escape_html(r->pool, n->address),
               msm_node_is_live(n) ? "live" : "<b>dead</b>",
               node_counter(n, 0), node_counter(n, 1), node_counter(n, 2));
}

static void status_tier(request_rec *r, int short_report)
{
    apr_uint64_t tier[NTIERFIELDS];
    apr_size_t i;

    if (!tier_values(tier)) {
        return;
    }
    if (!short_report) {
        ap_rputs("<h3>sticky tier</h3>\n<table>\n", r);
    }
    for (i = 0; i < NTIERFIELDS; i++) {
        ap_rprintf(r, short_report ? "MsmStickyTier_%s: %" APR_UINT64_T_FMT
                   "\n" : "<tr><td>%s</td><td>%" APR_UINT64_T_FMT
                   "</td></tr>\n", tier_fields[i].name, tier[i]);
    }
    if (!short_report) {
        ap_rputs("</table>\n", r);
    }
}

static int msm_status_hook(request_rec *r, int flags)
{
    int short_report = (flags & AP_STATUS_SHORT) != 0;
    apr_size_t i;

    if (stats == NULL) {
        return OK;
    }
    if (!short_report) {
        ap_rputs("<hr>\n<h2>mod_msm sessions</h2>\n<table>\n", r);
    }
    for (i = 0; i < NCOUNTERS; i++) {
        ap_rprintf(r, short_report ? "Msm_%s: %" APR_UINT64_T_FMT "\n"
                   : "<tr><td>%s</td><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   counters[i].name, counter(i));
    }
    if (!short_report) {
        ap_rputs("</table>\n<h3>memcached nodes</h3>\n<table border=\"1\">"
                 "<tr><th>list</th><th>id</th><th>address</th><th>state</th>"
                 "<th>ops</th><th>errors</th><th>timeouts</th></tr>\n", r);
    }
    each_node(r, status_node, &short_report);
    if (!short_report) {
        ap_rputs("</table>\n", r);
    }
    status_tier(r, short_report);
    return OK;
}

void msm_status_register_hooks(apr_pool_t *p)
{
    ap_hook_handler(msm_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, msm_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
