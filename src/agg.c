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

/* A timer's samples of the current interval. Inserting each sample into a sketch as it
 * arrives costs a cache miss per sample once a producer has thousands of timer series
 * (each sketch is a few KiB of buckets); instead samples are appended here and inserted
 * 64 at a time (sketch_add_many), into the sketch that the next flush hands over whole.
 * Kept across flushes, so a steady timer allocates nothing per sample. */
#define TBUF_CAP 64
typedef struct agg_tbuf {
    sketch_t *sk; /* samples inserted so far this interval; NULL: none yet */
    double w;     /* the weight of every buffered sample */
    double v[TBUF_CAP]; /* how many are in use is in the entry (acc.timer.n) */
} agg_tbuf_t;

/* The fields every line reads and writes come first, then the raw key, so that an entry
 * with a key of up to 40 bytes is one cache line (entries are 64-byte aligned); what only
 * a flush needs (the canonical key, the last flush that saw samples) comes after the raw
 * key. */
struct agg_entry {
    uint8_t name_len; /* <= STATSD_MAX_NAME */
    uint8_t id;       /* kind | enc << 3, and the ID_* flags */
    uint16_t tags_len;
    uint32_t nlines; /* samples folded in this interval */
    union {
        struct {
            double increments; /* after the total, when ID_HAS_TOTAL */
            double total;      /* the latest running total (statsd_line_t.counter_total) */
        } counter;
        struct {
            double abs, delta;
        } gauge;
        struct {
            agg_tbuf_t *buf;
            uint32_t n; /* samples in buf */
        } timer;
        agg_set_t set; /* moved into the batch at a flush; cap stays as a size hint */
    } acc;
    char raw[]; /* name bytes, then tag bytes, then (8-aligned) entry_cold_t */
};

#define ID_KEY 0x0f     /* the bits that are part of the identity */
#define ID_HAS_ABS 0x10 /* gauges: an absolute value this interval */
#define ID_DIRTY 0x20   /* listed in a.dirty */
#define ID_W1 0x40      /* timers: the buffered samples have weight 1 (buf->w is 1) */
#define ID_HAS_TOTAL 0x80 /* counters: a running total this interval */

typedef struct entry_cold {
    series_key_t *key;
    uint32_t last_flush; /* (uint32_t)a.flushes when last touched */
} entry_cold_t;

_Static_assert(offsetof(agg_entry_t, raw) == 24, "the hot part of an entry is 24 bytes");
_Static_assert(offsetof(agg_entry_t, name_len) == 0 && offsetof(agg_entry_t, id) == 1 &&
                   offsetof(agg_entry_t, tags_len) == 2,
               "entry_is reads the identity's header as one word");

static inline uint8_t key_id(metric_kind_t kind, uint8_t enc) {
    return (uint8_t)((unsigned)kind | (unsigned)enc << 3);
}

static inline metric_kind_t entry_kind(const agg_entry_t *e) {
    return (metric_kind_t)(e->id & 7);
}

static inline entry_cold_t *entry_cold(agg_entry_t *e) {
    size_t off = offsetof(agg_entry_t, raw) + (size_t)e->name_len + e->tags_len;
    return (entry_cold_t *)(void *)((char *)e + ((off + 7) & ~(size_t)7));
}

const char *ingest_transport_name(ingest_transport_t t) {
    static const char *const names[] = {"udp", "http", "ws"};
    return t < INGEST_TRANSPORT_COUNT ? names[t] : "unknown";
}

void agg_init(agg_t *a, uint32_t max_entries) {
    memset(a, 0, sizeof *a);
    a->max_entries = max_entries ? max_entries : 1000000;
}

static void tbuf_free(agg_tbuf_t *t) {
    if (!t) return;
    if (t->sk) {
        sketch_free(t->sk);
        free(t->sk);
    }
    free(t);
}

