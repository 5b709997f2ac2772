/* health — the hub's health verdict from real checks.
 *
 * Checks: loop_lag (worst event-loop lag against [health] max_loop_lag), data_dir (the
 * probe wrote a file), store (the last store write succeeded), ingest_drops (samples
 * dropped over the last minute against [health] max_drop_ratio), and one "alert:<rule>"
 * per critical rule that is firing (while [health] critical_alerts is on). The verdict
 * is unhealthy when any fails; `failing` lists the names of those that do. One check is
 * soft: nats (the link to the other hubs, when clustered) — this hub still serves its
 * own traffic without it, so it makes the verdict "degraded" (200, `degraded` lists it).
 *
 * The checks are pure functions of a snapshot (health_input_t) gathered by the hub from
 * atomics the loops and the probe publish, so the verdict is testable without a daemon.
 * The data-directory probe (health_probe_dir) does real I/O and runs on the hub thread,
 * never on a connection's loop. */
#ifndef MC_HEALTH_H
#define MC_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Critical alert rules named one by one in a verdict; more are summed up in the last. */
#define HEALTH_MAX_ALERTS 16
#define HEALTH_MAX_CHECKS (8 + HEALTH_MAX_ALERTS)

typedef struct health_alert {
    char rule[128];
    unsigned firing;   /* instances */
    char detail[160];  /* the first instance: series, value, since */
} health_alert_t;

typedef struct health_input {
    double max_loop_lag_s; /* worst loop */
    int worst_loop;        /* -1: the hub loop, else a worker id */
    double max_loop_lag_limit_s;
    bool data_dir_ok;
    int data_dir_errno;
    const char *data_dir;
    bool store_ok;
    char store_msg[256];
    double uptime_s;
    const char *version;
    unsigned long long connections, ws_connections;
    /* ingest drops over the last minute (accepted + dropped = offered) */
    unsigned long long drops_1m, accepted_1m;
    double max_drop_ratio; /* limit; >= 1 never fails */
    /* critical alert rules firing now (when the check is enabled) */
    bool critical_alerts_check;
    int nalerts;
    unsigned alerts_more; /* rules beyond HEALTH_MAX_ALERTS */
    health_alert_t alerts[HEALTH_MAX_ALERTS];
    /* scale-out: the NATS link (a soft check: down means degraded, not unhealthy) */
    bool nats_on, nats_ok;
    char nats_detail[160];
} health_input_t;

typedef struct health_check {
    char name[136]; /* "loop_lag", ..., "alert:<rule>" */
    bool ok;
    bool soft; /* failing makes the verdict degraded, not unhealthy */
    char detail[160];
} health_check_t;

typedef struct health_result {
    bool healthy;  /* no hard check fails (200) */
    bool degraded; /* healthy, but a soft check fails: status "degraded", still 200 */
    int n;
    health_check_t checks[HEALTH_MAX_CHECKS];
} health_result_t;

void health_eval(const health_input_t *in, health_result_t *out);
/* Appends the /api/v1/health JSON body. */
int health_json(const health_input_t *in, const health_result_t *res, buf_t *b);

/* Creates dir and its parents if missing (mode 0750). 0 or a negative errno. */
int health_mkdirs(const char *dir);
/* Proves dir is writable by writing a small file in it. 0 or a negative errno. */
int health_probe_dir(const char *dir);

#endif
