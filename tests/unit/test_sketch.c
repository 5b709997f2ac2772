/* sketch: the relative-error guarantee against exact quantiles of sorted data, merge =
 * sketch of the union, weights, empty/reset/reuse, and the bucket cap keeping min/max
 * exact. A private xorshift PRNG with fixed seeds: no dependence on libc rand(). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sketch.h"

#define N 20000

static uint64_t rng;
static void seed(uint64_t s) {
    rng = s ? s : 1;
}
static uint64_t next_u64(void) {
    uint64_t x = rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng = x;
}
/* uniform in (0, 1): never 0, so log() below stays finite */
static double uniform01(void) {
    return ((double)(next_u64() >> 11) + 0.5) * 0x1.0p-53;
}
static double normal(void) { /* Box-Muller */
    return sqrt(-2 * log(uniform01())) * cos(2 * M_PI * uniform01());
}

typedef double (*gen_fn)(int i);
static double gen_uniform(int i) {
    (void)i;
    return 1 + 999 * uniform01();
}
static double gen_exponential(int i) {
    (void)i;
    return -log(uniform01()) * 50;
}
static double gen_lognormal(int i) { /* ~6 decades: e^(±3σ) with σ = 2.3 */
    (void)i;
    return exp(normal() * 2.3);
}
static double gen_constant(int i) {
    (void)i;
    return 42.5;
}
static double gen_mixed_sign(int i) {
    (void)i;
    double v = exp(normal() * 1.5);
    return (next_u64() & 1) ? -v : v;
}
static double gen_with_zeros(int i) {
    if (i % 4 == 0) return 0;
    double v = 1 + 99 * uniform01();
    return i % 3 == 0 ? -v : v;
}
static double gen_integers(int i) {
    return (double)(i % 100);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The guarantee: within α (relative) of the value really at the nearest rank ⌈q·n⌉. */
static void check_quantiles(const sketch_t *s, double *sorted, int n, const char *what) {
    static const double qs[] = {0.5, 0.9, 0.99, 0.01, 0.25, 0.75, 0.999};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        int idx = (int)ceil(qs[k] * n - 1e-9) - 1;
        double want = sorted[idx < 0 ? 0 : idx];
        double got = sketch_quantile(s, qs[k]);
        if (!(fabs(got - want) <= (SKETCH_ALPHA + 1e-9) * fabs(want)))
            fail_msg("%s q=%g: got %.17g want %.17g (rel %.3g)", what, qs[k], got, want,
                     fabs(got - want) / fabs(want));
    }
    assert_true(sketch_quantile(s, 0) == sorted[0]);
    assert_true(sketch_quantile(s, 1) == sorted[n - 1]);
}

/* sketch.c holds γ and ln γ as literals: values just either side of every bucket edge
 * γ^i must still come back within α, which fails far from 1 if those drift from α. */
static void test_constants(void **state) {
    (void)state;
    const double gamma = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA);
    sketch_t s;
    sketch_init(&s);
    for (int i = -1030; i <= 1030; i += 3) {
        double edge = pow(gamma, i);
        for (int side = -1; side <= 1; side += 2) {
            double v = edge * (1 + side * 1e-7); /* 5e-6 of a bucket: far above log() noise */
            sketch_reset(&s);
            assert_int_equal(sketch_add(&s, v, 1), 0);
            assert_int_equal(sketch_add(&s, v * 1.5, 1), 0); /* so q=0.25 is not clamped */
            double est = sketch_quantile(&s, 0.25);
            if (!(fabs(est - v) <= (SKETCH_ALPHA + 1e-9) * v))
                fail_msg("edge γ^%d%+d: got %.17g for %.17g", i, side, est, v);
        }
    }
    sketch_free(&s);
}

