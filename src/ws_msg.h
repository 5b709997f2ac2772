/* ws_msg — the JSON message protocol spoken over /ws (docs/PROTOCOL.md).
 *
 * Parses client messages (jansson), answers them, and keeps each connection's protocol
 * state (struct ws_session: its topics, its live-metrics filter and group; later its
 * source session). Bad messages get an `error` message and count towards the abuse
 * limit (ws_bad_message); the connection stays.
 *
 * Live metrics: subscribing to `metrics` asks the hub (hub_call) to join the group of
 * that filter; the hub answers with the group id and a full snapshot, which is the
 * subscriber's first metrics:update. From then on the worker delivers the group's
 * frames (ws_msg_deliver). Worker thread only. */
#ifndef MC_WS_MSG_H
#define MC_WS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct conn;

/* Called once the upgrade is done; query is the /ws URL's query string (topics=...).
 * 0 or -ENOMEM. */
int ws_msg_open(struct conn *c, const char *query);
/* Handles one complete text message (borrowed). */
void ws_msg_handle(struct conn *c, const char *msg, size_t len);
/* Sends {"type":"error","error":error,"detail":detail} and counts a bad message. */
void ws_msg_error(struct conn *c, const char *error, const char *detail);
/* Frees the connection's protocol state and leaves its group. */
void ws_msg_close(struct conn *c);

/* A push for group gid reached this subscriber (frames borrowed). Sends the full one
 * when the subscriber is owed a snapshot, else the delta. */
void ws_msg_deliver(struct conn *c, uint32_t gid, frame_t *delta, frame_t *full);
/* Updates were conflated or dropped: the next push should bring a full snapshot. */
void ws_msg_metrics_gap(struct conn *c);

struct event;
/* A published event reached this worker (borrowed): sends it if the connection's topics
 * match. Events are never dropped silently: one that does not fit the queue stops live
 * delivery, and once the queue drains the connection replays from its last event (or
 * gets `resync` when that fell out of the retained window). */
void ws_msg_deliver_event(struct conn *c, struct event *e);
/* The outbound queue drained below the recovery mark. */
void ws_msg_drained(struct conn *c);
/* After a policy reload re-pointed c->token: NULL when the connection may go on as it
 * is (its subscriptions and its source session are still within the token), else why
 * not (a static string, the close reason). */
const char *ws_msg_recheck(struct conn *c);

#endif
