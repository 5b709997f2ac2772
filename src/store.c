#include "store.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "hash.h"
#include "jsonw.h"
#include "log.h"

#define SCHEMA_VERSION 1
/* A transaction waits this long for another writer's lock before it counts as failed. */
#define BUSY_TIMEOUT_MS 2000
/* Events that could not be written are retried this often until they are. */
#define RETRY_MS 500

typedef enum { JOB_POINTS, JOB_EVENT, JOB_AGGREGATE, JOB_QUERY } job_kind_t;

typedef struct job {
    struct job *next;
    job_kind_t kind;
    store_point_t *pts;
    size_t npts;
    event_t *event;
    char job_id[64];
    /* query */
    char name[256], source[256];
    uint32_t from, to, step;
    store_query_done done;
    void *ctx;
} job_t;

typedef struct sid_entry { /* series key → row id, store thread only */
    series_key_t *key;
    int64_t id;
} sid_entry_t;

struct store {
    sqlite3 *db;
    char path[1100];
    store_limits_t lim;
    store_hooks_t hooks;
    uv_thread_t thread;
    bool started;
    uv_mutex_t mu;
    uv_cond_t cv;
    job_t *head, *tail;
    bool stop;
    event_t **retry; /* events whose write failed, retried first (store thread) */
    size_t nretry, retry_cap;
    sid_entry_t *sids;
    uint32_t sid_cap, nsids;
    _Atomic int status;
    _Atomic uint64_t write_errors;
    _Atomic uint64_t points_dropped;
    sqlite3_stmt *put_point; /* prepared once (store thread) */
    uint32_t point_jobs; /* queued, under mu */
    uv_mutex_t msg_mu;
    char status_msg[256];
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void set_status(store_t *s, int rc, const char *msg) {
    int prev = atomic_exchange(&s->status, rc);
    uv_mutex_lock(&s->msg_mu);
    snprintf(s->status_msg, sizeof s->status_msg, "%s", msg ? msg : "");
    uv_mutex_unlock(&s->msg_mu);
    if (rc && !prev) log_error("store write failed", "path=%s error=\"%s\"", s->path, msg);
    if (!rc && prev) log_info("store writable again", "path=%s", s->path);
}

int store_status(store_t *s, char *msg, size_t msglen) {
    if (!s) return 0;
    uv_mutex_lock(&s->msg_mu);
    snprintf(msg, msglen, "%s", s->status_msg);
    uv_mutex_unlock(&s->msg_mu);
    return atomic_load(&s->status);
}

uint64_t store_write_errors(store_t *s) { return s ? atomic_load(&s->write_errors) : 0; }
uint64_t store_points_dropped(store_t *s) { return s ? atomic_load(&s->points_dropped) : 0; }

static int exec(store_t *s, const char *sql) {
    char *e = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &e);
    if (rc != SQLITE_OK) {
        log_debug("store sql failed", "sql=%.60s error=\"%s\"", sql, e ? e : "?");
        sqlite3_free(e);
    }
    return rc;
}

static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, key BLOB UNIQUE NOT NULL, "
    "name TEXT NOT NULL, labels TEXT NOT NULL, kind INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS series_name ON series(name)",
    /* keyed by time first: each second's batch appends at the end of the tree (inserts
     * stay sequential however many series there are), and rolling up or expiring a time
     * range is one range scan */
    "CREATE TABLE IF NOT EXISTS points(t INTEGER NOT NULL, series_id INTEGER NOT NULL, "
    "v REAL, PRIMARY KEY(t, series_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rollup_60(series_id INTEGER NOT NULL, t INTEGER NOT NULL, "
    "count INTEGER, sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(series_id, t)) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rollup_3600(series_id INTEGER NOT NULL, t INTEGER NOT NULL, "
    "count INTEGER, sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(series_id, t)) "
    "WITHOUT ROWID",
    /* time-ordered scans: rolling up a period, retention, trend references */
    "CREATE INDEX IF NOT EXISTS rollup_60_t ON rollup_60(t)",
    "CREATE INDEX IF NOT EXISTS rollup_3600_t ON rollup_3600(t)",
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, "
    "envelope TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)",
};

/* ---- opening ---------------------------------------------------------------------------- */

