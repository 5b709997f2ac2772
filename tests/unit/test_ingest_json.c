/* ingest_json: both JSON forms into statsd_line_t samples, per-sample rejections by
 * reason, whole-body errors; and the StatsD text splitter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ingest_json.h"
#include "metric.h"
#include "statsd.h"

/* What the callback saw, copied out (the line is valid only during the call). */
typedef struct {
    char name[256];
    metric_kind_t kind;
    bool delta;
    double rate;
    int nvalues;
    double value;
    char member[64];
    int ntags;
    char tags[STATSD_MAX_TAGS][2][64];
} seen_t;

typedef struct {
    seen_t s[64];
    int n;
    int answer; /* what the callback returns */
} rec_t;

static int record(void *ud, const statsd_line_t *l) {
    rec_t *r = ud;
    assert_true(r->n < 64);
    seen_t *s = &r->s[r->n++];
    memset(s, 0, sizeof *s);
    assert_true(l->name_len < sizeof s->name);
    memcpy(s->name, l->name, l->name_len);
    s->kind = l->kind;
    s->delta = l->gauge_delta;
    s->rate = l->rate;
    s->nvalues = l->nvalues;
    s->value = l->nvalues ? l->values[0] : NAN;
    if (l->member) {
        assert_true(l->member_len < sizeof s->member);
        memcpy(s->member, l->member, l->member_len);
    }
    s->ntags = l->ntags;
    for (int i = 0; i < l->ntags; i++) {
        /* long ones truncated: the tests only look at short labels */
        memcpy(s->tags[i][0], l->tags[i].key, l->tags[i].key_len < 63 ? l->tags[i].key_len : 63);
        memcpy(s->tags[i][1], l->tags[i].value,
               l->tags[i].value_len < 63 ? l->tags[i].value_len : 63);
    }
    return r->answer;
}

static int parse(const char *body, rec_t *r, ingest_counts_t *c, char *err) {
    memset(r, 0, sizeof *r);
    memset(c, 0, sizeof *c);
    err[0] = '\0';
    return ingest_json_parse(body, strlen(body), record, r, c, err, 256);
}

static const char *tag(const seen_t *s, const char *k) {
    for (int i = 0; i < s->ntags; i++)
        if (strcmp(s->tags[i][0], k) == 0) return s->tags[i][1];
    return NULL;
}

static void test_metrics_form(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    assert_int_equal(parse("{\"source\":\"robot_001\",\"timestamp\":1703005678.9,"
                           "\"metrics\":{\"cpu_usage\":45.2,\"battery\":81,\"neg\":-1e3}}",
                           &r, &c, err),
                     0);
    assert_int_equal(c.accepted, 3);
    assert_int_equal(ingest_counts_rejected(&c), 0);
    assert_int_equal(r.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.s[i].kind, METRIC_GAUGE);
        assert_false(r.s[i].delta);
        assert_true(r.s[i].rate == 1);
        assert_int_equal(r.s[i].nvalues, 1);
        assert_int_equal(r.s[i].ntags, 1);
        assert_string_equal(tag(&r.s[i], "source"), "robot_001");
    }
    /* jansson keeps insertion order */
    assert_string_equal(r.s[0].name, "cpu_usage");
    assert_true(r.s[0].value == 45.2);
    assert_string_equal(r.s[1].name, "battery");
    assert_true(r.s[1].value == 81);
    assert_true(r.s[2].value == -1000);

    /* without source: no labels; non-numbers and empty names rejected per sample */
    assert_int_equal(parse("{\"metrics\":{\"a\":1,\"b\":\"2\",\"c\":null,\"d\":true,\"\":5,"
                           "\"e\":[1],\"f\":0}}",
                           &r, &c, err),
                     0);
    assert_int_equal(c.accepted, 2);
    assert_int_equal(c.rejected[STATSD_BAD_VALUE], 4);
    assert_int_equal(c.rejected[STATSD_BAD_NAME], 1);
    assert_int_equal(ingest_counts_rejected(&c), 5);
    assert_int_equal(r.s[0].ntags, 0);
    assert_string_equal(r.s[1].name, "f");

    /* an empty metrics object is fine */
    assert_int_equal(parse("{\"metrics\":{}}", &r, &c, err), 0);
    assert_int_equal(c.accepted, 0);
}

