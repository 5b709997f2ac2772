/* alert: rule parsing and validation (one clear line per mistake), and the evaluation
 * state machine against a real registry — for, clear hysteresis, flapping, per-source
 * instances, fields by kind, series that vanish, reload semantics, the bounded history. */
#include <errno.h>
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "agg.h"
#include "alert.h"
#include "config.h"
#include "registry.h"
#include "statsd.h"

#define T0 1700000000.0

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses "key=value" strings (NULL-terminated) as one [alert.name] section of "t.ini". */
static alert_rule_t *parse_kv(const char *name, char err[ALERT_ERR_LEN], const char *const *kv) {
    const char *keys[32], *vals[32];
    char store[32][256];
    size_t n = 0;
    for (; kv[n]; n++) {
        const char *eq = strchr(kv[n], '=');
        assert_non_null(eq);
        snprintf(store[n], sizeof store[n], "%.*s", (int)(eq - kv[n]), kv[n]);
        keys[n] = store[n];
        vals[n] = eq + 1;
    }
    err[0] = '\0';
    return alert_rule_parse("t.ini", name, keys, vals, n, err);
}

#define RULE(err, ...) parse_kv("r", (err), (const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *want1, const char *want2, const char *const *kv) {
    char err[ALERT_ERR_LEN];
    alert_rule_t *r = parse_kv("r", err, kv);
    if (r) {
        alert_rule_free(r);
        fail_msg("rule accepted; expected an error containing \"%s\"", want1);
    }
    if (!strstr(err, "config t.ini: [alert.r] ")) fail_msg("error does not name file and section: %s", err);
    if (!strstr(err, want1)) fail_msg("error \"%s\" lacks \"%s\"", err, want1);
    if (want2 && !strstr(err, want2)) fail_msg("error \"%s\" lacks \"%s\"", err, want2);
    if (strchr(err, '\n')) fail_msg("error is more than one line: %s", err);
}

#define BAD(w1, w2, ...) expect_error((w1), (w2), (const char *const[]){__VA_ARGS__, NULL})

static void feed(registry_t *reg, double now, const char *line) {
    agg_t a;
    agg_init(&a, 0);
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(line, strlen(line), &l), STATSD_OK);
    assert_int_equal(agg_add(&a, &l), STATSD_OK);
    int err;
    agg_batch_t *b = agg_flush(&a, INGEST_HTTP, 0, &err);
    registry_result_t res;
    memset(&res, 0, sizeof res);
    registry_apply(reg, b, now, &res);
    assert_int_equal(res.accepted, 1);
    agg_batch_free(b);
    agg_free(&a);
}

typedef struct seen {
    int firing, resolved;
    char last_rule[64], last_source[64], last_reason[32];
    double last_value, last_since, last_at;
    char payload[512];
} seen_t;

static void on_note(void *ctx, const alert_note_t *n) {
    seen_t *s = ctx;
    if (n->firing)
        s->firing++;
    else
        s->resolved++;
    snprintf(s->last_rule, sizeof s->last_rule, "%s", n->rule->name);
    snprintf(s->last_source, sizeof s->last_source, "%s", n->source ? n->source : "(null)");
    snprintf(s->last_reason, sizeof s->last_reason, "%s", n->reason ? n->reason : "");
    s->last_value = n->value;
    s->last_since = n->since;
    s->last_at = n->at;
    buf_t b = BUF_INIT;
    assert_int_equal(alert_note_payload(n, &b), 0);
    snprintf(s->payload, sizeof s->payload, "%s", b.data);
    buf_free(&b);
}

typedef struct fixture {
    registry_t reg;
    alert_engine_t e;
    seen_t seen;
} fixture_t;

static fixture_t *fx_new(uint32_t history) {
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(registry_init(&f->reg, 1000, 60), 0);
    assert_int_equal(alert_engine_init(&f->e, history, on_note, &f->seen), 0);
    return f;
}

static void fx_free(fixture_t *f) {
    alert_engine_free(&f->e);
    registry_free(&f->reg);
    free(f);
}

