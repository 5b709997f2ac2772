"""Shared integration-test harness for metricastd.

Every test program under tests/integration does::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import Hub, HubTestCase, run_daemon, ...

and is run standalone by CTest (``/usr/bin/python3 tests/integration/test_x.py``).

Environment:
  METRICASTD    path of the daemon binary (default: <repo>/build/metricastd)
  MC_SANITIZE   "ON" for an ASan+UBSan build: every timeout is multiplied by SCALE.
  MC_TEST_TMPDIR  where data directories and other test files go (default: /dev/shm
                when it is a usable tmpfs, else the system's temporary directory).

Only the standard library is used here (the WebSocket *library* client lives in the
test files); raw-socket HTTP and WebSocket helpers for abuse cases are below.
"""

import atexit
import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DAEMON = os.environ.get("METRICASTD") or os.path.join(REPO, "build", "metricastd")
SANITIZE = os.environ.get("MC_SANITIZE", "").strip().upper() in ("ON", "1", "TRUE", "YES")
SCALE = 3.0 if SANITIZE else 1.0
HOST = "127.0.0.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def t(seconds):
    """A timeout scaled for sanitizer builds."""
    return seconds * SCALE


def _test_tmpdir():
    """The directory every test's files go under (tempfile.mkdtemp's default from here on).

    A RAM-backed tmpfs when there is one: the daemon's SQLite store is still a real file
    with real locks, renames and sizes, but its fsync() no longer waits for the shared
    disk. On a machine where others write gigabytes, an fsync took over 5 s: a store
    created at start-up or checkpointed at exit then made start and stop "time out",
    which is the disk's latency, not the daemon's behaviour under test (power-loss
    durability is not something a test here can observe)."""
    want = os.environ.get("MC_TEST_TMPDIR")
    if want:
        return want
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        # executable: the packaging test builds and runs programs under it
        if (os.access(shm, os.W_OK | os.X_OK) and not st.f_flag & os.ST_NOEXEC
                and st.f_bavail * st.f_frsize >= 1 << 30):
            return shm
    except OSError:
        pass
    return None


# the system's temporary directory (TMPDIR, else /tmp...): for tests that need a real
# disk filesystem under their files (host metrics observe it)
SYSTEM_TMPDIR = tempfile.gettempdir()
tempfile.tempdir = _test_tmpdir() or SYSTEM_TMPDIR


# --------------------------------------------------------------------------------------
# process bookkeeping: whatever happens, no daemon survives the test program
# --------------------------------------------------------------------------------------
_LIVE = set()


def _kill_all():
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        _LIVE.discard(proc)


atexit.register(_kill_all)


def _on_term(signum, frame):  # CTest timeout sends SIGTERM/SIGKILL; clean up on TERM
    _kill_all()
    sys.exit(128 + signum)


with contextlib.suppress(ValueError):  # only possible in the main thread
    signal.signal(signal.SIGTERM, _on_term)


