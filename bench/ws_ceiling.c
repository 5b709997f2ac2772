/* bench_ws_ceiling — the floor of latency and the ceiling of throughput for WebSocket
 * fan-out on this machine: a minimal epoll broadcaster that speaks just enough of
 * metricastd's protocol for bench_ws_fanout to measure it the same way.
 *
 *   bench_ws_ceiling --listen 127.0.0.1:PORT [--tick SECONDS] [--frame-bytes N]
 *                    [--threads N] [--data DIR] [--statsd ADDR]
 *
 * Each of --threads loops (default: one per core, as metricastd's workers) binds its own
 * SO_REUSEPORT socket on the port and runs one epoll loop with a timerfd ticking every
 * --tick seconds (all loops on the same absolute schedule; no lower bound). It answers any
 * plain HTTP request with `200 ok` (so bench_util's health poll works) and `GET /ws` with a
 * minimal RFC 6455 handshake. A client that sends any data frame after the handshake is a
 * subscriber: it gets one update at once (its "full snapshot") and then one per tick.
 *
 * On every tick a loop encodes ONE text frame, shaped like metricastd's metrics:update
 * (`seq` = the tick's number, `reason`, `full`, a `bench_ts` gauge whose value is the
 * tick's scheduled CLOCK_REALTIME in microseconds, `timestamp` in ISO 8601 with
 * milliseconds, truncated like the hub's) and padded to --frame-bytes (default 600) bytes,
 * appends it to every subscriber's output buffer, and flushes every buffer it touched with
 * one write() per connection at the end of the loop pass. A loop that wakes late appends
 * the frames of all the ticks it missed, then writes once. A buffer holding more than
 * 4 MiB (metricastd's default queue limit) drops the new frame.
 * --data and --statsd are accepted and ignored, so the same command line fits both.
 *
 * --events: the events ceiling (bench_ws_fanout --scenario events). No timer; the broadcast
 * is driven by the harness's publisher, as the hub's is: a client text frame starting with
 * {"type":"publish" is a publish: its "data" object is wrapped once as
 * {"type":"event","seq":N,"data":DATA,"pad":"xx.."} (padded to --frame-bytes; seq from one
 * counter over all loops), stored in a shared ring, answered with
 * {"type":"ack","id":"evt_N","seq":N}, and every loop (woken by its eventfd) appends each
 * new ring frame to each of its subscribers and writes once per pass. Any other data frame
 * subscribes (no first update is sent). No validation, no id, no retained window.
 *
 * Logs `msg="http listening" addr=127.0.0.1:PORT` on stderr; exits 0 on SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define OUT_LIMIT (4u << 20)
#define IN_LIMIT 65536
#define KEEP_BUF 4096

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ---------------------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t buf[256];
    if (total > sizeof buf) return; /* only used on 60-byte inputs */
    memset(buf, 0, total);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---- connections ------------------------------------------------------------------------ */

enum { C_HTTP, C_WS, C_SUB };

typedef struct cconn {
    int fd;
    int state;
    bool want_out;    /* EPOLLOUT armed */
    bool dirty;       /* listed for the end-of-pass flush */
    bool close_after; /* HTTP answer: close once written */
    uint32_t slot;    /* index in the loop's subscriber array */
    char *in;         /* unparsed input (handshake, client frames) */
    size_t inlen;
    char *out; /* bytes not yet written: out[off..len) */
    size_t off, len, cap;
} cconn_t;

typedef struct loop {
    int id, ep, lfd, tfd, efd;
    uint64_t ev_cursor; /* events mode: last ring seq appended to this loop's subscribers */
    bool ev_pending;
    cconn_t **subs;
    uint32_t nsubs, subcap;
    cconn_t **dirty;
    uint32_t ndirty, dirtycap;
    uint64_t seq, drops, last_k;
    char *frame; /* the current tick's frame */
    size_t flen;
    pthread_t th;
} loop_t;

static int g_port, g_nthreads = 0;
static double g_tick = 1.0;
static size_t g_frame_bytes = 600;
static struct timespec g_start;
static bool g_events;
static int g_nloops;
static struct loop *g_loops;

/* events mode: the shared ring of encoded event frames, seq-indexed */
#define RING_SLOTS 16384u
#define SLOT_BYTES 1024u
typedef struct slot {
    _Atomic uint64_t seq;
    uint32_t len;
    char buf[SLOT_BYTES];
} slot_t;
static slot_t *g_ring;
static _Atomic uint64_t g_ring_head; /* last published seq */
static pthread_mutex_t g_ring_mu = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what) {
    fprintf(stderr, "level=error msg=\"%s\" error=\"%s\"\n", what, strerror(errno));
    exit(1);
}

