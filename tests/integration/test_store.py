#!/usr/bin/python3
"""The SQLite store (--data DIR/metricast.db) seen from outside: event seq and `since`
replay across a restart, the in-memory history reloaded, kill -9 under load (every
acknowledged event survives with its seq and id; at most ~2 s of raw points lost),
rollups through GET /api/v1/series/{name}?step=60 (LONG: waits for a minute boundary,
up to ~65 s), a locked database (a foreign writer holding the lock: aggregation fails
with error_type "locked" / health 503, live data goes on, health comes back), a file
that is not a healthy store (exit 2, untouched; --reset-store moves it aside), and a
full disk (a 1 MiB tmpfs when this runs as root and may mount, else RLIMIT_FSIZE)."""

import calendar
import contextlib
import ctypes
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, HOST, Hub, HubTestCase, RawWS, main, run_daemon,  # noqa: E402
                     t, wait_for)

DB = "metricast.db"
LOCK_HOLD_S = 9.0  # a job can queue behind two failing writes (2 s busy timeout each) + its own 2 s


# --------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------
class BackgroundPublish(threading.Thread):
    """POST /api/v1/events on its own connection; the answer waits for the commit, so
    while the store cannot write it must not come back (202 only once committed)."""

    def __init__(self, hub, payload):
        super().__init__(daemon=True)
        self.client = Client(hub, timeout=60.0)
        self.payload = payload
        self.answer = None  # (status, doc, unix time of the answer)

    def run(self):
        try:
            st, doc = self.client.post_event(payload=self.payload)
            self.answer = (st, doc, time.time())
        finally:
            self.client.close()


class Client:
    """Keep-alive HTTP client: events, ingest, series, health."""

    def __init__(self, hub, timeout=10.0):
        self.hub = hub
        self.timeout = timeout
        self.conn = None

    def req(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.hub.port,
                                                       timeout=t(self.timeout))
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    doc = json.loads(data.decode("utf-8"))
                except ValueError:
                    doc = data
                return resp.status, doc
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_event(self, etype="tests.stored", payload=None):
        body = json.dumps({"type": etype, "payload": payload or {}}).encode()
        return self.req("POST", "/api/v1/events", body, {"Content-Type": "application/json"})

    def publish(self, etype="tests.stored", payload=None):
        st, doc = self.post_event(etype, payload)
        if st != 202:
            raise AssertionError("POST /api/v1/events answered %d: %r" % (st, doc))
        return doc

    def ingest(self, samples):
        body = json.dumps({"samples": samples}).encode()
        return self.req("POST", "/api/v1/ingest", body, {"Content-Type": "application/json"})

    def events(self, since=0, etype=None, limit=1000):
        """Every retained event after `since` (all pages)."""
        out = []
        while True:
            q = {"since": since, "limit": limit}
            if etype:
                q["type"] = etype
            st, doc = self.req("GET", "/api/v1/events?" + urllib.parse.urlencode(q))
            if st != 200:
                raise AssertionError("GET /api/v1/events answered %d: %r" % (st, doc))
            out += doc["events"]
            if not doc["events"] or doc["next_since"] >= doc["latest_seq"]:
                return out, doc
            since = doc["next_since"]

    def get(self, path):
        return self.req("GET", path)

    def health(self):
        return self.req("GET", "/api/v1/health")

    def close(self):
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def restart(hub, kill=False, extra_args=()):
    """Stops (SIGTERM, expecting exit 0) or SIGKILLs the daemon and starts it again on the
    same data directory; the previous run's log is kept in hub.old_logs."""
    if kill:
        hub.proc.kill()
        hub.proc.wait(timeout=10)
        hub._release()
    else:
        code = hub.stop(timeout=10.0)
        if code != 0:
            raise AssertionError("daemon exited with %s after SIGTERM:\n%s" % (code, hub.log()))
    hub.old_logs = getattr(hub, "old_logs", []) + [hub.log()]
    hub.argv = hub.argv + list(extra_args)
    hub.start(15.0)
    return hub


def seq_list(events):
    return [e["seq"] for e in events]


