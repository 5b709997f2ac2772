/* sbuf — a growable byte buffer for the client library (its own: the library does not
 * link the daemon's modules). Internal: names start with metricast__, types with mcl_.
 *
 * The buffer owns `data` (always NUL-terminated once anything was appended, the NUL not
 * counted in len). An allocation failure is sticky: later appends do nothing and
 * metricast__sb_error() returns -ENOMEM, so a caller checks once at the end. */
#ifndef MCL_SBUF_H
#define MCL_SBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mcl_sbuf {
    char *data;
    size_t len, cap;
    int err; /* 0 or -ENOMEM */
} mcl_sbuf_t;

#define MCL_SBUF_INIT {NULL, 0, 0, 0}

void metricast__sb_add(mcl_sbuf_t *b, const void *p, size_t n);
void metricast__sb_puts(mcl_sbuf_t *b, const char *s);
void metricast__sb_putc(mcl_sbuf_t *b, char c);
void metricast__sb_printf(mcl_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for n more bytes; 0 or -ENOMEM. */
int metricast__sb_reserve(mcl_sbuf_t *b, size_t n);
/* Drops the first n bytes. */
void metricast__sb_consume(mcl_sbuf_t *b, size_t n);
int metricast__sb_error(const mcl_sbuf_t *b);
/* Hands data to the caller (free() it) and resets b; NULL after an allocation failure. */
char *metricast__sb_steal(mcl_sbuf_t *b, size_t *len);
void metricast__sb_free(mcl_sbuf_t *b);

#endif
