#include "health.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonw.h"

void health_eval(const health_input_t *in, health_result_t *out) {
    memset(out, 0, sizeof *out);
    health_check_t *lag = &out->checks[out->n++];
    snprintf(lag->name, sizeof lag->name, "loop_lag");
    lag->ok = in->max_loop_lag_s <= in->max_loop_lag_limit_s;
    snprintf(lag->detail, sizeof lag->detail, "worst event-loop lag %.1f ms (%s %d), limit %.1f ms",
             in->max_loop_lag_s * 1e3, in->worst_loop < 0 ? "hub" : "worker",
             in->worst_loop < 0 ? 0 : in->worst_loop, in->max_loop_lag_limit_s * 1e3);

    health_check_t *dir = &out->checks[out->n++];
    snprintf(dir->name, sizeof dir->name, "data_dir");
    dir->ok = in->data_dir_ok;
    if (dir->ok)
        snprintf(dir->detail, sizeof dir->detail, "%s is writable", in->data_dir);
    else
        snprintf(dir->detail, sizeof dir->detail, "%s is not writable: %s", in->data_dir,
                 strerror(in->data_dir_errno));

    health_check_t *st = &out->checks[out->n++];
    snprintf(st->name, sizeof st->name, "store");
    st->ok = in->store_ok;
    if (st->ok)
        snprintf(st->detail, sizeof st->detail, "the last write to the store succeeded");
    else
        snprintf(st->detail, sizeof st->detail, "store writes are failing: %.120s", in->store_msg);

    health_check_t *dr = &out->checks[out->n++];
    snprintf(dr->name, sizeof dr->name, "ingest_drops");
    unsigned long long offered = in->drops_1m + in->accepted_1m;
    double ratio = offered ? (double)in->drops_1m / (double)offered : 0;
    dr->ok = in->max_drop_ratio >= 1 || in->drops_1m == 0 || ratio <= in->max_drop_ratio;
    snprintf(dr->detail, sizeof dr->detail,
             "%llu of %llu ingest samples dropped over the last minute (%.2f%%), limit %.2f%%",
             in->drops_1m, offered, ratio * 100, in->max_drop_ratio * 100);

    for (int i = 0; in->critical_alerts_check && i < in->nalerts && out->n < HEALTH_MAX_CHECKS; i++) {
        const health_alert_t *a = &in->alerts[i];
        health_check_t *c = &out->checks[out->n++];
        snprintf(c->name, sizeof c->name, "alert:%.128s", a->rule);
        c->ok = false;
        if (i == in->nalerts - 1 && in->alerts_more)
            snprintf(c->detail, sizeof c->detail, "critical alert firing (%u): %.80s; and %u "
                     "more critical rules firing", a->firing, a->detail, in->alerts_more);
        else
            snprintf(c->detail, sizeof c->detail, "critical alert firing (%u): %.120s", a->firing,
                     a->detail);
    }

    if (in->nats_on && out->n < HEALTH_MAX_CHECKS) {
        health_check_t *c = &out->checks[out->n++];
        snprintf(c->name, sizeof c->name, "nats");
        c->ok = in->nats_ok;
        c->soft = true;
        snprintf(c->detail, sizeof c->detail, "%.159s", in->nats_detail);
    }

    out->healthy = true;
    for (int i = 0; i < out->n; i++) {
        if (out->checks[i].soft)
            out->degraded |= !out->checks[i].ok;
        else
            out->healthy &= out->checks[i].ok;
    }
    out->degraded &= out->healthy;
}

int health_json(const health_input_t *in, const health_result_t *res, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "status", !res->healthy ? "unhealthy" : res->degraded ? "degraded" : "healthy");
    if (!res->healthy) {
        jsonw_key(&w, "failing");
        jsonw_arr_open(&w);
        for (int i = 0; i < res->n; i++)
            if (!res->checks[i].ok && !res->checks[i].soft) jsonw_str(&w, res->checks[i].name);
        jsonw_arr_close(&w);
    }
    bool any_soft = false;
    for (int i = 0; i < res->n; i++) any_soft |= !res->checks[i].ok && res->checks[i].soft;
    if (any_soft) {
        jsonw_key(&w, "degraded");
        jsonw_arr_open(&w);
        for (int i = 0; i < res->n; i++)
            if (!res->checks[i].ok && res->checks[i].soft) jsonw_str(&w, res->checks[i].name);
        jsonw_arr_close(&w);
    }
    jsonw_key(&w, "checks");
    jsonw_obj_open(&w);
    for (int i = 0; i < res->n; i++) {
        jsonw_key(&w, res->checks[i].name);
        jsonw_obj_open(&w);
        jsonw_kv_bool(&w, "ok", res->checks[i].ok);
        jsonw_kv_str(&w, "detail", res->checks[i].detail);
        if (strcmp(res->checks[i].name, "loop_lag") == 0) {
            jsonw_kv_num(&w, "value_seconds", in->max_loop_lag_s);
            jsonw_kv_num(&w, "limit_seconds", in->max_loop_lag_limit_s);
        } else if (strcmp(res->checks[i].name, "ingest_drops") == 0) {
            unsigned long long offered = in->drops_1m + in->accepted_1m;
            jsonw_kv_uint(&w, "dropped", in->drops_1m);
            jsonw_kv_uint(&w, "offered", offered);
            jsonw_kv_num(&w, "ratio", offered ? (double)in->drops_1m / (double)offered : 0);
            jsonw_kv_num(&w, "limit_ratio", in->max_drop_ratio);
        }
        jsonw_obj_close(&w);
    }
    jsonw_obj_close(&w);
    jsonw_kv_str(&w, "version", in->version);
    jsonw_kv_num(&w, "uptime_seconds", in->uptime_s);
    jsonw_kv_uint(&w, "connections", in->connections);
    jsonw_kv_uint(&w, "ws_connections", in->ws_connections);
    jsonw_obj_close(&w);
    if (buf_putc(b, '\n') < 0) return -ENOMEM;
    return jsonw_error(&w);
}

int health_mkdirs(const char *dir) {
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return -ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0750) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) return -errno;
    struct stat st;
    if (stat(path, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    return 0;
}

int health_probe_dir(const char *dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/.metricast-probe", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    static const char data[] = "metricast write probe\n";
    ssize_t w = write(fd, data, sizeof data - 1);
    int err = w == (ssize_t)(sizeof data - 1) ? 0 : (w < 0 ? -errno : -ENOSPC);
    if (close(fd) < 0 && !err) err = -errno;
    return err;
}
