#!/usr/bin/python3
"""Limits (docs/SECURITY.md): every limit is a setting, and hitting it gives a clear error
(HTTP status + JSON error, or a WebSocket error message / close code) and a count in
metricast_limit_hits_total{limit=...}. Also the StatsD source allow-list.

(The overloaded-subscriber close, ws_overload, is asserted in test_backpressure.py, which
already drives a subscriber into it.)"""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, RawWS, SocketReader, main, parse_close,  # noqa: E402
                     parse_prom, prom_get, raw_http, read_http_response, t, wait_for)


class LimitCase(HubTestCase):
    def hits(self, h, limit):
        st, _h, body = h.get("/metrics")
        if st != 200:  # still at a connection limit: the closed ones are on their way out
            return -1
        return prom_get(parse_prom(body.decode()), "metricast_limit_hits_total", limit=limit) or 0

    def wait_hits(self, h, limit, n, timeout=5.0):
        return wait_for(lambda: self.hits(h, limit) >= n, timeout,
                        desc="limit_hits_total{limit=%s} >= %d" % (limit, n))

    def json_error(self, resp, status, error):
        self.assertEqual(resp.status, status, resp)
        doc = resp.json()
        self.assertEqual(doc.get("error"), error, doc)
        self.assertTrue(doc.get("detail"), doc)
        return doc

    def refused_response(self, h):
        """Connects and reads the answer the hub gives without being asked anything."""
        with socket.create_connection((HOST, h.port), timeout=t(5)) as s:
            return read_http_response(SocketReader(s), 5)


