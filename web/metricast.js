// metricast.js — a client for the metricast hub: live metrics and events over WebSocket,
// with reconnection (exponential backoff with jitter, no attempt limit) and a REST polling
// fallback while the socket is down. ES module, no dependencies; the hub serves it at
// /assets/metricast.js (with CORS, so pages on other origins can import it).
// API: docs/CLIENTS.md, section JS.

const EVENT_TOPICS = { events: '*', sources: 'telemetry.connection_*', alerts: 'alert.*' };
const SEEN_MAX = 4096; // event seqs remembered for de-duplication (replay overlaps live)
const EVENTS_PAGE = 1000; // the hub's largest ?limit=
const EVENTS_PAGES_PER_POLL = 10;

const DEFAULTS = {
  url: undefined, // http(s)://host:port of the hub; default: the page's origin
  token: undefined, // sent as ?token= on the WebSocket URL, Authorization: Bearer on REST
  topics: ['metrics'],
  filter: undefined, // {match, source}: globs for the metrics topic
  since: undefined, // replay events after this seq on the first subscribe
  pollInterval: 30000, // ms between REST polls while the socket is down; 0: never poll
  backoff: { initial: 500, max: 30000, factor: 2 },
  stableAfter: 5000, // a connection open this long resets the backoff
  connectTimeout: 10000, // ms for an opening socket before it is given up
  idleTimeout: 30000, // no message for this long: the socket is presumed dead
  WebSocket: undefined, // constructor; default globalThis.WebSocket
  fetch: undefined, // default globalThis.fetch
};

// A series' identity: its name and its sorted labels.
export function seriesKey(s) {
  const labels = s.labels || {};
  const names = Object.keys(labels).sort();
  return s.name + '{' + names.map((n) => n + '=' + JSON.stringify(labels[n])).join(',') + '}';
}

// The wait before reconnect attempt n (0-based): "equal jitter" — half the capped
// exponential delay plus a random part of the other half, so a fleet of dashboards that
// lost the same hub does not come back in lockstep, and no wait is ever zero.
export function backoffDelay(attempt, backoff = DEFAULTS.backoff, random = Math.random) {
  const b = { ...DEFAULTS.backoff, ...backoff };
  const cap = Math.min(b.max, b.initial * Math.pow(b.factor, Math.min(attempt, 60)));
  return cap / 2 + (random() * cap) / 2;
}

// A shell glob (* and ?) as used by topics and the hub's filters.
export function globToRegExp(glob) {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp('^' + re + '$');
}

export class HttpError extends Error {
  constructor(status, path, body) {
    super(`${path}: HTTP ${status}${body && body.detail ? ' — ' + body.detail : ''}`);
    this.name = 'HttpError';
    this.status = status;
    this.path = path;
    this.body = body;
  }
}

export class MetricastClient extends EventTarget {
  #o;
  #base;
  #WS;
  #fetch;
  #topics = new Set();
  #filter;
  #since; // initial since, until an event is seen
  #lastSeq = null; // the largest event seq seen
  #lastCursor = null; // clustered hubs: the cursor of the newest event, valid on any hub
  #seen = new Set();
  #seenOrder = [];
  #series = new Map();
  #summary = null;
  #flow = null;
  #state = 'idle';
  #ws = null;
  #openedAt = 0;
  #lastRx = 0;
  #attempt = 0;
  #timers = new Set();
  #reconnectTimer = null;
  #connectTimer = null;
  #heartbeat = null;
  #pollTimer = null;
  #pollAbort = null;
  #lastPollOk = false;
  #eventSubPending = null; // the combined event-topic subscribe awaiting the hub's verdict
  #splitEvents = false; // a token limited to some topics: subscribe and poll one by one
  #sockets = new Set(); // created and not yet closed
  #stats = { connects: 0, opens: 0, drops: 0, polls: 0, pollFailures: 0, messages: 0 };
  #onOnline = () => this.#reconnectNow();

