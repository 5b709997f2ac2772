/* libFuzzer target for the quantile sketch: the input is a program of operations (add,
 * merge, quantile, reset, free) on a few sketches. Every sketch carries a reference list
 * of what went in, so besides min <= quantile <= max the α guarantee is checked against
 * the exact weighted quantile whenever the data is small enough to keep and spans less
 * than the bucket cap. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sketch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSK 3
#define REF_MAX 512

typedef struct {
    double v, w;
} ref_t;

typedef struct {
    sketch_t s;
    ref_t ref[REF_MAX];
    int nref;
    int exact; /* ref[] holds everything that went in */
} subject_t;

typedef struct {
    const uint8_t *p, *end;
} input_t;

static int take(input_t *in, void *out, size_t n) {
    if ((size_t)(in->end - in->p) < n) return -1;
    memcpy(out, in->p, n);
    in->p += n;
    return 0;
}

static int cmp_ref(const void *a, const void *b) {
    double x = ((const ref_t *)a)->v, y = ((const ref_t *)b)->v;
    return (x > y) - (x < y);
}

/* Indexes a magnitude spans, at the sketch's resolution. */
static double span_buckets(double lo, double hi) {
    return (log(hi) - log(lo)) / log((1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA));
}

/* True unless one of the stores may have been folded by the 4096-bucket cap (checked
 * with a margin, as the cap applies to the allocated range). */
static int within_cap(const subject_t *x) {
    double plo = INFINITY, phi = 0, nlo = INFINITY, nhi = 0;
    for (int i = 0; i < x->nref; i++) {
        double a = fabs(x->ref[i].v);
        if (a < SKETCH_MIN_VALUE) continue;
        double *lo = x->ref[i].v > 0 ? &plo : &nlo, *hi = x->ref[i].v > 0 ? &phi : &nhi;
        if (a < *lo) *lo = a;
        if (a > *hi) *hi = a;
    }
    return (phi == 0 || span_buckets(plo, phi) < 4000) &&
           (nhi == 0 || span_buckets(nlo, nhi) < 4000);
}

static void check_quantile(subject_t *x, double q) {
    const sketch_t *s = &x->s;
    double est = sketch_quantile(s, q);
    if (s->count == 0 || !(q >= 0 && q <= 1)) {
        assert(isnan(est));
        return;
    }
    assert(!isnan(est));
    assert(s->min <= est && est <= s->max);
    if (q == 0) assert(est == s->min);
    if (q == 1) assert(est == s->max);
    if (!x->exact || x->nref == 0 || !within_cap(x)) return;
    /* the same convention as the sketch (nearest rank): first value whose cumulative
     * weight reaches qW; weights are small integers, so these sums are exact */
    ref_t sorted[REF_MAX];
    memcpy(sorted, x->ref, (size_t)x->nref * sizeof *sorted);
    qsort(sorted, (size_t)x->nref, sizeof *sorted, cmp_ref);
    double total = 0;
    for (int i = 0; i < x->nref; i++)
        total += sorted[i].w;
    assert(total == s->count);
    double rank = q * total * (1 - 1e-12), cum = 0, want = sorted[x->nref - 1].v;
    for (int i = 0; i < x->nref; i++) {
        cum += sorted[i].w;
        if (cum >= rank) {
            want = sorted[i].v;
            break;
        }
    }
    /* |v| < SKETCH_MIN_VALUE all read back as 0: an absolute slack of that much */
    assert(fabs(est - want) <= (SKETCH_ALPHA + 1e-9) * fabs(want) + SKETCH_MIN_VALUE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static subject_t x[NSK];
    for (int i = 0; i < NSK; i++) {
        sketch_init(&x[i].s);
        x[i].nref = 0;
        x[i].exact = 1;
    }
    input_t in = {data, data + size};
    uint8_t op;
    while (take(&in, &op, 1) == 0) {
        subject_t *a = &x[op % NSK];
        switch ((op >> 2) % 8) {
        case 0:
        case 1:
        case 2: { /* add a raw double, weight 1..4 */
            double v;
            if (take(&in, &v, sizeof v) < 0) break;
            double w = 1 + (op >> 5) % 4;
            int rc = sketch_add(&a->s, v, w);
            if (!isfinite(v)) {
                assert(rc == -EINVAL);
                break;
            }
            assert(rc == 0);
            if (a->nref < REF_MAX)
                a->ref[a->nref++] = (ref_t){v, w};
            else
                a->exact = 0;
            break;
        }
        case 3: { /* add a "realistic" value: small mantissa, exponent from a byte */
            uint8_t b[2];
            if (take(&in, b, 2) < 0) break;
            double v = (b[0] - 128) * pow(10, (b[1] % 40) - 20);
            assert(sketch_add(&a->s, v, 1) == 0);
            if (a->nref < REF_MAX)
                a->ref[a->nref++] = (ref_t){v, 1};
            else
                a->exact = 0;
            break;
        }
        case 4: { /* merge another sketch (or itself) into a */
            subject_t *b = &x[(op >> 5) % NSK];
            double before = a->s.count;
            assert(sketch_merge(&a->s, &b->s) == 0);
            assert(a->s.count >= before);
            if (b == a) {
                a->exact = 0;
            } else if (a->nref + b->nref <= REF_MAX) {
                memcpy(a->ref + a->nref, b->ref, (size_t)b->nref * sizeof *b->ref);
                a->nref += b->nref;
                a->exact &= b->exact;
            } else {
                a->exact = 0;
            }
            break;
        }
        case 5: { /* quantile at q = byte/255, or a raw double */
            uint8_t b;
            if (take(&in, &b, 1) < 0) break;
            double q = b / 255.0;
            if (b == 0xAB && take(&in, &q, sizeof q) < 0) break;
            check_quantile(a, q);
            break;
        }
        case 6:
            sketch_reset(&a->s);
            a->nref = 0;
            a->exact = 1;
            break;
        case 7:
            sketch_free(&a->s);
            sketch_init(&a->s);
            a->nref = 0;
            a->exact = 1;
            break;
        }
    }
    for (int i = 0; i < NSK; i++) {
        static const double qs[] = {0, 0.01, 0.5, 0.9, 0.99, 1};
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++)
            check_quantile(&x[i], qs[k]);
        assert(x[i].s.pos.len <= 4096 && x[i].s.neg.len <= 4096);
        sketch_free(&x[i].s);
    }
    return 0;
}