/* Installs the rules (each a NULL-terminated kv list) into the engine. */
static void fx_rules(fixture_t *f, double now, alert_reload_t *out, int n, ...) {
    alert_ruleset_t rs = {calloc((size_t)n + 1, sizeof(alert_rule_t *)), 0};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *name = va_arg(ap, const char *);
        const char *const *kv = va_arg(ap, const char *const *);
        char err[ALERT_ERR_LEN];
        alert_rule_t *r = parse_kv(name, err, kv);
        if (!r) fail_msg("rule %s: %s", name, err);
        rs.v[rs.n++] = r;
    }
    va_end(ap);
    alert_engine_set_rules(&f->e, &rs, now, out);
    assert_null(rs.v);
}

#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})

static const alert_rule_t *rule_named(const alert_engine_t *e, const char *name) {
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->rules[i]->name, name) == 0) return e->rules[i];
    return NULL;
}

static json_t *engine_json(const alert_engine_t *e) {
    buf_t b = BUF_INIT;
    assert_int_equal(alert_engine_json(e, T0, &b), 0);
    json_error_t je;
    json_t *v = json_loads(b.data, 0, &je);
    if (!v) fail_msg("bad JSON (%s): %s", je.text, b.data);
    buf_free(&b);
    return v;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static void test_parse_full_rule(void **state) {
    (void)state;
    char err[ALERT_ERR_LEN];
    alert_rule_t *r = RULE(err, "metric=cpu_usage", "source=robot_*", "labels=env=prod, dc = eu-*",
                           "field=p99", "op=>=", "threshold=90.5", "clear=85", "for=10s",
                           "severity=critical", "webhook=https://hooks.example.com/T/B/secret",
                           "style=slack", "summary=CPU is hot");
    if (!r) fail_msg("%s", err);
    assert_string_equal(r->metric, "cpu_usage");
    assert_string_equal(r->source, "robot_*");
    assert_int_equal(r->nlabels, 2);
    assert_string_equal(r->labels[0].name, "env");
    assert_string_equal(r->labels[0].glob, "prod");
    assert_string_equal(r->labels[1].name, "dc");
    assert_string_equal(r->labels[1].glob, "eu-*");
    assert_int_equal(r->field, ALERT_FIELD_P99);
    assert_int_equal(r->op, ALERT_OP_GE);
    assert_true(r->threshold == 90.5);
    assert_true(r->has_clear && r->clear == 85);
    assert_true(r->for_s == 10);
    assert_int_equal(r->severity, ALERT_CRITICAL);
    assert_int_equal(r->style, ALERT_STYLE_SLACK);
    assert_string_equal(r->summary, "CPU is hot");
    alert_rule_free(r);
}

static void test_parse_defaults(void **state) {
    (void)state;
    char err[ALERT_ERR_LEN];
    alert_rule_t *r = RULE(err, "metric=q", "op=<", "threshold=-3e2");
    if (!r) fail_msg("%s", err);
    assert_null(r->source);
    assert_int_equal(r->nlabels, 0);
    assert_int_equal(r->field, ALERT_FIELD_DEFAULT);
    assert_int_equal(r->severity, ALERT_WARNING);
    assert_int_equal(r->style, ALERT_STYLE_JSON);
    assert_true(r->for_s == 0);
    assert_false(r->has_clear);
    assert_true(r->threshold == -300);
    assert_null(r->webhook);
    alert_rule_free(r);
    static const char *const ops[] = {">", ">=", "<", "<=", "==", "!="};
    for (int i = 0; i < 6; i++) {
        char op[16];
        snprintf(op, sizeof op, "op=%s", ops[i]);
        r = RULE(err, "metric=q", op, "threshold=1");
        if (!r) fail_msg("%s: %s", op, err);
        assert_int_equal((int)r->op, i);
        assert_string_equal(alert_op_name(r->op), ops[i]);
        alert_rule_free(r);
    }
}

static void test_parse_errors(void **state) {
    (void)state;
    BAD("unknown key \"treshold\"", "known:", "metric=a", "op=>", "treshold=1");
    BAD("op: \">>\" is not an operator", "> >= < <= == !=", "metric=a", "op=>>", "threshold=1");
    BAD("op: missing", NULL, "metric=a", "threshold=1");
    BAD("metric: missing", NULL, "op=>", "threshold=1");
    BAD("threshold: missing", NULL, "metric=a", "op=>");
    BAD("threshold: \"ninety\" is not a number", NULL, "metric=a", "op=>", "threshold=ninety");
    BAD("threshold: \"inf\" is not a number", NULL, "metric=a", "op=>", "threshold=inf");
    BAD("for: \"10 parsecs\" is not a duration", NULL, "metric=a", "op=>", "threshold=1",
        "for=10 parsecs");
    BAD("for: \"-1s\" is not a duration", NULL, "metric=a", "op=>", "threshold=1", "for=-1s");
    BAD("for: \"8d\"", "at most 7d", "metric=a", "op=>", "threshold=1", "for=8d");
    BAD("severity: \"fatal\" is not a severity", "info, warning, error, critical", "metric=a",
        "op=>", "threshold=1", "severity=fatal");
    BAD("style: \"teams\" is not a payload style", NULL, "metric=a", "op=>", "threshold=1",
        "webhook=http://h/x", "style=teams");
    BAD("style: given without a webhook", NULL, "metric=a", "op=>", "threshold=1", "style=slack");
    BAD("webhook: \"ftp://h\" is not an http:// or https:// URL", NULL, "metric=a", "op=>",
        "threshold=1", "webhook=ftp://h");
    BAD("webhook:", "URL with a host", "metric=a", "op=>", "threshold=1", "webhook=http:///x");
    BAD("metric: \"cpu.usage\" is not a series name", "sanitised: cpu_usage", "metric=cpu.usage",
        "op=>", "threshold=1");
    BAD("metric: \"\" is not a series name", NULL, "metric=", "op=>", "threshold=1");
    BAD("clear: 95 is above the threshold 90", "op >", "metric=a", "op=>", "threshold=90",
        "clear=95");
    BAD("clear: 5 is below the threshold 10", "op <=", "metric=a", "op=<=", "threshold=10",
        "clear=5");
    BAD("clear: only for > >= < <=", "op is ==", "metric=a", "op===", "threshold=1", "clear=1");
    BAD("clear: \"x\" is not a number", NULL, "metric=a", "op=>", "threshold=1", "clear=x");
    BAD("field: \"p95\" is not a field", NULL, "metric=a", "op=>", "threshold=1", "field=p95");
    BAD("field: \"default\" is not a field", NULL, "metric=a", "op=>", "threshold=1",
        "field=default");
    BAD("labels: \"env\" is not name=glob", NULL, "metric=a", "op=>", "threshold=1", "labels=env");
    BAD("labels: \"__x\" is not a label name", NULL, "metric=a", "op=>", "threshold=1",
        "labels=__x=1");
    BAD("labels: use the source key", NULL, "metric=a", "op=>", "threshold=1", "labels=source=a");
    BAD("labels: env given twice", NULL, "metric=a", "op=>", "threshold=1", "labels=env=a,env=b");
    BAD("labels: empty", NULL, "metric=a", "op=>", "threshold=1", "labels= , ");
    BAD("source: \"a b\" is not a source id or glob", NULL, "metric=a", "op=>", "threshold=1",
        "source=a b");
}

/* The webhook URL's secret path never reaches an error message. */
static void test_webhook_url_redacted(void **state) {
    (void)state;
    char out[160];
    assert_string_equal(alert_url_redacted("https://hooks.slack.com/services/T/B/XYZ", out, sizeof out),
                        "https://hooks.slack.com/...");
    assert_string_equal(alert_url_redacted("http://127.0.0.1:9000", out, sizeof out),
                        "http://127.0.0.1:9000");
    assert_string_equal(alert_url_redacted("http://user:pw@h:1/p?q", out, sizeof out), "http://h:1/...");
    BAD("is not an http", NULL, "metric=a", "op=>", "threshold=1",
        "webhook=https://hooks.slack.com/services/T/B/TOPSECRET x");
    char err[ALERT_ERR_LEN];
    assert_null(RULE(err, "metric=a", "op=>", "threshold=1",
                     "webhook=https://hooks.slack.com/services/T/B/TOPSECRET x"));
    assert_null(strstr(err, "TOPSECRET"));
}

/* From a real INI file through the config loader: file order, and the error names the
 * file, the section and the key. */
static void test_rules_from_config_file(void **state) {
    (void)state;
    char path[] = "/tmp/mc-alert-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *ini = "[alert.b_rule]\nmetric = x\nop = >\nthreshold = 1\n"
                      "[stream]\ntick = 1\n"
                      "[alert.a_rule]\nmetric = y\nop = <\nthreshold = 2\nfor = 1m\n";
    assert_int_equal(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    config_t *c = calloc(1, sizeof *c);
    char cerr[CFG_ERR_LEN], err[ALERT_ERR_LEN];
    config_defaults(c);
    assert_int_equal(config_load_file(c, path, cerr), 0);
    alert_ruleset_t rs;
    assert_int_equal(alert_rules_parse(c, &rs, err), 0);
    assert_int_equal(rs.n, 2);
    assert_string_equal(rs.v[0]->name, "b_rule");
    assert_string_equal(rs.v[1]->name, "a_rule");
    assert_true(rs.v[1]->for_s == 60);
    assert_string_equal(rs.v[1]->file, path);
    alert_ruleset_free(&rs);
    config_free(c);

    FILE *f = fopen(path, "w");
    fputs("[alert.ok]\nmetric = x\nop = >\nthreshold = 1\n[alert.broken]\nmetric = x\n"
          "op = =>\nthreshold = 1\n", f);
    fclose(f);
    config_defaults(c);
    assert_int_equal(config_load_file(c, path, cerr), 0);
    assert_int_equal(alert_rules_parse(c, &rs, err), -EINVAL);
    assert_null(rs.v);
    char want[256];
    snprintf(want, sizeof want, "config %s: [alert.broken] op: \"=>\" is not an operator", path);
    if (!strstr(err, want)) fail_msg("got: %s", err);
    config_free(c);
    free(c);
    unlink(path);
}

/* ---- conditions ----------------------------------------------------------------------------- */

static void test_conditions(void **state) {
    (void)state;
    char err[ALERT_ERR_LEN];
    alert_rule_t *r = RULE(err, "metric=a", "op=>", "threshold=90", "clear=85");
    assert_true(alert_holds(r, 90.1));
    assert_false(alert_holds(r, 90));
    assert_true(alert_stays(r, 85.01));
    assert_false(alert_stays(r, 85)); /* resolving at the clear value itself */
    assert_false(alert_holds(r, NAN));
    assert_false(alert_stays(r, NAN));
    alert_rule_free(r);
    r = RULE(err, "metric=a", "op=<=", "threshold=10");
    assert_true(alert_holds(r, 10));
    assert_true(alert_stays(r, 10)); /* without clear the threshold decides both ways */
    assert_false(alert_stays(r, 10.5));
    alert_rule_free(r);
    r = RULE(err, "metric=a", "op=!=", "threshold=0");
    assert_true(alert_holds(r, 1));
    assert_false(alert_holds(r, 0));
    assert_false(alert_holds(r, NAN));
    alert_rule_free(r);
    r = RULE(err, "metric=a", "op===", "threshold=3");
    assert_true(alert_holds(r, 3));
    assert_false(alert_holds(r, 3.0001));
    alert_rule_free(r);
}

/* The classified matcher answers exactly as fnmatch(pattern, s, 0) does. */
static void test_glob_shapes_match_fnmatch(void **state) {
    (void)state;
    static const char *const pats[] = {"*", "robot_1", "robot_*", "robot_?", "*_1", "r[a-z]*",
                                       "a\\*", "", "robot_**", "*robot*"};
    static const char *const strs[] = {"robot_1", "robot_12", "robot_", "r", "", "a*", "ax",
                                       "xrobot_1", "robot"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        alert_glob_t g = alert_glob_compile(pats[i]);
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
            bool want = fnmatch(pats[i], strs[k], 0) == 0;
            if (alert_glob_match(&g, pats[i], strs[k]) != want)
                fail_msg("pattern \"%s\" on \"%s\": fnmatch says %d", pats[i], strs[k], want);
        }
    }
    assert_int_equal(alert_glob_compile("*").kind, ALERT_GLOB_ANY);
    assert_int_equal(alert_glob_compile("robot_1").kind, ALERT_GLOB_EXACT);
    assert_int_equal(alert_glob_compile("robot_*").kind, ALERT_GLOB_PREFIX);
    assert_int_equal(alert_glob_compile("*_1").kind, ALERT_GLOB_FULL);
}

/* ---- the state machine on a real registry --------------------------------------------------- */

static void test_for_duration(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    fx_rules(f, T0, NULL, 1, "hot", KV("metric=cpu", "op=>", "threshold=90", "for=3s"));
    alert_engine_eval(&f->e, &f->reg, T0); /* no series yet: simply not firing */
    assert_int_equal(rule_named(&f->e, "hot")->matched, 0);
    assert_int_equal(f->seen.firing, 0);

    feed(&f->reg, T0, "cpu:95|g");
    alert_engine_eval(&f->e, &f->reg, T0);
    const alert_rule_t *r = rule_named(&f->e, "hot");
    assert_int_equal(r->npending, 1);
    assert_int_equal(f->seen.firing, 0);
    alert_engine_eval(&f->e, &f->reg, T0 + 2.9);
    assert_int_equal(f->seen.firing, 0);
    alert_engine_eval(&f->e, &f->reg, T0 + 3);
    assert_int_equal(f->seen.firing, 1);
    assert_int_equal(r->nfiring, 1);
    assert_int_equal(r->npending, 0);
    assert_true(f->seen.last_since == T0 + 3);
    assert_true(f->seen.last_value == 95);
    assert_string_equal(f->seen.last_source, "(null)");
    for (int i = 4; i < 10; i++) alert_engine_eval(&f->e, &f->reg, T0 + i);
    assert_int_equal(f->seen.firing, 1); /* once, not once per tick */

    /* `for` delays firing only: below the threshold it resolves at the next pass */
    feed(&f->reg, T0 + 10, "cpu:10|g");
    alert_engine_eval(&f->e, &f->reg, T0 + 10);
    assert_int_equal(f->seen.resolved, 1);
    assert_string_equal(f->seen.last_reason, "cleared");
    /* a pending condition that lapses publishes nothing and starts over */
    feed(&f->reg, T0 + 11, "cpu:99|g");
    alert_engine_eval(&f->e, &f->reg, T0 + 11);
    alert_engine_eval(&f->e, &f->reg, T0 + 13);
    feed(&f->reg, T0 + 13.5, "cpu:50|g");
    alert_engine_eval(&f->e, &f->reg, T0 + 13.5);
    feed(&f->reg, T0 + 14, "cpu:99|g");
    alert_engine_eval(&f->e, &f->reg, T0 + 14);
    alert_engine_eval(&f->e, &f->reg, T0 + 16.9);
    assert_int_equal(f->seen.firing, 1);
    assert_int_equal(r->npending, 1);
    alert_engine_eval(&f->e, &f->reg, T0 + 17);
    assert_int_equal(f->seen.firing, 2);
    fx_free(f);
}

/* Values flapping inside the hysteresis band: one firing, then one resolve once the value
 * goes past `clear`. */
static void test_flapping_in_hysteresis_band(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    fx_rules(f, T0, NULL, 1, "hot", KV("metric=cpu", "op=>", "threshold=90", "clear=85"));
    static const double vals[] = {95, 87, 91, 86, 99, 85.5, 92, 88};
    double t = T0;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++, t += 1) {
        char line[64];
        snprintf(line, sizeof line, "cpu:%g|g", vals[i]);
        feed(&f->reg, t, line);
        alert_engine_eval(&f->e, &f->reg, t);
    }
    assert_int_equal(f->seen.firing, 1);
    assert_int_equal(f->seen.resolved, 0);
    feed(&f->reg, t, "cpu:84|g");
    alert_engine_eval(&f->e, &f->reg, t);
    assert_int_equal(f->seen.resolved, 1);
    assert_true(f->seen.last_value == 84);
    assert_true(f->seen.last_since == T0); /* resolved carries when it started firing */
    /* and without clear the same values flap every time */
    fixture_t *g = fx_new(100);
    fx_rules(g, T0, NULL, 1, "hot", KV("metric=cpu", "op=>", "threshold=90"));
    t = T0;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++, t += 1) {
        char line[64];
        snprintf(line, sizeof line, "cpu:%g|g", vals[i]);
        feed(&g->reg, t, line);
        alert_engine_eval(&g->e, &g->reg, t);
    }
    assert_int_equal(g->seen.firing, 4);
    assert_int_equal(g->seen.resolved, 4);
    fx_free(g);
    fx_free(f);
}

