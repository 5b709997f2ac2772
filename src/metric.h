/* metric — the kinds of series and their names on each surface. */
#ifndef MC_METRIC_H
#define MC_METRIC_H

typedef enum {
    METRIC_COUNTER = 0,
    METRIC_GAUGE,
    METRIC_TIMER, /* StatsD ms, h, d: count, sum, min, max, quantiles */
    METRIC_SET,
    METRIC_KIND_COUNT
} metric_kind_t;

/* "counter", "gauge", "timer", "set" */
const char *metric_kind_name(metric_kind_t k);
/* Accepts the names above plus "histogram", "distribution", "summary" (→ timer). 0/-1. */
int metric_kind_parse(const char *s, metric_kind_t *out);

#endif
