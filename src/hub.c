#include "hub.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "cluster.h"
#include "config.h"
#include "jsonw.h"
#include "log.h"
#include "procstat.h"
#include "tls.h"
#include "version.h"

#define LISTEN_BACKLOG 4096
/* Batches in flight from the StatsD threads before they hold on and merge locally: a
 * bound on memory when the hub falls behind, with no sample lost. */
#define MAX_PENDING_BATCHES 64

/* ---- ingest batches ------------------------------------------------------------------ */

static void roll_to(hub_t *hub, uint32_t sec, double now);

typedef struct batch_job {
    hub_t *hub;
    agg_batch_t *b;
    double at; /* when it was handed over: decides the second it belongs to */
} batch_job_t;

static void account(hub_t *hub, ingest_transport_t t, const registry_result_t *res) {
    atomic_fetch_add_explicit(&hub->istats.lines[t], res->accepted, memory_order_relaxed);
    for (int r = 0; r < REJECT_REASON_COUNT; r++)
        if (res->rejected[r])
            atomic_fetch_add_explicit(&hub->istats.rejected[r], res->rejected[r],
                                      memory_order_relaxed);
}

static void batch_task(void *arg, int cancelled) {
    batch_job_t *j = arg;
    hub_t *hub = j->hub;
    if (!cancelled) {
        registry_result_t res;
        hub_apply_batch(hub, j->b, j->at, &res);
    }
    atomic_fetch_sub(&hub->batches_pending, 1);
    agg_batch_free(j->b);
    free(j);
}

int hub_submit_batch(hub_t *hub, agg_batch_t *b) {
    batch_job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    j->hub = hub;
    j->b = b;
    j->at = clk_unix();
    int rc = inbox_post(&hub->inbox, batch_task, j);
    if (rc) free(j);
    return rc;
}

static int udp_sink(void *ctx, agg_batch_t *b) { return hub_submit_batch(ctx, b); }

/* Merges b as handed over at `at`: every second that ended before `at` is closed first,
 * however late the hub gets to it (see "the 1 s roll" below). */
static void apply_now(hub_t *hub, const agg_batch_t *b, double at, registry_result_t *res) {
    memset(res, 0, sizeof *res);
    uint32_t sec = (uint32_t)floor(at);
    if (sec > hub->last_roll_sec) roll_to(hub, sec, clk_unix());
    registry_apply(&hub->reg, b, at, res);
    if (res->accepted) stream_changed(&hub->stream);
}

/* ---- the host source ------------------------------------------------------------------
 * Its batches are not ingest: they are applied like the others but counted apart
 * (metricast_host_*), so ingest rates show what senders sent. */
static void host_batch_task(void *arg, int cancelled) {
    batch_job_t *j = arg;
    hub_t *hub = j->hub;
    if (!cancelled) {
        registry_result_t res;
        apply_now(hub, j->b, j->at, &res);
        for (int r = 0; r < REJECT_REASON_COUNT; r++) hub->host_rejected += res.rejected[r];
        sources_seen(&hub->sources, HOST_SOURCE_ID, clk_unix());
    }
    atomic_fetch_sub(&hub->host_pending, 1);
    agg_batch_free(j->b);
    free(j);
}

static int host_sink(void *ctx, agg_batch_t *b) {
    hub_t *hub = ctx;
    batch_job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    j->hub = hub;
    j->b = b;
    j->at = clk_unix();
    int rc = inbox_post(&hub->inbox, host_batch_task, j);
    if (rc) free(j);
    return rc;
}

/* ---- events -------------------------------------------------------------------------- */

typedef struct pending_event {
    struct pending_event *next;
    event_t *e;
    hub_publish_cb cb;
    void *arg;
} pending_event_t;

/* The event is on disk (or the disk failed): now everyone may see it. */
static void release_event(hub_t *hub, event_t *e, int rc, hub_publish_cb cb, void *arg) {
    elog_keep(&hub->events, e);
    /* only this hub's own events go out: one from NATS came from its origin already */
    if (hub->cluster && strcmp(e->origin, hub->hub_id) == 0) cluster_publish_event(hub->cluster, e);
    atomic_fetch_add_explicit(&hub->events_total, 1, memory_order_relaxed);
    for (int i = 0; i < hub->nworkers; i++) {
        /* a worker that cannot take it (shutting down) has no subscribers left */
        if (worker_broadcast_event(&hub->workers[i], event_ref(e)) < 0) event_unref(e);
    }
    if (cb) cb(hub, e, rc, arg);
    event_unref(e);
}

/* store hook: events up to seq are written (rc 0) or failed (rc < 0) */
static void events_done(void *ctx, uint64_t seq, int rc) {
    hub_t *hub = ctx;
    while (hub->pend_head && hub->pend_head->e->seq <= seq) {
        pending_event_t *p = hub->pend_head;
        hub->pend_head = p->next;
        if (!hub->pend_head) hub->pend_tail = NULL;
        release_event(hub, p->e, rc, p->cb, p->arg);
        free(p);
    }
}

/* Clustered: the event's origin (this hub unless it came through NATS), and the cursor of
 * the log just after it, which the frame carries. */
static int stamp_origin(hub_t *hub, event_t *e) {
    if (!e->origin[0]) {
        snprintf(e->origin, sizeof e->origin, "%s", hub->hub_id);
        e->oseq = hub->events.next_seq; /* the seq elog_seal gives it */
        e->oprev = cursor_get(&hub->cvec, hub->hub_id);
    }
    if (cursor_set(&hub->cvec, e->origin, e->oseq) < 0) return -ENOSPC;
    char text[CURSOR_TEXT_MAX];
    cursor_format(&hub->cvec, text, sizeof text);
    free(e->cursor);
    e->cursor = strdup(text);
    return e->cursor ? 0 : -ENOMEM;
}

bool hub_event_covered(const hub_t *hub, const cursor_t *c, const event_t *e) {
    if (!e->origin[0]) return cursor_covers(c, hub->hub_id, e->seq);
    return cursor_covers(c, e->origin, e->oseq);
}

bool hub_cursor_too_old(const hub_t *hub, const cursor_t *c) {
    const event_t *o = elog_get(&hub->events, elog_oldest(&hub->events));
    if (!o) return false;
    if (!o->origin[0] || !o->cursor) return elog_oldest(&hub->events) > 1 &&
                                              !cursor_covers(c, hub->hub_id, o->seq - 1);
    /* before the oldest: its origin's previous event, and whatever the others had reached */
    if (o->oprev && !cursor_covers(c, o->origin, o->oprev)) return true;
    cursor_t before;
    if (cursor_parse(o->cursor, strlen(o->cursor), &before) < 0) return false;
    for (uint32_t i = 0; i < before.n; i++)
        if (strcmp(before.e[i].hub, o->origin) != 0 &&
            !cursor_covers(c, before.e[i].hub, before.e[i].seq))
            return true;
    return false;
}

