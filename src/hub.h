/* hub — the daemon as a whole: the control thread and the workers it runs.
 *
 * The hub thread (main) owns the listening socket, signals, the periodic data-directory
 * probe and, as later modules arrive, everything global (series registry, store queue,
 * alert rules). Connections live on the workers (worker.h). The hub starts the workers,
 * and on SIGINT/SIGTERM asks each to stop, waits for all, and returns from hub_run.
 *
 * Shared with the workers, read-only or atomic: the config, the probe result and the
 * loop-lag figures (hub_health_input). */
#ifndef MC_HUB_H
#define MC_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "health.h"
#include "inbox.h"
#include "worker.h"

struct config;

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
} hub_t;

/* Binds the listening socket and prepares the workers. On failure returns -1 with one
 * line in err naming the setting (the caller exits 2). */
int hub_open(hub_t *hub, const struct config *cfg, char err[HUB_ERR_LEN]);
/* Starts the workers and runs the hub loop until a stop signal. Returns the exit status. */
int hub_run(hub_t *hub);
/* Frees what hub_open allocated. */
void hub_close(hub_t *hub);

/* Any thread: a worker's loop has ended. */
void hub_worker_done(hub_t *hub, worker_t *w);
/* Any thread: a consistent-enough snapshot for the health verdict. */
void hub_health_input(hub_t *hub, health_input_t *in);

#endif
