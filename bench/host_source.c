/* bench_host_source — what the built-in host source costs: the hub with and without host
 * metrics, and Netdata's whole agent on the same machine for comparison.
 *
 *   bench_host_source [--seconds N] [--warmup S] [--netdata PATH|none] [-v]
 *                     -- METRICASTD [flags...]
 *
 * For each of `--host-metrics off` and `--host-metrics on` (in that order, each with a
 * fresh data directory unless the flags name one): start the daemon, wait until healthy,
 * let it warm up S seconds (default 10: the first collections build its tables), then
 * measure over N seconds (default 60):
 *   - the process's CPU time (utime + stime of /proc/PID/stat), as % of one core;
 *   - the host thread's own CPU time (metricast_host_collect_cpu_seconds_total, read from
 *     the thread's CLOCK_THREAD_CPUTIME_ID: the collection alone), in ms per second;
 *   - VmRSS at the start and at the end of the window, and the series count.
 * The difference between the two runs is what host metrics cost the whole hub (collector,
 * registry, history, store), the thread figure what the collection itself costs.
 *
 * Then Netdata (default /usr/sbin/netdata; `none` skips it): run by hand in its own process
 * group with a temporary configuration — every directory under a temporary dir, web on a
 * free loopback port, statsd on another free port, registry and cloud off, anonymous
 * statistics opted out — warmed up and measured the same way over its whole process group
 * (the daemon and every plugin it runs; CPU of plugins that exited is in the daemon's
 * cutime/cstime), memory as the sum of PSS (smaps_rollup: shared pages counted once).
 * It is stopped by its process group id (SIGTERM, then SIGKILL after 10 s) and the program
 * checks that no process of that group is left.
 *
 * Wall-clock CPU figures move with whatever else the machine does: the load average is
 * printed with the results. Exit status: 0 when every run worked, 1 otherwise, 2 on usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static struct {
    long seconds, warmup;
    const char *netdata;
    int verbose;
} opt = {60, 10, "/usr/sbin/netdata", 0};

typedef struct {
    double cpu_pct;       /* % of one core over the window */
    double thread_ms_s;   /* host thread, ms of CPU per second (metricast only) */
    long rss0_kib, rss1_kib, hwm_kib;
    double series;
    int ok;
} result_t;

static long clk_tck(void) {
    long t = sysconf(_SC_CLK_TCK);
    return t > 0 ? t : 100;
}

/* utime + stime (+ cutime + cstime when children) of one process, in ticks; -1 if gone. */
static long long proc_ticks(pid_t pid, int children) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
    if (!p) return -1;
    long long f[20];
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime */
    int got = sscanf(p + 2, "%*c %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld",
                     &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10],
                     &f[11], &f[12], &f[13]);
    if (got < 14) return -1;
    return f[10] + f[11] + (children ? f[12] + f[13] : 0);
}

static pid_t proc_pgrp(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int ppid, pgrp;
    if (!p || sscanf(p + 2, "%*c %d %d", &ppid, &pgrp) != 2) return -1;
    return pgrp;
}

/* The kB of "Pss:" in /proc/PID/smaps_rollup, or -1. */
static long proc_pss_kib(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strstr(buf, "\nPss:");
    return p ? strtol(p + 5, NULL, 10) : -1;
}

/* Sum over the live processes of group pgid: ticks (the leader with its reaped children),
 * PSS and process count. */
static void group_usage(pid_t pgid, long long *ticks, long *pss, int *nprocs) {
    *ticks = 0, *pss = 0, *nprocs = 0;
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || proc_pgrp((pid_t)pid) != pgid) continue;
        long long t = proc_ticks((pid_t)pid, pid == pgid);
        if (t < 0) continue;
        *ticks += t;
        long ps = proc_pss_kib((pid_t)pid);
        if (ps > 0) *pss += ps;
        (*nprocs)++;
    }
    closedir(d);
}

static double metric(int port, const char *series) {
    int status;
    char *body;
    size_t len;
    double v = -1;
    if (http_get(port, "/metrics", 5000, &status, &body, &len) == 0) {
        if (status != 200 || prom_find(body, series, &v) < 0) v = -1;
        free(body);
    }
    return v;
}

/* ---- metricastd ----------------------------------------------------------------------- */

