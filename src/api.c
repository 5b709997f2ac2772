#include "api.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agg.h"
#include "buf.h"
#include "clock.h"
#include "event.h"
#include "eventlog.h"
#include "sources.h"
#include <fnmatch.h>
#include <jansson.h>
#include "access.h"
#include "cluster.h"
#include "auth.h"
#include "conn.h"
#include "dashboard.h"
#include "health.h"
#include "http.h"
#include "hub.h"
#include "ingest_json.h"
#include "jsonw.h"
#include "prom.h"
#include "view.h"
#include "worker.h"
#include "ws.h"

typedef void (*api_handler_t)(http_req_t *r);

/* Access (docs/SECURITY.md): `scope` is what a GET/HEAD needs, `post_scope` what a
 * POST (or another writing method) needs — AUTH_NONE for public routes, AUTH_ANY for
 * any valid token; `topic` is the topic whose data the route reads (the token's topics
 * must cover it); flags: ACCESS_QUERY_TOKEN where browsers must pass ?token=. */
typedef struct route {
    const char *path;
    bool prefix;      /* path is a prefix: /api/v1/series/{name} */
    unsigned methods; /* http_method_t bits */
    api_handler_t fn;
    unsigned scope, post_scope;
    const char *topic;
    unsigned flags;
} route_t;

/* ---- answering from the hub thread ---------------------------------------------------
 * Registry reads run on the hub (its only owner); the worker defers the HTTP answer, the
 * hub fills `reply`, the worker sends it. */

#define QPARAM_MAX 256

typedef struct api_job api_job_t;
/* Returns HUB_CALL_DONE, or HUB_CALL_LATER after arranging hub_call_finish(j->call). */
typedef int (*api_job_fn)(hub_t *hub, api_job_t *j);

struct api_job {
    http_deferred_t *d;
    api_job_fn fn;
    /* request inputs, copied: the request is gone by the time the hub runs */
    char name[QPARAM_MAX];
    char match[QPARAM_MAX];
    char source[QPARAM_MAX];
    double window, from, to;
    agg_batch_t *batch; /* POST /api/v1/ingest */
    ingest_counts_t parsed;
    event_t *event;     /* POST /api/v1/events */
    uint64_t since;
    cursor_t *cursor; /* GET /api/v1/events?cursor= (owned) */
    uint32_t limit;
    hub_call_t *call; /* while on the hub */
    double at;        /* when the worker handed it over (unix seconds) */
    /* the answer */
    int status;
    const char *ctype;
    buf_t body;
};

static int job_run(hub_t *hub, void *arg, hub_call_t *call) {
    api_job_t *j = arg;
    j->call = call;
    return j->fn(hub, j);
}

static void job_done(void *arg, int cancelled) {
    api_job_t *j = arg;
    if (cancelled) {
        http_deferred_respond(j->d, 503, "application/json", NULL,
                              "{\"error\":\"shutting_down\",\"detail\":\"the hub is stopping\"}\n",
                              sizeof "{\"error\":\"shutting_down\",\"detail\":\"the hub is stopping\"}\n" - 1);
    } else {
        http_deferred_respond(j->d, j->status, j->ctype, NULL, j->body.data ? j->body.data : "",
                              j->body.len);
    }
    agg_batch_free(j->batch);
    if (j->event) event_unref(j->event);
    free(j->cursor);
    buf_free(&j->body);
    free(j);
}

static api_job_t *job_new(api_job_fn fn) {
    api_job_t *j = calloc(1, sizeof *j);
    if (j) j->fn = fn;
    return j;
}

/* Defers r and posts j to the hub; answers 503 itself when that is not possible. */
static void job_submit(http_req_t *r, api_job_t *j) {
    if (!j) {
        http_respond_error(r, 503, "out_of_memory", "request state");
        return;
    }
    j->at = clk_unix();
    j->d = http_defer(r);
    if (!j->d) {
        agg_batch_free(j->batch);
        if (j->event) event_unref(j->event);
        free(j->cursor);
        free(j);
        http_respond_error(r, 503, "out_of_memory", "request state");
        return;
    }
    if (hub_call(r->conn->w->hub, r->conn->w, job_run, job_done, j) < 0) {
        j->status = 503;
        j->ctype = "application/json";
        buf_puts(&j->body, "{\"error\":\"shutting_down\",\"detail\":\"the hub is stopping\"}\n");
        job_done(j, 0);
    }
}

