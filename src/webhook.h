/* webhook — alert notifications POSTed to HTTP receivers, on a thread of their own.
 *
 * The hub hands a delivery (URL, content type, body, an id) to webhook_post(), which
 * copies it into a bounded queue and wakes the webhook thread; it never waits for the
 * network. The thread runs libcurl's multi interface: many transfers at once, each with a
 * total timeout, so a dead or slow receiver only ever costs this thread's time.
 *
 * Delivery outcome:
 *   2xx                              sent (metricast_webhook_sent_total)
 *   transport error (refused, reset,
 *   timeout), 408, 429, 5xx          retried after backoff(attempt) until `retries` are
 *                                    used up (metricast_webhook_retried_total per retry),
 *                                    then failed (metricast_webhook_failed_total)
 *   any other status (3xx, 4xx)      failed at once: the same request cannot succeed later
 *   queue full                       dropped (metricast_webhook_dropped_total)
 * backoff(n) = min(backoff_max, backoff · 2^(n-1)), of which a random half is waited
 * ("equal jitter"), so receivers that fail together are not retried in lockstep.
 *
 * At webhook_close() deliveries in flight get a short grace (WEBHOOK_CLOSE_GRACE_S) to
 * finish; whatever is left then is abandoned, counted as failed and logged.
 *
 * The body encoders (webhook_body) are pure: they turn an alert transition into the
 * json, slack or alertmanager body. */
#ifndef MC_WEBHOOK_H
#define MC_WEBHOOK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "buf.h"

#define WEBHOOK_CLOSE_GRACE_S 2.0
#define WEBHOOK_MAX_IN_FLIGHT 32

typedef struct webhook_opts {
    double timeout_s;     /* whole transfer, connect included */
    int retries;          /* after the first attempt */
    double backoff_s;     /* before the first retry */
    double backoff_max_s; /* cap */
    uint32_t queue_cap;   /* deliveries queued, waiting to retry or in flight */
    const char *user_agent;
} webhook_opts_t;

typedef struct webhook_counts {
    uint64_t sent, failed, retried, dropped;
    uint64_t pending; /* now */
} webhook_counts_t;

typedef struct webhook webhook_t;

/* Starts the thread (curl_global_init happens here: call from the main thread before
 * other threads use libcurl). 0, or a negative errno with err filled. */
int webhook_open(webhook_t **out, const webhook_opts_t *o, char *err, size_t errlen);
/* Any thread. Copies everything. 0; -ENOBUFS when the queue is full (counted as dropped);
 * -ENOMEM; -ESHUTDOWN after close began. id names the delivery in logs and in the
 * X-Metricast-Delivery header (receivers can deduplicate retries by it). */
int webhook_post(webhook_t *w, const char *url, const char *content_type, const char *body,
                 size_t len, const char *id);
/* Stops the thread (after the grace above) and frees everything. NULL allowed. */
void webhook_close(webhook_t *w);
/* Any thread. All zero for NULL. */
void webhook_counts(webhook_t *w, webhook_counts_t *out);

/* The delay before retry number `attempt` (1-based) given a uniform random u in [0,1). */
double webhook_backoff(const webhook_opts_t *o, int attempt, double u);
/* Whether an attempt that ended with curl result `curl_code` (0 = CURLE_OK) and HTTP
 * status `status` should be retried / counts as delivered. */
bool webhook_retryable(int curl_code, long status);
bool webhook_delivered(int curl_code, long status);

/* ---- bodies --------------------------------------------------------------------------- */

typedef struct webhook_alert {
    const alert_note_t *note;
    const char *envelope;     /* the event envelope JSON (the json style's body) */
    const char *external_url; /* http://host:port of this hub, for links */
} webhook_alert_t;

/* Appends the body for style into b and sets *content_type. 0 or -ENOMEM.
 *   json          the alert.firing / alert.resolved event envelope, as published
 *   slack         an incoming-webhook message: {"text":..., "attachments":[{color, fields}]}
 *   alertmanager  what Alertmanager POSTs to a webhook receiver: version "4", groupKey,
 *                 status, receiver, groupLabels, commonLabels, commonAnnotations,
 *                 externalURL, truncatedAlerts, alerts[] with status, labels
 *                 (alertname, severity, the series' labels), annotations (summary,
 *                 description, value, threshold), startsAt, endsAt, generatorURL,
 *                 fingerprint */
int webhook_body(alert_style_t style, const webhook_alert_t *a, buf_t *b,
                 const char **content_type);

#endif
