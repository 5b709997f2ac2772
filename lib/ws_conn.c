#include "ws_conn.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "http_resp.h"
#include "net.h"
#include "sbuf.h"
#include "ws_proto.h"

/* Far above any metrics:update the hub sends for a large registry; a bound so a broken
 * peer cannot make us buffer without end. */
#define MAX_RECV_MSG (64u * 1024 * 1024)

struct mcl_ws {
    int fd;
    wslay_event_context_ptr ctx;
    mcl_sbuf_t pre;  /* bytes that came after the handshake head */
    size_t pre_off;
    mcl_sbuf_t out;  /* output not yet written */
    uint64_t written, appended; /* byte positions of the output stream */
    uint64_t *ends;  /* end positions of counted frames not yet written (a ring) */
    size_t ends_head, ends_n, ends_cap;
    mcl_ws_text_fn on_text;
    void *ud;
    int eof;
    int read_failed; /* a recv() error other than EAGAIN */
    int closing;     /* we queued a close */
    uint16_t close_code;
    char close_reason[128];
    int close_received;
    int64_t last_rx;
};

/* ---- wslay callbacks ------------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud) {
    (void)flags;
    mcl_ws_t *c = ud;
    if (c->pre_off < c->pre.len) {
        size_t n = c->pre.len - c->pre_off;
        if (n > len) n = len;
        memcpy(buf, c->pre.data + c->pre_off, n);
        c->pre_off += n;
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            c->last_rx = metricast__now_ms();
            return n;
        }
        if (n == 0) {
            c->eof = 1;
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        } else {
            c->read_failed = -errno;
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
        return -1;
    }
}

/* wslay's own frames (pong, close) join our output in order; nothing is refused, so
 * wslay never holds half a frame that our frames could split. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud) {
    (void)flags;
    mcl_ws_t *c = ud;
    metricast__sb_add(&c->out, data, len);
    if (metricast__sb_error(&c->out)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    c->appended += len;
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
    (void)ctx;
    (void)ud;
    metricast__random(buf, len);
    return 0;
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                      void *ud) {
    (void)ctx;
    mcl_ws_t *c = ud;
    if (a->opcode == WSLAY_TEXT_FRAME) {
        if (!c->on_text) return;
        /* NUL-terminated copy: wslay's buffer has no room for one */
        char small[2048];
        char *t = a->msg_length < sizeof small ? small : malloc(a->msg_length + 1);
        if (!t) return;
        if (a->msg_length) memcpy(t, a->msg, a->msg_length);
        t[a->msg_length] = '\0';
        c->on_text(c->ud, t, a->msg_length);
        if (t != small) free(t);
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        c->close_received = 1;
        c->close_code = a->status_code;
        size_t rl = a->msg_length >= 2 ? a->msg_length - 2 : 0;
        if (rl >= sizeof c->close_reason) rl = sizeof c->close_reason - 1;
        if (rl) memcpy(c->close_reason, a->msg + 2, rl);
        c->close_reason[rl] = '\0';
    }
    /* binary frames and pongs: nothing the hub sends us that we use */
}

/* ---- handshake ------------------------------------------------------------------------- */

static int handshake(mcl_ws_t *c, const mcl_url_t *u, const char *target, const char *token,
                     int64_t deadline_ms, int abort_fd, char *err, size_t errlen) {
    uint8_t nonce[16];
    metricast__random(nonce, sizeof nonce);
    char key[MCL_WS_KEY_LEN + 1];
    metricast__ws_key(nonce, key);
    char hostport[300];
    metricast__url_hostport(u, hostport, sizeof hostport);
    mcl_sbuf_t req = MCL_SBUF_INIT;
    metricast__ws_request(&req, hostport, target, key, token);
    int rc = metricast__sb_error(&req);
    if (rc == 0) rc = metricast__send_all(c->fd, req.data, req.len, deadline_ms, abort_fd);
    metricast__sb_free(&req);
    if (rc < 0) {
        snprintf(err, errlen, "sending the WebSocket upgrade: %s", strerror(-rc));
        return rc;
    }
    mcl_sbuf_t in = MCL_SBUF_INIT;
    mcl_http_head_t h;
    for (;;) {
        int w = metricast__wait_readable(c->fd, deadline_ms, abort_fd);
        if (w == 0) {
            rc = -ETIMEDOUT;
            snprintf(err, errlen, "no answer to the WebSocket upgrade in time");
            goto out;
        }
        if (w < 0) {
            rc = w;
            snprintf(err, errlen, "waiting for the upgrade answer: %s", strerror(-rc));
            goto out;
        }
        if ((rc = metricast__sb_reserve(&in, 4096)) < 0) goto out;
        ssize_t n = recv(c->fd, in.data + in.len, 4096, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
            rc = n == 0 ? -ECONNRESET : -errno;
            snprintf(err, errlen, "the hub closed the connection during the WebSocket upgrade");
            goto out;
        }
        in.len += (size_t)n;
        in.data[in.len] = '\0';
        int p = metricast__http_parse_head(in.data, in.len, &h);
        if (p < 0) {
            rc = p;
            snprintf(err, errlen, "the answer to the WebSocket upgrade is not HTTP");
            goto out;
        }
        if (p == 1) break;
    }
    rc = metricast__ws_check_response(&h, key, err, errlen);
    if (rc < 0) {
        /* say what the hub said, when it said it in JSON {"error","detail"} */
        size_t have = in.len - h.head_len;
        if (have > 0 && have < 400) {
            size_t l = strlen(err);
            snprintf(err + l, errlen - l, ": %.*s", (int)have, in.data + h.head_len);
            for (char *q = err + l; *q; q++)
                if (*q == '\r' || *q == '\n') *q = ' ';
        }
        goto out;
    }
    /* frames that came in the same read as the head */
    metricast__sb_add(&c->pre, in.data + h.head_len, in.len - h.head_len);
    rc = metricast__sb_error(&c->pre);
out:
    metricast__sb_free(&in);
    return rc;
}

