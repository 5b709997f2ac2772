/* bench_store_aggregate — the store's aggregation job on 100,000 series × 60 raw points a
 * minute: how long it takes on the store thread, and how much event-loop time it costs.
 *
 *   bench_store_aggregate [--mode job|roll|e2e|both] [--series N] [--repeats N] [--no-refs]
 *                         [-v] [--feed-rate LINES_PER_S] [--e2e-timeout SECONDS]
 *                         [-- METRICASTD --listen 127.0.0.1:PORT --statsd 127.0.0.1:0
 *                            --max-series 200000 --aggregate-every 5 ...]
 *
 * Series: N gauges (default 100,000) named like bench_exposition's, `bench.gauge_NNN` ×
 * `source:srcNNNN` (N/1000 names × 1,000 sources); their keys are built from the StatsD
 * lines with the daemon's own parser, so they are the daemon's keys byte for byte.
 *
 * Seeding (own SQLite connection, before anything is timed): the series rows; unless
 * --no-refs one rollup_60 row per series an hour ago and one rollup_3600 row a day and a
 * week ago, as a store that has run for a week holds them, so that the first job reads a
 * reference for every series and hands all of them to the loop.
 *
 * --mode job (in-process, links metricast_core): per repeat a fresh store in a temp dir
 * (store_open + store_start, hooks on a uv loop and inbox owned by the bench, standing in
 * for the hub). The hour before H is seeded with 59 minutes of rollups (5.9M rows and the
 * hour's rows so far) and 30 s of raw points and one minute of rollups are past retention.
 * Three minutes of N points a second go in as the roll hands them over (one batch per
 * second, each followed by an event whose commit shows the batch is on disk: the batch
 * times are reported), and a job runs after each minute with complete_before = the
 * minute's end (see job_what: the first also ends the hour, reads the references afresh
 * and deletes what is past retention). Per job: started -> completed hooks (wall), the
 * store's duration_ms, entries_processed; the trend_refs hook does what the hub's
 * trend_refs_news does (registry_find per reference into a registry of the N series) and
 * is timed per slice; the longest single uv_run() while the job and its slices run, wall
 * and thread CPU (what a task costs the loop's owner, without the time other processes
 * had the core). The file is checked afterwards: complete hour rows, minute rows with 60
 * points, nothing past retention left. Median over --repeats (3). Then --mode roll.
 *
 * --mode roll (in-process): the hub's own cost per second with N series, for the 1 ms
 * budget: the second's StatsD batches (5,000 deltas each, built by agg_add/agg_flush as
 * the UDP threads do) merged with registry_apply, the roll (registry_roll with the hub's
 * point hand-over) and store_put_points into a running store; thread CPU time of each,
 * medians over 30 s, and the roll alone without the hand-over.
 *
 * --mode e2e: the daemon (after the words after `--`; its --data directory is seeded as
 * above). A sender thread sends the N gauge lines once every wall-clock second (starting
 * at +0.25 s, paced at --feed-rate, default 250,000 lines/s so that a pass takes 0.4 s and
 * never straddles the 1 s roll). Every 100 ms the bench reads GET /api/v1/health (answered
 * on a worker from atomics: the worst loop's lag and which loop it is) and every second
 * GET /api/v1/summary (series, drops; a tiny hub call whose round trip is a second probe of
 * the hub loop). /metrics is read only before and after: rendering 100k series takes ~40 ms
 * on the hub thread and would be the biggest lag in the run. Once all series are in the
 * registry the bench waits for the next minute boundary B1 and then for the first job that
 * starts after B1 + 60 (it rolls the minute [B1, B1+60) with 60 points per series), plus
 * 3 s; jobs are read from GET /api/v1/events?type=metrics.aggregation_*. A lag sample
 * counts as "during a job" from the job's started_at to 2.1 s after its completed_at (the
 * lag gauge is the max over a 1 s window published at the window's end); the rest is
 * "outside". After the daemon stopped, the rollup_60 row count and sum(count) of that
 * minute are read from the file to show that every point was rolled. Bounded by
 * --e2e-timeout (240 s). --mode both: job, roll, then e2e.
 *
 * Exit status: 0 when every job completed (and, e2e, no drops and all series present),
 * 1 on a failure, 2 on usage. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"
#include "clock.h"
#include "agg.h"
#include "event.h"
#include "inbox.h"
#include "log.h"
#include "registry.h"
#include "series_key.h"
#include "statsd.h"
#include "store.h"

#define SOURCES 1000
#define DGRAM_MAX 1400
#define MAX_REPEATS 20
#define MAX_JOBS 256
#define MAX_SAMPLES 8192

static struct {
    const char *mode;
    long series, repeats;
    int refs, verbose;
    double feed_rate, e2e_timeout;
} opt = {.mode = "job", .series = 100000, .repeats = 3, .refs = 1, .feed_rate = 250000,
         .e2e_timeout = 240};

static char *gauge_line(long id, double v, char *buf, size_t cap) {
    long names = (opt.series + SOURCES - 1) / SOURCES;
    snprintf(buf, cap, "bench.gauge_%03ld:%.1f|g|#source:src%04ld", id % names, v, id / names);
    return buf;
}

/* The daemon's key for series id, through its parser. */
static series_key_t *key_for(long id) {
    char line[128];
    gauge_line(id, 1.0, line, sizeof line);
    statsd_line_t l;
    if (statsd_parse_line(line, strlen(line), &l) != STATSD_OK) return NULL;
    series_key_t *k = NULL;
    return skey_from_line(&l, &k) == STATSD_OK ? k : NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- seeding: series rows, trend references and history, own connection ---------------- */

/* Writes, with its own connection (the store is open but idle): the series rows (ids 1..n),
 * unless --no-refs one rollup_60 row per series an hour before `now` and one rollup_3600
 * row a day and a week before, minute rollups of every series for the minutes
 * [hist_from, hist_to) (count 60, sum/min/max/last from hist_value()), and the rollup
 * watermarks at rolled_60. */
static double hist_value(long i, uint32_t t) { return (double)((i + t / 60) % 1000); }

static int seed(const char *dir, series_key_t **keys, long n, uint32_t now, uint32_t rolled_60,
                uint32_t hist_from, uint32_t hist_to, double *ms) {
    double t0 = now_ms();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE);
    sqlite3 *db = NULL;
    sqlite3_stmt *ser = NULL, *r60 = NULL, *r3600 = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) goto fail;
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) goto fail;
    if (sqlite3_prepare_v2(db, "INSERT INTO series(id,key,name,labels,kind) VALUES(?,?,?,?,?)",
                           -1, &ser, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO rollup_60(t,series_id,count,sum,min,max,last) "
                               "VALUES(?,?,?,?,?,?,?)", -1, &r60, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO rollup_3600(t,series_id,count,sum,min,max,last) "
                               "VALUES(?,?,3600,?,?,?,?)", -1, &r3600, NULL) != SQLITE_OK)
        goto fail_st;
    for (long i = 0; i < n; i++) {
        series_key_t *k = keys[i];
        char labels[64];
        snprintf(labels, sizeof labels, "{\"source\":\"%s\"}", skey_label_value(k, "source"));
        sqlite3_bind_int64(ser, 1, i + 1);
        sqlite3_bind_blob(ser, 2, k->data, (int)k->len, SQLITE_STATIC);
        sqlite3_bind_text(ser, 3, skey_name(k), -1, SQLITE_STATIC);
        sqlite3_bind_text(ser, 4, labels, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(ser, 5, (int)METRIC_GAUGE);
        if (sqlite3_step(ser) != SQLITE_DONE) goto fail_st;
        sqlite3_reset(ser);
    }
    /* history, time first as the store keys it; the hour's row holds its minutes so far */
    for (uint32_t t = hist_from; t < hist_to; t += 60) {
        for (long i = 0; i < n; i++) {
            double v = hist_value(i, t);
            sqlite3_bind_int64(r60, 1, t);
            sqlite3_bind_int64(r60, 2, i + 1);
            sqlite3_bind_int64(r60, 3, 60);
            sqlite3_bind_double(r60, 4, v * 60);
            for (int c = 5; c <= 7; c++) sqlite3_bind_double(r60, c, v);
            if (sqlite3_step(r60) != SQLITE_DONE) goto fail_st;
            sqlite3_reset(r60);
        }
    }
    if (hist_to > hist_from) {
        char sql[600];
        snprintf(sql, sizeof sql,
                 "INSERT INTO rollup_3600(t,series_id,count,sum,min,max,last) "
                 "SELECT t / 3600 * 3600, series_id, sum(count), sum(sum), min(min), max(max), 0 "
                 "FROM rollup_60 WHERE t >= %u AND t < %u GROUP BY t / 3600, series_id", hist_from, hist_to);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) goto fail_st;
        snprintf(sql, sizeof sql,
                 "UPDATE rollup_3600 SET last = (SELECT last FROM rollup_60 r WHERE r.t = %u AND "
                 "r.series_id = rollup_3600.series_id) WHERE t = %u", hist_to - 60, (hist_to - 60) / 3600 * 3600);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) goto fail_st;
    }
    if (sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK) {}
    if (opt.refs) {
        uint32_t t_hour = (now - 3600 - 60) / 60 * 60; /* in [now-4200, now-3600] */
        uint32_t ts[2] = {(now - 86400) / 3600 * 3600, (now - 604800) / 3600 * 3600};
        for (long i = 0; i < n; i++) {
            double v = (double)(i % 1000);
            sqlite3_bind_int64(r60, 1, t_hour);
            sqlite3_bind_int64(r60, 2, i + 1);
            sqlite3_bind_int64(r60, 3, 1);
            for (int c = 4; c <= 7; c++) sqlite3_bind_double(r60, c, v);
            if (sqlite3_step(r60) != SQLITE_DONE) goto fail_st;
            sqlite3_reset(r60);
        }
        for (int j = 0; j < 2; j++)
            for (long i = 0; i < n; i++) {
                double v = (double)(i % 1000);
                sqlite3_bind_int64(r3600, 1, ts[j]);
                sqlite3_bind_int64(r3600, 2, i + 1);
                for (int c = 3; c <= 6; c++) sqlite3_bind_double(r3600, c, v);
                if (sqlite3_step(r3600) != SQLITE_DONE) goto fail_st;
                sqlite3_reset(r3600);
            }
    }
    char sql[200];
    snprintf(sql, sizeof sql,
             "INSERT OR REPLACE INTO meta(key,value) VALUES('rolled_60',%u),('rolled_3600',%u)",
             rolled_60, rolled_60 / 3600 * 3600);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) goto fail_st;
    sqlite3_finalize(ser);
    sqlite3_finalize(r60);
    sqlite3_finalize(r3600);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) goto fail;
    sqlite3_close(db);
    *ms = now_ms() - t0;
    return 0;
