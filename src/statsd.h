/* statsd — the StatsD line parser (etsy format + DogStatsD extensions). Pure: no I/O,
 * no allocation, no clock; pointers in the result point into the caller's input.
 *
 * Accepted line forms (one per line; lines end at '\n', a trailing '\r' is ignored):
 *   name:value|c[|@rate][|#tags]        counter; value may be fractional or negative
 *   name:value|g[|#tags]                gauge, absolute
 *   name:+value|g / name:-value|g       gauge delta (sign present = delta)
 *   name:value|ms / |h / |d             timer / histogram / distribution → one kind: timer
 *   name:member|s                       set; member is any text without '|'
 *   name:v1:v2:v3|ms                    DogStatsD multi-value (not for sets)
 *   tags: |#key:value,key2:value2,flag  (a tag without ':' is a label with value "")
 *   DogStatsD |c:container and |T<unix> sections are accepted and ignored.
 * Sample rate: 0 < rate <= 1; counters are scaled by 1/rate, timers count 1/rate samples.
 * Events (_e{...}) and service checks (_sc|...) are rejected as "unsupported".
 */
#ifndef MC_STATSD_H
#define MC_STATSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metric.h"

/* Why a line was rejected: the `reason` label of metricast_ingest_rejected_total. */
typedef enum {
    STATSD_OK = 0,
    STATSD_EMPTY,        /* blank line: skipped, not counted as rejected */
    STATSD_BAD_NAME,     /* empty name, or nothing valid left after sanitising */
    STATSD_NO_VALUE,     /* no ':' or empty value */
    STATSD_BAD_VALUE,    /* not a finite number (or an empty set member) */
    STATSD_NO_TYPE,      /* no '|type' */
    STATSD_BAD_TYPE,     /* unknown type */
    STATSD_BAD_RATE,     /* '@' not followed by a number in (0, 1] */
    STATSD_BAD_TAGS,     /* malformed tag section, empty key, too many tags */
    STATSD_TOO_LONG,     /* name, tag or line over the limits below */
    STATSD_UNSUPPORTED,  /* DogStatsD events/service checks, unknown '|x' sections */
    STATSD_REASON_COUNT
} statsd_reason_t;

#define STATSD_MAX_LINE 4096
#define STATSD_MAX_NAME 200
#define STATSD_MAX_TAGS 16
#define STATSD_MAX_VALUES 64 /* multi-value packets */

typedef struct statsd_tag {
    const char *key;
    uint16_t key_len;
    const char *value; /* "" (len 0) for a tag without ':' */
    uint16_t value_len;
} statsd_tag_t;

typedef struct statsd_line {
    const char *name; /* raw, unsanitised */
    size_t name_len;
    metric_kind_t kind;
    bool gauge_delta;   /* gauge value had an explicit sign */
    /* Counters: the value is the counter's running total (a kernel counter since boot,
     * say), not an increment. Never set by the StatsD or JSON parsers; producers that
     * read totals (the host source) set it so the registry keeps the total as the value
     * and derives the increase, without a bogus first interval. */
    bool counter_total;
    double rate;        /* 1.0 when absent */
    int nvalues;        /* numbers in values[] (0 for sets) */
    double values[STATSD_MAX_VALUES];
    const char *member; /* sets only */
    size_t member_len;
    int ntags;
    statsd_tag_t tags[STATSD_MAX_TAGS];
    /* The tag section as one span of the input ("k:v,k2:v2"), when the tags came from
     * StatsD text; NULL (len 0) otherwise (JSON labels are not contiguous). Lets the
     * aggregation key a line by its bytes without rebuilding them. */
    const char *tags_raw;
    size_t tags_raw_len;
} statsd_line_t;

/* Parses one line (without its '\n'). */
statsd_reason_t statsd_parse_line(const char *p, size_t n, statsd_line_t *out);

/* The label value for a reason: "bad_name", "no_value", ... ("ok", "empty" too). */
const char *statsd_reason_name(statsd_reason_t r);

