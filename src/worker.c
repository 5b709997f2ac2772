#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "auth.h"
#include "config.h"
#include "conn.h"
#include "limit.h"
#include "hub.h"
#include "log.h"
#include "stream.h"
#include "source_session.h"
#include "event.h"
#include "ws.h"
#include "ws_msg.h"

/* Lag probe period: short enough to see a 100 ms stall, long enough to cost nothing. */
#define LAG_PERIOD_MS 100
#define LAG_WINDOW_TICKS 10
/* After a stop request, connections get this long to finish their close handshakes. */
#define STOP_GRACE_MS 500

/* ---- loop lag ------------------------------------------------------------------------ */

static void on_lag_timer(uv_timer_t *t) {
    loop_lag_t *l = (loop_lag_t *)t;
    uint64_t now = uv_hrtime();
    uint64_t late = now > l->expected_ns ? now - l->expected_ns : 0;
    if (late > l->window_max_ns) l->window_max_ns = late;
    if (++l->ticks >= LAG_WINDOW_TICKS) {
        atomic_store(&l->lag_ns, l->window_max_ns);
        l->window_max_ns = 0;
        l->ticks = 0;
    }
    atomic_store(&l->last_beat_ns, now);
    l->expected_ns = now + (uint64_t)LAG_PERIOD_MS * 1000000u;
}

int loop_lag_start(loop_lag_t *l, uv_loop_t *loop) {
    int rc = uv_timer_init(loop, &l->timer);
    if (rc) return rc;
    uint64_t now = uv_hrtime();
    l->expected_ns = now + (uint64_t)LAG_PERIOD_MS * 1000000u;
    l->window_max_ns = 0;
    l->ticks = 0;
    atomic_init(&l->lag_ns, 0);
    atomic_init(&l->last_beat_ns, now);
    return uv_timer_start(&l->timer, on_lag_timer, LAG_PERIOD_MS, LAG_PERIOD_MS);
}

double loop_lag_seconds(loop_lag_t *l, uint64_t now_ns) {
    uint64_t lag = atomic_load(&l->lag_ns);
    uint64_t beat = atomic_load(&l->last_beat_ns);
    uint64_t period = (uint64_t)LAG_PERIOD_MS * 1000000u;
    /* a loop stuck right now has not beaten for longer than one period */
    if (now_ns > beat + period && now_ns - beat - period > lag) lag = now_ns - beat - period;
    return (double)lag / 1e9;
}

/* ---- connections --------------------------------------------------------------------- */

void worker__add_conn(worker_t *w, conn_t *c) {
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&w->stats.connections, 1);
}

static void maybe_finish(worker_t *w);

void worker__remove_conn(worker_t *w, conn_t *c) {
    if (c->prev)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    atomic_fetch_sub(&w->stats.connections, 1);
    if (w->stopping) maybe_finish(w);
}

/* ---- balancing connections over the workers --------------------------------------- */

/* Every worker waits on the one listening socket, and whichever wakes first accepts
 * everything queued (libuv accepts until EAGAIN): a burst of connects lands mostly on one
 * worker. Measured with 1,000 subscribers: 569 / 432, and the busier worker sets the
 * fan-out's tail latency. So the worker that accepts keeps the connection only if no
 * other worker holds two fewer (counting those on their way there); else it hands the
 * socket over. */
static uint64_t load_of(worker_t *w) {
    return atomic_load(&w->stats.connections) + atomic_load(&w->incoming);
}

static worker_t *least_loaded(worker_t *w) {
    hub_t *hub = w->hub;
    worker_t *best = w;
    uint64_t mine = load_of(w), low = mine;
    for (int i = 0; i < hub->nworkers; i++) {
        worker_t *o = &hub->workers[i];
        if (o == w) continue; /* one stopping drops what it is handed (adopt_task) */
        uint64_t l = load_of(o);
        if (l < low) low = l, best = o;
    }
    return mine > low + 1 ? best : w;
}

