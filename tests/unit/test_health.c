/* health: the verdict is a pure function of the snapshot; the JSON carries failing[]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>

#include "health.h"

static health_input_t good(void) {
    health_input_t in = {0};
    in.max_loop_lag_s = 0.002;
    in.worst_loop = 0;
    in.max_loop_lag_limit_s = 0.5;
    in.data_dir_ok = true;
    in.store_ok = true;
    in.data_dir = "/tmp/x";
    in.version = "test";
    return in;
}

static json_t *verdict_json(const health_input_t *in, health_result_t *res) {
    health_eval(in, res);
    buf_t b = BUF_INIT;
    assert_int_equal(health_json(in, res, &b), 0);
    json_error_t e;
    json_t *v = json_loads(b.data, 0, &e);
    buf_free(&b);
    assert_non_null(v);
    return v;
}

static void test_healthy(void **state) {
    (void)state;
    health_input_t in = good();
    health_result_t res;
    json_t *v = verdict_json(&in, &res);
    assert_true(res.healthy);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "healthy");
    assert_null(json_object_get(v, "failing"));
    assert_true(json_is_true(json_object_get(json_object_get(json_object_get(v, "checks"),
                                                             "data_dir"), "ok")));
    json_decref(v);
}

static void test_each_check_fails_alone(void **state) {
    (void)state;
    health_input_t in = good();
    in.max_loop_lag_s = 0.75;
    health_result_t res;
    json_t *v = verdict_json(&in, &res);
    assert_false(res.healthy);
    json_t *failing = json_object_get(v, "failing");
    assert_int_equal(json_array_size(failing), 1);
    assert_string_equal(json_string_value(json_array_get(failing, 0)), "loop_lag");
    json_decref(v);

    in = good();
    in.data_dir_ok = false;
    in.data_dir_errno = ENOENT;
    v = verdict_json(&in, &res);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "unhealthy");
    failing = json_object_get(v, "failing");
    assert_int_equal(json_array_size(failing), 1);
    assert_string_equal(json_string_value(json_array_get(failing, 0)), "data_dir");
    json_decref(v);
}

static void test_probe_dir(void **state) {
    (void)state;
    char dir[] = "/tmp/mc-health-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128];
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    assert_int_equal(health_mkdirs(sub), 0);
    assert_int_equal(health_probe_dir(sub), 0);
    char file[160];
    snprintf(file, sizeof file, "%s/a/b/c/.metricast-probe", dir);
    assert_int_equal(access(file, F_OK), 0);
    /* a path through a regular file is not a directory */
    snprintf(sub, sizeof sub, "%s/a/b/c/.metricast-probe/x", dir);
    assert_int_equal(health_mkdirs(sub), -ENOTDIR);
    snprintf(sub, sizeof sub, "%s/a/b/c/.metricast-probe", dir);
    assert_int_equal(health_mkdirs(sub), -ENOTDIR);
    /* a vanished directory fails the probe */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(sub, sizeof sub, "%s/a", dir);
    assert_int_equal(health_probe_dir(sub), -ENOENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy),
        cmocka_unit_test(test_each_check_fails_alone),
        cmocka_unit_test(test_probe_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
