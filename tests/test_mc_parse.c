/* msm_mc_parse_reply: memcached text-protocol replies. */
#include "unit.h"
#include "msm_mc.h"

#include <apr_strings.h>

#define MAXV 1000

static const char *const kind_names[] = {
    "RETRIEVAL", "STORAGE", "DELETE", "TOUCH", "VERSION"
};

static apr_status_t parse_n(msm_mc_reply_kind_e kind, const char *key,
                            const char *buf, apr_size_t len, apr_size_t max,
                            msm_mc_reply_t *r, apr_size_t *consumed)
{
    return msm_mc_parse_reply(kind, key, buf, len, max, r, consumed);
}

static apr_status_t parse_s(msm_mc_reply_kind_e kind, const char *key,
                            const char *s, msm_mc_reply_t *r,
                            apr_size_t *consumed)
{
    return parse_n(kind, key, s, strlen(s), MAXV, r, consumed);
}

/* A whole reply: SUCCESS, the type, everything consumed, and every shorter
 * prefix is INCOMPLETE. */
static void check_reply(msm_mc_reply_kind_e kind, const char *key,
                        const char *s, apr_size_t len,
                        msm_mc_reply_type_e type, const char *data)
{
    msm_mc_reply_t r;
    apr_size_t consumed = 12345, i;
    apr_status_t rv;
    int incomplete = 0, other = 0;
    char *copy = malloc(len ? len : 1);

    rv = parse_n(kind, key, s, len, MAXV, &r, &consumed);
    CHECK_MSG(rv == APR_SUCCESS, "%s reply \"%.40s\": rv %d",
              kind_names[kind], s, rv);
    CHECK_MSG(r.type == type, "%s reply \"%.40s\": type %d, expected %d",
              kind_names[kind], s, (int)r.type, (int)type);
    CHECK_INT_EQ(consumed, len);
    if (data) {
        CHECK_MEM_EQ(r.data, r.len, data, strlen(data));
        CHECK(r.data >= s && r.data + r.len <= s + len);  /* points into buf */
    }
    /* every prefix, each in its own exactly-sized buffer (valgrind/ASan
     * see reads past the end) */
    for (i = 0; i < len; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, s, i);
        consumed = 999;
        rv = parse_n(kind, key, b, i, MAXV, &r, &consumed);
        if (rv == APR_INCOMPLETE && consumed == 0) {
            incomplete++;
        }
        else {
            other++;
            fprintf(stderr, "    prefix %lu of \"%.40s\": rv %d\n",
                    (unsigned long)i, s, rv);
        }
        free(b);
    }
    CHECK_INT_EQ(incomplete, len);
    CHECK_INT_EQ(other, 0);
    /* trailing bytes are not consumed */
    free(copy);
    copy = malloc(len + 5);
    memcpy(copy, s, len);
    memcpy(copy + len, "EXTRA", 5);
    consumed = 0;
    rv = parse_n(kind, key, copy, len + 5, MAXV, &r, &consumed);
    CHECK_STATUS(rv, APR_SUCCESS);
    CHECK_INT_EQ(consumed, len);
    free(copy);
}

static void check_reply_s(msm_mc_reply_kind_e kind, const char *key,
                          const char *s, msm_mc_reply_type_e type,
                          const char *data)
{
    check_reply(kind, key, s, strlen(s), type, data);
}

static void check_eproto_n(msm_mc_reply_kind_e kind, const char *key,
                           const char *s, apr_size_t len, apr_size_t max,
                           const char *what)
{
    msm_mc_reply_t r;
    apr_size_t consumed = 777;
    apr_status_t rv = parse_n(kind, key, s, len, max, &r, &consumed);

    CHECK_MSG(rv == MSM_MC_EPROTO, "%s (%s): rv %d, expected EPROTO",
              what, kind_names[kind], rv);
}

