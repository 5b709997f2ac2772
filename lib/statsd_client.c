/* The public StatsD client (metricast_statsd_*): lines from statsd_enc, packed by its
 * batcher, sent on a connected non-blocking UDP socket; an optional flusher thread. */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jsonenc.h"
#include "metricast.h"
#include "net.h"
#include "statsd_enc.h"

#define MAX_TAGS_OWNED 64

struct metricast_statsd {
    int fd;
    char *prefix;
    char **tags; /* NULL-terminated, owned */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t flusher;
    bool has_flusher, stop;
    unsigned interval_ms;
    uint64_t rng;
    mcl_batch_t batch;
    metricast_statsd_stats_t st;
};

void metricast_statsd_options_init(metricast_statsd_options_t *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8125;
    o->max_datagram = METRICAST_STATSD_MAX_DATAGRAM;
    o->flush_interval_ms = 1000;
}

/* mu held. The kernel either takes the datagram at once or it is dropped and counted:
 * MSG_DONTWAIT, so a full socket buffer never blocks the caller. */
static int emit(void *ctx, const char *data, size_t len, unsigned lines) {
    metricast_statsd_t *c = ctx;
    for (;;) {
        ssize_t n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) {
            c->st.datagrams++;
            c->st.bytes += (uint64_t)n;
            return 0;
        }
        if (errno == EINTR) continue;
        /* ECONNREFUSED here reports an ICMP "port unreachable" caused by an earlier
         * datagram: the count of drops is right, which one was lost may be off by one */
        int e = errno;
        c->st.dropped_datagrams++;
        c->st.dropped_lines += lines;
        c->st.last_error = -e;
        return -e;
    }
}

static void *flusher_main(void *arg) {
    metricast_statsd_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)c->interval_ms * 1000000ULL;
        ts.tv_sec += (time_t)(ns / 1000000000ULL);
        ts.tv_nsec = (long)(ns % 1000000000ULL);
        int rc = 0;
        while (!c->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        if (!c->stop) metricast__batch_flush(&c->batch, emit, c);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void free_handle(metricast_statsd_t *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->prefix);
    if (c->tags)
        for (char **t = c->tags; *t; t++) free(*t);
    free(c->tags);
    free(c);
}

int metricast_statsd_open(metricast_statsd_t **out, const metricast_statsd_options_t *opts,
                          char err[METRICAST_ERR_LEN]) {
    char dummy[METRICAST_ERR_LEN];
    if (!err) err = dummy;
    err[0] = '\0';
    if (!out) return -EINVAL;
    *out = NULL;
    metricast_statsd_options_t o;
    if (opts)
        o = *opts;
    else
        metricast_statsd_options_init(&o);
    if (!o.host || !*o.host) o.host = "127.0.0.1";
    if (o.port == 0) o.port = 8125;
    if (o.max_datagram == 0) o.max_datagram = METRICAST_STATSD_MAX_DATAGRAM;
    if (o.port > 65535) {
        snprintf(err, METRICAST_ERR_LEN, "port %u out of range", o.port);
        return -EINVAL;
    }
    if (o.max_datagram < 64 || o.max_datagram > METRICAST_STATSD_MAX_DATAGRAM) {
        snprintf(err, METRICAST_ERR_LEN, "max_datagram %zu outside 64..%d", o.max_datagram,
                 METRICAST_STATSD_MAX_DATAGRAM);
        return -EINVAL;
    }
    if (!metricast__statsd_name_ok(o.prefix, true)) {
        snprintf(err, METRICAST_ERR_LEN, "prefix has a character StatsD cannot carry");
        return -EINVAL;
    }
    size_t nt = 0;
    for (const char *const *t = o.tags; t && *t; t++, nt++) {
        if (!metricast__statsd_tag_ok(*t) || nt >= MAX_TAGS_OWNED) {
            snprintf(err, METRICAST_ERR_LEN, "bad constant tag (or more than %d): %.80s",
                     MAX_TAGS_OWNED, *t);
            return -EINVAL;
        }
    }
    metricast_statsd_t *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->fd = -1;
    c->interval_ms = o.flush_interval_ms;
    c->prefix = o.prefix && *o.prefix ? strdup(o.prefix) : NULL;
    c->tags = calloc(nt + 1, sizeof *c->tags);
    bool oom = (o.prefix && *o.prefix && !c->prefix) || !c->tags;
    for (size_t i = 0; !oom && i < nt; i++) oom = !(c->tags[i] = strdup(o.tags[i]));
    if (oom) {
        free_handle(c);
        return -ENOMEM;
    }
    metricast__batch_init(&c->batch, o.max_datagram);
    c->rng = o.sample_seed;
    if (!c->rng) metricast__random(&c->rng, sizeof c->rng);
    if (!c->rng) c->rng = 0x9e3779b97f4a7c15ULL;

    char ports[8];
    snprintf(ports, sizeof ports, "%u", o.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(o.host, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, METRICAST_ERR_LEN, "cannot resolve %s: %s", o.host, gai_strerror(g));
        free_handle(c);
        return -EHOSTUNREACH;
    }
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        /* connected: the kernel fills in the address once, and reports ICMP errors */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            rc = -errno;
            close(fd);
            continue;
        }
        c->fd = fd;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(err, METRICAST_ERR_LEN, "cannot open a UDP socket to %s:%u: %s", o.host, o.port,
                 strerror(-rc));
        free_handle(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (c->interval_ms > 0) {
        int e = pthread_create(&c->flusher, NULL, flusher_main, c);
        if (e != 0) {
            snprintf(err, METRICAST_ERR_LEN, "cannot start the flush thread: %s", strerror(e));
            pthread_cond_destroy(&c->cv);
            pthread_mutex_destroy(&c->mu);
            free_handle(c);
            return -e;
        }
        c->has_flusher = true;
    }
    *out = c;
    return 0;
}

