#!/usr/bin/python3
"""TLS (--tls-cert, --tls-key): HTTPS and WebSocket over TLS with real clients (Python's
ssl, http.client and the websockets library) verifying a self-signed certificate that
the openssl CLI makes for the test; TLS 1.1, plain HTTP and garbage refused and counted;
the handshake deadline; backpressure over TLS; close_notify at shutdown; the start-up
checks and the SIGHUP reload of the certificate."""

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, DAEMON, HubTestCase, RawWS, SocketReader, client_ssl_context,  # noqa: E402
                     clean_env, main, make_self_signed, prom_get, t, wait_for)
from test_stream import Msgs  # noqa: E402

NSERIES = 250
TICK_PREFIX = b'{"type":"metrics:update"'


class TLSCase(HubTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="mc-tls-")
        self.cert, self.key = make_self_signed(self.dir)
        self.ctx = client_ssl_context(self.cert)

    def tls_hub(self, args=(), **kw):
        h = self.hub(["--tls-cert", self.cert, "--tls-key", self.key] + list(args), **kw)
        h.ssl_context = self.ctx
        return h

    def failures(self, h, reason):
        return prom_get(h.prom(), "metricast_tls_handshake_failures_total", reason=reason)

    def plain_socket(self, h):
        return socket.create_connection((HOST, h.port), timeout=t(10))


class TestHTTPS(TLSCase):
    def test_health_and_metrics(self):
        h = self.tls_hub()
        status, _hdrs, body = h.get("/api/v1/health")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["status"], "healthy")
        # keep-alive: several requests on one TLS connection
        conn = h.connection()
        try:
            for path in ("/api/v1/health", "/metrics", "/api/v1/health"):
                conn.request("GET", path)
                r = conn.getresponse()
                data = r.read()
                self.assertEqual(r.status, 200, (path, data[:200]))
            self.assertEqual(conn.sock.version(), "TLSv1.3")
        finally:
            conn.close()
        p = h.prom()
        self.assertGreaterEqual(prom_get(p, "metricast_tls_handshakes_total", version="TLSv1.3"), 2)
        for reason in ("plaintext_http", "protocol_version", "bad_handshake", "timeout"):
            self.assertEqual(prom_get(p, "metricast_tls_handshake_failures_total", reason=reason),
                             0, reason)
        self.assertIn('scheme=https', h.log())
        # the certificate's expiry for alerting: made with -days 2
        expiry = prom_get(p, "metricast_tls_certificate_expiry_timestamp_seconds")
        self.assertLess(abs(expiry - (time.time() + 2 * 86400)), 3600, expiry)

    def test_tls12_and_alpn(self):
        h = self.tls_hub()
        ctx = client_ssl_context(self.cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        s = ctx.wrap_socket(self.plain_socket(h), server_hostname=HOST)
        try:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            # forward-secret AEAD suites only
            name, _proto, _bits = s.cipher()
            self.assertTrue(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA" in name),
                            name)
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            rd = SocketReader(s)
            head = rd.read_until(b"\r\n\r\n", time.monotonic() + t(10))
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        finally:
            s.close()
        self.assertEqual(prom_get(h.prom(), "metricast_tls_handshakes_total", version="TLSv1.2"), 1)

    def test_pipelined_records_behind_a_deferred_request(self):
        """Four requests in four TLS records sent in one TCP write: the first (/metrics)
        is deferred to the hub while the other records wait inside the TLS engine; every
        answer comes back, in order (the engine is drained when reading resumes)."""
        h = self.tls_hub()
        sock = self.plain_socket(h)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_hostname=HOST)
        deadline = time.monotonic() + t(10)
        while True:  # the handshake, by hand over the socket
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                data = sock.recv(65536)
                self.assertTrue(data, "closed during the handshake")
                inc.write(data)
        sock.sendall(out.read())
        paths = ["/metrics", "/api/v1/health", "/metrics", "/api/v1/health"]
        for p in paths:
            obj.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % p).encode())
        sock.sendall(out.read())  # four records, one write
        got = b""
        statuses = []
        while len(statuses) < len(paths) and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = sock.recv(65536)
            if not data:
                break
            inc.write(data)
            try:
                while True:
                    got += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
            statuses, rest = [], got
            while True:  # complete answers so far: head + Content-Length body
                end = rest.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = rest[:end].decode("latin-1")
                n = int(next(l.split(":", 1)[1] for l in head.split("\r\n")
                             if l.lower().startswith("content-length:")))
                if len(rest) < end + 4 + n:
                    break
                statuses.append((head.split(" ")[1], rest[end + 4:end + 4 + n]))
                rest = rest[end + 4 + n:]
        sock.close()
        self.assertEqual([st for st, _ in statuses], ["200"] * 4, got[:400])
        self.assertIn(b"metricast_tls_handshakes_total", statuses[0][1])
        self.assertIn(b'"status"', statuses[1][1])

    def test_close_notify_at_shutdown(self):
        """An idle keep-alive connection gets close_notify when the hub stops, not a bare
        TCP close (which a client could not tell from a truncation attack)."""
        h = self.tls_hub()
        s = self.ctx.wrap_socket(self.plain_socket(h), server_hostname=HOST,
                                 suppress_ragged_eofs=False)
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        rd = SocketReader(s)
        rd.read_until(b"\r\n\r\n", time.monotonic() + t(10))
        h.send_signal(signal.SIGTERM)
        got = b""
        s.settimeout(t(10))
        try:
            for _ in range(1000):
                chunk = s.recv(65536)  # b"" only after close_notify; SSLEOFError otherwise
                if not chunk:
                    break
                got += chunk
        finally:
            s.close()
        self.assertEqual(h.wait_exit(t(10)), 0)


