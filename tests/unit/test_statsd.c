/* statsd: every accepted line form, every rejection mapped to its reason, the limits,
 * statsd_exporter-compatible sanitising, and the fast number parser bit-for-bit against
 * strtod. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metric.h"
#include "statsd.h"

#define INGEST_BATCH_TEST 64

static statsd_reason_t parse(const char *s, statsd_line_t *l) {
    return statsd_parse_line(s, strlen(s), l);
}

static void assert_mem(const char *p, size_t n, const char *want) {
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

/* ---- accepted forms ----------------------------------------------------------------- */

#define MAXV 4
#define MAXT 4
typedef struct {
    const char *in;
    const char *name;
    metric_kind_t kind;
    bool delta;
    double rate;
    int nvalues;
    double values[MAXV];
    const char *member; /* sets */
    int ntags;
    const char *tags[MAXT][2];
} good_case_t;

static const good_case_t good[] = {
    {"hits:1|c", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"hits:2.5|c", "hits", METRIC_COUNTER, false, 1, 1, {2.5}, NULL, 0, {{0}}},
    {"hits:-3|c", "hits", METRIC_COUNTER, false, 1, 1, {-3}, NULL, 0, {{0}}},
    {"hits:1|c|@0.1", "hits", METRIC_COUNTER, false, 0.1, 1, {1}, NULL, 0, {{0}}},
    {"hits:1|c|@1", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"hits:1|c|@.5", "hits", METRIC_COUNTER, false, 0.5, 1, {1}, NULL, 0, {{0}}},
    {"hits:1|c|@1e-3", "hits", METRIC_COUNTER, false, 0.001, 1, {1}, NULL, 0, {{0}}},
    {"a.b-c:7|c", "a.b-c", METRIC_COUNTER, false, 1, 1, {7}, NULL, 0, {{0}}},
    {"temp:21.5|g", "temp", METRIC_GAUGE, false, 1, 1, {21.5}, NULL, 0, {{0}}},
    {"temp:+4|g", "temp", METRIC_GAUGE, true, 1, 1, {4}, NULL, 0, {{0}}},
    {"temp:-4|g", "temp", METRIC_GAUGE, true, 1, 1, {-4}, NULL, 0, {{0}}},
    {"temp:-0|g", "temp", METRIC_GAUGE, true, 1, 1, {0}, NULL, 0, {{0}}},
    {"temp:0|g", "temp", METRIC_GAUGE, false, 1, 1, {0}, NULL, 0, {{0}}},
    {"temp:1:2|g", "temp", METRIC_GAUGE, false, 1, 2, {1, 2}, NULL, 0, {{0}}},
    {"temp:+1:-2|g", "temp", METRIC_GAUGE, true, 1, 2, {1, -2}, NULL, 0, {{0}}},
    {"temp:3|g|@0.5", "temp", METRIC_GAUGE, false, 0.5, 1, {3}, NULL, 0, {{0}}},
    {"lat:320|ms", "lat", METRIC_TIMER, false, 1, 1, {320}, NULL, 0, {{0}}},
    {"lat:320|h", "lat", METRIC_TIMER, false, 1, 1, {320}, NULL, 0, {{0}}},
    {"lat:320|d", "lat", METRIC_TIMER, false, 1, 1, {320}, NULL, 0, {{0}}},
    {"lat:1.5e2|ms|@0.25", "lat", METRIC_TIMER, false, 0.25, 1, {150}, NULL, 0, {{0}}},
    {"lat:1:2:3|ms", "lat", METRIC_TIMER, false, 1, 3, {1, 2, 3}, NULL, 0, {{0}}},
    {"lat:1:2.5:-3:4e1|d", "lat", METRIC_TIMER, false, 1, 4, {1, 2.5, -3, 40}, NULL, 0, {{0}}},
    {"c:1:1|c|@0.5", "c", METRIC_COUNTER, false, 0.5, 2, {1, 1}, NULL, 0, {{0}}},
    {"users:alice|s", "users", METRIC_SET, false, 1, 0, {0}, "alice", 0, {{0}}},
    {"users:12|s", "users", METRIC_SET, false, 1, 0, {0}, "12", 0, {{0}}},
    {"users:a:b c|s", "users", METRIC_SET, false, 1, 0, {0}, "a:b c", 0, {{0}}},
    {"hits:1|c|#env:prod", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 1, {{"env", "prod"}}},
    {"hits:1|c|#env:prod,flag,k:",
     "hits",
     METRIC_COUNTER,
     false,
     1,
     1,
     {1},
     NULL,
     3,
     {{"env", "prod"}, {"flag", ""}, {"k", ""}}},
    {"hits:1|c|#url:http://x:80/a",
     "hits",
     METRIC_COUNTER,
     false,
     1,
     1,
     {1},
     NULL,
     1,
     {{"url", "http://x:80/a"}}},
    {"hits:1|c|@0.5|#a:b", "hits", METRIC_COUNTER, false, 0.5, 1, {1}, NULL, 1, {{"a", "b"}}},
    {"hits:1|c|#a:b|@0.5", "hits", METRIC_COUNTER, false, 0.5, 1, {1}, NULL, 1, {{"a", "b"}}},
    {"users:bob|s|#team:x", "users", METRIC_SET, false, 1, 0, {0}, "bob", 1, {{"team", "x"}}},
    {"lat:5|ms|#a:1,b:2|c:abc123",
     "lat",
     METRIC_TIMER,
     false,
     1,
     1,
     {5},
     NULL,
     2,
     {{"a", "1"}, {"b", "2"}}},
    {"lat:5|ms|T1700000000", "lat", METRIC_TIMER, false, 1, 1, {5}, NULL, 0, {{0}}},
    {"lat:5|ms|@0.5|#a|c:id|T1700000000",
     "lat",
     METRIC_TIMER,
     false,
     0.5,
     1,
     {5},
     NULL,
     1,
     {{"a", ""}}},
    {"hits:1|c\r", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"hits:1|c|#a:b\r", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 1, {{"a", "b"}}},
    {"hits:1|c|", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"hits:1|c||#a:b", "hits", METRIC_COUNTER, false, 1, 1, {1}, NULL, 1, {{"a", "b"}}},
    /* raw names are kept raw: sanitising is the caller's step */
    {"my app.é:1|c", "my app.é", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"1abc:1|c", "1abc", METRIC_COUNTER, false, 1, 1, {1}, NULL, 0, {{0}}},
    {"x:0.000001|g", "x", METRIC_GAUGE, false, 1, 1, {1e-6}, NULL, 0, {{0}}},
};

