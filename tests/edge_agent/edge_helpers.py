"""Helpers for the edge agent tests: a real-broker collector, configs, a cuttable TCP proxy.

Import note for all tests in tests/edge_agent/ and tests/devices/: pytest puts
``tests/`` on ``sys.path`` (rootless ``tests/conftest.py``, prepend mode), so
these folders can shadow the real ``edge_agent`` / ``devices`` packages as
empty namespace packages, whose ``__init__`` never runs. Submodules still
resolve through the editable install, so tests import from submodules
(``edge_agent.agent``, ``devices.qr.source``...), never from the bare package.
No conftest.py here: ``tests/web`` does ``from conftest import ...``, which a
conftest loaded later would hijack.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiomqtt
import msgspec

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, MqttEndpoint, parse_mqtt_url
from schemas import (
    Command,
    CommandAckEvent,
    DeviceStatus,
    Event,
    Frame,
    Topics,
    decode_frame,
    decode_status,
    encode_command,
    seal_args,
    sealed_arg_names,
    x25519_private_key,
)

T = TypeVar("T")

def broker_url(port: int | None = None) -> str:
    """The run's broker for edge agents: ``$CAMPUSHUB_TEST_MQTT_URL`` (with ``CAMPUSHUB_TEST_BROKER=secure`` the
    root conftest points it at the secure broker, ``mqtts://`` with credentials, before any test runs), else the
    local ``mqtt://127.0.0.1:1883``. Read at call time. ``port``: the same broker through a proxy on 127.0.0.1."""
    url = os.environ.get("CAMPUSHUB_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    if port is None:
        return url
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{port}" if login else f"127.0.0.1:{port}"))


def broker(url: str | None = None) -> MqttEndpoint:
    return parse_mqtt_url(url or broker_url())


def broker_client(url: str | None = None, **options: Any) -> aiomqtt.Client:
    """An aiomqtt client of the run's broker (or of ``url``) with its credentials and TLS (the CA: ``SSL_CERT_FILE``,
    which the secure mode sets); ``options`` go to ``aiomqtt.Client``. Test-side clients of the edge tests are built
    here."""
    endpoint = broker(url)
    return aiomqtt.Client(endpoint.host, endpoint.port, username=endpoint.username, password=endpoint.password,
                          tls_context=ssl.create_default_context() if endpoint.tls else None, **options)


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp_path: Path, prefix: str, **overrides: object) -> AgentConfig:
    values: dict[str, object] = dict(
        device_id="room-1-edge", room_id="room-1", alg="hmac-sha256",
        signing_key=secrets.token_bytes(32), mqtt_url=broker_url(), topic_prefix=prefix,
        outbox_path=tmp_path / "outbox.sqlite", heartbeat_interval_s=60.0,
        reconnect_initial_s=0.05, reconnect_max_s=0.2, drain_timeout_s=2.0, publish_timeout_s=3.0,
    )
    values.update(overrides)
    return AgentConfig(**values)  # type: ignore[arg-type]


