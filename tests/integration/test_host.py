#!/usr/bin/env python3
"""The built-in host source against the real machine and against fake /proc roots.

- every kernel counter on /metrics is the since-boot value /proc shows (read by the test
  before and after the scrape: the hub's value lies between), gauges match /proc and
  statvfs, and rates are per second (a CPU spends one second per second in its modes);
- writing and fsyncing a file raises the write counters of the disk under it; traffic on
  loopback raises the `lo` counters; sockets the test holds show in the TCP states;
- `host` is an online source with the machine's attributes; HELP/TYPE as node_exporter;
- --host-metrics off: no node_* or host_* series at all;
- a fake --host-proc with missing, odd and hostile files: the good parts are published,
  the rest skipped and counted in metricast_host_read_errors_total{file}, no crash; a
  filesystem whose statvfs never answers is reported as device_error 1 and the rest goes
  on; a missing --host-proc is a start-up error (exit 2)."""

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HubTestCase, parse_prom, parse_prom_full, prom_get, run_daemon,  # noqa: E402
                     run_daemon_full, t,
                     wait_for, SANITIZER_MARKERS, SYSTEM_TMPDIR, Hub, main)

# every file of this program on the disk, not the harness's tmpfs: the disk counters are
# observed through a file written there, and a mount point under /dev is a pseudo one
tempfile.tempdir = SYSTEM_TMPDIR

HZ = os.sysconf("SC_CLK_TCK")
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ALERTS_CONF = os.path.join(REPO, "examples", "alerts.conf")
HOST_RULES = ["host_cpu_busy", "host_memory_low", "host_filesystem_low", "host_network_errors"]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
CPU_MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
NETDEV_COLS = ["receive_bytes", "receive_packets", "receive_errs", "receive_drop", "receive_fifo",
               "receive_frame", "receive_compressed", "receive_multicast", "transmit_bytes",
               "transmit_packets", "transmit_errs", "transmit_drop", "transmit_fifo",
               "transmit_colls", "transmit_carrier", "transmit_compressed"]
DISK_IGNORED = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")


# ---- /proc, read by the test itself -------------------------------------------------------
def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def proc_cpu():
    """{(cpu, mode): seconds} from /proc/stat (per core)."""
    out = {}
    for line in read("/proc/stat").splitlines():
        f = line.split()
        if f and f[0].startswith("cpu") and f[0] != "cpu":
            for i, mode in enumerate(CPU_MODES):
                out[(f[0][3:], mode)] = int(f[1 + i]) / HZ
    return out


def proc_stat_scalars():
    out = {}
    for line in read("/proc/stat").splitlines():
        f = line.split()
        if f and f[0] in ("ctxt", "processes", "intr", "btime"):
            out[f[0]] = int(f[1])
    return out


