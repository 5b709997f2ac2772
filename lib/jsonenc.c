#include "jsonenc.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* m / 10^k as decimal text ("-452", k 1 → "-45.2"); m < 10^16. */
static int fixed_point(long long m, int k, char *out) {
    char d[24];
    int n = 0;
    bool neg = m < 0;
    unsigned long long u = neg ? (unsigned long long)(-m) : (unsigned long long)m;
    do {
        d[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n <= k) d[n++] = '0'; /* 0.05: at least one digit before the point */
    int o = 0;
    if (neg) out[o++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        out[o++] = d[i];
        if (i == k && k > 0) out[o++] = '.';
    }
    out[o] = '\0';
    return o;
}

int metricast__fmt_double(double v, char out[MCL_NUM_LEN]) {
    if (!isfinite(v)) return -EINVAL;
    if (v == 0) { /* also -0: "0" reads back as a value equal to it */
        out[0] = '0';
        out[1] = '\0';
        return 1;
    }
    /* Fast path for the values metrics mostly are (counts, percentages, milliseconds):
     * m / 10^k with k <= 6. Both m and 10^k are exact doubles, so m / 10^k is the
     * correctly rounded value of the decimal m·10^-k, which is what strtod returns for
     * that text: when it equals v the text reads back as v. The smallest such k is the
     * shortest fixed-point text. */
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    if (fabs(v) < 1e9) {
        for (int k = 0; k <= 6; k++) {
            double r = v * p10[k];
            double m = nearbyint(r);
            if (fabs(m) < 1e15 && m / p10[k] == v) return fixed_point((long long)m, k, out);
        }
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, MCL_NUM_LEN, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    return n;
}

bool metricast__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= need) return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += need + 1;
    }
    return true;
}

int metricast__json_str(mcl_sbuf_t *b, const char *s) {
    size_t n = strlen(s);
    if (!metricast__utf8_valid(s, n)) return -EINVAL;
    metricast__sb_putc(b, '"');
    size_t run = 0; /* bytes copied as they are, in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        metricast__sb_add(b, s + i - run, run);
        run = 0;
        switch (c) {
        case '"': metricast__sb_puts(b, "\\\""); break;
        case '\\': metricast__sb_puts(b, "\\\\"); break;
        case '\n': metricast__sb_puts(b, "\\n"); break;
        case '\r': metricast__sb_puts(b, "\\r"); break;
        case '\t': metricast__sb_puts(b, "\\t"); break;
        default: metricast__sb_printf(b, "\\u%04x", c); break;
        }
    }
    metricast__sb_add(b, s + n - run, run);
    metricast__sb_putc(b, '"');
    return 0;
}

int metricast__json_num(mcl_sbuf_t *b, double v) {
    char t[MCL_NUM_LEN];
    int n = metricast__fmt_double(v, t);
    if (n < 0) return n;
    metricast__sb_add(b, t, (size_t)n);
    return 0;
}
