#include "ws_msg.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "auth.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "event.h"
#include "eventlog.h"
#include "conn.h"
#include "http.h"
#include "hub.h"
#include "jsonw.h"
#include "limit.h"
#include "log.h"
#include "stream.h"
#include "source_session.h"
#include "sources.h"
#include "topic.h"
#include "worker.h"
#include "ws.h"

#define FILTER_MAX 128

typedef struct ws_topic {
    topic_kind_t kind;
    char name[TOPIC_MAX_LEN + 1];
} ws_topic_t;

typedef struct sub_job {
    conn_t *c; /* NULL once the connection or the request is gone */
    worker_t *w;
    char match[FILTER_MAX + 1];
    char source[FILTER_MAX + 1];
    uint32_t gid;
    frame_t *full;
} sub_job_t;

struct ws_session {
    ws_topic_t *topics; /* every topic but `metrics` */
    uint32_t ntopics, cap;
    bool metrics;        /* subscribed to metrics (group joined or pending) */
    bool needs_full;     /* owed a full snapshot (after conflation) */
    bool full_requested; /* asked the hub for it already */
    bool subscriber;     /* counted in ws_subscribers */
    sub_job_t *pending;  /* metrics subscription on its way to the hub */
    /* events: position in the global stream, and the replay machinery */
    uint64_t last_seq;           /* last event seq processed (sent, or not for us) */
    bool replaying;              /* a replay is on its way from the hub */
    bool event_gap;              /* an event did not fit: replay once the queue drains */
    struct replay_job *replay;   /* the replay in flight */
    struct publish_job *pubs;    /* publishes awaiting their seq, to detach on close */
};

typedef struct replay_job {
    conn_t *c; /* NULL once the connection is gone */
    uint64_t since;
    cursor_t *cursor; /* owned: `since` was a cluster cursor (cursor.h), not a local seq */
    uint64_t oldest, latest;
    bool resync;
    event_t **ev; /* references, seq since+1 (or oldest) .. latest */
    uint32_t n;
} replay_job_t;

static void send_json(conn_t *c, buf_t *b) {
    if (b->data) ws_send_text(c, b->data, b->len);
}

void ws_msg_error(conn_t *c, const char *error, const char *detail) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "error");
    jsonw_kv_str(&w, "error", error);
    jsonw_kv_str(&w, "detail", detail);
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    send_json(c, &b);
    buf_free(&b);
    ws_bad_message(c);
}

/* Refuses a message outside the connection's token: an error message, counted both as a
 * denial and as a bad message (a client that keeps trying is closed by the abuse rule). */
static bool may(conn_t *c, unsigned scope, const char *what) {
    if (access_conn_may(c, scope)) return true;
    char need[32], detail[200];
    auth_scope_names(scope, need, sizeof need);
    snprintf(detail, sizeof detail, "%s needs a token with scope %s%s%s", what, need,
             c->token ? "; this one is " : "", c->token ? c->token->name : "");
    access_count(c, DENY_SCOPE);
    ws_msg_error(c, "forbidden", detail);
    return false;
}

static void reply_pong(conn_t *c) {
    char ts[CLK_ISO_LEN], msg[96];
    clk_iso8601(clk_unix(), ts);
    int n = snprintf(msg, sizeof msg, "{\"type\":\"pong\",\"timestamp\":\"%s\"}", ts);
    ws_send_text(c, msg, (size_t)n);
}

/* Keeps ws_subscribers right: a connection with any topic is a subscriber. */
static void recount(conn_t *c) {
    struct ws_session *s = c->sess;
    bool now = s->metrics || s->ntopics > 0;
    if (now == s->subscriber) return;
    s->subscriber = now;
    if (now)
        atomic_fetch_add(&c->w->stats.ws_subscribers, 1);
    else
        atomic_fetch_sub(&c->w->stats.ws_subscribers, 1);
}

/* ---- live metrics: joining and leaving a group --------------------------------------- */

/* A group id on its way to the hub (leaving a group, asking for a full snapshot). */
typedef struct group_msg {
    hub_t *hub;
    uint32_t gid;
} group_msg_t;

static void unsub_task(void *arg, int cancelled) {
    group_msg_t *m = arg;
    if (!cancelled) stream_unsubscribe(&m->hub->stream, m->gid);
    free(m);
}

