/* bench_exposition — how long GET /metrics (Prometheus text) and GET /api/v1/metrics (JSON)
 * take on a registry of ~100,000 series.
 *
 *   bench_exposition [--gauges N] [--sources N] [--runs N] [--feed-rate LINES_PER_S] [-v]
 *                    [--port STATSD_PORT --http-port HTTP_PORT |
 *                     -- METRICASTD --listen 127.0.0.1:PORT --statsd 127.0.0.1:0
 *                        --max-series 200000 ...]
 *
 * Feed: N gauge series (default 100,000: N/sources names `bench.gauge_NNN`, each with a
 * DogStatsD tag `source:srcNNNN` over --sources (1,000) sources), plus 1,000 counter series
 * (10 names × 100 sources, with `|@0.5` on half) and 500 timer series (5 names × 100
 * sources, 4 samples each). Gauge values are short decimals (`123.4`); --float-values sends
 * full-precision fractions instead (`17.858142857142859`), which the daemon formats on a
 * slower path. All of it is sent over UDP in ~1,400-byte datagrams paced at --feed-rate
 * (default 100,000 lines/s) so the daemon drops none. The feed is repeated (at most 3
 * passes; gauges are idempotent) until metricast_ingest_dropped_total did not move and
 * metricast_series has reached the series sent; the run fails otherwise.
 *
 * Then, against the idle daemon, one warm-up request of each and --runs (20) timed requests
 * of GET /metrics and of GET /api/v1/metrics, one after the other on fresh connections:
 * each time is connect + request + the whole body read (Content-Length), measured by the
 * client; time to first byte is reported too. Median, p90, min, max; body size and samples.
 *
 * Exit status: 0 when both endpoints answered 200 every time, 1 on a failure, 2 on usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define DGRAM_MAX 1400
#define COUNTER_NAMES 10
#define TIMER_NAMES 5
#define SMALL_SOURCES 100
#define TIMER_SAMPLES 4
#define MAX_RUNS 1000

static struct {
    long gauges, sources, runs;
    double feed_rate;
    int port, http_port;
    int verbose;
    int float_values; /* gauges carry full-precision fractions (e.g. 0.14285714285714285) */
} opt = {.gauges = 100000, .sources = 1000, .runs = 20, .feed_rate = 100000};

/* ---- the feed ------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    size_t *dg_off; /* datagram boundaries */
    uint32_t *dg_lines;
    size_t ndg, dg_cap;
    size_t cur_start;
    uint32_t cur_lines;
    uint64_t lines;
} feed_t;

static int feed_close_dgram(feed_t *f) {
    if (f->cur_lines == 0) return 0;
    if (f->ndg == f->dg_cap) {
        size_t nc = f->dg_cap ? f->dg_cap * 2 : 1024;
        size_t *o = realloc(f->dg_off, (nc + 1) * sizeof *o);
        if (!o) return -1;
        f->dg_off = o;
        uint32_t *l = realloc(f->dg_lines, nc * sizeof *l);
        if (!l) return -1;
        f->dg_lines = l;
        f->dg_cap = nc;
    }
    f->dg_off[f->ndg] = f->cur_start;
    f->dg_lines[f->ndg] = f->cur_lines;
    f->ndg++;
    f->dg_off[f->ndg] = f->len;
    f->cur_start = f->len;
    f->cur_lines = 0;
    return 0;
}

static int feed_line(feed_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int feed_line(feed_t *f, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n <= 0 || n >= (int)sizeof line - 1) return -1;
    line[n++] = '\n';
    if (f->len - f->cur_start + (size_t)n > DGRAM_MAX && feed_close_dgram(f) < 0) return -1;
    if (f->len + (size_t)n > f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 1 << 20;
        char *d = realloc(f->data, nc);
        if (!d) return -1;
        f->data = d;
        f->cap = nc;
    }
    memcpy(f->data + f->len, line, (size_t)n);
    f->len += (size_t)n;
    f->cur_lines++;
    f->lines++;
    return 0;
}

