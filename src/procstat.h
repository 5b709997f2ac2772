/* procstat — the process's own resource use, read from /proc (Linux), as the Prometheus
 * client libraries expose it (process_* series). */
#ifndef MC_PROCSTAT_H
#define MC_PROCSTAT_H

#include <stdint.h>

typedef struct procstat {
    double cpu_seconds; /* user + system */
    uint64_t rss_bytes;
    uint64_t vsize_bytes;
    uint64_t open_fds;
    uint64_t max_fds;
    double start_time; /* unix seconds */
    int threads;
} procstat_t;

/* 0, or a negative errno when /proc is unreadable (fields then stay 0). */
int procstat_read(procstat_t *p);

#endif
