/* jsonw: output is valid JSON (checked by parsing it back with jansson), escaping is
 * complete, numbers read back exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "jsonw.h"

static void test_nesting_and_commas(void **state) {
    (void)state;
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "metrics:update");
    jsonw_kv_int(&w, "seq", 42);
    jsonw_key(&w, "data");
    jsonw_obj_open(&w);
    jsonw_key(&w, "series");
    jsonw_arr_open(&w);
    jsonw_obj_open(&w);
    jsonw_kv_num(&w, "value", 45.2);
    jsonw_obj_close(&w);
    jsonw_obj_open(&w);
    jsonw_obj_close(&w);
    jsonw_arr_close(&w);
    jsonw_key(&w, "empty");
    jsonw_arr_open(&w);
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    jsonw_kv_bool(&w, "full", true);
    jsonw_key(&w, "n");
    jsonw_null(&w);
    jsonw_kv_str(&w, "nil", NULL);
    jsonw_obj_close(&w);
    assert_int_equal(jsonw_error(&w), 0);
    assert_string_equal(b.data, "{\"type\":\"metrics:update\",\"seq\":42,\"data\":{\"series\":"
                                "[{\"value\":45.2},{}],\"empty\":[]},\"full\":true,\"n\":null,"
                                "\"nil\":null}");
    buf_free(&b);
}

static void test_escaping_round_trips(void **state) {
    (void)state;
    const char in[] = "quote\" backslash\\ nl\n tab\t cr\r bell\x07 nul-free \x1f é ✓";
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_arr_open(&w);
    jsonw_str(&w, in);
    jsonw_arr_close(&w);
    json_error_t e;
    json_t *v = json_loads(b.data, 0, &e);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_array_get(v, 0)), in);
    json_decref(v);
    buf_free(&b);
}

/* Found by fuzz_http: an Origin header cut by "%.200s" inside a UTF-8 character was
 * echoed into a 403's detail, and the answer was not JSON any more (jansson refused it);
 * on a WebSocket the same text frame makes a browser drop the connection. Every byte that
 * is not part of a well-formed sequence becomes U+FFFD; well-formed text stays as it is. */
static void test_invalid_utf8_replaced(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xff", "\"\\ufffd\""},
        {"a\xc3", "\"a\\ufffd\""},                           /* cut at the end */
        {"\xc3(", "\"\\ufffd(\""},                           /* cut before ASCII */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                 /* overlong '/' */
        {"\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""},     /* overlong */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},     /* a surrogate */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* past U+10FFFF */
        {"\x80x", "\"\\ufffdx\""},                           /* a stray continuation */
        {"\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80\""}, /* é ✓ 😀 */
        {"\xef\xbf\xbd\xf4\x8f\xbf\xbf", "\"\xef\xbf\xbd\xf4\x8f\xbf\xbf\""}, /* U+FFFD, U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        assert_int_equal(jsonw_escape(&b, cases[i].in, strlen(cases[i].in)), 0);
        buf_putc(&b, '\0');
        assert_string_equal(b.data, cases[i].out);
        buf_free(&b);
    }
    /* the shape of the fuzzer's find: a long header value cut to 200 bytes mid-character */
    char origin[300], detail[400];
    memset(origin, 'a', 199);
    memcpy(origin + 199, "\xc3\xa9tail", 7); /* with its NUL */
    snprintf(detail, sizeof detail, "requests from origin %.200s are not allowed", origin);
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "detail", detail);
    jsonw_obj_close(&w);
    json_error_t e;
    json_t *v = json_loadb(b.data, b.len, 0, &e);
    assert_non_null(v);
    json_decref(v);
    buf_free(&b);
}

static void test_numbers(void **state) {
    (void)state;
    const double vals[] = {0, -0.5, 45.2, 1e-7, 123456789.125, 0.1 + 0.2, 1e300, -42, 3.0};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char out[32];
        jsonw_fmt_double(vals[i], out);
        assert_true(strtod(out, NULL) == vals[i]);
    }
    char out[32];
    jsonw_fmt_double(45.2, out);
    assert_string_equal(out, "45.2"); /* shortest form, not 45.200000000000003 */
    jsonw_fmt_double(3.0, out);
    assert_string_equal(out, "3");
    jsonw_fmt_double(NAN, out);
    assert_string_equal(out, "null");
    jsonw_fmt_double(INFINITY, out);
    assert_string_equal(out, "null");
}

static void test_depth_limit(void **state) {
    (void)state;
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    for (int i = 0; i < JSONW_MAX_DEPTH + 2; i++) jsonw_arr_open(&w);
    assert_int_not_equal(jsonw_error(&w), 0);
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesting_and_commas),
        cmocka_unit_test(test_escaping_round_trips),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
