/* hub — the daemon as a whole: the control thread and the workers it runs.
 *
 * The hub thread (main) owns the listening socket, signals, the periodic data-directory
 * probe and everything global: the series registry, the store queue, the event log, the
 * alert rules and their state (evaluated at every stream tick), the periodic report. Connections live on the workers (worker.h). The hub starts the workers,
 * and on SIGINT/SIGTERM asks each to stop, waits for all, and returns from hub_run.
 *
 * Shared with the workers, read-only or atomic: the config, the probe result and the
 * loop-lag figures (hub_health_input); the critical alerts health reports are a copy
 * the hub refreshes under health_mu whenever they change. */
#ifndef MC_HUB_H
#define MC_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "alert.h"
#include "cursor.h"
#include "access.h"
#include "auth.h"
#include "health.h"
#include "host_source.h"
#include "inbox.h"
#include "limit.h"
#include "ingest_stats.h"
#include "ingest_udp.h"
#include "registry.h"
#include "selfstats.h"
#include "stream.h"
#include "eventlog.h"
#include "sources.h"
#include "store.h"
#include "webhook.h"
#include "worker.h"

struct config;

/* Seconds of ingest totals the drop-rate health check looks back over. */
#define HUB_DROP_WINDOW 60

#define HUB_ERR_LEN 512

typedef struct hub {
    const struct config *cfg; /* borrowed; outlives the hub */
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t probe_timer;
    loop_lag_t lag;
    inbox_t inbox;
    worker_t *workers; /* owned array */
    int nworkers;
    int workers_started;
    int workers_done;
    int listen_fd;
    char listen_addr[80]; /* as bound (the real port when 0 was asked) */
    double started_unix;
    uint64_t started_ns;
    bool stopping;
    _Atomic int data_dir_errno; /* 0 = writable */

    registry_t reg;          /* hub thread only */
    ingest_stats_t istats;   /* atomics: every thread counts here */
    ingest_udp_t *udp;       /* NULL with --statsd off */
    char statsd_addr[80];
    _Atomic int batches_pending; /* handed to the inbox, not yet applied */
    uv_timer_t roll_timer;   /* closes each 1 s interval at the wall-clock second */
    uint32_t last_roll_sec;  /* the boundary the last roll closed at */
    /* previous second's totals, for the rates of the summary */
    uint64_t prev_lines, prev_rejected, prev_dropped;
    double prev_cpu, prev_roll_unix;
    double lines_rate, rejected_rate, dropped_rate, cpu_percent;
    procstat_t proc; /* read once per second, at the roll */
    stream_t stream; /* live metrics: groups, tick, change pushes */
    eventlog_t events;             /* retained window; seq (hub thread) */
    _Atomic uint64_t events_total; /* published */
    uint64_t rng;                  /* event id suffixes (hub thread) */
    sources_t sources;             /* every source seen (hub thread) */
    store_t *store;                /* SQLite: points, rollups, events */
    struct pending_event *pend_head, *pend_tail; /* sealed, on their way to disk */
    store_point_t *pts;            /* the points of the roll in progress */
    size_t npts, pts_cap;
    size_t pts_hint;               /* how many the last roll handed over */
    uv_timer_t aggregate_timer;
    uint64_t aggregate_jobs;

    alert_engine_t alerts;   /* rules and their state (hub thread) */
    webhook_t *webhook;      /* the delivery thread */
    uint64_t webhook_drop_streak; /* deliveries refused since the last accepted one */
    char external_url[96];   /* http://listen-addr, for links in webhook bodies */
    uv_timer_t report_timer; /* the periodic logfmt summary */
    /* ingest totals at each of the last HUB_DROP_WINDOW + 1 rolls (a ring) */
    uint64_t win_lines[HUB_DROP_WINDOW + 1], win_drops[HUB_DROP_WINDOW + 1];
    uint32_t win_pos, win_n;
    _Atomic uint64_t drops_1m, accepted_1m;
    /* what health shows of the critical alerts: refreshed by the hub, read by workers */
    uv_mutex_t health_mu;
    bool health_mu_ready;
    uint64_t crit_version_shown;
    int ncrit;
    unsigned crit_more;
    health_alert_t crit[HEALTH_MAX_ALERTS];
    struct tls_server *tls; /* --tls-cert: the TLS context the workers' connections use;
                             * owned, NULL for plain HTTP */
    auth_t *auth;          /* the access policy in force (hub thread; workers hold refs) */
    access_stats_t access; /* atomics: refusals by reason */
    limit_stats_t limits;  /* atomics: limit hits */
    iplimits_t iplim;      /* connection admission, shared by the workers */
    bool iplim_ready;
    /* before the workers stop (see hub_set_prestop) */
    void (*prestop_fn)(void *ctx);
    void *prestop_ctx;
    uv_timer_t prestop_timer;
    bool prestop_waiting;
    host_source_t *host;          /* the built-in source `host`; NULL with --host-metrics off */
    _Atomic int host_pending;     /* host batches handed to the inbox, not yet applied */
    uint64_t host_rejected;       /* host samples the registry refused (hub thread) */
    /* scale-out (--nats): NULL when standalone */
    struct cluster *cluster;
    char hub_id[HUB_ID_MAX + 1]; /* [nats] hub_id or the derived default */
    cursor_t cvec;               /* per origin, the last oseq sealed into the log (hub thread) */
} hub_t;