int hub_publish(hub_t *hub, event_t *e, hub_publish_cb cb, void *arg) {
    int rc = hub->cluster ? stamp_origin(hub, e) : 0;
    if (rc == -ENOSPC) {
        log_error("event not published", "type=%s origin=%s error=\"more than %d hubs\"", e->type,
                  e->origin, CURSOR_MAX_HUBS);
        event_unref(e);
        return -ENOSPC;
    }
    if (rc == 0) rc = elog_seal(&hub->events, e);
    pending_event_t *p = rc == 0 && hub->store ? malloc(sizeof *p) : NULL;
    if (rc || (hub->store && !p)) {
        log_error("event not published", "type=%s error=\"out of memory\"", e->type);
        event_unref(e);
        free(p);
        return -ENOMEM;
    }
    if (!hub->store) { /* no store (tests of the registry alone): visible at once */
        free(p);
        release_event(hub, e, 0, cb, arg);
        return 0;
    }
    if (strcmp(e->origin, hub->hub_id) != 0 && e->origin[0] && !hub->pend_head) {
        /* Another hub's event is on its origin's disk already: this hub's copy only serves
         * its own replays and restarts, and a restart before the write asks the origin for
         * it again (the stored cursor is behind it). So it is released at once — unless
         * events of this hub wait ahead of it, whose seq order it must keep. Saves a
         * store round trip on every cross-hub delivery. */
        free(p);
        store_put_event(hub->store, event_ref(e));
        release_event(hub, e, 0, cb, arg);
        return 0;
    }
    /* kept in seq order: the store commits in that order, and events_done releases a
     * prefix of this list */
    *p = (pending_event_t){NULL, e, cb, arg};
    if (hub->pend_tail)
        hub->pend_tail->next = p;
    else
        hub->pend_head = p;
    hub->pend_tail = p;
    store_put_event(hub->store, event_ref(e));
    return 0;
}

void hub_emit(hub_t *hub, const char *type, const char *payload_json) {
    char rnd[6];
    event_random6(&hub->rng, rnd);
    event_t *e = event_make(type, payload_json, NULL, clk_unix(), rnd);
    if (!e) {
        log_error("built-in event lost", "type=%s error=\"out of memory\"", type);
        return;
    }
    hub_publish(hub, e, NULL, NULL);
}

/* store hook: an aggregation job's lifecycle → metrics.aggregation_* events */
static void aggregation_news(void *ctx, int phase, const char *job_id, uint64_t entries,
                             double duration_ms, const char *error_message,
                             const char *error_type) {
    hub_t *hub = ctx;
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "job_id", job_id);
    if (phase == 0) {
        jsonw_kv_str(&w, "started_at", ts);
    } else if (phase == 1) {
        jsonw_kv_uint(&w, "entries_processed", entries);
        jsonw_kv_num(&w, "duration_ms", (double)(int64_t)(duration_ms * 1000) / 1000);
        jsonw_kv_str(&w, "completed_at", ts);
    } else {
        jsonw_kv_str(&w, "error_message", error_message);
        jsonw_kv_str(&w, "error_type", error_type);
        jsonw_kv_str(&w, "failed_at", ts);
    }
    jsonw_obj_close(&w);
    static const char *const types[] = {"metrics.aggregation_started",
                                        "metrics.aggregation_completed",
                                        "metrics.aggregation_failed"};
    if (!jsonw_error(&w)) hub_emit(hub, types[phase], b.data);
    if (phase == 2)
        log_error("aggregation failed", "job=%s error=\"%s\" type=%s", job_id, error_message,
                  error_type);
    buf_free(&b);
}

/* store hook: trend references for every stored series */
static void trend_refs_news(void *ctx, const store_ref_t *refs, size_t n) {
    hub_t *hub = ctx;
    for (size_t i = 0; i < n; i++) {
        series_t *se = registry_find(&hub->reg, refs[i].key);
        if (!se) continue;
        se->ref_hour = refs[i].hour;
        se->ref_day = refs[i].day;
        se->ref_week = refs[i].week;
    }
}

static void on_aggregate(uv_timer_t *t) {
    hub_t *hub = t->data;
    char job_id[64];
    snprintf(job_id, sizeof job_id, "agg_%lld_%llu", (long long)clk_unix(),
             (unsigned long long)++hub->aggregate_jobs);
    /* every point of the seconds before the last roll is queued ahead of this job */
    store_aggregate(hub->store, job_id, hub->last_roll_sec);
}

/* registry hook: every point a roll appends goes to the store */
static void on_point(void *ctx, const series_t *s, uint32_t t, double v) {
    hub_t *hub = ctx;
    if (hub->npts == hub->pts_cap) {
        /* sized after the previous second's hand-over: one allocation per roll, not a
         * doubling series of copies */
        size_t ncap = hub->pts_cap ? hub->pts_cap * 2
                                   : hub->pts_hint > 1024 ? hub->pts_hint + hub->pts_hint / 8 : 1024;
        store_point_t *np = realloc(hub->pts, ncap * sizeof *np);
        if (!np) return; /* this second of this series is not stored: the ring has it */
        hub->pts = np;
        hub->pts_cap = ncap;
    }
    /* borrowed: the registry outlives the store (hub_close closes the store first) */
    hub->pts[hub->npts++] = (store_point_t){s->key, s->kind, t, v};
}

/* ---- alerts ---------------------------------------------------------------------------- */

/* engine hook: a transition → log line, alert.firing / alert.resolved event, webhook */
static void alert_news(void *ctx, const alert_note_t *n) {
    hub_t *hub = ctx;
    const alert_rule_t *r = n->rule;
    char qs[160], v[32], t[32];
    jsonw_fmt_double(n->value, v);
    jsonw_fmt_double(r->threshold, t);
    log_msg(n->firing ? LOG_WARN : LOG_INFO, n->firing ? "alert firing" : "alert resolved",
            "rule=%s severity=%s metric=%s source=%s value=%s op=%s threshold=%s%s%s", r->name,
            alert_severity_name(r->severity), r->metric,
            log_quote(n->source ? n->source : "", qs, sizeof qs), v, alert_op_name(r->op), t,
            n->firing ? "" : " reason=", n->firing ? "" : n->reason);
    buf_t p = BUF_INIT;
    event_t *e = NULL;
    if (alert_note_payload(n, &p) == 0) {
        char rnd[6];
        event_random6(&hub->rng, rnd);
        e = event_make(n->firing ? "alert.firing" : "alert.resolved", p.data, NULL, clk_unix(),
                       rnd);
    }
    buf_free(&p);
    if (!e) log_error("alert event lost", "rule=%s error=\"out of memory\"", r->name);
    if (r->webhook && hub->webhook) {
        webhook_alert_t a = {n, e ? e->envelope : NULL, hub->external_url};
        buf_t body = BUF_INIT;
        const char *ctype;
        char url[160];
        int rc = webhook_body(r->style, &a, &body, &ctype);
        if (rc == 0)
            rc = webhook_post(hub->webhook, r->webhook, ctype, body.data, body.len,
                              e ? e->id : r->name);
        /* a burst that overflows the queue logs its first drop and its end, not every one */
        if (rc == 0 && hub->webhook_drop_streak) {
            log_info("webhook queue accepting again", "dropped=%llu",
                     (unsigned long long)hub->webhook_drop_streak);
            hub->webhook_drop_streak = 0;
        } else if (rc < 0 && rc != -ESHUTDOWN && hub->webhook_drop_streak++ == 0) {
            log_error("webhook dropped", "rule=%s url=%s error=\"%s\" note=\"further drops are "
                      "counted in metricast_webhook_dropped_total\"", r->name,
                      alert_url_redacted(r->webhook, url, sizeof url),
                      rc == -ENOBUFS ? "queue full" : strerror(-rc));
        }
        buf_free(&body);
    }
    if (e) hub_publish(hub, e, NULL, NULL);
}