/* Is this file ours (or new)? Read-only checks: a file that is refused is not changed. */
static int check_store(store_t *s, char *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        snprintf(err, STORE_ERR_LEN, "%.300s is not a healthy SQLite database (%.150s)", s->path,
                 rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0)
                                  : sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return -EINVAL;
    }
    sqlite3_finalize(st);
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION) {
        snprintf(err, STORE_ERR_LEN, "%.300s has schema version %d, newer than this metricastd (%d)",
                 s->path, version, SCHEMA_VERSION);
        return -EINVAL;
    }
    if (version == 0) {
        /* an empty file is new; a file with tables that are not ours is someone else's */
        int tables = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            tables = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (tables > 0) {
            snprintf(err, STORE_ERR_LEN, "%.300s holds tables that are not a metricast store",
                     s->path);
            return -EINVAL;
        }
    }
    return 0;
}

/* Creates (or completes) the schema; after check_store has accepted the file. */
static int migrate(store_t *s, char *err) {
    if (exec(s, "BEGIN") != SQLITE_OK) goto fail;
    for (size_t i = 0; i < sizeof schema / sizeof *schema; i++)
        if (exec(s, schema[i]) != SQLITE_OK) goto fail_tx;
    char v[64];
    snprintf(v, sizeof v, "PRAGMA user_version=%d", SCHEMA_VERSION);
    if (exec(s, v) != SQLITE_OK || exec(s, "COMMIT") != SQLITE_OK) goto fail_tx;
    return 0;
fail_tx:
    exec(s, "ROLLBACK");
fail:
    snprintf(err, STORE_ERR_LEN, "%.300s: cannot create the schema: %.150s", s->path, sqlite3_errmsg(s->db));
    return -EIO;
}

