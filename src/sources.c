#include "sources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "jsonw.h"

void sources_init(sources_t *s) { memset(s, 0, sizeof *s); }

void sources_free(sources_t *s) {
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->slots[i]) {
            free(s->slots[i]->attrs);
            free(s->slots[i]);
        }
    free(s->slots);
    memset(s, 0, sizeof *s);
}

bool sources_id_valid(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > SOURCE_ID_MAX) return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

source_info_t *sources_find(const sources_t *s, const char *id) {
    if (!s->cap) return NULL;
    uint32_t j = (uint32_t)hash_bytes(id, strlen(id), 3) & (s->cap - 1);
    for (; s->slots[j]; j = (j + 1) & (s->cap - 1))
        if (strcmp(s->slots[j]->id, id) == 0) return s->slots[j];
    return NULL;
}

static source_info_t *get_or_add(sources_t *s, const char *id) {
    source_info_t *si = sources_find(s, id);
    if (si) return si;
    if ((s->n + 1) * 4 > s->cap * 3) {
        uint32_t ncap = s->cap ? s->cap * 2 : 64;
        source_info_t **ns = calloc(ncap, sizeof *ns);
        if (!ns) return NULL;
        for (uint32_t i = 0; i < s->cap; i++) {
            if (!s->slots[i]) continue;
            uint32_t j = (uint32_t)hash_bytes(s->slots[i]->id, strlen(s->slots[i]->id), 3) &
                         (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    si = calloc(1, sizeof *si);
    if (!si) return NULL;
    snprintf(si->id, sizeof si->id, "%s", id);
    uint32_t j = (uint32_t)hash_bytes(id, strlen(id), 3) & (s->cap - 1);
    while (s->slots[j]) j = (j + 1) & (s->cap - 1);
    s->slots[j] = si;
    s->n++;
    return si;
}

int sources_builtin(sources_t *s, const char *id, const char *attrs, double now) {
    if (!sources_online(s, id, "builtin", attrs, now)) return -ENOMEM;
    sources_find(s, id)->builtin = true;
    return 0;
}

uint32_t sources_online(sources_t *s, const char *id, const char *session_id, const char *attrs,
                        double now) {
    source_info_t *si = get_or_add(s, id);
    if (!si) return 0;
    if (si->builtin) return ++si->attempts; /* the hub's own source stays as it is */
    char *a = strdup(attrs && *attrs ? attrs : "{}");
    if (!a) return 0;
    free(si->attrs);
    si->attrs = a;
    if (!si->online) s->online++;
    si->online = true;
    si->connected_at = si->last_seen = now;
    snprintf(si->session_id, sizeof si->session_id, "%s", session_id);
    return ++si->attempts;
}

bool sources_offline(sources_t *s, const char *id, const char *session_id, double now) {
    source_info_t *si = sources_find(s, id);
    if (!si || !si->online || si->builtin || strcmp(si->session_id, session_id) != 0) return false;
    si->online = false;
    si->disconnected_at = now;
    s->online--;
    return true;
}

/* Empties slot j of the linear-probing table, shifting later entries of its cluster back
 * so every lookup still finds them (no tombstones). */
static void remove_slot(sources_t *s, uint32_t j) {
    free(s->slots[j]->attrs);
    free(s->slots[j]);
    s->slots[j] = NULL;
    s->n--;
    for (uint32_t k = (j + 1) & (s->cap - 1); s->slots[k]; k = (k + 1) & (s->cap - 1)) {
        uint32_t home =
            (uint32_t)hash_bytes(s->slots[k]->id, strlen(s->slots[k]->id), 3) & (s->cap - 1);
        /* move k back to j unless its home lies cyclically in (j, k] */
        bool stays = j <= k ? (home > j && home <= k) : (home > j || home <= k);
        if (stays) continue;
        s->slots[j] = s->slots[k];
        s->slots[k] = NULL;
        j = k;
    }
}

int sources_make_room(sources_t *s, const char *id, uint32_t max) {
    if (s->n < max || sources_find(s, id)) return 0;
    int64_t oldest = -1;
    for (uint32_t i = 0; i < s->cap; i++) {
        const source_info_t *si = s->slots[i];
        if (si && !si->online &&
            (oldest < 0 || si->disconnected_at < s->slots[oldest]->disconnected_at))
            oldest = i;
    }
    if (oldest < 0) return -ENOSPC;
    remove_slot(s, (uint32_t)oldest);
    return 0;
}

void sources_seen(sources_t *s, const char *id, double now) {
    source_info_t *si = sources_find(s, id);
    if (si && now > si->last_seen) si->last_seen = now;
}

static void one_in(jsonw_t *w, const source_info_t *si, const char *hub) {
    char ts[CLK_ISO_LEN];
    jsonw_obj_open(w);
    jsonw_kv_str(w, "id", si->id);
    if (hub) jsonw_kv_str(w, "hub", hub);
    jsonw_kv_str(w, "status", si->online ? "online" : "offline");
    jsonw_kv_bool(w, "online", si->online);
    clk_iso8601(si->connected_at, ts);
    jsonw_kv_str(w, "connected_at", ts);
    clk_iso8601(si->last_seen, ts);
    jsonw_kv_str(w, "last_seen", ts);
    if (!si->online) {
        clk_iso8601(si->disconnected_at, ts);
        jsonw_kv_str(w, "disconnected_at", ts);
    }
    jsonw_kv_str(w, "session_id", si->session_id);
    jsonw_kv_uint(w, "attempts", si->attempts);
    jsonw_key(w, "attrs");
    jsonw_raw(w, si->attrs ? si->attrs : "{}", si->attrs ? strlen(si->attrs) : 2);
    jsonw_obj_close(w);
}

static void one(jsonw_t *w, const source_info_t *si) { one_in(w, si, NULL); }

void sources_entry_json(jsonw_t *w, const source_info_t *si, const char *hub) {
    one_in(w, si, hub);
}

void sources_one_json(const source_info_t *si, buf_t *b) {
    jsonw_t w;
    jsonw_init(&w, b);
    one(&w, si);
}

static int cmp_id(const void *a, const void *b) {
    return strcmp((*(source_info_t *const *)a)->id, (*(source_info_t *const *)b)->id);
}

int sources_json(const sources_t *s, buf_t *b) {
    source_info_t **v = malloc((s->n ? s->n : 1) * sizeof *v);
    if (!v) return -ENOMEM;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->slots[i]) v[n++] = s->slots[i];
    qsort(v, n, sizeof *v, cmp_id);
    jsonw_t w;
    jsonw_init(&w, b);
    jsonw_obj_open(&w);
    jsonw_key(&w, "sources");
    jsonw_arr_open(&w);
    for (uint32_t i = 0; i < n; i++) one(&w, v[i]);
    jsonw_arr_close(&w);
    jsonw_kv_uint(&w, "count", n);
    jsonw_kv_uint(&w, "online", s->online);
    jsonw_obj_close(&w);
    free(v);
    buf_putc(b, '\n');
    return jsonw_error(&w);
}
