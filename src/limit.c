#include "limit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

const char *limit_name(int l) {
    static const char *const names[LIMIT_COUNT] = {
        "connections",         "connections_per_ip", "connection_rate_per_ip",
        "http_header_bytes",   "http_body_bytes",    "http_header_timeout",
        "http_body_timeout",   "http_idle_timeout",  "ws_message_bytes",
        "ws_subscriptions",    "ws_idle_timeout",    "ws_overload",
        "ws_bad_messages",     "series",             "sources",
        "tls_handshake_timeout"};
    return l >= 0 && l < LIMIT_COUNT ? names[l] : "unknown";
}

/* One client address: its open connections and its token bucket for new ones. */
struct ipl_entry {
    ipl_entry_t *next;
    ipl_addr_t addr;
    uint32_t open;
    double tokens;    /* new connections it may still open right now */
    uint64_t last_ms; /* when tokens was last refilled */
};

void ipl_addr_from(ipl_addr_t *out, const struct sockaddr *sa) {
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

int iplimits_init(iplimits_t *t, int64_t max_total, int per_ip, int rate) {
    memset(t, 0, sizeof *t);
    atomic_init(&t->open, 0);
    t->max_total = max_total;
    t->per_ip = per_ip;
    t->rate = rate;
    return uv_mutex_init(&t->mu);
}

void iplimits_free(iplimits_t *t) {
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        for (ipl_entry_t *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->n = 0;
    uv_mutex_destroy(&t->mu);
}

static uint32_t slot_of(const iplimits_t *t, const ipl_addr_t *a) {
    return (uint32_t)hash_bytes(a->b, sizeof a->b, 7) & (t->nbuckets - 1);
}

/* Brings e's bucket up to now; returns whether it is full (an idle address). */
static bool refill(const iplimits_t *t, ipl_entry_t *e, uint64_t now_ms) {
    if (!t->rate) return true;
    if (now_ms > e->last_ms) {
        e->tokens += (double)(now_ms - e->last_ms) * t->rate / 1000.0;
        if (e->tokens > t->rate) e->tokens = t->rate;
        e->last_ms = now_ms;
    }
    return e->tokens >= t->rate;
}

/* Drops entries that hold nothing: no open connection and a full bucket. */
static void purge(iplimits_t *t, uint64_t now_ms) {
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        ipl_entry_t **pp = &t->buckets[i];
        while (*pp) {
            ipl_entry_t *e = *pp;
            if (e->open == 0 && refill(t, e, now_ms)) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static int grow(iplimits_t *t) {
    uint32_t ncap = t->nbuckets ? t->nbuckets * 2 : 256;
    ipl_entry_t **nb = calloc(ncap, sizeof *nb);
    if (!nb) return -ENOMEM;
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        for (ipl_entry_t *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            uint32_t j = (uint32_t)hash_bytes(e->addr.b, sizeof e->addr.b, 7) & (ncap - 1);
            e->next = nb[j];
            nb[j] = e;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = ncap;
    return 0;
}

static ipl_entry_t *find(iplimits_t *t, const ipl_addr_t *a) {
    if (!t->nbuckets) return NULL;
    for (ipl_entry_t *e = t->buckets[slot_of(t, a)]; e; e = e->next)
        if (memcmp(e->addr.b, a->b, sizeof a->b) == 0) return e;
    return NULL;
}

int iplimits_admit(iplimits_t *t, const ipl_addr_t *addr, uint64_t now_ms) {
    int64_t open = atomic_fetch_add_explicit(&t->open, 1, memory_order_relaxed) + 1;
    if (t->max_total && open > t->max_total) {
        atomic_fetch_sub_explicit(&t->open, 1, memory_order_relaxed);
        return LIMIT_CONNECTIONS;
    }
    if (!t->per_ip && !t->rate) return -1;
    int verdict = -1;
    uv_mutex_lock(&t->mu);
    ipl_entry_t *e = find(t, addr);
    if (!e) {
        /* the table holds addresses with open connections or a bucket still refilling:
         * before it doubles, forget the ones that hold neither */
        if (t->n >= t->nbuckets) purge(t, now_ms);
        e = (t->n < t->nbuckets || grow(t) == 0) ? calloc(1, sizeof *e) : NULL;
        if (e) {
            e->addr = *addr;
            e->tokens = t->rate;
            e->last_ms = now_ms;
            uint32_t j = slot_of(t, addr);
            e->next = t->buckets[j];
            t->buckets[j] = e;
            t->n++;
        }
    }
    if (!e) {
        verdict = LIMIT_CONNECTIONS; /* out of memory: refuse rather than grow unbounded */
    } else {
        refill(t, e, now_ms);
        if (t->rate && e->tokens < 1.0)
            verdict = LIMIT_CONNECTION_RATE;
        else if (t->per_ip && e->open >= (uint32_t)t->per_ip)
            verdict = LIMIT_CONNECTIONS_PER_IP;
        if (verdict < 0) {
            if (t->rate) e->tokens -= 1.0;
            e->open++;
        }
    }
    uv_mutex_unlock(&t->mu);
    if (verdict >= 0) atomic_fetch_sub_explicit(&t->open, 1, memory_order_relaxed);
    return verdict;
}

void iplimits_release(iplimits_t *t, const ipl_addr_t *addr) {
    atomic_fetch_sub_explicit(&t->open, 1, memory_order_relaxed);
    if (!t->per_ip && !t->rate) return;
    uv_mutex_lock(&t->mu);
    ipl_entry_t *e = find(t, addr);
    if (e && e->open) e->open--;
    uv_mutex_unlock(&t->mu);
}