static int out_put(cconn_t *c, const void *p, size_t n) {
    if (c->len - c->off + n > OUT_LIMIT) return -1;
    if (c->off && c->len + n > c->cap) { /* compact first */
        memmove(c->out, c->out + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len + n > c->cap) {
        size_t nc = c->cap ? c->cap : 1024;
        while (nc < c->len + n) nc *= 2;
        char *nb = realloc(c->out, nc);
        if (!nb) return -1;
        c->out = nb;
        c->cap = nc;
    }
    memcpy(c->out + c->len, p, n);
    c->len += n;
    return 0;
}

static void mark_dirty(loop_t *l, cconn_t *c) {
    if (c->dirty) return;
    if (l->ndirty == l->dirtycap) {
        l->dirtycap = l->dirtycap ? l->dirtycap * 2 : 1024;
        l->dirty = realloc(l->dirty, l->dirtycap * sizeof *l->dirty);
        if (!l->dirty) die("out of memory");
    }
    c->dirty = true;
    l->dirty[l->ndirty++] = c;
}

static void conn_free(loop_t *l, cconn_t *c) {
    if (c->state == C_SUB) {
        cconn_t *last = l->subs[--l->nsubs];
        l->subs[c->slot] = last;
        last->slot = c->slot;
    }
    close(c->fd);
    free(c->in);
    free(c->out);
    c->fd = -1; /* freed after the pass if it is still listed as dirty */
    if (!c->dirty) free(c);
}

static void set_out(loop_t *l, cconn_t *c, bool on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Writes what is buffered; 0, or -1 when the connection was freed. */
static int flush(loop_t *l, cconn_t *c) {
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->out + c->off, c->len - c->off);
        if (n > 0) {
            c->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            set_out(l, c, true);
            return 0;
        }
        conn_free(l, c);
        return -1;
    }
    c->off = c->len = 0;
    if (c->cap > KEEP_BUF) {
        free(c->out);
        c->out = NULL;
        c->cap = 0;
    }
    set_out(l, c, false);
    if (c->close_after) {
        conn_free(l, c);
        return -1;
    }
    return 0;
}

/* ---- the frame ---------------------------------------------------------------------------- */

static size_t frame_header(uint8_t *h, size_t len) {
    h[0] = 0x81;
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126, h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* The frame for tick k is a function of k alone (its timestamp and bench_ts are the tick's
 * scheduled CLOCK_REALTIME time), so every loop sends the same bytes under the same seq, as
 * the hub sends one shared frame. A loop that wakes late appends the frames of every tick
 * it missed (each with its own time) and flushes them in one write per connection. A full
 * (first) update carries the current k and the time it is sent. */
static uint64_t tick_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double el = (double)(ts.tv_sec - g_start.tv_sec) + (double)(ts.tv_nsec - g_start.tv_nsec) / 1e9;
    return el > 0 ? (uint64_t)(el / g_tick + 1e-6) : 0; /* timers fire at or after */
}

static void encode(loop_t *l, bool full, uint64_t k) {
    int64_t us;
    if (full) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    } else {
        double t = (double)g_start.tv_sec + (double)g_start.tv_nsec / 1e9 + (double)k * g_tick;
        us = (int64_t)llround(t * 1e6);
    }
    l->seq = k;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char iso[96];
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));
    char head[512], tail[128];
    int hl = snprintf(head, sizeof head,
                      "{\"type\":\"metrics:update\",\"seq\":%llu,\"reason\":\"tick\",\"full\":%s,"
                      "\"data\":{\"series\":[{\"name\":\"bench_ts\",\"labels\":{},\"kind\":"
                      "\"gauge\",\"value\":%llu,\"updated_at\":\"%s\"}],\"summary\":{\"pad\":\"",
                      (unsigned long long)l->seq, full ? "true" : "false",
                      (unsigned long long)us, iso);
    int tl = snprintf(tail, sizeof tail, "\"}},\"timestamp\":\"%s\"}", iso);
    size_t plen = (size_t)hl + (size_t)tl;
    size_t pad = g_frame_bytes > plen + 4 ? g_frame_bytes - plen - 4 : 0; /* ~ header bytes */
    plen += pad;
    free(l->frame);
    l->frame = malloc(plen + 10);
    if (!l->frame) die("out of memory");
    size_t o = frame_header((uint8_t *)l->frame, plen);
    memcpy(l->frame + o, head, (size_t)hl), o += (size_t)hl;
    memset(l->frame + o, 'x', pad), o += pad;
    memcpy(l->frame + o, tail, (size_t)tl), o += (size_t)tl;
    l->flen = o;
}

