#include "prom.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "jsonw.h"
#include "tls.h"

int prom_number(buf_t *b, double v) {
    if (isnan(v)) return buf_append(b, "NaN", 3);
    if (isinf(v)) return v > 0 ? buf_append(b, "+Inf", 4) : buf_append(b, "-Inf", 4);
    char tmp[32];
    size_t n = jsonw_fmt_double(v, tmp);
    return buf_append(b, tmp, n);
}

int prom_label_value(buf_t *b, const char *s) {
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (!esc) continue;
        if (buf_append(b, run, (size_t)(p - run)) < 0 || buf_append(b, esc, 2) < 0)
            return -ENOMEM;
        run = p + 1;
    }
    return buf_puts(b, run);
}

static void family_header(buf_t *b, const char *name, const char *suffix, const char *help,
                          const char *type) {
    buf_printf(b, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, type);
}

/* name{labels[,extra]} value\n */
static void sample(buf_t *b, const char *name, const char *suffix, const series_key_t *k,
                   const char *extra_name, const char *extra_value, double v) {
    buf_puts(b, name);
    buf_puts(b, suffix);
    int n = k ? k->nlabels : 0;
    if (n || extra_name) {
        buf_putc(b, '{');
        for (int i = 0; i < n; i++) {
            skey_label_t l;
            skey_label(k, i, &l);
            if (i) buf_putc(b, ',');
            buf_puts(b, l.name);
            buf_append(b, "=\"", 2);
            prom_label_value(b, l.value);
            buf_putc(b, '"');
        }
        if (extra_name) {
            if (n) buf_putc(b, ',');
            buf_puts(b, extra_name);
            buf_append(b, "=\"", 2);
            prom_label_value(b, extra_value);
            buf_putc(b, '"');
        }
        buf_putc(b, '}');
    }
    buf_putc(b, ' ');
    prom_number(b, v);
    buf_putc(b, '\n');
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void render_family(buf_t *b, const family_t *f) {
    const char *name = f->name;
    switch (f->kind) {
    case METRIC_COUNTER: {
        const char *sfx = ends_with(name, "_total") ? "" : "_total";
        family_header(b, name, sfx,
                      f->help ? f->help : "Counter from metricast ingest (StatsD |c or JSON).",
                      "counter");
        for (uint32_t i = 0; i < f->n; i++)
            sample(b, name, sfx, f->v[i]->key, NULL, NULL, f->v[i]->value);
        break;
    }
    case METRIC_GAUGE:
        family_header(b, name, "", f->help ? f->help : "Gauge from metricast ingest (StatsD |g or JSON).",
                      "gauge");
        for (uint32_t i = 0; i < f->n; i++)
            sample(b, name, "", f->v[i]->key, NULL, NULL, f->v[i]->value);
        break;
    case METRIC_SET:
        family_header(b, name, "",
                      "Distinct members in the last 1 s interval (StatsD |s set).", "gauge");
        for (uint32_t i = 0; i < f->n; i++)
            sample(b, name, "", f->v[i]->key, NULL, NULL, f->v[i]->value);
        break;
    case METRIC_TIMER:
        family_header(b, name, "",
                      "Timer/histogram (StatsD |ms |h |d): quantiles over the last 1 s "
                      "interval with samples (1% relative error), cumulative sum and count.",
                      "summary");
        for (uint32_t i = 0; i < f->n; i++) {
            const series_t *s = f->v[i];
            sample(b, name, "", s->key, "quantile", "0.5", s->last.p50);
            sample(b, name, "", s->key, "quantile", "0.9", s->last.p90);
            sample(b, name, "", s->key, "quantile", "0.99", s->last.p99);
            sample(b, name, "_sum", s->key, NULL, NULL, s->sum_total);
            sample(b, name, "_count", s->key, NULL, NULL, s->count_total);
        }
        break;
    default: break;
    }
}

static void self_metrics(buf_t *b, const hub_self_t *s) {
    family_header(b, "metricast_build_info", "", "metricast version; always 1.", "gauge");
    buf_printf(b, "metricast_build_info{version=\"%s\"} 1\n", s->version);

    family_header(b, "metricast_ingest_lines_total", "",
                  "Samples (StatsD lines, JSON samples) merged into the registry.", "counter");
    for (int t = 0; t < INGEST_TRANSPORT_COUNT; t++)
        buf_printf(b, "metricast_ingest_lines_total{transport=\"%s\"} %llu\n",
                   ingest_transport_name((ingest_transport_t)t), (unsigned long long)s->lines[t]);

    family_header(b, "metricast_ingest_rejected_total", "",
                  "Samples refused: malformed, over a limit, or conflicting.", "counter");
    for (int r = 1; r < REJECT_REASON_COUNT; r++) /* 0 is "ok" */
        if (r != STATSD_EMPTY)
            buf_printf(b, "metricast_ingest_rejected_total{reason=\"%s\"} %llu\n",
                       reject_reason_name(r), (unsigned long long)s->rejected[r]);

    family_header(b, "metricast_ingest_dropped_total", "",
                  "Samples lost before parsing (udp_buffer: kernel receive queue overflowed).",
                  "counter");
    for (int r = 0; r < DROP_REASON_COUNT; r++)
        buf_printf(b, "metricast_ingest_dropped_total{reason=\"%s\"} %llu\n",
                   drop_reason_name(r), (unsigned long long)s->dropped[r]);

    family_header(b, "metricast_ingest_datagrams_total", "", "StatsD UDP datagrams received.",
                  "counter");
    buf_printf(b, "metricast_ingest_datagrams_total %llu\n", (unsigned long long)s->datagrams);

#define GAUGE(n, help, v)                                                                          \
    do {                                                                                           \
        family_header(b, n, "", help, "gauge");                                                    \
        buf_puts(b, n " ");                                                                        \
        prom_number(b, (double)(v));                                                               \
        buf_putc(b, '\n');                                                                         \
    } while (0)
#define COUNTER(n, help, v)                                                                        \
    do {                                                                                           \
        family_header(b, n, "", help, "counter");                                                  \
        buf_puts(b, n " ");                                                                        \
        prom_number(b, (double)(v));                                                               \
        buf_putc(b, '\n');                                                                         \
    } while (0)

    GAUGE("metricast_series", "Series in the registry.", s->series);
    GAUGE("metricast_sources_online", "Source sessions connected now.", s->sources_online);
    GAUGE("metricast_connections", "Open TCP connections (HTTP and WebSocket).", s->connections);
    GAUGE("metricast_ws_connections", "Open WebSocket connections.", s->ws_connections);
    GAUGE("metricast_ws_subscribers", "WebSocket connections with at least one topic.",
          s->ws_subscribers);
    COUNTER("metricast_ws_sent_total", "WebSocket messages sent.", s->ws_sent);
    COUNTER("metricast_ws_dropped_total", "WebSocket messages dropped by backpressure.",
            s->ws_dropped);
    GAUGE("metricast_ws_queue_fill_ratio", "Fill ratio of the fullest outbound queue.",
          s->ws_fill_ratio);
    COUNTER("metricast_events_total", "Events published.", s->events_total);
    COUNTER("metricast_store_write_errors_total", "Store transactions that failed.",
            s->store_write_errors);
    COUNTER("metricast_store_points_dropped_total",
            "Raw points not stored because the store was behind.", s->store_points_dropped);
    COUNTER("metricast_store_bad_rows_total",
            "Seconds of raw points in the store file that could not be decoded (skipped).",
            s->store_bad_rows);
    GAUGE("metricast_alert_rules", "Alert rules loaded.", s->alert_rules);
    GAUGE("metricast_alerts_pending", "Alert instances whose condition holds, waiting for `for`.",
          s->alerts_pending);
    GAUGE("metricast_alerts_firing", "Alert instances firing now.", s->alerts_firing);
    COUNTER("metricast_alerts_fired_total", "Alert instances that started firing.",
            s->alerts_fired_total);
    COUNTER("metricast_webhook_sent_total", "Webhook deliveries a receiver accepted (2xx).",
            s->webhook_sent);
    COUNTER("metricast_webhook_failed_total",
            "Webhook deliveries given up: retries exhausted, a status not worth retrying, or "
            "abandoned at shutdown.", s->webhook_failed);
    COUNTER("metricast_webhook_retried_total", "Webhook delivery attempts that were retried.",
            s->webhook_retried);
    COUNTER("metricast_webhook_dropped_total", "Webhook deliveries dropped: the queue was full.",
            s->webhook_dropped);
    GAUGE("metricast_webhook_queue", "Webhook deliveries queued, in flight or waiting to retry.",
          s->webhook_queued);
    COUNTER("metricast_http_requests_total", "HTTP requests answered.", s->http_requests);
    COUNTER("metricast_http_errors_total", "HTTP answers with status 400 or above.",
            s->http_errors);

    family_header(b, "metricast_auth_denied_total", "",
                  "Requests, upgrades and WebSocket messages refused by the access policy.",
                  "counter");
    for (int r = 0; r < DENY_COUNT; r++)
        buf_printf(b, "metricast_auth_denied_total{reason=\"%s\"} %llu\n", access_deny_name(r),
                   (unsigned long long)s->auth_denied[r]);
    family_header(b, "metricast_limit_hits_total", "",
                  "Times a configured limit refused or closed something (docs/SECURITY.md).",
                  "counter");
    for (int l = 0; l < LIMIT_COUNT; l++)
        buf_printf(b, "metricast_limit_hits_total{limit=\"%s\"} %llu\n", limit_name(l),
                   (unsigned long long)s->limit_hits[l]);
    if (s->tls_on) {
        family_header(b, "metricast_tls_handshakes_total", "",
                      "TLS handshakes completed, by protocol version.", "counter");
        buf_printf(b, "metricast_tls_handshakes_total{version=\"TLSv1.2\"} %llu\n",
                   (unsigned long long)s->tls_handshakes[0]);
        buf_printf(b, "metricast_tls_handshakes_total{version=\"TLSv1.3\"} %llu\n",
                   (unsigned long long)s->tls_handshakes[1]);
        family_header(b, "metricast_tls_handshake_failures_total", "",
                      "Connections to the TLS port that never completed a handshake, by reason.",
                      "counter");
        for (int r = 0; r < TLS_FAIL_COUNT; r++)
            buf_printf(b, "metricast_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
                       tls_fail_name(r), (unsigned long long)s->tls_failures[r]);
        COUNTER("metricast_tls_errors_total",
                "TLS errors after the handshake (bad records, unexpected messages): closed.",
                s->tls_errors);
        GAUGE("metricast_tls_certificate_expiry_timestamp_seconds",
              "When the certificate in force expires (Unix time; alert on it minus time()).",
              s->tls_cert_not_after);
    }

    family_header(b, "metricast_loop_lag_seconds", "",
                  "Event-loop lag: worst timer lateness over the last second.", "gauge");
    for (int i = 0; i < s->nloops; i++) {
        if (i == 0)
            buf_puts(b, "metricast_loop_lag_seconds{loop=\"hub\"} ");
        else
            buf_printf(b, "metricast_loop_lag_seconds{loop=\"worker%d\"} ", i - 1);
        prom_number(b, s->loop_lag_s[i]);
        buf_putc(b, '\n');
    }

    family_header(b, "metricast_loop_connections", "",
                  "Open connections each worker loop serves (kept within two of each other).",
                  "gauge");
    for (int i = 1; i < s->nloops; i++)
        buf_printf(b, "metricast_loop_connections{loop=\"worker%d\"} %llu\n", i - 1,
                   (unsigned long long)s->loop_conns[i]);
    COUNTER("metricast_connections_handed_over_total",
            "Connections accepted by one worker and served by a less loaded one.",
            s->handed_over);

    COUNTER("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            s->proc.cpu_seconds);
    GAUGE("process_resident_memory_bytes", "Resident memory size in bytes.", s->proc.rss_bytes);
    GAUGE("process_virtual_memory_bytes", "Virtual memory size in bytes.", s->proc.vsize_bytes);
    GAUGE("process_open_fds", "Number of open file descriptors.", s->proc.open_fds);
    GAUGE("process_max_fds", "Maximum number of open file descriptors.", s->proc.max_fds);
    GAUGE("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          s->proc.start_time);
    if (s->host_on) {
        family_header(b, "metricast_host_read_errors_total", "",
                      "Reads of a /proc or /sys file by the host source that failed (missing, "
                      "unreadable, too large) or found content it skipped.",
                      "counter");
        for (int f = 0; f < HOST_F_COUNT; f++)
            buf_printf(b, "metricast_host_read_errors_total{file=\"%s\"} %llu\n",
                       host_file_name((host_file_t)f),
                       (unsigned long long)s->host_read_errors[f]);
        COUNTER("metricast_host_collections_total", "Seconds of host metrics collected.",
                s->host_collections);
        COUNTER("metricast_host_collect_cpu_seconds_total",
                "CPU time the host source's thread spent collecting.", s->host_cpu_seconds);
        COUNTER("metricast_host_samples_total", "Host samples handed to the registry.",
                s->host_samples);
        COUNTER("metricast_host_rejected_total",
                "Host samples not stored (a label over 255 bytes, the series limit, a name "
                "another sender took with another kind).",
                s->host_rejected);
        COUNTER("metricast_host_statfs_timeouts_total",
                "statvfs() calls abandoned after the timeout (a mount not answering).",
                s->host_statfs_timeouts);
    }
    if (s->nats_on) {
        GAUGE("metricast_nats_connected", "1 while the link to NATS (the other hubs) is up.",
              s->nats_connected);
        GAUGE("metricast_nats_peers", "Other hubs heard from within [nats] hub_timeout.",
              s->nats_peers);
        family_header(b, "metricast_nats_messages_total", "",
                      "Messages bridged through NATS: published (out) and applied (in).",
                      "counter");
        buf_printf(b, "metricast_nats_messages_total{direction=\"in\"} %llu\n",
                   (unsigned long long)s->nats_in);
        buf_printf(b, "metricast_nats_messages_total{direction=\"out\"} %llu\n",
                   (unsigned long long)s->nats_out);
        family_header(b, "metricast_nats_failed_total", "",
                      "Messages not bridged, by reason (undecodable, refused by nats.c, "
                      "dropped, duplicate or missing events).",
                      "counter");
        for (int r = 0; r < CLUSTER_F_COUNT; r++)
            buf_printf(b, "metricast_nats_failed_total{reason=\"%s\"} %llu\n",
                       cluster_fail_name(r), (unsigned long long)s->nats_failed[r]);
        COUNTER("metricast_nats_reconnects_total", "Times the NATS link came back after a loss.",
                s->nats_reconnects);
    }
#undef GAUGE
#undef COUNTER
}

/* Clustered, every series the hub reports about itself carries hub="<id>", so that a
 * Prometheus scraping every hub keeps them apart: appended to each sample line of src. */
static void add_hub_label(buf_t *b, const buf_t *src, const char *hub) {
    const char *p = src->data, *end = src->data + src->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl + 1 : end;
        if (*p == '#') {
            buf_append(b, p, (size_t)(eol - p));
        } else {
            size_t name = strcspn(p, "{ ");
            buf_append(b, p, name);
            if (p[name] == '{') {
                buf_printf(b, "{hub=\"%s\",", hub);
                p += name + 1;
            } else {
                buf_printf(b, "{hub=\"%s\"}", hub);
                p += name;
            }
            buf_append(b, p, (size_t)(eol - p));
        }
        p = eol;
    }
}

int prom_render(registry_t *r, const hub_self_t *self, buf_t *b) {
    if (self->nats_on && self->hub_id) {
        buf_t tmp = BUF_INIT;
        self_metrics(&tmp, self);
        if (tmp.data) add_hub_label(b, &tmp, self->hub_id);
        buf_free(&tmp);
    } else {
        self_metrics(b, self);
    }
    uint32_t nf;
    family_t *const *fams = registry_families(r, &nf);
    for (uint32_t i = 0; i < nf; i++) render_family(b, fams[i]);
    return b->data ? 0 : -ENOMEM;
}
