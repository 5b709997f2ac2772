/* frame — an immutable, reference-counted block of bytes ready for the wire.
 *
 * A frame is encoded once (an HTTP response, a WebSocket frame with its header) and then
 * queued on any number of connections, on any loop thread: each queue holds a reference.
 * After frame_new() the creator may fill data[] until it first shares the frame; from
 * then on nobody writes to it. The last frame_unref() frees it. */
#ifndef MC_FRAME_H
#define MC_FRAME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FRAME_DROPPABLE = 1u << 0, /* may be dropped when a slow consumer's queue is full */
    FRAME_CONFLATE = 1u << 1,  /* a newer frame of the same kind replaces an unsent one */
    FRAME_CLOSE = 1u << 2,     /* the connection closes once this frame is written */
};

typedef struct frame {
    atomic_uint refs;
    uint32_t flags;
    uint32_t kind; /* what it carries, for conflation (0: nothing special) */
    size_t len;
    char data[];
} frame_t;

/* Returns a frame with one reference and len bytes of uninitialised data, or NULL. */
frame_t *frame_new(size_t len, uint32_t flags);
/* Returns a frame holding a copy of p[0..len), or NULL. */
frame_t *frame_copy(const void *p, size_t len, uint32_t flags);

static inline frame_t *frame_ref(frame_t *f) {
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}
void frame_unref(frame_t *f); /* NULL is allowed */

#endif
