/* bench_ws_idle — resident memory of metricastd per idle WebSocket connection.
 *
 *   bench_ws_idle [--conns N] [--settle-ms MS] -- /path/metricastd [daemon flags...]
 *   bench_ws_idle [--conns N] [--settle-ms MS] --pid PID --port PORT
 *
 * Starts the daemon (as bench_startup does, same --listen rules) or uses a running one on
 * 127.0.0.1:PORT, opens and closes a few warm-up connections, reads VmRSS, then opens N
 * (default 2,000) WebSocket connections to /ws (RFC 6455 handshake, waits for `101`) and
 * keeps them open and silent, waits --settle-ms (default 500), and reads VmRSS again:
 * (after - before) / N is the cost of one idle subscriber. RLIMIT_NOFILE is raised to fit N.
 * Every socket operation is bounded (5 s per handshake, 120 s for the whole phase).
 *
 * Exit status: 0 when all N handshakes succeeded (and a daemon we started exited 0 after
 * SIGTERM), 1 otherwise, 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_CONNS 200000
#define WARMUP_CONNS 16
#define HANDSHAKE_MS 5000.0
#define PHASE_MS 120000.0

static int wait_fd(int fd, short events, double deadline) {
    double left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, (int)left + 1) > 0;
}

/* Opens one WebSocket to 127.0.0.1:port/ws; the fd, or -1 (message in err). */
static int ws_open(int port, unsigned seq, char *err, size_t errlen) {
    double deadline = now_ms() + HANDSHAKE_MS;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int soerr = errno;
        socklen_t sl = sizeof soerr;
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            snprintf(err, errlen, "connect: %s", soerr ? strerror(soerr) : "timeout");
            goto fail;
        }
    }
    /* Sec-WebSocket-Key: base64 of 16 bytes (22 significant characters + "=="). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    unsigned x = seq * 2654435761u + 12345u;
    for (int k = 0; k < 21; k++) {
        x = x * 1103515245u + 12345u;
        key[k] = b64[(x >> 16) & 63];
    }
    key[21] = b64[((x >> 8) & 3) << 4]; /* last char carries 2 bits: low 4 bits zero */
    key[22] = '=';
    key[23] = '=';
    key[24] = '\0';
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: %s\r\n\r\n",
                     port, key);
    size_t sent = 0;
    while (sent < (size_t)n) {
        if (!wait_fd(fd, POLLOUT, deadline)) {
            snprintf(err, errlen, "send: timeout");
            goto fail;
        }
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            goto fail;
        }
        sent += (size_t)w;
    }
    char resp[1024];
    size_t got = 0;
    for (;;) {
        if (got >= 12 && memcmp(resp, "HTTP/1.1 101", 12) != 0) {
            resp[got < 60 ? got : 60] = '\0';
            for (char *c = resp; *c; c++)
                if (*c == '\r' || *c == '\n') *c = ' ';
            snprintf(err, errlen, "handshake answered: %.60s", resp);
            goto fail;
        }
        if (got >= 4) {
            resp[got] = '\0';
            if (strstr(resp, "\r\n\r\n")) break;
        }
        if (got >= sizeof resp - 1) {
            snprintf(err, errlen, "handshake answer too long");
            goto fail;
        }
        if (!wait_fd(fd, POLLIN, deadline)) {
            snprintf(err, errlen, "no handshake answer in %.0f ms", HANDSHAKE_MS);
            goto fail;
        }
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) {
            snprintf(err, errlen, "recv: %s", r == 0 ? "connection closed" : strerror(errno));
            goto fail;
        }
        got += (size_t)r;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_ws_idle [--conns N] [--settle-ms MS] -- METRICASTD [FLAGS...]\n"
               "       bench_ws_idle [--conns N] [--settle-ms MS] --pid PID --port PORT\n");
}

