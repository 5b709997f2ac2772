/* metricast_version, metricast_strerror */
#include <errno.h>
#include <string.h>

#include "metricast.h"

const char *metricast_version(void) { return METRICAST_LIB_VERSION; }

const char *metricast_strerror(int err) {
    switch (err) {
    case 0: return "success";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -ECONNREFUSED: return "connection refused (is the hub running?)";
    case -ETIMEDOUT: return "timed out";
    case -EACCES: return "unauthorized: the hub wants a valid token (401)";
    case -EPERM: return "forbidden: the token lacks the scope (403)";
    case -EPROTO: return "protocol error: the peer did not speak HTTP/WebSocket as expected";
    case -ENOTSUP: return "not supported (TLS URLs need a TLS-terminating proxy)";
    case -EMSGSIZE: return "message too long for one datagram";
    case -ENOBUFS: return "queue full";
    case -ECONNRESET: return "connection closed";
    case -EPIPE: return "connection closed";
    case -EHOSTUNREACH: return "host not found or unreachable";
    case -ECANCELED: return "cancelled";
    default: break;
    }
    /* strerror is not thread-safe for unknown codes on every libc; glibc's is for known
     * ones, which is all an errno value from the kernel can be */
    return err < 0 ? strerror(-err) : "unknown error";
}
