/* metricast.h — libmetricast, the C client library of the metricast hub.
 *
 *   1. StatsD (metricast_statsd_*): counters, gauges (absolute and +/- deltas), timers,
 *      histograms, distributions and sets, with sample rates and DogStatsD tags, batched
 *      into UDP datagrams of at most 1432 bytes. Lines go out when a datagram is full,
 *      every flush interval (a background thread) and on metricast_statsd_flush(). The
 *      socket is non-blocking: a call never waits for the network, and what the kernel
 *      refuses is counted, not retried.
 *   2. Source sessions (metricast_source_*): a robot, streaming session or service that
 *      connects to the hub over WebSocket, says `hello` with its attributes, sends
 *      samples, its own client_metrics and events (`publish`, answered by `ack`), and
 *      hears the hub's per-session `metrics` and flow `status`. Each session has its own
 *      thread: it reconnects with exponential backoff and jitter, buffers what the caller
 *      sends in a bounded queue (the oldest samples are dropped and counted when it is
 *      full), and when the hub says `backpressure` it pauses for retry_after_ms, then
 *      sends in small bursts until the hub says `streaming` again.
 *   3. Blocking helpers the `metricast` CLI is built on: one HTTP request
 *      (metricast_http_request) and a plain WebSocket client (metricast_ws_*).
 *
 * Conventions
 *   - Errors: functions return 0 (or a non-negative count) on success and a negative
 *     errno value on failure: -EINVAL (bad argument), -ENOMEM, -ECONNREFUSED, -ETIMEDOUT,
 *     -EACCES (the hub answered 401), -EPERM (403), -EPROTO (the peer broke the
 *     protocol), -ENOTSUP (https:// or wss:// — TLS is not built in), -EMSGSIZE, ... .
 *     metricast_strerror() names each. Where a caller-supplied `err` buffer is taken
 *     (may be NULL), it receives one human-readable line with the details.
 *   - Nothing in the library prints, exits or installs signal handlers; sockets are
 *     written with MSG_NOSIGNAL, so a vanished peer never raises SIGPIPE.
 *   - Strings and arrays passed in are only read during the call (copied where kept),
 *     unless a comment says otherwise. Handles are created by *_open and freed by
 *     *_close; pointers handed to callbacks are valid only during the callback.
 *   - URLs: http://HOST:PORT[/PREFIX] (the hub's base address, default
 *     http://127.0.0.1:9750), or ws://HOST:PORT/PATH for WebSocket helpers. A bare
 *     HOST:PORT means http://. IPv6 hosts in brackets: http://[::1]:9750.
 *   - Tokens: when a token is given, HTTP requests carry `Authorization: Bearer TOKEN`,
 *     WebSocket upgrades carry both that header and `?token=TOKEN`.
 *
 * Link with `pkg-config --cflags --libs metricast` (static: add --static). */
#ifndef METRICAST_H
#define METRICAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(METRICAST_BUILDING) && defined(__GNUC__)
#define METRICAST_API __attribute__((visibility("default")))
#else
#define METRICAST_API
#endif

/* The version of this header; metricast_version() is the library's. */
#define METRICAST_HEADER_VERSION "0.1.0"

/* Largest StatsD datagram the client builds: fits one Ethernet frame (1500) minus IP and
 * UDP headers with room for tunnels, as the Etsy and DogStatsD clients advise. */
#define METRICAST_STATSD_MAX_DATAGRAM 1432

#define METRICAST_ERR_LEN 256    /* size of the `err` buffers below */
#define METRICAST_EVENT_ID_LEN 96 /* room for an event id "evt_<module>_<ms>_<6>" + NUL */

METRICAST_API const char *metricast_version(void);
/* Text for a negative error code of this library (never NULL; static storage). */
METRICAST_API const char *metricast_strerror(int err);

/* ======================================================================================
 * 1. StatsD
 * ======================================================================================
 * Thread-safety: every metricast_statsd_* call may be made from any thread on the same
 * handle (one mutex guards the datagram being built); only metricast_statsd_close()
 * must not race with the others. */

typedef struct metricast_statsd metricast_statsd_t;

