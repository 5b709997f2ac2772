/* ws: the handshake key from RFC 6455 section 1.3, frame headers at each length form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ws.h"

static void test_accept_key_rfc_example(void **state) {
    (void)state;
    char out[WS_ACCEPT_LEN];
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_key_rejects_bad_keys(void **state) {
    (void)state;
    char out[WS_ACCEPT_LEN];
    assert_int_not_equal(ws_accept_key(NULL, out), 0);
    assert_int_not_equal(ws_accept_key("", out), 0);
    assert_int_not_equal(ws_accept_key("short==", out), 0);
    assert_int_not_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", out), 0);   /* no padding */
    assert_int_not_equal(ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", out), 0); /* bad char */
    assert_int_not_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZXg=", out), 0); /* 17 bytes */
}

static void test_frame_header_lengths(void **state) {
    (void)state;
    uint8_t h[10];
    assert_int_equal(ws_frame_header(h, 1, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(ws_frame_header(h, 1, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(ws_frame_header(h, 1, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(ws_frame_header(h, 1, 65535), 4);
    assert_int_equal(h[2], 0xff);
    assert_int_equal(h[3], 0xff);
    assert_int_equal(ws_frame_header(h, 2, 65536), 10);
    assert_int_equal(h[0], 0x82);
    assert_int_equal(h[1], 127);
    const uint8_t want[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    assert_memory_equal(h + 2, want, 8);
}

static void test_frame_text_is_shareable(void **state) {
    (void)state;
    frame_t *f = ws_frame_text("hello", 5, FRAME_DROPPABLE);
    assert_non_null(f);
    assert_int_equal(f->len, 7);
    assert_memory_equal(f->data, "\x81\x05hello", 7);
    frame_t *g = frame_ref(f);
    assert_ptr_equal(f, g);
    frame_unref(f);
    frame_unref(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc_example),
        cmocka_unit_test(test_accept_key_rejects_bad_keys),
        cmocka_unit_test(test_frame_header_lengths),
        cmocka_unit_test(test_frame_text_is_shareable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
