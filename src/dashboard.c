#include "dashboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

const dash_asset_t *dashboard_find(const char *path) {
    for (size_t i = 0; i < dash_assets_count; i++)
        if (strcmp(dash_assets[i].path, path) == 0) return &dash_assets[i];
    return NULL;
}

static const char *skip_ows(const char *p) {
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* opaque tag of a stored etag: between its quotes */
static bool same_opaque(const char *a, size_t alen, const char *stored) {
    size_t slen = strlen(stored);
    if (slen < 2 || stored[0] != '"' || stored[slen - 1] != '"') return false;
    return alen == slen - 2 && memcmp(a, stored + 1, alen) == 0;
}

bool dashboard_etag_matches(const char *inm, const char *etag) {
    if (!inm || !etag) return false;
    const char *p = skip_ows(inm);
    if (*p == '*') return *skip_ows(p + 1) == '\0';
    /* 1#entity-tag: [W/] DQUOTE *etagc DQUOTE, separated by commas (etagc may be a comma:
     * parse by quotes, not by splitting) */
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\0') return false;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') return false;
        const char *open = ++p;
        while (*p && *p != '"') p++;
        if (*p != '"') return false;
        if (same_opaque(open, (size_t)(p - open), etag)) return true;
        p = skip_ows(p + 1);
        if (*p != ',' && *p != '\0') return false;
    }
}

/* q value of one Accept-Encoding element's parameters ("; q=0.5"); 1 when absent,
 * -1 when malformed */
static double qvalue(const char *params, size_t n) {
    const char *end = params + n, *p = params;
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            char tmp[16];
            size_t k = 0;
            p += 2;
            while (p < end && k + 1 < sizeof tmp && *p != ';' && *p != ' ' && *p != '\t')
                tmp[k++] = *p++;
            tmp[k] = '\0';
            char *e;
            double q = strtod(tmp, &e);
            if (!k || *e || q < 0 || q > 1) return -1;
            return q;
        }
        while (p < end && *p != ';') p++;
    }
    return 1;
}

bool dashboard_accepts_gzip(const char *ae) {
    if (!ae) return false;
    double gzip_q = -2, star_q = -2; /* -2: not mentioned */
    const char *p = ae;
    while (*p) {
        p = skip_ows(p);
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t') p++;
        size_t tlen = (size_t)(p - tok);
        const char *params = p;
        while (*p && *p != ',') p++;
        double q = qvalue(params, (size_t)(p - params));
        if (*p == ',') p++;
        if (q < 0) continue; /* a malformed element says nothing */
        if ((tlen == 4 && strncasecmp(tok, "gzip", 4) == 0) ||
            (tlen == 6 && strncasecmp(tok, "x-gzip", 6) == 0))
            gzip_q = q;
        else if (tlen == 1 && *tok == '*')
            star_q = q;
    }
    if (gzip_q > -2) return gzip_q > 0;
    return star_q > 0;
}

/* host[:port], with a reg-name, IPv4 or bracketed IPv6: nothing that could end the
 * header value or the CSP source expression */
static bool plain_host(const char *h) {
    size_t n = strlen(h);
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_'))
            return false;
    }
    return true;
}

int dashboard_csp(const char *host, char *out, size_t outlen) {
    /* default-src 'none': everything not listed is refused. No 'unsafe-inline' anywhere:
     * the page has no inline script or style (uPlot styles through the CSSOM, which CSP
     * allows). connect-src names the page's own ws:// and wss:// explicitly, for
     * browsers that do not count them as 'self'. */
    char conn[600];
    if (host && plain_host(host))
        snprintf(conn, sizeof conn, "'self' ws://%s wss://%s", host, host);
    else
        snprintf(conn, sizeof conn, "'self'");
    int n = snprintf(out, outlen,
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                     "connect-src %s; base-uri 'none'; form-action 'none'; "
                     "frame-ancestors 'none'",
                     conn);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

void dashboard_handle(http_req_t *r) {
    const dash_asset_t *a = dashboard_find(r->path);
    if (!a) {
        char detail[300];
        snprintf(detail, sizeof detail, "no such asset: %.256s", r->path);
        http_respond_error(r, 404, "not_found", detail);
        return;
    }
    bool gz = a->gzip && dashboard_accepts_gzip(http_header(r, "Accept-Encoding"));
    const char *etag = gz ? a->gzip_etag : a->etag;
    char csp[800];
    if (dashboard_csp(http_header(r, "Host"), csp, sizeof csp) < 0)
        dashboard_csp(NULL, csp, sizeof csp);
    /* X-Content-Type-Options: nosniff and, for origins listed in [server] allowed_origins,
     * the CORS headers come with every answer (http.c, access.c) */
    char hdr[1400];
    snprintf(hdr, sizeof hdr,
             "ETag: %s\r\n%s%s"
             "Content-Security-Policy: %s\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "X-Frame-Options: DENY\r\n",
             etag, a->gzip ? "Vary: Accept-Encoding\r\n" : "",
             gz ? "Content-Encoding: gzip\r\n" : "", csp);
    int status = dashboard_etag_matches(http_header(r, "If-None-Match"), etag) ? 304 : 200;
    http_respond_cacheable(r, status, a->content_type, "no-cache", hdr, gz ? a->gzip : a->data,
                           gz ? a->gzip_len : a->len);
}
