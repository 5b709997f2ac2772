/* libmetricast StatsD: line encoding (every type, rates, tags, the refusals), datagram
 * batching (never over the limit, units never split), number formatting, and the
 * client on a real loopback UDP socket (what arrives, sampling, negative gauges, flush on
 * size / interval / explicitly, drops counted when nothing listens). */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "jsonenc.h"
#include "metricast.h"
#include "statsd_enc.h"

static int line(char *out, size_t cap, const char *prefix, const char *name, const char *v,
                const char *type, double rate, const char *const *a, const char *const *b) {
    return metricast__statsd_line(out, cap, prefix, name, v, type, rate, a, b);
}

static void test_line_forms(void **st) {
    (void)st;
    char out[512];
    assert_int_equal(line(out, sizeof out, NULL, "hits", "1", "c", 0, NULL, NULL), 8);
    assert_string_equal(out, "hits:1|c");
    line(out, sizeof out, "app.", "hits", "3", "c", 0.25, NULL, NULL);
    assert_string_equal(out, "app.hits:3|c|@0.25");
    line(out, sizeof out, NULL, "lvl", "+3", "g", 0, NULL, NULL);
    assert_string_equal(out, "lvl:+3|g");
    line(out, sizeof out, NULL, "lat", "12.5", "ms", 0.1, NULL, NULL);
    assert_string_equal(out, "lat:12.5|ms|@0.1");
    line(out, sizeof out, NULL, "users", "alice", "s", 0, NULL, NULL);
    assert_string_equal(out, "users:alice|s");
    const char *const own[] = {"env:prod", "region", NULL};
    const char *const call[] = {"route:/api/v1", NULL};
    line(out, sizeof out, NULL, "req", "1", "c", 0, own, call);
    assert_string_equal(out, "req:1|c|#env:prod,region,route:/api/v1");
    line(out, sizeof out, NULL, "req", "1", "c", 0, NULL, call);
    assert_string_equal(out, "req:1|c|#route:/api/v1");
    line(out, sizeof out, NULL, "h", "2", "h", 0.5, own, NULL);
    assert_string_equal(out, "h:2|h|@0.5|#env:prod,region");
    /* rate 1 and 0 both mean unsampled */
    line(out, sizeof out, NULL, "d", "2", "d", 1, NULL, NULL);
    assert_string_equal(out, "d:2|d");
}

static void test_line_refusals(void **st) {
    (void)st;
    char out[64];
    const char *bad_names[] = {"", "a:b", "a|b", "a@b", "a#b", "a\nb", "a\rb", "a\tb"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_int_equal(line(out, sizeof out, NULL, bad_names[i], "1", "c", 0, NULL, NULL),
                         -EINVAL);
    assert_int_equal(line(out, sizeof out, "a:", "x", "1", "c", 0, NULL, NULL), -EINVAL);
    const char *const bad_tags[][2] = {{"a|b", NULL}, {"a,b", NULL}, {"a#b", NULL},
                                       {"", NULL},    {"a\nb", NULL}};
    for (size_t i = 0; i < sizeof bad_tags / sizeof *bad_tags; i++)
        assert_int_equal(line(out, sizeof out, NULL, "x", "1", "c", 0, bad_tags[i], NULL),
                         -EINVAL);
    assert_int_equal(line(out, sizeof out, NULL, "x", "1", "c", 1.5, NULL, NULL), -EINVAL);
    assert_int_equal(line(out, sizeof out, NULL, "x", "1", "c", -0.5, NULL, NULL), -EINVAL);
    assert_int_equal(line(out, sizeof out, NULL, "x", "1", "c", NAN, NULL, NULL), -EINVAL);
    /* too long for the buffer: -EMSGSIZE, a bad tag past the end still -EINVAL */
    char name[100];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_int_equal(line(out, sizeof out, NULL, name, "1", "c", 0, NULL, NULL), -EMSGSIZE);
    const char *const late_bad[] = {"ok", "b|d", NULL};
    assert_int_equal(line(out, sizeof out, NULL, name, "1", "c", 0, late_bad, NULL), -EINVAL);
    assert_true(metricast__statsd_member_ok("alice@example.com"));
    assert_false(metricast__statsd_member_ok("a:b"));
    assert_false(metricast__statsd_member_ok("a|b"));
    assert_false(metricast__statsd_member_ok(""));
}

static void test_numbers(void **st) {
    (void)st;
    char t[MCL_NUM_LEN];
    struct {
        double v;
        const char *want;
    } cases[] = {{45.2, "45.2"},    {3.0, "3"},     {0.1, "0.1"},          {-0.0, "0"},
                 {1e21, "1e+21"},   {-7.25, "-7.25"}, {1.0 / 3, "0.3333333333333333"},
                 {123456789012345678.0, "1.2345678901234568e+17"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        metricast__fmt_double(cases[i].v, t);
        assert_string_equal(t, cases[i].want);
        assert_true(strtod(t, NULL) == cases[i].v);
    }
    /* the fixed-point fast path: shortest text, exact round trip */
    struct {
        double v;
        const char *want;
    } fixed[] = {{0.05, "0.05"},       {-0.001, "-0.001"},  {123456.789, "123456.789"},
                 {999999999.5, "999999999.5"}, {0.1 + 0.2, "0.30000000000000004"},
                 {1e-7, "1e-07"},      {100, "100"},        {-45.25, "-45.25"},
                 {0.000001, "0.000001"}, {2.5e-7, "2.5e-07"}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        metricast__fmt_double(fixed[i].v, t);
        assert_string_equal(t, fixed[i].want);
    }
    uint64_t y = 0x9e3779b97f4a7c15ULL;
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};
    for (int i = 0; i < 100000; i++) {
        y ^= y << 13, y ^= y >> 7, y ^= y << 17;
        double v = (double)(int64_t)(y % 2000000000001ULL - 1000000000000LL) / p10[y >> 61];
        int n = metricast__fmt_double(v, t);
        assert_true(strtod(t, NULL) == v);
        char ref[40];
        int rn = snprintf(ref, sizeof ref, "%.17g", v);
        assert_true(n <= rn);
    }
    assert_int_equal(metricast__fmt_double(NAN, t), -EINVAL);
    assert_int_equal(metricast__fmt_double(INFINITY, t), -EINVAL);
    /* round trip over many values */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        memcpy(&v, &x, sizeof v);
        if (!isfinite(v)) continue;
        metricast__fmt_double(v, t);
        assert_true(strtod(t, NULL) == v);
    }
}

