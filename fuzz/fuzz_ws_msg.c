/* libFuzzer target for every client WebSocket message: a sequence of messages handed to
 * ws_msg_handle() — subscribe, unsubscribe, ping, publish (event_prepare on the data),
 * hello, sample, client_metrics, StatsD text frames from a source, anything else — on
 * connections opened through the real upgrade (the query's topics= and source= go through
 * ws_msg_open), under a token policy with read, ingest, publish or admin tokens (the
 * per-message scope and topic checks of src/access.c). Interleaved with what the rest of
 * the hub does to a connection meanwhile: hub calls completing or cancelled, events
 * delivered, the queue draining, a policy reload re-checking the connection, the
 * connection closing while answers are on their way, a new one opening.
 *
 * Input: byte 0 picks the token (none, read, ingest+read, publish, admin), whether the
 * connection is a source (?source=) and the subscription limit; then messages separated
 * by 0x1e. A message starting with 0x01 is an action instead: 'c' completes the hub
 * calls, 'C' stops the worker (every connection closes, then the calls are cancelled)
 * and opens a new connection, 'e' delivers an event of the type that follows, 'd' the
 * queue drained, 'g' updates were conflated, 'r' a reload (the tokens' scopes change),
 * 'x' the connection closes, 'n' a new one opens.
 *
 * Checked: every frame sent is a valid server frame whose text is a JSON object with a
 * "type" (fnet_check_wire); connection state is released whole, whatever was pending
 * (ASan/LSan, and fnet_settle's checks). Built by scripts/fuzz.sh. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "api.h"
#include "auth.h"
#include "event.h"
#include "fuzz_net.h"
#include "http.h"
#include "ws.h"
#include "ws_msg.h"

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

static const char TOKENS_A[] =
    "[token.reader]\nsecret = reader-secret-0123456789\nscopes = read\ntopics = metrics, telemetry.*\n"
    "[token.robot]\nsecret = robot-secret-0123456789\nscopes = ingest, read\n"
    "[token.pub]\nsecret = publish-secret-0123456789\nscopes = publish\n"
    "[token.admin]\nsecret = admin-secret-0123456789\nscopes = admin\n";
/* after a "reload": narrower scopes, one token gone */
static const char TOKENS_B[] =
    "[token.reader]\nsecret = reader-secret-0123456789\nscopes = read\ntopics = alerts\n"
    "[token.robot]\nsecret = robot-secret-0123456789\nscopes = read\n"
    "[token.admin]\nsecret = admin-secret-0123456789\nscopes = publish\n";

static const char *const SECRETS[] = {NULL, "reader-secret-0123456789", "robot-secret-0123456789",
                                      "publish-secret-0123456789", "admin-secret-0123456789"};

static conn_t *open_conn(int tok, bool source) {
    conn_t *c = fnet_conn_new();
    char req[512], auth[96] = "";
    if (SECRETS[tok]) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", SECRETS[tok]);
    int n = snprintf(req, sizeof req,
                     "GET /ws?topics=events&%s HTTP/1.1\r\nHost: localhost:9750\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                     source ? "source=robot_1" : "", auth);
    http_on_data(c, req, (size_t)n);
    return c;
}

static void action(conn_t **cp, const uint8_t *m, size_t len, int tok, bool source,
                   uint64_t *seq, const char **policy) {
    conn_t *c = *cp;
    bool live = c && !c->closing && c->ws;
    switch (len ? m[0] : 0) {
    case 'c': fnet_calls_finish(false); break;
    case 'C': /* the worker stops: connections close, then the calls are cancelled */
        fnet_settle(true);
        *cp = open_conn(tok, source);
        break;
    case 'e': {
        char type[EVENT_TYPE_MAX + 1];
        size_t n = len - 1 < EVENT_TYPE_MAX ? len - 1 : EVENT_TYPE_MAX;
        memcpy(type, m + 1, n);
        type[n] = '\0';
        if (!event_type_valid(type)) break;
        event_t *e = event_make(type, "{\"k\":1}", NULL, 1700000000.0, "abc123");
        if (!e) break;
        if (event_seal(e, ++*seq) == 0 && live) ws_msg_deliver_event(c, e);
        event_unref(e);
        break;
    }
    case 'd': if (live) ws_msg_drained(c); break;
    case 'g': if (live) ws_msg_metrics_gap(c); break;
    case 'r':
        *policy = *policy == TOKENS_B ? TOKENS_A : TOKENS_B;
        fnet_set_auth(*policy);
        for (conn_t *o = fnet.w.conns; o; o = o->next) access_recheck(o);
        break;
    case 'x':
        if (c) conn_close(c); /* the caller settles */
        break;
    case 'n':
        if (!c) *cp = open_conn(tok, source);
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *policy = "unset"; /* the token text in force (NULL: open mode) */
    fnet_init();
    fnet.check = fnet_check_wire;
    if (size < 1) return 0;
    uint8_t mode = data[0];
    int tok = (mode & 7) % 5;
    bool source = mode & 8;
    fnet.cfg.ws_max_subscriptions = mode & 16 ? 3 : 64;
    const char *want = mode & 32 && tok == 0 ? NULL : TOKENS_A;
    if (want != policy) { /* rebuilt only when it changes: it hashes secrets */
        fnet_set_auth(want);
        policy = want;
    }
    uint64_t seq = 0;
    conn_t *c = open_conn(tok, source);
    size_t pos = 1;
    while (pos < size) {
        const uint8_t *m = data + pos;
        const uint8_t *sep = memchr(m, 0x1e, size - pos);
        size_t len = sep ? (size_t)(sep - m) : size - pos;
        pos += len + 1;
        if (len && m[0] == 0x01)
            action(&c, m + 1, len - 1, tok, source, &seq, &policy);
        else if (c && !c->closing && c->ws)
            ws_msg_handle(c, (const char *)m, len);
        if (c && c->closing) c = NULL; /* freed by the settle below */
        fnet_settle(false); /* the loop's close callbacks */
    }
    fnet_settle(true);
    return 0;
}