typedef struct crit_fill {
    hub_t *hub;
    int n;
    unsigned more;
} crit_fill_t;

static void crit_one(void *ctx, const alert_rule_t *r, const alert_inst_t *first) {
    crit_fill_t *f = ctx;
    if (f->n == HEALTH_MAX_ALERTS) {
        f->more++;
        return;
    }
    health_alert_t *a = &f->hub->crit[f->n++];
    snprintf(a->rule, sizeof a->rule, "%s", r->name);
    a->firing = r->nfiring;
    a->detail[0] = '\0';
    if (first) {
        char v[32], t[32], since[CLK_ISO_LEN];
        jsonw_fmt_double(first->value, v);
        jsonw_fmt_double(r->threshold, t);
        clk_iso8601(first->firing_since, since);
        snprintf(a->detail, sizeof a->detail, "%s%s%s = %s %s %s since %s", r->metric,
                 first->source ? " source=" : "", first->source ? first->source : "", v,
                 alert_op_name(r->op), t, since);
    }
}

/* Copies the firing critical rules for health when they changed since the last copy. */
static void refresh_health_alerts(hub_t *hub) {
    if (hub->alerts.critical_version == hub->crit_version_shown || !hub->health_mu_ready) return;
    hub->crit_version_shown = hub->alerts.critical_version;
    uv_mutex_lock(&hub->health_mu);
    crit_fill_t f = {hub, 0, 0};
    alert_engine_each_critical(&hub->alerts, crit_one, &f);
    hub->ncrit = f.n;
    hub->crit_more = f.more;
    uv_mutex_unlock(&hub->health_mu);
}

void hub_on_tick(hub_t *hub) {
    alert_engine_eval(&hub->alerts, &hub->reg, clk_unix());
    refresh_health_alerts(hub);
}

int hub_reload_alerts(hub_t *hub, const config_t *next, char err[ALERT_ERR_LEN],
                      alert_reload_t *out) {
    alert_ruleset_t rs;
    int rc = alert_rules_parse(next, &rs, err);
    if (rc < 0) return rc;
    alert_engine_set_rules(&hub->alerts, &rs, clk_unix(), out);
    refresh_health_alerts(hub);
    return 0;
}

/* The periodic report: one logfmt line of what an operator checks first. */
static void on_report(uv_timer_t *t) {
    hub_t *hub = t->data;
    hub_self_t s;
    hub_self_snapshot(hub, &s);
    log_info("report", "subscribers=%llu ws_connections=%llu connections=%llu sources_online=%llu "
             "sources=%u series=%llu ingest_rate=%.1f ingest_total=%llu rejected_total=%llu "
             "drops_total=%llu drop_rate=%.1f drops_1m=%llu events_total=%llu cpu_percent=%.1f "
             "rss_bytes=%llu loop_lag_ms=%.1f alerts_firing=%llu alerts_pending=%llu "
             "webhook_sent=%llu webhook_failed=%llu webhook_queued=%llu",
             (unsigned long long)s.ws_subscribers, (unsigned long long)s.ws_connections,
             (unsigned long long)s.connections, (unsigned long long)s.sources_online,
             hub->sources.n, (unsigned long long)s.series, s.lines_rate,
             (unsigned long long)s.lines_total, (unsigned long long)s.rejected_total,
             (unsigned long long)s.dropped_total, s.dropped_rate,
             (unsigned long long)atomic_load(&hub->drops_1m), (unsigned long long)s.events_total,
             s.cpu_percent, (unsigned long long)s.proc.rss_bytes, s.loop_lag_max_s * 1e3,
             (unsigned long long)s.alerts_firing, (unsigned long long)s.alerts_pending,
             (unsigned long long)s.webhook_sent, (unsigned long long)s.webhook_failed,
             (unsigned long long)s.webhook_queued);
}

/* ---- calls from workers -------------------------------------------------------------- */

struct hub_call_job {
    hub_t *hub;
    worker_t *w;
    hub_call_fn fn;
    hub_done_fn done;
    void *arg;
};

static void call_on_worker(void *arg, int cancelled) {
    hub_call_t *j = arg;
    j->done(j->arg, cancelled);
    free(j);
}

void hub_call_finish(hub_call_t *j) {
    if (inbox_post(&j->w->inbox, call_on_worker, j) < 0) {
        j->done(j->arg, 1);
        free(j);
    }
}

static void call_on_hub(void *arg, int cancelled) {
    hub_call_t *j = arg;
    if (cancelled) {
        j->done(j->arg, 1);
        free(j);
        return;
    }
    if (j->fn(j->hub, j->arg, j) == HUB_CALL_DONE) hub_call_finish(j);
}

int hub_call(hub_t *hub, worker_t *w, hub_call_fn fn, hub_done_fn done, void *arg) {
    hub_call_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    *j = (hub_call_t){hub, w, fn, done, arg};
    int rc = inbox_post(&hub->inbox, call_on_hub, j);
    if (rc) free(j);
    return rc;
}

/* ---- the 1 s roll --------------------------------------------------------------------
 * Which second a sample belongs to is decided by when it was handed to the hub (a batch's
 * `at`), not by when the hub gets to merge it: the inbox can be far behind the wall
 * clock while the hub is busy, and merging by the clock of the moment then either stores
 * a sample under the next second or closes two seconds in one (one of them left without
 * a point). So a batch handed over after the end of second S first closes S (and every
 * second before it that is still open), and the timer closes seconds only through the
 * inbox, behind every batch handed over before it fired. */

/* Delay until just past the wall-clock second after `sec`. libuv timers run on the
 * loop's cached millisecond clock, so they may fire a millisecond or two early against
 * the wall clock: on_roll checks, and waits again if so. */
static uint64_t ms_until_after(uint32_t sec) {
    double d = ((double)sec + 1.0 - clk_unix()) * 1000.0;
    return d < 0 ? 0 : (uint64_t)d + 2;
}

/* Seconds closed one by one when several are due at once; beyond, the ones in between
 * had no samples (nothing handed over in them) and are skipped. */
#define MAX_ROLLS_AT_ONCE 5

static void on_roll(uv_timer_t *t);

/* Closes the interval that ends at `boundary`: its points carry boundary - 1. */
static void roll_once(hub_t *hub, uint32_t boundary) {
    hub->last_roll_sec = boundary;
    registry_roll(&hub->reg, boundary);
    if (hub->npts && hub->store) {
        store_put_points(hub->store, hub->pts, hub->npts);
        hub->pts_hint = hub->npts;
        hub->pts = NULL;
        hub->npts = hub->pts_cap = 0;
    }
}

