#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "series_key.h"
#include "sketch.h"
#include "statsd.h"

const char *bridge_err_name(bridge_err_t e) {
    static const char *const names[BRIDGE_E_COUNT] = {"ok", "too_large", "bad_json",
                                                      "bad_version", "bad_field", "no_memory"};
    return e >= 0 && e < BRIDGE_E_COUNT ? names[e] : "unknown";
}

/* ---- encoding ---------------------------------------------------------------------------- */

static void head(jsonw_t *w, const char *kind, const char *hub) {
    jsonw_obj_open(w);
    jsonw_kv_int(w, "v", BRIDGE_VERSION);
    jsonw_kv_str(w, "k", kind);
    jsonw_kv_str(w, "hub", hub);
}

int bridge_encode_event(const char *hub, uint64_t oseq, uint64_t prev, bool replay,
                        const event_t *e, buf_t *out) {
    jsonw_t w;
    jsonw_init(&w, out);
    head(&w, "event", hub);
    jsonw_kv_uint(&w, "oseq", oseq);
    jsonw_kv_uint(&w, "prev", prev);
    if (replay) jsonw_kv_bool(&w, "replay", true);
    jsonw_key(&w, "event");
    jsonw_raw(&w, e->envelope, e->envelope_len);
    jsonw_obj_close(&w);
    return jsonw_error(&w) ? -ENOMEM : 0;
}

static void key_parts(jsonw_t *w, const series_key_t *k) {
    jsonw_str(w, skey_name(k));
    jsonw_obj_open(w);
    for (int i = 0; i < k->nlabels; i++) {
        skey_label_t l;
        skey_label(k, i, &l);
        jsonw_kv_str(w, l.name, l.value);
    }
    jsonw_obj_close(w);
}

/* [offset, length, [index, count, ...]]: only the buckets in use (a timer's interval
 * touches a few of the ~100 its range spans), index relative to offset */
static void store_parts(jsonw_t *w, const sketch_store_t *st) {
    jsonw_arr_open(w);
    jsonw_int(w, st->offset);
    jsonw_uint(w, st->len);
    jsonw_arr_open(w);
    for (uint32_t i = 0; i < st->len; i++) {
        if (st->counts[i] == 0) continue;
        jsonw_uint(w, i);
        jsonw_num(w, st->counts[i]);
    }
    jsonw_arr_close(w);
    jsonw_arr_close(w);
}

