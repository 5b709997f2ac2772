#!/usr/bin/python3
"""Source sessions over /ws: `?source=ID` and `hello` (with attrs), every sample form
(`sample` with metrics or samples, StatsD text frames), `client_metrics`, the errors
(`bad_source`, `bad_message`, `not_a_source`), the 1 Hz per-session `metrics` message
(fields, attempt_id across reconnects, the fault-injection hook), the inbound queue
(backpressure / streaming, shedding, a flooding source not hurting another source or a
subscriber), the sources registry and the per-source metrics endpoint (+ alias, 404,
telemetry.metrics_published), and the lifecycle events with every close reason
(client_disconnect, timeout, protocol_error, overloaded, server_shutdown) on the REST
event log and the `sources` topic."""

import asyncio
import base64
import calendar
import http.client
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     HubTestCase, RawWS, close_payload, main, prom_get, t,
                     wait_for, ws_encode_frame)

import websockets  # noqa: E402  (python3-websockets 10.4, the real-client check)

ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
SESSION_RE = re.compile(r"^ws_\d+_\d+$")

METRICS_FIELDS = {
    "session_id": str, "attempt_id": int, "source": str, "queue_depth": int,
    "queue_capacity": int, "fill_ratio": (int, float), "avg_processing_ms": (int, float),
    "backlog_ms": (int, float), "realtime_factor": (int, float), "received": int,
    "processed": int, "dropped": int, "attrs": dict,
}


def iso_to_unix(s):
    m = ISO_RE.match(s or "")
    if not m:
        raise AssertionError("not an ISO 8601 UTC timestamp with milliseconds: %r" % (s,))
    y, mo, d, hh, mm, ss, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)) + ms / 1000.0


def short(m):
    s = json.dumps(m) if not isinstance(m, (bytes, str)) else str(m)
    return s[:400]


# --------------------------------------------------------------------------------------
# a WebSocket reader that never loses a partly received frame
# --------------------------------------------------------------------------------------
class WS:
    """A raw-socket WebSocket client. next(timeout) -> parsed JSON (text frames),
    ("close", code, reason), or None on timeout (unscaled seconds). Pings are answered
    unless answer_pings is False. Raises EOFError once the server has closed TCP."""

    def __init__(self, hub, path="/ws", answer_pings=True, rcvbuf=None):
        self.hub = hub
        self.answer_pings = answer_pings
        if rcvbuf is None:
            self.raw = RawWS(hub.port, path=path)
            if self.raw.response.status != 101:
                raise AssertionError("handshake %s answered %r" % (path, self.raw.response))
            self.sock = self.raw.sock
            self.buf = bytearray(self.raw.reader.buf)
            self.raw.reader.buf = b""
        else:  # a small receive buffer must be set before connect()
            self.raw = None
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(t(10))
            self.sock.connect((HOST, hub.port))
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n"
                               % (path, HOST, hub.port, key)).encode("ascii"))
            self.buf = bytearray()
        self.eof = False
        self.parts = []
        self.lock = threading.Lock()  # sends from a helper thread and pong replies

    # -- sending -------------------------------------------------------------------------
    def send_bytes(self, data):
        with self.lock:
            self.sock.sendall(data)

    def send_text(self, text):
        self.send_bytes(ws_encode_frame(OP_TEXT, text))

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=1000, reason=""):
        self.send_bytes(ws_encode_frame(OP_CLOSE, close_payload(code, reason)))

    # -- receiving -----------------------------------------------------------------------
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

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            f = self._frame()
            if f is not None:
                fin, op, payload = f
                if op == OP_PING:
                    if self.answer_pings:
                        try:
                            self.send_bytes(ws_encode_frame(OP_PONG, payload))
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
                        return json.loads(data.decode("utf-8"))
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

    def expect(self, timeout, pred=None, desc="a message"):
        """(first message satisfying pred within t(timeout), the others before it)."""
        deadline = time.monotonic() + t(timeout)
        skipped = []
        for _ in range(100000):
            left = deadline - time.monotonic()
            m = self.next(left) if left > 0 else None
            if m is None:
                raise AssertionError("no %s within %.1fs; got %r"
                                     % (desc, t(timeout), [short(x) for x in skipped[-20:]]))
            if isinstance(m, tuple):
                raise AssertionError("connection closed %r while waiting for %s" % (m, desc))
            if pred is None or pred(m):
                return m, skipped
            skipped.append(m)
        raise AssertionError("too many messages")

    def collect(self, seconds):
        """[(monotonic receive time, message)] for `seconds` (unscaled)."""
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
        return out

    def wait_close(self, timeout=5.0, echo=True):
        """Reads until the server's close frame: (code, reason, messages before it).
        echo answers it like a well-behaved client."""
        deadline = time.monotonic() + t(timeout)
        before = []
        for _ in range(100000):
            left = deadline - time.monotonic()
            m = self.next(left) if left > 0 else None
            if m is None:
                raise AssertionError("no close frame within %.1fs; got %r"
                                     % (t(timeout), [short(x) for x in before[-10:]]))
            if isinstance(m, tuple):
                if echo:
                    try:
                        self.send_close(m[1] or 1000)
                    except OSError:
                        pass
                return m[1], m[2], before
            before.append(m)
        raise AssertionError("too many messages")

    def wait_eof(self, timeout=5.0):
        """True once the server ends the TCP connection (data frames are an error)."""
        deadline = time.monotonic() + t(timeout)
        while time.monotonic() < deadline:
            try:
                m = self.next(deadline - time.monotonic())
            except EOFError:
                return True
            if m is not None:
                raise AssertionError("a message after the close frame: %r" % (m,))
        return False

    def close_gracefully(self, timeout=5.0):
        """Client-initiated close: sends 1000, waits for the answer and the TCP end."""
        self.send_close(1000)
        code, _reason, before = self.wait_close(timeout, echo=False)
        return code, before

    def drop(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()
        return False


def is_metrics(m):
    return m.get("type") == "metrics"


def is_status(m):
    return m.get("type") == "status"


def is_update(m):
    return m.get("type") == "metrics:update"


def all_series(h, match=None):
    path = "/api/v1/metrics" + ("?" + urllib.parse.urlencode({"match": match}) if match else "")
    status, _hd, doc = h.get_json(path)
    if status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, status, doc))
    return doc["series"]


def find_series(h, name, labels):
    for s in all_series(h, match=name):
        if s["name"] == name and s["labels"] == labels:
            return s
    return None


def events(h, type_pattern, since=0):
    path = "/api/v1/events?limit=1000&since=%d&type=%s" % (since, type_pattern)
    status, _hd, doc = h.get_json(path)
    if status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, status, doc))
    return doc["events"]


