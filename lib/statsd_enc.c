#include "statsd_enc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jsonenc.h"

static bool ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool metricast__statsd_name_ok(const char *s, bool allow_empty) {
    if (!s) return allow_empty;
    if (!*s) return allow_empty;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (ctl(*p) || *p == ':' || *p == '|' || *p == '@' || *p == '#') return false;
    return true;
}

bool metricast__statsd_tag_ok(const char *s) {
    if (!s || !*s) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (ctl(*p) || *p == '|' || *p == ',' || *p == '#') return false;
    return true;
}

bool metricast__statsd_member_ok(const char *s) {
    if (!s || !*s) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (ctl(*p) || *p == ':' || *p == '|' || *p == '#') return false;
    return true;
}

enum { NAME = 0, TAG = 1, PLAIN = 2 };

/* Copies s to out at *n while checking it as a name or tag (PLAIN: not checked): one
 * pass. Past cap it keeps checking without copying (*over set), so a bad character is
 * -EINVAL whatever the length. */
static int put(char *out, size_t cap, size_t *n, const char *s, int kind, bool *over) {
    size_t i = *n;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (kind != PLAIN && (ctl(c) || c == '|' || c == '#' ||
                              (kind == NAME ? (c == ':' || c == '@') : c == ',')))
            return -EINVAL;
        if (i + 1 < cap)
            out[i++] = (char)c;
        else
            *over = true;
    }
    *n = i;
    return 0;
}

static int put_tags(char *out, size_t cap, size_t *n, const char *const *tags, bool *first,
                    bool *over) {
    if (!tags) return 0;
    for (; *tags; tags++) {
        if (!**tags) return -EINVAL;
        put(out, cap, n, *first ? "|#" : ",", PLAIN, over);
        int rc = put(out, cap, n, *tags, TAG, over);
        if (rc) return rc;
        *first = false;
    }
    return 0;
}

int metricast__statsd_line(char *out, size_t cap, const char *prefix, const char *name,
                           const char *value_text, const char *type, double rate,
                           const char *const *tags_a, const char *const *tags_b) {
    if (!name || !*name) return -EINVAL;
    if (!value_text || !*value_text || !type || !*type || cap == 0) return -EINVAL;
    if (!(rate > 0 && rate <= 1) && rate != 0) return -EINVAL;
    size_t n = 0;
    bool over = false;
    if ((prefix && put(out, cap, &n, prefix, NAME, &over)) || put(out, cap, &n, name, NAME, &over))
        return -EINVAL;
    put(out, cap, &n, ":", PLAIN, &over);
    put(out, cap, &n, value_text, PLAIN, &over);
    put(out, cap, &n, "|", PLAIN, &over);
    put(out, cap, &n, type, PLAIN, &over);
    if (rate > 0 && rate < 1) {
        char r[MCL_NUM_LEN];
        metricast__fmt_double(rate, r);
        put(out, cap, &n, "|@", PLAIN, &over);
        put(out, cap, &n, r, PLAIN, &over);
    }
    bool first = true;
    if (put_tags(out, cap, &n, tags_a, &first, &over) ||
        put_tags(out, cap, &n, tags_b, &first, &over))
        return -EINVAL;
    if (over) return -EMSGSIZE;
    out[n] = '\0';
    return (int)n;
}

void metricast__batch_init(mcl_batch_t *b, size_t max) {
    b->len = 0;
    b->lines = 0;
    b->max = max > sizeof b->buf ? sizeof b->buf : max;
}

int metricast__batch_flush(mcl_batch_t *b, mcl_datagram_fn emit, void *ctx) {
    if (!b->len) return 0;
    int rc = emit(ctx, b->buf, b->len, b->lines);
    b->len = 0;
    b->lines = 0;
    return rc;
}

int metricast__batch_add(mcl_batch_t *b, const char *unit, size_t len, unsigned lines,
                         mcl_datagram_fn emit, void *ctx) {
    if (len > b->max) return -EMSGSIZE;
    int rc = 0;
    if (b->len && b->len + 1 + len > b->max) rc = metricast__batch_flush(b, emit, ctx);
    if (b->len) b->buf[b->len++] = '\n';
    memcpy(b->buf + b->len, unit, len);
    b->len += len;
    b->lines += lines;
    return rc;
}
