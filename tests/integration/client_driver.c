/* client_driver — libmetricast driven from the integration tests: every event the library
 * reports and its final figures come out as JSON lines on stdout, so a Python test can
 * judge them next to what the hub shows.
 *
 *   client_driver statsd HOST PORT
 *       sends a fixed set of StatsD metrics (every kind), closes, prints {"stats":...}
 *   client_driver source URL ID [--attrs JSON] [--token T] [--seconds S] [--rate HZ]
 *                                [--flood N] [--frames-per-msg K] [--queue N]
 *                                [--publish TYPE] [--linger MS] [--burst N]
 *       a source session: CONNECTED/DISCONNECTED/METRICS/STATUS/ACK/ERROR as
 *       {"ev":...}; --rate sends gauges at HZ for S seconds; --flood sends N StatsD
 *       frames as fast as the queue takes them, recording when each status arrived and
 *       when the next sample left; then closes and prints {"stats":...}.
 * Exit status 0 unless the library refused to open. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metricast.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* --flood: a sampler thread records (time, messages sent) every ~2 ms, so the test can see
 * that nothing left during a backpressure pause */
#define MAX_SAMPLES 200000
#define MAX_BP 8192 /* a retried flood of 32,000 saw 80 pauses: room for many more */
static struct {
    double t[MAX_SAMPLES];
    uint64_t sent[MAX_SAMPLES];
    int n;
    double bp_t[MAX_BP];
    unsigned bp_retry[MAX_BP];
    int nbp;
    volatile int stop;
    metricast_source_t *s;
} smp;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* JSON string escape for the few strings we print (ids, codes, the hub's text) */
static void jstr(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void on_event(metricast_source_t *s, const metricast_source_event_t *ev, void *user) {
    (void)s;
    (void)user;
    pthread_mutex_lock(&out_mu);
    double t = now_s();
    switch (ev->kind) {
    case METRICAST_SOURCE_CONNECTED:
        printf("{\"ev\":\"connected\",\"t\":%.6f,\"attempt\":%u}\n", t, ev->conn.attempt);
        break;
    case METRICAST_SOURCE_DISCONNECTED:
        printf("{\"ev\":\"disconnected\",\"t\":%.6f,\"err\":%d,\"close_code\":%u,\"retry_in_ms\":%u,"
               "\"detail\":",
               t, ev->err, ev->conn.close_code, ev->conn.retry_in_ms);
        jstr(stdout, ev->conn.detail);
        printf("}\n");
        break;
    case METRICAST_SOURCE_METRICS:
        printf("{\"ev\":\"metrics\",\"t\":%.6f,\"session_id\":", t);
        jstr(stdout, ev->metrics->session_id);
        printf(",\"attempt_id\":%u,\"received\":%" PRIu64 ",\"processed\":%" PRIu64
               ",\"dropped\":%" PRIu64 ",\"queue_capacity\":%u}\n",
               ev->metrics->attempt_id, ev->metrics->received, ev->metrics->processed,
               ev->metrics->dropped, ev->metrics->queue_capacity);
        break;
    case METRICAST_SOURCE_STATUS:
        if (strcmp(ev->status.state, "backpressure") == 0 && smp.nbp < MAX_BP) {
            smp.bp_t[smp.nbp] = t;
            smp.bp_retry[smp.nbp++] = ev->status.retry_after_ms;
        }
        printf("{\"ev\":\"status\",\"t\":%.6f,\"state\":", t);
        jstr(stdout, ev->status.state);
        printf(",\"retry_after_ms\":%u,\"fill_ratio\":%g,\"dropped\":%" PRIu64 "}\n",
               ev->status.retry_after_ms, ev->status.fill_ratio, ev->status.dropped);
        break;
    case METRICAST_SOURCE_ACK:
        printf("{\"ev\":\"ack\",\"t\":%.6f,\"err\":%d,\"id\":", t, ev->err);
        jstr(stdout, ev->ack.id);
        printf(",\"seq\":%" PRIu64 "}\n", ev->ack.seq);
        break;
    case METRICAST_SOURCE_ERROR:
        printf("{\"ev\":\"error\",\"t\":%.6f,\"code\":", t);
        jstr(stdout, ev->error.code);
        printf(",\"detail\":");
        jstr(stdout, ev->error.detail);
        printf("}\n");
        break;
    case METRICAST_SOURCE_MESSAGE:
        printf("{\"ev\":\"message\",\"t\":%.6f}\n", t);
        break;
    }
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

static void *sampler(void *arg) {
    (void)arg;
    while (!smp.stop && smp.n < MAX_SAMPLES) {
        metricast_source_stats_t st;
        metricast_source_stats(smp.s, &st);
        smp.t[smp.n] = now_s();
        smp.sent[smp.n] = st.sent;
        smp.n++;
        usleep(2000);
    }
    return NULL;
}

/* For each backpressure pause: messages sent by its start, the most sent during its first
 * 90 % (equal numbers mean the pause was kept), and the most sent by the end of 90 % of
 * the window after it (what the first budgeted burst let out). */
static void print_pauses(void) {
    printf("{\"pauses\":[");
    for (int b = 0; b < smp.nbp; b++) {
        double t0 = smp.bp_t[b], t1 = t0 + smp.bp_retry[b] / 1000.0 * 0.9;
        double t2 = t0 + smp.bp_retry[b] / 1000.0 * 1.9;
        long long at = -1, max = -1, next = -1;
        int inside = 0, after = 0;
        for (int i = 0; i < smp.n; i++) {
            if (smp.t[i] >= t0 && at < 0) at = (long long)smp.sent[i];
            if (smp.t[i] > t0 && smp.t[i] <= t1) {
                inside++;
                if ((long long)smp.sent[i] > max) max = (long long)smp.sent[i];
            }
            if (smp.t[i] > t1 && smp.t[i] <= t2) {
                after++;
                if ((long long)smp.sent[i] > next) next = (long long)smp.sent[i];
            }
        }
        printf("%s{\"t\":%.6f,\"retry_after_ms\":%u,\"sent_at_start\":%lld,\"max_sent_inside\":%lld,"
               "\"samples_inside\":%d,\"max_sent_next\":%lld,\"samples_next\":%d}",
               b ? "," : "", t0, smp.bp_retry[b], at, max, inside, next, after);
    }
    printf("]}\n");
}

static int run_statsd(int argc, char **argv) {
    if (argc < 4) return 2;
    metricast_statsd_options_t o;
    metricast_statsd_options_init(&o);
    o.host = argv[2];
    o.port = (unsigned)atoi(argv[3]);
    o.flush_interval_ms = 100;
    const char *const own[] = {"env:it", NULL};
    o.tags = own;
    metricast_statsd_t *c;
    char err[METRICAST_ERR_LEN];
    int rc = metricast_statsd_open(&c, &o, err);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    const char *const route[] = {"route:/api", NULL};
    for (int i = 0; i < 10; i++) metricast_statsd_count(c, "it.requests", 1, 1, route);
    metricast_statsd_count(c, "it.sampled", 1, 0.5, NULL);
    metricast_statsd_gauge(c, "it.temperature", -3.5, NULL);
    metricast_statsd_gauge(c, "it.level", 10, NULL);
    metricast_statsd_gauge_delta(c, "it.level", 5, NULL);
    metricast_statsd_gauge_delta(c, "it.level", -2, NULL);
    for (int i = 1; i <= 100; i++) metricast_statsd_timing(c, "it.latency", i, 1, NULL);
    metricast_statsd_histogram(c, "it.size", 512, 1, NULL);
    metricast_statsd_set(c, "it.users", "alice", NULL);
    metricast_statsd_set(c, "it.users", "bob", NULL);
    metricast_statsd_set(c, "it.users", "alice", NULL);
    /* a datagram's worth of distinct series, to cross a datagram boundary */
    for (int i = 0; i < 150; i++) {
        char name[32];
        snprintf(name, sizeof name, "it.many_%03d", i);
        metricast_statsd_gauge(c, name, i, NULL);
    }
    metricast_statsd_stats_t st;
    metricast_statsd_close(c);
    (void)st;
    printf("{\"done\":true}\n");
    return 0;
}

static int run_source(int argc, char **argv) {
    if (argc < 4) return 2;
    metricast_source_options_t o;
    metricast_source_options_init(&o);
    o.url = argv[2];
    o.source = argv[3];
    o.on_event = on_event;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 1000;
    double seconds = 2, rate = 0;
    long flood = 0, per = 1;
    const char *publish = NULL;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--attrs")) o.attrs_json = argv[i + 1];
        else if (!strcmp(argv[i], "--token")) o.token = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--flood")) flood = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--frames-per-msg")) per = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--queue")) o.queue_messages = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--publish")) publish = argv[i + 1];
        else if (!strcmp(argv[i], "--linger")) o.linger_ms = (unsigned)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--burst")) o.backpressure_burst = (unsigned)atol(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    metricast_source_t *s;
    char err[METRICAST_ERR_LEN];
    int rc = metricast_source_open(&s, &o, err);
    if (rc < 0) {
        printf("{\"open_error\":%d,\"detail\":", rc);
        jstr(stdout, err);
        printf("}\n");
        return 1;
    }
    if (publish) {
        metricast_source_wait_connected(s, 10000);
        char id[METRICAST_EVENT_ID_LEN];
        rc = metricast_source_publish(s, publish, "{\"step\":1}", "corr-1", id);
        pthread_mutex_lock(&out_mu);
        printf("{\"published\":");
        jstr(stdout, id);
        printf(",\"rc\":%d}\n", rc);
        fflush(stdout);
        pthread_mutex_unlock(&out_mu);
    }
    double t0 = now_s();
    pthread_t sth;
    int sampling = 0;
    if (flood) {
        metricast_source_wait_connected(s, 10000);
        smp.s = s;
        sampling = pthread_create(&sth, NULL, sampler, NULL) == 0;
        for (long i = 0; i < flood; i++) {
            char lines[64 * 32];
            size_t n = 0;
            for (long k = 0; k < per && n + 32 < sizeof lines; k++)
                n += (size_t)snprintf(lines + n, sizeof lines - n, "%sflood_hits:1|c", k ? "\n" : "");
            metricast_source_statsd(s, lines);
        }
    }
    long tick = 0;
    while (now_s() - t0 < seconds) {
        if (rate > 0) {
            metricast_metric_t m[2] = {{"drv_value", (double)tick}, {"drv_const", 42}};
            metricast_source_gauges(s, m, 2, 0);
            metricast_metric_t cm[1] = {{"drv_client_sent", (double)tick}};
            metricast_source_client_metrics(s, cm, 1);
            tick++;
            usleep((useconds_t)(1e6 / rate));
        } else {
            usleep(20000);
        }
    }
    if (sampling) {
        smp.stop = 1;
        pthread_join(sth, NULL);
    }
    metricast_source_stats_t st;
    metricast_source_stats(s, &st);
    rc = metricast_source_close(s);
    if (sampling) {
        pthread_mutex_lock(&out_mu);
        print_pauses();
        pthread_mutex_unlock(&out_mu);
    }
    pthread_mutex_lock(&out_mu);
    printf("{\"stats\":{\"connects\":%u,\"connect_failures\":%u,\"sent\":%" PRIu64
           ",\"dropped\":%" PRIu64 ",\"backpressure_events\":%" PRIu64
           ",\"paused_ms\":%" PRIu64 ",\"last_retry_after_ms\":%u,\"publishes\":%" PRIu64
           ",\"acks\":%" PRIu64 ",\"ticks\":%ld,\"close_rc\":%d,\"queued_at_end\":%" PRIu64 "}}\n",
           st.connects, st.connect_failures, st.sent, st.dropped, st.backpressure_events,
           st.paused_ms, st.last_retry_after_ms, st.publishes, st.acks, tick, rc, st.queued);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "statsd") == 0) return run_statsd(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "source") == 0) return run_source(argc, argv);
    fprintf(stderr, "usage: client_driver statsd HOST PORT | source URL ID [options]\n");
    return 2;
}