def wait_event(h, etype, pred=lambda p: True, timeout=5.0, desc=None):
    """The first retained event of type etype whose payload satisfies pred (polled)."""
    def probe():
        for ev in events(h, etype):
            if ev["data"]["type"] == etype and pred(ev["data"]["payload"]):
                return ev
        return None
    return wait_for(probe, timeout=timeout, desc=desc or ("event %s" % etype))


def closed_event(h, robot_id, timeout=5.0):
    return wait_event(h, "telemetry.connection_closed",
                      lambda p: p.get("robot_id") == robot_id, timeout,
                      "telemetry.connection_closed for %s" % robot_id)


def registry(h):
    status, _hd, doc = h.get_json("/api/v1/sources")
    if status != 200:
        raise AssertionError("GET /api/v1/sources -> %d %r" % (status, doc))
    return doc


def registry_entry(h, sid):
    for s in registry(h)["sources"]:
        if s["id"] == sid:
            return s
    return None


def ws_lines(h):
    return prom_get(h.prom(), "metricast_ingest_lines_total", transport="ws") or 0


def source_shed(h):
    return prom_get(h.prom(), "metricast_ingest_dropped_total", reason="source_shed") or 0


class SourcesCase(HubTestCase):
    def tearDown(self):
        # let every source session a test left behind end before the daemon is stopped:
        # a SIGTERM with a source session still open is test_server_shutdown_reason's
        # business (it crashed the daemon when this was written), not every test's
        for h in getattr(self, "_hubs", []):
            if not h.alive():
                continue
            deadline = time.monotonic() + t(5)
            while time.monotonic() < deadline:
                recs = h.log_records()
                started = sum(1 for r in recs if r.get("msg") == "source session started")
                ended = sum(1 for r in recs if r.get("msg") == "source session ended")
                if ended >= started:
                    break
                time.sleep(0.05)
            # and the hub has taken them offline (their events are on their way)
            try:
                wait_for(lambda: registry(h)["online"] == 0, timeout=3, desc="all offline")
                time.sleep(0.2)
            except (AssertionError, OSError, ValueError):
                pass
        super().tearDown()

    def assertError(self, m, code):
        self.assertEqual(m.get("type"), "error", short(m))
        self.assertEqual(m.get("error"), code, short(m))
        self.assertIsInstance(m.get("detail"), str, short(m))

    def expectError(self, ws, code, timeout=3.0):
        m, skipped = ws.expect(timeout, lambda x: x.get("type") == "error", "error " + code)
        for x in skipped:
            self.assertTrue(is_metrics(x), "unexpected message before the error: %s" % short(x))
        self.assertError(m, code)
        return m

    def assertMetricsMsg(self, m, source=None, attrs=None, capacity=None):
        self.assertEqual(m.get("type"), "metrics", short(m))
        iso_to_unix(m.get("timestamp"))
        d = m.get("data")
        self.assertIsInstance(d, dict, short(m))
        for k, typ in METRICS_FIELDS.items():
            self.assertIn(k, d, "metrics message lacks data.%s: %s" % (k, short(m)))
            self.assertIsInstance(d[k], typ, "data.%s: %s" % (k, short(m)))
            self.assertNotIsInstance(d[k], bool, "data.%s: %s" % (k, short(m)))
        self.assertRegex(d["session_id"], SESSION_RE)
        self.assertGreaterEqual(d["attempt_id"], 1, short(m))
        for k in ("queue_depth", "received", "processed", "dropped"):
            self.assertGreaterEqual(d[k], 0, short(m))
        for k in ("avg_processing_ms", "backlog_ms", "realtime_factor"):
            self.assertGreaterEqual(d[k], 0, short(m))
        self.assertGreaterEqual(d["fill_ratio"], 0, short(m))
        self.assertLessEqual(d["fill_ratio"], 1, short(m))
        self.assertLessEqual(d["queue_depth"], d["queue_capacity"], short(m))
        self.assertLessEqual(d["processed"] + d["dropped"], d["received"], short(m))
        if source is not None:
            self.assertEqual(d["source"], source, short(m))
        if attrs is not None:
            self.assertEqual(d["attrs"], attrs, short(m))
        if capacity is not None:
            self.assertEqual(d["queue_capacity"], capacity, short(m))
        return d

    def first_metrics(self, ws, timeout=3.0):
        m, _ = ws.expect(timeout, is_metrics, "a session metrics message")
        return m["data"]

    def assertEnvelope(self, ev, etype, payload_keys):
        self.assertEqual(ev.get("type"), "event", short(ev))
        self.assertIsInstance(ev.get("seq"), int, short(ev))
        data = ev.get("data")
        self.assertIsInstance(data, dict, short(ev))
        self.assertEqual(data.get("type"), etype, short(ev))
        self.assertIsInstance(data.get("id"), str, short(ev))
        p = data.get("payload")
        self.assertIsInstance(p, dict, short(ev))
        self.assertEqual(sorted(p), sorted(payload_keys), short(ev))
        return p

    def assertClosed(self, ev, robot_id, reason, session_id=None):
        p = self.assertEnvelope(ev, "telemetry.connection_closed",
                                ["robot_id", "connection_id", "duration_seconds", "reason",
                                 "disconnected_at"])
        self.assertEqual(p["robot_id"], robot_id, short(ev))
        self.assertEqual(p["reason"], reason, short(ev))
        self.assertRegex(p["connection_id"], SESSION_RE)
        if session_id is not None:
            self.assertEqual(p["connection_id"], session_id, short(ev))
        self.assertIsInstance(p["duration_seconds"], (int, float), short(ev))
        self.assertGreaterEqual(p["duration_seconds"], 0, short(ev))
        iso_to_unix(p["disconnected_at"])
        return p

    def assertEstablished(self, ev, robot_id, session_id=None):
        p = self.assertEnvelope(ev, "telemetry.connection_established",
                                ["robot_id", "connection_id", "connected_at"])
        self.assertEqual(p["robot_id"], robot_id, short(ev))
        self.assertRegex(p["connection_id"], SESSION_RE)
        if session_id is not None:
            self.assertEqual(p["connection_id"], session_id, short(ev))
        iso_to_unix(p["connected_at"])
        return p


