#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "topic.h"

static void errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static void digest(const void *p, size_t n, unsigned char out[AUTH_DIGEST_LEN]) {
    unsigned len = 0;
    if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) || len != AUTH_DIGEST_LEN)
        memset(out, 0, AUTH_DIGEST_LEN); /* cannot happen with the default provider */
}

/* ---- lifetime ----------------------------------------------------------------------- */

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void auth_free(auth_t *a) {
    for (size_t i = 0; i < a->ntokens; i++) free_list(a->tokens[i].topics, a->tokens[i].ntopics);
    free(a->tokens);
    free_list(a->origins, a->norigins);
    OPENSSL_cleanse(a, sizeof *a);
    free(a);
}

auth_t *auth_ref(auth_t *a) {
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void auth_unref(auth_t *a) {
    if (a && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) auth_free(a);
}

static bool lists_equal(char **a, size_t na, char **b, size_t nb) {
    if (na != nb || (a == NULL) != (b == NULL)) return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) return false;
    return true;
}

bool auth_equal(const auth_t *a, const auth_t *b) {
    if (a->ntokens != b->ntokens || a->any_origin != b->any_origin ||
        a->guard_host != b->guard_host || !lists_equal(a->origins, a->norigins, b->origins, b->norigins))
        return false;
    for (size_t i = 0; i < a->ntokens; i++) {
        const auth_token_t *x = &a->tokens[i], *y = &b->tokens[i];
        if (strcmp(x->name, y->name) != 0 || x->scopes != y->scopes ||
            CRYPTO_memcmp(x->digest, y->digest, AUTH_DIGEST_LEN) != 0 ||
            !lists_equal(x->topics, x->ntopics, y->topics, y->ntopics))
            return false;
    }
    return true;
}

/* ---- lookups ------------------------------------------------------------------------ */

const auth_token_t *auth_find(const auth_t *a, const char *s, size_t len) {
    if (!a || !a->ntokens || len == 0 || len > AUTH_SECRET_MAX) return NULL;
    unsigned char d[AUTH_DIGEST_LEN];
    digest(s, len, d);
    const auth_token_t *found = NULL;
    /* every digest is compared, whatever matched before: the time taken does not depend
     * on which token (if any) matches */
    for (size_t i = 0; i < a->ntokens; i++) {
        int eq = CRYPTO_memcmp(d, a->tokens[i].digest, AUTH_DIGEST_LEN) == 0;
        if (eq && !found) found = &a->tokens[i];
    }
    OPENSSL_cleanse(d, sizeof d);
    return found;
}

const auth_token_t *auth_find_same(const auth_t *a, const auth_token_t *t) {
    if (!a || !t) return NULL;
    const auth_token_t *found = NULL;
    for (size_t i = 0; i < a->ntokens; i++)
        if (CRYPTO_memcmp(t->digest, a->tokens[i].digest, AUTH_DIGEST_LEN) == 0 && !found)
            found = &a->tokens[i];
    return found;
}

bool auth_token_allows(const auth_token_t *t, unsigned scope) {
    if (scope == AUTH_NONE || scope == AUTH_ANY) return true;
    if (!t) return false;
    if (t->scopes & AUTH_ADMIN) return true;
    return (t->scopes & scope) == scope;
}

bool auth_token_topic(const auth_token_t *t, const char *topic) {
    if (!t || !t->topics) return true;
    for (size_t i = 0; i < t->ntopics; i++)
        if (auth_glob_covers(t->topics[i], topic)) return true;
    return false;
}

const char *auth_scope_names(unsigned scopes, char *out, size_t outlen) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{AUTH_READ, "read"}, {AUTH_INGEST, "ingest"}, {AUTH_PUBLISH, "publish"},
                 {AUTH_ADMIN, "admin"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(scopes & names[i].bit) || n >= outlen) continue;
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", n ? "," : "", names[i].name);
    }
    return out;
}

/* ---- globs -------------------------------------------------------------------------- */

