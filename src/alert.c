#include "alert.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"

/* ---- names ----------------------------------------------------------------------------- */

static const char *const op_names[] = {">", ">=", "<", "<=", "==", "!="};
static const char *const severity_names[] = {"info", "warning", "error", "critical"};
static const char *const style_names[] = {"json", "slack", "alertmanager"};
static const char *const field_names[] = {"default", "value", "rate", "count", "sum", "min",
                                          "max",     "mean",  "p50",  "p90",   "p99"};

const char *alert_op_name(alert_op_t op) { return op_names[op]; }
const char *alert_severity_name(alert_severity_t s) { return severity_names[s]; }
const char *alert_style_name(alert_style_t s) { return style_names[s]; }
const char *alert_field_name(alert_field_t f) { return field_names[f]; }

static int lookup(const char *const *names, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return (int)i;
    return -1;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- parsing ----------------------------------------------------------------------------- */

static const alert_key_doc_t keys_doc[] = {
    {"metric", "series name", "required",
     "the series the rule watches, by its plain name as JSON shows it (a counter `reqs`, not "
     "`reqs_total`; `cpu.usage` is stored as `cpu_usage`)"},
    {"source", "id or glob", "any", "the `source` label: one id, or a glob for one alert per source"},
    {"labels", "name=glob,...", "none", "further label matchers; every one must match"},
    {"field", "value, rate, count, sum, min, max, mean, p50, p90, p99", "by kind",
     "what is compared; by default a gauge's value, a counter's rate, a timer's mean, a set's size"},
    {"op", "> >= < <= == !=", "required", "how value and threshold are compared"},
    {"threshold", "number", "required", "fires when `value op threshold` holds"},
    {"clear", "number", "threshold", "hysteresis: a firing alert resolves only once `value op clear` "
     "no longer holds (> >= < <= only)"},
    {"for", "duration", "0", "the condition must hold this long before the alert fires"},
    {"severity", "info, warning, error, critical", "warning",
     "critical alerts also fail /api/v1/health"},
    {"webhook", "http:// or https:// URL", "none", "POST every firing and resolve here"},
    {"style", "json, slack, alertmanager", "json", "the webhook body (needs webhook)"},
    {"summary", "text", "none", "a sentence for the slack and alertmanager bodies"},
};

const alert_key_doc_t *alert_rule_keys(size_t *n) {
    *n = sizeof keys_doc / sizeof keys_doc[0];
    return keys_doc;
}

static bool known_key(const char *k) {
    for (size_t i = 0; i < sizeof keys_doc / sizeof keys_doc[0]; i++)
        if (strcmp(keys_doc[i].key, k) == 0) return true;
    return false;
}

#define NAME_MAX_LEN 200
#define URL_MAX_LEN 2048
#define SUMMARY_MAX_LEN 1024

static void errf(char err[ALERT_ERR_LEN], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(char err[ALERT_ERR_LEN], const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ALERT_ERR_LEN, fmt, ap);
    va_end(ap);
}

/* Series and label names as the registry stores them: [A-Za-z_][A-Za-z0-9_]* (ingest
 * sanitises everything else to '_', so any other name could never match). */
static bool name_ok(const char *s) {
    if (!*s || strlen(s) > NAME_MAX_LEN) return false;
    if (!isalpha((unsigned char)*s) && *s != '_') return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return false;
    return true;
}

/* What ingest would have made of s (for the hint in the error). */
static void sanitised(const char *s, char *out, size_t outlen) {
    size_t n = 0;
    if (isdigit((unsigned char)*s) && n + 1 < outlen) out[n++] = '_';
    for (const char *p = s; *p && n + 1 < outlen; p++)
        out[n++] = isalnum((unsigned char)*p) || *p == '_' ? *p : '_';
    out[n] = '\0';
}

static bool glob_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return false;
    return true;
}

static int parse_number(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v)) return -EINVAL;
    *out = v;
    return 0;
}

static bool url_ok(const char *u) {
    size_t n = strlen(u);
    if (n > URL_MAX_LEN) return false;
    const char *host;
    if (strncmp(u, "http://", 7) == 0)
        host = u + 7;
    else if (strncmp(u, "https://", 8) == 0)
        host = u + 8;
    else
        return false;
    if (!*host || *host == '/' || *host == ':' || *host == '?' || *host == '#') return false;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return false;
    return true;
}

