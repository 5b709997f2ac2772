/* bench_tls_cost — what TLS costs the hub: the same load over plain TCP and over TLS.
 *
 *   bench_tls_cost [--scenario fanout|handshake|both] [--mode plain|tls|both]
 *                  [--subs N] [--tick S] [--duration S] [--handshakes M] [--callgrind]
 *                  -- /path/metricastd [extra daemon flags...]
 *
 * fanout     N subscribers (default 1,000) of `metrics` at --tick S (default 1 s) for
 *            --duration seconds (default 10): the hub's CPU over the window (utime+stime
 *            of /proc/PID/stat), updates received, and RSS before / after connecting
 *            (memory per connection). A sender thread changes one gauge over StatsD every
 *            10 ms, so each subscriber gets the tick's update and the once-a-second change
 *            push: about 2 updates per second at --tick 1.
 * handshake  M (default 500) sequential connections, each: connect, (TLS handshake,)
 *            GET /api/v1/health, read the answer, close. Connections per second and the
 *            hub's CPU per connection. Full handshakes (no session resumption): the worst
 *            case, as after a restart of every client.
 *
 * TLS mode makes a self-signed P-256 certificate with the openssl CLI and starts the hub
 * with --tls-cert/--tls-key; the client is OpenSSL with the library's defaults (TLS 1.3,
 * X25519, AES-256-GCM on this machine). The hub gets --ws-ping-interval 1h so that
 * nothing but updates flows.
 *
 * --callgrind: the words after `--` start with valgrind --tool=callgrind
 * --instr-atstart=no ...; the measured phase is bracketed with `callgrind_control -i on`
 * / `-i off`, so the profile holds only the window (the instruction counts are the
 * repeatable comparison on a shared machine; wall-clock figures are not then).
 *
 * The client runs in this process, on the same machine: its own TLS work competes with
 * the hub's for the cores. Exit status 0, 1 when a run failed, 2 on a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define CONNECT_BATCH 64
#define TICK_MARK "\"type\":\"metrics:update\""

typedef struct {
    const char *scenario, *mode;
    long subs, handshakes;
    double tick, duration;
    bool callgrind;
    int dargc;
    char **dargv;
} opts_t;

typedef enum { S_CONNECT, S_TLS, S_UPGRADE, S_STREAM, S_DEAD } sub_state_t;

typedef struct {
    int fd;
    SSL *ssl;
    sub_state_t st;
    char hdr[1024];
    size_t hlen;
    char tail[32]; /* last bytes of the stream: a mark split over two reads */
    size_t tlen;
    long updates;
} sub_t;

static SSL_CTX *cctx;
static char cert_path[PATH_MAX], key_path[PATH_MAX], tmpdir[64];

static double proc_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return NAN;
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int tcp_connect(int port, bool nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the daemon ---------------------------------------------------------------------- */

static int make_cert(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bench-tls.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(cert_path, sizeof cert_path, "%s/hub.crt", tmpdir);
    snprintf(key_path, sizeof key_path, "%s/hub.key", tmpdir);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
             ">/dev/null 2>&1",
             key_path, cert_path);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
    daemon_cmd_t cmd;
    daemon_run_t run;
    int statsd_port;
} hub_t;

static int hub_start(hub_t *h, const opts_t *o, bool tls) {
    char tickv[32];
    snprintf(tickv, sizeof tickv, "%g", o->tick);
    const char *extra[] = {"--listen", "127.0.0.1:0", "--statsd", "127.0.0.1:0", "--tick", tickv,
                           "--ws-ping-interval", "3600", "--ws-idle-timeout", "86400",
                           "--host-metrics", "off", "--http-idle-timeout", "3600",
                           "--tls-cert", cert_path, "--tls-key", key_path};
    int nextra = (int)(sizeof extra / sizeof *extra) - (tls ? 0 : 4);
    char **argv = calloc((size_t)(o->dargc + nextra + 1), sizeof *argv);
    if (!argv) return -1;
    int n = 0;
    for (int i = 0; i < o->dargc; i++) argv[n++] = o->dargv[i];
    for (int i = 0; i < nextra; i++) argv[n++] = (char *)extra[i];
    char err[256];
    int rc = daemon_cmd_init(&h->cmd, n, argv, err, sizeof err);
    free(argv);
    if (rc < 0) {
        fprintf(stderr, "bench_tls_cost: %s\n", err);
        return -1;
    }
    if (daemon_start(&h->cmd, &h->run) < 0) return -1;
    double deadline = now_ms() + 120000;
    while (now_ms() < deadline) {
        int p = daemon_log_port(&h->cmd, "http listening");
        int s = daemon_log_port(&h->cmd, "statsd listening");
        if (p && s) {
            h->run.port = p;
            h->statsd_port = s;
            return 0;
        }
        sleep_us(20000);
    }
    fprintf(stderr, "bench_tls_cost: the hub did not start\n");
    daemon_log_tail(&h->cmd, 20);
    daemon_kill(&h->run);
    return -1;
}