# --------------------------------------------------------------------------------------
# becoming a source session
# --------------------------------------------------------------------------------------
class TestSessionStart(SourcesCase):
    def test_query_source_starts_session(self):
        h = self.hub()
        with WS(h, "/ws?source=robot_q") as ws:
            d = self.first_metrics(ws)
            self.assertEqual(d["source"], "robot_q")
            self.assertEqual(d["attrs"], {})
            self.assertEqual(d["attempt_id"], 1)
            ev = wait_event(h, "telemetry.connection_established",
                            lambda p: p["robot_id"] == "robot_q")
            self.assertEstablished(ev, "robot_q", d["session_id"])
            e = registry_entry(h, "robot_q")
            self.assertIsNotNone(e, registry(h))
            self.assertTrue(e["online"], e)
            self.assertEqual(e["session_id"], d["session_id"], e)

    def test_hello_with_attrs_real_client(self):
        """python3-websockets as the client: hello with attrs, a sample, the metrics
        message carries the attrs; a second hello is refused, the session goes on."""
        h = self.hub()
        attrs = {"provider": "acme", "model": "x1", "n": 3, "nested": {"a": [1, 2]}}

        async def go():
            async with websockets.connect(h.ws_url, open_timeout=t(5), ping_interval=None,
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "hello", "source": "robot_001",
                                          "attrs": attrs}))
                await ws.send(json.dumps({"type": "sample", "metrics": {"cpu_usage": 45.2}}))
                await ws.send(json.dumps({"type": "hello", "source": "robot_002"}))
                got, err, metrics = [], None, None
                deadline = time.monotonic() + t(4)
                while (err is None or metrics is None) and time.monotonic() < deadline:
                    m = json.loads(await asyncio.wait_for(ws.recv(),
                                                          deadline - time.monotonic()))
                    got.append(m)
                    if m.get("type") == "error":
                        err = m
                    elif m.get("type") == "metrics":
                        metrics = m
                # after the refused hello the connection is still robot_001's session
                await ws.send("battery:81|g")
                return got, err, metrics

        got, err, metrics = asyncio.run(go())
        self.assertIsNotNone(err, got)
        self.assertError(err, "bad_message")
        self.assertIsNotNone(metrics, got)
        d = self.assertMetricsMsg(metrics, source="robot_001", attrs=attrs)
        e = wait_for(lambda: (lambda x: x if x and not x["online"] else None)(
            registry_entry(h, "robot_001")), desc="robot_001 offline")
        self.assertEqual(e["attrs"], attrs, e)
        self.assertIsNone(registry_entry(h, "robot_002"), registry(h))
        self.assertEqual(find_series(h, "cpu_usage", {"source": "robot_001"})["value"], 45.2)
        self.assertEqual(find_series(h, "battery", {"source": "robot_001"})["value"], 81)
        self.assertClosed(closed_event(h, "robot_001"), "robot_001", "client_disconnect",
                          d["session_id"])

    def test_bad_source_ids(self):
        h = self.hub()
        # ?source= with a bad id: error bad_source, and the connection is not a source
        for bad in ("bad!id", "a%20b", "x" * 129):
            with WS(h, "/ws?source=" + bad) as ws:
                self.expectError(ws, "bad_source")
                ws.send_json({"type": "sample", "metrics": {"a": 1}})
                self.expectError(ws, "not_a_source")
        # hello with a bad id or bad attrs: bad_message (one connection, under the abuse limit)
        with WS(h) as ws:
            for hello in ({"type": "hello", "source": ""},
                          {"type": "hello", "source": "a b"},
                          {"type": "hello", "source": "é"},
                          {"type": "hello", "source": "x" * 129},
                          {"type": "hello", "source": 5},
                          {"type": "hello"},
                          {"type": "hello", "source": "ok1", "attrs": [1]},
                          {"type": "hello", "source": "ok1", "attrs": "model"},
                          {"type": "hello", "source": "ok1",
                           "attrs": {"big": "y" * 5000}}):
                ws.send_json(hello)
                self.expectError(ws, "bad_message")
        # a 128-character id of every allowed character class is fine
        long_id = ("Az09_.:-" * 16)[:128]
        with WS(h) as ws:
            ws.send_json({"type": "hello", "source": long_id})
            d = self.first_metrics(ws)
            self.assertEqual(d["source"], long_id)
        self.assertEqual(sorted(s["id"] for s in registry(h)["sources"]), [long_id])

    def test_sample_before_hello_and_no_metrics_before_session(self):
        h = self.hub()
        with WS(h) as ws:
            ws.send_json({"type": "sample", "metrics": {"early": 1}})
            self.expectError(ws, "not_a_source")
            ws.send_json({"type": "sample", "samples": [{"name": "early", "value": 1}]})
            self.expectError(ws, "not_a_source")
            # a plain connection gets no per-session metrics
            quiet = ws.collect(1.3)
            self.assertEqual(quiet, [], "messages to a plain connection: %r" % quiet)
            ws.send_json({"type": "hello", "source": "late"})
            ws.send_json({"type": "sample", "metrics": {"early": 2}})
            d = self.first_metrics(ws, timeout=2.5)
            self.assertEqual(d["source"], "late")
            self.assertEqual(d["received"], 1, d)
            self.assertIsNone(find_series(h, "early", {}))
            self.assertEqual(find_series(h, "early", {"source": "late"})["value"], 2)
            # a hello on a ?source= connection is refused too
        with WS(h, "/ws?source=q1") as ws:
            ws.send_json({"type": "hello", "source": "q2"})
            self.expectError(ws, "bad_message")
        self.assertIsNone(registry_entry(h, "q2"), registry(h))