static void on_tick(loop_t *l) {
    uint64_t exp;
    if (read(l->tfd, &exp, sizeof exp) != sizeof exp) return;
    uint64_t k = tick_now();
    if (l->nsubs == 0 || k <= l->last_k) {
        if (k > l->last_k) l->last_k = k;
        return;
    }
    uint64_t from = l->last_k + 1;
    if (l->last_k == 0 || k - from > 1000) from = k; /* first tick, or hopelessly behind */
    for (uint64_t t = from; t <= k; t++) {
        encode(l, false, t);
        for (uint32_t i = 0; i < l->nsubs; i++) {
            cconn_t *c = l->subs[i];
            if (out_put(c, l->frame, l->flen) < 0) {
                l->drops++;
                continue;
            }
            mark_dirty(l, c);
        }
    }
    l->last_k = k;
}

/* ---- events mode ---------------------------------------------------------------------------- */

/* Wraps a publish's data object as an event frame in the ring; acks on c. */
static void ev_publish(loop_t *l, cconn_t *c, const char *msg, size_t n) {
    const char *d = memmem(msg, n, "\"data\":", 7);
    if (!d || msg[n - 1] != '}') return;
    d += 7;
    size_t dl = (size_t)(msg + n - 1 - d); /* up to the outer closing brace */
    char head[64];
    pthread_mutex_lock(&g_ring_mu);
    uint64_t seq = atomic_load_explicit(&g_ring_head, memory_order_relaxed) + 1;
    slot_t *s = &g_ring[seq % RING_SLOTS];
    int hl = snprintf(head, sizeof head, "{\"type\":\"event\",\"seq\":%llu,\"data\":",
                      (unsigned long long)seq);
    static const char padk[] = ",\"pad\":\"", tail[] = "\"}";
    size_t plen = (size_t)hl + dl + sizeof padk - 1 + sizeof tail - 1;
    size_t want = g_frame_bytes > 4 ? g_frame_bytes - 4 : 0; /* minus the frame header */
    size_t pad = want > plen ? want - plen : 0;
    if (plen + pad + 4 > SLOT_BYTES) pad = plen + 4 < SLOT_BYTES ? SLOT_BYTES - plen - 4 : 0;
    size_t o = 0;
    if (plen + pad + 4 <= SLOT_BYTES) {
        o = frame_header((uint8_t *)s->buf, plen + pad);
        memcpy(s->buf + o, head, (size_t)hl), o += (size_t)hl;
        memcpy(s->buf + o, d, dl), o += dl;
        memcpy(s->buf + o, padk, sizeof padk - 1), o += sizeof padk - 1;
        memset(s->buf + o, 'x', pad), o += pad;
        memcpy(s->buf + o, tail, sizeof tail - 1), o += sizeof tail - 1;
    }
    s->len = (uint32_t)o;
    atomic_store_explicit(&s->seq, seq, memory_order_release);
    atomic_store_explicit(&g_ring_head, seq, memory_order_release);
    pthread_mutex_unlock(&g_ring_mu);
    char ack[96];
    uint8_t fh[4];
    int al = snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"id\":\"evt_%llu\",\"seq\":%llu}",
                      (unsigned long long)seq, (unsigned long long)seq);
    size_t fl = frame_header(fh, (size_t)al);
    out_put(c, fh, fl);
    out_put(c, ack, (size_t)al);
    mark_dirty(l, c);
    l->ev_pending = true; /* wake every loop once at the end of this read */
}

static void ev_wake_all(void) {
    uint64_t one = 1;
    for (int t = 0; t < g_nloops; t++)
        if (write(g_loops[t].efd, &one, sizeof one) < 0) {
        }
}

/* Appends every ring frame after this loop's cursor to each of its subscribers. */
static void ev_drain(loop_t *l) {
    uint64_t head = atomic_load_explicit(&g_ring_head, memory_order_acquire);
    if (l->ev_cursor == 0 && l->nsubs == 0) {
        l->ev_cursor = head; /* nobody to send to yet */
        return;
    }
    if (head > l->ev_cursor + RING_SLOTS - 1) { /* overrun: skipped frames are dropped */
        l->drops += head - (RING_SLOTS - 1) - l->ev_cursor;
        l->ev_cursor = head - (RING_SLOTS - 1);
    }
    for (uint64_t q = l->ev_cursor + 1; q <= head; q++) {
        slot_t *s = &g_ring[q % RING_SLOTS];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != q || !s->len) continue;
        for (uint32_t i = 0; i < l->nsubs; i++) {
            cconn_t *c = l->subs[i];
            if (out_put(c, s->buf, s->len) < 0) {
                l->drops++;
                continue;
            }
            mark_dirty(l, c);
        }
    }
    l->ev_cursor = head;
}

