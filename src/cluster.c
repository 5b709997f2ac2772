#include "cluster.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/adapters/libuv.h>

#include "bridge.h"
#include "clock.h"
#include "config.h"
#include "hub.h"
#include "jsonw.h"
#include "log.h"

/* How often the link looks around: heartbeat, peers' timeouts, the first connection. */
#define TICK_MS 1000
#define MAX_PEERS 64
/* Own events sent per replay request; a hub further behind asks again. */
#define REPLAY_BATCH 1000
/* A replay request unanswered this long may be sent again. */
#define REPLAY_RETRY_S 2.0

const char *cluster_fail_name(int r) {
    static const char *const names[CLUSTER_F_COUNT] = {
        "too_large", "bad_json",      "bad_version", "bad_field", "no_memory", "publish",
        "not_connected", "slow_consumer", "duplicate", "gap"};
    return r >= 0 && r < CLUSTER_F_COUNT ? names[r] : "unknown";
}

typedef struct peer {
    char hub[HUB_ID_MAX + 1];
    double last_heard; /* this hub's clock */
    bool alive;
    uint32_t n;
    bridge_source_t *src; /* its online sources, as last announced (owned) */
    bool met;         /* its first heartbeat arrived */
    double replay_at; /* when this hub last asked it for a replay (0: never) */
} peer_t;

struct cluster {
    hub_t *hub;
    const config_t *cfg;
    char id[HUB_ID_MAX + 1];
    char url[512];      /* for logs and health: credentials masked */
    char real_url[512]; /* what nats.c connects to */
    char probe_host[256], probe_port[8];
    char subj_events[256], subj_samples[256], subj_sources[256], subj_all[256];
    char subj_replay[256];   /* <prefix>.replay. — a hub's requests: + the hub asked */
    char subj_replayed[256]; /* <prefix>.replayed. — answers: + the hub that asked */
    uint64_t last_sent;      /* oseq of this hub's newest own event published */
    natsOptions *opts;
    natsConnection *nc;
    natsSubscription *sub;
    uv_timer_t timer;
    uv_check_t check; /* drains the subscription (on_check) */
    uv_idle_t idle;   /* while more messages wait than one pass takes */
    bool timer_on;
    /* the TCP probe before the first connection */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    uv_tcp_t probe;
    bool probing;
    _Atomic bool stopping; /* read by nats.c's threads */
    cluster_stats_t st;
    uv_mutex_t mu; /* status, for health on the workers */
    char status[200];
    peer_t peers[MAX_PEERS];
    uint32_t npeers;
    uint64_t logged_fail[CLUSTER_F_COUNT]; /* counts when each was last logged */
    buf_t out;
};

static void set_status(cluster_t *c, bool up, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_status(cluster_t *c, bool up, const char *fmt, ...) {
    va_list ap;
    uv_mutex_lock(&c->mu);
    va_start(ap, fmt);
    vsnprintf(c->status, sizeof c->status, fmt, ap);
    va_end(ap);
    atomic_store(&c->st.connected, up);
    uv_mutex_unlock(&c->mu);
}

bool cluster_health(cluster_t *c, char *detail, size_t len) {
    uv_mutex_lock(&c->mu);
    snprintf(detail, len, "%s", c->status);
    bool up = atomic_load(&c->st.connected);
    uv_mutex_unlock(&c->mu);
    return up;
}

cluster_stats_t *cluster_stats(cluster_t *c) { return &c->st; }

/* Counts a failure; logs the first of each reason and then every 1000th, so a flood of
 * garbage cannot flood the log. */
static void count_fail(cluster_t *c, int reason, const char *detail) {
    uint64_t n = atomic_fetch_add(&c->st.failed[reason], 1) + 1;
    if (n == 1 || n % 1000 == 0)
        log_warn("nats message not bridged", "reason=%s count=%llu detail=\"%.200s\"",
                 cluster_fail_name(reason), (unsigned long long)n, detail ? detail : "");
}

void cluster_default_id(int port, char out[HUB_ID_MAX + 1]) {
    char host[256] = "hub";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "hub");
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot) *dot = '\0';
    size_t n = 0;
    for (const char *p = host; *p && n < HUB_ID_MAX - 6; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        out[n++] = ok ? ch : '_';
    }
    if (n == 0) out[n++] = 'h';
    snprintf(out + n, HUB_ID_MAX + 1 - n, "-%d", port);
}

