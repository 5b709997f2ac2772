/* libFuzzer target for what libmetricast parses from the network or the user: HTTP
 * response heads and bodies (Content-Length, chunked, close-delimited, at every eof
 * state), URLs and the request targets made from them, checked against the headers'
 * contracts. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_resp.h"
#include "sbuf.h"
#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_response(const char *buf, size_t len) {
    mcl_http_head_t h;
    int rc = metricast__http_parse_head(buf, len, &h);
    assert(rc == 1 || rc == 0 || rc < 0);
    if (rc != 1) return;
    assert(h.head_len >= 16 && h.head_len <= len && h.head_len <= MCL_HTTP_MAX_HEAD);
    assert(memcmp(buf + h.head_len - 4, "\r\n\r\n", 4) == 0);
    assert(h.status >= 100 && h.status <= 999);
    assert(!h.chunked || h.content_length == -1);
    assert(strlen(h.content_type) < sizeof h.content_type);
    const char *body = buf + h.head_len;
    size_t blen = len - h.head_len;
    for (int eof = 0; eof <= 1; eof++) {
        mcl_sbuf_t out = MCL_SBUF_INIT;
        int b = metricast__http_body(&h, body, blen, eof, &out);
        assert(b == 1 || b == 0 || b < 0);
        if (b == 1) assert(out.len <= blen);
        else assert(out.len == 0);
        if (eof && !h.chunked && h.content_length < 0) assert(b == 1 && out.len == blen);
        metricast__sb_free(&out);
    }
}

static void check_url(const char *s) {
    mcl_url_t u;
    char err[256];
    int rc = metricast__url_parse(s, &u, err, sizeof err);
    if (rc < 0) {
        assert(strlen(err) > 0);
        return;
    }
    assert(u.host[0] && u.port > 0);
    assert(u.path[0] == '\0' || u.path[0] == '/');
    mcl_sbuf_t t = MCL_SBUF_INIT;
    metricast__url_target(&u, "/api/v1/metrics", &t);
    metricast__url_ws_target(&u, "tok en", &t);
    assert(t.err == 0 && t.data);
    for (size_t i = 0; i < t.len; i++)
        assert((unsigned char)t.data[i] > 0x20 && (unsigned char)t.data[i] < 0x7f);
    metricast__sb_free(&t);
    char hp[300];
    metricast__url_hostport(&u, hp, sizeof hp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    check_response(buf, size);
    check_url(buf);
    free(buf);
    return 0;
}