/* "env=prod, dc=eu-*" → matchers. 0, or -EINVAL with err (after prefix) filled. */
static int parse_labels(alert_rule_t *r, const char *spec, const char *prefix,
                        char err[ALERT_ERR_LEN]) {
    const char *p = spec;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            errf(err, "%s labels: \"%.*s\" is not name=glob", prefix, (int)(end - p), p);
            return -EINVAL;
        }
        const char *ne = eq;
        while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t')) ne--;
        const char *vs = eq + 1, *ve = end;
        while (vs < ve && (*vs == ' ' || *vs == '\t')) vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        char name[NAME_MAX_LEN + 2];
        if ((size_t)(ne - p) > NAME_MAX_LEN) {
            errf(err, "%s labels: label name too long", prefix);
            return -EINVAL;
        }
        memcpy(name, p, (size_t)(ne - p));
        name[ne - p] = '\0';
        if (!name_ok(name) || strncmp(name, "__", 2) == 0) {
            errf(err, "%s labels: \"%s\" is not a label name ([A-Za-z_][A-Za-z0-9_]*, not "
                      "starting with __)", prefix, name);
            return -EINVAL;
        }
        if (strcmp(name, "source") == 0) {
            errf(err, "%s labels: use the source key for the source label", prefix);
            return -EINVAL;
        }
        for (int i = 0; i < r->nlabels; i++)
            if (strcmp(r->labels[i].name, name) == 0) {
                errf(err, "%s labels: %s given twice", prefix, name);
                return -EINVAL;
            }
        if (r->nlabels == ALERT_MAX_LABELS) {
            errf(err, "%s labels: at most %d matchers", prefix, ALERT_MAX_LABELS);
            return -EINVAL;
        }
        if (ve - vs > 255) {
            errf(err, "%s labels: the value of %s is longer than 255 characters", prefix, name);
            return -EINVAL;
        }
        alert_label_match_t *m = &r->labels[r->nlabels];
        m->name = strdup(name);
        m->glob = strndup(vs, (size_t)(ve - vs));
        if (!m->name || !m->glob) {
            free(m->name), free(m->glob);
            m->name = m->glob = NULL;
            errf(err, "%s out of memory", prefix);
            return -ENOMEM;
        }
        m->g = alert_glob_compile(m->glob);
        r->nlabels++;
        p = end;
    }
    if (r->nlabels == 0) {
        errf(err, "%s labels: empty (want name=glob[,name=glob])", prefix);
        return -EINVAL;
    }
    return 0;
}

static char *build_canon(const alert_rule_t *r) {
    buf_t b = BUF_INIT;
    buf_printf(&b, "metric=%s\nsource=%s\n", r->metric, r->source ? r->source : "");
    for (int i = 0; i < r->nlabels; i++)
        buf_printf(&b, "label=%s=%s\n", r->labels[i].name, r->labels[i].glob);
    buf_printf(&b, "field=%d\nop=%d\nthreshold=%.17g\nclear=%d:%.17g\nfor=%.17g\nseverity=%d\n",
               (int)r->field, (int)r->op, r->threshold, r->has_clear, r->has_clear ? r->clear : 0,
               r->for_s, (int)r->severity);
    buf_printf(&b, "webhook=%s\nstyle=%d\nsummary=%s\n", r->webhook ? r->webhook : "",
               (int)r->style, r->summary ? r->summary : "");
    return buf_steal(&b, NULL);
}

void alert_rule_free(alert_rule_t *r) {
    if (!r) return;
    free(r->name), free(r->metric), free(r->source), free(r->webhook), free(r->summary);
    free(r->file), free(r->canon);
    for (int i = 0; i < r->nlabels; i++) free(r->labels[i].name), free(r->labels[i].glob);
    for (uint32_t i = 0; i < r->inst_cap; i++)
        if (r->inst[i]) {
            skey_unref(r->inst[i]->key);
            free(r->inst[i]);
        }
    free(r->inst);
    free(r);
}