/* ---- publishing ---------------------------------------------------------------------- */

static void publish(cluster_t *c, const char *subj, const buf_t *b) {
    if (!b->data) {
        count_fail(c, CLUSTER_F_NO_MEMORY, "encoding");
        return;
    }
    if (!c->nc) {
        count_fail(c, CLUSTER_F_NOT_CONNECTED, "NATS not reached yet");
        return;
    }
    natsStatus s = natsConnection_Publish(c->nc, subj, b->data, (int)b->len);
    if (s != NATS_OK) {
        count_fail(c, CLUSTER_F_PUBLISH, natsStatus_GetText(s));
        return;
    }
    atomic_fetch_add_explicit(&c->st.out, 1, memory_order_relaxed);
}

void cluster_publish_event(cluster_t *c, const event_t *e) {
    if (c->stopping) return;
    buf_reset(&c->out);
    if (bridge_encode_event(c->id, e->oseq, e->oprev, false, e, &c->out) < 0) buf_free(&c->out);
    publish(c, c->subj_events, &c->out);
    c->last_sent = e->oseq;
}

void cluster_publish_batch(cluster_t *c, const agg_batch_t *b) {
    if (c->stopping || !b->n) return;
    for (uint32_t from = 0; from < b->n;) {
        uint32_t next;
        buf_reset(&c->out);
        if (bridge_encode_samples(c->id, b, from, &next, &c->out) < 0) buf_free(&c->out);
        if (!c->out.data) {
            count_fail(c, CLUSTER_F_NO_MEMORY, "encoding samples");
            return;
        }
        publish(c, c->subj_samples, &c->out);
        if (next <= from) break;
        from = next;
    }
}

static void heartbeat(cluster_t *c) {
    if (!c->nc || c->stopping) return;
    buf_reset(&c->out);
    uint64_t last = c->last_sent ? c->last_sent : cursor_get(&c->hub->cvec, c->id);
    if (bridge_encode_sources(c->id, &c->hub->sources, clk_unix(), last, &c->out) < 0)
        buf_free(&c->out);
    publish(c, c->subj_sources, &c->out);
}

void cluster_sources_changed(cluster_t *c) { heartbeat(c); }

/* ---- receiving (hub thread) ------------------------------------------------------------ */

static peer_t *peer_get(cluster_t *c, const char *hub) {
    for (uint32_t i = 0; i < c->npeers; i++)
        if (strcmp(c->peers[i].hub, hub) == 0) return &c->peers[i];
    if (c->npeers == MAX_PEERS) return NULL;
    peer_t *p = &c->peers[c->npeers++];
    memset(p, 0, sizeof *p);
    snprintf(p->hub, sizeof p->hub, "%s", hub);
    return p;
}

static void peer_drop_sources(peer_t *p) {
    for (uint32_t i = 0; i < p->n; i++) free(p->src[i].attrs);
    free(p->src);
    p->src = NULL;
    p->n = 0;
}

static void heard(cluster_t *c, const char *hub) {
    peer_t *p = peer_get(c, hub);
    if (!p) return;
    p->last_heard = clk_unix();
    if (!p->alive) {
        p->alive = true;
        atomic_fetch_add(&c->st.peers, 1);
        log_info("hub joined", "hub=%s", hub);
    }
}

/* Asks origin p for its own events after `after` (at most one request in flight). */
static void ask_replay(cluster_t *c, peer_t *p, uint64_t after) {
    double now = clk_unix();
    if (p->replay_at && now - p->replay_at < REPLAY_RETRY_S) return;
    p->replay_at = now;
    char subj[400];
    snprintf(subj, sizeof subj, "%s%s", c->subj_replay, p->hub);
    buf_reset(&c->out);
    if (bridge_encode_replay(c->id, p->hub, after, &c->out) < 0) buf_free(&c->out);
    log_info("asking a hub for missed events", "hub=%s after=%llu", p->hub,
             (unsigned long long)after);
    publish(c, subj, &c->out);
}

/* The last oseq of origin p this hub has, or does not want (before they met). */
static uint64_t have(const cluster_t *c, const peer_t *p) {
    return cursor_get(&c->hub->cvec, p->hub);
}

