/* store: the SQLite store on its own thread, without a daemon. A uv loop and an inbox
 * stand in for the hub: the hooks (events committed, aggregation news) and rollup query
 * answers arrive through it, and the tests pump it (bounded) until they do.
 *
 * Covered: 1 min and 1 h rollups (count, sum, min, max, last) of points with chosen
 * timestamps, checked against values computed here; the source filter, 404 and the
 * columns of a query answer; retention of raw points, rollups and events; events written
 * and reloaded into a fresh eventlog after close/reopen (seq, id and envelope identical,
 * a smaller retained window, next seq); the recent history reloaded into a registry; a
 * locked database failing an aggregation (error_type "locked") and the status coming
 * back; files that are not a healthy store refused (-EINVAL, bytes untouched) and moved
 * aside by reset. Also: a minute written half by one run and half by the next rolled
 * whole, the hour in progress kept in its row across the restart and shown only once
 * complete, a series that starts mid-minute; one second handed over twice (merged, the
 * later value wins); an undecodable row of raw points skipped and counted; trend
 * references (the latest rollup inside each window, in slices, nothing resent when
 * nothing changed, a series known later); a version 1 file upgraded in place. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "eventlog.h"
#include "history.h"
#include "inbox.h"
#include "registry.h"
#include "series_key.h"
#include "store.h"

/* ---- fixture: a temp dir, a loop with an inbox, the hooks' record ------------------ */

typedef struct fx {
    char dir[256];
    char path[320];
    uv_loop_t loop;
    inbox_t inbox;
    bool inbox_up;
    store_t *s;
    /* events_done */
    uint64_t done_seq;
    int done_rc;
    int done_calls;
    int done_failures;
    /* aggregation */
    int agg_started, agg_completed, agg_failed;
    char agg_job[64];
    uint64_t agg_entries;
    char agg_err_type[32];
    char agg_err_msg[200];
    /* query */
    int q_status;
    bool q_done;
    char *q_body;
    /* trend references handed over: every slice, and what they carried */
    int ref_slices;
    size_t ref_max_slice;
    struct got_ref {
        char name[64], source[64];
        double hour, day, week;
    } *refs;
    size_t nrefs;
    uint64_t bseq; /* barrier events */
} fx_t;

static void on_events_done(void *ctx, uint64_t seq, int rc) {
    fx_t *f = ctx;
    f->done_calls++;
    if (seq > f->done_seq) f->done_seq = seq;
    f->done_rc = rc;
    if (rc) f->done_failures++;
}

static void on_aggregation(void *ctx, int phase, const char *job_id, uint64_t entries,
                           double duration_ms, const char *error_message,
                           const char *error_type) {
    fx_t *f = ctx;
    (void)duration_ms;
    snprintf(f->agg_job, sizeof f->agg_job, "%s", job_id);
    if (phase == 0) f->agg_started++;
    if (phase == 1) {
        f->agg_completed++;
        f->agg_entries = entries;
    }
    if (phase == 2) {
        f->agg_failed++;
        snprintf(f->agg_err_type, sizeof f->agg_err_type, "%s", error_type ? error_type : "");
        snprintf(f->agg_err_msg, sizeof f->agg_err_msg, "%s", error_message ? error_message : "");
    }
}

static void on_trend_refs(void *ctx, const store_ref_t *r, size_t n) {
    fx_t *f = ctx;
    f->ref_slices++;
    if (n > f->ref_max_slice) f->ref_max_slice = n;
    f->refs = realloc(f->refs, (f->nrefs + n) * sizeof *f->refs);
    for (size_t i = 0; i < n; i++) {
        struct got_ref *g = &f->refs[f->nrefs++];
        const char *src = skey_label_value(r[i].key, "source");
        snprintf(g->name, sizeof g->name, "%s", skey_name(r[i].key));
        snprintf(g->source, sizeof g->source, "%s", src ? src : "");
        g->hour = r[i].hour;
        g->day = r[i].day;
        g->week = r[i].week;
    }
}