/* Closes every second up to the boundary `sec`, then the summary's rates over them, and
 * re-arms the timer for the next boundary. */
static void roll_to(hub_t *hub, uint32_t sec, double now) {
    if (sec <= hub->last_roll_sec) return;
    uint32_t closed = sec - hub->last_roll_sec;
    if (closed > HUB_DROP_WINDOW + 1) closed = HUB_DROP_WINDOW + 1;
    if (sec - hub->last_roll_sec > MAX_ROLLS_AT_ONCE) {
        /* a clock step or a long stall: close the open second and the one after it
         * (rates and set sizes drop to 0), the rest held nothing */
        roll_once(hub, hub->last_roll_sec + 1);
        roll_once(hub, hub->last_roll_sec + 1);
        hub->last_roll_sec = sec - 1;
    }
    while (hub->last_roll_sec < sec) roll_once(hub, hub->last_roll_sec + 1);

    /* rates for the summary, over the seconds just closed */
    uint64_t lines = 0, rejected = 0, dropped = 0;
    for (int i = 0; i < INGEST_TRANSPORT_COUNT; i++) lines += atomic_load(&hub->istats.lines[i]);
    for (int i = 1; i < REJECT_REASON_COUNT; i++) rejected += atomic_load(&hub->istats.rejected[i]);
    for (int i = 0; i < DROP_REASON_COUNT; i++) dropped += atomic_load(&hub->istats.dropped[i]);
    procstat_t ps;
    procstat_read(&ps);
    hub->proc = ps;
    double dt = now - hub->prev_roll_unix;
    if (hub->prev_roll_unix > 0 && dt > 0) {
        hub->lines_rate = (double)(lines - hub->prev_lines) / dt;
        hub->rejected_rate = (double)(rejected - hub->prev_rejected) / dt;
        hub->dropped_rate = (double)(dropped - hub->prev_dropped) / dt;
        hub->cpu_percent = (ps.cpu_seconds - hub->prev_cpu) / dt * 100.0;
    }
    hub->prev_lines = lines, hub->prev_rejected = rejected, hub->prev_dropped = dropped;
    /* the last minute's drops for health: totals now against HUB_DROP_WINDOW seconds ago
     * (one slot per second closed, so seconds closed together still count as seconds) */
    for (uint32_t k = 0; k < closed; k++) {
        hub->win_lines[hub->win_pos] = lines;
        hub->win_drops[hub->win_pos] = dropped;
        uint32_t oldest = hub->win_n == HUB_DROP_WINDOW + 1
                              ? (hub->win_pos + 1) % (HUB_DROP_WINDOW + 1)
                              : 0;
        if (hub->win_n < HUB_DROP_WINDOW + 1) hub->win_n++;
        atomic_store(&hub->drops_1m, dropped - hub->win_drops[oldest]);
        atomic_store(&hub->accepted_1m, lines - hub->win_lines[oldest]);
        hub->win_pos = (hub->win_pos + 1) % (HUB_DROP_WINDOW + 1);
    }
    hub->prev_cpu = ps.cpu_seconds;
    hub->prev_roll_unix = now;
    if (!hub->stopping) uv_timer_start(&hub->roll_timer, on_roll, ms_until_after(sec), 0);
}

typedef struct roll_job {
    hub_t *hub;
    double at;
} roll_job_t;

static void roll_task(void *arg, int cancelled) {
    roll_job_t *j = arg;
    if (!cancelled) roll_to(j->hub, (uint32_t)floor(j->at), clk_unix());
    free(j);
}

static void on_roll(uv_timer_t *t) {
    hub_t *hub = t->data;
    double now = clk_unix();
    uint32_t sec = (uint32_t)floor(now);
    if (sec <= hub->last_roll_sec) { /* early (or a second already closed by a batch) */
        uv_timer_start(&hub->roll_timer, on_roll, ms_until_after(hub->last_roll_sec), 0);
        return;
    }
    /* behind the batches already in the inbox: those handed over before `now` are
     * merged into their own seconds first */
    roll_job_t *j = malloc(sizeof *j);
    if (j) *j = (roll_job_t){hub, now};
    if (!j || inbox_post(&hub->inbox, roll_task, j) < 0) {
        free(j);
        roll_to(hub, sec, now);
        return;
    }
    uv_timer_start(&hub->roll_timer, on_roll, ms_until_after(sec), 0);
}

void hub_apply_batch(hub_t *hub, const agg_batch_t *b, double at, registry_result_t *res) {
    apply_now(hub, b, at, res);
    account(hub, b->transport, res);
    if (hub->cluster) cluster_publish_batch(hub->cluster, b);
}

void hub_apply_remote_batch(hub_t *hub, const agg_batch_t *b, registry_result_t *res) {
    /* this hub's clock decides the second: another hub's clock may be ahead of it */
    apply_now(hub, b, clk_unix(), res);
}

void hub_sources_changed(hub_t *hub) {
    if (hub->cluster) cluster_sources_changed(hub->cluster);
}