typedef struct adopt_job {
    worker_t *w;
    int fd;
} adopt_job_t;

static void adopt_task(void *arg, int cancelled) {
    adopt_job_t *j = arg;
    worker_t *w = j->w;
    if (cancelled || w->stopping) {
        close(j->fd);
    } else {
        int rc = conn_adopt(w, j->fd);
        if (rc) log_warn("accept failed", "worker=%d error=%s", w->id, uv_strerror(rc));
    }
    atomic_fetch_sub(&w->incoming, 1); /* after conn_adopt counted it as a connection */
    free(j);
}

static int hand_over(worker_t *w, worker_t *to, uv_stream_t *server) {
    int fd;
    int rc = conn_take_pending(w, server, &fd);
    if (rc) return rc;
    adopt_job_t *j = malloc(sizeof *j);
    if (j) {
        j->w = to;
        j->fd = fd;
        atomic_fetch_add(&to->incoming, 1);
        if (inbox_post(&to->inbox, adopt_task, j) == 0) {
            atomic_fetch_add(&w->stats.handed_over_total, 1);
            return 0;
        }
        atomic_fetch_sub(&to->incoming, 1);
        free(j);
    }
    return conn_adopt(w, fd); /* cannot hand it over: serve it here */
}

static void on_connection(uv_stream_t *server, int status) {
    worker_t *w = server->data;
    if (status < 0) {
        log_warn("accept failed", "worker=%d error=%s", w->id, uv_strerror(status));
        return;
    }
    if (w->stopping) return;
    worker_t *to = least_loaded(w);
    int rc = to == w ? conn_accept(w, server) : hand_over(w, to, server);
    if (rc && rc != UV_EAGAIN)
        log_warn("accept failed", "worker=%d error=%s", w->id, uv_strerror(rc));
}

static void on_sweep(uv_timer_t *t) {
    worker_t *w = t->data;
    uint64_t now = uv_now(&w->loop);
    double worst = 0;
    conn_t *next;
    for (conn_t *c = w->conns; c; c = next) {
        next = c->next; /* conn_sweep may close c; it stays listed until its close cb */
        conn_sweep(c, now);
        if (c->proto == CONN_WS && !c->closing) {
            double f = ws_fill_ratio(c);
            if (f > worst) worst = f;
        }
    }
    atomic_store(&w->stats.ws_worst_fill_ppm, (uint64_t)(worst * 1e6));
}

/* ---- end-of-pass flush --------------------------------------------------------------- */

void worker_flush_later(worker_t *w, conn_t *c) {
    if (c->flush_pending) return;
    if (w->nflush == w->flush_cap) {
        uint32_t ncap = w->flush_cap ? w->flush_cap * 2 : 256;
        conn_t **nq = realloc(w->flushq, ncap * sizeof *nq);
        if (!nq) { /* cannot defer: write now */
            conn_flush(c);
            return;
        }
        w->flushq = nq;
        w->flush_cap = ncap;
    }
    c->flush_pending = true;
    w->flushq[w->nflush++] = c;
}

/* A flush of thousands of connections takes tens of milliseconds (a loopback write is
 * 4-10 us), and while it runs nothing is read: a publish waiting on this worker, and the
 * hub's next event, wait for the whole pass (measured: 5,000 subscribers x 100 events/s,
 * ack p50 28.6 ms against the ceiling's 8.3). So the flush runs in slices: after
 * FLUSH_SLICE_NS it stops, keeps the rest queued in order, and an idle handle makes the
 * loop poll without blocking before the next check phase goes on with them. Frames queued
 * meanwhile ride along: a connection not yet written gets them in the same write.
 * bench_ws_fanout, quiet machine, p99 of ev1k / ev5k: whole passes 12.6 / 73.0 ms; slices
 * of 2 ms 10.5 / 33.1, 1 ms 10.1 / 41.0, 0.5 ms 9.0-10.5 / 30.6-35.7 (4 runs), 0.25 ms
 * 10.1 / 32.4. */
