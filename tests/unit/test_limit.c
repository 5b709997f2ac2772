/* limit: connection admission (total, per address, per-address rate with refill) and the
 * network lists of netacl (StatsD allow_from). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "limit.h"
#include "netacl.h"

static ipl_addr_t v4(const char *ip) {
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &in.sin_addr);
    ipl_addr_t a;
    ipl_addr_from(&a, (struct sockaddr *)&in);
    return a;
}

static void test_total(void **state) {
    (void)state;
    iplimits_t t;
    assert_int_equal(iplimits_init(&t, 2, 0, 0), 0);
    ipl_addr_t a = v4("10.0.0.1"), b = v4("10.0.0.2");
    assert_int_equal(iplimits_admit(&t, &a, 0), -1);
    assert_int_equal(iplimits_admit(&t, &b, 0), -1);
    assert_int_equal(iplimits_admit(&t, &a, 0), LIMIT_CONNECTIONS);
    iplimits_release(&t, &a);
    assert_int_equal(iplimits_admit(&t, &b, 0), -1);
    iplimits_free(&t);
}

static void test_per_ip(void **state) {
    (void)state;
    iplimits_t t;
    assert_int_equal(iplimits_init(&t, 0, 2, 0), 0);
    ipl_addr_t a = v4("10.0.0.1"), b = v4("10.0.0.2");
    assert_int_equal(iplimits_admit(&t, &a, 0), -1);
    assert_int_equal(iplimits_admit(&t, &a, 0), -1);
    assert_int_equal(iplimits_admit(&t, &a, 0), LIMIT_CONNECTIONS_PER_IP);
    assert_int_equal(iplimits_admit(&t, &b, 0), -1); /* others are not affected */
    iplimits_release(&t, &a);
    assert_int_equal(iplimits_admit(&t, &a, 0), -1);
    /* many addresses come and go: the table forgets the idle ones */
    for (int i = 0; i < 5000; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.1.%d.%d", i / 250, i % 250);
        ipl_addr_t x = v4(ip);
        assert_int_equal(iplimits_admit(&t, &x, (uint64_t)i), -1);
        iplimits_release(&t, &x);
    }
    assert_true(t.n < 1000);
    iplimits_free(&t);
}

static void test_rate(void **state) {
    (void)state;
    iplimits_t t;
    assert_int_equal(iplimits_init(&t, 0, 0, 5), 0);
    ipl_addr_t a = v4("10.0.0.1"), b = v4("10.0.0.9");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(iplimits_admit(&t, &a, 1000), -1);
        iplimits_release(&t, &a);
    }
    assert_int_equal(iplimits_admit(&t, &a, 1000), LIMIT_CONNECTION_RATE);
    assert_int_equal(iplimits_admit(&t, &b, 1000), -1);
    /* 5 per second: after 200 ms one more */
    assert_int_equal(iplimits_admit(&t, &a, 1100), LIMIT_CONNECTION_RATE);
    assert_int_equal(iplimits_admit(&t, &a, 1200), -1);
    assert_int_equal(iplimits_admit(&t, &a, 1200), LIMIT_CONNECTION_RATE);
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 5; i++) assert_int_equal(iplimits_admit(&t, &a, 100000), -1);
    assert_int_equal(iplimits_admit(&t, &a, 100000), LIMIT_CONNECTION_RATE);
    iplimits_free(&t);
}

static bool match(const netacl_t *acl, const char *ip) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &in6->sin6_addr);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &in->sin_addr);
    }
    return netacl_match(acl, (struct sockaddr *)&ss);
}

static void test_netacl(void **state) {
    (void)state;
    netacl_t acl;
    char err[200];
    assert_int_equal(netacl_parse(&acl, " 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1, 172.16.0.0/12",
                                  err, sizeof err),
                     0);
    assert_int_equal(acl.n, 5);
    assert_true(match(&acl, "10.255.1.2"));
    assert_false(match(&acl, "11.0.0.1"));
    assert_true(match(&acl, "192.168.1.7"));
    assert_false(match(&acl, "192.168.1.8"));
    assert_true(match(&acl, "172.31.255.255"));
    assert_false(match(&acl, "172.32.0.0"));
    assert_true(match(&acl, "fd12::1"));
    assert_false(match(&acl, "fe80::1"));
    assert_true(match(&acl, "::1"));
    assert_false(match(&acl, "::2"));
    assert_true(match(&acl, "::ffff:10.1.2.3")); /* a v4 sender on a dual-stack socket */
    assert_false(match(&acl, "::ffff:11.1.2.3"));
    netacl_free(&acl);
    assert_int_equal(netacl_parse(&acl, "", err, sizeof err), 0);
    assert_int_equal(acl.n, 0);
    assert_int_equal(netacl_parse(&acl, "0.0.0.0/0", err, sizeof err), 0);
    assert_true(match(&acl, "8.8.8.8"));
    assert_false(match(&acl, "2001:db8::1"));
    netacl_free(&acl);
    static const char *const bad[] = {"10.0.0.0/33", "fd00::/129", "10.0.0", "host.example",
                                      "10.0.0.0/", "10.0.0.0/8x", "::1/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (netacl_parse(&acl, bad[i], err, sizeof err) == 0) fail_msg("%s accepted", bad[i]);
        if (!strstr(err, "not a network")) fail_msg("%s: %s", bad[i], err);
        assert_int_equal(acl.n, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_total),
        cmocka_unit_test(test_per_ip),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_netacl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
