#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "cursor.h"
#include "log.h"
#include "netacl.h"

#define OFF(f) offsetof(config_t, f)

/* The table. Ranges say why where the reason is not obvious. */
static const cfg_opt_t options[] = {
    {"server", "listen", "listen", "ADDR:PORT", CFG_T_ADDR, OFF(listen), "127.0.0.1:9750", 0, 0,
     "HTTP + WebSocket listen address (port 0: any free port, logged at start)"},
    {"statsd", "listen", "statsd", "ADDR:PORT|off", CFG_T_ADDR_OFF, OFF(statsd), "127.0.0.1:8125",
     0, 0, "StatsD UDP listen address, or off"},
    {"store", "data_dir", "data", "DIR", CFG_T_PATH, OFF(data_dir), "./metricast-data", 0, 0,
     "data directory (SQLite store metricast.db); created if missing"},
    {"stream", "tick", "tick", "SECONDS", CFG_T_SECONDS, OFF(tick), "1", 0.01, 3600,
     "live update interval"},
    {"store", "aggregate_every", "aggregate-every", "SECONDS", CFG_T_SECONDS,
     OFF(aggregate_every), "30", 1, 86400, "aggregation job interval"},
    {"server", "demo", "demo", NULL, CFG_T_BOOL, OFF(demo), "false", 0, 0,
     "run simulated sources (robots, a streaming session) through the real ingest paths "
     "(with tokens configured they use METRICAST_TOKEN)"},
    {"nats", "url", "nats", "URL", CFG_T_NATS_URL, OFF(nats_url), "", 0, 0,
     "NATS server for scale-out across hubs (nats://host:port); empty: standalone"},
    {"nats", "hub_id", "hub-id", "ID", CFG_T_HUB_ID, OFF(hub_id), "", 0, 0,
     "this hub's name in the cluster: 1-64 of [A-Za-z0-9_-], unique per hub (empty: "
     "<hostname>-<listen port>)"},
    {"nats", "subject_prefix", "nats-prefix", "PREFIX", CFG_T_SUBJECT, OFF(nats_prefix),
     "metricast", 0, 0,
     "first tokens of every NATS subject the hubs use (hubs sharing it form one cluster)"},
    /* a heartbeat goes out every second: five missed ones are not a hiccup */
    {"nats", "hub_timeout", "nats-hub-timeout", "SECONDS", CFG_T_SECONDS, OFF(nats_hub_timeout),
     "5s", 1, 3600, "a hub not heard from for this long is gone: its sources show offline"},
    {"nats", "reconnect_buffer", "nats-reconnect-buffer", "BYTES", CFG_T_SIZE,
     OFF(nats_reconnect_buffer), "8m", 65536, 1024.0 * 1024 * 1024,
     "messages published while NATS is unreachable are kept up to this size and sent on "
     "reconnecting"},
    /* 64: far above any core count this daemon is sized for; each loop costs a thread */
    {"server", "threads", "threads", "N", CFG_T_INT, OFF(threads), "0", 0, 64,
     "I/O loop threads, each owning a shard of the connections (0: one per core)"},
    {"server", "pin_threads", "pin-threads", "on|off", CFG_T_BOOL, OFF(pin_threads), "on", 0, 0,
     "bind each I/O loop thread to its own CPU among those the process may run on "
     "(round-robin when there are more threads than CPUs; nothing with one CPU)"},
    {"log", "level", "log-level", "LEVEL", CFG_T_LOG_LEVEL, OFF(log_level), "info", 0, 0,
     "least severe level logged: debug, info, warn, error"},
    {"http", "max_header_bytes", "http-max-header-bytes", "BYTES", CFG_T_SIZE,
     OFF(http_max_header_bytes), "16k", 1024, 1 << 20,
     "request line + headers larger than this get 431"},
    {"http", "max_body_bytes", "http-max-body-bytes", "BYTES", CFG_T_SIZE,
     OFF(http_max_body_bytes), "4m", 1024, 1024.0 * 1024 * 1024,
     "request bodies larger than this get 413"},
    {"http", "header_timeout", "http-header-timeout", "SECONDS", CFG_T_SECONDS,
     OFF(http_header_timeout), "10s", 0.1, 3600,
     "a request's headers must arrive within this (slow-header defence); else 408"},
    {"http", "idle_timeout", "http-idle-timeout", "SECONDS", CFG_T_SECONDS,
     OFF(http_idle_timeout), "60s", 0.1, 86400,
     "an idle keep-alive connection, or a stalled body, is closed after this"},
    /* the floor keeps room for every client message of the protocol */
    {"ws", "max_message_bytes", "ws-max-message-bytes", "BYTES", CFG_T_SIZE,
     OFF(ws_max_message_bytes), "64k", 256, 64.0 * 1024 * 1024,
     "largest WebSocket message accepted from a client; larger closes with 1009"},
    {"ws", "ping_interval", "ws-ping-interval", "SECONDS", CFG_T_SECONDS, OFF(ws_ping_interval),
     "20s", 0.1, 3600, "server ping to a WebSocket client quiet for this long"},
    {"ws", "idle_timeout", "ws-idle-timeout", "SECONDS", CFG_T_SECONDS, OFF(ws_idle_timeout),
     "60s", 0.2, 86400, "a WebSocket client silent this long (no pong either) is closed"},
    {"health", "max_loop_lag", "health-max-loop-lag", "SECONDS", CFG_T_SECONDS,
     OFF(health_max_loop_lag), "500ms", 0.001, 3600,
     "health fails when any event loop lags more than this"},
    {"health", "interval", "health-interval", "SECONDS", CFG_T_SECONDS, OFF(health_interval),
     "2s", 0.05, 3600, "how often the data-directory probe runs"},
    {"statsd", "threads", "statsd-threads", "N", CFG_T_INT, OFF(statsd_threads), "0", 0, 64,
     "StatsD receiving threads, one socket each on the same port (0: one per core)"},
    /* 8 MiB, as Netdata: the default 208 KiB overflows in bursts even at low CPU */
    {"statsd", "rcvbuf", "statsd-rcvbuf", "BYTES", CFG_T_SIZE, OFF(statsd_rcvbuf), "8m", 65536,
     1024.0 * 1024 * 1024, "UDP receive buffer per StatsD socket"},
    {"statsd", "flush_interval", "statsd-flush-interval", "SECONDS", CFG_T_SECONDS,
     OFF(statsd_flush_interval), "100ms", 0.005, 1,
     "how often each StatsD thread hands its aggregated samples to the hub"},
    {"series", "max_series", "max-series", "N", CFG_T_INT, OFF(max_series), "200000", 1,
     100000000, "series limit: samples for new series beyond it are rejected (series_limit)"},
    {"ws", "queue_messages", "ws-queue-messages", "N", CFG_T_U32, OFF(ws_queue_messages), "1024",
     4, 1000000, "outbound queue limit per WebSocket connection, in messages"},
    {"ws", "queue_bytes", "ws-queue-bytes", "BYTES", CFG_T_SIZE, OFF(ws_queue_bytes), "4m", 4096,
     1024.0 * 1024 * 1024, "outbound queue limit per WebSocket connection, in bytes"},
    {"ws", "overload_timeout", "ws-overload-timeout", "SECONDS", CFG_T_SECONDS,
     OFF(ws_overload_timeout), "10s", 0.1, 3600,
     "a subscriber overloaded this long is closed with 1008"},
    {"ws", "max_subscriptions", "ws-max-subscriptions", "N", CFG_T_INT, OFF(ws_max_subscriptions),
     "64", 1, 100000, "topics one WebSocket connection may subscribe to"},
    {"events", "retain", "events-retain", "N", CFG_T_U32, OFF(events_retain), "10000", 1,
     10000000, "events kept for replay (since=) and polling; older ones answer resync"},
    {"sources", "queue_messages", "source-queue-messages", "N", CFG_T_U32,
     OFF(src_queue_messages), "1024", 4, 1000000,
     "inbound queue of a source session, in messages (backpressure above 0.85 of it)"},
    {"sources", "queue_bytes", "source-queue-bytes", "BYTES", CFG_T_SIZE, OFF(src_queue_bytes),
     "1m", 4096, 1024.0 * 1024 * 1024, "inbound queue of a source session, in bytes"},
    {"host", "metrics", "host-metrics", "on|off", CFG_T_BOOL, OFF(host_metrics), "on", 0, 0,
     "the built-in source `host`: this machine's CPU, memory, disks and network as "
     "node_exporter-named series, every second"},
    {"host", "proc", "host-proc", "DIR", CFG_T_PATH, OFF(host_proc), "/proc", 0, 0,
     "where the host source reads /proc (a container's view of the host: /host/proc)"},
    {"host", "sys", "host-sys", "DIR", CFG_T_PATH, OFF(host_sys), "/sys", 0, 0,
     "where the host source reads /sys (network link state, MTU and speed)"},
    {"debug", "session_metrics_fail_every", "debug-session-metrics-fail-every", "N", CFG_T_INT,
     OFF(debug_session_metrics_fail_every), "0", 0, 1000000,
     "test hook: fail every Nth per-session metrics message (0: never)"},
    {"store", "reset", "reset-store", NULL, CFG_T_BOOL, OFF(reset_store), "false", 0, 0,
     "a data file that is not a healthy store is moved aside (not overwritten) and a new "
     "one started; without it metricastd refuses to start (exit 2)"},
    {"store", "raw_retention", "raw-retention", "SECONDS", CFG_T_SECONDS, OFF(raw_retention),
     "2h", 60, 86400.0 * 365, "raw 1 s points kept in the store"},
    {"store", "rollup_1m_retention", "rollup-1m-retention", "SECONDS", CFG_T_SECONDS,
     OFF(r60_retention), "7d", 3600, 86400.0 * 3650, "1 minute rollups kept"},
    {"store", "rollup_1h_retention", "rollup-1h-retention", "SECONDS", CFG_T_SECONDS,
     OFF(r3600_retention), "90d", 3600, 86400.0 * 3650, "1 hour rollups kept"},
    {"store", "events_keep", "events-keep", "N", CFG_T_U32, OFF(events_keep), "100000", 1,
     100000000, "events kept in the store file (at least --events-retain are reloaded)"},
    {"series", "trend_deadband", "trend-deadband", "FRACTION", CFG_T_RATIO, OFF(trend_deadband),
     "5%", 0, 10, "a change within this fraction of the reference is a stable trend"},
    {"series", "history_points", "history-points", "N", CFG_T_INT, OFF(history_points), "3600",
     1, 86400, "1 s points of in-memory history kept per series"},
    {"health", "max_drop_ratio", "health-max-drop-ratio", "FRACTION", CFG_T_RATIO,
     OFF(health_max_drop_ratio), "1%", 0, 1,
     "health fails when more than this fraction of ingest samples was dropped over the last "
     "minute (1: never)"},
    {"health", "critical_alerts", "health-critical-alerts", NULL, CFG_T_BOOL,
     OFF(health_critical_alerts), "true", 0, 0,
     "health fails while an alert rule of severity critical is firing"},
    {"log", "report_interval", "report-interval", "SECONDS", CFG_T_SECONDS,
     OFF(report_interval), "10s", 0, 86400,
     "a logfmt summary line (subscribers, sources, ingest, drops, events, CPU, RSS, alerts) "
     "every this often; 0: off"},
    /* each record is a few hundred bytes: the default costs well under a megabyte */
    {"alerts", "history", "alerts-history", "N", CFG_T_U32, OFF(alerts_history), "1000", 1,
     1000000, "alert transitions (firing, resolved) kept for /api/v1/alerts"},
    {"webhook", "timeout", "webhook-timeout", "SECONDS", CFG_T_SECONDS, OFF(webhook_timeout),
     "5s", 0.05, 300, "one webhook delivery attempt, connect included, must finish within this"},
    {"webhook", "retries", "webhook-retries", "N", CFG_T_INT, OFF(webhook_retries), "5", 0, 100,
     "retries after a failed delivery (connection error, timeout, 408, 429, 5xx)"},
    {"webhook", "backoff", "webhook-backoff", "SECONDS", CFG_T_SECONDS, OFF(webhook_backoff),
     "1s", 0.001, 3600, "delay before the first retry; doubles each time, half of it jittered"},
    {"webhook", "backoff_max", "webhook-backoff-max", "SECONDS", CFG_T_SECONDS,
     OFF(webhook_backoff_max), "60s", 0.001, 86400, "longest delay between retries"},
    /* bounds memory when receivers are down: a delivery is one alert's body, ~1 KiB */
    {"webhook", "queue", "webhook-queue", "N", CFG_T_U32, OFF(webhook_queue), "1024", 1, 1000000,
     "deliveries queued, in flight or waiting to retry; more are dropped (counted)"},
    {"server", "allowed_origins", "allowed-origins", "ORIGINS", CFG_T_ORIGINS,
     OFF(allowed_origins), "", 0, 0,
     "browser origins (scheme://host[:port], comma-separated, or *) allowed besides the "
     "hub's own; others get 403; CORS headers go only to these (SIGHUP reloads it)"},
    {"server", "max_connections", "max-connections", "N", CFG_T_INT, OFF(max_connections), "0",
     0, 10000000,
     "open connections at most; more are answered 503 and closed (0: the descriptor limit "
     "minus 64)"},
    {"server", "max_connections_per_ip", "max-connections-per-ip", "N", CFG_T_INT,
     OFF(max_connections_per_ip), "0", 0, 10000000,
     "open connections per client address at most; more get 429 (0: no limit)"},
    {"server", "max_connection_rate_per_ip", "max-connection-rate-per-ip", "N", CFG_T_INT,
     OFF(max_connection_rate_per_ip), "0", 0, 10000000,
     "new connections per second per client address (bursts up to N); more get 429 (0: no "
     "limit)"},
    {"sources", "max_sources", "max-sources", "N", CFG_T_INT, OFF(max_sources), "10000", 1,
     10000000,
     "sources the hub keeps track of; when full, the longest-offline one is forgotten, and a "
     "new source is refused (1008) only when all are online"},
    {"statsd", "allow_from", "statsd-allow", "NETWORKS", CFG_T_NETS, OFF(statsd_allow), "", 0, 0,
     "networks StatsD datagrams are accepted from (10.0.0.0/8, fd00::/8, ...; comma-separated; "
     "empty: any); others are dropped and counted"},
    {"tls", "cert", "tls-cert", "FILE", CFG_T_FILE, OFF(tls_cert), "", 0, 0,
     "PEM certificate chain (the server's certificate first): the HTTP + WebSocket port "
     "then speaks only TLS 1.2+ (https://, wss://); needs --tls-key; SIGHUP reloads the files"},
    {"tls", "key", "tls-key", "FILE", CFG_T_FILE, OFF(tls_key), "", 0, 0,
     "PEM private key of --tls-cert"},
    {"debug", "host_statfs_stall", "debug-host-statfs-stall", "PATH", CFG_T_PATH,
     OFF(debug_host_statfs_stall), "", 0, 0,
     "test hook: statvfs() of this mount point never answers (empty: none)"},
};

