#include "hub.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "version.h"

#define LISTEN_BACKLOG 4096

static int bind_listener(const cfg_addr_t *a, int *fd_out, char *actual, size_t actual_len) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t slen;
    int family;
    if (strchr(a->host, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (uv_ip6_addr(a->host, a->port, in6)) return -EINVAL;
        family = AF_INET6;
        slen = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        if (uv_ip4_addr(a->host, a->port, in)) return -EINVAL;
        family = AF_INET;
        slen = sizeof *in;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    /* SO_REUSEADDR only skips TIME_WAIT leftovers; it never lets two servers share the
     * port on Linux, so "address already in use" is still reported. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    cfg_addr_t real = *a;
    if (getsockname(fd, (struct sockaddr *)&got, &glen) == 0)
        real.port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port);
    config_addr_str(&real, actual, actual_len);
    *fd_out = fd;
    return 0;
}

static void on_probe(uv_timer_t *t) {
    hub_t *hub = t->data;
    int rc = health_probe_dir(hub->cfg->data_dir);
    int prev = atomic_exchange(&hub->data_dir_errno, -rc);
    if (rc && !prev)
        log_error("data directory not writable", "dir=%s error=\"%s\"", hub->cfg->data_dir,
                  strerror(-rc));
    else if (!rc && prev)
        log_info("data directory writable again", "dir=%s", hub->cfg->data_dir);
}

static void begin_stop(hub_t *hub, const char *why) {
    if (hub->stopping) return;
    hub->stopping = true;
    log_info("shutting down", "signal=%s", why);
    uv_timer_stop(&hub->probe_timer);
    for (int i = 0; i < hub->workers_started; i++) worker_request_stop(&hub->workers[i]);
    if (hub->workers_started == 0) {
        uv_close((uv_handle_t *)&hub->sigint, NULL);
        uv_close((uv_handle_t *)&hub->sigterm, NULL);
        uv_close((uv_handle_t *)&hub->probe_timer, NULL);
        uv_close((uv_handle_t *)&hub->lag.timer, NULL);
        inbox_close(&hub->inbox, NULL);
    }
}

static void on_signal(uv_signal_t *s, int signum) {
    begin_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void worker_done_task(void *arg, int cancelled) {
    worker_t *w = arg;
    hub_t *hub = w->hub;
    if (cancelled) return;
    hub->workers_done++;
    if (hub->workers_done < hub->workers_started) return;
    for (int i = 0; i < hub->workers_started; i++) worker_join(&hub->workers[i]);
    uv_close((uv_handle_t *)&hub->sigint, NULL);
    uv_close((uv_handle_t *)&hub->sigterm, NULL);
    uv_close((uv_handle_t *)&hub->probe_timer, NULL);
    uv_close((uv_handle_t *)&hub->lag.timer, NULL);
    inbox_close(&hub->inbox, NULL);
}

void hub_worker_done(hub_t *hub, worker_t *w) {
    if (inbox_post(&hub->inbox, worker_done_task, w) < 0)
        log_error("worker stop not delivered", "worker=%d", w->id);
}

int hub_open(hub_t *hub, const config_t *cfg, char err[HUB_ERR_LEN]) {
    memset(hub, 0, sizeof *hub);
    hub->cfg = cfg;
    hub->listen_fd = -1;
    hub->started_unix = clk_unix();
    hub->started_ns = uv_hrtime();
    atomic_init(&hub->data_dir_errno, 0);

    char want[80];
    config_addr_str(&cfg->listen, want, sizeof want);
    int rc = bind_listener(&cfg->listen, &hub->listen_fd, hub->listen_addr,
                           sizeof hub->listen_addr);
    if (rc) {
        snprintf(err, HUB_ERR_LEN, "--listen %s: %s", want, strerror(-rc));
        return -1;
    }

    rc = uv_loop_init(&hub->loop);
    if (rc) goto fail_uv;
    hub->loop.data = hub;
    if ((rc = inbox_init(&hub->inbox, &hub->loop))) goto fail_uv;
    if ((rc = uv_signal_init(&hub->loop, &hub->sigint))) goto fail_uv;
    if ((rc = uv_signal_init(&hub->loop, &hub->sigterm))) goto fail_uv;
    if ((rc = uv_timer_init(&hub->loop, &hub->probe_timer))) goto fail_uv;
    if ((rc = loop_lag_start(&hub->lag, &hub->loop))) goto fail_uv;
    hub->sigint.data = hub->sigterm.data = hub->probe_timer.data = hub;

    int n = cfg->threads;
    if (n <= 0) n = (int)uv_available_parallelism();
    if (n < 1) n = 1;
    hub->workers = calloc((size_t)n, sizeof *hub->workers);
    if (!hub->workers) {
        rc = UV_ENOMEM;
        goto fail_uv;
    }
    hub->nworkers = n;
    for (int i = 0; i < n; i++) {
        if ((rc = worker_init(&hub->workers[i], i, hub, cfg, hub->listen_fd))) {
            hub->nworkers = i; /* the ones before are initialised */
            goto fail_uv;
        }
    }
    return 0;
