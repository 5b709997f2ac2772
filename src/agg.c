#include "agg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* An entry is found by the raw bytes of the line's identity: kind, name and tags as sent.
 * The same raw bytes always give the same canonical key, so the (costly) canonical form
 * is built once per distinct raw key per producer, not per line.
 *
 * Two encodings of the tags: StatsD text keeps its tag section as one span of the input
 * (compared in place, nothing copied); JSON labels are not contiguous and are encoded
 * with a 16-bit length before every key and value (lengths, not separators: any byte may
 * occur inside a value). The encoding is part of the identity, so the two never meet. */
#define RAW_MAX (STATSD_MAX_NAME + STATSD_MAX_TAGS * (4 + 2 * 256))
enum { ENC_SPAN = 0, ENC_LENGTHS = 1 };

struct agg_entry {
    uint64_t hash;
    series_key_t *key;
    uint32_t name_len, tags_len;
    uint32_t nlines;
    uint64_t last_flush; /* a.flushes when last touched */
    metric_kind_t kind;
    uint8_t enc;
    bool dirty;
    union {
        struct {
            double counter; /* increments (after the total, when has_total) */
            bool counter_has_total;
            double counter_abs;
        };
        struct {
            bool has_abs;
            double abs, delta;
        } gauge;
        sketch_t *timer;
        agg_set_t set;
    } acc;
    char raw[]; /* name bytes, then tag bytes: in the entry, one cache miss for both */
};

const char *ingest_transport_name(ingest_transport_t t) {
    static const char *const names[] = {"udp", "http", "ws"};
    return t < INGEST_TRANSPORT_COUNT ? names[t] : "unknown";
}

void agg_init(agg_t *a, uint32_t max_entries) {
    memset(a, 0, sizeof *a);
    a->max_entries = max_entries ? max_entries : 1000000;
}

static void entry_clear_acc(agg_entry_t *e) {
    switch (e->kind) {
    case METRIC_TIMER:
        if (e->acc.timer) {
            sketch_free(e->acc.timer);
            free(e->acc.timer);
        }
        e->acc.timer = NULL;
        break;
    case METRIC_SET: agg_set_free(&e->acc.set); break;
    default: memset(&e->acc, 0, sizeof e->acc); break;
    }
}

static void entry_free(agg_entry_t *e) {
    entry_clear_acc(e);
    skey_unref(e->key);
    free(e);
}

void agg_free(agg_t *a) {
    for (uint32_t i = 0; i < a->cap; i++)
        if (a->slots[i].e) entry_free(a->slots[i].e);
    free(a->slots);
    free(a->dirty);
    memset(a, 0, sizeof *a);
}