const cfg_opt_t *config_options(size_t *n) {
    *n = sizeof options / sizeof options[0];
    return options;
}

static void errf(char err[CFG_ERR_LEN], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(char err[CFG_ERR_LEN], const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CFG_ERR_LEN, fmt, ap);
    va_end(ap);
}

int config_parse_seconds(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return -EINVAL;
    double mult = 1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 0; /* divided below: 208 * 0.001 is not the double "0.208" reads as */
    else if (strcmp(end, "m") == 0)
        mult = 60;
    else if (strcmp(end, "h") == 0)
        mult = 3600;
    else if (strcmp(end, "d") == 0)
        mult = 86400;
    else
        return -EINVAL;
    *out = mult == 0 ? v / 1000 : v * mult;
    return 0;
}

int config_parse_size(const char *s, size_t *out) {
    char *end;
    if (!isdigit((unsigned char)*s)) return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -EINVAL;
    unsigned shift = 0;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return -EINVAL;
        }
        end++;
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0) end += strlen(end);
        if (*end) return -EINVAL;
    }
    if (v > (SIZE_MAX >> shift)) return -EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

int config_parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    return -EINVAL;
}

int config_parse_addr(const char *s, cfg_addr_t *out) {
    cfg_addr_t a = {.off = false};
    const char *colon;
    size_t hostlen;
    if (*s == '[') { /* [v6]:port */
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -EINVAL;
        hostlen = (size_t)(rb - s - 1);
        if (hostlen == 0 || hostlen >= sizeof a.host) return -EINVAL;
        memcpy(a.host, s + 1, hostlen);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -EINVAL;
        hostlen = (size_t)(colon - s);
        if (hostlen == 0 || hostlen >= sizeof a.host) return -EINVAL;
        memcpy(a.host, s, hostlen);
    }
    a.host[hostlen] = '\0';
    if (strcmp(a.host, "localhost") == 0) strcpy(a.host, "127.0.0.1");
    unsigned char tmp[16];
    if (inet_pton(AF_INET, a.host, tmp) != 1 && inet_pton(AF_INET6, a.host, tmp) != 1)
        return -EINVAL;
    const char *p = colon + 1;
    if (!*p) return -ERANGE;
    char *end;
    errno = 0;
    long port = strtol(p, &end, 10);
    if (*end || errno || !isdigit((unsigned char)*p)) return -ERANGE;
    if (port < 0 || port > 65535) return -ERANGE;
    a.port = (int)port;
    *out = a;
    return 0;
}