/* ---- batching ---------------------------------------------------------------------- */

typedef struct {
    char d[32][1500];
    size_t len[32];
    unsigned lines[32];
    int n;
    int fail;
} sink_t;

static int sink(void *ctx, const char *data, size_t len, unsigned lines) {
    sink_t *s = ctx;
    memcpy(s->d[s->n], data, len);
    s->d[s->n][len] = '\0';
    s->len[s->n] = len;
    s->lines[s->n] = lines;
    s->n++;
    return s->fail;
}

static void test_batch(void **st) {
    (void)st;
    static sink_t s;
    memset(&s, 0, sizeof s);
    mcl_batch_t b;
    metricast__batch_init(&b, 64);
    char unit[64];
    /* 8-byte lines "k00:12|c": seven fit in 64 with their separators (7*8+6 = 62) */
    for (int i = 0; i < 15; i++) {
        int n = snprintf(unit, sizeof unit, "k%02d:12|c", i);
        assert_int_equal(metricast__batch_add(&b, unit, (size_t)n, 1, sink, &s), 0);
    }
    assert_int_equal(s.n, 2);
    assert_string_equal(s.d[0], "k00:12|c\nk01:12|c\nk02:12|c\nk03:12|c\nk04:12|c\nk05:12|c\n"
                                "k06:12|c");
    assert_int_equal(s.lines[0], 7);
    assert_int_equal(s.len[0], 62);
    assert_int_equal(s.lines[1], 7);
    assert_int_equal(metricast__batch_flush(&b, sink, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.d[2], "k14:12|c");
    assert_int_equal(metricast__batch_flush(&b, sink, &s), 0); /* empty: nothing */
    assert_int_equal(s.n, 3);
    /* a unit of two lines is never split */
    char a55[56];
    memset(a55, 'a', 55);
    metricast__batch_add(&b, a55, 55, 1, sink, &s); /* 55 + 1 + 12 > 64 */
    assert_int_equal(metricast__batch_add(&b, "g:0|g\ng:-5|g", 12, 2, sink, &s), 0);
    assert_int_equal(s.n, 4);
    metricast__batch_flush(&b, sink, &s);
    assert_string_equal(s.d[4], "g:0|g\ng:-5|g");
    assert_int_equal(s.lines[4], 2);
    /* exactly the limit fits; one more byte does not */
    char full[65];
    memset(full, 'x', 64);
    assert_int_equal(metricast__batch_add(&b, full, 64, 1, sink, &s), 0);
    assert_int_equal(metricast__batch_add(&b, full, 65, 1, sink, &s), -EMSGSIZE);
    metricast__batch_flush(&b, sink, &s);
    assert_int_equal(s.len[5], 64);
    /* the emitter's failure is reported, the unit kept */
    s.fail = -ENOBUFS;
    metricast__batch_add(&b, full, 40, 1, sink, &s);
    assert_int_equal(metricast__batch_add(&b, full, 40, 1, sink, &s), -ENOBUFS);
    s.fail = 0;
    metricast__batch_flush(&b, sink, &s);
    assert_int_equal(s.len[s.n - 1], 40);
}

/* ---- the client over real UDP ------------------------------------------------------ */

static int udp_listener(unsigned *port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* the next datagram within timeout_ms, NUL-terminated, or -1 */
static int recv_dgram(int fd, char *buf, size_t cap, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0) return -1;
    buf[n] = '\0';
    return (int)n;
}

static metricast_statsd_t *open_client(unsigned port, unsigned interval_ms, const char *prefix,
                                       const char *const *tags) {
    metricast_statsd_options_t o;
    metricast_statsd_options_init(&o);
    o.port = port;
    o.flush_interval_ms = interval_ms;
    o.prefix = prefix;
    o.tags = tags;
    o.sample_seed = 42;
    metricast_statsd_t *c = NULL;
    char err[METRICAST_ERR_LEN];
    assert_int_equal(metricast_statsd_open(&c, &o, err), 0);
    return c;
}

static void test_client_kinds_and_explicit_flush(void **st) {
    (void)st;
    unsigned port;
    int fd = udp_listener(&port);
    const char *const own[] = {"env:test", NULL};
    metricast_statsd_t *c = open_client(port, 0, "app.", own);
    const char *const t[] = {"route:/x", NULL};
    assert_int_equal(metricast_statsd_count(c, "hits", 2, 1, t), 0);
    assert_int_equal(metricast_statsd_gauge(c, "temp", 21.5, NULL), 0);
    assert_int_equal(metricast_statsd_gauge(c, "temp", -4, NULL), 0);
    assert_int_equal(metricast_statsd_gauge_delta(c, "lvl", 3, NULL), 0);
    assert_int_equal(metricast_statsd_gauge_delta(c, "lvl", -1.5, NULL), 0);
    assert_int_equal(metricast_statsd_timing(c, "lat", 12.25, 0, NULL), 0);
    assert_int_equal(metricast_statsd_histogram(c, "size", 512, 1, NULL), 0);
    assert_int_equal(metricast_statsd_distribution(c, "dist", 7, 1, NULL), 0);
    assert_int_equal(metricast_statsd_set(c, "users", "alice", NULL), 0);
    char buf[2048];
    assert_int_equal(recv_dgram(fd, buf, sizeof buf, 100), -1); /* nothing before a flush */
    assert_int_equal(metricast_statsd_flush(c), 0);
    assert_true(recv_dgram(fd, buf, sizeof buf, 2000) > 0);
    assert_string_equal(buf, "app.hits:2|c|#env:test,route:/x\n"
                             "app.temp:21.5|g|#env:test\n"
                             "app.temp:0|g|#env:test\napp.temp:-4|g|#env:test\n"
                             "app.lvl:+3|g|#env:test\n"
                             "app.lvl:-1.5|g|#env:test\n"
                             "app.lat:12.25|ms|#env:test\n"
                             "app.size:512|h|#env:test\n"
                             "app.dist:7|d|#env:test\n"
                             "app.users:alice|s|#env:test");
    metricast_statsd_stats_t s;
    metricast_statsd_stats(c, &s);
    assert_int_equal(s.lines, 10);
    assert_int_equal(s.datagrams, 1);
    assert_int_equal(s.dropped_datagrams, 0);
    /* refusals are counted and change nothing */
    assert_int_equal(metricast_statsd_count(c, "a:b", 1, 1, NULL), -EINVAL);
    assert_int_equal(metricast_statsd_gauge(c, "x", NAN, NULL), -EINVAL);
    assert_int_equal(metricast_statsd_set(c, "x", "a|b", NULL), -EINVAL);
    assert_int_equal(metricast_statsd_timing(c, "x", 1, 2.0, NULL), -EINVAL);
    char big[1500];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(metricast_statsd_count(c, big, 1, 1, NULL), -EMSGSIZE);
    metricast_statsd_stats(c, &s);
    assert_int_equal(s.invalid, 5);
    assert_int_equal(s.lines, 10);
    metricast_statsd_close(c);
    close(fd);
}

static void test_client_flush_on_size(void **st) {
    (void)st;
    unsigned port;
    int fd = udp_listener(&port);
    metricast_statsd_t *c = open_client(port, 0, NULL, NULL);
    /* 2000 lines of ~20 bytes: many datagrams, each <= 1432, no line lost or split */
    for (int i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof name, "series_%04d", i);
        assert_int_equal(metricast_statsd_count(c, name, 1, 1, NULL), 0);
    }
    metricast_statsd_flush(c);
    int lines = 0, dgrams = 0;
    char buf[2048];
    int n;
    while ((n = recv_dgram(fd, buf, sizeof buf, 300)) > 0) {
        assert_true(n <= METRICAST_STATSD_MAX_DATAGRAM);
        dgrams++;
        for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
            char want[40];
            snprintf(want, sizeof want, "series_%04d:1|c", lines);
            assert_string_equal(p, want);
            lines++;
        }
    }
    assert_int_equal(lines, 2000);
    metricast_statsd_stats_t s;
    metricast_statsd_stats(c, &s);
    assert_int_equal(s.datagrams, (uint64_t)dgrams);
    /* 15-byte lines + '\n': 89 per datagram ((1432 + 1) / 16), so 23 datagrams */
    assert_int_equal(dgrams, 23);
    metricast_statsd_close(c);
    close(fd);
}