void hub_self_snapshot(hub_t *hub, hub_self_t *o) {
    memset(o, 0, sizeof *o);
    uint64_t now = uv_hrtime();
    o->version = MC_VERSION;
    o->uptime_s = (double)(now - hub->started_ns) / 1e9;
    o->tls_on = hub->tls != NULL;
    if (hub->tls) o->tls_cert_not_after = tls_server_not_after(hub->tls);
    for (int i = 0; i < INGEST_TRANSPORT_COUNT; i++) {
        o->lines[i] = atomic_load(&hub->istats.lines[i]);
        o->lines_total += o->lines[i];
    }
    for (int i = 0; i < REJECT_REASON_COUNT; i++) {
        o->rejected[i] = atomic_load(&hub->istats.rejected[i]);
        if (i != STATSD_OK && i != STATSD_EMPTY) o->rejected_total += o->rejected[i];
    }
    for (int i = 0; i < DROP_REASON_COUNT; i++) {
        o->dropped[i] = atomic_load(&hub->istats.dropped[i]);
        o->dropped_total += o->dropped[i];
    }
    o->lines_rate = hub->lines_rate;
    o->rejected_rate = hub->rejected_rate;
    o->dropped_rate = hub->dropped_rate;
    o->datagrams = atomic_load(&hub->istats.datagrams);
    o->udp_bytes = atomic_load(&hub->istats.udp_bytes);
    o->series = hub->reg.n;
    o->families = hub->reg.nfam;
    o->nloops = 1;
    o->loop_lag_s[0] = loop_lag_seconds(&hub->lag, now);
    o->loop_lag_max_s = o->loop_lag_s[0];
    for (int i = 0; i < hub->nworkers && o->nloops < SELF_MAX_LOOPS; i++) {
        worker_t *w = &hub->workers[i];
        o->connections += atomic_load(&w->stats.connections);
        o->ws_connections += atomic_load(&w->stats.ws_connections);
        o->http_requests += atomic_load(&w->stats.http_requests_total);
        o->http_errors += atomic_load(&w->stats.http_errors_total);
        o->ws_sent += atomic_load(&w->stats.ws_sent_total);
        o->ws_dropped += atomic_load(&w->stats.ws_dropped_total);
        o->ws_subscribers += atomic_load(&w->stats.ws_subscribers);
        for (int k = 0; k < 2; k++) o->tls_handshakes[k] += atomic_load(&w->stats.tls_handshakes[k]);
        for (int k = 0; k < TLS_FAIL_COUNT; k++)
            o->tls_failures[k] += atomic_load(&w->stats.tls_failures[k]);
        o->tls_errors += atomic_load(&w->stats.tls_errors_total);
        double fill = (double)atomic_load(&w->stats.ws_worst_fill_ppm) / 1e6;
        if (fill > o->ws_fill_ratio) o->ws_fill_ratio = fill;
        double l = loop_lag_seconds(&w->lag, now);
        o->loop_conns[o->nloops] = atomic_load(&w->stats.connections);
        o->handed_over += atomic_load(&w->stats.handed_over_total);
        o->loop_lag_s[o->nloops++] = l;
        if (l > o->loop_lag_max_s) o->loop_lag_max_s = l;
    }
    o->events_total = atomic_load(&hub->events_total);
    o->store_write_errors = store_write_errors(hub->store);
    o->store_points_dropped = store_points_dropped(hub->store);
    o->store_bad_rows = store_bad_rows(hub->store);
    o->sources_online = hub->sources.online;
    o->proc = hub->proc;
    if (o->proc.start_time == 0) procstat_read(&o->proc); /* before the first roll */
    o->cpu_percent = hub->cpu_percent;
    alert_counts_t ac;
    alert_engine_counts(&hub->alerts, &ac);
    o->alert_rules = ac.rules;
    o->alerts_pending = ac.pending;
    o->alerts_firing = ac.firing;
    o->alerts_fired_total = hub->alerts.fired_total;
    webhook_counts_t wc;
    webhook_counts(hub->webhook, &wc);
    o->webhook_sent = wc.sent;
    o->webhook_failed = wc.failed;
    o->webhook_retried = wc.retried;
    o->webhook_dropped = wc.dropped;
    o->webhook_queued = wc.pending;
    for (int i = 0; i < DENY_COUNT; i++) o->auth_denied[i] = atomic_load(&hub->access.denied[i]);
    for (int i = 0; i < LIMIT_COUNT; i++) o->limit_hits[i] = atomic_load(&hub->limits.hits[i]);
    /* the registry counts its refusals as rejected samples; the limit family shows them too */
    o->limit_hits[LIMIT_SERIES] = o->rejected[REG_REJECT_SERIES_LIMIT];
    if (hub->cluster) {
        cluster_stats_t *cs = cluster_stats(hub->cluster);
        o->nats_on = true;
        o->hub_id = hub->hub_id;
        o->nats_in = atomic_load(&cs->in);
        o->nats_out = atomic_load(&cs->out);
        for (int r = 0; r < CLUSTER_F_COUNT; r++) o->nats_failed[r] = atomic_load(&cs->failed[r]);
        o->nats_reconnects = atomic_load(&cs->reconnects);
        o->nats_connected = atomic_load(&cs->connected);
        o->nats_peers = atomic_load(&cs->peers);
    }
    if (hub->host) {
        host_stats_t *hs = host_stats(hub->host);
        o->host_on = true;
        for (int f = 0; f < HOST_F_COUNT; f++) o->host_read_errors[f] = atomic_load(&hs->read_errors[f]);
        o->host_collections = atomic_load(&hs->collections);
        o->host_samples = atomic_load(&hs->samples);
        o->host_rejected = atomic_load(&hs->rejected) + hub->host_rejected;
        o->host_statfs_timeouts = atomic_load(&hs->statfs_timeouts);
        o->host_cpu_seconds = (double)atomic_load(&hs->cpu_ns) / 1e9;
    }
}