class TestWSS(TLSCase):
    def test_websocket_subscribe_metrics_and_events(self):
        h = self.tls_hub(["--tick", "0.2"])

        async def run():
            async with websockets.connect(h.ws_url, ssl=self.ctx, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topics": ["metrics", "events"]}))
                # ingest and publish over HTTPS while the subscriber listens
                loop = asyncio.get_running_loop()

                def post():
                    st, _h, b = h.request("POST", "/api/v1/ingest",
                                          body=b"tls_test:42|g\n",
                                          headers={"Content-Type": "text/plain"})
                    assert st == 202, (st, b)
                    st, _h, b = h.request("POST", "/api/v1/events",
                                          body=json.dumps({"type": "tasks.created",
                                                           "payload": {"over": "tls"}}).encode(),
                                          headers={"Content-Type": "application/json"})
                    assert st == 202, (st, b)
                await loop.run_in_executor(None, post)
                update = event = None
                deadline = time.monotonic() + t(10)
                while (update is None or event is None) and time.monotonic() < deadline:
                    m = json.loads(await asyncio.wait_for(ws.recv(), t(10)))
                    if m["type"] == "metrics:update" and any(
                            s["name"] == "tls_test" for s in m["data"]["series"]):
                        update = m
                    elif m["type"] == "event":
                        event = m
                # and a publish on the TLS WebSocket itself, acknowledged
                await ws.send(json.dumps({"type": "publish", "data": {"type": "tasks.done"}}))
                ack = None
                while ack is None and time.monotonic() < deadline:
                    m = json.loads(await asyncio.wait_for(ws.recv(), t(10)))
                    if m["type"] == "ack":
                        ack = m
                return update, event, ack, ws.transport.get_extra_info("ssl_object").version()

        update, event, ack, version = asyncio.run(run())
        self.assertIsNotNone(update, "no metrics:update carrying tls_test")
        self.assertIsNotNone(event, "no event")
        self.assertEqual(event["data"]["payload"], {"over": "tls"})
        self.assertIsNotNone(ack, "no ack of the publish")
        self.assertEqual(version, "TLSv1.3")
        p = h.prom()
        self.assertGreaterEqual(prom_get(p, "metricast_tls_handshakes_total", version="TLSv1.3"), 3)
        self.assertEqual(prom_get(p, "metricast_tls_errors_total"), 0)

    def test_shutdown_closes_wss_with_1001(self):
        h = self.tls_hub(["--tick", "0.2"])

        async def run():
            async with websockets.connect(h.ws_url, ssl=self.ctx, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topics": ["metrics"]}))
                await asyncio.wait_for(ws.recv(), t(10))
                h.send_signal(signal.SIGTERM)
                try:
                    for _ in range(100000):
                        await asyncio.wait_for(ws.recv(), t(10))
                except websockets.ConnectionClosed as e:
                    return e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None
            return None, None

        code, reason = asyncio.run(run())
        self.assertEqual(code, 1001, reason)
        self.assertEqual(h.wait_exit(t(10)), 0)

    def test_many_subscribers_and_a_slow_reader(self):
        """Backpressure over TLS: a subscriber that stops reading is buffered, told it is
        overloaded and closed with 1008, counted once, while 40 others (each following one
        series) keep streaming;
        the hub's memory stays bounded (each connection encrypts its own copy)."""
        env = None
        if t(1) > 1:
            env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                   + ":quarantine_size_mb=4"}
        h = self.tls_hub(["--tick", "0.01", "--ws-queue-messages", "64", "--ws-queue-bytes",
                          "256k", "--ws-overload-timeout", "2s"], env=env)
        body = "".join("s%03d:0|g|#source:bp\n" % k for k in range(NSERIES))
        st, _h, b = h.request("POST", "/api/v1/ingest", body=body.encode())
        self.assertEqual(st, 202, b)

        stop = threading.Event()
        errors = []

        def loader():
            conn = h.connection()
            try:
                for i in range(1, 100000):
                    if stop.is_set():
                        break
                    text = "".join("s%03d:%d|g|#source:bp\n" % (k, i) for k in range(NSERIES))
                    conn.request("POST", "/api/v1/ingest", body=text.encode(),
                                 headers={"Content-Type": "text/plain"})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 202:
                        raise AssertionError("ingest answered %d" % r.status)
                    stop.wait(0.02)
            except BaseException as e:
                errors.append(e)
            finally:
                conn.close()

        ticks = {}

        def reader(n):
            try:
                ws = RawWS(h.port, ssl_context=self.ctx)
                # one series each: 40 Python readers decrypting every full update would
                # themselves become slow readers on a loaded machine
                ws.send_json({"type": "subscribe", "topics": ["metrics"],
                              "filter": {"match": "s00%d" % (n % 10)}})
                buf = b""
                ws.sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        chunk = ws.sock.recv(262144)
                    except (socket.timeout, TimeoutError):
                        continue
                    if not chunk:
                        raise AssertionError("reader %d: connection closed" % n)
                    buf += chunk
                    ticks[n] = ticks.get(n, 0) + buf.count(TICK_PREFIX)
                    buf = buf[-len(TICK_PREFIX):]
                ws.sock.close()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=loader, daemon=True)]
        threads += [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(40)]
        for th in threads:
            th.start()
        slow = None
        try:
            wait_for(lambda: len(ticks) == 40, 20, desc="40 TLS subscribers streaming")
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.settimeout(t(10))
            raw.connect((HOST, h.port))
            slow = RawWS.__new__(RawWS)
            slow.port, slow.path, slow.version, slow.extra_headers = h.port, "/ws", "13", {}
            slow.sock = self.ctx.wrap_socket(raw, server_hostname=HOST)
            slow.reader = SocketReader(slow.sock)
            slow.key = "dGhlIHNhbXBsZSBub25jZQ=="
            self.assertEqual(slow.handshake(10).status, 101)
            slow.send_json({"type": "subscribe", "topics": ["metrics"]})
            rss = []

            def closed():
                p = h.prom()
                rss.append(prom_get(p, "process_resident_memory_bytes"))
                return prom_get(p, "metricast_limit_hits_total", limit="ws_overload") == 1
            wait_for(closed, 60, interval=0.2, desc="the slow TLS subscriber closed (ws_overload)")
            before = dict(ticks)
            time.sleep(1.0)
            after = dict(ticks)
        finally:
            stop.set()
            for th in threads:
                th.join(t(10))
            if slow is not None:
                slow.sock.close()
        self.assertEqual(errors, [])
        self.assertIn("ws subscriber closed: too slow", h.log())
        moving = [n for n in after if after[n] > before.get(n, 0)]
        self.assertEqual(len(moving), 40, "subscribers still streaming after the close: %d "
                         "(%r -> %r)" % (len(moving), before, after))
        self.assertLess(max(r for r in rss if r), (400 if t(1) > 1 else 200) * 2**20, rss)
        p = h.prom()
        self.assertGreater(prom_get(p, "metricast_ws_dropped_total"), 0)
        self.assertEqual(prom_get(p, "metricast_tls_errors_total"), 0)


