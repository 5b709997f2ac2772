#include "ingest_udp.h"

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "log.h"
#include "ingest_fold.h"
#include "netacl.h"
#include "statsd.h"

/* Datagrams per recvmmsg; with ~1.4 KB datagrams, 64 of them are ~2,500 lines. */
#define UDP_VLEN 64
/* Largest datagram read whole; bigger ones are truncated and rejected (too_long).
 * 16 KiB covers jumbo-frame senders (8,932 bytes) with room. */
#define UDP_DGRAM_MAX (16 * 1024)
/* How long recvmmsg blocks before the thread looks at its flush clock and stop flag. */
#define UDP_WAIT_MS 20
/* Keys a thread forgets after this many flushes without samples (~1 min at 100 ms). */
#define UDP_EVICT_FLUSHES 600

typedef struct udp_thread {
    ingest_udp_t *u;
    int id;
    int fd;
    uv_thread_t thread;
    bool started;
    ingest_fold_t fold; /* the table and the rejected counts */
    uint32_t last_ovfl; /* SO_RXQ_OVFL is a running count per socket */
    char *bufs;
    struct mmsghdr msgs[UDP_VLEN];
    struct iovec iov[UDP_VLEN];
    char ctrl[UDP_VLEN][CMSG_SPACE(sizeof(uint32_t))];
    struct sockaddr_storage names[UDP_VLEN]; /* senders, read only with an allow-list */
} udp_thread_t;

struct ingest_udp {
    int nthreads;
    udp_thread_t *t;
    _Atomic int stop;
    double flush_interval;
    ingest_stats_t *stats;
    _Atomic int *pending;
    int max_pending;
    ingest_sink_fn sink;
    void *sink_ctx;
    netacl_t allow; /* empty: every sender */
};

static int make_socket(const struct sockaddr *sa, socklen_t slen, bool reuseport, size_t rcvbuf) {
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    int sz = rcvbuf > (size_t)1 << 30 ? 1 << 30 : (int)rcvbuf;
    /* FORCE works past net.core.rmem_max when we are root; the plain one otherwise */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    struct timeval tv = {0, UDP_WAIT_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(fd, sa, slen) < 0) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

static void flush_rejected(udp_thread_t *t) {
    for (int r = 0; r < STATSD_REASON_COUNT; r++) {
        if (!t->fold.rejected[r]) continue;
        atomic_fetch_add_explicit(&t->u->stats->rejected[r], t->fold.rejected[r],
                                  memory_order_relaxed);
        t->fold.rejected[r] = 0;
    }
}

static void hand_over(udp_thread_t *t, bool force) {
    ingest_udp_t *u = t->u;
    flush_rejected(t);
    if (!agg_has_dirty(&t->fold.agg)) {
        int err;
        agg_flush(&t->fold.agg, INGEST_UDP, UDP_EVICT_FLUSHES, &err); /* ages keys for eviction */
        return;
    }
    /* the hub is behind: keep folding into our table, samples merge instead of queueing */
    if (!force && atomic_load(u->pending) >= u->max_pending) return;
    int err;
    agg_batch_t *b = agg_flush(&t->fold.agg, INGEST_UDP, UDP_EVICT_FLUSHES, &err);
    if (!b) return;
    atomic_fetch_add(u->pending, 1);
    if (u->sink(u->sink_ctx, b) < 0) {
        atomic_fetch_sub(u->pending, 1);
        agg_batch_free(b);
    }
}

static void read_overflow(udp_thread_t *t, struct msghdr *mh) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL) continue;
        uint32_t v;
        memcpy(&v, CMSG_DATA(c), sizeof v);
        if (v != t->last_ovfl) {
            atomic_fetch_add(&t->u->stats->dropped[DROP_UDP_BUFFER], (uint32_t)(v - t->last_ovfl));
            t->last_ovfl = v;
        }
    }
}

