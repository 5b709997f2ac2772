#include "host_parse.h"

#include <stdlib.h>
#include <string.h>

/* Input is whatever the kernel (or a fake root, or a fuzzer) wrote: every read is bounded
 * by the line's end, numbers are converted by hand (no locale, no NUL needed), and a
 * value that does not fit is a malformed record, never a wrapped number. */

typedef struct {
    const char *p, *end;
} cur_t;

static bool is_sp(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
}

/* The next line (without '\n'); false at the end. */
static bool next_line(const char **p, const char *end, cur_t *line) {
    if (*p >= end) return false;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    line->p = *p;
    line->end = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    return true;
}

static void skip_sp(cur_t *c) {
    while (c->p < c->end && is_sp(*c->p)) c->p++;
}

static bool at_end(cur_t *c) {
    skip_sp(c);
    return c->p >= c->end;
}

/* The next whitespace-separated token. */
static bool token(cur_t *c, const char **t, size_t *len) {
    skip_sp(c);
    if (c->p >= c->end) return false;
    const char *s = c->p;
    while (c->p < c->end && !is_sp(*c->p)) c->p++;
    *t = s;
    *len = (size_t)(c->p - s);
    return true;
}

static bool tok_u64(const char *t, size_t n, uint64_t *out) {
    if (n == 0 || n > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(t[i])) return false;
        unsigned d = (unsigned)(t[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool tok_i64(const char *t, size_t n, int64_t *out) {
    bool neg = n > 0 && t[0] == '-';
    uint64_t u;
    if (!tok_u64(t + neg, n - neg, &u)) return false;
    if (u > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) return false;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}

static bool tok_hex(const char *t, size_t n, uint64_t *out) {
    if (n == 0 || n > 16) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        unsigned d;
        if (is_digit(c)) d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

/* A decimal like "0.52" (loadavg): digits, optional fraction; converted as an integer
 * over a power of ten, so "1.75" is exactly 1.75 (correctly rounded). */
static bool tok_decimal(const char *t, size_t n, double *out) {
    static const double pow10[] = {1,   1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7, 1e8,
                                   1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
    uint64_t mant = 0;
    int digits = 0, frac = -1;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '.' && frac < 0 && digits > 0) {
            frac = 0;
            continue;
        }
        if (!is_digit(t[i]) || digits >= 17) return false;
        mant = mant * 10 + (uint64_t)(t[i] - '0');
        digits++;
        if (frac >= 0) frac++;
    }
    if (digits == 0 || frac == 0) return false;
    *out = (double)mant / pow10[frac < 0 ? 0 : frac];
    return true;
}

static bool next_u64(cur_t *c, uint64_t *v) {
    const char *t;
    size_t n;
    return token(c, &t, &n) && tok_u64(t, n, v);
}

static bool tok_is(const char *t, size_t n, const char *lit) {
    size_t m = strlen(lit);
    return n == m && memcmp(t, lit, m) == 0;
}

/* ---- /proc/stat ---------------------------------------------------------------------- */

const char *host_cpu_mode_name(int field) {
    static const char *const names[HOST_CPU_FIELDS] = {
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "user", "nice"};
    return field >= 0 && field < HOST_CPU_FIELDS ? names[field] : "unknown";
}

static int stat_cpu(const char *t, size_t tn, cur_t *c, host_cpu_cb cb, void *ctx) {
    host_cpu_t cpu;
    memset(&cpu, 0, sizeof cpu);
    if (tn == 3) {
        cpu.id = -1;
    } else {
        uint64_t id;
        if (!tok_u64(t + 3, tn - 3, &id) || id > 1u << 20) return 1;
        cpu.id = (int)id;
    }
    while (cpu.nfields < HOST_CPU_FIELDS) {
        const char *v;
        size_t vn;
        if (!token(c, &v, &vn)) break;
        if (!tok_u64(v, vn, &cpu.t[cpu.nfields])) return 1;
        cpu.nfields++;
    }
    if (cpu.nfields < 4) return 1; /* user nice system idle: every kernel has them */
    if (cb) cb(ctx, &cpu);
    return 0;
}

int host_parse_stat(const char *s, size_t n, host_stat_t *st, host_cpu_cb cb, void *ctx) {
    memset(st, 0, sizeof *st);
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    static const struct {
        const char *key;
        unsigned bit;
        size_t off;
    } scalars[] = {
        {"ctxt", HOST_STAT_CTXT, offsetof(host_stat_t, ctxt)},
        {"btime", HOST_STAT_BTIME, offsetof(host_stat_t, btime)},
        {"processes", HOST_STAT_PROCESSES, offsetof(host_stat_t, processes)},
        {"intr", HOST_STAT_INTR, offsetof(host_stat_t, intr)}, /* the total; per-IRQ follow */
        {"procs_running", HOST_STAT_RUNNING, offsetof(host_stat_t, procs_running)},
        {"procs_blocked", HOST_STAT_BLOCKED, offsetof(host_stat_t, procs_blocked)},
    };
    while (next_line(&p, end, &line)) {
        const char *t;
        size_t tn;
        if (!token(&line, &t, &tn)) continue;
        if (tn >= 3 && memcmp(t, "cpu", 3) == 0) {
            int r = stat_cpu(t, tn, &line, cb, ctx);
            bad += r;
            good += !r;
            continue;
        }
        for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
            if (!tok_is(t, tn, scalars[i].key)) continue;
            uint64_t v;
            if (!next_u64(&line, &v)) {
                bad++;
                break;
            }
            memcpy((char *)st + scalars[i].off, &v, sizeof v);
            st->have |= scalars[i].bit;
            good++;
            break;
        }
        /* other lines (softirq, page, swap...) are not ours */
    }
    return good ? bad : -1;
}

/* ---- /proc/loadavg ------------------------------------------------------------------- */

int host_parse_loadavg(const char *s, size_t n, host_loadavg_t *out) {
    memset(out, 0, sizeof *out);
    cur_t c = {s, s + n};
    const char *nl = memchr(s, '\n', n);
    if (nl) c.end = nl;
    double *loads[3] = {&out->load1, &out->load5, &out->load15};
    for (int i = 0; i < 3; i++) {
        const char *t;
        size_t tn;
        if (!token(&c, &t, &tn) || !tok_decimal(t, tn, loads[i])) return -1;
    }
    const char *t;
    size_t tn;
    if (token(&c, &t, &tn)) {
        const char *slash = memchr(t, '/', tn);
        if (!slash || !tok_u64(t, (size_t)(slash - t), &out->running) ||
            !tok_u64(slash + 1, tn - (size_t)(slash + 1 - t), &out->threads))
            return 1; /* the loads are good; the counts are not */
        out->has_threads = true;
    }
    return 0;
}

/* ---- /proc/meminfo ------------------------------------------------------------------- */

int host_parse_meminfo(const char *s, size_t n, host_meminfo_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    while (next_line(&p, end, &line)) {
        if (at_end(&line)) continue;
        const char *colon = memchr(line.p, ':', (size_t)(line.end - line.p));
        char name[64];
        size_t k = 0;
        bool ok = colon && colon > line.p;
        for (const char *q = line.p; ok && q < colon; q++) {
            char ch = *q;
            if (ch == '(') ch = '_';
            else if (ch == ')') continue;
            else if (!is_word(ch)) ok = false;
            if (k + 1 >= sizeof name) ok = false;
            if (ok) name[k++] = ch;
        }
        if (!ok || k == 0) {
            bad++;
            continue;
        }
        name[k] = '\0';
        cur_t rest = {colon + 1, line.end};
        const char *t, *u;
        size_t tn, un;
        uint64_t v;
        if (!token(&rest, &t, &tn) || !tok_u64(t, tn, &v)) {
            bad++;
            continue;
        }
        bool bytes = false;
        if (token(&rest, &u, &un)) {
            if (!tok_is(u, un, "kB") || !at_end(&rest)) {
                bad++;
                continue;
            }
            bytes = true;
        }
        if (cb) cb(ctx, name, bytes ? (double)v * 1024.0 : (double)v, bytes);
        good++;
    }
    return good ? bad : -1;
}

/* ---- /proc/diskstats ----------------------------------------------------------------- */

int host_parse_diskstats(const char *s, size_t n, host_disk_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    while (next_line(&p, end, &line)) {
        if (at_end(&line)) continue;
        host_disk_t d;
        memset(&d, 0, sizeof d);
        uint64_t major, minor;
        const char *t;
        size_t tn;
        if (!next_u64(&line, &major) || !next_u64(&line, &minor) || major > UINT32_MAX ||
            minor > UINT32_MAX || !token(&line, &t, &tn) || tn >= sizeof d.name) {
            bad++;
            continue;
        }
        bool ok = true;
        for (size_t i = 0; i < tn; i++) ok = ok && (unsigned char)t[i] > ' ' && t[i] != 0x7f;
        memcpy(d.name, t, tn);
        d.major = (unsigned)major;
        d.minor = (unsigned)minor;
        while (ok && d.nfields < HOST_DISK_FIELDS) {
            const char *v;
            size_t vn;
            if (!token(&line, &v, &vn)) break;
            ok = tok_u64(v, vn, &d.f[d.nfields++]);
        }
        if (!ok || d.nfields <= HOST_DISK_IO_WEIGHTED_MS) {
            bad++;
            continue;
        }
        if (cb) cb(ctx, &d);
        good++;
    }
    return good ? bad : -1;
}

/* ---- /proc/PID/mountinfo ------------------------------------------------------------- */

/* Octal escapes the kernel writes in paths: space, tab, newline, backslash. `all`: decode
 * every one (the real path); else only \040 and \011, as node_exporter's label does. A NUL,
 * written or decoded, makes the path unusable. */
static bool is_oct(char c, char hi) { return c >= '0' && c <= hi; }

static bool unescape(const char *t, size_t n, bool all, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (ch == '\\' && n - i >= 4 && is_oct(t[i + 1], '3') && is_oct(t[i + 2], '7') &&
            is_oct(t[i + 3], '7')) {
            char dec = (char)((t[i + 1] - '0') * 64 + (t[i + 2] - '0') * 8 + (t[i + 3] - '0'));
            if (all || dec == ' ' || dec == '\t') {
                ch = dec;
                i += 3;
            }
        }
        if (ch == '\0' || k + 1 >= cap) return false;
        out[k++] = ch;
    }
    out[k] = '\0';
    return true;
}

static bool has_opt(const char *t, size_t n, const char *opt) {
    size_t m = strlen(opt);
    for (size_t i = 0; i < n;) {
        const char *comma = memchr(t + i, ',', n - i);
        size_t len = comma ? (size_t)(comma - (t + i)) : n - i;
        if (len == m && memcmp(t + i, opt, m) == 0) return true;
        i += len + 1;
    }
    return false;
}

int host_parse_mountinfo(const char *s, size_t n, host_mount_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    while (next_line(&p, end, &line)) {
        if (at_end(&line)) continue;
        if (memchr(line.p, '\0', (size_t)(line.end - line.p))) { /* no C string can hold it */
            bad++;
            continue;
        }
        /* id parent major:minor root mountpoint options [optional...] - fstype source super */
        const char *f[6];
        size_t fl[6];
        int k = 0;
        while (k < 6 && token(&line, &f[k], &fl[k])) k++;
        if (k < 6) {
            bad++;
            continue;
        }
        const char *t;
        size_t tn;
        bool sep = false;
        while (token(&line, &t, &tn))
            if (tok_is(t, tn, "-")) {
                sep = true;
                break;
            }
        const char *fstype, *source, *super = "";
        size_t fsl, srcl, superl = 0;
        if (!sep || !token(&line, &fstype, &fsl) || !token(&line, &source, &srcl)) {
            bad++;
            continue;
        }
        if (token(&line, &t, &tn)) super = t, superl = tn;
        char mp[HOST_PATH_MAX], real[HOST_PATH_MAX], mpu[HOST_PATH_MAX], dev[512], fst[128];
        if (!unescape(f[4], fl[4], false, mp, sizeof mp) ||
            !unescape(f[4], fl[4], true, real, sizeof real) || srcl >= sizeof dev / 2 ||
            fsl >= sizeof fst / 2) {
            bad++;
            continue;
        }
        host_utf8_clean(mp, strlen(mp), mpu, sizeof mpu);
        host_utf8_clean(source, srcl, dev, sizeof dev);
        host_utf8_clean(fstype, fsl, fst, sizeof fst);
        host_mount_t m = {dev, fst, mpu, real,
                          has_opt(f[5], fl[5], "ro") || has_opt(super, superl, "ro") ||
                              has_opt(super, superl, "emergency_ro")};
        if (cb) cb(ctx, &m);
        good++;
    }
    return good ? bad : -1;
}

/* ---- /proc/net/dev ------------------------------------------------------------------- */

const char *host_netdev_field_name(int i) {
    static const char *const names[HOST_NETDEV_FIELDS] = {
        "receive_bytes",  "receive_packets",     "receive_errs",       "receive_drop",
        "receive_fifo",   "receive_frame",       "receive_compressed", "receive_multicast",
        "transmit_bytes", "transmit_packets",    "transmit_errs",      "transmit_drop",
        "transmit_fifo",  "transmit_colls",      "transmit_carrier",   "transmit_compressed"};
    return i >= 0 && i < HOST_NETDEV_FIELDS ? names[i] : "unknown";
}

int host_parse_netdev(const char *s, size_t n, host_netdev_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    while (next_line(&p, end, &line)) {
        if (at_end(&line)) continue;
        const char *colon = memchr(line.p, ':', (size_t)(line.end - line.p));
        const char *bar = memchr(line.p, '|', (size_t)(line.end - line.p));
        if (bar && (!colon || bar < colon)) continue; /* the two header lines */
        host_netdev_t d;
        memset(&d, 0, sizeof d);
        size_t nl = colon ? (size_t)(colon - line.p) : 0;
        bool ok = colon && nl < sizeof d.name;
        size_t k = 0;
        for (size_t i = 0; ok && i < nl; i++) {
            char ch = line.p[i];
            if (is_sp(ch)) {
                if (k) ok = false; /* a space inside the name */
                continue;
            }
            ok = (unsigned char)ch > ' ' && ch != 0x7f;
            d.name[k++] = ch;
        }
        ok = ok && k > 0;
        cur_t rest = {ok ? colon + 1 : line.end, line.end};
        for (int i = 0; ok && i < HOST_NETDEV_FIELDS; i++) ok = next_u64(&rest, &d.v[i]);
        if (!ok || !at_end(&rest)) {
            bad++;
            continue;
        }
        if (cb) cb(ctx, &d);
        good++;
    }
    return good ? bad : -1;
}

/* ---- snmp, netstat, snmp6 ------------------------------------------------------------ */

static bool word_tok(const char *t, size_t n) {
    if (n == 0 || n >= 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_word(t[i])) return false;
    return true;
}

static bool value_tok(const char *t, size_t n, double *v) {
    int64_t i;
    uint64_t u;
    if (n > 0 && t[0] == '-') {
        if (!tok_i64(t, n, &i)) return false;
        *v = (double)i;
        return true;
    }
    if (!tok_u64(t, n, &u)) return false;
    *v = (double)u;
    return true;
}

int host_parse_netstat(const char *s, size_t n, host_netstat_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t names, values;
    int bad = 0, good = 0;
    while (next_line(&p, end, &names)) {
        if (at_end(&names)) continue;
        if (!next_line(&p, end, &values)) {
            bad++;
            break;
        }
        const char *pa, *pb;
        size_t pan, pbn;
        if (!token(&names, &pa, &pan) || !token(&values, &pb, &pbn) || pan < 2 ||
            pa[pan - 1] != ':' || pan != pbn || memcmp(pa, pb, pan) != 0 ||
            !word_tok(pa, pan - 1)) {
            bad++;
            continue;
        }
        char proto[64];
        memcpy(proto, pa, pan - 1);
        proto[pan - 1] = '\0';
        for (;;) {
            const char *ft, *vt;
            size_t fn, vn;
            bool hf = token(&names, &ft, &fn), hv = token(&values, &vt, &vn);
            if (!hf && !hv) break;
            double v;
            if (hf != hv) { /* a header without a value or the reverse: the rest is lost */
                bad++;
                break;
            }
            if (!word_tok(ft, fn) || !value_tok(vt, vn, &v)) {
                bad++;
                continue;
            }
            char field[64];
            memcpy(field, ft, fn);
            field[fn] = '\0';
            if (cb) cb(ctx, proto, field, v);
            good++;
        }
    }
    return good ? bad : -1;
}

int host_parse_snmp6(const char *s, size_t n, host_netstat_cb cb, void *ctx) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, good = 0;
    while (next_line(&p, end, &line)) {
        const char *kt, *vt;
        size_t kn, vn;
        if (!token(&line, &kt, &kn)) continue;
        const char *six = memchr(kt, '6', kn);
        double v;
        if (!token(&line, &vt, &vn) || !at_end(&line) || !six || six + 1 >= kt + kn ||
            !word_tok(kt, kn) || !value_tok(vt, vn, &v)) {
            bad++;
            continue;
        }
        char proto[64], field[64];
        size_t pl = (size_t)(six + 1 - kt);
        memcpy(proto, kt, pl);
        proto[pl] = '\0';
        memcpy(field, six + 1, kn - pl);
        field[kn - pl] = '\0';
        if (cb) cb(ctx, proto, field, v);
        good++;
    }
    return good ? bad : -1;
}

