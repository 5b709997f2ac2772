/* bench_statsd_ingest — StatsD UDP ingest throughput and loss of metricastd, against the
 * same load on a minimal in-process receiver (the "raw ceiling" of this machine).
 *
 *   bench_statsd_ingest [--mode hub|sink|both] [--rate LINES_PER_S] [--duration S | --lines N (at most 600 s)]
 *                       [--threads 1|2] [--sockets N] [--sweep [--rates 2M,4M,...]
 *                       [--step-seconds S]] [--port P --http-port H] [-v]
 *                       [-- METRICASTD --listen 127.0.0.1:PORT --statsd 127.0.0.1:0 ...]
 *
 * Load: a pool of datagrams of at most --dgram-bytes (1,400) bytes is built before any
 * timing, from 10,000 distinct metric names whose kind is fixed by the name (50 % counters,
 * half of those lines with `|@0.5`; 25 % gauges; 20 % timers `|ms`; 5 % sets), a third of
 * the lines with a DogStatsD tag (a third of the names always carry `|#source:hostNN`, so
 * the load is exactly 10,000 series; --names changes the count). Every line ends with '\n'. Sender
 * threads send the pool round-robin with sendmmsg (64 datagrams a call) over --sockets
 * connected UDP sockets (source ports), one socket per call in turn, so the kernel's
 * SO_REUSEPORT hash spreads the load over the receiver's sockets as many clients would.
 * Lines sent are counted exactly from what sendmmsg accepted. --rate paces each thread to
 * rate/threads lines/s (sleeping between calls; at most 5 ms of catch-up burst); 0 sends as
 * fast as possible.
 *
 * Modes: `hub` measures metricastd (started from the command after `--`, or a running one
 * with --port STATSD_PORT --http-port HTTP_PORT): counters are read from GET /metrics before
 * and after, polling after the send until metricast_ingest_lines_total{transport="udp"}
 * reaches the lines sent or stops increasing (bounded). `sink` runs the same generator
 * against an in-process receiver: 2 threads, SO_REUSEPORT sockets on one port, recvmmsg,
 * 8 MiB SO_RCVBUF, SO_RXQ_OVFL, counting '\n' bytes and nothing else. `both` runs sink then
 * hub and prints the hub/sink ratio. --sweep steps through --rates (default 2M..12M),
 * --step-seconds each (default 4), stopping after two lossy steps in a row, then one
 * unpaced step; the result is the highest zero-loss rate of each.
 *
 * Zero loss: counted == sent, dropped (udp_buffer) == 0, rejected == 0. A step where the
 * sender achieved less than 97 % of the target rate is marked "gen-limited"; the highest
 * zero-loss rate reported is the achieved send rate of the fastest zero-loss step (the
 * unpaced one included), so for the sink it is often the generator's ceiling, not the
 * sink's.
 *
 * Exit status: 0 when the runs completed (whatever the loss), 1 on a failure (daemon did not
 * start, /metrics unreadable, daemon exit status not 0), 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "statsd_load.h"

#define POOL_DGRAMS STATSD_POOL_DGRAMS
#define BATCH 64
#define MAX_THREADS 2
#define MAX_SOCKETS 256
#define SINK_THREADS 2
#define SINK_RCVBUF (8 << 20)
#define SINK_DGRAM_MAX (16 * 1024)
#define MAX_RATES 32
#define CATCHUP_NS 5000000LL /* at most 5 ms of missed schedule is sent as a burst */

/* ---- options -------------------------------------------------------------------------- */

typedef enum { MODE_HUB, MODE_SINK, MODE_BOTH } mode_t_;

static struct {
    mode_t_ mode;
    double rate; /* lines/s, 0 = unpaced */
    double duration_s;
    uint64_t lines; /* 0 = by duration */
    int threads;
    int names;
    int sockets;
    int dgram_bytes;
    int sweep;
    double rates[MAX_RATES];
    int nrates;
    double step_s;
    int port, http_port; /* a running daemon */
    int verbose;
    double drain_timeout_s;
} opt = {
    .mode = MODE_BOTH,
    .rate = 0,
    .duration_s = 5,
    .threads = 1,
    .names = 10000,
    .sockets = 64,
    .dgram_bytes = 1400,
    .rates = {2e6, 4e6, 6e6, 8e6, 10e6, 12e6},
    .nrates = 6,
    .step_s = 4,
    .drain_timeout_s = 10,
};

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Busy (non-idle, non-iowait) CPU seconds of the whole machine, from /proc/stat. */
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "re");
    if (!f) return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return 0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    /* user nice system [idle iowait] irq softirq steal; guest time is inside user */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
}