static void test_source_glob_instances(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    fx_rules(f, T0, NULL, 2, "any", KV("metric=temp", "source=robot_*", "op=>", "threshold=50"),
             "one", KV("metric=temp", "source=robot_2", "op=>", "threshold=50"));
    feed(&f->reg, T0, "temp:60|g|#source:robot_1");
    feed(&f->reg, T0, "temp:70|g|#source:robot_2");
    feed(&f->reg, T0, "temp:10|g|#source:robot_3");
    feed(&f->reg, T0, "temp:99|g|#source:drone_1");
    feed(&f->reg, T0, "temp:99|g"); /* no source label: matches neither */
    alert_engine_eval(&f->e, &f->reg, T0);
    const alert_rule_t *any = rule_named(&f->e, "any"), *one = rule_named(&f->e, "one");
    assert_int_equal(any->matched, 3);
    assert_int_equal(any->nfiring, 2);
    assert_int_equal(one->matched, 1);
    assert_int_equal(one->nfiring, 1);
    assert_int_equal(f->seen.firing, 3);
    /* robot_1 cools down: only its instance resolves */
    feed(&f->reg, T0 + 1, "temp:20|g|#source:robot_1");
    alert_engine_eval(&f->e, &f->reg, T0 + 1);
    assert_int_equal(f->seen.resolved, 1);
    assert_string_equal(f->seen.last_source, "robot_1");
    assert_int_equal(any->nfiring, 1);
    json_t *v = engine_json(&f->e);
    json_t *active = json_object_get(v, "active");
    assert_int_equal(json_array_size(active), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *a = json_array_get(active, i);
        assert_string_equal(json_string_value(json_object_get(a, "source")), "robot_2");
        assert_string_equal(json_string_value(json_object_get(a, "state")), "firing");
    }
    json_decref(v);
    fx_free(f);
}

