/* agg: per-producer aggregation between flushes — counter sums with sample rates, gauge
 * absolute/delta rules, timer sketches moved into the batch, set members, flush and
 * restart, the key table (one entry per raw key, limit, eviction, growth and deletion). */
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
#include "series_key.h"
#include "sketch.h"
#include "statsd.h"

static int add(agg_t *a, const char *text) {
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(text, strlen(text), &l), STATSD_OK);
    return agg_add(a, &l);
}

static void add_ok(agg_t *a, const char *text) { assert_int_equal(add(a, text), STATSD_OK); }

static agg_batch_t *flush(agg_t *a) {
    int err = -1;
    agg_batch_t *b = agg_flush(a, INGEST_UDP, 0, &err);
    assert_int_equal(err, 0);
    return b;
}

/* The delta for name (+ optional label k=v) of kind, or fail. */
static const agg_delta_t *find(const agg_batch_t *b, const char *name, metric_kind_t kind) {
    for (uint32_t i = 0; i < b->n; i++)
        if (b->d[i].kind == kind && strcmp(skey_name(b->d[i].key), name) == 0) return &b->d[i];
    fail_msg("no %s delta for %s", metric_kind_name(kind), name);
    return NULL;
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * (fabs(b) + 1); }

static void test_counter_rate(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    assert_int_equal(a.max_entries, 1000000);
    add_ok(&a, "hits:1|c");
    add_ok(&a, "hits:2|c|@0.5");    /* counts 4 */
    add_ok(&a, "hits:1|c|@0.1");    /* counts 10 */
    add_ok(&a, "hits:1.5:2.5|c");   /* multi-value: 4, two lines */
    add_ok(&a, "hits:-3|c");
    assert_true(agg_has_dirty(&a));
    agg_batch_t *b = flush(&a);
    assert_non_null(b);
    assert_int_equal(b->transport, INGEST_UDP);
    assert_int_equal(b->n, 1);
    const agg_delta_t *d = find(b, "hits", METRIC_COUNTER);
    assert_true(near(d->v.counter, 1 + 4 + 10 + 4 - 3));
    assert_int_equal(d->nlines, 6);
    assert_false(agg_has_dirty(&a));
    agg_batch_free(b);
    agg_free(&a);
}

/* A running total (counter_total, as the host source sends kernel counters): the latest
 * total wins, increments after it add to it, increments before it are part of it, and a
 * sample rate does not scale a total. */
static int add_total(agg_t *a, const char *text) {
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(text, strlen(text), &l), STATSD_OK);
    l.counter_total = true;
    return agg_add(a, &l);
}

