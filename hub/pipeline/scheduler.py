"""The session scheduler: opens each class session on time and closes it on time, with exact timers.

Per session it arms one timer at the check-in window's opening (start the
session actor, mark the session ``open``) and one at its end plus
``LINGER_AFTER_END`` (close it: ask the actor :class:`CloseSession`, which
marks everyone without a record absent, then mark the session closed and
finalized in PostgreSQL, then stop the actor). Nothing polls for changes:
the web tells it :class:`SessionsChanged` after creating, opening, closing,
cancelling, rescheduling or regenerating sessions, and it re-reads exactly
those sessions and re-arms their timers. Its only periodic work is moving
its horizon: it holds the sessions whose window opens within ``HORIZON``
and, every half horizon, loads the next stretch (one query).

Boot is one query for the whole window, one batched status update for the
sessions open right now, and one actor start per live session; sessions whose
close was missed while the hub was down (up to ``FINALIZE_LOOKBACK``) are
closed at once.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

import trio

from actors import Actor, ActorRef, AskTimeout, ChildExists, ChildSpec, Restart, Supervisor, Timer
from hub.db import Database
from hub.db.class_sessions import (
    ScheduledSession,
    mark_finalized,
    mark_opened,
    schedule_window,
    scheduled_sessions,
)
from hub.db.session_snapshots import SessionSnapshot, load_session_snapshots
from hub.domain.session_messages import CloseSession
from hub.pipeline.ownership import EVERYTHING, OwnershipChanged, PartitionOwnership
from hub.pipeline.session_actor import SESSION_MAILBOX, SessionActor

log = logging.getLogger("hub.pipeline.scheduler")

#: Mailbox: bounded, Overflow.BLOCK; senders (device actors resolving a room, the web's
#: ``sessions_changed``, this actor's own timers and close tasks) wait while it is full.
SCHEDULER_MAILBOX = 256
#: Scans buffered offline at the edge can arrive this long after a session ended.
LATE_ARRIVAL_WINDOW = timedelta(hours=24)
#: A session actor lingers this long after the end, for stragglers, before the close.
LINGER_AFTER_END = timedelta(minutes=10)
#: Sessions whose check-in opens within this are held (and timed); the rest are loaded later.
HORIZON = timedelta(days=1)
#: A session whose close was missed (hub down) this long ago is still closed at boot.
FINALIZE_LOOKBACK = timedelta(days=7)
#: How long a session actor may take to mark the absentees before the close is retried.
CLOSE_TIMEOUT_S = 30.0
CLOSE_RETRY_S = 60.0
#: Closes running at once (each holds a session actor and a database connection briefly).
CONCURRENT_CLOSES = 16


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ResolveSession:
    """Ask: the session actor for a scan in ``room_id`` at ``at``, started on demand; or ``None``."""

    room_id: str
    at: datetime


@dataclass(frozen=True)
class SessionRoute:
    session_id: str
    ref: ActorRef
    opens_at: datetime
    ends_at: datetime


#: How long a ResolveSession ask waits before the wait is logged as slow (it then goes on waiting).
RESOLVE_ASK_S = 10.0


async def resolve_session(scheduler: ActorRef, room_id: str, at: datetime) -> SessionRoute | None:
    """The session route for a scan in ``room_id`` at ``at`` (:class:`ResolveSession`), or ``None``.

    Concurrency contract: blocks the calling actor until the scheduler answers. A
    slow answer is backpressure, not a fault: under a backlog the scheduler may be
    starting hundreds of session actors, each loading its roster, one after the
    other. So an ask that takes longer than :data:`RESOLVE_ASK_S` is logged and
    then waited for without a limit (one more ask, queued behind the first;
    resolving is idempotent and the first, late reply is discarded) instead of
    crashing the device actor, which for hundreds of devices at once would exceed
    the devices supervisor's restart intensity and stop the hub. The scan stays
    unacknowledged meanwhile and the device's later events wait behind it, so its
    order is kept. A scheduler that stops or crashes still raises
    (``ActorStopped``/``ActorCrashed``).
    """
    try:
        return await scheduler.ask(ResolveSession(room_id, at), timeout=RESOLVE_ASK_S)
    except AskTimeout:
        log.warning("scheduler: no session answer for room %s within %.0f s; waiting for it", room_id, RESOLVE_ASK_S)
    return await scheduler.ask(ResolveSession(room_id, at), timeout=math.inf)


@dataclass(frozen=True)
class SessionsChanged:
    """Tell: these sessions were created, changed or deleted in PostgreSQL (after the commit); re-read them."""

    session_ids: tuple[str, ...]


@dataclass(frozen=True)
class ScheduleStatus:
    """Ask (tests, diagnostics): ``{session_id: "armed" | "closing" | "done" | "cancelled"}`` of held sessions."""


@dataclass(frozen=True)
class _Horizon:
    pass


@dataclass(frozen=True)
class _Open:
    session_id: str


@dataclass(frozen=True)
class _Close:
    session_id: str


@dataclass(frozen=True)
class _Linger:
    """Stop a finalized session's actor that was woken for a late scan."""

    session_id: str


