/* config: value parsers, precedence file < env < flags, and every error names its setting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static void test_seconds(void **state) {
    (void)state;
    static const struct {
        const char *in;
        double want;
        int ok;
    } cases[] = {
        {"1", 1, 1},      {"0.01", 0.01, 1}, {"500ms", 0.5, 1}, {"10s", 10, 1},
        {"2m", 120, 1},   {"1h", 3600, 1},   {"1d", 86400, 1},  {"", 0, 0},
        {"abc", 0, 0},    {"10x", 0, 0},     {"-1", 0, 0},      {"nan", 0, 0},
        {"1e400", 0, 0},  {"5 s", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = -1;
        int rc = config_parse_seconds(cases[i].in, &v);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_true(v > cases[i].want - 1e-9 && v < cases[i].want + 1e-9);
        } else {
            assert_int_not_equal(rc, 0);
        }
    }
}

static void test_size(void **state) {
    (void)state;
    size_t v;
    assert_int_equal(config_parse_size("4096", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(config_parse_size("64k", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(config_parse_size("4M", &v), 0);
    assert_int_equal(v, 4u << 20);
    assert_int_equal(config_parse_size("1KiB", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_not_equal(config_parse_size("", &v), 0);
    assert_int_not_equal(config_parse_size("-1", &v), 0);
    assert_int_not_equal(config_parse_size("12q", &v), 0);
    assert_int_not_equal(config_parse_size("99999999999999999999999", &v), 0);
}

static void test_addr(void **state) {
    (void)state;
    cfg_addr_t a;
    char s[80];
    assert_int_equal(config_parse_addr("127.0.0.1:9750", &a), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 9750);
    assert_int_equal(config_parse_addr("[::1]:8125", &a), 0);
    assert_string_equal(a.host, "::1");
    assert_string_equal(config_addr_str(&a, s, sizeof s), "[::1]:8125");
    assert_int_equal(config_parse_addr("localhost:1", &a), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(config_parse_addr("0.0.0.0:0", &a), 0);
    assert_int_equal(config_parse_addr("127.0.0.1:99999", &a), -ERANGE);
    assert_int_equal(config_parse_addr("127.0.0.1:", &a), -ERANGE);
    assert_int_equal(config_parse_addr("127.0.0.1:12ab", &a), -ERANGE);
    assert_int_equal(config_parse_addr("example.com:80", &a), -EINVAL);
    assert_int_equal(config_parse_addr("9750", &a), -EINVAL);
}

static void test_defaults_match_spec(void **state) {
    (void)state;
    config_t c;
    config_defaults(&c);
    assert_string_equal(c.listen.host, "127.0.0.1");
    assert_int_equal(c.listen.port, 9750);
    assert_string_equal(c.statsd.host, "127.0.0.1");
    assert_int_equal(c.statsd.port, 8125);
    assert_string_equal(c.data_dir, "./metricast-data");
    assert_true(c.tick == 1.0);
    assert_true(c.aggregate_every == 30.0);
    assert_false(c.demo);
    assert_string_equal(c.nats_url, "");
}

/* Every option's default must itself pass validation: the table cannot carry a bad one. */
static void test_every_default_valid(void **state) {
    (void)state;
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    config_t c;
    char err[CFG_ERR_LEN];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(config_set(&c, &o[i], o[i].def, "default", err), 0);
        assert_non_null(o[i].help);
    }
}

