/* history — a series' recent past at 1 s resolution, in memory.
 *
 * A ring of (second, value) points holding up to `max` of them (default 3600: one hour of
 * a series updated every second). Only seconds in which the series received data are
 * stored, so an idle series costs nothing and a series updated once costs one point:
 * readers carry a gauge's last value forward and read a missing counter second as 0.
 * The ring starts small and doubles up to max. Timers also keep, per point, the
 * interval's count, sum, min, max and p50/p90/p99 (as floats: 28 bytes a point).
 *
 * Rings created in the same second (100,000 series from one burst of StatsD) would all
 * fill, and double, in the same second too: at 2,048 points that is gigabytes copied in
 * one tick, a hub stalled for seconds. So each ring doubles at its own fill point, drawn
 * once per ring between half full and full (`spread`), and growth before the ring wraps
 * is a realloc (no copy for large blocks: glibc moves their pages). */
#ifndef MC_HISTORY_H
#define MC_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { HIST_COUNT = 0, HIST_SUM, HIST_MIN, HIST_MAX, HIST_P50, HIST_P90, HIST_P99, HIST_EXTRAS };

typedef struct history {
    uint32_t *t;
    double *v;
    float (*x)[HIST_EXTRAS]; /* timers only */
    uint32_t cap, head, len; /* head: index of the oldest point */
    uint32_t max;
    uint8_t spread; /* 0..255: grows when len >= cap - cap * spread / 512 */
} history_t;

void history_init(history_t *h, uint32_t max);
void history_free(history_t *h);
/* Appends a point (t must not go backwards; a second already present is overwritten).
 * extras: HIST_EXTRAS values for timers, else NULL. 0 or -ENOMEM (point dropped). */
int history_push(history_t *h, uint32_t t, double v, const double *extras);
/* Point i counted from the oldest (i < len). extras may be NULL; filled with NANs when
 * the series has none. */
void history_get(const history_t *h, uint32_t i, uint32_t *t, double *v, double *extras);
/* Index of the first point with t >= from (len if none). */
uint32_t history_first_from(const history_t *h, uint32_t from);

#endif
