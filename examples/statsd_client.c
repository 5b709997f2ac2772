/* statsd_client — libmetricast's StatsD client in a few lines.
 *
 *   cc statsd_client.c $(pkg-config --cflags --libs metricast) -o statsd_client
 *   ./statsd_client [HOST [PORT]]        (default 127.0.0.1 8125)
 *
 * Sends a counter, gauges, a timer and a set for a second, then prints what the
 * client sent and what it could not. Calls never wait for the network: lines are packed
 * into datagrams of at most 1432 bytes, sent when one is full, every flush interval by
 * the client's own thread, and at close. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <metricast.h>

int main(int argc, char **argv) {
    metricast_statsd_options_t opts;
    metricast_statsd_options_init(&opts);
    if (argc > 1) opts.host = argv[1];
    if (argc > 2) opts.port = (unsigned)atoi(argv[2]);
    opts.prefix = "example.";
    const char *const service_tags[] = {"service:checkout", NULL};
    opts.tags = service_tags;       /* added to every line (DogStatsD tags) */
    opts.flush_interval_ms = 500;

    char err[METRICAST_ERR_LEN];
    metricast_statsd_t *statsd;
    int rc = metricast_statsd_open(&statsd, &opts, err);
    if (rc < 0) {
        fprintf(stderr, "statsd_client: %s\n", err);
        return 1;
    }
    const char *const ok[] = {"status:200", NULL};
    for (int i = 0; i < 20; i++) {
        metricast_statsd_count(statsd, "orders", 1, 1.0, ok);          /* orders:1|c */
        metricast_statsd_timing(statsd, "latency_ms", 20 + i % 7, 0.5, NULL); /* sampled 50 % */
        metricast_statsd_gauge(statsd, "queue_depth", i % 10, NULL);   /* absolute */
        metricast_statsd_gauge_delta(statsd, "workers", i % 2 ? 1 : -1, NULL); /* +1 / -1 */
        metricast_statsd_set(statsd, "customers", i % 3 ? "alice" : "bob", NULL);
        usleep(50 * 1000);
    }
    metricast_statsd_stats_t st;
    metricast_statsd_stats(statsd, &st);
    metricast_statsd_close(statsd); /* sends what is left */
    printf("lines %llu, datagrams %llu, sampled out %llu, dropped datagrams %llu\n",
           (unsigned long long)st.lines, (unsigned long long)st.datagrams,
           (unsigned long long)st.sampled_out, (unsigned long long)st.dropped_datagrams);
    return 0;
}
