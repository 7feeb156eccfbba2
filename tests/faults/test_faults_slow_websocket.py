"""Fault 5: one websocket client that never reads must not slow the others or grow the hub's memory.

Four clients watch ``/ws/devices`` of a hub subprocess: three read normally,
one completes the handshake on a socket with a tiny receive buffer and then
never reads again. Thousands of heartbeats go through MQTT, the actors and
PostgreSQL, and each becomes one live update to every client. The normal
clients must get every update promptly; the hub's RSS must level off; the
stuck client must be dropped: it never answers the hub's websocket pings, so
hypercorn closes it after ``READ_TIMEOUT_S`` of silence, while the normal
clients (which answer them) stay.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from datetime import datetime, timezone

import httpx
import trio
from faults_helpers import eventually, hub_env, hub_launcher, ops_token_with_mfa, percentile, unique
from websockets.sync.client import connect

from hub.core.config import MqttUrl
from hub.db import open_database
from hub.db.seed import ensure_campus
from hub.mqtt import TrioMqttClient, client_tls_context
from schemas import Heartbeat, HeartbeatEvent, Topics, encode_event, new_event_id
from web.app import READ_TIMEOUT_S

UPDATES = 9000
RATE_PER_S = 300.0
NORMAL_CLIENTS = 3
RSS_EVERY = 1500


class Watcher:
    """A normal websocket client in a thread: reads everything, notes when each update arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.arrivals: dict[int, float] = {}  # update number (the heartbeat's outbox_depth) -> monotonic time
        self.snapshots: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                         max_size=2**22) as ws:
                while not self.stop.is_set():
                    try:
                        raw = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    message = json.loads(raw)
                    if message["type"] == "snapshot":
                        self.snapshots.append(message["reason"])
                        self.ready.set()
                    elif message["type"] == "device":
                        self.arrivals.setdefault(message["outbox_depth"], now)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self.ready.set()


def stuck_websocket(port: int, path: str, token: str) -> socket.socket:
    """Open a websocket whose client never reads after the handshake, with a tiny receive window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: the window stays small
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the handshake is consumed
        byte = sock.recv(1)
        assert byte, f"handshake refused: {head!r}"
        head += byte
    assert head.split(b"\r\n", 1)[0].split()[1] == b"101", head
    return sock


def read_frames(sock: socket.socket, timeout: float) -> tuple[int, list[str], int | None]:
    """Drain what the server sent the stuck client: (text frames, snapshot reasons, close code)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except (TimeoutError, OSError):
        pass
    texts, snapshots, close_code, i = 0, [], None, 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length, i = struct.unpack(">H", data[i:i + 2])[0], i + 2
        elif length == 127:
            length, i = struct.unpack(">Q", data[i:i + 8])[0], i + 8
        payload, i = data[i:i + length], i + length
        if len(payload) < length:
            break
        if opcode == 1:
            texts += 1
            message = json.loads(payload)
            if message["type"] == "snapshot":
                snapshots.append(message["reason"])
        elif opcode == 8 and length >= 2:
            close_code = struct.unpack(">H", payload[:2])[0]
    return texts, snapshots, close_code


