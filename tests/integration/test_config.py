#!/usr/bin/python3
"""Start-up configuration: flags, environment, INI file, precedence, start-up errors,
--help and --version."""

import os
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, HOST, Hub, HubTestCase, daemon_project_version,  # noqa: E402
                     main, run_daemon, run_daemon_full)

ALL_FLAGS = [
    "--listen", "--statsd", "--data", "--tick", "--aggregate-every", "--config", "--demo",
    "--nats", "--threads", "--log-level", "--http-max-header-bytes",
    "--http-max-body-bytes", "--http-header-timeout", "--http-idle-timeout",
    "--ws-max-message-bytes", "--ws-ping-interval", "--ws-idle-timeout",
    "--health-max-loop-lag", "--health-interval", "--help", "--version",
]

# A POST with a small body to a GET-only route: 413 when the body limit is below its
# size, otherwise the route answers (405). Used to observe the effective body limit.
BODY = b"x" * 2000


def body_status(hub):
    status, _h, _b = hub.request("POST", "/api/v1/health", body=BODY,
                                 headers={"Content-Type": "application/octet-stream"})
    return status


class StartupErrorCase(HubTestCase):
    """Helpers for "bad configuration → one line on stderr naming it, exit 2"."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mc-it-cfg-")
        self.data = os.path.join(self.tmp, "data")
        os.mkdir(self.data)

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    def base(self):
        return ["--listen", "%s:0" % HOST, "--statsd", "off", "--data", self.data]

    def write_config(self, text, name="bad.ini"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertStartupError(self, args, *needles, env=None):
        code, err = run_daemon(args, timeout=10.0, env=env)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ctx = "args=%r env=%r\nstderr:\n%s" % (args, env, err)
        self.assertEqual(code, 2, "exit status %s, expected 2; %s" % (code, ctx))
        self.assertEqual(len(lines), 1, "expected exactly one stderr line; %s" % ctx)
        low = lines[0].lower()
        self.assertTrue(any(n.lower() in low for n in needles),
                        "stderr line does not name any of %r; %s" % (needles, ctx))
        return lines[0]


class TestHelpVersion(HubTestCase):
    def test_help_lists_every_flag_and_exits_0(self):
        code, out, err = run_daemon_full(["--help"])
        self.assertEqual(code, 0, err)
        text = out + err
        missing = [f for f in ALL_FLAGS if f not in text]
        self.assertEqual(missing, [], "--help output lacks flags; output:\n" + text)

    def test_version(self):
        code, out, err = run_daemon_full(["--version"])
        self.assertEqual(code, 0, err)
        text = (out.strip() or err.strip())
        self.assertRegex(text, r"^metricastd \S+$", "output: %r / %r" % (out, err))
        want = daemon_project_version()
        if want:
            self.assertEqual(text, "metricastd %s" % want)

    def test_help_does_not_start_server(self):
        # --help must not bind or create anything: works even with an unusable --data
        code, out, err = run_daemon_full(["--help", "--data", "/proc/nonexistent/x"])
        self.assertEqual(code, 0, err)


class TestStartupErrors(StartupErrorCase):
    def test_unknown_config_section(self):
        cfg = self.write_config("[server]\nthreads = 1\n\n[frobnicator]\nspeed = 3\n")
        self.assertStartupError(self.base() + ["--config", cfg], "frobnicator")

    def test_unknown_config_key(self):
        cfg = self.write_config("[server]\nthreads = 1\nwarp_factor = 9\n")
        self.assertStartupError(self.base() + ["--config", cfg], "warp_factor")

    def test_bad_value_in_config(self):
        cfg = self.write_config("[stream]\ntick = 0\n")
        self.assertStartupError(self.base() + ["--config", cfg], "tick")

    def test_bad_value_flag(self):
        self.assertStartupError(self.base() + ["--tick", "abc"], "tick")

    def test_bad_value_flag_equals_form(self):
        self.assertStartupError(self.base() + ["--tick=abc"], "tick")

    def test_bad_value_env(self):
        self.assertStartupError(self.base(), "tick", env={"METRICAST_TICK": "abc"})

    def test_bad_values_table(self):
        cases = [
            (["--tick", "0"], "tick"),
            (["--tick", "0.001"], "tick"),
            (["--tick", "3601"], "tick"),
            (["--tick", "-1"], "tick"),
            (["--aggregate-every", "0"], "aggregate"),
            (["--aggregate-every", "86401"], "aggregate"),
            (["--aggregate-every", "x"], "aggregate"),
            (["--threads", "65"], "threads"),
            (["--threads", "-1"], "threads"),
            (["--threads", "two"], "threads"),
            (["--log-level", "verbose"], "log"),
            (["--nats", "http://127.0.0.1:4222"], "nats"),
            (["--http-max-header-bytes", "lots"], "header"),
            (["--http-max-body-bytes", "12q"], "body"),
            (["--http-header-timeout", "soon"], "header"),
            (["--http-idle-timeout", "-5s"], "idle"),
            (["--ws-max-message-bytes", "abc"], "message"),
            (["--ws-ping-interval", "1x"], "ping"),
            (["--ws-idle-timeout", "forever"], "idle"),
            (["--health-max-loop-lag", "zzz"], "lag"),
            (["--health-interval", "nope"], "interval"),
            (["--statsd", "nowhere"], "statsd"),
            (["--listen", "127.0.0.1"], "listen"),
        ]
        for extra, needle in cases:
            with self.subTest(args=extra):
                self.assertStartupError(self.base() + extra, needle)

    def test_bad_port(self):
        self.assertStartupError(["--listen", "127.0.0.1:99999", "--statsd", "off",
                                 "--data", self.data], "listen")

    def test_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            s.listen(1)
            port = s.getsockname()[1]
            self.assertStartupError(["--listen", "%s:%d" % (HOST, port), "--statsd", "off",
                                     "--data", self.data], "listen", str(port))

    def test_data_dir_is_regular_file(self):
        path = os.path.join(self.tmp, "plainfile")
        with open(path, "w") as f:
            f.write("not a directory\n")
        self.assertStartupError(["--listen", "%s:0" % HOST, "--statsd", "off",
                                 "--data", path], "data")

    def test_unknown_flag(self):
        self.assertStartupError(self.base() + ["--frobnicate"], "frobnicate")

    def test_unknown_flag_equals_form(self):
        self.assertStartupError(self.base() + ["--frobnicate=3"], "frobnicate")

    def test_flag_missing_value(self):
        self.assertStartupError(self.base() + ["--tick"], "tick")

    def test_nonexistent_config_file(self):
        path = os.path.join(self.tmp, "does-not-exist.ini")
        self.assertStartupError(self.base() + ["--config", path], "config", path)

    def test_nonexistent_config_file_via_env(self):
        path = os.path.join(self.tmp, "does-not-exist.ini")
        self.assertStartupError(self.base(), "config", path,
                                env={"METRICAST_CONFIG": path})


class TestAcceptedSettings(StartupErrorCase):
    def test_every_flag_accepted_in_both_forms(self):
        args = ["--tick", "0.5", "--aggregate-every=60", "--threads", "2",
                "--log-level=debug", "--nats", "nats://127.0.0.1:4222",
                "--http-max-header-bytes", "8k", "--http-max-body-bytes=1m",
                "--http-header-timeout", "500ms", "--http-idle-timeout=1m",
                "--ws-max-message-bytes", "64k", "--ws-ping-interval=20s",
                "--ws-idle-timeout", "60", "--health-max-loop-lag", "500ms",
                "--health-interval=2s", "--demo=false"]
        hub = self.hub(args)
        status, _h, _b = hub.get("/api/v1/health")
        self.assertEqual(status, 200)

    def test_boundaries_accepted(self):
        for extra in (["--tick", "0.01", "--aggregate-every", "1", "--threads", "64"],
                      ["--tick", "3600", "--aggregate-every", "86400", "--threads", "0"]):
            with self.subTest(args=extra):
                hub = self.hub(extra)
                self.assertEqual(hub.get("/health")[0], 200)
                hub.stop()

    def test_full_config_file_with_inline_comments(self):
        cfg = (
            "; metricast configuration\n"
            "[server]\n"
            "listen = 127.0.0.1:0 ; overridden by the flag anyway\n"
            "threads = 2 ; two workers\n"
            "demo = false\n"
            "[statsd]\n"
            "listen = off\n"
            "[store]\n"
            "data_dir = %s\n"
            "aggregate_every = 30 ; seconds\n"
            "[stream]\n"
            "tick = 1\n"
            "[nats]\n"
            "url = nats://127.0.0.1:4222\n"
            "[log]\n"
            "level = info\n"
            "[http]\n"
            "max_header_bytes = 16k\n"
            "max_body_bytes = 4m\n"
            "header_timeout = 10s\n"
            "idle_timeout = 60s\n"
            "[ws]\n"
            "max_message_bytes = 64k\n"
            "ping_interval = 20s\n"
            "idle_timeout = 1m\n"
            "[health]\n"
            "max_loop_lag = 500ms\n"
            "interval = 2s\n"
        ) % self.data
        hub = self.hub(config=cfg)
        self.assertEqual(hub.get("/api/v1/health")[0], 200)

    def test_config_file_alone_provides_listen_and_data(self):
        # no --listen/--data flags at all: the file supplies them
        cfg = ("[server]\nlisten = 127.0.0.1:0\n[statsd]\nlisten = off\n"
               "[store]\ndata_dir = %s\n" % self.data)
        hub = self.hub(config=cfg, defaults=False)
        self.assertEqual(hub.get("/health")[0], 200)


class TestPrecedence(StartupErrorCase):
    def test_file_sets_body_limit(self):
        hub = self.hub(config="[http]\nmax_body_bytes = 1k\n")
        self.assertEqual(body_status(hub), 413)

    def test_default_body_limit_accepts_small_body(self):
        hub = self.hub()
        self.assertNotEqual(body_status(hub), 413)

    def test_env_overrides_file(self):
        hub = self.hub(config="[http]\nmax_body_bytes = 1k\n",
                       env={"METRICAST_HTTP_MAX_BODY_BYTES": "1m"})
        self.assertNotEqual(body_status(hub), 413)
        hub.stop()
        hub = self.hub(config="[http]\nmax_body_bytes = 1m\n",
                       env={"METRICAST_HTTP_MAX_BODY_BYTES": "1k"})
        self.assertEqual(body_status(hub), 413)

    def test_flag_overrides_env(self):
        hub = self.hub(["--http-max-body-bytes", "1m"],
                       env={"METRICAST_HTTP_MAX_BODY_BYTES": "1k"})
        self.assertNotEqual(body_status(hub), 413)
        hub.stop()
        hub = self.hub(["--http-max-body-bytes=1k"],
                       env={"METRICAST_HTTP_MAX_BODY_BYTES": "1m"})
        self.assertEqual(body_status(hub), 413)

    def test_flag_overrides_file(self):
        hub = self.hub(["--http-max-body-bytes", "1k"],
                       config="[http]\nmax_body_bytes = 1m\n")
        self.assertEqual(body_status(hub), 413)

    def test_config_named_by_env(self):
        path = self.write_config("[http]\nmax_body_bytes = 1k\n", "env.ini")
        hub = self.hub(env={"METRICAST_CONFIG": path})
        self.assertEqual(body_status(hub), 413)

    def test_config_flag_overrides_config_env(self):
        bad = os.path.join(self.tmp, "missing.ini")
        good = self.write_config("[http]\nmax_body_bytes = 1k\n", "good.ini")
        hub = self.hub(["--config", good], env={"METRICAST_CONFIG": bad})
        self.assertEqual(body_status(hub), 413)

    # Every layer is validated, even when a higher one overrides the value: a typo in the
    # config file must not hide behind a flag until the day the flag is removed.
    def test_bad_file_value_fails_even_if_env_overrides(self):
        cfg = self.write_config("[stream]\ntick = 0\n")
        self.assertStartupError(["--config", cfg, "--listen", "127.0.0.1:0", "--statsd", "off",
                                 "--data", os.path.join(self.tmp, "data")],
                                "tick", env={"METRICAST_TICK": "1"})

    def test_bad_env_value_fails_even_if_flag_overrides(self):
        self.assertStartupError(["--tick", "1", "--listen", "127.0.0.1:0", "--statsd", "off",
                                 "--data", os.path.join(self.tmp, "data")],
                                "METRICAST_TICK", env={"METRICAST_TICK": "abc"})

    def test_bad_file_value_fails_even_if_flag_overrides(self):
        cfg = self.write_config("[stream]\ntick = 0 ; invalid\n")
        self.assertStartupError(["--config", cfg, "--tick=2", "--listen", "127.0.0.1:0",
                                 "--statsd", "off", "--data", os.path.join(self.tmp, "data")],
                                "tick")

    def test_env_listen_used_without_flag(self):
        hub = self.hub(["--statsd", "off", "--data", os.path.join(self.tmp, "data")],
                       defaults=False, env={"METRICAST_LISTEN": "127.0.0.1:0"})
        self.assertEqual(hub.get("/health")[0], 200)


if __name__ == "__main__":
    main()
