/* bench_ws_fanout — WebSocket fan-out of metricastd (latency, delivery, throughput, memory)
 * against a minimal epoll broadcaster (bench_ws_ceiling) at the same N on the same machine.
 *
 *   bench_ws_fanout [--scenario onesec|fast|saturate|idle|all] [--target hub|ceiling|both]
 *                   [--subs N] [--tick S] [--duration S] [--ceiling-tick S] [--short]
 *                   [--ceiling PATH] [--frame-bytes N] [--filter GLOB] [--timeout S]
 *                   -- /path/metricastd [extra daemon flags...]
 *
 * Scenarios (defaults; --subs/--tick/--duration override, --short shrinks them for run_all):
 *   onesec    10,000 subscribers, --tick 1, 10 s: every tick delivered, p99 tick-to-receipt
 *   fast       1,000 subscribers, --tick 0.01 (100 updates/s), 10 s: all delivered, p99
 *   saturate   1,000 subscribers, the fastest tick the daemon accepts (0.01), 10 s:
 *              delivered msgs/s (the ceiling can be driven faster with --ceiling-tick)
 *   idle      10,000 subscribed connections that receive nothing after their snapshot
 *              (--tick 3600): resident memory per subscriber
 *
 * --scenario events (each also by name; --rate, --publishers, --pad, --topic, --cycles):
 *   ev1k       1,000 subscribers of `events`, 1,000 events/s from one WebSocket publisher
 *   ev5k       5,000 subscribers, 100 events/s
 *   evsat      5,000 subscribers, 1,000 events/s (saturation: receive rate, gaps)
 *   srccycle   1,000 sequential /ws?source=bench_N connect + close cycles, both lifecycle
 *              events checked on a `sources` subscriber (median time per cycle)
 * Latency = receipt − payload t (the publisher's send time); seq must grow by one per
 * subscriber except for a skip announced by resync: any other skip is a silent gap.
 * The ceiling runs with --events (it rebroadcasts the publisher's frames).
 *
 * --peer (events scenarios, with --nats URL among the daemon flags and a nats-server
 * running there): a second hub is started with the same flags; subscribers alternate
 * between the two (odd ids on the second), the publishers stay on the first. The report
 * then gives the latency of subscribers on the publisher's hub (local) and on the other
 * (remote: through NATS) apart, and their difference is the cross-hub delivery cost.
 *
 * One run = start the target (metricastd --listen 127.0.0.1:0 --statsd 127.0.0.1:0 --tick S
 * --data TMP, or bench_ws_ceiling with the same flags), open 16 warm-up subscribers and
 * close them, read VmRSS, open N WebSockets from this one process (non-blocking,
 * RLIMIT_NOFILE raised; RFC 6455 handshake, masked client frames; --readers threads, one
 * per core by default, each with its own epoll set owning every readers-th socket) each sending
 * {"type":"subscribe","topics":["metrics"]} and waiting for its first metrics:update (the
 * full snapshot); read VmRSS again. A sender thread then sends `bench_ts:<CLOCK_REALTIME
 * µs>|g` over UDP to the StatsD port every millisecond, so updates carry a changed bench_ts.
 * After a warm-up (max(1 s, 2 ticks)) the measurement window of --duration seconds opens.
 * Every update whose `timestamp` (the hub's push time) falls in the window is counted;
 * per update, receipt time (CLOCK_REALTIME, taken after each recv) minus `timestamp`
 * is the tick-to-receipt latency, and receipt minus the bench_ts value (when present) the
 * ingest-to-receipt latency; the kernel's receive time of each read (SO_TIMESTAMPNS) minus
 * `timestamp` tells delivery apart from the harness's own read delay. After the window, the harness keeps reading for 1 s so that
 * updates pushed inside it can arrive. Expected = subscribers × duration / tick; seq gaps
 * per subscriber count updates the hub produced but this subscriber never got. Hub CPU is
 * /proc/PID/stat utime+stime over the window; RSS from /proc/PID/status.
 *
 * Parsing cost: every subscriber of a filter gets the same bytes for a seq, so each seq is
 * parsed once (cached by seq and length); per message the harness reads only the seq.
 *
 * Exit status: 0 when every run completed (targets missed are reported, not failures),
 * 1 when a run failed (daemon did not start, subscribers could not connect, daemon exit
 * status not 0), 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_SUBS 100000
#define WARMUP_SUBS 16
#define CONNECT_INFLIGHT 256
#define SUBSCRIBE_PHASE_MS 60000.0
#define GRACE_MS 1000.0
#define HIST_MAX 10000000u /* 1 µs buckets up to 10 s */
#define SEQ_CACHE 8192

/* ---- per-connection state ------------------------------------------------------------------ */

enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_SUBSCRIBED, S_CLOSED };

typedef struct fconn {
    int fd;
    uint8_t state;
    uint8_t rd; /* the reader that owns it: id % readers */
    uint32_t id;
    uint8_t *part; /* bytes of an incomplete frame (or of the handshake answer) */
    uint32_t partlen, partcap;
    uint64_t last_seq;
    uint64_t resync_at; /* events: the oldest_seq of a resync not yet followed by an event */
    uint32_t w_ticks, w_msgs, w_gaps;
    bool w_seen;
} fconn_t;

typedef struct seq_info {
    uint64_t seq;
    uint32_t len;
    bool tick, full;
    int64_t ts_us;    /* the message's timestamp (ms precision) in µs, -1 if absent */
    int64_t bench_us; /* the bench_ts value, -1 if absent */
} seq_info_t;

typedef struct stats {
    /* window accounting (by the message's push timestamp) */
    uint64_t w_msgs, w_ticks, w_changes, w_fulls, w_gaps, w_bytes;
    uint64_t lat_n, ing_n;
    /* all time */
    uint64_t msgs, status_msgs, error_msgs, other_msgs, pings, closed_by_server, failed;
    uint64_t parse_misses;
    uint32_t last_tick_len;
    /* events (all time after each subscriber's first event) */
    uint64_t ev_resyncs, ev_resync_skipped, ev_silent, ev_silent_subs, ev_dups;
    uint64_t ev_first_silent_conn, ev_first_silent_from, ev_first_silent_to;
    bool ev_silent_seen;
} stats_t;

/* One reader thread per core (--readers): each owns the connections whose id % readers is
 * its index, with its own epoll set, read buffer, seq cache, counters and histograms, so
 * readers share nothing while they run. The main thread starts them for each phase of a
 * run (connect, warm-up, window, grace), joins them, and merges their counters and
 * histograms (readers_merge) into g_st / g_hist_* for the report. */
typedef struct reader {
    int ep;
    uint8_t *rbuf; /* one big read per recv: up to rcap bytes (256 KiB, grows for big frames) */
    size_t rcap, have;
    uint32_t *hist_tick, *hist_ing, *hist_arr;
    seq_info_t cache[SEQ_CACHE];
    stats_t st;
    uint64_t arr_n;
    int64_t arr_us; /* kernel receive time (SO_TIMESTAMPNS) of the current read, -1 if none */
    uint32_t subscribed, inflight, open_next, open_target, open_inflight;
    char first_error[256];
    pthread_t th;
    double deadline;
    bool (*done)(void);
} reader_t;

#define MAX_READERS 16
static reader_t g_rd[MAX_READERS];
static int g_nrd = 2;
static _Thread_local reader_t *R; /* the calling thread's reader */

static fconn_t *g_conns;
static int g_port;
static int g_port2; /* --peer: the second hub (0: none) */
static bool g_peer;
static uint32_t *g_hist_tick, *g_hist_ing, *g_hist_arr; /* merged from the readers */
static uint64_t g_arr_n;
static stats_t g_st;                         /* merged from the readers */
static int64_t g_win_start_us, g_win_end_us; /* 0: not measuring; set while no reader runs */
static uint32_t g_subscribed;
static char g_subscribe_msg[256];
static size_t g_subscribe_len;
static char g_first_error[256];

static int64_t realtime_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- parsing one metrics:update (once per seq) --------------------------------------------- */

static int64_t parse_iso_us(const char *p, size_t n) {
    /* 2026-11-25T12:34:56.789Z */
    if (n < 24 || p[4] != '-' || p[10] != 'T' || p[19] != '.') return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = atoi(p) - 1900;
    tm.tm_mon = atoi(p + 5) - 1;
    tm.tm_mday = atoi(p + 8);
    tm.tm_hour = atoi(p + 11);
    tm.tm_min = atoi(p + 14);
    tm.tm_sec = atoi(p + 17);
    time_t t = timegm(&tm);
    return (int64_t)t * 1000000 + (int64_t)atoi(p + 20) * 1000;
}

static void parse_update(const char *m, size_t n, seq_info_t *si) {
    si->tick = memmem(m, n < 128 ? n : 128, "\"reason\":\"tick\"", 15) != NULL;
    si->full = memmem(m, n < 160 ? n : 160, "\"full\":true", 11) != NULL;
    si->ts_us = -1;
    si->bench_us = -1;
    /* the top-level timestamp is the last member */
    size_t tail = n < 64 ? n : 64;
    const char *t = memmem(m + n - tail, tail, "\"timestamp\":\"", 13);
    if (t) si->ts_us = parse_iso_us(t + 13, (size_t)(m + n - (t + 13)));
    const char *b = memmem(m, n, "\"name\":\"bench_ts\"", 17);
    if (b) {
        const char *v = memmem(b, (size_t)(m + n - b), "\"value\":", 8);
        if (v) si->bench_us = (int64_t)strtod(v + 8, NULL);
    }
}

static void hist_add(uint32_t *h, int64_t us) {
    if (us < 0) us = 0;
    if (us >= (int64_t)HIST_MAX) us = HIST_MAX - 1;
    h[us]++;
}

/* p in 0..100 over n samples; max when p = 100. In ms. */
static double hist_pct(const uint32_t *h, uint64_t n, double p) {
    if (!n) return NAN;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n);
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (uint32_t i = 0; i < HIST_MAX; i++) {
        acc += h[i];
        if (acc >= rank) return (double)i / 1000.0;
    }
    return (double)(HIST_MAX - 1) / 1000.0;
}

