#include "config_doc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "buf.h"
#include "config.h"
#include "version.h"

/* One line per section for the rendered documents; a section added to the table without
 * an entry here is still documented, only without its blurb. */
static const struct {
    const char *section, *what;
} blurbs[] = {
    {"server", "the HTTP + WebSocket listener and its I/O threads"},
    {"statsd", "StatsD over UDP"},
    {"store", "the data directory and the aggregation job"},
    {"stream", "live updates to WebSocket subscribers"},
    {"nats", "scale-out: hubs sharing live traffic through NATS (docs/SCALING.md)"},
    {"log", "logging (logfmt lines on stderr)"},
    {"http", "HTTP/1.1 limits and timeouts"},
    {"ws", "WebSocket limits, keepalive and per-connection backpressure"},
    {"health", "the /api/v1/health verdict"},
    {"series", "the series registry and in-memory history"},
    {"events", "the retained event window"},
    {"sources", "telemetry source sessions"},
    {"host", "the built-in source `host`: this machine's metrics, read from /proc and /sys"},
    {"debug", "test hooks; leave at their defaults in production"},
    {"alerts", "alert rule evaluation (the rules themselves are [alert.NAME] sections, below)"},
    {"webhook", "delivery of alert webhooks (timeouts, retries, the queue)"},
};

/* Settings the example file sets explicitly; everything else is a commented default. */
static const char *const example_active[] = {"server.listen", "statsd.listen", "log.level"};

static const char *blurb(const char *section) {
    for (size_t i = 0; i < sizeof blurbs / sizeof blurbs[0]; i++)
        if (strcmp(blurbs[i].section, section) == 0) return blurbs[i].what;
    return NULL;
}

static void env_name(const cfg_opt_t *o, char *out, size_t outlen) {
    size_t n = (size_t)snprintf(out, outlen, "METRICAST_");
    for (const char *p = o->flag; *p && n + 1 < outlen; p++)
        out[n++] = *p == '-' ? '_' : (*p >= 'a' && *p <= 'z') ? (char)(*p - 32) : *p;
    out[n] = '\0';
}

static const char *type_name(cfg_type_t t) {
    switch (t) {
    case CFG_T_ADDR: return "address";
    case CFG_T_ADDR_OFF: return "address or off";
    case CFG_T_PATH: return "path";
    case CFG_T_NATS_URL: return "URL";
    case CFG_T_SECONDS: return "duration";
    case CFG_T_SIZE: return "size";
    case CFG_T_INT: return "integer";
    case CFG_T_U32: return "integer";
    case CFG_T_BOOL: return "boolean";
    case CFG_T_LOG_LEVEL: return "level";
    case CFG_T_RATIO: return "fraction";
    case CFG_T_FILE: return "path or empty";
    case CFG_T_ORIGINS: return "origins";
    case CFG_T_NETS: return "networks";
    case CFG_T_HUB_ID: return "hub id or empty";
    case CFG_T_SUBJECT: return "subject prefix";
    }
    return "value";
}

static void fmt_num(cfg_type_t t, double v, char *out, size_t outlen) {
    if (t == CFG_T_SIZE) {
        static const char suffix[] = "gmk";
        for (int i = 0; i < 3; i++) {
            double unit = (double)(1ULL << (10 * (3 - i)));
            if (v >= unit && v / unit == (double)(long long)(v / unit)) {
                snprintf(out, outlen, "%lld%c", (long long)(v / unit), suffix[i]);
                return;
            }
        }
        snprintf(out, outlen, "%.15g", v);
    } else if (t == CFG_T_SECONDS) {
        if (v < 1)
            snprintf(out, outlen, "%.15gms", v * 1000);
        else if (v >= 86400 && v / 86400 == (double)(long long)(v / 86400))
            snprintf(out, outlen, "%lldd", (long long)(v / 86400));
        else if (v >= 3600 && v / 3600 == (double)(long long)(v / 3600))
            snprintf(out, outlen, "%lldh", (long long)(v / 3600));
        else if (v >= 60 && v / 60 == (double)(long long)(v / 60))
            snprintf(out, outlen, "%lldm", (long long)(v / 60));
        else
            snprintf(out, outlen, "%.15gs", v);
    } else {
        snprintf(out, outlen, "%.15g", v);
    }
}

/* "" when the option has no numeric range */
static void range_str(const cfg_opt_t *o, char *out, size_t outlen) {
    out[0] = '\0';
    if (o->min == o->max) return;
    char lo[40], hi[40];
    fmt_num(o->type, o->min, lo, sizeof lo);
    fmt_num(o->type, o->max, hi, sizeof hi);
    snprintf(out, outlen, "%s – %s", lo, hi);
}

static bool first_of_section(const cfg_opt_t *o, size_t i) {
    for (size_t j = 0; j < i; j++)
        if (strcmp(o[j].section, o[i].section) == 0) return false;
    return true;
}

/* ---- Markdown ----------------------------------------------------------------------- */