def daemon_project_version():
    """The version declared in the top-level CMakeLists.txt (project(... VERSION x))."""
    try:
        with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as f:
            m = re.search(r"project\s*\(\s*metricast\b[^)]*?VERSION\s+([0-9][^\s)]*)", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def clean_env(extra=None):
    """os.environ without any METRICAST_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICAST_")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run_daemon(args, timeout=10.0, env=None, stdin=subprocess.DEVNULL):
    """Run the daemon expecting it to exit by itself (start-up failures, --help, ...).

    Returns (exit_code, stderr_text); stdout is available via run_daemon_full().
    """
    code, _out, err = run_daemon_full(args, timeout=timeout, env=env, stdin=stdin)
    return code, err


def run_daemon_full(args, timeout=10.0, env=None, stdin=subprocess.DEVNULL):
    """Like run_daemon but returns (exit_code, stdout_text, stderr_text)."""
    proc = subprocess.Popen([DAEMON] + [str(a) for a in args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(env))
    _LIVE.add(proc)
    try:
        out, err = proc.communicate(timeout=t(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError("daemon %r did not exit within %.1fs; stderr:\n%s"
                             % (args, t(timeout), err.decode("utf-8", "replace")))
    finally:
        _LIVE.discard(proc)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------
# logfmt
# --------------------------------------------------------------------------------------
_LOGFMT_RE = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    out = {}
    for key, val in _LOGFMT_RE.findall(line):
        if val.startswith('"') and val.endswith('"') and len(val) >= 2:
            val = re.sub(r'\\(.)', r'\1', val[1:-1])
        out[key] = val
    return out


class DaemonStartError(AssertionError):
    pass


# --------------------------------------------------------------------------------------
# the daemon under test
# --------------------------------------------------------------------------------------
class Hub:
    """A running metricastd on 127.0.0.1:<ephemeral port>.

    Hub(args=[...], env={...}, config="ini text", defaults=True)
    `defaults` adds --listen 127.0.0.1:0 --statsd off --data <fresh dir> in front of args,
    and --host-metrics off unless host=True: the machine's own series (node_*) stay out of
    tests of other parts; tests/integration/test_host.py turns them on.
    """

    def __init__(self, args=(), env=None, config=None, defaults=True,
                 start_timeout=10.0, start=True, statsd=False, host=False):
        self.tmp = tempfile.mkdtemp(prefix="mc-it-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.mkdir(self.data_dir)
        self.log_path = os.path.join(self.tmp, "stderr.log")
        self.config_path = None
        argv = [DAEMON]
        if defaults:
            # statsd=True: a StatsD UDP listener on an ephemeral port (see statsd_port)
            argv += ["--listen", "%s:0" % HOST,
                     "--statsd", ("%s:0" % HOST) if statsd else "off",
                     "--data", self.data_dir,
                     "--host-metrics", "on" if host else "off"]
        if config is not None:
            self.config_path = os.path.join(self.tmp, "metricast.ini")
            with open(self.config_path, "w", encoding="utf-8") as f:
                f.write(config)
            argv += ["--config", self.config_path]
        argv += [str(a) for a in args]
        self.argv = argv
        self.env = env
        # an ssl.SSLContext for a hub started with --tls-cert: the HTTP helpers below,
        # url and ws_url then speak TLS (see make_self_signed)
        self.ssl_context = None
        self.proc = None
        self.port = None
        self.statsd = bool(statsd)
        self.statsd_port = None  # set by start() when statsd=True
        self._udp = None
        self.exit_code = None
        self.start_duration = None
        if start:
            self.start(start_timeout)

    # -- life cycle ---------------------------------------------------------------------
    def start(self, timeout=10.0):
        self._logf = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=self._logf,
                                     env=clean_env(self.env))
        _LIVE.add(self.proc)
        deadline = t0 + t(timeout)
        while True:
            addr = self._find_listen_addr()
            saddr = self._find_statsd_addr() if self.statsd else None
            if addr and (saddr or not self.statsd):
                self.port = addr[1]
                if saddr:
                    self.statsd_port = saddr[1]
                self.start_duration = time.monotonic() - t0
                return self
            if self.proc.poll() is not None:
                code = self.proc.returncode
                log = self.log()
                self.close()
                raise DaemonStartError("daemon exited with %s during start-up; argv=%r; "
                                       "env=%r\nstderr:\n%s" % (code, self.argv, self.env, log))
            if time.monotonic() > deadline:
                log = self.log()
                self.close()
                raise DaemonStartError("no 'http listening' log line within %.1fs; argv=%r; "
                                       "env=%r\nstderr:\n%s" % (t(timeout), self.argv, self.env, log))
            time.sleep(0.02)

    def _find_listen_addr(self):
        for line in self.log().splitlines():
            if 'msg="http listening"' not in line:
                continue
            m = re.search(r'\baddr="?([0-9.]+):([0-9]+)"?', line)
            if m:
                return m.group(1), int(m.group(2))
        return None

    def _find_statsd_addr(self):
        # msg="statsd listening" addr=127.0.0.1:PORT threads=N rcvbuf=...
        for line in self.log().splitlines():
            if 'msg="statsd listening"' not in line:
                continue
            rec = parse_logfmt(line)
            m = re.match(r"([0-9.]+):([0-9]+)$", rec.get("addr", ""))
            if m:
                return m.group(1), int(m.group(2))
        return None

    def send_statsd(self, payload):
        """Send one UDP datagram (bytes, or str encoded as UTF-8) to the StatsD port."""
        if self.statsd_port is None:
            raise AssertionError("hub was started without statsd=True")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if self._udp is None:
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.sendto(payload, (HOST, self.statsd_port))

    def prom(self, path="/metrics"):
        """GET /metrics parsed with parse_prom(): {(name, ((label, value), ...)): value}."""
        status, _h, body = self.get(path)
        if status != 200:
            raise AssertionError("GET %s answered %d: %r" % (path, status, body[:300]))
        return parse_prom(body.decode("utf-8"))

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.ssl_context else "http", HOST, self.port)

    @property
    def ws_url(self):
        return "%s://%s:%d/ws" % ("wss" if self.ssl_context else "ws", HOST, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_records(self):
        return [parse_logfmt(line) for line in self.log().splitlines() if line.strip()]

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Send `sig`, wait up to `timeout` (scaled) for exit; return the exit code.

        Raises AssertionError (after killing it) if the daemon does not exit in time.
        """
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=t(timeout))
            except subprocess.TimeoutExpired:
                self._dump_stacks()
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.exit_code = self.proc.returncode
                self._release()
                raise AssertionError("daemon did not exit within %.1fs of signal %d"
                                     % (t(timeout), sig))
        self.exit_code = self.proc.returncode
        self._release()
        return self.exit_code

    def _dump_stacks(self):
        """A daemon that does not stop: append every thread's stack to its log (gdb)."""
        gdb = shutil.which("gdb")
        if not gdb:
            return
        try:
            out = subprocess.run([gdb, "-p", str(self.proc.pid), "-batch", "-nx",
                                  "-ex", "thread apply all bt"], capture_output=True,
                                 text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            out = "gdb failed: %r" % e
        lines = [ln for ln in out.splitlines() if ln.startswith(("#", "Thread"))]
        with contextlib.suppress(Exception):
            self._logf.write(("\n----- stacks of the daemon that did not stop -----\n" +
                              "\n".join(lines) + "\n").encode())
            self._logf.flush()

    def wait_exit(self, timeout):
        """Wait for the process to exit by itself; return the exit code or None."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def _release(self):
        _LIVE.discard(self.proc)
        if getattr(self, "_udp", None) is not None:
            with contextlib.suppress(OSError):
                self._udp.close()
            self._udp = None
        with contextlib.suppress(Exception):
            self._logf.close()

    def close(self):
        """Kill (if still running) and remove the temp dir. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.exit_code = self.proc.returncode
            self._release()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self.alive():
                with contextlib.suppress(AssertionError):
                    self.stop(timeout=5.0)
        finally:
            self.close()
        return False

    # -- HTTP -----------------------------------------------------------------------------
    def connection(self, timeout=10.0):
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(HOST, self.port, timeout=t(timeout),
                                               context=self.ssl_context)
        return http.client.HTTPConnection(HOST, self.port, timeout=t(timeout))

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        """One request on a fresh connection; returns (status, headers, body_bytes).

        `headers` of the response is an http.client.HTTPMessage (case-insensitive get()).

        A refused connection while the daemon is alive is retried twice (and reported on
        stderr): seen about once in a few hundred runs under sanitizers on a loaded
        machine, not yet explained; see the closing notes of the data-plane issue.
        """
        for attempt in range(3):
            conn = self.connection(timeout)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.headers, data
            except ConnectionRefusedError:
                alive = self.proc is not None and self.proc.poll() is None
                if attempt == 2 or not alive:
                    raise
                sys.stderr.write("harness: connection to %s refused while the daemon runs; "
                                 "retrying\n" % self.port)
                time.sleep(0.2)
            finally:
                conn.close()

    def get(self, path, headers=None, timeout=10.0):
        return self.request("GET", path, headers=headers, timeout=timeout)

    def get_json(self, path, headers=None, timeout=10.0):
        status, hdrs, body = self.get(path, headers=headers, timeout=timeout)
        return status, hdrs, json.loads(body.decode("utf-8"))

    def raw_socket(self, timeout=10.0):
        s = socket.create_connection((HOST, self.port), timeout=t(timeout))
        if self.ssl_context is not None:
            s = self.ssl_context.wrap_socket(s, server_hostname=HOST)
        return s


def make_self_signed(directory, cn="127.0.0.1", days=2, name="hub"):
    """A self-signed certificate for 127.0.0.1 made by the openssl CLI: returns
    (cert_path, key_path) in directory. Clients verify against cert_path itself."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", str(days), "-subj", "/CN=%s" % cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=t(30))
    return cert, key


def client_ssl_context(cafile):
    """A client context that trusts cafile only, checks the name, TLS 1.2 at least."""
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --------------------------------------------------------------------------------------
# raw HTTP: reading responses off a plain socket (pipelining, abuse cases)
# --------------------------------------------------------------------------------------
class RawResponse:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.version = version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<RawResponse %d %s %r %r>" % (self.status, self.reason, self.headers,
                                              self.body[:200])


class SocketReader:
    """Buffered reads from a socket with an overall deadline per call."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline reached")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until(self, marker, deadline, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (marker, limit))
            if not self._fill(deadline):
                raise EOFError("connection closed before %r (have %r)" % (marker, self.buf[:200]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, deadline):
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def wait_eof(self, timeout):
        """True if the peer closes (EOF/RST) within timeout; data received is kept."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
            return True
        except (socket.timeout, TimeoutError):
            return False


def read_http_response(reader, timeout=10.0, head=False):
    deadline = time.monotonic() + t(timeout)
    head_bytes = reader.read_until(b"\r\n\r\n", deadline)
    lines = head_bytes.decode("iso-8859-1").split("\r\n")
    m = re.match(r"(HTTP/\d\.\d) (\d{3}) ?(.*)", lines[0])
    if not m:
        raise AssertionError("bad status line %r" % lines[0])
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    resp = RawResponse(int(m.group(2)), m.group(3), headers, b"", m.group(1))
    if head or resp.status in (101, 204, 304) or 100 <= resp.status < 200:
        return resp
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    if "chunked" in te:
        body = b""
        while True:
            size_line = reader.read_until(b"\r\n", deadline)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                reader.read_until(b"\r\n", deadline)  # (no trailers expected)
                break
            body += reader.read_exact(size, deadline)
            reader.read_exact(2, deadline)
        resp.body = body
    elif cl is not None:
        resp.body = reader.read_exact(int(cl), deadline)
    else:
        resp.body = reader.read_to_eof(deadline)
    return resp


def raw_http(port, data, timeout=10.0, count=1):
    """Send raw bytes on a fresh connection, read `count` responses; returns the list."""
    with socket.create_connection((HOST, port), timeout=t(timeout)) as s:
        s.sendall(data)
        reader = SocketReader(s)
        return [read_http_response(reader, timeout) for _ in range(count)]


# --------------------------------------------------------------------------------------
# raw WebSocket (RFC 6455), client side
# --------------------------------------------------------------------------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def ws_encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return hdr + key + ws_mask(payload, key)


def ws_mask(payload, key):
    if not payload:
        return b""
    # fast XOR over the whole payload
    k = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode("utf-8")


def parse_close(payload):
    """(code, reason) from a close frame payload; code None when the payload is empty."""
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


class WSFrame:
    def __init__(self, fin, opcode, payload, masked):
        self.fin, self.opcode, self.payload, self.masked = fin, opcode, payload, masked

    @property
    def text(self):
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    @property
    def close_code(self):
        return parse_close(self.payload)[0]

    def __repr__(self):
        return "<WSFrame fin=%s op=0x%x len=%d %r>" % (self.fin, self.opcode,
                                                       len(self.payload), self.payload[:120])


class RawWS:
    """A hand-made WebSocket client on a plain socket (for abuse and protocol tests)."""

    def __init__(self, port, path="/ws", extra_headers=None, key=None, version="13",
                 timeout=10.0, handshake=True, ssl_context=None):
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=t(timeout))
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=HOST)
        self.reader = SocketReader(self.sock)
        self.key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        self.path = path
        self.version = version
        self.extra_headers = extra_headers or {}
        self.response = None
        if handshake:
            self.response = self.handshake(timeout)

    def handshake_bytes(self, omit=()):
        hdrs = [("Host", "%s:%d" % (HOST, self.port)), ("Upgrade", "websocket"),
                ("Connection", "Upgrade"), ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", self.version)]
        hdrs = [(k, v) for k, v in hdrs if k not in omit and v is not None]
        hdrs += list(self.extra_headers.items())
        req = "GET %s HTTP/1.1\r\n" % self.path + "".join("%s: %s\r\n" % kv for kv in hdrs)
        return (req + "\r\n").encode("iso-8859-1")

    def handshake(self, timeout=10.0, omit=()):
        self.sock.sendall(self.handshake_bytes(omit))
        return read_http_response(self.reader, timeout, head=True)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.sock.sendall(ws_encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=1000, reason=""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=10.0):
        """Next frame (not reassembled). Raises EOFError on close, socket.timeout on timeout."""
        deadline = time.monotonic() + t(timeout)
        b0, b1 = self.reader.read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.reader.read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.reader.read_exact(8, deadline))[0]
        masked = bool(b1 & 0x80)
        key = self.reader.read_exact(4, deadline) if masked else None
        payload = self.reader.read_exact(n, deadline) if n else b""
        if masked:
            payload = ws_mask(payload, key)
        return WSFrame(bool(b0 & 0x80), b0 & 0x0F, payload, masked)

    def recv_message(self, timeout=10.0, skip_control=True, answer_pings=True):
        """Next data message (reassembled) as WSFrame; control frames are skipped
        (pings answered) unless skip_control is False. A close frame is returned."""
        deadline = time.monotonic() + t(timeout)
        parts, opcode = [], None
        for _ in range(100000):
            left = (deadline - time.monotonic()) / SCALE
            if left <= 0:
                raise socket.timeout("no message within %.1fs" % t(timeout))
            f = self.recv_frame(left)
            if f.opcode >= 0x8:
                if f.opcode == OP_PING and answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                if f.opcode == OP_CLOSE or not skip_control:
                    return f
                continue
            if opcode is None:
                opcode = f.opcode
            parts.append(f.payload)
            if f.fin:
                return WSFrame(True, opcode, b"".join(parts), f.masked)
        raise AssertionError("too many frames")

    def recv_json(self, timeout=10.0):
        f = self.recv_message(timeout)
        if f.opcode != OP_TEXT:
            raise AssertionError("expected a text message, got %r" % f)
        return f.json()

    def wait_close(self, timeout=10.0, max_frames=1000, answer_pings=False, echo=False):
        """Read frames until a close frame arrives; returns it, or None if the TCP
        connection ended without one. Data frames before it are collected in .skipped.
        echo=True answers the close frame with the same code (a well-behaved client)."""
        self.skipped = []
        deadline = time.monotonic() + t(timeout)
        for _ in range(max_frames):
            left = (deadline - time.monotonic()) / SCALE
            if left <= 0:
                raise socket.timeout("no close within %.1fs" % t(timeout))
            try:
                f = self.recv_frame(left)
            except EOFError:
                return None
            if f.opcode == OP_CLOSE:
                if echo:
                    with contextlib.suppress(OSError):
                        self.send_frame(OP_CLOSE, f.payload[:2])
                return f
            if f.opcode == OP_PING and answer_pings:
                with contextlib.suppress(OSError):
                    self.send_frame(OP_PONG, f.payload)
            self.skipped.append(f)
        raise AssertionError("no close frame within %d frames" % max_frames)

    def closed_by_peer(self, timeout=5.0):
        """True if the TCP connection reaches EOF within timeout (data is discarded)."""
        return self.reader.wait_eof(t(timeout))

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------------------
# unittest glue
# --------------------------------------------------------------------------------------
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def free_port():
    """A port that was free a moment ago (for tests that need a known number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class HubTestCase(unittest.TestCase):
    """Base class: self.hub(...) starts a daemon that is stopped after the test; on a
    failing or erroring test the logs of every daemon it started are printed."""

    def setUp(self):
        if not os.access(DAEMON, os.X_OK):
            self.fail("daemon binary %s not found or not executable (set METRICASTD)" % DAEMON)
        self._hubs = []

    def hub(self, *args, **kwargs):
        h = Hub(*args, **kwargs)
        self._hubs.append(h)
        return h

    def tearDown(self):
        failed = self._test_failed()
        problems = []
        for h in getattr(self, "_hubs", []):
            try:
                code = None
                if h.alive():
                    try:
                        code = h.stop(timeout=5.0)
                        if code != 0:
                            problems.append("daemon exited with %s after SIGTERM at tear-down"
                                            % code)
                    except AssertionError as e:
                        problems.append(str(e))
                log = h.log()
                bad = [m for m in SANITIZER_MARKERS if m in log]
                if bad:
                    problems.append("sanitizer report in the daemon log (%s)" % ", ".join(bad))
                if failed or problems:
                    sys.stderr.write("\n----- daemon log (%s) argv=%s exit=%s -----\n%s"
                                     "----- end of daemon log -----\n"
                                     % (self.id(), " ".join(h.argv),
                                        h.proc.poll() if h.proc else None, log))
            finally:
                h.close()
        if problems and not failed:
            self.fail("; ".join(problems))

    def _test_failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is not None and hasattr(result, "failures"):
            for test, _ in list(result.failures) + list(result.errors):
                if test is self or getattr(test, "test_case", None) is self:
                    return True
        # python 3.11: outcome.success is False once an error/failure was recorded
        return getattr(outcome, "success", True) is False

    # -- assertions ---------------------------------------------------------------------
    def assertJsonError(self, body, content_type=None, status=None):
        """body (bytes) is a JSON object with string `error` and `detail`; returns it."""
        if content_type is not None:
            self.assertIn("application/json", content_type.lower(),
                          "error answer %s has Content-Type %r" % (status, content_type))
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError:
            self.fail("error answer %s is not JSON: %r" % (status, body[:300]))
        self.assertIsInstance(doc, dict, body)
        self.assertIn("error", doc, "error answer %s lacks 'error': %r" % (status, doc))
        self.assertIn("detail", doc, "error answer %s lacks 'detail': %r" % (status, doc))
        self.assertIsInstance(doc["error"], str)
        self.assertIsInstance(doc["detail"], str)
        return doc


# --------------------------------------------------------------------------------------
# StatsD, Prometheus text, polling
# --------------------------------------------------------------------------------------
def send_statsd(port, payload, sock=None):
    """Send one UDP datagram to 127.0.0.1:port (payload bytes or str)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if sock is not None:
        sock.sendto(payload, (HOST, port))
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, (HOST, port))


_PROM_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROM_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,?)')


def _prom_unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1),
                                                                          "\\" + m.group(1)), v)


def parse_prom_full(text):
    """Parse Prometheus text format 0.0.4 strictly enough for tests.

    Returns (samples, meta): samples is a list of (name, labels_dict, value_float);
    meta maps a family name to {"help": str|None, "type": str|None}.
    Raises ValueError on a line it cannot parse.
    """
    samples, meta = [], {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = meta.setdefault(parts[2], {"help": None, "type": None})
                fam[parts[1].lower()] = parts[3] if len(parts) > 3 else ""
            continue
        m = _PROM_NAME_RE.match(line)
        if not m:
            raise ValueError("line %d: no metric name: %r" % (lineno, line))
        name, pos, labels = m.group(0), m.end(), {}
        if pos < len(line) and line[pos] == "{":
            pos += 1
            while True:
                if line[pos:pos + 1] == "}":
                    pos += 1
                    break
                lm = _PROM_LABEL_RE.match(line, pos)
                if not lm:
                    raise ValueError("line %d: bad label set at column %d: %r"
                                     % (lineno, pos, line))
                labels[lm.group(1)] = _prom_unescape(lm.group(2))
                pos = lm.end()
                if not lm.group(3) and line[pos:pos + 1] != "}":
                    raise ValueError("line %d: expected '}' at column %d: %r"
                                     % (lineno, pos, line))
        rest = line[pos:].split()
        if not rest or len(rest) > 2 or not line[pos:pos + 1].isspace():
            raise ValueError("line %d: bad value part: %r" % (lineno, line))
        samples.append((name, labels, float(rest[0])))
    return samples, meta


def parse_prom(text):
    """{(name, tuple(sorted(labels.items()))): value} from Prometheus text."""
    samples, _meta = parse_prom_full(text)
    return {(n, tuple(sorted(lb.items()))): v for n, lb, v in samples}


def prom_get(parsed, name, **labels):
    """Value of one sample in a parse_prom() result, or None."""
    return parsed.get((name, tuple(sorted(labels.items()))))


def wait_for(fn, timeout=5.0, interval=0.05, desc="condition"):
    """Call fn() until it returns something truthy (returned) or t(timeout) passes
    (AssertionError carrying the last value fn returned)."""
    deadline = time.monotonic() + t(timeout)
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %.1fs (last: %r)"
                                 % (desc, t(timeout), last))
        time.sleep(interval)


def main():
    unittest.main(verbosity=2)