static void on_update(fconn_t *c, const char *m, size_t n, int64_t now) {
    static const char pre[] = "{\"type\":\"metrics:update\",\"seq\":";
    uint64_t seq = 0;
    const char *p = m + sizeof pre - 1, *end = m + n;
    while (p < end && *p >= '0' && *p <= '9') seq = seq * 10 + (uint64_t)(*p++ - '0');
    seq_info_t *si = &R->cache[seq % SEQ_CACHE];
    if (si->seq != seq || si->len != n) {
        si->seq = seq;
        si->len = (uint32_t)n;
        parse_update(m, n, si);
        R->st.parse_misses++;
    }
    R->st.msgs++;
    if (si->tick && !si->full) R->st.last_tick_len = (uint32_t)n;
    if (c->state == S_OPEN) { /* the first update: the full snapshot */
        c->state = S_SUBSCRIBED;
        R->subscribed++;
        R->inflight--;
    }
    if (g_win_start_us && si->ts_us >= g_win_start_us && si->ts_us < g_win_end_us) {
        R->st.w_msgs++;
        R->st.w_bytes += n;
        c->w_msgs++;
        if (si->full) R->st.w_fulls++;
        if (si->tick) {
            R->st.w_ticks++;
            c->w_ticks++;
        } else {
            R->st.w_changes++;
        }
        if (c->w_seen && seq > c->last_seq + 1) {
            c->w_gaps += (uint32_t)(seq - c->last_seq - 1);
            R->st.w_gaps += seq - c->last_seq - 1;
        }
        c->w_seen = true;
        hist_add(R->hist_tick, now - si->ts_us);
        R->st.lat_n++;
        if (R->arr_us > 0) {
            hist_add(R->hist_arr, R->arr_us - si->ts_us);
            R->arr_n++;
        }
        if (si->bench_us > 0) {
            hist_add(R->hist_ing, now - si->bench_us);
            R->st.ing_n++;
        }
    }
    if (seq > c->last_seq) c->last_seq = seq;
}

/* ---- one event (events scenarios) ---------------------------------------------------------------- */

/* {"type":"event","seq":N,"data":{...,"payload":{"t":<µs>,...}}}: latency = receipt − t.
 * seq is hub-wide and grows by one per event, so any skip not announced by a resync is a
 * silent loss. */
static void on_event(fconn_t *c, const char *m, size_t n, int64_t now) {
    static const char pre[] = "{\"type\":\"event\",\"seq\":";
    uint64_t seq = 0;
    const char *p = m + sizeof pre - 1, *end = m + n;
    while (p < end && *p >= '0' && *p <= '9') seq = seq * 10 + (uint64_t)(*p++ - '0');
    seq_info_t *si = &R->cache[seq % SEQ_CACHE];
    if (si->seq != seq || si->len != n) {
        si->seq = seq;
        si->len = (uint32_t)n;
        si->ts_us = -1;
        const char *t = memmem(m, n, "\"payload\":{\"t\":", 15);
        if (t) si->ts_us = strtoll(t + 15, NULL, 10);
        R->st.parse_misses++;
    }
    R->st.msgs++;
    R->st.last_tick_len = (uint32_t)n;
    if (c->state == S_OPEN) { /* the first event: subscribed */
        c->state = S_SUBSCRIBED;
        R->subscribed++;
        R->inflight--;
        c->last_seq = seq;
        c->resync_at = 0;
    } else if (seq <= c->last_seq) {
        R->st.ev_dups++;
    } else if (seq > c->last_seq + 1) {
        uint64_t from = c->last_seq + 1; /* the first seq we should have had */
        if (c->resync_at > from) { /* announced: the events before oldest_seq are gone */
            R->st.ev_resync_skipped += c->resync_at - from;
            from = c->resync_at;
        }
        if (seq > from) {
            if (!c->w_gaps) R->st.ev_silent_subs++;
            c->w_gaps += (uint32_t)(seq - from);
            R->st.ev_silent += seq - from;
            if (!R->st.ev_silent_seen) {
                R->st.ev_silent_seen = true;
                R->st.ev_first_silent_conn = c->id;
                R->st.ev_first_silent_from = from;
                R->st.ev_first_silent_to = seq - 1;
            }
        }
    }
    c->resync_at = 0;
    if (seq > c->last_seq) c->last_seq = seq;
    if (g_win_start_us && si->ts_us >= g_win_start_us && si->ts_us < g_win_end_us) {
        R->st.w_msgs++;
        R->st.w_ticks++;
        R->st.w_bytes += n;
        c->w_msgs++;
        if (g_port2 && (c->id & 1)) { /* --peer: through NATS (hist_ing: unused by events) */
            hist_add(R->hist_ing, now - si->ts_us);
            R->st.ing_n++;
        } else {
            hist_add(R->hist_tick, now - si->ts_us);
            R->st.lat_n++;
        }
        if (R->arr_us > 0) {
            hist_add(R->hist_arr, R->arr_us - si->ts_us);
            R->arr_n++;
        }
    }
}