static void test_counter_total(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "t:5|c");                                   /* wiped by the total after it */
    assert_int_equal(add_total(&a, "t:1000|c"), STATSD_OK);
    assert_int_equal(add_total(&a, "t:1200|c|@0.5"), STATSD_OK); /* latest wins, unscaled */
    add_ok(&a, "t:3|c");                                   /* after the total: kept */
    add_ok(&a, "plain:2|c");
    agg_batch_t *b = flush(&a);
    const agg_delta_t *d = find(b, "t", METRIC_COUNTER);
    assert_true(d->v.counter_has_total);
    assert_true(d->v.counter_abs == 1200);
    assert_true(d->v.counter == 3);
    assert_int_equal(d->nlines, 4);
    d = find(b, "plain", METRIC_COUNTER);
    assert_false(d->v.counter_has_total);
    assert_true(d->v.counter == 2);
    agg_batch_free(b);
    /* the next flush starts empty: no total carried over */
    add_ok(&a, "t:1|c");
    b = flush(&a);
    d = find(b, "t", METRIC_COUNTER);
    assert_false(d->v.counter_has_total);
    assert_true(d->v.counter == 1);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_gauge_rules(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    /* absolute then deltas */
    add_ok(&a, "g1:10|g");
    add_ok(&a, "g1:+5|g");
    add_ok(&a, "g1:-2|g");
    /* deltas only */
    add_ok(&a, "g2:+3|g");
    add_ok(&a, "g2:-1.5|g");
    /* a later absolute wipes earlier deltas */
    add_ok(&a, "g3:+100|g");
    add_ok(&a, "g3:7|g");
    add_ok(&a, "g3:+1|g");
    /* gauges ignore the sample rate */
    add_ok(&a, "g4:5|g|@0.5");
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 4);
    const agg_delta_t *d = find(b, "g1", METRIC_GAUGE);
    assert_true(d->v.gauge.has_abs);
    assert_true(d->v.gauge.abs == 10 && d->v.gauge.delta == 3);
    assert_int_equal(d->nlines, 3);
    d = find(b, "g2", METRIC_GAUGE);
    assert_false(d->v.gauge.has_abs);
    assert_true(d->v.gauge.delta == 1.5);
    d = find(b, "g3", METRIC_GAUGE);
    assert_true(d->v.gauge.has_abs);
    assert_true(d->v.gauge.abs == 7 && d->v.gauge.delta == 1);
    d = find(b, "g4", METRIC_GAUGE);
    assert_true(d->v.gauge.has_abs && d->v.gauge.abs == 5 && d->v.gauge.delta == 0);
    agg_batch_free(b);

    /* after the flush the accumulator restarts: a delta alone has no absolute */
    add_ok(&a, "g1:+1|g");
    b = flush(&a);
    assert_int_equal(b->n, 1);
    d = find(b, "g1", METRIC_GAUGE);
    assert_false(d->v.gauge.has_abs);
    assert_true(d->v.gauge.delta == 1);
    assert_int_equal(d->nlines, 1);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_timer_moved(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "lat:10|ms");
    add_ok(&a, "lat:20|ms|@0.25"); /* weight 4 */
    add_ok(&a, "lat:30:40|h");     /* h is a timer too: the type letter is not in the raw key */
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 1);
    const agg_delta_t *d = find(b, "lat", METRIC_TIMER);
    assert_non_null(d->v.timer);
    assert_true(near(d->v.timer->count, 1 + 4 + 1 + 1));
    assert_true(near(d->v.timer->sum, 10 + 4 * 20 + 30 + 40));
    assert_true(d->v.timer->min == 10 && d->v.timer->max == 40);
    assert_int_equal(d->nlines, 4);
    sketch_t *moved = d->v.timer;
    /* a new interval gets a new sketch; the batch keeps the old one */
    add_ok(&a, "lat:99|ms");
    agg_batch_t *b2 = flush(&a);
    const agg_delta_t *d2 = find(b2, "lat", METRIC_TIMER);
    assert_ptr_not_equal(d2->v.timer, moved);
    assert_true(d2->v.timer->count == 1 && d2->v.timer->sum == 99);
    assert_true(moved->count == 7); /* untouched by later adds */
    agg_batch_free(b);
    agg_batch_free(b2);
    agg_free(&a);
}