static void apply_event(cluster_t *c, bridge_msg_t *m) {
    hub_t *hub = c->hub;
    peer_t *p = peer_get(c, m->hub);
    if (!p) return;
    uint64_t last = have(c, p);
    if (m->oseq <= last) { /* resent after a reconnect, or answered twice */
        count_fail(c, CLUSTER_F_DUPLICATE, m->hub);
        return;
    }
    if ((p->met || last > 0) && m->prev > last) {
        if (!m->replay) {
            /* events between never reached this hub (NATS lost them while it was away):
             * their origin has them; this one waits for the replay, which keeps the
             * origin's order */
            ask_replay(c, p, last);
            return;
        }
        /* the origin no longer retains them: lost for good */
        char d[128];
        snprintf(d, sizeof d, "origin=%s after=%llu next=%llu", m->hub, (unsigned long long)last,
                 (unsigned long long)m->oseq);
        count_fail(c, CLUSTER_F_GAP, d);
    }
    if (m->replay) p->replay_at = 0; /* progress: a further request may go at once */
    event_t *e = m->event;
    m->event = NULL;
    snprintf(e->origin, sizeof e->origin, "%s", m->hub);
    e->oseq = m->oseq;
    e->oprev = m->prev;
    if (hub_publish(hub, e, NULL, NULL) == 0)
        atomic_fetch_add_explicit(&c->st.in, 1, memory_order_relaxed);
    else
        count_fail(c, CLUSTER_F_NO_MEMORY, "event");
}

/* Another hub asks for this hub's own events after m->after: the retained ones, in
 * order, at most REPLAY_BATCH (events still on their way to disk go out live). */
static void answer_replay(cluster_t *c, const bridge_msg_t *m) {
    hub_t *hub = c->hub;
    char subj[400];
    snprintf(subj, sizeof subj, "%s%s", c->subj_replayed, m->hub);
    uint32_t sent = 0;
    for (uint64_t q = elog_oldest(&hub->events); q <= elog_latest(&hub->events) && sent < REPLAY_BATCH;
         q++) {
        const event_t *e = elog_get(&hub->events, q);
        if (!e) continue;
        bool own = !e->origin[0] || strcmp(e->origin, c->id) == 0;
        uint64_t oseq = e->origin[0] ? e->oseq : e->seq;
        if (!own || oseq <= m->after) continue;
        buf_reset(&c->out);
        if (bridge_encode_event(c->id, oseq, e->origin[0] ? e->oprev : 0, true, e, &c->out) < 0)
            buf_free(&c->out);
        publish(c, subj, &c->out);
        sent++;
    }
    log_info("replayed events to a hub", "hub=%s after=%llu events=%u", m->hub,
             (unsigned long long)m->after, sent);
}

static void apply_sources(cluster_t *c, bridge_msg_t *m) {
    peer_t *p = peer_get(c, m->hub);
    if (!p) return;
    uint64_t last = have(c, p);
    if (!p->met) {
        p->met = true;
        /* First contact: its history before now is not this hub's to import, unless this
         * hub has some of it already (it knew the other before a restart). This hub's log
         * then stands at that point for that origin, and the cursors of its next events
         * say so: a client resuming on the other hub is not sent that history either. */
        if (last == 0 && m->last && cursor_set(&c->hub->cvec, p->hub, m->last) == 0)
            last = m->last;
    }
    if (m->last > last) ask_replay(c, p, last); /* it sent events this hub never got */
    peer_drop_sources(p);
    p->src = m->sources;
    p->n = m->nsources;
    m->sources = NULL;
    m->nsources = 0;
    atomic_fetch_add_explicit(&c->st.in, 1, memory_order_relaxed);
}

/* Replay requests and answers name the hub they are for in the subject's last token. */
static bool for_us(const cluster_t *c, const char *subj) {
    size_t a = strlen(c->subj_replay), b = strlen(c->subj_replayed);
    if (strncmp(subj, c->subj_replayed, b) == 0) return strcmp(subj + b, c->id) == 0;
    if (strncmp(subj, c->subj_replay, a) == 0) return strcmp(subj + a, c->id) == 0;
    return true;
}

