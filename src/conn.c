#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "hub.h"
#include "limit.h"
#include "log.h"
#include "tls.h"
#include "worker.h"
#include "ws.h"

/* Most frames handed to one uv_write; libuv copies the buffer array, so this only bounds
 * the stack array. 64 × ~100-byte frames already fill a typical socket buffer's worth. */
#define CONN_WRITE_BATCH 64
/* HTTP: stop reading a pipelining client whose answers pile up beyond this. */
#define CONN_HTTP_QUEUE_PAUSE (1u << 20)
/* TLS: plaintext encrypted per write at most (then the frames wait for the next one):
 * bounds the ciphertext a connection the kernel does not drain keeps for itself. A
 * frame larger than this is still encrypted whole. */
#define CONN_TLS_WRITE_MAX (64u * 1024)
/* TLS: frames are gathered into records up to this size (TLS's largest record): one
 * record per ~100-byte frame would add ~22 bytes and one cipher call to each. */
#define CONN_TLS_RECORD 16384u

static void tls_on_read(conn_t *c, const char *p, size_t n);
static void tls_flush(conn_t *c);
static void tls_flush_run(conn_t *c, bool notify);
static void tls_fail(conn_t *c, int reason);

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
        if (c->tls && !tls_conn_handshake_done(c->tls)) tls_fail(c, TLS_FAIL_CLOSED);
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    c->last_rx_ms = uv_now(&c->w->loop);
    c->bytes_in += (uint64_t)nread;
    if (c->tls)
        tls_on_read(c, b->base, (size_t)nread);
    else if (c->proto == CONN_HTTP)
        http_on_data(c, b->base, (size_t)nread);
    else
        ws_on_data(c, (const uint8_t *)b->base, (size_t)nread);
}

static void free_unaccepted(uv_handle_t *h) { free(h); }

/* A new connection of w, its handle initialised (not yet holding a socket); NULL with
 * *rc set on failure. */
static conn_t *conn_new(worker_t *w, int *rc) {
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        *rc = UV_ENOMEM;
        return NULL;
    }
    *rc = uv_tcp_init(&w->loop, &c->tcp);
    if (*rc) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->id = ++w->next_conn_id;
    c->evslot = -1;
    return c;
}

static int conn_setup(worker_t *w, conn_t *c);

int conn_accept(worker_t *w, uv_stream_t *server) {
    int rc;
    conn_t *c = conn_new(w, &rc);
    if (!c) return rc;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc) {
        /* another worker won the race for this connection: normal with a shared socket */
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return rc;
    }
    return conn_setup(w, c);
}

int conn_adopt(worker_t *w, int fd) {
    int rc;
    conn_t *c = conn_new(w, &rc);
    if (!c) {
        close(fd);
        return rc;
    }
    rc = uv_tcp_open(&c->tcp, fd);
    if (rc) {
        close(fd);
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return rc;
    }
    return conn_setup(w, c);
}

int conn_take_pending(worker_t *w, uv_stream_t *server, int *fd) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return UV_ENOMEM;
    int rc = uv_tcp_init(&w->loop, t);
    if (rc) {
        free(t);
        return rc;
    }
    uv_os_fd_t ofd = -1;
    rc = uv_accept(server, (uv_stream_t *)t);
    if (!rc) rc = uv_fileno((uv_handle_t *)t, &ofd);
    if (!rc) {
        /* the copy keeps the socket open once the handle closes the original; O_NONBLOCK
         * is the open file's and comes along, close-on-exec is the descriptor's */
        *fd = fcntl(ofd, F_DUPFD_CLOEXEC, 0);
        if (*fd < 0) rc = uv_translate_sys_error(errno);
    }
    uv_close((uv_handle_t *)t, free_unaccepted);
    return rc;
}

/* The part of accepting after the socket is in c->tcp: peer address, TLS, HTTP state,
 * limits, reading. */
