/* net — the few system calls the client needs: a TCP connect with a deadline that a
 * second descriptor can interrupt, a monotonic clock, random bytes. */
#ifndef MCL_NET_H
#define MCL_NET_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t metricast__now_ms(void);

/* n random bytes (getrandom; falls back to a clock-seeded mix if the kernel refuses:
 * good enough for WebSocket masks and event-id suffixes, which need no secrecy). */
void metricast__random(void *buf, size_t n);

/* Connects to host:port (any address getaddrinfo gives, in order) before deadline_ms
 * (metricast__now_ms() time). The result is a non-blocking, close-on-exec socket with
 * TCP_NODELAY. When abort_fd >= 0 becomes readable the attempt stops with -ECANCELED.
 * Returns the descriptor, or -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH (no such host),
 * ...; err (may be NULL) names host and cause. The name lookup itself is blocking. */
int metricast__tcp_connect(const char *host, uint16_t port, int64_t deadline_ms, int abort_fd,
                           char *err, size_t errlen);

/* Writes all of buf to the non-blocking fd before deadline_ms (-ETIMEDOUT), or until
 * abort_fd is readable (-ECANCELED). 0 or a negative errno. */
int metricast__send_all(int fd, const void *buf, size_t len, int64_t deadline_ms, int abort_fd);

/* Waits until fd is readable (or abort_fd is), at most until deadline_ms. 1 readable,
 * 0 deadline passed, -ECANCELED, or a negative errno. */
int metricast__wait_readable(int fd, int64_t deadline_ms, int abort_fd);

#endif