# --------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------
class TestSamples(SourcesCase):
    def test_every_sample_form(self):
        h = self.hub()
        before = ws_lines(h)
        with WS(h, "/ws?source=robot_s") as ws:
            # metrics form (gauges), with a timestamp: 2 lines
            ws.send_json({"type": "sample", "metrics": {"cpu_usage": 45.2, "battery": 81},
                          "timestamp": time.time()})
            # samples form, as POST /api/v1/ingest: 5 lines
            ws.send_json({"type": "sample", "samples": [
                {"name": "jobs", "kind": "counter", "value": 2},
                {"name": "jobs", "kind": "counter", "value": 3},
                {"name": "temp", "value": 21.5, "labels": {"zone": "a"}},
                {"name": "lat", "kind": "timer", "value": 12},
                {"name": "own", "value": 7, "labels": {"source": "elsewhere"}},
            ]})
            # StatsD text frames: 3 lines
            ws.send_text("disk:5|g\nreq:1|c")
            # an empty text frame is StatsD text without lines (wslay hands it over as a
            # null pointer: UBSan in the ASan build stops the daemon if that reaches
            # the parsers; found by fuzz_ws)
            ws.send_text("")
            ws.send_text("req:4|c|#zone:b\n")
            m, _ = ws.expect(3, lambda x: is_metrics(x) and x["data"]["received"] == 5,
                             "a metrics message counting the 5 messages")
            d = m["data"]
            # folded and handed over within ~100 ms of arrival
            wait_for(lambda: find_series(h, "req", {"source": "robot_s", "zone": "b"}),
                     desc="the last StatsD sample")
            sid = d["session_id"]
            self.assertEqual(find_series(h, "cpu_usage", {"source": "robot_s"})["value"], 45.2)
            self.assertEqual(find_series(h, "battery", {"source": "robot_s"})["value"], 81)
            jobs = find_series(h, "jobs", {"source": "robot_s"})
            self.assertEqual((jobs["kind"], jobs["value"]), ("counter", 5), jobs)
            self.assertEqual(find_series(h, "temp", {"source": "robot_s", "zone": "a"})["value"],
                             21.5)
            self.assertEqual(find_series(h, "lat", {"source": "robot_s"})["kind"], "timer")
            # a sample naming its own source label keeps it
            self.assertEqual(find_series(h, "own", {"source": "elsewhere"})["value"], 7)
            self.assertIsNone(find_series(h, "own", {"source": "robot_s"}))
            self.assertEqual(find_series(h, "disk", {"source": "robot_s"})["value"], 5)
            self.assertEqual(find_series(h, "req", {"source": "robot_s"})["value"], 1)
            self.assertEqual(wait_for(lambda: ws_lines(h) - before >= 10 and ws_lines(h)),
                             before + 10)
            # the per-source view: `metrics` only has the series labelled just source=
            status, _hd, doc = h.get_json("/api/v1/sources/robot_s/metrics")
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["source"], "robot_s")
            self.assertTrue(doc["online"])
            iso_to_unix(doc["timestamp"])
            self.assertEqual(set(doc["metrics"]),
                             {"cpu_usage", "battery", "jobs", "lat", "disk", "req"}, doc)
            self.assertEqual(doc["metrics"]["cpu_usage"], 45.2)
            self.assertEqual(doc["metrics"]["disk"], 5)
            keys = sorted((s["name"], tuple(sorted(s["labels"].items()))) for s in doc["series"])
            self.assertIn(("temp", (("source", "robot_s"), ("zone", "a"))), keys)
            self.assertIn(("req", (("source", "robot_s"), ("zone", "b"))), keys)
            self.assertNotIn("own", [k[0] for k in keys])
            for s in doc["series"]:
                self.assertEqual(s["labels"].get("source"), "robot_s", s)
            # a bad value is counted as rejected; a bad message is answered; both leave
            # the session going
            rej0 = prom_get(h.prom(), "metricast_ingest_rejected_total", reason="bad_value")
            ws.send_json({"type": "sample", "metrics": {"cpu_usage": "high"}})
            wait_for(lambda: prom_get(h.prom(), "metricast_ingest_rejected_total",
                                      reason="bad_value") == rej0 + 1, desc="bad_value +1")
            ws.send_json({"type": "sample", "metrics": {"cpu_usage": 1},
                          "timestamp": "yesterday"})
            m, _ = ws.expect(3, lambda x: x.get("type") == "error", "bad_sample")
            self.assertError(m, "bad_sample")
            ws.send_text("disk:6|g")
            wait_for(lambda: find_series(h, "disk", {"source": "robot_s"})["value"] == 6,
                     desc="disk=6 after a bad sample")
            code, _ = ws.close_gracefully()
            self.assertEqual(code, 1000)
        self.assertTrue(sid)

    def test_client_metrics(self):
        h = self.hub()
        before = ws_lines(h)
        with WS(h) as p1, WS(h) as p2, WS(h, "/ws?source=robot_c") as src:
            p1.send_json({"type": "client_metrics", "metrics": {"fps": 30}})
            p2.send_json({"type": "client_metrics", "metrics": {"fps": 24}})
            src.send_json({"type": "client_metrics", "metrics": {"render_ms": 4.5}})
            d = self.first_metrics(src)
            sid = d["session_id"]

            def fps_series():
                got = [s for s in all_series(h, match="fps") if s["name"] == "fps"]
                return got if len(got) == 2 else None
            got = wait_for(fps_series, desc="two fps series")
            by_value = {s["value"]: s["labels"] for s in got}
            self.assertEqual(sorted(by_value), [24, 30], got)
            for v, labels in by_value.items():
                self.assertEqual(list(labels), ["client"], got)
                self.assertRegex(labels["client"], SESSION_RE)
                self.assertEqual(find_series(h, "fps", labels)["kind"], "gauge")
            self.assertNotEqual(by_value[24]["client"], by_value[30]["client"], got)
            self.assertNotIn(sid, [lb["client"] for lb in by_value.values()])
            # from a source session: labelled with its session id (not source=)
            s = wait_for(lambda: find_series(h, "render_ms", {"client": sid}),
                         desc="render_ms{client=%s}" % sid)
            self.assertEqual(s["value"], 4.5)
            self.assertIsNone(find_series(h, "render_ms", {"source": "robot_c"}))
            # bad client_metrics: an error, not a crash
            p1.send_json({"type": "client_metrics", "metrics": 5})
            self.expectError(p1, "bad_message")
        self.assertEqual(wait_for(lambda: ws_lines(h) - before >= 3 and ws_lines(h)),
                         before + 3)


