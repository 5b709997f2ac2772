/* ws — the WebSocket side of a connection (RFC 6455), on wslay.
 *
 * wslay parses client frames (masking, fragmentation, control frames, UTF-8, size limit)
 * and answers pings and closes. Data frames from the server do not go through wslay:
 * they are encoded once into shared frames (ws_frame_text) and queued on the connection
 * directly, because one encoded frame may go to thousands of subscribers — server frames
 * are unmasked, so the bytes are the same for all of them.
 *
 * Client text messages go to ws_msg.c. All calls run on the connection's worker thread. */
#ifndef MC_WS_H
#define MC_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct conn;
struct http_req;

#define WS_ACCEPT_LEN 29 /* base64(SHA-1) = 28 chars + NUL */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011
/* A client that causes this many error answers within WS_ABUSE_WINDOW_MS is closed. */
#define WS_ABUSE_LIMIT 10
#define WS_ABUSE_WINDOW_MS 10000

/* Route handler for GET /ws: validates the handshake, answers 101 and turns the
 * connection into a WebSocket, or answers 400/426. */
void ws_handshake(struct http_req *r);

/* Sec-WebSocket-Accept for a client key. 0, or -EINVAL if key is not 16 base64 bytes. */
int ws_accept_key(const char *key, char out[WS_ACCEPT_LEN]);

/* Encodes a server frame header (FIN set, no mask) into out; returns its length (2-10). */
size_t ws_frame_header(uint8_t out[10], uint8_t opcode, size_t payload_len);
/* A complete text frame with a copy of payload, one reference, shareable; NULL on ENOMEM. */
frame_t *ws_frame_text(const void *payload, size_t len, uint32_t flags);

/* Queues a text message on c. Dropped (-EPIPE) once a close was queued. Control-class:
 * never dropped by backpressure (answers, errors, status). */
int ws_send_text(struct conn *c, const void *payload, size_t len);
/* Queues a shared frame from ws_frame_text; takes over one reference. Control-class. */
int ws_send_frame(struct conn *c, frame_t *f);

/* Backpressure states of a subscriber's outbound queue (see ws_enqueue). */
typedef enum { WS_STREAMING = 0, WS_BUFFERING, WS_OVERLOADED } ws_flow_t;
const char *ws_flow_name(ws_flow_t s);

/* Queues a broadcast frame (metrics:update, FRAME_CONFLATE; or FRAME_DROPPABLE) under the
 * connection's queue limits. When the queue is full: a newer metrics:update replaces the
 * unsent older ones (conflation: the subscriber is then owed a full snapshot, see
 * ws_msg_metrics_gap), then the oldest droppable frames go, then the new frame itself if
 * it is droppable. Every drop is counted. Crossing 0.85 / 0.95 of the limits sends one
 * `status` message (buffering / overloaded); falling under 0.70 sends `streaming`.
 * The write happens at the end of the worker's loop pass (worker_flush_later), batched
 * with everything else queued for c in that pass. Takes over one reference to f. */
int ws_enqueue(struct conn *c, frame_t *f);
/* Queues an event frame: never dropped. Makes room the way ws_enqueue does (conflating
 * updates, dropping droppable frames); if the queue is still full, returns -ENOBUFS
 * without queueing (the reference is released) and the caller owes the subscriber a
 * replay from its last event (ws_msg.c). */
int ws_enqueue_event(struct conn *c, frame_t *f);
/* conn.c: a write finished; re-evaluates the flow state. */
void ws_on_drain(struct conn *c);
/* Fill ratio of c's outbound queue: max(messages, bytes) against the limits. */
double ws_fill_ratio(const struct conn *c);
ws_flow_t ws_flow(const struct conn *c);
uint64_t ws_dropped(const struct conn *c);
const char *ws_session_id(const struct conn *c);

/* Starts the closing handshake with code and reason; the TCP connection closes when the
 * peer answers or after a short timeout. Idempotent. */
void ws_close(struct conn *c, uint16_t code, const char *reason);

/* A client message was rejected with an error answer: counts it, and closes the
 * connection with 1008 when the client keeps misbehaving. */
void ws_bad_message(struct conn *c);

void ws_on_data(struct conn *c, const uint8_t *data, size_t len);
void ws_sweep(struct conn *c, uint64_t now_ms);
void ws_detach(struct conn *c);

#endif
