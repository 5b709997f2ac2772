/* host_parse — the Linux /proc text formats the host source reads, and node_exporter's
 * default filters. Pure: no I/O, no allocation, no clock. Each parser takes a file's bytes
 * (s, n; no NUL needed) and hands every record to a callback or fills an out-struct.
 * Strings in a record (names, paths) live in the record or in the caller's input and are
 * valid during the callback only.
 *
 * Every parser returns the number of malformed records it skipped (0: clean) or -1 when
 * the content is not that file at all (no record could be read). A malformed line never
 * stops the parse: the rest of the file is still read.
 *
 * The names and units follow node_exporter (v1.x, default collectors): the host source
 * turns these records into node_* series. */
#ifndef MC_HOST_PARSE_H
#define MC_HOST_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- /proc/stat ---------------------------------------------------------------------- */

/* The columns of a cpu line, in kernel order (USER_HZ ticks). */
enum {
    HOST_CPU_USER = 0,
    HOST_CPU_NICE,
    HOST_CPU_SYSTEM,
    HOST_CPU_IDLE,
    HOST_CPU_IOWAIT,
    HOST_CPU_IRQ,
    HOST_CPU_SOFTIRQ,
    HOST_CPU_STEAL,
    HOST_CPU_GUEST,
    HOST_CPU_GUEST_NICE,
    HOST_CPU_FIELDS
};
/* "user", "nice", ... "steal" (node_cpu_seconds_total's mode label); guest columns: "user",
 * "nice" of node_cpu_guest_seconds_total. */
const char *host_cpu_mode_name(int field);

typedef struct host_cpu {
    int id;      /* core number; -1 for the "cpu" line (all cores) */
    int nfields; /* columns present (4 on very old kernels, 10 today); the rest are 0 */
    uint64_t t[HOST_CPU_FIELDS];
} host_cpu_t;

enum {
    HOST_STAT_CTXT = 1 << 0,
    HOST_STAT_BTIME = 1 << 1,
    HOST_STAT_PROCESSES = 1 << 2,
    HOST_STAT_INTR = 1 << 3,
    HOST_STAT_RUNNING = 1 << 4,
    HOST_STAT_BLOCKED = 1 << 5,
};
typedef struct host_stat {
    unsigned have; /* HOST_STAT_* bits of the fields found */
    uint64_t ctxt, btime, processes, intr, procs_running, procs_blocked;
} host_stat_t;

typedef void (*host_cpu_cb)(void *ctx, const host_cpu_t *cpu);
int host_parse_stat(const char *s, size_t n, host_stat_t *st, host_cpu_cb cb, void *ctx);

/* ---- /proc/loadavg: "0.52 0.58 0.59 2/467 12345" ------------------------------------ */
typedef struct host_loadavg {
    double load1, load5, load15;
    bool has_threads;
    uint64_t running, threads; /* runnable and all scheduling entities (threads) */
} host_loadavg_t;
int host_parse_loadavg(const char *s, size_t n, host_loadavg_t *out);

/* ---- /proc/meminfo: "Active(anon):   123 kB" ----------------------------------------- */
/* name: the field as node_exporter spells it ("Active_anon": parentheses become one '_');
 * value in bytes when bytes (the line had "kB"), else the bare number (HugePages_Total). */
typedef void (*host_meminfo_cb)(void *ctx, const char *name, double value, bool bytes);
int host_parse_meminfo(const char *s, size_t n, host_meminfo_cb cb, void *ctx);

/* ---- /proc/diskstats ------------------------------------------------------------------ */
/* The columns after the name (Documentation/admin-guide/iostats.rst). */
enum {
    HOST_DISK_READS = 0,    /* reads completed */
    HOST_DISK_READS_MERGED, /* reads merged */
    HOST_DISK_READ_SECTORS, /* 512-byte sectors read */
    HOST_DISK_READ_MS,      /* ms spent reading */
    HOST_DISK_WRITES,
    HOST_DISK_WRITES_MERGED,
    HOST_DISK_WRITE_SECTORS,
    HOST_DISK_WRITE_MS,
    HOST_DISK_IO_NOW,         /* I/Os in progress */
    HOST_DISK_IO_MS,          /* ms spent doing I/O (busy time) */
    HOST_DISK_IO_WEIGHTED_MS, /* weighted ms doing I/O */
    HOST_DISK_DISCARDS,       /* 4.18+ */
    HOST_DISK_DISCARDS_MERGED,
    HOST_DISK_DISCARD_SECTORS,
    HOST_DISK_DISCARD_MS,
    HOST_DISK_FLUSHES, /* 5.5+ */
    HOST_DISK_FLUSH_MS,
    HOST_DISK_FIELDS
};
typedef struct host_disk {
    unsigned major, minor;
    char name[64];
    int nfields; /* at least 11 (HOST_DISK_IO_WEIGHTED_MS + 1) */
    uint64_t f[HOST_DISK_FIELDS];
} host_disk_t;
typedef void (*host_disk_cb)(void *ctx, const host_disk_t *d);
int host_parse_diskstats(const char *s, size_t n, host_disk_cb cb, void *ctx);

