"""The classroom edge agent: device readings → signed events → outbox → MQTT (QoS 1).

Tasks inside :meth:`EdgeAgent.run` (all on one asyncio loop)::

    reader (one per driver) ─┐
    ADMS endpoint (terminals)┤
    heartbeat ───────────────┼─► AsyncOutbox.append ──► publisher ──► broker
    command worker (acks) ───┤     (signed, durable)    (≤ max_inflight
    submit()/submit_qr() ────┘                           QoS 1 in flight)
    acker: deletes PUBACKed rows in batches
    connection loop: connect (Last Will) → online status → subscribe to the
                     downlink → publish … → reconnect with backoff + jitter
    watcher: downlink messages → command queue → command worker

Delivery is at-least-once: a row leaves the outbox only after its PUBACK;
rows in flight when the connection drops are published again (same bytes,
same event id) and the hub deduplicates by event id. Order: rows are
published in ``seq`` order; after a reconnect, older pending rows go first.

Nothing here imports ``hub`` or ``web``: this runs on the classroom PC.
"""
from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Sequence, TypedDict, Union, cast

import aiomqtt
import msgspec

# Submodule imports on purpose: under pytest, tests/devices/ can shadow the bare
# package name as an empty namespace package (see tests/edge_agent/edge_helpers.py).
from devices.base import FingerprintMatch, QrRead, Reading, SensorSample, Source
from devices.fingerprint.r30x import R30xError, R30xSource, TemplateJob
from devices.zkteco.adms import delete_user_command, user_info_command
from schemas import (
    PROTOCOL_VERSION,
    BiometricMatch,
    BiometricMatchEvent,
    CommandAck,
    CommandAckEvent,
    CommandStatus,
    DeviceStatus,
    Event,
    Heartbeat,
    HeartbeatEvent,
    QrScan,
    QrScanEvent,
    SensorReading,
    SensorReadingEvent,
    Topics,
    encode_event,
    encode_status,
    new_event_id,
)

from .adms import AdmsEndpoint, replay_parked
from .commands import CommandExecutor, CommandFailed, Outcome, Unsupported, run_commands
from .config import AgentConfig
from .device_config import DeviceConfig, DeviceConfigError, with_overrides
from .drivers import build_device_source, build_source
from .enrolment import Enrolment
from .outbox import AsyncOutbox, OutboxFull
from .state import AgentState

log = logging.getLogger(__name__)

_KIND: dict[type, str] = {
    QrScanEvent: "qr_scan",
    BiometricMatchEvent: "biometric_match",
    SensorReadingEvent: "sensor_reading",
    HeartbeatEvent: "heartbeat",
    CommandAckEvent: "command_ack",
}
# msgspec checks these constraints only when decoding, so the agent checks
# them before signing: an event the hub would reject is a local bug.
_METRIC_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: A connection that lasted this long counts as healthy (resets the reconnect backoff).
_STABLE_CONNECTION_S = 10.0


def _ms(unix_seconds: float) -> int:
    return max(0, int(unix_seconds * 1000))


#: Downlink payloads waiting for the command worker; beyond this they are dropped
#: (counted) and the hub times those commands out: a flood cannot grow memory.
_COMMAND_QUEUE = 64
#: How long template_sync waits for the fingerprint module before answering
#: "sealed, queued" (the job still runs when the module comes back).
_TEMPLATE_WAIT_S = 5.0
_OVERRIDES_KEY = "overrides"
_OFFSET_KEY = "clock_offset"
#: The agent-level option config_push may change besides device options.
_AGENT_PUSHABLE = {"heartbeat_interval_s": (1.0, 3600.0)}

Driver = Union[Source, AdmsEndpoint]


class _EnvelopeFields(TypedDict):
    """The envelope fields every event shares (``**``-spread into the event structs)."""

    v: int
    id: bytes
    device: str
    ts: int
    seq: int


class _SessionOptions(TypedDict, total=False):
    """The protocol version and its clean-session flag, spread into ``aiomqtt.Client``."""

    protocol: aiomqtt.ProtocolVersion
    clean_session: bool
    clean_start: bool


@dataclass(frozen=True)
class AgentStats:
    """A snapshot. ``published`` counts PUBACKed publishes (a resend after a lost
    PUBACK counts again); ``outbox_depth`` counts events not yet acknowledged."""

    published: dict[str, int]
    submitted: dict[str, int]
    outbox_depth: int
    dropped: dict[str, int]
    rejected_full: int
    invalid_readings: int
    connects: int
    connected: bool
    #: Driver faults (I/O errors, unplugs, garbage) summed over all drivers.
    driver_faults: int = 0
    #: executed, duplicates, invalid, misaddressed, forged, expired, dropped.
    commands: dict[str, int] = field(default_factory=dict)
    #: Fingerprint matches on a page no student is enrolled on (dropped).
    unmapped_matches: int = 0
    #: hub clock − device clock, from the last time_sync (None: never measured).
    clock_offset_ms: int | None = None


