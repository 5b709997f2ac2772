#include "statsd.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* This is the UDP ingest hot path (target: > 10 M lines/s per core). Rules that follow
 * from that: no allocation, no locale, no per-line memset of the (1 KiB) result, each byte
 * looked at about once (memchr for the delimiters), and the common number forms converted
 * without strtod. */

#define TAG_PART_MAX 255 /* key and value lengths: fit statsd_tag_t's uint16_t with room */

static const char *const reason_names[STATSD_REASON_COUNT] = {
    [STATSD_OK] = "ok",
    [STATSD_EMPTY] = "empty",
    [STATSD_BAD_NAME] = "bad_name",
    [STATSD_NO_VALUE] = "no_value",
    [STATSD_BAD_VALUE] = "bad_value",
    [STATSD_NO_TYPE] = "no_type",
    [STATSD_BAD_TYPE] = "bad_type",
    [STATSD_BAD_RATE] = "bad_rate",
    [STATSD_BAD_TAGS] = "bad_tags",
    [STATSD_TOO_LONG] = "too_long",
    [STATSD_UNSUPPORTED] = "unsupported",
};

const char *statsd_reason_name(statsd_reason_t r) {
    /* an out-of-range value is a caller bug, but the result ends up in a label: never NULL */
    if ((unsigned)r >= STATSD_REASON_COUNT) return "unknown";
    return reason_names[r];
}

/* ---- numbers ------------------------------------------------------------------------ */

/* Every power of ten up to 1e22 is exactly representable in a double. */
static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define MANT_EXACT_MAX ((uint64_t)1 << 53) /* integers up to here are exact doubles */
#define MANT_MAX_DIGITS 19                 /* always fit a uint64_t */

/* The rare forms the fast path cannot do exactly (more than 19 significant digits, a
 * mantissa above 2^53, or a decimal exponent beyond ±22): strtod rounds correctly. The
 * caller has already checked the text is plain decimal, so strtod cannot wander into hex,
 * inf or nan here. strtod reads the locale's decimal point; the daemon never calls
 * setlocale, so that is '.'. Out of line and cold so that its buffer is not on the hot
 * path's stack. */
