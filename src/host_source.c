#include "host_source.h"

#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "hash.h"
#include "host_parse.h"
#include "jsonw.h"
#include "log.h"
#include "statsd.h"

/* Files bigger than this are refused (counted): a mount table or socket table of this
 * size would cost more than the collection budget anyway. */
#define HOST_READ_MAX (16u << 20)
#define HOST_CHUNK (64u << 10)
/* Batches handed over and not applied yet, beyond which the thread keeps folding. */
#define HOST_MAX_PENDING 4
/* Keys of the aggregation table forgotten after this many collections without a sample
 * (an interface or a mount that went away). */
#define HOST_EVICT_AFTER 120
/* node_exporter's reading of a CPU whose idle counter jumps back: a hot-plug, start over. */
#define HOST_CPU_JUMP_BACK_S 3.0
#define HOST_ERR_WINDOW 60 /* seconds summed by host_network_errors_1m */
#define HOST_HELPER_STACK (128u << 10)
/* TCP states: the walk's cost allowed per second, and the longest refresh interval. */
#define HOST_TCP_BUDGET_NS 2000000ull
#define HOST_TCP_MAX_SKIP 29

const char *host_file_name(host_file_t f) {
    static const char *const names[HOST_F_COUNT] = {
        [HOST_F_STAT] = "stat",
        [HOST_F_LOADAVG] = "loadavg",
        [HOST_F_MEMINFO] = "meminfo",
        [HOST_F_DISKSTATS] = "diskstats",
        [HOST_F_MOUNTINFO] = "1/mountinfo",
        [HOST_F_NETDEV] = "net/dev",
        [HOST_F_SNMP] = "net/snmp",
        [HOST_F_NETSTAT] = "net/netstat",
        [HOST_F_SNMP6] = "net/snmp6",
        [HOST_F_TCP] = "net/tcp",
        [HOST_F_TCP6] = "net/tcp6",
        [HOST_F_FILENR] = "sys/fs/file-nr",
        [HOST_F_PIDS] = "pids",
        [HOST_F_PIDMAX] = "sys/kernel/pid_max",
        [HOST_F_THREADSMAX] = "sys/kernel/threads-max",
        [HOST_F_NETCLASS] = "class/net",
    };
    return (unsigned)f < HOST_F_COUNT ? names[f] : "unknown";
}

/* ---- statvfs with a timeout ------------------------------------------------------------
 * One helper thread serves the calls. The host thread posts a path and waits up to
 * HOST_STATFS_TIMEOUT; if the answer is late, it marks the helper to quit after the call,
 * keeps it on the `stuck` list under that path (skipped, device_error 1) and starts a new
 * helper for the next calls. Each helper struct is shared by its thread and the host
 * thread (two references); whoever lets go last frees it. Helpers are detached: a stuck
 * one can never be joined, and an idle one exits as soon as it is told to. */
typedef struct helper {
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool pending, done, quit, exited;
    char path[HOST_PATH_MAX];
    char stall[HOST_PATH_MAX];
    int err;
    struct statvfs st;
} helper_t;

static void helper_unref(helper_t *hp) {
    if (atomic_fetch_sub(&hp->refs, 1) != 1) return;
    pthread_mutex_destroy(&hp->mu);
    pthread_cond_destroy(&hp->cv);
    free(hp);
}

static void *helper_main(void *arg) {
    helper_t *hp = arg;
    pthread_mutex_lock(&hp->mu);
    for (;;) {
        while (!hp->quit && !hp->pending) pthread_cond_wait(&hp->cv, &hp->mu);
        if (!hp->pending) break; /* quit while idle */
        char path[HOST_PATH_MAX];
        memcpy(path, hp->path, sizeof path);
        bool stall = hp->stall[0] && strcmp(path, hp->stall) == 0;
        pthread_mutex_unlock(&hp->mu);
        struct statvfs st;
        if (stall) { /* the test hook: a mount that stopped answering */
            struct timespec ts = {3600, 0};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) continue;
        }
        int err = statvfs(path, &st) < 0 ? -errno : 0;
        pthread_mutex_lock(&hp->mu);
        hp->st = st;
        hp->err = err;
        hp->done = true;
        hp->pending = false;
        pthread_cond_broadcast(&hp->cv);
        if (hp->quit) break;
    }
    hp->exited = true;
    pthread_cond_broadcast(&hp->cv);
    pthread_mutex_unlock(&hp->mu);
    helper_unref(hp);
    return NULL;
}

static helper_t *helper_new(const char *stall) {
    helper_t *hp = calloc(1, sizeof *hp);
    if (!hp) return NULL;
    atomic_init(&hp->refs, 2);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&hp->mu, NULL);
    pthread_cond_init(&hp->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(hp->stall, sizeof hp->stall, "%s", stall ? stall : "");
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, HOST_HELPER_STACK);
    int rc = pthread_create(&t, &a, helper_main, hp);
    pthread_attr_destroy(&a);
    if (rc) {
        atomic_store(&hp->refs, 1);
        helper_unref(hp);
        return NULL;
    }
    return hp;
}

static void deadline_after(struct timespec *ts, double s) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    long long ns = (long long)ts->tv_nsec + (long long)(s * 1e9);
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

/* Tells an idle helper to quit and waits (bounded) until its thread is done with it. */
static void helper_retire(helper_t *hp) {
    struct timespec dl;
    deadline_after(&dl, HOST_STATFS_TIMEOUT);
    pthread_mutex_lock(&hp->mu);
    hp->quit = true;
    pthread_cond_broadcast(&hp->cv);
    while (!hp->exited && pthread_cond_timedwait(&hp->cv, &hp->mu, &dl) != ETIMEDOUT) continue;
    pthread_mutex_unlock(&hp->mu);
    helper_unref(hp);
}

/* ---- sets of label keys ----------------------------------------------------------------
 * What was seen in this collection and in the previous one (filesystems, disks,
 * interfaces): something in `prev` but not in `cur` went away, and its gauges are
 * published once as NaN — Prometheus' staleness marker — so a threshold on a filesystem
 * that was unmounted resolves instead of holding its last value forever. */
typedef struct keyslot {
    uint64_t hash;
    uint32_t len;
    uint32_t mask; /* which of its gauges were ever published (bit i: gauge i of its kind) */
    char *key;     /* owned, NUL-terminated after len bytes; NULL: empty */
} keyslot_t;

typedef struct keyset {
    keyslot_t *slots;
    uint32_t cap, n;
} keyset_t;

static keyslot_t *ks_find(const keyset_t *ks, const char *key, uint32_t len, uint64_t h) {
    if (!ks->cap) return NULL;
    for (uint32_t j = (uint32_t)h & (ks->cap - 1); ks->slots[j].key; j = (j + 1) & (ks->cap - 1))
        if (ks->slots[j].hash == h && ks->slots[j].len == len && !memcmp(ks->slots[j].key, key, len))
            return &ks->slots[j];
    return NULL;
}

static bool ks_has(const keyset_t *ks, const char *key, uint32_t len, uint64_t h) {
    return ks_find(ks, key, len, h) != NULL;
}

static uint64_t ks_hash(const char *key, uint32_t len) { return hash_bytes(key, len, 0x686f7374ULL); }

