/* bench_event_publish — CPU cost of one WebSocket publish on the hub, in-process (no
 * sockets, no threads): what the publisher's worker does with a message (jansson parse as
 * ws_msg_handle, then event_prepare_json on its "data" as handle_publish) plus the hub
 * thread's event_seal (seq + the shared frame). The hand-over between threads, the store's
 * INSERT and the syscalls are not in it (bench_ws_fanout --subs 1 measures the whole).
 *
 *   bench_event_publish [--n N] [--runs R] [--reparse]
 *
 * --reparse times the path before 2026-12-02: json_dumps of "data", then event_prepare
 * parsing that text again. Prints the best of R runs of N publishes, in ns per publish
 * (thread CPU time, so time the core spent on other processes does not count). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = 200000, runs = 5;
    bool reparse = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) n = atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--reparse") == 0) reparse = true;
        else {
            fprintf(stderr, "usage: bench_event_publish [--n N] [--runs R] [--reparse]\n");
            return 2;
        }
    }
    if (n < 1 || runs < 1) return 2;
    /* what bench_ws_fanout's publisher sends */
    static const char msg[] = "{\"type\":\"publish\",\"data\":{\"type\":\"bench.tick\",\"payload\":"
                              "{\"t\":1764655000123456,\"pad\":\"\"}}}";
    const char rnd[6] = {'a', 'b', 'c', '1', '2', '3'};
    char err[EVENT_ERR_LEN];
    double best = 0;
    for (long r = 0; r < runs; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < n; i++) {
            json_error_t je;
            json_t *root = json_loadb(msg, sizeof msg - 1, JSON_REJECT_DUPLICATES, &je);
            json_t *data = root ? json_object_get(root, "data") : NULL;
            event_t *e = NULL;
            if (data && !reparse) {
                e = event_prepare_json(data, 1764655000.123, rnd, err);
            } else if (data) {
                char *t = json_dumps(data, JSON_COMPACT);
                if (t) e = event_prepare(t, strlen(t), 1764655000.123, rnd, err);
                free(t);
            }
            if (!e || event_seal(e, (uint64_t)i + 1) < 0) {
                fprintf(stderr, "bench_event_publish: publish failed\n");
                return 1;
            }
            event_unref(e);
            json_decref(root);
        }
        double ns = (cpu_ns() - t0) / (double)n;
        if (r == 0 || ns < best) best = ns;
    }
    printf("event_publish_path=%s ns_per_publish=%.0f n=%ld runs=%ld\n",
           reparse ? "reparse" : "parsed_once", best, n, runs);
    return 0;
}
