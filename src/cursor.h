/* cursor — a resume position valid on every hub of a cluster.
 *
 * Each hub numbers the events in its own log (`seq`, local, strictly increasing); an event
 * published on hub A and bridged to hub B has one seq on A and another on B. What all hubs
 * agree on is the event's origin: the hub it was published on and the seq it got there
 * (`oseq`). Every hub receives each origin's events in that origin's order, so "the last
 * event seen from each origin" is a position every hub can resume from: a cursor is that
 * vector, written "A:120,B:301" (origin hub ids and their oseq, in no particular order).
 *
 * An event (origin h, oseq q) is covered by cursor C when q <= C[h]; a missing origin
 * counts as 0 (nothing of it seen). Pure: no clock, no I/O. */
#ifndef MC_CURSOR_H
#define MC_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hub ids: 1..64 of [A-Za-z0-9_-] (they appear in NATS subjects and in cursors). */
#define HUB_ID_MAX 64
/* Origins a cursor holds: hubs of one cluster. Beyond, new origins are refused. */
#define CURSOR_MAX_HUBS 32
/* The longest text a full cursor takes, NUL included. */
#define CURSOR_TEXT_MAX (CURSOR_MAX_HUBS * (HUB_ID_MAX + 22) + 1)

typedef struct cursor_ent {
    char hub[HUB_ID_MAX + 1];
    uint64_t seq;
} cursor_ent_t;

typedef struct cursor {
    uint32_t n;
    cursor_ent_t e[CURSOR_MAX_HUBS];
} cursor_t;

bool cursor_hub_id_valid(const char *s, size_t n);
static inline void cursor_init(cursor_t *c) { c->n = 0; }
/* C[hub], 0 when absent. */
uint64_t cursor_get(const cursor_t *c, const char *hub);
/* C[hub] = seq. 0, or -ENOSPC (CURSOR_MAX_HUBS origins already), -EINVAL (bad id). */
int cursor_set(cursor_t *c, const char *hub, uint64_t seq);
static inline bool cursor_covers(const cursor_t *c, const char *hub, uint64_t seq) {
    return seq <= cursor_get(c, hub);
}
/* "A:1,B:2" → *out. 0, or -EINVAL (bad syntax, bad id, a repeated hub, seq not a decimal
 * below 2^63, more than CURSOR_MAX_HUBS origins). "" is the empty cursor. */
int cursor_parse(const char *s, size_t n, cursor_t *out);
/* Writes the text form with its NUL into out (cap bytes; CURSOR_TEXT_MAX always fits).
 * Returns its length, or 0 when it did not fit (out is then ""). */
size_t cursor_format(const cursor_t *c, char *out, size_t cap);

#endif