/* ---- input: the handshake, then client frames -------------------------------------------- */

static void subscribe(loop_t *l, cconn_t *c) {
    if (l->nsubs == l->subcap) {
        l->subcap = l->subcap ? l->subcap * 2 : 1024;
        l->subs = realloc(l->subs, l->subcap * sizeof *l->subs);
        if (!l->subs) die("out of memory");
    }
    c->state = C_SUB;
    c->slot = l->nsubs;
    l->subs[l->nsubs++] = c;
    if (g_events) return; /* events: no snapshot, the next event is the first message */
    encode(l, true, tick_now()); /* its own first update, like the hub's full snapshot */
    out_put(c, l->frame, l->flen);
    mark_dirty(l, c);
}

/* Consumes c->in; -1 when the connection was freed. */
static int handle_input(loop_t *l, cconn_t *c) {
    size_t used = 0;
    if (c->state == C_HTTP) {
        char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
        if (!end) return c->inlen > 8192 ? (conn_free(l, c), -1) : 0;
        used = (size_t)(end - c->in) + 4;
        c->in[used - 1] = '\0';
        char *key = strcasestr(c->in, "\r\nSec-WebSocket-Key:");
        if (strncmp(c->in, "GET /ws", 7) == 0 && key) {
            key += 20;
            while (*key == ' ') key++;
            char cat[128];
            size_t kl = strcspn(key, "\r\n ");
            if (kl > 64) kl = 64;
            memcpy(cat, key, kl);
            memcpy(cat + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
            uint8_t sha[20];
            char acc[32], resp[256];
            sha1((uint8_t *)cat, kl + 36, sha);
            base64(sha, 20, acc);
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                             acc);
            out_put(c, resp, (size_t)n);
            c->state = C_WS;
        } else {
            static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                     "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
            out_put(c, ok, sizeof ok - 1);
            c->close_after = true;
        }
        mark_dirty(l, c);
    }
    /* client frames: masked; any data frame subscribes, close ends the connection */
    while (c->state != C_HTTP) {
        const uint8_t *p = (const uint8_t *)c->in + used;
        size_t avail = c->inlen - used;
        if (avail < 2) break;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
            hl = 10;
        }
        if (p[1] & 0x80) hl += 4;
        if (len > IN_LIMIT) {
            conn_free(l, c);
            return -1;
        }
        if (avail < hl + len) break;
        int op = p[0] & 0x0f;
        used += hl + (size_t)len;
        if (op == 0x8) {
            conn_free(l, c);
            return -1;
        }
        if (g_events && op == 0x1 && (p[1] & 0x80) && len >= 18) {
            uint8_t *m = (uint8_t *)c->in + used - len; /* unmask in place */
            const uint8_t *k = p + hl - 4;
            for (uint64_t i = 0; i < len; i++) m[i] ^= k[i & 3];
            if (memcmp(m, "{\"type\":\"publish\"", 17) == 0) {
                ev_publish(l, c, (const char *)m, (size_t)len);
                continue;
            }
        }
        if ((op == 0x1 || op == 0x2) && c->state == C_WS) subscribe(l, c);
    }
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
    return 0;
}

static void on_readable(loop_t *l, cconn_t *c) {
    char buf[16384];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0 || c->inlen + (size_t)n > IN_LIMIT) {
            conn_free(l, c);
            return;
        }
        char *nb = realloc(c->in, c->inlen + (size_t)n);
        if (!nb) die("out of memory");
        c->in = nb;
        memcpy(c->in + c->inlen, buf, (size_t)n);
        c->inlen += (size_t)n;
        if (handle_input(l, c) < 0) return;
        if (c->inlen == 0) {
            free(c->in);
            c->in = NULL;
        }
        if ((size_t)n < sizeof buf) return;
    }
}

