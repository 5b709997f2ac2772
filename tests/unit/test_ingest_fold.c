/* ingest_fold: the UDP receive path (scan + fast parse + agg_fold_samples, falling back to
 * the reference) against the reference alone (statsd_parse_line + agg_add on every line):
 * on random datagrams of valid, odd and malformed lines the two produce the same batches,
 * delta for delta and bit for bit, and the same rejected counts; the fast path takes the
 * common lines; a datagram too long to scan, a full key table and keys that defeat the
 * fast path's key cache behave the same too. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agg.h"
#include "ingest_fold.h"
#include "series_key.h"
#include "sketch.h"
#include "statsd.h"

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rnd(void) { /* xorshift64*: fixed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static const char *pick(const char *const *v, size_t n) { return v[rnd() % n]; }
#define PICK(v) pick(v, sizeof v / sizeof v[0])

/* The reference: what ingest_fold did before it had a fast path. */
typedef struct {
    agg_t agg;
    uint64_t rejected[STATSD_REASON_COUNT];
} ref_t;

static void ref_datagram(ref_t *r, const char *p, size_t len) {
    const char *end = p + len;
    statsd_line_t line;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        statsd_reason_t rc = statsd_parse_line(p, n, &line);
        if (rc != STATSD_OK) {
            if (rc != STATSD_EMPTY) r->rejected[rc]++;
        } else {
            int a = agg_add(&r->agg, &line);
            if (a > 0) r->rejected[a]++;
            else if (a < 0) r->rejected[STATSD_TOO_LONG]++;
        }
        p += n + 1;
    }
}

static const char *const names[] = {
    "req", "app.requests.m12", "lat", "temp", "users", "db.query_time", "x",
    "1starts.with.digit", "has space", "utf8.é", "a.very.long.metric.name.that.pushes.the.line.past.64.bytes",
    "_under", "q",
};
static const char *const tagsets[] = {
    "", "|#host:a", "|#host:b", "|#env:prod,host:a", "|#host:a,env:prod", "|#flag",
    "|#source:host01", "|#k:v:w", "|#__bad:1", "|#,a", "|#a:b,", "|#quantile:0.5",
    "|#", "|#a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16,q:17",
    "|#host:a|#host:b",
};
static const char *const values[] = {
    "1", "5", "0", "-0", "+3", "-2.5", "12.25", "0.5", "1e3", "-1e-3", "1.", ".5",
    "123456789012345678901", "9007199254740993", "abc", "", "1:2:3", "+1:-2", "1:+2",
    "nan", "inf", "0x10", " 1", "1 ",
};
static const char *const types[] = {"c", "c", "g", "g", "ms", "h", "d", "s", "x", "", "mss"};
static const char *const extras[] = {
    "", "", "", "", "|@0.5", "|@0.1", "|@1", "|@0", "|@abc", "|@0.25|@0.5", "|c:abc",
    "|T1700000000", "||", "|", "|zz",
};

/* One line (without '\n') into buf: half of them in the common shape with a valid value,
 * the rest from every piece above, valid or not. */
static size_t make_line(char *buf, size_t cap) {
    uint64_t r = rnd();
    if (r & 1) {
        static const char *const ok_vals[] = {"1", "5", "-2.5", "12.25", "+3", "0.5", "1e3"};
        static const char *const ok_types[] = {"c", "g", "ms", "h", "s"};
        static const char *const ok_extra[] = {"", "", "|@0.5", "|@0.1"};
        static const char *const ok_tags[] = {"", "", "|#host:a", "|#env:prod,host:a", "|#flag"};
        const char *type = PICK(ok_types);
        return (size_t)snprintf(buf, cap, "%s:%s|%s%s%s", PICK(names),
                                strcmp(type, "s") == 0 ? "member" : PICK(ok_vals), type,
                                PICK(ok_extra), PICK(ok_tags));
    }
    r = rnd();
    if (r % 50 == 0) return (size_t)snprintf(buf, cap, "%s", r & 64 ? "" : "  \t");
    if (r % 53 == 1) return (size_t)snprintf(buf, cap, "_e{3,2}:abc|de");
    const char *name = PICK(names), *val = PICK(values), *type = PICK(types);
    const char *tags = PICK(tagsets), *extra = PICK(extras);
    if (strcmp(type, "s") == 0 && r % 3) val = r & 8 ? "alice" : "bob:x";
    size_t n;
    if ((r >> 8) & 1) n = (size_t)snprintf(buf, cap, "%s:%s|%s%s%s", name, val, type, extra, tags);
    else n = (size_t)snprintf(buf, cap, "%s:%s|%s%s%s", name, val, type, tags, extra);
    if ((r >> 12) % 17 == 0 && n + 1 < cap) buf[n++] = '\r';
    return n;
}

