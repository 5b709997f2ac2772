/* inbox — how threads talk: a task queue drained on one loop thread, plus a wake-up.
 *
 * Any thread may inbox_post(); the tasks run in posting order on the loop that owns the
 * inbox, in one batch per wake-up. The task's arg is owned by the task until fn runs: fn
 * must free it. When the inbox closes with tasks still queued, each still runs once with
 * cancelled = 1, so that it can release what it holds.
 *
 * The wake-up is an eventfd watched by a uv_poll_t, written by the post that finds the
 * inbox not yet signalled (one write per batch, outside the lock). Not uv_async_t: libuv
 * 1.44's receiving side spins (pause x 997, then sched_yield, again) while a sender is
 * between marking the handle busy and done, which on two shared cores is often a sender
 * preempted by the very wake-up it sent: measured at 14 % of the hub thread's samples
 * when events were published at 2,000/s. */
#ifndef MC_INBOX_H
#define MC_INBOX_H

#include <uv.h>

typedef void (*inbox_fn)(void *arg, int cancelled);

typedef struct inbox_task inbox_task_t;

typedef struct inbox {
    uv_poll_t poll; /* embedded: the owner must keep the inbox alive until close_cb */
    int efd;        /* the eventfd; open until inbox_free */
    uv_mutex_t mu;
    inbox_task_t *head, *tail;
    int closed;
    int signalled; /* the eventfd was written and the batch not yet taken (under mu) */
    uv_close_cb close_cb;
} inbox_t;

int inbox_init(inbox_t *ib, uv_loop_t *loop);
/* 0, -ENOMEM, or -ESHUTDOWN once the inbox is closed (fn is then not called: the caller
 * still owns arg). Thread-safe. */
int inbox_post(inbox_t *ib, inbox_fn fn, void *arg);
/* Owner thread only. Cancels pending tasks and closes the handle; cb(&ib->poll) runs
 * when libuv has released it. */
void inbox_close(inbox_t *ib, uv_close_cb cb);
/* After the close callback, when no thread can post any more (their owners are joined):
 * releases the lock and the eventfd. */
void inbox_free(inbox_t *ib);

#endif
