/* alert — threshold rules on live series: parsing and validation, evaluation every tick,
 * the state of every instance across ticks, and the record of what fired and resolved.
 *
 * A rule comes from an [alert.NAME] section of the config file (SPEC section 8):
 *
 *   metric = cpu_usage      series name (required)
 *   source = robot_*        optional: the `source` label, an id or a glob
 *   labels = env=prod,dc=eu-*   optional: more label matchers (value globs), all must hold
 *   field = p99             optional: which figure of the series is compared (below)
 *   op = >                  > >= < <= == != (required)
 *   threshold = 90          (required)
 *   clear = 85              optional hysteresis, for > >= < <= only
 *   for = 10s               optional, default 0
 *   severity = warning      info | warning | error | critical (default warning)
 *   webhook = http://...    optional; style = json | slack | alertmanager (default json)
 *   summary = text          optional; used by the slack and alertmanager bodies
 *
 * Instances: every series of `metric` that matches `source` and `labels` is evaluated on
 * its own (one alert per series, as Prometheus does per label set); with a glob `source`
 * that is one instance per source. A series that does not exist yet is not firing.
 *
 * The compared value (`field`): by default a gauge's value, a counter's rate (per second
 * over the last closed second: a total only grows, so a threshold on it fires once and
 * never resolves), a timer's mean over its last second with samples, a set's distinct
 * members. `field` may name value, rate (counters), or count, sum, min, max, mean, p50,
 * p90, p99 (timers); a series whose kind lacks the field is not evaluated (not firing).
 *
 * State machine of one instance, at each evaluation:
 *   inactive --(value op threshold)--> pending --(held for `for`)--> firing
 *   pending  --(condition fails)-----> inactive (nothing published)
 *   firing   stays firing while `value op clear` holds (`value op threshold` without
 *            clear), else it resolves. With for = 0, inactive goes straight to firing.
 *   An instance whose series stops matching (gone, or the rule was changed) resolves with
 *   its last value; a removed rule resolves its firing instances.
 *
 * Only transitions to firing and to resolved are reported (alert_notify_fn); pending is
 * visible in alert_engine_json(). Hub thread only; nothing here locks or does I/O. */
#ifndef MC_ALERT_H
#define MC_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "jsonw.h"
#include "registry.h"
#include "series_key.h"

struct config;

#define ALERT_ERR_LEN 512
#define ALERT_MAX_LABELS 8

typedef enum { ALERT_OP_GT = 0, ALERT_OP_GE, ALERT_OP_LT, ALERT_OP_LE, ALERT_OP_EQ, ALERT_OP_NE } alert_op_t;
typedef enum { ALERT_INFO = 0, ALERT_WARNING, ALERT_ERROR, ALERT_CRITICAL } alert_severity_t;
typedef enum { ALERT_STYLE_JSON = 0, ALERT_STYLE_SLACK, ALERT_STYLE_ALERTMANAGER } alert_style_t;
typedef enum {
    ALERT_FIELD_DEFAULT = 0, /* by kind: see the header comment */
    ALERT_FIELD_VALUE,
    ALERT_FIELD_RATE,
    ALERT_FIELD_COUNT,
    ALERT_FIELD_SUM,
    ALERT_FIELD_MIN,
    ALERT_FIELD_MAX,
    ALERT_FIELD_MEAN,
    ALERT_FIELD_P50,
    ALERT_FIELD_P90,
    ALERT_FIELD_P99,
} alert_field_t;

typedef enum { ALERT_PENDING = 1, ALERT_FIRING = 2 } alert_state_t;

/* A glob as fnmatch(3) reads it (flags 0), classified once so that the common shapes
 * ("*", an exact id, "prefix*") cost a comparison, not an fnmatch call, per series. */
typedef enum { ALERT_GLOB_FULL = 0, ALERT_GLOB_ANY, ALERT_GLOB_EXACT, ALERT_GLOB_PREFIX } alert_glob_kind_t;

typedef struct alert_glob {
    alert_glob_kind_t kind;
    size_t prefix_len; /* ALERT_GLOB_PREFIX */
} alert_glob_t;

/* Classifies pattern; and whether s matches it (the same answer as fnmatch(pattern, s, 0)). */
alert_glob_t alert_glob_compile(const char *pattern);
bool alert_glob_match(const alert_glob_t *g, const char *pattern, const char *s);

typedef struct alert_label_match {
    char *name, *glob; /* owned */
    alert_glob_t g;
} alert_label_match_t;

/* One instance: a series under a rule that is pending or firing (inactive ones have no
 * state and no entry). */
typedef struct alert_inst {
    series_key_t *key;  /* one reference */
    const char *source; /* the key's `source` label, or NULL */
    alert_state_t state;
    double pending_since; /* unix seconds the condition first held */
    double firing_since;  /* unix seconds it started firing (0 while pending) */
    double value;         /* at the last evaluation */
    uint64_t mark;        /* engine generation of the last evaluation that saw it */
} alert_inst_t;

typedef struct alert_rule {
    char *name, *metric, *source, *webhook, *summary; /* owned; source/webhook/summary NULL if unset */
    char *file;                                       /* the config file it came from */
    alert_glob_t source_g;
    alert_label_match_t labels[ALERT_MAX_LABELS];
    int nlabels;
    alert_field_t field;
    alert_op_t op;
    double threshold;
    bool has_clear;
    double clear;
    double for_s;
    alert_severity_t severity;
    alert_style_t style;
    char *canon; /* the whole definition as text: equal text = unchanged rule on reload */
    /* state (engine): open-addressing table of instances by key hash */
    alert_inst_t **inst;
    uint32_t ninst, inst_cap;
    uint32_t matched; /* series evaluated at the last pass */
    uint32_t npending, nfiring;
} alert_rule_t;

