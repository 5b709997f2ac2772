/* Source sessions (metricast_source_*): a bounded queue that any thread fills, and one
 * thread per session that owns the WebSocket: it connects (with backoff), says hello,
 * moves queued messages onto the connection as fast as the hub allows, and turns what
 * the hub says into events for the caller.
 *
 * Flow control, as the hub asks for it: a `backpressure` status pauses samples for its
 * retry_after_ms; after that, until `streaming` comes, at most backpressure_burst
 * samples go out per retry_after_ms window. Events (publish) are never held back by it:
 * they do not enter the hub's sample queue. While samples are held they wait in our
 * queue, which drops its oldest sample when full (counted), never an event. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "jsonenc.h"
#include "metricast.h"
#include "net.h"
#include "sbuf.h"
#include "url.h"
#include "ws_conn.h"

/* Output handed to the connection beyond what the socket took: enough for a burst to
 * leave in one write, small enough that what the hub refuses to take waits in our
 * bounded queue (where drops are counted) rather than in an unbounded buffer. */
#define MAX_UNWRITTEN (256u * 1024)
#define DEFAULT_RETRY_MS 100
#define MAX_RETRY_MS 60000
#define CLOSE_WAIT_MS 1000
#define MAX_BUDGET 4096

enum { Q_DATA = 0, Q_EVENT = 1 };

typedef struct qmsg {
    struct qmsg *next;
    int kind;
    char id[METRICAST_EVENT_ID_LEN]; /* Q_EVENT: the event id */
    size_t len;
    char data[];
} qmsg_t;

typedef struct inflight {
    struct inflight *next;
    char id[METRICAST_EVENT_ID_LEN];
} inflight_t;

struct metricast_source {
    /* options, owned copies */
    char *source, *token, *hello, *target;
    mcl_url_t url;
    size_t qmax_msgs, qmax_bytes;
    unsigned connect_timeout_ms, rmin, rmax, burst, idle_ms, linger_ms;
    metricast_source_cb cb;
    void *user;

    pthread_t thr;
    int wake_fd; /* eventfd: something was queued, or stop */
    int stop_fd; /* eventfd: stop only (interrupts a connect) */
    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* guarded by mu */
    qmsg_t *qh, *qt;
    size_t qn, qbytes, qevents;
    bool stop;
    metricast_source_stats_t st;
    uint64_t closing_drops; /* samples left unsent by the close */

    /* the session thread's own */
    mcl_ws_t *ws;
    inflight_t *ifh, *ift;
    bool bp;        /* the hub's last word was backpressure */
    bool throttled; /* sending in budgeted windows (from a backpressure to full speed) */
    uint32_t retry_ms;
    int64_t pause_until, window_end, hold_since;
    unsigned budget, burst_left;
    uint32_t fails;
    int64_t next_attempt;
    uint64_t rng;
};

/* ---- helpers ------------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static void set_err(char *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, METRICAST_ERR_LEN, fmt, ap);
    va_end(ap);
}

static bool source_id_ok(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return n >= 1 && n <= 128;
}

static void wake(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* a full counter (2^64-2 wake-ups pending) still wakes the thread */
}