fail_st:
    fprintf(stderr, "bench_store_aggregate: seeding: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(ser);
    sqlite3_finalize(r60);
    sqlite3_finalize(r3600);
    sqlite3_close(db);
    return -1;
fail:
    fprintf(stderr, "bench_store_aggregate: seeding %s: %s\n", path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return -1;
}

/* ---- --mode job ---------------------------------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    inbox_t inbox;
    registry_t reg;
    uint64_t done_seq;
    int done_rc;
    int phase;            /* -1 none yet; 0 started; 1 completed; 2 failed */
    double started_ms, completed_ms, store_ms;
    uint64_t entries;
    char error[256];
    size_t nrefs, refs_found, slices;
    double refs_apply_ms, refs_slice_max_ms, refs_last_ms;
} jfx_t;

static void h_events_done(void *ctx, uint64_t seq, int rc) {
    jfx_t *f = ctx;
    if (seq > f->done_seq) f->done_seq = seq;
    if (rc) f->done_rc = rc;
}

static void h_aggregation(void *ctx, int phase, const char *job_id, uint64_t entries,
                          double duration_ms, const char *msg, const char *type) {
    jfx_t *f = ctx;
    (void)job_id;
    f->phase = phase;
    if (phase == 0) f->started_ms = now_ms();
    if (phase >= 1) {
        f->completed_ms = now_ms();
        f->store_ms = duration_ms;
        f->entries = entries;
    }
    if (phase == 2) snprintf(f->error, sizeof f->error, "%s (%s)", msg, type);
}

/* what the hub's trend_refs_news does, one slice per call */
static void h_trend_refs(void *ctx, const store_ref_t *refs, size_t n) {
    jfx_t *f = ctx;
    double t0 = now_ms();
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        series_t *se = registry_find(&f->reg, refs[i].key);
        if (!se) continue;
        se->ref_hour = refs[i].hour;
        se->ref_day = refs[i].day;
        se->ref_week = refs[i].week;
        found++;
    }
    double d = now_ms() - t0;
    f->refs_apply_ms += d;
    if (d > f->refs_slice_max_ms) f->refs_slice_max_ms = d;
    f->refs_last_ms = now_ms();
    f->nrefs += n;
    f->refs_found += found;
    f->slices++;
}

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs the loop until *cond or the deadline; returns the longest single uv_run (wall
 * clock) and, in *worst_cpu, the most CPU time one took (what the loop's owner spends
 * on it, without the time other processes had the core). */
static double pump_cpu(jfx_t *f, int (*cond)(jfx_t *, uint64_t), uint64_t arg,
                       double timeout_ms, int *ok, double *worst_cpu) {
    double dl = now_ms() + timeout_ms, worst = 0;
    *ok = 0;
    while (now_ms() < dl) {
        double t0 = now_ms(), c0 = thread_cpu_ms();
        uv_run(&f->loop, UV_RUN_NOWAIT);
        double d = now_ms() - t0, c = thread_cpu_ms() - c0;
        if (d > worst) worst = d;
        if (worst_cpu && c > *worst_cpu) *worst_cpu = c;
        if (cond(f, arg)) {
            *ok = 1;
            break;
        }
        sleep_us(100);
    }
    return worst;
}
static double pump(jfx_t *f, int (*cond)(jfx_t *, uint64_t), uint64_t arg, double timeout_ms,
                   int *ok) {
    return pump_cpu(f, cond, arg, timeout_ms, ok, NULL);
}
static int cond_seq(jfx_t *f, uint64_t seq) { return f->done_seq >= seq; }
static int cond_agg(jfx_t *f, uint64_t unused) {
    (void)unused;
    return f->phase >= 1;
}
/* the reference slices that follow a job: quiet for 100 ms */
static int cond_refs_quiet(jfx_t *f, uint64_t unused) {
    (void)unused;
    return now_ms() - (f->refs_last_ms > f->completed_ms ? f->refs_last_ms : f->completed_ms) > 100;
}

