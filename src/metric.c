#include "metric.h"

#include <stddef.h>
#include <string.h>

static const char *const kind_names[METRIC_KIND_COUNT] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
    [METRIC_TIMER] = "timer",
    [METRIC_SET] = "set",
};

const char *metric_kind_name(metric_kind_t k) {
    /* the result lands in JSON and labels: never NULL, even for a bad value */
    if ((unsigned)k >= METRIC_KIND_COUNT) return "unknown";
    return kind_names[k];
}

/* The spellings other tools use (Prometheus, DogStatsD, StatsD type letters); all of
 * the distribution-like ones are our timer. Case-sensitive, as those protocols are. */
static const struct {
    const char *name;
    metric_kind_t kind;
} aliases[] = {
    {"counter", METRIC_COUNTER},
    {"c", METRIC_COUNTER},
    {"gauge", METRIC_GAUGE},
    {"g", METRIC_GAUGE},
    {"timer", METRIC_TIMER},
    {"histogram", METRIC_TIMER},
    {"distribution", METRIC_TIMER},
    {"summary", METRIC_TIMER},
    {"timing", METRIC_TIMER},
    {"ms", METRIC_TIMER},
    {"set", METRIC_SET},
    {"s", METRIC_SET},
};

int metric_kind_parse(const char *s, metric_kind_t *out) {
    if (!s) return -1;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcmp(s, aliases[i].name) == 0) {
            *out = aliases[i].kind;
            return 0;
        }
    }
    return -1;
}