typedef struct metricast_statsd_options {
    const char *host;            /* "127.0.0.1"; resolved once, in metricast_statsd_open */
    unsigned port;               /* 8125 */
    const char *prefix;          /* prepended to every name, e.g. "myapp." (NULL: none) */
    const char *const *tags;     /* NULL-terminated "key:value" (or "key") tags added to
                                    every line (NULL: none); copied */
    size_t max_datagram;         /* 1432: bytes per datagram, 64..1432 */
    unsigned flush_interval_ms;  /* 1000: a background thread sends what waits this long;
                                    0: no thread, lines go out when a datagram is full
                                    or on metricast_statsd_flush() */
    uint64_t sample_seed;        /* 0: random; else a fixed seed for the sampling draw */
} metricast_statsd_options_t;

typedef struct metricast_statsd_stats {
    uint64_t lines;             /* lines accepted into a datagram */
    uint64_t sampled_out;       /* lines skipped by their sample rate (not losses) */
    uint64_t invalid;           /* calls refused with -EINVAL or -EMSGSIZE */
    uint64_t datagrams;         /* datagrams the kernel took */
    uint64_t bytes;             /* their payload bytes */
    uint64_t dropped_datagrams; /* datagrams the kernel refused (buffer full, no route,
                                   port unreachable): never retried */
    uint64_t dropped_lines;     /* the lines in those */
    int last_error;             /* the latest send error (negative errno), or 0 */
} metricast_statsd_stats_t;

METRICAST_API void metricast_statsd_options_init(metricast_statsd_options_t *o);
/* Opens a UDP socket towards host:port (NULL options: all defaults). *out is the new
 * handle, owned by the caller until metricast_statsd_close. 0, -EINVAL, -ENOMEM, or a
 * resolver error as -EHOSTUNREACH (err says which). */
METRICAST_API int metricast_statsd_open(metricast_statsd_t **out,
                                        const metricast_statsd_options_t *o,
                                        char err[METRICAST_ERR_LEN]);

/* Each of these encodes one line and adds it to the datagram being built (sending the
 * previous datagram first when the line does not fit). `tags` is a NULL-terminated list
 * of "key:value" strings (NULL: none), added after the handle's own tags. `rate` in
 * (0, 1] samples the call (the line goes out with probability rate, marked @rate, and
 * the hub scales it back); 1 or 0 means every call. Returns 0 (also when sampled out),
 * -EINVAL (a name or tag with ':', '|', '@', '#', ',' or a newline where it cannot
 * be, an empty name, a value that is not finite, a rate outside (0, 1]) or -EMSGSIZE
 * (the line alone is longer than a datagram). Never a network error. */
METRICAST_API int metricast_statsd_count(metricast_statsd_t *c, const char *name, double value,
                                         double rate, const char *const *tags);
/* Absolute value. A negative value is sent the StatsD way, as "0|g" then "-v|g" in the
 * same datagram, since a leading sign means a delta on the wire. */
METRICAST_API int metricast_statsd_gauge(metricast_statsd_t *c, const char *name, double value,
                                         const char *const *tags);
/* Moves the gauge by delta ("+3|g", "-3|g"). */
METRICAST_API int metricast_statsd_gauge_delta(metricast_statsd_t *c, const char *name,
                                               double delta, const char *const *tags);
METRICAST_API int metricast_statsd_timing(metricast_statsd_t *c, const char *name, double ms,
                                          double rate, const char *const *tags);
METRICAST_API int metricast_statsd_histogram(metricast_statsd_t *c, const char *name,
                                             double value, double rate,
                                             const char *const *tags);
METRICAST_API int metricast_statsd_distribution(metricast_statsd_t *c, const char *name,
                                                double value, double rate,
                                                const char *const *tags);
/* Counts `member` (any text without '|', '#', or a newline) in the set `name`. */
METRICAST_API int metricast_statsd_set(metricast_statsd_t *c, const char *name,
                                       const char *member, const char *const *tags);