#define GLOB_MAX 128

bool auth_glob_covers(const char *allowed, const char *pattern) {
    size_t na = strlen(allowed), ns = strlen(pattern);
    if (na > GLOB_MAX || ns > GLOB_MAX) return false;
    /* cov[i][j]: allowed[i..] covers pattern[j..]; filled from the ends backwards */
    static _Thread_local unsigned char cov[GLOB_MAX + 2][GLOB_MAX + 2];
    for (size_t i = na + 1; i-- > 0;) {
        for (size_t j = ns + 1; j-- > 0;) {
            bool v;
            if (i == na) {
                v = j == ns;
            } else if (allowed[i] == '*') {
                /* the star matches nothing, or swallows pattern[j] whatever it is */
                v = cov[i + 1][j] || (j < ns && cov[i][j + 1]);
            } else if (j == ns || pattern[j] == '*') {
                v = false; /* a pattern star can stand for any run: only a star covers it */
            } else if (allowed[i] == '?') {
                v = cov[i + 1][j + 1];
            } else {
                v = pattern[j] == allowed[i] && cov[i + 1][j + 1];
            }
            cov[i][j] = v;
        }
    }
    return cov[0][0];
}

/* ---- Authorization: Bearer ---------------------------------------------------------- */

int auth_parse_bearer(const char *value, const char **tok, size_t *len) {
    if (!value || strncasecmp(value, "bearer", 6) != 0 || (value[6] != ' ' && value[6] != '\t'))
        return 0;
    const char *p = value + 6;
    while (*p == ' ' || *p == '\t') p++;
    const char *e = p + strlen(p);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e == p) return 0;
    for (const char *q = p; q < e; q++)
        if (*q == ' ' || *q == '\t') return 0; /* one credential, no parameters */
    *tok = p;
    *len = (size_t)(e - p);
    return 1;
}

/* ---- origins ------------------------------------------------------------------------ */

/* Splits an origin into scheme ("http"/"https"), host and port (the scheme's default
 * when absent). 0, or -1 when it is not an origin. host ≥ 256 bytes. */
static int parse_origin(const char *o, size_t n, bool *https, char *host, int *port) {
    size_t skip;
    if (n > 7 && strncasecmp(o, "http://", 7) == 0) {
        *https = false;
        skip = 7;
    } else if (n > 8 && strncasecmp(o, "https://", 8) == 0) {
        *https = true;
        skip = 8;
    } else {
        return -1;
    }
    const char *h = o + skip, *end = o + n;
    const char *hend;
    if (*h == '[') { /* [v6] */
        hend = memchr(h, ']', (size_t)(end - h));
        if (!hend) return -1;
        hend++;
    } else {
        hend = h;
        while (hend < end && *hend != ':') hend++;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0 || hl >= 256) return -1;
    for (const char *q = h; q < hend; q++) {
        unsigned char c = (unsigned char)*q;
        if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '[' || c == ']' || c == ':'))
            return -1;
    }
    for (size_t i = 0; i < hl; i++) host[i] = (char)tolower((unsigned char)h[i]);
    host[hl] = '\0';
    *port = *https ? 443 : 80;
    if (hend < end) {
        if (*hend != ':' || hend + 1 == end) return -1;
        int p = 0;
        for (const char *q = hend + 1; q < end; q++) {
            if (!isdigit((unsigned char)*q) || p > 65535) return -1;
            p = p * 10 + (*q - '0');
        }
        if (p < 1 || p > 65535) return -1;
        *port = p;
    }
    return 0;
}

/* Splits a Host header value into host and port (0 when absent). 0 or -1. */
static int parse_host(const char *v, char *host, int *port) {
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    char tmp[300];
    if (n == 0 || n + 8 >= sizeof tmp) return -1;
    int len = snprintf(tmp, sizeof tmp, "http://%.*s", (int)n, v);
    bool https;
    if (parse_origin(tmp, (size_t)len, &https, host, port) < 0) return -1;
    const char *last = v + n;
    const char *colon = NULL;
    for (const char *q = v; q < last; q++)
        if (*q == ':') colon = q;
    const char *rb = memchr(v, ']', n);
    if (!colon || (rb && colon < rb)) *port = 0; /* no explicit port */
    return 0;
}