alert_rule_t *alert_rule_parse(const char *file, const char *name, const char *const *keys,
                               const char *const *values, size_t n, char err[ALERT_ERR_LEN]) {
    char prefix[360];
    snprintf(prefix, sizeof prefix, "config %.200s: [alert.%.128s]", file, name);
    alert_rule_t *r = calloc(1, sizeof *r);
    if (!r) {
        errf(err, "%s: out of memory", prefix);
        return NULL;
    }
    r->severity = ALERT_WARNING;
    r->style = ALERT_STYLE_JSON;
    r->field = ALERT_FIELD_DEFAULT;
    r->name = strdup(name);
    r->file = strdup(file);
    bool have_op = false, have_threshold = false, have_style = false;
    if (!r->name || !r->file) goto oom;

    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i], *v = values[i];
        if (!known_key(k)) {
            char known[200];
            size_t kl = 0;
            for (size_t d = 0; d < NELEM(keys_doc) && kl < sizeof known; d++)
                kl += (size_t)snprintf(known + kl, sizeof known - kl, "%s%s", d ? ", " : "",
                                       keys_doc[d].key);
            errf(err, "%s unknown key \"%.64s\" (known: %s)", prefix, k, known);
            goto fail;
        }
        if (strcmp(k, "metric") == 0) {
            if (!name_ok(v)) {
                char hint[NAME_MAX_LEN + 2];
                sanitised(v, hint, sizeof hint);
                if (*v && strlen(v) <= NAME_MAX_LEN && name_ok(hint))
                    errf(err, "%s metric: \"%.200s\" is not a series name (series are stored "
                              "sanitised: %s)", prefix, v, hint);
                else
                    errf(err, "%s metric: \"%.200s\" is not a series name ([A-Za-z_][A-Za-z0-9_]*, "
                              "at most %d characters)", prefix, v, NAME_MAX_LEN);
                goto fail;
            }
            if (!(r->metric = strdup(v))) goto oom;
        } else if (strcmp(k, "source") == 0) {
            if (!glob_ok(v, 128)) {
                errf(err, "%s source: \"%.128s\" is not a source id or glob (1 to 128 "
                          "characters, no spaces)", prefix, v);
                goto fail;
            }
            if (!(r->source = strdup(v))) goto oom;
            r->source_g = alert_glob_compile(r->source);
        } else if (strcmp(k, "labels") == 0) {
            if (parse_labels(r, v, prefix, err) < 0) goto fail;
        } else if (strcmp(k, "field") == 0) {
            int f = lookup(field_names, NELEM(field_names), v);
            if (f <= 0) {
                errf(err, "%s field: \"%.64s\" is not a field (value, rate, count, sum, min, "
                          "max, mean, p50, p90, p99)", prefix, v);
                goto fail;
            }
            r->field = (alert_field_t)f;
        } else if (strcmp(k, "op") == 0) {
            int o = lookup(op_names, NELEM(op_names), v);
            if (o < 0) {
                errf(err, "%s op: \"%.64s\" is not an operator (> >= < <= == !=)", prefix, v);
                goto fail;
            }
            r->op = (alert_op_t)o;
            have_op = true;
        } else if (strcmp(k, "threshold") == 0) {
            if (parse_number(v, &r->threshold) < 0) {
                errf(err, "%s threshold: \"%.64s\" is not a number", prefix, v);
                goto fail;
            }
            have_threshold = true;
        } else if (strcmp(k, "clear") == 0) {
            if (parse_number(v, &r->clear) < 0) {
                errf(err, "%s clear: \"%.64s\" is not a number", prefix, v);
                goto fail;
            }
            r->has_clear = true;
        } else if (strcmp(k, "for") == 0) {
            /* a week: far beyond any sensible pending time, and exact in a double */
            if (config_parse_seconds(v, &r->for_s) < 0 || r->for_s > 7 * 86400.0) {
                errf(err, "%s for: \"%.64s\" is not a duration (e.g. 0, 500ms, 10s, 5m; at "
                          "most 7d)", prefix, v);
                goto fail;
            }
        } else if (strcmp(k, "severity") == 0) {
            int s = lookup(severity_names, NELEM(severity_names), v);
            if (s < 0) {
                errf(err, "%s severity: \"%.64s\" is not a severity (info, warning, error, "
                          "critical)", prefix, v);
                goto fail;
            }
            r->severity = (alert_severity_t)s;
        } else if (strcmp(k, "webhook") == 0) {
            if (!url_ok(v)) {
                char red[160];
                errf(err, "%s webhook: \"%s\" is not an http:// or https:// URL with a host",
                     prefix, alert_url_redacted(v, red, sizeof red));
                goto fail;
            }
            if (!(r->webhook = strdup(v))) goto oom;
        } else if (strcmp(k, "style") == 0) {
            int s = lookup(style_names, NELEM(style_names), v);
            if (s < 0) {
                errf(err, "%s style: \"%.64s\" is not a payload style (json, slack, "
                          "alertmanager)", prefix, v);
                goto fail;
            }
            r->style = (alert_style_t)s;
            have_style = true;
        } else if (strcmp(k, "summary") == 0) {
            if (strlen(v) > SUMMARY_MAX_LEN) {
                errf(err, "%s summary: longer than %d characters", prefix, SUMMARY_MAX_LEN);
                goto fail;
            }
            if (!(r->summary = strdup(v))) goto oom;
        }
    }
    if (!r->metric) {
        errf(err, "%s metric: missing (the series name the rule watches)", prefix);
        goto fail;
    }
    if (!have_op) {
        errf(err, "%s op: missing (> >= < <= == !=)", prefix);
        goto fail;
    }
    if (!have_threshold) {
        errf(err, "%s threshold: missing", prefix);
        goto fail;
    }
    if (have_style && !r->webhook) {
        errf(err, "%s style: given without a webhook", prefix);
        goto fail;
    }
    if (r->has_clear) {
        char t[32], c[32];
        snprintf(t, sizeof t, "%.15g", r->threshold);
        snprintf(c, sizeof c, "%.15g", r->clear);
        if (r->op == ALERT_OP_EQ || r->op == ALERT_OP_NE) {
            errf(err, "%s clear: only for > >= < <= (op is %s)", prefix, op_names[r->op]);
            goto fail;
        }
        if ((r->op == ALERT_OP_GT || r->op == ALERT_OP_GE) && r->clear > r->threshold) {
            errf(err, "%s clear: %s is above the threshold %s (with op %s it must be at or "
                      "below it)", prefix, c, t, op_names[r->op]);
            goto fail;
        }
        if ((r->op == ALERT_OP_LT || r->op == ALERT_OP_LE) && r->clear < r->threshold) {
            errf(err, "%s clear: %s is below the threshold %s (with op %s it must be at or "
                      "above it)", prefix, c, t, op_names[r->op]);
            goto fail;
        }
    }
    if (!(r->canon = build_canon(r))) goto oom;
    return r;
