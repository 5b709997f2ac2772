/* host_source — the built-in source `host`: the machine under the hub (CPU, memory,
 * disks, filesystems, network, file descriptors, processes, TCP), read from /proc and /sys
 * and published as node_exporter-named series labelled source="host".
 *
 * One thread of its own, so a slow file (a big mount table, thousands of sockets) or a
 * filesystem that stops answering never delays the hub's loop. Once a second, at the
 * wall-clock half-second (so each sample falls in the middle of one of the registry's
 * 1 s intervals, never on a boundary), it reads every file, folds the values into its own
 * aggregation table and hands the table to the hub as one batch, like a StatsD thread.
 * Once a second and not once per --tick: the registry's intervals are 1 s, and the
 * kernel's CPU counters tick at USER_HZ (100/s), so a 10 ms read would be mostly noise.
 *
 * Kernel counters are sent as running totals (statsd_line_t.counter_total): /metrics
 * shows node_exporter's cumulative values (node_cpu_seconds_total equals /proc/stat's
 * since-boot figure) and the registry derives each second's rate. A few derived gauges
 * (host_cpu_busy_ratio, host_memory_available_ratio, host_filesystem_avail_ratio,
 * host_network_errors_1m) make alert thresholds expressible as plain values.
 *
 * statvfs() runs on a helper thread with a timeout: a mount that does not answer within
 * HOST_STATFS_TIMEOUT is reported as node_filesystem_device_error 1 and skipped until its
 * call returns; the helper is abandoned (detached) and a new one serves the others.
 *
 * A missing, unreadable or odd file is skipped and counted (host_stats_t.read_errors,
 * metricast_host_read_errors_total{file}); the first failure of each file is logged.
 * Nothing here is fatal after host_open. */
#ifndef MC_HOST_SOURCE_H
#define MC_HOST_SOURCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"

#define HOST_SOURCE_ID "host"
#define HOST_STATFS_TIMEOUT 2.0 /* seconds */

/* The files (and directory walks) read each second: the `file` label of
 * metricast_host_read_errors_total, relative to the proc or sys root. */
typedef enum {
    HOST_F_STAT = 0,
    HOST_F_LOADAVG,
    HOST_F_MEMINFO,
    HOST_F_DISKSTATS,
    HOST_F_MOUNTINFO,
    HOST_F_NETDEV,
    HOST_F_SNMP,
    HOST_F_NETSTAT,
    HOST_F_SNMP6,
    HOST_F_TCP,
    HOST_F_TCP6,
    HOST_F_FILENR,
    HOST_F_PIDS,
    HOST_F_PIDMAX,
    HOST_F_THREADSMAX,
    HOST_F_NETCLASS,
    HOST_F_COUNT
} host_file_t;
const char *host_file_name(host_file_t f); /* "stat", "net/dev", "sys/fs/file-nr", ... */

/* Counted by the host thread (and, for rejected, the hub); read by /metrics. */
typedef struct host_stats {
    _Atomic uint64_t read_errors[HOST_F_COUNT];
    _Atomic uint64_t collections;     /* seconds collected */
    _Atomic uint64_t cpu_ns;          /* the host thread's own CPU time */
    _Atomic uint64_t samples;         /* samples handed to the hub */
    _Atomic uint64_t rejected;        /* samples the registry refused (series limit...) */
    _Atomic uint64_t statfs_timeouts; /* statvfs calls abandoned */
} host_stats_t;

typedef struct host_opts {
    const char *proc_root; /* "/proc" */
    const char *sys_root;  /* "/sys" */
    /* test hook: statvfs of this path stalls (a mount that stopped answering); "" none */
    const char *statfs_stall;
} host_opts_t;

/* Receives each batch (ownership passes); called on the host thread, must not block.
 * Returns 0, or < 0 when the batch was not taken (the host then frees it). */
typedef int (*host_sink_fn)(void *ctx, agg_batch_t *b);

typedef struct host_source host_source_t;

/* Checks the proc root (a directory: -ENOTDIR/-ENOENT with err naming --host-proc; a sys
 * root that is not one is only logged), reads the source's attributes once, and prepares
 * the thread. *pending counts
 * batches handed over and not yet applied (the sink's owner decrements it): beyond a few,
 * the host keeps folding into its table (totals and gauges keep their latest value). */
int host_open(host_source_t **out, const host_opts_t *o, host_sink_fn sink, void *ctx,
              _Atomic int *pending, char *err, size_t errlen);
int host_start(host_source_t *h);
/* Stops the thread (within one statvfs timeout at worst), joins it and frees everything. */
void host_close(host_source_t *h); /* NULL allowed */

host_stats_t *host_stats(host_source_t *h);
/* The source's attributes as a JSON object (kind, hostname, kernel, os, machine, cores,
 * memory_bytes, boot_time), fixed at open. Owned by h. */
const char *host_attrs_json(const host_source_t *h);

/* The HELP text of a family the host source publishes ("node_load1", ...), written into
 * buf; NULL for other names. */
const char *host_family_help(const char *name, char *buf, size_t cap);

#endif
