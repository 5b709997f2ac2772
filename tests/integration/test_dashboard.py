#!/usr/bin/python3
"""The dashboard's HTTP answers: / and /assets/... with the right Content-Type, ETag and
If-None-Match → 304, gzip by Accept-Encoding (its own ETag, Vary), Cache-Control, HEAD,
the security headers, 404/405 for what is not there, and keep-alive across all of it."""

import gzip
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HubTestCase, SocketReader, main, read_http_response  # noqa: E402

ASSETS = {
    "/": "text/html; charset=utf-8",
    "/assets/app.js": "text/javascript; charset=utf-8",
    "/assets/metricast.js": "text/javascript; charset=utf-8",
    "/assets/charts.js": "text/javascript; charset=utf-8",
    "/assets/uplot.js": "text/javascript; charset=utf-8",
    "/assets/app.css": "text/css; charset=utf-8",
    "/assets/uplot.css": "text/css; charset=utf-8",
    "/assets/favicon.svg": "image/svg+xml",
}
WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web")


class DashboardHTTP(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def test_content_types_and_bodies(self):
        for path, ctype in ASSETS.items():
            status, hd, body = self.h.get(path)
            self.assertEqual(status, 200, path)
            self.assertEqual(hd.get("Content-Type"), ctype, path)
            self.assertEqual(int(hd.get("Content-Length")), len(body), path)
            self.assertIsNone(hd.get("Content-Encoding"), path)
            self.assertEqual(hd.get("Cache-Control"), "no-cache", path)
        # the bytes are the committed files, compiled in
        with open(os.path.join(WEB, "index.html"), "rb") as f:
            self.assertEqual(self.h.get("/")[2], f.read())
        with open(os.path.join(WEB, "metricast.js"), "rb") as f:
            self.assertEqual(self.h.get("/assets/metricast.js")[2], f.read())
        # the page's query string does not matter (?token=, ?poll=)
        status, _hd, body = self.h.get("/?token=abc&poll=1")
        self.assertEqual(status, 200)
        self.assertIn(b'<script type="module" src="/assets/app.js">', body)

    def test_security_headers(self):
        for path in ASSETS:
            _s, hd, _b = self.h.get(path)
            csp = hd.get("Content-Security-Policy")
            self.assertRegex(csp, r"default-src 'none'", path)
            self.assertRegex(csp, r"script-src 'self';", path)
            self.assertRegex(csp, r"style-src 'self';", path)
            self.assertRegex(csp, r"frame-ancestors 'none'", path)
            self.assertNotIn("unsafe", csp, path)
            self.assertEqual(hd.get("X-Content-Type-Options"), "nosniff", path)
            self.assertEqual(hd.get("Referrer-Policy"), "no-referrer", path)
            self.assertEqual(hd.get("X-Frame-Options"), "DENY", path)
        # connect-src names the Host the page was asked for, ws and wss
        _s, hd, _b = self.h.get("/", headers={"Host": "ops.example.com:8443"})
        self.assertIn("connect-src 'self' ws://ops.example.com:8443 wss://ops.example.com:8443;",
                      hd.get("Content-Security-Policy"))
        # a Host that could inject into the policy is left out
        _s, hd, _b = self.h.get("/", headers={"Host": "evil; script-src *"})
        self.assertIn("connect-src 'self';", hd.get("Content-Security-Policy"))
        self.assertNotIn("evil", hd.get("Content-Security-Policy"))
        # no CORS for anybody unless listed (see DashboardWithTokens)
        self.assertIsNone(self.h.get("/assets/metricast.js")[1].get("Access-Control-Allow-Origin"))

    def test_etag_and_304(self):
        for path in ASSETS:
            status, hd, body = self.h.get(path)
            etag = hd.get("ETag")
            self.assertRegex(etag, r'^"[0-9a-f]{32}"$', path)
            status, hd2, body2 = self.h.get(path, headers={"If-None-Match": etag})
            self.assertEqual(status, 304, path)
            self.assertEqual(body2, b"", path)
            self.assertEqual(hd2.get("ETag"), etag, path)
            self.assertEqual(hd2.get("Cache-Control"), "no-cache", path)
            self.assertIsNone(hd2.get("Content-Length"), path)
            self.assertIsNone(hd2.get("Content-Type"), path)
            self.assertIsNotNone(hd2.get("Content-Security-Policy"), path)
            # weak form, lists, *
            for inm in ("W/" + etag, '"nope", ' + etag, "*"):
                self.assertEqual(self.h.get(path, headers={"If-None-Match": inm})[0], 304, inm)
            for inm in ('"nope"', etag[:-2] + '"', "garbage"):
                status, _hd, b = self.h.get(path, headers={"If-None-Match": inm})
                self.assertEqual((status, b), (200, body), inm)
        # every file its own tag
        tags = [self.h.get(p)[1].get("ETag") for p in ASSETS]
        self.assertEqual(len(set(tags)), len(tags))

    def test_gzip(self):
        for path in ("/", "/assets/uplot.js", "/assets/app.js"):
            _s, plain_hd, plain = self.h.get(path)
            status, hd, body = self.h.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
            self.assertEqual(status, 200)
            self.assertEqual(hd.get("Content-Encoding"), "gzip", path)
            self.assertEqual(hd.get("Vary"), "Accept-Encoding", path)
            self.assertEqual(plain_hd.get("Vary"), "Accept-Encoding", path)
            self.assertEqual(int(hd.get("Content-Length")), len(body))
            self.assertLess(len(body), len(plain))
            self.assertEqual(gzip.decompress(body), plain, path)
            gz_tag = hd.get("ETag")
            self.assertEqual(gz_tag, plain_hd.get("ETag")[:-1] + '-gz"')
            # each representation revalidates against its own tag
            self.assertEqual(self.h.get(path, headers={"Accept-Encoding": "gzip",
                                                       "If-None-Match": gz_tag})[0], 304)
            self.assertEqual(self.h.get(path, headers={"If-None-Match": gz_tag})[0], 200)
            # refused gzip
            _s, hd, body = self.h.get(path, headers={"Accept-Encoding": "gzip;q=0, br"})
            self.assertIsNone(hd.get("Content-Encoding"))
            self.assertEqual(body, plain)

    def test_head(self):
        for path in ASSETS:
            _s, hd_get, body = self.h.get(path)
            status, hd, head_body = self.h.request("HEAD", path)
            self.assertEqual(status, 200, path)
            self.assertEqual(head_body, b"", path)
            self.assertEqual(int(hd.get("Content-Length")), len(body), path)
            for k in ("Content-Type", "ETag", "Cache-Control", "Content-Security-Policy"):
                self.assertEqual(hd.get(k), hd_get.get(k), (path, k))

    def test_not_there(self):
        for path in ("/assets/", "/assets/nope.js", "/assets/../metrics", "/index.html",
                     "/assets/app.js/x"):
            status, hd, _b = self.h.get_json(path)
            self.assertEqual(status, 404, path)
        status, hd, doc = self.h.get_json("/assets/nope.js")
        self.assertEqual(doc["error"], "not_found")
        status, hd, _b = self.h.request("POST", "/", body=b"x")
        self.assertEqual(status, 405)
        self.assertEqual(hd.get("Allow"), "GET, HEAD")
        status, _hd, _b = self.h.request("POST", "/assets/app.js", body=b"x")
        self.assertEqual(status, 405)

    def test_keep_alive_with_304_between(self):
        """A 304 has no body: the next answer on the same connection must parse."""
        etag = self.h.get("/assets/app.css")[1].get("ETag")
        s = self.h.raw_socket()
        try:
            req = ("GET /assets/app.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n"
                   "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                   "GET /assets/favicon.svg HTTP/1.1\r\nHost: x\r\n\r\n" % etag)
            s.sendall(req.encode())
            r = SocketReader(s)
            a = read_http_response(r)
            b = read_http_response(r, head=True)
            c = read_http_response(r)
            self.assertEqual((a.status, a.body), (304, b""))
            self.assertEqual((b.status, b.body), (200, b""))
            self.assertEqual(c.status, 200)
            self.assertTrue(c.body.startswith(b"<svg"))
        finally:
            s.close()


SECRET = "dash-read-0123456789abcdef"
CONFIG = """[token.dash]
secret = %s
scopes = read

[server]
allowed_origins = http://app.example.com
""" % SECRET


class DashboardWithTokens(HubTestCase):
    """With tokens: the page needs a read token (?token= accepted there), its files none;
    pages on listed origins may import the JS client (CORS), others are refused."""

    def setUp(self):
        super().setUp()
        self.h = self.hub(config=CONFIG)

    def test_page_needs_a_token_its_files_do_not(self):
        status, hd, _b = self.h.get("/")
        self.assertEqual(status, 401)
        self.assertIn("Bearer", hd.get("WWW-Authenticate"))
        self.assertEqual(self.h.get("/?token=wrong")[0], 401)
        status, hd, body = self.h.get("/?token=" + SECRET)
        self.assertEqual(status, 200)
        self.assertIn(b"/assets/app.js", body)
        self.assertEqual(self.h.get("/", headers={"Authorization": "Bearer " + SECRET})[0], 200)
        for path in ASSETS:
            if path != "/":
                self.assertEqual(self.h.get(path)[0], 200, path)
        # the data still needs the token, in the header
        self.assertEqual(self.h.get("/api/v1/metrics")[0], 401)
        self.assertEqual(self.h.get("/api/v1/metrics",
                                    headers={"Authorization": "Bearer " + SECRET})[0], 200)

    def test_client_module_for_listed_origins(self):
        status, hd, body = self.h.get("/assets/metricast.js",
                                      headers={"Origin": "http://app.example.com"})
        self.assertEqual(status, 200)
        self.assertEqual(hd.get("Access-Control-Allow-Origin"), "http://app.example.com")
        self.assertIn(b"export class MetricastClient", body)
        status, hd, _b = self.h.get("/assets/metricast.js", headers={"Origin": "http://evil.example"})
        self.assertEqual(status, 403)
        self.assertIsNone(hd.get("Access-Control-Allow-Origin"))


if __name__ == "__main__":
    main()