__attribute__((noinline, cold)) static int parse_double_slow(const char *p, size_t n, double *out) {
    char buf[STATSD_MAX_LINE + 1];
    if (n >= sizeof buf) return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *end;
    double v = strtod(buf, &end);
    /* underflow to 0 or a subnormal is accepted (as strconv.ParseFloat does); overflow
     * gives ±HUGE_VAL and is rejected as non-finite */
    if (end != buf + n || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* The forms StatsD values and rates nearly always take — [+-]digits[.digits] with 1 to 19
 * digits in all — in one loop with no per-digit bookkeeping. -1 means "not this form"
 * (the general parser below decides whether it is a number at all). The digits, leading
 * zeros included, make an integer m < 10^19 that needs no overflow check; when m <= 2^53
 * it and 10^f (f <= 19 fraction digits) are exact doubles, so one IEEE division is the
 * correctly rounded result: the bits strtod returns, as in the general parser. */
static inline int parse_simple(const char *p, size_t n, double *out) {
    const char *s = p, *end = p + n;
    if (n == 0 || n > 21) return -1; /* a sign, 19 digits and a '.' at most */
    bool neg = false;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    uint64_t m = 0;
    unsigned d;
    const char *d0 = s;
    while (s < end && (d = (unsigned)(*s - '0')) < 10) {
        m = m * 10 + d;
        s++;
    }
    size_t digits = (size_t)(s - d0), nf = 0;
    if (s < end && *s == '.') {
        const char *f0 = ++s;
        while (s < end && (d = (unsigned)(*s - '0')) < 10) {
            m = m * 10 + d;
            s++;
        }
        nf = (size_t)(s - f0);
        digits += nf;
    }
    if (s != end || digits == 0 || digits > MANT_MAX_DIGITS || m > MANT_EXACT_MAX) return -1;
    double v = (double)m;
    if (nf) v /= pow10_exact[nf];
    *out = neg ? -v : v;
    return 0;
}

/* [+-](digits[.digits*] | .digits)[(e|E)[+-]digits], nothing else: no whitespace, no
 * inf/nan, no hex. With at most 19 significant digits, a mantissa m <= 2^53 and a total
 * decimal exponent within ±22, m and 10^|e| are both exact doubles, so one IEEE multiply
 * or divide gives the correctly rounded result: the same bits strtod would return. */
static int parse_double_general(const char *p, size_t n, double *out) {
    const char *s = p, *end = p + n;
    if (s == end) return -1;
    int neg = 0;
    if (*s == '+' || *s == '-') neg = *s++ == '-';

    uint64_t m = 0;
    int sig = 0;    /* significant digits accumulated into m */
    int digits = 0; /* all mantissa digits, leading zeros included */
    int e10 = 0;
    int slow = 0; /* too many significant digits for m */
    unsigned d;
    for (; s < end && (d = (unsigned)(*s - '0')) < 10; s++, digits++) {
        if (!(m | d)) continue;
        if (sig < MANT_MAX_DIGITS) {
            m = m * 10 + d;
            sig++;
        } else {
            slow = 1;
        }
    }
    if (s < end && *s == '.') {
        for (s++; s < end && (d = (unsigned)(*s - '0')) < 10; s++, digits++) {
            e10--;
            if (!(m | d)) continue;
            if (sig < MANT_MAX_DIGITS) {
                m = m * 10 + d;
                sig++;
            } else {
                slow = 1;
            }
        }
    }
    if (digits == 0) return -1;
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0;
        if (s < end && (*s == '+' || *s == '-')) eneg = *s++ == '-';
        if (s == end || (unsigned)(*s - '0') >= 10) return -1;
        int ex = 0;
        /* saturates: anything this large is 0 or inf whatever the mantissa */
        for (; s < end && (d = (unsigned)(*s - '0')) < 10; s++)
            if (ex < 100000) ex = ex * 10 + (int)d;
        e10 += eneg ? -ex : ex;
    }
    if (s != end) return -1;

    if (!slow) {
        if (m == 0) {
            *out = neg ? -0.0 : 0.0;
            return 0;
        }
        if (m <= MANT_EXACT_MAX && e10 >= -22 && e10 <= 22) {
            double v = (double)m;
            v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
            *out = neg ? -v : v;
            return 0;
        }
    }
    return parse_double_slow(p, n, out);
}

static inline int parse_double(const char *p, size_t n, double *out) {
    if (parse_simple(p, n, out) == 0) return 0;
    return parse_double_general(p, n, out);
}

int statsd_parse_double(const char *p, size_t n, double *out) {
    return parse_double(p, n, out);
}

/* The general parser out of line, for the fast path: its registers and stack then do not
 * weigh on the line parser around the plain-decimal loop, which takes nearly every value. */
__attribute__((noinline)) static int parse_double_other(const char *p, size_t n, double *out) {
    return parse_double_general(p, n, out);
}

/* parse_simple for a number that is followed by a byte which is neither a digit nor '.'
 * (the '|' or '\n' after it in a datagram): the loops stop at that byte, so they need no
 * bounds test, and n >= 1. The plain forms — [+-]digit[digits][.digits] — are taken here;
 * every other text (".5", "1e3", garbage, more than 15 characters that need the digit
 * count) goes to the general parser, so the result is always parse_simple's or, where
 * that refuses, parse_double_general's: the bits strtod returns. */
__attribute__((always_inline)) static inline int parse_simple_delimited(const char *p, size_t n,
                                                                        double *out) {
    const char *s = p;
    unsigned d = (unsigned)((unsigned char)*s - '0');
    bool neg = false;
    if (__builtin_expect(d >= 10, 0)) { /* a sign, or not this form */
        if (*s != '-' && *s != '+') return parse_double_other(p, n, out);
        neg = *s == '-';
        d = (unsigned)((unsigned char)*++s - '0');
        if (d >= 10) return parse_double_other(p, n, out);
    }
    uint64_t m = d;
    while ((d = (unsigned)((unsigned char)*++s - '0')) < 10)
        m = m * 10 + d;
    size_t nf = 0, dot = 0;
    if (*s == '.') {
        const char *f0 = s + 1;
        while ((d = (unsigned)((unsigned char)*++s - '0')) < 10)
            m = m * 10 + d;
        nf = (size_t)(s - f0);
        dot = 1;
    }
    if (s != p + n) return parse_double_other(p, n, out);
    /* up to 15 characters are at most 15 digits: m < 10^15 < 2^53, exact, no overflow */
    if (__builtin_expect(n > 15, 0)) {
        size_t digits = n - (size_t)(*p == '-' || *p == '+') - dot; /* s is at p + n */
        if (digits > MANT_MAX_DIGITS || m > MANT_EXACT_MAX) return parse_double_other(p, n, out);
    }
    double v = (double)m;
    if (nf) v /= pow10_exact[nf];
    *out = neg ? -v : v;
    return 0;
}

/* A value or rate for the fast path; delimited: p[n] may be read (see above). */
__attribute__((always_inline)) static inline int parse_number_fast(const char *p, size_t n,
                                                                   bool delimited, double *out) {
    if (delimited) return n ? parse_simple_delimited(p, n, out) : -1;
    if (parse_simple(p, n, out) == 0) return 0;
    return parse_double_other(p, n, out);
}

int statsd__parse_double_general(const char *p, size_t n, double *out) {
    return parse_double_general(p, n, out);
}

/* ---- sanitising --------------------------------------------------------------------- */

/* [A-Za-z0-9_] */
static const unsigned char name_ok[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['_'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,
    ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* Length of the well-formed UTF-8 sequence at s (lead byte >= 0x80), or 0 when it is not
 * one. The same acceptance as Go's decoder (which statsd_exporter's `range` loop uses): no
 * overlong forms, no surrogates, nothing above U+10FFFF. On 0 the caller consumes one
 * byte, as Go yields one RuneError per invalid byte. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t statsd_sanitize(const char *in, size_t n, char *out, size_t cap) {
    if (cap == 0) return 0;
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (n > 0 && s[0] >= '0' && s[0] <= '9') {
        if (cap < 2) goto no_fit;
        out[o++] = '_';
    }
    for (size_t i = 0; i < n;) {
        if (o + 1 >= cap) goto no_fit;
        unsigned char c = s[i];
        if (name_ok[c]) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        size_t len = c < 0x80 ? 1 : utf8_seq_len(s + i, n - i);
        i += len ? len : 1;
        out[o++] = '_';
    }
    out[o] = '\0';
    return o;
no_fit:
    out[0] = '\0';
    return 0;
}

/* ---- lines -------------------------------------------------------------------------- */

static inline int is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The text after "|#": key[:value] items separated by ','. An empty item (",," or a
 * trailing ',' or "|#" alone) is an empty key. */
static statsd_reason_t parse_tags(const char *s, size_t n, statsd_line_t *out) {
    const char *start = s, *end = s + n;
    int nt = 0;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        if (nt == STATSD_MAX_TAGS) return STATSD_BAD_TAGS;
        const char *colon = memchr(s, ':', (size_t)(e - s)); /* the first: values may hold ':' */
        size_t kl = (size_t)((colon ? colon : e) - s);
        size_t vl = colon ? (size_t)(e - colon - 1) : 0;
        if (kl == 0) return STATSD_BAD_TAGS;
        if (kl > TAG_PART_MAX || vl > TAG_PART_MAX) return STATSD_TOO_LONG;
        statsd_tag_t *t = &out->tags[nt++];
        t->key = s;
        t->key_len = (uint16_t)kl;
        t->value = colon ? colon + 1 : "";
        t->value_len = (uint16_t)vl;
        if (!comma) break;
        s = comma + 1;
    }
    out->ntags = nt;
    out->tags_raw = start;
    out->tags_raw_len = n;
    return STATSD_OK;
}

/* Reason precedence, for lines with several faults: length, blank, event/service check,
 * missing ':', name, missing '|', type, value, then the sections left to right.
 * On anything but STATSD_OK the contents of *out are unspecified. */
statsd_reason_t statsd_parse_line(const char *p, size_t n, statsd_line_t *out) {
    if (n > 0 && p[n - 1] == '\r') n--;
    if (n > STATSD_MAX_LINE) return STATSD_TOO_LONG;
    if (n == 0 || is_space((unsigned char)p[0])) {
        size_t i = 0;
        while (i < n && is_space((unsigned char)p[i]))
            i++;
        if (i == n) return STATSD_EMPTY;
    }
    if (p[0] == '_' && n >= 3 &&
        ((p[1] == 'e' && p[2] == '{') || (n >= 4 && p[1] == 's' && p[2] == 'c' && p[3] == '|')))
        return STATSD_UNSUPPORTED;

    const char *end = p + n;
    const char *bar = memchr(p, '|', n);
    const char *vend = bar ? bar : end; /* end of name:value */
    const char *colon = memchr(p, ':', (size_t)(vend - p));
    if (!colon) return STATSD_NO_VALUE;
    size_t name_len = (size_t)(colon - p);
    /* The raw name is kept. Its sanitised form (statsd_sanitize) maps every character to
     * at least one byte, so it is empty exactly when the name is: the one check needed. */
    if (name_len == 0) return STATSD_BAD_NAME;
    if (name_len > STATSD_MAX_NAME) return STATSD_TOO_LONG;
    const char *v = colon + 1;
    if (!bar) return v == vend ? STATSD_NO_VALUE : STATSD_NO_TYPE;

    const char *t = bar + 1;
    const char *sec = memchr(t, '|', (size_t)(end - t));
    if (!sec) sec = end;
    metric_kind_t kind;
    switch (sec - t) {
    case 0: return STATSD_NO_TYPE;
    case 1:
        switch (t[0]) {
        case 'c': kind = METRIC_COUNTER; break;
        case 'g': kind = METRIC_GAUGE; break;
        case 'h':
        case 'd': kind = METRIC_TIMER; break;
        case 's': kind = METRIC_SET; break;
        default: return STATSD_BAD_TYPE;
        }
        break;
    case 2:
        if (t[0] != 'm' || t[1] != 's') return STATSD_BAD_TYPE;
        kind = METRIC_TIMER;
        break;
    default: return STATSD_BAD_TYPE;
    }

    out->name = p;
    out->name_len = name_len;
    out->kind = kind;
    out->gauge_delta = false;
    out->counter_total = false;
    out->rate = 1.0;
    out->nvalues = 0;
    out->member = NULL;
    out->member_len = 0;
    out->ntags = 0;
    out->tags_raw = NULL;
    out->tags_raw_len = 0;

    if (kind == METRIC_SET) {
        /* the member is opaque text (':' included: no multi-value for sets) */
        if (v == vend) return STATSD_BAD_VALUE;
        out->member = v;
        out->member_len = (size_t)(vend - v);
    } else {
        if (v == vend) return STATSD_NO_VALUE;
        int nv = 0;
        for (;;) {
            const char *c = memchr(v, ':', (size_t)(vend - v));
            const char *ve = c ? c : vend;
            if (nv == STATSD_MAX_VALUES) return STATSD_TOO_LONG;
            if (parse_double(v, (size_t)(ve - v), &out->values[nv]) < 0) return STATSD_BAD_VALUE;
            if (kind == METRIC_GAUGE) {
                /* one flag for the line: the values of a multi-value gauge must agree on
                 * being deltas or absolutes (v is non-empty here: it parsed) */
                bool sign = *v == '+' || *v == '-';
                if (nv == 0)
                    out->gauge_delta = sign;
                else if (sign != out->gauge_delta)
                    return STATSD_BAD_VALUE;
            }
            nv++;
            if (!c) break;
            v = c + 1;
        }
        out->nvalues = nv;
    }

    /* Optional sections. A rate is accepted (and range-checked) on every type: DogStatsD
     * clients send it on gauges and sets too, and the aggregator decides what it means.
     * Empty sections ("|c||#a") are skipped, as statsd_exporter does. */
    bool have_rate = false, have_tags = false;
    while (sec < end) {
        const char *s = sec + 1;
        sec = memchr(s, '|', (size_t)(end - s));
        if (!sec) sec = end;
        size_t sl = (size_t)(sec - s);
        if (sl == 0) continue;
        switch (s[0]) {
        case '@': {
            double r;
            if (have_rate || parse_double(s + 1, sl - 1, &r) < 0 || !(r > 0 && r <= 1))
                return STATSD_BAD_RATE;
            have_rate = true;
            out->rate = r;
            break;
        }
        case '#': {
            if (have_tags) return STATSD_BAD_TAGS;
            have_tags = true;
            statsd_reason_t rc = parse_tags(s + 1, sl - 1, out);
            if (rc != STATSD_OK) return rc;
            break;
        }
        case 'c': /* DogStatsD container id */
            if (sl < 2 || s[1] != ':') return STATSD_UNSUPPORTED;
            break;
        case 'T': /* DogStatsD client timestamp: we stamp on arrival */ break;
        default: return STATSD_UNSUPPORTED;
        }
    }
    return STATSD_OK;
}

/* ---- the fast path ------------------------------------------------------------------- */

/* The scan runs once per datagram over every byte, so it takes the widest compare the CPU
 * has: AVX-512BW (64 bytes, straight into a mask), AVX2 (32), SSE2 (16, every x86-64).
 * The wider ones are chosen at run time, so one binary runs everywhere. The last partial
 * block is compared from a zeroed copy (AVX-512: a masked load), so nothing past len is
 * read. */
#define SCAN_DRIVER(name, block)                                                             \
    static void name(statsd_scan_t *sc, const char *p, size_t len) {                         \
        sc->base = p;                                                                        \
        sc->len = len;                                                                       \
        size_t w = 0, i = 0;                                                                 \
        for (; i + 64 <= len; i += 64, w++)                                                  \
            block(sc, w, p + i);                                                             \
        if (i < len) {                                                                       \
            char tail[64] = {0};                                                             \
            memcpy(tail, p + i, len - i);                                                    \
            block(sc, w++, tail);                                                            \
        }                                                                                    \
        sc->nl[w] = sc->colon[w] = sc->bar[w] = 0;                                           \
    }

#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_SCAN_SSE2 1

static inline uint64_t mask16(__m128i v, __m128i c) {
    return (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, c));
}

