/* registry: apply + roll semantics per kind (value, rate, zero after idle, history points,
 * timer statistics, set cardinality), refusals (kind conflict, reserved name, series
 * limit), families, and a large table. */
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

#include "agg.h"
#include "history.h"
#include "registry.h"
#include "series_key.h"
#include "statsd.h"

#define T0 1700000000u

/* Aggregates the lines (NULL-terminated) in one producer flush and applies the batch. */
static registry_result_t feed_at(registry_t *r, double now, const char *const *lines) {
    agg_t a;
    agg_init(&a, 0);
    for (; *lines; lines++) {
        statsd_line_t l;
        /* "=name:v|c": a running total (statsd_line_t.counter_total) */
        const char *text = **lines == '=' ? *lines + 1 : *lines;
        assert_int_equal(statsd_parse_line(text, strlen(text), &l), STATSD_OK);
        l.counter_total = **lines == '=';
        assert_int_equal(agg_add(&a, &l), STATSD_OK);
    }
    int err;
    agg_batch_t *b = agg_flush(&a, INGEST_HTTP, 0, &err);
    registry_result_t res;
    memset(&res, 0, sizeof res);
    if (b) registry_apply(r, b, now, &res);
    agg_batch_free(b);
    agg_free(&a);
    return res;
}

#define FEED(r, now, ...) feed_at((r), (now), (const char *const[]){__VA_ARGS__, NULL})

static series_t *find(const registry_t *r, const char *name) {
    skey_label_t none[1] = {{"", ""}}; /* not NULL: see the note in test_series_key.c */
    series_key_t *k = skey_new(name, none, 0);
    series_t *s = registry_find(r, k);
    skey_unref(k);
    return s;
}

static series_t *find1(const registry_t *r, const char *name, const char *lk, const char *lv) {
    skey_label_t l = {lk, lv};
    series_key_t *k = skey_new(name, &l, 1);
    series_t *s = registry_find(r, k);
    skey_unref(k);
    return s;
}

static void expect_point(const series_t *s, uint32_t i, uint32_t t, double v) {
    assert_true(i < s->hist.len);
    uint32_t pt;
    double pv;
    history_get(&s->hist, i, &pt, &pv, NULL);
    assert_int_equal(pt, t);
    assert_true(fabs(pv - v) < 1e-9);
}

static void test_counter(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    assert_int_equal(r.history_points, 3600);
    registry_result_t res = FEED(&r, T0 + 0.5, "c:3|c", "c:2|c", "c:1|c|@0.5");
    assert_int_equal(res.accepted, 3);
    series_t *s = find(&r, "c");
    assert_non_null(s);
    assert_int_equal(s->kind, METRIC_COUNTER);
    assert_true(s->value == 7);
    assert_true(s->rate == 0); /* until the interval closes */
    assert_true(s->updated_at == T0 + 0.5);
    assert_null(s->source);
    registry_roll(&r, T0 + 1);
    assert_true(s->value == 7 && s->rate == 7);
    assert_int_equal(s->hist.len, 1);
    expect_point(s, 0, T0, 7);
    /* second interval: total keeps growing, rate is per interval */
    FEED(&r, T0 + 1.2, "c:4|c");
    registry_roll(&r, T0 + 2);
    assert_true(s->value == 11 && s->rate == 4);
    assert_int_equal(s->hist.len, 2);
    expect_point(s, 1, T0 + 1, 4);
    /* idle: the rate drops to 0 one roll later, no history point, total kept */
    registry_roll(&r, T0 + 3);
    assert_true(s->value == 11 && s->rate == 0);
    assert_false(s->zero_pending);
    assert_int_equal(s->hist.len, 2);
    registry_roll(&r, T0 + 4);
    assert_true(s->rate == 0);
    assert_int_equal(r.ndirty, 0); /* nothing left to do */
    /* data again after idling */
    FEED(&r, T0 + 10.1, "c:2|c");
    registry_roll(&r, T0 + 11);
    assert_true(s->value == 13 && s->rate == 2);
    expect_point(s, 2, T0 + 10, 2);
    assert_int_equal(r.gen, 5);
    registry_free(&r);
}