static void test_samples_form(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    assert_int_equal(
        parse("{\"samples\":["
              "{\"name\":\"jobs_done\",\"kind\":\"counter\",\"value\":3,"
              "\"labels\":{\"queue\":\"asr\",\"zone\":\"b\"},\"sample_rate\":0.5},"
              "{\"name\":\"queue_depth\",\"value\":7},"
              "{\"name\":\"users\",\"kind\":\"set\",\"value\":\"alice\"},"
              "{\"name\":\"ids\",\"kind\":\"set\",\"value\":42},"
              "{\"name\":\"frac\",\"kind\":\"set\",\"value\":1.5},"
              "{\"name\":\"level\",\"kind\":\"gauge\",\"value\":-2,\"delta\":true},"
              "{\"name\":\"level2\",\"value\":2,\"delta\":false},"
              "{\"name\":\"lat\",\"kind\":\"histogram\",\"value\":12.5,\"sample_rate\":1},"
              "{\"name\":\"lat\",\"kind\":\"distribution\",\"value\":1},"
              "{\"name\":\"lat\",\"kind\":\"summary\",\"value\":1},"
              "{\"name\":\"lat\",\"kind\":\"timer\",\"value\":1},"
              "{\"name\":\"c\",\"kind\":\"counter\",\"value\":1,\"delta\":true}"
              "]}",
              &r, &c, err),
        0);
    assert_int_equal(ingest_counts_rejected(&c), 0);
    assert_int_equal(c.accepted, 12);
    assert_int_equal(r.n, 12);
    seen_t *s = &r.s[0];
    assert_string_equal(s->name, "jobs_done");
    assert_int_equal(s->kind, METRIC_COUNTER);
    assert_true(s->value == 3 && s->rate == 0.5);
    assert_int_equal(s->ntags, 2);
    assert_string_equal(tag(s, "queue"), "asr");
    assert_string_equal(tag(s, "zone"), "b");
    s = &r.s[1];
    assert_int_equal(s->kind, METRIC_GAUGE); /* the default */
    assert_true(s->value == 7 && s->rate == 1);
    assert_false(s->delta);
    s = &r.s[2];
    assert_int_equal(s->kind, METRIC_SET);
    assert_string_equal(s->member, "alice");
    assert_int_equal(s->nvalues, 0);
    assert_int_equal(r.s[3].kind, METRIC_SET);
    assert_string_equal(r.s[3].member, "42");
    assert_string_equal(r.s[4].member, "1.5");
    assert_true(r.s[5].delta);
    assert_true(r.s[5].value == -2);
    assert_false(r.s[6].delta);
    for (int i = 7; i <= 10; i++) assert_int_equal(r.s[i].kind, METRIC_TIMER);
    assert_true(r.s[7].value == 12.5);
    assert_false(r.s[11].delta); /* delta is for gauges only */

    /* an empty samples array is fine */
    assert_int_equal(parse("{\"samples\":[]}", &r, &c, err), 0);
    assert_int_equal(c.accepted, 0);
}

static void test_sample_rejections(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    char many[2048];
    int n = snprintf(many, sizeof many, "{\"name\":\"m\",\"value\":1,\"labels\":{");
    for (int i = 0; i <= STATSD_MAX_TAGS; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "%s\"l%d\":\"v\"", i ? "," : "", i);
    snprintf(many + n, sizeof many - (size_t)n, "}}");
    char body[4096];
    snprintf(body, sizeof body,
             "{\"samples\":["
             "{\"name\":\"a\",\"value\":\"1\"},"        /* bad_value */
             "{\"name\":\"a\",\"value\":null},"         /* bad_value */
             "{\"name\":\"a\"},"                        /* no_value */
             "{\"name\":\"a\",\"kind\":\"set\"},"       /* bad_value */
             "{\"name\":\"a\",\"kind\":\"set\",\"value\":\"\"}," /* bad_value */
             "{\"name\":\"a\",\"kind\":\"set\",\"value\":true},"  /* bad_value */
             "{\"name\":\"a\",\"kind\":\"meter\",\"value\":1},"  /* bad_type */
             "{\"name\":\"a\",\"kind\":\"Counter\",\"value\":1}," /* bad_type */
             "{\"name\":\"a\",\"kind\":3,\"value\":1},"          /* bad_type */
             "{\"name\":\"a\",\"value\":1,\"labels\":{\"k\":1}},"  /* bad_tags */
             "{\"name\":\"a\",\"value\":1,\"labels\":[\"k\"]},"    /* bad_tags */
             "{\"name\":\"a\",\"value\":1,\"labels\":{\"\":\"v\"}}," /* bad_tags */
             "%s,"                                                  /* bad_tags: 17 */
             "{\"name\":\"\",\"value\":1},"                         /* bad_name */
             "{\"value\":1},"                                       /* bad_name */
             "{\"name\":5,\"value\":1},"                            /* bad_name */
             "{\"name\":\"a\",\"value\":1,\"sample_rate\":0},"      /* bad_rate */
             "{\"name\":\"a\",\"value\":1,\"sample_rate\":1.5},"    /* bad_rate */
             "{\"name\":\"a\",\"value\":1,\"sample_rate\":-0.5},"   /* bad_rate */
             "{\"name\":\"a\",\"value\":1,\"sample_rate\":\"1\"},"  /* bad_rate */
             "{\"name\":\"a\",\"value\":1,\"delta\":1},"            /* bad_value */
             "7,"                                                   /* bad_value */
             "{\"name\":\"ok\",\"value\":1,\"sample_rate\":1e-9}"   /* fine */
             "]}",
             many);
    assert_int_equal(parse(body, &r, &c, err), 0);
    assert_int_equal(c.accepted, 1);
    assert_string_equal(r.s[0].name, "ok");
    assert_true(r.s[0].rate == 1e-9);
    assert_int_equal(c.rejected[STATSD_BAD_VALUE], 7);
    assert_int_equal(c.rejected[STATSD_NO_VALUE], 1);
    assert_int_equal(c.rejected[STATSD_BAD_TYPE], 3);
    assert_int_equal(c.rejected[STATSD_BAD_TAGS], 4);
    assert_int_equal(c.rejected[STATSD_BAD_NAME], 3);
    assert_int_equal(c.rejected[STATSD_BAD_RATE], 4);
    assert_int_equal(ingest_counts_rejected(&c), 22);

    /* exactly STATSD_MAX_TAGS labels is fine */
    n = snprintf(many, sizeof many, "{\"samples\":[{\"name\":\"m\",\"value\":1,\"labels\":{");
    for (int i = 0; i < STATSD_MAX_TAGS; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "%s\"l%d\":\"v%d\"", i ? "," : "", i, i);
    snprintf(many + n, sizeof many - (size_t)n, "}}]}");
    assert_int_equal(parse(many, &r, &c, err), 0);
    assert_int_equal(c.accepted, 1);
    assert_int_equal(r.s[0].ntags, STATSD_MAX_TAGS);
    assert_string_equal(tag(&r.s[0], "l15"), "v15");
}

