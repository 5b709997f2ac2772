#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "hub.h"
#include "jsonw.h"
#include "log.h"
#include "view.h"
#include "worker.h"
#include "ws.h"

/* Change pushes: at most one per this long (the contract says one per second per
 * subscription). */
#define CHANGE_INTERVAL_NS 1000000000ull
/* A tick due this little after a change push would be is as good as the change push
 * (and covers a tick that fires up to a millisecond early: libuv counts whole ms). */
#define TICK_SLACK_NS 5000000ull

void stream_bcast_unref(stream_bcast_t *b) {
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
    for (uint32_t i = 0; i < b->n; i++) {
        frame_unref(b->e[i].delta);
        frame_unref(b->e[i].full);
    }
    free(b);
}

static stream_group_t *find(stream_t *s, uint32_t id) {
    for (uint32_t i = 0; i < s->ngroups; i++)
        if (s->groups[i]->id == id) return s->groups[i];
    return NULL;
}

/* One metrics:update for a group. full: every matching series; else those changed since
 * the group's last push. Returns a shared frame, or NULL (ENOMEM, or a change push with
 * nothing to say when skip_empty). */
static frame_t *render(stream_t *s, stream_group_t *g, bool full, const char *reason,
                       const buf_t *summary, double now, bool skip_empty) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "metrics:update");
    jsonw_kv_uint(&w, "seq", ++s->seq);
    jsonw_kv_str(&w, "reason", reason);
    jsonw_kv_bool(&w, "full", full);
    jsonw_key(&w, "data");
    jsonw_obj_open(&w);
    jsonw_key(&w, "series");
    jsonw_arr_open(&w);
    view_filter_t f = {g->match, g->source};
    uint32_t n = 0;
    if (full) {
        uint32_t nf;
        family_t *const *fams = registry_families(s->reg, &nf);
        for (uint32_t i = 0; i < nf; i++)
            for (uint32_t j = 0; j < fams[i]->n; j++)
                if (view_filter_match(&f, fams[i]->v[j])) {
                    view_series_json(&w, fams[i]->v[j]);
                    n++;
                }
    } else {
        for (uint32_t i = 0; i < s->reg->nchanged; i++) {
            series_t *se = s->reg->changed[i];
            if (se->change_seq > g->pushed_seq && view_filter_match(&f, se)) {
                view_series_json(&w, se);
                n++;
            }
        }
    }
    if (!n && skip_empty) {
        s->seq--; /* nothing was sent under this number */
        buf_free(&b);
        return NULL;
    }
    jsonw_arr_close(&w);
    jsonw_key(&w, "summary");
    jsonw_raw(&w, summary->data, summary->len);
    jsonw_obj_close(&w);
    char ts[CLK_ISO_LEN];
    clk_iso8601(now, ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    frame_t *fr = jsonw_error(&w) == 0 ? ws_frame_text(b.data, b.len, FRAME_CONFLATE) : NULL;
    buf_free(&b);
    return fr;
}

static void render_summary(stream_t *s, double now, buf_t *out) {
    hub_self_t self;
    hub_self_snapshot(s->hub, &self);
    view_summary_json(&self, now, out);
    while (out->len && out->data[out->len - 1] == '\n') out->data[--out->len] = '\0';
}

static void push(stream_t *s, bool tick) {
    if (s->ngroups == 0) {
        if (tick) registry_push_window(s->reg);
        return;
    }
    double now = clk_unix();
    buf_t summary = BUF_INIT;
    render_summary(s, now, &summary);
    if (!summary.data) buf_puts(&summary, "{}");
    stream_bcast_t *b = malloc(sizeof *b + s->ngroups * sizeof b->e[0]);
    if (!b) {
        buf_free(&summary);
        log_error("live update skipped", "error=\"out of memory\"");
        return;
    }
    atomic_init(&b->refs, 1);
    b->n = 0;
    for (uint32_t i = 0; i < s->ngroups; i++) {
        stream_group_t *g = s->groups[i];
        frame_t *delta = render(s, g, false, tick ? "tick" : "change", &summary, now, !tick);
        frame_t *full = g->want_full ? render(s, g, true, tick ? "tick" : "change", &summary,
                                              now, false)
                                     : NULL;
        g->want_full = false;
        g->pushed_seq = s->reg->change_seq;
        if (!delta && !full) continue;
        b->e[b->n].group = g->id;
        b->e[b->n].delta = delta;
        b->e[b->n].full = full;
        b->n++;
        s->frames += (delta != NULL) + (full != NULL);
    }
    buf_free(&summary);
    if (tick) registry_push_window(s->reg);
    s->pushes++;
    if (b->n == 0) {
        stream_bcast_unref(b);
        return;
    }
    hub_t *hub = s->hub;
    for (int i = 0; i < hub->nworkers; i++) {
        atomic_fetch_add(&b->refs, 1);
        if (worker_broadcast(&hub->workers[i], b) < 0) stream_bcast_unref(b);
    }
    stream_bcast_unref(b);
}

/* Ticks run on an absolute schedule (start + k·tick): a repeating libuv timer re-arms
 * from when it ran, so every late run would push all later ticks back and a busy loop
 * would quietly deliver fewer than 1/tick updates a second. A loop more than a tick
 * behind skips ahead rather than bursting. */
static void on_tick(uv_timer_t *t);

