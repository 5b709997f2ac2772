#include "netacl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *s, size_t n, netacl_entry_t *e) {
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *slash = strchr(tmp, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        const char *b = slash + 1;
        if (!*b || strlen(b) > 3) return -1;
        bits = 0;
        for (; *b; b++) {
            if (*b < '0' || *b > '9') return -1;
            bits = bits * 10 + (*b - '0');
        }
    }
    memset(e, 0, sizeof *e);
    if (inet_pton(AF_INET, tmp, e->addr) == 1) {
        e->family = 4;
        if (bits < 0) bits = 32;
        if (bits > 32) return -1;
    } else if (inet_pton(AF_INET6, tmp, e->addr) == 1) {
        e->family = 6;
        if (bits < 0) bits = 128;
        if (bits > 128) return -1;
    } else {
        return -1;
    }
    e->bits = (uint8_t)bits;
    return 0;
}

int netacl_parse(netacl_t *acl, const char *list, char *err, size_t errlen) {
    acl->v = NULL;
    acl->n = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        netacl_entry_t ent;
        if (parse_one(s, (size_t)(e - s), &ent) < 0) {
            snprintf(err, errlen, "\"%.*s\" is not a network (want 10.0.0.0/8, 192.168.1.7, "
                                  "fd00::/8 or ::1)", (int)((size_t)(e - s) > 64 ? 64 : e - s), s);
            netacl_free(acl);
            return -EINVAL;
        }
        netacl_entry_t *v = realloc(acl->v, (acl->n + 1) * sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            netacl_free(acl);
            return -ENOMEM;
        }
        acl->v = v;
        v[acl->n++] = ent;
    }
    return 0;
}

void netacl_free(netacl_t *acl) {
    free(acl->v);
    acl->v = NULL;
    acl->n = 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits) {
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool netacl_match(const netacl_t *acl, const struct sockaddr *sa) {
    uint8_t a4[4], a6[16];
    bool has4 = false, has6 = false;
    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        has4 = true;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        has6 = true;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, 12) == 0) {
            memcpy(a4, a6 + 12, 4);
            has4 = true;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < acl->n; i++) {
        const netacl_entry_t *e = &acl->v[i];
        if (e->family == 4 && has4 && prefix_eq(a4, e->addr, e->bits)) return true;
        if (e->family == 6 && has6 && prefix_eq(a6, e->addr, e->bits)) return true;
    }
    return false;
}
