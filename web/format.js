// format.js — numbers, units and times for the dashboard. Pure functions.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function fmtNumber(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e9 || a < 1e-3)) return v.toExponential(2);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(digits)));
}

export function fmtBytes(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < BYTE_UNITS.length - 1) { x /= 1024; i++; }
  return (v < 0 ? '-' : '') + (i === 0 ? String(Math.round(x)) : x.toFixed(x >= 100 ? 0 : 1)) + ' ' + BYTE_UNITS[i];
}

export function fmtPercent(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return v.toFixed(v >= 10 ? 0 : 1) + ' %';
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return Math.floor(seconds) + ' s';
  if (seconds < 3600) return Math.floor(seconds / 60) + ' min';
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + ' h';
  return (seconds / 86400).toFixed(1) + ' d';
}

// The unit a metric's name suggests (Prometheus naming conventions plus common ones).
export function unitOf(name) {
  if (/_bytes(_total)?$/.test(name)) return 'bytes';
  if (/(_percent|_percentage|_pct|_usage)$/.test(name)) return '%';
  if (/_ms$|_milliseconds$/.test(name)) return 'ms';
  if (/_seconds(_total)?$/.test(name)) return 's';
  return '';
}

export function fmtUnit(v, unit) {
  if (unit === 'bytes') return fmtBytes(v);
  if (unit === '%') return fmtNumber(v) + ' %';
  if (unit) return fmtNumber(v) + ' ' + unit;
  return fmtNumber(v);
}

// What a card or a chart shows for a series entry: counters their rate, timers their
// mean, gauges and sets their value.
export function displayValue(s) {
  if (s.kind === 'counter') return typeof s.rate === 'number' ? s.rate : 0;
  return s.value;
}

// ISO 8601 or unix seconds → unix seconds (NaN when neither).
export function toUnix(t) {
  if (typeof t === 'number') return t;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? NaN : ms / 1000;
  }
  return NaN;
}

export function fmtClock(unix) {
  if (!Number.isFinite(unix)) return '–';
  const d = new Date(unix * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

export function fmtAgo(unix, now = Date.now() / 1000) {
  if (!Number.isFinite(unix)) return '–';
  const s = Math.max(0, now - unix);
  if (s < 2) return 'just now';
  return fmtDuration(s) + ' ago';
}

export function labelText(labels, omit = []) {
  return Object.keys(labels || {})
    .filter((k) => !omit.includes(k))
    .sort((a, b) => (a === 'source' ? -1 : b === 'source' ? 1 : a < b ? -1 : a > b ? 1 : 0))
    .map((k) => (k === 'source' ? labels[k] : k + '=' + labels[k]))
    .join(' · ');
}