static void full_task(void *arg, int cancelled) {
    group_msg_t *m = arg;
    if (!cancelled) stream_request_full(&m->hub->stream, m->gid);
    free(m);
}

static void post_group_msg(hub_t *hub, uint32_t gid, inbox_fn fn) {
    group_msg_t *m = malloc(sizeof *m);
    if (!m) return; /* lost: a stale group reference costs renders, a lost full request
                       is asked again by the next conflation */
    m->hub = hub;
    m->gid = gid;
    if (inbox_post(&hub->inbox, fn, m) < 0) free(m);
}

static void post_unsubscribe(hub_t *hub, uint32_t gid) { post_group_msg(hub, gid, unsub_task); }
static void post_request_full(hub_t *hub, uint32_t gid) { post_group_msg(hub, gid, full_task); }

static void leave_group(conn_t *c) {
    struct ws_session *s = c->sess;
    if (s->pending) { /* its answer will find no connection and undo itself */
        s->pending->c = NULL;
        s->pending = NULL;
    }
    if (c->mgroup) {
        uint32_t gid = c->mgroup;
        worker_group_remove(c->w, c);
        post_unsubscribe(c->w->hub, gid);
    }
    s->metrics = false;
    s->needs_full = s->full_requested = false;
}

static int sub_on_hub(hub_t *hub, void *arg, hub_call_t *call) {
    (void)call;
    sub_job_t *j = arg;
    j->gid = stream_subscribe(&hub->stream, j->match, j->source, &j->full);
    return HUB_CALL_DONE;
}

static void sub_done(void *arg, int cancelled) {
    sub_job_t *j = arg;
    conn_t *c = cancelled ? NULL : j->c;
    if (!c) {
        if (!cancelled && j->gid) post_unsubscribe(j->w->hub, j->gid);
        frame_unref(j->full);
        free(j);
        return;
    }
    c->sess->pending = NULL;
    if (!j->gid || worker_group_add(c->w, j->gid, c) < 0) {
        if (j->gid) post_unsubscribe(c->w->hub, j->gid);
        frame_unref(j->full);
        free(j);
        c->sess->metrics = false;
        recount(c);
        ws_msg_error(c, "internal", "out of memory while subscribing");
        return;
    }
    if (j->full)
        ws_enqueue(c, j->full); /* the first metrics:update: full */
    else
        c->sess->needs_full = true;
    free(j);
}

static int join_metrics(conn_t *c, const char *match, const char *source) {
    struct ws_session *s = c->sess;
    leave_group(c);
    sub_job_t *j = calloc(1, sizeof *j);
    if (!j) return -ENOMEM;
    j->c = c;
    j->w = c->w;
    snprintf(j->match, sizeof j->match, "%s", match ? match : "");
    snprintf(j->source, sizeof j->source, "%s", source ? source : "");
    if (hub_call(c->w->hub, c->w, sub_on_hub, sub_done, j) < 0) {
        free(j);
        return -ESHUTDOWN;
    }
    s->pending = j;
    s->metrics = true;
    return 0;
}

void ws_msg_deliver(conn_t *c, uint32_t gid, frame_t *delta, frame_t *full) {
    struct ws_session *s = c->sess;
    if (!s || c->closing || c->mgroup != gid) return;
    if (s->needs_full && full) {
        s->needs_full = s->full_requested = false;
        ws_enqueue(c, frame_ref(full));
        return;
    }
    if (delta) ws_enqueue(c, frame_ref(delta));
    if (s->needs_full && !s->full_requested && !c->closing) {
        s->full_requested = true;
        post_request_full(c->w->hub, gid);
    }
}

void ws_msg_metrics_gap(conn_t *c) {
    if (c->sess) c->sess->needs_full = true;
}

/* ---- events ---------------------------------------------------------------------------- */

static bool wants_event(const struct ws_session *s, const event_t *e) {
    for (uint32_t i = 0; i < s->ntopics; i++)
        if (topic_matches_event(s->topics[i].kind, s->topics[i].name, e->type)) return true;
    return false;
}

/* Sends e if it is for us; false when it did not fit (the gap is recorded). */
static bool deliver_one(conn_t *c, event_t *e) {
    struct ws_session *s = c->sess;
    if (wants_event(s, e)) {
        int rc = ws_enqueue_event(c, frame_ref(e->frame));
        if (rc == -ENOBUFS) {
            s->event_gap = true;
            return false;
        }
    }
    s->last_seq = e->seq;
    return true;
}

