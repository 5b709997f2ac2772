/* metricast — the command-line client of the hub: tail, push, query.
 *
 *   metricast tail  [--topics LIST] [--match GLOB] [--source GLOB] [--since SEQ]
 *                   [--count N] [--json]
 *   metricast push  NAME=VALUE ... [--source ID] [--kind KIND] [--label KEY=VALUE] [--json]
 *   metricast query NAME [--source GLOB] [--window SECONDS] [--json]
 *
 * Built on libmetricast only (metricast_ws_* for tail, metricast_http_request for push
 * and query). Exit status: 0 done; 1 the hub is unreachable, answered an error, refused
 * samples, or closed the stream; 2 bad usage. Errors are one line on stderr. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metricast.h"

#define DEFAULT_URL "http://127.0.0.1:9750"

static const char usage_text[] =
    "usage: metricast COMMAND [OPTIONS]\n"
    "\n"
    "The command-line client of the metricast hub.\n"
    "\n"
    "Commands:\n"
    "  tail [--topics LIST] [--match GLOB] [--source GLOB] [--since SEQ] [--count N] [--json]\n"
    "      Print live messages from the hub's WebSocket, one line each: metric updates\n"
    "      (one line per changed series), events, status changes.\n"
    "      --topics LIST   comma-separated topics: metrics, sources, alerts, events, or an\n"
    "                      event-type pattern such as telemetry.* (default metrics,events)\n"
    "      --match GLOB    only series whose name matches (metrics topic)\n"
    "      --source GLOB   only series whose source label matches (metrics topic)\n"
    "      --since SEQ     replay retained events after SEQ first, then go live\n"
    "      --count N       exit after N messages\n"
    "      --json          print each message as the raw JSON the hub sent\n"
    "  push NAME=VALUE ... [--source ID] [--kind KIND] [--label KEY=VALUE] [--json]\n"
    "      Send samples to the hub through POST /api/v1/ingest (JSON samples).\n"
    "      --source ID     label every sample source=ID\n"
    "      --kind KIND     gauge (default), counter, timer, histogram or set (a set's\n"
    "                      VALUE is its member, any text)\n"
    "      --label KEY=VALUE  one more label for every sample (repeatable)\n"
    "      --json          print the hub's answer as JSON\n"
    "  query NAME [--source GLOB] [--window SECONDS] [--json]\n"
    "      Print the in-memory history of a series (GET /api/v1/series/NAME).\n"
    "      --source GLOB   only series whose source label matches\n"
    "      --window SECONDS  how far back (default 300)\n"
    "      --json          print the hub's answer as JSON\n"
    "\n"
    "Options for every command:\n"
    "  --url URL          the hub's address (default " DEFAULT_URL "; env METRICAST_URL)\n"
    "  --token TOKEN      access token, sent as Authorization: Bearer (and ?token= on the\n"
    "                     WebSocket); env METRICAST_TOKEN\n"
    "  --timeout SECONDS  for connecting and for each answer (default 5)\n"
    "  --help             print this and exit\n"
    "  --version          print the version and exit\n"
    "\n"
    "Exit status: 0 success; 1 the hub is unreachable, answered an error, refused samples\n"
    "or closed the stream; 2 bad usage.\n";

typedef struct opts {
    const char *cmd;
    const char *url, *token;
    int timeout_ms;
    bool json;
    /* tail */
    const char *topics, *match, *source;
    long long since;
    long long count;
    /* push */
    const char *kind;
    const char *labels[32];
    int nlabels;
    /* query */
    long long window;
    const char *args[256];
    int nargs;
} opts_t;

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("metricast: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see metricast --help)\n", stderr);
    va_end(ap);
    return 2;
}

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("metricast: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static bool parse_ll(const char *s, long long min, long long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min) return false;
    *out = v;
    return true;
}

