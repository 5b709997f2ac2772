/* libFuzzer target for the /proc parsers of the host source: the whole input through every
 * parser (a fake or damaged /proc file may hold anything), each record checked against
 * the header's contracts: names are short NUL-terminated strings of the promised
 * alphabet, label strings are valid UTF-8, counts stay in range. The UTF-8 cleaner and the
 * filters get the input too. Built by scripts/fuzz.sh. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int word(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* Valid UTF-8 as host_utf8_clean promises: what it outputs, it outputs unchanged. */
static int valid_utf8(const char *s) {
    char again[HOST_PATH_MAX + 8];
    size_t n = strlen(s);
    if (n >= sizeof again) return 0;
    size_t m = host_utf8_clean(s, n, again, sizeof again);
    return m == n && memcmp(again, s, n) == 0;
}

static void on_cpu(void *ctx, const host_cpu_t *c) {
    (void)ctx;
    assert(c->id >= -1);
    assert(c->nfields >= 4 && c->nfields <= HOST_CPU_FIELDS);
}

static void on_mem(void *ctx, const char *name, double v, bool bytes) {
    (void)ctx, (void)bytes;
    assert(word(name));
    assert(v >= 0);
}

static void on_disk(void *ctx, const host_disk_t *d) {
    (void)ctx;
    size_t n = strlen(d->name);
    assert(n > 0 && n < sizeof d->name);
    assert(d->nfields > HOST_DISK_IO_WEIGHTED_MS && d->nfields <= HOST_DISK_FIELDS);
    (void)host_disk_ignored(d->name);
}

static void on_mount(void *ctx, const host_mount_t *m) {
    (void)ctx;
    assert(valid_utf8(m->device) && valid_utf8(m->fstype) && valid_utf8(m->mountpoint));
    assert(strlen(m->path) < HOST_PATH_MAX);
    (void)host_mountpoint_ignored(m->mountpoint);
    (void)host_fstype_ignored(m->fstype);
}

static void on_net(void *ctx, const host_netdev_t *d) {
    (void)ctx;
    size_t n = strlen(d->name);
    assert(n > 0 && n < sizeof d->name);
    for (size_t i = 0; i < n; i++) assert((unsigned char)d->name[i] > ' ');
}

static void on_stat(void *ctx, const char *proto, const char *field, double v) {
    (void)ctx, (void)v;
    assert(word(proto) && word(field));
    (void)host_netstat_wanted(proto, field);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    host_stat_t st;
    int r = host_parse_stat(s, size, &st, on_cpu, NULL);
    assert(r >= -1);
    host_loadavg_t la;
    r = host_parse_loadavg(s, size, &la);
    assert(r >= -1 && r <= 1);
    if (r == 0) assert(la.load1 >= 0 && la.load5 >= 0 && la.load15 >= 0);
    assert(host_parse_meminfo(s, size, on_mem, NULL) >= -1);
    assert(host_parse_diskstats(s, size, on_disk, NULL) >= -1);
    assert(host_parse_mountinfo(s, size, on_mount, NULL) >= -1);
    assert(host_parse_netdev(s, size, on_net, NULL) >= -1);
    assert(host_parse_netstat(s, size, on_stat, NULL) >= -1);
    assert(host_parse_snmp6(s, size, on_stat, NULL) >= -1);
    host_tcp_t t;
    memset(&t, 0, sizeof t);
    assert(host_parse_tcp(s, size, &t) >= -1);
    uint64_t sum = 0;
    for (int i = 0; i < HOST_TCP_STATES; i++) sum += t.state[i];
    assert(t.state[0] == 0 && sum <= size);
    uint64_t a, m;
    (void)host_parse_file_nr(s, size, &a, &m);
    int64_t v;
    (void)host_parse_i64(s, size, &v);

    /* the cleaner: bounded, NUL-terminated, idempotent */
    char out[256];
    size_t n = host_utf8_clean(s, size, out, sizeof out);
    assert(n < sizeof out && out[n] == '\0');
    assert(valid_utf8(out));

    /* the filters take C strings: the input up to its first NUL */
    char *z = malloc(size + 1);
    if (!z) return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    (void)host_disk_ignored(z);
    (void)host_mountpoint_ignored(z);
    (void)host_fstype_ignored(z);
    (void)host_is_pid_name(z);
    free(z);
    return 0;
}
