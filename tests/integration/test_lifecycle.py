#!/usr/bin/python3
"""Process life cycle: start-up time, graceful shutdown on SIGTERM/SIGINT (WebSocket
clients get 1001), health turning unhealthy when the data directory disappears."""

import asyncio
import calendar
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (_LIVE, DAEMON, HOST, HubTestCase, RawWS, SocketReader,  # noqa: E402
                     clean_env, main, read_http_response, t)


def connect_refused(port, timeout=2.0):
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return True
    s.close()
    return False


# How long an exit may take: generous, for a loaded machine. What these tests prove does
# not hang on it: the clients stay connected until the daemon has exited, so a daemon
# that waited for them would never exit; whether the 500 ms stop grace had to cut
# connections the daemon reports itself ("shutdown grace over" in its log).
EXIT_BOUND = 3.0
STOP_GRACE_S = 0.5  # src/worker.c STOP_GRACE_MS


def grace_closes(h):
    """The daemon's "shutdown grace over" records: connections it had to cut."""
    return [r for r in h.log_records() if r.get("msg") == "shutdown grace over: closing "
            "connections"]


def log_unix(rec):
    """A log record's ts (ISO 8601 UTC, milliseconds) as unix seconds."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", rec["ts"])
    y, mo, d, hh, mm, ss = (int(x) for x in m.groups()[:6])
    return calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)) + float(m.group(7) or 0)


class TestShutdown(HubTestCase):
    def assertNoGraceCut(self, h):
        self.assertEqual(grace_closes(h), [], "the stop had to wait out its grace for "
                         "connections that should have closed at once:\n" + h.log())

    def _shutdown_with_clients(self, sig, echo=True):
        h = self.hub()
        clients = [RawWS(h.port) for _ in range(3)]
        try:
            for ws in clients:  # make sure every session is fully established
                ws.send_json({"type": "ping"})
                self.assertEqual(ws.recv_json(5).get("type"), "pong")
            t0 = time.monotonic()
            h.send_signal(sig)
            codes = []
            for ws in clients:
                f = ws.wait_close(5, echo=echo)
                codes.append(f.close_code if f is not None else None)
            code = h.wait_exit(max(t(EXIT_BOUND) - (time.monotonic() - t0), 0.05))
            elapsed = time.monotonic() - t0
            if code is None:
                code = h.wait_exit(t(5.0))
                self.fail("daemon took %.2fs to exit after signal %d (limit %.1fs) while its "
                          "clients stayed connected; code %s"
                          % (time.monotonic() - t0, sig, t(EXIT_BOUND), code))
            self.assertEqual(codes, [1001] * len(clients))
            self.assertEqual(code, 0, "exit status %s after signal %d" % (code, sig))
            self.assertLessEqual(elapsed, t(EXIT_BOUND))
            if not echo:
                # the clients that never answered were cut by the grace, after it ran
                cut = grace_closes(h)
                self.assertEqual(sum(int(r["connections"]) for r in cut), len(clients),
                                 h.log())
                began = [r for r in h.log_records() if r.get("msg") == "shutting down"]
                for r in cut:
                    self.assertGreaterEqual(log_unix(r) - log_unix(began[0]),
                                            STOP_GRACE_S - 0.002, h.log())
        finally:
            for ws in clients:
                ws.close()
        self.assertTrue(connect_refused(h.port), "port still accepts after shutdown")

    def test_sigterm_closes_ws_with_1001_and_exits_0(self):
        self._shutdown_with_clients(signal.SIGTERM)

    def test_sigint_closes_ws_with_1001_and_exits_0(self):
        self._shutdown_with_clients(signal.SIGINT)

    def test_sigterm_with_unresponsive_ws_clients(self):
        # clients that never answer the close frame must not hold the exit up
        self._shutdown_with_clients(signal.SIGTERM, echo=False)

    def test_sigterm_library_client_sees_1001(self):
        h = self.hub()

        async def go():
            async with websockets.connect(h.ws_url, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                await asyncio.wait_for(ws.recv(), t(5))
                h.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(ws.recv(), t(5))
                except websockets.ConnectionClosed as e:
                    return e.rcvd.code if e.rcvd is not None else None
                return "no close"
        code = asyncio.run(asyncio.wait_for(go(), t(20)))
        self.assertEqual(code, 1001)
        self.assertEqual(h.wait_exit(t(3.0)), 0)

    def test_sigterm_idle_exits_0(self):
        h = self.hub()
        self.assertEqual(h.get("/health")[0], 200)
        t0 = time.monotonic()
        code = h.stop(signal.SIGTERM, timeout=5.0)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 0)
        self.assertLessEqual(elapsed, t(EXIT_BOUND), "exit took %.2fs" % elapsed)
        self.assertNoGraceCut(h)
        self.assertTrue(connect_refused(h.port))

    def test_open_http_connections_do_not_delay_exit(self):
        h = self.hub()
        socks = []
        try:
            # one idle keep-alive connection, one with a partial request, one bare
            s1 = h.raw_socket()
            s1.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_http_response(SocketReader(s1), 5.0).status, 200)
            s2 = h.raw_socket()
            s2.sendall(b"GET /health HTTP/1.1\r\nHost")
            s3 = h.raw_socket()
            socks = [s1, s2, s3]
            time.sleep(0.2)
            t0 = time.monotonic()
            code = h.stop(signal.SIGTERM, timeout=5.0)
            elapsed = time.monotonic() - t0
            self.assertEqual(code, 0)
            self.assertLessEqual(elapsed, t(EXIT_BOUND), "exit took %.2fs" % elapsed)
            # idle, half-sent and bare HTTP connections are closed at once, not at the grace
            self.assertNoGraceCut(h)
            for s in socks:
                self.assertTrue(SocketReader(s).wait_eof(2.0), "client socket left open")
        finally:
            for s in socks:
                s.close()

    def test_second_signal_during_shutdown(self):
        h = self.hub()
        ws = RawWS(h.port)
        try:
            h.send_signal(signal.SIGTERM)
            h.send_signal(signal.SIGTERM)
            code = h.wait_exit(t(3.0))
            self.assertIsNotNone(code, "daemon did not exit after two SIGTERMs")
            self.assertGreaterEqual(code, 0, "daemon died of signal %d" % -code)
        finally:
            ws.close()

    def test_shutdown_logged(self):
        h = self.hub()
        self.assertEqual(h.stop(), 0)
        levels = {r.get("level") for r in h.log_records()}
        self.assertNotIn("error", levels, h.log())
        for r in h.log_records():
            self.assertRegex(r.get("ts", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", r)
            self.assertIn(r.get("level"), ("debug", "info", "warn", "error"), r)
            self.assertTrue(r.get("msg"), r)


class TestStartup(HubTestCase):
    def test_startup_to_first_health_answer(self):
        """exec -> first 200 from /api/v1/health; only a generous bound (bench/ measures)."""
        bound = t(2.0)
        tmp = tempfile.mkdtemp(prefix="mc-it-start-")
        errlog = open(os.path.join(tmp, "stderr.log"), "wb")
        os.mkdir(os.path.join(tmp, "data"))
        t0 = time.monotonic()
        proc = subprocess.Popen([DAEMON, "--listen", "%s:0" % HOST, "--statsd", "off",
                                 "--data", os.path.join(tmp, "data")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errlog, env=clean_env())
        _LIVE.add(proc)
        ok, port = False, None
        try:
            while time.monotonic() - t0 < bound + t(3.0) and not ok:
                if port is None:
                    with open(errlog.name, "rb") as f:
                        m = re.search(rb'msg="http listening"[^\n]*\baddr="?[0-9.]+:([0-9]+)',
                                      f.read())
                    if m:
                        port = int(m.group(1))
                    elif proc.poll() is not None:
                        break
                if port is not None:
                    try:
                        c = http.client.HTTPConnection(HOST, port, timeout=1)
                        c.request("GET", "/api/v1/health")
                        ok = c.getresponse().status == 200
                        c.close()
                    except OSError:
                        pass
                if not ok:
                    time.sleep(0.005)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(t(5))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            _LIVE.discard(proc)
            errlog.close()
            with open(errlog.name, "rb") as f:
                log = f.read().decode("utf-8", "replace")
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertTrue(ok, "no healthy answer; log:\n" + log)
        self.assertLess(elapsed, bound, "start-up to first health answer took %.2fs" % elapsed)


class TestHealth(HubTestCase):
    def test_healthy_document(self):
        h = self.hub(["--health-interval", "200ms"])
        status, hdrs, doc = h.get_json("/api/v1/health")
        self.assertEqual(status, 200)
        self.assertEqual(doc["status"], "healthy")
        self.assertIsInstance(doc["checks"], dict)
        self.assertIn("data_dir", doc["checks"], doc)

    def test_data_dir_removed_turns_unhealthy(self):
        h = self.hub(["--health-interval", "200ms"])
        self.assertEqual(h.get("/api/v1/health")[0], 200)
        shutil.rmtree(h.data_dir)
        deadline = time.monotonic() + t(5.0)
        last = None
        while time.monotonic() < deadline:
            status, hdrs, body = h.get("/api/v1/health")
            last = (status, body)
            if status == 503:
                break
            time.sleep(0.1)
        self.assertEqual(last[0], 503, "health still %s after data dir removal: %r" % last)
        doc = json.loads(last[1])
        self.assertEqual(doc.get("status"), "unhealthy", doc)
        self.assertIn("data_dir", doc.get("failing", []), doc)
        self.assertIn("application/json", hdrs.get("Content-Type", ""))
        # /health reports the same
        status, _h, body = h.get("/health")
        self.assertEqual(status, 503, body)
        self.assertTrue(h.alive(), "daemon died when its data dir disappeared")


if __name__ == "__main__":
    main()