/* "12M", "2.5m", "500k", "1000000" */
static double parse_rate(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return -1;
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'm' || *end == 'M') v *= 1e6, end++;
    else if (*end == 'g' || *end == 'G') v *= 1e9, end++;
    return *end ? -1 : v;
}

static const char *fmt_rate(double v, char *buf, size_t n) {
    if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1fk", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
    return buf;
}

/* ---- the datagram pool (bench/statsd_load.c) ---------------------------------------- */

static statsd_pool_t pool;

/* ---- senders -------------------------------------------------------------------------- */

typedef struct {
    int id;
    int port;
    double rate; /* this thread's lines/s; 0 = unpaced */
    uint64_t deadline_ns;
    uint64_t max_lines; /* 0 = no limit */
    int fds[MAX_SOCKETS];
    int nfds;
    struct mmsghdr *msgs;
    pthread_t th;
    /* results */
    uint64_t lines, dgrams, bytes, errors, calls, errors_in_row;
    double cpu_s;
    int fail_errno;
} sender_t;

static void *sender_main(void *arg) {
    sender_t *s = arg;
    double cpu0 = thread_cpu_s();
    uint64_t t0 = mono_ns();
    size_t pos = (size_t)s->id * (POOL_DGRAMS / MAX_THREADS);
    int sock = 0;
    while (1) {
        uint64_t now = mono_ns();
        if (now >= s->deadline_ns) break;
        if (s->max_lines && s->lines >= s->max_lines) break;
        if (s->rate > 0) {
            /* the time at which the lines sent so far are due */
            uint64_t due = t0 + (uint64_t)((double)s->lines / s->rate * 1e9);
            if (due > now) {
                uint64_t wait = due - now;
                if (now + wait > s->deadline_ns) wait = s->deadline_ns - now;
                struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
                nanosleep(&ts, NULL);
                continue;
            } else if (now - due > (uint64_t)CATCHUP_NS) {
                /* far behind (preempted): forget the missed schedule instead of bursting */
                t0 += now - due - (uint64_t)CATCHUP_NS;
            }
        }
        size_t n = POOL_DGRAMS - pos < BATCH ? POOL_DGRAMS - pos : BATCH;
        if (s->max_lines) { /* do not overshoot --lines by more than one datagram */
            uint64_t left = s->max_lines - s->lines, l = 0;
            size_t k = 0;
            while (k < n && l < left) l += pool.lines[pos + k++];
            n = k;
        }
        int r = sendmmsg(s->fds[sock], s->msgs + pos, (unsigned)n, 0);
        s->calls++;
        if (r < 0) {
            s->errors++;
            if (++s->errors_in_row > 10000) { /* nobody is listening: do not spin to the end */
                s->fail_errno = errno;
                break;
            }
            if (errno == ECONNREFUSED || errno == EINTR) continue; /* ICMP from a gap */
            if (errno == EAGAIN || errno == ENOBUFS) {
                sleep_us(50);
                continue;
            }
            s->fail_errno = errno;
            break;
        }
        s->errors_in_row = 0;
        for (int k = 0; k < r; k++) {
            s->lines += pool.lines[pos + (size_t)k];
            s->bytes += pool.iov[pos + (size_t)k].iov_len;
        }
        s->dgrams += (uint64_t)r;
        pos += (size_t)r;
        if (pos >= POOL_DGRAMS) pos = 0;
        if (++sock == s->nfds) sock = 0;
    }
    s->cpu_s = thread_cpu_s() - cpu0;
    return NULL;
}

typedef struct {
    uint64_t lines, dgrams, bytes, errors, calls;
    double cpu_s;
    double t_start_ms, t_end_ms;
    int fail_errno;
} send_result_t;