/* One 64-byte block into bit word w of each map. */
static inline void block_sse2(statsd_scan_t *sc, size_t w, const char *b) {
    const __m128i nl = _mm_set1_epi8('\n'), co = _mm_set1_epi8(':'), ba = _mm_set1_epi8('|');
    __m128i v0 = _mm_loadu_si128((const __m128i *)(const void *)b);
    __m128i v1 = _mm_loadu_si128((const __m128i *)(const void *)(b + 16));
    __m128i v2 = _mm_loadu_si128((const __m128i *)(const void *)(b + 32));
    __m128i v3 = _mm_loadu_si128((const __m128i *)(const void *)(b + 48));
    sc->nl[w] = mask16(v0, nl) | mask16(v1, nl) << 16 | mask16(v2, nl) << 32 | mask16(v3, nl) << 48;
    sc->colon[w] =
        mask16(v0, co) | mask16(v1, co) << 16 | mask16(v2, co) << 32 | mask16(v3, co) << 48;
    sc->bar[w] = mask16(v0, ba) | mask16(v1, ba) << 16 | mask16(v2, ba) << 32 | mask16(v3, ba) << 48;
}
SCAN_DRIVER(scan_sse2, block_sse2)
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_SCAN_X86_WIDE 1

__attribute__((target("avx2"))) static inline uint64_t mask32(__m256i v, __m256i c) {
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, c));
}

