"""The quarantine keeper: takes a flooding device off the broker, and puts it back after a cool-down.

When a device's rate limit trips (its token bucket ran dry, or it stamped
too many events within one second of its clock), the ingress tells this actor
:class:`Trip` at once, before the device actor raises the ``rate_limited``
alarm (that message waits behind the flooder's events in the device's
mailbox; this one does not). If the hub manages the broker's files (a
:class:`~hub.adapters.mosquitto_auth.MosquittoSync`, from ``CAMPUSHUB_MOSQUITTO_*``),
the keeper records the quarantine in PostgreSQL (hub/db/quarantine.py, audit-logged),
re-renders the files through the same ``MosquittoSync`` the registry changes use (so
the two are serialised and nothing writes the files another way) and the broker,
signalled, closes the device's connection and refuses its logins. The flood then
stops at the broker instead of queueing ahead of every other device's events in
the hub's session. The device's agent keeps its events in its outbox and
reconnects with backoff; once the quarantine ends they are delivered.

A quarantine ends by its timer (``until``, owned here: one trio timer per
quarantined device) or by ops (:class:`Release`, ``POST /api/v1/devices/{id}/release``).
After either, the files are rendered again. On start the keeper re-arms the
timers of the quarantines PostgreSQL holds (a restarted hub keeps them; an
overdue one ends at once).

Each start and end is told to the device's actor (:class:`QuarantineChanged`),
which updates its ``rate_limited`` alarm ("quarantined at the broker until ...")
and publishes it live. That tell runs in a background task of this actor, so
the keeper never waits on a device mailbox (and the ingress waiting on this
mailbox cannot deadlock with it).

Without managed files the keeper logs once that quarantine is unavailable and
ignores trips: the ingress's limits (bucket and flood detector) alone apply.

Several workers (issue 13 part 2): every worker runs a keeper, and a quarantine
may be started by one (the worker owning the device's partition when it
flooded) and released by another (the one serving ops' request). The database
keeps them right: :func:`~hub.db.quarantine.start_quarantine` locks the device's
row and returns an active quarantine unchanged (never two at once), and each end
is one conditional ``UPDATE`` (exactly one of several keepers ends it; a timer's
end names the ``until`` it was armed for, so a stale timer never ends a newer
quarantine). Every keeper LISTENs (hub/db/pg_listen.py, migration 0038's trigger)
to every start and end, so each arms or cancels its own timer and tells the
device's actor if it runs in that worker: a keeper that dies leaves no
quarantine without a timer, and the device's alarm follows whoever ended it.
On each (re)connection of its LISTEN the keeper re-reads the active quarantines
(what it may have missed). The files are rendered by the keeper whose write
started or ended the quarantine. What a keeper knows of each device (the
``until`` it last learnt, or None once ended) is kept so each change is told to
the device's actor once per worker; one entry per device ever quarantined.

Mailbox (:data:`QUARANTINE_MAILBOX`, BLOCK): trips (at most one per device per
rate-limit episode), releases asked by the web, its own timer messages, its
LISTEN task's :class:`_Resync`, and one :class:`_Wake` for whatever its LISTEN
heard (noted in order in a list, one entry per quarantine change, taken before
the next message). When full, the ingress telling a trip waits (every device's
events wait with it, so the mailbox is sized for many devices tripping at once);
the web's release ask waits within its timeout.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Awaitable, Callable

from actors import Actor, Timer
from hub.adapters.mosquitto_auth import MosquittoSync
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.pg_listen import QUARANTINE_CHANNEL, keep_listening
from hub.db.quarantine import (
    Quarantine,
    QuarantinePolicy,
    active_quarantines,
    end_quarantine,
    start_quarantine,
)

log = logging.getLogger("hub.pipeline.quarantine")

QUARANTINE_MAILBOX = 64
#: The keeper's LISTEN connection is opened again this soon after it dropped.
LISTEN_RETRY_S = 5.0

#: ``tell_device(device_id, message)``: deliver to the device's actor if it runs (hub/app/supervision.py).
TellDevice = Callable[[str, object], Awaitable[None]]


@dataclass(frozen=True)
class Trip:
    """Tell (from the ingress): ``device_id``'s rate limit tripped (its alarm follows); quarantine it at the broker."""

    device_id: str
    detail: str


@dataclass(frozen=True)
class Release:
    """Ask: end ``device_id``'s quarantine now (``by``: the user). Reply: the ended :class:`Quarantine`,
    or ``None`` if it had none. Raises ``OSError``/``ValueError`` if the broker's files cannot be rewritten
    (the release is committed; the next rendering catches up)."""

    device_id: str
    by: str


