#include "inbox.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct inbox_task {
    inbox_task_t *next;
    inbox_fn fn;
    void *arg;
};

/* Takes every queued task and re-arms the wake-up: a post after this writes the eventfd
 * again, a post before it is in the list taken. */
static inbox_task_t *take_all(inbox_t *ib) {
    uv_mutex_lock(&ib->mu);
    inbox_task_t *t = ib->head;
    ib->head = ib->tail = NULL;
    ib->signalled = 0;
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

static void on_wake(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    inbox_t *ib = (inbox_t *)p; /* poll is the first member */
    uint64_t v;
    while (read(ib->efd, &v, sizeof v) < 0 && errno == EINTR) {
    }
    run_all(take_all(ib), 0);
}

int inbox_init(inbox_t *ib, uv_loop_t *loop) {
    ib->head = ib->tail = NULL;
    ib->closed = 0;
    ib->signalled = 0;
    ib->close_cb = NULL;
    ib->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ib->efd < 0) return uv_translate_sys_error(errno);
    int rc = uv_mutex_init(&ib->mu);
    if (rc) goto fail_fd;
    if ((rc = uv_poll_init(loop, &ib->poll, ib->efd))) goto fail_mu;
    /* from here the handle exists: on failure the owner closes it like its other handles
     * (inbox_close) and the lock and descriptor stay for inbox_free */
    return uv_poll_start(&ib->poll, UV_READABLE, on_wake);
fail_mu:
    uv_mutex_destroy(&ib->mu);
fail_fd:
    close(ib->efd);
    ib->efd = -1;
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
    int wake = !ib->signalled;
    ib->signalled = 1;
    uv_mutex_unlock(&ib->mu);
    /* outside the lock; the eventfd stays open until inbox_free, after every poster was
     * joined, so a post racing inbox_close still writes to a valid descriptor */
    if (wake) {
        uint64_t one = 1;
        while (write(ib->efd, &one, sizeof one) < 0 && errno == EINTR) {
        }
    }
    return 0;
}

static void on_closed(uv_handle_t *h) {
    inbox_t *ib = (inbox_t *)h;
    /* the mutex and the eventfd stay: other threads may still post (and be told
     * -ESHUTDOWN) until the owner frees the memory with inbox_free() */
    if (ib->close_cb) ib->close_cb(h);
}

void inbox_free(inbox_t *ib) {
    uv_mutex_destroy(&ib->mu);
    if (ib->efd >= 0) close(ib->efd);
    ib->efd = -1;
}

void inbox_close(inbox_t *ib, uv_close_cb cb) {
    uv_mutex_lock(&ib->mu);
    ib->closed = 1;
    uv_mutex_unlock(&ib->mu);
    run_all(take_all(ib), 1);
    ib->close_cb = cb;
    uv_close((uv_handle_t *)&ib->poll, on_closed);
}