int agg_set_insert(agg_set_t *s, uint64_t h) {
    if (h == 0) h = 1;
    if ((s->n + 1) * 4 > s->cap * 3) { /* keep load under 3/4 */
        uint32_t ncap = s->cap ? s->cap * 2 : 16;
        uint64_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -ENOMEM;
        for (uint32_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slots[i];
            if (!v) continue;
            uint32_t j = (uint32_t)v & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = v;
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    uint32_t j = (uint32_t)h & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == h) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = h;
    s->n++;
    return 1;
}

void agg_set_free(agg_set_t *s) {
    free(s->slots);
    memset(s, 0, sizeof *s);
}

static size_t put_seg(char *out, size_t n, const char *p, size_t len) {
    out[n++] = (char)(len & 0xff);
    out[n++] = (char)(len >> 8);
    memcpy(out + n, p, len);
    return n + len;
}

/* The tag bytes of a line's identity: its own span, or the length-encoded labels. */
static const char *tag_bytes(const statsd_line_t *l, char *buf, size_t *len, uint8_t *enc) {
    if (l->tags_raw || l->ntags == 0) {
        *enc = ENC_SPAN;
        *len = l->tags_raw_len;
        return l->tags_raw ? l->tags_raw : "";
    }
    size_t n = 0;
    for (int i = 0; i < l->ntags; i++) {
        n = put_seg(buf, n, l->tags[i].key, l->tags[i].key_len);
        n = put_seg(buf, n, l->tags[i].value, l->tags[i].value_len);
    }
    *enc = ENC_LENGTHS;
    *len = n;
    return buf;
}

static int grow_table(agg_t *a) {
    uint32_t ncap = a->cap ? a->cap * 2 : 64;
    agg_slot_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (uint32_t i = 0; i < a->cap; i++) {
        if (!a->slots[i].e) continue;
        uint32_t j = (uint32_t)a->slots[i].hash & (ncap - 1);
        while (ns[j].e) j = (j + 1) & (ncap - 1);
        ns[j] = a->slots[i];
    }
    free(a->slots);
    a->slots = ns;
    a->cap = ncap;
    return 0;
}

static int mark_dirty(agg_t *a, agg_entry_t *e) {
    if (e->dirty) return 0;
    if (a->ndirty == a->dirty_cap) {
        uint32_t ncap = a->dirty_cap ? a->dirty_cap * 2 : 64;
        agg_entry_t **nd = realloc(a->dirty, ncap * sizeof *nd);
        if (!nd) return -ENOMEM;
        a->dirty = nd;
        a->dirty_cap = ncap;
    }
    a->dirty[a->ndirty++] = e;
    e->dirty = true;
    return 0;
}

static inline uint64_t line_hash(const statsd_line_t *line, const char *tags, size_t tl,
                                 uint8_t enc) {
    uint64_t h = hash_bytes(line->name, line->name_len, 0x6d6574726963ULL + line->kind * 2 + enc);
    if (tl) h = hash_mix(h ^ hash_bytes(tags, tl, 0x74616773ULL));
    return h;
}

static inline bool entry_is(const agg_entry_t *e, const statsd_line_t *line, const char *tags,
                            size_t tl, uint8_t enc) {
    return e->kind == line->kind && e->enc == enc && e->name_len == line->name_len &&
           e->tags_len == tl && memcmp(e->raw, line->name, line->name_len) == 0 &&
           memcmp(e->raw + line->name_len, tags, tl) == 0;
}

/* First entry whose slot hash matches (a candidate: not yet compared). */
static inline agg_entry_t *first_match(const agg_t *a, uint64_t h) {
    if (!a->cap) return NULL;
    for (uint32_t j = (uint32_t)h & (a->cap - 1); a->slots[j].e; j = (j + 1) & (a->cap - 1))
        if (a->slots[j].hash == h) return a->slots[j].e;
    return NULL;
}

static agg_entry_t *lookup_or_insert(agg_t *a, const statsd_line_t *line, int *rc,
                                     const agg_probe_t *probe) {
    char buf[RAW_MAX];
    size_t tl;
    uint8_t enc;
    const char *tags = tag_bytes(line, buf, &tl, &enc);
    uint64_t h = probe ? probe->hash : line_hash(line, tags, tl, enc);
    if (probe && probe->cand && entry_is(probe->cand, line, tags, tl, enc)) return probe->cand;
    if (a->cap) {
        uint32_t j = (uint32_t)h & (a->cap - 1);
        for (; a->slots[j].e; j = (j + 1) & (a->cap - 1)) {
            if (a->slots[j].hash != h) continue;
            agg_entry_t *e = a->slots[j].e;
            if (entry_is(e, line, tags, tl, enc)) return e;
        }
    }
    /* a key this producer has not seen: build its canonical form once */
    if (a->n >= a->max_entries) {
        *rc = STATSD_TOO_LONG;
        return NULL;
    }
    series_key_t *key;
    int krc = skey_from_line(line, &key);
    if (krc != STATSD_OK) {
        *rc = krc;
        return NULL;
    }
    if ((a->n + 1) * 4 > a->cap * 3 && grow_table(a) < 0) goto nomem;
    agg_entry_t *e = calloc(1, sizeof *e + line->name_len + tl + 1);
    if (!e) goto nomem;
    memcpy(e->raw, line->name, line->name_len);
    memcpy(e->raw + line->name_len, tags, tl);
    e->name_len = (uint32_t)line->name_len;
    e->tags_len = (uint32_t)tl;
    e->enc = enc;
    e->hash = h;
    e->key = key;
    e->kind = line->kind;
    uint32_t j = (uint32_t)h & (a->cap - 1);
    while (a->slots[j].e) j = (j + 1) & (a->cap - 1);
    a->slots[j].hash = h;
    a->slots[j].e = e;
    a->n++;
    return e;
nomem:
    skey_unref(key);
    *rc = -ENOMEM;
    return NULL;
}

void agg_probe_start(const agg_t *a, const statsd_line_t *line, agg_probe_t *p) {
    char buf[RAW_MAX];
    size_t tl;
    uint8_t enc;
    const char *tags = tag_bytes(line, buf, &tl, &enc);
    p->hash = line_hash(line, tags, tl, enc);
    p->cand = NULL;
    if (a->cap) __builtin_prefetch(&a->slots[(uint32_t)p->hash & (a->cap - 1)]);
}

void agg_probe_slot(const agg_t *a, agg_probe_t *p) {
    p->cand = first_match(a, p->hash);
    if (p->cand) __builtin_prefetch(p->cand);
}

int agg_add_probed(agg_t *a, const statsd_line_t *line, const agg_probe_t *probe) {
    int rc = STATSD_OK;
    agg_entry_t *e = lookup_or_insert(a, line, &rc, probe);
    if (!e) return rc;
    double rate = line->rate > 0 && line->rate <= 1 ? line->rate : 1.0;
    switch (e->kind) {
    case METRIC_COUNTER:
        for (int i = 0; i < line->nvalues; i++) {
            if (line->counter_total) { /* a total includes every earlier increment */
                e->acc.counter_has_total = true;
                e->acc.counter_abs = line->values[i]; /* a total is never sampled */
                e->acc.counter = 0;
            } else {
                e->acc.counter += line->values[i] / rate;
            }
        }
        break;
    case METRIC_GAUGE:
        for (int i = 0; i < line->nvalues; i++) {
            if (line->gauge_delta) {
                e->acc.gauge.delta += line->values[i];
            } else { /* an absolute value wipes earlier deltas */
                e->acc.gauge.has_abs = true;
                e->acc.gauge.abs = line->values[i];
                e->acc.gauge.delta = 0;
            }
        }
        break;
    case METRIC_TIMER:
        if (!e->acc.timer) {
            e->acc.timer = malloc(sizeof *e->acc.timer);
            if (!e->acc.timer) return -ENOMEM;
            sketch_init(e->acc.timer);
        }
        for (int i = 0; i < line->nvalues; i++)
            if (sketch_add(e->acc.timer, line->values[i], 1.0 / rate) < 0) return -ENOMEM;
        break;
    case METRIC_SET: {
        uint64_t mh = hash_bytes(line->member, line->member_len, 0x736574ULL);
        if (agg_set_insert(&e->acc.set, mh) < 0) return -ENOMEM;
        break;
    }
    default: return STATSD_BAD_TYPE;
    }
    e->nlines += line->kind == METRIC_SET ? 1u : (uint32_t)line->nvalues;
    e->last_flush = a->flushes;
    return mark_dirty(a, e) < 0 ? -ENOMEM : STATSD_OK;
}

int agg_add(agg_t *a, const statsd_line_t *line) { return agg_add_probed(a, line, NULL); }

bool agg_has_dirty(const agg_t *a) { return a->ndirty > 0; }

/* Linear-probing delete with backward shift: no tombstones, probes stay short. */
static void remove_slot(agg_t *a, uint32_t i) {
    a->slots[i].e = NULL;
    a->n--;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & (a->cap - 1);
        if (!a->slots[j].e) return;
        uint32_t home = (uint32_t)a->slots[j].hash & (a->cap - 1);
        /* move the entry back into the hole if its home is not in (i, j] cyclically */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            a->slots[i] = a->slots[j];
            a->slots[j].e = NULL;
            i = j;
        }
    }
}

