/* Shared plumbing for the benchmark programs: start metricastd on a loopback port, wait
 * until /api/v1/health answers 200, read its memory from /proc, stop it, and summarise
 * samples. libc only; every wait is bounded by a deadline. */
#ifndef METRICAST_BENCH_UTIL_H
#define METRICAST_BENCH_UTIL_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* How the daemon's HTTP port is chosen for each start. */
typedef enum {
    PORT_PICK,     /* `--listen 127.0.0.1:PORT` or no --listen: a free port per start */
    PORT_FROM_LOG, /* `--listen 127.0.0.1:0`: parsed from the `msg="http listening"` line */
    PORT_FIXED,    /* `--listen 127.0.0.1:N`: that port, every start */
} port_mode_t;

typedef struct {
    char **argv; /* the command, with the --listen value rewritten per start */
    int argc;
    int listen_idx;     /* argv index of the token holding the --listen value */
    int listen_eq_form; /* that token is `--listen=ADDR` rather than a separate value */
    port_mode_t mode;
    int fixed_port;
    char listen_tok[64];
    char log_path[PATH_MAX];     /* the daemon's stdout+stderr, truncated at each start */
    char own_data_dir[PATH_MAX]; /* a --data directory we created (removed at the end) */
    char data_tok[PATH_MAX];
} daemon_cmd_t;

typedef struct {
    pid_t pid;         /* 0: not running */
    int pidfd;         /* -1 when pidfd_open is unavailable */
    int port;          /* 0 until known */
    double t_spawn_ms; /* monotonic time taken just before fork() */
} daemon_run_t;

double now_ms(void);
void sleep_us(long us);

/* Builds the command from the words after `--`. 0, or -1 with a message in err. */
int daemon_cmd_init(daemon_cmd_t *cmd, int argc, char **argv, char *err, size_t errlen);
void daemon_cmd_free(daemon_cmd_t *cmd);

/* Chooses the port, truncates the log, takes the start time and fork+execs. 0 or -1. */
int daemon_start(daemon_cmd_t *cmd, daemon_run_t *run);

/* Polls GET /api/v1/health (raw TCP, a try every ~0.2 ms) until an `HTTP/1.1 200` answer.
 * 0 with *ready_ms = monotonic time of that answer; -1 on timeout; -2 if the daemon exited
 * (it is then reaped and run->pid is 0). */
int daemon_wait_healthy(daemon_cmd_t *cmd, daemon_run_t *run, double timeout_ms, double *ready_ms);

/* SIGTERM, then waits at most timeout_ms for the exit (SIGKILL after that).
 * 0 when it exited with status 0 in time; *stop_ms is the SIGTERM-to-reaped time. */
int daemon_stop(daemon_run_t *run, double timeout_ms, double *stop_ms, int *wstatus);

/* SIGKILL and reap, for error paths. */
void daemon_kill(daemon_run_t *run);

/* The kB value of a /proc/PID/status line such as "VmRSS", or -1. */
long proc_status_kib(pid_t pid, const char *key);

/* Copies the last `lines` lines of the daemon's log to stderr, indented. */
void daemon_log_tail(const daemon_cmd_t *cmd, int lines);

/* Describes a wait status ("exit 0", "signal 9"). */
const char *wstatus_str(int wstatus, char *buf, size_t len);

/* Sorts v in place; median, nearest-rank percentile (p in 0..100). n > 0. */
void sort_doubles(double *v, size_t n);
double median_sorted(const double *v, size_t n);
double pct_sorted(const double *v, size_t n, double p);

/* Parses a positive integer flag value in [lo, hi]; -1 if invalid. */
long parse_long(const char *s, long lo, long hi);

/* The port in the daemon's log line `msg="<what>" addr=127.0.0.1:PORT` (e.g. what =
 * "statsd listening"), 0 if not logged (yet). */
int daemon_log_port(const daemon_cmd_t *cmd, const char *what);

/* One `GET path HTTP/1.1` (Connection: close) to 127.0.0.1:port over a fresh TCP
 * connection; reads the whole response (Content-Length or until close). The body is
 * malloc'ed and NUL-terminated (*body, *body_len), *status is the HTTP status. Bounded by
 * timeout_ms for the whole exchange. 0, or -1 (error/timeout; nothing to free). */
int http_get(int port, const char *path, double timeout_ms, int *status, char **body,
             size_t *body_len);
/* The same, also giving the time from the start of the call to the first response byte. */
int http_get_ttfb(int port, const char *path, double timeout_ms, int *status, char **body,
                  size_t *body_len, double *ttfb_ms);

/* The value of the first sample line `<series> <value>` in a Prometheus text body, where
 * series is the exact name{labels} text (e.g. `metricast_series` or
 * `metricast_ingest_lines_total{transport="udp"}`). 0, or -1 when absent. */
int prom_find(const char *body, const char *series, double *out);

#endif