class TestConnectionLimits(LimitCase):
    def test_total_connections(self):
        h = self.hub(["--max-connections", "3"])
        held = [socket.create_connection((HOST, h.port), timeout=t(5)) for _ in range(3)]
        try:
            time.sleep(t(0.2))  # accepted by the hub, not only by the kernel
            doc = self.json_error(self.refused_response(h), 503, "too_many_connections")
            self.assertIn("max_connections", doc["detail"])
        finally:
            for s in held:
                s.close()
        self.wait_hits(h, "connections", 1)
        # capacity comes back once they are gone
        wait_for(lambda: h.get("/health")[0] == 200, 5, desc="served again")

    def test_connections_per_ip(self):
        h = self.hub(["--max-connections-per-ip", "2"])
        held = [socket.create_connection((HOST, h.port), timeout=t(5)) for _ in range(2)]
        try:
            time.sleep(t(0.2))
            self.json_error(self.refused_response(h), 429, "too_many_connections")
        finally:
            for s in held:
                s.close()
        self.wait_hits(h, "connections_per_ip", 1)
        self.assertEqual(self.hits(h, "connections"), 0)

    def test_new_connections_per_second(self):
        h = self.hub(["--max-connection-rate-per-ip", "5"])
        statuses = []
        for _ in range(12):  # quicker than 5/s: the bucket (5) empties
            (r,) = raw_http(h.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            statuses.append(r.status)
            if r.status == 429:
                self.assertEqual(r.json()["error"], "connection_rate_exceeded")
        self.assertIn(429, statuses)
        self.assertEqual(statuses[:5], [200] * 5, statuses)
        time.sleep(1.2)  # refilled
        self.assertEqual(h.get("/health")[0], 200)
        self.assertGreaterEqual(self.hits(h, "connection_rate_per_ip"), statuses.count(429))


class TestHttpLimits(LimitCase):
    def test_header_and_body_size(self):
        h = self.hub(["--http-max-header-bytes", "1k", "--http-max-body-bytes", "1k"])
        (r,) = raw_http(h.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000
                        + b"\r\n\r\n")
        self.json_error(r, 431, "headers_too_large")
        (r,) = raw_http(h.port, b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 2000\r\n\r\n" + b"x" * 2000)
        self.json_error(r, 413, "body_too_large")
        (r,) = raw_http(h.port, b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n")
        self.json_error(r, 413, "body_too_large")
        self.assertEqual(self.hits(h, "http_header_bytes"), 1)
        self.assertEqual(self.hits(h, "http_body_bytes"), 2)

    def test_slow_headers_stalled_bodies_and_idle_keepalive(self):
        h = self.hub(["--http-header-timeout", "0.3s", "--http-idle-timeout", "0.6s"])
        with socket.create_connection((HOST, h.port), timeout=t(5)) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            self.json_error(read_http_response(SocketReader(s), 5), 408, "request_timeout")
        with socket.create_connection((HOST, h.port), timeout=t(5)) as s:
            s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            self.json_error(read_http_response(SocketReader(s), 5), 408, "request_timeout")
        with socket.create_connection((HOST, h.port), timeout=t(5)) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = SocketReader(s)
            self.assertEqual(read_http_response(reader, 5).status, 200)
            self.assertTrue(reader.wait_eof(t(5)), "idle keep-alive connection not closed")
        with socket.create_connection((HOST, h.port), timeout=t(5)) as s:
            self.assertTrue(SocketReader(s).wait_eof(t(5)), "silent connection not closed")
        self.wait_hits(h, "http_header_timeout", 2)
        self.assertEqual(self.hits(h, "http_body_timeout"), 1)
        self.assertGreaterEqual(self.hits(h, "http_idle_timeout"), 1)


class TestWebSocketLimits(LimitCase):
    def test_message_size(self):
        h = self.hub(["--ws-max-message-bytes", "1k"])
        with RawWS(h.port) as ws:
            ws.send_text(json.dumps({"type": "ping", "pad": "x" * 2000}))
            f = ws.wait_close(5)
            self.assertIsNotNone(f)
            self.assertEqual(f.close_code, 1009)
        with RawWS(h.port) as ws:  # the same over fragments
            ws.send_frame(0x1, b'{"type":"ping","pad":"' + b"x" * 600, fin=False)
            ws.send_frame(0x0, b"x" * 600 + b'"}', fin=True)
            self.assertEqual(ws.wait_close(5).close_code, 1009)
        self.wait_hits(h, "ws_message_bytes", 2)

    def test_subscriptions_per_connection(self):
        h = self.hub(["--ws-max-subscriptions", "2"])
        with RawWS(h.port) as ws:
            ws.send_json({"type": "subscribe", "topics": ["alerts", "sources", "tasks.*"]})
            m = ws.recv_json(5)
            self.assertEqual((m["type"], m["error"]), ("error", "too_many_subscriptions"), m)
            self.assertIn("2", m["detail"])
            ws.send_json({"type": "subscribe", "topics": ["alerts", "sources"]})
            ws.send_json({"type": "ping"})
            self.assertEqual(ws.recv_json(5)["type"], "pong")  # those two were fine
        self.assertEqual(self.hits(h, "ws_subscriptions"), 1)

    def test_idle_client_closed(self):
        h = self.hub(["--ws-ping-interval", "0.2s", "--ws-idle-timeout", "0.6s"])
        with RawWS(h.port) as ws:
            f = ws.wait_close(5, answer_pings=False)
            self.assertEqual(f.close_code, 1001)
            self.assertEqual(parse_close(f.payload)[1], "idle timeout")
        self.wait_hits(h, "ws_idle_timeout", 1)

    def test_bad_messages_close(self):
        h = self.hub()
        with RawWS(h.port) as ws:
            for _ in range(10):
                ws.send_text("{nope")
            f = ws.wait_close(5)
            self.assertEqual(f.close_code, 1008)
        self.wait_hits(h, "ws_bad_messages", 1)


class TestRegistryLimits(LimitCase):
    def test_series(self):
        h = self.hub(["--max-series", "2"])
        st, _h, body = h.request("POST", "/api/v1/ingest", body=b"a:1|g\nb:1|g\nc:1|g\nd:1|g\n",
                                 headers={"Content-Type": "text/plain"})
        self.assertEqual(st, 202, body)
        doc = json.loads(body)
        self.assertEqual(doc["rejected_by_reason"].get("series_limit"), 2, doc)
        self.assertEqual(self.hits(h, "series"), 2)

    def test_sources(self):
        h = self.hub(["--max-sources", "2"])
        a = RawWS(h.port, path="/ws?source=lim_a")
        b = RawWS(h.port, path="/ws?source=lim_b")
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        wait_for(lambda: json.loads(h.get("/api/v1/sources")[2])["online"] == 2, 5,
                 desc="two sources online")
        with RawWS(h.port, path="/ws?source=lim_c") as c:
            m = c.recv_json(5)
            self.assertEqual((m["type"], m.get("error")), ("error", "too_many_sources"), m)
            f = c.wait_close(5)
            self.assertEqual(f.close_code, 1008)
        self.assertEqual(self.hits(h, "sources"), 1)
        ids = [s["id"] for s in json.loads(h.get("/api/v1/sources")[2])["sources"]]
        self.assertEqual(sorted(ids), ["lim_a", "lim_b"])
        # one goes offline: a new source takes the place of the one offline the longest
        a.close()
        wait_for(lambda: json.loads(h.get("/api/v1/sources")[2])["online"] == 1, 5,
                 desc="lim_a offline")
        with RawWS(h.port, path="/ws?source=lim_d") as d:
            m = d.recv_json(5)
            self.assertEqual(m["type"], "metrics", m)
            ids = [s["id"] for s in json.loads(h.get("/api/v1/sources")[2])["sources"]]
            self.assertEqual(sorted(ids), ["lim_b", "lim_d"])
        self.assertEqual(self.hits(h, "sources"), 1)


class TestStatsdAllowList(LimitCase):
    def dropped(self, h):
        st, _h, body = h.get("/metrics")
        return prom_get(parse_prom(body.decode()), "metricast_ingest_dropped_total",
                        reason="not_allowed") or 0

    def lines(self, h):
        st, _h, body = h.get("/metrics")
        return prom_get(parse_prom(body.decode()), "metricast_ingest_lines_total",
                        transport="udp") or 0

    def test_senders_outside_the_list_are_dropped_and_counted(self):
        h = self.hub(["--statsd-allow", "10.0.0.0/8, fd00::/8"], statsd=True)
        for i in range(5):
            h.send_statsd("acl_x:%d|c" % i)
        wait_for(lambda: self.dropped(h) >= 5, 5, desc="5 datagrams dropped")
        time.sleep(t(0.3))
        self.assertEqual(self.lines(h), 0)
        self.assertNotIn("statsd accepts datagrams from anyone", h.log())

    def test_senders_inside_the_list_are_served(self):
        h = self.hub(["--statsd-allow", "127.0.0.0/8"], statsd=True)
        h.send_statsd("acl_y:1|c")
        wait_for(lambda: self.lines(h) >= 1, 5, desc="the datagram ingested")
        self.assertEqual(self.dropped(h), 0)

    def test_bad_list_exits_2(self):
        from harness import run_daemon
        code, err = run_daemon(["--listen", "127.0.0.1:0", "--statsd", "127.0.0.1:0",
                                "--statsd-allow", "10.0.0.0/33", "--data", "/tmp"])
        self.assertEqual(code, 2, err)
        self.assertIn("--statsd-allow", err)
        self.assertIn("10.0.0.0/33", err)


if __name__ == "__main__":
    main()