static void drain(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

static void emit(metricast_source_t *s, metricast_source_event_t *ev) {
    if (s->cb) s->cb(s, ev, s->user);
}

static uint32_t rnd32(metricast_source_t *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- the queue (any thread, mu) ------------------------------------------------------- */

/* mu held: takes the oldest sample out to make room. false when there is none. */
static bool drop_oldest_data(metricast_source_t *s) {
    qmsg_t *prev = NULL;
    for (qmsg_t *m = s->qh; m; prev = m, m = m->next) {
        if (m->kind != Q_DATA) continue;
        if (prev)
            prev->next = m->next;
        else
            s->qh = m->next;
        if (s->qt == m) s->qt = prev;
        s->qn--;
        s->qbytes -= m->len;
        s->st.dropped++;
        free(m);
        return true;
    }
    return false;
}

static int enqueue(metricast_source_t *s, int kind, mcl_sbuf_t *b, const char *id) {
    int rc = metricast__sb_error(b);
    if (rc < 0) {
        metricast__sb_free(b);
        return rc;
    }
    size_t len = b->len;
    if (len > s->qmax_bytes) {
        metricast__sb_free(b);
        return -EMSGSIZE;
    }
    qmsg_t *m = malloc(sizeof *m + len);
    if (!m) {
        metricast__sb_free(b);
        return -ENOMEM;
    }
    m->next = NULL;
    m->kind = kind;
    m->len = len;
    snprintf(m->id, sizeof m->id, "%s", id ? id : "");
    memcpy(m->data, b->data, len);
    metricast__sb_free(b);
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        free(m);
        return -EPIPE;
    }
    while (s->qn + 1 > s->qmax_msgs || s->qbytes + len > s->qmax_bytes) {
        if (!drop_oldest_data(s)) break;
    }
    if (s->qn + 1 > s->qmax_msgs || s->qbytes + len > s->qmax_bytes) {
        /* only events left in the queue: they are never dropped, so this one is refused */
        if (kind == Q_DATA) s->st.dropped++;
        pthread_mutex_unlock(&s->mu);
        free(m);
        return -ENOBUFS;
    }
    if (s->qt)
        s->qt->next = m;
    else
        s->qh = m;
    s->qt = m;
    s->qn++;
    s->qbytes += len;
    if (kind == Q_EVENT) {
        s->qevents++;
        s->st.publishes++;
    }
    s->st.queued = s->qn;
    s->st.queued_bytes = s->qbytes;
    pthread_mutex_unlock(&s->mu);
    wake(s->wake_fd);
    return 0;
}

/* mu held: the first message (data_ok) or the first event (samples held back). */
static qmsg_t *pop(metricast_source_t *s, bool data_ok) {
    qmsg_t *prev = NULL;
    for (qmsg_t *m = s->qh; m; prev = m, m = m->next) {
        if (!data_ok && m->kind != Q_EVENT) continue;
        if (prev)
            prev->next = m->next;
        else
            s->qh = m->next;
        if (s->qt == m) s->qt = prev;
        s->qn--;
        s->qbytes -= m->len;
        if (m->kind == Q_EVENT) s->qevents--;
        s->st.queued = s->qn;
        s->st.queued_bytes = s->qbytes;
        return m;
    }
    return NULL;
}

/* mu held: puts m back in front (the connection could not take it). */
static void push_front(metricast_source_t *s, qmsg_t *m) {
    m->next = s->qh;
    s->qh = m;
    if (!s->qt) s->qt = m;
    s->qn++;
    s->qbytes += m->len;
    if (m->kind == Q_EVENT) s->qevents++;
    s->st.queued = s->qn;
    s->st.queued_bytes = s->qbytes;
}

/* ---- events from the hub (session thread) --------------------------------------------- */

static uint64_t juint(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    if (json_is_real(v)) return json_real_value(v) < 0 ? 0 : (uint64_t)json_real_value(v);
    return 0;
}

static double jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *jstr(json_t *o, const char *k) {
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void fail_inflight(metricast_source_t *s, inflight_t *f, int err, const char *code,
                          const char *detail) {
    pthread_mutex_lock(&s->mu);
    s->st.publish_failures++;
    pthread_mutex_unlock(&s->mu);
    metricast_source_event_t ev = {.kind = METRICAST_SOURCE_ACK, .err = err};
    ev.ack.id = f->id;
    ev.error.code = code;
    ev.error.detail = detail;
    emit(s, &ev);
    free(f);
}

static inflight_t *take_inflight(metricast_source_t *s, const char *id) {
    inflight_t *prev = NULL;
    for (inflight_t *f = s->ifh; f; prev = f, f = f->next) {
        if (id && strcmp(f->id, id) != 0) continue;
        if (prev)
            prev->next = f->next;
        else
            s->ifh = f->next;
        if (s->ift == f) s->ift = prev;
        return f;
    }
    return NULL;
}

static void on_status(metricast_source_t *s, json_t *root, const char *text) {
    const char *state = jstr(root, "state");
    int64_t now = metricast__now_ms();
    metricast_source_event_t ev = {.kind = METRICAST_SOURCE_STATUS, .json = text};
    ev.status.state = state;
    ev.status.fill_ratio = jnum(root, "fill_ratio");
    ev.status.queue_depth = (uint32_t)juint(root, "queue_depth");
    ev.status.dropped = juint(root, "dropped");
    ev.status.message = jstr(root, "message");
    if (strcmp(state, "backpressure") == 0) {
        json_t *ra = json_object_get(root, "retry_after_ms");
        uint64_t retry = json_is_number(ra) ? juint(root, "retry_after_ms") : DEFAULT_RETRY_MS;
        if (retry < 1) retry = 1;
        if (retry > MAX_RETRY_MS) retry = MAX_RETRY_MS;
        s->bp = true;
        s->budget = s->throttled ? (s->budget > 1 ? s->budget / 2 : 1) : s->burst;
        s->throttled = true;
        s->retry_ms = (uint32_t)retry;
        s->pause_until = now + (int64_t)retry;
        s->window_end = s->pause_until;
        s->burst_left = 0;
        ev.status.retry_after_ms = (uint32_t)retry;
        pthread_mutex_lock(&s->mu);
        s->st.backpressure = 1;
        s->st.backpressure_events++;
        s->st.last_retry_after_ms = (uint32_t)retry;
        pthread_mutex_unlock(&s->mu);
    } else if (strcmp(state, "streaming") == 0) {
        /* the pause already promised still runs out; then the windows grow */
        s->bp = false;
        pthread_mutex_lock(&s->mu);
        s->st.backpressure = 0;
        pthread_mutex_unlock(&s->mu);
    }
    emit(s, &ev);
}

static void on_metrics(metricast_source_t *s, json_t *root, const char *text) {
    json_t *d = json_object_get(root, "data");
    if (!json_is_object(d)) return;
    metricast_session_metrics_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.session_id, sizeof m.session_id, "%s", jstr(d, "session_id"));
    m.attempt_id = (uint32_t)juint(d, "attempt_id");
    m.queue_depth = (uint32_t)juint(d, "queue_depth");
    m.queue_capacity = (uint32_t)juint(d, "queue_capacity");
    m.fill_ratio = jnum(d, "fill_ratio");
    m.avg_processing_ms = jnum(d, "avg_processing_ms");
    m.backlog_ms = jnum(d, "backlog_ms");
    m.realtime_factor = jnum(d, "realtime_factor");
    m.received = juint(d, "received");
    m.processed = juint(d, "processed");
    m.dropped = juint(d, "dropped");
    pthread_mutex_lock(&s->mu);
    s->st.hub = m;
    pthread_mutex_unlock(&s->mu);
    metricast_source_event_t ev = {.kind = METRICAST_SOURCE_METRICS, .json = text};
    ev.metrics = &m;
    emit(s, &ev);
}

static void on_text(void *ud, const char *text, size_t len) {
    metricast_source_t *s = ud;
    json_t *root = json_loadb(text, len, 0, NULL);
    const char *type = root ? json_string_value(json_object_get(root, "type")) : NULL;
    if (!type) {
        metricast_source_event_t ev = {.kind = METRICAST_SOURCE_MESSAGE, .json = text};
        emit(s, &ev);
    } else if (strcmp(type, "metrics") == 0) {
        on_metrics(s, root, text);
    } else if (strcmp(type, "status") == 0) {
        on_status(s, root, text);
    } else if (strcmp(type, "ack") == 0) {
        inflight_t *f = take_inflight(s, jstr(root, "id"));
        if (f) {
            pthread_mutex_lock(&s->mu);
            s->st.acks++;
            pthread_mutex_unlock(&s->mu);
            metricast_source_event_t ev = {.kind = METRICAST_SOURCE_ACK, .json = text};
            ev.ack.id = f->id;
            ev.ack.seq = juint(root, "seq");
            emit(s, &ev);
            free(f);
        }
    } else if (strcmp(type, "error") == 0) {
        const char *code = jstr(root, "error");
        /* refusals of a publish carry no id: they answer the oldest one in flight (the
         * hub answers a connection's publishes in order) */
        bool pub = strcmp(code, "bad_event") == 0 || strcmp(code, "publish_failed") == 0 ||
                   strcmp(code, "unavailable") == 0;
        inflight_t *f = pub ? take_inflight(s, NULL) : NULL;
        if (f) {
            fail_inflight(s, f, strcmp(code, "bad_event") == 0 ? -EINVAL : -EIO, code,
                          jstr(root, "detail"));
        } else {
            metricast_source_event_t ev = {.kind = METRICAST_SOURCE_ERROR, .json = text};
            ev.error.code = code;
            ev.error.detail = jstr(root, "detail");
            emit(s, &ev);
        }
    } else {
        metricast_source_event_t ev = {.kind = METRICAST_SOURCE_MESSAGE, .json = text};
        emit(s, &ev);
    }
    json_decref(root);
}

/* ---- the connection (session thread) -------------------------------------------------- */

static uint32_t backoff_ms(metricast_source_t *s) {
    uint64_t d = s->rmin;
    for (uint32_t i = 1; i < s->fails && d < s->rmax; i++) d *= 2;
    if (d > s->rmax) d = s->rmax;
    uint64_t half = d / 2;
    return (uint32_t)(half + (half ? rnd32(s) % (d - half + 1) : 0));
}

static void lost(metricast_source_t *s, int err, const char *detail) {
    size_t unsent = metricast__ws_unsent_counted(s->ws);
    const char *reason = "";
    uint16_t code = metricast__ws_close_code(s->ws, &reason);
    char why[128];
    snprintf(why, sizeof why, "%s", reason);
    metricast__ws_free(s->ws);
    s->ws = NULL;
    s->bp = s->throttled = false;
    s->pause_until = 0;
    s->hold_since = 0;
    for (inflight_t *f = take_inflight(s, NULL); f; f = take_inflight(s, NULL))
        fail_inflight(s, f, -ECONNRESET, "connection_lost",
                      "the connection broke before the hub acknowledged this event");
    s->fails++;
    uint32_t retry = backoff_ms(s);
    int64_t now = metricast__now_ms();
    s->next_attempt = now + retry;
    pthread_mutex_lock(&s->mu);
    s->st.connected = 0;
    s->st.backpressure = 0;
    s->st.connect_failures++;
    s->st.dropped += unsent;
    s->st.last_error = err;
    uint32_t attempt = s->st.connects;
    bool stopping = s->stop;
    pthread_mutex_unlock(&s->mu);
    metricast_source_event_t ev = {.kind = METRICAST_SOURCE_DISCONNECTED, .err = err};
    ev.conn.attempt = attempt;
    ev.conn.close_code = code;
    ev.conn.close_reason = why;
    ev.conn.retry_in_ms = stopping ? 0 : retry;
    ev.conn.detail = detail;
    emit(s, &ev);
}

static void try_connect(metricast_source_t *s) {
    char err[METRICAST_ERR_LEN] = "";
    int64_t deadline = metricast__now_ms() + s->connect_timeout_ms;
    mcl_ws_t *ws = NULL;
    int rc = metricast__ws_connect(&ws, &s->url, s->target, s->token, deadline, s->stop_fd, err,
                                   sizeof err);
    if (rc == 0) rc = metricast__ws_text(ws, s->hello, strlen(s->hello), 0);
    if (rc < 0) {
        metricast__ws_free(ws);
        if (rc == -ECANCELED) return; /* closing */
        s->fails++;
        uint32_t retry = backoff_ms(s);
        s->next_attempt = metricast__now_ms() + retry;
        pthread_mutex_lock(&s->mu);
        s->st.connect_failures++;
        s->st.last_error = rc;
        uint32_t attempt = s->st.connects;
        pthread_mutex_unlock(&s->mu);
        metricast_source_event_t ev = {.kind = METRICAST_SOURCE_DISCONNECTED, .err = rc};
        ev.conn.attempt = attempt;
        ev.conn.close_reason = "";
        ev.conn.retry_in_ms = retry;
        ev.conn.detail = err[0] ? err : metricast_strerror(rc);
        emit(s, &ev);
        return;
    }
    s->ws = ws;
    metricast__ws_on_text(ws, on_text, s);
    s->fails = 0;
    s->bp = s->throttled = false;
    s->pause_until = 0;
    s->hold_since = 0;
    pthread_mutex_lock(&s->mu);
    s->st.connected = 1;
    s->st.connects++;
    s->st.backpressure = 0;
    uint32_t attempt = s->st.connects;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    metricast_source_event_t ev = {.kind = METRICAST_SOURCE_CONNECTED};
    ev.conn.attempt = attempt;
    ev.conn.close_reason = "";
    ev.conn.detail = "";
    emit(s, &ev);
}

/* Whether samples may go out now (the hub's pause, then the budgeted windows). */
static bool data_allowed(metricast_source_t *s, int64_t now) {
    if (now < s->pause_until) return false;
    if (!s->throttled) return true;
    if (now >= s->window_end) {
        bool first = s->window_end == s->pause_until; /* the window right after a pause */
        if (!first && !s->bp) {
            s->budget *= 2;
            if (s->budget > MAX_BUDGET) {
                s->throttled = false;
                return true;
            }
        }
        s->window_end = now + s->retry_ms;
        s->burst_left = s->budget;
    }
    return s->burst_left > 0;
}

/* Moves queued messages onto the connection while the hub allows and the socket keeps
 * up. Returns 0 or the connection's error. */
static int pump(metricast_source_t *s, int64_t now) {
    for (;;) {
        if (metricast__ws_unwritten(s->ws) > MAX_UNWRITTEN) return 0;
        bool data_ok = data_allowed(s, now);
        pthread_mutex_lock(&s->mu);
        bool data_waiting = s->qn > s->qevents;
        if (data_ok && s->hold_since) {
            s->st.paused_ms += (uint64_t)(now - s->hold_since);
            s->hold_since = 0;
        } else if (!data_ok && data_waiting && !s->hold_since) {
            s->hold_since = now;
        }
        qmsg_t *m = pop(s, data_ok);
        pthread_mutex_unlock(&s->mu);
        if (!m) return 0;
        int rc = metricast__ws_text(s->ws, m->data, m->len, m->kind == Q_DATA);
        inflight_t *f = NULL;
        if (rc == 0 && m->kind == Q_EVENT) {
            f = calloc(1, sizeof *f);
            if (!f) rc = -ENOMEM;
        }
        if (rc < 0) {
            pthread_mutex_lock(&s->mu);
            push_front(s, m);
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
        if (f) {
            snprintf(f->id, sizeof f->id, "%s", m->id);
            if (s->ift)
                s->ift->next = f;
            else
                s->ifh = f;
            s->ift = f;
        }
        if (m->kind == Q_DATA && s->throttled && s->burst_left) s->burst_left--;
        pthread_mutex_lock(&s->mu);
        s->st.sent++;
        s->st.sent_bytes += m->len;
        pthread_mutex_unlock(&s->mu);
        free(m);
    }
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void *session_main(void *arg) {
    metricast_source_t *s = arg;
    bool closing = false, close_queued = false;
    int64_t linger_deadline = 0, close_deadline = 0;
    for (;;) {
        int64_t now = metricast__now_ms();
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        bool queue_empty = s->qn == 0;
        pthread_mutex_unlock(&s->mu);
        if (stop && !closing) {
            closing = true;
            linger_deadline = now + s->linger_ms;
        }
        if (!s->ws) {
            if (closing) break;
            if (now < s->next_attempt) {
                /* stop_fd is never drained: once set it stays readable */
                struct pollfd p = {s->stop_fd, POLLIN, 0};
                poll(&p, 1, (int)min64(s->next_attempt - now, 1000));
                pthread_mutex_lock(&s->mu);
                bool st = s->stop;
                pthread_mutex_unlock(&s->mu);
                if (st) break;
                continue;
            }
            try_connect(s);
            continue;
        }
        if (closing && !close_queued &&
            ((queue_empty && !s->ifh && metricast__ws_unwritten(s->ws) == 0) ||
             now >= linger_deadline)) {
            metricast__ws_close_frame(s->ws, 1000, "client closing");
            close_queued = true;
            close_deadline = now + CLOSE_WAIT_MS;
        }
        if (!close_queued && pump(s, now) < 0) {
            lost(s, -EPIPE, "the connection would take no more data");
            continue;
        }
        if (metricast__ws_unwritten(s->ws) && metricast__ws_write(s->ws) < 0) {
            lost(s, -EPIPE, "the hub closed the connection");
            continue;
        }
        if (close_queued && (metricast__ws_close_received(s->ws) || now >= close_deadline))
            break;

        /* sleep until the socket, a wake-up, or the next deadline */
        int64_t until = now + 1000;
        pthread_mutex_lock(&s->mu);
        bool data_waiting = s->qn > s->qevents;
        pthread_mutex_unlock(&s->mu);
        if (data_waiting && !close_queued) {
            if (now < s->pause_until) until = min64(until, s->pause_until);
            else if (s->throttled) until = min64(until, s->window_end);
        }
        if (s->idle_ms) until = min64(until, metricast__ws_last_rx(s->ws) + s->idle_ms);
        if (closing) until = min64(until, close_queued ? close_deadline : linger_deadline);
        int fd = metricast__ws_fd(s->ws);
        struct pollfd p[2] = {{fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
        if (metricast__ws_unwritten(s->ws)) p[0].events |= POLLOUT;
        int timeout = until > now ? (int)(until - now) : 0;
        if (metricast__ws_buffered(s->ws)) timeout = 0;
        int n = poll(p, 2, timeout);
        if (n < 0 && errno != EINTR) {
            lost(s, -errno, "poll failed");
            continue;
        }
        if (n > 0 && (p[1].revents & POLLIN)) drain(s->wake_fd);
        if (metricast__ws_buffered(s->ws) || (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
            int rc = metricast__ws_read(s->ws);
            if (rc < 0) {
                /* a close frame from the hub: answer it (wslay queued the reply) */
                if (metricast__ws_close_received(s->ws)) {
                    metricast__ws_write(s->ws);
                    if (close_queued) break;
                    lost(s, -ECONNRESET, "the hub closed the session");
                } else {
                    lost(s, rc, rc == -ECONNRESET ? "the hub closed the connection"
                                                  : "the hub broke the WebSocket protocol");
                }
                continue;
            }
        }
        if (n > 0 && (p[0].revents & POLLOUT) && metricast__ws_write(s->ws) < 0) {
            lost(s, -EPIPE, "the hub closed the connection");
            continue;
        }
        if (s->idle_ms && metricast__now_ms() - metricast__ws_last_rx(s->ws) > s->idle_ms) {
            lost(s, -ETIMEDOUT, "nothing heard from the hub within idle_timeout_ms");
            continue;
        }
    }
    /* the end: what could not be sent is counted; events waiting for an ack fail */
    if (s->ws) {
        size_t unsent = metricast__ws_unsent_counted(s->ws);
        pthread_mutex_lock(&s->mu);
        s->closing_drops += unsent;
        pthread_mutex_unlock(&s->mu);
        metricast__ws_free(s->ws);
        s->ws = NULL;
    }
    for (inflight_t *f = take_inflight(s, NULL); f; f = take_inflight(s, NULL))
        fail_inflight(s, f, -ECANCELED, "closed", "the session closed before the ack");
    pthread_mutex_lock(&s->mu);
    for (qmsg_t *m = pop(s, true); m; m = pop(s, true)) {
        if (m->kind == Q_DATA) {
            s->closing_drops++;
        } else {
            inflight_t *f = calloc(1, sizeof *f);
            if (f) snprintf(f->id, sizeof f->id, "%s", m->id);
            pthread_mutex_unlock(&s->mu);
            if (f) fail_inflight(s, f, -ECANCELED, "closed", "the session closed before sending");
            pthread_mutex_lock(&s->mu);
        }
        free(m);
    }
    s->st.connected = 0;
    s->st.dropped += s->closing_drops;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the public calls ----------------------------------------------------------------- */

void metricast_source_options_init(metricast_source_options_t *o) {
    memset(o, 0, sizeof *o);
    o->url = "http://127.0.0.1:9750";
    o->queue_messages = 1024;
    o->queue_bytes = 1024 * 1024;
    o->connect_timeout_ms = 5000;
    o->reconnect_min_ms = 200;
    o->reconnect_max_ms = 30000;
    o->backpressure_burst = 16;
    o->idle_timeout_ms = 15000;
    o->linger_ms = 2000;
}

static void free_source(metricast_source_t *s) {
    free(s->source);
    free(s->token);
    free(s->hello);
    free(s->target);
    if (s->wake_fd >= 0) close(s->wake_fd);
    if (s->stop_fd >= 0) close(s->stop_fd);
    free(s);
}

static char *build_hello(const char *source, const char *attrs_json, char *err) {
    json_t *attrs = NULL;
    if (attrs_json && *attrs_json) {
        json_error_t je;
        attrs = json_loads(attrs_json, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(attrs)) {
            set_err(err, "attrs_json must be a JSON object: %s", attrs ? "not an object" : je.text);
            json_decref(attrs);
            return NULL;
        }
        char *compact = json_dumps(attrs, JSON_COMPACT);
        size_t len = compact ? strlen(compact) : 0;
        free(compact);
        if (len > 4096) {
            set_err(err, "attrs_json is larger than the hub's limit of 4096 bytes");
            json_decref(attrs);
            return NULL;
        }
    }
    json_t *h = json_pack("{s:s, s:s}", "type", "hello", "source", source);
    if (h && attrs)
        json_object_set_new(h, "attrs", attrs);
    else
        json_decref(attrs);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text) set_err(err, "out of memory");
    return text;
}

int metricast_source_open(metricast_source_t **out, const metricast_source_options_t *opts,
                          char err[METRICAST_ERR_LEN]) {
    char dummy[METRICAST_ERR_LEN];
    if (!err) err = dummy;
    err[0] = '\0';
    if (!out || !opts) return -EINVAL;
    *out = NULL;
    metricast_source_options_t o = *opts;
    metricast_source_options_t d;
    metricast_source_options_init(&d);
    if (!o.url || !*o.url) o.url = d.url;
    if (!o.queue_messages) o.queue_messages = d.queue_messages;
    if (!o.queue_bytes) o.queue_bytes = d.queue_bytes;
    if (!o.connect_timeout_ms) o.connect_timeout_ms = d.connect_timeout_ms;
    if (!o.reconnect_min_ms) o.reconnect_min_ms = d.reconnect_min_ms;
    if (!o.reconnect_max_ms) o.reconnect_max_ms = d.reconnect_max_ms;
    if (o.reconnect_max_ms < o.reconnect_min_ms) o.reconnect_max_ms = o.reconnect_min_ms;
    if (!o.backpressure_burst) o.backpressure_burst = d.backpressure_burst;
    if (!o.source || !source_id_ok(o.source)) {
        set_err(err, "source must be 1-128 of [A-Za-z0-9_.:-]: %s", o.source ? o.source : "(none)");
        return -EINVAL;
    }
    if (o.token && *o.token) {
        for (const char *t = o.token; *t; t++)
            if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e) {
                set_err(err, "the token has spaces or control characters");
                return -EINVAL;
            }
    }
    metricast_source_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->wake_fd = s->stop_fd = -1;
    int rc = metricast__url_parse(o.url, &s->url, err, METRICAST_ERR_LEN);
    if (rc < 0) {
        free_source(s);
        return rc;
    }
    s->source = strdup(o.source);
    s->token = o.token && *o.token ? strdup(o.token) : NULL;
    mcl_sbuf_t t = MCL_SBUF_INIT;
    metricast__url_ws_target(&s->url, s->token, &t);
    s->target = metricast__sb_steal(&t, NULL);
    if (!s->source || (o.token && *o.token && !s->token) || !s->target) {
        free_source(s);
        return -ENOMEM;
    }
    s->hello = build_hello(o.source, o.attrs_json, err);
    if (!s->hello) {
        free_source(s);
        return err[0] && strncmp(err, "out of memory", 13) != 0 ? -EINVAL : -ENOMEM;
    }
    s->qmax_msgs = o.queue_messages;
    s->qmax_bytes = o.queue_bytes;
    s->connect_timeout_ms = o.connect_timeout_ms;
    s->rmin = o.reconnect_min_ms;
    s->rmax = o.reconnect_max_ms;
    s->burst = o.backpressure_burst;
    s->idle_ms = o.idle_timeout_ms;
    s->linger_ms = o.linger_ms;
    s->cb = o.on_event;
    s->user = o.user;
    metricast__random(&s->rng, sizeof s->rng);
    if (!s->rng) s->rng = 0x2545F4914F6CDD1DULL;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0 || s->stop_fd < 0) {
        rc = -errno;
        free_source(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&s->thr, NULL, session_main, s);
    if (e != 0) {
        set_err(err, "cannot start the session thread: %s", strerror(e));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free_source(s);
        return -e;
    }
    *out = s;
    return 0;
}

int metricast_source_wait_connected(metricast_source_t *s, int timeout_ms) {
    if (!s) return -EINVAL;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ULL;
    ts.tv_sec += (time_t)(ns / 1000000000ULL);
    ts.tv_nsec = (long)(ns % 1000000000ULL);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!s->st.connected && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    int ok = s->st.connected;
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -ETIMEDOUT;
}

static bool name_ok(const char *n) {
    return n && *n && strlen(n) <= 200 && metricast__utf8_valid(n, strlen(n));
}

/* Duplicate names in one JSON object make the hub refuse the whole message. */
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool all_distinct(const char **v, size_t n) {
    if (n <= 32) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (strcmp(v[i], v[j]) == 0) return false;
        return true;
    }
    const char **c = malloc(n * sizeof *c);
    if (!c) return false;
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_str);
    bool ok = true;
    for (size_t i = 1; i < n && ok; i++) ok = strcmp(c[i - 1], c[i]) != 0;
    free(c);
    return ok;
}

static int metrics_object(mcl_sbuf_t *b, const metricast_metric_t *m, size_t n) {
    if (!m || n == 0) return -EINVAL;
    const char **names = malloc(n * sizeof *names);
    if (!names) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(m[i].name) || !isfinite(m[i].value)) {
            free(names);
            return -EINVAL;
        }
        names[i] = m[i].name;
    }
    bool distinct = all_distinct(names, n);
    free(names);
    if (!distinct) return -EINVAL;
    metricast__sb_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i) metricast__sb_putc(b, ',');
        metricast__json_str(b, m[i].name);
        metricast__sb_putc(b, ':');
        metricast__json_num(b, m[i].value);
    }
    metricast__sb_putc(b, '}');
    return 0;
}