static void check_eproto(msm_mc_reply_kind_e kind, const char *key,
                         const char *s, const char *what)
{
    check_eproto_n(kind, key, s, strlen(s), MAXV, what);
}

static void test_status_replies(void)
{
    static const msm_mc_reply_kind_e all[] = {
        MSM_MC_REPLY_RETRIEVAL, MSM_MC_REPLY_STORAGE, MSM_MC_REPLY_DELETE,
        MSM_MC_REPLY_TOUCH, MSM_MC_REPLY_VERSION
    };
    apr_size_t i;

    check_reply_s(MSM_MC_REPLY_STORAGE, "k", "STORED\r\n", MSM_MC_R_STORED,
                  NULL);
    check_reply_s(MSM_MC_REPLY_STORAGE, "k", "NOT_STORED\r\n",
                  MSM_MC_R_NOT_STORED, NULL);
    check_reply_s(MSM_MC_REPLY_STORAGE, "k", "EXISTS\r\n", MSM_MC_R_EXISTS,
                  NULL);
    check_reply_s(MSM_MC_REPLY_STORAGE, "k", "NOT_FOUND\r\n",
                  MSM_MC_R_NOT_FOUND, NULL);
    check_reply_s(MSM_MC_REPLY_DELETE, "k", "DELETED\r\n", MSM_MC_R_DELETED,
                  NULL);
    check_reply_s(MSM_MC_REPLY_DELETE, "k", "NOT_FOUND\r\n",
                  MSM_MC_R_NOT_FOUND, NULL);
    check_reply_s(MSM_MC_REPLY_TOUCH, "k", "TOUCHED\r\n", MSM_MC_R_TOUCHED,
                  NULL);
    check_reply_s(MSM_MC_REPLY_TOUCH, "k", "NOT_FOUND\r\n",
                  MSM_MC_R_NOT_FOUND, NULL);
    check_reply_s(MSM_MC_REPLY_VERSION, NULL, "VERSION 1.6.18\r\n",
                  MSM_MC_R_VERSION, "1.6.18");
    check_reply_s(MSM_MC_REPLY_VERSION, NULL, "VERSION x\r\n",
                  MSM_MC_R_VERSION, "x");
    check_reply_s(MSM_MC_REPLY_RETRIEVAL, "k", "END\r\n", MSM_MC_R_END,
                  NULL);

    /* error replies are valid after any request */
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        check_reply_s(all[i], "k", "ERROR\r\n", MSM_MC_R_ERROR, "");
        check_reply_s(all[i], "k", "CLIENT_ERROR bad data chunk\r\n",
                      MSM_MC_R_CLIENT_ERROR, "bad data chunk");
        check_reply_s(all[i], "k",
                      "SERVER_ERROR out of memory storing object\r\n",
                      MSM_MC_R_SERVER_ERROR,
                      "out of memory storing object");
        check_reply_s(all[i], "k", "SERVER_ERROR\r\n", MSM_MC_R_SERVER_ERROR,
                      "");
        check_eproto(all[i], "k", "ERRORS\r\n", "ERRORS");
        check_eproto(all[i], "k", "CLIENT_ERRORx\r\n", "CLIENT_ERRORx");
        check_eproto(all[i], "k", "HELLO\r\n", "unknown word");
        check_eproto(all[i], "k", "\r\n", "empty line");
        check_eproto(all[i], "k", "\n", "bare LF alone");
        check_eproto(all[i], "k", "stored\r\n", "lowercase");
    }
}