static void on_accept(loop_t *l) {
    for (;;) {
        int fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cconn_t *c = calloc(1, sizeof *c);
        if (!c) die("out of memory");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

static void *loop_main(void *arg) {
    loop_t *l = arg;
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(l->ep, evs, 512, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &l->lfd) {
                on_accept(l);
            } else if (p == &l->tfd) {
                on_tick(l);
            } else if (p == &l->efd) {
                uint64_t v;
                if (read(l->efd, &v, sizeof v) < 0) {
                }
                ev_drain(l);
            } else {
                cconn_t *c = p;
                if (c->fd < 0) continue; /* freed earlier in this pass */
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(l, c);
                else if ((evs[i].events & EPOLLOUT) && c->fd >= 0) mark_dirty(l, c);
            }
        }
        if (l->ev_pending) { /* this pass published: tell every loop (this one too) */
            l->ev_pending = false;
            ev_wake_all();
        }
        /* once per pass: one write per touched connection */
        for (uint32_t i = 0; i < l->ndirty; i++) {
            cconn_t *c = l->dirty[i];
            c->dirty = false;
            if (c->fd < 0) {
                free(c);
                continue;
            }
            flush(l, c);
        }
        l->ndirty = 0;
    }
    return NULL;
}

static int bind_reuseport(int port, int *actual) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
        close(fd);
        return -1;
    }
    *actual = ntohs(a.sin_port);
    return fd;
}

static void on_term(int sig) {
    (void)sig;
    static const char m[] = "level=info msg=\"stopped\"\n";
    if (write(2, m, sizeof m - 1) < 0) {
    }
    _exit(0);
}

int main(int argc, char **argv) {
    const char *listen_s = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--listen") == 0 && v) listen_s = v, i++;
        else if (strcmp(a, "--tick") == 0 && v) g_tick = strtod(v, NULL), i++;
        else if (strcmp(a, "--frame-bytes") == 0 && v) g_frame_bytes = strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--threads") == 0 && v) g_nthreads = atoi(v), i++;
        else if (strcmp(a, "--events") == 0) g_events = true;
        else if ((strcmp(a, "--data") == 0 || strcmp(a, "--statsd") == 0) && v) i++;
        else {
            fprintf(stderr,
                    "usage: bench_ws_ceiling --listen 127.0.0.1:PORT [--tick S] "
                    "[--frame-bytes N] [--threads N] [--events]\n");
            return 2;
        }
    }
    const char *colon = strrchr(listen_s, ':');
    if (!colon || strncmp(listen_s, "127.0.0.1:", 10) != 0 || g_tick <= 0 ||
        g_frame_bytes > (1u << 20)) {
        fprintf(stderr, "bench_ws_ceiling: bad --listen, --tick or --frame-bytes\n");
        return 2;
    }
    g_port = atoi(colon + 1);
    if (g_nthreads <= 0) g_nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (g_nthreads < 1) g_nthreads = 1;
    if (g_nthreads > MAX_THREADS) g_nthreads = MAX_THREADS;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    static loop_t loops[MAX_THREADS];
    g_loops = loops;
    g_nloops = g_nthreads;
    if (g_events && !(g_ring = calloc(RING_SLOTS, sizeof *g_ring))) die("calloc");
    clock_gettime(CLOCK_REALTIME, &g_start);
    g_start.tv_nsec = 0; /* ticks on whole multiples of --tick after a whole second */
    long tick_ns = (long)(g_tick * 1e9);
    struct itimerspec its = {.it_interval = {tick_ns / 1000000000L, tick_ns % 1000000000L}};
    its.it_value = g_start;
    its.it_value.tv_sec += 1; /* first tick 1 s after start, then every tick, on all loops */
    int port = g_port;
    for (int t = 0; t < g_nthreads; t++) {
        loop_t *l = &loops[t];
        l->id = t;
        if ((l->lfd = bind_reuseport(port, &port)) < 0) die("bind");
        if ((l->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
        if ((l->tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
            die("timerfd_create");
        if (!g_events && timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
            die("timerfd_settime");
        if ((l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) die("eventfd");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->lfd};
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev);
        ev.data.ptr = &l->tfd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->tfd, &ev);
        ev.data.ptr = &l->efd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ev);
    }
    for (int t = 0; t < g_nthreads; t++)
        if (pthread_create(&loops[t].th, NULL, loop_main, &loops[t]) != 0) die("pthread_create");
    fprintf(stderr,
            "level=info msg=\"http listening\" addr=127.0.0.1:%d threads=%d tick=%g "
            "frame_bytes=%zu events=%d\n",
            port, g_nthreads, g_tick, g_frame_bytes, (int)g_events);
    for (;;) pause();
}