/* Sends the datagram being built now. 0, or the send error (also counted as a drop). */
METRICAST_API int metricast_statsd_flush(metricast_statsd_t *c);
METRICAST_API void metricast_statsd_stats(metricast_statsd_t *c, metricast_statsd_stats_t *out);
/* Flushes, stops the flusher thread, closes the socket and frees c (NULL is a no-op). */
METRICAST_API void metricast_statsd_close(metricast_statsd_t *c);

/* ======================================================================================
 * 2. Source sessions
 * ======================================================================================
 * Thread-safety: the sending calls (gauges, samples, statsd, client_metrics, publish)
 * and stats/wait_connected may be called from any thread at once; each copies what it
 * sends into the session's queue and returns without touching the network. The event
 * callback runs on the session's own thread, one call at a time: keep it short, and
 * never call metricast_source_close() from it (that would wait for itself; every other
 * call is allowed there). */

typedef struct metricast_source metricast_source_t;

typedef enum metricast_kind {
    METRICAST_GAUGE = 0,
    METRICAST_COUNTER,
    METRICAST_TIMER,
    METRICAST_HISTOGRAM,
    METRICAST_SET,
} metricast_kind_t;

/* A name and a number: gauges, and the values of client_metrics. */
typedef struct metricast_metric {
    const char *name;
    double value;
} metricast_metric_t;

/* One sample of any kind. */
typedef struct metricast_sample {
    const char *name;
    metricast_kind_t kind;
    double value;               /* ignored for sets */
    const char *member;         /* sets: the member */
    const char *const *labels;  /* NULL-terminated "key:value" labels, or NULL */
    double sample_rate;         /* 0 or 1: unsampled; else (0, 1) */
    int delta;                  /* gauges: value moves the gauge instead of setting it */
} metricast_sample_t;

/* The hub's once-a-second figures for this session (its `metrics` message). */
typedef struct metricast_session_metrics {
    char session_id[64];
    uint32_t attempt_id;        /* how many sessions this source has had, this one included */
    uint32_t queue_depth, queue_capacity;
    double fill_ratio;          /* of the hub's inbound queue for this session */
    double avg_processing_ms;
    double backlog_ms;
    double realtime_factor;
    uint64_t received, processed, dropped; /* dropped: shed by the hub */
} metricast_session_metrics_t;

typedef enum metricast_source_event_kind {
    METRICAST_SOURCE_CONNECTED = 1, /* upgraded and `hello` queued: conn.attempt */
    METRICAST_SOURCE_DISCONNECTED,  /* lost, refused or failed to connect: err, conn.* */
    METRICAST_SOURCE_METRICS,       /* the hub's per-session metrics: metrics */
    METRICAST_SOURCE_STATUS,        /* flow state changed: status */
    METRICAST_SOURCE_ACK,           /* a publish is stored (err 0) or is not (err < 0): ack */
    METRICAST_SOURCE_ERROR,         /* the hub refused something sent: error */
    METRICAST_SOURCE_MESSAGE,       /* any other message (json) */
} metricast_source_event_kind_t;

typedef struct metricast_source_event {
    metricast_source_event_kind_t kind;
    const char *json; /* the message as received, NUL-terminated; NULL when there is none */
    int err;          /* DISCONNECTED: the cause; ACK: 0 or negative */
    struct {
        uint32_t attempt;        /* connections made so far, this one included */
        uint16_t close_code;     /* DISCONNECTED after a close frame: its code, else 0 */
        const char *close_reason; /* its reason ("" if none) */
        uint32_t retry_in_ms;    /* DISCONNECTED: delay before the next attempt */
        const char *detail;      /* one line: what failed */
    } conn;
    const metricast_session_metrics_t *metrics;
    struct {
        const char *state;      /* "backpressure" or "streaming" (or the hub's word) */
        double fill_ratio;
        uint32_t queue_depth;
        uint64_t dropped;
        uint32_t retry_after_ms; /* backpressure: how long the session now pauses */
        const char *message;
    } status;
    struct {
        const char *id;   /* the event id metricast_source_publish returned */
        uint64_t seq;     /* the hub's seq (0 when err < 0) */
    } ack;
    struct {
        const char *code;   /* e.g. "bad_sample", "bad_event" */
        const char *detail;
    } error;
} metricast_source_event_t;

