#!/usr/bin/python3
"""Access control (docs/SECURITY.md): tokens and scopes for HTTP and the WebSocket upgrade
(Authorization: Bearer and ?token=), per-topic restrictions, Origin checks and CORS, the
DNS-rebinding guard, SIGHUP reload of tokens, and secrets kept out of output and logs.

Real clients only: http.client, raw sockets (harness.RawWS) and the websockets library."""

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OP_CLOSE, SANITIZER_MARKERS, Hub, HubTestCase, RawWS, main,  # noqa: E402
                     parse_prom, prom_get, run_daemon_full, t, wait_for)

READ = "reader-secret-0123456789abcdef"
INGEST = "ingest-secret-0123456789abcdef"
PUBLISH = "publish-secret-0123456789abcdef"
ADMIN = "admin-secret-0123456789abcdef"
FILESECRET = "file-secret-0123456789abcdef"

TOKENS = """
[token.reader]
secret = %s
scopes = read
topics = metrics, telemetry.*
[token.ingester]
secret = %s
scopes = ingest
[token.publisher]
secret = %s
scopes = publish, read
[token.root]
secret = %s
scopes = admin
[token.fromfile]
secret_file = secret.txt
scopes = read
""" % (READ, INGEST, PUBLISH, ADMIN)


def bearer(secret):
    return {"Authorization": "Bearer " + secret}


def arun(coro, timeout=20.0):
    return asyncio.run(asyncio.wait_for(coro, t(timeout)))


class ClassHub(unittest.TestCase):
    """One daemon for the whole class (the cases only read or add): quicker than one per
    test. Its log is printed when a test fails; a sanitizer report fails the class."""

    CONFIG = None
    ARGS = ()

    @classmethod
    def setUpClass(cls):
        tmp = tempfile.mkdtemp(prefix="mc-sec-")
        with open(os.path.join(tmp, "secret.txt"), "w", encoding="utf-8") as f:
            f.write(FILESECRET + "\n")
        os.chmod(os.path.join(tmp, "secret.txt"), 0o600)
        cfg = os.path.join(tmp, "m.ini")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(cls.CONFIG or "")
        cls.h = Hub(args=["--config", cfg] + list(cls.ARGS))
        cls.cfgdir = tmp

    @classmethod
    def tearDownClass(cls):
        code = cls.h.stop()
        log = cls.h.log()
        cls.h.close()
        bad = [m for m in SANITIZER_MARKERS if m in log]
        if code != 0 or bad:
            sys.stderr.write(log)
            raise AssertionError("daemon exit %s, sanitizer: %s" % (code, bad))

    def run(self, result=None):
        n = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > n:
            sys.stderr.write("\n----- daemon log -----\n%s----- end -----\n" % self.h.log())
        return out

    def denied(self, reason):
        st, _h, body = self.h.get("/metrics", headers=bearer(ADMIN))
        self.assertEqual(st, 200, body)
        return prom_get(parse_prom(body.decode()), "metricast_auth_denied_total",
                        reason=reason) or 0

    def error_doc(self, body):
        doc = json.loads(body)
        self.assertIsInstance(doc.get("error"), str, doc)
        self.assertIsInstance(doc.get("detail"), str, doc)
        return doc


