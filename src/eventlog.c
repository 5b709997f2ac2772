#include "eventlog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int elog_init(eventlog_t *l, uint32_t retain) {
    memset(l, 0, sizeof *l);
    l->cap = retain ? retain : 1;
    l->ring = calloc(l->cap, sizeof *l->ring);
    l->next_seq = 1;
    return l->ring ? 0 : -ENOMEM;
}

void elog_free(eventlog_t *l) {
    for (uint32_t i = 0; i < l->len; i++) event_unref(l->ring[(l->head + i) % l->cap]);
    free(l->ring);
    memset(l, 0, sizeof *l);
}

int elog_seal(eventlog_t *l, event_t *e) {
    int rc = event_seal(e, l->next_seq);
    if (rc == 0) l->next_seq++;
    return rc;
}

int elog_append(eventlog_t *l, event_t *e) {
    int rc = elog_seal(l, e);
    if (rc) return rc;
    elog_keep(l, e);
    return 0;
}

void elog_keep(eventlog_t *l, event_t *e) {
    l->last_kept = e->seq;
    if (l->len == l->cap) { /* full: the oldest leaves the window */
        event_unref(l->ring[l->head]);
        l->ring[l->head] = event_ref(e);
        l->head = (l->head + 1) % l->cap;
    } else {
        l->ring[(l->head + l->len) % l->cap] = event_ref(e);
        l->len++;
    }
}

uint64_t elog_oldest(const eventlog_t *l) {
    return l->len ? l->ring[l->head]->seq : l->last_kept + 1;
}

uint64_t elog_latest(const eventlog_t *l) { return l->last_kept; }

event_t *elog_get(const eventlog_t *l, uint64_t seq) {
    uint64_t oldest = elog_oldest(l);
    if (!l->len || seq < oldest || seq > elog_latest(l)) return NULL;
    return l->ring[(l->head + (uint32_t)(seq - oldest)) % l->cap];
}
