/* registry — every series the hub knows, its current state and its history.
 *
 * Owned by the hub thread alone: ingest threads and workers reach it only by posting
 * batches and queries to the hub's inbox, so nothing here locks.
 *
 * Series are found by key (hash table) and grouped into families by name (one kind per
 * name, as Prometheus requires). registry_apply() merges an ingest batch;
 * registry_roll() closes the current 1 s interval of every series touched in it: counter
 * rate, timer statistics, set cardinality, and a history point.
 *
 * What a series reports (JSON, WebSocket, /metrics):
 *   counter: value = total since the hub started, rate = per second over the last interval;
 *            for running totals (agg_delta_t.counter_has_total: a kernel counter since
 *            boot) value = the latest total, and the interval's increase is the difference
 *            from the previous total (a total below it means the counter restarted: the
 *            increase is the new total, as Prometheus reads a reset). The first total a
 *            series sees only sets its value: no increase, no point, rate stays 0.
 *   gauge:   value = current value
 *   timer:   count/sum/min/max/p50/p90/p99 of the last interval that had samples,
 *            value = its mean; /metrics also has cumulative _sum and _count
 *   set:     value = distinct members in the last completed interval */
#ifndef MC_REGISTRY_H
#define MC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "history.h"
#include "metric.h"
#include "series_key.h"
#include "sketch.h"

/* Reasons the registry refuses samples, numbered after the parser's. */
enum {
    REG_REJECT_SERIES_LIMIT = STATSD_REASON_COUNT,
    REG_REJECT_KIND_CONFLICT,
    REG_REJECT_RESERVED_NAME,
    REG_REJECT_NAME_CONFLICT, /* its /metrics names would clash with another family's */
    REJECT_REASON_COUNT
};
const char *reject_reason_name(int reason); /* parser and registry reasons */

typedef struct timer_stats {
    double count, sum, min, max, p50, p90, p99;
} timer_stats_t;

struct family;

typedef struct series {
    series_key_t *key; /* one reference */
    struct family *fam;
    const char *source; /* the "source" label's value (inside key), or NULL */
    metric_kind_t kind;
    bool dirty;        /* received data in the current interval */
    bool zero_pending; /* rate/cardinality must drop to 0 at the next roll */
    bool has_total;    /* counters: a running total was seen, the next one's increase is known */
    uint64_t roll_mark;
    uint64_t changed_gen; /* registry->gen of the last interval with data */
    uint64_t change_seq;  /* registry->change_seq when its reported values last changed */
    uint64_t push_mark;   /* registry->push_gen when listed in `changed` */
    double updated_at;    /* unix seconds of the last sample */
    double value;
    double rate;         /* counters */
    double interval_sum; /* counters: increase in the current interval */
    sketch_t *cur;       /* timers: samples of the current interval (lazy) */
    double count_total, sum_total; /* timers: cumulative */
    timer_stats_t last;            /* timers: last interval with samples */
    agg_set_t members;             /* sets: the current interval */
    history_t hist;
    /* trend references from the store's rollups (refreshed by the aggregation job): the
     * comparable value an hour, a day and a week ago; NAN when unknown */
    double ref_hour, ref_day, ref_week;
} series_t;

typedef struct family {
    const struct registry *reg; /* the owner (its settings: trend dead-band) */
    char *name;
    char *help; /* owned; NULL: the generic text of its kind (registry_t.family_help) */
    metric_kind_t kind;
    series_t **v;
    uint32_t n, cap;
} family_t;

/* The key's hash beside the pointer: probes compare hashes without touching series. */
typedef struct reg_slot {
    uint64_t hash;
    series_t *s; /* NULL: empty */
} reg_slot_t;

typedef struct registry {
    reg_slot_t *slots; /* by key hash, linear probing */
    uint32_t cap, n;
    family_t **fslots; /* by name hash */
    uint32_t fcap;
    char **claimed; /* names families use on /metrics (x_total, x_sum, ...): hash set */
    uint32_t claimed_cap, nclaimed;
    family_t **fams; /* every family, in creation order until sorted */
    uint32_t nfam, fams_cap;
    bool fams_sorted;
    series_t **dirty; /* touched or zero-pending: processed by the next roll */
    uint32_t ndirty, dirty_cap;
    uint32_t max_series;
    uint32_t history_points;
    uint64_t gen; /* completed rolls */
    /* Change tracking for live pushes: every apply or roll that changes what a series
     * reports bumps change_seq and lists the series in `changed` (once per push window;
     * registry_push_window() starts a new window). */
    uint64_t change_seq;
    uint64_t push_gen;
    series_t **changed;
    uint32_t nchanged, changed_cap;
    double trend_deadband; /* relative change within which a trend is "stable" */
    /* The HELP text /metrics shows for a new family, when its producer knows one (the
     * host source's node_* families): written into buf, or NULL for the generic text. */
    const char *(*family_help)(const char *name, char *buf, size_t cap);
    /* Every history point the roll appends is also offered here (the store writes it). */
    void (*on_point)(void *ctx, const series_t *s, uint32_t t, double v);
    void *point_ctx;
} registry_t;

typedef struct registry_result {
    uint64_t accepted;                      /* samples (lines) merged */
    uint64_t rejected[REJECT_REASON_COUNT]; /* samples refused, by reason */
} registry_result_t;

int registry_init(registry_t *r, uint32_t max_series, uint32_t history_points);
void registry_free(registry_t *r);

/* Merges a batch (borrowed; the caller frees it). now: unix seconds. */
void registry_apply(registry_t *r, const agg_batch_t *b, double now, registry_result_t *res);
/* Closes the interval ending at unix second now_sec. */
void registry_roll(registry_t *r, uint32_t now_sec);

/* Finds or creates the series for key (loading history at start). NULL when refused. */
series_t *registry_restore(registry_t *r, series_key_t *key, metric_kind_t kind);

/* The value a trend compares: a counter's rate (its stored points are per-second
 * increments), everything else's value. */
double registry_trend_value(const series_t *s);
/* "up", "down" or "stable": against the hour reference when known, else against the
 * oldest in-memory point of the last 5 minutes; now: unix seconds. */
const char *registry_trend_direction(const registry_t *r, const series_t *s, double now);

/* Forgets the `changed` list (after a push to every subscriber group). */
void registry_push_window(registry_t *r);

series_t *registry_find(const registry_t *r, const series_key_t *key);
family_t *registry_family(const registry_t *r, const char *name);
/* Families sorted by name (sorts once after new families appear). */
family_t *const *registry_families(registry_t *r, uint32_t *n);

#endif
