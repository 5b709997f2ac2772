// charts.js — a live line chart on uPlot: history first, then points appended as
// updates arrive, trimmed to a moving window.

import uPlot from './uplot.js';

const PALETTE = ['#3b82f6', '#f97316', '#10b981', '#e11d48', '#8b5cf6', '#eab308', '#06b6d4', '#db2777',
                 '#84cc16', '#64748b'];

export class LiveChart {
  #el;
  #plot = null;
  #lines = new Map(); // key → {label, pts: [[t, v], ...] sorted by t}
  #order = [];
  #window;
  #fmt;
  #resize;
  #dirty = false;
  #linesChanged = true;

  // el: an empty element to draw in; fmt: value → axis text.
  constructor(el, { windowSeconds = 300, fmt = String, height = 170 } = {}) {
    this.#el = el;
    this.#window = windowSeconds;
    this.#fmt = fmt;
    this.height = height;
    this.#resize = new ResizeObserver(() => {
      if (this.#plot) this.#plot.setSize({ width: this.#width(), height: this.height });
    });
    this.#resize.observe(el);
  }

  get lineCount() { return this.#lines.size; }
  get pointCount() { let n = 0; for (const l of this.#lines.values()) n += l.pts.length; return n; }

  #width() { return Math.max(200, this.#el.clientWidth); }

  #line(key, label) {
    let l = this.#lines.get(key);
    if (!l) {
      l = { label, pts: [] };
      this.#lines.set(key, l);
      this.#order.push(key);
      this.#order.sort((a, b) => {
        const la = this.#lines.get(a).label || a;
        const lb = this.#lines.get(b).label || b;
        return la < lb ? -1 : la > lb ? 1 : 0;
      });
      this.#linesChanged = true;
    }
    return l;
  }

  // History points for one line (older than what is there: merged in order).
  addHistory(key, label, pts) {
    const l = this.#line(key, label);
    const merged = new Map();
    for (const [t, v] of pts) merged.set(t, v);
    for (const [t, v] of l.pts) merged.set(t, v); // live points win over history
    l.pts = [...merged.entries()].sort((a, b) => a[0] - b[0]);
    this.#trim(l, this.#latest());
    this.#dirty = true;
  }

  // One live point per line: values is an iterable of [key, label, value].
  push(t, values) {
    for (const [key, label, v] of values) {
      const l = this.#line(key, label);
      const last = l.pts[l.pts.length - 1];
      if (last && last[0] >= t) {
        if (last[0] === t) last[1] = v;
        continue;
      }
      l.pts.push([t, v]);
    }
    const now = this.#latest();
    for (const l of this.#lines.values()) this.#trim(l, now);
    this.#dirty = true;
  }

  #latest() {
    let m = 0;
    for (const l of this.#lines.values()) if (l.pts.length) m = Math.max(m, l.pts[l.pts.length - 1][0]);
    return m;
  }

  #trim(l, now) {
    const from = now - this.#window;
    let i = 0;
    while (i < l.pts.length && l.pts[i][0] < from) i++;
    if (i) l.pts.splice(0, i);
  }

  // uPlot wants one x array and one y array per line, aligned (null where a line has no
  // point at that x; lines span the gaps).
  #aligned() {
    const xs = new Set();
    for (const l of this.#lines.values()) for (const [t] of l.pts) xs.add(t);
    const x = [...xs].sort((a, b) => a - b);
    const index = new Map(x.map((t, i) => [t, i]));
    const ys = this.#order.map((k) => {
      const y = new Array(x.length).fill(null);
      for (const [t, v] of this.#lines.get(k).pts) y[index.get(t)] = v;
      return y;
    });
    return [x, ...ys];
  }

  // Redraws if anything changed since the last call (call it from requestAnimationFrame).
  draw() {
    if (!this.#dirty && !this.#linesChanged) return;
    const data = this.#aligned();
    if (this.#linesChanged || !this.#plot) {
      if (this.#plot) this.#plot.destroy();
      this.#plot = new uPlot(this.#options(), data, this.#el);
      this.#linesChanged = false;
    } else {
      this.#plot.setData(data);
    }
    this.#dirty = false;
  }

  #options() {
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue('--muted').trim() || '#888';
    const grid = css.getPropertyValue('--grid').trim() || 'rgba(128,128,128,0.15)';
    const fmt = this.#fmt;
    return {
      width: this.#width(),
      height: this.height,
      legend: { show: this.#order.length > 1, live: false },
      cursor: { points: { size: 6 } },
      scales: { x: { time: true } },
      series: [
        {},
        ...this.#order.map((k, i) => ({
          label: this.#lines.get(k).label || k,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: false },
          value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
        })),
      ],
      axes: [
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 64,
          values: (u, vals) => vals.map((v) => fmt(v)) },
      ],
    };
  }

  destroy() {
    this.#resize.disconnect();
    if (this.#plot) this.#plot.destroy();
    this.#plot = null;
    this.#lines.clear();
  }
}