/* One received message, on the hub thread. */
static void handle_msg(cluster_t *c, natsMsg *msg) {
    bridge_msg_t m;
    char err[256];
    bridge_err_t e = bridge_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                                   clk_unix(), &m, err, sizeof err);
    if (e != BRIDGE_OK) {
        char d[400];
        snprintf(d, sizeof d, "subject=%.60s %s", natsMsg_GetSubject(msg), err);
        count_fail(c, (int)e - 1, d); /* bridge_err_t order, after BRIDGE_OK */
        return;
    }
    if (strcmp(m.hub, c->id) == 0 || !for_us(c, natsMsg_GetSubject(msg))) {
        /* our own (another hub with the same id would be a configuration error), or a
         * replay between two other hubs */
        bridge_msg_free(&m);
        return;
    }
    heard(c, m.hub);
    switch (m.kind) {
    case BRIDGE_EVENT: apply_event(c, &m); break;
    case BRIDGE_SAMPLES: {
        registry_result_t res;
        hub_apply_remote_batch(c->hub, m.batch, &res);
        atomic_fetch_add_explicit(&c->st.in, 1, memory_order_relaxed);
        break;
    }
    case BRIDGE_SOURCES: apply_sources(c, &m); break;
    case BRIDGE_REPLAY:
        if (strcmp(m.to, c->id) == 0) answer_replay(c, &m);
        break;
    }
    bridge_msg_free(&m);
}

/* The subscription is synchronous and drained here, in the hub loop's check phase: the
 * libuv adapter reads the socket in the same loop iteration's poll phase, so a message is
 * applied without a hop through nats.c's delivery thread and the inbox (each a wake-up:
 * on a busy machine, milliseconds). At most DRAIN_MAX a pass; while more wait, an idle
 * handle keeps the loop from sleeping in poll. */
#define DRAIN_MAX 1024
static void idle_nop(uv_idle_t *h) { (void)h; }

static void on_check(uv_check_t *h) {
    cluster_t *c = h->data;
    if (!c->sub || c->stopping) return;
    int n = 0;
    natsMsg *msg = NULL;
    while (n < DRAIN_MAX && natsSubscription_NextMsg(&msg, c->sub, 0) == NATS_OK) {
        handle_msg(c, msg);
        natsMsg_Destroy(msg);
        n++;
    }
    if (n == DRAIN_MAX && !uv_is_active((uv_handle_t *)&c->idle))
        uv_idle_start(&c->idle, idle_nop);
    else if (n < DRAIN_MAX && uv_is_active((uv_handle_t *)&c->idle))
        uv_idle_stop(&c->idle);
}

/* ---- connection callbacks (nats.c's threads) ------------------------------------------ */

static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc;
    cluster_t *c = closure;
    if (c->stopping) return;
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    set_status(c, false, "NATS %s unreachable since %s: reconnecting (local service continues)",
               c->url, ts);
    log_warn("nats disconnected", "url=%s note=\"reconnecting; local service continues\"", c->url);
}

static void on_reconnected(natsConnection *nc, void *closure) {
    (void)nc;
    cluster_t *c = closure;
    atomic_fetch_add(&c->st.reconnects, 1);
    set_status(c, true, "connected to NATS %.150s", c->url);
    log_info("nats reconnected", "url=%s", c->url);
}

static void on_closed(natsConnection *nc, void *closure) {
    (void)nc;
    cluster_t *c = closure;
    if (!c->stopping) set_status(c, false, "NATS connection %s closed", c->url);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc, (void)sub;
    cluster_t *c = closure;
    if (err == NATS_SLOW_CONSUMER)
        count_fail(c, CLUSTER_F_SLOW_CONSUMER, "nats.c dropped messages for this hub");
    else
        log_warn("nats error", "error=\"%s\"", natsStatus_GetText(err));
}

/* ---- connecting ------------------------------------------------------------------------ */

