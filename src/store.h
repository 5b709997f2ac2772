/* store — the SQLite store (WAL) in the data directory: raw 1 s points, 1 min and 1 h
 * rollups, the event log. Written by its own thread in batched transactions, so no loop
 * ever waits on the disk.
 *
 * The hub hands it work through store_submit() (a queue and a condition variable; the
 * store thread drains everything queued into one transaction) and hears back through
 * its inbox: events committed (so that they are delivered and acknowledged only once on
 * disk), rollup query answers, aggregation results.
 *
 * Schema version 2 (PRAGMA user_version; a version 1 file is migrated when opened):
 *   series(id INTEGER PRIMARY KEY, key BLOB UNIQUE, name TEXT, labels TEXT, kind INTEGER)
 *   points(t INTEGER PRIMARY KEY, n INTEGER, data BLOB)   raw points: one row per second,
 *       data = n records of (series id: u32, value: f64), little-endian, 12 bytes each
 *   rollup_60 / rollup_3600(t, series_id, count, sum, min, max, last,
 *       PRIMARY KEY(t, series_id)) WITHOUT ROWID           1 min and 1 h rollups
 *   events(seq INTEGER PRIMARY KEY, type TEXT, envelope TEXT)
 *   meta(key TEXT PRIMARY KEY, value)                      rollup watermarks
 * Everything is keyed by time first: each second, minute and hour appends at the end of
 * its tree, so writing, rolling up and expiring cost the same in a store that has run
 * for months as in a new one. */
#ifndef MC_STORE_H
#define MC_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"
#include "eventlog.h"
#include "inbox.h"
#include "registry.h"
#include "series_key.h"

#define STORE_FILE "metricast.db"
#define STORE_ERR_LEN 512
/* Trend references handed to the hub per loop task (see store_hooks_t.trend_refs). */
#define STORE_REFS_SLICE 512

typedef struct store store_t;
struct store_ref;

/* One raw point of a series. The key is borrowed: it must stay valid until the store has
 * written the point, which store_close guarantees (the hub's registry keeps every series
 * until after the store is closed). Borrowing keeps the hand-over of 100,000 points a
 * second free of reference counting, whose writes would move every key's cache line
 * between the hub's core and the store's twice a second. */
typedef struct store_point {
    series_key_t *key;
    metric_kind_t kind;
    uint32_t t;
    double v;
} store_point_t;

/* What the store thread tells the hub (run on the hub thread through its inbox). */
typedef struct store_hooks {
    inbox_t *inbox;
    void *ctx;
    /* events up to seq are committed (rc 0); rc < 0 only when the store could not even
     * queue one (out of memory): the hub then delivers it unstored. Events whose write
     * fails are kept and retried, and reported only once written. */
    void (*events_done)(void *ctx, uint64_t seq, int rc);
    /* an aggregation job's lifecycle: phase 0 started, 1 completed, 2 failed */
    void (*aggregation)(void *ctx, int phase, const char *job_id, uint64_t entries,
                        double duration_ms, const char *error_message, const char *error_type);
    /* after an aggregation, the trend references that changed: a series' rollup value an
     * hour, a day and a week ago (NAN when there is none). Delivered in slices of at most
     * STORE_REFS_SLICE, one slice per inbox task, so that no single task on the hub's
     * loop runs long; keys are references the hook may keep (skey_ref). */
    void (*trend_refs)(void *ctx, const struct store_ref *refs, size_t n);
} store_hooks_t;

typedef struct store_ref {
    series_key_t *key;
    double hour, day, week;
} store_ref_t;

typedef struct store_limits {
    uint32_t raw_retention_s;  /* raw points */
    uint32_t r60_retention_s;  /* 1 min rollups: 7 days */
    uint32_t r3600_retention_s; /* 1 h rollups: 90 days */
    uint32_t events_keep;      /* events kept in the file */
} store_limits_t;

/* Opens (creating and migrating) dir/metricast.db. A file that is not a healthy metricast
 * store is refused (-EINVAL, err says so) unless reset, which moves it aside first.
 * Synchronous: called before any thread runs. */
int store_open(store_t **out, const char *dir, bool reset, const store_limits_t *lim,
               char err[STORE_ERR_LEN]);
/* Reloads the retained events (seq survives a restart) and the recent history (charts
 * do not go blank). Before store_start. */
int store_load(store_t *s, eventlog_t *log, registry_t *reg, uint32_t history_seconds,
               char err[STORE_ERR_LEN]);
int store_start(store_t *s, const store_hooks_t *hooks);
/* Flushes what is queued, stops the thread, closes the database. NULL allowed. */
void store_close(store_t *s);

/* Hub thread. Each takes over what it is given (pts: the array; its keys stay borrowed).
 * pts: usually one second's points (the
 * roll's hand-over), any order, any mix of seconds; a series given twice for one second
 * keeps the later value. */
void store_put_points(store_t *s, store_point_t *pts, size_t n);
void store_put_event(store_t *s, event_t *e);
/* An aggregation job: rolls every complete minute that ends at or before complete_before
 * (unix seconds; the hub passes its last closed second boundary, so every point of those
 * minutes has been handed over before the job is queued; 0: the wall clock minus 5 s)
 * into 1 min rollups, complete hours into 1 h rollups, applies retention, then refreshes
 * the trend references. Minute rollups are computed from the raw points just written
 * (one minute is 60 rows of the points table), hour rollups from the minutes this run
 * rolled (kept in memory, 48 bytes a series) or, for the hour a restart or a failed job
 * interrupted, from its minute rollups. At most STORE_MAX_MINUTES_PER_JOB minutes per
 * job: a store that was down catches up over the following jobs. */
#define STORE_MAX_MINUTES_PER_JOB 10
void store_aggregate(store_t *s, const char *job_id, uint32_t complete_before);

/* Rollup query: the answer body (JSON) is produced on the store thread and handed to
 * done(ctx, status, body) on the hub thread (through the hooks' inbox). */
typedef void (*store_query_done)(void *ctx, int status, buf_t *body);
int store_query(store_t *s, const char *name, const char *source, uint32_t from, uint32_t to,
                uint32_t step, store_query_done done, void *ctx);

/* Health: 0 when the last write succeeded, else the negative error; and its text. */
int store_status(store_t *s, char *msg, size_t msglen);
uint64_t store_write_errors(store_t *s);
/* Raw points not written because the store was behind (see MAX_POINT_JOBS). */
uint64_t store_points_dropped(store_t *s);
/* Raw point rows (seconds) skipped because they could not be decoded. */
uint64_t store_bad_rows(store_t *s);

#endif
