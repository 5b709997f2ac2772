#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "jsonw.h"
#include "limit.h"
#include "log.h"
#include "version.h"
#include "worker.h"
#include "ws.h"

typedef struct http_state {
    llhttp_t parser;
    /* Request line and headers, each piece NUL-terminated, addressed by offset because
     * hb may move while it grows. */
    buf_t hb;
    uint32_t target_off;
    uint32_t name_off[HTTP_MAX_HEADERS];
    uint32_t value_off[HTTP_MAX_HEADERS];
    int nheaders;
    bool in_field, in_value, in_target;
    buf_t body;
    bool in_request;   /* first byte of a request seen, message not complete */
    bool headers_done;
    bool upgraded;     /* a route took the connection over */
    bool stop;         /* answered with Connection: close: parse nothing more */
    int abort_status;  /* set by a callback that rejects the request */
    const char *abort_error;
    const char *abort_detail;
    uint64_t req_start_ms;
    uint64_t nrequests;
    struct http_deferred *deferred; /* the request being answered elsewhere */
    buf_t stash;                    /* bytes read after a deferred request */
    char cors[256];                 /* allowed Origin of the current request, or "" */
} http_state_t;

struct http_deferred {
    conn_t *conn; /* NULL once the connection is gone */
    bool head;
    bool keep_alive;
};

static llhttp_settings_t g_settings; /* immutable after http_settings_once() */
static uv_once_t g_settings_once = UV_ONCE_INIT;

static conn_t *conn_of(llhttp_t *p) { return p->data; }

static int reject(http_state_t *h, int status, const char *error, const char *detail) {
    h->abort_status = status;
    h->abort_error = error;
    h->abort_detail = detail;
    return -1;
}

/* Header bytes as the client sent them, approximately: pieces plus separators. */
static int over_header_limit(conn_t *c) {
    http_state_t *h = c->http;
    return h->hb.len + 4u * (unsigned)h->nheaders > c->w->cfg->http_max_header_bytes;
}

static int on_message_begin(llhttp_t *p) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    if (h->stop) return -1;
    buf_reset(&h->hb);
    buf_reset(&h->body);
    h->nheaders = 0;
    h->in_field = h->in_value = h->in_target = false;
    h->in_request = true;
    h->headers_done = false;
    h->cors[0] = '\0';
    h->req_start_ms = uv_now(&c->w->loop);
    return 0;
}

static int append_piece(conn_t *c, const char *at, size_t len) {
    http_state_t *h = c->http;
    if (buf_append(&h->hb, at, len) < 0) return reject(h, 503, "out_of_memory", "request headers");
    if (over_header_limit(c))
        return reject(h, 431, "headers_too_large", "request line and headers exceed the limit");
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
    conn_t *c = conn_of(p);
    if (!c->http->in_target) {
        c->http->in_target = true;
        c->http->target_off = (uint32_t)c->http->hb.len;
    }
    return append_piece(c, at, len);
}

static int on_url_complete(llhttp_t *p) {
    conn_t *c = conn_of(p);
    if (!c->http->in_target) c->http->target_off = (uint32_t)c->http->hb.len;
    c->http->in_target = false;
    return append_piece(c, "", 1);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    if (!h->in_field) {
        if (h->nheaders >= HTTP_MAX_HEADERS)
            return reject(h, 431, "headers_too_large", "too many header fields");
        h->in_field = true;
        h->name_off[h->nheaders] = (uint32_t)h->hb.len;
    }
    return append_piece(c, at, len);
}

static int on_header_field_complete(llhttp_t *p) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    if (!h->in_field) { /* empty name: llhttp rejects these, but stay consistent */
        if (h->nheaders >= HTTP_MAX_HEADERS)
            return reject(h, 431, "headers_too_large", "too many header fields");
        h->name_off[h->nheaders] = (uint32_t)h->hb.len;
    }
    h->in_field = false;
    int rc = append_piece(c, "", 1);
    h->value_off[h->nheaders] = (uint32_t)h->hb.len; /* an empty value stays "" */
    return rc;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
    conn_t *c = conn_of(p);
    c->http->in_value = true;
    return append_piece(c, at, len);
}

static int on_header_value_complete(llhttp_t *p) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    h->in_value = false;
    int rc = append_piece(c, "", 1);
    if (rc == 0) h->nheaders++;
    return rc;
}

