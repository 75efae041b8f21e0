#include "msm_mc.h"
#include "msm_tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <apr_atomic.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define LINE_MAX_LEN   1024          /* longest reply line we accept */
#define BUF_INITIAL    (16 * 1024)
#define BUF_KEEP       (64 * 1024)   /* larger buffers are not kept idle */
#define TIMEO_SLACK    1000          /* µs: when SO_*TIMEO needs no reset */

/* What a server turned out to know: gats, meta commands. */
enum { KNOWN_UNKNOWN = 0, KNOWN_YES, KNOWN_NO };

/* ------------------------------------------------------------------ */
/* Reply parser                                                        */

/* Strict unsigned decimal: digits only, no sign, no overflow. */
static int parse_u64(const char *s, apr_size_t n, apr_uint64_t max,
                     apr_uint64_t *out)
{
    apr_uint64_t v = 0;
    apr_size_t i;

    if (n == 0 || n > 20) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9 || d > max || v > (max - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* Splits line[0..n) on single spaces into at most max fields. */
static int split_fields(const char *line, apr_size_t n, const char **f,
                        apr_size_t *flen, int max)
{
    int count = 0;
    apr_size_t i = 0;

    while (i < n) {
        apr_size_t start = i;
        if (count == max) {
            return -1;
        }
        while (i < n && line[i] != ' ') {
            i++;
        }
        if (i == start) {
            return -1;          /* empty field: double or leading space */
        }
        f[count] = line + start;
        flen[count++] = i - start;
        if (i < n) {
            i++;
            if (i == n) {
                return -1;      /* trailing space */
            }
        }
    }
    return count;
}

static int line_is(const char *line, apr_size_t n, const char *word)
{
    apr_size_t wl = strlen(word);
    return n == wl && memcmp(line, word, wl) == 0;
}

static int line_starts(const char *line, apr_size_t n, const char *word)
{
    apr_size_t wl = strlen(word);
    return n >= wl && memcmp(line, word, wl) == 0;
}

/* ERROR, CLIENT_ERROR <msg>, SERVER_ERROR <msg>: valid after any request. */
static int parse_error_line(const char *line, apr_size_t n,
                            msm_mc_reply_t *reply)
{
    static const struct { const char *word; msm_mc_reply_type_e type; }
    errors[] = {
        { "CLIENT_ERROR", MSM_MC_R_CLIENT_ERROR },
        { "SERVER_ERROR", MSM_MC_R_SERVER_ERROR },
        { "ERROR", MSM_MC_R_ERROR },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        apr_size_t wl = strlen(errors[i].word);
        if (line_starts(line, n, errors[i].word)
            && (n == wl || line[wl] == ' ')) {
            reply->type = errors[i].type;
            reply->data = n > wl ? line + wl + 1 : line + n;
            reply->len = n > wl ? n - wl - 1 : 0;
            return 1;
        }
    }
    return 0;
}

static int parse_status_line(msm_mc_reply_kind_e kind, const char *line,
                             apr_size_t n, msm_mc_reply_t *reply)
{
    static const struct {
        msm_mc_reply_kind_e kind; const char *word; msm_mc_reply_type_e type;
    } words[] = {
        { MSM_MC_REPLY_STORAGE, "STORED", MSM_MC_R_STORED },
        { MSM_MC_REPLY_STORAGE, "NOT_STORED", MSM_MC_R_NOT_STORED },
        { MSM_MC_REPLY_STORAGE, "EXISTS", MSM_MC_R_EXISTS },
        { MSM_MC_REPLY_STORAGE, "NOT_FOUND", MSM_MC_R_NOT_FOUND },
        { MSM_MC_REPLY_DELETE, "DELETED", MSM_MC_R_DELETED },
        { MSM_MC_REPLY_DELETE, "NOT_FOUND", MSM_MC_R_NOT_FOUND },
        { MSM_MC_REPLY_TOUCH, "TOUCHED", MSM_MC_R_TOUCHED },
        { MSM_MC_REPLY_TOUCH, "NOT_FOUND", MSM_MC_R_NOT_FOUND },
        { MSM_MC_REPLY_META_DELETE, "HD", MSM_MC_R_DELETED },
        { MSM_MC_REPLY_META_DELETE, "NF", MSM_MC_R_NOT_FOUND },
        { MSM_MC_REPLY_META_DELETE, "EX", MSM_MC_R_EXISTS },
    };
    apr_size_t i;

    if (kind == MSM_MC_REPLY_VERSION && line_starts(line, n, "VERSION ")) {
        reply->type = MSM_MC_R_VERSION;
        reply->data = line + 8;
        reply->len = n - 8;
        return 1;
    }
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (words[i].kind == kind && line_is(line, n, words[i].word)) {
            reply->type = words[i].type;
            return 1;
        }
    }
    return 0;
}

/* "VALUE <key> <flags> <bytes> [<cas>]", then the data, CRLF, "END" CRLF. */
static apr_status_t parse_value(const char *key, const char *buf,
                                apr_size_t len, apr_size_t line_len,
                                apr_size_t max_value, msm_mc_reply_t *reply,
                                apr_size_t *consumed)
{
    const char *f[5];
    apr_size_t fl[5], data_at, end_at;
    apr_uint64_t flags, bytes, cas = 0;
    int nf = split_fields(buf, line_len, f, fl, 5);

    if (nf < 4 || fl[0] != 5 || memcmp(f[0], "VALUE", 5) != 0
        || key == NULL || fl[1] != strlen(key) || memcmp(f[1], key, fl[1]) != 0
        || !parse_u64(f[2], fl[2], 0xffffffffu, &flags)
        || !parse_u64(f[3], fl[3], MSM_MC_ITEM_MAX, &bytes)
        || (nf == 5 && !parse_u64(f[4], fl[4], APR_UINT64_MAX, &cas))) {
        return MSM_MC_EPROTO;
    }
    if (bytes > max_value) {
        /* A real item, only larger than this client reads (another server
         * may allow more): the node is fine, the connection is not. */
        return MSM_MC_ETOOBIG;
    }
    data_at = line_len + 2;
    end_at = data_at + (apr_size_t)bytes;
    if (len < end_at + 7) {
        return APR_INCOMPLETE;
    }
    if (memcmp(buf + end_at, "\r\nEND\r\n", 7) != 0) {
        return MSM_MC_EPROTO;
    }
    reply->type = MSM_MC_R_VALUE;
    reply->data = buf + data_at;
    reply->len = (apr_size_t)bytes;
    reply->flags = (apr_uint32_t)flags;
    reply->cas = cas;
    *consumed = end_at + 7;
    return APR_SUCCESS;
}

apr_status_t msm_mc_parse_reply(msm_mc_reply_kind_e kind, const char *key,
                                const char *buf, apr_size_t len,
                                apr_size_t max_value, msm_mc_reply_t *reply,
                                apr_size_t *consumed)
{
    const char *crlf;
    apr_size_t line_len;

    memset(reply, 0, sizeof(*reply));
    *consumed = 0;
    crlf = memchr(buf, '\n', len < LINE_MAX_LEN ? len : LINE_MAX_LEN);
    if (crlf == NULL) {
        return len < LINE_MAX_LEN ? APR_INCOMPLETE : MSM_MC_EPROTO;
    }
    line_len = (apr_size_t)(crlf - buf);
    if (line_len == 0 || buf[line_len - 1] != '\r') {
        return MSM_MC_EPROTO;           /* a bare LF is not memcached */
    }
    line_len--;
    if (parse_error_line(buf, line_len, reply)) {
        *consumed = line_len + 2;
        return APR_SUCCESS;
    }
    if (kind == MSM_MC_REPLY_RETRIEVAL) {
        if (line_is(buf, line_len, "END")) {
            reply->type = MSM_MC_R_END;
            *consumed = line_len + 2;
            return APR_SUCCESS;
        }
        return parse_value(key, buf, len, line_len, max_value, reply,
                           consumed);
    }
    if (parse_status_line(kind, buf, line_len, reply)) {
        *consumed = line_len + 2;
        return APR_SUCCESS;
    }
    return MSM_MC_EPROTO;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

typedef struct msm_mc_conn msm_mc_conn_t;
struct msm_mc_conn {
    apr_pool_t *pool;
    apr_socket_t *sock;
    int fd;
    char *buf;                      /* malloc'ed: it may grow to max_value */
    apr_size_t cap;
    apr_interval_time_t timeo[2];   /* what SO_SNDTIMEO, SO_RCVTIMEO hold */
    int reused;
    SSL *ssl;                       /* MsmTLS, over a deadline BIO */
    apr_time_t deadline;            /* of the OpenSSL call under way */
    apr_status_t bio_error;         /* why the BIO failed it, or 0 */
    msm_mc_conn_t *next;
};

struct msm_mc_server {
    apr_pool_t *pool;
    apr_sockaddr_t *addr;
    apr_interval_time_t timeout;
    apr_size_t max_value;
    int max_idle;
    int nidle;
    msm_mc_conn_t *idle;
#if APR_HAS_THREADS
    apr_thread_mutex_t *lock;
#endif
    volatile apr_uint32_t gats;     /* KNOWN_UNKNOWN, KNOWN_YES, KNOWN_NO */
    volatile apr_uint32_t meta;     /* the same for meta commands (md) */
    msm_mc_observer_t observer;
    char *auth;                     /* the whole set request, or NULL */
    apr_size_t auth_len;
    SSL_CTX *tls;                   /* MsmTLS: the node list's context */
    const char *tls_name;           /* what the certificate must name */
    int tls_name_is_ip;
    SSL_SESSION *tls_session;       /* the newest, for resumption */
    volatile apr_uint32_t tls_no_resume;    /* the node refused one */
};

int msm_mc_node_failed(apr_status_t rv)
{
    return rv != APR_SUCCESS && rv != APR_NOTFOUND && rv != APR_EEXIST
        && rv != MSM_MC_EREPLY && rv != MSM_MC_ETOOBIG && rv != APR_EINVAL
        && rv != APR_ENOTIMPL;
}

/* The idle connections' buffers are malloc'ed: free them with the pool.
 * A pre-cleanup, because the connections' own pools go before ordinary
 * cleanups run. */
static apr_status_t server_cleanup(void *data)
{
    msm_mc_server_t *s = data;

    msm_mc_server_close_idle(s);
    if (s->tls_session) {
        SSL_SESSION_free(s->tls_session);
        s->tls_session = NULL;
    }
    return APR_SUCCESS;
}

static void server_lock(msm_mc_server_t *s)
{
#if APR_HAS_THREADS
    if (s->lock) {
        apr_thread_mutex_lock(s->lock);
    }
#endif
}

static void server_unlock(msm_mc_server_t *s)
{
#if APR_HAS_THREADS
    if (s->lock) {
        apr_thread_mutex_unlock(s->lock);
    }
#endif
}

static void conn_close(msm_mc_server_t *s, msm_mc_conn_t *c)
{
    if (c->ssl) {
        /* No close_notify (memcached needs none), but marked as shut down:
         * else SSL_free takes the session as bad and it cannot resume. */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
    }
    apr_socket_close(c->sock);
    free(c->buf);
    server_lock(s);             /* the pool's parent is shared by threads */
    apr_pool_destroy(c->pool);
    server_unlock(s);
}

/* Sets SO_SNDTIMEO (which = 0) or SO_RCVTIMEO (1) unless it already holds
 * about that much: in the common case no system call is made. */
static apr_status_t conn_timeo(msm_mc_conn_t *c, int which,
                               apr_interval_time_t remaining)
{
    struct timeval tv;
    apr_interval_time_t diff = c->timeo[which] - remaining;

    if (remaining <= 0) {
        return APR_TIMEUP;
    }
    if (diff >= -TIMEO_SLACK && diff <= TIMEO_SLACK) {
        return APR_SUCCESS;
    }
    if (remaining < TIMEO_SLACK) {
        remaining = TIMEO_SLACK;        /* 0 would mean "no timeout" */
    }
    tv.tv_sec = (time_t)apr_time_sec(remaining);
    tv.tv_usec = (suseconds_t)apr_time_usec(remaining);
    if (setsockopt(c->fd, SOL_SOCKET, which ? SO_RCVTIMEO : SO_SNDTIMEO,
                   &tv, sizeof(tv)) != 0) {
        return errno;
    }
    c->timeo[which] = remaining;
    return APR_SUCCESS;
}

static apr_status_t conn_authenticate(msm_mc_server_t *s, msm_mc_conn_t *c,
                                      apr_time_t deadline);
static apr_status_t tls_handshake(msm_mc_server_t *s, msm_mc_conn_t *c,
                                  apr_time_t deadline, int *offered);

static apr_status_t conn_open_once(msm_mc_server_t *s, apr_time_t deadline,
                                   msm_mc_conn_t **out, int *offered)
{
    apr_pool_t *cp;
    msm_mc_conn_t *c;
    apr_os_sock_t fd;
    apr_status_t rv;
    apr_interval_time_t remaining = deadline - apr_time_now();

    if (remaining <= 0) {
        return APR_TIMEUP;
    }
    server_lock(s);
    rv = apr_pool_create(&cp, s->pool);
    server_unlock(s);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    c = apr_pcalloc(cp, sizeof(*c));
    c->pool = cp;
    c->timeo[0] = c->timeo[1] = -1;
    rv = apr_socket_create(&c->sock, s->addr->family, SOCK_STREAM,
                           s->addr->family == APR_UNIX ? 0 : APR_PROTO_TCP, cp);
    if (rv == APR_SUCCESS) {
        if (s->addr->family != APR_UNIX) {
            apr_socket_opt_set(c->sock, APR_TCP_NODELAY, 1);
        }
        apr_socket_timeout_set(c->sock, remaining);
        rv = apr_socket_connect(c->sock, s->addr);
    }
    if (rv == APR_SUCCESS) {
        /* Blocking from now on; the deadline lives in SO_*TIMEO so that an
         * operation is one write and one read, without poll() (whose
         * high-resolution timer costs a guest more than the read). TLS
         * too: its BIO sets the time left before each read and write. */
        rv = apr_socket_timeout_set(c->sock, -1);
    }
    if (rv == APR_SUCCESS) {
        apr_os_sock_get(&fd, c->sock);
        c->fd = fd;
        c->buf = malloc(BUF_INITIAL);
        c->cap = BUF_INITIAL;
        rv = c->buf ? APR_SUCCESS : APR_ENOMEM;
    }
    if (rv == APR_SUCCESS && s->tls) {
        rv = tls_handshake(s, c, deadline, offered);
    }
    if (rv == APR_SUCCESS && s->auth) {
        rv = conn_authenticate(s, c, deadline);
    }
    if (rv != APR_SUCCESS) {
        if (c->ssl) {
            SSL_free(c->ssl);
        }
        if (c->sock) {
            apr_socket_close(c->sock);
        }
        free(c->buf);
        server_lock(s);
        apr_pool_destroy(cp);
        server_unlock(s);
        return rv;
    }
    *out = c;
    return APR_SUCCESS;
}

static int is_tls_refusal(apr_status_t rv)
{
    return rv == MSM_MC_ETLS
        || (rv > MSM_MC_ETLS_SSL && rv < MSM_MC_ETLS_SSL + MSM_MC_ETLS_SSL_RANGE);
}

/* A new connection, authenticated and in TLS as configured. memcached
 * 1.6 with ssl_verify_mode but without ssl_session_cache answers a
 * resumed handshake with an "internal error" alert: when a handshake that
 * offered a session fails that way, the node gets a full one, and no
 * session is offered to it again. */
static apr_status_t conn_open(msm_mc_server_t *s, apr_time_t deadline,
                              msm_mc_conn_t **out)
{
    int offered = 0;
    apr_status_t rv = conn_open_once(s, deadline, out, &offered);

    if (rv != APR_SUCCESS && offered && is_tls_refusal(rv)) {
        apr_atomic_set32(&s->tls_no_resume, 1);
        rv = conn_open_once(s, deadline, out, &offered);
    }
    return rv;
}

static msm_mc_conn_t *conn_take_idle(msm_mc_server_t *s)
{
    msm_mc_conn_t *c;

    server_lock(s);
    c = s->idle;
    if (c) {
        s->idle = c->next;
        s->nidle--;
    }
    server_unlock(s);
    return c;
}

static void conn_release(msm_mc_server_t *s, msm_mc_conn_t *c)
{
    int keep;

    if (c->cap > BUF_KEEP) {
        char *small = realloc(c->buf, BUF_INITIAL);
        if (small) {
            c->buf = small;
            c->cap = BUF_INITIAL;
        }
    }
    server_lock(s);
    keep = s->nidle < s->max_idle;
    if (keep) {
        c->reused = 1;
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
    }
    server_unlock(s);
    if (!keep) {
        conn_close(s, c);
    }
}

void msm_mc_server_close_idle(msm_mc_server_t *s)
{
    msm_mc_conn_t *c;

    while ((c = conn_take_idle(s)) != NULL) {
        conn_close(s, c);
    }
}

static apr_status_t status_from_errno(apr_status_t rv)
{
    /* SO_*TIMEO ran out: the socket is blocking, so that is EAGAIN. */
    if (APR_STATUS_IS_EAGAIN(rv)) {
        return APR_TIMEUP;
    }
    return rv;
}


/* ------------------------------------------------------------------ */
/* TLS (MsmTLS)                                                        */

static int tls_ex_index = -1;   /* SSL ex_data slot: the msm_mc_server_t */

/* The BIO under each SSL: the connection's blocking socket, each read and
 * write given what is left of the deadline of the OpenSSL call (one
 * SSL_read may read several times: a server that drips bytes cannot
 * stretch the deadline). A failure leaves its reason in c->bio_error. */
static BIO_METHOD *deadline_bio;

static int bio_io(BIO *b, char *buf, int len, int reading)
{
    msm_mc_conn_t *c = BIO_get_data(b);
    apr_status_t rv;
    ssize_t n;

    BIO_clear_retry_flags(b);
    if ((rv = conn_timeo(c, reading, c->deadline - apr_time_now()))
        != APR_SUCCESS) {
        c->bio_error = rv;
        return -1;
    }
    do {
        n = reading ? recv(c->fd, buf, (size_t)len, 0)
                    : send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        c->bio_error = status_from_errno(errno);
        return -1;
    }
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    return bio_io(b, buf, len, 1);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    return bio_io(b, (char *)buf, len, 0);
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* What a failed OpenSSL call means, in this client's terms. */
static apr_status_t tls_failure(msm_mc_conn_t *c, int ssl_error, int ret)
{
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    long verify = SSL_get_verify_result(c->ssl);

    ERR_clear_error();
    if (ssl_error == SSL_ERROR_ZERO_RETURN
        || (ssl_error == SSL_ERROR_SYSCALL && e == 0 && ret == 0)
        || (ssl_error == SSL_ERROR_SSL
            && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        return APR_EOF;         /* closed: a stale pooled connection too */
    }
    if (ssl_error == SSL_ERROR_SYSCALL && e == 0) {
        return errno ? status_from_errno(errno) : APR_EOF;
    }
    if (verify != X509_V_OK && verify > 0 && verify < MSM_MC_ETLS_RANGE) {
        return MSM_MC_ETLS_VERIFY + (apr_status_t)verify;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason > 0
        && reason < MSM_MC_ETLS_SSL_RANGE) {
        return MSM_MC_ETLS_SSL + reason;
    }
    return MSM_MC_ETLS;
}

typedef enum { TLS_CONNECT, TLS_READ, TLS_WRITE } tls_call_e;

/* One OpenSSL call to its end: *done bytes read or written. */
static apr_status_t tls_call(msm_mc_conn_t *c, tls_call_e call, void *buf,
                             int len, int *done, apr_time_t deadline)
{
    c->deadline = deadline;
    for (;;) {
        int ret, err;

        ERR_clear_error();
        errno = 0;
        c->bio_error = APR_SUCCESS;
        ret = call == TLS_CONNECT ? SSL_connect(c->ssl)
            : call == TLS_READ ? SSL_read(c->ssl, buf, len)
            : SSL_write(c->ssl, buf, len);
        if (ret > 0) {
            *done = ret;
            return APR_SUCCESS;
        }
        err = SSL_get_error(c->ssl, ret);
        if (c->bio_error != APR_SUCCESS) {
            ERR_clear_error();
            return c->bio_error;        /* the deadline, or the socket */
        }
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            return tls_failure(c, err, ret);
        }
        /* a TLS 1.3 ticket without data: read on (the BIO keeps time) */
    }
}

/* OpenSSL hands over each session the server issues (TLS 1.3: after the
 * handshake, with the first read); the newest is offered on reconnect. */
static int tls_new_session(SSL *ssl, SSL_SESSION *session)
{
    msm_mc_server_t *s = SSL_get_ex_data(ssl, tls_ex_index);
    SSL_SESSION *old;

    if (s == NULL) {
        return 0;
    }
    server_lock(s);
    old = s->tls_session;
    s->tls_session = session;
    server_unlock(s);
    if (old) {
        SSL_SESSION_free(old);
    }
    return 1;                   /* the reference is ours now */
}

static apr_status_t tls_setup(msm_mc_server_t *s, msm_mc_conn_t *c,
                              int *offered)
{
    BIO *bio;

    c->ssl = SSL_new(s->tls);
    if (c->ssl == NULL || (bio = BIO_new(deadline_bio)) == NULL) {
        return MSM_MC_ETLS;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio);
    if (SSL_set_ex_data(c->ssl, tls_ex_index, s) != 1) {
        return MSM_MC_ETLS;
    }
    if (s->tls_name_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
                                          s->tls_name) != 1) {
            return MSM_MC_ETLS;
        }
    }
    else if (SSL_set_tlsext_host_name(c->ssl, s->tls_name) != 1
             || SSL_set1_host(c->ssl, s->tls_name) != 1) {
        return MSM_MC_ETLS;
    }
    server_lock(s);
    if (s->tls_session && !apr_atomic_read32(&s->tls_no_resume)) {
        *offered = SSL_set_session(c->ssl, s->tls_session) == 1;
    }
    server_unlock(s);
    return APR_SUCCESS;
}

static apr_status_t tls_handshake(msm_mc_server_t *s, msm_mc_conn_t *c,
                                  apr_time_t deadline, int *offered)
{
    apr_status_t rv = tls_setup(s, c, offered);
    int done;

    if (rv == APR_SUCCESS) {
        rv = tls_call(c, TLS_CONNECT, NULL, 0, &done, deadline);
    }
    if (rv == APR_SUCCESS && s->observer.handshake) {
        s->observer.handshake(s->observer.baton, SSL_session_reused(c->ssl));
    }
    return rv;
}

/* SSL_write takes one buffer: the parts are gathered into the connection's
 * buffer (free until the reply comes), one TLS record where they fit. */
static apr_status_t tls_send(msm_mc_conn_t *c, struct iovec *iov, int n,
                             apr_time_t deadline)
{
    apr_size_t total = 0, off = 0;
    const char *data = iov[0].iov_base;
    int i;

    for (i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    if (n > 1) {
        if (total > c->cap) {
            char *bigger = realloc(c->buf, total);
            if (bigger == NULL) {
                return APR_ENOMEM;
            }
            c->buf = bigger;
            c->cap = total;
        }
        for (i = 0; i < n; i++) {
            memcpy(c->buf + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        data = c->buf;
    }
    for (off = 0; off < total;) {
        apr_size_t chunk = total - off > (1u << 30) ? (1u << 30) : total - off;
        int done;
        apr_status_t rv = tls_call(c, TLS_WRITE, (void *)(data + off),
                                   (int)chunk, &done, deadline);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        off += (apr_size_t)done;
    }
    return APR_SUCCESS;
}

static apr_status_t conn_send(msm_mc_conn_t *c, struct iovec *iov, int n,
                              apr_time_t deadline)
{
    if (c->ssl) {
        return tls_send(c, iov, n, deadline);
    }
    while (n > 0) {
        apr_size_t sent = 0;
        apr_status_t rv = conn_timeo(c, 0, deadline - apr_time_now());

        if (rv == APR_SUCCESS) {
            rv = apr_socket_sendv(c->sock, iov, n, &sent);
        }
        if (rv != APR_SUCCESS) {
            return status_from_errno(rv);
        }
        while (n > 0 && sent >= iov->iov_len) {
            sent -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + sent;
            iov->iov_len -= sent;
        }
    }
    return APR_SUCCESS;
}

/* Reads until buf holds one whole reply. *got says whether any byte came,
 * which tells a stale pooled connection from a server that broke mid-reply. */
static apr_status_t conn_recv_reply(msm_mc_server_t *s, msm_mc_conn_t *c,
                                    msm_mc_reply_kind_e kind, const char *key,
                                    apr_time_t deadline, msm_mc_reply_t *reply,
                                    int *got)
{
    apr_size_t len = 0, consumed;
    apr_size_t limit = s->max_value + LINE_MAX_LEN + 16;

    for (;;) {
        apr_size_t n;
        apr_status_t rv;

        if (len == c->cap) {
            char *bigger;
            apr_size_t cap = c->cap * 2 > limit ? limit : c->cap * 2;
            if (cap <= c->cap || (bigger = realloc(c->buf, cap)) == NULL) {
                return MSM_MC_EPROTO;
            }
            c->buf = bigger;
            c->cap = cap;
        }
        n = c->cap - len;
        if (c->ssl) {
            int done = 0;
            rv = tls_call(c, TLS_READ, c->buf + len,
                          n > INT_MAX ? INT_MAX : (int)n, &done, deadline);
            n = (apr_size_t)done;
        }
        else if ((rv = conn_timeo(c, 1, deadline - apr_time_now()))
                 == APR_SUCCESS) {
            rv = apr_socket_recv(c->sock, c->buf + len, &n);
        }
        if (rv != APR_SUCCESS) {
            return status_from_errno(rv);
        }
        len += n;
        *got = 1;
        rv = msm_mc_parse_reply(kind, key, c->buf, len, s->max_value, reply,
                                &consumed);
        if (rv == APR_SUCCESS) {
            /* memcached sends nothing unasked: extra bytes mean we are out
             * of step with the server. */
            return consumed == len ? APR_SUCCESS : MSM_MC_EPROTO;
        }
        if (rv != APR_INCOMPLETE) {
            return rv;
        }
    }
}

static int is_stale_conn_error(apr_status_t rv)
{
    return rv == APR_EOF || APR_STATUS_IS_ECONNRESET(rv)
        || APR_STATUS_IS_EPIPE(rv);
}

typedef struct mc_op {
    msm_mc_reply_kind_e kind;
    const char *key;
    struct iovec iov[3];
    int iovcnt;
    msm_mc_reply_t reply;
    apr_pool_t *copy_pool;      /* where to copy a value; NULL: no copy */
    char *copy;                 /* the copied reply data, NUL-terminated */
} mc_op_t;

/* One request/reply exchange on one connection. */
static apr_status_t exchange(msm_mc_server_t *s, msm_mc_conn_t *c,
                             mc_op_t *op, apr_time_t deadline, int *got)
{
    struct iovec iov[3];
    apr_status_t rv;

    memcpy(iov, op->iov, sizeof(iov));
    rv = conn_send(c, iov, op->iovcnt, deadline);
    if (rv == APR_SUCCESS) {
        rv = conn_recv_reply(s, c, op->kind, op->key, deadline, &op->reply,
                             got);
    }
    if (c->ssl && !c->reused && !*got && APR_STATUS_IS_ECONNRESET(rv)) {
        rv = MSM_MC_ETLS_RESET;
    }
    if (rv == APR_SUCCESS && op->copy_pool && op->reply.data) {
        op->copy = apr_palloc(op->copy_pool, op->reply.len + 1);
        memcpy(op->copy, op->reply.data, op->reply.len);
        op->copy[op->reply.len] = '\0';
    }
    return rv;
}

/* memcached -Y answers a wrong password with "CLIENT_ERROR authentication
 * failure" and any command before the credentials with "CLIENT_ERROR
 * unauthenticated": neither is this request's fault, both make every
 * request fail. */
static int is_auth_refusal(const msm_mc_reply_t *reply)
{
    static const char *const words[] = { "authentication", "unauthenticated" };
    apr_size_t i;

    if (reply->type != MSM_MC_R_CLIENT_ERROR || reply->data == NULL) {
        return 0;
    }
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        apr_size_t n = strlen(words[i]);
        if (reply->len >= n && memcmp(reply->data, words[i], n) == 0) {
            return 1;
        }
    }
    return 0;
}

static apr_status_t conn_authenticate(msm_mc_server_t *s, msm_mc_conn_t *c,
                                      apr_time_t deadline)
{
    mc_op_t op;
    apr_status_t rv;
    int got = 0;

    memset(&op, 0, sizeof(op));
    op.kind = MSM_MC_REPLY_STORAGE;
    op.iov[0].iov_base = s->auth;
    op.iov[0].iov_len = s->auth_len;
    op.iovcnt = 1;
    rv = exchange(s, c, &op, deadline, &got);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (op.reply.type == MSM_MC_R_STORED) {
        return APR_SUCCESS;
    }
    return is_auth_refusal(&op.reply) ? MSM_MC_EAUTH : MSM_MC_EPROTO;
}

/* Runs op within the server's timeout. A pooled connection the server
 * closed while it sat idle (restart, proxy timeout) fails before any reply
 * byte; that case alone is tried once more, on a new connection. The other
 * idle connections are as old: they are closed too, or a threaded child's
 * next operations (and its node probes) would meet them one by one. */
static apr_status_t run_op(msm_mc_server_t *s, mc_op_t *op)
{
    apr_time_t start = apr_time_now();
    apr_time_t deadline = start + s->timeout;
    apr_status_t rv;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        msm_mc_conn_t *c = attempt == 0 ? conn_take_idle(s) : NULL;
        int got = 0, reused;

        if (c == NULL) {
            rv = conn_open(s, deadline, &c);
            if (rv != APR_SUCCESS) {
                break;
            }
        }
        reused = c->reused;
        rv = exchange(s, c, op, deadline, &got);
        if (rv == APR_SUCCESS && op->reply.type != MSM_MC_R_ERROR
            && op->reply.type != MSM_MC_R_CLIENT_ERROR
            && op->reply.type != MSM_MC_R_SERVER_ERROR) {
            conn_release(s, c);
            break;
        }
        /* After an error reply memcached may close or skip input: a fresh
         * connection is cheaper than finding out. */
        if (rv == APR_SUCCESS && is_auth_refusal(&op->reply)) {
            rv = MSM_MC_EAUTH;
        }
        conn_close(s, c);
        if (rv == APR_SUCCESS || rv == MSM_MC_EAUTH || !reused || got
            || !is_stale_conn_error(rv)) {
            break;
        }
        msm_mc_server_close_idle(s);
    }
    if (s->observer.op_done) {
        s->observer.op_done(s->observer.baton, rv, apr_time_now() - start);
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */

apr_status_t msm_mc_server_create(apr_pool_t *p, apr_sockaddr_t *addr,
                                  apr_interval_time_t timeout,
                                  apr_size_t max_value, int max_idle,
                                  const msm_mc_observer_t *observer,
                                  msm_mc_server_t **out)
{
    msm_mc_server_t *s = apr_pcalloc(p, sizeof(*s));
    apr_status_t rv;

    rv = apr_pool_create(&s->pool, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_pre_cleanup_register(s->pool, s, server_cleanup);
    s->addr = addr;
    s->timeout = timeout;
    s->max_value = max_value;
    s->max_idle = max_idle > 0 ? max_idle : 1;
    if (observer) {
        s->observer = *observer;
    }
#if APR_HAS_THREADS
    rv = apr_thread_mutex_create(&s->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
#endif
    *out = s;
    return APR_SUCCESS;
}

const char *msm_mc_reason(apr_pool_t *p, apr_status_t rv)
{
    if (rv > MSM_MC_ETLS_VERIFY && rv < MSM_MC_ETLS_VERIFY + MSM_MC_ETLS_RANGE) {
        return apr_pstrcat(p, "TLS: the server's certificate is not "
                           "accepted: ", X509_verify_cert_error_string(
                               (long)(rv - MSM_MC_ETLS_VERIFY)), NULL);
    }
    if (rv > MSM_MC_ETLS_SSL && rv < MSM_MC_ETLS_SSL + MSM_MC_ETLS_SSL_RANGE) {
        const char *why = ERR_reason_error_string(
            ERR_PACK(ERR_LIB_SSL, 0, (int)(rv - MSM_MC_ETLS_SSL)));
        return apr_pstrcat(p, "TLS failed: ", why ? why : "unknown reason",
                           NULL);
    }
    switch (rv) {
    case MSM_MC_ETLS: return "TLS failed";
    case MSM_MC_ETLS_RESET: return "TLS: the server reset the connection "
        "after the handshake (does it require a client certificate? "
        "MsmTLSCertificateFile)";
    case MSM_MC_EREPLY: return "memcached refused the request";
    case MSM_MC_ETOOBIG: return "item too large";
    case MSM_MC_EPROTO: return "not a memcached reply";
    case MSM_MC_EAUTH: return "memcached authentication failed (MsmAuth)";
    default: return NULL;
    }
}

const char *msm_mc_auth_problem(const char *user, const char *password)
{
    apr_size_t nu = strlen(user), np = strlen(password), i;

    if (nu == 0 || np == 0 || nu > 250 || np > 250) {
        return "the user and the password must be 1-250 bytes";
    }
    for (i = 0; i < nu; i++) {
        if ((unsigned char)user[i] <= 0x20 || user[i] == 0x7f) {
            return "the user must not contain white space or control "
                   "characters";
        }
    }
    if (strpbrk(password, "\r\n") != NULL) {
        return "the password must not contain CR or LF";
    }
    return NULL;
}

/* Expiry -1: a memcached without -Y stores the credentials as an item
 * that has expired already, so no one can read them back there. */
void msm_mc_server_set_auth(msm_mc_server_t *s, const char *user,
                            const char *password)
{
    apr_size_t len = strlen(user) + 1 + strlen(password);

    s->auth = apr_psprintf(s->pool, "set msm-auth 0 -1 %lu\r\n%s %s\r\n",
                           (unsigned long)len, user, password);
    s->auth_len = strlen(s->auth);
}

void msm_mc_server_set_tls(msm_mc_server_t *s, struct ssl_ctx_st *ctx,
                           const char *name)
{
    /* at child init, before any thread: made once per process */
    if (tls_ex_index < 0) {
        tls_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    if (deadline_bio == NULL
        && (deadline_bio = BIO_meth_new(BIO_get_new_index()
                                        | BIO_TYPE_SOURCE_SINK,
                                        "msm deadline socket")) != NULL) {
        BIO_meth_set_read(deadline_bio, bio_read);
        BIO_meth_set_write(deadline_bio, bio_write);
        BIO_meth_set_ctrl(deadline_bio, bio_ctrl);
        BIO_meth_set_create(deadline_bio, bio_create);
    }
    SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
    s->tls = ctx;
    s->tls_name = apr_pstrdup(s->pool, name);
    s->tls_name_is_ip = msm_tls_name_is_ip(name);
}

static int key_is_valid(const char *key)
{
    apr_size_t n = 0;

    for (; key[n]; n++) {
        if ((unsigned char)key[n] <= 0x20 || key[n] == 0x7f) {
            return 0;
        }
    }
    return n > 0 && n <= MSM_MC_KEY_MAX;
}

static void op_init(mc_op_t *op, msm_mc_reply_kind_e kind, const char *key,
                    char *line, apr_size_t line_len)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->key = key;
    op->iov[0].iov_base = line;
    op->iov[0].iov_len = line_len;
    op->iovcnt = 1;
}

/* Turns a completed exchange into the documented outcome. */
static apr_status_t outcome(apr_status_t rv, const msm_mc_reply_t *reply)
{
    if (rv != APR_SUCCESS) {
        return rv;
    }
    switch (reply->type) {
    case MSM_MC_R_VALUE: case MSM_MC_R_STORED: case MSM_MC_R_DELETED:
    case MSM_MC_R_TOUCHED: case MSM_MC_R_VERSION:
        return APR_SUCCESS;
    case MSM_MC_R_END: case MSM_MC_R_NOT_FOUND:
        return APR_NOTFOUND;
    case MSM_MC_R_NOT_STORED: case MSM_MC_R_EXISTS:
        return APR_EEXIST;
    default:
        return MSM_MC_EREPLY;
    }
}

static apr_status_t retrieve(msm_mc_server_t *s, apr_pool_t *p,
                             const char *line, const char *key,
                             msm_mc_item_t *item)
{
    mc_op_t op;
    apr_status_t rv;

    op_init(&op, MSM_MC_REPLY_RETRIEVAL, key, (char *)line, strlen(line));
    op.copy_pool = p;
    rv = outcome(run_op(s, &op), &op.reply);
    memset(item, 0, sizeof(*item));
    if (rv == APR_SUCCESS) {
        item->value = op.copy;
        item->len = op.reply.len;
        item->flags = op.reply.flags;
        item->cas = op.reply.cas;
    }
    return rv;
}

apr_status_t msm_mc_get(msm_mc_server_t *s, apr_pool_t *p, const char *key,
                        msm_mc_item_t *item)
{
    char line[MSM_MC_KEY_MAX + 16];

    if (!key_is_valid(key)) {
        return APR_EINVAL;
    }
    apr_snprintf(line, sizeof(line), "gets %s\r\n", key);
    return retrieve(s, p, line, key, item);
}

static apr_status_t get_then_touch(msm_mc_server_t *s, apr_pool_t *p,
                                   const char *key, apr_uint32_t exptime,
                                   msm_mc_item_t *item)
{
    apr_status_t rv = msm_mc_get(s, p, key, item);

    if (rv == APR_SUCCESS) {
        apr_status_t trv = msm_mc_touch(s, key, exptime);
        if (msm_mc_node_failed(trv)) {
            return trv;
        }
    }
    return rv;
}

/* Records that the server lacks a command; the observer hears it once. */
static void mark_unknown_command(msm_mc_server_t *s, volatile apr_uint32_t *known,
                                 void (*tell)(void *baton))
{
    if (apr_atomic_cas32(known, KNOWN_NO, KNOWN_UNKNOWN) == KNOWN_UNKNOWN
        && tell) {
        tell(s->observer.baton);
    }
}

apr_status_t msm_mc_get_touch(msm_mc_server_t *s, apr_pool_t *p,
                              const char *key, apr_uint32_t exptime,
                              msm_mc_item_t *item)
{
    char line[MSM_MC_KEY_MAX + 32];
    apr_uint32_t gats = apr_atomic_read32(&s->gats);
    apr_status_t rv;

    if (!key_is_valid(key)) {
        return APR_EINVAL;
    }
    if (gats == KNOWN_NO) {
        return get_then_touch(s, p, key, exptime, item);
    }
    apr_snprintf(line, sizeof(line), "gats %u %s\r\n", exptime, key);
    rv = retrieve(s, p, line, key, item);
    if (gats == KNOWN_YES) {
        return rv;
    }
    /* First gats on this server: yrmcds answers ERROR, twemproxy closes
     * the connection. Either way, see whether gets + touch works. */
    if (rv == MSM_MC_EREPLY || rv == APR_EOF) {
        apr_status_t frv = get_then_touch(s, p, key, exptime, item);
        if (!msm_mc_node_failed(frv) && frv != MSM_MC_EREPLY) {
            mark_unknown_command(s, &s->gats, s->observer.no_gat);
        }
        return frv;
    }
    if (!msm_mc_node_failed(rv)) {
        apr_atomic_cas32(&s->gats, KNOWN_YES, KNOWN_UNKNOWN);
    }
    return rv;
}

apr_status_t msm_mc_store(msm_mc_server_t *s, msm_mc_store_mode_e mode,
                          const char *key, const char *value, apr_size_t len,
                          apr_uint32_t flags, apr_uint32_t exptime,
                          apr_uint64_t cas_unique)
{
    static const char *const verbs[] = { "set", "add", "cas", "append" };
    char line[MSM_MC_KEY_MAX + 96];
    apr_size_t n;
    mc_op_t op;

    if (!key_is_valid(key)) {
        return APR_EINVAL;
    }
    if (len > s->max_value) {
        return MSM_MC_ETOOBIG;
    }
    n = apr_snprintf(line, sizeof(line), "%s %s %u %u %" APR_SIZE_T_FMT,
                     verbs[mode], key, flags, exptime, len);
    if (mode == MSM_MC_CAS) {
        n += apr_snprintf(line + n, sizeof(line) - n, " %" APR_UINT64_T_FMT,
                          cas_unique);
    }
    n += apr_snprintf(line + n, sizeof(line) - n, "\r\n");
    op_init(&op, MSM_MC_REPLY_STORAGE, key, line, n);
    op.iov[1].iov_base = (void *)value;
    op.iov[1].iov_len = len;
    op.iov[2].iov_base = (void *)"\r\n";
    op.iov[2].iov_len = 2;
    op.iovcnt = 3;
    return outcome(run_op(s, &op), &op.reply);
}

static apr_status_t simple_command(msm_mc_server_t *s,
                                   msm_mc_reply_kind_e kind,
                                   const char *key, const char *line)
{
    mc_op_t op;

    if (!key_is_valid(key)) {
        return APR_EINVAL;
    }
    op_init(&op, kind, key, (char *)line, strlen(line));
    return outcome(run_op(s, &op), &op.reply);
}

apr_status_t msm_mc_delete(msm_mc_server_t *s, const char *key)
{
    char line[MSM_MC_KEY_MAX + 16];

    apr_snprintf(line, sizeof(line), "delete %s\r\n", key);
    return simple_command(s, MSM_MC_REPLY_DELETE, key, line);
}

apr_status_t msm_mc_delete_cas(msm_mc_server_t *s, const char *key,
                              apr_uint64_t cas)
{
    char line[MSM_MC_KEY_MAX + 48];
    apr_uint32_t meta = apr_atomic_read32(&s->meta);
    apr_status_t rv;
    char *version;

    if (meta == KNOWN_NO) {
        return APR_ENOTIMPL;
    }
    apr_snprintf(line, sizeof(line), "md %s C%" APR_UINT64_T_FMT "\r\n", key,
                 cas);
    rv = simple_command(s, MSM_MC_REPLY_META_DELETE, key, line);
    if (meta == KNOWN_YES) {
        return rv;
    }
    /* First md on this server: yrmcds answers ERROR; twemproxy closes the
     * connection, which a server that is up answers "version" after. */
    if (rv == MSM_MC_EREPLY
        || (rv == APR_EOF
            && msm_mc_version(s, s->pool, &version) == APR_SUCCESS)) {
        mark_unknown_command(s, &s->meta, s->observer.no_meta);
        return APR_ENOTIMPL;
    }
    if (!msm_mc_node_failed(rv)) {
        apr_atomic_cas32(&s->meta, KNOWN_YES, KNOWN_UNKNOWN);
    }
    return rv;
}

apr_status_t msm_mc_touch(msm_mc_server_t *s, const char *key,
                          apr_uint32_t exptime)
{
    char line[MSM_MC_KEY_MAX + 32];

    apr_snprintf(line, sizeof(line), "touch %s %u\r\n", key, exptime);
    return simple_command(s, MSM_MC_REPLY_TOUCH, key, line);
}

apr_status_t msm_mc_version(msm_mc_server_t *s, apr_pool_t *p,
                            char **version)
{
    mc_op_t op;
    apr_status_t rv;

    op_init(&op, MSM_MC_REPLY_VERSION, NULL, (char *)"version\r\n", 9);
    op.copy_pool = p;
    rv = outcome(run_op(s, &op), &op.reply);
    *version = rv == APR_SUCCESS ? op.copy : NULL;
    return rv;
}