class TestRefusals(TLSCase):
    def test_tls11_refused(self):
        h = self.tls_hub()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this client offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        s = self.plain_socket(h)
        with self.assertRaises(ssl.SSLError) as cm:
            ctx.wrap_socket(s, server_hostname=HOST)
        s.close()
        self.assertIn("PROTOCOL_VERSION", str(cm.exception).upper())
        wait_for(lambda: self.failures(h, "protocol_version") == 1, 5,
                 desc="failure counted as protocol_version")
        self.assertEqual(h.get("/api/v1/health")[0], 200)

    def test_plain_http_refused_and_counted(self):
        h = self.tls_hub()
        conn = http.client.HTTPConnection(HOST, h.port, timeout=t(10))
        try:
            conn.request("GET", "/api/v1/health")
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        self.assertEqual(r.status, 400)
        self.assertEqual(json.loads(body)["error"], "tls_required")
        # a plain WebSocket upgrade too, and the connection is closed after the answer
        s = self.plain_socket(h)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        rd = SocketReader(s)
        data = rd.read_to_eof(time.monotonic() + t(10))
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertEqual(self.failures(h, "plaintext_http"), 2)
        self.assertEqual(h.get("/api/v1/health")[0], 200)

    def test_garbage_handshakes(self):
        h = self.tls_hub()
        payloads = [
            os.urandom(2048),
            b"\x16\x03\x01\x00\x30" + os.urandom(48),          # a record header, then noise
            b"\x16\x03\x03\xff\x00" + b"\x01" * 300,           # a record too large
            b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",  # a truncated hello
            b"\x80\x2e\x01\x00\x02" + os.urandom(43),          # SSLv2-style hello
            b"\x00" * 64,
            b"SSH-2.0-OpenSSH_9.2\r\n",
        ]
        for p in payloads:
            s = self.plain_socket(h)
            try:
                s.sendall(p)
                rd = SocketReader(s)
                with self.subTest(payload=p[:12]):
                    self.assertTrue(rd.wait_eof(t(10)), "not closed after %r" % p[:12])
            finally:
                s.close()
        # every one was counted (the truncated hello waits for more; it is counted when the
        # client goes away, as closed), and the hub still serves
        total = wait_for(lambda: sum(self.failures(h, r) for r in
                                     ("bad_handshake", "protocol_version", "closed"))
                         >= len(payloads), 5, desc="garbage counted %r" % (
                             [(r, self.failures(h, r)) for r in
                              ("bad_handshake", "protocol_version", "closed", "timeout")],))
        self.assertTrue(total)
        self.assertGreaterEqual(self.failures(h, "bad_handshake"), 4)
        self.assertEqual(h.get("/api/v1/health")[0], 200)
        self.assertTrue(h.alive())

    def test_connection_limit_closes_without_handshake(self):
        h = self.tls_hub(["--max-connections-per-ip", "1"])
        first = self.ctx.wrap_socket(self.plain_socket(h), server_hostname=HOST)
        try:
            second = self.plain_socket(h)
            self.assertTrue(SocketReader(second).wait_eof(t(10)), "over the limit: not closed")
            second.close()
        finally:
            first.close()
        def counted():  # the first connection's release may still be on its way
            try:
                return prom_get(h.prom(), "metricast_limit_hits_total",
                                limit="connections_per_ip") >= 1
            except (AssertionError, OSError, http.client.HTTPException):
                return False
        wait_for(counted, 10, desc="limit counted")

    def test_handshake_deadline(self):
        """Slowloris over TLS: a client that starts a handshake and stalls, or sends
        nothing, is closed after [http] header_timeout and counted."""
        h = self.tls_hub(["--http-header-timeout", "1s"])
        quiet = self.plain_socket(h)
        dripping = self.plain_socket(h)
        dripping.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
        try:
            for s in (quiet, dripping):
                self.assertTrue(SocketReader(s).wait_eof(t(10)), "not closed")
        finally:
            quiet.close()
            dripping.close()
        wait_for(lambda: self.failures(h, "timeout") == 2, 5, desc="both counted")
        self.assertEqual(prom_get(h.prom(), "metricast_limit_hits_total",
                                  limit="tls_handshake_timeout"), 2)