/* Parses argv into o. Returns -1 to go on, or an exit status (help, version, error). */
static int parse_args(int argc, char **argv, opts_t *o) {
    memset(o, 0, sizeof *o);
    o->url = getenv("METRICAST_URL");
    if (!o->url || !*o->url) o->url = DEFAULT_URL;
    o->token = getenv("METRICAST_TOKEN");
    o->timeout_ms = 5000;
    o->since = -1;
    o->window = 300;
    o->kind = "gauge";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("metricast %s\n", metricast_version());
            return 0;
        }
    }
    static const char *const with_value[] = {"--url",   "--token", "--timeout", "--topics",
                                             "--match", "--source", "--since",  "--count",
                                             "--kind",  "--label",  "--window"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) {
            if (strcmp(a, "--") == 0) {
                for (i++; i < argc; i++)
                    if (o->nargs < 256) o->args[o->nargs++] = argv[i];
                break;
            }
            if (!o->cmd)
                o->cmd = a;
            else if (o->nargs < 256)
                o->args[o->nargs++] = a;
            else
                return usage_error("too many arguments");
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const char *name = NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            if (strlen(with_value[k]) == nl && strncmp(a, with_value[k], nl) == 0) name = with_value[k];
        if (!name) return usage_error("unknown option %s", a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return usage_error("%s needs a value", name);
        long long n;
        if (strcmp(name, "--url") == 0) {
            o->url = v;
        } else if (strcmp(name, "--token") == 0) {
            o->token = v;
        } else if (strcmp(name, "--timeout") == 0) {
            char *end;
            double s = strtod(v, &end);
            if (*end || !(s > 0) || s > 3600) return usage_error("--timeout: seconds in (0, 3600]");
            o->timeout_ms = (int)(s * 1000 + 0.5);
            if (o->timeout_ms < 1) o->timeout_ms = 1;
        } else if (strcmp(name, "--topics") == 0) {
            o->topics = v;
        } else if (strcmp(name, "--match") == 0) {
            o->match = v;
        } else if (strcmp(name, "--source") == 0) {
            o->source = v;
        } else if (strcmp(name, "--since") == 0) {
            if (!parse_ll(v, 0, &n)) return usage_error("--since: a sequence number (0 or more)");
            o->since = n;
        } else if (strcmp(name, "--count") == 0) {
            if (!parse_ll(v, 1, &n)) return usage_error("--count: a number of messages (1 or more)");
            o->count = n;
        } else if (strcmp(name, "--kind") == 0) {
            o->kind = v;
        } else if (strcmp(name, "--label") == 0) {
            if (!strchr(v, '=') || v[0] == '=') return usage_error("--label: KEY=VALUE");
            if (o->nlabels >= 32) return usage_error("--label: at most 32");
            o->labels[o->nlabels++] = v;
        } else if (strcmp(name, "--window") == 0) {
            if (!parse_ll(v, 1, &n) || n > 86400 * 366) return usage_error("--window: seconds (1 or more)");
            o->window = n;
        }
    }
    if (!o->cmd) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (o->token && !*o->token) o->token = NULL;
    for (const char *p = o->token; p && *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return usage_error("--token: no spaces or control characters (a bearer token)");
    return -1;
}

/* ---- answers ------------------------------------------------------------------------ */

/* "the hub answered 404 not_found: no such series" from an error answer */
static int answer_error(const metricast_http_response_t *r) {
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *d = json_string_value(json_object_get(j, "detail"));
    int rc;
    if (e)
        rc = fail("the hub answered %d %s%s%s", r->status, e, d && *d ? ": " : "", d ? d : "");
    else
        rc = fail("the hub answered %d: %.200s", r->status, r->body_len ? r->body : "(no body)");
    json_decref(j);
    return rc;
}

/* One line for a hub that cannot be reached: the cause the user can act on. */
static int unreachable(const opts_t *o, int rc, const char *err) {
    if (rc == -EINVAL || rc == -ENOTSUP) return fail("--url %s: %s", o->url, err[0] ? err : metricast_strerror(rc));
    if (rc == -ECONNREFUSED) return fail("cannot reach the hub at %s: connection refused (is metricastd running?)", o->url);
    if (rc == -ETIMEDOUT) return fail("cannot reach the hub at %s: no answer within %g s", o->url, o->timeout_ms / 1000.0);
    if (rc == -EACCES) return fail("the hub at %s wants a valid token (401): use --token or METRICAST_TOKEN", o->url);
    if (rc == -EPERM) return fail("the hub at %s refused this token (403: outside its scopes)", o->url);
    return fail("cannot reach the hub at %s: %s", o->url, err[0] ? err : metricast_strerror(rc));
}

static int request(const opts_t *o, const char *method, const char *path, const char *ctype,
                   const char *body, metricast_http_response_t *r) {
    char err[METRICAST_ERR_LEN];
    int rc = metricast_http_request(o->url, method, path, o->token, ctype, body,
                                    body ? strlen(body) : 0, o->timeout_ms, r, err);
    if (rc < 0) return unreachable(o, rc, err);
    return 0;
}

static void encode_component(const char *s, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < cap; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if (keep) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

static void print_num(double v) {
    if (v == floor(v) && fabs(v) < 1e15)
        printf("%.0f", v);
    else
        printf("%.6g", v);
}

static void print_labels(json_t *labels) {
    if (!json_is_object(labels) || json_object_size(labels) == 0) return;
    putchar('{');
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach(labels, k, v) {
        printf("%s%s=\"%s\"", first ? "" : ",", k, json_is_string(v) ? json_string_value(v) : "");
        first = false;
    }
    putchar('}');
}

/* ---- push ------------------------------------------------------------------------------ */

static int cmd_push(const opts_t *o) {
    static const char *const kinds[] = {"gauge", "counter", "timer", "histogram", "set"};
    bool kind_ok = false;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) kind_ok |= strcmp(o->kind, kinds[i]) == 0;
    if (!kind_ok) return usage_error("--kind: gauge, counter, timer, histogram or set (not %s)", o->kind);
    if (o->nargs == 0) return usage_error("push: give at least one NAME=VALUE");
    json_t *labels = json_object();
    if (o->source) json_object_set_new(labels, "source", json_string(o->source));
    for (int i = 0; i < o->nlabels; i++) {
        const char *eq = strchr(o->labels[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - o->labels[i]), o->labels[i]);
        json_object_set_new(labels, key, json_string(eq + 1));
    }
    json_t *samples = json_array();
    bool set = strcmp(o->kind, "set") == 0;
    for (int i = 0; i < o->nargs; i++) {
        const char *a = o->args[i];
        const char *eq = strchr(a, '=');
        if (!eq || eq == a || !eq[1]) {
            json_decref(samples);
            json_decref(labels);
            return usage_error("push: %s is not NAME=VALUE", a);
        }
        char name[512];
        snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
        json_t *value;
        if (set) {
            value = json_string(eq + 1);
        } else {
            char *end;
            double v = strtod(eq + 1, &end);
            if (*end || !isfinite(v)) {
                json_decref(samples);
                json_decref(labels);
                return usage_error("push: the value of %s is not a number: %s", name, eq + 1);
            }
            value = json_real(v);
        }
        json_t *s = json_pack("{s:s, s:s, s:o}", "name", name, "kind", o->kind, "value", value);
        if (s && json_object_size(labels)) json_object_set(s, "labels", labels);
        json_array_append_new(samples, s);
    }
    json_t *root = json_pack("{s:o}", "samples", samples);
    char *body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    json_decref(labels);
    if (!body) return fail("out of memory");
    metricast_http_response_t r;
    int rc = request(o, "POST", "/api/v1/ingest", "application/json", body, &r);
    free(body);
    if (rc) return rc;
    if (r.status >= 400) {
        rc = answer_error(&r);
        metricast_http_response_free(&r);
        return rc;
    }
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *acc = json_object_get(j, "accepted"), *rej = json_object_get(j, "rejected");
    if (!json_is_integer(acc) || !json_is_integer(rej)) {
        rc = fail("unexpected answer from the hub (%d): %.200s", r.status, r.body);
    } else if (o->json) {
        fwrite(r.body, 1, r.body_len, stdout);
        putchar('\n');
        rc = json_integer_value(rej) > 0 ? 1 : 0;
    } else {
        printf("accepted %lld, rejected %lld", (long long)json_integer_value(acc),
               (long long)json_integer_value(rej));
        json_t *why = json_object_get(j, "rejected_by_reason");
        if (json_object_size(why)) {
            const char *k;
            json_t *v;
            bool first = true;
            printf(" (");
            json_object_foreach(why, k, v) {
                printf("%s%s: %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
                first = false;
            }
            printf(")");
        }
        putchar('\n');
        rc = json_integer_value(rej) > 0 ? 1 : 0;
    }
    json_decref(j);
    metricast_http_response_free(&r);
    return rc;
}

/* ---- query ---------------------------------------------------------------------------- */

static void iso_seconds(double t, char out[32]) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_query(const opts_t *o) {
    if (o->nargs != 1) return usage_error("query: give exactly one series NAME");
    char name[1536], source[1536], path[4096];
    encode_component(o->args[0], name, sizeof name);
    int n = snprintf(path, sizeof path, "/api/v1/series/%s?window=%lld", name, o->window);
    if (o->source) {
        encode_component(o->source, source, sizeof source);
        snprintf(path + n, sizeof path - (size_t)n, "&source=%s", source);
    }
    metricast_http_response_t r;
    int rc = request(o, "GET", path, NULL, NULL, &r);
    if (rc) return rc;
    if (r.status >= 400) {
        rc = answer_error(&r);
        metricast_http_response_free(&r);
        return rc;
    }
    if (o->json) {
        fwrite(r.body, 1, r.body_len, stdout);
        putchar('\n');
        metricast_http_response_free(&r);
        return 0;
    }
    json_t *j = json_loadb(r.body, r.body_len, JSON_DECODE_INT_AS_REAL, NULL);
    json_t *series = json_object_get(j, "series");
    if (!json_is_array(series)) {
        rc = fail("unexpected answer from the hub (%d): %.200s", r.status, r.body);
        json_decref(j);
        metricast_http_response_free(&r);
        return rc;
    }
    json_t *cols = json_object_get(j, "columns");
    printf("%s (%s), last %lld s, resolution %g s\n", json_string_value(json_object_get(j, "name")),
           json_string_value(json_object_get(j, "kind")) ? json_string_value(json_object_get(j, "kind")) : "?",
           o->window, json_number_value(json_object_get(j, "resolution_seconds")));
    if (json_array_size(series) == 0) printf("no series match\n");
    size_t i;
    json_t *s;
    json_array_foreach(series, i, s) {
        json_t *pts = json_object_get(s, "points");
        printf("%s", i ? "\n" : "");
        print_labels(json_object_get(s, "labels"));
        if (!json_object_size(json_object_get(s, "labels"))) printf("{}");
        printf("  %zu point%s\n", json_array_size(pts), json_array_size(pts) == 1 ? "" : "s");
        if (json_is_array(cols) && json_array_size(cols) > 2) {
            printf("  %-20s", "time");
            for (size_t c = 1; c < json_array_size(cols); c++)
                printf(" %12s", json_string_value(json_array_get(cols, c)));
            putchar('\n');
        }
        size_t k;
        json_t *p;
        json_array_foreach(pts, k, p) {
            char ts[32];
            iso_seconds(json_number_value(json_array_get(p, 0)), ts);
            printf("  %-20s", ts);
            for (size_t c = 1; c < json_array_size(p); c++) {
                json_t *v = json_array_get(p, c);
                putchar(' ');
                if (json_array_size(p) > 2) {
                    char t[64];
                    snprintf(t, sizeof t, "%.6g", json_number_value(v));
                    printf("%12s", t);
                } else {
                    print_num(json_number_value(v));
                }
            }
            putchar('\n');
        }
    }
    json_decref(j);
    metricast_http_response_free(&r);
    return 0;
}

/* ---- tail ----------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* "19:31:48.565Z" from the message's ISO timestamp (or now) */
static void clock_of(json_t *msg, char out[32]) {
    const char *ts = json_string_value(json_object_get(msg, "timestamp"));
    if (ts && strlen(ts) >= 23 && ts[10] == 'T') {
        snprintf(out, 32, "%.12sZ", ts + 11);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    snprintf(out, 32, "%02d:%02d:%02d.%03ldZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
             now.tv_nsec / 1000000);
}

static void print_series(const char *when, json_t *s) {
    const char *kind = json_string_value(json_object_get(s, "kind"));
    printf("%s  %s", when, json_string_value(json_object_get(s, "name")));
    print_labels(json_object_get(s, "labels"));
    double v = json_number_value(json_object_get(s, "value"));
    printf("  ");
    if (kind && strcmp(kind, "timer") == 0) {
        printf("mean=%.6g count=%.0f p50=%.6g p90=%.6g p99=%.6g max=%.6g", v,
               json_number_value(json_object_get(s, "count")),
               json_number_value(json_object_get(s, "p50")),
               json_number_value(json_object_get(s, "p90")),
               json_number_value(json_object_get(s, "p99")),
               json_number_value(json_object_get(s, "max")));
    } else if (kind && strcmp(kind, "counter") == 0) {
        print_num(v);
        printf(" (%.6g/s)", json_number_value(json_object_get(s, "rate")));
    } else if (kind && strcmp(kind, "set") == 0) {
        print_num(v);
        printf(" distinct");
    } else {
        print_num(v);
    }
    putchar('\n');
}

static void print_message(const char *text, size_t len) {
    json_t *m = json_loadb(text, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    char when[32];
    clock_of(m, when);
    if (!type) {
        printf("%s  %.*s\n", when, (int)len, text);
    } else if (strcmp(type, "metrics:update") == 0) {
        json_t *series = json_object_get(json_object_get(m, "data"), "series");
        size_t i;
        json_t *s;
        json_array_foreach(series, i, s) print_series(when, s);
        if (json_array_size(series) == 0 && json_is_true(json_object_get(m, "full")))
            printf("%s  (no series yet)\n", when);
    } else if (strcmp(type, "event") == 0) {
        json_t *e = json_object_get(m, "data");
        char *payload = json_dumps(json_object_get(e, "payload"), JSON_COMPACT | JSON_ENCODE_ANY);
        /* the event's own time, not the delivery's */
        double t = json_number_value(json_object_get(e, "timestamp"));
        if (t > 0) {
            time_t sec = (time_t)t;
            struct tm tm;
            gmtime_r(&sec, &tm);
            snprintf(when, sizeof when, "%02d:%02d:%02d.%03dZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)((t - (double)sec) * 1000) % 1000);
        }
        printf("%s  event #%lld %s source=%s %s\n", when,
               (long long)json_integer_value(json_object_get(m, "seq")),
               json_string_value(json_object_get(e, "type")),
               json_string_value(json_object_get(e, "source")), payload ? payload : "{}");
        free(payload);
    } else if (strcmp(type, "status") == 0) {
        printf("%s  status %s fill=%.3g queue=%lld dropped=%lld: %s\n", when,
               json_string_value(json_object_get(m, "state")),
               json_number_value(json_object_get(m, "fill_ratio")),
               (long long)json_integer_value(json_object_get(m, "queue_depth")),
               (long long)json_integer_value(json_object_get(m, "dropped")),
               json_string_value(json_object_get(m, "message")));
    } else if (strcmp(type, "resync") == 0) {
        printf("%s  resync: older events are gone; continuing from seq %lld\n", when,
               (long long)json_integer_value(json_object_get(m, "oldest_seq")));
    } else if (strcmp(type, "error") == 0) {
        printf("%s  error %s: %s\n", when, json_string_value(json_object_get(m, "error")),
               json_string_value(json_object_get(m, "detail")));
    } else {
        printf("%s  %s %.*s\n", when, type, (int)len, text);
    }
    json_decref(m);
}

static int cmd_tail(const opts_t *o) {
    if (o->nargs) return usage_error("tail takes no arguments (got %s)", o->args[0]);
    json_t *topics = json_array();
    char *tl = strdup(o->topics ? o->topics : "metrics,events");
    if (!tl) return fail("out of memory");
    char *save = NULL;
    for (char *t = strtok_r(tl, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (*t) json_array_append_new(topics, json_string(t));
    free(tl);
    if (json_array_size(topics) == 0) {
        json_decref(topics);
        return usage_error("--topics: give at least one topic");
    }
    json_t *sub = json_pack("{s:s, s:o}", "type", "subscribe", "topics", topics);
    if (o->match || o->source) {
        json_t *f = json_object();
        if (o->match) json_object_set_new(f, "match", json_string(o->match));
        if (o->source) json_object_set_new(f, "source", json_string(o->source));
        json_object_set_new(sub, "filter", f);
    }
    if (o->since >= 0) json_object_set_new(sub, "since", json_integer(o->since));
    char *subtext = json_dumps(sub, JSON_COMPACT);
    json_decref(sub);
    if (!subtext) return fail("out of memory");

    /* from here on SIGINT/SIGTERM end the tail cleanly (close 1000, exit 0) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char err[METRICAST_ERR_LEN];
    metricast_ws_t *ws = NULL;
    int rc = metricast_ws_open(&ws, o->url, o->token, o->timeout_ms, err);
    if (rc < 0) {
        free(subtext);
        return unreachable(o, rc, err);
    }
    rc = metricast_ws_send_text(ws, subtext, strlen(subtext), o->timeout_ms);
    free(subtext);
    if (rc < 0) {
        metricast_ws_close(ws, 1000, 200);
        return fail("the hub closed the connection before the subscription was sent");
    }
    long long seen = 0;
    int status = 0;
    while (!interrupted) {
        char *msg;
        size_t len;
        rc = metricast_ws_recv(ws, &msg, &len, 250);
        if (rc == -ETIMEDOUT) continue;
        if (rc < 0) {
            const char *reason = "";
            uint16_t code = metricast_ws_close_info(ws, &reason);
            if (code)
                status = fail("the hub closed the stream (%u%s%s)", code, *reason ? " " : "", reason);
            else
                status = fail("the connection to the hub was lost (%s)", metricast_strerror(rc));
            break;
        }
        if (o->json) {
            fwrite(msg, 1, len, stdout);
            putchar('\n');
        } else {
            /* a bad subscription is the user's mistake: say it on stderr and stop */
            json_t *m = json_loadb(msg, len, 0, NULL);
            const char *type = json_string_value(json_object_get(m, "type"));
            if (type && strcmp(type, "error") == 0 && seen == 0) {
                status = fail("the hub refused the subscription: %s: %s",
                              json_string_value(json_object_get(m, "error")),
                              json_string_value(json_object_get(m, "detail")));
                json_decref(m);
                free(msg);
                break;
            }
            json_decref(m);
            print_message(msg, len);
        }
        fflush(stdout);
        free(msg);
        if (++seen >= o->count && o->count) break;
    }
    metricast_ws_close(ws, 1000, 500);
    return status;
}

int main(int argc, char **argv) {
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    signal(SIGPIPE, SIG_IGN); /* stdout into a closed pipe: an error from fwrite, not death */
    if (strcmp(o.cmd, "tail") == 0) return cmd_tail(&o);
    if (strcmp(o.cmd, "push") == 0) return cmd_push(&o);
    if (strcmp(o.cmd, "query") == 0) return cmd_query(&o);
    return usage_error("unknown command %s (tail, push or query)", o.cmd);
}
