/* ws_conn — one client WebSocket connection over a non-blocking socket: the opening
 * handshake (blocking, with a deadline), then reads through wslay (which validates the
 * server's frames and answers pings and close) and writes through one output buffer
 * that holds our own masked text frames and wslay's control frames in order.
 *
 * Not thread-safe: one thread drives a connection. Used by the public metricast_ws_*
 * (blocking) and by each source session's thread (poll loop). */
#ifndef MCL_WS_CONN_H
#define MCL_WS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "url.h"

typedef struct mcl_ws mcl_ws_t;

/* A complete text message from the server; text is NUL-terminated, valid during the
 * call. */
typedef void (*mcl_ws_text_fn)(void *ud, const char *text, size_t len);

/* Connects to u, sends the upgrade for target (see metricast__url_ws_target) and checks
 * the answer, all before deadline_ms; abort_fd (or -1) interrupts with -ECANCELED.
 * *out is owned by the caller (metricast__ws_free). 0 or a negative errno with err set. */
int metricast__ws_connect(mcl_ws_t **out, const mcl_url_t *u, const char *target,
                          const char *token, int64_t deadline_ms, int abort_fd, char *err,
                          size_t errlen);
void metricast__ws_on_text(mcl_ws_t *c, mcl_ws_text_fn fn, void *ud);
int metricast__ws_fd(const mcl_ws_t *c);

/* Appends one masked text frame to the output (nothing is written yet). `counted` marks
 * it as a data message for metricast__ws_unsent_counted. 0, -EPIPE (a close was sent or
 * received: no more data), -ENOMEM. */
int metricast__ws_text(mcl_ws_t *c, const char *data, size_t len, int counted);
/* Queues a close frame (code, reason up to 123 bytes). 0 or -EPIPE if already closing. */
int metricast__ws_close_frame(mcl_ws_t *c, uint16_t code, const char *reason);
/* Reads what the socket has, delivering complete text messages. 0 while the connection
 * is usable; -ECONNRESET once it has ended (EOF, or a close frame arrived — the reply is
 * then queued and should still be written), -EPROTO (a frame wslay refused), -ENOMEM. */
int metricast__ws_read(mcl_ws_t *c);
/* Bytes received with the handshake and not yet read: call metricast__ws_read before
 * waiting on the socket, which will not report them. */
int metricast__ws_buffered(const mcl_ws_t *c);
/* Writes as much of the output as the socket takes now. 0, or a negative errno when the
 * socket is broken. */
int metricast__ws_write(mcl_ws_t *c);
/* Bytes of output not yet written. */
size_t metricast__ws_unwritten(const mcl_ws_t *c);
/* Counted frames not yet completely written (lost if the connection ends now). */
size_t metricast__ws_unsent_counted(const mcl_ws_t *c);
/* Whether a close frame has been received / sent (written out completely). */
int metricast__ws_close_received(const mcl_ws_t *c);
int metricast__ws_close_sent(const mcl_ws_t *c);
/* The server's close frame: code (0 if none) and reason. */
uint16_t metricast__ws_close_code(const mcl_ws_t *c, const char **reason);
/* The monotonic ms time of the last byte received. */
int64_t metricast__ws_last_rx(const mcl_ws_t *c);
/* Closes the socket and frees c (NULL is a no-op). */
void metricast__ws_free(mcl_ws_t *c);

#endif
