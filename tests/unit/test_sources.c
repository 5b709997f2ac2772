/* sources: the built-in source (the host source's `host`) stays online with its own attrs
 * whatever sessions say hello under its id; ordinary sources come and go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "sources.h"

static void test_builtin_source_stays(void **state) {
    (void)state;
    sources_t s;
    sources_init(&s);
    assert_int_equal(sources_builtin(&s, "host", "{\"kind\":\"builtin\"}", 100), 0);
    source_info_t *h = sources_find(&s, "host");
    assert_non_null(h);
    assert_true(h->online && h->builtin);
    assert_int_equal(s.online, 1);
    assert_string_equal(h->session_id, "builtin");
    /* a session naming itself `host`: counted as an attempt, changes nothing else */
    assert_int_equal(sources_online(&s, "host", "ws_0_1", "{\"x\":1}", 110), 2);
    assert_string_equal(h->attrs, "{\"kind\":\"builtin\"}");
    assert_string_equal(h->session_id, "builtin");
    assert_false(sources_offline(&s, "host", "ws_0_1", 120));
    assert_false(sources_offline(&s, "host", "builtin", 120));
    assert_true(h->online);
    assert_int_equal(s.online, 1);
    sources_seen(&s, "host", 130);
    assert_true(h->last_seen == 130);
    /* an ordinary source beside it */
    assert_int_equal(sources_online(&s, "robot_1", "ws_0_2", NULL, 140), 1);
    assert_int_equal(s.online, 2);
    assert_true(sources_offline(&s, "robot_1", "ws_0_2", 150));
    assert_int_equal(s.online, 1);
    buf_t b = BUF_INIT;
    assert_int_equal(sources_json(&s, &b), 0);
    assert_non_null(strstr(b.data, "\"id\":\"host\",\"status\":\"online\""));
    buf_free(&b);
    sources_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_source_stays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
