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
    uint64_t hash;     /* key->hash, so that the hub can look it up without reading key */
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
        sketch_t *timer; /* owned by the batch (NULL: no samples) */
        agg_set_t set;   /* owned by the batch */
    } v;
} agg_delta_t;

typedef struct agg_chunk agg_chunk_t;

/* Timer sketches and set members of a batch from agg_flush live in its arena: a few large
 * blocks instead of two allocations per timer and one per set, freed with the batch by
 * whichever thread frees it. A delta's set then holds its n members densely (cap == n),
 * not as a hash table. A batch built by hand (arena NULL) owns each sketch and set table
 * separately, as allocated by malloc. */
typedef struct agg_batch {
    ingest_transport_t transport;
    uint32_t n;
    agg_chunk_t *arena;
    agg_delta_t d[];
} agg_batch_t;

typedef struct agg_entry agg_entry_t;

/* A table slot keeps the hash beside the pointer: a probe compares hashes without
 * touching the entry, so a lookup costs one cache miss for the hit, not one per probe. */
typedef struct agg_slot {
    uint64_t hash;
    agg_entry_t *e; /* NULL: empty */
} agg_slot_t;

/* One way of the key cache (agg.c): a signature of a raw key and an entry it was seen
 * with. */
typedef struct agg_kc_way {
    uint64_t sig;
    agg_entry_t *e;
} agg_kc_way_t;

typedef struct agg {
    agg_slot_t *slots; /* linear probing on the raw key hash */
    uint32_t cap, n;
    /* The fast path's key cache, 2 ways per bucket: entries found by a cheap signature of
     * a few words of the raw key instead of its full hash (agg.c). Only a hint, always
     * verified against the entry; emptied whenever entries are freed. */
    agg_kc_way_t *kc;
    uint32_t kc_mask;    /* buckets - 1 */
    uint64_t kc_misses;  /* fast-path lines that needed the full hash (benchmarks) */
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

/* The fast path of the StatsD UDP ingest (ingest_fold.c): samples of text lines in the
 * common shape (statsd_parse_lines), folded into entries that already exist. A sample's
 * name and tag span (the bytes after "|#", as statsd_line_t.tags_raw) are exactly what
 * agg_add keys a text line by, so a line takes this path once agg_add has created its
 * entry. A known raw key was validated (name and tags) when it was created, which is why
 * the fast path can skip splitting and checking the tags.
 *
 * Folds s[i..n) in order, at most AGG_FOLD_MAX of them, and stops at the first one that
 * is not `parsed` or whose identity is not in the table: returns its index (or where it
 * stopped; n when all were folded). The caller folds that one through the reference path
 * (statsd_parse_line + agg_add) and calls again from the next. Samples refused for lack
 * of memory are counted in *refused and skipped. */
#define AGG_FOLD_MAX 64
size_t agg_fold_samples(agg_t *a, const statsd_sample_t *s, size_t i, size_t n,
                        uint64_t *refused);

/* Moves every accumulator touched since the last flush into a new batch (NULL: nothing
 * touched, or -ENOMEM in *err). Keys untouched for evict_after flushes are forgotten. */
agg_batch_t *agg_flush(agg_t *a, ingest_transport_t transport, uint32_t evict_after, int *err);
bool agg_has_dirty(const agg_t *a);

void agg_batch_free(agg_batch_t *b);

/* Set helpers, shared with the registry (which merges deltas' sets into its own). */
int agg_set_insert(agg_set_t *s, uint64_t h); /* 1 added, 0 present, -ENOMEM */
void agg_set_free(agg_set_t *s);

#endif
