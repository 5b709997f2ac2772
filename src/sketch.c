#include "sketch.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* γ = (1+α)/(1-α) for α = SKETCH_ALPHA = 0.01, and its logarithm. Literals because C has no
 * constant-expression log(); tests/unit/test_sketch.c checks them against libm. */
#define SK_GAMMA (1.01 / 0.99)
#define SK_LN_GAMMA 0.020000666706669435
#define SK_INV_LN_GAMMA 49.99833328888678
/* ln(2/(γ+1)) = ln(1-α): the representative 2γ^i/(γ+1) is exp(i·lnγ + this), which does
 * not overflow for the bucket holding DBL_MAX the way 2·γ^i would */
#define SK_LN_REPR log1p(-SKETCH_ALPHA)

/* Memory bound: a store never spans more than this many bucket indexes (32 KiB of counts;
 * 4096 buckets cover ~35 decades). When a value would stretch a store past it, the
 * lowest buckets are folded into the lowest one kept, as DDSketch's
 * CollapsingLowestDenseStore does: quantiles that land in the kept range keep the α
 * guarantee, those in the folded tail are overestimated (for the negative store the
 * folded tail is the values closest to zero). min and max stay exact regardless. */
#define SK_MAX_BUCKETS 4096
#define SK_MIN_GROW 32 /* buckets of headroom added on each side that grows */

static int32_t bucket_index(double mag) {
    return (int32_t)ceil(log(mag) * SK_INV_LN_GAMMA);
}

static double bucket_value(int32_t i) {
    return exp((double)i * SK_LN_GAMMA + SK_LN_REPR);
}

static int64_t store_hi(const sketch_store_t *st) {
    return (int64_t)st->offset + st->len - 1;
}

/* The index range of a store's non-zero buckets; false when there are none. Cheap where
 * it runs often: a store folded by the cap has both end buckets in use. */
static bool store_used(const sketch_store_t *st, int32_t *lo, int32_t *hi) {
    uint32_t a = 0, b = st->len;
    while (a < b && st->counts[a] == 0)
        a++;
    if (a == b) return false;
    while (st->counts[b - 1] == 0)
        b--;
    *lo = st->offset + (int32_t)a;
    *hi = st->offset + (int32_t)b - 1;
    return true;
}

/* A store's next window, prepared before anything is changed so that running out of
 * memory leaves the sketch as it was. */
typedef struct {
    double *counts; /* NULL: keep the window; == the store's own buffer: it is empty and
                     * only moves (offset); else a new zeroed buffer */
    int32_t offset;
    uint32_t len;
} store_plan_t;

/* Plans a window holding the store's non-zero buckets and [lo, hi]. Decisions use the
 * range in use, not the allocated one, so that neither the headroom nor a reset store's
 * old position ever causes a fold. The window gets headroom on each side that grows, so
 * a drifting distribution does not reallocate on every new bucket; when the cap forces
 * it, the top SK_MAX_BUCKETS indexes are kept and the rest fold into the lowest. */
static int store_plan(const sketch_store_t *st, int32_t lo, int32_t hi, bool headroom,
                      store_plan_t *p) {
    p->counts = NULL;
    /* the buckets in use are inside the window: if [lo, hi] is too, nothing changes (the
     * common case of a merge or add, decided without scanning for the range in use) */
    if (st->len && lo >= st->offset && hi <= store_hi(st)) return 0;
    int32_t ulo = lo, uhi = hi;
    bool used = st->len && store_used(st, &ulo, &uhi);
    int64_t need_lo = ulo < lo ? ulo : lo, need_hi = uhi > hi ? uhi : hi;
    int64_t width = need_hi - need_lo + 1;
    if (st->len) {
        int64_t cur_lo = st->offset, cur_hi = store_hi(st);
        if (need_lo >= cur_lo && need_hi <= cur_hi) return 0;
        /* already the top window of a folded store: the caller folds into bucket 0 */
        if (width > SK_MAX_BUCKETS && st->len == SK_MAX_BUCKETS && need_hi == cur_hi) return 0;
        if (!used && width <= st->len) { /* empty (reset): re-centre the buffer we have */
            p->counts = st->counts;
            p->offset = (int32_t)(need_lo - ((int64_t)st->len - width) / 2);
            p->len = st->len;
            return 0;
        }
    }
    int64_t grow = !headroom ? 0 : width / 2 < SK_MIN_GROW ? SK_MIN_GROW : width / 2;
    int64_t nlo = need_lo, nhi = need_hi;
    if (!used || need_lo < st->offset) nlo -= grow;
    if (!used || need_hi > store_hi(st)) nhi += grow;
    if (nhi - nlo + 1 > SK_MAX_BUCKETS) {
        /* all of the needed range if it fits under the cap, else its top */
        int64_t top = need_lo + SK_MAX_BUCKETS - 1;
        if (top > nhi) top = nhi;
        nhi = top > need_hi ? top : need_hi;
        nlo = nhi - SK_MAX_BUCKETS + 1;
    }
    p->len = (uint32_t)(nhi - nlo + 1);
    p->offset = (int32_t)nlo;
    p->counts = calloc(p->len, sizeof *p->counts);
    return p->counts ? 0 : -ENOMEM;
}