@dataclass(frozen=True)
class _Closed:
    session_id: str
    ok: bool


class SessionScheduler(Actor):
    """State: the held sessions (``_known``), their timers, and the closes in progress.

    ``clock`` returns the current UTC time; tests inject one that follows
    trio's (mock) clock so timers and "now" agree. ``session_actor`` builds
    the actor of a session id (default: :class:`SessionActor`).
    """

    def __init__(
        self, *, db: Database, sessions: Supervisor, writer: ActorRef,
        clock: Callable[[], datetime] = _utc_now, close_timeout_s: float = CLOSE_TIMEOUT_S,
        session_actor: Callable[[str], Actor] | None = None,
        ownership: PartitionOwnership = EVERYTHING,
    ) -> None:
        self._db = db
        #: Only sessions of owned rooms are held (many workers: hub/pipeline/ownership.py).
        self._ownership = ownership
        self._sessions = sessions
        self._writer = writer
        self._clock = clock
        self._close_timeout_s = close_timeout_s
        #: Snapshots loaded together for the sessions being opened at once (see _apply).
        self._preloaded: dict[str, SessionSnapshot] = {}
        self._session_actor = session_actor or (lambda session_id: SessionActor(
            session_id, db=db, writer=writer, snapshot=self._preloaded.pop(session_id, None)))
        self._known: dict[str, ScheduledSession] = {}
        self._timers: dict[str, list[Timer]] = {}
        self._closing: set[str] = set()
        self._horizon_end = clock()
        self._close_limiter = trio.CapacityLimiter(CONCURRENT_CLOSES)

    async def started(self) -> None:
        now = self._clock()
        self._horizon_end = now + HORIZON
        records = await schedule_window(self._db, now - max(LATE_ARRIVAL_WINDOW, FINALIZE_LOOKBACK), self._horizon_end)
        await self._apply(records, now)
        self.send_after((HORIZON / 2).total_seconds(), _Horizon())

    async def handle(self, message):
        if isinstance(message, ResolveSession):
            return await self._resolve(message)
        if isinstance(message, SessionsChanged):
            await self._changed(message.session_ids)
        elif isinstance(message, _Open):
            await self._open(message.session_id)
        elif isinstance(message, _Close):
            self._start_close(message.session_id)
        elif isinstance(message, _Closed):
            self._closing.discard(message.session_id)
            record = self._known.get(message.session_id)
            if message.ok and record is not None:
                status = "cancelled" if record.status == "cancelled" else "closed"
                self._known[message.session_id] = dataclasses.replace(record, status=status, finalized=True)
            elif not message.ok:
                self._timers[message.session_id] = [self.send_after(CLOSE_RETRY_S, _Close(message.session_id))]
        elif isinstance(message, _Linger):
            record = self._known.get(message.session_id)
            if record is not None and record.finalized and message.session_id not in self._closing:
                await self._sessions.stop_child(message.session_id)
        elif isinstance(message, _Horizon):
            await self._advance_horizon()
        elif isinstance(message, OwnershipChanged):
            await self._ownership_changed()
        elif isinstance(message, ScheduleStatus):
            return self._status()
        return None

    @property
    def live_session_ids(self) -> list[str]:
        return self._sessions.child_ids()

    # --- arming ----------------------------------------------------------------

    async def _apply(self, records: Sequence[ScheduledSession], now: datetime) -> None:
        """Arm each record; then open (one batched update) and close what is due right now."""
        to_open, to_close, to_stop = [], [], []
        for record in records:
            if not self._ownership.owns_room(record.room_id):
                continue  # another worker's room (hub/pipeline/ownership.py)
            action = self._arm(record, now)
            if action == "open":
                to_open.append(record)
            elif action == "close":
                to_close.append(record.session_id)
            elif action == "stop":
                to_stop.append(record.session_id)
        scheduled = [r.session_id for r in to_open if r.status == "scheduled"]
        if scheduled:
            await mark_opened(self._db, scheduled, now)
            for session_id in scheduled:
                self._known[session_id] = dataclasses.replace(self._known[session_id], status="open")
        # Started here, not by messages to ourselves: a boot with more live
        # sessions than our mailbox holds must still open every one of them.
        # Their snapshots are loaded in one round trip, not one per actor
        # (2,000 sessions: 6.8 s → see docs/performance.md, restart).
        starting = [r.session_id for r in to_open if self._sessions.lookup(r.session_id) is None]
        if len(starting) > 1:
            self._preloaded = await load_session_snapshots(self._db, starting)
        try:
            for record in to_open:
                await self._ensure_running(record.session_id)
        finally:
            self._preloaded = {}
        for session_id in to_close:
            self._start_close(session_id)
        for session_id in to_stop:
            await self._sessions.stop_child(session_id)

    def _arm(self, record: ScheduledSession, now: datetime) -> str | None:
        """Replace the session's timers; say what is due now: "open", "close", "stop" or None."""
        session_id = record.session_id
        self._disarm(session_id)
        self._known[session_id] = record
        if session_id in self._closing:
            return None
        if record.status == "cancelled":
            return "stop" if self._sessions.lookup(session_id) is not None else None
        if record.finalized:
            return None
        close_at = record.ends_at + LINGER_AFTER_END
        if record.status == "closed" or now >= close_at:
            return "close"
        timers = [self.send_after((close_at - now).total_seconds(), _Close(session_id))]
        if record.status == "scheduled" and now < record.opens_at:
            timers.append(self.send_after((record.opens_at - now).total_seconds(), _Open(session_id)))
        self._timers[session_id] = timers
        return "open" if record.status == "open" or record.opens_at <= now else None

    def _disarm(self, session_id: str) -> None:
        for timer in self._timers.pop(session_id, ()):
            timer.cancel()

    async def _changed(self, session_ids: Sequence[str]) -> None:
        now = self._clock()
        # A session moved to a room of another worker is dropped here like a deleted one.
        records = [r for r in await scheduled_sessions(self._db, session_ids) if self._ownership.owns_room(r.room_id)]
        found = {r.session_id for r in records}
        for session_id in set(session_ids) - found:  # deleted (e.g. by timetable regeneration)
            self._disarm(session_id)
            self._known.pop(session_id, None)
            if session_id not in self._closing:
                await self._sessions.stop_child(session_id)
        held = []
        for record in records:
            if record.opens_at > self._horizon_end and record.status == "scheduled":
                # Beyond the horizon (e.g. rescheduled to next week): the horizon's load arms it.
                self._disarm(record.session_id)
                self._known.pop(record.session_id, None)
                if record.session_id not in self._closing:
                    await self._sessions.stop_child(record.session_id)
            else:
                held.append(record)
        await self._apply(held, now)

    async def _ownership_changed(self) -> None:
        """Drop the sessions of rooms no longer ours (their actors stop), then hold those of rooms now ours.

        A session being closed stays until its close ends (its actor is needed for it); the next
        owner finds it not finalized and closes it again, which is idempotent.
        """
        for session_id, record in list(self._known.items()):
            if not self._ownership.owns_room(record.room_id) and session_id not in self._closing:
                self._disarm(session_id)
                del self._known[session_id]
                await self._sessions.stop_child(session_id)
        if self._ownership.partitioned and not self._ownership.owned:
            return  # nothing to hold (and no query: this may be a database outage)
        now = self._clock()
        records = await schedule_window(self._db, now - max(LATE_ARRIVAL_WINDOW, FINALIZE_LOOKBACK), self._horizon_end)
        await self._apply([r for r in records if r.session_id not in self._known], now)

    async def _advance_horizon(self) -> None:
        now = self._clock()
        for session_id, record in list(self._known.items()):
            if record.ends_at < now - LATE_ARRIVAL_WINDOW and session_id not in self._closing:
                self._disarm(session_id)
                del self._known[session_id]
        start, self._horizon_end = self._horizon_end, now + HORIZON
        fresh = [r for r in await schedule_window(self._db, start, self._horizon_end)
                 if self._known.get(r.session_id) != r]
        await self._apply(fresh, now)
        self.send_after((HORIZON / 2).total_seconds(), _Horizon())

    # --- opening and closing -----------------------------------------------------

    async def _open(self, session_id: str) -> None:
        record = self._known.get(session_id)
        if record is None or record.status != "scheduled" or record.finalized:
            return
        now = self._clock()
        await mark_opened(self._db, [session_id], now)
        self._known[session_id] = dataclasses.replace(record, status="open")
        await self._ensure_running(session_id)

    def _start_close(self, session_id: str) -> None:
        record = self._known.get(session_id)
        if session_id in self._closing or record is None or record.finalized or record.status == "cancelled":
            return
        self._disarm(session_id)
        self._closing.add(session_id)
        self.nursery.start_soon(self._close, session_id)

    async def _close(self, session_id: str) -> None:
        """Background task: auto-absent through the session actor, record it, stop the actor.

        Runs beside the message loop (so resolving scans never waits for a
        close) and reports back with :class:`_Closed`; a failure (actor
        crash, timeout, database down) is retried after ``CLOSE_RETRY_S``.
        """
        ok = False
        try:
            async with self._close_limiter:
                ref = await self._ensure_running(session_id)
                await ref.ask(CloseSession(), timeout=self._close_timeout_s)
                await mark_finalized(self._db, session_id, self._clock())
                await self._sessions.stop_child(session_id)
                ok = True
        except Exception as exc:  # noqa: BLE001 - any failure means "retry later", never a scheduler crash
            log.warning("closing session %s failed (%s: %s); retrying in %.0fs",
                        session_id, type(exc).__name__, exc, CLOSE_RETRY_S)
        await self.ref.tell(_Closed(session_id, ok))

    async def _ensure_running(self, session_id: str) -> ActorRef:
        ref = self._sessions.lookup(session_id)
        if ref is None:
            try:
                ref = await self._sessions.start_child(ChildSpec(
                    id=session_id,
                    start=lambda: self._session_actor(session_id),
                    restart=Restart.TRANSIENT,
                    mailbox_size=SESSION_MAILBOX,
                ))
            except ChildExists:  # a close task started it meanwhile
                ref = self._sessions.lookup(session_id)
        # Sessions' children are actors, and no checkpoint since ChildExists: it is still there.
        assert isinstance(ref, ActorRef)
        return ref

    async def _resolve(self, request: ResolveSession) -> SessionRoute | None:
        for record in self._known.values():
            if record.room_id == request.room_id and record.opens_at <= request.at <= record.ends_at:
                if record.status == "cancelled":
                    return None
                ref = await self._ensure_running(record.session_id)
                if record.finalized and self._clock() >= record.ends_at + LINGER_AFTER_END:
                    # Woken for a late (edge-buffered) scan: let it linger, then stop.
                    self.send_after(LINGER_AFTER_END.total_seconds(), _Linger(record.session_id))
                return SessionRoute(record.session_id, ref, record.opens_at, record.ends_at)
        return None

    def _status(self) -> dict[str, str]:
        out = {}
        for session_id, record in self._known.items():
            if session_id in self._closing:
                out[session_id] = "closing"
            elif record.status == "cancelled":
                out[session_id] = "cancelled"
            elif record.finalized:
                out[session_id] = "done"
            else:
                out[session_id] = "armed"
        return out