static void test_relative_error(void **state) {
    (void)state;
    static const struct {
        const char *name;
        gen_fn gen;
    } dists[] = {
        {"uniform 1..1000", gen_uniform}, {"exponential", gen_exponential},
        {"lognormal", gen_lognormal},     {"constant", gen_constant},
        {"mixed sign", gen_mixed_sign},   {"with zeros", gen_with_zeros},
        {"integers", gen_integers},
    };
    double *data = malloc(N * sizeof *data);
    assert_non_null(data);
    for (size_t d = 0; d < sizeof dists / sizeof dists[0]; d++) {
        seed(0xC0FFEE + d);
        sketch_t s;
        sketch_init(&s);
        double sum = 0;
        for (int i = 0; i < N; i++) {
            data[i] = dists[d].gen(i);
            sum += data[i];
            assert_int_equal(sketch_add(&s, data[i], 1), 0);
        }
        qsort(data, N, sizeof *data, cmp_double);
        assert_true(s.count == N);
        assert_true(fabs(s.sum - sum) <= 1e-9 * fabs(sum) + 1e-9);
        assert_true(s.min == data[0] && s.max == data[N - 1]);
        check_quantiles(&s, data, N, dists[d].name);
        /* small n too: the rank convention matters most there */
        for (int n = 1; n <= 7; n++) {
            sketch_t t;
            sketch_init(&t);
            double small[7];
            seed(0xBEEF + (uint64_t)n + 100 * d);
            for (int i = 0; i < n; i++) {
                small[i] = dists[d].gen(i);
                assert_int_equal(sketch_add(&t, small[i], 1), 0);
            }
            qsort(small, (size_t)n, sizeof *small, cmp_double);
            check_quantiles(&t, small, n, dists[d].name);
            sketch_free(&t);
        }
        sketch_free(&s);
    }
    free(data);
}

/* Merging per-part sketches gives the sketch of the union: same quantiles, bit for bit. */
static void test_merge_is_union(void **state) {
    (void)state;
    sketch_t a, b, u, e;
    sketch_init(&a);
    sketch_init(&b);
    sketch_init(&u);
    sketch_init(&e);
    seed(7);
    for (int i = 0; i < 5000; i++) {
        double v = gen_mixed_sign(i) * (i % 2 ? 1000 : 1); /* different ranges per part */
        assert_int_equal(sketch_add(i % 2 ? &a : &b, v, 1), 0);
        assert_int_equal(sketch_add(&u, v, 1), 0);
    }
    assert_int_equal(sketch_add(&b, 0, 3), 0);
    assert_int_equal(sketch_add(&u, 0, 3), 0);
    assert_int_equal(sketch_merge(&a, &b), 0);
    assert_int_equal(sketch_merge(&a, &e), 0); /* empty source: no-op */
    assert_true(a.count == u.count);
    assert_true(a.min == u.min && a.max == u.max);
    assert_true(a.zero == u.zero);
    for (double q = 0; q <= 1.0; q += 0.01)
        assert_true(sketch_quantile(&a, q) == sketch_quantile(&u, q));
    /* into an empty sketch: a copy */
    assert_int_equal(sketch_merge(&e, &u), 0);
    for (double q = 0; q <= 1.0; q += 0.05)
        assert_true(sketch_quantile(&e, q) == sketch_quantile(&u, q));
    assert_true(e.min == u.min && e.max == u.max && e.sum == u.sum);
    /* with itself: every weight doubled, quantiles as before */
    double before = sketch_quantile(&e, 0.3);
    assert_int_equal(sketch_merge(&e, &e), 0);
    assert_true(e.count == 2 * u.count);
    assert_true(fabs(sketch_quantile(&e, 0.3) - before) <= SKETCH_ALPHA * 2 * fabs(before));
    sketch_free(&a);
    sketch_free(&b);
    sketch_free(&u);
    sketch_free(&e);
}

/* A weight w counts as w values (sample rate 1/w). */
static void test_weights(void **state) {
    (void)state;
    sketch_t w, x;
    sketch_init(&w);
    sketch_init(&x);
    /* 10 at weight 9 (rate 1/9) and 100 at weight 1: the median is 10 */
    assert_int_equal(sketch_add(&w, 10, 9), 0);
    assert_int_equal(sketch_add(&w, 100, 1), 0);
    assert_true(w.count == 10);
    assert_true(w.sum == 190);
    assert_true(fabs(sketch_quantile(&w, 0.5) - 10) <= 0.1 + 1e-9);
    assert_true(fabs(sketch_quantile(&w, 0.9) - 10) <= 0.1 + 1e-9);   /* rank 9: the 9th */
    assert_true(fabs(sketch_quantile(&w, 0.95) - 100) <= 1 + 1e-9);  /* rank 9.5: the 10th */
    assert_true(sketch_quantile(&w, 1) == 100);
    /* same as nine separate adds */
    for (int i = 0; i < 9; i++)
        assert_int_equal(sketch_add(&x, 10, 1), 0);
    assert_int_equal(sketch_add(&x, 100, 1), 0);
    for (double q = 0; q <= 1.0; q += 0.05)
        assert_true(sketch_quantile(&w, q) == sketch_quantile(&x, q));
    /* fractional weights (rate 0.3) */
    sketch_reset(&w);
    for (int i = 0; i < 30; i++)
        assert_int_equal(sketch_add(&w, 5, 1 / 0.3), 0);
    assert_true(fabs(w.count - 100) < 1e-9);
    /* invalid input leaves the sketch alone */
    assert_int_equal(sketch_add(&w, 1, 0), -EINVAL);
    assert_int_equal(sketch_add(&w, 1, -1), -EINVAL);
    assert_int_equal(sketch_add(&w, 1, NAN), -EINVAL);
    assert_int_equal(sketch_add(&w, NAN, 1), -EINVAL);
    assert_int_equal(sketch_add(&w, INFINITY, 1), -EINVAL);
    assert_true(fabs(w.count - 100) < 1e-9);
    assert_true(w.min == 5 && w.max == 5);
    sketch_free(&w);
    sketch_free(&x);
}

