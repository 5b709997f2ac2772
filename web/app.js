// app.js — the metricast dashboard. Plain DOM, no framework; the data comes through
// metricast.js (WebSocket, REST polling while it is down).
//
// Page parameters: ?token=SECRET (passed on to the WebSocket URL and as a Bearer token on
// REST calls), ?poll=SECONDS (polling interval while the socket is down, default 30),
// ?backoff_max=SECONDS (longest wait between reconnect attempts, default 30).

import { MetricastClient, seriesKey, globToRegExp } from './metricast.js';
import { LiveChart } from './charts.js';
import { HostFigures } from './host.js';
import { displayValue, fmtAgo, fmtBytes, fmtClock, fmtDuration, fmtNumber, fmtPercent, fmtUnit,
         labelText, toUnix, unitOf } from './format.js';

const WORDS = { live: 'Live', polling: 'Polling', reconnecting: 'Reconnecting' };
const FEED_MAX = 100;
const CARDS_MAX = 120;
const DEFAULT_CHARTS = 4;
const WINDOW = 300;

const params = new URLSearchParams(location.search);
const seconds = (name, dflt, min) => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) && v >= min ? v : dflt;
};

const client = new MetricastClient({
  token: params.get('token') || undefined,
  pollInterval: seconds('poll', 30, 0.2) * 1000,
  backoff: { max: seconds('backoff_max', 30, 0.5) * 1000 },
});

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// ---- state ----------------------------------------------------------------------------
const charts = new Map(); // family name → {chart, box, kind}
const chartChoice = new Set(); // families the user (or the defaults) put on charts
let chartsChosen = false;
const hostFigures = new HostFigures();
let hostChart = null;
const cardEls = new Map(); // series key → card element
const sources = new Map(); // id → source entry
const alerts = new Map(); // rule|source → alert
let alertsAvailable = true;
let alertsAllowed = true; // false: this page's token may not read alerts
let sourcesAllowed = true;
let lastDataAt = NaN;
let renderQueued = false;
let sourcesRefresh = null;
let alertsRefresh = null;

// ---- connection indicator and backpressure --------------------------------------------
function showState(state) {
  const conn = $('conn');
  conn.dataset.state = state;
  $('conn-word').textContent = WORDS[state] || '';
  conn.title = state === 'polling' ? `WebSocket down: polling the REST API every ${seconds('poll', 30, 0.2)} s`
    : state === 'reconnecting' ? 'WebSocket down: reconnecting with backoff' : state === 'live' ? 'WebSocket connected' : 'connecting';
  if (state === 'live') showFlow({ state: 'streaming' });
}

function showFlow(m) {
  const f = $('flow');
  f.textContent = m.state;
  f.dataset.state = m.state;
  f.title = m.message ? `${m.message} (queue ${Math.round((m.fill_ratio || 0) * 100)} % full, ${m.dropped || 0} dropped)`
    : "this connection's outbound queue";
}

function notice(text) {
  const n = $('notice');
  n.hidden = !text;
  n.textContent = text || '';
}

// ---- summary strip -------------------------------------------------------------------
function renderSummary(s) {
  if (!s) return;
  const items = [
    ['uptime', fmtDuration(s.uptime_seconds)],
    ['ingest', fmtNumber(s.ingest ? s.ingest.lines_per_second : NaN) + '/s'],
    ['series', fmtNumber(s.ingest ? s.ingest.series : NaN)],
    ['online', fmtNumber(s.sources_online)],
    ['subscribers', fmtNumber(s.subscribers)],
    ['events', fmtNumber(s.events_total)],
    ['drops', fmtNumber(s.drops ? (s.drops.ingest_total || 0) + (s.drops.ws_total || 0) : NaN)],
    ['hub cpu', fmtPercent(s.cpu_percent)],
    ['hub rss', fmtBytes(s.rss_bytes)],
  ];
  const strip = $('summary');
  if (strip.children.length !== items.length) {
    strip.replaceChildren(...items.map(([k]) => {
      const d = el('div', 'stat');
      d.append(el('span', 'k', k), el('span', 'v'));
      return d;
    }));
  }
  items.forEach(([, v], i) => { strip.children[i].lastChild.textContent = v; });
  $('hub').textContent = s.version ? 'v' + s.version : '';
}