class TestTokensHttp(ClassHub):
    CONFIG = TOKENS

    READ_PATHS = ["/metrics", "/api/v1/metrics/prometheus", "/api/v1/metrics",
                  "/api/v1/summary", "/api/v1/series/x", "/api/v1/trends?metric=x"]

    def test_health_stays_public(self):
        for path in ("/health", "/api/v1/health"):
            st, _h, body = self.h.get(path)
            self.assertEqual(st, 200, body)

    def test_no_token_401(self):
        before = self.denied("missing_token")
        for path in self.READ_PATHS + ["/api/v1/sources", "/api/v1/events"]:
            with self.subTest(path=path):
                st, hdrs, body = self.h.get(path)
                self.assertEqual(st, 401, body)
                self.assertEqual(hdrs.get("WWW-Authenticate"), 'Bearer realm="metricast"')
                self.assertEqual(self.error_doc(body)["error"], "unauthorized")
        st, _h, body = self.h.request("POST", "/api/v1/ingest", body=b"x:1|c")
        self.assertEqual(st, 401, body)
        self.assertGreaterEqual(self.denied("missing_token"), before + 9)

    def test_wrong_token_401(self):
        before = self.denied("invalid_token")
        for hv in ("Bearer nope", "Bearer " + READ + "x", "Bearer " + READ[:-1],
                   "bearer " + READ.upper()):
            with self.subTest(auth=hv):
                st, hdrs, body = self.h.get("/api/v1/metrics", headers={"Authorization": hv})
                self.assertEqual(st, 401, body)
                self.assertIn('error="invalid_token"', hdrs.get("WWW-Authenticate", ""))
        self.assertEqual(self.denied("invalid_token"), before + 4)

    def test_not_bearer_401(self):
        for hv in ("Basic cmVhZGVyOnB3", READ, "Bearer", "Bearer a b"):
            with self.subTest(auth=hv):
                st, _h, body = self.h.get("/api/v1/metrics", headers={"Authorization": hv})
                self.assertEqual(st, 401, body)
                self.assertIn("Bearer", self.error_doc(body)["detail"])

    def test_wrong_scope_403(self):
        before = self.denied("insufficient_scope")
        cases = [("POST", "/api/v1/ingest", READ, b"x:1|c"),
                 ("POST", "/api/v1/events", READ, b'{"type":"tasks.created"}'),
                 ("GET", "/api/v1/metrics", INGEST, None),
                 ("GET", "/metrics", INGEST, None),
                 ("POST", "/api/v1/events", INGEST, b'{"type":"tasks.created"}'),
                 ("POST", "/api/v1/ingest", PUBLISH, b"x:1|c")]
        for method, path, secret, body in cases:
            with self.subTest(method=method, path=path):
                st, hdrs, rb = self.h.request(method, path, body=body, headers=bearer(secret))
                self.assertEqual(st, 403, rb)
                self.assertEqual(self.error_doc(rb)["error"], "forbidden")
                self.assertIn('error="insufficient_scope"', hdrs.get("WWW-Authenticate", ""))
        self.assertEqual(self.denied("insufficient_scope"), before + len(cases))

    def test_right_scope(self):
        for path in self.READ_PATHS[:4]:
            for secret in (READ, ADMIN, FILESECRET, PUBLISH):
                st, _h, body = self.h.get(path, headers=bearer(secret))
                self.assertEqual(st, 200, (path, body))
        st, _h, body = self.h.request("POST", "/api/v1/ingest", body=b"sec_c:1|c",
                                      headers=bearer(INGEST))
        self.assertEqual(st, 202, body)
        st, _h, body = self.h.request("POST", "/api/v1/ingest", body=b"sec_c:1|c",
                                      headers=bearer(ADMIN))
        self.assertEqual(st, 202, body)
        for secret in (PUBLISH, ADMIN):
            st, _h, body = self.h.request("POST", "/api/v1/events",
                                          body=b'{"type":"tasks.created","payload":{}}',
                                          headers=bearer(secret))
            self.assertEqual(st, 202, body)
            self.assertIn("seq", json.loads(body))

    def test_query_token_refused_off_the_websocket(self):
        st, _h, body = self.h.get("/api/v1/metrics?token=" + READ)
        self.assertEqual(st, 401, body)
        self.assertIn("Authorization: Bearer", self.error_doc(body)["detail"])

    def test_unknown_path_needs_a_token(self):
        self.assertEqual(self.h.get("/nope")[0], 401)
        self.assertEqual(self.h.get("/nope", headers=bearer(INGEST))[0], 404)

    def test_topic_restrictions_on_rest(self):
        before = self.denied("topic")
        st, _h, body = self.h.get("/api/v1/sources", headers=bearer(READ))
        self.assertEqual(st, 403, body)
        self.assertIn("sources", self.error_doc(body)["detail"])
        self.assertEqual(self.h.get("/api/v1/sources", headers=bearer(FILESECRET))[0], 200)
        # events: only the types the token's topics cover
        self.assertEqual(self.h.get("/api/v1/events", headers=bearer(READ))[0], 403)
        self.assertEqual(self.h.get("/api/v1/events?type=tasks.*", headers=bearer(READ))[0], 403)
        self.assertEqual(self.h.get("/api/v1/events?type=t*", headers=bearer(READ))[0], 403)
        st, _h, body = self.h.get("/api/v1/events?type=telemetry.*", headers=bearer(READ))
        self.assertEqual(st, 200, body)
        st, _h, body = self.h.get("/api/v1/events?type=telemetry.connection_*",
                                  headers=bearer(READ))
        self.assertEqual(st, 200, body)
        self.assertEqual(self.denied("topic"), before + 4)

    def test_every_answer_says_nosniff(self):
        for path, hdr in (("/health", {}), ("/nope", {}), ("/nope", bearer(READ)),
                          ("/api/v1/metrics", bearer(READ))):
            _st, hdrs, _b = self.h.get(path, headers=hdr)
            self.assertEqual(hdrs.get("X-Content-Type-Options"), "nosniff", path)