static void test_label_matchers(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    fx_rules(f, T0, NULL, 1, "lat", KV("metric=lat", "labels=env=prod,dc=eu-*", "op=>", "threshold=1"));
    feed(&f->reg, T0, "lat:5|g|#env:prod,dc:eu-west");
    feed(&f->reg, T0, "lat:5|g|#env:prod,dc:us-east");
    feed(&f->reg, T0, "lat:5|g|#env:dev,dc:eu-west");
    feed(&f->reg, T0, "lat:5|g|#env:prod");
    alert_engine_eval(&f->e, &f->reg, T0);
    assert_int_equal(rule_named(&f->e, "lat")->matched, 1);
    assert_int_equal(f->seen.firing, 1);
    fx_free(f);
}

/* What is compared, by kind and field. */
static void test_fields_by_kind(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    fx_rules(f, T0, NULL, 5, "reqs", KV("metric=reqs", "op=>", "threshold=5"),
             "reqs_total", KV("metric=reqs", "field=value", "op=>", "threshold=100"),
             "slow", KV("metric=lat", "field=p99", "op=>", "threshold=500"),
             "mean", KV("metric=lat", "op=>", "threshold=600"),
             "gauge_p99", KV("metric=g", "field=p99", "op=>", "threshold=0"));
    uint32_t sec = (uint32_t)T0;
    for (int i = 0; i < 10; i++) feed(&f->reg, sec + 0.1, "reqs:1|c");
    for (int i = 0; i < 50; i++) feed(&f->reg, sec + 0.1, "lat:10|ms");
    for (int i = 0; i < 50; i++) feed(&f->reg, sec + 0.1, "lat:1000|ms");
    feed(&f->reg, sec + 0.1, "g:5|g");
    registry_roll(&f->reg, sec + 1);
    alert_engine_eval(&f->e, &f->reg, sec + 1);
    const alert_rule_t *reqs = rule_named(&f->e, "reqs");
    assert_int_equal(reqs->nfiring, 1); /* rate 10/s > 5 */
    assert_int_equal(rule_named(&f->e, "reqs_total")->nfiring, 0); /* total 10 */
    assert_int_equal(rule_named(&f->e, "slow")->nfiring, 1);       /* p99 ~ 1000 */
    assert_int_equal(rule_named(&f->e, "mean")->nfiring, 0);       /* mean 505 */
    const alert_rule_t *gp = rule_named(&f->e, "gauge_p99");
    assert_int_equal(gp->matched, 0); /* a gauge has no p99: not evaluated */
    assert_int_equal(gp->nfiring, 0);
    /* the counter goes idle: its rate falls to 0 at the next roll and the alert resolves */
    registry_roll(&f->reg, sec + 2);
    alert_engine_eval(&f->e, &f->reg, sec + 2);
    assert_int_equal(reqs->nfiring, 0);
    assert_string_equal(f->seen.last_rule, "reqs");
    fx_free(f);
}

