/* mod_msm directives: create/merge pairs and the command table. */
#include "mod_msm.h"

#include "apr_hash.h"
#include "apr_strings.h"
#include "http_core.h"

#include <openssl/crypto.h>

/* The node lists of this configuration, for shared memory and child init. */
static apr_array_header_t *all_nodes;

/* ---- server config ---- */

void *msm_create_server_conf(apr_pool_t *p, server_rec *s)
{
    msm_server_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->timeout = MSM_UNSET;
    c->idle = MSM_UNSET;
    c->backup = MSM_UNSET;
    c->backup_async = MSM_UNSET;
    c->retry = MSM_UNSET;
    c->max_size = MSM_UNSET;
    c->lock_expire = MSM_UNSET;
    c->sticky = MSM_UNSET;
    c->sticky_bytes = MSM_UNSET;
    c->sticky_slot = MSM_UNSET;
    c->tls = MSM_UNSET;
    return c;
}

#define MERGE_NUM(field) (add->field != MSM_UNSET ? add->field : base->field)
#define MERGE_PTR(field) (add->field ? add->field : base->field)

void *msm_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    msm_server_conf_t *base = basev, *add = addv;
    msm_server_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->nodes = MERGE_PTR(nodes);
    /* Failover ids name nodes of a list: a vhost with a list of its own
     * does not inherit them. */
    c->failover = add->failover ? add->failover
                                : (add->nodes ? NULL : base->failover);
    c->timeout = MERGE_NUM(timeout);
    c->prefix = MERGE_PTR(prefix);
    c->idle = MERGE_NUM(idle);
    c->backup = MERGE_NUM(backup);
    c->backup_async = MERGE_NUM(backup_async);
    c->retry = MERGE_NUM(retry);
    c->max_size = MERGE_NUM(max_size);
    c->lock_expire = MERGE_NUM(lock_expire);
    c->sticky = MERGE_NUM(sticky);
    c->route = MERGE_PTR(route);
    c->sticky_bytes = MERGE_NUM(sticky_bytes);
    c->sticky_slot = MERGE_NUM(sticky_slot);
    c->auth_user = add->auth_user ? add->auth_user : base->auth_user;
    c->auth_password = add->auth_user ? add->auth_password
                                      : base->auth_password;
    c->tls = MERGE_NUM(tls);
    c->tls_files.ca = MERGE_PTR(tls_files.ca);
    c->tls_files.cert = MERGE_PTR(tls_files.cert);
    c->tls_files.key = MERGE_PTR(tls_files.key);
    c->tls_name = MERGE_PTR(tls_name);
    c->crypt = MERGE_PTR(crypt);
    return c;
}

/* ---- dir config ---- */

void *msm_create_dir_conf(apr_pool_t *p, char *dir)
{
    msm_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->locking = MSM_UNSET;
    c->lock_timeout = MSM_UNSET;
    c->lock_fail = MSM_UNSET;
    c->regenerate = MSM_UNSET;
    return c;
}

void *msm_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    msm_dir_conf_t *base = basev, *add = addv;
    msm_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->cookie_set = add->cookie_set || base->cookie_set;
    c->cookie_name = add->cookie_set ? add->cookie_name : base->cookie_name;
    c->cookie_attrs = add->cookie_set ? add->cookie_attrs : base->cookie_attrs;
    c->locking = MERGE_NUM(locking);
    c->lock_timeout = MERGE_NUM(lock_timeout);
    c->lock_fail = MERGE_NUM(lock_fail);
    c->regenerate = MERGE_NUM(regenerate);
    return c;
}

/* ---- argument checks ---- */

static const char *parse_number(cmd_parms *cmd, const char *arg,
                                apr_int64_t min, apr_int64_t max,
                                const char *unit, apr_int64_t *out)
{
    char *end;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (errno || end == arg || *end || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be a whole number of "
                            "%s from %" APR_INT64_T_FMT " to %"
                            APR_INT64_T_FMT, cmd->cmd->name, arg, unit, min,
                            max);
    }
    *out = v;
    return NULL;
}

static msm_server_conf_t *server_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &msm_module);
}

/* ---- server directives ---- */

static const char *set_nodes(cmd_parms *cmd, void *dummy, int argc,
                             char *const argv[])
{
    msm_server_conf_t *c = server_conf(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    if (err) {
        return err;
    }
    if ((err = msm_nodes_parse(cmd->pool, argc, argv, &c->nodes)) != NULL
        || (err = msm_nodes_resolve(c->nodes, cmd->pool)) != NULL) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    }
    return NULL;
}

