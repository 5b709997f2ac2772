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
    in.max_drop_ratio = 0.01;
    in.critical_alerts_check = true;
    in.accepted_1m = 1000;
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

static json_t *failing_of(const health_input_t *in, health_result_t *res) {
    json_t *v = verdict_json(in, res);
    json_t *f = json_incref(json_object_get(v, "failing"));
    json_decref(v);
    return f; /* NULL when healthy */
}

/* Drops over the last minute against the limit: at it passes, above fails, 1 never. */
static void test_ingest_drops(void **state) {
    (void)state;
    health_input_t in = good();
    health_result_t res;
    in.drops_1m = 10, in.accepted_1m = 990; /* exactly 1 % */
    json_t *f = failing_of(&in, &res);
    assert_null(f);
    in.drops_1m = 11;
    f = failing_of(&in, &res);
    assert_int_equal(json_array_size(f), 1);
    assert_string_equal(json_string_value(json_array_get(f, 0)), "ingest_drops");
    json_decref(f);
    json_t *v = verdict_json(&in, &res);
    json_t *c = json_object_get(json_object_get(v, "checks"), "ingest_drops");
    assert_int_equal(json_integer_value(json_object_get(c, "dropped")), 11);
    assert_int_equal(json_integer_value(json_object_get(c, "offered")), 1001);
    json_decref(v);
    in.max_drop_ratio = 1;
    in.drops_1m = 1000, in.accepted_1m = 0; /* everything dropped, but the check is off */
    assert_null(failing_of(&in, &res));
    in = good();
    in.accepted_1m = 0; /* nothing offered: nothing to judge */
    assert_null(failing_of(&in, &res));
}

/* One failing entry per firing critical rule, named alert:<rule>; none when turned off. */
static void test_critical_alerts(void **state) {
    (void)state;
    health_input_t in = good();
    health_result_t res;
    in.nalerts = 2;
    snprintf(in.alerts[0].rule, sizeof in.alerts[0].rule, "disk_full");
    in.alerts[0].firing = 3;
    snprintf(in.alerts[0].detail, sizeof in.alerts[0].detail, "disk source=a = 0.99 >= 0.95");
    snprintf(in.alerts[1].rule, sizeof in.alerts[1].rule, "down");
    in.alerts[1].firing = 1;
    json_t *f = failing_of(&in, &res);
    assert_int_equal(json_array_size(f), 2);
    assert_string_equal(json_string_value(json_array_get(f, 0)), "alert:disk_full");
    assert_string_equal(json_string_value(json_array_get(f, 1)), "alert:down");
    json_decref(f);
    json_t *v = verdict_json(&in, &res);
    const char *d = json_string_value(json_object_get(
        json_object_get(json_object_get(v, "checks"), "alert:disk_full"), "detail"));
    assert_non_null(strstr(d, "(3)"));
    assert_non_null(strstr(d, "source=a"));
    json_decref(v);
    in.critical_alerts_check = false;
    assert_null(failing_of(&in, &res));

    /* the most the verdict names, with the rest summed up in the last entry */
    in = good();
    in.nalerts = HEALTH_MAX_ALERTS;
    in.alerts_more = 5;
    for (int i = 0; i < HEALTH_MAX_ALERTS; i++) {
        snprintf(in.alerts[i].rule, sizeof in.alerts[i].rule, "r%d", i);
        in.alerts[i].firing = 1;
    }
    in.max_loop_lag_s = 9; /* plus every other check failing */
    in.data_dir_ok = false;
    in.store_ok = false;
    in.drops_1m = 999;
    f = failing_of(&in, &res);
    assert_int_equal(json_array_size(f), 4 + HEALTH_MAX_ALERTS);
    json_decref(f);
    assert_non_null(strstr(res.checks[res.n - 1].detail, "and 5 more critical rules firing"));
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
        cmocka_unit_test(test_ingest_drops),
        cmocka_unit_test(test_critical_alerts),
        cmocka_unit_test(test_probe_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