static char *write_tmp(const char *text) {
    static char path[64];
    strcpy(path, "/tmp/mc-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load(config_t *c, const char **args, char *const *env, char *err) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"metricastd";
    for (; *args; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    cfg_action_t act;
    return config_load(c, argc, argv, env, &act, err);
}

static void test_precedence(void **state) {
    (void)state;
    char *path = write_tmp("[stream]\ntick = 5 ; inline comment\n[server]\nthreads = 3\n"
                           "[store]\naggregate_every = 45s\n");
    char cfgarg[128];
    snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);
    config_t c;
    char err[CFG_ERR_LEN] = "";
    const char *args1[] = {cfgarg, NULL};
    char *env0[] = {NULL};
    assert_int_equal(load(&c, args1, env0, err), 0);
    assert_true(c.tick == 5.0);
    assert_int_equal(c.threads, 3);
    assert_true(c.aggregate_every == 45.0);

    char *env1[] = {(char *)"METRICAST_TICK=2", (char *)"METRICAST_THREADS=4", NULL};
    assert_int_equal(load(&c, args1, env1, err), 0);
    assert_true(c.tick == 2.0); /* env beats file */
    assert_int_equal(c.threads, 4);

    const char *args2[] = {cfgarg, "--tick", "0.25", "--threads=1", NULL};
    assert_int_equal(load(&c, args2, env1, err), 0);
    assert_true(c.tick == 0.25); /* flag beats env */
    assert_int_equal(c.threads, 1);
    assert_true(c.aggregate_every == 45.0); /* untouched layers stay */

    /* a bad value at a lower layer still fails: every layer is validated */
    char *env_bad[] = {(char *)"METRICAST_TICK=0", NULL};
    const char *args3[] = {"--tick", "1", NULL};
    assert_int_not_equal(load(&c, args3, env_bad, err), 0);
    assert_non_null(strstr(err, "METRICAST_TICK"));

    /* METRICAST_CONFIG names the file when --config is absent */
    char envcfg[128];
    snprintf(envcfg, sizeof envcfg, "METRICAST_CONFIG=%s", path);
    char *env2[] = {envcfg, NULL};
    const char *none[] = {NULL};
    assert_int_equal(load(&c, none, env2, err), 0);
    assert_true(c.tick == 5.0);
    unlink(path);
}

static void expect_error(const char *file_text, const char **args, const char *needle) {
    config_t c;
    char err[CFG_ERR_LEN] = "";
    char *argv_buf[16];
    const char **a = args;
    char cfgarg[128];
    char *path = NULL;
    int i = 0;
    if (file_text) {
        path = write_tmp(file_text);
        snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);
        argv_buf[i++] = cfgarg;
    }
    for (; a && *a; a++) argv_buf[i++] = (char *)*a;
    argv_buf[i] = NULL;
    char *env[] = {NULL};
    int rc = load(&c, (const char **)argv_buf, env, err);
    if (path) unlink(path);
    if (rc == 0) fail_msg("expected an error containing \"%s\"", needle);
    if (!strstr(err, needle)) fail_msg("error \"%s\" does not name \"%s\"", err, needle);
}

static void test_errors_name_the_setting(void **state) {
    (void)state;
    expect_error("[nosuch]\nkey = 1\n", NULL, "[nosuch]");
    expect_error("[stream]\nspeed = 1\n", NULL, "speed");
    expect_error("[stream]\ntick = 0\n", NULL, "tick");
    expect_error("[http]\nmax_body_bytes = lots\n", NULL, "max_body_bytes");
    expect_error("this is not ini\n", NULL, "line 1");
    const char *a1[] = {"--tick", "abc", NULL};
    expect_error(NULL, a1, "--tick");
    const char *a2[] = {"--listen", "127.0.0.1:99999", NULL};
    expect_error(NULL, a2, "--listen");
    const char *a3[] = {"--statsd", "nowhere", NULL};
    expect_error(NULL, a3, "--statsd");
    const char *a4[] = {"--bogus", NULL};
    expect_error(NULL, a4, "--bogus");
    const char *a5[] = {"--nats", "http://x", NULL};
    expect_error(NULL, a5, "--nats");
    const char *a6[] = {"--tick", NULL};
    expect_error(NULL, a6, "--tick");
    const char *a7[] = {"--config", "/nonexistent/metricast.ini", NULL};
    expect_error(NULL, a7, "/nonexistent/metricast.ini");
    const char *a8[] = {"stray", NULL};
    expect_error(NULL, a8, "stray");
    const char *a9[] = {"--threads", "65", NULL};
    expect_error(NULL, a9, "--threads");
    const char *a10[] = {"--log-level", "loud", NULL};
    expect_error(NULL, a10, "--log-level");
}

static void test_flags_misc(void **state) {
    (void)state;
    config_t c;
    char err[CFG_ERR_LEN];
    const char *a[] = {"--demo", "--statsd", "off", "--nats", "nats://127.0.0.1:4222", NULL};
    char *env[] = {NULL};
    assert_int_equal(load(&c, a, env, err), 0);
    assert_true(c.demo);
    assert_true(c.statsd.off);
    assert_string_equal(c.nats_url, "nats://127.0.0.1:4222");
    char *argv[] = {(char *)"metricastd", (char *)"--tick", (char *)"x", (char *)"--help", NULL};
    cfg_action_t act;
    assert_int_equal(config_load(&c, 4, argv, env, &act, err), 0);
    assert_int_equal(act, CFG_HELP); /* --help wins over anything malformed */
}

/* --host-metrics takes on|off as its own argument (a boolean with a metavar), unlike the
 * bare --demo; the roots are paths; the test hook's path may be empty (its default). */