# --------------------------------------------------------------------------------------
# the per-session metrics message
# --------------------------------------------------------------------------------------
class TestSessionMetrics(SourcesCase):
    def test_rate_and_fields(self):
        h = self.hub(["--source-queue-messages", "100"])
        attrs = {"provider": "acme", "model": "x1"}
        with WS(h) as ws:
            ws.send_json({"type": "hello", "source": "robot_m", "attrs": attrs})
            for i in range(5):
                ws.send_json({"type": "sample", "metrics": {"m_val": i}})
            ws.send_text("m_hits:1|c\nm_hits:1|c")
            first, skipped = ws.expect(3, lambda x: is_metrics(x) and x["data"]["received"] == 6,
                                       "a metrics message counting the 6 messages")
            self.assertTrue(all(is_metrics(x) for x in skipped), skipped)
            got = [first] + [m for _, m in ws.collect(4.2)]
            for m in got:
                self.assertTrue(is_metrics(m), short(m))
                d = self.assertMetricsMsg(m, "robot_m", attrs, 100)
                self.assertEqual(d["attempt_id"], 1, short(m))
                self.assertEqual(d["session_id"], first["data"]["session_id"], short(m))
                self.assertEqual((d["received"], d["processed"], d["dropped"]), (6, 6, 0),
                                 short(m))
                self.assertEqual((d["queue_depth"], d["fill_ratio"], d["backlog_ms"]),
                                 (0, 0, 0), short(m))
                self.assertLess(d["realtime_factor"], 1, short(m))
            # about 1 per second
            self.assertGreaterEqual(len(got), 4, "metrics messages in ~5 s: %d" % len(got))
            self.assertLessEqual(len(got), 7, "metrics messages in ~5 s: %d" % len(got))
            stamps = [iso_to_unix(m["timestamp"]) for m in got]
            gaps = [round(b - a, 3) for a, b in zip(stamps, stamps[1:])]
            for g in gaps:
                self.assertGreater(g, 0.5, "gaps %r" % gaps)
                self.assertLess(g, t(1.6), "gaps %r" % gaps)
            # it stops at close: nothing after the close handshake
            code, _before = ws.close_gracefully()
            self.assertEqual(code, 1000)
            self.assertTrue(ws.wait_eof(3), "the server did not end the TCP connection")
        # the daemon logs the end from the connection's close callback, which may run just
        # after the client saw EOF
        ended = wait_for(lambda: [r for r in h.log_records()
                                  if r.get("msg") == "source session ended"],
                         desc="source session ended logged")
        self.assertEqual(len(ended), 1, h.log())
        self.assertEqual((ended[0].get("source"), ended[0].get("reason"),
                          ended[0].get("received")), ("robot_m", "client_disconnect", "6"))
        self.assertEqual(find_series(h, "m_hits", {"source": "robot_m"})["value"], 2)
        self.assertEqual(find_series(h, "m_val", {"source": "robot_m"})["value"], 4)

    def test_attempt_id_counts_reconnects(self):
        h = self.hub()
        sids = []
        for attempt in (1, 2, 3):
            with WS(h, "/ws?source=robot_a") as ws:
                d = self.first_metrics(ws)
                self.assertEqual(d["attempt_id"], attempt, d)
                sids.append(d["session_id"])
                if attempt == 2:
                    ws.drop()  # a dropped TCP connection counts the same
                else:
                    ws.close_gracefully()
            # reconnect once the hub saw it go (a reconnect racing the old session's end
            # replaces it silently: no connection_closed for the old one)
            wait_for(lambda: not registry_entry(h, "robot_a")["online"],
                     desc="robot_a offline after attempt %d" % attempt)
        self.assertEqual(len(set(sids)), 3, sids)
        with WS(h, "/ws?source=robot_b") as ws:  # another id starts at 1
            self.assertEqual(self.first_metrics(ws)["attempt_id"], 1)
        e = wait_for(lambda: (lambda x: x if x and not x["online"] else None)(
            registry_entry(h, "robot_a")), desc="robot_a offline")
        self.assertEqual(e["attempts"], 3, e)
        self.assertEqual(e["session_id"], sids[-1], e)
        est = [ev for ev in events(h, "telemetry.connection_established")
               if ev["data"]["payload"]["robot_id"] == "robot_a"]
        self.assertEqual([ev["data"]["payload"]["connection_id"] for ev in est], sids)
        closed = wait_for(lambda: (lambda v: v if len(v) == 3 else None)(
            [ev for ev in events(h, "telemetry.connection_closed")
             if ev["data"]["payload"]["robot_id"] == "robot_a"]), desc="3 closed events")
        self.assertEqual([ev["data"]["payload"]["connection_id"] for ev in closed], sids)
        for ev in closed:
            self.assertClosed(ev, "robot_a", "client_disconnect")

    def test_attempt_id_known_from_the_first_message(self):
        """The first metrics message of a session already carries its attempt_id, even
        when the hub is busy while the session starts just before a worker's second."""
        h = self.hub(["--max-series", "200000"])
        body = "".join("bulk_%d:1|g\n" % i for i in range(60000)).encode()
        status, _hd, _b = h.request("POST", "/api/v1/ingest", body=body, timeout=30)
        self.assertEqual(status, 202)
        phase = WS(h, "/ws?source=phase")
        try:
            self.first_metrics(phase)
            tick = time.monotonic()
            bad = []
            for k in range(6):
                nxt = tick + 1.0
                while nxt - 0.06 < time.monotonic():
                    nxt += 1.0
                time.sleep(nxt - 0.06 - time.monotonic())
                # keep the hub busy across the workers' next second
                busy = [threading.Thread(target=lambda: h.get("/api/v1/metrics", timeout=30),
                                         daemon=True) for _ in range(2)]
                for th in busy:
                    th.start()
                time.sleep(0.02)
                with WS(h, "/ws?source=race_%d" % k) as ws:
                    d = self.first_metrics(ws)
                    if d["attempt_id"] != 1:
                        bad.append(d)
                for th in busy:
                    th.join(t(30))
                m, _ = phase.expect(3, is_metrics, "the phase source's metrics")
                tick = time.monotonic()
            self.assertEqual(bad, [], "first metrics messages without the session's "
                             "attempt_id (1): %r" % bad)
        finally:
            phase.drop()

    def test_fault_injection_next_second_goes_on(self):
        h = self.hub(["--debug-session-metrics-fail-every", "3"])
        with WS(h, "/ws?source=robot_f") as ws:
            got = [m for _, m in ws.collect(6.6)]
        for m in got:
            self.assertMetricsMsg(m, "robot_f")
        fails = [r for r in h.log_records()
                 if r.get("msg") == "session metrics failed; next second goes on"]
        # 6 or 7 productions: 2 failed (the 3rd and the 6th), 4 or 5 delivered
        self.assertGreaterEqual(len(fails), 1, h.log())
        self.assertLessEqual(len(fails), 3, h.log())
        for r in fails:
            self.assertEqual(r.get("level"), "error", r)
            self.assertEqual(r.get("source"), "robot_f", r)
        self.assertGreaterEqual(len(got), 3, [short(m) for m in got])
        self.assertLessEqual(len(got), 6, [short(m) for m in got])
        stamps = [iso_to_unix(m["timestamp"]) for m in got]
        gaps = [round(b - a, 3) for a, b in zip(stamps, stamps[1:])]
        # a failed second shows as a ~2 s gap, and the messages go on after it
        long_gaps = [i for i, g in enumerate(gaps) if g > 1.6]
        self.assertTrue(long_gaps, "no missing second: gaps %r" % gaps)
        self.assertLess(long_gaps[0], len(gaps), gaps)
        for g in gaps:
            self.assertLess(g, t(2.7), "gaps %r (two seconds lost in a row?)" % gaps)
        self.assertTrue(h.alive())