#define NJOBS 3
static const char *const job_what[NJOBS] = {
    "first after a start: references read afresh, ends an hour, retention deletes",
    "the next minute",
    "the minute after",
};

typedef struct {
    double agg_ms, store_ms, refs_apply_ms, refs_slice_max_ms, max_uv_run_ms, max_uv_cpu_ms;
    uint64_t entries;
    size_t nrefs, refs_found, slices;
} job_timing_t;

typedef struct {
    job_timing_t job[NJOBS];
    double batch_med, batch_p90, batch_max, first_batch, seed_ms, insert_s;
} job_result_t;

static store_point_t *minute_points(series_key_t **keys, uint32_t t, double (*val)(long, uint32_t)) {
    store_point_t *pts = malloc((size_t)opt.series * sizeof *pts);
    if (!pts) return NULL;
    for (long i = 0; i < opt.series; i++)
        pts[i] = (store_point_t){keys[i], METRIC_GAUGE, t, val(i, t)};
    return pts;
}
static double fed_value(long i, uint32_t t) { return (double)((i + t) % 1000) + 0.5; }

/* Hands the store one second of points for every series and waits for the commit. */
static int put_second(jfx_t *f, store_t *s, series_key_t **keys, uint32_t t, uint64_t *seq,
                      double *ms) {
    store_point_t *pts = minute_points(keys, t, fed_value);
    if (!pts) return -1;
    double t0 = now_ms();
    store_put_points(s, pts, (size_t)opt.series);
    event_t *e = event_make("bench.barrier", "{}", NULL, clk_unix(), "bench0");
    if (!e || event_seal(e, ++*seq) < 0) return -1;
    store_put_event(s, e);
    int ok;
    pump(f, cond_seq, *seq, 60000, &ok);
    *ms = now_ms() - t0;
    if (!ok || f->done_rc) {
        fprintf(stderr, "bench_store_aggregate: second %u not committed (rc %d)\n", t, f->done_rc);
        return -1;
    }
    return 0;
}

static int run_one_job(jfx_t *f, store_t *s, const char *id, uint32_t complete_before,
                       job_timing_t *out) {
    f->phase = -1;
    f->nrefs = f->refs_found = f->slices = 0;
    f->refs_apply_ms = f->refs_slice_max_ms = f->refs_last_ms = 0;
    store_aggregate(s, id, complete_before);
    int ok;
    out->max_uv_cpu_ms = 0;
    out->max_uv_run_ms = pump_cpu(f, cond_agg, 0, 300000, &ok, &out->max_uv_cpu_ms);
    if (!ok || f->phase != 1) {
        fprintf(stderr, "bench_store_aggregate: job %s %s: %s\n", id,
                f->phase == 2 ? "failed" : "did not complete in 300 s", f->error);
        return -1;
    }
    double w = pump_cpu(f, cond_refs_quiet, 0, 10000, &ok, &out->max_uv_cpu_ms); /* the slices */
    if (w > out->max_uv_run_ms) out->max_uv_run_ms = w;
    out->agg_ms = f->completed_ms - f->started_ms;
    out->store_ms = f->store_ms;
    out->entries = f->entries;
    out->nrefs = f->nrefs;
    out->refs_found = f->refs_found;
    out->slices = f->slices;
    out->refs_apply_ms = f->refs_apply_ms;
    out->refs_slice_max_ms = f->refs_slice_max_ms;
    return 0;
}

static long long count_sql(const char *dir, const char *sql) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE);
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* One store: the hour before H holds 59 minutes of rollups (what a store that ran through
 * it holds: 5.9M rows, and the hour's rollup_3600 rows so far), its last minute not rolled
 * yet; 30 s of raw points and one minute of rollups are past retention. Then three
 * minutes of 100,000 points each go in second by second and a job runs after each (see
 * job_what): the first rolls the hour's last minute (the hour's rows become complete),
 * reads the trend references afresh and deletes what is past retention. */
static int job_once(int rep, series_key_t **keys, job_result_t *out) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/metricast-bench-store.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    int rc = -1;
    jfx_t *f = calloc(1, sizeof *f);
    store_t *s = NULL;
    f->phase = -1;
    uv_loop_init(&f->loop);
    inbox_init(&f->inbox, &f->loop);
    registry_init(&f->reg, (uint32_t)opt.series * 2, 60);
    for (long i = 0; i < opt.series; i++) registry_restore(&f->reg, keys[i], METRIC_GAUGE);

    uint32_t now = (uint32_t)clk_unix();
    uint32_t H = (now / 3600 - 3) * 3600; /* an hour well in the past, clear of the refs */
    /* raw points older than H - 90 and minute rollups older than H - 3540 are expired */
    store_limits_t lim = {now - (H - 90), now - (H - 3540), 90 * 86400, 100000};
    char err[STORE_ERR_LEN];
    if (store_open(&s, dir, false, &lim, err) < 0) {
        fprintf(stderr, "bench_store_aggregate: store_open: %s\n", err);
        goto out;
    }
    if (seed(dir, keys, opt.series, now, H - 60, H - 3600, H - 60, &out->seed_ms) < 0) goto out;
    store_hooks_t hooks = {&f->inbox, f, h_events_done, h_aggregation, h_trend_refs};
    if (store_start(s, &hooks) != 0) goto out;

    uint64_t seq = 0;
    double batch[180], dummy;
    int nb = 0;
    /* 30 s of raw points already rolled (before the watermark) and past retention */
    for (uint32_t t = H - 120; t < H - 90; t++)
        if (put_second(f, s, keys, t, &seq, &dummy) < 0) goto out;
    double ti = now_ms();
    uint32_t minute[NJOBS] = {H - 60, H, H + 60};
    for (int jn = 0; jn < NJOBS; jn++) {
        for (uint32_t sec = 0; sec < 60; sec++) {
            if (put_second(f, s, keys, minute[jn] + sec, &seq, &batch[nb]) < 0) goto out;
            if (opt.verbose) printf("  second %u: %.1f ms\n", minute[jn] + sec, batch[nb]);
            nb++;
        }
        char job_id[64];
        snprintf(job_id, sizeof job_id, "bench_%d_%d", rep, jn);
        if (run_one_job(f, s, job_id, minute[jn] + 60, &out->job[jn]) < 0) goto out;
    }
    out->insert_s = (now_ms() - ti) / 1e3;
    out->first_batch = batch[0];
    sort_doubles(batch, (size_t)nb);
    out->batch_med = median_sorted(batch, (size_t)nb);
    out->batch_p90 = pct_sorted(batch, (size_t)nb, 90);
    out->batch_max = batch[nb - 1];

    /* what the jobs wrote, against what went in */
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM rollup_3600 WHERE t = %u AND count = 3600", H - 3600);
    long long hour_rows = count_sql(dir, q);
    snprintf(q, sizeof q, "SELECT count(*) FROM rollup_60 WHERE t IN (%u,%u,%u) AND count = 60",
             H - 60, H, H + 60);
    long long min_rows = count_sql(dir, q);
    snprintf(q, sizeof q, "SELECT count(*) FROM points WHERE t < %u", H - 90);
    long long old_raw = count_sql(dir, q);
    snprintf(q, sizeof q, "SELECT count(*) FROM rollup_60 WHERE t < %u", H - 3540);
    long long old_r60 = count_sql(dir, q);
    if (hour_rows != opt.series || min_rows != 3 * opt.series || old_raw != 0 || old_r60 != 0) {
        fprintf(stderr, "bench_store_aggregate: wrong result: %lld complete hour rows, %lld "
                        "minute rows (want %ld and %ld); %lld raw seconds and %lld minute rows "
                        "past retention left\n",
                hour_rows, min_rows, opt.series, 3 * opt.series, old_raw, old_r60);
        goto out;
    }
    rc = 0;
