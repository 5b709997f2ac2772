#!/usr/bin/python3
"""libmetricast against the real daemon, driven through tests/integration/client_driver.c:
StatsD values visible in /api/v1/metrics; a source session online with its attrs, its
samples stored, its per-session metrics received, publish answered by ack, the lifecycle
events published; backpressure honoured (the pause kept, the first window bounded,
streaming again); reconnect after the hub restarts; the token on the upgrade; refusals."""

import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, HOST, HubTestCase, free_port, main, prom_get,  # noqa: E402
                     t, wait_for)

BUILD = os.path.dirname(os.path.abspath(DAEMON))
DRIVER = os.environ.get("MC_CLIENT_DRIVER") or os.path.join(BUILD, "tests", "client_driver")


def find_series(hub, name, labels):
    _s, _h, doc = hub.get_json("/api/v1/metrics?match=%s" % name)
    for s in doc["series"]:
        if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items()):
            return s
    return None


def events(hub, pattern):
    _s, _h, doc = hub.get_json("/api/v1/events?since=0&limit=1000&type=%s" % pattern)
    return [e["data"] for e in doc["events"]]


def source(hub, sid):
    _s, _h, doc = hub.get_json("/api/v1/sources")
    for s in doc["sources"]:
        if s["id"] == sid:
            return s
    return None