static void test_host_flags(void **state) {
    (void)state;
    config_t c;
    char err[CFG_ERR_LEN];
    char *env[] = {NULL};
    const char *a0[] = {NULL};
    assert_int_equal(load(&c, a0, env, err), 0);
    assert_true(c.host_metrics);
    assert_string_equal(c.host_proc, "/proc");
    assert_string_equal(c.host_sys, "/sys");
    assert_string_equal(c.debug_host_statfs_stall, "");
    const char *a1[] = {"--host-metrics", "off", "--demo", "--host-proc", "/host/proc", NULL};
    assert_int_equal(load(&c, a1, env, err), 0);
    assert_false(c.host_metrics);
    assert_true(c.demo);
    assert_string_equal(c.host_proc, "/host/proc");
    const char *a2[] = {"--host-metrics=on", NULL};
    char *env2[] = {(char *)"METRICAST_HOST_METRICS=off", (char *)"METRICAST_HOST_SYS=/s", NULL};
    assert_int_equal(load(&c, a2, env2, err), 0);
    assert_true(c.host_metrics); /* the flag over the environment */
    assert_string_equal(c.host_sys, "/s");
    const char *a3[] = {"--host-metrics", NULL};
    expect_error(NULL, a3, "--host-metrics: missing on|off");
    const char *a4[] = {"--host-metrics", "sometimes", NULL};
    expect_error(NULL, a4, "--host-metrics");
    const char *a5[] = {"--host-proc", "", NULL};
    expect_error(NULL, a5, "--host-proc: empty path");
    char *path = write_tmp("[host]\nmetrics = off\nproc = /x/proc\n");
    char cfgarg[128];
    snprintf(cfgarg, sizeof cfgarg, "%s", path);
    const char *a6[] = {"--config", cfgarg, NULL};
    assert_int_equal(load(&c, a6, env, err), 0);
    assert_false(c.host_metrics);
    assert_string_equal(c.host_proc, "/x/proc");
    config_free(&c);
    unlink(path);
}

/* [alert.x] and [token.x] sections are collected verbatim for their owners; unknown kinds,
 * bad names and repeated keys are refused here. */
static void test_named_sections(void **state) {
    (void)state;
    char *path = write_tmp("[alert.cpu_hot]\nmetric = cpu_usage\nop = >\nthreshold = 90\n"
                           "[token.dash]\nsecret = s3cr3t\nscopes = read\n"
                           "[stream]\ntick = 2\n[alert.cpu_hot]\nfor = 10s\n");
    char cfgarg[128];
    snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);
    config_t c;
    char err[CFG_ERR_LEN];
    char *env[] = {NULL};
    const char *a[] = {cfgarg, NULL};
    assert_int_equal(load(&c, a, env, err), 0);
    assert_true(c.tick == 2.0);
    assert_int_equal(c.nsections, 2);
    assert_string_equal(c.sections[0].kind, "alert");
    assert_string_equal(c.sections[0].name, "cpu_hot");
    assert_int_equal(c.sections[0].nkv, 4); /* the reopened section continues the first */
    assert_string_equal(config_section_get(&c.sections[0], "op"), ">");
    assert_string_equal(config_section_get(&c.sections[0], "for"), "10s");
    assert_null(config_section_get(&c.sections[0], "clear"));
    assert_string_equal(c.sections[1].kind, "token");
    assert_string_equal(config_section_get(&c.sections[1], "secret"), "s3cr3t");
    char *ini = config_dump_ini(&c);
    assert_non_null(ini);
    assert_non_null(strstr(ini, "[alert.cpu_hot]\nmetric = cpu_usage\n"));
    assert_null(strstr(ini, "s3cr3t")); /* secrets masked */
    assert_non_null(strstr(ini, "secret = ********"));
    free(ini);
    config_free(&c);
    assert_int_equal(c.nsections, 0);
    unlink(path);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[alert.x]\nop = >\nop = <\n", "given twice"},
        {"[alert.]\nop = >\n", "section name"},
        {"[alert.a b]\nop = >\n", "section name"},
        {"[widget.x]\nk = v\n", "unknown section [widget.x]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_tmp(bad[i].text);
        snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);
        config_t d;
        assert_int_not_equal(load(&d, a, env, err), 0);
        if (!strstr(err, bad[i].want)) fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err,
                                                bad[i].want);
        config_free(&d);
        unlink(path);
    }
}

/* Found by fuzz_config, which checks that --check-config's dump is a configuration that
 * loads and dumps the same: a line ":x" or "= x" in a named section was kept as an empty
 * key, dumped as " = x" — which inih reads as a continuation of the key before ("given
 * twice"); and a value starting with ';' was dumped as "key = ;x", which reads back
 * empty (" ;" starts a comment). config_load_text is the file loader on a buffer. */