static int bind_listener(const cfg_addr_t *a, int *fd_out, char *actual, size_t actual_len) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t slen;
    int family;
    if (strchr(a->host, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (uv_ip6_addr(a->host, a->port, in6)) return -EINVAL;
        family = AF_INET6;
        slen = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        if (uv_ip4_addr(a->host, a->port, in)) return -EINVAL;
        family = AF_INET;
        slen = sizeof *in;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    /* SO_REUSEADDR only skips TIME_WAIT leftovers of a fixed port (a restart); it never
     * lets two servers share the port on Linux. A kernel-chosen port (0) needs none. */
    if (a->port != 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    cfg_addr_t real = *a;
    if (getsockname(fd, (struct sockaddr *)&got, &glen) == 0)
        real.port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port);
    config_addr_str(&real, actual, actual_len);
    *fd_out = fd;
    return 0;
}

static void on_probe(uv_timer_t *t) {
    hub_t *hub = t->data;
    int rc = health_probe_dir(hub->cfg->data_dir);
    int prev = atomic_exchange(&hub->data_dir_errno, -rc);
    if (rc && !prev)
        log_error("data directory not writable", "dir=%s error=\"%s\"", hub->cfg->data_dir,
                  strerror(-rc));
    else if (!rc && prev)
        log_info("data directory writable again", "dir=%s", hub->cfg->data_dir);
}

/* The last step of a stop: with the handles closed, uv_run in hub_run returns. */
static void close_handles(hub_t *hub) {
    uv_close((uv_handle_t *)&hub->sigint, NULL);
    uv_close((uv_handle_t *)&hub->sigterm, NULL);
    uv_close((uv_handle_t *)&hub->probe_timer, NULL);
    uv_close((uv_handle_t *)&hub->roll_timer, NULL);
    uv_close((uv_handle_t *)&hub->aggregate_timer, NULL);
    uv_close((uv_handle_t *)&hub->report_timer, NULL);
    uv_close((uv_handle_t *)&hub->prestop_timer, NULL);
    uv_close((uv_handle_t *)&hub->lag.timer, NULL);
    if (hub->cluster) cluster_stop(hub->cluster);
    stream_close(&hub->stream);
    inbox_close(&hub->inbox, NULL);
}

/* The second half of a stop: ingest threads, then the workers. */
static void stop_workers(hub_t *hub) {
    /* the StatsD threads hand over what they hold; the inbox applies it before closing */
    ingest_udp_close(hub->udp);
    hub->udp = NULL;
    for (int i = 0; i < hub->workers_started; i++) worker_request_stop(&hub->workers[i]);
    if (hub->workers_started == 0) close_handles(hub);
}

static void prestop_over(hub_t *hub, bool timed_out) {
    if (!hub->prestop_waiting) return;
    hub->prestop_waiting = false;
    uv_timer_stop(&hub->prestop_timer);
    if (timed_out)
        log_warn("shutdown: pre-stop work did not finish in time; stopping anyway", "waited_ms=%d",
                 HUB_PRESTOP_MS);
    stop_workers(hub);
}

static void on_prestop_timeout(uv_timer_t *t) { prestop_over(t->data, true); }

static void prestop_done_task(void *arg, int cancelled) {
    if (!cancelled) prestop_over(arg, false);
}

void hub_set_prestop(hub_t *hub, void (*fn)(void *ctx), void *ctx) {
    hub->prestop_fn = fn;
    hub->prestop_ctx = ctx;
}

void hub_prestop_done(hub_t *hub) {
    if (inbox_post(&hub->inbox, prestop_done_task, hub) < 0)
        log_warn("pre-stop completion not delivered", "reason=%s", "hub_closing");
}

static void begin_stop(hub_t *hub, const char *why) {
    if (hub->stopping) return;
    hub->stopping = true;
    log_info("shutting down", "signal=%s", why);
    uv_timer_stop(&hub->probe_timer);
    uv_timer_stop(&hub->roll_timer);
    uv_timer_stop(&hub->stream.tick);
    uv_timer_stop(&hub->stream.change);
    uv_timer_stop(&hub->aggregate_timer);
    uv_timer_stop(&hub->report_timer);
    if (hub->prestop_fn && hub->workers_started > 0) {
        hub->prestop_waiting = true;
        uv_timer_start(&hub->prestop_timer, on_prestop_timeout, HUB_PRESTOP_MS, 0);
        hub->prestop_fn(hub->prestop_ctx);
        return;
    }
    stop_workers(hub);
}

static void on_signal(uv_signal_t *s, int signum) {
    begin_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void worker_done_task(void *arg, int cancelled) {
    worker_t *w = arg;
    hub_t *hub = w->hub;
    if (cancelled) return;
    hub->workers_done++;
    if (hub->workers_done < hub->workers_started) return;
    for (int i = 0; i < hub->workers_started; i++) worker_join(&hub->workers[i]);
    close_handles(hub);
}

void hub_worker_done(hub_t *hub, worker_t *w) {
    if (inbox_post(&hub->inbox, worker_done_task, w) < 0)
        log_error("worker stop not delivered", "worker=%d", w->id);
}

/* Descriptors kept for the listener, loops, log, store and StatsD sockets: the rest of
 * the descriptor limit is for connections. */
#define FD_RESERVE 64

static int64_t default_max_connections(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    return rl.rlim_cur > FD_RESERVE * 2 ? (int64_t)rl.rlim_cur - FD_RESERVE
                                        : (int64_t)rl.rlim_cur / 2;
}

/* The CPUs this process may run on (its affinity mask: taskset, a cgroup cpuset), one
 * per worker in turn; none when there is only one. */
static void assign_cpus(hub_t *hub) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int cpus[CPU_SETSIZE], n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
    if (n < 2) return;
    for (int i = 0; i < hub->nworkers; i++) hub->workers[i].cpu = cpus[i % n];
}

int hub_open(hub_t *hub, const config_t *cfg, char err[HUB_ERR_LEN]) {
    memset(hub, 0, sizeof *hub);
    hub->cfg = cfg;
    hub->listen_fd = -1;
    hub->started_unix = clk_unix();
    hub->started_ns = uv_hrtime();
    atomic_init(&hub->data_dir_errno, 0);

    char perr[AUTH_ERR_LEN];
    if (auth_build(cfg, &hub->auth, perr) != 0) {
        snprintf(err, HUB_ERR_LEN, "%.*s", HUB_ERR_LEN - 1, perr);
        return -1;
    }
    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        char terr[TLS_ERR_LEN];
        if (tls_server_open(&hub->tls, cfg->tls_cert, cfg->tls_key, terr) != 0) {
            snprintf(err, HUB_ERR_LEN, "%s", terr);
            return -1;
        }
    }
    int64_t maxc = cfg->max_connections ? cfg->max_connections : default_max_connections();
    if (iplimits_init(&hub->iplim, maxc, cfg->max_connections_per_ip,
                      cfg->max_connection_rate_per_ip) != 0) {
        snprintf(err, HUB_ERR_LEN, "start-up failed: cannot create a mutex");
        return -1;
    }
    hub->iplim_ready = true;

    char want[80];
    config_addr_str(&cfg->listen, want, sizeof want);
    int rc = bind_listener(&cfg->listen, &hub->listen_fd, hub->listen_addr,
                           sizeof hub->listen_addr);
    if (rc) {
        snprintf(err, HUB_ERR_LEN, "--listen %s: %s", want, strerror(-rc));
        return -1;
    }

    rc = uv_loop_init(&hub->loop);
    if (rc) goto fail_uv;
    hub->loop.data = hub;
    if ((rc = inbox_init(&hub->inbox, &hub->loop))) goto fail_uv;
    if ((rc = uv_signal_init(&hub->loop, &hub->sigint))) goto fail_uv;
    if ((rc = uv_signal_init(&hub->loop, &hub->sigterm))) goto fail_uv;
    if ((rc = uv_timer_init(&hub->loop, &hub->probe_timer))) goto fail_uv;
    if ((rc = uv_timer_init(&hub->loop, &hub->roll_timer))) goto fail_uv;
    if ((rc = loop_lag_start(&hub->lag, &hub->loop))) goto fail_uv;
    hub->sigint.data = hub->sigterm.data = hub->probe_timer.data = hub;
    hub->roll_timer.data = hub;
    registry_init(&hub->reg, (uint32_t)cfg->max_series, (uint32_t)cfg->history_points);
    hub->reg.trend_deadband = cfg->trend_deadband;
    if (elog_init(&hub->events, cfg->events_retain) < 0) {
        rc = UV_ENOMEM;
        goto fail_uv;
    }
    hub->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    sources_init(&hub->sources);
    if ((rc = stream_init(&hub->stream, hub, &hub->reg, &hub->loop, cfg->tick))) goto fail_uv;
    if ((rc = uv_timer_init(&hub->loop, &hub->aggregate_timer))) goto fail_uv;
    hub->aggregate_timer.data = hub;
    if ((rc = uv_timer_init(&hub->loop, &hub->report_timer))) goto fail_uv;
    hub->report_timer.data = hub;
    if ((rc = uv_mutex_init(&hub->health_mu))) goto fail_uv;
    hub->health_mu_ready = true;
    if (alert_engine_init(&hub->alerts, cfg->alerts_history, alert_news, hub) < 0) {
        rc = UV_ENOMEM;
        goto fail_uv;
    }
    {
        alert_ruleset_t rs;
        char aerr[ALERT_ERR_LEN];
        if (alert_rules_parse(cfg, &rs, aerr) < 0) {
            snprintf(err, HUB_ERR_LEN, "%s", aerr);
            return -1;
        }
        alert_engine_set_rules(&hub->alerts, &rs, clk_unix(), NULL);
        hub->crit_version_shown = hub->alerts.critical_version; /* nothing fires yet */
    }
    snprintf(hub->external_url, sizeof hub->external_url, "%s://%s", hub->tls ? "https" : "http",
             hub->listen_addr);
    hub->win_n = hub->win_pos = 1; /* slot 0: the totals at start, all zero */
    {
        char ua[64], werr[160];
        snprintf(ua, sizeof ua, "metricast/%s", MC_VERSION);
        webhook_opts_t wo = {cfg->webhook_timeout, cfg->webhook_retries, cfg->webhook_backoff,
                             cfg->webhook_backoff_max, cfg->webhook_queue, ua};
        if (webhook_open(&hub->webhook, &wo, werr, sizeof werr) < 0) {
            snprintf(err, HUB_ERR_LEN, "start-up failed: %s", werr);
            hub->webhook = NULL;
            return -1;
        }
    }
    if ((rc = uv_timer_init(&hub->loop, &hub->prestop_timer))) goto fail_uv;
    hub->prestop_timer.data = hub;

    store_limits_t lim = {(uint32_t)cfg->raw_retention, (uint32_t)cfg->r60_retention,
                          (uint32_t)cfg->r3600_retention, cfg->events_keep};
    char serr[STORE_ERR_LEN];
    if (store_open(&hub->store, cfg->data_dir, cfg->reset_store, &lim, serr) < 0) {
        snprintf(err, HUB_ERR_LEN, "--data %.100s: %.300s; refusing to overwrite it (move it "
                                   "away, or start with --reset-store)", cfg->data_dir, serr);
        hub->store = NULL;
        return -1;
    }
    if (store_load(hub->store, &hub->events, &hub->reg, (uint32_t)cfg->history_points, serr) < 0) {
        snprintf(err, HUB_ERR_LEN, "--data %.100s: %.380s", cfg->data_dir, serr);
        return -1;
    }
    hub->reg.on_point = on_point;
    hub->reg.point_ctx = hub;

    if (cfg->hub_id[0]) {
        snprintf(hub->hub_id, sizeof hub->hub_id, "%s", cfg->hub_id);
    } else {
        const char *colon = strrchr(hub->listen_addr, ':');
        cluster_default_id(colon ? atoi(colon + 1) : cfg->listen.port, hub->hub_id);
    }
    cursor_init(&hub->cvec);
    /* where the log stands, per origin: from the newest retained event that knows */
    for (uint64_t q = elog_latest(&hub->events); q >= elog_oldest(&hub->events) && q > 0; q--) {
        const event_t *e = elog_get(&hub->events, q);
        if (e && e->cursor) {
            cursor_parse(e->cursor, strlen(e->cursor), &hub->cvec);
            break;
        }
    }
    if (hub->cvec.n == 0 && elog_latest(&hub->events)) /* events from before clustering: */
        cursor_set(&hub->cvec, hub->hub_id, elog_latest(&hub->events)); /* own, oseq = seq */
    if (cfg->nats_url[0]) {
        char cerr[HUB_ERR_LEN];
        if (cluster_open(&hub->cluster, hub, cfg, hub->hub_id, cerr, sizeof cerr) < 0) {
            snprintf(err, HUB_ERR_LEN, "%s", cerr);
            return -1;
        }
    }

    if (!cfg->statsd.off) {
        int nt = cfg->statsd_threads > 0 ? cfg->statsd_threads : (int)uv_available_parallelism();
        int urc = ingest_udp_open(&hub->udp, &cfg->statsd, nt, cfg->statsd_rcvbuf,
                                  cfg->statsd_flush_interval, &hub->istats,
                                  &hub->batches_pending, MAX_PENDING_BATCHES, udp_sink, hub,
                                  hub->statsd_addr, sizeof hub->statsd_addr, err, HUB_ERR_LEN);
        if (urc) {
            hub->udp = NULL;
            return -1;
        }
        char why[300];
        if (ingest_udp_set_allow(hub->udp, cfg->statsd_allow, why, sizeof why) < 0) {
            snprintf(err, HUB_ERR_LEN, "--statsd-allow: %s", why);
            return -1;
        }
    } else {
        snprintf(hub->statsd_addr, sizeof hub->statsd_addr, "off");
    }

    if (cfg->host_metrics) {
        host_opts_t ho = {cfg->host_proc, cfg->host_sys, cfg->debug_host_statfs_stall};
        if (host_open(&hub->host, &ho, host_sink, hub, &hub->host_pending, err, HUB_ERR_LEN) < 0)
            return -1;
        hub->reg.family_help = host_family_help;
    }

    int n = cfg->threads;
    if (n <= 0) n = (int)uv_available_parallelism();
    if (n < 1) n = 1;
    hub->workers = calloc((size_t)n, sizeof *hub->workers);
    if (!hub->workers) {
        rc = UV_ENOMEM;
        goto fail_uv;
    }
    hub->nworkers = n;
    for (int i = 0; i < n; i++) {
        if ((rc = worker_init(&hub->workers[i], i, hub, cfg, hub->listen_fd))) {
            hub->nworkers = i; /* the ones before are initialised */
            goto fail_uv;
        }
        hub->workers[i].auth = auth_ref(hub->auth);
    }
    if (cfg->pin_threads) assign_cpus(hub);
    return 0;
fail_uv:
    snprintf(err, HUB_ERR_LEN, "start-up failed: %s", uv_strerror(rc));
    return -1;
}