#define FLUSH_SLICE_NS 500000u
#define FLUSH_CLOCK_EVERY 64 /* connections between looks at the clock */

static void on_flush_idle(uv_idle_t *h) { (void)h; /* only keeps the poll from blocking */ }

/* Runs after the poll phase. Connections closed meanwhile are still allocated here (libuv
 * frees them in the closing phase, which comes after check); those that are still queued
 * when they close leave the queue in worker_flush_forget. */
static void on_flush_check(uv_check_t *h) {
    worker_t *w = h->data;
    if (!w->nflush) return;
    uint64_t t0 = uv_hrtime();
    uint32_t i = 0;
    while (i < w->nflush) { /* conn_pass_end may queue more: nflush is re-read */
        conn_t *c = w->flushq[i++];
        c->flush_pending = false;
        conn_pass_end(c);
        if (i % FLUSH_CLOCK_EVERY == 0 && i < w->nflush && uv_hrtime() - t0 > FLUSH_SLICE_NS)
            break;
    }
    uint32_t left = w->nflush - i;
    if (left) memmove(w->flushq, w->flushq + i, left * sizeof *w->flushq);
    w->nflush = left;
    bool idle = uv_is_active((uv_handle_t *)&w->flush_idle);
    if (left && !idle)
        uv_idle_start(&w->flush_idle, on_flush_idle);
    else if (!left && idle)
        uv_idle_stop(&w->flush_idle);
}

void worker_flush_forget(worker_t *w, conn_t *c) {
    if (!c->flush_pending) return;
    for (uint32_t i = 0; i < w->nflush; i++)
        if (w->flushq[i] == c) {
            memmove(w->flushq + i, w->flushq + i + 1, (w->nflush - i - 1) * sizeof *w->flushq);
            w->nflush--;
            break;
        }
    c->flush_pending = false;
}

/* ---- live-metrics groups ------------------------------------------------------------- */

static wgroup_t *group_find(worker_t *w, uint32_t gid) {
    for (uint32_t i = 0; i < w->ngroups; i++)
        if (w->groups[i]->id == gid) return w->groups[i];
    return NULL;
}

int worker_group_add(worker_t *w, uint32_t gid, conn_t *c) {
    wgroup_t *g = group_find(w, gid);
    if (!g) {
        if (w->ngroups == w->gcap) {
            uint32_t ncap = w->gcap ? w->gcap * 2 : 8;
            wgroup_t **ng = realloc(w->groups, ncap * sizeof *ng);
            if (!ng) return -ENOMEM;
            w->groups = ng;
            w->gcap = ncap;
        }
        g = calloc(1, sizeof *g);
        if (!g) return -ENOMEM;
        g->id = gid;
        w->groups[w->ngroups++] = g;
    }
    if (g->n == g->cap) {
        uint32_t ncap = g->cap ? g->cap * 2 : 16;
        conn_t **nv = realloc(g->v, ncap * sizeof *nv);
        if (!nv) return -ENOMEM;
        g->v = nv;
        g->cap = ncap;
    }
    c->mgroup = gid;
    c->mslot = g->n;
    g->v[g->n++] = c;
    return 0;
}

void worker_group_remove(worker_t *w, conn_t *c) {
    if (!c->mgroup) return;
    wgroup_t *g = group_find(w, c->mgroup);
    c->mgroup = 0;
    if (!g || c->mslot >= g->n || g->v[c->mslot] != c) return;
    /* swap-remove: O(1) even when thousands leave at once */
    conn_t *last = g->v[--g->n];
    g->v[c->mslot] = last;
    last->mslot = c->mslot;
    if (g->n == 0) {
        for (uint32_t i = 0; i < w->ngroups; i++)
            if (w->groups[i] == g) {
                w->groups[i] = w->groups[--w->ngroups];
                break;
            }
        free(g->v);
        free(g);
    }
}

