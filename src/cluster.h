/* cluster — this hub's link to the other hubs through NATS (--nats URL).
 *
 * One nats.c connection, driven by the hub thread's libuv loop through nats.c's libuv
 * adapter: the hub thread owns the registry, the event log and the sources, which is
 * everything the bridge reads and writes, so no other thread is involved in bridging.
 * The loop reads the socket (the adapter's poll handle) and drains the one synchronous
 * subscription in its check phase, so received messages are decoded and applied on the
 * hub thread in arrival order, without a thread hop. nats.c still runs threads of its
 * own for connection callbacks and reconnecting; they only touch atomics and the status
 * (under a mutex).
 *
 * What goes out (docs/PROTOCOL.md, "Scale-out" has the subjects; bridge.h the bodies):
 *   - every event published on this hub, once it is on disk (remote events are never
 *     re-published: no loops);
 *   - every ingest batch this hub merges (StatsD, HTTP, WebSocket sources; not the host
 *     source, which describes this machine);
 *   - its online sources, every second and at once on a change (the heartbeat).
 * What comes in is applied as if it had been ingested or published here, marked with its
 * origin (events keep their origin and origin seq, see cursor.h).
 *
 * NATS away: the first connection is attempted once the server accepts TCP (a probe on
 * the loop, so the hub never blocks on an unreachable address), then nats.c reconnects
 * by itself, for ever, keeping what is published meanwhile up to [nats] reconnect_buffer.
 * Local service never depends on NATS; health reports the link as degraded. */
#ifndef MC_CLUSTER_H
#define MC_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "buf.h"
#include "cursor.h"
#include "event.h"
#include "sources.h"

struct hub;
struct config;

/* Why a message was not bridged (metricast_nats_failed_total{reason}): the decoder's
 * reasons first (bridge_err_t order), then the link's. */
enum {
    CLUSTER_F_TOO_LARGE = 0,
    CLUSTER_F_BAD_JSON,
    CLUSTER_F_BAD_VERSION,
    CLUSTER_F_BAD_FIELD,
    CLUSTER_F_NO_MEMORY,
    CLUSTER_F_PUBLISH,       /* nats.c refused to publish (reconnect buffer full, closed) */
    CLUSTER_F_NOT_CONNECTED, /* NATS never reached yet: nothing to buffer into */
    CLUSTER_F_SLOW_CONSUMER, /* nats.c dropped messages this hub did not take fast enough */
    CLUSTER_F_DUPLICATE,     /* an event already in the log (same origin and oseq) */
    CLUSTER_F_GAP,           /* events of an origin that never arrived (oseq skipped) */
    CLUSTER_F_COUNT
};
const char *cluster_fail_name(int reason);

typedef struct cluster_stats {
    _Atomic uint64_t in, out; /* messages bridged in (applied) and out (published) */
    _Atomic uint64_t failed[CLUSTER_F_COUNT];
    _Atomic uint64_t reconnects;
    _Atomic int connected;
    _Atomic uint32_t peers; /* other hubs heard from within [nats] hub_timeout */
} cluster_stats_t;

typedef struct cluster cluster_t;

/* Hub thread. Prepares the link (nothing connects yet). 0, or -1 with err filled. The
 * hub outlives the cluster. */
int cluster_open(cluster_t **out, struct hub *hub, const struct config *cfg, const char *hub_id,
                 char *err, size_t errlen);
/* Hub thread, from hub_run: starts connecting and the 1 s timer. */
void cluster_start(cluster_t *c);
/* Hub thread, while the loop still runs (the stop): closes the connection and the timer. */
void cluster_stop(cluster_t *c);
/* After the hub loop ended: frees everything, waits for nats.c's threads. NULL allowed. */
void cluster_free(cluster_t *c);

/* Hub thread: an event of this hub is on disk (borrowed). */
void cluster_publish_event(cluster_t *c, const event_t *e);
/* Hub thread: a batch of this hub's ingest was merged (borrowed). */
void cluster_publish_batch(cluster_t *c, const agg_batch_t *b);
/* Hub thread: a local source came online or went offline. */
void cluster_sources_changed(cluster_t *c);
/* Hub thread: /api/v1/sources for the whole cluster — local sources (hub = this one)
 * and the ones the other hubs announced, one entry per id (an online one wins, then the
 * most recent connection). */
int cluster_sources_json(cluster_t *c, const sources_t *local, buf_t *b);

/* Hub thread: the id of another hub that holds source id online (borrowed), or NULL. */
const char *cluster_source_holder(const cluster_t *c, const char *id);

cluster_stats_t *cluster_stats(cluster_t *c);
/* Any thread: whether the link is up, and a sentence for health. */
bool cluster_health(cluster_t *c, char *detail, size_t len);

/* The default hub id: "<hostname>-<port>", sanitised to [A-Za-z0-9_-], at most 64. */
void cluster_default_id(int port, char out[HUB_ID_MAX + 1]);

#endif
