/* ws_proto — the pure parts of an RFC 6455 client: the opening handshake's key and its
 * expected Sec-WebSocket-Accept (libcrypto SHA-1 + base64), the upgrade request, the
 * check of the server's answer, and masked client frames. No sockets, no clock: the
 * caller supplies the random bytes. */
#ifndef MCL_WS_PROTO_H
#define MCL_WS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "http_resp.h"
#include "sbuf.h"

#define MCL_WS_KEY_LEN 24    /* base64 of 16 bytes */
#define MCL_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */
#define MCL_WS_MAX_HEADER 14 /* 2 + 8 (length) + 4 (mask) */

enum { MCL_WS_OP_TEXT = 0x1, MCL_WS_OP_CLOSE = 0x8, MCL_WS_OP_PING = 0x9, MCL_WS_OP_PONG = 0xA };

/* Sec-WebSocket-Key from 16 random bytes. */
void metricast__ws_key(const uint8_t nonce[16], char key[MCL_WS_KEY_LEN + 1]);
/* The Sec-WebSocket-Accept a server must answer for key: base64(SHA-1(key + GUID)).
 * 0, or -ENOMEM/-EINVAL when libcrypto fails. */
int metricast__ws_accept(const char *key, char accept[MCL_WS_ACCEPT_LEN + 1]);

/* Appends the GET upgrade request for target ("/ws?..."), with Host, the key and, when
 * token is set, Authorization: Bearer. */
void metricast__ws_request(mcl_sbuf_t *out, const char *hostport, const char *target,
                           const char *key, const char *token);

/* Judges the server's answer to the upgrade: 0 for a 101 with Upgrade: websocket,
 * Connection: upgrade and the right Accept; -EACCES for 401, -EPERM for 403, -EPROTO for
 * anything else. err (may be NULL) says what was wrong. */
int metricast__ws_check_response(const mcl_http_head_t *h, const char *key, char *err,
                                 size_t errlen);

/* Writes one final (FIN) masked frame: header, mask, masked payload. out must have room
 * for MCL_WS_MAX_HEADER + len bytes. Returns the bytes written. */
size_t metricast__ws_frame(uint8_t opcode, const uint8_t mask[4], const void *payload,
                           size_t len, uint8_t *out);

#endif
