#include "msm_copy.h"

#include <string.h>
#include <apr_strings.h>

#define MAGIC "MSM1 "
#define MAGIC_LEN 5
#define HEX64_LEN 16
#define NO_PRIMARY "-"

/* ---- the format ---- */

/* Only sessions name their writer's route; without one the header is
 * that of a non-sticky server. */
static int has_route(const msm_copy_meta_t *meta)
{
    return meta->kind == MSM_COPY_SESSION && meta->route[0];
}

char *msm_copy_encode(apr_pool_t *p, const msm_copy_meta_t *meta,
                      const char *payload, apr_size_t len,
                      apr_size_t *value_len)
{
    char header[MSM_COPY_HEADER_MAX + 1];
    int hlen;
    char *value;

    if (meta->kind != MSM_COPY_SESSION) {
        len = 0;
    }
    hlen = apr_snprintf(header, sizeof(header), MAGIC "%c %016" APR_UINT64_T_HEX_FMT
                        " %016" APR_UINT64_T_HEX_FMT " %s%s%s\n", meta->kind,
                        meta->version, (apr_uint64_t)meta->written,
                        meta->primary[0] ? meta->primary : NO_PRIMARY,
                        has_route(meta) ? " " : "",
                        has_route(meta) ? meta->route : "");
    value = apr_palloc(p, (apr_size_t)hlen + len + 1);
    memcpy(value, header, (apr_size_t)hlen);
    if (len) {
        memcpy(value + hlen, payload, len);
    }
    value[hlen + len] = '\0';
    *value_len = (apr_size_t)hlen + len;
    return value;
}

/* 16 lowercase hex digits at s, as the encoder writes them. */
static int parse_hex64(const char *s, apr_uint64_t *out)
{
    apr_uint64_t v = 0;
    int i;

    for (i = 0; i < HEX64_LEN; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return 0;
        }
        v = v << 4 | (apr_uint64_t)d;
    }
    *out = v;
    return 1;
}

/* A name (1 to MSM_NAME_MAX characters up to a space or end, no NUL) at
 * *p into out; *p moves past it. */
static int parse_name(const char **p, const char *end, char *out)
{
    const char *sp = memchr(*p, ' ', (apr_size_t)(end - *p));
    apr_size_t n = (apr_size_t)((sp ? sp : end) - *p);

    if (n == 0 || n > MSM_NAME_MAX) {
        return 0;
    }
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return strlen(out) == n;    /* no NUL inside */
}

/* "<kind> <version> <written> <primary>[ <route>]\n" after the magic; the
 * length of the header, or 0. */
static apr_size_t parse_header(const char *v, apr_size_t len,
                               msm_copy_meta_t *m)
{
    const char *p = v + MAGIC_LEN, *end = v + len, *nl;
    apr_uint64_t written;

    if (len < MAGIC_LEN + 2 + 2 * (HEX64_LEN + 1) + 1
        || memcmp(v, MAGIC, MAGIC_LEN) != 0
        || (p[0] != MSM_COPY_SESSION && p[0] != MSM_COPY_DESTROYED)
        || p[1] != ' ' || !parse_hex64(p + 2, &m->version)
        || p[2 + HEX64_LEN] != ' ' || !parse_hex64(p + 3 + HEX64_LEN, &written)
        || p[3 + 2 * HEX64_LEN] != ' ') {
        return 0;
    }
    m->kind = p[0];
    m->written = (apr_time_t)written;
    p += 4 + 2 * HEX64_LEN;
    nl = memchr(p, '\n', (apr_size_t)(end - p));
    if (nl == NULL || !parse_name(&p, nl, m->primary)) {
        return 0;
    }
    if (strcmp(m->primary, NO_PRIMARY) == 0) {
        m->primary[0] = '\0';
    }
    else if (!msm_name_is_valid(m->primary)) {
        return 0;
    }
    if (p < nl && (*p++ != ' ' || !parse_name(&p, nl, m->route)
                   || !msm_name_is_valid(m->route) || p != nl)) {
        return 0;
    }
    /* A tombstone has no payload, no primary, no route; a session has a
     * primary. */
    if (m->kind == MSM_COPY_DESTROYED
        ? m->primary[0] != '\0' || m->route[0] != '\0'
        : m->primary[0] == '\0') {
        return 0;
    }
    return (apr_size_t)(nl + 1 - v);
}

