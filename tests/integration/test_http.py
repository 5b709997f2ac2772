#!/usr/bin/python3
"""HTTP/1.1 server behaviour: routes, error answers, limits, keep-alive, pipelining,
timeouts."""

import http.client
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, HubTestCase, SocketReader, main, raw_http,  # noqa: E402
                     read_http_response, t)


class TestHttpBasics(HubTestCase):
    @classmethod
    def setUpClass(cls):
        pass

    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def test_health_both_paths(self):
        for path in ("/api/v1/health", "/health"):
            with self.subTest(path=path):
                status, hdrs, body = self.h.get(path)
                self.assertEqual(status, 200, body)
                self.assertIn("application/json", hdrs.get("Content-Type", ""))
                doc = json.loads(body)
                self.assertEqual(doc.get("status"), "healthy", doc)
                self.assertIsInstance(doc.get("checks"), dict, doc)

    def test_health_query_string_ignored(self):
        status, _h, body = self.h.get("/api/v1/health?verbose=1")
        self.assertEqual(status, 200, body)

    def test_unknown_path_404(self):
        for path in ("/nope", "/api/v1/nope", "/api/v2/health", "/health/extra"):
            with self.subTest(path=path):
                status, hdrs, body = self.h.get(path)
                self.assertEqual(status, 404, body)
                self.assertJsonError(body, hdrs.get("Content-Type", ""), status)

    def test_wrong_method_405(self):
        for method, path in (("POST", "/api/v1/health"), ("DELETE", "/api/v1/health"),
                             ("PUT", "/health"), ("DELETE", "/health")):
            with self.subTest(method=method, path=path):
                status, hdrs, body = self.h.request(method, path, body=b"" if method != "DELETE" else None)
                self.assertEqual(status, 405, body)
                self.assertJsonError(body, hdrs.get("Content-Type", ""), status)
                allow = hdrs.get("Allow")
                self.assertIsNotNone(allow, "405 without Allow header: %r" % hdrs.items())
                self.assertIn("GET", allow.upper())

    def test_malformed_request_line_400(self):
        cases = [b"THIS IS NOT HTTP\r\n\r\n",
                 b"GET /health HTTP/1.1 trailing\r\nHost: x\r\n\r\n",
                 b"GET /health HTTQ/1.1\r\nHost: x\r\n\r\n",
                 b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"]
        for raw in cases:
            with self.subTest(raw=raw):
                try:
                    (resp,) = raw_http(self.h.port, raw, timeout=5.0)
                except EOFError:
                    self.fail("connection closed without a 400 answer for %r" % raw)
                self.assertEqual(resp.status, 400, resp)
                self.assertJsonError(resp.body, resp.header("Content-Type", ""), 400)
        # the daemon still serves afterwards
        self.assertEqual(self.h.get("/health")[0], 200)

    def test_header_block_over_default_limit_431(self):
        big = "a" * 20000  # default limit 16384
        req = ("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % big).encode()
        try:
            (resp,) = raw_http(self.h.port, req, timeout=5.0)
        except EOFError:
            self.fail("connection closed without a 431 answer")
        self.assertEqual(resp.status, 431, resp)
        self.assertJsonError(resp.body, resp.header("Content-Type", ""), 431)

    def test_many_headers_over_limit_431(self):
        hdrs = "".join("X-H%d: %s\r\n" % (i, "v" * 100) for i in range(200))  # ~22 KB
        req = ("GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % hdrs).encode()
        (resp,) = raw_http(self.h.port, req, timeout=5.0)
        self.assertEqual(resp.status, 431, resp)
        self.assertJsonError(resp.body, resp.header("Content-Type", ""), 431)

    def test_header_under_limit_ok(self):
        status, _h, body = self.h.get("/health", headers={"X-Big": "a" * 8000})
        self.assertEqual(status, 200, body)

    def test_declared_body_over_default_limit_413(self):
        # only the head is sent: a Content-Length over 4 MiB is refused up front
        req = (b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (4 * 1024 * 1024 + 1))
        (resp,) = raw_http(self.h.port, req, timeout=5.0)
        self.assertEqual(resp.status, 413, resp)
        self.assertJsonError(resp.body, resp.header("Content-Type", ""), 413)

    def test_keep_alive_reuses_connection(self):
        conn = self.h.connection()
        try:
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            local = conn.sock.getsockname()
            sock_id = id(conn.sock)
            for path, want in (("/api/v1/health", 200), ("/nope", 404), ("/health", 200),
                               ("/api/v1/health", 200)):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, want, path)
                self.assertIsNotNone(conn.sock, "server closed the keep-alive connection")
                self.assertEqual(id(conn.sock), sock_id)
                self.assertEqual(conn.sock.getsockname(), local)
        finally:
            conn.close()

    def test_keep_alive_survives_error_answers(self):
        conn = self.h.connection()
        try:
            conn.request("GET", "/nope")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 404)
            conn.request("POST", "/api/v1/health", body=b"{}")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 405)
            local = conn.sock.getsockname()
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(conn.sock.getsockname(), local)
        finally:
            conn.close()

    def test_pipelined_requests_answered_in_order(self):
        paths = ["/health", "/nope", "/api/v1/health", "/api/v1/missing", "/health"]
        want = [200, 404, 200, 404, 200]
        data = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths)
        resps = raw_http(self.h.port, data, timeout=5.0, count=len(paths))
        self.assertEqual([r.status for r in resps], want, resps)
        for r in resps:
            json.loads(r.body)

    def test_pipelined_with_post_bodies(self):
        data = (b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                b"DELETE /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        resps = raw_http(self.h.port, data, timeout=5.0, count=4)
        self.assertEqual([r.status for r in resps], [405, 200, 405, 200], resps)

    def test_pipelined_byte_by_byte(self):
        data = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        with self.h.raw_socket() as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                if i % 16 == 0:
                    time.sleep(0.001)
            reader = SocketReader(s)
            r1 = read_http_response(reader, 5.0)
            r2 = read_http_response(reader, 5.0)
        self.assertEqual((r1.status, r2.status), (200, 404))

    def test_connection_close(self):
        with self.h.raw_socket() as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reader = SocketReader(s)
            resp = read_http_response(reader, 5.0)
            self.assertEqual(resp.status, 200)
            self.assertTrue(reader.wait_eof(t(3.0)),
                            "server kept the connection open after Connection: close")
            self.assertEqual(reader.buf, b"", "unexpected bytes after the response")

    def test_http10_without_keepalive_closes(self):
        with self.h.raw_socket() as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            reader = SocketReader(s)
            resp = read_http_response(reader, 5.0)
            self.assertEqual(resp.status, 200)
            self.assertTrue(reader.wait_eof(t(3.0)),
                            "server kept an HTTP/1.0 connection open")

    def test_idle_connection_not_closed_early_with_defaults(self):
        # default idle timeout is 60 s: a 1.5 s pause must not end the connection
        conn = self.h.connection()
        try:
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            local = conn.sock.getsockname()
            time.sleep(1.5)
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(conn.sock.getsockname(), local)
        finally:
            conn.close()

    def test_many_sequential_connections(self):
        for _ in range(100):
            status, _h, _b = self.h.get("/health")
            self.assertEqual(status, 200)

    def test_abrupt_disconnects_do_not_hurt(self):
        for i in range(20):
            s = self.h.raw_socket()
            if i % 2:
                s.sendall(b"GET /health HTTP/1.1\r\nHo")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST
        self.assertEqual(self.h.get("/health")[0], 200)
        self.assertTrue(self.h.alive())


class TestHttpLimits(HubTestCase):
    def test_custom_header_limit(self):
        h = self.hub(["--http-max-header-bytes", "1k"])
        status, _hd, _b = h.get("/health", headers={"X-Small": "a" * 200})
        self.assertEqual(status, 200)
        (resp,) = raw_http(h.port, ("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n"
                                    % ("a" * 2048)).encode(), timeout=5.0)
        self.assertEqual(resp.status, 431, resp)
        self.assertJsonError(resp.body, resp.header("Content-Type", ""), 431)

    def test_custom_body_limit(self):
        h = self.hub(["--http-max-body-bytes", "1k"])
        status, hdrs, body = h.request("POST", "/api/v1/health", body=b"x" * 2048)
        self.assertEqual(status, 413, body)
        self.assertJsonError(body, hdrs.get("Content-Type", ""), status)
        status, _hd, body = h.request("POST", "/api/v1/health", body=b"x" * 512)
        self.assertEqual(status, 405, body)

    def test_slowloris_header_timeout(self):
        h = self.hub(["--http-header-timeout", "1s"])
        with h.raw_socket(timeout=15) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            reader = SocketReader(s)
            closed = reader.wait_eof(t(6.0))
            elapsed = time.monotonic() - t0
            self.assertTrue(closed, "partial header still open after %.1fs" % elapsed)
            self.assertGreaterEqual(elapsed, 0.5, "closed suspiciously early (%.2fs)" % elapsed)
            if reader.buf:
                resp = read_http_response(SocketReaderFrom(reader.buf), 1.0)
                self.assertEqual(resp.status, 408, resp)
                self.assertJsonError(resp.body, resp.header("Content-Type", ""), 408)
        self.assertEqual(h.get("/health")[0], 200)

    def test_slowloris_trickle_does_not_extend_header_timeout(self):
        # a byte every 300 ms keeps the socket busy but must not keep the request alive
        h = self.hub(["--http-header-timeout", "1s"])
        with h.raw_socket(timeout=15) as s:
            s.sendall(b"GET /health HTTP/1.1\r\n")
            t0 = time.monotonic()
            closed = False
            for i in range(40):  # at most ~12 s
                try:
                    s.sendall(b"X-T%d: y\r\n" % i)
                except OSError:
                    closed = True
                    break
                r = SocketReader(s)
                if r.wait_eof(0.3):
                    closed = True
                    break
            elapsed = time.monotonic() - t0
            self.assertTrue(closed, "trickling header kept alive for %.1fs" % elapsed)
            self.assertLess(elapsed, t(6.0))

    def test_idle_keepalive_timeout(self):
        h = self.hub(["--http-idle-timeout", "1s"])
        with h.raw_socket(timeout=15) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = SocketReader(s)
            resp = read_http_response(reader, 5.0)
            self.assertEqual(resp.status, 200)
            t0 = time.monotonic()
            closed = reader.wait_eof(t(6.0))
            elapsed = time.monotonic() - t0
            self.assertTrue(closed, "idle keep-alive connection open after %.1fs" % elapsed)
            self.assertGreaterEqual(elapsed, 0.5, "closed suspiciously early (%.2fs)" % elapsed)

    def test_idle_timeout_reset_by_activity(self):
        h = self.hub(["--http-idle-timeout", "2s"])
        conn = h.connection()
        try:
            local = None
            for _ in range(4):  # 4 requests 0.8 s apart: ~3.2 s > idle timeout
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                if local is None:
                    local = conn.sock.getsockname()
                self.assertEqual(conn.sock.getsockname(), local,
                                 "connection was replaced despite activity")
                time.sleep(0.8)
        finally:
            conn.close()


class SocketReaderFrom(SocketReader):
    """A SocketReader over bytes already received."""

    def __init__(self, data):
        super().__init__(None)
        self.buf = data
        self.eof = True


if __name__ == "__main__":
    main()
