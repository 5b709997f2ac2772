/* http helpers: percent-decoding, query parameters, header tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http.h"

static void test_percent_decode(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(http_percent_decode("/a%20b", 6, out, false), 4);
    assert_string_equal(out, "/a b");
    assert_int_equal(http_percent_decode("a+b", 3, out, false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(http_percent_decode("a+b", 3, out, true), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(http_percent_decode("%41%6a", 6, out, false), 2);
    assert_string_equal(out, "Aj");
    assert_true(http_percent_decode("%", 1, out, false) < 0);
    assert_true(http_percent_decode("%4", 2, out, false) < 0);
    assert_true(http_percent_decode("%zz", 3, out, false) < 0);
    assert_true(http_percent_decode("%00", 3, out, false) < 0); /* no NUL smuggling */
}

static void test_query_param(void **state) {
    (void)state;
    char out[64];
    const char *q = "topics=metrics,events&source=robot%5F001&flag&match=cpu_*&e=";
    assert_int_equal(http_query_param(q, "topics", out, sizeof out), 1);
    assert_string_equal(out, "metrics,events");
    assert_int_equal(http_query_param(q, "source", out, sizeof out), 1);
    assert_string_equal(out, "robot_001");
    assert_int_equal(http_query_param(q, "flag", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param(q, "e", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param(q, "match", out, sizeof out), 1);
    assert_string_equal(out, "cpu_*");
    assert_int_equal(http_query_param(q, "sourc", out, sizeof out), 0);
    assert_int_equal(http_query_param("", "x", out, sizeof out), 0);
    assert_int_equal(http_query_param("x=12345", "x", out, 3), -1); /* does not fit */
    assert_int_equal(http_query_param("x=%zz", "x", out, sizeof out), -1); /* bad escape */
}

static void test_header_tokens(void **state) {
    (void)state;
    assert_true(http_header_has_token("Upgrade", "upgrade"));
    assert_true(http_header_has_token("keep-alive, Upgrade", "upgrade"));
    assert_true(http_header_has_token(" websocket ", "websocket"));
    assert_false(http_header_has_token("upgraded", "upgrade"));
    assert_false(http_header_has_token("", "upgrade"));
    assert_false(http_header_has_token(NULL, "upgrade"));
}

static void test_status_text(void **state) {
    (void)state;
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(405), "Method Not Allowed");
    assert_string_equal(http_status_text(799), "Unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_header_tokens),
        cmocka_unit_test(test_status_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
