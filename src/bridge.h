/* bridge — the messages hubs exchange through NATS, encoded and decoded. Pure: no sockets,
 * no clock (the caller passes times in), no hub state.
 *
 * Every message is one JSON object with a version and the publishing hub's id:
 *   {"v":1,"k":"event","hub":"A","oseq":120,"prev":118,"event":ENVELOPE[,"replay":true]}
 *       an event published on A: its seq on A (oseq) and the oseq of A's previous own
 *       event (prev, 0: unknown), so a receiver can tell a gap from a duplicate; "replay"
 *       marks A's answer to a replay request (the receiver takes it even after a gap:
 *       what A no longer retains is lost for good);
 *   {"v":1,"k":"samples","hub":"A","d":[DELTA,...]}
 *       what A merged from its own ingest in one batch (counters as increments, gauges as
 *       absolute value and/or delta, timers as sketches, sets as member hashes):
 *         ["c",name,{labels},nlines,inc,total|null]
 *         ["g",name,{labels},nlines,abs|null,delta]
 *         ["t",name,{labels},nlines,count,sum,min,max,zero,POS,NEG]
 *           with each sketch store as [offset,length,[index,count,...]] (buckets in use)
 *         ["s",name,{labels},nlines,["16 hex digits",...]]
 *   {"v":1,"k":"sources","hub":"A","at":unix,"last":N,"sources":[{id,connected_at,
 *       last_seen,session_id,attrs},...]}
 *       A's online sources (a heartbeat: A is alive; also sent at once on a change) and
 *       the oseq of A's newest own event sent (last), so a hub that missed some asks;
 *   {"v":1,"k":"replay","hub":"B","to":"A","after":N}
 *       B asks A for A's own events with oseq > N (A answers on B's replay subject).
 * See docs/PROTOCOL.md ("Scale-out") for the subjects.
 *
 * Messages come from the network and are untrusted: bridge_decode checks every field
 * (size, version, types, names, finite numbers, bounds) and refuses the whole message on
 * the first fault, with a reason to count. */
#ifndef MC_BRIDGE_H
#define MC_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "buf.h"
#include "cursor.h"
#include "event.h"
#include "sources.h"

#define BRIDGE_VERSION 1
/* Larger messages are refused on receipt (and never sent: a batch is split before). The
 * default NATS max_payload is 1 MiB. */
#define BRIDGE_MAX_BYTES (1024 * 1024)
/* Deltas per samples message: a bigger batch goes out as several messages. */
#define BRIDGE_MAX_DELTAS 2000
#define BRIDGE_MAX_SOURCES 10000
#define BRIDGE_MAX_MEMBERS 100000
#define BRIDGE_MAX_BUCKETS 4096

typedef enum {
    BRIDGE_EVENT = 1,
    BRIDGE_SAMPLES,
    BRIDGE_SOURCES,
    BRIDGE_REPLAY,
} bridge_kind_t;

/* Why a message was refused (metricast_nats_failed_total{reason}). */
typedef enum {
    BRIDGE_OK = 0,
    BRIDGE_E_TOO_LARGE,
    BRIDGE_E_JSON,    /* not JSON, not an object */
    BRIDGE_E_VERSION, /* v missing or not ours */
    BRIDGE_E_FIELD,   /* a field missing, of the wrong type or out of bounds */
    BRIDGE_E_NOMEM,
    BRIDGE_E_COUNT
} bridge_err_t;
const char *bridge_err_name(bridge_err_t e);

typedef struct bridge_source {
    char id[SOURCE_ID_MAX + 1];
    char session_id[40];
    double connected_at, last_seen;
    char *attrs; /* JSON object text, owned */
} bridge_source_t;

typedef struct bridge_msg {
    bridge_kind_t kind;
    char hub[HUB_ID_MAX + 1];
    /* BRIDGE_EVENT */
    uint64_t oseq, prev;
    bool replay;
    event_t *event; /* one reference, unsealed (seq 0) */
    /* BRIDGE_SAMPLES: built by hand (arena NULL), transport INGEST_UDP (unused) */
    agg_batch_t *batch;
    /* BRIDGE_SOURCES */
    double at;
    uint64_t last; /* 0: not said */
    uint32_t nsources;
    bridge_source_t *sources; /* owned array */
    /* BRIDGE_REPLAY */
    char to[HUB_ID_MAX + 1];
    uint64_t after;
} bridge_msg_t;

/* Encoders append one message to out. 0 or -ENOMEM. */
int bridge_encode_event(const char *hub, uint64_t oseq, uint64_t prev, bool replay,
                        const event_t *e, buf_t *out);
/* Deltas d[from..) of b, as many as fit BRIDGE_MAX_DELTAS (and about BRIDGE_MAX_BYTES / 2);
 * *next is where the next message starts (b->n when all went). Deltas whose values are not
 * finite are left out (a NaN gauge is a local staleness marker). */
int bridge_encode_samples(const char *hub, const agg_batch_t *b, uint32_t from, uint32_t *next,
                          buf_t *out);
/* The online sources of s that are not built in (the host source is per machine). */
int bridge_encode_sources(const char *hub, const sources_t *s, double now, uint64_t last,
                          buf_t *out);
int bridge_encode_replay(const char *hub, const char *to, uint64_t after, buf_t *out);

/* Decodes one message. On BRIDGE_OK *out holds what it carries (free it with
 * bridge_msg_free); otherwise *out holds nothing and err says why (for the log). now and
 * rnd6 as event_prepare takes them (a complete envelope keeps its own id and time). */
bridge_err_t bridge_decode(const char *data, size_t len, double now, bridge_msg_t *out,
                           char *err, size_t errlen);
void bridge_msg_free(bridge_msg_t *m);

#endif