static void test_good_lines(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const good_case_t *c = &good[i];
        statsd_line_t l;
        statsd_reason_t r = parse(c->in, &l);
        if (r != STATSD_OK) fail_msg("%s: %s", c->in, statsd_reason_name(r));
        assert_mem(l.name, l.name_len, c->name);
        assert_int_equal(l.kind, c->kind);
        assert_int_equal(l.gauge_delta, c->delta);
        assert_true(l.rate == c->rate);
        assert_int_equal(l.nvalues, c->nvalues);
        for (int k = 0; k < c->nvalues; k++)
            assert_true(l.values[k] == c->values[k]);
        if (c->member) {
            assert_mem(l.member, l.member_len, c->member);
        } else {
            assert_null(l.member);
        }
        assert_int_equal(l.ntags, c->ntags);
        for (int k = 0; k < c->ntags; k++) {
            assert_mem(l.tags[k].key, l.tags[k].key_len, c->tags[k][0]);
            assert_mem(l.tags[k].value, l.tags[k].value_len, c->tags[k][1]);
        }
    }
}

/* The input is not NUL-terminated and the parser must not need it to be. */
static void test_not_nul_terminated(void **state) {
    (void)state;
    static const char buf[] = "a:1|c|#k:v"
                              "XYZ";
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(buf, 10, &l), STATSD_OK);
    assert_mem(l.tags[0].value, l.tags[0].value_len, "v");
    assert_int_equal(statsd_parse_line(buf, 3, &l), STATSD_NO_TYPE); /* "a:1" */
    /* a tag without ':' has the NUL-terminated "" the header promises */
    assert_int_equal(parse("a:1|c|#flag", &l), STATSD_OK);
    assert_string_equal(l.tags[0].value, "");
}

/* ---- rejected forms ----------------------------------------------------------------- */