static const char *set_failover(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[])
{
    msm_server_conf_t *c = server_conf(cmd);
    int i;

    if (argc < 1) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name,
                           ": needs at least one node id", NULL);
    }
    c->failover = apr_array_make(cmd->pool, argc, sizeof(char *));
    for (i = 0; i < argc; i++) {
        if (!msm_name_is_valid(argv[i])) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a node id",
                                cmd->cmd->name, argv[i]);
        }
        APR_ARRAY_PUSH(c->failover, char *) = argv[i];
    }
    return NULL;
}

static const char *set_timeout(cmd_parms *cmd, void *dummy, const char *arg)
{
    apr_int64_t ms;
    const char *err = parse_number(cmd, arg, 1, 60000, "milliseconds", &ms);

    if (err == NULL) {
        server_conf(cmd)->timeout = apr_time_from_msec(ms);
    }
    return err;
}

static const char *set_auth(cmd_parms *cmd, void *dummy, const char *user,
                            const char *password)
{
    const char *err = msm_mc_auth_problem(user, password);

    if (err) {
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    }
    server_conf(cmd)->auth_user = user;
    server_conf(cmd)->auth_password = password;
    return NULL;
}

/* Reads a file of secrets (MsmAuthFile, MsmEncryptKeyFile) into buf (at
 * most size - 1 bytes, NUL-terminated). httpd reads it as root at
 * start-up, so it can be readable by root only: a warning says so when it
 * is readable by every user. Errors never quote the file's content. */
static const char *read_secret_file(cmd_parms *cmd, const char *arg,
                                    char *buf, apr_size_t size,
                                    apr_size_t *len)
{
    const char *path = ap_server_root_relative(cmd->pool, arg);
    apr_file_t *f;
    apr_finfo_t fi;
    apr_status_t rv;
    char extra;

    if (path == NULL
        || apr_file_open(&f, path, APR_FOPEN_READ, 0, cmd->temp_pool)
           != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: cannot open '%s'", cmd->cmd->name,
                            arg);
    }
    *len = size - 1;
    rv = apr_file_read_full(f, buf, *len, len);
    if (apr_file_info_get(&fi, APR_FINFO_PROT, f) == APR_SUCCESS
        && (fi.protection & APR_FPROT_WREAD)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server,
                     MSMLOGNO(00160) "%s: '%s' is readable by every user; "
                     "make it readable by root only (chmod 600)",
                     cmd->cmd->name, path);
    }
    if (rv == APR_SUCCESS && apr_file_getc(&extra, f) == APR_SUCCESS) {
        rv = APR_ENOSPC;
    }
    apr_file_close(f);
    buf[*len] = '\0';
    if (rv == APR_ENOSPC) {
        return apr_psprintf(cmd->pool, "%s: '%s' is larger than %"
                            APR_SIZE_T_FMT " bytes", cmd->cmd->name, arg,
                            size - 1);
    }
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(cmd->pool, "%s: cannot read '%s'", cmd->cmd->name,
                            arg);
    }
    return NULL;
}

/* The first line that is not empty or a comment: "user:password", as in
 * memcached's own -Y file. */
static const char *set_auth_file(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    char buf[1024], *line, *last, *colon;
    apr_size_t len;
    const char *err = read_secret_file(cmd, arg, buf, sizeof(buf), &len);

    if (err) {
        return err;
    }
    for (line = apr_strtok(buf, "\r\n", &last); line;
         line = apr_strtok(NULL, "\r\n", &last)) {
        if (*line != '\0' && *line != '#') {
            break;
        }
    }
    if (line == NULL || (colon = strchr(line, ':')) == NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s' holds no line "
                            "user:password", cmd->cmd->name, arg);
    }
    *colon = '\0';
    err = set_auth(cmd, dummy, apr_pstrdup(cmd->pool, line),
                   apr_pstrdup(cmd->pool, colon + 1));
    OPENSSL_cleanse(buf, sizeof(buf));
    return err;
}

/* Keys, one per line; the first seals. Read once, as root: the children
 * only ever hold the decoded keys. */