static void on_resync(fconn_t *c, const char *m, size_t n) {
    const char *o = memmem(m, n, "\"oldest_seq\":", 13);
    R->st.ev_resyncs++;
    if (o) c->resync_at = strtoull(o + 13, NULL, 10);
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_close(fconn_t *c, bool by_server) {
    if (c->fd >= 0) {
        epoll_ctl(R->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->state == S_OPEN || c->state == S_HANDSHAKE || c->state == S_CONNECTING) {
        R->inflight--;
        R->st.failed++;
    }
    if (c->state == S_SUBSCRIBED) R->subscribed--;
    if (by_server) R->st.closed_by_server++;
    c->fd = -1;
    c->state = S_CLOSED;
    free(c->part);
    c->part = NULL;
    c->partlen = c->partcap = 0;
}

static int send_all(int fd, const void *p, size_t n) {
    size_t off = 0;
    for (int tries = 0; off < n && tries < 1000; tries++) {
        ssize_t w = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
        else sleep_us(100);
    }
    return off == n ? 0 : -1;
}

/* A masked client frame (RFC 6455 §5.3). */
static int send_client_frame(fconn_t *c, int opcode, const void *payload, size_t len) {
    uint8_t f[512];
    if (len > sizeof f - 8) return -1;
    size_t o = 0;
    f[o++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        f[o++] = (uint8_t)(0x80 | len);
    } else {
        f[o++] = 0x80 | 126;
        f[o++] = (uint8_t)(len >> 8);
        f[o++] = (uint8_t)len;
    }
    uint32_t r = (uint32_t)random();
    uint8_t mask[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    memcpy(f + o, mask, 4);
    o += 4;
    for (size_t i = 0; i < len; i++) f[o + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return send_all(c->fd, f, o + len);
}

static void start_connect(fconn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = S_CONNECTING;
    c->last_seq = 0;
    c->resync_at = 0;
    c->w_ticks = c->w_msgs = c->w_gaps = 0;
    c->w_seen = false;
    R->inflight++;
    if (c->fd < 0) {
        snprintf(R->first_error, sizeof R->first_error, "socket: %s", strerror(errno));
        conn_close(c, false);
        return;
    }
    int port = g_port2 && (c->id & 1) ? g_port2 : g_port;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        snprintf(R->first_error, sizeof R->first_error, "connect: %s", strerror(errno));
        conn_close(c, false);
        return;
    }
    int one = 1; /* the kernel's receive time of each read, see on_readable */
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(R->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_connected(fconn_t *c) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
        snprintf(R->first_error, sizeof R->first_error, "connect: %s", strerror(soerr));
        conn_close(c, false);
        return;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int k = 0; k < 21; k++) key[k] = b64[random() & 63];
    key[21] = b64[(random() & 3) << 4];
    key[22] = key[23] = '=';
    key[24] = '\0';
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: %s\r\n\r\n",
                     g_port2 && (c->id & 1) ? g_port2 : g_port, key);
    if (send_all(c->fd, req, (size_t)n) < 0) {
        snprintf(R->first_error, sizeof R->first_error, "send handshake: %s", strerror(errno));
        conn_close(c, false);
        return;
    }
    c->state = S_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(R->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Parses frames in buf[0..len); returns the bytes consumed, or -1 when c was closed. */
static long parse_frames(fconn_t *c, uint8_t *buf, size_t len, int64_t now) {
    size_t off = 0;
    if (c->state == S_HANDSHAKE) {
        uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
        if (!e) {
            if (len > 4096) {
                snprintf(R->first_error, sizeof R->first_error, "handshake answer too long");
                conn_close(c, false);
                return -1;
            }
            return 0;
        }
        if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
            snprintf(R->first_error, sizeof R->first_error, "handshake answered: %.40s",
                     (char *)buf);
            conn_close(c, false);
            return -1;
        }
        off = (size_t)(e - buf) + 4;
        c->state = S_OPEN;
        if (send_client_frame(c, 0x1, g_subscribe_msg, g_subscribe_len) < 0) {
            snprintf(R->first_error, sizeof R->first_error, "send subscribe: %s",
                     strerror(errno));
            conn_close(c, false);
            return -1;
        }
    }
    while (len - off >= 2) {
        const uint8_t *p = buf + off;
        size_t avail = len - off, hl = 2;
        uint64_t pl = p[1] & 0x7f;
        if (pl == 126) {
            if (avail < 4) break;
            pl = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (pl == 127) {
            if (avail < 10) break;
            pl = 0;
            for (int i = 0; i < 8; i++) pl = pl << 8 | p[2 + i];
            hl = 10;
        }
        if (p[1] & 0x80) { /* servers must not mask */
            snprintf(R->first_error, sizeof R->first_error, "masked server frame");
            conn_close(c, false);
            return -1;
        }
        if (pl > (64u << 20)) {
            snprintf(R->first_error, sizeof R->first_error, "server frame of %llu bytes",
                     (unsigned long long)pl);
            conn_close(c, false);
            return -1;
        }
        if (avail < hl + pl) {
            /* make sure the shared buffer can hold the whole frame next time */
            while (R->rcap < hl + pl + 65536) R->rcap *= 2;
            break;
        }
        int op = p[0] & 0x0f;
        const char *m = (const char *)p + hl;
        off += hl + (size_t)pl;
        if (op == 0x1) {
            static const char pre[] = "{\"type\":\"metrics:update\",\"seq\":";
            static const char epre[] = "{\"type\":\"event\",\"seq\":";
            if (pl > sizeof pre && memcmp(m, pre, sizeof pre - 1) == 0) {
                on_update(c, m, (size_t)pl, now);
            } else if (pl > sizeof epre && memcmp(m, epre, sizeof epre - 1) == 0) {
                on_event(c, m, (size_t)pl, now);
            } else if (memmem(m, pl < 40 ? pl : 40, "\"type\":\"resync\"", 15)) {
                on_resync(c, m, (size_t)pl);
            } else if (memmem(m, pl < 64 ? pl : 64, "\"type\":\"status\"", 15)) {
                R->st.status_msgs++;
            } else if (memmem(m, pl < 64 ? pl : 64, "\"type\":\"error\"", 14)) {
                if (!R->st.error_msgs)
                    fprintf(stderr, "bench_ws_fanout: server error message: %.*s\n",
                            (int)(pl < 200 ? pl : 200), m);
                R->st.error_msgs++;
            } else {
                R->st.other_msgs++;
            }
        } else if (op == 0x9) {
            R->st.pings++;
            send_client_frame(c, 0xA, m, (size_t)pl);
        } else if (op == 0x8) {
            conn_close(c, true);
            return -1;
        }
    }
    return (long)off;
}

/* Reads everything c has (big reads into the reader's buffer, after the carried-over bytes
 * of an incomplete frame) and handles each complete frame. The receipt time is taken once
 * per read; the kernel's receive time of the read's last segment (SO_TIMESTAMPNS) is kept
 * too, so the report can tell the harness's own read delay from the delivery time. */
static void on_readable(fconn_t *c) {
    for (;;) {
        if (R->rcap < (size_t)c->partlen + 65536) {
            while (R->rcap < (size_t)c->partlen + 65536) R->rcap *= 2;
        }
        if (R->have < R->rcap) {
            free(R->rbuf);
            R->rbuf = malloc(R->rcap);
            if (!R->rbuf) {
                fprintf(stderr, "bench_ws_fanout: out of memory\n");
                exit(1);
            }
            R->have = R->rcap;
        }
        size_t pre = c->partlen;
        if (pre) memcpy(R->rbuf, c->part, pre);
        struct iovec iov = {R->rbuf + pre, R->have - pre};
        union {
            char buf[CMSG_SPACE(sizeof(struct timespec))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(c->fd, &mh, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            conn_close(c, true);
            return;
        }
        int64_t now = realtime_us();
        R->arr_us = -1;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(cm), sizeof ts);
                R->arr_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
            }
        size_t len = pre + (size_t)n;
        long used = parse_frames(c, R->rbuf, len, now);
        if (used < 0) return;
        size_t left = len - (size_t)used;
        if (left > c->partcap) {
            uint32_t nc = c->partcap ? c->partcap : 256;
            while (nc < left) nc *= 2;
            free(c->part);
            c->part = malloc(nc);
            if (!c->part) {
                fprintf(stderr, "bench_ws_fanout: out of memory\n");
                exit(1);
            }
            c->partcap = nc;
        }
        if (left) memcpy(c->part, R->rbuf + used, left);
        c->partlen = (uint32_t)left;
        if (!left && c->partcap > 4096) {
            free(c->part);
            c->part = NULL;
            c->partcap = 0;
        }
        if ((size_t)n < R->have - pre) return;
    }
}

/* Runs the event loop until deadline (monotonic ms) or until done() says so. */
static void run_loop(double deadline, bool (*done)(void)) {
    struct epoll_event evs[1024];
    while (now_ms() < deadline && !(done && done())) {
        int t = (int)(deadline - now_ms());
        int n = epoll_wait(R->ep, evs, 1024, t < 0 ? 0 : t > 10 ? 10 : t);
        for (int i = 0; i < n; i++) {
            fconn_t *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == S_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
            } else {
                on_readable(c);
            }
        }
    }
}

static bool all_subscribed(void) {
    /* keep CONNECT_INFLIGHT handshakes going (shared out over the readers) */
    uint32_t cap = CONNECT_INFLIGHT / (uint32_t)g_nrd;
    while (R->open_next < R->open_target && R->inflight < (cap ? cap : 1)) {
        fconn_t *c = &g_conns[R->open_next];
        c->id = R->open_next;
        c->rd = (uint8_t)(R - g_rd);
        R->open_next += (uint32_t)g_nrd;
        start_connect(c);
    }
    return R->open_next >= R->open_target && R->inflight == 0;
}

static void *reader_main(void *arg) {
    R = arg;
    run_loop(R->deadline, R->done);
    return NULL;
}

/* Runs every reader's loop until deadline (or its done()), in parallel; returns when all
 * have returned. */
static void readers_run(double deadline, bool (*done)(void)) {
    for (int t = 0; t < g_nrd; t++) {
        g_rd[t].deadline = deadline;
        g_rd[t].done = done;
        if (pthread_create(&g_rd[t].th, NULL, reader_main, &g_rd[t]) != 0) {
            fprintf(stderr, "bench_ws_fanout: pthread_create failed\n");
            exit(1);
        }
    }
    for (int t = 0; t < g_nrd; t++) pthread_join(g_rd[t].th, NULL);
    g_subscribed = 0;
    for (int t = 0; t < g_nrd; t++) g_subscribed += g_rd[t].subscribed;
    for (int t = 0; t < g_nrd && !g_first_error[0]; t++)
        if (g_rd[t].first_error[0])
            snprintf(g_first_error, sizeof g_first_error, "%s", g_rd[t].first_error);
}

/* Opens conns [from, to) (reader t opens from+t, from+t+readers, ...) and waits until each
 * got its first update (or failed). */
static double open_subscribers(uint32_t from, uint32_t to) {
    double t0 = now_ms();
    for (int t = 0; t < g_nrd; t++) {
        g_rd[t].open_next = from + (uint32_t)t;
        g_rd[t].open_target = to;
    }
    readers_run(t0 + SUBSCRIBE_PHASE_MS, all_subscribed);
    return now_ms() - t0;
}

/* Closes conns [from, to); no reader may be running. */
static void close_conns(uint32_t from, uint32_t to) {
    for (uint32_t i = from; i < to; i++)
        if (g_conns[i].fd >= 0 && g_conns[i].state != S_CLOSED) {
            R = &g_rd[g_conns[i].rd];
            conn_close(&g_conns[i], false);
        }
    R = NULL;
    g_subscribed = 0;
    for (int t = 0; t < g_nrd; t++) g_subscribed += g_rd[t].subscribed;
}

/* Zeroes every reader's state for a new run (no reader running). */
static void readers_reset(void) {
    for (int t = 0; t < g_nrd; t++) {
        reader_t *r = &g_rd[t];
        memset(&r->st, 0, sizeof r->st);
        memset(r->cache, 0, sizeof r->cache);
        memset(r->hist_tick, 0, HIST_MAX * sizeof *r->hist_tick);
        memset(r->hist_ing, 0, HIST_MAX * sizeof *r->hist_ing);
        memset(r->hist_arr, 0, HIST_MAX * sizeof *r->hist_arr);
        r->arr_n = 0;
        r->subscribed = r->inflight = 0;
        r->first_error[0] = '\0';
    }
    g_subscribed = 0;
}

static void readers_reset_stats(void) {
    for (int t = 0; t < g_nrd; t++) memset(&g_rd[t].st, 0, sizeof g_rd[t].st);
}

/* Sums the readers' counters into g_st; with hists, their histograms into g_hist_*. */
static void readers_merge(bool hists) {
    memset(&g_st, 0, sizeof g_st);
    for (int t = 0; t < g_nrd; t++) {
        const stats_t *a = &g_rd[t].st;
        uint64_t *d = (uint64_t *)&g_st;
        /* every field up to last_tick_len is a uint64_t counter */
        const uint64_t *sp = (const uint64_t *)a;
        for (size_t k = 0; k < offsetof(stats_t, last_tick_len) / sizeof(uint64_t); k++)
            d[k] += sp[k];
        if (a->last_tick_len > g_st.last_tick_len) g_st.last_tick_len = a->last_tick_len;
        g_st.ev_resyncs += a->ev_resyncs;
        g_st.ev_resync_skipped += a->ev_resync_skipped;
        g_st.ev_silent += a->ev_silent;
        g_st.ev_silent_subs += a->ev_silent_subs;
        g_st.ev_dups += a->ev_dups;
        if (a->ev_silent_seen && !g_st.ev_silent_seen) {
            g_st.ev_silent_seen = true;
            g_st.ev_first_silent_conn = a->ev_first_silent_conn;
            g_st.ev_first_silent_from = a->ev_first_silent_from;
            g_st.ev_first_silent_to = a->ev_first_silent_to;
        }
    }
    if (!hists) return;
    memset(g_hist_tick, 0, HIST_MAX * sizeof *g_hist_tick);
    memset(g_hist_ing, 0, HIST_MAX * sizeof *g_hist_ing);
    memset(g_hist_arr, 0, HIST_MAX * sizeof *g_hist_arr);
    g_arr_n = 0;
    for (int t = 0; t < g_nrd; t++) {
        const reader_t *r = &g_rd[t];
        for (uint32_t i = 0; i < HIST_MAX; i++) {
            g_hist_tick[i] += r->hist_tick[i];
            g_hist_ing[i] += r->hist_ing[i];
            g_hist_arr[i] += r->hist_arr[i];
        }
        g_arr_n += r->arr_n;
    }
}

/* ---- the sender ----------------------------------------------------------------------------- */

static atomic_int g_sender_stop;
static atomic_ullong g_sender_sent;
static int g_statsd_port;

static void *sender_main(void *arg) {
    (void)arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_statsd_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return NULL;
    while (!atomic_load(&g_sender_stop)) {
        char line[64];
        int n = snprintf(line, sizeof line, "bench_ts:%lld|g", (long long)realtime_us());
        if (send(fd, line, (size_t)n, 0) == n) atomic_fetch_add(&g_sender_sent, 1);
        sleep_us(1000);
    }
    close(fd);
    return NULL;
}

/* ---- /proc ------------------------------------------------------------------------------------ */

static double proc_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return NAN;
    /* after ") ": state(3) ... utime(14) stime(15) */
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- events: the WebSocket publisher -------------------------------------------------------- */

/* One or two publisher connections driven by one thread on an absolute schedule: event k
 * is due at start + k / rate; everything due is encoded (t = the send time) and written in
 * one send() per connection, so a late wake-up sends several events per write. Acks are
 * matched in order against the send times (ack round-trip). */
#define PUB_MAX 2
#define PUB_FIFO (1u << 20)
#define PUB_BATCH_MAX 5000

typedef struct pubconn {
    int fd;
    uint8_t *out;
    size_t olen, ooff, ocap;
    uint8_t in[1 << 16];
    size_t inlen;
    int64_t *fifo; /* send times of events not yet acked */
    uint32_t fh, ft;
} pubconn_t;

static pubconn_t g_pub[PUB_MAX];
static int g_npub = 1;
static long g_ev_pad = 0;
static const char *g_ev_topic = "events";
static pthread_t g_pub_th;
static atomic_int g_pub_stop, g_pub_rate;
static atomic_llong g_pwin_start, g_pwin_end;
static atomic_ullong g_pub_sent, g_pub_in_window, g_pub_acks, g_pub_errors, g_pub_late_batches;
static atomic_ullong g_pub_max_batch;
static uint32_t *g_hist_ack;
static uint64_t g_ack_n;

/* Blocking connect + upgrade of `path`; the socket, non-blocking, or -1. */
static int ws_connect_blocking(const char *path, double timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)fmod(timeout_ms, 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) goto fail;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                     path, g_port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) goto fail;
    char buf[1024];
    size_t got = 0;
    /* read byte-wise up to the end of the headers: nothing after them is consumed */
    while (got < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + got, 1, 0);
        if (r <= 0) goto fail;
        got++;
        if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0) break;
    }
    if (got < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

static size_t client_frame(uint8_t *f, int opcode, const void *payload, size_t len,
                           uint32_t r) {
    size_t o = 0;
    f[o++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        f[o++] = (uint8_t)(0x80 | len);
    } else {
        f[o++] = 0x80 | 126;
        f[o++] = (uint8_t)(len >> 8);
        f[o++] = (uint8_t)len;
    }
    uint8_t mask[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    memcpy(f + o, mask, 4);
    o += 4;
    for (size_t i = 0; i < len; i++) f[o + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return o + len;
}

static void pub_put(pubconn_t *pc, int64_t t, uint32_t rnd) {
    static char pad[1024];
    if (!pad[0]) memset(pad, 'x', sizeof pad - 1);
    char msg[1200];
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"publish\",\"data\":{\"type\":\"bench.tick\",\"payload\":"
                     "{\"t\":%lld,\"pad\":\"%.*s\"}}}",
                     (long long)t, (int)g_ev_pad, pad);
    if (pc->olen + (size_t)n + 16 > pc->ocap) {
        if (pc->ooff) {
            memmove(pc->out, pc->out + pc->ooff, pc->olen - pc->ooff);
            pc->olen -= pc->ooff;
            pc->ooff = 0;
        }
        while (pc->olen + (size_t)n + 16 > pc->ocap) {
            pc->ocap = pc->ocap ? pc->ocap * 2 : 1 << 16;
            pc->out = realloc(pc->out, pc->ocap);
            if (!pc->out) {
                fprintf(stderr, "bench_ws_fanout: out of memory\n");
                exit(1);
            }
        }
    }
    pc->olen += client_frame(pc->out + pc->olen, 0x1, msg, (size_t)n, rnd);
    pc->fifo[pc->ft++ % PUB_FIFO] = t;
}

static void pub_flush(pubconn_t *pc) {
    while (pc->ooff < pc->olen) {
        ssize_t w = send(pc->fd, pc->out + pc->ooff, pc->olen - pc->ooff, MSG_NOSIGNAL);
        if (w > 0) {
            pc->ooff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        return; /* EAGAIN (or an error the read side reports) */
    }
    pc->ooff = pc->olen = 0;
}

static void pub_read(pubconn_t *pc) {
    for (;;) {
        ssize_t r = recv(pc->fd, pc->in + pc->inlen, sizeof pc->in - pc->inlen, MSG_DONTWAIT);
        if (r <= 0) return;
        int64_t now = realtime_us();
        pc->inlen += (size_t)r;
        size_t off = 0;
        while (pc->inlen - off >= 2) {
            const uint8_t *p = pc->in + off;
            size_t avail = pc->inlen - off, hl = 2;
            uint64_t pl = p[1] & 0x7f;
            if (pl == 126) {
                if (avail < 4) break;
                pl = (uint64_t)p[2] << 8 | p[3];
                hl = 4;
            } else if (pl == 127) {
                if (avail < 10) break;
                pl = 0;
                for (int i = 0; i < 8; i++) pl = pl << 8 | p[2 + i];
                hl = 10;
            }
            if (hl + pl > sizeof pc->in) { /* not expected on this connection */
                pc->inlen = 0;
                return;
            }
            if (avail < hl + pl) break;
            const char *m = (const char *)p + hl;
            off += hl + (size_t)pl;
            if ((p[0] & 0x0f) != 0x1) continue;
            if (pl > 13 && memcmp(m, "{\"type\":\"ack\"", 13) == 0) {
                atomic_fetch_add(&g_pub_acks, 1);
                if (pc->fh != pc->ft) {
                    int64_t t = pc->fifo[pc->fh++ % PUB_FIFO];
                    if (t >= atomic_load(&g_pwin_start) && t < atomic_load(&g_pwin_end)) {
                        hist_add(g_hist_ack, now - t);
                        g_ack_n++;
                    }
                }
            } else if (memmem(m, pl < 40 ? pl : 40, "\"type\":\"error\"", 14)) {
                if (!atomic_fetch_add(&g_pub_errors, 1))
                    fprintf(stderr, "bench_ws_fanout: publisher got: %.*s\n",
                            (int)(pl < 200 ? pl : 200), m);
                if (pc->fh != pc->ft) pc->fh++; /* a refused publish gets no ack */
            }
        }
        memmove(pc->in, pc->in + off, pc->inlen - off);
        pc->inlen -= off;
    }
}

static void *pub_main(void *arg) {
    (void)arg;
    uint32_t rng = (uint32_t)getpid() * 2654435761u | 1;
    int rate = 0;
    int64_t t0 = 0;
    uint64_t k = 0;
    while (!atomic_load(&g_pub_stop)) {
        int r = atomic_load(&g_pub_rate);
        int64_t now = realtime_us();
        if (r != rate) { /* a new rate: a new schedule from now */
            rate = r;
            t0 = now;
            k = 0;
        }
        uint64_t due = (uint64_t)((double)(now - t0) * rate / 1e6) + 1;
        uint64_t batch = due > k ? due - k : 0;
        if (batch > PUB_BATCH_MAX) { /* hopelessly behind: the rest stays owed */
            batch = PUB_BATCH_MAX;
        }
        if (batch > 1) atomic_fetch_add(&g_pub_late_batches, 1);
        if (batch > atomic_load(&g_pub_max_batch)) atomic_store(&g_pub_max_batch, batch);
        int64_t ws = atomic_load(&g_pwin_start), we = atomic_load(&g_pwin_end);
        for (uint64_t i = 0; i < batch; i++, k++) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            pub_put(&g_pub[k % (uint64_t)g_npub], now, rng);
            if (ws && now >= ws && now < we) atomic_fetch_add(&g_pub_in_window, 1);
        }
        atomic_fetch_add(&g_pub_sent, batch);
        struct pollfd pf[PUB_MAX];
        for (int i = 0; i < g_npub; i++) {
            pub_flush(&g_pub[i]);
            pf[i].fd = g_pub[i].fd;
            pf[i].events = POLLIN | (g_pub[i].ooff < g_pub[i].olen ? POLLOUT : 0);
        }
        int64_t next = t0 + (int64_t)((double)k * 1e6 / rate);
        int64_t wait = next - realtime_us();
        if (wait < 0) wait = 0;
        if (wait > 10000) wait = 10000;
        struct timespec ts = {0, (long)wait * 1000};
        if (ppoll(pf, (nfds_t)g_npub, &ts, NULL) > 0)
            for (int i = 0; i < g_npub; i++)
                if (pf[i].revents & POLLIN) pub_read(&g_pub[i]);
    }
    return NULL;
}

static int pub_start(int npub, int warm_rate) {
    g_npub = npub;
    for (int i = 0; i < npub; i++) {
        pubconn_t *pc = &g_pub[i];
        free(pc->out);
        free(pc->fifo);
        memset(pc, 0, sizeof *pc);
        pc->fifo = malloc(PUB_FIFO * sizeof *pc->fifo);
        pc->fd = ws_connect_blocking("/ws", 5000);
        if (pc->fd < 0 || !pc->fifo) {
            snprintf(g_first_error, sizeof g_first_error, "publisher connect failed");
            return -1;
        }
        fcntl(pc->fd, F_SETFL, fcntl(pc->fd, F_GETFL) | O_NONBLOCK);
    }
    atomic_store(&g_pub_stop, 0);
    atomic_store(&g_pub_rate, warm_rate);
    atomic_store(&g_pwin_start, 0);
    atomic_store(&g_pwin_end, 0);
    atomic_store(&g_pub_sent, 0);
    atomic_store(&g_pub_in_window, 0);
    atomic_store(&g_pub_acks, 0);
    atomic_store(&g_pub_errors, 0);
    atomic_store(&g_pub_late_batches, 0);
    atomic_store(&g_pub_max_batch, 0);
    memset(g_hist_ack, 0, HIST_MAX * sizeof *g_hist_ack);
    g_ack_n = 0;
    return pthread_create(&g_pub_th, NULL, pub_main, NULL) == 0 ? 0 : -1;
}

static void pub_stop(void) {
    atomic_store(&g_pub_stop, 1);
    pthread_join(g_pub_th, NULL);
    for (int i = 0; i < g_npub; i++) {
        if (g_pub[i].fd >= 0) close(g_pub[i].fd);
        g_pub[i].fd = -1;
    }
}

/* ---- source connect + close cycles ------------------------------------------------------------ */

/* Waits for fd readable until deadline (monotonic ms): 1 readable, 0 timeout. */
static int wait_in(int fd, double deadline) {
    double left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, (int)ceil(left)) > 0;
}

typedef struct cyc_res {
    long n, ok, events_missing;
    double p50, p99, max, ev_p50, ev_p99, cpu_us_per_cycle;
} cyc_res_t;

/* N sequential: connect /ws?source=bench_I, upgrade, close frame, server close + EOF.
 * A `sources` subscriber must see telemetry.connection_established and _closed for each. */
static int source_cycles(pid_t pid, long n, cyc_res_t *cr) {
    memset(cr, 0, sizeof *cr);
    int sub = ws_connect_blocking("/ws", 5000);
    if (sub < 0) return -1;
    static const char sm[] = "{\"type\":\"subscribe\",\"topics\":[\"sources\"]}";
    uint8_t f[256];
    size_t fl = client_frame(f, 0x1, sm, sizeof sm - 1, 0x5a5a1234);
    if (send(sub, f, fl, MSG_NOSIGNAL) != (ssize_t)fl) return close(sub), -1;
    sleep_us(200000);
    const long warm = 20;
    double *cyc = calloc((size_t)n, sizeof *cyc), *evt = calloc((size_t)n, sizeof *evt);
    static char sbuf[1 << 20];
    size_t slen = 0;
    double cpu0 = 0;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm) cpu0 = proc_cpu_s(pid);
        char path[64];
        snprintf(path, sizeof path, "/ws?source=bench_%ld", i);
        double t0 = now_ms();
        int fd = ws_connect_blocking(path, 2000);
        if (fd < 0) continue;
        uint8_t cf[16];
        uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
        size_t cl = client_frame(cf, 0x8, code, 2, (uint32_t)i * 2654435761u);
        send(fd, cf, cl, MSG_NOSIGNAL);
        double dl = t0 + 2000;
        char tmp[4096];
        bool eof = false;
        while (wait_in(fd, dl)) {
            ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                eof = true;
                break;
            }
        }
        double t1 = now_ms();
        close(fd);
        /* both lifecycle events for bench_i on the subscriber */
        char want[64];
        int wl = snprintf(want, sizeof want, "\"robot_id\":\"bench_%ld\"", i);
        bool est = false, clo = false;
        double t2 = NAN;
        while (!(est && clo) && wait_in(sub, t0 + 3000)) {
            ssize_t r = recv(sub, sbuf + slen, sizeof sbuf - 1 - slen, MSG_DONTWAIT);
            if (r <= 0) break;
            slen += (size_t)r;
            size_t off = 0;
            while (slen - off >= 2) {
                const uint8_t *p = (const uint8_t *)sbuf + off;
                size_t hl = 2, pl = p[1] & 0x7f;
                if (pl == 126) {
                    if (slen - off < 4) break;
                    pl = (size_t)p[2] << 8 | p[3];
                    hl = 4;
                } else if (pl == 127) {
                    break; /* not expected */
                }
                if (slen - off < hl + pl) break;
                const char *m = sbuf + off + hl;
                off += hl + pl;
                if (memmem(m, pl, want, (size_t)wl)) {
                    if (memmem(m, pl, "connection_established", 22)) est = true;
                    if (memmem(m, pl, "connection_closed", 17)) {
                        clo = true;
                        t2 = now_ms();
                    }
                }
            }
            memmove(sbuf, sbuf + off, slen - off);
            slen -= off;
        }
        if (i < warm) continue;
        long j = i - warm;
        cr->n++;
        if (eof) cyc[cr->ok] = t1 - t0, evt[cr->ok] = clo ? t2 - t0 : NAN, cr->ok++;
        if (!est || !clo) cr->events_missing++;
        (void)j;
    }
    double cpu1 = proc_cpu_s(pid);
    close(sub);
    if (cr->ok) {
        sort_doubles(cyc, (size_t)cr->ok);
        cr->p50 = median_sorted(cyc, (size_t)cr->ok);
        cr->p99 = pct_sorted(cyc, (size_t)cr->ok, 99);
        cr->max = cyc[cr->ok - 1];
        size_t ne = 0;
        for (long k = 0; k < cr->ok; k++)
            if (!isnan(evt[k])) evt[ne++] = evt[k];
        if (ne) {
            sort_doubles(evt, ne);
            cr->ev_p50 = median_sorted(evt, ne);
            cr->ev_p99 = pct_sorted(evt, ne, 99);
        }
        cr->cpu_us_per_cycle = (cpu1 - cpu0) / (double)cr->n * 1e6;
    }
    free(cyc);
    free(evt);
    return 0;
}