/* statsd_exporter's escaping: every character outside [A-Za-z0-9_] becomes '_' (one '_'
 * per UTF-8 character, and per byte of invalid UTF-8); a leading digit gets a '_' before
 * it. Writes at most cap-1 bytes plus NUL; returns the length, 0 if nothing is left or
 * it did not fit. */
size_t statsd_sanitize(const char *in, size_t n, char *out, size_t cap);

/* ---- the fast path of the UDP ingest ------------------------------------------------
 *
 * Most lines a busy sender produces have one shape: name:value|type, then at most one
 * |@rate and one |#tags. statsd_scan() marks every '\n', ':' and '|' of a datagram in
 * three bitmaps in one pass (16 bytes per step), and statsd_parse_fast() takes a line of
 * that shape apart with those marks instead of searching byte by byte. It does not split
 * or check the tags: the line's identity is its name and its raw tag bytes, and the
 * caller (the aggregation table) only accepts the sample for an identity it already
 * knows, i.e. one whose tags statsd_parse_line() accepted before. Any other line is left
 * to statsd_parse_line(), which is the reference: for a line both accept, both give the
 * same name, kind, value, rate, gauge sign, set member and tag bytes. */
#define STATSD_SCAN_MAX 16384 /* datagrams up to this length can be scanned */
#define STATSD_SCAN_WORDS (STATSD_SCAN_MAX / 64 + 1)

typedef struct statsd_scan {
    const char *base;
    size_t len;
    /* bit i of word i/64: base[i] is '\n' / ':' / '|'; zero past len, one zero word more */
    uint64_t nl[STATSD_SCAN_WORDS], colon[STATSD_SCAN_WORDS], bar[STATSD_SCAN_WORDS];
} statsd_scan_t;

/* One sample of a line in the common shape. Pointers point into the scanned datagram. */
typedef struct statsd_sample {
    const char *name; /* the line's first byte: the name, when parsed */
    uint32_t len;     /* the line's length, without its '\n' */
    bool parsed;      /* false: the line is not in the common shape; only name, len are set */
    bool gauge_delta;
    metric_kind_t kind;
    const char *tags; /* the bytes after "|#" (statsd_line_t.tags_raw); NULL: no tags */
    uint32_t name_len, tags_len;
    double value;       /* not for sets (0 there) */
    double rate;        /* 1.0 when absent */
    const char *member; /* sets only (unset for other kinds) */
    uint32_t member_len;
} statsd_sample_t;

/* Marks p[0..len), len <= STATSD_SCAN_MAX; reads nothing past len. */
void statsd_scan(statsd_scan_t *sc, const char *p, size_t len);
/* The lines from offset *pos on, at most max of them, into out[0..k): returns k and moves
 * *pos past them (to len at the end). out[j].parsed tells whether line j has the common
 * shape and parsed; if not, statsd_parse_line() on name[0..len) decides what it is (it
 * may be valid, blank or malformed). */
size_t statsd_parse_lines(const statsd_scan_t *sc, size_t *pos, statsd_sample_t *out, size_t max);

/* The same marks byte by byte: what statsd_scan() computes where it has no SSE2, and what
 * the tests compare it with. */
void statsd__scan_bytes(statsd_scan_t *sc, const char *p, size_t len);
/* One implementation of the scan, for the tests: 0 bytes, 1 SSE2, 2 AVX2, 3 AVX-512BW;
 * -1 when this build or CPU lacks it. */
int statsd__scan_variant(int variant, statsd_scan_t *sc, const char *p, size_t len);
/* parse_double's general path alone (no shortcut for plain decimals), for the tests. */
int statsd__parse_double_general(const char *p, size_t n, double *out);

/* Fast decimal parser used for values: [+-]digits[.digits][e[+-]digits], plus the forms
 * strtod accepts as a fallback; rejects inf/nan and trailing garbage. 0 or -1. */
int statsd_parse_double(const char *p, size_t n, double *out);

#endif
