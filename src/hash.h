/* hash — a fast 64-bit hash for in-memory tables (not for anything adversarial beyond
 * load: collisions only cost probes). Nothing persists these values: they may change
 * between versions.
 *
 * The StatsD ingest hashes every line's name and tags (~25-40 bytes), so the cost per
 * byte matters: 16 bytes per step, each step one 64×64→128-bit multiply of the two
 * input words (each xor'ed with a key) folded to 64 bits — the "multiply and fold"
 * construction of wyhash and rapidhash; short inputs are read as two overlapping words,
 * so there is no byte loop. */
#ifndef MC_HASH_H
#define MC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_K0 0xa0761d6478bd642fULL
#define HASH_K1 0xe7037ed1a0b428dbULL
#define HASH_K2 0x8ebc6af09c88c6e3ULL

/* The 128-bit product of a and b as its two halves. */
static inline void hash__mul128(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi) {
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;
    u128 r = (u128)a * b;
    *lo = (uint64_t)r;
    *hi = (uint64_t)(r >> 64);
#else
    uint64_t ha = a >> 32, la = (uint32_t)a, hb = b >> 32, lb = (uint32_t)b;
    uint64_t hh = ha * hb, hl = ha * lb, lh = la * hb, ll = la * lb;
    uint64_t mid = (ll >> 32) + (uint32_t)hl + (uint32_t)lh;
    *lo = (mid << 32) | (uint32_t)ll;
    *hi = hh + (hl >> 32) + (lh >> 32) + (mid >> 32);
#endif
}

/* The 128-bit product of a and b, its halves xor'ed. */
static inline uint64_t hash_fold_mul(uint64_t a, uint64_t b) {
    uint64_t lo, hi;
    hash__mul128(a, b, &lo, &hi);
    return lo ^ hi;
}

/* murmur3's 64-bit finaliser: every input bit reaches every output bit. */
static inline uint64_t hash_mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash__rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t hash__rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Reads only p[0..n). Equal bytes and seed give equal hashes on one machine (the words
 * are read in its byte order). */
static inline uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
    const unsigned char *s = p;
    uint64_t a, b;
    seed ^= HASH_K0;
    if (n <= 16) {
        if (n >= 4) {
            /* two overlapping reads cover 4..16 bytes: the first and last 4 or 8 */
            size_t q = (n >> 3) << 2; /* 0 for 4..7, 4 for 8..16 */
            a = hash__rd32(s) << 32 | hash__rd32(s + q);
            b = hash__rd32(s + n - 4) << 32 | hash__rd32(s + n - 4 - q);
        } else if (n > 0) {
            a = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        while (i > 16) {
            seed = hash_fold_mul(hash__rd64(s) ^ HASH_K1, hash__rd64(s + 8) ^ seed);
            s += 16;
            i -= 16;
        }
        /* the last 16 bytes, overlapping what the loop already took */
        a = hash__rd64(s + i - 16);
        b = hash__rd64(s + i - 8);
    }
    uint64_t lo, hi;
    hash__mul128(a ^ HASH_K1, b ^ seed, &lo, &hi);
    return hash_fold_mul(lo ^ HASH_K2 ^ n, hi ^ HASH_K1);
}

/* One step of hash_pair: absorbs p[0..n) into the state (16 bytes per multiply, the
 * last up-to-16 read as overlapping words, as in hash_bytes). */
static inline uint64_t hash__absorb(uint64_t st, const unsigned char *s, size_t n) {
    uint64_t a, b;
    if (n <= 16) {
        if (n >= 4) {
            size_t q = (n >> 3) << 2;
            a = hash__rd32(s) << 32 | hash__rd32(s + q);
            b = hash__rd32(s + n - 4) << 32 | hash__rd32(s + n - 4 - q);
        } else if (n > 0) {
            a = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        while (i > 16) {
            st = hash_fold_mul(hash__rd64(s) ^ HASH_K1, hash__rd64(s + 8) ^ st);
            s += 16;
            i -= 16;
        }
        a = hash__rd64(s + i - 16);
        b = hash__rd64(s + i - 8);
    }
    return hash_fold_mul(a ^ HASH_K1, b ^ st ^ n);
}

/* The hash of two byte strings taken as a pair (x, y): what hash_bytes of a length-
 * prefixed concatenation would give in spirit, without building it, with one final mix
 * for both. Reads only x[0..nx) and y[0..ny) (y may be NULL when ny is 0). */
static inline uint64_t hash_pair(const void *x, size_t nx, const void *y, size_t ny,
                                 uint64_t seed) {
    uint64_t st = hash__absorb(seed ^ HASH_K0, x, nx);
    if (ny) st = hash__absorb(st ^ HASH_K2, y, ny);
    return hash_fold_mul(st ^ HASH_K2 ^ (uint64_t)ny << 32, st ^ HASH_K1);
}

#endif
