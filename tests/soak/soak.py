#!/usr/bin/env python3
"""Soak test for metricastd (`make soak`; not part of CI or CTest's default run).

Starts a release metricastd on 127.0.0.1 (free ports) with a temporary data directory and
drives it for SOAK_SECONDS (default 600) with mixed load, all at once:

  ingest       StatsD over UDP (a fixed set of counters, gauges, timers and a set, every
               100 ms) and HTTP (POST /api/v1/ingest, JSON, every second)
  subscribers  SOAK_SUBSCRIBERS (1,000) WebSockets subscribed to `metrics` with one of ten
               filters, one in ten also to `events`; each reads everything and sends a
               ping every 15 s
  stalled      one subscriber (metrics with every series, events, sources) that never
               reads, with a 4 KiB receive buffer, and pings every 15 s (so it is not
               closed as silent): the hub must shed it (conflation, then close 1008 after
               --ws-overload-timeout), not queue for it; once the hub has closed it
               (ws_overload or ws_idle_timeout counted), the next one connects
  sources      20 source sessions (/ws?source=) sending samples every second and
               publishing an event every 5 s
  churn        connect / subscribe (varied filters) / read the snapshot / close, ~5 a
               second, half of them without a close frame; and a source session that
               connects, says hello, sends a sample and leaves, every second (lifecycle
               events)
  bad input    one a second, in turn: malformed StatsD, broken JSON ingest, garbage HTTP,
               oversized headers, an oversized body, an oversized WebSocket message,
               unknown topics and bad messages, a bad-message flood, an unmasked frame; plus
               one slow-header (slowloris) connection at a time
  reads        GET /metrics and /api/v1/summary every 5 s

The set of series is fixed (no input creates new ones after the first seconds) and the
daemon runs with --history-points 60 and --events-retain 500, so its rings and retained
window are full after the warm-up: what grows after that is a leak.

Every 10 s it samples the daemon's VmRSS (/proc/PID/status) and open descriptors
(/proc/PID/fd) and prints a line. At the end it writes a report (a table of the samples,
the client's figures, the hub's own counters, the verdict) to SOAK_REPORT
(default build/soak/report.md) and exits 0 when flat, 1 when not (or when the daemon died,
exited non-zero, or subscribers stopped receiving).

Flat means, over the samples after the warm-up (SOAK_WARMUP, default 60 s), split in
thirds: the last third's largest RSS is within SOAK_RSS_PCT (10) % of the first third's
largest, plus 2 MiB of allocator noise, and its largest descriptor count within
SOAK_FD_SLACK (25) of the first third's largest (churn and bad-input connections come
and go).

Environment: METRICASTD (default build/metricastd), SOAK_SECONDS, SOAK_SUBSCRIBERS,
SOAK_SOURCES (20), SOAK_REPORT, SOAK_WARMUP, SOAK_RSS_PCT, SOAK_FD_SLACK, SOAK_INTERVAL
(10), SOAK_JUDGE_FLAT (1; 0 reports memory without judging it: CTest's 20 s smoke run,
integration.soak_smoke, which is all warm-up). Standard library only.
"""

import asyncio
import base64
import json
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DAEMON = os.environ.get("METRICASTD") or os.path.join(REPO, "build", "metricastd")
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
NSUBS = int(os.environ.get("SOAK_SUBSCRIBERS", "1000"))
NSOURCES = int(os.environ.get("SOAK_SOURCES", "20"))
INTERVAL = float(os.environ.get("SOAK_INTERVAL", "10"))
WARMUP = float(os.environ.get("SOAK_WARMUP", str(min(60.0, SECONDS / 5))))
RSS_PCT = float(os.environ.get("SOAK_RSS_PCT", "10"))
RSS_NOISE_KB = 2048
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "25"))
JUDGE_FLAT = os.environ.get("SOAK_JUDGE_FLAT", "1") != "0"  # 0: report memory, do not judge
REPORT = os.environ.get("SOAK_REPORT") or os.path.join(REPO, "build", "soak", "report.md")
HOST = "127.0.0.1"