static void entry_free(agg_entry_t *e) {
    switch (entry_kind(e)) {
    case METRIC_TIMER: tbuf_free(e->acc.timer.buf); break;
    case METRIC_SET: agg_set_free(&e->acc.set); break;
    default: break;
    }
    skey_unref(entry_cold(e)->key);
    free(e);
}

void agg_free(agg_t *a) {
    for (uint32_t i = 0; i < a->cap; i++)
        if (a->slots[i].e) entry_free(a->slots[i].e);
    free(a->slots);
    free(a->dirty);
    free(a->kc);
    memset(a, 0, sizeof *a);
}

int agg_set_insert(agg_set_t *s, uint64_t h) {
    if (h == 0) h = 1;
    if (!s->slots || (s->n + 1) * 4 > s->cap * 3) { /* keep load under 3/4 */
        /* no table yet: as many slots as the hint in cap asks for (at least 16) */
        uint32_t ncap = s->slots ? s->cap * 2 : s->cap > 16 ? s->cap : 16;
        uint64_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -ENOMEM;
        for (uint32_t i = 0; s->slots && i < s->cap; i++) {
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

/* ---- the key cache ------------------------------------------------------------------
 *
 * Most StatsD traffic repeats the same few thousand keys, so the fast path first looks a
 * key up by a cheap signature: the lengths, the kind, and at most four words of the name
 * and tags (its first, middle and last 8 bytes, the tags' first and last 8) mixed by one
 * multiply, ~20 instructions instead of the ~60 of the full hash over every byte plus its
 * probe sequence. Two keys that differ only in bytes the signature skips share it: then
 * the entry found fails the comparison that every candidate gets (entry_is) and the line
 * takes the full hash and the table, as it would without the cache. So the signature's
 * quality only decides how often the cache helps, never what a line folds into; the
 * table itself keeps the full hash, whose quality bounds its probe lengths.
 *
 * 4 ways per 64-byte bucket (one cache line), one bucket per table slot (KC_MAX_BUCKETS at
 * most), so that keys rarely contend: with 10,000 keys, 16,384 buckets, ~0.6 keys per
 * bucket, and 0.07 % of lines miss (bench_statsd_fold). A miss costs more time than its
 * instructions say (the table's slots are cold then): with half as many buckets 1.1 % of
 * lines missed and the whole path was ~10 % slower; with a quarter, 6.6 %. The cache
 * holds pointers to entries: it is emptied whenever entries are freed. */
#define KC_WAYS 4
#define KC_MAX_BUCKETS (1u << 16) /* 4 MiB per producer at most */

static inline uint64_t kc_rd64(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t kc_rd32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Up to 16 bytes of p[0..n) (all of them when n <= 16) in two words; reads only p[0..n). */
static inline uint64_t kc_words(const char *p, size_t n, uint64_t *second) {
    if (n >= 8) {
        *second = kc_rd64(p + n - 8);
        return kc_rd64(p);
    }
    *second = 0;
    if (n >= 4) return kc_rd32(p) | kc_rd32(p + n - 4) << 32;
    if (n) return (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[n >> 1] << 8 |
                  (uint64_t)(unsigned char)p[n - 1] << 16;
    return 0;
}

static inline uint64_t kc_sig(const char *name, size_t nl, const char *tags, size_t tl,
                              uint8_t id) {
    uint64_t nb, tb;
    uint64_t na = kc_words(name, nl, &nb);
    if (nl > 16) na += kc_rd64(name + nl / 2 - 4) * HASH_K2;
    /* one multiply per part: words xor'ed together before mixing would cancel where two
     * keys differ in bytes at the same places (a name's and a tag's last digits) */
    uint64_t h = hash_fold_mul(na ^ HASH_K0, nb ^ ((uint64_t)nl << 8 | id) ^ HASH_K1);
    if (!tl) return h;
    uint64_t ta = kc_words(tags, tl, &tb);
    return hash_fold_mul(h ^ ta ^ (uint64_t)tl, tb ^ HASH_K2);
}

static inline agg_kc_way_t *kc_bucket(const agg_t *a, uint64_t sig) {
    return &a->kc[KC_WAYS * (size_t)(sig & a->kc_mask)];
}

static inline agg_entry_t *kc_get(const agg_kc_way_t *b, uint64_t sig) {
    if (b[0].sig == sig) return b[0].e;
    if (b[1].sig == sig) return b[1].e;
    if (b[2].sig == sig) return b[2].e;
    if (b[3].sig == sig) return b[3].e;
    return NULL;
}

/* The newest key goes to way 0, the others move down one; the oldest leaves. */
static inline void kc_put(agg_t *a, uint64_t sig, agg_entry_t *e) {
    agg_kc_way_t *b = kc_bucket(a, sig);
    memmove(b + 1, b, (KC_WAYS - 1) * sizeof *b);
    b[0].sig = sig;
    b[0].e = e;
}

static void kc_clear(agg_t *a) {
    if (a->kc) memset(a->kc, 0, KC_WAYS * ((size_t)a->kc_mask + 1) * sizeof *a->kc);
}

/* One bucket per table slot; on failure the old cache stays (it is only a hint;
 * agg_fold_samples needs one to take the fast path at all). Made by the first fast-path
 * call, then resized with the table. */
__attribute__((noinline, cold)) static void kc_resize(agg_t *a) {
    uint32_t nb = a->cap;
    if (nb > KC_MAX_BUCKETS) nb = KC_MAX_BUCKETS;
    if (nb < 16 || (a->kc && nb == a->kc_mask + 1)) return;
    size_t bytes = KC_WAYS * (size_t)nb * sizeof(agg_kc_way_t);
    agg_kc_way_t *kc = aligned_alloc(64, bytes);
    if (!kc) return;
    memset(kc, 0, bytes);
    free(a->kc);
    a->kc = kc;
    a->kc_mask = nb - 1;
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
    if (a->kc) kc_resize(a);
    return 0;
}

static int grow_dirty(agg_t *a) {
    uint32_t ncap = a->dirty_cap ? a->dirty_cap * 2 : 64;
    agg_entry_t **nd = realloc(a->dirty, ncap * sizeof *nd);
    if (!nd) return -ENOMEM;
    a->dirty = nd;
    a->dirty_cap = ncap;
    return 0;
}

static inline int mark_dirty(agg_t *a, agg_entry_t *e) {
    if (e->id & ID_DIRTY) return 0;
    if (a->ndirty == a->dirty_cap && grow_dirty(a) < 0) return -ENOMEM;
    a->dirty[a->ndirty++] = e;
    e->id |= ID_DIRTY;
    entry_cold(e)->last_flush = (uint32_t)a->flushes; /* constant until the next flush */
    return 0;
}

/* The identity's hash: name and tag bytes, seeded with kind and encoding. */
static inline uint64_t raw_hash(const char *name, size_t nl, const char *tags, size_t tl,
                                metric_kind_t kind, uint8_t enc) {
    return hash_pair(name, nl, tags, tl, 0x6d6574726963ULL + (uint64_t)kind * 2 + enc);
}

/* n bytes equal, for the short spans of a raw key: up to 32 bytes in at most four
 * overlapping word compares folded into one test, no loop and no call. */
static inline bool bytes_equal(const char *x, const char *y, size_t n) {
    uint64_t a, b, c, d;
    if (n >= 8) {
        if (n > 32) return memcmp(x, y, n) == 0;
        memcpy(&a, x, 8);
        memcpy(&b, y, 8);
        memcpy(&c, x + n - 8, 8);
        memcpy(&d, y + n - 8, 8);
        uint64_t diff = (a ^ b) | (c ^ d);
        if (n > 16) {
            memcpy(&a, x + 8, 8);
            memcpy(&b, y + 8, 8);
            memcpy(&c, x + n - 16, 8);
            memcpy(&d, y + n - 16, 8);
            diff |= (a ^ b) | (c ^ d);
        }
        return diff == 0;
    }
    if (n >= 4) {
        uint32_t a0, b0, a1, b1;
        memcpy(&a0, x, 4);
        memcpy(&b0, y, 4);
        memcpy(&a1, x + n - 4, 4);
        memcpy(&b1, y + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return false;
    return true;
}

/* An entry's first 4 bytes (name_len, id, tags_len) as one word, in memory order. */
static inline uint32_t head_word(uint8_t nl, uint8_t id, uint16_t tl) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint32_t)nl | (uint32_t)id << 8 | (uint32_t)tl << 16;
#else
    struct {
        uint8_t nl, id;
        uint16_t tl;
    } h = {nl, id, tl};
    uint32_t w;
    memcpy(&w, &h, sizeof w);
    return w;
#endif
}

/* nl <= UINT8_MAX and tl <= UINT16_MAX (what an entry can hold): the caller's to check. */
static inline bool entry_is(const agg_entry_t *e, metric_kind_t kind, uint8_t enc,
                            const char *name, size_t nl, const char *tags, size_t tl) {
    uint32_t w;
    memcpy(&w, e, sizeof w); /* the identity part of the header in one compare */
    return (w & head_word(UINT8_MAX, ID_KEY, UINT16_MAX)) ==
               head_word((uint8_t)nl, key_id(kind, enc), (uint16_t)tl) &&
           bytes_equal(e->raw, name, nl) && bytes_equal(e->raw + nl, tags, tl);
}

static agg_entry_t *find(const agg_t *a, uint64_t h, metric_kind_t kind, uint8_t enc,
                         const char *name, size_t nl, const char *tags, size_t tl) {
    if (!a->cap || nl > UINT8_MAX || tl > UINT16_MAX) return NULL; /* no entry holds it */
    for (uint32_t j = (uint32_t)h & (a->cap - 1); a->slots[j].e; j = (j + 1) & (a->cap - 1)) {
        if (a->slots[j].hash != h) continue;
        agg_entry_t *e = a->slots[j].e;
        if (entry_is(e, kind, enc, name, nl, tags, tl)) return e;
    }
    return NULL;
}

static agg_entry_t *lookup_or_insert(agg_t *a, const statsd_line_t *line, int *rc) {
    char buf[RAW_MAX];
    size_t tl;
    uint8_t enc;
    const char *tags = tag_bytes(line, buf, &tl, &enc);
    uint64_t h = raw_hash(line->name, line->name_len, tags, tl, line->kind, enc);
    agg_entry_t *e = find(a, h, line->kind, enc, line->name, line->name_len, tags, tl);
    if (e) return e;
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
    if (line->name_len > STATSD_MAX_NAME || tl > UINT16_MAX) { /* what the fields hold */
        skey_unref(key);
        *rc = STATSD_TOO_LONG;
        return NULL;
    }
    if ((a->n + 1) * 4 > a->cap * 3 && grow_table(a) < 0) goto nomem;
    size_t hot = offsetof(agg_entry_t, raw) + line->name_len + tl;
    size_t size = ((hot + 7) & ~(size_t)7) + sizeof(entry_cold_t);
    e = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!e) goto nomem;
    memset(e, 0, offsetof(agg_entry_t, raw));
    memcpy(e->raw, line->name, line->name_len);
    memcpy(e->raw + line->name_len, tags, tl);
    e->name_len = (uint8_t)line->name_len;
    e->tags_len = (uint16_t)tl;
    e->id = key_id(line->kind, enc);
    entry_cold(e)->key = key;
    entry_cold(e)->last_flush = (uint32_t)a->flushes;
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

/* Inserts the n buffered samples into the interval's sketch. */
static int tbuf_spill(agg_tbuf_t *t, uint32_t n) {
    if (!n) return 0;
    if (!t->sk) {
        t->sk = malloc(sizeof *t->sk);
        if (!t->sk) return -ENOMEM;
        sketch_init(t->sk);
    }
    return sketch_add_many(t->sk, t->v, n, t->w) < 0 ? -ENOMEM : 0;
}

/* Appends a sample of weight w. The buffer is emptied into the sketch when it is full or
 * the weight changes. Samples of weight 1 (no sample rate, the usual case) are appended
 * without reading the buffer's header line (ID_W1). */
static inline int timer_add(agg_entry_t *e, double v, double w) {
    agg_tbuf_t *t = e->acc.timer.buf;
    uint32_t n = e->acc.timer.n;
    if (__builtin_expect(!t, 0)) {
        t = e->acc.timer.buf = malloc(sizeof *t);
        if (!t) return -ENOMEM;
        t->sk = NULL;
        t->w = w;
        n = 0;
    }
    if (n == TBUF_CAP || (n && !(w == 1.0 && (e->id & ID_W1)) && t->w != w)) {
        e->acc.timer.n = 0;
        if (tbuf_spill(t, n) < 0) return -ENOMEM;
        n = 0;
    }
    if (n == 0) {
        t->w = w;
        e->id = (uint8_t)(w == 1.0 ? e->id | ID_W1 : e->id & ~ID_W1);
    }
    t->v[n] = v;
    e->acc.timer.n = n + 1;
    return 0;
}

static inline void gauge_add(agg_entry_t *e, double v, bool delta) {
    if (delta) {
        e->acc.gauge.delta += v;
    } else { /* an absolute value wipes earlier deltas */
        e->id |= ID_HAS_ABS;
        e->acc.gauge.abs = v;
        e->acc.gauge.delta = 0;
    }
}

static inline uint64_t member_hash(const char *m, size_t n) {
    return hash_bytes(m, n, 0x736574ULL);
}

int agg_add(agg_t *a, const statsd_line_t *line) {
    int rc = STATSD_OK;
    agg_entry_t *e = lookup_or_insert(a, line, &rc);
    if (!e) return rc;
    double rate = line->rate > 0 && line->rate <= 1 ? line->rate : 1.0;
    switch (entry_kind(e)) {
    case METRIC_COUNTER:
        for (int i = 0; i < line->nvalues; i++) {
            if (line->counter_total) { /* a total includes every earlier increment */
                e->id |= ID_HAS_TOTAL;
                e->acc.counter.total = line->values[i]; /* a total is never sampled */
                e->acc.counter.increments = 0;
            } else {
                e->acc.counter.increments += line->values[i] / rate;
            }
        }
        break;
    case METRIC_GAUGE:
        for (int i = 0; i < line->nvalues; i++) gauge_add(e, line->values[i], line->gauge_delta);
        break;
    case METRIC_TIMER:
        for (int i = 0; i < line->nvalues; i++)
            if (timer_add(e, line->values[i], 1.0 / rate) < 0) return -ENOMEM;
        break;
    case METRIC_SET:
        if (agg_set_insert(&e->acc.set, member_hash(line->member, line->member_len)) < 0)
            return -ENOMEM;
        break;
    default: return STATSD_BAD_TYPE;
    }
    e->nlines += line->kind == METRIC_SET ? 1u : (uint32_t)line->nvalues;
    return mark_dirty(a, e) < 0 ? -ENOMEM : STATSD_OK;
}

/* The line after the entry's: where this sample will write (a timer's buffer slot, a
 * set's table slot), fetched while the lines before it are folded. Reads the entry, which
 * was prefetched a few lines earlier. */
static inline void prefetch_acc(const agg_entry_t *e, const statsd_sample_t *s) {
    switch (s->kind) {
    case METRIC_TIMER:
        if (e->acc.timer.buf) __builtin_prefetch(&e->acc.timer.buf->v[e->acc.timer.n], 1);
        break;
    case METRIC_SET:
        if (e->acc.set.slots) {
            uint64_t h = member_hash(s->member, s->member_len);
            __builtin_prefetch(&e->acc.set.slots[(uint32_t)(h ? h : 1) & (e->acc.set.cap - 1)], 1);
        }
        break;
    default: break;
    }
}

/* Passes over the batch, so that the cache misses of up to 64 lookups overlap instead of
 * following one another, and so that the kind of a line, which varies from line to line,
 * is branched on once and not at every step:
 *   1. sign every identity (kc_sig) and prefetch its key cache bucket;
 *   2. read the buckets (they have arrived by then) and prefetch the entries;
 *   3. prefetch what each accumulator will touch (a timer's buffer, a set's table slot);
 *   4. in order, confirm each entry (a candidate may be another key's, or missing: then
 *      the full hash and the table decide, and the cache learns the answer), list
 *      it as dirty, and file the line under its kind; stop at the first unknown identity;
 *   5. fold the lines kind by kind, each kind in arrival order.
 * Only lines of different identities change order in step 5, and nothing depends on the
 * order between them: an identity includes its kind. The dirty list, which decides the
 * order of a batch's deltas (and so which kind wins a name's first interval), is built in
 * arrival order in step 4. */
size_t agg_fold_samples(agg_t *a, const statsd_sample_t *s, size_t i, size_t n,
                        uint64_t *refused) {
    if (n - i > AGG_FOLD_MAX) n = i + AGG_FOLD_MAX;
    uint64_t sig[AGG_FOLD_MAX];
    agg_kc_way_t *bucket[AGG_FOLD_MAX];
    bool long_key[AGG_FOLD_MAX]; /* the entry's raw key runs into its second cache line */
    agg_entry_t *ent[AGG_FOLD_MAX];
    uint8_t by_kind[METRIC_KIND_COUNT][AGG_FOLD_MAX];
    uint32_t nk[METRIC_KIND_COUNT] = {0};
    s += i;
    /* the first fast-path call makes the cache (HTTP's one-off tables never do) */
    if (__builtin_expect(!a->kc, 0) && (!a->cap || (kc_resize(a), !a->kc))) return i;
    size_t m = 0; /* the lines before the first that the fast path did not parse */
    for (; m < n - i && s[m].parsed; m++) {
        uint32_t nl = s[m].name_len, tl = s[m].tags_len;
        sig[m] = kc_sig(s[m].name, nl, s[m].tags, tl, key_id(s[m].kind, ENC_SPAN));
        long_key[m] = offsetof(agg_entry_t, raw) + nl + tl > 64;
        __builtin_prefetch(bucket[m] = kc_bucket(a, sig[m]));
    }
    for (size_t k = 0; k < m; k++) {
        agg_entry_t *e = ent[k] = kc_get(bucket[k], sig[k]);
        if (e) {
            __builtin_prefetch(e);
            if (long_key[k]) __builtin_prefetch((const char *)e + 64);
        }
    }
    for (size_t k = 0; k < m; k++)
        if (ent[k] && (s[k].kind == METRIC_TIMER || s[k].kind == METRIC_SET))
            prefetch_acc(ent[k], &s[k]);
    size_t end = 0;
    for (; end < m; end++) {
        const statsd_sample_t *x = &s[end];
        const char *tags = x->tags; /* NULL without tags: then nothing reads it */
        agg_entry_t *e = ent[end];
        if (!e || !entry_is(e, x->kind, ENC_SPAN, x->name, x->name_len, tags, x->tags_len)) {
            /* not in the cache (or another key with the same signature): the table */
            a->kc_misses++;
            uint64_t h = raw_hash(x->name, x->name_len, tags, x->tags_len, x->kind, ENC_SPAN);
            e = ent[end] = find(a, h, x->kind, ENC_SPAN, x->name, x->name_len, tags, x->tags_len);
            if (!e) break;
            kc_put(a, sig[end], e);
        }
        if (mark_dirty(a, e) < 0) {
            ++*refused;
            continue;
        }
        by_kind[x->kind][nk[x->kind]++] = (uint8_t)end;
    }
    for (uint32_t j = 0; j < nk[METRIC_COUNTER]; j++) {
        const statsd_sample_t *x = &s[by_kind[METRIC_COUNTER][j]];
        agg_entry_t *e = ent[by_kind[METRIC_COUNTER][j]];
        e->acc.counter.increments += x->value / x->rate; /* text lines are never totals */
        e->nlines++;
    }
    for (uint32_t j = 0; j < nk[METRIC_GAUGE]; j++) {
        const statsd_sample_t *x = &s[by_kind[METRIC_GAUGE][j]];
        agg_entry_t *e = ent[by_kind[METRIC_GAUGE][j]];
        gauge_add(e, x->value, x->gauge_delta);
        e->nlines++;
    }
    for (uint32_t j = 0; j < nk[METRIC_TIMER]; j++) {
        const statsd_sample_t *x = &s[by_kind[METRIC_TIMER][j]];
        agg_entry_t *e = ent[by_kind[METRIC_TIMER][j]];
        if (timer_add(e, x->value, 1.0 / x->rate) < 0) ++*refused;
        else e->nlines++;
    }
    for (uint32_t j = 0; j < nk[METRIC_SET]; j++) {
        const statsd_sample_t *x = &s[by_kind[METRIC_SET][j]];
        agg_entry_t *e = ent[by_kind[METRIC_SET][j]];
        if (agg_set_insert(&e->acc.set, member_hash(x->member, x->member_len)) < 0) ++*refused;
        else e->nlines++;
    }
    return i + end;
}

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
    bool freed = false;
    for (uint32_t i = 0; i < a->cap;) {
        agg_entry_t *e = a->slots[i].e;
        if (e && !(e->id & ID_DIRTY) &&
            (uint32_t)a->flushes - entry_cold(e)->last_flush > evict_after) {
            remove_slot(a, i);
            entry_free(e);
            freed = true;
            continue; /* slot i may hold a shifted entry now */
        }
        i++;
    }
    if (freed) kc_clear(a); /* it may point at what was freed */
}

struct agg_chunk {
    agg_chunk_t *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_FIRST (64 * 1024)
#define ARENA_MAX_STEP (4 * 1024 * 1024)

static void *arena_alloc(agg_batch_t *b, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    agg_chunk_t *c = b->arena;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = c ? (c->cap < ARENA_MAX_STEP ? c->cap * 2 : c->cap) : ARENA_FIRST;
        if (cap < bytes) cap = bytes;
        agg_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        b->arena = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += bytes;
    return p;
}

/* The interval's samples of a timer entry as a compact sketch in the batch's arena; the
 * entry keeps its buffer (and a hot timer's sketch, emptied) for the next interval. NULL
 * when out of memory (the interval's samples of this series are lost, as the hub reports
 * by skipping a NULL sketch). */
static sketch_t *pack_timer(agg_batch_t *b, agg_entry_t *e) {
    agg_tbuf_t *t = e->acc.timer.buf;
    if (!t) return NULL;
    uint32_t n = e->acc.timer.n;
    e->acc.timer.n = 0;
    int32_t idx[TBUF_CAP];
    sketch_pack_plan_t plan;
    long bytes = sketch_pack_plan(t->sk, t->v, n, idx, &plan);
    if (bytes < 0) { /* wider than a store may be: let the sketch fold, then pack it */
        tbuf_spill(t, n);
        n = 0;
        bytes = sketch_pack_plan(t->sk, NULL, 0, idx, &plan);
    }
    sketch_t *dst = bytes < 0 ? NULL : arena_alloc(b, sizeof *dst + (size_t)bytes);
    if (dst) sketch_pack(dst, (double *)(void *)(dst + 1), &plan, t->sk, t->v, idx, n, t->w);
    if (t->sk) sketch_reset(t->sk);
    return dst;
}

/* The interval's members of a set entry, densely in the batch's arena; the entry's table
 * is emptied for the next interval (or given up when it is far larger than this interval
 * needed, keeping its size as the hint). */
static agg_set_t pack_set(agg_batch_t *b, agg_entry_t *e) {
    agg_set_t *s = &e->acc.set, out = {0};
    uint64_t *m = s->n ? arena_alloc(b, (size_t)s->n * sizeof *m) : NULL;
    if (m) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < s->cap && k < s->n; i++)
            if (s->slots[i]) m[k++] = s->slots[i];
        out.slots = m;
        out.n = out.cap = k;
    }
    uint32_t hint = 16;
    while (s->n * 4 > hint * 3) hint *= 2;
    if (s->slots && s->cap <= 2 * hint) {
        memset(s->slots, 0, s->cap * sizeof *s->slots);
    } else {
        free(s->slots);
        s->slots = NULL;
        s->cap = hint;
    }
    s->n = 0;
    return out;
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
    b->arena = NULL;
    for (uint32_t i = 0; i < a->ndirty; i++) {
        /* the entries are cold by now (a flush touches thousands): fetch a few ahead */
        if (i + 8 < a->ndirty) __builtin_prefetch(a->dirty[i + 8], 1);
        if (i + 4 < a->ndirty) {
            agg_entry_t *f = a->dirty[i + 4];
            __builtin_prefetch(entry_cold(f));
            if (entry_kind(f) == METRIC_TIMER && f->acc.timer.buf)
                __builtin_prefetch(f->acc.timer.buf);
        }
        if (i + 2 < a->ndirty) __builtin_prefetch(entry_cold(a->dirty[i + 2])->key, 1);
        agg_entry_t *e = a->dirty[i];
        agg_delta_t *d = &b->d[b->n++];
        d->key = skey_ref(entry_cold(e)->key);
        d->hash = d->key->hash;
        d->kind = entry_kind(e);
        d->nlines = e->nlines;
        switch (d->kind) {
        case METRIC_COUNTER:
            d->v.counter = e->acc.counter.increments;
            d->v.counter_has_total = (e->id & ID_HAS_TOTAL) != 0;
            d->v.counter_abs = e->acc.counter.total;
            break;
        case METRIC_GAUGE:
            d->v.gauge.has_abs = (e->id & ID_HAS_ABS) != 0;
            d->v.gauge.abs = e->acc.gauge.abs;
            d->v.gauge.delta = e->acc.gauge.delta;
            break;
        case METRIC_TIMER:
            d->v.timer = pack_timer(b, e);
            e->nlines = 0;
            e->id &= ID_KEY;
            continue;
        case METRIC_SET:
            d->v.set = pack_set(b, e);
            e->nlines = 0;
            e->id &= ID_KEY;
            continue;
        default: break;
        }
        memset(&e->acc, 0, sizeof e->acc);
        e->nlines = 0;
        e->id &= ID_KEY;
    }
    a->ndirty = 0;
    return b;
}

void agg_batch_free(agg_batch_t *b) {
    if (!b) return;
    for (agg_chunk_t *c = b->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (uint32_t i = 0; i < b->n; i++) {
        agg_delta_t *d = &b->d[i];
        if (b->arena) {
            /* sketches and members are in the arena */
        } else if (d->kind == METRIC_TIMER && d->v.timer) {
            sketch_free(d->v.timer);
            free(d->v.timer);
        } else if (d->kind == METRIC_SET) {
            agg_set_free(&d->v.set);
        }
        skey_unref(d->key);
    }
    free(b);
}
