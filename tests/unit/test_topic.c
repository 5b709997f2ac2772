/* topic: what a WebSocket client can subscribe to, and which events reach which topic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "topic.h"

static void test_named_topics(void **state) {
    (void)state;
    assert_int_equal(topic_parse("metrics"), TOPIC_METRICS);
    assert_int_equal(topic_parse("sources"), TOPIC_SOURCES);
    assert_int_equal(topic_parse("alerts"), TOPIC_ALERTS);
    assert_int_equal(topic_parse("events"), TOPIC_EVENTS);
}

static void test_valid_patterns(void **state) {
    (void)state;
    static const char *const good[] = {
        "telemetry.*", "tasks.created", "metrics.aggregation_*", "a.b", "x.y.z",
        "robot.?", "*.created", "a1_.b_2", "telemetry.cpu_usage", "0.1", "a?c.d*e",
        "source.online", "alert.firing",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (topic_parse(good[i]) != TOPIC_PATTERN) fail_msg("%s should be a pattern", good[i]);
    }
}

static void test_invalid_topics(void **state) {
    (void)state;
    static const char *const bad[] = {
        "", "*", "?", "telemetry", "metric", "Metrics", "METRICS", " metrics", "metrics ",
        ".x", "x.", ".", "..", "a..b", "Telemetry.*", "tasks.Created", "x.y-z", "tele metry.x",
        "a/b.c", "a.b\n", "a.b\t", "a.b,c", "t\xc3\xa9l\xc3\xa9.x", "a.[bc]", "a.b!", "a:b.c",
        "metrics,alerts",
    };
    assert_int_equal(topic_parse(NULL), TOPIC_INVALID);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (topic_parse(bad[i]) != TOPIC_INVALID) fail_msg("\"%s\" should be invalid", bad[i]);
    }
}

static void test_length_limit(void **state) {
    (void)state;
    char t[TOPIC_MAX_LEN + 2];
    /* exactly TOPIC_MAX_LEN bytes: "aaa...a.b" */
    memset(t, 'a', TOPIC_MAX_LEN);
    t[TOPIC_MAX_LEN - 2] = '.';
    t[TOPIC_MAX_LEN - 1] = 'b';
    t[TOPIC_MAX_LEN] = '\0';
    assert_int_equal(strlen(t), TOPIC_MAX_LEN);
    assert_int_equal(topic_parse(t), TOPIC_PATTERN);
    /* one more byte: too long */
    memset(t, 'a', TOPIC_MAX_LEN + 1);
    t[TOPIC_MAX_LEN - 1] = '.';
    t[TOPIC_MAX_LEN + 1] = '\0';
    assert_int_equal(strlen(t), TOPIC_MAX_LEN + 1);
    assert_int_equal(topic_parse(t), TOPIC_INVALID);
}

static bool m(const char *topic, const char *type) {
    return topic_matches_event(topic_parse(topic), topic, type);
}

static void test_matches_event(void **state) {
    (void)state;
    /* events: everything */
    assert_true(m("events", "tasks.created"));
    assert_true(m("events", "alert.firing"));
    assert_true(m("events", "telemetry.cpu"));
    /* alerts: alert.* only */
    assert_true(m("alerts", "alert.firing"));
    assert_true(m("alerts", "alert.resolved"));
    assert_false(m("alerts", "alerts.firing"));
    assert_false(m("alerts", "tasks.created"));
    assert_false(m("alerts", "alert"));
    /* metrics carries no events */
    assert_false(m("metrics", "metrics.aggregation_done"));
    assert_false(m("metrics", "tasks.created"));
    /* exact patterns */
    assert_true(m("tasks.created", "tasks.created"));
    assert_false(m("tasks.created", "tasks.created2"));
    assert_false(m("tasks.created", "tasks.create"));
    assert_false(m("tasks.created", "tasks.deleted"));
    /* globs */
    assert_true(m("telemetry.*", "telemetry.cpu"));
    assert_true(m("telemetry.*", "telemetry.cpu_usage"));
    assert_false(m("telemetry.*", "telemetryx.cpu"));
    assert_false(m("telemetry.*", "tasks.created"));
    assert_false(m("telemetry.*", "xtelemetry.cpu"));
    assert_true(m("metrics.aggregation_*", "metrics.aggregation_done"));
    assert_true(m("metrics.aggregation_*", "metrics.aggregation_"));
    assert_false(m("metrics.aggregation_*", "metrics.aggregate"));
    assert_true(m("robot.?", "robot.a"));
    assert_false(m("robot.?", "robot.ab"));
    assert_false(m("robot.?", "robot."));
    assert_true(m("*.created", "tasks.created"));
    assert_true(m("*.created", "jobs.created"));
    assert_false(m("*.created", "tasks.deleted"));
    /* matching is case-sensitive: event types are lowercase */
    assert_false(m("tasks.created", "Tasks.Created"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_topics),
        cmocka_unit_test(test_valid_patterns),
        cmocka_unit_test(test_invalid_topics),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_matches_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
