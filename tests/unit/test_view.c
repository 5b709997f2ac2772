/* view: the JSON shapes of /api/v1/metrics, /api/v1/series/{name} and /api/v1/summary,
 * parsed back with jansson; the match/source glob filter. */
#include <errno.h>
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

#include "agg.h"
#include "buf.h"
#include "jsonw.h"
#include "registry.h"
#include "selfstats.h"
#include "series_key.h"
#include "statsd.h"
#include "view.h"

#define T0 1700000000u /* 2023-11-14T22:13:20Z */

static void feed_at(registry_t *r, double now, const char *const *lines) {
    agg_t a;
    agg_init(&a, 0);
    for (; *lines; lines++) {
        statsd_line_t l;
        assert_int_equal(statsd_parse_line(*lines, strlen(*lines), &l), STATSD_OK);
        assert_int_equal(agg_add(&a, &l), STATSD_OK);
    }
    int err;
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
    registry_result_t res = {0};
    registry_apply(r, b, now, &res);
    for (int i = 0; i < REJECT_REASON_COUNT; i++) assert_int_equal(res.rejected[i], 0);
    agg_batch_free(b);
    agg_free(&a);
}

#define FEED(r, now, ...) feed_at((r), (now), (const char *const[]){__VA_ARGS__, NULL})

static series_t *find(const registry_t *r, const char *name, const char *lk, const char *lv) {
    skey_label_t l = {lk, lv};
    series_key_t *k = skey_new(name, &l, lk ? 1 : 0);
    series_t *s = registry_find(r, k);
    skey_unref(k);
    assert_non_null(s);
    return s;
}

static json_t *parse(const buf_t *b) {
    json_error_t e;
    assert_non_null(b->data);
    json_t *j = json_loadb(b->data, b->len, 0, &e);
    if (!j) fail_msg("not JSON (%s): %s", e.text, b->data);
    return j;
}

static json_t *series_json(const series_t *s) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    view_series_json(&w, s);
    assert_int_equal(jsonw_error(&w), 0);
    json_t *j = parse(&b);
    buf_free(&b);
    return j;
}

static double num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) fail_msg("%s is not a number", k);
    return json_number_value(v);
}

static const char *str(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) fail_msg("%s is not a string", k);
    return json_string_value(v);
}

/* counter c{source=r1}, gauge g{source=r2}, gauge g (no source), timer t{source=r1},
 * set u; three rolls. */
static void build(registry_t *r) {
    registry_init(r, 0, 0);
    FEED(r, T0 + 0.5, "c:3|c|#source:robot_1", "g:1|g|#source:robot_2", "g:7|g",
         "t:10:20:30|ms|#source:robot_1", "u:a|s", "u:b|s", "http.reqs:1|c|#source:web");
    registry_roll(r, T0 + 1);
    FEED(r, T0 + 1.5, "c:2|c|#source:robot_1", "g:2|g|#source:robot_2");
    registry_roll(r, T0 + 2);
    FEED(r, T0 + 2.5, "g:3|g|#source:robot_2", "t:40|ms|#source:robot_1");
    registry_roll(r, T0 + 3);
}