fail_uv:
    snprintf(err, HUB_ERR_LEN, "start-up failed: %s", uv_strerror(rc));
    return -1;
}

int hub_run(hub_t *hub) {
    const config_t *cfg = hub->cfg;
    uv_signal_start(&hub->sigint, on_signal, SIGINT);
    uv_signal_start(&hub->sigterm, on_signal, SIGTERM);
    on_probe(&hub->probe_timer);
    uint64_t probe_ms = (uint64_t)(cfg->health_interval * 1000);
    uv_timer_start(&hub->probe_timer, on_probe, probe_ms ? probe_ms : 1, probe_ms ? probe_ms : 1);

    for (int i = 0; i < hub->nworkers; i++) {
        int rc = worker_start(&hub->workers[i]);
        if (rc) {
            log_error("cannot start worker thread", "worker=%d error=\"%s\"", i, uv_strerror(rc));
            begin_stop(hub, "start-up failure");
            break;
        }
        hub->workers_started++;
    }
    char statsd[80];
    config_addr_str(&cfg->statsd, statsd, sizeof statsd);
    log_info("http listening", "addr=%s threads=%d data=%s tick=%g version=%s",
             hub->listen_addr, hub->nworkers, cfg->data_dir, cfg->tick, MC_VERSION);
    log_info("ready", "startup_ms=%.1f", (double)(uv_hrtime() - hub->started_ns) / 1e6);

    uv_run(&hub->loop, UV_RUN_DEFAULT);
    log_info("stopped", "uptime_seconds=%.1f", clk_unix() - hub->started_unix);
    return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
    hub_t *hub = arg;
    if (uv_is_closing(h)) return;
    if (h == (uv_handle_t *)&hub->inbox.async)
        inbox_close(&hub->inbox, NULL);
    else
        uv_close(h, NULL);
}

void hub_close(hub_t *hub) {
    /* workers that were initialised but never started still own loops and handles */
    for (int i = hub->workers_started; i < hub->nworkers; i++) worker_discard(&hub->workers[i]);
    free(hub->workers);
    hub->workers = NULL;
    if (hub->listen_fd >= 0) close(hub->listen_fd);
    hub->listen_fd = -1;
    if (hub->loop.data) { /* after a failed hub_open, or a run that left handles */
        uv_walk(&hub->loop, close_any, hub);
        uv_run(&hub->loop, UV_RUN_DEFAULT);
        uv_loop_close(&hub->loop);
        hub->loop.data = NULL;
    }
}

void hub_health_input(hub_t *hub, health_input_t *in) {
    memset(in, 0, sizeof *in);
    uint64_t now = uv_hrtime();
    in->max_loop_lag_s = loop_lag_seconds(&hub->lag, now);
    in->worst_loop = -1;
    for (int i = 0; i < hub->nworkers; i++) {
        worker_t *w = &hub->workers[i];
        double l = loop_lag_seconds(&w->lag, now);
        if (l > in->max_loop_lag_s) {
            in->max_loop_lag_s = l;
            in->worst_loop = i;
        }
        in->connections += atomic_load(&w->stats.connections);
        in->ws_connections += atomic_load(&w->stats.ws_connections);
    }
    in->max_loop_lag_limit_s = hub->cfg->health_max_loop_lag;
    int e = atomic_load(&hub->data_dir_errno);
    in->data_dir_ok = e == 0;
    in->data_dir_errno = e;
    in->data_dir = hub->cfg->data_dir;
    in->uptime_s = (double)(now - hub->started_ns) / 1e9;
    in->version = MC_VERSION;
}
