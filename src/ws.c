#include "ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "access.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "http.h"
#include "jsonw.h"
#include "limit.h"
#include "log.h"
#include "version.h"
#include "worker.h"
#include "ws_msg.h"
#include "source_session.h"

/* A peer that does not answer our close frame within this is cut off. */
#define WS_CLOSE_WAIT_MS 2000

typedef struct ws_state {
    wslay_event_context_ptr ctx;
    const uint8_t *in; /* bytes of the current read, consumed by recv_cb */
    size_t in_len;
    uint64_t ping_sent_ms; /* 0: no ping outstanding since the last byte received */
    uint64_t close_started_ms;
    uint64_t abuse_window_ms;
    uint32_t abuse_count;
    bool in_recv;      /* inside wslay_event_recv: defer wslay_event_send */
    bool close_queued; /* our close frame is queued: send no more data */
    ws_flow_t flow;
    const char *close_reason; /* why we closed, for source lifecycle events */
    bool close_counted;       /* a close wslay sent on its own (1009) was counted */
    uint64_t overloaded_since_ms;
    uint64_t dropped;
    char session_id[32];
} ws_state_t;

/* Hysteresis of the flow states (the protocol's numbers). */
#define FLOW_BUFFERING 0.85
#define FLOW_OVERLOADED 0.95
#define FLOW_RECOVERED 0.70

const char *ws_flow_name(ws_flow_t s) {
    return s == WS_OVERLOADED ? "overloaded" : s == WS_BUFFERING ? "buffering" : "streaming";
}

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_accept_key(const char *key, char out[WS_ACCEPT_LEN]) {
    size_t klen = key ? strlen(key) : 0;
    if (klen != 24) return -EINVAL;
    unsigned char raw[24];
    /* EVP_DecodeBlock counts the '=' padding as data: 24 chars → 18 bytes, 2 of padding */
    int n = EVP_DecodeBlock(raw, (const unsigned char *)key, 24);
    if (n != 18 || key[22] != '=' || key[23] != '=') return -EINVAL;
    unsigned char cat[24 + sizeof WS_GUID];
    memcpy(cat, key, 24);
    memcpy(cat + 24, WS_GUID, sizeof WS_GUID - 1);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned shalen = 0;
    if (!EVP_Digest(cat, 24 + sizeof WS_GUID - 1, sha, &shalen, EVP_sha1(), NULL) || shalen != 20)
        return -EINVAL;
    EVP_EncodeBlock((unsigned char *)out, sha, 20);
    return 0;
}

size_t ws_frame_header(uint8_t out[10], uint8_t opcode, size_t len) {
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

frame_t *ws_frame_text(const void *payload, size_t len, uint32_t flags) {
    uint8_t hdr[10];
    size_t hl = ws_frame_header(hdr, WSLAY_TEXT_FRAME, len);
    frame_t *f = frame_new(hl + len, flags);
    if (!f) return NULL;
    memcpy(f->data, hdr, hl);
    if (len) memcpy(f->data + hl, payload, len);
    return f;
}

double ws_fill_ratio(const conn_t *c) {
    const config_t *cfg = c->w->cfg;
    double m = (double)c->qlen / (double)cfg->ws_queue_messages;
    double b = (double)c->qbytes / (double)cfg->ws_queue_bytes;
    return m > b ? m : b;
}

ws_flow_t ws_flow(const conn_t *c) { return c->ws ? c->ws->flow : WS_STREAMING; }
uint64_t ws_dropped(const conn_t *c) { return c->ws ? c->ws->dropped : 0; }
const char *ws_session_id(const conn_t *c) { return c->ws ? c->ws->session_id : ""; }

static void send_status(conn_t *c, double fill) {
    ws_state_t *ws = c->ws;
    static const char *const msgs[] = {
        "queue drained: streaming normally",
        "outbound queue filling up: reading too slowly, updates may be conflated",
        "outbound queue nearly full: updates are being dropped; the connection closes if "
        "this lasts"};
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "status");
    jsonw_kv_str(&w, "state", ws_flow_name(ws->flow));
    jsonw_kv_num(&w, "fill_ratio", (double)(int)(fill * 1000 + 0.5) / 1000);
    jsonw_kv_uint(&w, "queue_depth", c->qlen);
    jsonw_kv_uint(&w, "dropped", ws->dropped);
    jsonw_kv_str(&w, "message", msgs[ws->flow]);
    jsonw_kv_str(&w, "session_id", ws->session_id);
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    if (b.data) ws_send_text(c, b.data, b.len);
    buf_free(&b);
}