static void test_client_interval_and_close_flush(void **st) {
    (void)st;
    unsigned port;
    int fd = udp_listener(&port);
    metricast_statsd_t *c = open_client(port, 50, NULL, NULL);
    metricast_statsd_gauge(c, "tick", 1, NULL);
    char buf[2048];
    /* the flusher thread sends it without any call from us */
    assert_true(recv_dgram(fd, buf, sizeof buf, 5000) > 0);
    assert_string_equal(buf, "tick:1|g");
    metricast_statsd_gauge(c, "last", 2, NULL);
    metricast_statsd_close(c); /* close flushes */
    int n = recv_dgram(fd, buf, sizeof buf, 5000);
    assert_true(n > 0);
    assert_string_equal(buf, "last:2|g");
    close(fd);
}

static void test_client_sampling(void **st) {
    (void)st;
    unsigned port;
    int fd = udp_listener(&port);
    metricast_statsd_t *c = open_client(port, 0, NULL, NULL);
    for (int i = 0; i < 10000; i++) metricast_statsd_count(c, "s", 1, 0.1, NULL);
    metricast_statsd_flush(c);
    metricast_statsd_stats_t s;
    metricast_statsd_stats(c, &s);
    assert_int_equal(s.lines + s.sampled_out, 10000);
    /* 10 % of 10,000 with a fixed seed: far inside 700..1300 */
    assert_true(s.lines > 700 && s.lines < 1300);
    char buf[2048];
    int got = 0, n;
    while ((n = recv_dgram(fd, buf, sizeof buf, 300)) > 0)
        for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
            assert_string_equal(p, "s:1|c|@0.1");
            got++;
        }
    assert_int_equal((uint64_t)got, s.lines);
    metricast_statsd_close(c);
    close(fd);
}