/* Adds key: its slot in *out (NULL when out of memory); 1 added, 0 already there. */
static int ks_put(keyset_t *ks, const char *key, uint32_t len, keyslot_t **out) {
    uint64_t h = ks_hash(key, len);
    if ((*out = ks_find(ks, key, len, h))) return 0;
    if ((ks->n + 1) * 2 > ks->cap) {
        uint32_t ncap = ks->cap ? ks->cap * 2 : 16;
        keyslot_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -ENOMEM; /* *out is NULL */
        for (uint32_t i = 0; i < ks->cap; i++) {
            if (!ks->slots[i].key) continue;
            uint32_t j = (uint32_t)ks->slots[i].hash & (ncap - 1);
            while (ns[j].key) j = (j + 1) & (ncap - 1);
            ns[j] = ks->slots[i];
        }
        free(ks->slots);
        ks->slots = ns;
        ks->cap = ncap;
    }
    char *k = malloc((size_t)len + 1); /* NUL-terminated too: keys are read as C strings */
    if (!k) return -ENOMEM;
    memcpy(k, key, len);
    k[len] = '\0';
    uint32_t j = (uint32_t)h & (ks->cap - 1);
    while (ks->slots[j].key) j = (j + 1) & (ks->cap - 1);
    ks->slots[j] = (keyslot_t){h, len, 0, k};
    ks->n++;
    *out = &ks->slots[j];
    return 1;
}

static void ks_clear(keyset_t *ks) {
    for (uint32_t i = 0; i < ks->cap; i++) {
        free(ks->slots[i].key);
        ks->slots[i].key = NULL;
    }
    ks->n = 0;
}

static void ks_free(keyset_t *ks) {
    ks_clear(ks);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

/* The previous and the current collection's keys of one kind of thing. */
typedef struct seen {
    keyset_t prev, cur;
} seen_t;

/* Marks key seen in this collection: the mask of its published gauges (carried over from
 * the previous collection) in *mask, or NULL when out of memory. False when the key was
 * seen already in this collection (a duplicate line: skip it). */
static bool seen_put(seen_t *s, const char *key, uint32_t len, uint32_t **mask) {
    keyslot_t *k;
    int added = ks_put(&s->cur, key, len, &k);
    *mask = k ? &k->mask : NULL;
    if (added == 0) return false;
    if (k) {
        const keyslot_t *old = ks_find(&s->prev, key, len, k->hash);
        if (old) k->mask = old->mask;
    }
    return true;
}

/* Calls gone(key) for every key of the previous collection not seen in this one, then
 * makes this one the previous. Only after a successful read: a file that failed to read
 * once does not make everything in it vanish. */
static void seen_turn(seen_t *s, void (*gone)(void *ctx, const char *key, uint32_t mask), void *ctx) {
    for (uint32_t i = 0; i < s->prev.cap; i++) {
        const keyslot_t *k = &s->prev.slots[i];
        if (k->key && !ks_has(&s->cur, k->key, k->len, k->hash)) gone(ctx, k->key, k->mask);
    }
    keyset_t t = s->prev;
    s->prev = s->cur;
    s->cur = t;
    ks_clear(&s->cur);
}

static void seen_free(seen_t *s) {
    ks_free(&s->prev);
    ks_free(&s->cur);
}

/* ---- the source ---------------------------------------------------------------------- */

typedef struct cpu_state { /* the last values published for one CPU (node_exporter's cache) */
    bool seen;
    uint64_t t[HOST_CPU_FIELDS];
} cpu_state_t;

typedef struct net_state { /* host_network_errors_1m of one interface */
    char name[64];
    uint64_t gen;  /* collection that last saw it */
    bool primed;
    uint64_t prev; /* receive_errs + transmit_errs at the last collection */
    uint32_t inc[HOST_ERR_WINDOW];
    uint32_t pos;
    uint64_t sum;
} net_state_t;

typedef struct stuck {
    helper_t *hp;
    char path[HOST_PATH_MAX];
} stuck_t;

struct host_source {
    char proc[1024], sys[1024], stall[HOST_PATH_MAX];
    host_sink_fn sink;
    void *sink_ctx;
    _Atomic int *pending;
    host_stats_t stats;
    char *attrs; /* JSON object */
    long user_hz;

    uv_thread_t thread;
    bool started;
    uv_mutex_t mu;
    uv_cond_t cv;
    bool stop;

    /* the host thread's own state from here on */
    agg_t agg;
    statsd_line_t line;
    char *buf;
    size_t cap;
    bool logged[HOST_F_COUNT];
    uint64_t gen;
    cpu_state_t *cpus;
    uint32_t ncpus;
    bool have_total;
    uint64_t total_prev[HOST_CPU_FIELDS];
    net_state_t *nets;
    uint32_t nnets, nets_cap;
    helper_t *helper;
    stuck_t *stuck;
    uint32_t nstuck;
    seen_t fs_seen, disk_seen, net_seen; /* keys: device\0mountpoint\0fstype; device */
    double mem_total, mem_avail;
    bool has_mem_total, has_mem_avail;
    bool live_proc; /* proc root is the running kernel's /proc */
    int diag_fd;    /* NETLINK_SOCK_DIAG, -1 until needed */
    uint32_t diag_seq;
    uint32_t tcp_skip; /* collections left before the next socket walk */
};

host_stats_t *host_stats(host_source_t *h) { return &h->stats; }
const char *host_attrs_json(const host_source_t *h) { return h->attrs; }

static void count_error(host_source_t *h, host_file_t f, const char *what, int err) {
    atomic_fetch_add_explicit(&h->stats.read_errors[f], 1, memory_order_relaxed);
    if (h->logged[f]) return;
    h->logged[f] = true; /* once per file: a file missing here is missing every second */
    log_warn("host metrics: file skipped", "file=%s problem=\"%s\" note=\"counted in "
             "metricast_host_read_errors_total; logged once\"",
             host_file_name(f), err ? strerror(-err) : what);
}

/* Reads root/rel whole into h->buf. Returns the length, or -errno (-EFBIG past the cap). */
static ssize_t slurp_path(host_source_t *h, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return -errno;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode)) { /* a fake root may hold anything */
        close(fd);
        return S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL;
    }
    size_t len = 0;
    for (;;) {
        if (h->cap - len < 4096) {
            if (h->cap >= HOST_READ_MAX) {
                close(fd);
                return -EFBIG;
            }
            size_t ncap = h->cap ? h->cap * 2 : HOST_CHUNK;
            char *nb = realloc(h->buf, ncap);
            if (!nb) {
                close(fd);
                return -ENOMEM;
            }
            h->buf = nb;
            h->cap = ncap;
        }
        ssize_t r = read(fd, h->buf + len, h->cap - len - 1);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    h->buf[len] = '\0';
    return (ssize_t)len;
}