async def test_a_client_that_never_reads_slows_nobody_and_memory_levels_off(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=2, students=4, now=datetime.now(timezone.utc))
    prefix = unique("faults-ws")
    env = hub_env(database_url=fresh_database_url, mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile,
                  topic_prefix=prefix,
                  client_id=unique("hub-faults-ws"), data_dir=tmp_path / "hub")
    devices = campus.devices[:2]
    topics = Topics(prefix)
    url = MqttUrl.parse(private_broker.url)
    publisher = TrioMqttClient(host=url.host, port=url.port, client_id=unique("pub-faults-ws"), clean_start=True,
                               username=url.username, password=url.password,
                               tls=client_tls_context(private_broker.cafile) if url.tls else None)
    published: dict[int, float] = {}
    rss: dict[str, int] = {}

    async with hub_launcher(env) as hubs, trio.open_nursery() as nursery:
        hub = await hubs.start()
        web = httpx.AsyncClient(base_url=hub.base_url, timeout=10)
        token = await ops_token_with_mfa(web)
        ws_url = f"ws://127.0.0.1:{hub.port}/ws/devices"
        watchers = [Watcher(ws_url, token) for _ in range(NORMAL_CLIENTS)]
        stuck = await trio.to_thread.run_sync(stuck_websocket, hub.port, "/ws/devices", token)
        stuck_at = time.monotonic()
        try:
            for watcher in watchers:
                watcher.thread.start()
            for watcher in watchers:
                assert await trio.to_thread.run_sync(watcher.ready.wait, 15)
                assert watcher.error is None, watcher.error

            async def held() -> int:
                health = await web.get("/healthz", headers={"Authorization": f"Bearer {token}"})  # ops sees the detail
                return health.json()["actors"]["connections"]

            assert await eventually(lambda: _equals(held(), NORMAL_CLIENTS + 1))
            await nursery.start(publisher.run)
            rss["before"] = hub.rss_kb()
            began = time.monotonic()
            for i in range(UPDATES):
                delay = began + i / RATE_PER_S - time.monotonic()
                if delay > 0:
                    await trio.sleep(delay)
                device = devices[i % len(devices)]
                event = HeartbeatEvent(v=1, id=new_event_id(), device=device.device_id,
                                       ts=int(time.time() * 1000), seq=i + 1,
                                       body=Heartbeat(uptime_s=i, firmware="faults/1", outbox_depth=i))
                published[i] = time.monotonic()
                await publisher.publish(topics.uplink(device.device_id),
                                        encode_event(event, device.alg, device.signing_key), qos=1)
                if (i + 1) % RSS_EVERY == 0:
                    rss[f"after_{i + 1}"] = hub.rss_kb()
            publish_s = time.monotonic() - began

            async def everyone_has_everything() -> bool:
                return all(len(w.arrivals) >= UPDATES for w in watchers)

            await eventually(everyone_has_everything, timeout=60, interval=0.1)
            rss["end"] = hub.rss_kb()
            # The stuck client: the hub closes its connection once it has been silent for
            # READ_TIMEOUT_S (it never reads, so it never answers a ping).
            await eventually(lambda: _equals(held(), NORMAL_CLIENTS),
                             timeout=READ_TIMEOUT_S + 20 - (time.monotonic() - stuck_at), interval=0.2)
            dropped_after = time.monotonic() - stuck_at
            await trio.sleep(3)  # the normal clients, connected as long, answer pings: they stay
            assert await held() == NORMAL_CLIENTS
            rss["after_drop"] = hub.rss_kb()
            stuck_texts, stuck_snapshots, stuck_close = await trio.to_thread.run_sync(read_frames, stuck, 2.0)
            health = (await web.get("/healthz", headers={"Authorization": f"Bearer {token}"})).json()
        finally:
            for watcher in watchers:
                watcher.stop.set()
            for watcher in watchers:
                await trio.to_thread.run_sync(watcher.thread.join, 10)
            stuck.close()
            await web.aclose()
        assert hub.alive, hub.log_tail()
        assert await hub.terminate() == 0, hub.log_tail()
        nursery.cancel_scope.cancel()

    latencies = [w.arrivals[i] - published[i] for w in watchers for i in range(UPDATES)]
    for watcher in watchers:
        assert watcher.error is None, watcher.error
        assert set(watcher.arrivals) >= set(range(UPDATES)), "a normal client missed updates"
        assert watcher.snapshots == ["initial"], f"a normal client had to resync: {watcher.snapshots}"
    assert READ_TIMEOUT_S - 1 < dropped_after < READ_TIMEOUT_S + 20
    p50, p99, worst = (percentile(latencies, p) for p in (50, 99, 100))
    assert p99 < 1.0, f"p99 latency {p99:.3f}s"
    # Levels off: the second half of the updates adds (almost) nothing to the hub's RSS.
    first_half_kb = rss[f"after_{UPDATES // 2}"] - rss["before"]
    second_half_kb = rss[f"after_{UPDATES}"] - rss[f"after_{UPDATES // 2}"]
    assert second_half_kb < 1536 and first_half_kb < 16384, f"hub RSS keeps growing (kB): {rss}"
    assert stuck_texts < UPDATES // 4, f"the stuck client was sent {stuck_texts} messages"
    assert health["status"] == "ok"

    figures.update(
        updates=UPDATES, normal_clients=NORMAL_CLIENTS, publish_rate_per_s=round(UPDATES / publish_s),
        latency_ms={"p50": round(p50 * 1000, 1), "p99": round(p99 * 1000, 1), "max": round(worst * 1000, 1)},
        rss_mb={k: round(v / 1024, 1) for k, v in rss.items()},
        rss_growth_mb={"first_half": round(first_half_kb / 1024, 1),
                       "second_half": round(second_half_kb / 1024, 1)},
        stuck_client={"dropped_after_s": round(dropped_after, 1), "frames_it_was_sent": stuck_texts,
                      "snapshots": stuck_snapshots, "close_code": stuck_close},
    )


async def _equals(value, expected: int) -> bool:
    return (await value) == expected