int auth_origins_validate(const char *list, char *err, size_t errlen) {
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        size_t n = (size_t)(e - s);
        if (n == 1 && *s == '*') continue;
        char host[256];
        bool https;
        int port;
        if (parse_origin(s, n, &https, host, &port) < 0) {
            errf(err, errlen, "\"%.*s\" is not an origin (want scheme://host[:port], e.g. "
                              "https://ops.example.com, or *)", (int)(n > 200 ? 200 : n), s);
            return -EINVAL;
        }
    }
    return 0;
}

/* Normalised "scheme://host:port" of an origin, lower-cased with the port explicit. */
static int norm_origin(const char *o, size_t n, char *out, size_t outlen) {
    char host[256];
    bool https;
    int port;
    if (parse_origin(o, n, &https, host, &port) < 0) return -1;
    snprintf(out, outlen, "%s://%s:%d", https ? "https" : "http", host, port);
    return 0;
}

bool auth_origin_listed(const auth_t *a, const char *origin) {
    if (!a || !origin) return false;
    if (a->any_origin) return true;
    char n[300];
    if (norm_origin(origin, strlen(origin), n, sizeof n) < 0) return false;
    for (size_t i = 0; i < a->norigins; i++)
        if (strcmp(a->origins[i], n) == 0) return true;
    return false;
}

bool auth_origin_same(const char *origin, const char *host) {
    if (!origin || !host) return false;
    char oh[256], hh[256];
    bool https;
    int op, hp;
    if (parse_origin(origin, strlen(origin), &https, oh, &op) < 0) return false;
    if (parse_host(host, hh, &hp) < 0) return false;
    if (strcmp(oh, hh) != 0) return false;
    /* behind a TLS-terminating proxy the Host carries no port while the origin's is 443 */
    if (hp == 0) return op == 80 || op == 443;
    return op == hp;
}

static bool loopback_name(const char *h) {
    if (strcmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0) return true;
    unsigned a, b, c, d;
    char extra;
    if (sscanf(h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) == 4)
        return a == 127 && b < 256 && c < 256 && d < 256;
    return false;
}

bool auth_host_allowed(const auth_t *a, const char *host) {
    if (!host) return true;
    char h[256];
    int port;
    if (parse_host(host, h, &port) < 0) return false;
    if (loopback_name(h)) return true;
    if (!a) return false;
    for (size_t i = 0; i < a->norigins; i++) {
        const char *o = strstr(a->origins[i], "://") + 3;
        const char *colon = strrchr(o, ':');
        if ((size_t)(colon - o) == strlen(h) && strncmp(o, h, strlen(h)) == 0) return true;
    }
    return false;
}

/* ---- building the policy ------------------------------------------------------------ */

typedef struct build {
    auth_t *a;
    char *err;
    const cfg_section_t *s;
} build_t;

static int fail(build_t *b, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(build_t *b, const char *key, const char *fmt, ...) {
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    errf(b->err, AUTH_ERR_LEN, "config %.300s: [token.%s]%s%s: %s", b->s->file, b->s->name,
         key ? " " : "", key ? key : "", what);
    return -EINVAL;
}

/* Calls fn on each trimmed, non-empty item of a comma-separated list; stops at the first
 * non-zero return. Returns it, or the count of items through *count. */
static int each_item(const char *list, int (*fn)(build_t *, const char *, size_t, void *),
                     build_t *b, void *ud, size_t *count) {
    const char *p = list;
    size_t k = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        int rc = fn(b, s, (size_t)(e - s), ud);
        if (rc) return rc;
        k++;
    }
    *count = k;
    return 0;
}

