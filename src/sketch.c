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

/* The index of the bucket holding mag (SKETCH_MIN_VALUE <= mag, finite): the definition. */
__attribute__((noinline)) int32_t sketch__bucket_index_libm(double mag) {
    return (int32_t)ceil(log(mag) * SK_INV_LN_GAMMA);
}

/* The same index without calling log(), which costs a call and ~45 dependent instructions
 * per value, and every timer sample of the StatsD ingest pays it at the hand-over:
 * log(mag) = e·ln2 + log(c) + log1p(r), with c the centre of one of 128 steps of the
 * mantissa m (the table holds 1/c and -log(1/c)), r = m/c - 1, |r| <= 1/256, and log1p(r)
 * by its series to r^5 (the rest is under 6e-16). That is within 1e-10 of the
 * definition's log(mag)·(1/lnγ) (libm's log and the table's logs are within 1 ulp of the
 * true ones), so the two ceilings agree wherever this one is more than 1e-9 away from an
 * integer; nearer than that, and for subnormals, the definition decides. So every value
 * gets the same bucket as through libm, bit for bit; tests/unit/test_sketch.c compares
 * the two around every bucket edge from SKETCH_MIN_VALUE to DBL_MAX. */
#define SK_LN2 0x1.62e42fefa39efp-1 /* ln 2 */
#define LOG_STEP_BITS 7
static const struct {
    double inv, nlog; /* 1/c, -log(1/c) for c = 1 + (j + 0.5)/128 */
} log_step[1 << LOG_STEP_BITS] = {
    {0x1.fe01fe01fe020p-1, 0x1.ff00aa2b10ba0p-9},
    {0x1.fa11caa01fa12p-1, 0x1.7dc475f810a69p-7},
    {0x1.f6310aca0dbb5p-1, 0x1.3cea44346a584p-6},
    {0x1.f25f644230ab5p-1, 0x1.b9fc027af919ap-6},
    {0x1.ee9c7f8458e02p-1, 0x1.1b0d98923d97fp-5},
    {0x1.eae807aba01ebp-1, 0x1.58a5bafc8e4d3p-5},
    {0x1.e741aa59750e4p-1, 0x1.95c830ec8e3f2p-5},
    {0x1.e3a9179dc1a73p-1, 0x1.d276b8adb0b56p-5},
    {0x1.e01e01e01e01ep-1, 0x1.075983598e471p-4},
    {0x1.dca01dca01dcap-1, 0x1.253f62f0a1417p-4},
    {0x1.d92f2231e7f8ap-1, 0x1.42edcbea646eep-4},
    {0x1.d5cac807572b2p-1, 0x1.60658a93750c4p-4},
    {0x1.d272ca3fc5b1ap-1, 0x1.7da766d7b12d0p-4},
    {0x1.cf26e5c44bfc6p-1, 0x1.9ab42462033aep-4},
    {0x1.cbe6d9601cbe7p-1, 0x1.b78c82bb0eda0p-4},
    {0x1.c8b265afb8a42p-1, 0x1.d4313d66cb35dp-4},
    {0x1.c5894d10d4986p-1, 0x1.f0a30c01162a4p-4},
    {0x1.c26b5392ea01cp-1, 0x1.0671512ca596fp-3},
    {0x1.bf583ee868d8bp-1, 0x1.14785846742acp-3},
    {0x1.bc4fd65883e7bp-1, 0x1.2266f190a5acdp-3},
    {0x1.b951e2b18ff23p-1, 0x1.303d718e47fd5p-3},
    {0x1.b65e2e3beee05p-1, 0x1.3dfc2b0ecc62ap-3},
    {0x1.b37484ad806cep-1, 0x1.4ba36f39a55e5p-3},
    {0x1.b094b31d922a4p-1, 0x1.59338d9982085p-3},
    {0x1.adbe87f94905ep-1, 0x1.66acd4272ad51p-3},
    {0x1.aaf1d2f87ebfdp-1, 0x1.740f8f54037a3p-3},
    {0x1.a82e65130e159p-1, 0x1.815c0a14357e9p-3},
    {0x1.a574107688a4ap-1, 0x1.8e928de886d41p-3},
    {0x1.a2c2a87c51ca0p-1, 0x1.9bb362e7dfb85p-3},
    {0x1.a01a01a01a01ap-1, 0x1.a8becfc882f19p-3},
    {0x1.9d79f176b682dp-1, 0x1.b5b519e8fb5a6p-3},
    {0x1.9ae24ea5510dap-1, 0x1.c2968558c18c2p-3},
    {0x1.9852f0d8ec0ffp-1, 0x1.cf6354e09c5ddp-3},
    {0x1.95cbb0be377aep-1, 0x1.dc1bca0abec7bp-3},
    {0x1.934c67f9b2ce6p-1, 0x1.e8c0252aa5a60p-3},
    {0x1.90d4f120190d5p-1, 0x1.f550a564b7b37p-3},
    {0x1.8e6527af1373fp-1, 0x1.00e6c45ad501dp-2},
    {0x1.8bfce8062ff3ap-1, 0x1.071b85fcd590dp-2},
    {0x1.899c0f601899cp-1, 0x1.0d46b579ab74bp-2},
    {0x1.87427bcc092b9p-1, 0x1.136870293a8b0p-2},
    {0x1.84f00c2780614p-1, 0x1.1980d2dd4236fp-2},
    {0x1.82a4a0182a4a0p-1, 0x1.1f8ff9e48a2f3p-2},
    {0x1.8060180601806p-1, 0x1.2596010df763ap-2},
    {0x1.7e225515a4f1dp-1, 0x1.2b9303ab89d25p-2},
    {0x1.7beb3922e017cp-1, 0x1.31871c9544185p-2},
    {0x1.79baa6bb6398bp-1, 0x1.3772662bfd85cp-2},
    {0x1.77908119ac60dp-1, 0x1.3d54fa5c1f710p-2},
    {0x1.756cac201756dp-1, 0x1.432ef2a04e813p-2},
    {0x1.734f0c541fe8dp-1, 0x1.49006804009d0p-2},
    {0x1.713786d9c7c09p-1, 0x1.4ec9732600269p-2},
    {0x1.6f26016f26017p-1, 0x1.548a2c3add263p-2},
    {0x1.6d1a62681c861p-1, 0x1.5a42ab0f4cfe2p-2},
    {0x1.6b1490aa31a3dp-1, 0x1.5ff3070a793d4p-2},
    {0x1.691473a88d0c0p-1, 0x1.659b57303e1f2p-2},
    {0x1.6719f3601671ap-1, 0x1.6b3bb2235943dp-2},
    {0x1.6524f853b4aa3p-1, 0x1.70d42e2789236p-2},
    {0x1.63356b88ac0dep-1, 0x1.7664e1239dbcfp-2},
    {0x1.614b36831ae94p-1, 0x1.7bede0a37afbfp-2},
    {0x1.5f66434292dfcp-1, 0x1.816f41da0d495p-2},
    {0x1.5d867c3ece2a5p-1, 0x1.86e919a330ba1p-2},
    {0x1.5babcc647fa91p-1, 0x1.8c5b7c858b48bp-2},
    {0x1.59d61f123ccaap-1, 0x1.91c67eb45a83ep-2},
    {0x1.5805601580560p-1, 0x1.972a341135159p-2},
    {0x1.56397ba7c52e2p-1, 0x1.9c86b02dc0862p-2},
    {0x1.54725e6bb82fep-1, 0x1.a1dc064d5b995p-2},
    {0x1.52aff56a8054bp-1, 0x1.a72a4966bd9e9p-2},
    {0x1.50f22e111c4c5p-1, 0x1.ac718c258b0e5p-2},
    {0x1.4f38f62dd4c9bp-1, 0x1.b1b1e0ebdfc5ap-2},
    {0x1.4d843bedc2c4cp-1, 0x1.b6eb59d3cf35cp-2},
    {0x1.4bd3edda68fe1p-1, 0x1.bc1e08b0dad0ap-2},
    {0x1.4a27fad76014ap-1, 0x1.c149ff115f027p-2},
    {0x1.4880522014880p-1, 0x1.c66f4e3ff6ff9p-2},
    {0x1.46dce34596066p-1, 0x1.cb8e0744d7acap-2},
    {0x1.453d9e2c776cap-1, 0x1.d0a63ae721e64p-2},
    {0x1.43a2730abee4dp-1, 0x1.d5b7f9ae2c684p-2},
    {0x1.420b5265e5951p-1, 0x1.dac353e2c5955p-2},
    {0x1.40782d10e6566p-1, 0x1.dfc859906d5b5p-2},
    {0x1.3ee8f42a5af07p-1, 0x1.e4c71a8687704p-2},
    {0x1.3d5d991aa75c6p-1, 0x1.e9bfa659861f5p-2},
    {0x1.3bd60d9232955p-1, 0x1.eeb20c640ddf3p-2},
    {0x1.3a524387ac822p-1, 0x1.f39e5bc811e5dp-2},
    {0x1.38d22d366088ep-1, 0x1.f884a36fe9ec1p-2},
    {0x1.3755bd1c945eep-1, 0x1.fd64f20f61571p-2},
    {0x1.35dce5f9f2af8p-1, 0x1.011fab125ff8ap-1},
    {0x1.34679ace01346p-1, 0x1.0389eefce633cp-1},
    {0x1.32f5ced6a1dfap-1, 0x1.05f14bd26459cp-1},
    {0x1.3187758e9ebb6p-1, 0x1.0855c884b450ep-1},
    {0x1.301c82ac40260p-1, 0x1.0ab76bece14d2p-1},
    {0x1.2eb4ea1fed14bp-1, 0x1.0d163ccb9d6b8p-1},
    {0x1.2d50a012d50a0p-1, 0x1.0f7241c9b497dp-1},
    {0x1.2bef98e5a3711p-1, 0x1.11cb81787ccf8p-1},
    {0x1.2a91c92f3c105p-1, 0x1.1422025243d45p-1},
    {0x1.293725bb804a5p-1, 0x1.1675cababa60ep-1},
    {0x1.27dfa38a1ce4dp-1, 0x1.18c6e0ff5cf07p-1},
    {0x1.268b37cd60127p-1, 0x1.1b154b57da29ep-1},
    {0x1.2539d7e9177b2p-1, 0x1.1d610fe677003p-1},
    {0x1.23eb79717605bp-1, 0x1.1faa34b87094cp-1},
    {0x1.22a0122a0122ap-1, 0x1.21f0bfc65beecp-1},
    {0x1.21579804855e6p-1, 0x1.2434b6f483934p-1},
    {0x1.2012012012012p-1, 0x1.26762013430e0p-1},
    {0x1.1ecf43c7fb84cp-1, 0x1.28b500df60783p-1},
    {0x1.1d8f5672e4abdp-1, 0x1.2af15f02640acp-1},
    {0x1.1c522fc1ce059p-1, 0x1.2d2b4012edc9dp-1},
    {0x1.1b17c67f2bae3p-1, 0x1.2f62a99509546p-1},
    {0x1.19e0119e0119ep-1, 0x1.3197a0fa7fe6ap-1},
    {0x1.18ab083902bdbp-1, 0x1.33ca2ba328994p-1},
    {0x1.1778a191bd684p-1, 0x1.35fa4edd36ea0p-1},
    {0x1.1648d50fc3201p-1, 0x1.38280fe58797fp-1},
    {0x1.151b9a3fdd5c9p-1, 0x1.3a5373e7ebdf9p-1},
    {0x1.13f0e8d344724p-1, 0x1.3c7c7fff73206p-1},
    {0x1.12c8b89edc0acp-1, 0x1.3ea33936b2f5bp-1},
    {0x1.11a3019a74826p-1, 0x1.40c7a4880dceap-1},
    {0x1.107fbbe011080p-1, 0x1.42e9c6ddf80bfp-1},
    {0x1.0f5edfab325a2p-1, 0x1.4509a5133bb0ap-1},
    {0x1.0e40655826011p-1, 0x1.472743f33aaadp-1},
    {0x1.0d24456359e3ap-1, 0x1.4942a83a2fc07p-1},
    {0x1.0c0a7868b4171p-1, 0x1.4b5bd6956e273p-1},
    {0x1.0af2f722eecb5p-1, 0x1.4d72d3a39fd01p-1},
    {0x1.09ddba6af8360p-1, 0x1.4f87a3f5026e9p-1},
    {0x1.08cabb37565e2p-1, 0x1.519a4c0ba3446p-1},
    {0x1.07b9f29b8eae2p-1, 0x1.53aad05b99b7cp-1},
    {0x1.06ab59c7912fbp-1, 0x1.55b9354b40bcep-1},
    {0x1.059eea0727586p-1, 0x1.57c57f336f191p-1},
    {0x1.04949cc1664c5p-1, 0x1.59cfb25fae87fp-1},
    {0x1.038c6b78247fcp-1, 0x1.5bd7d30e71c73p-1},
    {0x1.02864fc7729e9p-1, 0x1.5ddde57149923p-1},
    {0x1.0182436517a37p-1, 0x1.5fe1edad18919p-1},
    {0x1.0080402010080p-1, 0x1.61e3efda46467p-1},
};

