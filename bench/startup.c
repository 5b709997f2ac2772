/* bench_startup — start-up time, resident memory and shutdown time of metricastd.
 *
 *   bench_startup [--runs N] [--timeout-ms MS] [-v] -- /path/metricastd [daemon flags...]
 *
 * N times (default 50): take the time, fork+exec the daemon, poll GET /api/v1/health over
 * raw TCP every ~0.2 ms until it answers `HTTP/1.1 200` (start-up time), read VmRSS and
 * VmHWM from /proc/PID/status, send SIGTERM and time the exit (shutdown time; the exit
 * status must be 0). Runs are sequential; each start and each stop is bounded by the
 * timeout (default 5000 ms): a daemon that misses it is killed and the run fails.
 *
 * The daemon's --listen value: `127.0.0.1:PORT` (or no --listen) picks a free port before
 * each run; `127.0.0.1:0` lets the daemon choose and reads it from its
 * `msg="http listening" addr=...` log line; `127.0.0.1:N` uses N every time. Without
 * --data a temporary data directory is created and removed.
 *
 * Exit status: 0 when every run passed, 1 when any failed, 2 on a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAX_RUNS 10000

static void usage(FILE *f) {
    fprintf(f, "usage: bench_startup [--runs N] [--timeout-ms MS] [-v] -- METRICASTD [FLAGS...]\n"
               "  e.g. bench_startup --runs 50 -- build/metricastd --listen 127.0.0.1:PORT "
               "--statsd off --data /tmp/d\n");
}

int main(int argc, char **argv) {
    long runs = 50, timeout_ms = 5000;
    int verbose = 0, i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            if ((runs = parse_long(argv[++i], 1, MAX_RUNS)) < 0) {
                fprintf(stderr, "bench_startup: --runs must be 1..%d\n", MAX_RUNS);
                return 2;
            }
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            if ((timeout_ms = parse_long(argv[++i], 1, 600000)) < 0) {
                fprintf(stderr, "bench_startup: --timeout-ms must be 1..600000\n");
                return 2;
            }
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
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
    daemon_cmd_t cmd;
    char err[512];
    if (daemon_cmd_init(&cmd, argc - i, argv + i, err, sizeof err) < 0) {
        fprintf(stderr, "bench_startup: %s\n", err);
        return 2;
    }

    double *start = calloc((size_t)runs, sizeof *start);
    double *stop = calloc((size_t)runs, sizeof *stop);
    double *rss = calloc((size_t)runs, sizeof *rss);
    double *hwm = calloc((size_t)runs, sizeof *hwm);
    if (!start || !stop || !rss || !hwm) {
        fprintf(stderr, "bench_startup: out of memory\n");
        daemon_cmd_free(&cmd);
        return 2;
    }
    size_t ok = 0;
    long failures = 0;
    double first_start = -1;

    printf("bench_startup: %ld runs of:", runs);
    for (int k = 0; k < cmd.argc; k++)
        printf(" %s", k == cmd.listen_idx && cmd.mode == PORT_PICK ? "127.0.0.1:<free port>"
                                                                   : cmd.argv[k]);
    printf("\n");
    fflush(stdout);

    for (long r = 0; r < runs; r++) {
        daemon_run_t run;
        double ready = 0, stop_ms = 0;
        int wst = 0;
        if (daemon_start(&cmd, &run) < 0) {
            failures++;
            continue;
        }
        int h = daemon_wait_healthy(&cmd, &run, (double)timeout_ms, &ready);
        if (h != 0) {
            if (h == -1)
                fprintf(stderr,
                        "bench_startup: run %ld: no `200` from /api/v1/health within %ld ms\n",
                        r + 1, timeout_ms);
            else
                fprintf(stderr, "bench_startup: run %ld: daemon exited during start-up\n", r + 1);
            daemon_kill(&run);
            daemon_log_tail(&cmd, 10);
            failures++;
            continue;
        }
        long rss_kib = proc_status_kib(run.pid, "VmRSS");
        long hwm_kib = proc_status_kib(run.pid, "VmHWM");
        int s = daemon_stop(&run, (double)timeout_ms, &stop_ms, &wst);
        if (s != 0) {
            char b[32];
            fprintf(stderr, "bench_startup: run %ld: shutdown failed (%s)\n", r + 1,
                    wst == -1 ? "timeout" : wstatus_str(wst, b, sizeof b));
            daemon_log_tail(&cmd, 10);
            failures++;
            continue;
        }
        double st = ready - run.t_spawn_ms;
        if (r == 0) first_start = st;
        if (verbose)
            printf(
                "  run %3ld  start %7.3f ms  rss %6ld KiB  hwm %6ld KiB  stop %7.3f ms  port %d\n",
                r + 1, st, rss_kib, hwm_kib, stop_ms, run.port);
        start[ok] = st;
        stop[ok] = stop_ms;
        rss[ok] = (double)rss_kib;
        hwm[ok] = (double)hwm_kib;
        ok++;
    }

    int rc = failures ? 1 : 0;
    if (ok == 0) {
        fprintf(stderr, "bench_startup: every run failed\n");
        printf("startup_ms_median=NA rss_kib_median=NA shutdown_ms_median=NA\n");
        free(start), free(stop), free(rss), free(hwm);
        daemon_cmd_free(&cmd);
        return 1;
    }
    sort_doubles(start, ok);
    sort_doubles(stop, ok);
    sort_doubles(rss, ok);
    sort_doubles(hwm, ok);
    printf("\n%-18s %9s %9s %9s %9s\n", "", "median", "p90", "min", "max");
    printf("%-18s %9.2f %9.2f %9.2f %9.2f\n", "start-up (ms)", median_sorted(start, ok),
           pct_sorted(start, ok, 90), start[0], start[ok - 1]);
    printf("%-18s %9.0f %9.0f %9.0f %9.0f\n", "VmRSS (KiB)", median_sorted(rss, ok),
           pct_sorted(rss, ok, 90), rss[0], rss[ok - 1]);
    printf("%-18s %9.0f %9.0f %9.0f %9.0f\n", "VmHWM (KiB)", median_sorted(hwm, ok),
           pct_sorted(hwm, ok, 90), hwm[0], hwm[ok - 1]);
    printf("%-18s %9.2f %9.2f %9.2f %9.2f\n", "shutdown (ms)", median_sorted(stop, ok),
           pct_sorted(stop, ok, 90), stop[0], stop[ok - 1]);
    printf("runs %zu ok, %ld failed", ok, failures);
    if (first_start >= 0) printf("; first run (cold) start-up %.2f ms", first_start);
    printf("\n");
    printf("startup_ms_median=%.2f rss_kib_median=%.0f shutdown_ms_median=%.2f\n",
           median_sorted(start, ok), median_sorted(rss, ok), median_sorted(stop, ok));
    free(start), free(stop), free(rss), free(hwm);
    daemon_cmd_free(&cmd);
    return rc;
}