class TestConfig(TLSCase):
    def run_daemon(self, args, timeout=15):
        p = subprocess.run([DAEMON, "--listen", "127.0.0.1:0", "--statsd", "off",
                            "--host-metrics", "off", "--data", os.path.join(self.dir, "data")]
                           + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=t(timeout))
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_bad_files_refused_at_start(self):
        other_cert, other_key = make_self_signed(self.dir, name="other")
        garbage = os.path.join(self.dir, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        missing = os.path.join(self.dir, "missing.pem")
        cases = [
            (["--tls-cert", self.cert], "--tls-key missing"),
            (["--tls-key", self.key], "--tls-cert missing"),
            (["--tls-cert", missing, "--tls-key", self.key], "cannot read"),
            (["--tls-cert", self.cert, "--tls-key", missing], "cannot read"),
            (["--tls-cert", garbage, "--tls-key", self.key], "not a usable PEM certificate"),
            (["--tls-cert", self.cert, "--tls-key", garbage], "not a usable PEM private key"),
            (["--tls-cert", self.cert, "--tls-key", other_key], "does not match"),
            (["--tls-cert", self.cert, "--tls-key", self.key, "--demo"], "--demo"),
        ]
        for args, want in cases:
            for check in (False, True):
                with self.subTest(args=args, check=check):
                    a = list(args)
                    if check:
                        ini = os.path.join(self.dir, "empty.ini")
                        open(ini, "w").close()
                        a += ["--check-config", ini]
                    code, _out, err = self.run_daemon(a)
                    self.assertEqual(code, 2, err)
                    self.assertIn(want, err)
                    self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_check_config_and_ini_keys(self):
        ini = os.path.join(self.dir, "tls.ini")
        with open(ini, "w") as f:
            f.write("[tls]\ncert = %s\nkey = %s\n" % (self.cert, self.key))
        code, out, err = self.run_daemon(["--check-config", ini])
        self.assertEqual(code, 0, err)
        self.assertIn("[tls]", out)
        self.assertIn("cert = %s" % self.cert, out)
        h = self.hub(config="[tls]\ncert = %s\nkey = %s\n" % (self.cert, self.key))
        h.ssl_context = self.ctx
        self.assertEqual(h.get("/api/v1/health")[0], 200)

    def test_sighup_reloads_the_certificate(self):
        h = self.tls_hub()
        # a subscriber on the old certificate keeps its session across the reload
        old = RawWS(h.port, ssl_context=self.ctx)
        old_cert = old.sock.getpeercert()
        # renew: new key and certificate under the same names (as certbot does)
        new_cert, new_key = make_self_signed(self.dir, cn="renewed.example", name="renewed",
                                             days=30)
        os.replace(new_cert, self.cert)
        os.replace(new_key, self.key)
        h.send_signal(signal.SIGHUP)
        wait_for(lambda: 'msg="reload: tls certificate applied"' in h.log(), 10,
                 desc="reload applied")
        ctx = client_ssl_context(self.cert)
        s = ctx.wrap_socket(self.plain_socket(h), server_hostname=HOST)
        subject = dict(x[0] for x in s.getpeercert()["subject"])
        s.close()
        self.assertEqual(subject["commonName"], "renewed.example")
        h.ssl_context = ctx  # trusts the renewed certificate
        expiry = prom_get(h.prom(), "metricast_tls_certificate_expiry_timestamp_seconds")
        self.assertLess(abs(expiry - (time.time() + 30 * 86400)), 3600, expiry)
        Msgs(old).ping_pong()
        self.assertNotEqual(old_cert, None)
        old.sock.close()
        # a broken file on reload: logged, the running certificate kept
        with open(self.key, "w") as f:
            f.write("broken\n")
        h.send_signal(signal.SIGHUP)
        wait_for(lambda: 'msg="reload: tls certificate invalid' in h.log(), 10,
                 desc="reload refused")
        s = ctx.wrap_socket(self.plain_socket(h), server_hostname=HOST)
        s.close()
        self.assertTrue(h.alive())


if __name__ == "__main__":
    main()
