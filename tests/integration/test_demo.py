#!/usr/bin/python3
"""metricastd --demo: within a few seconds the robots and the streaming session are online
sources whose values move, the StatsD service's series arrive (over UDP, or over HTTP
ingest with --statsd off), their events are published; SIGTERM closes every demo session
with client_disconnect before the workers stop, and the daemon exits 0."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Hub, HubTestCase, main, t, wait_for  # noqa: E402

ROBOTS = ["robot_001", "robot_002", "robot_003"]
SESSION = "asr_session_01"
SOURCES = ROBOTS + [SESSION]


def online(hub):
    _s, _h, doc = hub.get_json("/api/v1/sources")
    return {s["id"]: s for s in doc["sources"] if s["online"]}


def series(hub):
    _s, _h, doc = hub.get_json("/api/v1/metrics")
    return {(s["name"], s["labels"].get("source")): s for s in doc["series"]}


def events(hub, pattern):
    _s, _h, doc = hub.get_json("/api/v1/events?since=0&limit=1000&type=%s" % pattern)
    return [e["data"] for e in doc["events"]]


class TestDemo(HubTestCase):
    def test_robots_session_and_service_then_a_clean_stop(self):
        h = self.hub(["--demo"], statsd=True)
        srcs = wait_for(lambda: (lambda o: len(o) == 4 and o)(
            {k: v for k, v in online(h).items() if k in SOURCES}), timeout=5,
            desc="4 demo sources online")
        for r in ROBOTS:
            self.assertEqual(srcs[r]["attrs"]["kind"], "robot")
        self.assertEqual(srcs[SESSION]["attrs"]["kind"], "asr")
        want = [(n, r) for r in ROBOTS for n in ("cpu_usage", "memory_usage",
                                                   "network_latency_ms", "battery_percentage")]
        want += [(n, SESSION) for n in ("queue_depth", "realtime_factor", "processing_time_ms",
                                        "audio_seconds")]
        want += [("fleet_api_requests", "fleet_api"), ("fleet_api_latency_ms", "fleet_api")]
        first = wait_for(lambda: (lambda s: all(k in s for k in want) and s)(series(h)),
                         timeout=5, desc="every demo series")
        for r in ROBOTS:
            for n in ("cpu_usage", "memory_usage", "battery_percentage"):
                v = first[(n, r)]["value"]
                self.assertTrue(0 <= v <= 100, (n, r, v))
                self.assertEqual(first[(n, r)]["kind"], "gauge")
            self.assertGreater(first[("network_latency_ms", r)]["value"], 0)
        self.assertEqual(first[("processing_time_ms", SESSION)]["kind"], "timer")
        self.assertEqual(first[("audio_seconds", SESSION)]["kind"], "counter")
        self.assertEqual(first[("fleet_api_requests", "fleet_api")]["kind"], "counter")
        # the values move: a living dashboard
        def moved():
            now = series(h)
            return [r for r in ROBOTS
                    if now[("cpu_usage", r)]["value"] != first[("cpu_usage", r)]["value"]]
        wait_for(moved, timeout=4, desc="cpu_usage changing")
        _s, _h, summ = h.get_json("/api/v1/summary")
        by = summ["ingest"]["lines_by_transport"]
        self.assertGreater(by["ws"], 0)
        self.assertGreater(by["udp"], 0)  # the StatsD service
        self.assertEqual(summ["ingest"]["rejected_total"], 0)
        est = {e["payload"]["robot_id"] for e in events(h, "telemetry.connection_established")}
        self.assertEqual(est & set(SOURCES), set(SOURCES))
        self.assertTrue(events(h, "asr.session_started"))

        # SIGTERM: the demo closes its sessions through the still-running workers
        self.assertEqual(h.stop(signal.SIGTERM, timeout=10), 0)
        recs = h.log_records()
        msgs = [r.get("msg") for r in recs]
        self.assertIn("demo stopped", msgs)
        ended = [r for r in recs if r.get("msg") == "source session ended"]
        self.assertEqual(sorted(r["source"] for r in ended), sorted(SOURCES))
        for r in ended:
            self.assertEqual(r["reason"], "client_disconnect", r)
            self.assertEqual(r["dropped"], "0", r)
        self.assertLess(msgs.index("demo stopped"), msgs.index("stopped"))
        self.assertNotIn("pre-stop work did not finish in time; stopping anyway", h.log())
        # the close events were stored: a restart on the same data shows them
        again = self.hub(["--data", h.data_dir], defaults=False, start=False)
        again.argv = [again.argv[0], "--listen", "127.0.0.1:0", "--statsd", "off",
                      "--data", h.data_dir]
        again.start()
        closed = [e["payload"] for e in events(again, "telemetry.connection_closed")]
        reasons = {p["robot_id"]: p["reason"] for p in closed if p["robot_id"] in SOURCES}
        self.assertEqual(reasons, {s: "client_disconnect" for s in SOURCES})
        self.assertTrue(events(again, "asr.session_ended"))

    def test_with_tokens_the_demo_uses_METRICAST_TOKEN(self):
        conf = ("[token.demo]\nsecret = demo-secret-0123456789abcdef\nscopes = ingest, publish\n"
                "[token.viewer]\nsecret = read-secret-0123456789abcdef\nscopes = read\n")
        h = self.hub(["--demo"], config=conf, statsd=True,
                     env={"METRICAST_TOKEN": "demo-secret-0123456789abcdef"})
        auth = {"Authorization": "Bearer read-secret-0123456789abcdef"}

        def up():
            _s, _h, doc = h.get_json("/api/v1/sources", headers=auth)
            return {s["id"] for s in doc["sources"] if s["online"]} >= set(SOURCES)
        wait_for(up, timeout=5, desc="demo sources online with a token")
        _s, _h, doc = h.get_json("/api/v1/events?since=0&type=asr.*", headers=auth)
        self.assertTrue(doc["events"], "the demo's events need the publish scope")
        self.assertNotIn("METRICAST_TOKEN is not set", h.log())
        self.assertEqual(h.stop(), 0)
        # no token for the demo: refused, and the log says what to do
        h2 = self.hub(["--demo"], config=conf)
        wait_for(lambda: "METRICAST_TOKEN is not set" in h2.log(), desc="the hint")
        wait_for(lambda: 'msg="demo source disconnected"' in h2.log(), desc="refusal logged")
        _s, _h, doc = h2.get_json("/api/v1/sources", headers=auth)
        self.assertEqual([s for s in doc["sources"] if s["online"]], [])
        self.assertEqual(h2.stop(), 0)

    def test_without_statsd_the_service_uses_http_ingest(self):
        h = self.hub(["--demo"])  # the harness starts it with --statsd off
        wait_for(lambda: ("fleet_api_requests", "fleet_api") in series(h), timeout=5,
                 desc="fleet_api over HTTP")
        _s, _h, summ = h.get_json("/api/v1/summary")
        self.assertGreater(summ["ingest"]["lines_by_transport"]["http"], 0)
        self.assertEqual(summ["ingest"]["lines_by_transport"]["udp"], 0)
        self.assertIn('statsd=off(http ingest)', h.log())
        self.assertEqual(h.stop(), 0)


if __name__ == "__main__":
    main()
