#include "clock.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

double clk_unix(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t clk_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t clk_iso8601(double t, char out[CLK_ISO_LEN]) {
    double whole = floor(t);
    int ms = (int)((t - whole) * 1000.0);
    if (ms > 999) ms = 999;
    time_t secs = (time_t)whole;
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(out, CLK_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return n > 0 ? (size_t)n : 0;
}