static void hub_stop(hub_t *h) {
    double stop_ms;
    int ws;
    if (daemon_stop(&h->run, 120000, &stop_ms, &ws) != 0) {
        char b[64];
        fprintf(stderr, "bench_tls_cost: the hub's stop: %s\n", wstatus_str(ws, b, sizeof b));
    }
    daemon_cmd_free(&h->cmd);
}

static void callgrind(const opts_t *o, const hub_t *h, const char *what) {
    if (!o->callgrind) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "callgrind_control %s %d >/dev/null 2>&1", what, (int)h->run.pid);
    if (system(cmd) != 0) fprintf(stderr, "bench_tls_cost: callgrind_control %s failed\n", what);
}

/* ---- StatsD: one gauge changed every 10 ms ------------------------------------------------ */

static atomic_bool sender_stop;

static void *sender(void *arg) {
    int port = *(int *)arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (long i = 0; !atomic_load(&sender_stop) && i < 100000000; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "bench_tls:%ld|g", i);
        sendto(fd, line, (size_t)n, 0, (struct sockaddr *)&a, sizeof a);
        sleep_us(10000);
    }
    close(fd);
    return NULL;
}

/* ---- fan-out -------------------------------------------------------------------------------- */

static ssize_t sub_read(sub_t *s, char *buf, size_t len) {
    if (!s->ssl) {
        ssize_t r = recv(s->fd, buf, len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
        return r;
    }
    int r = SSL_read(s->ssl, buf, (int)len);
    if (r > 0) return r;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -2;
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static int sub_write(sub_t *s, const void *p, size_t n) { /* small: all at once on loopback */
    if (!s->ssl) return send(s->fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
    return SSL_write(s->ssl, p, (int)n) == (int)n ? 0 : -1;
}

/* Counts updates: marks in (the tail of the previous read + this read); the tail is
 * shorter than a mark, so none is counted twice. */
static void count_marks(sub_t *s, const char *p, size_t n) {
    static char tmp[sizeof s->tail + (1 << 16)];
    size_t ml = strlen(TICK_MARK);
    if (n > (1u << 16)) n = 1u << 16;
    memcpy(tmp, s->tail, s->tlen);
    memcpy(tmp + s->tlen, p, n);
    size_t tl = s->tlen + n;
    for (const char *q = tmp; (q = memmem(q, tl - (size_t)(q - tmp), TICK_MARK, ml)); q += ml)
        s->updates++;
    size_t keep = tl < ml - 1 ? tl : ml - 1;
    memcpy(s->tail, tmp + tl - keep, keep);
    s->tlen = keep;
}

static int sub_step(sub_t *s, int ep, int port, char *buf, size_t blen) {
    (void)port;
    if (s->st == S_CONNECT) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) return -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        if (cctx) {
            s->ssl = SSL_new(cctx);
            SSL_set_fd(s->ssl, s->fd);
            SSL_set_tlsext_host_name(s->ssl, "127.0.0.1");
            SSL_set_connect_state(s->ssl);
            s->st = S_TLS;
        } else {
            s->st = S_UPGRADE;
        }
        if (s->st == S_UPGRADE || s->st == S_TLS) {
            if (s->st == S_TLS) {
                int r = SSL_do_handshake(s->ssl);
                if (r != 1) {
                    int e = SSL_get_error(s->ssl, r);
                    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
                }
                s->st = S_UPGRADE;
            }
            static const char req[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                      "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                      "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            return sub_write(s, req, sizeof req - 1);
        }
        return 0;
    }
    if (s->st == S_TLS) {
        int r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        s->st = S_UPGRADE;
        static const char req[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                  "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        return sub_write(s, req, sizeof req - 1);
    }
    for (int k = 0; k < 1000; k++) {
        ssize_t r = sub_read(s, buf, blen);
        if (r == -2) return 0;
        if (r <= 0) return -1;
        if (s->st == S_UPGRADE) {
            size_t take = (size_t)r < sizeof s->hdr - 1 - s->hlen ? (size_t)r : sizeof s->hdr - 1 - s->hlen;
            memcpy(s->hdr + s->hlen, buf, take);
            s->hlen += take;
            s->hdr[s->hlen] = '\0';
            char *end = strstr(s->hdr, "\r\n\r\n");
            if (!end) continue;
            if (strncmp(s->hdr, "HTTP/1.1 101", 12) != 0) return -1;
            s->st = S_STREAM;
            /* {"type":"subscribe","topics":["metrics"]}, masked with a zero key */
            static const char msg[] = "{\"type\":\"subscribe\",\"topics\":[\"metrics\"]}";
            unsigned char fr[6 + sizeof msg];
            fr[0] = 0x81;
            fr[1] = 0x80 | (unsigned char)(sizeof msg - 1);
            memset(fr + 2, 0, 4);
            memcpy(fr + 6, msg, sizeof msg - 1);
            if (sub_write(s, fr, 6 + sizeof msg - 1) < 0) return -1;
            size_t used = (size_t)(end + 4 - s->hdr);
            if (used < s->hlen) count_marks(s, s->hdr + used, s->hlen - used);
            continue;
        }
        count_marks(s, buf, (size_t)r);
    }
    return 0;
}

static long total_updates(sub_t *subs, long n) {
    long t = 0;
    for (long i = 0; i < n; i++) t += subs[i].updates;
    return t;
}

static void pump(int ep, sub_t *subs, long n, int port, double until_ms, char *buf, size_t blen,
                 long *dead) {
    (void)subs;
    (void)n;
    struct epoll_event evs[256];
    while (now_ms() < until_ms) {
        int left = (int)(until_ms - now_ms());
        int k = epoll_wait(ep, evs, 256, left > 50 ? 50 : (left > 0 ? left : 0));
        for (int i = 0; i < k; i++) {
            sub_t *s = evs[i].data.ptr;
            if (s->st == S_DEAD) continue;
            if (sub_step(s, ep, port, buf, blen) < 0) {
                s->st = S_DEAD;
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                (*dead)++;
            }
        }
    }
}

static int run_fanout(const opts_t *o, bool tls) {
    hub_t h;
    memset(&h, 0, sizeof h);
    if (hub_start(&h, o, tls) < 0) return -1;
    pthread_t th;
    atomic_store(&sender_stop, false);
    pthread_create(&th, NULL, sender, &h.statsd_port);
    sleep_us(300000);
    long rss0 = proc_status_kib(h.run.pid, "VmRSS");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    sub_t *subs = calloc((size_t)o->subs, sizeof *subs);
    static char buf[1 << 16];
    long dead = 0, opened = 0;
    double t0 = now_ms();
    /* connect in batches until every subscriber has its first update */
    while (now_ms() - t0 < 600000) {
        long streaming = 0, pending = 0;
        for (long i = 0; i < opened; i++) {
            if (subs[i].st == S_STREAM && subs[i].updates > 0) streaming++;
            else if (subs[i].st != S_DEAD) pending++;
        }
        if (streaming + dead >= o->subs) break;
        while (opened < o->subs && pending < CONNECT_BATCH) {
            sub_t *s = &subs[opened++];
            s->fd = tcp_connect(h.run.port, true);
            s->st = S_CONNECT;
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
            if (s->fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
                s->st = S_DEAD;
                dead++;
            } else {
                pending++;
            }
        }
        pump(ep, subs, opened, h.run.port, now_ms() + 20, buf, sizeof buf, &dead);
    }
    double connect_s = (now_ms() - t0) / 1000;
    pump(ep, subs, opened, h.run.port, now_ms() + 2000 + 2000 * o->tick, buf, sizeof buf, &dead);
    long rss1 = proc_status_kib(h.run.pid, "VmRSS");
    long u0 = total_updates(subs, opened);
    callgrind(o, &h, "-i on");
    double c0 = proc_cpu_s(h.run.pid), w0 = now_ms();
    pump(ep, subs, opened, h.run.port, w0 + o->duration * 1000, buf, sizeof buf, &dead);
    double c1 = proc_cpu_s(h.run.pid), w1 = now_ms();
    callgrind(o, &h, "-i off");
    long u1 = total_updates(subs, opened);
    double win = (w1 - w0) / 1000;
    printf("fanout mode=%s subs=%ld tick=%g window_s=%.2f connect_s=%.1f dead=%ld "
           "updates=%ld updates_per_sub_s=%.2f hub_cpu_s=%.3f hub_cpu_pct=%.1f "
           "rss_before_kib=%ld rss_after_kib=%ld rss_per_conn_kib=%.2f\n",
           tls ? "tls" : "plain", o->subs, o->tick, win, connect_s, dead, u1 - u0,
           (double)(u1 - u0) / (double)o->subs / win,
           c1 - c0, 100 * (c1 - c0) / win, rss0, rss1,
           (double)(rss1 - rss0) / (double)(o->subs ? o->subs : 1));
    fflush(stdout);
    for (long i = 0; i < opened; i++) {
        if (subs[i].ssl) SSL_free(subs[i].ssl);
        if (subs[i].fd >= 0) close(subs[i].fd);
    }
    free(subs);
    close(ep);
    atomic_store(&sender_stop, true);
    pthread_join(th, NULL);
    hub_stop(&h);
    return dead ? -1 : 0;
}

/* ---- handshakes ---------------------------------------------------------------------------- */

static int one_request(int port) {
    int fd = tcp_connect(port, false);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL *ssl = NULL;
    if (cctx) {
        ssl = SSL_new(cctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "127.0.0.1");
        if (SSL_connect(ssl) != 1) {
            static int told;
            if (!told++) {
                fprintf(stderr, "bench_tls_cost: handshake failed: ");
                ERR_print_errors_fp(stderr);
            }
            SSL_free(ssl);
            close(fd);
            return -1;
        }
    }
    static const char req[] = "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    int ok = ssl ? SSL_write(ssl, req, sizeof req - 1) == (int)sizeof req - 1
                 : send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)sizeof req - 1;
    char buf[8192];
    size_t got = 0;
    while (ok && got < sizeof buf - 1) {
        int r = ssl ? SSL_read(ssl, buf + got, (int)(sizeof buf - 1 - got))
                    : (int)recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    if (ok && strncmp(buf, "HTTP/1.1 200", 12) != 0) {
        static int told;
        if (!told++) fprintf(stderr, "bench_tls_cost: answer: %.80s\n", buf);
        ok = 0;
    }
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return ok ? 0 : -1;
}

static int run_handshakes(const opts_t *o, bool tls) {
    hub_t h;
    memset(&h, 0, sizeof h);
    if (hub_start(&h, o, tls) < 0) return -1;
    for (int i = 0; i < 20; i++) one_request(h.run.port); /* warm-up */
    callgrind(o, &h, "-i on");
    double c0 = proc_cpu_s(h.run.pid), w0 = now_ms();
    long fails = 0;
    for (long i = 0; i < o->handshakes; i++)
        if (one_request(h.run.port) < 0) fails++;
    double c1 = proc_cpu_s(h.run.pid), w1 = now_ms();
    callgrind(o, &h, "-i off");
    double win = (w1 - w0) / 1000;
    printf("handshake mode=%s connections=%ld failed=%ld wall_s=%.2f per_s=%.0f "
           "hub_cpu_s=%.3f hub_cpu_us_per_conn=%.0f\n",
           tls ? "tls" : "plain", o->handshakes, fails, win, (double)o->handshakes / win, c1 - c0,
           1e6 * (c1 - c0) / (double)o->handshakes);
    fflush(stdout);
    hub_stop(&h);
    return fails ? -1 : 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_tls_cost [--scenario fanout|handshake|both] "
                    "[--mode plain|tls|both] [--subs N] [--tick S] [--duration S] "
                    "[--handshakes M] [--callgrind] -- /path/metricastd [flags]\n");
}

int main(int argc, char **argv) {
    opts_t o = {"both", "both", 1000, 500, 1.0, 10.0, false, 0, NULL};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--scenario") == 0 && v) {
            o.scenario = v;
            i++;
        } else if (strcmp(a, "--mode") == 0 && v) {
            o.mode = v;
            i++;
        } else if (strcmp(a, "--subs") == 0 && v) {
            o.subs = parse_long(v, 1, 100000);
            i++;
        } else if (strcmp(a, "--handshakes") == 0 && v) {
            o.handshakes = parse_long(v, 1, 10000000);
            i++;
        } else if (strcmp(a, "--tick") == 0 && v) {
            o.tick = atof(v);
            i++;
        } else if (strcmp(a, "--duration") == 0 && v) {
            o.duration = atof(v);
            i++;
        } else if (strcmp(a, "--callgrind") == 0) {
            o.callgrind = true;
        } else {
            usage();
            return 2;
        }
    }
    if (i >= argc || o.subs < 0 || o.handshakes < 0 || o.tick <= 0 || o.duration <= 0) {
        usage();
        return 2;
    }
    o.dargc = argc - i;
    o.dargv = argv + i;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (make_cert() < 0) {
        fprintf(stderr, "bench_tls_cost: openssl req failed (is the openssl CLI installed?)\n");
        return 1;
    }
    SSL_CTX *tctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(tctx, TLS1_2_VERSION);
    SSL_CTX_load_verify_locations(tctx, cert_path, NULL);
    SSL_CTX_set_verify(tctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(tctx, SSL_SESS_CACHE_OFF); /* full handshakes */
    int status = 0;
    bool modes[2] = {strcmp(o.mode, "tls") != 0, strcmp(o.mode, "plain") != 0};
    for (int m = 0; m < 2; m++) {
        if (!modes[m]) continue;
        cctx = m ? tctx : NULL;
        if (strcmp(o.scenario, "handshake") != 0 && run_fanout(&o, m == 1) < 0) status = 1;
        if (strcmp(o.scenario, "fanout") != 0 && run_handshakes(&o, m == 1) < 0) status = 1;
    }
    SSL_CTX_free(tctx);
    unlink(cert_path);
    unlink(key_path);
    rmdir(tmpdir);
    return status;
}
