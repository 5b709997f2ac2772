/* bench_statsd_fold — the StatsD ingest path in-process, without sockets: the datagrams
 * bench_statsd_ingest sends (bench/statsd_load.c, the same pool) go through what one UDP
 * ingest thread does with them (ingest_fold_datagram: split, parse, aggregate), the
 * thread's hand-over (agg_flush every --flush-lines lines, 100 ms of one thread's share at
 * 10M lines/s by default) and the hub's merge (registry_apply, with a roll every 10
 * hand-overs as at 1 s).
 *
 *   bench_statsd_fold [--lines N] [--runs R] [--names N] [--flush-lines N] [--stage S]
 *
 * --stage reference: split and statsd_parse_line (the reference parser) only; parse: the
 * fast path's parse only (statsd_scan + statsd_parse_lines); fold: parse + aggregation and
 * hand-over (ingest_fold_datagram + agg_flush); hub (default): + the hub's merge. Prints CPU ns per line for each part (this thread's
 * CPU time, so that time-slicing on a shared machine does not count; median of --runs;
 * the first pass over the pool is a warm-up that fills the tables) and, for instruction
 * counts, is meant to run under
 *
 *   valgrind --tool=callgrind --toggle-collect=bench_pass build/bench/bench_statsd_fold \
 *       --lines 2M --runs 1
 *
 * where callgrind counts only the timed passes: Ir of bench_pass / lines = instructions
 * per line (callgrind_annotate --inclusive=yes splits it by function). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg.h"
#include "ingest_fold.h"
#include "registry.h"
#include "statsd.h"
#include "statsd_load.h"

#define RECV_BATCH 64 /* datagrams per recvmmsg in the UDP threads */

typedef enum { STAGE_REFERENCE, STAGE_PARSE, STAGE_FOLD, STAGE_HUB } stage_t;

static struct {
    uint64_t lines;
    int runs;
    int names;
    uint64_t flush_lines;
    stage_t stage;
} opt = {.lines = 20000000, .runs = 5, .names = 10000, .flush_lines = 500000, .stage = STAGE_HUB};

static statsd_pool_t pool;

/* The thread's CPU time, not the wall clock: on a shared machine the time another process
 * holds the core is not charged to the line being parsed (cache interference still is). */
static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double fold_ns, flush_ns, apply_ns; /* totals over the pass */
    uint64_t lines, rejected, deltas, accepted;
    uint64_t check;
} pass_t;

static ingest_fold_t fold;
static registry_t reg;
static uint32_t now_sec = 1000000;

static void hand_over(pass_t *ps, uint64_t *flushes) {
    uint64_t t0 = mono_ns();
    int err;
    agg_batch_t *b = agg_flush(&fold.agg, INGEST_UDP, 600, &err);
    uint64_t t1 = mono_ns();
    ps->flush_ns += (double)(t1 - t0);
    if (!b) return;
    ps->deltas += b->n;
    if (opt.stage == STAGE_HUB) {
        registry_result_t res;
        memset(&res, 0, sizeof res);
        registry_apply(&reg, b, (double)now_sec, &res);
        ps->accepted += res.accepted;
        if (++*flushes % 10 == 0) registry_roll(&reg, ++now_sec);
    }
    agg_batch_free(b);
    ps->apply_ns += (double)(mono_ns() - t1);
}

/* Parse only, the fast path: the scan and statsd_parse_lines, as ingest_fold does. */
static statsd_scan_t scan;
static statsd_sample_t samples[INGEST_FOLD_BATCH];
static void parse_fast_dgram(pass_t *ps, const char *p, size_t len) {
    statsd_scan(&scan, p, len);
    size_t pos = 0;
    while (pos < len) {
        size_t n = statsd_parse_lines(&scan, &pos, samples, INGEST_FOLD_BATCH);
        for (size_t k = 0; k < n; k++) {
            if (samples[k].parsed) ps->check += samples[k].name_len + (uint64_t)samples[k].value;
            else ps->rejected++;
        }
    }
}