static void connect_now(cluster_t *c) {
    natsStatus s = natsConnection_Connect(&c->nc, c->opts);
    if (s != NATS_OK) {
        c->nc = NULL;
        set_status(c, false, "NATS %s not reachable: %s (retrying every second)", c->url,
                   natsStatus_GetText(s));
        return;
    }
    s = natsConnection_SubscribeSync(&c->sub, c->nc, c->subj_all);
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(c->sub, 1000000, 256 * 1024 * 1024);
    if (s != NATS_OK) {
        log_error("nats subscribe failed", "subject=%s error=\"%s\"", c->subj_all,
                  natsStatus_GetText(s));
        natsSubscription_Destroy(c->sub);
        c->sub = NULL;
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
        c->nc = NULL;
        set_status(c, false, "NATS %s: cannot subscribe: %s", c->url, natsStatus_GetText(s));
        return;
    }
    set_status(c, true, "connected to NATS %.150s", c->url);
    log_info("nats connected", "url=%s hub=%s subjects=%s", c->url, c->id, c->subj_all);
    heartbeat(c);
}

static void probe_closed(uv_handle_t *h) {
    cluster_t *c = h->data;
    c->probing = false;
}

static void on_probe_connect(uv_connect_t *req, int status) {
    cluster_t *c = req->data;
    c->probe.data = c;
    uv_close((uv_handle_t *)&c->probe, probe_closed);
    if (c->stopping) return;
    if (status < 0) {
        set_status(c, false, "NATS %s not reachable: %s (retrying every second)", c->url,
                   uv_strerror(status));
        return;
    }
    connect_now(c); /* it accepts connections: nats.c's handshake will not hang the loop */
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    cluster_t *c = req->data;
    if (status < 0 || c->stopping || uv_tcp_init(&c->hub->loop, &c->probe) != 0) {
        if (status < 0 && !c->stopping)
            set_status(c, false, "NATS %s: cannot resolve %s: %s (retrying every second)",
                       c->url, c->probe_host, uv_strerror(status));
        uv_freeaddrinfo(res);
        c->probing = false;
        return;
    }
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->probe, res->ai_addr, on_probe_connect);
    uv_freeaddrinfo(res);
    if (rc < 0) {
        c->probe.data = c;
        uv_close((uv_handle_t *)&c->probe, probe_closed);
        set_status(c, false, "NATS %s not reachable: %s", c->url, uv_strerror(rc));
    }
}

static void try_connect(cluster_t *c) {
    if (c->nc || c->probing || c->stopping) return;
    c->probing = true;
    c->gai.data = c;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(&c->hub->loop, &c->gai, on_resolved, c->probe_host, c->probe_port,
                       &hints) < 0)
        c->probing = false;
}

static void peers_check(cluster_t *c) {
    double now = clk_unix();
    for (uint32_t i = 0; i < c->npeers; i++) {
        peer_t *p = &c->peers[i];
        if (!p->alive || now - p->last_heard <= c->cfg->nats_hub_timeout) continue;
        p->alive = false;
        atomic_fetch_sub(&c->st.peers, 1);
        log_warn("hub lost", "hub=%s silent_seconds=%.1f sources_offline=%u", p->hub,
                 now - p->last_heard, p->n);
    }
}

static void on_tick(uv_timer_t *t) {
    cluster_t *c = t->data;
    if (!c->nc)
        try_connect(c);
    else
        heartbeat(c);
    peers_check(c);
}

/* ---- the sources of the cluster ----------------------------------------------------------- */

typedef struct entry {
    const char *hub;
    source_info_t *si; /* borrowed (local) or built here (remote) */
} entry_t;

static int cmp_entry(const void *a, const void *b) {
    const entry_t *x = a, *y = b;
    int r = strcmp(x->si->id, y->si->id);
    if (r) return r;
    /* the one to keep first: online, then the most recent connection */
    if (x->si->online != y->si->online) return x->si->online ? -1 : 1;
    return x->si->connected_at > y->si->connected_at ? -1 : x->si->connected_at < y->si->connected_at;
}

