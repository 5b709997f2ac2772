#!/usr/bin/python3
"""Events (Charter v1.0 envelope): POST/GET /api/v1/events, WebSocket publish/ack, seq,
topic patterns, replay with since (no gap, no duplicate), resync when too old, the
slow-subscriber flood, and metricast_events_total."""

import asyncio
import base64
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     HubTestCase, SocketReader, main, prom_get, read_http_response, t,
                     wait_for, ws_encode_frame)

ENVELOPE_KEYS = {"id", "type", "source", "target", "timestamp", "payload", "meta"}
TYPE_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
ID_TAIL_RE = re.compile(r"^([0-9]+)_([a-z0-9]{6})$")


def short(m):
    s = m if isinstance(m, str) else json.dumps(m)
    return s[:400]


# --------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------
class Poster:
    """POST /api/v1/events (and GET) on one keep-alive connection."""

    def __init__(self, hub):
        self.hub = hub
        self.conn = None

    def _req(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.hub.port, timeout=t(10))
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, resp.headers, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(self, event):
        """(status, parsed JSON body or raw bytes)."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        status, headers, data = self._req("POST", "/api/v1/events", body,
                                          {"Content-Type": "application/json"})
        try:
            doc = json.loads(data.decode("utf-8"))
        except ValueError:
            doc = data
        return status, doc

    def publish(self, event):
        status, doc = self.post(event)
        if status != 202:
            raise AssertionError("POST /api/v1/events %s answered %d: %r"
                                 % (short(event), status, doc))
        return doc

    def get(self, **params):
        qs = urllib.parse.urlencode(params)
        status, headers, data = self._req("GET", "/api/v1/events" + ("?" + qs if qs else ""))
        try:
            doc = json.loads(data.decode("utf-8"))
        except ValueError:
            doc = data
        return status, doc

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class WSClient:
    """A raw WebSocket client that can shrink its receive buffer (slow subscribers) and
    never loses a partly received frame. next(timeout) returns a parsed JSON message,
    ("close", code, reason), or None on timeout; pings are answered."""

    def __init__(self, port, path="/ws", rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(t(timeout))
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, HOST, port, key))
        self.sock.sendall(req.encode("ascii"))
        reader = SocketReader(self.sock)
        resp = read_http_response(reader, timeout, head=True)
        if resp.status != 101:
            raise AssertionError("WebSocket handshake answered %r" % (resp.status,))
        self.buf = bytearray(reader.buf)
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

    def next(self, timeout):
        """Unscaled timeout (callers scale)."""
        deadline = time.monotonic() + timeout
        for _ in range(10000000):
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
                        return json.loads(data.decode("utf-8"))
                continue
            if self.eof:
                raise EOFError("connection closed by the server")
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
        """(first message satisfying pred, messages skipped before it); scaled timeout."""
        deadline = time.monotonic() + t(timeout)
        skipped = []
        for _ in range(1000000):
            left = deadline - time.monotonic()
            m = self.next(left) if left > 0 else None
            if m is None:
                raise AssertionError("no %s within %.1fs; got %r"
                                     % (desc, t(timeout), [short(x) for x in skipped][-20:]))
            if isinstance(m, tuple):
                raise AssertionError("connection closed %r while waiting for %s" % (m, desc))
            if pred is None or pred(m):
                return m, skipped
            skipped.append(m)
        raise AssertionError("too many messages")

    def collect(self, seconds):
        """Every message for `seconds` (unscaled)."""
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
            out.append(m)
        return out

    def send(self, obj):
        self.sock.sendall(ws_encode_frame(OP_TEXT, json.dumps(obj)))

    def send_raw(self, text):
        self.sock.sendall(ws_encode_frame(OP_TEXT, text))

    def ping_pong(self, timeout=5.0):
        """Messages that arrived before the answer to an application ping."""
        self.send({"type": "ping"})
        _m, before = self.expect(timeout, lambda m: m.get("type") == "pong", "pong")
        return before

    def subscribe(self, topics, since=None, timeout=5.0):
        msg = {"type": "subscribe", "topics": topics}
        if since is not None:
            msg["since"] = since
        self.send(msg)

    def publish(self, data, timeout=5.0):
        """Publishes and returns the ack (events delivered meanwhile are kept in .held)."""
        self.send({"type": "publish", "data": data})
        m, skipped = self.expect(timeout, lambda x: x.get("type") in ("ack", "error"), "ack")
        self.held = getattr(self, "held", []) + skipped
        if m.get("type") != "ack":
            raise AssertionError("publish %s answered %r" % (short(data), m))
        return m

    def abort(self):
        """A forced disconnect: RST, no close frame."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def is_event(m):
    return isinstance(m, dict) and m.get("type") == "event"


def event_seqs(msgs):
    return [m["seq"] for m in msgs if is_event(m)]


def read_events_until(ws, pred_done, timeout, desc):
    """Reads messages until pred_done(all_messages_so_far) is true; returns them (events,
    resync markers; status messages are dropped)."""
    out = []
    deadline = time.monotonic() + t(timeout)
    for _ in range(1000000):
        if pred_done(out):
            return out
        left = deadline - time.monotonic()
        if left <= 0:
            break
        m = ws.next(min(left, 1.0))
        if m is None:
            continue
        if isinstance(m, tuple):
            raise AssertionError("connection closed %r while reading %s; last: %r"
                                 % (m, desc, [short(x) for x in out[-5:]]))
        if m.get("type") == "status":
            continue
        out.append(m)
    raise AssertionError("%s not complete within %.1fs; got %d messages, last %r"
                         % (desc, t(timeout), len(out), [short(x) for x in out[-5:]]))


