/* TLS to memcached (msm_tls.c, the TLS part of msm_mc.c) against a TLS
 * server in a thread of this process, with a certificate made here for
 * localhost / 127.0.0.1:
 *   - good: a pooled connection keeps its session (one handshake for
 *     many operations); a reconnect resumes it;
 *   - the certificate's name or issuer wrong: a verify error naming it;
 *   - a server that drips one TLS record past the deadline, one that
 *     never answers the handshake: APR_TIMEUP within the deadline (one
 *     SSL_read may need several reads: each waits only for what is left);
 *   - a clear-text server: a TLS failure, and it got only TLS bytes;
 * and the tables of msm_tls_name_is_ip, msm_tls_name_problem and the
 * errors of msm_tls_ctx_make. */
#include "unit.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "msm_mc.h"
#include "msm_tls.h"

#define MS(n) apr_time_from_msec(n)

static apr_pool_t *root;
static const char *cert_file, *key_file, *other_file;

/* ---- a certificate for localhost ---- */

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || (x && !PEM_write_X509(f, x))
        || (k && !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

static X509 *self_signed(EVP_PKEY *k, const char *cn, const char *san)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_get_subject_name(x);
    X509_EXTENSION *ext;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                               -1, -1, 0);
    X509_set_issuer_name(x, n);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, (char *)san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, k, EVP_sha256());
    return x;
}

static void make_certs(apr_pool_t *p)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    EVP_PKEY *k = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
    X509 *x = self_signed(k, "localhost", "DNS:localhost,IP:127.0.0.1");
    X509 *x2 = self_signed(k2, "other", "DNS:localhost,IP:127.0.0.1");

    cert_file = apr_psprintf(p, "%s/test_tls-%ld-cert.pem", dir, (long)getpid());
    key_file = apr_psprintf(p, "%s/test_tls-%ld-key.pem", dir, (long)getpid());
    other_file = apr_psprintf(p, "%s/test_tls-%ld-other.pem", dir,
                              (long)getpid());
    write_pem(cert_file, x, NULL);
    write_pem(key_file, NULL, k);
    write_pem(other_file, x2, NULL);
    X509_free(x);
    X509_free(x2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

/* ---- a TLS server in a thread ---- */

typedef enum {
    S_GOOD,         /* TLS; "VERSION tls\r\n" to every request */
    S_DRIP,         /* TLS; the reply's record sent a byte per 20 ms */
    S_SILENT,       /* accepts, reads, never answers */
    S_PLAIN         /* answers "ERROR\r\n" in clear text */
} smode_e;

typedef struct {
    smode_e mode;
    int conns;                  /* connections to serve */
    apr_socket_t *listener;
    apr_port_t port;
    SSL_CTX *ctx;
    unsigned char first[8];     /* the first bytes received (S_PLAIN) */
    int resumed;                /* handshakes that resumed */
    apr_thread_t *thread;
} tserver_t;

static int wait_fd(int fd, short events, int ms)
{
    struct pollfd pfd = { fd, events, 0 };
    return poll(&pfd, 1, ms) > 0;
}

/* Sends what the server's SSL wrote into its memory BIO: all at once, or
 * a byte at a time (S_DRIP). */
static void flush_out(tserver_t *t, int fd, BIO *out, int drip)
{
    char buf[16384];
    int n;

    while ((n = BIO_read(out, buf, sizeof(buf))) > 0) {
        int i;
        for (i = 0; i < n; i += drip ? 1 : n - i) {
            if (write(fd, buf + i, drip ? 1 : (size_t)(n - i)) < 0) {
                return;
            }
            if (drip) {
                usleep(20000);
            }
        }
    }
    (void)t;
}

/* One TLS connection: the SSL reads from the socket, writes into a memory
 * BIO that flush_out sends (so that S_DRIP can split a record). */
static void serve_tls(tserver_t *t, int fd)
{
    SSL *ssl = SSL_new(t->ctx);
    BIO *in = BIO_new_socket(fd, BIO_NOCLOSE), *out = BIO_new(BIO_s_mem());
    char buf[512];
    int handshaken = 0, deadline = 100;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    SSL_set_bio(ssl, in, out);
    SSL_set_accept_state(ssl);
    while (deadline-- > 0) {
        int n = handshaken ? SSL_read(ssl, buf, sizeof(buf))
                           : SSL_do_handshake(ssl);
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);

        flush_out(t, fd, out, 0);
        if (!handshaken && n == 1) {
            handshaken = 1;
            t->resumed += SSL_session_reused(ssl);
            continue;
        }
        if (handshaken && n > 0) {
            SSL_write(ssl, "VERSION tls\r\n", 13);
            flush_out(t, fd, out, t->mode == S_DRIP);
            continue;
        }
        if (err != SSL_ERROR_WANT_READ || !wait_fd(fd, POLLIN, 3000)) {
            break;
        }
    }
    SSL_free(ssl);
}