int cluster_sources_json(cluster_t *c, const sources_t *local, buf_t *b) {
    size_t nremote = 0;
    for (uint32_t i = 0; i < c->npeers; i++) nremote += c->peers[i].n;
    entry_t *v = malloc((local->n + nremote + 1) * sizeof *v);
    source_info_t *tmp = calloc(nremote + 1, sizeof *tmp);
    if (!v || !tmp) {
        free(v), free(tmp);
        return -ENOMEM;
    }
    size_t n = 0, k = 0;
    for (uint32_t i = 0; i < local->cap; i++)
        if (local->slots[i]) v[n++] = (entry_t){c->id, local->slots[i]};
    for (uint32_t i = 0; i < c->npeers; i++) {
        const peer_t *p = &c->peers[i];
        for (uint32_t j = 0; j < p->n; j++) {
            source_info_t *si = &tmp[k++];
            const bridge_source_t *s = &p->src[j];
            snprintf(si->id, sizeof si->id, "%s", s->id);
            snprintf(si->session_id, sizeof si->session_id, "%s", s->session_id);
            si->online = p->alive;
            si->connected_at = s->connected_at;
            si->last_seen = p->alive ? s->last_seen : p->last_heard;
            si->disconnected_at = p->last_heard; /* shown when the hub is gone */
            si->attrs = s->attrs;
            si->attempts = 1;
            v[n++] = (entry_t){p->hub, si};
        }
    }
    qsort(v, n, sizeof *v, cmp_entry);
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_key(&w, "sources");
    jsonw_arr_open(&w);
    uint64_t count = 0, online = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].si->id, v[i - 1].si->id) == 0) continue; /* first one wins */
        sources_entry_json(&w, v[i].si, v[i].hub);
        count++;
        online += v[i].si->online;
    }
    jsonw_arr_close(&w);
    jsonw_kv_uint(&w, "count", count);
    jsonw_kv_uint(&w, "online", online);
    jsonw_kv_str(&w, "hub", c->id);
    jsonw_obj_close(&w);
    free(v);
    free(tmp);
    buf_putc(b, '\n');
    return jsonw_error(&w);
}

const char *cluster_source_holder(const cluster_t *c, const char *id) {
    for (uint32_t i = 0; i < c->npeers; i++) {
        const peer_t *p = &c->peers[i];
        if (!p->alive) continue;
        for (uint32_t j = 0; j < p->n; j++)
            if (strcmp(p->src[j].id, id) == 0) return p->hub;
    }
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

/* user:pass@ becomes ***@ in the URL that logs and health show */
static void mask_credentials(const char *in, char *out, size_t outlen) {
    const char *p = strncmp(in, "nats://", 7) == 0 ? in + 7 : in;
    const char *end = strchr(p, ',');
    const char *at = memchr(p, '@', end ? (size_t)(end - p) : strlen(p));
    if (!at)
        snprintf(out, outlen, "%s", in);
    else
        snprintf(out, outlen, "%.*s***%s", (int)(p - in), in, at);
}

/* nats://[user[:pass]@]host[:port][,more] → host and port for the probe */
static int probe_target(cluster_t *c) {
    const char *p = c->real_url + 7, *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) p = at + 1;
    const char *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) return -EINVAL;
        snprintf(c->probe_host, sizeof c->probe_host, "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        size_t hl = (size_t)((colon ? colon : end) - p);
        if (hl == 0 || hl >= sizeof c->probe_host) return -EINVAL;
        snprintf(c->probe_host, sizeof c->probe_host, "%.*s", (int)hl, p);
    }
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);
        if (pl == 0 || pl >= sizeof c->probe_port) return -EINVAL;
        snprintf(c->probe_port, sizeof c->probe_port, "%.*s", (int)pl, colon + 1);
    } else {
        snprintf(c->probe_port, sizeof c->probe_port, "4222");
    }
    return 0;
}

