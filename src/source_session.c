#include "source_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "hub.h"
#include "ingest_json.h"
#include "jsonw.h"
#include "limit.h"
#include "log.h"
#include "sources.h"
#include "worker.h"
#include "ws.h"
#include "ws_msg.h"

/* Messages folded per session per loop pass: fairness between sources. */
#define SRC_BUDGET 64
#define SRC_FLUSH_MS 100
#define SRC_PROC_WINDOW 10

typedef struct src_msg {
    src_msg_kind_t kind;
    uint32_t len;
    char data[];
} src_msg_t;

typedef struct online_job online_job_t;

typedef struct src_session {
    char id[SOURCE_ID_MAX + 1];
    char *attrs;
    double connected_at;
    uint32_t attempt_id;
    online_job_t *online; /* the hub's answer (attempt id) on its way */
    uint32_t slot;        /* index in the worker's list of source sessions */
    src_msg_t **q;        /* ring */
    uint32_t qhead, qlen, qcap;
    size_t qbytes;
    bool backpressure;
    uint64_t received, dropped, processed;
    double proc_ms[SRC_PROC_WINDOW];
    uint32_t proc_i, proc_n;
    uint64_t busy_ns, busy_ns_last; /* folding time, total and at the last metrics */
    double rtf;
    uint64_t metrics_sent;
    bool refused; /* the hub had no room for another source: closing, nothing is kept */
    agg_t agg;
} src_session_t;

struct online_job {
    conn_t *c; /* NULL once the connection is gone */
    char id[SOURCE_ID_MAX + 1];
    char session_id[40];
    char *attrs;
    double now;
    uint32_t attempt;
    uint32_t max_sources;
    bool refused;
};

bool srcs_is_source(const conn_t *c) { return c->src != NULL; }

/* ---- the hub side of coming and going -------------------------------------------------- */

static int online_on_hub(hub_t *hub, void *arg, hub_call_t *call) {
    (void)call;
    online_job_t *j = arg;
    if (sources_make_room(&hub->sources, j->id, j->max_sources) < 0) {
        j->refused = true; /* every known source is online: no event, no entry */
        return HUB_CALL_DONE;
    }
    j->attempt = sources_online(&hub->sources, j->id, j->session_id, j->attrs, j->now);
    hub_sources_changed(hub);
    buf_t p = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &p);
    char ts[CLK_ISO_LEN];
    clk_iso8601(j->now, ts);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "robot_id", j->id);
    jsonw_kv_str(&w, "connection_id", j->session_id);
    jsonw_kv_str(&w, "connected_at", ts);
    jsonw_obj_close(&w);
    if (p.data) hub_emit(hub, "telemetry.connection_established", p.data);
    buf_free(&p);
    return HUB_CALL_DONE;
}

static void online_done(void *arg, int cancelled) {
    online_job_t *j = arg;
    if (!cancelled && j->c && j->c->src) {
        conn_t *c = j->c;
        c->src->attempt_id = j->attempt;
        c->src->online = NULL;
        if (j->refused) {
            c->src->refused = true;
            worker_limit_hit(c->w, LIMIT_SOURCES, c->peer);
            char detail[96];
            snprintf(detail, sizeof detail, "the hub tracks %u sources, all online "
                     "([sources] max_sources)", (unsigned)j->max_sources);
            ws_msg_error(c, "too_many_sources", detail);
            ws_close(c, WS_CLOSE_POLICY, "too many sources");
        }
    }
    free(j->attrs);
    free(j);
}

typedef struct offline_msg {
    hub_t *hub;
    char id[SOURCE_ID_MAX + 1];
    char session_id[40];
    char reason[24];
    double connected_at, now;
} offline_msg_t;

static void offline_task(void *arg, int cancelled) {
    offline_msg_t *m = arg;
    hub_t *hub = m->hub;
    /* every session that started ends with its event, even one a newer session of the
     * same source replaced: the source itself stays online then */
    if (!cancelled) {
        if (sources_offline(&hub->sources, m->id, m->session_id, m->now)) hub_sources_changed(hub);
        buf_t p = BUF_INIT;
        jsonw_t w;
        jsonw_init(&w, &p);
        char ts[CLK_ISO_LEN];
        clk_iso8601(m->now, ts);
        jsonw_obj_open(&w);
        jsonw_kv_str(&w, "robot_id", m->id);
        jsonw_kv_str(&w, "connection_id", m->session_id);
        jsonw_kv_num(&w, "duration_seconds", (double)(int64_t)((m->now - m->connected_at) * 1000) / 1000);
        jsonw_kv_str(&w, "reason", m->reason);
        jsonw_kv_str(&w, "disconnected_at", ts);
        jsonw_obj_close(&w);
        if (p.data) hub_emit(hub, "telemetry.connection_closed", p.data);
        buf_free(&p);
    }
    free(m);
}