static void *APR_THREAD_FUNC server_main(apr_thread_t *th, void *arg)
{
    tserver_t *t = arg;
    apr_os_sock_t lfd;
    int i;

    apr_os_sock_get(&lfd, t->listener);
    for (i = 0; i < t->conns && wait_fd(lfd, POLLIN, 3000); i++) {
        int fd = accept(lfd, NULL, NULL);
        char buf[4096];
        ssize_t n;

        if (fd < 0) {
            break;
        }
        if (t->mode == S_SILENT || t->mode == S_PLAIN) {
            if (wait_fd(fd, POLLIN, 3000)
                && (n = read(fd, t->first, sizeof(t->first))) > 0
                && t->mode == S_PLAIN) {
                (void)!write(fd, "ERROR\r\n", 7);
            }
            while (wait_fd(fd, POLLIN, 1000)        /* until the client */
                   && read(fd, buf, sizeof(buf)) > 0) {  /* gives up */
            }
        }
        else {
            serve_tls(t, fd);
        }
        close(fd);
    }
    (void)th;
    return NULL;
}

static tserver_t *server_start(apr_pool_t *p, smode_e mode, int conns)
{
    tserver_t *t = apr_pcalloc(p, sizeof(*t));
    apr_sockaddr_t *sa, *local;

    t->mode = mode;
    t->conns = conns;
    t->ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_session_id_context(t->ctx, (const unsigned char *)"t", 1);
    if (SSL_CTX_use_certificate_file(t->ctx, cert_file, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1
        || apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, 0, 0, p)
        || apr_socket_create(&t->listener, APR_INET, SOCK_STREAM,
                             APR_PROTO_TCP, p)
        || apr_socket_bind(t->listener, sa)
        || apr_socket_listen(t->listener, 8)
        || apr_socket_addr_get(&local, APR_LOCAL, t->listener)
        || apr_thread_create(&t->thread, NULL, server_main, t, p)) {
        fprintf(stderr, "cannot start the TLS server\n");
        exit(2);
    }
    t->port = local->port;
    return t;
}

static void server_stop(tserver_t *t)
{
    apr_status_t trv;

    apr_thread_join(&trv, t->thread);
    apr_socket_close(t->listener);
    SSL_CTX_free(t->ctx);
}

/* ---- the client ---- */

static int handshakes, resumptions;

static void on_handshake(void *baton, int resumed)
{
    handshakes++;
    resumptions += resumed;
    (void)baton;
}

static msm_mc_server_t *client(apr_pool_t *p, tserver_t *t, const char *ca,
                               const char *name, apr_interval_time_t timeout)
{
    msm_tls_files_t files = { ca, NULL, NULL };
    msm_mc_observer_t ob;
    msm_tls_ctx_t *ctx;
    apr_sockaddr_t *sa;
    msm_mc_server_t *s;
    const char *err = msm_tls_ctx_make(p, &files, &ctx);

    memset(&ob, 0, sizeof(ob));
    ob.handshake = on_handshake;
    if (err || apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET, t->port, 0, p)
        || msm_mc_server_create(p, sa, timeout, 1024, 2, &ob, &s)) {
        fprintf(stderr, "cannot make a client: %s\n", err ? err : "-");
        exit(2);
    }
    msm_mc_server_set_tls(s, ctx, name);
    return s;
}

static void test_good(apr_pool_t *p)
{
    tserver_t *t = server_start(p, S_GOOD, 2);
    msm_mc_server_t *s = client(p, t, cert_file, "127.0.0.1", MS(1000));
    char *v = NULL;
    int i;

    handshakes = resumptions = 0;
    for (i = 0; i < 5; i++) {
        CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    }
    CHECK_STR_EQ(v, "tls");
    CHECK_INT_EQ(handshakes, 1);        /* the pooled connection kept it */
    msm_mc_server_close_idle(s);
    CHECK_STATUS(msm_mc_version(s, p, &v), APR_SUCCESS);
    CHECK_INT_EQ(handshakes, 2);
    CHECK_INT_EQ(resumptions, 1);       /* the reconnect resumed */
    msm_mc_server_close_idle(s);
    server_stop(t);
    CHECK_INT_EQ(t->resumed, 1);
}

