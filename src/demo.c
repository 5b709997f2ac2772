#include "demo.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metricast.h"

#define NROBOTS 3
#define TICK_MS 1000
/* A demo session closing at shutdown: what is queued goes in this long, or is dropped. */
#define DEMO_LINGER_MS 500

typedef struct walk {
    double v, mean, sigma, theta, lo, hi;
} walk_t;

/* what a session's events log: the first failure of a run of them, then every 10th */
typedef struct src_log {
    const char *id;
    unsigned fails;
} src_log_t;

typedef struct robot {
    char id[16];
    src_log_t log;
    metricast_source_t *s;
    walk_t cpu, mem, lat;
    double battery;
    bool charging, low_sent;
} robot_t;

struct demo {
    char base_url[128];
    char statsd_host[64];
    unsigned statsd_port; /* 0: off, samples of fleet_api go over HTTP */
    char *token;
    void (*stopped)(void *ctx);
    void *ctx;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t rng;
    robot_t robots[NROBOTS];
    metricast_source_t *asr;
    src_log_t asr_log;
    walk_t asr_queue, asr_proc, asr_rtf;
    uint64_t asr_utterances, asr_frames;
    double asr_audio_s;
    metricast_statsd_t *statsd;
    uint64_t ticks;
};

/* ---- randomness ------------------------------------------------------------------------- */