static void test_empty_reset_reuse(void **state) {
    (void)state;
    sketch_t s;
    sketch_init(&s);
    assert_true(isnan(sketch_quantile(&s, 0.5)));
    assert_true(isnan(sketch_quantile(&s, 0)));
    assert_true(isnan(sketch_quantile(&s, 1)));
    assert_int_equal(sketch_add(&s, 3, 1), 0);
    assert_true(isnan(sketch_quantile(&s, -0.1)));
    assert_true(isnan(sketch_quantile(&s, 1.1)));
    assert_true(isnan(sketch_quantile(&s, NAN)));
    assert_true(sketch_quantile(&s, 0.5) == 3); /* clamped into [min, max] */
    double *keep = s.pos.counts;
    sketch_reset(&s);
    assert_true(s.pos.counts == keep); /* allocation kept */
    assert_true(s.count == 0 && s.sum == 0 && s.zero == 0);
    assert_true(isnan(sketch_quantile(&s, 0.5)));
    assert_int_equal(sketch_add(&s, -8, 1), 0); /* min/max from the new data only */
    assert_true(s.min == -8 && s.max == -8);
    assert_true(sketch_quantile(&s, 0.5) == -8);
    sketch_free(&s);
    assert_null(s.pos.counts);
    assert_null(s.neg.counts);
    sketch_init(&s);
    assert_int_equal(sketch_add(&s, 1, 1), 0);
    assert_true(sketch_quantile(&s, 0.5) == 1);
    sketch_free(&s);
    sketch_free(&s); /* twice is harmless */
}

/* Spanning far more than the cap: memory stays bounded, min/max stay exact and high
 * quantiles keep the guarantee (only the folded low tail loses it). */
static void test_capped_store(void **state) {
    (void)state;
    sketch_t s;
    sketch_init(&s);
    assert_int_equal(sketch_add(&s, 1e-8, 1), 0);
    assert_int_equal(sketch_add(&s, 1e300, 1), 0);
    assert_int_equal(sketch_add(&s, -1e300, 1), 0);
    assert_int_equal(sketch_add(&s, -1e-8, 1), 0);
    for (double v = 1e-9; v < 1e308; v *= 1.5)
        assert_int_equal(sketch_add(&s, v, 1), 0);
    assert_true(s.pos.len <= 4096);
    assert_true(s.neg.len <= 4096);
    assert_true(sketch_quantile(&s, 0) == -1e300);
    assert_true(sketch_quantile(&s, 1) > 1.0e307);
    assert_true(sketch_quantile(&s, 1) == s.max);
    for (double q = 0; q <= 1; q += 0.01) {
        double v = sketch_quantile(&s, q);
        assert_true(v >= s.min && v <= s.max);
    }
    /* the top of the range keeps α */
    sketch_t t;
    sketch_init(&t);
    assert_int_equal(sketch_add(&t, 1e-9, 1), 0);
    for (int i = 0; i < 99; i++)
        assert_int_equal(sketch_add(&t, 1e200 * (1 + i), 1), 0);
    assert_true(t.pos.len <= 4096);
    assert_true(sketch_quantile(&t, 0) == 1e-9);
    double p90 = sketch_quantile(&t, 0.9); /* rank 89.1 → the 90th value, 89e200 */
    assert_true(fabs(p90 - 89e200) <= (SKETCH_ALPHA + 1e-9) * 89e200);
    /* merging a capped sketch into a fresh one keeps the bound */
    sketch_t m;
    sketch_init(&m);
    assert_int_equal(sketch_merge(&m, &s), 0);
    assert_int_equal(sketch_merge(&m, &t), 0);
    assert_true(m.pos.len <= 4096 && m.neg.len <= 4096);
    assert_true(m.min == -1e300 && m.max == s.max);
    sketch_free(&s);
    sketch_free(&t);
    sketch_free(&m);
}

