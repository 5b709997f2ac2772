/* statsd_load — the StatsD load of bench_statsd_ingest (over UDP) and bench_statsd_fold
 * (in-process), built the same way for both so their numbers describe the same lines.
 *
 * A pool of STATSD_POOL_DGRAMS datagrams of at most dgram_bytes bytes, from `names`
 * distinct metric names whose kind is fixed by the name (50 % counters, half of those
 * lines with `|@0.5`; 25 % gauges; 20 % timers `|ms`; 5 % sets); a third of the names
 * always carry `|#source:hostNN`, so the load is exactly `names` series. Every line ends
 * with '\n'. The generator is a fixed xorshift, so the pool is the same on every run. */
#ifndef METRICAST_BENCH_STATSD_LOAD_H
#define METRICAST_BENCH_STATSD_LOAD_H

#include <stdint.h>
#include <sys/uio.h>

#define STATSD_POOL_DGRAMS 4096

typedef struct {
    char *data; /* owned; STATSD_POOL_DGRAMS * dgram_bytes bytes */
    struct iovec iov[STATSD_POOL_DGRAMS];
    uint32_t lines[STATSD_POOL_DGRAMS];
    uint64_t total_lines, total_bytes;
    uint64_t kind_lines[4]; /* counter, gauge, timer, set */
    uint64_t tagged, rated;
} statsd_pool_t;

/* Fills *p (0), or -1 when out of memory. */
int statsd_pool_build(statsd_pool_t *p, int names, int dgram_bytes);
void statsd_pool_free(statsd_pool_t *p);

#endif