static double uniform(demo_t *d) {
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static double normal(demo_t *d) {
    double u1 = uniform(d), u2 = uniform(d);
    if (u1 < 1e-12) u1 = 1e-12;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* Mean-reverting random walk (discrete Ornstein-Uhlenbeck), kept inside [lo, hi]. */
static double step(demo_t *d, walk_t *w) {
    w->v += w->theta * (w->mean - w->v) + w->sigma * normal(d);
    if (w->v < w->lo) w->v = w->lo + (w->lo - w->v) * 0.5;
    if (w->v > w->hi) w->v = w->hi - (w->v - w->hi) * 0.5;
    if (w->v < w->lo) w->v = w->lo;
    if (w->v > w->hi) w->v = w->hi;
    return w->v;
}

static double round2(double v) { return round(v * 100) / 100; }

/* ---- the sources ------------------------------------------------------------------------ */

static void log_session(metricast_source_t *s, const metricast_source_event_t *ev, void *user) {
    (void)s;
    src_log_t *l = user;
    if (ev->kind == METRICAST_SOURCE_CONNECTED) {
        if (l->fails) log_info("demo source connected", "source=%s after_failures=%u", l->id, l->fails);
        l->fails = 0;
    } else if (ev->kind == METRICAST_SOURCE_DISCONNECTED) {
        if (l->fails++ % 10 == 0) {
            char q[300];
            log_warn("demo source disconnected", "source=%s error=%s retry_in_ms=%u failures=%u",
                     l->id, log_quote(ev->conn.detail ? ev->conn.detail : "", q, sizeof q),
                     ev->conn.retry_in_ms, l->fails);
        }
    } else if (ev->kind == METRICAST_SOURCE_ERROR) {
        char q[300];
        log_warn("demo source refused by the hub", "source=%s code=%s detail=%s", l->id,
                 ev->error.code, log_quote(ev->error.detail, q, sizeof q));
    }
}

static int open_source(demo_t *d, metricast_source_t **out, src_log_t *log, const char *id,
                       const char *attrs) {
    metricast_source_options_t o;
    metricast_source_options_init(&o);
    o.url = d->base_url;
    o.source = id;
    o.attrs_json = attrs;
    o.token = d->token;
    o.linger_ms = DEMO_LINGER_MS;
    o.reconnect_max_ms = 5000;
    log->id = id;
    o.on_event = log_session;
    o.user = log;
    char err[METRICAST_ERR_LEN];
    int rc = metricast_source_open(out, &o, err);
    if (rc < 0) {
        char q[300];
        log_error("demo source not started", "source=%s error=%s", id, log_quote(err, q, sizeof q));
    }
    return rc;
}

static void robot_tick(demo_t *d, robot_t *r, double now) {
    double cpu = step(d, &r->cpu), mem = step(d, &r->mem);
    double lat = step(d, &r->lat);
    if (uniform(d) < 0.03) lat *= 3 + uniform(d) * 4; /* a Wi-Fi hiccup now and then */
    /* battery: drains with load, docks at 15 %, charges to 95 %, leaves the dock */
    if (r->charging) {
        r->battery += 0.8 + uniform(d) * 0.4;
        if (r->battery >= 95) {
            r->battery = 95;
            r->charging = false;
            r->low_sent = false;
            metricast_source_publish(r->s, "robot.charging_completed",
                                     "{\"battery_percentage\":95}", NULL, NULL);
        }
    } else {
        r->battery -= 0.05 + cpu / 100 * 0.25;
        if (r->battery < 20 && !r->low_sent) {
            r->low_sent = true;
            char p[96];
            snprintf(p, sizeof p, "{\"battery_percentage\":%.1f}", r->battery);
            metricast_source_publish(r->s, "robot.battery_low", p, NULL, NULL);
        }
        if (r->battery <= 15) {
            r->charging = true;
            metricast_source_publish(r->s, "robot.charging_started", "{\"dock\":\"dock_a\"}",
                                     NULL, NULL);
        }
    }
    metricast_metric_t m[] = {{"cpu_usage", round2(cpu)},
                              {"memory_usage", round2(mem)},
                              {"network_latency_ms", round2(lat)},
                              {"battery_percentage", round2(r->battery)}};
    metricast_source_gauges(r->s, m, sizeof m / sizeof *m, now);
}

static void asr_tick(demo_t *d, double now) {
    double q = step(d, &d->asr_queue);
    if (uniform(d) < 0.05) d->asr_queue.v += 6; /* a burst of incoming audio */
    double rtf = step(d, &d->asr_rtf);
    int chunks = 8 + (int)(uniform(d) * 5); /* ~100 ms audio chunks processed this second */
    metricast_sample_t s[16];
    int n = 0;
    s[n++] = (metricast_sample_t){.name = "queue_depth", .kind = METRICAST_GAUGE, .value = floor(q)};
    s[n++] = (metricast_sample_t){.name = "realtime_factor", .kind = METRICAST_GAUGE,
                                  .value = round(rtf * 1000) / 1000};
    s[n++] = (metricast_sample_t){.name = "audio_seconds", .kind = METRICAST_COUNTER,
                                  .value = chunks * 0.1};
    for (int i = 0; i < chunks && n < 16; i++)
        s[n++] = (metricast_sample_t){.name = "processing_time_ms", .kind = METRICAST_TIMER,
                                      .value = round2(step(d, &d->asr_proc))};
    metricast_source_samples(d->asr, s, (size_t)n, now);
    d->asr_audio_s += chunks * 0.1;
    d->asr_frames += (uint64_t)chunks;
    metricast_source_stats_t st;
    metricast_source_stats(d->asr, &st);
    metricast_metric_t cm[] = {{"asr_frames_sent", (double)d->asr_frames},
                               {"asr_client_reconnects", st.connects ? st.connects - 1 : 0},
                               {"asr_client_queue", (double)st.queued}};
    metricast_source_client_metrics(d->asr, cm, sizeof cm / sizeof *cm);
    if (d->ticks % 5 == 4) {
        d->asr_utterances++;
        char p[160];
        snprintf(p, sizeof p,
                 "{\"session\":\"asr_session_01\",\"utterance\":%llu,\"words\":%d,"
                 "\"duration_ms\":%d}",
                 (unsigned long long)d->asr_utterances, 4 + (int)(uniform(d) * 20),
                 800 + (int)(uniform(d) * 3000));
        metricast_source_publish(d->asr, "asr.utterance_completed", p, NULL, NULL);
    }
}

/* fleet_api: what a small HTTP service would send its StatsD agent */
static void fleet_tick(demo_t *d) {
    static const char *const routes[] = {"route:/missions", "route:/telemetry", "route:/maps"};
    char lines[4096];
    size_t n = 0;
    for (int r = 0; r < 3; r++) {
        int reqs = 3 + (int)(uniform(d) * (r == 1 ? 30 : 8));
        int errors = uniform(d) < 0.1 ? 1 : 0;
        for (int i = 0; i < reqs; i++) {
            double ms = 4 + fabs(normal(d)) * (r == 2 ? 40 : 12);
            if (d->statsd) {
                const char *const tags[] = {routes[r], NULL};
                metricast_statsd_timing(d->statsd, "fleet_api.latency_ms", round2(ms), 1, tags);
            } else if (n + 80 < sizeof lines) {
                n += (size_t)snprintf(lines + n, sizeof lines - n,
                                      "fleet_api.latency_ms:%.2f|ms|#%s,source:fleet_api\n", ms, routes[r]);
            }
        }
        if (d->statsd) {
            const char *const ok[] = {routes[r], "status:200", NULL};
            const char *const bad[] = {routes[r], "status:500", NULL};
            metricast_statsd_count(d->statsd, "fleet_api.requests", reqs - errors, 1, ok);
            if (errors) metricast_statsd_count(d->statsd, "fleet_api.requests", errors, 1, bad);
        } else if (n + 200 < sizeof lines) {
            n += (size_t)snprintf(lines + n, sizeof lines - n,
                                  "fleet_api.requests:%d|c|#%s,status:200,source:fleet_api\n", reqs - errors,
                                  routes[r]);
            if (errors)
                n += (size_t)snprintf(lines + n, sizeof lines - n,
                                      "fleet_api.requests:%d|c|#%s,status:500,source:fleet_api\n", errors,
                                      routes[r]);
        }
    }
    for (int i = 0; i < NROBOTS; i++) {
        if (uniform(d) < 0.7) {
            if (d->statsd)
                metricast_statsd_set(d->statsd, "fleet_api.robots_served", d->robots[i].id, NULL);
            else if (n + 64 < sizeof lines)
                n += (size_t)snprintf(lines + n, sizeof lines - n, "fleet_api.robots_served:%s|s|#source:fleet_api\n",
                                      d->robots[i].id);
        }
    }
    if (d->statsd) {
        metricast_statsd_flush(d->statsd);
        return;
    }
    metricast_http_response_t r;
    char err[METRICAST_ERR_LEN];
    int rc = metricast_http_request(d->base_url, "POST", "/api/v1/ingest", d->token, "text/plain",
                                    lines, n, 1000, &r, err);
    if (rc == 0) {
        if (r.status != 202 && d->ticks < 3) log_warn("demo ingest refused", "status=%d", r.status);
        metricast_http_response_free(&r);
    }
}

/* ---- the thread ------------------------------------------------------------------------- */

static void *demo_main(void *arg) {
    demo_t *d = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        pthread_mutex_unlock(&d->mu);
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        double now = (double)wall.tv_sec + wall.tv_nsec / 1e9;
        for (int i = 0; i < NROBOTS; i++)
            if (d->robots[i].s) robot_tick(d, &d->robots[i], now);
        if (d->asr) asr_tick(d, now);
        fleet_tick(d);
        d->ticks++;
        next.tv_sec += TICK_MS / 1000;
        pthread_mutex_lock(&d->mu);
        int rc = 0;
        while (!d->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&d->cv, &d->mu, &next);
    }
    pthread_mutex_unlock(&d->mu);
    /* the close events (client_disconnect) go out while the workers still run */
    if (d->asr) {
        metricast_source_publish(d->asr, "asr.session_ended", "{\"session\":\"asr_session_01\"}",
                                 NULL, NULL);
        metricast_source_close(d->asr);
        d->asr = NULL;
    }
    for (int i = 0; i < NROBOTS; i++) {
        metricast_source_close(d->robots[i].s);
        d->robots[i].s = NULL;
    }
    metricast_statsd_close(d->statsd);
    d->statsd = NULL;
    log_info("demo stopped", "ticks=%llu", (unsigned long long)d->ticks);
    if (d->stopped) d->stopped(d->ctx);
    return NULL;
}

/* "127.0.0.1:9750" → base URL; 0.0.0.0 / [::] become loopback (where a client can go) */
static int base_url_of(const char *addr, char *out, size_t outlen) {
    const char *colon = strrchr(addr, ':');
    if (!colon) return -EINVAL;
    char host[80];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0) snprintf(host, sizeof host, "[::1]");
    int n = snprintf(out, outlen, "http://%s:%s", host, colon + 1);
    return n > 0 && (size_t)n < outlen ? 0 : -EINVAL;
}