/* ---- one run ---------------------------------------------------------------------------------- */

typedef struct scenario {
    const char *name;
    long subs;
    double tick, duration;
    bool idle;
    int kind; /* K_METRICS, K_EVENTS (rate events/s from npub publishers), K_SOURCES */
    int rate, npub;
} scenario_t;

enum { K_METRICS, K_EVENTS, K_SOURCES };

typedef struct result {
    bool ok, ran;
    long subs, subscribed;
    double tick, duration;
    double msgs_per_s, delivered_pct, produced_pct;
    uint64_t msgs, ticks, expected, gaps, closed;
    double p50, p99, max, ing_p50, ing_p99, ing_max;
    double arr_p50, arr_p99; /* send time -> the kernel's receive time at the client socket */
    uint64_t ing_n;
    double cpu_pct, harness_cpu_pct;
    long rss0, rss1, rss_end;
    double kib_per_sub;
    double open_ms;
    uint32_t msg_bytes;
    double dropped;
    /* events */
    int rate;
    uint64_t ev_published, ev_sent_total, ev_acks, ev_errors, resyncs, resync_skipped;
    uint64_t silent, silent_subs, dups, late_batches, max_batch, ack_n;
    uint64_t first_silent_conn, first_silent_from, first_silent_to;
    double ack_p50, ack_p99, ack_max, cpu_us_per_event, cpu_s;
    double rx_per_s; /* every event received during the window, whatever its t */
    cyc_res_t cyc;
    /* --peer: the subscribers on the second hub (through NATS), and its CPU */
    bool peer;
    uint64_t rem_n;
    double rem_p50, rem_p99, rem_max, cpu2_pct;
} result_t;

