#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "jsonw.h"
#include "log.h"

/* ---- policy (pure) ----------------------------------------------------------------------- */

double webhook_backoff(const webhook_opts_t *o, int attempt, double u) {
    double d = o->backoff_s;
    for (int i = 1; i < attempt && d < o->backoff_max_s; i++) d *= 2;
    if (d > o->backoff_max_s) d = o->backoff_max_s;
    return d / 2 + d / 2 * u;
}

bool webhook_delivered(int curl_code, long status) {
    return curl_code == CURLE_OK && status >= 200 && status < 300;
}

bool webhook_retryable(int curl_code, long status) {
    if (curl_code != CURLE_OK) {
        switch (curl_code) {
        /* the request itself is wrong: no later attempt can fix it */
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_OUT_OF_MEMORY:
        case CURLE_BAD_FUNCTION_ARGUMENT:
            return false;
        default: return true; /* refused, reset, timed out, DNS, TLS: the receiver may come back */
        }
    }
    return status == 408 || status == 429 || status >= 500;
}

/* ---- the delivery thread ------------------------------------------------------------------ */

typedef struct job {
    struct job *next;
    char *url, *body, *id, *ctype;
    size_t len;
    int attempts;   /* made so far */
    double due;     /* monotonic seconds: when the next attempt may start */
    CURL *easy;     /* while in flight */
    struct curl_slist *hdrs;
    char err[CURL_ERROR_SIZE];
} job_t;

struct webhook {
    webhook_opts_t o;
    char ua[64];
    uv_thread_t thread;
    uv_mutex_t mu;
    job_t *in_head, *in_tail; /* posted, not yet seen by the thread (under mu) */
    bool stopping;            /* under mu */
    CURLM *multi;
    _Atomic uint64_t sent, failed, retried, dropped, pending;
    /* the thread's own */
    job_t *waiting; /* not in flight: new, or waiting for a retry */
    job_t *flying;  /* in flight */
    int in_flight;
    uint64_t rng;
};

static double mono(void) { return (double)clk_mono_ns() / 1e9; }

static double rnd01(webhook_t *w) {
    uint64_t x = w->rng;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    w->rng = x;
    return (double)(x >> 11) / 9007199254740992.0;
}

static void job_free(job_t *j) {
    if (!j) return;
    if (j->easy) curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->hdrs);
    free(j->url), free(j->body), free(j->id), free(j->ctype);
    free(j);
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
    (void)p, (void)ud;
    return size * n; /* receivers' answers are not needed, only their status */
}

static int start(webhook_t *w, job_t *j) {
    if (!j->easy && !(j->easy = curl_easy_init())) return -ENOMEM;
    curl_slist_free_all(j->hdrs);
    j->hdrs = NULL;
    char h[256];
    struct curl_slist *l = NULL, *t;
    snprintf(h, sizeof h, "Content-Type: %s", j->ctype);
    if ((t = curl_slist_append(l, h))) l = t;
    snprintf(h, sizeof h, "X-Metricast-Delivery: %s", j->id);
    if ((t = curl_slist_append(l, h))) l = t;
    snprintf(h, sizeof h, "X-Metricast-Attempt: %d", j->attempts + 1);
    if ((t = curl_slist_append(l, h))) l = t;
    if ((t = curl_slist_append(l, "Expect:"))) l = t; /* no 100-continue round trip */
    j->hdrs = l;
    long ms = (long)(w->o.timeout_s * 1000);
    CURL *e = j->easy;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, w->ua);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->err);
    j->err[0] = '\0';
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) return -ENOMEM;
    j->attempts++;
    w->in_flight++;
    j->next = w->flying;
    w->flying = j;
    return 0;
}

static void finished(webhook_t *w, job_t *j) {
    atomic_fetch_sub(&w->pending, 1);
    job_free(j);
}

