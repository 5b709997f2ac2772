/* host_parse: every /proc format from its text (real samples from Linux 6.x and older
 * layouts), odd and truncated content (counted as malformed, the rest still read, never
 * a crash), the UTF-8 cleaning of labels, and node_exporter's default filters checked
 * against its regular expressions compiled with regcomp. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "host_parse.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- /proc/stat ---------------------------------------------------------------------- */

typedef struct {
    host_cpu_t cpu[8];
    int n;
} cpus_t;

static void on_cpu(void *ctx, const host_cpu_t *c) {
    cpus_t *cs = ctx;
    if (cs->n < 8) cs->cpu[cs->n++] = *c;
}

static void test_stat(void **state) {
    (void)state;
    static const char text[] =
        "cpu  28730 1302 13453 180098 25168 0 1752 187 0 0\n"
        "cpu0 13831 664 5893 96481 7575 0 817 90 0 0\n"
        "cpu1 14899 637 7560 83617 17592 0 935 96 11 2\n"
        "intr 4711 0 9 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        "ctxt 3973841\n"
        "btime 1796162282\n"
        "processes 29723\n"
        "procs_running 4\n"
        "procs_blocked 1\n"
        "softirq 12 1 2 3 4 5 6 7 8 9 10\n";
    host_stat_t st;
    cpus_t cs = {.n = 0};
    assert_int_equal(host_parse_stat(S(text), &st, on_cpu, &cs), 0);
    assert_int_equal(cs.n, 3);
    assert_int_equal(cs.cpu[0].id, -1);
    assert_int_equal(cs.cpu[0].nfields, 10);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_USER], 28730);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_IDLE], 180098);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_STEAL], 187);
    assert_int_equal(cs.cpu[2].id, 1);
    assert_int_equal(cs.cpu[2].t[HOST_CPU_IOWAIT], 17592);
    assert_int_equal(cs.cpu[2].t[HOST_CPU_GUEST], 11);
    assert_int_equal(cs.cpu[2].t[HOST_CPU_GUEST_NICE], 2);
    assert_int_equal(st.have, HOST_STAT_CTXT | HOST_STAT_BTIME | HOST_STAT_PROCESSES |
                                  HOST_STAT_INTR | HOST_STAT_RUNNING | HOST_STAT_BLOCKED);
    assert_int_equal(st.ctxt, 3973841);
    assert_int_equal(st.btime, 1796162282);
    assert_int_equal(st.processes, 29723);
    assert_int_equal(st.intr, 4711);
    assert_int_equal(st.procs_running, 4);
    assert_int_equal(st.procs_blocked, 1);
    assert_string_equal(host_cpu_mode_name(HOST_CPU_SOFTIRQ), "softirq");
    assert_string_equal(host_cpu_mode_name(HOST_CPU_GUEST_NICE), "nice");
    assert_string_equal(host_cpu_mode_name(99), "unknown");
}

static void test_stat_odd(void **state) {
    (void)state;
    host_stat_t st;
    cpus_t cs = {.n = 0};
    /* a 2.4-era cpu line (4 columns), a torn line, garbage numbers, no trailing newline */
    static const char text[] = "cpu 1 2 3 4\n"
                               "cpu0 1 2\n"
                               "cpu1 1 2 x 4\n"
                               "cpuX 1 2 3 4\n"
                               "ctxt\n"
                               "procs_running 99999999999999999999999\n"
                               "btime 12";
    assert_int_equal(host_parse_stat(S(text), &st, on_cpu, &cs), 5);
    assert_int_equal(cs.n, 1);
    assert_int_equal(cs.cpu[0].nfields, 4);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_IDLE], 4);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_STEAL], 0);
    assert_int_equal(st.have, HOST_STAT_BTIME);
    assert_int_equal(st.btime, 12);
    /* not /proc/stat at all */
    assert_int_equal(host_parse_stat(S("hello world\n"), &st, on_cpu, &cs), -1);
    assert_int_equal(host_parse_stat("", 0, &st, NULL, NULL), -1);
    /* more than 10 columns (a future kernel): the known ones are read */
    cs.n = 0;
    assert_int_equal(host_parse_stat(S("cpu 1 2 3 4 5 6 7 8 9 10 11 12\n"), &st, on_cpu, &cs), 0);
    assert_int_equal(cs.cpu[0].t[HOST_CPU_GUEST_NICE], 10);
}