static bool all_finite(const double *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* Whether d can be written (every number finite). */
static bool delta_finite(const agg_delta_t *d) {
    switch (d->kind) {
    case METRIC_COUNTER:
        return isfinite(d->v.counter) && (!d->v.counter_has_total || isfinite(d->v.counter_abs));
    case METRIC_GAUGE:
        return isfinite(d->v.gauge.delta) && (!d->v.gauge.has_abs || isfinite(d->v.gauge.abs));
    case METRIC_TIMER: {
        const sketch_t *s = d->v.timer;
        if (!s) return false;
        double f[] = {s->count, s->sum, s->min, s->max, s->zero};
        return all_finite(f, 5) && all_finite(s->pos.counts, s->pos.len) &&
               all_finite(s->neg.counts, s->neg.len);
    }
    case METRIC_SET: return true;
    default: return false;
    }
}

int bridge_encode_samples(const char *hub, const agg_batch_t *b, uint32_t from, uint32_t *next,
                          buf_t *out) {
    jsonw_t w;
    jsonw_init(&w, out);
    size_t start = out->len;
    head(&w, "samples", hub);
    jsonw_key(&w, "d");
    jsonw_arr_open(&w);
    uint32_t i = from, written = 0;
    for (; i < b->n && written < BRIDGE_MAX_DELTAS && out->len - start < BRIDGE_MAX_BYTES / 2;
         i++) {
        const agg_delta_t *d = &b->d[i];
        if (!delta_finite(d)) continue;
        written++;
        jsonw_arr_open(&w);
        static const char *const kinds[] = {"c", "g", "t", "s"};
        jsonw_str(&w, kinds[d->kind]);
        key_parts(&w, d->key);
        jsonw_uint(&w, d->nlines);
        switch (d->kind) {
        case METRIC_COUNTER:
            jsonw_num(&w, d->v.counter);
            if (d->v.counter_has_total)
                jsonw_num(&w, d->v.counter_abs);
            else
                jsonw_null(&w);
            break;
        case METRIC_GAUGE:
            if (d->v.gauge.has_abs)
                jsonw_num(&w, d->v.gauge.abs);
            else
                jsonw_null(&w);
            jsonw_num(&w, d->v.gauge.delta);
            break;
        case METRIC_TIMER: {
            const sketch_t *s = d->v.timer;
            jsonw_num(&w, s->count);
            jsonw_num(&w, s->sum);
            jsonw_num(&w, s->min);
            jsonw_num(&w, s->max);
            jsonw_num(&w, s->zero);
            store_parts(&w, &s->pos);
            store_parts(&w, &s->neg);
            break;
        }
        case METRIC_SET: {
            jsonw_arr_open(&w);
            for (uint32_t k = 0; k < d->v.set.cap; k++) {
                if (!d->v.set.slots[k]) continue;
                char hex[17];
                snprintf(hex, sizeof hex, "%016" PRIx64, d->v.set.slots[k]);
                jsonw_str(&w, hex);
            }
            jsonw_arr_close(&w);
            break;
        }
        default: break;
        }
        jsonw_arr_close(&w);
    }
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    *next = i;
    return jsonw_error(&w) ? -ENOMEM : 0;
}

int bridge_encode_replay(const char *hub, const char *to, uint64_t after, buf_t *out) {
    jsonw_t w;
    jsonw_init(&w, out);
    head(&w, "replay", hub);
    jsonw_kv_str(&w, "to", to);
    jsonw_kv_uint(&w, "after", after);
    jsonw_obj_close(&w);
    return jsonw_error(&w) ? -ENOMEM : 0;
}

int bridge_encode_sources(const char *hub, const sources_t *s, double now, uint64_t last,
                          buf_t *out) {
    jsonw_t w;
    jsonw_init(&w, out);
    head(&w, "sources", hub);
    jsonw_kv_num(&w, "at", now);
    jsonw_kv_uint(&w, "last", last);
    jsonw_key(&w, "sources");
    jsonw_arr_open(&w);
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->cap && n < BRIDGE_MAX_SOURCES; i++) {
        const source_info_t *si = s->slots[i];
        if (!si || !si->online || si->builtin) continue;
        n++;
        jsonw_obj_open(&w);
        jsonw_kv_str(&w, "id", si->id);
        jsonw_kv_str(&w, "session_id", si->session_id);
        jsonw_kv_num(&w, "connected_at", si->connected_at);
        jsonw_kv_num(&w, "last_seen", si->last_seen);
        jsonw_key(&w, "attrs");
        const char *a = si->attrs ? si->attrs : "{}";
        jsonw_raw(&w, a, strlen(a));
        jsonw_obj_close(&w);
    }
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    return jsonw_error(&w) ? -ENOMEM : 0;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static bridge_err_t fail(bridge_err_t e, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bridge_err_t fail(bridge_err_t e, char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return e;
}

#define FIELD(...) fail(BRIDGE_E_FIELD, err, errlen, __VA_ARGS__)

static bool get_u64(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool get_finite(json_t *v, double *out) {
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    if (!isfinite(d)) return false;
    *out = d;
    return true;
}

static bridge_err_t decode_event(json_t *root, double now, bridge_msg_t *m, char *err,
                                 size_t errlen) {
    if (!get_u64(json_object_get(root, "oseq"), &m->oseq) || m->oseq == 0)
        return FIELD("event: \"oseq\" must be a positive integer");
    if (!get_u64(json_object_get(root, "prev"), &m->prev) || m->prev >= m->oseq)
        return FIELD("event: \"prev\" must be an integer below oseq");
    json_t *rp = json_object_get(root, "replay");
    if (rp && !json_is_boolean(rp)) return FIELD("event: \"replay\" must be a boolean");
    m->replay = rp && json_is_true(rp);
    json_t *env = json_object_get(root, "event");
    if (!json_is_object(env)) return FIELD("event: \"event\" must be an envelope object");
    char eerr[EVENT_ERR_LEN];
    m->event = event_prepare_json(env, now, "xxxxxx", eerr); /* the same checks as a publish */
    if (!m->event) return FIELD("event: %s", eerr);
    if (m->event->envelope_len > EVENT_MAX_BYTES)
        return FIELD("event: the envelope is larger than %d bytes", EVENT_MAX_BYTES);
    /* a bridged envelope is complete: the origin filled it in already */
    if (!json_is_string(json_object_get(env, "id")) ||
        !json_is_number(json_object_get(env, "timestamp")))
        return FIELD("event: the envelope has no id or timestamp");
    return BRIDGE_OK;
}

/* name and labels of a delta → its canonical key, validated as a StatsD line's would be */
static bridge_err_t delta_key(json_t *name, json_t *labels, metric_kind_t kind,
                              series_key_t **out, char *err, size_t errlen) {
    if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) > 255)
        return FIELD("samples: a name must be a string of 1-255 bytes");
    if (!json_is_object(labels) || json_object_size(labels) > STATSD_MAX_TAGS)
        return FIELD("samples: labels must be an object of at most %d strings", STATSD_MAX_TAGS);
    statsd_line_t l;
    memset(&l, 0, sizeof l);
    l.name = json_string_value(name);
    l.name_len = json_string_length(name);
    l.kind = kind;
    l.rate = 1.0;
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) {
        if (!json_is_string(v) || strlen(k) == 0 || strlen(k) > 255 || json_string_length(v) > 255)
            return FIELD("samples: label values must be strings of at most 255 bytes");
        l.tags[l.ntags++] = (statsd_tag_t){k, (uint16_t)strlen(k), json_string_value(v),
                                           (uint16_t)json_string_length(v)};
    }
    int rc = skey_from_line(&l, out);
    if (rc == -ENOMEM) return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    if (rc != STATSD_OK) return FIELD("samples: invalid series name or label (%s)",
                                      statsd_reason_name((statsd_reason_t)rc));
    return BRIDGE_OK;
}

