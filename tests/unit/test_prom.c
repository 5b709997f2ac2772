/* prom: number and label-value formatting, and the whole exposition of a registry with
 * every kind — one HELP/TYPE per family before its samples, counter _total, summaries,
 * the hub's own metrics — checked by promtool when it is installed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "agg.h"
#include "buf.h"
#include "prom.h"
#include "registry.h"
#include "selfstats.h"
#include "series_key.h"
#include "statsd.h"

#define T0 1700000000u

static uint64_t ingest_rejected(const registry_result_t *res) {
    uint64_t n = 0;
    for (int i = 0; i < REJECT_REASON_COUNT; i++) n += res->rejected[i];
    return n;
}

static char *num(double v) {
    static char out[64];
    buf_t b = BUF_INIT;
    assert_int_equal(prom_number(&b, v), 0);
    assert_true(b.len < sizeof out);
    memcpy(out, b.data, b.len + 1);
    buf_free(&b);
    return out;
}

static void test_number(void **state) {
    (void)state;
    assert_string_equal(num(NAN), "NaN");
    assert_string_equal(num(-NAN), "NaN");
    assert_string_equal(num(INFINITY), "+Inf");
    assert_string_equal(num(-INFINITY), "-Inf");
    assert_string_equal(num(0), "0");
    assert_string_equal(num(1), "1");
    assert_string_equal(num(-42), "-42");
    assert_string_equal(num(1234567890123.0), "1234567890123");
    assert_string_equal(num(0.1), "0.1");
    assert_string_equal(num(-2.5), "-2.5");
    /* anything else: reads back to the same double */
    static const double vals[] = {1e-300, 3.141592653589793, 1.0 / 3, 1e20, 6.02214076e23, 0.00001};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        const char *s = num(vals[i]);
        char *end;
        assert_true(strtod(s, &end) == vals[i]);
        assert_int_equal(*end, '\0');
    }
}

static char *esc(const char *s) {
    static char out[256];
    buf_t b = BUF_INIT;
    assert_int_equal(prom_label_value(&b, s), 0);
    assert_true(b.len < sizeof out);
    memcpy(out, b.data ? b.data : "", b.len + 1);
    buf_free(&b);
    return out;
}

static void test_label_value(void **state) {
    (void)state;
    assert_string_equal(esc(""), "");
    assert_string_equal(esc("plain value"), "plain value");
    assert_string_equal(esc("a\"b"), "a\\\"b");
    assert_string_equal(esc("back\\slash"), "back\\\\slash");
    assert_string_equal(esc("two\nlines"), "two\\nlines");
    assert_string_equal(esc("\"\\\n"), "\\\"\\\\\\n");
    assert_string_equal(esc("tab\tand caf\xc3\xa9"), "tab\tand caf\xc3\xa9"); /* not escaped */
    assert_string_equal(esc("end\\"), "end\\\\");
}

/* ---- a registry with every kind -------------------------------------------------- */

static void feed(registry_t *r, const char *const *lines) {
    agg_t a;
    agg_init(&a, 0);
    for (; *lines; lines++) {
        statsd_line_t l;
        assert_int_equal(statsd_parse_line(*lines, strlen(*lines), &l), STATSD_OK);
        assert_int_equal(agg_add(&a, &l), STATSD_OK);
    }
    int err;
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
    registry_result_t res = {0};
    registry_apply(r, b, T0, &res);
    assert_int_equal(ingest_rejected(&res), 0);
    agg_batch_free(b);
    agg_free(&a);
}

/* A gauge whose label value needs every escape (not expressible in StatsD text). */
static void add_escaped_gauge(registry_t *r) {
    agg_batch_t *b = calloc(1, sizeof *b + sizeof b->d[0]);
    assert_non_null(b);
    skey_label_t l[2] = {{"path", "C:\\dir \"x\"\nnext"}, {"source", "r1"}};
    b->n = 1;
    b->d[0].key = skey_new("weird", l, 2);
    b->d[0].kind = METRIC_GAUGE;
    b->d[0].nlines = 1;
    b->d[0].v.gauge.has_abs = true;
    b->d[0].v.gauge.abs = 2.5;
    registry_result_t res = {0};
    registry_apply(r, b, T0, &res);
    assert_int_equal(res.accepted, 1);
    agg_batch_free(b);
}

