/* auth: building the policy from token sections, constant-time lookup, scopes, topic
 * globs (coverage of one glob by another), Bearer parsing, origins and Host checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth.h"
#include "config.h"
#include "log.h"

static char tmpdir[] = "/tmp/mc-test-auth-XXXXXX";

static int load_text(config_t *c, const char *text, char err[CFG_ERR_LEN]) {
    char path[256];
    snprintf(path, sizeof path, "%s/m.ini", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    config_defaults(c);
    return config_load_file(c, path, err);
}

static auth_t *build(const char *text, char err[AUTH_ERR_LEN]) {
    config_t *c = calloc(1, sizeof *c);
    char cerr[CFG_ERR_LEN];
    assert_int_equal(load_text(c, text, cerr), 0);
    auth_t *a = NULL;
    int rc = auth_build(c, &a, err);
    config_free(c);
    free(c);
    return rc == 0 ? a : NULL;
}

static void test_build_and_find(void **state) {
    (void)state;
    char err[AUTH_ERR_LEN];
    char path[256];
    snprintf(path, sizeof path, "%s/s.txt", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("from-a-file-secret\r\n", f);
    fclose(f);
    chmod(path, 0600);
    auth_t *a = build("[token.r]\nsecret = read-secret-xyz-123\nscopes = read\n"
                      "topics = metrics, telemetry.*\n"
                      "[token.f]\nsecret_file = s.txt\nscopes = ingest,publish\n"
                      "[token.adm]\nsecret = admin-secret-xyz-12\nscopes = admin\n",
                      err);
    if (!a) fail_msg("%s", err);
    assert_true(auth_enabled(a));
    assert_int_equal(a->ntokens, 3);
    const auth_token_t *r = auth_find(a, "read-secret-xyz-123", 19);
    assert_non_null(r);
    assert_string_equal(r->name, "r");
    assert_null(auth_find(a, "read-secret-xyz-12", 18));
    assert_null(auth_find(a, "read-secret-xyz-1234", 20));
    assert_null(auth_find(a, "", 0));
    const auth_token_t *ft = auth_find(a, "from-a-file-secret", 18);
    assert_non_null(ft);
    assert_string_equal(ft->name, "f");
    assert_true(auth_token_allows(r, AUTH_READ));
    assert_false(auth_token_allows(r, AUTH_INGEST));
    assert_true(auth_token_allows(ft, AUTH_INGEST));
    assert_true(auth_token_allows(ft, AUTH_PUBLISH));
    assert_false(auth_token_allows(ft, AUTH_READ));
    const auth_token_t *adm = auth_find(a, "admin-secret-xyz-12", 19);
    assert_true(auth_token_allows(adm, AUTH_READ | AUTH_INGEST | AUTH_PUBLISH));
    assert_true(auth_token_allows(NULL, AUTH_NONE));
    assert_false(auth_token_allows(NULL, AUTH_READ));
    assert_true(auth_token_topic(r, "metrics"));
    assert_true(auth_token_topic(r, "telemetry.connection_*"));
    assert_false(auth_token_topic(r, "sources"));
    assert_false(auth_token_topic(r, "events"));
    assert_true(auth_token_topic(adm, "events")); /* no topics list: everything */
    char names[64];
    assert_string_equal(auth_scope_names(ft->scopes, names, sizeof names), "ingest,publish");

    /* a reload: the same secret is found in another policy */
    auth_t *b = build("[token.renamed]\nsecret = read-secret-xyz-123\nscopes = read\n", err);
    assert_non_null(b);
    const auth_token_t *same = auth_find_same(b, r);
    assert_non_null(same);
    assert_string_equal(same->name, "renamed");
    assert_null(auth_find_same(b, adm));
    assert_false(auth_equal(a, b));
    auth_t *c = build("[token.renamed]\nsecret = read-secret-xyz-123\nscopes = read\n", err);
    assert_true(auth_equal(b, c));
    auth_unref(c);
    auth_unref(b);
    auth_unref(auth_ref(a));
    auth_unref(a);
}