int store_open(store_t **out, const char *dir, bool reset, const store_limits_t *lim,
               char err[STORE_ERR_LEN]) {
    store_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->lim = *lim;
    uv_mutex_init(&s->mu);
    uv_mutex_init(&s->msg_mu);
    uv_cond_init(&s->cv);
    atomic_init(&s->status, 0);
    snprintf(s->path, sizeof s->path, "%s/%s", dir, STORE_FILE);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = sqlite3_open_v2(s->path, &s->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 NULL);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
            /* checks first: nothing is written to a file we then refuse. WAL: readers never
             * block the writer; NORMAL: a commit survives the process being killed (the WAL
             * is in the page cache), only power loss can cost it */
            rc = check_store(s, err);
            if (rc == 0) {
                if (exec(s, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
                    exec(s, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
                    snprintf(err, STORE_ERR_LEN, "%.300s is not a usable SQLite database (%.150s)",
                             s->path, sqlite3_errmsg(s->db));
                    rc = -EIO;
                } else {
                    /* 64 MiB of page cache: a second's batch of 100k points and the
                     * rollup scans stay off the read() path */
                    exec(s, "PRAGMA cache_size=-65536");
                    rc = migrate(s, err);
                }
            }
            if (rc == 0) {
                *out = s;
                return 0;
            }
        } else {
            snprintf(err, STORE_ERR_LEN, "%.300s: cannot open: %.150s", s->path,
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        sqlite3_close(s->db);
        s->db = NULL;
        if (!reset || attempt) break;
        /* --reset-store: keep the bad file for inspection, start afresh */
        char aside[1200];
        snprintf(aside, sizeof aside, "%s.corrupt-%lld", s->path, (long long)clk_unix());
        if (rename(s->path, aside) < 0 && errno != ENOENT) break;
        char side[1200];
        snprintf(side, sizeof side, "%s-wal", s->path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", s->path);
        unlink(side);
        log_warn("store reset: the old file was moved aside", "path=%s moved_to=%s", s->path, aside);
    }
    uv_mutex_destroy(&s->mu);
    uv_mutex_destroy(&s->msg_mu);
    uv_cond_destroy(&s->cv);
    free(s);
    return -EINVAL;
}

/* ---- series ids (store thread, and store_load before it starts) --------------------- */

static int64_t series_id(store_t *s, series_key_t *key, metric_kind_t kind) {
    if (s->sid_cap) {
        for (uint32_t j = (uint32_t)key->hash & (s->sid_cap - 1); s->sids[j].key;
             j = (j + 1) & (s->sid_cap - 1))
            if (skey_equal(s->sids[j].key, key)) return s->sids[j].id;
    }
    if ((s->nsids + 1) * 4 > s->sid_cap * 3) {
        uint32_t ncap = s->sid_cap ? s->sid_cap * 2 : 1024;
        sid_entry_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (uint32_t i = 0; i < s->sid_cap; i++) {
            if (!s->sids[i].key) continue;
            uint32_t j = (uint32_t)s->sids[i].key->hash & (ncap - 1);
            while (ns[j].key) j = (j + 1) & (ncap - 1);
            ns[j] = s->sids[i];
        }
        free(s->sids);
        s->sids = ns;
        s->sid_cap = ncap;
    }
    /* labels as JSON for people reading the file with sqlite3 */
    buf_t lb = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &lb);
    jsonw_obj_open(&w);
    for (int i = 0; i < key->nlabels; i++) {
        skey_label_t l;
        skey_label(key, i, &l);
        jsonw_kv_str(&w, l.name, l.value);
    }
    jsonw_obj_close(&w);
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO series(key,name,labels,kind) VALUES(?,?,?,?) "
                           "ON CONFLICT(key) DO UPDATE SET kind=excluded.kind RETURNING id",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, key->data, (int)key->len, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, skey_name(key), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, lb.data ? lb.data : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)kind);
        if (sqlite3_step(st) == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    buf_free(&lb);
    if (id < 0) return -1;
    uint32_t j = (uint32_t)key->hash & (s->sid_cap - 1);
    while (s->sids[j].key) j = (j + 1) & (s->sid_cap - 1);
    s->sids[j].key = skey_ref(key);
    s->sids[j].id = id;
    s->nsids++;
    return id;
}

/* ---- loading at start ------------------------------------------------------------------ */

static series_key_t *key_from_blob(const void *blob, int len) {
    /* name\0k\0v\0...: rebuild through skey_new so hash and counts are computed */
    const char *p = blob, *end = p + len;
    if (len <= 0 || p[len - 1] != '\0') return NULL;
    const char *name = p;
    p += strlen(p) + 1;
    skey_label_t labels[SKEY_MAX_LABELS];
    int n = 0;
    while (p < end && n < SKEY_MAX_LABELS) {
        labels[n].name = p;
        p += strlen(p) + 1;
        if (p >= end) return NULL;
        labels[n].value = p;
        p += strlen(p) + 1;
        n++;
    }
    return skey_new(name, labels, n);
}

int store_load(store_t *s, eventlog_t *log, registry_t *reg, uint32_t history_seconds,
               char err[STORE_ERR_LEN]) {
    sqlite3_stmt *st = NULL;
    /* events: the newest `retain` of them go back into the window; seq continues */
    uint64_t max_seq = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(seq) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        max_seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    uint64_t from = max_seq > log->cap ? max_seq - log->cap + 1 : 1;
    log->next_seq = from;
    if (sqlite3_prepare_v2(s->db, "SELECT seq, envelope FROM events WHERE seq >= ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        const char *env = (const char *)sqlite3_column_text(st, 1);
        char e_err[EVENT_ERR_LEN];
        event_t *e = event_prepare(env, strlen(env), clk_unix(), "xxxxxx", e_err);
        if (!e) continue; /* a row we cannot read back: skip it rather than refuse to start */
        log->next_seq = seq; /* keeps seq exactly as stored, gaps included */
        if (elog_append(log, e) < 0) {
            event_unref(e);
            break;
        }
        event_unref(e);
    }
    sqlite3_finalize(st);
    if (log->next_seq <= max_seq) log->next_seq = max_seq + 1;
    if (log->last_kept < max_seq) log->last_kept = max_seq; /* unreadable rows: a resync */

    /* history: the last history_seconds of raw points back into the rings */
    uint32_t since = (uint32_t)clk_unix() - history_seconds;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT s.id, s.key, s.kind, p.t, p.v FROM points p JOIN series s ON "
                           "s.id = p.series_id WHERE p.t >= ? ORDER BY p.series_id, p.t",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, since);
    int64_t cur_id = -1;
    series_t *cur = NULL;
    uint64_t npoints = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id != cur_id) {
            cur_id = id;
            series_key_t *k = key_from_blob(sqlite3_column_blob(st, 1), sqlite3_column_bytes(st, 1));
            cur = k ? registry_restore(reg, k, (metric_kind_t)sqlite3_column_int(st, 2)) : NULL;
            skey_unref(k);
        }
        if (!cur) continue;
        history_push(&cur->hist, (uint32_t)sqlite3_column_int64(st, 3), sqlite3_column_double(st, 4),
                     NULL);
        if (cur->kind == METRIC_GAUGE) cur->value = sqlite3_column_double(st, 4);
        npoints++;
    }
    sqlite3_finalize(st);
    log_info("store loaded", "path=%s events=%u next_seq=%llu series=%u points=%llu", s->path,
             log->len, (unsigned long long)log->next_seq, reg->n, (unsigned long long)npoints);
    return 0;
