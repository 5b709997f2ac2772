#include "ws_msg.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "conn.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "ws.h"

/* Topic names are short identifiers or event-type patterns; this bounds what we echo. */
#define TOPIC_MAX 128

bool ws_msg_topic_known(const char *topic) {
    /* No topic is served yet: metrics, sources, alerts, events and event-type patterns
     * are registered by the streaming and events modules as they are built. */
    (void)topic;
    return false;
}

static void send_json(conn_t *c, buf_t *b) {
    if (b->data) ws_send_text(c, b->data, b->len);
}

void ws_msg_error(conn_t *c, const char *error, const char *detail) {
    buf_t b = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &b);
    jsonw_obj_open(&w);
    jsonw_kv_str(&w, "type", "error");
    jsonw_kv_str(&w, "error", error);
    jsonw_kv_str(&w, "detail", detail);
    char ts[CLK_ISO_LEN];
    clk_iso8601(clk_unix(), ts);
    jsonw_kv_str(&w, "timestamp", ts);
    jsonw_obj_close(&w);
    send_json(c, &b);
    buf_free(&b);
    ws_bad_message(c);
}

static void reply_pong(conn_t *c) {
    char ts[CLK_ISO_LEN], msg[96];
    clk_iso8601(clk_unix(), ts);
    int n = snprintf(msg, sizeof msg, "{\"type\":\"pong\",\"timestamp\":\"%s\"}", ts);
    ws_send_text(c, msg, (size_t)n);
}

/* Checks every topic; answers the first unknown one. Returns 0 if all are served. */
static int check_topic(conn_t *c, const char *t) {
    char detail[TOPIC_MAX + 64];
    if (!*t || strlen(t) > TOPIC_MAX) {
        ws_msg_error(c, "bad_topic", "a topic is a non-empty name of at most 128 characters");
        return -1;
    }
    if (!ws_msg_topic_known(t)) {
        snprintf(detail, sizeof detail, "no such topic: %s", t);
        ws_msg_error(c, "unknown_topic", detail);
        return -1;
    }
    return 0;
}

static void handle_subscription(conn_t *c, json_t *root, bool subscribe) {
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_array(topics) || json_array_size(topics) == 0) {
        ws_msg_error(c, "bad_message", "\"topics\" must be a non-empty array of strings");
        return;
    }
    size_t i;
    json_t *t;
    json_array_foreach(topics, i, t) {
        if (!json_is_string(t)) {
            ws_msg_error(c, "bad_message", "\"topics\" must be a non-empty array of strings");
            return;
        }
        if (check_topic(c, json_string_value(t)) < 0) return;
    }
    (void)subscribe; /* every topic is known here once topics exist: see ws_msg_topic_known */
}

void ws_msg_handle(conn_t *c, const char *msg, size_t len) {
    json_error_t jerr;
    json_t *root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char detail[256];
        snprintf(detail, sizeof detail, "invalid JSON at position %d: %s", jerr.position,
                 jerr.text);
        ws_msg_error(c, "bad_json", detail);
        return;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!json_is_object(root) || !type) {
        ws_msg_error(c, "bad_message", "a message is a JSON object with a string \"type\"");
    } else if (strcmp(type, "ping") == 0) {
        reply_pong(c);
    } else if (strcmp(type, "subscribe") == 0) {
        handle_subscription(c, root, true);
    } else if (strcmp(type, "unsubscribe") == 0) {
        handle_subscription(c, root, false);
    } else {
        char detail[TOPIC_MAX + 64];
        snprintf(detail, sizeof detail, "unknown message type: %.*s", TOPIC_MAX, type);
        ws_msg_error(c, "unknown_type", detail);
    }
    json_decref(root);
}

int ws_msg_open(conn_t *c, const char *query) {
    char topics[1024];
    if (!http_query_param(query, "topics", topics, sizeof topics) || !*topics) return 0;
    char *save = NULL;
    for (char *t = strtok_r(topics, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (check_topic(c, t) < 0) break;
    return 0;
}

void ws_msg_close(conn_t *c) { (void)c; }