static void done(webhook_t *w, job_t *j, CURLcode code) {
    long status = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(w->multi, j->easy);
    w->in_flight--;
    for (job_t **pp = &w->flying; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    j->next = NULL;
    char url[160];
    alert_url_redacted(j->url, url, sizeof url);
    const char *why = code != CURLE_OK ? (j->err[0] ? j->err : curl_easy_strerror(code)) : "";
    char q[300];
    if (webhook_delivered((int)code, status)) {
        atomic_fetch_add(&w->sent, 1);
        log_debug("webhook delivered", "id=%s url=%s status=%ld attempts=%d", j->id, url, status,
                  j->attempts);
        finished(w, j);
        return;
    }
    if (webhook_retryable((int)code, status) && j->attempts <= w->o.retries) {
        double delay = webhook_backoff(&w->o, j->attempts, rnd01(w));
        atomic_fetch_add(&w->retried, 1);
        log_warn("webhook delivery failed, will retry", "id=%s url=%s attempt=%d status=%ld "
                 "error=%s retry_in_ms=%.0f", j->id, url, j->attempts, status,
                 log_quote(code != CURLE_OK ? why : "bad status", q, sizeof q), delay * 1000);
        j->due = mono() + delay;
        j->next = w->waiting;
        w->waiting = j;
        return;
    }
    atomic_fetch_add(&w->failed, 1);
    log_error("webhook delivery failed", "id=%s url=%s attempts=%d status=%ld error=%s", j->id,
              url, j->attempts, status,
              log_quote(code != CURLE_OK ? why
                        : webhook_retryable((int)code, status) ? "retries exhausted"
                                                                : "status not retried",
                        q, sizeof q));
    finished(w, j);
}

static void run(void *arg) {
    webhook_t *w = arg;
    double deadline = 0;
    for (;;) {
        uv_mutex_lock(&w->mu);
        job_t *in = w->in_head;
        w->in_head = w->in_tail = NULL;
        bool stopping = w->stopping;
        uv_mutex_unlock(&w->mu);
        double now = mono();
        while (in) { /* new deliveries are due at once */
            job_t *n = in->next;
            in->due = now;
            in->next = w->waiting;
            w->waiting = in;
            in = n;
        }
        if (stopping && deadline == 0) deadline = now + WEBHOOK_CLOSE_GRACE_S;

        for (job_t **pp = &w->waiting; *pp;) {
            job_t *j = *pp;
            if (j->due > now || w->in_flight >= WEBHOOK_MAX_IN_FLIGHT) {
                pp = &j->next;
                continue;
            }
            *pp = j->next;
            if (start(w, j) < 0) {
                atomic_fetch_add(&w->failed, 1);
                log_error("webhook delivery failed", "id=%s error=\"out of memory\"", j->id);
                finished(w, j);
            }
        }
        int running = 0;
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            job_t *j = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode code = m->data.result;
            if (j) done(w, j, code);
        }
        now = mono();
        if (stopping && ((!w->waiting && w->in_flight == 0) || now >= deadline)) break;
        /* Sleep until a retry falls due, a transfer needs attention (curl_multi_poll also
         * honours curl's own timers) or webhook_post wakes us. A job that is due but waits
         * for a free transfer slot needs no timer: a slot frees only on transfer activity. */
        double next_due = now + 1.0;
        bool startable = false;
        for (job_t *j = w->waiting; j; j = j->next) {
            if (j->due <= now)
                startable |= w->in_flight < WEBHOOK_MAX_IN_FLIGHT;
            else if (j->due < next_due)
                next_due = j->due;
        }
        if (stopping && deadline < next_due) next_due = deadline;
        double wait = next_due - now;
        int ms = startable || wait <= 0 ? 0 : wait > 1.0 ? 1000 : (int)(wait * 1000) + 1;
        if (ms > 0) curl_multi_poll(w->multi, NULL, 0, ms, NULL);
    }
    /* abandoned at shutdown: in flight and waiting */
    unsigned lost = 0;
    while (w->flying) {
        job_t *j = w->flying;
        w->flying = j->next;
        curl_multi_remove_handle(w->multi, j->easy);
        lost++;
        atomic_fetch_add(&w->failed, 1);
        finished(w, j);
    }
    while (w->waiting) {
        job_t *j = w->waiting;
        w->waiting = j->next;
        lost++;
        atomic_fetch_add(&w->failed, 1);
        finished(w, j);
    }
    if (lost) log_warn("webhook deliveries abandoned at shutdown", "count=%u", lost);
}