out:
    store_close(s); /* joins the thread: nothing posts after this */
    inbox_close(&f->inbox, NULL);
    for (int i = 0; i < 100 && uv_run(&f->loop, UV_RUN_NOWAIT); i++) sleep_us(1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    inbox_free(&f->inbox);
    uv_loop_close(&f->loop);
    registry_free(&f->reg);
    free(f);
    rm_rf(dir);
    return rc;
}

static int run_job_mode(series_key_t **keys, char *result, size_t rlen) {
    job_result_t r[MAX_REPEATS];
    int n = 0, failed = 0;
    printf("mode job: %ld series, 60 points each per minute; %s; %ld repeats\n", opt.series,
           opt.refs ? "an hour/day/week-old reference per series" : "no trend references",
           opt.repeats);
    for (int i = 0; i < opt.repeats; i++) {
        memset(&r[n], 0, sizeof r[n]);
        if (job_once(i, keys, &r[n]) < 0) {
            failed++;
            continue;
        }
        job_result_t *x = &r[n];
        printf("run %d: seed %.0f ms; 210 seconds of %ld points written in %.1f s: first %.1f ms "
               "(creates the series rows), median %.1f, p90 %.1f, max %.1f ms\n",
               i + 1, x->seed_ms, opt.series, x->insert_s, x->first_batch, x->batch_med,
               x->batch_p90, x->batch_max);
        printf("  %-4s %9s %9s %8s %8s %7s %10s %12s %11s %11s\n", "job", "agg ms", "store ms",
               "entries", "refs", "slices", "apply ms", "max slice ms", "max uv_run", "(cpu ms)");
        for (int jn = 0; jn < NJOBS; jn++) {
            job_timing_t *j = &x->job[jn];
            printf("  %-4d %9.1f %9.1f %8llu %8zu %7zu %10.2f %12.3f %11.3f %11.3f   %s\n", jn + 1,
                   j->agg_ms, j->store_ms, (unsigned long long)j->entries, j->nrefs, j->slices,
                   j->refs_apply_ms, j->refs_slice_max_ms, j->max_uv_run_ms, j->max_uv_cpu_ms,
                   job_what[jn]);
        }
        fflush(stdout);
        n++;
    }
    if (n == 0) return -1;
    double med[NJOBS], uv[NJOBS], uvc[NJOBS], v[MAX_REPEATS], batch[MAX_REPEATS];
    for (int jn = 0; jn < NJOBS; jn++) {
        for (int i = 0; i < n; i++) v[i] = r[i].job[jn].agg_ms;
        sort_doubles(v, (size_t)n);
        med[jn] = median_sorted(v, (size_t)n);
        for (int i = 0; i < n; i++) v[i] = r[i].job[jn].max_uv_run_ms;
        sort_doubles(v, (size_t)n);
        uv[jn] = median_sorted(v, (size_t)n);
        for (int i = 0; i < n; i++) v[i] = r[i].job[jn].max_uv_cpu_ms;
        sort_doubles(v, (size_t)n);
        uvc[jn] = median_sorted(v, (size_t)n);
    }
    double worst_uvc = uvc[0] > uvc[1] ? uvc[0] : uvc[1];
    if (uvc[2] > worst_uvc) worst_uvc = uvc[2];
    for (int i = 0; i < n; i++) batch[i] = r[i].batch_med;
    sort_doubles(batch, (size_t)n);
    double worst = med[0] > med[1] ? med[0] : med[1];
    if (med[2] > worst) worst = med[2];
    double worst_uv = uv[0] > uv[1] ? uv[0] : uv[1];
    if (uv[2] > worst_uv) worst_uv = uv[2];
    printf("median of %d: jobs %.1f / %.1f / %.1f ms on the store thread; a second of %ld points "
           "written in %.1f ms; longest loop task during a job %.3f ms (%.3f ms of CPU)\n",
           n, med[0], med[1], med[2], opt.series, median_sorted(batch, (size_t)n), worst_uv,
           worst_uvc);
    printf("target: < 1000 ms on the store thread: %s; <= 1 ms on the loop: %s\n",
           worst < 1000 ? "met" : "MISSED", worst_uvc <= 1.0 ? "met" : "MISSED");
    snprintf(result, rlen,
             "agg_series=%ld agg_first_ms_median=%.1f agg_ms_median=%.1f "
             "agg_next_ms_median=%.1f agg_entries=%llu write_second_ms_median=%.1f refs=%zu "
             "refs_slices=%zu loop_task_max_ms_median=%.3f loop_task_max_cpu_ms_median=%.3f",
             opt.series, med[0], med[1], med[2], (unsigned long long)r[0].job[1].entries,
             median_sorted(batch, (size_t)n), r[0].job[0].nrefs, r[0].job[0].slices, worst_uv,
             worst_uvc);
    return failed ? -1 : 0;
}

/* ---- --mode roll: the hub's own cost each second -------------------------------------- */

/* What the hub's on_point does (hub.c): a point per series the roll closes, for the store
 * (the key borrowed from the registry). */
typedef struct {
    store_point_t *pts;
    size_t n, cap, hint;
} handover_t;

static void h_on_point(void *ctx, const series_t *se, uint32_t t, double v) {
    handover_t *h = ctx;
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : h->hint > 1024 ? h->hint + h->hint / 8 : 1024;
        store_point_t *np = realloc(h->pts, ncap * sizeof *np);
        if (!np) return;
        h->pts = np;
        h->cap = ncap;
    }
    h->pts[h->n++] = (store_point_t){se->key, se->kind, t, v};
}

/* Per simulated second: the N gauges arrive as StatsD batches of 5,000 (what the UDP
 * threads hand over), are merged (registry_apply), the second is closed (registry_roll,
 * with the hub's point hand-over) and the points are given to a running store, as the
 * hub does. Thread CPU time of each step; medians over --seconds. */