fail:
    snprintf(err, STORE_ERR_LEN, "%.300s: cannot read: %.150s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return -EIO;
}

/* ---- the store thread ------------------------------------------------------------------- */

static void free_job(job_t *j) {
    for (size_t i = 0; i < j->npts; i++) skey_unref(j->pts[i].key);
    free(j->pts);
    if (j->event) event_unref(j->event);
    free(j);
}

static int write_points(store_t *s, job_t *j) {
    int rc = SQLITE_OK;
    if (!s->put_point)
        rc = sqlite3_prepare_v3(s->db, "INSERT OR REPLACE INTO points(series_id,t,v) VALUES(?,?,?)",
                                -1, SQLITE_PREPARE_PERSISTENT, &s->put_point, NULL);
    sqlite3_stmt *st = s->put_point;
    for (size_t i = 0; i < j->npts && rc == SQLITE_OK; i++) {
        int64_t id = series_id(s, j->pts[i].key, j->pts[i].kind);
        if (id < 0) {
            rc = sqlite3_errcode(s->db);
            if (rc == SQLITE_OK) rc = SQLITE_NOMEM;
            break;
        }
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, j->pts[i].t);
        sqlite3_bind_double(st, 3, j->pts[i].v);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
        sqlite3_reset(st);
    }
    return rc;
}

static int write_event(store_t *s, event_t *e) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO events(seq,type,envelope) VALUES(?,?,?)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
        sqlite3_bind_text(st, 2, e->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->envelope, (int)e->envelope_len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    }
    sqlite3_finalize(st);
    return rc;
}

typedef struct events_msg {
    store_t *s;
    uint64_t seq;
    int rc;
} events_msg_t;

static void events_msg_task(void *arg, int cancelled) {
    events_msg_t *m = arg;
    if (!cancelled && m->s->hooks.events_done) m->s->hooks.events_done(m->s->hooks.ctx, m->seq, m->rc);
    free(m);
}

static void tell_events(store_t *s, uint64_t seq, int rc) {
    events_msg_t *m = malloc(sizeof *m);
    if (!m) return;
    *m = (events_msg_t){s, seq, rc};
    if (inbox_post(s->hooks.inbox, events_msg_task, m) < 0) free(m);
}

static int keep_for_retry(store_t *s, event_t *e) {
    if (s->nretry == s->retry_cap) {
        size_t ncap = s->retry_cap ? s->retry_cap * 2 : 64;
        event_t **nr = realloc(s->retry, ncap * sizeof *nr);
        if (!nr) return -ENOMEM;
        s->retry = nr;
        s->retry_cap = ncap;
    }
    s->retry[s->nretry++] = event_ref(e);
    return 0;
}

static const char *sqlite_error_type(int rc) {
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return "locked";
    case SQLITE_FULL: return "disk_full";
    case SQLITE_READONLY: return "read_only";
    case SQLITE_IOERR: return "io_error";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return "corrupt";
    case SQLITE_NOMEM: return "out_of_memory";
    default: return "sqlite_error";
    }
}

/* One transaction for everything queued: points and events; then the hub hears which
 * events are on disk. Events that could not be written stay for the next round. */