static int add_scope(build_t *b, const char *s, size_t n, void *ud) {
    static const struct {
        const char *name;
        unsigned bit;
    } scopes[] = {{"read", AUTH_READ}, {"ingest", AUTH_INGEST}, {"publish", AUTH_PUBLISH},
                  {"admin", AUTH_ADMIN}};
    unsigned *bits = ud;
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
        if (strlen(scopes[i].name) == n && strncmp(scopes[i].name, s, n) == 0) {
            *bits |= scopes[i].bit;
            return 0;
        }
    return fail(b, "scopes", "\"%.*s\" is not a scope (read, ingest, publish, admin)",
                (int)(n > 64 ? 64 : n), s);
}

static int add_topic(build_t *b, const char *s, size_t n, void *ud) {
    auth_token_t *t = ud;
    if (n > TOPIC_MAX_LEN)
        return fail(b, "topics", "a topic glob is at most %d characters", TOPIC_MAX_LEN);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '*' || c == '?'))
            return fail(b, "topics",
                        "\"%.*s\" is not a topic glob (lower-case letters, digits, '_', '.', "
                        "'*', '?': metrics, sources, alerts, events, telemetry.*, *)",
                        (int)n, s);
    }
    char **v = realloc(t->topics, (t->ntopics + 1) * sizeof *v);
    if (!v) return fail(b, "topics", "out of memory");
    t->topics = v;
    if (!(v[t->ntopics] = strndup(s, n))) return fail(b, "topics", "out of memory");
    t->ntopics++;
    return 0;
}

static bool secret_chars_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

/* Reads a secret file into buf (NUL-terminated), trailing whitespace removed. */
static int read_secret_file(build_t *b, const char *path, char *buf, size_t cap, size_t *len) {
    char full[2048];
    if (path[0] != '/' && strchr(b->s->file, '/')) {
        const char *slash = strrchr(b->s->file, '/');
        snprintf(full, sizeof full, "%.*s/%s", (int)(slash - b->s->file), b->s->file, path);
    } else {
        snprintf(full, sizeof full, "%s", path);
    }
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer — on SIGHUP
     * this runs on the hub thread; it is then refused as not a regular file below */
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fail(b, "secret_file", "%.300s: cannot read: %s", full, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(b, "secret_file", "%.300s: not a regular file", full);
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return fail(b, "secret_file", "%.300s: cannot read: %s", full, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == cap - 1) {
            char extra;
            if (read(fd, &extra, 1) == 1) {
                close(fd);
                return fail(b, "secret_file", "%.300s: longer than %d bytes", full,
                            AUTH_SECRET_MAX);
            }
            break;
        }
    }
    close(fd);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (st.st_mode & S_IROTH)
        log_warn("token secret file is readable by every user", "token=%s file=%s", b->s->name,
                 full);
    *len = n;
    return 0;
}