__attribute__((target("avx2"))) static inline void block_avx2(statsd_scan_t *sc, size_t w,
                                                              const char *b) {
    const __m256i nl = _mm256_set1_epi8('\n'), co = _mm256_set1_epi8(':'),
                  ba = _mm256_set1_epi8('|');
    __m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)b);
    __m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32));
    sc->nl[w] = mask32(v0, nl) | mask32(v1, nl) << 32;
    sc->colon[w] = mask32(v0, co) | mask32(v1, co) << 32;
    sc->bar[w] = mask32(v0, ba) | mask32(v1, ba) << 32;
}
__attribute__((target("avx2"))) SCAN_DRIVER(scan_avx2, block_avx2)

__attribute__((target("avx512bw"))) static void scan_avx512(statsd_scan_t *sc, const char *p,
                                                            size_t len) {
    const __m512i nl = _mm512_set1_epi8('\n'), co = _mm512_set1_epi8(':'),
                  ba = _mm512_set1_epi8('|');
    sc->base = p;
    sc->len = len;
    size_t w = 0;
    for (size_t i = 0; i < len; i += 64, w++) {
        __m512i v = len - i >= 64 ? _mm512_loadu_si512((const void *)(p + i))
                                  : _mm512_maskz_loadu_epi8(~(uint64_t)0 >> (64 - (len - i)),
                                                            (const void *)(p + i));
        sc->nl[w] = _mm512_cmpeq_epi8_mask(v, nl);
        sc->colon[w] = _mm512_cmpeq_epi8_mask(v, co);
        sc->bar[w] = _mm512_cmpeq_epi8_mask(v, ba);
    }
    sc->nl[w] = sc->colon[w] = sc->bar[w] = 0;
}
#endif