typedef struct seen_msg {
    hub_t *hub;
    double now;
    char id[SOURCE_ID_MAX + 1];
} seen_msg_t;

static void seen_task(void *arg, int cancelled) {
    seen_msg_t *m = arg;
    if (!cancelled) sources_seen(&m->hub->sources, m->id, m->now);
    free(m);
}

/* ---- folding samples ------------------------------------------------------------------- */

typedef struct fold_ctx {
    agg_t *agg;
    const char *label;
    const char *value;
} fold_ctx_t;

/* Adds the session's label (source=ID, or client=SESSION for client_metrics) unless the
 * sample names one itself, then folds it in. */
static int fold_cb(void *ud, const statsd_line_t *line) {
    fold_ctx_t *f = ud;
    statsd_line_t l = *line;
    bool has = false;
    for (int i = 0; i < l.ntags && !has; i++)
        has = l.tags[i].key_len == strlen(f->label) &&
              memcmp(l.tags[i].key, f->label, l.tags[i].key_len) == 0;
    if (!has) {
        if (l.ntags >= STATSD_MAX_TAGS) return STATSD_BAD_TAGS;
        l.tags[l.ntags++] = (statsd_tag_t){f->label, (uint16_t)strlen(f->label), f->value,
                                           (uint16_t)strlen(f->value)};
        l.tags_raw = NULL; /* the tags are no longer the line's own span */
        l.tags_raw_len = 0;
    }
    int rc = agg_add(f->agg, &l);
    return rc < 0 ? STATSD_TOO_LONG : rc;
}

static void count_rejects(conn_t *c, const ingest_counts_t *ic) {
    hub_t *hub = c->w->hub;
    for (int r = 0; r < STATSD_REASON_COUNT; r++)
        if (ic->rejected[r])
            atomic_fetch_add_explicit(&hub->istats.rejected[r], ic->rejected[r],
                                      memory_order_relaxed);
}

static void fold_one(conn_t *c, src_msg_t *m) {
    src_session_t *s = c->src;
    uint64_t t0 = uv_hrtime();
    ingest_counts_t ic;
    memset(&ic, 0, sizeof ic);
    fold_ctx_t f = {&s->agg, "source", s->id};
    if (m->kind == SRC_MSG_CLIENT_METRICS) {
        f.label = "client";
        f.value = ws_session_id(c);
    }
    if (m->kind == SRC_MSG_STATSD) {
        ingest_statsd_text(m->data, m->len, fold_cb, &f, &ic);
    } else {
        char err[256];
        if (ingest_json_parse(m->data, m->len, fold_cb, &f, &ic, err, sizeof err) < 0) {
            ws_msg_error(c, "bad_sample", err);
            ic.rejected[STATSD_BAD_VALUE]++;
        }
    }
    count_rejects(c, &ic);
    uint64_t dt = uv_hrtime() - t0;
    s->busy_ns += dt;
    s->proc_ms[s->proc_i] = (double)dt / 1e6;
    s->proc_i = (s->proc_i + 1) % SRC_PROC_WINDOW;
    if (s->proc_n < SRC_PROC_WINDOW) s->proc_n++;
    s->processed++;
}

static void on_idle(uv_idle_t *h);

/* Folding runs from an idle handle while any queue has work: the loop does not block
 * in poll while there is, and stops spinning as soon as there is not. */
static void kick(worker_t *w) {
    if (!uv_is_active((uv_handle_t *)&w->src_idle)) uv_idle_start(&w->src_idle, on_idle);
}

/* ---- the inbound queue ------------------------------------------------------------------ */

static double fill_ratio(const conn_t *c) {
    const config_t *cfg = c->w->cfg;
    const src_session_t *s = c->src;
    double m = (double)s->qlen / (double)cfg->src_queue_messages;
    double b = (double)s->qbytes / (double)cfg->src_queue_bytes;
    return m > b ? m : b;
}