static void arm_tick(stream_t *s) {
    /* the timer counts from the loop's cached time, which lags the clock by however long
     * this pass has run: refresh it, or the tick fires that much early */
    uv_update_time(s->tick.loop);
    uint64_t now = uv_hrtime();
    uint64_t tick_ns = (uint64_t)(s->tick_s * 1e9);
    s->tick_next_ns += tick_ns;
    if (s->tick_next_ns + tick_ns < now) s->tick_next_ns = now;
    uint64_t delay = s->tick_next_ns > now ? (s->tick_next_ns - now + 999999) / 1000000 : 0;
    uv_timer_start(&s->tick, on_tick, delay, 0);
}

static void on_tick(uv_timer_t *t) {
    stream_t *s = t->data;
    hub_on_tick(s->hub); /* alert rules see the registry this push shows */
    push(s, true);
    s->last_push_ns = uv_hrtime();
    /* the tick carried every change so far: a change push armed for them has nothing
     * left to say, and the next change schedules from this push */
    if (s->change_armed) {
        uv_timer_stop(&s->change);
        s->change_armed = false;
    }
    arm_tick(s);
}

static void on_change(uv_timer_t *t) {
    stream_t *s = t->data;
    s->change_armed = false;
    s->last_push_ns = uv_hrtime();
    push(s, false);
}

/* A change goes out at once after a quiet interval, else one interval after the last
 * push (trailing edge: the burst's last value is in the push that ends it). Ticks count
 * as pushes: when the next tick is due no later than the change push would be, the tick
 * carries the change and no change push is armed. At the default --tick 1 that is every
 * change, so each subscriber gets one update a second instead of a tick plus a change
 * push at an unrelated phase (half the frames, writes and bytes for the same data). */
void stream_changed(stream_t *s) {
    if (s->change_armed || s->ngroups == 0) return;
    uint64_t now = uv_hrtime();
    uint64_t due = now;
    if (s->last_push_ns && s->last_push_ns + CHANGE_INTERVAL_NS > now)
        due = s->last_push_ns + CHANGE_INTERVAL_NS;
    if (s->tick_next_ns <= due + TICK_SLACK_NS) return;
    uv_update_time(s->change.loop); /* as in arm_tick: never early against last_push_ns */
    uint64_t delay_ms = (due - now + 999999) / 1000000;
    uv_timer_start(&s->change, on_change, delay_ms, 0);
    s->change_armed = true;
}

int stream_init(stream_t *s, hub_t *hub, registry_t *reg, uv_loop_t *loop, double tick_s) {
    memset(s, 0, sizeof *s);
    s->hub = hub;
    s->reg = reg;
    s->tick_s = tick_s;
    s->next_id = 1;
    int rc = uv_timer_init(loop, &s->tick);
    if (rc) return rc;
    rc = uv_timer_init(loop, &s->change);
    if (rc) return rc;
    s->tick.data = s->change.data = s;
    return 0;
}

void stream_start(stream_t *s) {
    s->tick_next_ns = uv_hrtime();
    arm_tick(s);
}

void stream_close(stream_t *s) {
    if (!uv_is_closing((uv_handle_t *)&s->tick)) uv_close((uv_handle_t *)&s->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->change)) uv_close((uv_handle_t *)&s->change, NULL);
    for (uint32_t i = 0; i < s->ngroups; i++) {
        free(s->groups[i]->match);
        free(s->groups[i]->source);
        free(s->groups[i]);
    }
    free(s->groups);
    s->groups = NULL;
    s->ngroups = s->cap = 0;
}

uint32_t stream_subscribe(stream_t *s, const char *match, const char *source, frame_t **full) {
    *full = NULL;
    match = match ? match : "";
    source = source ? source : "";
    stream_group_t *g = NULL;
    for (uint32_t i = 0; i < s->ngroups && !g; i++)
        if (strcmp(s->groups[i]->match, match) == 0 && strcmp(s->groups[i]->source, source) == 0)
            g = s->groups[i];
    if (!g) {
        if (s->ngroups == s->cap) {
            uint32_t ncap = s->cap ? s->cap * 2 : 8;
            stream_group_t **ng = realloc(s->groups, ncap * sizeof *ng);
            if (!ng) return 0;
            s->groups = ng;
            s->cap = ncap;
        }
        g = calloc(1, sizeof *g);
        if (!g || !(g->match = strdup(match)) || !(g->source = strdup(source))) {
            if (g) free(g->match);
            free(g);
            return 0;
        }
        g->id = s->next_id++;
        if (s->next_id == 0) s->next_id = 1;
        g->pushed_seq = s->reg->change_seq;
        s->groups[s->ngroups++] = g;
    }
    g->refs++;
    double now = clk_unix();
    buf_t summary = BUF_INIT;
    render_summary(s, now, &summary);
    if (!summary.data) buf_puts(&summary, "{}");
    *full = render(s, g, true, "tick", &summary, now, false); /* the contract knows tick and change */
    buf_free(&summary);
    return g->id;
}

void stream_unsubscribe(stream_t *s, uint32_t id) {
    for (uint32_t i = 0; i < s->ngroups; i++) {
        stream_group_t *g = s->groups[i];
        if (g->id != id) continue;
        if (--g->refs == 0) {
            free(g->match);
            free(g->source);
            free(g);
            s->groups[i] = s->groups[--s->ngroups];
        }
        return;
    }
}

void stream_request_full(stream_t *s, uint32_t id) {
    stream_group_t *g = find(s, id);
    if (g) g->want_full = true;
}
