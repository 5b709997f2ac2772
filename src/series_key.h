/* series_key — the identity of a series: sanitised name plus labels sorted by name.
 *
 * Immutable once built and reference-counted, so one key is shared by the ingest thread
 * that first saw it, the batches that carry it and the registry entry that owns the
 * series, across threads, with no copies. Layout: "name\0k1\0v1\0k2\0v2\0..." — equal
 * keys are equal bytes, so comparing is memcmp. */
#ifndef MC_SERIES_KEY_H
#define MC_SERIES_KEY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "statsd.h"

#define SKEY_MAX_LABELS 16

typedef struct series_key {
    atomic_uint refs;
    uint32_t len; /* bytes in data, final NUL included */
    uint64_t hash;
    uint16_t name_len;
    uint8_t nlabels;
    char data[];
} series_key_t;

typedef struct skey_label {
    const char *name, *value;
} skey_label_t;

/* Builds the canonical key of a parsed sample: name sanitised (statsd_exporter rules),
 * label names sanitised, sorted, later duplicates win. Returns STATSD_OK with *out (one
 * reference), or the reason the sample cannot name a series (STATSD_BAD_NAME,
 * STATSD_BAD_TAGS for a label name that is empty or reserved ("__" prefix) after
 * sanitising), or -ENOMEM. */
int skey_from_line(const statsd_line_t *line, series_key_t **out);
/* From a plain name and labels (already valid names). NULL on ENOMEM. */
series_key_t *skey_new(const char *name, const skey_label_t *labels, int nlabels);

static inline series_key_t *skey_ref(series_key_t *k) {
    atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}
void skey_unref(series_key_t *k); /* NULL allowed */

static inline const char *skey_name(const series_key_t *k) { return k->data; }
/* Label i (0-based, < nlabels). */
void skey_label(const series_key_t *k, int i, skey_label_t *out);
/* Value of label name, or NULL. */
const char *skey_label_value(const series_key_t *k, const char *name);
bool skey_equal(const series_key_t *a, const series_key_t *b);

#endif