/* Gives up a plan that will not be applied. */
static void store_plan_drop(const sketch_store_t *st, store_plan_t *p) {
    if (p->counts != st->counts) free(p->counts);
    p->counts = NULL;
}

static void store_apply(sketch_store_t *st, store_plan_t *p) {
    if (!p->counts) return;
    if (p->counts != st->counts) {
        for (uint32_t k = 0; k < st->len; k++) {
            if (st->counts[k] == 0) continue;
            int64_t j = (int64_t)st->offset + k - p->offset;
            p->counts[j < 0 ? 0 : j] += st->counts[k];
        }
        free(st->counts);
    }
    st->counts = p->counts;
    st->offset = p->offset;
    st->len = p->len;
    p->counts = NULL;
}

/* Adds w at index i of a store whose window covers i or is folded above it. */
static inline void store_put(sketch_store_t *st, int64_t i, double w) {
    int64_t j = i - st->offset;
    st->counts[j < 0 ? 0 : j] += w;
}

static int store_add(sketch_store_t *st, int32_t i, double w) {
    if (__builtin_expect(st->len != 0 && i >= st->offset && i <= store_hi(st), 1)) {
        st->counts[i - st->offset] += w;
        return 0;
    }
    store_plan_t p;
    if (store_plan(st, i, i, true, &p) < 0) return -ENOMEM;
    store_apply(st, &p);
    store_put(st, i, w);
    return 0;
}

static void store_reset(sketch_store_t *st) {
    if (st->len) memset(st->counts, 0, st->len * sizeof *st->counts);
}

static void store_free(sketch_store_t *st) {
    free(st->counts);
    st->counts = NULL;
    st->offset = 0;
    st->len = 0;
}

/* ---- sketch ------------------------------------------------------------------------- */

/* Empty sketch: count, sum, min and max all 0 (not ±inf), so that a reader that forgets
 * to check count still prints a number. */
void sketch_init(sketch_t *s) {
    memset(s, 0, sizeof *s);
}

void sketch_free(sketch_t *s) {
    store_free(&s->pos);
    store_free(&s->neg);
    sketch_init(s);
}

void sketch_reset(sketch_t *s) {
    store_reset(&s->pos);
    store_reset(&s->neg);
    s->zero = s->count = s->sum = s->min = s->max = 0;
}

static void note_minmax(sketch_t *s, double lo, double hi) {
    if (s->count == 0) {
        s->min = lo;
        s->max = hi;
        return;
    }
    if (lo < s->min) s->min = lo;
    if (hi > s->max) s->max = hi;
}

/* Besides -ENOMEM: -EINVAL for a non-finite v or a weight that is not a finite positive
 * number (either would poison count, sum or min/max for good). */
int sketch_add(sketch_t *s, double v, double w) {
    if (!isfinite(v) || !(w > 0) || !isfinite(w)) return -EINVAL;
    if (v >= SKETCH_MIN_VALUE) {
        if (store_add(&s->pos, bucket_index(v), w) < 0) return -ENOMEM;
    } else if (v <= -SKETCH_MIN_VALUE) {
        if (store_add(&s->neg, bucket_index(-v), w) < 0) return -ENOMEM;
    } else {
        s->zero += w;
    }
    note_minmax(s, v, v);
    s->count += w;
    s->sum += v * w;
    return 0;
}

