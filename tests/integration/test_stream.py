#!/usr/bin/python3
"""Live metrics over /ws: subscribe/unsubscribe, topics and filters, the first full
metrics:update then deltas, the tick heartbeat, coalesced change pushes, limits and the
metricast_ws_subscribers gauge."""

import calendar
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     HubTestCase, RawWS, main, prom_get, t, wait_for, ws_encode_frame)

ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")


def iso_to_unix(s):
    m = ISO_RE.match(s)
    if not m:
        raise AssertionError("not an ISO 8601 UTC timestamp with milliseconds: %r" % (s,))
    y, mo, d, hh, mm, ss, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)) + ms / 1000.0


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
class Ingest:
    """POST /api/v1/ingest on one keep-alive connection; every answer must be 202."""

    def __init__(self, hub):
        self.hub = hub
        self.conn = http.client.HTTPConnection(HOST, hub.port, timeout=t(10))

    def send(self, text):
        body = text.encode("utf-8") if isinstance(text, str) else text
        for attempt in range(2):
            try:
                self.conn.request("POST", "/api/v1/ingest", body=body,
                                  headers={"Content-Type": "text/plain"})
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.hub.port, timeout=t(10))
                if attempt:
                    raise
        if resp.status != 202:
            raise AssertionError("ingest answered %d: %r" % (resp.status, data[:300]))
        return json.loads(data.decode("utf-8"))

    def close(self):
        self.conn.close()


def ingest(hub, text):
    ing = Ingest(hub)
    try:
        return ing.send(text)
    finally:
        ing.close()


class Msgs:
    """Reads server messages from a RawWS without ever losing a partly received frame.

    next(timeout) -> parsed JSON object, ("close", code, reason) tuple, or None on
    timeout (unscaled seconds: callers scale themselves). Pings are answered."""

    def __init__(self, ws):
        self.ws = ws
        self.sock = ws.sock
        self.buf = bytearray(ws.reader.buf)
        ws.reader.buf = b""
        self.eof = False
        self.parts = []

    def _frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def next_raw(self, timeout):
        """('text', bytes) | ('close', code, reason) | None (timeout); EOFError at EOF."""
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            f = self._frame()
            if f is not None:
                fin, op, payload = f
                if op == OP_PING:
                    try:
                        self.sock.sendall(ws_encode_frame(OP_PONG, payload))
                    except OSError:
                        pass
                    continue
                if op == OP_PONG:
                    continue
                if op == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return ("close", code, payload[2:].decode("utf-8", "replace"))
                if op in (OP_TEXT, OP_CONT):
                    self.parts.append(payload)
                    if fin:
                        data, self.parts = b"".join(self.parts), []
                        return ("text", data)
                continue
            if self.eof:
                raise EOFError("connection closed")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(262144)
            except (socket.timeout, TimeoutError):
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            else:
                self.buf += chunk
        raise AssertionError("too many frames")

    def next(self, timeout):
        r = self.next_raw(timeout)
        if r is None or r[0] == "close":
            return r
        return json.loads(r[1].decode("utf-8"))

    def expect(self, timeout, pred=None, desc="a message"):
        """Next message (scaled timeout) satisfying pred; others are returned too, as
        (wanted, skipped)."""
        deadline = time.monotonic() + t(timeout)
        skipped = []
        for _ in range(100000):
            left = deadline - time.monotonic()
            m = self.next(max(left, 0.001)) if left > 0 else None
            if m is None:
                raise AssertionError("no %s within %.1fs; got %r" % (desc, t(timeout),
                                                                   [short(x) for x in skipped]))
            if isinstance(m, tuple):
                raise AssertionError("connection closed %r while waiting for %s" % (m, desc))
            if pred is None or pred(m):
                return m, skipped
            skipped.append(m)
        raise AssertionError("too many messages")

    def collect(self, seconds, stop=None):
        """(monotonic receive time, message) for `seconds` (unscaled), or until stop(m)."""
        out = []
        deadline = time.monotonic() + seconds
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            m = self.next(left)
            if m is None:
                break
            if isinstance(m, tuple):
                raise AssertionError("connection closed %r during collection" % (m,))
            out.append((time.monotonic(), m))
            if stop is not None and stop(m):
                break
        return out

    def send(self, obj):
        self.ws.send_json(obj)

    def ping_pong(self, timeout=5.0):
        """Sends a ping and returns the messages that arrived before the pong."""
        self.send({"type": "ping"})
        _pong, before = self.expect(timeout, lambda m: m.get("type") == "pong", "pong")
        return before


