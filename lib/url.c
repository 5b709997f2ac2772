#include "url.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t errlen, int rc, const char *what, const char *s) {
    if (err && errlen) snprintf(err, errlen, "%s: %.200s", what, s);
    return rc;
}

/* ASCII only, whatever the caller's locale says */
static bool alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool xdigit(unsigned char c) {
    return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool host_char(char c) {
    return alnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* Bytes a request line can carry as they are: printable ASCII but space, '#' */
static bool path_char(char c) {
    unsigned char u = (unsigned char)c;
    return u > 0x20 && u < 0x7f && c != '#';
}

int metricast__url_parse(const char *s, mcl_url_t *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    if (!s || !*s) return fail(err, errlen, -EINVAL, "empty URL", "");
    const char *p = s;
    const char *sep = strstr(s, "://");
    if (sep) {
        size_t sl = (size_t)(sep - s);
        if (sl == 4 && strncasecmp(s, "http", 4) == 0) {
            u->scheme = MCL_URL_HTTP;
        } else if (sl == 2 && strncasecmp(s, "ws", 2) == 0) {
            u->scheme = MCL_URL_WS;
        } else if ((sl == 5 && strncasecmp(s, "https", 5) == 0) ||
                   (sl == 3 && strncasecmp(s, "wss", 3) == 0)) {
            return fail(err, errlen, -ENOTSUP,
                        "TLS is not supported by this client (use http:// or ws:// to a local "
                        "hub or proxy)", s);
        } else {
            return fail(err, errlen, -EINVAL, "unknown URL scheme (http:// or ws://)", s);
        }
        p = sep + 3;
    }
    /* authority: up to the first '/', '?' or '#' */
    size_t alen = strcspn(p, "/?#");
    if (memchr(p, '@', alen))
        return fail(err, errlen, -EINVAL, "credentials in the URL are not supported (use a token)", s);
    const char *a = p, *aend = p + alen;
    const char *port_at = NULL;
    if (a < aend && *a == '[') {
        const char *rb = memchr(a, ']', alen);
        if (!rb) return fail(err, errlen, -EINVAL, "unclosed '[' in URL host", s);
        size_t hl = (size_t)(rb - a - 1);
        if (hl == 0 || hl >= sizeof u->host) return fail(err, errlen, -EINVAL, "bad IPv6 host", s);
        for (const char *q = a + 1; q < rb; q++)
            if (!xdigit((unsigned char)*q) && *q != ':' && *q != '.' && *q != '%')
                return fail(err, errlen, -EINVAL, "bad IPv6 host", s);
        memcpy(u->host, a + 1, hl);
        u->ipv6 = 1;
        if (rb + 1 < aend) {
            if (rb[1] != ':') return fail(err, errlen, -EINVAL, "junk after ']' in URL", s);
            port_at = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        const char *hend = colon ? colon : aend;
        size_t hl = (size_t)(hend - a);
        if (hl == 0) return fail(err, errlen, -EINVAL, "no host in URL", s);
        if (hl >= sizeof u->host) return fail(err, errlen, -EINVAL, "URL host too long", s);
        for (const char *q = a; q < hend; q++)
            if (!host_char(*q)) return fail(err, errlen, -EINVAL, "bad character in URL host", s);
        memcpy(u->host, a, hl);
        if (colon) port_at = colon + 1;
    }
    u->port = 80;
    if (port_at) {
        if (port_at >= aend) return fail(err, errlen, -EINVAL, "empty port in URL", s);
        unsigned long v = 0;
        for (const char *q = port_at; q < aend; q++) {
            if (!digit((unsigned char)*q)) return fail(err, errlen, -EINVAL, "bad port in URL", s);
            v = v * 10 + (unsigned long)(*q - '0');
            if (v > 65535) return fail(err, errlen, -EINVAL, "port out of range in URL", s);
        }
        if (v == 0) return fail(err, errlen, -EINVAL, "port 0 in URL", s);
        u->port = (uint16_t)v;
    }
    p = aend;
    size_t plen = strcspn(p, "?#");
    if (plen >= sizeof u->path) return fail(err, errlen, -EINVAL, "URL path too long", s);
    for (size_t i = 0; i < plen; i++)
        if (!path_char(p[i])) return fail(err, errlen, -EINVAL, "bad character in URL path", s);
    memcpy(u->path, p, plen);
    p += plen;
    if (*p == '?') {
        p++;
        size_t ql = strcspn(p, "#");
        if (ql >= sizeof u->query) return fail(err, errlen, -EINVAL, "URL query too long", s);
        for (size_t i = 0; i < ql; i++)
            if (!path_char(p[i])) return fail(err, errlen, -EINVAL, "bad character in URL query", s);
        memcpy(u->query, p, ql);
    }
    return 0;
}

static void add_prefix(const mcl_url_t *u, mcl_sbuf_t *out) {
    size_t n = strlen(u->path);
    while (n > 0 && u->path[n - 1] == '/') n--;
    metricast__sb_add(out, u->path, n);
}

static void join_query(mcl_sbuf_t *out, size_t start, const char *q) {
    if (!*q) return;
    bool has = out->data && memchr(out->data + start, '?', out->len - start) != NULL;
    metricast__sb_putc(out, has ? '&' : '?');
    metricast__sb_puts(out, q);
}

void metricast__url_target(const mcl_url_t *u, const char *path, mcl_sbuf_t *out) {
    size_t start = out->len;
    add_prefix(u, out);
    metricast__sb_puts(out, path && *path ? path : "/");
    join_query(out, start, u->query);
}

void metricast__url_ws_target(const mcl_url_t *u, const char *token, mcl_sbuf_t *out) {
    size_t start = out->len;
    if (u->scheme == MCL_URL_WS && u->path[0]) {
        metricast__sb_puts(out, u->path);
    } else {
        add_prefix(u, out);
        metricast__sb_puts(out, "/ws");
    }
    join_query(out, start, u->query);
    if (token && *token) {
        bool has = memchr(out->data + start, '?', out->len - start) != NULL;
        metricast__sb_puts(out, has ? "&token=" : "?token=");
        metricast__url_encode(token, out);
    }
}

void metricast__url_hostport(const mcl_url_t *u, char *out, size_t outlen) {
    const char *l = u->ipv6 ? "[" : "", *r = u->ipv6 ? "]" : "";
    if (u->port == 80)
        snprintf(out, outlen, "%s%s%s", l, u->host, r);
    else
        snprintf(out, outlen, "%s%s%s:%u", l, u->host, r, (unsigned)u->port);
}

void metricast__url_encode(const char *s, mcl_sbuf_t *out) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (alnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            metricast__sb_putc(out, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            metricast__sb_add(out, e, 3);
        }
    }
}
