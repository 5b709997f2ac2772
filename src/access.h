/* access — the auth policy (auth.h) applied to HTTP requests, WebSocket upgrades and
 * WebSocket connections. Worker thread only; the policy in force is the worker's
 * (worker_t.auth), swapped on reload by worker_set_auth().
 *
 * Order of the checks for one request (api_handle):
 *   1. access_request: the DNS-rebinding guard (Host), the Origin check, CORS preflight
 *      (OPTIONS) — before routing, so they cover every path;
 *   2. routing: 404, 405;
 *   3. access_authorize: token (401) and scope (403), and the route's topic.
 * Every refusal is a JSON error answer and a count in metricast_auth_denied_total.
 *
 * Origins: a request without an Origin header (curl, Prometheus, client libraries) is
 * not a browser's and passes. With one, it must be the hub's own (same host and port as
 * the Host header) or on [server] allowed_origins; anything else gets 403, for plain
 * requests (cross-site request forgery) and WebSocket upgrades (cross-site WebSocket
 * hijacking) alike. CORS headers go only to listed origins. */
#ifndef MC_ACCESS_H
#define MC_ACCESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct http_req;
struct conn;
struct auth;

typedef enum {
    DENY_MISSING_TOKEN = 0,
    DENY_INVALID_TOKEN,
    DENY_SCOPE,
    DENY_TOPIC,
    DENY_ORIGIN,
    DENY_HOST,
    DENY_REVOKED, /* a reload closed a connection whose token went or narrowed */
    DENY_COUNT
} access_deny_t;

typedef struct access_stats {
    _Atomic uint64_t denied[DENY_COUNT];
} access_stats_t;

const char *access_deny_name(int reason);

/* Route flags. */
enum { ACCESS_QUERY_TOKEN = 1u << 0 /* ?token= accepted (the WebSocket, the dashboard) */ };

/* Host guard, Origin check and CORS preflight. false: answered (403, or 204 for an
 * allowed preflight); the caller stops. true: go on (the answer will carry the CORS
 * headers when the origin is a listed one). */
bool access_request(struct http_req *r);
/* Token and scope: scope is AUTH_NONE (public), AUTH_ANY (any valid token) or scope
 * bits; topic (NULL: none) is what the route reads, checked against the token's topics.
 * Sets r->token. false: answered 401/403. */
bool access_authorize(struct http_req *r, unsigned scope, const char *topic, unsigned flags);
/* For a handler: whether r's token may read topic; answers 403 and returns false if not. */
bool access_topic(struct http_req *r, const char *topic);
/* The WebSocket upgrade, after access_authorize: what the URL asks for at once must be in
 * the token's scopes — ?source= needs ingest, ?topics= needs read and each topic. false:
 * answered 403. */
bool access_ws_upgrade(struct http_req *r);

/* WebSocket connections (the token the upgrade presented is c->token). */
bool access_conn_may(const struct conn *c, unsigned scope);
bool access_conn_topic(const struct conn *c, const char *topic);
/* Counts a refusal of a WebSocket message (the caller sends the error message). */
void access_count(const struct conn *c, access_deny_t why);
/* The policy changed: re-checks the WebSocket connection c against w->auth (already the
 * new one). A connection whose token is gone, or no longer allows what it is subscribed
 * to, is closed with 1008; otherwise it keeps running under the new token. */
void access_recheck(struct conn *c);

#endif
