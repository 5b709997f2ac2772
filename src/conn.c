#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "hub.h"
#include "limit.h"
#include "log.h"
#include "worker.h"
#include "ws.h"

/* Most frames handed to one uv_write; libuv copies the buffer array, so this only bounds
 * the stack array. 64 × ~100-byte frames already fill a typical socket buffer's worth. */
#define CONN_WRITE_BATCH 64
/* HTTP: stop reading a pipelining client whose answers pile up beyond this. */
#define CONN_HTTP_QUEUE_PAUSE (1u << 20)

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)suggested;
    conn_t *c = (conn_t *)h;
    b->base = c->w->rbuf;
    b->len = WORKER_RBUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    conn_t *c = (conn_t *)s;
    if (nread < 0) {
        /* EOF or error: nothing more will come; HTTP answers already queued still go out
         * only if the peer half-closed, which we do not support: close now. */
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    c->last_rx_ms = uv_now(&c->w->loop);
    c->bytes_in += (uint64_t)nread;
    if (c->proto == CONN_HTTP)
        http_on_data(c, b->base, (size_t)nread);
    else
        ws_on_data(c, (const uint8_t *)b->base, (size_t)nread);
}

static void free_unaccepted(uv_handle_t *h) { free(h); }

int conn_accept(worker_t *w, uv_stream_t *server) {
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return UV_ENOMEM;
    int rc = uv_tcp_init(&w->loop, &c->tcp);
    if (rc) {
        free(c);
        return rc;
    }
    c->w = w;
    c->id = ++w->next_conn_id;
    c->evslot = -1;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc) {
        /* another worker won the race for this connection: normal with a shared socket */
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            uv_ip4_name(in, ip, sizeof ip);
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(in6, ip, sizeof ip);
            port = ntohs(in6->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    ipl_addr_t addr;
    ipl_addr_from(&addr, (struct sockaddr *)&ss);
    memcpy(c->addr, addr.b, sizeof c->addr);
    c->last_rx_ms = uv_now(&w->loop);
    rc = http_attach(c);
    worker__add_conn(w, c);
    atomic_fetch_add(&w->stats.accepted_total, 1);
    if (rc) {
        conn_close(c);
        return 0;
    }
    int hit = iplimits_admit(&w->hub->iplim, &addr, uv_now(&w->loop));
    if (hit >= 0) {
        /* over a connection limit: one answer saying which, then closed; never read */
        worker_limit_hit(w, hit, c->peer);
        if (hit == LIMIT_CONNECTIONS)
            http_respond_error_conn(c, 503, "too_many_connections",
                                    "the hub holds as many connections as it is allowed "
                                    "([server] max_connections)");
        else if (hit == LIMIT_CONNECTIONS_PER_IP)
            http_respond_error_conn(c, 429, "too_many_connections",
                                    "this address holds as many connections as it is allowed "
                                    "([server] max_connections_per_ip)");
        else
            http_respond_error_conn(c, 429, "connection_rate_exceeded",
                                    "this address opens connections faster than allowed "
                                    "([server] max_connection_rate_per_ip)");
        return 0;
    }
    c->admitted = true;
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc) conn_close(c);
    return 0;
}