static void test_dump_loads_again(void **state) {
    (void)state;
    static const char *const empty_keys[] = {"[alert.a]\nmetric = m\n://= >\n",
                                             "[token.t]\n= x\n"};
    for (size_t i = 0; i < sizeof empty_keys / sizeof empty_keys[0]; i++) {
        config_t c;
        char err[CFG_ERR_LEN];
        config_defaults(&c);
        int rc = config_load_text(&c, empty_keys[i], strlen(empty_keys[i]), "t.conf", err);
        config_free(&c);
        assert_int_equal(rc, -EINVAL);
        if (!strstr(err, "no key")) fail_msg("case %zu: error \"%s\"", i, err);
    }
    /* 0208ms was 208 * 0.001, one ulp off 0.208: dumped as 0.208s, which dumped as 208ms;
     * 0.20799999999999998s is that same neighbour, written out */
    const char text[] = "[server]\nallowed_origins =\n[store]\ndata_dir =;semi\n"
                        "[ws]\nping_interval = 0208ms\nidle_timeout = 0.20799999999999998s\n"
                        "[alert.a]\nmetric =;x\nop = >\n";
    config_t c, d;
    char err[CFG_ERR_LEN];
    config_defaults(&c);
    assert_int_equal(config_load_text(&c, text, strlen(text), "t.conf", err), 0);
    assert_string_equal(c.data_dir, ";semi");
    assert_string_equal(config_section_get(&c.sections[0], "metric"), ";x");
    char *dump = config_dump_ini(&c);
    assert_non_null(dump);
    config_defaults(&d);
    if (config_load_text(&d, dump, strlen(dump), "dump.conf", err) != 0)
        fail_msg("the dump does not load: %s\n%s", err, dump);
    assert_string_equal(d.data_dir, ";semi");
    assert_true(c.ws_ping_interval == 0.208 && d.ws_ping_interval == 0.208);
    assert_string_equal(config_section_get(&d.sections[0], "metric"), ";x");
    char *again = config_dump_ini(&d);
    assert_non_null(again);
    assert_string_equal(again, dump);
    free(again);
    free(dump);
    config_free(&d);
    config_free(&c);
}

/* Found by fuzz_config: inih reads at most 199 bytes of a line and parses the rest as a
 * line of its own, so a long allowed_origins failed as an unknown key "6.example.com,
 * https" — or a long value's tail could be read as a key = value never written. Such a
 * line is now refused by number; a long comment is still only a comment. */
static void test_long_lines(void **state) {
    (void)state;
    char text[1024], err[CFG_ERR_LEN];
    int n = snprintf(text, sizeof text, "[server]\nlisten = 127.0.0.1:9751\n; %0250d\n"
                     "allowed_origins = ", 0);
    for (int i = 0; i < 12; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%shttps://d%02d.example.com",
                      i ? ", " : "", i);
    snprintf(text + n, sizeof text - (size_t)n, "\n[stream]\ntick = 2\n");
    config_t c;
    config_defaults(&c);
    assert_int_equal(config_load_text(&c, text, strlen(text), "long.conf", err), -EINVAL);
    config_free(&c);
    if (!strstr(err, "line 4: longer than 199 bytes")) fail_msg("error \"%s\"", err);
    /* the same file without that line loads, the long comment and all */
    char *cut = strstr(text, "allowed_origins");
    memmove(cut, strstr(cut, "\n") + 1, strlen(strstr(cut, "\n") + 1) + 1);
    config_defaults(&c);
    if (config_load_text(&c, text, strlen(text), "long.conf", err) != 0) fail_msg("%s", err);
    assert_int_equal(c.listen.port, 9751);
    assert_true(c.tick == 2.0);
    config_free(&c);
}

static void test_usage_lists_every_flag(void **state) {
    (void)state;
    char *u = config_usage("metricastd");
    assert_non_null(u);
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    for (size_t i = 0; i < n; i++) {
        char flag[96];
        snprintf(flag, sizeof flag, "--%s", o[i].flag);
        if (!strstr(u, flag)) fail_msg("--help lacks %s", flag);
    }
    assert_non_null(strstr(u, "--config"));
    assert_non_null(strstr(u, "--version"));
    free(u);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_defaults_match_spec),
        cmocka_unit_test(test_every_default_valid),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors_name_the_setting),
        cmocka_unit_test(test_flags_misc),
        cmocka_unit_test(test_host_flags),
        cmocka_unit_test(test_usage_lists_every_flag),
        cmocka_unit_test(test_named_sections),
        cmocka_unit_test(test_dump_loads_again),
        cmocka_unit_test(test_long_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