static void test_counter_zero_pending_then_data(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    FEED(&r, T0, "c:5|c");
    registry_roll(&r, T0 + 1);
    series_t *s = find(&r, "c");
    assert_true(s->zero_pending);
    assert_int_equal(r.ndirty, 1); /* listed for the next roll already */
    FEED(&r, T0 + 1.5, "c:1|c"); /* data in the pending interval: listed once */
    assert_int_equal(r.ndirty, 1);
    registry_roll(&r, T0 + 2);
    assert_true(s->rate == 1 && s->value == 6);
    /* a counter whose interval sums to 0 shows rate 0 and needs no extra roll */
    FEED(&r, T0 + 2.5, "c:2|c", "c:-2|c");
    registry_roll(&r, T0 + 3);
    assert_true(s->rate == 0 && s->value == 6);
    expect_point(s, 2, T0 + 2, 0);
    registry_free(&r);
}

/* Running totals (kernel counters since boot): value = the total, rate = its increase over
 * the interval; the first total sets the value only; a smaller total is a restart. */
static void test_counter_total(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    registry_result_t res = FEED(&r, T0 + 0.5, "=k:123456.5|c");
    assert_int_equal(res.accepted, 1);
    series_t *s = find(&r, "k");
    assert_non_null(s);
    assert_true(s->value == 123456.5); /* the total itself, not "since the hub started" */
    assert_true(s->has_total);
    registry_roll(&r, T0 + 1);
    assert_true(s->rate == 0);      /* no bogus first-interval rate */
    assert_int_equal(s->hist.len, 0); /* and no point: nothing is known about that second */
    FEED(&r, T0 + 1.5, "=k:123460|c");
    registry_roll(&r, T0 + 2);
    assert_true(s->value == 123460 && s->rate == 3.5);
    assert_int_equal(s->hist.len, 1);
    expect_point(s, 0, T0 + 1, 3.5);
    /* unchanged total: increase 0, a point of 0 */
    FEED(&r, T0 + 2.5, "=k:123460|c");
    registry_roll(&r, T0 + 3);
    assert_true(s->rate == 0);
    expect_point(s, 1, T0 + 2, 0);
    /* a restart (interface re-created, counter from 0): the increase is the new total */
    FEED(&r, T0 + 3.5, "=k:40|c");
    registry_roll(&r, T0 + 4);
    assert_true(s->value == 40 && s->rate == 40);
    /* two totals in one interval (two flushes before the roll): increases add up */
    FEED(&r, T0 + 4.2, "=k:50|c");
    FEED(&r, T0 + 4.7, "=k:65|c");
    registry_roll(&r, T0 + 5);
    assert_true(s->value == 65 && s->rate == 25);
    /* increments after a total in the same flush count too */
    FEED(&r, T0 + 5.5, "=k:70|c", "k:2|c");
    registry_roll(&r, T0 + 6);
    assert_true(s->value == 72 && s->rate == 7);
    /* plain increments on a counter that had totals add as usual */
    FEED(&r, T0 + 6.5, "k:3|c");
    registry_roll(&r, T0 + 7);
    assert_true(s->value == 75 && s->rate == 3);

    /* a plain counter that later gets a total: the first total sets the value only */
    FEED(&r, T0 + 7.2, "p:5|c");
    registry_roll(&r, T0 + 8);
    series_t *p = find(&r, "p");
    assert_true(p->value == 5 && p->rate == 5);
    FEED(&r, T0 + 8.2, "=p:1000|c");
    registry_roll(&r, T0 + 9);
    assert_true(p->value == 1000 && p->rate == 0);
    FEED(&r, T0 + 9.2, "=p:1010|c");
    registry_roll(&r, T0 + 10);
    assert_true(p->value == 1010 && p->rate == 10);
    registry_free(&r);
}