static ssize_t slurp(host_source_t *h, const char *root, const char *rel) {
    char path[2048 + 256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return slurp_path(h, path);
}

/* Reads a file; on failure counts it (unless `optional` and absent) and returns -1. */
static ssize_t read_file(host_source_t *h, host_file_t f, const char *rel, bool optional) {
    ssize_t n = slurp(h, h->proc, rel);
    if (n < 0) {
        if (!(optional && n == -ENOENT)) count_error(h, f, NULL, (int)n);
        return -1;
    }
    return n;
}

/* The parser's verdict: malformed records (or the whole file) count once per read. */
static void verdict(host_source_t *h, host_file_t f, int r) {
    if (r != 0) count_error(h, f, r < 0 ? "not the expected format" : "malformed lines skipped", 0);
}

/* ---- emitting samples ---------------------------------------------------------------- */

typedef struct label {
    const char *k, *v;
} label_t;

/* One sample into the table, labelled source="host" plus `labels`. Label values over the
 * registry's 255-byte limit cannot name a series: the sample is dropped and counted. */
static void emit(host_source_t *h, const char *name, metric_kind_t kind, bool total, double v,
                 const label_t *labels, int nl) {
    if (isinf(v) || (isnan(v) && kind != METRIC_GAUGE)) return; /* NaN: a gauge gone stale */
    statsd_line_t *l = &h->line;
    l->name = name;
    l->name_len = strlen(name);
    l->kind = kind;
    l->gauge_delta = false;
    l->counter_total = total;
    l->rate = 1.0;
    l->nvalues = 1;
    l->values[0] = v;
    l->member = NULL;
    l->member_len = 0;
    l->tags_raw = NULL;
    l->tags_raw_len = 0;
    l->ntags = 0;
    l->tags[l->ntags++] = (statsd_tag_t){"source", 6, HOST_SOURCE_ID, sizeof HOST_SOURCE_ID - 1};
    for (int i = 0; i < nl && l->ntags < STATSD_MAX_TAGS; i++) {
        size_t kl = strlen(labels[i].k), vl = strlen(labels[i].v);
        if (vl > 255) {
            atomic_fetch_add_explicit(&h->stats.rejected, 1, memory_order_relaxed);
            return;
        }
        l->tags[l->ntags++] = (statsd_tag_t){labels[i].k, (uint16_t)kl, labels[i].v, (uint16_t)vl};
    }
    if (agg_add(&h->agg, l) != STATSD_OK)
        atomic_fetch_add_explicit(&h->stats.rejected, 1, memory_order_relaxed);
}

/* The staleness marker of a gauge whose thing went away. */
static void stale(host_source_t *h, const char *name, const label_t *labels, int nl) {
    emit(h, name, METRIC_GAUGE, false, NAN, labels, nl);
}

static void gauge(host_source_t *h, const char *name, double v) {
    emit(h, name, METRIC_GAUGE, false, v, NULL, 0);
}
static void total(host_source_t *h, const char *name, double v) {
    emit(h, name, METRIC_COUNTER, true, v, NULL, 0);
}

/* ---- /proc/stat ---------------------------------------------------------------------- */

typedef struct stat_ctx {
    host_source_t *h;
    uint32_t ncpu;
} stat_ctx_t;

/* Keeps published CPU counters from going backwards (iowait and idle do, by a tick, on
 * some kernels), as node_exporter does; a big jump back of idle is a hot-plug: restart. */
static void cpu_clamp(host_source_t *h, cpu_state_t *cs, host_cpu_t *c) {
    if (cs->seen && (double)cs->t[HOST_CPU_IDLE] - (double)c->t[HOST_CPU_IDLE] >=
                        HOST_CPU_JUMP_BACK_S * (double)h->user_hz)
        cs->seen = false;
    for (int f = 0; f < HOST_CPU_FIELDS; f++) {
        if (!cs->seen || c->t[f] >= cs->t[f]) cs->t[f] = c->t[f];
        c->t[f] = cs->t[f];
    }
    cs->seen = true;
}

static void on_cpu(void *ctx, const host_cpu_t *cpu) {
    stat_ctx_t *sc = ctx;
    host_source_t *h = sc->h;
    host_cpu_t c = *cpu;
    double hz = (double)h->user_hz;
    if (c.id < 0) { /* the machine as a whole */
        uint64_t prev[HOST_CPU_FIELDS];
        memcpy(prev, h->total_prev, sizeof prev);
        bool had = h->have_total;
        for (int f = 0; f < HOST_CPU_FIELDS; f++) /* never backwards, like the cores */
            if (had && c.t[f] < prev[f]) c.t[f] = prev[f];
        for (int f = 0; f <= HOST_CPU_STEAL && f < c.nfields; f++) {
            label_t mode = {"mode", host_cpu_mode_name(f)};
            emit(h, "host_cpu_seconds_total", METRIC_COUNTER, true, (double)c.t[f] / hz, &mode, 1);
        }
        if (had) {
            /* busy = 1 - (idle + iowait + steal) / all, over the last second (guest time is
             * already inside user and nice) */
            double all = 0, idle = 0;
            for (int f = 0; f <= HOST_CPU_STEAL; f++) all += (double)(c.t[f] - prev[f]);
            idle = (double)(c.t[HOST_CPU_IDLE] - prev[HOST_CPU_IDLE]) +
                   (double)(c.t[HOST_CPU_IOWAIT] - prev[HOST_CPU_IOWAIT]) +
                   (double)(c.t[HOST_CPU_STEAL] - prev[HOST_CPU_STEAL]);
            if (all > 0) gauge(h, "host_cpu_busy_ratio", 1.0 - idle / all);
        }
        memcpy(h->total_prev, c.t, sizeof c.t);
        h->have_total = true;
        return;
    }
    if ((uint32_t)c.id >= h->ncpus) {
        uint32_t n = (uint32_t)c.id + 1;
        cpu_state_t *nc = realloc(h->cpus, n * sizeof *nc);
        if (!nc) return;
        memset(nc + h->ncpus, 0, (n - h->ncpus) * sizeof *nc);
        h->cpus = nc;
        h->ncpus = n;
    }
    cpu_clamp(h, &h->cpus[c.id], &c);
    sc->ncpu++;
    char id[16];
    snprintf(id, sizeof id, "%d", c.id);
    for (int f = 0; f <= HOST_CPU_STEAL && f < c.nfields; f++) {
        label_t l[2] = {{"cpu", id}, {"mode", host_cpu_mode_name(f)}};
        emit(h, "node_cpu_seconds_total", METRIC_COUNTER, true, (double)c.t[f] / hz, l, 2);
    }
    for (int f = HOST_CPU_GUEST; f < c.nfields; f++) {
        label_t l[2] = {{"cpu", id}, {"mode", host_cpu_mode_name(f)}};
        emit(h, "node_cpu_guest_seconds_total", METRIC_COUNTER, true, (double)c.t[f] / hz, l, 2);
    }
}

static void collect_stat(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_STAT, "stat", false);
    if (n < 0) return;
    host_stat_t st;
    stat_ctx_t sc = {h, 0};
    verdict(h, HOST_F_STAT, host_parse_stat(h->buf, (size_t)n, &st, on_cpu, &sc));
    if (st.have & HOST_STAT_BTIME) gauge(h, "node_boot_time_seconds", (double)st.btime);
    if (st.have & HOST_STAT_CTXT) total(h, "node_context_switches_total", (double)st.ctxt);
    if (st.have & HOST_STAT_PROCESSES) total(h, "node_forks_total", (double)st.processes);
    if (st.have & HOST_STAT_INTR) total(h, "node_intr_total", (double)st.intr);
    if (st.have & HOST_STAT_RUNNING) gauge(h, "node_procs_running", (double)st.procs_running);
    if (st.have & HOST_STAT_BLOCKED) gauge(h, "node_procs_blocked", (double)st.procs_blocked);
}

/* ---- loadavg, meminfo, file-nr, processes ------------------------------------------- */

static void collect_loadavg(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_LOADAVG, "loadavg", false);
    if (n < 0) return;
    host_loadavg_t la;
    int r = host_parse_loadavg(h->buf, (size_t)n, &la);
    verdict(h, HOST_F_LOADAVG, r);
    if (r < 0) return;
    gauge(h, "node_load1", la.load1);
    gauge(h, "node_load5", la.load5);
    gauge(h, "node_load15", la.load15);
    if (la.has_threads) gauge(h, "node_processes_threads", (double)la.threads);
}

static void on_meminfo(void *ctx, const char *name, double v, bool bytes) {
    host_source_t *h = ctx;
    char metric[128];
    snprintf(metric, sizeof metric, "node_memory_%s%s", name, bytes ? "_bytes" : "");
    gauge(h, metric, v);
    if (bytes && strcmp(name, "MemTotal") == 0) h->mem_total = v, h->has_mem_total = true;
    if (bytes && strcmp(name, "MemAvailable") == 0) h->mem_avail = v, h->has_mem_avail = true;
}