static void md_cell(buf_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            buf_puts(b, "\\|");
        else
            buf_putc(b, *s);
    }
}

char *config_doc_markdown(void) {
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    buf_t b = BUF_INIT;
    buf_puts(&b,
             "# Configuration reference\n\n"
             "<!-- Generated from the option table in src/config.c by tools/gen_config_doc.c.\n"
             "     Do not edit: run `make config-doc` after changing an option. -->\n\n"
             "Every setting of `metricastd` comes from one table, read by the INI parser, the\n"
             "environment, the command-line flags, `--help` and this page. Precedence: built-in\n"
             "default < configuration file (`--config FILE` or `METRICAST_CONFIG`) <\n"
             "environment (`METRICAST_<FLAG>`: the flag upper-cased, `-` as `_`) < flags.\n\n"
             "Value formats:\n\n"
             "- **duration**: seconds, with an optional unit: `1.5`, `500ms`, `10s`, `2m`, `1h`, "
             "`1d`\n"
             "- **size**: bytes, with an optional binary multiple: `4096`, `64k`, `4m`, `1g`\n"
             "- **address**: `HOST:PORT` with a numeric IPv4 or IPv6 host (`[::1]:9750`; "
             "`localhost`\n  means `127.0.0.1`); port 0 lets the kernel choose\n"
             "- **boolean**: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`; a bare flag "
             "(`--demo`) is true\n\n"
             "A bad value, an unknown section or an unknown key stops the daemon with one line "
             "on\nstderr naming the setting, exit status 2. `metricastd --check-config FILE` "
             "validates a\nfile and prints the effective configuration (after environment and "
             "flags) with\nsecrets masked. A commented example with every key: "
             "[examples/metricastd.conf](../examples/metricastd.conf).\n");
    char env[96], range[96];
    for (size_t i = 0; i < n; i++) {
        if (!first_of_section(o, i)) continue;
        const char *what = blurb(o[i].section);
        buf_printf(&b, "\n## [%s]\n\n", o[i].section);
        if (what) buf_printf(&b, "%c%s.\n\n", what[0] >= 'a' && what[0] <= 'z' ? what[0] - 32 : what[0], what + 1);
        buf_puts(&b, "| key | flag | environment | type | default | range | meaning |\n"
                     "|---|---|---|---|---|---|---|\n");
        for (size_t k = i; k < n; k++) {
            if (strcmp(o[k].section, o[i].section)) continue;
            env_name(&o[k], env, sizeof env);
            range_str(&o[k], range, sizeof range);
            buf_printf(&b, "| `%s` | `--%s%s", o[k].key, o[k].flag, o[k].metavar ? " " : "");
            md_cell(&b, o[k].metavar ? o[k].metavar : ""); /* "on|off": a pipe splits cells */
            buf_printf(&b, "` | `%s` | %s | %s%s%s | %s | ", env, type_name(o[k].type),
                       *o[k].def ? "`" : "", *o[k].def ? o[k].def : "(empty)",
                       *o[k].def ? "`" : "", range);
            md_cell(&b, o[k].help);
            if (config_is_secret(&o[k])) buf_puts(&b, " (secret: masked by --check-config)");
            buf_puts(&b, " |\n");
        }
    }
    size_t nk;
    const alert_key_doc_t *ak = alert_rule_keys(&nk);
    buf_puts(&b, "\n## [alert.NAME]\n\n"
                 "One section per alert rule; NAME is letters, digits, `_`, `-` or `.`. Rules are "
                 "evaluated\nat every stream tick and reloaded in place on SIGHUP. A mistake stops "
                 "the daemon (exit 2)\nwith one line naming the file, the section and the key.\n\n"
                 "| key | takes | default | meaning |\n|---|---|---|---|\n");
    for (size_t k = 0; k < nk; k++) {
        buf_printf(&b, "| `%s` | ", ak[k].key);
        md_cell(&b, ak[k].values);
        buf_puts(&b, " | ");
        md_cell(&b, ak[k].def);
        buf_puts(&b, " | ");
        md_cell(&b, ak[k].meaning);
        buf_puts(&b, " |\n");
    }
    buf_puts(&b, "\n```ini\n[alert.cpu_hot]\nmetric = cpu_usage\nsource = *\nop = >\n"
                 "threshold = 90\nclear = 85\nfor = 10s\nseverity = warning\n"
                 "webhook = http://127.0.0.1:9000/hook\nstyle = json\n```\n");
    return buf_steal(&b, NULL);
}

/* ---- man page ----------------------------------------------------------------------- */

static void roff_text(buf_t *b, const char *s) {
    bool bol = true;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\'')) buf_puts(b, "\\&");
        bol = false;
        if (*s == '\\')
            buf_puts(b, "\\e");
        else if (*s == '-')
            buf_puts(b, "\\-");
        else if (*s == '\n') {
            buf_putc(b, '\n');
            bol = true;
        } else
            buf_putc(b, *s);
    }
}

