#include "view.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "clock.h"

bool view_filter_match(const view_filter_t *f, const series_t *s) {
    if (f->match && *f->match && fnmatch(f->match, skey_name(s->key), 0) != 0) return false;
    if (f->source && *f->source) {
        if (!s->source || fnmatch(f->source, s->source, 0) != 0) return false;
    }
    return true;
}

static void labels_json(jsonw_t *w, const series_key_t *k) {
    jsonw_obj_open(w);
    for (int i = 0; i < k->nlabels; i++) {
        skey_label_t l;
        skey_label(k, i, &l);
        jsonw_kv_str(w, l.name, l.value);
    }
    jsonw_obj_close(w);
}

static void trend_period(jsonw_t *w, const char *key, double v, double ref) {
    jsonw_key(w, key);
    if (isnan(ref)) {
        jsonw_null(w);
        return;
    }
    jsonw_obj_open(w);
    jsonw_kv_num(w, "value", ref);
    jsonw_kv_num(w, "change", v - ref);
    if (fabs(ref) > 1e-12)
        jsonw_kv_num(w, "change_pct", (double)(int64_t)((v - ref) / fabs(ref) * 1e4) / 100);
    else
        jsonw_kv_str(w, "change_pct", NULL);
    jsonw_obj_close(w);
}

void view_trend_json(jsonw_t *w, const series_t *s, double now) {
    double v = registry_trend_value(s);
    jsonw_obj_open(w);
    jsonw_kv_str(w, "direction", registry_trend_direction(s->fam->reg, s, now));
    trend_period(w, "hour", v, s->ref_hour);
    trend_period(w, "day", v, s->ref_day);
    trend_period(w, "week", v, s->ref_week);
    jsonw_obj_close(w);
}

void view_series_json(jsonw_t *w, const series_t *s) {
    char ts[CLK_ISO_LEN];
    jsonw_obj_open(w);
    jsonw_kv_str(w, "name", skey_name(s->key));
    jsonw_key(w, "labels");
    labels_json(w, s->key);
    jsonw_kv_str(w, "kind", metric_kind_name(s->kind));
    jsonw_kv_num(w, "value", s->value);
    clk_iso8601(s->updated_at, ts);
    jsonw_kv_str(w, "updated_at", ts);
    if (s->kind == METRIC_COUNTER) jsonw_kv_num(w, "rate", s->rate);
    if (s->kind == METRIC_TIMER) {
        jsonw_kv_num(w, "count", s->last.count);
        jsonw_kv_num(w, "sum", s->last.sum);
        jsonw_kv_num(w, "min", s->last.min);
        jsonw_kv_num(w, "max", s->last.max);
        jsonw_kv_num(w, "p50", s->last.p50);
        jsonw_kv_num(w, "p90", s->last.p90);
        jsonw_kv_num(w, "p99", s->last.p99);
    }
    jsonw_key(w, "trend");
    view_trend_json(w, s, clk_unix());
    jsonw_obj_close(w);
}