static void write_batch(store_t *s, job_t *list) {
    uint64_t max_seq = 0;
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
        for (size_t i = 0; i < s->nretry && rc == SQLITE_OK; i++) {
            rc = write_event(s, s->retry[i]);
            if (s->retry[i]->seq > max_seq) max_seq = s->retry[i]->seq;
        }
        for (job_t *j = list; j && rc == SQLITE_OK; j = j->next) {
            if (j->kind == JOB_POINTS) rc = write_points(s, j);
            if (j->kind == JOB_EVENT) {
                rc = write_event(s, j->event);
                if (j->event->seq > max_seq) max_seq = j->event->seq;
            }
        }
        if (rc == SQLITE_OK) rc = exec(s, "COMMIT");
        if (rc != SQLITE_OK) {
            rc = sqlite3_errcode(s->db) ? sqlite3_errcode(s->db) : rc;
            exec(s, "ROLLBACK");
        }
    }
    for (job_t *j = list; j; j = j->next)
        if (j->kind == JOB_EVENT && j->event->seq > max_seq) max_seq = j->event->seq;
    if (rc == SQLITE_OK) {
        for (size_t i = 0; i < s->nretry; i++) event_unref(s->retry[i]);
        s->nretry = 0;
        set_status(s, 0, NULL);
        if (max_seq) tell_events(s, max_seq, 0);
        return;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s (%s)", sqlite3_errstr(rc), sqlite_error_type(rc));
    atomic_fetch_add(&s->write_errors, 1);
    set_status(s, -EIO, msg);
    /* no one sees an event before it is on disk: keep them, retry every RETRY_MS (the
     * thread wakes for it), and tell the hub only when they are written */
    for (job_t *j = list; j; j = j->next)
        if (j->kind == JOB_EVENT) keep_for_retry(s, j->event);
}

typedef struct agg_msg {
    store_t *s;
    int phase;
    char job_id[64];
    uint64_t entries;
    double ms;
    char error_message[200];
    char error_type[32];
} agg_msg_t;

static void agg_msg_task(void *arg, int cancelled) {
    agg_msg_t *m = arg;
    if (!cancelled && m->s->hooks.aggregation)
        m->s->hooks.aggregation(m->s->hooks.ctx, m->phase, m->job_id, m->entries, m->ms,
                                m->error_message, m->error_type);
    free(m);
}

static void tell_aggregation(store_t *s, int phase, const char *job_id, uint64_t entries,
                             double ms, const char *msg, const char *type) {
    agg_msg_t *m = calloc(1, sizeof *m);
    if (!m) return;
    m->s = s;
    m->phase = phase;
    snprintf(m->job_id, sizeof m->job_id, "%s", job_id);
    m->entries = entries;
    m->ms = ms;
    snprintf(m->error_message, sizeof m->error_message, "%s", msg ? msg : "");
    snprintf(m->error_type, sizeof m->error_type, "%s", type ? type : "");
    if (inbox_post(s->hooks.inbox, agg_msg_task, m) < 0) free(m);
}

static int64_t meta_get(store_t *s, const char *key) {
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int meta_set(store_t *s, const char *key, int64_t v) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key,value) VALUES(?,?)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, v);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Rolls complete periods of `from_table` (raw points or 1 min rollups) into `to_table`,
 * from the watermark to the last complete period. "last" is the value of the latest row
 * of the period (SQLite takes bare columns from the max() row). */
static int roll_up(store_t *s, uint32_t period, uint32_t now, uint64_t *entries) {
    char wm_key[32];
    snprintf(wm_key, sizeof wm_key, "rolled_%u", period);
    int64_t from = meta_get(s, wm_key);
    /* exclusive: periods that ended at least 5 s ago, so the roll (which writes second S
     * just after S+1) has written their last point */
    int64_t to = (int64_t)((now - 5) / period) * period;
    if (from <= 0) from = 0;
    if (to <= from) return SQLITE_OK;
    /* "last" is the value of the period's latest row, found by its (series_id, t) key:
     * SQLite's bare-column shortcut is only defined with a single min() or max() */
    char sql[900];
    if (period == 60)
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO rollup_60(series_id,t,count,sum,min,max,last) "
                 "SELECT a.series_id, a.m, a.c, a.s, a.lo, a.hi, b.v FROM "
                 "(SELECT series_id, (t/60)*60 AS m, count(*) AS c, sum(v) AS s, min(v) AS lo, "
                 " max(v) AS hi, max(t) AS lt FROM points WHERE t >= ?1 AND t < ?2 "
                 " GROUP BY series_id, m) a "
                 "JOIN points b ON b.t = a.lt AND b.series_id = a.series_id");
    else
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO rollup_3600(series_id,t,count,sum,min,max,last) "
                 "SELECT a.series_id, a.h, a.c, a.s, a.lo, a.hi, b.last FROM "
                 "(SELECT series_id, (t/3600)*3600 AS h, sum(count) AS c, sum(sum) AS s, "
                 " min(min) AS lo, max(max) AS hi, max(t) AS lt FROM rollup_60 "
                 " WHERE t >= ?1 AND t < ?2 GROUP BY series_id, h) a "
                 "JOIN rollup_60 b ON b.series_id = a.series_id AND b.t = a.lt");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, to);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
        *entries += (uint64_t)sqlite3_changes(s->db);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) rc = meta_set(s, wm_key, to);
    return rc;
}