static void build_registry(registry_t *r) {
    registry_init(r, 0, 0);
    feed(r, (const char *const[]){
                "http.requests:3|c|#code:200,method:GET",
                "http.requests:1|c|#code:500,method:GET",
                "jobs_done_total:7|c",
                "temp:21.5|g|#room:kitchen",
                "temp:-3|g|#room:freezer",
                "lat:10:20:30:40|ms|#source:r1",
                "lat:5|ms|#source:r2",
                "users:alice|s",
                "users:bob|s",
                "9lives:1|g",
                NULL});
    add_escaped_gauge(r);
    registry_roll(r, T0 + 1);
}

static void zero_self(hub_self_t *self) {
    memset(self, 0, sizeof *self);
    self->version = "t";
    self->nloops = 1;
}

static char *render(registry_t *r) {
    hub_self_t self;
    zero_self(&self);
    buf_t b = BUF_INIT;
    assert_int_equal(prom_render(r, &self, &b), 0);
    assert_non_null(b.data);
    size_t len;
    char *text = buf_steal(&b, &len);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Family names seen in # HELP / # TYPE lines, and where each was declared. */
typedef struct {
    char name[128];
    char type[16];
    int help, types;
    int nsamples;
} fam_t;

static fam_t *fam_find(fam_t *fams, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(fams[i].name, name) == 0) return &fams[i];
    return NULL;
}

static bool sample_belongs(const fam_t *f, const char *metric) {
    if (strcmp(metric, f->name) == 0) return true;
    if (strcmp(f->type, "summary") == 0) {
        size_t n = strlen(f->name);
        return strncmp(metric, f->name, n) == 0 &&
               (strcmp(metric + n, "_sum") == 0 || strcmp(metric + n, "_count") == 0);
    }
    return false;
}

/* Walks the exposition: every family has exactly one HELP then one TYPE, and its
 * samples follow them without another family in between. */
static int check_structure(const char *text, fam_t *fams, int cap) {
    int n = 0;
    fam_t *cur = NULL;
    const char *p = text;
    assert_true(text[strlen(text) - 1] == '\n');
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[1024];
        size_t ll = (size_t)(nl - p);
        assert_true(ll < sizeof line);
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = nl + 1;
        char name[128], rest[900];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %899[^\n]", name, rest), 2);
            fam_t *f = fam_find(fams, n, name);
            if (f) fail_msg("second # HELP for %s", name);
            assert_true(n < cap);
            f = &fams[n++];
            memset(f, 0, sizeof *f);
            snprintf(f->name, sizeof f->name, "%s", name);
            f->help = 1;
            cur = f;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[16];
            assert_int_equal(sscanf(line + 7, "%127s %15s", name, type), 2);
            assert_non_null(cur);
            if (strcmp(cur->name, name) != 0) fail_msg("# TYPE %s after # HELP %s", name, cur->name);
            if (cur->types++) fail_msg("second # TYPE for %s", name);
            if (cur->nsamples) fail_msg("# TYPE for %s after its samples", name);
            snprintf(cur->type, sizeof cur->type, "%s", type);
        } else {
            assert_true(line[0] != '#' && line[0] != '\0');
            size_t ml = strcspn(line, "{ ");
            assert_true(ml > 0 && ml < sizeof name);
            memcpy(name, line, ml);
            name[ml] = '\0';
            if (!cur || !cur->types) fail_msg("sample before any # TYPE: %s", line);
            if (!sample_belongs(cur, name)) fail_msg("sample %s inside family %s", name, cur->name);
            cur->nsamples++;
        }
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(fams[i].help, 1);
        assert_int_equal(fams[i].types, 1);
    }
    return n;
}

static void expect_line(const char *text, const char *line) {
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want)) fail_msg("missing line: %s\n--- text ---\n%s", line, text);
}