/* Sends to 127.0.0.1:port at `rate` lines/s (0 = unpaced) for duration_s or max_lines. */
static int send_load(int port, double rate, double duration_s, uint64_t max_lines,
                     send_result_t *res) {
    memset(res, 0, sizeof *res);
    sender_t s[MAX_THREADS];
    memset(s, 0, sizeof s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = 0;
    for (int t = 0; t < opt.threads; t++) {
        s[t].id = t;
        s[t].port = port;
        s[t].rate = rate / opt.threads;
        s[t].max_lines = max_lines ? (max_lines + (uint64_t)opt.threads - 1) / (uint64_t)opt.threads : 0;
        s[t].nfds = opt.sockets / opt.threads > 0 ? opt.sockets / opt.threads : 1;
        s[t].msgs = calloc(POOL_DGRAMS, sizeof *s[t].msgs);
        if (!s[t].msgs) return -1;
        for (int i = 0; i < POOL_DGRAMS; i++) {
            s[t].msgs[i].msg_hdr.msg_iov = &pool.iov[i];
            s[t].msgs[i].msg_hdr.msg_iovlen = 1;
        }
        for (int k = 0; k < s[t].nfds; k++) {
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            int sb = 4 << 20;
            if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
            if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
                fprintf(stderr, "bench_statsd_ingest: UDP socket: %s\n", strerror(errno));
                if (fd >= 0) close(fd);
                s[t].nfds = k;
                rc = -1;
                break;
            }
            s[t].fds[k] = fd;
        }
    }
    if (rc == 0) {
        res->t_start_ms = now_ms();
        uint64_t dl = mono_ns() + (uint64_t)(duration_s * 1e9);
        int started = 0;
        for (int t = 0; t < opt.threads; t++) {
            s[t].deadline_ns = dl;
            if (pthread_create(&s[t].th, NULL, sender_main, &s[t]) != 0) {
                rc = -1;
                break;
            }
            started++;
        }
        for (int t = 0; t < started; t++) pthread_join(s[t].th, NULL);
        res->t_end_ms = now_ms();
    }
    for (int t = 0; t < opt.threads; t++) {
        res->lines += s[t].lines;
        res->dgrams += s[t].dgrams;
        res->bytes += s[t].bytes;
        res->errors += s[t].errors;
        res->calls += s[t].calls;
        res->cpu_s += s[t].cpu_s;
        if (s[t].fail_errno) res->fail_errno = s[t].fail_errno;
        for (int k = 0; k < s[t].nfds; k++) close(s[t].fds[k]);
        free(s[t].msgs);
    }
    if (res->fail_errno) {
        fprintf(stderr, "bench_statsd_ingest: sendmmsg: %s\n", strerror(res->fail_errno));
        rc = -1;
    }
    return rc;
}

/* ---- the raw sink --------------------------------------------------------------------- */

typedef struct {
    int fd;
    pthread_t th;
    _Atomic uint64_t lines, dgrams, bytes, dropped;
    uint32_t last_ovfl;
    _Atomic double cpu_s;
} sink_thread_t;

static struct {
    sink_thread_t t[SINK_THREADS];
    _Atomic int stop;
    int port;
    int rcvbuf;
} sink;

static void *sink_main(void *arg) {
    sink_thread_t *t = arg;
    char *bufs = malloc((size_t)BATCH * SINK_DGRAM_MAX);
    if (!bufs) return NULL;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    char ctrl[BATCH][CMSG_SPACE(sizeof(uint32_t))];
    double cpu0 = thread_cpu_s();
    uint64_t iter = 0;
    while (!atomic_load_explicit(&sink.stop, memory_order_relaxed)) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs + (size_t)i * SINK_DGRAM_MAX;
            iov[i].iov_len = SINK_DGRAM_MAX;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = ctrl[i];
            msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
        }
        int n = recvmmsg(t->fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n > 0) {
            uint64_t lines = 0, bytes = 0;
            for (int i = 0; i < n; i++) {
                const char *p = iov[i].iov_base, *end = p + msgs[i].msg_len;
                bytes += msgs[i].msg_len;
                while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
                    lines++;
                    p++;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL) continue;
                    uint32_t v;
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    if (v != t->last_ovfl) {
                        atomic_fetch_add_explicit(&t->dropped, (uint32_t)(v - t->last_ovfl),
                                                  memory_order_relaxed);
                        t->last_ovfl = v;
                    }
                }
            }
            atomic_fetch_add_explicit(&t->lines, lines, memory_order_relaxed);
            atomic_fetch_add_explicit(&t->dgrams, (uint64_t)n, memory_order_relaxed);
            atomic_fetch_add_explicit(&t->bytes, bytes, memory_order_relaxed);
        }
        if ((++iter & 63) == 0 || n <= 0)
            atomic_store_explicit(&t->cpu_s, thread_cpu_s() - cpu0, memory_order_relaxed);
    }
    atomic_store(&t->cpu_s, thread_cpu_s() - cpu0);
    free(bufs);
    return NULL;
}

static int sink_open(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < SINK_THREADS; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        int one = 1, sz = SINK_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
        struct timeval tv = {0, 20000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (i > 0) a.sin_port = htons((uint16_t)sink.port);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            fprintf(stderr, "bench_statsd_ingest: sink bind: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
        if (i == 0) {
            socklen_t al = sizeof a;
            getsockname(fd, (struct sockaddr *)&a, &al);
            sink.port = ntohs(a.sin_port);
            socklen_t sl = sizeof sink.rcvbuf;
            getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sink.rcvbuf, &sl);
        }
        sink.t[i].fd = fd;
    }
    for (int i = 0; i < SINK_THREADS; i++)
        if (pthread_create(&sink.t[i].th, NULL, sink_main, &sink.t[i]) != 0) return -1;
    return 0;
}