@dataclass(frozen=True)
class QuarantineChanged:
    """Tell (to a device actor): its quarantine started (``until`` set) or ended (``until`` None, ``by`` who)."""

    until: datetime | None
    by: str = "system"


@dataclass(frozen=True)
class ArmedTimers:
    """Ask: ``{device_id: until}`` of this keeper's cool-down timers (tests, ops)."""


@dataclass(frozen=True)
class _CoolDownOver:
    device_id: str
    until: datetime


@dataclass(frozen=True)
class _Heard:
    """Heard by the LISTEN: a quarantine row was written by some worker (``until`` None: it ended)."""

    device_id: str
    until: datetime | None
    by: str


@dataclass(frozen=True)
class _Wake:
    """From the LISTEN callback: changes were noted in ``_heard``; take them."""


@dataclass(frozen=True)
class _Resync:
    """From the LISTEN task: it (re)connected; re-read the active quarantines (what it may have missed)."""


class QuarantineKeeper(Actor):
    """Owns this worker's quarantine timers. ``sync`` None: the hub does not manage the broker's files."""

    def __init__(self, db: Database, sync: MosquittoSync | None, policy: QuarantinePolicy, metrics: HubMetrics,
                 tell_device: TellDevice, *, listen_retry_s: float = LISTEN_RETRY_S) -> None:
        self._db, self._sync, self._policy, self._metrics = db, sync, policy, metrics
        self._tell_device = tell_device
        self._listen_retry_s = listen_retry_s
        #: Quarantined device -> (its cool-down timer, its end): what this keeper will try to end.
        self._timers: dict[str, tuple[Timer, datetime]] = {}
        #: Device -> the ``until`` of the quarantine last learnt (None: it ended): each change is told once.
        self._known: dict[str, datetime | None] = {}
        #: Changes heard by the LISTEN, in order, not taken yet (one ``_Wake`` in the mailbox takes them).
        self._heard: list[_Heard] = []
        self._wake_queued = False
        self._said_unavailable = False

    async def started(self) -> None:
        if self._sync is None:
            return
        # Reports started after the first LISTEN (and its re-read of the active quarantines, queued as
        # _Resync): the keeper learns every quarantine from then on, whichever worker starts it.
        await self.nursery.start(partial(
            keep_listening, self._db, QUARANTINE_CHANNEL, self._on_notify, self._on_listening,
            retry_s=self._listen_retry_s, name="quarantine keeper"))

    async def _on_listening(self) -> None:
        await self.ref.tell(_Resync())

    def _on_notify(self, payload: str) -> None:
        try:
            row = json.loads(payload)
            heard = _Heard(str(row["device_id"]), None if row["released"] else datetime.fromisoformat(row["until"]),
                           str(row["by"] or "system"))
        except (ValueError, KeyError, TypeError):
            log.warning("quarantine keeper: ignored a notification it cannot read: %r", payload[:200])
            return
        # The LISTEN callback must not block: note it (in order) and wake the actor, which takes every
        # noted change before its next message (a full mailbox: the next message handled takes them).
        self._heard.append(heard)
        if not self._wake_queued:
            self._wake_queued = self.ref.try_tell(_Wake())

    async def handle(self, message: object) -> Quarantine | dict[str, datetime] | None:
        if self._heard:
            heard, self._heard = self._heard, []
            for change in heard:
                self._learn(change.device_id, change.until, change.by)
        if isinstance(message, _Wake):
            self._wake_queued = False
        elif isinstance(message, Trip):
            await self._on_trip(message)
        elif isinstance(message, _CoolDownOver):
            armed = self._timers.get(message.device_id)
            if armed is not None and armed[1] == message.until:  # not a stale timer of an earlier quarantine
                await self._end(message.device_id, "system", until=message.until)
        elif isinstance(message, Release):
            return await self._end(message.device_id, message.by, raise_sync_errors=True)
        elif isinstance(message, _Resync):
            await self._resync()
        elif isinstance(message, ArmedTimers):
            return {device_id: until for device_id, (_, until) in self._timers.items()}
        return None

    async def _resync(self) -> None:
        active = {q.device_id: q for q in await active_quarantines(self._db)}
        for quarantine in active.values():
            self._learn(quarantine.device_id, quarantine.until)
        for device_id in [d for d in self._timers if d not in active]:
            self._learn(device_id, None)  # ended while this keeper was not listening

    async def _on_trip(self, trip: Trip) -> None:
        if self._sync is None:
            if not self._said_unavailable:
                self._said_unavailable = True
                log.warning("device %s tripped its rate limit; quarantine at the broker is unavailable (the hub "
                            "does not manage the broker's files, CAMPUSHUB_MOSQUITTO_*): the token bucket alone "
                            "applies", trip.device_id)
            return
        # No short cut on this keeper's own timers: another worker may have ended the quarantine a
        # moment ago (its NOTIFY not heard yet); start_quarantine returns one in force unchanged.
        now = datetime.now(timezone.utc)
        tripped_at = time.perf_counter()
        try:
            quarantine = await start_quarantine(self._db, trip.device_id, reason=f"rate limited: {trip.detail}",
                                                now=now, policy=self._policy)
        except LookupError:
            log.warning("device %s tripped its rate limit but is no longer registered", trip.device_id)
            return
        recorded_at = time.perf_counter()
        self._learn(quarantine.device_id, quarantine.until)
        if quarantine.since != now:
            return  # in force already (started by another worker, not heard yet): nothing to render
        self._metrics.quarantines_started.inc()
        log.warning("device %s quarantined at the broker until %s (%.0fs, strike %d): %s", trip.device_id,
                    quarantine.until.isoformat(), quarantine.cooldown_s, quarantine.strikes, trip.detail)
        await self._render()
        log.info("device %s: quarantine recorded and the broker signalled %.0f ms after the trip reached the keeper "
                 "(recorded in %.0f ms, files rendered and the broker signalled in %.0f ms)", trip.device_id,
                 (time.perf_counter() - tripped_at) * 1000, (recorded_at - tripped_at) * 1000,
                 (time.perf_counter() - recorded_at) * 1000)

    async def _end(self, device_id: str, by: str, *, raise_sync_errors: bool = False,
                   until: datetime | None = None) -> Quarantine | None:
        """End the device's quarantine (``until``: only the one armed for); None if this call ended none."""
        armed = self._timers.get(device_id)
        if armed is not None and (until is None or armed[1] == until):
            armed[0].cancel()
            del self._timers[device_id]
            self._metrics.quarantined_devices.set(len(self._timers))
        ended = await end_quarantine(self._db, device_id, by=by, now=datetime.now(timezone.utc), until=until)
        if ended is None:
            return None  # none in force, or another worker ended it first (its NOTIFY tells this keeper)
        self._metrics.quarantines_ended.labels(how="cooldown" if by == "system" else "released").inc()
        log.warning("device %s released from its broker quarantine (%s)", device_id,
                    "cool-down over" if by == "system" else f"by {by}")
        self._learn(device_id, None, by)
        if self._sync is not None:
            await self._render(raise_errors=raise_sync_errors)
        return ended

    def _learn(self, device_id: str, until: datetime | None, by: str = "system") -> None:
        """What this keeper knows of a device's quarantine changed (its own write, or another worker's
        heard): arm or cancel its timer, and tell the device's actor (if it runs here) once per change."""
        if device_id in self._known and self._known[device_id] == until:
            return
        self._known[device_id] = until
        armed = self._timers.pop(device_id, None)
        if armed is not None:
            armed[0].cancel()
        if until is not None:
            self._arm(device_id, until)
        self._metrics.quarantined_devices.set(len(self._timers))
        self._tell(device_id, QuarantineChanged(until, by))

    def _arm(self, device_id: str, until: datetime) -> None:
        delay = max(0.0, (until - datetime.now(timezone.utc)).total_seconds())
        timer = self.send_after(delay, _CoolDownOver(device_id, until))
        self._timers[device_id] = (timer, until)

    async def _render(self, *, raise_errors: bool = False) -> None:
        assert self._sync is not None
        try:
            result = await self._sync.sync()
        except (OSError, ValueError):
            # The quarantine is committed; the files catch up on the next rendering (any registry change).
            log.exception("could not rewrite the broker's files for a quarantine")
            if raise_errors:
                raise
            return
        if not result.reloaded:
            log.warning("broker files rewritten for a quarantine, but the broker was not signalled (no pid file)")

    def _tell(self, device_id: str, message: QuarantineChanged) -> None:
        async def tell() -> None:
            try:
                await self._tell_device(device_id, message)
            except Exception:  # noqa: BLE001 - the quarantine stands; only the alarm's text lags
                log.exception("device %s: could not tell its actor about its quarantine", device_id)

        self.nursery.start_soon(tell)