# --------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------
class EventCase(HubTestCase):
    def setUp(self):
        super().setUp()
        self._closers = []

    def tearDown(self):
        for c in self._closers:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        super().tearDown()

    def poster(self, h):
        p = Poster(h)
        self._closers.append(p)
        return p

    def ws(self, h, path="/ws", rcvbuf=None):
        c = WSClient(h.port, path=path, rcvbuf=rcvbuf)
        self._closers.append(c)
        return c

    def assertEnvelope(self, env, type_=None, now_range=None):
        """Checks the Charter v1.0 envelope: exact keys, types, id pattern. Returns env."""
        self.assertIsInstance(env, dict, short(env))
        self.assertEqual(set(env), ENVELOPE_KEYS, "envelope keys: %s" % short(env))
        typ = env["type"]
        self.assertIsInstance(typ, str)
        self.assertRegex(typ, TYPE_RE)
        if type_ is not None:
            self.assertEqual(typ, type_, short(env))
        self.assertIsInstance(env["id"], str, short(env))
        self.assertIsInstance(env["source"], str, short(env))
        self.assertTrue(env["target"] is None or isinstance(env["target"], str), short(env))
        self.assertIsInstance(env["timestamp"], (int, float), short(env))
        self.assertNotIsInstance(env["timestamp"], bool)
        self.assertIsInstance(env["payload"], dict, short(env))
        self.assertIsInstance(env["meta"], dict, short(env))
        self.assertEqual(set(env["meta"]), {"correlation_id", "version"}, short(env))
        cid = env["meta"]["correlation_id"]
        self.assertTrue(cid is None or isinstance(cid, str), short(env))
        self.assertEqual(env["meta"]["version"], "1.0", short(env))
        self.assertTrue(env["id"].startswith("evt_"), short(env))
        self.assertRegex(env["id"], r"^evt_[a-z0-9_]+_[0-9]+_[a-z0-9]{6}$")
        if now_range is not None:
            lo, hi = now_range
            self.assertGreaterEqual(env["timestamp"], lo - 1.0, short(env))
            self.assertLessEqual(env["timestamp"], hi + 1.0, short(env))
        return env

    def assertFilledDefaults(self, env, now_range):
        """id/source/target/timestamp/payload/meta as filled in by the hub."""
        module = env["type"].split(".", 1)[0]
        prefix = "evt_%s_" % module
        self.assertTrue(env["id"].startswith(prefix), "id %r lacks the module of %r"
                        % (env["id"], env["type"]))
        m = ID_TAIL_RE.match(env["id"][len(prefix):])
        self.assertIsNotNone(m, "id %r" % env["id"])
        self.assertEqual(env["source"], "%s_service" % module, short(env))
        self.assertIsNone(env["target"], short(env))
        ts = env["timestamp"]
        self.assertIsInstance(ts, float, "timestamp is not a float: %s" % short(env))
        lo, hi = now_range
        self.assertGreaterEqual(ts, lo - 1.0)
        self.assertLessEqual(ts, hi + 1.0)
        self.assertAlmostEqual(ts * 1000, round(ts * 1000), delta=1e-3,
                               msg="timestamp not at ms precision: %r" % ts)
        self.assertLessEqual(abs(int(m.group(1)) - ts * 1000), 1.0,
                             "id ms %s vs timestamp %r" % (m.group(1), ts))
        self.assertEqual(env["payload"], {}, short(env))
        self.assertEqual(env["meta"], {"correlation_id": None, "version": "1.0"}, short(env))

    def assertDelivery(self, m):
        self.assertEqual(set(m), {"type", "seq", "data"}, short(m))
        self.assertEqual(m["type"], "event")
        self.assertIsInstance(m["seq"], int)
        self.assertNotIsInstance(m["seq"], bool)
        self.assertEnvelope(m["data"])

    def assertBadEventHTTP(self, status, doc, what):
        self.assertEqual(status, 400, "%s answered %s %r" % (what, status, doc))
        self.assertIsInstance(doc, dict, "%s: error body not JSON: %r" % (what, doc))
        self.assertEqual(doc.get("error"), "bad_event", "%s: %r" % (what, doc))
        self.assertIsInstance(doc.get("detail"), str, "%s: %r" % (what, doc))

    def assertContinuous(self, msgs, first=None, last=None):
        """Events are consecutive (no gap, no duplicate); a resync marker may skip ahead
        to its oldest_seq, after which the next event is exactly oldest_seq."""
        expect = first
        resyncs = 0
        for i, m in enumerate(msgs):
            if m.get("type") == "resync":
                resyncs += 1
                self.assertIsInstance(m.get("oldest_seq"), int, short(m))
                if expect is not None:
                    self.assertGreaterEqual(m["oldest_seq"], expect,
                                            "resync went backwards: %r after seq %d"
                                            % (m, expect - 1))
                expect = m["oldest_seq"]
                continue
            self.assertTrue(is_event(m), "unexpected message %s" % short(m))
            if expect is not None and m["seq"] != expect:
                ctx = [x.get("seq", x.get("type")) for x in msgs[max(0, i - 5):i + 5]]
                self.fail("seq %d where %d was due (%s) at message %d; around: %r"
                          % (m["seq"], expect, "duplicate" if m["seq"] < expect else "gap",
                             i, ctx))
            expect = m["seq"] + 1
        if last is not None:
            self.assertEqual(expect, last + 1, "stream ended at %r, not %d" % (expect, last))
        return resyncs


def env_of(i, type_="tasks.created"):
    return {"type": type_, "payload": {"i": i}}