class Collector:
    """Subscribes to ``{prefix}/#`` on the real broker and keeps everything it receives.

    On exit it clears the retained status messages of the prefix, so test
    runs leave nothing behind in the (persistent) broker.
    """

    def __init__(self, prefix: str, url: str | None = None) -> None:
        self.prefix = prefix
        self.topics = Topics(prefix)
        self.messages: list[aiomqtt.Message] = []
        self._client = broker_client(url, protocol=aiomqtt.ProtocolVersion.V5,
                                     identifier=f"collector-{uuid.uuid4().hex[:8]}")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Collector":
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/#", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self._client.messages:
            self.messages.append(message)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for topic in {str(m.topic) for m in self.messages if str(m.topic).endswith("/status")}:
            await self._client.publish(topic, b"", qos=1, retain=True)
        await self._client.__aexit__(None, None, None)

    def events(self) -> list[tuple[Frame, Event]]:
        return [decode_frame(bytes(m.payload)) for m in self.messages  # type: ignore[arg-type]
                if str(m.topic).endswith("/up")]

    def of_kind(self, kind: str) -> list[Event]:
        return [e for _, e in self.events() if type(e).__struct_config__.tag == kind]

    def signed_statuses(self, device_id: str) -> list[tuple[Frame, DeviceStatus]]:
        """The device's statuses (Wills included) as received: each with its signed frame."""
        topic = self.topics.status(device_id)
        return [decode_status(bytes(m.payload)) for m in self.messages
                if str(m.topic) == topic and m.payload]

    def statuses(self, device_id: str) -> list[DeviceStatus]:
        return [status for _, status in self.signed_statuses(device_id)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; got {len(self.messages)} messages")
            await asyncio.sleep(0.02)


async def retained_status(prefix: str, device_id: str, timeout: float = 2.0) -> tuple[DeviceStatus, bool]:
    """What a newcomer sees on the status topic: (status, retain flag)."""
    async with broker_client(protocol=aiomqtt.ProtocolVersion.V5,
                             identifier=f"peek-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(Topics(prefix).status(device_id), qos=1)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                return decode_status(bytes(message.payload))[1], message.retain  # type: ignore[arg-type]
    raise AssertionError("unreachable")


class CuttableProxy:
    """A TCP proxy in front of the broker whose link can be cut (abort every
    connection, refuse new ones) and restored, to simulate network outages."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()

    @property
    def url(self) -> str:
        return broker_url(self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            endpoint = broker()
            up_reader, up_writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError:
            writer.transport.abort()
            return
        for w in (writer, up_writer):
            self._transports.add(w.transport)  # type: ignore[arg-type]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        """Abort every connection (no MQTT DISCONNECT reaches the broker) and stop listening."""
        assert self._server is not None
        self._server.close()
        for t in list(self._transports):
            t.abort()
        self._transports.clear()
        await self._server.wait_closed()

    async def close(self) -> None:
        await self.cut()


def run_native(coro: "Coroutine[Any, Any, T]") -> T:
    """Run ``coro`` on a plain asyncio loop, as on the classroom PC.

    (Once trio_asyncio is imported, as the shared conftest does, ``asyncio.run``
    builds a trio-asyncio loop instead; :func:`run_trio_asyncio` covers that.)
    """
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def run_trio_asyncio(coro: "Coroutine[Any, Any, T]") -> T:
    """Run ``coro`` with ``asyncio.run`` after importing trio_asyncio, like the hub CLI does."""
    import trio_asyncio  # noqa: F401 - the import is what changes asyncio.run's loop

    return asyncio.run(coro)


RUNNERS = {"asyncio": run_native, "trio_asyncio": run_trio_asyncio}


# ------------------------------------------------------------- commands


def command(cfg: Any, name: str, args: dict[str, Any] | None = None, *, ttl_s: float = 30,
            hub_ts: int | None = None, device: str | None = None) -> Command:
    """A command to ``cfg``'s agent; the arguments the hub seals are sealed to ``cfg``'s key, as the hub does."""
    now = int(time.time() * 1000) if hub_ts is None else hub_ts
    args = args or {}
    cmd = Command(v=1, id=uuid.uuid4().bytes, device=device or cfg.device_id, name=name,  # type: ignore[arg-type]
                  hub_ts=now, expires_ts=now + int(ttl_s * 1000), args=args)
    to_seal = sealed_arg_names(name, args)
    if not to_seal:
        return cmd
    key: dict[str, bytes] = ({"hmac_key": cfg.signing_key} if cfg.alg == "hmac-sha256" else {
        "x25519_public_key": x25519_private_key(cfg.signing_key).public_key().public_bytes_raw()})
    sealed = seal_args({k: args[k] for k in to_seal}, device_id=cmd.device, command_id=cmd.id, name=name, **key)
    return msgspec.structs.replace(cmd, args={k: v for k, v in args.items() if k not in to_seal}, sealed=sealed)


async def publish(prefix: str, cmd: Command, key: bytes, *, to: str | None = None,
                  alg: str = "hmac-sha256") -> None:
    """Publish ``cmd`` on the downlink as the hub does (HMAC with the device key, or the hub's Ed25519 seed)."""
    async with broker_client(protocol=aiomqtt.ProtocolVersion.V5,
                             identifier=f"hub-{uuid.uuid4().hex[:8]}") as client:
        await client.publish(Topics(prefix).downlink(to or cmd.device),
                             encode_command(cmd, alg, key), qos=1)  # type: ignore[arg-type]


def acks(col: Collector) -> dict[bytes, CommandAckEvent]:
    return {e.body.command_id: e for e in col.of_kind("command_ack")}  # type: ignore[union-attr]


async def start_agent(agent: EdgeAgent) -> asyncio.Task[None]:
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.wait_online(), 5)
    return task


async def stop_agent(agent: EdgeAgent, task: asyncio.Task[None]) -> None:
    agent.stop()
    await asyncio.wait_for(task, 10)