/* ---- loadavg, file-nr, single values ------------------------------------------------- */

static void test_loadavg(void **state) {
    (void)state;
    host_loadavg_t l;
    assert_int_equal(host_parse_loadavg(S("2.49 1.47 0.68 5/119 18637\n"), &l), 0);
    assert_true(l.load1 > 2.489 && l.load1 < 2.491);
    assert_true(l.load5 > 1.469 && l.load5 < 1.471);
    assert_true(l.load15 > 0.679 && l.load15 < 0.681);
    assert_true(l.has_threads);
    assert_int_equal(l.running, 5);
    assert_int_equal(l.threads, 119);
    assert_int_equal(host_parse_loadavg(S("0.00 0.01 0.05"), &l), 0);
    assert_false(l.has_threads);
    assert_int_equal(host_parse_loadavg(S("0.00 0.01 0.05 x/y 1\n"), &l), 1);
    assert_int_equal(host_parse_loadavg(S("0.00 abc 0.05\n"), &l), -1);
    assert_int_equal(host_parse_loadavg(S("1.\n"), &l), -1);
    assert_int_equal(host_parse_loadavg("", 0, &l), -1);
}

static void test_file_nr_and_values(void **state) {
    (void)state;
    uint64_t a, m;
    assert_int_equal(host_parse_file_nr(S("805\t0\t2466170\n"), &a, &m), 0);
    assert_int_equal(a, 805);
    assert_int_equal(m, 2466170);
    assert_int_equal(host_parse_file_nr(S("805 0 9223372036854775807\n"), &a, &m), 0);
    assert_int_equal(m, 9223372036854775807ull);
    assert_int_equal(host_parse_file_nr(S("805 0\n"), &a, &m), -1);
    assert_int_equal(host_parse_file_nr(S("805 0 1 2\n"), &a, &m), -1);
    int64_t v;
    assert_int_equal(host_parse_i64(S("4194304\n"), &v), 0);
    assert_int_equal(v, 4194304);
    assert_int_equal(host_parse_i64(S(" -1 \n"), &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(host_parse_i64(S("12 13\n"), &v), -1);
    assert_int_equal(host_parse_i64(S("\n"), &v), -1);
    assert_int_equal(host_parse_i64(S("99999999999999999999\n"), &v), -1);
    assert_true(host_is_pid_name("1"));
    assert_true(host_is_pid_name("4194303"));
    assert_false(host_is_pid_name("self"));
    assert_false(host_is_pid_name("0"));
    assert_false(host_is_pid_name("12a"));
    assert_false(host_is_pid_name(""));
}

/* ---- meminfo ------------------------------------------------------------------------- */

typedef struct {
    char name[16][64];
    double v[16];
    bool bytes[16];
    int n;
} kvs_t;

static void on_mem(void *ctx, const char *name, double v, bool bytes) {
    kvs_t *k = ctx;
    if (k->n >= 16) return;
    snprintf(k->name[k->n], sizeof k->name[0], "%s", name);
    k->v[k->n] = v;
    k->bytes[k->n++] = bytes;
}

static void test_meminfo(void **state) {
    (void)state;
    static const char text[] = "MemTotal:       24684084 kB\n"
                               "MemAvailable:   24199972 kB\n"
                               "Active(anon):       1608 kB\n"
                               "HugePages_Total:       0\n"
                               "Hugepagesize:       2048 kB\n"
                               "Bogus line without colon\n"
                               "Weird name!: 3 kB\n"
                               "Odd: 3 MB\n"
                               "Neg: -3 kB\n"
                               "DirectMap1G:    25165824 kB";
    kvs_t k = {.n = 0};
    assert_int_equal(host_parse_meminfo(S(text), on_mem, &k), 4);
    assert_int_equal(k.n, 6);
    assert_string_equal(k.name[0], "MemTotal");
    assert_true(k.v[0] == 24684084.0 * 1024 && k.bytes[0]);
    assert_string_equal(k.name[2], "Active_anon");
    assert_string_equal(k.name[3], "HugePages_Total");
    assert_true(k.v[3] == 0 && !k.bytes[3]);
    assert_string_equal(k.name[4], "Hugepagesize");
    assert_string_equal(k.name[5], "DirectMap1G");
    assert_int_equal(host_parse_meminfo(S("nothing here\n"), on_mem, &k), -1);
}

/* ---- diskstats ----------------------------------------------------------------------- */

typedef struct {
    host_disk_t d[8];
    int n;
} disks_t;

static void on_disk(void *ctx, const host_disk_t *d) {
    disks_t *ds = ctx;
    if (ds->n < 8) ds->d[ds->n++] = *d;
}

static void test_diskstats(void **state) {
    (void)state;
    static const char text[] =
        "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        " 254       0 vda 99098 26448 5295882 3073369 33093 16366 3930912 87762 6 149376 "
        "3193086 11700 32 911744 31378 6301 575\n"
        "   8       1 sda1 10 0 20 30 40 0 50 60 0 70 80\n"          /* 4.17: 11 columns */
        "   8       2 sda2 1 2 3 4\n"                                /* 2.6.24 partition */
        " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n" /* 4.18: 15 columns */
        "   x       0 bad 1 2 3 4 5 6 7 8 9 10 11\n";
    disks_t ds = {.n = 0};
    assert_int_equal(host_parse_diskstats(S(text), on_disk, &ds), 2);
    assert_int_equal(ds.n, 4);
    assert_string_equal(ds.d[1].name, "vda");
    assert_int_equal(ds.d[1].major, 254);
    assert_int_equal(ds.d[1].nfields, 17);
    assert_int_equal(ds.d[1].f[HOST_DISK_READS], 99098);
    assert_int_equal(ds.d[1].f[HOST_DISK_READ_SECTORS], 5295882);
    assert_int_equal(ds.d[1].f[HOST_DISK_WRITE_SECTORS], 3930912);
    assert_int_equal(ds.d[1].f[HOST_DISK_IO_NOW], 6);
    assert_int_equal(ds.d[1].f[HOST_DISK_IO_MS], 149376);
    assert_int_equal(ds.d[1].f[HOST_DISK_FLUSH_MS], 575);
    assert_string_equal(ds.d[2].name, "sda1");
    assert_int_equal(ds.d[2].nfields, 11);
    assert_int_equal(ds.d[3].nfields, 15);
}

/* ---- mountinfo ----------------------------------------------------------------------- */

typedef struct {
    char dev[8][64], fstype[8][32], mp[8][128], path[8][128];
    bool ro[8];
    int n;
} mounts_t;

static void on_mount(void *ctx, const host_mount_t *m) {
    mounts_t *ms = ctx;
    if (ms->n >= 8) return;
    snprintf(ms->dev[ms->n], 64, "%s", m->device);
    snprintf(ms->fstype[ms->n], 32, "%s", m->fstype);
    snprintf(ms->mp[ms->n], 128, "%s", m->mountpoint);
    snprintf(ms->path[ms->n], 128, "%s", m->path);
    ms->ro[ms->n++] = m->readonly;
}

static void test_mountinfo(void **state) {
    (void)state;
    static const char text[] =
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw\n"
        "30 27 8:1 / /mnt/my\\040disk\\011x\\134y ro,relatime - vfat /dev/sda1 rw,fmask=0022\n"
        "31 27 0:40 / /srv rw - xfs /dev/mapper/vg-srv ro\n"
        "32 27 0:41 / /broken rw shared:1\n" /* no " - " separator */
        "33 27 0:42 / /short\n"
        "34 27 0:43 / /bad\\377utf rw - tmpfs tm\\377p rw\n"
        "35 27 0:44 / /emerg rw - ext4 /dev/sdb emergency_ro\n";
    mounts_t ms = {.n = 0};
    assert_int_equal(host_parse_mountinfo(S(text), on_mount, &ms), 2);
    assert_int_equal(ms.n, 6);
    assert_string_equal(ms.mp[0], "/proc");
    assert_string_equal(ms.fstype[0], "proc");
    assert_string_equal(ms.dev[1], "/dev/vda");
    assert_string_equal(ms.mp[1], "/");
    assert_false(ms.ro[1]);
    /* the label decodes \040 and \011 only (node_exporter); the path decodes all */
    assert_string_equal(ms.mp[2], "/mnt/my disk\tx\\134y");
    assert_string_equal(ms.path[2], "/mnt/my disk\tx\\y");
    assert_true(ms.ro[2]);
    assert_true(ms.ro[3]); /* read-only superblock */
    /* invalid UTF-8 in labels: one U+FFFD per run; the path keeps the bytes */
    assert_string_equal(ms.mp[4], "/bad\\377utf"); /* \377 is not decoded in labels */
    assert_string_equal(ms.path[4], "/bad\xffutf");
    assert_true(ms.ro[5]);
    /* a NUL inside a line, written or escaped, is a malformed line */
    static const char nul[] = "1 1 0:1 / /a\\000b rw - ext4 /dev/x rw\n"
                              "2 1 0:1 / /ok rw - ext4 /dev/\0x rw\n";
    ms.n = 0;
    assert_int_equal(host_parse_mountinfo(nul, sizeof nul - 1, on_mount, &ms), -1);
    assert_int_equal(ms.n, 0);
}

static void test_utf8_clean(void **state) {
    (void)state;
    char out[32];
    assert_int_equal(host_utf8_clean(S("plain"), out, sizeof out), 5);
    assert_string_equal(out, "plain");
    host_utf8_clean(S("a\xff\xfe" "b"), out, sizeof out);
    assert_string_equal(out, "a\xef\xbf\xbd" "b");
    host_utf8_clean(S("\xc3\xa9t\xc3"), out, sizeof out); /* é, t, truncated sequence */
    assert_string_equal(out, "\xc3\xa9t\xef\xbf\xbd");
    host_utf8_clean(S("\xed\xa0\x80"), out, sizeof out); /* a surrogate */
    assert_string_equal(out, "\xef\xbf\xbd");
    host_utf8_clean(S("\xc0\xaf"), out, sizeof out); /* overlong '/' */
    assert_string_equal(out, "\xef\xbf\xbd");
    /* too long: cut at a character boundary */
    assert_int_equal(host_utf8_clean(S("ab\xc3\xa9"), out, 4), 2);
    assert_string_equal(out, "ab");
}

/* ---- net/dev ------------------------------------------------------------------------- */

typedef struct {
    host_netdev_t d[8];
    int n;
} nets_t;

static void on_net(void *ctx, const host_netdev_t *d) {
    nets_t *ns = ctx;
    if (ns->n < 8) ns->d[ns->n++] = *d;
}

static void test_netdev(void **state) {
    (void)state;
    static const char text[] =
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo: 14441911770 10073347    0    0    0     0          0         0 14441911770 "
        "10073347    0    0    0     0       0          0\n"
        "  eth0:197181259    3860    1    2    3     4          5         6   161963    2185 "
        "   7    8    9    10      11         12\n"
        "  bad0: 1 2 3\n"
        "  bad1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "  bad2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n";
    nets_t ns = {.n = 0};
    assert_int_equal(host_parse_netdev(S(text), on_net, &ns), 3);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.d[0].name, "lo");
    assert_int_equal(ns.d[0].v[0], 14441911770ull);
    assert_string_equal(ns.d[1].name, "eth0");
    assert_int_equal(ns.d[1].v[0], 197181259);
    assert_int_equal(ns.d[1].v[2], 1);
    assert_int_equal(ns.d[1].v[15], 12);
    assert_string_equal(host_netdev_field_name(2), "receive_errs");
    assert_string_equal(host_netdev_field_name(13), "transmit_colls");
    /* only the headers: no interface at all is "not that file" */
    assert_int_equal(host_parse_netdev(text, 160, on_net, &ns), -1);
}

/* ---- snmp, netstat, snmp6 ------------------------------------------------------------ */

typedef struct {
    char key[64][48];
    double v[64];
    int n;
} stats_t;

static void on_stat(void *ctx, const char *proto, const char *field, double v) {
    stats_t *st = ctx;
    if (st->n >= 64) return;
    snprintf(st->key[st->n], sizeof st->key[0], "%s_%s", proto, field);
    st->v[st->n++] = v;
}

static int find_key(const stats_t *st, const char *key) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->key[i], key) == 0) return i;
    return -1;
}