static int retention(store_t *s, uint32_t now) {
    char sql[200];
    struct { const char *table; uint32_t keep; } r[] = {
        {"points", s->lim.raw_retention_s},
        {"rollup_60", s->lim.r60_retention_s},
        {"rollup_3600", s->lim.r3600_retention_s},
    };
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE t < %lld", r[i].table,
                 (long long)now - (long long)r[i].keep);
        int rc = exec(s, sql);
        if (rc != SQLITE_OK) return rc;
    }
    snprintf(sql, sizeof sql, "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - %u",
             s->lim.events_keep);
    return exec(s, sql);
}

typedef struct refs_msg {
    store_t *s;
    store_ref_t *refs;
    size_t n;
} refs_msg_t;

static void refs_task(void *arg, int cancelled) {
    refs_msg_t *m = arg;
    if (!cancelled && m->s->hooks.trend_refs) m->s->hooks.trend_refs(m->s->hooks.ctx, m->refs, m->n);
    for (size_t i = 0; i < m->n; i++) skey_unref(m->refs[i].key);
    free(m->refs);
    free(m);
}

static double col_or_nan(sqlite3_stmt *st, int c) {
    return sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
}

/* Each series' comparable value an hour, a day and a week ago: the latest rollup "last"
 * at or up to 10 minutes (an hour: 2 hours) before that moment. One primary-key lookup
 * per series and period. */
static void trend_refs(store_t *s, uint32_t now) {
    static const char sql[] =
        "SELECT s.key, "
        "(SELECT last FROM rollup_60 WHERE series_id = s.id AND t BETWEEN ?1 - 600 AND ?1 "
        " ORDER BY t DESC LIMIT 1), "
        "(SELECT last FROM rollup_3600 WHERE series_id = s.id AND t BETWEEN ?2 - 7200 AND ?2 "
        " ORDER BY t DESC LIMIT 1), "
        "(SELECT last FROM rollup_3600 WHERE series_id = s.id AND t BETWEEN ?3 - 7200 AND ?3 "
        " ORDER BY t DESC LIMIT 1) "
        "FROM series s";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return;
    sqlite3_bind_int64(st, 1, (int64_t)now - 3600);
    sqlite3_bind_int64(st, 2, (int64_t)now - 86400);
    sqlite3_bind_int64(st, 3, (int64_t)now - 604800);
    refs_msg_t *m = calloc(1, sizeof *m);
    size_t cap = 0;
    while (m && sqlite3_step(st) == SQLITE_ROW) {
        double h = col_or_nan(st, 1), d = col_or_nan(st, 2), w = col_or_nan(st, 3);
        if (isnan(h) && isnan(d) && isnan(w)) continue;
        series_key_t *k = key_from_blob(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
        if (!k) continue;
        if (m->n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            store_ref_t *nr = realloc(m->refs, ncap * sizeof *nr);
            if (!nr) {
                skey_unref(k);
                break;
            }
            m->refs = nr;
            cap = ncap;
        }
        m->refs[m->n++] = (store_ref_t){k, h, d, w};
    }
    sqlite3_finalize(st);
    if (!m) return;
    m->s = s;
    if (inbox_post(s->hooks.inbox, refs_task, m) < 0) refs_task(m, 1);
}

static void aggregate(store_t *s, const char *job_id) {
    double t0 = clk_unix();
    tell_aggregation(s, 0, job_id, 0, 0, NULL, NULL);
    uint32_t now = (uint32_t)t0;
    uint64_t entries = 0;
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) rc = roll_up(s, 60, now, &entries);
    if (rc == SQLITE_OK) rc = roll_up(s, 3600, now, &entries);
    if (rc == SQLITE_OK) rc = retention(s, now);
    if (rc == SQLITE_OK) rc = exec(s, "COMMIT");
    if (rc != SQLITE_OK) {
        rc = sqlite3_errcode(s->db) ? sqlite3_errcode(s->db) : rc;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(s->db));
        exec(s, "ROLLBACK");
        atomic_fetch_add(&s->write_errors, 1);
        char st[300];
        snprintf(st, sizeof st, "aggregation: %s (%s)", msg, sqlite_error_type(rc));
        set_status(s, -EIO, st);
        tell_aggregation(s, 2, job_id, 0, (clk_unix() - t0) * 1000, msg, sqlite_error_type(rc));
        return;
    }
    exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
    trend_refs(s, now);
    set_status(s, 0, NULL);
    tell_aggregation(s, 1, job_id, entries, (clk_unix() - t0) * 1000, NULL, NULL);
}