/* Reload: unchanged rules keep their state, changed ones are judged anew, removed ones
 * resolve, a changed selector resolves what no longer matches. */
static void test_reload_semantics(void **state) {
    (void)state;
    fixture_t *f = fx_new(100);
    alert_reload_t rr;
    fx_rules(f, T0, &rr, 3, "keep", KV("metric=a", "op=>", "threshold=1"),
             "change", KV("metric=a", "op=>", "threshold=1"),
             "drop", KV("metric=a", "op=>", "threshold=1", "severity=critical"));
    assert_int_equal(rr.added, 3);
    feed(&f->reg, T0, "a:5|g");
    alert_engine_eval(&f->e, &f->reg, T0);
    assert_int_equal(f->seen.firing, 3);
    const alert_rule_t *keep = rule_named(&f->e, "keep");
    uint64_t cv = f->e.critical_version;

    /* same "keep", "change" now needs 10 (its alert clears at the next pass), "drop" gone,
     * "fresh" new */
    fx_rules(f, T0 + 1, &rr, 3, "keep", KV("metric=a", "op=>", "threshold=1"),
             "change", KV("metric=a", "op=>", "threshold=10"),
             "fresh", KV("metric=a", "op=>", "threshold=1"));
    assert_int_equal(rr.kept, 1);
    assert_int_equal(rr.changed, 1);
    assert_int_equal(rr.removed, 1);
    assert_int_equal(rr.added, 1);
    assert_ptr_equal(rule_named(&f->e, "keep"), keep); /* the very same rule, state and all */
    assert_int_equal(keep->nfiring, 1);
    assert_int_equal(f->seen.resolved, 1);
    assert_string_equal(f->seen.last_rule, "drop");
    assert_string_equal(f->seen.last_reason, "rule_removed");
    assert_true(f->e.critical_version != cv);
    assert_int_equal(rule_named(&f->e, "change")->nfiring, 1); /* carried over */

    alert_engine_eval(&f->e, &f->reg, T0 + 1);
    assert_int_equal(f->seen.resolved, 2); /* "change": 5 > 10 no longer holds */
    assert_int_equal(rule_named(&f->e, "change")->nfiring, 0);
    assert_int_equal(f->seen.firing, 4); /* "fresh" fired; "keep" did not fire again */
    assert_string_equal(f->seen.last_rule, "fresh");

    /* a changed threshold that still holds keeps firing without a new event */
    fx_rules(f, T0 + 2, &rr, 3, "keep", KV("metric=a", "op=>", "threshold=2"),
             "change", KV("metric=a", "op=>", "threshold=10"),
             "fresh", KV("metric=b", "op=>", "threshold=1"));
    alert_engine_eval(&f->e, &f->reg, T0 + 2);
    assert_int_equal(rule_named(&f->e, "keep")->nfiring, 1);
    assert_int_equal(f->seen.firing, 4);
    /* "fresh" now watches b: its instance on a no longer matches */
    assert_int_equal(f->seen.resolved, 3);
    assert_string_equal(f->seen.last_rule, "fresh");
    assert_string_equal(f->seen.last_reason, "series_gone");
    fx_free(f);
}

