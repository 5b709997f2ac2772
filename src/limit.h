/* limit — the hub's resource limits: what counts when one is hit, and the admission of
 * new connections (total, per client address, new ones per second per address).
 *
 * Every limit is a setting (docs/CONFIG.md) and every hit is counted in
 * metricast_limit_hits_total{limit="..."} and answered with a clear error: an HTTP status
 * with a JSON error, or a WebSocket error message or close code (docs/SECURITY.md).
 *
 * The connection table is shared by the workers (any of them may accept a connection):
 * the total is an atomic; the per-address counts and rate buckets sit behind a mutex
 * that only accept and close take, and only when a per-address limit is set. */
#ifndef MC_LIMIT_H
#define MC_LIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sockaddr;

typedef enum {
    LIMIT_CONNECTIONS = 0,       /* [server] max_connections: 503 */
    LIMIT_CONNECTIONS_PER_IP,    /* [server] max_connections_per_ip: 429 */
    LIMIT_CONNECTION_RATE,       /* [server] max_connection_rate_per_ip: 429 */
    LIMIT_HTTP_HEADER_BYTES,     /* [http] max_header_bytes: 431 */
    LIMIT_HTTP_BODY_BYTES,       /* [http] max_body_bytes: 413 */
    LIMIT_HTTP_HEADER_TIMEOUT,   /* [http] header_timeout (slowloris): 408 */
    LIMIT_HTTP_BODY_TIMEOUT,     /* [http] idle_timeout, a stalled body: 408 */
    LIMIT_HTTP_IDLE_TIMEOUT,     /* [http] idle_timeout, an idle keep-alive: closed */
    LIMIT_WS_MESSAGE_BYTES,      /* [ws] max_message_bytes: close 1009 */
    LIMIT_WS_SUBSCRIPTIONS,      /* [ws] max_subscriptions: error too_many_subscriptions */
    LIMIT_WS_IDLE_TIMEOUT,       /* [ws] idle_timeout: close 1001 */
    LIMIT_WS_OVERLOAD,           /* [ws] overload_timeout: close 1008 */
    LIMIT_WS_BAD_MESSAGES,       /* 10 bad messages in 10 s: close 1008 */
    LIMIT_SERIES,                /* [series] max_series (counted by the registry) */
    LIMIT_SOURCES,               /* [sources] max_sources: error too_many_sources, 1008 */
    LIMIT_TLS_HANDSHAKE_TIMEOUT, /* [http] header_timeout over a TLS handshake: closed */
    LIMIT_COUNT
} limit_t;

typedef struct limit_stats {
    _Atomic uint64_t hits[LIMIT_COUNT];
} limit_stats_t;

const char *limit_name(int l);

static inline void limit_hit(limit_stats_t *s, limit_t l) {
    atomic_fetch_add_explicit(&s->hits[l], 1, memory_order_relaxed);
}

/* ---- connection admission ------------------------------------------------------------ */

typedef struct ipl_entry ipl_entry_t;

typedef struct iplimits {
    _Atomic int64_t open; /* admitted, not yet released */
    int64_t max_total;    /* 0: no limit */
    int per_ip;           /* 0: no limit */
    int rate;             /* new connections per second per address; 0: no limit */
    uv_mutex_t mu;        /* guards the table below */
    ipl_entry_t **buckets;
    uint32_t nbuckets, n;
} iplimits_t;

/* 0 or a negative UV error. */
int iplimits_init(iplimits_t *t, int64_t max_total, int per_ip, int rate);
void iplimits_free(iplimits_t *t);

/* A client address as the table keys it: 16 bytes, IPv4 in the mapped IPv6 form. */
typedef struct ipl_addr {
    uint8_t b[16];
} ipl_addr_t;
void ipl_addr_from(ipl_addr_t *out, const struct sockaddr *sa);

/* Admits a new connection from addr at now_ms: -1 when admitted (release it later with
 * iplimits_release), else the limit_t it hit (nothing to release then). Any thread. */
int iplimits_admit(iplimits_t *t, const ipl_addr_t *addr, uint64_t now_ms);
void iplimits_release(iplimits_t *t, const ipl_addr_t *addr);

#endif