void ws_msg_deliver_event(conn_t *c, event_t *e) {
    struct ws_session *s = c->sess;
    if (!s || c->closing || s->replaying || s->event_gap) return; /* the replay brings it */
    if (e->seq <= s->last_seq) return;
    deliver_one(c, e);
}

/* A cluster cursor: every retained event it does not cover, in this hub's order. */
static int replay_cursor(hub_t *hub, replay_job_t *j) {
    j->resync = hub_cursor_too_old(hub, j->cursor);
    if (j->latest < j->oldest) return HUB_CALL_DONE;
    uint64_t n = 0;
    for (uint64_t q = j->oldest; q <= j->latest; q++) {
        event_t *e = elog_get(&hub->events, q);
        if (e && !hub_event_covered(hub, j->cursor, e)) n++;
    }
    if (!n) return HUB_CALL_DONE;
    j->ev = malloc(n * sizeof *j->ev);
    if (!j->ev) {
        j->resync = true;
        j->oldest = j->latest + 1;
        return HUB_CALL_DONE;
    }
    for (uint64_t q = j->oldest; q <= j->latest; q++) {
        event_t *e = elog_get(&hub->events, q);
        if (e && !hub_event_covered(hub, j->cursor, e)) j->ev[j->n++] = event_ref(e);
    }
    return HUB_CALL_DONE;
}

static int replay_on_hub(hub_t *hub, void *arg, hub_call_t *call) {
    (void)call;
    replay_job_t *j = arg;
    j->oldest = elog_oldest(&hub->events);
    j->latest = elog_latest(&hub->events);
    if (j->cursor) return replay_cursor(hub, j);
    uint64_t from = j->since + 1;
    if (from < j->oldest) {
        j->resync = j->since > 0 || j->oldest > 1;
        from = j->oldest;
    }
    if (j->latest < from) return HUB_CALL_DONE;
    uint64_t n = j->latest - from + 1;
    j->ev = malloc(n * sizeof *j->ev);
    if (!j->ev) { /* cannot list them: tell the client to resync from the newest */
        j->resync = true;
        j->oldest = j->latest + 1;
        return HUB_CALL_DONE;
    }
    for (uint64_t q = from; q <= j->latest; q++) {
        event_t *e = elog_get(&hub->events, q);
        if (e) j->ev[j->n++] = event_ref(e);
    }
    return HUB_CALL_DONE;
}

static void send_resync(conn_t *c, uint64_t oldest) {
    char msg[96];
    int n = snprintf(msg, sizeof msg, "{\"type\":\"resync\",\"oldest_seq\":%llu}",
                     (unsigned long long)oldest);
    ws_send_text(c, msg, (size_t)n);
}

static void replay_done(void *arg, int cancelled) {
    replay_job_t *j = arg;
    conn_t *c = cancelled ? NULL : j->c;
    if (c) {
        struct ws_session *s = c->sess;
        s->replay = NULL;
        s->replaying = false;
        if (j->resync) send_resync(c, j->oldest);
        uint64_t start = j->n ? j->ev[0]->seq - 1 : j->latest;
        if (start > s->last_seq || j->resync) s->last_seq = start;
        bool ok = true;
        for (uint32_t i = 0; i < j->n && ok; i++)
            if (j->ev[i]->seq > s->last_seq) ok = deliver_one(c, j->ev[i]);
        if (ok && j->latest > s->last_seq) s->last_seq = j->latest;
    }
    for (uint32_t i = 0; i < j->n; i++) event_unref(j->ev[i]);
    free(j->ev);
    free(j->cursor);
    free(j);
}

/* Asks the hub for every retained event after `since` (or not covered by *cursor, which
 * the job takes over); live events wait meanwhile. */
static int start_replay_at(conn_t *c, uint64_t since, cursor_t *cursor) {
    struct ws_session *s = c->sess;
    if (s->replaying) {
        free(cursor);
        return 0;
    }
    replay_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        free(cursor);
        return -ENOMEM;
    }
    j->c = c;
    j->since = since;
    j->cursor = cursor;
    if (hub_call(c->w->hub, c->w, replay_on_hub, replay_done, j) < 0) {
        free(j->cursor);
        free(j);
        return -ESHUTDOWN;
    }
    s->replay = j;
    s->replaying = true;
    s->event_gap = false;
    return 0;
}