/* ---- /proc/net/tcp, tcp6 ------------------------------------------------------------- */

const char *host_tcp_state_name(int state) {
    static const char *const names[HOST_TCP_STATES] = {
        NULL,        "established", "syn_sent",   "syn_recv", "fin_wait1", "fin_wait2",
        "time_wait", "close",       "close_wait", "last_ack", "listen",    "closing"};
    return state > 0 && state < HOST_TCP_STATES ? names[state] : NULL;
}

int host_parse_tcp_line(const char *s, size_t n, host_tcp_t *acc) {
    cur_t c = {s, s + n};
    const char *t[5];
    size_t tn[5];
    if (!token(&c, &t[0], &tn[0])) return 1;
    if (tn[0] < 2 || t[0][tn[0] - 1] != ':') return tok_is(t[0], tn[0], "sl") ? 1 : -1;
    for (int i = 1; i < 5; i++)
        if (!token(&c, &t[i], &tn[i])) return -1;
    uint64_t st, tx, rx;
    const char *colon = memchr(t[4], ':', tn[4]);
    if (!tok_hex(t[3], tn[3], &st) || !host_tcp_state_name((int)(st < HOST_TCP_STATES ? st : 0)) ||
        !colon || !tok_hex(t[4], (size_t)(colon - t[4]), &tx) ||
        !tok_hex(colon + 1, tn[4] - (size_t)(colon + 1 - t[4]), &rx))
        return -1;
    acc->state[st]++;
    acc->tx_queued += tx;
    acc->rx_queued += rx;
    return 0;
}

