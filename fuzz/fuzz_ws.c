/* libFuzzer target for WebSocket frame handling: a connection upgraded through the real
 * handshake (http_on_data → ws_handshake), then the client's bytes, cut into reads at
 * points the input chooses, through ws_on_data() — wslay's receive path as src/ws.c
 * configures it (masking, fragmentation, control frames interleaved, UTF-8, the message
 * size limit and its 1009 close, close handshakes), the messages going on to the real
 * ws_msg.c. Between reads the worker's sweep may run with the clock moved on (keepalive
 * pings, the idle close, the close wait).
 *
 * Input: byte 0 picks the mode (bit 0: a 64-byte message limit; bit 1: a source session,
 * /ws?source=; bit 2: sweeps between reads; bit 3: tokens on, the upgrade with a read
 * token), byte 1 the number of cuts, one byte per cut (the read's length, 1-256), then
 * the frames.
 *
 * Checked: everything the server writes is a valid server frame stream (fnet_check_wire);
 * the connection's state is released whole (ASan/LSan). Built by scripts/fuzz.sh. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "api.h"
#include "auth.h"
#include "fuzz_net.h"
#include "http.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void api_handle(http_req_t *r) {
    if (!access_request(r)) return;
    if (!access_authorize(r, AUTH_ANY, NULL, ACCESS_QUERY_TOKEN)) return;
    ws_handshake(r);
}

unsigned api_route_methods(const char *path) {
    (void)path;
    return HM_GET;
}

static const char TOKENS[] =
    "[token.reader]\nsecret = reader-secret-0123456789\nscopes = read\ntopics = metrics, telemetry.*\n"
    "[token.robot]\nsecret = robot-secret-0123456789\nscopes = ingest, read\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int auth_on = -1; /* the policy in force: -1 not built yet, 0 open, 1 tokens */
    fnet_init();
    fnet.check = fnet_check_wire;
    if (size < 2) return 0;
    uint8_t mode = data[0];
    fnet.cfg.ws_max_message_bytes = mode & 1 ? 64 : 64 * 1024;
    bool source = mode & 2, sweeps = mode & 4, want_auth = mode & 8;
    if ((int)want_auth != auth_on) {
        fnet_set_auth(want_auth ? TOKENS : NULL);
        auth_on = want_auth;
    }
    size_t ncuts = data[1] % 16, pos = 2;
    if (size < pos + ncuts) return 0;
    const uint8_t *cuts = data + pos;
    pos += ncuts;

    conn_t *c = fnet_conn_new();
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws?%s HTTP/1.1\r\nHost: 127.0.0.1:9750\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                     source ? "source=robot_1" : want_auth ? "topics=metrics,telemetry.*"
                                                            : "topics=metrics,events",
                     !want_auth ? "" : source ? "Authorization: Bearer robot-secret-0123456789\r\n"
                                              : "Authorization: Bearer reader-secret-0123456789\r\n");
    http_on_data(c, req, (size_t)n);
    assert(c->closing || (c->proto == CONN_WS && c->ws && !c->http));
    assert(!source || c->closing || c->src);

    size_t ci = 0;
    while (pos < size && !c->closing && !c->read_paused) {
        size_t len = ci < ncuts ? (size_t)cuts[ci] + 1 : size - pos;
        ci++;
        if (len > size - pos) len = size - pos;
        c->last_rx_ms = fnet.now_ms;
        ws_on_data(c, data + pos, len);
        pos += len;
        if (sweeps && !c->closing) {
            fnet.now_ms += 21 * 1000; /* past the ping interval (20 s) */
            fnet_sweep();
        }
        if (fnet_calls_pending()) fnet_calls_finish(false); /* the hub answers */
    }
    fnet_settle(true);
    return 0;
}