static void test_render_structure(void **state) {
    (void)state;
    registry_t r;
    build_registry(&r);
    char *text = render(&r);
    fam_t fams[64];
    int n = check_structure(text, fams, 64);

    fam_t *f = fam_find(fams, n, "http_requests_total");
    assert_non_null(f);
    assert_string_equal(f->type, "counter");
    assert_int_equal(f->nsamples, 2);
    assert_null(fam_find(fams, n, "http_requests"));
    expect_line(text, "http_requests_total{code=\"200\",method=\"GET\"} 3");
    expect_line(text, "http_requests_total{code=\"500\",method=\"GET\"} 1");

    /* a name already ending in _total is not doubled */
    f = fam_find(fams, n, "jobs_done_total");
    assert_non_null(f);
    assert_string_equal(f->type, "counter");
    assert_null(strstr(text, "_total_total"));
    expect_line(text, "jobs_done_total 7");

    f = fam_find(fams, n, "temp");
    assert_string_equal(f->type, "gauge");
    expect_line(text, "temp{room=\"kitchen\"} 21.5");
    expect_line(text, "temp{room=\"freezer\"} -3");

    f = fam_find(fams, n, "lat");
    assert_string_equal(f->type, "summary");
    assert_int_equal(f->nsamples, 10);
    expect_line(text, "lat_sum{source=\"r1\"} 100");
    expect_line(text, "lat_count{source=\"r1\"} 4");
    expect_line(text, "lat_sum{source=\"r2\"} 5");
    expect_line(text, "lat_count{source=\"r2\"} 1");
    static const char *const qs[] = {"0.5", "0.9", "0.99"};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "\nlat{source=\"r1\",quantile=\"%s\"} ", qs[i]);
        const char *at = strstr(text, want);
        assert_non_null(at);
        double v = strtod(at + strlen(want), NULL);
        assert_true(v >= 10 * 0.99 && v <= 40 * 1.01);
        snprintf(want, sizeof want, "\nlat{source=\"r2\",quantile=\"%s\"} ", qs[i]);
        at = strstr(text, want);
        assert_non_null(at);
        assert_true(fabs(strtod(at + strlen(want), NULL) - 5) <= 0.05);
    }

    f = fam_find(fams, n, "users");
    assert_string_equal(f->type, "gauge"); /* sets are gauges */
    expect_line(text, "users 2");

    f = fam_find(fams, n, "_9lives"); /* sanitised name */
    assert_non_null(f);
    expect_line(text, "_9lives 1");

    expect_line(text, "weird{path=\"C:\\\\dir \\\"x\\\"\\nnext\",source=\"r1\"} 2.5");

    /* the hub's own metrics */
    expect_line(text, "metricast_build_info{version=\"t\"} 1");
    expect_line(text, "metricast_ingest_lines_total{transport=\"udp\"} 0");
    expect_line(text, "metricast_ingest_lines_total{transport=\"http\"} 0");
    expect_line(text, "metricast_ingest_lines_total{transport=\"ws\"} 0");
    expect_line(text, "metricast_ingest_rejected_total{reason=\"bad_name\"} 0");
    expect_line(text, "metricast_ingest_rejected_total{reason=\"kind_conflict\"} 0");
    assert_null(strstr(text, "reason=\"ok\""));
    assert_null(strstr(text, "reason=\"empty\""));
    expect_line(text, "metricast_ingest_dropped_total{reason=\"udp_buffer\"} 0");
    expect_line(text, "metricast_series 0");
    expect_line(text, "metricast_loop_lag_seconds{loop=\"hub\"} 0");
    assert_null(strstr(text, "worker0"));
    expect_line(text, "process_open_fds 0");
    static const char *const self_fams[] = {
        "metricast_build_info", "metricast_ingest_lines_total", "metricast_ingest_rejected_total",
        "metricast_ingest_dropped_total", "metricast_ingest_datagrams_total", "metricast_series",
        "metricast_sources_online", "metricast_connections", "metricast_ws_connections",
        "metricast_ws_subscribers", "metricast_ws_sent_total", "metricast_ws_dropped_total",
        "metricast_ws_queue_fill_ratio", "metricast_events_total",
        "metricast_store_write_errors_total", "metricast_store_points_dropped_total",
        "metricast_store_bad_rows_total",
        "metricast_alert_rules", "metricast_alerts_pending", "metricast_alerts_firing",
        "metricast_alerts_fired_total", "metricast_webhook_sent_total",
        "metricast_webhook_failed_total", "metricast_webhook_retried_total",
        "metricast_webhook_dropped_total", "metricast_webhook_queue",
        "metricast_http_requests_total",
        "metricast_http_errors_total", "metricast_auth_denied_total", "metricast_limit_hits_total",
        "metricast_loop_lag_seconds", "metricast_loop_connections",
        "metricast_connections_handed_over_total", "process_cpu_seconds_total",
        "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
        "process_max_fds", "process_start_time_seconds"};
    for (size_t i = 0; i < sizeof self_fams / sizeof self_fams[0]; i++)
        if (!fam_find(fams, n, self_fams[i])) fail_msg("no family %s", self_fams[i]);
    /* the self families + 7 of ours */
    assert_int_equal(n, (int)(sizeof self_fams / sizeof self_fams[0]) + 7);

    free(text);
    registry_free(&r);
}