static void test_client_counts_what_it_cannot_send(void **st) {
    (void)st;
    unsigned port;
    int fd = udp_listener(&port);
    close(fd); /* nobody listens there now: ICMP port unreachable → ECONNREFUSED */
    metricast_statsd_t *c = open_client(port, 0, NULL, NULL);
    int refused = 0;
    for (int i = 0; i < 20; i++) {
        metricast_statsd_count(c, "lost", 1, 1, NULL);
        if (metricast_statsd_flush(c) < 0) refused++;
        usleep(2000);
    }
    metricast_statsd_stats_t s;
    metricast_statsd_stats(c, &s);
    assert_int_equal(s.datagrams + s.dropped_datagrams, 20);
    assert_true(refused > 0);
    assert_int_equal(s.dropped_datagrams, (uint64_t)refused);
    assert_int_equal(s.dropped_lines, (uint64_t)refused);
    assert_int_equal(s.last_error, -ECONNREFUSED);
    metricast_statsd_close(c);
}

static void test_open_refusals(void **st) {
    (void)st;
    metricast_statsd_options_t o;
    metricast_statsd_t *c = NULL;
    char err[METRICAST_ERR_LEN];
    metricast_statsd_options_init(&o);
    o.max_datagram = 2000;
    assert_int_equal(metricast_statsd_open(&c, &o, err), -EINVAL);
    assert_non_null(strstr(err, "max_datagram"));
    metricast_statsd_options_init(&o);
    o.prefix = "a|";
    assert_int_equal(metricast_statsd_open(&c, &o, err), -EINVAL);
    metricast_statsd_options_init(&o);
    const char *const bad[] = {"x,y", NULL};
    o.tags = bad;
    assert_int_equal(metricast_statsd_open(&c, &o, err), -EINVAL);
    metricast_statsd_options_init(&o);
    o.port = 70000;
    assert_int_equal(metricast_statsd_open(&c, &o, err), -EINVAL);
    assert_null(c);
    metricast_statsd_close(NULL);
    assert_int_equal(metricast_statsd_count(NULL, "x", 1, 1, NULL), -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_forms),
        cmocka_unit_test(test_line_refusals),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_client_kinds_and_explicit_flush),
        cmocka_unit_test(test_client_flush_on_size),
        cmocka_unit_test(test_client_interval_and_close_flush),
        cmocka_unit_test(test_client_sampling),
        cmocka_unit_test(test_client_counts_what_it_cannot_send),
        cmocka_unit_test(test_open_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