static void on_query(void *ctx, int status, buf_t *body) {
    fx_t *f = ctx;
    f->q_status = status;
    f->q_done = true;
    free(f->q_body);
    f->q_body = strndup(body->data ? body->data : "", body->len);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool pump_seq(fx_t *f, uint64_t seq, double seconds) {
    double deadline = now_s() + seconds;
    while (f->done_seq < seq) {
        if (now_s() > deadline) return false;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return true;
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[600];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static store_limits_t big_limits(void) {
    return (store_limits_t){86400u * 30, 86400u * 365, 86400u * 3650, 1000000};
}

static int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/mc-store-unit-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, STORE_FILE);
    if (uv_loop_init(&f->loop)) return -1;
    if (inbox_init(&f->inbox, &f->loop)) return -1;
    f->inbox_up = true;
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx_t *f = *state;
    store_close(f->s); /* joins the thread: nothing posts after this */
    f->s = NULL;
    if (f->inbox_up) {
        inbox_close(&f->inbox, NULL);
        for (int i = 0; i < 100 && uv_run(&f->loop, UV_RUN_NOWAIT); i++) usleep(1000);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        inbox_free(&f->inbox);
    }
    uv_loop_close(&f->loop);
    free(f->q_body);
    free(f->refs);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void open_store(fx_t *f, const store_limits_t *lim) {
    char err[STORE_ERR_LEN] = "";
    int rc = store_open(&f->s, f->dir, false, lim, err);
    if (rc) fail_msg("store_open: %d %s", rc, err);
}

static void start_store(fx_t *f) {
    store_hooks_t hooks;
    memset(&hooks, 0, sizeof hooks); /* hooks added later stay NULL */
    hooks.inbox = &f->inbox;
    hooks.ctx = f;
    hooks.events_done = on_events_done;
    hooks.aggregation = on_aggregation;
    hooks.trend_refs = on_trend_refs;
    assert_int_equal(store_start(f->s, &hooks), 0);
}

/* Runs one aggregation job and waits for its end (completed or failed), and for the
 * trend reference slices that follow it. complete_before 0: the store's own clock. */
static void run_job_until(fx_t *f, const char *job, uint32_t complete_before) {
    int before = f->agg_completed + f->agg_failed;
    store_aggregate(f->s, job, complete_before);
    double deadline = now_s() + 15;
    while (f->agg_completed + f->agg_failed == before) {
        if (now_s() > deadline) fail_msg("aggregation job %s did not finish within 15 s", job);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    for (int i = 0; i < 20; i++) { /* the slices re-post themselves: a few loop turns */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_string_equal(f->agg_job, job);
}

static void run_job(fx_t *f, const char *job) { run_job_until(f, job, 0); }

/* Waits until everything handed to the store so far is committed (an event behind it). */
static void barrier(fx_t *f) {
    char json[] = "{\"type\":\"tests.barrier\",\"payload\":{}}", err[EVENT_ERR_LEN];
    event_t *e = event_prepare(json, strlen(json), 1700000000.0, "bar000", err);
    assert_non_null(e);
    e->seq = f->bseq = f->bseq ? f->bseq + 1 : 1000000;
    store_put_event(f->s, e);
    if (!pump_seq(f, f->bseq, 10)) fail_msg("barrier %llu not committed", (unsigned long long)f->bseq);
}

/* A rollup query through the store thread; returns the parsed answer (caller decrefs). */
static json_t *query(fx_t *f, const char *name, const char *source, uint32_t from, uint32_t to,
                     uint32_t step, int *status) {
    f->q_done = false;
    assert_int_equal(store_query(f->s, name, source, from, to, step, on_query, f), 0);
    double deadline = now_s() + 10;
    while (!f->q_done) {
        if (now_s() > deadline) fail_msg("query %s did not answer within 10 s", name);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    *status = f->q_status;
    json_error_t je;
    json_t *doc = json_loads(f->q_body, 0, &je);
    if (!doc) fail_msg("query answer is not JSON (%s): %.300s", je.text, f->q_body);
    return doc;
}

static series_key_t *key(const char *name, const char *source) {
    skey_label_t l = {"source", source};
    skey_label_t none[1] = {{"", ""}};
    return source ? skey_new(name, &l, 1) : skey_new(name, none, 0);
}

/* ---- values --------------------------------------------------------------------------- */

#define NSER 3
#define NPTS 180
static const char *const ser_name[NSER] = {"cpu", "cpu", "disk"};
static const char *const ser_src[NSER] = {"r1", "r2", NULL};

/* Not monotonic within a minute, so that last != min and last != max. */
static double val(int k, int i) { return (double)((i * 7 + k * 3) % 13) + k * 100 + 0.25; }

/* Puts NPTS points per series at base + i (base aligned on a minute), in 3 batches. */
static void put_series(fx_t *f, uint32_t base) {
    series_key_t *keys[NSER];
    for (int k = 0; k < NSER; k++) keys[k] = key(ser_name[k], ser_src[k]);
    for (int batch = 0; batch < 3; batch++) {
        size_t n = 0;
        store_point_t *pts = calloc(NSER * 60, sizeof *pts);
        for (int i = batch * 60; i < batch * 60 + 60; i++)
            for (int k = 0; k < NSER; k++)
                pts[n++] = (store_point_t){keys[k], METRIC_GAUGE, base + (uint32_t)i,
                                           val(k, i)};
        store_put_points(f->s, pts, n);
    }
    barrier(f); /* the points borrow the keys until they are written */
    for (int k = 0; k < NSER; k++) skey_unref(keys[k]);
}

typedef struct agg_expect {
    long count;
    double sum, min, max, last;
} agg_expect_t;

static agg_expect_t expect_range(int k, int i0, int i1) {
    agg_expect_t e = {0, 0, INFINITY, -INFINITY, NAN};
    for (int i = i0; i < i1; i++) {
        double v = val(k, i);
        e.count++;
        e.sum += v;
        if (v < e.min) e.min = v;
        if (v > e.max) e.max = v;
        e.last = v;
    }
    return e;
}

/* The series object of the answer whose labels' source is src (NULL: no labels). */
static json_t *find_series(json_t *doc, const char *src) {
    json_t *arr = json_object_get(doc, "series");
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s) {
        json_t *lab = json_object_get(s, "labels");
        const char *v = json_string_value(json_object_get(lab, "source"));
        if ((!src && json_object_size(lab) == 0) || (src && v && !strcmp(v, src))) return s;
    }
    return NULL;
}

static void check_point(json_t *p, uint32_t t, const agg_expect_t *e, const char *what) {
    if (!json_is_array(p) || json_array_size(p) != 6) fail_msg("%s: point is not [6]", what);
    long long pt = json_integer_value(json_array_get(p, 0));
    long long cnt = json_integer_value(json_array_get(p, 1));
    double sum = json_number_value(json_array_get(p, 2));
    double mn = json_number_value(json_array_get(p, 3));
    double mx = json_number_value(json_array_get(p, 4));
    double last = json_number_value(json_array_get(p, 5));
    if (pt != t) fail_msg("%s: t %lld, expected %u", what, pt, t);
    if (cnt != e->count) fail_msg("%s: count %lld, expected %ld", what, cnt, e->count);
    if (fabs(sum - e->sum) > 1e-6) fail_msg("%s: sum %.6f, expected %.6f", what, sum, e->sum);
    if (mn != e->min) fail_msg("%s: min %g, expected %g", what, mn, e->min);
    if (mx != e->max) fail_msg("%s: max %g, expected %g", what, mx, e->max);
    if (last != e->last)
        fail_msg("%s: last %g, expected %g (the value of the latest point of the period; "
                 "min %g, max %g)", what, last, e->last, e->min, e->max);
}

/* ---- rollups ------------------------------------------------------------------------- */

static void test_rollups_minutes_and_hour(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t now = (uint32_t)time(NULL);
    uint32_t hour = (now / 3600 - 2) * 3600; /* a complete hour two hours ago */
    uint32_t base = hour + 600;              /* minutes 10, 11, 12 of it */
    put_series(f, base);
    run_job(f, "job_rollups");
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(f->agg_started, 1);
    assert_int_equal(f->agg_completed, 1);
    /* 3 series × 3 minutes + 3 series × 1 hour */
    assert_int_equal(f->agg_entries, NSER * 3 + NSER);

    int st;
    json_t *doc = query(f, "cpu", NULL, hour, hour + 3599, 60, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "cpu");
    assert_int_equal(json_integer_value(json_object_get(doc, "step")), 60);
    assert_int_equal(json_integer_value(json_object_get(doc, "from")), hour);
    assert_int_equal(json_integer_value(json_object_get(doc, "to")), hour + 3599);
    json_t *cols = json_object_get(doc, "columns");
    static const char *const want_cols[] = {"t", "count", "sum", "min", "max", "last"};
    assert_int_equal(json_array_size(cols), 6);
    for (size_t c = 0; c < 6; c++)
        assert_string_equal(json_string_value(json_array_get(cols, c)), want_cols[c]);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 2);
    for (int k = 0; k < 2; k++) {
        json_t *s = find_series(doc, ser_src[k]);
        if (!s) fail_msg("no series with source %s in %.400s", ser_src[k], f->q_body);
        assert_string_equal(json_string_value(json_object_get(s, "kind")), "gauge");
        json_t *pts = json_object_get(s, "points");
        assert_int_equal(json_array_size(pts), 3);
        for (int m = 0; m < 3; m++) {
            char what[64];
            snprintf(what, sizeof what, "cpu{source=%s} minute %d", ser_src[k], m);
            agg_expect_t e = expect_range(k, m * 60, m * 60 + 60);
            check_point(json_array_get(pts, (size_t)m), base + (uint32_t)m * 60, &e, what);
        }
    }
    json_decref(doc);

    /* the hour */
    doc = query(f, "cpu", NULL, hour, hour + 3599, 3600, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 2);
    for (int k = 0; k < 2; k++) {
        json_t *s = find_series(doc, ser_src[k]);
        assert_non_null(s);
        json_t *pts = json_object_get(s, "points");
        assert_int_equal(json_array_size(pts), 1);
        agg_expect_t e = expect_range(k, 0, NPTS);
        char what[64];
        snprintf(what, sizeof what, "cpu{source=%s} hour", ser_src[k]);
        check_point(json_array_get(pts, 0), hour, &e, what);
    }
    json_decref(doc);

    /* a series without labels; the source filter; a name or range with nothing */
    doc = query(f, "disk", NULL, hour, hour + 3599, 60, &st);
    assert_int_equal(st, 200);
    json_t *s = find_series(doc, NULL);
    assert_non_null(s);
    assert_int_equal(json_array_size(json_object_get(s, "points")), 3);
    agg_expect_t e = expect_range(2, 60, 120);
    check_point(json_array_get(json_object_get(s, "points"), 1), base + 60, &e, "disk minute 1");
    json_decref(doc);

    doc = query(f, "cpu", "r2", hour, hour + 3599, 60, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 1);
    assert_non_null(find_series(doc, "r2"));
    json_decref(doc);
    doc = query(f, "cpu", "r*", hour, hour + 3599, 60, &st);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 2);
    json_decref(doc);
    doc = query(f, "disk", "r*", hour, hour + 3599, 60, &st); /* no source label: no match */
    assert_int_equal(st, 404);
    json_decref(doc);
    doc = query(f, "nope", NULL, hour, hour + 3599, 60, &st);
    assert_int_equal(st, 404);
    assert_string_equal(json_string_value(json_object_get(doc, "error")), "not_found");
    json_decref(doc);
    doc = query(f, "cpu", NULL, base + 60, base + 60, 60, &st); /* inclusive range, one */
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(find_series(doc, "r1"), "points")), 1);
    json_decref(doc);

    /* a second job rolls nothing again (watermarks) */
    run_job(f, "job_again");
    assert_int_equal(f->agg_completed, 2);
    assert_int_equal(f->agg_entries, 0);
    assert_int_equal(store_write_errors(f->s), 0);
    char msg[256];
    assert_int_equal(store_status(f->s, msg, sizeof msg), 0);
}