static void test_render_empty_registry(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    char *text = render(&r);
    fam_t fams[64];
    assert_int_equal(check_structure(text, fams, 64), 39); /* the self families */
    free(text);
    registry_free(&r);
}

/* A family's producer can name its HELP text (the host source's node_* families); the
 * host's own counters appear only when it runs. */
static const char *help_for(const char *name, char *buf, size_t cap) {
    if (strcmp(name, "node_load1") != 0 && strcmp(name, "node_cpu_seconds_total") != 0)
        return NULL;
    snprintf(buf, cap, "Specific help for %s.", name);
    return buf;
}

static void test_family_help_and_host_counters(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    r.family_help = help_for;
    feed(&r, (const char *const[]){"node_load1:0.5|g", "node_cpu_seconds_total:3|c", "other:1|g",
                                   NULL});
    hub_self_t self;
    zero_self(&self);
    buf_t b = BUF_INIT;
    assert_int_equal(prom_render(&r, &self, &b), 0);
    expect_line(b.data, "# HELP node_load1 Specific help for node_load1.");
    expect_line(b.data, "# HELP node_cpu_seconds_total Specific help for node_cpu_seconds_total.");
    expect_line(b.data, "# HELP other Gauge from metricast ingest (StatsD |g or JSON).");
    assert_null(strstr(b.data, "metricast_host_"));
    buf_free(&b);
    self.host_on = true;
    self.host_read_errors[HOST_F_MEMINFO] = 4;
    self.host_collections = 7;
    self.host_cpu_seconds = 0.25;
    b = (buf_t)BUF_INIT;
    assert_int_equal(prom_render(&r, &self, &b), 0);
    expect_line(b.data, "metricast_host_read_errors_total{file=\"meminfo\"} 4");
    expect_line(b.data, "metricast_host_read_errors_total{file=\"net/dev\"} 0");
    expect_line(b.data, "metricast_host_collections_total 7");
    expect_line(b.data, "metricast_host_collect_cpu_seconds_total 0.25");
    fam_t fams[128];
    int with_host = check_structure(b.data, fams, 128);
    buf_free(&b);
    self.host_on = false;
    b = (buf_t)BUF_INIT;
    assert_int_equal(prom_render(&r, &self, &b), 0);
    assert_int_equal(with_host, check_structure(b.data, fams, 128) + 6); /* metricast_host_* */
    buf_free(&b);
    registry_free(&r);
}

static void test_render_workers_and_self_values(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    hub_self_t self;
    zero_self(&self);
    self.nloops = 3;
    self.loop_lag_s[1] = 0.25;
    self.series = 12;
    self.lines[INGEST_HTTP] = 5;
    self.rejected[REG_REJECT_SERIES_LIMIT] = 9;
    self.ws_fill_ratio = 0.5;
    buf_t b = BUF_INIT;
    assert_int_equal(prom_render(&r, &self, &b), 0);
    expect_line(b.data, "metricast_loop_lag_seconds{loop=\"worker0\"} 0.25");
    expect_line(b.data, "metricast_loop_lag_seconds{loop=\"worker1\"} 0");
    expect_line(b.data, "metricast_series 12");
    expect_line(b.data, "metricast_ingest_lines_total{transport=\"http\"} 5");
    expect_line(b.data, "metricast_ingest_rejected_total{reason=\"series_limit\"} 9");
    expect_line(b.data, "metricast_ws_queue_fill_ratio 0.5");
    buf_free(&b);
    registry_free(&r);
}