static bridge_err_t decode_store(json_t *a, sketch_store_t *st, char *err, size_t errlen) {
    if (!json_is_array(a) || json_array_size(a) != 3)
        return FIELD("samples: a sketch store is [off,len,[index,count,...]]");
    json_t *off = json_array_get(a, 0), *len = json_array_get(a, 1), *pairs = json_array_get(a, 2);
    if (!json_is_integer(off) || json_integer_value(off) < -100000 ||
        json_integer_value(off) > 100000 || !json_is_integer(len) || json_integer_value(len) < 0 ||
        json_integer_value(len) > BRIDGE_MAX_BUCKETS || !json_is_array(pairs) ||
        json_array_size(pairs) % 2 || json_array_size(pairs) / 2 > (size_t)json_integer_value(len))
        return FIELD("samples: a sketch store's offset, length or buckets are out of range");
    st->offset = (int32_t)json_integer_value(off);
    st->len = (uint32_t)json_integer_value(len);
    if (!st->len) return BRIDGE_OK;
    st->counts = calloc(st->len, sizeof *st->counts);
    if (!st->counts) {
        st->len = 0;
        return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    }
    int64_t prev = -1;
    for (size_t k = 0; k < json_array_size(pairs); k += 2) {
        json_t *ix = json_array_get(pairs, k);
        double c;
        if (!json_is_integer(ix) || json_integer_value(ix) <= prev ||
            json_integer_value(ix) >= (json_int_t)st->len)
            return FIELD("samples: bucket indexes must grow and stay below the length");
        if (!get_finite(json_array_get(pairs, k + 1), &c) || c <= 0)
            return FIELD("samples: bucket counts must be finite and > 0");
        prev = json_integer_value(ix);
        st->counts[prev] = c;
    }
    return BRIDGE_OK;
}

static bridge_err_t decode_timer(json_t *d, agg_delta_t *out, char *err, size_t errlen) {
    if (json_array_size(d) != 11) return FIELD("samples: a timer has 11 fields");
    sketch_t *s = calloc(1, sizeof *s);
    if (!s) return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    sketch_init(s);
    out->v.timer = s; /* freed with the delta from here on */
    double f[5];
    for (int i = 0; i < 5; i++)
        if (!get_finite(json_array_get(d, (size_t)(4 + i)), &f[i]))
            return FIELD("samples: timer figures must be finite numbers");
    s->count = f[0], s->sum = f[1], s->min = f[2], s->max = f[3], s->zero = f[4];
    if (s->count <= 0 || s->zero < 0 || s->zero > s->count || s->min > s->max)
        return FIELD("samples: timer count, zero weight or min/max out of range");
    bridge_err_t e = decode_store(json_array_get(d, 9), &s->pos, err, errlen);
    if (e == BRIDGE_OK) e = decode_store(json_array_get(d, 10), &s->neg, err, errlen);
    if (e != BRIDGE_OK) return e;
    double total = s->zero;
    for (uint32_t i = 0; i < s->pos.len; i++) total += s->pos.counts[i];
    for (uint32_t i = 0; i < s->neg.len; i++) total += s->neg.counts[i];
    /* the weights must add up (within rounding): quantiles walk them against count */
    if (!(fabs(total - s->count) <= 1e-6 * s->count + 1e-9))
        return FIELD("samples: timer bucket weights do not add up to its count");
    return BRIDGE_OK;
}