void msm_copy_decode(const char *value, apr_size_t len, msm_seen_t *seen)
{
    apr_size_t hlen;

    memset(&seen->meta, 0, sizeof(seen->meta));
    seen->payload = NULL;
    seen->len = 0;
    hlen = value ? parse_header(value, len, &seen->meta) : 0;
    if (hlen == 0 || (seen->meta.kind == MSM_COPY_DESTROYED && hlen != len)) {
        memset(&seen->meta, 0, sizeof(seen->meta));
        seen->what = MSM_SEEN_CORRUPT;
        return;
    }
    seen->what = MSM_SEEN_COPY;
    seen->payload = value + hlen;
    seen->len = len - hlen;
}

/* ---- ordering ---- */

int msm_copy_order(const msm_copy_meta_t *a, const msm_copy_meta_t *b)
{
    if (a->version != b->version) {
        return a->version < b->version ? -1 : 1;
    }
    if (a->written != b->written) {
        return a->written < b->written ? -1 : 1;
    }
    return 0;
}

int msm_copy_supersedes(const msm_copy_meta_t *incoming,
                        const msm_copy_meta_t *existing)
{
    if (existing == NULL) {
        return 1;
    }
    if (existing->kind == MSM_COPY_DESTROYED) {
        return 0;
    }
    return incoming->kind == MSM_COPY_DESTROYED
        || msm_copy_order(incoming, existing) > 0;
}

/* ---- reading ---- */

static int is_session(const msm_seen_t *s)
{
    return s->what == MSM_SEEN_COPY && s->meta.kind == MSM_COPY_SESSION;
}

msm_read_e msm_decide_read(const msm_seen_t *seen, const char *node_id,
                           apr_time_t last_down)
{
    switch (seen->what) {
    case MSM_SEEN_TOOBIG:
        return MSM_READ_UNREADABLE;
    case MSM_SEEN_COPY:
        if (seen->meta.kind == MSM_COPY_DESTROYED) {
            return MSM_READ_GONE;
        }
        /* A backup, or a copy left behind by a move: the primary is
         * elsewhere. A copy from before the node's last outage may have
         * been superseded meanwhile. */
        if (strcmp(seen->meta.primary, node_id) != 0
            || (last_down != 0 && seen->meta.written <= last_down)) {
            return MSM_READ_SEARCH;
        }
        return MSM_READ_SERVE;
    default:
        return MSM_READ_SEARCH;
    }
}

static int node_index(const msm_search_t *s, const char *id)
{
    int i;

    for (i = 0; i < s->count; i++) {
        if (strcmp(s->node_ids[i], id) == 0) {
            return i;
        }
    }
    return -1;
}

/* A session copy written after its node's last failure: nothing can have
 * superseded it while the node was unreachable. */
static int trusted(const msm_search_t *s, int i)
{
    apr_time_t failed_at = s->last_failure ? s->last_failure[i] : 0;

    return is_session(&s->seen[i])
        && (failed_at == 0 || s->seen[i].meta.written > failed_at);
}

typedef struct survey {
    int newest;                 /* the newest session copy, -1 if none */
    int gone, failed, toobig, trusted;
} survey_t;

static void survey(const msm_search_t *s, survey_t *v)
{
    int i;

    memset(v, 0, sizeof(*v));
    v->newest = -1;
    for (i = 0; i < s->count; i++) {
        const msm_seen_t *x = &s->seen[i];
        v->failed |= x->what == MSM_SEEN_FAILED;
        v->toobig |= x->what == MSM_SEEN_TOOBIG;
        v->gone |= x->what == MSM_SEEN_COPY
                   && x->meta.kind == MSM_COPY_DESTROYED;
        v->trusted |= trusted(s, i);
        if (is_session(x) && (v->newest < 0 || msm_copy_order(
                &x->meta, &s->seen[v->newest].meta) > 0)) {
            v->newest = i;
        }
    }
}

/* Older copies that claim to be the primary on their own node. */
static unsigned int stale_claims(const msm_search_t *s, int newest, int skip)
{
    unsigned int bits = 0;
    int i;

    for (i = 0; i < s->count && i < 32; i++) {
        const msm_seen_t *x = &s->seen[i];
        if (i != skip && is_session(x)
            && strcmp(x->meta.primary, s->node_ids[i]) == 0
            && msm_copy_order(&x->meta, &s->seen[newest].meta) < 0) {
            bits |= 1u << i;
        }
    }
    return bits;
}

