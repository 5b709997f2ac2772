/* jsonenc — the little JSON the client writes (samples, hello, publish): strings escaped
 * per RFC 8259 after a UTF-8 check, numbers in their shortest round-trip form. Pure. */
#ifndef MCL_JSONENC_H
#define MCL_JSONENC_H

#include <stdbool.h>
#include <stddef.h>

#include "sbuf.h"

#define MCL_NUM_LEN 32

/* The shortest "%.Ng" text (N <= 17) that reads back as exactly v: 45.2 stays "45.2",
 * 3.0 is "3". Returns its length, or -EINVAL for NaN and infinities. */
int metricast__fmt_double(double v, char out[MCL_NUM_LEN]);
/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool metricast__utf8_valid(const char *s, size_t n);
/* Appends s as a JSON string literal. -EINVAL (not UTF-8) leaves b unchanged; 0. */
int metricast__json_str(mcl_sbuf_t *b, const char *s);
/* Appends a number; -EINVAL when not finite (b unchanged). */
int metricast__json_num(mcl_sbuf_t *b, double v);

#endif