int statsd__scan_variant(int variant, statsd_scan_t *sc, const char *p, size_t len) {
    switch (variant) {
    case 0: statsd__scan_bytes(sc, p, len); return 0;
#ifdef HAVE_SCAN_SSE2
    case 1: scan_sse2(sc, p, len); return 0;
#endif
#ifdef HAVE_SCAN_X86_WIDE
    case 2:
        if (!__builtin_cpu_supports("avx2")) return -1;
        scan_avx2(sc, p, len);
        return 0;
    case 3:
        if (!__builtin_cpu_supports("avx512bw")) return -1;
        scan_avx512(sc, p, len);
        return 0;
#endif
    default: return -1;
    }
}

void statsd_scan(statsd_scan_t *sc, const char *p, size_t len) {
#ifdef HAVE_SCAN_X86_WIDE
    if (__builtin_cpu_supports("avx512bw")) {
        scan_avx512(sc, p, len);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        scan_avx2(sc, p, len);
        return;
    }
#endif
#ifdef HAVE_SCAN_SSE2
    scan_sse2(sc, p, len);
#else
    statsd__scan_bytes(sc, p, len);
#endif
}

void statsd__scan_bytes(statsd_scan_t *sc, const char *p, size_t len) {
    sc->base = p;
    sc->len = len;
    size_t words = (len + 63) / 64 + 1;
    memset(sc->nl, 0, words * sizeof sc->nl[0]);
    memset(sc->colon, 0, words * sizeof sc->colon[0]);
    memset(sc->bar, 0, words * sizeof sc->bar[0]);
    for (size_t i = 0; i < len; i++) {
        uint64_t bit = (uint64_t)1 << (i & 63);
        if (p[i] == '\n') sc->nl[i >> 6] |= bit;
        else if (p[i] == ':') sc->colon[i >> 6] |= bit;
        else if (p[i] == '|') sc->bar[i >> 6] |= bit;
    }
}

