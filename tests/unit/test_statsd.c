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

static void test_parse_double_vs_strtod(void **state) {
    (void)state;
    static const char *const ok[] = {
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
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double got = -12345, want = strtod(ok[i], NULL);
        if (statsd_parse_double(ok[i], strlen(ok[i]), &got) != 0) fail_msg("%s rejected", ok[i]);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("%s: got %.17g want %.17g", ok[i], got, want);
    }
    static const char *const no[] = {
        "",       " 1",    "1 ",           "1e",   "1e+",   "e5",    "--1",      "+-1",
        "0x10",   "0X1p3", "nan",          "NaN",  "inf",   "-inf",  "infinity", ".",
        "-",      "+",     "-.",           "1..2", "1.2.3", "1e5.5", "1,5",      "1e999",
        "-1e999", "1_000", "\xef\xbc\x91", "1f",   "1\n",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