static void test_gauge(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    FEED(&r, T0, "g:10|g", "g:+2|g");
    series_t *s = find(&r, "g");
    assert_true(s->value == 12);
    registry_roll(&r, T0 + 1);
    assert_true(s->value == 12);
    expect_point(s, 0, T0, 12);
    FEED(&r, T0 + 1, "g:-5|g"); /* a delta applies to the carried value */
    registry_roll(&r, T0 + 2);
    assert_true(s->value == 7);
    expect_point(s, 1, T0 + 1, 7);
    registry_roll(&r, T0 + 3); /* idle: value carried, no point */
    registry_roll(&r, T0 + 4);
    assert_true(s->value == 7);
    assert_int_equal(s->hist.len, 2);
    FEED(&r, T0 + 4, "g:+1|g", "g:3|g", "g:+0.5|g"); /* an absolute wipes earlier deltas */
    assert_true(s->value == 3.5);
    /* two batches in one interval: one point, the last value */
    FEED(&r, T0 + 4.5, "g:100|g");
    registry_roll(&r, T0 + 5);
    assert_int_equal(s->hist.len, 3);
    expect_point(s, 2, T0 + 4, 100);
    registry_free(&r);
}

static void test_timer(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    agg_t a;
    agg_init(&a, 0);
    char line[64];
    for (int i = 1; i <= 1000; i++) {
        statsd_line_t l;
        snprintf(line, sizeof line, "lat:%d|ms|#source:r1", i);
        assert_int_equal(statsd_parse_line(line, strlen(line), &l), STATSD_OK);
        assert_int_equal(agg_add(&a, &l), STATSD_OK);
    }
    int err;
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
    registry_result_t res = {0};
    registry_apply(&r, b, T0 + 0.25, &res);
    agg_batch_free(b);
    agg_free(&a);
    assert_int_equal(res.accepted, 1000);
    series_t *s = find1(&r, "lat", "source", "r1");
    assert_non_null(s);
    assert_string_equal(s->source, "r1");
    assert_true(isnan(s->value)); /* no interval closed yet */
    assert_true(isnan(s->last.p50));
    registry_roll(&r, T0 + 1);
    assert_true(s->last.count == 1000);
    assert_true(s->last.sum == 500500);
    assert_true(s->last.min == 1 && s->last.max == 1000);
    assert_true(fabs(s->value - 500.5) < 1e-9);
    assert_true(fabs(s->last.p50 - 500) <= 0.01 * 500 + 1);
    assert_true(fabs(s->last.p90 - 900) <= 0.01 * 900 + 1);
    assert_true(fabs(s->last.p99 - 990) <= 0.01 * 990 + 1);
    assert_true(s->count_total == 1000 && s->sum_total == 500500);
    assert_int_equal(s->hist.len, 1);
    uint32_t t;
    double v, x[HIST_EXTRAS];
    history_get(&s->hist, 0, &t, &v, x);
    assert_int_equal(t, T0);
    assert_true(fabs(v - 500.5) < 1e-9);
    assert_true(x[HIST_COUNT] == 1000 && x[HIST_SUM] == 500500);
    assert_true(x[HIST_MIN] == 1 && x[HIST_MAX] == 1000);
    assert_true(fabs(x[HIST_P50] - s->last.p50) < 1e-3 * s->last.p50);

    /* the next interval: last stats are that interval's, totals cumulative */
    FEED(&r, T0 + 1.5, "lat:10|ms|#source:r1", "lat:30|ms|@0.5|#source:r1");
    registry_roll(&r, T0 + 2);
    assert_true(s->last.count == 3 && s->last.sum == 70);
    assert_true(s->last.min == 10 && s->last.max == 30);
    assert_true(fabs(s->value - 70.0 / 3) < 1e-9);
    assert_true(fabs(s->last.p99 - 30) <= 0.3);
    assert_true(s->count_total == 1003 && s->sum_total == 500570);
    /* idle: the last interval with samples stays, no point */
    registry_roll(&r, T0 + 3);
    assert_true(s->last.count == 3);
    assert_true(fabs(s->value - 70.0 / 3) < 1e-9);
    assert_int_equal(s->hist.len, 2);
    registry_free(&r);
}

