/* ws_msg — the JSON message protocol spoken over /ws (docs/PROTOCOL.md).
 *
 * Parses client messages (jansson), answers them, and keeps each connection's protocol
 * state (its subscriptions; later its source session). Bad messages get an `error`
 * message and count towards the abuse limit (ws_bad_message); the connection stays.
 *
 * Topics are looked up in the topic table (ws_msg_topic_known); a topic nobody serves is
 * answered with error `unknown_topic`. */
#ifndef MC_WS_MSG_H
#define MC_WS_MSG_H

#include <stdbool.h>
#include <stddef.h>

struct conn;

/* Called once the upgrade is done; query is the /ws URL's query string (topics=, ...).
 * 0 or -ENOMEM. */
int ws_msg_open(struct conn *c, const char *query);
/* Handles one complete text message (borrowed). */
void ws_msg_handle(struct conn *c, const char *msg, size_t len);
/* Sends {"type":"error","error":error,"detail":detail} and counts a bad message. */
void ws_msg_error(struct conn *c, const char *error, const char *detail);
/* Frees the connection's protocol state. */
void ws_msg_close(struct conn *c);

/* Whether a topic name (or event-type pattern) is served by this hub. */
bool ws_msg_topic_known(const char *topic);

#endif
