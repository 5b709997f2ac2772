/* fuzz_net — the fake surroundings of a connection (see fuzz_net.h for what is real). */
#include "fuzz_net.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "eventlog.h"
#include "ingest_json.h"
#include "limit.h"
#include "log.h"
#include "source_session.h"
#include "stream.h"
#include "ws.h"
#include "ws_msg.h"

fnet_t fnet;

/* ---- the worker ------------------------------------------------------------------------ */

void fnet_init(void) {
    static bool done;
    if (done) return;
    done = true;
    log_setup(LOG_ERROR + 1, 2); /* quiet: the fuzzer's output is the report */
    config_defaults(&fnet.cfg);
    fnet.hub = calloc(1, sizeof *fnet.hub);
    assert(fnet.hub);
    fnet.hub->cfg = &fnet.cfg;
    memset(&fnet.w, 0, sizeof fnet.w);
    fnet.w.id = 0;
    fnet.w.hub = fnet.hub;
    fnet.w.cfg = &fnet.cfg;
    fnet.w.rng = 0x9e3779b97f4a7c15ull;
    int rc = uv_loop_init(&fnet.w.loop);
    assert(rc == 0);
    (void)rc;
    fnet.now_ms = uv_now(&fnet.w.loop);
}

void fnet_set_auth(const char *tokens_ini) {
    config_t c;
    char err[CFG_ERR_LEN];
    config_defaults(&c);
    if (tokens_ini && *tokens_ini) {
        int rc = config_load_text(&c, tokens_ini, strlen(tokens_ini), "fuzz.conf", err);
        if (rc != 0) {
            fprintf(stderr, "fnet_set_auth: %s\n", err);
            abort();
        }
    }
    auth_t *a = NULL;
    char aerr[AUTH_ERR_LEN];
    if (auth_build(&c, &a, aerr) != 0) {
        fprintf(stderr, "fnet_set_auth: %s\n", aerr);
        abort();
    }
    config_free(&c);
    auth_unref(fnet.w.auth);
    fnet.w.auth = a;
}

conn_t *fnet_conn_new(void) {
    conn_t *c = calloc(1, sizeof *c);
    assert(c);
    c->w = &fnet.w;
    c->id = ++fnet.w.next_conn_id;
    c->evslot = -1;
    c->last_rx_ms = uv_now(&fnet.w.loop);
    snprintf(c->peer, sizeof c->peer, "127.0.0.1:%u", (unsigned)(40000 + c->id % 20000));
    int rc = http_attach(c);
    assert(rc == 0);
    (void)rc;
    worker__add_conn(&fnet.w, c);
    return c;
}

void worker__add_conn(worker_t *w, conn_t *c) {
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&w->stats.connections, 1);
}

void worker__remove_conn(worker_t *w, conn_t *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&w->stats.connections, 1);
}

static void wire_release(const conn_t *c);

/* conn.c's close callback */
static void release(conn_t *c) {
    http_detach(c);
    ws_detach(c);
    worker__remove_conn(c->w, c);
    wire_release(c);
    assert(c->mgroup == 0);   /* ws_msg_close left its group */
    assert(c->evslot == -1);  /* and the event subscribers */
    assert(c->src == NULL);   /* srcs_end ran */
    free(c);
}

void fnet_settle(bool all) {
    for (conn_t *c = fnet.w.conns, *next; c; c = next) {
        next = c->next;
        if (all && !c->closing) conn_close(c);
        if (c->closing) release(c);
    }
    if (all) {
        fnet_calls_finish(true);
        assert(fnet.w.conns == NULL);
        assert(atomic_load(&fnet.w.stats.ws_connections) == 0);
        assert(atomic_load(&fnet.w.stats.ws_subscribers) == 0);
        assert(fnet.w.nevsubs == 0);
        free(fnet.w.evsubs);
        fnet.w.evsubs = NULL;
        fnet.w.evsubs_cap = 0;
        free(fnet.w.flushq);
        fnet.w.flushq = NULL;
        fnet.w.nflush = fnet.w.flush_cap = 0;
        fnet.now_ms = uv_now(&fnet.w.loop); /* the next input starts at the same time */
    }
}

void fnet_sweep(void) {
    for (conn_t *c = fnet.w.conns; c; c = c->next) {
        if (c->closing) continue;
        if (c->http) http_sweep(c, fnet.now_ms);
        else if (c->ws) ws_sweep(c, fnet.now_ms);
    }
}

void worker_limit_hit(worker_t *w, int limit, const char *peer) {
    (void)peer;
    assert(limit >= 0 && limit < LIMIT_COUNT);
    limit_hit(&w->hub->limits, (limit_t)limit);
    fnet.limit_hits++;
}

void worker_flush_later(worker_t *w, conn_t *c) {
    (void)w;
    conn_flush(c);
}