static void collect_meminfo(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_MEMINFO, "meminfo", false);
    if (n < 0) return;
    h->has_mem_total = h->has_mem_avail = false;
    verdict(h, HOST_F_MEMINFO, host_parse_meminfo(h->buf, (size_t)n, on_meminfo, h));
    if (h->has_mem_total && h->has_mem_avail && h->mem_total > 0)
        gauge(h, "host_memory_available_ratio", h->mem_avail / h->mem_total);
}

static void collect_filefd(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_FILENR, "sys/fs/file-nr", false);
    if (n < 0) return;
    uint64_t allocated, maximum;
    int r = host_parse_file_nr(h->buf, (size_t)n, &allocated, &maximum);
    verdict(h, HOST_F_FILENR, r);
    if (r < 0) return;
    gauge(h, "node_filefd_allocated", (double)allocated);
    gauge(h, "node_filefd_maximum", (double)maximum);
}

static void collect_limit(host_source_t *h, host_file_t f, const char *rel, const char *metric) {
    ssize_t n = read_file(h, f, rel, false);
    if (n < 0) return;
    int64_t v;
    int r = host_parse_i64(h->buf, (size_t)n, &v);
    verdict(h, f, r);
    if (r == 0) gauge(h, metric, (double)v);
}

static void collect_pids(host_source_t *h) {
    DIR *d = opendir(h->proc);
    if (!d) {
        count_error(h, HOST_F_PIDS, NULL, -errno);
        return;
    }
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += host_is_pid_name(e->d_name);
    closedir(d);
    gauge(h, "node_processes_pids", (double)n);
    collect_limit(h, HOST_F_PIDMAX, "sys/kernel/pid_max", "node_processes_max_processes");
    collect_limit(h, HOST_F_THREADSMAX, "sys/kernel/threads-max", "node_processes_max_threads");
}

/* ---- disks --------------------------------------------------------------------------- */

static void on_disk(void *ctx, const host_disk_t *d) {
    host_source_t *h = ctx;
    if (host_disk_ignored(d->name)) return;
    /* node_exporter's names, in /proc/diskstats column order; scale: 1 a count, 512 a
     * sector count in bytes, 0.001 milliseconds in seconds */
    static const struct {
        const char *name;
        double scale;
        bool counter;
    } cols[HOST_DISK_FIELDS] = {
        {"node_disk_reads_completed_total", 1, true},
        {"node_disk_reads_merged_total", 1, true},
        {"node_disk_read_bytes_total", 512, true},
        {"node_disk_read_time_seconds_total", 0.001, true},
        {"node_disk_writes_completed_total", 1, true},
        {"node_disk_writes_merged_total", 1, true},
        {"node_disk_written_bytes_total", 512, true},
        {"node_disk_write_time_seconds_total", 0.001, true},
        {"node_disk_io_now", 1, false},
        {"node_disk_io_time_seconds_total", 0.001, true},
        {"node_disk_io_time_weighted_seconds_total", 0.001, true},
        {"node_disk_discards_completed_total", 1, true},
        {"node_disk_discards_merged_total", 1, true},
        {"node_disk_discarded_sectors_total", 1, true},
        {"node_disk_discard_time_seconds_total", 0.001, true},
        {"node_disk_flush_requests_total", 1, true},
        {"node_disk_flush_requests_time_seconds_total", 0.001, true},
    };
    char dev[64];
    host_utf8_clean(d->name, strlen(d->name), dev, sizeof dev);
    label_t l = {"device", dev};
    uint32_t *mask, none = 0;
    if (!seen_put(&h->disk_seen, dev, (uint32_t)strlen(dev), &mask)) return; /* listed twice */
    for (int i = 0; i < d->nfields && i < HOST_DISK_FIELDS; i++)
        emit(h, cols[i].name, cols[i].counter ? METRIC_COUNTER : METRIC_GAUGE, cols[i].counter,
             (double)d->f[i] * cols[i].scale, &l, 1);
    *(mask ? mask : &none) |= 1; /* node_disk_io_now */
}

static void disk_gone(void *ctx, const char *key, uint32_t mask) {
    label_t l = {"device", key};
    if (mask & 1) stale(ctx, "node_disk_io_now", &l, 1);
}

static void collect_disks(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_DISKSTATS, "diskstats", false);
    if (n < 0) return;
    int r = host_parse_diskstats(h->buf, (size_t)n, on_disk, h);
    verdict(h, HOST_F_DISKSTATS, r);
    if (r >= 0) seen_turn(&h->disk_seen, disk_gone, h);
    else ks_clear(&h->disk_seen.cur);
}

/* ---- filesystems --------------------------------------------------------------------- */

static stuck_t *find_stuck(host_source_t *h, const char *path) {
    for (uint32_t i = 0; i < h->nstuck; i++)
        if (strcmp(h->stuck[i].path, path) == 0) return &h->stuck[i];
    return NULL;
}

/* Forgets stuck mounts whose call came back. */
static void reap_stuck(host_source_t *h) {
    for (uint32_t i = 0; i < h->nstuck;) {
        helper_t *hp = h->stuck[i].hp;
        pthread_mutex_lock(&hp->mu);
        bool done = hp->done;
        pthread_mutex_unlock(&hp->mu);
        if (!done) {
            i++;
            continue;
        }
        char q[512];
        log_info("host metrics: filesystem answers again", "mountpoint=%s",
                 log_quote(h->stuck[i].path, q, sizeof q));
        helper_unref(hp);
        h->stuck[i] = h->stuck[--h->nstuck];
    }
}

/* statvfs through the helper: 0, -errno, or -ETIMEDOUT (the path is then stuck). */
static int timed_statfs(host_source_t *h, const char *path, struct statvfs *out) {
    if (find_stuck(h, path)) return -ETIMEDOUT;
    if (!h->helper && !(h->helper = helper_new(h->stall))) return -EAGAIN;
    helper_t *hp = h->helper;
    struct timespec dl;
    deadline_after(&dl, HOST_STATFS_TIMEOUT);
    pthread_mutex_lock(&hp->mu);
    snprintf(hp->path, sizeof hp->path, "%s", path);
    hp->done = false;
    hp->pending = true;
    pthread_cond_broadcast(&hp->cv);
    int rc = 0;
    while (!hp->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&hp->cv, &hp->mu, &dl);
    if (hp->done) {
        *out = hp->st;
        int err = hp->err;
        pthread_mutex_unlock(&hp->mu);
        return err;
    }
    hp->quit = true; /* after this call, whenever it returns */
    pthread_mutex_unlock(&hp->mu);
    h->helper = NULL;
    atomic_fetch_add_explicit(&h->stats.statfs_timeouts, 1, memory_order_relaxed);
    stuck_t *ns = realloc(h->stuck, (h->nstuck + 1) * sizeof *ns);
    char q[512];
    log_warn("host metrics: filesystem not answering", "mountpoint=%s timeout_s=%g note=\"skipped "
             "(node_filesystem_device_error 1) until it answers\"",
             log_quote(path, q, sizeof q), HOST_STATFS_TIMEOUT);
    if (!ns) { /* cannot remember it: let it go (its thread frees it when it returns) */
        helper_unref(hp);
        return -ETIMEDOUT;
    }
    h->stuck = ns;
    h->stuck[h->nstuck].hp = hp;
    snprintf(h->stuck[h->nstuck].path, sizeof h->stuck[0].path, "%s", path);
    h->nstuck++;
    return -ETIMEDOUT;
}