static void test_netstat(void **state) {
    (void)state;
    static const char text[] = "Ip: Forwarding DefaultTTL InReceives\n"
                               "Ip: 2 64 10083480\n"
                               "Tcp: RtoAlgorithm MaxConn CurrEstab InErrs\n"
                               "Tcp: 1 -1 7 3\n"
                               "Udp: InDatagrams NoPorts\n"
                               "Udp: 5\n" /* one value short */
                               "Bad: A\n"
                               "Other: 1\n" /* protocols differ */
                               "TcpExt: ListenDrops\n";
    stats_t st = {.n = 0};
    assert_int_equal(host_parse_netstat(S(text), on_stat, &st), 3);
    assert_int_equal(st.n, 8);
    int i = find_key(&st, "Tcp_CurrEstab");
    assert_true(i >= 0 && st.v[i] == 7);
    i = find_key(&st, "Tcp_MaxConn");
    assert_true(i >= 0 && st.v[i] == -1);
    i = find_key(&st, "Udp_InDatagrams");
    assert_true(i >= 0 && st.v[i] == 5);
    assert_int_equal(find_key(&st, "Udp_NoPorts"), -1);

    static const char six[] = "Ip6InReceives                   \t1\n"
                              "Icmp6InMsgs 4\n"
                              "UdpLite6InDatagrams 9\n"
                              "NoSixHere 3\n"
                              "Ip6OutOctets\n";
    st.n = 0;
    assert_int_equal(host_parse_snmp6(S(six), on_stat, &st), 2);
    assert_int_equal(st.n, 3);
    assert_string_equal(st.key[0], "Ip6_InReceives");
    assert_string_equal(st.key[1], "Icmp6_InMsgs");
    assert_string_equal(st.key[2], "UdpLite6_InDatagrams");
    assert_true(st.v[2] == 9);
}