static void test_set_members(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "users:alice|s");
    add_ok(&a, "users:bob|s");
    add_ok(&a, "users:alice|s");
    add_ok(&a, "users:a:b|s"); /* member with ':' */
    char line[64];
    for (int i = 0; i < 100; i++) {
        snprintf(line, sizeof line, "many:m%d|s", i % 37);
        add_ok(&a, line);
    }
    agg_batch_t *b = flush(&a);
    const agg_delta_t *d = find(b, "users", METRIC_SET);
    assert_int_equal(d->v.set.n, 3);
    assert_int_equal(d->nlines, 4);
    d = find(b, "many", METRIC_SET);
    assert_int_equal(d->v.set.n, 37);
    assert_int_equal(d->nlines, 100);
    agg_batch_free(b);
    /* members restart after a flush */
    add_ok(&a, "users:alice|s");
    b = flush(&a);
    assert_int_equal(b->n, 1);
    assert_int_equal(find(b, "users", METRIC_SET)->v.set.n, 1);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_set_insert_helper(void **state) {
    (void)state;
    agg_set_t s = {0};
    assert_int_equal(agg_set_insert(&s, 0), 1); /* 0 is stored as 1 */
    assert_int_equal(agg_set_insert(&s, 1), 0);
    for (uint64_t i = 2; i < 1002; i++) assert_int_equal(agg_set_insert(&s, i * 0x9e3779b97f4a7c15ULL), 1);
    for (uint64_t i = 2; i < 1002; i++) assert_int_equal(agg_set_insert(&s, i * 0x9e3779b97f4a7c15ULL), 0);
    assert_int_equal(s.n, 1001);
    assert_true(s.n * 4 <= s.cap * 3);
    agg_set_free(&s);
    assert_null(s.slots);
    assert_int_equal(s.n, 0);
}

static void test_flush_nothing(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    assert_false(agg_has_dirty(&a));
    assert_null(flush(&a));
    add_ok(&a, "c:1|c");
    agg_batch_t *b = flush(&a);
    assert_non_null(b);
    agg_batch_free(b);
    assert_null(flush(&a)); /* touched nothing since */
    assert_int_equal(a.n, 1);  /* but the key is remembered */
    agg_batch_free(NULL);
    agg_free(&a);
}

static void test_accumulators_restart(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "c:5|c");
    add_ok(&a, "c:5|c");
    agg_batch_t *b = flush(&a);
    assert_true(find(b, "c", METRIC_COUNTER)->v.counter == 10);
    agg_batch_free(b);
    add_ok(&a, "c:1|c");
    b = flush(&a);
    const agg_delta_t *d = find(b, "c", METRIC_COUNTER);
    assert_true(d->v.counter == 1);
    assert_int_equal(d->nlines, 1);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_same_raw_key_one_entry(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    for (int i = 0; i < 1000; i++) add_ok(&a, "req:1|c|#host:a,code:200");
    /* a different tag order is a different raw key, but the same series: two deltas, one
     * canonical key */
    add_ok(&a, "req:1|c|#code:200,host:a");
    add_ok(&a, "req:1|c|#host:b,code:200");
    assert_int_equal(a.n, 3);
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 3);
    double total = 0;
    uint32_t lines = 0, big = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        total += b->d[i].v.counter;
        lines += b->d[i].nlines;
        if (b->d[i].nlines == 1000) big++;
    }
    assert_true(total == 1002);
    assert_int_equal(lines, 1002);
    assert_int_equal(big, 1);
    assert_true(skey_equal(b->d[0].key, b->d[1].key) || skey_equal(b->d[0].key, b->d[2].key) ||
                skey_equal(b->d[1].key, b->d[2].key));
    agg_batch_free(b);
    agg_free(&a);
}

static void test_kinds_separate(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "x:1|c");
    add_ok(&a, "x:2|g");
    add_ok(&a, "x:3|ms");
    add_ok(&a, "x:m|s");
    add_ok(&a, "x:4|c");
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 4);
    assert_true(find(b, "x", METRIC_COUNTER)->v.counter == 5);
    assert_true(find(b, "x", METRIC_GAUGE)->v.gauge.abs == 2);
    assert_true(find(b, "x", METRIC_TIMER)->v.timer->sum == 3);
    assert_int_equal(find(b, "x", METRIC_SET)->v.set.n, 1);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_key_errors(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    assert_int_equal(add(&a, "m:1|c|#__bad:1"), STATSD_BAD_TAGS);
    assert_int_equal(a.n, 0);
    assert_false(agg_has_dirty(&a));
    assert_null(flush(&a));
    agg_free(&a);
}

