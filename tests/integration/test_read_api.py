#!/usr/bin/python3
"""JSON read paths: GET /api/v1/metrics (filters, shapes, per-kind fields, counter rate,
set cardinality), GET /api/v1/series/{name} (history window, timer columns, errors),
GET /api/v1/summary, HEAD on the GET endpoints, and the 1 s interval roll as seen
through them."""

import json
import math
import os
import re
import signal
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HubTestCase, SocketReader, main, prom_get, read_http_response,  # noqa: E402
                     t, wait_for)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TIMER_COLUMNS = ["t", "mean", "count", "sum", "min", "max", "p50", "p90", "p99"]
TIMER_FIELDS = ("count", "sum", "min", "max", "p50", "p90", "p99")


def post(h, body, ctype=None):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        ctype = ctype or "application/json"
    if isinstance(body, str):
        body = body.encode("utf-8")
    status, _hd, raw = h.request("POST", "/api/v1/ingest", body=body,
                                 headers={"Content-Type": ctype or "text/plain"})
    if status != 202:
        raise AssertionError("ingest answered %d: %r" % (status, raw))
    return json.loads(raw)


def metrics(h, **q):
    path = "/api/v1/metrics" + ("?" + urllib.parse.urlencode(q) if q else "")
    status, hdrs, doc = h.get_json(path)
    if status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, status, doc))
    return doc


def find(h, name, labels=None):
    for s in metrics(h, match=name)["series"]:
        if s["name"] == name and s["labels"] == (labels or {}):
            return s
    return None


def wait_find(h, name, pred, desc, timeout=5.0, interval=0.03):
    """Poll find(h, name) until pred(series); the failure message lists what was seen."""
    seen = []

    def probe():
        s = find(h, name)
        if s is not None:
            key = {k: s.get(k) for k in ("value", "rate", "count")}
            if not seen or seen[-1][1] != key:
                seen.append((round(time.time(), 3), key))
        return s if s is not None and pred(s) else None

    try:
        return wait_for(probe, timeout=timeout, interval=interval)
    except AssertionError:
        raise AssertionError("%s: not seen within %.1fs; (unix time, fields) seen: %r"
                             % (desc, t(timeout), seen[-12:])) from None


def history(h, name, **q):
    path = "/api/v1/series/%s" % urllib.parse.quote(name, safe="")
    if q:
        path += "?" + urllib.parse.urlencode(q)
    return h.get_json(path)


def past_next_second(margin=0.15):
    now = time.time()
    time.sleep(math.floor(now) + 1 - now + margin)


def parse_iso(s):
    return time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + \
        float(s[19:-1] or 0)