/* ---- tcp ----------------------------------------------------------------------------- */

static void test_tcp(void **state) {
    (void)state;
    static const char text[] =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0   "
        "     0 1237 1 00000000e46bfa69 100 0 0 10 0\n"
        "   1: 0100007F:EAEC 0100007F:8CD1 06 00000000:00000000 03:00001017 00000000     0   "
        "     0 0 3 0000000078fa5846\n"
        "   2: 0100007F:EAF0 0100007F:8CD1 01 0000010A:00000020 03:00001054 00000000     0   "
        "     0 0 3 0000000020f894ed\n"
        "   3: 0100007F:EAF0 0100007F:8CD1 0C 00000000:00000000\n" /* state 12: unknown */
        "   4: 0100007F:EAF0\n";
    host_tcp_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(host_parse_tcp(S(text), &t), 2);
    assert_int_equal(t.state[10], 1); /* listen */
    assert_int_equal(t.state[6], 1);  /* time_wait */
    assert_int_equal(t.state[1], 1);  /* established */
    assert_int_equal(t.tx_queued, 0x10a);
    assert_int_equal(t.rx_queued, 0x23);
    assert_string_equal(host_tcp_state_name(1), "established");
    assert_string_equal(host_tcp_state_name(10), "listen");
    assert_string_equal(host_tcp_state_name(11), "closing");
    assert_null(host_tcp_state_name(0));
    assert_null(host_tcp_state_name(12));
    /* a header only: no sockets, a good table; a line per call: */
    memset(&t, 0, sizeof t);
    assert_int_equal(host_parse_tcp(text, 100, &t), 0);
    assert_int_equal(host_parse_tcp_line(S("   0: A:B C:D 01 0:0"), &t), 0);
    assert_int_equal(host_parse_tcp_line(S(""), &t), 1);
    assert_int_equal(host_parse_tcp_line(S("garbage"), &t), -1);
    assert_int_equal(t.state[1], 1);
}

