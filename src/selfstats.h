/* selfstats — the hub's figures about itself at one instant, gathered on the hub thread
 * (hub_self_snapshot) and rendered by /metrics (prom.c) and /api/v1/summary (view.c). */
#ifndef MC_SELFSTATS_H
#define MC_SELFSTATS_H

#include <stdint.h>

#include "access.h"
#include <stdbool.h>

#include "agg.h"
#include "cluster.h"
#include "host_source.h"
#include "ingest_stats.h"
#include "limit.h"
#include "procstat.h"
#include "registry.h"

#define SELF_MAX_LOOPS 65

typedef struct hub_self {
    const char *version;
    double uptime_s;
    uint64_t lines[INGEST_TRANSPORT_COUNT];
    uint64_t lines_total;
    double lines_rate; /* per second, over the last second */
    uint64_t rejected[REJECT_REASON_COUNT];
    uint64_t rejected_total;
    double rejected_rate;
    uint64_t dropped[DROP_REASON_COUNT];
    uint64_t dropped_total;
    double dropped_rate;
    uint64_t datagrams, udp_bytes;
    uint64_t series, families;
    uint64_t connections, ws_connections, ws_subscribers;
    uint64_t ws_sent, ws_dropped;
    double ws_fill_ratio;
    uint64_t events_total;
    uint64_t store_write_errors, store_points_dropped, store_bad_rows;
    uint64_t sources_online;
    uint64_t http_requests, http_errors;
    int nloops;
    double loop_lag_s[SELF_MAX_LOOPS]; /* [0] the hub, then workers */
    uint64_t loop_conns[SELF_MAX_LOOPS]; /* open connections per loop, [0] (hub) 0 */
    uint64_t handed_over;                /* connections one worker accepted for another */
    double loop_lag_max_s;
    procstat_t proc;
    double cpu_percent; /* over the last second; 100 = one core */
    uint64_t alert_rules, alerts_pending, alerts_firing, alerts_fired_total;
    uint64_t webhook_sent, webhook_failed, webhook_retried, webhook_dropped, webhook_queued;
    uint64_t auth_denied[DENY_COUNT];
    uint64_t limit_hits[LIMIT_COUNT];
    /* TLS (--tls-cert; the families are left out of /metrics without it) */
    bool tls_on;
    uint64_t tls_handshakes[2]; /* TLS 1.2, TLS 1.3 */
    uint64_t tls_failures[8];   /* by tls_fail_t */
    uint64_t tls_errors;
    double tls_cert_not_after; /* Unix seconds */
    /* the host source (all 0 and host_on false with --host-metrics off) */
    bool host_on;
    uint64_t host_read_errors[HOST_F_COUNT];
    uint64_t host_collections, host_samples, host_rejected, host_statfs_timeouts;
    double host_cpu_seconds;
    /* scale-out (all 0 and nats_on false when standalone) */
    bool nats_on;
    const char *hub_id; /* the `hub` label of the hub's own series when clustered */
    uint64_t nats_in, nats_out, nats_failed[CLUSTER_F_COUNT], nats_reconnects;
    int nats_connected;
    uint32_t nats_peers;
} hub_self_t;

#endif
