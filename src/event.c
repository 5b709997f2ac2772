#include "event.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonw.h"
#include "ws.h"

static bool word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

bool event_type_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > EVENT_TYPE_MAX) return false;
    const char *dot = strchr(s, '.');
    if (!dot || dot == s || dot[1] == '\0' || strchr(dot + 1, '.')) return false;
    for (const char *p = s; *p; p++)
        if (*p != '.' && !word_char(*p)) return false;
    return true;
}

void event_random6(uint64_t *state, char out[6]) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < 6; i++) {
        uint64_t x = *state; /* xorshift64 */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        out[i] = alphabet[(x >> 32) % 36];
    }
}

/* evt_<module>_<unix_ms>_<6 [a-z0-9]> with the module of the type. The milliseconds
 * have at least 10 digits (zero-padded: a timestamp before 1970-04-26 has fewer), as
 * id_valid() demands of a supplied id: an id the hub makes must pass its own check when
 * the envelope is published again (relayed, replayed by a client). now is within
 * [0, EVENT_MAX_TIMESTAMP], so the milliseconds fit in a long long. */
static void make_id(const char *type, double now, const char rnd6[6], char *out, size_t outlen) {
    const char *dot = strchr(type, '.');
    int ml = dot ? (int)(dot - type) : (int)strlen(type);
    snprintf(out, outlen, "evt_%.*s_%010lld_%.6s", ml, type, (long long)floor(now * 1000.0), rnd6);
}

/* The id pattern, for ids a publisher supplies. */
static bool id_valid(const char *id) {
    if (strncmp(id, "evt_", 4) != 0) return false;
    const char *last = strrchr(id, '_');
    if (!last || strlen(last + 1) != 6) return false;
    for (const char *p = last + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) return false;
    const char *p = last - 1; /* the unix ms before it */
    int digits = 0;
    while (p > id + 4 && *p >= '0' && *p <= '9') p--, digits++;
    if (digits < 10 || *p != '_' || p <= id + 4) return false;
    for (const char *q = id + 4; q < p; q++)
        if (!word_char(*q)) return false;
    return true;
}

static event_t *event_alloc(void) {
    event_t *e = calloc(1, sizeof *e);
    if (e) atomic_init(&e->refs, 1);
    return e;
}

/* Writes s as a JSON string exactly as jansson's json_dumps does (compact, UTF-8 kept
 * as is): a string with nothing to escape is written between quotes directly; anything
 * else goes through jansson, so the bytes never depend on which path wrote them. */
static int put_jstr(buf_t *b, json_t *s) {
    const char *v = json_string_value(s);
    size_t n = json_string_length(s);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char ch = (unsigned char)v[i];
        plain = ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f;
    }
    if (plain) return buf_putc(b, '"') < 0 || buf_append(b, v, n) < 0 || buf_putc(b, '"') < 0
                          ? -ENOMEM
                          : 0;
    char *d = json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = d && buf_append(b, d, strlen(d)) == 0 ? 0 : -ENOMEM;
    free(d);
    return rc;
}

/* Writes the envelope in its canonical key order. source: the C string; cid: the meta's
 * correlation_id (a string) or NULL for null. meta is always
 * {"correlation_id":CID,"version":"1.0"}, byte for byte what json_dumps of that object
 * gave before it was written here directly. */
