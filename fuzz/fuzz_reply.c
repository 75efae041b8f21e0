/* libFuzzer target: the memcached reply parser. The first byte picks the
 * reply kind; the rest is what the server sent. Besides crashes it checks
 * the parser's contract: a complete reply is never longer than the input,
 * every shorter prefix of it is "incomplete", a value lies inside the input
 * and is never larger than max_value. */
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>

#include "msm_mc.h"

#define MAX_VALUE 4096

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    msm_mc_reply_t reply;
    apr_size_t consumed, cut;
    msm_mc_reply_kind_e kind;
    apr_status_t rv;
    const char *buf;

    if (size < 1) {
        return 0;
    }
    kind = (msm_mc_reply_kind_e)(data[0] % (MSM_MC_REPLY_META_DELETE + 1));
    buf = (const char *)data + 1;
    size--;
    rv = msm_mc_parse_reply(kind, "k1", buf, size, MAX_VALUE, &reply,
                            &consumed);
    if (rv != APR_SUCCESS) {
        return 0;
    }
    if (consumed == 0 || consumed > size) {
        abort();
    }
    if (reply.type == MSM_MC_R_VALUE
        && (reply.len > MAX_VALUE || reply.data < buf
            || reply.data + reply.len > buf + consumed)) {
        abort();
    }
    /* Fed in pieces, the same bytes must not complete any earlier. */
    for (cut = 0; cut < consumed; cut += 1 + cut / 4) {
        msm_mc_reply_t partial;
        apr_size_t c;
        if (msm_mc_parse_reply(kind, "k1", buf, cut, MAX_VALUE, &partial, &c)
            == APR_SUCCESS) {
            abort();
        }
    }
    return 0;
}