int main(int argc, char **argv) {
    long conns = 2000, settle_ms = 500, pid_arg = 0, port_arg = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            conns = parse_long(argv[++i], 1, MAX_CONNS);
        } else if (strcmp(argv[i], "--settle-ms") == 0 && i + 1 < argc) {
            settle_ms = parse_long(argv[++i], 0, 60000);
        } else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) {
            pid_arg = parse_long(argv[++i], 1, 1L << 30);
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port_arg = parse_long(argv[++i], 1, 65535);
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
        if (conns < 0 || settle_ms < 0 || pid_arg < 0 || port_arg < 0) {
            fprintf(stderr, "bench_ws_idle: bad value for %s\n", argv[i - 1]);
            return 2;
        }
    }
    int own = i < argc;
    if (own == (pid_arg > 0) || (pid_arg > 0) != (port_arg > 0)) {
        usage(stderr);
        return 2;
    }

    /* room for N client sockets plus a margin */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)conns + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want <= rl.rlim_max ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < want) {
            fprintf(stderr, "bench_ws_idle: RLIMIT_NOFILE hard limit %llu is below %ld+64\n",
                    (unsigned long long)rl.rlim_max, conns);
            return 2;
        }
    }

    daemon_cmd_t cmd;
    daemon_run_t run = {.pidfd = -1};
    int port = (int)port_arg;
    pid_t pid = (pid_t)pid_arg;
    if (own) {
        char err[512];
        double ready = 0;
        if (daemon_cmd_init(&cmd, argc - i, argv + i, err, sizeof err) < 0) {
            fprintf(stderr, "bench_ws_idle: %s\n", err);
            return 2;
        }
        if (daemon_start(&cmd, &run) < 0) {
            daemon_cmd_free(&cmd);
            return 1;
        }
        if (daemon_wait_healthy(&cmd, &run, 5000, &ready) != 0) {
            fprintf(stderr, "bench_ws_idle: daemon not healthy within 5 s\n");
            daemon_kill(&run);
            daemon_log_tail(&cmd, 10);
            daemon_cmd_free(&cmd);
            return 1;
        }
        pid = run.pid;
        port = run.port;
    }

    int *fds = malloc((size_t)conns * sizeof *fds);
    if (!fds) {
        fprintf(stderr, "bench_ws_idle: out of memory\n");
        if (own) daemon_kill(&run), daemon_cmd_free(&cmd);
        return 1;
    }
    int rc = 0;
    char err[256];
    /* warm-up: first-use allocations (per-thread arenas, handshake code) are not per-conn */
    int warm[WARMUP_CONNS], nwarm = 0;
    for (; nwarm < WARMUP_CONNS; nwarm++) {
        if ((warm[nwarm] = ws_open(port, 100000u + (unsigned)nwarm, err, sizeof err)) < 0) {
            fprintf(stderr, "bench_ws_idle: warm-up connection: %s\n", err);
            rc = 1;
            break;
        }
    }
    for (int k = 0; k < nwarm; k++)
        close(warm[k]);
    if (rc) goto done;
    sleep_us(settle_ms * 1000);

    long rss0 = proc_status_kib(pid, "VmRSS"), hwm0 = proc_status_kib(pid, "VmHWM");
    if (rss0 < 0) {
        fprintf(stderr, "bench_ws_idle: cannot read /proc/%d/status\n", (int)pid);
        rc = 1;
        goto done;
    }
    long opened = 0, half_rss = -1;
    double t0 = now_ms(), phase_deadline = t0 + PHASE_MS;
    for (; opened < conns; opened++) {
        if (now_ms() > phase_deadline) {
            fprintf(stderr, "bench_ws_idle: gave up after %.0f ms with %ld connections\n", PHASE_MS,
                    opened);
            rc = 1;
            break;
        }
        int fd = ws_open(port, (unsigned)opened, err, sizeof err);
        if (fd < 0) {
            fprintf(stderr, "bench_ws_idle: connection %ld: %s\n", opened + 1, err);
            rc = 1;
            break;
        }
        fds[opened] = fd;
        if (opened + 1 == conns / 2) half_rss = proc_status_kib(pid, "VmRSS");
    }
    double open_ms = now_ms() - t0;
    sleep_us(settle_ms * 1000);
    long rss1 = proc_status_kib(pid, "VmRSS"), hwm1 = proc_status_kib(pid, "VmHWM");

    /* the daemon must still be answering: idle connections were not dropped meanwhile */
    int alive = 0;
    for (long k = 0; k < opened; k++) {
        char c;
        ssize_t r = recv(fds[k], &c, 1, MSG_PEEK | MSG_DONTWAIT);
        /* nothing to read, or a server frame (a ping) waiting: still open; 0 = closed */
        if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) alive++;
    }
    for (long k = 0; k < opened; k++)
        close(fds[k]);
    sleep_us(settle_ms * 1000);
    long rss2 = proc_status_kib(pid, "VmRSS");

    double per = opened ? (double)(rss1 - rss0) / (double)opened : 0;
    printf("bench_ws_idle: %ld idle WebSocket connections to 127.0.0.1:%d/ws (pid %d), "
           "opened in %.0f ms, %d still open after %ld ms\n",
           opened, port, (int)pid, open_ms, alive, settle_ms);
    printf("  %-34s %8ld KiB (VmHWM %ld)\n", "VmRSS before (after warm-up)", rss0, hwm0);
    if (half_rss >= 0 && conns >= 2)
        printf("  %-34s %8ld KiB\n", "VmRSS at half the connections", half_rss);
    printf("  %-34s %8ld KiB (VmHWM %ld)\n", "VmRSS with all connections open", rss1, hwm1);
    printf("  %-34s %8ld KiB\n", "VmRSS after closing them", rss2);
    printf("  %-34s %8.2f KiB   (target < 10 KiB)\n", "per idle connection", per);
    if (half_rss >= 0 && conns >= 4)
        printf("  %-34s %8.2f KiB\n", "marginal, second half",
               (double)(rss1 - half_rss) / (double)(opened - conns / 2));
    if (alive != opened) {
        fprintf(stderr, "bench_ws_idle: only %d of %ld connections were still open\n", alive,
                opened);
        rc = 1;
    }
    printf("ws_idle_conns=%ld rss_before_kib=%ld rss_after_kib=%ld ws_idle_kib_per_conn=%.2f\n",
           opened, rss0, rss1, per);
done:
    free(fds);
    if (own) {
        double stop_ms = 0;
        int wst = 0;
        if (daemon_stop(&run, 5000, &stop_ms, &wst) != 0) {
            char b[32];
            fprintf(stderr, "bench_ws_idle: daemon shutdown failed (%s)\n",
                    wst == -1 ? "timeout" : wstatus_str(wst, b, sizeof b));
            daemon_log_tail(&cmd, 10);
            rc = 1;
        }
        daemon_cmd_free(&cmd);
    }
    return rc;
}
