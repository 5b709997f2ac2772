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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "hash.h"
#include "jsonw.h"
#include "log.h"

#define SCHEMA_VERSION 2
/* A transaction waits this long for another writer's lock before it counts as failed. */
#define BUSY_TIMEOUT_MS 2000
/* Events that could not be written are retried this often until they are. */
#define RETRY_MS 500
/* The WAL is copied into the file this often (by the checkpoint thread). */
#define CHECKPOINT_MS 1000
/* One raw point in a points row: series id (u32) and value (f64), little-endian. */
#define REC 12
/* Series ids the per-series arrays may grow to (the series table's rowids). */
#define MAX_SERIES_ID 0x7fffffff

typedef enum { JOB_POINTS, JOB_EVENT, JOB_AGGREGATE, JOB_QUERY } job_kind_t;

typedef struct job {
    struct job *next;
    job_kind_t kind;
    store_point_t *pts;
    size_t npts;
    event_t *event;
    char job_id[64];
    uint32_t complete_before;
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

/* count, sum, min, max, last of a period (n == 0: empty) */
typedef struct racc {
    uint32_t n;
    double sum, min, max, last;
} racc_t;

enum { REF_HOUR, REF_DAY, REF_WEEK, NREFS };

/* What the store thread keeps per series id (index = series.id). */
typedef struct sinfo {
    series_key_t *key;     /* one reference; NULL: the series is not known in this run */
    double ref[NREFS];     /* trend references (NAN: none) and the rollup t they come from */
    uint32_t ref_t[NREFS];
    double sent[NREFS];    /* what the hub was last told */
    uint32_t enc_gen, enc_pos; /* encoding one second: seen in pass enc_gen, at record enc_pos */
    bool needs_refs;       /* known since the last reference scan */
} sinfo_t;

struct store {
    sqlite3 *db;
    char path[1100];
    store_limits_t lim;
    store_hooks_t hooks;
    uv_thread_t thread;
    bool started;
    uv_mutex_t mu;
    uv_cond_t cv;
    /* checkpoints: own connection and thread, so that copying the WAL into the file and
     * the fsync after it never hold up a commit (100-1000 ms on a busy disk) */
    sqlite3 *ckpt_db;
    uv_thread_t ckpt_thread;
    bool ckpt_started;
    uv_cond_t ckpt_cv;
    job_t *head, *tail;
    bool stop;
    event_t **retry; /* events whose write failed, retried first (store thread) */
    size_t nretry, retry_cap;
    /* series (store thread; store_load before it starts) */
    sid_entry_t *sids;
    uint32_t sid_cap, nsids;
    sinfo_t *info;  /* by series id */
    racc_t *macc;   /* scratch: the minute being rolled, by series id */
    uint32_t info_cap;
    uint32_t *known; /* ids with a key, for the reference scans */
    uint32_t nknown, known_cap;
    uint32_t *touched; /* ids with macc[id].n > 0 */
    uint32_t ntouched, touched_cap;
    uint32_t enc_gen;
    unsigned char *enc; /* one second's records being written */
    size_t enc_cap;
    uint32_t ref_scanned[NREFS]; /* the latest rollup t read for each reference, 0: none */
    /* prepared once (store thread) */
    sqlite3_stmt *st_put_second, *st_get_second, *st_set_second, *st_put_series, *st_minute,
        *st_next_t, *st_put_many[2], *st_put_one[2], *st_ref_scan[NREFS],
        *st_ref_one[NREFS];
    _Atomic int status;
    _Atomic uint64_t write_errors;
    _Atomic uint64_t points_dropped;
    _Atomic uint64_t bad_rows;
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
uint64_t store_bad_rows(store_t *s) { return s ? atomic_load(&s->bad_rows) : 0; }

static int exec(store_t *s, const char *sql) {
    char *e = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &e);
    if (rc != SQLITE_OK) {
        log_debug("store sql failed", "sql=%.60s error=\"%s\"", sql, e ? e : "?");
        sqlite3_free(e);
    }
    return rc;
}

/* Prepares sql into *st once; later calls reset and reuse it (every caller binds every
 * parameter each time, so old bindings are not cleared). */
static int prep(store_t *s, sqlite3_stmt **st, const char *sql) {
    if (*st) {
        sqlite3_reset(*st);
        return SQLITE_OK;
    }
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
}

static int step_done(store_t *s, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(s->db);
    sqlite3_reset(st);
    return rc;
}

/* Records are little-endian on disk whatever the host (the file moves between machines);
 * on a little-endian host that is a plain copy. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline void put_rec(unsigned char *p, uint32_t id, double v) {
    memcpy(p, &id, 4);
    memcpy(p + 4, &v, 8);
}

static inline void get_rec(const unsigned char *p, uint32_t *id, double *v) {
    memcpy(id, p, 4);
    memcpy(v, p + 4, 8);
}
#else
static inline void put_rec(unsigned char *p, uint32_t id, double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(id >> (8 * i));
    for (int i = 0; i < 8; i++) p[4 + i] = (unsigned char)(b >> (8 * i));
}

static inline void get_rec(const unsigned char *p, uint32_t *id, double *v) {
    uint32_t x = 0;
    uint64_t b = 0;
    for (int i = 0; i < 4; i++) x |= (uint32_t)p[i] << (8 * i);
    for (int i = 0; i < 8; i++) b |= (uint64_t)p[4 + i] << (8 * i);
    *id = x;
    memcpy(v, &b, sizeof *v);
}
#endif

static inline void racc_add(racc_t *a, uint32_t n, double sum, double mn, double mx, double last) {
    if (a->n == 0) {
        a->sum = 0;
        a->min = mn;
        a->max = mx;
    }
    a->n += n;
    a->sum += sum;
    if (mn < a->min) a->min = mn;
    if (mx > a->max) a->max = mx;
    a->last = last;
}

static int push_u32(uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t x) {
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 1024;
        uint32_t *nv = realloc(*v, ncap * sizeof *nv);
        if (!nv) return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- schema ------------------------------------------------------------------------------ */

static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, key BLOB UNIQUE NOT NULL, "
    "name TEXT NOT NULL, labels TEXT NOT NULL, kind INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS series_name ON series(name)",
    /* one row per second holding every point of that second: writing 100,000 points is
     * one row of 1.2 MB (sequential pages), expiring a second is deleting one row, and
     * rolling up a minute is reading 60 rows */
    "CREATE TABLE IF NOT EXISTS points(t INTEGER PRIMARY KEY, n INTEGER NOT NULL, "
    "data BLOB NOT NULL)",
    /* time first: a minute's (an hour's) rows are appended at the end of the tree and
     * expire from its start; a series' range is read by one lookup per period */
    "CREATE TABLE IF NOT EXISTS rollup_60(t INTEGER NOT NULL, series_id INTEGER NOT NULL, "
    "count INTEGER, sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(t, series_id)) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rollup_3600(t INTEGER NOT NULL, series_id INTEGER NOT NULL, "
    "count INTEGER, sum REAL, min REAL, max REAL, last REAL, PRIMARY KEY(t, series_id)) "
    "WITHOUT ROWID",
    /* cluster: "origin oseq oprev cursor" for a clustered hub's events (event.h), else NULL */
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, "
    "envelope TEXT NOT NULL, cluster TEXT)",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)",
};

