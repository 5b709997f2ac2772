#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t metricast__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void metricast__random(void *buf, size_t n) {
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, GRND_NONBLOCK);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got == n) return;
    /* splitmix64 over the clock and the address of buf */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)buf;
    for (; got < n; got++) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        p[got] = (unsigned char)(z ^ (z >> 31));
    }
}

static int remaining_ms(int64_t deadline_ms) {
    int64_t left = deadline_ms - metricast__now_ms();
    if (left < 0) return 0;
    return left > 1000000 ? 1000000 : (int)left;
}

/* Polls fd for events (and abort_fd for input) until the deadline: 1 ready, 0 timeout,
 * -ECANCELED, -errno. */
static int wait_fd(int fd, short events, int64_t deadline_ms, int abort_fd) {
    for (;;) {
        struct pollfd p[2] = {{fd, events, 0}, {abort_fd, POLLIN, 0}};
        int n = poll(p, abort_fd >= 0 ? 2 : 1, remaining_ms(deadline_ms));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return 0;
        if (abort_fd >= 0 && (p[1].revents & POLLIN)) return -ECANCELED;
        if (p[0].revents) return 1;
    }
}

int metricast__wait_readable(int fd, int64_t deadline_ms, int abort_fd) {
    return wait_fd(fd, POLLIN, deadline_ms, abort_fd);
}

int metricast__tcp_connect(const char *host, uint16_t port, int64_t deadline_ms, int abort_fd,
                           char *err, size_t errlen) {
    char dummy[1];
    if (!err) err = dummy, errlen = sizeof dummy;
    char ports[8];
    snprintf(ports, sizeof ports, "%u", (unsigned)port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    int g = getaddrinfo(host, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        if (errno != EINPROGRESS) {
            rc = -errno;
            close(fd);
            continue;
        }
        int w = wait_fd(fd, POLLOUT, deadline_ms, abort_fd);
        if (w <= 0) {
            close(fd);
            rc = w == 0 ? -ETIMEDOUT : w;
            break; /* the deadline covers every address */
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr == 0) {
            freeaddrinfo(res);
            return fd;
        }
        rc = -soerr;
        close(fd);
    }
    freeaddrinfo(res);
    snprintf(err, errlen, "cannot connect to %s:%u: %s", host, (unsigned)port,
             rc == -ECANCELED ? "cancelled" : strerror(-rc));
    return rc;
}

int metricast__send_all(int fd, const void *buf, size_t len, int64_t deadline_ms, int abort_fd) {
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int w = wait_fd(fd, POLLOUT, deadline_ms, abort_fd);
        if (w == 0) return -ETIMEDOUT;
        if (w < 0) return w;
    }
    return 0;
}
