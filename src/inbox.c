#include "inbox.h"

#include <errno.h>
#include <stdlib.h>

struct inbox_task {
    inbox_task_t *next;
    inbox_fn fn;
    void *arg;
};

static inbox_task_t *take_all(inbox_t *ib) {
    uv_mutex_lock(&ib->mu);
    inbox_task_t *t = ib->head;
    ib->head = ib->tail = NULL;
    uv_mutex_unlock(&ib->mu);
    return t;
}

static void run_all(inbox_task_t *t, int cancelled) {
    while (t) {
        inbox_task_t *next = t->next;
        t->fn(t->arg, cancelled);
        free(t);
        t = next;
    }
}

static void on_async(uv_async_t *a) {
    inbox_t *ib = (inbox_t *)a; /* async is the first member */
    run_all(take_all(ib), 0);
}

int inbox_init(inbox_t *ib, uv_loop_t *loop) {
    ib->head = ib->tail = NULL;
    ib->closed = 0;
    ib->close_cb = NULL;
    int rc = uv_mutex_init(&ib->mu);
    if (rc) return rc;
    rc = uv_async_init(loop, &ib->async, on_async);
    if (rc) uv_mutex_destroy(&ib->mu);
    return rc;
}

int inbox_post(inbox_t *ib, inbox_fn fn, void *arg) {
    inbox_task_t *t = malloc(sizeof *t);
    if (!t) return -ENOMEM;
    t->next = NULL, t->fn = fn, t->arg = arg;
    uv_mutex_lock(&ib->mu);
    if (ib->closed) {
        uv_mutex_unlock(&ib->mu);
        free(t);
        return -ESHUTDOWN;
    }
    if (ib->tail)
        ib->tail->next = t;
    else
        ib->head = t;
    ib->tail = t;
    /* under the lock: inbox_close cannot close the handle between our check and the send */
    uv_async_send(&ib->async);
    uv_mutex_unlock(&ib->mu);
    return 0;
}

static void on_closed(uv_handle_t *h) {
    inbox_t *ib = (inbox_t *)h;
    /* the mutex stays: other threads may still post (and be told -ESHUTDOWN) until the
     * owner frees the memory with inbox_free() */
    if (ib->close_cb) ib->close_cb(h);
}

void inbox_free(inbox_t *ib) { uv_mutex_destroy(&ib->mu); }

void inbox_close(inbox_t *ib, uv_close_cb cb) {
    uv_mutex_lock(&ib->mu);
    ib->closed = 1;
    uv_mutex_unlock(&ib->mu);
    run_all(take_all(ib), 1);
    ib->close_cb = cb;
    uv_close((uv_handle_t *)&ib->async, on_closed);
}
