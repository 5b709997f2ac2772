#include "topic.h"

#include <fnmatch.h>
#include <string.h>

topic_kind_t topic_parse(const char *t) {
    if (!t) return TOPIC_INVALID;
    if (strcmp(t, "metrics") == 0) return TOPIC_METRICS;
    if (strcmp(t, "sources") == 0) return TOPIC_SOURCES;
    if (strcmp(t, "alerts") == 0) return TOPIC_ALERTS;
    if (strcmp(t, "events") == 0) return TOPIC_EVENTS;
    size_t n = strlen(t);
    if (n == 0 || n > TOPIC_MAX_LEN) return TOPIC_INVALID;
    /* module.event: a dot, words on both sides (globs count as word characters) */
    const char *dot = strchr(t, '.');
    if (!dot || dot == t || dot[1] == '\0') return TOPIC_INVALID;
    for (const char *p = t; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                  c == '*' || c == '?';
        if (!ok) return TOPIC_INVALID;
        if (c == '.' && (p[1] == '.' || p[1] == '\0')) return TOPIC_INVALID;
    }
    return TOPIC_PATTERN;
}

bool topic_matches_event(topic_kind_t kind, const char *topic, const char *type) {
    switch (kind) {
    case TOPIC_EVENTS: return true;
    case TOPIC_ALERTS: return strncmp(type, "alert.", 6) == 0;
    case TOPIC_SOURCES: return strncmp(type, "telemetry.connection_", 21) == 0;
    case TOPIC_PATTERN: return fnmatch(topic, type, 0) == 0;
    default: return false;
    }
}