/* ---- event subscribers -------------------------------------------------------------- */

int worker_evsub_add(worker_t *w, conn_t *c) {
    if (c->evslot >= 0) return 0;
    if (w->nevsubs == w->evsubs_cap) {
        uint32_t ncap = w->evsubs_cap ? w->evsubs_cap * 2 : 64;
        conn_t **nv = realloc(w->evsubs, ncap * sizeof *nv);
        if (!nv) return -ENOMEM;
        w->evsubs = nv;
        w->evsubs_cap = ncap;
    }
    c->evslot = (int32_t)w->nevsubs;
    w->evsubs[w->nevsubs++] = c;
    return 0;
}

void worker_evsub_remove(worker_t *w, conn_t *c) {
    if (c->evslot < 0) return;
    uint32_t i = (uint32_t)c->evslot;
    conn_t *last = w->evsubs[--w->nevsubs];
    w->evsubs[i] = last;
    last->evslot = (int32_t)i;
    c->evslot = -1;
}

typedef struct event_job {
    worker_t *w;
    event_t *e;
} event_job_t;

static void event_task(void *arg, int cancelled) {
    event_job_t *j = arg;
    if (!cancelled)
        for (uint32_t i = 0; i < j->w->nevsubs; i++) ws_msg_deliver_event(j->w->evsubs[i], j->e);
    event_unref(j->e);
    free(j);
}

int worker_broadcast_event(worker_t *w, event_t *e) {
    event_job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    j->w = w;
    j->e = e;
    int rc = inbox_post(&w->inbox, event_task, j);
    if (rc) free(j);
    return rc;
}

typedef struct bcast_job {
    worker_t *w;
    stream_bcast_t *b;
} bcast_job_t;

static void broadcast_task(void *arg, int cancelled) {
    bcast_job_t *j = arg;
    stream_bcast_t *b = j->b;
    if (!cancelled) {
        for (uint32_t i = 0; i < b->n; i++) {
            const stream_bcast_entry_t *e = &b->e[i];
            wgroup_t *g = group_find(j->w, e->group);
            if (!g) continue;
            /* a connection closed by ws_msg_deliver leaves g only in its close callback,
             * after this loop, so indexes stay valid */
            for (uint32_t k = 0; k < g->n; k++) ws_msg_deliver(g->v[k], e->group, e->delta, e->full);
        }
    }
    stream_bcast_unref(b);
    free(j);
}

int worker_broadcast(worker_t *w, stream_bcast_t *b) {
    bcast_job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    j->w = w;
    j->b = b;
    int rc = inbox_post(&w->inbox, broadcast_task, j);
    if (rc) free(j);
    return rc;
}

/* ---- access policy and limits ------------------------------------------------------- */

typedef struct auth_job {
    worker_t *w;
    auth_t *a;
} auth_job_t;

static void auth_task(void *arg, int cancelled) {
    auth_job_t *j = arg;
    worker_t *w = j->w;
    if (cancelled) {
        auth_unref(j->a);
        free(j);
        return;
    }
    auth_t *old = w->auth;
    w->auth = j->a;
    conn_t *next;
    for (conn_t *c = w->conns; c; c = next) {
        next = c->next;
        access_recheck(c); /* tokens of old are re-pointed into the new policy, or revoked */
    }
    auth_unref(old);
    free(j);
}

int worker_set_auth(worker_t *w, auth_t *a) {
    auth_job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    j->w = w;
    j->a = a;
    int rc = inbox_post(&w->inbox, auth_task, j);
    if (rc) free(j);
    return rc;
}

#define LIMIT_LOG_MS 10000