static int run_roll_mode(char *result, size_t rlen, long seconds) {
    registry_t reg;
    registry_init(&reg, (uint32_t)opt.series * 2, 3600);
    handover_t ho = {0};
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/metricast-bench-roll.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return -1;
    jfx_t *f = calloc(1, sizeof *f);
    store_t *st = NULL;
    uv_loop_init(&f->loop);
    inbox_init(&f->inbox, &f->loop);
    registry_init(&f->reg, 16, 1);
    store_limits_t lim = {7200, 7 * 86400, 90 * 86400, 100000};
    char err[STORE_ERR_LEN];
    if (store_open(&st, dir, false, &lim, err) < 0) {
        fprintf(stderr, "bench_store_aggregate: store_open: %s\n", err);
        return -1;
    }
    store_hooks_t hooks = {&f->inbox, f, h_events_done, h_aggregation, h_trend_refs};
    store_start(st, &hooks);
    double *apply = calloc((size_t)seconds, sizeof(double)), *roll = calloc((size_t)seconds, sizeof(double)),
           *bare = calloc((size_t)seconds, sizeof(double));
    agg_t ag;
    agg_init(&ag, (uint32_t)opt.series + 16);
    uint32_t t0 = (uint32_t)clk_unix() - (uint32_t)seconds - 10;
    printf("mode roll: %ld gauges, %ld seconds: merge the second's StatsD batches, close it, "
           "hand the points to the store (thread CPU time on the loop thread)\n", opt.series, seconds);
    for (long sec = -2; sec < seconds; sec++) { /* two warm-up seconds create the series */
        double ap = 0;
        for (long i = 0; i < opt.series; i += 5000) {
            for (long k = i; k < i + 5000 && k < opt.series; k++) {
                char line[128];
                gauge_line(k, (double)((k + sec) % 1000) + 0.5, line, sizeof line);
                statsd_line_t l;
                if (statsd_parse_line(line, strlen(line), &l) == STATSD_OK) agg_add(&ag, &l);
            }
            int e = 0;
            agg_batch_t *b = agg_flush(&ag, INGEST_UDP, 0, &e);
            double c0 = thread_cpu_ms();
            registry_result_t res;
            memset(&res, 0, sizeof res);
            if (b) registry_apply(&reg, b, clk_unix(), &res);
            ap += thread_cpu_ms() - c0;
            agg_batch_free(b);
        }
        /* the roll with the hand-over, as the hub does it */
        reg.on_point = h_on_point;
        reg.point_ctx = &ho;
        double c0 = thread_cpu_ms();
        registry_roll(&reg, t0 + (uint32_t)(sec + 3));
        if (ho.n) store_put_points(st, ho.pts, ho.n);
        double rl = thread_cpu_ms() - c0;
        ho.hint = ho.n;
        ho.pts = NULL;
        ho.n = ho.cap = 0;
        /* the same roll without the hand-over (the registry's part alone), on the same
         * series: merge the second's deltas again first */
        if (sec >= 0) {
            apply[sec] = ap;
            roll[sec] = rl;
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    /* the registry's roll alone: the same load, no on_point */
    reg.on_point = NULL;
    for (long sec = 0; sec < seconds; sec++) {
        for (long i = 0; i < opt.series; i += 5000) {
            for (long k = i; k < i + 5000 && k < opt.series; k++) {
                char line[128];
                gauge_line(k, (double)((k + sec) % 1000) + 0.25, line, sizeof line);
                statsd_line_t l;
                if (statsd_parse_line(line, strlen(line), &l) == STATSD_OK) agg_add(&ag, &l);
            }
            int e = 0;
            agg_batch_t *b = agg_flush(&ag, INGEST_UDP, 0, &e);
            registry_result_t res;
            memset(&res, 0, sizeof res);
            if (b) registry_apply(&reg, b, clk_unix(), &res);
            agg_batch_free(b);
        }
        double c0 = thread_cpu_ms();
        registry_roll(&reg, t0 + (uint32_t)(seconds + sec + 10));
        bare[sec] = thread_cpu_ms() - c0;
    }
    sort_doubles(apply, (size_t)seconds);
    sort_doubles(roll, (size_t)seconds);
    sort_doubles(bare, (size_t)seconds);
    double ma = median_sorted(apply, (size_t)seconds), mr = median_sorted(roll, (size_t)seconds),
           mb = median_sorted(bare, (size_t)seconds);
    printf("per second, median (max) ms of CPU: merging %ld deltas in %ld batches %.2f (%.2f); "
           "roll with the hand-over %.2f (%.2f), of which the hand-over %.2f; roll alone %.2f (%.2f)\n",
           opt.series, (opt.series + 4999) / 5000, ma, apply[seconds - 1], mr, roll[seconds - 1],
           mr - mb, mb, bare[seconds - 1]);
    printf("the hub's floor at this load: %.1f ms of loop time per second, of which the longest "
           "single task is the roll (%.2f ms); a 5,000-delta batch costs %.2f ms\n",
           ma + mr, mr, ma / (double)((opt.series + 4999) / 5000));
    snprintf(result, rlen,
             "roll_series=%ld roll_apply_ms_median=%.2f roll_ms_median=%.2f roll_handover_ms_median=%.2f "
             "roll_bare_ms_median=%.2f",
             opt.series, ma, mr, mr - mb, mb);
    agg_free(&ag);
    free(apply);
    free(roll);
    free(bare);
    store_close(st); /* writes what is queued: its points borrow the registry's keys */
    registry_free(&reg);
    inbox_close(&f->inbox, NULL);
    for (int i = 0; i < 100 && uv_run(&f->loop, UV_RUN_NOWAIT); i++) sleep_us(1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    inbox_free(&f->inbox);
    uv_loop_close(&f->loop);
    registry_free(&f->reg);
    free(f);
    rm_rf(dir);
    return 0;
}

/* ---- --mode e2e ------------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t *off; /* datagram boundaries, ndg + 1 */
    uint32_t *lines;
    size_t ndg;
} feed_t;

static int feed_build(feed_t *f) {
    size_t cap = (size_t)opt.series * 48 + DGRAM_MAX, len = 0, dcap = (size_t)opt.series / 20 + 16;
    f->data = malloc(cap);
    f->off = malloc((dcap + 1) * sizeof *f->off);
    f->lines = calloc(dcap, sizeof *f->lines);
    if (!f->data || !f->off || !f->lines) return -1;
    f->ndg = 0;
    f->off[0] = 0;
    size_t start = 0;
    for (long i = 0; i < opt.series; i++) {
        char line[128];
        gauge_line(i, (double)(i % 1000) + 0.5, line, sizeof line);
        size_t n = strlen(line);
        if (len - start + n + 1 > DGRAM_MAX) {
            if (f->ndg + 1 >= dcap) return -1;
            f->off[++f->ndg] = len;
            start = len;
        }
        if (len + n + 1 > cap) return -1;
        memcpy(f->data + len, line, n);
        f->data[len + n] = '\n';
        len += n + 1;
        f->lines[f->ndg]++;
    }
    f->off[++f->ndg] = len;
    return 0;
}

typedef struct {
    const feed_t *feed;
    int port;
    atomic_int stop;
    atomic_ullong passes, lines_sent;
    atomic_int late_passes; /* passes that ran past +0.9 s of their second */
} sender_t;

static void *sender_main(void *arg) {
    sender_t *S = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return NULL;
    while (!atomic_load(&S->stop)) {
        double now = clk_unix();
        double sec = floor(now), start = sec + 0.25;
        if (now > start + 0.05) start += 1.0, sec += 1.0;
        while (clk_unix() < start && !atomic_load(&S->stop)) sleep_us((long)((start - clk_unix()) * 1e6) + 50);
        double t0 = clk_unix();
        uint64_t sent = 0;
        for (size_t i = 0; i < S->feed->ndg && !atomic_load(&S->stop);) {
            double due = t0 + (double)sent / opt.feed_rate;
            double t = clk_unix();
            if (due > t + 0.00005) {
                sleep_us((long)((due - t) * 1e6));
                continue;
            }
            ssize_t n = send(fd, S->feed->data + S->feed->off[i], S->feed->off[i + 1] - S->feed->off[i], 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == ENOBUFS) sleep_us(100);
                if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) continue;
                break;
            }
            sent += S->feed->lines[i];
            i++;
        }
        if (clk_unix() > sec + 0.9) atomic_fetch_add(&S->late_passes, 1);
        atomic_fetch_add(&S->passes, 1);
        atomic_fetch_add(&S->lines_sent, sent);
    }
    close(fd);
    return NULL;
}

