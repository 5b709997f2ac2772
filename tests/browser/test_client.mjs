// The JS client module (web/metricast.js) as another page uses it: imported across
// origins from the hub's /assets/metricast.js into a page served by a different server,
// then driven through its API against the real hub: subscribe with a filter, the merge of
// `full` and delta updates, event replay with `since`, unsubscribe, stop() leaving nothing
// behind, resuming a later client from lastSeq, reconnecting after a hub restart, and the
// pure helpers (backoff with jitter, series keys).
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { HOST, Hub, launch, sleep, t, unexpectedErrors, waitFor, watchConsole } from './harness.mjs';

function otherOrigin() {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>another app</title><link rel="icon" href="data:,"><p>not the hub</p>');
  });
  return new Promise((resolve) => server.listen(0, HOST, () => resolve(server)));
}

test('JS client module from another origin', async (tt) => {
  let other = null;
  let hub = null;
  let ctx = null;
  try {
    other = await otherOrigin();
    const origin = `http://${HOST}:${other.address().port}`;
    // the other page's origin is listed: it may import the module, open the WebSocket
    // and call the REST API (CORS); every other origin is refused
    hub = new Hub(['--config', Hub.writeConfig(`[server]\nallowed_origins = ${origin}\n`)]);
    await hub.start();
    ctx = await launch();
    const page = await ctx.newPage();
    const errors = watchConsole(page);
    await page.goto(`http://${HOST}:${other.address().port}/`);

    await tt.test('served with CORS, imports across origins', async () => {
      const r = await hub.request('GET', '/assets/metricast.js', { headers: { Origin: `http://${HOST}:${other.address().port}` } });
      assert.equal(r.headers.get('access-control-allow-origin'), `http://${HOST}:${other.address().port}`);
      assert.equal((await hub.request('GET', '/assets/metricast.js', { headers: { Origin: 'http://elsewhere.example' } })).status, 403);
      assert.match(r.headers.get('content-type'), /^text\/javascript/);
      const names = await page.evaluate(async (u) => {
        window.mc = await import(u + '/assets/metricast.js');
        return Object.keys(window.mc).sort();
      }, hub.url);
      assert.deepEqual(names, ['HttpError', 'MetricastClient', 'backoffDelay', 'globToRegExp', 'seriesKey']);
    });

    await tt.test('pure helpers: backoff with jitter, series keys', async () => {
      const r = await page.evaluate(() => {
        const { backoffDelay, seriesKey } = window.mc;
        const b = { initial: 500, max: 30000, factor: 2 };
        const rows = [];
        for (let n = 0; n < 12; n++) {
          const cap = Math.min(b.max, b.initial * 2 ** n);
          rows.push({ cap, lo: backoffDelay(n, b, () => 0), hi: backoffDelay(n, b, () => 0.999999),
                      samples: [...new Set(Array.from({ length: 20 }, () => backoffDelay(n, b)))].length });
        }
        return { rows,
          keyA: seriesKey({ name: 'x', labels: { b: '2', a: '1' } }), keyB: seriesKey({ name: 'x', labels: { a: '1', b: '2' } }),
          keyC: seriesKey({ name: 'x', labels: { a: '1,b=2' } }) };
      });
      for (const [n, row] of r.rows.entries()) {
        assert.equal(row.lo, row.cap / 2, `attempt ${n}: never less than half the cap`);
        assert.ok(row.hi <= row.cap && row.hi > row.cap * 0.99, `attempt ${n}: never more than the cap`);
        assert.ok(row.samples > 10, `attempt ${n}: jittered`);
      }
      assert.equal(r.rows[11].cap, 30000, 'capped');
      assert.equal(r.keyA, r.keyB, 'label order does not matter');
      assert.notEqual(r.keyA, r.keyC, 'label values cannot fake other labels');
    });

    await tt.test('subscribe with a filter; full then deltas merge into the state', async () => {
      await hub.ingest({ samples: [{ name: 'temp_a', value: 1 }, { name: 'temp_b', value: 2 }, { name: 'other_x', value: 5 }] });
      await page.evaluate((u) => {
        const c = new window.mc.MetricastClient({ url: u, topics: ['metrics'], filter: { match: 'temp_*' } });
        window.c1 = c;
        window.log = { metrics: [], events: [], states: [] };
        c.addEventListener('metrics', (e) => window.log.metrics.push({ full: e.detail.full, n: e.detail.series.length }));
        c.addEventListener('event', (e) => window.log.events.push(e.detail.seq));
        c.addEventListener('state', (e) => window.log.states.push(e.detail.state));
        c.start();
      }, hub.url);
      await waitFor(() => page.evaluate(() => window.c1.state === 'live' && window.log.metrics.some((m) => m.full)), 'live and a full update');
      const values = () => page.evaluate(() => Object.fromEntries([...window.c1.series.values()].map((s) => [s.name, s.value])));
      assert.deepEqual(await values(), { temp_a: 1, temp_b: 2 });
      await hub.ingest({ samples: [{ name: 'temp_a', value: 3 }, { name: 'other_x', value: 6 }] });
      await waitFor(async () => (await values()).temp_a === 3, 'the delta');
      assert.deepEqual(await values(), { temp_a: 3, temp_b: 2 }, 'temp_b kept from the full update; other_x filtered out');
      const log = await page.evaluate(() => window.log.metrics);
      assert.ok(log.filter((m) => m.full).length === 1 && log.some((m) => !m.full), JSON.stringify(log));
    });

    let published = [];
    await tt.test('subscribe to events with since: replay, then live, no duplicates', async () => {
      published = [await hub.publish('tasks.created', { n: 1 }), await hub.publish('tasks.created', { n: 2 })];
      await hub.publish('other.thing', {});
      await page.evaluate(() => window.c1.subscribe(['tasks.*'], { since: 0 }));
      published.push(await hub.publish('tasks.created', { n: 3 }));
      await waitFor(() => page.evaluate((n) => window.log.events.length >= n, published.length), 'replayed and live events');
      await sleep(t(300));
      assert.deepEqual(await page.evaluate(() => window.log.events), published.map((e) => e.seq));
      assert.equal(await page.evaluate(() => window.c1.lastSeq), published[2].seq);
    });

    await tt.test('unsubscribe: no more metrics updates', async () => {
      await page.evaluate(() => window.c1.unsubscribe('metrics'));
      await sleep(t(600)); // one in flight may still land
      const n = await page.evaluate(() => window.log.metrics.length);
      await hub.ingest({ samples: [{ name: 'temp_a', value: 4 }] });
      await sleep(t(1500));
      assert.equal(await page.evaluate(() => window.log.metrics.length), n);
      assert.deepEqual(await page.evaluate(() => window.c1.topics), ['tasks.*']);
    });

    const outages = [];
    await tt.test('reconnects after a hub restart and resumes events from lastSeq', async () => {
      outages.push([Date.now(), null]);
      await hub.stop();
      await waitFor(() => page.evaluate(() => window.c1.state === 'reconnecting' || window.c1.state === 'polling'), 'reconnecting');
      await hub.start();
      const away = await hub.publish('tasks.created', { n: 'away' });
      await waitFor(() => page.evaluate(() => window.c1.state === 'live'), 'live again', 40000);
      // a request that was in flight as the hub went away fails a little later
      outages[0][1] = Date.now() + 500;
      await waitFor(() => page.evaluate((s) => window.log.events.includes(s), away.seq), 'the event published while away');
      const seqs = await page.evaluate(() => window.log.events);
      assert.equal(new Set(seqs).size, seqs.length, `no duplicates: ${seqs}`);
    });

    await tt.test('stop() closes the socket and clears every timer', async () => {
      await page.evaluate(() => window.c1.stop());
      await waitFor(() => page.evaluate(() => window.c1.stats().sockets === 0), 'the socket closed');
      const s = await page.evaluate(() => ({ client: window.c1.stats(), page: window.__mcTest.counts() }));
      assert.equal(s.client.timers, 0);
      assert.equal(s.client.state, 'stopped');
      assert.equal(s.page.open, 0, JSON.stringify(s));
      assert.equal(s.page.intervals, 0, JSON.stringify(s));
      await waitFor(async () => (await hub.promValue('metricast_ws_connections')) === 0, 'the hub saw it go');
    });

    await tt.test('a later client resumes with since = lastSeq: only what it missed', async () => {
      const missed = await hub.publish('tasks.created', { n: 'missed' });
      const got = await page.evaluate(async (u) => {
        const c = new window.mc.MetricastClient({ url: u, topics: ['tasks.*'], since: window.c1.lastSeq });
        const seqs = [];
        c.addEventListener('event', (e) => seqs.push(e.detail.seq));
        c.start();
        const t0 = Date.now();
        while (seqs.length < 1 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 300));
        c.stop();
        return seqs;
      }, hub.url);
      assert.deepEqual(got, [missed.seq]);
    });

    await tt.test('no console errors beyond the restart', async () => {
      const bad = unexpectedErrors(errors, outages);
      assert.deepEqual(bad, []);
    });
  } finally {
    if (ctx) await ctx.close();
    if (other) await new Promise((r) => other.close(r));
    if (hub) await hub.close();
  }
});