def proc_meminfo():
    out = {}
    for line in read("/proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        f = rest.split()
        name = name.replace("(", "_").replace(")", "")
        out[name + ("_bytes" if len(f) > 1 else "")] = int(f[0]) * (1024 if len(f) > 1 else 1)
    return out


def proc_diskstats():
    out = {}
    for line in read("/proc/diskstats").splitlines():
        f = line.split()
        out[f[2]] = [int(x) for x in f[3:]]
    return out


def proc_netdev():
    out = {}
    for line in read("/proc/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        out[name.strip()] = [int(x) for x in rest.split()]
    return out


def proc_tcp_states():
    counts = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = read(f).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            st = int(line.split()[3], 16)
            counts[st] = counts.get(st, 0) + 1
    return counts


def backing_disk(path):
    """(device name in /proc/diskstats, None) of the block device under path, or (None,
    why not): the whole disk when path is on a partition, as node_exporter reports it."""
    st = os.stat(path)
    maj, mi = os.major(st.st_dev), os.minor(st.st_dev)
    if maj == 0:
        return None, "%s is on an anonymous device (tmpfs, overlay, btrfs subvolume)" % path
    sysdev = "/sys/dev/block/%d:%d" % (maj, mi)
    if not os.path.exists(sysdev):
        return None, "%s has no %s" % (path, sysdev)
    real = os.path.realpath(sysdev)
    name = os.path.basename(real)
    if os.path.exists(os.path.join(real, "partition")):
        name = os.path.basename(os.path.dirname(real))
    if name not in proc_diskstats():
        return None, "%s (%s) is not in /proc/diskstats" % (name, path)
    if DISK_IGNORED.match(name):
        return None, "%s is a device node_exporter skips by default" % name
    return name, None


def host_samples(parsed, name):
    return {tuple(sorted((k, v) for k, v in lb if k != "source")): val
            for (n, lb), val in parsed.items() if n == name and ("source", "host") in lb}


def one(parsed, name, **labels):
    return prom_get(parsed, name, source="host", **labels)


class LiveHost(HubTestCase):
    """One hub with host metrics on for the whole class: the checks share its collections."""

    @classmethod
    def setUpClass(cls):
        with open(ALERTS_CONF, encoding="utf-8") as f:  # the example rules, as shipped
            cls.shared = Hub(host=True, config=f.read())
        # two collections: the first sets every counter's base, the second gives rates
        wait_for(lambda: prom_get(cls.shared.prom(), "metricast_host_collections_total") >= 3,
                 timeout=10, desc="three host collections")

    @classmethod
    def tearDownClass(cls):
        h = cls.shared
        try:
            code = h.stop(timeout=5.0)
            log = h.log()
            bad = [m for m in SANITIZER_MARKERS if m in log]
            if code != 0 or bad:
                sys.stderr.write(log)
            assert code == 0, "hub exited with %s" % code
            assert not bad, "sanitizer report: %s" % bad
        finally:
            h.close()

    def scrape(self):
        return self.shared.prom()

    def collections(self):
        return prom_get(self.scrape(), "metricast_host_collections_total")

    def next_collection(self, n=1):
        c0 = self.collections()
        wait_for(lambda: self.collections() >= c0 + n, timeout=5, desc="%d more collections" % n)

    # -- values against /proc --------------------------------------------------------------
    def test_counters_are_the_since_boot_values(self):
        """Read /proc, wait past a collection, scrape, read /proc again: every counter the
        hub shows lies between the two readings (it is the kernel's total, not "since the
        hub started")."""
        cpu0, st0, disk0, net0 = proc_cpu(), proc_stat_scalars(), proc_diskstats(), proc_netdev()
        self.next_collection(2)
        p = self.scrape()
        cpu1, st1, disk1, net1 = proc_cpu(), proc_stat_scalars(), proc_diskstats(), proc_netdev()
        tick = 2.0 / HZ  # iowait/idle may step back a tick: the hub keeps the higher value
        got = host_samples(p, "node_cpu_seconds_total")
        self.assertEqual(len(got), len(cpu1), "one series per core and mode: %r" % sorted(got))
        for (cpu, mode), v1 in cpu1.items():
            v = got[(("cpu", cpu), ("mode", mode))]
            self.assertGreaterEqual(v, cpu0[(cpu, mode)] - tick, (cpu, mode))
            self.assertLessEqual(v, v1 + tick, (cpu, mode))
        for key, name in (("ctxt", "node_context_switches_total"), ("processes", "node_forks_total"),
                          ("intr", "node_intr_total")):
            self.assertTrue(st0[key] <= one(p, name) <= st1[key], (name, st0[key], one(p, name)))
        self.assertEqual(one(p, "node_boot_time_seconds"), st1["btime"])
        cols = {"node_disk_reads_completed_total": (0, 1), "node_disk_read_bytes_total": (2, 512),
                "node_disk_writes_completed_total": (4, 1),
                "node_disk_written_bytes_total": (6, 512),
                "node_disk_io_time_seconds_total": (9, 0.001)}
        disks = [d for d in disk1 if not DISK_IGNORED.match(d)]
        for name, (i, scale) in cols.items():
            got = host_samples(p, name)
            self.assertEqual(sorted(k[0][1] for k in got), sorted(disks), name)
            for d in disks:
                v = got[(("device", d),)]
                self.assertTrue(disk0[d][i] * scale - 1e-6 <= v <= disk1[d][i] * scale + 1e-6,
                                (name, d, disk0[d][i] * scale, v, disk1[d][i] * scale))
        for i, col in enumerate(NETDEV_COLS):
            got = host_samples(p, "node_network_%s_total" % col)
            self.assertEqual(sorted(k[0][1] for k in got), sorted(net1), col)
            for d in net1:
                v = got[(("device", d),)]
                self.assertTrue(net0[d][i] <= v <= net1[d][i], (col, d, net0[d][i], v, net1[d][i]))

    def test_gauges_match_proc_and_statvfs(self):
        p = self.scrape()
        mem = proc_meminfo()
        for name in ("MemTotal_bytes", "SwapTotal_bytes", "HugePages_Total"):
            if name in mem:
                self.assertEqual(one(p, "node_memory_" + name), mem[name], name)
        got = {n for (n, lb) in p if n.startswith("node_memory_")}
        self.assertEqual(got, {"node_memory_" + k for k in mem}, "every /proc/meminfo field")
        for name in ("MemAvailable_bytes", "MemFree_bytes", "SwapFree_bytes"):
            if name in mem:  # moving values: within 5% of the machine's memory
                self.assertAlmostEqual(one(p, "node_memory_" + name), mem[name],
                                       delta=0.05 * mem["MemTotal_bytes"], msg=name)
        nr = read("/proc/sys/fs/file-nr").split()
        self.assertEqual(one(p, "node_filefd_maximum"), int(nr[2]))
        self.assertGreater(one(p, "node_filefd_allocated"), 0)
        self.assertEqual(one(p, "node_processes_max_processes"),
                         int(read("/proc/sys/kernel/pid_max")))
        self.assertEqual(one(p, "node_processes_max_threads"),
                         int(read("/proc/sys/kernel/threads-max")))
        pids = len([x for x in os.listdir("/proc") if x.isdigit()])
        self.assertAlmostEqual(one(p, "node_processes_pids"), pids, delta=max(50, pids * 0.3))
        load = [float(x) for x in read("/proc/loadavg").split()[:3]]
        for name, v in zip(("node_load1", "node_load5", "node_load15"), load):
            self.assertAlmostEqual(one(p, name), v, delta=1.0 + v * 0.5, msg=name)
        for name in ("node_procs_running", "node_procs_blocked"):
            self.assertIsNotNone(one(p, name), name)
        # every filesystem published: size exactly as statvfs says, free space near it
        size = host_samples(p, "node_filesystem_size_bytes")
        avail = host_samples(p, "node_filesystem_avail_bytes")
        ratio = host_samples(p, "host_filesystem_avail_ratio")
        errors = host_samples(p, "node_filesystem_device_error")
        self.assertTrue(size, "no filesystem at all")
        for k, v in size.items():
            labels = dict(k)
            self.assertEqual(errors[k], 0, k)
            self.assertNotIn(labels["fstype"], ("proc", "sysfs", "cgroup", "cgroup2", "devpts",
                                                "overlay", "squashfs"))
            self.assertFalse(re.match(r"^/(dev|proc|sys)($|/)", labels["mountpoint"]), k)
            try:  # other programs mount and unmount (tests of a full disk): skip those
                if not os.path.ismount(labels["mountpoint"]):
                    continue
                sv = os.statvfs(labels["mountpoint"])
            except OSError:
                continue
            self.assertEqual(v, sv.f_blocks * sv.f_frsize, k)
            self.assertAlmostEqual(avail[k], sv.f_bavail * sv.f_frsize, delta=0.02 * v + 1, msg=k)
            if v > 0:
                self.assertAlmostEqual(ratio[k], avail[k] / v, places=12)
        # the derived memory ratio comes from the same reading as its two parts
        self.assertAlmostEqual(one(p, "host_memory_available_ratio"),
                               one(p, "node_memory_MemAvailable_bytes") /
                               one(p, "node_memory_MemTotal_bytes"), places=12)
        uname = os.uname()
        info = host_samples(p, "node_uname_info")
        self.assertEqual(len(info), 1, info)
        k, v = next(iter(info.items()))
        self.assertEqual(v, 1)
        self.assertEqual({n: x for n, x in k if n != "domainname"},
                         {"machine": uname.machine, "nodename": uname.nodename,
                          "release": uname.release, "sysname": uname.sysname,
                          "version": uname.version})

    def test_rates_are_per_second_without_a_first_interval_spike(self):
        """Each core spends one second per second across its modes; the history of a
        counter holds per-second increases, never the since-boot total."""
        self.next_collection(1)
        status, _h, doc = self.shared.get_json("/api/v1/metrics?match=node_cpu_seconds_total")
        self.assertEqual(status, 200)
        for s in doc["series"]:
            self.assertEqual(s["kind"], "counter")
            self.assertEqual(s["labels"]["source"], "host")
            self.assertIn("rate", s)
            self.assertGreaterEqual(s["value"], 10 * s["rate"])  # the total, not the rate
        def history():
            st, _h, d = self.shared.get_json(
                "/api/v1/series/node_cpu_seconds_total?source=host&window=600")
            self.assertEqual(st, 200)
            ts = [t for s in d["series"] for t, _v in s["points"]]
            return d if ts and max(ts) - min(ts) >= 11 else None
        hist = wait_for(history, timeout=20, desc="12 seconds of CPU history")
        per_cpu, last = {}, 0
        for s in hist["series"]:
            pts = s["points"]
            self.assertTrue(pts, s["labels"])
            # a late collection puts two seconds in one interval: 3 s/s is the most any
            # point may show; the since-boot total would be thousands
            self.assertLessEqual(max(v for _t, v in pts), 3.0, "%r %r" % (s["labels"], pts))
            last = max(last, max(t for t, _v in pts))
            per_cpu.setdefault(s["labels"]["cpu"], []).extend(pts)
        # over the last 10 seconds the modes of each core add up to ~10 s (a second a
        # late collection missed is in the next one's increase)
        for cpu, pts in per_cpu.items():
            total = sum(v for t, v in pts if last - 10 < t <= last)
            self.assertTrue(8.0 <= total <= 12.0, "cpu %s: %.2f s in 10 s" % (cpu, total))
        busy = one(self.scrape(), "host_cpu_busy_ratio")
        self.assertTrue(0 <= busy <= 1, busy)

    # -- provoked changes --------------------------------------------------------------------
    def test_writing_a_file_raises_the_disk_write_counters(self):
        where = tempfile.mkdtemp(prefix="mc-host-disk-", dir=self.shared.tmp)
        dev, why = backing_disk(where)
        if dev is None:
            self.skipTest("the disk under the test directory is not observable: " + why)
        p = self.scrape()
        w0 = one(p, "node_disk_written_bytes_total", device=dev)
        n0 = one(p, "node_disk_writes_completed_total", device=dev)
        self.assertIsNotNone(w0, "no node_disk_written_bytes_total for %s" % dev)
        size = 8 << 20
        with open(os.path.join(where, "blob"), "wb") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
        wait_for(lambda: one(self.scrape(), "node_disk_written_bytes_total", device=dev) >= w0 + size,
                 timeout=10, desc="%s written bytes up by %d" % (dev, size))
        self.assertGreater(one(self.scrape(), "node_disk_writes_completed_total", device=dev), n0)

    def test_loopback_traffic_raises_lo_counters(self):
        p = self.scrape()
        rx0 = one(p, "node_network_receive_bytes_total", device="lo")
        tx0 = one(p, "node_network_transmit_bytes_total", device="lo")
        pk0 = one(p, "node_network_receive_packets_total", device="lo")
        self.assertIsNotNone(rx0, "no lo interface")
        size = 4 << 20
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        got = []

        def sink():
            c, _ = srv.accept()
            n = 0
            while n < size:
                b = c.recv(1 << 16)
                if not b:
                    break
                n += len(b)
            got.append(n)
            c.close()
        th = threading.Thread(target=sink)
        th.start()
        with socket.create_connection(srv.getsockname()) as c:
            c.sendall(b"x" * size)
        th.join(t(10))
        srv.close()
        self.assertEqual(got, [size])
        wait_for(lambda: one(self.scrape(), "node_network_receive_bytes_total", device="lo")
                 >= rx0 + size, timeout=10, desc="lo receive bytes up by %d" % size)
        p = self.scrape()
        self.assertGreaterEqual(one(p, "node_network_transmit_bytes_total", device="lo"), tx0 + size)
        self.assertGreater(one(p, "node_network_receive_packets_total", device="lo"), pk0)

    def test_tcp_states_count_the_sockets_held(self):
        listeners, pairs = [], []
        try:
            for _ in range(5):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen(4)
                listeners.append(s)
            for i in range(3):
                c = socket.create_connection(listeners[i].getsockname())
                a, _ = listeners[i].accept()
                pairs += [c, a]
            # a walk of the socket table that costs more than its budget (a sanitizer build
            # beside tests holding hundreds of sockets) spaces the next walks out by up to
            # 30 s: wait for one that saw these sockets
            def counted():
                q = self.scrape()
                ok = (one(q, "node_tcp_connection_states", state="established") >= 6 and
                      one(q, "node_tcp_connection_states", state="listen") >= 5)
                return q if ok else None
            p = wait_for(counted, timeout=35, interval=0.5,
                         desc="6 established and 5 listening sockets counted")
            self.assertGreaterEqual(one(p, "node_netstat_Tcp_CurrEstab"), 6)
            states = host_samples(p, "node_tcp_connection_states")
            self.assertEqual({dict(k)["state"] for k in states},
                             {"established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2",
                              "time_wait", "close", "close_wait", "last_ack", "listen", "closing",
                              "rx_queued_bytes", "tx_queued_bytes"})
            # and near what /proc/net/tcp{,6} shows (other programs open and close sockets)
            now = proc_tcp_states()
            self.assertAlmostEqual(one(p, "node_tcp_connection_states", state="listen"),
                                   now.get(10, 0), delta=20)
        finally:
            for s in pairs + listeners:
                s.close()

    # -- the source, the exposition ------------------------------------------------------
    def test_source_host_and_exposition(self):
        status, _h, doc = self.shared.get_json("/api/v1/sources")
        self.assertEqual(status, 200)
        host = [s for s in doc["sources"] if s["id"] == "host"]
        self.assertEqual(len(host), 1, doc)
        h = host[0]
        self.assertTrue(h["online"])
        self.assertEqual(h["status"], "online")
        cores = len([ln for ln in read("/proc/stat").splitlines() if re.match(r"cpu\d+ ", ln)])
        self.assertEqual(h["attrs"]["cores"], cores)
        self.assertEqual(h["attrs"]["hostname"], os.uname().nodename)
        self.assertEqual(h["attrs"]["kernel"], os.uname().release)
        self.assertEqual(h["attrs"]["memory_bytes"], proc_meminfo()["MemTotal_bytes"])
        self.assertEqual(h["attrs"]["kind"], "builtin")
        status, _h, one_src = self.shared.get_json("/api/v1/sources/host/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(one_src["online"])
        self.assertIn("node_load1", one_src["metrics"])
        self.assertGreaterEqual(prom_get(self.scrape(), "metricast_sources_online"), 1)

        status, _h, body = self.shared.get("/metrics")
        text = body.decode()
        samples, meta = parse_prom_full(text)
        for fam, typ in (("node_cpu_seconds_total", "counter"), ("node_load1", "gauge"),
                         ("node_memory_MemAvailable_bytes", "gauge"),
                         ("node_network_receive_bytes_total", "counter"),
                         ("node_filesystem_avail_bytes", "gauge"),
                         ("node_disk_io_time_seconds_total", "counter"),
                         ("node_netstat_Tcp_CurrEstab", "gauge"),
                         ("metricast_host_read_errors_total", "counter")):
            self.assertEqual(meta[fam]["type"], typ, fam)
            self.assertNotIn("metricast ingest", meta[fam]["help"], fam)
        self.assertEqual(meta["node_load1"]["help"], "1m load average.")
        # promtool: valid text; its only complaints are node_exporter's own camelCase names
        # (node_memory_MemTotal_bytes, node_netstat_Tcp_InSegs), kept for compatibility
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           timeout=t(30))
        self.assertIn(r.returncode, (0, 3), r.stderr.decode() + r.stdout.decode())
        for line in (r.stdout + r.stderr).decode().splitlines():
            if not line.strip():
                continue
            self.assertRegex(line, r"^node_(memory|netstat)_\S+ metric names should be written in "
                                   r"'snake_case' not 'camelCase'$")
        errs = {lb: v for (n, lb), v in parse_prom(text).items()
                if n == "metricast_host_read_errors_total"}
        self.assertEqual(len(errs), 16)
        for lb, v in errs.items():  # a healthy Linux host reads every file
            if dict(lb)["file"] not in ("net/snmp6", "net/tcp6"):
                self.assertEqual(v, 0, lb)


    def test_the_example_alert_rules_load_and_match_the_host_series(self):
        code, out, err = run_daemon_full(["--check-config", ALERTS_CONF])
        self.assertEqual(code, 0, err)
        for name in HOST_RULES:
            self.assertIn("[alert.%s]" % name, out)
        status, _h, doc = self.shared.get_json("/api/v1/alerts")
        self.assertEqual(status, 200)
        rules = {r["name"]: r for r in doc["rules"]}
        self.assertEqual(list(rules), HOST_RULES)
        self.assertEqual(rules["host_cpu_busy"]["for_seconds"], 60)
        self.assertEqual(rules["host_cpu_busy"]["threshold"], 0.9)
        # every rule finds its series on a real machine: one CPU ratio, one memory ratio,
        # a ratio per filesystem and an error count per interface
        self.assertEqual(rules["host_cpu_busy"]["series"], 1)
        self.assertEqual(rules["host_memory_low"]["series"], 1)
        # (other programs mount and unmount meanwhile: compare at one moment, retried)
        def same():
            rs = {r["name"]: r for r in self.shared.get_json("/api/v1/alerts")[2]["rules"]}
            p = self.scrape()
            return (rs["host_filesystem_low"]["series"] ==
                    len(host_samples(p, "host_filesystem_avail_ratio")) and
                    rs["host_network_errors"]["series"] ==
                    len(host_samples(p, "host_network_errors_1m")))
        wait_for(same, timeout=10, desc="one alert instance per filesystem and interface")
        self.assertGreaterEqual(rules["host_filesystem_low"]["series"], 1)
        self.assertEqual(rules["host_network_errors"]["series"], len(proc_netdev()))


class HostOff(HubTestCase):
    def test_off_means_no_host_series(self):
        h = self.hub(args=["--host-metrics", "off"])
        time.sleep(t(2.5))  # past two collections, had there been any
        p = h.prom()
        names = {n for (n, _lb) in p}
        self.assertFalse({n for n in names if n.startswith(("node_", "host_"))}, names)
        self.assertFalse({n for n in names if n.startswith("metricast_host_")})
        status, _h, doc = h.get_json("/api/v1/sources")
        self.assertEqual(doc["sources"], [])
        self.assertEqual(prom_get(p, "metricast_sources_online"), 0)

    def test_config_key_and_bad_roots(self):
        h = self.hub(config="[host]\nmetrics = off\n")
        time.sleep(t(2))
        self.assertFalse([n for (n, _lb) in h.prom() if n.startswith("node_")])
        code, err = run_daemon(["--listen", "127.0.0.1:0", "--statsd", "off", "--data",
                                tempfile.mkdtemp(prefix="mc-host-"), "--host-proc",
                                "/nonexistent/proc"])
        self.assertEqual(code, 2)
        self.assertIn("--host-proc /nonexistent/proc", err)
        # no sys root: a warning, and the rest works (link state, MTU and speed skipped)
        h2 = self.hub(host=True, args=["--host-sys", "/nonexistent/sys"])
        wait_for(lambda: prom_get(h2.prom(), "metricast_host_collections_total") >= 1,
                 timeout=10, desc="a collection without /sys")
        p2 = h2.prom()
        self.assertIsNotNone(one(p2, "node_load1"))
        self.assertFalse([n for (n, _lb) in p2 if n == "node_network_up"])
        self.assertIn("no sys root", h2.log())
        code, err = run_daemon(["--host-metrics", "maybe"])
        self.assertEqual(code, 2)
        self.assertIn("--host-metrics", err)


# ---- a fake /proc -------------------------------------------------------------------------
STAT = """cpu  100 0 50 850 0 0 0 0 0 0
cpu0 12345 1 2 3 4 5 6 7 8 9
cpu1 garbage here
cpu2 1 2
ctxt 777
btime 1700000000
processes 42
procs_running 3
procs_blocked nope
"""
NETDEV = b"""Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  fake0: 1000 10 1 0 0 0 0 0 2000 20 2 0 0 0 0 0
 broken: 1 2 3
 we\xc3\x28ird: 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5
"""
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:EAEC 0100007F:8CD1 01 00000010:00000020 00:00000000 00000000     0        0 2 1 0
   2: this line is not a socket
"""
DISKSTATS = """ 8 0 sda 1 2 3 4 5 6 7 8 9 10 11
 8 1 sda1 1 2 3 4 5 6 7 8 9 10 11
 x y z
"""


def write(root, rel, data, mode="w"):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


class FakeProc(HubTestCase):
    def make_root(self, tmp):
        proc, sys_ = os.path.join(tmp, "proc"), os.path.join(tmp, "sys")
        os.makedirs(proc)
        os.makedirs(os.path.join(sys_, "class/net/fake0"))
        write(sys_, "class/net/fake0/operstate", "up\n")
        write(sys_, "class/net/fake0/mtu", "9000\n")
        write(sys_, "class/net/fake0/speed", "-1\n")
        write(proc, "stat", STAT)
        write(proc, "loadavg", "this is not a load average\n")
        # meminfo: missing
        write(proc, "diskstats", DISKSTATS)
        good = os.path.join(tmp, "good fs")  # a space: \040 in mountinfo
        stuck = os.path.join(tmp, "stuck")
        os.makedirs(good)
        os.makedirs(stuck)
        write(proc, "1/mountinfo",
              "1 0 8:0 / %s rw - ext4 /dev/fake rw\n" % good.replace(" ", "\\040") +
              "2 0 8:1 / %s/missing rw - ext4 /dev/gone rw\n" % tmp +
              "3 0 8:2 / %s rw - xfs /dev/stuck rw\n" % stuck +
              "4 0 0:5 / /proc rw - proc proc rw\n"
              "not a mountinfo line\n")
        write(proc, "net/dev", NETDEV, mode="wb")
        write(proc, "net/tcp", TCP)
        write(proc, "net/snmp", "Tcp: CurrEstab InErrs\nTcp: 7\n")  # one value short
        write(proc, "net/netstat", "\x00\x01\x02 binary junk \xff\n")
        os.makedirs(os.path.join(proc, "sys/fs/file-nr"))  # a directory, not a file
        write(proc, "sys/kernel/pid_max", "32768\n")
        write(proc, "sys/kernel/threads-max", "many\n")
        for pid in ("1", "42", "self", "4x"):
            os.makedirs(os.path.join(proc, pid), exist_ok=True)
        return proc, sys_, good, stuck

    def test_odd_and_missing_files_are_skipped_and_counted(self):
        tmp = tempfile.mkdtemp(prefix="mc-fakeproc-")
        self.addCleanup(shutil.rmtree, tmp, True)
        proc, sys_, good, stuck = self.make_root(tmp)
        with open(ALERTS_CONF, encoding="utf-8") as f:
            rules = f.read()
        h = self.hub(host=True, config=rules, args=["--host-proc", proc, "--host-sys", sys_,
                                                    "--debug-host-statfs-stall", stuck])
        # the stuck filesystem costs one statvfs timeout (2 s) once; then every second
        wait_for(lambda: prom_get(h.prom(), "metricast_host_collections_total") >= 4,
                 timeout=15, desc="four collections from the fake root")
        p = h.prom()
        # what was good is there, exactly
        self.assertEqual(one(p, "node_cpu_seconds_total", cpu="0", mode="user"), 12345 / HZ)
        self.assertEqual(one(p, "node_cpu_seconds_total", cpu="0", mode="steal"), 7 / HZ)
        self.assertEqual(one(p, "node_cpu_guest_seconds_total", cpu="0", mode="nice"), 9 / HZ)
        self.assertEqual({dict(k)["cpu"] for k in host_samples(p, "node_cpu_seconds_total")}, {"0"})
        self.assertEqual(one(p, "host_cpu_seconds_total", mode="idle"), 850 / HZ)
        self.assertEqual(one(p, "node_context_switches_total"), 777)
        self.assertEqual(one(p, "node_boot_time_seconds"), 1700000000)
        self.assertEqual(one(p, "node_procs_running"), 3)
        self.assertIsNone(one(p, "node_procs_blocked"))
        self.assertEqual(one(p, "node_disk_reads_completed_total", device="sda"), 1)
        self.assertIsNone(one(p, "node_disk_reads_completed_total", device="sda1"))  # partition
        self.assertEqual(one(p, "node_network_receive_bytes_total", device="fake0"), 1000)
        self.assertEqual(one(p, "node_network_transmit_errs_total", device="fake0"), 2)
        self.assertEqual(one(p, "host_network_errors_1m", device="fake0"), 0)
        self.assertEqual(one(p, "node_network_up", device="fake0"), 1)
        self.assertEqual(one(p, "node_network_mtu_bytes", device="fake0"), 9000)
        self.assertIsNone(one(p, "node_network_speed_bytes", device="fake0"))  # -1: unknown
        self.assertIsNotNone(one(p, "node_network_receive_bytes_total", device="we\ufffd(ird"))
        self.assertEqual(one(p, "node_tcp_connection_states", state="listen"), 1)
        self.assertEqual(one(p, "node_tcp_connection_states", state="established"), 1)
        self.assertEqual(one(p, "node_tcp_connection_states", state="tx_queued_bytes"), 16)
        self.assertEqual(one(p, "node_processes_pids"), 2)
        self.assertEqual(one(p, "node_processes_max_processes"), 32768)
        self.assertIsNone(one(p, "node_processes_max_threads"))
        # filesystems: the good one measured, the missing one an error, the stuck one too
        fs = host_samples(p, "node_filesystem_device_error")
        by_mp = {dict(k)["mountpoint"]: v for k, v in fs.items()}
        self.assertEqual(by_mp, {good: 0, tmp + "/missing": 1, stuck: 1})
        sv = os.statvfs(good)
        size = host_samples(p, "node_filesystem_size_bytes")
        self.assertEqual(size[(("device", "/dev/fake"), ("fstype", "ext4"), ("mountpoint", good))],
                         sv.f_blocks * sv.f_frsize)
        self.assertGreaterEqual(prom_get(p, "metricast_host_statfs_timeouts_total"), 1)
        # no memory series at all, and every problem counted under its file
        self.assertFalse([n for (n, _lb) in p if n.startswith("node_memory_")])
        self.assertIsNone(one(p, "host_memory_available_ratio"))
        errs = {dict(lb)["file"]: v for (n, lb), v in p.items()
                if n == "metricast_host_read_errors_total"}
        for f in ("meminfo", "loadavg", "stat", "diskstats", "1/mountinfo", "net/dev", "net/tcp",
                  "net/snmp", "net/netstat", "sys/fs/file-nr", "sys/kernel/threads-max"):
            self.assertGreaterEqual(errs[f], 3, "%s: %r" % (f, errs))
        for f in ("net/snmp6", "net/tcp6"):  # absent without IPv6: not an error
            self.assertEqual(errs[f], 0, f)
        self.assertEqual(errs["sys/kernel/pid_max"], 0)
        # each problem is logged once, not once a second
        log = h.log()
        self.assertEqual(log.count('msg="host metrics: file skipped" file=meminfo '), 1, log)
        self.assertEqual(log.count("filesystem not answering"), 1, log)

        # errors start rising on fake0: the example rule fires at once (for = 0)
        status, _h, doc = h.get_json("/api/v1/alerts")
        self.assertEqual(doc["firing"], 0, doc)
        write(proc, "net/dev", NETDEV.replace(b" 1000 10 1 0", b" 1000 10 9 0"), mode="wb")
        firing = wait_for(lambda: [a for a in h.get_json("/api/v1/alerts")[2]["active"]
                                   if a["rule"] == "host_network_errors" and a["state"] == "firing"],
                          timeout=10, desc="host_network_errors firing")
        self.assertEqual(firing[0]["labels"], {"device": "fake0", "source": "host"})
        self.assertEqual(firing[0]["value"], 8)

        # fake0 goes away and the good filesystem is unmounted: their gauges are published
        # once as NaN (stale), so the alert resolves; counters keep their last totals
        write(proc, "net/dev", b"\n".join(ln for ln in NETDEV.split(b"\n") if b"fake0" not in ln),
              mode="wb")
        with open(os.path.join(proc, "1/mountinfo")) as f:
            kept = [ln for ln in f.read().splitlines(True) if not ln.startswith("1 ")]
        write(proc, "1/mountinfo", "".join(kept))
        wait_for(lambda: not [a for a in h.get_json("/api/v1/alerts")[2]["active"]
                              if a["rule"] == "host_network_errors"],
                 timeout=10, desc="host_network_errors resolved")
        p = h.prom()
        self.assertTrue(math.isnan(one(p, "host_network_errors_1m", device="fake0")))
        self.assertTrue(math.isnan(one(p, "node_network_up", device="fake0")))
        self.assertEqual(one(p, "node_network_receive_bytes_total", device="fake0"), 1000)
        gone = (("device", "/dev/fake"), ("fstype", "ext4"), ("mountpoint", good))
        for name in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes",
                     "host_filesystem_avail_ratio", "node_filesystem_device_error"):
            self.assertTrue(math.isnan(host_samples(p, name)[gone]), name)
        self.assertEqual(host_samples(p, "node_filesystem_device_error")[
            (("device", "/dev/gone"), ("fstype", "ext4"), ("mountpoint", tmp + "/missing"))], 1)

        # the files change under it, to worse: still no crash, still counted
        c0 = prom_get(h.prom(), "metricast_host_collections_total")
        os.remove(os.path.join(proc, "stat"))
        write(proc, "diskstats", os.urandom(5000), mode="wb")
        write(proc, "net/dev", b"\xff" * 70000, mode="wb")
        write(proc, "1/mountinfo", "1 0 8:0 / /a\\000b rw - ext4 /dev/x rw\n")
        os.symlink("/dev/zero", os.path.join(proc, "meminfo"))  # never ends: refused
        wait_for(lambda: prom_get(h.prom(), "metricast_host_collections_total") >= c0 + 2,
                 timeout=10, desc="two collections after the damage")
        self.assertTrue(h.alive())
        errs2 = {dict(lb)["file"]: v for (n, lb), v in h.prom().items()
                 if n == "metricast_host_read_errors_total"}
        for f in ("stat", "diskstats", "net/dev", "1/mountinfo", "meminfo"):
            self.assertGreater(errs2[f], errs[f], f)
        # the stuck statvfs never returned: shutdown must not wait for it
        t0 = time.monotonic()
        self.assertEqual(h.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, t(5))
        self.assertFalse([m for m in SANITIZER_MARKERS if m in h.log()], h.log())

    def test_empty_root(self):
        """A --host-proc with nothing in it (a container without /proc): every file counted,
        nothing published, the hub fine."""
        tmp = tempfile.mkdtemp(prefix="mc-emptyproc-")
        self.addCleanup(shutil.rmtree, tmp, True)
        h = self.hub(host=True, args=["--host-proc", tmp, "--host-sys", tmp])
        wait_for(lambda: prom_get(h.prom(), "metricast_host_collections_total") >= 2,
                 timeout=10, desc="two collections")
        p = h.prom()
        node = [n for (n, _lb) in p if n.startswith("node_") and n not in (
            "node_uname_info", "node_processes_pids")]
        self.assertFalse(node, node)
        self.assertEqual(one(p, "node_processes_pids"), 0)
        errs = {dict(lb)["file"]: v for (n, lb), v in p.items()
                if n == "metricast_host_read_errors_total"}
        self.assertGreaterEqual(errs["stat"], 2)
        self.assertGreaterEqual(errs["1/mountinfo"], 2)
        status, _h, doc = h.get_json("/api/v1/sources")
        self.assertTrue(doc["sources"][0]["online"])
        # health does not depend on the host source: whatever it reads, the hub is healthy
        # (waited for: a loaded machine may show a moment of loop lag at start)
        wait_for(lambda: h.get("/api/v1/health")[0] == 200, timeout=10,
                 desc="healthy (last: %r)" % (h.get("/api/v1/health")[2][:300],))


if __name__ == "__main__":
    main()