class _Events:
    """The asyncio primitives of one event loop (they must not cross loops)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()   # shutdown requested
        self.wake = asyncio.Event()   # outbox grew or a publish finished
        self.idle = asyncio.Event()   # nothing pending, nothing in flight
        self.acked = asyncio.Event()  # PUBACKed seqs await deletion
        self.online = asyncio.Event()


class EdgeAgent:
    """One device's agent. Create it, then ``await agent.run()``; ``agent.stop()`` ends it.

    Construction opens the outbox (blocking briefly: it is a local SQLite
    file); :meth:`close` closes it. ``run()`` may be called again after it
    returned, but not concurrently. All methods must be called from the event
    loop thread that runs ``run()``.

    ``sources`` are extra :class:`devices.Source` objects read in addition to
    those built from ``config.sources`` and ``config.devices``.

    ``reboot_hook``: what a hub ``reboot`` command does (default: restart the
    drivers cleanly, see :meth:`restart_drivers`). The machine itself is never
    rebooted by the agent; a deployment that wants that passes a hook.
    """

    def __init__(self, config: AgentConfig, *, sources: Sequence[Source] = (),
                 reboot_hook: Callable[[], Awaitable[str]] | None = None) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._uplink = self.topics.uplink(config.device_id)
        self._status_topic = self.topics.status(config.device_id)
        #: The largest ts of a status this agent signed (a Will included): the next is larger.
        self._last_status_ts = 0
        self._downlink = self.topics.downlink(config.device_id)
        self._broker = f"{config.endpoint.host}:{config.endpoint.port}"  # for logs: no credentials
        self.state = AgentState(config.state_file)
        self.enrolment = Enrolment(self.state, config.key_store_file)
        overrides = self.state.get_json(_OVERRIDES_KEY, {})
        self._agent_overrides = {k: v for k, v in overrides.items() if k in _AGENT_PUSHABLE}
        try:
            self._devices = with_overrides(config.devices, {k: v for k, v in overrides.items()
                                                            if k not in _AGENT_PUSHABLE})
        except DeviceConfigError as exc:  # the config file changed since the push
            log.warning("%s: ignoring stored overrides (%s)", config.device_id, exc)
            self._devices = config.devices
        offset = self.state.get_json(_OFFSET_KEY)
        self.clock_offset_ms: int | None = None if offset is None else int(offset["offset_ms"])
        self._extra_sources = [build_source(s) for s in config.sources] + list(sources)
        self._drivers: dict[str, Driver] = {}
        self._build_drivers()
        self._reboot_hook = reboot_hook
        self._driver_tasks: dict[str, asyncio.Task[None]] = {}
        self._retired_faults = 0
        self._unmapped = 0
        self._commands_dropped = 0
        self._command_queue: asyncio.Queue[bytes] | None = None
        self.commands = CommandExecutor(self)
        self._outbox = AsyncOutbox(config.outbox_path, device_id=config.device_id,
                                   max_rows=config.max_outbox_rows)
        self._published: Counter[str] = Counter()
        self._submitted: Counter[str] = Counter()
        self._invalid = 0
        self._connects = 0
        self._connected = False
        self._client: aiomqtt.Client | None = None
        #: PUBACKed seqs whose deletion is not committed yet (never republished).
        self._acked: set[int] = set()
        self._ev: _Events | None = None
        self._running = False
        self._stop_requested = False
        self._started = time.monotonic()
        self._rng = random.Random()

    # ------------------------------------------------------------------ API

    @property
    def stats(self) -> AgentStats:
        counters = self._outbox.counters
        return AgentStats(
            published=dict(self._published),
            submitted=dict(self._submitted),
            outbox_depth=self.outbox_depth,
            dropped={k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("dropped.")},
            rejected_full=counters.get("rejected_full", 0),
            invalid_readings=self._invalid,
            connects=self._connects,
            connected=self._connected,
            driver_faults=self.driver_faults,
            commands=dict(executed=self.commands.executed, duplicates=self.commands.duplicates,
                          invalid=self.commands.invalid, misaddressed=self.commands.misaddressed,
                          forged=self.commands.forged, expired=self.commands.expired,
                          unsealable=self.commands.unsealable, dropped=self._commands_dropped),
            unmapped_matches=self._unmapped,
            clock_offset_ms=self.clock_offset_ms,
        )

    @property
    def driver_faults(self) -> int:
        return self._retired_faults + sum(int(getattr(d, "faults", 0)) for d in self._drivers.values())

    @property
    def drivers(self) -> dict[str, Driver]:
        """The running driver objects by name (read-only use: tests, status pages)."""
        return dict(self._drivers)

    @property
    def heartbeat_interval_s(self) -> float:
        return float(self._agent_overrides.get("heartbeat_interval_s", self.config.heartbeat_interval_s))

    @property
    def outbox_depth(self) -> int:
        """Events stored and not yet acknowledged by the broker."""
        # Under the outbox's lock: a deletion lowers depth and empties _acked in one step.
        with self._outbox.depth_lock:
            return max(0, self._outbox.depth - len(self._acked))

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_online(self) -> None:
        """Wait until connected and the online status is published (use with a timeout)."""
        await self._events().online.wait()

    def stop(self) -> None:
        """Ask ``run()`` to shut down cleanly: stop readers, drain the outbox for up to
        ``drain_timeout_s`` while connected, publish offline ("shutdown"), disconnect.
        Never blocks. Calling it before ``run()`` started makes that ``run()`` return at once."""
        self._stop_requested = True
        if self._ev is not None:
            self._ev.stop.set()

    def close(self) -> None:
        """Close the outbox and the state file (blocks briefly). Call after ``run()`` returned."""
        self._outbox.close()
        self.state.close()

    async def __aenter__(self) -> "EdgeAgent":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def submit(self, event: Event) -> int | None:
        """Sign and store ``event`` in the outbox; it is published when connected.

        ``event.seq`` is replaced by the device's next sequence number, which is
        returned; ``None`` means a telemetry event was dropped (outbox full).
        Raises :class:`~edge_agent.outbox.OutboxFull` for a check-in that does
        not fit, ``ValueError`` for an event of another device or that breaks
        the wire format's limits. Returns once the row is committed to disk.
        """
        if event.device != self.config.device_id:
            raise ValueError(f"event of device {event.device!r}, this agent is {self.config.device_id!r}")
        kind = _KIND.get(type(event))
        if kind is None:
            raise ValueError(f"not an event: {event!r}")
        alg, key = self.config.alg, self.config.signing_key

        def encode(seq: int) -> bytes:  # runs in the outbox thread, inside its transaction
            return encode_event(msgspec.structs.replace(event, seq=seq), alg, key)

        seq = await self._outbox.append(kind, encode)
        if seq is not None:
            self._submitted[kind] += 1
            ev = self._events()
            ev.idle.clear()
            ev.wake.set()
        return seq

    async def submit_qr(self, text: str, at: float | None = None) -> int | None:
        """Submit a decoded QR text read at Unix time ``at`` (default: now)."""
        if not 1 <= len(text) <= 512:
            raise ValueError("QR text must be 1..512 characters")
        return await self.submit(QrScanEvent(**self._envelope(at), body=QrScan(text)))

    async def submit_sensor(self, metric: str, value: float, unit: str, at: float | None = None) -> int | None:
        if not _METRIC_RE.match(metric) or len(unit) > 16:
            raise ValueError(f"bad sensor metric/unit {metric!r}/{unit!r}")
        return await self.submit(SensorReadingEvent(**self._envelope(at),
                                                    body=SensorReading(metric, float(value), unit)))

    async def submit_biometric(self, subject: str, score: float, at: float | None = None,
                               event_id: bytes | None = None) -> int | None:
        """Submit a biometric match of student ``subject`` (score 0..1) at Unix time ``at``.

        ``event_id``: a deterministic id (e.g. of a terminal punch) so a resubmission
        is deduplicated by the hub; default a fresh one.
        """
        if not 1 <= len(subject) <= 64 or "\x00" in subject or not 0.0 <= score <= 1.0:
            raise ValueError(f"bad biometric match {subject!r}/{score!r}")
        env = self._envelope(at)
        if event_id is not None:
            env["id"] = event_id
        return await self.submit(BiometricMatchEvent(**env, body=BiometricMatch(subject, float(score))))

    async def submit_heartbeat(self) -> int | None:
        """A heartbeat; ``error_count`` = driver faults + refused commands since start;
        ``battery_pct``/``signal_dbm`` from the first driver that knows them."""
        errors = self.driver_faults + self.commands.forged + self.commands.invalid + self._commands_dropped
        battery = next((b for d in self._drivers.values()
                        if (b := getattr(d, "battery_pct", None)) is not None), None)
        signal = next((v for d in self._drivers.values()
                       if (v := getattr(d, "signal_dbm", None)) is not None), None)
        body = Heartbeat(uptime_s=int(time.monotonic() - self._started),
                         firmware=self.config.firmware, outbox_depth=self.outbox_depth,
                         battery_pct=battery, signal_dbm=signal, error_count=min(errors, 2**31 - 1))
        return await self.submit(HeartbeatEvent(**self._envelope(None), body=body))

    def drop_connection(self) -> bool:
        """Fault injection: cut the TCP connection without an MQTT DISCONNECT, as a
        pulled cable or a crash would. The broker then publishes the Last Will
        and the agent reconnects. Returns ``False`` if not connected.

        Reaches into aiomqtt's paho client (``_client``): for tests and the
        simulator only.
        """
        client = self._client
        sock = client._client.socket() if client is not None else None  # noqa: SLF001
        # None: not connected. The agent speaks MQTT over plain TCP, so paho's socket is a socket.socket.
        if not isinstance(sock, socket.socket):
            return False
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        return True

    # ------------------------------------------------------------- run loop

    async def run(self) -> None:
        """Run until :meth:`stop` is called or the task is cancelled; both shut down cleanly.

        Cancellation: the first cancel triggers the same clean shutdown as
        ``stop()`` (bounded by ``drain_timeout_s`` + ``publish_timeout_s``)
        before ``CancelledError`` propagates; a second cancel during it abandons
        the drain and disconnects at once. Broker outages never end ``run()``:
        it keeps reconnecting while events accumulate in the outbox.
        """
        if self._running:
            raise RuntimeError("EdgeAgent.run() is already running")
        self._running = True
        ev = self._events()
        if self._stop_requested:
            ev.stop.set()
        self._started = time.monotonic()
        self._command_queue = asyncio.Queue(_COMMAND_QUEUE)
        self._start_drivers()
        workers = [asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
                   asyncio.create_task(run_commands(self._command_queue, self.commands), name="commands")]
        acker = asyncio.create_task(self._ack_loop(), name="acker")
        conn = asyncio.create_task(self._connection_loop(), name="connection")
        stop_wait = asyncio.create_task(ev.stop.wait())
        try:
            await asyncio.wait({conn, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ev.stop.set()
            stop_wait.cancel()
            workers += self._driver_tasks.values()
            self._driver_tasks = {}
            for w in workers:
                w.cancel()
            try:
                await asyncio.gather(*workers, return_exceptions=True)
                try:
                    await conn  # drains, publishes offline("shutdown"), disconnects
                except asyncio.CancelledError:
                    conn.cancel()
                    raise
            finally:
                acker.cancel()
                await asyncio.gather(acker, return_exceptions=True)
                await self._flush_acks()
                self._running = False
                self._stop_requested = False
                ev.stop.clear()
                log.info("%s: stopped (outbox depth %d)", self.config.device_id, self.outbox_depth)

    def _events(self) -> _Events:
        loop = asyncio.get_running_loop()
        if self._ev is None or self._ev.loop is not loop:
            self._ev = _Events()
        return self._ev

    def _envelope(self, at: float | None) -> _EnvelopeFields:
        ts = _ms(time.time() if at is None else at)
        return _EnvelopeFields(v=PROTOCOL_VERSION, id=new_event_id(), device=self.config.device_id, ts=ts, seq=0)

    # -------------------------------------------------------------- drivers

    def _build_drivers(self) -> None:
        drivers: dict[str, Driver] = {}
        for dev in self._devices:
            drivers[dev.name] = self._build_device(dev)
        for src in self._extra_sources:
            name = src.name
            while name in drivers:
                name += "+"
            drivers[name] = src
        self._drivers = drivers

    def _build_device(self, dev: DeviceConfig) -> Driver:
        if dev.driver == "zkteco_adms":
            return AdmsEndpoint(dev.name, dev.options, device_id=self.config.device_id, state=self.state,
                                enrolment=self.enrolment, submit=self._submit_punch)
        return build_device_source(dev)

    def _start_drivers(self, names: Sequence[str] | None = None) -> None:
        for name in names if names is not None else list(self._drivers):
            driver = self._drivers[name]
            coro = driver.run() if isinstance(driver, AdmsEndpoint) else self._read_source(driver)
            self._driver_tasks[name] = asyncio.create_task(self._guard(name, coro), name=f"driver:{name}")

    async def _guard(self, name: str, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. the ADMS port is taken: logged, the rest of the agent goes on
            log.exception("%s: driver %s stopped", self.config.device_id, name)

    async def restart_drivers(self, names: Sequence[str] | None = None) -> list[str]:
        """Stop the named drivers (default: all) cleanly, rebuild them from the current
        configuration and overrides, and start them again. Returns the names restarted.

        Must be called from the loop running :meth:`run` (no-op outside it for tasks;
        the drivers are still rebuilt). Waits until the old drivers have released
        their devices (serial ports, listening sockets).
        """
        names = list(self._drivers) if names is None else [n for n in names if n in self._drivers]
        tasks = [self._driver_tasks.pop(n) for n in names if n in self._driver_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        by_name = {d.name: d for d in self._devices}
        for name in names:
            self._retired_faults += int(getattr(self._drivers[name], "faults", 0))
            if name in by_name:
                self._drivers[name] = self._build_device(by_name[name])
            else:  # an extra source object: reused (iteration restarts it)
                pass
        if self._running:
            self._start_drivers(names)
        return names

    async def _submit_punch(self, subject: str, score: float, at: float, event_id: bytes) -> None:
        await self.submit_biometric(subject, score, at, event_id)

    async def _read_source(self, source: Source) -> None:
        """Turn one source's readings into events; restart a failing source with backoff."""
        backoff = 1.0
        while True:
            it: AsyncIterator[Reading] = source.__aiter__()
            try:
                async for reading in it:
                    await self._submit_reading(source, reading)
                    backoff = 1.0
                log.info("%s: source %s ended", self.config.device_id, source.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: source %s failed; restarting in %.0fs",
                              self.config.device_id, source.name, backoff)
            finally:
                aclose = getattr(it, "aclose", None)
                if aclose is not None:  # stop reader threads now, not at garbage collection
                    await aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _submit_reading(self, source: Source, reading: Reading) -> None:
        try:
            if isinstance(reading, QrRead):
                await self.submit_qr(reading.text, reading.at)
            elif isinstance(reading, SensorSample):
                await self.submit_sensor(reading.metric, reading.value, reading.unit, reading.at)
            elif isinstance(reading, FingerprintMatch):
                student = self.enrolment.student_for_page(reading.page_id)
                if student is None:
                    self._unmapped += 1
                    log.warning("%s: %s matched page %d, which no student is enrolled on",
                                self.config.device_id, source.name, reading.page_id)
                    return
                await self.submit_biometric(student, reading.score, reading.at)
            else:
                raise ValueError(f"unknown reading {reading!r}")
        except ValueError as exc:
            self._invalid += 1
            log.warning("%s: dropped invalid reading from %s: %s", self.config.device_id, source.name, exc)
        except OutboxFull:
            # Counted in the outbox; a real scanner would beep "try again" here.
            log.error("%s: outbox full, check-in from %s refused", self.config.device_id, source.name)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.submit_heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: heartbeat failed", self.config.device_id)
            await asyncio.sleep(self.heartbeat_interval_s)

    async def _ack_loop(self) -> None:
        """Delete PUBACKed rows. Batches form naturally: acks that arrive while
        the outbox thread is busy are deleted together in one transaction."""
        ev = self._events()
        while True:
            await ev.acked.wait()
            ev.acked.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        batch = list(self._acked)
        if batch:
            await self._outbox.delete(batch, then=lambda: self._acked.difference_update(batch))

    # ----------------------------------------------------------- connection

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        ep = cfg.endpoint
        # The Will is signed now and bound to this connection by its ts: the online status
        # carries the connection's ts, the Will that ts + 1. The hub applies only a status
        # newer than the last it applied, so this Will can end this connection (or an older
        # one) but never a newer one, and a replayed old status or Will changes nothing.
        self._connection_ts = self._next_status_ts()
        will = aiomqtt.Will(
            self._status_topic,
            self._signed_status("offline", self._connection_ts + 1, "connection lost"),
            qos=1,
            retain=True,
        )
        # The outbox, not the broker session, is what survives reconnects, so
        # every connect starts clean. paho spells that per version: MQTT 5
        # clean_start (in connect), MQTT 3.1.1 clean_session (in the client);
        # each raises if given the other's. We send no MQTT 5 properties, so
        # 3.1.1 loses nothing here.
        version: _SessionOptions
        if ep.protocol == "3.1.1":
            version = _SessionOptions(protocol=aiomqtt.ProtocolVersion.V311, clean_session=True)
        else:
            version = _SessionOptions(protocol=aiomqtt.ProtocolVersion.V5, clean_start=True)
        return aiomqtt.Client(
            ep.host, ep.port,
            username=ep.username, password=ep.password,
            identifier=cfg.mqtt_client_id,
            will=will,
            keepalive=cfg.keepalive_s,
            timeout=cfg.publish_timeout_s,
            max_inflight_messages=cfg.max_inflight,
            logger=log.getChild("mqtt"),
            # mqtts://: verifies the broker (CA + host name), presents the device certificate.
            # Built per connection, so a renewed certificate file is picked up on reconnect.
            tls_context=cfg.mqtt_tls_context(),
            **version,
        )

    async def _connection_loop(self) -> None:
        cfg = self.config
        ev = self._events()
        backoff = cfg.reconnect_initial_s
        while not ev.stop.is_set():
            client = self._make_client()  # fresh client: fresh Will timestamp, no stale paho state
            try:
                if not await self._connect(client):
                    return  # stop requested while connecting
            except aiomqtt.MqttError as exc:
                log.warning("%s: cannot connect to %s: %s", cfg.device_id, self._broker, exc)
            else:
                connected_at = time.monotonic()
                try:
                    await self._serve(client)
                    return
                except aiomqtt.MqttError as exc:
                    log.warning("%s: connection lost: %s", cfg.device_id, exc)
                # Only a connection that held for a while resets the backoff: one that
                # is dropped at once (e.g. another agent using our client id takes it
                # over) must not turn into a fast reconnect loop.
                if time.monotonic() - connected_at > _STABLE_CONNECTION_S:
                    backoff = cfg.reconnect_initial_s
            if ev.stop.is_set():
                return
            # Jitter: after a broker restart a whole campus must not reconnect in lockstep.
            delay = backoff * self._rng.uniform(0.5, 1.0)
            backoff = min(backoff * 2, cfg.reconnect_max_s)
            log.info("%s: reconnecting in %.2fs (outbox depth %d)", cfg.device_id, delay, self.outbox_depth)
            try:
                await asyncio.wait_for(ev.stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _connect(self, client: aiomqtt.Client) -> bool:
        """Connect, unless ``stop()`` comes first (then ``False``). Raises ``MqttError``."""
        ev = self._events()
        enter = asyncio.ensure_future(client.__aenter__())
        stop = asyncio.ensure_future(ev.stop.wait())
        try:
            await asyncio.wait({enter, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            enter.cancel()
            raise
        finally:
            stop.cancel()
        if not enter.done():
            # The paho connect() may still finish in its executor thread; that
            # socket is abandoned (the broker times it out). Only at shutdown.
            enter.cancel()
            await asyncio.gather(enter, return_exceptions=True)
            return False
        enter.result()
        return True

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish until stopped (returns) or the connection fails (raises ``MqttError``)."""
        cfg = self.config
        ev = self._events()
        self._client = client
        try:
            # Subscribed before announcing "online": from then on the hub's commands reach us.
            await client.subscribe(self._downlink, qos=1)
            await client.publish(self._status_topic, self._signed_status("online", self._connection_ts, "connected"),
                                 qos=1, retain=True)
            self._connected = True
            self._connects += 1
            ev.online.set()
            log.info("%s: online at %s (outbox depth %d)", cfg.device_id, self._broker, self.outbox_depth)

            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            watch = asyncio.create_task(self._watch(client))
            pub = asyncio.create_task(self._publish_loop(client, failed))
            stop = asyncio.create_task(ev.stop.wait())
            connection: set[asyncio.Future[Any]] = {watch, pub, failed}
            try:
                await asyncio.wait(connection | {stop}, return_when=asyncio.FIRST_COMPLETED)
                self._raise_failure(watch, pub, failed)
                # Stopping: give the publisher a bounded time to empty the outbox.
                idle = asyncio.create_task(ev.idle.wait())
                await asyncio.wait(connection | {idle}, timeout=cfg.drain_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
                self._raise_failure(watch, pub, failed)
                if self.outbox_depth:
                    log.warning("%s: stopping with %d events still in the outbox",
                                cfg.device_id, self.outbox_depth)
            finally:
                for t in (watch, pub, stop):
                    t.cancel()
                await asyncio.gather(watch, pub, stop, return_exceptions=True)
                if failed.done() and not failed.cancelled():
                    failed.exception()  # mark retrieved
                failed.cancel()
            await client.publish(self._status_topic, self._signed_status("offline", self._next_status_ts(), "shutdown"),
                                 qos=1, retain=True)
        finally:
            self._connected = False
            self._client = None
            ev.online.clear()
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError as exc:
                log.debug("%s: disconnect: %s", cfg.device_id, exc)

    def _next_status_ts(self) -> int:
        """A status ts larger than any this agent signed, on the hub's clock as best known (:meth:`now_ms`):
        the hub refuses a status stamped well ahead of its clock."""
        return max(self.now_ms(), self._last_status_ts + 1)

    def _signed_status(self, state: Literal["online", "offline"], ts: int, reason: str) -> bytes:
        """The signed status (or Will) payload for the status topic."""
        self._last_status_ts = max(self._last_status_ts, ts)
        status = DeviceStatus(device=self.config.device_id, state=state, ts=ts, reason=reason)
        return encode_status(status, self.config.alg, self.config.signing_key)

    @staticmethod
    def _raise_failure(watch: asyncio.Task[None], pub: asyncio.Task[None],
                       failed: asyncio.Future[None]) -> None:
        if failed.done():
            failed.result()
        for task in (watch, pub):
            if task.done():
                task.result()  # raises its error
                raise aiomqtt.MqttError(f"{task.get_name()} ended unexpectedly")

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Queue downlink commands; raise ``MqttError`` when the connection drops."""
        async for message in client.messages:
            if str(message.topic) != self._downlink or not isinstance(message.payload, (bytes, bytearray)):
                continue
            assert self._command_queue is not None
            try:
                self._command_queue.put_nowait(bytes(message.payload))
            except asyncio.QueueFull:
                self._commands_dropped += 1
                log.warning("%s: command queue full, command dropped", self.config.device_id)

    async def _publish_loop(self, client: aiomqtt.Client, failed: asyncio.Future[None]) -> None:
        """Publish pending rows in seq order with at most ``max_inflight`` awaiting PUBACK.

        A failed publish resolves ``failed`` (the connection is then torn down);
        cancellation cancels the in-flight publishes, whose rows stay pending.
        """
        ev = self._events()
        limit = self.config.max_inflight
        slots = asyncio.Semaphore(limit)
        inflight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            ev.wake.set()

        after = 0
        try:
            while True:
                ev.wake.clear()
                rows = await self._outbox.pending(after, limit)
                if not rows:
                    if not inflight:
                        ev.idle.set()
                    await ev.wake.wait()
                    continue
                ev.idle.clear()
                for row in rows:
                    after = row.seq
                    if row.seq in self._acked:
                        continue
                    await slots.acquire()
                    task = asyncio.create_task(self._publish_one(client, row.seq, row.kind, row.payload,
                                                                 slots, failed))
                    inflight.add(task)
                    task.add_done_callback(finished)
        finally:
            for task in list(inflight):
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def _publish_one(self, client: aiomqtt.Client, seq: int, kind: str, payload: bytes,
                           slots: asyncio.Semaphore, failed: asyncio.Future[None]) -> None:
        ev = self._events()
        try:
            await client.publish(self._uplink, payload, qos=1, timeout=self.config.publish_timeout_s)
        except aiomqtt.MqttError as exc:
            if not failed.done():
                failed.set_exception(exc)
        else:
            self._acked.add(seq)
            self._published[kind] += 1
            ev.acked.set()
        finally:
            slots.release()
            ev.wake.set()

    # ------------------------------------------------ commands (CommandHost)

    @property
    def device_id(self) -> str:
        return self.config.device_id

    def verify_key(self, alg: str) -> bytes | None:
        """The key that verifies downlink frames signed with ``alg`` (None: none configured)."""
        if alg == "hmac-sha256" and self.config.alg == "hmac-sha256":
            return self.config.signing_key
        if alg == "ed25519":
            return self.config.hub_public_key
        return None

    def own_key(self) -> tuple[str, bytes]:
        """This device's algorithm and signing key, which open command arguments sealed to it."""
        return self.config.alg, self.config.signing_key

    def now_ms(self) -> int:
        """The hub's clock as best known here: the device clock plus the last measured offset."""
        return int(time.time() * 1000) + (self.clock_offset_ms or 0)

    async def submit_ack(self, command_id: bytes, status: CommandStatus, detail: str) -> None:
        await self.submit(CommandAckEvent(**self._envelope(None), body=CommandAck(command_id, status, detail)))

    def done_command(self, command_id: bytes) -> Outcome | None:
        done = self.state.done_command(command_id)
        # The state file holds only statuses record_command stored from an Outcome.
        return None if done is None else Outcome(cast(CommandStatus, done.status), done.detail)

    async def record_command(self, command_id: bytes, name: str, outcome: Outcome) -> None:
        await asyncio.to_thread(self.state.record_command, command_id, name, outcome.status, outcome.detail)

    async def apply_config(self, overrides: dict[str, Any]) -> str:
        if not overrides:
            raise CommandFailed("no options given")
        agent_part: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _AGENT_PUSHABLE:
                low, high = _AGENT_PUSHABLE[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                    raise CommandFailed(f"{key}: must be a number {low:g}..{high:g}")
                agent_part[key] = float(value)
        device_part = {k: v for k, v in overrides.items() if k not in _AGENT_PUSHABLE}
        try:
            devices = with_overrides(self._devices, device_part)
        except DeviceConfigError as exc:
            raise CommandFailed(str(exc)) from None
        stored = self.state.get_json(_OVERRIDES_KEY, {})
        stored.update(overrides)
        await asyncio.to_thread(self.state.set_json, _OVERRIDES_KEY, stored)
        self._agent_overrides.update(agent_part)
        changed = [d.name for d, old in zip(devices, self._devices) if d.options != old.options]
        self._devices = devices
        await self.restart_drivers(changed)
        return f"applied {', '.join(sorted(overrides))}" + (f"; restarted {', '.join(changed)}" if changed else "")

    async def time_sync(self, hub_ts: int, local_ms: int) -> str:
        offset = hub_ts - local_ms
        self.clock_offset_ms = offset
        await asyncio.to_thread(self.state.set_json, _OFFSET_KEY,
                                {"offset_ms": offset, "measured_at_ms": local_ms})
        if abs(offset) > 2000:
            log.warning("%s: device clock is %+d ms off the hub's", self.config.device_id, -offset)
        return f"offset_ms={offset}"

    async def reboot(self) -> str:
        if self._reboot_hook is not None:
            return await self._reboot_hook()
        names = await self.restart_drivers()
        return f"drivers restarted: {', '.join(names) or 'none'}"

    async def roster_sync(self, pins: dict[str, str], pages: dict[int, str], remove_pins: tuple[str, ...],
                          remove_pages: tuple[int, ...], replace: bool, terminals: bool) -> str:
        before = set(self.enrolment.pins)
        await asyncio.to_thread(self.enrolment.update_roster, pins=pins, pages=pages, remove_pins=remove_pins,
                                remove_pages=remove_pages, replace=replace)
        after = set(self.enrolment.pins)
        queued = 0
        has_terminals = any(isinstance(d, AdmsEndpoint) for d in self._drivers.values())
        if terminals and has_terminals:
            sns = await asyncio.to_thread(self.state.known_terminals)
            cmds = ([user_info_command(p) for p in sorted(after - before)]
                    + [delete_user_command(p) for p in sorted(before - after)])
            if sns and cmds:
                await asyncio.to_thread(self.state.queue_terminal_commands, sns, cmds)
                queued = len(sns) * len(cmds)
        replayed = await replay_parked(self.state, self.enrolment, self.config.device_id,
                                       self._submit_punch, sorted(pins))
        return (f"pins={len(self.enrolment.pins)} pages={len(self.enrolment.pages)} "
                f"terminal_commands={queued} replayed={replayed}")

    async def template_sync(self, page: int, student: str | None, template: bytes | None,
                            device: str | None) -> str:
        modules = {n: d for n, d in self._drivers.items() if isinstance(d, R30xSource)}
        if device is not None:
            if device not in modules:
                raise CommandFailed(f"device: no fingerprint module named {device!r}")
            modules = {device: modules[device]}
        if not modules:
            raise Unsupported("no fingerprint module on this agent")
        if template is None:
            await asyncio.to_thread(self.enrolment.delete_template, page)
        else:
            assert student is not None
            await asyncio.to_thread(self.enrolment.put_template, page, student, template)
        loop = asyncio.get_running_loop()
        waits: dict[str, asyncio.Future[BaseException | None]] = {}
        for name, module in modules.items():
            fut: asyncio.Future[BaseException | None] = loop.create_future()

            def done(exc: BaseException | None, fut: asyncio.Future[BaseException | None] = fut) -> None:
                def settle() -> None:  # runs on the loop thread
                    if not fut.done():
                        fut.set_result(exc)
                loop.call_soon_threadsafe(settle)

            module.enqueue_template(TemplateJob(page, template, done))
            waits[name] = fut
        await asyncio.wait(waits.values(), timeout=_TEMPLATE_WAIT_S)
        parts = []
        for name, fut in waits.items():
            if not fut.done():
                parts.append(f"{name}: queued (module not answering yet)")
            elif isinstance(fut.result(), R30xError):
                raise CommandFailed(f"{name}: module refused: {fut.result()}")
            else:
                parts.append(f"{name}: {'deleted' if template is None else 'stored'}")
        return f"page {page} sealed; " + "; ".join(parts)
