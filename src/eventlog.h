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
    uint64_t next_seq;  /* the seq the next sealed event gets */
    uint64_t last_kept; /* the newest seq in the window: readers see nothing newer */
} eventlog_t;

int elog_init(eventlog_t *l, uint32_t retain);
void elog_free(eventlog_t *l);
/* Seals e with the next seq and keeps a reference (the caller keeps its own). */
int elog_append(eventlog_t *l, event_t *e);
/* The same in two steps, for events that must be on disk before anyone sees them:
 * elog_seal gives e the next seq (and its frame); elog_keep, called in seq order once it
 * is stored, puts it in the window. */
int elog_seal(eventlog_t *l, event_t *e);
void elog_keep(eventlog_t *l, event_t *e);
/* seq of the oldest retained event (last_kept + 1 when empty) and of the newest kept
 * (0: none). Sealed events not yet kept (on their way to disk) are not visible. */
uint64_t elog_oldest(const eventlog_t *l);
uint64_t elog_latest(const eventlog_t *l);
/* The retained event with this seq, or NULL (borrowed). */
event_t *elog_get(const eventlog_t *l, uint64_t seq);

#endif
