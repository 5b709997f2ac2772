#!/usr/bin/python3
"""Packaging: DESTDIR install + uninstall, the systemd unit (systemd-analyze verify),
sd_notify readiness, SIGHUP, --check-config, and (root + MC_PACKAGE_TEST=1 only) the .deb
installed, run, and purged on this machine."""

import glob
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, HOST, REPO, SANITIZE, Hub, HubTestCase,  # noqa: E402
                     daemon_project_version, main, run_daemon, run_daemon_full, t, wait_for)

BUILD = os.path.dirname(os.path.abspath(DAEMON))
UNIT = os.path.join(REPO, "packaging", "metricastd.service")
EXAMPLE = os.path.join(REPO, "examples", "metricastd.conf")


def cache_value(name):
    with open(os.path.join(BUILD, "CMakeCache.txt"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
            if m:
                return m.group(1)
    return None


def option_keys():
    """(section, key) of every option, from --help's "[section] key = default" lines."""
    code, out, err = run_daemon_full(["--help"])
    assert code == 0, err
    return re.findall(r"^\s+\[([a-z_]+)\] ([a-z_]+) = ", out, re.M)


def library_dir():
    """CMAKE_INSTALL_LIBDIR as configured: lib, or lib/<multiarch> for /usr."""
    return cache_value("CMAKE_INSTALL_LIBDIR")


def files_under(root):
    out = []
    for d, _dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


class TestInstall(unittest.TestCase):
    """(a) `cmake --install` into a DESTDIR, then packaging/uninstall.sh (make uninstall)."""

    def setUp(self):
        self.dest = tempfile.mkdtemp(prefix="mc-destdir-")
        self.manifest = os.path.join(BUILD, "install_manifest.txt")
        # keep the manifest of a real `make install` from this build dir intact
        self.saved = {}
        for p in (self.manifest, self.manifest + ".destdir"):
            if os.path.exists(p):
                self.saved[p] = p + ".test-saved"
                shutil.copy2(p, self.saved[p])

    def tearDown(self):
        shutil.rmtree(self.dest, ignore_errors=True)
        for p in (self.manifest, self.manifest + ".destdir"):
            if p in self.saved:
                shutil.move(self.saved[p], p)
            elif os.path.exists(p):
                os.unlink(p)

    def install(self):
        env = dict(os.environ, DESTDIR=self.dest)
        r = subprocess.run(["cmake", "--install", BUILD], env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def uninstall(self):
        env = dict(os.environ, DESTDIR=self.dest)
        r = subprocess.run([os.path.join(REPO, "packaging", "uninstall.sh"), self.manifest],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_install_lists_expected_files_and_uninstall_removes_them(self):
        prefix = cache_value("CMAKE_INSTALL_PREFIX").lstrip("/")
        unitdir = cache_value("METRICAST_SYSTEMD_UNITDIR").lstrip("/")
        libdir = prefix + "/" + library_dir()
        etc = "etc" if prefix == "usr" else prefix + "/etc"
        version = daemon_project_version()
        self.install()
        want = sorted([
            prefix + "/sbin/metricastd",
            prefix + "/share/man/man8/metricastd.8",
            unitdir + "/metricastd.service",
            prefix + "/share/doc/metricast/metricastd.conf",
            prefix + "/share/doc/metricast/CONFIG.md",
            prefix + "/share/doc/metricast/OPERATIONS.md",
            prefix + "/share/doc/metricast/CLIENTS.md",
            prefix + "/share/doc/metricast/README.md",
            etc + "/metricast/metricastd.conf",
            # the client side
            prefix + "/bin/metricast",
            prefix + "/share/man/man1/metricast.1",
            prefix + "/include/metricast.h",
            libdir + "/libmetricast.so",
            libdir + "/libmetricast.so.0",
            libdir + "/libmetricast.so." + version,
            libdir + "/libmetricast.a",
            libdir + "/pkgconfig/metricast.pc",
            prefix + "/share/doc/metricast/examples/statsd_client.c",
            prefix + "/share/doc/metricast/examples/source_session.c",
        ])
        self.assertEqual(files_under(self.dest), want)
        with open(self.manifest, encoding="utf-8") as f:
            listed = sorted(p.strip().lstrip("/") for p in f if p.strip())
        self.assertEqual(listed, want, "install_manifest.txt lists exactly what was installed")
        self.assertTrue(os.access(os.path.join(self.dest, prefix, "sbin/metricastd"), os.X_OK))
        with open(os.path.join(self.dest, unitdir, "metricastd.service"), encoding="utf-8") as f:
            unit = f.read()
        self.assertIn("ExecStart=/%s/sbin/metricastd --config /%s/metricast/metricastd.conf"
                      % (prefix, etc), unit)
        # the installed binaries run; the CLI needs no shared library of ours
        r = subprocess.run([os.path.join(self.dest, prefix, "sbin/metricastd"), "--version"],
                           capture_output=True, text=True, timeout=t(10))
        self.assertEqual(r.returncode, 0, r.stderr)
        cli = os.path.join(self.dest, prefix, "bin/metricast")
        r = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=t(10))
        self.assertEqual((r.returncode, r.stdout), (0, "metricast %s\n" % version), r.stderr)
        r = subprocess.run(["ldd", cli], capture_output=True, text=True)
        self.assertNotIn("libmetricast", r.stdout)
        # the shared library: a soname, the public API exported, internals hidden
        so = os.path.join(self.dest, libdir, "libmetricast.so." + version)
        self.assertEqual(os.readlink(os.path.join(self.dest, libdir, "libmetricast.so.0")),
                         "libmetricast.so." + version)
        dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True).stdout
        self.assertIn("Library soname: [libmetricast.so.0]", dyn)
        syms = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True,
                              text=True).stdout.split()
        ours = [x for x in syms if "metricast" in x]
        self.assertIn("metricast_source_open", ours)
        self.assertIn("metricast_statsd_count", ours)
        self.assertEqual([x for x in ours if not x.startswith("metricast_")], [],
                         "only metricast_* names are exported")
        self.assertEqual([x for x in ours if x.startswith("metricast__")], [],
                         "internal metricast__* names are hidden")
        with open(os.path.join(self.dest, libdir, "pkgconfig", "metricast.pc"),
                  encoding="utf-8") as f:
            pc = f.read()
        self.assertIn("prefix=/%s\n" % prefix, pc)
        self.assertIn("Version: %s\n" % version, pc)
        self.assertIn("libdir=${prefix}/%s\n" % library_dir(), pc)

        self.uninstall()
        self.assertEqual(files_under(self.dest), [], "uninstall left files behind")
        self.assertFalse(os.path.exists(os.path.join(self.dest, etc, "metricast")))
        self.assertFalse(os.path.exists(os.path.join(self.dest, prefix, "share/doc/metricast")))

    def test_examples_build_against_the_installed_header_and_pc(self):
        """cc example.c $(pkg-config --cflags --libs metricast), with the .pc found in the
        DESTDIR tree; the programs run against a real hub with the installed .so."""
        if not shutil.which("pkg-config") or not shutil.which("cc"):
            self.skipTest("pkg-config or cc missing (scripts/deps.sh installs them)")
        prefix = cache_value("CMAKE_INSTALL_PREFIX")
        self.install()
        root = self.dest + prefix
        libdir = os.path.join(root, library_dir())
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
        flags = subprocess.run(["pkg-config", "--define-variable=prefix=" + root, "--cflags",
                                "--libs", "metricast"], capture_output=True, text=True, env=env)
        self.assertEqual(flags.returncode, 0, flags.stderr)
        self.assertIn("-I%s/include" % root, flags.stdout)
        self.assertIn("-lmetricast", flags.stdout)
        static = subprocess.run(["pkg-config", "--define-variable=prefix=" + root, "--static",
                                 "--libs", "metricast"], capture_output=True, text=True, env=env)
        for lib in ("-lwslay", "-ljansson", "-lcrypto"):
            self.assertIn(lib, static.stdout)
        # an ASan build installs an instrumented library: the programs need the runtime too
        san = ["-fsanitize=address,undefined"] if SANITIZE else []
        bins = {}
        for ex in ("statsd_client", "source_session"):
            src = os.path.join(root, "share/doc/metricast/examples", ex + ".c")
            out = os.path.join(self.dest, ex)
            r = subprocess.run(["cc", "-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra",
                                "-Werror", src, "-o", out] + san + flags.stdout.split(),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            bins[ex] = out
        run_env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        r = subprocess.run(["ldd", bins["source_session"]], capture_output=True, text=True,
                           env=run_env)
        self.assertIn(os.path.join(libdir, "libmetricast.so.0"), r.stdout)
        hub = Hub(statsd=True)
        try:
            r = subprocess.run([bins["statsd_client"], HOST, str(hub.statsd_port)],
                               capture_output=True, text=True, timeout=t(20), env=run_env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^lines \d+, datagrams [1-9]\d*, sampled out \d+, "
                                       r"dropped datagrams 0\n$")
            r = subprocess.run([bins["source_session"], hub.url, "robot_pkg", "2"],
                               capture_output=True, text=True, timeout=t(20), env=run_env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("connected (session 1)", r.stdout)
            self.assertRegex(r.stdout, r"event evt_robot_\d+_[a-z0-9]{6} stored as seq \d+")
            self.assertIn("sent 3 messages, dropped 0", r.stdout)

            def seen():
                _s, _h, doc = hub.get_json("/api/v1/metrics")
                names = {(x["name"], x["labels"].get("source")) for x in doc["series"]}
                return (("example_orders", None) in names and ("cpu_usage", "robot_pkg") in names
                        and names)
            wait_for(seen, desc="both examples' series in the hub")
        finally:
            hub.stop()
            hub.close()

    def test_reinstall_keeps_an_edited_config_and_uninstall_leaves_it(self):
        prefix = cache_value("CMAKE_INSTALL_PREFIX").lstrip("/")
        etc = "etc" if prefix == "usr" else prefix + "/etc"
        conf = os.path.join(self.dest, etc, "metricast", "metricastd.conf")
        self.install()
        with open(conf, "a", encoding="utf-8") as f:
            f.write("\n# edited by the admin\n")
        out = self.install()
        self.assertIn("Keeping", out)
        with open(conf, encoding="utf-8") as f:
            self.assertIn("edited by the admin", f.read())
        self.uninstall()
        self.assertEqual(files_under(self.dest), [os.path.join(etc, "metricast",
                                                               "metricastd.conf")])


class TestUnit(unittest.TestCase):
    """(b) systemd-analyze verify on packaging/metricastd.service."""

    def test_unit_declares_what_the_daemon_needs(self):
        with open(UNIT, encoding="utf-8") as f:
            unit = f.read()
        for line in ["Type=notify", "DynamicUser=yes", "StateDirectory=metricast",
                     "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                     "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
                     "ExecReload=/bin/kill -HUP $MAINPID", "MemoryDenyWriteExecute=yes"]:
            self.assertIn("\n" + line + "\n", unit)
        self.assertRegex(unit, r"\nExecStart=/usr/sbin/metricastd .*--data /var/lib/metricast\n")
        self.assertRegex(unit, r"\nLimitNOFILE=\d{6,}\n")

    def test_systemd_analyze_verify(self):
        sa = shutil.which("systemd-analyze")
        if not sa:
            self.skipTest("systemd-analyze not installed (scripts/deps.sh installs systemd)")
        tmp = tempfile.mkdtemp(prefix="mc-unit-")
        try:
            # the unit names /usr/sbin/metricastd and man:metricastd(8): point both at the
            # build so verify checks the executable and the Documentation= page for real
            with open(UNIT, encoding="utf-8") as f:
                unit = f.read().replace("/usr/sbin/metricastd", DAEMON)
            path = os.path.join(tmp, "metricastd.service")
            with open(path, "w", encoding="utf-8") as f:
                f.write(unit)
            os.makedirs(os.path.join(tmp, "man", "man8"))
            shutil.copy(os.path.join(REPO, "man", "metricastd.8"),
                        os.path.join(tmp, "man", "man8"))
            env = dict(os.environ, MANPATH=os.path.join(tmp, "man"), SYSTEMD_LOG_LEVEL="notice")
            man = ["--man=yes"] if shutil.which("man") else ["--man=no"]
            r = subprocess.run([sa, "verify"] + man + [path], env=env, capture_output=True,
                               text=True, timeout=60)
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 0 and re.search(r"Failed to (connect|initialize|setup)|"
                                               r"No such file or directory.*bus", out):
                self.skipTest("systemd-analyze cannot run in this container: " + out[:300])
            self.assertEqual(r.returncode, 0, "systemd-analyze verify:\n" + out)
            self.assertNotIn(os.path.basename(path), out, "verify warned:\n" + out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class TestCheckConfig(unittest.TestCase):
    """(c) --check-config: good file → exit 0 and every key; bad files → exit 2, one line."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mc-check-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, text, name="c.ini"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_example_passes_and_every_key_is_printed(self):
        code, out, err = run_daemon_full(["--check-config", EXAMPLE])
        self.assertEqual(code, 0, err)
        keys = option_keys()
        self.assertGreater(len(keys), 20)
        section = None
        seen = set()
        for line in out.splitlines():
            m = re.match(r"^\[([a-z_]+)\]$", line)
            if m:
                section = m.group(1)
            m = re.match(r"^([a-z_]+) =( .*)?$", line)
            if m:
                seen.add((section, m.group(1)))
        self.assertEqual(sorted(set(keys) - seen), [], "keys missing from:\n" + out)
        self.assertEqual(sorted(seen - set(keys)), [])
        # every section of the table is in the example
        with open(EXAMPLE, encoding="utf-8") as f:
            example = f.read()
        for s in {s for s, _k in keys}:
            self.assertIn("\n[%s]\n" % s, example)

    def test_effective_values_after_env_and_flags_and_output_loads_back(self):
        path = self.write("[stream]\ntick = 2s\n[http]\nmax_body_bytes = 1m\n")
        code, out, err = run_daemon_full(
            ["--check-config", path, "--tick", "250ms"],
            env={"METRICAST_HTTP_MAX_BODY_BYTES": "2m", "METRICAST_NATS": "nats://u:pw@n:4222"})
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"\ntick = 250ms\n")          # flag beats file
        self.assertRegex(out, r"\nmax_body_bytes = 2m\n")   # env beats file
        self.assertRegex(out, r"\nurl = nats://\*\*\*@n:4222\n")  # credentials masked
        self.assertNotIn("u:pw@", out)  # (a bare "pw" may occur in the temp dir's name)
        dump = self.write(out, "dump.ini")
        code2, out2, err2 = run_daemon_full(["--check-config", dump],
                                            env={"METRICAST_NATS": "nats://u:pw@n:4222"})
        self.assertEqual(code2, 0, err2)
        strip = lambda s: [ln for ln in s.splitlines() if not ln.startswith("# config file")]
        self.assertEqual(strip(out2), strip(out))

    def test_bad_files_exit_2_with_one_line(self):
        cases = [
            ("[server]\nlisten = 1.2.3\n", "listen"),
            ("[nope]\nx = 1\n", "nope"),
            ("[stream]\ntick = 0\n", "tick"),
            ("[server]\nthreads = many\n", "threads"),
            ("[http]\nbogus = 1\n", "bogus"),
            ("this is not ini\n", "syntax"),
        ]
        for text, needle in cases:
            path = self.write(text)
            code, out, err = run_daemon_full(["--check-config", path])
            lines = [ln for ln in err.splitlines() if ln.strip()]
            self.assertEqual(code, 2, (text, err))
            self.assertEqual(len(lines), 1, (text, err))
            self.assertIn(needle, lines[0])
            self.assertEqual(out, "", "nothing on stdout for a bad file")
        code, err = run_daemon(["--check-config", os.path.join(self.tmp, "missing.ini")])
        self.assertEqual(code, 2)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        code, err = run_daemon(["--check-config"])
        self.assertEqual(code, 2)
        self.assertIn("--check-config", err)

    def test_help_mentions_check_config(self):
        code, out, err = run_daemon_full(["--help"])
        self.assertEqual(code, 0, err)
        self.assertIn("--check-config FILE", out)


class NotifySocket:
    def __init__(self, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "mc-notify-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
            self.tmp = None
        else:
            self.tmp = tempfile.mkdtemp(prefix="mc-notify-")
            path = os.path.join(self.tmp, "notify")
            self.sock.bind(path)
            self.env_value = path

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def wait_for(self, what, timeout):
        deadline = time.monotonic() + timeout
        got = []
        while time.monotonic() < deadline:
            m = self.recv(max(0.01, deadline - time.monotonic()))
            if m is None:
                break
            got.append(m)
            if what in m.split("\n"):
                return got
        raise AssertionError("no %s within %.1fs; got %r" % (what, timeout, got))

    def close(self):
        self.sock.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class TestNotify(HubTestCase):
    """Type=notify: READY=1 once listening, RELOADING/READY around SIGHUP, STOPPING=1."""

    def run_cycle(self, abstract):
        ns = NotifySocket(abstract)
        try:
            hub = Hub(env={"NOTIFY_SOCKET": ns.env_value})
            try:
                got = ns.wait_for("READY=1", t(10))
                self.assertIn("STATUS=listening on 127.0.0.1:%d" % hub.port, got[-1])
                status, _h, _b = hub.get("/api/v1/health")
                self.assertEqual(status, 200)
                hub.send_signal(signal.SIGHUP)
                got = ns.wait_for("READY=1", t(10))
                self.assertEqual(got[0], "RELOADING=1")
                deadline = time.monotonic() + t(5)
                while 'msg="reload requested"' not in hub.log():
                    self.assertLess(time.monotonic(), deadline, hub.log())
                    time.sleep(0.02)
                self.assertTrue(hub.alive(), "SIGHUP must not stop the daemon")
                self.assertIn("changed=0", hub.log())
                self.assertEqual(hub.stop(), 0, hub.log())
                ns.wait_for("STOPPING=1", t(5))
            finally:
                hub.close()
        finally:
            ns.close()

    def test_abstract_socket(self):
        self.run_cycle(abstract=True)

    def test_path_socket(self):
        self.run_cycle(abstract=False)

    def test_sighup_reports_changed_settings(self):
        tmp = tempfile.mkdtemp(prefix="mc-hup-")
        try:
            conf = os.path.join(tmp, "m.ini")
            with open(conf, "w", encoding="utf-8") as f:
                f.write("[stream]\ntick = 1s\n")
            hub = Hub(args=["--config", conf])
            try:
                with open(conf, "w", encoding="utf-8") as f:
                    f.write("[stream]\ntick = 2s\n")
                hub.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + t(5)
                while 'msg="reload requested"' not in hub.log():
                    self.assertLess(time.monotonic(), deadline, hub.log())
                    time.sleep(0.02)
                log = hub.log()
                self.assertIn('msg="reload: setting changed, restart to apply" '
                              'setting=stream.tick running=1s new=2s', log)
                self.assertIn("changed=1 applied=0", log)
                with open(conf, "w", encoding="utf-8") as f:
                    f.write("[stream]\ntick = never\n")
                hub.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + t(5)
                while "configuration invalid" not in hub.log():
                    self.assertLess(time.monotonic(), deadline, hub.log())
                    time.sleep(0.02)
                self.assertTrue(hub.alive())
                self.assertEqual(hub.stop(), 0, hub.log())
            finally:
                hub.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def package_installed(name):
    """True when dpkg knows the package in any state but not-installed (config-files too)."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", name],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed")


def newest_source_mtime():
    newest = 0
    for pattern in ("src/*.[ch]", "lib/*.[ch]", "include/*.h", "cli/*.c", "CMakeLists.txt",
                    "packaging/**/*", "man/*", "examples/*"):
        for p in glob.glob(os.path.join(REPO, pattern), recursive=True):
            if os.path.isfile(p):
                newest = max(newest, os.path.getmtime(p))
    return newest


@unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0
                     and os.environ.get("MC_PACKAGE_TEST") == "1",
                     "installs a .deb on this machine: only as root with MC_PACKAGE_TEST=1")
class TestDeb(unittest.TestCase):
    """(d) dpkg -i the package, run the installed daemon, dpkg --purge, nothing remains."""

    def find_or_build_deb(self):
        debs = sorted(glob.glob(os.path.join(REPO, "dist", "metricast_*.deb")),
                      key=os.path.getmtime)
        if debs and os.path.getmtime(debs[-1]) >= newest_source_mtime():
            return debs[-1]
        r = subprocess.run(["make", "--no-print-directory", "-C", REPO, "deb"],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        debs = sorted(glob.glob(os.path.join(REPO, "dist", "metricast_*.deb")),
                      key=os.path.getmtime)
        self.assertTrue(debs, "make deb left no dist/metricast_*.deb:\n" + r.stdout[-2000:])
        return debs[-1]

    def test_install_run_purge(self):
        if package_installed("metricast"):
            self.skipTest("package metricast is already installed here; not touching it")
        deb = self.find_or_build_deb()
        t0 = time.monotonic()
        listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                                 check=True).stdout
        files = subprocess.run(["tar", "-t"], input=listing, capture_output=True,
                               check=True).stdout.decode().split()
        paths = ["/" + os.path.normpath(p) for p in files if not p.endswith("/")]
        self.assertIn("/etc/metricast/metricastd.conf", paths)
        self.assertIn("/lib/systemd/system/metricastd.service", paths)
        multiarch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
                                   capture_output=True, text=True).stdout.strip()
        lib = "/usr/lib/" + multiarch if multiarch else "/usr/lib"
        version = daemon_project_version()
        for p in ("/usr/bin/metricast", "/usr/share/man/man1/metricast.1.gz",
                  "/usr/share/man/man8/metricastd.8.gz", "/usr/include/metricast.h",
                  lib + "/libmetricast.so", lib + "/libmetricast.so.0",
                  lib + "/libmetricast.so." + version, lib + "/libmetricast.a",
                  lib + "/pkgconfig/metricast.pc",
                  "/usr/share/doc/metricast/examples/source_session.c"):
            self.assertIn(p, paths)
        ctl = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], capture_output=True,
                             check=True).stdout
        trig = subprocess.run(["tar", "-xO", "./triggers"], input=ctl, capture_output=True)
        self.assertEqual(trig.stdout.decode().strip(), "activate-noawait ldconfig")
        daemon = [p for p in paths if re.match(r"^/usr/s?bin/metricastd$", p)]
        self.assertEqual(len(daemon), 1, paths)
        info = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True,
                              text=True, check=True).stdout
        for lib in ("libuv1", "libjansson4", "libinih1", "libwslay1", "libssl3", "libc6"):
            self.assertIn(lib, info)

        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            r = subprocess.run(["dpkg", "-i", deb], capture_output=True, text=True, env=env,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for p in paths:
                self.assertTrue(os.path.exists(p), p)
            data = tempfile.mkdtemp(prefix="mc-deb-data-")
            try:
                proc = subprocess.Popen(
                    [daemon[0], "--config", "/etc/metricast/metricastd.conf",
                     "--listen", "%s:0" % HOST, "--statsd", "off", "--data", data],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    port = None
                    deadline = time.monotonic() + 10
                    while port is None and time.monotonic() < deadline:
                        line = proc.stderr.readline().decode()
                        m = re.search(r'msg="http listening" addr=[0-9.]+:(\d+)', line)
                        if m:
                            port = int(m.group(1))
                        self.assertTrue(line or proc.poll() is None, "daemon exited")
                    self.assertIsNotNone(port)
                    import http.client
                    c = http.client.HTTPConnection(HOST, port, timeout=5)
                    c.request("GET", "/api/v1/health")
                    resp = c.getresponse()
                    self.assertEqual(resp.status, 200)
                    self.assertIn(b"healthy", resp.read())
                    c.close()
                    # the installed CLI talks to the installed daemon
                    r = subprocess.run(["/usr/bin/metricast", "push", "deb_check=1",
                                        "--url", "http://%s:%d" % (HOST, port)],
                                       capture_output=True, text=True, timeout=30)
                    self.assertEqual((r.returncode, r.stdout),
                                     (0, "accepted 1, rejected 0\n"), r.stderr)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    self.assertEqual(proc.wait(timeout=10), 0)
                    proc.stderr.close()
            finally:
                shutil.rmtree(data, ignore_errors=True)
        finally:
            r = subprocess.run(["dpkg", "--purge", "metricast"], capture_output=True,
                               text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(package_installed("metricast"))
        left = [p for p in paths + ["/etc/metricast", "/var/lib/metricast",
                                    "/var/lib/private/metricast",
                                    "/usr/share/doc/metricast"] if os.path.lexists(p)]
        self.assertEqual(left, [], "left behind after purge")
        self.assertLess(time.monotonic() - t0, 60)


if __name__ == "__main__":
    main()
