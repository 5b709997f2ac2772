/* fuzz_net — a worker without sockets, for the fuzz targets that drive a connection's
 * protocol code: fuzz_http, fuzz_ws, fuzz_ws_msg.
 *
 * What runs is the daemon's own code: src/http.c (llhttp callbacks, request assembly,
 * limits, pipelining, deferred answers, the upgrade hand-off), src/ws.c (the handshake,
 * wslay's receive path, closes, the abuse rule), src/ws_msg.c (every client message),
 * src/access.c and src/auth.c (tokens and scopes on those messages). What is faked here
 * is what sits around a connection and needs a socket, a loop thread or the hub:
 *
 *   conn.c      conn_send() checks every frame the code queues (fnet_t.check) and
 *               "writes" it at once; conn_close() marks the connection, which is detached
 *               and freed by fnet_settle() — as libuv's close callback does, after the
 *               caller's stack has unwound.
 *   worker.c    counters and lists only (groups, event subscribers).
 *   hub         hub_call() keeps the job; fnet_calls_finish() completes the kept jobs,
 *               cancelled or not, without running their hub side (so a subscribe is
 *               answered "no group", a publish acked with seq 0).
 *   source_session.c  a source's samples go straight through the real ingest parsers
 *               (ingest_json_parse / ingest_statsd_text) into a callback that reads them.
 *   api.c       api_handle() is the driver's (its router with stand-in handlers).
 *
 * Single-threaded; one fnet_t per process (libFuzzer runs inputs one after another). */
#ifndef MC_FUZZ_NET_H
#define MC_FUZZ_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "frame.h"
#include "http.h"
#include "hub.h"
#include "worker.h"

typedef struct fnet {
    config_t cfg;
    hub_t *hub;    /* zeroed: only its counters are touched */
    worker_t w;    /* loop initialised (uv_now), nothing else started */
    uint64_t now_ms; /* what fnet_sweep passes as "now" */
    /* per input */
    uint64_t frames, bytes_out, closes, limit_hits;
    /* the driver's hooks */
    void (*check)(conn_t *c, const frame_t *f);       /* every frame queued */
} fnet_t;

extern fnet_t fnet;

/* Once per process: defaults, a loop for uv_now, the policy (auth) from cfg's token
 * sections (NULL: open). */
void fnet_init(void);
/* Installs the access policy built from an INI text of [token.*] sections (NULL or "":
 * open mode). Aborts if the text does not build (the drivers pass fixed texts). */
void fnet_set_auth(const char *tokens_ini);

/* A fresh connection in HTTP state, listed on the worker. */
conn_t *fnet_conn_new(void);
/* Frees every connection that was closed (detaching its protocol state first, as the
 * close callback does). With all = true, closes and frees the others too (end of an
 * input). */
void fnet_settle(bool all);
/* The worker's sweep at fnet.now_ms, on every open connection. */
void fnet_sweep(void);
/* Completes the hub calls kept so far; cancelled: as if a side were shutting down, which
 * the real hub does only once the worker's connections are gone (the worker stops
 * first, or its inbox is closed): only call it so with no connection left. */
void fnet_calls_finish(bool cancelled);
/* The default check: what a connection may put on the wire — an HTTP/1.1 answer while it
 * speaks HTTP (status line, clean header lines, Content-Length right, errors as JSON), a
 * valid server WebSocket frame after the upgrade (unmasked, FIN, known opcode, text a
 * JSON object with "type", a valid close code). Aborts otherwise. */
void fnet_check_wire(conn_t *c, const frame_t *f);
/* Hub calls waiting. */
size_t fnet_calls_pending(void);

#endif