static void test_max_entries(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 3);
    add_ok(&a, "a:1|c");
    add_ok(&a, "b:1|c");
    add_ok(&a, "c:1|c");
    assert_int_equal(add(&a, "d:1|c"), STATSD_TOO_LONG);
    assert_int_equal(add(&a, "a:1|g"), STATSD_TOO_LONG); /* another kind is another key */
    add_ok(&a, "a:1|c"); /* known keys still work */
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 3);
    assert_true(find(b, "a", METRIC_COUNTER)->v.counter == 2);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_eviction(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    int err;
    add_ok(&a, "idle:1|c");
    add_ok(&a, "busy:1|c");
    agg_batch_free(agg_flush(&a, INGEST_HTTP, 10, &err)); /* flush 1 */
    assert_int_equal(a.n, 2);
    /* eviction runs on every 64th flush; busy is touched every time */
    for (int f = 2; f <= 63; f++) {
        add_ok(&a, "busy:1|c");
        agg_batch_t *b = agg_flush(&a, INGEST_HTTP, 10, &err);
        assert_int_equal(err, 0);
        assert_int_equal(b->n, 1);
        assert_int_equal(b->transport, INGEST_HTTP);
        agg_batch_free(b);
        assert_int_equal(a.n, 2); /* idle long enough, but not a 64th flush */
    }
    add_ok(&a, "busy:1|c");
    agg_batch_free(agg_flush(&a, INGEST_HTTP, 10, &err)); /* flush 64: evicts idle */
    assert_int_equal(a.n, 1);
    /* the forgotten key comes back as new */
    add_ok(&a, "idle:1|c");
    assert_int_equal(a.n, 2);
    agg_batch_t *b = flush(&a);
    assert_int_equal(b->n, 1);
    assert_true(find(b, "idle", METRIC_COUNTER)->v.counter == 1);
    agg_batch_free(b);

    /* a dirty key is never evicted, and evict_after 0 never evicts */
    agg_t z;
    agg_init(&z, 0);
    add_ok(&z, "k:1|c");
    for (int f = 0; f < 200; f++) agg_batch_free(agg_flush(&z, INGEST_UDP, 0, &err));
    assert_int_equal(z.n, 1);
    agg_free(&z);
    agg_free(&a);
}

static void test_eviction_threshold(void **state) {
    (void)state;
    /* touched just before flush k: gone at the first 64th flush where flushes - k > after */
    agg_t a;
    agg_init(&a, 0);
    int err;
    for (int f = 1; f <= 60; f++) agg_batch_free(agg_flush(&a, INGEST_UDP, 4, &err));
    add_ok(&a, "late:1|c"); /* last_flush = 60 */
    agg_batch_free(agg_flush(&a, INGEST_UDP, 4, &err)); /* 61 */
    for (int f = 62; f <= 64; f++) agg_batch_free(agg_flush(&a, INGEST_UDP, 4, &err));
    assert_int_equal(a.n, 1); /* 64 - 60 = 4, not > 4 */
    for (int f = 65; f <= 128; f++) agg_batch_free(agg_flush(&a, INGEST_UDP, 4, &err));
    assert_int_equal(a.n, 0);
    agg_free(&a);
}