static int build_token(build_t *b, auth_token_t *t) {
    const cfg_section_t *s = b->s;
    static const char *const known[] = {"secret", "secret_file", "scopes", "topics"};
    for (size_t i = 0; i < s->nkv; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0] && !ok; k++)
            ok = strcmp(s->kv[i].key, known[k]) == 0;
        if (!ok)
            return fail(b, s->kv[i].key, "unknown key (a token has secret or secret_file, "
                                         "scopes, topics)");
    }
    snprintf(t->name, sizeof t->name, "%s", s->name);
    const char *secret = config_section_get(s, "secret");
    const char *file = config_section_get(s, "secret_file");
    if (secret && file) return fail(b, NULL, "give secret or secret_file, not both");
    if (!secret && !file) return fail(b, NULL, "needs secret (or secret_file)");
    static _Thread_local char buf[AUTH_SECRET_MAX + 2];
    size_t len;
    if (file) {
        if (!*file) return fail(b, "secret_file", "empty path");
        int rc = read_secret_file(b, file, buf, sizeof buf, &len);
        if (rc) return rc;
        secret = buf;
    } else {
        len = strlen(secret);
    }
    const char *key = file ? "secret_file" : "secret";
    if (len == 0) {
        OPENSSL_cleanse(buf, sizeof buf);
        return fail(b, key, file ? "the file holds no secret" : "empty");
    }
    if (len > AUTH_SECRET_MAX || !secret_chars_ok(secret, len)) {
        OPENSSL_cleanse(buf, sizeof buf);
        return fail(b, key, "a secret is 1 to %d printable ASCII characters without spaces",
                    AUTH_SECRET_MAX);
    }
    digest(secret, len, t->digest);
    OPENSSL_cleanse(buf, sizeof buf);
    if (len < AUTH_SECRET_WARN_LEN)
        log_warn("token secret is short: use at least 16 random characters", "token=%s length=%zu",
                 t->name, len);

    const char *scopes = config_section_get(s, "scopes");
    if (!scopes) return fail(b, NULL, "needs scopes (read, ingest, publish, admin)");
    size_t n;
    int rc = each_item(scopes, add_scope, b, &t->scopes, &n);
    if (rc) return rc;
    if (n == 0) return fail(b, "scopes", "empty (read, ingest, publish, admin)");

    const char *topics = config_section_get(s, "topics");
    if (topics) {
        rc = each_item(topics, add_topic, b, t, &n);
        if (rc) return rc;
        if (n == 0) return fail(b, "topics", "empty: leave it out to allow every topic");
    }
    return 0;
}

static int build_origins(auth_t *a, const char *list, char *err) {
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        size_t n = (size_t)(e - s);
        if (n == 1 && *s == '*') {
            a->any_origin = true;
            continue;
        }
        char norm[300];
        if (norm_origin(s, n, norm, sizeof norm) < 0) {
            errf(err, AUTH_ERR_LEN, "[server] allowed_origins: \"%.*s\" is not an origin",
                 (int)(n > 200 ? 200 : n), s);
            return -EINVAL;
        }
        char **v = realloc(a->origins, (a->norigins + 1) * sizeof *v);
        if (!v || !(v[a->norigins] = strdup(norm))) {
            if (v) a->origins = v;
            errf(err, AUTH_ERR_LEN, "[server] allowed_origins: out of memory");
            return -ENOMEM;
        }
        a->origins = v;
        a->norigins++;
    }
    return 0;
}

static bool loopback_addr(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

int auth_build(const config_t *c, auth_t **out, char err[AUTH_ERR_LEN]) {
    *out = NULL;
    auth_t *a = calloc(1, sizeof *a);
    if (!a) {
        errf(err, AUTH_ERR_LEN, "out of memory");
        return -ENOMEM;
    }
    atomic_init(&a->refs, 1);
    int rc = build_origins(a, c->allowed_origins, err);
    size_t ntok = 0;
    for (size_t i = 0; i < c->nsections; i++) ntok += strcmp(c->sections[i].kind, "token") == 0;
    if (rc == 0 && ntok) {
        a->tokens = calloc(ntok, sizeof *a->tokens);
        if (!a->tokens) {
            errf(err, AUTH_ERR_LEN, "out of memory");
            rc = -ENOMEM;
        }
    }
    for (size_t i = 0; rc == 0 && i < c->nsections; i++) {
        if (strcmp(c->sections[i].kind, "token") != 0) continue;
        build_t b = {a, err, &c->sections[i]};
        auth_token_t *t = &a->tokens[a->ntokens++];
        rc = build_token(&b, t);
        for (size_t k = 0; rc == 0 && k + 1 < a->ntokens; k++)
            if (CRYPTO_memcmp(a->tokens[k].digest, t->digest, AUTH_DIGEST_LEN) == 0)
                rc = fail(&b, NULL, "has the same secret as [token.%s]: every token needs its own",
                          a->tokens[k].name);
    }
    if (rc) {
        auth_free(a);
        return rc;
    }
    a->guard_host = a->ntokens == 0 && loopback_addr(c->listen.host);
    *out = a;
    return 0;
}