/* A minute only partly filled (a series that started mid-minute) rolls what it has. */
static void test_rollup_partial_minute(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t now = (uint32_t)time(NULL);
    uint32_t m = (now / 60 - 5) * 60;
    double vals[] = {5, 9, 1, 7};
    uint32_t ts[] = {m + 13, m + 20, m + 40, m + 58};
    series_key_t *k = key("part", NULL);
    store_point_t *pts = calloc(4, sizeof *pts);
    for (int i = 0; i < 4; i++) pts[i] = (store_point_t){k, METRIC_GAUGE, ts[i], vals[i]};
    store_put_points(f->s, pts, 4);
    run_job(f, "job_partial");
    skey_unref(k); /* written: the points no longer borrow it */
    assert_int_equal(f->agg_failed, 0);
    int st;
    json_t *doc = query(f, "part", NULL, m - 60, m + 60, 60, &st);
    assert_int_equal(st, 200);
    json_t *p = json_array_get(json_object_get(find_series(doc, NULL), "points"), 0);
    agg_expect_t e = {4, 22, 1, 9, 7};
    check_point(p, m, &e, "partial minute");
    json_decref(doc);
}

/* ---- retention ------------------------------------------------------------------------ */

static int64_t count_sql(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static event_t *mk_event(int i) {
    char json[200], err[EVENT_ERR_LEN];
    snprintf(json, sizeof json, "{\"type\":\"tests.created\",\"payload\":{\"i\":%d,\"s\":\"x\\u00e9\"}}", i);
    char rnd[16];
    snprintf(rnd, sizeof rnd, "a%05d", i % 100000);
    event_t *e = event_prepare(json, strlen(json), 1700000000.0 + i * 0.001, rnd, err);
    if (!e) fail_msg("event_prepare: %s", err);
    return e;
}

static void test_retention(void **state) {
    fx_t *f = *state;
    /* raw 300 s, minute rollups 400 s, hour rollups 3600 s, 3 events */
    store_limits_t lim = {300, 400, 3600, 3};
    open_store(f, &lim);
    start_store(f);
    uint32_t now = (uint32_t)time(NULL);
    uint32_t cur = now / 60 * 60;
    uint32_t old = cur - 600, recent = cur - 120;
    uint32_t ancient_hour = (now / 3600 - 3) * 3600; /* its hour rollup is past 3600 s */
    series_key_t *k = key("ret", NULL);
    store_point_t *pts = calloc(180, sizeof *pts);
    size_t n = 0;
    for (uint32_t i = 0; i < 60; i++) pts[n++] = (store_point_t){k, METRIC_GAUGE, old + i, 1};
    for (uint32_t i = 0; i < 60; i++) pts[n++] = (store_point_t){k, METRIC_GAUGE, recent + i, 2};
    for (uint32_t i = 0; i < 60; i++)
        pts[n++] = (store_point_t){k, METRIC_GAUGE, ancient_hour + i, 3};
    store_put_points(f->s, pts, n);
    eventlog_t log;
    assert_int_equal(elog_init(&log, 100), 0);
    for (int i = 1; i <= 10; i++) {
        event_t *e = mk_event(i);
        assert_int_equal(elog_seal(&log, e), 0);
        store_put_event(f->s, e); /* takes our reference */
    }
    assert_true(pump_seq(f, 10, 10)); /* and the points queued before them */
    assert_int_equal(f->done_failures, 0);
    skey_unref(k); /* written: the points no longer borrow it */
    elog_free(&log);
    run_job(f, "job_retention");
    assert_int_equal(f->agg_failed, 0);

    char q[200];
    /* raw: only what is within 300 s */
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM points"), 60);
    snprintf(q, sizeof q, "SELECT count(*) FROM points WHERE t < %u", now - 300);
    assert_int_equal(count_sql(f->path, q), 0);
    snprintf(q, sizeof q, "SELECT min(t) FROM points");
    assert_int_equal(count_sql(f->path, q), recent);
    /* minute rollups: the recent minute only */
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM rollup_60"), 1);
    snprintf(q, sizeof q, "SELECT t FROM rollup_60");
    assert_int_equal(count_sql(f->path, q), recent);
    /* hour rollups: the ancient hour is past 3600 s */
    snprintf(q, sizeof q, "SELECT count(*) FROM rollup_3600 WHERE t = %u", ancient_hour);
    assert_int_equal(count_sql(f->path, q), 0);
    /* events: the newest 3 */
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM events"), 3);
    assert_int_equal(count_sql(f->path, "SELECT min(seq) FROM events"), 8);

    int st;
    json_t *doc = query(f, "ret", NULL, 0, now, 60, &st);
    assert_int_equal(st, 200);
    json_t *p = json_object_get(find_series(doc, NULL), "points");
    assert_int_equal(json_array_size(p), 1);
    agg_expect_t e = {60, 120, 2, 2, 2};
    check_point(json_array_get(p, 0), recent, &e, "recent minute");
    json_decref(doc);

    /* reloading after the events were trimmed: seq continues after the newest */
    store_close(f->s);
    f->s = NULL;
    open_store(f, &lim);
    eventlog_t l2;
    registry_t reg;
    assert_int_equal(elog_init(&l2, 100), 0);
    assert_int_equal(registry_init(&reg, 1000, 600), 0);
    char err[STORE_ERR_LEN];
    assert_int_equal(store_load(f->s, &l2, &reg, 600, err), 0);
    assert_int_equal(l2.len, 3);
    assert_int_equal(elog_oldest(&l2), 8);
    assert_int_equal(elog_latest(&l2), 10);
    assert_int_equal(l2.next_seq, 11);
    elog_free(&l2);
    registry_free(&reg);
}

/* ---- events and history across close/reopen -------------------------------------------- */

#define NEV 25

static void test_events_and_history_reload(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    eventlog_t log;
    assert_int_equal(elog_init(&log, 100), 0);
    char *env[NEV + 1] = {0};
    char *ids[NEV + 1] = {0};
    for (int i = 1; i <= NEV; i++) {
        event_t *e = mk_event(i);
        assert_int_equal(elog_seal(&log, e), 0);
        assert_int_equal(e->seq, (uint64_t)i);
        env[i] = strdup(e->envelope);
        ids[i] = strdup(e->id);
        store_put_event(f->s, e);
        if (i % 7 == 0) assert_true(pump_seq(f, (uint64_t)i, 10)); /* several transactions */
    }
    assert_true(pump_seq(f, NEV, 10));
    assert_int_equal(f->done_seq, NEV);
    assert_int_equal(f->done_failures, 0);
    elog_free(&log);

    /* recent history: 20 s of a gauge and a counter, ending 2 s ago */
    uint32_t now = (uint32_t)time(NULL);
    series_key_t *g = key("hist_g", "r9");
    series_key_t *c = key("hist_c", NULL);
    store_point_t *pts = calloc(40, sizeof *pts);
    for (uint32_t i = 0; i < 20; i++) {
        pts[2 * i] = (store_point_t){g, METRIC_GAUGE, now - 22 + i, 10.0 + i};
        pts[2 * i + 1] = (store_point_t){c, METRIC_COUNTER, now - 22 + i, (double)i};
    }
    store_put_points(f->s, pts, 40);
    /* and an old point beyond the reload window */
    pts = calloc(1, sizeof *pts);
    pts[0] = (store_point_t){g, METRIC_GAUGE, now - 4000, 99};
    store_put_points(f->s, pts, 1);
    /* an event after the points, so that done means the points are committed too */
    event_t *last = mk_event(999);
    last->seq = NEV + 1; /* as elog_seal would have */
    store_put_event(f->s, last);
    assert_true(pump_seq(f, NEV + 1, 10));

    store_close(f->s);
    f->s = NULL;
    open_store(f, &lim);

    /* the full window */
    eventlog_t l2;
    registry_t reg;
    assert_int_equal(elog_init(&l2, 100), 0);
    assert_int_equal(registry_init(&reg, 1000, 600), 0);
    char err[STORE_ERR_LEN] = "";
    int rc = store_load(f->s, &l2, &reg, 600, err);
    if (rc) fail_msg("store_load: %d %s", rc, err);
    assert_int_equal(l2.len, NEV + 1);
    assert_int_equal(elog_oldest(&l2), 1);
    assert_int_equal(elog_latest(&l2), NEV + 1);
    assert_int_equal(l2.next_seq, NEV + 2);
    for (int i = 1; i <= NEV; i++) {
        event_t *e = elog_get(&l2, (uint64_t)i);
        if (!e) fail_msg("seq %d not reloaded", i);
        assert_int_equal(e->seq, (uint64_t)i);
        assert_string_equal(e->id, ids[i]);
        assert_string_equal(e->envelope, env[i]);
        assert_string_equal(e->type, "tests.created");
        assert_non_null(e->frame); /* sealed: ready to be sent */
    }
    /* history */
    series_t *sg = registry_find(&reg, g);
    series_t *sc = registry_find(&reg, c);
    if (!sg || !sc) fail_msg("history series not restored (gauge %p counter %p)", (void *)sg, (void *)sc);
    assert_int_equal(sg->kind, METRIC_GAUGE);
    assert_int_equal(sc->kind, METRIC_COUNTER);
    assert_int_equal(sg->hist.len, 20);
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t t;
        double v;
        history_get(&sg->hist, i, &t, &v, NULL);
        assert_int_equal(t, now - 22 + i);
        assert_true(v == 10.0 + i);
    }
    assert_true(sg->value == 29.0); /* a gauge's current value is its latest point */
    assert_int_equal(sc->hist.len, 20);
    elog_free(&l2);
    registry_free(&reg);

    /* a smaller retained window: the newest 5; seq still continues */
    store_close(f->s);
    f->s = NULL;
    open_store(f, &lim);
    assert_int_equal(elog_init(&l2, 5), 0);
    assert_int_equal(registry_init(&reg, 1000, 600), 0);
    assert_int_equal(store_load(f->s, &l2, &reg, 600, err), 0);
    assert_int_equal(l2.len, 5);
    assert_int_equal(elog_oldest(&l2), NEV + 1 - 4);
    assert_int_equal(elog_latest(&l2), NEV + 1);
    assert_int_equal(l2.next_seq, NEV + 2);
    assert_string_equal(elog_get(&l2, NEV)->envelope, env[NEV]);
    /* the next event published goes on from there */
    event_t *e = mk_event(1000);
    assert_int_equal(elog_seal(&l2, e), 0);
    assert_int_equal(e->seq, NEV + 2);
    event_unref(e);
    elog_free(&l2);
    registry_free(&reg);
    for (int i = 1; i <= NEV; i++) {
        free(env[i]);
        free(ids[i]);
    }
    skey_unref(g);
    skey_unref(c);
}