class Driver:
    """client_driver as a child process; its JSON lines collected by a reader thread."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DRIVER] + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._th = threading.Thread(target=self._read, daemon=True)
        self._th.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                self.lines.append(json.loads(line))

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=t(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("client_driver did not finish within %.1fs; output %r"
                                 % (t(timeout), self.lines[-5:]))
        self._th.join(5)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in err:
                raise AssertionError("sanitizer report from client_driver:\n" + err)
        return self.proc.returncode

    def evs(self, kind):
        return [x for x in list(self.lines) if x.get("ev") == kind]

    def one(self, key):
        got = [x[key] for x in self.lines if key in x]
        if len(got) != 1:
            raise AssertionError("expected one %r line, got %r" % (key, self.lines[-10:]))
        return got[0]


class TestStatsd(HubTestCase):
    def test_every_kind_visible_in_the_api(self):
        h = self.hub(statsd=True)
        d = Driver("statsd", HOST, h.statsd_port)
        self.assertEqual(d.wait(10), 0)
        self.assertEqual(d.one("done"), True)

        def val(name, labels=None, key="value"):
            s = find_series(h, name, labels or {})
            return s and s.get(key)
        wait_for(lambda: val("it_many_149") == 149, desc="it_many_149 = 149")
        # the history point of the second it was sent in comes with that second's roll
        def points():
            status, _h, doc = h.get_json("/api/v1/series/it_users?window=60")
            return status == 200 and doc["series"] and doc["series"][0]["points"]
        hist = wait_for(points, desc="it_users history")
        self.assertEqual(val("it_requests", {"route": "/api", "env": "it"}), 10)
        self.assertEqual(find_series(h, "it_requests", {})["kind"], "counter")
        self.assertEqual(val("it_temperature"), -3.5)  # sent as 0|g then -3.5|g
        self.assertEqual(val("it_level"), 13)          # 10, +5, -2
        self.assertEqual(find_series(h, "it_latency", {})["kind"], "timer")
        # the JSON view shows the last second's figures; /metrics has the cumulative ones
        prom = h.prom()
        self.assertEqual(prom_get(prom, "it_latency_count", env="it"), 100)
        self.assertEqual(prom_get(prom, "it_latency_sum", env="it"), 5050)
        self.assertEqual(prom_get(prom, "it_size_sum", env="it"), 512)
        # a set counts distinct members per second: read the second it was sent in
        self.assertEqual(max(p[1] for p in hist), 2)
        sampled = find_series(h, "it_sampled", {})
        if sampled is not None:  # sent with @0.5 (or sampled out): the hub scales it
            self.assertEqual(sampled["value"], 2)
        for i in range(150):
            self.assertEqual(val("it_many_%03d" % i), i)
        _s, _h, summ = h.get_json("/api/v1/summary")
        self.assertGreaterEqual(summ["ingest"]["datagrams_total"], 2, "crossed a datagram")
        self.assertEqual(summ["ingest"]["rejected_total"], 0)


class TestSourceSession(HubTestCase):
    def test_lifecycle_samples_metrics_and_publish(self):
        h = self.hub()
        attrs = {"model": "x1", "site": "test"}
        d = Driver("source", h.url, "robot_lib", "--attrs", json.dumps(attrs), "--rate", 10,
                   "--seconds", 3, "--publish", "tasks.created")
        on = wait_for(lambda: (source(h, "robot_lib") or {}).get("online"), timeout=5,
                      desc="robot_lib online")
        self.assertTrue(on)
        src = source(h, "robot_lib")
        self.assertEqual(src["attrs"], attrs)
        self.assertEqual(d.wait(15), 0)
        stats = d.one("stats")
        self.assertEqual(stats["connects"], 1)
        self.assertEqual(stats["dropped"], 0)
        self.assertEqual(stats["close_rc"], 0)
        self.assertEqual((stats["publishes"], stats["acks"]), (1, 1))
        self.assertEqual(stats["queued_at_end"], 0)
        # the hub's per-session metrics, about once a second
        ms = d.evs("metrics")
        self.assertGreaterEqual(len(ms), 2, d.lines)
        sid = ms[0]["session_id"]
        self.assertRegex(sid, r"^ws_\d+_\d+$")
        for m in ms:
            self.assertEqual((m["session_id"], m["attempt_id"], m["queue_capacity"]),
                             (sid, 1, 1024))
        self.assertEqual(ms[-1]["dropped"], 0)
        # the publish: acked with the id the library made, stored with its fields
        pub = d.one("published")
        self.assertRegex(pub, r"^evt_tasks_\d{13}_[a-z0-9]{6}$")
        acks = d.evs("ack")
        self.assertEqual([(a["id"], a["err"]) for a in acks], [(pub, 0)])
        stored = [e for e in events(h, "tasks.created") if e["id"] == pub]
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0]["payload"], {"step": 1})
        self.assertEqual(stored[0]["meta"], {"correlation_id": "corr-1", "version": "1.0"})
        # every sample arrived: the last gauge, the constant, the client's own metric
        last = stats["ticks"] - 1
        wait_for(lambda: (find_series(h, "drv_value", {"source": "robot_lib"}) or {})
                 .get("value") == last, desc="drv_value = %d" % last)
        self.assertEqual(find_series(h, "drv_const", {"source": "robot_lib"})["value"], 42)
        self.assertEqual(find_series(h, "drv_client_sent", {"client": sid})["value"], last)
        # offline now, and both lifecycle events were published
        wait_for(lambda: (source(h, "robot_lib") or {}).get("status") == "offline",
                 desc="robot_lib offline")
        est = [e for e in events(h, "telemetry.connection_established")
               if e["payload"]["robot_id"] == "robot_lib"]
        self.assertEqual([e["payload"]["connection_id"] for e in est], [sid])
        closed = wait_for(lambda: [e for e in events(h, "telemetry.connection_closed")
                                   if e["payload"]["robot_id"] == "robot_lib"],
                          desc="connection_closed")
        self.assertEqual(closed[0]["payload"]["reason"], "client_disconnect")
        self.assertEqual(closed[0]["payload"]["connection_id"], sid)
        rec = wait_for(lambda: [r for r in h.log_records() if r.get("msg") == "source session ended"
                                and r.get("source") == "robot_lib"], desc="session end logged")
        self.assertEqual(int(rec[0]["received"]), stats["sent"] - 1)  # all but the publish
        self.assertEqual(rec[0]["dropped"], "0")


class TestBackpressure(HubTestCase):
    def test_flood_pauses_for_retry_after_then_streams_again(self):
        # a hub queue of 256: the first burst overflows it at once; honouring the pauses,
        # the rest goes in bursts it can take. The stats line is taken before the close,
        # which sends what is still queued (linger).
        # On a quick run the whole flood can be in the socket buffers before the hub's
        # first status comes back: then there is no pause to judge, so flood again with
        # more (bounded: three tries, a fresh hub each).
        for N in (8000, 32000, 96000):
            h = self.hub(["--source-queue-messages", "256"])
            d = Driver("source", h.url, "flooder", "--flood", N, "--queue", 2 * N,
                       "--seconds", 1, "--linger", 20000)
            self.assertEqual(d.wait(60), 0)
            first_pauses = [x["pauses"] for x in d.lines if "pauses" in x]
            if first_pauses and first_pauses[0] and first_pauses[0][0]["sent_at_start"] < N:
                break
            h.stop()
        stats = d.one("stats")
        statuses = d.evs("status")
        states = [s["state"] for s in statuses]
        self.assertTrue(states, "no status message: %r" % d.lines[-5:])
        self.assertEqual(states[0], "backpressure", states)
        self.assertIn("streaming", states, "the hub never said streaming again")
        for a, b in zip(states, states[1:]):
            self.assertNotEqual(a, b, "two statuses without a change: %r" % states)
        bps = [s for s in statuses if s["state"] == "backpressure"]
        for s in bps:
            self.assertGreaterEqual(s["retry_after_ms"], 1)
            self.assertGreater(s["fill_ratio"], 0.85)
        self.assertGreaterEqual(stats["backpressure_events"], 1)
        self.assertLessEqual(stats["backpressure_events"], len(bps))
        # the pauses were kept: nothing left during the first 90 % of any of them
        pauses = d.one("pauses")
        self.assertEqual(len(pauses), len(bps))
        self.assertLess(pauses[0]["sent_at_start"], N, "the flood was out before the first "
                        "status: nothing to judge (raise N)")
        judged = [p for p in pauses if p["samples_inside"] >= 3]
        self.assertTrue(judged, pauses)
        for p in judged:
            self.assertEqual(p["max_sent_inside"], p["sent_at_start"],
                             "messages left during a backpressure pause: %r" % p)
        # after the first pause, one burst of at most backpressure_burst (16) messages
        first = pauses[0]
        if first["samples_next"] >= 3:
            self.assertLessEqual(first["max_sent_next"] - first["sent_at_start"], 16, first)
        self.assertGreaterEqual(stats["paused_ms"], bps[0]["retry_after_ms"])
        # nothing lost on the client side (close_rc 0: all sent); the hub got every frame
        self.assertEqual(stats["dropped"], 0)
        self.assertEqual(stats["close_rc"], 0)
        rec = wait_for(lambda: [r for r in h.log_records() if r.get("msg") == "source session ended"
                                and r.get("source") == "flooder"], desc="session end logged")
        self.assertEqual(int(rec[0]["received"]), N)
        shed = int(rec[0]["dropped"])
        # what the hub shed is at most what was on the wire before the first
        # backpressure could arrive, plus small bursts after it
        self.assertLess(shed, first["sent_at_start"] + N // 10,
                        "the hub shed %d of %d; %d went out before the first pause"
                        % (shed, N, first["sent_at_start"]))
        stored = find_series(h, "flood_hits", {"source": "flooder"})
        self.assertEqual(stored["value"], N - shed)


class TestReconnect(HubTestCase):
    def test_session_comes_back_after_the_hub_restarts(self):
        port = free_port()
        a = self.hub(["--listen", "%s:%d" % (HOST, port)])
        d = Driver("source", "http://%s:%d" % (HOST, port), "robot_rc", "--rate", 5,
                   "--seconds", 7)
        wait_for(lambda: (source(a, "robot_rc") or {}).get("online"), desc="online on hub A")
        self.assertEqual(a.stop(), 0)
        b = self.hub(["--listen", "%s:%d" % (HOST, port)])
        wait_for(lambda: (source(b, "robot_rc") or {}).get("online"), timeout=10,
                 desc="online again on hub B")
        wait_for(lambda: find_series(b, "drv_value", {"source": "robot_rc"}),
                 desc="samples on hub B")
        self.assertEqual(d.wait(20), 0)
        stats = d.one("stats")
        self.assertEqual(stats["connects"], 2)
        self.assertGreaterEqual(stats["connect_failures"], 1)
        conns = d.evs("connected")
        self.assertEqual([c["attempt"] for c in conns], [1, 2])
        lost = d.evs("disconnected")
        self.assertTrue(lost)
        self.assertEqual(lost[0]["close_code"], 1001, lost[0])  # "server shutting down"
        for x in lost:
            self.assertGreater(x["retry_in_ms"], 0)
            self.assertLessEqual(x["retry_in_ms"], 1000)  # the driver's reconnect_max_ms


class TestRefusals(HubTestCase):
    def test_nothing_listening_backs_off_and_counts(self):
        port = free_port()
        d = Driver("source", "http://%s:%d" % (HOST, port), "robot_x", "--rate", 20,
                   "--seconds", 1.5, "--linger", 100)
        self.assertEqual(d.wait(10), 0)
        lost = d.evs("disconnected")
        self.assertGreaterEqual(len(lost), 2, d.lines)
        for x in lost:
            self.assertEqual(x["err"], -111, x)  # -ECONNREFUSED
            self.assertIn("refused", x["detail"].lower())
        retries = [x["retry_in_ms"] for x in lost]
        self.assertGreater(max(retries), min(retries), "no backoff: %r" % retries)
        stats = d.one("stats")
        self.assertEqual(stats["connects"], 0)
        self.assertEqual(stats["sent"], 0)
        self.assertEqual(stats["close_rc"], -110)  # queued samples left unsent (-ETIMEDOUT)

    def test_bad_options_refused_at_open(self):
        for args, needle in ((["http://127.0.0.1:1", "bad id!"], "source must be"),
                             (["https://127.0.0.1:1", "ok"], "TLS"),
                             (["http://127.0.0.1:1", "ok", "--attrs", "[1,2]"], "attrs_json")):
            d = Driver("source", *args)
            self.assertEqual(d.wait(10), 1)
            err = d.one("open_error")
            self.assertLess(err, 0)
            self.assertIn(needle, [x for x in d.lines if "open_error" in x][0]["detail"])

    def test_real_tokens_ingest_scope_needed(self):
        conf = ("[token.robot]\nsecret = ingest-secret-0123456789ab\nscopes = ingest, publish\n"
                "[token.viewer]\nsecret = read-secret-0123456789abcd\nscopes = read\n")
        h = self.hub(config=conf)
        auth = {"Authorization": "Bearer read-secret-0123456789abcd"}
        d = Driver("source", h.url, "robot_tok", "--token", "ingest-secret-0123456789ab",
                   "--rate", 5, "--seconds", 1.5, "--publish", "tasks.created")
        self.assertEqual(d.wait(10), 0)
        self.assertEqual(d.one("stats")["connects"], 1)
        self.assertEqual([a["err"] for a in d.evs("ack")], [0])
        s = wait_for(lambda: [x for x in h.get_json("/api/v1/metrics?match=drv_const",
                                                    headers=auth)[2]["series"]],
                     desc="samples stored with the ingest token")
        self.assertEqual(s[0]["labels"], {"source": "robot_tok"})
        # a read token opens the socket but may not be a source: the hub says forbidden
        d = Driver("source", h.url, "robot_ro", "--token", "read-secret-0123456789abcd",
                   "--rate", 5, "--seconds", 1)
        self.assertEqual(d.wait(10), 0)
        codes = {e["code"] for e in d.evs("error")}
        self.assertIn("forbidden", codes, d.lines)
        # no token at all: the upgrade is refused (401)
        d = Driver("source", h.url, "robot_none", "--seconds", 0.5, "--linger", 100)
        self.assertEqual(d.wait(10), 0)
        self.assertEqual(d.evs("disconnected")[0]["err"], -13)

    def test_token_goes_on_the_upgrade(self):
        """A listener that records the upgrade and answers 401 (the hub of this build has
        no tokens yet): the query carries token=, the header Authorization: Bearer."""
        srv = socket.socket()
        srv.bind((HOST, 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        seen = []

        def serve():
            srv.settimeout(t(10))
            try:
                while len(seen) < 2:
                    c, _ = srv.accept()
                    with c:
                        c.settimeout(t(5))
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = c.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                        seen.append(data.decode("latin-1"))
                        body = b'{"error":"unauthorized","detail":"a valid token is needed"}'
                        c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json"
                                  b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                  % (len(body), body))
            except OSError:
                pass
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        try:
            d = Driver("source", "http://%s:%d" % (HOST, port), "robot_tok", "--token", "s3cr+t",
                       "--seconds", 1, "--linger", 100)
            self.assertEqual(d.wait(10), 0)
            th.join(t(5))
        finally:
            srv.close()
        self.assertTrue(seen)
        req = seen[0]
        self.assertTrue(req.startswith("GET /ws?token=s3cr%2Bt HTTP/1.1\r\n"), req)
        self.assertIn("\r\nAuthorization: Bearer s3cr+t\r\n", req)
        self.assertIn("\r\nSec-WebSocket-Version: 13\r\n", req)
        lost = d.evs("disconnected")
        self.assertTrue(lost)
        self.assertEqual(lost[0]["err"], -13, lost[0])  # -EACCES
        self.assertIn("401", lost[0]["detail"])
        self.assertIn("a valid token is needed", lost[0]["detail"])


if __name__ == "__main__":
    main()
