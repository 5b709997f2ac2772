#include "frame.h"

#include <stdlib.h>
#include <string.h>

frame_t *frame_new(size_t len, uint32_t flags) {
    frame_t *f = malloc(sizeof *f + len);
    if (!f) return NULL;
    atomic_init(&f->refs, 1);
    f->flags = flags;
    f->kind = 0;
    f->len = len;
    return f;
}

frame_t *frame_copy(const void *p, size_t len, uint32_t flags) {
    frame_t *f = frame_new(len, flags);
    if (f && len) memcpy(f->data, p, len);
    return f;
}

void frame_unref(frame_t *f) {
    if (!f) return;
    /* acq_rel: every write made before another thread's unref happens-before the free */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) free(f);
}
