/* bench_bridge_codec — CPU cost of the scale-out bridge's messages on the hub thread,
 * in-process (no NATS, no sockets): encoding an ingest batch as the publishing hub does
 * (bridge_encode_samples, split into messages), decoding it as every other hub does
 * (bridge_decode, which builds the batch to merge), and the same for one event
 * (bridge_encode_event / bridge_decode). Best of R runs, thread CPU time, so time the core
 * spent on other processes does not count.
 *
 *   bench_bridge_codec [--deltas N] [--runs R] [--events E]
 *
 * The batch: N distinct series from the StatsD path (agg_add + agg_flush), a quarter each
 * counters with a source tag, gauges, timers of 8 samples and sets of 4 members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg.h"
#include "bridge.h"
#include "event.h"
#include "statsd.h"

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void add(agg_t *a, const char *line) {
    statsd_line_t l;
    if (statsd_parse_line(line, strlen(line), &l) == STATSD_OK) agg_add(a, &l);
}

int main(int argc, char **argv) {
    long n = 20000, runs = 5, nev = 100000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--deltas") == 0 && i + 1 < argc) n = atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) nev = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_bridge_codec [--deltas N] [--runs R] [--events E]\n");
            return 2;
        }
    }
    if (n < 4 || runs < 1 || nev < 1) return 2;
    agg_t a;
    agg_init(&a, 0);
    char line[160];
    for (long i = 0; i < n; i++) {
        switch (i % 4) {
        case 0:
            snprintf(line, sizeof line, "requests_%ld:3|c|#source:robot_%ld,route:/api", i, i % 97);
            add(&a, line);
            break;
        case 1:
            snprintf(line, sizeof line, "temperature_%ld:%ld.25|g", i, i % 300);
            add(&a, line);
            break;
        case 2:
            for (int k = 0; k < 8; k++) {
                snprintf(line, sizeof line, "latency_%ld:%d.5|ms", i, 3 + k * 7);
                add(&a, line);
            }
            break;
        default:
            for (int k = 0; k < 4; k++) {
                snprintf(line, sizeof line, "users_%ld:user%d|s", i, k);
                add(&a, line);
            }
        }
    }
    int err = 0;
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
    if (!b) return 1;
    double best_enc = 1e30, best_dec = 1e30;
    size_t bytes = 0, msgs = 0;
    for (long r = 0; r < runs; r++) {
        buf_t out[64];
        size_t nm = 0;
        double t0 = cpu_ns();
        for (uint32_t from = 0; from < b->n && nm < 64;) {
            uint32_t next;
            buf_init(&out[nm]);
            if (bridge_encode_samples("bench-a", b, from, &next, &out[nm]) < 0) return 1;
            nm++;
            from = next;
        }
        double t1 = cpu_ns();
        bytes = 0;
        uint32_t got = 0;
        for (size_t m = 0; m < nm; m++) {
            bridge_msg_t msg;
            char e[256];
            if (bridge_decode(out[m].data, out[m].len, 0, &msg, e, sizeof e) != BRIDGE_OK) {
                fprintf(stderr, "decode: %s\n", e);
                return 1;
            }
            got += msg.batch->n;
            bridge_msg_free(&msg);
            bytes += out[m].len;
        }
        double t2 = cpu_ns();
        for (size_t m = 0; m < nm; m++) buf_free(&out[m]);
        if (got != b->n) return 1;
        msgs = nm;
        if (t1 - t0 < best_enc) best_enc = t1 - t0;
        if (t2 - t1 < best_dec) best_dec = t2 - t1;
    }
    printf("samples: %u deltas in %zu messages, %zu bytes (%.1f per delta)\n", b->n, msgs, bytes,
           (double)bytes / b->n);
    printf("  encode %.0f ns per delta, decode %.0f ns per delta (best of %ld)\n",
           best_enc / b->n, best_dec / b->n, runs);

    event_t *ev = event_make("tasks.created", "{\"task\":42,\"by\":\"robot_7\"}", NULL, 1700000000.5,
                             "abc123");
    if (!ev) return 1;
    double be = 1e30, bd = 1e30;
    buf_t eb = BUF_INIT;
    for (long r = 0; r < runs; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < nev; i++) {
            buf_reset(&eb);
            bridge_encode_event("bench-a", (uint64_t)i + 2, (uint64_t)i + 1, false, ev, &eb);
        }
        double t1 = cpu_ns();
        for (long i = 0; i < nev; i++) {
            bridge_msg_t msg;
            char e[256];
            if (bridge_decode(eb.data, eb.len, 0, &msg, e, sizeof e) != BRIDGE_OK) return 1;
            bridge_msg_free(&msg);
        }
        double t2 = cpu_ns();
        if (t1 - t0 < be) be = t1 - t0;
        if (t2 - t1 < bd) bd = t2 - t1;
    }
    printf("events: %zu-byte message; encode %.0f ns, decode %.0f ns per event (best of %ld)\n",
           eb.len, be / nev, bd / nev, runs);
    buf_free(&eb);
    event_unref(ev);
    agg_batch_free(b);
    agg_free(&a);
    return 0;
}