/* The gauges of one filesystem, in the order of their bits in its seen mask. */
enum { FS_SIZE = 0, FS_FREE, FS_AVAIL, FS_FILES, FS_FILES_FREE, FS_RATIO, FS_RO, FS_ERROR, FS_N };
static const char *const fs_gauges[FS_N] = {
    "node_filesystem_size_bytes", "node_filesystem_free_bytes", "node_filesystem_avail_bytes",
    "node_filesystem_files",      "node_filesystem_files_free", "host_filesystem_avail_ratio",
    "node_filesystem_readonly",   "node_filesystem_device_error"};

static void fs_stale(host_source_t *h, const label_t *l, uint32_t mask, int upto) {
    for (int i = 0; i < upto; i++)
        if (mask & (1u << i)) stale(h, fs_gauges[i], l, 3);
}

static void fs_gone(void *ctx, const char *key, uint32_t mask) {
    const char *mp = key + strlen(key) + 1, *fst = mp + strlen(mp) + 1;
    label_t l[3] = {{"device", key}, {"fstype", fst}, {"mountpoint", mp}};
    fs_stale(ctx, l, mask, FS_N);
}

static void on_mount(void *ctx, const host_mount_t *m) {
    host_source_t *h = ctx;
    if (host_mountpoint_ignored(m->mountpoint) || host_fstype_ignored(m->fstype)) return;
    /* the key: device, mountpoint, fstype NUL-separated (no label holds a NUL) */
    char key[HOST_PATH_MAX * 2];
    int kn = snprintf(key, sizeof key, "%s%c%s%c%s", m->device, 0, m->mountpoint, 0, m->fstype);
    uint32_t *mask = NULL, none = 0;
    if (kn > 0 && (size_t)kn < sizeof key && !seen_put(&h->fs_seen, key, (uint32_t)kn, &mask))
        return; /* the same filesystem mounted twice at one place */
    if (!mask) mask = &none;
    label_t l[3] = {{"device", m->device}, {"fstype", m->fstype}, {"mountpoint", m->mountpoint}};
    struct statvfs st;
    int rc = timed_statfs(h, m->path, &st);
    emit(h, fs_gauges[FS_RO], METRIC_GAUGE, false, m->readonly ? 1 : 0, l, 3);
    emit(h, fs_gauges[FS_ERROR], METRIC_GAUGE, false, rc ? 1 : 0, l, 3);
    *mask |= 1u << FS_RO | 1u << FS_ERROR;
    if (rc) { /* sizes unknown now: their last values would mislead (and hold alerts) */
        fs_stale(h, l, *mask, FS_RO);
        *mask &= ~((1u << FS_RO) - 1);
        return;
    }
    double bs = (double)st.f_frsize;
    double v[FS_RATIO + 1];
    v[FS_SIZE] = (double)st.f_blocks * bs;
    v[FS_FREE] = (double)st.f_bfree * bs;
    v[FS_AVAIL] = (double)st.f_bavail * bs;
    v[FS_FILES] = (double)st.f_files;
    v[FS_FILES_FREE] = (double)st.f_ffree;
    v[FS_RATIO] = v[FS_SIZE] > 0 ? v[FS_AVAIL] / v[FS_SIZE] : NAN; /* no size: no ratio */
    for (int i = 0; i <= FS_RATIO; i++) {
        if (isnan(v[i]) && !(*mask & (1u << i))) continue;
        emit(h, fs_gauges[i], METRIC_GAUGE, false, v[i], l, 3);
        *mask |= 1u << i;
    }
}

static void collect_filesystems(host_source_t *h) {
    reap_stuck(h);
    /* PID 1's view, as node_exporter reads it; our own when hidepid hides PID 1 */
    ssize_t n = slurp(h, h->proc, "1/mountinfo");
    if (n == -ENOENT || n == -EACCES || n == -EPERM) n = slurp(h, h->proc, "self/mountinfo");
    if (n < 0) {
        count_error(h, HOST_F_MOUNTINFO, NULL, (int)n);
        return;
    }
    /* the parser's callbacks use h->buf's content while statvfs runs: nothing else reads
     * into h->buf until the parse is over */
    int r = host_parse_mountinfo(h->buf, (size_t)n, on_mount, h);
    verdict(h, HOST_F_MOUNTINFO, r);
    if (r >= 0) seen_turn(&h->fs_seen, fs_gone, h);
    else ks_clear(&h->fs_seen.cur);
}

/* ---- network ------------------------------------------------------------------------- */

static net_state_t *net_state(host_source_t *h, const char *name, uint32_t hint) {
    if (hint < h->nnets && strcmp(h->nets[hint].name, name) == 0) return &h->nets[hint];
    for (uint32_t i = 0; i < h->nnets; i++)
        if (strcmp(h->nets[i].name, name) == 0) return &h->nets[i];
    if (h->nnets == h->nets_cap) {
        uint32_t ncap = h->nets_cap ? h->nets_cap * 2 : 8;
        net_state_t *nn = realloc(h->nets, ncap * sizeof *nn);
        if (!nn) return NULL;
        h->nets = nn;
        h->nets_cap = ncap;
    }
    net_state_t *ns = &h->nets[h->nnets++];
    memset(ns, 0, sizeof *ns);
    snprintf(ns->name, sizeof ns->name, "%s", name);
    return ns;
}

typedef struct net_ctx {
    host_source_t *h;
    uint32_t i;
} net_ctx_t;

/* The gauges of one interface, in the order of their bits in its seen mask. */
enum { NET_UP = 0, NET_MTU, NET_SPEED, NET_ERRORS, NET_N };
static const char *const net_gauges[NET_N] = {"node_network_up", "node_network_mtu_bytes",
                                              "node_network_speed_bytes", "host_network_errors_1m"};

/* /sys/class/net/<dev>/{operstate,mtu,speed}: node_network_up, _mtu_bytes, _speed_bytes.
 * Virtual interfaces have no speed (the read fails with EINVAL): not an error. Returns the
 * mask of the gauges published. */
static uint32_t netclass(host_source_t *h, const char *dev, const label_t *l) {
    char rel[256];
    if (strchr(dev, '/') || strcmp(dev, ".") == 0 || strcmp(dev, "..") == 0) return 0;
    snprintf(rel, sizeof rel, "class/net/%s/operstate", dev);
    ssize_t n = slurp(h, h->sys, rel);
    if (n < 0) {
        count_error(h, HOST_F_NETCLASS, NULL, (int)n);
        return 0;
    }
    while (n > 0 && (h->buf[n - 1] == '\n' || h->buf[n - 1] == ' ')) n--;
    emit(h, net_gauges[NET_UP], METRIC_GAUGE, false, n == 2 && memcmp(h->buf, "up", 2) == 0, l, 1);
    uint32_t mask = 1u << NET_UP;
    int64_t v;
    snprintf(rel, sizeof rel, "class/net/%s/mtu", dev);
    if ((n = slurp(h, h->sys, rel)) >= 0 && host_parse_i64(h->buf, (size_t)n, &v) == 0) {
        emit(h, net_gauges[NET_MTU], METRIC_GAUGE, false, (double)v, l, 1);
        mask |= 1u << NET_MTU;
    }
    snprintf(rel, sizeof rel, "class/net/%s/speed", dev);
    /* Mbit/s; -1 (no link) is skipped, as node_exporter will by default in 2.x */
    if ((n = slurp(h, h->sys, rel)) >= 0 && host_parse_i64(h->buf, (size_t)n, &v) == 0 && v >= 0) {
        emit(h, net_gauges[NET_SPEED], METRIC_GAUGE, false, (double)v * 125000.0, l, 1);
        mask |= 1u << NET_SPEED;
    }
    return mask;
}

typedef struct netdev_list {
    host_netdev_t *v;
    uint32_t n, cap;
} netdev_list_t;

