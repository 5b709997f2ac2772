#!/usr/bin/python3
"""Scale-out through NATS (docs/SCALING.md): a real nats-server on a free loopback port and
two or three hubs. An event published on A reaches subscribers of B and C once each, in
order; a sample ingested on A shows on B (/api/v1/metrics and metrics:update); a client
resumes on B from the cursor it had on A without a gap or a duplicate; sources are listed
cluster-wide and go offline when their hub disappears; killing nats-server leaves every hub
serving (health degraded) and bridging resumes when it is back on the same port; garbage
on the subjects is counted, never fatal."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, RawWS, free_port, main, prom_get, t,  # noqa: E402
                     wait_for)

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    """nats-server on 127.0.0.1:<port>, started and stopped by the test."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="mc-nats-")
        self.proc = None
        self.start()

    @property
    def url(self):
        return "nats://%s:%d" % (HOST, self.port)

    def start(self):
        self.log = open(os.path.join(self.tmp, "nats.log"), "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-a", HOST, "-p", str(self.port)],
                                     stdout=self.log, stderr=self.log)
        wait_for(self._accepts, timeout=10, desc="nats-server accepting on %d" % self.port)

    def _accepts(self):
        if self.proc.poll() is not None:
            raise AssertionError("nats-server exited: %s" % self.proc.returncode)
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                return True
        except OSError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()

    def close(self):
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def publish_raw(self, subject, payload):
        """PUB through a plain client of the NATS protocol (as any program could)."""
        with socket.create_connection((HOST, self.port), timeout=t(5)) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"INFO ")
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
            s.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(payload), payload))
            line = f.readline()
            while line.startswith(b"INFO"):
                line = f.readline()
            assert line.startswith(b"PONG"), line


class ClusterTestCase(HubTestCase):
    def setUp(self):
        super().setUp()
        self.nats = NatsServer()

    def tearDown(self):
        super().tearDown()
        self.nats.close()

    def cluster(self, ids, extra=()):
        hubs = [self.hub(["--nats", self.nats.url, "--hub-id", i, "--nats-hub-timeout", "2"]
                         + list(extra)) for i in ids]
        for h in hubs:  # every hub linked and aware of every other one
            wait_for(lambda h=h: self.nats_gauge(h, "metricast_nats_connected") == 1 and
                     self.nats_gauge(h, "metricast_nats_peers") == len(ids) - 1,
                     timeout=15, desc="hub %d sees its peers" % h.port)
        return hubs

    @staticmethod
    def nats_gauge(h, name, **labels):
        p = h.prom()
        for (n, lb), v in p.items():
            if n == name and all(dict(lb).get(k) == w for k, w in labels.items()):
                return v
        return None

    @staticmethod
    def publish(h, typ, payload):
        status, _h, body = h.request("POST", "/api/v1/events",
                                     json.dumps({"type": typ, "payload": payload}),
                                     {"Content-Type": "application/json"})
        assert status == 202, (status, body)
        return json.loads(body)

    @staticmethod
    def events_sub(h, since=None):
        ws = RawWS(h.port, "/ws")
        msg = {"type": "subscribe", "topics": ["events"]}
        if since is not None:
            msg["since"] = since
        ws.send_json(msg)
        return ws

    @staticmethod
    def collect(ws, n, timeout=10.0, kind="event"):
        out = []
        deadline = time.monotonic() + t(timeout)
        while len(out) < n and time.monotonic() < deadline:
            try:
                m = ws.recv_json(timeout=max(0.05, deadline - time.monotonic()))
            except socket.timeout:
                break
            if m.get("type") == kind:
                out.append(m)
        return out

    @staticmethod
    def quiet(ws, seconds):
        """Messages of type event arriving within `seconds` (there should be none)."""
        extra = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                m = ws.recv_json(timeout=max(0.05, deadline - time.monotonic()))
            except socket.timeout:
                break
            if m.get("type") == "event":
                extra.append(m)
        return extra


