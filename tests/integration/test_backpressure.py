#!/usr/bin/python3
"""Backpressure on live metrics: a subscriber that does not read is buffered, conflated,
told so with status messages and finally closed with 1008, while the hub's memory stays
bounded and other subscribers keep streaming; a subscriber that pauses and resumes is
told it is streaming again and catches up with a full update."""

import base64
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HOST, HubTestCase, RawWS, SocketReader, main, prom_get, t  # noqa: E402
from test_stream import Ingest, Msgs, ingest, is_update, iso_to_unix, short  # noqa: E402

NSERIES = 250
PACE = 0.02  # one POST changing every series per PACE seconds
BP_ARGS = ["--tick", "0.01", "--ws-queue-messages", "64", "--ws-queue-bytes", "256k"]
TICK_RE = re.compile(rb'^\{"type":"metrics:update","seq":\d+,"reason":"tick"')


def slow_ws(port, rcvbuf=4096, path="/ws"):
    """A RawWS whose socket got a small SO_RCVBUF before connect()."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(t(10))
    s.connect((HOST, port))
    ws = RawWS.__new__(RawWS)
    ws.port, ws.sock, ws.path, ws.version, ws.extra_headers = port, s, path, "13", {}
    ws.reader = SocketReader(s)
    ws.key = base64.b64encode(os.urandom(16)).decode()
    ws.response = ws.handshake(10)
    if ws.response.status != 101:
        raise AssertionError("handshake answered %r" % ws.response)
    return ws


def body(i):
    return "".join("s%03d:%d|g|#source:bp\n" % (k, i) for k in range(NSERIES))


class Loader(threading.Thread):
    """Changes every series every PACE seconds until stopped; .last is the last value
    applied (answered 202)."""

    def __init__(self, hub):
        super().__init__(daemon=True)
        self.hub = hub
        self.stop_ev = threading.Event()
        self.last = None
        self.posts = 0
        self.error = None

    def run(self):
        ing = Ingest(self.hub)
        try:
            i = 0
            while not self.stop_ev.is_set() and i < 100000:
                i += 1
                t0 = time.monotonic()
                ing.send(body(i))
                self.last = i
                self.posts += 1
                left = PACE - (time.monotonic() - t0)
                if left > 0:
                    self.stop_ev.wait(left)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            ing.close()

    def stop(self):
        self.stop_ev.set()
        self.join(t(10))


class Reader(threading.Thread):
    """A normal subscriber: reads everything, counts tick updates, keeps statuses."""

    def __init__(self, hub):
        super().__init__(daemon=True)
        self.ws = RawWS(hub.port)
        self.ms = Msgs(self.ws)
        self.stop_ev = threading.Event()
        self.ticks = []  # monotonic receive times
        self.statuses = []
        self.closed = None
        self.error = None

    def run(self):
        try:
            self.ms.send({"type": "subscribe", "topics": ["metrics"]})
            for _ in range(10000000):
                if self.stop_ev.is_set():
                    break
                r = self.ms.next_raw(0.2)
                if r is None:
                    continue
                if r[0] == "close":
                    self.closed = r
                    break
                data = r[1]
                if TICK_RE.match(data):
                    self.ticks.append(time.monotonic())
                elif data.startswith(b'{"type":"status"'):
                    self.statuses.append(data)
        except BaseException as e:
            self.error = e

    def stop(self):
        self.stop_ev.set()
        self.join(t(10))
        self.ws.close()


def ws_state(h):
    p = h.prom()
    return {k: prom_get(p, k) for k in (
        "metricast_ws_connections", "metricast_ws_dropped_total", "metricast_ws_sent_total",
        "metricast_ws_queue_fill_ratio", "process_resident_memory_bytes")}


def read_all(ws):
    """Reads a socket to its end: (statuses, number of updates, close, eof, leftover)."""
    ms = Msgs(ws)
    statuses, updates, close, eof = [], 0, None, False
    try:
        for _ in range(1000000):
            r = ms.next_raw(t(3))
            if r is None:
                break
            if r[0] == "close":
                close = r
                break
            m = json.loads(r[1].decode("utf-8"))
            if m.get("type") == "status":
                statuses.append(m)
            elif is_update(m):
                updates += 1
    except EOFError:
        eof = True
    finally:
        ws.close()
    return statuses, updates, close, eof, len(ms.buf)


class TestBackpressure(HubTestCase):
    def test_never_reading_subscriber(self):
        # under ASan, freed memory sits in a 256 MB quarantine and RSS grows anyway: keep
        # it small so that growth means what it means in a release build
        env = None
        if t(1) > 1:
            env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                   + ":quarantine_size_mb=4"}
        h = self.hub(BP_ARGS + ["--ws-overload-timeout", "2s"], env=env)
        ingest(h, body(0))
        normal = Reader(h)
        normal.start()
        loader = Loader(h)
        slow = None
        try:
            loader.start()
            slow = slow_ws(h.port, 4096)
            slow.send_json({"type": "subscribe", "topics": ["metrics"]})
            t_sub = time.monotonic()
            samples = []  # (time since subscribe, state)
            closed_at = overloaded_at = None
            deadline = t_sub + t(20)
            while time.monotonic() < deadline:
                st = ws_state(h)
                now = time.monotonic() - t_sub
                samples.append((now, st))
                if overloaded_at is None and (st["metricast_ws_queue_fill_ratio"] or 0) > 0.95:
                    overloaded_at = now
                if "ws subscriber closed: too slow" in h.log() or \
                        st["metricast_ws_connections"] == 1:
                    # the hub gave up on it: it wakes up and reads what it can
                    closed_at = now
                    break
                time.sleep(0.1)
            slow_got = read_all(slow)
            # keep the normal subscriber and the load going a little after the close
            t_after = time.monotonic()
            time.sleep(1.5)
            after = ws_state(h)
            ticks_after = [x for x in normal.ticks if x >= t_after]
        finally:
            loader.stop()
            normal.stop()
        trace = "\n".join("%.2f %r" % (s, st) for s, st in samples)
        self.assertIsNone(loader.error, loader.error)
        self.assertIsNone(normal.error, normal.error)
        self.assertIsNotNone(closed_at, "the slow subscriber was never closed:\n" + trace)

        statuses, updates, close, eof, leftover = slow_got
        states = [s["state"] for s in statuses]
        detail = "statuses %r; %d updates; close %r; eof %r; %d bytes of a partial frame" % (
            [short(s) for s in statuses], updates, close, eof, leftover)
        with self.subTest(check="close frame 1008 with a reason"):
            self.assertIsNotNone(close, "no close frame: " + detail)
            self.assertEqual(close[1], 1008, detail)
            self.assertTrue(close[2], "close without a reason: " + detail)
        with self.subTest(check="status fields"):
            self.assertTrue(statuses, "no status message: " + detail)
            for s in statuses:
                for k in ("state", "fill_ratio", "queue_depth", "dropped", "message",
                          "session_id"):
                    self.assertIn(k, s, detail)
                self.assertIn(s["state"], ("streaming", "buffering", "overloaded"), detail)
            self.assertEqual(len({s["session_id"] for s in statuses}), 1, detail)
        with self.subTest(check="status sequence buffering -> overloaded, once each"):
            self.assertEqual(states, ["buffering", "overloaded"],
                             "%d status messages: %r" % (len(states), states))
            self.assertGreater(statuses[0]["fill_ratio"], 0.85, detail)
            self.assertGreater(statuses[1]["fill_ratio"], 0.95, detail)
        with self.subTest(check="closed --ws-overload-timeout (2 s) after overloading"):
            first_over = [s for s in statuses if s["state"] == "overloaded"]
            closes = [r for r in h.log_records()
                      if r.get("msg") == "ws subscriber closed: too slow"]
            self.assertTrue(first_over, detail)
            self.assertTrue(closes, "no 'ws subscriber closed: too slow' log line")
            over_ts = iso_to_unix(first_over[0]["timestamp"])
            close_ts = iso_to_unix(closes[0]["ts"])
            self.assertGreaterEqual(close_ts - over_ts, 1.9,
                                    "closed %.2fs after overloading" % (close_ts - over_ts))
            self.assertLessEqual(close_ts - over_ts, 2.0 + t(1.5),
                                 "closed %.2fs after first overloading (statuses %r)"
                                 % (close_ts - over_ts, states))
        with self.subTest(check="memory bounded"):
            rss = [st["process_resident_memory_bytes"] for _, st in samples] + \
                [after["process_resident_memory_bytes"]]
            self.assertLess(max(rss), (400 if t(1) > 1 else 200) * 2**20, trace)
            third = len(rss) // 3
            self.assertLess(max(rss[third:]), max(rss[:third + 1]) * 1.5 + 32 * 2**20,
                            "RSS keeps growing:\n" + trace)
        with self.subTest(check="dropped counted"):
            self.assertGreater(after["metricast_ws_dropped_total"], 0, trace)
            self.assertEqual(prom_get(h.prom(), "metricast_limit_hits_total", limit="ws_overload"),
                             1, "the overload close is a limit hit")
            # a status carries the count at its state change: with state changes only
            # while pressure rises, the drops come after the last one
            self.assertTrue(all(st["dropped"] >= 0 for st in statuses), detail)
        with self.subTest(check="the normal subscriber keeps streaming"):
            # ~100 ticks/s expected: accept a third of it (less under sanitizers)
            self.assertIsNone(normal.closed, normal.closed)
            self.assertEqual(normal.statuses, [], "the normal subscriber was told %r"
                             % normal.statuses[:3])
            span = normal.ticks[-1] - normal.ticks[0] if len(normal.ticks) > 1 else 0
            rate = len(normal.ticks) / span if span else 0
            self.assertGreater(rate, 33 / t(1) ** 2, "normal subscriber got %.1f ticks/s"
                               % rate)
            self.assertGreater(len(ticks_after), 15 / t(1) ** 2,
                               "normal subscriber got %d ticks in 1.5 s after the close"
                               % len(ticks_after))
        if os.environ.get("MC_TEST_VERBOSE"):
            sys.stderr.write("\n%s\nnormal ticks %d\n%s\n" % (trace, len(normal.ticks), detail))

    def test_pause_then_resume(self):
        h = self.hub(BP_ARGS + ["--ws-overload-timeout", "60s"])
        ingest(h, body(0))
        loader = Loader(h)
        ws = slow_ws(h.port, 4096)
        ms = Msgs(ws)
        try:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            first, _ = ms.expect(5, is_update)
            self.assertTrue(first["full"])
            loader.start()
            # pause: read nothing while the hub keeps pushing
            time.sleep(t(4))
            st = ws_state(h)
            self.assertGreater(st["metricast_ws_dropped_total"], 0, st)
            # resume: read everything; stop the load after a while
            msgs = []
            t_resume = time.monotonic()
            resume_wall = time.time()
            stopped_at = None
            final = None
            for _ in range(1000000):
                r = ms.next(0.5)
                if isinstance(r, tuple):
                    self.fail("closed: %r" % (r,))
                if r is not None:
                    msgs.append(r)
                now = time.monotonic()
                if stopped_at is None and now - t_resume > t(3):
                    loader.stop()
                    stopped_at = now
                    final = loader.last
                if stopped_at is not None and now - stopped_at > t(2.5):
                    break
        finally:
            loader.stop()
            ws.close()
        self.assertIsNone(loader.error, loader.error)
        statuses = [m for m in msgs if m.get("type") == "status"]
        states = [m["state"] for m in statuses]
        detail = "states %r" % (states,)
        self.assertGreaterEqual(len(states), 2, detail)
        self.assertEqual(states[0], "buffering", detail)
        self.assertEqual(states[-1], "streaming", detail)
        for a, b in zip(states, states[1:]):
            self.assertNotEqual(a, b, "repeated status: " + detail)
        with self.subTest(check="no 'streaming' while paused, no flapping"):
            # buffering, [overloaded, [buffering]], streaming: streaming only once at the end
            self.assertEqual(states.count("streaming"), 1, detail)
            self.assertLessEqual(len(states), 4, detail)
            paused = [m for m in statuses if iso_to_unix(m["timestamp"]) < resume_wall - 0.05]
            self.assertNotIn("streaming", [m["state"] for m in paused],
                             "told 'streaming' while not reading: %r"
                             % [(m["state"], m["timestamp"]) for m in paused][:12])
        # after conflation, a full update; the view ends with the latest values
        i_first_status = msgs.index(statuses[0])
        fulls = [i for i, m in enumerate(msgs) if is_update(m) and m["full"]]
        self.assertTrue([i for i in fulls if i > i_first_status],
                        "no full update after conflation: " + detail)
        view = {}
        for m in msgs:
            if is_update(m):
                if m["full"]:
                    view = {}
                for s in m["data"]["series"]:
                    view[s["name"]] = s["value"]
        want = {"s%03d" % k: final for k in range(NSERIES)}
        wrong = {k: v for k, v in view.items() if want.get(k) != v}
        self.assertEqual(wrong, {}, "final view differs from the last ingest (%s)" % final)
        self.assertEqual(set(view), set(want))
        seqs = [m["seq"] for m in msgs if is_update(m)]
        self.assertEqual(seqs, sorted(set(seqs)), "seq not strictly increasing")


if __name__ == "__main__":
    main()
