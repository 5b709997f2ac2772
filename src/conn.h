/* conn — one TCP connection, owned by exactly one worker (loop thread).
 *
 * A connection starts as HTTP/1.1 and may become a WebSocket after the upgrade. Bytes
 * read are handed to the protocol in place (the worker's read buffer is shared by all of
 * its connections, so an idle connection holds no read buffer). Bytes written go through
 * the outbound queue: a ring of shared frames (frame.h), written with one writev-style
 * uv_write at a time — at most one write in flight per connection, and everything queued
 * meanwhile goes out together in the next one.
 *
 * TLS (--tls-cert): the connection owns a tls_conn_t (tls.h) that sits between the socket
 * and the protocol. Ciphertext read is fed to it and the plaintext it yields is handed to
 * HTTP/WebSocket exactly as a plain read would be. The outbound queue still holds the
 * shared plaintext frames (one encoding for every subscriber, counted in qbytes as
 * before); each write encrypts the frames at the head into the connection's own records
 * (through the worker's scratch buffers), and those frames count as in flight until the
 * kernel took their ciphertext, so dropping unsent frames and backpressure work as in
 * plain mode. Only ciphertext the kernel did not take at once is kept per connection.
 *
 * Lifetime: created by conn_accept(), freed in the libuv close callback after
 * conn_close(). Every function here runs on the owning worker's thread. */
#ifndef MC_CONN_H
#define MC_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "frame.h"

struct worker;
struct http_state;
struct ws_state;
struct tls_conn;

typedef enum { CONN_HTTP = 0, CONN_WS } conn_proto_t;

typedef struct conn {
    uv_tcp_t tcp; /* first member: the handle's address is the connection's */
    uv_write_t wreq;
    struct worker *w; /* owner; borrowed */
    struct conn *prev, *next;
    uint64_t id;
    conn_proto_t proto;
    struct http_state *http; /* while proto == CONN_HTTP; owned */
    struct ws_state *ws;     /* once upgraded; owned */
    struct ws_session *sess; /* ws_msg.c's protocol state once upgraded; owned */
    struct src_session *src; /* source_session.c's state when a source; owned */
    uint32_t mgroup;         /* live-metrics group this connection is listed in (0: none) */
    uint32_t mslot;          /* its index in the worker's list for that group */
    int32_t evslot;          /* index in the worker's event subscribers, -1: not listed */
    /* the token a WebSocket upgrade presented, borrowed from w->auth (re-pointed or
     * revoked by access_recheck when the policy is reloaded); NULL in open mode */
    const struct auth_token *token;
    bool auth_revoked; /* a reload withdrew its authorisation: it is being closed */
    bool admitted;     /* counted by the hub's connection limits (released on close) */
    uint8_t addr[16];  /* the client's address (ipl_addr_t) */

    /* outbound queue: ring of frames, each holding one reference */
    frame_t **q;
    uint32_t qcap, qhead, qlen;
    uint32_t inflight; /* frames at the head handed to the write in flight */
    size_t head_off;   /* bytes of the head frame the kernel already took */
    size_t qbytes;     /* bytes queued, in flight included */

    /* TLS (NULL on a plain listener); owned */
    struct tls_conn *tls;
    buf_t tls_out;       /* ciphertext handed to the write in flight (tls_busy) */
    bool tls_busy;       /* a uv_write of tls_out is in flight */
    bool tls_sniffed;    /* the first bytes were checked for plain HTTP */
    bool tls_drain;      /* reading resumed: plaintext may wait inside the TLS engine */
    bool tls_counted;    /* the handshake's outcome was counted */
    uint64_t accepted_ms; /* loop time of accept (the TLS handshake's deadline) */

    uint64_t last_rx_ms; /* loop time of the last byte received */
    uint64_t bytes_in, bytes_out;
    bool closing;      /* uv_close called */
    bool flush_close;  /* close as soon as the queue is empty */
    bool read_paused;  /* reading stopped by backpressure */
    bool flush_pending; /* listed in the worker's end-of-pass flush */
    char peer[64];     /* "ip:port" */
} conn_t;

/* Accepts one pending connection on server (a listener of w). 0 or a negative UV error. */
int conn_accept(struct worker *w, uv_stream_t *server);
/* Takes one pending connection off server (a listener of w) without serving it: *fd
 * gets a descriptor of its socket that the caller owns (for conn_adopt on another
 * worker). 0 or a negative UV error (UV_EAGAIN: another worker won the race). */
int conn_take_pending(struct worker *w, uv_stream_t *server, int *fd);
/* Serves the connected socket fd on w (w's thread), as conn_accept would have. Takes fd:
 * it is closed on failure. 0 or a negative UV error. */
int conn_adopt(struct worker *w, int fd);

/* Queues f for sending. Takes over one reference to f (the caller frame_ref()s first if
 * it keeps using it). -ENOMEM or -EPIPE (closing) drop the reference. */
int conn_send(conn_t *c, frame_t *f);
/* Copies p[0..n) into a new frame and queues it. */
int conn_send_copy(conn_t *c, const void *p, size_t n, uint32_t flags);

/* Starts a write of everything queued unless one is already in flight. */
void conn_flush(conn_t *c);

/* Removes queued frames that are not yet being written and carry any of `flags`;
 * stops after `max` of them (0: no limit). Returns how many went; *bytes gets their size. */
uint32_t conn_drop_unsent(conn_t *c, uint32_t flags, uint32_t max, size_t *bytes);
/* Frames queued but not yet handed to a write. */
static inline uint32_t conn_unsent(const conn_t *c) {
    return c->qlen - (c->inflight ? c->inflight : (c->head_off ? 1 : 0));
}

/* Closes now: queued data is discarded. Idempotent. */
void conn_close(conn_t *c);
/* Stops reading, writes what is queued, then closes. */
void conn_close_after_flush(conn_t *c);

/* Pauses or resumes reading (HTTP pipelining backpressure). */
void conn_pause_read(conn_t *c, bool pause);

/* Worker's end-of-pass: TLS plaintext left waiting while reading was paused, then the
 * queue's write. */
void conn_pass_end(conn_t *c);

/* Worker's 1 s sweep: timeouts and keepalive for this connection. */
void conn_sweep(conn_t *c, uint64_t now_ms);

#endif
