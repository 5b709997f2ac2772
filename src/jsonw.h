/* jsonw — a streaming JSON writer into a buf_t.
 *
 * Hand-written because it is on the hot path (every metrics:update, every API answer):
 * no intermediate tree, commas tracked by a bit stack. The writer borrows the buf_t; the
 * caller owns it. Errors (out of memory, nesting deeper than JSONW_MAX_DEPTH) are sticky:
 * check jsonw_error() once at the end. Non-finite numbers are written as null, since JSON
 * has no NaN or Infinity. */
#ifndef MC_JSONW_H
#define MC_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define JSONW_MAX_DEPTH 63

typedef struct jsonw {
    buf_t *b;
    uint64_t need_comma; /* bit d set: the container at depth d already has a member */
    int depth;
    int err; /* 0 or a negative errno */
} jsonw_t;

void jsonw_init(jsonw_t *w, buf_t *b);
int jsonw_error(const jsonw_t *w);

void jsonw_obj_open(jsonw_t *w);
void jsonw_obj_close(jsonw_t *w);
void jsonw_arr_open(jsonw_t *w);
void jsonw_arr_close(jsonw_t *w);
void jsonw_key(jsonw_t *w, const char *k);
void jsonw_str(jsonw_t *w, const char *s);
void jsonw_strn(jsonw_t *w, const char *s, size_t n);
void jsonw_num(jsonw_t *w, double v);
void jsonw_int(jsonw_t *w, int64_t v);
void jsonw_uint(jsonw_t *w, uint64_t v);
void jsonw_bool(jsonw_t *w, bool v);
void jsonw_null(jsonw_t *w);
/* Inserts already-encoded JSON (e.g. a cached fragment) as one value. */
void jsonw_raw(jsonw_t *w, const char *json, size_t n);

/* key + value shorthands */
void jsonw_kv_str(jsonw_t *w, const char *k, const char *v); /* v NULL → null */
void jsonw_kv_num(jsonw_t *w, const char *k, double v);
void jsonw_kv_int(jsonw_t *w, const char *k, int64_t v);
void jsonw_kv_uint(jsonw_t *w, const char *k, uint64_t v);
void jsonw_kv_bool(jsonw_t *w, const char *k, bool v);

/* Appends s as a quoted, escaped JSON string (usable without a writer). The output is
 * always valid UTF-8: a byte that is not part of a well-formed UTF-8 sequence becomes
 * U+FFFD (escaped), so client bytes echoed in an answer cannot make it invalid JSON or
 * an invalid WebSocket text frame. */
int jsonw_escape(buf_t *b, const char *s, size_t n);
/* Formats a double in the shortest form that reads back to the same value. out ≥ 32. */
size_t jsonw_fmt_double(double v, char *out);

#endif