/* ---- opening ---------------------------------------------------------------------------- */

/* Is this file ours (or new)? Read-only checks: a file that is refused is not changed.
 * Sets *version to the file's schema version. */
static int check_store(store_t *s, int *version, char *err) {
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
    *version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (*version > SCHEMA_VERSION) {
        snprintf(err, STORE_ERR_LEN, "%.300s has schema version %d, newer than this metricastd (%d)",
                 s->path, *version, SCHEMA_VERSION);
        return -EINVAL;
    }
    if (*version == 0) {
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

/* Version 1 kept one row per raw point and keyed rollups by series first. Its points
 * become one row per second, its rollups are copied into time-first tables. */
static int migrate_v1(store_t *s) {
    static const char *const pre[] = {
        "DROP INDEX IF EXISTS points_t",
        "DROP INDEX IF EXISTS rollup_60_t",
        "DROP INDEX IF EXISTS rollup_3600_t",
        "ALTER TABLE points RENAME TO points_v1",
        "ALTER TABLE rollup_60 RENAME TO rollup_60_v1",
        "ALTER TABLE rollup_3600 RENAME TO rollup_3600_v1",
    };
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
        if (exec(s, pre[i]) != SQLITE_OK) return SQLITE_ERROR;
    for (size_t i = 0; i < sizeof schema / sizeof *schema; i++)
        if (exec(s, schema[i]) != SQLITE_OK) return SQLITE_ERROR;
    sqlite3_stmt *rd = NULL, *wr = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT t, series_id, v FROM points_v1 ORDER BY t", -1,
                                &rd, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, "INSERT INTO points(t, n, data) VALUES(?,?,?)", -1, &wr,
                                NULL);
    size_t n = 0;
    int64_t cur = -1;
    for (;;) {
        int r = rc == SQLITE_OK ? sqlite3_step(rd) : SQLITE_DONE;
        int64_t t = r == SQLITE_ROW ? sqlite3_column_int64(rd, 0) : -1;
        if (n && t != cur) { /* the second `cur` is complete */
            sqlite3_bind_int64(wr, 1, cur);
            sqlite3_bind_int64(wr, 2, (int64_t)n);
            sqlite3_bind_blob(wr, 3, s->enc, (int)(n * REC), SQLITE_STATIC);
            rc = step_done(s, wr);
            n = 0;
        }
        if (r != SQLITE_ROW) {
            if (r != SQLITE_DONE && rc == SQLITE_OK) rc = r;
            break;
        }
        if (rc != SQLITE_OK) break;
        cur = t;
        if ((n + 1) * REC > s->enc_cap) {
            size_t ncap = s->enc_cap ? s->enc_cap * 2 : 64 * REC;
            unsigned char *ne = realloc(s->enc, ncap);
            if (!ne) {
                rc = SQLITE_NOMEM;
                break;
            }
            s->enc = ne;
            s->enc_cap = ncap;
        }
        put_rec(s->enc + n * REC, (uint32_t)sqlite3_column_int64(rd, 1), sqlite3_column_double(rd, 2));
        n++;
    }
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    if (rc != SQLITE_OK) return rc;
    static const char *const post[] = {
        "INSERT INTO rollup_60(t, series_id, count, sum, min, max, last) "
        "SELECT t, series_id, count, sum, min, max, last FROM rollup_60_v1",
        "INSERT INTO rollup_3600(t, series_id, count, sum, min, max, last) "
        "SELECT t, series_id, count, sum, min, max, last FROM rollup_3600_v1",
        /* the hour in progress: its minutes so far, in its row of rollup_3600 */
        "INSERT OR REPLACE INTO rollup_3600(t, series_id, count, sum, min, max, last) "
        "SELECT h.v, a.series_id, a.c, a.s, a.lo, a.hi, b.last FROM "
        "(SELECT value AS v FROM meta WHERE key = 'rolled_3600') h, "
        "(SELECT value AS v FROM meta WHERE key = 'rolled_60') m, "
        "(SELECT series_id, sum(count) AS c, sum(sum) AS s, min(min) AS lo, max(max) AS hi, "
        " max(t) AS lt FROM rollup_60 WHERE t >= (SELECT value FROM meta WHERE key = 'rolled_3600') "
        " AND t < (SELECT value FROM meta WHERE key = 'rolled_60') GROUP BY series_id) a "
        "JOIN rollup_60 b ON b.t = a.lt AND b.series_id = a.series_id WHERE h.v > 0 AND m.v > h.v",
        "DROP TABLE points_v1",
        "DROP TABLE rollup_60_v1",
        "DROP TABLE rollup_3600_v1",
    };
    for (size_t i = 0; i < sizeof post / sizeof *post; i++)
        if (exec(s, post[i]) != SQLITE_OK) return SQLITE_ERROR;
    return SQLITE_OK;
}

static bool has_column(store_t *s, const char *table, const char *col) {
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK)
        while (!found && sqlite3_step(st) == SQLITE_ROW)
            found = strcmp((const char *)sqlite3_column_text(st, 1), col) == 0;
    sqlite3_finalize(st);
    return found;
}