/* Moves the flow state with the fill ratio; one status message per change.
 *
 * Pressure rises while frames are queued, but it only falls when the client takes data
 * (a write completed: drained). Conflation empties the queue of unsent updates without
 * the client reading a byte; judging recovery then would announce `streaming` to a
 * client that is not reading at all, and flap. */
static void update_flow(conn_t *c, bool drained) {
    ws_state_t *ws = c->ws;
    if (!ws || ws->close_queued) return;
    /* the common case, without the two divisions: streaming and under an eighth of both
     * limits (fill < 0.125 < FLOW_BUFFERING), nothing can change */
    const config_t *cfg = c->w->cfg;
    if (ws->flow == WS_STREAMING && (uint64_t)c->qlen * 8 < (uint64_t)cfg->ws_queue_messages &&
        (uint64_t)c->qbytes * 8 < (uint64_t)cfg->ws_queue_bytes)
        return;
    double fill = ws_fill_ratio(c);
    ws_flow_t next = ws->flow;
    switch (ws->flow) {
    case WS_STREAMING:
        if (fill > FLOW_OVERLOADED) next = WS_OVERLOADED;
        else if (fill > FLOW_BUFFERING) next = WS_BUFFERING;
        break;
    case WS_BUFFERING:
        if (fill > FLOW_OVERLOADED) next = WS_OVERLOADED;
        else if (drained && fill < FLOW_RECOVERED) next = WS_STREAMING;
        break;
    case WS_OVERLOADED:
        if (drained && fill < FLOW_RECOVERED) next = WS_STREAMING;
        else if (drained && fill <= FLOW_BUFFERING) next = WS_BUFFERING;
        break;
    }
    if (next == ws->flow) return;
    if (next == WS_OVERLOADED && ws->flow == WS_STREAMING) {
        /* filled past both marks at once: the client still hears both steps, in order */
        ws->flow = WS_BUFFERING;
        send_status(c, fill);
    }
    if (next == WS_OVERLOADED) ws->overloaded_since_ms = uv_now(&c->w->loop);
    log_debug("ws flow", "conn=%llu state=%s fill=%.2f dropped=%llu", (unsigned long long)c->id,
              ws_flow_name(next), fill, (unsigned long long)ws->dropped);
    ws->flow = next;
    send_status(c, fill);
}

static void count_drops(conn_t *c, uint64_t n) {
    c->ws->dropped += n;
    atomic_fetch_add_explicit(&c->w->stats.ws_dropped_total, n, memory_order_relaxed);
}

static bool fits(const conn_t *c, const frame_t *f) {
    const config_t *cfg = c->w->cfg;
    return c->qlen + 1 <= cfg->ws_queue_messages && c->qbytes + f->len <= cfg->ws_queue_bytes;
}

/* Makes room for f when the queue is full: conflates unsent updates (the subscriber is
 * then owed a full snapshot), then drops the oldest droppable frames. Whether f fits. */
static bool make_room(conn_t *c, const frame_t *f) {
    if (fits(c, f)) return true;
    uint32_t n = conn_drop_unsent(c, FRAME_CONFLATE, 0, NULL);
    if (n) {
        count_drops(c, n);
        ws_msg_metrics_gap(c);
    }
    while (!fits(c, f) && conn_drop_unsent(c, FRAME_DROPPABLE, 1, NULL) == 1) count_drops(c, 1);
    return fits(c, f);
}