oom:
    errf(err, "%s: out of memory", prefix);
fail:
    alert_rule_free(r);
    return NULL;
}

void alert_ruleset_free(alert_ruleset_t *rs) {
    for (size_t i = 0; i < rs->n; i++) alert_rule_free(rs->v[i]);
    free(rs->v);
    rs->v = NULL;
    rs->n = 0;
}

int alert_rules_parse(const config_t *c, alert_ruleset_t *out, char err[ALERT_ERR_LEN]) {
    out->v = NULL;
    out->n = 0;
    for (size_t i = 0; i < c->nsections; i++) {
        const cfg_section_t *s = &c->sections[i];
        if (strcmp(s->kind, "alert") != 0) continue;
        const char **keys = calloc(s->nkv + 1, sizeof *keys);
        const char **vals = calloc(s->nkv + 1, sizeof *vals);
        alert_rule_t **nv = realloc(out->v, (out->n + 1) * sizeof *nv);
        if (nv) out->v = nv;
        if (!keys || !vals || !nv) {
            free(keys), free(vals);
            alert_ruleset_free(out);
            errf(err, "config %.200s: [alert.%.128s]: out of memory", s->file, s->name);
            return -ENOMEM;
        }
        for (size_t k = 0; k < s->nkv; k++) keys[k] = s->kv[k].key, vals[k] = s->kv[k].value;
        alert_rule_t *r = alert_rule_parse(s->file, s->name, keys, vals, s->nkv, err);
        free(keys), free(vals);
        if (!r) {
            alert_ruleset_free(out);
            return -EINVAL;
        }
        out->v[out->n++] = r;
    }
    return 0;
}

/* ---- values and conditions ---------------------------------------------------------------- */

bool alert_series_value(const alert_rule_t *r, const series_t *s, double *out) {
    alert_field_t f = r->field;
    if (f == ALERT_FIELD_DEFAULT) {
        switch (s->kind) {
        case METRIC_COUNTER: f = ALERT_FIELD_RATE; break;
        case METRIC_TIMER: f = ALERT_FIELD_MEAN; break;
        default: f = ALERT_FIELD_VALUE; break;
        }
    }
    if (f == ALERT_FIELD_VALUE) {
        if (s->kind == METRIC_TIMER && s->last.count <= 0) return false;
        *out = s->value;
        return true;
    }
    if (f == ALERT_FIELD_RATE) {
        if (s->kind != METRIC_COUNTER) return false;
        *out = s->rate;
        return true;
    }
    if (s->kind != METRIC_TIMER || s->last.count <= 0) return false;
    switch (f) {
    case ALERT_FIELD_COUNT: *out = s->last.count; break;
    case ALERT_FIELD_SUM: *out = s->last.sum; break;
    case ALERT_FIELD_MIN: *out = s->last.min; break;
    case ALERT_FIELD_MAX: *out = s->last.max; break;
    case ALERT_FIELD_MEAN: *out = s->last.sum / s->last.count; break;
    case ALERT_FIELD_P50: *out = s->last.p50; break;
    case ALERT_FIELD_P90: *out = s->last.p90; break;
    case ALERT_FIELD_P99: *out = s->last.p99; break;
    default: return false;
    }
    return true;
}