/* ---- a locked database ------------------------------------------------------------------ */

static void test_locked_then_recovers(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    char *e = NULL;
    if (sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, &e) != SQLITE_OK)
        fail_msg("BEGIN EXCLUSIVE: %s", e);
    run_job(f, "job_locked");
    assert_int_equal(f->agg_failed, 1);
    assert_string_equal(f->agg_err_type, "locked");
    assert_true(f->agg_err_msg[0] != '\0');
    char msg[256];
    assert_true(store_status(f->s, msg, sizeof msg) < 0);
    assert_non_null(strstr(msg, "locked"));
    assert_true(store_write_errors(f->s) >= 1);

    /* an event written while locked is not reported at all: it waits (retried) until it
     * is on disk, so the hub never acknowledges an event that could still be lost */
    eventlog_t log;
    assert_int_equal(elog_init(&log, 10), 0);
    event_t *ev = mk_event(1);
    assert_int_equal(elog_seal(&log, ev), 0);
    store_put_event(f->s, event_ref(ev));
    assert_false(pump_seq(f, 1, 3));

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* the retry writes it by itself once the lock is gone */
    assert_true(pump_seq(f, 1, 10));
    assert_int_equal(f->done_rc, 0);
    run_job(f, "job_unlocked");
    assert_int_equal(f->agg_completed, 1);
    assert_int_equal(store_status(f->s, msg, sizeof msg), 0);

    event_t *ev2 = mk_event(2);
    assert_int_equal(elog_seal(&log, ev2), 0);
    store_put_event(f->s, event_ref(ev2));
    assert_true(pump_seq(f, 2, 10));
    assert_int_equal(f->done_rc, 0);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM events"), 2);
    event_unref(ev);
    event_unref(ev2);
    elog_free(&log);
}