static int start_replay(conn_t *c, uint64_t since) { return start_replay_at(c, since, NULL); }

void ws_msg_drained(conn_t *c) {
    struct ws_session *s = c->sess;
    if (s && s->event_gap && !s->replaying && !c->closing) start_replay(c, s->last_seq);
}

static bool has_event_topics(const struct ws_session *s) {
    for (uint32_t i = 0; i < s->ntopics; i++)
        if (s->topics[i].kind == TOPIC_EVENTS || s->topics[i].kind == TOPIC_ALERTS ||
            s->topics[i].kind == TOPIC_PATTERN || s->topics[i].kind == TOPIC_SOURCES)
            return true;
    return false;
}

static void update_evsub(conn_t *c) {
    if (has_event_topics(c->sess)) {
        if (worker_evsub_add(c->w, c) < 0) ws_msg_error(c, "internal", "out of memory");
    } else {
        worker_evsub_remove(c->w, c);
    }
}

/* {"type":"publish","data":{...envelope...}} → {"type":"ack","id":..,"seq":N} */
typedef struct publish_job {
    conn_t *c; /* NULL once the connection is gone */
    struct publish_job *prev, *next;
    event_t *e;
    int rc;
    hub_call_t *call;
} publish_job_t;

static void pub_unlink(struct ws_session *s, publish_job_t *j) {
    if (j->prev)
        j->prev->next = j->next;
    else if (s->pubs == j)
        s->pubs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

static void publish_stored(hub_t *hub, event_t *e, int rc, void *arg) {
    (void)hub;
    (void)e;
    publish_job_t *j = arg;
    j->rc = rc == -ESHUTDOWN ? rc : 0; /* a failing disk still delivers: ack it */
    hub_call_finish(j->call);
}

static int publish_on_hub(hub_t *hub, void *arg, hub_call_t *call) {
    publish_job_t *j = arg;
    j->call = call;
    j->rc = hub_publish(hub, event_ref(j->e), publish_stored, j);
    return j->rc < 0 ? HUB_CALL_DONE : HUB_CALL_LATER;
}

static void publish_done(void *arg, int cancelled) {
    publish_job_t *j = arg;
    conn_t *c = j->c;
    if (c) pub_unlink(c->sess, j);
    if (!cancelled && c && !c->closing) {
        if (j->rc == 0) {
            char msg[160];
            int n = snprintf(msg, sizeof msg, "{\"type\":\"ack\",\"id\":\"%s\",\"seq\":%llu}",
                             j->e->id, (unsigned long long)j->e->seq);
            ws_send_text(c, msg, (size_t)n);
        } else {
            ws_msg_error(c, "publish_failed", "the hub could not store the event");
        }
    }
    event_unref(j->e);
    free(j);
}

static void handle_publish(conn_t *c, json_t *root, size_t len) {
    if (!may(c, AUTH_PUBLISH, "publishing")) return;
    json_t *data = json_object_get(root, "data");
    if (!json_is_object(data)) {
        ws_msg_error(c, "bad_message", "\"data\" must be the event envelope (an object)");
        return;
    }
    /* the envelope limit applies to data's compact JSON text, as for a REST publish.
     * Compact printing at most ~6x what was parsed (a 4-byte number like 1e-5 prints as
     * 22 bytes; strings and structure never grow), so only a message longer than a sixth
     * of the limit needs the printed size */
    char rnd[6], err[EVENT_ERR_LEN];
    if (len > EVENT_MAX_BYTES / 6 && json_dumpb(data, NULL, 0, JSON_COMPACT) > EVENT_MAX_BYTES) {
        snprintf(err, sizeof err, "the event is larger than %d bytes", EVENT_MAX_BYTES);
        ws_msg_error(c, "bad_event", err);
        return;
    }
    event_random6(&c->w->rng, rnd);
    event_t *e = event_prepare_json(data, clk_unix(), rnd, err);
    if (!e) {
        ws_msg_error(c, "bad_event", err);
        return;
    }
    publish_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        event_unref(e);
        ws_msg_error(c, "internal", "out of memory");
        return;
    }
    j->c = c;
    j->e = e;
    if (hub_call(c->w->hub, c->w, publish_on_hub, publish_done, j) < 0) {
        event_unref(e);
        free(j);
        ws_msg_error(c, "unavailable", "the hub is shutting down");
        return;
    }
    j->next = c->sess->pubs;
    if (j->next) j->next->prev = j;
    c->sess->pubs = j;
}

