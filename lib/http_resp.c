#include "http_resp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *find_crlf(const char *p, const char *end) {
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n') return p;
    return NULL;
}

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

static bool name_is(const char *n, size_t nl, const char *want) {
    return strlen(want) == nl && strncasecmp(n, want, nl) == 0;
}

/* Comma-separated token list (Connection, Transfer-Encoding) contains tok. */
static bool has_token(const char *v, const char *ve, const char *tok, bool last_only) {
    bool found = false;
    const char *p = v;
    while (p < ve) {
        const char *c = memchr(p, ',', (size_t)(ve - p));
        const char *te = c ? c : ve;
        const char *s = p, *e = te;
        trim(&s, &e);
        bool is = (size_t)(e - s) == strlen(tok) && strncasecmp(s, tok, (size_t)(e - s)) == 0;
        found = last_only ? is : (found || is);
        p = c ? c + 1 : ve;
    }
    return found;
}

static void copy_value(char *dst, size_t cap, const char *v, const char *ve) {
    size_t n = (size_t)(ve - v);
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

int metricast__http_parse_head(const char *buf, size_t len, mcl_http_head_t *h) {
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    /* the status line can be judged before the head is complete: fail early on non-HTTP */
    size_t check = len < 5 ? len : 5;
    if (memcmp(buf, "HTTP/", check) != 0) return -EPROTO;
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i + 4;
            break;
        }
    }
    if (!end) return len > MCL_HTTP_MAX_HEAD ? -EPROTO : 0;
    if ((size_t)(end - buf) > MCL_HTTP_MAX_HEAD) return -EPROTO;
    h->head_len = (size_t)(end - buf);
    const char *p = buf;
    const char *eol = find_crlf(p, end);
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return -EPROTO;
    h->minor = p[7] - '0';
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9') return -EPROTO;
    if (eol - p > 12 && p[12] != ' ') return -EPROTO;
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (h->status < 100) return -EPROTO;
    p = eol + 2;
    bool have_cl = false;
    while (p < end - 2) {
        eol = find_crlf(p, end);
        if (!eol) return -EPROTO;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return -EPROTO;
        for (const char *q = p; q < colon; q++)
            if (*q == ' ' || *q == '\t' || (unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e)
                return -EPROTO; /* no whitespace before ':' (RFC 9112 5.1) */
        for (const char *q = colon + 1; q < eol; q++)
            if (*q == '\0') return -EPROTO;
        const char *n = p;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1, *ve = eol;
        trim(&v, &ve);
        if (name_is(n, nl, "Content-Length")) {
            long long cl = 0;
            if (v == ve) return -EPROTO;
            for (const char *q = v; q < ve; q++) {
                if (*q < '0' || *q > '9' || cl > (1LL << 50)) return -EPROTO;
                cl = cl * 10 + (*q - '0');
            }
            if (have_cl && cl != h->content_length) return -EPROTO;
            have_cl = true;
            h->content_length = cl;
        } else if (name_is(n, nl, "Transfer-Encoding")) {
            if (has_token(v, ve, "chunked", true)) h->chunked = 1;
        } else if (name_is(n, nl, "Connection")) {
            if (has_token(v, ve, "close", false)) h->conn_close = 1;
            if (has_token(v, ve, "upgrade", false)) h->conn_upgrade = 1;
        } else if (name_is(n, nl, "Upgrade")) {
            if (has_token(v, ve, "websocket", false)) h->upgrade_websocket = 1;
        } else if (name_is(n, nl, "Content-Type")) {
            copy_value(h->content_type, sizeof h->content_type, v, ve);
        } else if (name_is(n, nl, "Sec-WebSocket-Accept")) {
            copy_value(h->ws_accept, sizeof h->ws_accept, v, ve);
        }
        p = eol + 2;
    }
    if (h->chunked) h->content_length = -1; /* RFC 9112 6.3: chunked wins */
    return 1;
}

int metricast__http_has_body(const mcl_http_head_t *h, const char *method) {
    if (method && strcmp(method, "HEAD") == 0) return 0;
    if (h->status < 200 || h->status == 204 || h->status == 304) return 0;
    return 1;
}

/* De-chunks data; 1 complete, 0 incomplete, -EPROTO malformed. Appends to out only when
 * complete (out is left as it was otherwise). */
static int dechunk(const char *data, size_t len, mcl_sbuf_t *out) {
    size_t start = out->len;
    const char *p = data, *end = data + len;
    for (;;) {
        const char *eol = find_crlf(p, end);
        if (!eol) {
            if ((size_t)(end - p) > 1024) goto bad; /* a size line that never ends */
            goto more;
        }
        unsigned long long size = 0;
        const char *q = p;
        int digits = 0;
        for (; q < eol; q++) {
            int d;
            if (*q >= '0' && *q <= '9') d = *q - '0';
            else if (*q >= 'a' && *q <= 'f') d = *q - 'a' + 10;
            else if (*q >= 'A' && *q <= 'F') d = *q - 'A' + 10;
            else break;
            if (++digits > 15) goto bad;
            size = size * 16 + (unsigned long long)d;
        }
        if (digits == 0 || (q < eol && *q != ';' && *q != ' ' && *q != '\t')) goto bad;
        p = eol + 2;
        if (size == 0) {
            /* trailers (ignored), then the blank line */
            for (;;) {
                eol = find_crlf(p, end);
                if (!eol) goto more;
                if (eol == p) return 1;
                p = eol + 2;
            }
        }
        if ((unsigned long long)(end - p) < size + 2) goto more;
        if (p[size] != '\r' || p[size + 1] != '\n') goto bad;
        metricast__sb_add(out, p, (size_t)size);
        p += size + 2;
    }
more:
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return 0;
bad:
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -EPROTO;
}

int metricast__http_body(const mcl_http_head_t *h, const char *data, size_t len, int eof,
                         mcl_sbuf_t *out) {
    if (h->chunked) {
        int rc = dechunk(data, len, out);
        if (rc == 0 && eof) return -EPROTO;
        return rc;
    }
    if (h->content_length >= 0) {
        if (len >= (size_t)h->content_length) {
            metricast__sb_add(out, data, (size_t)h->content_length);
            return 1;
        }
        return eof ? -EPROTO : 0;
    }
    if (!eof) return 0;
    metricast__sb_add(out, data, len); /* delimited by the close */
    return 1;
}