/* ---- restarts, seconds written twice, trend references, upgrades ------------------- */

static void put_one(fx_t *f, series_key_t *k, uint32_t t, double v) {
    store_point_t *pts = calloc(1, sizeof *pts);
    pts[0] = (store_point_t){k, METRIC_GAUGE, t, v};
    store_put_points(f->s, pts, 1);
}

/* The raw points of second t as stored: {series id: value}, up to cap of them. */
static int stored_second(fx_t *f, uint32_t t, uint32_t *ids, double *vals, int cap) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT n, data FROM points WHERE t = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, t);
    int n = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        assert_int_equal(len, sqlite3_column_int(st, 0) * 12);
        for (int off = 0; off + 12 <= len && n < cap; off += 12, n++) {
            uint32_t id = 0;
            uint64_t b = 0;
            for (int i = 0; i < 4; i++) id |= (uint32_t)p[off + i] << (8 * i);
            for (int i = 0; i < 8; i++) b |= (uint64_t)p[off + 4 + i] << (8 * i);
            ids[n] = id;
            memcpy(&vals[n], &b, sizeof vals[n]);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int64_t series_row(fx_t *f, const char *name, const char *source) {
    char q[200];
    snprintf(q, sizeof q, "SELECT id FROM series WHERE name = '%s' AND labels %s", name,
             source ? "LIKE '%\"source\":\"" : "= '{}'");
    if (source) snprintf(q + strlen(q), sizeof q - strlen(q), "%s\"%%'", source);
    return count_sql(f->path, q);
}

/* A minute half written by one run and half by the next is rolled whole; the hour it is
 * in holds, in its rollup_3600 row, every minute rolled by either run, and becomes
 * visible to queries only once complete; a series that starts mid-minute rolls what it
 * has. */
static void test_minute_and_hour_across_restart(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t now = (uint32_t)time(NULL);
    uint32_t hour = (now / 3600 - 2) * 3600, m = hour + 1200;
    series_key_t *a = key("xr", "a"), *b = key("xr", "b"), *c = key("xr", "c");
    /* run 1: minute m - 60 whole, the first 30 s of minute m (one batch: the store keeps
     * at most 8 batches waiting) */
    store_point_t *pts = calloc(180, sizeof *pts);
    size_t n = 0;
    for (uint32_t i = 0; i < 90; i++) {
        pts[n++] = (store_point_t){a, METRIC_GAUGE, m - 60 + i, val(0, (int)i)};
        pts[n++] = (store_point_t){b, METRIC_GAUGE, m - 60 + i, val(1, (int)i)};
    }
    store_put_points(f->s, pts, n);
    barrier(f);
    assert_int_equal(store_points_dropped(f->s), 0);
    run_job_until(f, "job_run1", m + 30); /* minute m is not complete yet */
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(f->agg_entries, 2);
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM rollup_60 WHERE t = %u", m);
    assert_int_equal(count_sql(f->path, q), 0);
    /* the hour so far is in its row, but a query only shows complete hours */
    snprintf(q, sizeof q, "SELECT sum(count) FROM rollup_3600 WHERE t = %u", hour);
    assert_int_equal(count_sql(f->path, q), 120);
    int st;
    json_t *doc = query(f, "xr", NULL, hour, hour + 3599, 3600, &st);
    assert_int_equal(st, 404);
    json_decref(doc);
    store_close(f->s); /* the restart: nothing of run 1 is kept in memory */
    f->s = NULL;

    /* run 2: the rest of minute m, minute m + 60; c starts at m + 45 */
    open_store(f, &lim);
    eventlog_t log;
    registry_t reg;
    assert_int_equal(elog_init(&log, 10), 0);
    assert_int_equal(registry_init(&reg, 1000, 3600), 0);
    char err[STORE_ERR_LEN];
    assert_int_equal(store_load(f->s, &log, &reg, 7200 + (now - m), err), 0);
    assert_non_null(registry_find(&reg, a));
    start_store(f);
    pts = calloc(200, sizeof *pts);
    n = 0;
    for (uint32_t i = 90; i < 180; i++) {
        pts[n++] = (store_point_t){a, METRIC_GAUGE, m - 60 + i, val(0, (int)i)};
        pts[n++] = (store_point_t){b, METRIC_GAUGE, m - 60 + i, val(1, (int)i)};
        if (i >= 105 && i < 120)
            pts[n++] = (store_point_t){c, METRIC_GAUGE, m - 60 + i, val(2, (int)i)};
    }
    store_put_points(f->s, pts, n);
    barrier(f);
    assert_int_equal(store_points_dropped(f->s), 0);
    run_job(f, "job_run2"); /* up to now: minutes m, m + 60, and the hour is complete */
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(f->agg_entries, 3 + 2 + 3); /* minute m: a b c; m + 60: a b; the hour */
    doc = query(f, "xr", NULL, m, m + 60, 60, &st);
    assert_int_equal(st, 200);
    for (int k = 0; k < 2; k++) {
        json_t *jp = json_object_get(find_series(doc, k ? "b" : "a"), "points");
        assert_int_equal(json_array_size(jp), 2);
        agg_expect_t e = expect_range(k, 60, 120);
        check_point(json_array_get(jp, 0), m, &e, "the minute of the restart");
        e = expect_range(k, 120, 180);
        check_point(json_array_get(jp, 1), m + 60, &e, "the minute after");
    }
    agg_expect_t ec = expect_range(2, 105, 120);
    check_point(json_array_get(json_object_get(find_series(doc, "c"), "points"), 0), m, &ec,
                "a series that started mid-minute");
    json_decref(doc);
    doc = query(f, "xr", NULL, hour, hour + 3599, 3600, &st);
    assert_int_equal(st, 200);
    for (int k = 0; k < 2; k++) {
        agg_expect_t e = expect_range(k, 0, 180);
        check_point(json_array_get(json_object_get(find_series(doc, k ? "b" : "a"), "points"), 0),
                    hour, &e, "the hour, from both runs");
    }
    check_point(json_array_get(json_object_get(find_series(doc, "c"), "points"), 0), hour, &ec,
                "the hour of the series that started mid-minute");
    json_decref(doc);
    /* a range far wider than the data is narrowed to it, not walked */
    doc = query(f, "xr", "a", 0, 4000000000u, 60, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(find_series(doc, "a"), "points")), 3);
    json_decref(doc);
    elog_free(&log);
    registry_free(&reg);
    skey_unref(a);
    skey_unref(b);
    skey_unref(c);
}

