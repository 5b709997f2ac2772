/* libFuzzer target for the event envelope: the input as the `data` a publisher sends
 * (POST /api/v1/events, a WebSocket publish), through event_prepare() — validation of
 * every field, the defaults it fills in (id, source, timestamp, meta), the canonical
 * encoding — and event_seal() (the WebSocket frame every subscriber gets).
 *
 * Checked: a refusal has a message; an accepted event's envelope is a JSON object with
 * exactly the Charter v1.0 fields and their types (type valid and equal to e->type, id
 * evt_..., timestamp a finite number >= 0, payload an object, meta exactly
 * {correlation_id: string|null, version: "1.0"}); preparing the envelope again gives the
 * same envelope (it is canonical); the sealed frame is one text frame carrying
 * {"type":"event","seq":N,"data":ENVELOPE}. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_envelope(const event_t *e) {
    json_error_t je;
    json_t *env = json_loadb(e->envelope, e->envelope_len, JSON_REJECT_DUPLICATES, &je);
    assert(env && json_is_object(env));
    assert(json_object_size(env) == 7);
    json_t *type = json_object_get(env, "type"), *id = json_object_get(env, "id");
    assert(json_is_string(type) && strcmp(json_string_value(type), e->type) == 0);
    assert(event_type_valid(e->type));
    assert(json_is_string(id) && strcmp(json_string_value(id), e->id) == 0);
    assert(strncmp(e->id, "evt_", 4) == 0);
    json_t *src = json_object_get(env, "source");
    assert(json_is_string(src) && json_string_length(src) > 0);
    json_t *target = json_object_get(env, "target");
    assert(target && (json_is_null(target) || json_is_string(target)));
    json_t *ts = json_object_get(env, "timestamp");
    assert(json_is_number(ts) && isfinite(json_number_value(ts)) && json_number_value(ts) >= 0);
    assert(json_number_value(ts) == e->timestamp);
    assert(json_is_object(json_object_get(env, "payload")));
    json_t *meta = json_object_get(env, "meta");
    assert(json_is_object(meta) && json_object_size(meta) == 2);
    json_t *cid = json_object_get(meta, "correlation_id");
    assert(cid && (json_is_null(cid) || json_is_string(cid)));
    json_t *ver = json_object_get(meta, "version");
    assert(json_is_string(ver) && strcmp(json_string_value(ver), "1.0") == 0);
    json_decref(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[EVENT_ERR_LEN];
    err[0] = '\0';
    event_t *e = event_prepare((const char *)data, size, 1700000000.123, "abc123", err);
    if (!e) {
        assert(memchr(err, '\0', sizeof err) && err[0]);
        return 0;
    }
    assert(e->seq == 0 && !e->frame && e->envelope[e->envelope_len] == '\0');
    check_envelope(e);

    /* canonical: the envelope prepared again is itself */
    char err2[EVENT_ERR_LEN];
    event_t *again = event_prepare(e->envelope, e->envelope_len, 1800000000.0, "zzz999", err2);
    if (!again) {
        fprintf(stderr, "the envelope is refused: %s\n%s\n", err2, e->envelope);
        abort();
    }
    if (again->envelope_len != e->envelope_len || memcmp(again->envelope, e->envelope, e->envelope_len)) {
        fprintf(stderr, "not canonical:\n%s\n%s\n", e->envelope, again->envelope);
        abort();
    }
    event_unref(again);

    uint64_t seq = (uint64_t)size * 7919u + 1;
    assert(event_seal(e, seq) == 0);
    const unsigned char *f = (const unsigned char *)e->frame->data;
    assert(f[0] == 0x81 && !(f[1] & 0x80));
    size_t hl = (f[1] & 0x7f) < 126 ? 2 : (f[1] & 0x7f) == 126 ? 4 : 10;
    json_error_t je;
    json_t *msg = json_loadb((const char *)f + hl, e->frame->len - hl, 0, &je);
    assert(msg && strcmp(json_string_value(json_object_get(msg, "type")), "event") == 0);
    assert((uint64_t)json_integer_value(json_object_get(msg, "seq")) == seq);
    assert(json_is_object(json_object_get(msg, "data")));
    json_decref(msg);
    event_ref(e);
    event_unref(e);
    event_unref(e);
    return 0;
}