static double avg_proc_ms(const src_session_t *s) {
    double sum = 0;
    for (uint32_t i = 0; i < s->proc_n; i++) sum += s->proc_ms[i];
    return s->proc_n ? sum / s->proc_n : 0;
}

static void send_flow(conn_t *c, double fill) {
    src_session_t *s = c->src;
    double backlog = (double)s->qlen * avg_proc_ms(s);
    uint64_t retry = (uint64_t)(backlog > 50 ? backlog : 50);
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "status");
    jsonw_kv_str(&w, "state", s->backpressure ? "backpressure" : "streaming");
    jsonw_kv_num(&w, "fill_ratio", (double)(int)(fill * 1000 + 0.5) / 1000);
    jsonw_kv_uint(&w, "queue_depth", s->qlen);
    jsonw_kv_uint(&w, "dropped", s->dropped);
    jsonw_kv_str(&w, "message", s->backpressure
                                    ? "inbound queue filling up: slow down for retry_after_ms"
                                    : "inbound queue drained: send at will");
    jsonw_kv_str(&w, "session_id", ws_session_id(c));
    if (s->backpressure) jsonw_kv_uint(&w, "retry_after_ms", retry);
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    if (b.data) ws_send_text(c, b.data, b.len);
    buf_free(&b);
}

static void update_flow(conn_t *c) {
    src_session_t *s = c->src;
    double fill = fill_ratio(c);
    if (!s->backpressure && fill > 0.85) {
        s->backpressure = true;
        send_flow(c, fill);
    } else if (s->backpressure && fill < 0.70) {
        s->backpressure = false;
        send_flow(c, fill);
    }
}

static src_msg_t *pop(src_session_t *s) {
    src_msg_t *m = s->q[s->qhead];
    s->q[s->qhead] = NULL;
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    s->qbytes -= m->len;
    return m;
}