/* A second handed over twice (the clock went back, or two batches for one second) keeps
 * every series, the later value for a series given twice, also within one batch. */
static void test_same_second_twice(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t m = ((uint32_t)time(NULL) / 60 - 10) * 60, t = m + 7;
    series_key_t *a = key("dup", "a"), *b = key("dup", "b"), *c = key("dup", "c");
    store_point_t *pts = calloc(3, sizeof *pts);
    pts[0] = (store_point_t){a, METRIC_GAUGE, t, 1};
    pts[1] = (store_point_t){b, METRIC_GAUGE, t, 2};
    pts[2] = (store_point_t){a, METRIC_GAUGE, t, 4}; /* the later one wins */
    store_put_points(f->s, pts, 3);
    barrier(f);
    pts = calloc(2, sizeof *pts);
    pts[0] = (store_point_t){a, METRIC_GAUGE, t, 5};
    pts[1] = (store_point_t){c, METRIC_GAUGE, t, 3};
    store_put_points(f->s, pts, 2);
    barrier(f);
    uint32_t ids[8];
    double vals[8];
    int n = stored_second(f, t, ids, vals, 8);
    assert_int_equal(n, 3);
    int64_t ia = series_row(f, "dup", "a"), ib = series_row(f, "dup", "b"), ic = series_row(f, "dup", "c");
    for (int i = 0; i < n; i++) {
        double want = ids[i] == ia ? 5 : ids[i] == ib ? 2 : ids[i] == ic ? 3 : -1;
        if (vals[i] != want) fail_msg("series %u of the second: %g, expected %g", ids[i], vals[i], want);
    }
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM points"), 1);
    run_job(f, "job_dup");
    int st;
    json_t *doc = query(f, "dup", NULL, m, m, 60, &st);
    assert_int_equal(st, 200);
    agg_expect_t e = {1, 5, 5, 5, 5};
    check_point(json_array_get(json_object_get(find_series(doc, "a"), "points"), 0), m, &e, "a");
    e = (agg_expect_t){1, 3, 3, 3, 3};
    check_point(json_array_get(json_object_get(find_series(doc, "c"), "points"), 0), m, &e, "c");
    json_decref(doc);
    skey_unref(a);
    skey_unref(b);
    skey_unref(c);
}

