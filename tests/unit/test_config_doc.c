/* config_doc: the committed docs/CONFIG.md, man/metricastd.8 and examples/metricastd.conf
 * are exactly what tools/gen_config_doc.c renders from the option table now; the example
 * loads; --check-config's dump lists every option, masks secrets and loads back to the
 * same configuration.
 *
 * When this fails after an option change: run `make config-doc` and commit the result. */
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
#include "config_doc.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must name the source tree (set by the top-level CMakeLists.txt)"
#endif

static char *slurp(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", MC_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    if (s) s[len] = '\0';
    fclose(f);
    return s;
}

/* Compares and, on a difference, says where and what to do. */
static void assert_same(const char *rel, const char *committed, const char *now) {
    if (!committed) {
        print_error("%s is missing: run `make config-doc`\n", rel);
        fail();
    }
    assert_non_null(now);
    if (strcmp(committed, now) == 0) return;
    int line = 1;
    const char *a = committed, *b = now;
    while (*a && *a == *b) {
        if (*a == '\n') line++;
        a++;
        b++;
    }
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    print_error("%s differs from the option table at line %d:\n  committed: %.*s\n  "
                "generated: %.*s\n%s is out of date: run `make config-doc` and commit it.\n",
                rel, line, ea ? (int)(ea - a) : (int)strlen(a), a,
                eb ? (int)(eb - b) : (int)strlen(b), b, rel);
    fail();
}

static void test_config_md_current(void **state) {
    (void)state;
    char *committed = slurp("docs/CONFIG.md"), *now = config_doc_markdown();
    assert_same("docs/CONFIG.md", committed, now);
    free(committed);
    free(now);
}

static void test_man_page_current(void **state) {
    (void)state;
    char *tmpl = slurp("man/metricastd.8.in");
    assert_non_null(tmpl);
    char *committed = slurp("man/metricastd.8"), *now = config_doc_man(tmpl);
    assert_same("man/metricastd.8", committed, now);
    free(tmpl);
    free(committed);
    free(now);
}

static void test_example_current(void **state) {
    (void)state;
    char *committed = slurp("examples/metricastd.conf"), *now = config_doc_example();
    assert_same("examples/metricastd.conf", committed, now);
    free(committed);
    free(now);
}

/* every option, by flag, in each rendered document */
static void test_every_option_documented(void **state) {
    (void)state;
    char *md = config_doc_markdown(), *man = config_doc_man("@OPTIONS@\n"),
         *ex = config_doc_example();
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    for (size_t i = 0; i < n; i++) {
        char flag[128], rflag[256], key[128];
        snprintf(flag, sizeof flag, "`--%s", o[i].flag);
        size_t k = 0;
        for (const char *p = o[i].flag; *p && k + 3 < sizeof rflag; p++) {
            if (*p == '-') rflag[k++] = '\\';
            rflag[k++] = *p;
        }
        rflag[k] = '\0';
        snprintf(key, sizeof key, "%s =", o[i].key);
        if (!strstr(md, flag) || !strstr(man, rflag) || !strstr(ex, key)) {
            print_error("option --%s missing from a generated document\n", o[i].flag);
            fail();
        }
    }
    free(md);
    free(man);
    free(ex);
}

static char *write_tmp(const char *text) {
    char *path = strdup("/tmp/mc-config-doc-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void test_example_loads(void **state) {
    (void)state;
    char *ex = config_doc_example();
    char *path = write_tmp(ex);
    config_t *c = calloc(1, sizeof *c);
    char err[CFG_ERR_LEN] = "";
    config_defaults(c);
    int rc = config_load_file(c, path, err);
    if (rc) print_error("example does not load: %s\n", err);
    assert_int_equal(rc, 0);
    unlink(path);
    free(path);
    free(ex);
    free(c);
}

/* the dump lists every option and loads back to the same values */
static void test_dump_round_trip(void **state) {
    (void)state;
    config_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    char err[CFG_ERR_LEN] = "";
    char *argv[] = {"metricastd", "--tick", "250ms", "--ws-queue-bytes", "3m",
                    "--statsd", "off", "--listen", "[::1]:0", "--log-level", "warn",
                    "--http-idle-timeout", "90", NULL};
    cfg_action_t act;
    assert_int_equal(config_load(a, 13, argv, NULL, &act, err), 0);
    char *ini = config_dump_ini(a);
    assert_non_null(ini);
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    for (size_t i = 0; i < n; i++) {
        char want[256];
        snprintf(want, sizeof want, "\n%s =", o[i].key);
        assert_non_null(strstr(ini, want));
    }
    assert_non_null(strstr(ini, "tick = 250ms"));
    assert_non_null(strstr(ini, "queue_bytes = 3m"));
    char *path = write_tmp(ini);
    config_defaults(b);
    int rc = config_load_file(b, path, err);
    if (rc) print_error("dump does not load back: %s\n", err);
    assert_int_equal(rc, 0);
    char va[1100], vb[1100];
    for (size_t i = 0; i < n; i++) {
        config_value_str(a, &o[i], false, va, sizeof va);
        config_value_str(b, &o[i], false, vb, sizeof vb);
        assert_string_equal(va, vb);
    }
    unlink(path);
    free(path);
    free(ini);
    free(a);
    free(b);
}

static void test_secrets_masked(void **state) {
    (void)state;
    cfg_opt_t tok = {"auth", "admin_token", "admin-token", "TOKEN", CFG_T_PATH, 0, "", 0, 0, ""};
    cfg_opt_t plain = {"server", "listen", "listen", NULL, CFG_T_PATH, 0, "", 0, 0, ""};
    cfg_opt_t sec = {"x", "client_secret", "client-secret", NULL, CFG_T_PATH, 0, "", 0, 0, ""};
    assert_true(config_is_secret(&tok));
    assert_true(config_is_secret(&sec));
    assert_false(config_is_secret(&plain));
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    config_t *c = calloc(1, sizeof *c);
    config_defaults(c);
    char out[1100], err[CFG_ERR_LEN];
    for (size_t i = 0; i < n; i++) {
        if (o[i].type != CFG_T_NATS_URL) continue;
        assert_int_equal(config_set(c, &o[i], "nats://alice:hunter2@nats.example:4222", "t", err),
                         0);
        config_value_str(c, &o[i], true, out, sizeof out);
        assert_string_equal(out, "nats://***@nats.example:4222");
        config_value_str(c, &o[i], false, out, sizeof out);
        assert_string_equal(out, "nats://alice:hunter2@nats.example:4222");
        char *ini = config_dump_ini(c);
        assert_null(strstr(ini, "hunter2"));
        free(ini);
    }
    free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_md_current),    cmocka_unit_test(test_man_page_current),
        cmocka_unit_test(test_example_current),      cmocka_unit_test(test_every_option_documented),
        cmocka_unit_test(test_example_loads),        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_secrets_masked),
    };
    return cmocka_run_group_tests_name("config_doc", tests, NULL, NULL);
}