int hub_run(hub_t *hub) {
    const config_t *cfg = hub->cfg;
    uv_signal_start(&hub->sigint, on_signal, SIGINT);
    uv_signal_start(&hub->sigterm, on_signal, SIGTERM);
    on_probe(&hub->probe_timer);
    uint64_t probe_ms = (uint64_t)(cfg->health_interval * 1000);
    uv_timer_start(&hub->probe_timer, on_probe, probe_ms ? probe_ms : 1, probe_ms ? probe_ms : 1);

    for (int i = 0; i < hub->nworkers; i++) {
        int rc = worker_start(&hub->workers[i]);
        if (rc) {
            log_error("cannot start worker thread", "worker=%d error=\"%s\"", i, uv_strerror(rc));
            begin_stop(hub, "start-up failure");
            break;
        }
        hub->workers_started++;
    }
    hub->last_roll_sec = (uint32_t)floor(clk_unix());
    uv_timer_start(&hub->roll_timer, on_roll, ms_until_after(hub->last_roll_sec), 0);
    stream_start(&hub->stream);
    store_hooks_t hooks = {&hub->inbox, hub, events_done, aggregation_news, trend_refs_news};
    if (store_start(hub->store, &hooks) < 0) {
        log_error("cannot start the store thread", "error=\"%s\"", "thread");
        begin_stop(hub, "start-up failure");
    }
    if (hub->host && !hub->stopping) {
        /* the built-in source: online while the hub runs, seen at every collection */
        sources_builtin(&hub->sources, HOST_SOURCE_ID, host_attrs_json(hub->host), clk_unix());
        int rc = host_start(hub->host);
        if (rc) { /* not fatal: the hub runs without host metrics */
            log_error("cannot start the host metrics thread", "error=\"%s\"", uv_strerror(rc));
            host_close(hub->host);
            hub->host = NULL;
        } else {
            log_info("host metrics on", "proc=%s sys=%s", cfg->host_proc, cfg->host_sys);
        }
    }
    if (hub->cluster && !hub->stopping) cluster_start(hub->cluster);
    uint64_t agg_ms = (uint64_t)(cfg->aggregate_every * 1000);
    uv_timer_start(&hub->aggregate_timer, on_aggregate, agg_ms, agg_ms);
    uint64_t report_ms = (uint64_t)(cfg->report_interval * 1000);
    if (report_ms) uv_timer_start(&hub->report_timer, on_report, report_ms, report_ms);
    if (hub->udp && !hub->stopping) {
        int rc = ingest_udp_start(hub->udp);
        if (rc) {
            log_error("cannot start statsd threads", "error=\"%s\"", uv_strerror(rc));
            begin_stop(hub, "start-up failure");
        } else {
            log_info("statsd listening", "addr=%s threads=%d rcvbuf=%zu", hub->statsd_addr,
                     cfg->statsd_threads > 0 ? cfg->statsd_threads
                                             : (int)uv_available_parallelism(),
                     cfg->statsd_rcvbuf);
            bool loopback = strncmp(cfg->statsd.host, "127.", 4) == 0 ||
                            strcmp(cfg->statsd.host, "::1") == 0;
            if (!loopback && !cfg->statsd_allow[0])
                log_warn("statsd accepts datagrams from anyone who can reach it",
                         "addr=%s hint=\"list your senders' networks in [statsd] allow_from "
                         "(--statsd-allow), or bind to loopback\"", hub->statsd_addr);
        }
    }
    log_info("http listening", "addr=%s scheme=%s threads=%d data=%s tick=%g version=%s",
             hub->listen_addr, hub->tls ? "https" : "http", hub->nworkers, cfg->data_dir,
             cfg->tick, MC_VERSION);
    if (hub->tls) {
        char desc[300], q[1100];
        tls_server_describe(hub->tls, desc, sizeof desc);
        log_info("tls enabled", "cert=%s %s min_version=TLSv1.2",
                 log_quote(cfg->tls_cert, q, sizeof q), desc);
    }
    if (hub->alerts.n) log_info("alert rules loaded", "rules=%zu", hub->alerts.n);
    log_info("ready", "startup_ms=%.1f", (double)(uv_hrtime() - hub->started_ns) / 1e6);

    uv_run(&hub->loop, UV_RUN_DEFAULT);
    log_info("stopped", "uptime_seconds=%.1f", clk_unix() - hub->started_unix);
    return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
    hub_t *hub = arg;
    if (uv_is_closing(h)) return;
    if (h == (uv_handle_t *)&hub->inbox.poll)
        inbox_close(&hub->inbox, NULL);
    else
        uv_close(h, NULL);
}

