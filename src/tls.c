#include "tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct tls_server {
    uv_mutex_t mu; /* guards ctx: the reload swaps it while workers create sessions */
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool shutdown_sent;
    bool failed; /* a fatal error: no close_notify may follow (OpenSSL forbids it) */
    int error_kind; /* TLS_ERRK_*, after a failure */
    char error[160];
};

/* TLS 1.2 suites: forward secrecy and AEAD only (Mozilla's "intermediate" list). TLS 1.3
 * keeps OpenSSL's default suites, which are all of that kind. */
static const char CIPHERS_TLS12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

const char *tls_fail_name(int reason) {
    static const char *const names[TLS_FAIL_COUNT] = {"plaintext_http", "protocol_version",
                                                      "bad_handshake", "timeout", "closed"};
    return reason >= 0 && reason < TLS_FAIL_COUNT ? names[reason] : "unknown";
}

static void last_error(char *out, size_t len) {
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, out, len);
    else
        snprintf(out, len, "unknown error");
    ERR_clear_error();
}

/* ALPN: only HTTP/1.1 is spoken here; a client offering h2 alone gets no protocol (and
 * falls back), one offering both gets http/1.1. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg) {
    (void)ssl;
    (void)arg;
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Builds a context from cert and key; NULL with err filled. */
static SSL_CTX *ctx_build(const char *cert, const char *key, char err[TLS_ERR_LEN]) {
    char why[256];
    /* OpenSSL's message for a missing file is "system library::No such file or directory"
     * without the name: say which file first, in plain words */
    const char *paths[2] = {cert, key}, *flags[2] = {"--tls-cert", "--tls-key"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "r");
        if (!f) {
            snprintf(err, TLS_ERR_LEN, "%s %.300s: cannot read: %s", flags[i], paths[i],
                     strerror(errno));
            return NULL;
        }
        fclose(f);
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        last_error(why, sizeof why);
        snprintf(err, TLS_ERR_LEN, "--tls-cert: cannot create a TLS context: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* no renegotiation of either side (client-initiated is off by default in OpenSSL 3) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) != 1) {
        last_error(why, sizeof why);
        snprintf(err, TLS_ERR_LEN, "--tls-cert: cipher list refused: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    static const unsigned char sid[] = "metricast";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        last_error(why, sizeof why);
        snprintf(err, TLS_ERR_LEN, "--tls-cert %.200s: not a usable PEM certificate: %.160s", cert,
                 why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        bool mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 &&
                        ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        last_error(why, sizeof why);
        if (mismatch) {
            snprintf(err, TLS_ERR_LEN, "--tls-key %.200s: does not match --tls-cert: %.160s", key,
                     why);
            SSL_CTX_free(ctx);
            return NULL;
        }
        snprintf(err, TLS_ERR_LEN, "--tls-key %.200s: not a usable PEM private key: %.160s", key, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        last_error(why, sizeof why);
        snprintf(err, TLS_ERR_LEN, "--tls-key %.200s: does not match --tls-cert: %.160s", key, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    return ctx;
}

int tls_server_open(tls_server_t **out, const char *cert, const char *key,
                    char err[TLS_ERR_LEN]) {
    *out = NULL;
    SSL_CTX *ctx = ctx_build(cert, key, err);
    if (!ctx) return -EINVAL;
    tls_server_t *s = calloc(1, sizeof *s);
    if (!s || uv_mutex_init(&s->mu) != 0) {
        free(s);
        SSL_CTX_free(ctx);
        snprintf(err, TLS_ERR_LEN, "--tls-cert: out of memory");
        return -ENOMEM;
    }
    s->ctx = ctx;
    *out = s;
    return 0;
}

int tls_server_reload(tls_server_t *s, const char *cert, const char *key,
                      char err[TLS_ERR_LEN]) {
    SSL_CTX *ctx = ctx_build(cert, key, err);
    if (!ctx) return -EINVAL;
    uv_mutex_lock(&s->mu);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    uv_mutex_unlock(&s->mu);
    SSL_CTX_free(old); /* sessions started on it hold their own references */
    return 0;
}

void tls_server_describe(tls_server_t *s, char *out, size_t len) {
    uv_mutex_lock(&s->mu);
    X509 *x = SSL_CTX_get0_certificate(s->ctx);
    char subject[200] = "?", until[32] = "?";
    if (x) {
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
            strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    uv_mutex_unlock(&s->mu);
    snprintf(out, len, "subject=\"%s\" not_after=%s", subject, until);
}

double tls_server_not_after(tls_server_t *s) {
    uv_mutex_lock(&s->mu);
    X509 *x = SSL_CTX_get0_certificate(s->ctx);
    double v = 0;
    int days = 0, secs = 0;
    /* the difference from the epoch, as OpenSSL computes it: no time zone involved */
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    if (x && epoch && ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(x)) == 1)
        v = (double)days * 86400.0 + (double)secs;
    ASN1_TIME_free(epoch);
    uv_mutex_unlock(&s->mu);
    return v;
}

void tls_server_free(tls_server_t *s) {
    if (!s) return;
    SSL_CTX_free(s->ctx);
    uv_mutex_destroy(&s->mu);
    free(s);
}

tls_conn_t *tls_conn_new(tls_server_t *s) {
    tls_conn_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    ERR_clear_error();
    uv_mutex_lock(&s->mu);
    t->ssl = SSL_new(s->ctx);
    uv_mutex_unlock(&s->mu);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* an empty read BIO means "wait for more", never end of file */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(tls_conn_t *t) {
    if (!t) return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

int tls_conn_feed(tls_conn_t *t, const void *p, size_t n) {
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int w = BIO_write(t->rbio, p, chunk);
        if (w <= 0) return -ENOMEM;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t failed(tls_conn_t *t, int rc) {
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return -EPIPE;
    }
    t->failed = true;
    unsigned long err = ERR_peek_last_error();
    if (ERR_GET_LIB(err) == ERR_LIB_SSL) {
        int r = ERR_GET_REASON(err);
        if (r == SSL_R_UNSUPPORTED_PROTOCOL || r == SSL_R_VERSION_TOO_LOW)
            t->error_kind = TLS_ERRK_VERSION;
        else if (r == SSL_R_HTTP_REQUEST || r == SSL_R_HTTPS_PROXY_REQUEST)
            t->error_kind = TLS_ERRK_PLAIN_HTTP;
    }
    last_error(t->error, sizeof t->error);
    return -EPROTO;
}

ssize_t tls_conn_read(tls_conn_t *t, void *buf, size_t len) {
    ERR_clear_error();
    if (!SSL_is_init_finished(t->ssl)) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) return failed(t, rc);
    }
    size_t got = 0;
    int rc = SSL_read_ex(t->ssl, buf, len, &got);
    if (rc == 1) return (ssize_t)got;
    return failed(t, rc);
}

bool tls_conn_buffered(const tls_conn_t *t) {
    return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

int tls_conn_write(tls_conn_t *t, const void *p, size_t n) {
    if (n == 0) return 0;
    /* no ERR_clear_error() first: a success does not read the queue, every failure path
     * here empties it, and at ~2 per small record it was a visible part of the cost */
    size_t done = 0;
    int rc = SSL_write_ex(t->ssl, p, n, &done); /* a memory BIO takes everything */
    if (rc == 1 && done == n) return 0;
    t->failed = true;
    last_error(t->error, sizeof t->error);
    return -EPROTO;
}

void tls_conn_shutdown(tls_conn_t *t) {
    if (t->shutdown_sent || t->failed) return;
    t->shutdown_sent = true;
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl)) SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int tls_conn_take_output(tls_conn_t *t, buf_t *out) {
    size_t n;
    while ((n = BIO_ctrl_pending(t->wbio)) > 0) {
        if (n > (1u << 30)) n = 1u << 30;
        if (buf_reserve(out, n) < 0) return -ENOMEM;
        int r = BIO_read(t->wbio, out->data + out->len, (int)n);
        if (r <= 0) break;
        out->len += (size_t)r;
        out->data[out->len] = '\0'; /* buf_t keeps its NUL */
    }
    return 0;
}

bool tls_conn_has_output(const tls_conn_t *t) { return BIO_ctrl_pending(t->wbio) > 0; }

bool tls_conn_handshake_done(const tls_conn_t *t) { return SSL_is_init_finished(t->ssl); }

const char *tls_conn_error(const tls_conn_t *t) { return t->error; }

int tls_conn_error_kind(const tls_conn_t *t) { return t->error_kind; }

const char *tls_conn_version(const tls_conn_t *t) { return SSL_get_version(t->ssl); }
