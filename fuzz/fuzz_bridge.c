/* libFuzzer target for what hubs receive from NATS (bridge_decode): the input is one
 * message as it would arrive on a subject. Whatever it is, decoding must not crash, leak
 * or read out of bounds; a message that decodes must hold what its kind promises (an
 * unsealed valid event, a batch whose keys and sketches are usable, sources with valid
 * ids), and re-encoding a decoded batch must decode again to the same number of deltas.
 * Built by scripts/fuzz.sh. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* event.c seals frames through ws.c; decoding never seals, so nothing else is linked */
frame_t *ws_frame_text(const void *p, size_t n, uint32_t flags);
frame_t *ws_frame_text(const void *p, size_t n, uint32_t flags) {
    (void)p, (void)n, (void)flags;
    return NULL;
}
void frame_unref(frame_t *f) { (void)f; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bridge_msg_t m;
    char err[256];
    bridge_err_t e = bridge_decode((const char *)data, size, 1700000000.0, &m, err, sizeof err);
    if (e != BRIDGE_OK) {
        assert(e > BRIDGE_OK && e < BRIDGE_E_COUNT);
        assert(m.event == NULL && m.batch == NULL && m.sources == NULL);
        return 0;
    }
    assert(cursor_hub_id_valid(m.hub, strlen(m.hub)));
    switch (m.kind) {
    case BRIDGE_EVENT:
        assert(m.event && m.event->envelope && event_type_valid(m.event->type));
        assert(m.oseq > m.prev);
        break;
    case BRIDGE_SAMPLES: {
        assert(m.batch && m.batch->n <= BRIDGE_MAX_DELTAS);
        for (uint32_t i = 0; i < m.batch->n; i++) {
            const agg_delta_t *d = &m.batch->d[i];
            assert(d->key && d->hash == d->key->hash && (unsigned)d->kind < METRIC_KIND_COUNT);
            if (d->kind == METRIC_TIMER) {
                assert(d->v.timer && d->v.timer->count > 0);
                double q = sketch_quantile(d->v.timer, 0.99);
                (void)q;
            }
        }
        buf_t b = BUF_INIT;
        uint32_t next = 0;
        if (bridge_encode_samples(m.hub, m.batch, 0, &next, &b) == 0 && next == m.batch->n) {
            bridge_msg_t again;
            bridge_err_t e2 = bridge_decode(b.data, b.len, 0, &again, err, sizeof err);
            assert(e2 == BRIDGE_OK && again.batch->n == m.batch->n);
            bridge_msg_free(&again);
        }
        buf_free(&b);
        break;
    }
    case BRIDGE_REPLAY: assert(cursor_hub_id_valid(m.to, strlen(m.to))); break;
    case BRIDGE_SOURCES:
        for (uint32_t i = 0; i < m.nsources; i++)
            assert(sources_id_valid(m.sources[i].id) && m.sources[i].attrs);
        break;
    }
    bridge_msg_free(&m);
    return 0;
}