class TestMetricsList(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()
        post(self.h, {"samples": [
            {"name": "cpu_usage", "value": 1, "labels": {"source": "robot_001"}},
            {"name": "cpu_usage", "value": 2, "labels": {"source": "robot_002"}},
            {"name": "cpu_temp", "value": 3, "labels": {"source": "robot_001", "zone": "a"}},
            {"name": "mem_used", "value": 4, "labels": {"source": "cam_1"}},
            {"name": "cpu_usage", "value": 5},
            {"name": "disk_io", "kind": "counter", "value": 6, "labels": {"dev": "sda"}},
        ]})

    def keyset(self, doc):
        self.assertEqual(doc["count"], len(doc["series"]), doc)
        return sorted((s["name"], s["labels"].get("source", "")) for s in doc["series"])

    def test_filters(self):
        h = self.h
        cases = [
            ({}, [("cpu_temp", "robot_001"), ("cpu_usage", ""), ("cpu_usage", "robot_001"),
                  ("cpu_usage", "robot_002"), ("disk_io", ""), ("mem_used", "cam_1")]),
            ({"match": "cpu*"}, [("cpu_temp", "robot_001"), ("cpu_usage", ""),
                                 ("cpu_usage", "robot_001"), ("cpu_usage", "robot_002")]),
            ({"match": "cpu_usage"}, [("cpu_usage", ""), ("cpu_usage", "robot_001"),
                                      ("cpu_usage", "robot_002")]),
            ({"match": "mem_use?"}, [("mem_used", "cam_1")]),
            ({"match": "*_u*"}, [("cpu_usage", ""), ("cpu_usage", "robot_001"),
                                 ("cpu_usage", "robot_002"), ("mem_used", "cam_1")]),
            ({"source": "robot_*"}, [("cpu_temp", "robot_001"), ("cpu_usage", "robot_001"),
                                     ("cpu_usage", "robot_002")]),
            ({"source": "robot_001"}, [("cpu_temp", "robot_001"), ("cpu_usage", "robot_001")]),
            ({"match": "cpu_usage", "source": "robot_00?"}, [("cpu_usage", "robot_001"),
                                                             ("cpu_usage", "robot_002")]),
            ({"match": "cpu_usage", "source": "robot_002"}, [("cpu_usage", "robot_002")]),
            ({"match": "mem*", "source": "robot_*"}, []),
            ({"match": "nothing_here*"}, []),
            ({"source": "nobody"}, []),
            ({"match": "cpu"}, []),  # a glob matches the whole name
        ]
        for q, want in cases:
            with self.subTest(q=q):
                doc = metrics(h, **q)
                self.assertEqual(self.keyset(doc), sorted(want), doc)
                if not want:
                    self.assertEqual(doc["series"], [])
                    self.assertEqual(doc["count"], 0)

    def test_shape(self):
        h = self.h
        status, hdrs, raw = h.get("/api/v1/metrics")
        self.assertEqual(status, 200)
        self.assertIn("application/json", hdrs.get("Content-Type", ""))
        doc = json.loads(raw)
        self.assertEqual(set(doc) >= {"series", "count", "timestamp"}, True, doc.keys())
        self.assertIsInstance(doc["series"], list)
        now = time.time()
        for s in doc["series"]:
            with self.subTest(series=s):
                for k in ("name", "labels", "kind", "value", "updated_at"):
                    self.assertIn(k, s)
                self.assertIsInstance(s["name"], str)
                self.assertIsInstance(s["labels"], dict)
                for k, v in s["labels"].items():
                    self.assertIsInstance(v, str)
                self.assertIn(s["kind"], ("counter", "gauge", "timer", "set"))
                self.assertIsInstance(s["value"], (int, float))
                self.assertRegex(s["updated_at"], ISO_MS)
                self.assertLess(abs(parse_iso(s["updated_at"]) - now), 30, s["updated_at"])
        ts = doc["timestamp"]
        if isinstance(ts, str):
            self.assertRegex(ts, ISO_MS)
        else:
            self.assertLess(abs(ts - now), 30)
        s = find(h, "cpu_temp", {"source": "robot_001", "zone": "a"})
        self.assertEqual((s["kind"], s["value"]), ("gauge", 3))
        s = find(h, "disk_io", {"dev": "sda"})
        self.assertEqual((s["kind"], s["value"]), ("counter", 6))
        self.assertIn("rate", s)

    def test_invalid_utf8_label_value_keeps_json_valid(self):
        # a StatsD tag value that is not UTF-8 must not make the JSON answer invalid
        h = self.hub(statsd=True)
        h.send_statsd(b"u8_bad:1|g|#k:a\xffb\nu8_ok:1|g")
        wait_for(lambda: h.get("/api/v1/metrics?match=u8_ok")[2].find(b"u8_ok") >= 0,
                 desc="udp samples landed")
        status, _hd, raw = h.get("/api/v1/metrics")
        self.assertEqual(status, 200)
        try:
            json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self.fail("/api/v1/metrics is not valid UTF-8 JSON (%s): %r" % (e, raw[:300]))

    def test_updated_at_moves(self):
        h = self.h
        before = find(h, "cpu_usage")["updated_at"]
        time.sleep(0.05)
        post(h, "cpu_usage:9|g")
        s = find(h, "cpu_usage")
        self.assertEqual(s["value"], 9)
        self.assertGreater(parse_iso(s["updated_at"]), parse_iso(before))


class TestPerKindValues(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub(statsd=True)

    def test_counter_rate_then_zero_after_idle(self):
        h = self.h
        past_next_second()
        h.send_statsd(b"rq:3|c\nrq:4|c")
        s = wait_find(h, "rq", lambda s: s.get("rate") == 7, "rate 7")
        self.assertEqual((s["kind"], s["value"]), ("counter", 7))
        s = wait_find(h, "rq", lambda s: s.get("rate") == 0, "rate back to 0 after idle")
        self.assertEqual(s["value"], 7)

    def test_timer_fields(self):
        h = self.h
        past_next_second()
        post(h, "lat:5:15|ms\nlat:10|h\nlat:30|d")
        s = wait_find(h, "lat", lambda s: s.get("count") == 4, "timer stats")
        self.assertEqual(s["kind"], "timer")
        for f in TIMER_FIELDS:
            self.assertIn(f, s)
        self.assertEqual((s["count"], s["sum"], s["min"], s["max"]), (4, 60, 5, 30))
        self.assertAlmostEqual(s["value"], 15.0)
        for q in ("p50", "p90", "p99"):
            self.assertTrue(any(abs(s[q] - v) <= 0.01 * v for v in (5, 10, 15, 30)), (q, s))
        self.assertLessEqual(s["min"], s["p50"])
        self.assertLessEqual(s["p50"], s["p90"])
        self.assertLessEqual(s["p90"], s["p99"])
        self.assertLessEqual(s["p99"], s["max"])
        # the stats stay those of the last interval that had samples
        time.sleep(1.3)
        s = find(h, "lat")
        self.assertEqual((s["count"], s["sum"]), (4, 60))
        # a new interval replaces them
        post(h, "lat:100|ms")
        wait_for(lambda: find(h, "lat")["count"] == 1, timeout=5, desc="next interval")
        s = find(h, "lat")
        self.assertEqual((s["sum"], s["min"], s["max"], s["value"]), (100, 100, 100, 100))

    def test_set_cardinality_per_interval(self):
        h = self.h
        past_next_second()
        post(h, "users:alice|s\nusers:bob|s\nusers:alice|s\nusers:carol|s")
        s = wait_find(h, "users", lambda s: s["value"] == 3, "3 distinct")
        self.assertEqual(s["kind"], "set")
        # the next interval counts afresh
        past_next_second(0.3)
        post(h, "users:alice|s\nusers:dave|s")
        wait_find(h, "users", lambda s: s["value"] == 2, "2 distinct in the next interval")

    def test_gauge_value(self):
        post(self.h, "temp:20|g\ntemp:+2.5|g")
        s = find(self.h, "temp")
        self.assertEqual((s["kind"], s["value"]), ("gauge", 22.5))
        self.assertNotIn("rate", s)


class TestIntervalRoll(HubTestCase):
    """Per-interval values must be visible for the whole next second, and every second
    with data must be stored once, under its own timestamp."""

    def test_first_interval_after_start(self):
        started = time.time()
        h = self.hub(statsd=True)
        h.send_statsd(b"early:2|c")  # before the hub's first 1 s roll
        # (request start, answer, rate) readings: the daemon answered with that rate at
        # some moment between the two times
        seen = []
        deadline = time.monotonic() + t(4)
        while time.monotonic() < deadline:
            a = time.time()
            s = find(h, "early")
            seen.append((a, time.time(), s.get("rate") if s else None))
            time.sleep(0.02)
        shown = [i for i, x in enumerate(seen) if x[2] == 2]
        self.assertTrue(shown, "rate 2 never shown for the first interval: %r"
                        % [(round(a, 2), r) for a, _b, r in seen])
        # it stays for the whole next second: the readings just outside the run that showed
        # it bracket how long it could have been visible; under 0.5 s proves it went early
        # (a busy machine only spaces the readings out, which widens the bracket)
        first, last = shown[0], shown[-1]
        self.assertEqual([x[2] for x in seen[first:last + 1]], [2] * (last - first + 1),
                         "rate of the first interval not shown in one run: %r"
                         % [(round(a, 2), r) for a, _b, r in seen])
        before = seen[first - 1][0] if first > 0 else started
        after = seen[last + 1][1] if last + 1 < len(seen) else time.time()
        self.assertGreater(after - before, 0.5,
                           "rate of the first interval shown for less than %.3fs (%r)"
                           % (after - before, [(round(a, 2), r) for a, _b, r in seen]))
        status, _hd, doc = history(h, "early")
        self.assertEqual(status, 200, doc)
        pts = doc["series"][0]["points"]
        self.assertEqual(len(pts), 1, pts)
        self.assertGreaterEqual(pts[0][0], math.floor(started),
                                "point stamped %d, before the hub started (%.3f)"
                                % (pts[0][0], started))

    def test_steady_stream_rate_never_zero_and_history_complete(self):
        h = self.hub()
        past_next_second()
        t_end = time.time() + 5.0
        posts, readings = [], []  # (request start, answer[, value / rate])
        while time.time() < t_end:
            a = time.time()
            post(h, "steady:1|c\nsteady_g:%d|g" % int(a))
            posts.append((a, time.time(), int(a)))
            a = time.time()
            s = find(h, "steady")
            if s:
                readings.append((a, time.time(), s["rate"]))
            time.sleep(0.05)
        # a second surely has data when a post was sent and answered within it (the daemon
        # stamps a sample with the second it applied it in, between the two)
        sure = {math.floor(a) for a, b, _v in posts if math.floor(a) == math.floor(b)}
        # a reading at x shows the interval closed last: the second before x's, or the
        # one before that until the roll at x's boundary has run. Only readings whose
        # candidates all surely had data must be non-zero: a test process stalled for a
        # second sends nothing in it, and that second's rate is rightly 0
        checked, zero = 0, []
        for a, b, rate in readings:
            cands = set(range(math.floor(a) - 2, math.floor(b)))
            if cands <= sure:
                checked += 1
                if rate == 0:
                    zero.append((round(a, 3), round(b, 3)))
        self.assertFalse(zero, "rate read 0 while data flowed every 50 ms: %r of %d readings"
                         % (zero[:10], checked))
        self.assertGreater(checked, 3, "too few readings with data around them: %d of %d"
                           % (checked, len(readings)))
        status, _hd, doc = history(h, "steady_g", window=60)
        self.assertEqual(status, 200, doc)
        pts = doc["series"][0]["points"]
        ts = [p[0] for p in pts]
        self.assertEqual(ts, sorted(set(ts)), "timestamps not unique/increasing: %r" % pts)
        # every whole second with data is stored (the last one may still be open)
        missing = sorted(x for x in sure if x not in ts and x < max(sure))
        self.assertFalse(missing, "seconds with data but no point: %r; points %r"
                         % (missing, pts))
        for p in pts:  # the gauge holds a value posted while that second could have run
            could = [v for a, b, v in posts if math.floor(a) <= p[0] <= math.floor(b)]
            self.assertIn(p[1], could, "point %r carries a value sent in another second: "
                          "points %r" % (p, pts))

    def test_stalled_hub_keeps_each_second(self):
        """A hub that does not run across second boundaries (SIGSTOP here, a loaded
        machine in life) stamps what it had with the second it arrived in, not the one
        it wakes in; the idle second after it reads 0."""
        h = self.hub()
        exercised = 0
        for attempt in range(5):
            past_next_second(0.1)
            a = time.time()
            post(h, "stall_g:%d|g\nstall_c:3|c" % attempt)
            b = time.time()
            k = math.floor(a)
            if math.floor(b) != k or b > k + 0.8:
                continue  # answered too late to stop the hub before the boundary
            h.send_signal(signal.SIGSTOP)
            try:
                if time.time() < k + 0.98:
                    exercised += 1
                time.sleep(max(0.0, k + 2.5 - time.time()))  # two boundaries pass
            finally:
                h.send_signal(signal.SIGCONT)

            def stored():
                st, _hd, doc = history(h, "stall_g", window=60)
                pts = doc["series"][0]["points"] if st == 200 and doc["series"] else []
                return [p for p in pts if p[1] == attempt]
            got = wait_for(stored, timeout=5, desc="the stalled second's gauge point")
            self.assertEqual(got, [[k, attempt]], "sent in second %d" % k)
            st, _hd, doc = history(h, "stall_c", window=60)
            self.assertEqual(st, 200, doc)
            self.assertIn([k, 3], doc["series"][0]["points"], "sent in second %d" % k)
            self.assertNotIn(k + 1, [p[0] for p in doc["series"][0]["points"]])
            # the first idle second is closed as well: the rate reads 0, not 3 again
            wait_find(h, "stall_c", lambda s: s["rate"] == 0, "stall_c rate 0 once idle")
            if exercised >= 2:
                break
        self.assertGreaterEqual(exercised, 1, "the hub was never stopped before a boundary")


class TestSeriesHistory(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def test_shape_default_window_and_source(self):
        h = self.h
        post(h, {"samples": [
            {"name": "hcpu", "value": 10, "labels": {"source": "r1"}},
            {"name": "hcpu", "value": 20, "labels": {"source": "r2"}}]})
        status, hdrs, doc = wait_for(
            lambda: (lambda r: r if r[0] == 200 and all(x["points"] for x in r[2]["series"])
                     else None)(history(h, "hcpu")), timeout=5, desc="history of hcpu")
        self.assertIn("application/json", hdrs.get("Content-Type", ""))
        for k in ("name", "kind", "from", "to", "resolution_seconds", "series"):
            self.assertIn(k, doc)
        self.assertEqual((doc["name"], doc["kind"], doc["resolution_seconds"]),
                         ("hcpu", "gauge", 1))
        self.assertAlmostEqual(doc["to"] - doc["from"], 300, delta=1)
        self.assertLess(abs(doc["to"] - time.time()), 5)
        self.assertEqual(sorted(s["labels"]["source"] for s in doc["series"]), ["r1", "r2"])
        for s in doc["series"]:
            for p in s["points"]:
                self.assertEqual(len(p), 2, p)
                self.assertTrue(doc["from"] <= p[0] <= doc["to"], (p, doc["from"], doc["to"]))
            want = 10 if s["labels"]["source"] == "r1" else 20
            self.assertEqual(s["points"][-1][1], want)
        status, _hd, doc = history(h, "hcpu", source="r2")
        self.assertEqual(status, 200, doc)
        self.assertEqual([s["labels"] for s in doc["series"]], [{"source": "r2"}])

    def test_timer_columns(self):
        h = self.h
        post(h, "hlat:1:2:3:4|ms")
        status, _hd, doc = wait_for(
            lambda: (lambda r: r if r[0] == 200 and r[2]["series"]
                     and r[2]["series"][0]["points"] else None)(history(h, "hlat")),
            timeout=5, desc="timer history")
        self.assertEqual(doc["kind"], "timer")
        self.assertEqual(doc.get("columns"), TIMER_COLUMNS)
        (p,) = doc["series"][0]["points"]
        self.assertEqual(len(p), len(TIMER_COLUMNS), p)
        row = dict(zip(TIMER_COLUMNS, p))
        self.assertEqual((row["mean"], row["count"], row["sum"], row["min"], row["max"]),
                         (2.5, 4, 10, 1, 4))
        for q in ("p50", "p90", "p99"):
            self.assertTrue(any(abs(row[q] - v) <= 0.01 * v for v in (1, 2, 3, 4)), row)

    def test_only_seconds_with_data_and_window(self):
        h = self.h
        past_next_second(0.2)
        t_a = time.time()
        post(h, "hw:1|g")
        time.sleep(max(0.0, math.floor(t_a) + 3.3 - time.time()))  # skip two seconds
        t_b = time.time()
        post(h, "hw:2|g")
        status, _hd, doc = wait_for(
            lambda: (lambda r: r if r[0] == 200 and len(r[2]["series"][0]["points"]) >= 2
                     else None)(history(h, "hw")), timeout=5, desc="two points")
        pts = doc["series"][0]["points"]
        self.assertEqual([p[1] for p in pts], [1, 2], pts)
        self.assertEqual([p[0] for p in pts], [math.floor(t_a), math.floor(t_b)], pts)
        # a window that covers only the second point
        now = time.time()
        win = math.ceil(now - t_b) + 1
        if now - win > t_a + 0.5:
            status, _hd, doc = history(h, "hw", window=win)
            self.assertEqual(status, 200, doc)
            self.assertEqual([p[1] for p in doc["series"][0]["points"]], [2], (win, doc))
            self.assertAlmostEqual(doc["to"] - doc["from"], win, delta=1)

    def test_errors(self):
        h = self.h
        post(h, "herr:1|g")
        cases = [("/api/v1/series/no_such_series", 404),
                 ("/api/v1/series/", 404),
                 # rollups come from the store: none yet for a series a second old
                 ("/api/v1/series/herr?step=60", 404),
                 ("/api/v1/series/herr?step=3600&window=60", 404),
                 ("/api/v1/series/herr?step=30", 400),
                 ("/api/v1/series/herr?window=abc", 400),
                 ("/api/v1/series/herr?window=-5", 400),
                 ("/api/v1/series/herr?window=1x", 400),
                 ("/api/v1/series/herr?window=nan", 400),
                 ("/api/v1/series/herr?window=inf", 400),
                 ("/api/v1/series/herr?window=", 400)]
        for path, want in cases:
            with self.subTest(path=path):
                status, hdrs, raw = h.get(path)
                self.assertEqual(status, want, raw)
                self.assertJsonError(raw, hdrs.get("Content-Type", ""), status)
        status, _hd, _raw = h.get("/api/v1/series/herr?window=60")
        self.assertEqual(status, 200)


class TestSummary(HubTestCase):
    def test_fields(self):
        h = self.hub(statsd=True)
        post(h, "sm_a:1|c\nsm_b:1|g\nsm_bad:x|c")
        h.send_statsd(b"sm_u:1|c")
        wait_for(lambda: find(h, "sm_u"), desc="udp sample")
        status, hdrs, doc = h.get_json("/api/v1/summary")
        self.assertEqual(status, 200)
        self.assertIn("application/json", hdrs.get("Content-Type", ""))
        top = ("uptime_seconds", "ingest", "drops", "connections", "ws_connections",
               "subscribers", "sources_online", "events_total", "cpu_percent", "rss_bytes",
               "open_fds", "loop_lag_seconds", "timestamp")
        for k in top:
            self.assertIn(k, doc)
        for k in ("lines_total", "lines_by_transport", "lines_per_second", "rejected_total",
                  "rejected_per_second", "datagrams_total", "series"):
            self.assertIn(k, doc["ingest"])
        for k in ("ingest_total", "ingest_per_second", "ws_total"):
            self.assertIn(k, doc["drops"])
        ing = doc["ingest"]
        self.assertEqual(ing["lines_by_transport"].get("udp"), 1)
        self.assertEqual(ing["lines_by_transport"].get("http"), 2)
        self.assertEqual(ing["lines_total"], sum(ing["lines_by_transport"].values()))
        self.assertEqual(ing["rejected_total"], 1)
        self.assertEqual(ing["datagrams_total"], 1)
        self.assertEqual(ing["series"], 3)
        self.assertEqual(ing["series"], metrics(h)["count"])
        p = h.prom()
        self.assertEqual(ing["series"], prom_get(p, "metricast_series"))
        self.assertGreater(doc["rss_bytes"], 1 << 20)
        self.assertGreater(doc["open_fds"], 3)
        self.assertGreaterEqual(doc["connections"], 1)
        self.assertGreater(doc["uptime_seconds"], 0)
        self.assertGreaterEqual(doc["cpu_percent"], 0)
        self.assertGreaterEqual(doc["loop_lag_seconds"], 0)
        self.assertEqual(doc["drops"]["ingest_total"], 0)
        ts = doc["timestamp"]
        if isinstance(ts, str):
            self.assertRegex(ts, ISO_MS)
        time.sleep(0.3)
        self.assertGreater(h.get_json("/api/v1/summary")[2]["uptime_seconds"],
                           doc["uptime_seconds"])

    def test_rates_while_sending(self):
        h = self.hub(statsd=True)
        t_end = time.time() + 3.5
        best_lines, best_rej, readings = 0, 0, []
        while time.time() < t_end:
            h.send_statsd(b"\n".join([b"sr:1|c"] * 20 + [b"sr_bad:x|c"] * 2))
            post(h, "sr_h:1|c\nsr_h:1|c")
            doc = h.get_json("/api/v1/summary")[2]
            ing = doc["ingest"]
            readings.append((ing["lines_per_second"], ing["rejected_per_second"]))
            best_lines = max(best_lines, ing["lines_per_second"])
            best_rej = max(best_rej, ing["rejected_per_second"])
            time.sleep(0.05)
        self.assertGreater(best_lines, 0, readings)
        self.assertGreater(best_rej, 0, readings)
        # and back to 0 once idle
        wait_for(lambda: (lambda i: i["lines_per_second"] == 0 and i["rejected_per_second"] == 0)
                 (h.get_json("/api/v1/summary")[2]["ingest"]), timeout=6, desc="rates 0 when idle")


class TestHead(HubTestCase):
    def test_head_on_get_endpoints(self):
        h = self.hub()
        post(h, "hd:1|g")
        paths = ["/metrics", "/api/v1/metrics/prometheus", "/api/v1/metrics",
                 "/api/v1/metrics?match=hd", "/api/v1/summary", "/api/v1/series/hd",
                 "/api/v1/series/missing", "/api/v1/series/hd?step=60", "/health"]
        for path in paths:
            with self.subTest(path=path):
                g_status, g_hdrs, g_body = h.get(path)
                status, hdrs, body = h.request("HEAD", path)
                self.assertEqual(status, g_status)
                self.assertEqual(body, b"")
                self.assertEqual(hdrs.get("Content-Type"), g_hdrs.get("Content-Type"))
                # no body bytes on the wire: a request pipelined after HEAD is answered
                with h.raw_socket() as s:
                    s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
                    reader = SocketReader(s)
                    r1 = read_http_response(reader, 5.0, head=True)
                    r2 = read_http_response(reader, 5.0)
                self.assertEqual(r1.status, g_status)
                cl = r1.header("Content-Length")
                if cl is not None and path in ("/api/v1/series/missing",
                                               "/api/v1/series/hd?step=60"):
                    self.assertEqual(int(cl), len(g_body))
                self.assertEqual(r2.status, 200, r2)


if __name__ == "__main__":
    main()
