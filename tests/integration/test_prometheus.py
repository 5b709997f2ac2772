#!/usr/bin/python3
"""GET /metrics: Prometheus text format 0.0.4, checked by our own parser, by
`promtool check metrics`, and by a real Prometheus server scraping the hub."""

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, free_port, main, parse_prom_full,  # noqa: E402
                     prom_get, t, wait_for)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# label values that need escaping or are multi-byte UTF-8
TRICKY = {"q": 'say "hi"', "bs": "C:\\path\\x", "nl": "line1\nline2", "utf": "héllo → 世界 ✓",
          "all": 'a"b\\c\nd'}

HUB_FAMILIES = ["metricast_ingest_lines_total", "metricast_ingest_rejected_total",
                "metricast_ingest_dropped_total", "metricast_series",
                "metricast_sources_online", "metricast_ws_connections",
                "metricast_ws_subscribers", "metricast_ws_sent_total",
                "metricast_ws_dropped_total", "metricast_ws_queue_fill_ratio",
                "metricast_events_total", "metricast_loop_lag_seconds",
                "process_cpu_seconds_total", "process_resident_memory_bytes",
                "process_open_fds"]


def post(h, body, ctype="application/json"):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    status, _hd, raw = h.request("POST", "/api/v1/ingest", body=body,
                                 headers={"Content-Type": ctype})
    if status != 202:
        raise AssertionError("ingest answered %d: %r" % (status, raw))
    return json.loads(raw)


def ingest_mix(h):
    """Every kind, over HTTP (both JSON forms, StatsD text) and UDP when available."""
    samples = [
        {"name": "mix_requests", "kind": "counter", "value": 4, "labels": {"env": "prod"}},
        {"name": "mix_requests", "kind": "counter", "value": 3, "labels": {"env": "dev"}},
        {"name": "requests_total", "kind": "counter", "value": 9},
        {"name": "mix_temperature", "value": 42.5, "labels": TRICKY},
        {"name": "mix_timer", "kind": "timer", "value": 10},
        {"name": "mix_timer", "kind": "timer", "value": 20},
        {"name": "mix_timer", "kind": "timer", "value": 30},
        {"name": "mix_hist", "kind": "histogram", "value": 0.25, "labels": {"route": "/a"}},
        {"name": "mix_set", "kind": "set", "value": "u1"},
        {"name": "mix_set", "kind": "set", "value": "u2"},
        {"name": "mix.dotted-name", "value": 1, "labels": {"k.e-y": "v"}},
    ]
    doc = post(h, {"samples": samples})
    assert doc["accepted"] == len(samples), doc
    doc = post(h, {"source": "robot_001", "timestamp": time.time(),
                   "metrics": {"cpu_usage": 45.2, "battery_pct": 88}})
    assert doc["accepted"] == 2, doc
    doc = post(h, "mix_text:2|c|#host:a\nmix_text_g:-1|g\n", "text/plain")
    assert doc["accepted"] == 2, doc
    if h.statsd_port:
        h.send_statsd("mix_udp:5|c|#region:eu-west,tag:é\nmix_udp_latency:1:2:3|ms\n"
                      "mix_udp_users:a|s\nmix_udp_g:7|g".encode("utf-8"))
        wait_for(lambda: prom_get(h.prom(), "mix_udp_g") == 7, desc="udp samples in /metrics")


def family_of(name, meta):
    if name in meta:
        return name
    for suffix in ("_sum", "_count", "_bucket"):
        if name.endswith(suffix) and meta.get(name[:-len(suffix)], {}).get("type") in (
                "summary", "histogram"):
            return name[:-len(suffix)]
    return None


def promtool_check(text_bytes):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text_bytes,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


