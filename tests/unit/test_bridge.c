/* bridge + cursor: what hubs exchange through NATS. Round trips of every message kind
 * (events keep their envelope, origin seq and previous seq; batches keep every kind's
 * figures bit for bit, sketches and set members included; sources keep their fields), a
 * large batch split into messages, and a table of malformed messages each refused with
 * its reason. Cursors: parse, format, covers, limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "agg.h"
#include "bridge.h"
#include "cursor.h"
#include "event.h"
#include "sources.h"
#include "statsd.h"

static const char RND[6] = {'a', 'b', 'c', '1', '2', '3'};

/* ---- cursor --------------------------------------------------------------------------- */

static void test_cursor_roundtrip(void **st) {
    (void)st;
    cursor_t c;
    assert_int_equal(cursor_parse("A:1,hub-2:300,x_y:0", 19, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(cursor_get(&c, "A"), 1);
    assert_int_equal(cursor_get(&c, "hub-2"), 300);
    assert_int_equal(cursor_get(&c, "missing"), 0);
    assert_true(cursor_covers(&c, "hub-2", 300));
    assert_false(cursor_covers(&c, "hub-2", 301));
    assert_false(cursor_covers(&c, "other", 1));
    assert_int_equal(cursor_set(&c, "A", 9), 0);
    char text[CURSOR_TEXT_MAX];
    size_t n = cursor_format(&c, text, sizeof text);
    assert_string_equal(text, "A:9,hub-2:300,x_y:0");
    assert_int_equal(n, strlen(text));
    assert_int_equal(cursor_parse("", 0, &c), 0);
    assert_int_equal(c.n, 0);
    char small[4];
    assert_int_equal(cursor_parse("A:12345", 7, &c), 0);
    assert_int_equal(cursor_format(&c, small, sizeof small), 0);
    assert_string_equal(small, "");
}

static void test_cursor_refuses(void **st) {
    (void)st;
    static const char *const bad[] = {"A", "A:", ":1", "A:1,", "A:1,A:2", "A:x", "A:-1",
                                      "a b:1", "A:1;B:2", "A:99999999999999999999",
                                      "A:1,,B:2", "A.B:1"};
    cursor_t c;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (cursor_parse(bad[i], strlen(bad[i]), &c) != -EINVAL) fail_msg("accepted: %s", bad[i]);
    char id[80];
    memset(id, 'a', 65);
    id[65] = '\0';
    assert_int_equal(cursor_set(&c, id, 1), -EINVAL);
    cursor_init(&c);
    for (int i = 0; i < CURSOR_MAX_HUBS; i++) {
        snprintf(id, sizeof id, "h%d", i);
        assert_int_equal(cursor_set(&c, id, (uint64_t)i), 0);
    }
    assert_int_equal(cursor_set(&c, "one-more", 1), -ENOSPC);
    char text[CURSOR_TEXT_MAX];
    assert_true(cursor_format(&c, text, sizeof text) > 0);
    cursor_t back;
    assert_int_equal(cursor_parse(text, strlen(text), &back), 0);
    assert_int_equal(back.n, CURSOR_MAX_HUBS);
}

/* ---- events ---------------------------------------------------------------------------- */

static void test_event_roundtrip(void **st) {
    (void)st;
    event_t *e = event_make("tasks.created", "{\"n\":1,\"s\":\"\\u00e9\"}", "corr-1", 1703001234.5, RND);
    assert_non_null(e);
    buf_t b = BUF_INIT;
    assert_int_equal(bridge_encode_event("hub-A", 42, 40, false, e, &b), 0);
    bridge_msg_t m;
    char err[256];
    assert_int_equal(bridge_decode(b.data, b.len, 1, &m, err, sizeof err), BRIDGE_OK);
    assert_int_equal(m.kind, BRIDGE_EVENT);
    assert_string_equal(m.hub, "hub-A");
    assert_int_equal(m.oseq, 42);
    assert_int_equal(m.prev, 40);
    assert_string_equal(m.event->id, e->id);
    assert_string_equal(m.event->envelope, e->envelope); /* canonical both ways */
    assert_true(m.event->timestamp == e->timestamp);
    assert_int_equal(m.event->seq, 0);
    assert_false(m.replay);
    bridge_msg_free(&m);
    buf_reset(&b);
    assert_int_equal(bridge_encode_event("hub-A", 43, 42, true, e, &b), 0);
    assert_int_equal(bridge_decode(b.data, b.len, 1, &m, err, sizeof err), BRIDGE_OK);
    assert_true(m.replay);
    bridge_msg_free(&m);
    buf_reset(&b);
    assert_int_equal(bridge_encode_replay("B", "hub-A", 41, &b), 0);
    assert_int_equal(bridge_decode(b.data, b.len, 1, &m, err, sizeof err), BRIDGE_OK);
    assert_int_equal(m.kind, BRIDGE_REPLAY);
    assert_string_equal(m.hub, "B");
    assert_string_equal(m.to, "hub-A");
    assert_int_equal(m.after, 41);
    bridge_msg_free(&m);
    buf_free(&b);
    event_unref(e);
}

/* ---- samples ------------------------------------------------------------------------ */

static void add_line(agg_t *a, const char *text) {
    statsd_line_t l;
    assert_int_equal(statsd_parse_line(text, strlen(text), &l), STATSD_OK);
    assert_int_equal(agg_add(a, &l), STATSD_OK);
}

static const agg_delta_t *find(const agg_batch_t *b, const char *name) {
    for (uint32_t i = 0; i < b->n; i++)
        if (strcmp(skey_name(b->d[i].key), name) == 0) return &b->d[i];
    fail_msg("no delta %s", name);
    return NULL;
}

static void test_samples_roundtrip(void **st) {
    (void)st;
    agg_t a;
    agg_init(&a, 0);
    add_line(&a, "reqs:3|c|@0.5|#route:/x,source:r1");
    add_line(&a, "temp:21.25|g");
    add_line(&a, "level:-1.5|g");
    add_line(&a, "lat:10|ms");
    add_line(&a, "lat:0|ms");
    add_line(&a, "lat:-3|ms");
    add_line(&a, "lat:2000|ms");
    add_line(&a, "users:alice|s");
    add_line(&a, "users:bob|s");
    int err = 0;
    agg_batch_t *b = agg_flush(&a, INGEST_HTTP, 0, &err);
    assert_non_null(b);
    buf_t out = BUF_INIT;
    uint32_t next;
    assert_int_equal(bridge_encode_samples("A", b, 0, &next, &out), 0);
    assert_int_equal(next, b->n);
    bridge_msg_t m;
    char e[256];
    assert_int_equal(bridge_decode(out.data, out.len, 0, &m, e, sizeof e), BRIDGE_OK);
    assert_int_equal(m.kind, BRIDGE_SAMPLES);
    assert_int_equal(m.batch->n, b->n);
    for (uint32_t i = 0; i < b->n; i++) {
        const agg_delta_t *x = &b->d[i];
        const agg_delta_t *y = find(m.batch, skey_name(x->key));
        assert_true(skey_equal(x->key, y->key));
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->nlines, y->nlines);
        switch (x->kind) {
        case METRIC_COUNTER: assert_true(x->v.counter == y->v.counter); break;
        case METRIC_GAUGE:
            assert_int_equal(x->v.gauge.has_abs, y->v.gauge.has_abs);
            assert_true(x->v.gauge.abs == y->v.gauge.abs || !x->v.gauge.has_abs);
            assert_true(x->v.gauge.delta == y->v.gauge.delta);
            break;
        case METRIC_TIMER: {
            const sketch_t *s = x->v.timer, *t = y->v.timer;
            assert_true(s->count == t->count && s->sum == t->sum && s->min == t->min &&
                        s->max == t->max && s->zero == t->zero);
            assert_int_equal(s->pos.offset, t->pos.offset);
            assert_int_equal(s->pos.len, t->pos.len);
            assert_memory_equal(s->pos.counts, t->pos.counts, s->pos.len * sizeof(double));
            assert_int_equal(s->neg.len, t->neg.len);
            for (double q = 0; q <= 1.0; q += 0.25)
                assert_true(sketch_quantile(s, q) == sketch_quantile(t, q));
            break;
        }
        case METRIC_SET: assert_int_equal(x->v.set.n, y->v.set.n); break;
        default: fail();
        }
    }
    assert_true(find(m.batch, "reqs")->v.counter == 6); /* 3 at rate 0.5 */
    bridge_msg_free(&m);
    buf_free(&out);
    agg_batch_free(b);
    agg_free(&a);
}

static void test_samples_split(void **st) {
    (void)st;
    agg_t a;
    agg_init(&a, 0);
    char line[64];
    for (int i = 0; i < BRIDGE_MAX_DELTAS * 2 + 7; i++) {
        snprintf(line, sizeof line, "g%d:%d|g", i, i);
        add_line(&a, line);
    }
    int err = 0;
    agg_batch_t *b = agg_flush(&a, INGEST_UDP, 0, &err);
    uint32_t from = 0, total = 0, msgs = 0;
    while (from < b->n) {
        buf_t out = BUF_INIT;
        uint32_t next;
        assert_int_equal(bridge_encode_samples("A", b, from, &next, &out), 0);
        assert_true(next > from);
        assert_true(out.len <= BRIDGE_MAX_BYTES);
        bridge_msg_t m;
        char e[256];
        assert_int_equal(bridge_decode(out.data, out.len, 0, &m, e, sizeof e), BRIDGE_OK);
        total += m.batch->n;
        msgs++;
        bridge_msg_free(&m);
        buf_free(&out);
        from = next;
    }
    assert_int_equal(total, b->n);
    assert_int_equal(msgs, 3);
    agg_batch_free(b);
    agg_free(&a);
}

/* ---- sources --------------------------------------------------------------------------- */

static void test_sources_roundtrip(void **st) {
    (void)st;
    sources_t s;
    sources_init(&s);
    assert_int_equal(sources_online(&s, "robot_1", "sess-1", "{\"model\":\"x1\"}", 100.5), 1);
    assert_int_equal(sources_online(&s, "robot_2", "sess-2", "{}", 101), 1);
    sources_offline(&s, "robot_2", "sess-2", 102);
    assert_int_equal(sources_builtin(&s, "host", "{}", 90), 0);
    buf_t b = BUF_INIT;
    assert_int_equal(bridge_encode_sources("B", &s, 103.25, 7, &b), 0);
    bridge_msg_t m;
    char e[256];
    assert_int_equal(bridge_decode(b.data, b.len, 0, &m, e, sizeof e), BRIDGE_OK);
    assert_int_equal(m.kind, BRIDGE_SOURCES);
    assert_true(m.at == 103.25);
    assert_int_equal(m.last, 7);
    assert_int_equal(m.nsources, 1); /* online only, the built-in host source stays home */
    assert_string_equal(m.sources[0].id, "robot_1");
    assert_string_equal(m.sources[0].session_id, "sess-1");
    assert_true(m.sources[0].connected_at == 100.5);
    assert_string_equal(m.sources[0].attrs, "{\"model\":\"x1\"}");
    bridge_msg_free(&m);
    buf_free(&b);
    sources_free(&s);
}

/* ---- refusals -------------------------------------------------------------------------- */

static void test_refusals(void **st) {
    (void)st;
    static const struct {
        const char *msg;
        bridge_err_t want;
    } cases[] = {
        {"", BRIDGE_E_JSON},
        {"not json", BRIDGE_E_JSON},
        {"[1,2]", BRIDGE_E_JSON},
        {"{\"k\":\"event\",\"hub\":\"A\"}", BRIDGE_E_VERSION},
        {"{\"v\":2,\"k\":\"event\",\"hub\":\"A\"}", BRIDGE_E_VERSION},
        {"{\"v\":\"1\",\"k\":\"event\",\"hub\":\"A\"}", BRIDGE_E_VERSION},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"v\":1}", BRIDGE_E_JSON}, /* duplicate key */
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"a.b\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"hub\":\"A\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"nope\",\"hub\":\"A\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"oseq\":0,\"prev\":0,\"event\":{}}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"oseq\":2,\"prev\":2,\"event\":{}}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"oseq\":2,\"prev\":1,\"event\":{\"type\":\"bad\"}}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"oseq\":2,\"prev\":1,\"event\":{\"type\":\"a.b\"}}",
         BRIDGE_E_FIELD}, /* no id or timestamp: not a complete envelope */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"x\",\"n\",{},1,1,null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"c\",\"\",{},1,1,null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"c\",\"n\",{\"__x\":\"1\"},1,1,null]]}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"c\",\"n\",{\"a\":1},1,1,null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"c\",\"n\",{},-1,1,null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"c\",\"n\",{},1,\"1\",null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"g\",\"n\",{},1,null]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,0,0,0,0,0,[0,0,[]],[0,0,[]]]]}",
         BRIDGE_E_FIELD}, /* count 0 */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,2,3,1,2,0,[0,1,[0,1]],[0,0,[]]]]}",
         BRIDGE_E_FIELD}, /* weights add up to 1, not 2 */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,1,3,5,2,0,[0,1,[0,1]],[0,0,[]]]]}",
         BRIDGE_E_FIELD}, /* min > max */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,1,3,1,2,0,[0,1,[0,-1]],[0,1,[0,2]]]]}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,1,3,1,2,0,[0,2,[1,1,0,0]],[0,0,[]]]]}",
         BRIDGE_E_FIELD}, /* indexes must grow */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,1,3,1,2,0,[0,1,[1,1]],[0,0,[]]]]}",
         BRIDGE_E_FIELD}, /* index beyond the length */
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"t\",\"n\",{},1,1,3,1,2,0,[9999999,1,[0,1]],[0,0,[]]]]}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"s\",\"n\",{},1,[\"xyz\"]]]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"samples\",\"hub\":\"A\",\"d\":[[\"s\",\"n\",{},1,[\"00000000000000FG\"]]]}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"sources\",\"hub\":\"A\",\"sources\":[]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"sources\",\"hub\":\"A\",\"at\":1,\"last\":-1,\"sources\":[]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"replay\",\"hub\":\"A\",\"to\":\"B\"}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"replay\",\"hub\":\"A\",\"to\":\"B.C\",\"after\":1}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"event\",\"hub\":\"A\",\"oseq\":2,\"prev\":1,\"replay\":1,\"event\":{}}",
         BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"sources\",\"hub\":\"A\",\"at\":1,\"sources\":[{\"id\":\"bad id\","
         "\"session_id\":\"s\",\"connected_at\":1,\"last_seen\":1,\"attrs\":{}}]}", BRIDGE_E_FIELD},
        {"{\"v\":1,\"k\":\"sources\",\"hub\":\"A\",\"at\":1,\"sources\":[{\"id\":\"ok\","
         "\"session_id\":\"s\",\"connected_at\":1,\"last_seen\":1,\"attrs\":[]}]}", BRIDGE_E_FIELD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bridge_msg_t m;
        char err[256];
        bridge_err_t got = bridge_decode(cases[i].msg, strlen(cases[i].msg), 0, &m, err, sizeof err);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): got %s, want %s (%s)", i, cases[i].msg, bridge_err_name(got),
                     bridge_err_name(cases[i].want), err);
        assert_true(err[0] != '\0');
        assert_null(m.event);
        assert_null(m.batch);
    }
    /* too large: refused before parsing */
    size_t n = BRIDGE_MAX_BYTES + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    bridge_msg_t m;
    char err[256];
    assert_int_equal(bridge_decode(big, n, 0, &m, err, sizeof err), BRIDGE_E_TOO_LARGE);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_roundtrip), cmocka_unit_test(test_cursor_refuses),
        cmocka_unit_test(test_event_roundtrip),  cmocka_unit_test(test_samples_roundtrip),
        cmocka_unit_test(test_samples_split),    cmocka_unit_test(test_sources_roundtrip),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