  constructor(options = {}) {
    super();
    this.#o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    const base = this.#o.url || (globalThis.location && globalThis.location.origin);
    if (!base) throw new TypeError('MetricastClient: options.url is required outside a page');
    this.#base = String(base).replace(/\/+$/, '');
    this.#WS = this.#o.WebSocket || globalThis.WebSocket;
    this.#fetch = this.#o.fetch || globalThis.fetch.bind(globalThis);
    for (const t of this.#o.topics || []) this.#topics.add(t);
    this.#filter = this.#o.filter;
    this.#since = this.#o.since;
  }

  // ---- public API -------------------------------------------------------------------
  get state() { return this.#state; }
  get series() { return this.#series; }
  get summary() { return this.#summary; }
  get flow() { return this.#flow; }
  get lastSeq() { return this.#lastSeq; }
  get lastCursor() { return this.#lastCursor; }
  get topics() { return [...this.#topics]; }

  // Opens the socket (and polls while it is down) until stop().
  start() {
    if (this.#state !== 'idle' && this.#state !== 'stopped') return this;
    this.#setState('connecting');
    if (globalThis.addEventListener) globalThis.addEventListener('online', this.#onOnline);
    this.#connect();
    return this;
  }

  // Closes the socket, cancels every timer and request. start() may be called again.
  stop() {
    if (globalThis.removeEventListener) globalThis.removeEventListener('online', this.#onOnline);
    for (const id of this.#timers) { clearTimeout(id); clearInterval(id); }
    this.#timers.clear();
    this.#reconnectTimer = this.#connectTimer = this.#heartbeat = this.#pollTimer = null;
    if (this.#pollAbort) this.#pollAbort.abort();
    this.#pollAbort = null;
    this.#closeSocket(1000, 'client stopped');
    this.#setState('stopped');
  }

  // Adds topics; with {filter} replaces the metrics filter, with {since} replays events
  // after that seq. Sent at once when live, and again on every reconnect.
  subscribe(topics, { filter, since } = {}) {
    topics = [].concat(topics);
    for (const t of topics) this.#topics.add(t);
    if (filter !== undefined) this.#filter = filter;
    if (since !== undefined && this.#lastSeq === null) this.#since = since;
    if (this.#state === 'live') {
      if (topics.includes('metrics')) {
        const msg = { type: 'subscribe', topics: ['metrics'] };
        if (this.#filter) msg.filter = this.#filter;
        this.#send(msg);
      }
      this.#subscribeEvents(topics.filter((t) => t !== 'metrics'), since);
    }
  }

  unsubscribe(topics) {
    topics = [].concat(topics).filter((t) => this.#topics.has(t));
    if (!topics.length) return;
    for (const t of topics) this.#topics.delete(t);
    if (this.#state === 'live') this.#send({ type: 'unsubscribe', topics });
  }

  // One REST call with the token; resolves to the parsed JSON, rejects with HttpError.
  async request(path, { method = 'GET', body, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (this.#o.token) headers.Authorization = 'Bearer ' + this.#o.token;
    if (body !== undefined && typeof body !== 'string') {
      body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const res = await this.#fetch(this.#base + path, { method, headers, body, signal, cache: 'no-store' });
    const text = await res.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
    if (!res.ok) throw new HttpError(res.status, path, doc);
    return doc;
  }

  // Poll now (only while the socket is down); resolves when the round is over.
  pollNow() {
    if (this.#state === 'live' || this.#state === 'stopped' || this.#state === 'idle') return Promise.resolve();
    if (this.#pollTimer) { this.#clear(this.#pollTimer); this.#pollTimer = null; }
    return this.#pollOnce();
  }

  // Instrumentation for tests and debugging: nothing here changes behaviour.
  stats() {
    return { ...this.#stats, state: this.#state, sockets: this.#sockets.size, timers: this.#timers.size,
             attempt: this.#attempt, series: this.#series.size, lastSeq: this.#lastSeq };
  }

  // ---- timers: every one is tracked, so stop() leaves none behind ----------------------
  #after(ms, fn) {
    const id = setTimeout(() => { this.#timers.delete(id); fn(); }, ms);
    this.#timers.add(id);
    return id;
  }
  #every(ms, fn) {
    const id = setInterval(fn, ms);
    this.#timers.add(id);
    return id;
  }
  #clear(id) {
    if (id === null || id === undefined) return;
    clearTimeout(id);
    clearInterval(id);
    this.#timers.delete(id);
  }

  #emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  #setState(s) {
    if (s === this.#state) return;
    const previous = this.#state;
    this.#state = s;
    this.#emit('state', { state: s, previous });
  }

  // ---- the socket -------------------------------------------------------------------
  #wsUrl() {
    const u = new URL(this.#base + '/ws');
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.#o.token) u.searchParams.set('token', this.#o.token);
    return u.toString();
  }

  #connect() {
    this.#reconnectTimer = null;
    if (this.#state === 'stopped') return;
    this.#stats.connects++;
    let ws;
    try {
      ws = new this.#WS(this.#wsUrl());
    } catch (e) {
      this.#emit('error', { message: String(e && e.message ? e.message : e) });
      this.#lost(false);
      return;
    }
    this.#ws = ws;
    this.#sockets.add(ws);
    ws.addEventListener('close', () => this.#sockets.delete(ws));
    ws.onopen = () => { if (ws === this.#ws) this.#opened(); };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#message(ev.data); };
    ws.onclose = () => { if (ws === this.#ws) this.#lost(true); };
    ws.onerror = () => {}; // a close event always follows
    this.#connectTimer = this.#after(this.#o.connectTimeout, () => {
      this.#connectTimer = null;
      if (ws === this.#ws && ws.readyState !== 1) this.#lost(true);
    });
  }

  #opened() {
    this.#clear(this.#connectTimer);
    this.#connectTimer = null;
    this.#stats.opens++;
    this.#openedAt = this.#lastRx = Date.now();
    // polling stops: whatever it was doing is superseded by the socket
    this.#clear(this.#pollTimer);
    this.#pollTimer = null;
    if (this.#pollAbort) this.#pollAbort.abort();
    this.#pollAbort = null;
    this.#flow = null;
    // metrics on its own, the event topics together: a subscribe is all or nothing, and a
    // token limited to some topics must not cost the others
    if (this.#topics.has('metrics')) {
      const msg = { type: 'subscribe', topics: ['metrics'] };
      if (this.#filter) msg.filter = this.#filter;
      this.#send(msg);
    }
    // behind a load balancer the next hub may be another one: a cursor resumes anywhere,
    // a seq only on the hub that gave it
    const since = this.#lastCursor !== null ? this.#lastCursor
      : this.#lastSeq !== null ? this.#lastSeq : this.#since;
    this.#subscribeEvents(this.#eventTopics(), since);
    this.#setState('live');
    if (this.#lastSeq === null && this.#since === undefined && this.#eventTopics().length) this.#learnLatestSeq();
    const hb = Math.max(1000, this.#o.idleTimeout / 3);
    this.#heartbeat = this.#every(hb, () => {
      const quiet = Date.now() - this.#lastRx;
      if (quiet > this.#o.idleTimeout) this.#lost(true);
      else if (quiet >= hb) this.#send({ type: 'ping' });
    });
  }

  #subscribeEvents(topics, since) {
    if (!topics.length) return;
    const one = (t) => {
      const msg = { type: 'subscribe', topics: t };
      if (since !== undefined && since !== null) msg.since = since;
      this.#send(msg);
    };
    if (this.#splitEvents || topics.length === 1) {
      for (const t of topics) one([t]);
      this.#eventSubPending = null;
    } else {
      one(topics);
      this.#eventSubPending = { topics, since };
    }
  }

  // Live-only subscribers still need a seq to resume from after a drop: ask the hub for
  // its latest (best effort; any event seen meanwhile wins, being at least as recent).
  async #learnLatestSeq() {
    try {
      const doc = await this.request('/api/v1/events?since=0&limit=1');
      if (doc && typeof doc.latest_seq === 'number' && (this.#lastSeq === null || doc.latest_seq > this.#lastSeq))
        this.#lastSeq = doc.latest_seq;
    } catch { /* the next poll or event will tell */ }
  }

  #send(obj) {
    const ws = this.#ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }

  #closeSocket(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(code, reason); } catch { /* already closing */ }
  }

  // The socket is gone (closed, failed to open, timed out, or silent too long).
  #lost(wasOpen) {
    const wasLive = this.#state === 'live';
    this.#clear(this.#connectTimer);
    this.#clear(this.#heartbeat);
    this.#connectTimer = this.#heartbeat = null;
    this.#closeSocket(1000, 'reconnecting');
    if (this.#state === 'stopped') return;
    if (wasOpen) this.#stats.drops++;
    if (wasOpen && Date.now() - this.#openedAt >= this.#o.stableAfter) this.#attempt = 0;
    if (wasLive || this.#state === 'connecting') {
      this.#lastPollOk = false;
      this.#setState('reconnecting');
    }
    const delay = backoffDelay(this.#attempt++, this.#o.backoff);
    this.#clear(this.#reconnectTimer);
    this.#reconnectTimer = this.#after(delay, () => this.#connect());
    if (wasLive || !this.#pollTimer) this.#schedulePoll(0);
  }

  #reconnectNow() {
    if (this.#state === 'live' || this.#state === 'stopped' || this.#state === 'idle') return;
    if (this.#ws) return; // an attempt is under way
    this.#attempt = 0;
    this.#clear(this.#reconnectTimer);
    this.#connect();
  }

  #message(raw) {
    this.#lastRx = Date.now();
    this.#stats.messages++;
    let m;
    try { m = JSON.parse(raw); } catch { return; }
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'metrics:update': this.#applyMetrics(m, 'ws'); break;
      case 'event': this.#applyEvent(m); break;
      case 'resync': this.#emit('resync', { oldest_seq: m.oldest_seq }); break;
      case 'status': this.#flow = m; this.#emit('status', m); break;
      case 'error':
        if (this.#eventSubPending && (m.error === 'forbidden' || m.error === 'unknown_topic')) {
          // refused as a whole: take what the token allows, topic by topic
          const { topics, since } = this.#eventSubPending;
          this.#splitEvents = true;
          this.#subscribeEvents(topics, since);
        }
        this.#emit('hub-error', m);
        break;
      default: break;
    }
    this.#emit('message', m);
  }

  // ---- state merging ----------------------------------------------------------------
  #applyMetrics(m, via) {
    const data = m.data || {};
    const list = Array.isArray(data.series) ? data.series : [];
    if (m.full) this.#series = new Map();
    for (const s of list) this.#series.set(seriesKey(s), s);
    if (data.summary) this.#summary = data.summary;
    this.#emit('metrics', { full: !!m.full, reason: m.reason, series: list, summary: this.#summary,
                            seq: m.seq, timestamp: m.timestamp, via });
  }

  #applyEvent(m) {
    const seq = m.seq;
    if (typeof seq !== 'number') return;
    // clustered: seqs are per hub, so an event is known by its id across a switch of hubs
    const clustered = typeof m.cursor === 'string';
    const key = clustered && m.data && typeof m.data.id === 'string' ? 'id:' + m.data.id : seq;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#seenOrder.push(key);
    if (this.#seenOrder.length > SEEN_MAX) this.#seen.delete(this.#seenOrder.shift());
    if (clustered) this.#lastCursor = m.cursor;
    if (this.#lastSeq === null || seq > this.#lastSeq) this.#lastSeq = seq;
    this.#emit('event', { seq, data: m.data });
  }

  #eventTopics() { return [...this.#topics].filter((t) => t !== 'metrics'); }

  #wantsEvent(type) {
    return this.#eventTopics().some((t) => globToRegExp(EVENT_TOPICS[t] || t).test(type));
  }

  // ---- polling while the socket is down ---------------------------------------------
  #schedulePoll(delay) {
    if (!this.#o.pollInterval || this.#state === 'stopped' || this.#state === 'live') return;
    this.#clear(this.#pollTimer);
    this.#pollTimer = this.#after(delay, () => { this.#pollTimer = null; this.#pollOnce(); });
  }

  async #pollOnce() {
    if (this.#pollAbort || this.#state === 'live' || this.#state === 'stopped') return;
    const ctl = new AbortController();
    this.#pollAbort = ctl;
    this.#stats.polls++;
    let error = null;
    try {
      await this.#pollRound(ctl.signal);
    } catch (e) {
      error = e;
    }
    if (this.#pollAbort === ctl) this.#pollAbort = null;
    if (ctl.signal.aborted || this.#state === 'live' || this.#state === 'stopped') return;
    if (error) this.#stats.pollFailures++;
    this.#lastPollOk = !error;
    this.#setState(this.#lastPollOk ? 'polling' : 'reconnecting');
    this.#emit('poll', { ok: !error, error });
    this.#schedulePoll(this.#o.pollInterval);
  }

  async #pollRound(signal) {
    const q = (params) => {
      const s = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
      const str = s.toString();
      return str ? '?' + str : '';
    };
    if (this.#topics.has('metrics')) {
      const f = this.#filter || {};
      const [doc, summary] = await Promise.all([
        this.request('/api/v1/metrics' + q({ match: f.match, source: f.source }), { signal }),
        this.request('/api/v1/summary', { signal }),
      ]);
      if (signal.aborted) return;
      this.#applyMetrics({ full: true, reason: 'poll', data: { series: doc.series || [], summary },
                           timestamp: doc.timestamp }, 'poll');
    }
    const evTopics = this.#eventTopics();
    if (!evTopics.length) return;
    const typeOf = (t) => (t === 'events' ? undefined : EVENT_TOPICS[t] || t);
    const start = this.#lastSeq !== null ? this.#lastSeq : this.#since;
    if (start === undefined || start === null) {
      // live-only: only what happens from now on matters
      const doc = await this.request('/api/v1/events' + q({ since: 0, limit: 1, type: typeOf(evTopics[0]) }), { signal });
      if (!signal.aborted && this.#lastSeq === null) this.#lastSeq = doc.latest_seq;
      return;
    }
    // one pattern: the hub filters (type=); several: one read of everything, filtered
    // here — or, for a token that may not read everything, one read per topic it may
    const reads = evTopics.length === 1 ? [typeOf(evTopics[0])] : this.#splitEvents ? evTopics.map(typeOf) : [undefined];
    if (this.#lastCursor !== null && reads.length === 1) {
      // clustered: from the cursor, whichever hub answers
      let cursor = this.#lastCursor;
      for (let page = 0; page < EVENTS_PAGES_PER_POLL; page++) {
        const doc = await this.request('/api/v1/events' + q({ cursor, limit: EVENTS_PAGE, type: reads[0] }), { signal });
        if (signal.aborted) return;
        if (doc.resync) this.#emit('resync', { oldest_seq: doc.oldest_seq });
        for (const e of doc.events || []) if (this.#wantsEvent(e.data && e.data.type)) this.#applyEvent(e);
        if (typeof doc.next_cursor === 'string') cursor = this.#lastCursor = doc.next_cursor;
        if ((doc.count || 0) < EVENTS_PAGE) break;
      }
      return;
    }
    let next = start;
    for (let r = 0; r < reads.length; r++) {
      let since = start;
      try {
        for (let page = 0; page < EVENTS_PAGES_PER_POLL; page++) {
          const doc = await this.request('/api/v1/events' + q({ since, limit: EVENTS_PAGE, type: reads[r] }), { signal });
          if (signal.aborted) return;
          if (doc.resync) this.#emit('resync', { oldest_seq: doc.oldest_seq });
          for (const e of doc.events || []) if (this.#wantsEvent(e.data && e.data.type)) this.#applyEvent(e);
          if (typeof doc.next_since === 'number') since = doc.next_since;
          if ((doc.count || 0) < EVENTS_PAGE) break;
        }
      } catch (e) {
        if (!(e instanceof HttpError && e.status === 403)) throw e;
        if (reads.length === 1 && reads[0] === undefined && evTopics.length > 1 && !this.#splitEvents) {
          this.#splitEvents = true; // not allowed to read everything: per topic from now on
          reads.push(...evTopics.map(typeOf));
        }
        continue; // a topic this token may not read
      }
      next = Math.max(next, since);
    }
    if (this.#lastSeq === null || next > this.#lastSeq) this.#lastSeq = next;
  }
}
