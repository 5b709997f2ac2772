#include "cursor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

bool cursor_hub_id_valid(const char *s, size_t n) {
    if (n == 0 || n > HUB_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int find(const cursor_t *c, const char *hub, size_t n) {
    for (uint32_t i = 0; i < c->n; i++)
        if (strncmp(c->e[i].hub, hub, n) == 0 && c->e[i].hub[n] == '\0') return (int)i;
    return -1;
}

uint64_t cursor_get(const cursor_t *c, const char *hub) {
    int i = find(c, hub, strlen(hub));
    return i < 0 ? 0 : c->e[i].seq;
}

static int set_n(cursor_t *c, const char *hub, size_t n, uint64_t seq) {
    if (!cursor_hub_id_valid(hub, n)) return -EINVAL;
    int i = find(c, hub, n);
    if (i < 0) {
        if (c->n == CURSOR_MAX_HUBS) return -ENOSPC;
        i = (int)c->n++;
        memcpy(c->e[i].hub, hub, n);
        c->e[i].hub[n] = '\0';
    }
    c->e[i].seq = seq;
    return 0;
}

int cursor_set(cursor_t *c, const char *hub, uint64_t seq) {
    return set_n(c, hub, strlen(hub), seq);
}

int cursor_parse(const char *s, size_t n, cursor_t *out) {
    cursor_init(out);
    size_t i = 0;
    while (i < n) {
        size_t a = i;
        while (i < n && s[i] != ':') i++;
        if (i == n) return -EINVAL;
        size_t idlen = i - a;
        if (!cursor_hub_id_valid(s + a, idlen) || find(out, s + a, idlen) >= 0) return -EINVAL;
        i++; /* ':' */
        uint64_t v = 0;
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (v > (UINT64_MAX >> 1) / 10) return -EINVAL; /* stays below 2^63 */
            v = v * 10 + (uint64_t)(s[i] - '0');
            i++, digits++;
        }
        if (digits == 0 || digits > 19) return -EINVAL;
        if (set_n(out, s + a, idlen, v) < 0) return -EINVAL;
        if (i < n) {
            if (s[i] != ',' || i + 1 == n) return -EINVAL;
            i++;
        }
    }
    return 0;
}

size_t cursor_format(const cursor_t *c, char *out, size_t cap) {
    size_t len = 0;
    if (cap) out[0] = '\0';
    for (uint32_t i = 0; i < c->n; i++) {
        int w = snprintf(out + len, cap > len ? cap - len : 0, "%s%s:%llu", i ? "," : "",
                         c->e[i].hub, (unsigned long long)c->e[i].seq);
        if (w < 0 || (size_t)w >= (cap > len ? cap - len : 0)) {
            if (cap) out[0] = '\0';
            return 0;
        }
        len += (size_t)w;
    }
    return len;
}