static int run_hub(int argc, char **argv, const char *onoff, result_t *r) {
    memset(r, 0, sizeof *r);
    char **av = calloc((size_t)argc + 3, sizeof *av);
    if (!av) return -1;
    for (int i = 0; i < argc; i++) av[i] = argv[i];
    av[argc] = "--host-metrics";
    av[argc + 1] = (char *)onoff;
    daemon_cmd_t cmd;
    daemon_run_t run;
    char err[256];
    int rc = -1;
    if (daemon_cmd_init(&cmd, argc + 2, av, err, sizeof err) < 0) {
        fprintf(stderr, "bench_host_source: %s\n", err);
        free(av);
        return -1;
    }
    double ready;
    if (daemon_start(&cmd, &run) < 0 || daemon_wait_healthy(&cmd, &run, 10000, &ready) < 0) {
        fprintf(stderr, "bench_host_source: metricastd (host %s) did not become healthy\n", onoff);
        daemon_log_tail(&cmd, 20);
        daemon_kill(&run);
        goto out;
    }
    sleep_us(opt.warmup * 1000000L);
    long long t0 = proc_ticks(run.pid, 0);
    double h0 = metric(run.port, "metricast_host_collect_cpu_seconds_total");
    r->rss0_kib = proc_status_kib(run.pid, "VmRSS");
    double w0 = now_ms();
    sleep_us(opt.seconds * 1000000L);
    long long t1 = proc_ticks(run.pid, 0);
    double w1 = now_ms();
    double h1 = metric(run.port, "metricast_host_collect_cpu_seconds_total");
    r->rss1_kib = proc_status_kib(run.pid, "VmRSS");
    r->hwm_kib = proc_status_kib(run.pid, "VmHWM");
    r->series = metric(run.port, "metricast_series");
    double secs = (w1 - w0) / 1000.0;
    r->cpu_pct = (double)(t1 - t0) / (double)clk_tck() / secs * 100.0;
    r->thread_ms_s = h0 >= 0 && h1 >= 0 ? (h1 - h0) / secs * 1000.0 : 0;
    double stop_ms;
    int ws;
    if (daemon_stop(&run, 10000, &stop_ms, &ws) < 0) {
        char b[64];
        fprintf(stderr, "bench_host_source: metricastd did not stop cleanly (%s)\n",
                wstatus_str(ws, b, sizeof b));
        goto out;
    }
    r->ok = t0 >= 0 && t1 >= t0;
    rc = r->ok ? 0 : -1;
out:
    daemon_cmd_free(&cmd);
    free(av);
    return rc;
}

/* ---- Netdata -------------------------------------------------------------------------- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void rm_rf(const char *path) {
    pid_t p = fork();
    if (p == 0) {
        execlp("rm", "rm", "-rf", path, (char *)NULL);
        _exit(127);
    }
    if (p > 0) waitpid(p, NULL, 0);
}

static int group_alive(pid_t pgid) {
    long long t;
    long pss;
    int n;
    group_usage(pgid, &t, &pss, &n);
    return n;
}

static int run_netdata(result_t *r, int *charts_out, int *dims_out) {
    memset(r, 0, sizeof *r);
    *charts_out = *dims_out = -1;
    const char *tmpdir = getenv("TMPDIR");
    char root[512], conf[640], path[700];
    snprintf(root, sizeof root, "%s/metricast-bench-netdata.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(root)) {
        perror("bench_host_source: mkdtemp");
        return -1;
    }
    static const char *const dirs[] = {"etc", "log", "cache", "lib"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        mkdir(path, 0755);
    }
    snprintf(path, sizeof path, "%s/etc/.opt-out-from-anonymous-statistics", root);
    close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    int web = free_port(), statsd = free_port();
    snprintf(conf, sizeof conf, "%s/etc/netdata.conf", root);
    FILE *f = fopen(conf, "w");
    if (!f || web < 0 || statsd < 0) {
        if (f) fclose(f);
        rm_rf(root);
        return -1;
    }
    fprintf(f,
            "[global]\n    run as user = root\n    hostname = metricast-bench\n"
            "[directories]\n    config = %s/etc\n    stock config = /usr/lib/netdata/conf.d\n"
            "    log = %s/log\n    cache = %s/cache\n    lib = %s/lib\n    home = %s/lib\n"
            "    plugins = /usr/lib/netdata/plugins.d\n"
            "[logs]\n    debug = none\n    access = none\n    error = %s/log/error.log\n"
            "[web]\n    bind to = 127.0.0.1:%d\n"
            "[statsd]\n    bind to = udp:127.0.0.1:%d tcp:127.0.0.1:%d\n"
            "[registry]\n    enabled = no\n[cloud]\n    enabled = no\n",
            root, root, root, root, root, root, web, statsd, statsd);
    fclose(f);

    pid_t pid = fork();
    if (pid < 0) {
        rm_rf(root);
        return -1;
    }
    if (pid == 0) {
        setsid(); /* its own process group: every plugin is stopped with it */
        snprintf(path, sizeof path, "%s/log/stdout.txt", root);
        int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out >= 0) dup2(out, 1), dup2(out, 2);
        setenv("DO_NOT_TRACK", "1", 1);
        setenv("DISABLE_TELEMETRY", "1", 1);
        execl(opt.netdata, opt.netdata, "-D", "-c", conf, (char *)NULL);
        _exit(127);
    }
    int rc = -1;
    double deadline = now_ms() + 20000;
    int status = 0;
    while (now_ms() < deadline) {
        char *body;
        size_t len;
        if (http_get(web, "/api/v1/info", 1000, &status, &body, &len) == 0) {
            free(body);
            if (status == 200) break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "bench_host_source: netdata exited during start-up (log in %s/log)\n",
                    root);
            pid = 0;
            goto out;
        }
        sleep_us(100000);
    }
    if (status != 200) {
        fprintf(stderr, "bench_host_source: netdata did not answer on 127.0.0.1:%d\n", web);
        goto stop;
    }
    sleep_us(opt.warmup * 1000000L);
    long long t0, t1;
    long pss0, pss1;
    int n0, n1;
    group_usage(pid, &t0, &pss0, &n0);
    double w0 = now_ms();
    sleep_us(opt.seconds * 1000000L);
    group_usage(pid, &t1, &pss1, &n1);
    double secs = (now_ms() - w0) / 1000.0;
    r->cpu_pct = (double)(t1 - t0) / (double)clk_tck() / secs * 100.0;
    r->rss0_kib = pss0;
    r->rss1_kib = pss1;
    r->hwm_kib = proc_status_kib(pid, "VmHWM");
    r->series = n1; /* processes */
    {
        char *body;
        size_t len;
        int st;
        if (http_get(web, "/api/v1/charts", 5000, &st, &body, &len) == 0) {
            /* every chart has a data_url; every dimension is written `"id": { "name": ...` */
            int charts = 0, dims = 0;
            for (const char *p = body; (p = strstr(p, "\"data_url\":")); p++) charts++;
            for (const char *p = body; (p = strstr(p, "{ \"name\":")); p++) dims++;
            *charts_out = st == 200 ? charts : -1;
            *dims_out = st == 200 ? dims : -1;
            free(body);
        }
    }
    r->ok = 1;
    rc = 0;