static void sink_close(void) {
    atomic_store(&sink.stop, 1);
    for (int i = 0; i < SINK_THREADS; i++) {
        pthread_join(sink.t[i].th, NULL);
        close(sink.t[i].fd);
    }
}

/* ---- the receiver's counters (hub: GET /metrics; sink: the atomics) -------------------- */

typedef struct {
    double lines, dropped, rejected, datagrams, cpu_s, rss_bytes;
    double per_thread_lines[SINK_THREADS];
} counters_t;

typedef struct {
    int is_hub;
    int statsd_port, http_port;
    pid_t pid; /* 0 for a daemon we did not start */
} target_t;

/* Sum of every sample of a family whose line starts with prefix (e.g. `name{`). */
static double prom_sum(const char *body, const char *prefix) {
    size_t pl = strlen(prefix);
    double sum = 0;
    for (const char *p = body; p && *p;) {
        if (strncmp(p, prefix, pl) == 0) {
            const char *sp = strchr(p, ' ');
            const char *nl = strchr(p, '\n');
            if (sp && (!nl || sp < nl)) sum += strtod(sp + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return sum;
}

static int read_counters(const target_t *tg, counters_t *c) {
    memset(c, 0, sizeof *c);
    if (!tg->is_hub) {
        for (int i = 0; i < SINK_THREADS; i++) {
            c->per_thread_lines[i] = (double)atomic_load(&sink.t[i].lines);
            c->lines += c->per_thread_lines[i];
            c->dropped += (double)atomic_load(&sink.t[i].dropped);
            c->datagrams += (double)atomic_load(&sink.t[i].dgrams);
            c->cpu_s += atomic_load(&sink.t[i].cpu_s);
        }
        return 0;
    }
    int status;
    char *body;
    size_t blen;
    if (http_get(tg->http_port, "/metrics", 5000, &status, &body, &blen) < 0 || status != 200) {
        if (status) free(body);
        fprintf(stderr, "bench_statsd_ingest: GET /metrics failed (status %d)\n", status);
        return -1;
    }
    int rc = 0;
    if (prom_find(body, "metricast_ingest_lines_total{transport=\"udp\"}", &c->lines) < 0 ||
        prom_find(body, "metricast_ingest_dropped_total{reason=\"udp_buffer\"}", &c->dropped) < 0 ||
        prom_find(body, "metricast_ingest_datagrams_total", &c->datagrams) < 0) {
        fprintf(stderr, "bench_statsd_ingest: /metrics lacks the ingest counters\n");
        rc = -1;
    }
    c->rejected = prom_sum(body, "metricast_ingest_rejected_total{");
    prom_find(body, "process_cpu_seconds_total", &c->cpu_s);
    prom_find(body, "process_resident_memory_bytes", &c->rss_bytes);
    free(body);
    return rc;
}

/* ---- one step ------------------------------------------------------------------------- */

typedef struct {
    double target_rate;
    send_result_t snd;
    double counted, dropped_dgrams, rejected, datagrams, cpu_s, rss_mib;
    double send_s, recv_s, drain_s;
    double lost;
    double gen_cpu_s;
    double other_cpu_s; /* machine busy time not ours: another process competing */
    double split; /* sink: share of the busier receiver thread */
    int zero_loss, gen_limited;
} step_t;

static int run_step(const target_t *tg, double rate, double duration_s, uint64_t max_lines,
                    step_t *st) {
    memset(st, 0, sizeof *st);
    st->target_rate = rate;
    counters_t c0, c1;
    if (read_counters(tg, &c0) < 0) return -1;
    double busy0 = machine_busy_s();
    if (send_load(tg->statsd_port, rate, duration_s, max_lines, &st->snd) < 0) return -1;
    double busy1 = machine_busy_s();
    counters_t cm;
    if (read_counters(tg, &cm) < 0) return -1;
    /* wait for the receiver to account for what was sent */
    double t_sent = st->snd.t_end_ms, t_final = t_sent;
    double poll_ms = tg->is_hub ? 100 : 10, quiet_ms = tg->is_hub ? 600 : 200;
    double deadline = t_sent + opt.drain_timeout_s * 1e3;
    double last = -1;
    double last_change = t_sent;
    for (;;) {
        if (read_counters(tg, &c1) < 0) return -1;
        double now = now_ms();
        if (c1.lines != last) {
            last = c1.lines;
            last_change = now;
        }
        if (c1.lines - c0.lines >= (double)st->snd.lines) {
            t_final = now;
            break;
        }
        if (now - last_change >= quiet_ms || now >= deadline) {
            t_final = last_change;
            break;
        }
        sleep_us((long)(poll_ms * 1000));
    }
    if (tg->is_hub) { /* the CPU and RSS once everything is merged */
        sleep_us(150000);
        if (read_counters(tg, &c1) < 0) return -1;
    }
    st->counted = c1.lines - c0.lines;
    st->dropped_dgrams = c1.dropped - c0.dropped;
    st->rejected = c1.rejected - c0.rejected;
    st->datagrams = c1.datagrams - c0.datagrams;
    st->cpu_s = c1.cpu_s - c0.cpu_s;
    st->rss_mib = c1.rss_bytes / 1048576.0;
    if (!tg->is_hub) {
        double a = c1.per_thread_lines[0] - c0.per_thread_lines[0];
        double b = c1.per_thread_lines[1] - c0.per_thread_lines[1];
        st->split = a + b > 0 ? (a > b ? a : b) / (a + b) : 0;
    }
    st->send_s = (st->snd.t_end_ms - st->snd.t_start_ms) / 1e3;
    st->drain_s = (t_final - t_sent) / 1e3;
    /* The hub merges every 100 ms and we poll every 100 ms (0.25 s of lag): the receive window
     * is the send window, or longer when the receiver was still catching up afterwards
     * (minus that publication lag). */
    double lag = tg->is_hub ? 0.25 : 0.01;
    st->recv_s = st->send_s;
    if (st->drain_s - lag > 0) st->recv_s += st->drain_s - lag;
    st->lost = (double)st->snd.lines - st->counted;
    st->gen_cpu_s = st->snd.cpu_s;
    st->other_cpu_s = busy1 - busy0 - st->gen_cpu_s - (cm.cpu_s - c0.cpu_s);
    if (st->other_cpu_s < 0) st->other_cpu_s = 0;
    st->gen_limited = rate > 0 && (double)st->snd.lines / st->send_s < 0.97 * rate;
    st->zero_loss = st->lost == 0 && st->dropped_dgrams == 0 && st->rejected == 0;
    return 0;
}

static void print_step_header(void) {
    printf("  %-7s %9s %9s %9s %8s %9s %7s %9s %8s %7s %6s %7s %7s %s\n", "target", "sent",
           "sent/s", "recv/s", "loss%", "lost", "dropped", "rejected", "rx_cpu", "gen_cpu",
           "other", "drain", "rss", "verdict");
}

static void print_step(const step_t *st) {
    char a[32], b[32], c[32];
    double sent_rate = (double)st->snd.lines / st->send_s;
    double recv_rate = st->counted / st->recv_s;
    double loss = st->snd.lines ? 100.0 * st->lost / (double)st->snd.lines : 0;
    printf("  %-7s %9llu %9s %9s %8.4f %9.0f %7.0f %9.0f %7.2fc %6.2fc %5.2fc %6.2fs ",
           st->target_rate > 0 ? fmt_rate(st->target_rate, a, sizeof a) : "max",
           (unsigned long long)st->snd.lines, fmt_rate(sent_rate, b, sizeof b),
           fmt_rate(recv_rate, c, sizeof c), loss, st->lost, st->dropped_dgrams, st->rejected,
           st->cpu_s / st->recv_s, st->gen_cpu_s / st->send_s, st->other_cpu_s / st->send_s,
           st->drain_s);
    if (st->rss_mib > 0) printf("%5.1fM ", st->rss_mib);
    else printf("%6s ", "-");
    printf("%s", st->zero_loss ? (st->gen_limited ? "no loss, gen-limited" : "ZERO LOSS") : "LOSS");
    if (st->split > 0) printf(" (busier rx thread %.0f%%)", st->split * 100);
    printf("\n");
    if (opt.verbose)
        printf("          datagrams sent %llu recv %.0f, %llu sendmmsg calls, %llu errors, "
               "%.3f s send, %.3f s recv window\n",
               (unsigned long long)st->snd.dgrams, st->datagrams,
               (unsigned long long)st->snd.calls, (unsigned long long)st->snd.errors,
               st->send_s, st->recv_s);
    fflush(stdout);
}

/* ---- a whole run against one target -------------------------------------------------- */

typedef struct {
    double best_zero_loss; /* achieved lines/s of the fastest zero-loss step */
    double max_recv;       /* recv lines/s of the unpaced step */
    double max_loss_pct;
    double max_cpu_cores;
    double single_recv, single_loss_pct;
    int ok;
} summary_t;

/* A step without loss shows the receiver kept up with the rate the generator achieved,
 * whether or not that was the rate asked for (an unpaced step counts too). */
static void note_zero_loss(summary_t *sum, const step_t *st) {
    double r = (double)st->snd.lines / st->send_s;
    if (st->zero_loss && r > sum->best_zero_loss) sum->best_zero_loss = r;
}

static int run_target(const target_t *tg, summary_t *sum) {
    memset(sum, 0, sizeof *sum);
    step_t st;
    print_step_header();
    if (!opt.sweep) {
        if (run_step(tg, opt.rate, opt.lines ? 600 : opt.duration_s, opt.lines, &st) < 0) return -1;
        print_step(&st);
        sum->single_recv = st.counted / st.recv_s;
        sum->single_loss_pct = st.snd.lines ? 100.0 * st.lost / (double)st.snd.lines : 0;
        note_zero_loss(sum, &st);
        sum->max_recv = sum->single_recv;
        sum->max_cpu_cores = st.cpu_s / st.recv_s;
        return 0;
    }
    int lossy_in_row = 0;
    for (int i = 0; i < opt.nrates; i++) {
        if (run_step(tg, opt.rates[i], opt.step_s, 0, &st) < 0) return -1;
        print_step(&st);
        note_zero_loss(sum, &st);
        lossy_in_row = st.zero_loss ? 0 : lossy_in_row + 1;
        if (lossy_in_row >= 2) break;
        sleep_us(300000);
    }
    if (run_step(tg, 0, opt.step_s, 0, &st) < 0) return -1;
    print_step(&st);
    note_zero_loss(sum, &st);
    sum->max_recv = st.counted / st.recv_s;
    sum->max_loss_pct = st.snd.lines ? 100.0 * st.lost / (double)st.snd.lines : 0;
    sum->max_cpu_cores = st.cpu_s / st.recv_s;
    return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_statsd_ingest [--mode hub|sink|both] [--rate LINES_PER_S (0 = max)]\n"
            "         [--duration S | --lines N] [--threads 1|2] [--names N] [--sockets N]\n"
            "         [--dgram-bytes B]\n"
            "         [--sweep [--rates 2M,4M,...] [--step-seconds S]] [-v]\n"
            "         [--port STATSD_PORT --http-port HTTP_PORT | -- METRICASTD FLAGS...]\n"
            "  e.g. bench_statsd_ingest --mode both --sweep -- build/metricastd \\\n"
            "         --listen 127.0.0.1:PORT --statsd 127.0.0.1:0 --data /tmp/d\n");
}

static int parse_rates(const char *s) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    opt.nrates = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        double r = parse_rate(tok);
        if (r <= 0 || opt.nrates == MAX_RATES) return -1;
        opt.rates[opt.nrates++] = r;
    }
    return opt.nrates ? 0 : -1;
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--mode") == 0 && v) {
            i++;
            if (strcmp(v, "hub") == 0) opt.mode = MODE_HUB;
            else if (strcmp(v, "sink") == 0) opt.mode = MODE_SINK;
            else if (strcmp(v, "both") == 0) opt.mode = MODE_BOTH;
            else goto bad;
        } else if (strcmp(a, "--rate") == 0 && v) {
            i++;
            if ((opt.rate = parse_rate(v)) < 0) goto bad;
        } else if (strcmp(a, "--duration") == 0 && v) {
            i++;
            opt.duration_s = strtod(v, NULL);
            if (!(opt.duration_s > 0 && opt.duration_s <= 600)) goto bad;
        } else if (strcmp(a, "--lines") == 0 && v) {
            i++;
            double l = parse_rate(v);
            if (l < 1) goto bad;
            opt.lines = (uint64_t)l;
        } else if (strcmp(a, "--threads") == 0 && v) {
            i++;
            if ((opt.threads = (int)parse_long(v, 1, MAX_THREADS)) < 0) goto bad;
        } else if (strcmp(a, "--names") == 0 && v) {
            i++;
            if ((opt.names = (int)parse_long(v, 20, 10000000)) < 0) goto bad;
        } else if (strcmp(a, "--sockets") == 0 && v) {
            i++;
            if ((opt.sockets = (int)parse_long(v, 1, MAX_SOCKETS)) < 0) goto bad;
        } else if (strcmp(a, "--dgram-bytes") == 0 && v) {
            i++;
            if ((opt.dgram_bytes = (int)parse_long(v, 256, 65000)) < 0) goto bad;
        } else if (strcmp(a, "--sweep") == 0) {
            opt.sweep = 1;
        } else if (strcmp(a, "--rates") == 0 && v) {
            i++;
            if (parse_rates(v) < 0) goto bad;
        } else if (strcmp(a, "--step-seconds") == 0 && v) {
            i++;
            opt.step_s = strtod(v, NULL);
            if (!(opt.step_s > 0 && opt.step_s <= 600)) goto bad;
        } else if (strcmp(a, "--port") == 0 && v) {
            i++;
            if ((opt.port = (int)parse_long(v, 1, 65535)) < 0) goto bad;
        } else if (strcmp(a, "--http-port") == 0 && v) {
            i++;
            if ((opt.http_port = (int)parse_long(v, 1, 65535)) < 0) goto bad;
        } else if (strcmp(a, "-v") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            goto bad;
        }
    }
    int want_hub = opt.mode != MODE_SINK, want_sink = opt.mode != MODE_HUB;
    int running = opt.port || opt.http_port;
    if (want_hub && running && !(opt.port && opt.http_port)) goto bad;
    if (want_hub && !running && i >= argc) {
        fprintf(stderr, "bench_statsd_ingest: hub mode needs `-- METRICASTD ...` or --port and "
                        "--http-port\n");
        goto bad;
    }
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL); /* pacing sleeps of ~100 µs must not be stretched */

    if (statsd_pool_build(&pool, opt.names, opt.dgram_bytes) < 0) {
        fprintf(stderr, "bench_statsd_ingest: out of memory\n");
        return 1;
    }
    printf("bench_statsd_ingest: %d datagrams pooled, %llu lines from %d names, %.1f lines/datagram, "
           "%.1f bytes/line; %.1f%% counters (%.1f%% of lines with @0.5), %.1f%% gauges, "
           "%.1f%% timers, %.1f%% sets, %.1f%% tagged; %d sender thread(s), %d source sockets\n",
           POOL_DGRAMS, (unsigned long long)pool.total_lines, opt.names,
           (double)pool.total_lines / POOL_DGRAMS, (double)pool.total_bytes / (double)pool.total_lines,
           100.0 * (double)pool.kind_lines[0] / (double)pool.total_lines,
           100.0 * (double)pool.rated / (double)pool.total_lines,
           100.0 * (double)pool.kind_lines[1] / (double)pool.total_lines,
           100.0 * (double)pool.kind_lines[2] / (double)pool.total_lines,
           100.0 * (double)pool.kind_lines[3] / (double)pool.total_lines,
           100.0 * (double)pool.tagged / (double)pool.total_lines, opt.threads, opt.sockets);
    if (opt.sweep) {
        char r[32];
        printf("sweep: %.1f s per step over", opt.step_s);
        for (int k = 0; k < opt.nrates; k++) printf(" %s", fmt_rate(opt.rates[k], r, sizeof r));
        printf(" lines/s, then unpaced (max)\n");
    } else if (opt.lines) {
        printf("single run: %llu lines at %s\n", (unsigned long long)opt.lines,
               opt.rate > 0 ? "the given rate" : "max rate");
    } else {
        char r[32];
        printf("single run: %.1f s at %s lines/s\n", opt.duration_s,
               opt.rate > 0 ? fmt_rate(opt.rate, r, sizeof r) : "max");
    }
    printf("columns: recv/s = lines counted by the receiver / receive window; loss%% = "
           "(sent - counted) / sent; dropped = datagrams the kernel dropped (SO_RXQ_OVFL); "
           "rx_cpu / gen_cpu = cores used by receiver / generator; other = cores used by the rest "
           "of the machine (kernel softirq threads, other processes) while sending\n");
    fflush(stdout);

    int rc = 0;
    summary_t ssum = {0}, hsum = {0};
    int have_sink = 0, have_hub = 0;

    if (want_sink) {
        if (sink_open() < 0) {
            fprintf(stderr, "bench_statsd_ingest: cannot open the sink\n");
            return 1;
        }
        printf("\n== sink (raw ceiling): %d threads, SO_REUSEPORT, recvmmsg x%d, SO_RCVBUF %d "
               "bytes (kernel value), 127.0.0.1:%d\n",
               SINK_THREADS, BATCH, sink.rcvbuf, sink.port);
        target_t tg = {.is_hub = 0, .statsd_port = sink.port};
        if (run_target(&tg, &ssum) < 0) rc = 1;
        else have_sink = 1;
        sink_close();
    }

    if (want_hub && rc == 0) {
        target_t tg = {.is_hub = 1, .statsd_port = opt.port, .http_port = opt.http_port};
        daemon_cmd_t cmd;
        daemon_run_t run = {0};
        int started = 0;
        if (!running) {
            char err[512];
            if (daemon_cmd_init(&cmd, argc - i, argv + i, err, sizeof err) < 0) {
                fprintf(stderr, "bench_statsd_ingest: %s\n", err);
                return 2;
            }
            double ready;
            if (daemon_start(&cmd, &run) < 0 ||
                daemon_wait_healthy(&cmd, &run, 10000, &ready) != 0) {
                fprintf(stderr, "bench_statsd_ingest: the daemon did not become healthy\n");
                daemon_kill(&run);
                daemon_log_tail(&cmd, 10);
                daemon_cmd_free(&cmd);
                return 1;
            }
            started = 1;
            double dl = now_ms() + 5000;
            while ((tg.statsd_port = daemon_log_port(&cmd, "statsd listening")) == 0 && now_ms() < dl)
                sleep_us(1000);
            tg.http_port = run.port;
            tg.pid = run.pid;
            if (!tg.statsd_port) {
                fprintf(stderr, "bench_statsd_ingest: no `statsd listening` line in the log "
                                "(run the daemon with --statsd 127.0.0.1:0)\n");
                daemon_kill(&run);
                daemon_cmd_free(&cmd);
                return 1;
            }
            printf("\n== hub: metricastd pid %d, statsd 127.0.0.1:%d, http 127.0.0.1:%d\n",
                   (int)run.pid, tg.statsd_port, tg.http_port);
            FILE *lf = fopen(cmd.log_path, "re");
            char line[512];
            while (lf && fgets(line, sizeof line, lf))
                if (strstr(line, "statsd listening")) printf("   %s", line);
            if (lf) fclose(lf);
        } else {
            printf("\n== hub: running daemon, statsd 127.0.0.1:%d, http 127.0.0.1:%d\n",
                   tg.statsd_port, tg.http_port);
        }
        fflush(stdout);
        if (run_target(&tg, &hsum) < 0) rc = 1;
        else have_hub = 1;
        if (started) {
            long hwm = proc_status_kib(run.pid, "VmHWM");
            if (hwm > 0) printf("   daemon VmHWM %.1f MiB\n", (double)hwm / 1024);
            double stop_ms;
            int wst;
            if (daemon_stop(&run, 10000, &stop_ms, &wst) != 0) {
                char b[32];
                fprintf(stderr, "bench_statsd_ingest: daemon shutdown failed (%s)\n",
                        wst == -1 ? "timeout" : wstatus_str(wst, b, sizeof b));
                daemon_log_tail(&cmd, 10);
                rc = 1;
            }
            daemon_cmd_free(&cmd);
        }
    }

    printf("\n");
    char r1[32], r2[32];
    if (opt.sweep) {
        if (have_sink)
            printf("sink: highest zero-loss rate %s lines/s; unpaced %s lines/s received "
                   "(%.2f%% loss)\n",
                   ssum.best_zero_loss > 0 ? fmt_rate(ssum.best_zero_loss, r1, sizeof r1) : "none",
                   fmt_rate(ssum.max_recv, r2, sizeof r2), ssum.max_loss_pct);
        if (have_hub)
            printf("hub:  highest zero-loss rate %s lines/s; unpaced %s lines/s received "
                   "(%.2f%% loss, %.2f cores)\n",
                   hsum.best_zero_loss > 0 ? fmt_rate(hsum.best_zero_loss, r1, sizeof r1) : "none",
                   fmt_rate(hsum.max_recv, r2, sizeof r2), hsum.max_loss_pct, hsum.max_cpu_cores);
        if (have_sink && have_hub)
            printf("hub/sink: zero-loss rate %.2f, unpaced throughput %.2f\n",
                   ssum.best_zero_loss > 0 ? hsum.best_zero_loss / ssum.best_zero_loss : 0,
                   ssum.max_recv > 0 ? hsum.max_recv / ssum.max_recv : 0);
        printf("statsd_sink_zero_loss_lps=%.0f statsd_hub_zero_loss_lps=%.0f "
               "statsd_sink_max_lps=%.0f statsd_hub_max_lps=%.0f hub_sink_ratio=%.2f\n",
               ssum.best_zero_loss, hsum.best_zero_loss, ssum.max_recv, hsum.max_recv,
               have_sink && have_hub && ssum.max_recv > 0 ? hsum.max_recv / ssum.max_recv : 0);
    } else {
        if (have_sink && have_hub)
            printf("hub/sink: received lines/s %.2f\n",
                   ssum.single_recv > 0 ? hsum.single_recv / ssum.single_recv : 0);
        printf("statsd_sink_recv_lps=%.0f statsd_sink_loss_pct=%.4f statsd_hub_recv_lps=%.0f "
               "statsd_hub_loss_pct=%.4f hub_sink_ratio=%.2f\n",
               ssum.single_recv, ssum.single_loss_pct, hsum.single_recv, hsum.single_loss_pct,
               have_sink && have_hub && ssum.single_recv > 0 ? hsum.single_recv / ssum.single_recv
                                                            : 0);
    }
    return rc;
bad:
    usage(stderr);
    return 2;
}