static void on_netdev(void *ctx, const host_netdev_t *d) {
    netdev_list_t *nl = ctx;
    if (nl->n == nl->cap) {
        uint32_t ncap = nl->cap ? nl->cap * 2 : 8;
        host_netdev_t *nv = realloc(nl->v, ncap * sizeof *nv);
        if (!nv) return;
        nl->v = nv;
        nl->cap = ncap;
    }
    nl->v[nl->n++] = *d;
}

static void net_gone(void *ctx, const char *key, uint32_t mask) {
    label_t l = {"device", key};
    for (int i = 0; i < NET_N; i++)
        if (mask & (1u << i)) stale(ctx, net_gauges[i], &l, 1);
}

static void collect_network(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_NETDEV, "net/dev", false);
    if (n < 0) return;
    /* the list first: netclass reads other files into h->buf */
    netdev_list_t nl = {NULL, 0, 0};
    int r = host_parse_netdev(h->buf, (size_t)n, on_netdev, &nl);
    verdict(h, HOST_F_NETDEV, r);
    h->gen++;
    for (uint32_t i = 0; i < nl.n; i++) {
        const host_netdev_t *d = &nl.v[i];
        char dev[64];
        host_utf8_clean(d->name, strlen(d->name), dev, sizeof dev);
        label_t l = {"device", dev};
        uint32_t *mask, none = 0;
        if (!seen_put(&h->net_seen, dev, (uint32_t)strlen(dev), &mask)) continue; /* twice */
        if (!mask) mask = &none;
        for (int f = 0; f < HOST_NETDEV_FIELDS; f++) {
            char metric[64];
            snprintf(metric, sizeof metric, "node_network_%s_total", host_netdev_field_name(f));
            emit(h, metric, METRIC_COUNTER, true, (double)d->v[f], &l, 1);
        }
        *mask |= netclass(h, d->name, &l);
        net_state_t *ns = net_state(h, d->name, i);
        if (!ns) continue;
        uint64_t errs = d->v[2] + d->v[10]; /* receive_errs + transmit_errs */
        if (ns->primed) {
            uint64_t inc = errs >= ns->prev ? errs - ns->prev : errs; /* a restart */
            if (inc > UINT32_MAX) inc = UINT32_MAX;
            ns->sum += inc - ns->inc[ns->pos];
            ns->inc[ns->pos] = (uint32_t)inc;
            ns->pos = (ns->pos + 1) % HOST_ERR_WINDOW;
            emit(h, "host_network_errors_1m", METRIC_GAUGE, false, (double)ns->sum, &l, 1);
            *mask |= 1u << NET_ERRORS;
        }
        ns->prev = errs;
        ns->primed = true;
        ns->gen = h->gen;
    }
    if (r >= 0) {
        seen_turn(&h->net_seen, net_gone, h);
        for (uint32_t i = 0; i < h->nnets;) /* interfaces that went away */
            if (h->nets[i].gen != h->gen)
                h->nets[i] = h->nets[--h->nnets];
            else
                i++;
    } else {
        ks_clear(&h->net_seen.cur);
    }
    free(nl.v);
}

static void on_netstat(void *ctx, const char *proto, const char *field, double v) {
    host_source_t *h = ctx;
    if (!host_netstat_wanted(proto, field)) return;
    char metric[160];
    snprintf(metric, sizeof metric, "node_netstat_%s_%s", proto, field);
    gauge(h, metric, v); /* untyped in node_exporter: a gauge keeps the name as it is */
}

static void collect_netstat(host_source_t *h) {
    ssize_t n = read_file(h, HOST_F_NETSTAT, "net/netstat", false);
    if (n >= 0) verdict(h, HOST_F_NETSTAT, host_parse_netstat(h->buf, (size_t)n, on_netstat, h));
    n = read_file(h, HOST_F_SNMP, "net/snmp", false);
    if (n >= 0) verdict(h, HOST_F_SNMP, host_parse_netstat(h->buf, (size_t)n, on_netstat, h));
    n = read_file(h, HOST_F_SNMP6, "net/snmp6", true); /* absent without IPv6 */
    if (n >= 0) verdict(h, HOST_F_SNMP6, host_parse_snmp6(h->buf, (size_t)n, on_netstat, h));
}

/* Streams a socket table a chunk at a time: it can hold hundreds of thousands of lines. */
static bool read_tcp(host_source_t *h, host_file_t f, const char *rel, bool optional,
                     host_tcp_t *acc) {
    char path[2048 + 64];
    snprintf(path, sizeof path, "%s/%s", h->proc, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (!(optional && errno == ENOENT)) count_error(h, f, NULL, -errno);
        return false;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        close(fd);
        count_error(h, f, "not a regular file", 0);
        return false;
    }
    if (h->cap < HOST_CHUNK) {
        char *nb = realloc(h->buf, HOST_CHUNK);
        if (!nb) {
            close(fd);
            count_error(h, f, NULL, -ENOMEM);
            return false;
        }
        h->buf = nb;
        h->cap = HOST_CHUNK;
    }
    size_t have = 0; /* bytes of an incomplete line carried to the next read */
    int bad = 0, lines = 0;
    bool ok = true;
    for (;;) {
        ssize_t r = read(fd, h->buf + have, h->cap - have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            count_error(h, f, NULL, -errno);
            ok = false;
            break;
        }
        const char *p = h->buf, *end = h->buf + have + (size_t)r;
        for (;;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            /* a line waits for its end, unless the file ended or it fills the chunk */
            if (!nl && (p == end || (r > 0 && !(p == h->buf && end == h->buf + h->cap)))) break;
            const char *le = nl ? nl : end;
            int lr = host_parse_tcp_line(p, (size_t)(le - p), acc);
            bad += lr < 0;
            lines += lr <= 0;
            p = nl ? nl + 1 : end;
        }
        have = (size_t)(end - p);
        memmove(h->buf, p, have);
        if (r == 0) break;
    }
    close(fd);
    if (bad) verdict(h, f, bad == lines ? -1 : bad);
    return ok && !(bad && bad == lines);
}

/* The live kernel's sockets through sock_diag (what node_exporter's tcpstat reads): the
 * same counts as /proc/net/tcp{,6} at about a twentieth of the cost, because the text
 * files re-walk the connection hash table for every page they produce. 0, or -errno
 * (no netlink here: the caller falls back to the files). */