# --------------------------------------------------------------------------------------
# the inbound queue
# --------------------------------------------------------------------------------------
class TestInboundQueue(SourcesCase):
    def assertFlowSequence(self, statuses, session_id):
        self.assertTrue(statuses, "no status message")
        states = [m["state"] for m in statuses]
        self.assertEqual(states[0], "backpressure", states)
        self.assertEqual(states[-1], "streaming", states)
        for a, b in zip(states, states[1:]):
            self.assertNotEqual(a, b, "two status messages without a change: %r" % states)
        for m in statuses:
            for k, typ in (("fill_ratio", (int, float)), ("queue_depth", int),
                           ("dropped", int), ("message", str), ("session_id", str)):
                self.assertIsInstance(m.get(k), typ, "status.%s: %s" % (k, short(m)))
            self.assertEqual(m["session_id"], session_id, short(m))
            iso_to_unix(m.get("timestamp"))
            if m["state"] == "backpressure":
                self.assertGreater(m["fill_ratio"], 0.85, short(m))
                self.assertIsInstance(m.get("retry_after_ms"), int, short(m))
                self.assertGreaterEqual(m["retry_after_ms"], 0, short(m))
            else:
                self.assertLess(m["fill_ratio"], 0.70, short(m))
        drops = [m["dropped"] for m in statuses]
        self.assertEqual(drops, sorted(drops), "dropped went backwards: %r" % drops)

    def test_flood_backpressure_others_unaffected(self):
        h = self.hub(["--source-queue-messages", "64"])
        sub = WS(h, "/ws?topics=metrics")
        flood = WS(h, "/ws?source=flooder")
        steady = WS(h, "/ws?source=steady")
        try:
            sub.expect(5, is_update, "the first metrics:update")
            fsid = self.first_metrics(flood)["session_id"]
            self.first_metrics(steady)
            shed0 = source_shed(h)
            N = 20000
            frames = b"".join(ws_encode_frame(OP_TEXT, "flood_hits:1|c") for _ in range(N))
            done = {}

            def blast():
                try:
                    done["t0"] = time.monotonic()
                    flood.send_bytes(frames)  # as fast as possible
                    done["t1"] = time.monotonic()
                except BaseException as e:  # reported by the main thread
                    done["error"] = e

            th = threading.Thread(target=blast, daemon=True)
            th.start()
            # meanwhile: the other source keeps sending and being stored, the
            # subscriber keeps getting its updates, the flooder hears about its queue
            fmsgs, smsgs, updates = [], [], []
            steady_sent = 0
            t_end = time.monotonic() + 3.0
            next_send = time.monotonic()
            while time.monotonic() < t_end:
                if time.monotonic() >= next_send:
                    steady_sent += 1
                    steady.send_json({"type": "sample", "metrics": {"steady_val": steady_sent}})
                    next_send += 0.1
                for ws, sink in ((flood, fmsgs), (steady, smsgs), (sub, updates)):
                    m = ws.next(0.01)
                    while m is not None:
                        if isinstance(m, tuple):
                            self.fail("connection closed %r during the flood" % (m,))
                        sink.append((time.monotonic(), m))
                        m = ws.next(0)
            th.join(t(10))
            self.assertNotIn("error", done, done)
            self.assertFalse(th.is_alive(), "the flood could not be sent")
            # the steady source: its last value is stored promptly, never told to slow down
            wait_for(lambda: (find_series(h, "steady_val", {"source": "steady"}) or {})
                     .get("value") == steady_sent, timeout=2.0,
                     desc="steady_val=%d" % steady_sent)
            for _, m in smsgs:
                self.assertFalse(is_status(m), "the steady source got %s" % short(m))
            # the subscriber: updates kept coming about every second
            ups = [ts for ts, m in updates if is_update(m)]
            self.assertGreaterEqual(len(ups), 2, "subscriber updates in 3 s: %d" % len(ups))
            for a, b in zip(ups, ups[1:]):
                self.assertLess(b - a, t(2.0), "subscriber update gap %.2f s" % (b - a))
            # the flooder: backpressure then streaming, one message per change
            more = flood.collect(0.3)
            statuses = [m for _, m in fmsgs + more if is_status(m)]
            self.assertFlowSequence(statuses, fsid)
            # its figures: everything received, the rest shed and counted
            d = None
            for _ in range(5):
                m, _ = flood.expect(3, is_metrics, "the flooder's metrics")
                d = self.assertMetricsMsg(m, "flooder", capacity=64)
                if d["received"] == N and d["queue_depth"] == 0:
                    break
            self.assertEqual(d["received"], N, d)
            self.assertEqual(d["queue_depth"], 0, d)
            self.assertGreater(d["dropped"], 0, d)
            self.assertEqual(d["processed"] + d["dropped"], N, d)
            self.assertEqual(source_shed(h) - shed0, d["dropped"])
            self.assertLessEqual(statuses[-1]["dropped"], d["dropped"])
            wait_for(lambda: (find_series(h, "flood_hits", {"source": "flooder"}) or {})
                     .get("value") == d["processed"], timeout=2.0,
                     desc="flood_hits == processed (%d)" % d["processed"])
        finally:
            for ws in (sub, flood, steady):
                ws.drop()
        flood_end = wait_for(lambda: [r for r in h.log_records()
                                      if r.get("msg") == "source session ended"
                                      and r.get("source") == "flooder"], desc="flooder ended")
        self.assertEqual(flood_end[0].get("dropped"), str(d["dropped"]), flood_end)

    def test_byte_limit_backpressure_and_shedding(self):
        h = self.hub(["--source-queue-bytes", "4096"])
        with WS(h, "/ws?source=bytes") as ws:
            sid = self.first_metrics(ws)["session_id"]
            shed0 = source_shed(h)
            N = 60  # ~1 KB frames in one write: 4 of them fill the byte limit
            ws.send_bytes(b"".join(ws_encode_frame(OP_TEXT, ("bg:%d|g\n" % i) * 100)
                                   for i in range(N)))
            got = [m for _, m in ws.collect(1.5)]
            statuses = [m for m in got if is_status(m)]
            self.assertFlowSequence(statuses, sid)
            d = None
            for _ in range(4):
                m, _ = ws.expect(3, is_metrics, "metrics")
                d = self.assertMetricsMsg(m, "bytes")
                if d["received"] == N:
                    break
            self.assertEqual(d["received"], N, d)
            self.assertEqual(d["processed"] + d["dropped"], N, d)
            self.assertEqual(source_shed(h) - shed0, d["dropped"])
            # the newest is kept: the last gauge made it
            wait_for(lambda: (find_series(h, "bg", {"source": "bytes"}) or {}).get("value")
                     == N - 1, timeout=2.0, desc="bg == %d" % (N - 1))


