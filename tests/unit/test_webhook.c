/* webhook: the retry policy (what is retried, backoff with cap and jitter) and the three
 * body styles, checked field by field. Real deliveries against a real HTTP receiver are in
 * tests/integration/test_alerts.py. */
#include <curl/curl.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "alert.h"
#include "series_key.h"
#include "webhook.h"

#define T0 1700000000.0

static void test_backoff(void **state) {
    (void)state;
    webhook_opts_t o = {.backoff_s = 1, .backoff_max_s = 10};
    /* u = 0: half the delay; u -> 1: all of it */
    assert_true(webhook_backoff(&o, 1, 0) == 0.5);
    assert_true(webhook_backoff(&o, 1, 0.999999) > 0.99);
    assert_true(webhook_backoff(&o, 2, 0) == 1);
    assert_true(webhook_backoff(&o, 3, 0) == 2);
    assert_true(webhook_backoff(&o, 4, 0) == 4);
    assert_true(webhook_backoff(&o, 5, 0) == 5);   /* 16 capped at 10 */
    assert_true(webhook_backoff(&o, 60, 0) == 5);  /* no overflow on many attempts */
    for (int a = 1; a < 20; a++)
        for (double u = 0; u < 1; u += 0.1) {
            double d = webhook_backoff(&o, a, u);
            assert_true(d >= 0.5 && d <= 10);
        }
}

static void test_retry_policy(void **state) {
    (void)state;
    assert_true(webhook_delivered(CURLE_OK, 200));
    assert_true(webhook_delivered(CURLE_OK, 204));
    assert_false(webhook_delivered(CURLE_OK, 302));
    assert_false(webhook_delivered(CURLE_OK, 500));
    assert_false(webhook_delivered(CURLE_COULDNT_CONNECT, 0));
    /* the receiver may come back */
    assert_true(webhook_retryable(CURLE_COULDNT_CONNECT, 0));
    assert_true(webhook_retryable(CURLE_OPERATION_TIMEDOUT, 0));
    assert_true(webhook_retryable(CURLE_GOT_NOTHING, 0));
    assert_true(webhook_retryable(CURLE_RECV_ERROR, 0));
    assert_true(webhook_retryable(CURLE_OK, 500));
    assert_true(webhook_retryable(CURLE_OK, 503));
    assert_true(webhook_retryable(CURLE_OK, 429));
    assert_true(webhook_retryable(CURLE_OK, 408));
    /* the same request can never succeed */
    assert_false(webhook_retryable(CURLE_OK, 400));
    assert_false(webhook_retryable(CURLE_OK, 404));
    assert_false(webhook_retryable(CURLE_OK, 301));
    assert_false(webhook_retryable(CURLE_URL_MALFORMAT, 0));
    assert_false(webhook_retryable(CURLE_UNSUPPORTED_PROTOCOL, 0));
}

typedef struct ctx {
    alert_rule_t *rule;
    series_key_t *key;
} ctx_t;

static ctx_t make(const char *severity, const char *summary) {
    char sev[32], sum[128], err[ALERT_ERR_LEN];
    snprintf(sev, sizeof sev, "%s", severity);
    const char *keys[8] = {"metric", "source", "op", "threshold", "severity", "webhook", "summary"};
    const char *vals[8] = {"cpu_usage", "robot_*", ">", "90", sev, "http://127.0.0.1:1/x", NULL};
    size_t n = 6;
    if (summary) {
        snprintf(sum, sizeof sum, "%s", summary);
        vals[6] = sum;
        n = 7;
    }
    ctx_t c;
    c.rule = alert_rule_parse("t.ini", "cpu_hot", keys, vals, n, err);
    if (!c.rule) fail_msg("%s", err);
    skey_label_t labels[2] = {{"env", "prod"}, {"source", "robot_7"}};
    c.key = skey_new("cpu_usage", labels, 2);
    assert_non_null(c.key);
    return c;
}

static void drop(ctx_t *c) {
    alert_rule_free(c->rule);
    skey_unref(c->key);
}

static json_t *body(alert_style_t style, const alert_note_t *n, const char *envelope) {
    webhook_alert_t a = {n, envelope, "http://127.0.0.1:9750"};
    buf_t b = BUF_INIT;
    const char *ct = NULL;
    assert_int_equal(webhook_body(style, &a, &b, &ct), 0);
    assert_string_equal(ct, "application/json");
    json_error_t je;
    json_t *v = json_loads(b.data, 0, &je);
    if (!v) fail_msg("not JSON (%s): %s", je.text, b.data);
    buf_free(&b);
    return v;
}