static void assert_same_double(double a, double b, const char *what) {
    if (memcmp(&a, &b, sizeof a) != 0) fail_msg("%s: %.17g vs %.17g", what, a, b);
}

static void assert_same_batch(const agg_batch_t *a, const agg_batch_t *b) {
    if (!a || !b) {
        assert_true(a == b);
        return;
    }
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        const agg_delta_t *x = &a->d[i], *y = &b->d[i];
        assert_true(skey_equal(x->key, y->key));
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->nlines, y->nlines);
        switch (x->kind) {
        case METRIC_COUNTER: assert_same_double(x->v.counter, y->v.counter, "counter"); break;
        case METRIC_GAUGE:
            assert_int_equal(x->v.gauge.has_abs, y->v.gauge.has_abs);
            assert_same_double(x->v.gauge.abs, y->v.gauge.abs, "gauge abs");
            assert_same_double(x->v.gauge.delta, y->v.gauge.delta, "gauge delta");
            break;
        case METRIC_TIMER: {
            const sketch_t *s = x->v.timer, *t = y->v.timer;
            assert_true((s == NULL) == (t == NULL));
            if (!s) break;
            assert_same_double(s->count, t->count, "timer count");
            assert_same_double(s->sum, t->sum, "timer sum");
            assert_same_double(s->min, t->min, "timer min");
            assert_same_double(s->max, t->max, "timer max");
            assert_same_double(s->zero, t->zero, "timer zero");
            static const double qs[] = {0.01, 0.25, 0.5, 0.9, 0.99};
            for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++)
                assert_same_double(sketch_quantile(s, qs[q]), sketch_quantile(t, qs[q]), "quantile");
            break;
        }
        case METRIC_SET:
            assert_int_equal(x->v.set.n, y->v.set.n);
            assert_int_equal(x->v.set.cap, y->v.set.cap);
            assert_memory_equal(x->v.set.slots, y->v.set.slots, x->v.set.cap * sizeof(uint64_t));
            break;
        default: fail_msg("kind %d", x->kind);
        }
    }
}

static void flush_evict_compare(ingest_fold_t *f, ref_t *r, uint32_t evict_after) {
    int e1, e2;
    agg_batch_t *a = agg_flush(&f->agg, INGEST_UDP, evict_after, &e1);
    agg_batch_t *b = agg_flush(&r->agg, INGEST_UDP, evict_after, &e2);
    assert_int_equal(e1, 0);
    assert_int_equal(e2, 0);
    assert_same_batch(a, b);
    agg_batch_free(a);
    agg_batch_free(b);
    assert_memory_equal(f->rejected, r->rejected, sizeof f->rejected);
}

static void flush_and_compare(ingest_fold_t *f, ref_t *r) { flush_evict_compare(f, r, 0); }

static void run_differential(uint32_t max_entries, int datagrams) {
    static ingest_fold_t f;
    static ref_t r;
    ingest_fold_init(&f, max_entries);
    memset(&r, 0, sizeof r);
    agg_init(&r.agg, max_entries);
    static char dg[8192];
    for (int d = 0; d < datagrams; d++) {
        size_t len = 0;
        int lines = 1 + (int)(rnd() % 60);
        for (int k = 0; k < lines && len + 400 < sizeof dg; k++) {
            len += make_line(dg + len, sizeof dg - len);
            if (k + 1 < lines || rnd() % 2) dg[len++] = '\n';
        }
        /* each datagram in a heap block of its exact size: ASan sees any read past it */
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, dg, len);
        ingest_fold_datagram(&f, copy, len);
        ref_datagram(&r, copy, len);
        free(copy);
        if (rnd() % 8 == 0) flush_and_compare(&f, &r);
    }
    flush_and_compare(&f, &r);
    /* the common lines went the fast way (those of known keys: not all of them when the
     * table is full) */
    if (!max_entries) assert_true(f.fast_lines > f.slow_lines);
    else assert_true(f.fast_lines > 0);
    ingest_fold_free(&f);
    agg_free(&r.agg);
}

static void test_random_datagrams(void **state) {
    (void)state;
    run_differential(0, 20000);
}