typedef void (*metricast_source_cb)(metricast_source_t *s, const metricast_source_event_t *ev,
                                    void *user);

typedef struct metricast_source_options {
    const char *url;              /* "http://127.0.0.1:9750" (base) or "ws://host:port/ws" */
    const char *source;           /* required: 1-128 of [A-Za-z0-9_.:-] */
    const char *attrs_json;       /* a JSON object sent in `hello` (NULL: none); copied */
    const char *token;            /* NULL: none */
    size_t queue_messages;        /* 1024: messages waiting to be sent, at most */
    size_t queue_bytes;           /* 1 MiB: their bytes, at most */
    unsigned connect_timeout_ms;  /* 5000: TCP connect + upgrade */
    unsigned reconnect_min_ms;    /* 200: first retry delay; doubles per failure ... */
    unsigned reconnect_max_ms;    /* 30000: ... up to this; each delay drawn in [d/2, d] */
    unsigned backpressure_burst;  /* 16: messages per retry_after_ms while the hub says
                                     backpressure (after the first full pause) */
    unsigned idle_timeout_ms;     /* 15000: nothing heard from the hub this long (it sends
                                     metrics every second): reconnect. 0: never */
    unsigned linger_ms;           /* 2000: metricast_source_close sends what is queued
                                     for at most this long */
    metricast_source_cb on_event; /* NULL: none */
    void *user;                   /* passed to on_event */
} metricast_source_options_t;

typedef struct metricast_source_stats {
    int connected;                /* 1 while a session is up */
    uint32_t connects;            /* sessions established */
    uint32_t connect_failures;    /* attempts that failed, and sessions lost */
    uint64_t queued, queued_bytes; /* waiting in the session's queue now */
    uint64_t sent, sent_bytes;    /* messages handed to the socket */
    uint64_t dropped;             /* samples lost on this side: queue full (oldest first),
                                     on the wire when a connection broke, unsent at close */
    uint64_t publishes, acks, publish_failures;
    int backpressure;             /* 1 while the hub says backpressure */
    uint64_t backpressure_events; /* `backpressure` statuses received */
    uint32_t last_retry_after_ms;
    uint64_t paused_ms;           /* total time spent holding samples back for the hub */
    metricast_session_metrics_t hub; /* the latest per-session metrics */
    int last_error;
} metricast_source_stats_t;

METRICAST_API void metricast_source_options_init(metricast_source_options_t *o);
/* Validates o, copies it and starts the session's thread, which connects in the
 * background (this call does not wait for the network). 0, -EINVAL (err says which
 * option), -ENOTSUP (TLS URL), -ENOMEM, or a thread error. */
METRICAST_API int metricast_source_open(metricast_source_t **out,
                                        const metricast_source_options_t *o,
                                        char err[METRICAST_ERR_LEN]);
/* Waits until a session is up. 0, or -ETIMEDOUT. */
METRICAST_API int metricast_source_wait_connected(metricast_source_t *s, int timeout_ms);
/* Gauges: {"type":"sample","metrics":{name:value,...},"timestamp":t} (t <= 0: none).
 * Returns 0 or -EINVAL (no metrics, an empty or invalid name, a value not finite). A full
 * queue drops its oldest sample to make room (counted in stats.dropped). */
METRICAST_API int metricast_source_gauges(metricast_source_t *s, const metricast_metric_t *m,
                                          size_t n, double timestamp);
/* Samples of any kind: {"type":"sample","samples":[...]}. As above. */
METRICAST_API int metricast_source_samples(metricast_source_t *s, const metricast_sample_t *v,
                                           size_t n, double timestamp);
/* StatsD lines as one text frame (the hub parses them like UDP datagrams). */
METRICAST_API int metricast_source_statsd(metricast_source_t *s, const char *lines);
/* The client's own statistics: stored by the hub labelled client=<session_id>. */
METRICAST_API int metricast_source_client_metrics(metricast_source_t *s,
                                                  const metricast_metric_t *m, size_t n);
