/* url — the hub addresses the client accepts, parsed without any I/O. Pure.
 *
 *   http://HOST[:PORT][/PREFIX][?QUERY]   the hub's base (REST under PREFIX, /ws under it)
 *   ws://HOST[:PORT][/PATH][?QUERY]       a WebSocket endpoint (no PATH: PREFIX rules)
 *   HOST:PORT                             as http://HOST:PORT
 * HOST is a name, an IPv4 address, or an IPv6 address in brackets. Default port 80.
 * https:// and wss:// are refused with -ENOTSUP (no TLS in this library: run the hub on
 * loopback or behind a TLS-terminating proxy, and talk to it in plain text locally);
 * user:password@ is refused with -EINVAL (use a token). A #fragment is ignored. */
#ifndef MCL_URL_H
#define MCL_URL_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

enum { MCL_URL_HTTP = 0, MCL_URL_WS = 1 };

typedef struct mcl_url {
    int scheme;         /* MCL_URL_HTTP or MCL_URL_WS */
    char host[256];     /* without brackets */
    int ipv6;           /* the host was bracketed */
    uint16_t port;
    char path[1024];    /* "" or starting with '/', without the query */
    char query[1024];   /* without the '?' ("" if none) */
} mcl_url_t;

/* 0, -EINVAL or -ENOTSUP, with err (may be NULL) saying what is wrong. */
int metricast__url_parse(const char *s, mcl_url_t *u, char *err, size_t errlen);

/* The request target for path (which starts with '/' and may carry "?query") under the
 * base URL's prefix: prefix (without a trailing '/') + path, then the base's own query
 * joined with '&'. Appended to out. */
void metricast__url_target(const mcl_url_t *u, const char *path, mcl_sbuf_t *out);

/* The WebSocket target: a ws:// URL's own path (or, for an http:// base or a ws:// URL
 * without a path, prefix + "/ws"), its query, then "token=<token>" when token is set.
 * Appended to out. */
void metricast__url_ws_target(const mcl_url_t *u, const char *token, mcl_sbuf_t *out);

/* "host:port" as the Host header wants it (brackets for IPv6; ":port" left out for 80). */
void metricast__url_hostport(const mcl_url_t *u, char *out, size_t outlen);

/* Appends s percent-encoded for a query value (unreserved characters kept). */
void metricast__url_encode(const char *s, mcl_sbuf_t *out);

#endif