/* ---- topics ---------------------------------------------------------------------------- */

static bool has_topic(const struct ws_session *s, const char *t) {
    for (uint32_t i = 0; i < s->ntopics; i++)
        if (strcmp(s->topics[i].name, t) == 0) return true;
    return false;
}

static int add_topic(struct ws_session *s, topic_kind_t kind, const char *t) {
    if (has_topic(s, t)) return 0;
    if (s->ntopics == s->cap) {
        uint32_t ncap = s->cap ? s->cap * 2 : 4;
        ws_topic_t *nt = realloc(s->topics, ncap * sizeof *nt);
        if (!nt) return -ENOMEM;
        s->topics = nt;
        s->cap = ncap;
    }
    s->topics[s->ntopics].kind = kind;
    snprintf(s->topics[s->ntopics].name, sizeof s->topics[0].name, "%s", t);
    s->ntopics++;
    return 0;
}

static void remove_topic(struct ws_session *s, const char *t) {
    for (uint32_t i = 0; i < s->ntopics; i++)
        if (strcmp(s->topics[i].name, t) == 0) {
            s->topics[i] = s->topics[--s->ntopics];
            return;
        }
}

/* Validates one topic name; answers the client and returns -1 when it is not one. */
static int check_topic(conn_t *c, const char *t, topic_kind_t *kind) {
    char detail[TOPIC_MAX_LEN + 96];
    *kind = topic_parse(t);
    if (*kind != TOPIC_INVALID) return 0;
    snprintf(detail, sizeof detail,
             "no such topic: %.*s (metrics, sources, alerts, events, or an event type pattern "
             "like telemetry.*)",
             TOPIC_MAX_LEN, t);
    ws_msg_error(c, "unknown_topic", detail);
    return -1;
}

static const char *filter_field(conn_t *c, json_t *filter, const char *name, int *bad) {
    json_t *v = json_object_get(filter, name);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v) || json_string_length(v) > FILTER_MAX) {
        char detail[96];
        snprintf(detail, sizeof detail, "filter.%s must be a string of at most %d characters",
                 name, FILTER_MAX);
        ws_msg_error(c, "bad_message", detail);
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

static void handle_subscription(conn_t *c, json_t *root, bool subscribe) {
    struct ws_session *s = c->sess;
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_array(topics) || json_array_size(topics) == 0) {
        ws_msg_error(c, "bad_message", "\"topics\" must be a non-empty array of strings");
        return;
    }
    /* all or nothing: validate every topic before changing anything */
    size_t i;
    json_t *t;
    uint32_t adding = 0;
    if (subscribe && !may(c, AUTH_READ, "subscribing")) return;
    json_array_foreach(topics, i, t) {
        topic_kind_t kind;
        if (!json_is_string(t)) {
            ws_msg_error(c, "bad_message", "\"topics\" must be a non-empty array of strings");
            return;
        }
        if (check_topic(c, json_string_value(t), &kind) < 0) return;
        if (subscribe && !access_conn_topic(c, json_string_value(t))) {
            char detail[TOPIC_MAX_LEN + 200];
            snprintf(detail, sizeof detail, "token %s may not read topic %.*s",
                     c->token ? c->token->name : "", TOPIC_MAX_LEN, json_string_value(t));
            access_count(c, DENY_TOPIC);
            ws_msg_error(c, "forbidden", detail);
            return;
        }
        if (subscribe && kind != TOPIC_METRICS && !has_topic(s, json_string_value(t))) adding++;
    }
    const char *match = NULL, *source = NULL;
    int64_t since_seq = -1;
    cursor_t *since_cursor = NULL; /* owned until handed to the replay */
    if (subscribe) {
        json_t *filter = json_object_get(root, "filter");
        if (filter && !json_is_null(filter) && !json_is_object(filter)) {
            ws_msg_error(c, "bad_message", "\"filter\" must be an object {match, source}");
            return;
        }
        int bad = 0;
        if (filter) {
            match = filter_field(c, filter, "match", &bad);
            if (!bad) source = filter_field(c, filter, "source", &bad);
        }
        json_t *since = json_object_get(root, "since");
        if (json_is_string(since)) { /* a cluster cursor, from the frames' "cursor" */
            since_cursor = malloc(sizeof *since_cursor);
            if (!since_cursor || cursor_parse(json_string_value(since), json_string_length(since),
                                              since_cursor) < 0) {
                free(since_cursor);
                ws_msg_error(c, "bad_message", "\"since\" must be a seq or a cursor "
                             "(\"hub:seq,hub:seq\", from an event's \"cursor\")");
                return;
            }
        } else if (since && !json_is_null(since) &&
                   (!json_is_integer(since) || json_integer_value(since) < 0)) {
            ws_msg_error(c, "bad_message", "\"since\" must be a non-negative integer seq");
            return;
        }
        if (json_is_integer(since)) since_seq = (int64_t)json_integer_value(since);
        if (bad) {
            free(since_cursor);
            return;
        }
        if (s->ntopics + adding > (uint32_t)c->w->cfg->ws_max_subscriptions) {
            char detail[96];
            snprintf(detail, sizeof detail, "at most %d topics per connection",
                     c->w->cfg->ws_max_subscriptions);
            worker_limit_hit(c->w, LIMIT_WS_SUBSCRIPTIONS, c->peer);
            ws_msg_error(c, "too_many_subscriptions", detail);
            free(since_cursor);
            return;
        }
    }
    json_array_foreach(topics, i, t) {
        const char *name = json_string_value(t);
        topic_kind_t kind = topic_parse(name);
        if (kind == TOPIC_METRICS) {
            if (!subscribe) {
                leave_group(c);
            } else if (join_metrics(c, match, source) < 0) {
                ws_msg_error(c, "unavailable", "the hub is shutting down");
                free(since_cursor);
                return;
            }
        } else if (subscribe) {
            if (add_topic(s, kind, name) < 0) {
                ws_msg_error(c, "internal", "out of memory while subscribing");
                free(since_cursor);
                return;
            }
        } else {
            remove_topic(s, name);
        }
    }
    recount(c);
    update_evsub(c);
    /* since: replay every retained event after it (then live), or resync */
    if (subscribe && since_cursor && has_event_topics(s)) {
        if (start_replay_at(c, 0, since_cursor) < 0)
            ws_msg_error(c, "unavailable", "the hub is shutting down");
        since_cursor = NULL;
    }
    free(since_cursor);
    if (subscribe && since_seq >= 0 && has_event_topics(s) && start_replay(c, (uint64_t)since_seq) < 0)
        ws_msg_error(c, "unavailable", "the hub is shutting down");
}