/* xorshift64*: fixed seed */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void test_many_keys_growth_and_deletion(void **state) {
    (void)state;
    enum { N = 50000 };
    agg_t a;
    agg_init(&a, 0);
    int err;
    char line[96];
    /* shuffled ids so that table positions are not in insertion order */
    uint32_t *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    for (uint32_t i = 0; i < N; i++) ids[i] = i;
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng() % (i + 1));
        uint32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    for (uint32_t i = 0; i < N; i++) {
        snprintf(line, sizeof line, "k%u:1|c|#h:%u", ids[i], ids[i] % 7);
        add_ok(&a, line);
    }
    assert_int_equal(a.n, N);
    assert_true(a.cap >= N && (a.cap & (a.cap - 1)) == 0);
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 2, &err); /* flush 1 */
    assert_int_equal(b->n, N);
    agg_batch_free(b);
    /* keep the even ids alive; the odd ones go idle and are evicted at flush 64 */
    for (int f = 2; f <= 64; f++) {
        for (uint32_t i = 0; i < N; i++) {
            if (ids[i] & 1) continue;
            if (f != 64 && f % 16 != 0) continue; /* touched often enough */
            snprintf(line, sizeof line, "k%u:1|c|#h:%u", ids[i], ids[i] % 7);
            add_ok(&a, line);
        }
        agg_batch_free(agg_flush(&a, INGEST_UDP, 20, &err));
        assert_int_equal(err, 0);
    }
    assert_int_equal(a.n, N / 2);
    /* every remaining key is still found (backward-shift deletion kept probe chains
     * intact): adding to each creates no new entry and gives one delta per key */
    for (uint32_t i = 0; i < N; i++) {
        if (ids[i] & 1) continue;
        snprintf(line, sizeof line, "k%u:2|c|#h:%u", ids[i], ids[i] % 7);
        add_ok(&a, line);
        add_ok(&a, line);
    }
    assert_int_equal(a.n, N / 2);
    b = flush(&a);
    assert_int_equal(b->n, N / 2);
    for (uint32_t i = 0; i < b->n; i++) {
        assert_true(b->d[i].v.counter == 4);
        assert_int_equal(b->d[i].nlines, 2);
        const char *name = skey_name(b->d[i].key);
        assert_int_equal(name[0], 'k');
        assert_int_equal(atoi(name + 1) & 1, 0);
    }
    agg_batch_free(b);
    /* the evicted odd keys come back as new entries */
    for (uint32_t i = 0; i < N; i++) {
        if (!(ids[i] & 1)) continue;
        snprintf(line, sizeof line, "k%u:1|c|#h:%u", ids[i], ids[i] % 7);
        add_ok(&a, line);
    }
    assert_int_equal(a.n, N);
    b = flush(&a);
    assert_int_equal(b->n, N / 2);
    agg_batch_free(b);
    free(ids);
    agg_free(&a);
}

/* Regression: the raw key once joined name and tags with the bytes 0x1f/0x1e, which may
 * occur inside a name or a tag value, so "a\x1f" "b\x1e" "c:1|c" (series a_b_c) and
 * "a:5|c|#b:c" (series a{b="c"}) shared one raw key. Segments are length-prefixed now. */
static void test_raw_key_no_collision(void **state) {
    (void)state;
    agg_t a;
    agg_init(&a, 0);
    add_ok(&a, "a\x1f" "b\x1e" "c:1|c");
    add_ok(&a, "a:5|c|#b:c");
    agg_batch_t *b = flush(&a);
    uint32_t n = b->n;
    agg_batch_free(b);
    agg_free(&a);
    assert_int_equal(n, 2);
}

static void test_transport_names(void **state) {
    (void)state;
    assert_string_equal(ingest_transport_name(INGEST_UDP), "udp");
    assert_string_equal(ingest_transport_name(INGEST_HTTP), "http");
    assert_string_equal(ingest_transport_name(INGEST_WS), "ws");
    assert_string_equal(ingest_transport_name(INGEST_TRANSPORT_COUNT), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_rate),
        cmocka_unit_test(test_counter_total),
        cmocka_unit_test(test_gauge_rules),
        cmocka_unit_test(test_timer_moved),
        cmocka_unit_test(test_set_members),
        cmocka_unit_test(test_set_insert_helper),
        cmocka_unit_test(test_flush_nothing),
        cmocka_unit_test(test_accumulators_restart),
        cmocka_unit_test(test_same_raw_key_one_entry),
        cmocka_unit_test(test_kinds_separate),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_max_entries),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_eviction_threshold),
        cmocka_unit_test(test_many_keys_growth_and_deletion),
        cmocka_unit_test(test_transport_names),
        cmocka_unit_test(test_raw_key_no_collision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