static void test_full_table(void **state) {
    (void)state;
    run_differential(4, 3000); /* most keys refused (too_long), the known ones still fold */
}

/* Same-key order within a datagram: an absolute gauge then deltas, with lines that are
 * not in the common shape in between, in every arrangement. */
static void test_gauge_order(void **state) {
    (void)state;
    static const char *const parts[] = {"g:5|g", "g:+1|g", "g:-2|g\r", "g:+1:+1|g", "g:7|g",
                                        "g:+3|g|#a:b", "g:1|g|T1"};
    static ingest_fold_t f;
    static ref_t r;
    ingest_fold_init(&f, 0);
    memset(&r, 0, sizeof r);
    agg_init(&r.agg, 0);
    char dg[512];
    for (int iter = 0; iter < 5000; iter++) {
        size_t len = 0;
        int n = 1 + (int)(rnd() % 12);
        for (int k = 0; k < n; k++)
            len += (size_t)snprintf(dg + len, sizeof dg - len, "%s\n", PICK(parts));
        ingest_fold_datagram(&f, dg, len);
        ref_datagram(&r, dg, len);
        if (rnd() % 3 == 0) flush_and_compare(&f, &r);
    }
    flush_and_compare(&f, &r);
    ingest_fold_free(&f);
    agg_free(&r.agg);
}

/* A datagram longer than the scan takes the reference path line by line: same result. */
static void test_long_datagram(void **state) {
    (void)state;
    size_t cap = STATSD_SCAN_MAX * 2;
    char *dg = malloc(cap);
    assert_non_null(dg);
    size_t len = 0;
    while (len + 64 < cap) len += (size_t)snprintf(dg + len, cap - len, "k%zu:1|c\n", len % 97);
    static ingest_fold_t f;
    static ref_t r;
    ingest_fold_init(&f, 0);
    memset(&r, 0, sizeof r);
    agg_init(&r.agg, 0);
    ingest_fold_datagram(&f, dg, len);
    ref_datagram(&r, dg, len);
    flush_and_compare(&f, &r);
    assert_int_equal(f.fast_lines, 0);
    free(dg);
    ingest_fold_free(&f);
    agg_free(&r.agg);
}

/* The fast path's key cache (agg.c) is only a hint: keys that share its signature (long
 * names that differ only in bytes it does not read), more keys than its ways, and keys
 * whose entries were evicted and freed, then sent again, fold exactly as the reference
 * folds them (and ASan sees any use of a freed entry). */
static void test_key_cache(void **state) {
    (void)state;
    static ingest_fold_t f;
    static ref_t r;
    ingest_fold_init(&f, 0);
    memset(&r, 0, sizeof r);
    agg_init(&r.agg, 0);
    char dg[1400];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        while (len + 100 < sizeof dg) {
            uint64_t x = rnd();
            if (x & 1) /* 40-byte names, alike but for byte 10: one signature */
                len += (size_t)snprintf(dg + len, sizeof dg - len,
                                        "collide.a%c.same.bytes.everywhere.else:%u|%s\n",
                                        'a' + (int)(x >> 8) % 26, (unsigned)(x >> 16) % 9,
                                        x & 2 ? "c" : "g");
            else if (iter < 1500 || x & 2) /* many keys; the later ones idle in half of the run */
                len += (size_t)snprintf(dg + len, sizeof dg - len, "k%u.%s:%u|%s%s\n",
                                        (unsigned)(x >> 8) % (iter < 1500 ? 6000 : 300),
                                        x & 4 ? "t" : "c", (unsigned)(x >> 24) % 7,
                                        x & 4 ? "ms" : "c", x & 8 ? "|#host:a" : "");
            else
                len += (size_t)snprintf(dg + len, sizeof dg - len, "u.%u:m%u|s\n",
                                        (unsigned)(x >> 8) % 50, (unsigned)(x >> 16) % 10);
        }
        ingest_fold_datagram(&f, dg, len);
        ref_datagram(&r, dg, len);
        /* every 64th flush evicts keys idle for more than 2 flushes */
        if (iter % 10 == 0) flush_evict_compare(&f, &r, 2);
    }
    flush_and_compare(&f, &r);
    assert_true(f.fast_lines > 2 * f.slow_lines);
    ingest_fold_free(&f);
    agg_free(&r.agg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_datagrams),
        cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_gauge_order),
        cmocka_unit_test(test_long_datagram),
        cmocka_unit_test(test_key_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
