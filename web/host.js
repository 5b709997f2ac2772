// host.js — the host panel's figures from node_exporter-style series: CPU %, memory %,
// disk and network bytes per second, load. Works on the client's merged series.
//
// Counters carry the hub's per-second `rate`; a cumulative value sent as a gauge (a
// *_total name) gets its rate from successive values instead.

const CPU = /^node_cpu_seconds(_total)?$/;
const DISK_READ = /^node_disk_read_bytes(_total)?$/;
const DISK_WRITE = /^node_disk_written_bytes(_total)?$/;
const NET_RX = /^node_network_receive_bytes(_total)?$/;
const NET_TX = /^node_network_transmit_bytes(_total)?$/;

export class HostFigures {
  #prev = new Map(); // key → [t, value] for gauges that are really counters

  // series: Map key → entry; now: unix seconds. Null when there is no node_* series.
  compute(series, now) {
    let any = false;
    const cpu = { idle: 0, total: 0, perCore: false, n: 0 };
    const cpuAll = { idle: 0, total: 0, n: 0 };
    const sums = { diskRead: null, diskWrite: null, netRx: null, netTx: null };
    let memAvail = null;
    let memTotal = null;
    let load1 = null;
    for (const [key, s] of series) {
      if (!s.name.startsWith('node_')) continue;
      any = true;
      const l = s.labels || {};
      if (CPU.test(s.name)) {
        const r = this.#rate(key, s, now);
        if (r === null) continue;
        // per-core series (cpu="0", "1", ...) when there are any; else whatever there is
        const target = /^\d+$/.test(l.cpu || '') ? cpu : cpuAll;
        target.total += r;
        target.n++;
        if (l.mode === 'idle') target.idle += r;
      } else if (s.name === 'node_memory_MemAvailable_bytes') {
        memAvail = s.value;
      } else if (s.name === 'node_memory_MemTotal_bytes') {
        memTotal = s.value;
      } else if (s.name === 'node_load1') {
        load1 = s.value;
      } else {
        const which = DISK_READ.test(s.name) ? 'diskRead' : DISK_WRITE.test(s.name) ? 'diskWrite'
          : NET_RX.test(s.name) ? 'netRx' : NET_TX.test(s.name) ? 'netTx' : null;
        if (!which) continue;
        if (which.startsWith('net') && l.device === 'lo') continue; // the machine's own chatter
        const r = this.#rate(key, s, now);
        if (r !== null) sums[which] = (sums[which] || 0) + r;
      }
    }
    if (!any) return null;
    const c = cpu.n ? cpu : cpuAll;
    return {
      cpuPercent: c.total > 0 ? Math.min(100, Math.max(0, 100 * (1 - c.idle / c.total))) : null,
      memPercent: memAvail !== null && memTotal > 0 ? 100 * (1 - memAvail / memTotal) : null,
      memAvail,
      memTotal,
      load1,
      ...sums,
    };
  }

  #rate(key, s, now) {
    if (s.kind === 'counter') return typeof s.rate === 'number' ? s.rate : null;
    const t = Date.parse(s.updated_at) / 1000 || now;
    const p = this.#prev.get(key);
    if (p && t === p.t) return p.rate; // the same sample as last time
    let rate = null;
    if (p && t > p.t && s.value >= p.v) rate = (s.value - p.v) / (t - p.t);
    this.#prev.set(key, { t, v: s.value, rate });
    return rate;
  }
}
