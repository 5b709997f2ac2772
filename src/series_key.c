#include "series_key.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static series_key_t *build(const char *name, size_t name_len, const skey_label_t *labels,
                           const size_t *vlen, int n) {
    size_t len = name_len + 1;
    for (int i = 0; i < n; i++) len += strlen(labels[i].name) + 1 + vlen[i] + 1;
    series_key_t *k = malloc(sizeof *k + len);
    if (!k) return NULL;
    atomic_init(&k->refs, 1);
    char *p = k->data;
    memcpy(p, name, name_len);
    p += name_len;
    *p++ = '\0';
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(labels[i].name);
        memcpy(p, labels[i].name, nl + 1);
        p += nl + 1;
        memcpy(p, labels[i].value, vlen[i]);
        p += vlen[i];
        *p++ = '\0';
    }
    k->len = (uint32_t)len;
    k->name_len = (uint16_t)name_len;
    k->nlabels = (uint8_t)n;
    k->hash = hash_bytes(k->data, len, 0);
    return k;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF): label values go
 * verbatim into JSON and the Prometheus text, both of which must be valid UTF-8. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static int cmp_label(const void *a, const void *b) {
    return strcmp(((const skey_label_t *)a)->name, ((const skey_label_t *)b)->name);
}

int skey_from_line(const statsd_line_t *line, series_key_t **out) {
    char name[STATSD_MAX_NAME + 8];
    size_t nl = statsd_sanitize(line->name, line->name_len, name, sizeof name);
    if (nl == 0) return STATSD_BAD_NAME;

    /* label names sanitised into one scratch area; values stay where they are, but need
     * a NUL for sorting-independent copying, so copy them too */
    char scratch[STATSD_MAX_TAGS * 2 * 260];
    skey_label_t labels[STATSD_MAX_TAGS];
    size_t vlen[STATSD_MAX_TAGS];
    size_t used = 0;
    int n = 0;
    for (int i = 0; i < line->ntags && i < STATSD_MAX_TAGS; i++) {
        const statsd_tag_t *t = &line->tags[i];
        char *kbuf = scratch + used;
        size_t kl = statsd_sanitize(t->key, t->key_len, kbuf, 257);
        if (kl == 0 || (kl >= 2 && kbuf[0] == '_' && kbuf[1] == '_')) return STATSD_BAD_TAGS;
        /* a timer is exposed as a summary, whose samples carry their own quantile label */
        if (line->kind == METRIC_TIMER && strcmp(kbuf, "quantile") == 0) return STATSD_BAD_TAGS;
        used += kl + 1;
        char *vbuf = scratch + used;
        if (memchr(t->value, '\0', t->value_len) ||
            !valid_utf8((const unsigned char *)t->value, t->value_len))
            return STATSD_BAD_TAGS;
        memcpy(vbuf, t->value, t->value_len);
        vbuf[t->value_len] = '\0';
        used += t->value_len + 1;
        labels[n].name = kbuf;
        labels[n].value = vbuf;
        vlen[n] = t->value_len;
        n++;
    }
    /* stable order by name; then drop earlier duplicates (the last one wins) */
    for (int i = 1; i < n; i++) { /* insertion sort: n <= 16, and keeps it stable */
        skey_label_t l = labels[i];
        size_t v = vlen[i];
        int j = i - 1;
        while (j >= 0 && strcmp(labels[j].name, l.name) > 0) {
            labels[j + 1] = labels[j];
            vlen[j + 1] = vlen[j];
            j--;
        }
        labels[j + 1] = l;
        vlen[j + 1] = v;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(labels[i].name, labels[i + 1].name) == 0) continue;
        labels[m] = labels[i];
        vlen[m] = vlen[i];
        m++;
    }
    series_key_t *k = build(name, nl, labels, vlen, m);
    if (!k) return -ENOMEM;
    *out = k;
    return STATSD_OK;
}

series_key_t *skey_new(const char *name, const skey_label_t *labels, int nlabels) {
    skey_label_t sorted[SKEY_MAX_LABELS];
    size_t vlen[SKEY_MAX_LABELS];
    if (nlabels > SKEY_MAX_LABELS) nlabels = SKEY_MAX_LABELS;
    if (nlabels > 0) memcpy(sorted, labels, (size_t)nlabels * sizeof *labels);
    qsort(sorted, (size_t)nlabels, sizeof *sorted, cmp_label);
    for (int i = 0; i < nlabels; i++) vlen[i] = strlen(sorted[i].value);
    return build(name, strlen(name), sorted, vlen, nlabels);
}

void skey_unref(series_key_t *k) {
    if (k && atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) == 1) free(k);
}

void skey_label(const series_key_t *k, int i, skey_label_t *out) {
    const char *p = k->data + k->name_len + 1;
    for (int j = 0; j < i; j++) {
        p += strlen(p) + 1;
        p += strlen(p) + 1;
    }
    out->name = p;
    out->value = p + strlen(p) + 1;
}

const char *skey_label_value(const series_key_t *k, const char *name) {
    const char *p = k->data + k->name_len + 1;
    for (int j = 0; j < k->nlabels; j++) {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, name) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

bool skey_equal(const series_key_t *a, const series_key_t *b) {
    return a == b || (a->hash == b->hash && a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
}
