/* event + eventlog: the Charter v1.0 envelope (event_prepare valid/invalid table, filled
 * defaults, supplied fields kept), event_type_valid, event_random6, the sealed WebSocket
 * frame, and the retained window of the event log. */
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

#include <jansson.h>
#include <math.h>
#include <regex.h>

#include "event.h"
#include "eventlog.h"

#define NOW 1703001234.5678 /* filled timestamp: 1703001234.567 */
#define NOW_MS "1703001234567"
static const char RND[6] = {'a', 'b', 'c', '1', '2', '3'};

static event_t *prep(const char *json, char err[EVENT_ERR_LEN]) {
    err[0] = '\0';
    return event_prepare(json, strlen(json), NOW, RND, err);
}

/* The envelope of e parsed back, with the exact key set checked. */
static json_t *envelope_of(const event_t *e) {
    assert_non_null(e->envelope);
    assert_int_equal(strlen(e->envelope), e->envelope_len);
    json_error_t jerr;
    json_t *root = json_loadb(e->envelope, e->envelope_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) fail_msg("envelope is not JSON (%s): %s", jerr.text, e->envelope);
    assert_true(json_is_object(root));
    static const char *const keys[] = {"id",        "type",    "source", "target",
                                       "timestamp", "payload", "meta"};
    assert_int_equal(json_object_size(root), 7);
    for (size_t i = 0; i < 7; i++)
        if (!json_object_get(root, keys[i])) fail_msg("envelope lacks %s: %s", keys[i], e->envelope);
    json_t *meta = json_object_get(root, "meta");
    assert_true(json_is_object(meta));
    assert_int_equal(json_object_size(meta), 2);
    json_t *cid = json_object_get(meta, "correlation_id");
    assert_non_null(cid);
    assert_true(json_is_null(cid) || json_is_string(cid));
    assert_string_equal(json_string_value(json_object_get(meta, "version")), "1.0");
    assert_true(json_is_object(json_object_get(root, "payload")));
    assert_true(json_is_number(json_object_get(root, "timestamp")));
    json_t *target = json_object_get(root, "target");
    assert_true(json_is_null(target) || json_is_string(target));
    assert_true(json_is_string(json_object_get(root, "source")));
    assert_string_equal(json_string_value(json_object_get(root, "type")), e->type);
    assert_string_equal(json_string_value(json_object_get(root, "id")), e->id);
    return root;
}

