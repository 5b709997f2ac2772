/* eventlog — the retained window of published events, in seq order. Hub thread only.
 *
 * seq starts at 1 and grows by one per event, so an event is found by seq in O(1). The
 * window keeps the last `retain` events (--events-retain): a subscriber or poller whose
 * `since` is older than the oldest retained event is told to resync. */
#ifndef MC_EVENTLOG_H
#define MC_EVENTLOG_H

#include <stdint.h>

#include "event.h"

typedef struct eventlog {
    event_t **ring;
    uint32_t cap, head, len;
    uint64_t next_seq;
} eventlog_t;

int elog_init(eventlog_t *l, uint32_t retain);
void elog_free(eventlog_t *l);
/* Seals e with the next seq and keeps a reference (the caller keeps its own). */
int elog_append(eventlog_t *l, event_t *e);
/* seq of the oldest retained event (next_seq when empty) and of the latest (0: none). */
uint64_t elog_oldest(const eventlog_t *l);
uint64_t elog_latest(const eventlog_t *l);
/* The retained event with this seq, or NULL (borrowed). */
event_t *elog_get(const eventlog_t *l, uint64_t seq);

#endif