static const struct {
    const char *in;
    statsd_reason_t want;
} bad[] = {
    {"", STATSD_EMPTY},
    {" ", STATSD_EMPTY},
    {" \t \r", STATSD_EMPTY},
    {"\r", STATSD_EMPTY},
    {"\t\v\f", STATSD_EMPTY},
    {":1|c", STATSD_BAD_NAME},
    {":|c", STATSD_BAD_NAME},
    {"hits", STATSD_NO_VALUE},
    {"hits|c", STATSD_NO_VALUE},
    {"hits|c:1", STATSD_NO_VALUE},
    {"hits:|c", STATSD_NO_VALUE},
    {"hits:", STATSD_NO_VALUE},
    {"hits:|g", STATSD_NO_VALUE},
    {"hits:|ms", STATSD_NO_VALUE},
    {"hits:1", STATSD_NO_TYPE},
    {"hits:1|", STATSD_NO_TYPE},
    {"hits:1||c", STATSD_NO_TYPE},
    {"hits:1|x", STATSD_BAD_TYPE},
    {"hits:1|C", STATSD_BAD_TYPE},
    {"hits:1|m", STATSD_BAD_TYPE},
    {"hits:1|mss", STATSD_BAD_TYPE},
    {"hits:1|c ", STATSD_BAD_TYPE},
    {"hits:1|kv", STATSD_BAD_TYPE},
    {"hits:abc|c", STATSD_BAD_VALUE},
    {"hits:1x|c", STATSD_BAD_VALUE},
    {"hits: 1|c", STATSD_BAD_VALUE},
    {"hits:nan|g", STATSD_BAD_VALUE},
    {"hits:inf|g", STATSD_BAD_VALUE},
    {"hits:-inf|g", STATSD_BAD_VALUE},
    {"hits:0x10|g", STATSD_BAD_VALUE},
    {"hits:1e999|g", STATSD_BAD_VALUE},
    {"hits:1::2|ms", STATSD_BAD_VALUE},
    {"hits:1:|ms", STATSD_BAD_VALUE},
    {"hits::1|ms", STATSD_BAD_VALUE},
    {"temp:1:+2|g", STATSD_BAD_VALUE}, /* absolute and delta mixed */
    {"temp:-1:2|g", STATSD_BAD_VALUE},
    {"users:|s", STATSD_BAD_VALUE}, /* empty set member */
    {"hits:1|c|@", STATSD_BAD_RATE},
    {"hits:1|c|@0", STATSD_BAD_RATE},
    {"hits:1|c|@-0.5", STATSD_BAD_RATE},
    {"hits:1|c|@1.5", STATSD_BAD_RATE},
    {"hits:1|c|@abc", STATSD_BAD_RATE},
    {"hits:1|c|@nan", STATSD_BAD_RATE},
    {"hits:1|c|@0.5|@0.5", STATSD_BAD_RATE},
    {"hits:1|c|#", STATSD_BAD_TAGS},
    {"hits:1|c|#:v", STATSD_BAD_TAGS},
    {"hits:1|c|#a:b,", STATSD_BAD_TAGS},
    {"hits:1|c|#a:b,,c:d", STATSD_BAD_TAGS},
    {"hits:1|c|#,a", STATSD_BAD_TAGS},
    {"hits:1|c|#a|#b", STATSD_BAD_TAGS},
    {"hits:1|c|x", STATSD_UNSUPPORTED},
    {"hits:1|c|c", STATSD_UNSUPPORTED},
    {"hits:1|c|cx", STATSD_UNSUPPORTED},
    {"hits:1|c|e:abc", STATSD_UNSUPPORTED},
    {"hits:1|c|card:low", STATSD_UNSUPPORTED},
    {"_e{5,4}:title|text", STATSD_UNSUPPORTED},
    {"_e{5,4}:title|text|#a:b", STATSD_UNSUPPORTED},
    {"_sc|my.check|0", STATSD_UNSUPPORTED},
    {"_sc|my.check|0|#a:b", STATSD_UNSUPPORTED},
};

static void test_bad_lines(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        statsd_line_t l;
        statsd_reason_t r = parse(bad[i].in, &l);
        if (r != bad[i].want)
            fail_msg("\"%s\": got %s, want %s", bad[i].in, statsd_reason_name(r),
                     statsd_reason_name(bad[i].want));
    }
}

static void test_reason_names(void **state) {
    (void)state;
    static const char *const want[] = {"ok",        "empty",    "bad_name",   "no_value",
                                       "bad_value", "no_type",  "bad_type",   "bad_rate",
                                       "bad_tags",  "too_long", "unsupported"};
    assert_int_equal(sizeof want / sizeof want[0], STATSD_REASON_COUNT);
    for (int i = 0; i < STATSD_REASON_COUNT; i++)
        assert_string_equal(statsd_reason_name((statsd_reason_t)i), want[i]);
    assert_non_null(statsd_reason_name(STATSD_REASON_COUNT));
    assert_non_null(statsd_reason_name((statsd_reason_t)-1));
}