static void test_history_bounded_and_json(void **state) {
    (void)state;
    fixture_t *f = fx_new(3);
    fx_rules(f, T0, NULL, 1, "x", KV("metric=v", "source=*", "op=>", "threshold=0",
                                     "severity=error"));
    for (int i = 0; i < 3; i++) {
        feed(&f->reg, T0 + i, "v:1|g|#source:s1");
        alert_engine_eval(&f->e, &f->reg, T0 + i + 0.5);
        feed(&f->reg, T0 + i + 0.6, "v:0|g|#source:s1");
        alert_engine_eval(&f->e, &f->reg, T0 + i + 0.7);
    }
    assert_int_equal(f->seen.firing, 3);
    assert_int_equal(f->seen.resolved, 3);
    json_t *v = engine_json(&f->e);
    json_t *h = json_object_get(v, "history");
    assert_int_equal(json_array_size(h), 3); /* the last three of six */
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "status")), "resolved");
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 2), "status")), "resolved");
    json_t *last = json_array_get(h, 2);
    assert_string_equal(json_string_value(json_object_get(last, "reason")), "cleared");
    assert_string_equal(json_string_value(json_object_get(last, "source")), "s1");
    assert_string_equal(json_string_value(json_object_get(last, "severity")), "error");
    assert_int_equal(json_integer_value(json_object_get(v, "history_limit")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "fired_total")), 3);
    json_t *rule = json_array_get(json_object_get(v, "rules"), 0);
    assert_string_equal(json_string_value(json_object_get(rule, "state")), "inactive");
    assert_string_equal(json_string_value(json_object_get(rule, "op")), ">");
    assert_true(json_is_null(json_object_get(rule, "clear")));
    assert_true(json_is_null(json_object_get(rule, "webhook")));
    json_decref(v);

    /* the event payload: exactly these seven fields */
    json_error_t je;
    json_t *p = json_loads(f->seen.payload, 0, &je);
    assert_non_null(p);
    assert_int_equal(json_object_size(p), 7);
    static const char *const keys[] = {"rule", "severity", "metric", "source", "value",
                                       "threshold", "since"};
    for (int i = 0; i < 7; i++)
        if (!json_object_get(p, keys[i])) fail_msg("payload lacks %s: %s", keys[i], f->seen.payload);
    assert_string_equal(json_string_value(json_object_get(p, "since")), "2023-11-14T22:13:22.500Z");
    json_decref(p);
    fx_free(f);
}

