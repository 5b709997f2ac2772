/* tls.c: the server engine against a real OpenSSL client, both on memory BIOs (no
 * sockets): handshakes fed one byte at a time, versions, refusals and their kinds,
 * close_notify both ways, the file checks and the reload. The certificate is made here. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "tls.h"

static char dir[64], cert[128], key[128], cert2[128], key2[128];

static void make_pair(const char *cn, const char *cpath, const char *kpath) {
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cpath, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(kpath, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/mc-unit-tls.XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(cert, sizeof cert, "%s/a.crt", dir);
    snprintf(key, sizeof key, "%s/a.key", dir);
    snprintf(cert2, sizeof cert2, "%s/b.crt", dir);
    snprintf(key2, sizeof key2, "%s/b.key", dir);
    make_pair("a.test", cert, key);
    make_pair("b.test", cert2, key2);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(cert);
    unlink(key);
    unlink(cert2);
    unlink(key2);
    rmdir(dir);
    return 0;
}

/* A client on memory BIOs. */
typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* in: what the server sent; out: what the client sends */
} client_t;

static void client_init(client_t *c, int max_version) {
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version) {
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_cipher_list(c->ctx, "DEFAULT:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    }
    c->ssl = SSL_new(c->ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
}

static void client_free(client_t *c) {
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Moves the client's output to the server one byte at a time, the server's back whole;
 * returns the server's last read result. */
static ssize_t shuttle(client_t *c, tls_conn_t *t, char *plain, size_t plen) {
    ssize_t r = 0;
    char b[1];
    while (BIO_read(c->out, b, 1) == 1) {
        assert_int_equal(tls_conn_feed(t, b, 1), 0);
        r = tls_conn_read(t, plain, plen);
        if (r != 0) break;
    }
    buf_t out = BUF_INIT;
    assert_int_equal(tls_conn_take_output(t, &out), 0);
    if (out.len) BIO_write(c->in, out.data, (int)out.len);
    buf_free(&out);
    return r;
}

static void handshake(client_t *c, tls_conn_t *t) {
    char plain[256];
    for (int i = 0; i < 20 && !(SSL_is_init_finished(c->ssl) && tls_conn_handshake_done(t)); i++) {
        SSL_do_handshake(c->ssl);
        assert_true(shuttle(c, t, plain, sizeof plain) >= 0);
    }
    assert_true(SSL_is_init_finished(c->ssl));
    assert_true(tls_conn_handshake_done(t));
}

static void test_handshake_and_data(void **state) {
    (void)state;
    tls_server_t *s;
    char err[TLS_ERR_LEN];
    assert_int_equal(tls_server_open(&s, cert, key, err), 0);
    static const int versions[] = {0, TLS1_2_VERSION};
    for (int v = 0; v < 2; v++) {
        tls_conn_t *t = tls_conn_new(s);
        client_t c;
        client_init(&c, 0);
        if (versions[v]) SSL_set_max_proto_version(c.ssl, versions[v]);
        handshake(&c, t);
        assert_string_equal(tls_conn_version(t), v ? "TLSv1.2" : "TLSv1.3");
        if (v) assert_non_null(strstr(SSL_get_cipher_name(c.ssl), "GCM"));
        /* client -> server */
        assert_int_equal(SSL_write(c.ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
        char plain[64];
        assert_int_equal(shuttle(&c, t, plain, sizeof plain), 18);
        assert_memory_equal(plain, "GET / HTTP/1.1\r\n\r\n", 18);
        /* server -> client, two writes read as one stream */
        assert_int_equal(tls_conn_write(t, "hello ", 6), 0);
        assert_int_equal(tls_conn_write(t, "world", 5), 0);
        assert_true(tls_conn_has_output(t));
        shuttle(&c, t, plain, sizeof plain);
        char got[32];
        size_t n = 0, k = 0;
        while (n < 11 && SSL_read_ex(c.ssl, got + n, sizeof got - n, &k) == 1) n += k;
        assert_int_equal(n, 11);
        assert_memory_equal(got, "hello world", 11);
        /* server's close_notify reaches the client */
        tls_conn_shutdown(t);
        shuttle(&c, t, plain, sizeof plain);
        assert_int_equal(SSL_read(c.ssl, got, sizeof got), 0);
        assert_int_equal(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
        tls_conn_free(t);
        client_free(&c);
    }
    /* the client's close_notify: -EPIPE */
    tls_conn_t *t = tls_conn_new(s);
    client_t c;
    client_init(&c, 0);
    handshake(&c, t);
    SSL_shutdown(c.ssl);
    char plain[64];
    assert_int_equal(shuttle(&c, t, plain, sizeof plain), -EPIPE);
    tls_conn_free(t);
    client_free(&c);
    tls_server_free(s);
}

static void test_refusals(void **state) {
    (void)state;
    tls_server_t *s;
    char err[TLS_ERR_LEN];
    assert_int_equal(tls_server_open(&s, cert, key, err), 0);
    /* TLS 1.1: refused with an alert, kind VERSION */
    tls_conn_t *t = tls_conn_new(s);
    client_t c;
    client_init(&c, TLS1_1_VERSION);
    SSL_do_handshake(c.ssl);
    char plain[64];
    assert_int_equal(shuttle(&c, t, plain, sizeof plain), -EPROTO);
    assert_int_equal(tls_conn_error_kind(t), TLS_ERRK_VERSION);
    assert_true(strlen(tls_conn_error(t)) > 0);
    assert_int_equal(SSL_do_handshake(c.ssl), -1); /* the client got the alert */
    tls_conn_shutdown(t);                         /* no close_notify after a failure */
    assert_false(tls_conn_has_output(t));
    tls_conn_free(t);
    client_free(&c);
    /* plain HTTP, and garbage */
    static const char *const inputs[] = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                         "\x16\x03\x01\x00\x05" "abcde",
                                         "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"};
    static const int kinds[] = {TLS_ERRK_PLAIN_HTTP, TLS_ERRK_OTHER, TLS_ERRK_OTHER};
    for (int i = 0; i < 3; i++) {
        t = tls_conn_new(s);
        const char *in = inputs[i];
        size_t len = i == 0 ? strlen(in) : 10; /* the others hold NUL bytes */
        assert_int_equal(tls_conn_feed(t, in, len), 0);
        assert_int_equal(tls_conn_read(t, plain, sizeof plain), -EPROTO);
        assert_int_equal(tls_conn_error_kind(t), kinds[i]);
        assert_false(tls_conn_handshake_done(t));
        tls_conn_free(t);
    }
    /* a partial record waits */
    t = tls_conn_new(s);
    assert_int_equal(tls_conn_feed(t, "\x16\x03\x01", 3), 0);
    assert_int_equal(tls_conn_read(t, plain, sizeof plain), 0);
    tls_conn_free(t);
    tls_server_free(s);
}

static void test_files_and_reload(void **state) {
    (void)state;
    tls_server_t *s = NULL;
    char err[TLS_ERR_LEN];
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);
    assert_int_equal(tls_server_open(&s, missing, key, err), -EINVAL);
    assert_non_null(strstr(err, "--tls-cert"));
    assert_non_null(strstr(err, "cannot read"));
    assert_int_equal(tls_server_open(&s, cert, missing, err), -EINVAL);
    assert_non_null(strstr(err, "--tls-key"));
    assert_int_equal(tls_server_open(&s, cert, key2, err), -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(tls_server_open(&s, key, key, err), -EINVAL);
    assert_non_null(strstr(err, "not a usable PEM certificate"));
    assert_null(s);

    assert_int_equal(tls_server_open(&s, cert, key, err), 0);
    char desc[300];
    tls_server_describe(s, desc, sizeof desc);
    assert_non_null(strstr(desc, "CN=a.test"));
    double left = tls_server_not_after(s) - (double)time(NULL); /* made for 86400 s */
    assert_true(left > 86400 - 120 && left < 86400 + 120);
    tls_conn_t *old = tls_conn_new(s); /* made before the reload: keeps its context */
    assert_int_equal(tls_server_reload(s, cert2, key, err), -EINVAL); /* mismatch: kept */
    tls_server_describe(s, desc, sizeof desc);
    assert_non_null(strstr(desc, "CN=a.test"));
    assert_int_equal(tls_server_reload(s, cert2, key2, err), 0);
    tls_server_describe(s, desc, sizeof desc);
    assert_non_null(strstr(desc, "CN=b.test"));
    client_t c;
    client_init(&c, 0);
    handshake(&c, old);
    X509 *peer = SSL_get1_peer_certificate(c.ssl);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "a.test");
    X509_free(peer);
    client_free(&c);
    tls_conn_free(old);
    tls_conn_t *t = tls_conn_new(s);
    client_init(&c, 0);
    handshake(&c, t);
    peer = SSL_get1_peer_certificate(c.ssl);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "b.test");
    X509_free(peer);
    client_free(&c);
    tls_conn_free(t);
    tls_server_free(s);
    assert_string_equal(tls_fail_name(TLS_FAIL_PLAINTEXT_HTTP), "plaintext_http");
    assert_string_equal(tls_fail_name(99), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_files_and_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