# --------------------------------------------------------------------------------------
# the registry and the per-source endpoint
# --------------------------------------------------------------------------------------
class TestRegistry(SourcesCase):
    def test_online_offline_last_seen(self):
        h = self.hub()
        doc = registry(h)
        self.assertEqual((doc["sources"], doc["count"], doc["online"]), ([], 0, 0))
        self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 0)
        attrs = {"provider": "p", "model": "m"}
        t_before = time.time()
        with WS(h, "/ws?source=zz_second") as other, WS(h) as ws:
            ws.send_json({"type": "hello", "source": "aa_first", "attrs": attrs})
            d = self.first_metrics(ws)
            doc = registry(h)
            self.assertEqual([s["id"] for s in doc["sources"]], ["aa_first", "zz_second"], doc)
            self.assertEqual((doc["count"], doc["online"]), (2, 2), doc)
            self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 2)
            e = doc["sources"][0]
            for k in ("id", "status", "online", "connected_at", "last_seen", "session_id",
                      "attempts", "attrs"):
                self.assertIn(k, e, e)
            self.assertNotIn("disconnected_at", e, e)
            self.assertEqual((e["status"], e["online"], e["session_id"], e["attempts"],
                              e["attrs"]), ("online", True, d["session_id"], 1, attrs), e)
            connected = iso_to_unix(e["connected_at"])
            self.assertGreaterEqual(connected, t_before - 1, e)
            self.assertLessEqual(connected, time.time() + 1, e)
            seen0 = iso_to_unix(e["last_seen"])
            self.assertGreaterEqual(seen0, connected, e)
            # a sample moves last_seen on
            time.sleep(0.4)
            ws.send_text("ls:1|g")
            e = wait_for(lambda: (lambda x: x if iso_to_unix(x["last_seen"]) > seen0 + 0.2
                                  else None)(registry_entry(h, "aa_first")),
                         desc="last_seen after a sample")
            seen1 = iso_to_unix(e["last_seen"])
            self.assertLessEqual(seen1, time.time() + 1, e)
            ws.close_gracefully()
            e = wait_for(lambda: (lambda x: x if not x["online"] else None)(
                registry_entry(h, "aa_first")), desc="aa_first offline")
            self.assertEqual((e["status"], e["online"], e["attempts"], e["attrs"]),
                             ("offline", False, 1, attrs), e)
            self.assertIn("disconnected_at", e, e)
            self.assertGreaterEqual(iso_to_unix(e["disconnected_at"]), seen1, e)
            self.assertEqual(iso_to_unix(e["last_seen"]), seen1, e)
            doc = registry(h)
            self.assertEqual((doc["count"], doc["online"]), (2, 1), doc)
            self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 1)
            self.assertTrue(registry_entry(h, "zz_second")["online"])
            other.drop()
        wait_for(lambda: registry(h)["online"] == 0, desc="no source online")
        self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 0)
        self.assertEqual(registry(h)["count"], 2)

    def test_newer_session_replaces_older(self):
        h = self.hub()
        old = WS(h, "/ws?source=dup")
        d_old = self.first_metrics(old)
        new = WS(h, "/ws?source=dup")
        try:
            d_new = self.first_metrics(new)
            self.assertEqual(d_new["attempt_id"], 2, d_new)
            e = registry_entry(h, "dup")
            self.assertEqual((e["online"], e["session_id"], e["attempts"]),
                             (True, d_new["session_id"], 2), e)
            self.assertEqual(registry(h)["online"], 1)
            self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 1)
            # the older one going away does not take the source offline
            old.close_gracefully()
            wait_for(lambda: [r for r in h.log_records()
                              if r.get("msg") == "source session ended"], desc="old ended")
            time.sleep(0.2)
            e = registry_entry(h, "dup")
            self.assertEqual((e["online"], e["session_id"]), (True, d_new["session_id"]), e)
            self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 1)
            # every session that started ends with its own event, the replaced one too
            ev_old = wait_event(h, "telemetry.connection_closed",
                                lambda p: p.get("connection_id") == d_old["session_id"], 5.0,
                                "connection_closed of the older session")
            self.assertClosed(ev_old, "dup", "client_disconnect", d_old["session_id"])
            new.close_gracefully()
            ev = wait_event(h, "telemetry.connection_closed",
                            lambda p: p.get("connection_id") == d_new["session_id"], 5.0,
                            "connection_closed of the newer session")
            self.assertClosed(ev, "dup", "client_disconnect", d_new["session_id"])
            self.assertFalse(registry_entry(h, "dup")["online"])
            self.assertEqual(prom_get(h.prom(), "metricast_sources_online"), 0)
        finally:
            old.drop()
            new.drop()
        self.assertTrue(d_old["session_id"] != d_new["session_id"])

    def test_source_metrics_endpoint(self):
        h = self.hub()
        with WS(h, "/ws?source=robot_e") as ws:
            ws.send_json({"type": "sample", "metrics": {"cpu_usage": 12.5, "battery": 90}})
            ws.send_text("lbl:1|g|#zone:z")
            wait_for(lambda: find_series(h, "lbl", {"source": "robot_e", "zone": "z"}),
                     desc="samples stored")
            docs = {}
            for path in ("/api/v1/sources/robot_e/metrics",
                         "/api/telemetry/robots/robot_e/metrics"):
                status, hdrs, doc = h.get_json(path)
                self.assertEqual(status, 200, (path, doc))
                self.assertIn("application/json", hdrs.get("Content-Type", ""))
                self.assertEqual(sorted(doc), ["metrics", "online", "series", "source",
                                               "timestamp"], doc)
                self.assertEqual((doc["source"], doc["online"]), ("robot_e", True), doc)
                self.assertEqual(doc["metrics"], {"cpu_usage": 12.5, "battery": 90}, doc)
                self.assertEqual(len(doc["series"]), 3, doc)
                iso_to_unix(doc["timestamp"])
                docs[path] = doc
            # each call published telemetry.metrics_published with the same metrics
            pubs = wait_for(lambda: (lambda v: v if len(v) >= 2 else None)(
                events(h, "telemetry.metrics_published")), desc="2 metrics_published")
            self.assertEqual(len(pubs), 2, pubs)
            for ev, doc in zip(pubs, docs.values()):
                p = self.assertEnvelope(ev, "telemetry.metrics_published",
                                        ["robot_id", "metrics", "published_at"])
                self.assertEqual(p["robot_id"], "robot_e")
                self.assertEqual(p["metrics"], doc["metrics"])
                self.assertEqual(p["published_at"], doc["timestamp"])
            ws.close_gracefully()
        wait_for(lambda: not registry_entry(h, "robot_e")["online"], desc="offline")
        # an offline source still answers, with online false
        status, _hd, doc = h.get_json("/api/v1/sources/robot_e/metrics")
        self.assertEqual(status, 200, doc)
        self.assertFalse(doc["online"], doc)
        self.assertEqual(doc["metrics"]["battery"], 90, doc)
        # that call published too (the event is logged after the answer: wait for it)
        n_pub = len(wait_for(lambda: (lambda v: v if len(v) >= 3 else None)(
            events(h, "telemetry.metrics_published")), desc="3 metrics_published"))
        self.assertEqual(n_pub, 3)
        # unknown source: 404 JSON, and no event
        for path in ("/api/v1/sources/nobody/metrics", "/api/telemetry/robots/nobody/metrics",
                     "/api/v1/sources/robot_e", "/api/v1/sources/robot_e/metrics/x",
                     "/api/v1/sources//metrics"):
            status, hdrs, body = h.get(path)
            self.assertEqual(status, 404, (path, body))
            self.assertJsonError(body, hdrs.get("Content-Type"), status)
        self.assertEqual(len(events(h, "telemetry.metrics_published")), n_pub)