class TestTokensWebSocket(ClassHub):
    CONFIG = TOKENS

    def upgrade(self, path="/ws", headers=None):
        ws = RawWS(self.h.port, path=path, extra_headers=headers or {}, handshake=False)
        self.addCleanup(ws.close)
        ws.response = ws.handshake()
        return ws

    def expect_refused(self, status, path="/ws", headers=None):
        ws = self.upgrade(path, headers)
        self.assertEqual(ws.response.status, status, ws.response)
        return ws.response

    def next_json(self, ws, pred, timeout=5.0):
        deadline = time.monotonic() + t(timeout)
        while time.monotonic() < deadline:
            m = ws.recv_json(timeout)
            if pred(m):
                return m
        raise AssertionError("no matching message")

    def test_upgrade_without_token_401(self):
        r = self.expect_refused(401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="metricast"')

    def test_upgrade_wrong_token_401(self):
        self.expect_refused(401, headers=bearer("nope"))
        self.expect_refused(401, path="/ws?token=nope")
        self.expect_refused(401, path="/ws?token=")

    def test_upgrade_with_bearer_and_query_token(self):
        for path, hdr in (("/ws", bearer(READ)), ("/ws?token=" + READ, {}),
                          ("/ws?token=" + INGEST, {}), ("/ws?token=" + FILESECRET, {})):
            with self.subTest(path=path[:12], hdr=bool(hdr)):
                ws = self.upgrade(path, hdr)
                self.assertEqual(ws.response.status, 101, ws.response)
                ws.send_json({"type": "ping"})
                self.assertEqual(ws.recv_json(5)["type"], "pong")

    def test_upgrade_outside_scope_403(self):
        before = self.denied("insufficient_scope")
        self.expect_refused(403, "/ws?topics=metrics&token=" + INGEST)
        self.expect_refused(403, "/ws?source=robot_1&token=" + READ)
        self.expect_refused(403, "/ws?source=robot_1", bearer(PUBLISH))
        self.assertEqual(self.denied("insufficient_scope"), before + 3)
        # a topic outside the token's list
        self.expect_refused(403, "/ws?topics=metrics,sources&token=" + READ)
        self.expect_refused(403, "/ws?topics=events&token=" + READ)

    def test_upgrade_within_scope_streams(self):
        ws = self.upgrade("/ws?topics=metrics&token=" + READ)
        self.assertEqual(ws.response.status, 101, ws.response)
        m = self.next_json(ws, lambda m: m.get("type") == "metrics:update")
        self.assertTrue(m["full"])
        src = self.upgrade("/ws?source=sec_robot&token=" + INGEST)
        self.assertEqual(src.response.status, 101, src.response)
        src.send_json({"type": "sample", "metrics": {"sec_gauge": 7}})
        m = self.next_json(src, lambda m: m.get("type") == "metrics", timeout=5)
        self.assertEqual(m["data"]["source"], "sec_robot")

    def test_library_client(self):
        async def go(uri, headers):
            async with websockets.connect(uri, extra_headers=headers, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                return json.loads(await asyncio.wait_for(ws.recv(), t(5)))["type"]

        async def refused(uri, headers):
            try:
                async with websockets.connect(uri, extra_headers=headers, open_timeout=t(10)):
                    return None
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code

        self.assertEqual(arun(go(self.h.ws_url, bearer(READ))), "pong")
        self.assertEqual(arun(go(self.h.ws_url + "?token=" + ADMIN, {})), "pong")
        self.assertEqual(arun(refused(self.h.ws_url, {})), 401)
        self.assertEqual(arun(refused(self.h.ws_url + "?topics=alerts", bearer(READ))), 403)

    def test_messages_outside_scope_get_errors(self):
        before_scope = self.denied("insufficient_scope")
        before_topic = self.denied("topic")
        ws = self.upgrade("/ws", bearer(READ))
        self.assertEqual(ws.response.status, 101)
        for msg, want in (
                ({"type": "subscribe", "topics": ["sources"]}, "topic sources"),
                ({"type": "subscribe", "topics": ["events"]}, "topic events"),
                ({"type": "subscribe", "topics": ["metrics", "tasks.*"]}, "topic tasks.*"),
                ({"type": "subscribe", "topics": ["t*.created"]}, "topic t*.created"),
                ({"type": "publish", "data": {"type": "tasks.created"}}, "publish"),
                ({"type": "hello", "source": "r1"}, "ingest"),
                ({"type": "client_metrics", "metrics": {"fps": 60}}, "ingest")):
            with self.subTest(msg=msg):
                ws.send_json(msg)
                m = ws.recv_json(5)
                self.assertEqual((m["type"], m["error"]), ("error", "forbidden"), m)
                self.assertIn(want, m["detail"])
        # allowed: a covered pattern, and metrics
        ws.send_json({"type": "subscribe", "topics": ["telemetry.connection_*", "metrics"]})
        m = self.next_json(ws, lambda m: m.get("type") in ("metrics:update", "error"))
        self.assertEqual(m["type"], "metrics:update", m)
        self.assertEqual(self.denied("insufficient_scope"), before_scope + 3)
        self.assertEqual(self.denied("topic"), before_topic + 4)

        ing = self.upgrade("/ws", bearer(INGEST))
        ing.send_json({"type": "subscribe", "topics": ["metrics"]})
        m = ing.recv_json(5)
        self.assertEqual(m.get("error"), "forbidden", m)
        ing.send_json({"type": "hello", "source": "sec_r2"})
        m = self.next_json(ing, lambda m: m.get("type") in ("metrics", "error"))
        self.assertEqual(m["type"], "metrics", m)

        pub = self.upgrade("/ws", bearer(PUBLISH))
        pub.send_json({"type": "publish", "data": {"type": "tasks.created", "payload": {}}})
        m = self.next_json(pub, lambda m: m.get("type") in ("ack", "error"))
        self.assertEqual(m["type"], "ack", m)


ORIGINS = "[server]\nallowed_origins = https://ops.example.com, http://dash.example.com:8080\n"


class TestOrigins(ClassHub):
    """Open mode (no tokens) on loopback: origins still matter (cross-site WebSocket
    hijacking and request forgery against a hub on the user's own machine)."""
    CONFIG = ORIGINS

    def upgrade_status(self, origin, host=None):
        hdrs = {"Origin": origin} if origin else {}
        ws = RawWS(self.h.port, extra_headers=hdrs, handshake=False)
        try:
            if host:
                req = ws.handshake_bytes(omit=("Host",)).replace(
                    b"\r\n", b"\r\nHost: %s\r\n" % host.encode(), 1)
                ws.sock.sendall(req)
                from harness import read_http_response
                return read_http_response(ws.reader, 5, head=True).status
            return ws.handshake().status
        finally:
            ws.close()

    def test_websocket_origins(self):
        before = self.denied("origin")
        self.assertEqual(self.upgrade_status(None), 101)  # not a browser
        self.assertEqual(self.upgrade_status("https://ops.example.com"), 101)
        self.assertEqual(self.upgrade_status("HTTPS://OPS.example.com:443"), 101)
        self.assertEqual(self.upgrade_status("http://dash.example.com:8080"), 101)
        self.assertEqual(self.upgrade_status("http://127.0.0.1:%d" % self.h.port), 101)  # same
        self.assertEqual(self.upgrade_status("https://evil.example.com"), 403)
        self.assertEqual(self.upgrade_status("http://dash.example.com"), 403)  # other port
        self.assertEqual(self.upgrade_status("https://ops.example.com.evil.net"), 403)
        self.assertEqual(self.upgrade_status("null"), 403)
        self.assertEqual(self.upgrade_status("http://127.0.0.1:1"), 403)
        self.assertEqual(self.denied("origin"), before + 5)

    def test_library_client_with_a_foreign_origin(self):
        async def refused():
            try:
                async with websockets.connect(self.h.ws_url, origin="https://evil.example.com",
                                              open_timeout=t(10)):
                    return None
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
        self.assertEqual(arun(refused()), 403)

    def test_cors_only_for_listed_origins(self):
        st, hdrs, _b = self.h.get("/api/v1/metrics", headers={"Origin": "https://ops.example.com"})
        self.assertEqual(st, 200)
        self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), "https://ops.example.com")
        self.assertIn("Origin", hdrs.get("Vary", ""))
        # same origin: served, no CORS needed or given
        st, hdrs, _b = self.h.get("/api/v1/metrics",
                                  headers={"Origin": "http://127.0.0.1:%d" % self.h.port})
        self.assertEqual(st, 200)
        self.assertIsNone(hdrs.get("Access-Control-Allow-Origin"))
        # none: no CORS
        st, hdrs, _b = self.h.get("/api/v1/metrics")
        self.assertIsNone(hdrs.get("Access-Control-Allow-Origin"))
        # a foreign origin: refused (a simple POST from another site would be CSRF)
        st, hdrs, body = self.h.request("POST", "/api/v1/ingest", body=b"csrf:1|c",
                                        headers={"Origin": "https://evil.example.com",
                                                 "Content-Type": "text/plain"})
        self.assertEqual(st, 403, body)
        self.assertEqual(self.error_doc(body)["error"], "origin_not_allowed")
        self.assertIsNone(hdrs.get("Access-Control-Allow-Origin"))

    def test_preflight(self):
        hdr = {"Origin": "https://ops.example.com", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        st, hdrs, body = self.h.request("OPTIONS", "/api/v1/ingest", headers=hdr)
        self.assertEqual(st, 204, body)
        self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), "https://ops.example.com")
        self.assertIn("POST", hdrs.get("Access-Control-Allow-Methods", ""))
        self.assertIn("Authorization", hdrs.get("Access-Control-Allow-Headers", ""))
        hdr["Origin"] = "https://evil.example.com"
        st, hdrs, body = self.h.request("OPTIONS", "/api/v1/ingest", headers=hdr)
        self.assertEqual(st, 403, body)
        self.assertIsNone(hdrs.get("Access-Control-Allow-Origin"))
        # OPTIONS that is not a preflight: the route's answer (405)
        st, hdrs, _b = self.h.request("OPTIONS", "/api/v1/ingest")
        self.assertEqual(st, 405)

    def test_dns_rebinding_guard(self):
        """Loopback without tokens: a browser request naming another host is refused."""
        before = self.denied("host")
        browser = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
        for host, want in (("evil.example.com:%d" % self.h.port, 403),
                           ("127.0.0.1:%d" % self.h.port, 200),
                           ("localhost:%d" % self.h.port, 200),
                           ("[::1]:%d" % self.h.port, 200),
                           ("ops.example.com", 200)):  # an allowed origin's host
            with self.subTest(host=host):
                h = dict(browser, Host=host)
                st, _h, body = self.h.get("/api/v1/metrics", headers=h)
                self.assertEqual(st, want, body)
        # the same request from a non-browser client is not a rebinding victim
        self.assertEqual(self.h.get("/api/v1/metrics", headers={"Host": "x"})[0], 200)
        self.assertEqual(self.upgrade_status("http://evil.example.com:%d" % self.h.port,
                                             host="evil.example.com:%d" % self.h.port), 403)
        self.assertEqual(self.denied("host"), before + 2)


