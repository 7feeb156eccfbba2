"""The CommandDispatcher actor: hub → device commands, their delivery, acknowledgement and timeout.

One actor for the whole hub owns every outstanding command (``pending`` or
``sent``, see hub/db/device_commands.py for the status machine) and one
exact timer per command: until the broker accepts the publish, the timer is
the command's expiry (→ ``expired``); once sent, it is the ack deadline
``sent_at + ack_timeout_s`` (→ ``timed_out``). No periodic sweep.

Delivery: each command is a signed :class:`schemas.Command` frame published
on the device's downlink topic at QoS 1 with MQTT 5 Message Expiry = the
seconds left until ``expires_at`` (the broker drops it for a device that
stays away), and ``expires_ts`` inside the command (the device answers
``expired`` if it gets it late from its own buffers). Signing:

- ``hmac-sha256`` devices: HMAC with the device's own secret (the one it
  signs its uplinks with);
- ``ed25519`` devices: the hub's own Ed25519 key (``hub_signing_keys``),
  whose public key the device receives at provisioning. A device only ever
  holds its own private key, so it could not verify a signature made with it.

Sealed arguments (schemas/_sealed.py): ``create_command`` sealed them to the
device and stored only the blob; this actor copies the blob into the
command's ``sealed`` field unchanged (it never sees the plaintext). The
blob leaves the database with the command's first move out of ``pending``
(migration 0019's trigger, in the same UPDATE as ``sent``, an ack or an
expiry), so a command whose blob is gone while still ``pending`` (a row from
before sealing) is failed, not sent without its arguments.

Each publish runs in its own task of this actor's nursery (waiting for the
broker's PUBACK, possibly across a reconnect) and reports back with a
message, so a slow broker never blocks acks or timers.

Restart safety: ``started()`` reloads every outstanding command from
PostgreSQL, publishes the ``pending`` ones again and re-arms the deadline of
the ``sent`` ones (an expired deadline fires at once). Delivery is therefore
at least once: a command may reach a device twice (e.g. after a crash
between the broker's PUBACK and the ``sent`` update); devices ignore a
command id they have already run.

Several workers (issue 13 part 2): every worker runs this actor, and one of
them, the holder of the advisory lock ``COMMANDS_LOCK``
(``hub.db.advisory.hold_session_lock``), is *the* dispatcher: only it
publishes commands and owns their timers. It LISTENs, on the lock's own
connection, for every command any worker's web or service records (migration
0038's trigger on ``device_commands``), so a command recorded on another
worker is published at its commit; on taking the lock it reloads every
outstanding command, exactly as a restart does. The others are standbys:
they drop :class:`Dispatch` (the holder heard the same command) and look for
the lock every :data:`LOCK_RETRY_S`; when the holder dies its connection
closes, which releases the lock. Acks are answered wherever they arrive (the
device's partition may live on any worker): the ack's transition is one
conditional ``UPDATE`` (hub/db/device_commands.py), so it moves the command
once whoever applies it, and the holder's timer for that command then finds
it answered and changes nothing. A holder that loses its lock's connection
forgets its timers; whoever takes the lock next re-sends what is still
``pending`` (at least once, as after a restart).

Mailbox: :data:`COMMANDS_MAILBOX`, ``Overflow.BLOCK``. Senders are the web
(one message per command created: the request waits while the mailbox is
full), the ingress (command acks: it waits, which is backpressure on the
MQTT channel like any full device mailbox), this actor's own timers and
publish tasks, and its lock task (:class:`_Holding`). Commands heard by
NOTIFY are not messages: they are noted in a set (one entry per command id
heard and not yet handled) and one :class:`_Heard` wakes the actor to take
them all.
"""
from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Callable

import asyncpg