static int conn_setup(worker_t *w, conn_t *c) {
    int rc;
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
    c->last_rx_ms = c->accepted_ms = uv_now(&w->loop);
    if (w->hub->tls) {
        c->tls = tls_conn_new(w->hub->tls);
        if (!c->tls) {
            c->closing = true;
            uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
            return UV_ENOMEM;
        }
    }
    rc = http_attach(c);
    worker__add_conn(w, c);
    atomic_fetch_add(&w->stats.accepted_total, 1);
    if (rc) {
        conn_close(c);
        return 0;
    }
    int hit = iplimits_admit(&w->hub->iplim, &addr, uv_now(&w->loop));
    if (hit >= 0 && c->tls) {
        /* the answer would need a handshake first: an over-limit client is not worth one */
        worker_limit_hit(w, hit, c->peer);
        conn_close(c);
        return 0;
    }
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
    if (c->tls) {
        tls_flush(c);
        return;
    }
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
    worker_flush_forget(c->w, c);
    worker__remove_conn(c->w, c);
    for (uint32_t i = 0; i < c->qlen; i++) frame_unref(c->q[(c->qhead + i) & (c->qcap - 1)]);
    free(c->q);
    tls_conn_free(c->tls);
    buf_free(&c->tls_out);
    free(c);
}

/* TLS: a last non-blocking write of close_notify (and of an alert after an error), so
 * the peer can tell our close from a truncation. Nothing is written while a write is in
 * flight: libuv's uv_try_write refuses to jump its queue, and a record cut in the middle
 * would be garbage anyway. */
