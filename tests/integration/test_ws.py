#!/usr/bin/python3
"""WebSocket endpoint /ws (RFC 6455): handshake, JSON messages, control frames, limits,
abuse handling, server pings and idle timeout."""

import asyncio
import json
import os
import socket
import sys
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     HubTestCase, RawWS, close_payload, main, parse_close, prom_get,
                     read_http_response, t, ws_accept, ws_encode_frame)


def arun(coro, timeout=20.0):
    return asyncio.run(asyncio.wait_for(coro, t(timeout)))


class TestWsHandshake(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def test_library_client_ping_pong(self):
        async def go():
            async with websockets.connect(self.h.ws_url, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), t(5)))
                return reply
        reply = arun(go())
        self.assertEqual(reply.get("type"), "pong", reply)

    def test_raw_handshake_accept_key(self):
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3 example
        with RawWS(self.h.port, key=key) as ws:
            r = ws.response
            self.assertEqual(r.status, 101, r)
            self.assertEqual(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            self.assertEqual(ws_accept(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            self.assertEqual((r.header("Upgrade") or "").lower(), "websocket")
            self.assertIn("upgrade", (r.header("Connection") or "").lower())
            ws.send_json({"type": "ping"})
            self.assertEqual(ws.recv_json(5).get("type"), "pong")

    def test_raw_handshake_random_key(self):
        with RawWS(self.h.port) as ws:
            self.assertEqual(ws.response.status, 101, ws.response)
            self.assertEqual(ws.response.header("Sec-WebSocket-Accept"), ws_accept(ws.key))

    def test_handshake_header_case_insensitive(self):
        with RawWS(self.h.port, handshake=False) as ws:
            req = ("GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\n"
                   "connection: keep-alive, Upgrade\r\nsec-websocket-key: %s\r\n"
                   "sec-websocket-version: 13\r\n\r\n" % ws.key).encode()
            ws.sock.sendall(req)
            r = read_http_response(ws.reader, 5.0, head=True)
            self.assertEqual(r.status, 101, r)
            self.assertEqual(r.header("Sec-WebSocket-Accept"), ws_accept(ws.key))

    def test_missing_key_400(self):
        with RawWS(self.h.port, handshake=False) as ws:
            ws.sock.sendall(ws.handshake_bytes(omit=("Sec-WebSocket-Key",)))
            r = read_http_response(ws.reader, 5.0)
            self.assertEqual(r.status, 400, r)
            self.assertJsonError(r.body, r.header("Content-Type", ""), 400)

    def test_wrong_version_426(self):
        with RawWS(self.h.port, version="8", handshake=False) as ws:
            ws.sock.sendall(ws.handshake_bytes())
            r = read_http_response(ws.reader, 5.0)
            self.assertEqual(r.status, 426, r)
            self.assertEqual((r.header("Sec-WebSocket-Version") or "").strip(), "13", r)
            self.assertJsonError(r.body, r.header("Content-Type", ""), 426)

    def test_plain_get_on_ws_path_is_rejected(self):
        status, hdrs, body = self.h.get("/ws")
        self.assertGreaterEqual(status, 400, body)
        self.assertLess(status, 500, body)
        self.assertJsonError(body, hdrs.get("Content-Type", ""), status)


class TestWsMessages(HubTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hub()

    def assertErrorMsg(self, msg, code=None):
        self.assertEqual(msg.get("type"), "error", msg)
        self.assertIsInstance(msg.get("error"), str, msg)
        self.assertIsInstance(msg.get("detail"), str, msg)
        if code is not None:
            self.assertEqual(msg["error"], code, msg)

    def ping_ok(self, ws):
        ws.send_json({"type": "ping"})
        self.assertEqual(ws.recv_json(5).get("type"), "pong")

    def test_malformed_json_keeps_connection(self):
        with RawWS(self.h.port) as ws:
            for bad in ("{not json", "", "[1,2", "\"just a string\"", "42", "[]", "null"):
                with self.subTest(bad=bad):
                    ws.send_text(bad)
                    self.assertErrorMsg(ws.recv_json(5))
            self.ping_ok(ws)

    def test_unknown_type_keeps_connection(self):
        with RawWS(self.h.port) as ws:
            ws.send_json({"type": "teleport"})
            self.assertErrorMsg(ws.recv_json(5))
            ws.send_json({"no_type": True})
            self.assertErrorMsg(ws.recv_json(5))
            ws.send_json({"type": 7})
            self.assertErrorMsg(ws.recv_json(5))
            self.ping_ok(ws)

    def test_subscribe_unknown_topic(self):
        with RawWS(self.h.port) as ws:
            # "cpu.load" would be a valid event-type pattern: use something that is not
            ws.send_json({"type": "subscribe", "topics": ["CPU Load!"]})
            self.assertErrorMsg(ws.recv_json(5), "unknown_topic")
            self.ping_ok(ws)

    def test_subscribe_unknown_topic_library(self):
        async def go():
            async with websockets.connect(self.h.ws_url, open_timeout=t(10),
                                          close_timeout=t(5)) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topics": ["nope"]}))
                m1 = json.loads(await asyncio.wait_for(ws.recv(), t(5)))
                await ws.send(json.dumps({"type": "ping"}))
                m2 = json.loads(await asyncio.wait_for(ws.recv(), t(5)))
                return m1, m2
        m1, m2 = arun(go())
        self.assertErrorMsg(m1, "unknown_topic")
        self.assertEqual(m2.get("type"), "pong")

    def test_fragmented_text_message(self):
        with RawWS(self.h.port) as ws:
            ws.send_frame(OP_TEXT, '{"type":', fin=False)
            ws.send_frame(OP_PING, b"mid")  # control frames may be interleaved
            ws.send_frame(OP_CONT, '"pi', fin=False)
            ws.send_frame(OP_CONT, 'ng"}', fin=True)
            got_pong_frame = got_pong_msg = False
            for _ in range(4):
                f = ws.recv_message(5, skip_control=False)
                if f.opcode == OP_PONG:
                    self.assertEqual(f.payload, b"mid")
                    got_pong_frame = True
                elif f.opcode == OP_TEXT:
                    self.assertEqual(f.json().get("type"), "pong")
                    got_pong_msg = True
                if got_pong_frame and got_pong_msg:
                    break
            self.assertTrue(got_pong_frame and got_pong_msg)

    def test_protocol_ping_pong_same_payload(self):
        with RawWS(self.h.port) as ws:
            for payload in (b"", b"hello", bytes(range(125))):
                with self.subTest(n=len(payload)):
                    ws.send_frame(OP_PING, payload)
                    f = ws.recv_message(5, skip_control=False)
                    self.assertEqual(f.opcode, OP_PONG, f)
                    self.assertEqual(f.payload, payload)
                    self.assertFalse(f.masked, "server frames must not be masked")

    def test_server_frames_unmasked_text(self):
        with RawWS(self.h.port) as ws:
            ws.send_json({"type": "ping"})
            f = ws.recv_frame(5)
            self.assertEqual(f.opcode, OP_TEXT)
            self.assertFalse(f.masked)
            self.assertTrue(f.fin)

    def test_client_close_is_echoed(self):
        with RawWS(self.h.port) as ws:
            ws.send_close(1000, "bye")
            f = ws.wait_close(5)
            self.assertIsNotNone(f, "no close frame in answer to the client's close")
            self.assertEqual(f.close_code, 1000)
            self.assertTrue(ws.closed_by_peer(5), "server did not close TCP after close")

    def test_unmasked_client_frame_closes(self):
        with RawWS(self.h.port) as ws:
            ws.send_frame(OP_TEXT, '{"type":"ping"}', mask=False)
            f = ws.wait_close(5)
            if f is not None:
                self.assertEqual(f.close_code, 1002, f)

    def test_many_clients(self):
        clients = [RawWS(self.h.port) for _ in range(20)]
        try:
            for ws in clients:
                ws.send_json({"type": "ping"})
            for ws in clients:
                self.assertEqual(ws.recv_json(5).get("type"), "pong")
        finally:
            for ws in clients:
                ws.close()
        self.assertEqual(self.h.get("/health")[0], 200)


class TestWsLimits(HubTestCase):
    def test_message_too_big_1009(self):
        h = self.hub(["--ws-max-message-bytes", "1k"])
        with RawWS(h.port) as ws:
            ws.send_json({"type": "ping", "pad": "x" * 500})
            self.assertEqual(ws.recv_json(5).get("type"), "pong")
            ws.send_json({"type": "ping", "pad": "x" * 2048})
            f = ws.wait_close(5)
            self.assertIsNotNone(f, "connection dropped without a close frame")
            self.assertEqual(f.close_code, 1009, f)

    def test_default_limit_64k(self):
        h = self.hub()
        with RawWS(h.port) as ws:
            ws.send_json({"type": "ping", "pad": "x" * 60000})
            self.assertEqual(ws.recv_json(5).get("type"), "pong")
            ws.send_json({"type": "ping", "pad": "x" * 70000})
            f = ws.wait_close(5)
            self.assertIsNotNone(f, "connection dropped without a close frame")
            self.assertEqual(f.close_code, 1009, f)

    def test_fragmented_message_too_big_1009(self):
        h = self.hub(["--ws-max-message-bytes", "1k"])
        with RawWS(h.port) as ws:
            ws.send_frame(OP_TEXT, '{"type":"ping","pad":"', fin=False)
            for _ in range(4):
                try:
                    ws.send_frame(OP_CONT, "y" * 400, fin=False)
                except OSError:
                    break
            f = ws.wait_close(5)
            self.assertIsNotNone(f, "connection dropped without a close frame")
            self.assertEqual(f.close_code, 1009, f)

    def test_repeated_abuse_1008(self):
        h = self.hub()
        with RawWS(h.port) as ws:
            close = None
            errors = 0
            for i in range(60):
                try:
                    ws.send_text("{malformed %d" % i)
                except OSError:
                    break
                f = ws.recv_message(5)
                if f.opcode == OP_CLOSE:
                    close = f
                    break
                self.assertEqual(f.json().get("type"), "error")
                errors += 1
            if close is None:
                close = ws.wait_close(5)
            self.assertIsNotNone(close, "no close frame after %d malformed messages" % errors)
            self.assertEqual(close.close_code, 1008, close)
            self.assertLessEqual(errors, 30, "tolerated %d malformed messages" % errors)
        self.assertEqual(h.get("/health")[0], 200)

    def test_repeated_abuse_burst_1008(self):
        # 30 malformed messages in one write, then read: a close with 1008 arrives
        h = self.hub()
        with RawWS(h.port) as ws:
            burst = b"".join(ws_encode_frame(OP_TEXT, "{bad%d" % i) for i in range(30))
            ws.sock.sendall(burst)
            f = ws.wait_close(10)
            self.assertIsNotNone(f, "no close frame after 30 malformed messages")
            self.assertEqual(f.close_code, 1008, f)


class TestWorkerBalance(HubTestCase):
    def test_burst_of_connections_spread_over_workers(self):
        # every worker waits on one listening socket and the first awake would accept the
        # whole queue: 90 connects queued at once must still end up 30 per worker (within
        # two), each a working WebSocket
        h = self.hub(["--threads", "3"])
        N = 90
        socks = [RawWS(h.port, handshake=False) for _ in range(N)]  # connected, queued
        try:
            for ws in socks:
                ws.response = ws.handshake(t(10))
                self.assertEqual(ws.response.status, 101, ws.response)
            for ws in socks:
                ws.send_json({"type": "ping"})
            for ws in socks:
                self.assertEqual(ws.recv_json(t(10)).get("type"), "pong")
            m = h.prom()
            per = [prom_get(m, "metricast_loop_connections", loop="worker%d" % i)
                   for i in range(3)]
            self.assertNotIn(None, per, per)
            self.assertEqual(sum(per), N + 1, per)  # + the /metrics request itself
            self.assertLessEqual(max(per) - min(per), 3, per)
            self.assertIsNotNone(prom_get(m, "metricast_connections_handed_over_total"))
        finally:
            for ws in socks:
                ws.close()


    @staticmethod
    def loop_threads(h):
        """{thread name: allowed CPUs} of the hub's I/O loop threads (mc-io<N>)."""
        out = {}
        task = "/proc/%d/task" % h.proc.pid
        for tid in os.listdir(task):
            try:
                with open("%s/%s/comm" % (task, tid)) as f:
                    name = f.read().strip()
                with open("%s/%s/status" % (task, tid)) as f:
                    line = [x for x in f if x.startswith("Cpus_allowed_list:")][0]
            except OSError:
                continue
            if name.startswith("mc-io"):
                out[name] = line.split(":", 1)[1].strip()
        return out

    def test_loop_threads_bound_to_their_own_cpus(self):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            self.skipTest("one CPU: nothing to bind to")
        h = self.hub(["--threads", str(len(cpus))])
        threads = self.loop_threads(h)
        self.assertEqual(sorted(threads), ["mc-io%d" % i for i in range(len(cpus))], threads)
        self.assertEqual(sorted(int(v) for v in threads.values()), cpus, threads)
        # off: every loop may run anywhere the process may
        h2 = self.hub(["--threads", "2", "--pin-threads", "off"])
        free = self.loop_threads(h2)
        self.assertEqual(len(free), 2, free)
        self.assertEqual(len(set(free.values())), 1, free)
        self.assertNotIn(free["mc-io0"], [str(c) for c in cpus], free)


class TestWsKeepalive(HubTestCase):
    def test_server_sends_pings(self):
        h = self.hub(["--ws-ping-interval", "1s", "--ws-idle-timeout", "30s"])
        with RawWS(h.port) as ws:
            t0 = time.monotonic()
            f = ws.recv_message(3, skip_control=False, answer_pings=False)
            self.assertEqual(f.opcode, OP_PING, f)
            self.assertLessEqual(time.monotonic() - t0, t(3.0))

    def test_silent_client_closed_after_idle_timeout(self):
        h = self.hub(["--ws-ping-interval", "1s", "--ws-idle-timeout", "2s"])
        with RawWS(h.port) as ws:
            t0 = time.monotonic()
            f = ws.wait_close(8, answer_pings=False)  # None = TCP closed without close frame
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 1.0, "closed too early (%.2fs)" % elapsed)
            self.assertLessEqual(elapsed, t(6.0))
            # the close code is not specified by the contract; a close frame or a
            # plain TCP close are both acceptable

    def test_client_answering_pings_stays_connected(self):
        h = self.hub(["--ws-ping-interval", "1s", "--ws-idle-timeout", "2s"])

        async def go():
            async with websockets.connect(h.ws_url, open_timeout=t(10), close_timeout=t(5),
                                          ping_interval=None) as ws:
                # the library answers the server's pings automatically
                await asyncio.sleep(4.5)
                await ws.send(json.dumps({"type": "ping"}))
                return json.loads(await asyncio.wait_for(ws.recv(), t(5)))
        reply = arun(go(), timeout=30)
        self.assertEqual(reply.get("type"), "pong")

    def test_client_messages_keep_alive(self):
        h = self.hub(["--ws-ping-interval", "1s", "--ws-idle-timeout", "2s"])
        with RawWS(h.port) as ws:
            for _ in range(5):  # ~4 s of application traffic, never answering pings
                ws.send_json({"type": "ping"})
                f = ws.recv_message(5, answer_pings=False)
                self.assertEqual(f.opcode, OP_TEXT, f)
                self.assertEqual(f.json().get("type"), "pong")
                time.sleep(0.8)


if __name__ == "__main__":
    main()