class TestEvents(ClusterTestCase):
    def test_event_on_a_reaches_b_and_c_once_in_order(self):
        a, b, c = self.cluster(["A", "B", "C"])
        subs = {name: self.events_sub(h) for name, h in (("A", a), ("B", b), ("C", c))}
        time.sleep(t(0.3))  # the subscriptions are in place
        ids = [self.publish(a, "tasks.created", {"n": i})["id"] for i in range(20)]
        for name, ws in subs.items():
            got = self.collect(ws, len(ids), timeout=15)
            self.assertEqual([m["data"]["id"] for m in got], ids, "hub %s" % name)
            self.assertEqual([m["data"]["payload"]["n"] for m in got], list(range(20)))
            # every frame carries its hub's cursor, which names the origin
            for m in got:
                self.assertIn("A:", m["cursor"])
            # local seq is strictly increasing on every hub
            seqs = [m["seq"] for m in got]
            self.assertEqual(seqs, sorted(set(seqs)))
        for name, ws in subs.items():
            self.assertEqual(self.quiet(ws, t(1.0)), [], "no duplicate on %s" % name)
            ws.close()
        # bridged in once on B and C, never sent back out (no loops)
        for h in (b, c):
            self.assertEqual(self.nats_gauge(h, "metricast_nats_failed_total",
                                             reason="duplicate"), 0)
        # and they are real events of B: stored, listed by REST
        st, _h, body = b.get("/api/v1/events?since=0&limit=100")
        self.assertEqual(st, 200, body)
        self.assertEqual([e["data"]["id"] for e in json.loads(body)["events"]], ids)

    def test_resume_on_b_from_the_cursor_on_a(self):
        a, b = self.cluster(["A", "B"])
        ws = self.events_sub(a)
        time.sleep(t(0.3))
        first = [self.publish(a, "tasks.created", {"n": i})["id"] for i in range(3)]
        got = self.collect(ws, 3)
        self.assertEqual([m["data"]["id"] for m in got], first)
        cursor = got[-1]["cursor"]
        ws.close()
        # while the client is away, events from both hubs
        later = [self.publish(a, "tasks.created", {"n": 3})["id"],
                 self.publish(b, "tasks.updated", {"n": 4})["id"],
                 self.publish(a, "tasks.created", {"n": 5})["id"]]
        wait_for(lambda: len(json.loads(b.get("/api/v1/events?since=0")[2])["events"]) == 6,
                 timeout=10, desc="B has all six events")
        # the client reconnects to the other hub with the cursor it had
        ws = self.events_sub(b, since=cursor)
        got = self.collect(ws, 3)
        self.assertEqual(sorted(m["data"]["id"] for m in got), sorted(later))
        live = self.publish(a, "tasks.created", {"n": 6})["id"]
        got = self.collect(ws, 1)
        self.assertEqual([m["data"]["id"] for m in got], [live])
        self.assertEqual(self.quiet(ws, t(0.5)), [])
        ws.close()
        # the REST form of the same resume
        st, _h, body = b.get("/api/v1/events?cursor=%s" % cursor)
        self.assertEqual(st, 200)
        page = json.loads(body)
        self.assertEqual(sorted(e["data"]["id"] for e in page["events"]), sorted(later + [live]))
        st, _h, body = b.get("/api/v1/events?cursor=%s" % page["next_cursor"])
        self.assertEqual(json.loads(body)["events"], [])
        self.assertEqual(b.get("/api/v1/events?cursor=bad!")[0], 400)


    def test_restarted_hub_gets_what_it_missed(self):
        a, b = self.cluster(["A", "B"])
        first = self.publish(a, "tasks.created", {"n": 0})["id"]
        wait_for(lambda: [e["data"]["id"] for e in b.get_json("/api/v1/events?since=0")[2]["events"]]
                 == [first], timeout=10, desc="first event on B")
        self.assertEqual(b.stop(), 0)
        missed = [self.publish(a, "tasks.created", {"n": i})["id"] for i in range(1, 4)]
        b.start()  # same data directory and hub id: it knows where it stopped
        def on_b():
            ids = [e["data"]["id"] for e in b.get_json("/api/v1/events?since=0")[2]["events"]]
            return ids if len(ids) >= 4 else None
        ids = wait_for(on_b, timeout=15, desc="the missed events on B")
        self.assertEqual(ids, [first] + missed)
        self.assertIn("asking a hub for missed events", b.log())
        self.assertIn("replayed events to a hub", a.log())
        live = self.publish(a, "tasks.created", {"n": 4})["id"]
        wait_for(lambda: live in [e["data"]["id"] for e in
                                  b.get_json("/api/v1/events?since=0")[2]["events"]],
                 timeout=10, desc="live again")


