/* libmetricast WebSocket and HTTP pieces that need no socket: the handshake key and
 * Sec-WebSocket-Accept (RFC 6455's own example), the upgrade request, the judgement of
 * the server's answer, masked client frames, and the HTTP response reader (heads,
 * Content-Length, chunked, close-delimited, the malformed). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http_resp.h"
#include "jsonenc.h"
#include "sbuf.h"
#include "ws_proto.h"

static void test_key_and_accept(void **st) {
    (void)st;
    /* RFC 6455 section 1.3 and 4.2.2: "the sample nonce" */
    char key[MCL_WS_KEY_LEN + 1], acc[MCL_WS_ACCEPT_LEN + 1];
    metricast__ws_key((const uint8_t *)"the sample nonce", key);
    assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_int_equal(metricast__ws_accept(key, acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* another pair, computed independently (python: base64(sha1(key+GUID))) */
    assert_int_equal(metricast__ws_accept("x3JJHMbDL1EzLkh9GBhXDw==", acc), 0);
    assert_string_equal(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    char longkey[200];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(metricast__ws_accept(longkey, acc), -EINVAL);
}

static void test_request(void **st) {
    (void)st;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__ws_request(&b, "127.0.0.1:9750", "/ws?token=t", "dGhlIHNhbXBsZSBub25jZQ==", "t");
    assert_non_null(strstr(b.data, "GET /ws?token=t HTTP/1.1\r\n"));
    assert_non_null(strstr(b.data, "\r\nHost: 127.0.0.1:9750\r\n"));
    assert_non_null(strstr(b.data, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(b.data, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(b.data, "\r\nAuthorization: Bearer t\r\n"));
    assert_int_equal(memcmp(b.data + b.len - 4, "\r\n\r\n", 4), 0);
    metricast__sb_free(&b);
    metricast__ws_request(&b, "h", "/ws", "k", NULL);
    assert_null(strstr(b.data, "Authorization"));
    metricast__sb_free(&b);
}

static int head(const char *s, mcl_http_head_t *h) {
    return metricast__http_parse_head(s, strlen(s), h);
}

static void test_check_response(void **st) {
    (void)st;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    mcl_http_head_t h;
    char err[256];
    assert_int_equal(head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
                          "Connection: keep-alive, Upgrade\r\n"
                          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &h), 1);
    assert_int_equal(metricast__ws_check_response(&h, key, err, sizeof err), 0);
    head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", &h);
    assert_int_equal(metricast__ws_check_response(&h, key, err, sizeof err), -EPROTO);
    assert_non_null(strstr(err, "Accept"));
    head("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &h);
    assert_int_equal(metricast__ws_check_response(&h, key, err, sizeof err), -EPROTO);
    head("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", &h);
    assert_int_equal(metricast__ws_check_response(&h, key, err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "401"));
    head("HTTP/1.1 403 Forbidden\r\n\r\n", &h);
    assert_int_equal(metricast__ws_check_response(&h, key, err, sizeof err), -EPERM);
    head("HTTP/1.1 426 Upgrade Required\r\n\r\n", &h);
    assert_int_equal(metricast__ws_check_response(&h, key, NULL, 0), -EPROTO);
}

static void test_frames(void **st) {
    (void)st;
    /* RFC 6455 section 5.7: a masked "Hello" */
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t out[MCL_WS_MAX_HEADER + 70000];
    size_t n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, "Hello", 5, out);
    const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    /* 16-bit and 64-bit lengths; unmasking gives the payload back */
    static char payload[70000];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (char)('a' + i % 26);
    n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, payload, 300, out);
    assert_int_equal(n, 4 + 4 + 300);
    assert_int_equal(out[1], 0x80 | 126);
    assert_int_equal((out[2] << 8) | out[3], 300);
    for (size_t i = 0; i < 300; i++) assert_int_equal(out[8 + i] ^ mask[i & 3], (uint8_t)payload[i]);
    n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, payload, 70000, out);
    assert_int_equal(n, 2 + 8 + 4 + 70000);
    assert_int_equal(out[1], 0x80 | 127);
    uint64_t l = 0;
    for (int i = 0; i < 8; i++) l = (l << 8) | out[2 + i];
    assert_int_equal(l, 70000);
    assert_int_equal(out[14 + 69999] ^ mask[69999 & 3], (uint8_t)payload[69999]);
    /* 125 is the last one-byte length, 65535 the last 16-bit one */
    n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, payload, 125, out);
    assert_int_equal(out[1], 0x80 | 125);
    n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, payload, 65535, out);
    assert_int_equal(out[1], 0x80 | 126);
    n = metricast__ws_frame(MCL_WS_OP_PING, mask, "", 0, out);
    assert_int_equal(n, 6);
    assert_int_equal(out[0], 0x89);
}

