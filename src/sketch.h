/* sketch — a mergeable quantile sketch with a relative-error guarantee (DDSketch-style
 * log buckets).
 *
 * Every positive value v falls in bucket i = ceil(log_γ(v)) with γ = (1+α)/(1-α); the
 * bucket's representative 2γ^i/(γ+1) is within relative error α of every value in it, so
 * every quantile estimate is within α of a value that was really at that rank.
 * α = SKETCH_ALPHA = 0.01 (1 %). Negative values use a mirrored store; zero (|v| below
 * SKETCH_MIN_VALUE) its own counter. Merging two sketches adds bucket counts, so merging
 * per-thread or per-second sketches gives exactly the sketch of the union.
 *
 * Storage is a dense array over the bucket range actually seen, grown on demand: values
 * spanning one decade cost ~116 buckets (464 bytes), 1e-3..1e7 ~1150 (4.6 KiB).
 * Counts are doubles so that sample rates (count 1/rate per value) stay exact enough. */
#ifndef MC_SKETCH_H
#define MC_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#define SKETCH_ALPHA 0.01
#define SKETCH_MIN_VALUE 1e-9

typedef struct sketch_store {
    double *counts; /* counts[i - offset] for bucket index i */
    int32_t offset;
    uint32_t len;
} sketch_store_t;

typedef struct sketch {
    sketch_store_t pos, neg;
    double zero;  /* weight of values with |v| < SKETCH_MIN_VALUE */
    double count; /* total weight */
    double sum, min, max;
} sketch_t;

void sketch_init(sketch_t *s);
void sketch_free(sketch_t *s); /* releases buckets; s may be reused after sketch_init */
void sketch_reset(sketch_t *s); /* empties, keeps the allocation */
/* Adds v with weight w (> 0). 0 or -ENOMEM (then s is unchanged). */
int sketch_add(sketch_t *s, double v, double w);
/* The same as n calls of sketch_add(s, v[k], w), in that order — the same bucket counts,
 * count, sum (bit for bit), min and max, unless a store spans more than its bucket cap,
 * where the folded tail may end one bucket apart — but each store is grown once per 64
 * values instead of value by value, and an empty store gets exactly the range it needs.
 * 0, -EINVAL (a non-finite value or a bad weight: then s is unchanged) or -ENOMEM (then
 * the values before the failing group of 64 are in). */
int sketch_add_many(sketch_t *s, const double *v, size_t n, double w);
/* A compact copy in storage the caller provides (an ingest batch's arena): everything in
 * src (NULL: nothing) plus n values v of weight w, as if sketch_add_many(src, v, n, w) had
 * run first, with stores that cover exactly the buckets in use.
 *   sketch_pack_plan: computes the values' bucket indexes into idx[n] and the ranges;
 *     returns the bytes of bucket storage the copy needs, or -1 when the values would
 *     stretch a store past its bucket cap (then insert them with sketch_add_many, which
 *     folds, and pack src alone);
 *   sketch_pack: fills *dst with buckets in space (zeroed by it; 8-byte aligned). dst
 *     must never be grown, reset or freed: it owns nothing. Merge it, read it. */
typedef struct sketch_pack_plan {
    int32_t plo, phi, nlo, nhi; /* hi < lo: that store is empty */
} sketch_pack_plan_t;
long sketch_pack_plan(const sketch_t *src, const double *v, size_t n, int32_t *idx,
                      sketch_pack_plan_t *plan);
void sketch_pack(sketch_t *dst, double *space, const sketch_pack_plan_t *plan, const sketch_t *src,
                 const double *v, const int32_t *idx, size_t n, double w);
/* dst += src. 0 or -ENOMEM. */
int sketch_merge(sketch_t *dst, const sketch_t *src);
/* Quantile q in [0, 1]; NAN when empty. min/max are exact at q = 0 and q = 1. */
double sketch_quantile(const sketch_t *s, double q);

/* The bucket index of a magnitude (SKETCH_MIN_VALUE <= mag, finite) as the sketch computes
 * it, and its definition ceil(log(mag)/lnγ) through libm's log, which the first reproduces
 * exactly (for the tests). */
int32_t sketch__bucket_index(double mag);
int32_t sketch__bucket_index_libm(double mag);

#endif