/* ---- filters against node_exporter's expressions ------------------------------------ */

static void check_regex(const char *re, bool (*fn)(const char *), const char *const *names) {
    regex_t r;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    for (const char *const *n = names; *n; n++) {
        bool want = regexec(&r, *n, 0, NULL, 0) == 0;
        if (fn(*n) != want) fail_msg("%s: \"%s\" regex says %d", re, *n, want);
    }
    regfree(&r);
}

static bool netstat_key(const char *key) { /* "Proto_Field" → the two parts */
    char proto[64];
    const char *us = strchr(key, '_');
    if (!us || (size_t)(us - key) >= sizeof proto) return false;
    memcpy(proto, key, (size_t)(us - key));
    proto[us - key] = '\0';
    return host_netstat_wanted(proto, us + 1);
}

static void test_filters(void **state) {
    (void)state;
    static const char *const disks[] = {
        "sda", "sda1", "sdb12", "sdaa1", "vda", "vda1", "xvda", "xvda1", "hdc3", "sd", "sd1",
        "nvme0n1", "nvme0n1p1", "nvme12n3p45", "nvme0n1p", "nvmen1p1", "nvme0np1", "loop0",
        "loop", "loop12a", "ram0", "zram0", "zram", "ram", "fd0", "fd", "md0", "dm-0", "sr0",
        "mmcblk0", "mmcblk0p1", "vdz9", "zloop0", "xvd1", "sdA1", "", NULL};
    check_regex("^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme[0-9]+n[0-9]+p)[0-9]+$", host_disk_ignored,
                disks);
    static const char *const mps[] = {
        "/", "/dev", "/dev/shm", "/devices", "/proc", "/proc/sys/fs/binfmt_misc", "/proc2",
        "/sys", "/sys/fs/cgroup", "/system", "/run", "/run/credentials", "/run/credentials/",
        "/run/credentials/x.service", "/var/lib/docker", "/var/lib/docker/", "/var/lib/docker/o",
        "/var/lib/containers/storage", "/var/lib/containers/storage/overlay", "/home",
        "/mnt/dev", "dev", "/boot/efi", "/my disk\tx", NULL};
    check_regex("^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/"
                "storage/.+)($|/)",
                host_mountpoint_ignored, mps);
    static const char *const types[] = {
        "ext4", "xfs", "btrfs", "tmpfs", "vfat", "nfs4", "proc", "sysfs", "cgroup", "cgroup2",
        "cgroup3", "overlay", "overlayfs", "squashfs", "erofs", "fuse.sshfs", "fusectl",
        "devtmpfs", "autofs", "nsfs", "tracefs", "bpf", "zfs", "", NULL};
    check_regex("^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|"
                "hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|"
                "selinuxfs|squashfs|erofs|sysfs|tracefs)$",
                host_fstype_ignored, types);
    static const char *const keys[] = {
        "Tcp_CurrEstab", "Tcp_InErrs", "Tcp_InSegs", "Tcp_MaxConn", "Tcp_InCsumErrors",
        "Udp_InErrors", "Udp_InDatagrams", "Udp_IgnoredMulti", "Udp6_NoPorts", "Udp6_InErrors",
        "UdpLite_InErrors", "UdpLite_InDatagrams", "Ip_Forwarding", "Ip_DefaultTTL",
        "Ip_InReceives", "IpExt_InOctets", "IpExt_OutOctets", "IpExt_InMcastOctets",
        "Ip6_InOctets", "Ip6_InReceives", "Icmp_InMsgs", "Icmp_OutMsgs", "Icmp_InErrors",
        "Icmp6_InMsgs", "Icmp6_InErrors", "IcmpMsg_InType3", "TcpExt_ListenDrops",
        "TcpExt_ListenOverflows", "TcpExt_SyncookiesSent", "TcpExt_TCPSynRetrans",
        "TcpExt_TCPTimeouts", "TcpExt_TCPOFOQueue", "TcpExt_TCPRcvQDrop", "TcpExt_TW",
        "TcpExt_TCPOFODrop", "MPTcpExt_MPCapableSYNRX", "Tcp_X_InErrs", "Foo_InErrors",
        "Ip6_OutOctets", "Icmp6_OutMsgs", NULL};
    check_regex("^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_("
                "InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|"
                "TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|"
                "RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|"
                "SndbufErrors))$",
                netstat_key, keys);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat),        cmocka_unit_test(test_stat_odd),
        cmocka_unit_test(test_loadavg),     cmocka_unit_test(test_file_nr_and_values),
        cmocka_unit_test(test_meminfo),     cmocka_unit_test(test_diskstats),
        cmocka_unit_test(test_mountinfo),   cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_netdev),      cmocka_unit_test(test_netstat),
        cmocka_unit_test(test_tcp),         cmocka_unit_test(test_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