/* The first marked offset in [i, lim), or lim. lim <= len; the maps have a zero word
 * past the last one in use, so the loop stops there at the latest. */
static inline size_t next_mark(const uint64_t *m, size_t i, size_t lim) {
    size_t w = i >> 6;
    uint64_t x = m[w] & (~(uint64_t)0 << (i & 63));
    while (!x) {
        if ((++w << 6) >= lim) return lim;
        x = m[w];
    }
    size_t r = (w << 6) + (size_t)__builtin_ctzll(x);
    return r < lim ? r : lim;
}

/* The 64 marks from offset i on (bit k: offset i + k). i < len; the maps hold a zero word
 * past the last one in use, so m[w + 1] is always there. */
static inline uint64_t window(const uint64_t *m, size_t i) {
    size_t w = i >> 6, sh = i & 63;
    return m[w] >> sh | (m[w + 1] << 1) << (63 - sh);
}

/* The one-letter types, kind + 1 (0: not a type): a load instead of a switch, which the
 * mix of kinds in a datagram would make mispredict. */
static const uint8_t type_kind1[256] = {
    ['c'] = METRIC_COUNTER + 1, ['g'] = METRIC_GAUGE + 1, ['h'] = METRIC_TIMER + 1,
    ['d'] = METRIC_TIMER + 1,   ['s'] = METRIC_SET + 1,
};