# --------------------------------------------------------------------------------------
# envelope
# --------------------------------------------------------------------------------------
class TestEnvelope(EventCase):
    def test_post_filled_defaults_and_delivery(self):
        h = self.hub()
        sub = self.ws(h)
        sub.subscribe(["events"])
        self.assertEqual(sub.ping_pong(), [])
        p = self.poster(h)
        t0 = time.time()
        status, doc = p.post({"type": "tasks.created"})
        t1 = time.time()
        self.assertEqual(status, 202, doc)
        self.assertEqual(set(doc), {"id", "seq"}, doc)
        self.assertEqual(doc["seq"], 1, doc)
        self.assertRegex(doc["id"], r"^evt_tasks_[0-9]+_[a-z0-9]{6}$")
        # the subscriber sees the completed envelope
        m, skipped = sub.expect(5, is_event, "the event")
        self.assertEqual(skipped, [])
        self.assertDelivery(m)
        self.assertEqual(m["seq"], 1)
        env = m["data"]
        self.assertEqual(env["id"], doc["id"])
        self.assertEqual(env["type"], "tasks.created")
        self.assertFilledDefaults(env, (t0, t1))
        # GET answers the same envelope
        status, page = p.get(since=0)
        self.assertEqual(status, 200, page)
        self.assertEqual(page["events"], [m], short(page))
        # another module: id and source follow the type's module
        for typ in ("metrics.aggregation_completed", "alert.cpu_high", "a_1.b_2"):
            with self.subTest(type=typ):
                t0 = time.time()
                doc = p.publish({"type": typ})
                t1 = time.time()
                m, _ = sub.expect(5, is_event, "event %s" % typ)
                self.assertEqual(m["seq"], doc["seq"])
                self.assertEqual(m["data"]["id"], doc["id"])
                self.assertEnvelope(m["data"], typ)
                self.assertFilledDefaults(m["data"], (t0, t1))

    def test_supplied_fields_kept(self):
        h = self.hub()
        sub = self.ws(h)
        sub.subscribe(["events"])
        sub.ping_pong()
        full = {"id": "evt_tasks_1700000000123_q1w2e3", "type": "tasks.created",
                "source": "planner", "target": "ui_service", "timestamp": 1700000000.123,
                "payload": {"task_id": "t-1", "n": 3, "f": 1.5, "nested": {"x": [True, None]},
                            "text": "h\u00e9llo \"q\"\n"},
                "meta": {"correlation_id": "corr-9", "version": "1.0"}}
        partial = {"type": "alert.disk_full", "payload": {"disk": "/"},
                   "meta": {"correlation_id": "c-2"}}
        nulls = {"id": None, "type": "users.login", "source": None, "target": None,
                 "timestamp": None, "payload": None, "meta": None}
        p = self.poster(h)
        pub = self.ws(h)
        for how in ("post", "ws"):
            for ev in (full, partial, nulls):
                with self.subTest(how=how, event=ev["type"]):
                    t0 = time.time()
                    ack = p.publish(ev) if how == "post" else pub.publish(ev)
                    t1 = time.time()
                    m, _ = sub.expect(5, is_event, "the event")
                    self.assertDelivery(m)
                    self.assertEqual(m["seq"], ack["seq"])
                    env = m["data"]
                    self.assertEqual(env["id"], ack["id"])
                    if ev is full:
                        self.assertEqual(env, full)
                        self.assertIsInstance(env["timestamp"], float)
                    elif ev is partial:
                        self.assertEqual(env["payload"], {"disk": "/"})
                        self.assertEqual(env["meta"], {"correlation_id": "c-2", "version": "1.0"})
                        self.assertEqual(env["source"], "alert_service")
                        self.assertIsNone(env["target"])
                        self.assertRegex(env["id"], r"^evt_alert_[0-9]+_[a-z0-9]{6}$")
                    else:
                        self.assertFilledDefaults(env, (t0, t1))

    def test_refusals_http_and_ws(self):
        h = self.hub()
        ok = {"type": "tasks.created"}
        bad_envelopes = [
            ("no type", {}),
            ("type null", {"type": None}),
            ("type number", {"type": 5}),
            ("type without dot", {"type": "tasks"}),
            ("type upper case", {"type": "Tasks.created"}),
            ("type two dots", {"type": "a.b.c"}),
            ("type dash", {"type": "tasks.cre-ated"}),
            ("type glob", {"type": "tasks.*"}),
            ("type empty half", {"type": "tasks."}),
            ("type space", {"type": "tasks.created "}),
            ("unknown top-level key", dict(ok, extra=1)),
            ("unknown top-level key data", dict(ok, data={})),
            ("unknown meta key", dict(ok, meta={"version": "1.0", "trace": "x"})),
            ("payload list", dict(ok, payload=[1, 2])),
            ("payload string", dict(ok, payload="x")),
            ("payload number", dict(ok, payload=5)),
            ("payload bool", dict(ok, payload=True)),
            ("meta list", dict(ok, meta=[])),
            ("version 2.0", dict(ok, meta={"version": "2.0"})),
            ("version number", dict(ok, meta={"version": 1.0})),
            ("version 1", dict(ok, meta={"correlation_id": None, "version": "1"})),
            ("correlation_id number", dict(ok, meta={"correlation_id": 5})),
            ("id bad prefix", dict(ok, id="tasks_1703001234567_abc123")),
            ("id upper suffix", dict(ok, id="evt_tasks_1703001234567_ABC123")),
            ("id short suffix", dict(ok, id="evt_tasks_1703001234567_abc12")),
            ("id no ms", dict(ok, id="evt_tasks_now_abc123")),
            ("id number", dict(ok, id=12345)),
            ("id empty", dict(ok, id="")),
        ]
        p = self.poster(h)
        # POST: 400 bad_event, JSON error body
        for what, ev in bad_envelopes:
            with self.subTest(via="POST", case=what):
                status, doc = p.post(ev)
                self.assertBadEventHTTP(status, doc, what)
        for what, raw in [("not JSON", b"{not json"), ("empty body", b""),
                          ("array", b"[]"), ("string", b"\"tasks.created\""),
                          ("trailing garbage", b'{"type":"tasks.created"} x'),
                          ("truncated", b'{"type":"tasks.created"')]:
            with self.subTest(via="POST", case=what):
                status, doc = p.post(raw)
                self.assertBadEventHTTP(status, doc, what)
        status, hdrs, body = h.request("POST", "/api/v1/events", body=b"{oops",
                                       headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIn("application/json", hdrs.get("Content-Type", ""))

        # WS publish: error bad_event, the connection stays (under ten errors each)
        ws = None
        for i, (what, ev) in enumerate(bad_envelopes):
            if i % 7 == 0:
                if ws is not None:
                    self.assertEqual(ws.ping_pong(), [])
                    ws.close()
                ws = self.ws(h)
            with self.subTest(via="WS", case=what):
                ws.send({"type": "publish", "data": ev})
                m, skipped = ws.expect(5)
                self.assertEqual(skipped, [])
                self.assertEqual(m.get("type"), "error", short(m))
                self.assertEqual(m.get("error"), "bad_event", short(m))
                self.assertIsInstance(m.get("detail"), str, short(m))
        ws.close()
        ws = self.ws(h)
        for what, data in [("data list", [1]), ("data string", "x"), ("data null", None),
                           ("data number", 3)]:
            with self.subTest(via="WS", case=what):
                ws.send({"type": "publish", "data": data})
                m, _ = ws.expect(5)
                self.assertEqual(m.get("type"), "error", short(m))
                self.assertEqual(m.get("error"), "bad_message", short(m))
        ws.send({"type": "publish"})
        m, _ = ws.expect(5)
        self.assertEqual((m.get("type"), m.get("error")), ("error", "bad_message"), short(m))
        self.assertEqual(ws.ping_pong(), [])
        # the connection still publishes fine afterwards
        ack = ws.publish(ok)
        self.assertEqual(set(ack), {"type", "id", "seq"}, ack)
        self.assertEqual(ack["seq"], 1, "refused events took a seq: %r" % ack)
        status, page = p.get(since=0)
        self.assertEqual(page["latest_seq"], 1, short(page))
        self.assertEqual(page["count"], 1, short(page))
        self.assertEqual(prom_get(h.prom(), "metricast_events_total"), 1)

    def test_websockets_library_publish(self):
        """A real client library publishes and subscribes on one connection."""
        h = self.hub()

        async def run():
            async with websockets.connect(h.ws_url, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topics": ["tasks.*"]}))
                await ws.send(json.dumps({"type": "publish",
                                          "data": {"type": "tasks.created",
                                                   "payload": {"k": "v"}}}))
                await ws.send(json.dumps({"type": "publish",
                                          "data": {"type": "other.created"}}))
                got = []
                while sum(1 for m in got if m["type"] == "ack") < 2 or \
                        not any(m["type"] == "event" for m in got):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), t(5))))
                return got

        got = asyncio.run(run())
        acks = [m for m in got if m["type"] == "ack"]
        events = [m for m in got if m["type"] == "event"]
        self.assertEqual([a["seq"] for a in acks], [1, 2], got)
        self.assertEqual(len(events), 1, got)
        self.assertEqual(events[0]["seq"], 1)
        self.assertEqual(events[0]["data"]["id"], acks[0]["id"])
        self.assertEqual(events[0]["data"]["payload"], {"k": "v"})


