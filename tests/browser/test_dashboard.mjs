// The dashboard in Debian's chromium against the real hub: Live with values changing,
// cards with trends, charts with history then live points, sources online/offline, the
// event feed (resumed with since across a hub restart), active alerts firing and resolving, the
// host panel, the security headers, Reconnecting when the hub stops and Live again when it
// is back on the same port (no reload), and no WebSocket or timer left behind after
// several reconnects.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hub, launch, sleep, t, unexpectedErrors, waitFor, watchConsole, word } from './harness.mjs';

const ROBOTS = ['robot_001', 'robot_002', 'robot_003'];

// One round of data through POST /api/v1/ingest: gauges per robot, a counter, a timer and
// node_exporter-style host series.
async function feed(hub, i) {
  for (const [k, r] of ROBOTS.entries()) {
    await hub.ingest({ source: r, metrics: { cpu_usage: 40 + k * 10 + (i % 10), battery_percentage: 90 - k * 5 - (i % 3) } });
  }
  await hub.ingest([
    `jobs_done:${1 + (i % 3)}|c`,
    `job_latency_ms:${10 + (i % 5)}|ms`,
    'node_cpu_seconds_total:0.25|c|#cpu:0,mode:idle',
    'node_cpu_seconds_total:0.75|c|#cpu:0,mode:user',
    'node_memory_MemAvailable_bytes:4000000000|g',
    'node_memory_MemTotal_bytes:16000000000|g',
    'node_network_receive_bytes_total:2048|c|#device:eth0',
    'node_network_receive_bytes_total:999999|c|#device:lo',
    'node_disk_written_bytes_total:4096|c|#device:sda',
  ].join('\n'));
}

// Feeds every `every` ms until stop() (bounded: at most `max` rounds).
function feeder(hub, every = 400, max = 2000) {
  let stopped = false;
  let i = 100;
  const done = (async () => {
    while (!stopped && i < 100 + max) {
      try { await feed(hub, i++); } catch { /* the hub is down on purpose */ }
      await sleep(every);
    }
  })();
  return { stop: async () => { stopped = true; await done; } };
}

const cardValue = (page, name, source) => page.evaluate(([n, s]) => {
  for (const c of document.querySelectorAll('#cards .card')) {
    if (c.dataset.name === n && c.querySelector('.labels').textContent.split(' · ')[0] === s) return c.querySelector('.value').textContent;
  }
  return null;
}, [name, source]);