/* ---- rollup queries --------------------------------------------------------------------- */

typedef struct query_msg {
    store_query_done done;
    void *ctx;
    int status;
    buf_t body;
} query_msg_t;

static void query_msg_task(void *arg, int cancelled) {
    query_msg_t *m = arg;
    if (!cancelled) m->done(m->ctx, m->status, &m->body);
    else m->done(m->ctx, 503, &m->body);
    buf_free(&m->body);
    free(m);
}

static void query(store_t *s, job_t *j) {
    query_msg_t *m = calloc(1, sizeof *m);
    if (!m) return;
    m->done = j->done;
    m->ctx = j->ctx;
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT s.id, s.labels, s.kind, r.t, r.count, r.sum, r.min, r.max, r.last "
             "FROM series s JOIN rollup_%u r ON r.series_id = s.id WHERE s.name = ?1 AND "
             "r.t >= ?2 AND r.t <= ?3 ORDER BY s.id, r.t",
             j->step);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    jsonw_t w;
    jsonw_init(&w, &m->body);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "name", j->name);
    jsonw_kv_uint(&w, "from", j->from);
    jsonw_kv_uint(&w, "to", j->to);
    jsonw_kv_uint(&w, "step", j->step);
    jsonw_key(&w, "columns");
    jsonw_arr_open(&w);
    static const char *const cols[] = {"t", "count", "sum", "min", "max", "last"};
    for (size_t i = 0; i < 6; i++) jsonw_str(&w, cols[i]);
    jsonw_arr_close(&w);
    jsonw_key(&w, "series");
    jsonw_arr_open(&w);
    int64_t cur = -1;
    int nseries = 0;
    bool skip = false;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, j->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, j->from);
        sqlite3_bind_int64(st, 3, j->to);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id != cur) {
                const char *labels = (const char *)sqlite3_column_text(st, 1);
                if (cur >= 0 && !skip) {
                    jsonw_arr_close(&w);
                    jsonw_obj_close(&w);
                }
                cur = id;
                skip = false;
                if (j->source[0]) { /* the source label must match the glob */
                    json_t *lj = json_loads(labels, 0, NULL);
                    const char *src = json_string_value(json_object_get(lj, "source"));
                    skip = !src || fnmatch(j->source, src, 0) != 0;
                    json_decref(lj);
                }
                if (skip) continue;
                nseries++;
                jsonw_obj_open(&w);
                jsonw_key(&w, "labels");
                jsonw_raw(&w, labels, strlen(labels));
                jsonw_kv_str(&w, "kind", metric_kind_name((metric_kind_t)sqlite3_column_int(st, 2)));
                jsonw_key(&w, "points");
                jsonw_arr_open(&w);
            }
            if (skip) continue;
            jsonw_arr_open(&w);
            jsonw_int(&w, sqlite3_column_int64(st, 3));
            jsonw_int(&w, sqlite3_column_int64(st, 4));
            for (int c = 5; c <= 8; c++) jsonw_num(&w, sqlite3_column_double(st, c));
            jsonw_arr_close(&w);
        }
        if (cur >= 0 && !skip) {
            jsonw_arr_close(&w);
            jsonw_obj_close(&w);
        }
    }
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    buf_putc(&m->body, '\n');
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        buf_reset(&m->body);
        buf_printf(&m->body, "{\"error\":\"store_unavailable\",\"detail\":\"%s\"}\n",
                   sqlite_error_type(rc));
        m->status = 503;
    } else if (nseries == 0) {
        buf_reset(&m->body);
        buf_printf(&m->body, "{\"error\":\"not_found\",\"detail\":\"no rollups for that series in that range\"}\n");
        m->status = 404;
    } else {
        m->status = 200;
    }
    if (inbox_post(s->hooks.inbox, query_msg_task, m) < 0) {
        buf_free(&m->body);
        free(m);
    }
}