static bool compare(alert_op_t op, double v, double t) {
    switch (op) {
    case ALERT_OP_GT: return v > t;
    case ALERT_OP_GE: return v >= t;
    case ALERT_OP_LT: return v < t;
    case ALERT_OP_LE: return v <= t;
    case ALERT_OP_EQ: return v == t;
    case ALERT_OP_NE: return !isnan(v) && v != t;
    }
    return false;
}

bool alert_holds(const alert_rule_t *r, double v) { return compare(r->op, v, r->threshold); }

bool alert_stays(const alert_rule_t *r, double v) {
    return compare(r->op, v, r->has_clear ? r->clear : r->threshold);
}

alert_glob_t alert_glob_compile(const char *p) {
    alert_glob_t g = {ALERT_GLOB_EXACT, 0};
    size_t special = strcspn(p, "*?[\\");
    if (!p[special]) return g; /* no special character: a plain string */
    if (strcmp(p, "*") == 0) {
        g.kind = ALERT_GLOB_ANY;
    } else if (p[special] == '*' && p[special + 1] == '\0') {
        g.kind = ALERT_GLOB_PREFIX;
        g.prefix_len = special;
    } else {
        g.kind = ALERT_GLOB_FULL;
    }
    return g;
}

bool alert_glob_match(const alert_glob_t *g, const char *p, const char *s) {
    switch (g->kind) {
    case ALERT_GLOB_ANY: return true;
    case ALERT_GLOB_EXACT: return strcmp(p, s) == 0;
    case ALERT_GLOB_PREFIX: return strncmp(p, s, g->prefix_len) == 0;
    default: return fnmatch(p, s, 0) == 0;
    }
}

static bool series_matches(const alert_rule_t *r, const series_t *s) {
    if (r->source && (!s->source || !alert_glob_match(&r->source_g, r->source, s->source)))
        return false;
    for (int i = 0; i < r->nlabels; i++) {
        const char *v = skey_label_value(s->key, r->labels[i].name);
        if (!v || !alert_glob_match(&r->labels[i].g, r->labels[i].glob, v)) return false;
    }
    return true;
}

/* ---- instances: open addressing by key hash, backward-shift deletion --------------------- */

static uint32_t inst_slot(const alert_rule_t *r, const series_key_t *k) {
    uint32_t mask = r->inst_cap - 1;
    uint32_t i = (uint32_t)k->hash & mask;
    while (r->inst[i] && !skey_equal(r->inst[i]->key, k)) i = (i + 1) & mask;
    return i;
}

static alert_inst_t *inst_find(const alert_rule_t *r, const series_key_t *k) {
    if (r->ninst == 0) return NULL;
    return r->inst[inst_slot(r, k)];
}

static int inst_grow(alert_rule_t *r) {
    uint32_t ncap = r->inst_cap ? r->inst_cap * 2 : 16;
    alert_inst_t **nv = calloc(ncap, sizeof *nv);
    if (!nv) return -ENOMEM;
    alert_inst_t **old = r->inst;
    uint32_t ocap = r->inst_cap;
    r->inst = nv;
    r->inst_cap = ncap;
    for (uint32_t i = 0; i < ocap; i++)
        if (old[i]) r->inst[inst_slot(r, old[i]->key)] = old[i];
    free(old);
    return 0;
}

static int inst_add(alert_rule_t *r, alert_inst_t *in) {
    if ((r->ninst + 1) * 10 > r->inst_cap * 7 && inst_grow(r) < 0) return -ENOMEM;
    r->inst[inst_slot(r, in->key)] = in;
    r->ninst++;
    return 0;
}

static void inst_del_at(alert_rule_t *r, uint32_t i) {
    uint32_t mask = r->inst_cap - 1;
    alert_inst_t *gone = r->inst[i];
    if (gone->state == ALERT_FIRING)
        r->nfiring--;
    else
        r->npending--;
    skey_unref(gone->key);
    free(gone);
    r->inst[i] = NULL;
    r->ninst--;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        alert_inst_t *x = r->inst[j];
        if (!x) return;
        uint32_t home = (uint32_t)x->key->hash & mask;
        /* x stays when its home lies cyclically in (i, j] */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        r->inst[i] = x;
        r->inst[j] = NULL;
        i = j;
    }
}

/* ---- engine ------------------------------------------------------------------------------- */