static void test_http_heads(void **st) {
    (void)st;
    mcl_http_head_t h;
    const char *ok = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                     "content-length:  17 \r\nConnection: close\r\n\r\n{\"accepted\":1}xyz";
    assert_int_equal(head(ok, &h), 1);
    assert_int_equal(h.status, 202);
    assert_int_equal(h.content_length, 17);
    assert_int_equal(h.conn_close, 1);
    assert_string_equal(h.content_type, "application/json");
    assert_int_equal(h.head_len, strstr(ok, "{") - ok);
    /* incomplete: more bytes needed, at every cut */
    for (size_t cut = 0; cut < (size_t)(strstr(ok, "{") - ok); cut++)
        assert_int_equal(metricast__http_parse_head(ok, cut, &h), 0);
    /* HTTP/1.0, no reason phrase, chunked wins over a length */
    assert_int_equal(head("HTTP/1.0 200\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", &h), 1);
    assert_int_equal(h.minor, 0);
    assert_int_equal(h.chunked, 1);
    assert_int_equal(h.content_length, -1);
    const char *bad[] = {
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (head(bad[i], &h) != -EPROTO) fail_msg("accepted: %s", bad[i]);
    /* non-HTTP is judged from the first bytes already */
    assert_int_equal(metricast__http_parse_head("SSH", 3, &h), -EPROTO);
    /* a head that never ends */
    static char huge[MCL_HTTP_MAX_HEAD + 100];
    memcpy(huge, "HTTP/1.1 200 OK\r\n", 17);
    memset(huge + 17, 'a', sizeof huge - 17);
    assert_int_equal(metricast__http_parse_head(huge, sizeof huge, &h), -EPROTO);
    assert_int_equal(head("HTTP/1.1 204 No Content\r\n\r\n", &h), 1);
    assert_int_equal(metricast__http_has_body(&h, "GET"), 0);
    head("HTTP/1.1 200 OK\r\n\r\n", &h);
    assert_int_equal(metricast__http_has_body(&h, "HEAD"), 0);
    assert_int_equal(metricast__http_has_body(&h, "GET"), 1);
}

static int body(const char *resp, int eof, mcl_sbuf_t *out) {
    mcl_http_head_t h;
    assert_int_equal(head(resp, &h), 1);
    size_t len = strlen(resp);
    return metricast__http_body(&h, resp + h.head_len, len - h.head_len, eof, out);
}

static void test_http_bodies(void **st) {
    (void)st;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    assert_int_equal(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 0, &b), 0);
    assert_int_equal(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1, &b), -EPROTO);
    assert_int_equal(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!", 0, &b), 1);
    assert_string_equal(b.data, "hello");
    metricast__sb_free(&b);
    assert_int_equal(body("HTTP/1.1 200 OK\r\n\r\nuntil the end", 0, &b), 0);
    assert_int_equal(body("HTTP/1.1 200 OK\r\n\r\nuntil the end", 1, &b), 1);
    assert_string_equal(b.data, "until the end");
    metricast__sb_free(&b);
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    assert_int_equal(body(ch, 0, &b), 1);
    assert_string_equal(b.data, "hello, world");
    metricast__sb_free(&b);
    /* every cut of a chunked body is "more", never garbage */
    mcl_http_head_t h;
    head(ch, &h);
    size_t total = strlen(ch) - h.head_len;
    for (size_t cut = 0; cut < total; cut++) {
        assert_int_equal(metricast__http_body(&h, ch + h.head_len, cut, 0, &b), 0);
        assert_int_equal(b.len, 0);
    }
    assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1, &b), -EPROTO);
    assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, &b), -EPROTO);
    assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 0, &b), -EPROTO);
    assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 0, &b), -EPROTO);
    metricast__sb_free(&b);
}

static void test_json_strings(void **st) {
    (void)st;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    assert_int_equal(metricast__json_str(&b, "a\"b\\c\n\t\x01 \xc3\xa9 \xf0\x9f\x98\x80"), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001 \xc3\xa9 \xf0\x9f\x98\x80\"");
    size_t len = b.len;
    /* invalid UTF-8 is refused and leaves the buffer as it was */
    const char *bad[] = {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "a\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(metricast__json_str(&b, bad[i]), -EINVAL);
        assert_int_equal(b.len, len);
    }
    assert_int_equal(metricast__json_num(&b, 1.0 / 0.0), -EINVAL);
    metricast__sb_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_and_accept), cmocka_unit_test(test_request),
        cmocka_unit_test(test_check_response), cmocka_unit_test(test_frames),
        cmocka_unit_test(test_http_heads),     cmocka_unit_test(test_http_bodies),
        cmocka_unit_test(test_json_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
