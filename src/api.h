/* api — the HTTP routes: path and method → handler.
 *
 * One table (api.c) lists every route with the methods it allows, so 404 (no such path)
 * and 405 (path exists, method does not; with an Allow header) come from one place.
 * Handlers run on the connection's worker thread and answer through http_respond*. */
#ifndef MC_API_H
#define MC_API_H

struct http_req;

/* Routes one complete request. Always answers it (or upgrades the connection). */
void api_handle(struct http_req *r);
/* The methods (http_method_t bits) the route of path allows; 0 for no route. */
unsigned api_route_methods(const char *path);

#endif
