#include "access.h"

#include <stdio.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "buf.h"
#include "conn.h"
#include "http.h"
#include "hub.h"
#include "jsonw.h"
#include "log.h"
#include "worker.h"
#include "ws.h"
#include "ws_msg.h"

#define REALM "Bearer realm=\"metricast\""

const char *access_deny_name(int r) {
    static const char *const names[DENY_COUNT] = {"missing_token", "invalid_token",
                                                  "insufficient_scope", "topic", "origin",
                                                  "host", "revoked"};
    return r >= 0 && r < DENY_COUNT ? names[r] : "unknown";
}

static void count(const conn_t *c, access_deny_t why) {
    atomic_fetch_add_explicit(&c->w->hub->access.denied[why], 1, memory_order_relaxed);
}

void access_count(const conn_t *c, access_deny_t why) { count(c, why); }

static void deny(http_req_t *r, access_deny_t why, int status, const char *error,
                 const char *detail, const char *extra_headers) {
    count(r->conn, why);
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "error", error);
    jsonw_kv_str(&w, "detail", detail);
    jsonw_obj_close(&w);
    buf_putc(&b, '\n');
    log_debug("access denied", "conn=%llu peer=%s reason=%s status=%d",
              (unsigned long long)r->conn->id, r->conn->peer, access_deny_name(why), status);
    http_respond(r, status, "application/json", extra_headers, b.data ? b.data : "", b.len);
    buf_free(&b);
}

/* ---- before routing ----------------------------------------------------------------- */

static void allow_methods(unsigned m, char *out, size_t outlen) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{HM_GET, "GET"},   {HM_HEAD, "HEAD"},       {HM_POST, "POST"},
                 {HM_PUT, "PUT"},   {HM_DELETE, "DELETE"},   {HM_PATCH, "PATCH"},
                 {HM_OPTIONS, "OPTIONS"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < outlen; i++)
        if (m & names[i].bit)
            n += (size_t)snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", names[i].name);
}

