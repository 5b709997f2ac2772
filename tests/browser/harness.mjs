// Shared harness for the browser tests: the real metricastd on a free loopback port (and
// again on the same port after a stop), Debian's chromium driven by playwright-core, and
// page instrumentation that counts WebSockets and timers independently of the dashboard.
//
// Environment (set by CTest):
//   METRICASTD       the daemon binary (default <repo>/build/metricastd)
//   MC_NODE_MODULES  where npm ci put playwright-core (default <repo>/build/npm/browser/node_modules)
//   MC_SANITIZE      ON for an ASan+UBSan build: every wait is multiplied by 3

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const DAEMON = process.env.METRICASTD || path.join(REPO, 'build', 'metricastd');
const MODULES = path.resolve(process.env.MC_NODE_MODULES || path.join(REPO, 'build', 'npm', 'browser', 'node_modules'));
export const SANITIZE = /^(on|1|true|yes)$/i.test((process.env.MC_SANITIZE || '').trim());
export const SCALE = SANITIZE ? 3 : 1;
export const HOST = '127.0.0.1';

// A wait (ms) scaled for sanitizer builds.
export const t = (ms) => ms * SCALE;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value; throws with `what` (and the last value) after
// timeout ms (scaled).
export async function waitFor(fn, what, timeout = 10000, interval = 100) {
  const deadline = Date.now() + t(timeout);
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${t(timeout)} ms waiting for ${what}; last: ${describe(last)}`);
    await sleep(interval);
  }
}

function describe(v) {
  if (v instanceof Error) return v.message;
  try { return JSON.stringify(v); } catch { return String(v); }
}

// ---- the daemon -----------------------------------------------------------------------
const live = new Set();
const configDirs = [];
process.on('exit', () => {
  for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ }
  for (const d of configDirs) fs.rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));

export class Hub {
  constructor(args = []) {
    this.args = args;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-browser-'));
    this.dataDir = path.join(this.tmp, 'data');
    fs.mkdirSync(this.dataDir);
    this.logPath = path.join(this.tmp, 'stderr.log');
    this.port = 0;
    this.proc = null;
    this.starts = 0;
    this.token = null; // sent as Bearer on the harness's own requests when set
  }

  get url() { return `http://${HOST}:${this.port}`; }

  // Writes an INI file in a fresh temporary directory; returns its path (for --config).
  static writeConfig(text) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-browser-conf-'));
    const file = path.join(dir, 'metricast.ini');
    fs.writeFileSync(file, text);
    configDirs.push(dir);
    return file;
  }

  // Starts the daemon on a free port the first time, on the same port after. The port is
  // chosen here rather than with --listen :0: the hub sets SO_REUSEADDR only on a fixed
  // port, and without it the TIME_WAIT leftovers of its own closes would keep a restart
  // from binding the port again.
  async start(timeout = 10000) {
    if (!this.port) this.port = await freePort();
    const log = fs.openSync(this.logPath, 'a');
    // --host-metrics off, as in tests/integration/harness.py: the machine's own series stay
    // out of these tests (a test that wants them passes --host-metrics on in its args)
    const argv = ['--listen', `${HOST}:${this.port}`, '--statsd', 'off', '--data', this.dataDir,
                  '--host-metrics', 'off', ...this.args];
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('METRICAST_')));
    const mark = fs.statSync(this.logPath).size;
    this.proc = spawn(DAEMON, argv, { stdio: ['ignore', log, log], env });
    fs.closeSync(log);
    this.proc.unref(); // a test that fails before close() must not hang on it: 'exit' kills it
    live.add(this.proc);
    const proc = this.proc;
    proc.on('exit', (code, signal) => { proc.exitCode_ = code ?? signal; live.delete(proc); });
    this.starts++;
    await waitFor(() => {
      if (proc.exitCode_ !== undefined) throw new Error(`metricastd exited (${proc.exitCode_}) during start-up:\n${this.log()}`);
      const m = this.log().slice(mark).match(/msg="http listening" addr=([0-9.]+):(\d+)/);
      if (m) this.port = Number(m[2]);
      return m;
    }, 'the "http listening" log line', timeout, 20);
    return this;
  }

  // SIGTERM (or sig); resolves to the exit code once the process is gone.
  async stop(sig = 'SIGTERM', timeout = 10000) {
    const proc = this.proc;
    if (!proc) return null;
    if (proc.exitCode_ === undefined) {
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill(sig);
      const timer = setTimeout(() => proc.kill('SIGKILL'), t(timeout));
      await done;
      clearTimeout(timer);
    }
    this.proc = null;
    return proc.exitCode_;
  }

  log() { try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; } }

  async close() {
    if (this.proc) await this.stop('SIGKILL');
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  async request(method, p, { body, headers = {} } = {}) {
    if (this.token && !headers.Authorization) headers = { ...headers, Authorization: `Bearer ${this.token}` };
    const res = await fetch(this.url + p, { method, body, headers });
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  async getJSON(p) {
    const r = await this.request('GET', p);
    if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  // POST /api/v1/ingest: StatsD text, or an object sent as JSON. Throws unless 202.
  async ingest(body) {
    const json = typeof body !== 'string';
    const r = await this.request('POST', '/api/v1/ingest', {
      body: json ? JSON.stringify(body) : body,
      headers: { 'Content-Type': json ? 'application/json' : 'text/plain' },
    });
    if (r.status !== 202) throw new Error(`ingest: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  async publish(type, payload = {}) {
    const r = await this.request('POST', '/api/v1/events', {
      body: JSON.stringify({ type, payload }), headers: { 'Content-Type': 'application/json' },
    });
    if (r.status !== 202) throw new Error(`publish: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  // One sample of the hub's own /metrics: the value of `name` (labels ignored: summed).
  async promValue(name) {
    const r = await this.request('GET', '/metrics');
    let sum = null;
    for (const line of r.body.split('\n')) {
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/);
      if (m && m[1] === name) sum = (sum || 0) + Number(m[3]);
    }
    return sum;
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

// ---- the browser --------------------------------------------------------------------
export function playwright() {
  const require = createRequire(path.join(MODULES, 'noop.js'));
  return require('playwright-core');
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

// A persistent context on a fresh --user-data-dir (playwright passes it to chromium);
// close() also removes the directory.
export async function launch() {
  const { chromium } = playwright();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 1360, height: 900 }, timeout: t(60000),
  });
  context.setDefaultTimeout(t(15000));
  await context.addInitScript(INSTRUMENT);
  const close = context.close.bind(context);
  context.close = async () => { await close(); fs.rmSync(userDataDir, { recursive: true, force: true }); };
  return context;
}

// Counts what the page holds, without trusting the page's own bookkeeping: WebSockets
// created and not yet closed, timeouts pending, intervals not cleared; records every word
// the connection indicator showed and every CSP violation.
const INSTRUMENT = `(() => {
  const T = { created: 0, live: new Set(), timeouts: new Set(), intervals: new Set(), words: [], csp: [] };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...a) { super(...a); T.created++; T.live.add(this); this.addEventListener('close', () => T.live.delete(this)); }
  };
  const st = window.setTimeout, si = window.setInterval, ct = window.clearTimeout, ci = window.clearInterval;
  window.setTimeout = function (fn, ms, ...rest) {
    const id = st.call(window, (...a) => { T.timeouts.delete(id); if (typeof fn === 'function') fn(...a); }, ms, ...rest);
    T.timeouts.add(id);
    return id;
  };
  window.setInterval = function (fn, ms, ...rest) { const id = si.call(window, fn, ms, ...rest); T.intervals.add(id); return id; };
  window.clearTimeout = function (id) { T.timeouts.delete(id); T.intervals.delete(id); return ct.call(window, id); };
  window.clearInterval = function (id) { T.timeouts.delete(id); T.intervals.delete(id); return ci.call(window, id); };
  document.addEventListener('securitypolicyviolation', (e) => T.csp.push(e.violatedDirective + ' ' + e.blockedURI));
  document.addEventListener('DOMContentLoaded', () => {
    const w = document.getElementById('conn-word');
    if (!w) return;
    const note = () => { const s = w.textContent; if (T.words[T.words.length - 1] !== s) T.words.push(s); };
    new MutationObserver(note).observe(w, { childList: true, characterData: true, subtree: true });
    note();
  });
  window.__mcTest = {
    counts: () => ({ created: T.created, open: [...T.live].filter((s) => s.readyState <= 1).length, unclosed: T.live.size,
                     timeouts: T.timeouts.size, intervals: T.intervals.size }),
    words: () => T.words.slice(),
    csp: () => T.csp.slice(),
  };
})();`;

// Collects console errors and uncaught exceptions of a page.
export function watchConsole(page) {
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push({ text: m.text(), url: (m.location() || {}).url || '', at: Date.now() });
  });
  page.on('pageerror', (e) => errors.push({ text: 'uncaught: ' + (e.stack || e.message), url: '', at: Date.now(), uncaught: true }));
  return errors;
}

// Chromium itself reports a refused connection on the console; while the hub is down on
// purpose those are expected, and nothing else is. A hub without the alerts stage
// answers 404 on /api/v1/alerts, which the dashboard tolerates (chromium still logs it).
export function unexpectedErrors(errors, outages = []) {
  return errors.filter((e) => {
    if (e.uncaught) return true;
    if (/\/api\/v1\/alerts/.test(e.url) && /status of 404/.test(e.text)) return false;
    const inOutage = outages.some(([a, b]) => e.at >= a && e.at <= (b || Infinity));
    if (inOutage && /ERR_CONNECTION_(REFUSED|RESET|CLOSED)|ERR_SOCKET_NOT_CONNECTED|ERR_EMPTY_RESPONSE|WebSocket connection to .* failed|status of 502/.test(e.text)) return false;
    return true;
  });
}

export async function word(page) { return (await page.textContent('#conn-word')).trim(); }