static void thread_main(void *arg) {
    udp_thread_t *t = arg;
    ingest_udp_t *u = t->u;
    uint64_t flush_ns = (uint64_t)(u->flush_interval * 1e9);
    uint64_t next_flush = clk_mono_ns() + flush_ns;
    /* the kernel rewrites only the headers of the datagrams it returns: only those are
     * prepared again (a call that finds a nearly empty queue returns a few) */
    int used = UDP_VLEN;
    while (!atomic_load_explicit(&u->stop, memory_order_relaxed)) {
        for (int i = 0; i < used; i++) {
            t->iov[i].iov_base = t->bufs + (size_t)i * UDP_DGRAM_MAX;
            t->iov[i].iov_len = UDP_DGRAM_MAX;
            memset(&t->msgs[i].msg_hdr, 0, sizeof t->msgs[i].msg_hdr);
            t->msgs[i].msg_hdr.msg_iov = &t->iov[i];
            t->msgs[i].msg_hdr.msg_iovlen = 1;
            t->msgs[i].msg_hdr.msg_control = t->ctrl[i];
            t->msgs[i].msg_hdr.msg_controllen = sizeof t->ctrl[i];
            if (u->allow.n) {
                t->msgs[i].msg_hdr.msg_name = &t->names[i];
                t->msgs[i].msg_hdr.msg_namelen = sizeof t->names[i];
            }
        }
        int n = recvmmsg(t->fd, t->msgs, UDP_VLEN, MSG_WAITFORONE, NULL);
        used = n > 0 ? n : 0;
        if (n > 0) {
            uint64_t bytes = 0;
            const char *dp[UDP_VLEN];
            size_t dl[UDP_VLEN], nd = 0;
            for (int i = 0; i < n; i++) {
                struct mmsghdr *m = &t->msgs[i];
                bytes += m->msg_len;
                if (u->allow.n && !netacl_match(&u->allow, (struct sockaddr *)&t->names[i])) {
                    atomic_fetch_add_explicit(&u->stats->dropped[DROP_NOT_ALLOWED], 1,
                                              memory_order_relaxed);
                } else if (m->msg_hdr.msg_flags & MSG_TRUNC) {
                    t->fold.rejected[STATSD_TOO_LONG]++;
                } else {
                    dp[nd] = t->iov[i].iov_base;
                    dl[nd++] = m->msg_len;
                }
                if (m->msg_hdr.msg_controllen) read_overflow(t, &m->msg_hdr);
            }
            ingest_fold_datagrams(&t->fold, dp, dl, nd); /* together: more misses overlap */
            atomic_fetch_add_explicit(&u->stats->datagrams, (uint64_t)n, memory_order_relaxed);
            atomic_fetch_add_explicit(&u->stats->udp_bytes, bytes, memory_order_relaxed);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_error("statsd receive failed", "thread=%d error=\"%s\"", t->id, strerror(errno));
            struct timespec ts = {0, 50 * 1000000}; /* do not spin on a broken socket */
            nanosleep(&ts, NULL);
        }
        uint64_t now = clk_mono_ns();
        if (now >= next_flush) {
            hand_over(t, false);
            next_flush = now + flush_ns;
        }
    }
    hand_over(t, true); /* what arrived before the stop still reaches the registry */
}

int ingest_udp_open(ingest_udp_t **out, const cfg_addr_t *addr, int threads, size_t rcvbuf,
                    double flush_interval, ingest_stats_t *stats, _Atomic int *pending,
                    int max_pending, ingest_sink_fn sink, void *sink_ctx, char *actual,
                    size_t actual_len, char *err, size_t errlen) {
    char want[80];
    config_addr_str(addr, want, sizeof want);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t slen;
    if (strchr(addr->host, ':')) {
        uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss);
        slen = sizeof(struct sockaddr_in6);
    } else {
        uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
        slen = sizeof(struct sockaddr_in);
    }
    /* A plain bind first: SO_REUSEPORT alone would let us share a port another process
     * of the same user already holds, silently splitting its traffic. It also resolves
     * port 0 to the one port every thread then shares. */
    int probe = make_socket((struct sockaddr *)&ss, slen, false, 4096);
    if (probe < 0) {
        snprintf(err, errlen, "--statsd %s: %s", want, strerror(-probe));
        return probe;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    getsockname(probe, (struct sockaddr *)&got, &glen);
    close(probe);
    cfg_addr_t real = *addr;
    real.port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                              : ((struct sockaddr_in6 *)&got)->sin6_port);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)real.port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)real.port);
    config_addr_str(&real, actual, actual_len);

    ingest_udp_t *u = calloc(1, sizeof *u);
    if (!u) return -ENOMEM;
    u->nthreads = threads < 1 ? 1 : threads;
    u->flush_interval = flush_interval;
    u->stats = stats;
    u->pending = pending;
    u->max_pending = max_pending;
    u->sink = sink;
    u->sink_ctx = sink_ctx;
    u->t = calloc((size_t)u->nthreads, sizeof *u->t);
    if (!u->t) {
        free(u);
        return -ENOMEM;
    }
    for (int i = 0; i < u->nthreads; i++) {
        udp_thread_t *t = &u->t[i];
        t->u = u;
        t->id = i;
        t->fd = -1;
        ingest_fold_init(&t->fold, 0);
        t->bufs = malloc((size_t)UDP_VLEN * UDP_DGRAM_MAX);
        int fd = t->bufs ? make_socket((struct sockaddr *)&ss, slen, true, rcvbuf) : -ENOMEM;
        if (fd < 0) {
            snprintf(err, errlen, "--statsd %s: %s", want, strerror(-fd));
            u->nthreads = i + 1;
            ingest_udp_close(u);
            return fd;
        }
        t->fd = fd;
    }
    *out = u;
    return 0;
}

int ingest_udp_set_allow(ingest_udp_t *u, const char *networks, char *err, size_t errlen) {
    netacl_free(&u->allow);
    return netacl_parse(&u->allow, networks, err, errlen);
}

int ingest_udp_start(ingest_udp_t *u) {
    for (int i = 0; i < u->nthreads; i++) {
        int rc = uv_thread_create(&u->t[i].thread, thread_main, &u->t[i]);
        if (rc) return rc; /* ingest_udp_close joins the ones started */
        u->t[i].started = true;
    }
    return 0;
}

void ingest_udp_close(ingest_udp_t *u) {
    if (!u) return;
    atomic_store(&u->stop, 1);
    for (int i = 0; i < u->nthreads; i++) {
        udp_thread_t *t = &u->t[i];
        if (t->started) uv_thread_join(&t->thread);
        if (t->fd >= 0) close(t->fd);
        ingest_fold_free(&t->fold);
        free(t->bufs);
    }
    free(u->t);
    netacl_free(&u->allow);
    free(u);
}