static int encode(event_t *e, const char *source, json_t *target, json_t *payload, json_t *cid) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "id", e->id);
    jsonw_kv_str(&w, "type", e->type);
    jsonw_kv_str(&w, "source", source);
    jsonw_key(&w, "target");
    if (json_is_string(target))
        jsonw_str(&w, json_string_value(target));
    else
        jsonw_null(&w);
    /* always with a fraction: the contract's timestamp is a float, and some JSON readers
     * turn 1703001234 into an integer */
    char ts[40];
    size_t tn = jsonw_fmt_double(e->timestamp, ts);
    if (!memchr(ts, '.', tn) && !memchr(ts, 'e', tn)) memcpy(ts + tn, ".0", 3), tn += 2;
    jsonw_key(&w, "timestamp");
    jsonw_raw(&w, ts, tn);
    jsonw_key(&w, "payload");
    if (payload && json_object_size(payload) > 0) {
        char *p = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!p) {
            buf_free(&b);
            return -ENOMEM;
        }
        jsonw_raw(&w, p, strlen(p));
        free(p);
    } else {
        jsonw_raw(&w, "{}", 2);
    }
    buf_t m = BUF_INIT;
    static const char m0[] = "{\"correlation_id\":", m1[] = ",\"version\":\"1.0\"}";
    int rc = buf_append(&m, m0, sizeof m0 - 1);
    if (rc == 0) rc = cid ? put_jstr(&m, cid) : buf_append(&m, "null", 4);
    if (rc == 0) rc = buf_append(&m, m1, sizeof m1 - 1);
    if (rc < 0) {
        buf_free(&m);
        buf_free(&b);
        return -ENOMEM;
    }
    jsonw_key(&w, "meta");
    jsonw_raw(&w, m.data, m.len);
    buf_free(&m);
    jsonw_obj_close(&w);
    if (jsonw_error(&w)) {
        buf_free(&b);
        return -ENOMEM;
    }
    e->envelope = buf_steal(&b, &e->envelope_len);
    return 0;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, EVENT_ERR_LEN, __VA_ARGS__);                                                 \
        goto fail;                                                                                 \
    } while (0)

event_t *event_prepare_json(json_t *root, double now, const char rnd6[6],
                            char err[EVENT_ERR_LEN]) {
    event_t *e = NULL;
    if (!json_is_object(root)) FAIL("an event is a JSON object");
    static const char *const allowed[] = {"id",      "type",    "source", "target",
                                          "timestamp", "payload", "meta"};
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof allowed / sizeof *allowed && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) FAIL("unknown envelope field \"%.64s\" (id, type, source, target, timestamp, "
                      "payload, meta)", k);
    }
    json_t *type = json_object_get(root, "type");
    if (!json_is_string(type) || !event_type_valid(json_string_value(type)))
        FAIL("\"type\" must be \"<module>.<event>\" in [a-z0-9_] (e.g. tasks.created)");
    e = event_alloc();
    if (!e) FAIL("out of memory");
    snprintf(e->type, sizeof e->type, "%s", json_string_value(type));

    json_t *id = json_object_get(root, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id) || json_string_length(id) >= sizeof e->id ||
            !id_valid(json_string_value(id)))
            FAIL("\"id\" must look like evt_<module>_<unix_ms>_<6 [a-z0-9]>");
        snprintf(e->id, sizeof e->id, "%s", json_string_value(id));
    }
    json_t *ts = json_object_get(root, "timestamp");
    if (ts && !json_is_null(ts)) {
        /* up to the year 9999: beyond, the milliseconds overflow the id's integer (and
         * no ISO 8601 rendering of it exists) */
        if (!json_is_number(ts) || !isfinite(json_number_value(ts)) || json_number_value(ts) < 0 ||
            json_number_value(ts) > EVENT_MAX_TIMESTAMP)
            FAIL("\"timestamp\" must be unix seconds as a number (0 to 253402300799)");
        e->timestamp = json_number_value(ts);
    } else {
        e->timestamp = floor(now * 1000.0) / 1000.0;
    }
    if (!e->id[0]) make_id(e->type, e->timestamp, rnd6, e->id, sizeof e->id);

    char def[EVENT_TYPE_MAX + 16];
    const char *source_out = def;
    json_t *source = json_object_get(root, "source");
    if (source && !json_is_null(source)) {
        if (!json_is_string(source) || json_string_length(source) == 0 ||
            json_string_length(source) > EVENT_SOURCE_MAX)
            FAIL("\"source\" must be a non-empty string of at most %d bytes (e.g. tasks_service)",
                 EVENT_SOURCE_MAX);
        source_out = json_string_value(source);
    } else {
        const char *dot = strchr(e->type, '.');
        snprintf(def, sizeof def, "%.*s_service", (int)(dot - e->type), e->type);
    }
    json_t *target = json_object_get(root, "target");
    if (target && !json_is_null(target) && !json_is_string(target))
        FAIL("\"target\" must be a string or null");
    json_t *payload = json_object_get(root, "payload");
    if (payload && !json_is_null(payload) && !json_is_object(payload))
        FAIL("\"payload\" must be an object");
    json_t *meta = json_object_get(root, "meta");
    json_t *cid_out = NULL;
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) FAIL("\"meta\" must be an object");
        json_t *cid = json_object_get(meta, "correlation_id");
        if (cid && !json_is_null(cid) && !json_is_string(cid))
            FAIL("\"meta.correlation_id\" must be a string or null");
        json_t *ver = json_object_get(meta, "version");
        if (ver && (!json_is_string(ver) || strcmp(json_string_value(ver), "1.0") != 0))
            FAIL("\"meta.version\" must be \"1.0\"");
        json_object_foreach(meta, k, v) {
            if (strcmp(k, "correlation_id") && strcmp(k, "version"))
                FAIL("unknown meta field \"%.64s\" (correlation_id, version)", k);
        }
        if (cid && json_is_string(cid)) cid_out = cid;
    }
    if (encode(e, source_out, target, payload && json_is_object(payload) ? payload : NULL,
               cid_out) < 0)
        FAIL("out of memory");
    return e;
