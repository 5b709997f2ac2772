#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

const char *reject_reason_name(int reason) {
    switch (reason) {
    case REG_REJECT_SERIES_LIMIT: return "series_limit";
    case REG_REJECT_KIND_CONFLICT: return "kind_conflict";
    case REG_REJECT_RESERVED_NAME: return "reserved_name";
    case REG_REJECT_NAME_CONFLICT: return "name_conflict";
    default: return reason >= 0 && reason < STATSD_REASON_COUNT
                        ? statsd_reason_name((statsd_reason_t)reason)
                        : "unknown";
    }
}

int registry_init(registry_t *r, uint32_t max_series, uint32_t history_points) {
    memset(r, 0, sizeof *r);
    r->max_series = max_series;
    r->history_points = history_points ? history_points : 3600;
    r->trend_deadband = 0.05;
    return 0;
}

static void series_free(series_t *s) {
    skey_unref(s->key);
    if (s->cur) {
        sketch_free(s->cur);
        free(s->cur);
    }
    agg_set_free(&s->members);
    history_free(&s->hist);
    free(s);
}

void registry_free(registry_t *r) {
    for (uint32_t i = 0; i < r->cap; i++)
        if (r->slots[i].s) series_free(r->slots[i].s);
    for (uint32_t i = 0; i < r->nfam; i++) {
        free(r->fams[i]->name);
        free(r->fams[i]->help);
        free(r->fams[i]->v);
        free(r->fams[i]);
    }
    for (uint32_t i = 0; i < r->claimed_cap; i++) free(r->claimed[i]);
    free(r->claimed);
    free(r->slots);
    free(r->fslots);
    free(r->fams);
    free(r->dirty);
    free(r->changed);
    memset(r, 0, sizeof *r);
}

/* Records that s reports new values: for the live pushes. */
static void note_change(registry_t *r, series_t *s) {
    s->change_seq = r->change_seq;
    if (s->push_mark == r->push_gen + 1) return;
    if (r->nchanged == r->changed_cap) {
        uint32_t ncap = r->changed_cap ? r->changed_cap * 2 : 256;
        series_t **nc = realloc(r->changed, ncap * sizeof *nc);
        if (!nc) return; /* out of memory: this change misses one delta; the next is listed */
        r->changed = nc;
        r->changed_cap = ncap;
    }
    r->changed[r->nchanged++] = s;
    s->push_mark = r->push_gen + 1;
}

void registry_push_window(registry_t *r) {
    r->nchanged = 0;
    r->push_gen++;
}

series_t *registry_find(const registry_t *r, const series_key_t *key) {
    if (!r->cap) return NULL;
    for (uint32_t j = (uint32_t)key->hash & (r->cap - 1); r->slots[j].s; j = (j + 1) & (r->cap - 1))
        if (r->slots[j].hash == key->hash && skey_equal(r->slots[j].s->key, key))
            return r->slots[j].s;
    return NULL;
}

family_t *registry_family(const registry_t *r, const char *name) {
    if (!r->fcap) return NULL;
    uint64_t h = hash_bytes(name, strlen(name), 1);
    for (uint32_t j = (uint32_t)h & (r->fcap - 1); r->fslots[j]; j = (j + 1) & (r->fcap - 1))
        if (strcmp(r->fslots[j]->name, name) == 0) return r->fslots[j];
    return NULL;
}

static int grow_series_table(registry_t *r) {
    uint32_t ncap = r->cap ? r->cap * 2 : 256;
    reg_slot_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (uint32_t i = 0; i < r->cap; i++) {
        if (!r->slots[i].s) continue;
        uint32_t j = (uint32_t)r->slots[i].hash & (ncap - 1);
        while (ns[j].s) j = (j + 1) & (ncap - 1);
        ns[j] = r->slots[i];
    }
    free(r->slots);
    r->slots = ns;
    r->cap = ncap;
    return 0;
}

