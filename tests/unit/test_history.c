/* history: the per-series ring of 1 s points — order, same-second overwrite, growth up to
 * max, wrap-around, the binary search, timer extras. */
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

#include "history.h"

static void expect_point(const history_t *h, uint32_t i, uint32_t want_t, double want_v) {
    uint32_t t;
    double v;
    history_get(h, i, &t, &v, NULL);
    assert_int_equal(t, want_t);
    assert_true(v == want_v);
}

static void test_empty(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 10);
    assert_int_equal(h.len, 0);
    assert_int_equal(history_first_from(&h, 0), 0);
    assert_int_equal(history_first_from(&h, 1000), 0);
    history_free(&h);
    assert_int_equal(h.max, 10); /* free leaves it reusable */
    assert_int_equal(history_push(&h, 5, 1.0, NULL), 0);
    assert_int_equal(h.len, 1);
    history_free(&h);

    history_init(&h, 0); /* max 0 means 1 */
    assert_int_equal(h.max, 1);
    history_free(&h);
}

static void test_push_get_order(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 100);
    for (uint32_t i = 0; i < 10; i++) assert_int_equal(history_push(&h, 1000 + i * 3, i * 1.5, NULL), 0);
    assert_int_equal(h.len, 10);
    for (uint32_t i = 0; i < 10; i++) expect_point(&h, i, 1000 + i * 3, i * 1.5);
    history_free(&h);
}

static void test_same_second_overwrites(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 8);
    history_push(&h, 10, 1, NULL);
    history_push(&h, 11, 2, NULL);
    history_push(&h, 11, 3, NULL);
    history_push(&h, 11, 4, NULL);
    assert_int_equal(h.len, 2);
    expect_point(&h, 0, 10, 1);
    expect_point(&h, 1, 11, 4);
    history_free(&h);
}

static void test_growth_to_max(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 1000);
    uint32_t prev_cap = 0;
    int grew = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        assert_int_equal(history_push(&h, i, (double)i, NULL), 0);
        assert_true(h.cap <= h.max);
        assert_true(h.cap >= h.len);
        if (h.cap != prev_cap) grew++;
        prev_cap = h.cap;
    }
    assert_true(grew > 3); /* started small, doubled */
    assert_int_equal(h.cap, 1000);
    assert_int_equal(h.len, 1000);
    for (uint32_t i = 0; i < 1000; i++) expect_point(&h, i, i, (double)i);
    history_free(&h);
}

/* Rings created together (one StatsD burst creating many series) and fed in lockstep must
 * not all double in the same second: each has its own fill point between half full and
 * full. Also: the points survive the in-place growth, a timer's extras included. */
static void test_growth_staggered(void **state) {
    (void)state;
    enum { N = 512, MAX = 3600 };
    history_t *hs = calloc(N, sizeof *hs);
    assert_non_null(hs);
    for (int r = 0; r < N; r++) history_init(&hs[r], MAX);
    int worst = 0; /* most rings that grew in one second, once rings are large */
    double ex[HIST_EXTRAS] = {1, 2, 3, 4, 5, 6, 7};
    for (uint32_t t = 0; t < 2 * MAX; t++) {
        int grew = 0;
        for (int r = 0; r < N; r++) {
            uint32_t cap = hs[r].cap;
            assert_int_equal(history_push(&hs[r], t, (double)t, r == 0 ? ex : NULL), 0);
            if (hs[r].cap != cap && cap >= 256) grew++;
        }
        if (grew > worst) worst = grew;
    }
    /* all N at once before; spread over >= cap/2 seconds now: a few per second */
    assert_true(worst < N / 8);
    for (int r = 0; r < N; r++) {
        assert_int_equal(hs[r].cap, MAX);
        assert_int_equal(hs[r].len, MAX);
        for (uint32_t i = 0; i < MAX; i += 97) expect_point(&hs[r], i, MAX + i, (double)(MAX + i));
    }
    double got[HIST_EXTRAS];
    uint32_t t;
    double v;
    history_get(&hs[0], MAX - 1, &t, &v, got);
    assert_int_equal(t, 2 * MAX - 1);
    for (int j = 0; j < HIST_EXTRAS; j++) assert_true(got[j] == ex[j]);
    for (int r = 0; r < N; r++) history_free(&hs[r]);
    free(hs);
}

static void test_wrap_around(void **state) {
    (void)state;
    /* a max that is not a power of two, and far more points than fit */
    history_t h;
    history_init(&h, 37);
    for (uint32_t i = 0; i < 500; i++) {
        assert_int_equal(history_push(&h, 100 + 2 * i, (double)i, NULL), 0);
        uint32_t want_len = i + 1 < 37 ? i + 1 : 37;
        assert_int_equal(h.len, want_len);
        /* the oldest kept point is always i - len + 1 */
        uint32_t oldest = i + 1 - want_len;
        expect_point(&h, 0, 100 + 2 * oldest, (double)oldest);
        expect_point(&h, want_len - 1, 100 + 2 * i, (double)i);
    }
    for (uint32_t k = 0; k < 37; k++) expect_point(&h, k, 100 + 2 * (463 + k), 463.0 + k);
    /* same-second overwrite on a wrapped ring hits the newest point */
    history_push(&h, 100 + 2 * 499, -1, NULL);
    assert_int_equal(h.len, 37);
    expect_point(&h, 36, 100 + 2 * 499, -1);
    expect_point(&h, 0, 100 + 2 * 463, 463);
    history_free(&h);
}