fail:
    if (e) event_unref(e);
    return NULL;
}

event_t *event_prepare(const char *json, size_t len, double now, const char rnd6[6],
                       char err[EVENT_ERR_LEN]) {
    if (len > EVENT_MAX_BYTES) {
        snprintf(err, EVENT_ERR_LEN, "the event is larger than %d bytes", EVENT_MAX_BYTES);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, EVENT_ERR_LEN, "invalid JSON at position %d: %s", jerr.position, jerr.text);
        return NULL;
    }
    event_t *e = event_prepare_json(root, now, rnd6, err);
    json_decref(root);
    return e;
}

event_t *event_make(const char *type, const char *payload_json, const char *correlation_id,
                    double now, const char rnd6[6]) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", type);
    jsonw_key(&w, "payload");
    jsonw_raw(&w, payload_json, strlen(payload_json));
    jsonw_key(&w, "meta");
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "correlation_id", correlation_id);
    jsonw_kv_str(&w, "version", "1.0");
    jsonw_obj_close(&w);
    jsonw_obj_close(&w);
    char err[EVENT_ERR_LEN];
    event_t *e = jsonw_error(&w) ? NULL : event_prepare(b.data, b.len, now, rnd6, err);
    buf_free(&b);
    return e;
}

int event_seal(event_t *e, uint64_t seq) {
    e->seq = seq;
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\"type\":\"event\",\"seq\":%llu,", (unsigned long long)seq);
    if (e->cursor) buf_printf(&b, "\"cursor\":\"%s\",", e->cursor); /* [A-Za-z0-9_:,-] */
    buf_puts(&b, "\"data\":");
    buf_append(&b, e->envelope, e->envelope_len);
    buf_putc(&b, '}');
    if (!b.data) return -ENOMEM;
    /* never dropped by backpressure: a subscriber that cannot take it gets a resync */
    e->frame = ws_frame_text(b.data, b.len, 0);
    buf_free(&b);
    return e->frame ? 0 : -ENOMEM;
}

void event_unref(event_t *e) {
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
    frame_unref(e->frame);
    free(e->envelope);
    free(e->cursor);
    free(e);
}

char *event_cluster_format(const event_t *e) {
    buf_t b = BUF_INIT;
    buf_printf(&b, "%s %llu %llu %s", e->origin, (unsigned long long)e->oseq,
               (unsigned long long)e->oprev, e->cursor ? e->cursor : "");
    return buf_steal(&b, NULL);
}

void event_cluster_parse(event_t *e, const char *text) {
    char origin[HUB_ID_MAX + 1];
    unsigned long long oseq, oprev;
    int pos = 0;
    if (sscanf(text, "%64s %llu %llu %n", origin, &oseq, &oprev, &pos) < 3 || pos <= 0 ||
        !cursor_hub_id_valid(origin, strlen(origin)))
        return;
    cursor_t c;
    const char *cur = text + pos;
    if (cursor_parse(cur, strlen(cur), &c) < 0) return;
    char *copy = strdup(cur);
    if (!copy) return;
    snprintf(e->origin, sizeof e->origin, "%s", origin);
    e->oseq = oseq;
    e->oprev = oprev;
    free(e->cursor);
    e->cursor = copy;
}