static const char *g_daemon, *g_ceiling;
static char **g_extra;
static int g_nextra;
static const char *g_filter;
static long g_frame_bytes = 600;
static const char *g_ceiling_threads = "0";

static int run_one(const scenario_t *sc, bool ceiling, double tick, result_t *r) {
    memset(r, 0, sizeof *r);
    memset(&g_st, 0, sizeof g_st);
    readers_reset();
    g_win_start_us = g_win_end_us = 0;
    g_first_error[0] = '\0';
    r->subs = sc->subs;
    r->tick = tick;
    r->duration = sc->idle ? 0 : sc->duration;

    char tick_s[32], fb[32];
    snprintf(tick_s, sizeof tick_s, "%g", tick);
    snprintf(fb, sizeof fb, "%ld", g_frame_bytes);
    char *argv[64];
    int ac = 0;
    argv[ac++] = (char *)(ceiling ? g_ceiling : g_daemon);
    argv[ac++] = "--listen";
    argv[ac++] = "127.0.0.1:0";
    argv[ac++] = "--statsd";
    argv[ac++] = ceiling ? "off" : "127.0.0.1:0";
    argv[ac++] = "--tick";
    argv[ac++] = tick_s;
    if (ceiling) {
        argv[ac++] = "--frame-bytes";
        argv[ac++] = fb;
        argv[ac++] = "--threads";
        argv[ac++] = (char *)g_ceiling_threads;
        if (sc->kind == K_EVENTS) argv[ac++] = "--events";
    } else {
        for (int i = 0; i < g_nextra && ac < 60; i++) argv[ac++] = g_extra[i];
    }
    argv[ac] = NULL;

    daemon_cmd_t cmd;
    daemon_run_t run = {.pidfd = -1};
    char err[512];
    if (daemon_cmd_init(&cmd, ac, argv, err, sizeof err) < 0) {
        fprintf(stderr, "bench_ws_fanout: %s\n", err);
        return -1;
    }
    double ready;
    if (daemon_start(&cmd, &run) < 0) {
        daemon_cmd_free(&cmd);
        return -1;
    }
    if (daemon_wait_healthy(&cmd, &run, 10000, &ready) != 0) {
        fprintf(stderr, "bench_ws_fanout: %s not healthy within 10 s\n", argv[0]);
        daemon_kill(&run);
        daemon_log_tail(&cmd, 10);
        daemon_cmd_free(&cmd);
        return -1;
    }
    pid_t pid = run.pid;
    g_port = run.port;
    g_port2 = 0;
    g_statsd_port = 0;
    /* --peer: the second hub, same flags (its own data directory and port) */
    daemon_cmd_t cmd2;
    daemon_run_t run2 = {.pidfd = -1};
    bool peer_on = false;
    if (g_peer && !ceiling && sc->kind == K_EVENTS) {
        if (daemon_cmd_init(&cmd2, ac, argv, err, sizeof err) < 0 || daemon_start(&cmd2, &run2) < 0 ||
            daemon_wait_healthy(&cmd2, &run2, 10000, &ready) != 0) {
            fprintf(stderr, "bench_ws_fanout: the peer hub did not start\n");
            daemon_kill(&run2);
            daemon_kill(&run);
            daemon_cmd_free(&cmd);
            return -1;
        }
        peer_on = true;
        g_port2 = run2.port;
        r->peer = true;
        /* linked: the second hub's health names the nats check once it is connected */
        for (double dl = now_ms() + 10000; now_ms() < dl; sleep_us(50000)) {
            int st = 0;
            char *b = NULL;
            size_t bl = 0;
            bool linked = false;
            if (http_get(g_port2, "/metrics", 2000, &st, &b, &bl) == 0) {
                double v = 0;
                linked = st == 200 && prom_find(b, "metricast_nats_peers", &v) == 0 && v >= 1;
                free(b);
            }
            if (linked) break;
        }
    }
    if (!ceiling) {
        for (double dl = now_ms() + 2000; !g_statsd_port && now_ms() < dl; sleep_us(1000))
            g_statsd_port = daemon_log_port(&cmd, "statsd listening");
    }

    int rc = 0;
    pthread_t sender;
    bool sender_on = false, pub_on = false;
    r->rate = sc->rate;
    if (sc->kind == K_SOURCES) {
        if (source_cycles(pid, sc->subs, &r->cyc) < 0) {
            fprintf(stderr, "bench_ws_fanout: source cycles: subscriber failed\n");
            rc = -1;
        }
        r->ran = rc == 0;
        goto stop;
    }
    if (sc->kind == K_EVENTS) {
        g_subscribe_len = (size_t)snprintf(g_subscribe_msg, sizeof g_subscribe_msg,
                                           "{\"type\":\"subscribe\",\"topics\":[\"%s\"]}",
                                           g_ev_topic);
        /* a slow warm rate while subscribers connect: each is subscribed at its first event */
        if (pub_start(sc->npub, 50) < 0) {
            fprintf(stderr, "bench_ws_fanout: %s\n", g_first_error);
            rc = -1;
            goto stop;
        }
        pub_on = true;
    }
    /* warm-up subscribers: first-use allocations are not charged to subscribers */
    uint32_t w0 = (uint32_t)sc->subs; /* warm-up conns live after the N real ones */
    open_subscribers(w0, w0 + WARMUP_SUBS);
    close_conns(w0, w0 + WARMUP_SUBS);
    readers_run(now_ms() + 500, NULL);
    r->rss0 = proc_status_kib(pid, "VmRSS");

    r->open_ms = open_subscribers(0, (uint32_t)sc->subs);
    r->subscribed = g_subscribed;
    if (g_subscribed < (uint32_t)sc->subs) {
        fprintf(stderr, "bench_ws_fanout: only %u of %ld subscribers got their snapshot (%s)\n",
                g_subscribed, sc->subs, g_first_error[0] ? g_first_error : "timeout");
        rc = -1;
        goto stop;
    }
    readers_run(now_ms() + 500, NULL);
    r->rss1 = proc_status_kib(pid, "VmRSS");
    r->kib_per_sub = (double)(r->rss1 - r->rss0) / (double)sc->subs;

    if (sc->kind == K_EVENTS) {
        atomic_store(&g_pub_rate, sc->rate);
        readers_run(now_ms() + 1000, NULL); /* warm-up at the full rate */
        double cpu0 = proc_cpu_s(pid), self0 = self_cpu_s(), m0 = now_ms();
        readers_reset_stats(); /* gaps and resyncs: from here on */
        g_win_start_us = realtime_us();
        g_win_end_us = g_win_start_us + (int64_t)(sc->duration * 1e6);
        atomic_store(&g_pwin_end, g_win_end_us);
        atomic_store(&g_pwin_start, g_win_start_us);
        double cpu2_0 = peer_on ? proc_cpu_s(run2.pid) : 0;
        readers_run(m0 + sc->duration * 1000, NULL);
        double cpu1 = proc_cpu_s(pid), self1 = self_cpu_s(), m1 = now_ms();
        if (peer_on) r->cpu2_pct = (proc_cpu_s(run2.pid) - cpu2_0) / ((m1 - m0) / 1000) * 100;
        readers_merge(false);
        r->rx_per_s = (double)g_st.msgs / ((m1 - m0) / 1000);
        r->cpu_s = cpu1 - cpu0;
        r->cpu_pct = (cpu1 - cpu0) / ((m1 - m0) / 1000) * 100;
        r->harness_cpu_pct = (self1 - self0) / ((m1 - m0) / 1000) * 100;
        readers_run(now_ms() + GRACE_MS, NULL); /* events sent in the window, still in flight */
        pub_stop();
        pub_on = false;
        readers_run(now_ms() + 200, NULL);
        readers_merge(true);
        r->rss_end = proc_status_kib(pid, "VmRSS");
        r->ev_published = atomic_load(&g_pub_in_window);
        r->ev_sent_total = atomic_load(&g_pub_sent);
        r->ev_acks = atomic_load(&g_pub_acks);
        r->ev_errors = atomic_load(&g_pub_errors);
        r->late_batches = atomic_load(&g_pub_late_batches);
        r->max_batch = atomic_load(&g_pub_max_batch);
        r->ack_n = g_ack_n;
        r->ack_p50 = hist_pct(g_hist_ack, g_ack_n, 50);
        r->ack_p99 = hist_pct(g_hist_ack, g_ack_n, 99);
        r->ack_max = hist_pct(g_hist_ack, g_ack_n, 100);
        r->cpu_us_per_event = r->ev_published ? r->cpu_s / (double)r->ev_published * 1e6 : NAN;
        r->msgs = g_st.w_msgs;
        r->ticks = g_st.w_msgs;
        r->expected = (uint64_t)sc->subs * r->ev_published;
        r->msgs_per_s = (double)g_st.w_msgs / sc->duration;
        r->delivered_pct = r->expected ? 100.0 * (double)r->msgs / (double)r->expected : 0;
        r->p50 = hist_pct(g_hist_tick, g_st.lat_n, 50);
        r->p99 = hist_pct(g_hist_tick, g_st.lat_n, 99);
        r->max = hist_pct(g_hist_tick, g_st.lat_n, 100);
        r->arr_p50 = hist_pct(g_hist_arr, g_arr_n, 50);
        r->arr_p99 = hist_pct(g_hist_arr, g_arr_n, 99);
        if (peer_on) {
            r->rem_n = g_st.ing_n;
            r->rem_p50 = hist_pct(g_hist_ing, g_st.ing_n, 50);
            r->rem_p99 = hist_pct(g_hist_ing, g_st.ing_n, 99);
            r->rem_max = hist_pct(g_hist_ing, g_st.ing_n, 100);
        }
        r->msg_bytes = g_st.last_tick_len;
        r->resyncs = g_st.ev_resyncs;
        r->resync_skipped = g_st.ev_resync_skipped;
        r->silent = g_st.ev_silent;
        r->silent_subs = g_st.ev_silent_subs;
        r->dups = g_st.ev_dups;
        r->first_silent_conn = g_st.ev_first_silent_conn;
        r->first_silent_from = g_st.ev_first_silent_from;
        r->first_silent_to = g_st.ev_first_silent_to;
        r->dropped = NAN;
        if (!ceiling) {
            int status = 0;
            char *body = NULL;
            size_t bl = 0;
            if (http_get(g_port, "/metrics", 5000, &status, &body, &bl) == 0) {
                if (status != 200 || prom_find(body, "metricast_ws_dropped_total", &r->dropped) < 0)
                    r->dropped = NAN;
                free(body);
            }
        }
    } else if (!sc->idle) {
        if (g_statsd_port > 0) {
            atomic_store(&g_sender_stop, 0);
            sender_on = pthread_create(&sender, NULL, sender_main, NULL) == 0;
        }
        double warm = 2 * tick * 1000;
        if (warm < 1000) warm = 1000;
        readers_run(now_ms() + warm, NULL);
        double cpu0 = proc_cpu_s(pid), self0 = self_cpu_s(), m0 = now_ms();
        g_win_start_us = realtime_us();
        g_win_end_us = g_win_start_us + (int64_t)(sc->duration * 1e6);
        readers_run(m0 + sc->duration * 1000, NULL);
        double cpu1 = proc_cpu_s(pid), self1 = self_cpu_s(), m1 = now_ms();
        r->cpu_pct = (cpu1 - cpu0) / ((m1 - m0) / 1000) * 100;
        r->harness_cpu_pct = (self1 - self0) / ((m1 - m0) / 1000) * 100;
        readers_run(now_ms() + GRACE_MS, NULL); /* updates pushed in the window, still in flight */
        readers_merge(true);
        r->rss_end = proc_status_kib(pid, "VmRSS");
        if (sender_on) {
            atomic_store(&g_sender_stop, 1);
            pthread_join(sender, NULL);
        }
        r->msgs = g_st.w_msgs;
        r->ticks = g_st.w_ticks;
        r->gaps = g_st.w_gaps;
        r->expected = (uint64_t)llround((double)sc->subs * sc->duration / tick);
        r->msgs_per_s = (double)g_st.w_msgs / sc->duration;
        r->delivered_pct = r->expected ? 100.0 * (double)r->ticks / (double)r->expected : 0;
        r->produced_pct = 100.0 * (double)r->msgs / (double)(r->msgs + r->gaps ? r->msgs + r->gaps : 1);
        r->p50 = hist_pct(g_hist_tick, g_st.lat_n, 50);
        r->p99 = hist_pct(g_hist_tick, g_st.lat_n, 99);
        r->max = hist_pct(g_hist_tick, g_st.lat_n, 100);
        r->arr_p50 = hist_pct(g_hist_arr, g_arr_n, 50);
        r->arr_p99 = hist_pct(g_hist_arr, g_arr_n, 99);
        r->ing_n = g_st.ing_n;
        r->ing_p50 = hist_pct(g_hist_ing, g_st.ing_n, 50);
        r->ing_p99 = hist_pct(g_hist_ing, g_st.ing_n, 99);
        r->ing_max = hist_pct(g_hist_ing, g_st.ing_n, 100);
        r->msg_bytes = g_st.last_tick_len;
        r->dropped = NAN;
        if (!ceiling) {
            int status = 0;
            char *body = NULL;
            size_t bl = 0;
            if (http_get(g_port, "/metrics", 5000, &status, &body, &bl) == 0) {
                if (status != 200 || prom_find(body, "metricast_ws_dropped_total", &r->dropped) < 0)
                    r->dropped = NAN;
                free(body);
            }
        }
    }
    r->closed = g_st.closed_by_server;
    r->ran = true;
stop:
    if (pub_on) pub_stop();
    if (sc->kind != K_SOURCES) close_conns(0, (uint32_t)sc->subs + WARMUP_SUBS);
    if (peer_on) {
        double stop_ms = 0;
        int wst = 0;
        if (daemon_stop(&run2, 10000, &stop_ms, &wst) != 0) {
            fprintf(stderr, "bench_ws_fanout: the peer hub's shutdown failed\n");
            daemon_log_tail(&cmd2, 10);
            rc = -1;
        }
        daemon_cmd_free(&cmd2);
        g_port2 = 0;
    }
    {
        double stop_ms = 0;
        int wst = 0;
        if (daemon_stop(&run, 10000, &stop_ms, &wst) != 0) {
            char b[32];
            fprintf(stderr, "bench_ws_fanout: %s shutdown failed (%s)\n", argv[0],
                    wst == -1 ? "timeout" : wstatus_str(wst, b, sizeof b));
            daemon_log_tail(&cmd, 10);
            rc = -1;
        }
    }
    daemon_cmd_free(&cmd);
    r->ok = rc == 0;
    return rc;
}

