/* ingest_fold — the receive path of one StatsD producer without its socket: a datagram
 * is split into lines, each line parsed and folded into the producer's agg_t, and every
 * rejected line counted by reason. Each UDP ingest thread owns one; benchmarks and tests
 * drive one with captured datagrams. No I/O, no clock, no locks: one thread at a time.
 *
 * Two paths give the same result. The fast one (statsd_scan + statsd_parse_lines +
 * agg_fold_samples) takes the common line shape for an identity the table already knows;
 * everything else — first sight of a key, multi-value lines, DogStatsD extras, every
 * malformed line — goes through statsd_parse_line + agg_add, the reference. */
#ifndef MC_INGEST_FOLD_H
#define MC_INGEST_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "statsd.h"

#define INGEST_FOLD_BATCH AGG_FOLD_MAX

typedef struct ingest_fold {
    agg_t agg; /* the producer's table; hand it over with agg_flush() */
    /* lines refused since the owner last collected them, by statsd_reason_t (blank
     * lines are skipped, not counted) */
    uint64_t rejected[STATSD_REASON_COUNT];
    /* lines through each path (for benchmarks and tests; never reset here) */
    uint64_t fast_lines, slow_lines;
    statsd_scan_t scan;
    statsd_sample_t batch[INGEST_FOLD_BATCH]; /* the fast path's lines in hand */
    size_t nbatch;
    statsd_line_t line;                       /* the reference path's parse */
} ingest_fold_t;

/* max_entries as for agg_init (0: the default). */
void ingest_fold_init(ingest_fold_t *f, uint32_t max_entries);
void ingest_fold_free(ingest_fold_t *f);

/* Folds every line of the datagram p[0..len) in, in order. Lines end at '\n' (the last
 * one may lack it). The bytes are only read, and not kept after the call. */
void ingest_fold_datagram(ingest_fold_t *f, const char *p, size_t len);
/* The same for n datagrams p[i][0..len[i]) at once, in order (what one recvmmsg brings):
 * lines of several datagrams are folded together, which overlaps more cache misses. */
void ingest_fold_datagrams(ingest_fold_t *f, const char *const *p, const size_t *len, size_t n);

#endif