static unsigned int sessions_held(const msm_search_t *s)
{
    unsigned int bits = 0;
    int i;

    for (i = 0; i < s->count && i < 32; i++) {
        if (is_session(&s->seen[i])) {
            bits |= 1u << i;
        }
    }
    return bits;
}

void msm_decide_found(const msm_search_t *s, msm_resolution_t *out)
{
    survey_t v;
    int p;
    const msm_copy_meta_t *m;

    survey(s, &v);
    memset(out, 0, sizeof(*out));
    out->newest = out->primary = -1;
    if (v.gone) {
        /* Copies that outlived the destroy (their node was unreachable
         * then) get the tombstone too. */
        out->found = MSM_FOUND_GONE;
        out->stale = sessions_held(s);
        return;
    }
    /* A copy this server cannot read may be newer than any it can: serving
     * an older one would go back in time. A node that did not answer may
     * hold a newer copy too, but then every node holding it is gone, which
     * is the case the guarantee leaves out (README, "Guarantees"). */
    if (v.toobig || v.newest < 0 || (s->need_trusted && !v.trusted)) {
        out->found = v.toobig || v.failed || v.newest >= 0
                     ? MSM_FOUND_UNKNOWN : MSM_FOUND_NOTHING;
        return;
    }
    m = &s->seen[v.newest].meta;
    p = node_index(s, m->primary);
    out->newest = v.newest;
    if (p >= 0 && is_session(&s->seen[p])
        && msm_copy_order(&s->seen[p].meta, m) == 0) {
        out->found = MSM_FOUND_AT_PRIMARY;
        out->primary = p;
    }
    else if (p >= 0 && s->seen[p].what != MSM_SEEN_FAILED) {
        out->found = MSM_FOUND_RESTORE;     /* it answered: alive, lost it */
        out->primary = p;
    }
    else {
        out->found = MSM_FOUND_MOVE;
        out->primary = v.newest;
    }
    out->stale = stale_claims(s, v.newest, out->primary);
}

/* ---- writing ---- */

msm_write_e msm_decide_write(msm_write_mode_e mode, const msm_seen_t *seen,
                             msm_copy_meta_t *incoming)
{
    int destroyed = seen->what == MSM_SEEN_COPY
                    && seen->meta.kind == MSM_COPY_DESTROYED;

    if (mode == MSM_WRITE_TOMBSTONE) {
        return destroyed ? MSM_DO_NOTHING : MSM_DO_SET;
    }
    switch (seen->what) {
    case MSM_SEEN_NONE:
        return MSM_DO_ADD;
    case MSM_SEEN_CORRUPT:
        return MSM_DO_CAS;
    case MSM_SEEN_COPY:
        if (destroyed) {
            return MSM_DO_DROP;
        }
        if (mode == MSM_WRITE_PRIMARY) {
            if (incoming->version <= seen->meta.version) {
                incoming->version = seen->meta.version + 1;
            }
            return MSM_DO_CAS;
        }
        return msm_copy_supersedes(incoming, &seen->meta) ? MSM_DO_CAS
                                                          : MSM_DO_NOTHING;
    default:
        /* Not read (a conditional write reads first), or too large to
         * read: never written over blind. */
        return MSM_DO_NOTHING;
    }
}

msm_write_e msm_decide_add(msm_write_mode_e mode, int gone,
                           const msm_copy_meta_t *newest,
                           msm_copy_meta_t *incoming)
{
    if (gone) {
        return MSM_DO_DROP;
    }
    if (newest->kind == MSM_COPY_SESSION) {
        int order = msm_copy_order(newest, incoming);
        if (mode != MSM_WRITE_PRIMARY && order > 0) {
            return MSM_DO_NOTHING;
        }
        if (mode == MSM_WRITE_PRIMARY && order >= 0) {
            incoming->version = newest->version + 1;
        }
    }
    return MSM_DO_ADD;
}

/* ---- the cookie ---- */

msm_cookie_e msm_decide_cookie(const msm_cookie_facts_t *f)
{
    if (f->destroyed_here) {
        return f->cookie_in ? MSM_COOKIE_CLEAR : MSM_COOKIE_KEEP;
    }
    if (f->has_id && (f->id_changed || f->sliding_max_age)) {
        return MSM_COOKIE_SET;
    }
    return MSM_COOKIE_KEEP;
}
