/* ingest_udp — StatsD over UDP: one receiving thread per core, each with its own socket
 * on the same port (SO_REUSEPORT spreads datagrams over them), recvmmsg in batches, lines
 * parsed and folded into the thread's own agg_t, which is handed to the hub as a batch
 * every flush interval. The thread never waits for the hub: when the hub has too many
 * batches pending, the thread keeps aggregating into its table (no sample is lost, they
 * just arrive merged) and hands over later.
 *
 * Kernel drops (receive queue full) are read from SO_RXQ_OVFL and counted as
 * dropped{reason="udp_buffer"}; the receive buffer is sized by `[statsd] rcvbuf`. */
#ifndef MC_INGEST_UDP_H
#define MC_INGEST_UDP_H

#include <stdatomic.h>
#include <stddef.h>

#include "agg.h"
#include "config.h"
#include "ingest_stats.h"

/* Receives each batch (ownership passes). Called on an ingest thread; must not block. */
typedef int (*ingest_sink_fn)(void *ctx, agg_batch_t *b);

typedef struct ingest_udp ingest_udp_t;

/* Binds `threads` sockets to addr (port 0: one free port for all) and fills actual with
 * the bound address. -errno on failure with err filled (names the setting). */
int ingest_udp_open(ingest_udp_t **out, const cfg_addr_t *addr, int threads, size_t rcvbuf,
                    double flush_interval, ingest_stats_t *stats, _Atomic int *pending,
                    int max_pending, ingest_sink_fn sink, void *sink_ctx, char *actual,
                    size_t actual_len, char *err, size_t errlen);
/* Accepts datagrams only from these networks (netacl.h syntax; empty: from anyone);
 * others are dropped unread and counted as dropped{reason="not_allowed"}. Before
 * ingest_udp_start. 0, or -EINVAL / -ENOMEM with err filled. */
int ingest_udp_set_allow(ingest_udp_t *u, const char *networks, char *err, size_t errlen);
int ingest_udp_start(ingest_udp_t *u);
/* Stops the threads (each finishes its current batch and hands it over), joins, frees. */
void ingest_udp_close(ingest_udp_t *u);

#endif