bool access_request(http_req_t *r) {
    const auth_t *a = r->conn->w->auth;
    const char *host = http_header(r, "Host");
    const char *origin = http_header(r, "Origin");
    /* DNS rebinding attacks a browser: only requests a browser made (it always sends
     * Sec-Fetch-* or Origin) are held to a loopback Host; other clients pick their peer */
    bool browser = origin || http_header(r, "Sec-Fetch-Site") || http_header(r, "Sec-Fetch-Mode");
    if (a && a->guard_host && browser && !auth_host_allowed(a, host)) {
        deny(r, DENY_HOST, 403, "host_not_allowed",
             "this hub listens on loopback without tokens and answers only requests that "
             "name it by a loopback address (a guard against DNS rebinding); add the origin "
             "to [server] allowed_origins or configure a token",
             NULL);
        return false;
    }
    if (!origin) return true; /* not a browser's cross-origin request */
    bool listed = auth_origin_listed(a, origin);
    if (!listed && !auth_origin_same(origin, host)) {
        char detail[400];
        snprintf(detail, sizeof detail,
                 "requests from origin %.200s are not allowed: list it in [server] "
                 "allowed_origins", origin);
        deny(r, DENY_ORIGIN, 403, "origin_not_allowed", detail, NULL);
        return false;
    }
    if (listed) http_set_cors(r, origin);
    /* a CORS preflight: answered here, without a token (browsers never send one with it) */
    const char *want = http_header(r, "Access-Control-Request-Method");
    if (r->method == HM_OPTIONS && want) {
        if (!listed) { /* same-origin pages never preflight; nothing to grant */
            deny(r, DENY_ORIGIN, 403, "origin_not_allowed",
                 "CORS is granted only to origins listed in [server] allowed_origins", NULL);
            return false;
        }
        char methods[96], extra[400];
        allow_methods(api_route_methods(r->path), methods, sizeof methods);
        snprintf(extra, sizeof extra,
                 "Access-Control-Allow-Methods: %s\r\n"
                 "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 methods);
        http_respond(r, 204, "text/plain", extra, "", 0);
        return false;
    }
    return true;
}

/* ---- tokens and scopes -------------------------------------------------------------- */

bool access_authorize(http_req_t *r, unsigned scope, const char *topic, unsigned flags) {
    const auth_t *a = r->conn->w->auth;
    r->token = NULL;
    if (scope == AUTH_NONE || !auth_enabled(a)) return true;

    const char *tok = NULL;
    size_t len = 0;
    char qtok[AUTH_SECRET_MAX + 2];
    const char *hv = http_header(r, "Authorization");
    bool bearer = hv && auth_parse_bearer(hv, &tok, &len);
    int q = http_query_param(r->query, "token", qtok, sizeof qtok);
    if (!bearer && q != 0) {
        if (!(flags & ACCESS_QUERY_TOKEN)) {
            deny(r, DENY_MISSING_TOKEN, 401, "unauthorized",
                 "?token= is accepted only on /ws and the dashboard: send the header "
                 "Authorization: Bearer TOKEN",
                 "WWW-Authenticate: " REALM "\r\n");
            return false;
        }
        tok = q > 0 ? qtok : "";
        len = q > 0 ? strlen(qtok) : 0;
    }
    if (!tok) {
        deny(r, DENY_MISSING_TOKEN, 401, "unauthorized",
             hv ? "the Authorization header is not \"Bearer TOKEN\""
                : "a token is required: send Authorization: Bearer TOKEN",
             "WWW-Authenticate: " REALM "\r\n");
        return false;
    }
    const auth_token_t *t = auth_find(a, tok, len);
    if (q > 0) memset(qtok, 0, sizeof qtok);
    if (!t) {
        deny(r, DENY_INVALID_TOKEN, 401, "unauthorized", "the token is not valid",
             "WWW-Authenticate: " REALM ", error=\"invalid_token\"\r\n");
        return false;
    }
    r->token = t;
    if (!auth_token_allows(t, scope)) {
        char have[64], need[64], detail[300], extra[200];
        auth_scope_names(t->scopes, have, sizeof have);
        auth_scope_names(scope, need, sizeof need);
        snprintf(detail, sizeof detail, "token %s has scopes %s; this needs %s", t->name, have,
                 need);
        snprintf(extra, sizeof extra,
                 "WWW-Authenticate: " REALM ", error=\"insufficient_scope\", scope=\"%s\"\r\n",
                 need);
        deny(r, DENY_SCOPE, 403, "forbidden", detail, extra);
        return false;
    }
    return !topic || access_topic(r, topic);
}

bool access_topic(http_req_t *r, const char *topic) {
    if (auth_token_topic(r->token, topic)) return true;
    char detail[300];
    snprintf(detail, sizeof detail, "token %s may not read topic %.128s", r->token->name, topic);
    deny(r, DENY_TOPIC, 403, "forbidden", detail, NULL);
    return false;
}

bool access_ws_upgrade(http_req_t *r) {
    if (!auth_enabled(r->conn->w->auth) || !r->token) return true;
    const auth_token_t *t = r->token;
    char v[1024], have[64], detail[400];
    auth_scope_names(t->scopes, have, sizeof have);
    if (http_query_param(r->query, "source", v, sizeof v) > 0 && *v &&
        !auth_token_allows(t, AUTH_INGEST)) {
        snprintf(detail, sizeof detail,
                 "token %s has scopes %s; a source session (?source=) needs ingest", t->name,
                 have);
        deny(r, DENY_SCOPE, 403, "forbidden", detail,
             "WWW-Authenticate: " REALM ", error=\"insufficient_scope\", scope=\"ingest\"\r\n");
        return false;
    }
    if (http_query_param(r->query, "topics", v, sizeof v) <= 0 || !*v) return true;
    if (!auth_token_allows(t, AUTH_READ)) {
        snprintf(detail, sizeof detail, "token %s has scopes %s; subscribing (?topics=) needs read",
                 t->name, have);
        deny(r, DENY_SCOPE, 403, "forbidden", detail,
             "WWW-Authenticate: " REALM ", error=\"insufficient_scope\", scope=\"read\"\r\n");
        return false;
    }
    char *save = NULL;
    for (char *topic = strtok_r(v, ",", &save); topic; topic = strtok_r(NULL, ",", &save))
        if (!access_topic(r, topic)) return false;
    return true;
}

/* ---- WebSocket connections ---------------------------------------------------------- */

bool access_conn_may(const conn_t *c, unsigned scope) {
    if (c->auth_revoked) return false;
    if (!c->token) return !auth_enabled(c->w->auth);
    return auth_token_allows(c->token, scope);
}

bool access_conn_topic(const conn_t *c, const char *topic) {
    if (c->auth_revoked) return false;
    return !c->token || auth_token_topic(c->token, topic);
}

void access_recheck(conn_t *c) {
    const auth_t *a = c->w->auth;
    if (c->proto != CONN_WS || c->closing || c->auth_revoked) return;
    if (!auth_enabled(a)) {
        c->token = NULL; /* open now: everything is allowed */
        return;
    }
    const char *why = NULL;
    const auth_token_t *t = c->token ? auth_find_same(a, c->token) : NULL;
    if (!t) {
        why = c->token ? "token revoked" : "authentication required";
    } else {
        c->token = t;
        why = ws_msg_recheck(c);
    }
    if (!why) return;
    c->token = NULL;
    c->auth_revoked = true;
    count(c, DENY_REVOKED);
    log_info("ws connection closed by a token reload", "conn=%llu peer=%s reason=\"%s\"",
             (unsigned long long)c->id, c->peer, why);
    ws_close(c, WS_CLOSE_POLICY, why);
}
