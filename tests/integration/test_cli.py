#!/usr/bin/python3
"""The metricast CLI against the real daemon: push (accepted, rejected, usage errors),
query (human and JSON, unknown series), tail (full update, filters, events, --json, the
hub stopping under it), the one-line error when the hub is down, the token on the wire,
and --help against the man page."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, HOST, REPO, HubTestCase, daemon_project_version,  # noqa: E402
                     free_port, main, t, wait_for)

BUILD = os.path.dirname(os.path.abspath(DAEMON))
CLI = os.environ.get("METRICAST_CLI") or os.path.join(BUILD, "metricast")
MAN = os.path.join(REPO, "man", "metricast.1")
SAN = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("METRICAST_")}
    e.update(extra or {})
    return e


def cli(*args, timeout=10, extra_env=None):
    r = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=t(timeout), env=env(extra_env))
    for m in SAN:
        if m in r.stderr:
            raise AssertionError("sanitizer report from metricast:\n" + r.stderr)
    return r.returncode, r.stdout, r.stderr


def one_line(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line on stderr, got %r" % err
    return lines[0]


class TestPushQuery(HubTestCase):
    def test_push_kinds_labels_and_rejections(self):
        h = self.hub()
        code, out, err = cli("push", "cpu=45.2", "mem=30", "--source", "robot_9", "--url", h.url)
        self.assertEqual((code, out, err), (0, "accepted 2, rejected 0\n", ""))
        code, out, _ = cli("push", "jobs=3", "--kind", "counter", "--label", "queue=asr",
                           "--label=tier=gold", "--url=" + h.url)
        self.assertEqual((code, out), (0, "accepted 1, rejected 0\n"))
        code, out, _ = cli("--url", h.url, "push", "users=alice", "users=bob", "--kind", "set")
        self.assertEqual(code, 0, out)
        code, out, _ = cli("push", "lat=12.5", "--kind", "timer", "--url", h.url, "--json")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["accepted"], 1)

        def series(name):
            _s, _h, doc = h.get_json("/api/v1/metrics?match=" + name)
            return doc["series"]
        cpu = series("cpu")
        self.assertEqual([(s["labels"], s["kind"], s["value"]) for s in cpu],
                         [({"source": "robot_9"}, "gauge", 45.2)])
        jobs = series("jobs")[0]
        self.assertEqual((jobs["labels"], jobs["kind"], jobs["value"]),
                         ({"queue": "asr", "tier": "gold"}, "counter", 3))
        self.assertEqual(series("lat")[0]["kind"], "timer")
        self.assertEqual(series("users")[0]["kind"], "set")
        # the hub refuses: reported with the reason, exit 1
        code, out, err = cli("push", "metricast_own=1", "ok_one=2", "--url", h.url)
        self.assertEqual(code, 1)
        self.assertEqual(out, "accepted 1, rejected 1 (reserved_name: 1)\n")
        code, out, _ = cli("push", "cpu=7", "--kind", "counter", "--url", h.url)
        self.assertEqual((code, out), (1, "accepted 0, rejected 1 (kind_conflict: 1)\n"))
        # usage errors: exit 2, one line, nothing sent
        for args, needle in ((["push"], "at least one"),
                             (["push", "x=abc"], "not a number"),
                             (["push", "x"], "NAME=VALUE"),
                             (["push", "=3"], "NAME=VALUE"),
                             (["push", "x=1", "--kind", "meter"], "--kind"),
                             (["push", "x=1", "--label", "novalue"], "--label"),
                             (["push", "x=inf"], "not a number")):
            code, out, err = cli(*args, "--url", h.url)
            self.assertEqual(code, 2, (args, out, err))
            self.assertIn(needle, one_line(err))
            self.assertEqual(out, "")

    def test_query_human_json_and_unknown(self):
        h = self.hub()
        cli("push", "temp=21.5", "--source", "r1", "--url", h.url)
        cli("push", "temp=30", "--source", "r2", "--url", h.url)
        cli("push", "lat=10", "lat=20", "--kind", "timer", "--url", h.url)

        def points():
            code, out, _ = cli("query", "temp", "--url", h.url, "--window", "60", "--json")
            doc = json.loads(out) if code == 0 else {}
            return len(doc.get("series", [])) == 2 and all(s["points"] for s in doc["series"])
        wait_for(points, timeout=5, desc="both temp series have a point")
        code, out, err = cli("query", "temp", "--source", "r1", "--window", "60", "--url", h.url)
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "temp (gauge), last 60 s, resolution 1 s")
        self.assertEqual(lines[1], '{source="r1"}  1 point')
        self.assertRegex(lines[2], r"^  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +21\.5$")
        self.assertEqual(len(lines), 3, out)
        code, out, _ = cli("query", "temp", "--url", h.url, "--json")
        doc = json.loads(out)
        self.assertEqual(doc["name"], "temp")
        self.assertEqual(sorted(s["labels"]["source"] for s in doc["series"]), ["r1", "r2"])
        # timers print their columns
        wait_for(lambda: cli("query", "lat", "--url", h.url)[1].count("\n") >= 4,
                 desc="lat history")
        code, out, _ = cli("query", "lat", "--url", h.url)
        self.assertIn("count", out.splitlines()[2])
        self.assertIn("p99", out.splitlines()[2])
        # no such series: the hub's 404, one line, exit 1
        code, out, err = cli("query", "nope", "--url", h.url)
        self.assertEqual((code, out), (1, ""))
        self.assertRegex(one_line(err), r"^metricast: the hub answered 404 not_found: .*nope")
        code, _o, err = cli("query", "--url", h.url)
        self.assertEqual(code, 2)
        code, _o, err = cli("query", "temp", "--window", "0", "--url", h.url)
        self.assertEqual(code, 2)
        self.assertIn("--window", err)


class TestTail(HubTestCase):
    def test_full_update_then_changes_filters_and_events(self):
        h = self.hub()
        cli("push", "cpu_usage=45.2", "--source", "robot_001", "--url", h.url)
        cli("push", "mem_usage=30", "--source", "robot_001", "--url", h.url)
        code, out, err = cli("tail", "--topics", "metrics", "--count", "1", "--url", h.url)
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r'(?m)^\d\d:\d\d:\d\d\.\d{3}Z  cpu_usage\{source="robot_001"\}  45\.2$')
        self.assertRegex(out, r'(?m)^\d\d:\d\d:\d\d\.\d{3}Z  mem_usage\{source="robot_001"\}  30$')
        code, out, _ = cli("tail", "--topics", "metrics", "--match", "cpu_*", "--count", "1",
                           "--url", h.url)
        self.assertIn("cpu_usage", out)
        self.assertNotIn("mem_usage", out)
        code, out, _ = cli("tail", "--topics", "metrics", "--source", "robot_00?", "--count", "1",
                           "--json", "--url", h.url)
        msg = json.loads(out.splitlines()[0])
        self.assertEqual((msg["type"], msg["full"]), ("metrics:update", True))
        # events: live ones, printed as they come
        p = subprocess.Popen([CLI, "tail", "--topics", "events", "--count", "2", "--url", h.url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        wait_for(lambda: h.get_json("/api/v1/summary")[2]["subscribers"] == 1,
                 desc="tail subscribed")
        seqs = []
        for i in range(2):
            status, _h, body = h.request("POST", "/api/v1/events",
                                         body=json.dumps({"type": "tasks.created",
                                                          "payload": {"task": i}}))
            self.assertEqual(status, 202)
            seqs.append(json.loads(body)["seq"])
        try:
            out, err = p.communicate(timeout=t(10))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        self.assertEqual(p.returncode, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        for ln, seq, i in zip(lines, seqs, range(2)):
            self.assertRegex(ln, r'^\d\d:\d\d:\d\d\.\d{3}Z  event #%d tasks\.created '
                                 r'source=tasks_service \{"task":\s?%d\}$' % (seq, i))
        # replay with --since: the retained events after it, then live
        code, out, _ = cli("tail", "--topics", "tasks.*", "--since", seqs[0] - 1, "--count", 2,
                           "--json", "--url", h.url)
        got = [json.loads(x) for x in out.splitlines()]
        self.assertEqual([m["seq"] for m in got], seqs)
        # a bad topic: the hub's refusal, one line, exit 1
        code, out, err = cli("tail", "--topics", "Not.A.Topic", "--url", h.url)
        self.assertEqual(code, 1)
        self.assertIn("unknown_topic", one_line(err))

    def test_hub_stopping_ends_tail_with_an_error(self):
        h = self.hub()
        p = subprocess.Popen([CLI, "tail", "--url", h.url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env())
        wait_for(lambda: h.get_json("/api/v1/summary")[2]["ws_connections"] == 1,
                 desc="tail connected")
        self.assertEqual(h.stop(), 0)
        out, err = p.communicate(timeout=t(10))
        self.assertEqual(p.returncode, 1, err)
        self.assertEqual(one_line(err),
                         "metricast: the hub closed the stream (1001 server shutting down)")

    def test_sigint_ends_tail_cleanly(self):
        h = self.hub()
        p = subprocess.Popen([CLI, "tail", "--url", h.url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env())
        wait_for(lambda: h.get_json("/api/v1/summary")[2]["ws_connections"] == 1,
                 desc="tail connected")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=t(10))
        self.assertEqual((p.returncode, err), (0, ""))
        wait_for(lambda: h.get_json("/api/v1/summary")[2]["ws_connections"] == 0,
                 desc="tail's connection closed")


class TestErrors(HubTestCase):
    def test_hub_down_is_one_line_and_exit_1(self):
        port = free_port()
        url = "http://%s:%d" % (HOST, port)
        for args in (["tail"], ["push", "x=1"], ["query", "x"]):
            code, out, err = cli(*args, "--url", url)
            self.assertEqual((code, out), (1, ""), args)
            self.assertEqual(one_line(err), "metricast: cannot reach the hub at %s: connection "
                                            "refused (is metricastd running?)" % url)
        # METRICAST_URL is the default
        code, _o, err = cli("query", "x", extra_env={"METRICAST_URL": url})
        self.assertEqual(code, 1)
        self.assertIn(url, err)

    def test_error_answers_and_bad_urls(self):
        h = self.hub()
        code, out, err = cli("push", "x=1", "--url", h.url + "/no/such/prefix")
        self.assertEqual(code, 1)
        self.assertRegex(one_line(err), r"^metricast: the hub answered 404 not_found")
        for url, needle in (("https://127.0.0.1:1", "TLS"), ("ftp://x", "scheme"),
                            ("http://u:p@h:1", "credentials")):
            code, _o, err = cli("query", "x", "--url", url)
            self.assertEqual(code, 1, url)
            self.assertIn(needle, one_line(err))

    def test_token_on_the_wire(self):
        """A listener that records requests and answers 401 (this build's hub has no
        tokens yet): Authorization: Bearer on HTTP, ?token= plus the header on the
        upgrade, the token from METRICAST_TOKEN, and the 401 reported."""
        srv = socket.socket()
        srv.bind((HOST, 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        seen = []

        def serve():
            srv.settimeout(t(15))
            try:
                while len(seen) < 3:
                    c, _ = srv.accept()
                    with c:
                        c.settimeout(t(5))
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = c.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                        seen.append(data.decode("latin-1"))
                        body = b'{"error":"unauthorized","detail":"a valid token is needed"}'
                        c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json"
                                  b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                  % (len(body), body))
            except OSError:
                pass
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        url = "http://%s:%d" % (HOST, port)
        try:
            code, _o, err = cli("push", "x=1", "--token", "tok-1", "--url", url)
            self.assertEqual(code, 1)
            self.assertEqual(one_line(err), "metricast: the hub answered 401 unauthorized: a "
                                            "valid token is needed")
            code, _o, err = cli("query", "x", "--url", url, extra_env={"METRICAST_TOKEN": "tok-2"})
            self.assertEqual(code, 1)
            code, _o, err = cli("tail", "--token", "tok-3+", "--url", url)
            self.assertEqual(code, 1)
            self.assertIn("wants a valid token", one_line(err))
            th.join(t(5))
        finally:
            srv.close()
        self.assertEqual(len(seen), 3, seen)
        self.assertTrue(seen[0].startswith("POST /api/v1/ingest HTTP/1.1\r\n"), seen[0])
        self.assertIn("\r\nAuthorization: Bearer tok-1\r\n", seen[0])
        self.assertIn("\r\nAuthorization: Bearer tok-2\r\n", seen[1])
        self.assertTrue(seen[2].startswith("GET /ws?token=tok-3%2B HTTP/1.1\r\n"), seen[2])
        self.assertIn("\r\nAuthorization: Bearer tok-3+\r\n", seen[2])
        # a token that cannot be a header value is a usage error, nothing is sent
        code, _o, err = cli("push", "x=1", "--token", "two words", "--url", url)
        self.assertEqual(code, 2)
        self.assertIn("--token", one_line(err))


class TestTokens(HubTestCase):
    CONF = ("[token.robot]\nsecret = ingest-secret-0123456789ab\nscopes = ingest\n"
            "[token.viewer]\nsecret = read-secret-0123456789abcd\nscopes = read\n")

    def test_against_a_hub_with_tokens(self):
        h = self.hub(config=self.CONF)
        ingest, read = "ingest-secret-0123456789ab", "read-secret-0123456789abcd"
        code, out, err = cli("push", "tok_gauge=5", "--url", h.url, "--token", ingest)
        self.assertEqual((code, out), (0, "accepted 1, rejected 0\n"), err)
        code, out, err = cli("push", "tok_gauge=6", "--url", h.url)
        self.assertEqual(code, 1)
        self.assertRegex(one_line(err), r"^metricast: the hub answered 401 ")
        code, out, err = cli("push", "tok_gauge=7", "--url", h.url, "--token", read)
        self.assertEqual(code, 1)
        self.assertRegex(one_line(err), r"^metricast: the hub answered 403 ")
        wait_for(lambda: cli("query", "tok_gauge", "--url", h.url,
                             extra_env={"METRICAST_TOKEN": read})[0] == 0
                 and "5" in cli("query", "tok_gauge", "--url", h.url, "--token", read)[1],
                 desc="query with the read token")
        code, out, err = cli("tail", "--topics", "metrics", "--count", "1", "--url", h.url,
                             "--token", read)
        self.assertEqual(code, 0, err)
        self.assertIn("tok_gauge", out)
        code, out, err = cli("tail", "--url", h.url)
        self.assertEqual(code, 1)
        self.assertEqual(one_line(err), "metricast: the hub at %s wants a valid token (401): use "
                                        "--token or METRICAST_TOKEN" % h.url)
        code, out, err = cli("tail", "--url", h.url, "--token", "wrong-secret-0123456789")
        self.assertEqual(code, 1)
        self.assertIn("(401)", err)


class TestHelp(HubTestCase):
    def test_help_version_and_the_man_page(self):
        code, out, err = cli("--help")
        self.assertEqual((code, err), (0, ""))
        for word in ("tail", "push", "query", "--url", "--token", "METRICAST_URL",
                     "METRICAST_TOKEN", "Exit status"):
            self.assertIn(word, out)
        with open(MAN, encoding="utf-8") as f:
            man = f.read().replace("\\-", "-")
        flags = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", out)))
        self.assertGreaterEqual(len(flags), 14, flags)
        missing = [f for f in flags if f not in man]
        self.assertEqual(missing, [], "flags in --help but not in man/metricast.1")
        # and the man page names no flag that does not exist
        extra = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", man)) - set(flags))
        self.assertEqual(extra, [], "flags in man/metricast.1 that --help does not know")
        code, out, _ = cli("--version")
        self.assertEqual((code, out), (0, "metricast %s\n" % daemon_project_version()))
        self.assertIn(daemon_project_version(), open(MAN, encoding="utf-8").read())
        self.assertEqual(cli("tail", "--help")[0], 0)
        for args, needle in (([], "usage"), (["frobnicate"], "unknown command"),
                             (["tail", "--bogus"], "unknown option"),
                             (["tail", "--count"], "needs a value"),
                             (["tail", "--count", "0"], "--count"),
                             (["tail", "--since", "-1"], "--since"),
                             (["query", "x", "--timeout", "0"], "--timeout"),
                             (["tail", "extra"], "no arguments")):
            code, _o, err = cli(*args)
            self.assertEqual(code, 2, (args, err))
            self.assertIn(needle, err)


if __name__ == "__main__":
    main()