def short(m):
    s = json.dumps(m) if not isinstance(m, (bytes, str)) else str(m)
    return s[:300]


def is_update(m):
    return m.get("type") == "metrics:update"


def series_key(s):
    return (s["name"], tuple(sorted(s.get("labels", {}).items())))


def names(m):
    return sorted(s["name"] for s in m["data"]["series"])


def value_of(m, name, **labels):
    for s in m["data"]["series"]:
        if s["name"] == name and all(s.get("labels", {}).get(k) == v for k, v in labels.items()):
            return s["value"]
    return None


def open_ws(hub, path="/ws"):
    ws = RawWS(hub.port, path=path)
    if ws.response.status != 101:
        raise AssertionError("handshake answered %r" % ws.response)
    return ws, Msgs(ws)


class StreamCase(HubTestCase):
    def assertUpdateShape(self, m):
        self.assertEqual(m.get("type"), "metrics:update", short(m))
        self.assertIsInstance(m.get("seq"), int, short(m))
        self.assertIn(m.get("reason"), ("tick", "change"), short(m))
        self.assertIsInstance(m.get("full"), bool, short(m))
        self.assertIsInstance(m.get("data"), dict, short(m))
        self.assertIsInstance(m["data"].get("series"), list, short(m))
        self.assertIsInstance(m["data"].get("summary"), dict, short(m))
        self.assertIsInstance(m.get("timestamp"), str, short(m))
        iso_to_unix(m["timestamp"])
        for s in m["data"]["series"]:
            for k in ("name", "labels", "kind", "value", "updated_at"):
                self.assertIn(k, s, "series entry lacks %r: %r" % (k, s))
            iso_to_unix(s["updated_at"])

    def assertSeqIncreasing(self, msgs):
        seqs = [m["seq"] for m in msgs if is_update(m)]
        for a, b in zip(seqs, seqs[1:]):
            self.assertLess(a, b, "seq not strictly increasing: %r" % seqs)

    def assertError(self, m, code):
        self.assertEqual(m.get("type"), "error", short(m))
        self.assertEqual(m.get("error"), code, short(m))
        self.assertIsInstance(m.get("detail"), str, short(m))

    def subscribers(self, h):
        return prom_get(h.prom(), "metricast_ws_subscribers")