void srcs_enqueue(conn_t *c, src_msg_kind_t kind, const char *msg, size_t len) {
    src_session_t *s = c->src;
    const config_t *cfg = c->w->cfg;
    if (!s) return;
    s->received++;
    /* extreme overload: shed the oldest, so what is kept is the newest */
    while (s->qlen && (s->qlen + 1 > cfg->src_queue_messages || s->qbytes + len > cfg->src_queue_bytes)) {
        free(pop(s));
        s->dropped++;
        atomic_fetch_add_explicit(&c->w->hub->istats.dropped[DROP_SOURCE_SHED], 1,
                                  memory_order_relaxed);
    }
    if (s->qlen == s->qcap) {
        uint32_t ncap = s->qcap ? s->qcap * 2 : 16;
        src_msg_t **nq = malloc(ncap * sizeof *nq);
        if (!nq) goto shed;
        for (uint32_t i = 0; i < s->qlen; i++) nq[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = nq;
        s->qcap = ncap;
        s->qhead = 0;
    }
    src_msg_t *m = malloc(sizeof *m + len);
    if (!m) goto shed;
    m->kind = kind;
    m->len = (uint32_t)len;
    memcpy(m->data, msg, len);
    s->q[(s->qhead + s->qlen) % s->qcap] = m;
    s->qlen++;
    s->qbytes += len;
    update_flow(c);
    kick(c->w);
    return;
shed:
    s->dropped++;
    atomic_fetch_add_explicit(&c->w->hub->istats.dropped[DROP_SOURCE_SHED], 1,
                              memory_order_relaxed);
}

void srcs_client_metrics(conn_t *c, const char *msg, size_t len) {
    agg_t agg;
    agg_init(&agg, 0);
    fold_ctx_t f = {&agg, "client", ws_session_id(c)};
    ingest_counts_t ic;
    memset(&ic, 0, sizeof ic);
    char err[256];
    if (ingest_json_parse(msg, len, fold_cb, &f, &ic, err, sizeof err) < 0)
        ws_msg_error(c, "bad_message", err);
    count_rejects(c, &ic);
    int e;
    agg_batch_t *b = agg_flush(&agg, INGEST_WS, 0, &e);
    agg_free(&agg);
    if (b && hub_submit_batch(c->w->hub, b) < 0) agg_batch_free(b);
}

/* ---- worker: folding, hand-over, per-session metrics ----------------------------------- */

static void on_idle(uv_idle_t *h) {
    worker_t *w = h->data;
    bool more = false;
    for (uint32_t i = 0; i < w->nsrcs; i++) {
        conn_t *c = w->srcs[i];
        src_session_t *s = c->src;
        if (c->closing || !s) continue;
        for (int k = 0; k < SRC_BUDGET && s->qlen; k++) {
            src_msg_t *m = pop(s);
            fold_one(c, m);
            free(m);
        }
        if (s->qlen) more = true;
        if (s->backpressure) update_flow(c);
    }
    if (!more) uv_idle_stop(h);
}

static void hand_over(conn_t *c) {
    src_session_t *s = c->src;
    hub_t *hub = c->w->hub;
    int err;
    agg_batch_t *b = agg_flush(&s->agg, INGEST_WS, 600, &err);
    if (b) {
        atomic_fetch_add(&hub->batches_pending, 1);
        if (hub_submit_batch(hub, b) < 0) {
            atomic_fetch_sub(&hub->batches_pending, 1);
            agg_batch_free(b);
        }
        seen_msg_t *m = malloc(sizeof *m);
        if (m) {
            m->hub = hub;
            m->now = clk_unix();
            snprintf(m->id, sizeof m->id, "%s", s->id);
            if (inbox_post(&hub->inbox, seen_task, m) < 0) free(m);
        }
    }
}

/* {"type":"metrics","data":{...}}: once a second to every source session. */
static int send_session_metrics(conn_t *c, double dt) {
    src_session_t *s = c->src;
    const config_t *cfg = c->w->cfg;
    s->metrics_sent++;
    /* a test hook: fail every Nth production, to prove the loop outlives a failure */
    if (cfg->debug_session_metrics_fail_every &&
        s->metrics_sent % (uint64_t)cfg->debug_session_metrics_fail_every == 0)
        return -EIO;
    double busy = (double)(s->busy_ns - s->busy_ns_last) / 1e9;
    s->busy_ns_last = s->busy_ns;
    s->rtf = dt > 0 ? busy / dt : 0;
    double avg = avg_proc_ms(s);
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "metrics");
    jsonw_key(&w, "data");
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "session_id", ws_session_id(c));
    jsonw_kv_uint(&w, "attempt_id", s->attempt_id);
    jsonw_kv_str(&w, "source", s->id);
    jsonw_kv_uint(&w, "queue_depth", s->qlen);
    jsonw_kv_uint(&w, "queue_capacity", cfg->src_queue_messages);
    jsonw_kv_num(&w, "fill_ratio", (double)(int)(fill_ratio(c) * 1000 + 0.5) / 1000);
    jsonw_kv_num(&w, "avg_processing_ms", (double)(int64_t)(avg * 1000) / 1000);
    jsonw_kv_num(&w, "backlog_ms", (double)(int64_t)((double)s->qlen * avg * 1000) / 1000);
    jsonw_kv_num(&w, "realtime_factor", (double)(int64_t)(s->rtf * 1e6) / 1e6);
    jsonw_kv_uint(&w, "received", s->received);
    jsonw_kv_uint(&w, "processed", s->processed);
    jsonw_kv_uint(&w, "dropped", s->dropped);
    jsonw_key(&w, "attrs");
    jsonw_raw(&w, s->attrs, strlen(s->attrs));
    jsonw_obj_close(&w);
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    int rc = jsonw_error(&w);
    if (rc == 0) rc = ws_send_text(c, b.data, b.len);
    buf_free(&b);
    return rc;
}

static void on_src_timer(uv_timer_t *t) {
    worker_t *w = t->data;
    bool second = ++w->src_ticks % (1000 / SRC_FLUSH_MS) == 0;
    for (uint32_t i = 0; i < w->nsrcs; i++) {
        conn_t *c = w->srcs[i];
        if (c->closing || !c->src) continue;
        /* nothing leaves before the hub admitted the source (it may refuse it) */
        if (!c->src->online && !c->src->refused) hand_over(c);
        if (second && !c->src->online) { /* the hub has told us the attempt id */
            int rc = send_session_metrics(c, 1.0);
            if (rc < 0 && rc != -EPIPE)
                log_error("session metrics failed; next second goes on", "conn=%llu source=%s error=\"%s\"",
                          (unsigned long long)c->id, c->src->id, strerror(-rc));
        }
    }
}