int host_parse_tcp(const char *s, size_t n, host_tcp_t *acc) {
    const char *p = s, *end = s + n;
    cur_t line;
    int bad = 0, lines = 0;
    while (next_line(&p, end, &line)) {
        int r = host_parse_tcp_line(line.p, (size_t)(line.end - line.p), acc);
        bad += r < 0;
        lines += r <= 0;
    }
    /* a table with only its header (no sockets) is a good table */
    return bad && bad == lines ? -1 : bad;
}

/* ---- single values ------------------------------------------------------------------- */

int host_parse_file_nr(const char *s, size_t n, uint64_t *allocated, uint64_t *maximum) {
    cur_t c = {s, s + n};
    uint64_t unused;
    if (!next_u64(&c, allocated) || !next_u64(&c, &unused) || !next_u64(&c, maximum) ||
        !at_end(&c))
        return -1;
    return 0;
}

int host_parse_i64(const char *s, size_t n, int64_t *out) {
    cur_t c = {s, s + n};
    const char *t;
    size_t tn;
    if (!token(&c, &t, &tn) || !tok_i64(t, tn, out)) return -1;
    return at_end(&c) ? 0 : -1;
}

bool host_is_pid_name(const char *name) {
    if (!*name || *name == '0') return false;
    for (const char *p = name; *p; p++)
        if (!is_digit(*p)) return false;
    return true;
}