/* Publishes an event of `type` ("<module>.<event>", lower-case [a-z0-9_]) with
 * payload_json (an object; NULL: {}) and an optional correlation id. The id is made
 * here and written to id_out (may be NULL); METRICAST_SOURCE_ACK with that id follows
 * once the hub has stored it (err < 0: refused, or the connection broke before the ack
 * and the outcome is unknown). Events are never dropped to make room: with the queue
 * full this returns -ENOBUFS. */
METRICAST_API int metricast_source_publish(metricast_source_t *s, const char *type,
                                           const char *payload_json,
                                           const char *correlation_id,
                                           char id_out[METRICAST_EVENT_ID_LEN]);
METRICAST_API void metricast_source_stats(metricast_source_t *s, metricast_source_stats_t *out);
/* Sends what is queued (for at most linger_ms), closes the session with 1000, stops the
 * thread and frees s (NULL is a no-op). 0, or -ETIMEDOUT when queued samples had to be
 * left unsent (counted as dropped). */
METRICAST_API int metricast_source_close(metricast_source_t *s);

/* ======================================================================================
 * 3. Blocking helpers: one HTTP request, a plain WebSocket client
 * ======================================================================================
 * Both block the calling thread for at most their timeout. A metricast_ws_t is used by
 * one thread at a time. */

typedef struct metricast_http_response {
    int status;          /* e.g. 200, 202, 404 */
    char *body;          /* NUL-terminated (the NUL is not counted in body_len); owned:
                            freed by metricast_http_response_free */
    size_t body_len;
    char content_type[128];
} metricast_http_response_t;

/* One request on a fresh connection: method (GET, POST, ...) to base_url + path (path
 * starts with '/' and may carry a query; its characters are sent as given). body may be
 * NULL. Answers of any status are success (0) with *resp filled; the caller frees it.
 * Errors: -ECONNREFUSED (nothing listens), -ETIMEDOUT, -EPROTO (not HTTP, or a body
 * over 64 MiB), -ENOTSUP, -EINVAL, -ENOMEM; err says more. */
METRICAST_API int metricast_http_request(const char *base_url, const char *method,
                                         const char *path, const char *token,
                                         const char *content_type, const char *body,
                                         size_t body_len, int timeout_ms,
                                         metricast_http_response_t *resp,
                                         char err[METRICAST_ERR_LEN]);
METRICAST_API void metricast_http_response_free(metricast_http_response_t *r);

typedef struct metricast_ws metricast_ws_t;

/* Connects and upgrades. url: a ws:// URL with its path (ws://127.0.0.1:9750/ws?topics=x),
 * or an http:// base to which "/ws" is appended (its query kept). The server's
 * Sec-WebSocket-Accept is verified. 0, -ECONNREFUSED, -ETIMEDOUT, -EACCES (401),
 * -EPERM (403), -EPROTO (anything but a valid 101), -ENOTSUP, -EINVAL, -ENOMEM. */
METRICAST_API int metricast_ws_open(metricast_ws_t **out, const char *url, const char *token,
                                    int timeout_ms, char err[METRICAST_ERR_LEN]);
/* Sends one text message (must be UTF-8). 0, -EPIPE (closed), -ETIMEDOUT, -ENOMEM. */
METRICAST_API int metricast_ws_send_text(metricast_ws_t *ws, const char *text, size_t len,
                                         int timeout_ms);
/* Waits for the next text message: *msg (NUL-terminated, owned by the caller: free()),
 * *len. Pings are answered meanwhile. 0; -ETIMEDOUT (nothing within timeout_ms; the
 * connection is still usable); -ECONNRESET once the connection is closed or broken
 * (metricast_ws_close_info tells the close frame's code and reason, if one came). */
METRICAST_API int metricast_ws_recv(metricast_ws_t *ws, char **msg, size_t *len,
                                    int timeout_ms);
/* The close frame the server sent: its code (0: none yet) and reason ("" if none). */
METRICAST_API uint16_t metricast_ws_close_info(metricast_ws_t *ws, const char **reason);
/* Sends a close frame (code 0: 1000) if the connection is still open, waits up to
 * timeout_ms for the server's, and frees ws (NULL is a no-op). */
METRICAST_API void metricast_ws_close(metricast_ws_t *ws, uint16_t code, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
