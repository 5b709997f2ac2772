/* jsonw: output is valid JSON (checked by parsing it back with jansson), escaping is
 * complete, numbers read back exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
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
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