/* Queues f for the end-of-pass write: one writev for many frames is the fan-out lever. */
static int queue_broadcast(conn_t *c, frame_t *f) {
    int rc = conn_send(c, f);
    if (rc == 0) {
        atomic_fetch_add_explicit(&c->w->stats.ws_sent_total, 1, memory_order_relaxed);
        worker_flush_later(c->w, c);
    }
    update_flow(c, false);
    return rc;
}

int ws_enqueue(conn_t *c, frame_t *f) {
    ws_state_t *ws = c->ws;
    if (!ws || ws->close_queued || c->closing) {
        frame_unref(f);
        return -EPIPE;
    }
    if (!make_room(c, f) && (f->flags & (FRAME_CONFLATE | FRAME_DROPPABLE))) {
        /* even after conflation this does not fit (a lone update larger than the limit,
         * or everything queued is already being written): drop the newcomer */
        if (f->flags & FRAME_CONFLATE) ws_msg_metrics_gap(c);
        count_drops(c, 1);
        frame_unref(f);
        update_flow(c, false);
        return -ENOBUFS;
    }
    return queue_broadcast(c, f);
}

int ws_enqueue_event(conn_t *c, frame_t *f) {
    ws_state_t *ws = c->ws;
    if (!ws || ws->close_queued || c->closing) {
        frame_unref(f);
        return -EPIPE;
    }
    if (!make_room(c, f)) { /* never dropped: the caller records a gap and replays */
        frame_unref(f);
        update_flow(c, false);
        return -ENOBUFS;
    }
    return queue_broadcast(c, f);
}

void ws_on_drain(conn_t *c) {
    if (c->ws && c->ws->flow != WS_STREAMING) update_flow(c, true);
    /* an empty queue (the usual state after a write) is below every mark */
    if (c->ws && ((c->qlen == 0 && c->qbytes == 0) || ws_fill_ratio(c) < FLOW_RECOVERED))
        ws_msg_drained(c);
}

int ws_send_frame(conn_t *c, frame_t *f) {
    if (!c->ws || c->ws->close_queued) {
        frame_unref(f);
        return -EPIPE;
    }
    int rc = conn_send(c, f);
    if (rc == 0) {
        atomic_fetch_add_explicit(&c->w->stats.ws_sent_total, 1, memory_order_relaxed);
        conn_flush(c);
    }
    return rc;
}

int ws_send_text(conn_t *c, const void *payload, size_t len) {
    if (!c->ws || c->ws->close_queued) return -EPIPE;
    frame_t *f = ws_frame_text(payload, len, 0);
    if (!f) return -ENOMEM;
    return ws_send_frame(c, f);
}

/* ---- wslay callbacks ----------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user) {
    (void)flags;
    ws_state_t *ws = ((conn_t *)user)->ws;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

/* wslay writes only control frames (pong, close, ping): small, copied. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user) {
    (void)flags;
    conn_t *c = user;
    if (conn_send_copy(c, data, len, 0) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user) {
    (void)ctx;
    conn_t *c = user;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        /* wslay passes NULL for an empty message; handlers copy and scan it (memcpy,
         * pointer arithmetic), which must not see a null pointer (found by fuzz_ws) */
        ws_msg_handle(c, arg->msg ? (const char *)arg->msg : "", arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        ws_msg_error(c, "unsupported_frame", "binary messages are not part of the protocol");
        break;
    case WSLAY_CONNECTION_CLOSE:
        log_debug("ws close received", "conn=%llu code=%u", (unsigned long long)c->id,
                  (unsigned)arg->status_code);
        break;
    default: /* ping (answered by wslay) and pong: liveness only, counted via last_rx */
        break;
    }
}

static void flush_wslay(conn_t *c) {
    ws_state_t *ws = c->ws;
    if (!ws || c->closing) return;
    if (wslay_event_send(ws->ctx) != 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx))
        conn_close_after_flush(c);
}

