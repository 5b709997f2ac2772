/* bench_client_statsd — the cost of a StatsD call in an application: libmetricast's
 * batched client (lines packed into 1432-byte datagrams on a non-blocking socket) against
 * the reference most hand-written clients are, one snprintf + send() per metric.
 *
 *   bench_client_statsd [--lines N] [--repeats R] [--threads T] [--mode both|batched|reference]
 *
 * A receiver thread drains a loopback UDP socket (8 MiB buffer) and counts the lines
 * that arrive, so loss is measured, not assumed. T sender threads share one client
 * handle (its mutex is part of the cost). Per mode it prints ns per call and lines/s
 * (median of R repeats), datagrams per 1,000 lines and lines lost, then one
 * machine-readable RESULT line. Every wait is bounded. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metricast.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    int fd;
    _Atomic uint64_t lines, datagrams;
    _Atomic int stop;
} receiver_t;

static void *receive(void *arg) {
    receiver_t *r = arg;
    char buf[2048];
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {r->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        for (;;) {
            ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) break;
            uint64_t l = 1;
            for (ssize_t i = 0; i < n; i++) l += buf[i] == '\n';
            atomic_fetch_add(&r->lines, l);
            atomic_fetch_add(&r->datagrams, 1);
        }
    }
    return NULL;
}

typedef struct {
    int mode; /* 0 batched (libmetricast), 1 one datagram per line */
    metricast_statsd_t *c;
    int fd; /* mode 1: a connected UDP socket of this thread */
    long lines;
    int id;
} sender_t;

static const char *const routes[] = {"route:/api/v1/ingest", "route:/api/v1/metrics",
                                     "route:/health", "route:/ws"};

static void *send_lines(void *arg) {
    sender_t *s = arg;
    char name[48];
    for (long i = 0; i < s->lines; i++) {
        snprintf(name, sizeof name, "bench.requests_%ld", i % 100);
        const char *route = routes[i & 3];
        if (s->mode == 0) {
            const char *const tags[] = {route, NULL};
            metricast_statsd_count(s->c, name, 1, 1, tags);
        } else {
            char line[128];
            int n = snprintf(line, sizeof line, "%s:1|c|#%s", name, route);
            send(s->fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long lines = 1000000;
    int repeats = 5, threads = 1, first = 0, last = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--lines")) lines = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode") && !strcmp(argv[i + 1], "batched")) last = 0;
        else if (!strcmp(argv[i], "--mode") && !strcmp(argv[i + 1], "reference")) first = 1;
        else if (!strcmp(argv[i], "--mode") && !strcmp(argv[i + 1], "both")) first = 0, last = 1;
        else {
            fprintf(stderr, "usage: bench_client_statsd [--lines N] [--repeats R] [--threads T] "
                            "[--mode both|batched|reference]\n");
            return 2;
        }
    }
    if (lines < 1000 || repeats < 1 || repeats > 50 || threads < 1 || threads > 16) return 2;
    receiver_t r = {.fd = socket(AF_INET, SOCK_DGRAM, 0)};
    int big = 8 << 20;
    setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(r.fd, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    socklen_t al = sizeof a;
    getsockname(r.fd, (struct sockaddr *)&a, &al);
    pthread_t rt;
    pthread_create(&rt, NULL, receive, &r);

    printf("%-28s %10s %12s %14s %10s\n", "mode", "ns/call", "lines/s", "dgrams/1000", "lost");
    double med[2] = {0, 0};
    for (int mode = first; mode <= last; mode++) {
        double *ns = calloc((size_t)repeats, sizeof *ns);
        uint64_t lost_total = 0, dgrams = 0, sent_lines = 0;
        for (int rep = 0; rep < repeats; rep++) {
            uint64_t l0 = atomic_load(&r.lines), d0 = atomic_load(&r.datagrams);
            metricast_statsd_t *c = NULL;
            sender_t s[16];
            if (mode == 0) {
                metricast_statsd_options_t o;
                metricast_statsd_options_init(&o);
                o.port = ntohs(a.sin_port);
                char err[METRICAST_ERR_LEN];
                if (metricast_statsd_open(&c, &o, err) < 0) {
                    fprintf(stderr, "open: %s\n", err);
                    return 1;
                }
            }
            for (int t = 0; t < threads; t++) {
                s[t] = (sender_t){mode, c, -1, lines / threads, t};
                if (mode == 1) {
                    s[t].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
                    connect(s[t].fd, (struct sockaddr *)&a, sizeof a);
                }
            }
            pthread_t th[16];
            double t0 = now_s();
            for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, send_lines, &s[t]);
            for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
            if (c) metricast_statsd_close(c); /* the last datagram goes out here */
            double dt = now_s() - t0;
            for (int t = 0; t < threads; t++)
                if (s[t].fd >= 0) close(s[t].fd);
            long sent = (lines / threads) * threads;
            /* let the receiver drain: at most 2 s */
            double deadline = now_s() + 2;
            while (atomic_load(&r.lines) - l0 < (uint64_t)sent && now_s() < deadline) usleep(2000);
            uint64_t got = atomic_load(&r.lines) - l0;
            lost_total += got < (uint64_t)sent ? (uint64_t)sent - got : 0;
            dgrams += atomic_load(&r.datagrams) - d0;
            sent_lines += (uint64_t)sent;
            ns[rep] = dt * 1e9 / (double)sent;
        }
        qsort(ns, (size_t)repeats, sizeof *ns, cmp);
        med[mode] = ns[repeats / 2];
        printf("%-28s %10.1f %12.0f %14.1f %10llu\n",
               mode == 0 ? "libmetricast (batched)" : "reference (1 send per line)", med[mode],
               1e9 / med[mode], 1000.0 * (double)dgrams / (double)sent_lines,
               (unsigned long long)lost_total);
        free(ns);
    }
    atomic_store(&r.stop, 1);
    pthread_join(rt, NULL);
    close(r.fd);
    printf("RESULT bench=client_statsd threads=%d lines=%ld batched_ns_per_call=%.1f "
           "reference_ns_per_call=%.1f speedup=%.2f\n",
           threads, lines, med[0], med[1], med[0] > 0 ? med[1] / med[0] : 0);
    return 0;
}