const char *config_addr_str(const cfg_addr_t *a, char *out, size_t outlen) {
    if (a->off)
        snprintf(out, outlen, "off");
    else if (strchr(a->host, ':'))
        snprintf(out, outlen, "[%s]:%d", a->host, a->port);
    else
        snprintf(out, outlen, "%s:%d", a->host, a->port);
    return out;
}

/* Capacity of a text option's field. */
/* tokens of [A-Za-z0-9_-] joined by single dots: no wildcard, no empty token */
static bool subject_prefix_valid(const char *s) {
    size_t tok = 0;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (!cursor_hub_id_valid(p - tok, tok)) return false;
            if (!*p) return p - s <= 100;
            tok = 0;
        } else {
            tok++;
        }
    }
}

static size_t str_cap(const cfg_opt_t *o) {
    switch (o->offset) {
    case OFF(data_dir): return sizeof ((config_t *)0)->data_dir;
    case OFF(nats_url): return sizeof ((config_t *)0)->nats_url;
    case OFF(hub_id): return sizeof ((config_t *)0)->hub_id;
    case OFF(nats_prefix): return sizeof ((config_t *)0)->nats_prefix;
    case OFF(allowed_origins): return sizeof ((config_t *)0)->allowed_origins;
    case OFF(statsd_allow): return sizeof ((config_t *)0)->statsd_allow;
    case OFF(host_proc): return sizeof ((config_t *)0)->host_proc;
    case OFF(host_sys): return sizeof ((config_t *)0)->host_sys;
    case OFF(tls_cert): return sizeof ((config_t *)0)->tls_cert;
    case OFF(tls_key): return sizeof ((config_t *)0)->tls_key;
    case OFF(debug_host_statfs_stall): return sizeof ((config_t *)0)->debug_host_statfs_stall;
    default: return 0; /* a text option without an entry here refuses every value */
    }
}

