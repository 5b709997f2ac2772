#include "statsd.h"

#include <math.h>
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

/* [+-](digits[.digits*] | .digits)[(e|E)[+-]digits], nothing else: no whitespace, no
 * inf/nan, no hex. With at most 19 significant digits, a mantissa m <= 2^53 and a total
 * decimal exponent within ±22, m and 10^|e| are both exact doubles, so one IEEE multiply
 * or divide gives the correctly rounded result: the same bits strtod would return. */
static inline int parse_double(const char *p, size_t n, double *out) {
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

int statsd_parse_double(const char *p, size_t n, double *out) {
    return parse_double(p, n, out);
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
