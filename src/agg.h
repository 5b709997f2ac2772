/* agg — aggregation of samples between hand-overs to the hub.
 *
 * Each producer (a StatsD UDP thread, one HTTP ingest request, a WebSocket source) owns
 * an agg_t. agg_add() folds a parsed sample into a per-series accumulator: counters sum
 * (scaled by 1/rate) — or, for a running total (counter_total), keep the latest total
 * plus later increments —, gauges keep the last absolute value plus later deltas, timers feed
 * a sketch, sets collect member hashes. agg_flush() moves everything touched since the
 * last flush into an agg_batch_t that the hub applies to the registry in one go; the
 * accumulators restart empty. So the hub's work per flush is per distinct series, not per
 * line, and 10 million lines/s become a few hundred thousand merges/s at most.
 *
 * An agg_t is used by one thread at a time. A batch is handed to the hub whole (its
 * owner from then on) and freed with agg_batch_free(). */
#ifndef MC_AGG_H
#define MC_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metric.h"
#include "series_key.h"
#include "sketch.h"
#include "statsd.h"

typedef enum { INGEST_UDP = 0, INGEST_HTTP, INGEST_WS, INGEST_TRANSPORT_COUNT } ingest_transport_t;
const char *ingest_transport_name(ingest_transport_t t);

typedef struct agg_set {
    uint64_t *slots; /* open addressing; 0 = empty (a member hashing to 0 is stored as 1) */
    uint32_t n, cap;
} agg_set_t;

typedef struct agg_delta {
    series_key_t *key; /* one reference, owned by the batch */
    metric_kind_t kind;
    uint32_t nlines; /* samples folded in: what the hub counts as accepted/rejected */
    union {
        struct {
            double counter; /* increments (after counter_abs when has_total) */
            bool counter_has_total;
            double counter_abs; /* the latest running total (statsd_line_t.counter_total) */
        };
        struct {
            bool has_abs;
            double abs, delta;
        } gauge;
        sketch_t *timer; /* owned by the batch */
        agg_set_t set;   /* owned by the batch */
    } v;
} agg_delta_t;

typedef struct agg_batch {
    ingest_transport_t transport;
    uint32_t n;
    agg_delta_t d[];
} agg_batch_t;

typedef struct agg_entry agg_entry_t;

/* A table slot keeps the hash beside the pointer: a probe compares hashes without
 * touching the entry, so a lookup costs one cache miss for the hit, not one per probe. */
typedef struct agg_slot {
    uint64_t hash;
    agg_entry_t *e; /* NULL: empty */
} agg_slot_t;

typedef struct agg {
    agg_slot_t *slots; /* linear probing on the raw key hash */
    uint32_t cap, n;
    agg_entry_t **dirty; /* touched since the last flush */
    uint32_t ndirty, dirty_cap;
    uint32_t max_entries; /* distinct keys kept; beyond, new keys are refused */
    uint64_t flushes;
} agg_t;

/* max_entries bounds the memory of one producer (0: 1,000,000). */
void agg_init(agg_t *a, uint32_t max_entries);
void agg_free(agg_t *a);

/* Folds one parsed sample in. Returns STATSD_OK, a statsd_reason_t that the caller counts
 * as rejected (BAD_NAME/BAD_TAGS from the key, TOO_LONG when the producer's key table is
 * full), or -ENOMEM. */
int agg_add(agg_t *a, const statsd_line_t *line);

/* The same, in three steps, so that a producer with many lines can overlap the memory
 * latency of one line's lookup with the parsing of the next ones:
 *   agg_probe_start  hashes the line's identity and prefetches its table slot;
 *   agg_probe_slot   (a line or two later) reads the slot and prefetches the entry;
 *   agg_add_probed   (a line or two later) confirms the entry and folds the sample in.
 * Any interleaving with other adds is correct: a stale candidate is only a missed
 * shortcut. The line must stay valid (same bytes) from start to add. */
typedef struct agg_probe {
    uint64_t hash;
    agg_entry_t *cand;
} agg_probe_t;
void agg_probe_start(const agg_t *a, const statsd_line_t *line, agg_probe_t *p);
void agg_probe_slot(const agg_t *a, agg_probe_t *p);
int agg_add_probed(agg_t *a, const statsd_line_t *line, const agg_probe_t *p);

/* Moves every accumulator touched since the last flush into a new batch (NULL: nothing
 * touched, or -ENOMEM in *err). Keys untouched for evict_after flushes are forgotten. */
agg_batch_t *agg_flush(agg_t *a, ingest_transport_t transport, uint32_t evict_after, int *err);
bool agg_has_dirty(const agg_t *a);

void agg_batch_free(agg_batch_t *b);

/* Set helpers, shared with the registry (which merges deltas' sets into its own). */
int agg_set_insert(agg_set_t *s, uint64_t h); /* 1 added, 0 present, -ENOMEM */
void agg_set_free(agg_set_t *s);

#endif
