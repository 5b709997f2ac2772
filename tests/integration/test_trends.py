#!/usr/bin/python3
"""Trends against a store with a past: the daemon creates its SQLite file (schema and all)
on a first start; the test then writes series rows and their rollups an hour, a day and a
week old into it, as a store that has run for a week holds them, and starts the hub on
it. Checked: GET /api/v1/trends?metric=..&source=.. (direction up / down / stable with the
configurable dead-band, change against the previous hour, day and week, the latest rollup
in each period's window and nothing outside it), the same `trend` object in every series
of /api/v1/metrics and of metrics:update, the fallback to the in-memory history without
an hour reference, and the references recomputed after a restart with another
dead-band."""

import json
import math
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HubTestCase, RawWS, main, wait_for  # noqa: E402

DB = "metricast.db"
GAUGE = 1  # metric kind in the series table


def key_blob(name, labels):
    """The daemon's series key: name, then label names and values sorted by name, each
    NUL-terminated."""
    parts = [name] + [x for k in sorted(labels) for x in (k, labels[k])]
    return b"".join(p.encode() + b"\0" for p in parts)


# name, source, references {period: value}, rows outside each window {period: value}
SERIES = [
    ("t_up", "r1", {"hour": 100.0, "day": 90.0, "week": 50.0},
     {"hour": 7.0, "day": 7.0, "week": 7.0}),
    ("t_up", "r2", {"hour": 10.0}, {}),
    ("t_down", "r1", {"hour": 100.0, "day": 120.0, "week": 200.0}, {}),
    ("t_band", "r1", {"hour": 100.0}, {}),
    ("t_zero", "r1", {"hour": 0.0}, {}),
    ("t_none", "r1", {}, {"hour": 1000.0}),
]
CURRENT = {("t_up", "r1"): 130.0, ("t_up", "r2"): 5.0, ("t_down", "r1"): 70.0,
           ("t_band", "r1"): 108.0, ("t_zero", "r1"): 5.0}