int metricast__ws_connect(mcl_ws_t **out, const mcl_url_t *u, const char *target,
                          const char *token, int64_t deadline_ms, int abort_fd, char *err,
                          size_t errlen) {
    char dummy[1];
    if (!err) err = dummy, errlen = sizeof dummy;
    *out = NULL;
    mcl_ws_t *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->fd = metricast__tcp_connect(u->host, u->port, deadline_ms, abort_fd, err, errlen);
    if (c->fd < 0) {
        int rc = c->fd;
        free(c);
        return rc;
    }
    int rc = handshake(c, u, target, token, deadline_ms, abort_fd, err, errlen);
    if (rc < 0) {
        close(c->fd);
        metricast__sb_free(&c->pre);
        free(c);
        return rc;
    }
    struct wslay_event_callbacks cbs = {recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg_cb};
    if (wslay_event_context_client_init(&c->ctx, &cbs, c) != 0) {
        close(c->fd);
        metricast__sb_free(&c->pre);
        free(c);
        return -ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, MAX_RECV_MSG);
    c->last_rx = metricast__now_ms();
    *out = c;
    return 0;
}

void metricast__ws_on_text(mcl_ws_t *c, mcl_ws_text_fn fn, void *ud) {
    c->on_text = fn;
    c->ud = ud;
}

int metricast__ws_fd(const mcl_ws_t *c) { return c->fd; }

int metricast__ws_text(mcl_ws_t *c, const char *data, size_t len, int counted) {
    if (c->closing || c->close_received || wslay_event_get_close_sent(c->ctx)) return -EPIPE;
    if (metricast__sb_reserve(&c->out, MCL_WS_MAX_HEADER + len) < 0) return -ENOMEM;
    if (counted && c->ends_n == c->ends_cap) {
        size_t ncap = c->ends_cap ? c->ends_cap * 2 : 64;
        uint64_t *ne = malloc(ncap * sizeof *ne);
        if (!ne) return -ENOMEM;
        for (size_t i = 0; i < c->ends_n; i++) ne[i] = c->ends[(c->ends_head + i) % c->ends_cap];
        free(c->ends);
        c->ends = ne;
        c->ends_cap = ncap;
        c->ends_head = 0;
    }
    uint8_t mask[4];
    metricast__random(mask, sizeof mask);
    size_t n = metricast__ws_frame(MCL_WS_OP_TEXT, mask, data, len,
                                   (uint8_t *)c->out.data + c->out.len);
    c->out.len += n;
    c->out.data[c->out.len] = '\0';
    c->appended += n;
    if (counted) c->ends[(c->ends_head + c->ends_n++) % c->ends_cap] = c->appended;
    return 0;
}

int metricast__ws_close_frame(mcl_ws_t *c, uint16_t code, const char *reason) {
    if (c->closing || wslay_event_get_close_sent(c->ctx)) return -EPIPE;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) rl = 123;
    int rc = wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, rl);
    if (rc != 0) return -EPIPE;
    c->closing = 1;
    return 0;
}

int metricast__ws_read(mcl_ws_t *c) {
    if (c->eof || c->close_received) return -ECONNRESET;
    int rc = wslay_event_recv(c->ctx);
    if (c->close_received || c->eof) return -ECONNRESET;
    if (c->read_failed) return c->read_failed;
    if (rc == WSLAY_ERR_NOMEM) return -ENOMEM;
    if (rc != 0) return -EPROTO;
    if (!wslay_event_want_read(c->ctx)) return -EPROTO; /* wslay refused a frame, closing */
    return 0;
}

int metricast__ws_write(mcl_ws_t *c) {
    if (wslay_event_want_write(c->ctx)) {
        int rc = wslay_event_send(c->ctx);
        if (rc == WSLAY_ERR_NOMEM || metricast__sb_error(&c->out)) return -ENOMEM;
    }
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        metricast__sb_consume(&c->out, (size_t)n);
        c->written += (uint64_t)n;
        while (c->ends_n && c->ends[c->ends_head] <= c->written) {
            c->ends_head = (c->ends_head + 1) % c->ends_cap;
            c->ends_n--;
        }
    }
    return 0;
}

int metricast__ws_buffered(const mcl_ws_t *c) { return c->pre_off < c->pre.len; }

size_t metricast__ws_unwritten(const mcl_ws_t *c) {
    return c->out.len + (wslay_event_want_write(c->ctx) ? 1 : 0);
}

size_t metricast__ws_unsent_counted(const mcl_ws_t *c) { return c->ends_n; }

int metricast__ws_close_received(const mcl_ws_t *c) { return c->close_received; }

int metricast__ws_close_sent(const mcl_ws_t *c) {
    return wslay_event_get_close_sent(c->ctx) && c->out.len == 0;
}

uint16_t metricast__ws_close_code(const mcl_ws_t *c, const char **reason) {
    if (reason) *reason = c->close_reason;
    return c->close_received ? c->close_code : 0;
}

int64_t metricast__ws_last_rx(const mcl_ws_t *c) { return c->last_rx; }

void metricast__ws_free(mcl_ws_t *c) {
    if (!c) return;
    if (c->ctx) wslay_event_context_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    metricast__sb_free(&c->pre);
    metricast__sb_free(&c->out);
    free(c->ends);
    free(c);
}