/* ---- /proc/PID/mountinfo ------------------------------------------------------------- */
#define HOST_PATH_MAX 4096
typedef struct host_mount {
    const char *device;     /* the mount source ("/dev/vda1", "tmpfs"), valid UTF-8 */
    const char *fstype;     /* valid UTF-8 */
    const char *mountpoint; /* as node_exporter labels it: only \040 and \011 decoded */
    const char *path;       /* every octal escape decoded: the path to statvfs */
    bool readonly;          /* "ro" in the mount or superblock options, or "emergency_ro" */
} host_mount_t;
typedef void (*host_mount_cb)(void *ctx, const host_mount_t *m);
int host_parse_mountinfo(const char *s, size_t n, host_mount_cb cb, void *ctx);

/* ---- /proc/net/dev ------------------------------------------------------------------- */
/* The 16 columns; names as node_network_<name>_total (node_exporter's default, "legacy"
 * names of the /proc/net/dev columns). */
enum { HOST_NETDEV_FIELDS = 16 };
const char *host_netdev_field_name(int i); /* "receive_bytes", ... "transmit_compressed" */
typedef struct host_netdev {
    char name[64];
    uint64_t v[HOST_NETDEV_FIELDS];
} host_netdev_t;
typedef void (*host_netdev_cb)(void *ctx, const host_netdev_t *d);
int host_parse_netdev(const char *s, size_t n, host_netdev_cb cb, void *ctx);

/* ---- /proc/net/snmp, /proc/net/netstat ("Tcp: A B\nTcp: 1 2") and /proc/net/snmp6
 * ("Ip6InOctets 123"): every (protocol, field, value); the protocol of snmp6 lines is the
 * part up to its '6' ("Ip6", "Udp6", "UdpLite6"), as node_exporter splits it. Protocol and
 * field names contain only [A-Za-z0-9_]. */
typedef void (*host_netstat_cb)(void *ctx, const char *proto, const char *field, double value);
int host_parse_netstat(const char *s, size_t n, host_netstat_cb cb, void *ctx);
int host_parse_snmp6(const char *s, size_t n, host_netstat_cb cb, void *ctx);

/* ---- /proc/net/tcp, /proc/net/tcp6 --------------------------------------------------- */
/* Kernel TCP states (include/net/tcp_states.h): index = state number, 1..11. */
enum { HOST_TCP_STATES = 12 };
const char *host_tcp_state_name(int state); /* "established" ... "closing"; NULL for 0 */
typedef struct host_tcp {
    uint64_t state[HOST_TCP_STATES]; /* sockets per state */
    uint64_t rx_queued, tx_queued;   /* bytes queued, summed over sockets */
} host_tcp_t;
/* One line, added into acc: 0 a socket, 1 the header or a blank line, -1 malformed. The
 * tables can be large, so the reader streams them a line at a time. */
int host_parse_tcp_line(const char *line, size_t n, host_tcp_t *acc);
int host_parse_tcp(const char *s, size_t n, host_tcp_t *acc);

/* ---- single values ----------------------------------------------------------------- */
/* /proc/sys/fs/file-nr: "allocated unused maximum". */
int host_parse_file_nr(const char *s, size_t n, uint64_t *allocated, uint64_t *maximum);
/* One integer, surrounding whitespace allowed (pid_max, threads-max, mtu, speed). 0/-1. */
int host_parse_i64(const char *s, size_t n, int64_t *out);
/* True for a /proc directory entry that is a process ("1234"). */
bool host_is_pid_name(const char *name);

/* ---- node_exporter's default filters --------------------------------------------------
 * diskstats --collector.diskstats.device-exclude
 *   ^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$        (partitions, ram, loop, fd)
 * filesystem --collector.filesystem.mount-points-exclude
 *   ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)
 * filesystem --collector.filesystem.fs-types-exclude: autofs, binfmt_misc, bpf, cgroup,
 *   cgroup2, configfs, debugfs, devpts, devtmpfs, fusectl, hugetlbfs, iso9660, mqueue, nsfs,
 *   overlay, proc, procfs, pstore, rpc_pipefs, securityfs, selinuxfs, squashfs, erofs,
 *   sysfs, tracefs
 * netstat --collector.netstat.fields (on "Proto_Field")
 *   ^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|
 *   OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|
 *   TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|
 *   CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$
 * Hand-written matchers (no regex engine on the collection path); the unit test checks
 * them against the expressions above with regcomp. */
bool host_disk_ignored(const char *name);
bool host_mountpoint_ignored(const char *mountpoint);
bool host_fstype_ignored(const char *fstype);
bool host_netstat_wanted(const char *proto, const char *field);

/* Copies n bytes of s into out (cap bytes, NUL-terminated), replacing each run of bytes
 * that is not valid UTF-8 with U+FFFD, as node_exporter does for label values. Returns the
 * length written; a result that would not fit is cut at a character boundary. */
size_t host_utf8_clean(const char *s, size_t n, char *out, size_t cap);

#endif
