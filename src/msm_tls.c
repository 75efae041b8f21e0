#include "msm_tls.h"

#include <arpa/inet.h>
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static apr_status_t ctx_cleanup(void *data)
{
    SSL_CTX_free(data);
    return APR_SUCCESS;
}

/* "<directive>: <what> '<file>': <OpenSSL's reason>" */
static const char *failed(apr_pool_t *p, const char *directive,
                          const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return apr_psprintf(p, "%s: %s '%s': %s", directive, what, file,
                        why ? why : "unknown OpenSSL error");
}

static const char *load_trust(apr_pool_t *p, SSL_CTX *ctx, const char *ca)
{
    if (ca == NULL) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            return failed(p, "MsmTLS", "cannot load the system's trust "
                          "store", "default");
        }
        return NULL;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        return failed(p, "MsmTLSCACertificateFile", "cannot load", ca);
    }
    return NULL;
}

static const char *load_client_cert(apr_pool_t *p, SSL_CTX *ctx,
                                    const msm_tls_files_t *f)
{
    if (f->cert == NULL && f->key == NULL) {
        return NULL;
    }
    if (f->cert == NULL || f->key == NULL) {
        return "MsmTLSCertificateFile and MsmTLSCertificateKeyFile go "
               "together (a client certificate needs its key)";
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
        return failed(p, "MsmTLSCertificateFile", "cannot load", f->cert);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
        return failed(p, "MsmTLSCertificateKeyFile", "cannot load", f->key);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return failed(p, "MsmTLSCertificateKeyFile", "key does not match "
                      "the certificate of", f->cert);
    }
    return NULL;
}

const char *msm_tls_ctx_make(apr_pool_t *p, const msm_tls_files_t *files,
                             msm_tls_ctx_t **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *err;

    if (ctx == NULL) {
        return failed(p, "MsmTLS", "cannot make a TLS context", "-");
    }
    apr_pool_cleanup_register(p, ctx, ctx_cleanup, apr_pool_cleanup_null);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* msm_mc.c keeps the newest session of each node itself. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT
                                        | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    /* One read() takes whatever the server sent (a reply is one record),
     * not a record header and then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if ((err = load_trust(p, ctx, files->ca)) != NULL
        || (err = load_client_cert(p, ctx, files)) != NULL) {
        return err;
    }
    *out = ctx;
    return NULL;
}

int msm_tls_name_is_ip(const char *name)
{
    unsigned char a[16];

    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

const char *msm_tls_name_problem(const char *name)
{
    apr_size_t i, n = strlen(name);

    if (n == 0 || n > 253) {
        return "must be a host name or an IP address of 1-253 characters";
    }
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(apr_isalnum(ch) || ch == '.' || ch == '-' || ch == ':'
              || ch == '_')) {
            return "must be a host name or an IP address";
        }
    }
    return NULL;
}
