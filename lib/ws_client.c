/* The public blocking WebSocket client (metricast_ws_*), over ws_conn. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonenc.h"
#include "metricast.h"
#include "net.h"
#include "sbuf.h"
#include "url.h"
#include "ws_conn.h"

typedef struct ws_msg {
    struct ws_msg *next;
    size_t len;
    char text[];
} ws_msg_t;

struct metricast_ws {
    mcl_ws_t *c;
    ws_msg_t *head, *tail;
    int ended;     /* the connection is over (close frame or EOF or error) */
    int oom;       /* a message was lost for want of memory */
};

static void on_text(void *ud, const char *text, size_t len) {
    metricast_ws_t *ws = ud;
    ws_msg_t *m = malloc(sizeof *m + len + 1);
    if (!m) {
        ws->oom = 1;
        return;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->text, text, len + 1);
    if (ws->tail)
        ws->tail->next = m;
    else
        ws->head = m;
    ws->tail = m;
}

static void set_err(char *err, const char *msg) {
    if (err) snprintf(err, METRICAST_ERR_LEN, "%s", msg);
}

int metricast_ws_open(metricast_ws_t **out, const char *url, const char *token, int timeout_ms,
                      char err[METRICAST_ERR_LEN]) {
    char dummy[METRICAST_ERR_LEN];
    if (!err) err = dummy;
    err[0] = '\0';
    if (!out || !url) {
        set_err(err, "no URL");
        return -EINVAL;
    }
    *out = NULL;
    for (const char *p = token; p && *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            set_err(err, "the token has spaces or control characters");
            return -EINVAL;
        }
    mcl_url_t u;
    int rc = metricast__url_parse(url, &u, err, METRICAST_ERR_LEN);
    if (rc < 0) return rc;
    metricast_ws_t *ws = calloc(1, sizeof *ws);
    if (!ws) return -ENOMEM;
    mcl_sbuf_t target = MCL_SBUF_INIT;
    metricast__url_ws_target(&u, token, &target);
    if ((rc = metricast__sb_error(&target)) == 0)
        rc = metricast__ws_connect(&ws->c, &u, target.data, token,
                                   metricast__now_ms() + (timeout_ms > 0 ? timeout_ms : 5000), -1,
                                   err, METRICAST_ERR_LEN);
    metricast__sb_free(&target);
    if (rc < 0) {
        free(ws);
        return rc;
    }
    metricast__ws_on_text(ws->c, on_text, ws);
    *out = ws;
    return 0;
}

/* One round of I/O: reads what is there (waiting up to deadline for it when want_read)
 * and writes what is pending. 0 when something happened; -ETIMEDOUT when nothing did
 * before the deadline, or there is nothing to wait for; -EPIPE when the socket broke. */
static int pump(metricast_ws_t *ws, int64_t deadline, int want_read) {
    want_read = want_read && !ws->ended;
    if (want_read && metricast__ws_buffered(ws->c)) {
        if (metricast__ws_read(ws->c) < 0) ws->ended = 1;
        return 0;
    }
    struct pollfd p = {metricast__ws_fd(ws->c), 0, 0};
    if (want_read) p.events |= POLLIN;
    if (metricast__ws_unwritten(ws->c)) p.events |= POLLOUT;
    if (!p.events) return -ETIMEDOUT;
    int64_t left = deadline - metricast__now_ms();
    if (left < 0) left = 0;
    int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
    if (n < 0) return errno == EINTR ? 0 : -errno;
    if (n == 0) return -ETIMEDOUT;
    if (want_read && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
        if (metricast__ws_read(ws->c) < 0) ws->ended = 1;
    }
    if (metricast__ws_unwritten(ws->c) && (p.revents & (POLLOUT | POLLHUP | POLLERR))) {
        if (metricast__ws_write(ws->c) < 0) {
            ws->ended = 1;
            return -EPIPE;
        }
    }
    if (!want_read && (p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLOUT)) return -EPIPE;
    return 0;
}

int metricast_ws_send_text(metricast_ws_t *ws, const char *text, size_t len, int timeout_ms) {
    if (!ws || (!text && len)) return -EINVAL;
    if (len && !metricast__utf8_valid(text, len)) return -EINVAL;
    if (ws->ended) return -EPIPE;
    int rc = metricast__ws_text(ws->c, text ? text : "", len, 0);
    if (rc < 0) return rc;
    int64_t deadline = metricast__now_ms() + (timeout_ms >= 0 ? timeout_ms : 5000);
    if (metricast__ws_write(ws->c) < 0) {
        ws->ended = 1;
        return -EPIPE;
    }
    while (metricast__ws_unwritten(ws->c)) {
        if (ws->ended) return -EPIPE;
        rc = pump(ws, deadline, 1);
        if (rc == -ETIMEDOUT) return rc;
        if (rc < 0) return -EPIPE;
    }
    return 0;
}

int metricast_ws_recv(metricast_ws_t *ws, char **msg, size_t *len, int timeout_ms) {
    if (!ws || !msg) return -EINVAL;
    *msg = NULL;
    if (len) *len = 0;
    int64_t deadline = metricast__now_ms() + (timeout_ms >= 0 ? timeout_ms : 0);
    for (;;) {
        if (ws->head) {
            ws_msg_t *m = ws->head;
            ws->head = m->next;
            if (!ws->head) ws->tail = NULL;
            size_t l = m->len;
            memmove(m, m->text, l + 1); /* hand out the text alone, free()-able */
            *msg = (char *)m;
            if (len) *len = l;
            return 0;
        }
        if (ws->oom) {
            ws->oom = 0;
            return -ENOMEM;
        }
        if (ws->ended) {
            /* still send the reply to a close frame, briefly */
            int64_t d = metricast__now_ms() + 100;
            while (metricast__ws_unwritten(ws->c) && pump(ws, d, 0) == 0) {
            }
            return -ECONNRESET;
        }
        int rc = pump(ws, deadline, 1);
        if (rc == -ETIMEDOUT && !ws->head) return rc;
        if (rc < 0 && rc != -ETIMEDOUT) ws->ended = 1;
    }
}

uint16_t metricast_ws_close_info(metricast_ws_t *ws, const char **reason) {
    if (!ws) {
        if (reason) *reason = "";
        return 0;
    }
    return metricast__ws_close_code(ws->c, reason);
}

void metricast_ws_close(metricast_ws_t *ws, uint16_t code, int timeout_ms) {
    if (!ws) return;
    int64_t deadline = metricast__now_ms() + (timeout_ms >= 0 ? timeout_ms : 1000);
    if (!ws->ended && metricast__ws_close_frame(ws->c, code ? code : 1000, "") == 0) {
        /* our close out, then the server's answer (or its EOF) */
        while (!ws->ended && pump(ws, deadline, 1) == 0) {
        }
    }
    while (metricast__ws_unwritten(ws->c) && pump(ws, deadline, 0) == 0) {
    }
    for (ws_msg_t *m = ws->head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    metricast__ws_free(ws->c);
    free(ws);
}