/* A store is folded only by the data it holds: not by where a reset store used to be, and
 * not by headroom left over from growing. (Found by fuzz/fuzz_sketch.c.) */
static void test_no_fold_from_stale_window(void **state) {
    (void)state;
    sketch_t s;
    sketch_init(&s);
    for (double v = 1e100; v < 1e180; v *= 1.3)
        assert_int_equal(sketch_add(&s, v, 1), 0);
    assert_true(s.pos.len == 4096);
    double *keep = s.pos.counts;
    sketch_reset(&s);
    static const double vals[] = {0.00033, 0.21, 5.8, 95, 220, 320, 5900, 6000, 6900, 96000};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_int_equal(sketch_add(&s, vals[i], 1), 0);
    assert_true(s.pos.counts == keep); /* re-centred in place, not reallocated */
    double sorted[sizeof vals / sizeof vals[0]];
    memcpy(sorted, vals, sizeof vals);
    check_quantiles(&s, sorted, (int)(sizeof vals / sizeof vals[0]), "after reset");

    /* grow upwards to just under the cap, then add below: shifts, does not fold */
    sketch_reset(&s);
    double *data = malloc(5000 * sizeof *data);
    assert_non_null(data);
    int n = 0;
    for (double v = 1; n < 2000 && v < 1e30; v *= 1.031)
        data[n++] = v; /* ~1.5 buckets apart */
    for (int i = 0; i < n; i++)
        assert_int_equal(sketch_add(&s, data[i], 1), 0);
    for (int i = 0; i < 200; i++) {
        data[n] = pow(1.0202, -(double)i * 3);
        assert_int_equal(sketch_add(&s, data[n++], 1), 0);
    }
    qsort(data, (size_t)n, sizeof *data, cmp_double);
    check_quantiles(&s, data, n, "grown both ways under the cap");
    free(data);
    sketch_free(&s);
}

/* The bucket index without log() (sketch__bucket_index) is the definition's
 * (ceil(log(v)/lnγ), sketch__bucket_index_libm) exactly: at and a few ulps either side of
 * every bucket edge from SKETCH_MIN_VALUE to DBL_MAX, on random doubles of every exponent
 * in that range, and on the integers and short decimals that StatsD timers carry. */
static uint64_t bi_rng = 0x9e3779b97f4a7c15ULL;
static void check_index(double v) {
    if (!(v >= SKETCH_MIN_VALUE) || !isfinite(v)) return;
    int32_t a = sketch__bucket_index(v), b = sketch__bucket_index_libm(v);
    if (a != b) fail_msg("bucket index of %a (%.17g): %d, the definition says %d", v, v, a, b);
}

static void test_bucket_index(void **state) {
    (void)state;
    const double ln_gamma = log((1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA));
    for (int i = -1040; i <= 35500; i++) {
        double edge = exp(i * ln_gamma);
        double lo = edge, hi = edge;
        check_index(edge);
        for (int k = 0; k < 4; k++) {
            lo = nextafter(lo, 0);
            hi = nextafter(hi, INFINITY);
            check_index(lo);
            check_index(hi);
        }
    }
    for (int i = 0; i < 1000000; i++) {
        bi_rng ^= bi_rng >> 12;
        bi_rng ^= bi_rng << 25;
        bi_rng ^= bi_rng >> 27;
        uint64_t u = (bi_rng * 0x2545F4914F6CDD1DULL) & ~((uint64_t)1 << 63), e = u >> 52;
        if (e < 993 || e > 2046) u = (u & (((uint64_t)1 << 52) - 1)) | (993 + e % 1054) << 52;
        double v;
        memcpy(&v, &u, sizeof v);
        check_index(v);
    }
    for (int i = 1; i <= 300000; i++) {
        check_index(i);
        check_index(i / 100.0);
        check_index(i / 1000.0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constants),
        cmocka_unit_test(test_bucket_index),
        cmocka_unit_test(test_relative_error),
        cmocka_unit_test(test_merge_is_union),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_empty_reset_reuse),
        cmocka_unit_test(test_capped_store),
        cmocka_unit_test(test_no_fold_from_stale_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