static void evict_idle(agg_t *a, uint32_t evict_after) {
    for (uint32_t i = 0; i < a->cap;) {
        agg_entry_t *e = a->slots[i].e;
        if (e && !e->dirty && a->flushes - e->last_flush > evict_after) {
            remove_slot(a, i);
            entry_free(e);
            continue; /* slot i may hold a shifted entry now */
        }
        i++;
    }
}

agg_batch_t *agg_flush(agg_t *a, ingest_transport_t transport, uint32_t evict_after, int *err) {
    *err = 0;
    a->flushes++;
    if (evict_after && a->flushes % 64 == 0) evict_idle(a, evict_after);
    if (a->ndirty == 0) return NULL;
    agg_batch_t *b = malloc(sizeof *b + (size_t)a->ndirty * sizeof b->d[0]);
    if (!b) {
        *err = -ENOMEM;
        return NULL;
    }
    b->transport = transport;
    b->n = 0;
    for (uint32_t i = 0; i < a->ndirty; i++) {
        agg_entry_t *e = a->dirty[i];
        agg_delta_t *d = &b->d[b->n++];
        d->key = skey_ref(e->key);
        d->kind = e->kind;
        d->nlines = e->nlines;
        switch (e->kind) {
        case METRIC_COUNTER:
            d->v.counter = e->acc.counter;
            d->v.counter_has_total = e->acc.counter_has_total;
            d->v.counter_abs = e->acc.counter_abs;
            break;
        case METRIC_GAUGE:
            d->v.gauge.has_abs = e->acc.gauge.has_abs;
            d->v.gauge.abs = e->acc.gauge.abs;
            d->v.gauge.delta = e->acc.gauge.delta;
            break;
        case METRIC_TIMER:
            /* a compact copy goes; the producer's sketch stays allocated and warm, so
             * the next interval's samples do not regrow it bucket by bucket */
            d->v.timer = malloc(sizeof *d->v.timer);
            if (d->v.timer) {
                sketch_init(d->v.timer);
                if (!e->acc.timer || sketch_merge(d->v.timer, e->acc.timer) < 0) {
                    sketch_free(d->v.timer);
                    free(d->v.timer);
                    d->v.timer = NULL;
                }
            }
            if (e->acc.timer) sketch_reset(e->acc.timer);
            e->nlines = 0;
            e->dirty = false;
            continue;
        case METRIC_SET: d->v.set = e->acc.set; break;       /* moved */
        default: break;
        }
        memset(&e->acc, 0, sizeof e->acc);
        e->nlines = 0;
        e->dirty = false;
    }
    a->ndirty = 0;
    return b;
}

void agg_batch_free(agg_batch_t *b) {
    if (!b) return;
    for (uint32_t i = 0; i < b->n; i++) {
        agg_delta_t *d = &b->d[i];
        if (d->kind == METRIC_TIMER && d->v.timer) {
            sketch_free(d->v.timer);
            free(d->v.timer);
        } else if (d->kind == METRIC_SET) {
            agg_set_free(&d->v.set);
        }
        skey_unref(d->key);
    }
    free(b);
}