static void test_set(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    FEED(&r, T0, "u:alice|s", "u:bob|s", "u:alice|s");
    FEED(&r, T0 + 0.5, "u:carol|s", "u:bob|s"); /* another producer: union */
    series_t *s = find(&r, "u");
    registry_roll(&r, T0 + 1);
    assert_true(s->value == 3);
    expect_point(s, 0, T0, 3);
    FEED(&r, T0 + 1, "u:dave|s");
    registry_roll(&r, T0 + 2);
    assert_true(s->value == 1); /* members of the last interval only */
    registry_roll(&r, T0 + 3);    /* idle: 0 */
    assert_true(s->value == 0);
    assert_int_equal(s->hist.len, 2);
    registry_roll(&r, T0 + 4);
    assert_true(s->value == 0);
    assert_int_equal(r.ndirty, 0);
    registry_free(&r);
}

static void test_kind_conflict(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    FEED(&r, T0, "x:1|c");
    /* the same key as another kind, and the same name with other labels */
    registry_result_t res = FEED(&r, T0, "x:1:2:3|g", "x:1|ms|#a:b", "y:1|g");
    assert_int_equal(res.accepted, 1);
    assert_int_equal(res.rejected[REG_REJECT_KIND_CONFLICT], 4); /* counted by lines */
    assert_int_equal(r.n, 2);
    family_t *f = registry_family(&r, "x");
    assert_non_null(f);
    assert_int_equal(f->kind, METRIC_COUNTER);
    assert_int_equal(f->n, 1);
    assert_true(find(&r, "x")->value == 1);
    /* the same name with other labels and the same kind is fine */
    res = FEED(&r, T0, "x:1|c|#a:b");
    assert_int_equal(res.accepted, 1);
    assert_int_equal(f->n, 2);
    assert_string_equal(reject_reason_name(REG_REJECT_KIND_CONFLICT), "kind_conflict");
    registry_free(&r);
}

static void test_reserved_name(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    registry_result_t res =
        FEED(&r, T0, "metricast_series:1|g", "metricast.x:1|c", "metricast_q:1:2|ms", "metricastx:1|c");
    assert_int_equal(res.rejected[REG_REJECT_RESERVED_NAME], 4);
    assert_int_equal(res.accepted, 1); /* metricastx is not under metricast_ */
    assert_int_equal(r.n, 1);
    assert_null(registry_family(&r, "metricast_series"));
    assert_string_equal(reject_reason_name(REG_REJECT_RESERVED_NAME), "reserved_name");
    registry_free(&r);
}

static void test_series_limit(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 3, 0);
    registry_result_t res = FEED(&r, T0, "a:1|c", "b:1|g", "c:1|c|#k:1");
    assert_int_equal(res.accepted, 3);
    res = FEED(&r, T0, "d:1|c", "c:1|c|#k:2", "a:5|c", "b:7|g", "e:1:1|c");
    assert_int_equal(res.rejected[REG_REJECT_SERIES_LIMIT], 4);
    assert_int_equal(res.accepted, 2);
    assert_int_equal(r.n, 3);
    assert_true(find(&r, "a")->value == 6);
    assert_true(find(&r, "b")->value == 7);
    assert_null(find(&r, "d"));
    assert_string_equal(reject_reason_name(REG_REJECT_SERIES_LIMIT), "series_limit");
    assert_string_equal(reject_reason_name(STATSD_BAD_TAGS), "bad_tags");
    assert_string_equal(reject_reason_name(REJECT_REASON_COUNT), "unknown");
    assert_string_equal(reject_reason_name(-1), "unknown");
    registry_free(&r);
}

static void test_families(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    FEED(&r, T0, "zeta:1|g|#s:1", "alpha:1|c", "mid:1|ms", "zeta:2|g|#s:2", "beta:x|s",
         "zeta:3|g|#s:3", "alpha:1|c|#s:1");
    uint32_t n;
    family_t *const *fams = registry_families(&r, &n);
    assert_int_equal(n, 4);
    static const char *const names[] = {"alpha", "beta", "mid", "zeta"};
    for (uint32_t i = 0; i < n; i++) assert_string_equal(fams[i]->name, names[i]);
    for (uint32_t i = 1; i < n; i++) assert_true(strcmp(fams[i - 1]->name, fams[i]->name) < 0);
    family_t *z = registry_family(&r, "zeta");
    assert_int_equal(z->n, 3);
    assert_int_equal(z->kind, METRIC_GAUGE);
    for (uint32_t i = 0; i < z->n; i++) {
        assert_ptr_equal(z->v[i]->fam, z);
        assert_string_equal(skey_name(z->v[i]->key), "zeta");
    }
    assert_int_equal(registry_family(&r, "alpha")->n, 2);
    assert_int_equal(registry_family(&r, "beta")->kind, METRIC_SET);
    assert_int_equal(registry_family(&r, "mid")->kind, METRIC_TIMER);
    assert_null(registry_family(&r, "nope"));
    /* a new family after sorting gets sorted in */
    FEED(&r, T0, "aardvark:1|g");
    fams = registry_families(&r, &n);
    assert_int_equal(n, 5);
    assert_string_equal(fams[0]->name, "aardvark");
    assert_string_equal(fams[4]->name, "zeta");
    registry_free(&r);
}

