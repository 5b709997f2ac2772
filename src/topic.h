/* topic — what a WebSocket client can subscribe to. Pure.
 *
 *   metrics   live metrics:update messages (with an optional filter)
 *   sources   source sessions coming and going (telemetry.connection_* events)
 *   alerts    alert.firing / alert.resolved
 *   events    every event
 *   <module>.<event>   an event-type pattern: exact ("tasks.created") or a glob
 *                      ("telemetry.*", "metrics.aggregation_*")
 *
 * Pattern syntax: [a-z0-9_] words separated by '.', with '*' (any run) and '?' (one
 * character) allowed, at most TOPIC_MAX_LEN bytes; a bare "*" is not a pattern — use
 * `events`. */
#ifndef MC_TOPIC_H
#define MC_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define TOPIC_MAX_LEN 128

typedef enum {
    TOPIC_INVALID = -1,
    TOPIC_METRICS = 0,
    TOPIC_SOURCES,
    TOPIC_ALERTS,
    TOPIC_EVENTS,
    TOPIC_PATTERN, /* an event-type pattern */
} topic_kind_t;

topic_kind_t topic_parse(const char *name);
/* Whether an event of type `type` goes to a subscription on `topic`. */
bool topic_matches_event(topic_kind_t kind, const char *topic, const char *type);

#endif
