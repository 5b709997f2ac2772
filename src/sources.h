/* sources — every source the hub has seen (robots, sessions, services): online or not,
 * when it connected and was last heard from, its session attributes. Hub thread only.
 *
 * A source is online while one of its source sessions (a WebSocket that said hello or
 * came with ?source=) is connected; a newer session of the same id replaces the older
 * one. Coming online and going offline publish telemetry.connection_established and
 * telemetry.connection_closed (the `sources` topic carries those). */
#ifndef MC_SOURCES_H
#define MC_SOURCES_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

#define SOURCE_ID_MAX 128

typedef struct source_info {
    char id[SOURCE_ID_MAX + 1];
    bool online;
    double connected_at, last_seen, disconnected_at;
    char session_id[40];
    char *attrs; /* JSON object text (owned), "{}" when none */
    uint32_t attempts; /* sessions seen for this id */
    bool builtin;      /* the hub's own (the host source): online while the hub runs */
} source_info_t;

typedef struct sources {
    source_info_t **slots; /* by id hash, linear probing */
    uint32_t cap, n;
    uint32_t online;
} sources_t;

void sources_init(sources_t *s);
void sources_free(sources_t *s);
source_info_t *sources_find(const sources_t *s, const char *id);
/* Before a session of id comes online with at most max sources known: 0 when id is known
 * or there is room (made, if need be, by forgetting the source offline the longest), or
 * -ENOSPC when all max are online. */
int sources_make_room(sources_t *s, const char *id, uint32_t max);
/* A session came online: returns its attempt number (1 for the first), 0 on ENOMEM.
 * attrs: JSON object text (copied). */
uint32_t sources_online(sources_t *s, const char *id, const char *session_id, const char *attrs,
                        double now);
/* A session ended: the source goes offline unless a newer session holds it. Returns
 * whether this session was the current one. */
bool sources_offline(sources_t *s, const char *id, const char *session_id, double now);
/* A source the hub runs itself (the host source): online until the hub stops; a session
 * that says hello under its id cannot take it offline or replace its attrs. attrs: JSON
 * object text (copied). 0 or -ENOMEM. */
int sources_builtin(sources_t *s, const char *id, const char *attrs, double now);
void sources_seen(sources_t *s, const char *id, double now);
/* {"sources":[...],"online":N,"count":N} */
int sources_json(const sources_t *s, buf_t *b);
/* One source as an object of an array being written; hub: the hub holding it (a
 * cluster's listing), NULL to leave the field out. */
struct jsonw;
void sources_entry_json(struct jsonw *w, const source_info_t *si, const char *hub);
/* One source as a JSON object. */
void sources_one_json(const source_info_t *si, buf_t *b);
/* Valid id: 1..128 of [A-Za-z0-9_.:-]. */
bool sources_id_valid(const char *id);

#endif