stop:
    kill(-pid, SIGTERM);
    for (double end = now_ms() + 10000; now_ms() < end && group_alive(pid);) sleep_us(100000);
    if (group_alive(pid)) kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (double end = now_ms() + 5000; now_ms() < end && group_alive(pid);) sleep_us(50000);
    if (group_alive(pid)) {
        fprintf(stderr, "bench_host_source: processes of netdata's group %d are still alive\n",
                (int)pid);
        rc = -1;
    }
out:
    if (opt.verbose) fprintf(stderr, "netdata files kept in %s\n", root);
    else rm_rf(root);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_host_source [--seconds N] [--warmup S] [--netdata PATH|none] [-v] "
               "-- METRICASTD [flags...]\n");
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            if ((opt.seconds = parse_long(argv[++i], 1, 3600)) < 0) return usage(stderr), 2;
        } else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) {
            if ((opt.warmup = parse_long(argv[++i], 0, 600)) < 0) return usage(stderr), 2;
        } else if (strcmp(argv[i], "--netdata") == 0 && i + 1 < argc) {
            opt.netdata = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0) {
            opt.verbose = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    result_t off, on, nd;
    int failed = 0, charts = -1, dims = -1;
    printf("window %lds after %lds warm-up; load %s", opt.seconds, opt.warmup, "");
    {
        FILE *la = fopen("/proc/loadavg", "r");
        char b[64] = "?";
        if (la) {
            if (!fgets(b, sizeof b, la)) snprintf(b, sizeof b, "?\n");
            fclose(la);
        }
        printf("%s", b);
    }
    fflush(stdout);
    failed |= run_hub(argc - i, argv + i, "off", &off) < 0;
    failed |= run_hub(argc - i, argv + i, "on", &on) < 0;
    printf("%-28s %9s %12s %10s %10s %10s %8s\n", "", "cpu%core", "thread ms/s", "rss0 KiB",
           "rss1 KiB", "hwm KiB", "series");
    printf("%-28s %9.3f %12s %10ld %10ld %10ld %8.0f\n", "metricastd --host-metrics off",
           off.cpu_pct, "-", off.rss0_kib, off.rss1_kib, off.hwm_kib, off.series);
    printf("%-28s %9.3f %12.3f %10ld %10ld %10ld %8.0f\n", "metricastd --host-metrics on",
           on.cpu_pct, on.thread_ms_s, on.rss0_kib, on.rss1_kib, on.hwm_kib, on.series);
    int have_nd = opt.netdata && strcmp(opt.netdata, "none") != 0 && access(opt.netdata, X_OK) == 0;
    if (have_nd) {
        failed |= run_netdata(&nd, &charts, &dims) < 0;
        printf("%-28s %9.3f %12s %10ld %10ld %10ld %8s\n", "netdata (whole agent, PSS)",
               nd.cpu_pct, "-", nd.rss0_kib, nd.rss1_kib, nd.hwm_kib, "-");
        printf("netdata: %.0f processes, %d charts, %d dimensions (its series)\n", nd.series,
               charts, dims);
    } else if (opt.netdata && strcmp(opt.netdata, "none") != 0) {
        printf("netdata: %s not found: skipped\n", opt.netdata);
    }
    printf("host_cost_cpu_pct=%.3f host_thread_ms_per_s=%.3f host_rss_delta_kib=%ld "
           "host_series=%.0f netdata_cpu_pct=%.3f netdata_pss_kib=%ld\n",
           on.cpu_pct - off.cpu_pct, on.thread_ms_s, on.rss1_kib - off.rss1_kib,
           on.series - off.series, have_nd ? nd.cpu_pct : -1.0, have_nd ? nd.rss1_kib : -1L);
    return failed ? 1 : 0;
}