int alert_engine_init(alert_engine_t *e, uint32_t history_cap, alert_notify_fn notify, void *ctx) {
    memset(e, 0, sizeof *e);
    e->hist_cap = history_cap ? history_cap : 1;
    e->hist = calloc(e->hist_cap, sizeof *e->hist);
    if (!e->hist) return -ENOMEM;
    e->notify = notify;
    e->ctx = ctx;
    return 0;
}

void alert_engine_free(alert_engine_t *e) {
    for (size_t i = 0; i < e->n; i++) alert_rule_free(e->rules[i]);
    free(e->rules);
    for (uint32_t i = 0; i < e->hist_cap && e->hist; i++) free(e->hist[i]);
    free(e->hist);
    memset(e, 0, sizeof *e);
}

static void iso(double t, char out[CLK_ISO_LEN]) { clk_iso8601(t, out); }

void alert_labels_json(jsonw_t *w, const series_key_t *key) {
    jsonw_obj_open(w);
    for (int i = 0; i < key->nlabels; i++) {
        skey_label_t l;
        skey_label(key, i, &l);
        jsonw_kv_str(w, l.name, l.value);
    }
    jsonw_obj_close(w);
}

static void payload_fields(jsonw_t *w, const alert_note_t *n) {
    char ts[CLK_ISO_LEN];
    jsonw_kv_str(w, "rule", n->rule->name);
    jsonw_kv_str(w, "severity", severity_names[n->rule->severity]);
    jsonw_kv_str(w, "metric", n->rule->metric);
    jsonw_kv_str(w, "source", n->source);
    jsonw_kv_num(w, "value", n->value);
    jsonw_kv_num(w, "threshold", n->rule->threshold);
    iso(n->since, ts);
    jsonw_kv_str(w, "since", ts);
}

int alert_note_payload(const alert_note_t *n, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    payload_fields(&w, n);
    jsonw_obj_close(&w);
    return jsonw_error(&w);
}

static void record(alert_engine_t *e, const alert_note_t *n) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "status", n->firing ? "firing" : "resolved");
    payload_fields(&w, n);
    jsonw_key(&w, "labels");
    alert_labels_json(&w, n->key);
    char ts[CLK_ISO_LEN];
    iso(n->at, ts);
    jsonw_kv_str(&w, "at", ts);
    if (!n->firing) jsonw_kv_str(&w, "reason", n->reason);
    jsonw_obj_close(&w);
    if (jsonw_error(&w)) { /* the transition is still published; only its record is lost */
        buf_free(&b);
        return;
    }
    uint32_t slot = (e->hist_head + e->hist_n) % e->hist_cap;
    if (e->hist_n == e->hist_cap) {
        free(e->hist[e->hist_head]);
        slot = e->hist_head;
        e->hist_head = (e->hist_head + 1) % e->hist_cap;
    } else {
        e->hist_n++;
    }
    e->hist[slot] = buf_steal(&b, NULL);
}

static void report(alert_engine_t *e, const alert_rule_t *r, const alert_inst_t *in, bool firing,
                   double now, const char *reason) {
    alert_note_t n = {r, in->key, in->source, firing, in->value, in->firing_since, now, reason};
    if (firing)
        e->fired_total++;
    else
        e->resolved_total++;
    if (r->severity == ALERT_CRITICAL) e->critical_version++;
    record(e, &n);
    if (e->notify) e->notify(e->ctx, &n);
}

void alert_engine_set_rules(alert_engine_t *e, alert_ruleset_t *rs, double now, alert_reload_t *out) {
    alert_reload_t sum = {0, 0, 0, 0};
    /* every old rule that finds its successor leaves e->rules (slot set to NULL) */
    for (size_t i = 0; i < rs->n; i++) {
        alert_rule_t *nr = rs->v[i];
        size_t k = 0;
        while (k < e->n && (!e->rules[k] || strcmp(e->rules[k]->name, nr->name) != 0)) k++;
        if (k == e->n) {
            sum.added++;
            continue;
        }
        alert_rule_t *old = e->rules[k];
        e->rules[k] = NULL;
        if (strcmp(old->canon, nr->canon) == 0) {
            rs->v[i] = old; /* unchanged: the running rule, state and all */
            alert_rule_free(nr);
            sum.kept++;
        } else {
            /* changed: the instances carry over; the next pass judges them anew */
            nr->inst = old->inst, nr->ninst = old->ninst, nr->inst_cap = old->inst_cap;
            nr->npending = old->npending, nr->nfiring = old->nfiring;
            nr->matched = old->matched;
            old->inst = NULL, old->ninst = old->inst_cap = 0;
            alert_rule_free(old);
            sum.changed++;
        }
    }
    for (size_t k = 0; k < e->n; k++) { /* removed: their firing alerts resolve */
        alert_rule_t *old = e->rules[k];
        if (!old) continue;
        for (uint32_t j = 0; j < old->inst_cap; j++)
            if (old->inst[j] && old->inst[j]->state == ALERT_FIRING)
                report(e, old, old->inst[j], false, now, "rule_removed");
        alert_rule_free(old);
        sum.removed++;
    }
    free(e->rules);
    e->rules = rs->v;
    e->n = rs->n;
    rs->v = NULL;
    rs->n = 0;
    e->critical_version++; /* severities may have changed under firing alerts */
    if (out) *out = sum;
}