/* A parsed set of rules (no state yet), in file order. */
typedef struct alert_ruleset {
    alert_rule_t **v; /* owned */
    size_t n;
} alert_ruleset_t;

/* Parses and validates every [alert.NAME] section of c. 0 with *out filled (possibly
 * empty), or -EINVAL / -ENOMEM with one line in err naming file, section and key:
 *   config /etc/m.ini: [alert.cpu_hot] op: ">>" is not an operator (> >= < <= == !=) */
int alert_rules_parse(const struct config *c, alert_ruleset_t *out, char err[ALERT_ERR_LEN]);
void alert_ruleset_free(alert_ruleset_t *rs);

/* Parses one rule from key/value pairs (what alert_rules_parse does per section; exported
 * for tests). file and name are used for the rule and its error messages. NULL with err
 * filled on a bad rule. */
alert_rule_t *alert_rule_parse(const char *file, const char *name, const char *const *keys,
                               const char *const *values, size_t n, char err[ALERT_ERR_LEN]);
void alert_rule_free(alert_rule_t *r);

/* The keys of an [alert.NAME] section, in documentation order (the parser accepts exactly
 * these; the generated config reference lists them). */
typedef struct alert_key_doc {
    const char *key;
    const char *values;  /* what it takes */
    const char *def;     /* default, or "required" */
    const char *meaning;
} alert_key_doc_t;
const alert_key_doc_t *alert_rule_keys(size_t *n);

const char *alert_op_name(alert_op_t op);
const char *alert_severity_name(alert_severity_t s);
const char *alert_style_name(alert_style_t s);
const char *alert_field_name(alert_field_t f);

/* The figure of s that r compares; false when s's kind has no such field (or a timer has
 * had no samples yet). */
bool alert_series_value(const alert_rule_t *r, const series_t *s, double *out);
/* value op threshold */
bool alert_holds(const alert_rule_t *r, double v);
/* A firing alert stays firing: value op clear (op threshold without clear). */
bool alert_stays(const alert_rule_t *r, double v);

/* ---- the engine ------------------------------------------------------------------------ */

/* A transition, handed to the notify callback during alert_engine_eval/set_rules. All
 * pointers are borrowed for the duration of the call. */
typedef struct alert_note {
    const alert_rule_t *rule;
    const series_key_t *key; /* the series (name and labels) */
    const char *source;      /* its `source` label, or NULL */
    bool firing;             /* true: alert.firing; false: alert.resolved */
    double value;            /* that caused the transition (resolved: last seen) */
    double since;            /* unix seconds it started firing */
    double at;               /* now */
    const char *reason;      /* resolved: "cleared", "series_gone", "rule_removed" */
} alert_note_t;

typedef void (*alert_notify_fn)(void *ctx, const alert_note_t *n);

typedef struct alert_engine {
    alert_rule_t **rules; /* owned, in file order */
    size_t n;
    uint64_t gen; /* evaluation passes */
    alert_notify_fn notify;
    void *ctx;
    /* history: the last hist_cap transitions as JSON objects (owned strings), a ring;
     * each is the event payload plus "status", "at" and, when resolved, "reason" */
    char **hist;
    uint32_t hist_cap, hist_n, hist_head;
    uint64_t fired_total, resolved_total;
    uint64_t critical_version; /* bumped whenever the set of firing critical alerts changes */
} alert_engine_t;

/* history_cap: transitions kept for alert_engine_json (at least 1). 0 or -ENOMEM. */
int alert_engine_init(alert_engine_t *e, uint32_t history_cap, alert_notify_fn notify, void *ctx);
/* Frees rules, instances and history; reports nothing. */
void alert_engine_free(alert_engine_t *e);

typedef struct alert_reload {
    unsigned added, changed, removed, kept;
} alert_reload_t;

/* Replaces the rules with rs's (whose rules move into the engine; rs is left empty).
 * Rules are matched by name: an unchanged one keeps its rule and state (the new copy is
 * dropped); a changed one takes over the old one's instances, which the next evaluation
 * judges by the new definition; a removed one resolves its firing instances now
 * (reason "rule_removed"); a new one starts with none. now: unix seconds. */
void alert_engine_set_rules(alert_engine_t *e, alert_ruleset_t *rs, double now, alert_reload_t *out);

/* Evaluates every rule against reg at now (unix seconds), reporting transitions. */
void alert_engine_eval(alert_engine_t *e, registry_t *reg, double now);

/* The event payload of a transition, exactly {rule, severity, metric, source, value,
 * threshold, since} (since: ISO 8601 UTC). */
int alert_note_payload(const alert_note_t *n, buf_t *b);

typedef struct alert_counts {
    uint64_t rules, pending, firing, critical_firing;
} alert_counts_t;
void alert_engine_counts(const alert_engine_t *e, alert_counts_t *out);

/* For health: calls fn for every rule of severity critical with firing instances:
 * n instances, the first instance's key. */
void alert_engine_each_critical(const alert_engine_t *e,
                                void (*fn)(void *ctx, const alert_rule_t *r, const alert_inst_t *first),
                                void *ctx);

/* GET /api/v1/alerts: {"rules":[...],"active":[...],"history":[...],...} */
int alert_engine_json(const alert_engine_t *e, double now, buf_t *b);
/* One instance as the JSON object /api/v1/alerts lists under "active". */
void alert_inst_json(jsonw_t *w, const alert_rule_t *r, const alert_inst_t *in);
/* The labels of key as a JSON object (name excluded). */
void alert_labels_json(jsonw_t *w, const series_key_t *key);
/* The URL's scheme://host[:port] and "/..." when there was a path (Slack's URLs carry the
 * secret in the path): for logs and answers. */
const char *alert_url_redacted(const char *url, char *out, size_t outlen);

#endif