static void test_build_errors(void **state) {
    (void)state;
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[token.a]\nsecret = x123456789\nsecret_file = f\nscopes = read\n", "not both"},
        {"[token.a]\nscopes = read\n", "needs secret"},
        {"[token.a]\nsecret = x123456789\n", "needs scopes"},
        {"[token.a]\nsecret = x123456789\nscopes = write\n", "\"write\" is not a scope"},
        {"[token.a]\nsecret = x123456789\nscopes = ,\n", "empty"},
        {"[token.a]\nsecret = x123456789\nscopes = read\nextra = 1\n", "unknown key"},
        {"[token.a]\nsecret = x123456789\nscopes = read\ntopics = a b\n", "not a topic glob"},
        {"[token.a]\nsecret = x123456789\nscopes = read\n[token.b]\nsecret = x123456789\n"
         "scopes = read\n",
         "same secret as [token.a]"},
        {"[token.a]\nsecret_file = /nonexistent/secret\nscopes = read\n", "cannot read"},
        {"[token.a]\nsecret_file = /tmp\nscopes = read\n", "not a regular file"},
        {"[token.a]\nsecret = caf\xc3\xa9-secret\nscopes = read\n", "printable"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[AUTH_ERR_LEN] = "";
        auth_t *a = build(bad[i].text, err);
        if (a) fail_msg("case %zu accepted", i);
        if (!strstr(err, bad[i].want)) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].want);
        if (!strstr(err, "[token.")) fail_msg("case %zu: \"%s\" names no section", i, err);
        if (strstr(err, "x123456789")) fail_msg("case %zu: the secret is in \"%s\"", i, err);
    }
}

/* A secret_file that is a FIFO is refused at once: opening it without O_NONBLOCK waited
 * for a writer (for ever, and on SIGHUP on the hub thread). */
static void test_secret_fifo_refused(void **state) {
    (void)state;
    char fifo[256], text[512];
    snprintf(fifo, sizeof fifo, "%s/secret.fifo", tmpdir);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(text, sizeof text, "[token.a]\nsecret_file = %s\nscopes = read\n", fifo);
    char err[AUTH_ERR_LEN] = "";
    auth_t *a = build(text, err);
    unlink(fifo);
    assert_null(a);
    if (!strstr(err, "not a regular file")) fail_msg("\"%s\"", err);
}

static void test_open_policy(void **state) {
    (void)state;
    char err[AUTH_ERR_LEN];
    auth_t *a = build("", err);
    assert_non_null(a);
    assert_false(auth_enabled(a));
    assert_true(a->guard_host); /* loopback (the default listen address) and no tokens */
    assert_null(auth_find(a, "x", 1));
    auth_unref(a);
}