static const char *set_encrypt_key_file(cmd_parms *cmd, void *dummy,
                                        const char *arg)
{
    char buf[16384];
    apr_size_t len;
    const char *err = read_secret_file(cmd, arg, buf, sizeof(buf), &len);

    if (err == NULL
        && (err = msm_crypt_parse_keys(cmd->pool, buf, len,
                                       &server_conf(cmd)->crypt)) != NULL) {
        err = apr_psprintf(cmd->pool, "%s: '%s' %s", cmd->cmd->name, arg,
                           err);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return err;
}

static const char *set_tls(cmd_parms *cmd, void *dummy, int flag)
{
    server_conf(cmd)->tls = flag;
    return NULL;
}

/* MsmTLSCACertificateFile, MsmTLSCertificateFile, MsmTLSCertificateKeyFile:
 * cmd->info is the field's offset in msm_tls_files_t. Read as root at
 * start-up, like mod_ssl's files. */
static const char *set_tls_file(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *path = ap_server_root_relative(cmd->pool, arg);
    apr_file_t *f;

    if (path == NULL
        || apr_file_open(&f, path, APR_FOPEN_READ, 0, cmd->temp_pool)
           != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: cannot read '%s'", cmd->cmd->name,
                            arg);
    }
    apr_file_close(f);
    *(const char **)((char *)&server_conf(cmd)->tls_files
                     + (apr_size_t)cmd->info) = path;
    return NULL;
}

static const char *set_tls_name(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = msm_tls_name_problem(arg);

    if (err) {
        return apr_psprintf(cmd->pool, "%s: '%s' %s", cmd->cmd->name, arg,
                            err);
    }
    server_conf(cmd)->tls_name = arg;
    return NULL;
}

static const char *set_prefix(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = msm_key_prefix_check(arg);

    if (err) {
        return apr_psprintf(cmd->pool, "%s: '%s' %s", cmd->cmd->name, arg,
                            err);
    }
    server_conf(cmd)->prefix = arg;
    return NULL;
}

/* memcached takes an expiry above 30 days as a date; backups get twice the
 * idle time, hence at most 15 days. */
static const char *set_idle(cmd_parms *cmd, void *dummy, const char *arg)
{
    return parse_number(cmd, arg, 1, 15 * 86400, "seconds",
                        &server_conf(cmd)->idle);
}

static const char *set_backup(cmd_parms *cmd, void *dummy, int flag)
{
    server_conf(cmd)->backup = flag;
    return NULL;
}

static const char *set_backup_async(cmd_parms *cmd, void *dummy, int flag)
{
    server_conf(cmd)->backup_async = flag;
    return NULL;
}

static const char *set_retry(cmd_parms *cmd, void *dummy, const char *arg)
{
    apr_int64_t s;
    const char *err = parse_number(cmd, arg, 1, 3600, "seconds", &s);

    if (err == NULL) {
        server_conf(cmd)->retry = apr_time_from_sec(s);
    }
    return err;
}

static const char *set_max_size(cmd_parms *cmd, void *dummy, const char *arg)
{
    return parse_number(cmd, arg, 1024, 128 * 1024 * 1024, "bytes",
                        &server_conf(cmd)->max_size);
}

static const char *set_lock_expire(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    return parse_number(cmd, arg, 1, 3600, "seconds",
                        &server_conf(cmd)->lock_expire);
}

static const char *set_sticky(cmd_parms *cmd, void *dummy, int flag)
{
    server_conf(cmd)->sticky = flag;
    return NULL;
}

static const char *set_route(cmd_parms *cmd, void *dummy, const char *arg)
{
    if (!msm_name_is_valid(arg)) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be 1-16 of A-Z a-z "
                            "0-9 _", cmd->cmd->name, arg);
    }
    server_conf(cmd)->route = arg;
    return NULL;
}

/* "<n>[K|M|G]": bytes. */
static const char *parse_size(cmd_parms *cmd, const char *arg,
                              apr_int64_t *out)
{
    char *end;
    apr_int64_t v, unit = 1;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    switch (*end) {
    case 'k': case 'K': unit = 1024; end++; break;
    case 'm': case 'M': unit = 1024 * 1024; end++; break;
    case 'g': case 'G': unit = 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (errno || end == arg || *end || v <= 0 || v > APR_INT64_MAX / unit) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size (bytes, or "
                            "a number with K, M or G)", cmd->cmd->name, arg);
    }
    *out = v * unit;
    return NULL;
}