/* Creates, completes or upgrades the schema; after check_store has accepted the file. */
static int migrate(store_t *s, int version, char *err) {
    if (exec(s, "BEGIN IMMEDIATE") != SQLITE_OK) goto fail;
    if (version == 1) {
        if (migrate_v1(s) != SQLITE_OK) goto fail_tx;
        log_info("store upgraded", "path=%s from_version=1 to_version=%d", s->path, SCHEMA_VERSION);
    }
    for (size_t i = 0; i < sizeof schema / sizeof *schema; i++)
        if (exec(s, schema[i]) != SQLITE_OK) goto fail_tx;
    /* files from before scale-out: the column is nullable, so older binaries still write
     * their rows (without it) and read the file */
    if (!has_column(s, "events", "cluster") &&
        exec(s, "ALTER TABLE events ADD COLUMN cluster TEXT") != SQLITE_OK)
        goto fail_tx;
    char v[64];
    snprintf(v, sizeof v, "PRAGMA user_version=%d", SCHEMA_VERSION);
    if (exec(s, v) != SQLITE_OK || exec(s, "COMMIT") != SQLITE_OK) goto fail_tx;
    return 0;
fail_tx:
    snprintf(err, STORE_ERR_LEN, "%.300s: cannot %s the schema: %.150s", s->path,
             version == 1 ? "upgrade" : "create", sqlite3_errmsg(s->db));
    exec(s, "ROLLBACK");
    return -EIO;
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
    uv_cond_init(&s->ckpt_cv);
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
            int version = 0;
            rc = check_store(s, &version, err);
            if (rc == 0) {
                if (exec(s, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
                    exec(s, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
                    snprintf(err, STORE_ERR_LEN, "%.300s is not a usable SQLite database (%.150s)",
                             s->path, sqlite3_errmsg(s->db));
                    rc = -EIO;
                } else {
                    /* 64 MiB of page cache: the last ~50 s of 100,000 series' points, so
                     * the minute being rolled up is read from memory */
                    exec(s, "PRAGMA cache_size=-65536");
                    /* Debian's SQLite zeroes every page it frees (SECURE_DELETE): each
                     * expired second would rewrite its ~300 overflow pages. FAST still
                     * clears deleted rows inside the pages that hold them */
                    exec(s, "PRAGMA secure_delete=FAST");
                    /* checkpoints are the checkpoint thread's (see ckpt_main) */
                    exec(s, "PRAGMA wal_autocheckpoint=0");
                    rc = migrate(s, version, err);
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
    free(s->enc);
    uv_mutex_destroy(&s->mu);
    uv_mutex_destroy(&s->msg_mu);
    uv_cond_destroy(&s->cv);
    uv_cond_destroy(&s->ckpt_cv);
    free(s);
    return -EINVAL;
}

/* ---- series (store thread, and store_load before it starts) ----------------------------- */

/* Grows the per-series arrays to hold id. */
static int ensure_id(store_t *s, uint32_t id) {
    if (id < s->info_cap) return 0;
    if (id > MAX_SERIES_ID) return -ERANGE;
    uint32_t ncap = s->info_cap ? s->info_cap : 1024;
    while (ncap <= id) ncap *= 2;
    sinfo_t *ni = realloc(s->info, (size_t)ncap * sizeof *ni);
    if (!ni) return -ENOMEM;
    s->info = ni;
    racc_t *nm = realloc(s->macc, (size_t)ncap * sizeof *nm);
    if (!nm) return -ENOMEM; /* info keeps its larger size; info_cap stays the smaller */
    s->macc = nm;
    for (uint32_t i = s->info_cap; i < ncap; i++) {
        memset(&ni[i], 0, sizeof ni[i]);
        for (int k = 0; k < NREFS; k++) ni[i].ref[k] = ni[i].sent[k] = NAN;
        memset(&nm[i], 0, sizeof nm[i]);
    }
    s->info_cap = ncap;
    return 0;
}

static int64_t sid_lookup(const store_t *s, const series_key_t *key) {
    if (!s->sid_cap) return -1;
    for (uint32_t j = (uint32_t)key->hash & (s->sid_cap - 1); s->sids[j].key;
         j = (j + 1) & (s->sid_cap - 1))
        if (s->sids[j].key->hash == key->hash && skey_equal(s->sids[j].key, key))
            return s->sids[j].id;
    return -1;
}

/* Remembers key ↔ id for this run (takes references of its own). */
static int register_series(store_t *s, series_key_t *key, int64_t id) {
    if (id <= 0 || id > MAX_SERIES_ID || ensure_id(s, (uint32_t)id) < 0) return -1;
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
    sinfo_t *in = &s->info[id];
    if (!in->key && push_u32(&s->known, &s->nknown, &s->known_cap, (uint32_t)id) < 0) return -1;
    uint32_t j = (uint32_t)key->hash & (s->sid_cap - 1);
    while (s->sids[j].key) j = (j + 1) & (s->sid_cap - 1);
    s->sids[j].key = skey_ref(key);
    s->sids[j].id = id;
    s->nsids++;
    if (!in->key) in->key = skey_ref(key);
    in->needs_refs = true;
    return 0;
}

/* The series' row id, creating the row the first time. -1 on failure. */
static int64_t series_id(store_t *s, series_key_t *key, metric_kind_t kind) {
    int64_t id = sid_lookup(s, key);
    if (id > 0) return id;
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
    id = -1;
    if (prep(s, &s->st_put_series,
             "INSERT INTO series(key,name,labels,kind) VALUES(?,?,?,?) "
             "ON CONFLICT(key) DO UPDATE SET kind=excluded.kind RETURNING id") == SQLITE_OK) {
        sqlite3_stmt *st = s->st_put_series;
        sqlite3_bind_blob(st, 1, key->data, (int)key->len, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, skey_name(key), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, lb.data ? lb.data : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)kind);
        if (sqlite3_step(st) == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    buf_free(&lb);
    if (id <= 0 || register_series(s, key, id) < 0) return -1;
    return id;
}

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

/* ---- loading at start ------------------------------------------------------------------ */

/* The registry's series for row id (restored on first sight); NULL when it cannot be. */
static series_t *load_series(store_t *s, registry_t *reg, sqlite3_stmt *get, uint32_t id,
                             series_t **by_id, uint8_t *tried) {
    if (by_id[id] || tried[id]) return by_id[id];
    tried[id] = 1;
    sqlite3_bind_int64(get, 1, id);
    if (sqlite3_step(get) == SQLITE_ROW) {
        series_key_t *k = key_from_blob(sqlite3_column_blob(get, 0), sqlite3_column_bytes(get, 0));
        if (k) {
            by_id[id] = registry_restore(reg, k, (metric_kind_t)sqlite3_column_int(get, 1));
            if (by_id[id]) register_series(s, k, id);
        }
        skey_unref(k);
    }
    sqlite3_reset(get);
    return by_id[id];
}

int store_load(store_t *s, eventlog_t *log, registry_t *reg, uint32_t history_seconds,
               char err[STORE_ERR_LEN]) {
    sqlite3_stmt *st = NULL, *get = NULL;
    series_t **by_id = NULL;
    uint8_t *tried = NULL;
    /* events: the newest `retain` of them go back into the window; seq continues */
    uint64_t max_seq = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(seq) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        max_seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    uint64_t from = max_seq > log->cap ? max_seq - log->cap + 1 : 1;
    log->next_seq = from;
    if (sqlite3_prepare_v2(s->db, "SELECT seq, envelope, cluster FROM events WHERE seq >= ? "
                           "ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        const char *env = (const char *)sqlite3_column_text(st, 1);
        char e_err[EVENT_ERR_LEN];
        event_t *e = event_prepare(env, strlen(env), clk_unix(), "xxxxxx", e_err);
        if (!e) continue; /* a row we cannot read back: skip it rather than refuse to start */
        const char *cl = (const char *)sqlite3_column_text(st, 2);
        if (cl) event_cluster_parse(e, cl);
        log->next_seq = seq; /* keeps seq exactly as stored, gaps included */
        if (elog_append(log, e) < 0) {
            event_unref(e);
            break;
        }
        event_unref(e);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (log->next_seq <= max_seq) log->next_seq = max_seq + 1;
    if (log->last_kept < max_seq) log->last_kept = max_seq; /* unreadable rows: a resync */

    /* history: the last history_seconds of raw points back into the rings, second by
     * second (the order the rings need) */
    int64_t max_id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(id) FROM series", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        max_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (max_id < 0 || max_id > MAX_SERIES_ID) max_id = MAX_SERIES_ID;
    by_id = calloc((size_t)max_id + 1, sizeof *by_id);
    tried = calloc((size_t)max_id + 1, 1);
    if (!by_id || !tried) {
        snprintf(err, STORE_ERR_LEN, "%.300s: out of memory loading the history", s->path);
        goto fail_mem;
    }
    uint32_t since = (uint32_t)clk_unix() - history_seconds;
    if (sqlite3_prepare_v2(s->db, "SELECT key, kind FROM series WHERE id = ?", -1, &get, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT t, data FROM points WHERE t >= ? ORDER BY t", -1, &st,
                           NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, since);
    uint64_t npoints = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint32_t t = (uint32_t)sqlite3_column_int64(st, 0);
        const unsigned char *p = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if (len % REC) {
            if (atomic_fetch_add(&s->bad_rows, 1) == 0)
                log_warn("store: raw points row not decodable, skipped", "path=%s t=%u bytes=%d",
                         s->path, t, len);
            continue;
        }
        for (int off = 0; off < len; off += REC) {
            uint32_t id;
            double v;
            get_rec(p + off, &id, &v);
            if (id == 0 || id > (uint64_t)max_id) continue;
            series_t *se = load_series(s, reg, get, id, by_id, tried);
            if (!se) continue;
            history_push(&se->hist, t, v, NULL);
            if (se->kind == METRIC_GAUGE) se->value = v;
            npoints++;
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(get);
    free(by_id);
    free(tried);
    log_info("store loaded", "path=%s events=%u next_seq=%llu series=%u points=%llu", s->path,
             log->len, (unsigned long long)log->next_seq, reg->n, (unsigned long long)npoints);
    return 0;
fail:
    snprintf(err, STORE_ERR_LEN, "%.300s: cannot read: %.150s", s->path, sqlite3_errmsg(s->db));
fail_mem:
    sqlite3_finalize(st);
    sqlite3_finalize(get);
    free(by_id);
    free(tried);
    return -EIO;
}

/* ---- the store thread: writes ------------------------------------------------------------ */

static void free_job(job_t *j) {
    free(j->pts); /* the keys are borrowed */
    if (j->event) event_unref(j->event);
    free(j);
}

static int enc_reserve(store_t *s, size_t nrec) {
    if (nrec * REC <= s->enc_cap) return 0;
    size_t ncap = s->enc_cap ? s->enc_cap : 4096 * REC;
    while (ncap < nrec * REC) ncap *= 2;
    unsigned char *ne = realloc(s->enc, ncap);
    if (!ne) return -ENOMEM;
    s->enc = ne;
    s->enc_cap = ncap;
    return 0;
}

/* Writes the n records in s->enc (encoded in pass s->enc_gen) as second t. A row already
 * there for t (the clock went back) is merged: its series that are not in the new
 * records are kept. */
static int put_second(store_t *s, uint32_t t, size_t n) {
    int rc = prep(s, &s->st_put_second,
                  "INSERT INTO points(t, n, data) VALUES(?,?,?) ON CONFLICT(t) DO NOTHING");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(s->st_put_second, 1, t);
    sqlite3_bind_int64(s->st_put_second, 2, (int64_t)n);
    sqlite3_bind_blob(s->st_put_second, 3, s->enc, (int)(n * REC), SQLITE_STATIC);
    if ((rc = step_done(s, s->st_put_second)) != SQLITE_OK || sqlite3_changes(s->db) > 0) return rc;
    if ((rc = prep(s, &s->st_get_second, "SELECT data FROM points WHERE t = ?")) != SQLITE_OK)
        return rc;
    sqlite3_stmt *g = s->st_get_second;
    sqlite3_bind_int64(g, 1, t);
    if (sqlite3_step(g) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_blob(g, 0);
        int len = sqlite3_column_bytes(g, 0);
        for (int off = 0; off + REC <= len; off += REC) {
            uint32_t id;
            double v;
            get_rec(p + off, &id, &v);
            if (id < s->info_cap && s->info[id].enc_gen == s->enc_gen) continue; /* replaced */
            if (enc_reserve(s, n + 1) < 0) {
                sqlite3_reset(g);
                return SQLITE_NOMEM;
            }
            put_rec(s->enc + n * REC, id, v);
            n++;
        }
    }
    sqlite3_reset(g);
    if ((rc = prep(s, &s->st_set_second, "UPDATE points SET n = ?, data = ? WHERE t = ?")) !=
        SQLITE_OK)
        return rc;
    sqlite3_bind_int64(s->st_set_second, 1, (int64_t)n);
    sqlite3_bind_blob(s->st_set_second, 2, s->enc, (int)(n * REC), SQLITE_STATIC);
    sqlite3_bind_int64(s->st_set_second, 3, t);
    return step_done(s, s->st_set_second);
}

typedef struct t_idx {
    uint32_t t;
    size_t i;
} t_idx_t;

static int cmp_t_idx(const void *a, const void *b) {
    const t_idx_t *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Encodes the points p[order[a]] .. p[order[b - 1]] (one second) and writes them. */
static int write_second(store_t *s, const store_point_t *p, const t_idx_t *order, size_t a,
                        size_t b) {
    if (enc_reserve(s, b - a) < 0) return SQLITE_NOMEM;
    if (++s->enc_gen == 0) { /* wrapped: forget every mark so none matches by accident */
        for (uint32_t i = 0; i < s->info_cap; i++) s->info[i].enc_gen = 0;
        s->enc_gen = 1;
    }
    size_t n = 0;
    for (size_t k = a; k < b; k++) {
        const store_point_t *pt = &p[order ? order[k].i : k];
        int64_t id = series_id(s, pt->key, pt->kind);
        if (id <= 0) {
            int rc = sqlite3_errcode(s->db);
            return rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_NOMEM : rc;
        }
        sinfo_t *in = &s->info[id];
        if (in->enc_gen == s->enc_gen) { /* the same series again: the later value wins */
            put_rec(s->enc + (size_t)in->enc_pos * REC, (uint32_t)id, pt->v);
            continue;
        }
        in->enc_gen = s->enc_gen;
        in->enc_pos = (uint32_t)n;
        put_rec(s->enc + n * REC, (uint32_t)id, pt->v);
        n++;
    }
    return n ? put_second(s, p[order ? order[a].i : a].t, n) : SQLITE_OK;
}

static int write_points(store_t *s, job_t *j) {
    const store_point_t *p = j->pts;
    size_t n = j->npts;
    bool one_second = true;
    for (size_t i = 1; i < n && one_second; i++) one_second = p[i].t == p[0].t;
    if (one_second) return write_second(s, p, NULL, 0, n); /* the roll's hand-over */
    /* grouped by second, keeping the given order within each */
    t_idx_t *o = malloc(n * sizeof *o);
    if (!o) return SQLITE_NOMEM;
    for (size_t i = 0; i < n; i++) o[i] = (t_idx_t){p[i].t, i};
    qsort(o, n, sizeof *o, cmp_t_idx);
    int rc = SQLITE_OK;
    for (size_t a = 0, b; a < n && rc == SQLITE_OK; a = b) {
        for (b = a + 1; b < n && o[b].t == o[a].t; b++) {}
        rc = write_second(s, p, o, a, b);
    }
    free(o);
    return rc;
}

static int write_event(store_t *s, event_t *e) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO events(seq,type,envelope,cluster) "
                                "VALUES(?,?,?,?)", -1, &st, NULL);
    char *cl = NULL;
    if (rc == SQLITE_OK && e->origin[0] && !(cl = event_cluster_format(e))) rc = SQLITE_NOMEM;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
        sqlite3_bind_text(st, 2, e->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->envelope, (int)e->envelope_len, SQLITE_STATIC);
        if (cl)
            sqlite3_bind_text(st, 4, cl, -1, free);
        else
            sqlite3_bind_null(st, 4);
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

/* ---- the store thread: aggregation ------------------------------------------------------- */

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

/* The first second >= t that has raw points, or -1. */
static int64_t next_point_t(store_t *s, int64_t t) {
    if (prep(s, &s->st_next_t, "SELECT t FROM points WHERE t >= ? ORDER BY t LIMIT 1") != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s->st_next_t, 1, t);
    int64_t r = sqlite3_step(s->st_next_t) == SQLITE_ROW ? sqlite3_column_int64(s->st_next_t, 0) : -1;
    sqlite3_reset(s->st_next_t);
    return r;
}

static void macc_clear(store_t *s) {
    for (uint32_t i = 0; i < s->ntouched; i++) s->macc[s->touched[i]].n = 0;
    s->ntouched = 0;
}

/* Adds one value of series id to the scratch accumulators. */
static inline int macc_add(store_t *s, uint32_t id, uint32_t n, double sum, double mn, double mx,
                           double last) {
    if (id >= s->info_cap || id == 0) {
        int e = id ? ensure_id(s, id) : -ERANGE;
        if (e == -ERANGE) return 0; /* not a series id: skipped */
        if (e) return e;
    }
    racc_t *a = &s->macc[id];
    if (a->n == 0 && push_u32(&s->touched, &s->ntouched, &s->touched_cap, id) < 0) return -ENOMEM;
    racc_add(a, n, sum, mn, mx, last);
    return 0;
}

/* Rollup rows written per statement: one statement per row costs twice as much CPU. */
#define ROWS_PER_STMT 64

/* The insert of n rows into rollup_60 (k 0) or into the hour's rollup_3600 row (k 1: the
 * minute is added to what the hour holds so far). */
static int rollup_stmt(store_t *s, int k, int n, sqlite3_stmt **st) {
    if (*st) return prep(s, st, NULL);
    char sql[ROWS_PER_STMT * 16 + 512];
    size_t len = (size_t)snprintf(sql, sizeof sql,
                                  "INSERT %sINTO rollup_%s(t,series_id,count,sum,min,max,last) VALUES",
                                  k ? "" : "OR REPLACE ", k ? "3600" : "60");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(sql + len, sizeof sql - len, "%s(?,?,?,?,?,?,?)", i ? "," : "");
    if (k)
        snprintf(sql + len, sizeof sql - len,
                 " ON CONFLICT(t, series_id) DO UPDATE SET count = count + excluded.count, "
                 "sum = sum + excluded.sum, min = min(min, excluded.min), "
                 "max = max(max, excluded.max), last = excluded.last");
    return prep(s, st, sql);
}

/* Writes the scratch accumulators as minute m's rows of rollup_60 and folds each into
 * its hour's row of rollup_3600 (which so holds the hour so far: nothing needs rebuilding
 * after a restart), in series order: the rows of one t are together at the end of each
 * tree (appended, or updated in place). Clears the scratch. */
/* The touched ids in ascending order: a scan of the id range when they are dense (the
 * usual case: ids are given out in order), else a sort. */
static void sort_touched(store_t *s) {
    uint32_t max = 0;
    for (uint32_t i = 0; i < s->ntouched; i++)
        if (s->touched[i] > max) max = s->touched[i];
    if ((uint64_t)max > (uint64_t)s->ntouched * 4) {
        qsort(s->touched, s->ntouched, sizeof *s->touched, cmp_u32);
        return;
    }
    uint32_t n = 0;
    for (uint32_t id = 1; id <= max; id++)
        if (s->macc[id].n) s->touched[n++] = id;
}

static int write_minute(store_t *s, uint32_t m, uint64_t *entries) {
    sort_touched(s);
    uint32_t t[2] = {m, m / 3600 * 3600};
    int rc = SQLITE_OK;
    for (int k = 0; k < 2 && rc == SQLITE_OK; k++) {
        for (uint32_t i = 0; i < s->ntouched && rc == SQLITE_OK;) {
            bool many = s->ntouched - i >= ROWS_PER_STMT;
            int n = many ? ROWS_PER_STMT : 1;
            sqlite3_stmt **st = many ? &s->st_put_many[k] : &s->st_put_one[k];
            if ((rc = rollup_stmt(s, k, n, st)) != SQLITE_OK) break;
            for (int r = 0; r < n; r++, i++) {
                uint32_t id = s->touched[i];
                const racc_t *a = &s->macc[id];
                int c = r * 7;
                sqlite3_bind_int64(*st, c + 1, t[k]);
                sqlite3_bind_int64(*st, c + 2, id);
                sqlite3_bind_int64(*st, c + 3, a->n);
                sqlite3_bind_double(*st, c + 4, a->sum);
                sqlite3_bind_double(*st, c + 5, a->min);
                sqlite3_bind_double(*st, c + 6, a->max);
                sqlite3_bind_double(*st, c + 7, a->last);
            }
            rc = step_done(s, *st);
        }
    }
    if (rc == SQLITE_OK) *entries += s->ntouched;
    macc_clear(s);
    return rc;
}

/* Minute m from its 60 rows of raw points into rollup_60 and its hour's rollup_3600 row. */
static int roll_minute(store_t *s, uint32_t m, uint64_t *entries) {
    int rc = prep(s, &s->st_minute, "SELECT data FROM points WHERE t >= ?1 AND t < ?1 + 60 ORDER BY t");
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(s->st_minute, 1, m);
    while ((rc = sqlite3_step(s->st_minute)) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_blob(s->st_minute, 0);
        int len = sqlite3_column_bytes(s->st_minute, 0);
        if (len % REC) {
            if (atomic_fetch_add(&s->bad_rows, 1) == 0)
                log_warn("store: raw points row not decodable, skipped", "path=%s minute=%u bytes=%d",
                         s->path, m, len);
            continue;
        }
        /* rows come in time order: the last value seen is the minute's "last" */
        for (int off = 0; off < len; off += REC) {
            uint32_t id;
            double v;
            get_rec(p + off, &id, &v);
            if (macc_add(s, id, 1, v, v, v, v) < 0) {
                sqlite3_reset(s->st_minute);
                macc_clear(s);
                return SQLITE_NOMEM;
            }
        }
    }
    sqlite3_reset(s->st_minute);
    if (rc != SQLITE_DONE) {
        macc_clear(s);
        return rc;
    }
    return write_minute(s, m, entries);
}

static int retention(store_t *s, uint32_t now, uint32_t rolled) {
    char sql[200];
    /* raw points that are not rolled up yet are kept whatever their age */
    int64_t raw_cut = (int64_t)now - (int64_t)s->lim.raw_retention_s;
    if (raw_cut > rolled) raw_cut = rolled;
    struct { const char *table; int64_t cut; } r[] = {
        {"points", raw_cut},
        {"rollup_60", (int64_t)now - (int64_t)s->lim.r60_retention_s},
        {"rollup_3600", (int64_t)now - (int64_t)s->lim.r3600_retention_s},
    };
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE t < %lld", r[i].table, (long long)r[i].cut);
        int rc = exec(s, sql);
        if (rc != SQLITE_OK) return rc;
    }
    snprintf(sql, sizeof sql, "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - %u",
             s->lim.events_keep);
    return exec(s, sql);
}

/* Rolls the complete minutes in [rolled_60, complete_before) that have points, at most
 * STORE_MAX_MINUTES_PER_JOB of them. */
static int roll_up(store_t *s, uint32_t complete_before, uint32_t *rolled, uint64_t *entries) {
    uint32_t end = complete_before / 60 * 60;
    int64_t wm = meta_get(s, "rolled_60");
    if (wm <= 0) { /* a new store: from its first point */
        int64_t first = next_point_t(s, 0);
        wm = first >= 0 && first < end ? first / 60 * 60 : end;
    }
    uint32_t m = (uint32_t)wm;
    int rc = SQLITE_OK;
    for (int minutes = 0; m < end && minutes < STORE_MAX_MINUTES_PER_JOB && rc == SQLITE_OK;) {
        int64_t nt = next_point_t(s, m);
        uint32_t next = nt >= 0 && nt < end ? (uint32_t)nt / 60 * 60 : end;
        if (next > m) { /* minutes without points: nothing to roll */
            m = next;
            continue;
        }
        rc = roll_minute(s, m, entries);
        minutes++;
        m += 60;
    }
    if (rc == SQLITE_OK) rc = meta_set(s, "rolled_60", m);
    if (rc == SQLITE_OK && m / 3600 > (uint32_t)wm / 3600) {
        /* hours this job completed: their rows count as written now */
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM rollup_3600 WHERE t > ?1 - 3600 "
                                       "AND t <= ?2 - 3600", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, wm);
            sqlite3_bind_int64(st, 2, m);
            if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                *entries += (uint64_t)sqlite3_column_int64(st, 0);
                rc = SQLITE_OK;
            }
        }
        sqlite3_finalize(st);
    }
    *rolled = m;
    return rc;
}

/* ---- trend references ------------------------------------------------------------------ */

/* A series' reference for each period is the "last" of its latest rollup in the window
 * [now - back - tol, now - back]. The store reads each new rollup period once, as it
 * enters the window (one minute per minute, one hour per hour, a range of one t: the
 * rows are together), keeps the result per series, and tells the hub what changed. */
static const struct refspec {
    const char *scan, *one;
    uint32_t back, step, tol;
} refspec[NREFS] = {
    {"SELECT series_id, last FROM rollup_60 WHERE t = ?",
     "SELECT last FROM rollup_60 WHERE t = ? AND series_id = ?", 3600, 60, 600},
    {"SELECT series_id, last FROM rollup_3600 WHERE t = ?",
     "SELECT last FROM rollup_3600 WHERE t = ? AND series_id = ?", 86400, 3600, 7200},
    {"SELECT series_id, last FROM rollup_3600 WHERE t = ?",
     "SELECT last FROM rollup_3600 WHERE t = ? AND series_id = ?", 604800, 3600, 7200},
};

typedef struct refs_msg {
    store_t *s;
    store_ref_t *refs;
    size_t n, off;
} refs_msg_t;

/* Releases the references not delivered yet (those before m->off went with their slice). */
static void refs_msg_free(refs_msg_t *m) {
    for (size_t i = m->off; i < m->n; i++) skey_unref(m->refs[i].key);
    free(m->refs);
    free(m);
}

/* One slice per task, its keys released with it; the rest goes back to the end of the
 * inbox, behind whatever else the hub has to do. */
static void refs_task(void *arg, int cancelled) {
    refs_msg_t *m = arg;
    if (cancelled || !m->s->hooks.trend_refs) {
        refs_msg_free(m);
        return;
    }
    size_t k = m->n - m->off < STORE_REFS_SLICE ? m->n - m->off : STORE_REFS_SLICE;
    m->s->hooks.trend_refs(m->s->hooks.ctx, m->refs + m->off, k);
    for (size_t i = m->off; i < m->off + k; i++) skey_unref(m->refs[i].key);
    m->off += k;
    if (m->off >= m->n || inbox_post(m->s->hooks.inbox, refs_task, m) < 0) refs_msg_free(m);
}

static bool same_ref(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

static void trend_refs(store_t *s, uint32_t now) {
    uint32_t lo[NREFS], hi[NREFS];
    bool first[NREFS];
    for (int k = 0; k < NREFS; k++) {
        const struct refspec *r = &refspec[k];
        if (now < r->back + r->tol + r->step) return; /* a clock this early has no past */
        uint32_t a = now - r->back - r->tol;
        lo[k] = (a + r->step - 1) / r->step * r->step;
        hi[k] = (now - r->back) / r->step * r->step;
        first[k] = s->ref_scanned[k] == 0;
        uint32_t from = first[k] || s->ref_scanned[k] + r->step < lo[k] ? lo[k]
                                                                      : s->ref_scanned[k] + r->step;
        if (prep(s, &s->st_ref_scan[k], r->scan) != SQLITE_OK) return;
        for (uint32_t t = from; t <= hi[k]; t += r->step) {
            sqlite3_stmt *q = s->st_ref_scan[k];
            sqlite3_reset(q);
            sqlite3_bind_int64(q, 1, t);
            while (sqlite3_step(q) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(q, 0);
                if (id <= 0 || id >= s->info_cap || !s->info[id].key) continue;
                s->info[id].ref[k] = sqlite3_column_double(q, 1);
                s->info[id].ref_t[k] = t;
            }
        }
        sqlite3_reset(s->st_ref_scan[k]);
        if (hi[k] > s->ref_scanned[k]) s->ref_scanned[k] = hi[k];
    }
    refs_msg_t *m = calloc(1, sizeof *m);
    size_t cap = 0;
    for (uint32_t i = 0; m && i < s->nknown; i++) {
        uint32_t id = s->known[i];
        sinfo_t *in = &s->info[id];
        for (int k = 0; k < NREFS; k++) {
            const struct refspec *r = &refspec[k];
            if (in->needs_refs && !first[k] &&
                prep(s, &s->st_ref_one[k], r->one) == SQLITE_OK) {
                /* known since the last scan: its latest rollup in the window, newest first */
                for (uint32_t t = hi[k]; t >= lo[k]; t -= r->step) { /* lo >= step */
                    sqlite3_stmt *q = s->st_ref_one[k];
                    sqlite3_reset(q);
                    sqlite3_bind_int64(q, 1, t);
                    sqlite3_bind_int64(q, 2, id);
                    if (sqlite3_step(q) == SQLITE_ROW) {
                        in->ref[k] = sqlite3_column_double(q, 0);
                        in->ref_t[k] = t;
                        break;
                    }
                }
                sqlite3_reset(s->st_ref_one[k]);
            }
            if (in->ref_t[k] && in->ref_t[k] < lo[k]) { /* out of the window: unknown */
                in->ref[k] = NAN;
                in->ref_t[k] = 0;
            }
        }
        in->needs_refs = false;
        if (same_ref(in->ref[0], in->sent[0]) && same_ref(in->ref[1], in->sent[1]) &&
            same_ref(in->ref[2], in->sent[2]))
            continue;
        if (m->n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            store_ref_t *nr = realloc(m->refs, ncap * sizeof *nr);
            if (!nr) break; /* the rest is sent after the next job */
            m->refs = nr;
            cap = ncap;
        }
        m->refs[m->n++] = (store_ref_t){skey_ref(in->key), in->ref[0], in->ref[1], in->ref[2]};
        memcpy(in->sent, in->ref, sizeof in->sent);
    }
    if (!m) return;
    m->s = s;
    if (m->n == 0 || inbox_post(s->hooks.inbox, refs_task, m) < 0) refs_msg_free(m);
}

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void aggregate(store_t *s, const char *job_id, uint32_t complete_before) {
    double t0 = clk_unix(), c0 = thread_cpu_ms();
    tell_aggregation(s, 0, job_id, 0, 0, NULL, NULL);
    uint32_t now = (uint32_t)t0;
    if (!complete_before) complete_before = now - 5;
    uint64_t entries = 0;
    uint32_t rolled = 0;
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) rc = roll_up(s, complete_before, &rolled, &entries);
    double t1 = clk_unix();
    if (rc == SQLITE_OK) rc = retention(s, now, rolled);
    double t2 = clk_unix();
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
    double t3 = clk_unix();
    if (!s->ckpt_started) exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
    trend_refs(s, now);
    double t4 = clk_unix();
    set_status(s, 0, NULL);
    log_debug("aggregation done", "job=%s entries=%llu rolled_to=%u rollup_ms=%.1f retention_ms=%.1f "
              "commit_ms=%.1f refs_ms=%.1f cpu_ms=%.1f", job_id, (unsigned long long)entries, rolled,
              (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3,
              thread_cpu_ms() - c0);
    tell_aggregation(s, 1, job_id, entries, (t4 - t0) * 1000, NULL, NULL);
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

/* The series named j->name (and matching the source glob), in id order; then, for each,
 * one primary-key lookup per period of the range (the rows are keyed by time first). */
static void query(store_t *s, job_t *j) {
    query_msg_t *m = calloc(1, sizeof *m);
    if (!m) return;
    m->done = j->done;
    m->ctx = j->ctx;
    char sql[400];
    sqlite3_stmt *ser = NULL, *pts = NULL, *lim = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT id, labels, kind FROM series WHERE name = ?1 ORDER BY id",
                                -1, &ser, NULL);
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE p(t) AS (SELECT ?2 UNION ALL SELECT t + ?4 FROM p WHERE t + ?4 <= ?3) "
             "SELECT r.t, r.count, r.sum, r.min, r.max, r.last FROM p "
             "JOIN rollup_%u r ON r.t = p.t AND r.series_id = ?1",
             j->step);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(s->db, sql, -1, &pts, NULL);
    /* the range, narrowed to the periods that hold rows at all */
    snprintf(sql, sizeof sql, "SELECT min(t), max(t) FROM rollup_%u", j->step);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(s->db, sql, -1, &lim, NULL);
    int64_t from = ((int64_t)j->from + j->step - 1) / j->step * j->step, to = j->to;
    /* complete periods only: the current hour's row is updated minute by minute */
    int64_t rolled = meta_get(s, "rolled_60");
    if (to > rolled - (int64_t)j->step) to = rolled - (int64_t)j->step;
    if (rc == SQLITE_OK && (rc = sqlite3_step(lim)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        if (sqlite3_column_type(lim, 0) == SQLITE_NULL) {
            to = from - 1; /* no rows at all */
        } else {
            if (sqlite3_column_int64(lim, 0) > from) from = sqlite3_column_int64(lim, 0);
            if (sqlite3_column_int64(lim, 1) < to) to = sqlite3_column_int64(lim, 1);
        }
    }
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
    int nseries = 0;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(ser, 1, j->name, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(ser)) == SQLITE_ROW) {
            const char *labels = (const char *)sqlite3_column_text(ser, 1);
            if (j->source[0]) { /* the source label must match the glob */
                json_t *lj = json_loads(labels, 0, NULL);
                const char *src = json_string_value(json_object_get(lj, "source"));
                bool skip = !src || fnmatch(j->source, src, 0) != 0;
                json_decref(lj);
                if (skip) continue;
            }
            bool open = false;
            int prc = SQLITE_DONE;
            sqlite3_reset(pts);
            sqlite3_bind_int64(pts, 1, sqlite3_column_int64(ser, 0));
            sqlite3_bind_int64(pts, 2, from);
            sqlite3_bind_int64(pts, 3, to);
            sqlite3_bind_int64(pts, 4, j->step);
            while (from <= to && (prc = sqlite3_step(pts)) == SQLITE_ROW) {
                if (!open) {
                    open = true;
                    nseries++;
                    jsonw_obj_open(&w);
                    jsonw_key(&w, "labels");
                    jsonw_raw(&w, labels, strlen(labels));
                    jsonw_kv_str(&w, "kind",
                                 metric_kind_name((metric_kind_t)sqlite3_column_int(ser, 2)));
                    jsonw_key(&w, "points");
                    jsonw_arr_open(&w);
                }
                jsonw_arr_open(&w);
                jsonw_int(&w, sqlite3_column_int64(pts, 0));
                jsonw_int(&w, sqlite3_column_int64(pts, 1));
                for (int c = 2; c <= 5; c++) jsonw_num(&w, sqlite3_column_double(pts, c));
                jsonw_arr_close(&w);
            }
            if (open) {
                jsonw_arr_close(&w);
                jsonw_obj_close(&w);
            }
            if (from <= to && prc != SQLITE_DONE) {
                rc = prc;
                break;
            }
        }
    }
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    buf_putc(&m->body, '\n');
    sqlite3_finalize(ser);
    sqlite3_finalize(pts);
    sqlite3_finalize(lim);
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

/* ---- the thread and the queue ------------------------------------------------------------ */

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
            /* writes first (in one transaction), then the rest in order: an aggregation
             * sees every point queued before it */
            bool writes = s->nretry > 0;
            for (job_t *j = list; j && !writes; j = j->next)
                writes = j->kind == JOB_POINTS || j->kind == JOB_EVENT;
            if (writes) write_batch(s, list);
            for (job_t *j = list; j; j = j->next) {
                if (j->kind == JOB_AGGREGATE) aggregate(s, j->job_id, j->complete_before);
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

/* Copies what the writer committed into the file every CHECKPOINT_MS. PASSIVE: it
 * never waits for, nor blocks, the writer or a reader; what it cannot copy now (a reader
 * still needs it) it copies next time. */
static void ckpt_main(void *arg) {
    store_t *s = arg;
    uv_mutex_lock(&s->mu);
    while (!s->stop) {
        uv_cond_timedwait(&s->ckpt_cv, &s->mu, (uint64_t)CHECKPOINT_MS * 1000000u);
        if (s->stop) break;
        uv_mutex_unlock(&s->mu);
        sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        uv_mutex_lock(&s->mu);
    }
    uv_mutex_unlock(&s->mu);
}

int store_start(store_t *s, const store_hooks_t *hooks) {
    s->hooks = *hooks;
    int rc = uv_thread_create(&s->thread, thread_main, s);
    if (rc) return rc;
    s->started = true;
    /* without its own connection the writer checkpoints after each job instead */
    if (sqlite3_open_v2(s->path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
            SQLITE_OK &&
        uv_thread_create(&s->ckpt_thread, ckpt_main, s) == 0) {
        s->ckpt_started = true;
    } else {
        log_warn("store checkpoints run after each job", "path=%s error=\"%s\"", s->path,
                 s->ckpt_db ? sqlite3_errmsg(s->ckpt_db) : "out of memory");
        sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
    }
    return 0;
}

void store_close(store_t *s) {
    if (!s) return;
    if (s->started) {
        uv_mutex_lock(&s->mu);
        s->stop = true;
        uv_cond_signal(&s->cv);
        uv_cond_signal(&s->ckpt_cv);
        uv_mutex_unlock(&s->mu);
        uv_thread_join(&s->thread);
        if (s->ckpt_started) uv_thread_join(&s->ckpt_thread);
    }
    sqlite3_close(s->ckpt_db);
    while (s->head) {
        job_t *n = s->head->next;
        free_job(s->head);
        s->head = n;
    }
    for (size_t i = 0; i < s->nretry; i++) event_unref(s->retry[i]);
    free(s->retry);
    for (uint32_t i = 0; i < s->sid_cap; i++) skey_unref(s->sids[i].key);
    free(s->sids);
    for (uint32_t i = 0; i < s->nknown; i++) skey_unref(s->info[s->known[i]].key);
    free(s->info);
    free(s->macc);
    free(s->known);
    free(s->touched);
    free(s->enc);
    sqlite3_stmt *sts[] = {s->st_put_second, s->st_get_second, s->st_set_second, s->st_put_series,
                           s->st_minute, s->st_next_t, s->st_put_many[0], s->st_put_many[1],
                           s->st_put_one[0], s->st_put_one[1]};
    for (size_t i = 0; i < sizeof sts / sizeof *sts; i++) sqlite3_finalize(sts[i]);
    for (int k = 0; k < NREFS; k++) {
        sqlite3_finalize(s->st_ref_scan[k]);
        sqlite3_finalize(s->st_ref_one[k]);
    }
    sqlite3_close(s->db); /* the last connection: copies the rest of the WAL in */
    uv_mutex_destroy(&s->mu);
    uv_mutex_destroy(&s->msg_mu);
    uv_cond_destroy(&s->cv);
    uv_cond_destroy(&s->ckpt_cv);
    free(s);
}

void store_put_points(store_t *s, store_point_t *pts, size_t n) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
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

void store_aggregate(store_t *s, const char *job_id, uint32_t complete_before) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) return;
    j->kind = JOB_AGGREGATE;
    snprintf(j->job_id, sizeof j->job_id, "%s", job_id);
    j->complete_before = complete_before;
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