static void print_events(const scenario_t *sc, const char *target, const result_t *r) {
    if (sc->kind == K_SOURCES) {
        const cyc_res_t *c = &r->cyc;
        printf("\n== %s / %s: %ld sequential /ws?source=bench_N connect + close cycles\n",
               sc->name, target, sc->subs);
        if (!r->ran) return;
        printf("  %-34s %ld of %ld completed (server close + EOF)\n", "cycles", c->ok, c->n);
        printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms\n", "connect..EOF per cycle", c->p50,
               c->p99, c->max);
        printf("  %-34s p50 %.3f  p99 %.3f ms\n", "connect..closed event seen", c->ev_p50,
               c->ev_p99);
        printf("  %-34s %ld\n", "cycles missing a lifecycle event", c->events_missing);
        printf("  %-34s %.1f µs per cycle\n", "hub CPU", c->cpu_us_per_cycle);
        return;
    }
    printf("\n== %s / %s: %ld subscribers, %d events/s from %d publisher(s)\n", sc->name, target,
           r->subs, sc->rate, sc->npub);
    printf("  %-34s %ld/%ld in %.0f ms\n", "subscribed (got an event)", r->subscribed, r->subs,
           r->open_ms);
    if (!r->ran) return;
    printf("  %-34s %.1f s: %llu events published (%llu sent in all)\n", "measurement window",
           r->duration, (unsigned long long)r->ev_published, (unsigned long long)r->ev_sent_total);
    printf("  %-34s %llu of %llu expected = %.3f %%  (%.0f msgs/s, %u-byte messages)\n",
           "events delivered", (unsigned long long)r->msgs, (unsigned long long)r->expected,
           r->delivered_pct, r->msgs_per_s, r->msg_bytes);
    printf("  %-34s %.0f msgs/s (any event received during the window)\n", "receive rate",
           r->rx_per_s);
    printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms\n",
           r->peer ? "publish->receipt, publisher's hub" : "publish->receipt (payload t)", r->p50,
           r->p99, r->max);
    if (r->peer) {
        printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms (n=%llu)\n",
               "publish->receipt, other hub (NATS)", r->rem_p50, r->rem_p99, r->rem_max,
               (unsigned long long)r->rem_n);
        printf("  %-34s p50 %+.3f  p99 %+.3f ms\n", "cross-hub added (other - own)",
               r->rem_p50 - r->p50, r->rem_p99 - r->p99);
        printf("  %-34s %.0f %% of one core\n", "second hub CPU in window", r->cpu2_pct);
    }
    printf("  %-34s p50 %.3f  p99 %.3f ms (the rest is the harness's read delay)\n",
           "publish->kernel rx at the client", r->arr_p50, r->arr_p99);
    printf("  %-34s %llu resyncs (%llu events skipped by them); SILENT gaps %llu events on %llu "
           "subscribers; duplicates %llu\n",
           "sequence", (unsigned long long)r->resyncs, (unsigned long long)r->resync_skipped,
           (unsigned long long)r->silent, (unsigned long long)r->silent_subs,
           (unsigned long long)r->dups);
    if (r->silent)
        printf("  %-34s subscriber #%llu missed seq %llu..%llu without a resync\n",
               "first silent gap", (unsigned long long)r->first_silent_conn,
               (unsigned long long)r->first_silent_from, (unsigned long long)r->first_silent_to);
    printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms (n=%llu; acks %llu, errors %llu)\n",
           "publisher ack round-trip", r->ack_p50, r->ack_p99, r->ack_max,
           (unsigned long long)r->ack_n, (unsigned long long)r->ev_acks,
           (unsigned long long)r->ev_errors);
    printf("  %-34s %llu late wake-ups sent >1 event (max %llu in one write)\n", "publisher pacing",
           (unsigned long long)r->late_batches, (unsigned long long)r->max_batch);
    printf("  %-34s %.0f %% of one core = %.1f µs per event (harness: %.0f %%)\n",
           "target CPU in window", r->cpu_pct, r->cpu_us_per_event, r->harness_cpu_pct);
    printf("  %-34s %ld KiB at end; closed by server %llu", "target RSS", r->rss_end,
           (unsigned long long)r->closed);
    if (!isnan(r->dropped)) printf("; metricast_ws_dropped_total %.0f", r->dropped);
    printf("\n");
}