int metricast_source_gauges(metricast_source_t *s, const metricast_metric_t *m, size_t n,
                            double timestamp) {
    if (!s) return -EINVAL;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__sb_puts(&b, "{\"type\":\"sample\",\"metrics\":");
    int rc = metrics_object(&b, m, n);
    if (rc < 0) {
        metricast__sb_free(&b);
        return rc;
    }
    if (timestamp > 0 && isfinite(timestamp)) {
        metricast__sb_puts(&b, ",\"timestamp\":");
        metricast__json_num(&b, timestamp);
    }
    metricast__sb_putc(&b, '}');
    return enqueue(s, Q_DATA, &b, NULL);
}

static const char *kind_name(metricast_kind_t k) {
    switch (k) {
    case METRICAST_GAUGE: return "gauge";
    case METRICAST_COUNTER: return "counter";
    case METRICAST_TIMER: return "timer";
    case METRICAST_HISTOGRAM: return "histogram";
    case METRICAST_SET: return "set";
    }
    return NULL;
}

/* {"k":"v",...} from "k:v" strings; -EINVAL for an empty key, bad UTF-8 or a repeat. */
static int labels_object(mcl_sbuf_t *b, const char *const *labels) {
    size_t n = 0;
    while (labels[n]) n++;
    if (n > 16) return -EINVAL; /* the hub's limit */
    char keys[16][256];
    const char *kp[16];
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(labels[i], ':');
        size_t kl = c ? (size_t)(c - labels[i]) : strlen(labels[i]);
        if (kl == 0 || kl >= sizeof keys[i]) return -EINVAL;
        memcpy(keys[i], labels[i], kl);
        keys[i][kl] = '\0';
        kp[i] = keys[i];
        const char *v = c ? c + 1 : "";
        if (!metricast__utf8_valid(keys[i], kl) || !metricast__utf8_valid(v, strlen(v)))
            return -EINVAL;
    }
    if (!all_distinct(kp, n)) return -EINVAL;
    metricast__sb_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(labels[i], ':');
        if (i) metricast__sb_putc(b, ',');
        metricast__json_str(b, keys[i]);
        metricast__sb_putc(b, ':');
        metricast__json_str(b, c ? c + 1 : "");
    }
    metricast__sb_putc(b, '}');
    return 0;
}