static void tls_goodbye(conn_t *c) {
    if (c->tls_busy) return;
    if (tls_conn_handshake_done(c->tls)) tls_conn_shutdown(c->tls);
    if (!tls_conn_has_output(c->tls)) return;
    buf_t *out = &c->w->tls_cipher;
    buf_reset(out);
    if (tls_conn_take_output(c->tls, out) < 0 || out->len == 0) return;
    uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

void conn_close(conn_t *c) {
    if (c->closing) return;
    if (c->tls) tls_goodbye(c);
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void conn_close_after_flush(conn_t *c) {
    if (c->closing) return;
    c->flush_close = true;
    conn_pause_read(c, true);
    if (!c->inflight && !c->tls_busy && c->qlen == 0) conn_close(c);
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
        /* what the TLS engine decrypted or holds beyond the point where reading paused
         * will not be announced by the socket: take it up at the end of this pass (not
         * now: the caller may be about to replay its own stash, which comes first) */
        if (c->tls) {
            c->tls_drain = true;
            worker_flush_later(c->w, c);
        }
    } else {
        return;
    }
    c->read_paused = pause;
}

void conn_sweep(conn_t *c, uint64_t now_ms) {
    if (c->closing) return;
    if (c->tls && !tls_conn_handshake_done(c->tls)) {
        /* the handshake is a part of the request's headers: the same deadline (slowloris
         * over TLS), counted from accept however the bytes trickle in */
        if (now_ms - c->accepted_ms >= (uint64_t)(c->w->cfg->http_header_timeout * 1000)) {
            worker_limit_hit(c->w, LIMIT_TLS_HANDSHAKE_TIMEOUT, c->peer);
            tls_fail(c, TLS_FAIL_TIMEOUT);
            conn_close(c);
        }
        return;
    }
    if (c->proto == CONN_HTTP)
        http_sweep(c, now_ms);
    else
        ws_sweep(c, now_ms);
}

/* ---- TLS ------------------------------------------------------------------------------ */

static void tls_fail(conn_t *c, int reason) {
    if (c->tls_counted) return;
    c->tls_counted = true;
    atomic_fetch_add_explicit(&c->w->stats.tls_failures[reason], 1, memory_order_relaxed);
    log_debug("tls handshake failed", "conn=%llu peer=%s reason=%s error=\"%s\"",
              (unsigned long long)c->id, c->peer, tls_fail_name(reason),
              tls_conn_error(c->tls));
}

/* Whether p starts like an HTTP/1.x request line ("GET /", "POST /", ...): a client that
 * forgot https://. A TLS connection starts with a handshake record (0x16). */
static bool looks_like_http(const char *p, size_t n) {
    size_t i = 0;
    while (i < n && i < 8 && p[i] >= 'A' && p[i] <= 'Z') i++;
    return i >= 3 && (i == n || p[i] == ' ');
}

/* A plain HTTP request on the TLS port: one plain answer that says so (as nginx does),
 * then closed. Written straight to the socket: the queue would encrypt it. */
static void tls_refuse_plaintext(conn_t *c) {
    static const char body[] = "{\"error\":\"tls_required\",\"detail\":\"this port speaks "
                               "TLS: use https:// (wss:// for WebSocket)\"}\n";
    char msg[400];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    uv_buf_t b = uv_buf_init(msg, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    tls_fail(c, TLS_FAIL_PLAINTEXT_HTTP);
    conn_close(c);
}

static void tls_count_handshake(conn_t *c) {
    c->tls_counted = true;
    const char *v = tls_conn_version(c->tls);
    int i = strcmp(v, "TLSv1.3") == 0 ? 1 : 0;
    atomic_fetch_add_explicit(&c->w->stats.tls_handshakes[i], 1, memory_order_relaxed);
    log_debug("tls handshake", "conn=%llu peer=%s version=%s", (unsigned long long)c->id,
              c->peer, v);
}

/* Decrypts what the engine holds and hands the plaintext to the protocol, as long as the
 * protocol reads (an HTTP request deferred to the hub pauses reading: the rest waits in
 * the engine until conn_pause_read resumes). Then writes what the engine has to say
 * (handshake messages, session tickets, alerts) with the queue. */
static void tls_pump(conn_t *c) {
    c->tls_drain = false;
    bool done = tls_conn_handshake_done(c->tls);
    char *buf = c->w->rbuf; /* its ciphertext was copied into the engine */
    while (!c->closing && !c->read_paused) {
        ssize_t n = tls_conn_read(c->tls, buf, WORKER_RBUF_SIZE);
        if (!done && tls_conn_handshake_done(c->tls)) {
            done = true;
            tls_count_handshake(c);
        }
        if (n > 0) {
            if (c->proto == CONN_HTTP)
                http_on_data(c, buf, (size_t)n);
            else
                ws_on_data(c, (const uint8_t *)buf, (size_t)n);
            continue;
        }
        if (n == 0) break;
        if (n == -EPIPE) { /* close_notify: the client is done; answer it and close */
            conn_close_after_flush(c);
            break;
        }
        if (done) {
            atomic_fetch_add_explicit(&c->w->stats.tls_errors_total, 1, memory_order_relaxed);
            log_debug("tls error", "conn=%llu peer=%s error=\"%s\"", (unsigned long long)c->id,
                      c->peer, tls_conn_error(c->tls));
        } else {
            int kind = tls_conn_error_kind(c->tls);
            tls_fail(c, kind == TLS_ERRK_VERSION      ? TLS_FAIL_VERSION
                        : kind == TLS_ERRK_PLAIN_HTTP ? TLS_FAIL_PLAINTEXT_HTTP
                                                      : TLS_FAIL_BAD_HANDSHAKE);
        }
        conn_close(c); /* writes the alert OpenSSL queued, if it can */
        return;
    }
    if (!c->closing && tls_conn_has_output(c->tls)) conn_flush(c);
}

static void tls_on_read(conn_t *c, const char *p, size_t n) {
    if (!c->tls_sniffed) {
        c->tls_sniffed = true;
        if ((unsigned char)p[0] != 0x16 && looks_like_http(p, n)) {
            tls_refuse_plaintext(c);
            return;
        }
    }
    if (tls_conn_feed(c->tls, p, n) < 0) {
        conn_close(c);
        return;
    }
    tls_pump(c);
}

void conn_pass_end(conn_t *c) {
    if (c->tls && c->tls_drain && !c->closing && !c->read_paused) tls_pump(c);
    conn_flush(c);
}

/* Encrypts frames from the head of the queue into w->tls_cipher, after whatever the
 * engine already had to send, and marks them in flight. Returns how many, or -1 (the
 * connection is closed). Several small frames go into one record. */
static int tls_encrypt_head(conn_t *c) {
    buf_t *pt = &c->w->tls_plain, *out = &c->w->tls_cipher;
    buf_reset(pt);
    buf_reset(out);
    uint32_t n = 0;
    size_t total = 0;
    /* frames wait for the handshake (nothing is queued before it, by construction) */
    uint32_t avail = tls_conn_handshake_done(c->tls) ? c->qlen : 0;
    while (n < avail && n < CONN_WRITE_BATCH && total < CONN_TLS_WRITE_MAX) {
        frame_t *f = c->q[(c->qhead + n) & (c->qcap - 1)];
        int rc = 0;
        if (pt->len && pt->len + f->len > CONN_TLS_RECORD) {
            rc = tls_conn_write(c->tls, pt->data, pt->len);
            buf_reset(pt);
        }
        if (rc == 0 && f->len >= CONN_TLS_RECORD)
            rc = tls_conn_write(c->tls, f->data, f->len); /* no copy for a large one */
        else if (rc == 0 && buf_append(pt, f->data, f->len) < 0)
            rc = -ENOMEM;
        if (rc < 0) {
            conn_close(c);
            return -1;
        }
        n++;
        total += f->len;
        if (f->flags & FRAME_CLOSE) break; /* nothing after a closing frame */
    }
    if (pt->len && tls_conn_write(c->tls, pt->data, pt->len) < 0) {
        conn_close(c);
        return -1;
    }
    if (pt->cap > 4 * CONN_TLS_RECORD) buf_free(pt); /* a huge frame passed: give it back */
    if (tls_conn_take_output(c->tls, out) < 0) {
        conn_close(c);
        return -1;
    }
    c->inflight = n;
    return (int)n;
}

/* The frames whose ciphertext the kernel has taken completely leave the queue. Returns
 * whether the connection was closed (a closing frame was among them). */
static bool tls_pop_inflight(conn_t *c) {
    bool close_now = false;
    for (uint32_t i = 0; i < c->inflight; i++) close_now |= pop_written(c);
    c->inflight = 0;
    if (close_now) conn_close(c);
    return close_now;
}

static void tls_on_write(uv_write_t *req, int status) {
    conn_t *c = req->data;
    c->tls_busy = false;
    buf_free(&c->tls_out); /* a stalled connection's ciphertext is not kept once sent */
    bool close_now = false;
    for (uint32_t i = 0; i < c->inflight; i++) close_now |= pop_written(c);
    c->inflight = 0;
    if (c->closing) return;
    if (status < 0 || close_now) {
        conn_close(c);
        return;
    }
    tls_flush_run(c, false);
    if (!c->closing) after_drain(c);
}

/* TLS counterpart of the plain write path: encrypt the head of the queue, try the socket
 * straight away, and only when the kernel leaves some ciphertext copy that remainder
 * into the connection's own buffer for one uv_write. */
static void tls_flush(conn_t *c) { tls_flush_run(c, true); }

/* notify: tell the protocol when everything went (as the plain path does after a write
 * that emptied the queue); tls_on_write does that itself. */
static void tls_flush_run(conn_t *c, bool notify) {
    if (c->closing || c->tls_busy) return;
    bool drained = false;
    for (;;) {
        bool frames = c->qlen > 0 && tls_conn_handshake_done(c->tls);
        if (!frames && !tls_conn_has_output(c->tls)) {
            if (c->flush_close) {
                conn_close(c);
                return;
            }
            if (drained && notify) after_drain(c);
            return;
        }
        if (tls_encrypt_head(c) < 0) return;
        buf_t *out = &c->w->tls_cipher;
        size_t off = 0;
        if (out->len) {
            uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
            int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (w < 0 && w != UV_EAGAIN) {
                conn_close(c);
                return;
            }
            if (w > 0) off = (size_t)w;
        }
        if (off == out->len) {
            if (tls_pop_inflight(c)) return;
            drained = true;
            continue;
        }
        if (buf_append(&c->tls_out, out->data + off, out->len - off) < 0) {
            conn_close(c);
            return;
        }
        if (out->cap > 4 * CONN_TLS_WRITE_MAX) buf_free(out);
        uv_buf_t b = uv_buf_init(c->tls_out.data, (unsigned)c->tls_out.len);
        c->wreq.data = c;
        c->tls_busy = true;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, tls_on_write)) {
            c->tls_busy = false;
            conn_close(c);
        }
        return;
    }
}