static void assert_id_shape(const char *id) {
    regex_t re;
    assert_int_equal(regcomp(&re, "^evt_[a-z0-9_]+_[0-9]+_[a-z0-9]{6}$", REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, id, 0, NULL, 0);
    regfree(&re);
    if (rc != 0) fail_msg("id %s does not match evt_<module>_<unix_ms>_<6 [a-z0-9]>", id);
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* ---- event_type_valid ------------------------------------------------------------------ */

static void test_type_valid(void **state) {
    (void)state;
    char longest[EVENT_TYPE_MAX + 1], too_long[EVENT_TYPE_MAX + 2];
    memset(longest, 'a', EVENT_TYPE_MAX);
    longest[EVENT_TYPE_MAX] = '\0';
    longest[10] = '.';
    memset(too_long, 'a', EVENT_TYPE_MAX + 1);
    too_long[EVENT_TYPE_MAX + 1] = '\0';
    too_long[10] = '.';
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"tasks.created", true},
        {"a.b", true},
        {"metrics.aggregation_completed", true},
        {"alert.cpu_high", true},
        {"mod_1.evt_2", true},
        {"0.9", true},
        {"_._", true},
        {"", false},
        {"tasks", false},
        {"tasks.", false},
        {".created", false},
        {".", false},
        {"tasks..created", false},
        {"a.b.c", false},
        {"Tasks.created", false},
        {"tasks.Created", false},
        {"tasks.cre-ated", false},
        {"tasks.created ", false},
        {" tasks.created", false},
        {"tasks.*", false},
        {"tasks.cr?ated", false},
        {"tasks/x.created", false},
        {"tasks.cr\xc3\xa9\xc3\xa9", false},
        {"tasks.created\n", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (event_type_valid(cases[i].s) != cases[i].ok)
            fail_msg("event_type_valid(\"%s\") should be %d", cases[i].s, cases[i].ok);
    }
    assert_true(event_type_valid(longest));
    assert_false(event_type_valid(too_long));
}

/* ---- event_random6 --------------------------------------------------------------------- */

static void test_random6_alphabet(void **state) {
    (void)state;
    uint64_t st = 0x9E3779B97F4A7C15ull;
    int seen[256] = {0};
    char prev[6] = {0};
    int same = 0;
    for (int i = 0; i < 5000; i++) {
        char out[7];
        out[6] = '\x7f'; /* must not be touched */
        event_random6(&st, out);
        assert_int_equal(out[6], '\x7f');
        for (int k = 0; k < 6; k++) {
            char c = out[k];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
                fail_msg("event_random6 produced 0x%02x", (unsigned char)c);
            seen[(unsigned char)c]++;
        }
        if (memcmp(prev, out, 6) == 0) same++;
        memcpy(prev, out, 6);
    }
    assert_int_equal(same, 0);
    /* the whole alphabet shows up, roughly evenly (30,000 draws: ~833 each) */
    for (const char *p = "abcdefghijklmnopqrstuvwxyz0123456789"; *p; p++) {
        if (seen[(unsigned char)*p] < 400 || seen[(unsigned char)*p] > 1300)
            fail_msg("character %c drawn %d times of 30000", *p, seen[(unsigned char)*p]);
    }
    /* two states give two sequences */
    uint64_t a = 1, b = 2;
    char ra[6], rb[6];
    event_random6(&a, ra);
    event_random6(&b, rb);
    assert_true(memcmp(ra, rb, 6) != 0);
}

/* ---- event_prepare: refusals ----------------------------------------------------------- */

static void test_prepare_invalid(void **state) {
    (void)state;
    static const char *const bad[] = {
        /* not an object / not JSON */
        "",
        "{",
        "[]",
        "[{\"type\":\"tasks.created\"}]",
        "\"tasks.created\"",
        "5",
        "null",
        "{\"type\":\"tasks.created\"} x",
        "{\"type\":\"tasks.created\",}",
        "{'type':'tasks.created'}",
        /* type */
        "{}",
        "{\"payload\":{}}",
        "{\"type\":null}",
        "{\"type\":5}",
        "{\"type\":[\"tasks.created\"]}",
        "{\"type\":\"\"}",
        "{\"type\":\"tasks\"}",
        "{\"type\":\"Tasks.created\"}",
        "{\"type\":\"tasks.created.now\"}",
        "{\"type\":\"tasks..created\"}",
        "{\"type\":\".created\"}",
        "{\"type\":\"tasks.\"}",
        "{\"type\":\"tasks.cre-ated\"}",
        "{\"type\":\"tasks.*\"}",
        "{\"type\":\"tasks.created \"}",
        /* unknown keys */
        "{\"type\":\"tasks.created\",\"extra\":1}",
        "{\"type\":\"tasks.created\",\"Type\":\"tasks.created\"}",
        "{\"type\":\"tasks.created\",\"data\":{}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":\"1.0\",\"trace\":\"x\"}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"correlation_id\":null,\"version\":\"1.0\",\"x\":null}}",
        /* payload */
        "{\"type\":\"tasks.created\",\"payload\":[]}",
        "{\"type\":\"tasks.created\",\"payload\":[1,2]}",
        "{\"type\":\"tasks.created\",\"payload\":\"x\"}",
        "{\"type\":\"tasks.created\",\"payload\":5}",
        "{\"type\":\"tasks.created\",\"payload\":true}",
        /* meta */
        "{\"type\":\"tasks.created\",\"meta\":[]}",
        "{\"type\":\"tasks.created\",\"meta\":\"1.0\"}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":\"2.0\"}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":\"1\"}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":\"1.0 \"}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":1.0}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"version\":null}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"correlation_id\":5}}",
        "{\"type\":\"tasks.created\",\"meta\":{\"correlation_id\":{}}}",
        /* id */
        "{\"type\":\"tasks.created\",\"id\":5}",
        "{\"type\":\"tasks.created\",\"id\":\"\"}",
        "{\"type\":\"tasks.created\",\"id\":\"abc\"}",
        "{\"type\":\"tasks.created\",\"id\":\"tasks_1703001234567_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_ABC123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_abc12\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_abc1234\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_abc-12\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_now_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks__abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt__1703001234567_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_Tasks_1703001234567_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_ta-sks_1703001234567_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_abc123 \"}",
        "{\"type\":\"tasks.created\",\"id\":\"xevt_tasks_1703001234567_abc123\"}",
        /* other field types */
        "{\"type\":\"tasks.created\",\"timestamp\":\"1703001234.567\"}",
        "{\"type\":\"tasks.created\",\"timestamp\":true}",
        "{\"type\":\"tasks.created\",\"source\":5}",
        "{\"type\":\"tasks.created\",\"target\":5}",
        "{\"type\":\"tasks.created\",\"target\":{}}",
        /* duplicate keys are ambiguous */
        "{\"type\":\"tasks.created\",\"type\":\"tasks.deleted\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[EVENT_ERR_LEN];
        memset(err, 0, sizeof err);
        event_t *e = prep(bad[i], err);
        if (e) {
            fail_msg("accepted %s as %s", bad[i], e->envelope);
        }
        if (!err[0]) fail_msg("no error text for %s", bad[i]);
        assert_true(strnlen(err, EVENT_ERR_LEN) < EVENT_ERR_LEN);
    }
}

