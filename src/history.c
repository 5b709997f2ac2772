#include "history.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void history_init(history_t *h, uint32_t max) {
    memset(h, 0, sizeof *h);
    h->max = max ? max : 1;
    /* the ring's own address is spread enough (and needs no seed): a multiplicative
     * hash of it picks where between half full and full this ring doubles */
    uint64_t a = (uint64_t)(uintptr_t)h * 0x9E3779B97F4A7C15ull;
    h->spread = (uint8_t)(a >> 56);
}

void history_free(history_t *h) {
    free(h->t);
    free(h->v);
    free(h->x);
    uint32_t max = h->max;
    uint8_t spread = h->spread;
    history_init(h, max);
    h->spread = spread;
}

/* Whether the next point should first grow the ring (see the header: staggered). */
static bool should_grow(const history_t *h) {
    if (h->cap >= h->max) return false;
    if (h->cap < 64) return h->len == h->cap; /* small rings: cheap, grow when full */
    return h->len >= h->cap - (uint32_t)(((uint64_t)h->cap * h->spread) >> 9);
}

/* Before the ring first wraps (it wraps only at max), its points are in order from index
 * 0: realloc keeps them where they are. */
static int grow_in_place(history_t *h, uint32_t ncap, bool extras) {
    uint32_t *nt = realloc(h->t, ncap * sizeof *nt);
    if (!nt) return -ENOMEM;
    h->t = nt;
    double *nv = realloc(h->v, ncap * sizeof *nv);
    if (!nv) return -ENOMEM; /* h->t is larger than needed: harmless, cap unchanged */
    h->v = nv;
    if (extras) {
        float(*nx)[HIST_EXTRAS] = realloc(h->x, ncap * sizeof *nx);
        if (!nx) return -ENOMEM;
        if (!h->x)
            for (uint32_t i = 0; i < h->len; i++)
                for (int j = 0; j < HIST_EXTRAS; j++) nx[i][j] = NAN;
        h->x = nx;
    }
    h->cap = ncap;
    return 0;
}

static int grow(history_t *h, bool extras) {
    uint32_t ncap = h->cap ? h->cap * 2 : 4;
    if (ncap > h->max) ncap = h->max;
    if (h->head == 0) return grow_in_place(h, ncap, extras);
    uint32_t *nt = malloc(ncap * sizeof *nt);
    double *nv = malloc(ncap * sizeof *nv);
    float(*nx)[HIST_EXTRAS] = extras ? malloc(ncap * sizeof *nx) : NULL;
    if (!nt || !nv || (extras && !nx)) {
        free(nt), free(nv), free(nx);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h->len; i++) { /* unwrap: oldest first */
        uint32_t k = (h->head + i) % h->cap;
        nt[i] = h->t[k];
        nv[i] = h->v[k];
        if (nx) {
            if (h->x)
                memcpy(nx[i], h->x[k], sizeof nx[i]);
            else
                for (int j = 0; j < HIST_EXTRAS; j++) nx[i][j] = NAN;
        }
    }
    free(h->t), free(h->v), free(h->x);
    h->t = nt, h->v = nv, h->x = nx;
    h->cap = ncap;
    h->head = 0;
    return 0;
}

int history_push(history_t *h, uint32_t t, double v, const double *extras) {
    if (h->len) {
        uint32_t last = (h->head + h->len - 1) % h->cap;
        if (h->t[last] == t) { /* same second: the newer value wins */
            h->v[last] = v;
            if (extras && h->x)
                for (int j = 0; j < HIST_EXTRAS; j++) h->x[last][j] = (float)extras[j];
            return 0;
        }
    }
    if (should_grow(h)) {
        if (grow(h, extras != NULL || h->x) < 0) return -ENOMEM;
    } else if (extras && !h->x && h->cap) {
        /* first timer point on a ring that has none: add the extras array */
        uint32_t cap = h->cap;
        float(*nx)[HIST_EXTRAS] = malloc(cap * sizeof *nx);
        if (!nx) return -ENOMEM;
        for (uint32_t i = 0; i < cap; i++)
            for (int j = 0; j < HIST_EXTRAS; j++) nx[i][j] = NAN;
        h->x = nx;
    }
    uint32_t k;
    if (h->len < h->cap) {
        k = (h->head + h->len) % h->cap;
        h->len++;
    } else { /* full at max: overwrite the oldest */
        k = h->head;
        h->head = (h->head + 1) % h->cap;
    }
    h->t[k] = t;
    h->v[k] = v;
    if (h->x)
        for (int j = 0; j < HIST_EXTRAS; j++) h->x[k][j] = extras ? (float)extras[j] : NAN;
    return 0;
}

void history_get(const history_t *h, uint32_t i, uint32_t *t, double *v, double *extras) {
    uint32_t k = (h->head + i) % h->cap;
    *t = h->t[k];
    *v = h->v[k];
    if (extras)
        for (int j = 0; j < HIST_EXTRAS; j++) extras[j] = h->x ? (double)h->x[k][j] : NAN;
}

uint32_t history_first_from(const history_t *h, uint32_t from) {
    uint32_t lo = 0, hi = h->len; /* points are in time order: binary search */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->t[(h->head + mid) % h->cap] < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
