/* http_resp — reading an HTTP/1.x response (the hub's REST answers and the WebSocket
 * upgrade answer) from bytes already received. Pure: no sockets, no clock.
 *
 * The head parser is re-run on the whole buffer as bytes arrive; heads are small (the
 * limit is MCL_HTTP_MAX_HEAD) so that costs nothing worth a state machine. */
#ifndef MCL_HTTP_RESP_H
#define MCL_HTTP_RESP_H

#include <stddef.h>

#include "sbuf.h"

#define MCL_HTTP_MAX_HEAD (32 * 1024)

typedef struct mcl_http_head {
    int status;               /* 100..999 */
    int minor;                /* HTTP/1.<minor> */
    long long content_length; /* -1: none */
    int chunked;              /* Transfer-Encoding ends in chunked */
    int conn_close;           /* Connection: close */
    int conn_upgrade;         /* Connection has the token upgrade */
    int upgrade_websocket;    /* Upgrade: websocket */
    char content_type[128];
    char ws_accept[64];       /* Sec-WebSocket-Accept */
    size_t head_len;          /* bytes up to and including the blank line */
} mcl_http_head_t;

/* 1: a complete head was parsed into h; 0: more bytes are needed; -EPROTO: not an HTTP
 * response, a malformed header, or no end of head within MCL_HTTP_MAX_HEAD bytes. */
int metricast__http_parse_head(const char *buf, size_t len, mcl_http_head_t *h);

/* Whether the answer to a request with this method carries a body (not for HEAD, 1xx,
 * 204, 304). */
int metricast__http_has_body(const mcl_http_head_t *h, const char *method);

/* The body that follows the head: data[0..len) is everything received after head_len;
 * eof says the peer has closed. 1: complete, appended to out (de-chunked); 0: more
 * bytes are needed; -EPROTO: malformed chunking, or a close before the declared length. */
int metricast__http_body(const mcl_http_head_t *h, const char *data, size_t len, int eof,
                         mcl_sbuf_t *out);

#endif