static void test_filter(void **state) {
    (void)state;
    registry_t r;
    build(&r);
    series_t *c = find(&r, "c", "source", "robot_1");
    series_t *g = find(&r, "g", NULL, NULL);
    series_t *h = find(&r, "http_reqs", "source", "web");
    view_filter_t any = {NULL, NULL}, empty = {"", ""};
    assert_true(view_filter_match(&any, c));
    assert_true(view_filter_match(&any, g));
    assert_true(view_filter_match(&empty, g));
    view_filter_t f = {"c", NULL};
    assert_true(view_filter_match(&f, c));
    assert_false(view_filter_match(&f, g));
    f = (view_filter_t){"http_*", NULL};
    assert_true(view_filter_match(&f, h));
    assert_false(view_filter_match(&f, c));
    f = (view_filter_t){"http.*", NULL}; /* globs see the sanitised name */
    assert_false(view_filter_match(&f, h));
    f = (view_filter_t){"[cg]", NULL};
    assert_true(view_filter_match(&f, c));
    assert_true(view_filter_match(&f, g));
    f = (view_filter_t){"?", NULL};
    assert_true(view_filter_match(&f, c));
    assert_false(view_filter_match(&f, h));
    f = (view_filter_t){NULL, "robot_*"};
    assert_true(view_filter_match(&f, c));
    assert_false(view_filter_match(&f, h));
    assert_false(view_filter_match(&f, g)); /* no source label: never matches a source glob */
    f = (view_filter_t){NULL, "*"};
    assert_false(view_filter_match(&f, g));
    assert_true(view_filter_match(&f, h));
    f = (view_filter_t){"c", "robot_2"};
    assert_false(view_filter_match(&f, c));
    f = (view_filter_t){"c", "robot_[0-9]"};
    assert_true(view_filter_match(&f, c));
    registry_free(&r);
}

static void test_series_json_per_kind(void **state) {
    (void)state;
    registry_t r;
    build(&r);

    json_t *j = series_json(find(&r, "c", "source", "robot_1"));
    assert_string_equal(str(j, "name"), "c");
    assert_string_equal(str(j, "kind"), "counter");
    assert_true(num(j, "value") == 5);
    assert_true(num(j, "rate") == 0); /* idle in the last interval */
    assert_string_equal(str(json_object_get(j, "labels"), "source"), "robot_1");
    assert_int_equal(json_object_size(json_object_get(j, "labels")), 1);
    assert_string_equal(str(j, "updated_at"), "2023-11-14T22:13:21.500Z");
    assert_null(json_object_get(j, "count"));
    assert_int_equal(json_object_size(j), 7); /* ... and trend */
    json_t *tr = json_object_get(j, "trend");
    assert_true(json_is_object(tr));
    assert_string_equal(str(tr, "direction"), "stable");
    assert_true(json_is_null(json_object_get(tr, "hour"))); /* no rollups an hour old */
    assert_true(json_is_null(json_object_get(tr, "day")));
    assert_true(json_is_null(json_object_get(tr, "week")));
    json_decref(j);

    j = series_json(find(&r, "g", "source", "robot_2"));
    assert_string_equal(str(j, "kind"), "gauge");
    assert_true(num(j, "value") == 3);
    assert_null(json_object_get(j, "rate"));
    assert_string_equal(str(j, "updated_at"), "2023-11-14T22:13:22.500Z");
    assert_int_equal(json_object_size(j), 6);
    json_decref(j);

    j = series_json(find(&r, "g", NULL, NULL));
    assert_true(json_is_object(json_object_get(j, "labels")));
    assert_int_equal(json_object_size(json_object_get(j, "labels")), 0);
    json_decref(j);

    j = series_json(find(&r, "t", "source", "robot_1"));
    assert_string_equal(str(j, "kind"), "timer");
    assert_true(num(j, "value") == 40); /* the mean of the last interval with samples */
    assert_true(num(j, "count") == 1 && num(j, "sum") == 40);
    assert_true(num(j, "min") == 40 && num(j, "max") == 40);
    assert_true(fabs(num(j, "p50") - 40) <= 0.4);
    assert_true(fabs(num(j, "p90") - 40) <= 0.4);
    assert_true(fabs(num(j, "p99") - 40) <= 0.4);
    assert_null(json_object_get(j, "rate"));
    assert_int_equal(json_object_size(j), 13); /* with trend */
    json_decref(j);

    j = series_json(find(&r, "u", NULL, NULL));
    assert_string_equal(str(j, "kind"), "set");
    assert_true(num(j, "value") == 0); /* idle since the first interval */
    assert_null(json_object_get(j, "rate"));
    json_decref(j);
    registry_free(&r);

    /* a timer with no closed interval: value and statistics are null, not NaN */
    registry_init(&r, 0, 0);
    FEED(&r, T0, "t:1|ms");
    j = series_json(find(&r, "t", NULL, NULL));
    assert_true(json_is_null(json_object_get(j, "value")));
    assert_true(json_is_null(json_object_get(j, "p50")));
    assert_true(json_is_null(json_object_get(j, "min")));
    assert_true(num(j, "count") == 0);
    json_decref(j);
    registry_free(&r);
}