static void test_max_one(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 1);
    for (uint32_t i = 0; i < 5; i++) history_push(&h, i, i, NULL);
    assert_int_equal(h.len, 1);
    expect_point(&h, 0, 4, 4);
    history_free(&h);
}

static void test_first_from(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 50);
    /* wrap it so that the search crosses the ring's end: t = 10, 20, ..., kept the last 50 */
    for (uint32_t i = 1; i <= 80; i++) history_push(&h, i * 10, i, NULL);
    assert_int_equal(h.len, 50);
    /* oldest is t = 310 */
    assert_int_equal(history_first_from(&h, 0), 0);
    assert_int_equal(history_first_from(&h, 310), 0);
    assert_int_equal(history_first_from(&h, 311), 1);
    assert_int_equal(history_first_from(&h, 320), 1);
    assert_int_equal(history_first_from(&h, 555), 25); /* first >= 555 is 560 */
    assert_int_equal(history_first_from(&h, 800), 49);
    assert_int_equal(history_first_from(&h, 801), 50); /* after all */
    assert_int_equal(history_first_from(&h, UINT32_MAX), 50);
    /* exhaustively against a linear scan */
    for (uint32_t from = 0; from < 900; from++) {
        uint32_t want = 0;
        while (want < h.len) {
            uint32_t t;
            double v;
            history_get(&h, want, &t, &v, NULL);
            if (t >= from) break;
            want++;
        }
        assert_int_equal(history_first_from(&h, from), want);
    }
    history_free(&h);
}

static void test_timer_extras(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 16);
    double x1[HIST_EXTRAS] = {3, 60, 10, 30, 20, 29.5, 30};
    double x2[HIST_EXTRAS] = {1, 5, 5, 5, 5, 5, 5};
    assert_int_equal(history_push(&h, 100, 20, x1), 0);
    assert_int_equal(history_push(&h, 101, 5, x2), 0);
    double out[HIST_EXTRAS];
    uint32_t t;
    double v;
    history_get(&h, 0, &t, &v, out);
    assert_int_equal(t, 100);
    assert_true(v == 20);
    for (int j = 0; j < HIST_EXTRAS; j++) assert_true(out[j] == x1[j]); /* exact as floats */
    history_get(&h, 1, &t, &v, out);
    for (int j = 0; j < HIST_EXTRAS; j++) assert_true(out[j] == x2[j]);
    /* same second overwrite replaces extras too */
    double x3[HIST_EXTRAS] = {2, 8, 2, 6, 2, 6, 6};
    history_push(&h, 101, 4, x3);
    assert_int_equal(h.len, 2);
    history_get(&h, 1, &t, &v, out);
    assert_true(v == 4);
    for (int j = 0; j < HIST_EXTRAS; j++) assert_true(out[j] == x3[j]);
    /* extras survive growth and wrap */
    for (uint32_t i = 0; i < 40; i++) {
        double x[HIST_EXTRAS];
        for (int j = 0; j < HIST_EXTRAS; j++) x[j] = i * 10 + j;
        history_push(&h, 200 + i, i, x);
    }
    assert_int_equal(h.len, 16);
    for (uint32_t k = 0; k < 16; k++) {
        history_get(&h, k, &t, &v, out);
        uint32_t i = 24 + k;
        assert_int_equal(t, 200 + i);
        for (int j = 0; j < HIST_EXTRAS; j++) assert_true(out[j] == (double)(i * 10 + j));
    }
    history_free(&h);
}

static void test_non_timer_extras_nan(void **state) {
    (void)state;
    history_t h;
    history_init(&h, 8);
    history_push(&h, 1, 1, NULL);
    history_push(&h, 2, 2, NULL);
    double out[HIST_EXTRAS];
    uint32_t t;
    double v;
    for (uint32_t i = 0; i < 2; i++) {
        for (int j = 0; j < HIST_EXTRAS; j++) out[j] = 0;
        history_get(&h, i, &t, &v, out);
        for (int j = 0; j < HIST_EXTRAS; j++) assert_true(isnan(out[j]));
    }
    /* a plain point pushed after timer points has NaN extras, the timer points keep theirs */
    double x[HIST_EXTRAS] = {1, 2, 3, 4, 5, 6, 7};
    history_push(&h, 3, 3, x);
    history_push(&h, 4, 4, NULL);
    history_get(&h, 0, &t, &v, out);
    assert_true(isnan(out[HIST_COUNT]));
    history_get(&h, 2, &t, &v, out);
    assert_true(out[HIST_COUNT] == 1 && out[HIST_P99] == 7);
    history_get(&h, 3, &t, &v, out);
    for (int j = 0; j < HIST_EXTRAS; j++) assert_true(isnan(out[j]));
    history_free(&h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_push_get_order),
        cmocka_unit_test(test_same_second_overwrites),
        cmocka_unit_test(test_growth_to_max),
        cmocka_unit_test(test_growth_staggered),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_max_one),
        cmocka_unit_test(test_first_from),
        cmocka_unit_test(test_timer_extras),
        cmocka_unit_test(test_non_timer_extras_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