FILTERS = ["soak_g_%d*" % k for k in range(5)] + ["soak_c_%d*" % k for k in range(2)] + \
          ["soak_t_*", "soak_src_*", "temp*"]

# ---------------------------------------------------------------------------------------
# figures the client keeps
# ---------------------------------------------------------------------------------------
stats = {
    "sub_connects": 0, "sub_reconnects": 0, "sub_errors": 0, "sub_bytes": 0,
    "churn_cycles": 0, "churn_errors": 0, "source_churn": 0,
    "statsd_datagrams": 0, "http_ingest": 0, "http_ingest_errors": 0,
    "events_published": 0, "acks": 0, "samples_sent": 0, "source_errors": 0,
    "bad_inputs": 0, "bad_unexpected": 0, "stalled_opened": 0, "stalled_shed": 0,
    "stalled_shed_after_s": 0, "slowloris": 0,
    "reads": 0, "read_errors": 0, "task_crashes": 0,
}
last_rx = {}  # subscriber index -> monotonic time of its last bytes
stop = False


def log(msg):
    sys.stdout.write("soak: %s\n" % msg)
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# WebSocket and HTTP over asyncio streams (no third-party packages)
# ---------------------------------------------------------------------------------------
def ws_frame(payload, opcode=1, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    if key == b"\0\0\0\0":
        return head + key + payload
    # XOR with the key: cheap enough for the small messages sent here
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")
         ).to_bytes(n, "little")
    return head + key + body


async def ws_open(port, path, extra=""):
    r, w = await asyncio.open_connection(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n")
             % (path, HOST, port, key, extra)).encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith(b"HTTP/1.1 101"):
        w.close()
        raise ConnectionError("upgrade refused: %r" % head[:40])
    return r, w


async def http_request(port, method, path, body=b"", ctype="application/json", timeout=10):
    """One request on a fresh connection; returns (status, body bytes)."""
    r, w = await asyncio.open_connection(HOST, port)
    try:
        w.write(("%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                 "Connection: close\r\n\r\n" % (method, path, HOST, port, ctype, len(body))
                 ).encode() + body)
        data = await asyncio.wait_for(r.read(-1), timeout)
    finally:
        w.close()
    m = re.match(rb"HTTP/1\.1 (\d+)", data)
    status = int(m.group(1)) if m else 0
    return status, data.partition(b"\r\n\r\n")[2]


async def raw_exchange(port, payload, timeout=10):
    """Sends payload on a fresh connection and reads until the server closes it."""
    r, w = await asyncio.open_connection(HOST, port)
    try:
        w.write(payload)
        return await asyncio.wait_for(r.read(-1), timeout)
    finally:
        w.close()


async def sleep_until_stop(seconds):
    end = time.monotonic() + seconds
    while not stop and time.monotonic() < end:
        await asyncio.sleep(min(1.0, end - time.monotonic()))


# ---------------------------------------------------------------------------------------
# the load
# ---------------------------------------------------------------------------------------
async def subscriber(i, port):
    flt = FILTERS[i % len(FILTERS)]
    topics = ["metrics", "events"] if i % 10 == 0 else ["metrics"]
    sub = json.dumps({"type": "subscribe", "topics": topics, "filter": {"match": flt}})
    ping = ws_frame('{"type":"ping"}')
    first = True
    while not stop:
        try:
            r, w = await ws_open(port, "/ws")
            stats["sub_connects"] += 1
            if not first:
                stats["sub_reconnects"] += 1
            first = False
            w.write(ws_frame(sub))
            next_ping = time.monotonic() + 15 + random.random() * 5
            while not stop:
                try:
                    data = await asyncio.wait_for(r.read(65536), 5)
                except asyncio.TimeoutError:
                    data = None
                now = time.monotonic()
                if data == b"":
                    break  # closed by the hub: counted as a reconnect
                if data:
                    stats["sub_bytes"] += len(data)
                    last_rx[i] = now
                if now >= next_ping:
                    w.write(ping)
                    next_ping = now + 15
            w.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            stats["sub_errors"] += 1
            await asyncio.sleep(1)


