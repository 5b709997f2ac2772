#!/usr/bin/python3
"""Cross-hub sample propagation: how long after POST /api/v1/ingest on hub A a gauge's new
value is visible on hub B — in B's /api/v1/metrics (polled every 1 ms) and in a
metrics:update to a subscriber of B (--tick 1: the change push or the tick).

  bench/nats_samples.py [--rounds N] METRICASTD NATS_URL

Starts two hubs (temporary data directories on /dev/shm when it is there) linked through
the nats-server at NATS_URL (started by the caller), sends N values one at a time and
prints p50/p99/max of both delays. Standard library only (the tests' harness)."""
import json
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import Hub, RawWS  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    args = sys.argv[1:]
    rounds = 100
    if args[:1] == ["--rounds"]:
        rounds = int(args[1])
        args = args[2:]
    if len(args) != 2:
        sys.exit(__doc__)
    os.environ["METRICASTD"] = args[0]
    url = args[1]
    hubs = [Hub(["--nats", url, "--hub-id", h]) for h in ("bench-a", "bench-b")]
    a, b = hubs
    try:
        for _ in range(200):
            if b"metricast_nats_peers{hub=\"bench-b\"} 1" in b.get("/metrics")[2]:
                break
            time.sleep(0.05)
        ws = RawWS(b.port, "/ws")
        ws.send_json({"type": "subscribe", "topics": ["metrics"], "filter": {"match": "xhub_value"}})
        rest, push = [], []
        for i in range(1, rounds + 1):
            t0 = time.monotonic()
            a.request("POST", "/api/v1/ingest", "xhub_value:%d|g" % i, {"Content-Type": "text/plain"})
            got_rest = got_push = None
            while got_rest is None or got_push is None:
                if got_rest is None:
                    s = json.loads(b.get("/api/v1/metrics?match=xhub_value")[2])["series"]
                    if s and s[0]["value"] == i:
                        got_rest = time.monotonic() - t0
                if got_push is None:
                    try:
                        m = ws.recv_json(timeout=0.001)
                        if m.get("type") == "metrics:update" and any(
                                x["name"] == "xhub_value" and x["value"] == i
                                for x in m["data"]["series"]):
                            got_push = time.monotonic() - t0
                    except socket.timeout:
                        pass
                if time.monotonic() - t0 > 10:
                    sys.exit("value %d not seen on B within 10 s" % i)
            rest.append(got_rest * 1e3)
            push.append(got_push * 1e3)
        ws.close()
        for name, v in (("A ingest -> B /api/v1/metrics", rest), ("A ingest -> B metrics:update", push)):
            print("%-32s p50 %.2f  p99 %.2f  max %.2f ms  (n=%d)"
                  % (name, statistics.median(v), pct(v, 99), max(v), len(v)))
    finally:
        for h in hubs:
            h.stop()
            h.close()


if __name__ == "__main__":
    main()