typedef struct {
    double t;      /* unix seconds */
    double lag_ms; /* worst loop */
    int hub;       /* the worst loop is the hub */
} lag_sample_t;

typedef struct {
    char id[64];
    double started, completed, duration_ms;
    uint64_t entries;
} job_ev_t;

static double iso_to_unix(const char *s) {
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

static json_t *get_json(int port, const char *path, double *rtt_ms) {
    int status;
    char *body;
    size_t blen;
    double t0 = now_ms();
    if (http_get(port, path, 5000, &status, &body, &blen) < 0) return NULL;
    if (rtt_ms) *rtt_ms = now_ms() - t0;
    json_t *j = status == 200 ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

/* Reads the aggregation events since *since into jobs (matched by job_id). */
static void read_jobs(int port, uint64_t *since, job_ev_t *jobs, int *njobs) {
    for (int guard = 0; guard < 20; guard++) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/events?type=metrics.aggregation_*&limit=500&since=%llu",
                 (unsigned long long)*since);
        json_t *j = get_json(port, path, NULL);
        if (!j) return;
        json_t *evs = json_object_get(j, "events");
        size_t i;
        json_t *ev;
        json_array_foreach(evs, i, ev) {
            json_t *env = json_object_get(ev, "data");
            const char *type = json_string_value(json_object_get(env, "type"));
            json_t *d = json_object_get(env, "data");
            if (!json_is_object(d)) d = json_object_get(env, "payload");
            const char *id = json_string_value(json_object_get(d, "job_id"));
            if (!type || !id) continue;
            int k;
            for (k = 0; k < *njobs && strcmp(jobs[k].id, id) != 0; k++) {}
            if (k == *njobs) {
                if (*njobs == MAX_JOBS) continue;
                memset(&jobs[k], 0, sizeof jobs[k]);
                snprintf(jobs[k].id, sizeof jobs[k].id, "%s", id);
                (*njobs)++;
            }
            if (strstr(type, "started"))
                jobs[k].started = iso_to_unix(json_string_value(json_object_get(d, "started_at")));
            if (strstr(type, "completed")) {
                jobs[k].completed = iso_to_unix(json_string_value(json_object_get(d, "completed_at")));
                jobs[k].duration_ms = json_number_value(json_object_get(d, "duration_ms"));
                jobs[k].entries = (uint64_t)json_integer_value(json_object_get(d, "entries_processed"));
            }
        }
        uint64_t next = (uint64_t)json_integer_value(json_object_get(j, "next_since"));
        size_t count = json_array_size(evs);
        json_decref(j);
        if (next <= *since || count == 0) {
            if (next > *since) *since = next;
            return;
        }
        *since = next;
    }
}

static int health_lag(int port, double *lag_ms, int *hub) {
    json_t *j = get_json(port, "/api/v1/health", NULL);
    if (!j) { /* 503 when unhealthy (e.g. lag over the limit): read the body anyway */
        int status;
        char *body;
        size_t blen;
        if (http_get(port, "/api/v1/health", 5000, &status, &body, &blen) < 0) return -1;
        j = json_loads(body, 0, NULL);
        free(body);
        if (!j) return -1;
    }
    char *txt = json_dumps(j, 0);
    json_decref(j);
    if (!txt) return -1;
    const char *p = strstr(txt, "worst event-loop lag ");
    int rc = -1;
    if (p) {
        char which[16] = "";
        if (sscanf(p, "worst event-loop lag %lf ms (%15[a-z]", lag_ms, which) == 2) {
            *hub = strcmp(which, "hub") == 0;
            rc = 0;
        }
    }
    free(txt);
    return rc;
}

static const char *data_dir_of(const daemon_cmd_t *cmd) {
    for (int i = 0; i + 1 < cmd->argc; i++)
        if (strcmp(cmd->argv[i], "--data") == 0) return cmd->argv[i + 1];
    for (int i = 0; i < cmd->argc; i++)
        if (strncmp(cmd->argv[i], "--data=", 7) == 0) return cmd->argv[i] + 7;
    return NULL;
}

typedef struct {
    double max, p99, med;
    size_t n;
} lagstat_t;

static lagstat_t lag_stats(double *v, size_t n) {
    lagstat_t s = {0, 0, 0, n};
    if (!n) return s;
    sort_doubles(v, n);
    s.max = v[n - 1];
    s.p99 = pct_sorted(v, n, 99);
    s.med = median_sorted(v, n);
    return s;
}

