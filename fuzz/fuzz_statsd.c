/* libFuzzer target for the StatsD parser: every line of the input through
 * statsd_parse_line, the parsed name through statsd_sanitize, and slices of the input
 * through statsd_parse_double, checked against the header's contracts and against strtod.
 * Built by scripts/fuzz.sh. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