int metricast_source_samples(metricast_source_t *s, const metricast_sample_t *v, size_t n,
                             double timestamp) {
    if (!s || !v || n == 0) return -EINVAL;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__sb_puts(&b, "{\"type\":\"sample\",\"samples\":[");
    for (size_t i = 0; i < n; i++) {
        const metricast_sample_t *x = &v[i];
        const char *kind = kind_name(x->kind);
        bool ok = kind && name_ok(x->name);
        if (ok && x->kind == METRICAST_SET)
            ok = x->member && *x->member && metricast__utf8_valid(x->member, strlen(x->member));
        else if (ok)
            ok = isfinite(x->value);
        if (ok && x->sample_rate != 0 && x->sample_rate != 1)
            ok = x->sample_rate > 0 && x->sample_rate < 1;
        if (!ok) {
            metricast__sb_free(&b);
            return -EINVAL;
        }
        if (i) metricast__sb_putc(&b, ',');
        metricast__sb_puts(&b, "{\"name\":");
        metricast__json_str(&b, x->name);
        metricast__sb_printf(&b, ",\"kind\":\"%s\",\"value\":", kind);
        if (x->kind == METRICAST_SET)
            metricast__json_str(&b, x->member);
        else
            metricast__json_num(&b, x->value);
        if (x->sample_rate > 0 && x->sample_rate < 1) {
            metricast__sb_puts(&b, ",\"sample_rate\":");
            metricast__json_num(&b, x->sample_rate);
        }
        if (x->delta && x->kind == METRICAST_GAUGE) metricast__sb_puts(&b, ",\"delta\":true");
        if (x->labels && x->labels[0]) {
            metricast__sb_puts(&b, ",\"labels\":");
            if (labels_object(&b, x->labels) < 0) {
                metricast__sb_free(&b);
                return -EINVAL;
            }
        }
        metricast__sb_putc(&b, '}');
    }
    metricast__sb_putc(&b, ']');
    if (timestamp > 0 && isfinite(timestamp)) {
        metricast__sb_puts(&b, ",\"timestamp\":");
        metricast__json_num(&b, timestamp);
    }
    metricast__sb_putc(&b, '}');
    return enqueue(s, Q_DATA, &b, NULL);
}