/* Returns the number of series the feed creates, or -1. */
static long feed_build(feed_t *f) {
    memset(f, 0, sizeof *f);
    long names = (opt.gauges + opt.sources - 1) / opt.sources, series = 0;
    /* source-major, so every datagram mixes names of one source as an agent would send */
    for (long s = 0; s < opt.sources; s++)
        for (long n = 0; n < names; n++) {
            long id = s * names + n;
            if (id >= opt.gauges) break;
            int rc = opt.float_values
                         ? feed_line(f, "bench.gauge_%03ld:%.17g|g|#source:src%04ld", n,
                                     (double)(id % 1000) / 7.0 + 0.001, s)
                         : feed_line(f, "bench.gauge_%03ld:%ld.%ld|g|#source:src%04ld", n,
                                     id % 1000, id % 7, s);
            if (rc < 0) return -1;
            series++;
        }
    for (long s = 0; s < SMALL_SOURCES; s++) {
        for (int n = 0; n < COUNTER_NAMES; n++) {
            if (feed_line(f, "bench.requests_%d:%ld|c%s|#source:src%04ld", n, s % 5 + 1,
                          n % 2 ? "|@0.5" : "", s) < 0)
                return -1;
            series++;
        }
        for (int n = 0; n < TIMER_NAMES; n++) {
            for (int k = 0; k < TIMER_SAMPLES; k++)
                if (feed_line(f, "bench.latency_%d:%d.%d|ms|#source:src%04ld", n,
                              (int)(s % 50) + k * 10, k, s) < 0)
                    return -1;
            series++;
        }
    }
    if (feed_close_dgram(f) < 0) return -1;
    return series;
}

/* Sends every datagram once, paced at opt.feed_rate lines/s. 0 or -1. */
static int feed_send(const feed_t *f, int port, double *secs) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    double t0 = now_ms();
    uint64_t sent_lines = 0;
    for (size_t i = 0; i < f->ndg;) {
        double due = t0 + (double)sent_lines / opt.feed_rate * 1e3;
        double now = now_ms();
        if (due > now + 0.05) {
            sleep_us((long)((due - now) * 1e3));
            continue;
        }
        ssize_t n = send(fd, f->data + f->dg_off[i], f->dg_off[i + 1] - f->dg_off[i], 0);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            if (errno == EAGAIN || errno == ENOBUFS) {
                sleep_us(100);
                continue;
            }
            fprintf(stderr, "bench_exposition: send: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
        sent_lines += f->dg_lines[i];
        i++;
    }
    *secs = (now_ms() - t0) / 1e3;
    close(fd);
    return 0;
}

/* ---- measuring ------------------------------------------------------------------------ */

static int scrape(int http_port, double *series, double *dropped, double *lines, double *rss) {
    int status;
    char *body;
    size_t blen;
    if (http_get(http_port, "/metrics", 10000, &status, &body, &blen) < 0) return -1;
    int rc = status == 200 && prom_find(body, "metricast_series", series) == 0 &&
                     prom_find(body, "metricast_ingest_dropped_total{reason=\"udp_buffer\"}",
                               dropped) == 0 &&
                     prom_find(body, "metricast_ingest_lines_total{transport=\"udp\"}", lines) == 0
                 ? 0
                 : -1;
    if (rss) prom_find(body, "process_resident_memory_bytes", rss);
    free(body);
    return rc;
}

typedef struct {
    double total[MAX_RUNS], ttfb[MAX_RUNS];
    size_t bytes, samples;
    int n, failures;
} timing_t;

static void time_endpoint(int http_port, const char *path, timing_t *t) {
    memset(t, 0, sizeof *t);
    for (long r = -1; r < opt.runs; r++) { /* r = -1: the warm-up */
        int status = 0;
        char *body = NULL;
        size_t blen = 0;
        double ttfb = 0, t0 = now_ms();
        int rc = http_get_ttfb(http_port, path, 30000, &status, &body, &blen, &ttfb);
        double ms = now_ms() - t0;
        if (rc < 0 || status != 200) {
            fprintf(stderr, "bench_exposition: GET %s: %s %d\n", path,
                    rc < 0 ? "failed" : "status", status);
            if (rc == 0) free(body);
            t->failures++;
            continue;
        }
        if (opt.verbose)
            printf("  GET %-16s %s %8.2f ms (first byte %7.2f ms) %zu bytes\n", path,
                   r < 0 ? "warm-up" : "       ", ms, ttfb, blen);
        if (r >= 0) {
            t->total[t->n] = ms;
            t->ttfb[t->n] = ttfb;
            t->n++;
        }
        t->bytes = blen;
        size_t samples = 0;
        const char *cnt = NULL;
        if (blen && body[0] == '{') { /* JSON: the "count" member after the series array */
            for (const char *p = body; (p = strstr(p, "\"count\":")); p++) cnt = p;
            if (cnt) samples = (size_t)strtoull(cnt + 8, NULL, 10);
        } else {
            for (const char *p = body; p && *p;) {
                if (*p != '#' && *p != '\n') samples++;
                p = strchr(p, '\n');
                if (p) p++;
            }
        }
        t->samples = samples;
        free(body);
    }
    sort_doubles(t->total, (size_t)t->n);
    sort_doubles(t->ttfb, (size_t)t->n);
}