int worker_group_add(worker_t *w, uint32_t gid, conn_t *c) {
    (void)w;
    assert(gid != 0 && c->mgroup == 0);
    c->mgroup = gid;
    return 0;
}

void worker_group_remove(worker_t *w, conn_t *c) {
    (void)w;
    c->mgroup = 0;
}

int worker_evsub_add(worker_t *w, conn_t *c) {
    if (c->evslot >= 0) return 0;
    if (w->nevsubs == w->evsubs_cap) {
        uint32_t n = w->evsubs_cap ? w->evsubs_cap * 2 : 8;
        conn_t **v = realloc(w->evsubs, n * sizeof *v);
        if (!v) return -ENOMEM;
        w->evsubs = v;
        w->evsubs_cap = n;
    }
    c->evslot = (int32_t)w->nevsubs;
    w->evsubs[w->nevsubs++] = c;
    return 0;
}

void worker_evsub_remove(worker_t *w, conn_t *c) {
    if (c->evslot < 0) return;
    uint32_t i = (uint32_t)c->evslot;
    assert(i < w->nevsubs && w->evsubs[i] == c);
    w->evsubs[i] = w->evsubs[--w->nevsubs];
    w->evsubs[i]->evslot = (int32_t)i;
    c->evslot = -1;
}

/* ---- the connection's outbound side ---------------------------------------------------- */

int conn_send(conn_t *c, frame_t *f) {
    assert(f && f->len > 0);
    if (c->closing) {
        frame_unref(f);
        return -EPIPE;
    }
    assert(!c->flush_close); /* nothing is queued behind a close */
    fnet.frames++;
    fnet.bytes_out += f->len;
    if (fnet.check) fnet.check(c, f);
    if (f->flags & FRAME_CLOSE) c->flush_close = true;
    frame_unref(f); /* written at once */
    return 0;
}

int conn_send_copy(conn_t *c, const void *p, size_t n, uint32_t flags) {
    frame_t *f = frame_copy(p, n, flags);
    if (!f) return -ENOMEM;
    return conn_send(c, f);
}

void conn_flush(conn_t *c) {
    /* everything was written when queued: the write "completes" now */
    if (c->closing) return;
    if (c->flush_close) {
        conn_close(c);
        return;
    }
    if (c->ws) ws_on_drain(c);
}

uint32_t conn_drop_unsent(conn_t *c, uint32_t flags, uint32_t max, size_t *bytes) {
    (void)c, (void)flags, (void)max;
    if (bytes) *bytes = 0;
    return 0; /* nothing ever waits unsent */
}

void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = true;
    fnet.closes++;
}

void conn_close_after_flush(conn_t *c) {
    if (c->closing) return;
    c->flush_close = true;
    conn_pause_read(c, true);
    conn_close(c); /* nothing is queued */
}

void conn_pause_read(conn_t *c, bool pause) {
    if (c->closing) return;
    c->read_paused = pause;
}

/* ---- the hub ---------------------------------------------------------------------------- */

typedef struct kept_call {
    hub_done_fn done;
    void *arg;
} kept_call_t;

static kept_call_t *calls;
static size_t ncalls, calls_cap;

int hub_call(hub_t *hub, worker_t *w, hub_call_fn fn, hub_done_fn done, void *arg) {
    (void)hub, (void)w, (void)fn;
    if (ncalls == calls_cap) {
        size_t n = calls_cap ? calls_cap * 2 : 16;
        kept_call_t *v = realloc(calls, n * sizeof *v);
        if (!v) return -ENOMEM;
        calls = v;
        calls_cap = n;
    }
    calls[ncalls++] = (kept_call_t){done, arg};
    return 0;
}

void fnet_calls_finish(bool cancelled) {
    assert(!cancelled || fnet.w.conns == NULL); /* see fuzz_net.h */
    /* done() may call hub_call again: take the list first */
    kept_call_t *v = calls;
    size_t n = ncalls;
    calls = NULL;
    ncalls = calls_cap = 0;
    for (size_t i = 0; i < n; i++) v[i].done(v[i].arg, cancelled);
    free(v);
    if (cancelled && ncalls) fnet_calls_finish(true);
}

size_t fnet_calls_pending(void) { return ncalls; }

void hub_call_finish(hub_call_t *call) {
    (void)call;
    abort(); /* only a hub side calls it, and no hub side runs here */
}

int hub_publish(hub_t *hub, event_t *e, hub_publish_cb cb, void *arg) {
    (void)hub, (void)e, (void)cb, (void)arg;
    abort();
}

int hub_submit_batch(hub_t *hub, agg_batch_t *b) {
    (void)hub, (void)b;
    abort();
}

