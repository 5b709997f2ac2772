// Polling: the dashboard behind a real HTTP proxy that forwards REST but refuses
// WebSocket upgrades (as some corporate proxies do). The page shows Polling, keeps its
// values, events and sources current through the REST endpoints every ?poll= seconds,
// passes ?token= on (Bearer on REST, token= on the WebSocket URL), and goes Live without
// a reload once upgrades get through; when the socket is cut again it falls back to
// Polling at once.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { HOST, Hub, launch, sleep, t, unexpectedErrors, waitFor, watchConsole, word } from './harness.mjs';

// A forwarding proxy on a free port. upgrades: whether WebSocket handshakes pass.
function startProxy(hub) {
  const p = { upgrades: false, requests: [], handshakes: [], tunnels: new Set() };
  p.server = http.createServer((req, res) => {
    p.requests.push({ url: req.url, authorization: req.headers.authorization || null });
    const up = http.request({ host: HOST, port: hub.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end('{"error":"bad_gateway","detail":"the hub is unreachable"}');
    });
    req.pipe(up);
  });
  p.server.on('upgrade', (req, socket, head) => {
    p.handshakes.push({ url: req.url });
    socket.on('error', () => {});
    if (!p.upgrades) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const up = net.connect(hub.port, HOST, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      if (head.length) up.write(head);
      socket.pipe(up).pipe(socket);
    });
    const tunnel = { socket, up };
    p.tunnels.add(tunnel);
    const end = () => { p.tunnels.delete(tunnel); socket.destroy(); up.destroy(); };
    up.on('error', end);
    up.on('close', end);
    socket.on('close', end);
  });
  p.cut = () => { for (const tn of [...p.tunnels]) { tn.socket.destroy(); tn.up.destroy(); } };
  return new Promise((resolve) => p.server.listen(0, HOST, () => { p.port = p.server.address().port; resolve(p); }));
}

const cpuCard = (page) => page.evaluate(() => {
  for (const c of document.querySelectorAll('#cards .card')) if (c.dataset.name === 'cpu_usage') return c.querySelector('.value').textContent;
  return null;
});

const TOKEN = 's3cret-dashboard-0123456789';
const NARROW = 'narrow-metrics-sources-0123456789';
const ADMIN = 'feeder-admin-0123456789abcdef';