// ---- metric cards ----------------------------------------------------------------------
function matcher(text) {
  text = text.trim();
  if (!text) return null;
  const re = /[*?]/.test(text) ? globToRegExp(text) : null;
  return (s) => {
    const src = (s.labels && s.labels.source) || '';
    return re ? re.test(s.name) || re.test(src) : s.name.includes(text) || src.includes(text);
  };
}

function visibleSeries() {
  const text = $('filter').value;
  const m = matcher(text);
  const showHost = text.includes('node_');
  const list = [];
  for (const [key, s] of client.series) {
    if (!showHost && s.name.startsWith('node_')) continue;
    if (m && !m(s)) continue;
    list.push([key, s]);
  }
  list.sort((a, b) => (a[1].name < b[1].name ? -1 : a[1].name > b[1].name ? 1 : a[0] < b[0] ? -1 : 1));
  return list;
}

function trendText(t) {
  if (!t || !t.direction) return ['', ''];
  const arrow = t.direction === 'up' ? '▲' : t.direction === 'down' ? '▼' : '▬';
  const h = t.hour && typeof t.hour.change_pct === 'number' ? ` ${t.hour.change_pct > 0 ? '+' : ''}${fmtNumber(t.hour.change_pct)} % vs 1 h` : ` ${t.direction}`;
  return [arrow + h, t.direction];
}

function makeCard(key, s) {
  const c = el('button', 'card');
  c.type = 'button';
  c.dataset.key = key;
  c.dataset.name = s.name;
  const head = el('div', 'card-head');
  head.append(el('span', 'name', s.name), el('span', 'kind', s.kind));
  c.append(head, el('div', 'labels'), el('div', 'value'), el('div', 'sub'), el('div', 'trend'));
  c.addEventListener('click', () => toggleChart(s.name));
  return c;
}

function fillCard(c, s) {
  const unit = unitOf(s.name);
  c.children[1].textContent = labelText(s.labels) || '—';
  const v = displayValue(s);
  c.children[2].textContent = s.kind === 'counter' ? fmtNumber(v) + '/s' : fmtUnit(v, s.kind === 'timer' && !unit ? 'ms' : unit);
  c.children[3].textContent = s.kind === 'counter' ? 'total ' + fmtNumber(s.value)
    : s.kind === 'timer' ? `p50 ${fmtNumber(s.p50)} · p99 ${fmtNumber(s.p99)} · n ${fmtNumber(s.count)}` : '';
  const [tt, dir] = trendText(s.trend);
  c.children[4].textContent = tt;
  c.children[4].dataset.dir = dir;
  c.classList.toggle('charted', charts.has(s.name));
}

function renderCards() {
  const box = $('cards');
  const list = visibleSeries();
  const shown = list.slice(0, CARDS_MAX);
  const keep = new Set(shown.map(([k]) => k));
  for (const [k, c] of cardEls) if (!keep.has(k)) { c.remove(); cardEls.delete(k); }
  let prev = null;
  for (const [k, s] of shown) {
    let c = cardEls.get(k);
    if (!c) { c = makeCard(k, s); cardEls.set(k, c); }
    fillCard(c, s);
    const want = prev ? prev.nextSibling : box.firstChild;
    if (want !== c) box.insertBefore(c, want);
    prev = c;
  }
  $('cards-more').hidden = list.length <= CARDS_MAX;
  $('cards-more').textContent = `${list.length - CARDS_MAX} more series: narrow the filter to see them.`;
  $('cards-empty').hidden = client.series.size > 0;
  $('cards-empty').textContent = client.series.size ? '' : 'Waiting for metrics…';
}

// ---- charts --------------------------------------------------------------------------
function families() {
  const f = new Map();
  for (const s of client.series.values()) if (!f.has(s.name)) f.set(s.name, s.kind);
  return f;
}

function chooseDefaultCharts() {
  if (chartsChosen || client.series.size === 0) return;
  chartsChosen = true;
  const names = [...families().keys()].filter((n) => !n.startsWith('node_')).sort();
  for (const n of names.slice(0, DEFAULT_CHARTS)) chartChoice.add(n);
}

function toggleChart(name) {
  chartsChosen = true;
  if (chartChoice.has(name)) chartChoice.delete(name); else chartChoice.add(name);
  syncCharts();
  queueRender();
}

function lineLabel(s) { return labelText(s.labels) || s.name; }