/* One rule, one pass: every matching series is judged; instances it did not see resolve. */
static void eval_rule(alert_engine_t *e, alert_rule_t *r, registry_t *reg, double now) {
    uint64_t gen = e->gen;
    r->matched = 0;
    family_t *f = registry_family(reg, r->metric);
    for (uint32_t i = 0; f && i < f->n; i++) {
        series_t *s = f->v[i];
        double v;
        if (!series_matches(r, s) || !alert_series_value(r, s, &v)) continue;
        r->matched++;
        alert_inst_t *in = inst_find(r, s->key);
        if (!in) {
            if (!alert_holds(r, v)) continue;
            in = calloc(1, sizeof *in);
            if (!in) continue; /* judged again next tick */
            in->key = skey_ref(s->key);
            in->source = skey_label_value(in->key, "source");
            in->state = ALERT_PENDING;
            in->pending_since = now;
            in->value = v;
            in->mark = gen;
            if (inst_add(r, in) < 0) {
                skey_unref(in->key);
                free(in);
                continue;
            }
            r->npending++;
        } else {
            in->mark = gen;
            in->value = v;
            if (in->state == ALERT_PENDING && !alert_holds(r, v)) {
                inst_del_at(r, inst_slot(r, in->key)); /* back to inactive: nothing to say */
                continue;
            }
            if (in->state == ALERT_FIRING) {
                if (alert_stays(r, v)) continue;
                report(e, r, in, false, now, "cleared");
                inst_del_at(r, inst_slot(r, in->key));
                continue;
            }
        }
        /* pending and holding: fire once it has held for `for` */
        if (now - in->pending_since >= r->for_s) {
            in->state = ALERT_FIRING;
            in->firing_since = now;
            r->npending--;
            r->nfiring++;
            report(e, r, in, true, now, NULL);
        }
    }
    /* the rest: series gone, or no longer matching (a changed rule) */
    for (uint32_t i = 0; i < r->inst_cap;) {
        alert_inst_t *in = r->inst[i];
        if (!in || in->mark == gen) {
            i++;
            continue;
        }
        if (in->state == ALERT_FIRING) report(e, r, in, false, now, "series_gone");
        inst_del_at(r, i); /* a later entry may have moved into i: look again */
    }
}

void alert_engine_eval(alert_engine_t *e, registry_t *reg, double now) {
    e->gen++;
    for (size_t i = 0; i < e->n; i++) eval_rule(e, e->rules[i], reg, now);
}

void alert_engine_counts(const alert_engine_t *e, alert_counts_t *out) {
    memset(out, 0, sizeof *out);
    out->rules = e->n;
    for (size_t i = 0; i < e->n; i++) {
        const alert_rule_t *r = e->rules[i];
        out->pending += r->npending;
        out->firing += r->nfiring;
        if (r->severity == ALERT_CRITICAL) out->critical_firing += r->nfiring;
    }
}

void alert_engine_each_critical(const alert_engine_t *e,
                                void (*fn)(void *ctx, const alert_rule_t *r, const alert_inst_t *first),
                                void *ctx) {
    for (size_t i = 0; i < e->n; i++) {
        const alert_rule_t *r = e->rules[i];
        if (r->severity != ALERT_CRITICAL || r->nfiring == 0) continue;
        const alert_inst_t *first = NULL;
        for (uint32_t k = 0; k < r->inst_cap && !first; k++)
            if (r->inst[k] && r->inst[k]->state == ALERT_FIRING) first = r->inst[k];
        fn(ctx, r, first);
    }
}

/* ---- JSON ------------------------------------------------------------------------------------ */