static const char *set_sticky_cache(cmd_parms *cmd, void *dummy,
                                    const char *size, const char *slot)
{
    msm_server_conf_t *c = server_conf(cmd);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_int64_t bytes, slot_bytes = MSM_TIER_DEFAULT_SLOT_BYTES;

    if (err || (err = parse_size(cmd, size, &bytes)) != NULL
        || (slot && (err = parse_size(cmd, slot, &slot_bytes)) != NULL)) {
        return err;
    }
    if ((err = msm_tier_check_size(cmd->pool, (apr_uint64_t)bytes,
                                   (apr_uint64_t)slot_bytes)) != NULL) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    }
    c->sticky_bytes = bytes;
    c->sticky_slot = slot_bytes;
    return NULL;
}

/* ---- directory directives ---- */

static int is_token_char(char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

static int is_attr_value(const char *v)
{
    for (; *v; v++) {
        if ((unsigned char)*v <= 0x20 || *v == 0x7f || *v == ';'
            || *v == ',') {
            return 0;
        }
    }
    return 1;
}

/* One cookie attribute, checked and spelled as browsers expect. */
static const char *cookie_attr(cmd_parms *cmd, const char *a,
                               const char **out)
{
    const char *eq = strchr(a, '=');
    const char *val = eq ? eq + 1 : NULL;
    apr_size_t nlen = eq ? (apr_size_t)(eq - a) : strlen(a);

    if (!eq && strcasecmp(a, "secure") == 0) {
        *out = "Secure";
    }
    else if (!eq && strcasecmp(a, "httponly") == 0) {
        *out = "HttpOnly";
    }
    else if (eq && (nlen == 4 && strncasecmp(a, "path", 4) == 0)
             && *val && is_attr_value(val)) {
        *out = apr_pstrcat(cmd->pool, "path=", val, NULL);
    }
    else if (eq && (nlen == 6 && strncasecmp(a, "domain", 6) == 0)
             && *val && is_attr_value(val)) {
        *out = apr_pstrcat(cmd->pool, "domain=", val, NULL);
    }
    else if (eq && nlen == 8 && strncasecmp(a, "samesite", 8) == 0
             && (!strcasecmp(val, "Strict") || !strcasecmp(val, "Lax")
                 || !strcasecmp(val, "None"))) {
        *out = apr_pstrcat(cmd->pool, "SameSite=", val, NULL);
    }
    else {
        return apr_psprintf(cmd->pool, "%s: unknown or malformed cookie "
                            "attribute '%s' (known: path=, domain=, secure, "
                            "httponly, SameSite=Strict|Lax|None)",
                            cmd->cmd->name, a);
    }
    return NULL;
}

static const char *set_cookie_name(cmd_parms *cmd, void *dconf,
                                   const char *args)
{
    msm_dir_conf_t *c = dconf;
    char *line = apr_pstrdup(cmd->pool, args), *last;
    const char *name = apr_strtok(line, " \t", &last);
    const char *attrs = NULL, *a;

    if (name == NULL) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name,
                           ": needs a cookie name", NULL);
    }
    for (a = name; *a; a++) {
        if (!is_token_char(*a)) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a valid cookie "
                                "name", cmd->cmd->name, name);
        }
    }
    while ((a = apr_strtok(NULL, " \t;", &last)) != NULL) {
        const char *norm = NULL, *err = cookie_attr(cmd, a, &norm);
        if (err) {
            return err;
        }
        attrs = attrs ? apr_pstrcat(cmd->pool, attrs, ";", norm, NULL) : norm;
    }
    c->cookie_name = name;
    c->cookie_attrs = attrs ? attrs : "HttpOnly";
    c->cookie_set = 1;
    return NULL;
}

typedef struct {
    const char *word;
    int value;
} keyword_t;

/* One of a directive's keywords (case-insensitive), or an error listing
 * them. */
static const char *parse_keyword(cmd_parms *cmd, const char *arg,
                                 const keyword_t *words, int *out)
{
    const char *list = NULL;
    const keyword_t *k;

    for (k = words; k->word; k++) {
        if (strcasecmp(arg, k->word) == 0) {
            *out = k->value;
            return NULL;
        }
        list = list ? apr_pstrcat(cmd->pool, list, k[1].word ? ", " : " or ",
                                  k->word, NULL) : k->word;
    }
    return apr_psprintf(cmd->pool, "%s: '%s' must be %s", cmd->cmd->name, arg,
                        list);
}