/* Many instances in one rule: the table grows, deletes shift entries back, none is lost. */
static void test_many_instances(void **state) {
    (void)state;
    fixture_t *f = fx_new(10);
    fx_rules(f, T0, NULL, 1, "m", KV("metric=load", "source=*", "op=>", "threshold=50"));
    char line[96];
    for (int i = 0; i < 500; i++) {
        snprintf(line, sizeof line, "load:99|g|#source:s%d", i);
        feed(&f->reg, T0, line);
    }
    alert_engine_eval(&f->e, &f->reg, T0);
    const alert_rule_t *r = rule_named(&f->e, "m");
    assert_int_equal(r->nfiring, 500);
    for (int i = 0; i < 500; i += 2) { /* every other one clears */
        snprintf(line, sizeof line, "load:1|g|#source:s%d", i);
        feed(&f->reg, T0 + 1, line);
    }
    alert_engine_eval(&f->e, &f->reg, T0 + 1);
    assert_int_equal(r->nfiring, 250);
    assert_int_equal(r->ninst, 250);
    assert_int_equal(f->seen.resolved, 250);
    alert_engine_eval(&f->e, &f->reg, T0 + 2);
    assert_int_equal(f->seen.firing, 500); /* the survivors are all still found */
    assert_int_equal(f->seen.resolved, 250);
    alert_counts_t c;
    alert_engine_counts(&f->e, &c);
    assert_int_equal(c.firing, 250);
    fx_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full_rule),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_webhook_url_redacted),
        cmocka_unit_test(test_rules_from_config_file),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_glob_shapes_match_fnmatch),
        cmocka_unit_test(test_for_duration),
        cmocka_unit_test(test_flapping_in_hysteresis_band),
        cmocka_unit_test(test_source_glob_instances),
        cmocka_unit_test(test_label_matchers),
        cmocka_unit_test(test_fields_by_kind),
        cmocka_unit_test(test_reload_semantics),
        cmocka_unit_test(test_history_bounded_and_json),
        cmocka_unit_test(test_many_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
