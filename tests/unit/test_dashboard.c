/* dashboard: If-None-Match matching, Accept-Encoding, the CSP's host handling, and the
 * embedded asset table as the build produced it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "dashboard.h"

static void test_etag_matches(void **state) {
    (void)state;
    const char *tag = "\"abc123\"";
    static const struct {
        const char *inm;
        bool match;
    } cases[] = {
        {"\"abc123\"", true},
        {"W/\"abc123\"", true}, /* If-None-Match compares weakly */
        {"*", true},
        {"  *  ", true},
        {"\"x\", \"abc123\"", true},
        {"\"x\",\"abc123\",\"y\"", true},
        {"\"a,b\", \"abc123\"", true}, /* a comma inside a tag is part of it */
        {",, \"abc123\"", true},
        {"\"abc12\"", false},
        {"\"abc1234\"", false},
        {"abc123", false}, /* unquoted: malformed */
        {"\"abc123", false},
        {"\"x\" \"abc123\"", false}, /* missing comma: malformed, matches nothing */
        {"* , \"x\"", false},
        {"", false},
        {"W/", false},
        {"\"a,b\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (dashboard_etag_matches(cases[i].inm, tag) != cases[i].match)
            fail_msg("If-None-Match %s: expected %s", cases[i].inm, cases[i].match ? "match" : "no match");
    }
    assert_false(dashboard_etag_matches(NULL, tag));
    assert_false(dashboard_etag_matches("\"abc123\"", NULL));
    assert_true(dashboard_etag_matches("\"abc123-gz\"", "\"abc123-gz\""));
    assert_false(dashboard_etag_matches("\"abc123\"", "\"abc123-gz\""));
}

static void test_accepts_gzip(void **state) {
    (void)state;
    static const struct {
        const char *ae;
        bool gzip;
    } cases[] = {
        {"gzip", true},
        {"gzip, deflate, br", true},
        {"br, GZIP", true},
        {"x-gzip", true},
        {"gzip;q=0.5", true},
        {"gzip; q=1.0", true},
        {"*", true},
        {"br, *;q=0.1", true},
        {"gzip;q=0", false},
        {"gzip;q=0.000", false},
        {"*;q=1, gzip;q=0", false}, /* explicit beats the wildcard */
        {"gzip;q=0, *", false},
        {"identity", false},
        {"br, deflate", false},
        {"", false},
        {"gzipx", false},
        {"xgzip", false},
        {"gzip;q=2", false},  /* out of range: says nothing */
        {"gzip;q=abc", false},
        {"*;q=0", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (dashboard_accepts_gzip(cases[i].ae) != cases[i].gzip)
            fail_msg("Accept-Encoding \"%s\": expected %s", cases[i].ae, cases[i].gzip ? "gzip" : "identity");
    }
    assert_false(dashboard_accepts_gzip(NULL));
}

static void test_csp(void **state) {
    (void)state;
    char out[800];
    assert_true(dashboard_csp("127.0.0.1:9750", out, sizeof out) > 0);
    assert_non_null(strstr(out, "connect-src 'self' ws://127.0.0.1:9750 wss://127.0.0.1:9750;"));
    assert_non_null(strstr(out, "default-src 'none'"));
    assert_non_null(strstr(out, "script-src 'self';"));
    assert_non_null(strstr(out, "style-src 'self';"));
    assert_null(strstr(out, "unsafe"));
    assert_true(dashboard_csp("[::1]:9750", out, sizeof out) > 0);
    assert_non_null(strstr(out, "ws://[::1]:9750 "));
    assert_true(dashboard_csp("ops.example.com", out, sizeof out) > 0);
    assert_non_null(strstr(out, "wss://ops.example.com;"));
    /* anything that could break out of the header or the source list: 'self' only */
    static const char *const bad[] = {"a b", "a;script-src *", "a\r\nX: y", "", "x'y", "a,b", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(dashboard_csp(bad[i], out, sizeof out) > 0);
        if (!strstr(out, "connect-src 'self';")) fail_msg("host \"%s\" went into the CSP: %s", bad[i], out);
    }
    assert_true(dashboard_csp(NULL, out, sizeof out) > 0);
    assert_non_null(strstr(out, "connect-src 'self';"));
    char small[16];
    assert_int_equal(dashboard_csp("h", small, sizeof small), -1);
}

static int gunzip(const unsigned char *in, size_t len, unsigned char *out, size_t cap, size_t *got) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return -1;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    *got = cap - z.avail_out;
    inflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void test_embedded_table(void **state) {
    (void)state;
    static const char *const want[] = {"/", "/assets/app.js", "/assets/app.css", "/assets/metricast.js",
                                       "/assets/uplot.js", "/assets/uplot.css", "/assets/favicon.svg"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!dashboard_find(want[i])) fail_msg("%s is not embedded", want[i]);
    assert_null(dashboard_find("/assets/"));
    assert_null(dashboard_find("/assets/nope.js"));
    assert_null(dashboard_find("/index.html"));
    assert_string_equal(dashboard_find("/")->content_type, "text/html; charset=utf-8");
    assert_string_equal(dashboard_find("/assets/app.js")->content_type, "text/javascript; charset=utf-8");
    assert_string_equal(dashboard_find("/assets/app.css")->content_type, "text/css; charset=utf-8");
    assert_string_equal(dashboard_find("/assets/favicon.svg")->content_type, "image/svg+xml");
    static unsigned char buf[1 << 20];
    for (size_t i = 0; i < dash_assets_count; i++) {
        const dash_asset_t *a = &dash_assets[i];
        size_t n = strlen(a->etag);
        if (n != 34 || a->etag[0] != '"' || a->etag[33] != '"') fail_msg("%s: etag %s", a->path, a->etag);
        for (size_t k = 0; k < i; k++)
            if (strcmp(dash_assets[k].etag, a->etag) == 0 && dash_assets[k].len != 0)
                fail_msg("%s and %s share an etag", a->path, dash_assets[k].path);
        assert_true(a->len > 0);
        if (!a->gzip) continue;
        /* the gzip copy is the same bytes, smaller, with its own tag */
        size_t got = 0;
        if (a->len > sizeof buf || gunzip(a->gzip, a->gzip_len, buf, sizeof buf, &got) < 0)
            fail_msg("%s: gzip copy does not inflate", a->path);
        assert_int_equal(got, a->len);
        assert_memory_equal(buf, a->data, a->len);
        assert_true(a->gzip_len < a->len);
        assert_non_null(a->gzip_etag);
        assert_string_not_equal(a->gzip_etag, a->etag);
    }
    /* the page references no inline script or style (a strict CSP would block them) */
    const dash_asset_t *page = dashboard_find("/");
    char *html = strndup((const char *)page->data, page->len);
    assert_non_null(html);
    assert_null(strstr(html, "<style"));
    assert_null(strstr(html, " style="));
    for (char *p = strstr(html, "<script"); p; p = strstr(p + 1, "<script")) {
        char *end = strchr(p, '>');
        assert_non_null(end);
        *end = '\0';
        if (!strstr(p, " src=")) fail_msg("inline script: %s", p);
        *end = '>';
    }
    free(html);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_matches),
        cmocka_unit_test(test_accepts_gzip),
        cmocka_unit_test(test_csp),
        cmocka_unit_test(test_embedded_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