/* ---- filters ------------------------------------------------------------------------- */

static bool digits_to_end(const char *p) {
    if (!is_digit(*p)) return false;
    while (is_digit(*p)) p++;
    return *p == '\0';
}

static const char *digits(const char *p) { /* past one or more digits, or NULL */
    if (!is_digit(*p)) return NULL;
    while (is_digit(*p)) p++;
    return p;
}

bool host_disk_ignored(const char *n) {
    const char *p = n + (n[0] == 'z');
    if (strncmp(p, "ram", 3) == 0 && digits_to_end(p + 3)) return true;
    if (strncmp(n, "loop", 4) == 0 && digits_to_end(n + 4)) return true;
    if (strncmp(n, "fd", 2) == 0 && digits_to_end(n + 2)) return true;
    p = strncmp(n, "xv", 2) == 0 ? n + 2 : (n[0] == 'h' || n[0] == 's' || n[0] == 'v') ? n + 1
                                                                                      : NULL;
    if (p && p[0] == 'd' && p[1] >= 'a' && p[1] <= 'z' && digits_to_end(p + 2)) return true;
    if (strncmp(n, "nvme", 4) == 0) {
        p = digits(n + 4);
        if (!p || *p != 'n' || !(p = digits(p + 1)) || *p != 'p') return false;
        return digits_to_end(p + 1);
    }
    return false;
}