static int on_headers_complete(llhttp_t *p) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    h->headers_done = true;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->w->cfg->http_max_body_bytes)
        return reject(h, 413, "body_too_large", "request body exceeds the limit");
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    if (h->body.len + len > c->w->cfg->http_max_body_bytes)
        return reject(h, 413, "body_too_large", "request body exceeds the limit");
    if (buf_append(&h->body, at, len) < 0) return reject(h, 503, "out_of_memory", "request body");
    return 0;
}

static http_method_t method_of(uint8_t m) {
    switch ((llhttp_method_t)m) {
    case HTTP_GET: return HM_GET;
    case HTTP_HEAD: return HM_HEAD;
    case HTTP_POST: return HM_POST;
    case HTTP_PUT: return HM_PUT;
    case HTTP_DELETE: return HM_DELETE;
    case HTTP_OPTIONS: return HM_OPTIONS;
    case HTTP_PATCH: return HM_PATCH;
    default: return HM_OTHER;
    }
}

static int on_message_complete(llhttp_t *p) {
    conn_t *c = conn_of(p);
    http_state_t *h = c->http;
    h->in_request = false;
    h->nrequests++;
    atomic_fetch_add(&c->w->stats.http_requests_total, 1);

    http_req_t r;
    memset(&r, 0, sizeof r);
    r.conn = c;
    r.method_name = llhttp_method_name((llhttp_method_t)p->method);
    r.method = method_of(p->method);
    r.target = h->hb.data ? h->hb.data + h->target_off : "";
    r.keep_alive = llhttp_should_keep_alive(p);
    r.upgrade = p->upgrade;
    for (int i = 0; i < h->nheaders; i++) {
        r.headers[i].name = h->hb.data + h->name_off[i];
        r.headers[i].value = h->hb.data + h->value_off[i];
    }
    r.nheaders = h->nheaders;
    r.body = h->body.data ? h->body.data : "";
    r.body_len = h->body.len;

    /* split target into path and query; decode the path */
    const char *q = strchr(r.target, '?');
    size_t plen = q ? (size_t)(q - r.target) : strlen(r.target);
    r.query = q ? q + 1 : "";
    char small[512];
    char *path = plen < sizeof small ? small : malloc(plen + 1);
    if (!path) {
        http_respond_error(&r, 503, "out_of_memory", "request path");
        return HPE_PAUSED;
    }
    if (http_percent_decode(r.target, plen, path, false) < 0) {
        r.keep_alive = false;
        r.path = "";
        http_respond_error(&r, 400, "bad_request", "malformed percent-encoding in the path");
    } else {
        r.path = path;
        api_handle(&r);
    }
    if (path != small) free(path);

    if (h->upgraded) return HPE_PAUSED; /* the rest of the bytes belong to the new protocol */
    if (h->deferred) return HPE_PAUSED; /* answered later; parse nothing more until then */
    if (!r.keep_alive) {
        h->stop = true;
        return HPE_PAUSED;
    }
    return 0;
}

static void settings_once(void) {
    llhttp_settings_init(&g_settings);
    g_settings.on_message_begin = on_message_begin;
    g_settings.on_url = on_url;
    g_settings.on_url_complete = on_url_complete;
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_field_complete = on_header_field_complete;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;
}

int http_attach(conn_t *c) {
    uv_once(&g_settings_once, settings_once);
    http_state_t *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    llhttp_init(&h->parser, HTTP_REQUEST, &g_settings);
    h->parser.data = c;
    c->http = h;
    c->proto = CONN_HTTP;
    return 0;
}

void http_detach(conn_t *c) {
    http_state_t *h = c->http;
    if (!h) return;
    if (h->deferred) h->deferred->conn = NULL; /* its holder frees it */
    buf_free(&h->stash);
    buf_free(&h->hb);
    buf_free(&h->body);
    free(h);
    c->http = NULL;
}

void http_mark_upgraded(http_req_t *r) { r->conn->http->upgraded = true; }

void http_set_cors(http_req_t *r, const char *origin) {
    http_state_t *h = r->conn->http;
    if (!h) return;
    size_t n = strlen(origin);
    if (n >= sizeof h->cors) return; /* longer than any origin we could have listed */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)origin[i] < 0x20 || origin[i] == 0x7f) return; /* no header injection */
    memcpy(h->cors, origin, n + 1);
}