static void test_prepare_too_large(void **state) {
    (void)state;
    size_t n = EVENT_MAX_BYTES + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    int h = snprintf(big, n + 1, "{\"type\":\"tasks.created\",\"payload\":{\"x\":\"");
    memset(big + h, 'a', n - (size_t)h - 3);
    memcpy(big + n - 3, "\"}}", 3);
    big[n] = '\0';
    char err[EVENT_ERR_LEN];
    err[0] = '\0';
    event_t *e = event_prepare(big, n, NOW, RND, err);
    assert_null(e);
    assert_true(err[0] != '\0');
    free(big);
}

/* ---- event_prepare: valid envelopes ---------------------------------------------------- */

static void test_prepare_valid_table(void **state) {
    (void)state;
    static const char *const good[] = {
        "{\"type\":\"tasks.created\"}",
        "{\"type\":\"tasks.created\",\"payload\":{}}",
        "{\"type\":\"tasks.created\",\"payload\":{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"}}",
        "{\"type\":\"metrics.aggregation_completed\",\"meta\":{}}",
        "{\"type\":\"alert.cpu_high\",\"meta\":{\"version\":\"1.0\"}}",
        "{\"type\":\"alert.cpu_high\",\"meta\":{\"correlation_id\":\"c-1\"}}",
        "{\"type\":\"alert.cpu_high\",\"meta\":{\"correlation_id\":null,\"version\":\"1.0\"}}",
        "{\"type\":\"tasks.created\",\"target\":\"ui_service\"}",
        "{\"type\":\"tasks.created\",\"target\":null,\"source\":\"custom\"}",
        "{\"type\":\"tasks.created\",\"timestamp\":1703001234.5}",
        "{\"type\":\"tasks.created\",\"timestamp\":1703001234}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_tasks_1703001234567_abc123\"}",
        "{\"type\":\"tasks.created\",\"id\":\"evt_other_mod_1703001234567_zz0099\"}",
        "{\"id\":null,\"type\":\"tasks.created\",\"source\":null,\"target\":null,"
        "\"timestamp\":null,\"payload\":null,\"meta\":null}",
        "{\"meta\":{\"version\":\"1.0\",\"correlation_id\":\"x\"},\"payload\":{\"k\":1},"
        "\"type\":\"a_b.c_d\"}",
        "  {\"type\":\"tasks.created\"}\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char err[EVENT_ERR_LEN];
        event_t *e = prep(good[i], err);
        if (!e) fail_msg("refused %s: %s", good[i], err);
        assert_int_equal(e->seq, 0);
        assert_null(e->frame);
        json_t *env = envelope_of(e);
        assert_id_shape(e->id);
        json_decref(env);
        event_unref(e);
    }
}