static void test_label_escaping_in_json(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    agg_batch_t *b = calloc(1, sizeof *b + sizeof b->d[0]);
    assert_non_null(b);
    skey_label_t l = {"path", "a\"b\\c\nd\x01"};
    b->n = 1;
    b->d[0].key = skey_new("esc", &l, 1);
    b->d[0].kind = METRIC_GAUGE;
    b->d[0].nlines = 1;
    b->d[0].v.gauge.delta = 1;
    registry_result_t res = {0};
    registry_apply(&r, b, T0, &res);
    agg_batch_free(b);
    json_t *j = series_json(find(&r, "esc", "path", "a\"b\\c\nd\x01"));
    assert_string_equal(str(json_object_get(j, "labels"), "path"), "a\"b\\c\nd\x01");
    json_decref(j);
    registry_free(&r);
}

static void test_metrics_json(void **state) {
    (void)state;
    registry_t r;
    build(&r);
    static const struct {
        const char *match, *source;
        int count;
    } cases[] = {
        {NULL, NULL, 6}, {"", "", 6},  {"g", NULL, 2},        {"*", "robot_*", 3},
        {"nope", NULL, 0}, {NULL, "web", 1}, {"[ct]", "robot_1", 2}, {"http_reqs", "robot_1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        view_filter_t f = {cases[i].match, cases[i].source};
        buf_t b = BUF_INIT;
        assert_int_equal(view_metrics_json(&r, &f, T0 + 3.25, &b), 0);
        assert_true(b.data[b.len - 1] == '\n');
        json_t *j = parse(&b);
        assert_true(num(j, "count") == cases[i].count);
        json_t *arr = json_object_get(j, "series");
        assert_true(json_is_array(arr));
        assert_int_equal(json_array_size(arr), (size_t)cases[i].count);
        assert_string_equal(str(j, "timestamp"), "2023-11-14T22:13:23.250Z");
        /* every entry is a series object that passes the filter */
        size_t k;
        json_t *s;
        json_array_foreach(arr, k, s) {
            assert_non_null(json_object_get(s, "name"));
            assert_non_null(json_object_get(s, "kind"));
            if (cases[i].source && *cases[i].source)
                assert_non_null(json_object_get(json_object_get(s, "labels"), "source"));
        }
        json_decref(j);
        buf_free(&b);
    }
    registry_free(&r);
}

static json_t *history(registry_t *r, const char *name, const char *source, uint32_t from,
                       uint32_t to, int want_rc) {
    buf_t b = BUF_INIT;
    int rc = view_history_json(r, name, source, from, to, &b);
    assert_int_equal(rc, want_rc);
    json_t *j = rc == 0 ? parse(&b) : NULL;
    buf_free(&b);
    return j;
}

static void test_history_json(void **state) {
    (void)state;
    registry_t r;
    build(&r);
    /* gauge g: robot_2 has points at T0, T0+1, T0+2; the unlabelled one at T0 */
    json_t *j = history(&r, "g", NULL, T0, T0 + 10, 0);
    assert_string_equal(str(j, "name"), "g");
    assert_string_equal(str(j, "kind"), "gauge");
    assert_true(num(j, "from") == T0 && num(j, "to") == T0 + 10);
    assert_true(num(j, "resolution_seconds") == 1);
    assert_null(json_object_get(j, "columns"));
    json_t *series = json_object_get(j, "series");
    assert_int_equal(json_array_size(series), 2);
    size_t npoints = 0, i;
    json_t *s;
    json_array_foreach(series, i, s) {
        json_t *pts = json_object_get(s, "points");
        const char *src = json_string_value(json_object_get(json_object_get(s, "labels"), "source"));
        if (src) {
            assert_string_equal(src, "robot_2");
            assert_int_equal(json_array_size(pts), 3);
            for (size_t k = 0; k < 3; k++) {
                json_t *p = json_array_get(pts, k);
                assert_int_equal(json_array_size(p), 2);
                assert_true(json_number_value(json_array_get(p, 0)) == T0 + k);
                assert_true(json_number_value(json_array_get(p, 1)) == 1 + k);
            }
        } else {
            assert_int_equal(json_array_size(pts), 1);
        }
        npoints += json_array_size(pts);
    }
    assert_int_equal(npoints, 4);
    json_decref(j);

    /* the window is inclusive at both ends */
    j = history(&r, "g", "robot_2", T0 + 1, T0 + 1, 0);
    series = json_object_get(j, "series");
    assert_int_equal(json_array_size(series), 1);
    json_t *pts = json_object_get(json_array_get(series, 0), "points");
    assert_int_equal(json_array_size(pts), 1);
    assert_true(json_number_value(json_array_get(json_array_get(pts, 0), 0)) == T0 + 1);
    json_decref(j);
    j = history(&r, "g", "robot_*", T0 + 1, T0 + 100, 0);
    pts = json_object_get(json_array_get(json_object_get(j, "series"), 0), "points");
    assert_int_equal(json_array_size(pts), 2);
    json_decref(j);
    /* a window with no points still lists the series, empty */
    j = history(&r, "g", "robot_2", T0 + 50, T0 + 60, 0);
    pts = json_object_get(json_array_get(json_object_get(j, "series"), 0), "points");
    assert_int_equal(json_array_size(pts), 0);
    json_decref(j);
    j = history(&r, "g", "robot_2", 0, T0 - 1, 0);
    pts = json_object_get(json_array_get(json_object_get(j, "series"), 0), "points");
    assert_int_equal(json_array_size(pts), 0);
    json_decref(j);

    /* counters: only seconds with data */
    j = history(&r, "c", NULL, 0, UINT32_MAX, 0);
    pts = json_object_get(json_array_get(json_object_get(j, "series"), 0), "points");
    assert_int_equal(json_array_size(pts), 2);
    assert_true(json_number_value(json_array_get(json_array_get(pts, 1), 1)) == 2);
    json_decref(j);

    /* 404s: unknown name, a source no series of that name has, a series without source */
    assert_null(history(&r, "nope", NULL, 0, UINT32_MAX, -ENOENT));
    assert_null(history(&r, "g", "robot_9", 0, UINT32_MAX, -ENOENT));
    assert_null(history(&r, "u", "*", 0, UINT32_MAX, -ENOENT));
    assert_null(history(&r, "http.reqs", NULL, 0, UINT32_MAX, -ENOENT)); /* sanitised name only */
    registry_free(&r);
}

static void test_history_json_timer(void **state) {
    (void)state;
    registry_t r;
    build(&r);
    json_t *j = history(&r, "t", "", 0, UINT32_MAX, 0);
    assert_string_equal(str(j, "kind"), "timer");
    json_t *cols = json_object_get(j, "columns");
    static const char *const want[] = {"t", "mean", "count", "sum", "min", "max", "p50", "p90", "p99"};
    assert_int_equal(json_array_size(cols), 9);
    for (size_t k = 0; k < 9; k++) assert_string_equal(json_string_value(json_array_get(cols, k)), want[k]);
    json_t *pts = json_object_get(json_array_get(json_object_get(j, "series"), 0), "points");
    assert_int_equal(json_array_size(pts), 2);
    json_t *p = json_array_get(pts, 0);
    assert_int_equal(json_array_size(p), 9);
    double v[9];
    for (size_t k = 0; k < 9; k++) {
        assert_true(json_is_number(json_array_get(p, k)));
        v[k] = json_number_value(json_array_get(p, k));
    }
    assert_true(v[0] == T0);
    assert_true(v[1] == 20);                 /* mean */
    assert_true(v[2] == 3 && v[3] == 60);    /* count, sum */
    assert_true(v[4] == 10 && v[5] == 30);   /* min, max */
    assert_true(fabs(v[6] - 20) <= 0.2 + 1e-6);
    assert_true(v[7] >= 10 * 0.99 && v[7] <= 30 * 1.01);
    assert_true(v[8] >= 20 * 0.99 && v[8] <= 30 * 1.01); /* rank 0.99 * (3 - 1): 20 or 30 */
    p = json_array_get(pts, 1);
    assert_true(json_number_value(json_array_get(p, 0)) == T0 + 2);
    assert_true(json_number_value(json_array_get(p, 2)) == 1);
    json_decref(j);
    registry_free(&r);
}

static void test_summary_json(void **state) {
    (void)state;
    hub_self_t self;
    memset(&self, 0, sizeof self);
    self.version = "1.2.3";
    self.uptime_s = 3.5;
    self.lines[INGEST_UDP] = 10;
    self.lines[INGEST_HTTP] = 2;
    self.lines_total = 12;
    self.lines_rate = 4;
    self.rejected_total = 3;
    self.series = 7;
    self.datagrams = 9;
    self.dropped_total = 1;
    self.ws_dropped = 5;
    self.connections = 2;
    self.proc.rss_bytes = 4096;
    self.proc.threads = 5;
    self.loop_lag_max_s = 0.003;
    self.cpu_percent = 12.5;
    buf_t b = BUF_INIT;
    assert_int_equal(view_summary_json(&self, T0, &b), 0);
    json_t *j = parse(&b);
    buf_free(&b);
    static const char *const top[] = {"version", "uptime_seconds", "ingest", "drops",
                                      "connections", "ws_connections", "subscribers",
                                      "sources_online", "events_total", "cpu_percent",
                                      "rss_bytes", "open_fds", "threads", "loop_lag_seconds",
                                      "alerts", "timestamp"};
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++)
        if (!json_object_get(j, top[k])) fail_msg("no key %s", top[k]);
    assert_int_equal(json_object_size(j), sizeof top / sizeof top[0]);
    assert_string_equal(str(j, "version"), "1.2.3");
    assert_true(num(j, "uptime_seconds") == 3.5);
    assert_string_equal(str(j, "timestamp"), "2023-11-14T22:13:20.000Z");
    json_t *in = json_object_get(j, "ingest");
    static const char *const ingest[] = {"lines_total", "lines_by_transport", "lines_per_second",
                                         "rejected_total", "rejected_per_second", "datagrams_total",
                                         "series"};
    for (size_t k = 0; k < sizeof ingest / sizeof ingest[0]; k++)
        if (!json_object_get(in, ingest[k])) fail_msg("no key ingest.%s", ingest[k]);
    assert_true(num(in, "lines_total") == 12 && num(in, "lines_per_second") == 4);
    assert_true(num(in, "rejected_total") == 3 && num(in, "series") == 7);
    assert_true(num(in, "datagrams_total") == 9);
    json_t *bt = json_object_get(in, "lines_by_transport");
    assert_true(num(bt, "udp") == 10 && num(bt, "http") == 2 && num(bt, "ws") == 0);
    json_t *dr = json_object_get(j, "drops");
    assert_true(num(dr, "ingest_total") == 1 && num(dr, "ws_total") == 5);
    assert_non_null(json_object_get(dr, "ingest_per_second"));
    assert_true(num(j, "connections") == 2 && num(j, "rss_bytes") == 4096);
    assert_true(num(j, "threads") == 5 && num(j, "cpu_percent") == 12.5);
    assert_true(num(j, "loop_lag_seconds") == 0.003);
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_series_json_per_kind),
        cmocka_unit_test(test_label_escaping_in_json),
        cmocka_unit_test(test_metrics_json),
        cmocka_unit_test(test_history_json),
        cmocka_unit_test(test_history_json_timer),
        cmocka_unit_test(test_summary_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
