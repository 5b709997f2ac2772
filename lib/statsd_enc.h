/* statsd_enc — StatsD lines and datagrams, pure (no socket, no clock).
 *
 *   <prefix><name>:<value>|<type>[|@<rate>][|#<tag>,<tag>...]
 *
 * A "unit" is one or more lines that must travel in the same datagram (a negative
 * absolute gauge is "x:0|g\nx:-5|g"). The batcher packs units into datagrams of at most
 * `max` bytes, lines separated by '\n', and hands each full datagram to a callback. */
#ifndef MCL_STATSD_ENC_H
#define MCL_STATSD_ENC_H

#include <stdbool.h>
#include <stddef.h>

#define MCL_STATSD_LINE_MAX 4096

/* Whether s can be a metric name (or prefix): non-empty (prefix may be empty), no ':',
 * '|', '@', '#', newline or other control character. */
bool metricast__statsd_name_ok(const char *s, bool allow_empty);
/* Whether s can be a tag: non-empty, no '|', ',', '#', newline or control character. */
bool metricast__statsd_tag_ok(const char *s);
/* Whether s can be a set member: non-empty, no ':', '|', '#', newline or control. */
bool metricast__statsd_member_ok(const char *s);

/* Encodes one line into out[0..cap): value_text is the value as it goes on the wire
 * ("45.2", "+3", "-3", "alice"), type "c", "g", "ms", "h", "d" or "s"; rate in (0,1)
 * adds "|@rate"; tags from both NULL-terminated lists (either may be NULL) follow
 * "|#". Returns the length (no newline, NUL-terminated), -EINVAL for a bad name, tag
 * or rate, or -EMSGSIZE when it does not fit cap. */
int metricast__statsd_line(char *out, size_t cap, const char *prefix, const char *name,
                           const char *value_text, const char *type, double rate,
                           const char *const *tags_a, const char *const *tags_b);

typedef int (*mcl_datagram_fn)(void *ctx, const char *data, size_t len, unsigned lines);

typedef struct mcl_batch {
    char buf[1500];
    size_t len;     /* bytes in buf */
    size_t max;     /* the datagram limit, <= sizeof buf */
    unsigned lines; /* lines in buf */
} mcl_batch_t;

void metricast__batch_init(mcl_batch_t *b, size_t max);
/* Adds a unit of `lines` lines (len bytes, no trailing newline). If it does not fit
 * behind what is there, the current datagram goes to emit first. Returns 0, -EMSGSIZE
 * (the unit alone exceeds max; nothing changed), or the emit callback's result when it
 * failed (the unit is still added: the failed datagram is the emitter's to count). */
int metricast__batch_add(mcl_batch_t *b, const char *unit, size_t len, unsigned lines,
                         mcl_datagram_fn emit, void *ctx);
/* Emits the current datagram, if any. 0 or the callback's result. */
int metricast__batch_flush(mcl_batch_t *b, mcl_datagram_fn emit, void *ctx);

#endif