void ws_handshake(http_req_t *r) {
    conn_t *c = r->conn;
    const char *upgrade = http_header(r, "Upgrade");
    const char *connection = http_header(r, "Connection");
    if (!http_header_has_token(upgrade, "websocket") ||
        !http_header_has_token(connection, "upgrade")) {
        http_respond(r, 426, "application/json",
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                     "{\"error\":\"upgrade_required\",\"detail\":\"this endpoint speaks "
                     "WebSocket: send Upgrade: websocket\"}\n",
                     sizeof "{\"error\":\"upgrade_required\",\"detail\":\"this endpoint speaks "
                            "WebSocket: send Upgrade: websocket\"}\n" - 1);
        return;
    }
    const char *version = http_header(r, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        static const char body[] = "{\"error\":\"unsupported_version\",\"detail\":\"only "
                                   "WebSocket version 13 (RFC 6455) is supported\"}\n";
        http_respond(r, 426, "application/json", "Sec-WebSocket-Version: 13\r\n", body,
                     sizeof body - 1);
        return;
    }
    char accept[WS_ACCEPT_LEN];
    if (ws_accept_key(http_header(r, "Sec-WebSocket-Key"), accept) < 0) {
        http_respond_error(r, 400, "bad_handshake",
                           "Sec-WebSocket-Key must be 16 bytes in base64");
        return;
    }
    if (!access_ws_upgrade(r)) return; /* 403: ?source= or ?topics= outside the token */

    ws_state_t *ws = calloc(1, sizeof *ws);
    if (!ws) {
        http_respond_error(r, 503, "out_of_memory", "websocket state");
        return;
    }
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb, .send_callback = send_cb, .on_msg_recv_callback = on_msg};
    if (wslay_event_context_server_init(&ws->ctx, &cbs, c) != 0) {
        free(ws);
        http_respond_error(r, 503, "out_of_memory", "websocket state");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, c->w->cfg->ws_max_message_bytes);

    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nServer: metricast/" MC_VERSION
                     "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (conn_send_copy(c, resp, (size_t)n, 0) < 0) {
        wslay_event_context_free(ws->ctx);
        free(ws);
        conn_close(c);
        return;
    }
    snprintf(ws->session_id, sizeof ws->session_id, "ws_%d_%llu", c->w->id,
             (unsigned long long)c->id);
    c->ws = ws;
    c->proto = CONN_WS;
    c->token = r->token;
    http_mark_upgraded(r);
    atomic_fetch_add(&c->w->stats.ws_connections, 1);
    log_debug("ws open", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
    if (ws_msg_open(c, r->query) < 0) {
        ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    conn_flush(c);
}

void ws_on_data(conn_t *c, const uint8_t *data, size_t len) {
    ws_state_t *ws = c->ws;
    if (!ws || c->closing) return;
    ws->in = data;
    ws->in_len = len;
    ws->ping_sent_ms = 0;
    ws->in_recv = true;
    int rc = wslay_event_recv(ws->ctx);
    if (c->closing) return; /* a handler closed the connection */
    ws->in_recv = false;
    ws->in = NULL;
    ws->in_len = 0;
    if (rc != 0) {
        conn_close(c);
        return;
    }
    flush_wslay(c);
    /* wslay closes by itself with 1009 when a message exceeds the limit: count that once */
    if (c->ws && !ws->close_counted && wslay_event_get_close_sent(ws->ctx)) { /* freed on close */
        ws->close_counted = true;
        if (wslay_event_get_status_code_sent(ws->ctx) == WSLAY_CODE_MESSAGE_TOO_BIG)
            worker_limit_hit(c->w, LIMIT_WS_MESSAGE_BYTES, c->peer);
    }
}

void ws_close(conn_t *c, uint16_t code, const char *reason) {
    ws_state_t *ws = c->ws;
    if (!ws || ws->close_queued || c->closing) return;
    ws->close_queued = true;
    ws->close_started_ms = uv_now(&c->w->loop);
    if (code == WS_CLOSE_GOING_AWAY)
        ws->close_reason = reason && strstr(reason, "idle") ? "timeout" : "server_shutdown";
    else if (code == WS_CLOSE_POLICY && reason && strstr(reason, "too slow"))
        ws->close_reason = "overloaded";
    else if (code != WS_CLOSE_NORMAL)
        ws->close_reason = "protocol_error";
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123) rlen = 123; /* control frame payload: 125 bytes with the code */
    log_debug("ws close", "conn=%llu code=%u", (unsigned long long)c->id, (unsigned)code);
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen) != 0) {
        conn_close_after_flush(c);
        return;
    }
    if (!ws->in_recv) flush_wslay(c);
}

