/* view — the JSON shapes of series and summaries, computed once and shared by the REST
 * answers (/api/v1/metrics, /api/v1/series, /api/v1/summary) and, with the streaming
 * stage, the WebSocket metrics:update messages. Runs on the hub thread (reads the
 * registry). */
#ifndef MC_VIEW_H
#define MC_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "jsonw.h"
#include "registry.h"
#include "selfstats.h"

typedef struct view_filter {
    const char *match;  /* glob on the series name, NULL: any */
    const char *source; /* glob on the source label, NULL: any */
} view_filter_t;

bool view_filter_match(const view_filter_t *f, const series_t *s);

/* {"name":..,"labels":{..},"kind":..,"value":..,"updated_at":..[,"rate"][,timer fields],
 *  "trend":{...}} */
void view_series_json(jsonw_t *w, const series_t *s);
/* {"direction":"up"|"down"|"stable","hour":{"value","change","change_pct"}|null,"day":..,
 *  "week":..}: against the value an hour, a day and a week ago (from the store's rollups;
 * null while unknown). A counter compares its rate. */
void view_trend_json(jsonw_t *w, const series_t *s, double now);

/* {"series":[...],"count":N,"timestamp":"..."} for every matching series. */
int view_metrics_json(registry_t *r, const view_filter_t *f, double now, buf_t *b);

/* History of every series named name (optionally one source) with points in
 * [from, to] (unix seconds): {"name":..,"kind":..,"from":..,"to":..,"resolution_seconds":1,
 * "series":[{"labels":..,
 * "points":[[t,v],...]}]} ; timers' points carry [t,mean,count,sum,min,max,p50,p90,p99].
 * -ENOENT when no such series. */
int view_history_json(registry_t *r, const char *name, const char *source, uint32_t from,
                      uint32_t to, buf_t *b);

int view_summary_json(const hub_self_t *s, double now, buf_t *b);

#endif