class TestTokenFiles(HubTestCase):
    def write(self, text, secret_mode=0o600, secret=FILESECRET):
        tmp = tempfile.mkdtemp(prefix="mc-sec-")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        with open(os.path.join(tmp, "secret.txt"), "w", encoding="utf-8") as f:
            f.write(secret + "\n")
        os.chmod(os.path.join(tmp, "secret.txt"), secret_mode)
        path = os.path.join(tmp, "m.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_bad_token_sections_exit_2_naming_them(self):
        cases = [
            ("[token.a]\nsecret = %s\nsecret_file = secret.txt\nscopes = read\n" % READ,
             "[token.a]", "not both"),
            ("[token.a]\nscopes = read\n", "[token.a]", "needs secret"),
            ("[token.a]\nsecret = %s\n" % READ, "[token.a]", "needs scopes"),
            ("[token.a]\nsecret = %s\nscopes = read, reed\n" % READ, "scopes", "\"reed\""),
            ("[token.a]\nsecret = %s\nscopes =\n" % READ, "scopes", "empty"),
            ("[token.a]\nsecret = %s\nscopes = read\ncolour = red\n" % READ, "colour",
             "unknown key"),
            ("[token.a]\nsecret = %s\nscopes = read\ntopics = Metrics\n" % READ, "topics",
             "not a topic glob"),
            ("[token.a]\nsecret = %s\nscopes = read\ntopics = ,\n" % READ, "topics", "empty"),
            ("[token.a]\nsecret = %s\nscopes = read\n[token.b]\nsecret = %s\nscopes = admin\n"
             % (READ, READ), "[token.b]", "same secret as [token.a]"),
            ("[token.a]\nsecret_file = missing.txt\nscopes = read\n", "secret_file",
             "cannot read"),
            ("[token.a]\nsecret = \"two words\"\nscopes = read\n", "secret", "printable"),
            ("[server]\nallowed_origins = ops.example.com\n", "allowed_origins",
             "not an origin"),
            ("[server]\nallowed_origins = https://x.com/path\n", "allowed_origins",
             "not an origin"),
        ]
        for text, where, what in cases:
            with self.subTest(text=text):
                path = self.write(text)
                for mode in (["--config", path, "--listen", "127.0.0.1:0", "--statsd", "off",
                              "--data", os.path.dirname(path)],
                             ["--check-config", path]):
                    code, out, err = run_daemon_full(mode)
                    self.assertEqual(code, 2, err)
                    line = err.strip().splitlines()[-1]
                    self.assertIn(where, line)
                    self.assertIn(what, line)
                    self.assertNotIn(READ, err + out)

    def test_check_config_masks_secrets_and_warns(self):
        path = self.write("[token.a]\nsecret = short\nscopes = read\n"
                          "[token.b]\nsecret_file = secret.txt\nscopes = ingest\n",
                          secret_mode=0o644)
        code, out, err = run_daemon_full(["--check-config", path])
        self.assertEqual(code, 0, err)
        self.assertIn("[token.a]\nsecret = ********\nscopes = read\n", out)
        self.assertIn("secret_file = secret.txt", out)
        self.assertNotIn("short", out.replace("secret is short", ""))
        self.assertNotIn(FILESECRET, out + err)
        self.assertIn("token secret is short", err)
        self.assertIn("readable by every user", err)

    def test_secrets_never_logged(self):
        path = self.write("[token.a]\nsecret = %s\nscopes = admin\n" % ADMIN)
        h = self.hub(args=["--config", path, "--log-level", "debug"])
        h.get("/api/v1/metrics", headers=bearer(ADMIN))
        h.get("/api/v1/metrics", headers=bearer(ADMIN + "x"))
        h.get("/api/v1/metrics?token=" + ADMIN)
        with RawWS(h.port, path="/ws?token=%s&topics=metrics" % ADMIN) as ws:
            self.assertEqual(ws.response.status, 101)
            ws.send_json({"type": "ping"})
            ws.recv_json(5)
        with RawWS(h.port, path="/ws?token=%sx" % ADMIN) as ws:
            self.assertEqual(ws.response.status, 401)
        h.stop()
        log = h.log()
        self.assertIn("access denied", log)  # debug lines were written
        self.assertNotIn(ADMIN, log)
        self.assertNotIn(ADMIN[:12], log)


class TestReload(HubTestCase):
    def conf(self, text):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def reload(self, h, marker='msg="reload requested"'):
        n = h.log().count(marker)
        h.send_signal(signal.SIGHUP)
        wait_for(lambda: h.log().count(marker) > n, 5, desc="reload logged")

    def subscriber(self, h, secret, topics="metrics"):
        ws = RawWS(h.port, path="/ws?topics=%s&token=%s" % (topics, secret))
        self.addCleanup(ws.close)
        self.assertEqual(ws.response.status, 101, ws.response)
        return ws

    def alive(self, ws):
        ws.send_json({"type": "ping"})
        deadline = time.monotonic() + t(5)
        while time.monotonic() < deadline:
            f = ws.recv_message(5)
            if f.opcode == OP_CLOSE:
                return False
            if f.json().get("type") == "pong":
                return True
        return False

    def setUp(self):
        super().setUp()
        tmp = tempfile.mkdtemp(prefix="mc-sec-")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        self.path = os.path.join(tmp, "m.ini")

    def test_new_tokens_apply_and_subscribers_stay(self):
        self.conf("[token.reader]\nsecret = %s\nscopes = read\n" % READ)
        h = self.hub(args=["--config", self.path])
        ws = self.subscriber(h, READ)
        self.assertEqual(h.get("/api/v1/metrics", headers=bearer(ADMIN))[0], 401)
        self.conf("[token.reader]\nsecret = %s\nscopes = read\n"
                  "[token.root]\nsecret = %s\nscopes = admin\n" % (READ, ADMIN))
        self.reload(h)
        self.assertIn('msg="reload: access policy applied" tokens=2', h.log())
        self.assertEqual(h.get("/api/v1/metrics", headers=bearer(ADMIN))[0], 200)
        self.assertEqual(h.get("/api/v1/metrics", headers=bearer(READ))[0], 200)
        self.assertTrue(self.alive(ws), "the subscriber of an unchanged token was dropped")
        # an unchanged file: nothing applied, nobody dropped
        self.reload(h)
        self.assertIn("changed=0 applied=0", h.log().strip().splitlines()[-1])
        self.assertTrue(self.alive(ws))

    def test_revoked_and_narrowed_tokens_close_their_connections(self):
        self.conf("[token.a]\nsecret = %s\nscopes = read\n[token.b]\nsecret = %s\nscopes = read\n"
                  "[token.c]\nsecret = %s\nscopes = read, ingest\n" % (READ, ADMIN, PUBLISH))
        h = self.hub(args=["--config", self.path])
        wa = self.subscriber(h, READ)             # a: its token is revoked
        wb = self.subscriber(h, ADMIN)            # b: narrowed to telemetry.* only
        wc = self.subscriber(h, PUBLISH, "telemetry.*")  # c: loses ingest, keeps what it uses
        self.conf("[token.b]\nsecret = %s\nscopes = read\ntopics = telemetry.*\n"
                  "[token.c]\nsecret = %s\nscopes = read\n" % (ADMIN, PUBLISH))
        self.reload(h)
        for ws, reason in ((wa, "token revoked"), (wb, "no longer allows")):
            f = ws.wait_close(5)
            self.assertIsNotNone(f)
            self.assertEqual(f.close_code, 1008)
            self.assertIn(reason, f.payload[2:].decode())
        self.assertTrue(self.alive(wc))
        self.assertEqual(h.get("/api/v1/metrics", headers=bearer(READ))[0], 401)
        doc = parse_prom(h.get("/metrics", headers=bearer(PUBLISH))[2].decode())
        self.assertEqual(prom_get(doc, "metricast_auth_denied_total", reason="revoked"), 2)

    def test_tokens_appearing_close_open_connections(self):
        self.conf("")
        h = self.hub(args=["--config", self.path])
        ws = RawWS(h.port, path="/ws?topics=metrics")
        self.addCleanup(ws.close)
        self.assertEqual(ws.response.status, 101)
        self.conf("[token.a]\nsecret = %s\nscopes = read\n" % READ)
        self.reload(h)
        f = ws.wait_close(5)
        self.assertEqual(f.close_code, 1008)
        self.assertIn("authentication required", f.payload[2:].decode())
        self.assertEqual(h.get("/api/v1/metrics")[0], 401)

    def test_invalid_tokens_keep_the_running_policy(self):
        self.conf("[token.a]\nsecret = %s\nscopes = read\n" % READ)
        h = self.hub(args=["--config", self.path])
        ws = self.subscriber(h, READ)
        self.conf("[token.a]\nsecret = %s\nscopes = reed\n" % READ)
        self.reload(h)
        self.assertIn("reload: access policy invalid, keeping the running ones", h.log())
        self.assertNotIn(READ, h.log())
        self.assertEqual(h.get("/api/v1/metrics", headers=bearer(READ))[0], 200)
        self.assertTrue(self.alive(ws))

    def test_allowed_origins_reload(self):
        self.conf("")
        h = self.hub(args=["--config", self.path])
        hdr = {"Origin": "https://ops.example.com"}
        self.assertEqual(h.get("/api/v1/metrics", headers=hdr)[0], 403)
        self.conf("[server]\nallowed_origins = https://ops.example.com\n")
        self.reload(h)
        st, hdrs, _b = h.get("/api/v1/metrics", headers=hdr)
        self.assertEqual(st, 200)
        self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), "https://ops.example.com")
        self.assertNotIn("setting=server.allowed_origins", h.log())


if __name__ == "__main__":
    main()
