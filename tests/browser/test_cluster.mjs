// The JS client module (web/metricast.js) behind a load balancer in front of two hubs
// linked through a real nats-server: the client follows the frames' cursor, and when its
// connection lands on the other hub it resumes there from that cursor — the events
// published meanwhile on the first hub arrive once, in order, and live ones follow.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { test } from 'node:test';
import { HOST, Hub, launch, sleep, t, waitFor } from './harness.mjs';

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A TCP balancer with one backend at a time; switching closes every open connection.
function balancer() {
  const open = new Set();
  const lb = { target: 0, server: null, port: 0 };
  lb.server = net.createServer((c) => {
    const up = net.connect(lb.target, HOST);
    open.add(c);
    open.add(up);
    c.pipe(up);
    up.pipe(c);
    const done = () => { c.destroy(); up.destroy(); open.delete(c); open.delete(up); };
    c.on('error', done); up.on('error', done); c.on('close', done); up.on('close', done);
  });
  lb.switchTo = (port) => { lb.target = port; for (const s of open) s.destroy(); open.clear(); };
  lb.close = () => { for (const s of open) s.destroy(); return new Promise((r) => lb.server.close(r)); };
  return new Promise((resolve) => lb.server.listen(0, HOST, () => { lb.port = lb.server.address().port; resolve(lb); }));
}

test('JS client resumes on the other hub of a cluster', async (tt) => {
  let nats = null, a = null, b = null, lb = null, ctx = null;
  try {
    const np = await freePort();
    nats = spawn('/usr/sbin/nats-server', ['-a', HOST, '-p', String(np)], { stdio: 'ignore' });
    await waitFor(() => new Promise((r) => {
      const s = net.connect(np, HOST, () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    }), 'nats-server accepting');
    const url = `nats://${HOST}:${np}`;
    a = new Hub(['--nats', url, '--hub-id', 'A']);
    // B has a history of its own from before it joined: the same events get other seqs
    // there than on A, so only the cursor can say where the client was
    b = new Hub([]);
    await b.start();
    for (let i = 0; i < 5; i++) await b.publish('tasks.old', { n: i });
    await b.stop();
    b.args = ['--nats', url, '--hub-id', 'B'];
    await a.start();
    await b.start();
    for (const h of [a, b])
      await waitFor(async () => (await h.promValue('metricast_nats_peers')) === 1, 'linked', t(15000));
    lb = await balancer();
    lb.switchTo(a.port);
    const front = `http://${HOST}:${lb.port}`;
    ctx = await launch();
    const page = await ctx.newPage();
    await page.goto(front + '/api/v1/health');

    const ids = [];
    await tt.test('live through the balancer on hub A, cursors followed', async () => {
      await page.evaluate(async (u) => {
        const mc = await import(u + '/assets/metricast.js');
        window.got = [];
        window.c = new mc.MetricastClient({ url: u, topics: ['tasks.*'], reconnect: { initial: 100, max: 500 } });
        window.c.addEventListener('event', (e) => window.got.push(e.detail.data.id));
        window.c.start();
      }, front);
      await waitFor(() => page.evaluate(() => window.c.state === 'live'), 'live');
      await sleep(300);
      for (let i = 0; i < 2; i++) ids.push((await a.publish('tasks.created', { n: i })).id);
      await waitFor(async () => (await page.evaluate(() => window.got.length)) === 2, 'two events');
      const cur = await page.evaluate(() => window.c.lastCursor);
      assert.match(cur, /A:\d+/);
      // the same event's seq on B is another one
      const onB = (await b.getJSON('/api/v1/events?since=0&limit=100')).events;
      const last = onB.find((e) => e.data.id === ids[1]);
      assert.notEqual(last.seq, await page.evaluate(() => window.c.lastSeq));
    });

    await tt.test('lands on hub B: what A published meanwhile, once, then live', async () => {
      lb.switchTo(b.port);
      for (let i = 2; i < 4; i++) ids.push((await a.publish('tasks.created', { n: i })).id);
      await waitFor(async () => (await page.evaluate(() => window.got.length)) >= 4, 'the missed events', t(20000));
      ids.push((await b.publish('tasks.updated', { n: 4 })).id);
      await waitFor(async () => (await page.evaluate(() => window.got.length)) >= 5, 'a live event of B');
      await sleep(500);
      assert.deepEqual(await page.evaluate(() => window.got), ids);
      assert.match(await page.evaluate(() => window.c.lastCursor), /B:\d+/);
      await page.evaluate(() => window.c.stop());
    });
  } finally {
    if (ctx) await ctx.close();
    if (lb) await lb.close();
    for (const h of [a, b]) if (h) await h.close();
    if (nats) nats.kill('SIGKILL');
  }
});
