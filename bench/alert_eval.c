/* bench_alert_eval — what alert evaluation costs the hub thread per tick.
 *
 *   bench_alert_eval [--names N] [--sources N] [--passes N]
 *
 * In-process (links metricast_core): a real registry holding names × sources gauges
 * (default 100 × 1,000 = 100,000 series, `m_NNN` × `source:sNNNN`, fed through the
 * daemon's own StatsD parser and aggregation), and one rule per name with `source = *`,
 * so every pass evaluates every series — the worst case of "per-source instances".
 *
 * Phases, each timed with CLOCK_MONOTONIC around alert_engine_eval():
 *   quiet    values below every threshold: nothing pending or firing (median of --passes)
 *   burst    every value above: one pass in which all series start firing; the notify
 *            callback does what the hub's does short of publishing: renders the event
 *            payload and an alertmanager webhook body
 *   firing   the same values again: everything firing, no transition (median)
 *   resolve  values back below: one pass in which everything resolves
 * The reference ("floor") is the least any evaluator must do: for each rule, look up its
 * family and compare every series' value with the threshold (median of --passes).
 *
 * Prints a table and one machine-readable line (`series=... quiet_ms=...`).
 * Exit status: 0, 1 when a phase did not produce the expected transitions, 2 on usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg.h"
#include "alert.h"
#include "bench_util.h"
#include "registry.h"
#include "statsd.h"
#include "webhook.h"

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sets every series to value v (one batch, as an ingest flush would). */
static int feed_all(registry_t *reg, int names, int sources, double v, double now) {
    agg_t a;
    agg_init(&a, 0);
    char line[96];
    for (int n = 0; n < names; n++)
        for (int s = 0; s < sources; s++) {
            int len = snprintf(line, sizeof line, "m_%03d:%g|g|#source:s%04d", n, v, s);
            statsd_line_t l;
            if (statsd_parse_line(line, (size_t)len, &l) != STATSD_OK || agg_add(&a, &l) != STATSD_OK) {
                agg_free(&a);
                return -1;
            }
        }
    int err = 0;
    agg_batch_t *b = agg_flush(&a, INGEST_HTTP, 0, &err);
    registry_result_t res;
    memset(&res, 0, sizeof res);
    if (b) registry_apply(reg, b, now, &res);
    agg_batch_free(b);
    agg_free(&a);
    return res.accepted == (uint64_t)names * (uint64_t)sources ? 0 : -1;
}

typedef struct counts {
    uint64_t firing, resolved;
    size_t bytes; /* rendered, so the work cannot be optimised away */
} counts_t;

static void on_note(void *ctx, const alert_note_t *n) {
    counts_t *c = ctx;
    if (n->firing)
        c->firing++;
    else
        c->resolved++;
    buf_t p = BUF_INIT, body = BUF_INIT;
    alert_note_payload(n, &p);
    webhook_alert_t wa = {n, p.data, "http://127.0.0.1:9750"};
    const char *ct;
    webhook_body(ALERT_STYLE_ALERTMANAGER, &wa, &body, &ct);
    c->bytes += p.len + body.len;
    buf_free(&p);
    buf_free(&body);
}

__attribute__((noipa)) static double floor_pass(registry_t *reg, int names, double threshold, uint64_t *hits) {
    char name[32];
    double t0 = mono_ms();
    for (int n = 0; n < names; n++) {
        snprintf(name, sizeof name, "m_%03d", n);
        family_t *f = registry_family(reg, name);
        for (uint32_t i = 0; f && i < f->n; i++) *hits += f->v[i]->value > threshold;
    }
    return mono_ms() - t0;
}

/* One pass per phase, each its own function so that `valgrind --tool=callgrind` reports
 * every phase's instructions separately (inclusive cost of pass_quiet, pass_firing, ...). */
#define PHASE(name)                                                                          \
    __attribute__((noipa)) static double name(alert_engine_t *e, registry_t *reg,            \
                                                 double now) {                               \
        double t0 = mono_ms();                                                               \
        alert_engine_eval(e, reg, now);                                                      \
        return mono_ms() - t0;                                                               \
    }
PHASE(pass_quiet)
PHASE(pass_burst)
PHASE(pass_firing)
PHASE(pass_resolve)

static double median_of(double *v, int n) {
    sort_doubles(v, (size_t)n);
    return median_sorted(v, (size_t)n);
}