class TestSamples(ClusterTestCase):
    def test_sample_on_a_visible_on_b(self):
        a, b = self.cluster(["A", "B"])
        ws = RawWS(b.port, "/ws")
        ws.send_json({"type": "subscribe", "topics": ["metrics"], "filter": {"match": "bridged_*"}})
        st, _h, body = a.request("POST", "/api/v1/ingest",
                                 "bridged_level:42|g|#source:robot_9\nbridged_jobs:3|c\n"
                                 "bridged_latency:10|ms\nbridged_latency:20|ms\nbridged_users:x|s",
                                 {"Content-Type": "text/plain"})
        self.assertEqual(st, 202, body)

        def on_b():
            series = json.loads(b.get("/api/v1/metrics?match=bridged_*")[2])["series"]
            return {s["name"]: s for s in series} if len(series) == 4 else None
        got = wait_for(on_b, timeout=10, desc="the samples on B")
        self.assertEqual(got["bridged_level"]["value"], 42)
        self.assertEqual(got["bridged_level"]["labels"], {"source": "robot_9"})
        self.assertEqual(got["bridged_jobs"]["value"], 3)
        # the timer's interval closes at the next second on B
        wait_for(lambda: {s["name"]: s for s in json.loads(
            b.get("/api/v1/metrics?match=bridged_latency")[2])["series"]}
            .get("bridged_latency", {}).get("count") == 2, timeout=5, desc="timer on B")
        # and the live stream of B carries it
        deadline = time.monotonic() + t(10)
        seen = False
        while not seen and time.monotonic() < deadline:
            m = ws.recv_json(timeout=t(5))
            if m.get("type") == "metrics:update":
                seen = any(s["name"] == "bridged_level" and s["value"] == 42
                           for s in m["data"]["series"])
        self.assertTrue(seen, "metrics:update on B with the sample from A")
        ws.close()
        # counted as bridged, not as B's own ingest; the hub label on B's own series
        p = b.prom()
        self.assertEqual(prom_get(p, "metricast_ingest_lines_total", hub="B", transport="http"), 0)
        self.assertGreater(self.nats_gauge(b, "metricast_nats_messages_total", direction="in"), 0)
        self.assertEqual(prom_get(p, "bridged_jobs_total"), 3)
        # the clustered exposition (hub labels, nats families) passes promtool's lint
        st, _h, body = b.get("/metrics")
        res = subprocess.run([shutil.which("promtool") or "/usr/bin/promtool", "check", "metrics"],
                             input=body, capture_output=True, timeout=t(30))
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


class TestSources(ClusterTestCase):
    def test_sources_listed_cluster_wide(self):
        a, b = self.cluster(["A", "B"])
        src = RawWS(a.port, "/ws")
        src.send_json({"type": "hello", "source": "robot_42", "attrs": {"model": "x1"}})

        def listed(h, online):
            body = json.loads(h.get("/api/v1/sources")[2])
            for s in body["sources"]:
                if s["id"] == "robot_42" and s["online"] == online:
                    return s
            return None
        s = wait_for(lambda: listed(b, True), timeout=10, desc="robot_42 online on B")
        self.assertEqual(s["hub"], "A")
        self.assertEqual(s["attrs"].get("model"), "x1")
        self.assertEqual(listed(a, True)["hub"], "A")
        # its own figures on B: online, held by A, with what it sent A
        src.send_json({"type": "sample", "metrics": {"battery_level": 77}})
        def figures():
            st, _h, body = b.get_json("/api/v1/sources/robot_42/metrics")
            return st == 200 and body["metrics"].get("battery_level") == 77 and body
        body = wait_for(figures, timeout=10, desc="robot_42's metrics on B")
        self.assertTrue(body["online"])
        self.assertEqual(body["hub"], "A")
        # its hub disappears without a word: after the timeout it shows offline elsewhere
        a.stop(sig=signal.SIGKILL)
        s = wait_for(lambda: listed(b, False), timeout=15, desc="robot_42 offline on B")
        self.assertEqual(s["hub"], "A")
        src.close()


