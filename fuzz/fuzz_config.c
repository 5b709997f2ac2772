/* libFuzzer target for the configuration file: the input as an INI file through
 * config_load_text() (inih's file reader, the option table's value parsers, the collected
 * [alert.*] and [token.*] sections), then what the daemon does with a file that loaded:
 * the alert rules (alert_rules_parse: selectors, operators, thresholds, durations,
 * webhooks) and the access policy (auth_build: secrets, scopes, topic globs, origins).
 *
 * Checked: every failure comes with a one-line message; a file the daemon accepts (its
 * rules and tokens too) dumps (config_dump_ini, what --check-config prints) into a text
 * that loads again and dumps the same, so the printed effective configuration is itself a valid configuration.
 * ASan/UBSan/LSan do the rest. secret_file paths resolve under a directory that does not
 * exist. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "auth.h"
#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char NAME[] = "/nonexistent-fuzz-dir/metricastd.conf";

static void one_line(const char *err, size_t cap) {
    assert(memchr(err, '\0', cap));
    assert(err[0] != '\0');
    assert(!strchr(err, '\n'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool quiet;
    if (!quiet) log_setup(LOG_ERROR + 1, 2), quiet = true;
    config_t c;
    char err[CFG_ERR_LEN];
    config_defaults(&c);
    err[0] = '\0';
    int rc = config_load_text(&c, (const char *)data, size, NAME, err);
    if (rc != 0) {
        assert(rc == -EINVAL || rc == -ENOMEM);
        one_line(err, sizeof err);
        config_free(&c);
        return 0;
    }

    bool valid = true; /* what --check-config accepts (and only then prints) */
    alert_ruleset_t rs = {0};
    char aerr[ALERT_ERR_LEN] = "";
    if (alert_rules_parse(&c, &rs, aerr) == 0) {
        size_t nalert = 0;
        for (size_t i = 0; i < c.nsections; i++) nalert += strcmp(c.sections[i].kind, "alert") == 0;
        assert(rs.n == nalert);
        alert_ruleset_free(&rs);
    } else {
        one_line(aerr, sizeof aerr);
        valid = false;
    }
    auth_t *a = NULL;
    char autherr[AUTH_ERR_LEN] = "";
    if (auth_build(&c, &a, autherr) == 0) {
        assert(a);
        auth_unref(a);
    } else {
        one_line(autherr, sizeof autherr);
        valid = false;
    }
    if (!valid) { /* a file the daemon refuses has no effective configuration to print */
        config_free(&c);
        return 0;
    }

    /* --check-config's output is a configuration that means the same */
    char *dump = config_dump_ini(&c);
    assert(dump);
    config_t d;
    config_defaults(&d);
    rc = config_load_text(&d, dump, strlen(dump), NAME, err);
    if (rc != 0 && strstr(err, "longer than")) {
        /* "k=v" near the line limit is dumped as "k = v": past it (a limit of the
         * format, refused by name rather than misread) */
        free(dump);
        config_free(&d);
        config_free(&c);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "the dump does not load: %s\n%s\n", err, dump);
        abort();
    }
    char *again = config_dump_ini(&d);
    assert(again);
    if (strcmp(dump, again) != 0) {
        fprintf(stderr, "the dump of the dump differs:\n%s\n----\n%s\n", dump, again);
        abort();
    }
    free(again);
    free(dump);
    config_free(&d);
    config_free(&c);
    return 0;
}
