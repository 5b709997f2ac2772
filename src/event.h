/* event — the Charter v1.0 event envelope, and an event as the hub hands it around.
 *
 * Envelope, exactly these fields:
 *   {"id":"evt_<module>_<unix_ms>_<6 [a-z0-9]>","type":"<module>.<event>",
 *    "source":"<module>_service","target":null,"timestamp":1703001234.567,
 *    "payload":{},"meta":{"correlation_id":null,"version":"1.0"}}
 * event_prepare() validates what a publisher sent and fills what it left out (id,
 * source, target, timestamp, payload, meta); it is pure apart from the clock and the
 * random id suffix, which the caller passes in.
 *
 * An event_t is immutable once the hub gave it a seq, and reference-counted: the
 * retained log, the workers delivering it and REST answers share it. It carries its
 * envelope JSON and the WebSocket frame {"type":"event","seq":N,"data":ENVELOPE}, each
 * encoded once. */
#ifndef MC_EVENT_H
#define MC_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cursor.h"
#include "frame.h"

#define EVENT_TYPE_MAX 128
/* The longest source accepted: room for the default "<module>_service" of the longest
 * type, so an envelope the hub completed is one it accepts again. */
#define EVENT_SOURCE_MAX (EVENT_TYPE_MAX + 8)
#define EVENT_ERR_LEN 256
/* The latest timestamp accepted: 9999-12-31T23:59:59Z in unix seconds. */
#define EVENT_MAX_TIMESTAMP 253402300799.0
/* An envelope larger than this is refused: events are notifications, not payload blobs. */
#define EVENT_MAX_BYTES (64 * 1024)

typedef struct event {
    atomic_uint refs;
    uint64_t seq;
    double timestamp;
    char type[EVENT_TYPE_MAX + 1];
    char id[EVENT_TYPE_MAX + 40]; /* evt_ + module (< type) + _ + ms + _ + 6 */
    char *envelope; /* JSON text, NUL-terminated */
    size_t envelope_len;
    frame_t *frame; /* the WebSocket message, one reference */
    /* Clustered hubs only (origin "" otherwise): the hub the event was published on, its
     * seq there, the seq there of that hub's previous own event (0: unknown), and the
     * cursor (cursor.h) of this hub's log just after it: the frame carries it, so a client
     * can resume on any hub. Set before event_seal, never after. */
    char origin[HUB_ID_MAX + 1];
    uint64_t oseq, oprev;
    char *cursor; /* owned, NULL when not clustered */
} event_t;

/* Validates and completes an envelope given as JSON text (publish data). On success
 * returns a new event (one reference, seq 0, no frame yet); else NULL with err filled
 * ("bad_event: ..."). now: unix seconds; rnd6: 6 characters [a-z0-9] for the id. */
event_t *event_prepare(const char *json, size_t len, double now, const char rnd6[6],
                       char err[EVENT_ERR_LEN]);
/* The same for an envelope already parsed (a WebSocket publish's "data"; borrowed): the
 * checks and the result are those of event_prepare on its compact JSON text, except the
 * size limit, which is the caller's (it knows the text it parsed). Saves printing the
 * object and parsing it again on the publisher's path. */
struct json_t;
event_t *event_prepare_json(struct json_t *root, double now, const char rnd6[6],
                            char err[EVENT_ERR_LEN]);
/* Builds an event from parts (built-in events of the hub): payload_json is a JSON object
 * text. NULL on ENOMEM. */
event_t *event_make(const char *type, const char *payload_json, const char *correlation_id,
                    double now, const char rnd6[6]);
/* Gives the event its seq and encodes its frame ({"type":"event","seq":N,"data":...}, with
 * "cursor" after seq when e->cursor is set). 0 or -ENOMEM. Hub thread. */
int event_seal(event_t *e, uint64_t seq);

/* The cluster fields as the store keeps them: "origin oseq oprev cursor" (malloc'd; NULL on
 * ENOMEM), and back (a text that does not parse leaves e unclustered). */
char *event_cluster_format(const event_t *e);
void event_cluster_parse(event_t *e, const char *text);

static inline event_t *event_ref(event_t *e) {
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}
void event_unref(event_t *e);

/* Whether s is a valid event type "<module>.<event>" ([a-z0-9_] words). */
bool event_type_valid(const char *s);
/* 6 random characters [a-z0-9] (from the caller's xorshift state). */
void event_random6(uint64_t *state, char out[6]);

#endif
