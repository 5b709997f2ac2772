#include "sbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int metricast__sb_reserve(mcl_sbuf_t *b, size_t n) {
    if (b->err) return b->err;
    if (b->len + n + 1 <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + n + 1) {
        if (ncap > ((size_t)-1) / 2) {
            b->err = -ENOMEM;
            return b->err;
        }
        ncap *= 2;
    }
    char *nd = realloc(b->data, ncap);
    if (!nd) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->data = nd;
    b->cap = ncap;
    return 0;
}

void metricast__sb_add(mcl_sbuf_t *b, const void *p, size_t n) {
    if (metricast__sb_reserve(b, n) < 0) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void metricast__sb_puts(mcl_sbuf_t *b, const char *s) { metricast__sb_add(b, s, strlen(s)); }

void metricast__sb_putc(mcl_sbuf_t *b, char c) { metricast__sb_add(b, &c, 1); }

void metricast__sb_printf(mcl_sbuf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = b->err ? b->err : -EINVAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        metricast__sb_add(b, small, (size_t)n);
        return;
    }
    if (metricast__sb_reserve(b, (size_t)n) < 0) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void metricast__sb_consume(mcl_sbuf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        if (b->data) b->data[0] = '\0';
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

int metricast__sb_error(const mcl_sbuf_t *b) { return b->err; }

char *metricast__sb_steal(mcl_sbuf_t *b, size_t *len) {
    if (b->err) {
        metricast__sb_free(b);
        return NULL;
    }
    if (!b->data) metricast__sb_add(b, "", 0);
    char *d = b->err ? NULL : b->data;
    if (len) *len = d ? b->len : 0;
    if (!d) free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = 0;
    return d;
}

void metricast__sb_free(mcl_sbuf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}