test('dashboard against the real hub', async (tt) => {
  const hub = new Hub(['--tick', '0.5', '--config', Hub.writeConfig([
    '[alert.cpu_hot]', 'metric = cpu_usage', 'source = robot_9*', 'op = >', 'threshold = 90',
    'clear = 85', 'severity = warning', '',
  ].join('\n'))]);
  const outages = [];
  let feeding = null;
  let ctx = null;
  try {
    await hub.start();
    for (let i = 0; i < 6; i++) { await feed(hub, i); await sleep(300); } // history before the page opens
    const before = await hub.publish('tasks.created', { task: 'before-page' });
    ctx = await launch();
    const page = await ctx.newPage();
    const errors = watchConsole(page);

    await tt.test('security headers on / and the assets', async () => {
      for (const p of ['/', '/assets/app.js', '/assets/metricast.js', '/assets/uplot.js', '/assets/app.css']) {
        const r = await hub.request('GET', p);
        assert.equal(r.status, 200, p);
        const csp = r.headers.get('content-security-policy');
        assert.match(csp, /default-src 'none'/, p);
        assert.match(csp, /script-src 'self'(;|$)/, p);
        assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, p);
        assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${hub.port} wss://127\\.0\\.0\\.1:${hub.port}`), p);
        assert.equal(r.headers.get('x-content-type-options'), 'nosniff', p);
        assert.equal(r.headers.get('referrer-policy'), 'no-referrer', p);
        assert.ok(r.headers.get('etag'), p);
      }
      const html = (await hub.request('GET', '/')).body;
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline script');
      assert.doesNotMatch(html, /<style|\sstyle=/i, 'no inline style');
    });

    feeding = feeder(hub);
    await page.goto(hub.url + '/?poll=1&backoff_max=2');

    await tt.test('shows Live and values changing', async () => {
      await waitFor(async () => (await word(page)) === 'Live', 'Live');
      const first = await waitFor(() => cardValue(page, 'cpu_usage', 'robot_001'), 'a cpu_usage card');
      await waitFor(async () => (await cardValue(page, 'cpu_usage', 'robot_001')) !== first, 'the cpu_usage value to change', 10000);
      const n = await page.locator('#cards .card').count();
      assert.ok(n >= ROBOTS.length * 2 + 2, `cards: ${n}`);
      assert.equal(await page.locator('#cards .card[data-name^="node_"]').count(), 0, 'host series are in the host panel');
    });

    await tt.test('cards carry the trend of their series', async () => {
      await waitFor(() => page.evaluate(() => [...document.querySelectorAll('#cards .card .trend')].some((e) => /[▲▼▬]/.test(e.textContent))),
        'a trend arrow on a card', 15000);
    });

    await tt.test('charts start from history and grow with live updates', async () => {
      await waitFor(() => page.evaluate(() => window.metricast.stats().charts >= 2), 'two charts');
      const cpu = page.locator('figure.chart-box', { hasText: 'cpu_usage' });
      await cpu.locator('canvas').first().waitFor();
      const pts = () => page.evaluate(() => window.metricast.chartPoints('cpu_usage'));
      // six rounds of history, three robots: more than live updates alone could have given by now
      await waitFor(async () => (await pts()) >= 3 * 6, 'history points on the cpu_usage chart', 10000);
      const p0 = await pts();
      await waitFor(async () => (await pts()) > p0, 'live points appended', 10000);
      // a click on a card adds its family's chart, another removes it
      const c0 = await page.evaluate(() => window.metricast.stats().charts);
      const card = page.locator('#cards .card[data-name="job_latency_ms"]');
      const had = await page.evaluate(() => window.metricast.charted('job_latency_ms'));
      await card.click();
      await waitFor(async () => (await page.evaluate(() => window.metricast.charted('job_latency_ms'))) !== had, 'chart toggled');
      await card.click();
      await waitFor(async () => (await page.evaluate(() => window.metricast.stats().charts)) === c0, 'chart toggled back');
    });

    await tt.test('host panel from node_* series', async () => {
      await waitFor(() => page.isVisible('#host'), 'the host panel');
      await waitFor(async () => (await page.textContent('#host-tiles [data-tile="CPU"] .v')).includes('75'), 'CPU 75 %');
      assert.match(await page.textContent('#host-tiles [data-tile="Memory"] .v'), /^75 %$/);
      await waitFor(async () => /KiB\/s/.test(await page.textContent('#host-tiles [data-tile="Net in"] .v')), 'net in rate');
      // the loopback device is left out: 2 KiB per round, never the ~1 MB of lo
      assert.doesNotMatch(await page.textContent('#host-tiles [data-tile="Net in"] .v'), /MiB/);
    });

    await tt.test('event feed: replayed on load, then live', async () => {
      await waitFor(() => page.locator(`#events li[data-seq="${before.seq}"]`).count(), 'the event published before the page opened');
      const e = await hub.publish('tasks.created', { task: 'live' });
      await waitFor(() => page.locator(`#events li[data-seq="${e.seq}"]`).count(), 'a live event');
    });

    await tt.test('active alerts: firing shows, resolving clears', async () => {
      const row = page.locator('#alerts li.alert', { hasText: 'cpu_hot' });
      assert.equal(await row.count(), 0);
      await hub.ingest({ source: 'robot_900', metrics: { cpu_usage: 97 } });
      await waitFor(() => row.count(), 'the firing alert in the panel', 10000);
      assert.equal(await row.getAttribute('data-severity'), 'warning');
      assert.match(await row.textContent(), /cpu_usage\{robot_900\} = 97/);
      await hub.ingest({ source: 'robot_900', metrics: { cpu_usage: 40 } });
      await waitFor(async () => (await row.count()) === 0, 'the alert resolved', 10000);
      assert.equal((await page.textContent('#alerts-empty')).trim(), 'None.');
      await waitFor(() => page.locator('#events li[data-type="alert.resolved"]').count(), 'alert events in the feed');
    });

    let srcPage = null;
    await tt.test('sources go online and offline', async () => {
      srcPage = await ctx.newPage();
      await srcPage.goto(hub.url + '/assets/favicon.svg');
      await srcPage.evaluate((u) => new Promise((resolve, reject) => {
        window.src = new WebSocket(u);
        window.src.onopen = () => { window.src.send(JSON.stringify({ type: 'sample', metrics: { cpu_usage: 12.5 } })); resolve(); };
        window.src.onerror = () => reject(new Error('source socket failed'));
      }), hub.url.replace('http', 'ws') + '/ws?source=robot_ws');
      const row = page.locator('#sources li[data-id="robot_ws"]');
      await waitFor(async () => (await row.getAttribute('data-status')) === 'online', 'robot_ws online');
      await srcPage.evaluate(() => window.src.close());
      await waitFor(async () => (await row.getAttribute('data-status')) === 'offline', 'robot_ws offline');
      await srcPage.close();
    });

    let baseline = null;
    const cycle = async (publishWhileAway) => {
      const start = Date.now();
      outages.push([start, null]);
      assert.equal(await hub.stop(), 0, 'the hub exits 0 on SIGTERM');
      await waitFor(async () => (await word(page)) === 'Reconnecting', 'Reconnecting');
      await sleep(t(1200)); // several failed attempts and polls while it is down
      assert.equal(await word(page), 'Reconnecting', 'REST is down too: not Polling');
      await hub.start();
      const away = publishWhileAway ? await hub.publish('tasks.created', { task: 'while-away' }) : null;
      await waitFor(async () => (await word(page)) === 'Live', 'Live after the restart', 15000);
      outages[outages.length - 1][1] = Date.now() + 500;
      return away;
    };

    await tt.test('hub stops: Reconnecting; back on the same port: Live without a reload', async () => {
      await page.evaluate(() => { window.__sameDocument = true; });
      const away = await cycle(true);
      assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');
      // values flow again
      // (a source the feeder does not write: its next sample would replace this one
      // before a tick could show it)
      await hub.ingest({ source: 'robot_restart', metrics: { cpu_usage: 77.7 } });
      await waitFor(async () => (await cardValue(page, 'cpu_usage', 'robot_restart')) === '77.7 %', 'the new value after the restart');
      // the event published before the page got back arrives once (replayed with since, or live)
      await waitFor(() => page.locator(`#events li[data-seq="${away.seq}"]`).count(), 'the event published while away');
      const seqs = await page.evaluate(() => [...document.querySelectorAll('#events li[data-seq]')].map((e) => e.dataset.seq));
      assert.equal(new Set(seqs).size, seqs.length, `no event twice: ${seqs}`);
      await sleep(t(1500));
      baseline = await page.evaluate(() => ({ ...window.__mcTest.counts(), client: window.metricast.client.stats() }));
    });

    await tt.test('no leaked sockets or timers after several reconnects', async () => {
      for (let k = 0; k < 3; k++) await cycle(false);
      await sleep(t(1500)); // debounced refreshes run out
      const now = await page.evaluate(() => ({ ...window.__mcTest.counts(), client: window.metricast.client.stats() }));
      assert.equal(now.open, 1, `one open WebSocket in the page: ${JSON.stringify(now)}`);
      assert.equal(now.unclosed, 1, `every other socket closed: ${JSON.stringify(now)}`);
      assert.equal(now.client.sockets, 1);
      assert.equal(now.client.timers, 1, 'live: only the heartbeat');
      assert.equal(now.intervals, baseline.intervals, `intervals: ${baseline.intervals} -> ${now.intervals}`);
      assert.ok(now.timeouts <= baseline.timeouts + 1, `timeouts: ${baseline.timeouts} -> ${now.timeouts}`);
      assert.ok(now.created >= baseline.created + 3, 'it did reconnect');
      assert.equal(await hub.promValue('metricast_ws_connections'), 1, "the hub sees the page's one socket");
    });

    await tt.test('the indicator used only the three words', async () => {
      const words = await page.evaluate(() => window.__mcTest.words());
      for (const w of words) assert.ok(['', 'Live', 'Polling', 'Reconnecting'].includes(w), `word ${JSON.stringify(w)}`);
      assert.ok(words.includes('Reconnecting') && words.includes('Live'));
    });

    await tt.test('no console errors, no CSP violations', async () => {
      assert.deepEqual(await page.evaluate(() => window.__mcTest.csp()), []);
      assert.deepEqual(unexpectedErrors(errors, outages), [], JSON.stringify({ outages, errors }));
    });

  } finally {
    if (feeding) await feeding.stop();
    if (ctx) await ctx.close();
    await hub.close();
  }
});
