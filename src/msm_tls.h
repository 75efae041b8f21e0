/* The TLS client context of a node list (MsmTLS): made once from the
 * configured files, before the children fork, and shared by every
 * connection to the list's nodes (src/msm_mc.c does the I/O).
 *
 * What it always does, whatever is configured: TLS 1.2 or newer, the
 * server's certificate verified (MsmTLSCACertificateFile, else the
 * system's trust store), and no way to turn verification off. Ciphers are
 * OpenSSL's defaults (and the system's openssl.cnf). Client sessions are
 * kept by msm_mc.c for resumption, not in OpenSSL's internal cache. */
#ifndef MSM_TLS_H
#define MSM_TLS_H

#include <apr_pools.h>

typedef struct ssl_ctx_st msm_tls_ctx_t;   /* OpenSSL's SSL_CTX */

typedef struct msm_tls_files {
    const char *ca;             /* MsmTLSCACertificateFile, or NULL */
    const char *cert;           /* MsmTLSCertificateFile, or NULL */
    const char *key;            /* MsmTLSCertificateKeyFile, or NULL */
} msm_tls_files_t;

/* NULL and *out set (freed with p), or the reason, which names the
 * directive whose file is at fault and OpenSSL's words for it. */
const char *msm_tls_ctx_make(apr_pool_t *p, const msm_tls_files_t *files,
                             msm_tls_ctx_t **out);

/* Whether name is an IPv4 or IPv6 address (verified against the
 * certificate's IP entries, and sent without SNI) rather than a DNS name. */
int msm_tls_name_is_ip(const char *name);

/* NULL if name can be verified (MsmTLSVerifyName), else why not. */
const char *msm_tls_name_problem(const char *name);

#endif