int webhook_open(webhook_t **out, const webhook_opts_t *o, char *err, size_t errlen) {
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "webhooks: libcurl initialisation failed");
        return -EIO;
    }
    webhook_t *w = calloc(1, sizeof *w);
    if (!w) {
        curl_global_cleanup();
        snprintf(err, errlen, "webhooks: out of memory");
        return -ENOMEM;
    }
    w->o = *o;
    snprintf(w->ua, sizeof w->ua, "%s", o->user_agent ? o->user_agent : "metricast");
    w->o.user_agent = w->ua;
    w->rng = clk_mono_ns() ^ 0x9e3779b97f4a7c15ULL;
    if (!w->rng) w->rng = 1;
    if (uv_mutex_init(&w->mu) != 0) {
        free(w);
        curl_global_cleanup();
        snprintf(err, errlen, "webhooks: cannot create a mutex");
        return -ENOMEM;
    }
    if (!(w->multi = curl_multi_init())) {
        uv_mutex_destroy(&w->mu);
        free(w);
        curl_global_cleanup();
        snprintf(err, errlen, "webhooks: libcurl multi handle failed");
        return -ENOMEM;
    }
    int rc = uv_thread_create(&w->thread, run, w);
    if (rc) {
        curl_multi_cleanup(w->multi);
        uv_mutex_destroy(&w->mu);
        free(w);
        curl_global_cleanup();
        snprintf(err, errlen, "webhooks: cannot start the thread: %s", uv_strerror(rc));
        return rc;
    }
    *out = w;
    return 0;
}

int webhook_post(webhook_t *w, const char *url, const char *content_type, const char *body,
                 size_t len, const char *id) {
    if (atomic_fetch_add(&w->pending, 1) >= w->o.queue_cap) {
        atomic_fetch_sub(&w->pending, 1);
        atomic_fetch_add(&w->dropped, 1);
        return -ENOBUFS;
    }
    job_t *j = calloc(1, sizeof *j);
    if (j) {
        j->url = strdup(url);
        j->ctype = strdup(content_type);
        j->id = strdup(id);
        j->body = malloc(len + 1);
        if (j->body) memcpy(j->body, body, len), j->body[len] = '\0';
        j->len = len;
    }
    if (!j || !j->url || !j->ctype || !j->id || !j->body) {
        job_free(j);
        atomic_fetch_sub(&w->pending, 1);
        atomic_fetch_add(&w->dropped, 1);
        return -ENOMEM;
    }
    uv_mutex_lock(&w->mu);
    bool stopping = w->stopping;
    if (!stopping) {
        if (w->in_tail)
            w->in_tail->next = j;
        else
            w->in_head = j;
        w->in_tail = j;
    }
    uv_mutex_unlock(&w->mu);
    if (stopping) {
        job_free(j);
        atomic_fetch_sub(&w->pending, 1);
        return -ESHUTDOWN;
    }
    curl_multi_wakeup(w->multi);
    return 0;
}

void webhook_close(webhook_t *w) {
    if (!w) return;
    uv_mutex_lock(&w->mu);
    w->stopping = true;
    uv_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    uv_thread_join(&w->thread);
    while (w->in_head) { /* posted after the thread's last look */
        job_t *j = w->in_head;
        w->in_head = j->next;
        atomic_fetch_add(&w->failed, 1);
        finished(w, j);
    }
    curl_multi_cleanup(w->multi);
    uv_mutex_destroy(&w->mu);
    free(w);
    curl_global_cleanup();
}

void webhook_counts(webhook_t *w, webhook_counts_t *out) {
    memset(out, 0, sizeof *out);
    if (!w) return;
    out->sent = atomic_load(&w->sent);
    out->failed = atomic_load(&w->failed);
    out->retried = atomic_load(&w->retried);
    out->dropped = atomic_load(&w->dropped);
    out->pending = atomic_load(&w->pending);
}

/* ---- bodies -------------------------------------------------------------------------------- */

/* name{k="v",...} of the series, as Prometheus writes it */
static void series_text(const series_key_t *k, buf_t *b) {
    buf_puts(b, skey_name(k));
    if (!k->nlabels) return;
    buf_putc(b, '{');
    for (int i = 0; i < k->nlabels; i++) {
        skey_label_t l;
        skey_label(k, i, &l);
        buf_printf(b, "%s%s=\"%s\"", i ? "," : "", l.name, l.value);
    }
    buf_putc(b, '}');
}

static void num_text(double v, char out[32]) { jsonw_fmt_double(v, out); }