from actors import Actor, ActorRef, Timer
from actors.delivery import deliver
from hub.core.bus import DEVICES_TOPIC, LiveBus, LiveCommand
from hub.db import Database
from hub.db.advisory import COMMANDS_LOCK, Holding, hold_session_lock
from hub.db.device_commands import (
    ACK_STATUS,
    CommandRow,
    command_json,
    get_command,
    outstanding_commands,
    transition,
)
from hub.db.device_registry import load_devices
from hub.db.pg_listen import DEVICE_COMMAND_CHANNEL, listen_on
from hub.db.provisioning import hub_signing_key
from hub.domain.credentials import ed25519_public_key
from hub.mqtt import InboundMessage, MqttError, TrioMqttClient
from hub.pipeline.commits import accept, reject, utc_from_s
from schemas import Command, CommandAckEvent, SealError, Topics, WireError, decode_sealed, encode_command

log = logging.getLogger("hub.pipeline.commands")

COMMANDS_MAILBOX = 256
#: A standby worker looks for the dispatcher's lock this often: at most this long without a
#: dispatcher after the holder dies (commands recorded meanwhile wait in PostgreSQL).
LOCK_RETRY_S = 10.0
#: Statuses an ack may move a command from: a late ack (after ``timed_out``) still
#: records what the device did, and an ack may overtake our own PUBACK bookkeeping.
_ACKABLE = ("pending", "sent", "timed_out")


@dataclass(frozen=True)
class Dispatch:
    """Tell: a new ``pending`` command was recorded; publish it."""

    command_id: uuid.UUID


@dataclass(frozen=True)
class CommandAckReceived:
    """Tell (from the ingress): an authenticated ``command_ack`` event."""

    message: InboundMessage
    event: CommandAckEvent


@dataclass(frozen=True)
class GetOutstanding:
    """Ask: ``{command_id: status}`` of the commands this actor is tracking (for tests and health).
    Empty on a standby worker: only the lock's holder tracks commands."""


@dataclass(frozen=True)
class IsDispatcher:
    """Ask: whether this worker's actor is the hub's dispatcher (holds ``COMMANDS_LOCK``)."""


@dataclass(frozen=True)
class _Holding:
    """From the lock task: the dispatcher's lock was taken (reload everything) or is no longer held."""

    held: bool


@dataclass(frozen=True)
class _Heard:
    """Commands were recorded (NOTIFY): take the ids noted in ``_heard``."""


@dataclass(frozen=True)
class _Published:
    command_id: uuid.UUID
    error: str | None