void worker_limit_hit(worker_t *w, int limit, const char *peer) {
    limit_hit(&w->hub->limits, (limit_t)limit);
    if (limit < 0 || limit >= (int)(sizeof w->limit_log_ms / sizeof w->limit_log_ms[0])) return;
    uint64_t now = uv_now(&w->loop);
    if (w->limit_log_ms[limit] && now - w->limit_log_ms[limit] < LIMIT_LOG_MS) {
        w->limit_quiet[limit]++;
        return;
    }
    log_info("limit hit", "limit=%s peer=%s worker=%d unlogged_since_last=%llu",
             limit_name(limit), peer ? peer : "-", w->id,
             (unsigned long long)w->limit_quiet[limit]);
    w->limit_log_ms[limit] = now;
    w->limit_quiet[limit] = 0;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

/* Named for top -H and /proc (mc-io0, mc-io1, ...), and bound to w->cpu: two loops that
 * the scheduler lets share a core while the other runs something else both wait, and a
 * loop moved between cores loses its cache. bench_ws_fanout ev1k p99, four alternating
 * pairs on the quiet 2-core machine: bound 8.07, 7.35, 8.51, 9.03 ms; free 8.60, 10.17,
 * 8.77, 10.03 ms (ev5k 28.8 / 29.2 against 28.9 / 39.4). */
static void thread_main(void *arg) {
    worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof name, "mc-io%d", w->id);
    pthread_setname_np(pthread_self(), name);
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        if (rc)
            log_warn("cannot bind loop thread", "worker=%d cpu=%d error=\"%s\"", w->id, w->cpu,
                     strerror(rc));
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    hub_worker_done(w->hub, w);
}

static uint64_t sweep_period_ms(const config_t *cfg) {
    double m = cfg->http_header_timeout;
    if (cfg->http_idle_timeout < m) m = cfg->http_idle_timeout;
    if (cfg->ws_ping_interval < m) m = cfg->ws_ping_interval;
    if (cfg->ws_idle_timeout < m) m = cfg->ws_idle_timeout;
    /* a quarter of the shortest timeout keeps them accurate to 25%; 1 s is plenty else */
    uint64_t ms = (uint64_t)(m * 1000 / 4);
    return ms < 50 ? 50 : ms > 1000 ? 1000 : ms;
}

static void close_on_fail(uv_handle_t *h, void *arg) {
    worker_t *w = arg;
    if (uv_is_closing(h)) return;
    if (h == (uv_handle_t *)&w->inbox.poll)
        inbox_close(&w->inbox, NULL);
    else
        uv_close(h, NULL);
}