static void test_prepare_defaults(void **state) {
    (void)state;
    char err[EVENT_ERR_LEN];
    event_t *e = prep("{\"type\":\"tasks.created\"}", err);
    assert_non_null(e);
    assert_string_equal(e->type, "tasks.created");
    assert_string_equal(e->id, "evt_tasks_" NOW_MS "_abc123");
    json_t *env = envelope_of(e);
    assert_string_equal(str(env, "id"), "evt_tasks_" NOW_MS "_abc123");
    assert_string_equal(str(env, "type"), "tasks.created");
    assert_string_equal(str(env, "source"), "tasks_service");
    assert_true(json_is_null(json_object_get(env, "target")));
    json_t *ts = json_object_get(env, "timestamp");
    assert_true(json_is_real(ts));
    assert_true(fabs(json_real_value(ts) - 1703001234.567) < 1e-6);
    assert_true(fabs(e->timestamp - 1703001234.567) < 1e-6);
    assert_int_equal(json_object_size(json_object_get(env, "payload")), 0);
    json_t *meta = json_object_get(env, "meta");
    assert_true(json_is_null(json_object_get(meta, "correlation_id")));
    assert_string_equal(str(meta, "version"), "1.0");
    /* canonical key order, as the contract writes it */
    const char *order[] = {"id", "type", "source", "target", "timestamp", "payload", "meta"};
    const char *prev = e->envelope;
    for (size_t i = 0; i < 7; i++) {
        char pat[32];
        snprintf(pat, sizeof pat, "\"%s\":", order[i]);
        const char *p = strstr(e->envelope, pat);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    json_decref(env);
    event_unref(e);

    /* module with underscores and digits */
    e = prep("{\"type\":\"metrics_2.aggregation_completed\",\"meta\":{\"correlation_id\":\"abc\"}}", err);
    assert_non_null(e);
    env = envelope_of(e);
    assert_string_equal(str(env, "id"), "evt_metrics_2_" NOW_MS "_abc123");
    assert_string_equal(str(env, "source"), "metrics_2_service");
    assert_string_equal(str(json_object_get(env, "meta"), "correlation_id"), "abc");
    assert_string_equal(str(json_object_get(env, "meta"), "version"), "1.0");
    json_decref(env);
    event_unref(e);

    /* explicit nulls are filled in like omitted fields */
    e = prep("{\"id\":null,\"type\":\"alert.x\",\"source\":null,\"target\":null,\"timestamp\":null,"
             "\"payload\":null,\"meta\":null}",
             err);
    assert_non_null(e);
    env = envelope_of(e);
    assert_string_equal(str(env, "id"), "evt_alert_" NOW_MS "_abc123");
    assert_string_equal(str(env, "source"), "alert_service");
    assert_true(fabs(json_number_value(json_object_get(env, "timestamp")) - 1703001234.567) < 1e-6);
    json_decref(env);
    event_unref(e);
}

static void test_prepare_supplied_kept(void **state) {
    (void)state;
    char err[EVENT_ERR_LEN];
    const char *in = "{\"id\":\"evt_tasks_1700000000123_q1w2e3\",\"type\":\"tasks.created\","
                     "\"source\":\"planner\",\"target\":\"ui_service\",\"timestamp\":1700000000.123,"
                     "\"payload\":{\"task_id\":\"t-1\",\"n\":3,\"nested\":{\"x\":[true,null]}},"
                     "\"meta\":{\"correlation_id\":\"corr-9\",\"version\":\"1.0\"}}";
    event_t *e = prep(in, err);
    if (!e) fail_msg("refused: %s", err);
    json_t *env = envelope_of(e);
    json_t *want = json_loads(in, 0, NULL);
    assert_non_null(want);
    if (!json_equal(env, want)) fail_msg("envelope changed supplied fields: %s", e->envelope);
    assert_true(json_is_real(json_object_get(env, "timestamp")));
    assert_string_equal(e->id, "evt_tasks_1700000000123_q1w2e3");
    assert_true(fabs(e->timestamp - 1700000000.123) < 1e-9);
    json_decref(want);
    json_decref(env);
    event_unref(e);

    /* a supplied id from another module is kept as is; the default source follows type */
    e = prep("{\"id\":\"evt_other_1700000000123_aaaaaa\",\"type\":\"tasks.done\"}", err);
    assert_non_null(e);
    env = envelope_of(e);
    assert_string_equal(str(env, "id"), "evt_other_1700000000123_aaaaaa");
    assert_string_equal(str(env, "source"), "tasks_service");
    json_decref(env);
    event_unref(e);

    /* a supplied timestamp also names the id's unix ms when the id is filled in */
    e = prep("{\"type\":\"tasks.done\",\"timestamp\":1700000000.5}", err);
    assert_non_null(e);
    assert_string_equal(e->id, "evt_tasks_1700000000500_abc123");
    event_unref(e);
}

/* Contract: <module> of the id is the part of the type before the dot. */
static void test_prepare_id_long_module(void **state) {
    (void)state;
    char err[EVENT_ERR_LEN], in[256], want_prefix[128];
    const char *mod = "abcdefghijklmnopqrstuvwxyz_0123456789_module"; /* 44 characters */
    snprintf(in, sizeof in, "{\"type\":\"%s.created\"}", mod);
    snprintf(want_prefix, sizeof want_prefix, "evt_%s_", mod);
    event_t *e = prep(in, err);
    if (!e) fail_msg("refused %s: %s", in, err);
    char id[sizeof e->id];
    snprintf(id, sizeof id, "%s", e->id);
    event_unref(e); /* before any failure: no leak reports from a failing check */
    assert_id_shape(id);
    if (strncmp(id, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("id %s does not carry the module %s of type %s.created", id, mod, mod);
}

/* Contract: timestamp is a float of unix seconds, also on a whole second. */
static void test_prepare_timestamp_whole_second_is_float(void **state) {
    (void)state;
    char err[EVENT_ERR_LEN];
    err[0] = '\0';
    const char *in = "{\"type\":\"tasks.created\"}";
    event_t *e = event_prepare(in, strlen(in), 1703001234.0004, RND, err);
    assert_non_null(e);
    json_t *env = envelope_of(e);
    bool real = json_is_real(json_object_get(env, "timestamp"));
    char text[512];
    snprintf(text, sizeof text, "%s", e->envelope);
    json_decref(env);
    event_unref(e);
    if (!real) fail_msg("timestamp is written as a JSON integer: %s", text);
}

/* Found by fuzz_event: an event stamped before 1970-04-26 (fewer than 10 digits of
 * milliseconds) got an id the hub's own check refuses, so its envelope could not be
 * published again (relayed, or re-sent by a client); a timestamp past the year 9999
 * overflowed the id's integer (undefined behaviour). Now the milliseconds are
 * zero-padded to 10 digits and timestamps beyond 9999-12-31 are refused. */
static void test_prepare_timestamp_range(void **state) {
    (void)state;
    static const struct {
        const char *ts;
        bool ok;
        const char *id_ms; /* the milliseconds part of the id made for it */
    } cases[] = {
        {"1e-7", true, "_0000000000_"},
        {"0", true, "_0000000000_"},
        {"12.5", true, "_0000012500_"},
        {"253402300799", true, "_253402300799000_"},
        {"253402300799.5", false, NULL},
        {"1e300", false, NULL},
        {"-0.001", false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[128], err[EVENT_ERR_LEN], err2[EVENT_ERR_LEN];
        snprintf(in, sizeof in, "{\"type\":\"tasks.created\",\"timestamp\":%s}", cases[i].ts);
        event_t *e = prep(in, err);
        if (!cases[i].ok) {
            if (e) fail_msg("accepted timestamp %s: %s", cases[i].ts, e->envelope);
            continue;
        }
        if (!e) fail_msg("refused timestamp %s: %s", cases[i].ts, err);
        char id[sizeof e->id];
        snprintf(id, sizeof id, "%s", e->id);
        /* the envelope the hub made is one it accepts again, unchanged */
        event_t *again = event_prepare(e->envelope, e->envelope_len, NOW + 100, "zzzzzz", err2);
        bool same = again && again->envelope_len == e->envelope_len &&
                    memcmp(again->envelope, e->envelope, e->envelope_len) == 0;
        bool got = again != NULL;
        char env[512];
        snprintf(env, sizeof env, "%s", e->envelope);
        event_unref(again);
        event_unref(e);
        assert_id_shape(id);
        if (!strstr(id, cases[i].id_ms)) fail_msg("id %s for timestamp %s", id, cases[i].ts);
        if (!same) fail_msg("envelope %s not accepted unchanged: %s", env, got ? "changed" : err2);
    }
}

/* Found by fuzz_event: the default source of a type with a long module
 * ("<module>_service", up to 134 bytes) was longer than the 128 bytes accepted from a
 * publisher, so the hub's own envelope was refused when published again. */
static void test_prepare_long_default_source(void **state) {
    (void)state;
    char type[EVENT_TYPE_MAX + 1], in[512], err[EVENT_ERR_LEN], err2[EVENT_ERR_LEN];
    memset(type, 'm', EVENT_TYPE_MAX);
    type[EVENT_TYPE_MAX - 2] = '.';
    type[EVENT_TYPE_MAX] = '\0';
    assert_true(event_type_valid(type));
    snprintf(in, sizeof in, "{\"type\":\"%s\"}", type);
    event_t *e = prep(in, err);
    if (!e) fail_msg("refused %s: %s", in, err);
    event_t *again = event_prepare(e->envelope, e->envelope_len, NOW, RND, err2);
    bool ok = again != NULL;
    event_unref(again);
    event_unref(e);
    if (!ok) fail_msg("its own envelope refused: %s", err2);
    /* and the limit itself */
    char src[EVENT_SOURCE_MAX + 2];
    memset(src, 's', sizeof src - 1);
    src[EVENT_SOURCE_MAX] = '\0';
    snprintf(in, sizeof in, "{\"type\":\"a.b\",\"source\":\"%s\"}", src);
    e = prep(in, err);
    assert_non_null(e);
    event_unref(e);
    src[EVENT_SOURCE_MAX] = 's';
    src[EVENT_SOURCE_MAX + 1] = '\0';
    snprintf(in, sizeof in, "{\"type\":\"a.b\",\"source\":\"%s\"}", src);
    assert_null(prep(in, err));
}

/* ---- event_make ------------------------------------------------------------------------ */

static void test_make(void **state) {
    (void)state;
    event_t *e = event_make("telemetry.connection_established", "{\"source_id\":\"r1\"}", NULL,
                            NOW, RND);
    assert_non_null(e);
    json_t *env = envelope_of(e);
    assert_string_equal(str(env, "id"), "evt_telemetry_" NOW_MS "_abc123");
    assert_string_equal(str(env, "source"), "telemetry_service");
    assert_string_equal(str(json_object_get(env, "payload"), "source_id"), "r1");
    assert_true(json_is_null(json_object_get(json_object_get(env, "meta"), "correlation_id")));
    json_decref(env);
    event_unref(e);

    e = event_make("alert.fired", "{}", "corr", NOW, RND);
    assert_non_null(e);
    env = envelope_of(e);
    assert_string_equal(str(json_object_get(env, "meta"), "correlation_id"), "corr");
    json_decref(env);
    event_unref(e);
}

/* ---- event_seal: the WebSocket frame --------------------------------------------------- */

/* Decodes a server text frame (FIN, no mask); returns the payload (malloc'd, NUL-ended). */
static char *frame_payload(const frame_t *f, size_t *plen) {
    const uint8_t *d = (const uint8_t *)f->data;
    assert_true(f->len >= 2);
    assert_int_equal(d[0], 0x81); /* FIN + text */
    assert_int_equal(d[1] & 0x80, 0); /* server frames are not masked */
    size_t n = d[1] & 0x7F, hl = 2;
    if (n == 126) {
        assert_true(f->len >= 4);
        n = ((size_t)d[2] << 8) | d[3];
        hl = 4;
        assert_true(n >= 126);
    } else if (n == 127) {
        assert_true(f->len >= 10);
        n = 0;
        for (int i = 0; i < 8; i++) n = (n << 8) | d[2 + i];
        hl = 10;
        assert_true(n >= 65536);
    }
    assert_int_equal(f->len, hl + n);
    char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, d + hl, n);
    p[n] = '\0';
    *plen = n;
    return p;
}

static void check_sealed(event_t *e, uint64_t seq) {
    assert_int_equal(e->seq, seq);
    assert_non_null(e->frame);
    size_t n;
    char *p = frame_payload(e->frame, &n);
    json_error_t jerr;
    json_t *msg = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg) fail_msg("frame payload is not JSON (%s): %s", jerr.text, p);
    assert_int_equal(json_object_size(msg), 3);
    assert_string_equal(str(msg, "type"), "event");
    json_t *s = json_object_get(msg, "seq");
    assert_true(json_is_integer(s));
    assert_int_equal((uint64_t)json_integer_value(s), seq);
    json_t *data = json_object_get(msg, "data");
    json_t *env = envelope_of(e);
    if (!json_equal(data, env)) fail_msg("frame data differs from the envelope: %s", p);
    json_decref(env);
    json_decref(msg);
    free(p);
}

static void test_seal_frame(void **state) {
    (void)state;
    char err[EVENT_ERR_LEN];
    /* short (7-bit length) */
    event_t *e = prep("{\"type\":\"a.b\"}", err);
    assert_non_null(e);
    assert_int_equal(event_seal(e, 1), 0);
    check_sealed(e, 1);
    event_unref(e);

    /* medium (16-bit length) with a large seq */
    e = prep("{\"type\":\"tasks.created\",\"payload\":{\"text\":\"hello \\\"world\\\" \\u00e9\\n\"},"
             "\"meta\":{\"correlation_id\":\"x\"}}",
             err);
    assert_non_null(e);
    assert_int_equal(event_seal(e, 9007199254740993ull), 0);
    assert_int_equal(e->seq, 9007199254740993ull);
    {
        size_t n;
        char *p = frame_payload(e->frame, &n);
        assert_non_null(strstr(p, "\"seq\":9007199254740993,"));
        free(p);
    }
    event_unref(e);

    e = prep("{\"type\":\"tasks.created\",\"payload\":{\"text\":\"hello\"}}", err);
    assert_non_null(e);
    assert_int_equal(event_seal(e, 123456), 0);
    check_sealed(e, 123456);
    event_unref(e);

    /* 16-bit and 64-bit frame lengths */
    static const size_t sizes[] = {200, 70000 - 200};
    for (size_t k = 0; k < 2; k++) {
        size_t fill = sizes[k];
        char *in = malloc(fill + 128);
        assert_non_null(in);
        int h = sprintf(in, "{\"type\":\"tasks.big\",\"payload\":{\"x\":\"");
        if ((size_t)h + fill + 4 > EVENT_MAX_BYTES) fill = EVENT_MAX_BYTES - (size_t)h - 4;
        memset(in + h, 'z', fill);
        strcpy(in + h + fill, "\"}}");
        e = prep(in, err);
        if (!e) fail_msg("refused a %zu-byte event: %s", strlen(in), err);
        assert_int_equal(event_seal(e, 42 + k), 0);
        check_sealed(e, 42 + k);
        event_unref(e);
        free(in);
    }
}

/* ---- eventlog -------------------------------------------------------------------------- */

static event_t *mk(int i) {
    char in[96], err[EVENT_ERR_LEN];
    snprintf(in, sizeof in, "{\"type\":\"tasks.n%d\",\"payload\":{\"i\":%d}}", i, i);
    event_t *e = event_prepare(in, strlen(in), NOW, RND, err);
    assert_non_null(e);
    return e;
}

static void test_eventlog_empty(void **state) {
    (void)state;
    eventlog_t l;
    assert_int_equal(elog_init(&l, 5), 0);
    assert_int_equal(elog_oldest(&l), 1);
    assert_int_equal(elog_latest(&l), 0);
    assert_null(elog_get(&l, 0));
    assert_null(elog_get(&l, 1));
    elog_free(&l);
}

static void test_eventlog_window(void **state) {
    (void)state;
    eventlog_t l;
    const uint32_t retain = 5;
    assert_int_equal(elog_init(&l, retain), 0);
    event_t *all[23];
    for (int i = 0; i < 23; i++) {
        all[i] = mk(i + 1);
        assert_int_equal(elog_append(&l, all[i]), 0);
        uint64_t n = (uint64_t)i + 1; /* seq of this one */
        assert_int_equal(all[i]->seq, n);
        check_sealed(all[i], n);
        assert_int_equal(elog_latest(&l), n);
        uint64_t oldest = n > retain ? n - retain + 1 : 1;
        assert_int_equal(elog_oldest(&l), oldest);
        assert_null(elog_get(&l, 0));
        assert_null(elog_get(&l, n + 1));
        assert_null(elog_get(&l, UINT64_MAX));
        for (uint64_t q = 1; q <= n; q++) {
            event_t *g = elog_get(&l, q);
            if (q < oldest) {
                if (g) fail_msg("seq %llu still retained after %llu appends (retain %u)",
                                (unsigned long long)q, (unsigned long long)n, retain);
            } else {
                assert_ptr_equal(g, all[q - 1]);
                assert_int_equal(g->seq, q);
            }
        }
    }
    elog_free(&l);
    /* the log dropped its references; ours are intact */
    for (int i = 0; i < 23; i++) {
        assert_int_equal(atomic_load(&all[i]->refs), 1);
        event_unref(all[i]);
    }
}

static void test_eventlog_retain_one(void **state) {
    (void)state;
    eventlog_t l;
    assert_int_equal(elog_init(&l, 1), 0);
    for (int i = 1; i <= 4; i++) {
        event_t *e = mk(i);
        assert_int_equal(elog_append(&l, e), 0);
        assert_int_equal(elog_oldest(&l), (uint64_t)i);
        assert_int_equal(elog_latest(&l), (uint64_t)i);
        assert_ptr_equal(elog_get(&l, (uint64_t)i), e);
        if (i > 1) assert_null(elog_get(&l, (uint64_t)i - 1));
        event_unref(e); /* the log keeps the event alive */
        assert_int_equal(elog_get(&l, (uint64_t)i)->seq, (uint64_t)i);
    }
    elog_free(&l);
}

/* event_prepare_json (the WebSocket publish path) gives the bytes event_prepare gives for
 * the object's compact text, and meta is byte for byte jansson's json_dumps of
 * {"correlation_id":..,"version":"1.0"} (how it was encoded before it was written
 * directly): plain, escaped and non-ASCII correlation ids, null, no meta. */
static void test_prepare_json_same_bytes(void **state) {
    (void)state;
    static const char *const in[] = {
        "{\"type\":\"a.b\"}",
        "{\"type\":\"a.b\",\"payload\":{\"x\":1,\"y\":\"\\u00e9\",\"z\":[1.5,1e-5,true]},"
        "\"meta\":{\"correlation_id\":\"plain-id_1\"}}",
        "{\"type\":\"a.b\",\"meta\":{\"correlation_id\":\"c\\\"1\\u0001\\u00fc\\\\/\\u007f\"}}",
        "{\"type\":\"a.b\",\"meta\":{\"correlation_id\":null,\"version\":\"1.0\"},"
        "\"source\":\"s\\\"x\",\"target\":\"t\",\"payload\":{}}",
        "{\"type\":\"a.b\",\"meta\":{}}",
    };
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        json_error_t jerr;
        json_t *root = json_loads(in[i], JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(root);
        char *text = json_dumps(root, JSON_COMPACT);
        char err[EVENT_ERR_LEN];
        event_t *a = event_prepare(text, strlen(text), NOW, RND, err);
        event_t *b = event_prepare_json(root, NOW, RND, err);
        assert_non_null(a);
        assert_non_null(b);
        assert_string_equal(a->envelope, b->envelope);
        json_t *meta = json_object_get(root, "meta");
        json_t *cid = meta ? json_object_get(meta, "correlation_id") : NULL;
        json_t *old = json_pack("{s:O,s:s}", "correlation_id", cid ? cid : json_null(),
                                "version", "1.0");
        char *want = json_dumps(old, JSON_COMPACT | JSON_ENCODE_ANY);
        const char *got = strstr(b->envelope, ",\"meta\":");
        assert_non_null(got);
        char tail[512];
        snprintf(tail, sizeof tail, ",\"meta\":%s}", want);
        assert_string_equal(got, tail);
        free(want);
        json_decref(old);
        free(text);
        event_unref(a);
        event_unref(b);
        json_decref(root);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_valid),
        cmocka_unit_test(test_random6_alphabet),
        cmocka_unit_test(test_prepare_invalid),
        cmocka_unit_test(test_prepare_too_large),
        cmocka_unit_test(test_prepare_valid_table),
        cmocka_unit_test(test_prepare_defaults),
        cmocka_unit_test(test_prepare_supplied_kept),
        cmocka_unit_test(test_prepare_id_long_module),
        cmocka_unit_test(test_prepare_timestamp_whole_second_is_float),
        cmocka_unit_test(test_prepare_timestamp_range),
        cmocka_unit_test(test_prepare_long_default_source),
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_prepare_json_same_bytes),
        cmocka_unit_test(test_seal_frame),
        cmocka_unit_test(test_eventlog_empty),
        cmocka_unit_test(test_eventlog_window),
        cmocka_unit_test(test_eventlog_retain_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