int view_metrics_json(registry_t *r, const view_filter_t *f, double now, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_key(&w, "series");
    jsonw_arr_open(&w);
    uint64_t count = 0;
    uint32_t nf;
    family_t *const *fams = registry_families(r, &nf);
    for (uint32_t i = 0; i < nf; i++) {
        if (f->match && *f->match && fnmatch(f->match, fams[i]->name, 0) != 0) continue;
        for (uint32_t j = 0; j < fams[i]->n; j++) {
            const series_t *s = fams[i]->v[j];
            if (!view_filter_match(f, s)) continue;
            view_series_json(&w, s);
            count++;
        }
    }
    jsonw_arr_close(&w);
    jsonw_kv_uint(&w, "count", count);
    char ts[CLK_ISO_LEN];
    clk_iso8601(now, ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    buf_putc(b, '\n');
    return jsonw_error(&w);
}

int view_history_json(registry_t *r, const char *name, const char *source, uint32_t from,
                      uint32_t to, buf_t *b) {
    family_t *f = registry_family(r, name);
    if (!f) return -ENOENT;
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "name", name);
    jsonw_kv_str(&w, "kind", metric_kind_name(f->kind));
    jsonw_kv_uint(&w, "from", from);
    jsonw_kv_uint(&w, "to", to);
    jsonw_kv_int(&w, "resolution_seconds", 1);
    jsonw_key(&w, "series");
    jsonw_arr_open(&w);
    int matched = 0;
    for (uint32_t j = 0; j < f->n; j++) {
        const series_t *s = f->v[j];
        if (source && *source && (!s->source || fnmatch(source, s->source, 0) != 0)) continue;
        matched++;
        jsonw_obj_open(&w);
        jsonw_key(&w, "labels");
        labels_json(&w, s->key);
        jsonw_key(&w, "points");
        jsonw_arr_open(&w);
        for (uint32_t i = history_first_from(&s->hist, from); i < s->hist.len; i++) {
            uint32_t t;
            double v, x[HIST_EXTRAS];
            history_get(&s->hist, i, &t, &v, s->kind == METRIC_TIMER ? x : NULL);
            if (t > to) break;
            jsonw_arr_open(&w);
            jsonw_uint(&w, t);
            jsonw_num(&w, v);
            if (s->kind == METRIC_TIMER)
                for (int k = 0; k < HIST_EXTRAS; k++) jsonw_num(&w, x[k]);
            jsonw_arr_close(&w);
        }
        jsonw_arr_close(&w);
        jsonw_obj_close(&w);
    }
    jsonw_arr_close(&w);
    if (f->kind == METRIC_TIMER) {
        jsonw_key(&w, "columns");
        jsonw_arr_open(&w);
        static const char *const cols[] = {"t", "mean", "count", "sum", "min",
                                           "max", "p50", "p90", "p99"};
        for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++) jsonw_str(&w, cols[k]);
        jsonw_arr_close(&w);
    }
    jsonw_obj_close(&w);
    buf_putc(b, '\n');
    if (!matched) return -ENOENT;
    return jsonw_error(&w);
}

int view_summary_json(const hub_self_t *s, double now, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "version", s->version);
    jsonw_kv_num(&w, "uptime_seconds", s->uptime_s);
    jsonw_key(&w, "ingest");
    jsonw_obj_open(&w);
    jsonw_kv_uint(&w, "lines_total", s->lines_total);
    jsonw_key(&w, "lines_by_transport");
    jsonw_obj_open(&w);
    for (int t = 0; t < INGEST_TRANSPORT_COUNT; t++)
        jsonw_kv_uint(&w, ingest_transport_name((ingest_transport_t)t), s->lines[t]);
    jsonw_obj_close(&w);
    jsonw_kv_num(&w, "lines_per_second", s->lines_rate);
    jsonw_kv_uint(&w, "rejected_total", s->rejected_total);
    jsonw_kv_num(&w, "rejected_per_second", s->rejected_rate);
    jsonw_kv_uint(&w, "datagrams_total", s->datagrams);
    jsonw_kv_uint(&w, "series", s->series);
    jsonw_obj_close(&w);
    jsonw_key(&w, "drops");
    jsonw_obj_open(&w);
    jsonw_kv_uint(&w, "ingest_total", s->dropped_total);
    jsonw_kv_num(&w, "ingest_per_second", s->dropped_rate);
    jsonw_kv_uint(&w, "ws_total", s->ws_dropped);
    jsonw_obj_close(&w);
    jsonw_kv_uint(&w, "connections", s->connections);
    jsonw_kv_uint(&w, "ws_connections", s->ws_connections);
    jsonw_kv_uint(&w, "subscribers", s->ws_subscribers);
    jsonw_kv_uint(&w, "sources_online", s->sources_online);
    jsonw_kv_uint(&w, "events_total", s->events_total);
    jsonw_kv_num(&w, "cpu_percent", s->cpu_percent);
    jsonw_kv_uint(&w, "rss_bytes", s->proc.rss_bytes);
    jsonw_kv_uint(&w, "open_fds", s->proc.open_fds);
    jsonw_kv_int(&w, "threads", s->proc.threads);
    jsonw_kv_num(&w, "loop_lag_seconds", s->loop_lag_max_s);
    jsonw_key(&w, "alerts");
    jsonw_obj_open(&w);
    jsonw_kv_uint(&w, "rules", s->alert_rules);
    jsonw_kv_uint(&w, "firing", s->alerts_firing);
    jsonw_kv_uint(&w, "pending", s->alerts_pending);
    jsonw_obj_close(&w);
    char ts[CLK_ISO_LEN];
    clk_iso8601(now, ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    buf_putc(b, '\n');
    return jsonw_error(&w);
}
