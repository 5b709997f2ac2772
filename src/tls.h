/* tls — TLS for the HTTP + WebSocket listener (OpenSSL), through memory BIOs so that the
 * sockets stay libuv's: conn.c reads ciphertext from the socket into the worker's shared
 * buffer and feeds it here, takes plaintext back out, and writes the ciphertext this
 * module produces with its usual batched writes. Nothing here touches a socket.
 *
 * Policy: TLS 1.2 and 1.3 only; for 1.2 forward-secret AEAD suites only (ECDHE with
 * AES-GCM or ChaCha20-Poly1305); no renegotiation, no compression; ALPN http/1.1. Idle
 * connections give their record buffers back (SSL_MODE_RELEASE_BUFFERS).
 *
 * The server context is built at start from PEM files and shared by every worker; each
 * connection has its own tls_conn_t, used only on its worker's thread. A reload (SIGHUP)
 * swaps the context under a mutex that only tls_conn_new and the reload take: sessions
 * already open keep the context they started with (OpenSSL counts its references).
 * OpenSSL's error queue is per thread and is cleared around every call here. */
#ifndef MC_TLS_H
#define MC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

#define TLS_ERR_LEN 512

/* Why a handshake failed: metricast_tls_handshake_failures_total{reason} */
typedef enum {
    TLS_FAIL_PLAINTEXT_HTTP = 0, /* a plain HTTP request on the TLS port (answered 400) */
    TLS_FAIL_VERSION,            /* the client offered only versions below TLS 1.2 */
    TLS_FAIL_BAD_HANDSHAKE,      /* any other TLS error: garbage, no shared cipher, an alert */
    TLS_FAIL_TIMEOUT,            /* not done within [http] header_timeout */
    TLS_FAIL_CLOSED,             /* the client went away before finishing it */
    TLS_FAIL_COUNT
} tls_fail_t;

const char *tls_fail_name(int reason);

typedef struct tls_server tls_server_t;
typedef struct tls_conn tls_conn_t;

/* Loads cert (a PEM chain: the certificate first) and key. 0 and *out (owned by the
 * caller), or -EINVAL / -ENOMEM with err naming the file and the reason. */
int tls_server_open(tls_server_t **out, const char *cert, const char *key,
                    char err[TLS_ERR_LEN]);
/* Any thread: loads cert and key again (renewed files) and puts them in force for new
 * connections. 0, or -EINVAL with err filled and the running context kept. */
int tls_server_reload(tls_server_t *s, const char *cert, const char *key,
                      char err[TLS_ERR_LEN]);
/* "CN=example, expires 2027-01-01" of the certificate in force, for the log. */
void tls_server_describe(tls_server_t *s, char *out, size_t len);
/* The certificate in force: when it expires, in Unix seconds (0 if unknown). Any thread. */
double tls_server_not_after(tls_server_t *s);
void tls_server_free(tls_server_t *s); /* NULL allowed; after every tls_conn_t is freed */

/* A server-side session in the accept state (owned by the caller; s must outlive it).
 * NULL on ENOMEM. */
tls_conn_t *tls_conn_new(tls_server_t *s);
void tls_conn_free(tls_conn_t *t); /* NULL allowed */

/* Feeds n bytes of ciphertext read from the socket (copied). 0 or -ENOMEM. */
int tls_conn_feed(tls_conn_t *t, const void *p, size_t n);
/* Advances the handshake and decrypts: up to len bytes of plaintext into buf. Returns the
 * count (> 0); 0 when more ciphertext is needed; -EPIPE when the peer sent close_notify;
 * -EPROTO on a TLS error (what to say to the peer, an alert, is queued as output: write
 * it before closing). */
ssize_t tls_conn_read(tls_conn_t *t, void *buf, size_t len);
/* Whether plaintext or ciphertext is buffered inside (read it before waiting for more). */
bool tls_conn_buffered(const tls_conn_t *t);
/* Encrypts p[0..n) into the pending output. 0 or -EPROTO. */
int tls_conn_write(tls_conn_t *t, const void *p, size_t n);
/* Queues close_notify (once). */
void tls_conn_shutdown(tls_conn_t *t);
/* Moves every byte of pending output (ciphertext) to the end of out. 0 or -ENOMEM. */
int tls_conn_take_output(tls_conn_t *t, buf_t *out);
bool tls_conn_has_output(const tls_conn_t *t);

bool tls_conn_handshake_done(const tls_conn_t *t);
/* After -EPROTO: OpenSSL's reason, for a debug log line ("" if none). */
const char *tls_conn_error(const tls_conn_t *t);
/* After -EPROTO, what kind of failure: the peer offered only versions below TLS 1.2, or
 * spoke plain HTTP (OpenSSL recognises a request line), or anything else. */
enum { TLS_ERRK_OTHER = 0, TLS_ERRK_VERSION, TLS_ERRK_PLAIN_HTTP };
int tls_conn_error_kind(const tls_conn_t *t);
/* "TLSv1.3", once the handshake is done. */
const char *tls_conn_version(const tls_conn_t *t);

#endif
