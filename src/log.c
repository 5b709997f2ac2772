#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"

static struct {
    log_level_t min;
    int fd;
} g_log = {LOG_INFO, 2};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(log_level_t min_level, int fd) {
    g_log.min = min_level;
    g_log.fd = fd;
}

int log_level_parse(const char *s, log_level_t *out) {
    for (int i = 0; i <= LOG_ERROR; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

const char *log_level_name(log_level_t l) { return level_names[l <= LOG_ERROR ? l : LOG_ERROR]; }

int log_enabled(log_level_t l) { return l >= g_log.min; }

const char *log_quote(const char *s, char *out, size_t outlen) {
    if (outlen < 3) {
        if (outlen) out[0] = '\0';
        return out;
    }
    if (!s) s = "";
    int needs = *s == '\0';
    for (const char *p = s; *p && !needs; p++)
        needs = (unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\';
    if (!needs) {
        snprintf(out, outlen, "%s", s);
        return out;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = s; *p && o + 3 < outlen; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = c < ' ' ? ' ' : (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

void log_msg(log_level_t l, const char *msg, const char *kvfmt, ...) {
    if (l < g_log.min) return;
    char ts[CLK_ISO_LEN], qmsg[512];
    clk_iso8601(clk_unix(), ts);
    buf_t out = BUF_INIT;
    va_list ap;
    va_start(ap, kvfmt);
    if (buf_printf(&out, "ts=%s level=%s msg=%s", ts, log_level_name(l),
                   log_quote(msg, qmsg, sizeof qmsg)) < 0)
        goto done;
    if (kvfmt && *kvfmt) {
        if (buf_putc(&out, ' ') < 0 || buf_vprintf(&out, kvfmt, ap) < 0) goto done;
    }
    if (buf_putc(&out, '\n') < 0) goto done;
    /* one write per line: lines from different threads never interleave */
    for (size_t off = 0; off < out.len;) {
        ssize_t w = write(g_log.fd, out.data + off, out.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
done:
    va_end(ap);
    buf_free(&out);
}
