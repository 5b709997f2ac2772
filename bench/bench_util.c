#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_RETRY_US 200
#define LISTEN_HOST "127.0.0.1"

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

long parse_long(const char *s, long lo, long hi) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    return v;
}

/* ---- command line of the daemon ------------------------------------------------------- */

/* Parses "127.0.0.1:PORT|0|N" into the port mode; only loopback IPv4 is accepted. */
static int parse_listen(daemon_cmd_t *cmd, const char *val, char *err, size_t errlen) {
    size_t hl = strlen(LISTEN_HOST);
    if (strncmp(val, LISTEN_HOST ":", hl + 1) != 0) {
        snprintf(err, errlen, "--listen %s: the benchmarks only use " LISTEN_HOST ":PORT", val);
        return -1;
    }
    const char *p = val + hl + 1;
    if (strcmp(p, "PORT") == 0) {
        cmd->mode = PORT_PICK;
    } else if (strcmp(p, "0") == 0) {
        cmd->mode = PORT_FROM_LOG;
    } else {
        long port = parse_long(p, 1, 65535);
        if (port < 0) {
            snprintf(err, errlen, "--listen %s: bad port", val);
            return -1;
        }
        cmd->mode = PORT_FIXED;
        cmd->fixed_port = (int)port;
    }
    return 0;
}

int daemon_cmd_init(daemon_cmd_t *cmd, int argc, char **argv, char *err, size_t errlen) {
    memset(cmd, 0, sizeof *cmd);
    cmd->listen_idx = -1;
    if (argc < 1) {
        snprintf(err, errlen, "no daemon command after --");
        return -1;
    }
    /* room for an added `--listen X` and `--data D`, plus the NULL */
    cmd->argv = calloc((size_t)argc + 5, sizeof *cmd->argv);
    if (!cmd->argv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int has_data = 0;
    for (int i = 0; i < argc; i++) {
        cmd->argv[cmd->argc++] = argv[i];
        if (i == 0) continue;
        if (strcmp(argv[i], "--data") == 0 || strncmp(argv[i], "--data=", 7) == 0) has_data = 1;
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            if (parse_listen(cmd, argv[i + 1], err, errlen) < 0) goto fail;
            cmd->argv[cmd->argc++] = argv[++i];
            cmd->listen_idx = cmd->argc - 1;
        } else if (strncmp(argv[i], "--listen=", 9) == 0) {
            if (parse_listen(cmd, argv[i] + 9, err, errlen) < 0) goto fail;
            cmd->listen_idx = cmd->argc - 1;
            cmd->listen_eq_form = 1;
        }
    }
    if (cmd->listen_idx < 0) { /* no --listen: pick one, never the default 9750 */
        cmd->argv[cmd->argc++] = "--listen";
        cmd->argv[cmd->argc++] = cmd->listen_tok;
        cmd->listen_idx = cmd->argc - 1;
        cmd->mode = PORT_PICK;
    }
    if (!has_data) { /* never let the daemon create ./metricast-data in the cwd */
        const char *tmp = getenv("TMPDIR");
        snprintf(cmd->own_data_dir, sizeof cmd->own_data_dir, "%s/metricast-bench-data.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(cmd->own_data_dir)) {
            snprintf(err, errlen, "mkdtemp %s: %s", cmd->own_data_dir, strerror(errno));
            cmd->own_data_dir[0] = '\0';
            goto fail;
        }
        snprintf(cmd->data_tok, sizeof cmd->data_tok, "%s", cmd->own_data_dir);
        cmd->argv[cmd->argc++] = "--data";
        cmd->argv[cmd->argc++] = cmd->data_tok;
    }
    cmd->argv[cmd->argc] = NULL;

    const char *tmp = getenv("TMPDIR");
    snprintf(cmd->log_path, sizeof cmd->log_path, "%s/metricast-bench-log.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(cmd->log_path);
    if (fd < 0) {
        snprintf(err, errlen, "mkstemp %s: %s", cmd->log_path, strerror(errno));
        cmd->log_path[0] = '\0';
        goto fail;
    }
    close(fd);
    return 0;
fail:
    daemon_cmd_free(cmd);
    return -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void daemon_cmd_free(daemon_cmd_t *cmd) {
    if (cmd->log_path[0]) unlink(cmd->log_path);
    if (cmd->own_data_dir[0]) nftw(cmd->own_data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(cmd->argv);
    memset(cmd, 0, sizeof *cmd);
    cmd->listen_idx = -1;
}

/* ---- start ---------------------------------------------------------------------------- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int daemon_start(daemon_cmd_t *cmd, daemon_run_t *run) {
    memset(run, 0, sizeof *run);
    run->pidfd = -1;
    int port = 0;
    if (cmd->mode == PORT_PICK) {
        port = free_port();
        if (port <= 0) {
            fprintf(stderr, "bench: no free loopback port: %s\n", strerror(errno));
            return -1;
        }
    } else if (cmd->mode == PORT_FIXED) {
        port = cmd->fixed_port;
    }
    snprintf(cmd->listen_tok, sizeof cmd->listen_tok, "%s" LISTEN_HOST ":%d",
             cmd->listen_eq_form ? "--listen=" : "", port);
    cmd->argv[cmd->listen_idx] = cmd->listen_tok;

    int logfd = open(cmd->log_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) {
        fprintf(stderr, "bench: open %s: %s\n", cmd->log_path, strerror(errno));
        if (logfd >= 0) close(logfd);
        if (nullfd >= 0) close(nullfd);
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);

    run->t_spawn_ms = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        /* child: the daemon never outlives the benchmark */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        signal(SIGPIPE, SIG_DFL);
        execv(cmd->argv[0], cmd->argv);
        dprintf(2, "bench: exec %s: %s\n", cmd->argv[0], strerror(errno));
        _exit(127);
    }
    int saved = errno;
    close(logfd);
    close(nullfd);
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %s\n", strerror(saved));
        return -1;
    }
    run->pid = pid;
    run->port = port;
#ifdef SYS_pidfd_open
    run->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (run->pidfd >= 0) fcntl(run->pidfd, F_SETFD, FD_CLOEXEC);
#endif
    return 0;
}

