/* libFuzzer target for the HTTP request path: bytes a client sends, cut into reads at
 * points the input chooses, through http_on_data() — llhttp and src/http.c's callbacks,
 * request assembly, the header and body limits, pipelining, deferred answers and the
 * stash behind them, the slow-header and idle timeouts, the WebSocket upgrade and the
 * hand-off of the bytes after it (to the real ws.c / ws_msg.c). The access checks
 * (src/access.c: Host, Origin, tokens) run before every route, as in api_handle.
 *
 * Input: byte 0 picks the limits and the policy, byte 1 the number of cut points, then
 * one byte per cut (the length of that read, 1-256), then the client's bytes.
 *
 * Checked: every request handed to the router is within the limits and well-formed
 * (NUL-terminated pieces, at most 64 headers, body of body_len bytes); the router is
 * never called while an answer is outstanding (deferred) or after a closing answer;
 * everything the server writes is a well-formed HTTP/1.1 answer or WebSocket frame
 * (fnet_check_wire). ASan/UBSan/LSan do the rest. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "api.h"
#include "auth.h"
#include "fuzz_net.h"
#include "http.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEFERRED 8

static http_deferred_t *deferred[MAX_DEFERRED];
static int ndeferred;
static bool closing_answer; /* an answer with Connection: close went out */
static uint64_t routed;

/* The router the server has (api.c), with stand-in handlers: /ws is the real upgrade;
 * /defer answers later (as the hub-backed routes do); everything else answers at once. */
void api_handle(http_req_t *r) {
    conn_t *c = r->conn;
    routed++;
    assert(!closing_answer);
    assert(c->http && !c->closing);
    assert(ndeferred == 0); /* the parser stops behind a deferred request */
    /* the request as the callbacks assembled it */
    assert(r->method_name && r->target && r->path && r->query && r->body);
    assert(r->nheaders >= 0 && r->nheaders <= HTTP_MAX_HEADERS);
    size_t hbytes = strlen(r->target) + 1;
    for (int i = 0; i < r->nheaders; i++) {
        assert(r->headers[i].name && r->headers[i].value);
        hbytes += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 2 + 4;
    }
    assert(hbytes <= fnet.cfg.http_max_header_bytes + 4);
    assert(r->body_len <= fnet.cfg.http_max_body_bytes);
    assert(r->body[r->body_len] == '\0');
    assert(strlen(r->path) <= strlen(r->target));

    if (!access_request(r)) return;
    if (strcmp(r->path, "/ws") == 0 && r->method == HM_GET) {
        if (!access_authorize(r, AUTH_ANY, NULL, ACCESS_QUERY_TOKEN)) return;
        ws_handshake(r);
        return;
    }
    if (strncmp(r->path, "/defer", 6) == 0) {
        if (!access_authorize(r, AUTH_READ, "metrics", 0)) return;
        http_deferred_t *d = http_defer(r);
        if (!d) {
            http_respond_error(r, 503, "out_of_memory", "defer");
            return;
        }
        deferred[ndeferred++] = d;
        return;
    }
    if (!access_authorize(r, r->method == HM_GET || r->method == HM_HEAD ? AUTH_READ : AUTH_INGEST,
                          NULL, 0))
        return;
    if (strcmp(r->path, "/404") == 0) {
        http_respond_error(r, 404, "not_found", r->path);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof body, "{\"len\":%zu,\"headers\":%d}\n", r->body_len, r->nheaders);
    http_respond(r, 200, "application/json", "X-Test: 1\r\n", body, (size_t)n);
}

/* For CORS preflights (access.c): the stand-in routes' methods. */
unsigned api_route_methods(const char *path) {
    if (strcmp(path, "/ws") == 0) return HM_GET;
    if (strncmp(path, "/defer", 6) == 0) return HM_GET | HM_HEAD;
    return HM_GET | HM_HEAD | HM_POST;
}

/* An answer replays what the client pipelined behind it, inside http_deferred_respond:
 * that can route (and defer) the next request at once, so each answer leaves the list
 * before it is sent, and answers deferred meanwhile are sent in turn. */
static void answer_deferred(int status) {
    while (ndeferred > 0) {
        http_deferred_t *d = deferred[0];
        memmove(deferred, deferred + 1, (size_t)(ndeferred - 1) * sizeof *deferred);
        deferred[--ndeferred] = NULL;
        if (status >= 400)
            http_deferred_respond(d, status, "application/json", NULL,
                                  "{\"error\":\"bad\",\"detail\":\"later\"}\n", 32);
        else
            http_deferred_respond(d, status, "text/plain", NULL, "later\n", 6);
    }
}

static void check(conn_t *c, const frame_t *f) {
    fnet_check_wire(c, f);
    if (c->proto == CONN_HTTP && (f->flags & FRAME_CLOSE)) closing_answer = true;
}

static const char TOKENS[] =
    "[token.reader]\nsecret = reader-secret-0123456789\nscopes = read\ntopics = metrics, telemetry.*\n"
    "[token.admin]\nsecret = admin-secret-0123456789\nscopes = admin\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int auth_on = -1; /* the policy in force: -1 not built yet, 0 open, 1 tokens */
    fnet_init();
    fnet.check = check;
    if (size < 2) return 0;
    uint8_t mode = data[0];
    static const size_t hlim[] = {16 * 1024, 64, 256, 1024};
    static const size_t blim[] = {4 * 1024 * 1024, 0, 16, 1024};
    fnet.cfg.http_max_header_bytes = hlim[mode & 3];
    fnet.cfg.http_max_body_bytes = blim[(mode >> 2) & 3];
    bool want_auth = mode & 0x10;
    if ((int)want_auth != auth_on) { /* rebuilt only when it changes: it hashes secrets */
        fnet_set_auth(want_auth ? TOKENS : NULL);
        auth_on = want_auth;
    }
    bool sweeps = mode & 0x20;
    int deferred_status = mode & 0x40 ? 400 : 200;
    size_t ncuts = data[1] % 16;
    size_t pos = 2;
    const uint8_t *cuts = data + pos;
    if (size < pos + ncuts) return 0;
    pos += ncuts;
    closing_answer = false;
    ndeferred = 0;

    conn_t *c = fnet_conn_new();
    size_t ci = 0;
    while (pos < size) {
        size_t n = ci < ncuts ? (size_t)cuts[ci] + 1 : size - pos;
        ci++;
        if (n > size - pos) n = size - pos;
        /* a read arrives only while reading is on (paused: stop, or an answer pending) */
        if (c->closing || c->read_paused) break;
        c->last_rx_ms = fnet.now_ms;
        if (c->http)
            http_on_data(c, (const char *)data + pos, n);
        else if (c->ws)
            ws_on_data(c, data + pos, n);
        pos += n;
        if (ndeferred) answer_deferred(deferred_status); /* the hub answered meanwhile */
        if (sweeps && !c->closing) {
            fnet.now_ms += 11 * 1000; /* past the header timeout (10 s) */
            fnet_sweep();
        }
    }
    if (ndeferred) answer_deferred(deferred_status);
    fnet_settle(true);
    return 0;
}