test('polling fallback through a proxy without WebSocket', async (tt) => {
  // tokens are on: the page's data needs the token it was given, in the header and on the
  // WebSocket URL; a second token may read only metrics and sources
  const hub = new Hub(['--config', Hub.writeConfig([
    '[token.dashboard]', `secret = ${TOKEN}`, 'scopes = read', '',
    '[token.narrow]', `secret = ${NARROW}`, 'scopes = read', 'topics = metrics, sources', '',
    '[token.feeder]', `secret = ${ADMIN}`, 'scopes = admin', '',
  ].join('\n'))]);
  let proxy = null;
  let ctx = null;
  try {
    await hub.start();
    hub.token = ADMIN; // the test's own ingest and publish
    await hub.ingest({ source: 'robot_001', metrics: { cpu_usage: 10 } });
    proxy = await startProxy(hub);
    ctx = await launch();
    const page = await ctx.newPage();
    const errors = watchConsole(page);
    const url = `http://${HOST}:${proxy.port}/?poll=1&backoff_max=1&token=${TOKEN}`;
    await page.goto(url);

    await tt.test('WebSocket refused, REST answers: Polling', async () => {
      await waitFor(async () => (await word(page)) === 'Polling', 'Polling');
      assert.equal(await waitFor(() => cpuCard(page), 'the cpu_usage card'), '10 %');
    });

    await tt.test('values, events and sources keep coming every poll', async () => {
      await page.evaluate(() => { window.__sameDocument = true; });
      await hub.ingest({ source: 'robot_001', metrics: { cpu_usage: 11.5 } });
      await waitFor(async () => (await cpuCard(page)) === '11.5 %', 'the polled value', 8000);
      const e = await hub.publish('tasks.created', { task: 'polled' });
      await waitFor(() => page.locator(`#events li[data-seq="${e.seq}"]`).count(), 'the polled event', 8000);
      await sleep(t(2500)); // a few more rounds: the same event is not added again
      assert.equal(await page.locator(`#events li[data-seq="${e.seq}"]`).count(), 1);
      assert.equal(await word(page), 'Polling');
    });

    await tt.test('the token goes along: Bearer on REST, token= on the WebSocket URL', async () => {
      const api = proxy.requests.filter((r) => r.url.startsWith('/api/'));
      assert.ok(api.length >= 6, `REST calls: ${api.length}`);
      for (const r of api) assert.equal(r.authorization, `Bearer ${TOKEN}`, r.url);
      assert.ok(proxy.handshakes.length >= 2, 'it kept trying the socket');
      for (const h of proxy.handshakes) assert.equal(h.url, `/ws?token=${TOKEN}`);
    });

    await tt.test('no flapping: Polling is not interrupted by each failed socket attempt', async () => {
      const words = await page.evaluate(() => window.__mcTest.words());
      const after = words.slice(words.indexOf('Polling'));
      assert.deepEqual([...new Set(after)], ['Polling'], JSON.stringify(words));
    });

    await tt.test('upgrades get through: Live without a reload', async () => {
      proxy.upgrades = true;
      await waitFor(async () => (await word(page)) === 'Live', 'Live', 10000);
      assert.equal(await page.evaluate(() => window.__sameDocument), true);
      await hub.ingest({ source: 'robot_001', metrics: { cpu_usage: 12.5 } });
      await waitFor(async () => (await cpuCard(page)) === '12.5 %', 'a live value');
      const c = await page.evaluate(() => window.metricast.client.stats());
      assert.equal(c.timers, 1, 'live: no poll timer left, only the heartbeat');
    });

    await tt.test('the socket is cut and upgrades refused again: back to Polling at once', async () => {
      proxy.upgrades = false;
      const polls = proxy.requests.length;
      proxy.cut();
      await waitFor(async () => (await word(page)) === 'Polling', 'Polling again', 5000);
      assert.ok(proxy.requests.length > polls, 'it polled');
      const counts = await page.evaluate(() => window.__mcTest.counts());
      assert.ok(counts.open <= 1, `at most the one attempt under way: ${JSON.stringify(counts)}`);
    });

    await tt.test('a token limited to some topics: what it may read still works', async () => {
      const p2 = await ctx.newPage();
      const errs2 = watchConsole(p2);
      await p2.goto(`${hub.url}/?poll=1&token=${NARROW}`);
      await waitFor(async () => (await word(p2)) === 'Live', 'Live with the narrow token');
      await hub.ingest({ source: 'robot_001', metrics: { cpu_usage: 13.5 } });
      await waitFor(async () => (await cpuCard(p2)) === '13.5 %', 'metrics with the narrow token');
      await waitFor(async () => /may not read alerts/.test(await p2.textContent('#alerts-empty')), 'the alerts panel says why');
      // sources: refused together with events and alerts, then subscribed on its own
      const ev = await hub.publish('telemetry.connection_established', { robot_id: 'robot_narrow', connection_id: 'c1', connected_at: new Date().toISOString() });
      await waitFor(() => p2.locator(`#events li[data-seq="${ev.seq}"]`).count(), 'a sources event through the split subscription');
      assert.equal(await p2.locator('#sources li[data-id="robot_narrow"]').getAttribute('data-status'), 'online');
      const bad = errs2.filter((e) => e.uncaught || !/status of 403/.test(e.text));
      assert.deepEqual(bad, []);
      await p2.close();
    });

    await tt.test('no console errors besides the refused handshakes', async () => {
      assert.deepEqual(await page.evaluate(() => window.__mcTest.csp()), []);
      // every refused handshake is on the console: the whole run counts as an outage of the socket
      const wsOnly = unexpectedErrors(errors, [[0, null]]).filter((e) => !/Unexpected response code: 403/.test(e.text));
      assert.deepEqual(wsOnly, []);
      assert.deepEqual(errors.filter((e) => !/WebSocket connection to|\/api\/v1\/alerts/.test(e.text + e.url)), []);
    });
  } finally {
    if (ctx) await ctx.close();
    if (proxy) {
      proxy.cut();
      await new Promise((r) => proxy.server.close(r));
    }
    await hub.close();
  }
});
