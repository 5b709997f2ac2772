/* ingest_json — the two JSON ingest forms, parsed into the same sample shape the StatsD
 * parser produces (statsd_line_t), so both feed one aggregation path.
 *
 *   {"source":"robot_001","timestamp":1703005678.9,"metrics":{"cpu_usage":45.2,...}}
 *       → gauges labelled source=robot_001 (source optional)
 *   {"samples":[{"name":"n","kind":"counter","value":1,"labels":{"k":"v"},
 *                "sample_rate":0.5},...]}
 *       → kind defaults to gauge; a set's value may be a string or a number;
 *         a gauge's "delta":true makes it a +/- delta.
 *
 * Pure: jansson parses, no I/O. A body that is not JSON, or is JSON of neither form, is
 * an error (-1, err filled: the caller answers 400). A single bad sample inside a good
 * body is counted in rejected[reason] and skipped. */
#ifndef MC_INGEST_JSON_H
#define MC_INGEST_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "statsd.h"

typedef struct ingest_counts {
    uint64_t accepted;
    uint64_t rejected[STATSD_REASON_COUNT];
} ingest_counts_t;

/* Called once per valid sample; the line and its strings are valid only during the call.
 * Return 0 to accept it, or a statsd_reason_t to count it as rejected. */
typedef int (*ingest_sample_cb)(void *ud, const statsd_line_t *line);

int ingest_json_parse(const char *body, size_t len, ingest_sample_cb cb, void *ud,
                      ingest_counts_t *counts, char *err, size_t errlen);

/* The StatsD text form of POST /api/v1/ingest and of WebSocket text frames: splits lines,
 * parses each, calls cb for the good ones, counts the rest. Never fails as a whole. */
void ingest_statsd_text(const char *body, size_t len, ingest_sample_cb cb, void *ud,
                        ingest_counts_t *counts);

uint64_t ingest_counts_rejected(const ingest_counts_t *c);

#endif