static void print_result(const scenario_t *sc, const char *target, const result_t *r) {
    if (sc->kind != K_METRICS) {
        print_events(sc, target, r);
        return;
    }
    printf("\n== %s / %s: %ld subscribers, tick %g s%s\n", sc->name, target, r->subs, r->tick,
           sc->idle ? " (idle)" : "");
    printf("  %-34s %ld/%ld in %.0f ms\n", "subscribed (got full snapshot)", r->subscribed,
           r->subs, r->open_ms);
    printf("  %-34s %ld -> %ld KiB  = %.2f KiB per subscriber\n", "target RSS before/after subscribe",
           r->rss0, r->rss1, r->kib_per_sub);
    if (sc->idle || !r->ran) return;
    printf("  %-34s %.1f s\n", "measurement window", r->duration);
    printf("  %-34s %llu  (%.0f msgs/s, %u-byte tick messages)\n", "updates delivered",
           (unsigned long long)r->msgs, r->msgs_per_s, r->msg_bytes);
    printf("  %-34s %llu of %llu expected = %.2f %%\n", "tick updates delivered",
           (unsigned long long)r->ticks, (unsigned long long)r->expected, r->delivered_pct);
    printf("  %-34s %llu missing (%.2f %% of produced delivered)\n", "seq gaps",
           (unsigned long long)r->gaps, r->produced_pct);
    printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms\n", "tick->receipt (timestamp, ms res.)",
           r->p50, r->p99, r->max);
    printf("  %-34s p50 %.3f  p99 %.3f ms (the rest is the harness's read delay)\n",
           "tick->kernel rx at the client", r->arr_p50, r->arr_p99);
    if (r->ing_n)
        printf("  %-34s p50 %.3f  p99 %.3f  max %.3f ms  (n=%llu)\n", "ingest->receipt (bench_ts)",
               r->ing_p50, r->ing_p99, r->ing_max, (unsigned long long)r->ing_n);
    printf("  %-34s %.0f %% of one core (harness: %.0f %%)\n", "target CPU in window", r->cpu_pct,
           r->harness_cpu_pct);
    printf("  %-34s %ld KiB at end\n", "target RSS", r->rss_end);
    printf("  %-34s %llu", "closed by server", (unsigned long long)r->closed);
    if (!isnan(r->dropped)) printf("; metricast_ws_dropped_total %.0f", r->dropped);
    printf("\n");
}

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_ws_fanout [--scenario onesec|fast|saturate|idle|all|"
            "ev1k|ev5k|evsat|srccycle|events] "
            "[--target hub|ceiling|both]\n"
            "         [--subs N] [--tick S] [--duration S] [--ceiling-tick S] [--short]\n"
            "         [--ceiling PATH] [--frame-bytes N] [--filter GLOB] [--timeout S]\n"
            "         [--rate EV/S] [--publishers 1|2] [--pad N] [--topic T] [--cycles N]\n"
            "         [--readers N] [--peer]\n"
            "         -- METRICASTD [extra daemon flags]\n");
}

