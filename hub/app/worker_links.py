"""The web's links to actors when the hub runs as several workers: each ask goes to the owning worker.

With ``Settings.partitions`` >= 1 a session's actor and a device's actor live
only in the worker that owns their room's partition (hub/app/partition_sessions.py),
while the web runs in every worker. This module builds the ``WebContext``
callables that route an ask there, over the broker (hub/app/worker_calls.py):

- ``session_call``: the local actor, else the owner's (``session_call_across_workers``);
- ``ask_device``: the local actor when this worker owns the device (started on
  demand, as in one process), else the owner's; never a second actor elsewhere;
- ``thresholds_changed``: this worker's device actors, then every other live
  worker's (each reloads the rules from PostgreSQL).

and the ``serve`` side that answers those asks from the local actors. Asks
name their target: a session id, ``device:<id>``, or ``thresholds:``.

Changes the web makes to the device registry reach the other workers without
a message: their partition keepers re-read which device is in which room
every round, and their ingress reloads a device it does not know, and a key
whose signature fails (hub/pipeline/ingress.py).

Concurrency contract: every callable here may be called from any task of the
worker's trio run, any number at once; each ask is bounded by its timeout.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hub.app.worker_calls import (
    SESSION_CALL_ERRORS,
    SESSION_CALL_TYPES,
    WorkerCallError,
    WorkerCalls,
    session_call_across_workers,
)
from hub.db import Database
from hub.db.partition_leases import device_owner, live_workers, session_owner
from hub.domain.alarms import AckAlarm, AlarmResult, ClearAlarm
from hub.pipeline.ownership import PartitionOwnership

log = logging.getLogger("hub.app.worker_links")

DEVICE_TARGET = "device:"
THRESHOLDS_TARGET = "thresholds:"
#: How long an ask of another worker may take (as a local ask from the web).
ASK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ThresholdsChanged:
    """Ask (another worker): the threshold rules changed in PostgreSQL; reload them into your device actors."""


class NoSuchDevice(LookupError):
    """The device is not registered (or its owner could not be found): the web answers 503 as for a local one."""


#: Every message and answer that crosses between workers, and the errors carried by name.
CALL_TYPES: tuple[type, ...] = (*SESSION_CALL_TYPES, AckAlarm, ClearAlarm, AlarmResult, ThresholdsChanged)
CALL_ERRORS: dict[str, type[Exception]] = {**SESSION_CALL_ERRORS, "no_such_device": NoSuchDevice}

Ask = Callable[[str, object], Awaitable[Any]]


def call_server(session_call: Ask, ask_device: Ask, thresholds_changed: Callable[[], Awaitable[None]],
                owns_device: Callable[[str], Awaitable[bool]]) -> Ask:
    """``WorkerCalls``' ``serve``: answers another worker's ask from this worker's own actors only.

    A device ask for a device this worker does not own (the asker read the leases just before a
    hand-over) is ``NoSuchDevice``: ``ask_device`` would start its actor here, a second one."""

    async def serve(target: str, message: object) -> Any:
        if target.startswith(DEVICE_TARGET):
            device_id = target[len(DEVICE_TARGET):]
            if not await owns_device(device_id):
                raise NoSuchDevice(f"device {device_id!r} is not served by this worker now")
            try:
                return await ask_device(device_id, message)
            except LookupError as exc:
                raise NoSuchDevice(str(exc)) from exc
        if target == THRESHOLDS_TARGET:
            await thresholds_changed()
            return None
        return await session_call(target, message)

    return serve


@dataclass(frozen=True)
class WorkerLinks:
    """The ``WebContext`` callables of one worker of a partitioned hub (see the module doc)."""

    session_call: Ask
    ask_device: Ask
    thresholds_changed: Callable[[], Awaitable[None]]


def worker_links(db: Database, ownership: PartitionOwnership, calls: WorkerCalls, *, lease_s: float,
                 local_session_call: Ask, local_ask_device: Ask,
                 local_thresholds_changed: Callable[[], Awaitable[None]],
                 owns_device: Callable[[str], Awaitable[bool]]) -> WorkerLinks:
    """Route each ask to the worker owning its session or device; ``owns_device(id)``: whether it is ours now."""
    partitions = ownership.partitions

    async def owner_of_session(session_id: str) -> str | None:
        return await session_owner(db, session_id, partitions)

    async def ask_device(device_id: str, message: object) -> Any:
        if await owns_device(device_id):
            return await local_ask_device(device_id, message)
        owner = await device_owner(db, device_id, partitions)
        if owner is None or owner == calls.worker_id:
            # Unknown, or nobody serves its partition this moment (a take-over in progress).
            raise NoSuchDevice(f"device {device_id!r} is not served by any worker now")
        try:
            return await calls.ask(owner, DEVICE_TARGET + device_id, message, timeout=ASK_TIMEOUT_S)
        except WorkerCallError as exc:
            raise NoSuchDevice(f"device {device_id!r}: its worker {owner} did not answer ({exc})") from exc

    async def thresholds_changed() -> None:
        await local_thresholds_changed()
        for worker_id in await live_workers(db, lease_s):
            if worker_id == calls.worker_id:
                continue
            try:
                await calls.ask(worker_id, THRESHOLDS_TARGET, ThresholdsChanged(), timeout=ASK_TIMEOUT_S)
            except WorkerCallError as exc:
                # Its device actors keep the old rules until it restarts or the next change reaches it.
                log.warning("worker %s did not take the new threshold rules: %s", worker_id, exc)

    return WorkerLinks(session_call_across_workers(local_session_call, owner_of_session, calls,
                                                   timeout=ASK_TIMEOUT_S),
                       ask_device, thresholds_changed)