int metricast_source_statsd(metricast_source_t *s, const char *lines) {
    if (!s || !lines) return -EINVAL;
    size_t n = strlen(lines);
    size_t i = 0;
    while (i < n && (lines[i] == ' ' || lines[i] == '\t' || lines[i] == '\r' || lines[i] == '\n')) i++;
    /* the hub reads a frame that starts with '{' as JSON */
    if (i == n || lines[i] == '{' || !metricast__utf8_valid(lines, n)) return -EINVAL;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__sb_add(&b, lines, n);
    return enqueue(s, Q_DATA, &b, NULL);
}

int metricast_source_client_metrics(metricast_source_t *s, const metricast_metric_t *m,
                                    size_t n) {
    if (!s) return -EINVAL;
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__sb_puts(&b, "{\"type\":\"client_metrics\",\"metrics\":");
    int rc = metrics_object(&b, m, n);
    if (rc < 0) {
        metricast__sb_free(&b);
        return rc;
    }
    metricast__sb_putc(&b, '}');
    return enqueue(s, Q_DATA, &b, NULL);
}

static bool event_type_ok(const char *t, size_t *module_len) {
    const char *dot = t ? strchr(t, '.') : NULL;
    if (!dot || dot == t || !dot[1] || strchr(dot + 1, '.') || strlen(t) > 64) return false;
    for (const char *p = t; *p; p++) {
        if (p == dot) continue;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return false;
    }
    *module_len = (size_t)(dot - t);
    return true;
}

