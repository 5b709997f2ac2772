/* buf — a growable byte buffer.
 *
 * The one string/byte builder of the project: HTTP responses, JSON, log lines. Memory is
 * owned by the buf_t; buf_free() releases it. Appends either succeed completely or leave
 * the buffer unchanged and return -ENOMEM. */
#ifndef MC_BUF_H
#define MC_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data;  /* NUL-terminated whenever cap > 0 (the NUL is not counted in len) */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b); /* len = 0, keeps capacity */
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_putc(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Gives the caller the heap block (NUL-terminated, may be NULL when empty) and resets b. */
char *buf_steal(buf_t *b, size_t *len);

#endif
