#include "ingest_fold.h"

#include <string.h>

void ingest_fold_init(ingest_fold_t *f, uint32_t max_entries) {
    memset(f->rejected, 0, sizeof f->rejected);
    f->fast_lines = f->slow_lines = 0;
    f->nbatch = 0;
    agg_init(&f->agg, max_entries);
}

void ingest_fold_free(ingest_fold_t *f) { agg_free(&f->agg); }

static void count_add(ingest_fold_t *f, int rc) {
    if (rc > 0)
        f->rejected[rc]++;
    else if (rc < 0)
        f->rejected[STATSD_TOO_LONG]++; /* out of memory: refused */
}

/* The reference path for one line. */
static void fold_slow(ingest_fold_t *f, const char *p, size_t n) {
    f->slow_lines++;
    statsd_reason_t r = statsd_parse_line(p, n, &f->line);
    if (r != STATSD_OK) {
        if (r != STATSD_EMPTY) f->rejected[r]++;
        return;
    }
    count_add(f, agg_add(&f->agg, &f->line));
}

/* Datagrams too long to scan (only reachable by direct callers: the UDP threads read at
 * most 16 KiB) take the reference path line by line. */
static void fold_unscanned(ingest_fold_t *f, const char *p, size_t len) {
    const char *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fold_slow(f, p, n);
        p += n + 1;
    }
}

/* Folds the samples in hand (f->nbatch of them), in order. */
static void fold_batch(ingest_fold_t *f, uint64_t *refused) {
    size_t n = f->nbatch;
    for (size_t i = 0; i < n;) {
        size_t j = agg_fold_samples(&f->agg, f->batch, i, n, refused);
        f->fast_lines += j - i;
        if (j == n) break;
        fold_slow(f, f->batch[j].name, f->batch[j].len);
        i = j + 1;
    }
    f->nbatch = 0;
}

/* Each datagram is scanned once (statsd_scan) and its lines parsed (statsd_parse_lines)
 * into the batch in hand, which collects lines across datagrams and is folded whenever it
 * is full (agg_fold_samples, which overlaps the lookups' cache misses; the more lines it
 * sees at once, the more misses overlap). A line the fast path does not take is folded
 * through the reference path at its place, so lines are folded in arrival order, which
 * gauges' absolute-then-delta rule depends on. */
void ingest_fold_datagrams(ingest_fold_t *f, const char *const *p, const size_t *len, size_t n) {
    uint64_t refused = 0;
    for (size_t d = 0; d < n; d++) {
        if (len[d] > STATSD_SCAN_MAX) {
            fold_batch(f, &refused);
            fold_unscanned(f, p[d], len[d]);
            continue;
        }
        statsd_scan(&f->scan, p[d], len[d]);
        size_t pos = 0;
        while (pos < len[d]) {
            size_t k = f->nbatch;
            f->nbatch += statsd_parse_lines(&f->scan, &pos, f->batch + k, INGEST_FOLD_BATCH - k);
            if (f->nbatch == INGEST_FOLD_BATCH) fold_batch(f, &refused);
        }
    }
    fold_batch(f, &refused);
    f->rejected[STATSD_TOO_LONG] += refused; /* out of memory: refused */
}

void ingest_fold_datagram(ingest_fold_t *f, const char *p, size_t len) {
    ingest_fold_datagrams(f, &p, &len, 1);
}