static void test_value_replies(void)
{
    msm_mc_reply_t r;
    apr_size_t consumed;
    static const char with_cas[] =
        "VALUE app1:k-n1 4294967295 5 18446744073709551615\r\n"
        "hello\r\nEND\r\n";
    static const char no_cas[] = "VALUE k 17 5\r\nhello\r\nEND\r\n";
    static const char empty[] = "VALUE k 0 0 1\r\n\r\nEND\r\n";
    static const char tricky[] = "VALUE k 0 7 2\r\n\r\nEND\r\n\r\nEND\r\n";
    static const char binary[] = "VALUE k 1 6 3\r\na\0b\nc\r\r\nEND\r\n";
    char *big;
    apr_size_t blen;

    check_reply_s(MSM_MC_REPLY_RETRIEVAL, "app1:k-n1", with_cas,
                  MSM_MC_R_VALUE, "hello");
    CHECK_STATUS(parse_s(MSM_MC_REPLY_RETRIEVAL, "app1:k-n1", with_cas, &r,
                         &consumed), APR_SUCCESS);
    CHECK_INT_EQ(r.flags, 4294967295u);
    CHECK(r.cas == APR_UINT64_MAX);
    CHECK_INT_EQ(r.len, 5);

    check_reply_s(MSM_MC_REPLY_RETRIEVAL, "k", no_cas, MSM_MC_R_VALUE,
                  "hello");
    CHECK_STATUS(parse_s(MSM_MC_REPLY_RETRIEVAL, "k", no_cas, &r, &consumed),
                 APR_SUCCESS);
    CHECK_INT_EQ(r.flags, 17);
    CHECK(r.cas == 0);

    check_reply_s(MSM_MC_REPLY_RETRIEVAL, "k", empty, MSM_MC_R_VALUE, "");
    CHECK_STATUS(parse_s(MSM_MC_REPLY_RETRIEVAL, "k", empty, &r, &consumed),
                 APR_SUCCESS);
    CHECK_INT_EQ(r.len, 0);
    CHECK(r.cas == 1);

    /* data that looks like the end of a reply: bytes decide */
    check_reply_s(MSM_MC_REPLY_RETRIEVAL, "k", tricky, MSM_MC_R_VALUE,
                  "\r\nEND\r\n");
    /* NUL and LF in the data */
    check_reply(MSM_MC_REPLY_RETRIEVAL, "k", binary, sizeof(binary) - 1,
                MSM_MC_R_VALUE, NULL);
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", binary,
                         sizeof(binary) - 1, MAXV, &r, &consumed),
                 APR_SUCCESS);
    CHECK_MEM_EQ(r.data, r.len, "a\0b\nc\r", 6);
    CHECK(r.cas == 3 && r.flags == 1);

    /* exactly max_value is fine; one more is not */
    blen = 64 + MAXV;
    big = malloc(blen + 1);
    blen = (apr_size_t)apr_snprintf(big, blen, "VALUE k 0 %d\r\n", MAXV);
    memset(big + blen, 'v', MAXV);
    memcpy(big + blen + MAXV, "\r\nEND\r\n", 7);
    blen += MAXV + 7;
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", big, blen, MAXV, &r,
                         &consumed), APR_SUCCESS);
    CHECK_INT_EQ(r.len, MAXV);
    CHECK_INT_EQ(consumed, blen);
    /* and the whole prefix ladder of a value larger than a line */
    check_reply(MSM_MC_REPLY_RETRIEVAL, "k", big, blen, MSM_MC_R_VALUE, NULL);
    /* one more is too big to read, which is not a protocol error: the
     * node is fine (another server may have a larger MsmMaxSessionSize) */
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", big, blen, MAXV - 1,
                         &r, &consumed), MSM_MC_ETOOBIG);
    /* the header alone decides: no need to wait for the data */
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", big, 20, MAXV - 1, &r,
                         &consumed), MSM_MC_ETOOBIG);
    CHECK(!msm_mc_node_failed(MSM_MC_ETOOBIG));
    free(big);
}

