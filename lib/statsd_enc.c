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

/* appends s to out at *n, or fails with -EMSGSIZE */
static int put(char *out, size_t cap, size_t *n, const char *s, size_t l) {
    if (*n + l >= cap) return -EMSGSIZE;
    memcpy(out + *n, s, l);
    *n += l;
    return 0;
}

static int put_tags(char *out, size_t cap, size_t *n, const char *const *tags, bool *first) {
    if (!tags) return 0;
    for (; *tags; tags++) {
        if (!metricast__statsd_tag_ok(*tags)) return -EINVAL;
        int rc = put(out, cap, n, *first ? "|#" : ",", *first ? 2 : 1);
        if (rc == 0) rc = put(out, cap, n, *tags, strlen(*tags));
        if (rc) return rc;
        *first = false;
    }
    return 0;
}

int metricast__statsd_line(char *out, size_t cap, const char *prefix, const char *name,
                           const char *value_text, const char *type, double rate,
                           const char *const *tags_a, const char *const *tags_b) {
    if (!metricast__statsd_name_ok(prefix, true) || !metricast__statsd_name_ok(name, false))
        return -EINVAL;
    if (!value_text || !*value_text || !type || !*type) return -EINVAL;
    if (!(rate > 0 && rate <= 1) && rate != 0) return -EINVAL;
    /* validate every tag before judging sizes: a bad tag is -EINVAL whatever the length */
    for (const char *const *t = tags_a; t && *t; t++)
        if (!metricast__statsd_tag_ok(*t)) return -EINVAL;
    for (const char *const *t = tags_b; t && *t; t++)
        if (!metricast__statsd_tag_ok(*t)) return -EINVAL;
    size_t n = 0;
    int rc = 0;
    if (prefix) rc = put(out, cap, &n, prefix, strlen(prefix));
    if (!rc) rc = put(out, cap, &n, name, strlen(name));
    if (!rc) rc = put(out, cap, &n, ":", 1);
    if (!rc) rc = put(out, cap, &n, value_text, strlen(value_text));
    if (!rc) rc = put(out, cap, &n, "|", 1);
    if (!rc) rc = put(out, cap, &n, type, strlen(type));
    if (!rc && rate > 0 && rate < 1) {
        char r[MCL_NUM_LEN];
        int rl = metricast__fmt_double(rate, r);
        rc = put(out, cap, &n, "|@", 2);
        if (!rc) rc = put(out, cap, &n, r, (size_t)rl);
    }
    bool first = true;
    if (!rc) rc = put_tags(out, cap, &n, tags_a, &first);
    if (!rc) rc = put_tags(out, cap, &n, tags_b, &first);
    if (rc) return rc;
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
