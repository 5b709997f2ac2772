/* http — HTTP/1.1 server side of a connection, on llhttp.
 *
 * Parses requests as bytes arrive (keep-alive, pipelining, Content-Length and chunked
 * bodies), enforces the header-size, body-size and slow-client limits from the config,
 * hands each complete request to the router (api.h) and writes answers with the right
 * framing. A request whose route switches protocols (the WebSocket upgrade) hands the
 * connection, and any bytes that followed the request, to ws.c.
 *
 * Everything runs on the connection's worker thread. A request and everything it points
 * to is valid only during the router call. */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct conn;

#define HTTP_MAX_HEADERS 64

typedef enum {
    HM_GET = 1 << 0,
    HM_HEAD = 1 << 1,
    HM_POST = 1 << 2,
    HM_PUT = 1 << 3,
    HM_DELETE = 1 << 4,
    HM_OPTIONS = 1 << 5,
    HM_PATCH = 1 << 6,
    HM_OTHER = 1 << 7,
} http_method_t;

typedef struct http_header {
    const char *name; /* NUL-terminated, as received */
    const char *value;
} http_header_t;

typedef struct http_req {
    http_method_t method;
    const char *method_name;
    const char *target; /* request target as received: path?query */
    const char *path;   /* percent-decoded path */
    const char *query;  /* raw query string without '?', "" if none */
    http_header_t headers[HTTP_MAX_HEADERS];
    int nheaders;
    const char *body; /* NUL-terminated copy; len body_len */
    size_t body_len;
    bool keep_alive;
    bool upgrade; /* Connection: upgrade + Upgrade: present */
    struct conn *conn;
    const struct auth_token *token; /* the token it presented (access_authorize), or NULL */
} http_req_t;

/* Attaches HTTP state to a fresh connection. 0 or -ENOMEM. */
int http_attach(struct conn *c);
/* Frees the HTTP state if any (also on upgrade). */
void http_detach(struct conn *c);
/* Feeds bytes read from the socket (borrowed for the call). */
void http_on_data(struct conn *c, const char *data, size_t len);
/* Timeouts: slow headers (408), idle keep-alive, stalled bodies. */
void http_sweep(struct conn *c, uint64_t now_ms);

/* Case-insensitive header lookup; NULL if absent. */
const char *http_header(const http_req_t *r, const char *name);
/* True if the comma-separated header value contains token (case-insensitive). */
bool http_header_has_token(const char *value, const char *token);
/* Query parameter lookup with percent-decoding into out. 1 found, 0 absent, -1 present
 * but unusable (longer than outlen, or a bad escape): callers answer 400. */
int http_query_param(const char *query, const char *name, char *out, size_t outlen);
/* Percent-decodes src (n bytes) into out (≥ n+1). -EINVAL on a bad escape or a NUL. */
int http_percent_decode(const char *src, size_t n, char *out, bool plus_is_space);

const char *http_status_text(int status);

/* Answers the current request. extra_headers: "Name: value\r\n" lines or NULL. The body
 * is copied. For HEAD only the headers go out. Closes afterwards when the request or the
 * status demands it. */
void http_respond(http_req_t *r, int status, const char *content_type, const char *extra_headers,
                  const void *body, size_t len);
/* The same with the caller's Cache-Control value instead of "no-store" (NULL keeps
 * no-store): for answers a client may keep and revalidate. A 304 goes out without a
 * body, Content-Type or Content-Length (RFC 9110 15.4.5). */
void http_respond_cacheable(http_req_t *r, int status, const char *content_type,
                            const char *cache_control, const char *extra_headers,
                            const void *body, size_t len);
/* JSON error answer: {"error":error,"detail":detail}. */
void http_respond_error(http_req_t *r, int status, const char *error, const char *detail);
/* The same outside a parsed request (parse errors, timeouts): always closes. */
void http_respond_error_conn(struct conn *c, int status, const char *error, const char *detail);

/* Answering later, from the worker thread, after work elsewhere (the hub). The handler
 * calls http_defer() and keeps the handle; the parser stops after this request (later
 * pipelined bytes wait) until http_deferred_respond() answers it. The handle is owned
 * by whoever holds it and is freed by http_deferred_respond(); if the connection closed
 * meanwhile, that call only frees it. Worker thread only. */
typedef struct http_deferred http_deferred_t;
http_deferred_t *http_defer(http_req_t *r); /* NULL on ENOMEM (the caller answers 503) */
void http_deferred_respond(http_deferred_t *d, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t len);

/* The answer to this request (deferred or not) carries CORS headers for origin (copied;
 * access.c calls this only for allowed origins). */
void http_set_cors(http_req_t *r, const char *origin);

/* Called by a route that took the connection over (the WebSocket upgrade): after the
 * parser returns, remaining bytes go to the new protocol. */
void http_mark_upgraded(http_req_t *r);

#endif