/* Parse only, the reference parser line by line (what bench_statsd_parse measures). */
static void parse_dgram(pass_t *ps, const char *p, size_t len) {
    const char *end = p + len;
    statsd_line_t l;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (statsd_parse_line(p, n, &l) == STATSD_OK) ps->check += l.name_len + (uint64_t)l.nvalues;
        else ps->rejected++;
        p += n + 1;
    }
}

/* One timed pass of opt.lines lines (whole datagrams, so a little more). Not static and
 * not inlined: callgrind's --toggle-collect names it. */
__attribute__((noinline)) void bench_pass(pass_t *ps, uint64_t lines);
__attribute__((noinline)) void bench_pass(pass_t *ps, uint64_t lines) {
    memset(ps, 0, sizeof *ps);
    uint64_t since_flush = 0, flushes = 0;
    size_t d = 0;
    uint64_t t0 = mono_ns();
    double in_flush = 0;
    while (ps->lines < lines) {
        /* RECV_BATCH datagrams at a time, as one recvmmsg hands them to a UDP thread */
        const char *p[RECV_BATCH];
        size_t len[RECV_BATCH], nd = 0;
        for (; nd < RECV_BATCH && ps->lines < lines; nd++) {
            p[nd] = pool.iov[d].iov_base;
            len[nd] = pool.iov[d].iov_len;
            ps->lines += pool.lines[d];
            since_flush += pool.lines[d];
            if (++d == STATSD_POOL_DGRAMS) d = 0;
        }
        for (size_t k = 0; k < nd && opt.stage <= STAGE_PARSE; k++) {
            if (opt.stage == STAGE_REFERENCE) parse_dgram(ps, p[k], len[k]);
            else parse_fast_dgram(ps, p[k], len[k]);
        }
        if (opt.stage >= STAGE_FOLD) ingest_fold_datagrams(&fold, p, len, nd);
        if (opt.stage >= STAGE_FOLD && since_flush >= opt.flush_lines) {
            uint64_t h0 = mono_ns();
            hand_over(ps, &flushes);
            in_flush += (double)(mono_ns() - h0);
            since_flush = 0;
        }
    }
    if (opt.stage >= STAGE_FOLD) {
        uint64_t h0 = mono_ns();
        hand_over(ps, &flushes);
        in_flush += (double)(mono_ns() - h0);
    }
    ps->fold_ns = (double)(mono_ns() - t0) - in_flush;
    for (int r = 0; r < STATSD_REASON_COUNT; r++) {
        ps->rejected += fold.rejected[r];
        fold.rejected[r] = 0;
    }
}