# --------------------------------------------------------------------------------------
# seq and ack
# --------------------------------------------------------------------------------------
class TestSeq(EventCase):
    def test_seq_across_post_and_ws_publishers(self):
        h = self.hub()
        N = 60
        results = {"post": [], "ws1": [], "ws2": []}
        errors = []

        def post_worker():
            try:
                p = Poster(h)
                for i in range(N):
                    results["post"].append(p.publish(env_of(i, "post.n")))
                p.close()
            except Exception as e:  # noqa: BLE001
                errors.append("post: %r" % e)

        def ws_worker(name):
            try:
                ws = WSClient(h.port)
                for i in range(N):
                    results[name].append(ws.publish(env_of(i, "%s.n" % name)))
                ws.close()
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %r" % (name, e))

        threads = [threading.Thread(target=post_worker),
                   threading.Thread(target=ws_worker, args=("ws1",)),
                   threading.Thread(target=ws_worker, args=("ws2",))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(t(60))
        self.assertEqual(errors, [])
        all_seqs = []
        for name, acks in results.items():
            self.assertEqual(len(acks), N, name)
            seqs = [a["seq"] for a in acks]
            for a, b in zip(seqs, seqs[1:]):
                self.assertLess(a, b, "%s: seq not increasing: %r" % (name, seqs))
            for a in acks:
                self.assertIsInstance(a["seq"], int)
                self.assertRegex(a["id"], r"^evt_[a-z0-9_]+_[0-9]+_[a-z0-9]{6}$")
            all_seqs += seqs
        self.assertEqual(sorted(all_seqs), list(range(1, 3 * N + 1)),
                         "seqs are not exactly 1..%d" % (3 * N))
        ids = [a["id"] for acks in results.values() for a in acks]
        self.assertEqual(len(set(ids)), len(ids), "duplicate ids")
        # GET lists them in seq order, with the acked ids and the publishers' order
        p = self.poster(h)
        status, page = p.get(since=0, limit=1000)
        self.assertEqual(status, 200)
        self.assertEqual([e["seq"] for e in page["events"]], list(range(1, 3 * N + 1)))
        by_seq = {a["seq"]: a["id"] for acks in results.values() for a in acks}
        for e in page["events"]:
            self.assertEqual(e["data"]["id"], by_seq[e["seq"]])
        for name in results:
            payload_order = [e["data"]["payload"]["i"] for e in page["events"]
                             if e["data"]["type"] == "%s.n" % name]
            self.assertEqual(payload_order, list(range(N)), name)
        # and a later publish continues from there
        self.assertEqual(p.publish({"type": "x.y"})["seq"], 3 * N + 1)


# --------------------------------------------------------------------------------------
# topics and patterns
# --------------------------------------------------------------------------------------
class TestPatterns(EventCase):
    TYPES = ["tasks.created", "tasks.deleted", "alert.cpu_high", "alerts.misc",
             "metrics.aggregation_completed", "metrics.aggregation_failed", "metrics.other",
             "users.created", "xtasks.created", "tasks.created_later", "alert.disk_full"]
    SUBS = {
        ("events",): TYPES,
        ("tasks.*",): ["tasks.created", "tasks.deleted", "tasks.created_later"],
        ("tasks.created",): ["tasks.created"],
        ("alerts",): ["alert.cpu_high", "alert.disk_full"],
        ("metrics.aggregation_*",): ["metrics.aggregation_completed",
                                     "metrics.aggregation_failed"],
        ("*.created",): ["tasks.created", "users.created", "xtasks.created"],
        ("tasks.created", "alerts"): ["tasks.created", "alert.cpu_high", "alert.disk_full"],
        ("tasks.*", "events"): TYPES,  # overlapping topics: still delivered once
        ("metrics",): [],
        ("nothing.here",): [],
    }

    def test_pattern_filtering(self):
        h = self.hub()
        subs = {}
        for topics in self.SUBS:
            c = self.ws(h)
            c.subscribe(list(topics))
            subs[topics] = c
        for topics, c in subs.items():
            before = [m for m in c.ping_pong() if m.get("type") != "metrics:update"]
            self.assertEqual(before, [], "subscribe %r answered %r" % (topics, before))
        p = self.poster(h)
        seq_of = {}
        for typ in self.TYPES:
            seq_of[p.publish({"type": typ, "payload": {"t": typ}})["seq"]] = typ
        received = {}
        for topics, want in self.SUBS.items():
            received[topics] = read_events_until(
                subs[topics], lambda ms: len([m for m in ms if is_event(m)]) >= len(want), 5,
                "events for %r" % (topics,)) if want else []
        time.sleep(t(0.5))  # anything extra is in the socket buffers by now
        for topics, want in self.SUBS.items():
            with self.subTest(topics=topics):
                c = subs[topics]
                got = received[topics]
                got += [m for m in c.collect(0.05) if m.get("type") != "metrics:update"]
                for m in got:
                    self.assertTrue(is_event(m), short(m))
                    self.assertDelivery(m)
                    self.assertEqual(seq_of[m["seq"]], m["data"]["type"])
                types = [m["data"]["type"] for m in got]
                self.assertEqual(types, [x for x in self.TYPES if x in want],
                                 "topics %r received %r" % (topics, types))
                seqs = event_seqs(got)
                self.assertEqual(seqs, sorted(set(seqs)), "order/duplicates: %r" % seqs)

    def test_unsubscribe_stops_events(self):
        h = self.hub()
        c = self.ws(h)
        c.subscribe(["tasks.*", "alerts"])
        c.ping_pong()
        p = self.poster(h)
        p.publish({"type": "tasks.a"})
        p.publish({"type": "alert.b"})
        got = read_events_until(c, lambda ms: len(ms) >= 2, 5, "two events")
        self.assertEqual([m["data"]["type"] for m in got], ["tasks.a", "alert.b"])
        c.send({"type": "unsubscribe", "topics": ["tasks.*"]})
        self.assertEqual(c.ping_pong(), [])
        p.publish({"type": "tasks.c"})
        p.publish({"type": "alert.d"})
        got = read_events_until(c, lambda ms: len(ms) >= 1, 5, "the alert")
        got += c.collect(t(0.5))
        self.assertEqual([m["data"]["type"] for m in got if is_event(m)], ["alert.d"],
                         [short(m) for m in got])


# --------------------------------------------------------------------------------------
# replay: since, forced disconnect, resync
# --------------------------------------------------------------------------------------
class TestReplay(EventCase):
    def test_since_replays_then_live(self):
        h = self.hub()
        p = self.poster(h)
        for i in range(1, 6):
            p.publish(env_of(i, "tasks.n" if i % 2 else "other.n"))
        c = self.ws(h)
        c.subscribe(["events"], since=2)
        got = read_events_until(c, lambda ms: len(ms) >= 3, 5, "the replay")
        self.assertEqual(event_seqs(got), [3, 4, 5])
        for m in got:
            self.assertDelivery(m)
        for i in range(6, 9):
            p.publish(env_of(i, "other.live"))
        got += read_events_until(c, lambda ms: len(ms) >= 3, 5, "live events")
        got += c.collect(t(0.4))
        self.assertEqual(event_seqs(got), [3, 4, 5, 6, 7, 8])
        self.assertEqual([m["data"]["payload"]["i"] for m in got], [3, 4, 5, 6, 7, 8])
        # a pattern subscriber replays only matching events
        c2 = self.ws(h)
        c2.subscribe(["tasks.*"], since=0)
        got = read_events_until(c2, lambda ms: len(ms) >= 3, 5, "the pattern replay")
        got += c2.collect(t(0.4))
        self.assertEqual(event_seqs(got), [1, 3, 5])
        # since = latest: nothing old, live only
        c3 = self.ws(h)
        c3.subscribe(["events"], since=8)
        self.assertEqual([m for m in c3.ping_pong() if is_event(m)], [])
        p.publish(env_of(9))
        got = read_events_until(c3, lambda ms: len(ms) >= 1, 5, "live event 9")
        got += c3.collect(t(0.4))
        self.assertEqual(event_seqs(got), [9])

    def test_bad_since_rejected(self):
        h = self.hub()
        c = self.ws(h)
        for since in (-1, "3", 1.5, True, [1]):
            with self.subTest(since=since):
                c.send({"type": "subscribe", "topics": ["events"], "since": since})
                m, _ = c.expect(5)
                self.assertEqual(m.get("type"), "error", short(m))
        self.assertEqual(c.ping_pong(), [])

    def test_forced_disconnect_resume_no_gap_no_duplicate(self):
        h = self.hub()
        TOTAL = 400
        stop_evt = threading.Event()
        published = []
        errors = []
        halfway = threading.Event()

        def publisher():
            try:
                p = Poster(h)
                for i in range(TOTAL):
                    published.append(p.publish(env_of(i))["seq"])
                    if i == TOTAL // 3:
                        halfway.set()
                    time.sleep(0.004)
                    if stop_evt.is_set():
                        break
                p.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            finally:
                halfway.set()

        c = self.ws(h)
        c.subscribe(["events"], since=0)
        self.assertEqual(c.ping_pong(), [])
        th = threading.Thread(target=publisher)
        th.start()
        try:
            self.assertTrue(halfway.wait(t(30)))
            first = read_events_until(c, lambda ms: len(ms) >= 20, 10, "the first events")
            # forced disconnect: RST, no close frame; whatever was in flight is lost
            c.abort()
            last_seen = first[-1]["seq"]
            time.sleep(0.5)  # publishing goes on meanwhile
            c2 = self.ws(h)
            c2.subscribe(["events"], since=last_seen)
            th.join(t(60))
            self.assertFalse(th.is_alive())
            self.assertEqual(errors, [])
            final = published[-1]
            second = read_events_until(
                c2, lambda ms: ms and is_event(ms[-1]) and ms[-1]["seq"] >= final, 15,
                "events up to %d" % final)
            second += c2.collect(t(0.5))
        finally:
            stop_evt.set()
            th.join(t(60))
        self.assertEqual(published, list(range(1, len(published) + 1)))
        self.assertEqual(self.assertContinuous(first, first=1), 0)
        resyncs = self.assertContinuous(second, first=last_seen + 1, last=published[-1])
        self.assertEqual(resyncs, 0, "resync although nothing left the window")
        seqs = event_seqs(first) + event_seqs(second)
        self.assertEqual(seqs, list(range(1, published[-1] + 1)))

    def test_resync_when_too_old(self):
        h = self.hub(["--events-retain", "5"])
        p = self.poster(h)
        for i in range(1, 13):
            p.publish(env_of(i))
        # since 2: 3..7 left the window
        cases = [(2, True, [8, 9, 10, 11, 12]),
                 (0, True, [8, 9, 10, 11, 12]),
                 (6, True, [8, 9, 10, 11, 12]),
                 (7, False, [8, 9, 10, 11, 12]),
                 (10, False, [11, 12]),
                 (12, False, [])]
        conns = []
        for since, resync, want in cases:
            with self.subTest(since=since):
                c = self.ws(h)
                conns.append(c)
                c.subscribe(["events"], since=since)
                n = len(want) + (1 if resync else 0)
                got = read_events_until(c, lambda ms: len(ms) >= n, 5, "replay since %d" % since)
                got += [m for m in c.ping_pong() if m.get("type") != "status"]
                if resync:
                    self.assertEqual(got[0], {"type": "resync", "oldest_seq": 8}, short(got[0]))
                    got = got[1:]
                for m in got:
                    self.assertTrue(is_event(m), "unexpected %s" % short(m))
                    self.assertDelivery(m)
                self.assertEqual(event_seqs(got), want)
        # then live events follow, once, on every connection
        p.publish(env_of(13))
        live = [read_events_until(c, lambda ms: len(ms) >= 1, 5, "live 13") for c in conns]
        time.sleep(t(0.3))
        for c, got, (since, _r, _w) in zip(conns, live, cases):
            with self.subTest(live_after_since=since):
                got += c.collect(0.05)
                self.assertEqual(event_seqs(got), [13], [short(m) for m in got])
                self.assertNotIn("resync", [m.get("type") for m in got])


# --------------------------------------------------------------------------------------
# GET /api/v1/events
# --------------------------------------------------------------------------------------
class TestPolling(EventCase):
    PAGE_KEYS = {"events", "count", "next_since", "oldest_seq", "latest_seq", "resync"}

    def assertPage(self, page):
        self.assertIsInstance(page, dict, page)
        self.assertEqual(set(page), self.PAGE_KEYS, short(page))
        self.assertEqual(page["count"], len(page["events"]), short(page))
        self.assertIsInstance(page["resync"], bool)
        for e in page["events"]:
            self.assertDelivery(e)
        seqs = [e["seq"] for e in page["events"]]
        self.assertEqual(seqs, sorted(set(seqs)), "not oldest first: %r" % seqs)

    def test_paging_and_type_filter(self):
        h = self.hub()
        p = self.poster(h)
        status, page = p.get()
        self.assertEqual(status, 200, page)
        self.assertPage(page)
        self.assertEqual((page["events"], page["count"], page["latest_seq"], page["resync"]),
                         ([], 0, 0, False), short(page))
        types = ["tasks.created", "alert.x", "tasks.deleted", "users.created", "metrics.tick"]
        N = 37
        kinds = {}
        for i in range(1, N + 1):
            typ = types[i % len(types)]
            self.assertEqual(p.publish(env_of(i, typ))["seq"], i)
            kinds[i] = typ
        # paging everything, 10 at a time
        since, seen, pages = 0, [], 0
        for _ in range(20):
            status, page = p.get(since=since, limit=10)
            self.assertEqual(status, 200, page)
            self.assertPage(page)
            self.assertEqual((page["oldest_seq"], page["latest_seq"], page["resync"]),
                             (1, N, False), short(page))
            seqs = [e["seq"] for e in page["events"]]
            if not seqs:
                self.assertEqual(page["next_since"], since)
                break
            pages += 1
            self.assertEqual(seqs, list(range(since + 1, min(since + 10, N) + 1)))
            self.assertEqual(page["next_since"], seqs[-1])
            seen += seqs
            since = page["next_since"]
        self.assertEqual(seen, list(range(1, N + 1)))
        self.assertEqual(pages, 4)
        # default limit covers all 37; since in the middle
        status, page = p.get(since=30)
        self.assertEqual([e["seq"] for e in page["events"]], list(range(31, N + 1)))
        self.assertEqual(page["next_since"], N)
        # type filter, paged: only matches, next_since = last examined seq
        for glob in ("tasks.*", "tasks.created", "*.created", "alert.*", "nothing.*"):
            with self.subTest(type=glob):
                want = [i for i in range(1, N + 1)
                        if re.fullmatch(glob.replace(".", r"\.").replace("*", ".*"), kinds[i])]
                since, seen = 0, []
                for _ in range(60):
                    status, page = p.get(since=since, type=glob, limit=3)
                    self.assertEqual(status, 200, page)
                    self.assertPage(page)
                    for e in page["events"]:
                        self.assertTrue(re.fullmatch(glob.replace(".", r"\.").replace("*", ".*"),
                                                     e["data"]["type"]), short(e))
                    seen += [e["seq"] for e in page["events"]]
                    self.assertGreaterEqual(page["next_since"], since)
                    if page["events"]:
                        self.assertGreaterEqual(page["next_since"], page["events"][-1]["seq"])
                    if page["next_since"] == since:
                        break
                    since = page["next_since"]
                self.assertEqual(seen, want)
                self.assertEqual(since, N, "paging did not reach the end")

    def test_bad_parameters(self):
        h = self.hub()
        p = self.poster(h)
        p.publish({"type": "a.b"})
        for qs in ("since=-1", "since=abc", "since=1.5", "since=", "limit=0", "limit=-3",
                   "limit=abc", "limit=2.5", "since=1e400", "limit=nan"):
            with self.subTest(query=qs):
                status, hdrs, body = h.request("GET", "/api/v1/events?" + qs)
                self.assertEqual(status, 400, "%s answered %d %r" % (qs, status, body[:200]))
                self.assertJsonError(body, hdrs.get("Content-Type"), status)

    def test_filter_and_since_never_ignored(self):
        """A type filter the server cannot use, or a since beyond every seq, must not
        answer events from the start: 400, or an empty page."""
        h = self.hub()
        p = self.poster(h)
        p.publish({"type": "a.b"})
        p.publish({"type": "tasks.created"})
        for qs in ("type=" + "a" * 300 + ".*", "type=%zz", "type=tasks.%ZZ",
                   "since=1000", "since=18446744073709551615",
                   "since=99999999999999999999"):
            with self.subTest(query=qs[:60]):
                status, hdrs, body = h.request("GET", "/api/v1/events?" + qs)
                if status == 400:
                    self.assertJsonError(body, hdrs.get("Content-Type"), status)
                    continue
                self.assertEqual(status, 200, body[:200])
                page = json.loads(body)
                self.assertEqual(page["events"], [], "%s answered events: %s"
                                 % (qs[:60], short(page)))

    def test_limit_default_and_max(self):
        h = self.hub()
        ws = self.ws(h)
        total = 1100
        for start in range(0, total, 100):  # pipelined publishes, then their acks
            for i in range(start, start + 100):
                ws.send({"type": "publish", "data": env_of(i)})
            acks = read_events_until(ws, lambda ms: len(ms) >= 100, 20, "100 acks")
            self.assertTrue(all(m.get("type") == "ack" for m in acks), acks[:3])
        p = self.poster(h)
        status, page = p.get()
        self.assertEqual(status, 200)
        self.assertEqual([e["seq"] for e in page["events"]], list(range(1, 101)))
        self.assertEqual(page["next_since"], 100)
        status, page = p.get(since=0, limit=5000)
        if status == 200:
            self.assertEqual(page["count"], 1000, "limit above the maximum of 1000")
            self.assertEqual(page["next_since"], 1000)
        else:
            self.assertEqual(status, 400, page)
        status, page = p.get(since=0, limit=1000)
        self.assertEqual((status, page["count"], page["next_since"]), (200, 1000, 1000))

    def test_resync_flag(self):
        h = self.hub(["--events-retain", "5"])
        p = self.poster(h)
        for i in range(1, 13):
            p.publish(env_of(i))
        for since, resync, want in [(0, True, [8, 9, 10, 11, 12]), (3, True, [8, 9, 10, 11, 12]),
                                    (6, True, [8, 9, 10, 11, 12]), (7, False, [8, 9, 10, 11, 12]),
                                    (9, False, [10, 11, 12]), (12, False, [])]:
            with self.subTest(since=since):
                status, page = p.get(since=since)
                self.assertEqual(status, 200, page)
                self.assertPage(page)
                self.assertEqual(page["resync"], resync, short(page))
                self.assertEqual((page["oldest_seq"], page["latest_seq"]), (8, 12))
                self.assertEqual([e["seq"] for e in page["events"]], want)
                self.assertEqual(page["next_since"], want[-1] if want else since)
        # a paged poll that falls behind the window is told so
        status, page = p.get(since=0, limit=2)
        self.assertTrue(page["resync"])
        self.assertEqual([e["seq"] for e in page["events"]], [8, 9])
        self.assertEqual(page["next_since"], 9)
        status, page = p.get(since=page["next_since"], limit=2)
        self.assertFalse(page["resync"])
        self.assertEqual([e["seq"] for e in page["events"]], [10, 11])


# --------------------------------------------------------------------------------------
# slow subscribers: never a silent gap
# --------------------------------------------------------------------------------------
class TestSlowSubscriber(EventCase):
    # a long overload timeout: the test decides when the subscriber reads again, not the
    # slow-consumer kick (a slow sanitizer run must not turn into a 1008 close)
    QUEUE = ["--ws-queue-messages", "8", "--ws-queue-bytes", "16k", "--ws-overload-timeout", "120"]
    # ~12 MB in all: more than the kernel's socket buffers (tcp_wmem max 4 MB) absorb,
    # so the subscriber's 16 KiB queue really overflows
    PAD = "x" * 12000

    def flood(self, h, count):
        """Publishes `count` events over WebSocket, pipelined; returns the last seq."""
        pub = WSClient(h.port)
        self._closers.append(pub)
        last = 0
        for start in range(0, count, 100):
            n = min(100, count - start)
            for i in range(start, start + n):
                pub.send({"type": "publish",
                          "data": {"type": "flood.n", "payload": {"i": i, "pad": self.PAD}}})
            acks = read_events_until(pub, lambda ms: len(ms) >= n, 30, "%d acks" % n)
            for a in acks:
                self.assertEqual(a.get("type"), "ack", short(a))
            last = acks[-1]["seq"]
        return last

    def run_flood(self, extra_args, count):
        h = self.hub(self.QUEUE + extra_args)
        slow = self.ws(h, rcvbuf=4096)
        slow.subscribe(["events"])
        self.assertEqual([m for m in slow.ping_pong() if m.get("type") != "status"], [])
        # the subscriber stops reading while many events are published
        last = self.flood(h, count)
        time.sleep(0.3)
        # it resumes: it must end with the last event, without a silent gap
        got = read_events_until(
            slow, lambda ms: ms and is_event(ms[-1]) and ms[-1]["seq"] >= last, 30,
            "the flood up to seq %d" % last)
        got += [m for m in slow.collect(t(0.5)) if m.get("type") != "status"]
        self.assertTrue(got and is_event(got[0]), short(got[0]) if got else got)
        resyncs = self.assertContinuous(got, first=1, last=last)
        s = h.prom()
        self.assertEqual(prom_get(s, "metricast_events_total"), last)
        return h, got, resyncs, last

    def test_flood_replayed_in_order(self):
        _h, got, resyncs, last = self.run_flood([], 1000)
        self.assertEqual(resyncs, 0, "resync although every event is still retained")
        self.assertEqual(event_seqs(got), list(range(1, last + 1)))

    def test_flood_beyond_window_resyncs(self):
        _h, got, resyncs, last = self.run_flood(["--events-retain", "50"], 1000)
        self.assertGreaterEqual(resyncs, 1, "the subscriber missed events that left the "
                                "window, yet got no resync")
        for m in got:
            if m.get("type") == "resync":
                self.assertEqual(set(m), {"type", "oldest_seq"}, short(m))


class TestWideFanout(EventCase):
    def test_subscribers_leaving_during_sliced_flushes(self):
        # one worker, 300 subscribers: a flush to all of them outlasts one slice, so some
        # stay queued across loop passes while half the subscribers reset their
        # connections; the hub must neither touch a closed one (ASan watches) nor lose
        # or reorder an event for those that stay
        h = self.hub(["--threads", "1"])
        subs = []
        for _ in range(300):
            c = WSClient(h.port)
            self._closers.append(c)
            c.subscribe(["events"])
            subs.append(c)
        for c in subs:  # each subscription in force before the first publish
            c.ping_pong()
        pub = WSClient(h.port)
        self._closers.append(pub)
        N = 200
        last = 0
        for start in range(0, N, 50):
            for i in range(start, start + 50):
                pub.send({"type": "publish", "data": {"type": "wide.n", "payload": {"i": i}}})
            if start == 100:  # half of them go away mid-stream, without a close frame
                for c in subs[::2]:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                    c.sock.close()
            acks = read_events_until(pub, lambda ms: len(ms) >= 50, 30, "50 acks")
            last = acks[-1]["seq"]
        for c in subs[1::2][::15]:  # every 30th subscriber reads its stream to the end
            got = read_events_until(c, lambda ms: ms and is_event(ms[-1]) and
                                    ms[-1]["seq"] >= last, 30, "events up to %d" % last)
            self.assertEqual(event_seqs(got), list(range(last - N + 1, last + 1)))
        s = h.prom()
        self.assertEqual(prom_get(s, "metricast_events_total"), last)
        self.assertEqual(prom_get(s, "metricast_ws_subscribers"), 150)


# --------------------------------------------------------------------------------------
# counters
# --------------------------------------------------------------------------------------
class TestCounters(EventCase):
    def test_events_total(self):
        h = self.hub()
        self.assertEqual(prom_get(h.prom(), "metricast_events_total"), 0)
        p = self.poster(h)
        for i in range(7):
            p.publish(env_of(i))
        ws = self.ws(h)
        for i in range(5):
            ws.publish(env_of(i, "ws.n"))
        # refusals do not count
        self.assertEqual(p.post({"type": "BAD"})[0], 400)
        ws.send({"type": "publish", "data": {"type": "bad"}})
        m, _ = ws.expect(5)
        self.assertEqual(m.get("error"), "bad_event", short(m))
        s = h.prom()
        self.assertEqual(prom_get(s, "metricast_events_total"), 12)
        status, _hd, body = h.request("GET", "/api/v1/summary")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["events_total"], 12)


if __name__ == "__main__":
    main()