/* Runs promtool check metrics on text; returns its exit status, or -1 without it. */
static int promtool(const char *text) {
    if (access("/usr/bin/promtool", X_OK) != 0) return -1;
    char path[] = "/tmp/test_prom_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    assert_true(rc != -1 && WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

static void test_promtool(void **state) {
    (void)state;
    registry_t r;
    build_registry(&r);
    char *text = render(&r);
    int rc = promtool(text);
    if (rc < 0) {
        free(text);
        registry_free(&r);
        skip();
    }
    if (rc != 0) fail_msg("promtool check metrics exited %d on:\n%s", rc, text);
    free(text);
    registry_free(&r);
}

/* Exposition names are unique across families: a counter "foo" is exposed as foo_total,
 * so a later gauge "foo_total" is refused (name_conflict); a timer "lat" owns lat_sum and
 * lat_count; process_* and metricast_* are the hub's own (reserved_name); a timer may not
 * carry a "quantile" label (its summary lines add one). The scrape stays valid. */
static uint64_t feed_one(registry_t *r, const char *line, int *reason) {
    agg_t a;
    agg_init(&a, 0);
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(line, strlen(line), &l), STATSD_OK);
    int rc = agg_add(&a, &l);
    uint64_t accepted = 0;
    *reason = rc;
    if (rc == STATSD_OK) {
        int err;
        agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
        registry_result_t res = {0};
        registry_apply(r, b, T0, &res);
        accepted = res.accepted;
        for (int i = 0; i < REJECT_REASON_COUNT; i++)
            if (res.rejected[i]) *reason = i;
        agg_batch_free(b);
    }
    agg_free(&a);
    return accepted;
}

static void test_family_name_collisions_refused(void **state) {
    (void)state;
    registry_t r;
    registry_init(&r, 0, 0);
    int why;
    assert_int_equal(feed_one(&r, "foo:1|c", &why), 1);
    assert_int_equal(feed_one(&r, "foo_total:2|g", &why), 0);
    assert_int_equal(why, REG_REJECT_NAME_CONFLICT);
    assert_int_equal(feed_one(&r, "bar_total:2|g", &why), 1);
    assert_int_equal(feed_one(&r, "bar:1|c", &why), 0); /* would be bar_total too */
    assert_int_equal(why, REG_REJECT_NAME_CONFLICT);
    assert_int_equal(feed_one(&r, "lat:1|ms", &why), 1);
    assert_int_equal(feed_one(&r, "lat_sum:1|g", &why), 0);
    assert_int_equal(why, REG_REJECT_NAME_CONFLICT);
    assert_int_equal(feed_one(&r, "lat_count:1|c", &why), 1); /* exposed as lat_count_total */
    assert_int_equal(feed_one(&r, "process_open_fds:3|g", &why), 0);
    assert_int_equal(why, REG_REJECT_RESERVED_NAME);
    assert_int_equal(feed_one(&r, "q:1|ms|#quantile:x", &why), 0);
    assert_int_equal(why, STATSD_BAD_TAGS);
    registry_roll(&r, T0 + 1);
    char *text = render(&r);
    fam_t fams[64];
    check_structure(text, fams, 64);
    free(text);
    registry_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_number),
        cmocka_unit_test(test_label_value),
        cmocka_unit_test(test_render_structure),
        cmocka_unit_test(test_render_empty_registry),
        cmocka_unit_test(test_render_workers_and_self_values),
        cmocka_unit_test(test_family_help_and_host_counters),
        cmocka_unit_test(test_promtool),
        cmocka_unit_test(test_family_name_collisions_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