static bool is_dir_or_under(const char *m, const char *dir) { /* dir, or dir/... */
    size_t l = strlen(dir);
    return strncmp(m, dir, l) == 0 && (m[l] == '\0' || m[l] == '/');
}

static bool strictly_under(const char *m, const char *prefix) { /* prefix (ends in /) + 1+ chars */
    size_t l = strlen(prefix);
    return strncmp(m, prefix, l) == 0 && m[l] != '\0';
}

bool host_mountpoint_ignored(const char *m) {
    return is_dir_or_under(m, "/dev") || is_dir_or_under(m, "/proc") ||
           is_dir_or_under(m, "/sys") || strictly_under(m, "/run/credentials/") ||
           strictly_under(m, "/var/lib/docker/") ||
           strictly_under(m, "/var/lib/containers/storage/");
}

bool host_fstype_ignored(const char *t) {
    static const char *const pseudo[] = {
        "autofs",  "binfmt_misc", "bpf",        "cgroup",     "cgroup2",   "configfs",
        "debugfs", "devpts",      "devtmpfs",   "fusectl",    "hugetlbfs", "iso9660",
        "mqueue",  "nsfs",        "overlay",    "proc",       "procfs",    "pstore",
        "rpc_pipefs", "securityfs", "selinuxfs", "squashfs",  "erofs",     "sysfs",
        "tracefs"};
    for (size_t i = 0; i < sizeof pseudo / sizeof pseudo[0]; i++)
        if (strcmp(t, pseudo[i]) == 0) return true;
    return false;
}

