#!/usr/bin/python3
"""Ingest paths: StatsD over real UDP datagrams (every kind, rates, gauge deltas, tags,
sanitising, multi-value, malformed lines by reason, registry refusals, series limit,
volume with exact totals, oversized datagrams) and POST /api/v1/ingest (StatsD text, the
two JSON forms, per-sample refusals, 400/413/405)."""

import json
import math
import os
import socket
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, main, prom_get, t, wait_for)  # noqa: E402

REASONS = ("bad_name", "no_value", "bad_value", "no_type", "bad_type", "bad_rate",
           "bad_tags", "too_long", "unsupported", "series_limit", "kind_conflict",
           "reserved_name")


# ---------------------------------------------------------------------------------------
# helpers shared by the test classes
# ---------------------------------------------------------------------------------------
def all_series(h, match=None, source=None):
    q = {}
    if match is not None:
        q["match"] = match
    if source is not None:
        q["source"] = source
    path = "/api/v1/metrics" + ("?" + urllib.parse.urlencode(q) if q else "")
    status, _hd, doc = h.get_json(path)
    if status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, status, doc))
    return doc["series"]


def find_series(h, name, labels=None):
    """The series `name` with exactly `labels` ({} by default), or None."""
    labels = labels or {}
    for s in all_series(h, match=name):
        if s["name"] == name and s["labels"] == labels:
            return s
    return None


def wait_series(h, name, labels=None, pred=None, timeout=5.0, desc=None):
    """Poll /api/v1/metrics until the series exists and pred(series) holds."""
    last = []
    seen = []  # (monotonic time, value, rate) whenever they change, for the failure message

    def probe():
        s = find_series(h, name, labels)
        last[:] = [s]
        if s is not None:
            key = (s.get("value"), s.get("rate"), s.get("count"))
            if not seen or seen[-1][1:] != key:
                seen.append((round(time.monotonic(), 2),) + key)
        return s if s is not None and (pred is None or pred(s)) else None

    try:
        return wait_for(probe, timeout=timeout, interval=0.05)
    except AssertionError:
        raise AssertionError("%s: series %s%r not as expected within %.1fs; last seen %r; "
                             "(t, value, rate, count) history %r"
                             % (desc or "wait", name, labels or {}, t(timeout),
                                last[0] if last else None, seen[-20:])) from None


def rejected(h):
    p = h.prom()
    return {r: prom_get(p, "metricast_ingest_rejected_total", reason=r) or 0.0
            for r in REASONS}


def lines_total(h, transport):
    return prom_get(h.prom(), "metricast_ingest_lines_total", transport=transport) or 0.0


def delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def post_ingest(h, body, ctype=None):
    headers = {"Content-Type": ctype} if ctype else {}
    if isinstance(body, str):
        body = body.encode("utf-8")
    return h.request("POST", "/api/v1/ingest", body=body, headers=headers)


def past_next_second(margin=0.15):
    """Sleep until just past the next wall-clock second boundary (the hub rolls its 1 s
    intervals there). Called right after a start, the hub's first roll is then behind us:
    tests of per-interval values (rate, set cardinality) use it so that they do not
    depend on start-up timing (test_read_api.py covers the first interval itself)."""
    now = time.time()
    time.sleep(math.floor(now) + 1 - now + margin)


class IngestCase(HubTestCase):
    def wait_rejected(self, h, before, want, timeout=5.0):
        """Wait until the rejected-by-reason deltas equal `want` exactly, then check they
        stay there (nothing counted twice)."""
        last = {}

        def probe():
            last.clear()
            last.update(delta(rejected(h), before))
            return last == want

        try:
            wait_for(probe, timeout=timeout)
        except AssertionError:
            self.fail("metricast_ingest_rejected_total deltas: want %r, got %r" % (want, last))
        time.sleep(0.3)
        self.assertEqual(delta(rejected(h), before), want, "rejections kept changing")

    def post_202(self, h, body, ctype=None):
        status, hdrs, raw = post_ingest(h, body, ctype)
        self.assertEqual(status, 202, raw)
        self.assertIn("application/json", hdrs.get("Content-Type", ""))
        doc = json.loads(raw)
        self.assertEqual(set(doc), {"accepted", "rejected", "rejected_by_reason"}, doc)
        self.assertEqual(doc["rejected"], sum(doc["rejected_by_reason"].values()), doc)
        return doc