static void job_error(api_job_t *j, int status, const char *error, const char *detail) {
    j->status = status;
    j->ctype = "application/json";
    buf_reset(&j->body);
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "error", error);
    jsonw_kv_str(&w, "detail", detail);
    jsonw_obj_close(&w);
    buf_putc(&j->body, '\n');
}

/* GET /metrics */
static int hub_prom(hub_t *hub, api_job_t *j) {
    hub_self_t self;
    hub_self_snapshot(hub, &self);
    if (prom_render(&hub->reg, &self, &j->body) < 0) {
        job_error(j, 503, "out_of_memory", "rendering /metrics");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = PROM_CONTENT_TYPE;
    return HUB_CALL_DONE;
}

static void h_prom(http_req_t *r) { job_submit(r, job_new(hub_prom)); }

/* GET /api/v1/metrics?match=&source= */
static int hub_metrics(hub_t *hub, api_job_t *j) {
    view_filter_t f = {j->match, j->source};
    if (view_metrics_json(&hub->reg, &f, clk_unix(), &j->body) < 0) {
        job_error(j, 503, "out_of_memory", "rendering metrics");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

/* Reads a query parameter; answers 400 and returns false when it is there but unusable
 * (too long, bad percent-encoding): a filter silently ignored would return everything. */
static bool qparam(http_req_t *r, const char *name, char *out, size_t outlen) {
    out[0] = '\0';
    if (http_query_param(r->query, name, out, outlen) >= 0) return true;
    char detail[160];
    snprintf(detail, sizeof detail, "query parameter %s is malformed or longer than %zu bytes",
             name, outlen - 1);
    http_respond_error(r, 400, "bad_request", detail);
    return false;
}

static void h_metrics(http_req_t *r) {
    char match[QPARAM_MAX], source[QPARAM_MAX];
    if (!qparam(r, "match", match, sizeof match) || !qparam(r, "source", source, sizeof source))
        return;
    api_job_t *j = job_new(hub_metrics);
    if (j) {
        memcpy(j->match, match, sizeof match);
        memcpy(j->source, source, sizeof source);
    }
    job_submit(r, j);
}

/* GET /api/v1/summary */
static int hub_summary(hub_t *hub, api_job_t *j) {
    hub_self_t self;
    hub_self_snapshot(hub, &self);
    if (view_summary_json(&self, clk_unix(), &j->body) < 0) {
        job_error(j, 503, "out_of_memory", "rendering the summary");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static void h_summary(http_req_t *r) { job_submit(r, job_new(hub_summary)); }

/* GET /api/v1/series/{name}?source=&window=SECONDS (from the in-memory history) */
static int hub_series(hub_t *hub, api_job_t *j) {
    double now = clk_unix();
    uint32_t to = j->to > 0 ? (uint32_t)j->to : (uint32_t)now;
    uint32_t from = j->from > 0 ? (uint32_t)j->from : (uint32_t)(now - j->window);
    int rc = view_history_json(&hub->reg, j->name, j->source, from, to, &j->body);
    if (rc == -ENOENT) {
        char detail[QPARAM_MAX * 2 + 32];
        snprintf(detail, sizeof detail, "no series named %s%s%s", j->name,
                 j->source[0] ? " with source " : "", j->source);
        job_error(j, 404, "not_found", detail);
        return HUB_CALL_DONE;
    }
    if (rc < 0) {
        job_error(j, 503, "out_of_memory", "rendering history");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

/* GET /api/v1/series/{name}?from=&to=&step=60|3600: from the store's rollups */
static void rollups_done(void *ctx, int status, buf_t *body) {
    api_job_t *j = ctx;
    j->status = status;
    j->ctype = "application/json";
    buf_t tmp = j->body;
    j->body = *body; /* take the body over */
    buf_init(body);
    buf_free(&tmp);
    hub_call_finish(j->call);
}

static int hub_rollups(hub_t *hub, api_job_t *j) {
    double now = clk_unix();
    uint32_t to = j->to > 0 ? (uint32_t)j->to : (uint32_t)now;
    uint32_t from = j->from > 0 ? (uint32_t)j->from : (uint32_t)(now - (j->limit == 60 ? 86400 : 86400 * 7));
    if (!hub->store ||
        store_query(hub->store, j->name, j->source, from, to, j->limit, rollups_done, j) < 0) {
        job_error(j, 503, "store_unavailable", "the store cannot take queries");
        return HUB_CALL_DONE;
    }
    return HUB_CALL_LATER;
}

static int query_number(http_req_t *r, const char *name, double *out, bool *present) {
    char v[64];
    int q = http_query_param(r->query, name, v, sizeof v);
    *present = q != 0;
    if (q < 0) return -1;
    if (!*present) return 0;
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || !isfinite(d) || d < 0) return -1;
    *out = d;
    return 0;
}

static void h_series(http_req_t *r) {
    const char *name = r->path + strlen("/api/v1/series/");
    if (!*name || strchr(name, '/')) {
        http_respond_error(r, 404, "not_found", "use /api/v1/series/{name}");
        return;
    }
    if (strlen(name) >= QPARAM_MAX) {
        http_respond_error(r, 400, "bad_request", "series name too long");
        return;
    }
    bool has_window, has_from, has_to, has_step;
    double window = 300, from = 0, to = 0, step = 0;
    if (query_number(r, "window", &window, &has_window) < 0 ||
        query_number(r, "from", &from, &has_from) < 0 || query_number(r, "to", &to, &has_to) < 0 ||
        query_number(r, "step", &step, &has_step) < 0) {
        http_respond_error(r, 400, "bad_request",
                           "window, from, to and step must be non-negative numbers");
        return;
    }
    if (has_step && step != 60 && step != 3600) {
        http_respond_error(r, 400, "bad_request", "step must be 60 or 3600 (seconds)");
        return;
    }
    if (has_window && window <= 0) {
        http_respond_error(r, 400, "bad_request", "window must be positive");
        return;
    }
    if (has_from && has_to && to < from) {
        http_respond_error(r, 400, "bad_request", "to must not be before from");
        return;
    }
    char source[QPARAM_MAX];
    if (!qparam(r, "source", source, sizeof source)) return;
    api_job_t *j = job_new(has_step ? hub_rollups : hub_series);
    if (j) {
        j->limit = (uint32_t)step;
        snprintf(j->name, sizeof j->name, "%s", name);
        memcpy(j->source, source, sizeof source);
        j->window = window;
        j->from = from;
        j->to = to;
    }
    job_submit(r, j);
}

/* POST /api/v1/ingest: parsed here, on the worker; merged on the hub; 202 with counts. */
typedef struct ingest_ctx {
    agg_t agg;
} ingest_ctx_t;

static int ingest_cb(void *ud, const statsd_line_t *l) {
    int rc = agg_add(&((ingest_ctx_t *)ud)->agg, l);
    return rc < 0 ? STATSD_TOO_LONG : rc; /* out of memory: refused like an oversized one */
}

static int hub_ingest(hub_t *hub, api_job_t *j) {
    registry_result_t res;
    memset(&res, 0, sizeof res);
    /* counts the registry's refusals */
    if (j->batch) hub_apply_batch(hub, j->batch, j->at, &res);
    /* the parser's refusals are counted here, and answered together with the registry's */
    for (int i = 0; i < STATSD_REASON_COUNT; i++) {
        if (j->parsed.rejected[i])
            atomic_fetch_add_explicit(&hub->istats.rejected[i], j->parsed.rejected[i],
                                      memory_order_relaxed);
        res.rejected[i] += j->parsed.rejected[i];
    }
    uint64_t rejected = 0;
    for (int i = 0; i < REJECT_REASON_COUNT; i++) rejected += res.rejected[i];
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_kv_uint(&w, "accepted", res.accepted);
    jsonw_kv_uint(&w, "rejected", rejected);
    jsonw_key(&w, "rejected_by_reason");
    jsonw_obj_open(&w);
    for (int i = 0; i < REJECT_REASON_COUNT; i++)
        if (res.rejected[i]) jsonw_kv_uint(&w, reject_reason_name(i), res.rejected[i]);
    jsonw_obj_close(&w);
    jsonw_obj_close(&w);
    buf_putc(&j->body, '\n');
    j->status = 202;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static bool looks_like_json(const http_req_t *r) {
    const char *ct = http_header(r, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) == 0) return true;
    if (ct && strncasecmp(ct, "text/plain", 10) == 0) return false;
    for (size_t i = 0; i < r->body_len; i++) { /* no useful type: look at the body */
        char c = r->body[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        return c == '{';
    }
    return false;
}

static void h_ingest(http_req_t *r) {
    ingest_ctx_t ctx;
    agg_init(&ctx.agg, 0);
    ingest_counts_t counts;
    memset(&counts, 0, sizeof counts);
    if (looks_like_json(r)) {
        char err[256];
        if (ingest_json_parse(r->body, r->body_len, ingest_cb, &ctx, &counts, err, sizeof err) <
            0) {
            agg_free(&ctx.agg);
            http_respond_error(r, 400, "bad_json", err);
            return;
        }
    } else {
        ingest_statsd_text(r->body, r->body_len, ingest_cb, &ctx, &counts);
    }
    int err = 0;
    agg_batch_t *b = agg_flush(&ctx.agg, INGEST_HTTP, 0, &err);
    agg_free(&ctx.agg);
    if (err) {
        http_respond_error(r, 503, "out_of_memory", "ingest batch");
        return;
    }
    api_job_t *j = job_new(hub_ingest);
    if (!j) {
        agg_batch_free(b);
        http_respond_error(r, 503, "out_of_memory", "request state");
        return;
    }
    j->batch = b;
    j->parsed = counts;
    job_submit(r, j);
}

static void h_health(http_req_t *r) {
    hub_t *hub = r->conn->w->hub;
    health_input_t in;
    hub_health_input(hub, &in);
    health_result_t res;
    health_eval(&in, &res);
    buf_t b = BUF_INIT;
    if (health_json(&in, &res, &b) < 0) {
        buf_free(&b);
        http_respond_error(r, 503, "out_of_memory", "health answer");
        return;
    }
    http_respond(r, res.healthy ? 200 : 503, "application/json", NULL, b.data, b.len);
    buf_free(&b);
}

/* POST /api/v1/events: validated and completed here, sequenced on the hub; 202 {id, seq} */
/* the event is on disk (or the disk failed and it was delivered anyway): answer */
static void event_published(hub_t *hub, event_t *e, int rc, void *arg) {
    (void)hub;
    api_job_t *j = arg;
    if (rc == -ESHUTDOWN) {
        job_error(j, 503, "shutting_down", "the hub stopped before the event was stored");
    } else {
        buf_printf(&j->body, "{\"id\":\"%s\",\"seq\":%llu%s}\n", e->id,
                   (unsigned long long)e->seq, rc ? ",\"stored\":false" : "");
        j->status = 202;
        j->ctype = "application/json";
    }
    hub_call_finish(j->call);
}

static int hub_event_publish(hub_t *hub, api_job_t *j) {
    if (hub_publish(hub, event_ref(j->event), event_published, j) < 0) {
        job_error(j, 503, "publish_failed", "the hub could not take the event");
        return HUB_CALL_DONE;
    }
    return HUB_CALL_LATER;
}

static void h_events_post(http_req_t *r) {
    char rnd[6], err[EVENT_ERR_LEN];
    event_random6(&r->conn->w->rng, rnd);
    event_t *e = event_prepare(r->body, r->body_len, clk_unix(), rnd, err);
    if (!e) {
        http_respond_error(r, 400, "bad_event", err);
        return;
    }
    api_job_t *j = job_new(hub_event_publish);
    if (!j) {
        event_unref(e);
        http_respond_error(r, 503, "out_of_memory", "request state");
        return;
    }
    j->event = e;
    job_submit(r, j);
}

/* Closes an events answer's object and makes it the job's 200 (or a 503 when the writer ran
 * out of memory). */
static int finish_events_json(api_job_t *j, jsonw_t *w) {
    jsonw_obj_close(w);
    buf_putc(&j->body, '\n');
    if (jsonw_error(w)) {
        job_error(j, 503, "out_of_memory", "rendering events");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

/* One event of GET /api/v1/events, as the WebSocket frames it: {type, seq, cursor?, data}. */
static void write_event_item(jsonw_t *w, const event_t *e) {
    jsonw_obj_open(w);
    jsonw_kv_str(w, "type", "event");
    jsonw_kv_uint(w, "seq", e->seq);
    if (e->cursor) jsonw_kv_str(w, "cursor", e->cursor);
    jsonw_key(w, "data");
    jsonw_raw(w, e->envelope, e->envelope_len);
    jsonw_obj_close(w);
}

/* GET /api/v1/events?since=SEQ&type=pattern&limit=N: oldest first, as WebSocket sends them */
/* ?cursor=A:1,B:2 (a cluster's resume position, cursor.h): the retained events it does not
 * cover, and next_cursor to ask again with */
static int hub_events_cursor(hub_t *hub, api_job_t *j) {
    uint64_t oldest = elog_oldest(&hub->events), latest = elog_latest(&hub->events);
    cursor_t *next = malloc(sizeof *next);
    if (!next) {
        job_error(j, 503, "out_of_memory", "rendering events");
        return HUB_CALL_DONE;
    }
    *next = *j->cursor;
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_key(&w, "events");
    jsonw_arr_open(&w);
    uint32_t n = 0;
    for (uint64_t q = oldest; q <= latest && n < j->limit; q++) {
        event_t *e = elog_get(&hub->events, q);
        if (!e || hub_event_covered(hub, j->cursor, e)) continue;
        /* the client has seen everything up to here once it has this one */
        cursor_set(next, e->origin[0] ? e->origin : hub->hub_id, e->origin[0] ? e->oseq : e->seq);
        if (j->match[0] && fnmatch(j->match, e->type, 0) != 0) continue;
        write_event_item(&w, e);
        n++;
    }
    jsonw_arr_close(&w);
    char text[CURSOR_TEXT_MAX];
    cursor_format(next, text, sizeof text);
    free(next);
    jsonw_kv_uint(&w, "count", n);
    jsonw_kv_str(&w, "next_cursor", text);
    jsonw_kv_uint(&w, "oldest_seq", oldest);
    jsonw_kv_uint(&w, "latest_seq", latest);
    jsonw_kv_bool(&w, "resync", hub_cursor_too_old(hub, j->cursor));
    return finish_events_json(j, &w);
}

static int hub_events_get(hub_t *hub, api_job_t *j) {
    if (j->cursor) return hub_events_cursor(hub, j);
    uint64_t oldest = elog_oldest(&hub->events), latest = elog_latest(&hub->events);
    uint64_t from = j->since + 1;
    bool resync = false;
    if (from < oldest) {
        resync = j->since > 0 || oldest > 1;
        from = oldest;
    }
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_key(&w, "events");
    jsonw_arr_open(&w);
    uint32_t n = 0;
    uint64_t last = j->since;
    for (uint64_t q = from; q <= latest && n < j->limit; q++) {
        event_t *e = elog_get(&hub->events, q);
        last = q;
        if (!e || (j->match[0] && fnmatch(j->match, e->type, 0) != 0)) continue;
        write_event_item(&w, e);
        n++;
    }
    jsonw_arr_close(&w);
    jsonw_kv_uint(&w, "count", n);
    jsonw_kv_uint(&w, "next_since", last > j->since ? last : j->since);
    jsonw_kv_uint(&w, "oldest_seq", oldest);
    jsonw_kv_uint(&w, "latest_seq", latest);
    jsonw_kv_bool(&w, "resync", resync);
    return finish_events_json(j, &w);
}

static void h_events_get(http_req_t *r) {
    bool has;
    double since = 0, limit = 100;
    /* 2^53: past it a double no longer holds every whole number */
    if (query_number(r, "since", &since, &has) < 0 || query_number(r, "limit", &limit, &has) < 0 ||
        since != floor(since) || limit != floor(limit) || limit < 1 || since > 9007199254740992.0) {
        http_respond_error(r, 400, "bad_request",
                           "since and limit must be whole numbers (limit >= 1, since < 2^53)");
        return;
    }
    char type[QPARAM_MAX];
    if (!qparam(r, "type", type, sizeof type)) return;
    /* a token limited to some topics reads only the event types they cover */
    if (!access_topic(r, type[0] ? type : "events")) return;
    char ctext[CURSOR_TEXT_MAX];
    cursor_t *cur = NULL;
    int cq = http_query_param(r->query, "cursor", ctext, sizeof ctext);
    if (cq != 0) {
        cur = cq > 0 ? malloc(sizeof *cur) : NULL;
        if (!cur || cursor_parse(ctext, strlen(ctext), cur) < 0) {
            free(cur);
            http_respond_error(r, 400, "bad_request",
                               "cursor must be hub:seq pairs joined by ',' (an event's cursor)");
            return;
        }
    }
    api_job_t *j = job_new(hub_events_get);
    if (!j) free(cur);
    if (j) {
        j->cursor = cur;
        j->since = (uint64_t)since;
        j->limit = limit > 1000 ? 1000 : (uint32_t)limit;
        memcpy(j->match, type, sizeof type);
    }
    job_submit(r, j);
}

static void h_events(http_req_t *r) {
    if (r->method == HM_POST)
        h_events_post(r);
    else
        h_events_get(r);
}

/* GET /api/v1/trends?metric=name[&source=glob]: direction and change against the
 * previous hour, day and week; the first matching series' trend also at the top level */
static int hub_trends(hub_t *hub, api_job_t *j) {
    family_t *f = registry_family(&hub->reg, j->name);
    double now = clk_unix();
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "metric", j->name);
    if (j->source[0]) jsonw_kv_str(&w, "source", j->source);
    const series_t *first = NULL;
    buf_t list = BUF_INIT;
    jsonw_t wl;
    jsonw_init(&wl, &list);
    jsonw_arr_open(&wl);
    for (uint32_t i = 0; f && i < f->n; i++) {
        const series_t *se = f->v[i];
        if (j->source[0] && (!se->source || fnmatch(j->source, se->source, 0) != 0)) continue;
        if (!first) first = se;
        jsonw_obj_open(&wl);
        jsonw_key(&wl, "labels");
        jsonw_obj_open(&wl);
        for (int k = 0; k < se->key->nlabels; k++) {
            skey_label_t l;
            skey_label(se->key, k, &l);
            jsonw_kv_str(&wl, l.name, l.value);
        }
        jsonw_obj_close(&wl);
        jsonw_kv_num(&wl, "value", registry_trend_value(se));
        jsonw_key(&wl, "trend");
        view_trend_json(&wl, se, now);
        jsonw_obj_close(&wl);
    }
    jsonw_arr_close(&wl);
    if (!first) {
        buf_free(&list);
        buf_reset(&j->body);
        char detail[QPARAM_MAX * 2 + 32];
        snprintf(detail, sizeof detail, "no series named %s%s%s", j->name,
                 j->source[0] ? " with source " : "", j->source);
        job_error(j, 404, "not_found", detail);
        return HUB_CALL_DONE;
    }
    /* the first series' trend, flattened: direction plus change per period */
    buf_t one = BUF_INIT;
    jsonw_t wo;
    jsonw_init(&wo, &one);
    view_trend_json(&wo, first, now);
    json_error_t je;
    json_t *t = json_loadb(one.data, one.len, 0, &je);
    jsonw_kv_str(&w, "direction", json_string_value(json_object_get(t, "direction")));
    jsonw_kv_num(&w, "value", registry_trend_value(first));
    static const char *const periods[] = {"hour", "day", "week"};
    jsonw_key(&w, "change");
    jsonw_obj_open(&w);
    for (int p = 0; p < 3; p++) {
        json_t *c = json_object_get(json_object_get(t, periods[p]), "change");
        jsonw_key(&w, periods[p]);
        if (json_is_number(c))
            jsonw_num(&w, json_number_value(c));
        else
            jsonw_null(&w);
    }
    jsonw_obj_close(&w);
    json_decref(t);
    buf_free(&one);
    jsonw_key(&w, "series");
    jsonw_raw(&w, list.data, list.len);
    char ts[CLK_ISO_LEN];
    clk_iso8601(now, ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    buf_putc(&j->body, '\n');
    buf_free(&list);
    j->status = jsonw_error(&w) ? 503 : 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static void h_trends(http_req_t *r) {
    char metric[QPARAM_MAX], source[QPARAM_MAX];
    if (!qparam(r, "metric", metric, sizeof metric) || !qparam(r, "source", source, sizeof source))
        return;
    if (!metric[0]) {
        http_respond_error(r, 400, "bad_request", "metric= is required");
        return;
    }
    api_job_t *j = job_new(hub_trends);
    if (j) {
        memcpy(j->name, metric, sizeof metric);
        memcpy(j->source, source, sizeof source);
    }
    job_submit(r, j);
}

/* GET /api/v1/sources */
static int hub_sources(hub_t *hub, api_job_t *j) {
    if ((hub->cluster ? cluster_sources_json(hub->cluster, &hub->sources, &j->body)
                      : sources_json(&hub->sources, &j->body)) < 0) {
        job_error(j, 503, "out_of_memory", "rendering sources");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static void h_sources(http_req_t *r) { job_submit(r, job_new(hub_sources)); }

/* GET /api/v1/sources/{id}/metrics (alias /api/telemetry/robots/{id}/metrics): the latest
 * value of every series of that source; publishes telemetry.metrics_published. */
static int hub_source_metrics(hub_t *hub, api_job_t *j) {
    const source_info_t *si = sources_find(&hub->sources, j->source);
    buf_t metrics = BUF_INIT, series = BUF_INIT;
    jsonw_t wm, ws;
    jsonw_init(&wm, &metrics);
    jsonw_init(&ws, &series);
    jsonw_obj_open(&wm);
    jsonw_arr_open(&ws);
    uint32_t n = 0, nf;
    family_t *const *fams = registry_families(&hub->reg, &nf);
    for (uint32_t i = 0; i < nf; i++)
        for (uint32_t k = 0; k < fams[i]->n; k++) {
            const series_t *se = fams[i]->v[k];
            if (!se->source || strcmp(se->source, j->source) != 0) continue;
            if (se->key->nlabels == 1) jsonw_kv_num(&wm, skey_name(se->key), se->value);
            view_series_json(&ws, se);
            n++;
        }
    jsonw_obj_close(&wm);
    jsonw_arr_close(&ws);
    if (!si && n == 0) {
        char detail[QPARAM_MAX + 32];
        snprintf(detail, sizeof detail, "no source %s", j->source);
        job_error(j, 404, "not_found", detail);
        buf_free(&metrics), buf_free(&series);
        return HUB_CALL_DONE;
    }
    double now = clk_unix();
    char ts[CLK_ISO_LEN];
    clk_iso8601(now, ts);
    jsonw_t w;
    jsonw_init(&w, &j->body);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "source", j->source);
    /* clustered: a source online on another hub is online (and its samples are here) */
    const char *holder = si && si->online ? hub->hub_id
                         : hub->cluster ? cluster_source_holder(hub->cluster, j->source) : NULL;
    jsonw_kv_bool(&w, "online", (si && si->online) || holder);
    if (hub->cluster && holder) jsonw_kv_str(&w, "hub", holder);
    jsonw_key(&w, "metrics");
    jsonw_raw(&w, metrics.data, metrics.len);
    jsonw_key(&w, "series");
    jsonw_raw(&w, series.data, series.len);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    buf_putc(&j->body, '\n');
    /* telemetry.metrics_published {robot_id, metrics, published_at} */
    buf_t p = BUF_INIT;
    jsonw_t wp;
    jsonw_init(&wp, &p);
    jsonw_obj_open(&wp);
    jsonw_kv_str(&wp, "robot_id", j->source);
    jsonw_key(&wp, "metrics");
    jsonw_raw(&wp, metrics.data, metrics.len);
    jsonw_kv_str(&wp, "published_at", ts);
    jsonw_obj_close(&wp);
    if (!jsonw_error(&wp)) hub_emit(hub, "telemetry.metrics_published", p.data);
    buf_free(&p), buf_free(&metrics), buf_free(&series);
    j->status = jsonw_error(&w) ? 503 : 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static void h_source_metrics(http_req_t *r) {
    const char *p = r->path;
    const char *prefix = strncmp(p, "/api/v1/sources/", 16) == 0 ? "/api/v1/sources/"
                                                                  : "/api/telemetry/robots/";
    const char *id = p + strlen(prefix);
    const char *slash = strchr(id, '/');
    if (!slash || strcmp(slash, "/metrics") != 0 || slash == id ||
        (size_t)(slash - id) >= QPARAM_MAX) {
        http_respond_error(r, 404, "not_found", "use /api/v1/sources/{id}/metrics");
        return;
    }
    api_job_t *j = job_new(hub_source_metrics);
    if (j) snprintf(j->source, sizeof j->source, "%.*s", (int)(slash - id), id);
    job_submit(r, j);
}

/* GET /api/v1/alerts: rules, active alerts (pending and firing), recent transitions */
static int hub_alerts(hub_t *hub, api_job_t *j) {
    if (alert_engine_json(&hub->alerts, clk_unix(), &j->body) < 0) {
        job_error(j, 503, "out_of_memory", "rendering alerts");
        return HUB_CALL_DONE;
    }
    j->status = 200;
    j->ctype = "application/json";
    return HUB_CALL_DONE;
}

static void h_alerts(http_req_t *r) { job_submit(r, job_new(hub_alerts)); }

static const route_t routes[] = {
    /* the page itself takes ?token= (the browser opens it from a link); the files it
     * loads cannot carry a token, and are the same public code for everyone: no data */
    {"/", false, HM_GET | HM_HEAD, dashboard_handle, AUTH_READ, 0, NULL, ACCESS_QUERY_TOKEN},
    {"/assets/", true, HM_GET | HM_HEAD, dashboard_handle, AUTH_NONE, 0, NULL, 0},
    {"/api/v1/alerts", false, HM_GET | HM_HEAD, h_alerts, AUTH_READ, 0, "alerts", 0},
    {"/api/v1/trends", false, HM_GET | HM_HEAD, h_trends, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/sources", false, HM_GET | HM_HEAD, h_sources, AUTH_READ, 0, "sources", 0},
    {"/api/v1/sources/", true, HM_GET | HM_HEAD, h_source_metrics, AUTH_READ, 0, "metrics", 0},
    {"/api/telemetry/robots/", true, HM_GET | HM_HEAD, h_source_metrics, AUTH_READ, 0, "metrics",
     0},
    /* GET: the token's topics must cover ?type= (h_events_get) */
    {"/api/v1/events", false, HM_GET | HM_HEAD | HM_POST, h_events, AUTH_READ, AUTH_PUBLISH,
     NULL, 0},
    {"/api/v1/health", false, HM_GET | HM_HEAD, h_health, AUTH_NONE, 0, NULL, 0},
    {"/health", false, HM_GET | HM_HEAD, h_health, AUTH_NONE, 0, NULL, 0},
    {"/metrics", false, HM_GET | HM_HEAD, h_prom, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/metrics/prometheus", false, HM_GET | HM_HEAD, h_prom, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/metrics", false, HM_GET | HM_HEAD, h_metrics, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/summary", false, HM_GET | HM_HEAD, h_summary, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/series/", true, HM_GET | HM_HEAD, h_series, AUTH_READ, 0, "metrics", 0},
    {"/api/v1/ingest", false, HM_POST, h_ingest, AUTH_READ, AUTH_INGEST, NULL, 0},
    /* any valid token: what the connection then does is checked per message (ws_msg.c),
     * and what its URL asks for at once by access_ws_upgrade */
    {"/ws", false, HM_GET, ws_handshake, AUTH_ANY, 0, NULL, ACCESS_QUERY_TOKEN},
};

static const route_t *find_route(const char *path) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route_t *rt = &routes[i];
        if (rt->prefix ? strncmp(rt->path, path, strlen(rt->path)) == 0
                       : strcmp(rt->path, path) == 0)
            return rt;
    }
    return NULL;
}

unsigned api_route_methods(const char *path) {
    const route_t *rt = find_route(path);
    return rt ? rt->methods : 0;
}

static void allow_header(unsigned methods, char *out, size_t outlen) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{HM_GET, "GET"},       {HM_HEAD, "HEAD"},       {HM_POST, "POST"},
                 {HM_PUT, "PUT"},       {HM_DELETE, "DELETE"},   {HM_PATCH, "PATCH"},
                 {HM_OPTIONS, "OPTIONS"}};
    size_t n = (size_t)snprintf(out, outlen, "Allow: ");
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < outlen; i++) {
        if (!(methods & names[i].bit)) continue;
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", n > 7 ? ", " : "", names[i].name);
    }
    if (n < outlen) snprintf(out + n, outlen - n, "\r\n");
}

void api_handle(http_req_t *r) {
    if (!access_request(r)) return; /* Host, Origin, CORS preflight */
    const route_t *rt = find_route(r->path);
    if (!rt) {
        /* unknown paths are not public either: without a token they get 401, not 404 */
        if (!access_authorize(r, AUTH_ANY, NULL, 0)) return;
        char detail[300];
        snprintf(detail, sizeof detail, "no such path: %.256s", r->path);
        http_respond_error(r, 404, "not_found", detail);
        return;
    }
    if (!(rt->methods & r->method)) {
        char allow[96], detail[160];
        allow_header(rt->methods, allow, sizeof allow);
        snprintf(detail, sizeof detail, "%s is not allowed on %s", r->method_name, rt->path);
        buf_t b = BUF_INIT;
        buf_printf(&b, "{\"error\":\"method_not_allowed\",\"detail\":\"%s\"}\n", detail);
        http_respond(r, 405, "application/json", allow, b.data, b.len);
        buf_free(&b);
        return;
    }
    bool writes = r->method != HM_GET && r->method != HM_HEAD;
    if (!access_authorize(r, writes ? rt->post_scope : rt->scope, writes ? NULL : rt->topic,
                          rt->flags))
        return;
    rt->fn(r);
}