class TestFailures(ClusterTestCase):
    def test_nats_down_then_back_on_the_same_port(self):
        a, b = self.cluster(["A", "B"])
        self.nats.kill()

        def degraded(h):
            st, _h, body = h.get("/api/v1/health")
            d = json.loads(body)
            return st == 200 and d["status"] == "degraded" and "nats" in d.get("degraded", [])
        for h in (a, b):
            wait_for(lambda h=h: degraded(h), timeout=15, desc="degraded health")
            self.assertEqual(self.nats_gauge(h, "metricast_nats_connected"), 0)
        # local service goes on: publish and receive on A
        ws = self.events_sub(a)
        time.sleep(t(0.3))
        local = self.publish(a, "tasks.created", {"while": "down"})["id"]
        self.assertEqual([m["data"]["id"] for m in self.collect(ws, 1)], [local])
        st, _h, _b = a.request("POST", "/api/v1/ingest", "down_gauge:1|g",
                               {"Content-Type": "text/plain"})
        self.assertEqual(st, 202)
        ws.close()
        # the server comes back on the same port: both hubs reconnect by themselves
        self.nats.start()
        for h in (a, b):
            wait_for(lambda h=h: self.nats_gauge(h, "metricast_nats_connected") == 1,
                     timeout=20, desc="reconnected")
            wait_for(lambda h=h: h.get_json("/api/v1/health")[2]["status"] == "healthy",
                     timeout=10, desc="healthy again")
            self.assertGreaterEqual(self.nats_gauge(h, "metricast_nats_reconnects_total"), 1)
        wait_for(lambda: self.nats_gauge(b, "metricast_nats_peers") == 1, timeout=10,
                 desc="peers again")
        sub = self.events_sub(b)
        time.sleep(t(0.3))
        after = self.publish(a, "tasks.created", {"after": "restart"})["id"]
        got = [m["data"]["id"] for m in self.collect(sub, 5, timeout=5)]
        self.assertIn(after, got)
        sub.close()
        # what A published while NATS was down reached B too (resent from nats.c's
        # buffer, or replayed from A's log), once
        def on_b():
            ids = [e["data"]["id"] for e in b.get_json("/api/v1/events?since=0")[2]["events"]]
            return local in ids and after in ids and ids
        ids = wait_for(on_b, timeout=15, desc="the outage's event on B")
        self.assertEqual(len(ids), len(set(ids)), "no duplicate on B")
        self.assertLess(ids.index(local), ids.index(after), "A's order kept on B")
        # nothing acknowledged on A was lost there
        ids = [e["data"]["id"] for e in a.get_json("/api/v1/events?since=0")[2]["events"]]
        self.assertIn(local, ids)
        self.assertIn(after, ids)

    def test_garbage_on_the_subjects_is_counted(self):
        (a,) = self.cluster(["A"])
        bad = [("metricast.events.X", b"not json"),
               ("metricast.events.X", b'{"v":99,"k":"event","hub":"X"}'),
               ("metricast.samples.X", b'{"v":1,"k":"samples","hub":"X","d":[["c","bad name!",{},1,1,null],["t","x",{},1,1,1,1,1,0,[0,1,[0,5]],[0,0,[]]]]}'),
               ("metricast.events.X", b'{"v":1,"k":"event","hub":"X","oseq":1,"prev":0,"event":{"type":"nope"}}'),
               ("metricast.sources.X", b'{"v":1,"k":"sources","hub":"../x","at":1,"sources":[]}')]
        # the hub's subscription is in place once a message on it is counted
        def total():
            return sum(self.nats_gauge(a, "metricast_nats_failed_total", reason=r) or 0
                       for r in ("bad_json", "bad_version", "bad_field"))
        deadline = time.monotonic() + t(15)
        while total() == 0 and time.monotonic() < deadline:
            self.nats.publish_raw("metricast.events.X", b"probe, not json")
            time.sleep(0.2)
        base = total()
        self.assertGreater(base, 0, "the hub never counted a message")
        for subj, payload in bad:
            self.nats.publish_raw(subj, payload)
        self.nats.publish_raw("metricast.events.X", b"[" * 100000)
        wait_for(lambda: total() >= base + len(bad) + 1, timeout=10, desc="refusals counted")
        self.assertEqual(self.nats_gauge(a, "metricast_nats_failed_total", reason="bad_version"), 1)
        self.assertTrue(a.alive())
        self.assertIn("nats message not bridged", a.log())
        # a good message from a hub that speaks the protocol still goes through
        env = {"id": "evt_tasks_1700000000000_abcdef", "type": "tasks.created",
               "source": "tasks_service", "target": None, "timestamp": 1700000000.0,
               "payload": {}, "meta": {"correlation_id": None, "version": "1.0"}}
        self.nats.publish_raw("metricast.events.X", json.dumps(
            {"v": 1, "k": "event", "hub": "X", "oseq": 7, "prev": 0, "event": env}).encode())
        def applied():
            st, _h, body = a.get_json("/api/v1/events?since=0")
            self.assertEqual(st, 200, body)
            return any(e["data"]["id"] == env["id"] for e in body["events"])
        wait_for(applied, timeout=10, desc="the valid event applied")


if __name__ == "__main__":
    main()
