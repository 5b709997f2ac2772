/* StatsD parser throughput: one buffer of ~1 M realistic mixed lines (counters with and
 * without sample rates, gauges and gauge deltas, timers, sets; DogStatsD tags on a third),
 * split at '\n' and parsed line by line, as the UDP ingest does. Prints ns/line and
 * lines/s, the median of 5 runs. Standalone (libc + src/statsd.c, src/metric.c):
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/statsd_parse.c src/statsd.c src/metric.c \
 *      -lm -o build/bench_statsd_parse && build/bench_statsd_parse [lines]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "statsd.h"

#define RUNS 5

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t next_rand(void) { /* xorshift64*: reproducible across libcs */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *const services[] = {"api", "web", "worker", "billing", "auth", "search"};
static const char *const what[] = {"requests",   "errors",        "latency",    "queue.depth",
                                   "cache.hits", "db.query_time", "bytes_sent", "users"};
static const char *const envs[] = {"prod", "staging", "dev"};

/* One line into p (no '\n'); returns its length. */
static int make_line(char *p, size_t cap) {
    uint32_t r = next_rand();
    const char *svc = services[r % 6], *w = what[(r >> 3) % 8];
    unsigned host = (r >> 6) % 64;
    int n;
    switch ((r >> 12) % 6) {
    case 0: n = snprintf(p, cap, "%s.%s.count:1|c", svc, w); break;
    case 1: n = snprintf(p, cap, "%s.%s.count:%u|c|@0.1", svc, w, (r >> 16) % 10 + 1); break;
    case 2: n = snprintf(p, cap, "%s.%s.gauge:%u.%02u|g", svc, w, (r >> 16) % 1000, r % 100); break;
    case 3:
        n = snprintf(p, cap, "%s.%s.gauge:%c%u|g", svc, w, r & 1 ? '+' : '-', (r >> 16) % 50);
        break;
    case 4:
        n = snprintf(p, cap, "%s.%s.time:%u.%u|ms|@0.5", svc, w, (r >> 16) % 2000, r % 10);
        break;
    default: n = snprintf(p, cap, "%s.unique_users:user%u|s", svc, (r >> 16) % 100000); break;
    }
    if ((r >> 20) % 3 == 0) /* DogStatsD tags on a third */
        n += snprintf(p + n, cap - (size_t)n, "|#env:%s,host:web-%02u,region:eu-west-1",
                      envs[(r >> 24) % 3], host);
    return n;
}

int main(int argc, char **argv) {
    long lines = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    if (lines <= 0) {
        fprintf(stderr, "usage: %s [lines]\n", argv[0]);
        return 2;
    }
    size_t cap = (size_t)lines * 128, len = 0;
    char *buf = malloc(cap);
    if (!buf) return 1;
    for (long i = 0; i < lines; i++) {
        len += (size_t)make_line(buf + len, cap - len);
        buf[len++] = '\n';
    }

    statsd_line_t l;
    double ns[RUNS];
    uint64_t ok = 0, bytes_check = 0;
    for (int run = 0; run < RUNS; run++) {
        ok = 0;
        bytes_check = 0;
        double t0 = now_ns();
        const char *p = buf, *end = buf + len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (statsd_parse_line(p, n, &l) == STATSD_OK) {
                ok++;
                /* use the result so the parse cannot be optimised away */
                bytes_check += l.name_len + (uint64_t)l.ntags + (uint64_t)l.nvalues;
            }
            p += n + 1;
        }
        ns[run] = (now_ns() - t0) / (double)lines;
    }
    if (ok != (uint64_t)lines) {
        fprintf(stderr, "bench_statsd_parse: %llu of %ld lines parsed: the generator is off\n",
                (unsigned long long)ok, lines);
        return 1;
    }
    qsort(ns, RUNS, sizeof ns[0], cmp_double);
    double med = ns[RUNS / 2];
    printf("statsd_parse: %ld lines (%.1f MB, avg %.1f B/line), median of %d runs: "
           "%.1f ns/line, %.2f M lines/s (min %.1f, max %.1f ns/line) [check %llu]\n",
           lines, (double)len / 1e6, (double)len / (double)lines, RUNS, med, 1e3 / med, ns[0],
           ns[RUNS - 1], (unsigned long long)bytes_check);
    free(buf);
    return 0;
}