void hub_close(hub_t *hub) {
    host_close(hub->host); /* its thread posts to the inbox: stop it while the inbox exists */
    hub->host = NULL;
    ingest_udp_close(hub->udp);
    hub->udp = NULL;
    while (hub->pend_head) { /* never confirmed: their publishers are told it failed */
        pending_event_t *p = hub->pend_head;
        hub->pend_head = p->next;
        if (p->cb) p->cb(hub, p->e, -ESHUTDOWN, p->arg);
        event_unref(p->e);
        free(p);
    }
    free(hub->pts);
    hub->pts = NULL;
    /* workers that were initialised but never started still own loops and handles */
    for (int i = hub->workers_started; i < hub->nworkers; i++) worker_discard(&hub->workers[i]);
    store_close(hub->store); /* its thread may post to the hub: stop it first */
    hub->store = NULL;
    webhook_close(hub->webhook); /* gives deliveries in flight a short grace */
    hub->webhook = NULL;
    for (int i = 0; i < hub->nworkers; i++) inbox_free(&hub->workers[i].inbox);
    free(hub->workers);
    hub->workers = NULL;
    if (hub->listen_fd >= 0) close(hub->listen_fd);
    hub->listen_fd = -1;
    if (hub->cluster) cluster_stop(hub->cluster); /* after a failed start: its handles */
    bool had_loop = hub->loop.data != NULL;
    if (had_loop) { /* after a failed hub_open, or a run that left handles */
        uv_walk(&hub->loop, close_any, hub);
        uv_run(&hub->loop, UV_RUN_DEFAULT);
        uv_loop_close(&hub->loop);
        hub->loop.data = NULL;
    }
    /* nats.c's threads post to the inbox: they end before it is freed */
    cluster_free(hub->cluster);
    hub->cluster = NULL;
    if (had_loop) inbox_free(&hub->inbox);
    alert_engine_free(&hub->alerts); /* before the registry: instances hold key references */
    registry_free(&hub->reg);
    elog_free(&hub->events);
    sources_free(&hub->sources);
    if (hub->health_mu_ready) uv_mutex_destroy(&hub->health_mu);
    hub->health_mu_ready = false;
    auth_unref(hub->auth);
    hub->auth = NULL;
    tls_server_free(hub->tls); /* the workers and their connections are gone */
    hub->tls = NULL;
    if (hub->iplim_ready) iplimits_free(&hub->iplim);
    hub->iplim_ready = false;
}

void hub_set_auth(hub_t *hub, auth_t *a) {
    for (int i = 0; i < hub->workers_started; i++)
        if (worker_set_auth(&hub->workers[i], auth_ref(a)) < 0) auth_unref(a);
    auth_unref(hub->auth);
    hub->auth = a;
}

void hub_health_input(hub_t *hub, health_input_t *in) {
    memset(in, 0, sizeof *in);
    uint64_t now = uv_hrtime();
    in->max_loop_lag_s = loop_lag_seconds(&hub->lag, now);
    in->worst_loop = -1;
    for (int i = 0; i < hub->nworkers; i++) {
        worker_t *w = &hub->workers[i];
        double l = loop_lag_seconds(&w->lag, now);
        if (l > in->max_loop_lag_s) {
            in->max_loop_lag_s = l;
            in->worst_loop = i;
        }
        in->connections += atomic_load(&w->stats.connections);
        in->ws_connections += atomic_load(&w->stats.ws_connections);
    }
    in->max_loop_lag_limit_s = hub->cfg->health_max_loop_lag;
    int e = atomic_load(&hub->data_dir_errno);
    in->data_dir_ok = e == 0;
    in->data_dir_errno = e;
    in->data_dir = hub->cfg->data_dir;
    in->store_ok = store_status(hub->store, in->store_msg, sizeof in->store_msg) == 0;
    in->uptime_s = (double)(now - hub->started_ns) / 1e9;
    in->version = MC_VERSION;
    in->drops_1m = atomic_load(&hub->drops_1m);
    in->accepted_1m = atomic_load(&hub->accepted_1m);
    in->max_drop_ratio = hub->cfg->health_max_drop_ratio;
    in->critical_alerts_check = hub->cfg->health_critical_alerts;
    if (hub->cluster) {
        in->nats_on = true;
        in->nats_ok = cluster_health(hub->cluster, in->nats_detail, sizeof in->nats_detail);
    }
    if (hub->health_mu_ready) {
        uv_mutex_lock(&hub->health_mu);
        in->nalerts = hub->ncrit;
        in->alerts_more = hub->crit_more;
        memcpy(in->alerts, hub->crit, (size_t)hub->ncrit * sizeof hub->crit[0]);
        uv_mutex_unlock(&hub->health_mu);
    }
}