int metricast_source_publish(metricast_source_t *s, const char *type, const char *payload_json,
                             const char *correlation_id, char id_out[METRICAST_EVENT_ID_LEN]) {
    if (id_out) id_out[0] = '\0';
    size_t ml = 0;
    if (!s || !event_type_ok(type, &ml)) return -EINVAL;
    if (correlation_id && !metricast__utf8_valid(correlation_id, strlen(correlation_id)))
        return -EINVAL;
    char *payload = NULL;
    if (payload_json && *payload_json) {
        json_t *p = json_loads(payload_json, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(p)) {
            json_decref(p);
            return -EINVAL;
        }
        payload = json_dumps(p, JSON_COMPACT);
        json_decref(p);
        if (!payload) return -ENOMEM;
    }
    /* the id the hub would make: evt_<module>_<unix_ms>_<6 of [a-z0-9]> */
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[6];
    metricast__random(r, sizeof r);
    char rnd[7];
    for (int i = 0; i < 6; i++) rnd[i] = alphabet[r[i] % 36];
    rnd[6] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char id[METRICAST_EVENT_ID_LEN];
    snprintf(id, sizeof id, "evt_%.*s_%lld_%s", (int)ml, type, ms, rnd);
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__sb_printf(&b, "{\"type\":\"publish\",\"data\":{\"id\":\"%s\",\"type\":\"%s\","
                             "\"payload\":%s,\"meta\":{\"correlation_id\":",
                         id, type, payload ? payload : "{}");
    free(payload);
    if (correlation_id)
        metricast__json_str(&b, correlation_id);
    else
        metricast__sb_puts(&b, "null");
    metricast__sb_puts(&b, ",\"version\":\"1.0\"}}}");
    int rc = enqueue(s, Q_EVENT, &b, id);
    if (rc == 0 && id_out) snprintf(id_out, METRICAST_EVENT_ID_LEN, "%s", id);
    return rc;
}

void metricast_source_stats(metricast_source_t *s, metricast_source_stats_t *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

int metricast_source_close(metricast_source_t *s) {
    if (!s) return 0;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    wake(s->stop_fd);
    wake(s->wake_fd);
    pthread_join(s->thr, NULL);
    uint64_t lost = s->closing_drops;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free_source(s);
    return lost ? -ETIMEDOUT : 0;
}