static inline int kind_of(const char *t, size_t n, metric_kind_t *kind) {
    if (n == 1) {
        unsigned k = type_kind1[(unsigned char)t[0]];
        *kind = (metric_kind_t)(k - 1);
        return k ? 0 : -1;
    }
    if (n == 2 && t[0] == 'm' && t[1] == 's') {
        *kind = METRIC_TIMER;
        return 0;
    }
    return -1;
}

/* The value between v and bar (offsets in the line l): a set member, or one number. The
 * line's start (out->name) is already set. */
__attribute__((always_inline)) static inline bool fast_value(const char *l, size_t v, size_t bar,
                                                             metric_kind_t kind,
                                                             statsd_sample_t *out) {
    out->name_len = (uint32_t)(v - 1);
    out->kind = kind;
    out->rate = 1.0;
    out->tags = NULL;
    out->tags_len = 0;
    if (kind == METRIC_SET) {
        out->gauge_delta = false;
        out->member = l + v;
        out->member_len = (uint32_t)(bar - v);
        out->value = 0;
        return true;
    }
    if (parse_number_fast(l + v, bar - v, true, &out->value) < 0) return false; /* then '|' */
    out->gauge_delta = kind == METRIC_GAUGE && (l[v] == '+' || l[v] == '-');
    return true;
}

/* One optional section l[s0..s1): "@rate" or "#tags", each at most once. */
/* delimited: l[s1] may be read (a '|' or the line's '\n'). */
__attribute__((always_inline)) static inline bool fast_section(const char *l, size_t s0, size_t s1,
                                                               bool delimited, bool *have_rate,
                                                               statsd_sample_t *out) {
    size_t sl = s1 - s0;
    if (sl < 2) return false; /* empty, or '@' / '#' with nothing after */
    if (l[s0] == '@' && !*have_rate) {
        double r;
        if (parse_number_fast(l + s0 + 1, sl - 1, delimited, &r) < 0 || !(r > 0 && r <= 1))
            return false;
        out->rate = r;
        *have_rate = true;
        return true;
    }
    if (l[s0] == '#' && !out->tags) {
        out->tags = l + s0 + 1;
        out->tags_len = (uint32_t)(sl - 1);
        return true;
    }
    return false;
}

/* Lines of 64 bytes and more, and a last line without '\n' (at most one per datagram):
 * the same rules with the marks searched word by word. */