static bridge_err_t decode_set(json_t *d, agg_delta_t *out, char *err, size_t errlen) {
    json_t *mem = json_array_get(d, 4);
    if (json_array_size(d) != 5 || !json_is_array(mem) || json_array_size(mem) > BRIDGE_MAX_MEMBERS)
        return FIELD("samples: a set is [\"s\",name,labels,nlines,[members]]");
    size_t i;
    json_t *v;
    json_array_foreach(mem, i, v) {
        const char *h = json_string_value(v);
        char *end = NULL;
        if (!h || json_string_length(v) != 16) return FIELD("samples: a set member is 16 hex digits");
        for (int k = 0; k < 16; k++)
            if (!((h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f')))
                return FIELD("samples: a set member is 16 hex digits");
        uint64_t x = strtoull(h, &end, 16);
        if (agg_set_insert(&out->v.set, x ? x : 1) < 0)
            return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    }
    return BRIDGE_OK;
}

static bridge_err_t decode_delta(json_t *d, agg_delta_t *out, char *err, size_t errlen) {
    if (!json_is_array(d) || json_array_size(d) < 5) return FIELD("samples: a delta is an array");
    const char *k = json_string_value(json_array_get(d, 0));
    metric_kind_t kind;
    if (!k) return FIELD("samples: a delta starts with its kind");
    if (strcmp(k, "c") == 0)
        kind = METRIC_COUNTER;
    else if (strcmp(k, "g") == 0)
        kind = METRIC_GAUGE;
    else if (strcmp(k, "t") == 0)
        kind = METRIC_TIMER;
    else if (strcmp(k, "s") == 0)
        kind = METRIC_SET;
    else
        return FIELD("samples: unknown kind \"%.8s\"", k);
    out->kind = kind;
    uint64_t nl;
    if (!get_u64(json_array_get(d, 3), &nl) || nl > UINT32_MAX)
        return FIELD("samples: nlines must be a 32-bit count");
    out->nlines = (uint32_t)nl;
    bridge_err_t e = delta_key(json_array_get(d, 1), json_array_get(d, 2), kind, &out->key, err,
                               errlen);
    if (e != BRIDGE_OK) return e;
    out->hash = out->key->hash;
    switch (kind) {
    case METRIC_COUNTER: {
        json_t *tot = json_array_get(d, 5);
        if (json_array_size(d) != 6 || !get_finite(json_array_get(d, 4), &out->v.counter) ||
            (!json_is_null(tot) && !get_finite(tot, &out->v.counter_abs)))
            return FIELD("samples: a counter is [\"c\",name,labels,nlines,inc,total|null]");
        out->v.counter_has_total = !json_is_null(tot);
        return BRIDGE_OK;
    }
    case METRIC_GAUGE: {
        json_t *abs = json_array_get(d, 4);
        if (json_array_size(d) != 6 || (!json_is_null(abs) && !get_finite(abs, &out->v.gauge.abs)) ||
            !get_finite(json_array_get(d, 5), &out->v.gauge.delta))
            return FIELD("samples: a gauge is [\"g\",name,labels,nlines,abs|null,delta]");
        out->v.gauge.has_abs = !json_is_null(abs);
        return BRIDGE_OK;
    }
    case METRIC_TIMER: return decode_timer(d, out, err, errlen);
    case METRIC_SET: return decode_set(d, out, err, errlen);
    default: return FIELD("samples: unknown kind");
    }
}

static bridge_err_t decode_samples(json_t *root, bridge_msg_t *m, char *err, size_t errlen) {
    json_t *d = json_object_get(root, "d");
    if (!json_is_array(d) || json_array_size(d) > BRIDGE_MAX_DELTAS)
        return FIELD("samples: \"d\" must be an array of at most %d deltas", BRIDGE_MAX_DELTAS);
    size_t n = json_array_size(d);
    agg_batch_t *b = calloc(1, sizeof *b + n * sizeof b->d[0]);
    if (!b) return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    b->transport = INGEST_UDP;
    m->batch = b;
    for (size_t i = 0; i < n; i++) {
        b->n = (uint32_t)i + 1; /* the delta being filled is freed with the batch on a fault */
        bridge_err_t e = decode_delta(json_array_get(d, i), &b->d[i], err, errlen);
        if (e != BRIDGE_OK) return e;
    }
    b->n = (uint32_t)n;
    return BRIDGE_OK;
}

static bridge_err_t decode_sources(json_t *root, bridge_msg_t *m, char *err, size_t errlen) {
    json_t *src = json_object_get(root, "sources");
    if (!get_finite(json_object_get(root, "at"), &m->at))
        return FIELD("sources: \"at\" must be unix seconds");
    json_t *last = json_object_get(root, "last");
    if (last && !get_u64(last, &m->last)) return FIELD("sources: \"last\" must be a seq");
    if (!json_is_array(src) || json_array_size(src) > BRIDGE_MAX_SOURCES)
        return FIELD("sources: \"sources\" must be an array of at most %d", BRIDGE_MAX_SOURCES);
    size_t n = json_array_size(src);
    if (n) {
        m->sources = calloc(n, sizeof *m->sources);
        if (!m->sources) return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    }
    size_t i;
    json_t *v;
    json_array_foreach(src, i, v) {
        bridge_source_t *s = &m->sources[i];
        m->nsources = (uint32_t)i + 1;
        json_t *id = json_object_get(v, "id"), *sid = json_object_get(v, "session_id");
        json_t *attrs = json_object_get(v, "attrs");
        if (!json_is_object(v) || !json_is_string(id) ||
            !sources_id_valid(json_string_value(id)) || !json_is_string(sid) ||
            json_string_length(sid) >= sizeof s->session_id ||
            !get_finite(json_object_get(v, "connected_at"), &s->connected_at) ||
            !get_finite(json_object_get(v, "last_seen"), &s->last_seen) || !json_is_object(attrs))
            return FIELD("sources: an entry is {id, session_id, connected_at, last_seen, attrs}");
        snprintf(s->id, sizeof s->id, "%s", json_string_value(id));
        snprintf(s->session_id, sizeof s->session_id, "%s", json_string_value(sid));
        s->attrs = json_dumps(attrs, JSON_COMPACT);
        if (!s->attrs) return fail(BRIDGE_E_NOMEM, err, errlen, "out of memory");
    }
    return BRIDGE_OK;
}

bridge_err_t bridge_decode(const char *data, size_t len, double now, bridge_msg_t *out,
                           char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    if (len > BRIDGE_MAX_BYTES)
        return fail(BRIDGE_E_TOO_LARGE, err, errlen, "message of %zu bytes (limit %d)", len,
                    BRIDGE_MAX_BYTES);
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return fail(BRIDGE_E_JSON, err, errlen, "invalid JSON at %d: %s", jerr.position, jerr.text);
    bridge_err_t e = BRIDGE_OK;
    json_t *v = json_object_get(root, "v");
    const char *kind = json_string_value(json_object_get(root, "k"));
    json_t *hub = json_object_get(root, "hub");
    if (!json_is_object(root)) {
        e = fail(BRIDGE_E_JSON, err, errlen, "a message is a JSON object");
    } else if (!json_is_integer(v) || json_integer_value(v) != BRIDGE_VERSION) {
        e = fail(BRIDGE_E_VERSION, err, errlen, "version %s, this hub speaks %d",
                 json_is_integer(v) ? "other" : "missing", BRIDGE_VERSION);
    } else if (!json_is_string(hub) ||
               !cursor_hub_id_valid(json_string_value(hub), json_string_length(hub))) {
        e = FIELD("\"hub\" must be 1-%d of [A-Za-z0-9_-]", HUB_ID_MAX);
    } else if (!kind) {
        e = FIELD("\"k\" (the kind) is missing");
    } else {
        snprintf(out->hub, sizeof out->hub, "%s", json_string_value(hub));
        if (strcmp(kind, "event") == 0) {
            out->kind = BRIDGE_EVENT;
            e = decode_event(root, now, out, err, errlen);
        } else if (strcmp(kind, "samples") == 0) {
            out->kind = BRIDGE_SAMPLES;
            e = decode_samples(root, out, err, errlen);
        } else if (strcmp(kind, "sources") == 0) {
            out->kind = BRIDGE_SOURCES;
            e = decode_sources(root, out, err, errlen);
        } else if (strcmp(kind, "replay") == 0) {
            out->kind = BRIDGE_REPLAY;
            json_t *to = json_object_get(root, "to");
            if (!json_is_string(to) ||
                !cursor_hub_id_valid(json_string_value(to), json_string_length(to)) ||
                !get_u64(json_object_get(root, "after"), &out->after))
                e = FIELD("replay: {to, after} expected");
            else
                snprintf(out->to, sizeof out->to, "%s", json_string_value(to));
        } else {
            e = FIELD("unknown kind \"%.16s\"", kind);
        }
    }
    json_decref(root);
    if (e != BRIDGE_OK) bridge_msg_free(out);
    return e;
}

void bridge_msg_free(bridge_msg_t *m) {
    if (m->event) event_unref(m->event);
    agg_batch_free(m->batch);
    for (uint32_t i = 0; i < m->nsources; i++) free(m->sources[i].attrs);
    free(m->sources);
    memset(m, 0, sizeof *m);
}