/* One line a person reads: "cpu_usage{source="r1"} = 95.2 > 90" */
static void describe(const alert_note_t *n, buf_t *b) {
    char v[32], t[32];
    num_text(n->value, v);
    num_text(n->rule->threshold, t);
    series_text(n->key, b);
    if (n->firing)
        buf_printf(b, " = %s %s %s", v, alert_op_name(n->rule->op), t);
    else
        buf_printf(b, " = %s (alert when %s %s)", v, alert_op_name(n->rule->op), t);
}

/* Slack's mrkdwn wants &, < and > escaped, and nothing else. */
static void slack_escape(const char *s, buf_t *b) {
    for (; *s; s++) {
        if (*s == '&')
            buf_puts(b, "&amp;");
        else if (*s == '<')
            buf_puts(b, "&lt;");
        else if (*s == '>')
            buf_puts(b, "&gt;");
        else
            buf_putc(b, *s);
    }
}

static void slack_field(jsonw_t *w, const char *title, const char *value, bool is_short) {
    buf_t e = BUF_INIT;
    slack_escape(value ? value : "-", &e);
    jsonw_obj_open(w);
    jsonw_kv_str(w, "title", title);
    jsonw_kv_str(w, "value", e.data ? e.data : "");
    jsonw_kv_bool(w, "short", is_short);
    jsonw_obj_close(w);
    buf_free(&e);
}

static int body_slack(const webhook_alert_t *a, buf_t *b) {
    const alert_note_t *n = a->note;
    const alert_rule_t *r = n->rule;
    buf_t d = BUF_INIT, text = BUF_INIT, series = BUF_INIT;
    describe(n, &d);
    series_text(n->key, &series);
    buf_printf(&text, "[%s] %s (%s): ", n->firing ? "FIRING" : "RESOLVED", r->name,
               alert_severity_name(r->severity));
    slack_escape(d.data ? d.data : "", &text);
    char v[32], t[32], since[CLK_ISO_LEN], thr[48];
    num_text(n->value, v);
    num_text(r->threshold, t);
    snprintf(thr, sizeof thr, "%s %s", alert_op_name(r->op), t);
    clk_iso8601(n->since, since);
    /* Slack's own palette: danger red, warning yellow, good green */
    const char *color = !n->firing                      ? "#2eb67d"
                        : r->severity >= ALERT_ERROR    ? "#e01e5a"
                        : r->severity == ALERT_WARNING  ? "#ecb22e"
                                                        : "#36c5f0";
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "text", text.data ? text.data : "");
    jsonw_key(&w, "attachments");
    jsonw_arr_open(&w);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "color", color);
    jsonw_kv_str(&w, "fallback", text.data ? text.data : "");
    if (r->summary) {
        buf_t s = BUF_INIT;
        slack_escape(r->summary, &s);
        jsonw_kv_str(&w, "text", s.data ? s.data : "");
        buf_free(&s);
    }
    jsonw_key(&w, "fields");
    jsonw_arr_open(&w);
    slack_field(&w, "Rule", r->name, true);
    slack_field(&w, "Severity", alert_severity_name(r->severity), true);
    slack_field(&w, "Status", n->firing ? "firing" : "resolved", true);
    slack_field(&w, "Source", n->source, true);
    slack_field(&w, "Series", series.data, false);
    slack_field(&w, "Value", v, true);
    slack_field(&w, "Threshold", thr, true);
    slack_field(&w, "Since", since, true);
    jsonw_arr_close(&w);
    jsonw_kv_str(&w, "footer", "metricast");
    jsonw_kv_int(&w, "ts", (int64_t)n->at);
    jsonw_obj_close(&w);
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    buf_free(&d), buf_free(&text), buf_free(&series);
    return jsonw_error(&w);
}

typedef struct am_label {
    const char *name, *value;
} am_label_t;

static int am_label_cmp(const void *a, const void *b) {
    return strcmp(((const am_label_t *)a)->name, ((const am_label_t *)b)->name);
}

