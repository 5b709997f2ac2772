// Takes the dashboard screenshot in the docs (docs/dashboard.png) with live data: a small
// robot fleet and a streaming session as WebSocket source sessions (from a second page),
// host series and jobs through POST /api/v1/ingest, a few events, one alert rule.
//
//   node tests/browser/screenshot.mjs [OUT.png] [SECONDS]     (default docs/dashboard.png, 75)
//
// Not a test (CTest runs only test_*.mjs); same environment as the tests (METRICASTD,
// MC_NODE_MODULES).
import fs from 'node:fs';
import path from 'node:path';
import { Hub, launch, REPO, sleep, waitFor, word } from './harness.mjs';

const out = path.resolve(process.argv[2] || path.join(REPO, 'docs', 'dashboard.png'));
const seconds = Number(process.argv[3] || 75);

const hub = new Hub(['--config', path.join(fs.mkdtempSync('/tmp/mc-shot-'), 'hub.ini')]);
fs.writeFileSync(hub.args[1], [
  '[alert.battery_low]', 'metric = battery_percentage', 'source = *', 'op = <', 'threshold = 25',
  'clear = 30', 'severity = warning', '',
].join('\n'));
let ctx = null;
try {
  await hub.start();
  ctx = await launch();
  // the fleet: each robot a source session, samples once a second
  const fleet = await ctx.newPage();
  await fleet.goto(hub.url + '/assets/favicon.svg');
  await fleet.evaluate((wsBase) => {
    const robots = [
      { id: 'robot_001', model: 'AMR-200', cpu: 38, bat: 84 },
      { id: 'robot_002', model: 'AMR-200', cpu: 55, bat: 61 },
      { id: 'robot_003', model: 'AMR-350', cpu: 71, bat: 27 },
      { id: 'robot_004', model: 'AMR-350', cpu: 22, bat: 93 },
    ];
    let tick = 0;
    window.socks = robots.map((r) => {
      const ws = new WebSocket(`${wsBase}/ws`);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', source: r.id, attrs: { provider: 'fleet-sim', model: r.model } }));
      return [r, ws];
    });
    const asr = new WebSocket(`${wsBase}/ws`);
    asr.onopen = () => asr.send(JSON.stringify({ type: 'hello', source: 'asr_session_7', attrs: { provider: 'whisper', model: 'large-v3' } }));
    window.asr = asr;
    setInterval(() => {
      tick++;
      for (const [r, ws] of window.socks) {
        if (ws.readyState !== 1) continue;
        r.bat = Math.max(5, r.bat - 0.05 - Math.random() * 0.05);
        const cpu = Math.min(99, Math.max(2, r.cpu + 12 * Math.sin(tick / 9 + r.bat) + (Math.random() - 0.5) * 8));
        ws.send(JSON.stringify({ type: 'sample', metrics: {
          cpu_usage: Math.round(cpu * 10) / 10,
          memory_usage: Math.round((40 + r.cpu / 3 + 3 * Math.sin(tick / 20)) * 10) / 10,
          network_latency_ms: Math.round((18 + 6 * Math.random() + (r.id === 'robot_003' ? 25 : 0)) * 10) / 10,
          battery_percentage: Math.round(r.bat * 10) / 10,
        } }));
      }
      if (asr.readyState === 1) {
        asr.send(JSON.stringify({ type: 'sample', metrics: {
          queue_depth: Math.round(4 + 3 * Math.sin(tick / 6) + Math.random() * 2),
          processing_time_ms: Math.round((42 + 10 * Math.sin(tick / 11) + Math.random() * 6) * 10) / 10,
          realtime_factor: Math.round((0.31 + 0.05 * Math.sin(tick / 13)) * 100) / 100,
        } }));
      }
    }, 1000);
  }, hub.url.replace('http', 'ws'));

  // host series and jobs through the HTTP ingest, once a second
  let i = 0;
  let stop = false;
  const background = (async () => {
    while (!stop) {
      i++;
      const busy = 0.35 + 0.15 * Math.sin(i / 10);
      await hub.ingest([
        `node_cpu_seconds_total:${(2 * (1 - busy)).toFixed(3)}|c|#cpu:0,mode:idle`,
        `node_cpu_seconds_total:${(2 * busy).toFixed(3)}|c|#cpu:0,mode:user`,
        'node_memory_MemTotal_bytes:16777216000|g',
        `node_memory_MemAvailable_bytes:${Math.round(9.1e9 - 2e8 * Math.sin(i / 30))}|g`,
        `node_disk_read_bytes_total:${Math.round(2e5 + Math.random() * 1e5)}|c|#device:nvme0n1`,
        `node_disk_written_bytes_total:${Math.round(1.2e6 + Math.random() * 4e5)}|c|#device:nvme0n1`,
        `node_network_receive_bytes_total:${Math.round(3.1e6 + Math.random() * 5e5)}|c|#device:eth0`,
        `node_network_transmit_bytes_total:${Math.round(8e5 + Math.random() * 2e5)}|c|#device:eth0`,
        `jobs_completed:${2 + (i % 4)}|c`,
        `job_duration_ms:${120 + Math.round(Math.random() * 60)}|ms`,
        `job_duration_ms:${140 + Math.round(Math.random() * 80)}|ms`,
      ].join('\n')).catch(() => {});
      if (i % 9 === 0) await hub.publish('tasks.created', { task_id: `t-${1000 + i}`, robot: `robot_00${1 + (i % 4)}`, kind: 'pick' }).catch(() => {});
      if (i % 13 === 0) await hub.publish('tasks.completed', { task_id: `t-${987 + i}`, duration_s: 41 + (i % 17) }).catch(() => {});
      await sleep(1000);
    }
  })();

  await sleep(Math.max(10, seconds - 25) * 1000);
  await fleet.evaluate(() => window.socks[3][1].close()); // robot_004 goes offline
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1400, height: 1100 });
  await page.goto(hub.url + '/');
  await waitFor(async () => (await word(page)) === 'Live', 'Live');
  await sleep(20000);
  await page.screenshot({ path: out, fullPage: false });
  stop = true;
  await background;
  console.log('wrote', out);
} finally {
  if (ctx) await ctx.close();
  await hub.close();
}
