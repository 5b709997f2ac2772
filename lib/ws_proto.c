#include "ws_proto.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

/* RFC 6455 section 1.3 */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void metricast__ws_key(const uint8_t nonce[16], char key[MCL_WS_KEY_LEN + 1]) {
    EVP_EncodeBlock((unsigned char *)key, nonce, 16);
    key[MCL_WS_KEY_LEN] = '\0';
}

int metricast__ws_accept(const char *key, char accept[MCL_WS_ACCEPT_LEN + 1]) {
    size_t kl = strlen(key);
    if (kl > 128) return -EINVAL;
    unsigned char in[128 + sizeof ws_guid];
    memcpy(in, key, kl);
    memcpy(in + kl, ws_guid, sizeof ws_guid - 1);
    unsigned char md[SHA_DIGEST_LENGTH];
    if (!SHA1(in, kl + sizeof ws_guid - 1, md)) return -ENOMEM;
    EVP_EncodeBlock((unsigned char *)accept, md, SHA_DIGEST_LENGTH);
    accept[MCL_WS_ACCEPT_LEN] = '\0';
    return 0;
}

void metricast__ws_request(mcl_sbuf_t *out, const char *hostport, const char *target,
                           const char *key, const char *token) {
    metricast__sb_printf(out,
                         "GET %s HTTP/1.1\r\n"
                         "Host: %s\r\n"
                         "Upgrade: websocket\r\n"
                         "Connection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\n"
                         "User-Agent: libmetricast/" METRICAST_LIB_VERSION "\r\n",
                         target, hostport, key);
    if (token && *token) metricast__sb_printf(out, "Authorization: Bearer %s\r\n", token);
    metricast__sb_puts(out, "\r\n");
}

int metricast__ws_check_response(const mcl_http_head_t *h, const char *key, char *err,
                                 size_t errlen) {
    char dummy[1];
    if (!err) err = dummy, errlen = sizeof dummy;
    if (h->status != 101) {
        snprintf(err, errlen, "the hub refused the WebSocket upgrade with HTTP %d", h->status);
        return h->status == 401 ? -EACCES : h->status == 403 ? -EPERM : -EPROTO;
    }
    if (!h->upgrade_websocket || !h->conn_upgrade) {
        snprintf(err, errlen, "101 answer without Upgrade: websocket / Connection: upgrade");
        return -EPROTO;
    }
    char want[MCL_WS_ACCEPT_LEN + 1];
    int rc = metricast__ws_accept(key, want);
    if (rc < 0) {
        snprintf(err, errlen, "cannot compute Sec-WebSocket-Accept");
        return rc;
    }
    if (strcmp(h->ws_accept, want) != 0) {
        snprintf(err, errlen, "wrong Sec-WebSocket-Accept from the server (%.40s)", h->ws_accept);
        return -EPROTO;
    }
    return 0;
}

size_t metricast__ws_frame(uint8_t opcode, const uint8_t mask[4], const void *payload,
                           size_t len, uint8_t *out) {
    size_t n = 0;
    out[n++] = (uint8_t)(0x80 | (opcode & 0x0F));
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + n, mask, 4);
    n += 4;
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++) out[n + i] = p[i] ^ mask[i & 3];
    return n + len;
}