int demo_start(demo_t **out, const char *http_addr, const char *statsd_addr, const char *token,
               void (*stopped)(void *ctx), void *ctx) {
    *out = NULL;
    demo_t *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    int rc = base_url_of(http_addr, d->base_url, sizeof d->base_url);
    if (rc < 0) {
        free(d);
        return rc;
    }
    if (token && *token && !(d->token = strdup(token))) {
        free(d);
        return -ENOMEM;
    }
    d->stopped = stopped;
    d->ctx = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    d->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ 0x9e3779b97f4a7c15ULL;

    if (statsd_addr && strcmp(statsd_addr, "off") != 0) {
        char url[128];
        if (base_url_of(statsd_addr, url, sizeof url) == 0) {
            const char *h = url + 7, *c = strrchr(h, ':');
            snprintf(d->statsd_host, sizeof d->statsd_host, "%.*s", (int)(c - h), h);
            /* getaddrinfo wants an IPv6 literal without its brackets */
            if (d->statsd_host[0] == '[') {
                memmove(d->statsd_host, d->statsd_host + 1, strlen(d->statsd_host));
                d->statsd_host[strlen(d->statsd_host) - 1] = '\0';
            }
            d->statsd_port = (unsigned)atoi(c + 1);
            metricast_statsd_options_t so;
            metricast_statsd_options_init(&so);
            so.host = d->statsd_host;
            so.port = d->statsd_port;
            so.flush_interval_ms = 0; /* the demo flushes once per tick */
            const char *const tags[] = {"source:fleet_api", NULL};
            so.tags = tags;
            char err[METRICAST_ERR_LEN];
            if (metricast_statsd_open(&d->statsd, &so, err) < 0) {
                char q[300];
                log_warn("demo: StatsD client not started, fleet_api goes over HTTP",
                         "error=%s", log_quote(err, q, sizeof q));
                d->statsd = NULL;
            }
        }
    }
    static const char *const models[NROBOTS] = {"rover-m2", "rover-m2", "lifter-x1"};
    for (int i = 0; i < NROBOTS; i++) {
        robot_t *r = &d->robots[i];
        snprintf(r->id, sizeof r->id, "robot_%03d", i + 1);
        double u = uniform(d);
        r->cpu = (walk_t){25 + 30 * u, 35 + 15 * i, 4, 0.1, 1, 100};
        r->mem = (walk_t){40 + 10 * u, 45 + 8 * i, 1.2, 0.05, 5, 98};
        r->lat = (walk_t){20 + 10 * u, 18 + 6 * i, 3, 0.2, 1, 400};
        r->battery = 45 + 50 * uniform(d);
        char attrs[200];
        snprintf(attrs, sizeof attrs,
                 "{\"kind\":\"robot\",\"model\":\"%s\",\"firmware\":\"1.4.%d\",\"site\":\"lab-a\"}",
                 models[i], 2 + i);
        open_source(d, &r->s, &r->log, r->id, attrs);
    }
    d->asr_queue = (walk_t){2, 3, 1.0, 0.3, 0, 40};
    d->asr_proc = (walk_t){120, 120, 15, 0.2, 30, 900};
    d->asr_rtf = (walk_t){0.45, 0.45, 0.05, 0.2, 0.05, 2.5};
    open_source(d, &d->asr, &d->asr_log, "asr_session_01",
                "{\"kind\":\"asr\",\"provider\":\"demo\",\"model\":\"streaming-asr-small\","
                "\"language\":\"en-US\",\"sample_rate_hz\":16000}");
    if (d->asr)
        metricast_source_publish(d->asr, "asr.session_started",
                                 "{\"session\":\"asr_session_01\",\"language\":\"en-US\"}", NULL,
                                 NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&d->thr, NULL, demo_main, d);
    if (rc != 0) {
        for (int i = 0; i < NROBOTS; i++) metricast_source_close(d->robots[i].s);
        metricast_source_close(d->asr);
        metricast_statsd_close(d->statsd);
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        free(d->token);
        free(d);
        return -rc;
    }
    log_info("demo started", "robots=%d sessions=1 url=%s statsd=%s", NROBOTS, d->base_url,
             d->statsd ? statsd_addr : "off(http ingest)");
    *out = d;
    return 0;
}

void demo_request_stop(demo_t *d) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void demo_free(demo_t *d) {
    if (!d) return;
    demo_request_stop(d);
    pthread_join(d->thr, NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d->token);
    free(d);
}
