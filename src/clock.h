/* clock — wall-clock and monotonic time in the forms the protocol uses. Pure helpers. */
#ifndef MC_CLOCK_H
#define MC_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLK_ISO_LEN 32 /* "2026-11-25T19:05:41.123Z" + NUL, with room to spare */

double clk_unix(void);       /* seconds since the epoch, wall clock, µs resolution */
uint64_t clk_mono_ns(void);  /* monotonic nanoseconds (CLOCK_MONOTONIC) */
/* Formats t (unix seconds) as ISO 8601 UTC with milliseconds: 2026-11-25T19:05:41.123Z. */
size_t clk_iso8601(double t, char out[CLK_ISO_LEN]);

#endif