/* Binds the listening socket and prepares the workers. On failure returns -1 with one
 * line in err naming the setting (the caller exits 2). */
int hub_open(hub_t *hub, const struct config *cfg, char err[HUB_ERR_LEN]);
/* Starts the workers and runs the hub loop until a stop signal. Returns the exit status. */
int hub_run(hub_t *hub);
/* Frees what hub_open allocated. */
void hub_close(hub_t *hub);

/* Something that must end while the workers still serve connections: the --demo sources
 * close their sessions through them, so their close events are real. On SIGINT/SIGTERM
 * the hub calls fn(ctx) on its own thread and waits for hub_prestop_done() — at most
 * HUB_PRESTOP_MS — before it stops the workers. Hub thread, before or during hub_run.
 * One hook; a second call replaces the first. */
#define HUB_PRESTOP_MS 3000
void hub_set_prestop(hub_t *hub, void (*fn)(void *ctx), void *ctx);
/* Any thread: what the prestop hook started has finished. */
void hub_prestop_done(hub_t *hub);

/* Work for the hub thread on behalf of a worker: fn(hub, arg, call) runs on the hub
 * thread, then done(arg, 0) back on worker w's thread. fn returns HUB_CALL_DONE, or
 * HUB_CALL_LATER when it finishes asynchronously (an event on its way to disk, a store
 * query): it then calls hub_call_finish(call) on the hub thread when ready. If either
 * side is shutting down, done runs with cancelled = 1 (possibly on the hub thread) and
 * must then only free arg. 0, or -ESHUTDOWN / -ENOMEM (nothing ran; the caller still
 * owns arg). */
typedef struct hub_call_job hub_call_t;
enum { HUB_CALL_DONE = 0, HUB_CALL_LATER = 1 };
typedef int (*hub_call_fn)(hub_t *hub, void *arg, hub_call_t *call);
typedef void (*hub_done_fn)(void *arg, int cancelled);
int hub_call(hub_t *hub, worker_t *w, hub_call_fn fn, hub_done_fn done, void *arg);
void hub_call_finish(hub_call_t *call);

/* Any thread: hands an ingest batch to the registry (ownership passes); the moment of the
 * call decides which second its samples belong to. 0 or -ESHUTDOWN. */
int hub_submit_batch(hub_t *hub, agg_batch_t *b);
/* Hub thread: merges b into the registry (b stays the caller's) as handed over at `at`
 * (unix seconds): every second that ended before `at` is closed first, however late the
 * hub gets to it. Counts accepted lines and refusals by transport into hub->istats and
 * fills res. */
void hub_apply_batch(hub_t *hub, const agg_batch_t *b, double at, registry_result_t *res);

/* Hub thread: merges a batch another hub ingested (through NATS; b stays the caller's),
 * counted apart from local ingest and never bridged again. */
void hub_apply_remote_batch(hub_t *hub, const agg_batch_t *b, registry_result_t *res);
/* Hub thread: a local source came online or went offline (the cluster announces it). */
void hub_sources_changed(hub_t *hub);
/* Hub thread: whether event e is covered by cursor c (cursor.h): e's origin and origin seq
 * (an event from before clustering counts as this hub's own, oseq = seq). */
bool hub_event_covered(const hub_t *hub, const cursor_t *c, const event_t *e);
/* Hub thread: whether a client at cursor c missed events no longer retained (it must
 * resync). */
bool hub_cursor_too_old(const hub_t *hub, const cursor_t *c);

/* Hub thread: gives e its seq and hands it to the store; once it is on disk it enters
 * the retained window, goes to every worker's subscribers and cb(hub, e, 0, arg) runs
 * (the publisher's ack). While the disk fails, events wait (the store retries them, and
 * health reports it): an acknowledged event is never one that could be lost. Takes over
 * the caller's reference. 0 or -ENOMEM (then nothing was published; cb is not called). */
typedef void (*hub_publish_cb)(hub_t *hub, event_t *e, int rc, void *arg);
int hub_publish(hub_t *hub, event_t *e, hub_publish_cb cb, void *arg);
/* Hub thread: builds and publishes a built-in event (type, payload object JSON). */
void hub_emit(hub_t *hub, const char *type, const char *payload_json);

/* Hub thread: the stream is about to push a tick; evaluates the alert rules first, so the
 * push and the alerts see the same registry. */
void hub_on_tick(hub_t *hub);

/* Hub thread: replaces the alert rules with next's [alert.*] sections (SIGHUP). On a bad
 * rule returns -EINVAL with err filled and the running rules untouched. */
int hub_reload_alerts(hub_t *hub, const struct config *next, char err[ALERT_ERR_LEN],
                      alert_reload_t *out);
/* Hub thread: puts a new access policy in force (a reload): takes over the caller's
 * reference, hands one to every worker (which re-checks its WebSocket connections with
 * it, see access_recheck) and drops the old one. */
void hub_set_auth(hub_t *hub, auth_t *a);

/* Hub thread: the figures /metrics and /api/v1/summary show. */
void hub_self_snapshot(hub_t *hub, hub_self_t *out);

/* Any thread: a worker's loop has ended. */
void hub_worker_done(hub_t *hub, worker_t *w);
/* Any thread: a consistent-enough snapshot for the health verdict. */
void hub_health_input(hub_t *hub, health_input_t *in);

#endif