@dataclass(frozen=True)
class _Deadline:
    command_id: uuid.UUID
    #: The status the timer was armed for; a stale timer (status moved on) does nothing.
    status: str


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class CommandDispatcher(Actor):
    def __init__(
        self, *, db: Database, client: TrioMqttClient, topics: Topics, writer: ActorRef, bus: LiveBus,
        clock: Callable[[], float] = time.time, lock_retry_s: float = LOCK_RETRY_S,
    ) -> None:
        self._db = db
        self._client = client
        self._topics = topics
        self._writer = writer
        self._bus = bus
        self._clock = clock
        self._lock_retry_s = lock_retry_s
        self._hub_seed = b""
        #: Whether this worker holds COMMANDS_LOCK: only then does it publish and time commands.
        self._dispatcher = False
        #: command id -> (status it is tracked in, its timer); empty unless ``_dispatcher``.
        self._outstanding: dict[uuid.UUID, tuple[str, Timer]] = {}
        #: Command ids heard by NOTIFY, not handled yet (one ``_Heard`` in the mailbox takes them all),
        #: in the order heard: NOTIFYs arrive in commit order, so a device's commands go out in order.
        self._heard: dict[uuid.UUID, None] = {}
        self._wake_queued = False

    async def started(self) -> None:
        candidate = secrets.token_bytes(32)
        self._hub_seed, _ = await hub_signing_key(self._db, candidate, ed25519_public_key(candidate))
        # After the first try of the lock: a worker that can be the dispatcher is one before its
        # first message (the reload is queued as _Holding, handled first).
        await self.nursery.start(partial(hold_session_lock, self._db, COMMANDS_LOCK, self._on_holding,
                                         retry_s=self._lock_retry_s, name="command dispatcher"))

    async def _on_holding(self, state: Holding, conn: asyncpg.Connection | None) -> None:
        """The lock task's news (its own task): LISTEN on the lock's connection, then let the actor reload."""
        if state is Holding.HELD:
            assert conn is not None
            # LISTEN before the reload (queued behind it): a command recorded in between is heard.
            await listen_on(conn, DEVICE_COMMAND_CHANNEL, self._on_notify)
        await self.ref.tell(_Holding(state is Holding.HELD))

    def _on_notify(self, payload: str) -> None:
        try:
            self._heard[uuid.UUID(payload)] = None
        except ValueError:
            log.warning("command dispatcher: ignored a notification that is not a command id: %r", payload[:80])
            return
        if not self._wake_queued:
            # A full mailbox keeps the ids noted: the next message handled takes them.
            self._wake_queued = self.ref.try_tell(_Heard())

    async def handle(self, message: object) -> object:
        if self._heard and self._dispatcher and not isinstance(message, _Holding):
            await self._take_heard()
        if isinstance(message, Dispatch):
            if self._dispatcher:
                await self._dispatch(message.command_id)
            # else: the dispatcher heard the same command at its commit (NOTIFY)
        elif isinstance(message, _Heard):
            self._wake_queued = False
            if not self._dispatcher:
                self._heard.clear()
        elif isinstance(message, CommandAckReceived):
            await self._on_ack(message)
        elif isinstance(message, _Published):
            await self._on_published(message)
        elif isinstance(message, _Deadline):
            await self._on_deadline(message)
        elif isinstance(message, _Holding):
            await self._on_lock(message.held)
        elif isinstance(message, GetOutstanding):
            return {command_id: status for command_id, (status, _) in self._outstanding.items()}
        elif isinstance(message, IsDispatcher):
            return self._dispatcher
        else:
            raise TypeError(f"CommandDispatcher: unexpected message {message!r}")
        return None

    async def _on_lock(self, held: bool) -> None:
        """Became the dispatcher: reload every outstanding command (as a restart does). Lost it: forget
        every timer (whoever holds the lock next reloads them)."""
        for _, timer in self._outstanding.values():
            timer.cancel()
        self._outstanding.clear()
        self._dispatcher = held
        if not held:
            self._heard.clear()
            return
        log.info("command dispatcher: this worker dispatches the hub's commands")
        self._heard.clear()  # the reload covers everything recorded before it
        for row in await outstanding_commands(self._db):
            if row.status == "pending":
                await self._start(row)
            else:
                self._arm(row)

    async def _take_heard(self) -> None:
        heard, self._heard = self._heard, {}
        for command_id in heard:
            await self._dispatch(command_id)

    async def _dispatch(self, command_id: uuid.UUID) -> None:
        if command_id not in self._outstanding:
            row = await get_command(self._db, command_id)
            if row is not None and row.status == "pending":
                await self._start(row)

    # ------------------------------------------------------------------ sending

    async def _start(self, row: CommandRow) -> None:
        now = self._clock()
        remaining = row.expires_at.timestamp() - now
        if remaining <= 0:
            await self._finish(row.command_id, ("pending",), "expired", "expired before the broker accepted it")
            return
        records = await load_devices(self._db, [row.device_id])
        if not records or records[0].revoked:
            await self._finish(row.command_id, ("pending",), "failed", "device revoked")
            return
        device = records[0]
        if row.sealed_keys and row.sealed is None:
            await self._finish(row.command_id, ("pending",), "failed",
                               "sealed arguments are no longer stored: issue the command again")
            return
        try:
            sealed = None if row.sealed is None else decode_sealed(row.sealed)
        except SealError as exc:
            await self._finish(row.command_id, ("pending",), "failed", str(exc))
            return
        command = Command(
            v=1, id=row.command_id.bytes, device=row.device_id, name=row.name, hub_ts=int(now * 1000),
            expires_ts=int(row.expires_at.timestamp() * 1000), args=row.args, sealed=sealed,
        )
        try:
            if device.alg == "ed25519":
                payload = encode_command(command, "ed25519", self._hub_seed)
            else:
                payload = encode_command(command, "hmac-sha256", device.key)
        except WireError as exc:  # oversize args
            await self._finish(row.command_id, ("pending",), "failed", f"cannot encode: {exc}")
            return
        self._arm(row)
        # Whole seconds, rounded up: the broker must not drop it before expires_at.
        expiry_s = max(1, int(-(-remaining // 1)))
        self.nursery.start_soon(self._publish, row.command_id, self._topics.downlink(row.device_id), payload, expiry_s)

    async def _publish(self, command_id: uuid.UUID, topic: str, payload: bytes, expiry_s: int) -> None:
        try:
            await self._client.publish(topic, payload, qos=1, message_expiry_s=expiry_s, wait_for_ack=True)
        except MqttError as exc:
            await self.ref.tell(_Published(command_id, str(exc)))
        else:
            await self.ref.tell(_Published(command_id, None))

    async def _on_published(self, message: _Published) -> None:
        at = self._clock()
        if message.error is not None:
            await self._finish(message.command_id, ("pending",), "failed", message.error)
            return
        row = await transition(self._db, message.command_id, from_statuses=("pending",), to_status="sent",
                               at=_utc(at), sent=True)
        if row is None:
            return  # already answered (an ack overtook the PUBACK), expired or revoked
        self._cancel(row.command_id)
        if self._dispatcher:  # a publish that outlived this worker's lock: the next holder times it
            self._arm(row)
        self._live(row)

    # ------------------------------------------------------------------ answers and deadlines

    async def _on_ack(self, item: CommandAckReceived) -> None:
        event, message = item.event, item.message
        ack = event.body
        command_id = uuid.UUID(bytes=ack.command_id)
        status = ACK_STATUS[ack.status]
        row = await transition(
            self._db, command_id, from_statuses=_ACKABLE, to_status=status,
            at=utc_from_s(message.received_at), acked=True, device_id=event.device,
            detail=ack.detail or f"device answered {ack.status}",
        )
        if row is not None:
            self._cancel(command_id)
            self._live(row)
            await deliver(self._writer, accept(event, message))
            return
        existing = await get_command(self._db, command_id)
        if existing is None or existing.device_id != event.device:
            await deliver(self._writer, reject(message, "unknown_command", str(command_id), event=event))
            return
        # A redelivered ack, or one for a command already closed (revoked device, expired
        # unsent): keep it in the ledger, change nothing.
        await deliver(self._writer, accept(event, message))

    async def _on_deadline(self, message: _Deadline) -> None:
        tracked = self._outstanding.get(message.command_id)
        if tracked is None or tracked[0] != message.status:
            return
        del self._outstanding[message.command_id]
        if message.status == "pending":
            await self._finish(message.command_id, ("pending",), "expired",
                               "not accepted by the broker before it expired")
        else:
            row = await get_command(self._db, message.command_id)
            timeout = row.ack_timeout_s if row is not None else 0
            await self._finish(message.command_id, ("sent",), "timed_out",
                               f"no acknowledgement within {timeout} s of sending")

    async def _finish(self, command_id: uuid.UUID, from_statuses: tuple[str, ...], status: str, detail: str) -> None:
        self._cancel(command_id)
        row = await transition(self._db, command_id, from_statuses=from_statuses, to_status=status,
                               at=_utc(self._clock()), detail=detail)
        if row is not None:
            log.info("command %s to %s: %s (%s)", command_id, row.device_id, status, detail)
            self._live(row)

    # ------------------------------------------------------------------ timers and live updates

    def _arm(self, row: CommandRow) -> None:
        """One timer per outstanding command, for the deadline of its current status."""
        deadline = row.expires_at if row.status == "pending" else row.ack_deadline
        assert deadline is not None
        self._cancel(row.command_id)
        timer = self.send_after(deadline.timestamp() - self._clock(), _Deadline(row.command_id, row.status))
        self._outstanding[row.command_id] = (row.status, timer)

    def _cancel(self, command_id: uuid.UUID) -> None:
        tracked = self._outstanding.pop(command_id, None)
        if tracked is not None:
            tracked[1].cancel()

    def _live(self, row: CommandRow) -> None:
        self._bus.publish(DEVICES_TOPIC, LiveCommand(**command_json(row)))