static const char *str(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) fail_msg("%s is not a string", k);
    return json_string_value(v);
}

static void test_json_body_is_the_envelope(void **state) {
    (void)state;
    ctx_t c = make("warning", NULL);
    alert_note_t n = {c.rule, c.key, "robot_7", true, 95.5, T0, T0, NULL};
    const char *env = "{\"id\":\"evt_alert_1_abcdef\",\"type\":\"alert.firing\",\"payload\":{}}";
    json_t *v = body(ALERT_STYLE_JSON, &n, env);
    assert_string_equal(str(v, "id"), "evt_alert_1_abcdef");
    assert_string_equal(str(v, "type"), "alert.firing");
    json_decref(v);
    drop(&c);
}

static void test_slack_body(void **state) {
    (void)state;
    ctx_t c = make("critical", "CPU <hot> & rising");
    alert_note_t n = {c.rule, c.key, "robot_7", true, 95.5, T0, T0 + 1, NULL};
    json_t *v = body(ALERT_STYLE_SLACK, &n, NULL);
    const char *text = str(v, "text");
    if (!strstr(text, "[FIRING] cpu_hot (critical)")) fail_msg("text: %s", text);
    /* mrkdwn escaping: the operator's > arrives as &gt; */
    if (!strstr(text, "= 95.5 &gt; 90")) fail_msg("text: %s", text);
    json_t *att = json_array_get(json_object_get(v, "attachments"), 0);
    assert_non_null(att);
    assert_string_equal(str(att, "color"), "#e01e5a");
    assert_string_equal(str(att, "text"), "CPU &lt;hot&gt; &amp; rising");
    assert_int_equal(json_integer_value(json_object_get(att, "ts")), (json_int_t)(T0 + 1));
    json_t *fields = json_object_get(att, "fields");
    bool saw_source = false;
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        if (strcmp(str(f, "title"), "Source") == 0) {
            assert_string_equal(str(f, "value"), "robot_7");
            saw_source = true;
        }
    }
    assert_true(saw_source);
    json_decref(v);

    n.firing = false;
    n.value = 40;
    n.reason = "cleared";
    v = body(ALERT_STYLE_SLACK, &n, NULL);
    text = str(v, "text");
    if (!strstr(text, "[RESOLVED] cpu_hot")) fail_msg("text: %s", text);
    assert_string_equal(str(json_array_get(json_object_get(v, "attachments"), 0), "color"), "#2eb67d");
    json_decref(v);
    drop(&c);
}

static void test_alertmanager_body(void **state) {
    (void)state;
    ctx_t c = make("error", NULL);
    alert_note_t n = {c.rule, c.key, "robot_7", true, 95.5, T0, T0, NULL};
    json_t *v = body(ALERT_STYLE_ALERTMANAGER, &n, NULL);
    assert_string_equal(str(v, "version"), "4");
    assert_string_equal(str(v, "status"), "firing");
    assert_string_equal(str(v, "receiver"), "metricast");
    assert_string_equal(str(v, "groupKey"), "{}:{alertname=\"cpu_hot\"}");
    assert_string_equal(str(v, "externalURL"), "http://127.0.0.1:9750");
    assert_int_equal(json_integer_value(json_object_get(v, "truncatedAlerts")), 0);
    assert_string_equal(str(json_object_get(v, "groupLabels"), "alertname"), "cpu_hot");
    json_t *alerts = json_object_get(v, "alerts");
    assert_int_equal(json_array_size(alerts), 1);
    json_t *a = json_array_get(alerts, 0);
    assert_string_equal(str(a, "status"), "firing");
    json_t *l = json_object_get(a, "labels");
    assert_string_equal(str(l, "alertname"), "cpu_hot");
    assert_string_equal(str(l, "severity"), "error");
    assert_string_equal(str(l, "source"), "robot_7");
    assert_string_equal(str(l, "env"), "prod");
    assert_string_equal(str(l, "metric"), "cpu_usage");
    assert_true(json_equal(l, json_object_get(v, "commonLabels")));
    json_t *an = json_object_get(a, "annotations");
    assert_string_equal(str(an, "value"), "95.5");
    assert_string_equal(str(an, "threshold"), "90");
    assert_string_equal(str(an, "description"), "cpu_usage{env=\"prod\",source=\"robot_7\"} = 95.5 > 90");
    assert_string_equal(str(an, "summary"), str(an, "description")); /* no summary configured */
    assert_string_equal(str(a, "startsAt"), "2023-11-14T22:13:20.000Z");
    assert_string_equal(str(a, "endsAt"), "0001-01-01T00:00:00Z");
    assert_string_equal(str(a, "generatorURL"), "http://127.0.0.1:9750/api/v1/alerts");
    const char *fp = str(a, "fingerprint");
    assert_int_equal(strlen(fp), 16);
    assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
    char fp_firing[17];
    snprintf(fp_firing, sizeof fp_firing, "%s", fp);
    json_decref(v);

    n.firing = false;
    n.at = T0 + 90;
    n.reason = "cleared";
    v = body(ALERT_STYLE_ALERTMANAGER, &n, NULL);
    assert_string_equal(str(v, "status"), "resolved");
    a = json_array_get(json_object_get(v, "alerts"), 0);
    assert_string_equal(str(a, "status"), "resolved");
    assert_string_equal(str(a, "startsAt"), "2023-11-14T22:13:20.000Z");
    assert_string_equal(str(a, "endsAt"), "2023-11-14T22:14:50.000Z");
    assert_string_equal(str(a, "fingerprint"), fp_firing); /* same alert, same fingerprint */
    json_decref(v);
    drop(&c);
}