/* A batch of counter deltas +1 for series i in [from, to) of name "s<i % nfam>" labelled
 * id=<i>, built by hand (no agg). */
static agg_batch_t *counter_batch(uint32_t from, uint32_t to, uint32_t nfam) {
    agg_batch_t *b = calloc(1, sizeof *b + (size_t)(to - from) * sizeof b->d[0]);
    assert_non_null(b);
    b->transport = INGEST_WS;
    char name[32], id[16];
    for (uint32_t i = from; i < to; i++) {
        snprintf(name, sizeof name, "s%u", i % nfam);
        snprintf(id, sizeof id, "%u", i);
        skey_label_t l = {"id", id};
        agg_delta_t *d = &b->d[b->n++];
        d->key = skey_new(name, &l, 1);
        assert_non_null(d->key);
        d->kind = METRIC_COUNTER;
        d->nlines = 1;
        d->v.counter = 1;
    }
    return b;
}

static void test_many_series(void **state) {
    (void)state;
    enum { N = 100000, NFAM = 997 };
    registry_t r;
    registry_init(&r, 0, 4);
    for (uint32_t from = 0; from < N; from += 10000) {
        agg_batch_t *b = counter_batch(from, from + 10000, NFAM);
        registry_result_t res = {0};
        registry_apply(&r, b, T0, &res);
        assert_int_equal(res.accepted, 10000);
        agg_batch_free(b);
    }
    assert_int_equal(r.n, N);
    assert_true(r.cap > N && (r.cap & (r.cap - 1)) == 0);
    registry_roll(&r, T0 + 1);
    /* again: every series found, none added */
    agg_batch_t *b = counter_batch(0, N, NFAM);
    registry_result_t res = {0};
    registry_apply(&r, b, T0 + 1, &res);
    agg_batch_free(b);
    assert_int_equal(res.accepted, N);
    assert_int_equal(r.n, N);
    registry_roll(&r, T0 + 2);
    char name[32], id[16];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, "s%u", i % NFAM);
        snprintf(id, sizeof id, "%u", i);
        series_t *s = find1(&r, name, "id", id);
        assert_non_null(s);
        assert_true(s->value == 2 && s->rate == 1);
        assert_int_equal(s->hist.len, 2);
    }
    snprintf(id, sizeof id, "%u", N);
    assert_null(find1(&r, "s0", "id", id));
    uint32_t nf;
    family_t *const *fams = registry_families(&r, &nf);
    assert_int_equal(nf, NFAM);
    uint64_t total = 0;
    for (uint32_t i = 0; i < nf; i++) {
        total += fams[i]->n;
        if (i) assert_true(strcmp(fams[i - 1]->name, fams[i]->name) < 0);
    }
    assert_int_equal(total, N);
    registry_free(&r);
}

static void test_history_limit(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 5);
    char line[32];
    for (uint32_t i = 0; i < 20; i++) {
        snprintf(line, sizeof line, "g:%u|g", i);
        FEED(&r, T0 + i, line);
        registry_roll(&r, T0 + i + 1);
    }
    series_t *s = find(&r, "g");
    assert_int_equal(s->hist.len, 5);
    expect_point(s, 0, T0 + 15, 15);
    expect_point(s, 4, T0 + 19, 19);
    registry_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_counter_zero_pending_then_data),
        cmocka_unit_test(test_counter_total),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_timer),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_kind_conflict),
        cmocka_unit_test(test_reserved_name),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_history_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
