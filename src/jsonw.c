#include "jsonw.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_init(jsonw_t *w, buf_t *b) {
    w->b = b;
    w->need_comma = 0;
    w->depth = 0;
    w->err = 0;
}

int jsonw_error(const jsonw_t *w) { return w->err ? w->err : (w->depth ? -EINVAL : 0); }

static void put(jsonw_t *w, const char *s, size_t n) {
    if (!w->err && buf_append(w->b, s, n) < 0) w->err = -ENOMEM;
}

/* Called before every value: writes the separating comma unless the value follows a key. */
static void before_value(jsonw_t *w) {
    uint64_t bit = (uint64_t)1 << w->depth;
    if (w->need_comma & bit) put(w, ",", 1);
    w->need_comma |= bit;
}

void jsonw_key(jsonw_t *w, const char *k) {
    before_value(w);
    if (!w->err && jsonw_escape(w->b, k, strlen(k)) < 0) w->err = -ENOMEM;
    put(w, ":", 1);
    /* the value that follows must not write a comma */
    w->need_comma &= ~((uint64_t)1 << w->depth);
}

static void open_container(jsonw_t *w, char c) {
    before_value(w);
    put(w, &c, 1);
    if (w->depth >= JSONW_MAX_DEPTH) {
        w->err = -E2BIG;
        return;
    }
    w->depth++;
    w->need_comma &= ~((uint64_t)1 << w->depth);
}

static void close_container(jsonw_t *w, char c) {
    put(w, &c, 1);
    if (w->depth > 0) w->depth--;
    /* after a key the parent's bit was cleared; the container counts as its value */
    w->need_comma |= (uint64_t)1 << w->depth;
}

void jsonw_obj_open(jsonw_t *w) { open_container(w, '{'); }
void jsonw_obj_close(jsonw_t *w) { close_container(w, '}'); }
void jsonw_arr_open(jsonw_t *w) { open_container(w, '['); }
void jsonw_arr_close(jsonw_t *w) { close_container(w, ']'); }

/* Length of the well-formed UTF-8 sequence at s (at most n bytes, s[0] >= 0x80), or 0:
 * a stray continuation byte, a cut sequence, an overlong form, a surrogate or a code
 * point past U+10FFFF (RFC 3629, table 3-7 of Unicode). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        if (c == 0xe0) lo = 0xa0;      /* overlong */
        else if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        if (c == 0xf0) lo = 0x90;      /* overlong */
        else if (c == 0xf4) hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return k;
}

int jsonw_escape(buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, n + 2) < 0) return -ENOMEM;
    b->data[b->len++] = '"';
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') continue;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)s + i, n - i);
            if (k) {
                i += k - 1;
                continue;
            }
            /* not UTF-8 (a client's bytes, or a name cut to a length): JSON text must be
             * (RFC 8259), and so must a WebSocket text frame, which a browser drops the
             * connection over (1007). One U+FFFD per bad byte, as decoders do. */
            if (buf_append(b, s + run, i - run) < 0 || buf_append(b, "\\ufffd", 6) < 0)
                return -ENOMEM;
            run = i + 1;
            continue;
        }
        if (buf_append(b, s + run, i - run) < 0) return -ENOMEM;
        run = i + 1;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0';
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            len = 6;
        }
        if (buf_append(b, esc, len) < 0) return -ENOMEM;
    }
    if (buf_append(b, s + run, n - run) < 0) return -ENOMEM;
    return buf_putc(b, '"');
}

void jsonw_strn(jsonw_t *w, const char *s, size_t n) {
    before_value(w);
    if (!w->err && jsonw_escape(w->b, s, n) < 0) w->err = -ENOMEM;
}

void jsonw_str(jsonw_t *w, const char *s) {
    if (!s) {
        jsonw_null(w);
        return;
    }
    jsonw_strn(w, s, strlen(s));
}

/* Writes the decimal digits of u (no sign) ending at end; returns the start. */
static char *utoa_rev(uint64_t u, char *end) {
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

size_t jsonw_fmt_double(double v, char *out) {
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    /* Fast path for the values metrics mostly carry (integers, a few decimals): find the
     * fewest decimals k with v * 10^k an integer that reads back as v, and print that
     * integer with a point inserted. Same text as the shortest round-trip form, without
     * snprintf's cost (this runs once per series on every /metrics and update). */
    static const double p10[] = {1,    1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = fabs(v);
    if (a < 1e15 && (a >= 1e-4 || a == 0)) {
        for (int k = 0; k < 16; k++) {
            /* round, then check the round trip: a*10^k itself may be off by an ulp */
            double m = nearbyint(a * p10[k]);
            if (m >= 9007199254740992.0) break; /* 2^53: not exact any more */
            if (m / p10[k] != a) continue;
            char tmp[40], *end = tmp + sizeof tmp;
            char *p = utoa_rev((uint64_t)m, end);
            size_t n = 0;
            if (v < 0) out[n++] = '-';
            size_t digits = (size_t)(end - p);
            if (k == 0) {
                memcpy(out + n, p, digits);
                n += digits;
            } else {
                if (digits <= (size_t)k) { /* 0.00ddd */
                    out[n++] = '0';
                    out[n++] = '.';
                    for (size_t z = digits; z < (size_t)k; z++) out[n++] = '0';
                    memcpy(out + n, p, digits);
                    n += digits;
                } else {
                    size_t ip = digits - (size_t)k;
                    memcpy(out + n, p, ip);
                    n += ip;
                    out[n++] = '.';
                    memcpy(out + n, p + ip, (size_t)k);
                    n += (size_t)k;
                }
            }
            out[n] = '\0';
            return n;
        }
    }
    /* full precision: 17 significant digits always read back exactly (one snprintf; the
     * values that reach here rarely have a shorter exact form) */
    int n = snprintf(out, 32, "%.17g", v);
    return (size_t)n;
}

void jsonw_num(jsonw_t *w, double v) {
    char tmp[32];
    size_t n = jsonw_fmt_double(v, tmp);
    before_value(w);
    put(w, tmp, n);
}

void jsonw_int(jsonw_t *w, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    before_value(w);
    put(w, tmp, (size_t)n);
}

void jsonw_uint(jsonw_t *w, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    before_value(w);
    put(w, tmp, (size_t)n);
}

void jsonw_bool(jsonw_t *w, bool v) {
    before_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(jsonw_t *w) {
    before_value(w);
    put(w, "null", 4);
}

void jsonw_raw(jsonw_t *w, const char *json, size_t n) {
    before_value(w);
    put(w, json, n);
}

void jsonw_kv_str(jsonw_t *w, const char *k, const char *v) { jsonw_key(w, k), jsonw_str(w, v); }
void jsonw_kv_num(jsonw_t *w, const char *k, double v) { jsonw_key(w, k), jsonw_num(w, v); }
void jsonw_kv_int(jsonw_t *w, const char *k, int64_t v) { jsonw_key(w, k), jsonw_int(w, v); }
void jsonw_kv_uint(jsonw_t *w, const char *k, uint64_t v) { jsonw_key(w, k), jsonw_uint(w, v); }
void jsonw_kv_bool(jsonw_t *w, const char *k, bool v) { jsonw_key(w, k), jsonw_bool(w, v); }