function syncCharts() {
  const fams = families();
  for (const [name, c] of charts) {
    if (!chartChoice.has(name)) { c.chart.destroy(); c.box.remove(); charts.delete(name); }
  }
  for (const name of [...chartChoice].sort()) {
    if (charts.has(name) || !fams.has(name)) continue;
    const box = el('figure', 'chart-box');
    const cap = el('figcaption', null);
    const close = el('button', 'close', '×');
    close.type = 'button';
    close.title = 'remove this chart';
    close.addEventListener('click', () => toggleChart(name));
    const kind = fams.get(name);
    cap.append(el('span', 'name', name), el('span', 'muted small', kind === 'counter' ? ' per second' : kind === 'timer' ? ' mean' : ''), close);
    const area = el('div', 'chart');
    box.append(cap, area);
    $('charts').append(box);
    const unit = unitOf(name);
    const chart = new LiveChart(area, { windowSeconds: WINDOW, fmt: (v) => (kind === 'counter' ? fmtNumber(v) : fmtUnit(v, unit)) });
    charts.set(name, { chart, box, kind });
    loadHistory(name, chart);
  }
  $('charts-empty').hidden = charts.size > 0;
}

async function loadHistory(name, chart) {
  try {
    const doc = await client.request(`/api/v1/series/${encodeURIComponent(name)}?window=${WINDOW}`);
    for (const s of doc.series || []) {
      const key = seriesKey({ name, labels: s.labels });
      // counters: per-second increments; timers: [t, mean, ...]; others: [t, value]
      chart.addHistory(key, lineLabel({ name, labels: s.labels }), (s.points || []).map((p) => [p[0], p[1]]));
    }
    queueRender();
  } catch (e) {
    if (!(e && e.status === 404)) console.warn('history of', name, e && e.message);
  }
}

function appendLive(t) {
  if (!Number.isFinite(t)) return;
  const byFamily = new Map();
  for (const [key, s] of client.series) {
    if (!charts.has(s.name)) continue;
    if (!byFamily.has(s.name)) byFamily.set(s.name, []);
    byFamily.get(s.name).push([key, lineLabel(s), displayValue(s)]);
  }
  for (const [name, vals] of byFamily) charts.get(name).chart.push(t, vals);
}

// ---- host panel ----------------------------------------------------------------------
const perSecond = (v) => (v === null || v === undefined ? '–' : fmtBytes(v) + '/s');

function renderHost(t) {
  const h = hostFigures.compute(client.series, t);
  $('host').hidden = !h;
  if (!h) {
    if (hostChart) { hostChart.destroy(); hostChart = null; }
    return;
  }
  const tiles = [
    ['CPU', fmtPercent(h.cpuPercent)],
    ['Memory', fmtPercent(h.memPercent)],
    ['Disk read', perSecond(h.diskRead)],
    ['Disk write', perSecond(h.diskWrite)],
    ['Net in', perSecond(h.netRx)],
    ['Net out', perSecond(h.netTx)],
  ];
  if (h.load1 !== null) tiles.push(['Load 1 min', fmtNumber(h.load1)]);
  const box = $('host-tiles');
  if (box.children.length !== tiles.length) {
    box.replaceChildren(...tiles.map(([k]) => {
      const d = el('div', 'tile');
      d.dataset.tile = k;
      d.append(el('span', 'k', k), el('span', 'v'));
      return d;
    }));
  }
  tiles.forEach(([, v], i) => { box.children[i].lastChild.textContent = v; });
  if (!hostChart) hostChart = new LiveChart($('host-chart'), { windowSeconds: WINDOW, fmt: (v) => fmtPercent(v), height: 140 });
  const vals = [];
  if (h.cpuPercent !== null) vals.push(['cpu', 'CPU %', h.cpuPercent]);
  if (h.memPercent !== null) vals.push(['mem', 'Memory %', h.memPercent]);
  if (vals.length && Number.isFinite(t)) hostChart.push(t, vals);
}