static int grow_family_table(registry_t *r) {
    uint32_t ncap = r->fcap ? r->fcap * 2 : 64;
    family_t **ns = calloc(ncap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (uint32_t i = 0; i < r->fcap; i++) {
        family_t *f = r->fslots[i];
        if (!f) continue;
        uint32_t j = (uint32_t)hash_bytes(f->name, strlen(f->name), 1) & (ncap - 1);
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = f;
    }
    free(r->fslots);
    r->fslots = ns;
    r->fcap = ncap;
    return 0;
}

/* ---- names on /metrics: one family per exposed name ------------------------------
 * A counter x is exposed as x_total, a timer x as x, x_sum and x_count: a gauge named
 * x_total or x_sum beside them would make the scrape invalid. Every family claims its
 * exposed names when it is created; a family whose names are taken is refused. */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int exposed_names(const char *name, metric_kind_t kind, char out[3][STATSD_MAX_NAME + 16]) {
    switch (kind) {
    case METRIC_COUNTER:
        snprintf(out[0], sizeof out[0], ends_with(name, "_total") ? "%s" : "%s_total", name);
        return 1;
    case METRIC_TIMER:
        snprintf(out[0], sizeof out[0], "%s", name);
        snprintf(out[1], sizeof out[1], "%s_sum", name);
        snprintf(out[2], sizeof out[2], "%s_count", name);
        return 3;
    default: snprintf(out[0], sizeof out[0], "%s", name); return 1;
    }
}

static bool claimed(const registry_t *r, const char *n) {
    if (!r->claimed_cap) return false;
    uint32_t j = (uint32_t)hash_bytes(n, strlen(n), 2) & (r->claimed_cap - 1);
    for (; r->claimed[j]; j = (j + 1) & (r->claimed_cap - 1))
        if (strcmp(r->claimed[j], n) == 0) return true;
    return false;
}

static int claim(registry_t *r, const char *n) {
    if ((r->nclaimed + 1) * 4 > r->claimed_cap * 3) {
        uint32_t ncap = r->claimed_cap ? r->claimed_cap * 2 : 128;
        char **nc = calloc(ncap, sizeof *nc);
        if (!nc) return -ENOMEM;
        for (uint32_t i = 0; i < r->claimed_cap; i++) {
            char *v = r->claimed[i];
            if (!v) continue;
            uint32_t j = (uint32_t)hash_bytes(v, strlen(v), 2) & (ncap - 1);
            while (nc[j]) j = (j + 1) & (ncap - 1);
            nc[j] = v;
        }
        free(r->claimed);
        r->claimed = nc;
        r->claimed_cap = ncap;
    }
    char *dup = strdup(n);
    if (!dup) return -ENOMEM;
    uint32_t j = (uint32_t)hash_bytes(n, strlen(n), 2) & (r->claimed_cap - 1);
    while (r->claimed[j]) j = (j + 1) & (r->claimed_cap - 1);
    r->claimed[j] = dup;
    r->nclaimed++;
    return 0;
}

static family_t *family_get(registry_t *r, const char *name, metric_kind_t kind, int *reason) {
    family_t *f = registry_family(r, name);
    if (f) {
        if (f->kind != kind) *reason = REG_REJECT_KIND_CONFLICT;
        return f->kind == kind ? f : NULL;
    }
    char names[3][STATSD_MAX_NAME + 16];
    int nn = exposed_names(name, kind, names);
    for (int i = 0; i < nn; i++) {
        if (claimed(r, names[i])) {
            *reason = REG_REJECT_NAME_CONFLICT;
            return NULL;
        }
    }
    for (int i = 0; i < nn; i++)
        if (claim(r, names[i]) < 0) return NULL; /* a partial claim only over-reserves */
    if ((r->nfam + 1) * 4 > r->fcap * 3 && grow_family_table(r) < 0) return NULL;
    if (r->nfam == r->fams_cap) {
        uint32_t ncap = r->fams_cap ? r->fams_cap * 2 : 64;
        family_t **nf = realloc(r->fams, ncap * sizeof *nf);
        if (!nf) return NULL;
        r->fams = nf;
        r->fams_cap = ncap;
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        return NULL;
    }
    f->kind = kind;
    f->reg = r;
    if (r->family_help) { /* out of memory here only costs the specific text */
        char hb[256];
        const char *help = r->family_help(name, hb, sizeof hb);
        if (help) f->help = strdup(help);
    }
    uint32_t j = (uint32_t)hash_bytes(name, strlen(name), 1) & (r->fcap - 1);
    while (r->fslots[j]) j = (j + 1) & (r->fcap - 1);
    r->fslots[j] = f;
    r->fams[r->nfam++] = f;
    r->fams_sorted = false;
    return f;
}

static series_t *series_get(registry_t *r, series_key_t *key, metric_kind_t kind, int *reason) {
    series_t *s = registry_find(r, key);
    if (s) {
        if (s->kind != kind) {
            *reason = REG_REJECT_KIND_CONFLICT;
            return NULL;
        }
        return s;
    }
    const char *name = skey_name(key);
    /* the hub's own series live under metricast_* and process_*: a sender may not shadow
     * them (a second family of the same name would make the whole scrape invalid) */
    if (strncmp(name, "metricast_", 10) == 0 || strncmp(name, "process_", 8) == 0) {
        *reason = REG_REJECT_RESERVED_NAME;
        return NULL;
    }
    if (r->max_series && r->n >= r->max_series) {
        *reason = REG_REJECT_SERIES_LIMIT;
        return NULL;
    }
    *reason = -ENOMEM;
    family_t *f = family_get(r, name, kind, reason);
    if (!f) return NULL;
    if ((r->n + 1) * 4 > r->cap * 3 && grow_series_table(r) < 0) return NULL;
    if (f->n == f->cap) {
        uint32_t ncap = f->cap ? f->cap * 2 : 4;
        series_t **nv = realloc(f->v, ncap * sizeof *nv);
        if (!nv) return NULL;
        f->v = nv;
        f->cap = ncap;
    }
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = skey_ref(key);
    s->fam = f;
    s->kind = kind;
    s->source = skey_label_value(key, "source");
    s->last.min = s->last.max = s->last.p50 = s->last.p90 = s->last.p99 = NAN;
    s->ref_hour = s->ref_day = s->ref_week = NAN;
    s->value = kind == METRIC_TIMER ? NAN : 0;
    history_init(&s->hist, r->history_points);
    uint32_t j = (uint32_t)key->hash & (r->cap - 1);
    while (r->slots[j].s) j = (j + 1) & (r->cap - 1);
    r->slots[j].hash = key->hash;
    r->slots[j].s = s;
    r->n++;
    f->v[f->n++] = s;
    return s;
}

static int mark(registry_t *r, series_t *s) {
    if (s->roll_mark == r->gen + 1) return 0; /* already listed for the coming roll */
    if (r->ndirty == r->dirty_cap) {
        uint32_t ncap = r->dirty_cap ? r->dirty_cap * 2 : 256;
        series_t **nd = realloc(r->dirty, ncap * sizeof *nd);
        if (!nd) return -ENOMEM;
        r->dirty = nd;
        r->dirty_cap = ncap;
    }
    r->dirty[r->ndirty++] = s;
    s->roll_mark = r->gen + 1;
    return 0;
}

static int apply_delta(registry_t *r, series_t *s, const agg_delta_t *d) {
    switch (s->kind) {
    case METRIC_COUNTER:
        if (d->v.counter_has_total) {
            double total = d->v.counter_abs, inc = d->v.counter;
            bool known = s->has_total;
            if (known) inc += total >= s->value ? total - s->value : total;
            s->value = total + d->v.counter;
            s->has_total = true;
            /* a first total says where the counter stands, not what happened this second */
            if (!known && d->v.counter == 0) return 0;
            s->interval_sum += inc;
        } else {
            s->value += d->v.counter;
            s->interval_sum += d->v.counter;
        }
        break;
    case METRIC_GAUGE:
        if (d->v.gauge.has_abs)
            s->value = d->v.gauge.abs + d->v.gauge.delta;
        else
            s->value += d->v.gauge.delta;
        break;
    case METRIC_TIMER:
        if (!d->v.timer || d->v.timer->count <= 0) break;
        if (!s->cur) {
            s->cur = malloc(sizeof *s->cur);
            if (!s->cur) return -ENOMEM;
            sketch_init(s->cur);
        }
        if (sketch_merge(s->cur, d->v.timer) < 0) return -ENOMEM;
        s->count_total += d->v.timer->count;
        s->sum_total += d->v.timer->sum;
        break;
    case METRIC_SET:
        for (uint32_t i = 0; i < d->v.set.cap; i++)
            if (d->v.set.slots[i] && agg_set_insert(&s->members, d->v.set.slots[i]) < 0)
                return -ENOMEM;
        break;
    default: break;
    }
    s->dirty = true;
    return mark(r, s);
}

/* What a delta will touch a few deltas before it is merged: its slot (from the hash the
 * batch carries), then the series found there and both keys the lookup compares, and a
 * timer's current sketch. A batch holds thousands of deltas for series spread over the
 * whole registry; without this every one of them waits on 3-4 cache misses in a row.
 * Only hints: the lookup itself does not trust d->hash. */
static inline void prefetch_slot(const registry_t *r, const agg_delta_t *d) {
    __builtin_prefetch(&r->slots[(uint32_t)d->hash & (r->cap - 1)]);
    __builtin_prefetch(d->key);
}

static inline void prefetch_series(const registry_t *r, const agg_delta_t *d) {
    for (uint32_t j = (uint32_t)d->hash & (r->cap - 1); r->slots[j].s; j = (j + 1) & (r->cap - 1)) {
        if (r->slots[j].hash != d->hash) continue;
        const series_t *s = r->slots[j].s;
        __builtin_prefetch(s);
        __builtin_prefetch((const char *)s + 64);
        return;
    }
}

static inline void prefetch_series_data(const registry_t *r, const agg_delta_t *d) {
    for (uint32_t j = (uint32_t)d->hash & (r->cap - 1); r->slots[j].s; j = (j + 1) & (r->cap - 1)) {
        if (r->slots[j].hash != d->hash) continue;
        const series_t *s = r->slots[j].s;
        __builtin_prefetch(s->key);
        const sketch_t *src = d->kind == METRIC_TIMER ? d->v.timer : NULL;
        if (src && src->pos.len && s->cur && s->cur->pos.len) {
            /* where the merge starts adding (the hardware prefetcher takes the rest) */
            int64_t k = (int64_t)src->pos.offset - s->cur->pos.offset;
            if (k >= 0 && k < s->cur->pos.len) __builtin_prefetch(&s->cur->pos.counts[k], 1);
        }
        return;
    }
}

void registry_apply(registry_t *r, const agg_batch_t *b, double now, registry_result_t *res) {
    r->change_seq++;
    for (uint32_t i = 0; i < b->n; i++) {
        if (r->cap) {
            if (i + 12 < b->n) prefetch_slot(r, &b->d[i + 12]);
            if (i + 6 < b->n) prefetch_series(r, &b->d[i + 6]);
            if (i + 3 < b->n) prefetch_series_data(r, &b->d[i + 3]);
        }
        const agg_delta_t *d = &b->d[i];
        int reason = 0;
        series_t *s = series_get(r, d->key, d->kind, &reason);
        if (!s || apply_delta(r, s, d) < 0) {
            /* out of memory counts as a series-limit refusal: the sender sees a refusal
             * either way, and the log of the allocation failure is the allocator's */
            int why = s || reason < 0 ? REG_REJECT_SERIES_LIMIT : reason;
            res->rejected[why] += d->nlines;
            continue;
        }
        s->updated_at = now;
        s->changed_gen = r->gen + 1;
        if (s->kind == METRIC_COUNTER || s->kind == METRIC_GAUGE) note_change(r, s);
        res->accepted += d->nlines;
    }
}

static void point(registry_t *r, series_t *s, uint32_t t, double v, const double *x) {
    history_push(&s->hist, t, v, x);
    if (r->on_point) r->on_point(r->point_ctx, s, t, v);
}

static void close_interval(registry_t *r, series_t *s, uint32_t t) {
    bool had_data = s->dirty;
    s->dirty = false;
    switch (s->kind) {
    case METRIC_COUNTER:
        s->rate = s->interval_sum; /* the interval is one second */
        if (had_data) point(r, s, t, s->interval_sum, NULL);
        s->zero_pending = s->interval_sum != 0;
        s->interval_sum = 0;
        break;
    case METRIC_GAUGE:
        if (had_data) point(r, s, t, s->value, NULL);
        break;
    case METRIC_TIMER:
        if (s->cur && s->cur->count > 0) {
            timer_stats_t *l = &s->last;
            l->count = s->cur->count;
            l->sum = s->cur->sum;
            l->min = s->cur->min;
            l->max = s->cur->max;
            l->p50 = sketch_quantile(s->cur, 0.5);
            l->p90 = sketch_quantile(s->cur, 0.9);
            l->p99 = sketch_quantile(s->cur, 0.99);
            s->value = l->sum / l->count;
            double x[HIST_EXTRAS] = {l->count, l->sum, l->min, l->max, l->p50, l->p90, l->p99};
            point(r, s, t, s->value, x);
            sketch_reset(s->cur);
        }
        break;
    case METRIC_SET:
        s->value = s->members.n;
        if (had_data) point(r, s, t, s->value, NULL);
        s->zero_pending = s->members.n != 0;
        /* keep the table's memory for the next interval: sets are usually steady */
        if (s->members.slots) memset(s->members.slots, 0, s->members.cap * sizeof(uint64_t));
        s->members.n = 0;
        break;
    default: break;
    }
}

void registry_roll(registry_t *r, uint32_t now_sec) {
    uint32_t n = r->ndirty;
    series_t **list = r->dirty;
    r->dirty = NULL;
    r->ndirty = r->dirty_cap = 0;
    r->gen++;
    r->change_seq++;
    /* the interval just closed is [now_sec - 1, now_sec): its points carry now_sec - 1 */
    for (uint32_t i = 0; i < n; i++) {
        series_t *s = list[i];
        close_interval(r, s, now_sec - 1);
        /* counters' rate, timers' statistics and sets' sizes change at the roll */
        if (s->kind != METRIC_GAUGE) note_change(r, s);
        if (s->zero_pending) mark(r, s); /* to show rate / cardinality 0 once idle */
    }
    free(list);
}

double registry_trend_value(const series_t *s) {
    return s->kind == METRIC_COUNTER ? s->rate : s->value;
}

static const char *direction(double now_v, double ref, double deadband) {
    if (isnan(now_v) || isnan(ref)) return "stable";
    double scale = fabs(ref) > 1e-12 ? fabs(ref) : 1.0;
    double rel = (now_v - ref) / scale;
    return rel > deadband ? "up" : rel < -deadband ? "down" : "stable";
}

const char *registry_trend_direction(const registry_t *r, const series_t *s, double now) {
    double v = registry_trend_value(s);
    if (!isnan(s->ref_hour)) return direction(v, s->ref_hour, r->trend_deadband);
    uint32_t i = history_first_from(&s->hist, (uint32_t)(now - 300));
    if (i >= s->hist.len) return "stable";
    uint32_t t;
    double ref;
    history_get(&s->hist, i, &t, &ref, NULL);
    return direction(v, ref, r->trend_deadband);
}

series_t *registry_restore(registry_t *r, series_key_t *key, metric_kind_t kind) {
    int reason = 0;
    return series_get(r, key, kind, &reason);
}

static int cmp_family(const void *a, const void *b) {
    return strcmp((*(family_t *const *)a)->name, (*(family_t *const *)b)->name);
}

family_t *const *registry_families(registry_t *r, uint32_t *n) {
    if (!r->fams_sorted && r->nfam) {
        qsort(r->fams, r->nfam, sizeof *r->fams, cmp_family);
        r->fams_sorted = true;
    }
    *n = r->nfam;
    return r->fams;
}