int main(int argc, char **argv) {
    const char *scen = "all", *target = "both";
    long subs = -1, timeout_s = 900;
    double tick = -1, duration = -1, ceiling_tick = -1;
    long rate = -1, npub = -1, cycles = -1, readers = -1;
    bool shrt = false;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--scenario") == 0 && v) scen = v, i++;
        else if (strcmp(a, "--target") == 0 && v) target = v, i++;
        else if (strcmp(a, "--subs") == 0 && v) {
            if ((subs = parse_long(v, 1, MAX_SUBS)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--tick") == 0 && v) tick = strtod(v, NULL), i++;
        else if (strcmp(a, "--ceiling-tick") == 0 && v) ceiling_tick = strtod(v, NULL), i++;
        else if (strcmp(a, "--duration") == 0 && v) duration = strtod(v, NULL), i++;
        else if (strcmp(a, "--ceiling") == 0 && v) g_ceiling = v, i++;
        else if (strcmp(a, "--filter") == 0 && v) g_filter = v, i++;
        else if (strcmp(a, "--ceiling-threads") == 0 && v) g_ceiling_threads = v, i++;
        else if (strcmp(a, "--readers") == 0 && v) {
            if ((readers = parse_long(v, 1, MAX_READERS)) < 0) return usage(stderr), 2;
            i++;
        }
        else if (strcmp(a, "--frame-bytes") == 0 && v) {
            if ((g_frame_bytes = parse_long(v, 64, 1 << 20)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--timeout") == 0 && v) {
            if ((timeout_s = parse_long(v, 1, 86400)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--rate") == 0 && v) {
            if ((rate = parse_long(v, 1, 1000000)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--publishers") == 0 && v) {
            if ((npub = parse_long(v, 1, PUB_MAX)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--cycles") == 0 && v) {
            if ((cycles = parse_long(v, 1, 1000000)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--pad") == 0 && v) {
            if ((g_ev_pad = parse_long(v, 0, 1000)) < 0) return usage(stderr), 2;
            i++;
        } else if (strcmp(a, "--topic") == 0 && v) g_ev_topic = v, i++;
        else if (strcmp(a, "--short") == 0) shrt = true;
        else if (strcmp(a, "--peer") == 0) g_peer = true;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return usage(stdout), 0;
        else return usage(stderr), 2;
    }
    if (i >= argc || (tick != -1 && tick <= 0) || (duration != -1 && duration <= 0) ||
        (ceiling_tick != -1 && ceiling_tick <= 0)) {
        usage(stderr);
        return 2;
    }
    g_daemon = argv[i];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g_nrd = (int)(readers > 0 ? readers : ncpu < 1 ? 1 : ncpu > MAX_READERS ? MAX_READERS : ncpu);
    g_extra = argv + i + 1;
    g_nextra = argc - i - 1;
    bool do_hub = strcmp(target, "hub") == 0 || strcmp(target, "both") == 0;
    bool do_ceiling = strcmp(target, "ceiling") == 0 || strcmp(target, "both") == 0;
    if (!do_hub && !do_ceiling) return usage(stderr), 2;
    static char ceil_path[PATH_MAX];
    if (!g_ceiling) { /* next to this program */
        snprintf(ceil_path, sizeof ceil_path, "%s", argv[0]);
        char *slash = strrchr(ceil_path, '/');
        if (slash) snprintf(slash + 1, sizeof ceil_path - (size_t)(slash + 1 - ceil_path), "bench_ws_ceiling");
        else snprintf(ceil_path, sizeof ceil_path, "./bench_ws_ceiling");
        g_ceiling = ceil_path;
    }
    if (do_ceiling && access(g_ceiling, X_OK) != 0) {
        fprintf(stderr, "bench_ws_fanout: %s is not executable (--ceiling PATH)\n", g_ceiling);
        return 2;
    }

    scenario_t all[] = {
        {"onesec", shrt ? 2000 : 10000, 1, shrt ? 4 : 10, false, K_METRICS, 0, 0},
        {"fast", 1000, 0.01, shrt ? 3 : 10, false, K_METRICS, 0, 0},
        {"saturate", 1000, 0.01, shrt ? 3 : 10, false, K_METRICS, 0, 0},
        {"idle", shrt ? 2000 : 10000, 3600, 0, true, K_METRICS, 0, 0},
        /* --scenario events: the event bus (publisher -> hub -> subscribers), then the
         * source connect+close cycle; --tick is the hub's (metrics) tick, unused here */
        {"ev1k", 1000, 1, shrt ? 2 : 10, false, K_EVENTS, 1000, 1},
        {"ev5k", 5000, 1, shrt ? 2 : 10, false, K_EVENTS, 100, 1},
        {"evsat", 5000, 1, shrt ? 2 : 10, false, K_EVENTS, 1000, 1},
        {"srccycle", shrt ? 300 : 1000, 1, 0, false, K_SOURCES, 0, 0},
    };
    scenario_t runs[8];
    int nruns = 0;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        bool pick = strcmp(scen, all[k].name) == 0 ||
                    (strcmp(scen, "all") == 0 && all[k].kind == K_METRICS) ||
                    (strcmp(scen, "events") == 0 && all[k].kind != K_METRICS);
        if (!pick) continue;
        runs[nruns] = all[k];
        if (subs > 0 && all[k].kind != K_SOURCES) runs[nruns].subs = subs;
        if (cycles > 0 && all[k].kind == K_SOURCES) runs[nruns].subs = cycles;
        if (tick > 0) runs[nruns].tick = tick;
        if (duration > 0) runs[nruns].duration = duration;
        if (rate > 0 && all[k].kind == K_EVENTS) runs[nruns].rate = (int)rate;
        if (npub > 0 && all[k].kind == K_EVENTS) runs[nruns].npub = (int)npub;
        nruns++;
    }
    if (!nruns) return usage(stderr), 2;

    long maxsubs = 0;
    for (int k = 0; k < nruns; k++)
        if (runs[k].subs > maxsubs) maxsubs = runs[k].subs;
    struct rlimit rl;
    rlim_t want = (rlim_t)maxsubs + WARMUP_SUBS + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = want <= rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        fprintf(stderr, "bench_ws_fanout: RLIMIT_NOFILE hard limit %llu is below %llu\n",
                (unsigned long long)rl.rlim_max, (unsigned long long)want);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)timeout_s); /* a hard bound on the whole program */
    srandom((unsigned)getpid());

    g_conns = calloc((size_t)maxsubs + WARMUP_SUBS, sizeof *g_conns);
    g_hist_tick = calloc(HIST_MAX, sizeof *g_hist_tick);
    g_hist_ing = calloc(HIST_MAX, sizeof *g_hist_ing);
    g_hist_ack = calloc(HIST_MAX, sizeof *g_hist_ack);
    g_hist_arr = calloc(HIST_MAX, sizeof *g_hist_arr);
    if (!g_conns || !g_hist_tick || !g_hist_ing || !g_hist_ack || !g_hist_arr) {
        fprintf(stderr, "bench_ws_fanout: out of memory\n");
        return 1;
    }
    for (int t = 0; t < g_nrd; t++) {
        reader_t *rd = &g_rd[t];
        rd->ep = epoll_create1(EPOLL_CLOEXEC);
        rd->rcap = 1u << 18;
        rd->hist_tick = calloc(HIST_MAX, sizeof *rd->hist_tick);
        rd->hist_ing = calloc(HIST_MAX, sizeof *rd->hist_ing);
        rd->hist_arr = calloc(HIST_MAX, sizeof *rd->hist_arr);
        if (rd->ep < 0 || !rd->hist_tick || !rd->hist_ing || !rd->hist_arr) {
            fprintf(stderr, "bench_ws_fanout: out of memory\n");
            return 1;
        }
    }
    for (long k = 0; k < maxsubs + WARMUP_SUBS; k++) g_conns[k].fd = -1;
    if (g_filter)
        g_subscribe_len = (size_t)snprintf(
            g_subscribe_msg, sizeof g_subscribe_msg,
            "{\"type\":\"subscribe\",\"topics\":[\"metrics\"],\"filter\":{\"match\":\"%s\"}}",
            g_filter);
    else
        g_subscribe_len = (size_t)snprintf(g_subscribe_msg, sizeof g_subscribe_msg,
                                           "{\"type\":\"subscribe\",\"topics\":[\"metrics\"]}");

    printf("bench_ws_fanout: %s vs %s, %d scenario(s), %ld CPUs shared by harness and target, "
           "%d reader threads\n",
           g_daemon, do_ceiling ? g_ceiling : "-", nruns, sysconf(_SC_NPROCESSORS_ONLN), g_nrd);
    result_t hub_r[8], ceil_r[8];
    memset(hub_r, 0, sizeof hub_r);
    memset(ceil_r, 0, sizeof ceil_r);
    int failed = 0;
    for (int k = 0; k < nruns; k++) {
        scenario_t *sc = &runs[k];
        if (do_hub) {
            if (run_one(sc, false, sc->tick, &hub_r[k]) < 0) failed++;
            print_result(sc, "hub", &hub_r[k]);
            fflush(stdout);
            if (hub_r[k].msg_bytes > 64) g_frame_bytes = hub_r[k].msg_bytes; /* same size */
        }
        if (runs[k].kind == K_EVENTS && !(do_hub && hub_r[k].msg_bytes > 64))
            g_frame_bytes = 240; /* no hub run to take the size from: about the hub's */
        if (do_ceiling && runs[k].kind != K_SOURCES) {
            double ct = ceiling_tick > 0 && strcmp(sc->name, "saturate") == 0 ? ceiling_tick
                                                                               : sc->tick;
            if (run_one(sc, true, ct, &ceil_r[k]) < 0) failed++;
            print_result(sc, "ceiling", &ceil_r[k]);
            fflush(stdout);
        }
    }

    if (runs[0].kind != K_METRICS) { /* the events group (never mixed with metrics runs) */
        printf("\n== events summary (latency: publish->receipt; ratio hub/ceiling: >1 = hub "
               "slower, <1 = hub delivers less)\n");
        printf("%-8s %-8s %5s %6s %11s %9s %8s %8s %8s %7s %7s %8s %8s %6s %8s %6s %6s\n",
               "scenario", "target", "subs", "ev/s", "rx_msgs/s", "deliv%", "p50_ms", "p99_ms",
               "max_ms", "resync", "silent", "ack_p50", "ack_p99", "us/ev", "krx_p99", "cpu%",
               "h_cpu%");
        for (int k = 0; k < nruns; k++) {
            if (runs[k].kind == K_SOURCES) continue;
            for (int t = 0; t < 2; t++) {
                result_t *r = t ? &ceil_r[k] : &hub_r[k];
                if (!(t ? do_ceiling : do_hub)) continue;
                printf("%-8s %-8s %5ld %6d %11.0f %9.3f %8.3f %8.3f %8.3f %7llu %7llu %8.3f %8.3f "
                       "%6.1f %8.3f %6.0f %6.0f\n",
                       runs[k].name, t ? "ceiling" : "hub", r->subs, r->rate, r->rx_per_s,
                       r->delivered_pct, r->p50, r->p99, r->max, (unsigned long long)r->resyncs,
                       (unsigned long long)r->silent, r->ack_p50, r->ack_p99, r->cpu_us_per_event,
                       r->arr_p99, r->cpu_pct, r->harness_cpu_pct);
            }
            if (do_hub && do_ceiling)
                printf("%-8s %-8s %5s %6s %11.3f %9.3f %8.2f %8.2f %8.2f %7s %7s %8.2f %8.2f %6.2f\n",
                       runs[k].name, "ratio", "", "", ratio(hub_r[k].rx_per_s, ceil_r[k].rx_per_s),
                       ratio(hub_r[k].delivered_pct, ceil_r[k].delivered_pct),
                       ratio(hub_r[k].p50, ceil_r[k].p50), ratio(hub_r[k].p99, ceil_r[k].p99),
                       ratio(hub_r[k].max, ceil_r[k].max), "", "",
                       ratio(hub_r[k].ack_p50, ceil_r[k].ack_p50),
                       ratio(hub_r[k].ack_p99, ceil_r[k].ack_p99),
                       ratio(hub_r[k].cpu_us_per_event, ceil_r[k].cpu_us_per_event));
        }
        printf("ws_events_runs=%d", nruns);
        for (int k = 0; k < nruns; k++) {
            const char *n = runs[k].name;
            if (runs[k].kind == K_SOURCES) {
                if (do_hub)
                    printf(" %s_cycles=%ld %s_p50_ms=%.3f %s_missing_events=%ld", n,
                           hub_r[k].cyc.ok, n, hub_r[k].cyc.p50, n, hub_r[k].cyc.events_missing);
                continue;
            }
            if (do_hub) {
                result_t *r = &hub_r[k];
                printf(" %s_subs=%ld %s_msgs_per_s=%.0f %s_delivered_pct=%.3f %s_p99_ms=%.3f "
                       "%s_resyncs=%llu %s_silent=%llu %s_ack_p99_ms=%.3f",
                       n, r->subs, n, r->rx_per_s, n, r->delivered_pct, n, r->p99, n,
                       (unsigned long long)r->resyncs, n, (unsigned long long)r->silent, n,
                       r->ack_p99);
            }
            if (do_hub && do_ceiling)
                printf(" %s_p99_ratio=%.2f %s_rate_ratio=%.3f", n,
                       ratio(hub_r[k].p99, ceil_r[k].p99), n,
                       ratio(hub_r[k].rx_per_s, ceil_r[k].rx_per_s));
        }
        printf("\n");
        return failed ? 1 : 0;
    }
    printf("\n== summary (latency: tick->receipt; hub/ceiling: >1 = hub slower/bigger, <1 = hub "
           "delivers less)\n");
    printf("%-9s %-8s %6s %7s %11s %8s %8s %8s %8s %7s %9s %8s %6s\n", "scenario", "target",
           "subs", "tick_s", "msgs/s", "deliv%", "p50_ms", "p99_ms", "max_ms", "cpu%", "KiB/sub",
           "krx_p99", "h_cpu%");
    for (int k = 0; k < nruns; k++) {
        for (int t = 0; t < 2; t++) {
            result_t *r = t ? &ceil_r[k] : &hub_r[k];
            if (!(t ? do_ceiling : do_hub)) continue;
            printf("%-9s %-8s %6ld %7g %11.0f %8.2f %8.3f %8.3f %8.3f %7.0f %9.2f %8.3f %6.0f\n",
                   runs[k].name, t ? "ceiling" : "hub", r->subs, r->tick, r->msgs_per_s,
                   r->delivered_pct, r->p50, r->p99, r->max, r->cpu_pct, r->kib_per_sub,
                   r->arr_p99, r->harness_cpu_pct);
        }
        if (do_hub && do_ceiling)
            printf("%-9s %-8s %6s %7s %11.3f %8.3f %8.2f %8.2f %8.2f %7.2f %9.2f\n", runs[k].name,
                   "ratio", "", "", ratio(hub_r[k].msgs_per_s, ceil_r[k].msgs_per_s),
                   ratio(hub_r[k].delivered_pct, ceil_r[k].delivered_pct),
                   ratio(hub_r[k].p50, ceil_r[k].p50), ratio(hub_r[k].p99, ceil_r[k].p99),
                   ratio(hub_r[k].max, ceil_r[k].max), ratio(hub_r[k].cpu_pct, ceil_r[k].cpu_pct),
                   ratio(hub_r[k].kib_per_sub, ceil_r[k].kib_per_sub));
    }
    /* one machine-readable line (bench/run_all.sh keeps the last `key=value` line) */
    printf("ws_fanout_runs=%d", nruns);
    for (int k = 0; k < nruns; k++) {
        const char *n = runs[k].name;
        if (do_hub) {
            result_t *r = &hub_r[k];
            if (runs[k].idle)
                printf(" %s_kib_per_sub=%.2f", n, r->kib_per_sub);
            else
                printf(" %s_subs=%ld %s_msgs_per_s=%.0f %s_delivered_pct=%.2f %s_p99_ms=%.3f", n,
                       r->subs, n, r->msgs_per_s, n, r->delivered_pct, n, r->p99);
        }
        if (do_hub && do_ceiling) {
            if (runs[k].idle)
                printf(" %s_mem_ratio=%.2f", n, ratio(hub_r[k].kib_per_sub, ceil_r[k].kib_per_sub));
            else
                printf(" %s_p99_ratio=%.2f %s_rate_ratio=%.3f", n,
                       ratio(hub_r[k].p99, ceil_r[k].p99), n,
                       ratio(hub_r[k].msgs_per_s, ceil_r[k].msgs_per_s));
        }
    }
    printf("\n");
    return failed ? 1 : 0;
}