int srcs_worker_init(worker_t *w) {
    int rc = uv_idle_init(&w->loop, &w->src_idle);
    if (rc) return rc;
    w->src_idle.data = w;
    rc = uv_timer_init(&w->loop, &w->src_timer);
    if (rc) return rc;
    w->src_timer.data = w;
    return uv_timer_start(&w->src_timer, on_src_timer, SRC_FLUSH_MS, SRC_FLUSH_MS);
}

void srcs_worker_close(worker_t *w) {
    if (!uv_is_closing((uv_handle_t *)&w->src_idle)) uv_close((uv_handle_t *)&w->src_idle, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->src_timer)) uv_close((uv_handle_t *)&w->src_timer, NULL);
    free(w->srcs);
    w->srcs = NULL;
    w->nsrcs = w->srcs_cap = 0;
}

/* ---- a session's start and end ---------------------------------------------------------- */

int srcs_start(conn_t *c, const char *id, const char *attrs) {
    if (c->src) return -EEXIST;
    worker_t *w = c->w;
    src_session_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->attrs = strdup(attrs && *attrs ? attrs : "{}");
    if (!s->attrs) {
        free(s);
        return -ENOMEM;
    }
    if (w->nsrcs == w->srcs_cap) {
        uint32_t ncap = w->srcs_cap ? w->srcs_cap * 2 : 16;
        conn_t **nv = realloc(w->srcs, ncap * sizeof *nv);
        if (!nv) {
            free(s->attrs);
            free(s);
            return -ENOMEM;
        }
        w->srcs = nv;
        w->srcs_cap = ncap;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    s->connected_at = clk_unix();
    agg_init(&s->agg, 100000);
    s->slot = w->nsrcs;
    w->srcs[w->nsrcs++] = c;
    c->src = s;
    online_job_t *j = calloc(1, sizeof *j);
    if (j && (j->attrs = strdup(s->attrs))) {
        j->c = c;
        snprintf(j->id, sizeof j->id, "%s", id);
        snprintf(j->session_id, sizeof j->session_id, "%s", ws_session_id(c));
        j->now = s->connected_at;
        j->max_sources = (uint32_t)w->cfg->max_sources;
        if (hub_call(w->hub, w, online_on_hub, online_done, j) == 0) {
            s->online = j;
        } else {
            free(j->attrs);
            free(j);
        }
    } else {
        free(j);
    }
    log_info("source session started", "conn=%llu source=%s session=%s", (unsigned long long)c->id,
             id, ws_session_id(c));
    return 0;
}

void srcs_end(conn_t *c, const char *reason) {
    src_session_t *s = c->src;
    if (!s) return;
    worker_t *w = c->w;
    /* what was received is folded and handed over: no sample silently lost at close (a
     * refused source's samples were refused with it: counted, never merged) */
    while (s->qlen) {
        src_msg_t *m = pop(s);
        if (s->refused)
            atomic_fetch_add_explicit(&w->hub->istats.dropped[DROP_SOURCE_SHED], 1,
                                      memory_order_relaxed);
        else
            fold_one(c, m);
        free(m);
    }
    if (!s->refused) hand_over(c);
    if (s->online) s->online->c = NULL;
    offline_msg_t *m = s->refused ? NULL : calloc(1, sizeof *m);
    if (m) {
        m->hub = w->hub;
        snprintf(m->id, sizeof m->id, "%s", s->id);
        snprintf(m->session_id, sizeof m->session_id, "%s", ws_session_id(c));
        snprintf(m->reason, sizeof m->reason, "%s", reason);
        m->connected_at = s->connected_at;
        m->now = clk_unix();
        if (inbox_post(&w->hub->inbox, offline_task, m) < 0) free(m);
    }
    log_info("source session ended", "conn=%llu source=%s reason=%s received=%llu dropped=%llu",
             (unsigned long long)c->id, s->id, reason, (unsigned long long)s->received,
             (unsigned long long)s->dropped);
    /* swap-remove from the worker's list */
    conn_t *last = w->srcs[--w->nsrcs];
    w->srcs[s->slot] = last;
    last->src->slot = s->slot;
    agg_free(&s->agg);
    free(s->q);
    free(s->attrs);
    free(s);
    c->src = NULL;
}