int cluster_open(cluster_t **out, hub_t *hub, const config_t *cfg, const char *hub_id, char *err,
                 size_t errlen) {
    *out = NULL;
    cluster_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "--nats: out of memory");
        return -1;
    }
    c->hub = hub;
    c->cfg = cfg;
    snprintf(c->id, sizeof c->id, "%s", hub_id);
    snprintf(c->real_url, sizeof c->real_url, "%s", cfg->nats_url);
    mask_credentials(c->real_url, c->url, sizeof c->url);
    snprintf(c->subj_events, sizeof c->subj_events, "%.100s.events.%s", cfg->nats_prefix, c->id);
    snprintf(c->subj_samples, sizeof c->subj_samples, "%.100s.samples.%s", cfg->nats_prefix, c->id);
    snprintf(c->subj_sources, sizeof c->subj_sources, "%.100s.sources.%s", cfg->nats_prefix, c->id);
    snprintf(c->subj_all, sizeof c->subj_all, "%.100s.>", cfg->nats_prefix);
    snprintf(c->subj_replay, sizeof c->subj_replay, "%.100s.replay.", cfg->nats_prefix);
    snprintf(c->subj_replayed, sizeof c->subj_replayed, "%.100s.replayed.", cfg->nats_prefix);
    buf_init(&c->out);
    if (uv_mutex_init(&c->mu) != 0) {
        free(c);
        snprintf(err, errlen, "--nats: cannot create a mutex");
        return -1;
    }
    snprintf(c->status, sizeof c->status, "connecting to NATS %.150s", c->url);
    if (probe_target(c) < 0) {
        snprintf(err, errlen, "--nats %s: cannot find host and port in the URL", c->url);
        goto fail;
    }
    char name[96];
    snprintf(name, sizeof name, "metricast %s", c->id);
    natsStatus s = natsOptions_Create(&c->opts);
    if (s == NATS_OK) s = natsOptions_SetURL(c->opts, c->real_url);
    if (s == NATS_OK) s = natsOptions_SetName(c->opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(c->opts, &hub->loop, natsLibuv_Attach, natsLibuv_Read,
                                     natsLibuv_Write, natsLibuv_Detach);
    /* for ever, quickly: a restarted server is found within about half a second */
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(c->opts, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(c->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(c->opts, 250);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(c->opts, 100, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(c->opts, (int)(cfg->nats_reconnect_buffer > INT32_MAX
                                                               ? INT32_MAX
                                                               : cfg->nats_reconnect_buffer));
    /* a hub never needs its own messages back */
    if (s == NATS_OK) s = natsOptions_SetNoEcho(c->opts, true);
    if (s == NATS_OK) s = natsOptions_SetTimeout(c->opts, 2000);
    /* a server that vanished without closing the socket is noticed within ~10 s */
    if (s == NATS_OK) s = natsOptions_SetPingInterval(c->opts, 5000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(c->opts, 2);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(c->opts, on_disconnected, c);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(c->opts, on_reconnected, c);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(c->opts, on_closed, c);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(c->opts, on_error, c);
    if (s != NATS_OK) {
        snprintf(err, errlen, "--nats %s: %s", c->url, natsStatus_GetText(s));
        goto fail;
    }
    if (uv_timer_init(&hub->loop, &c->timer) != 0) {
        snprintf(err, errlen, "--nats: cannot create a timer");
        goto fail;
    }
    c->timer.data = c;
    uv_check_init(&hub->loop, &c->check); /* these two cannot fail (libuv: always 0) */
    uv_idle_init(&hub->loop, &c->idle);
    c->check.data = c->idle.data = c;
    c->timer_on = true;
    *out = c;
    return 0;
fail:
    natsOptions_Destroy(c->opts);
    uv_mutex_destroy(&c->mu);
    free(c);
    return -1;
}

void cluster_start(cluster_t *c) {
    natsLibuv_Init();
    natsLibuv_SetThreadLocalLoop(&c->hub->loop);
    uv_timer_start(&c->timer, on_tick, TICK_MS, TICK_MS);
    uv_check_start(&c->check, on_check);
    try_connect(c);
}

void cluster_stop(cluster_t *c) {
    if (c->stopping) return;
    c->stopping = true;
    if (c->timer_on) {
        uv_close((uv_handle_t *)&c->timer, NULL);
        uv_close((uv_handle_t *)&c->check, NULL);
        uv_close((uv_handle_t *)&c->idle, NULL);
    }
    c->timer_on = false;
    if (c->nc) {
        /* Close writes out what is buffered; a Flush would wait for a PONG that only this
         * loop could read */
        natsConnection_Close(c->nc); /* detaches from the loop (handles close in this run) */
    }
}

void cluster_free(cluster_t *c) {
    if (!c) return;
    natsSubscription_Destroy(c->sub);
    natsConnection_Destroy(c->nc);
    natsOptions_Destroy(c->opts);
    nats_CloseAndWait(2000); /* nats.c's threads are gone: none can call into c */
    for (uint32_t i = 0; i < c->npeers; i++) peer_drop_sources(&c->peers[i]);
    buf_free(&c->out);
    uv_mutex_destroy(&c->mu);
    free(c);
}