uint32_t stream_subscribe(stream_t *s, const char *match, const char *source, frame_t **full) {
    (void)s, (void)match, (void)source, (void)full;
    abort();
}

int inbox_post(inbox_t *ib, inbox_fn fn, void *arg) {
    (void)ib;
    fn(arg, 1); /* the hub is "shutting down": the task only frees what it holds */
    return 0;
}

void stream_unsubscribe(stream_t *s, uint32_t group) { (void)s, (void)group; abort(); }
void stream_request_full(stream_t *s, uint32_t group) { (void)s, (void)group; abort(); }
uint64_t elog_oldest(const eventlog_t *l) { (void)l; abort(); }
uint64_t elog_latest(const eventlog_t *l) { (void)l; abort(); }
event_t *elog_get(const eventlog_t *l, uint64_t seq) { (void)l, (void)seq; abort(); }
bool hub_event_covered(const hub_t *hub, const cursor_t *c, const event_t *e) {
    (void)hub, (void)c, (void)e;
    abort();
}
bool hub_cursor_too_old(const hub_t *hub, const cursor_t *c) {
    (void)hub, (void)c;
    abort();
}

/* ---- source sessions -------------------------------------------------------------------- */

typedef struct fake_src {
    char id[160];
    uint64_t samples;
} fake_src_t;

static int read_sample(void *ud, const statsd_line_t *l) {
    fake_src_t *s = ud;
    unsigned sum = 0;
    for (size_t i = 0; i < l->name_len; i++) sum += (unsigned char)l->name[i];
    for (int i = 0; i < l->ntags; i++)
        for (size_t k = 0; k < l->tags[i].value_len; k++) sum += (unsigned char)l->tags[i].value[k];
    s->samples += 1 + (sum & 0);
    return 0;
}

int srcs_start(conn_t *c, const char *id, const char *attrs) {
    (void)attrs;
    if (c->src) return -EEXIST;
    fake_src_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    assert(strlen(id) < sizeof s->id);
    snprintf(s->id, sizeof s->id, "%s", id);
    c->src = (struct src_session *)s;
    return 0;
}

bool srcs_is_source(const conn_t *c) { return c->src != NULL; }

static void fold(conn_t *c, fake_src_t *s, src_msg_kind_t kind, const char *msg, size_t len) {
    ingest_counts_t ic;
    memset(&ic, 0, sizeof ic);
    if (kind == SRC_MSG_STATSD) {
        ingest_statsd_text(msg, len, read_sample, s, &ic);
    } else {
        char err[256];
        if (ingest_json_parse(msg, len, read_sample, s, &ic, err, sizeof err) < 0)
            ws_msg_error(c, "bad_sample", err);
    }
}

void srcs_enqueue(conn_t *c, src_msg_kind_t kind, const char *msg, size_t len) {
    fake_src_t *s = (fake_src_t *)c->src;
    assert(s);
    fold(c, s, kind, msg, len); /* the real one folds later, from an idle handle */
}

void srcs_client_metrics(conn_t *c, const char *msg, size_t len) {
    fake_src_t tmp = {{0}, 0};
    assert(!c->src);
    fold(c, &tmp, SRC_MSG_CLIENT_METRICS, msg, len);
}

void srcs_end(conn_t *c, const char *reason) {
    assert(reason && *reason);
    free(c->src);
    c->src = NULL;
}

/* ---- what the server may put on the wire ------------------------------------------------ */

#include <jansson.h>

/* UTF-8 by structure: a lead byte and its continuation bytes (enough for "the server
 * never cuts a character in half"; jansson checks text frames fully). */
static bool utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i++];
        size_t k = b < 0x80 ? 0 : (b & 0xe0) == 0xc0 ? 1 : (b & 0xf0) == 0xe0 ? 2
                 : (b & 0xf8) == 0xf0 ? 3 : 4;
        if (k == 4 || k > n - i) return false;
        for (; k; k--)
            if ((s[i++] & 0xc0) != 0x80) return false;
    }
    return true;
}

/* An HTTP/1.1 answer: status line, header lines without stray CR/LF, the blank line, and
 * a body of Content-Length bytes (none for HEAD, 101, 204, 304). */