static void test_verify(apr_pool_t *p)
{
    static const struct {
        const char *name;
        int use_other_ca;
        long x509_error;
        const char *words;
    } cases[] = {
        { "localhost", 0, 0, NULL },                /* SNI and DNS name */
        { "memcached.example.net", 0, X509_V_ERR_HOSTNAME_MISMATCH,
          "hostname mismatch" },
        { "127.0.0.2", 0, X509_V_ERR_IP_ADDRESS_MISMATCH, "IP address" },
        { "127.0.0.1", 1, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
          "self-signed" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tserver_t *t = server_start(p, S_GOOD, 1);
        msm_mc_server_t *s = client(p, t, cases[i].use_other_ca ? other_file
                                                                : cert_file,
                                    cases[i].name, MS(1000));
        char *v;
        apr_status_t rv = msm_mc_version(s, p, &v);
        const char *why = msm_mc_reason(p, rv);

        if (cases[i].x509_error == 0) {
            CHECK_STATUS(rv, APR_SUCCESS);
        }
        else {
            CHECK_MSG(rv == MSM_MC_ETLS_VERIFY + cases[i].x509_error
                      && why && strstr(why, cases[i].words)
                      && msm_mc_node_failed(rv),
                      "%s: %d %s", cases[i].name, rv, why ? why : "-");
        }
        msm_mc_server_close_idle(s);
        server_stop(t);
    }
}

/* The reply record arrives a byte per 20 ms (~0.6 s): the operation ends
 * at its 200 ms deadline; a server that never answers the handshake the
 * same. */
static void test_deadlines(apr_pool_t *p)
{
    smode_e modes[] = { S_DRIP, S_SILENT };
    int i;

    for (i = 0; i < 2; i++) {
        tserver_t *t = server_start(p, modes[i], 1);
        msm_mc_server_t *s = client(p, t, cert_file, "127.0.0.1", MS(200));
        apr_time_t t0 = apr_time_now();
        char *v;

        CHECK_STATUS(msm_mc_version(s, p, &v), APR_TIMEUP);
        CHECK_MSG(apr_time_now() - t0 < MS(300), "mode %d took %ld ms", i,
                  (long)apr_time_as_msec(apr_time_now() - t0));
        server_stop(t);
    }
}

static void test_plain_server(apr_pool_t *p)
{
    tserver_t *t = server_start(p, S_PLAIN, 1);
    msm_mc_server_t *s = client(p, t, cert_file, "127.0.0.1", MS(500));
    char *v;
    apr_status_t rv = msm_mc_version(s, p, &v);
    const char *why = msm_mc_reason(p, rv);

    CHECK_MSG(rv > MSM_MC_ETLS_SSL && why && strstr(why, "wrong version"),
              "%d %s", rv, why ? why : "-");
    server_stop(t);
    CHECK(t->first[0] == 0x16 && t->first[1] == 0x03);  /* a ClientHello */
}

static void test_tables(apr_pool_t *p)
{
    static const struct { const char *name; int ip; int ok; } names[] = {
        { "127.0.0.1", 1, 1 }, { "::1", 1, 1 }, { "fe80::1", 1, 1 },
        { "localhost", 0, 1 }, { "mc-1.example.net", 0, 1 },
        { "256.1.1.1", 0, 1 }, { "", 0, 0 }, { "a b", 0, 0 },
        { "a/b", 0, 0 }, { "*.example.net", 0, 0 },
    };
    msm_tls_files_t f;
    msm_tls_ctx_t *ctx;
    const char *err;
    apr_size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        CHECK_MSG(msm_tls_name_is_ip(names[i].name) == names[i].ip, "%s",
                  names[i].name);
        CHECK_MSG((msm_tls_name_problem(names[i].name) == NULL)
                  == names[i].ok, "%s", names[i].name);
    }
    memset(&f, 0, sizeof(f));
    f.ca = "/nonexistent/ca.pem";
    err = msm_tls_ctx_make(p, &f, &ctx);
    CHECK(err && strstr(err, "MsmTLSCACertificateFile"));
    f.ca = cert_file;
    f.cert = cert_file;
    err = msm_tls_ctx_make(p, &f, &ctx);
    CHECK(err && strstr(err, "go together"));
    f.key = key_file;
    CHECK_STR_EQ(msm_tls_ctx_make(p, &f, &ctx), NULL);
    f.cert = other_file;                     /* not the key's certificate */
    err = msm_tls_ctx_make(p, &f, &ctx);
    CHECK(err && strstr(err, "MsmTLSCertificateKeyFile"));
    CHECK(strstr(msm_mc_reason(p, MSM_MC_ETLS_VERIFY
                               + X509_V_ERR_CERT_HAS_EXPIRED), "expired"));
}

int main(void)
{
    apr_pool_t *p = unit_init("test_tls");

    signal(SIGPIPE, SIG_IGN);
    root = p;
    make_certs(p);
    test_tables(p);
    test_good(p);
    test_verify(p);
    test_deadlines(p);
    test_plain_server(p);
    unlink(cert_file);
    unlink(key_file);
    unlink(other_file);
    return unit_done();
}
