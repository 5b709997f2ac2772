#include "ingest_json.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

uint64_t ingest_counts_rejected(const ingest_counts_t *c) {
    uint64_t n = 0;
    for (int i = 0; i < STATSD_REASON_COUNT; i++) n += c->rejected[i];
    return n;
}

static void deliver(ingest_sample_cb cb, void *ud, const statsd_line_t *l, ingest_counts_t *c) {
    int rc = cb(ud, l);
    if (rc == 0)
        c->accepted++;
    else if (rc > 0 && rc < STATSD_REASON_COUNT)
        c->rejected[rc]++;
    else
        c->rejected[STATSD_BAD_VALUE]++;
}

void ingest_statsd_text(const char *body, size_t len, ingest_sample_cb cb, void *ud,
                        ingest_counts_t *counts) {
    const char *p = body, *end = body + len;
    statsd_line_t line;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        statsd_reason_t r = statsd_parse_line(p, n, &line);
        if (r == STATSD_OK)
            deliver(cb, ud, &line, counts);
        else if (r != STATSD_EMPTY)
            counts->rejected[r]++;
        p += n + 1;
    }
}

/* Labels from a JSON object into line->tags; strings only. */
static statsd_reason_t add_labels(statsd_line_t *l, json_t *labels) {
    if (!labels) return STATSD_OK;
    if (!json_is_object(labels)) return STATSD_BAD_TAGS;
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) {
        if (l->ntags >= STATSD_MAX_TAGS) return STATSD_BAD_TAGS;
        if (!json_is_string(v)) return STATSD_BAD_TAGS;
        size_t kl = strlen(k), vl = json_string_length(v);
        if (kl == 0) return STATSD_BAD_TAGS;
        if (kl > 255 || vl > 255) return STATSD_TOO_LONG;
        statsd_tag_t *t = &l->tags[l->ntags++];
        t->key = k;
        t->key_len = (uint16_t)kl;
        t->value = json_string_value(v);
        t->value_len = (uint16_t)vl;
    }
    return STATSD_OK;
}

static statsd_reason_t set_name(statsd_line_t *l, const char *name) {
    size_t n = strlen(name);
    if (n == 0) return STATSD_BAD_NAME;
    if (n > STATSD_MAX_NAME) return STATSD_TOO_LONG;
    l->name = name;
    l->name_len = n;
    return STATSD_OK;
}

/* {"source":..,"timestamp":..,"metrics":{name:number,...}} */
static int parse_metrics_form(json_t *root, ingest_sample_cb cb, void *ud, ingest_counts_t *c,
                              char *err, size_t errlen) {
    json_t *metrics = json_object_get(root, "metrics");
    json_t *source = json_object_get(root, "source");
    json_t *ts = json_object_get(root, "timestamp");
    if (!json_is_object(metrics)) {
        snprintf(err, errlen, "\"metrics\" must be an object of name: number");
        return -1;
    }
    if (source && !json_is_string(source)) {
        snprintf(err, errlen, "\"source\" must be a string");
        return -1;
    }
    if (ts && !json_is_number(ts)) {
        snprintf(err, errlen, "\"timestamp\" must be a number (unix seconds)");
        return -1;
    }
    const char *name;
    json_t *v;
    json_object_foreach(metrics, name, v) {
        statsd_line_t l;
        memset(&l, 0, sizeof l);
        l.kind = METRIC_GAUGE;
        l.rate = 1.0;
        statsd_reason_t r = set_name(&l, name);
        if (r == STATSD_OK && !json_is_number(v)) r = STATSD_BAD_VALUE;
        if (r == STATSD_OK) {
            l.values[0] = json_number_value(v);
            l.nvalues = 1;
            if (!isfinite(l.values[0])) r = STATSD_BAD_VALUE;
        }
        if (r == STATSD_OK && source) {
            size_t sl = json_string_length(source);
            if (sl > 255) {
                r = STATSD_TOO_LONG;
            } else {
                l.tags[0] = (statsd_tag_t){"source", 6, json_string_value(source), (uint16_t)sl};
                l.ntags = 1;
            }
        }
        if (r == STATSD_OK)
            deliver(cb, ud, &l, c);
        else
            c->rejected[r]++;
    }
    return 0;
}