static int dump_family(host_source_t *h, int family, host_tcp_t *acc) {
    if (h->diag_fd < 0) {
        h->diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (h->diag_fd < 0) return -errno;
        struct timeval tv = {1, 0}; /* the kernel answers at once; never wait forever */
        setsockopt(h->diag_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = ++h->diag_seq;
    req.r.sdiag_family = (uint8_t)family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = 0xfff; /* every state */
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(h->diag_fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        goto fail;
    if (h->cap < HOST_CHUNK) {
        char *nb = realloc(h->buf, HOST_CHUNK);
        if (!nb) return -ENOMEM;
        h->buf = nb;
        h->cap = HOST_CHUNK;
    }
    for (;;) {
        ssize_t r = recv(h->diag_fd, h->buf, h->cap, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) goto fail;
        size_t left = (size_t)r;
        for (struct nlmsghdr *m = (struct nlmsghdr *)(void *)h->buf; NLMSG_OK(m, left);
             m = NLMSG_NEXT(m, left)) {
            if (m->nlmsg_seq != h->diag_seq) continue; /* an answer to an abandoned dump */
            if (m->nlmsg_type == NLMSG_DONE) return 0;
            if (m->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(m);
                return m->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error ? e->error : -EIO;
            }
            if (m->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                m->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                continue;
            const struct inet_diag_msg *d = NLMSG_DATA(m);
            if (d->idiag_state > 0 && d->idiag_state < HOST_TCP_STATES) acc->state[d->idiag_state]++;
            acc->rx_queued += d->idiag_rqueue;
            acc->tx_queued += d->idiag_wqueue;
        }
    }
fail:;
    int e = errno ? -errno : -EIO;
    close(h->diag_fd); /* a fresh socket next time: no half-read dump left in it */
    h->diag_fd = -1;
    return e;
}

static void collect_tcp(host_source_t *h) {
    /* Walking a big socket table costs: past HOST_TCP_BUDGET_NS per walk, the states are
     * refreshed less often (their gauges keep the last counts meanwhile), so this part
     * stays near that budget per second whatever the number of connections. */
    if (h->tcp_skip > 0) {
        h->tcp_skip--;
        return;
    }
    uint64_t t0 = clk_mono_ns();
    host_tcp_t acc;
    memset(&acc, 0, sizeof acc);
    bool done = false;
    if (h->live_proc) { /* the running kernel: its netlink answers for this /proc */
        done = dump_family(h, AF_INET, &acc) == 0;
        if (done) (void)dump_family(h, AF_INET6, &acc); /* absent without IPv6 */
    }
    if (!done) { /* a fake or foreign root, or no netlink: the text tables */
        memset(&acc, 0, sizeof acc);
        done = read_tcp(h, HOST_F_TCP, "net/tcp", false, &acc);
        (void)read_tcp(h, HOST_F_TCP6, "net/tcp6", true, &acc); /* absent without IPv6 */
    }
    uint64_t spent = clk_mono_ns() - t0;
    h->tcp_skip = (uint32_t)(spent / HOST_TCP_BUDGET_NS);
    if (h->tcp_skip > HOST_TCP_MAX_SKIP) h->tcp_skip = HOST_TCP_MAX_SKIP;
    if (!done) return; /* no table: no counts, rather than zeros */
    for (int s = 1; s < HOST_TCP_STATES; s++) {
        label_t l = {"state", host_tcp_state_name(s)};
        emit(h, "node_tcp_connection_states", METRIC_GAUGE, false, (double)acc.state[s], &l, 1);
    }
    label_t rx = {"state", "rx_queued_bytes"}, tx = {"state", "tx_queued_bytes"};
    emit(h, "node_tcp_connection_states", METRIC_GAUGE, false, (double)acc.rx_queued, &rx, 1);
    emit(h, "node_tcp_connection_states", METRIC_GAUGE, false, (double)acc.tx_queued, &tx, 1);
}

static void collect_uname(host_source_t *h) {
    struct utsname u;
    if (uname(&u) < 0) return;
    char f[6][sizeof u.release + 8];
    const char *src[6] = {u.domainname, u.machine, u.nodename, u.release, u.sysname, u.version};
    for (int i = 0; i < 6; i++) host_utf8_clean(src[i], strnlen(src[i], sizeof u.release), f[i], sizeof f[i]);
    label_t l[6] = {{"domainname", f[0]}, {"machine", f[1]}, {"nodename", f[2]},
                    {"release", f[3]},    {"sysname", f[4]}, {"version", f[5]}};
    emit(h, "node_uname_info", METRIC_GAUGE, false, 1, l, 6);
}

/* ---- the thread ---------------------------------------------------------------------- */

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void collect(host_source_t *h) {
    uint64_t c0 = thread_cpu_ns();
    collect_stat(h);
    collect_loadavg(h);
    collect_meminfo(h);
    collect_filefd(h);
    collect_pids(h);
    collect_disks(h);
    collect_filesystems(h);
    collect_network(h);
    collect_netstat(h);
    collect_tcp(h);
    collect_uname(h);
    /* the hub is behind: keep folding (totals and gauges keep their latest value), hand
     * over when it has caught up */
    if (atomic_load(h->pending) < HOST_MAX_PENDING || !agg_has_dirty(&h->agg)) {
        int err;
        agg_batch_t *b = agg_flush(&h->agg, INGEST_HTTP, HOST_EVICT_AFTER, &err);
        if (b) {
            uint64_t n = b->n;
            atomic_fetch_add(h->pending, 1);
            if (h->sink(h->sink_ctx, b) < 0) {
                atomic_fetch_sub(h->pending, 1);
                agg_batch_free(b);
            } else {
                atomic_fetch_add_explicit(&h->stats.samples, n, memory_order_relaxed);
            }
        }
    }
    atomic_fetch_add_explicit(&h->stats.collections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->stats.cpu_ns, thread_cpu_ns() - c0, memory_order_relaxed);
}

static void host_main(void *arg) {
    host_source_t *h = arg;
    uv_mutex_lock(&h->mu);
    while (!h->stop) {
        /* the next wall-clock half-second: mid-interval for the registry's roll */
        double now = clk_unix();
        double at = floor(now - 0.5) + 1.5;
        while (!h->stop && (now = clk_unix()) < at) {
            double wait = at - now;
            if (wait > 2) wait = 2; /* the wall clock may be set meanwhile */
            uv_cond_timedwait(&h->cv, &h->mu, (uint64_t)(wait * 1e9) + 1);
        }
        if (h->stop) break;
        uv_mutex_unlock(&h->mu);
        collect(h);
        uv_mutex_lock(&h->mu);
    }
    uv_mutex_unlock(&h->mu);
}

/* ---- attributes ---------------------------------------------------------------------- */

typedef struct attr_ctx {
    int cores;
    double mem;
} attr_ctx_t;

static void attr_cpu(void *ctx, const host_cpu_t *c) {
    attr_ctx_t *a = ctx;
    if (c->id >= 0) a->cores++;
}

static void attr_mem(void *ctx, const char *name, double v, bool bytes) {
    attr_ctx_t *a = ctx;
    if (bytes && strcmp(name, "MemTotal") == 0) a->mem = v;
}

static char *make_attrs(host_source_t *h) {
    attr_ctx_t a = {0, -1};
    host_stat_t st = {0};
    ssize_t n = slurp(h, h->proc, "stat");
    if (n >= 0) host_parse_stat(h->buf, (size_t)n, &st, attr_cpu, &a);
    if ((n = slurp(h, h->proc, "meminfo")) >= 0)
        host_parse_meminfo(h->buf, (size_t)n, attr_mem, &a);
    struct utsname u;
    bool have_u = uname(&u) == 0;
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "kind", "builtin");
    if (have_u) {
        char t[sizeof u.release + 8];
        host_utf8_clean(u.nodename, strnlen(u.nodename, sizeof u.nodename), t, sizeof t);
        jsonw_kv_str(&w, "hostname", t);
        host_utf8_clean(u.release, strnlen(u.release, sizeof u.release), t, sizeof t);
        jsonw_kv_str(&w, "kernel", t);
        host_utf8_clean(u.sysname, strnlen(u.sysname, sizeof u.sysname), t, sizeof t);
        jsonw_kv_str(&w, "os", t);
        host_utf8_clean(u.machine, strnlen(u.machine, sizeof u.machine), t, sizeof t);
        jsonw_kv_str(&w, "machine", t);
    }
    if (a.cores > 0) jsonw_kv_int(&w, "cores", a.cores);
    if (a.mem >= 0) jsonw_kv_num(&w, "memory_bytes", a.mem);
    if (st.have & HOST_STAT_BTIME) {
        char ts[CLK_ISO_LEN];
        clk_iso8601((double)st.btime, ts);
        jsonw_kv_str(&w, "boot_time", ts);
    }
    char p[1100];
    host_utf8_clean(h->proc, strlen(h->proc), p, sizeof p);
    jsonw_kv_str(&w, "proc", p);
    host_utf8_clean(h->sys, strlen(h->sys), p, sizeof p);
    jsonw_kv_str(&w, "sys", p);
    jsonw_obj_close(&w);
    if (jsonw_error(&w)) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* ---- life cycle ---------------------------------------------------------------------- */

static int check_dir(const char *path, const char *flag, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path, &sb) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s %s: %s", flag, path, strerror(e));
        return -e;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s %s: not a directory", flag, path);
        return -ENOTDIR;
    }
    return 0;
}

int host_open(host_source_t **out, const host_opts_t *o, host_sink_fn sink, void *ctx,
              _Atomic int *pending, char *err, size_t errlen) {
    *out = NULL;
    int rc;
    /* every host series but three comes from the proc root: a wrong one is a setting to
     * fix (exit 2); a missing sys root (some containers) only costs link state, MTU and
     * speed, skipped and counted like any missing file */
    if ((rc = check_dir(o->proc_root, "--host-proc", err, errlen))) return rc;
    char serr[1200];
    if (check_dir(o->sys_root, "--host-sys", serr, sizeof serr) < 0) {
        char q[1300];
        log_warn("host metrics: no sys root", "problem=%s note=\"node_network_up, _mtu_bytes "
                 "and _speed_bytes are skipped (counted in metricast_host_read_errors_total)\"",
                 log_quote(serr, q, sizeof q));
    }
    if (strlen(o->proc_root) >= 1024 || strlen(o->sys_root) >= 1024) {
        snprintf(err, errlen, "--host-proc/--host-sys: path too long");
        return -ENAMETOOLONG;
    }
    host_source_t *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "host metrics: out of memory");
        return -ENOMEM;
    }
    snprintf(h->proc, sizeof h->proc, "%s", o->proc_root);
    snprintf(h->sys, sizeof h->sys, "%s", o->sys_root);
    snprintf(h->stall, sizeof h->stall, "%s", o->statfs_stall ? o->statfs_stall : "");
    h->sink = sink;
    h->sink_ctx = ctx;
    h->diag_fd = -1;
    /* the running kernel's own /proc (not a fake or a foreign root): same device and inode */
    struct stat a, b;
    h->live_proc = stat(o->proc_root, &a) == 0 && stat("/proc", &b) == 0 &&
                   a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    h->pending = pending;
    long hz = sysconf(_SC_CLK_TCK);
    h->user_hz = hz > 0 ? hz : 100;
    agg_init(&h->agg, 100000);
    if (uv_mutex_init(&h->mu) || uv_cond_init(&h->cv)) {
        free(h);
        snprintf(err, errlen, "host metrics: cannot create a lock");
        return -ENOMEM;
    }
    h->attrs = make_attrs(h);
    if (!h->attrs) {
        host_close(h);
        snprintf(err, errlen, "host metrics: out of memory");
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

int host_start(host_source_t *h) {
    int rc = uv_thread_create(&h->thread, host_main, h);
    if (rc == 0) h->started = true;
    return rc;
}

void host_close(host_source_t *h) {
    if (!h) return;
    if (h->started) {
        uv_mutex_lock(&h->mu);
        h->stop = true;
        uv_cond_signal(&h->cv);
        uv_mutex_unlock(&h->mu);
        uv_thread_join(&h->thread);
    }
    if (h->helper) helper_retire(h->helper);
    for (uint32_t i = 0; i < h->nstuck; i++) helper_unref(h->stuck[i].hp);
    free(h->stuck);
    uv_mutex_destroy(&h->mu);
    uv_cond_destroy(&h->cv);
    agg_free(&h->agg);
    free(h->buf);
    free(h->cpus);
    free(h->nets);
    seen_free(&h->fs_seen);
    seen_free(&h->disk_seen);
    seen_free(&h->net_seen);
    free(h->attrs);
    if (h->diag_fd >= 0) close(h->diag_fd);
    free(h);
}

/* ---- HELP texts ---------------------------------------------------------------------- */

const char *host_family_help(const char *name, char *buf, size_t cap) {
    static const struct {
        const char *name, *help;
    } exact[] = {
        {"node_cpu_seconds_total", "Seconds the CPUs spent in each mode (since boot)."},
        {"node_cpu_guest_seconds_total", "Seconds the CPUs spent running guests, by mode."},
        {"host_cpu_seconds_total", "Seconds all CPUs together spent in each mode (since boot)."},
        {"host_cpu_busy_ratio",
         "Share of CPU time not idle, iowait or steal over the last second (0-1), all CPUs."},
        {"host_memory_available_ratio", "MemAvailable / MemTotal (0-1)."},
        {"host_filesystem_avail_ratio", "Space available to non-root users / size (0-1)."},
        {"host_network_errors_1m",
         "Receive plus transmit errors of the interface over the last 60 seconds."},
        {"node_load1", "1m load average."},
        {"node_load5", "5m load average."},
        {"node_load15", "15m load average."},
        {"node_boot_time_seconds", "Node boot time, in unixtime."},
        {"node_context_switches_total", "Total number of context switches."},
        {"node_forks_total", "Total number of forks."},
        {"node_intr_total", "Total number of interrupts serviced."},
        {"node_procs_running", "Number of processes in runnable state."},
        {"node_procs_blocked", "Number of processes blocked waiting for I/O to complete."},
        {"node_processes_pids", "Number of PIDs."},
        {"node_processes_threads", "Allocated threads in system."},
        {"node_processes_max_processes", "Number of max PIDs limit."},
        {"node_processes_max_threads", "Limit of threads in the system."},
        {"node_filefd_allocated", "File descriptor statistics: allocated."},
        {"node_filefd_maximum", "File descriptor statistics: maximum."},
        {"node_disk_io_now", "The number of I/Os currently in progress."},
        {"node_disk_io_time_seconds_total", "Total seconds spent doing I/Os."},
        {"node_disk_read_bytes_total", "The total number of bytes read successfully."},
        {"node_disk_written_bytes_total", "The total number of bytes written successfully."},
        {"node_disk_reads_completed_total", "The total number of reads completed successfully."},
        {"node_disk_writes_completed_total",
         "The total number of writes completed successfully."},
        {"node_filesystem_size_bytes", "Filesystem size in bytes."},
        {"node_filesystem_free_bytes", "Filesystem free space in bytes."},
        {"node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."},
        {"node_filesystem_files", "Filesystem total file nodes."},
        {"node_filesystem_files_free", "Filesystem total free file nodes."},
        {"node_filesystem_readonly", "Filesystem read-only status."},
        {"node_filesystem_device_error",
         "Whether an error occurred while getting statistics for the given device."},
        {"node_network_up", "Value is 1 if operstate is 'up', 0 otherwise."},
        {"node_network_mtu_bytes", "Network device MTU in bytes."},
        {"node_network_speed_bytes", "Network device link speed in bytes per second."},
        {"node_tcp_connection_states", "Number of connection states."},
        {"node_uname_info", "Labeled system information as provided by the uname system call."},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i].name) == 0) {
            snprintf(buf, cap, "%s", exact[i].help);
            return buf;
        }
    static const struct {
        const char *prefix, *before, *after;
    } prefixed[] = {
        {"node_memory_", "Memory information field ", " (/proc/meminfo)."},
        {"node_netstat_", "Statistic ", " (/proc/net/netstat, snmp, snmp6)."},
        {"node_network_", "Network device statistic ", " (/proc/net/dev)."},
        {"node_disk_", "Disk statistic ", " (/proc/diskstats)."},
    };
    for (size_t i = 0; i < sizeof prefixed / sizeof prefixed[0]; i++) {
        size_t l = strlen(prefixed[i].prefix);
        if (strncmp(name, prefixed[i].prefix, l) == 0) {
            snprintf(buf, cap, "%s%s%s", prefixed[i].before, name + l, prefixed[i].after);
            return buf;
        }
    }
    return NULL;
}
