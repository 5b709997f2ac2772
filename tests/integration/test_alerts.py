#!/usr/bin/python3
"""Alerts end to end: rules from the config file, evaluation every tick, alert.firing /
alert.resolved events on the `alerts` topic and in /api/v1/events, GET /api/v1/alerts,
webhooks to a real HTTP receiver on 127.0.0.1 (json, slack and alertmanager bodies;
500-then-200 retried and delivered once; a receiver that never answers leaves ingest and
streaming untouched), hysteresis, health 503 for critical alerts, bad rules (exit 2 with
one clear line), the periodic report, and SIGHUP applying a changed rule while a
subscriber stays connected."""

import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, RawWS, main, prom_get, run_daemon,  # noqa: E402
                     run_daemon_full, t, wait_for)

PAYLOAD_KEYS = {"rule", "severity", "metric", "source", "value", "threshold", "since"}
ENVELOPE_KEYS = {"id", "type", "source", "target", "timestamp", "payload", "meta"}


# --------------------------------------------------------------------------------------
# a real HTTP receiver
# --------------------------------------------------------------------------------------
class Receiver:
    """http.server on 127.0.0.1:<free port> in a thread. Records every POST (path,
    headers, body). `script` is a list of statuses answered in turn (then 200); the
    status "hang" reads the request and never answers (until close())."""

    def __init__(self, script=None):
        self.requests = []
        self.script = list(script or [])
        self.lock = threading.Lock()
        self.release = threading.Event()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    rec.requests.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body, "at": time.monotonic()})
                    status = rec.script.pop(0) if rec.script else 200
                if status == "hang":
                    rec.release.wait(t(60))
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # socketserver's 5 would refuse a burst of deliveries

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def posts(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class WSCollector(threading.Thread):
    """Reads every message of a RawWS on its own thread (long timeouts only: a read that
    times out mid-frame would lose the frame), keeping (monotonic time, message)."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws = ws
        self.msgs = []
        self.error = None
        self.start()

    def run(self):
        try:
            while True:
                m = self.ws.recv_json(timeout=30)
                self.msgs.append((time.monotonic(), m))
        except Exception as e:  # closed by the test, or a real failure (checked by callers)
            self.error = e

    def ticks_between(self, t0, t1):
        return sum(1 for at, m in list(self.msgs) if t0 <= at <= t1 and
                   m.get("type") == "metrics:update" and m.get("reason") == "tick")


def rule(name, **kv):
    lines = ["[alert.%s]" % name] + ["%s = %s" % (k.rstrip("_"), v) for k, v in kv.items()]
    return "\n".join(lines) + "\n"


def rule_for(name, **kv):  # `for` is a keyword
    kv["for"] = kv.pop("for_")
    return rule(name, **kv)


class AlertTestCase(HubTestCase):
    def setUp(self):
        super().setUp()
        self._receivers = []

    def tearDown(self):
        for r in self._receivers:
            r.close()
        super().tearDown()

    def receiver(self, script=None):
        r = Receiver(script)
        self._receivers.append(r)
        return r

    def alert_hub(self, config, *args):
        return self.hub(args=["--tick", "0.1", "--webhook-backoff", "50ms",
                              "--webhook-backoff-max", "200ms"] + list(args), config=config)

    @staticmethod
    def push(hub, source, **metrics):
        body = json.dumps({"source": source, "metrics": metrics}) if source else \
            json.dumps({"metrics": metrics})
        status, _h, data = hub.request("POST", "/api/v1/ingest", body=body,
                                       headers={"Content-Type": "application/json"})
        assert status == 202, (status, data)
        return json.loads(data)

    @staticmethod
    def alert_events(hub):
        st, _h, doc = hub.get_json("/api/v1/events?since=0&type=alert.*&limit=1000")
        assert st == 200, doc
        return [m["data"] for m in doc["events"]]

    def wait_events(self, hub, n, desc):
        return wait_for(lambda: (lambda ev: ev if len(ev) >= n else None)(self.alert_events(hub)),
                        timeout=10, desc=desc)

    @staticmethod
    def alerts(hub):
        st, _h, doc = hub.get_json("/api/v1/alerts")
        assert st == 200, doc
        return doc

    @staticmethod
    def prom(hub, name, **labels):
        return prom_get(hub.prom(), name, **labels)


# --------------------------------------------------------------------------------------
class TestWebhookStyles(AlertTestCase):
    def test_each_style_body(self):
        rx = self.receiver()
        cfg = "".join([
            rule("hot_json", metric="cpu_usage", source="*", op=">", threshold=90,
                 webhook=rx.url("/json"), style="json"),
            rule("hot_slack", metric="cpu_usage", source="*", op=">", threshold=90,
                 severity="critical", webhook=rx.url("/slack"), style="slack",
                 summary="CPU is hot"),
            rule("hot_am", metric="cpu_usage", source="*", op=">", threshold=90,
                 severity="error", webhook=rx.url("/am"), style="alertmanager"),
        ])
        hub = self.alert_hub(cfg)
        self.push(hub, "robot_1", cpu_usage=95.5)
        wait_for(lambda: len(rx.posts()) >= 3, timeout=10, desc="three firing webhooks")

        # json: the very event envelope the hub published
        j = rx.posts("/json")[0]
        self.assertEqual(j["headers"].get("Content-Type"), "application/json")
        self.assertTrue(j["headers"].get("User-Agent", "").startswith("metricast/"))
        env = json.loads(j["body"])
        self.assertEqual(set(env), ENVELOPE_KEYS)
        self.assertEqual(env["type"], "alert.firing")
        self.assertEqual(env["source"], "alert_service")
        self.assertEqual(set(env["payload"]), PAYLOAD_KEYS)
        p = env["payload"]
        self.assertEqual((p["rule"], p["severity"], p["metric"], p["source"], p["value"],
                          p["threshold"]), ("hot_json", "warning", "cpu_usage", "robot_1", 95.5, 90))
        self.assertRegex(p["since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(j["headers"].get("X-Metricast-Delivery"), env["id"])
        events = self.wait_events(hub, 3, "three alert.firing events")
        self.assertIn(env["id"], [e["id"] for e in events])

        # slack: an incoming-webhook message
        s = json.loads(rx.posts("/slack")[0]["body"])
        self.assertIn("[FIRING] hot_slack (critical)", s["text"])
        self.assertIn("95.5 &gt; 90", s["text"])
        att = s["attachments"][0]
        self.assertEqual(att["text"], "CPU is hot")
        self.assertEqual(att["color"], "#e01e5a")
        fields = {f["title"]: f["value"] for f in att["fields"]}
        self.assertEqual(fields["Source"], "robot_1")
        self.assertEqual(fields["Value"], "95.5")

        # alertmanager: what Alertmanager POSTs to a webhook receiver
        am = json.loads(rx.posts("/am")[0]["body"])
        for k in ("version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                  "commonLabels", "commonAnnotations", "externalURL", "alerts"):
            self.assertIn(k, am)
        self.assertEqual(am["version"], "4")
        self.assertEqual(am["status"], "firing")
        self.assertEqual(am["groupKey"], '{}:{alertname="hot_am"}')
        self.assertEqual(am["externalURL"], "http://127.0.0.1:%d" % hub.port)
        a = am["alerts"][0]
        self.assertEqual(a["status"], "firing")
        self.assertEqual(a["labels"], {"alertname": "hot_am", "severity": "error",
                                       "metric": "cpu_usage", "source": "robot_1"})
        self.assertEqual(a["annotations"]["value"], "95.5")
        self.assertEqual(a["endsAt"], "0001-01-01T00:00:00Z")
        self.assertRegex(a["fingerprint"], r"^[0-9a-f]{16}$")
        starts = a["startsAt"]

        # resolving sends the resolved form of each
        self.push(hub, "robot_1", cpu_usage=10)
        wait_for(lambda: len(rx.posts()) >= 6, timeout=10, desc="three resolved webhooks")
        self.assertEqual(json.loads(rx.posts("/json")[1]["body"])["type"], "alert.resolved")
        self.assertIn("[RESOLVED] hot_slack", json.loads(rx.posts("/slack")[1]["body"])["text"])
        am2 = json.loads(rx.posts("/am")[1]["body"])
        self.assertEqual(am2["status"], "resolved")
        a2 = am2["alerts"][0]
        self.assertEqual(a2["startsAt"], starts)
        self.assertNotEqual(a2["endsAt"], "0001-01-01T00:00:00Z")
        self.assertEqual(a2["fingerprint"], a["fingerprint"])
        time.sleep(t(0.3))
        self.assertEqual(len(rx.posts()), 6, "one delivery per transition and style")
        self.assertEqual(self.prom(hub, "metricast_webhook_sent_total"), 6)
        self.assertEqual(self.prom(hub, "metricast_webhook_failed_total"), 0)


class TestWebhookRetries(AlertTestCase):
    def test_500_then_200_is_retried_and_delivered_once(self):
        rx = self.receiver(script=[500, 200])
        hub = self.alert_hub(rule("hot", metric="temp", op=">", threshold=1, webhook=rx.url()))
        self.push(hub, None, temp=5)
        wait_for(lambda: self.prom(hub, "metricast_webhook_sent_total") == 1, timeout=10,
                 desc="delivery after one retry")
        time.sleep(t(0.5))  # nothing more arrives
        posts = rx.posts()
        self.assertEqual(len(posts), 2, "one failed attempt, one delivery: %r" % posts)
        self.assertEqual(posts[0]["body"], posts[1]["body"])
        self.assertEqual(posts[0]["headers"]["X-Metricast-Delivery"],
                         posts[1]["headers"]["X-Metricast-Delivery"])
        self.assertEqual([p["headers"]["X-Metricast-Attempt"] for p in posts], ["1", "2"])
        self.assertEqual(self.prom(hub, "metricast_webhook_retried_total"), 1)
        self.assertEqual(self.prom(hub, "metricast_webhook_failed_total"), 0)
        self.assertEqual(self.prom(hub, "metricast_webhook_queue"), 0)
        self.assertIn('msg="webhook delivery failed, will retry"', hub.log())

    def test_4xx_is_not_retried(self):
        rx = self.receiver(script=[404])
        hub = self.alert_hub(rule("hot", metric="temp", op=">", threshold=1, webhook=rx.url()))
        self.push(hub, None, temp=5)
        wait_for(lambda: self.prom(hub, "metricast_webhook_failed_total") == 1, timeout=10,
                 desc="failed delivery")
        time.sleep(t(0.3))
        self.assertEqual(len(rx.posts()), 1)
        self.assertEqual(self.prom(hub, "metricast_webhook_retried_total"), 0)

    def test_receiver_that_never_answers_leaves_the_hub_unaffected(self):
        rx = self.receiver(script=["hang"] * 100)
        hub = self.alert_hub(
            rule("hot", metric="temp", source="*", op=">", threshold=1, webhook=rx.url()),
            "--webhook-timeout", "1s", "--webhook-retries", "1")
        ws = RawWS(hub.port, path="/ws?topics=metrics")
        try:
            first = ws.recv_json()
            self.assertEqual(first["type"], "metrics:update")
            col = WSCollector(ws)
            for i in range(10):  # ten alerts, ten deliveries stuck at the receiver
                self.push(hub, "r%02d" % i, temp=5)
            wait_for(lambda: len(rx.posts()) >= 10, timeout=10, desc="deliveries reach the receiver")
            # meanwhile: ticks keep arriving every 0.1 s and ingest answers at once
            t0 = time.monotonic()
            worst_ingest = 0.0
            while time.monotonic() - t0 < 1.5:
                i0 = time.monotonic()
                self.push(hub, "live", temp=0)
                worst_ingest = max(worst_ingest, time.monotonic() - i0)
                time.sleep(0.05)
            ticks = col.ticks_between(t0, time.monotonic())
            self.assertGreaterEqual(ticks, 5, "ticks stalled while the receiver hangs")
            self.assertLess(worst_ingest, t(1.0), "ingest slowed down by a dead receiver")
            self.assertIsNone(col.error)
            st, _h, doc = hub.get_json("/api/v1/metrics?match=temp&source=live")
            self.assertEqual(st, 200)
            self.assertEqual(doc["series"][0]["value"], 0)
            # every delivery times out, is retried once, and is counted as failed
            wait_for(lambda: self.prom(hub, "metricast_webhook_failed_total") == 10, timeout=15,
                     desc="failures counted")
            self.assertEqual(self.prom(hub, "metricast_webhook_retried_total"), 10)
            self.assertEqual(self.prom(hub, "metricast_webhook_sent_total"), 0)
            self.assertIn("Operation timed out", hub.log())
        finally:
            ws.close()
        self.assertEqual(hub.stop(), 0)

    def test_shutdown_with_a_hanging_delivery_is_prompt(self):
        rx = self.receiver(script=["hang"])
        hub = self.alert_hub(rule("hot", metric="temp", op=">", threshold=1, webhook=rx.url()),
                             "--webhook-timeout", "60s")
        self.push(hub, None, temp=5)
        wait_for(lambda: rx.posts(), timeout=10, desc="delivery in flight")
        t0 = time.monotonic()
        self.assertEqual(hub.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, t(6), "stop waited for the dead receiver")
        self.assertIn('msg="webhook deliveries abandoned at shutdown" count=1', hub.log())


class TestEvaluation(AlertTestCase):
    def test_flapping_inside_the_band_fires_and_resolves_once(self):
        rx = self.receiver()
        hub = self.alert_hub(rule("hot", metric="cpu", op=">", threshold=90, clear=85,
                                  webhook=rx.url()))
        for v in (95, 87, 92, 86, 91, 88, 99, 85.5):
            self.push(hub, None, cpu=v)
            time.sleep(0.25)  # a few ticks see each value
        self.assertEqual([e["type"] for e in self.alert_events(hub)], ["alert.firing"])
        self.push(hub, None, cpu=80)
        ev = self.wait_events(hub, 2, "the resolve")
        time.sleep(t(0.3))
        ev = self.alert_events(hub)
        self.assertEqual([e["type"] for e in ev], ["alert.firing", "alert.resolved"])
        self.assertEqual(ev[0]["payload"]["value"], 95)
        self.assertEqual(ev[1]["payload"]["value"], 80)
        self.assertEqual(ev[1]["payload"]["since"], ev[0]["payload"]["since"])
        wait_for(lambda: len(rx.posts()) == 2, timeout=10, desc="two webhooks")

    def test_for_duration_and_the_alerts_api(self):
        hub = self.alert_hub(
            rule_for("slow", metric="lat", source="web_*", op=">=", threshold=100, for_="60s",
                     severity="info") +
            rule("fast", metric="lat", source="web_*", op=">=", threshold=100,
                 webhook="https://hooks.example.com/services/T0/B0/SECRET", style="slack") +
            rule("idle", metric="nothing_here", op=">", threshold=0))
        self.push(hub, "web_1", lat=150)
        self.push(hub, "web_2", lat=5)
        self.push(hub, "db_1", lat=500)
        # rules are evaluated every tick: the first firing can come from a pass that ran
        # before web_2's push arrived, so wait for a pass that has seen all three pushes
        # (the rule's series count: 2, as db_1 is not web_*; 3 would never match)
        def evaluated():
            d = self.alerts(hub)
            fast = [r for r in d["rules"] if r["name"] == "fast"]
            return d if d["firing"] == 1 and fast and fast[0]["series"] == 2 else None
        doc = wait_for(evaluated, timeout=10, desc="one firing alert, web_1 and web_2 seen")
        for k in ("rules", "active", "history", "firing", "pending", "fired_total",
                  "resolved_total", "history_limit", "timestamp"):
            self.assertIn(k, doc)
        rules = {r["name"]: r for r in doc["rules"]}
        self.assertEqual(list(rules), ["slow", "fast", "idle"])  # file order
        self.assertEqual(rules["slow"]["state"], "pending")
        self.assertEqual(rules["slow"]["for_seconds"], 60)
        self.assertEqual(rules["fast"]["state"], "firing")
        self.assertEqual(rules["fast"]["series"], 2)  # web_1 and web_2; db_1 is not web_*
        self.assertEqual(rules["idle"]["state"], "inactive")
        self.assertEqual(rules["idle"]["series"], 0)  # no such series yet: not firing
        # the Slack URL's secret path is not shown
        self.assertEqual(rules["fast"]["webhook"], "https://hooks.example.com/...")
        self.assertNotIn("SECRET", json.dumps(doc))
        active = {(a["rule"], a["source"]): a for a in doc["active"]}
        self.assertEqual(set(active), {("slow", "web_1"), ("fast", "web_1")})
        self.assertEqual(active[("slow", "web_1")]["state"], "pending")
        self.assertIsNone(active[("slow", "web_1")]["since"])
        f = active[("fast", "web_1")]
        self.assertEqual((f["state"], f["value"], f["op"], f["threshold"], f["labels"]),
                         ("firing", 150, ">=", 100, {"source": "web_1"}))
        self.assertEqual(len(doc["history"]), 1)
        h = doc["history"][0]
        self.assertEqual((h["status"], h["rule"], h["source"]), ("firing", "fast", "web_1"))
        self.assertEqual(self.prom(hub, "metricast_alerts_firing"), 1)
        self.assertEqual(self.prom(hub, "metricast_alerts_pending"), 1)
        self.assertEqual(self.prom(hub, "metricast_alert_rules"), 3)
        st, _h, s = hub.get_json("/api/v1/summary")
        self.assertEqual(s["alerts"], {"rules": 3, "firing": 1, "pending": 1})
        # promtool accepts /metrics with the alert and webhook families
        if os.path.exists("/usr/bin/promtool"):
            _st, _h, body = hub.get("/metrics")
            r = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body,
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_alerts_topic(self):
        hub = self.alert_hub(rule("hot", metric="cpu", source="*", op=">", threshold=90))
        ws = RawWS(hub.port, path="/ws?topics=alerts")
        try:
            time.sleep(0.2)
            st, _h, _b = hub.request("POST", "/api/v1/events",
                                     body=json.dumps({"type": "tasks.created", "payload": {}}),
                                     headers={"Content-Type": "application/json"})
            self.assertEqual(st, 202)
            self.push(hub, "robot_9", cpu=97)
            m = ws.recv_json(timeout=5)
            self.assertEqual(m["type"], "event")  # tasks.created is not on this topic
            self.assertIsInstance(m["seq"], int)
            self.assertEqual(set(m["data"]), ENVELOPE_KEYS)
            self.assertEqual(m["data"]["type"], "alert.firing")
            self.assertEqual(m["data"]["payload"]["source"], "robot_9")
            self.push(hub, "robot_9", cpu=10)
            m2 = ws.recv_json(timeout=5)
            self.assertEqual(m2["data"]["type"], "alert.resolved")
            self.assertGreater(m2["seq"], m["seq"])
            self.assertEqual(set(m2["data"]["payload"]), PAYLOAD_KEYS)
        finally:
            ws.close()

    def test_health_fails_while_a_critical_alert_fires(self):
        cfg = (rule("disk_full", metric="disk_used", source="*", op=">=", threshold=0.95,
                    severity="critical") +
               rule("disk_high", metric="disk_used", source="*", op=">=", threshold=0.8))
        hub = self.alert_hub(cfg)
        st, _h, doc = hub.get_json("/api/v1/health")
        self.assertEqual(st, 200, doc)
        self.assertIn("ingest_drops", doc["checks"])
        self.push(hub, "node_a", disk_used=0.85)  # warning only: still healthy
        # the drop check sees the last minute's samples (counted at each 1 s roll)
        wait_for(lambda: hub.get_json("/api/v1/health")[2]["checks"]["ingest_drops"]["offered"] >= 1,
                 timeout=5, desc="the sample counted for the drop check")
        wait_for(lambda: self.alerts(hub)["firing"] == 1, timeout=10, desc="warning fires")
        self.assertEqual(hub.get_json("/api/v1/health")[0], 200)
        self.push(hub, "node_a", disk_used=0.99)
        doc = wait_for(lambda: (lambda r: r[2] if r[0] == 503 else None)(
            hub.get_json("/api/v1/health")), timeout=10, desc="503")
        self.assertEqual(doc["status"], "unhealthy")
        self.assertEqual(doc["failing"], ["alert:disk_full"])
        self.assertIn("source=node_a", doc["checks"]["alert:disk_full"]["detail"])
        self.assertFalse(doc["checks"]["alert:disk_full"]["ok"])
        self.assertEqual(hub.get_json("/health")[0], 503)
        self.push(hub, "node_a", disk_used=0.5)
        wait_for(lambda: hub.get_json("/api/v1/health")[0] == 200, timeout=10, desc="healthy again")

    def test_critical_alerts_check_can_be_turned_off(self):
        hub = self.alert_hub(rule("down", metric="up", op="==", threshold=0, severity="critical"),
                             "--health-critical-alerts=false")
        self.push(hub, None, up=0)
        wait_for(lambda: self.alerts(hub)["firing"] == 1, timeout=10, desc="fires")
        self.assertEqual(hub.get_json("/api/v1/health")[0], 200)


class TestRuleValidation(AlertTestCase):
    CASES = [
        ("metric = a\nop = >\ntreshold = 1\n", 'unknown key "treshold"', None),
        ("metric = a\nop = =>\nthreshold = 1\n", 'op: "=>" is not an operator', None),
        ("metric = a\nop = >\nthreshold = 1\nfor = soon\n", 'for: "soon" is not a duration', None),
        ("metric = a\nop = >\nthreshold = 1\nseverity = fatal\n",
         'severity: "fatal" is not a severity', None),
        ("metric = a\nop = >\nthreshold = x\n", 'threshold: "x" is not a number', None),
        ("metric = a\nop = >\nthreshold = 90\nclear = 95\n", "clear: 95 is above the threshold", None),
    ]

    def test_bad_rules_exit_2_with_one_clear_line(self):
        tmp = self.tmpdir()
        for body, want, want2 in self.CASES:
            path = os.path.join(tmp, "bad.ini")
            with open(path, "w") as f:
                f.write("[alert.cpu_hot]\n" + body)
            for args in (["--config", path], ["--check-config", path]):
                code, err = run_daemon(["--listen", "127.0.0.1:0", "--statsd", "off",
                                        "--data", os.path.join(tmp, "d")] + args)
                self.assertEqual(code, 2, (args, err))
                lines = [ln for ln in err.splitlines() if ln.strip()]
                self.assertEqual(len(lines), 1, err)
                prefix = "metricastd: config %s: [alert.cpu_hot] " % path
                self.assertTrue(lines[0].startswith(prefix), lines[0])
                self.assertIn(want2 or want, lines[0])

    def test_check_config_accepts_good_rules(self):
        tmp = self.tmpdir()
        path = os.path.join(tmp, "good.ini")
        with open(path, "w") as f:
            f.write(rule_for("cpu_hot", metric="cpu_usage", source="*", op=">", threshold=90,
                             clear=85, for_="10s", severity="warning",
                             webhook="http://127.0.0.1:9000/hook", style="json"))
        code, out, err = run_daemon_full(["--check-config", path])
        self.assertEqual(code, 0, err)
        self.assertIn("[alert.cpu_hot]", out)
        self.assertIn("threshold = 90", out)
        self.assertIn("webhook = http://127.0.0.1:9000/********", out)  # the path may be a secret
        self.assertNotIn("/hook", out)

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="mc-alert-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


class TestReportAndReload(AlertTestCase):
    def test_periodic_report_line(self):
        hub = self.hub(args=["--report-interval", "300ms"])
        self.push(hub, "robot_1", x=1)
        rec = wait_for(lambda: [r for r in hub.log_records() if r.get("msg") == "report"],
                       timeout=5, desc="a report line")[-1]
        for k in ("subscribers", "sources_online", "ingest_rate", "drops_total", "events_total",
                  "cpu_percent", "rss_bytes", "alerts_firing", "series"):
            self.assertIn(k, rec)
        self.assertGreater(int(rec["rss_bytes"]), 0)
        quiet = self.hub(args=["--report-interval", "0"])
        time.sleep(t(1.0))
        self.assertNotIn('msg=report', quiet.log())

    def test_sighup_applies_a_changed_rule_while_a_subscriber_stays(self):
        hub = self.alert_hub(rule("hot", metric="cpu", source="*", op=">", threshold=90) +
                             rule("gone_soon", metric="cpu", source="*", op=">", threshold=10) +
                             rule("steady", metric="cpu", source="*", op=">", threshold=20))
        ws = RawWS(hub.port, path="/ws?topics=alerts,metrics")
        try:
            self.assertEqual(ws.recv_json()["type"], "metrics:update")
            self.push(hub, "robot_1", cpu=70)
            fired = set()
            while len(fired) < 2:
                m = ws.recv_json(timeout=5)
                if m["type"] == "event":
                    fired.add(m["data"]["payload"]["rule"])
            self.assertEqual(fired, {"gone_soon", "steady"})
            steady_since = [a for a in self.alerts(hub)["active"] if a["rule"] == "steady"][0]["since"]

            with open(hub.config_path, "w") as f:  # hot: 90 -> 50; gone_soon removed
                f.write(rule("hot", metric="cpu", source="*", op=">", threshold=50) +
                        rule("steady", metric="cpu", source="*", op=">", threshold=20) +
                        rule("new_one", metric="cpu", source="*", op="<", threshold=0))
            hub.send_signal(signal.SIGHUP)
            got = {}
            deadline = time.monotonic() + t(10)
            while len(got) < 2 and time.monotonic() < deadline:
                m = ws.recv_json(timeout=5)
                self.assertNotEqual(m.get("type"), "close")
                if m["type"] == "event":
                    got[m["data"]["payload"]["rule"]] = m["data"]["type"]
            self.assertEqual(got, {"hot": "alert.firing", "gone_soon": "alert.resolved"})
            log = wait_for(lambda: (lambda s: s if 'msg="reload requested"' in s else None)(hub.log()),
                           timeout=5, desc="reload summary")
            self.assertIn('msg="reload: alert rules applied" rules=3 added=1 changed=1 removed=1 '
                          'kept=1', log)
            self.assertIn("changed=0 applied=3 failed=0", log)
            doc = self.alerts(hub)
            steady = [a for a in doc["active"] if a["rule"] == "steady"][0]
            self.assertEqual(steady["since"], steady_since, "an unchanged rule keeps its state")

            # a bad file keeps the running rules and says why
            with open(hub.config_path, "w") as f:
                f.write(rule("hot", metric="cpu", source="*", op="~", threshold=50))
            hub.send_signal(signal.SIGHUP)
            wait_for(lambda: "failed=1" in hub.log(), timeout=5, desc="failed reload logged")
            self.assertIn('msg="reload: alert rules invalid, keeping the running ones" '
                          'error="config %s: [alert.hot] op: \\"~\\" is not an operator'
                          % hub.config_path, hub.log())
            self.assertEqual([r["name"] for r in self.alerts(hub)["rules"]],
                             ["hot", "steady", "new_one"])
            # the subscriber is still there, still getting ticks
            for _ in range(50):
                m = ws.recv_json(timeout=5)
                if m["type"] == "metrics:update":
                    break
            else:
                self.fail("no metrics:update after the reloads")
        finally:
            ws.close()
        self.assertTrue(hub.alive())


if __name__ == "__main__":
    main()