static const char *set_locking(cmd_parms *cmd, void *dconf, const char *arg)
{
    static const keyword_t words[] = {
        { "Off", MSM_LOCK_OFF }, { "On", MSM_LOCK_ON },
        { "Auto", MSM_LOCK_AUTO }, { NULL, 0 }
    };

    return parse_keyword(cmd, arg, words, &((msm_dir_conf_t *)dconf)->locking);
}

static const char *set_lock_timeout(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    apr_int64_t ms;
    const char *err = parse_number(cmd, arg, 0, 600000, "milliseconds", &ms);

    if (err == NULL) {
        ((msm_dir_conf_t *)dconf)->lock_timeout = apr_time_from_msec(ms);
    }
    return err;
}

static const char *set_lock_fail(cmd_parms *cmd, void *dconf, const char *arg)
{
    static const keyword_t words[] = {
        { "Error", MSM_LOCKFAIL_ERROR }, { "Proceed", MSM_LOCKFAIL_PROCEED },
        { NULL, 0 }
    };

    return parse_keyword(cmd, arg, words,
                         &((msm_dir_conf_t *)dconf)->lock_fail);
}

static const char *set_regenerate(cmd_parms *cmd, void *dconf, int flag)
{
    ((msm_dir_conf_t *)dconf)->regenerate = flag;
    return NULL;
}

const command_rec msm_cmds[] = {
    AP_INIT_TAKE_ARGV("MsmNodes", set_nodes, NULL, RSRC_CONF,
        "memcached nodes as id:host:port ..."),
    AP_INIT_TAKE_ARGV("MsmFailoverNodes", set_failover, NULL, RSRC_CONF,
        "ids of MsmNodes that get new sessions only when all others are down"),
    AP_INIT_TAKE1("MsmOperationTimeout", set_timeout, NULL, RSRC_CONF,
        "deadline of one memcached operation in milliseconds (default 1000)"),
    AP_INIT_TAKE2("MsmAuth", set_auth, NULL, RSRC_CONF,
        "memcached's authentication (memcached -Y): user and password"),
    AP_INIT_TAKE1("MsmAuthFile", set_auth_file, NULL, RSRC_CONF,
        "memcached's authentication from a file holding user:password"),
    AP_INIT_TAKE1("MsmEncryptKeyFile", set_encrypt_key_file, NULL, RSRC_CONF,
        "file of keys (base64, 32 bytes, one per line; the first encrypts) "
        "that seal sessions in memcached with AES-256-GCM"),
    AP_INIT_FLAG("MsmTLS", set_tls, NULL, RSRC_CONF,
        "TLS to the memcached nodes (default Off); never clear text instead"),
    AP_INIT_TAKE1("MsmTLSCACertificateFile", set_tls_file,
        (void *)APR_OFFSETOF(msm_tls_files_t, ca), RSRC_CONF,
        "PEM file of the CAs that sign the nodes' certificates (default: the "
        "system's trust store)"),
    AP_INIT_TAKE1("MsmTLSCertificateFile", set_tls_file,
        (void *)APR_OFFSETOF(msm_tls_files_t, cert), RSRC_CONF,
        "PEM client certificate (chain) for memcached's ssl_verify_mode"),
    AP_INIT_TAKE1("MsmTLSCertificateKeyFile", set_tls_file,
        (void *)APR_OFFSETOF(msm_tls_files_t, key), RSRC_CONF,
        "PEM private key of MsmTLSCertificateFile"),
    AP_INIT_TAKE1("MsmTLSVerifyName", set_tls_name, NULL, RSRC_CONF,
        "the name the nodes' certificates must hold (default: each node's "
        "host)"),
    AP_INIT_TAKE1("MsmKeyPrefix", set_prefix, NULL, RSRC_CONF,
        "prefix of every memcached key (default none)"),
    AP_INIT_TAKE1("MsmIdleTimeout", set_idle, NULL, RSRC_CONF,
        "seconds an unused session stays in memcached (default 1800)"),
    AP_INIT_FLAG("MsmBackup", set_backup, NULL, RSRC_CONF,
        "keep a backup copy on the next node (default On with 2+ nodes)"),
    AP_INIT_FLAG("MsmBackupAsync", set_backup_async, NULL, RSRC_CONF,
        "write backups after the response is sent (default On)"),
    AP_INIT_TAKE1("MsmNodeRetry", set_retry, NULL, RSRC_CONF,
        "seconds before a dead node is tried again (default 10)"),
    AP_INIT_TAKE1("MsmMaxSessionSize", set_max_size, NULL, RSRC_CONF,
        "largest session in bytes (default 1047552)"),
    AP_INIT_TAKE1("MsmLockExpire", set_lock_expire, NULL, RSRC_CONF,
        "seconds after which a lock frees itself (default 5)"),
    AP_INIT_FLAG("MsmSticky", set_sticky, NULL, RSRC_CONF,
        "serve sessions from a local shared-memory tier (default Off)"),
    AP_INIT_TAKE1("MsmRoute", set_route, NULL, RSRC_CONF,
        "this server's route, as in the balancer's route= (sticky mode)"),
    AP_INIT_TAKE12("MsmStickyCache", set_sticky_cache, NULL, RSRC_CONF,
        "size of the sticky tier and of its slots (default 32M 1K)"),
    AP_INIT_RAW_ARGS("MsmCookieName", set_cookie_name, NULL,
        RSRC_CONF | OR_AUTHCFG,
        "cookie name and attributes; enables mod_msm here"),
    AP_INIT_TAKE1("MsmLocking", set_locking, NULL, RSRC_CONF | OR_AUTHCFG,
        "Off, On or Auto (lock all but GET/HEAD); default Off"),
    AP_INIT_TAKE1("MsmLockTimeout", set_lock_timeout, NULL,
        RSRC_CONF | OR_AUTHCFG,
        "milliseconds to wait for a lock (default 3000)"),
    AP_INIT_TAKE1("MsmLockFail", set_lock_fail, NULL, RSRC_CONF | OR_AUTHCFG,
        "on lock timeout: Error (503, default) or Proceed unlocked"),
    AP_INIT_FLAG("MsmRegenerateOnLogin", set_regenerate, NULL,
        RSRC_CONF | OR_AUTHCFG,
        "new session id when a user logs in (default On)"),
    { NULL }
};