/* A row of raw points that cannot be decoded is skipped and counted; the rest rolls. */
static void test_bad_points_row_skipped(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t m = ((uint32_t)time(NULL) / 60 - 10) * 60;
    series_key_t *k = key("badrow", NULL);
    put_one(f, k, m + 1, 42);
    barrier(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO points(t, n, data) VALUES(%u, 1, x'0102030405')", m + 2);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    run_job(f, "job_badrow");
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(store_bad_rows(f->s), 1);
    int st;
    json_t *doc = query(f, "badrow", NULL, m, m, 60, &st);
    assert_int_equal(st, 200);
    agg_expect_t e = {1, 42, 42, 42, 42};
    check_point(json_array_get(json_object_get(find_series(doc, NULL), "points"), 0), m, &e, "badrow");
    json_decref(doc);
    skey_unref(k);
}

static struct got_ref *got(fx_t *f, const char *name, const char *source) {
    for (size_t i = f->nrefs; i-- > 0;)
        if (!strcmp(f->refs[i].name, name) && !strcmp(f->refs[i].source, source)) return &f->refs[i];
    return NULL;
}

static void same_or_nan(double got_v, double want, const char *what) {
    if (isnan(want) ? !isnan(got_v) : got_v != want) fail_msg("%s: %g, expected %g", what, got_v, want);
}

/* References come from the rollups an hour, a day and a week back (the latest inside each
 * window), for every series the store knows, in slices of at most STORE_REFS_SLICE; a job
 * that changes none sends none; a series known later gets its own. */
#define NREF (STORE_REFS_SLICE + 300)
static void test_trend_references(void **state) {
    fx_t *f = *state;
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    uint32_t now = (uint32_t)time(NULL);
    series_key_t **k = calloc(NREF, sizeof *k);
    store_point_t *pts = calloc(NREF, sizeof *pts);
    for (int i = 0; i < NREF; i++) {
        char src[16];
        snprintf(src, sizeof src, "s%04d", i);
        k[i] = key("tr", src);
        pts[i] = (store_point_t){k[i], METRIC_GAUGE, now - 10, i};
    }
    store_put_points(f->s, pts, NREF);
    barrier(f);
    /* rollups as the store keeps them: the hour reference 5 min before "an hour ago", an
     * older one inside the window, one outside it; day and week for the first 10 */
    uint32_t h = (now - 3600) / 60 * 60, d = (now - 86400) / 3600 * 3600, w = (now - 604800) / 3600 * 3600;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char sql[1200];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO rollup_60(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, 1000 + id FROM series WHERE name = 'tr'; "
             "INSERT INTO rollup_60(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, -1 FROM series WHERE name = 'tr'; "
             "INSERT INTO rollup_60(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, -2 FROM series WHERE name = 'tr'; "
             "INSERT INTO rollup_3600(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, 2000 + id FROM series WHERE name = 'tr' AND id <= 10; "
             "INSERT INTO rollup_3600(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, 3000 + id FROM series WHERE name = 'tr' AND id <= 10; COMMIT",
             h - 300, h - 480, h - 900, d - 3600, w);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    run_job(f, "job_refs1");
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(f->nrefs, NREF);
    assert_int_equal(f->ref_slices, (NREF + STORE_REFS_SLICE - 1) / STORE_REFS_SLICE);
    assert_int_equal(f->ref_max_slice, STORE_REFS_SLICE);
    for (int i = 0; i < NREF; i++) {
        char src[16];
        snprintf(src, sizeof src, "s%04d", i);
        struct got_ref *g = got(f, "tr", src);
        if (!g) fail_msg("no reference for tr{source=%s}", src);
        int64_t id = series_row(f, "tr", src);
        same_or_nan(g->hour, 1000.0 + id, "hour");
        same_or_nan(g->day, id <= 10 ? 2000.0 + id : NAN, "day");
        same_or_nan(g->week, id <= 10 ? 3000.0 + id : NAN, "week");
    }
    /* nothing changed: nothing sent */
    f->nrefs = 0;
    f->ref_slices = 0;
    run_job(f, "job_refs2");
    assert_int_equal(f->nrefs, 0);
    assert_int_equal(f->ref_slices, 0);
    /* a series the store meets later, with rollups of its own from before */
    series_key_t *late = key("tr_late", "x");
    put_one(f, late, now - 5, 1);
    barrier(f);
    snprintf(sql, sizeof sql,
             "INSERT INTO rollup_60(t,series_id,count,sum,min,max,last) "
             "SELECT %u, id, 1, 0, 0, 0, 77 FROM series WHERE name = 'tr_late'", h - 60);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    run_job(f, "job_refs3");
    assert_int_equal(f->nrefs, 1);
    struct got_ref *g = got(f, "tr_late", "x");
    assert_non_null(g);
    same_or_nan(g->hour, 77, "the later series' hour");
    same_or_nan(g->day, NAN, "the later series' day");
    for (int i = 0; i < NREF; i++) skey_unref(k[i]);
    free(k);
    skey_unref(late);
}

/* A version 1 file (one row per point, rollups keyed by series) is upgraded in place:
 * its raw points, rollups (and the hour in progress), events and watermark carry over. */
static void test_version1_file_upgraded(void **state) {
    fx_t *f = *state;
    uint32_t now = (uint32_t)time(NULL);
    uint32_t hour = (now / 3600 - 1) * 3600, m = hour + 120; /* minutes hour, hour+60 rolled */
    series_key_t *a = key("v1", "a");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char sql[2400];
    snprintf(sql, sizeof sql,
             "CREATE TABLE series(id INTEGER PRIMARY KEY, key BLOB UNIQUE NOT NULL, "
             "name TEXT NOT NULL, labels TEXT NOT NULL, kind INTEGER NOT NULL);"
             "CREATE INDEX series_name ON series(name);"
             "CREATE TABLE points(t INTEGER NOT NULL, series_id INTEGER NOT NULL, v REAL, "
             "PRIMARY KEY(t, series_id)) WITHOUT ROWID;"
             "CREATE TABLE rollup_60(series_id INTEGER NOT NULL, t INTEGER NOT NULL, count INTEGER, "
             "sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(series_id, t)) WITHOUT ROWID;"
             "CREATE TABLE rollup_3600(series_id INTEGER NOT NULL, t INTEGER NOT NULL, count INTEGER, "
             "sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(series_id, t)) WITHOUT ROWID;"
             "CREATE INDEX rollup_60_t ON rollup_60(t); CREATE INDEX rollup_3600_t ON rollup_3600(t);"
             "CREATE TABLE events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, envelope TEXT NOT NULL);"
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
             "INSERT INTO rollup_60 VALUES(1, %u, 60, 600, 1, 20, 7), (1, %u, 60, 1200, 2, 30, 9);"
             "INSERT INTO rollup_3600 VALUES(1, %u, 3600, 36000, 0, 50, 5);"
             "INSERT INTO meta VALUES('rolled_60', %u), ('rolled_3600', %u);"
             "PRAGMA user_version=1;",
             hour, hour + 60, hour - 3600, m, hour);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO series VALUES(1, ?, 'v1', '{\"source\":\"a\"}', 1)",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, a->data, (int)a->len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO points VALUES(?, 1, ?)", -1, &st, NULL), SQLITE_OK);
    for (uint32_t i = 0; i < 30; i++) { /* raw points of the current minute, not rolled */
        sqlite3_bind_int64(st, 1, m + i);
        sqlite3_bind_double(st, 2, 100 + i);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    event_t *e = mk_event(1);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO events VALUES(5, ?, ?)", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->envelope, (int)e->envelope_len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    store_limits_t lim = big_limits();
    open_store(f, &lim);
    assert_int_equal(count_sql(f->path, "PRAGMA user_version"), 2);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%v1'"), 0);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM points"), 30); /* one row a second */
    eventlog_t log;
    registry_t reg;
    assert_int_equal(elog_init(&log, 10), 0);
    assert_int_equal(registry_init(&reg, 1000, 7200), 0);
    char err[STORE_ERR_LEN];
    assert_int_equal(store_load(f->s, &log, &reg, 7200, err), 0);
    assert_int_equal(elog_latest(&log), 5);
    assert_string_equal(elog_get(&log, 5)->envelope, e->envelope);
    series_t *se = registry_find(&reg, a);
    assert_non_null(se);
    assert_int_equal(se->hist.len, 30);
    assert_true(se->value == 129);
    start_store(f);
    int qs;
    json_t *doc = query(f, "v1", NULL, hour, hour + 60, 60, &qs);
    assert_int_equal(qs, 200);
    agg_expect_t e1 = {60, 1200, 2, 30, 9};
    check_point(json_array_get(json_object_get(find_series(doc, "a"), "points"), 1), hour + 60, &e1,
                "an upgraded minute");
    json_decref(doc);
    doc = query(f, "v1", NULL, hour - 3600, hour - 1, 3600, &qs);
    assert_int_equal(qs, 200);
    agg_expect_t eh = {3600, 36000, 0, 50, 5};
    check_point(json_array_get(json_object_get(find_series(doc, "a"), "points"), 0), hour - 3600, &eh,
                "an upgraded hour");
    json_decref(doc);
    /* the hour in progress: its two minutes, then the one rolled now */
    char q[200];
    snprintf(q, sizeof q, "SELECT count FROM rollup_3600 WHERE t = %u AND series_id = 1", hour);
    assert_int_equal(count_sql(f->path, q), 120);
    run_job_until(f, "job_v1", m + 60);
    assert_int_equal(f->agg_failed, 0);
    assert_int_equal(count_sql(f->path, q), 150);
    snprintf(q, sizeof q, "SELECT last FROM rollup_3600 WHERE t = %u AND series_id = 1", hour);
    assert_int_equal(count_sql(f->path, q), 129);
    event_unref(e);
    elog_free(&log);
    registry_free(&reg);
    skey_unref(a);
}

