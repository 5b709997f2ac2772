/* libFuzzer target for the StatsD parser: every line of the input through
 * statsd_parse_line, the parsed name through statsd_sanitize, and slices of the input
 * through statsd_parse_double, checked against the header's contracts and against strtod.
 * Then the UDP fast path against the reference: the input as one datagram through
 * statsd_scan + statsd_parse_lines (every line it takes must parse the same way with
 * statsd_parse_line), and through ingest_fold_datagram twice (the second time the known
 * identities take the fast path) next to statsd_parse_line + agg_add on every line: the
 * batches and rejected counts must be equal, bit for bit. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "ingest_fold.h"
#include "series_key.h"
#include "sketch.h"
#include "statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int within(const char *p, size_t n, const char *lo, const char *hi) {
    return p >= lo && p <= hi && n <= (size_t)(hi - p);
}

static void check_sanitize(const char *in, size_t n) {
    char out[STATSD_MAX_NAME + 2];
    size_t len = statsd_sanitize(in, n, out, sizeof out);
    assert(len < sizeof out);
    assert(out[len] == '\0');
    assert(len <= n + 1);
    if (n > 0 && n <= STATSD_MAX_NAME) assert(len > 0); /* every character leaves a byte */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        assert((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_');
    }
    if (len) assert(!(out[0] >= '0' && out[0] <= '9'));
    /* a smaller buffer either fits the same text or reports 0 */
    char small[8];
    size_t sl = statsd_sanitize(in, n, small, sizeof small);
    assert(sl == 0 ? (len == 0 || len >= sizeof small) : (sl == len && !memcmp(small, out, sl)));
}

static void check_line(const char *p, size_t n) {
    statsd_line_t l;
    statsd_reason_t r = statsd_parse_line(p, n, &l);
    assert((unsigned)r < STATSD_REASON_COUNT);
    assert(statsd_reason_name(r) != NULL);
    if (r != STATSD_OK) return;
    const char *end = p + n;
    assert(n <= STATSD_MAX_LINE + 1); /* + a trailing '\r' */
    assert(l.name && l.name_len > 0 && l.name_len <= STATSD_MAX_NAME);
    assert(within(l.name, l.name_len, p, end));
    assert(!memchr(l.name, ':', l.name_len) && !memchr(l.name, '|', l.name_len));
    assert((unsigned)l.kind < METRIC_KIND_COUNT);
    assert(l.rate > 0 && l.rate <= 1);
    if (l.kind == METRIC_SET) {
        assert(l.nvalues == 0);
        assert(l.member && l.member_len > 0 && within(l.member, l.member_len, p, end));
        assert(!memchr(l.member, '|', l.member_len));
    } else {
        assert(l.nvalues >= 1 && l.nvalues <= STATSD_MAX_VALUES);
        for (int i = 0; i < l.nvalues; i++)
            assert(isfinite(l.values[i]));
        assert(l.member == NULL);
    }
    if (l.kind != METRIC_GAUGE) assert(!l.gauge_delta);
    assert(!l.counter_total); /* only internal producers send running totals */
    assert(l.ntags >= 0 && l.ntags <= STATSD_MAX_TAGS);
    for (int i = 0; i < l.ntags; i++) {
        const statsd_tag_t *t = &l.tags[i];
        assert(t->key_len > 0 && t->key_len <= 255 && t->value_len <= 255);
        assert(within(t->key, t->key_len, p, end));
        assert(!memchr(t->key, ':', t->key_len) && !memchr(t->key, ',', t->key_len));
        assert(t->value_len == 0 ? t->value != NULL : within(t->value, t->value_len, p, end));
        assert(!memchr(t->value, ',', t->value_len) && !memchr(t->value, '|', t->value_len));
    }
    check_sanitize(l.name, l.name_len);
}

/* Accepted numbers are exactly what strtod makes of the same text. */
static void check_double(const char *p, size_t n) {
    double v;
    if (statsd_parse_double(p, n, &v) != 0) return;
    assert(isfinite(v));
    char buf[STATSD_MAX_LINE + 1];
    assert(n < sizeof buf);
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *e;
    double want = strtod(buf, &e);
    assert(e == buf + n);
    assert(memcmp(&v, &want, sizeof v) == 0);
}

/* Every line statsd_parse_lines takes must parse the same way with statsd_parse_line, or
 * be refused by it for its tags only (the fast path leaves them to the table). */
