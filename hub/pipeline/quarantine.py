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

Mailbox (:data:`QUARANTINE_MAILBOX`, BLOCK): trips (at most one per device per
rate-limit episode), releases asked by the web, and its own timer messages. When
full, the ingress telling a trip waits (every device's events wait with it, so
the mailbox is sized for many devices tripping at once);
the web's release ask waits within its timeout.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable

from actors import Actor, Timer
from hub.adapters.mosquitto_auth import MosquittoSync
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.quarantine import (
    Quarantine,
    QuarantinePolicy,
    active_quarantines,
    end_quarantine,
    start_quarantine,
)

log = logging.getLogger("hub.pipeline.quarantine")

QUARANTINE_MAILBOX = 64

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
class _CoolDownOver:
    device_id: str
    until: datetime


class QuarantineKeeper(Actor):
    """Owns the quarantine timers. ``sync`` None: the hub does not manage the broker's files."""

    def __init__(self, db: Database, sync: MosquittoSync | None, policy: QuarantinePolicy, metrics: HubMetrics,
                 tell_device: TellDevice) -> None:
        self._db, self._sync, self._policy, self._metrics = db, sync, policy, metrics
        self._tell_device = tell_device
        #: Quarantined device -> (its cool-down timer, its end): what this keeper will end.
        self._timers: dict[str, tuple[Timer, datetime]] = {}
        self._said_unavailable = False

    async def started(self) -> None:
        if self._sync is None:
            return
        now = datetime.now(timezone.utc)
        for quarantine in await active_quarantines(self._db):
            self._arm(quarantine, now)

    async def handle(self, message: object) -> Quarantine | None:
        if isinstance(message, Trip):
            await self._on_trip(message)
        elif isinstance(message, _CoolDownOver):
            armed = self._timers.get(message.device_id)
            if armed is not None and armed[1] == message.until:  # not a stale timer of an earlier quarantine
                await self._end(message.device_id, "system")
        elif isinstance(message, Release):
            return await self._end(message.device_id, message.by, raise_sync_errors=True)
        return None

    async def _on_trip(self, trip: Trip) -> None:
        if self._sync is None:
            if not self._said_unavailable:
                self._said_unavailable = True
                log.warning("device %s tripped its rate limit; quarantine at the broker is unavailable (the hub "
                            "does not manage the broker's files, CAMPUSHUB_MOSQUITTO_*): the token bucket alone "
                            "applies", trip.device_id)
            return
        if trip.device_id in self._timers:
            return  # already quarantined (a trip queued before the quarantine took effect)
        now = datetime.now(timezone.utc)
        tripped_at = time.perf_counter()
        try:
            quarantine = await start_quarantine(self._db, trip.device_id, reason=f"rate limited: {trip.detail}",
                                                now=now, policy=self._policy)
        except LookupError:
            log.warning("device %s tripped its rate limit but is no longer registered", trip.device_id)
            return
        recorded_at = time.perf_counter()
        self._arm(quarantine, now)
        self._metrics.quarantines_started.inc()
        log.warning("device %s quarantined at the broker until %s (%.0fs, strike %d): %s", trip.device_id,
                    quarantine.until.isoformat(), quarantine.cooldown_s, quarantine.strikes, trip.detail)
        await self._render()
        log.info("device %s: quarantine recorded and the broker signalled %.0f ms after the trip reached the keeper "
                 "(recorded in %.0f ms, files rendered and the broker signalled in %.0f ms)", trip.device_id,
                 (time.perf_counter() - tripped_at) * 1000, (recorded_at - tripped_at) * 1000,
                 (time.perf_counter() - recorded_at) * 1000)
        self._tell(trip.device_id, QuarantineChanged(quarantine.until))

    async def _end(self, device_id: str, by: str, *, raise_sync_errors: bool = False) -> Quarantine | None:
        armed = self._timers.pop(device_id, None)
        if armed is not None:
            armed[0].cancel()
        self._metrics.quarantined_devices.set(len(self._timers))
        ended = await end_quarantine(self._db, device_id, by=by, now=datetime.now(timezone.utc))
        if ended is None:
            return None
        self._metrics.quarantines_ended.labels(how="cooldown" if by == "system" else "released").inc()
        log.warning("device %s released from its broker quarantine (%s)", device_id,
                    "cool-down over" if by == "system" else f"by {by}")
        if self._sync is not None:
            await self._render(raise_errors=raise_sync_errors)
        self._tell(device_id, QuarantineChanged(None, by))
        return ended

    def _arm(self, quarantine: Quarantine, now: datetime) -> None:
        delay = max(0.0, (quarantine.until - now).total_seconds())
        timer = self.send_after(delay, _CoolDownOver(quarantine.device_id, quarantine.until))
        self._timers[quarantine.device_id] = (timer, quarantine.until)
        self._metrics.quarantined_devices.set(len(self._timers))

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