int worker_init(worker_t *w, int id, hub_t *hub, const config_t *cfg, int listen_fd) {
    memset(w, 0, sizeof *w);
    w->id = id;
    w->cpu = -1; /* the hub assigns one after init when [server] pin_threads is on */
    w->hub = hub;
    w->cfg = cfg;
    w->rng = uv_hrtime() ^ ((uint64_t)(id + 1) * 0x9e3779b97f4a7c15ULL);
    w->rbuf = malloc(WORKER_RBUF_SIZE);
    if (!w->rbuf) return UV_ENOMEM;
    int rc = uv_loop_init(&w->loop);
    if (rc) goto fail_loop;
    w->loop.data = w;
    if ((rc = inbox_init(&w->inbox, &w->loop))) goto fail;
    if ((rc = uv_timer_init(&w->loop, &w->sweep))) goto fail;
    w->sweep.data = w;
    if ((rc = uv_timer_init(&w->loop, &w->grace))) goto fail;
    w->grace.data = w;
    if ((rc = loop_lag_start(&w->lag, &w->loop))) goto fail;
    if ((rc = srcs_worker_init(w))) goto fail;
    if ((rc = uv_check_init(&w->loop, &w->flush_check))) goto fail;
    w->flush_check.data = w;
    if ((rc = uv_check_start(&w->flush_check, on_flush_check))) goto fail;
    if ((rc = uv_idle_init(&w->loop, &w->flush_idle))) goto fail;
    w->flush_idle.data = w;
    uint64_t period = sweep_period_ms(cfg);
    if ((rc = uv_timer_start(&w->sweep, on_sweep, period, period))) goto fail;
    if ((rc = uv_tcp_init(&w->loop, &w->listener))) goto fail;
    w->listener.data = w;
    int fd = dup(listen_fd);
    if (fd < 0) {
        rc = uv_translate_sys_error(errno);
        goto fail;
    }
    if ((rc = uv_tcp_open(&w->listener, fd))) {
        close(fd);
        goto fail;
    }
    if ((rc = uv_listen((uv_stream_t *)&w->listener, 4096, on_connection))) goto fail;
    w->listening = true;
    return 0;
fail:
    /* handles initialised so far are closed by running the loop once */
    uv_walk(&w->loop, close_on_fail, w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
fail_loop:
    free(w->rbuf);
    buf_free(&w->tls_plain);
    buf_free(&w->tls_cipher);
    w->rbuf = NULL;
    return rc;
}

int worker_start(worker_t *w) { return uv_thread_create(&w->thread, thread_main, w); }

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void maybe_finish(worker_t *w) {
    if (w->conns) return;
    /* every connection is gone: close our own handles; uv_run returns afterwards */
    close_handle((uv_handle_t *)&w->sweep);
    close_handle((uv_handle_t *)&w->grace);
    close_handle((uv_handle_t *)&w->lag.timer);
    close_handle((uv_handle_t *)&w->flush_check);
    close_handle((uv_handle_t *)&w->flush_idle);
    srcs_worker_close(w);
    if (!uv_is_closing((uv_handle_t *)&w->inbox.poll)) inbox_close(&w->inbox, NULL);
}

static void on_grace(uv_timer_t *t) {
    worker_t *w = t->data;
    conn_t *next;
    unsigned n = 0;
    for (conn_t *c = w->conns; c; c = next) {
        next = c->next;
        n++;
        conn_close(c);
    }
    /* says which clients held the stop up (never answered the close, or an answer that
     * would not drain): an operator sees why the exit took the grace period */
    if (n)
        log_info("shutdown grace over: closing connections", "worker=%d connections=%u "
                 "grace_ms=%d", w->id, n, STOP_GRACE_MS);
}

static void stop_task(void *arg, int cancelled) {
    worker_t *w = arg;
    if (cancelled || w->stopping) return;
    w->stopping = true;
    if (w->listening) {
        uv_close((uv_handle_t *)&w->listener, NULL);
        w->listening = false;
    }
    conn_t *next;
    for (conn_t *c = w->conns; c; c = next) {
        next = c->next;
        if (c->proto == CONN_WS)
            ws_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        else
            conn_close_after_flush(c);
    }
    uv_timer_start(&w->grace, on_grace, STOP_GRACE_MS, 0);
    maybe_finish(w);
}

int worker_request_stop(worker_t *w) { return inbox_post(&w->inbox, stop_task, w); }

void worker_discard(worker_t *w) {
    auth_unref(w->auth);
    w->auth = NULL;
    if (!w->rbuf) return;
    uv_walk(&w->loop, close_on_fail, w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    free(w->rbuf);
    buf_free(&w->tls_plain);
    buf_free(&w->tls_cipher);
    w->rbuf = NULL;
}

static void free_groups(worker_t *w) {
    for (uint32_t i = 0; i < w->ngroups; i++) {
        free(w->groups[i]->v);
        free(w->groups[i]);
    }
    free(w->groups);
    w->groups = NULL;
    w->ngroups = w->gcap = 0;
}

void worker_join(worker_t *w) {
    uv_thread_join(&w->thread);
    /* w->inbox stays posted-to-safe (closed) until hub_close frees the workers */
    free_groups(w);
    free(w->flushq);
    w->flushq = NULL;
    free(w->evsubs);
    w->evsubs = NULL;
    auth_unref(w->auth);
    w->auth = NULL;
    uv_loop_close(&w->loop);
    free(w->rbuf);
    buf_free(&w->tls_plain);
    buf_free(&w->tls_cipher);
    w->rbuf = NULL;
}