static void check_http(const conn_t *c, const frame_t *f) {
    const char *p = f->data, *end = f->data + f->len;
    (void)c;
    assert(f->len > 17 && memcmp(p, "HTTP/1.1 ", 9) == 0);
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    assert(status >= 100 && status <= 599 && p[12] == ' ');
    const char *hend = memmem(p, f->len, "\r\n\r\n", 4);
    assert(hend);
    long clen = -1;
    const char *line = memchr(p, '\n', (size_t)(hend - p)) + 1;
    while (line < hend + 2) {
        const char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
        assert(eol);
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        assert(colon && colon > line && colon[1] == ' ');
        for (const char *q = line; q < eol; q++) assert(*q != '\r' && *q != '\n' && *q != '\0');
        if ((size_t)(colon - line) == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            assert(clen < 0); /* once */
            clen = strtol(colon + 2, NULL, 10);
        }
        line = eol + 2;
    }
    size_t body = (size_t)(end - (hend + 4));
    if (status == 101 || status == 204 || status == 304) {
        assert(clen < 0 && body == 0);
    } else {
        assert(clen >= 0);
        assert(body == (size_t)clen || body == 0); /* 0: the answer to a HEAD */
        if (status >= 400 && body) { /* every error is JSON {"error","detail"} */
            json_error_t je;
            json_t *j = json_loadb(hend + 4, body, 0, &je);
            assert(j && json_is_string(json_object_get(j, "error")) &&
                   json_is_string(json_object_get(j, "detail")));
            json_decref(j);
        }
    }
}

/* A server WebSocket frame: FIN, no RSV bits, unmasked, a known opcode, the length right;
 * text is UTF-8 and a JSON object with a string "type"; control frames are short and a
 * close carries a valid code. Returns the frame's length, 0 while it is incomplete. */
static size_t check_ws_frame(const unsigned char *p, size_t avail) {
    if (avail < 2) return 0;
    assert((p[0] & 0xf0) == 0x80);
    unsigned op = p[0] & 0x0f;
    assert(op == 1 || op == 8 || op == 9 || op == 10);
    assert(!(p[1] & 0x80));
    size_t len = p[1] & 0x7f, hl = 2;
    if (len == 126) {
        if (avail < 4) return 0;
        len = (size_t)p[2] << 8 | p[3];
        hl = 4;
        assert(len >= 126);
    } else if (len == 127) {
        if (avail < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
        hl = 10;
        assert(len > 0xffff && len < ((size_t)1 << 40));
    }
    if (avail < hl + len) return 0;
    const unsigned char *pl = p + hl;
    if (op >= 8) assert(len <= 125);
    if (op == 8 && len) {
        assert(len >= 2);
        unsigned code = (unsigned)pl[0] << 8 | pl[1];
        /* ours, or a client's valid code echoed back (RFC 6455 7.4) */
        if (!((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
              (code >= 3000 && code <= 4999))) {
            fprintf(stderr, "close code %u sent\n", code);
            abort();
        }
        assert(utf8_valid(pl + 2, len - 2));
    }
    if (op == 1) {
        assert(utf8_valid(pl, len));
        json_error_t je;
        json_t *j = json_loadb((const char *)pl, len, 0, &je);
        assert(j && json_is_object(j) && json_is_string(json_object_get(j, "type")));
        json_decref(j);
    }
    return hl + len;
}

/* wslay hands its control frames over in pieces (header, then payload): the server's
 * bytes are checked as a stream, per connection. */
typedef struct wire {
    const conn_t *c;
    unsigned char *buf;
    size_t len, cap;
} wire_t;

#define MAX_WIRES 64
static wire_t wires[MAX_WIRES];

static void check_ws(const conn_t *c, const frame_t *f) {
    wire_t *w = NULL;
    for (int i = 0; i < MAX_WIRES && !w; i++)
        if (wires[i].c == c) w = &wires[i];
    for (int i = 0; i < MAX_WIRES && !w; i++)
        if (!wires[i].c) {
            w = &wires[i];
            w->c = c;
        }
    assert(w);
    if (w->len + f->len > w->cap) {
        size_t n = (w->len + f->len) * 2;
        unsigned char *nb = realloc(w->buf, n);
        assert(nb);
        w->buf = nb;
        w->cap = n;
    }
    memcpy(w->buf + w->len, f->data, f->len);
    w->len += f->len;
    size_t off = 0, n;
    while ((n = check_ws_frame(w->buf + off, w->len - off)) > 0) off += n;
    memmove(w->buf, w->buf + off, w->len - off);
    w->len -= off;
}

/* The connection is gone: whatever it wrote was whole frames. */
static void wire_release(const conn_t *c) {
    for (int i = 0; i < MAX_WIRES; i++)
        if (wires[i].c == c) {
            assert(wires[i].len == 0);
            free(wires[i].buf);
            memset(&wires[i], 0, sizeof wires[i]);
        }
}

void fnet_check_wire(conn_t *c, const frame_t *f) {
    if (c->proto == CONN_HTTP)
        check_http(c, f);
    else
        check_ws(c, f);
}

/* ---- the router, for targets that do not route (fuzz_event) ----------------------------- */

__attribute__((weak)) void api_handle(http_req_t *r) {
    http_respond_error(r, 404, "not_found", "no routes in this target");
}

__attribute__((weak)) unsigned api_route_methods(const char *path) {
    (void)path;
    return 0;
}