// ---- sources -------------------------------------------------------------------------
function renderSources() {
  const list = [...sources.values()].sort((a, b) => (a.online === b.online ? (a.id < b.id ? -1 : 1) : a.online ? -1 : 1));
  const now = Date.now() / 1000;
  $('sources').replaceChildren(...list.map((s) => {
    const li = el('li', 'source');
    li.dataset.id = s.id;
    li.dataset.status = s.online ? 'online' : 'offline';
    const attrs = s.attrs && typeof s.attrs === 'object' ? Object.entries(s.attrs).map(([k, v]) => `${k}=${v}`).join(' · ') : '';
    const when = s.online ? 'online since ' + fmtClock(toUnix(s.connected_at))
      : 'offline, last seen ' + fmtAgo(toUnix(s.last_seen || s.disconnected_at), now);
    li.append(el('span', 'dot'), el('span', 'id', s.id), el('span', 'status', s.online ? 'online' : 'offline'),
              el('span', 'muted small when', when));
    if (attrs) li.append(el('span', 'muted small attrs', attrs));
    return li;
  }));
  const online = list.filter((s) => s.online).length;
  $('sources-count').textContent = list.length ? `${online} of ${list.length} online` : '';
  $('sources-empty').hidden = list.length > 0;
  $('sources-empty').textContent = sourcesAllowed ? 'No sources have connected.' : "This page's token may not read sources.";
}

async function loadSources() {
  try {
    const doc = await client.request('/api/v1/sources');
    sources.clear();
    for (const s of doc.sources || []) sources.set(s.id, { ...s, online: s.online ?? s.status === 'online' });
    renderSources();
    notice('');
  } catch (e) {
    if (e && e.status === 401) notice("The hub wants a valid token: open this page with ?token=…");
    if (e && e.status === 403) { sourcesAllowed = false; renderSources(); }
  }
}

function sourceEvent(type, p) {
  const id = p && p.robot_id;
  if (!id) return;
  const s = sources.get(id) || { id, attrs: {} };
  if (type === 'telemetry.connection_established') {
    s.online = true;
    s.connected_at = p.connected_at;
  } else {
    s.online = false;
    s.disconnected_at = s.last_seen = p.disconnected_at;
  }
  sources.set(id, s);
  renderSources();
  clearTimeout(sourcesRefresh);
  sourcesRefresh = setTimeout(() => { sourcesRefresh = null; loadSources(); }, 500);
}

// ---- alerts --------------------------------------------------------------------------
const alertKey = (a) => `${a.rule}|${a.source || ''}`;

function renderAlerts() {
  const list = [...alerts.values()];
  const firing = list.filter((a) => a.state !== 'pending').length;
  $('alerts-count').textContent = list.length ? `${firing} firing${list.length > firing ? `, ${list.length - firing} pending` : ''}` : '';
  const rank = { critical: 0, error: 1, warning: 2, info: 3 };
  list.sort((a, b) => (rank[a.severity] ?? 9) - (rank[b.severity] ?? 9) || (alertKey(a) < alertKey(b) ? -1 : 1));
  $('alerts').replaceChildren(...list.map((a) => {
    const li = el('li', 'alert');
    li.dataset.severity = a.severity || 'info';
    li.dataset.state = a.state || 'firing';
    const what = `${a.metric || ''}${a.source ? '{' + a.source + '}' : ''} = ${fmtNumber(a.value)} (threshold ${fmtNumber(a.threshold)})`;
    const since = toUnix(a.since);
    li.append(el('span', 'sev', a.severity || 'info'), el('span', 'rule', a.rule || '?'),
              el('span', 'muted small', a.state === 'pending' ? 'pending' : Number.isFinite(since) ? 'since ' + fmtClock(since) : ''),
              el('span', 'what', what));
    return li;
  }));
  $('alerts-empty').hidden = list.length > 0;
  $('alerts-empty').textContent = !alertsAvailable ? 'This hub does not serve alerts.'
    : !alertsAllowed ? "This page's token may not read alerts." : 'None.';
}

async function loadAlerts() {
  if (!alertsAvailable || !alertsAllowed) return;
  try {
    const doc = await client.request('/api/v1/alerts');
    const active = Array.isArray(doc.active) ? doc.active : Array.isArray(doc.alerts) ? doc.alerts : [];
    alerts.clear();
    for (const a of active) if (!a.state || a.state === 'firing' || a.state === 'pending') alerts.set(alertKey(a), a);
  } catch (e) {
    if (e && e.status === 404) alertsAvailable = false; // a hub without the alerts stage
    if (e && e.status === 403) alertsAllowed = false;
  }
  renderAlerts();
}

