/* dashboard — the web dashboard and the JS client, served from bytes compiled into the
 * binary.
 *
 * The files under web/ (and uPlot, installed from npm into the build directory) are
 * turned into a table by tools/embed_assets at build time; nothing is read from disk or
 * fetched at run time. This module answers GET and HEAD for `/` and `/assets/...`:
 * Content-Type, a strong ETag per representation (If-None-Match → 304), gzip when the
 * client accepts it, `Cache-Control: no-cache` (revalidate every time, so a new binary's
 * page is never mixed with an old cached script) and the browser security headers
 * (Content-Security-Policy without inline scripts or styles, nosniff, Referrer-Policy:
 * no-referrer — the page URL may carry ?token=).
 *
 * Everything runs on the connection's worker thread; the table is immutable. */
#ifndef MC_DASHBOARD_H
#define MC_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

struct http_req;

/* One embedded file. All pointers are to static storage. */
typedef struct dash_asset {
    const char *path;         /* URL path: "/", "/assets/app.js" */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const char *etag;         /* quoted strong tag: "\"3f2a...\"" */
    const unsigned char *data;
    size_t len;
    const unsigned char *gzip; /* NULL when gzip would not save at least 10 % */
    size_t gzip_len;
    const char *gzip_etag;
} dash_asset_t;

/* Defined in the generated source (build/gen/dash_assets.c). */
extern const dash_asset_t dash_assets[];
extern const size_t dash_assets_count;

/* The asset served at path, or NULL. */
const dash_asset_t *dashboard_find(const char *path);

/* Route handler for `/` and `/assets/` (GET, HEAD): always answers. */
void dashboard_handle(struct http_req *r);

/* ---- pure helpers, exposed for the unit tests ----------------------------------------- */

/* If-None-Match (RFC 9110 13.1.2, weak comparison): true when the header lists etag (a
 * quoted tag as stored) or is "*". A malformed header matches nothing. */
bool dashboard_etag_matches(const char *if_none_match, const char *etag);
/* Accept-Encoding: true when gzip (or x-gzip, or "*" without an explicit gzip) is
 * accepted with a non-zero q. NULL: false. */
bool dashboard_accepts_gzip(const char *accept_encoding);
/* Writes the Content-Security-Policy value. host (the request's Host header, may be NULL)
 * is added to connect-src as ws://host and wss://host when it is a plain host[:port];
 * otherwise only 'self' is allowed. Returns the length, or -1 if out is too small. */
int dashboard_csp(const char *host, char *out, size_t outlen);

#endif