# --------------------------------------------------------------------------------------
# full then deltas; tick rate; change coalescing
# --------------------------------------------------------------------------------------
class TestUpdates(StreamCase):
    def test_first_full_then_deltas(self):
        h = self.hub(["--tick", "0.5"])
        ingest(h, "cpu_a:1|g|#source:r1\ncpu_b:2|g|#source:r2\nmem_used:3|g\n")
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            first, skipped = ms.expect(5, is_update, "first metrics:update")
            self.assertEqual(skipped, [], "messages before the first update")
            self.assertUpdateShape(first)
            self.assertTrue(first["full"], short(first))
            self.assertEqual(names(first), ["cpu_a", "cpu_b", "mem_used"], short(first))
            self.assertEqual(value_of(first, "cpu_b", source="r2"), 2)
            self.assertEqual(value_of(first, "mem_used"), 3)
            got = [first]
            # the next updates are deltas; without changes they are empty heartbeats
            m, _ = ms.expect(3, is_update)
            got.append(m)
            self.assertUpdateShape(m)
            self.assertFalse(m["full"], short(m))
            self.assertEqual(m["data"]["series"], [], "no change, yet: %s" % short(m))
            # change one series: later deltas carry it and nothing else
            ingest(h, "cpu_a:42|g|#source:r1\n")
            m, skipped = ms.expect(3, lambda x: is_update(x) and x["data"]["series"],
                                   "a delta with the changed series")
            got += skipped + [m]
            for x in skipped:
                self.assertEqual(x["data"]["series"], [], short(x))
            self.assertFalse(m["full"], short(m))
            self.assertEqual(len(m["data"]["series"]), 1, short(m))
            s = m["data"]["series"][0]
            self.assertEqual((s["name"], s["labels"], s["kind"], s["value"]),
                             ("cpu_a", {"source": "r1"}, "gauge", 42), short(m))
            # and then it is not repeated
            more = [x for _, x in ms.collect(t(1.5))]
            got += more
            for x in more:
                self.assertTrue(is_update(x), short(x))
                self.assertFalse(x["full"], short(x))
                self.assertEqual(x["data"]["series"], [], "unchanged series repeated: %s"
                                 % short(x))
            # a new series shows up in a delta too
            ingest(h, "disk_free:9|g\n")
            m, skipped = ms.expect(3, lambda x: is_update(x) and x["data"]["series"],
                                   "a delta with the new series")
            got += skipped + [m]
            self.assertEqual(names(m), ["disk_free"], short(m))
            self.assertSeqIncreasing(got)

    def test_tick_rate_default(self):
        h = self.hub()
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            first, _ = ms.expect(5, is_update)
            self.assertTrue(first["full"])
            got = [m for _, m in ms.collect(5.0)]
        ticks = [m for m in got if is_update(m) and m["reason"] == "tick"]
        self.assertTrue(all(is_update(m) for m in got), [short(m) for m in got])
        self.assertGreaterEqual(len(ticks), 4, "ticks in 5 s: %d" % len(ticks))
        self.assertLessEqual(len(ticks), 7, "ticks in 5 s: %d" % len(ticks))
        for m in ticks:
            self.assertFalse(m["full"], short(m))
            self.assertEqual(m["data"]["series"], [], short(m))
        self.assertSeqIncreasing([first] + got)
        stamps = [iso_to_unix(m["timestamp"]) for m in ticks]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        for g in gaps:
            self.assertGreater(g, 0.5, "tick gaps %r" % gaps)
            self.assertLess(g, t(1.5), "tick gaps %r" % gaps)

    def test_tick_rate_fast(self):
        h = self.hub(["--tick", "0.1"])
        ingest(h, "x:1|g\n")
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            ms.expect(5, is_update)
            got = [m for _, m in ms.collect(3.0)]
        ticks = [m for m in got if is_update(m) and m["reason"] == "tick"]
        # ~30 expected; generous for two noisy cores
        self.assertGreaterEqual(len(ticks), 18, "ticks in 3 s at --tick 0.1: %d" % len(ticks))
        self.assertLessEqual(len(ticks), 36, "ticks in 3 s at --tick 0.1: %d" % len(ticks))
        self.assertSeqIncreasing(got)

    def test_burst_coalesced(self):
        # a long tick, so whatever arrives during the burst comes from change pushes
        h = self.hub(["--tick", "30"])
        ingest(h, "burst:0|g\n")
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            first, _ = ms.expect(5, is_update)
            self.assertTrue(first["full"])
            self.assertEqual(value_of(first, "burst"), 0)
            time.sleep(1.2)  # a quiet second: the first change goes out at once

            N, PER = 1000, 5  # 1,000 changes in 200 POSTs spread over ~2 s
            final = float(N)
            done = {}

            def burst():
                ing = Ingest(h)
                try:
                    t0 = time.monotonic()
                    done["start"] = t0
                    for i in range(N // PER):
                        body = "".join("burst:%d|g\n" % (i * PER + k + 1) for k in range(PER))
                        ing.send(body)
                        # pace: POST i is due at i * 10 ms
                        delay = t0 + (i + 1) * 0.01 - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    done["end"] = time.monotonic()
                except BaseException as e:  # reported by the main thread
                    done["error"] = e
                finally:
                    ing.close()

            th = threading.Thread(target=burst, daemon=True)
            th.start()
            got = []
            final_at = None
            deadline = time.monotonic() + t(20)
            while time.monotonic() < deadline:
                m = ms.next(0.2)
                if isinstance(m, tuple):
                    self.fail("connection closed during the burst: %r" % (m,))
                if m is not None:
                    got.append((time.monotonic(), m))
                    if is_update(m) and value_of(m, "burst") == final:
                        final_at = time.monotonic()
                if final_at is not None and not th.is_alive():
                    break
            th.join(t(10))
            self.assertNotIn("error", done, done.get("error"))
            self.assertIn("end", done, "the burst did not finish")
            # let a stray extra update show itself
            got += ms.collect(1.5)

        msgs = [m for _, m in got]
        self.assertTrue(all(is_update(m) for m in msgs), [short(m) for m in msgs])
        self.assertSeqIncreasing([first] + msgs)
        changes = [m for m in msgs if m["reason"] == "change"]
        span = done["end"] - done["start"]
        self.assertIsNotNone(final_at, "final value %s never arrived; last values %r"
                             % (final, [value_of(m, "burst") for m in msgs]))
        lag = final_at - done["end"]
        self.assertLessEqual(lag, t(2.0), "final value arrived %.2fs after the burst" % lag)
        self.assertGreaterEqual(len(changes), 1)
        # at most one change update per second (+1 for the boundary)
        limit = int(span + lag) + 2
        self.assertLessEqual(len(changes), limit,
                             "%d change updates for a %.2fs burst: %r"
                             % (len(changes), span, [m["timestamp"] for m in changes]))
        stamps = [iso_to_unix(m["timestamp"]) for m in changes]
        for i, s in enumerate(stamps):
            within = [x for x in stamps[i:] if x < s + 0.95]
            self.assertLessEqual(len(within), 1,
                                 "change updates closer than a second apart: %r"
                                 % [m["timestamp"] for m in changes])
        for m in changes:
            self.assertFalse(m["full"], short(m))
            self.assertEqual(names(m), ["burst"], short(m))
        # the last value seen is the final one
        last = [value_of(m, "burst") for m in msgs if value_of(m, "burst") is not None][-1]
        self.assertEqual(last, final)

    def feed_and_collect(self, h, seconds):
        """Changes 'feed' every 50 ms for `seconds` while a subscriber collects; returns
        (updates after the first, the last value sent, seconds collected)."""
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            ms.expect(5, is_update)
            stop = threading.Event()
            sent = {}

            def feed():
                ing = Ingest(h)
                try:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        ing.send("feed:%d|g\n" % i)
                        sent["last"] = i
                        stop.wait(0.05)
                finally:
                    ing.close()

            th = threading.Thread(target=feed, daemon=True)
            t0 = time.monotonic()
            th.start()
            got = [m for _, m in ms.collect(seconds)]
            stop.set()
            th.join(t(10))
            got += [m for _, m in ms.collect(t(1.5))]  # the trailing push
            elapsed = time.monotonic() - t0
        self.assertTrue(all(is_update(m) for m in got), [short(m) for m in got])
        self.assertSeqIncreasing(got)
        return got, float(sent["last"]), elapsed

    def test_ticks_carry_changes(self):
        # --tick 1 (the default) with a change every 50 ms: the next tick is never later
        # than a change push would be, so the ticks carry the changes and no change push
        # doubles the stream (one update a second, not a tick plus a change)
        h = self.hub()
        got, final, elapsed = self.feed_and_collect(h, 4.0)
        # the first change may go out at once (no push in the second before it: the
        # leading edge); after it, ticks only: about one update a second
        self.assertEqual([m["reason"] for m in got[1:] if m["reason"] != "tick"], [],
                         [short(m) for m in got])
        self.assertLessEqual(len(got), int(elapsed) + 2,
                             "updates in %.1f s at --tick 1: %d" % (elapsed, len(got)))
        last = [value_of(m, "feed") for m in got if value_of(m, "feed") is not None]
        self.assertEqual(last[-1], final)

    def test_change_pushes_between_slow_ticks(self):
        # --tick 3: between ticks, change pushes, each at least about a second after the
        # update before it (tick or change); the last value delivered
        h = self.hub(["--tick", "3"])
        got, final, _ = self.feed_and_collect(h, 5.0)
        reasons = [m["reason"] for m in got]
        self.assertIn("change", reasons, [short(m) for m in got])
        stamps = [iso_to_unix(m["timestamp"]) for m in got]
        for i in range(1, len(got)):
            if reasons[i] == "change":
                self.assertGreater(stamps[i] - stamps[i - 1], 0.9, "updates %r"
                                   % list(zip(reasons, stamps)))
        last = [value_of(m, "feed") for m in got if value_of(m, "feed") is not None]
        self.assertEqual(last[-1], final)


# --------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------
DATA = ("cpu_usage:1|g|#source:robot_001\n"
        "cpu_temp:2|g|#source:robot_002\n"
        "mem_used:3|g|#source:robot_001\n"
        "cpu_idle:4|g\n"
        "disk_io:5|g|#source:robot_010\n")

CHANGE = ("cpu_usage:11|g|#source:robot_001\n"
          "cpu_temp:12|g|#source:robot_002\n"
          "mem_used:13|g|#source:robot_001\n"
          "cpu_idle:14|g\n"
          "disk_io:15|g|#source:robot_010\n")


CHANGED = {"cpu_usage": 11, "cpu_temp": 12, "mem_used": 13, "cpu_idle": 14, "disk_io": 15}


def keys(m):
    return sorted((s["name"], s["labels"].get("source")) for s in m["data"]["series"])


class TestFilters(StreamCase):
    CASES = [
        ({"match": "cpu_*", "source": "robot_001"}, [("cpu_usage", "robot_001")]),
        ({"match": "cpu_*"}, [("cpu_idle", None), ("cpu_temp", "robot_002"),
                              ("cpu_usage", "robot_001")]),
        ({"source": "robot_001"}, [("cpu_usage", "robot_001"), ("mem_used", "robot_001")]),
        ({"source": "robot_00?"}, [("cpu_temp", "robot_002"), ("cpu_usage", "robot_001"),
                                   ("mem_used", "robot_001")]),
        ({"source": "*"}, [("cpu_temp", "robot_002"), ("cpu_usage", "robot_001"),
                           ("disk_io", "robot_010"), ("mem_used", "robot_001")]),
        ({"match": "cpu_????"}, [("cpu_idle", None), ("cpu_temp", "robot_002")]),
        ({"match": "nothing_*"}, []),
        ({}, [("cpu_idle", None), ("cpu_temp", "robot_002"), ("cpu_usage", "robot_001"),
              ("disk_io", "robot_010"), ("mem_used", "robot_001")]),
    ]

    def test_filter_match_and_source(self):
        h = self.hub(["--tick", "0.3"])
        ingest(h, DATA)
        conns = []
        try:
            for flt, _want in self.CASES:
                ws, ms = open_ws(h)
                conns.append((ws, ms))
                msg = {"type": "subscribe", "topics": ["metrics"]}
                if flt:
                    msg["filter"] = flt
                ms.send(msg)
            # first: a full snapshot with exactly the matching series
            for (ws, ms), (flt, want) in zip(conns, self.CASES):
                with self.subTest(filter=flt, part="full"):
                    m, skipped = ms.expect(5, is_update)
                    self.assertEqual(skipped, [])
                    self.assertTrue(m["full"], short(m))
                    self.assertEqual(keys(m), want, short(m))
            ingest(h, CHANGE)
            # then deltas: the changed series that match, and nothing else
            for (ws, ms), (flt, want) in zip(conns, self.CASES):
                with self.subTest(filter=flt, part="delta"):
                    seen = set()
                    for _, m in ms.collect(t(1.5)):
                        self.assertTrue(is_update(m), short(m))
                        for s in m["data"]["series"]:
                            k = (s["name"], s["labels"].get("source"))
                            self.assertIn(k, want, "filter %r let %r through" % (flt, k))
                            self.assertEqual(s["value"], CHANGED[s["name"]], s)
                            seen.add(k)
                    self.assertEqual(sorted(seen), want)
        finally:
            for ws, _ in conns:
                ws.close()

    def test_resubscribe_replaces_filter(self):
        h = self.hub(["--tick", "0.3"])
        ingest(h, DATA)
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"], "filter": {"match": "cpu_*"}})
            m, _ = ms.expect(5, is_update)
            self.assertEqual(names(m), ["cpu_idle", "cpu_temp", "cpu_usage"], short(m))
            ms.send({"type": "subscribe", "topics": ["metrics"], "filter": {"match": "mem_*"}})
            full, skipped = ms.expect(5, lambda x: is_update(x) and x["full"],
                                      "a new full update")
            self.assertEqual(keys(full), [("mem_used", "robot_001")], short(full))
            all_msgs = [m] + skipped + [full]
            ingest(h, CHANGE)
            got = [x for _, x in ms.collect(t(1.5))]
            all_msgs += got
            seen = set()
            for x in got:
                self.assertTrue(is_update(x), short(x))
                self.assertFalse(x["full"], short(x))
                for s in x["data"]["series"]:
                    seen.add(s["name"])
            self.assertEqual(seen, {"mem_used"}, "old filter still applied: %r"
                             % [short(x) for x in got])
            # subscribe without a filter: everything again
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            full, skipped = ms.expect(5, lambda x: is_update(x) and x["full"],
                                      "a new full update")
            self.assertEqual(len(full["data"]["series"]), 5, short(full))
            self.assertSeqIncreasing(all_msgs + skipped + [full])

    def test_bad_filter_rejected(self):
        h = self.hub(["--tick", "0.3"])
        ws, ms = open_ws(h)
        with ws:
            for bad in ({"type": "subscribe", "topics": ["metrics"], "filter": "cpu_*"},
                        {"type": "subscribe", "topics": ["metrics"], "filter": {"match": 5}},
                        {"type": "subscribe", "topics": ["metrics"], "since": -1},
                        {"type": "subscribe", "topics": ["metrics"], "since": "0"},
                        {"type": "subscribe", "topics": ["metrics"], "since": 1.5}):
                with self.subTest(msg=bad):
                    ms.send(bad)
                    m, skipped = ms.expect(5)
                    self.assertEqual(m.get("type"), "error", short(m))
                    self.assertEqual(skipped, [])
            before = ms.ping_pong()
            self.assertEqual(before, [])
            # nothing was applied: no updates follow
            got = [x for _, x in ms.collect(t(0.8))]
            self.assertEqual(got, [], "updates after rejected subscribes: %r"
                             % [short(x) for x in got])
            # since 0 is fine
            ms.send({"type": "subscribe", "topics": ["metrics"], "since": 0})
            m, skipped = ms.expect(5)
            self.assertTrue(is_update(m) and m["full"], short(m))


# --------------------------------------------------------------------------------------
# topics, subscribe/unsubscribe, errors, limits, counters
# --------------------------------------------------------------------------------------
class TestTopics(StreamCase):
    def test_unsubscribe_stops_updates(self):
        h = self.hub(["--tick", "0.1"])
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            ms.expect(5, is_update)
            got = [m for _, m in ms.collect(0.5)]
            self.assertTrue(any(is_update(m) for m in got))
            ms.send({"type": "unsubscribe", "topics": ["metrics"]})
            ms.ping_pong()  # updates still in flight may come before the pong
            ingest(h, "after_unsub:1|g\n")
            later = [m for _, m in ms.collect(1.0)]
            self.assertEqual(later, [], "updates after unsubscribe: %r"
                             % [short(m) for m in later])
            wait_for(lambda: self.subscribers(h) == 0, 3, desc="ws_subscribers == 0")
            # and subscribing again works, starting with a full snapshot
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            m, _ = ms.expect(5, is_update)
            self.assertTrue(m["full"])
            self.assertIn("after_unsub", names(m))

    def test_query_topics(self):
        h = self.hub(["--tick", "0.2"])
        ingest(h, "q:1|g\n")
        ws, ms = open_ws(h, "/ws?topics=metrics")
        with ws:
            m, skipped = ms.expect(5, is_update, "metrics:update without subscribing")
            self.assertEqual(skipped, [])
            self.assertTrue(m["full"], short(m))
            self.assertEqual(names(m), ["q"])
            m, _ = ms.expect(3, is_update)
            self.assertFalse(m["full"])
        ws, ms = open_ws(h, "/ws?topics=alerts,metrics,telemetry.*")
        with ws:
            m, skipped = ms.expect(5, is_update)
            self.assertEqual(skipped, [], [short(x) for x in skipped])
            self.assertTrue(m["full"])
        # the two connections above are closed by the client: the hub counts them out
        # when it reads their EOF, which may come after the next connection's answers
        wait_for(lambda: self.subscribers(h) == 0, 5, desc="earlier subscribers gone")
        ws, ms = open_ws(h, "/ws?topics=alerts,bogus")
        with ws:
            m, _ = ms.expect(5)
            self.assertError(m, "unknown_topic")
            self.assertEqual(ms.ping_pong(), [])
            self.assertEqual(self.subscribers(h), 0, "a rejected ?topics= was applied")

    def test_unknown_topic_keeps_connection_and_applies_nothing(self):
        h = self.hub(["--tick", "0.1"])
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics", "alerts", "bogus"]})
            m, skipped = ms.expect(5)
            self.assertEqual(skipped, [])
            self.assertError(m, "unknown_topic")
            self.assertIn("bogus", m["detail"])
            before = ms.ping_pong()
            self.assertEqual(before, [], [short(x) for x in before])
            later = [x for _, x in ms.collect(0.8)]
            self.assertEqual(later, [], "a rejected subscribe was applied: %r"
                             % [short(x) for x in later])
            self.assertEqual(self.subscribers(h), 0)
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            m, _ = ms.expect(5)
            self.assertTrue(is_update(m) and m["full"], short(m))
            # an unknown topic in unsubscribe is an error too, and removes nothing
            ms.send({"type": "unsubscribe", "topics": ["metrics", "Nope"]})
            m, _ = ms.expect(5, lambda x: x.get("type") == "error", "error")
            self.assertError(m, "unknown_topic")
            m, _ = ms.expect(3, is_update, "updates still flowing")

    def test_malformed_json_keeps_subscription(self):
        h = self.hub(["--tick", "0.1"])
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["metrics"]})
            ms.expect(5, is_update)
            for bad in ("{not json", "[]", '{"type":"subscribe","topics":"metrics"}',
                        '{"type":"subscribe","topics":[]}', '{"type":"subscribe","topics":[7]}'):
                with self.subTest(bad=bad):
                    ws.send_text(bad)
                    m, skipped = ms.expect(5, lambda x: not is_update(x), "an error")
                    self.assertEqual(m.get("type"), "error", short(m))
            ms.ping_pong()
            m, _ = ms.expect(3, is_update, "updates after malformed messages")
            self.assertFalse(m["full"])

    def test_valid_patterns_accepted(self):
        h = self.hub()
        good = ["sources", "alerts", "events", "telemetry.*", "tasks.created",
                "metrics.aggregation_*", "a1.b_2", "robot.?", "x.y.z", "*.created",
                "telemetry.cpu_usage", "a" * 60 + "." + "b" * 60]
        ws, ms = open_ws(h)
        with ws:
            for topic in good:
                with self.subTest(topic=topic):
                    ms.send({"type": "subscribe", "topics": [topic]})
                    before = ms.ping_pong()
                    self.assertEqual(before, [], "subscribe %r answered %r"
                                     % (topic, [short(x) for x in before]))
            ms.send({"type": "subscribe", "topics": good})
            self.assertEqual(ms.ping_pong(), [])
            ms.send({"type": "unsubscribe", "topics": good[:3]})
            self.assertEqual(ms.ping_pong(), [])
            self.assertEqual(self.subscribers(h), 1)

    def test_invalid_patterns_rejected(self):
        h = self.hub()
        bad = ["Telemetry.*", "telemetry", "*", ".x", "x.", "a..b", "tele metry.x",
               "x.y-z", "", "a" * 100 + "." + "b" * 100, "metrics ", "METRICS", "x.y/z",
               "tasks.créé"]
        # under ten errors per connection (ten within ten seconds close it)
        for i in range(0, len(bad), 5):
            ws, ms = open_ws(h)
            with ws:
                for topic in bad[i:i + 5]:
                    with self.subTest(topic=topic):
                        ms.send({"type": "subscribe", "topics": [topic]})
                        m, _ = ms.expect(5)
                        self.assertError(m, "unknown_topic")
                self.assertEqual(ms.ping_pong(), [])
        self.assertEqual(self.subscribers(h), 0)

    def test_max_subscriptions_default_64(self):
        h = self.hub()
        topics = ["mod%d.evt" % i for i in range(65)]
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": topics})  # 65 at once: refused whole
            m, _ = ms.expect(5)
            self.assertError(m, "too_many_subscriptions")
            self.assertEqual(ms.ping_pong(), [])
            self.assertEqual(self.subscribers(h), 0, "a refused subscribe was applied")
            ms.send({"type": "subscribe", "topics": topics[:64]})
            self.assertEqual(ms.ping_pong(), [], "64 topics refused")
            ms.send({"type": "subscribe", "topics": topics[64:]})
            m, _ = ms.expect(5)
            self.assertError(m, "too_many_subscriptions")
            # making room helps
            ms.send({"type": "unsubscribe", "topics": topics[:1]})
            self.assertEqual(ms.ping_pong(), [])
            ms.send({"type": "subscribe", "topics": topics[64:]})
            self.assertEqual(ms.ping_pong(), [])

    def test_max_subscriptions_flag(self):
        h = self.hub(["--ws-max-subscriptions", "3"])
        ws, ms = open_ws(h)
        with ws:
            ms.send({"type": "subscribe", "topics": ["a.b", "c.d"]})
            self.assertEqual(ms.ping_pong(), [])
            ms.send({"type": "subscribe", "topics": ["e.f"]})
            self.assertEqual(ms.ping_pong(), [])
            ms.send({"type": "subscribe", "topics": ["g.h"]})
            m, _ = ms.expect(5)
            self.assertError(m, "too_many_subscriptions")
            self.assertEqual(ms.ping_pong(), [])
            # re-subscribing to topics it already has adds nothing
            ms.send({"type": "subscribe", "topics": ["a.b", "e.f"]})
            self.assertEqual(ms.ping_pong(), [])

    def test_ws_subscribers_gauge(self):
        h = self.hub(["--tick", "0.2"])
        self.assertEqual(self.subscribers(h), 0)
        a, ma = open_ws(h)
        b, mb = open_ws(h)
        c, mc = open_ws(h)
        try:
            ma.ping_pong()
            self.assertEqual(self.subscribers(h), 0, "a connection without topics counted")
            ma.send({"type": "subscribe", "topics": ["metrics"]})
            ma.expect(5, is_update)
            self.assertEqual(self.subscribers(h), 1)
            mb.send({"type": "subscribe", "topics": ["alerts", "telemetry.*"]})
            mb.ping_pong()
            self.assertEqual(self.subscribers(h), 2)
            mc.send({"type": "subscribe", "topics": ["metrics", "events"]})
            mc.expect(5, is_update)
            self.assertEqual(self.subscribers(h), 3)
            mb.send({"type": "unsubscribe", "topics": ["alerts"]})
            mb.ping_pong()
            self.assertEqual(self.subscribers(h), 3, "still has telemetry.*")
            mb.send({"type": "unsubscribe", "topics": ["telemetry.*"]})
            mb.ping_pong()
            self.assertEqual(self.subscribers(h), 2)
            mc.send({"type": "unsubscribe", "topics": ["metrics"]})
            mc.ping_pong()
            self.assertEqual(self.subscribers(h), 2, "still has events")
            # a close (clean or not) stops counting
            a.send_close(1000)
            a.close()
            c.close()
            wait_for(lambda: self.subscribers(h) == 0, 5, desc="ws_subscribers back to 0")
            s = h.prom()
            self.assertGreater(prom_get(s, "metricast_ws_sent_total"), 0)
        finally:
            for x in (a, b, c):
                x.close()


if __name__ == "__main__":
    main()