/* xorshift64*: a uniform draw in [0, 1). mu held. */
static double draw(metricast_statsd_t *c) {
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Encodes and queues one line; `second` (may be NULL) is a value text for a second line
 * of the same name and type in the same unit (the negative-gauge pair). */
static int submit(metricast_statsd_t *c, const char *name, const char *value, const char *second,
                  const char *type, double rate, const char *const *tags) {
    if (!c) return -EINVAL;
    if (rate == 1) rate = 0;
    char unit[2 * METRICAST_STATSD_MAX_DATAGRAM + 2];
    size_t cap = c->batch.max + 1;
    int n = metricast__statsd_line(unit, cap, c->prefix, name, value, type, rate,
                                   (const char *const *)c->tags, tags);
    unsigned lines = 1;
    if (n >= 0 && second) {
        unit[n] = '\n';
        int m = metricast__statsd_line(unit + n + 1, sizeof unit - (size_t)n - 1, c->prefix, name, second, type, rate,
                                       (const char *const *)c->tags, tags);
        n = m < 0 ? m : n + 1 + m;
        lines = 2;
        if (n > (int)c->batch.max) n = -EMSGSIZE;
    }
    pthread_mutex_lock(&c->mu);
    if (n < 0) {
        c->st.invalid++;
        pthread_mutex_unlock(&c->mu);
        return n;
    }
    if (rate > 0 && draw(c) >= rate) {
        c->st.sampled_out++;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    int rc = metricast__batch_add(&c->batch, unit, (size_t)n, lines, emit, c);
    if (rc == -EMSGSIZE) {
        c->st.invalid++;
    } else {
        c->st.lines += lines;
        rc = 0; /* a send failure of the previous datagram is counted, not the caller's */
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* out has room for MCL_NUM_LEN + 1 bytes (a sign in front) */
static int num(double v, char *out, bool sign) {
    char t[MCL_NUM_LEN];
    if (metricast__fmt_double(sign ? fabs(v) : v, t) < 0) return -EINVAL;
    snprintf(out, MCL_NUM_LEN + 1, "%s%s", sign ? (v < 0 ? "-" : "+") : "", t);
    return 0;
}

static int bad(metricast_statsd_t *c) {
    if (c) {
        pthread_mutex_lock(&c->mu);
        c->st.invalid++;
        pthread_mutex_unlock(&c->mu);
    }
    return -EINVAL;
}

int metricast_statsd_count(metricast_statsd_t *c, const char *name, double value, double rate,
                           const char *const *tags) {
    char v[MCL_NUM_LEN + 1];
    if (num(value, v, false) < 0) return bad(c);
    return submit(c, name, v, NULL, "c", rate, tags);
}

int metricast_statsd_gauge(metricast_statsd_t *c, const char *name, double value,
                           const char *const *tags) {
    char v[MCL_NUM_LEN + 1];
    if (num(value, v, false) < 0) return bad(c);
    if (value < 0) return submit(c, name, "0", v, "g", 0, tags);
    return submit(c, name, v, NULL, "g", 0, tags);
}

int metricast_statsd_gauge_delta(metricast_statsd_t *c, const char *name, double delta,
                                 const char *const *tags) {
    char v[MCL_NUM_LEN + 1];
    if (num(delta, v, true) < 0) return bad(c);
    return submit(c, name, v, NULL, "g", 0, tags);
}

static int sampled(metricast_statsd_t *c, const char *name, double value, double rate,
                   const char *const *tags, const char *type) {
    char v[MCL_NUM_LEN + 1];
    if (num(value, v, false) < 0) return bad(c);
    return submit(c, name, v, NULL, type, rate, tags);
}

int metricast_statsd_timing(metricast_statsd_t *c, const char *name, double ms, double rate,
                            const char *const *tags) {
    return sampled(c, name, ms, rate, tags, "ms");
}

int metricast_statsd_histogram(metricast_statsd_t *c, const char *name, double value,
                               double rate, const char *const *tags) {
    return sampled(c, name, value, rate, tags, "h");
}

int metricast_statsd_distribution(metricast_statsd_t *c, const char *name, double value,
                                  double rate, const char *const *tags) {
    return sampled(c, name, value, rate, tags, "d");
}

int metricast_statsd_set(metricast_statsd_t *c, const char *name, const char *member,
                         const char *const *tags) {
    if (!metricast__statsd_member_ok(member)) return bad(c);
    return submit(c, name, member, NULL, "s", 0, tags);
}

int metricast_statsd_flush(metricast_statsd_t *c) {
    if (!c) return -EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = metricast__batch_flush(&c->batch, emit, c);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void metricast_statsd_stats(metricast_statsd_t *c, metricast_statsd_stats_t *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

void metricast_statsd_close(metricast_statsd_t *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->has_flusher) pthread_join(c->flusher, NULL);
    metricast__batch_flush(&c->batch, emit, c);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free_handle(c);
}