static void print_timing(const char *path, const timing_t *t, int json) {
    if (t->n == 0) {
        printf("%-18s every request failed\n", path);
        return;
    }
    size_t n = (size_t)t->n;
    printf("%-18s %8.2f %8.2f %8.2f %8.2f   %8.2f %8.2f   %6.2f MB %8zu %s  %6.0f MB/s\n", path,
           median_sorted(t->total, n), pct_sorted(t->total, n, 90), t->total[0], t->total[n - 1],
           median_sorted(t->ttfb, n), pct_sorted(t->ttfb, n, 90), (double)t->bytes / 1e6,
           t->samples, json ? "series " : "samples", (double)t->bytes / 1e6 /
           (median_sorted(t->total, n) / 1e3));
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_exposition [--gauges N] [--sources N] [--runs N] "
               "[--feed-rate LINES_PER_S] [--float-values] [-v]\n"
               "         [--port STATSD_PORT --http-port HTTP_PORT | -- METRICASTD FLAGS...]\n"
               "  e.g. bench_exposition -- build/metricastd --listen 127.0.0.1:PORT "
               "--statsd 127.0.0.1:0 --max-series 200000 --data /tmp/d\n");
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--gauges") == 0 && v) {
            if ((opt.gauges = parse_long(argv[++i], 1, 10000000)) < 0) goto bad;
        } else if (strcmp(a, "--sources") == 0 && v) {
            if ((opt.sources = parse_long(argv[++i], 1, 100000)) < 0) goto bad;
        } else if (strcmp(a, "--runs") == 0 && v) {
            if ((opt.runs = parse_long(argv[++i], 1, MAX_RUNS)) < 0) goto bad;
        } else if (strcmp(a, "--feed-rate") == 0 && v) {
            long r = parse_long(argv[++i], 1000, 100000000);
            if (r < 0) goto bad;
            opt.feed_rate = (double)r;
        } else if (strcmp(a, "--port") == 0 && v) {
            if ((opt.port = (int)parse_long(argv[++i], 1, 65535)) < 0) goto bad;
        } else if (strcmp(a, "--http-port") == 0 && v) {
            if ((opt.http_port = (int)parse_long(argv[++i], 1, 65535)) < 0) goto bad;
        } else if (strcmp(a, "--float-values") == 0) {
            opt.float_values = 1;
        } else if (strcmp(a, "-v") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            goto bad;
        }
    }
    int running = opt.port || opt.http_port;
    if (running ? !(opt.port && opt.http_port) : i >= argc) goto bad;
    signal(SIGPIPE, SIG_IGN);

    feed_t feed;
    long want_series = feed_build(&feed);
    if (want_series < 0) {
        fprintf(stderr, "bench_exposition: out of memory\n");
        return 1;
    }

    daemon_cmd_t cmd;
    daemon_run_t run = {0};
    int statsd_port = opt.port, http_port = opt.http_port;
    if (!running) {
        char err[512];
        if (daemon_cmd_init(&cmd, argc - i, argv + i, err, sizeof err) < 0) {
            fprintf(stderr, "bench_exposition: %s\n", err);
            return 2;
        }
        double ready;
        if (daemon_start(&cmd, &run) < 0 || daemon_wait_healthy(&cmd, &run, 10000, &ready) != 0) {
            fprintf(stderr, "bench_exposition: the daemon did not become healthy\n");
            daemon_kill(&run);
            daemon_log_tail(&cmd, 10);
            daemon_cmd_free(&cmd);
            return 1;
        }
        double dl = now_ms() + 5000;
        while ((statsd_port = daemon_log_port(&cmd, "statsd listening")) == 0 && now_ms() < dl)
            sleep_us(1000);
        http_port = run.port;
        if (!statsd_port) {
            fprintf(stderr, "bench_exposition: no `statsd listening` log line (use --statsd "
                            "127.0.0.1:0)\n");
            daemon_kill(&run);
            daemon_cmd_free(&cmd);
            return 1;
        }
        printf("bench_exposition: metricastd pid %d, statsd 127.0.0.1:%d, http 127.0.0.1:%d\n",
               (int)run.pid, statsd_port, http_port);
    } else {
        printf("bench_exposition: running daemon, statsd 127.0.0.1:%d, http 127.0.0.1:%d\n",
               statsd_port, http_port);
    }
    printf("feed: %llu lines in %zu datagrams -> %ld series (%ld gauges over %ld sources, %d "
           "counters, %d timers), at %.0f lines/s\n",
           (unsigned long long)feed.lines, feed.ndg, want_series, opt.gauges, opt.sources,
           COUNTER_NAMES * SMALL_SOURCES, TIMER_NAMES * SMALL_SOURCES, opt.feed_rate);
    fflush(stdout);

    int rc = 0;
    double series = 0, dropped0 = 0, dropped = 0, lines0 = 0, lines = 0, rss = 0;
    if (scrape(http_port, &series, &dropped0, &lines0, NULL) < 0) {
        fprintf(stderr, "bench_exposition: GET /metrics failed before the feed\n");
        rc = 1;
        goto out;
    }
    double base_series = series;
    int fed = 0;
    for (int pass = 1; pass <= 3 && !fed; pass++) {
        double secs;
        if (feed_send(&feed, statsd_port, &secs) < 0) {
            rc = 1;
            goto out;
        }
        /* wait for the hub to merge the pass: lines counted up to what we sent, bounded */
        double dl = now_ms() + 15000;
        double want_lines = lines0 + (double)feed.lines * pass;
        do {
            sleep_us(100000);
            if (scrape(http_port, &series, &dropped, &lines, NULL) < 0) {
                rc = 1;
                goto out;
            }
        } while (lines + 0.5 < want_lines && (dropped == dropped0 || lines == 0) &&
                 now_ms() < dl);
        sleep_us(300000); /* and one more hub tick for the registry gauge */
        scrape(http_port, &series, &dropped, &lines, &rss);
        printf("feed pass %d: %.2f s, series %.0f, udp_buffer drops %.0f\n", pass, secs, series,
               dropped - dropped0);
        fed = dropped == dropped0 && series - base_series >= (double)want_series;
        dropped0 = dropped;
    }
    if (!fed || series < 100000) {
        fprintf(stderr, "bench_exposition: the registry holds %.0f series, not the %ld fed "
                        "(lower --feed-rate, raise --max-series)\n",
                series, want_series);
        if (!fed) rc = 1;
        if (!fed) goto out;
    }
    printf("registry: %.0f series, daemon RSS %.1f MiB\n\n", series, rss / 1048576.0);

    timing_t tp, tj;
    time_endpoint(http_port, "/metrics", &tp);
    time_endpoint(http_port, "/api/v1/metrics", &tj);
    printf("%-18s %8s %8s %8s %8s   %8s %8s   %9s %8s\n", "GET (ms)", "median", "p90", "min",
           "max", "ttfb med", "ttfb p90", "body", "count");
    print_timing("/metrics", &tp, 0);
    print_timing("/api/v1/metrics", &tj, 1);
    if (tp.failures || tj.failures) rc = 1;
    printf("%d + %d timed requests, %d failed; each is connect + request + whole body, "
           "sequential, daemon otherwise idle\n",
           tp.n, tj.n, tp.failures + tj.failures);
    if (tp.n && tj.n)
        printf("exposition_series=%.0f metrics_ms_median=%.2f metrics_ms_p90=%.2f "
               "metrics_bytes=%zu api_metrics_ms_median=%.2f api_metrics_ms_p90=%.2f "
               "api_metrics_bytes=%zu\n",
               series, median_sorted(tp.total, (size_t)tp.n), pct_sorted(tp.total, (size_t)tp.n, 90),
               tp.bytes, median_sorted(tj.total, (size_t)tj.n),
               pct_sorted(tj.total, (size_t)tj.n, 90), tj.bytes);

out:
    if (!running) {
        double stop_ms;
        int wst;
        if (daemon_stop(&run, 10000, &stop_ms, &wst) != 0) {
            char b[32];
            fprintf(stderr, "bench_exposition: daemon shutdown failed (%s)\n",
                    wst == -1 ? "timeout" : wstatus_str(wst, b, sizeof b));
            daemon_log_tail(&cmd, 10);
            rc = 1;
        }
        daemon_cmd_free(&cmd);
    }
    free(feed.data);
    free(feed.dg_off);
    free(feed.dg_lines);
    return rc;
bad:
    usage(stderr);
    return 2;
}