/* {"type":"hello","source":"robot_001","attrs":{...}} */
static void handle_hello(conn_t *c, json_t *root) {
    if (!may(c, AUTH_INGEST, "a source session (hello)")) return;
    json_t *src = json_object_get(root, "source");
    json_t *attrs = json_object_get(root, "attrs");
    if (!json_is_string(src) || !sources_id_valid(json_string_value(src))) {
        ws_msg_error(c, "bad_message", "\"source\" must be 1-128 of [A-Za-z0-9_.:-]");
        return;
    }
    if (attrs && !json_is_null(attrs) && !json_is_object(attrs)) {
        ws_msg_error(c, "bad_message", "\"attrs\" must be an object");
        return;
    }
    char *a = attrs && json_is_object(attrs) ? json_dumps(attrs, JSON_COMPACT) : NULL;
    if (a && strlen(a) > 4096) {
        free(a);
        ws_msg_error(c, "bad_message", "\"attrs\" larger than 4096 bytes");
        return;
    }
    int rc = srcs_start(c, json_string_value(src), a);
    free(a);
    if (rc == -EEXIST)
        ws_msg_error(c, "bad_message", "this connection is already a source session");
    else if (rc < 0)
        ws_msg_error(c, "internal", "out of memory");
}

void ws_msg_handle(conn_t *c, const char *msg, size_t len) {
    /* a source may send StatsD text frames: anything that does not start like JSON */
    size_t i = 0;
    while (i < len && (msg[i] == ' ' || msg[i] == '\t' || msg[i] == '\r' || msg[i] == '\n')) i++;
    if (srcs_is_source(c) && (i == len || msg[i] != '{')) {
        if (may(c, AUTH_INGEST, "sending samples")) srcs_enqueue(c, SRC_MSG_STATSD, msg, len);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char detail[256];
        snprintf(detail, sizeof detail, "invalid JSON at position %d: %s", jerr.position,
                 jerr.text);
        ws_msg_error(c, "bad_json", detail);
        return;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!json_is_object(root) || !type) {
        ws_msg_error(c, "bad_message", "a message is a JSON object with a string \"type\"");
    } else if (strcmp(type, "ping") == 0) {
        reply_pong(c);
    } else if (strcmp(type, "subscribe") == 0) {
        handle_subscription(c, root, true);
    } else if (strcmp(type, "unsubscribe") == 0) {
        handle_subscription(c, root, false);
    } else if (strcmp(type, "publish") == 0) {
        handle_publish(c, root, len);
    } else if (strcmp(type, "hello") == 0) {
        handle_hello(c, root);
    } else if (strcmp(type, "sample") == 0 || strcmp(type, "client_metrics") == 0) {
        bool sample = type[0] == 's';
        /* client_metrics become series too (labelled client=SESSION): ingest, like samples */
        if (may(c, AUTH_INGEST, sample ? "sending samples" : "client_metrics")) {
            if (sample && !srcs_is_source(c))
                ws_msg_error(c, "not_a_source", "send hello (or connect with ?source=ID) first");
            else if (!json_is_object(json_object_get(root, "metrics")) &&
                     !json_is_array(json_object_get(root, "samples")))
                ws_msg_error(c, "bad_message", "\"metrics\" must be an object of name: number");
            else if (!srcs_is_source(c)) /* client_metrics from a plain subscriber */
                srcs_client_metrics(c, msg, len);
            else
                srcs_enqueue(c, sample ? SRC_MSG_SAMPLE : SRC_MSG_CLIENT_METRICS, msg, len);
        }
    } else {
        char detail[TOPIC_MAX_LEN + 64];
        snprintf(detail, sizeof detail, "unknown message type: %.*s", TOPIC_MAX_LEN, type);
        ws_msg_error(c, "unknown_type", detail);
    }
    json_decref(root);
}