static int queue_grow(conn_t *c) {
    uint32_t ncap = c->qcap ? c->qcap * 2 : 4;
    frame_t **nq = malloc(ncap * sizeof *nq);
    if (!nq) return -ENOMEM;
    for (uint32_t i = 0; i < c->qlen; i++) nq[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
    free(c->q);
    c->q = nq;
    c->qcap = ncap;
    c->qhead = 0;
    return 0;
}

int conn_send(conn_t *c, frame_t *f) {
    if (c->closing || c->flush_close) {
        frame_unref(f);
        return -EPIPE;
    }
    if (c->qlen == c->qcap && queue_grow(c) < 0) {
        frame_unref(f);
        return -ENOMEM;
    }
    c->q[(c->qhead + c->qlen) & (c->qcap - 1)] = f;
    c->qlen++;
    c->qbytes += f->len;
    if (c->proto == CONN_HTTP && c->qbytes > CONN_HTTP_QUEUE_PAUSE) conn_pause_read(c, true);
    return 0;
}

int conn_send_copy(conn_t *c, const void *p, size_t n, uint32_t flags) {
    frame_t *f = frame_copy(p, n, flags);
    if (!f) return -ENOMEM;
    return conn_send(c, f);
}

uint32_t conn_drop_unsent(conn_t *c, uint32_t flags, uint32_t max, size_t *bytes) {
    /* frames being written, and a head frame partly written, stay untouched */
    uint32_t first = c->inflight ? c->inflight : (c->head_off ? 1 : 0);
    uint32_t dropped = 0, keep = first;
    size_t b = 0;
    for (uint32_t i = first; i < c->qlen; i++) {
        frame_t *f = c->q[(c->qhead + i) & (c->qcap - 1)];
        if ((f->flags & flags) && (!max || dropped < max)) {
            b += f->len;
            dropped++;
            frame_unref(f);
            continue;
        }
        c->q[(c->qhead + keep) & (c->qcap - 1)] = f;
        keep++;
    }
    c->qlen = keep;
    c->qbytes -= b;
    if (bytes) *bytes = b;
    return dropped;
}

/* Pops the head frame, written completely. Returns whether it ends the connection. */
static bool pop_written(conn_t *c) {
    frame_t *f = c->q[c->qhead];
    c->q[c->qhead] = NULL;
    c->qhead = (c->qhead + 1) & (c->qcap - 1);
    c->qlen--;
    c->qbytes -= f->len;
    c->bytes_out += f->len;
    bool closing = (f->flags & FRAME_CLOSE) != 0;
    frame_unref(f);
    return closing;
}

/* After data left (written or accepted by the kernel): what draining allows again. */
static void after_drain(conn_t *c) {
    if (c->read_paused && c->proto == CONN_HTTP && c->qbytes <= CONN_HTTP_QUEUE_PAUSE / 2)
        conn_pause_read(c, false);
    if (c->proto == CONN_WS && !c->closing) ws_on_drain(c);
}

static void on_write(uv_write_t *req, int status) {
    conn_t *c = req->data;
    bool close_now = false;
    for (uint32_t i = 0; i < c->inflight; i++) close_now |= pop_written(c);
    c->inflight = 0;
    c->head_off = 0;
    if (c->closing) return; /* on_close frees the rest */
    if (status < 0 || close_now) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    if (!c->closing) after_drain(c);
}

static uint32_t gather(conn_t *c, uv_buf_t *bufs) {
    uint32_t n = 0;
    while (n < c->qlen && n < CONN_WRITE_BATCH) {
        frame_t *f = c->q[(c->qhead + n) & (c->qcap - 1)];
        size_t off = n == 0 ? c->head_off : 0;
        bufs[n] = uv_buf_init(f->data + off, (unsigned)(f->len - off));
        n++;
        if (f->flags & FRAME_CLOSE) break; /* nothing after a closing frame */
    }
    return n;
}

/* Writes what is queued: first straight to the socket (uv_try_write: no request, no
 * callback, no poll re-arming — the common case when the peer keeps up), then hands
 * whatever the kernel did not take to one uv_write, which completes in on_write. */
void conn_flush(conn_t *c) {
    if (c->closing || c->inflight) return;
    if (c->qlen == 0) {
        if (c->flush_close) conn_close(c);
        return;
    }
    uv_buf_t bufs[CONN_WRITE_BATCH];
    uint32_t n = gather(c, bufs);
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w < 0 && w != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (w > 0) {
        size_t left = (size_t)w;
        bool close_now = false;
        while (left > 0) {
            frame_t *f = c->q[c->qhead];
            size_t rem = f->len - c->head_off;
            if (left < rem) {
                c->head_off += left;
                break;
            }
            left -= rem;
            c->head_off = 0;
            close_now |= pop_written(c);
        }
        if (close_now) {
            conn_close(c);
            return;
        }
        if (c->qlen == 0) {
            if (c->flush_close) {
                conn_close(c);
                return;
            }
            after_drain(c);
            return;
        }
        n = gather(c, bufs);
    }
    c->inflight = n;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (rc) {
        c->inflight = 0;
        conn_close(c);
    }
}

static void on_close(uv_handle_t *h) {
    conn_t *c = (conn_t *)h;
    if (c->admitted) {
        ipl_addr_t a;
        memcpy(a.b, c->addr, sizeof a.b);
        iplimits_release(&c->w->hub->iplim, &a);
    }
    /* protocol state first: it may still use the worker's lists, which the last
     * connection's removal frees when the worker is stopping */
    http_detach(c);
    ws_detach(c);
    worker__remove_conn(c->w, c);
    for (uint32_t i = 0; i < c->qlen; i++) frame_unref(c->q[(c->qhead + i) & (c->qcap - 1)]);
    free(c->q);
    free(c);
}

void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void conn_close_after_flush(conn_t *c) {
    if (c->closing) return;
    c->flush_close = true;
    conn_pause_read(c, true);
    if (!c->inflight && c->qlen == 0) conn_close(c);
}

void conn_pause_read(conn_t *c, bool pause) {
    if (c->closing || pause == c->read_paused) return;
    if (pause) {
        uv_read_stop((uv_stream_t *)&c->tcp);
    } else if (!c->flush_close) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
            conn_close(c);
            return;
        }
    } else {
        return;
    }
    c->read_paused = pause;
}

void conn_sweep(conn_t *c, uint64_t now_ms) {
    if (c->closing) return;
    if (c->proto == CONN_HTTP)
        http_sweep(c, now_ms);
    else
        ws_sweep(c, now_ms);
}
