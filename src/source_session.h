/* source_session — a WebSocket connection that is a source (a robot, a streaming
 * session, a service): `/ws?source=ID` or a `hello` message.
 *
 * Its samples (JSON `sample` messages, StatsD text frames) and `client_metrics` go into
 * the session's inbound queue and are folded, a bounded number per loop pass and session,
 * into the session's own aggregation table, handed to the hub every 100 ms like a StatsD
 * thread's: one flooding source cannot starve the others or the loop. Above 0.85 of the
 * queue's limits the source is told `backpressure` with retry_after_ms, under 0.70
 * `streaming` again; a full queue sheds the oldest samples, counted.
 *
 * Once a second every source session gets its own `metrics` message (queue depth, fill,
 * processing time, backlog, real-time factor, received, dropped, attrs). Worker thread. */
#ifndef MC_SOURCE_SESSION_H
#define MC_SOURCE_SESSION_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct worker;

typedef enum { SRC_MSG_SAMPLE = 0, SRC_MSG_STATSD, SRC_MSG_CLIENT_METRICS } src_msg_kind_t;

/* Makes c a source session for id (validated by the caller) with attrs (a JSON object
 * text, or NULL). 0, -EEXIST (already a source session), or -ENOMEM. */
int srcs_start(struct conn *c, const char *id, const char *attrs);
bool srcs_is_source(const struct conn *c);
/* Queues one message for folding (copied). */
void srcs_enqueue(struct conn *c, src_msg_kind_t kind, const char *msg, size_t len);
/* The connection is going away: folds what is queued, hands it over, goes offline with
 * the reason (client_disconnect, timeout, protocol_error, overloaded, server_shutdown). */
void srcs_end(struct conn *c, const char *reason);

/* client_metrics from a connection that is not a source: stored at once as gauges
 * labelled client=<session id>. */
void srcs_client_metrics(struct conn *c, const char *msg, size_t len);

/* Worker: timers and processing. */
int srcs_worker_init(struct worker *w);
void srcs_worker_close(struct worker *w);

#endif
