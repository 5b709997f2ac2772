/* log — logfmt lines on stderr, one write() per line so threads never interleave.
 *
 *   log_info("http listening", "addr=%s threads=%d", addr, n);
 *   → ts=2026-11-25T19:05:41.123Z level=info msg="http listening" addr=127.0.0.1:9750 threads=2
 *
 * The key=value part is a printf format the caller writes in logfmt; string values that
 * may contain spaces or quotes go through log_quote() first. The level threshold and the
 * output fd are the only process-wide state of the project: set once at start by main()
 * before any thread exists, read-only afterwards. */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_setup(log_level_t min_level, int fd);
int log_level_parse(const char *s, log_level_t *out); /* 0 or -EINVAL */
const char *log_level_name(log_level_t l);
int log_enabled(log_level_t l);

void log_msg(log_level_t l, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

/* Writes s as a logfmt value into out (quoted and escaped when needed, truncated to fit).
 * Returns out, so it can sit inside a log call's argument list. */
const char *log_quote(const char *s, char *out, size_t outlen);

#endif