static void man_options(buf_t *b) {
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    char env[96], range[96];
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, ".TP\n.B \\-\\-");
        roff_text(b, o[i].flag);
        if (o[i].metavar) {
            buf_puts(b, " \\fI");
            roff_text(b, o[i].metavar);
            buf_puts(b, "\\fR");
        }
        buf_putc(b, '\n');
        roff_text(b, o[i].help);
        buf_puts(b, ".\n.br\nDefault: ");
        if (*o[i].def) {
            buf_puts(b, "\\fB");
            roff_text(b, o[i].def);
            buf_puts(b, "\\fR");
        } else {
            buf_puts(b, "empty");
        }
        range_str(&o[i], range, sizeof range);
        if (*range) {
            char *dash = strstr(range, " – ");
            if (dash) {
                *dash = '\0';
                buf_puts(b, "; range ");
                roff_text(b, range);
                buf_puts(b, " to ");
                roff_text(b, dash + strlen(" – "));
            }
        }
        if (config_is_secret(&o[i])) buf_puts(b, "; secret (masked by \\-\\-check\\-config)");
        buf_puts(b, ".\n.br\nINI \\fB[");
        roff_text(b, o[i].section);
        buf_puts(b, "] ");
        roff_text(b, o[i].key);
        env_name(&o[i], env, sizeof env);
        buf_puts(b, "\\fR, environment \\fB");
        roff_text(b, env);
        buf_puts(b, "\\fR.\n");
    }
}

char *config_doc_man(const char *tmpl) {
    buf_t b = BUF_INIT;
    const char *p = tmpl;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == 9 && strncmp(p, "@OPTIONS@", 9) == 0) {
            man_options(&b);
        } else {
            const char *v = NULL;
            for (const char *q = p; q < p + len; q++) {
                if (strncmp(q, "@VERSION@", 9) == 0 && q + 9 <= p + len) {
                    v = q;
                    break;
                }
            }
            if (v) {
                buf_append(&b, p, (size_t)(v - p));
                buf_puts(&b, MC_VERSION);
                buf_append(&b, v + 9, len - (size_t)(v + 9 - p));
            } else {
                buf_append(&b, p, len);
            }
            if (nl) buf_putc(&b, '\n');
        }
        p += len + (nl ? 1 : 0);
    }
    return buf_steal(&b, NULL);
}

/* ---- example configuration ---------------------------------------------------------- */

static bool example_is_active(const cfg_opt_t *o) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", o->section, o->key);
    for (size_t i = 0; i < sizeof example_active / sizeof example_active[0]; i++)
        if (strcmp(example_active[i], name) == 0) return true;
    return false;
}

char *config_doc_example(void) {
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    buf_t b = BUF_INIT;
    buf_puts(&b,
             "# metricastd configuration (INI). Example covering every setting.\n"
             "#\n"
             "# Generated from the option table (tools/gen_config_doc.c; `make config-doc`).\n"
             "# Lines starting with '#' show the built-in default; remove the '#' to change one.\n"
             "# Precedence: defaults < this file < METRICAST_<FLAG> environment < flags, so the\n"
             "# systemd unit's `--data /var/lib/metricast` wins over [store] data_dir.\n"
             "# Durations: 1.5, 500ms, 10s, 2m, 1h, 1d.  Sizes: 4096, 64k, 4m, 1g.\n"
             "# Check a file before (re)starting:  metricastd --check-config FILE\n"
             "# Reference: docs/CONFIG.md, metricastd(8).\n");
    char env[96], range[96];
    for (size_t i = 0; i < n; i++) {
        if (!first_of_section(o, i)) continue;
        const char *what = blurb(o[i].section);
        buf_printf(&b, "\n[%s]\n", o[i].section);
        if (what) buf_printf(&b, "# %s\n", what);
        for (size_t k = i; k < n; k++) {
            if (strcmp(o[k].section, o[i].section)) continue;
            env_name(&o[k], env, sizeof env);
            range_str(&o[k], range, sizeof range);
            buf_printf(&b, "\n# %s\n# --%s, %s%s%s\n", o[k].help, o[k].flag, env,
                       *range ? "; range " : "", range);
            buf_printf(&b, "%s%s =%s%s\n", example_is_active(&o[k]) ? "" : "#", o[k].key,
                       *o[k].def ? " " : "", o[k].def);
        }
    }
    size_t nk;
    const alert_key_doc_t *ak = alert_rule_keys(&nk);
    buf_puts(&b, "\n# Alert rules: one [alert.NAME] section each (docs/CONFIG.md). Keys:\n");
    for (size_t k = 0; k < nk; k++)
        buf_printf(&b, "#   %-9s %s (%s)\n", ak[k].key, ak[k].values, ak[k].def);
    buf_puts(&b, "#\n#[alert.cpu_hot]\n#metric = cpu_usage\n#source = *\n#op = >\n"
                 "#threshold = 90\n#clear = 85\n#for = 10s\n#severity = warning\n"
                 "#webhook = http://127.0.0.1:9000/hook\n#style = json\n");
    return buf_steal(&b, NULL);
}
