/* procstat: the process's own figures against what the test itself does to them. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "procstat.h"

static void test_open_fds_follow_the_process(void **state) {
    (void)state;
    procstat_t a, b, c;
    assert_int_equal(procstat_read(&a), 0);
    assert_true(a.open_fds >= 3); /* stdin, stdout, stderr at least */
    int fds[50];
    for (int i = 0; i < 50; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    assert_int_equal(procstat_read(&b), 0);
    assert_int_equal(b.open_fds, a.open_fds + 50);
    for (int i = 0; i < 50; i++) close(fds[i]);
    assert_int_equal(procstat_read(&c), 0);
    assert_int_equal(c.open_fds, a.open_fds);
}

static void test_limits_and_usage(void **state) {
    (void)state;
    procstat_t p;
    assert_int_equal(procstat_read(&p), 0);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(p.max_fds, (uint64_t)rl.rlim_cur);
    assert_true(p.rss_bytes > 0);
    assert_true(p.vsize_bytes >= p.rss_bytes);
    assert_true(p.threads >= 1);
    assert_true(p.start_time > 1.5e9); /* a Unix time, not ticks since boot */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_fds_follow_the_process),
        cmocka_unit_test(test_limits_and_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