/* ---- resolving inheritance ---- */

/* How a vhost uses a node list it may share with the server it inherits
 * from; a vhost that uses it differently gets its own copy. */
typedef struct {
    apr_interval_time_t timeout, retry;
    apr_size_t max_value;
    const apr_array_header_t *failover;
    const char *auth_user, *auth_password;
    int tls;
    msm_tls_files_t tls_files;
    const char *tls_name;
} nodes_usage_t;

static int same_string(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int same_usage(const nodes_usage_t *a, const nodes_usage_t *b)
{
    return a->timeout == b->timeout && a->retry == b->retry
        && a->max_value == b->max_value && a->failover == b->failover
        && same_string(a->auth_user, b->auth_user)
        && same_string(a->auth_password, b->auth_password)
        && a->tls == b->tls && same_string(a->tls_name, b->tls_name)
        && same_string(a->tls_files.ca, b->tls_files.ca)
        && same_string(a->tls_files.cert, b->tls_files.cert)
        && same_string(a->tls_files.key, b->tls_files.key);
}

static msm_nodes_t *nodes_for(apr_pool_t *p, apr_hash_t *seen,
                              msm_nodes_t *nodes, const nodes_usage_t *use)
{
    const nodes_usage_t *prev = apr_hash_get(seen, &nodes, sizeof(nodes));
    msm_nodes_t **key;

    if (prev && same_usage(prev, use)) {
        return nodes;
    }
    if (prev) {
        nodes = msm_nodes_clone(p, nodes);
    }
    key = apr_pmemdup(p, &nodes, sizeof(nodes));
    apr_hash_set(seen, key, sizeof(*key), apr_pmemdup(p, use, sizeof(*use)));
    APR_ARRAY_PUSH(all_nodes, msm_nodes_t *) = nodes;
    return nodes;
}

/* "<hex>-<node>.<route>" must fit the cookie parser's limit. */
static int route_fits(const msm_nodes_t *nodes, const char *route)
{
    apr_size_t longest = 0;
    int i;

    for (i = 0; i < nodes->count; i++) {
        apr_size_t n = strlen(nodes->node[i].id);
        longest = n > longest ? n : longest;
    }
    return MSM_ID_HEX_LEN + 2 + longest + strlen(route) <= MSM_COOKIE_MAX;
}

/* MsmTLS On: one context for the list (made once, before the children
 * fork, so that the files can be readable by root only), and the name
 * each TCP node's certificate must hold. */
static const char *use_tls(apr_pool_t *p, msm_nodes_t *nodes,
                           const nodes_usage_t *use)
{
    const char *err;
    int i;

    if (!use->tls) {
        return NULL;
    }
    if (nodes->tls == NULL
        && (err = msm_tls_ctx_make(p, &use->tls_files, &nodes->tls)) != NULL) {
        return err;
    }
    for (i = 0; i < nodes->count; i++) {
        msm_node_t *n = &nodes->node[i];
        if (strcmp(n->transport, "tcp") == 0) {
            n->tls_name = use->tls_name ? use->tls_name : n->host;
        }
    }
    return NULL;
}

static const char *finalize_server(apr_pool_t *p, apr_hash_t *seen,
                                   msm_server_conf_t *c)
{
    nodes_usage_t use;
    msm_nodes_t *nodes;
    const char *err;

    use.timeout = c->timeout != MSM_UNSET ? c->timeout : MSM_DEFAULT_TIMEOUT;
    use.retry = c->retry != MSM_UNSET ? c->retry : MSM_DEFAULT_RETRY;
    use.max_value = (apr_size_t)(c->max_size != MSM_UNSET
                                 ? c->max_size : MSM_DEFAULT_MAX_SIZE);
    use.failover = c->failover;
    use.auth_user = c->auth_user;
    use.auth_password = c->auth_password;
    use.tls = c->tls == 1;
    use.tls_files = c->tls_files;
    use.tls_name = c->tls_name;
    nodes = nodes_for(p, seen, c->nodes, &use);
    nodes->timeout = use.timeout;
    nodes->retry = use.retry;
    nodes->max_value = use.max_value;
    nodes->auth_user = use.auth_user;
    nodes->auth_password = use.auth_password;
    if ((err = use_tls(p, nodes, &use)) != NULL) {
        return err;
    }
    err = msm_nodes_set_failover(p, nodes, c->failover ? c->failover->nelts : 0,
                                 c->failover ? (char *const *)c->failover->elts
                                             : NULL);
    if (err) {
        return apr_pstrcat(p, "MsmFailoverNodes: ", err, NULL);
    }
    if (c->sticky == 1 && c->route == NULL) {
        return "MsmSticky On needs MsmRoute (this server's route name)";
    }
    if (c->sticky == 1 && !route_fits(nodes, c->route)) {
        return apr_psprintf(p, "MsmRoute: '%s' with the longest node id of "
                            "MsmNodes makes cookies over %d bytes; use "
                            "shorter names", c->route, MSM_COOKIE_MAX);
    }
    c->store.nodes = nodes;
    c->store.prefix = c->prefix ? c->prefix : "";
    c->scope = msm_nodes_scope(nodes, c->store.prefix);
    c->store.idle = (apr_uint32_t)(c->idle != MSM_UNSET ? c->idle
                                                        : MSM_DEFAULT_IDLE);
    c->store.backup = c->backup != MSM_UNSET ? c->backup : nodes->count > 1;
    c->store.backup_async = c->backup_async != MSM_UNSET ? c->backup_async : 1;
    c->store.route = c->sticky == 1 ? c->route : NULL;
    c->store.crypt = c->crypt;
    c->lock.expire = (apr_uint32_t)(c->lock_expire != MSM_UNSET
                                    ? c->lock_expire
                                    : MSM_DEFAULT_LOCK_EXPIRE);
    return NULL;
}

const char *msm_config_finalize(apr_pool_t *p, server_rec *s)
{
    apr_hash_t *seen = apr_hash_make(p);

    all_nodes = apr_array_make(p, 4, sizeof(msm_nodes_t *));
    for (; s; s = s->next) {
        msm_server_conf_t *c = ap_get_module_config(s->module_config,
                                                    &msm_module);
        const char *err;

        if (c->nodes == NULL) {
            continue;
        }
        if ((err = finalize_server(p, seen, c)) != NULL) {
            return s->is_virtual && s->defn_name
                ? apr_psprintf(p, "%s (in the <VirtualHost> of %s:%u)", err,
                               s->defn_name, s->defn_line_number)
                : err;
        }
    }
    return NULL;
}

apr_array_header_t *msm_config_all_nodes(void)
{
    return all_nodes;
}