static inline int32_t bucket_index(double mag) {
    uint64_t u;
    memcpy(&u, &mag, sizeof u);
    uint32_t ex = (uint32_t)(u >> 52) & 0x7ff;
    if (__builtin_expect(ex - 1 >= 0x7fe, 0)) /* subnormal, inf, nan */
        return sketch__bucket_index_libm(mag);
    uint64_t mbits = (u & (((uint64_t)1 << 52) - 1)) | ((uint64_t)0x3ff << 52);
    double m;
    memcpy(&m, &mbits, sizeof m); /* the mantissa, in [1, 2) */
    unsigned j = (unsigned)(u >> (52 - LOG_STEP_BITS)) & ((1u << LOG_STEP_BITS) - 1);
    double r = m * log_step[j].inv - 1.0;
    double p = r * (1.0 + r * (-0.5 + r * (1.0 / 3 + r * (-0.25 + r * 0.2))));
    double y = ((double)((int32_t)ex - 1023) * SK_LN2 + log_step[j].nlog + p) * SK_INV_LN_GAMMA;
    int32_t k = (int32_t)y; /* |y| < 36,000 for a normal mag: toward zero, the ceiling if y < 0 */
    double d = y - (double)k; /* (-1, 1) */
    if (__builtin_expect(fabs(d) < 1e-9 || fabs(d) > 1 - 1e-9, 0))
        return sketch__bucket_index_libm(mag); /* too near an edge to tell */
    return k + (d > 0);
}

int32_t sketch__bucket_index(double mag) { return bucket_index(mag); }

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