static int run_e2e_mode(int argc, char **argv, series_key_t **keys, char *result, size_t rlen) {
    int rc = 1;
    daemon_cmd_t cmd;
    daemon_run_t run = {0};
    char err[512];
    feed_t feed = {0};
    lag_sample_t *samples = calloc(MAX_SAMPLES, sizeof *samples);
    job_ev_t *jobs = calloc(MAX_JOBS, sizeof *jobs);
    int njobs = 0;
    size_t ns = 0;
    if (!samples || !jobs || feed_build(&feed) < 0) {
        fprintf(stderr, "bench_store_aggregate: out of memory\n");
        return 1;
    }
    if (daemon_cmd_init(&cmd, argc, argv, err, sizeof err) < 0) {
        fprintf(stderr, "bench_store_aggregate: %s\n", err);
        return 2;
    }
    const char *dir = data_dir_of(&cmd);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "", STORE_FILE);
    struct stat st;
    if (!dir || stat(path, &st) == 0) {
        fprintf(stderr, "bench_store_aggregate: the --data directory must not hold a store yet "
                        "(%s): it is seeded\n", path);
        daemon_cmd_free(&cmd);
        return 2;
    }
    {   /* schema through the store itself, then the rows */
        store_t *s = NULL;
        store_limits_t lim = {7200, 7 * 86400, 90 * 86400, 100000};
        char serr[STORE_ERR_LEN];
        double seed_ms = 0;
        uint32_t now = (uint32_t)clk_unix();
        if (store_open(&s, dir, false, &lim, serr) < 0) {
            fprintf(stderr, "bench_store_aggregate: store_open %s: %s\n", dir, serr);
            goto out_cmd;
        }
        store_close(s);
        if (seed(dir, keys, opt.series, now, now / 60 * 60, 0, 0, &seed_ms) < 0) goto out_cmd;
        printf("seeded %s: %ld series%s in %.0f ms\n", dir, opt.series,
               opt.refs ? " with hour/day/week references" : "", seed_ms);
    }
    double ready;
    if (daemon_start(&cmd, &run) < 0 || daemon_wait_healthy(&cmd, &run, 20000, &ready) != 0) {
        fprintf(stderr, "bench_store_aggregate: the daemon did not become healthy\n");
        daemon_kill(&run);
        daemon_log_tail(&cmd, 10);
        goto out_cmd;
    }
    int sport = 0;
    for (double dl = now_ms() + 5000; !(sport = daemon_log_port(&cmd, "statsd listening")) && now_ms() < dl;)
        sleep_us(1000);
    int hport = run.port;
    if (!sport) {
        fprintf(stderr, "bench_store_aggregate: no `statsd listening` log line (use --statsd 127.0.0.1:0)\n");
        goto out_kill;
    }
    printf("mode e2e: metricastd pid %d, statsd :%d, http :%d; %ld gauges each second "
           "(%zu datagrams, %.0f lines/s)\n",
           (int)run.pid, sport, hport, opt.series, feed.ndg, opt.feed_rate);
    fflush(stdout);

    double series0 = 0, drops0 = 0, drops = 0, series = 0;
    {
        json_t *j = get_json(hport, "/api/v1/summary", NULL);
        if (!j) goto out_kill;
        series0 = json_number_value(json_object_get(json_object_get(j, "ingest"), "series"));
        drops0 = json_number_value(json_object_get(json_object_get(j, "drops"), "ingest_total"));
        json_decref(j);
    }
    sender_t S = {.feed = &feed, .port = sport};
    pthread_t th;
    if (pthread_create(&th, NULL, sender_main, &S) != 0) goto out_kill;

    double t_start = clk_unix(), deadline = t_start + opt.e2e_timeout;
    double b1 = 0, t_full = 0, end_at = 0;
    double rtt[4096];
    size_t nrtt = 0;
    uint64_t since = 0;
    double next_sum = t_start;
    int all_in = 0, ok = 0;
    while (clk_unix() < deadline) {
        double t = clk_unix();
        double lag;
        int hub;
        if (ns < MAX_SAMPLES && health_lag(hport, &lag, &hub) == 0)
            samples[ns++] = (lag_sample_t){t, lag, hub};
        if (t >= next_sum) {
            next_sum += 1.0;
            double r;
            json_t *j = get_json(hport, "/api/v1/summary", &r);
            if (j) {
                series = json_number_value(json_object_get(json_object_get(j, "ingest"), "series"));
                drops = json_number_value(json_object_get(json_object_get(j, "drops"), "ingest_total"));
                json_decref(j);
                if (nrtt < 4096 && all_in) rtt[nrtt++] = r;
            }
            if (!all_in && series - series0 >= opt.series) {
                all_in = 1;
                t_full = t;
                b1 = ceil((t + 1) / 60) * 60;
                printf("all %.0f series in after %.1f s; measuring the minute from %+.0f s to "
                       "%+.0f s\n", series - series0, t - t_start, b1 - t_start, b1 + 60 - t_start);
                fflush(stdout);
            }
            read_jobs(hport, &since, jobs, &njobs);
            if (all_in && !end_at)
                for (int k = 0; k < njobs; k++)
                    if (jobs[k].started >= b1 + 60 && jobs[k].completed > 0) {
                        end_at = t + 3.0;
                        ok = 1;
                    }
            if (opt.verbose)
                printf("  %+6.1f s series %.0f drops %.0f jobs %d lag %.2f ms (%s)\n", t - t_start,
                       series, drops - drops0, njobs, ns ? samples[ns - 1].lag_ms : 0,
                       ns && samples[ns - 1].hub ? "hub" : "worker");
        }
        if (end_at && t >= end_at) break;
        double next = t + 0.1 - (clk_unix() - t);
        if (next > clk_unix()) sleep_us((long)((next - clk_unix()) * 1e6));
    }
    atomic_store(&S.stop, 1);
    pthread_join(th, NULL);
    read_jobs(hport, &since, jobs, &njobs);
    (void)t_full;

    /* the per-loop gauges, once, at the end (this scrape costs the hub ~40 ms) */
    double lag_hub = -1, lag_w0 = -1, lag_w1 = -1;
    {
        int status;
        char *body;
        size_t blen;
        if (http_get(hport, "/metrics", 10000, &status, &body, &blen) == 0) {
            prom_find(body, "metricast_loop_lag_seconds{loop=\"hub\"}", &lag_hub);
            prom_find(body, "metricast_loop_lag_seconds{loop=\"worker0\"}", &lag_w0);
            prom_find(body, "metricast_loop_lag_seconds{loop=\"worker1\"}", &lag_w1);
            free(body);
        }
    }

    /* classify lag samples */
    double *in_job = calloc(ns + 1, sizeof(double)), *outside = calloc(ns + 1, sizeof(double)),
           *in_full = calloc(ns + 1, sizeof(double));
    size_t nin = 0, nout = 0, nfull = 0, in_hub = 0, out_hub = 0;
    int full_job = -1;
    for (int k = 0; k < njobs; k++)
        if (jobs[k].started >= b1 + 60 && jobs[k].completed > 0 &&
            (full_job < 0 || jobs[k].started < jobs[full_job].started))
            full_job = k;
    for (size_t i = 0; i < ns; i++) {
        if (samples[i].t < t_start + 3) continue; /* start-up, first series creation */
        int during = 0, full = 0;
        for (int k = 0; k < njobs; k++) {
            double c = jobs[k].completed > 0 ? jobs[k].completed : jobs[k].started + 60;
            if (jobs[k].started > 0 && samples[i].t >= jobs[k].started && samples[i].t <= c + 2.1) {
                during = 1;
                if (k == full_job) full = 1;
            }
        }
        if (during) {
            in_job[nin++] = samples[i].lag_ms;
            in_hub += samples[i].hub;
        } else {
            outside[nout++] = samples[i].lag_ms;
            out_hub += samples[i].hub;
        }
        if (full) in_full[nfull++] = samples[i].lag_ms;
    }
    lagstat_t li = lag_stats(in_job, nin), lo = lag_stats(outside, nout), lf = lag_stats(in_full, nfull);
    lagstat_t lr = lag_stats(rtt, nrtt);

    printf("\njobs (from metrics.aggregation_* events; t relative to the start of the feed):\n");
    printf("%-24s %9s %9s %11s %10s\n", "job", "start s", "end s", "duration ms", "entries");
    double dur_other[MAX_JOBS];
    size_t ndo = 0;
    for (int k = 0; k < njobs; k++) {
        if (jobs[k].started == 0) continue;
        printf("%-24s %+9.1f %+9.1f %11.1f %10llu%s\n", jobs[k].id, jobs[k].started - t_start,
               jobs[k].completed ? jobs[k].completed - t_start : 0, jobs[k].duration_ms,
               (unsigned long long)jobs[k].entries, k == full_job ? "  <- the full minute" : "");
        if (k != full_job && jobs[k].completed > 0) dur_other[ndo++] = jobs[k].duration_ms;
    }
    sort_doubles(dur_other, ndo);
    printf("\nworst-loop lag (GET /api/v1/health every 100 ms, %zu samples):\n", ns);
    printf("  during jobs (started .. completed + 2.1 s): n %zu  median %.2f  p99 %.2f  max %.2f ms  "
           "(worst loop = hub in %zu)\n", li.n, li.med, li.p99, li.max, in_hub);
    printf("  during the full-minute job:                 n %zu  median %.2f  p99 %.2f  max %.2f ms\n",
           lf.n, lf.med, lf.p99, lf.max);
    printf("  outside jobs:                               n %zu  median %.2f  p99 %.2f  max %.2f ms  "
           "(worst loop = hub in %zu)\n", lo.n, lo.med, lo.p99, lo.max, out_hub);
    printf("  GET /api/v1/summary round trip (hub call, 1/s): median %.2f  p99 %.2f  max %.2f ms\n",
           lr.med, lr.p99, lr.max);
    printf("  at the end: metricast_loop_lag_seconds hub %.2f ms, worker0 %.2f, worker1 %.2f\n",
           lag_hub * 1e3, lag_w0 * 1e3, lag_w1 * 1e3);
    printf("sender: %llu passes (%llu late), %llu lines; daemon: series %.0f, ingest drops %.0f\n",
           (unsigned long long)atomic_load(&S.passes), (unsigned long long)atomic_load(&S.late_passes),
           (unsigned long long)atomic_load(&S.lines_sent), series - series0, drops - drops0);

    int clean = ok && full_job >= 0 && drops == drops0 && series - series0 >= opt.series;
    double stop_ms;
    int wst;
    if (daemon_stop(&run, 20000, &stop_ms, &wst) != 0) {
        fprintf(stderr, "bench_store_aggregate: daemon shutdown failed\n");
        daemon_log_tail(&cmd, 10);
        clean = 0;
    }
    /* the full minute as stored */
    long long rows = -1, pts = -1;
    if (b1 > 0) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "SELECT count(*), sum(count) FROM rollup_60 WHERE t = ?", -1, &q,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, (sqlite3_int64)b1);
            if (sqlite3_step(q) == SQLITE_ROW) {
                rows = sqlite3_column_int64(q, 0);
                pts = sqlite3_column_int64(q, 1);
            }
        }
        sqlite3_finalize(q);
        sqlite3_close(db);
        printf("rollup_60 of the measured minute: %lld rows, %lld points rolled (%.2f per series)\n",
               rows, pts, rows > 0 ? (double)pts / rows : 0);
    }
    if (full_job >= 0) {
        job_ev_t *fj = &jobs[full_job];
        printf("full-minute job: %.1f ms on the store thread, %llu entries; other jobs median "
               "%.1f ms; hub-loop lag: max %.2f ms during jobs vs %.2f ms outside (added %.2f ms)\n",
               fj->duration_ms, (unsigned long long)fj->entries,
               ndo ? median_sorted(dur_other, ndo) : 0, li.max, lo.max, li.max - lo.max);
        printf("target: job < 1000 ms: %s; adds <= 1 ms of loop lag: %s\n",
               fj->duration_ms < 1000 ? "met" : "MISSED", li.max - lo.max <= 1.0 ? "met" : "MISSED");
        snprintf(result, rlen,
                 "e2e_full_job_ms=%.1f e2e_full_job_entries=%llu e2e_other_jobs_ms_median=%.1f "
                 "e2e_lag_max_ms_jobs=%.2f e2e_lag_max_ms_outside=%.2f e2e_lag_p99_ms_jobs=%.2f "
                 "e2e_lag_p99_ms_outside=%.2f e2e_minute_points=%lld e2e_drops=%.0f",
                 fj->duration_ms, (unsigned long long)fj->entries,
                 ndo ? median_sorted(dur_other, ndo) : 0, li.max, lo.max, li.p99, lo.p99, pts,
                 drops - drops0);
    } else {
        fprintf(stderr, "bench_store_aggregate: no job rolled a complete fed minute within %.0f s\n",
                opt.e2e_timeout);
    }
    free(in_job);
    free(outside);
    free(in_full);
    rc = clean ? 0 : 1;
    goto out_cmd;