static double parse_count(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'm' || *end == 'M') v *= 1e6, end++;
    return *end ? -1 : v;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_statsd_fold [--lines N] [--runs R] [--names N] [--flush-lines N]\n"
               "                         [--stage reference|parse|fold|hub]\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!v) goto bad;
        i++;
        if (strcmp(a, "--lines") == 0 && (x = parse_count(v)) >= 1) opt.lines = (uint64_t)x;
        else if (strcmp(a, "--runs") == 0 && (x = parse_count(v)) >= 1 && x <= 99) opt.runs = (int)x;
        else if (strcmp(a, "--names") == 0 && (x = parse_count(v)) >= 20) opt.names = (int)x;
        else if (strcmp(a, "--flush-lines") == 0 && (x = parse_count(v)) >= 1)
            opt.flush_lines = (uint64_t)x;
        else if (strcmp(a, "--stage") == 0 && strcmp(v, "reference") == 0) opt.stage = STAGE_REFERENCE;
        else if (strcmp(a, "--stage") == 0 && strcmp(v, "parse") == 0) opt.stage = STAGE_PARSE;
        else if (strcmp(a, "--stage") == 0 && strcmp(v, "fold") == 0) opt.stage = STAGE_FOLD;
        else if (strcmp(a, "--stage") == 0 && strcmp(v, "hub") == 0) opt.stage = STAGE_HUB;
        else goto bad;
    }
    if (statsd_pool_build(&pool, opt.names, 1400) < 0) {
        fprintf(stderr, "bench_statsd_fold: out of memory\n");
        return 1;
    }
    ingest_fold_init(&fold, 0);
    if (registry_init(&reg, 0, 60) < 0) {
        fprintf(stderr, "bench_statsd_fold: registry_init failed\n");
        return 1;
    }
    static const char *const stage_name[] = {"reference", "parse", "fold", "hub"};
    printf("bench_statsd_fold: %d datagrams, %llu lines from %d names (%.1f bytes/line), "
           "stage %s, hand-over every %llu lines, %llu lines per run\n",
           STATSD_POOL_DGRAMS, (unsigned long long)pool.total_lines, opt.names,
           (double)pool.total_bytes / (double)pool.total_lines, stage_name[opt.stage],
           (unsigned long long)opt.flush_lines, (unsigned long long)opt.lines);

    pass_t warm;
    bench_pass(&warm, pool.total_lines); /* fills the tables and the registry */
    uint64_t kc_misses0 = fold.agg.kc_misses;
    double fold_ns[99], flush_ns[99], apply_ns[99], total_ns[99];
    pass_t ps = {0};
    for (int r = 0; r < opt.runs; r++) {
        bench_pass(&ps, opt.lines);
        double l = (double)ps.lines;
        fold_ns[r] = ps.fold_ns / l;
        flush_ns[r] = ps.flush_ns / l;
        apply_ns[r] = ps.apply_ns / l;
        total_ns[r] = fold_ns[r] + flush_ns[r] + apply_ns[r];
    }
    if (ps.rejected) {
        fprintf(stderr, "bench_statsd_fold: %llu lines rejected: the load is off\n",
                (unsigned long long)ps.rejected);
        return 1;
    }
    if (opt.stage == STAGE_HUB && ps.accepted != ps.lines) {
        fprintf(stderr, "bench_statsd_fold: %llu of %llu lines merged\n",
                (unsigned long long)ps.accepted, (unsigned long long)ps.lines);
        return 1;
    }
    qsort(fold_ns, (size_t)opt.runs, sizeof(double), cmp_double);
    qsort(flush_ns, (size_t)opt.runs, sizeof(double), cmp_double);
    qsort(apply_ns, (size_t)opt.runs, sizeof(double), cmp_double);
    qsort(total_ns, (size_t)opt.runs, sizeof(double), cmp_double);
    int m = opt.runs / 2;
    printf("per line, median of %d runs: %s %.1f ns, hand-over %.1f ns, hub merge %.1f ns; "
           "total %.1f ns = %.2fM lines/s on one core (min %.1f, max %.1f ns); %llu deltas "
           "per run\n",
           opt.runs, opt.stage <= STAGE_PARSE ? "parse" : "parse+fold", fold_ns[m], flush_ns[m],
           apply_ns[m], total_ns[m], 1e3 / total_ns[m], total_ns[0], total_ns[opt.runs - 1],
           (unsigned long long)ps.deltas);
    if (opt.stage >= STAGE_FOLD)
        printf("lines through the fast path %.2f %%, the reference path %.2f %% (all runs)\n",
               100.0 * (double)fold.fast_lines / (double)(fold.fast_lines + fold.slow_lines),
               100.0 * (double)fold.slow_lines / (double)(fold.fast_lines + fold.slow_lines));
    if (opt.stage >= STAGE_FOLD)
        printf("key cache misses %.2f %% of the timed lines\n",
               100.0 * (double)(fold.agg.kc_misses - kc_misses0) /
                   ((double)opt.runs * (double)ps.lines));
    printf("statsd_fold_ns_per_line=%.1f statsd_fold_parse_fold_ns=%.1f statsd_fold_flush_ns=%.1f "
           "statsd_fold_merge_ns=%.1f\n",
           total_ns[m], fold_ns[m], flush_ns[m], apply_ns[m]);
    registry_free(&reg);
    ingest_fold_free(&fold);
    statsd_pool_free(&pool);
    return 0;
bad:
    usage(stderr);
    return 2;
}
