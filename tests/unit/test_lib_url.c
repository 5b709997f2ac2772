/* libmetricast URL handling: the forms accepted, every refusal, request targets under a
 * prefix, the WebSocket target with a token, Host headers, percent-encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sbuf.h"
#include "url.h"

static void test_accepted(void **st) {
    (void)st;
    struct {
        const char *in;
        int scheme;
        const char *host;
        int ipv6;
        unsigned port;
        const char *path, *query;
    } cases[] = {
        {"http://127.0.0.1:9750", MCL_URL_HTTP, "127.0.0.1", 0, 9750, "", ""},
        {"HTTP://Hub.Example:80/", MCL_URL_HTTP, "Hub.Example", 0, 80, "/", ""},
        {"http://hub/metricast", MCL_URL_HTTP, "hub", 0, 80, "/metricast", ""},
        {"127.0.0.1:9750", MCL_URL_HTTP, "127.0.0.1", 0, 9750, "", ""},
        {"localhost", MCL_URL_HTTP, "localhost", 0, 80, "", ""},
        {"ws://127.0.0.1:9750/ws?topics=metrics,events", MCL_URL_WS, "127.0.0.1", 0, 9750, "/ws",
         "topics=metrics,events"},
        {"http://[::1]:9750/x?a=1#frag", MCL_URL_HTTP, "::1", 1, 9750, "/x", "a=1"},
        {"ws://[fe80::1]:1/", MCL_URL_WS, "fe80::1", 1, 1, "/", ""},
        {"http://h:65535", MCL_URL_HTTP, "h", 0, 65535, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mcl_url_t u;
        char err[128];
        assert_int_equal(metricast__url_parse(cases[i].in, &u, err, sizeof err), 0);
        assert_int_equal(u.scheme, cases[i].scheme);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.ipv6, cases[i].ipv6);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.path, cases[i].path);
        assert_string_equal(u.query, cases[i].query);
    }
}

static void test_refused(void **st) {
    (void)st;
    struct {
        const char *in;
        int rc;
        const char *says;
    } cases[] = {
        {"", -EINVAL, "empty"},
        {"https://hub:443", -ENOTSUP, "TLS"},
        {"wss://hub/ws", -ENOTSUP, "TLS"},
        {"ftp://hub", -EINVAL, "scheme"},
        {"http://user:pw@hub:9750", -EINVAL, "credentials"},
        {"http://:9750", -EINVAL, "no host"},
        {"http://hub:", -EINVAL, "empty port"},
        {"http://hub:0", -EINVAL, "port 0"},
        {"http://hub:65536", -EINVAL, "range"},
        {"http://hub:97x0", -EINVAL, "bad port"},
        {"http://hu b:1", -EINVAL, "host"},
        {"http://[::1:9750", -EINVAL, "unclosed"},
        {"http://[::1]x", -EINVAL, "junk"},
        {"http://[zz]:1", -EINVAL, "IPv6"},
        {"http://hub/a b", -EINVAL, "path"},
        {"http://hub/a?b c", -EINVAL, "query"},
        {"http://hub/\x01", -EINVAL, "path"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mcl_url_t u;
        char err[256] = "";
        assert_int_equal(metricast__url_parse(cases[i].in, &u, err, sizeof err), cases[i].rc);
        if (!strstr(err, cases[i].says)) fail_msg("%s: %s (want %s)", cases[i].in, err, cases[i].says);
    }
    mcl_url_t u;
    assert_int_equal(metricast__url_parse(NULL, &u, NULL, 0), -EINVAL);
    /* a long host is refused, not truncated */
    char longu[400] = "http://";
    memset(longu + 7, 'a', 300);
    assert_int_equal(metricast__url_parse(longu, &u, NULL, 0), -EINVAL);
}

static char *target(const char *url, const char *path) {
    mcl_url_t u;
    assert_int_equal(metricast__url_parse(url, &u, NULL, 0), 0);
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__url_target(&u, path, &b);
    return metricast__sb_steal(&b, NULL);
}

static char *ws_target(const char *url, const char *token) {
    mcl_url_t u;
    assert_int_equal(metricast__url_parse(url, &u, NULL, 0), 0);
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__url_ws_target(&u, token, &b);
    return metricast__sb_steal(&b, NULL);
}

static void check(char *got, const char *want) {
    assert_string_equal(got, want);
    free(got);
}

static void test_targets(void **st) {
    (void)st;
    check(target("http://h:1", "/api/v1/metrics"), "/api/v1/metrics");
    check(target("http://h:1/", "/api/v1/metrics"), "/api/v1/metrics");
    check(target("http://h:1/mc/", "/api/v1/series/x?window=60"), "/mc/api/v1/series/x?window=60");
    check(target("http://h:1/mc?k=v", "/api/v1/series/x?window=60"),
          "/mc/api/v1/series/x?window=60&k=v");
    check(target("http://h:1/mc?k=v", "/health"), "/mc/health?k=v");
    check(ws_target("http://h:1", NULL), "/ws");
    check(ws_target("http://h:1/mc/", ""), "/mc/ws");
    check(ws_target("ws://h:1", NULL), "/ws");
    check(ws_target("ws://h:1/custom?topics=metrics", "s3cr+t/="),
          "/custom?topics=metrics&token=s3cr%2Bt%2F%3D");
    check(ws_target("http://h:1", "tok"), "/ws?token=tok");
}

static void test_hostport_and_encode(void **st) {
    (void)st;
    mcl_url_t u;
    char hp[300];
    metricast__url_parse("http://[::1]:9750", &u, NULL, 0);
    metricast__url_hostport(&u, hp, sizeof hp);
    assert_string_equal(hp, "[::1]:9750");
    metricast__url_parse("http://hub", &u, NULL, 0);
    metricast__url_hostport(&u, hp, sizeof hp);
    assert_string_equal(hp, "hub");
    mcl_sbuf_t b = MCL_SBUF_INIT;
    metricast__url_encode("a-b_c.d~e f&g=h/\xc3\xa9", &b);
    assert_string_equal(b.data, "a-b_c.d~e%20f%26g%3Dh%2F%C3%A9");
    metricast__sb_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_hostport_and_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
