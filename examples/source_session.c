/* source_session — a robot talking to the hub as a WebSocket source session.
 *
 *   cc source_session.c $(pkg-config --cflags --libs metricast) -o source_session
 *   ./source_session [URL [SOURCE_ID [SECONDS]]]   (default http://127.0.0.1:9750 robot_042 10)
 *
 * The session says hello with the robot's attributes, sends its gauges once a second,
 * publishes one event, and prints what the hub tells it: its per-session metrics, flow
 * status changes (backpressure / streaming) and the event's ack. Connecting, reconnecting
 * and slowing down under backpressure happen on the session's own thread. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <metricast.h>

static void on_event(metricast_source_t *s, const metricast_source_event_t *ev, void *user) {
    (void)s;
    (void)user;
    switch (ev->kind) {
    case METRICAST_SOURCE_CONNECTED:
        printf("connected (session %u)\n", ev->conn.attempt);
        break;
    case METRICAST_SOURCE_DISCONNECTED:
        printf("disconnected: %s; retrying in %u ms\n", ev->conn.detail, ev->conn.retry_in_ms);
        break;
    case METRICAST_SOURCE_METRICS:
        printf("hub: session %s received %llu, queue %u/%u, realtime factor %.4f\n",
               ev->metrics->session_id, (unsigned long long)ev->metrics->received,
               ev->metrics->queue_depth, ev->metrics->queue_capacity,
               ev->metrics->realtime_factor);
        break;
    case METRICAST_SOURCE_STATUS:
        printf("hub: %s (retry after %u ms)\n", ev->status.state, ev->status.retry_after_ms);
        break;
    case METRICAST_SOURCE_ACK:
        if (ev->err == 0)
            printf("event %s stored as seq %llu\n", ev->ack.id, (unsigned long long)ev->ack.seq);
        else
            printf("event %s not stored: %s\n", ev->ack.id, metricast_strerror(ev->err));
        break;
    case METRICAST_SOURCE_ERROR:
        printf("hub refused something: %s: %s\n", ev->error.code, ev->error.detail);
        break;
    case METRICAST_SOURCE_MESSAGE:
        break;
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    metricast_source_options_t opts;
    metricast_source_options_init(&opts);
    opts.url = argc > 1 ? argv[1] : "http://127.0.0.1:9750";
    opts.source = argc > 2 ? argv[2] : "robot_042";
    int seconds = argc > 3 ? atoi(argv[3]) : 10;
    opts.attrs_json = "{\"model\":\"rover-m2\",\"site\":\"example\"}";
    opts.token = getenv("METRICAST_TOKEN"); /* NULL when the hub is open */
    opts.on_event = on_event;

    char err[METRICAST_ERR_LEN];
    metricast_source_t *session;
    if (metricast_source_open(&session, &opts, err) < 0) {
        fprintf(stderr, "source_session: %s\n", err);
        return 1;
    }
    if (metricast_source_wait_connected(session, 5000) < 0)
        fprintf(stderr, "source_session: not connected yet; samples wait in the queue\n");
    char id[METRICAST_EVENT_ID_LEN];
    metricast_source_publish(session, "robot.mission_started", "{\"mission\":\"demo\"}", NULL, id);
    double battery = 90;
    for (int i = 0; i < seconds; i++) {
        metricast_metric_t m[] = {{"cpu_usage", 30 + i % 20},
                                  {"battery_percentage", battery -= 0.5}};
        metricast_source_gauges(session, m, 2, 0);
        sleep(1);
    }
    metricast_source_stats_t st;
    metricast_source_stats(session, &st);
    printf("sent %llu messages, dropped %llu, backpressure %llu times\n",
           (unsigned long long)st.sent, (unsigned long long)st.dropped,
           (unsigned long long)st.backpressure_events);
    return metricast_source_close(session) == 0 ? 0 : 1;
}
