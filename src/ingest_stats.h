/* ingest_stats — ingest counters every thread updates and /metrics, /api/v1/summary read.
 * Atomics with relaxed ordering: each is an independent monotonic count. */
#ifndef MC_INGEST_STATS_H
#define MC_INGEST_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "agg.h"
#include "registry.h"

/* not_allowed: StatsD datagrams from outside [statsd] allow_from (counted per datagram,
 * like udp_buffer, since they are never read) */
typedef enum { DROP_UDP_BUFFER = 0, DROP_SOURCE_SHED, DROP_NOT_ALLOWED, DROP_REASON_COUNT } drop_reason_t;

typedef struct ingest_stats {
    _Atomic uint64_t lines[INGEST_TRANSPORT_COUNT]; /* samples merged into the registry */
    _Atomic uint64_t rejected[REJECT_REASON_COUNT]; /* samples refused, by reason */
    _Atomic uint64_t dropped[DROP_REASON_COUNT];    /* samples lost before parsing */
    _Atomic uint64_t datagrams;
    _Atomic uint64_t udp_bytes;
} ingest_stats_t;

static inline const char *drop_reason_name(int r) {
    return r == DROP_UDP_BUFFER    ? "udp_buffer"
           : r == DROP_SOURCE_SHED ? "source_shed"
           : r == DROP_NOT_ALLOWED ? "not_allowed"
                                   : "unknown";
}

#endif