/* Renders a number range for error messages without trailing zeros. */
static const char *num(double v, char *out) {
    snprintf(out, 32, "%g", v);
    return out;
}

int config_set(config_t *c, const cfg_opt_t *o, const char *value, const char *origin,
               char err[CFG_ERR_LEN]) {
    char *field = (char *)c + o->offset;
    char lo[32], hi[32];
    bool ranged = o->min != o->max;
    switch (o->type) {
    case CFG_T_ADDR:
    case CFG_T_ADDR_OFF: {
        cfg_addr_t a;
        if (o->type == CFG_T_ADDR_OFF && strcasecmp(value, "off") == 0) {
            memset(&a, 0, sizeof a);
            a.off = true;
        } else {
            int rc = config_parse_addr(value, &a);
            if (rc == -ERANGE) {
                errf(err, "%s: bad port in \"%s\" (want 1-65535)", origin, value);
                return -EINVAL;
            }
            if (rc) {
                errf(err, "%s: \"%s\" is not ADDR:PORT with a numeric address%s", origin, value,
                     o->type == CFG_T_ADDR_OFF ? " (or off)" : "");
                return -EINVAL;
            }
        }
        memcpy(field, &a, sizeof a);
        return 0;
    }
    case CFG_T_PATH:
    case CFG_T_FILE:
    case CFG_T_ORIGINS:
    case CFG_T_NETS:
    case CFG_T_HUB_ID:
    case CFG_T_SUBJECT:
    case CFG_T_NATS_URL: {
        size_t cap = str_cap(o);
        if (strlen(value) >= cap) {
            errf(err, "%s: value too long (max %zu characters)", origin, cap - 1);
            return -EINVAL;
        }
        if (o->type == CFG_T_PATH && !*value && *o->def) { /* "" only where it is the default */
            errf(err, "%s: empty path", origin);
            return -EINVAL;
        }
        if (o->type == CFG_T_NATS_URL && *value && strncmp(value, "nats://", 7) != 0) {
            errf(err, "%s: \"%s\" is not a nats://host:port URL", origin, value);
            return -EINVAL;
        }
        if (o->type == CFG_T_NATS_URL && *value && strlen(value) <= 7) {
            errf(err, "%s: \"%s\" has no host", origin, value);
            return -EINVAL;
        }
        if (o->type == CFG_T_HUB_ID && *value && !cursor_hub_id_valid(value, strlen(value))) {
            errf(err, "%s: \"%s\" must be 1-64 of [A-Za-z0-9_-]", origin, value);
            return -EINVAL;
        }
        if (o->type == CFG_T_SUBJECT && !subject_prefix_valid(value)) {
            errf(err, "%s: \"%s\" must be tokens of [A-Za-z0-9_-] joined by '.' (e.g. metricast)",
                 origin, value);
            return -EINVAL;
        }
        char why[300];
        if (o->type == CFG_T_ORIGINS && auth_origins_validate(value, why, sizeof why) < 0) {
            errf(err, "%s: %s", origin, why);
            return -EINVAL;
        }
        if (o->type == CFG_T_NETS) {
            netacl_t acl;
            if (netacl_parse(&acl, value, why, sizeof why) < 0) {
                errf(err, "%s: %s", origin, why);
                return -EINVAL;
            }
            netacl_free(&acl);
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
    case CFG_T_SECONDS: {
        double v;
        if (config_parse_seconds(value, &v)) {
            errf(err, "%s: \"%s\" is not a duration (e.g. 1.5, 500ms, 10s, 2m)", origin, value);
            return -EINVAL;
        }
        if (ranged && (v < o->min || v > o->max)) {
            errf(err, "%s: %s is out of range (%s to %s seconds)", origin, value, num(o->min, lo),
                 num(o->max, hi));
            return -EINVAL;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CFG_T_SIZE: {
        size_t v;
        if (config_parse_size(value, &v)) {
            errf(err, "%s: \"%s\" is not a size (e.g. 4096, 64k, 4m)", origin, value);
            return -EINVAL;
        }
        if (ranged && ((double)v < o->min || (double)v > o->max)) {
            errf(err, "%s: %s is out of range (%s to %s bytes)", origin, value, num(o->min, lo),
                 num(o->max, hi));
            return -EINVAL;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CFG_T_U32:
    case CFG_T_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno) {
            errf(err, "%s: \"%s\" is not an integer", origin, value);
            return -EINVAL;
        }
        if (ranged && (v < o->min || v > o->max)) {
            errf(err, "%s: %s is out of range (%s to %s)", origin, value, num(o->min, lo),
                 num(o->max, hi));
            return -EINVAL;
        }
        if (o->type == CFG_T_U32) {
            uint32_t uv = (uint32_t)v;
            memcpy(field, &uv, sizeof uv);
            return 0;
        }
        int iv = (int)v;
        memcpy(field, &iv, sizeof iv);
        return 0;
    }
    case CFG_T_RATIO: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (end != value && *end == '%' && end[1] == '\0') v /= 100, end++;
        if (end == value || *end || errno || !isfinite(v)) {
            errf(err, "%s: \"%s\" is not a fraction (e.g. 0.05 or 5%%)", origin, value);
            return -EINVAL;
        }
        if (ranged && (v < o->min || v > o->max)) {
            errf(err, "%s: %s is out of range (%s to %s)", origin, value, num(o->min, lo),
                 num(o->max, hi));
            return -EINVAL;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CFG_T_BOOL: {
        bool v;
        if (config_parse_bool(value, &v)) {
            errf(err, "%s: \"%s\" is not a boolean (true/false)", origin, value);
            return -EINVAL;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CFG_T_LOG_LEVEL: {
        log_level_t l;
        if (log_level_parse(value, &l)) {
            errf(err, "%s: \"%s\" is not a level (debug, info, warn, error)", origin, value);
            return -EINVAL;
        }
        int iv = (int)l;
        memcpy(field, &iv, sizeof iv);
        return 0;
    }
    }
    errf(err, "%s: internal error: unknown option type", origin);
    return -EINVAL;
}

void config_defaults(config_t *c) {
    memset(c, 0, sizeof *c);
    char err[CFG_ERR_LEN];
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        (void)config_set(c, &options[i], options[i].def, "default", err);
}

/* ---- INI ----------------------------------------------------------------------------- */

typedef struct {
    config_t *c;
    const char *path;
    int line; /* inih does not pass line numbers (INI_HANDLER_LINENO is 0 on Debian) */
    int failed;
    char *err;
} ini_ctx_t;

static int known_section(const char *s) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strcmp(options[i].section, s) == 0) return 1;
    return 0;
}

static const char *const section_kinds[] = {"alert", "token", NULL};

const char *const *config_section_kinds(void) { return section_kinds; }

void config_free(config_t *c) {
    for (size_t i = 0; i < c->nsections; i++) {
        for (size_t k = 0; k < c->sections[i].nkv; k++) {
            free(c->sections[i].kv[k].key);
            free(c->sections[i].kv[k].value);
        }
        free(c->sections[i].kv);
    }
    free(c->sections);
    c->sections = NULL;
    c->nsections = 0;
}

const char *config_section_get(const cfg_section_t *s, const char *key) {
    for (size_t i = 0; i < s->nkv; i++)
        if (strcmp(s->kv[i].key, key) == 0) return s->kv[i].value;
    return NULL;
}

/* "alert.cpu_hot" → kind "alert", name "cpu_hot" when the kind is known; 1 if it is a
 * named section, 0 if not, -1 if the name is unusable (with err filled). */
static int split_named(const char *section, char kind[16], const char **name) {
    const char *dot = strchr(section, '.');
    if (!dot || (size_t)(dot - section) >= 16) return 0;
    memcpy(kind, section, (size_t)(dot - section));
    kind[dot - section] = 0;
    for (const char *const *k = section_kinds; *k; k++) {
        if (strcmp(*k, kind)) continue;
        *name = dot + 1;
        if (!**name || strlen(*name) >= 128) return -1;
        for (const char *p = *name; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') return -1;
        return 1;
    }
    return 0;
}

/* Appends key = value to the named section kind.name of x's file (created on first use).
 * 1 on success, 0 with x->err filled. */
static int add_named(ini_ctx_t *x, const char *kind, const char *name, const char *key,
                     const char *value) {
    config_t *c = x->c;
    cfg_section_t *s = NULL;
    for (size_t i = 0; i < c->nsections && !s; i++)
        if (!strcmp(c->sections[i].kind, kind) && !strcmp(c->sections[i].name, name))
            s = &c->sections[i];
    if (!s) {
        cfg_section_t *v = realloc(c->sections, (c->nsections + 1) * sizeof *v);
        if (!v) goto oom;
        c->sections = v;
        s = &v[c->nsections++];
        memset(s, 0, sizeof *s);
        snprintf(s->kind, sizeof s->kind, "%s", kind);
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->file, sizeof s->file, "%s", x->path);
    }
    if (!*key) {
        /* "= value" or ": value": inih hands over an empty key; a dump would print it as
         * " = value", which reads back as a continuation line of the key before */
        errf(x->err, "config %s: [%s.%s]: a line with a value but no key", x->path, kind, name);
        x->failed = 1;
        return 0;
    }
    if (config_section_get(s, key)) {
        errf(x->err, "config %s: [%s.%s] %s: given twice", x->path, kind, name, key);
        x->failed = 1;
        return 0;
    }
    cfg_kv_t *kv = realloc(s->kv, (s->nkv + 1) * sizeof *kv);
    if (!kv) goto oom;
    s->kv = kv;
    kv[s->nkv].key = strdup(key);
    kv[s->nkv].value = strdup(value);
    if (!kv[s->nkv].key || !kv[s->nkv].value) {
        free(kv[s->nkv].key);
        free(kv[s->nkv].value);
        goto oom;
    }
    s->nkv++;
    return 1;
oom:
    errf(x->err, "config %s: out of memory", x->path);
    x->failed = 1;
    return 0;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value) {
    ini_ctx_t *x = user;
    if (x->failed) return 0;
    char origin[1200];
    char kind[16];
    const char *sname;
    int named = split_named(section, kind, &sname);
    if (named < 0) {
        errf(x->err, "config %s: [%s]: a section name is letters, digits, '_', '-' or '.' "
                     "(at most 127)", x->path, section);
        x->failed = 1;
        return 0;
    }
    if (named) return add_named(x, kind, sname, name, value);
    if (!known_section(section)) {
        errf(x->err, "config %s: unknown section [%s]", x->path, section);
        x->failed = 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const cfg_opt_t *o = &options[i];
        if (strcmp(o->section, section) || strcmp(o->key, name)) continue;
        snprintf(origin, sizeof origin, "config %s: [%s] %s", x->path, section, name);
        if (config_set(x->c, o, value, origin, x->err)) {
            x->failed = 1;
            return 0;
        }
        return 1;
    }
    errf(x->err, "config %s: unknown key \"%s\" in section [%s]", x->path, name, section);
    x->failed = 1;
    return 0;
}

/* inih reads a file line by line into a buffer of its own (INI_MAX_LINE, 200 bytes in
 * Debian's build) and parses a longer line as several: the rest of it becomes a line of
 * its own — an error that names the wrong key, or worse, a key = value that was never
 * written (found by fuzz_config). This reader (fgets, as inih's own) notes the first line
 * that did not fit, so the loader refuses the file naming it. */
typedef struct line_reader {
    FILE *f;
    int line;     /* lines read */
    int too_long; /* the first line that did not fit, 0 if none */
    int max;      /* the longest line that fits (inih's buffer less the NUL) */
} line_reader_t;

static char *read_line(char *str, int num, void *stream) {
    line_reader_t *r = stream;
    if (!fgets(str, num, r->f)) return NULL;
    r->line++;
    r->max = num - 1;
    size_t n = strlen(str);
    if (n == (size_t)(num - 1) && str[n - 1] != '\n') {
        int ch = fgetc(r->f);
        if (ch != EOF && ch != '\n') {
            const char *p = str;
            while (*p == ' ' || *p == '\t') p++;
            bool comment = *p == ';' || *p == '#'; /* a long comment is only a comment */
            if (!comment && !r->too_long) r->too_long = r->line;
            while (ch != EOF && ch != '\n') ch = fgetc(r->f); /* the rest is not parsed */
        }
    }
    return str;
}

/* Parses f (borrowed) into c; path names it in errors. */
static int load_stream(config_t *c, FILE *f, const char *path, char err[CFG_ERR_LEN]) {
    ini_ctx_t x = {c, path, 0, 0, err};
    line_reader_t r = {f, 0, 0, 0};
    int rc = ini_parse_stream(read_line, &r, on_ini_entry, &x);
    if (r.too_long) {
        errf(err, "config %s: line %d: longer than %d bytes (the INI reader's limit)", path,
             r.too_long, r.max);
        return -EINVAL;
    }
    if (x.failed) {
        /* rc is the line of the first handler error: add it to the message */
        if (rc > 0) {
            char tmp[CFG_ERR_LEN];
            snprintf(tmp, sizeof tmp, "%s (line %d)", err, rc);
            memcpy(err, tmp, CFG_ERR_LEN);
        }
        return -EINVAL;
    }
    if (rc == -2) {
        errf(err, "config %s: out of memory", path);
        return -ENOMEM;
    }
    if (rc > 0) {
        errf(err, "config %s: line %d: syntax error (want [section] or key = value)", path, rc);
        return -EINVAL;
    }
    return 0;
}

int config_load_file(config_t *c, const char *path, char err[CFG_ERR_LEN]) {
    FILE *f = fopen(path, "r");
    if (!f) {
        errf(err, "--config %s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
        return -ENOENT;
    }
    int rc = load_stream(c, f, path, err);
    fclose(f);
    return rc;
}

int config_load_text(config_t *c, const char *text, size_t len, const char *name,
                     char err[CFG_ERR_LEN]) {
    if (len == 0) return 0; /* an empty file: nothing to apply */
    /* the same reader as a file's, NUL bytes and all */
    FILE *f = fmemopen((void *)text, len, "r");
    if (!f) {
        errf(err, "config %s: out of memory", name);
        return -ENOMEM;
    }
    int rc = load_stream(c, f, name, err);
    fclose(f);
    return rc;
}

/* ---- environment and flags ----------------------------------------------------------- */

static void env_name(const cfg_opt_t *o, char *out, size_t outlen) {
    size_t n = (size_t)snprintf(out, outlen, "METRICAST_");
    for (const char *p = o->flag; *p && n + 1 < outlen; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const cfg_opt_t *find_flag(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0)
            return &options[i];
    return NULL;
}

/* Reads "--name", "--name value", "--name=value" at argv[*i]. */
static int flag_value(int argc, char **argv, int *i, const char **name, size_t *namelen,
                      const char **value) {
    const char *a = argv[*i] + 2;
    const char *eq = strchr(a, '=');
    *name = a;
    *namelen = eq ? (size_t)(eq - a) : strlen(a);
    if (eq) {
        *value = eq + 1;
        return 1;
    }
    if (*i + 1 < argc) {
        *value = argv[*i + 1];
        return 2; /* consumed the next argument */
    }
    *value = NULL;
    return 0;
}

int config_load(config_t *c, int argc, char **argv, char *const *env, cfg_action_t *action,
                char err[CFG_ERR_LEN]) {
    config_defaults(c);
    *action = CFG_RUN;
    const char *file = NULL;

    /* Pass 1: --help, --version, --config; anything malformed is reported in pass 2. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *action = CFG_HELP;
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            *action = CFG_VERSION;
            return 0;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) file = argv[i] + 9;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                errf(err, "--config: missing FILE");
                return -EINVAL;
            }
            file = argv[++i];
        }
    }
    if (!file && env) {
        for (char *const *e = env; *e; e++)
            if (strncmp(*e, "METRICAST_CONFIG=", 17) == 0) file = *e + 17;
    }
    if (file) {
        if (strlen(file) >= sizeof c->config_file) {
            errf(err, "--config: path too long");
            return -EINVAL;
        }
        strcpy(c->config_file, file);
        if (config_load_file(c, file, err)) return -EINVAL;
    }

    /* Environment: METRICAST_<FLAG>. Unknown METRICAST_* names are left for clients
     * (METRICAST_URL, METRICAST_TOKEN); main() warns about them. */
    if (env) {
        char name[96], origin[128];
        for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
            env_name(&options[i], name, sizeof name);
            size_t nl = strlen(name);
            for (char *const *e = env; *e; e++) {
                if (strncmp(*e, name, nl) || (*e)[nl] != '=') continue;
                snprintf(origin, sizeof origin, "environment %s", name);
                if (config_set(c, &options[i], *e + nl + 1, origin, err)) return -EINVAL;
            }
        }
    }

    /* Flags */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            errf(err, "unexpected argument \"%s\" (see --help)", a);
            return -EINVAL;
        }
        const char *name, *value;
        size_t namelen;
        int used = flag_value(argc, argv, &i, &name, &namelen, &value);
        if (namelen == 6 && strncmp(name, "config", 6) == 0) {
            if (used == 2) i++;
            continue;
        }
        const cfg_opt_t *o = find_flag(name, namelen);
        if (!o) {
            errf(err, "unknown flag --%.*s (see --help)", (int)namelen, name);
            return -EINVAL;
        }
        char origin[96];
        snprintf(origin, sizeof origin, "--%s", o->flag);
        /* bare --demo; a boolean with a metavar (--host-metrics on|off) takes its value */
        if (o->type == CFG_T_BOOL && !o->metavar && used != 1) {
            bool t = true;
            memcpy((char *)c + o->offset, &t, sizeof t);
            continue;
        }
        if (!used) {
            errf(err, "--%s: missing %s", o->flag, o->metavar ? o->metavar : "value");
            return -EINVAL;
        }
        if (used == 2) i++;
        if (config_set(c, o, value, origin, err)) return -EINVAL;
    }
    return 0;
}

char *config_usage(const char *prog) {
    buf_t b = BUF_INIT;
    buf_printf(&b,
               "usage: %s [flags]\n\n"
               "metricastd — real-time metrics and telemetry hub.\n"
               "Settings come from the built-in defaults, then --config FILE (INI), then\n"
               "METRICAST_<FLAG> environment variables, then these flags.\n\n",
               prog);
    buf_printf(&b, "  %-34s %s\n", "--config FILE", "INI configuration file (also METRICAST_CONFIG)");
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    char env[96], left[80];
    for (size_t i = 0; i < n; i++) {
        env_name(&o[i], env, sizeof env);
        snprintf(left, sizeof left, "--%s%s%s", o[i].flag, o[i].metavar ? " " : "",
                 o[i].metavar ? o[i].metavar : "");
        buf_printf(&b, "  %-34s %s\n", left, o[i].help);
        buf_printf(&b, "  %-34s [%s] %s = %s   env %s\n", "", o[i].section, o[i].key,
                   *o[i].def ? o[i].def : "\"\"", env);
    }
    buf_printf(&b, "  %-34s %s\n", "--help", "print this and exit");
    buf_printf(&b, "  %-34s %s\n", "--version", "print the version and exit");
    buf_puts(&b, "\nExit status: 0 after SIGINT/SIGTERM, 2 on a bad setting or unusable "
                 "port/directory.\n");
    return buf_steal(&b, NULL);
}

/* ---- effective configuration --------------------------------------------------------- */

static const char *const secret_words[] = {"secret", "token", "password", "passwd",
                                           "credential"};

bool config_key_is_secret(const char *key) {
    for (size_t i = 0; i < sizeof secret_words / sizeof secret_words[0]; i++)
        if (strstr(key, secret_words[i])) return true;
    return false;
}

bool config_is_secret(const cfg_opt_t *o) {
    return config_key_is_secret(o->key) || config_key_is_secret(o->flag);
}

/* Masks the user:password@ (or token@) part of a URL with three asterisks. */
static void mask_url(const char *in, char *out, size_t outlen) {
    const char *scheme = strstr(in, "://");
    const char *start = scheme ? scheme + 3 : in;
    const char *slash = strchr(start, '/');
    const char *at = strchr(start, '@');
    if (!at || (slash && at > slash)) {
        snprintf(out, outlen, "%s", in);
        return;
    }
    snprintf(out, outlen, "%.*s***%s", (int)(start - in), in, at);
}

/* scheme://host[:port], then a slash and eight asterisks when a path or query followed
 * (a user:password@ part is dropped too). */
static void mask_webhook(const char *in, char *out, size_t outlen) {
    const char *scheme = strstr(in, "://");
    const char *host = scheme ? scheme + 3 : in;
    const char *at = strpbrk(host, "@/?#");
    if (at && *at == '@') host = at + 1;
    size_t hl = strcspn(host, "/?#");
    snprintf(out, outlen, "%.*s%.*s%s", scheme ? (int)(scheme + 3 - in) : 0, in, (int)hl, host,
             host[hl] ? "/********" : "");
}

/* Milliseconds when they are a whole number at the 15 digits printed, so that the text
 * reads back as a value that prints the same (--check-config's dump is a valid
 * configuration that dumps to itself; found by fuzz_config). */
static void fmt_seconds(double v, char *out, size_t outlen) {
    char ms[40];
    snprintf(ms, sizeof ms, "%.15g", v * 1000);
    if (v > 0 && v < 1 && !strpbrk(ms, ".e"))
        snprintf(out, outlen, "%sms", ms);
    else
        snprintf(out, outlen, "%.15gs", v);
}

static void fmt_size(size_t v, char *out, size_t outlen) {
    static const char suffix[] = "gmk";
    for (int i = 0; i < 3; i++) {
        size_t unit = (size_t)1 << (10 * (3 - i));
        if (v && v % unit == 0) {
            snprintf(out, outlen, "%zu%c", v / unit, suffix[i]);
            return;
        }
    }
    snprintf(out, outlen, "%zu", v);
}

const char *config_value_str(const config_t *c, const cfg_opt_t *o, bool mask, char *out,
                             size_t outlen) {
    const char *field = (const char *)c + o->offset;
    out[0] = '\0';
    switch (o->type) {
    case CFG_T_ADDR:
    case CFG_T_ADDR_OFF: {
        cfg_addr_t a;
        memcpy(&a, field, sizeof a);
        config_addr_str(&a, out, outlen);
        break;
    }
    case CFG_T_PATH:
    case CFG_T_FILE:
    case CFG_T_ORIGINS:
    case CFG_T_NETS:
    case CFG_T_HUB_ID:
    case CFG_T_SUBJECT:
    case CFG_T_NATS_URL:
        if (mask && o->type == CFG_T_NATS_URL)
            mask_url(field, out, outlen);
        else
            snprintf(out, outlen, "%s", field);
        break;
    case CFG_T_SECONDS: {
        double v;
        memcpy(&v, field, sizeof v);
        fmt_seconds(v, out, outlen);
        break;
    }
    case CFG_T_SIZE: {
        size_t v;
        memcpy(&v, field, sizeof v);
        fmt_size(v, out, outlen);
        break;
    }
    case CFG_T_INT: {
        int v;
        memcpy(&v, field, sizeof v);
        snprintf(out, outlen, "%d", v);
        break;
    }
    case CFG_T_U32: {
        uint32_t v;
        memcpy(&v, field, sizeof v);
        snprintf(out, outlen, "%u", (unsigned)v);
        break;
    }
    case CFG_T_RATIO: {
        double v;
        memcpy(&v, field, sizeof v);
        snprintf(out, outlen, "%g", v);
        break;
    }
    case CFG_T_BOOL: {
        bool v;
        memcpy(&v, field, sizeof v);
        snprintf(out, outlen, "%s", v ? "true" : "false");
        break;
    }
    case CFG_T_LOG_LEVEL: {
        int v;
        memcpy(&v, field, sizeof v);
        snprintf(out, outlen, "%s", log_level_name((log_level_t)v));
        break;
    }
    }
    if (mask && config_is_secret(o) && out[0]) snprintf(out, outlen, "********");
    return out;
}

/* What goes between "key =" and the value in a dump: a space, except before an empty
 * value and before one that starts with ';' — inih reads " ;" as the start of a comment,
 * so "key = ;x" would load as an empty value, while "key =;x" keeps it. */
static const char *dump_sep(const char *v) { return *v && *v != ';' ? " " : ""; }

char *config_dump_ini(const config_t *c) {
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    config_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    config_defaults(d);
    buf_t b = BUF_INIT;
    buf_puts(&b, "# metricastd effective configuration: defaults < config file < environment "
                 "< flags.\n# Every setting is listed; secrets are masked as ********.\n");
    if (c->config_file[0]) buf_printf(&b, "# config file: %s\n", c->config_file);
    char val[1100], def[1100];
    for (size_t i = 0; i < n; i++) {
        bool first = true; /* print each section once, at its first option */
        for (size_t j = 0; j < i && first; j++) first = strcmp(o[j].section, o[i].section) != 0;
        if (!first) continue;
        buf_printf(&b, "\n[%s]\n", o[i].section);
        for (size_t k = i; k < n; k++) {
            if (strcmp(o[k].section, o[i].section)) continue;
            config_value_str(c, &o[k], true, val, sizeof val);
            config_value_str(d, &o[k], true, def, sizeof def);
            if (strcmp(val, def)) buf_printf(&b, "# default: %s\n", *def ? def : "(empty)");
            buf_printf(&b, "%s =%s%s\n", o[k].key, dump_sep(val), val);
        }
    }
    free(d);
    for (size_t i = 0; i < c->nsections; i++) {
        const cfg_section_t *sec = &c->sections[i];
        buf_printf(&b, "\n[%s.%s]\n", sec->kind, sec->name);
        for (size_t k = 0; k < sec->nkv; k++) {
            /* secret_file is a path, not a secret: only a value that is one is masked */
            bool hide = config_key_is_secret(sec->kv[k].key) &&
                        !strstr(sec->kv[k].key, "_file") && sec->kv[k].value[0];
            if (strcmp(sec->kv[k].key, "webhook") == 0) {
                /* webhook URLs carry their credential in the path (Slack's do): keep only
                 * scheme://host[:port] */
                char m[1100];
                mask_webhook(sec->kv[k].value, m, sizeof m);
                buf_printf(&b, "%s =%s%s\n", sec->kv[k].key, dump_sep(m), m);
                continue;
            }
            const char *v = hide ? "********" : sec->kv[k].value;
            buf_printf(&b, "%s =%s%s\n", sec->kv[k].key, dump_sep(v), v);
        }
    }
    return buf_steal(&b, NULL);
}