static void test_protocol_errors(void)
{
    char line[2001];
    msm_mc_reply_t r;
    apr_size_t consumed;
    apr_status_t rv;

    /* a VALUE for another key */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE other 0 1\r\nx\r\nEND\r\n", "VALUE for another key");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k2 0 1\r\nx\r\nEND\r\n", "VALUE for a longer key");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k2",
                 "VALUE k 0 1\r\nx\r\nEND\r\n", "VALUE for a shorter key");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "abc",
                 "VALUE ABC 0 1\r\nx\r\nEND\r\n", "VALUE key case differs");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, NULL,
                 "VALUE k 0 1\r\nx\r\nEND\r\n", "VALUE with no key asked");
    /* flags */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 4294967296 1\r\nx\r\nEND\r\n", "flags 2^32");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 99999999999 1\r\nx\r\nEND\r\n", "flags 11 digits");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k -1 1\r\nx\r\nEND\r\n", "flags -1");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k +1 1\r\nx\r\nEND\r\n", "flags +1");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0x1 1\r\nx\r\nEND\r\n", "flags hex");
    /* bytes */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 -1\r\nx\r\nEND\r\n", "bytes -1");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 +1\r\nx\r\nEND\r\n", "bytes +1");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1a\r\nx\r\nEND\r\n", "bytes 1a");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 a\r\nx\r\nEND\r\n", "bytes a");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1.0\r\nx\r\nEND\r\n", "bytes 1.0");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 18446744073709551616\r\nx\r\nEND\r\n",
                 "bytes 2^64");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 184467440737095516150\r\nx\r\nEND\r\n",
                 "bytes 21 digits");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1073741825\r\n", "bytes over memcached's 1 GiB");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 9999999999\r\n", "bytes 9999999999");
    /* cas */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1 x\r\nx\r\nEND\r\n", "cas x");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1 18446744073709551616\r\nx\r\nEND\r\n",
                 "cas 2^64");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1 -5\r\nx\r\nEND\r\n", "cas -5");
    /* fields */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "VALUE k 0\r\n",
                 "VALUE without bytes");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "VALUE k\r\n",
                 "VALUE without flags");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1 2 3\r\nx\r\nEND\r\n", "VALUE with 6 fields");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k  0 1\r\nx\r\nEND\r\n", "double space");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE  k 0 1\r\nx\r\nEND\r\n", "double space after VALUE");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1 \r\nx\r\nEND\r\n", "trailing space");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 " VALUE k 0 1\r\nx\r\nEND\r\n", "leading space");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE\tk 0 1\r\nx\r\nEND\r\n", "tab");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUES k 0 1\r\nx\r\nEND\r\n", "VALUES");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "END \r\n", "END + space");
    /* the data is not followed by CRLF END CRLF */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhelloXXEND\r\n", "no CRLF after data");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhello\r\nBAD\r\n", "BAD for END");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhello\nEND\r\n\r\n", "LF after data");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhelloworld\r\nEND\r\n", "data > bytes");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhel\r\nEND\r\n\r\n", "data < bytes");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 5\r\nhello\r\nEND\n\r\n", "END LF");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k",
                 "VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\nx\r\nEND\r\n",
                 "two VALUEs");
    /* bare LF */
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "STORED\n", "STORED LF");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "END\n", "END LF");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "VALUE k 0 1\nx\r\nEND\r\n",
                 "VALUE LF");
    check_eproto(MSM_MC_REPLY_DELETE, "k", "DELETED\n\r\n", "DELETED LF");
    check_eproto(MSM_MC_REPLY_VERSION, NULL, "VERSION 1\n", "VERSION LF");
    /* status words with spaces */
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "STORED \r\n", "STORED space");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", " STORED\r\n", "space STORED");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "NOT  STORED\r\n", "NOT  STORED");
    check_eproto(MSM_MC_REPLY_VERSION, NULL, "VERSION\r\n", "VERSION alone");
    check_eproto(MSM_MC_REPLY_VERSION, NULL, "VERSIONS 1\r\n", "VERSIONS");
    /* a reply of the wrong kind */
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "STORED\r\n",
                 "STORED to a retrieval");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "NOT_FOUND\r\n",
                 "NOT_FOUND to a retrieval");
    check_eproto(MSM_MC_REPLY_RETRIEVAL, "k", "VERSION 1\r\n",
                 "VERSION to a retrieval");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "DELETED\r\n",
                 "DELETED to a storage");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "TOUCHED\r\n",
                 "TOUCHED to a storage");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "END\r\n", "END to a storage");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "VALUE k 0 1\r\nx\r\nEND\r\n",
                 "VALUE to a storage");
    check_eproto(MSM_MC_REPLY_STORAGE, "k", "VERSION 1\r\n",
                 "VERSION to a storage");
    check_eproto(MSM_MC_REPLY_DELETE, "k", "STORED\r\n",
                 "STORED to a delete");
    check_eproto(MSM_MC_REPLY_DELETE, "k", "TOUCHED\r\n",
                 "TOUCHED to a delete");
    check_eproto(MSM_MC_REPLY_DELETE, "k", "EXISTS\r\n",
                 "EXISTS to a delete");
    check_eproto(MSM_MC_REPLY_TOUCH, "k", "DELETED\r\n",
                 "DELETED to a touch");
    check_eproto(MSM_MC_REPLY_TOUCH, "k", "NOT_STORED\r\n",
                 "NOT_STORED to a touch");
    check_eproto(MSM_MC_REPLY_TOUCH, "k", "END\r\n", "END to a touch");
    check_eproto(MSM_MC_REPLY_VERSION, NULL, "STORED\r\n",
                 "STORED to a version");
    check_eproto(MSM_MC_REPLY_VERSION, NULL, "END\r\n", "END to a version");

    /* a 2000-byte line without newline: give up, do not wait for more */
    memset(line, 'A', sizeof(line));
    check_eproto_n(MSM_MC_REPLY_STORAGE, "k", line, 2000, MAXV,
                   "2000-byte line");
    check_eproto_n(MSM_MC_REPLY_RETRIEVAL, "k", line, 2000, MAXV,
                   "2000-byte line");
    memcpy(line, "VALUE k 0 1", 11);
    check_eproto_n(MSM_MC_REPLY_RETRIEVAL, "k", line, 2000, MAXV,
                   "2000-byte VALUE line");
    memcpy(line + 1998, "\r\n", 2);
    check_eproto_n(MSM_MC_REPLY_RETRIEVAL, "k", line, 2000, MAXV,
                   "2000-byte line with CRLF at the end");
    /* shorter than the line limit and no newline yet: wait */
    rv = parse_n(MSM_MC_REPLY_STORAGE, "k", line, 500, MAXV, &r, &consumed);
    CHECK_STATUS(rv, APR_INCOMPLETE);
}

/* parse_u64's overflow test computes (max - d) / 10 in unsigned
 * arithmetic: with max_value below 9 a one-digit byte count larger than
 * max_value wraps around and passes. */
static void test_small_max_value(void)
{
    msm_mc_reply_t r;
    apr_size_t consumed;
    static const char seven[] = "VALUE k 0 7\r\n1234567\r\nEND\r\n";
    static const char one[] = "VALUE k 0 1\r\nx\r\nEND\r\n";

    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", seven,
                         sizeof(seven) - 1, 7, &r, &consumed), APR_SUCCESS);
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", seven,
                         sizeof(seven) - 1, 10, &r, &consumed), APR_SUCCESS);
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", seven,
                         sizeof(seven) - 1, 5, &r, &consumed), MSM_MC_ETOOBIG);
    CHECK_STATUS(parse_n(MSM_MC_REPLY_RETRIEVAL, "k", one, sizeof(one) - 1, 0,
                         &r, &consumed), MSM_MC_ETOOBIG);
}

int main(void)
{
    unit_init("test_mc_parse");

    test_status_replies();
    test_value_replies();
    test_protocol_errors();
    test_small_max_value();
    return unit_done();
}