/* ---- files that are not a healthy store ----------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

static void write_all(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

static int count_aside(const char *dir, char *found, size_t flen) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strncmp(de->d_name, STORE_FILE ".corrupt-", strlen(STORE_FILE ".corrupt-"))) {
            n++;
            if (found) snprintf(found, flen, "%s/%s", dir, de->d_name);
        }
    }
    closedir(d);
    return n;
}

/* The file must be refused with -EINVAL and left byte for byte as it was. */
static void expect_refused(fx_t *f, const char *why) {
    size_t len0, len1;
    char *before = read_all(f->path, &len0);
    assert_non_null(before);
    store_limits_t lim = big_limits();
    char err[STORE_ERR_LEN] = "";
    store_t *s = NULL;
    int rc = store_open(&s, f->dir, false, &lim, err);
    if (rc != -EINVAL) {
        store_close(s);
        fail_msg("%s: store_open gave %d, expected -EINVAL (%s)", why, rc, err);
    }
    assert_true(strlen(err) > 0);
    char *after = read_all(f->path, &len1);
    assert_non_null(after);
    if (len0 != len1 || memcmp(before, after, len0) != 0) {
        size_t i = 0;
        while (i < len0 && i < len1 && before[i] == after[i]) i++;
        free(before); /* fail_msg does not return */
        free(after);
        fail_msg("%s: refused (%s) but the file was changed: %zu → %zu bytes, first "
                 "difference at byte %zu", why, err, len0, len1, i);
    }
    assert_int_equal(count_aside(f->dir, NULL, 0), 0);
    free(before);
    free(after);
}

static void expect_reset(fx_t *f, const char *why) {
    size_t len0, len1;
    char *before = read_all(f->path, &len0);
    store_limits_t lim = big_limits();
    char err[STORE_ERR_LEN] = "";
    int rc = store_open(&f->s, f->dir, true, &lim, err);
    if (rc) fail_msg("%s: store_open with reset gave %d (%s)", why, rc, err);
    char aside[600];
    assert_int_equal(count_aside(f->dir, aside, sizeof aside), 1);
    char *moved = read_all(aside, &len1);
    assert_non_null(moved);
    assert_int_equal(len1, len0);
    assert_memory_equal(moved, before, len0);
    free(before);
    free(moved);
    /* a working, empty store */
    start_store(f);
    int st;
    json_t *doc = query(f, "anything", NULL, 0, 2000000000u, 60, &st);
    assert_int_equal(st, 404);
    json_decref(doc);
    assert_int_equal(count_sql(f->path, "PRAGMA user_version"), 2);
}

static void test_garbage_file_refused_then_reset(void **state) {
    fx_t *f = *state;
    char junk[10000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("not a database\n"[i % 15]);
    write_all(f->path, junk, sizeof junk);
    expect_refused(f, "text file");
    expect_reset(f, "text file");
}

static void test_damaged_store_refused_then_reset(void **state) {
    fx_t *f = *state;
    /* a real store with data, then pages after the first overwritten */
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    start_store(f);
    put_series(f, ((uint32_t)time(NULL) / 60 - 10) * 60);
    run_job(f, "job_fill");
    store_close(f->s); /* checkpoints the WAL into the file */
    f->s = NULL;
    size_t len;
    char *b = read_all(f->path, &len);
    assert_non_null(b);
    if (len < 4096 * 4) fail_msg("store file only %zu bytes", len);
    for (size_t i = 4096 + 100; i < len; i += 3) b[i] = (char)0xA5;
    write_all(f->path, b, len);
    free(b);
    expect_refused(f, "damaged store");
    expect_reset(f, "damaged store");
}

static void test_foreign_sqlite_refused(void **state) {
    fx_t *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
                                      "INSERT INTO users(name) VALUES('alice'),('bob');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    expect_refused(f, "foreign SQLite file");
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM users"), 2);
}

static void test_newer_schema_refused(void **state) {
    fx_t *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE series(id INTEGER PRIMARY KEY);"
                                      "PRAGMA user_version=7;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    expect_refused(f, "newer schema");
}

static void test_new_and_empty_file_accepted(void **state) {
    fx_t *f = *state;
    write_all(f->path, "", 0); /* an empty file is a new database */
    store_limits_t lim = big_limits();
    open_store(f, &lim);
    store_close(f->s);
    f->s = NULL;
    /* and reopening our own store is fine */
    open_store(f, &lim);
    assert_int_equal(count_aside(f->dir, NULL, 0), 0);
    assert_int_equal(count_sql(f->path, "PRAGMA user_version"), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollups_minutes_and_hour, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rollup_partial_minute, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_events_and_history_reload, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_locked_then_recovers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_minute_and_hour_across_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_second_twice, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_points_row_skipped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trend_references, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_version1_file_upgraded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file_refused_then_reset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_store_refused_then_reset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_sqlite_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_and_empty_file_accepted, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