int ws_msg_open(conn_t *c, const char *query) {
    c->sess = calloc(1, sizeof *c->sess);
    if (!c->sess) return -ENOMEM;
    char source[SOURCE_ID_MAX + 2];
    int qs = http_query_param(query, "source", source, sizeof source);
    if (qs < 0 || (qs > 0 && *source)) {
        if (qs < 0 || !sources_id_valid(source))
            ws_msg_error(c, "bad_source", "source must be 1-128 of [A-Za-z0-9_.:-]");
        else if (srcs_start(c, source, NULL) < 0)
            return -ENOMEM;
    }
    char topics[1024];
    int qt = http_query_param(query, "topics", topics, sizeof topics);
    if (qt < 0) {
        ws_msg_error(c, "bad_message", "topics= is malformed or longer than 1023 bytes");
        return 0;
    }
    if (qt == 0 || !*topics) return 0;
    /* same rules as a subscribe message without a filter */
    json_t *msg = json_object();
    json_t *arr = json_array();
    char *save = NULL;
    for (char *t = strtok_r(topics, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    json_object_set_new(msg, "topics", arr);
    if (json_array_size(arr) > 0) handle_subscription(c, msg, true);
    json_decref(msg);
    return 0;
}

const char *ws_msg_recheck(conn_t *c) {
    struct ws_session *s = c->sess;
    if (srcs_is_source(c) && !access_conn_may(c, AUTH_INGEST))
        return "token no longer allows a source session";
    if (!s) return NULL;
    bool reads = s->metrics || s->ntopics > 0;
    if (reads && !access_conn_may(c, AUTH_READ)) return "token no longer allows subscribing";
    if (s->metrics && !access_conn_topic(c, "metrics"))
        return "token no longer allows this connection's topics";
    for (uint32_t i = 0; i < s->ntopics; i++)
        if (!access_conn_topic(c, s->topics[i].name))
            return "token no longer allows this connection's topics";
    return NULL;
}

void ws_msg_close(conn_t *c) {
    struct ws_session *s = c->sess;
    if (!s) return;
    leave_group(c);
    worker_evsub_remove(c->w, c);
    if (s->replay) s->replay->c = NULL; /* its answer only frees itself */
    for (publish_job_t *j = s->pubs, *next; j; j = next) {
        next = j->next;
        j->c = NULL;
        j->prev = j->next = NULL;
    }
    s->ntopics = 0;
    recount(c);
    free(s->topics);
    free(s);
    c->sess = NULL;
}