/* FNV-1a 64 over name\xffvalue\xff of the sorted labels, as Prometheus signs label sets */
static uint64_t fingerprint(const am_label_t *l, int n) {
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < n; i++) {
        for (const char *p = l[i].name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
        for (const char *p = l[i].value; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

static void am_labels(jsonw_t *w, const am_label_t *l, int n) {
    jsonw_obj_open(w);
    for (int i = 0; i < n; i++) jsonw_kv_str(w, l[i].name, l[i].value);
    jsonw_obj_close(w);
}

static void am_annotations(jsonw_t *w, const char *summary, const char *desc, const char *v,
                           const char *t) {
    jsonw_obj_open(w);
    jsonw_kv_str(w, "summary", summary);
    jsonw_kv_str(w, "description", desc);
    jsonw_kv_str(w, "value", v);
    jsonw_kv_str(w, "threshold", t);
    jsonw_obj_close(w);
}

static int body_alertmanager(const webhook_alert_t *a, buf_t *b) {
    const alert_note_t *n = a->note;
    const alert_rule_t *r = n->rule;
    /* labels: the rule's (alertname, severity, metric) win over the series' own */
    am_label_t l[SKEY_MAX_LABELS + 3];
    int nl = 0;
    l[nl++] = (am_label_t){"alertname", r->name};
    l[nl++] = (am_label_t){"severity", alert_severity_name(r->severity)};
    l[nl++] = (am_label_t){"metric", r->metric};
    for (int i = 0; i < n->key->nlabels && nl < (int)(sizeof l / sizeof l[0]); i++) {
        skey_label_t sl;
        skey_label(n->key, i, &sl);
        if (strcmp(sl.name, "alertname") && strcmp(sl.name, "severity") && strcmp(sl.name, "metric"))
            l[nl++] = (am_label_t){sl.name, sl.value};
    }
    qsort(l, (size_t)nl, sizeof l[0], am_label_cmp);

    buf_t desc = BUF_INIT;
    describe(n, &desc);
    char v[32], t[32], starts[CLK_ISO_LEN], ends[CLK_ISO_LEN], fp[20];
    num_text(n->value, v);
    num_text(r->threshold, t);
    clk_iso8601(n->since, starts);
    if (n->firing)
        snprintf(ends, sizeof ends, "0001-01-01T00:00:00Z"); /* Go's zero time: still firing */
    else
        clk_iso8601(n->at, ends);
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)fingerprint(l, nl));
    const char *status = n->firing ? "firing" : "resolved";
    const char *summary = r->summary ? r->summary : desc.data ? desc.data : "";
    buf_t gk = BUF_INIT, gen = BUF_INIT;
    buf_puts(&gk, "{}:{alertname=\"");
    buf_puts(&gk, r->name);
    buf_puts(&gk, "\"}");
    buf_printf(&gen, "%s/api/v1/alerts", a->external_url ? a->external_url : "");

    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "version", "4");
    jsonw_kv_str(&w, "groupKey", gk.data);
    jsonw_kv_int(&w, "truncatedAlerts", 0);
    jsonw_kv_str(&w, "status", status);
    jsonw_kv_str(&w, "receiver", "metricast");
    jsonw_key(&w, "groupLabels");
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "alertname", r->name);
    jsonw_obj_close(&w);
    jsonw_key(&w, "commonLabels");
    am_labels(&w, l, nl);
    jsonw_key(&w, "commonAnnotations");
    am_annotations(&w, summary, desc.data ? desc.data : "", v, t);
    jsonw_kv_str(&w, "externalURL", a->external_url ? a->external_url : "");
    jsonw_key(&w, "alerts");
    jsonw_arr_open(&w);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "status", status);
    jsonw_key(&w, "labels");
    am_labels(&w, l, nl);
    jsonw_key(&w, "annotations");
    am_annotations(&w, summary, desc.data ? desc.data : "", v, t);
    jsonw_kv_str(&w, "startsAt", starts);
    jsonw_kv_str(&w, "endsAt", ends);
    jsonw_kv_str(&w, "generatorURL", gen.data);
    jsonw_kv_str(&w, "fingerprint", fp);
    jsonw_obj_close(&w);
    jsonw_arr_close(&w);
    jsonw_obj_close(&w);
    buf_free(&desc), buf_free(&gk), buf_free(&gen);
    return jsonw_error(&w);
}

int webhook_body(alert_style_t style, const webhook_alert_t *a, buf_t *b,
                 const char **content_type) {
    *content_type = "application/json";
    switch (style) {
    case ALERT_STYLE_SLACK: return body_slack(a, b);
    case ALERT_STYLE_ALERTMANAGER: return body_alertmanager(a, b);
    case ALERT_STYLE_JSON:
    default:
        if (!a->envelope) return -EINVAL;
        return buf_puts(b, a->envelope);
    }
}