int sketch_add_many(sketch_t *s, const double *v, size_t n, double w) {
    if (!(w > 0) || !isfinite(w)) return -EINVAL;
    for (size_t k = 0; k < n; k++)
        if (!isfinite(v[k])) return -EINVAL;
    while (n > 0) {
        /* bucket indexes of a chunk first, so that each store is planned (allocated)
         * once for the chunk's whole range instead of growing value by value */
        enum { CHUNK = 64 };
        int32_t idx[CHUNK];
        size_t m = n < CHUNK ? n : CHUNK;
        int32_t plo = INT32_MAX, phi = INT32_MIN, nlo = INT32_MAX, nhi = INT32_MIN;
        for (size_t k = 0; k < m; k++) {
            double x = v[k];
            if (x >= SKETCH_MIN_VALUE) {
                int32_t i = idx[k] = bucket_index(x);
                if (i < plo) plo = i;
                if (i > phi) phi = i;
            } else if (x <= -SKETCH_MIN_VALUE) {
                int32_t i = idx[k] = bucket_index(-x);
                if (i < nlo) nlo = i;
                if (i > nhi) nhi = i;
            }
        }
        /* a store that is still empty gets exactly the range: a sketch filled this way is
         * usually handed over whole, and headroom would only be zeros to allocate and scan */
        store_plan_t pp = {0}, np = {0};
        if (plo <= phi && store_plan(&s->pos, plo, phi, s->pos.len != 0, &pp) < 0) return -ENOMEM;
        if (nlo <= nhi && store_plan(&s->neg, nlo, nhi, s->neg.len != 0, &np) < 0) {
            store_plan_drop(&s->pos, &pp);
            return -ENOMEM;
        }
        store_apply(&s->pos, &pp);
        store_apply(&s->neg, &np);
        /* the same order of operations as m calls of sketch_add: the same sum, bit for bit */
        for (size_t k = 0; k < m; k++) {
            double x = v[k];
            if (x >= SKETCH_MIN_VALUE)
                store_put(&s->pos, idx[k], w);
            else if (x <= -SKETCH_MIN_VALUE)
                store_put(&s->neg, idx[k], w);
            else
                s->zero += w;
            note_minmax(s, x, x);
            s->count += w;
            s->sum += x * w;
        }
        v += m;
        n -= m;
    }
    return 0;
}

long sketch_pack_plan(const sketch_t *src, const double *v, size_t n, int32_t *idx,
                      sketch_pack_plan_t *plan) {
    int32_t plo = INT32_MAX, phi = INT32_MIN, nlo = INT32_MAX, nhi = INT32_MIN;
    if (src) {
        int32_t lo, hi;
        if (store_used(&src->pos, &lo, &hi)) plo = lo, phi = hi;
        if (store_used(&src->neg, &lo, &hi)) nlo = lo, nhi = hi;
    }
    for (size_t k = 0; k < n; k++) {
        double x = v[k];
        if (x >= SKETCH_MIN_VALUE) {
            int32_t i = idx[k] = bucket_index(x);
            if (i < plo) plo = i;
            if (i > phi) phi = i;
        } else if (x <= -SKETCH_MIN_VALUE) {
            int32_t i = idx[k] = bucket_index(-x);
            if (i < nlo) nlo = i;
            if (i > nhi) nhi = i;
        } else {
            idx[k] = 0;
        }
    }
    int64_t pw = plo <= phi ? (int64_t)phi - plo + 1 : 0;
    int64_t nw = nlo <= nhi ? (int64_t)nhi - nlo + 1 : 0;
    if (pw > SK_MAX_BUCKETS || nw > SK_MAX_BUCKETS) return -1;
    plan->plo = plo, plan->phi = phi, plan->nlo = nlo, plan->nhi = nhi;
    return (long)((pw + nw) * (int64_t)sizeof(double));
}

static void pack_store(sketch_store_t *dst, double *space, int32_t lo, int32_t hi,
                       const sketch_store_t *src) {
    if (lo > hi) {
        dst->counts = NULL;
        dst->offset = 0;
        dst->len = 0;
        return;
    }
    dst->counts = space;
    dst->offset = lo;
    dst->len = (uint32_t)(hi - lo + 1);
    memset(space, 0, dst->len * sizeof *space);
    if (!src || !src->len) return;
    int32_t ulo, uhi;
    if (store_used(src, &ulo, &uhi))
        memcpy(space + (ulo - lo), src->counts + (ulo - src->offset),
               (size_t)(uhi - ulo + 1) * sizeof *space);
}

void sketch_pack(sketch_t *dst, double *space, const sketch_pack_plan_t *plan, const sketch_t *src,
                 const double *v, const int32_t *idx, size_t n, double w) {
    sketch_init(dst);
    pack_store(&dst->pos, space, plan->plo, plan->phi, src ? &src->pos : NULL);
    pack_store(&dst->neg, space + dst->pos.len, plan->nlo, plan->nhi, src ? &src->neg : NULL);
    if (src) {
        dst->zero = src->zero;
        dst->count = src->count;
        dst->sum = src->sum;
        dst->min = src->min;
        dst->max = src->max;
    }
    /* the same order of operations as sketch_add_many on src: the same sum, bit for bit */
    for (size_t k = 0; k < n; k++) {
        double x = v[k];
        if (x >= SKETCH_MIN_VALUE)
            dst->pos.counts[idx[k] - dst->pos.offset] += w;
        else if (x <= -SKETCH_MIN_VALUE)
            dst->neg.counts[idx[k] - dst->neg.offset] += w;
        else
            dst->zero += w;
        note_minmax(dst, x, x);
        dst->count += w;
        dst->sum += x * w;
    }
}