static bool in(const char *s, const char *const *set) {
    for (; *set; set++)
        if (strcmp(s, *set) == 0) return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool host_netstat_wanted(const char *proto, const char *field) {
    /* .*_(InErrors|InErrs) on "proto_field": the field ends so, or is it */
    if (ends_with(field, "_InErrors") || ends_with(field, "_InErrs") ||
        strcmp(field, "InErrors") == 0 || strcmp(field, "InErrs") == 0)
        return true;
    /* (it cannot straddle the separator: its only '_' is its first byte) */
    static const char *const octets[] = {"InOctets", "OutOctets", NULL};
    static const char *const msgs[] = {"InMsgs", "OutMsgs", NULL};
    static const char *const tcpext[] = {"TCPSynRetrans", "TCPTimeouts", "TCPOFOQueue",
                                         "TCPRcvQDrop", NULL};
    static const char *const tcp[] = {"ActiveOpens", "InSegs",      "OutSegs",  "OutRsts",
                                      "PassiveOpens", "RetransSegs", "CurrEstab", NULL};
    static const char *const udp[] = {"InDatagrams", "OutDatagrams", "NoPorts", "RcvbufErrors",
                                      "SndbufErrors", NULL};
    if (strcmp(proto, "Ip") == 0) return strcmp(field, "Forwarding") == 0;
    if (strcmp(proto, "Ip6") == 0 || strcmp(proto, "IpExt") == 0) return in(field, octets);
    if (strcmp(proto, "Icmp") == 0 || strcmp(proto, "Icmp6") == 0) return in(field, msgs);
    if (strcmp(proto, "TcpExt") == 0)
        return strncmp(field, "Listen", 6) == 0 || strncmp(field, "Syncookies", 10) == 0 ||
               in(field, tcpext);
    if (strcmp(proto, "Tcp") == 0) return in(field, tcp);
    if (strcmp(proto, "Udp") == 0 || strcmp(proto, "Udp6") == 0) return in(field, udp);
    return false;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s (n bytes left), 0 if invalid (overlong,
 * surrogate, past U+10FFFF, truncated) — the same rules as Go's decoder. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t host_utf8_clean(const char *s, size_t n, char *out, size_t cap) {
    static const char repl[] = "\xef\xbf\xbd";
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char(u + i, n - i);
        const char *src = s + i;
        if (len == 0) { /* one replacement for the whole run of invalid bytes */
            while (i < n && utf8_char(u + i, n - i) == 0) i++;
            src = repl;
            len = 3;
        } else {
            i += len;
        }
        if (k + len + 1 > cap) break;
        memcpy(out + k, src, len);
        k += len;
    }
    out[k] = '\0';
    return k;
}