static void test_glob_covers(void **state) {
    (void)state;
    static const struct {
        const char *allowed, *pattern;
        bool covers;
    } cases[] = {
        {"metrics", "metrics", true},
        {"metrics", "metric", false},
        {"metrics", "metrics2", false},
        {"*", "anything.*", true},
        {"*", "*", true},
        {"telemetry.*", "telemetry.x", true},
        {"telemetry.*", "telemetry.*", true},
        {"telemetry.*", "telemetry.connection_*", true},
        {"telemetry.*", "telemetry.?", true},
        {"telemetry.*", "t*", false},
        {"telemetry.*", "*", false},
        {"telemetry.*", "telemetry*", false},
        {"?x", "*x", false}, /* *x matches abcx, which ?x does not */
        {"?x", "?x", true},
        {"?x", "ax", true},
        {"a?c", "a*c", false},
        {"*.created", "tasks.created", true},
        {"*.created", "*.created", true},
        {"*.created", "tasks.*", false},
        {"a*b*c", "a*b*c", true},
        {"a*c", "a*b*c", true},
        {"a*b*c", "a*c", false},
        {"", "", true},
        {"", "x", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (auth_glob_covers(cases[i].allowed, cases[i].pattern) != cases[i].covers)
            fail_msg("covers(%s, %s) should be %d", cases[i].allowed, cases[i].pattern,
                     cases[i].covers);
    char big[200];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_false(auth_glob_covers("*", big)); /* over the length bound: refused */
}

static void test_bearer(void **state) {
    (void)state;
    const char *t;
    size_t n;
    assert_int_equal(auth_parse_bearer("Bearer abc", &t, &n), 1);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    assert_int_equal(auth_parse_bearer("bearer   abc  ", &t, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(auth_parse_bearer("BEARER\tx", &t, &n), 1);
    assert_int_equal(auth_parse_bearer("Bearer", &t, &n), 0);
    assert_int_equal(auth_parse_bearer("Bearer ", &t, &n), 0);
    assert_int_equal(auth_parse_bearer("Bearerabc", &t, &n), 0);
    assert_int_equal(auth_parse_bearer("Bearer a b", &t, &n), 0);
    assert_int_equal(auth_parse_bearer("Basic abc", &t, &n), 0);
    assert_int_equal(auth_parse_bearer(NULL, &t, &n), 0);
}

static void test_origins(void **state) {
    (void)state;
    char err[200];
    assert_int_equal(auth_origins_validate("", err, sizeof err), 0);
    assert_int_equal(auth_origins_validate("*", err, sizeof err), 0);
    assert_int_equal(auth_origins_validate("https://a.example, http://[::1]:8080 ,http://b:1", err,
                                           sizeof err),
                     0);
    static const char *const bad[] = {"a.example", "ftp://a", "https://", "https://a/",
                                      "https://a:0", "https://a:70000", "https://a:x",
                                      "https://a b", "http://a:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (auth_origins_validate(bad[i], err, sizeof err) == 0) fail_msg("%s accepted", bad[i]);

    char aerr[AUTH_ERR_LEN];
    auth_t *a = build("[server]\nallowed_origins = https://Ops.Example.com, http://d.example:8080\n",
                      aerr);
    assert_non_null(a);
    assert_true(auth_origin_listed(a, "https://ops.example.com"));
    assert_true(auth_origin_listed(a, "https://ops.example.com:443"));
    assert_true(auth_origin_listed(a, "HTTPS://OPS.EXAMPLE.COM"));
    assert_false(auth_origin_listed(a, "http://ops.example.com"));
    assert_false(auth_origin_listed(a, "https://ops.example.com:8443"));
    assert_false(auth_origin_listed(a, "https://ops.example.com.evil"));
    assert_true(auth_origin_listed(a, "http://d.example:8080"));
    assert_false(auth_origin_listed(a, "http://d.example"));
    assert_false(auth_origin_listed(a, "null"));
    assert_true(auth_host_allowed(a, "ops.example.com"));
    assert_true(auth_host_allowed(a, "127.0.0.1:9750"));
    assert_true(auth_host_allowed(a, "127.1.2.3"));
    assert_true(auth_host_allowed(a, "localhost:1"));
    assert_true(auth_host_allowed(a, "[::1]:9750"));
    assert_true(auth_host_allowed(a, NULL));
    assert_false(auth_host_allowed(a, "evil.example:9750"));
    assert_false(auth_host_allowed(a, "127.0.0.1.evil.example"));
    assert_false(auth_host_allowed(a, "128.0.0.1"));
    auth_unref(a);
    a = build("[server]\nallowed_origins = *\n", aerr);
    assert_true(auth_origin_listed(a, "https://anything.example"));
    auth_unref(a);

    assert_true(auth_origin_same("http://127.0.0.1:9750", "127.0.0.1:9750"));
    assert_true(auth_origin_same("https://hub.example", "hub.example"));
    assert_true(auth_origin_same("https://hub.example", "HUB.example:443"));
    assert_true(auth_origin_same("http://[::1]:9750", "[::1]:9750"));
    assert_false(auth_origin_same("http://127.0.0.1:9751", "127.0.0.1:9750"));
    assert_false(auth_origin_same("http://evil.example:9750", "127.0.0.1:9750"));
    assert_false(auth_origin_same("http://127.0.0.1", "127.0.0.1:9750"));
    assert_false(auth_origin_same("null", "127.0.0.1:9750"));
    assert_false(auth_origin_same("http://a", NULL));
}

static int setup(void **state) {
    (void)state;
    log_setup(LOG_ERROR, STDERR_FILENO);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_find), cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_secret_fifo_refused),
        cmocka_unit_test(test_open_policy),    cmocka_unit_test(test_glob_covers),
        cmocka_unit_test(test_bearer),         cmocka_unit_test(test_origins),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