static statsd_reason_t sample_line(json_t *s, statsd_line_t *l, char *member, size_t mcap) {
    memset(l, 0, sizeof *l);
    l->rate = 1.0;
    if (!json_is_object(s)) return STATSD_BAD_VALUE;
    json_t *name = json_object_get(s, "name");
    if (!json_is_string(name)) return STATSD_BAD_NAME;
    statsd_reason_t r = set_name(l, json_string_value(name));
    if (r != STATSD_OK) return r;
    json_t *kind = json_object_get(s, "kind");
    metric_kind_t k = METRIC_GAUGE;
    if (kind && (!json_is_string(kind) || metric_kind_parse(json_string_value(kind), &k) < 0))
        return STATSD_BAD_TYPE;
    l->kind = k;
    json_t *rate = json_object_get(s, "sample_rate");
    if (rate) {
        if (!json_is_number(rate)) return STATSD_BAD_RATE;
        l->rate = json_number_value(rate);
        if (!(l->rate > 0 && l->rate <= 1)) return STATSD_BAD_RATE;
    }
    json_t *delta = json_object_get(s, "delta");
    if (delta && !json_is_boolean(delta)) return STATSD_BAD_VALUE;
    l->gauge_delta = k == METRIC_GAUGE && json_is_true(delta);
    json_t *v = json_object_get(s, "value");
    if (k == METRIC_SET) {
        if (json_is_string(v)) {
            l->member = json_string_value(v);
            l->member_len = json_string_length(v);
        } else if (json_is_number(v)) { /* a numeric member: its text is the identity */
            int n = snprintf(member, mcap, "%.17g", json_number_value(v));
            l->member = member;
            l->member_len = (size_t)n;
        } else {
            return STATSD_BAD_VALUE;
        }
        if (l->member_len == 0) return STATSD_BAD_VALUE;
    } else {
        if (!json_is_number(v)) return v ? STATSD_BAD_VALUE : STATSD_NO_VALUE;
        l->values[0] = json_number_value(v);
        if (!isfinite(l->values[0])) return STATSD_BAD_VALUE;
        l->nvalues = 1;
    }
    return add_labels(l, json_object_get(s, "labels"));
}

/* {"samples":[{...},...]} */
static int parse_samples_form(json_t *samples, ingest_sample_cb cb, void *ud, ingest_counts_t *c,
                              char *err, size_t errlen) {
    if (!json_is_array(samples)) {
        snprintf(err, errlen, "\"samples\" must be an array of sample objects");
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s) {
        statsd_line_t l;
        char member[40];
        statsd_reason_t r = sample_line(s, &l, member, sizeof member);
        if (r == STATSD_OK)
            deliver(cb, ud, &l, c);
        else
            c->rejected[r]++;
    }
    return 0;
}

int ingest_json_parse(const char *body, size_t len, ingest_sample_cb cb, void *ud,
                      ingest_counts_t *counts, char *err, size_t errlen) {
    json_error_t jerr;
    /* integers as doubles: a byte counter past 2^63 is a big number, not a bad body */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    int rc;
    json_t *samples = json_object_get(root, "samples");
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the body must be a JSON object");
        rc = -1;
    } else if (samples) {
        rc = parse_samples_form(samples, cb, ud, counts, err, errlen);
    } else if (json_object_get(root, "metrics")) {
        rc = parse_metrics_form(root, cb, ud, counts, err, errlen);
    } else {
        snprintf(err, errlen, "expected {\"metrics\":{...}} or {\"samples\":[...]}");
        rc = -1;
    }
    json_decref(root);
    return rc;
}