def seed(path, now):
    """Rows as the store writes them: rollup_60 and rollup_3600 keyed (t, series_id). A
    reference is the latest rollup at most 10 min (an hour: 1 h... day/week: 2 h) before
    the moment that long ago; each series also gets rows that must not be used: one just
    outside the window, one after the moment (more recent than "an hour ago")."""
    minute_ago_1h = int(now - 3600) // 60 * 60
    hour_ago_1d = int(now - 86400) // 3600 * 3600
    hour_ago_1w = int(now - 604800) // 3600 * 3600
    con = sqlite3.connect(path)
    try:
        for sid, (name, src, refs, decoys) in enumerate(SERIES, 1):
            con.execute("INSERT INTO series(id, key, name, labels, kind) VALUES(?,?,?,?,?)",
                        (sid, key_blob(name, {"source": src}), name,
                         json.dumps({"source": src}, separators=(",", ":")), GAUGE))

            def r60(t, v):
                con.execute("INSERT INTO rollup_60(t, series_id, count, sum, min, max, last) "
                            "VALUES(?,?,60,?,?,?,?)", (t, sid, v * 60, v, v, v))

            def r3600(t, v):
                con.execute("INSERT INTO rollup_3600(t, series_id, count, sum, min, max, "
                            "last) VALUES(?,?,3600,?,?,?,?)", (t, sid, v * 3600, v, v, v))
            if "hour" in refs:
                r60(minute_ago_1h - 300, refs["hour"])      # 5 min before: the reference
                r60(minute_ago_1h - 420, refs["hour"] - 1)  # older, inside: not the latest
            if "hour" in decoys:
                r60(minute_ago_1h - 900, decoys["hour"])    # 15 min before: outside
            r60(minute_ago_1h + 1200, 12345.0)              # 40 min ago: not an hour ago
            if "day" in refs:
                r3600(hour_ago_1d - 3600, refs["day"])
            if "day" in decoys:
                r3600(hour_ago_1d - 3 * 3600, decoys["day"])
            if "week" in refs:
                r3600(hour_ago_1w, refs["week"])
            if "week" in decoys:
                r3600(hour_ago_1w - 4 * 3600, decoys["week"])
        # everything up to now is rolled: the first job has no minute to roll
        con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('rolled_60', ?)",
                    (int(now) // 60 * 60,))
        con.commit()
    finally:
        con.close()


def get(hub, path):
    st, _, body = hub.request("GET", path)
    return st, json.loads(body.decode("utf-8"))


def ingest(hub, samples):
    body = json.dumps({"samples": [{"name": n, "value": v, "labels": {"source": s}}
                                   for (n, s), v in samples.items()]}).encode()
    st, _, answer = hub.request("POST", "/api/v1/ingest", body,
                                {"Content-Type": "application/json"})
    if st != 202:
        raise AssertionError("ingest answered %d: %r" % (st, answer))


def expected_trend(name, src, value, deadband):
    refs = dict(next(r for n, s, r, _ in SERIES if (n, s) == (name, src)))
    out = {}
    for p in ("hour", "day", "week"):
        if p not in refs:
            out[p] = None
            continue
        ref = refs[p]
        pct = None if abs(ref) <= 1e-12 else math.trunc((value - ref) / abs(ref) * 1e4) / 100
        out[p] = {"value": ref, "change": value - ref, "change_pct": pct}
    ref = refs.get("hour")
    if ref is not None:
        rel = (value - ref) / (abs(ref) if abs(ref) > 1e-12 else 1.0)
        out["direction"] = "up" if rel > deadband else "down" if rel < -deadband else "stable"
    return out


class TrendsTest(HubTestCase):
    def start_seeded(self, deadband):
        hub = self.hub(start=False, args=["--aggregate-every", "1", "--trend-deadband",
                                          str(deadband)])
        hub.start(15.0)  # a first start creates the file with the daemon's schema
        self.assertEqual(hub.stop(timeout=10.0), 0)
        seed(os.path.join(hub.data_dir, DB), time.time())
        hub.start(15.0)
        return hub

    def wait_refs(self, hub):
        """The first aggregation job after the start hands the references over."""
        def ready():
            st, doc = get(hub, "/api/v1/trends?metric=t_up&source=r1")
            return doc if st == 200 and doc["change"]["hour"] is not None else None
        return wait_for(ready, timeout=10, interval=0.2, desc="the hour reference of t_up")

    def check_series_trend(self, entry, deadband, what):
        name, src = entry["name"], entry["labels"]["source"]
        if (name, src) not in CURRENT:
            return
        want = expected_trend(name, src, CURRENT[(name, src)], deadband)
        got = entry["trend"]
        self.assertEqual(got["direction"], want["direction"], "%s %s{%s}" % (what, name, src))
        for p in ("hour", "day", "week"):
            self.assertEqual(got[p], want[p], "%s %s{%s} %s" % (what, name, src, p))

    def test_trends_from_seeded_rollups(self):
        hub = self.start_seeded(0.1)
        ingest(hub, CURRENT)
        ingest(hub, {("t_none", "r1"): 10.0})
        doc = self.wait_refs(hub)

        # the first series of t_up with source r1, flattened, and its series list
        self.assertEqual(doc["metric"], "t_up")
        self.assertEqual(doc["source"], "r1")
        self.assertEqual(doc["direction"], "up")
        self.assertEqual(doc["value"], 130)
        self.assertEqual(doc["change"], {"hour": 30, "day": 40, "week": 80},
                         "the latest rollup inside each window, nothing outside it")
        self.assertEqual(len(doc["series"]), 1)
        self.assertEqual(doc["series"][0]["labels"], {"source": "r1"})
        self.assertEqual(doc["series"][0]["trend"],
                         {"direction": "up",
                          "hour": {"value": 100, "change": 30, "change_pct": 30},
                          "day": {"value": 90, "change": 40, "change_pct": 44.44},
                          "week": {"value": 50, "change": 80, "change_pct": 160}})

        cases = {  # metric, source glob: direction at dead-band 0.1, change per period
            ("t_up", "r2"): ("down", {"hour": -5, "day": None, "week": None}),
            ("t_down", "r1"): ("down", {"hour": -30, "day": -50, "week": -130}),
            ("t_band", "r1"): ("stable", {"hour": 8, "day": None, "week": None}),
            ("t_zero", "r1"): ("up", {"hour": 5, "day": None, "week": None}),
        }
        for (name, src), (direction, change) in cases.items():
            st, d = get(hub, "/api/v1/trends?metric=%s&source=%s" % (name, src))
            self.assertEqual(st, 200, d)
            self.assertEqual((d["direction"], d["change"]), (direction, change),
                             "%s{source=%s}: %r" % (name, src, d))
        st, d = get(hub, "/api/v1/trends?metric=t_zero&source=r1")
        self.assertIsNone(d["series"][0]["trend"]["hour"]["change_pct"],
                          "no percentage against a zero reference")
        # every series of the metric, the glob, the refusals
        st, d = get(hub, "/api/v1/trends?metric=t_up")
        self.assertEqual(sorted(s["labels"]["source"] for s in d["series"]), ["r1", "r2"])
        st, d = get(hub, "/api/v1/trends?metric=t_up&source=r*")
        self.assertEqual(len(d["series"]), 2)
        st, d = get(hub, "/api/v1/trends?metric=t_up&source=nope")
        self.assertEqual(st, 404, d)
        st, d = get(hub, "/api/v1/trends?metric=no_such_metric")
        self.assertEqual((st, d["error"]), (404, "not_found"))
        st, d = get(hub, "/api/v1/trends")
        self.assertEqual(st, 400, d)

        # no hour reference (only rows outside the window): day and week null, direction
        # from the oldest in-memory point of the last 5 minutes
        time.sleep(1.2)
        ingest(hub, {("t_none", "r1"): 20.0})

        def none_up():
            st, d = get(hub, "/api/v1/trends?metric=t_none")
            return d if st == 200 and d["direction"] == "up" else None
        d = wait_for(none_up, timeout=5, desc="t_none up against its in-memory history")
        self.assertEqual(d["change"], {"hour": None, "day": None, "week": None})
        self.assertEqual(d["series"][0]["trend"]["hour"], None)

        # the same trend object in every series of /api/v1/metrics ...
        st, d = get(hub, "/api/v1/metrics?match=t_*")
        self.assertEqual(st, 200)
        self.assertEqual(len(d["series"]), len(SERIES))
        for entry in d["series"]:
            self.check_series_trend(entry, 0.1, "/api/v1/metrics")

        # ... and of metrics:update: the first (full) one, then a change
        ws = RawWS(hub.port)
        try:
            ws.send_json({"type": "subscribe", "topics": ["metrics"],
                          "filter": {"match": "t_*"}})
            m = ws.recv_json(timeout=5)
            while m.get("type") != "metrics:update":
                m = ws.recv_json(timeout=5)
            self.assertTrue(m["full"])
            entries = m["data"]["series"]
            self.assertEqual(len(entries), len(SERIES))
            for entry in entries:
                self.check_series_trend(entry, 0.1, "metrics:update (full)")
            ingest(hub, {("t_up", "r1"): 140.0})
            deadline = time.time() + 5
            seen = None
            while time.time() < deadline and seen is None:
                m = ws.recv_json(timeout=5)
                if m.get("type") != "metrics:update":
                    continue
                for entry in m["data"]["series"]:
                    if entry["name"] == "t_up" and entry["labels"]["source"] == "r1" and \
                            entry["value"] == 140:
                        seen = entry
            self.assertIsNotNone(seen, "no metrics:update with t_up{source=r1} = 140")
            self.assertEqual(seen["trend"]["direction"], "up")
            self.assertEqual(seen["trend"]["hour"], {"value": 100, "change": 40,
                                                     "change_pct": 40})
            self.assertEqual(seen["trend"]["week"]["change"], 90)
        finally:
            ws.close()
        ingest(hub, {("t_up", "r1"): 130.0})
        time.sleep(1.2)  # the value is in the raw points when the daemon stops

        # after a restart with a narrower dead-band: the references are read again, the
        # values come back from the raw points, and 8 % is now a rise
        self.assertEqual(hub.stop(timeout=10.0), 0)
        hub.argv = [a if a != "0.1" else "0.05" for a in hub.argv]
        hub.start(15.0)
        doc = self.wait_refs(hub)
        self.assertEqual(doc["change"], {"hour": 30, "day": 40, "week": 80})
        st, d = get(hub, "/api/v1/trends?metric=t_band&source=r1")
        self.assertEqual((st, d["direction"], d["value"], d["change"]["hour"]),
                         (200, "up", 108, 8), d)
        st, d = get(hub, "/api/v1/metrics?match=t_*")
        for entry in d["series"]:
            self.check_series_trend(entry, 0.05, "/api/v1/metrics after the restart")


if __name__ == "__main__":
    main()