static void test_too_long(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    char body[2048], name[STATSD_MAX_NAME + 2], lv[257];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 201 */
    memset(lv, 'v', 256);
    lv[256] = '\0';
    snprintf(body, sizeof body,
             "{\"samples\":[{\"name\":\"%s\",\"value\":1},"
             "{\"name\":\"x\",\"value\":1,\"labels\":{\"k\":\"%s\"}},"
             "{\"name\":\"%.200s\",\"value\":1,\"labels\":{\"k\":\"%.255s\"}}]}",
             name, lv, name, lv);
    assert_int_equal(parse(body, &r, &c, err), 0);
    assert_int_equal(c.rejected[STATSD_TOO_LONG], 2);
    assert_int_equal(c.accepted, 1);
    assert_int_equal(strlen(r.s[0].name), STATSD_MAX_NAME);

    snprintf(body, sizeof body, "{\"source\":\"%s\",\"metrics\":{\"a\":1,\"b\":2}}", lv);
    assert_int_equal(parse(body, &r, &c, err), 0);
    assert_int_equal(c.rejected[STATSD_TOO_LONG], 2);
}

static void test_callback_answer_counted(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    memset(&r, 0, sizeof r);
    memset(&c, 0, sizeof c);
    char err[64];
    r.answer = STATSD_TOO_LONG; /* e.g. the producer's key table is full */
    const char *body = "{\"metrics\":{\"a\":1,\"b\":2}}";
    assert_int_equal(ingest_json_parse(body, strlen(body), record, &r, &c, err, sizeof err), 0);
    assert_int_equal(c.accepted, 0);
    assert_int_equal(c.rejected[STATSD_TOO_LONG], 2);
    memset(&c, 0, sizeof c);
    r.n = 0;
    r.answer = -ENOMEM; /* not a reason: counted somewhere, never accepted */
    ingest_json_parse(body, strlen(body), record, &r, &c, err, sizeof err);
    assert_int_equal(c.accepted, 0);
    assert_int_equal(ingest_counts_rejected(&c), 2);
}

