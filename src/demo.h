/* demo — `metricastd --demo`: simulated sources that reach the hub the way real ones do,
 * through libmetricast and the daemon's own listening sockets, so a new user sees a
 * living dashboard at once.
 *
 *   robot_001..robot_003  WebSocket source sessions (hello with attrs), gauges at 1 Hz:
 *                         cpu_usage, memory_usage, network_latency_ms (random walks),
 *                         battery_percentage (drains; recharges from 15 % to 95 %), and
 *                         robot.battery_low / robot.charging_* events when it turns
 *   asr_session_01        a streaming-speech session: queue_depth and realtime_factor
 *                         gauges, processing_time_ms timer, audio_seconds counter, its
 *                         own client_metrics, asr.utterance_completed events
 *   fleet_api             a service on StatsD UDP (or, with --statsd off, the same lines
 *                         through POST /api/v1/ingest): request counters by route and
 *                         status, a latency timer, a set of robots served
 *
 * One thread (the demo's) drives them all once a second; each session's own library
 * thread does its network I/O. Nothing here touches hub state: it is a client. */
#ifndef MC_DEMO_H
#define MC_DEMO_H

typedef struct demo demo_t;

/* Starts the demo against http_addr ("127.0.0.1:9750", as bound; a wildcard address is
 * reached through loopback) and statsd_addr ("127.0.0.1:8125" or "off"). token (may be
 * NULL) is sent by every client. stopped(ctx) runs on the demo thread once a requested
 * stop has finished (sessions closed, StatsD flushed). 0 or a negative errno. */
int demo_start(demo_t **out, const char *http_addr, const char *statsd_addr, const char *token,
               void (*stopped)(void *ctx), void *ctx);
/* Any thread, does not wait: the demo closes its sessions and then calls stopped(). */
void demo_request_stop(demo_t *d);
/* Requests a stop if none was, waits for the thread and frees d (NULL is a no-op). */
void demo_free(demo_t *d);

#endif