class TestExposition(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub(statsd=True)

    def get_metrics(self, path="/metrics"):
        status, hdrs, body = self.h.get(path)
        self.assertEqual(status, 200, body[:300])
        return hdrs, body

    def test_content_type_and_alias(self):
        ingest_mix(self.h)
        for path in ("/metrics", "/api/v1/metrics/prometheus"):
            with self.subTest(path=path):
                hdrs, body = self.get_metrics(path)
                self.assertEqual(hdrs.get("Content-Type"), CONTENT_TYPE)
                self.assertTrue(body.endswith(b"\n"), "exposition must end with a newline")
        _h, a = self.get_metrics("/metrics")
        _h, b = self.get_metrics("/api/v1/metrics/prometheus")
        fa = {k: v["type"] for k, v in parse_prom_full(a.decode())[1].items()}
        fb = {k: v["type"] for k, v in parse_prom_full(b.decode())[1].items()}
        self.assertEqual(fa, fb)

    def test_structure_help_type_grouping(self):
        ingest_mix(self.h)
        _hdrs, body = self.get_metrics()
        text = body.decode("utf-8")
        samples, meta = parse_prom_full(text)
        # every family has exactly one HELP and one TYPE, before its samples, and the
        # samples of a family are one contiguous group
        helps, types, order, seen_done = {}, {}, [], set()
        current = None
        for line in text.split("\n"):
            if line.startswith("# HELP "):
                fam = line.split()[2]
                helps[fam] = helps.get(fam, 0) + 1
            elif line.startswith("# TYPE "):
                fam = line.split()[2]
                types[fam] = types.get(fam, 0) + 1
            elif line and not line.startswith("#"):
                name = line.split("{")[0].split(" ")[0]
                fam = family_of(name, meta)
                self.assertIsNotNone(fam, "sample %r without # TYPE for its family" % line)
                self.assertIn(fam, helps, "sample %r before its # HELP" % line)
                self.assertIn(fam, types, "sample %r before its # TYPE" % line)
                if fam != current:
                    self.assertNotIn(fam, seen_done, "family %s is split in groups" % fam)
                    if current:
                        seen_done.add(current)
                    current = fam
                    order.append(fam)
        for fam, m in meta.items():
            self.assertEqual(helps.get(fam), 1, "HELP lines for %s" % fam)
            self.assertEqual(types.get(fam), 1, "TYPE lines for %s" % fam)
            self.assertTrue(m["help"], "empty HELP for %s" % fam)
            self.assertIn(m["type"], ("counter", "gauge", "summary", "histogram", "untyped"))
        # no sample name or label set twice
        keys = [(n, tuple(sorted(lb.items()))) for n, lb, _v in samples]
        dups = {k for k in keys if keys.count(k) > 1}
        self.assertFalse(dups, "duplicate samples: %r" % dups)
        for fam in HUB_FAMILIES:
            self.assertIn(fam, meta, "hub family %s missing" % fam)
        for fam, typ in (("metricast_ingest_lines_total", "counter"),
                         ("metricast_ingest_rejected_total", "counter"),
                         ("metricast_series", "gauge"),
                         ("process_cpu_seconds_total", "counter")):
            self.assertEqual(meta[fam]["type"], typ, fam)
        names = {n for n, _lb, _v in samples}
        for want in ('metricast_ingest_lines_total', 'metricast_ingest_rejected_total'):
            self.assertIn(want, names)
        lt = {lb.get("transport") for n, lb, _v in samples
              if n == "metricast_ingest_lines_total"}
        self.assertTrue({"udp", "http"} <= lt, lt)

    def test_kinds_mapping_and_values(self):
        h = self.h
        ingest_mix(h)
        _hdrs, body = self.get_metrics()
        samples, meta = parse_prom_full(body.decode("utf-8"))
        p = {(n, tuple(sorted(lb.items()))): v for n, lb, v in samples}
        # counters: _total added, not doubled
        self.assertEqual(meta["mix_requests_total"]["type"], "counter")
        self.assertEqual(prom_get(p, "mix_requests_total", env="prod"), 4)
        self.assertEqual(prom_get(p, "mix_requests_total", env="dev"), 3)
        self.assertEqual(meta["requests_total"]["type"], "counter")
        self.assertEqual(prom_get(p, "requests_total"), 9)
        self.assertNotIn("requests_total_total", meta)
        self.assertNotIn("mix_requests", meta)
        self.assertEqual(prom_get(p, "mix_text_total", host="a"), 2)
        self.assertEqual(prom_get(p, "mix_udp_total", region="eu-west", tag="é"), 5)
        # gauges, with the tricky label values round-tripping through the escaping
        self.assertEqual(meta["mix_temperature"]["type"], "gauge")
        self.assertEqual(prom_get(p, "mix_temperature", **TRICKY), 42.5)
        self.assertEqual(prom_get(p, "cpu_usage", source="robot_001"), 45.2)
        self.assertEqual(prom_get(p, "mix_text_g"), -1)
        self.assertEqual(prom_get(p, "mix_dotted_name", k_e_y="v"), 1)
        # sets: gauges
        self.assertEqual(meta["mix_set"]["type"], "gauge")
        self.assertEqual(meta["mix_udp_users"]["type"], "gauge")
        # timers / histograms: summaries with quantiles 0.5/0.9/0.99, _sum, _count
        for name, labels in (("mix_timer", {}), ("mix_hist", {"route": "/a"}),
                             ("mix_udp_latency", {})):
            self.assertEqual(meta[name]["type"], "summary", name)
            qs = sorted(lb["quantile"] for n, lb, _v in samples
                        if n == name and {k: v for k, v in lb.items() if k != "quantile"}
                        == labels)
            self.assertEqual(qs, ["0.5", "0.9", "0.99"], name)
            self.assertNotIn(name + "_sum", meta)
        self.assertEqual(prom_get(p, "mix_timer_sum"), 60)
        self.assertEqual(prom_get(p, "mix_timer_count"), 3)
        self.assertEqual(prom_get(p, "mix_hist_count", route="/a"), 1)
        self.assertEqual(prom_get(p, "mix_udp_latency_count"), 3)
        self.assertEqual(prom_get(p, "mix_udp_latency_sum"), 6)

    def test_summary_quantiles_and_cumulative_sum_count(self):
        h = self.h
        post(h, "cum_t:10:20:30|ms", "text/plain")
        # quantiles appear once the interval with the samples is closed
        def q_ok():
            p = h.prom()
            v = [prom_get(p, "cum_t", quantile=q) for q in ("0.5", "0.9", "0.99")]
            return all(x is not None and not math.isnan(x) for x in v) and (p, v)
        p, v = wait_for(q_ok, timeout=5, desc="summary quantiles")
        for x in v:
            self.assertTrue(any(abs(x - s) <= 0.01 * s for s in (10, 20, 30)), v)
        self.assertEqual((prom_get(p, "cum_t_count"), prom_get(p, "cum_t_sum")), (3, 60))
        time.sleep(1.1)  # a later interval
        post(h, "cum_t:100:200|ms", "text/plain")
        p = h.prom()
        self.assertEqual((prom_get(p, "cum_t_count"), prom_get(p, "cum_t_sum")), (5, 360),
                         "summary _count/_sum must be cumulative")
        # the quantiles follow the last interval with samples
        wait_for(lambda: (prom_get(h.prom(), "cum_t", quantile="0.5") or 0) >= 99,
                 timeout=5, desc="p50 of the later interval")

    def test_promtool_check_metrics_clean(self):
        ingest_mix(self.h)
        time.sleep(1.1)  # let an interval close: real quantiles, rates, set sizes
        _hdrs, body = self.get_metrics()
        code, out = promtool_check(body)
        self.assertEqual(code, 0, "promtool check metrics exited %d:\n%s\n--- exposition ---\n%s"
                         % (code, out, body.decode("utf-8", "replace")))
        # right after start (quantiles not computed yet) too
        h2 = self.hub()
        post(h2, "fresh_t:1|ms\nfresh_c:1|c\nfresh_users:a|s", "text/plain")
        _s, _hd, body2 = h2.get("/metrics")
        code, out = promtool_check(body2)
        self.assertEqual(code, 0, "promtool (fresh hub) exited %d:\n%s" % (code, out))

    def test_invalid_utf8_tag_value_keeps_exposition_valid(self):
        # a StatsD tag value with bytes that are not UTF-8 must not make /metrics
        # unparseable (Prometheus would then fail the whole scrape)
        h = self.h
        h.send_statsd(b"utf_ok:1|g\nutf_bad:1|g|#k:a\xffb\nutf_bad2:1|g|#k\xfe:x\xc3\nutf_ok2:2|g")
        wait_for(lambda: b"\nutf_ok2 2\n" in self.get_metrics()[1], desc="udp samples landed")
        _hdrs, body = self.get_metrics()
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = [ln for ln in body.split(b"\n") if b"utf_bad" in ln]
            self.fail("/metrics is not valid UTF-8 (%s): %r" % (e, bad))
        code, out = promtool_check(body)
        self.assertEqual(code, 0, "promtool: %s" % out)

    def test_names_colliding_after_suffixes_keep_exposition_valid(self):
        # counter `dup` is exposed as dup_total; a counter literally named dup_total
        # must not produce a second dup_total family (same for a gauge named like a
        # counter's exposed name, or like a summary's _sum/_count)
        h = self.h
        post(h, "dup:1|c\ndup_total:2|c\ngt_total:1|g\ngt:1|c\ntm:1|ms\ntm_sum:5|g",
             "text/plain")
        _hdrs, body = self.get_metrics()
        text = body.decode("utf-8")
        fams = [ln.split()[2] for ln in text.split("\n") if ln.startswith("# TYPE ")]
        dup = sorted({f for f in fams if fams.count(f) > 1})
        code, out = promtool_check(body)
        # exit 3 is allowed here: names such as gt_total (a gauge) are lint warnings of
        # this test's own making; exit 1 is a parse error of the exposition
        self.assertEqual(dup, [], "families declared twice; promtool: %s" % out.strip())
        self.assertIn(code, (0, 3), "promtool: %s" % out.strip())
        self.assertNotIn("parsing error", out)
        parse_prom_full(text)

    def test_head_metrics(self):
        status, hdrs, body = self.h.request("HEAD", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")
        self.assertEqual(hdrs.get("Content-Type"), CONTENT_TYPE)


# ---------------------------------------------------------------------------------------
# a real Prometheus server scraping the hub
# ---------------------------------------------------------------------------------------
class TestRealPrometheus(HubTestCase):
    def setUp(self):
        super().setUp()
        self.prom_proc = None
        self.prom_dir = tempfile.mkdtemp(prefix="mc-prom-")
        self.prom_log = None

    def tearDown(self):
        try:
            self._stop_prometheus()
        finally:
            if self._test_failed() and self.prom_log and os.path.exists(self.prom_log):
                with open(self.prom_log, "rb") as f:
                    sys.stderr.write("\n----- prometheus log (tail) -----\n%s\n"
                                     % f.read()[-4000:].decode("utf-8", "replace"))
            shutil.rmtree(self.prom_dir, ignore_errors=True)
            super().tearDown()

    def _stop_prometheus(self):
        p = self.prom_proc
        self.prom_proc = None
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def _start_prometheus(self, hub_port):
        cfg = os.path.join(self.prom_dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: metricast\n"
                    "    metrics_path: /metrics\n"
                    "    static_configs:\n"
                    "      - targets: ['%s:%d']\n" % (HOST, hub_port))
        self.prom_log = os.path.join(self.prom_dir, "prometheus.log")
        for attempt in range(3):  # the free port may be taken in between: retry
            port = free_port()
            tsdb = os.path.join(self.prom_dir, "tsdb%d" % attempt)
            logf = open(self.prom_log, "ab")
            try:
                self.prom_proc = subprocess.Popen(
                    [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + tsdb,
                     "--web.listen-address=%s:%d" % (HOST, port), "--log.level=info",
                     "--storage.tsdb.retention.time=1h"],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                    start_new_session=True)
            finally:
                logf.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.prom_proc.poll() is None:
                try:
                    with urllib.request.urlopen("http://%s:%d/-/ready" % (HOST, port),
                                                timeout=2) as r:
                        if r.status == 200:
                            return port
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.2)
            self._stop_prometheus()
        self.fail("prometheus did not become ready (see its log)")

    def query(self, port, expr):
        url = "http://%s:%d/api/v1/query?%s" % (HOST, port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.loads(r.read())
        if doc.get("status") != "success":
            raise AssertionError("query %r: %r" % (expr, doc))
        return doc["data"]["result"]

    @unittest.skipUnless(os.access(PROMETHEUS, os.X_OK), "prometheus not installed")
    def test_scraped_by_prometheus(self):
        h = self.hub(statsd=True)
        ingest_mix(h)
        post(h, {"samples": [{"name": "xyz", "kind": "counter", "value": 7},
                             {"name": "known_gauge", "value": 123.25,
                              "labels": {"site": "lab"}}]})
        port = self._start_prometheus(h.port)
        # bounded wait for a successful scrape of the hub
        deadline = time.monotonic() + 40
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.query(port, 'up{job="metricast"}')
                if last and last[0]["value"][1] == "1":
                    break
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = repr(e)
            time.sleep(0.5)
        else:
            targets = None
            with contextlib.suppress(Exception):
                with urllib.request.urlopen("http://%s:%d/api/v1/targets" % (HOST, port),
                                            timeout=5) as r:
                    targets = r.read().decode()[:2000]
            self.fail("up{job=metricast} never 1 within 40 s: %r; targets: %s" % (last, targets))

        def value_of(expr):
            res = self.query(port, expr)
            return res
        res = wait_for(lambda: value_of('known_gauge{job="metricast"}'), timeout=10,
                       desc="known_gauge in prometheus")
        self.assertEqual(len(res), 1, res)
        self.assertEqual(float(res[0]["value"][1]), 123.25)
        self.assertEqual(res[0]["metric"].get("site"), "lab")
        res = value_of("xyz_total")
        self.assertEqual(len(res), 1, res)
        self.assertEqual(float(res[0]["value"][1]), 7)
        # the escaped label values arrive intact
        res = value_of("mix_temperature")
        self.assertEqual(len(res), 1, res)
        got = {k: v for k, v in res[0]["metric"].items() if k in TRICKY}
        self.assertEqual(got, TRICKY)
        res = value_of('mix_requests_total{env="prod"}')
        self.assertEqual(float(res[0]["value"][1]), 4)
        res = value_of("mix_timer_count")
        self.assertEqual(float(res[0]["value"][1]), 3)
        res = value_of('mix_timer{quantile="0.99"}')
        self.assertEqual(len(res), 1, res)
        # the hub's own series are scraped too
        res = value_of('metricast_ingest_lines_total{transport="http"}')
        self.assertGreaterEqual(float(res[0]["value"][1]), 1)
        # a counter increase shows up in a later scrape
        post(h, {"samples": [{"name": "xyz", "kind": "counter", "value": 5}]})
        wait_for(lambda: [r for r in value_of("xyz_total") if r["value"][1] == "12"],
                 timeout=10, interval=0.5, desc="xyz_total == 12 in prometheus")
        # no scrape failed along the way
        res = value_of('min_over_time(up{job="metricast"}[1m])')
        self.assertEqual(res[0]["value"][1], "1", res)


if __name__ == "__main__":
    main()