async def shed_count(port):
    """Subscribers the hub gave up on: metricast_limit_hits_total for ws_overload (its
    queue stayed overloaded) plus ws_idle_timeout (it stopped answering pings)."""
    try:
        _status, body = await http_request(port, "GET", "/metrics")
    except (OSError, asyncio.TimeoutError):
        return None
    n = 0
    for limit in (b"ws_overload", b"ws_idle_timeout"):
        m = re.search(rb'^metricast_limit_hits_total\{limit="' + limit + rb'"\} (\d+)', body, re.M)
        if not m:
            return None
        n += int(m.group(1))
    return n


async def stalled(port):
    """A subscriber that never reads: the hub has to shed it, not queue for it.

    Its 4 KiB receive buffer keeps the kernel from absorbing much (the server's send
    buffer does not grow towards a peer with a closed window), so the hub's queue fills:
    updates conflate, events pile up, the flow goes overloaded and after
    --ws-overload-timeout the hub closes it (ws_overload). Then the next one connects.
    """
    loop = asyncio.get_running_loop()
    while not stop:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.settimeout(10)
            await loop.run_in_executor(None, s.connect, (HOST, port))
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n" % (HOST, port, key)).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.run_in_executor(None, s.recv, 1)
                if not chunk:
                    break
                head += chunk
            before = await shed_count(port)
            s.sendall(ws_frame(json.dumps({"type": "subscribe",
                                           "topics": ["metrics", "events", "sources"],
                                           "filter": {"match": "*"}})))
            stats["stalled_opened"] += 1
            opened = time.monotonic()
            # never reads a byte more, but pings every 15 s so the hub does not close it
            # as silent: it has to shed it for not reading; waits until it has
            s.setblocking(False)
            ticks = 0
            while not stop:
                await sleep_until_stop(5)
                ticks += 1
                if ticks % 3 == 0:
                    try:
                        s.send(ws_frame('{"type":"ping"}'))
                    except (BlockingIOError, OSError):
                        pass
                now = await shed_count(port)
                if before is not None and now is not None and now > before:
                    stats["stalled_shed"] += 1
                    stats["stalled_shed_after_s"] = round(time.monotonic() - opened)
                    break
        except OSError:
            await asyncio.sleep(1)
        finally:
            s.close()


async def source_session(k, port):
    sid = "soak_src_%02d" % k
    n = 0
    while not stop:
        try:
            r, w = await ws_open(port, "/ws?source=%s" % sid)

            async def drain():
                while True:
                    data = await r.read(65536)
                    if not data:
                        return
                    stats["acks"] += data.count(b'"type":"ack"')

            reader = asyncio.ensure_future(drain())
            try:
                while not stop and not reader.done():
                    n += 1
                    w.write(ws_frame(json.dumps({"type": "sample", "metrics": {
                        "soak_src_temp": 20 + (n % 10), "soak_src_load": (n * 7) % 100}})))
                    stats["samples_sent"] += 1
                    if n % 5 == 0:
                        w.write(ws_frame(json.dumps({"type": "publish", "data": {
                            "type": "soak.tick", "payload": {"source": sid, "n": n}}})))
                        stats["events_published"] += 1
                    await w.drain()
                    await asyncio.sleep(1)
            finally:
                reader.cancel()
                w.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            stats["source_errors"] += 1
            await asyncio.sleep(1)


