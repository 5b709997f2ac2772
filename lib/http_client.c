/* metricast_http_request: one HTTP/1.1 request on a fresh connection (Connection: close),
 * for the CLI and anyone who wants the REST API without another dependency. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_resp.h"
#include "metricast.h"
#include "net.h"
#include "sbuf.h"
#include "url.h"

/* An answer larger than this is refused: the hub's largest (a full /metrics of a big
 * registry) is far smaller, and a client must not be made to buffer without end. */
#define MAX_ANSWER (64u * 1024 * 1024)

static int token_ok(const char *t) {
    for (; *t; t++)
        if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e) return 0;
    return 1;
}

static int method_ok(const char *m) {
    if (!*m) return 0;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z') return 0;
    return 1;
}

int metricast_http_request(const char *base_url, const char *method, const char *path,
                           const char *token, const char *content_type, const char *body,
                           size_t body_len, int timeout_ms, metricast_http_response_t *resp,
                           char err[METRICAST_ERR_LEN]) {
    char dummy[METRICAST_ERR_LEN];
    if (!err) err = dummy;
    err[0] = '\0';
    if (!resp) return -EINVAL;
    memset(resp, 0, sizeof *resp);
    if (!base_url || !method || !method_ok(method) || !path || path[0] != '/') {
        snprintf(err, METRICAST_ERR_LEN, "bad request: method and a path starting with '/' are needed");
        return -EINVAL;
    }
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            snprintf(err, METRICAST_ERR_LEN, "bad character in request path (encode it)");
            return -EINVAL;
        }
    if (token && *token && !token_ok(token)) {
        snprintf(err, METRICAST_ERR_LEN, "the token has spaces or control characters");
        return -EINVAL;
    }
    if (content_type && strpbrk(content_type, "\r\n")) return -EINVAL;
    if (!body) body_len = 0;
    mcl_url_t u;
    int rc = metricast__url_parse(base_url, &u, err, METRICAST_ERR_LEN);
    if (rc < 0) return rc;
    int64_t deadline = metricast__now_ms() + (timeout_ms > 0 ? timeout_ms : 5000);

    char hostport[300];
    metricast__url_hostport(&u, hostport, sizeof hostport);
    mcl_sbuf_t req = MCL_SBUF_INIT;
    metricast__sb_printf(&req, "%s ", method);
    metricast__url_target(&u, path, &req);
    metricast__sb_printf(&req,
                         " HTTP/1.1\r\nHost: %s\r\nUser-Agent: libmetricast/" METRICAST_LIB_VERSION
                         "\r\nAccept: application/json, text/plain;q=0.9, */*;q=0.5\r\n"
                         "Connection: close\r\n",
                         hostport);
    if (token && *token) metricast__sb_printf(&req, "Authorization: Bearer %s\r\n", token);
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        if (content_type) metricast__sb_printf(&req, "Content-Type: %s\r\n", content_type);
        metricast__sb_printf(&req, "Content-Length: %zu\r\n", body_len);
    }
    metricast__sb_puts(&req, "\r\n");
    metricast__sb_add(&req, body, body_len);
    if ((rc = metricast__sb_error(&req)) < 0) {
        metricast__sb_free(&req);
        return rc;
    }

    int fd = metricast__tcp_connect(u.host, u.port, deadline, -1, err, METRICAST_ERR_LEN);
    if (fd < 0) {
        metricast__sb_free(&req);
        return fd;
    }
    rc = metricast__send_all(fd, req.data, req.len, deadline, -1);
    metricast__sb_free(&req);
    /* a server that answers early (413, 401) and closes may make the send fail: still
     * read its answer */
    int send_rc = rc;

    mcl_sbuf_t in = MCL_SBUF_INIT, out = MCL_SBUF_INIT;
    mcl_http_head_t h;
    int have_head = 0, eof = 0;
    for (;;) {
        if (!have_head || !eof) {
            int w = metricast__wait_readable(fd, deadline, -1);
            if (w == 0) {
                rc = -ETIMEDOUT;
                snprintf(err, METRICAST_ERR_LEN, "%.100s:%u did not answer in time", u.host,
                         (unsigned)u.port);
                goto out;
            }
            if (w < 0) {
                rc = w;
                goto out;
            }
            if ((rc = metricast__sb_reserve(&in, 65536)) < 0) goto out;
            ssize_t n = recv(fd, in.data + in.len, 65536, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (n < 0) {
                if (in.len == 0) {
                    rc = -errno;
                    snprintf(err, METRICAST_ERR_LEN, "reading the answer from %.100s:%u: %.100s", u.host,
                             (unsigned)u.port, strerror(errno));
                    goto out;
                }
                n = 0; /* a reset after some bytes: judge what came */
            }
            if (n == 0) eof = 1;
            in.len += (size_t)n;
            in.data[in.len] = '\0';
            if (in.len > MAX_ANSWER) {
                rc = -EPROTO;
                snprintf(err, METRICAST_ERR_LEN, "the answer is larger than %u bytes", MAX_ANSWER);
                goto out;
            }
        }
        if (!have_head) {
            int p = metricast__http_parse_head(in.data, in.len, &h);
            if (p < 0 || (p == 0 && eof)) {
                rc = -EPROTO;
                if (in.len == 0 && send_rc < 0)
                    snprintf(err, METRICAST_ERR_LEN, "sending to %.100s:%u failed: %.100s", u.host,
                             (unsigned)u.port, strerror(-send_rc));
                else
                    snprintf(err, METRICAST_ERR_LEN, "%.100s:%u did not answer with HTTP", u.host,
                             (unsigned)u.port);
                goto out;
            }
            if (p == 0) continue;
            have_head = 1;
            if (h.status < 200) { /* 1xx interim answers: drop them, read the real one */
                metricast__sb_consume(&in, h.head_len);
                have_head = 0;
                if (in.len) continue;
                if (eof) {
                    rc = -EPROTO;
                    goto out;
                }
                continue;
            }
            if (!metricast__http_has_body(&h, method)) break;
        }
        int b = metricast__http_body(&h, in.data + h.head_len, in.len - h.head_len, eof, &out);
        if (b < 0) {
            rc = -EPROTO;
            snprintf(err, METRICAST_ERR_LEN, "the answer from %.100s:%u was cut short", u.host,
                     (unsigned)u.port);
            goto out;
        }
        if (b == 1) break;
        if (eof) {
            rc = -EPROTO;
            goto out;
        }
    }
    resp->status = h.status;
    snprintf(resp->content_type, sizeof resp->content_type, "%s", h.content_type);
    resp->body = metricast__sb_steal(&out, &resp->body_len);
    rc = resp->body ? 0 : -ENOMEM;
out:
    close(fd);
    metricast__sb_free(&in);
    metricast__sb_free(&out);
    return rc;
}

void metricast_http_response_free(metricast_http_response_t *r) {
    if (!r) return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}