static void check_fast_lines(const char *dg, size_t len) {
    static statsd_scan_t sc;
    static statsd_sample_t out[INGEST_FOLD_BATCH];
    statsd_scan(&sc, dg, len);
    size_t pos = 0, expect = 0;
    while (pos < len) {
        size_t n = statsd_parse_lines(&sc, &pos, out, INGEST_FOLD_BATCH);
        assert(n > 0);
        for (size_t k = 0; k < n; k++) {
            const statsd_sample_t *f = &out[k];
            size_t off = (size_t)(f->name - dg);
            assert(off == expect && off + f->len <= len); /* lines in order, none lost */
            assert(off + f->len == len || dg[off + f->len] == '\n');
            assert(!memchr(dg + off, '\n', f->len));
            expect = off + f->len + 1;
            if (!f->parsed) continue;
            statsd_line_t l;
            statsd_reason_t r = statsd_parse_line(dg + off, f->len, &l);
            if (r != STATSD_OK) {
                assert(f->tags && (r == STATSD_BAD_TAGS || r == STATSD_TOO_LONG));
                continue;
            }
            assert(f->name == l.name && f->name_len == l.name_len && f->kind == l.kind);
            assert(f->gauge_delta == l.gauge_delta && memcmp(&f->rate, &l.rate, 8) == 0);
            assert(f->tags == l.tags_raw && f->tags_len == l.tags_raw_len);
            if (l.kind == METRIC_SET) {
                assert(f->member == l.member && f->member_len == l.member_len);
            } else {
                assert(l.nvalues == 1 && memcmp(&f->value, &l.values[0], 8) == 0);
            }
        }
    }
}

typedef struct {
    agg_t agg;
    uint64_t rejected[STATSD_REASON_COUNT];
} ref_t;

static void ref_datagram(ref_t *r, const char *p, size_t len) {
    static statsd_line_t line;
    const char *end = p + len;
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

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_same_batches(const agg_batch_t *a, const agg_batch_t *b) {
    assert((a == NULL) == (b == NULL));
    if (!a) return;
    assert(a->n == b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        const agg_delta_t *x = &a->d[i], *y = &b->d[i];
        assert(skey_equal(x->key, y->key) && x->kind == y->kind && x->nlines == y->nlines);
        switch (x->kind) {
        case METRIC_COUNTER: assert(same_double(x->v.counter, y->v.counter)); break;
        case METRIC_GAUGE:
            assert(x->v.gauge.has_abs == y->v.gauge.has_abs);
            assert(same_double(x->v.gauge.abs, y->v.gauge.abs));
            assert(same_double(x->v.gauge.delta, y->v.gauge.delta));
            break;
        case METRIC_TIMER:
            assert((x->v.timer == NULL) == (y->v.timer == NULL));
            if (x->v.timer) {
                const sketch_t *s = x->v.timer, *t = y->v.timer;
                assert(same_double(s->count, t->count) && same_double(s->sum, t->sum));
                assert(same_double(s->min, t->min) && same_double(s->max, t->max));
                assert(same_double(sketch_quantile(s, 0.5), sketch_quantile(t, 0.5)));
                assert(same_double(sketch_quantile(s, 0.99), sketch_quantile(t, 0.99)));
            }
            break;
        case METRIC_SET:
            assert(x->v.set.n == y->v.set.n && x->v.set.cap == y->v.set.cap);
            assert(memcmp(x->v.set.slots, y->v.set.slots, x->v.set.cap * sizeof(uint64_t)) == 0);
            break;
        default: assert(0);
        }
    }
}

static void check_fold_vs_reference(const char *dg, size_t len) {
    static ingest_fold_t f;
    static ref_t r;
    ingest_fold_init(&f, 0);
    memset(r.rejected, 0, sizeof r.rejected);
    agg_init(&r.agg, 0);
    for (int pass = 0; pass < 2; pass++) { /* the second time, known keys go the fast way */
        ingest_fold_datagram(&f, dg, len);
        ref_datagram(&r, dg, len);
    }
    int e1, e2;
    agg_batch_t *a = agg_flush(&f.agg, INGEST_UDP, 0, &e1);
    agg_batch_t *b = agg_flush(&r.agg, INGEST_UDP, 0, &e2);
    assert(e1 == 0 && e2 == 0);
    check_same_batches(a, b);
    assert(memcmp(f.rejected, r.rejected, sizeof f.rejected) == 0);
    agg_batch_free(a);
    agg_batch_free(b);
    ingest_fold_free(&f);
    agg_free(&r.agg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    /* each line as its own heap block, so ASan sees any read past its end */
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *copy = malloc(n ? n : 1);
        if (!copy) return 0;
        memcpy(copy, p, n);
        check_line(copy, n);
        check_sanitize(copy, n < STATSD_MAX_NAME ? n : STATSD_MAX_NAME);
        free(copy);
        if (!nl) break;
        p = nl + 1;
    }
    /* the whole input as one datagram, in a heap block of its own size */
    if (size <= STATSD_SCAN_MAX) {
        char *dg = malloc(size ? size : 1);
        if (!dg) return 0;
        memcpy(dg, data, size);
        if (size) check_fast_lines(dg, size);
        check_fold_vs_reference(dg, size);
        free(dg);
    }
    /* number slices: the first bytes pick where, the rest is the text */
    if (size >= 2 && size - 2 <= STATSD_MAX_LINE) {
        size_t body = size - 2;
        for (size_t k = 0; k < 8 && body > 0; k++) {
            size_t off = (data[0] * 31u + k * 7u) % body;
            size_t len = (data[1] + k * 3u) % (body - off + 1);
            char *copy = malloc(len ? len : 1);
            if (!copy) return 0;
            memcpy(copy, data + 2 + off, len);
            check_double(copy, len);
            free(copy);
        }
        char *copy = malloc(body ? body : 1);
        if (!copy) return 0;
        memcpy(copy, data + 2, body);
        check_double(copy, body);
        free(copy);
    }
    return 0;
}