async def statsd_ingest(statsd_port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = 0
    while not stop:
        n += 1
        lines = ["soak_g_%02d:%d|g" % (k, (n + k) % 100) for k in range(50)]
        lines += ["soak_c_%02d:1|c|#shard:%d" % (k, k % 4) for k in range(20)]
        lines += ["soak_t_%02d:%d|ms" % (k, (n * 13 + k) % 250) for k in range(20)]
        lines += ["soak_users:user%d|s" % ((n * 31 + k) % 100) for k in range(5)]
        payload = "\n".join(lines).encode()
        try:
            s.sendto(payload, (HOST, statsd_port))
            stats["statsd_datagrams"] += 1
        except OSError:
            pass
        await asyncio.sleep(0.1)
    s.close()


async def http_ingest(port):
    n = 0
    while not stop:
        n += 1
        body = json.dumps({"source": "soak_http", "metrics": {
            "temp_%02d" % k: 20 + ((n + k) % 15) for k in range(20)}}).encode()
        try:
            status, _ = await http_request(port, "POST", "/api/v1/ingest", body)
            stats["http_ingest"] += 1
            if status != 202:
                stats["http_ingest_errors"] += 1
        except (OSError, asyncio.TimeoutError):
            stats["http_ingest_errors"] += 1
        await asyncio.sleep(1)


async def churn(port):
    i = 0
    while not stop:
        i += 1
        try:
            r, w = await ws_open(port, "/ws")
            flt = random.choice(FILTERS + ["churn_none_%d" % (i % 7), "soak_*"])
            w.write(ws_frame(json.dumps({"type": "subscribe", "topics": ["metrics"],
                                         "filter": {"match": flt}})))
            try:
                await asyncio.wait_for(r.read(4096), 3)
            except asyncio.TimeoutError:
                pass
            if i % 2:
                w.write(ws_frame(struct.pack("!H", 1000), opcode=8))
                await w.drain()
            w.close()
            stats["churn_cycles"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            stats["churn_errors"] += 1
        await asyncio.sleep(0.2)


async def source_churn(port):
    i = 0
    while not stop:
        i += 1
        try:
            r, w = await ws_open(port, "/ws")
            w.write(ws_frame(json.dumps({"type": "hello", "source": "soak_churn_%d" % (i % 10),
                                         "attrs": {"model": "churn"}})))
            w.write(ws_frame(json.dumps({"type": "sample", "metrics": {"soak_churn_v": i % 9}})))
            await w.drain()
            await asyncio.sleep(0.3)
            w.write(ws_frame(struct.pack("!H", 1000), opcode=8))
            await w.drain()
            w.close()
            stats["source_churn"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            stats["churn_errors"] += 1
        await asyncio.sleep(1)


async def bad_input(port, statsd_port):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    k = 0

    names = ["statsd", "bad_json", "garbage_http", "big_headers", "big_body", "big_ws_message",
             "bad_ws_messages", "bad_message_flood", "unmasked_frame", "bad_upgrade_and_path"]

    def expect(cond):
        stats["bad_inputs"] += 1
        if not cond:
            stats["bad_unexpected"] += 1
            key = "bad_unexpected_" + names[kind]
            stats[key] = stats.get(key, 0) + 1

    while not stop:
        k += 1
        kind = k % 10
        try:
            if kind == 0:  # malformed StatsD (never a new series)
                udp.sendto(b"soak_g_00:abc|g\n:1|c\nsoak_c_00:1|zz\nsoak_t_00|ms\n" +
                           b"soak_c_01:1|c|#" + b",".join(b"t%d:v" % j for j in range(40)) +
                           b"\n" + b"x" * 5000 + b":1|c\n\xff\xfe:1|c", (HOST, statsd_port))
                expect(True)
            elif kind == 1:  # broken JSON ingest
                status, _ = await http_request(port, "POST", "/api/v1/ingest",
                                               b'{"metrics":{"soak_g_00":')
                expect(status == 400)
            elif kind == 2:  # garbage HTTP
                data = await raw_exchange(port, b"\x16\x03\x01\x02\x00GARBAGE / HTTP/9\r\n\r\n")
                expect(data.startswith(b"HTTP/1.1 400"))
            elif kind == 3:  # oversized headers
                data = await raw_exchange(port, b"GET /metrics HTTP/1.1\r\nX-Big: " +
                                          b"a" * 20000 + b"\r\n\r\n")
                expect(data.startswith(b"HTTP/1.1 431"))
            elif kind == 4:  # oversized body, declared
                data = await raw_exchange(port, b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Length: 10000000\r\n\r\nabc")
                expect(data.startswith(b"HTTP/1.1 413"))
            elif kind == 5:  # oversized WebSocket message: close 1009
                r, w = await ws_open(port, "/ws")
                w.write(ws_frame(b'{"type":"ping","pad":"' + b"x" * 100000 + b'"}'))
                try:
                    data = await asyncio.wait_for(r.read(-1), 10)
                    expect(b"\x88" in data and struct.pack("!H", 1009) in data)
                except ConnectionResetError:
                    # the hub closes after its 1009 without reading the rest of the
                    # message: the kernel answers the unread bytes with a reset, which
                    # may overtake the close frame
                    expect(True)
                w.close()
            elif kind == 6:  # unknown topics, bad messages: answered, connection stays
                r, w = await ws_open(port, "/ws")
                w.write(ws_frame('{"type":"subscribe","topics":["no such topic"]}'))
                w.write(ws_frame('{"type":"subscribe","topics":["metrics"],"filter":5}'))
                w.write(ws_frame("{not json"))
                w.write(ws_frame(b"\x00\x01", opcode=2))
                got = b""
                while got.count(b'"type":"error"') < 4:
                    chunk = await asyncio.wait_for(r.read(65536), 10)
                    if not chunk:
                        break
                    got += chunk
                w.close()
                expect(got.count(b'"type":"error"') >= 4)
            elif kind == 7:  # a bad-message flood: close 1008
                r, w = await ws_open(port, "/ws")
                for _ in range(12):
                    w.write(ws_frame('{"type":"nope"}'))
                data = await asyncio.wait_for(r.read(-1), 10)
                w.close()
                expect(struct.pack("!H", 1008) in data)
            elif kind == 8:  # an unmasked client frame: protocol error
                r, w = await ws_open(port, "/ws")
                w.write(ws_frame('{"type":"ping"}', mask=False))
                data = await asyncio.wait_for(r.read(-1), 10)
                w.close()
                expect(b"\x88" in data)
            elif kind == 9:  # a /ws upgrade without the handshake headers, a bad path
                status, _ = await http_request(port, "GET", "/ws")
                status2, _ = await http_request(port, "GET", "/api/v1/nope%zz")
                expect(status == 426 and status2 == 400)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as e:
            expect(False)
            log("bad input %s: %r" % (names[kind], e))
        await asyncio.sleep(1)
    udp.close()


async def slowloris(port):
    while not stop:
        try:
            r, w = await asyncio.open_connection(HOST, port)
            w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            data = await asyncio.wait_for(r.read(-1), 30)  # the hub answers 408 and closes
            w.close()
            stats["slowloris"] += 1
            if not data.startswith(b"HTTP/1.1 408"):
                stats["bad_unexpected"] += 1
        except (OSError, asyncio.TimeoutError):
            stats["bad_unexpected"] += 1
        await sleep_until_stop(2)


async def reads(port):
    while not stop:
        for path in ("/metrics", "/api/v1/summary"):
            try:
                status, _ = await http_request(port, "GET", path)
                stats["reads"] += 1
                if status != 200:
                    stats["read_errors"] += 1
            except (OSError, asyncio.TimeoutError):
                stats["read_errors"] += 1
        await sleep_until_stop(5)


# ---------------------------------------------------------------------------------------
# sampling, the daemon, the report
# ---------------------------------------------------------------------------------------
def proc_sample(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds


def hub_counters(port):
    """The hub's own counters worth quoting, from /metrics."""
    out = {}
    try:
        status, body = asyncio.run(http_request(port, "GET", "/metrics"))
    except Exception:  # noqa: BLE001 — the daemon may be gone
        return out
    want = ("metricast_ws_connections", "metricast_ws_subscribers", "metricast_series",
            "metricast_ws_dropped_total", "metricast_ws_sent_total", "metricast_events_total",
            "metricast_limit_hits_total", "metricast_ingest_rejected_total",
            "metricast_ingest_lines_total", "metricast_sources_online",
            "metricast_http_errors_total")
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(want):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out


def verdict(samples):
    """(flat, text): the thirds rule on the samples after the warm-up."""
    post = [s for s in samples if s["t"] >= WARMUP]
    if len(post) < 3:
        return False, "too few samples after the %.0f s warm-up (%d)" % (WARMUP, len(post))
    n = len(post) // 3
    first, last = post[:n], post[-n:]
    rss1 = max(s["rss_kb"] for s in first)
    rss3 = max(s["rss_kb"] for s in last)
    fd1 = max(s["fds"] for s in first)
    fd3 = max(s["fds"] for s in last)
    rss_lim = rss1 * (1 + RSS_PCT / 100.0) + RSS_NOISE_KB
    fd_lim = fd1 + FD_SLACK
    ok_rss, ok_fd = rss3 <= rss_lim, fd3 <= fd_lim
    text = ("RSS: first third max %.1f MiB, last third max %.1f MiB (%+.1f%%; limit %.1f MiB) %s; "
            "fds: first third max %d, last third max %d (limit %d) %s"
            % (rss1 / 1024, rss3 / 1024, (rss3 - rss1) * 100.0 / rss1, rss_lim / 1024,
               "flat" if ok_rss else "GROWING", fd1, fd3, fd_lim, "flat" if ok_fd else "GROWING"))
    return ok_rss and ok_fd, text


def write_report(cmd, samples, counters, problems, flat_text, flat, client_cpu, wall, code):
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    ok = flat and not problems
    lines = ["# metricastd soak report", "",
             "- command: `%s`" % cmd,
             "- duration: %.0f s (warm-up %.0f s), %d subscribers, %d sources, sample every %.0f s"
             % (wall, WARMUP, NSUBS, NSOURCES, INTERVAL),
             "- machine: %d cores, load average at the end %s" % (
                 os.cpu_count() or 0, " ".join("%.2f" % x for x in os.getloadavg())),
             "- client CPU (this script): %.1f s user+sys over %.0f s (%.0f%% of one core)"
             % (client_cpu, wall, client_cpu * 100.0 / max(wall, 1)),
             "- daemon exit status after SIGTERM: %s" % code,
             "", "## Verdict: %s" % ("FLAT" if ok else "NOT FLAT / FAILED"), "", flat_text, ""]
    for p in problems:
        lines.append("- problem: %s" % p)
    lines += ["", "## Samples", "",
              "| t (s) | RSS (MiB) | fds | load1 | subscribers receiving | sub bytes (MiB) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for s in samples:
        lines.append("| %.0f | %.1f | %d | %.2f | %d | %.1f |" % (
            s["t"], s["rss_kb"] / 1024, s["fds"], s["load1"], s["receiving"],
            s["sub_bytes"] / 1048576))
    lines += ["", "## Client figures", ""]
    lines += ["- %s: %s" % (k, v) for k, v in sorted(stats.items())]
    lines += ["", "## Hub counters at the end (/metrics)", ""]
    lines += ["- `%s` %s" % (k, v) for k, v in sorted(counters.items())]
    with open(REPORT, "w") as f:
        f.write("\n".join(lines) + "\n")
    return ok


async def guarded(coro):
    """A load task that dies of a bug in this script is a failed run, not a quiet one."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001
        stats["task_crashes"] += 1
        log("load task crashed: %r" % e)


async def run(port, statsd_port, pid, proc, samples):
    global stop
    loop = asyncio.get_running_loop()

    def task(coro):
        return loop.create_task(guarded(coro))

    tasks = [task(statsd_ingest(statsd_port)), task(http_ingest(port)), task(stalled(port)),
             task(churn(port)), task(source_churn(port)), task(bad_input(port, statsd_port)),
             task(slowloris(port)), task(reads(port))]
    tasks += [task(source_session(k, port)) for k in range(NSOURCES)]
    # subscribers connect in batches: a thousand handshakes at once would only measure
    # the accept queue
    for i in range(NSUBS):
        tasks.append(task(subscriber(i, port)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    start = time.monotonic()
    next_sample = start
    while True:
        now = time.monotonic()
        if proc.poll() is not None:
            break
        if now >= next_sample:
            rss, fds = proc_sample(pid)
            receiving = sum(1 for i in range(NSUBS) if now - last_rx.get(i, 0) < 5)
            s = {"t": now - start, "rss_kb": rss, "fds": fds, "load1": os.getloadavg()[0],
                 "receiving": receiving, "sub_bytes": stats["sub_bytes"]}
            samples.append(s)
            log("t=%4.0fs rss=%.1fMiB fds=%d load=%.2f receiving=%d/%d reconnects=%d churn=%d "
                "bad=%d(unexpected %d) events=%d" % (s["t"], rss / 1024, fds, s["load1"],
                                                    receiving, NSUBS, stats["sub_reconnects"],
                                                    stats["churn_cycles"], stats["bad_inputs"],
                                                    stats["bad_unexpected"],
                                                    stats["events_published"]))
            next_sample += INTERVAL
        if now - start >= SECONDS and len(samples) * INTERVAL > SECONDS:
            break
        await asyncio.sleep(min(0.5, max(0.01, next_sample - time.monotonic())))
    stop = True
    await asyncio.sleep(1.5)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main():
    if not os.access(DAEMON, os.X_OK):
        sys.exit("soak: %s is not built (make)" % DAEMON)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = NSUBS + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    tmp = tempfile.mkdtemp(prefix="mc-soak-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    data_dir = os.path.join(tmp, "data")
    log_path = os.path.join(tmp, "stderr.log")
    argv = [DAEMON, "--listen", "%s:0" % HOST, "--statsd", "%s:0" % HOST, "--data", data_dir,
            "--host-metrics", "off", "--history-points", "60", "--events-retain", "500",
            "--events-keep", "1000", "--raw-retention", "120", "--log-level", "info"]
    cmd = " ".join(["SOAK_SECONDS=%g" % SECONDS, "SOAK_SUBSCRIBERS=%d" % NSUBS,
                    "tests/soak/soak.py"] + ["(daemon: %s)" % " ".join(argv[1:])])
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICAST_")}
    errf = open(log_path, "wb")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf, env=env)
    port = statsd_port = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (port is None or statsd_port is None):
        if proc.poll() is not None:
            break
        with open(log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        m = re.search(r'msg="http listening" addr=\S+:(\d+)', text)
        m2 = re.search(r'msg="statsd listening" addr=\S+:(\d+)', text)
        if m:
            port = int(m.group(1))
        if m2:
            statsd_port = int(m2.group(1))
        time.sleep(0.1)
    if port is None or statsd_port is None:
        proc.kill()
        sys.exit("soak: the daemon did not start; its log: %s" % log_path)
    log("metricastd pid %d on %s:%d (statsd %d), %s for %.0f s, %d subscribers"
        % (proc.pid, HOST, port, statsd_port, DAEMON, SECONDS, NSUBS))
    samples = []
    t0, c0 = time.monotonic(), os.times()
    died = False
    try:
        asyncio.run(run(port, statsd_port, proc.pid, proc, samples))
    finally:
        wall = time.monotonic() - t0
        c1 = os.times()
        client_cpu = (c1.user - c0.user) + (c1.system - c0.system)
        died = proc.poll() is not None
        counters = hub_counters(port) if not died else {}
        code = proc.poll()
        if code is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = "killed after 30 s"
        errf.close()
    problems = []
    if died:
        problems.append("the daemon died during the run (status %s); log %s" % (code, log_path))
    elif code != 0:
        problems.append("the daemon exited %s after SIGTERM; log %s" % (code, log_path))
    flat, flat_text = verdict(samples)
    if not JUDGE_FLAT:
        flat_text += " (not judged: SOAK_JUDGE_FLAT=0)"
        flat = True
    if samples and samples[-1]["receiving"] < NSUBS * 0.99:
        problems.append("only %d of %d subscribers received data in the last 5 s"
                        % (samples[-1]["receiving"], NSUBS))
    if stats["task_crashes"]:
        problems.append("%d load tasks crashed (a bug in the soak script)" % stats["task_crashes"])
    if stats["bad_unexpected"]:
        problems.append("%d bad inputs were not answered as expected" % stats["bad_unexpected"])
    ok = write_report(cmd, samples, counters, problems, flat_text, flat, client_cpu, wall, code)
    log(flat_text)
    for p in problems:
        log("problem: " + p)
    log("report: %s — %s" % (REPORT, "FLAT" if ok else "NOT FLAT / FAILED"))
    if ok:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
