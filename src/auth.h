/* auth — who may do what: API tokens with scopes and topic globs, and which browser
 * origins may talk to the hub. Pure (no sockets); the HTTP side is access.c.
 *
 * A policy (auth_t) is built from the configuration — the [token.NAME] sections and
 * [server] allowed_origins — validated completely (any problem is one line naming the
 * file, section and key; secrets never appear in it), then never changes. It is
 * reference-counted: every worker holds one, and a reload (SIGHUP) builds a new one and
 * hands a reference to each worker, which drops its old one.
 *
 * Secrets are kept only as SHA-256 digests; a presented token is hashed and compared
 * with every token's digest in constant time (CRYPTO_memcmp, no early exit), so neither
 * a secret's content nor its length leaks through timing.
 *
 * With no token configured the policy is open: every request is allowed (the loopback
 * default of SPEC section 11). */
#ifndef MC_AUTH_H
#define MC_AUTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

#define AUTH_ERR_LEN 640
#define AUTH_SECRET_MAX 4096
/* Shorter secrets are accepted with a warning in the log: they are guessable. */
#define AUTH_SECRET_WARN_LEN 16
#define AUTH_DIGEST_LEN 32

/* Scopes, as bits. admin implies every other scope. AUTH_ANY: any valid token. */
enum {
    AUTH_NONE = 0, /* public: no token needed (/health) */
    AUTH_READ = 1u << 0,
    AUTH_INGEST = 1u << 1,
    AUTH_PUBLISH = 1u << 2,
    AUTH_ADMIN = 1u << 3,
    AUTH_ANY = 1u << 4,
};

typedef struct auth_token {
    char name[128];
    unsigned char digest[AUTH_DIGEST_LEN]; /* SHA-256 of the secret */
    unsigned scopes;
    char **topics; /* owned; NULL when every topic is allowed */
    size_t ntopics;
} auth_token_t;

typedef struct auth {
    atomic_uint refs;
    auth_token_t *tokens; /* owned array */
    size_t ntokens;
    char **origins; /* owned; lower-cased "scheme://host[:port]" */
    size_t norigins;
    bool any_origin; /* allowed_origins contains "*" */
    /* DNS-rebinding guard: the listener is on loopback and no token is configured, so a
     * request must name the hub by a loopback Host (or an allowed origin's host). */
    bool guard_host;
} auth_t;

/* Builds the policy from c: its token sections, allowed_origins, and whether the
 * listener is on loopback. A secret_file path is relative to the directory of the file
 * that names it. Warnings (short secrets, secret files other users can read) go to the
 * log. 0 and *out (one reference), or -EINVAL / -ENOMEM with err filled. */
int auth_build(const struct config *c, auth_t **out, char err[AUTH_ERR_LEN]);
auth_t *auth_ref(auth_t *a);
void auth_unref(auth_t *a); /* NULL allowed */

/* Whether a and b grant exactly the same (tokens, scopes, topics, origins). */
bool auth_equal(const auth_t *a, const auth_t *b);

/* Whether any token is configured (otherwise everything is open). */
static inline bool auth_enabled(const auth_t *a) { return a && a->ntokens > 0; }

/* The token whose secret is s[0..len), or NULL. Constant time in the content of s and of
 * every configured secret. */
const auth_token_t *auth_find(const auth_t *a, const char *s, size_t len);
/* The token of a with the same secret as t (from another policy), or NULL: a reload
 * re-checks a connection's token with it. */
const auth_token_t *auth_find_same(const auth_t *a, const auth_token_t *t);

/* Whether t grants scope (admin grants all; AUTH_ANY and AUTH_NONE are always granted). */
bool auth_token_allows(const auth_token_t *t, unsigned scope);
/* Whether t may read topic (a topic name or an event-type pattern as a client sends it):
 * true when t has no topics list, or one of its globs covers every name the topic can
 * stand for. */
bool auth_token_topic(const auth_token_t *t, const char *topic);
/* "read,ingest" for the bits in scopes; returns out. */
const char *auth_scope_names(unsigned scopes, char *out, size_t outlen);

/* Whether every string glob `pattern` matches is matched by glob `allowed` ('*' any run,
 * '?' one character, everything else literal, as fnmatch without flags). Conservative: a
 * '*' in pattern must be absorbed by a '*' in allowed. Lengths up to 128. */
bool auth_glob_covers(const char *allowed, const char *pattern);

/* Parses an Authorization header value "Bearer TOKEN" (scheme case-insensitive). 1 with
 * tok and len pointing into value, 0 if it is another scheme or malformed. */
int auth_parse_bearer(const char *value, const char **tok, size_t *len);

/* Origins -------------------------------------------------------------------------------
 * An origin is "scheme://host[:port]" as browsers send it (RFC 6454): http or https, no
 * path. The allow-list syntax ([server] allowed_origins): such origins, comma-separated,
 * or "*" for any. Checked by config_set; auth_build copies them. */
int auth_origins_validate(const char *list, char *err, size_t errlen);
/* Whether origin is on a's allow-list (exact, case-insensitive, default ports folded). */
bool auth_origin_listed(const auth_t *a, const char *origin);
/* Whether origin names the same host and port as the Host header (the page was served
 * by this hub). Default ports (80, 443) are folded; a Host without a port matches. */
bool auth_origin_same(const char *origin, const char *host);
/* Whether a Host header value names this machine's loopback (localhost, 127.0.0.0/8,
 * [::1]) or the host of an allowed origin. A missing Host (NULL) passes. */
bool auth_host_allowed(const auth_t *a, const char *host);

#endif