/* ---- health polling ------------------------------------------------------------------- */

/* The port from `msg="<what>" addr=127.0.0.1:PORT`, 0 if not logged yet. */
static int port_from_log_msg(const char *path, const char *what) {
    char buf[8192], pat[128];
    snprintf(pat, sizeof pat, "msg=\"%s\"", what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *m = strstr(buf, pat);
    if (!m) return 0;
    const char *a = strstr(m, "addr=" LISTEN_HOST ":");
    if (!a) return 0;
    a += strlen("addr=" LISTEN_HOST ":");
    long port = strtol(a, NULL, 10);
    return port > 0 && port < 65536 ? (int)port : 0;
}

static int port_from_log(const char *path) {
    return port_from_log_msg(path, "http listening");
}

int daemon_log_port(const daemon_cmd_t *cmd, const char *what) {
    return port_from_log_msg(cmd->log_path, what);
}

static int wait_fd(int fd, short events, double deadline) {
    double left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, (int)ceil(left));
    return r > 0 ? 1 : 0;
}

/* One attempt: 1 = answered 200, 0 = not (yet). Bounded by deadline. */
static int health_try(int port, double deadline) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline)) goto out;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) goto out;
    }
    static const char req[] =
        "GET /api/v1/health HTTP/1.1\r\nHost: " LISTEN_HOST "\r\nConnection: close\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) goto out;
    char buf[64];
    size_t got = 0;
    while (got < 12) { /* "HTTP/1.1 200" */
        if (!wait_fd(fd, POLLIN, deadline)) goto out;
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) goto out;
        got += (size_t)n;
    }
    ok = memcmp(buf, "HTTP/1.1 200", 12) == 0;
out:
    close(fd);
    return ok;
}

int daemon_wait_healthy(daemon_cmd_t *cmd, daemon_run_t *run, double timeout_ms, double *ready_ms) {
    double deadline = run->t_spawn_ms + timeout_ms;
    for (;;) {
        int st;
        if (waitpid(run->pid, &st, WNOHANG) == run->pid) {
            run->pid = 0;
            if (run->pidfd >= 0) close(run->pidfd);
            run->pidfd = -1;
            char b[32];
            fprintf(stderr, "bench: daemon exited before answering health (%s)\n",
                    wstatus_str(st, b, sizeof b));
            return -2;
        }
        if (now_ms() >= deadline) return -1;
        if (run->port == 0 && cmd->mode == PORT_FROM_LOG) run->port = port_from_log(cmd->log_path);
        if (run->port > 0 && health_try(run->port, deadline)) {
            *ready_ms = now_ms();
            return 0;
        }
        sleep_us(HEALTH_RETRY_US);
    }
}

/* ---- stop ----------------------------------------------------------------------------- */

/* Waits for the exit until deadline: 1 reaped (status in *st), 0 still running. */
static int reap_until(daemon_run_t *run, double deadline, int *st) {
    for (;;) {
        pid_t r = waitpid(run->pid, st, WNOHANG);
        if (r == run->pid) return 1;
        if (r < 0 && errno != EINTR) return 1; /* not our child any more: treat as gone */
        double left = deadline - now_ms();
        if (left <= 0) return 0;
        if (run->pidfd >= 0) {
            struct pollfd p = {.fd = run->pidfd, .events = POLLIN};
            poll(&p, 1, (int)ceil(left));
        } else {
            sleep_us(100);
        }
    }
}

