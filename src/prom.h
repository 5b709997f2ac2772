/* prom — Prometheus text exposition format 0.0.4 of the registry and of the hub itself.
 *
 * Every family gets # HELP and # TYPE (promtool's lint wants both). Counters are exposed
 * as <name>_total (unless the name already ends so), timers as summaries with quantiles
 * 0.5/0.9/0.99 and cumulative _sum/_count, sets as gauges. Label values and HELP text
 * are escaped as the format requires. Runs on the hub thread. */
#ifndef MC_PROM_H
#define MC_PROM_H

#include "buf.h"
#include "registry.h"
#include "selfstats.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

int prom_render(registry_t *r, const hub_self_t *self, buf_t *b);

/* Appends v the way the format wants numbers (NaN, +Inf, -Inf, shortest decimal). */
int prom_number(buf_t *b, double v);
/* Appends a label value escaped for the format (\\, \", \n), without quotes. */
int prom_label_value(buf_t *b, const char *s);

#endif