static bool parse_fast_long(const statsd_scan_t *sc, size_t start, size_t end,
                            statsd_sample_t *out) {
    const char *b = sc->base, *l = b + start;
    size_t n = end - start;
    if (n == 0 || n > STATSD_MAX_LINE || is_space((unsigned char)l[0]) || l[0] == '_' ||
        l[n - 1] == '\r')
        return false;
    size_t colon = next_mark(sc->colon, start, end) - start;
    size_t bar = next_mark(sc->bar, start, end) - start;
    if (colon >= bar || colon == 0 || colon > STATSD_MAX_NAME || bar == n) return false;
    size_t sec = next_mark(sc->bar, start + bar + 1, end) - start;
    metric_kind_t kind;
    if (kind_of(l + bar + 1, sec - bar - 1, &kind) < 0 || colon + 1 == bar) return false;
    if (kind != METRIC_SET && next_mark(sc->colon, start + colon + 1, start + bar) < start + bar)
        return false; /* several values */
    if (!fast_value(l, colon + 1, bar, kind, out)) return false;
    bool have_rate = false;
    while (sec < n) {
        size_t s0 = sec + 1;
        sec = next_mark(sc->bar, start + s0, end) - start;
        if (!fast_section(l, s0, sec, sec < n || end < sc->len, &have_rate, out)) return false;
    }
    return true;
}

/* First bytes the fast path leaves to the reference parser: blank and control characters
 * (<= ' ', the '\n' of an empty line too) and '_' (events, service checks). */
#define FO4(c) [c] = 1, [c + 1] = 1, [c + 2] = 1, [c + 3] = 1
static const uint8_t first_other[256] = {
    FO4(0), FO4(4), FO4(8), FO4(12), FO4(16), FO4(20), FO4(24), FO4(28), [' '] = 1, ['_'] = 1,
};
#undef FO4

/* The line at start; out->name is its first byte. */
static inline bool parse_fast(const statsd_scan_t *sc, size_t start, size_t *endp,
                              statsd_sample_t *out) {
    const char *l = out->name;
    uint64_t nw = window(sc->nl, start);
    if (!nw) {
        size_t end = next_mark(sc->nl, start, sc->len);
        *endp = end;
        return parse_fast_long(sc, start, end, out);
    }
    /* the line is under 64 bytes: every mark it has is in one word each */
    size_t n = (size_t)__builtin_ctzll(nw);
    *endp = start + n;
    /* the cases statsd_parse_line() treats specially (blank, events and service checks,
     * '\r'), and control characters, which it accepts, but rarely meets, in names; an
     * empty line is one whose first byte is its '\n' */
    if (first_other[(unsigned char)l[0]] || l[n - 1] == '\r') return false;
    uint64_t bw = window(sc->bar, start) & (((uint64_t)1 << n) - 1);
    if (!bw) return false;
    size_t bar = (size_t)__builtin_ctzll(bw);
    /* the ':'s before the first '|': one, after a name, before a value (a set's member
     * may hold more) */
    uint64_t cw = window(sc->colon, start) & (((uint64_t)1 << bar) - 1);
    if (!cw || (cw & 1)) return false;
    size_t colon = (size_t)__builtin_ctzll(cw);
    bw &= bw - 1;
    size_t sec = bw ? (size_t)__builtin_ctzll(bw) : n;
    metric_kind_t kind;
    if (kind_of(l + bar + 1, sec - bar - 1, &kind) < 0 || colon + 1 == bar) return false;
    if ((cw & (cw - 1)) && kind != METRIC_SET) return false; /* several values */
    if (!fast_value(l, colon + 1, bar, kind, out)) return false;
    bool have_rate = false;
    while (bw) {
        size_t s0 = sec + 1;
        bw &= bw - 1;
        sec = bw ? (size_t)__builtin_ctzll(bw) : n;
        /* the line ends at a '\n': every section is followed by a byte */
        if (!fast_section(l, s0, sec, true, &have_rate, out)) return false;
    }
    return true;
}

size_t statsd_parse_lines(const statsd_scan_t *sc, size_t *pos, statsd_sample_t *out, size_t max) {
    size_t k = 0, p = *pos;
    for (; k < max && p < sc->len; k++) {
        size_t end;
        out[k].name = sc->base + p;
        out[k].parsed = parse_fast(sc, p, &end, &out[k]);
        out[k].len = (uint32_t)(end - p);
        p = end + 1;
    }
    *pos = p < sc->len ? p : sc->len;
    return k;
}