static void thread_main(void *arg) {
    store_t *s = arg;
    for (;;) {
        uv_mutex_lock(&s->mu);
        while (!s->head && !s->stop) {
            if (!s->nretry) {
                uv_cond_wait(&s->cv, &s->mu);
            } else if (uv_cond_timedwait(&s->cv, &s->mu, (uint64_t)RETRY_MS * 1000000u) ==
                       UV_ETIMEDOUT) {
                break; /* time to retry the events that could not be written */
            }
        }
        job_t *list = s->head;
        s->head = s->tail = NULL;
        s->point_jobs = 0;
        bool stop = s->stop;
        uv_mutex_unlock(&s->mu);
        if (list || s->nretry) {
            /* writes first (in one transaction), then the rest in order */
            bool writes = s->nretry > 0;
            for (job_t *j = list; j && !writes; j = j->next)
                writes = j->kind == JOB_POINTS || j->kind == JOB_EVENT;
            if (writes) write_batch(s, list);
            for (job_t *j = list; j; j = j->next) {
                if (j->kind == JOB_AGGREGATE) aggregate(s, j->job_id);
                if (j->kind == JOB_QUERY) query(s, j);
            }
            while (list) {
                job_t *next = list->next;
                free_job(list);
                list = next;
            }
        }
        if (stop) break;
    }
}

/* A bound on raw points waiting for the disk: a store slower than the ingest drops the
 * newest seconds (counted) instead of growing without limit; history in memory and the
 * live paths are unaffected. */
#define MAX_POINT_JOBS 8

static void submit(store_t *s, job_t *j) {
    uv_mutex_lock(&s->mu);
    if (j->kind == JOB_POINTS) {
        if (s->point_jobs >= MAX_POINT_JOBS) {
            uv_mutex_unlock(&s->mu);
            atomic_fetch_add(&s->points_dropped, j->npts);
            free_job(j);
            return;
        }
        s->point_jobs++;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
}

int store_start(store_t *s, const store_hooks_t *hooks) {
    s->hooks = *hooks;
    int rc = uv_thread_create(&s->thread, thread_main, s);
    if (rc == 0) s->started = true;
    return rc;
}

void store_close(store_t *s) {
    if (!s) return;
    if (s->started) {
        uv_mutex_lock(&s->mu);
        s->stop = true;
        uv_cond_signal(&s->cv);
        uv_mutex_unlock(&s->mu);
        uv_thread_join(&s->thread);
    }
    while (s->head) {
        job_t *n = s->head->next;
        free_job(s->head);
        s->head = n;
    }
    for (size_t i = 0; i < s->nretry; i++) event_unref(s->retry[i]);
    free(s->retry);
    for (uint32_t i = 0; i < s->sid_cap; i++) skey_unref(s->sids[i].key);
    free(s->sids);
    sqlite3_finalize(s->put_point);
    sqlite3_close(s->db);
    uv_mutex_destroy(&s->mu);
    uv_mutex_destroy(&s->msg_mu);
    uv_cond_destroy(&s->cv);
    free(s);
}

void store_put_points(store_t *s, store_point_t *pts, size_t n) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        for (size_t i = 0; i < n; i++) skey_unref(pts[i].key);
        free(pts);
        return;
    }
    j->kind = JOB_POINTS;
    j->pts = pts;
    j->npts = n;
    submit(s, j);
}

void store_put_event(store_t *s, event_t *e) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) { /* cannot even queue it: tell the hub at once so it is not held forever */
        tell_events(s, e->seq, -ENOMEM);
        event_unref(e);
        return;
    }
    j->kind = JOB_EVENT;
    j->event = e;
    submit(s, j);
}

void store_aggregate(store_t *s, const char *job_id) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) return;
    j->kind = JOB_AGGREGATE;
    snprintf(j->job_id, sizeof j->job_id, "%s", job_id);
    submit(s, j);
}

int store_query(store_t *s, const char *name, const char *source, uint32_t from, uint32_t to,
                uint32_t step, store_query_done done, void *ctx) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) return -ENOMEM;
    j->kind = JOB_QUERY;
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->source, sizeof j->source, "%s", source ? source : "");
    j->from = from;
    j->to = to;
    j->step = step;
    j->done = done;
    j->ctx = ctx;
    submit(s, j);
    return 0;
}