http_deferred_t *http_defer(http_req_t *r) {
    http_deferred_t *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->conn = r->conn;
    d->head = r->method == HM_HEAD;
    d->keep_alive = r->keep_alive;
    r->conn->http->deferred = d;
    return d;
}

void http_on_data(conn_t *c, const char *data, size_t len) {
    while (len > 0 && !c->closing && c->http) {
        http_state_t *h = c->http;
        if (h->stop) return;
        llhttp_errno_t e = llhttp_execute(&h->parser, data, len);
        if (e == HPE_OK) return;
        const char *pos = llhttp_get_error_pos(&h->parser);
        size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        if (h->upgraded) {
            http_detach(c); /* c->proto is CONN_WS from here on */
            if (len > used) ws_on_data(c, (const uint8_t *)data + used, len - used);
            return;
        }
        if (e == HPE_PAUSED_UPGRADE) {
            /* an Upgrade we did not take (h2c, ...): it was answered as plain HTTP */
            llhttp_resume_after_upgrade(&h->parser);
        } else if (e == HPE_PAUSED) {
            if (h->stop) {
                conn_pause_read(c, true);
                return;
            }
            if (h->deferred) {
                /* keep what follows for when the answer is out; read nothing more */
                if (len > used && buf_append(&h->stash, data + used, len - used) < 0) {
                    conn_close(c);
                    return;
                }
                conn_pause_read(c, true);
                return;
            }
            llhttp_resume(&h->parser);
        } else {
            if (h->abort_status) {
                if (h->abort_status == 431) worker_limit_hit(c->w, LIMIT_HTTP_HEADER_BYTES, c->peer);
                if (h->abort_status == 413) worker_limit_hit(c->w, LIMIT_HTTP_BODY_BYTES, c->peer);
                http_respond_error_conn(c, h->abort_status, h->abort_error, h->abort_detail);
            } else {
                http_respond_error_conn(c, 400, "bad_request", llhttp_get_error_reason(&h->parser));
            }
            h->stop = true;
            return;
        }
        data += used;
        len -= used;
    }
}

void http_sweep(conn_t *c, uint64_t now_ms) {
    http_state_t *h = c->http;
    if (!h || h->stop || h->deferred) return;
    const config_t *cfg = c->w->cfg;
    uint64_t header_ms = (uint64_t)(cfg->http_header_timeout * 1000);
    uint64_t idle_ms = (uint64_t)(cfg->http_idle_timeout * 1000);
    if (h->in_request && !h->headers_done) {
        if (now_ms - h->req_start_ms >= header_ms) {
            h->stop = true;
            worker_limit_hit(c->w, LIMIT_HTTP_HEADER_TIMEOUT, c->peer);
            http_respond_error_conn(c, 408, "request_timeout",
                                    "request headers did not arrive in time");
        }
    } else if (h->in_request) {
        if (now_ms - c->last_rx_ms >= idle_ms) {
            h->stop = true;
            worker_limit_hit(c->w, LIMIT_HTTP_BODY_TIMEOUT, c->peer);
            http_respond_error_conn(c, 408, "request_timeout", "request body stalled");
        }
    } else if (h->nrequests == 0 && now_ms - c->last_rx_ms >= header_ms) {
        worker_limit_hit(c->w, LIMIT_HTTP_HEADER_TIMEOUT, c->peer);
        conn_close(c); /* connected and never sent a request */
    } else if (!c->inflight && c->qlen == 0 && now_ms - c->last_rx_ms >= idle_ms) {
        worker_limit_hit(c->w, LIMIT_HTTP_IDLE_TIMEOUT, c->peer);
        conn_close(c); /* idle keep-alive */
    }
}

const char *http_header(const http_req_t *r, const char *name) {
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

bool http_header_has_token(const char *value, const char *token) {
    if (!value) return false;
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0) return true;
    }
    return false;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *src, size_t n, char *out, bool plus_is_space) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n) return -EINVAL;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0) return -EINVAL;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0') return -EINVAL;
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return (int)o;
}