int main(int argc, char **argv) {
    long names = 100, sources = 1000, passes = 20;
    for (int i = 1; i < argc; i++) {
        long *dst = NULL;
        if (strcmp(argv[i], "--names") == 0) dst = &names;
        else if (strcmp(argv[i], "--sources") == 0) dst = &sources;
        else if (strcmp(argv[i], "--passes") == 0) dst = &passes;
        if (!dst || i + 1 >= argc || (*dst = parse_long(argv[++i], 1, 1000000)) < 0) {
            fprintf(stderr, "usage: bench_alert_eval [--names N] [--sources N] [--passes N]\n");
            return 2;
        }
    }
    if (names > 1000 || sources > 10000) {
        fprintf(stderr, "bench_alert_eval: at most 1000 names and 10000 sources\n");
        return 2;
    }
    uint64_t nseries = (uint64_t)names * (uint64_t)sources;
    registry_t reg;
    if (registry_init(&reg, (uint32_t)nseries + 16, 8) < 0) return 1;
    counts_t c = {0, 0, 0};
    alert_engine_t e;
    if (alert_engine_init(&e, 1000, on_note, &c) < 0) return 1;
    alert_ruleset_t rs = {calloc((size_t)names, sizeof(alert_rule_t *)), 0};
    for (long n = 0; n < names; n++) {
        char metric[32], rname[32], err[ALERT_ERR_LEN];
        snprintf(metric, sizeof metric, "m_%03ld", n);
        snprintf(rname, sizeof rname, "r_%03ld", n);
        const char *keys[] = {"metric", "source", "op", "threshold", "clear", "severity"};
        const char *vals[] = {metric, "*", ">", "1000", "900", "critical"};
        alert_rule_t *r = alert_rule_parse("bench.ini", rname, keys, vals, 6, err);
        if (!r) {
            fprintf(stderr, "bench_alert_eval: %s\n", err);
            return 1;
        }
        rs.v[rs.n++] = r;
    }
    alert_engine_set_rules(&e, &rs, 1.7e9, NULL);

    double now = 1.7e9;
    double *v = calloc((size_t)passes, sizeof *v);
    if (!v || feed_all(&reg, (int)names, (int)sources, 50, now) < 0) {
        fprintf(stderr, "bench_alert_eval: feeding the registry failed\n");
        return 1;
    }
    int rc = 0;
    for (long i = 0; i < passes; i++) v[i] = pass_quiet(&e, &reg, now += 0.1);
    double quiet = median_of(v, (int)passes);
    uint64_t hits = 0;
    for (long i = 0; i < passes; i++) v[i] = floor_pass(&reg, (int)names, 1000, &hits);
    double floor_ms = median_of(v, (int)passes);

    feed_all(&reg, (int)names, (int)sources, 2000, now);
    double burst = pass_burst(&e, &reg, now += 0.1);
    if (c.firing != nseries) {
        fprintf(stderr, "bench_alert_eval: burst fired %llu of %llu\n",
                (unsigned long long)c.firing, (unsigned long long)nseries);
        rc = 1;
    }
    for (long i = 0; i < passes; i++) v[i] = pass_firing(&e, &reg, now += 0.1);
    double firing = median_of(v, (int)passes);
    feed_all(&reg, (int)names, (int)sources, 50, now);
    double resolve = pass_resolve(&e, &reg, now += 0.1);
    if (c.resolved != nseries) {
        fprintf(stderr, "bench_alert_eval: resolved %llu of %llu\n",
                (unsigned long long)c.resolved, (unsigned long long)nseries);
        rc = 1;
    }

    printf("alert evaluation: %llu series (%ld names x %ld sources), %ld rules with source=*\n",
           (unsigned long long)nseries, names, sources, names);
    printf("  %-34s %10s %12s\n", "phase", "ms/pass", "ns/series");
    printf("  %-34s %10.2f %12.1f\n", "floor (lookup + compare only)", floor_ms,
           floor_ms * 1e6 / (double)nseries);
    printf("  %-34s %10.2f %12.1f\n", "quiet (nothing fires)", quiet, quiet * 1e6 / (double)nseries);
    printf("  %-34s %10.2f %12.1f\n", "firing (all firing, steady)", firing,
           firing * 1e6 / (double)nseries);
    printf("  %-34s %10.2f %12.1f\n", "burst (all start firing, bodies)", burst,
           burst * 1e6 / (double)nseries);
    printf("  %-34s %10.2f %12.1f\n", "resolve (all resolve, bodies)", resolve,
           resolve * 1e6 / (double)nseries);
    printf("  rendered %zu bytes of payloads and alertmanager bodies; floor hits %llu\n", c.bytes,
           (unsigned long long)hits);
    printf("series=%llu rules=%ld floor_ms=%.2f quiet_ms=%.2f firing_ms=%.2f burst_ms=%.1f "
           "resolve_ms=%.1f quiet_over_floor=%.2f\n",
           (unsigned long long)nseries, names, floor_ms, quiet, firing, burst, resolve,
           floor_ms > 0 ? quiet / floor_ms : 0);
    free(v);
    alert_engine_free(&e);
    registry_free(&reg);
    return rc;
}