void ws_bad_message(conn_t *c) {
    ws_state_t *ws = c->ws;
    if (!ws) return;
    atomic_fetch_add(&c->w->stats.ws_bad_messages_total, 1);
    uint64_t now = uv_now(&c->w->loop);
    if (now - ws->abuse_window_ms > WS_ABUSE_WINDOW_MS) {
        ws->abuse_window_ms = now;
        ws->abuse_count = 0;
    }
    if (++ws->abuse_count >= WS_ABUSE_LIMIT) {
        log_info("ws client closed for abuse", "conn=%llu peer=%s bad_messages=%u",
                 (unsigned long long)c->id, c->peer, ws->abuse_count);
        worker_limit_hit(c->w, LIMIT_WS_BAD_MESSAGES, c->peer);
        ws_close(c, WS_CLOSE_POLICY, "too many bad messages");
    }
}

void ws_sweep(conn_t *c, uint64_t now_ms) {
    ws_state_t *ws = c->ws;
    if (!ws) return;
    const config_t *cfg = c->w->cfg;
    if (ws->close_queued) {
        if (now_ms - ws->close_started_ms >= WS_CLOSE_WAIT_MS) conn_close(c);
        return;
    }
    if (ws->flow == WS_OVERLOADED &&
        now_ms - ws->overloaded_since_ms >= (uint64_t)(cfg->ws_overload_timeout * 1000)) {
        log_info("ws subscriber closed: too slow", "conn=%llu peer=%s dropped=%llu",
                 (unsigned long long)c->id, c->peer, (unsigned long long)ws->dropped);
        /* what it has not read is stale: make room so the close frame can get through;
         * answers and status messages stay */
        count_drops(c, conn_drop_unsent(c, FRAME_CONFLATE | FRAME_DROPPABLE, 0, NULL));
        worker_limit_hit(c->w, LIMIT_WS_OVERLOAD, c->peer);
        ws_close(c, WS_CLOSE_POLICY, "too slow: outbound queue overloaded");
        return;
    }
    uint64_t quiet = now_ms - c->last_rx_ms;
    if (quiet >= (uint64_t)(cfg->ws_idle_timeout * 1000)) {
        worker_limit_hit(c->w, LIMIT_WS_IDLE_TIMEOUT, c->peer);
        ws_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
        return;
    }
    if (quiet >= (uint64_t)(cfg->ws_ping_interval * 1000) &&
        (!ws->ping_sent_ms || now_ms - ws->ping_sent_ms >= (uint64_t)(cfg->ws_ping_interval * 1000))) {
        struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"mc", 2};
        if (wslay_event_queue_msg(ws->ctx, &ping) == 0) {
            ws->ping_sent_ms = now_ms;
            flush_wslay(c);
        }
    }
}

void ws_detach(conn_t *c) {
    ws_state_t *ws = c->ws;
    if (!ws) return;
    if (srcs_is_source(c)) {
        const char *reason = ws->close_reason;
        uint16_t sent = wslay_event_get_close_sent(ws->ctx) ? wslay_event_get_status_code_sent(ws->ctx) : 0;
        if (!reason && (sent == WSLAY_CODE_PROTOCOL_ERROR || sent == WSLAY_CODE_MESSAGE_TOO_BIG ||
                        sent == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA))
            reason = "protocol_error";
        srcs_end(c, reason ? reason : "client_disconnect");
    }
    ws_msg_close(c);
    wslay_event_context_free(ws->ctx);
    free(ws);
    c->ws = NULL;
    atomic_fetch_sub(&c->w->stats.ws_connections, 1);
}