int http_query_param(const char *query, const char *name, char *out, size_t outlen) {
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', seg);
        size_t klen = eq ? (size_t)(eq - p) : seg;
        if (klen == nl && strncmp(p, name, nl) == 0) {
            const char *v = eq ? eq + 1 : p + seg;
            size_t vlen = eq ? seg - klen - 1 : 0;
            if (vlen + 1 > outlen) return -1;
            if (http_percent_decode(v, vlen, out, true) < 0) return -1;
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

const char *http_status_text(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* Builds and queues one answer. */
/* cache: the Cache-Control value (NULL: no-store). A 304 has no content (RFC 9110
 * 15.4.5): no Content-Type, no Content-Length, no body. */
static void respond(conn_t *c, int status, const char *ctype, const char *cache,
                    const char *extra, const void *body, size_t len, bool head_only, bool close) {
    buf_t b = BUF_INIT;
    const char *cors = c->http ? c->http->cors : "";
    /* RFC 9110: 204 and 304 have no content, so no Content-Length (nor, for a 304,
     * Content-Type) and no body */
    bool no_content = status == 204 || status == 304;
    buf_printf(&b, "HTTP/1.1 %d %s\r\nServer: metricast/" MC_VERSION "\r\n", status,
               http_status_text(status));
    if (!no_content) buf_printf(&b, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
    buf_printf(&b, "Cache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n%s%s%s%s%s\r\n",
               cache ? cache : "no-store", close ? "Connection: close\r\n" : "",
               *cors ? "Access-Control-Allow-Origin: " : "", cors,
               *cors ? "\r\nVary: Origin\r\n" : "", extra ? extra : "");
    if (!head_only && !no_content && len) buf_append(&b, body, len);
    if (!b.data) {
        conn_close(c);
        return;
    }
    if (status >= 400) atomic_fetch_add(&c->w->stats.http_errors_total, 1);
    frame_t *f = frame_copy(b.data, b.len, close ? FRAME_CLOSE : 0);
    buf_free(&b);
    if (!f || conn_send(c, f) < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

void http_respond(http_req_t *r, int status, const char *content_type, const char *extra_headers,
                  const void *body, size_t len) {
    http_respond_cacheable(r, status, content_type, NULL, extra_headers, body, len);
}

void http_respond_cacheable(http_req_t *r, int status, const char *content_type,
                            const char *cache_control, const char *extra_headers,
                            const void *body, size_t len) {
    /* client errors that leave the stream in doubt close the connection */
    bool close = !r->keep_alive || status == 400 || status == 408 || status == 413 ||
                 status == 431;
    if (close) r->keep_alive = false;
    if (log_enabled(LOG_DEBUG)) {
        char qp[256];
        log_debug("http request", "conn=%llu peer=%s method=%s path=%s status=%d",
                  (unsigned long long)r->conn->id, r->conn->peer, r->method_name,
                  log_quote(r->path, qp, sizeof qp), status);
    }
    respond(r->conn, status, content_type, cache_control, extra_headers, body, len,
            r->method == HM_HEAD, close);
}

static void error_body(buf_t *b, const char *error, const char *detail) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "error", error);
    jsonw_kv_str(&w, "detail", detail ? detail : "");
    jsonw_obj_close(&w);
    buf_putc(b, '\n');
}

void http_respond_error(http_req_t *r, int status, const char *error, const char *detail) {
    buf_t b = BUF_INIT;
    error_body(&b, error, detail);
    http_respond(r, status, "application/json", NULL, b.data ? b.data : "", b.len);
    buf_free(&b);
}

void http_respond_error_conn(conn_t *c, int status, const char *error, const char *detail) {
    buf_t b = BUF_INIT;
    error_body(&b, error, detail);
    log_debug("http error", "conn=%llu peer=%s status=%d error=%s", (unsigned long long)c->id,
              c->peer, status, error);
    respond(c, status, "application/json", NULL, NULL, b.data ? b.data : "", b.len, false, true);
    buf_free(&b);
    conn_pause_read(c, true);
}

void http_deferred_respond(http_deferred_t *d, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t len) {
    conn_t *c = d->conn;
    bool keep_alive = d->keep_alive;
    bool head = d->head;
    free(d);
    if (!c || c->closing || !c->http) return;
    http_state_t *h = c->http;
    h->deferred = NULL;
    bool close = !keep_alive || status == 400 || status == 413;
    respond(c, status, content_type, NULL, extra_headers, body, len, head, close);
    if (close) {
        h->stop = true;
        return;
    }
    /* carry on with what the client pipelined meanwhile */
    llhttp_resume(&h->parser);
    buf_t rest = h->stash;
    buf_init(&h->stash);
    conn_pause_read(c, false);
    if (rest.len) http_on_data(c, rest.data, rest.len);
    buf_free(&rest);
}