static void run_clear(daemon_run_t *run) {
    if (run->pidfd >= 0) close(run->pidfd);
    run->pidfd = -1;
    run->pid = 0;
}

int daemon_stop(daemon_run_t *run, double timeout_ms, double *stop_ms, int *wstatus) {
    *wstatus = -1;
    if (run->pid <= 0) return -1;
    double t0 = now_ms();
    kill(run->pid, SIGTERM);
    int st = 0;
    if (!reap_until(run, t0 + timeout_ms, &st)) {
        fprintf(stderr, "bench: daemon pid %d still running %.0f ms after SIGTERM: SIGKILL\n",
                (int)run->pid, timeout_ms);
        daemon_kill(run);
        return -1;
    }
    *stop_ms = now_ms() - t0;
    *wstatus = st;
    run_clear(run);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

void daemon_kill(daemon_run_t *run) {
    if (run->pid <= 0) return;
    kill(run->pid, SIGKILL);
    int st;
    while (waitpid(run->pid, &st, 0) < 0 && errno == EINTR) {
    }
    run_clear(run);
}

/* ---- /proc, logs, statistics ------------------------------------------------------------ */

long proc_status_kib(pid_t pid, const char *key) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[256];
    size_t kl = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

void daemon_log_tail(const daemon_cmd_t *cmd, int lines) {
    FILE *f = fopen(cmd->log_path, "re");
    if (!f) return;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n == 0) return;
    size_t start = n;
    int seen = 0;
    while (start > 0) {
        if (buf[start - 1] == '\n' && start != n && ++seen >= lines) break;
        start--;
    }
    fprintf(stderr, "bench: last lines of the daemon's log:\n");
    for (char *s = strtok(buf + start, "\n"); s; s = strtok(NULL, "\n"))
        fprintf(stderr, "    %s\n", s);
}

const char *wstatus_str(int st, char *buf, size_t len) {
    if (WIFEXITED(st))
        snprintf(buf, len, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "signal %d", WTERMSIG(st));
    else
        snprintf(buf, len, "status 0x%x", st);
    return buf;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void sort_doubles(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
}

double median_sorted(const double *v, size_t n) {
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double pct_sorted(const double *v, size_t n, double p) {
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

/* ---- HTTP client and Prometheus text ---------------------------------------------------- */

int http_get(int port, const char *path, double timeout_ms, int *status, char **body,
             size_t *body_len) {
    return http_get_ttfb(port, path, timeout_ms, status, body, body_len, NULL);
}

int http_get_ttfb(int port, const char *path, double timeout_ms, int *status, char **body,
                  size_t *body_len, double *ttfb_ms) {
    double t0 = now_ms(), deadline = t0 + timeout_ms;
    *body = NULL;
    *body_len = 0;
    *status = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *buf = NULL;
    size_t cap = 0, got = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline)) goto fail;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) goto fail;
    }
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: " LISTEN_HOST "\r\nConnection: close\r\n\r\n",
                      path);
    if (rl <= 0 || (size_t)rl >= sizeof req) goto fail;
    for (int off = 0; off < rl;) {
        ssize_t n = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline)) goto fail;
            continue;
        }
        if (n <= 0) goto fail;
        off += (int)n;
    }
    size_t hdr_end = 0, want = (size_t)-1; /* total bytes when Content-Length is known */
    for (;;) {
        if (got == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) goto fail;
            buf = nb;
            cap = ncap;
        }
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLIN, deadline)) goto fail;
            continue;
        }
        if (n < 0) goto fail;
        if (n == 0) break; /* closed */
        if (got == 0 && ttfb_ms) *ttfb_ms = now_ms() - t0;
        got += (size_t)n;
        if (!hdr_end) {
            buf[got] = '\0';
            char *e = strstr(buf, "\r\n\r\n");
            if (e) {
                hdr_end = (size_t)(e - buf) + 4;
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                if (cl && cl < e) want = hdr_end + (size_t)strtoull(cl + 17, NULL, 10);
            }
        }
        if (hdr_end && got >= want) break;
    }
    close(fd);
    fd = -1;
    if (!buf || !hdr_end || got < 12 || strncmp(buf, "HTTP/1.", 7) != 0) goto fail;
    if (want != (size_t)-1 && got < want) goto fail; /* cut short */
    *status = (int)strtol(buf + 9, NULL, 10);
    size_t blen = got - hdr_end;
    memmove(buf, buf + hdr_end, blen);
    buf[blen] = '\0';
    *body = buf;
    *body_len = blen;
    return 0;
fail:
    if (fd >= 0) close(fd);
    free(buf);
    return -1;
}

int prom_find(const char *body, const char *series, double *out) {
    size_t sl = strlen(series);
    for (const char *p = body; p && *p;) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
            char *end;
            double v = strtod(p + sl + 1, &end);
            if (end == p + sl + 1) return -1;
            *out = v;
            return 0;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}