/* ---- limits ------------------------------------------------------------------------- */

static char big[2 * STATSD_MAX_LINE];

static statsd_reason_t parse_fmt(statsd_line_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static statsd_reason_t parse_fmt(statsd_line_t *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(big, sizeof big, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof big);
    return statsd_parse_line(big, (size_t)n, l);
}

static void test_limits(void **state) {
    (void)state;
    statsd_line_t l;
    char name[STATSD_MAX_NAME + 2];
    memset(name, 'n', sizeof name);
    name[STATSD_MAX_NAME] = '\0';
    assert_int_equal(parse_fmt(&l, "%s:1|c", name), STATSD_OK);
    assert_int_equal(l.name_len, STATSD_MAX_NAME);
    name[STATSD_MAX_NAME] = 'n';
    name[STATSD_MAX_NAME + 1] = '\0';
    assert_int_equal(parse_fmt(&l, "%s:1|c", name), STATSD_TOO_LONG);

    /* line: exactly the limit passes, one more byte does not; a trailing '\r' is free */
    char pad[STATSD_MAX_LINE];
    const char *head = "m:1|c|#k:";
    size_t fill = STATSD_MAX_LINE - strlen(head);
    memset(pad, 'v', fill);
    pad[fill] = '\0';
    /* that value is over the tag limit: 16 long tags reach the line limit instead */
    char tags[STATSD_MAX_LINE + 1];
    size_t o = 0;
    for (int i = 0; i < STATSD_MAX_TAGS; i++) {
        size_t rest = STATSD_MAX_LINE - strlen("m:1|c|#") - o;
        size_t part = i ? 256 : 255; /* 255-byte keys, a ',' before all but the first */
        if (part > rest) part = rest;
        if (i) tags[o++] = ',';
        memset(tags + o, (char)('a' + i), part - (i ? 1 : 0));
        o += part - (i ? 1 : 0);
    }
    tags[o] = '\0';
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s", tags), STATSD_OK);
    assert_int_equal(strlen(big), STATSD_MAX_LINE);
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s\r", tags), STATSD_OK);
    assert_int_equal(parse_fmt(&l, "m:1|c|#%sx", tags), STATSD_TOO_LONG);
    assert_int_equal(parse_fmt(&l, "m:1|c|#k:%s", pad), STATSD_TOO_LONG);
    memset(big, ' ', STATSD_MAX_LINE + 1);
    assert_int_equal(statsd_parse_line(big, STATSD_MAX_LINE, &l), STATSD_EMPTY);
    assert_int_equal(statsd_parse_line(big, STATSD_MAX_LINE + 1, &l), STATSD_TOO_LONG);

    /* tag key and value: 255 bytes each at most */
    char t255[256], t256[257];
    memset(t255, 'k', 255);
    t255[255] = '\0';
    memset(t256, 'k', 256);
    t256[256] = '\0';
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s:%s", t255, t255), STATSD_OK);
    assert_int_equal(l.tags[0].key_len, 255);
    assert_int_equal(l.tags[0].value_len, 255);
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s:v", t256), STATSD_TOO_LONG);
    assert_int_equal(parse_fmt(&l, "m:1|c|#k:%s", t256), STATSD_TOO_LONG);
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s", t256), STATSD_TOO_LONG);

    /* tags: 16 fine, 17 too many */
    char many[256] = "";
    for (int i = 0; i < STATSD_MAX_TAGS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%st%d:%d", i ? "," : "", i, i);
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s", many), STATSD_OK);
    assert_int_equal(l.ntags, STATSD_MAX_TAGS);
    assert_mem(l.tags[15].key, l.tags[15].key_len, "t15");
    assert_mem(l.tags[15].value, l.tags[15].value_len, "15");
    assert_int_equal(parse_fmt(&l, "m:1|c|#%s,x", many), STATSD_BAD_TAGS);

    /* values: 64 fine, 65 over the limit */
    char vals[512] = "";
    for (int i = 0; i < STATSD_MAX_VALUES; i++)
        snprintf(vals + strlen(vals), sizeof vals - strlen(vals), "%s%d", i ? ":" : "", i);
    assert_int_equal(parse_fmt(&l, "m:%s|ms", vals), STATSD_OK);
    assert_int_equal(l.nvalues, STATSD_MAX_VALUES);
    for (int i = 0; i < STATSD_MAX_VALUES; i++)
        assert_true(l.values[i] == i);
    assert_int_equal(parse_fmt(&l, "m:%s:1|ms", vals), STATSD_TOO_LONG);
}

/* ---- sanitising --------------------------------------------------------------------- */

static void test_sanitize(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"a.b-c", "a_b_c"},
        {"1abc", "_1abc"},
        {"9", "_9"},
        {"_1", "_1"},
        {"é", "_"},                       /* one 2-byte character, one '_' */
        {"a€b", "a_b"},                   /* 3 bytes */
        {"x\xF0\x9F\x98\x80y", "x_y"},    /* 4 bytes (U+1F600) */
        {"a\xFFz", "a_z"},                /* invalid byte */
        {"a\xC3z", "a_z"},                /* truncated sequence: lead byte alone */
        {"a\xE2\x82z", "a__z"},           /* truncated 3-byte: each byte */
        {"a\xC0\xAFz", "a__z"},           /* overlong '/' */
        {"a\xED\xA0\x80z", "a___z"},      /* UTF-16 surrogate */
        {"a\xF4\x90\x80\x80z", "a____z"}, /* above U+10FFFF */
        {"\x80", "_"},                    /* stray continuation byte */
        {"a\xC3", "a_"},                  /* truncated at the end */
        {"Valid_Name_09", "Valid_Name_09"},
        {"a b\tc", "a_b_c"},
        {"my-app.requests:total", "my_app_requests_total"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        size_t n = statsd_sanitize(cases[i].in, strlen(cases[i].in), out, sizeof out);
        assert_int_equal(n, strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
    }
    /* cap: room for cap-1 bytes plus NUL, else 0 */
    char out[8];
    assert_int_equal(statsd_sanitize("abc", 3, out, 4), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(statsd_sanitize("abcd", 4, out, 4), 0);
    assert_string_equal(out, "");
    assert_int_equal(statsd_sanitize("1ab", 3, out, 4), 0); /* "_1ab" needs 5 */
    assert_int_equal(statsd_sanitize("1ab", 3, out, 5), 4);
    assert_string_equal(out, "_1ab");
    assert_int_equal(statsd_sanitize("1", 1, out, 1), 0);
    assert_int_equal(statsd_sanitize("a", 1, out, 1), 0);
    assert_int_equal(statsd_sanitize("a", 1, out, 0), 0);
    assert_int_equal(statsd_sanitize("é", 2, out, 2), 1); /* shrinks: 2 bytes in, 1 out */
    assert_string_equal(out, "_");
    /* the longest name and tag key the parser lets through fit their documented buffers */
    char name[STATSD_MAX_NAME], res[STATSD_MAX_NAME + 2];
    memset(name, '7', sizeof name);
    assert_int_equal(statsd_sanitize(name, sizeof name, res, sizeof res), STATSD_MAX_NAME + 1);
}

/* ---- numbers ------------------------------------------------------------------------ */

static const char *const ok_numbers[] = {
    "0",
    "-0",
    "+0",
    "1",
    "-1",
    "+4",
    "0.1",
    "0.2",
    "0.3",
    "1e-7",
    "-3.5e10",
    "1.",
    ".5",
    "-.5",
    "+.5",
    "1E5",
    "1e+5",
    "2.5e-3",
    "123456789012345678",
    "3.141592653589793",
    "2.718281828459045",
    "9007199254740992",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "1e22",
    "1e23",
    "1e-22",
    "1e-23",
    "4.9e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "1e-400",
    "0.000001",
    "0000001.5000",
    "100000000000000000000000",
    "0.1000000000000000055511151231257827",
    "123.456",
    "99.99",
    "1234567.891",
    "42",
    "1e0",
    "0e999999",
    "5e-1",
    "0.30000000000000004",
    "8.98846567431158e307",
    "1.00000000000000011102230246251565404236316680908203125",
    "0.000000000000000000000000000000000000000000001",
    "7.2057594037927933e16",
    "3.0517578125e-05",
    "1448997445238699",
    "295147905179352825856",
};

static const char *const bad_numbers[] = {
    "",       " 1",    "1 ",           "1e",   "1e+",   "e5",    "--1",      "+-1",
    "0x10",   "0X1p3", "nan",          "NaN",  "inf",   "-inf",  "infinity", ".",
    "-",      "+",     "-.",           "1..2", "1.2.3", "1e5.5", "1,5",      "1e999",
    "-1e999", "1_000", "\xef\xbc\x91", "1f",   "1\n",
};

static void test_parse_double_vs_strtod(void **state) {
    (void)state;
    const char *const *ok = ok_numbers;
    size_t nok = sizeof ok_numbers / sizeof ok_numbers[0];
    for (size_t i = 0; i < nok; i++) {
        double got = -12345, want = strtod(ok[i], NULL);
        if (statsd_parse_double(ok[i], strlen(ok[i]), &got) != 0) fail_msg("%s rejected", ok[i]);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("%s: got %.17g want %.17g", ok[i], got, want);
    }
    const char *const *no = bad_numbers;
    size_t nno = sizeof bad_numbers / sizeof bad_numbers[0];
    for (size_t i = 0; i < nno; i++) {
        double got = 0;
        if (statsd_parse_double(no[i], strlen(no[i]), &got) == 0)
            fail_msg("\"%s\" accepted as %g", no[i], got);
    }
    double v;
    assert_int_equal(statsd_parse_double("12345", 2, &v), 0); /* length, not NUL, ends it */
    assert_true(v == 12);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Random decimal strings of every shape the grammar allows, exact bits against strtod. */
static void test_parse_double_random(void **state) {
    (void)state;
    char s[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t o = 0;
        uint64_t r = xorshift64();
        if (r & 1) s[o++] = (r & 2) ? '-' : '+';
        int ni = (int)((r >> 2) % 22), nf = (int)((r >> 7) % 22);
        if (ni == 0 && nf == 0) ni = 1;
        for (int k = 0; k < ni; k++)
            s[o++] = (char)('0' + xorshift64() % 10);
        if (nf || (r & (1u << 12))) s[o++] = '.';
        for (int k = 0; k < nf; k++)
            s[o++] = (char)('0' + xorshift64() % 10);
        if (r & (1u << 13)) {
            s[o++] = (r & (1u << 14)) ? 'e' : 'E';
            if (r & (1u << 15)) s[o++] = (r & (1u << 16)) ? '-' : '+';
            o += (size_t)snprintf(s + o, sizeof s - o, "%d", (int)((r >> 17) % 330));
        }
        s[o] = '\0';
        double want = strtod(s, NULL), got = 0;
        int rc = statsd_parse_double(s, o, &got);
        if (!isfinite(want)) {
            assert_int_equal(rc, -1);
            continue;
        }
        if (rc != 0) fail_msg("%s rejected", s);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("%s: got %.17g want %.17g", s, got, want);
    }
}

/* The two number paths — the general parser and parse_double, which tries the plain-
 * decimal shortcut first (the fast path uses the same pair) — accept exactly the same texts
 * and give the same bits, which are strtod's. Every string of up to 5 characters over the
 * characters numbers are made of, then random longer ones with other bytes mixed in; the
 * bytes after the text are digits and delimiters on purpose (the length, not a terminator,
 * ends a number). */
static void check_number_paths(const char *s, size_t n) {
    char buf[64];
    assert_true(n + 8 <= sizeof buf);
    memcpy(buf, s, n);
    static const char junk[] = "9.|:e+-0";
    for (size_t k = 0; k < 8; k++) buf[n + k] = junk[(n + k) % 8];
    double g = 1, f = 2;
    int rg = statsd__parse_double_general(buf, n, &g);
    int rf = statsd_parse_double(buf, n, &f);
    if (rg != rf) fail_msg("\"%.*s\": general %d, parse_double %d", (int)n, s, rg, rf);
    if (rg != 0) return;
    char z[64];
    memcpy(z, s, n);
    z[n] = '\0';
    char *end;
    double want = strtod(z, &end);
    assert_true(end == z + n);
    if (memcmp(&g, &want, 8) || memcmp(&f, &want, 8))
        fail_msg("\"%s\": general %.17g, parse_double %.17g, strtod %.17g", z, g, f, want);
}

static void test_number_paths(void **state) {
    (void)state;
    static const char alpha[] = "0123456789.-+e";
    const size_t na = sizeof alpha - 1;
    char s[16];
    for (size_t len = 0; len <= 5; len++) {
        size_t total = 1;
        for (size_t k = 0; k < len; k++) total *= na;
        for (size_t code = 0; code < total; code++) {
            size_t c = code;
            for (size_t k = 0; k < len; k++, c /= na) s[k] = alpha[c % na];
            check_number_paths(s, len);
        }
    }
    static const char mix[] = "0123456789012345678901234567890123456789...--++eE x|:#\x80";
    for (int iter = 0; iter < 300000; iter++) {
        uint64_t r = xorshift64();
        size_t len = 6 + (size_t)(r % 10);
        for (size_t k = 0; k < len; k++) s[k] = mix[xorshift64() % (sizeof mix - 1)];
        check_number_paths(s, len);
    }
    for (size_t i = 0; i < sizeof ok_numbers / sizeof ok_numbers[0]; i++)
        if (strlen(ok_numbers[i]) + 8 <= 64) check_number_paths(ok_numbers[i], strlen(ok_numbers[i]));
    for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++)
        check_number_paths(bad_numbers[i], strlen(bad_numbers[i]));
}

/* Every implementation of the scan this machine has (and statsd_scan's choice) marks the
 * same bytes as the byte-by-byte one, for every length around the 16-, 32- and 64-byte
 * steps and the tail, and nothing past len is marked. Returns false when the variant is
 * not available here. */
static bool check_scan_variant(int variant, const char *buf) {
    static statsd_scan_t a, b;
    for (size_t len = 0; len <= STATSD_SCAN_MAX; len += len < 300 ? 1 : 997) {
        if (variant < 0) statsd_scan(&a, buf, len);
        else if (statsd__scan_variant(variant, &a, buf, len) < 0) return false;
        statsd__scan_bytes(&b, buf, len);
        size_t words = (len + 63) / 64 + 1;
        for (size_t w = 0; w < words; w++) {
            if (a.nl[w] != b.nl[w] || a.colon[w] != b.colon[w] || a.bar[w] != b.bar[w])
                fail_msg("variant %d, len %zu: word %zu differs", variant, len, w);
        }
        if (len % 64) { /* the marks stop at len although the bytes after it are specials */
            uint64_t past = ~(uint64_t)0 << (len % 64);
            size_t w = len / 64;
            assert_true(((a.nl[w] | a.colon[w] | a.bar[w]) & past) == 0);
        }
    }
    return true;
}

static void test_scan_marks(void **state) {
    (void)state;
    static char buf[STATSD_SCAN_MAX + 64];
    static const char alpha[] = "\n:|ab|:\n0.#,@";
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = alpha[xorshift64() % (sizeof alpha - 1)];
    int tested = 0;
    for (int variant = -1; variant <= 3; variant++) tested += check_scan_variant(variant, buf);
    assert_true(tested >= 2);
#if defined(__x86_64__)
    assert_true(tested >= 3); /* SSE2 at least */
#endif
}

/* ---- the fast path against the reference ------------------------------------------- */

/* The fast path's verdict on one line, placed in a datagram at offset off (after filler
 * lines) and followed by more lines or not: if it took the line, the reference parser must
 * agree on everything the fast path reports — or reject the line for its tags only, which
 * the fast path does not check (the aggregation table then does not know the identity).
 * Returns whether the fast path took it. */
static bool check_fast_line(const char *line, size_t n, size_t off, bool more) {
    static char dg[STATSD_SCAN_MAX];
    static statsd_scan_t sc;
    static statsd_sample_t out[INGEST_BATCH_TEST];
    assert_true(off + n + 16 <= sizeof dg);
    size_t len = 0;
    while (len + 2 <= off) { /* filler lines: "x:1|c\n" and blank lines */
        static const char fill[] = "f:1|c\n";
        if (off - len >= sizeof fill - 1) {
            memcpy(dg + len, fill, sizeof fill - 1);
            len += sizeof fill - 1;
        } else {
            dg[len++] = '\n';
        }
    }
    while (len < off) dg[len++] = '\n';
    memcpy(dg + len, line, n);
    len += n;
    if (more) {
        memcpy(dg + len, "\ng:2|g\n", 7);
        len += 7;
    }
    if (off == len) return false; /* an empty line with nothing after it is no line */
    statsd_scan(&sc, dg, len);
    size_t pos = 0, k = 0, got = 0;
    bool found = false, fast = false;
    while (pos < len && !found) {
        got = statsd_parse_lines(&sc, &pos, out, INGEST_BATCH_TEST);
        for (k = 0; k < got; k++) {
            if (out[k].name == dg + off) {
                found = true;
                break;
            }
        }
    }
    assert_true(found);
    const statsd_sample_t *f = &out[k];
    if (f->len != n) fail_msg("\"%.*s\" at %zu: line length %u, want %zu", (int)n, line, off, f->len, n);
    if (!f->parsed) return false;
    fast = true;
    statsd_line_t l;
    statsd_reason_t r = statsd_parse_line(dg + off, n, &l);
    if (r != STATSD_OK) {
        if (!(f->tags && (r == STATSD_BAD_TAGS || r == STATSD_TOO_LONG)))
            fail_msg("\"%.*s\": fast path took it, reference says %s", (int)n, line,
                     statsd_reason_name(r));
        return fast;
    }
    if (f->name != l.name || f->name_len != l.name_len || f->kind != l.kind ||
        f->gauge_delta != l.gauge_delta || memcmp(&f->rate, &l.rate, sizeof f->rate) ||
        f->tags != l.tags_raw || f->tags_len != l.tags_raw_len)
        fail_msg("\"%.*s\": fast and reference parses differ", (int)n, line);
    if (l.kind == METRIC_SET) {
        assert_true(f->member == l.member && f->member_len == l.member_len);
    } else {
        assert_int_equal(l.nvalues, 1);
        assert_memory_equal(&f->value, &l.values[0], sizeof f->value);
    }
    return fast;
}

/* Every line in several places: first, after filler lines, across a 64-byte word, last
 * with and without '\n'. */
static bool check_fast_everywhere(const char *line) {
    size_t n = strlen(line);
    static const size_t offs[] = {0, 6, 57, 63, 64, 100, 250};
    bool any = false;
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        bool a = check_fast_line(line, n, offs[i], true);
        bool b = check_fast_line(line, n, offs[i], false);
        if (a != b) fail_msg("\"%s\": the fast path's verdict depends on what follows", line);
        any |= a;
    }
    return any;
}

static void test_fast_path_vs_reference(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) check_fast_everywhere(good[i].in);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) check_fast_everywhere(bad[i].in);
    /* the common shapes must take the fast path */
    static const char *const common[] = {
        "a:1|c",
        "app.requests:1|c|@0.5",
        "app.requests:1|c|#env:prod,host:a",
        "app.requests:1|c|@0.1|#env:prod",
        "app.requests:1|c|#env:prod|@0.1",
        "temp:-3.5|g",
        "temp:+3|g",
        "lat:12.25|ms",
        "lat:12.25|h|@0.25",
        "lat:7|d",
        "users:alice|s",
        "users:a:b|s|#x:y",
        "x:1e3|g", /* an exponent: the general number parser, still the fast path */
        "a.very.long.metric.name.that.takes.this.line.past.sixty.four.bytes:1|c|#k:v",
    };
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        if (!check_fast_everywhere(common[i])) fail_msg("\"%s\" missed the fast path", common[i]);
    /* random mutations of valid lines */
    static const char edit[] = ":|#@,.\r -+e0123456789abc_\t:||@#";
    char buf[300];
    for (int iter = 0; iter < 60000; iter++) {
        const char *base = good[xorshift64() % (sizeof good / sizeof good[0])].in;
        size_t n = strlen(base);
        if (n + 8 > sizeof buf) continue;
        memcpy(buf, base, n);
        int edits = 1 + (int)(xorshift64() % 3);
        for (int e = 0; e < edits; e++) {
            uint64_t r = xorshift64();
            size_t at = n ? (size_t)(r % (n + 1)) : 0;
            char c = edit[(r >> 16) % (sizeof edit - 1)];
            switch ((r >> 32) % 3) {
            case 0: /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
                break;
            case 1: /* delete */
                if (at < n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            default: /* replace */
                if (at < n) buf[at] = c;
                break;
            }
        }
        size_t off = (size_t)(xorshift64() % 130);
        check_fast_line(buf, n, off, xorshift64() & 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_parse_double_vs_strtod),
        cmocka_unit_test(test_parse_double_random),
        cmocka_unit_test(test_number_paths),
        cmocka_unit_test(test_scan_marks),
        cmocka_unit_test(test_fast_path_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