out_kill:
    daemon_kill(&run);
out_cmd:
    daemon_cmd_free(&cmd);
    free(feed.data);
    free(feed.off);
    free(feed.lines);
    free(samples);
    free(jobs);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_store_aggregate [--mode job|roll|e2e|both] [--series N] [--repeats N] "
               "[--no-refs] [--feed-rate LINES_PER_S] [--e2e-timeout S] [-v]\n"
               "         [-- METRICASTD --listen 127.0.0.1:PORT --statsd 127.0.0.1:0 "
               "--max-series 200000 --aggregate-every 5 --data DIR]   (e2e)\n");
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--mode") == 0 && v) {
            opt.mode = argv[++i];
            if (strcmp(opt.mode, "job") && strcmp(opt.mode, "e2e") && strcmp(opt.mode, "both") &&
                strcmp(opt.mode, "roll"))
                goto bad;
        } else if (strcmp(a, "--series") == 0 && v) {
            if ((opt.series = parse_long(argv[++i], 1000, 1000000)) < 0) goto bad;
        } else if (strcmp(a, "--repeats") == 0 && v) {
            if ((opt.repeats = parse_long(argv[++i], 1, MAX_REPEATS)) < 0) goto bad;
        } else if (strcmp(a, "--feed-rate") == 0 && v) {
            long r = parse_long(argv[++i], 1000, 100000000);
            if (r < 0) goto bad;
            opt.feed_rate = (double)r;
        } else if (strcmp(a, "--e2e-timeout") == 0 && v) {
            long r = parse_long(argv[++i], 70, 3600);
            if (r < 0) goto bad;
            opt.e2e_timeout = (double)r;
        } else if (strcmp(a, "--no-refs") == 0) {
            opt.refs = 0;
        } else if (strcmp(a, "-v") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            goto bad;
        }
    }
    if (strcmp(opt.mode, "roll") == 0) {
        signal(SIGPIPE, SIG_IGN);
        log_setup(LOG_WARN, 2);
        char rr[400] = "";
        int r = run_roll_mode(rr, sizeof rr, 30);
        if (rr[0]) printf("%s\n", rr);
        return r ? 1 : 0;
    }
    int do_job = strcmp(opt.mode, "e2e") != 0 && strcmp(opt.mode, "roll") != 0,
        do_e2e = strcmp(opt.mode, "job") != 0;
    if (do_e2e && i >= argc) goto bad;
    signal(SIGPIPE, SIG_IGN);
    log_setup(opt.verbose ? LOG_DEBUG : LOG_WARN, 2);

    series_key_t **keys = calloc((size_t)opt.series, sizeof *keys);
    for (long k = 0; keys && k < opt.series; k++)
        if (!(keys[k] = key_for(k))) {
            fprintf(stderr, "bench_store_aggregate: cannot build the key of series %ld\n", k);
            return 1;
        }
    if (!keys) return 1;
    int rc = 0;
    char rj[1000] = "", re[600] = "";
    if (do_job && run_job_mode(keys, rj, sizeof rj) < 0) rc = 1;
    char rr[400] = "";
    if (do_job) { /* and the hub's own cost per second, for the 1 ms budget */
        printf("\n");
        if (run_roll_mode(rr, sizeof rr, 30) < 0) rc = 1;
        size_t l = strlen(rj);
        snprintf(rj + l, sizeof rj - l, "%s%s", rj[0] ? " " : "", rr);
    }
    if (do_e2e) {
        if (do_job) printf("\n");
        int r = run_e2e_mode(argc - i, argv + i, keys, re, sizeof re);
        if (r) rc = r;
    }
    for (long k = 0; k < opt.series; k++) skey_unref(keys[k]);
    free(keys);
    if (rj[0] || re[0]) printf("%s%s%s\n", rj, rj[0] && re[0] ? " " : "", re);
    return rc;
bad:
    usage(stderr);
    return 2;
}
