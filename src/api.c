#include "api.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "health.h"
#include "http.h"
#include "hub.h"
#include "worker.h"
#include "ws.h"

typedef void (*api_handler_t)(http_req_t *r);

typedef struct route {
    const char *path;
    unsigned methods; /* http_method_t bits */
    api_handler_t fn;
} route_t;

static void h_health(http_req_t *r) {
    hub_t *hub = r->conn->w->hub;
    health_input_t in;
    hub_health_input(hub, &in);
    health_result_t res;
    health_eval(&in, &res);
    buf_t b = BUF_INIT;
    if (health_json(&in, &res, &b) < 0) {
        buf_free(&b);
        http_respond_error(r, 503, "out_of_memory", "health answer");
        return;
    }
    http_respond(r, res.healthy ? 200 : 503, "application/json", NULL, b.data, b.len);
    buf_free(&b);
}

static const route_t routes[] = {
    {"/api/v1/health", HM_GET | HM_HEAD, h_health},
    {"/health", HM_GET | HM_HEAD, h_health},
    {"/ws", HM_GET, ws_handshake},
};

static void allow_header(unsigned methods, char *out, size_t outlen) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{HM_GET, "GET"},       {HM_HEAD, "HEAD"},       {HM_POST, "POST"},
                 {HM_PUT, "PUT"},       {HM_DELETE, "DELETE"},   {HM_PATCH, "PATCH"},
                 {HM_OPTIONS, "OPTIONS"}};
    size_t n = (size_t)snprintf(out, outlen, "Allow: ");
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < outlen; i++) {
        if (!(methods & names[i].bit)) continue;
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", n > 7 ? ", " : "", names[i].name);
    }
    if (n < outlen) snprintf(out + n, outlen - n, "\r\n");
}

void api_handle(http_req_t *r) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route_t *rt = &routes[i];
        if (strcmp(rt->path, r->path) != 0) continue;
        if (!(rt->methods & r->method)) {
            char allow[96], detail[160];
            allow_header(rt->methods, allow, sizeof allow);
            snprintf(detail, sizeof detail, "%s is not allowed on %s", r->method_name, rt->path);
            buf_t b = BUF_INIT;
            buf_printf(&b, "{\"error\":\"method_not_allowed\",\"detail\":\"%s\"}\n", detail);
            http_respond(r, 405, "application/json", allow, b.data, b.len);
            buf_free(&b);
            return;
        }
        rt->fn(r);
        return;
    }
    char detail[300];
    snprintf(detail, sizeof detail, "no such path: %.256s", r->path);
    http_respond_error(r, 404, "not_found", detail);
}
