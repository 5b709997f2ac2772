#include "statsd_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* One line for a random name into out (with '\n'); returns its length. */
static int make_line(statsd_pool_t *pool, int names, char *out, size_t cap) {
    uint32_t i = (uint32_t)(rng() % (uint64_t)names);
    uint32_t k = i % 20; /* 0-9 counter, 10-14 gauge, 15-18 timer, 19 set */
    static const char *const word[] = {"requests", "queue_depth", "latency", "users"};
    int kind = k < 10 ? 0 : k < 15 ? 1 : k < 19 ? 2 : 3;
    int n = snprintf(out, cap, "app%02u.%s.m%u:", i % 20, word[kind], i);
    uint64_t r = rng();
    switch (kind) {
    case 0:
        n += snprintf(out + n, cap - (size_t)n, "%u|c", (unsigned)(r % 10) + 1);
        if ((r >> 8) & 1) {
            n += snprintf(out + n, cap - (size_t)n, "|@0.5");
            pool->rated++;
        }
        break;
    case 1:
        n += snprintf(out + n, cap - (size_t)n, "%u.%u|g", (unsigned)(r % 1000),
                      (unsigned)((r >> 10) % 10));
        break;
    case 2:
        n += snprintf(out + n, cap - (size_t)n, "%u.%02u|ms", (unsigned)(r % 500),
                      (unsigned)((r >> 10) % 100));
        break;
    default:
        n += snprintf(out + n, cap - (size_t)n, "u%u|s", (unsigned)(r % 5000));
        break;
    }
    if (i % 3 == 0) { /* a third of the names, always with the same tag: `names` series */
        n += snprintf(out + n, cap - (size_t)n, "|#source:host%02u", (unsigned)(i / 3 % 64));
        pool->tagged++;
    }
    out[n++] = '\n';
    pool->kind_lines[kind]++;
    return n;
}

int statsd_pool_build(statsd_pool_t *pool, int names, int dgram_bytes) {
    memset(pool, 0, sizeof *pool);
    rng_state = 0x9e3779b97f4a7c15ull;
    pool->data = malloc((size_t)STATSD_POOL_DGRAMS * (size_t)dgram_bytes);
    if (!pool->data) return -1;
    char line[256];
    int pending = 0; /* a line made but not yet placed */
    for (int d = 0; d < STATSD_POOL_DGRAMS; d++) {
        char *p = pool->data + (size_t)d * (size_t)dgram_bytes;
        size_t len = 0;
        uint32_t nl = 0;
        for (;;) {
            if (!pending) pending = make_line(pool, names, line, sizeof line);
            if (len + (size_t)pending > (size_t)dgram_bytes) break;
            memcpy(p + len, line, (size_t)pending);
            len += (size_t)pending;
            nl++;
            pending = 0;
        }
        pool->iov[d].iov_base = p;
        pool->iov[d].iov_len = len;
        pool->lines[d] = nl;
        pool->total_lines += nl;
        pool->total_bytes += len;
    }
    return 0;
}

void statsd_pool_free(statsd_pool_t *pool) {
    free(pool->data);
    pool->data = NULL;
}