function alertEvent(type, p) {
  if (!p || !p.rule) return;
  if (type === 'alert.firing') alerts.set(alertKey(p), { ...p, state: 'firing' }); else alerts.delete(alertKey(p));
  renderAlerts();
  clearTimeout(alertsRefresh);
  alertsRefresh = setTimeout(() => { alertsRefresh = null; loadAlerts(); }, 500);
}

// ---- event feed ----------------------------------------------------------------------
function addEvent(seq, e, note) {
  const ol = $('events');
  const li = el('li', note ? 'event note' : 'event');
  if (note) {
    li.textContent = note;
  } else {
    li.dataset.seq = seq;
    li.dataset.type = e.type;
    const p = e.payload || {};
    const who = p.robot_id || e.source || '';
    let body = JSON.stringify(p);
    if (body.length > 160) body = body.slice(0, 157) + '…';
    li.title = JSON.stringify(e, null, 2);
    li.append(el('span', 'muted small time', fmtClock(e.timestamp)), el('span', 'type', e.type),
              el('span', 'who', who), el('code', 'payload', body));
  }
  ol.prepend(li);
  while (ol.children.length > FEED_MAX) ol.lastChild.remove();
  $('events-empty').hidden = true;
}

// ---- rendering, batched per animation frame ------------------------------------------
function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderCards();
    for (const c of charts.values()) c.chart.draw();
    if (hostChart) hostChart.draw();
  });
}

function renderUpdated() {
  $('updated').textContent = Number.isFinite(lastDataAt) ? 'data ' + fmtAgo(lastDataAt) : '';
}

// ---- wiring --------------------------------------------------------------------------
client.addEventListener('state', (ev) => {
  showState(ev.detail.state);
  if (ev.detail.state === 'live' && ev.detail.previous !== 'connecting') {
    // back from an outage: catch up on what the lists may have missed
    loadSources();
    loadAlerts();
  }
});
client.addEventListener('status', (ev) => showFlow(ev.detail));
client.addEventListener('metrics', (ev) => {
  const d = ev.detail;
  const t = toUnix(d.timestamp);
  lastDataAt = Number.isFinite(t) ? t : Date.now() / 1000;
  chooseDefaultCharts();
  if (d.full || d.series.length) syncCharts();
  appendLive(lastDataAt);
  renderHost(lastDataAt);
  renderSummary(d.summary);
  renderUpdated();
  queueRender();
});
client.addEventListener('event', (ev) => {
  const { seq, data } = ev.detail;
  if (!data) return;
  addEvent(seq, data);
  if (data.type.startsWith('telemetry.connection_')) sourceEvent(data.type, data.payload);
  else if (data.type.startsWith('alert.')) alertEvent(data.type, data.payload);
});
client.addEventListener('resync', (ev) => addEvent(0, null, `Some events were missed (the hub keeps events from seq ${ev.detail.oldest_seq} on).`));
client.addEventListener('poll', (ev) => {
  if (!ev.detail.ok) return;
  loadSources();
  loadAlerts();
});
client.addEventListener('hub-error', (ev) => console.warn('hub:', ev.detail.error, ev.detail.detail));
$('filter').addEventListener('input', queueRender);
setInterval(() => { renderUpdated(); if (sources.size) renderSources(); }, 1000);

// Tests and the curious: window.metricast.client, .stats()
window.metricast = {
  client,
  stats: () => ({ ...client.stats(), charts: charts.size, cards: cardEls.size, sources: sources.size,
                  alerts: alerts.size, events: $('events').children.length, hostPanel: !$('host').hidden }),
  charted: (name) => charts.has(name),
  chartPoints: (name) => (charts.has(name) ? charts.get(name).chart.pointCount : 0),
};

async function start() {
  showState('connecting');
  renderAlerts();
  // the feed starts with the last FEED_MAX events, replayed over the socket (since=)
  let since;
  try {
    const doc = await client.request('/api/v1/events?since=0&limit=1');
    since = Math.max(0, (doc.latest_seq || 0) - FEED_MAX);
  } catch (e) {
    if (e && e.status === 401) notice("The hub wants a valid token: open this page with ?token=…");
  }
  client.subscribe(['metrics', 'sources', 'alerts', 'events'], { since });
  client.start();
  loadSources();
  loadAlerts();
}

start();