# ---------------------------------------------------------------------------------------
# StatsD over UDP
# ---------------------------------------------------------------------------------------
class TestStatsdUdp(IngestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub(statsd=True)
        self.assertIsNotNone(self.h.statsd_port)

    def test_counter_total_sample_rate_and_rate(self):
        h = self.h
        past_next_second()
        h.send_statsd(b"cnt:5|c\ncnt:3|c|@0.5\ncnt:0.5|c")
        rates = []

        def seen(s):
            rates.append(s.get("rate"))
            return s["value"] == 11.5 and s.get("rate") == 11.5

        s = wait_series(h, "cnt", pred=seen, desc="counter total and rate")
        self.assertEqual(s["kind"], "counter")
        # one interval after the data stops the rate falls back to 0; the total stays
        s = wait_series(h, "cnt", pred=lambda s: s.get("rate") == 0, timeout=5.0,
                        desc="rate back to 0")
        self.assertEqual(s["value"], 11.5)
        for r in rates:
            self.assertIn(r, (0, 11.5), "unexpected intermediate rate %r" % rates)
        # a second burst adds to the total
        h.send_statsd(b"cnt:2|c|@0.25")
        wait_series(h, "cnt", pred=lambda s: s["value"] == 19.5 and s.get("rate") == 8,
                    desc="second burst")

    def test_negative_and_fractional_counter(self):
        self.h.send_statsd(b"cneg:10|c\ncneg:-2.5|c\ncneg:1e1|c")
        wait_series(self.h, "cneg", pred=lambda s: s["value"] == 17.5)

    def test_gauge_absolute_and_deltas(self):
        h = self.h
        h.send_statsd(b"gg:10|g")
        wait_series(h, "gg", pred=lambda s: s["value"] == 10)
        h.send_statsd(b"gg:+5|g")
        wait_series(h, "gg", pred=lambda s: s["value"] == 15)
        h.send_statsd(b"gg:-2.5|g")
        s = wait_series(h, "gg", pred=lambda s: s["value"] == 12.5)
        self.assertEqual(s["kind"], "gauge")
        # in one datagram, in order: absolute, delta, delta, absolute, delta
        h.send_statsd(b"gg2:100|g\ngg2:+1|g\ngg2:-11|g")
        wait_series(h, "gg2", pred=lambda s: s["value"] == 90)
        h.send_statsd(b"gg2:7|g\ngg2:+3|g")
        wait_series(h, "gg2", pred=lambda s: s["value"] == 10)
        # reaching a negative value needs 0 then a delta (a leading '-' is a delta)
        h.send_statsd(b"gg3:0|g\ngg3:-4|g")
        wait_series(h, "gg3", pred=lambda s: s["value"] == -4)
        # a gauge that is not updated keeps its value
        time.sleep(1.2)
        self.assertEqual(find_series(h, "gg")["value"], 12.5)

    def test_timer_kinds_and_multi_value(self):
        h = self.h
        h.send_statsd(b"tm:1:2:3|ms\ntm:4|h\ntm:10|d")
        s = wait_series(h, "tm", pred=lambda s: s.get("count") == 5, desc="timer")
        self.assertEqual(s["kind"], "timer")
        self.assertEqual((s["count"], s["sum"], s["min"], s["max"]), (5, 20, 1, 10), s)
        self.assertAlmostEqual(s["value"], 4.0, places=9)
        vals = [1, 2, 3, 4, 10]
        for q in ("p50", "p90", "p99"):
            self.assertTrue(any(abs(s[q] - v) <= 0.01 * v for v in vals),
                            "%s=%r is not within 1%% of a sample %r" % (q, s[q], vals))
        self.assertLessEqual(s["p50"], s["p90"])
        self.assertLessEqual(s["p90"], s["p99"])

    def test_timer_quantiles_many_samples(self):
        h = self.h
        vals = list(range(1, 201))  # 1..200 in lines of 50 values
        lines = ["tq:" + ":".join(str(v) for v in vals[i:i + 50]) + "|ms"
                 for i in range(0, 200, 50)]
        h.send_statsd("\n".join(lines))
        s = wait_series(h, "tq", pred=lambda s: s.get("count") == 200)
        self.assertEqual((s["sum"], s["min"], s["max"]), (sum(vals), 1, 200))
        self.assertAlmostEqual(s["value"], 100.5)
        for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            # a true sample within a couple of ranks of q, then 1 % relative error
            lo = vals[max(0, math.floor(q * 200) - 2)]
            hi = vals[min(199, math.ceil(q * 200) + 1)]
            self.assertGreaterEqual(s[key], lo * 0.99, "%s=%r" % (key, s[key]))
            self.assertLessEqual(s[key], hi * 1.01, "%s=%r" % (key, s[key]))

    def test_set_cardinality(self):
        h = self.h
        past_next_second()
        h.send_statsd(b"st:a|s\nst:b|s\nst:a|s\nst:c|s\nst:b|s\nst:\xc3\xa9|s")
        s = wait_series(h, "st", pred=lambda s: s["value"] == 4, desc="set of 4")
        self.assertEqual(s["kind"], "set")

    def test_tags_become_labels(self):
        h = self.h
        h.send_statsd(b"tg:1|c|#host:a,env:prod\ntg:2|c|#env:prod,host:a\ntg:5|c|#host:b")
        s = wait_series(h, "tg", {"host": "a", "env": "prod"}, pred=lambda s: s["value"] == 3)
        self.assertEqual(s["kind"], "counter")
        wait_series(h, "tg", {"host": "b"}, pred=lambda s: s["value"] == 5)
        # label names are sanitised like metric names; values are kept as sent
        h.send_statsd("tl:1|g|#my-key.x:v-1.2,9k:été".encode())
        wait_series(h, "tl", {"my_key_x": "v-1.2", "_9k": "été"}, pred=lambda s: s["value"] == 1)
        # the sample rate and the tags may come in either order
        h.send_statsd(b"to:1|c|#k:v|@0.5\nto:1|c|@0.5|#k:v")
        wait_series(h, "to", {"k": "v"}, pred=lambda s: s["value"] == 4)
        names = {s["name"] for s in all_series(h)}
        self.assertNotIn("tg_host", names)

    def test_name_sanitising(self):
        h = self.h
        before = rejected(h)
        h.send_statsd("my.metric-name:1|c\n9lives:2|g\nhé€llo:3|g\na b/c:4|g\n"
                      "my_metric_name:1|c\n日本:5|g".encode())
        wait_series(h, "my_metric_name", pred=lambda s: s["value"] == 2)
        wait_series(h, "_9lives", pred=lambda s: s["value"] == 2)
        wait_series(h, "h__llo", pred=lambda s: s["value"] == 3)  # é and € → one '_' each
        wait_series(h, "a_b_c", pred=lambda s: s["value"] == 4)
        wait_series(h, "__", pred=lambda s: s["value"] == 5)
        names = {s["name"] for s in all_series(h)}
        for raw in ("my.metric-name", "9lives", "hé€llo", "a b/c"):
            self.assertNotIn(raw, names)
        self.assertEqual(delta(rejected(h), before), {})

    def test_mixed_datagram_good_and_each_malformed_form(self):
        h = self.h
        before = rejected(h)
        udp_before = lines_total(h, "udp")
        good = [b"mx_c:1|c", b"mx_g:5|g", b"mx_t:2|ms", b"mx_s:m|s", b"mx_c:2|c|#a:b"]
        bad = {
            "bad_name": [b":1|c"],
            "no_value": [b"mx_nv|c", b"mx_nv2:|c", b"mx_nocolon"],
            "bad_value": [b"mx_bv:abc|c", b"mx_bv2:nan|g", b"mx_bv3:inf|ms", b"mx_bv4:1x|c"],
            "no_type": [b"mx_nt:1", b"mx_nt2:1|"],
            "bad_type": [b"mx_bt:1|x", b"mx_bt2:1|msec"],
            "bad_rate": [b"mx_br:1|c|@2", b"mx_br2:1|c|@x", b"mx_br3:1|c|@0"],
            "bad_tags": [b"mx_tg:1|c|#__name:x", b"mx_tg2:1|c|#,"],
            "too_long": [b"mx_" + b"L" * 5000 + b":1|c"],
            "unsupported": [b"_e{5,4}:title|text", b"_sc|svc|0"],
        }
        lines, bi = [], iter([b for v in bad.values() for b in v])
        for g in good:  # interleave: good, bad, bad, blank...
            lines.append(g)
            lines.extend(b for b in (next(bi, None), next(bi, None)) if b)
            lines.append(b"")
        lines.extend(bi)
        lines.extend([b"", b"\r", b"mx_g2:7|g\r"])  # blank and CR-only lines: not counted
        datagram = b"\n".join(lines) + b"\n"
        self.assertLess(len(datagram), 16000)
        h.send_statsd(datagram)
        want = {r: float(len(v)) for r, v in bad.items()}
        self.wait_rejected(h, before, want)
        wait_series(h, "mx_c", pred=lambda s: s["value"] == 1)
        wait_series(h, "mx_c", {"a": "b"}, pred=lambda s: s["value"] == 2)
        wait_series(h, "mx_g", pred=lambda s: s["value"] == 5)
        wait_series(h, "mx_g2", pred=lambda s: s["value"] == 7)
        wait_series(h, "mx_t", pred=lambda s: s.get("count") == 1)
        # (a set's value is the last closed interval's cardinality: by now maybe 0 again)
        wait_series(h, "mx_s", pred=lambda s: s["kind"] == "set")
        wait_for(lambda: lines_total(h, "udp") - udp_before == 6, desc="udp lines +6")
        names = {s["name"] for s in all_series(h)}
        for n in ("mx_nv", "mx_nv2", "mx_bv", "mx_bv2", "mx_bv3", "mx_bv4", "mx_nt", "mx_nt2",
                  "mx_bt", "mx_bt2", "mx_br", "mx_br2", "mx_br3", "mx_tg", "mx_tg2"):
            self.assertNotIn(n, names, "rejected line %s created a series" % n)
        self.assertTrue(h.alive())

    def test_kind_conflict(self):
        h = self.h
        h.send_statsd(b"kc:1|c")
        wait_series(h, "kc", pred=lambda s: s["value"] == 1)
        before = rejected(h)
        h.send_statsd(b"kc:2|g\nkc:3|ms\nkc:x|s")
        self.wait_rejected(h, before, {"kind_conflict": 3.0})
        s = find_series(h, "kc")
        self.assertEqual((s["kind"], s["value"]), ("counter", 1))
        # different labels are a different series, but the same metric name: still a conflict
        before = rejected(h)
        h.send_statsd(b"kc:2|g|#x:y")
        self.wait_rejected(h, before, {"kind_conflict": 1.0})
        self.assertIsNone(find_series(h, "kc", {"x": "y"}))
        # the counter keeps working
        h.send_statsd(b"kc:4|c")
        wait_series(h, "kc", pred=lambda s: s["value"] == 5)

    def test_reserved_name(self):
        h = self.h
        before = rejected(h)
        series_before = prom_get(h.prom(), "metricast_series")
        h.send_statsd(b"metricast_fake:1|c\nmetricast_series:99|g\nmetricast.sneaky:1|c\nok_rn:1|c")
        wait_series(h, "ok_rn")
        self.wait_rejected(h, before, {"reserved_name": 3.0})
        names = {s["name"] for s in all_series(h)}
        self.assertFalse([n for n in names if n.startswith("metricast")], names)
        p = h.prom()
        self.assertEqual(prom_get(p, "metricast_series"), series_before + 1)
        self.assertIsNone(prom_get(p, "metricast_fake_total"))

    def test_oversized_datagram_too_long(self):
        h = self.h
        before = rejected(h)
        udp_before = lines_total(h, "udp")
        big = b"ov:1|c\n" * 3000  # 21,000 bytes > 16 KiB
        self.assertGreater(len(big), 16 * 1024)
        h.send_statsd(big)
        h.send_statsd(b"ov_after:1|c")
        wait_series(h, "ov_after")
        self.wait_rejected(h, before, {"too_long": 1.0})
        self.assertIsNone(find_series(h, "ov"), "a truncated datagram was partly applied")
        self.assertEqual(lines_total(h, "udp") - udp_before, 1)
        # the largest datagram the contract allows (16 KiB exactly) is read whole
        exact = b"ok16:1|c\n" * 1819
        exact += b"ok16:1|c" + b"\n" * (16384 - len(exact) - 8)
        self.assertEqual(len(exact), 16384)
        h.send_statsd(exact)
        wait_series(h, "ok16", pred=lambda s: s["value"] == 1820, desc="16 KiB datagram")
        self.assertEqual(delta(rejected(h), before), {"too_long": 1.0})
        self.assertTrue(h.alive())

    def test_many_datagrams_exact_totals(self):
        h = self.h
        n_dgrams, per = 2000, 50
        p0 = h.prom()
        udp0 = prom_get(p0, "metricast_ingest_lines_total", transport="udp")
        dropped0 = {lb: v for (n, lb), v in p0.items() if n == "metricast_ingest_dropped_total"}
        st, _hd, summ0 = h.get_json("/api/v1/summary")
        dg0 = summ0["ingest"]["datagrams_total"]
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        want = {}
        timer_count = 0
        try:
            t0 = time.monotonic()
            for d in range(n_dgrams):
                lines = []
                for j in range(per):
                    if j % 5 == 4:
                        lines.append("bulk_t:%d|ms" % (d % 97 + j))
                        timer_count += 1
                    else:
                        name = "bulk_%d" % (j % 8)
                        v = 1 + (d + j) % 3
                        want[name] = want.get(name, 0) + v
                        lines.append("%s:%d|c|#src:s%d" % (name, v, d % 2))
                socks[d % 4].sendto("\n".join(lines).encode(), (HOST, h.statsd_port))
                if d % 20 == 19:
                    time.sleep(0.002)  # a modest pace: ~40k lines/s or less
            send_time = time.monotonic() - t0
        finally:
            for s in socks:
                s.close()
        total_lines = n_dgrams * per

        def done():
            p = h.prom()
            return (prom_get(p, "metricast_ingest_lines_total", transport="udp") - udp0
                    == total_lines) and p
        try:
            p = wait_for(done, timeout=15.0, interval=0.2, desc="all udp lines counted")
        except AssertionError:
            p = h.prom()
            self.fail("lines_total{udp} grew by %r, sent %d (send took %.2fs); dropped: %r"
                      % (prom_get(p, "metricast_ingest_lines_total", transport="udp") - udp0,
                         total_lines, send_time,
                         {lb: v for (n, lb), v in p.items()
                          if n == "metricast_ingest_dropped_total"}))
        for (n, lb), v in p.items():
            if n == "metricast_ingest_dropped_total":
                self.assertEqual(v, dropped0.get(lb, 0), "drops %r at a low rate" % (lb,))
        for name, total in sorted(want.items()):
            got = sum(prom_get(p, name + "_total", src=s) or 0 for s in ("s0", "s1"))
            self.assertEqual(got, total, name)
        self.assertEqual(prom_get(p, "bulk_t_count"), timer_count)
        self.assertEqual(sum(r for r in rejected(h).values()), 0)
        st, _hd, summ = h.get_json("/api/v1/summary")
        self.assertEqual(summ["ingest"]["datagrams_total"] - dg0, n_dgrams)
        self.assertEqual(summ["drops"]["ingest_total"], 0)


# ---------------------------------------------------------------------------------------
# --max-series
# ---------------------------------------------------------------------------------------
class TestSeriesLimit(IngestCase):
    def test_series_limit_udp_and_http(self):
        h = self.hub(["--max-series", "3"], statsd=True)
        doc = self.post_202(h, "sl_a:1|c\nsl_b:1|g\nsl_c:1|ms\n")
        self.assertEqual((doc["accepted"], doc["rejected"]), (3, 0), doc)
        before = rejected(h)
        doc = self.post_202(h, "sl_d:1|c\nsl_a:2|c\nsl_e:1|g\nsl_a:1|c|#k:v\n")
        self.assertEqual(doc["accepted"], 1, doc)
        self.assertEqual(doc["rejected_by_reason"], {"series_limit": 3}, doc)
        self.assertEqual(delta(rejected(h), before), {"series_limit": 3.0})
        self.assertEqual(find_series(h, "sl_a")["value"], 3)
        # over UDP: the new series is refused, the existing ones keep updating
        before = rejected(h)
        h.send_statsd(b"sl_f:1|c\nsl_a:10|c\nsl_b:+4|g")
        wait_series(h, "sl_a", pred=lambda s: s["value"] == 13)
        wait_series(h, "sl_b", pred=lambda s: s["value"] == 5)
        self.wait_rejected(h, before, {"series_limit": 1.0})
        names = sorted(s["name"] for s in all_series(h))
        self.assertEqual(names, ["sl_a", "sl_b", "sl_c"])
        self.assertEqual(prom_get(h.prom(), "metricast_series"), 3)
        st, _hd, summ = h.get_json("/api/v1/summary")
        self.assertEqual(summ["ingest"]["series"], 3)


# ---------------------------------------------------------------------------------------
# POST /api/v1/ingest
# ---------------------------------------------------------------------------------------
class TestHttpIngest(IngestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def test_statsd_text_plain(self):
        h = self.h
        http0 = lines_total(h, "http")
        before = rejected(h)
        body = ("hs_c:2|c\nhs_c:1|c|@0.5\nhs_g:4|g\nhs_g:+1|g\nhs_t:1:2:3|ms\nhs_s:x|s\n"
                "\n\nhs_bad:abc|c\nhs_nt:1\nhs_tag:1|c|#env:dev\n")
        doc = self.post_202(h, body, "text/plain; charset=utf-8")
        # multi-value lines count one sample per value
        self.assertEqual(doc, {"accepted": 9, "rejected": 2,
                               "rejected_by_reason": {"bad_value": 1, "no_type": 1}})
        # applied before the 202: no polling needed
        self.assertEqual(find_series(h, "hs_c")["value"], 4)
        self.assertEqual(find_series(h, "hs_g")["value"], 5)
        self.assertEqual(find_series(h, "hs_tag", {"env": "dev"})["value"], 1)
        self.assertIsNotNone(find_series(h, "hs_t"))
        self.assertIsNotNone(find_series(h, "hs_s"))
        self.assertEqual(lines_total(h, "http") - http0, 9)
        self.assertEqual(delta(rejected(h), before), {"bad_value": 1.0, "no_type": 1.0})
        wait_series(h, "hs_t", pred=lambda s: s.get("count") == 3 and s["sum"] == 6)

    def test_statsd_text_without_content_type(self):
        h = self.h
        doc = self.post_202(h, "nt_c:3|c\n")
        self.assertEqual(doc["accepted"], 1, doc)
        self.assertEqual(find_series(h, "nt_c")["value"], 3)
        # not starting with '{': StatsD text even when it looks like other JSON
        doc = self.post_202(h, "[1,2]")
        self.assertEqual(doc["accepted"], 0, doc)
        self.assertEqual(doc["rejected"], 1, doc)

    def test_json_without_content_type_is_json(self):
        doc = self.post_202(self.h, '  {"samples":[{"name":"jn","value":2}]}')
        self.assertEqual(doc, {"accepted": 1, "rejected": 0, "rejected_by_reason": {}})
        self.assertEqual(find_series(self.h, "jn")["kind"], "gauge")

    def test_json_source_metrics_form(self):
        h = self.h
        http0 = lines_total(h, "http")
        body = {"source": "robot_001", "timestamp": 1703005678.9,
                "metrics": {"cpu_usage": 45.2, "battery": 87, "temp.c": -3.5}}
        doc = self.post_202(h, json.dumps(body), "application/json")
        self.assertEqual(doc, {"accepted": 3, "rejected": 0, "rejected_by_reason": {}})
        src = {"source": "robot_001"}
        for name, v in (("cpu_usage", 45.2), ("battery", 87), ("temp_c", -3.5)):
            s = find_series(h, name, src)
            self.assertIsNotNone(s, name)
            self.assertEqual((s["kind"], s["value"]), ("gauge", v))
        self.assertEqual(lines_total(h, "http") - http0, 3)
        # a second source is a second series of the same name
        self.post_202(h, json.dumps({"source": "robot_002", "metrics": {"cpu_usage": 1}}),
                      "application/json")
        self.assertEqual(find_series(h, "cpu_usage", {"source": "robot_002"})["value"], 1)
        self.assertEqual(find_series(h, "cpu_usage", src)["value"], 45.2)

    def test_json_samples_form_all_kinds(self):
        h = self.h
        samples = [
            {"name": "js_c", "kind": "counter", "value": 3, "labels": {"k": "v"}},
            {"name": "js_c", "kind": "counter", "value": 1, "labels": {"k": "v"},
             "sample_rate": 0.5},
            {"name": "js_g", "value": 7.25},  # kind defaults to gauge
            {"name": "js_g2", "kind": "gauge", "value": -1},
            {"name": "js_t", "kind": "timer", "value": 10},
            {"name": "js_t", "kind": "timer", "value": 30},
            {"name": "js_h", "kind": "histogram", "value": 5},
            {"name": "js_s", "kind": "set", "value": "alice"},
            {"name": "js_s", "kind": "set", "value": "bob"},
            {"name": "js_s", "kind": "set", "value": "alice"},
            {"name": "js_s", "kind": "set", "value": 42},
            {"name": "js.dotted", "value": 1, "labels": {"a-b": "x"}},
        ]
        past_next_second()
        doc = self.post_202(h, json.dumps({"samples": samples}), "application/json")
        self.assertEqual(doc, {"accepted": len(samples), "rejected": 0,
                               "rejected_by_reason": {}})
        s = find_series(h, "js_c", {"k": "v"})
        self.assertEqual((s["kind"], s["value"]), ("counter", 5))
        self.assertEqual(find_series(h, "js_g")["kind"], "gauge")
        self.assertEqual(find_series(h, "js_g")["value"], 7.25)
        self.assertEqual(find_series(h, "js_g2")["value"], -1)
        self.assertEqual(find_series(h, "js_h")["kind"], "timer")
        self.assertEqual(find_series(h, "js_s")["kind"], "set")
        self.assertEqual(find_series(h, "js_dotted", {"a_b": "x"})["value"], 1)
        s = wait_series(h, "js_t", pred=lambda s: s.get("count") == 2)
        self.assertEqual((s["kind"], s["sum"], s["min"], s["max"], s["value"]),
                         ("timer", 40, 10, 30, 20))
        wait_series(h, "js_s", pred=lambda s: s["value"] == 3, desc="3 distinct members")

    def test_json_non_number_values_rejected_per_sample(self):
        h = self.h
        before = rejected(h)
        bad_values = ["NaN", "nan", "Infinity", "-inf", None, True, "abc", [1], {"v": 1}, ""]
        samples = [{"name": "jb_%d" % i, "value": v} for i, v in enumerate(bad_values)]
        samples.insert(3, {"name": "jb_good", "value": 1.5})
        samples.append({"name": "jb_good2", "kind": "counter", "value": 2})
        doc = self.post_202(h, json.dumps({"samples": samples}), "application/json")
        self.assertEqual(doc, {"accepted": 2, "rejected": len(bad_values),
                               "rejected_by_reason": {"bad_value": len(bad_values)}})
        self.assertEqual(delta(rejected(h), before), {"bad_value": float(len(bad_values))})
        self.assertEqual(find_series(h, "jb_good")["value"], 1.5)
        self.assertEqual(find_series(h, "jb_good2")["value"], 2)
        names = {s["name"] for s in all_series(h)}
        self.assertFalse([n for n in names if n.startswith("jb_") and n[3].isdigit()], names)
        # the metrics form too
        doc = self.post_202(h, json.dumps({"source": "r1", "metrics": {
            "m_ok": 1, "m_nan": "NaN", "m_null": None, "m_str": "5", "m_list": [2]}}),
            "application/json")
        self.assertEqual(doc, {"accepted": 1, "rejected": 4,
                               "rejected_by_reason": {"bad_value": 4}})

    def test_json_overflowing_number_rejects_body(self):
        # 1e400 is JSON syntax whose value no double holds; RFC 8259 lets a parser limit
        # the range, and jansson refuses the document: 400 with the reason, nothing applied
        status, _hdrs, body = self.h.request(
            "POST", "/api/v1/ingest", '{"samples":[{"name":"ovf","value":1e400},'
            '{"name":"ovf_ok","value":1}]}', {"Content-Type": "application/json"})
        self.assertEqual(status, 400, body)
        doc = json.loads(body)
        self.assertEqual(doc["error"], "bad_json")
        self.assertIn("overflow", doc["detail"])

    def test_json_other_per_sample_reasons(self):
        h = self.h
        samples = [{"value": 1}, {"name": "", "value": 1},
                   {"name": "jr_k", "kind": "weird", "value": 1},
                   {"name": "jr_r", "kind": "counter", "value": 1, "sample_rate": 0},
                   {"name": "jr_r2", "kind": "counter", "value": 1, "sample_rate": 2},
                   {"name": "jr_l", "value": 1, "labels": {"__x": "1"}},
                   {"name": "metricast_x", "value": 1},
                   {"name": "jr_ok", "value": 1}]
        doc = self.post_202(h, json.dumps({"samples": samples}), "application/json")
        self.assertEqual(doc, {"accepted": 1, "rejected": 7, "rejected_by_reason": {
            "bad_name": 2, "bad_type": 1, "bad_rate": 2, "bad_tags": 1, "reserved_name": 1}})

    def test_kind_conflict_http(self):
        h = self.h
        self.post_202(h, "hk:1|c")
        doc = self.post_202(h, json.dumps({"samples": [{"name": "hk", "value": 1},
                                                       {"name": "hk", "kind": "counter",
                                                        "value": 2}]}), "application/json")
        self.assertEqual(doc, {"accepted": 1, "rejected": 1,
                               "rejected_by_reason": {"kind_conflict": 1}})
        self.assertEqual(find_series(h, "hk")["value"], 3)

    def test_bad_json_400(self):
        h = self.h
        http0 = lines_total(h, "http")
        cases = [(b'{"samples":[{"name":"x","value":1}', "application/json"),
                 (b'{bad', None),
                 (b'[{"name":"x","value":1}]', "application/json"),
                 (b'{"foo":1}', "application/json"),
                 (b'{"samples":5}', "application/json"),
                 (b'{"metrics":[1]}', "application/json"),
                 (b'{"samples":[{"name":"x","value":NaN}]}', "application/json"),
                 (b'{"samples":[]} trailing', "application/json"),
                 (b'x:1|c', "application/json"),
                 (b'', "application/json")]
        for body, ctype in cases:
            with self.subTest(body=body, ctype=ctype):
                status, hdrs, raw = post_ingest(h, body, ctype)
                self.assertEqual(status, 400, raw)
                doc = self.assertJsonError(raw, hdrs.get("Content-Type", ""), status)
                self.assertEqual(doc["error"], "bad_json", doc)
                self.assertTrue(doc["detail"], doc)
        self.assertIsNone(find_series(h, "x"))
        self.assertEqual(lines_total(h, "http"), http0)

    def test_get_405(self):
        for method in ("GET", "PUT", "DELETE"):
            with self.subTest(method=method):
                status, hdrs, raw = self.h.request(method, "/api/v1/ingest",
                                                   body=None if method != "PUT" else b"x:1|c")
                self.assertEqual(status, 405, raw)
                self.assertJsonError(raw, hdrs.get("Content-Type", ""), status)
                self.assertIn("POST", (hdrs.get("Allow") or "").upper())

    def test_body_over_limit_413(self):
        h = self.hub(["--http-max-body-bytes", "1k"])
        http0 = lines_total(h, "http")
        big = ("big:1|c\n" * 256).encode()  # 2048 bytes
        status, hdrs, raw = post_ingest(h, big, "text/plain")
        self.assertEqual(status, 413, raw)
        self.assertJsonError(raw, hdrs.get("Content-Type", ""), status)
        self.assertIsNone(find_series(h, "big"))
        self.assertEqual(lines_total(h, "http"), http0)
        ok = ("small:1|c\n" * 100).encode()  # 1000 bytes
        self.assertLessEqual(len(ok), 1024)
        doc = self.post_202(h, ok, "text/plain")
        self.assertEqual(doc["accepted"], 100)
        self.assertEqual(find_series(h, "small")["value"], 100)

    def test_http_lines_and_udp_lines_separate(self):
        h = self.hub(statsd=True)
        self.post_202(h, "sep:1|c\nsep:1|c")
        h.send_statsd(b"sep:1|c")
        wait_series(h, "sep", pred=lambda s: s["value"] == 3)
        wait_for(lambda: lines_total(h, "udp") == 1, desc="udp lines 1")
        self.assertEqual(lines_total(h, "http"), 2)


if __name__ == "__main__":
    main()
