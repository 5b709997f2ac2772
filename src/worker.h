/* worker — one I/O loop thread and the shard of connections it owns.
 *
 * The hub starts one worker per core. All workers watch the same listening socket (each
 * through its own dup of the descriptor): the kernel hands each new connection to one of
 * them, and from then on that connection lives and dies on that worker's thread. Other
 * threads reach a worker only through its inbox.
 *
 * Counters other threads read (health, /metrics) are atomics in worker_stats_t. */
#ifndef MC_WORKER_H
#define MC_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "inbox.h"

struct hub;
struct conn;
struct config;

#define WORKER_RBUF_SIZE (64 * 1024)

/* Event-loop lag, measured by a repeating timer: how late it fired. */
typedef struct loop_lag {
    uv_timer_t timer;
    uint64_t expected_ns;
    uint64_t window_max_ns;
    unsigned ticks;
    _Atomic uint64_t lag_ns;     /* max lateness over the last window (~1 s) */
    _Atomic uint64_t last_beat_ns; /* uv_hrtime() of the last timer run */
} loop_lag_t;

int loop_lag_start(loop_lag_t *l, uv_loop_t *loop);
/* Current lag as seen from any thread: also catches a loop that is stuck right now. */
double loop_lag_seconds(loop_lag_t *l, uint64_t now_ns);

typedef struct worker_stats {
    _Atomic uint64_t connections;    /* open now */
    _Atomic uint64_t handed_over_total; /* accepted here, served by a less loaded worker */
    _Atomic uint64_t ws_connections; /* open now */
    _Atomic uint64_t accepted_total;
    _Atomic uint64_t http_requests_total;
    _Atomic uint64_t http_errors_total; /* answers >= 400 */
    _Atomic uint64_t ws_bad_messages_total;
    _Atomic uint64_t ws_sent_total;
    _Atomic uint64_t ws_dropped_total;
    _Atomic uint64_t ws_subscribers;       /* connections with at least one topic, now */
    _Atomic uint64_t ws_worst_fill_ppm;    /* fullest queue at the last sweep, parts per 1e6 */
    _Atomic uint64_t tls_handshakes[2];    /* completed: [0] TLS 1.2, [1] TLS 1.3 */
    _Atomic uint64_t tls_failures[8];      /* handshakes failed, by tls_fail_t */
    _Atomic uint64_t tls_errors_total;     /* TLS errors after the handshake */
} worker_stats_t;

/* Connections of one live-metrics group on this worker (see stream.h). */
typedef struct wgroup {
    uint32_t id;
    struct conn **v;
    uint32_t n, cap;
} wgroup_t;

typedef struct worker {
    int id;
    int cpu;                         /* the CPU its thread binds itself to; -1: none */
    struct hub *hub;                 /* borrowed; outlives the worker */
    const struct config *cfg;        /* borrowed; immutable while running */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    inbox_t inbox;
    uv_timer_t sweep;  /* 1 s: timeouts, keepalive pings */
    uv_timer_t grace;  /* shutdown: force-close stragglers */
    loop_lag_t lag;
    struct conn *conns; /* intrusive list of owned connections */
    uint64_t next_conn_id;
    char *rbuf;        /* shared read buffer: data is consumed inside read_cb */
    buf_t tls_plain;   /* TLS: frames gathered for one encryption (shared scratch) */
    buf_t tls_cipher;  /* TLS: records produced, before the kernel takes them (scratch) */
    bool rbuf_busy;
    bool stopping;
    bool listening;
    worker_stats_t stats;
    _Atomic uint64_t incoming; /* connections handed to this worker, not yet adopted */
    wgroup_t **groups; /* live-metrics groups with members here */
    uint32_t ngroups, gcap;
    struct conn **evsubs; /* connections subscribed to any event topic */
    uint32_t nevsubs, evsubs_cap;
    uint64_t rng; /* event id suffixes for events published through this worker */
    struct conn **srcs; /* source sessions (source_session.c) */
    uint32_t nsrcs, srcs_cap;
    uv_idle_t src_idle;   /* folds queued samples while there are any */
    uv_timer_t src_timer; /* 100 ms hand-over, 1 s session metrics */
    uint64_t src_ticks;
    uv_check_t flush_check;   /* after each poll: write what the pass queued */
    uv_idle_t flush_idle;     /* active while a sliced flush has connections left */
    struct conn **flushq;     /* connections with frames queued, in order */
    uint32_t nflush, flush_cap;
    struct auth *auth;        /* the access policy in force here; one reference */
    uint64_t limit_log_ms[32]; /* last "limit hit" log line per limit (rate-limited) */
    uint64_t limit_quiet[32];  /* hits not logged since */
} worker_t;

/* Prepares w (loop, handles) to serve the listening socket listen_fd (dup'd; the caller
 * keeps its own). 0 or a negative UV error. */
int worker_init(worker_t *w, int id, struct hub *hub, const struct config *cfg, int listen_fd);
/* Starts the thread. */
int worker_start(worker_t *w);
/* Any thread: asks the worker to close its listener, send WebSocket clients 1001, finish
 * writes within a short grace period and stop. It then calls hub_worker_done(). */
int worker_request_stop(worker_t *w);
/* After the thread ended (hub_worker_done was called): join it and free everything. */
void worker_join(worker_t *w);

struct stream_bcast;
struct event;
/* Any thread: deliver a published event to this worker's event subscribers (takes the
 * reference). 0 or -ESHUTDOWN / -ENOMEM (the caller still owns it). */
int worker_broadcast_event(worker_t *w, struct event *e);
/* Worker thread: list c among the event subscribers / take it out. */
int worker_evsub_add(worker_t *w, struct conn *c);
void worker_evsub_remove(worker_t *w, struct conn *c);
/* Any thread: queue one push's frames on this worker's subscribers (takes one reference
 * to b). 0 or -ESHUTDOWN (the caller still owns its reference). */
int worker_broadcast(worker_t *w, struct stream_bcast *b);
/* Worker thread: list c in group gid / take it out again. 0 or -ENOMEM. */
int worker_group_add(worker_t *w, uint32_t gid, struct conn *c);
void worker_group_remove(worker_t *w, struct conn *c);

/* Worker thread: write c's queue at the end of this loop pass (after every inbox task and
 * read of the pass), so frames queued for it meanwhile share one writev. */
void worker_flush_later(worker_t *w, struct conn *c);
/* Worker thread: c is closing; takes it off the flush queue (which a sliced flush may
 * carry past the loop pass that frees c). */
void worker_flush_forget(worker_t *w, struct conn *c);

/* Any thread: puts policy a in force on this worker (takes the reference); the worker
 * re-checks its WebSocket connections and drops its old policy. 0, or -ESHUTDOWN (the
 * caller still owns the reference). */
int worker_set_auth(worker_t *w, struct auth *a);

/* Worker thread: a limit was hit by connection peer: counts it and logs it, at most one
 * line per limit per 10 s (with how many hits went unlogged meanwhile). */
void worker_limit_hit(worker_t *w, int limit, const char *peer);

/* Frees a worker that was initialised but never started. */
void worker_discard(worker_t *w);

/* For conn.c: list membership. */
void worker__add_conn(worker_t *w, struct conn *c);
void worker__remove_conn(worker_t *w, struct conn *c);

#endif