const char *alert_url_redacted(const char *url, char *out, size_t outlen) {
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *at = strpbrk(host, "@/?#");
    if (at && *at == '@') host = at + 1; /* user:password@ goes too */
    size_t hl = strcspn(host, "/?#");
    int sl = scheme ? (int)(scheme + 3 - url) : 0;
    snprintf(out, outlen, "%.*s%.*s%s", sl, url, (int)hl, host, host[hl] ? "/..." : "");
    return out;
}

void alert_inst_json(jsonw_t *w, const alert_rule_t *r, const alert_inst_t *in) {
    char ts[CLK_ISO_LEN];
    jsonw_obj_open(w);
    jsonw_kv_str(w, "rule", r->name);
    jsonw_kv_str(w, "state", in->state == ALERT_FIRING ? "firing" : "pending");
    jsonw_kv_str(w, "severity", severity_names[r->severity]);
    jsonw_kv_str(w, "metric", r->metric);
    jsonw_kv_str(w, "source", in->source);
    jsonw_key(w, "labels");
    alert_labels_json(w, in->key);
    jsonw_kv_num(w, "value", in->value);
    jsonw_kv_str(w, "op", op_names[r->op]);
    jsonw_kv_num(w, "threshold", r->threshold);
    iso(in->pending_since, ts);
    jsonw_kv_str(w, "pending_since", ts);
    if (in->state == ALERT_FIRING) {
        iso(in->firing_since, ts);
        jsonw_kv_str(w, "since", ts);
    } else {
        jsonw_kv_str(w, "since", NULL);
    }
    jsonw_obj_close(w);
}

static void rule_json(jsonw_t *w, const alert_rule_t *r) {
    char red[160];
    jsonw_obj_open(w);
    jsonw_kv_str(w, "name", r->name);
    jsonw_kv_str(w, "metric", r->metric);
    jsonw_kv_str(w, "source", r->source);
    jsonw_key(w, "labels");
    jsonw_obj_open(w);
    for (int i = 0; i < r->nlabels; i++) jsonw_kv_str(w, r->labels[i].name, r->labels[i].glob);
    jsonw_obj_close(w);
    jsonw_kv_str(w, "field", field_names[r->field]);
    jsonw_kv_str(w, "op", op_names[r->op]);
    jsonw_kv_num(w, "threshold", r->threshold);
    if (r->has_clear)
        jsonw_kv_num(w, "clear", r->clear);
    else
        jsonw_kv_str(w, "clear", NULL);
    jsonw_kv_num(w, "for_seconds", r->for_s);
    jsonw_kv_str(w, "severity", severity_names[r->severity]);
    jsonw_kv_str(w, "webhook", r->webhook ? alert_url_redacted(r->webhook, red, sizeof red) : NULL);
    jsonw_kv_str(w, "style", r->webhook ? style_names[r->style] : NULL);
    jsonw_kv_str(w, "summary", r->summary);
    jsonw_kv_str(w, "state", r->nfiring ? "firing" : r->npending ? "pending" : "inactive");
    jsonw_kv_uint(w, "series", r->matched);
    jsonw_kv_uint(w, "pending", r->npending);
    jsonw_kv_uint(w, "firing", r->nfiring);
    jsonw_obj_close(w);
}

int alert_engine_json(const alert_engine_t *e, double now, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_key(&w, "rules");
    jsonw_arr_open(&w);
    for (size_t i = 0; i < e->n; i++) rule_json(&w, e->rules[i]);
    jsonw_arr_close(&w);
    jsonw_key(&w, "active");
    jsonw_arr_open(&w);
    for (size_t i = 0; i < e->n; i++) {
        const alert_rule_t *r = e->rules[i];
        for (uint32_t k = 0; k < r->inst_cap; k++)
            if (r->inst[k]) alert_inst_json(&w, r, r->inst[k]);
    }
    jsonw_arr_close(&w);
    jsonw_key(&w, "history");
    jsonw_arr_open(&w);
    for (uint32_t i = 0; i < e->hist_n; i++) {
        const char *h = e->hist[(e->hist_head + i) % e->hist_cap];
        jsonw_raw(&w, h, strlen(h));
    }
    jsonw_arr_close(&w);
    alert_counts_t c;
    alert_engine_counts(e, &c);
    jsonw_kv_uint(&w, "firing", c.firing);
    jsonw_kv_uint(&w, "pending", c.pending);
    jsonw_kv_uint(&w, "fired_total", e->fired_total);
    jsonw_kv_uint(&w, "resolved_total", e->resolved_total);
    jsonw_kv_uint(&w, "history_limit", e->hist_cap);
    char ts[CLK_ISO_LEN];
    iso(now, ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    buf_putc(b, '\n');
    return jsonw_error(&w);
}