static void store_merge(sketch_store_t *dst, const sketch_store_t *src, int32_t lo, int32_t hi) {
    int64_t i = lo;
    /* the part below dst's window (a folded store) goes into its lowest bucket */
    for (; i <= hi && i < dst->offset; i++) dst->counts[0] += src->counts[i - src->offset];
    if (i > hi) return;
    /* the rest lies inside dst's window: a plain element-wise add the compiler vectorises
     * (adding the zero buckets too is cheaper than testing for them) */
    double *restrict d = dst->counts + (i - dst->offset);
    const double *restrict c = src->counts + (i - src->offset);
    size_t n = (size_t)(hi - i + 1);
    for (size_t k = 0; k < n; k++) d[k] += c[k];
}

/* On -ENOMEM dst is unchanged: both stores' buffers are obtained before either is
 * touched. */
int sketch_merge(sketch_t *dst, const sketch_t *src) {
    if (src->count == 0) return 0;
    if (dst == src) { /* the union with itself: every weight twice */
        for (uint32_t k = 0; k < dst->pos.len; k++)
            dst->pos.counts[k] *= 2;
        for (uint32_t k = 0; k < dst->neg.len; k++)
            dst->neg.counts[k] *= 2;
        dst->zero *= 2;
        dst->count *= 2;
        dst->sum *= 2;
        return 0;
    }
    int32_t plo = 0, phi = -1, nlo = 0, nhi = -1;
    bool has_pos = store_used(&src->pos, &plo, &phi);
    bool has_neg = store_used(&src->neg, &nlo, &nhi);
    store_plan_t pp = {0}, np = {0};
    if (has_pos && store_plan(&dst->pos, plo, phi, true, &pp) < 0) return -ENOMEM;
    if (has_neg && store_plan(&dst->neg, nlo, nhi, true, &np) < 0) {
        store_plan_drop(&dst->pos, &pp);
        return -ENOMEM;
    }
    store_apply(&dst->pos, &pp);
    store_apply(&dst->neg, &np);
    if (has_pos) store_merge(&dst->pos, &src->pos, plo, phi);
    if (has_neg) store_merge(&dst->neg, &src->neg, nlo, nhi);
    note_minmax(dst, src->min, src->max);
    dst->zero += src->zero;
    dst->count += src->count;
    dst->sum += src->sum;
    return 0;
}

static double clamp(const sketch_t *s, double v) {
    return v < s->min ? s->min : v > s->max ? s->max : v;
}

/* DDSketch's convention: the estimate for q is the bucket holding the value of (0-based,
 * weighted) rank q·(count-1), i.e. the first bucket, in ascending value order, whose
 * cumulative weight exceeds that rank. For unit weights that is the bucket of the
 * ⌊q·(n-1)⌋-th smallest value, so the estimate is within α of that value. */
double sketch_quantile(const sketch_t *s, double q) {
    if (!(s->count > 0) || !(q >= 0 && q <= 1)) return NAN;
    if (q == 0) return s->min;
    if (q == 1) return s->max;
    /* Nearest rank, as StatsD's percentiles and most summaries: the smallest value with at
     * least q of the weight at or below it (p99 of 3 samples is the largest). */
    double rank = q * s->count * (1 - 1e-12);
    double cum = 0;
    const sketch_store_t *neg = &s->neg, *pos = &s->pos;
    for (uint32_t k = neg->len; k-- > 0;) { /* most negative first */
        if (neg->counts[k] == 0) continue;  /* else a rank < 0 (count < 1) stops here */
        cum += neg->counts[k];
        if (cum >= rank) return clamp(s, -bucket_value(neg->offset + (int32_t)k));
    }
    cum += s->zero;
    if (s->zero > 0 && cum >= rank) return clamp(s, 0);
    for (uint32_t k = 0; k < pos->len; k++) {
        if (pos->counts[k] == 0) continue;
        cum += pos->counts[k];
        if (cum >= rank) return clamp(s, bucket_value(pos->offset + (int32_t)k));
    }
    return s->max; /* rounding left the cumulative weight a hair short of the total */
}
