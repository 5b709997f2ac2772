/* inbox — how threads talk: a task queue drained on one loop thread, plus a wake-up.
 *
 * Any thread may inbox_post(); the tasks run in posting order on the loop that owns the
 * inbox, in one batch per wake-up (uv_async_send coalesces). The task's arg is owned by
 * the task until fn runs: fn must free it. When the inbox closes with tasks still queued,
 * each still runs once with cancelled = 1, so that it can release what it holds. */
#ifndef MC_INBOX_H
#define MC_INBOX_H

#include <uv.h>

typedef void (*inbox_fn)(void *arg, int cancelled);

typedef struct inbox_task inbox_task_t;

typedef struct inbox {
    uv_async_t async; /* embedded: the owner must keep the inbox alive until close_cb */
    uv_mutex_t mu;
    inbox_task_t *head, *tail;
    int closed;
    uv_close_cb close_cb;
} inbox_t;

int inbox_init(inbox_t *ib, uv_loop_t *loop);
/* 0, -ENOMEM, or -ESHUTDOWN once the inbox is closed (fn is then not called: the caller
 * still owns arg). Thread-safe. */
int inbox_post(inbox_t *ib, inbox_fn fn, void *arg);
/* Owner thread only. Cancels pending tasks and closes the handle; cb(&ib->async) runs
 * when libuv has released it. */
void inbox_close(inbox_t *ib, uv_close_cb cb);
/* After the close callback, when no thread can post any more (their owners are joined):
 * releases the lock. */
void inbox_free(inbox_t *ib);

#endif