/* A delivery to a port nobody listens on: refused, retried, then failed; the thread and
 * its counters work without any receiver, and closing does not hang. */
static void test_refused_delivery_is_retried_then_failed(void **state) {
    (void)state;
    webhook_opts_t o = {.timeout_s = 2, .retries = 2, .backoff_s = 0.01, .backoff_max_s = 0.02,
                        .queue_cap = 2, .user_agent = "test"};
    webhook_t *w;
    char err[160];
    assert_int_equal(webhook_open(&w, &o, err, sizeof err), 0);
    assert_int_equal(webhook_post(w, "http://127.0.0.1:1/x", "application/json", "{}", 2, "a"), 0);
    assert_int_equal(webhook_post(w, "http://127.0.0.1:1/x", "application/json", "{}", 2, "b"), 0);
    /* the queue holds two: a third is dropped and counted */
    assert_int_equal(webhook_post(w, "http://127.0.0.1:1/x", "application/json", "{}", 2, "c"), -ENOBUFS);
    webhook_counts_t c;
    for (int i = 0; i < 1000; i++) { /* bounded: 10 s */
        webhook_counts(w, &c);
        if (c.failed == 2) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(c.failed, 2);
    assert_int_equal(c.retried, 4);
    assert_int_equal(c.sent, 0);
    assert_int_equal(c.dropped, 1);
    assert_int_equal(c.pending, 0);
    webhook_close(w);
}

/* More deliveries than transfer slots, to a listener that never accepts: the kernel
 * completes the handshakes, nobody answers, every attempt times out. The excess waits for
 * a free slot without spinning (CPU time stays far below the wall time), and all fail. */
static void test_silent_receiver_and_transfer_slots(void **state) {
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 128), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", ntohs(a.sin_port));

    webhook_opts_t o = {.timeout_s = 0.3, .retries = 0, .backoff_s = 0.01, .backoff_max_s = 0.01,
                        .queue_cap = 100, .user_agent = "test"};
    webhook_t *w;
    char err[160];
    assert_int_equal(webhook_open(&w, &o, err, sizeof err), 0);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    int n = WEBHOOK_MAX_IN_FLIGHT + 8;
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        assert_int_equal(webhook_post(w, url, "application/json", "{}", 2, id), 0);
    }
    webhook_counts_t c;
    for (int i = 0; i < 1500; i++) { /* bounded: 15 s */
        webhook_counts(w, &c);
        if (c.failed == (uint64_t)n) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    getrusage(RUSAGE_SELF, &r1);
    assert_int_equal(c.failed, n);
    assert_int_equal(c.sent, 0);
    assert_int_equal(c.pending, 0);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
                          r0.ru_stime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
                          r0.ru_stime.tv_usec) / 1e6;
    /* two waves of 0.3 s timeouts: a spinning thread would burn all of that and more */
    if (cpu > 0.4) fail_msg("webhook thread used %.2f s CPU while waiting", cpu);
    webhook_close(w);
    close(lfd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_json_body_is_the_envelope),
        cmocka_unit_test(test_slack_body),
        cmocka_unit_test(test_alertmanager_body),
        cmocka_unit_test(test_refused_delivery_is_retried_then_failed),
        cmocka_unit_test(test_silent_receiver_and_transfer_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
