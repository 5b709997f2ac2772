/* stream — the hub side of live metrics: subscriber groups, the tick, change pushes.
 *
 * Subscribers with the same filter (match glob, source glob) form one group. For every
 * push the hub renders each group's metrics:update once into a shared WebSocket frame and
 * hands the set of frames (stream_bcast_t) to every worker, which queues a reference on
 * each of its subscribers in the group. Nothing is encoded per subscriber.
 *
 * Pushes:
 *   tick   — every --tick seconds, to every group, with the series changed since that
 *            group's previous push (possibly none: the tick is also the heartbeat);
 *   change — after ingest changes series: at once if the previous change push is a second
 *            old, else at that second's end (trailing edge), so a burst yields at most one
 *            change update per second and its last value always arrives within a second.
 * A group's first message to a new subscriber is a full snapshot (stream_subscribe);
 * a subscriber whose queue conflated updates asks for a full one (stream_request_full),
 * which the next push carries beside the delta.
 *
 * Hub thread only. */
#ifndef MC_STREAM_H
#define MC_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "frame.h"
#include "registry.h"

struct hub;

typedef struct stream_bcast_entry {
    uint32_t group;
    frame_t *delta; /* one reference each, owned by the broadcast */
    frame_t *full;  /* NULL unless some subscriber of the group asked for one */
} stream_bcast_entry_t;

/* Immutable once built; shared by the workers (one reference each). */
typedef struct stream_bcast {
    atomic_uint refs;
    uint32_t n;
    stream_bcast_entry_t e[];
} stream_bcast_t;

void stream_bcast_unref(stream_bcast_t *b);

typedef struct stream_group {
    uint32_t id;
    char *match;  /* "" = any */
    char *source; /* "" = any */
    uint32_t refs;       /* subscriptions, all workers together */
    uint64_t pushed_seq; /* registry change_seq covered by the last push */
    bool want_full;
} stream_group_t;

typedef struct stream {
    struct hub *hub;
    registry_t *reg;
    stream_group_t **groups;
    uint32_t ngroups, cap;
    uint32_t next_id;
    uv_timer_t tick;
    uint64_t tick_next_ns; /* uv_hrtime() the next tick is due */
    uv_timer_t change;
    bool change_armed;
    uint64_t last_push_ns; /* uv_hrtime() of the last push, tick or change (0: none yet) */
    uint64_t seq;            /* metrics:update sequence */
    double tick_s;
    uint64_t pushes, frames;
} stream_t;

int stream_init(stream_t *s, struct hub *hub, registry_t *reg, uv_loop_t *loop, double tick_s);
void stream_start(stream_t *s);
/* Stops the timers and closes their handles (the loop must run once more). */
void stream_close(stream_t *s);

/* Joins (or creates) the group for this filter; *full gets the group's full snapshot as a
 * frame with one reference (NULL on ENOMEM). Returns the group id (0 on ENOMEM). */
uint32_t stream_subscribe(stream_t *s, const char *match, const char *source, frame_t **full);
void stream_unsubscribe(stream_t *s, uint32_t group);
void stream_request_full(stream_t *s, uint32_t group);
/* Ingest changed the registry. */
void stream_changed(stream_t *s);

#endif