static void test_body_errors(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    static const struct {
        const char *body, *needle;
    } cases[] = {
        {"not json", "invalid JSON"},
        {"{\"metrics\":{\"a\":1}", "invalid JSON"},
        {"", "invalid JSON"},
        {"[1,2]", "JSON object"},
        {"[{\"samples\":[]}]", "JSON object"},
        {"42", ""},
        {"{}", "expected"},
        {"{\"foo\":1}", "expected"},
        {"{\"metrics\":[1]}", "\"metrics\" must be an object"},
        {"{\"metrics\":5}", "\"metrics\" must be an object"},
        {"{\"metrics\":null}", "\"metrics\" must be an object"},
        {"{\"source\":5,\"metrics\":{\"a\":1}}", "\"source\" must be a string"},
        {"{\"timestamp\":\"now\",\"metrics\":{\"a\":1}}", "\"timestamp\""},
        {"{\"samples\":{}}", "\"samples\" must be an array"},
        {"{\"samples\":\"x\"}", "\"samples\" must be an array"},
        {"{\"metrics\":{\"a\":1,\"a\":2}}", "invalid JSON"}, /* duplicate keys */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(parse(cases[i].body, &r, &c, err), -1);
        assert_true(err[0] != '\0');
        if (!strstr(err, cases[i].needle)) fail_msg("%s: error \"%s\"", cases[i].body, err);
        assert_int_equal(r.n, 0); /* nothing delivered */
        assert_int_equal(c.accepted, 0);
    }
    /* a small err buffer is truncated, not overrun */
    char small[8];
    memset(&c, 0, sizeof c);
    assert_int_equal(ingest_json_parse("nope", 4, record, &r, &c, small, sizeof small), -1);
    assert_true(strlen(small) < sizeof small);
}

static void test_body_not_nul_terminated(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    memset(&r, 0, sizeof r);
    memset(&c, 0, sizeof c);
    char err[64];
    const char text[] = "{\"metrics\":{\"a\":1}}GARBAGE";
    assert_int_equal(ingest_json_parse(text, 19, record, &r, &c, err, sizeof err), 0);
    assert_int_equal(c.accepted, 1);
}

static void test_statsd_text(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    memset(&r, 0, sizeof r);
    memset(&c, 0, sizeof c);
    const char body[] = "a:1|c\n"
                        "\n"
                        "b:2|g\r\n"
                        "   \n"
                        "\r\n"
                        "bad line\n"
                        "c:x|c\n"
                        "d:3|ms|#k:v\r\n"
                        "e:4|c"; /* no final newline */
    ingest_statsd_text(body, strlen(body), record, &r, &c);
    assert_int_equal(c.accepted, 4);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.s[0].name, "a");
    assert_string_equal(r.s[1].name, "b");
    assert_int_equal(r.s[1].kind, METRIC_GAUGE);
    assert_string_equal(r.s[2].name, "d");
    assert_string_equal(tag(&r.s[2], "k"), "v"); /* no '\r' left in the value */
    assert_string_equal(r.s[3].name, "e");
    assert_true(r.s[3].value == 4);
    assert_int_equal(c.rejected[STATSD_NO_VALUE], 1);
    assert_int_equal(c.rejected[STATSD_BAD_VALUE], 1);
    assert_int_equal(c.rejected[STATSD_EMPTY], 0); /* blank lines are not counted */
    assert_int_equal(ingest_counts_rejected(&c), 2);

    /* empty body, only newlines, a trailing newline: nothing counted */
    memset(&r, 0, sizeof r);
    memset(&c, 0, sizeof c);
    ingest_statsd_text("", 0, record, &r, &c);
    ingest_statsd_text("\n\n\r\n", 4, record, &r, &c);
    assert_int_equal(c.accepted, 0);
    assert_int_equal(ingest_counts_rejected(&c), 0);
    ingest_statsd_text("x:1|c\n", 6, record, &r, &c);
    assert_int_equal(c.accepted, 1);
    /* the length bounds the body: the rest of the buffer is not read */
    ingest_statsd_text("y:1|cJUNK", 5, record, &r, &c);
    assert_int_equal(c.accepted, 2);
    assert_string_equal(r.s[1].name, "y");
    /* callback refusals are counted by reason */
    r.answer = STATSD_TOO_LONG;
    ingest_statsd_text("z:1|c\nz:2|c\n", 12, record, &r, &c);
    assert_int_equal(c.rejected[STATSD_TOO_LONG], 2);
}

/* An integer literal beyond int64 (a byte counter of 1e20 written out) is a valid JSON
 * number: one gauge of 1e20, not a 400 for the whole body. */
static void test_big_integer(void **state) {
    (void)state;
    rec_t r;
    ingest_counts_t c;
    char err[256];
    assert_int_equal(parse("{\"metrics\":{\"bytes\":100000000000000000000}}", &r, &c, err), 0);
    assert_int_equal(c.accepted, 1);
    assert_true(r.s[0].value == 1e20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_form),
        cmocka_unit_test(test_samples_form),
        cmocka_unit_test(test_sample_rejections),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_callback_answer_counted),
        cmocka_unit_test(test_body_errors),
        cmocka_unit_test(test_body_not_nul_terminated),
        cmocka_unit_test(test_statsd_text),
        cmocka_unit_test(test_big_integer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