def assert_contiguous(tc, seqs, what):
    tc.assertEqual(seqs, sorted(seqs), "%s: not in seq order: %r" % (what, seqs))
    tc.assertEqual(len(seqs), len(set(seqs)), "%s: duplicate seq: %r" % (what, seqs))
    if seqs:
        tc.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))),
                       "%s: gap in seq: %r" % (what, seqs))


def db_query(path, sql, args=()):
    """Read the store file while the daemon runs (WAL: a reader never blocks it)."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def raw_points(path, name, since=0):
    """{labels JSON: [(t, v), ...]} of the raw points of series `name` in the file: one
    row per second, its data n records of (series id u32, value f64), little-endian."""
    ids = {i: labels for i, labels in db_query(path, "SELECT id, labels FROM series "
                                                     "WHERE name = ?", (name,))}
    out = {labels: [] for labels in ids.values()}
    for t, data in db_query(path, "SELECT t, data FROM points WHERE t >= ? ORDER BY t",
                            (since,)):
        for sid, v in struct.iter_unpack("<Id", data):
            if sid in ids:
                out[ids[sid]].append((t, v))
    return out


def _iso_to_unix(s):
    """'2026-12-02T06:34:29.590Z' -> Unix seconds."""
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + s[19:-1])


class Ticker(threading.Thread):
    """A WebSocket subscriber to `metrics` that records every metrics:update's own
    timestamp (the hub's push time), so a reader thread starved by a busy machine still
    counts the seconds the hub pushed in, once it has caught up."""

    def __init__(self, hub):
        super().__init__(daemon=True)
        self.ws = RawWS(hub.port, "/ws?topics=metrics")
        self.times = []
        self.stop_flag = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_flag.is_set():
                try:
                    m = self.ws.recv_json(timeout=1.0)
                except socket.timeout:
                    continue
                if m.get("type") == "metrics:update":
                    self.times.append(_iso_to_unix(m["timestamp"]))
        except Exception as e:  # noqa: BLE001 - reported by the test
            if not self.stop_flag.is_set():
                self.error = e

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=5)
        self.ws.close()

    def count_between(self, a, b, catch_up=15.0):
        """Updates the hub pushed in [a, b]; first waits (bounded) until one pushed after
        b has been read, i.e. the reader has caught up with the window."""
        deadline = time.time() + catch_up
        while time.time() < deadline and not (self.times and self.times[-1] > b):
            time.sleep(0.05)
        return sum(1 for x in list(self.times) if a <= x <= b)


class Feeder(threading.Thread):
    """Ingests gauges every `period` s; records (time, status, seconds taken)."""

    def __init__(self, hub, name="feed_g", sources=("r1",), period=0.1):
        super().__init__(daemon=True)
        self.c = Client(hub, timeout=5.0)
        self.name_ = name
        self.sources = sources
        self.period = period
        self.stop_flag = threading.Event()
        self.results = []
        self.k = 0

    def value(self, k, src_i):
        return float((k * 7 + src_i * 3) % 13) + src_i * 100

    def run(self):
        while not self.stop_flag.is_set():
            samples = [{"name": self.name_, "value": self.value(self.k, i),
                        "labels": {"source": s}} for i, s in enumerate(self.sources)]
            t0 = time.time()
            try:
                st, _ = self.c.ingest(samples)
            except Exception:  # noqa: BLE001 - the daemon may be gone (kill test)
                st = None
            self.results.append((t0, st, time.time() - t0))
            self.k += 1
            self.stop_flag.wait(self.period)
        self.c.close()

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=10)


# --------------------------------------------------------------------------------------
# restart: seq, replay, history
# --------------------------------------------------------------------------------------
class RestartTest(HubTestCase):
    def test_restart_keeps_seq_and_since_replay(self):
        hub = self.hub()
        c = Client(hub)
        before = [c.publish(payload={"i": i}) for i in range(6)]
        self.assertEqual([a["seq"] for a in before], list(range(before[0]["seq"],
                                                              before[0]["seq"] + 6)))
        old, _ = c.events(since=0)
        c.close()
        restart(hub)
        c = Client(hub)
        reloaded, doc = c.events(since=0)
        self.assertFalse(doc["resync"])
        by_seq = {e["seq"]: e for e in reloaded}
        for e in old:
            self.assertIn(e["seq"], by_seq, "seq %d lost across the restart" % e["seq"])
            self.assertEqual(by_seq[e["seq"]]["data"], e["data"],
                             "event seq %d changed across the restart" % e["seq"])
        for a in before:
            self.assertEqual(by_seq[a["seq"]]["data"]["id"], a["id"])
        latest_before = max(e["seq"] for e in old)
        after = [c.publish(payload={"j": j}) for j in range(4)]
        self.assertEqual(after[0]["seq"], doc["latest_seq"] + 1,
                         "seq after the restart does not continue: %r, latest %d"
                         % (after, doc["latest_seq"]))
        self.assertGreater(after[0]["seq"], latest_before)
        every, _ = c.events(since=0)
        assert_contiguous(self, seq_list(every), "GET since=0 after restart")
        # since from before the restart: exactly the rest, no gap, no duplicate
        mid = before[2]["seq"]
        rest, _ = c.events(since=mid)
        self.assertEqual(seq_list(rest), [s for s in seq_list(every) if s > mid])
        # the same over a WebSocket subscription, then a live one
        ws = RawWS(hub.port)
        try:
            ws.send_json({"type": "subscribe", "topics": ["tests.*"], "since": mid})
            want = [a["seq"] for a in before[3:]] + [a["seq"] for a in after]
            got = []
            while len(got) < len(want):
                m = ws.recv_json(timeout=5)
                if m.get("type") == "event":
                    got.append(m["seq"])
                elif m.get("type") == "resync":
                    self.fail("resync after a restart: %r" % m)
            self.assertEqual(got, want)
            live = c.publish(payload={"live": 1})
            while True:
                m = ws.recv_json(timeout=5)
                if m.get("type") == "event":
                    self.assertEqual(m["seq"], live["seq"])
                    self.assertEqual(m["data"]["id"], live["id"])
                    break
        finally:
            ws.close()
        c.close()

    def test_history_reloaded_after_restart(self):
        hub = self.hub()
        c = Client(hub)
        for i in range(4):
            st, _ = c.ingest([{"name": "hist_g", "value": 10 + i, "labels": {"source": "r1"}}])
            self.assertEqual(st, 202)
            time.sleep(1.05)

        def points():
            st, doc = c.get("/api/v1/series/hist_g?window=120")
            return doc["series"][0]["points"] if st == 200 and doc["series"] else None
        pts = wait_for(lambda: (lambda p: p if p and len(p) >= 4 else None)(points()),
                       timeout=5, desc="4 history points")
        c.close()
        restart(hub)
        c = Client(hub)
        st, doc = c.get("/api/v1/series/hist_g?window=120")
        self.assertEqual(st, 200, "no history after the restart: %r" % (doc,))
        self.assertEqual(doc["series"][0]["labels"], {"source": "r1"})
        after = doc["series"][0]["points"]
        for p in pts:
            self.assertIn(p, after, "point %r from before the restart is missing: %r"
                          % (p, after))
        st, doc = c.get("/api/v1/metrics?match=hist_g")
        self.assertEqual(st, 200)
        self.assertEqual(doc["series"][0]["value"], 13, "current value not reloaded: %r" % doc)
        c.close()


# --------------------------------------------------------------------------------------
# the 1 s roll while the hub thread is stalled
# --------------------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000


@contextlib.contextmanager
def hub_thread_stopped(pid):
    """Stops only the daemon's main thread (the hub loop) while the block runs: with
    PTRACE_SEIZE + PTRACE_INTERRUPT that one thread enters a ptrace-stop while the StatsD
    threads and the workers go on; PTRACE_DETACH lets it run again."""
    if _libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        raise unittest.SkipTest("ptrace(PTRACE_SEIZE) refused: errno %d" % ctypes.get_errno())
    try:
        if _libc.ptrace(PTRACE_INTERRUPT, pid, None, None) != 0:
            raise AssertionError("ptrace(PTRACE_INTERRUPT): errno %d" % ctypes.get_errno())
        os.waitpid(pid, WALL)  # the thread is stopped once this returns
        yield
    finally:
        _libc.ptrace(PTRACE_DETACH, pid, None, None)


class RollTest(HubTestCase):
    def test_stalled_hub_keeps_every_second_apart(self):
        """The hub thread stops for 3 s while StatsD batches keep arriving: each second
        still gets its own point with its own samples (none skipped, none merged), in the
        history and in the file."""
        hub = self.hub(statsd=True)
        c = Client(hub)
        stop = threading.Event()
        sent = []

        def sender():
            due = time.time()
            while not stop.is_set():
                hub.send_statsd("stall_c:1|c")
                sent.append(time.time())
                due += 0.05
                time.sleep(max(0.0, due - time.time()))
        th = threading.Thread(target=sender, daemon=True)
        th.start()
        try:
            time.sleep(2.3)
            with hub_thread_stopped(hub.proc.pid):
                stalled = (time.time(), None)
                time.sleep(3.0)
                stalled = (stalled[0], time.time())
            time.sleep(2.5)
        finally:
            stop.set()
            th.join(timeout=5)
        first_s, last_s = int(sent[0]) + 1, int(sent[-1]) - 1  # whole seconds sent

        def points():
            # the last samples may be flushed into the second after the one they were
            # sent in: wait until that second is closed too
            st, doc = c.get("/api/v1/series/stall_c?window=120")
            pts = doc["series"][0]["points"] if st == 200 and doc.get("series") else []
            done = pts and pts[-1][0] >= last_s + 1 and sum(p[1] for p in pts) >= len(sent)
            return pts if done else None
        pts = wait_for(points, timeout=5, desc="the history up to the end of the feed")
        per_sec = {p[0]: p[1] for p in pts}
        inside = list(range(first_s, last_s + 1))
        missing = [s for s in inside if s not in per_sec]
        self.assertEqual(missing, [], "seconds without a point (stall %.1f-%.1f): %r"
                         % (stalled[0], stalled[1], sorted(per_sec.items())))
        # 20 samples a second, give or take what one 100 ms StatsD flush moves across a
        # boundary; a second that took over its neighbours' samples would hold 40+
        odd = {s: per_sec[s] for s in inside if not 10 <= per_sec[s] <= 30}
        self.assertEqual(odd, {}, "seconds whose count is not about 20 (stall %.1f-%.1f): %r"
                         % (stalled[0], stalled[1], sorted(per_sec.items())))
        self.assertTrue(any(stalled[0] + 1 <= s <= stalled[1] - 1 for s in inside))
        self.assertEqual(sum(p[1] for p in pts), len(sent), "samples lost or counted twice")
        # the store got the same seconds
        stored = wait_for(lambda: (lambda r: r if r and max(t for t, _ in r) >= last_s else None)(
            raw_points(os.path.join(hub.data_dir, DB), "stall_c").get("{}")), timeout=5,
            desc="the raw points in the file")
        self.assertEqual({t: v for t, v in stored if first_s <= t <= last_s},
                         {s: per_sec[s] for s in inside})
        c.close()


# --------------------------------------------------------------------------------------
# kill -9 under load
# --------------------------------------------------------------------------------------
class KillTest(HubTestCase):
    def test_kill9_keeps_acknowledged_events_and_loses_at_most_2s(self):
        # a window large enough for every event acknowledged in the run: the check reads
        # them back through GET /api/v1/events after the restart
        hub = self.hub(args=["--events-retain", "1000000"])
        acked = []
        stop = threading.Event()

        def poster():
            c = Client(hub, timeout=5.0)
            i = 0
            while not stop.is_set():
                try:
                    st, doc = c.post_event(payload={"i": i})
                except Exception:  # noqa: BLE001 - killed
                    break
                if st == 202:
                    acked.append((doc["seq"], doc["id"], doc.get("stored", True)))
                i += 1
            c.close()

        feeder = Feeder(hub, name="kill_g", period=0.05)
        threads = [threading.Thread(target=poster, daemon=True) for _ in range(3)]
        feeder.start()
        for th in threads:
            th.start()
        time.sleep(3.3)
        kill_time = time.time()
        hub.proc.kill()
        stop.set()
        feeder.stop()
        for th in threads:
            th.join(timeout=10)
        n_acked = len(acked)
        self.assertGreater(n_acked, 20, "too few events acknowledged under load")
        self.assertEqual([a for a in acked if a[2] is not True], [],
                         "events acknowledged as not stored under normal load")
        restart(hub, kill=True)
        c = Client(hub)
        events, doc = c.events(since=0)
        self.assertFalse(doc["resync"])
        by_seq = {e["seq"]: e for e in events}
        lost = [(s, i) for s, i, _ in acked if s not in by_seq]
        self.assertEqual(lost, [], "%d of %d acknowledged events lost after kill -9"
                         % (len(lost), n_acked))
        changed = [(s, i, by_seq[s]["data"]["id"]) for s, i, _ in acked
                   if by_seq[s]["data"]["id"] != i]
        self.assertEqual(changed, [], "acknowledged events with another id after kill -9")
        assert_contiguous(self, seq_list(events), "events after kill -9")
        nxt = c.publish()
        self.assertGreater(nxt["seq"], max(s for s, _, _ in acked))

        # raw points: the last stored second is at most ~2 s before the kill
        stored = raw_points(os.path.join(hub.data_dir, DB), "kill_g", int(kill_time) - 60)
        self.assertTrue(any(stored.values()), "no raw point of kill_g stored")
        last_t = max(t for pts in stored.values() for t, _ in pts)
        lost_s = kill_time - (last_t + 1)  # the point of t covers [t, t+1)
        sys.stderr.write("kill -9: %d events acked, last point ends %.2f s before the kill\n"
                         % (n_acked, lost_s))
        self.assertLessEqual(lost_s, 2.5, "raw points of the last %.2f s before kill -9 lost"
                             % lost_s)
        st, doc = c.get("/api/v1/series/kill_g?window=300")
        self.assertEqual(st, 200)
        self.assertEqual(max(p[0] for p in doc["series"][0]["points"]), last_t,
                         "history reloaded does not end at the last stored point")
        c.close()


# --------------------------------------------------------------------------------------
# rollups (LONG)
# --------------------------------------------------------------------------------------
class RollupTest(HubTestCase):
    def test_step60_rollups_match_the_raw_seconds_LONG(self):
        """LONG: ingests until a minute boundary has passed (up to ~62 s)."""
        hub = self.hub(args=["--aggregate-every", "1"])
        feeder = Feeder(hub, name="roll_g", sources=("r1", "r2"), period=0.2)
        start = time.time()
        feeder.start()
        minute = int(start) // 60 * 60
        try:
            # the minute we started in is complete at minute+60; a job runs every second
            deadline = minute + 60 + 2.5
            while time.time() < deadline:
                self.assertTrue(hub.alive())
                time.sleep(0.5)
        finally:
            feeder.stop()
        c = Client(hub)

        def rollup():
            st, doc = c.get("/api/v1/series/roll_g?step=60&from=%d&to=%d"
                            % (minute, minute + 59))
            return doc if st == 200 else None
        doc = wait_for(rollup, timeout=10, interval=0.5, desc="a step=60 rollup")
        self.assertEqual(doc["name"], "roll_g")
        self.assertEqual(doc["step"], 60)
        self.assertEqual(doc["columns"], ["t", "count", "sum", "min", "max", "last"])
        self.assertEqual(len(doc["series"]), 2)
        st, hist = c.get("/api/v1/series/roll_g?window=300")
        self.assertEqual(st, 200)
        for s in doc["series"]:
            src = s["labels"]["source"]
            self.assertEqual(s["kind"], "gauge")
            self.assertEqual(len(s["points"]), 1, s)
            t0, count, total, mn, mx, last = s["points"][0]
            self.assertEqual(t0, minute)
            raw = [p for h in hist["series"] if h["labels"]["source"] == src
                   for p in h["points"] if minute <= p[0] < minute + 60]
            vals = [v for _, v in sorted(raw)]
            self.assertTrue(vals)
            got = {"count": count, "sum": round(total, 6), "min": mn, "max": mx, "last": last}
            want = {"count": len(vals), "sum": round(sum(vals), 6), "min": min(vals),
                    "max": max(vals), "last": vals[-1]}
            self.assertEqual(got, want, "rollup of minute %d for source %s differs from its "
                             "1 s history points %r" % (minute, src, sorted(raw)))
        # filters and refusals
        st, one = c.get("/api/v1/series/roll_g?step=60&from=%d&to=%d&source=r2"
                        % (minute, minute + 59))
        self.assertEqual(st, 200)
        self.assertEqual([s["labels"] for s in one["series"]], [{"source": "r2"}])
        st, err = c.get("/api/v1/series/roll_g?step=60&source=nope")
        self.assertEqual(st, 404, err)
        st, err = c.get("/api/v1/series/no_such_series?step=60")
        self.assertEqual(st, 404, err)
        self.assertEqual(err["error"], "not_found")
        st, err = c.get("/api/v1/series/roll_g?step=120")
        self.assertEqual(st, 400, err)
        if (minute + 60) % 3600:
            st, err = c.get("/api/v1/series/roll_g?step=3600")
            self.assertEqual(st, 404, "no complete hour yet: %r" % (err,))
        else:
            # the minute was the hour's last: that hour is complete, and it holds exactly
            # the minute's samples (the feed started in it)
            def hour():
                st, doc = c.get("/api/v1/series/roll_g?step=3600&from=%d&to=%d"
                                % (minute + 60 - 3600, minute + 59))
                return doc if st == 200 and len(doc["series"]) == 2 else None
            hdoc = wait_for(hour, timeout=10, interval=0.5, desc="the hour's rollup")
            by_src = {s["labels"]["source"]: s["points"] for s in doc["series"]}
            for s in hdoc["series"]:
                (h_point,) = s["points"]
                self.assertEqual(h_point[0], minute + 60 - 3600)
                self.assertEqual(h_point[1:], by_src[s["labels"]["source"]][0][1:], hdoc)
        # the jobs were announced
        started, _ = c.events(etype="metrics.aggregation_started")
        done, _ = c.events(etype="metrics.aggregation_completed")
        failed, _ = c.events(etype="metrics.aggregation_failed")
        self.assertEqual(failed, [])
        # one job a second; how many ran depends on where the minute boundary fell
        self.assertGreaterEqual(len(done), 1)
        self.assertGreaterEqual(len(started), len(done))
        for e in started[:3]:
            self.assertEqual(set(e["data"]["payload"]), {"job_id", "started_at"})
        for e in done[:3]:
            self.assertEqual(set(e["data"]["payload"]),
                             {"job_id", "entries_processed", "duration_ms", "completed_at"})
        ids_started = {e["data"]["payload"]["job_id"] for e in started}
        for e in done:
            self.assertIn(e["data"]["payload"]["job_id"], ids_started)
        self.assertTrue(any(e["data"]["payload"]["entries_processed"] >= 2 for e in done),
                        "no job reports the two minute rollups it wrote")
        c.close()


# --------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------
class LockedTest(HubTestCase):
    def test_locked_database_fails_jobs_live_data_goes_on(self):
        hub = self.hub(args=["--aggregate-every", "1"])
        c = Client(hub)
        wait_for(lambda: c.health()[0] == 200, timeout=5, desc="healthy at start")
        ticker = Ticker(hub)
        ticker.start()
        feeder = Feeder(hub, name="lock_g", period=0.1)
        feeder.start()
        time.sleep(1.5)
        first_seq = c.publish()["seq"]
        con = sqlite3.connect(os.path.join(hub.data_dir, DB), timeout=10, isolation_level=None)
        health_seen = []
        event_answers = []
        try:
            con.execute("BEGIN EXCLUSIVE")
            lock_t0 = time.time()
            # an event published while the file is locked: its answer must wait
            publisher = BackgroundPublish(hub, {"during": "lock"})
            publisher.start()
            # held past the store's busy timeout (2 s) four times over, so that an
            # aggregation job (queued behind a failing write) also gives up
            while time.time() < lock_t0 + LOCK_HOLD_S:
                st, doc = c.health()
                health_seen.append((st, doc))
                time.sleep(0.2)
            lock_t1 = time.time()
        finally:
            con.execute("COMMIT")
            con.close()
        try:
            # live data went on while locked
            during = [r for r in feeder.results if lock_t0 <= r[0] <= lock_t1]
            self.assertGreater(len(during), 10, "ingest stalled while the store was locked")
            self.assertTrue(all(r[1] == 202 for r in during),
                            "ingest refused while locked: %r" % [r[1] for r in during])
            # an answer that waited for the disk would take the store's 2 s busy timeout;
            # a busy machine can delay one by a few hundred ms without any waiting
            slow = [round(r[2], 2) for r in during if r[2] > 1.5]
            self.assertEqual(slow, [], "ingest answers waited for the locked store")
            ticks = ticker.count_between(lock_t0, lock_t1)
            self.assertGreaterEqual(ticks, 3, "metrics:update ticks stalled while locked")
            self.assertIsNone(ticker.error)

            # the failure is visible
            store_503 = [d for s, d in health_seen
                         if s == 503 and "store" in d.get("failing", [])]

            def failed_locked():
                evs, _ = c.events(since=first_seq, etype="metrics.aggregation_failed")
                return [e for e in evs if e["data"]["payload"]["error_type"] == "locked"]
            fails = wait_for(failed_locked, timeout=5, interval=0.2,
                             desc="metrics.aggregation_failed with error_type locked")
            sys.stderr.write("locked: %d health 503 (store) answers, %d aggregation_failed "
                             "locked; event during lock answered %r\n"
                             % (len(store_503), len(failed_locked()), event_answers))
            payload = fails[0]["data"]["payload"]
            self.assertEqual(set(payload), {"job_id", "error_message", "error_type",
                                            "failed_at"})
            self.assertTrue(payload["error_message"])
            self.assertTrue(store_503, "health never reported the store failing while locked "
                            "(%r)" % [s for s, _ in health_seen])
            self.assertIn("store", store_503[0]["checks"])
            self.assertFalse(store_503[0]["checks"]["store"]["ok"])

            # back to healthy once released
            wait_for(lambda: c.health()[0] == 200, timeout=8,
                     desc="health 200 after the lock is released")
            # contract: 202 only once the event is committed — so not before the release
            publisher.join(t(30))
            self.assertIsNotNone(publisher.answer, "the event published during the lock "
                                 "was never answered")
            st, doc, t_answer = publisher.answer
            self.assertEqual(st, 202, doc)
            self.assertGreaterEqual(t_answer, lock_t1 - 0.05,
                                    "answered 202 while the file was still locked")
            self.assertTrue(db_query(os.path.join(hub.data_dir, DB),
                                     "SELECT seq FROM events WHERE seq = ?", (doc["seq"],)),
                            "202 for an event that is not in the file")
            event_answers.append(publisher.answer)
            self.assertTrue(hub.alive())
        finally:
            feeder.stop()
            ticker.stop()
            c.close()


GARBAGE = (b"this is not an SQLite database, just some bytes\n" * 200)


class BadFileTest(HubTestCase):
    def _refused(self, hub, what):
        path = os.path.join(hub.data_dir, DB)
        with open(path, "rb") as f:
            before = f.read()
        code, err = run_daemon(hub.argv[1:], timeout=10)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        self.assertEqual(code, 2, "%s: exit %s, stderr:\n%s" % (what, code, err))
        self.assertEqual(len(lines), 1, "%s: expected one stderr line:\n%s" % (what, err))
        self.assertIn("--data", lines[0])
        with open(path, "rb") as f:
            after = f.read()
        if after != before:
            first = next((i for i in range(min(len(before), len(after)))
                          if before[i] != after[i]), min(len(before), len(after)))
            self.fail("%s: refused but the file changed (%d -> %d bytes, first difference at "
                      "byte %d)" % (what, len(before), len(after), first))
        self.assertEqual(glob.glob(path + ".corrupt-*"), [])
        return before

    def test_corrupt_file_exit_2_then_reset_store(self):
        hub = self.hub(start=False)
        path = os.path.join(hub.data_dir, DB)
        with open(path, "wb") as f:
            f.write(GARBAGE)
        before = self._refused(hub, "garbage file")
        hub.argv += ["--reset-store"]
        t0 = int(time.time())
        hub.start(15.0)
        aside = glob.glob(path + ".corrupt-*")
        self.assertEqual(len(aside), 1, os.listdir(hub.data_dir))
        stamp = int(aside[0].rsplit("-", 1)[1])
        self.assertTrue(t0 - 2 <= stamp <= time.time() + 2, aside)
        with open(aside[0], "rb") as f:
            self.assertEqual(f.read(), before)
        c = Client(hub)
        wait_for(lambda: c.health()[0] == 200, timeout=5, desc="healthy after reset")
        self.assertEqual(c.publish()["seq"], 1)
        c.close()
        self.assertEqual(db_query(path, "PRAGMA user_version")[0][0], 2)

    def test_foreign_sqlite_file_refused_untouched(self):
        hub = self.hub(start=False)
        path = os.path.join(hub.data_dir, DB)
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO users(name) VALUES ('alice')")
        con.commit()
        con.close()
        self._refused(hub, "foreign SQLite file")


class DiskFullTest(HubTestCase):
    """--data on a 1 MiB tmpfs that the test then fills."""

    def setUp(self):
        super().setUp()
        self.mnt = tempfile.mkdtemp(prefix="mc-full-")
        self.mounted = False
        if os.geteuid() != 0:
            self.reason = "not root (euid %d): cannot mount a tmpfs" % os.geteuid()
            return
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.reason = None if self.mounted else ("mount -t tmpfs failed: %s"
                                                 % (r.stderr.strip() or r.returncode))

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            if self.mounted:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
            shutil.rmtree(self.mnt, ignore_errors=True)

    def test_full_disk_store_fails_live_data_goes_on(self):
        if not self.mounted:
            self.skipTest("no small file system for --data: %s (RLIMIT_FSIZE is not a "
                          "substitute here: it also limits the daemon's log file)" % self.reason)
        data = os.path.join(self.mnt, "data")
        os.mkdir(data)
        hub = self.hub(defaults=False, args=["--listen", "%s:0" % HOST, "--statsd", "off",
                                             "--data", data, "--aggregate-every", "1"])
        c = Client(hub)
        wait_for(lambda: c.health()[0] == 200, timeout=5, desc="healthy at start")
        ticker = Ticker(hub)
        ticker.start()
        # many series: every second writes new rows and pages
        samples = [{"name": "full_g", "value": i, "labels": {"source": "s%03d" % i}}
                   for i in range(300)]
        filler = os.path.join(self.mnt, "filler")
        try:
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
            full_t0 = time.time()
            seen = []
            ev = None
            while time.time() < full_t0 + 6:
                st, _ = c.ingest(samples)
                self.assertEqual(st, 202, "ingest refused while the disk is full")
                if ev is None:  # its answer must wait until the event is on disk
                    ev = BackgroundPublish(hub, {"during": "full"})
                    ev.start()
                seen.append(c.health())
                time.sleep(0.25)
            full_t1 = time.time()
            self.assertTrue(hub.alive(), "daemon died with the disk full:\n%s" % hub.log())
            store_503 = [d for s, d in seen if s == 503 and "store" in d.get("failing", [])]
            sys.stderr.write("disk full: health %r; event answer %r\n"
                             % (sorted({s for s, _ in seen}), ev))
            self.assertTrue(store_503, "health never reported the store failing with the "
                            "disk full: %r" % [(s, d.get("failing")) for s, d in seen])
            self.assertIn("full", store_503[-1]["checks"]["store"]["detail"].lower())
            self.assertGreaterEqual(ticker.count_between(full_t0, full_t1), 3,
                                    "metrics:update ticks stalled with the disk full")
            self.assertIsNone(ev.answer, "an event was acknowledged with the disk full, "
                              "before it could be committed: %r" % (ev.answer,))
            fails, _ = c.events(etype="metrics.aggregation_failed")
            types = {e["data"]["payload"]["error_type"] for e in fails}
            sys.stderr.write("disk full: aggregation_failed error types %r\n" % types)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(filler)
        wait_for(lambda: c.health()[0] == 200, timeout=10,
                 desc="health 200 once space is free again")
        ev.join(t(30))
        self.assertIsNotNone(ev.answer, "the event of the full disk was never answered")
        st, doc, _ = ev.answer
        self.assertEqual(st, 202, doc)
        self.assertTrue(db_query(os.path.join(data, DB), "SELECT seq FROM events WHERE seq=?",
                                 (doc["seq"],)), "202 for an event that is not in the file")
        ticker.stop()
        c.close()


if __name__ == "__main__":
    main()
