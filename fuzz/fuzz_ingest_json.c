/* libFuzzer target for the HTTP/WebSocket ingest bodies: the input as a JSON body
 * (ingest_json_parse) and as StatsD text (ingest_statsd_text). The callback checks every
 * sample it is handed against the statsd_line_t contract and reads every byte it points
 * to (so ASan sees a dangling or short pointer); the counts must add up. Built by
 * scripts/fuzz.sh. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_json.h"
#include "statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint64_t calls, accepted;
    unsigned sum; /* touches every byte */
} seen_t;

static unsigned touch(const char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += (unsigned char)p[i];
    return s;
}

static int on_sample(void *ud, const statsd_line_t *l) {
    seen_t *seen = ud;
    seen->calls++;
    assert(l->name && l->name_len > 0 && l->name_len <= STATSD_MAX_NAME);
    seen->sum += touch(l->name, l->name_len);
    assert((unsigned)l->kind < METRIC_KIND_COUNT);
    assert(l->rate > 0 && l->rate <= 1);
    if (l->kind == METRIC_SET) {
        assert(l->nvalues == 0);
        assert(l->member && l->member_len > 0);
        seen->sum += touch(l->member, l->member_len);
    } else {
        assert(l->nvalues >= 1 && l->nvalues <= STATSD_MAX_VALUES);
        for (int i = 0; i < l->nvalues; i++)
            assert(isfinite(l->values[i]));
    }
    if (l->kind != METRIC_GAUGE) assert(!l->gauge_delta);
    assert(!l->counter_total); /* only internal producers send running totals */
    assert(l->ntags >= 0 && l->ntags <= STATSD_MAX_TAGS);
    for (int i = 0; i < l->ntags; i++) {
        const statsd_tag_t *t = &l->tags[i];
        assert(t->key && t->key_len > 0 && t->key_len <= 255);
        assert(t->value && t->value_len <= 255);
        seen->sum += touch(t->key, t->key_len) + touch(t->value, t->value_len);
    }
    /* the consumer may reject: exercise that path for names starting with 'R' */
    if (l->name[0] == 'R') return STATSD_BAD_NAME;
    seen->accepted++;
    return 0;
}

static void check_counts(const ingest_counts_t *c, const seen_t *seen) {
    assert(c->accepted == seen->accepted);
    uint64_t rej = 0;
    for (int i = 0; i < STATSD_REASON_COUNT; i++)
        rej += c->rejected[i];
    assert(ingest_counts_rejected(c) == rej);
    assert(c->rejected[STATSD_OK] == 0);
    assert(c->rejected[STATSD_EMPTY] == 0); /* blank lines are skipped, not rejected */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy: exactly size bytes, no NUL after them */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);

    ingest_counts_t c;
    seen_t seen;
    char err[256];

    memset(&c, 0, sizeof c);
    memset(&seen, 0, sizeof seen);
    err[0] = '\0';
    int rc = ingest_json_parse(body, size, on_sample, &seen, &c, err, sizeof err);
    assert(rc == 0 || rc == -1);
    assert(memchr(err, '\0', sizeof err));
    if (rc == -1) assert(err[0] != '\0');
    check_counts(&c, &seen);

    memset(&c, 0, sizeof c);
    memset(&seen, 0, sizeof seen);
    ingest_statsd_text(body, size, on_sample, &seen, &c);
    check_counts(&c, &seen);
    /* every line that is not blank is either handed over or counted as rejected */
    uint64_t lines = 0, oks = 0;
    const char *p = body, *end = body + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        statsd_line_t l;
        statsd_reason_t r = statsd_parse_line(p, n, &l);
        if (r != STATSD_EMPTY) lines++;
        if (r == STATSD_OK) oks++;
        p += n + 1;
    }
    assert(seen.calls == oks);
    assert(c.accepted + ingest_counts_rejected(&c) == lines);

    free(body);
    return 0;
}