# --------------------------------------------------------------------------------------
# lifecycle events and close reasons
# --------------------------------------------------------------------------------------
class TestLifecycle(SourcesCase):
    def test_sources_topic_and_client_disconnect(self):
        h = self.hub()
        with WS(h) as sub:
            sub.send_json({"type": "subscribe", "topics": ["sources"]})
            sub.send_json({"type": "ping"})
            sub.expect(3, lambda m: m.get("type") == "pong", "pong")
            a = WS(h, "/ws?source=topic_a")
            sid_a = self.first_metrics(a)["session_id"]
            h.get_json("/api/v1/sources/topic_a/metrics")  # metrics_published: not on `sources`
            a.close_gracefully()
            a.drop()
            got = []

            def next_events(n):
                for _ in range(n):
                    m, skipped = sub.expect(5, lambda x: x.get("type") == "event", "an event")
                    self.assertEqual(skipped, [], [short(x) for x in skipped])
                    got.append(m)
            # topic_a's end reaches the hub from its worker; topic_b may start on the other
            # worker, and two workers' news have no order between them: b starts once the
            # hub has seen a go
            next_events(2)
            b = WS(h, "/ws?source=topic_b")
            sid_b = self.first_metrics(b)["session_id"]
            b.drop()  # the TCP connection just goes away
            next_events(2)
            self.assertEstablished(got[0], "topic_a", sid_a)
            self.assertClosed(got[1], "topic_a", "client_disconnect", sid_a)
            self.assertEstablished(got[2], "topic_b", sid_b)
            self.assertClosed(got[3], "topic_b", "client_disconnect", sid_b)
            seqs = [m["seq"] for m in got]
            self.assertEqual(seqs, sorted(seqs), seqs)
            self.assertEqual(len(set(seqs)), 4, seqs)
            # the metrics_published event exists, but only in the event log
            pub = events(h, "telemetry.metrics_published")
            self.assertEqual(len(pub), 1, pub)
            self.assertNotIn(pub[0]["seq"], seqs)
            self.assertEqual(sub.collect(0.5), [])
            # the same events on the REST log, same seqs and envelopes
            rest = {ev["seq"]: ev for ev in events(h, "telemetry.connection_*")}
            for m in got:
                self.assertEqual(rest.get(m["seq"]), m)
            rest_all = events(h, "telemetry.*")
            self.assertEqual(len(rest_all), 5, rest_all)
        a_closed = got[1]["data"]["payload"]
        self.assertLess(a_closed["duration_seconds"], t(5), a_closed)

    def test_timeout_reason(self):
        h = self.hub(["--ws-ping-interval", "500ms", "--ws-idle-timeout", "1s"])
        with WS(h, "/ws?source=silent", answer_pings=False) as ws:
            t0 = time.monotonic()
            code, reason, _before = ws.wait_close(5, echo=True)
            waited = time.monotonic() - t0
        self.assertEqual(code, 1001, reason)
        self.assertIn("idle", reason)
        self.assertGreater(waited, 0.7)
        ev = closed_event(h, "silent")
        p = self.assertClosed(ev, "silent", "timeout")
        self.assertGreaterEqual(p["duration_seconds"], 0.8, p)
        # a client that answers pings stays
        with WS(h, "/ws?source=chatty") as ws:
            got = ws.collect(2.0)
            self.assertTrue(all(is_metrics(m) for _, m in got), got)
            self.assertEqual(registry_entry(h, "chatty")["online"], True)

    def test_protocol_error_reasons(self):
        h = self.hub(["--ws-max-message-bytes", "1024"])
        with WS(h, "/ws?source=unmasked") as ws:
            ws.send_bytes(ws_encode_frame(OP_TEXT, "x:1|g", mask=False))
            code, _r, _b = ws.wait_close(3)
            self.assertEqual(code, 1002)
        with WS(h, "/ws?source=too_big") as ws:
            ws.send_text("x:1|g\n" * 300)
            code, _r, _b = ws.wait_close(3)
            self.assertEqual(code, 1009)
        self.assertClosed(closed_event(h, "unmasked"), "unmasked", "protocol_error")
        self.assertClosed(closed_event(h, "too_big"), "too_big", "protocol_error")
        self.assertIsNone(find_series(h, "x", {"source": "too_big"}))

    def test_overloaded_reason(self):
        """A source that subscribed to events and never reads, while lots are published:
        its outbound queue overloads and it is closed as overloaded."""
        h = self.hub(["--ws-queue-messages", "4", "--ws-queue-bytes", "1m",
                      "--ws-overload-timeout", "0.1"])
        ws = WS(h, "/ws?source=never_reads&topics=events", rcvbuf=4096)
        try:
            wait_for(lambda: (registry_entry(h, "never_reads") or {}).get("online"),
                     desc="never_reads online")
            conn = http.client.HTTPConnection(HOST, h.port, timeout=t(10))
            body = json.dumps({"type": "test.bulk", "source": "tester",
                               "payload": {"blob": "x" * 32000}})
            posted = 0
            deadline = time.monotonic() + t(15)
            while time.monotonic() < deadline and posted < 5000:
                conn.request("POST", "/api/v1/events", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 202)
                posted += 1
                if posted % 20 == 0 and 'msg="ws subscriber closed: too slow"' in h.log():
                    break
            conn.close()
            ev = closed_event(h, "never_reads", timeout=6)
            self.assertClosed(ev, "never_reads", "overloaded")
        finally:
            ws.drop()

    def test_server_shutdown_reason(self):
        h = self.hub()
        with WS(h, "/ws?source=until_the_end") as ws:
            sid = self.first_metrics(ws)["session_id"]
            h.send_signal(signal.SIGTERM)
            code, reason, _b = ws.wait_close(5, echo=True)
            self.assertEqual(code, 1001, reason)
            self.assertEqual(h.wait_exit(t(5)), 0, h.log())
        recs = [r for r in h.log_records() if r.get("msg") == "source session ended"]
        self.assertEqual(len(recs), 1, h.log())
        self.assertEqual((recs[0].get("source"), recs[0].get("reason")),
                         ("until_the_end", "server_shutdown"), recs[0])
        started = [r for r in h.log_records() if r.get("msg") == "source session started"]
        self.assertEqual(started[0].get("session"), sid, started)


if __name__ == "__main__":
    main()
