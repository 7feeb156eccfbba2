"""The session scheduler: starts a session actor when its check-in window opens, stops it after it ends.

Timers are exact (``send_after`` per session), not a polling sweep. The
timetable is re-read every ``reload_every_s`` so sessions created while the
hub runs are picked up.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import trio

from actors import Actor, ActorRef, ChildSpec, Restart, Supervisor
from hub.db import Database
from hub.db.state import SessionRecord, sessions_between
from hub.session_actor import SESSION_MAILBOX, SessionActor

log = logging.getLogger("hub.scheduler")

#: Mailbox: bounded, Overflow.BLOCK; senders (device actors resolving a room) wait.
SCHEDULER_MAILBOX = 256
#: Scans buffered offline at the edge can arrive this long after a session ended.
LATE_ARRIVAL_WINDOW = timedelta(hours=24)
#: A session actor lingers this long after the end, for stragglers.
LINGER_AFTER_END = timedelta(minutes=10)


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


@dataclass(frozen=True)
class _Reload:
    pass


@dataclass(frozen=True)
class _Open:
    session_id: str


@dataclass(frozen=True)
class _Close:
    session_id: str


class SessionScheduler(Actor):
    def __init__(
        self, *, db: Database, sessions: Supervisor, writer: ActorRef, reload_every_s: float = 30.0
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._writer = writer
        self._reload_every_s = reload_every_s
        self._known: dict[str, SessionRecord] = {}
        self._timers: dict[str, object] = {}

    async def started(self) -> None:
        await self._reload()

    async def handle(self, message):
        if isinstance(message, ResolveSession):
            return await self._resolve(message)
        if isinstance(message, _Open):
            await self._ensure_running(message.session_id)
        elif isinstance(message, _Close):
            if self._sessions.lookup(message.session_id) is not None:
                await self._sessions.stop_child(message.session_id)
        elif isinstance(message, _Reload):
            await self._reload()
        return None

    @property
    def live_session_ids(self) -> list[str]:
        return self._sessions.child_ids()

    async def _reload(self) -> None:
        now = datetime.now(timezone.utc)
        for session_id, record in list(self._known.items()):
            if record.ends_at < now - LATE_ARRIVAL_WINDOW:
                del self._known[session_id]
                self._timers.pop(session_id, None)
        due_now = []
        for record in await sessions_between(self._db, now - LATE_ARRIVAL_WINDOW, now + timedelta(days=1)):
            if record.session_id not in self._known or self._known[record.session_id] != record:
                if self._schedule(record, now):
                    due_now.append(record.session_id)
        # Opened here, not by a message to ourselves: a boot with more live
        # sessions than our mailbox holds must still open every one of them.
        for session_id in due_now:
            await self._ensure_running(session_id)
        self.send_after(self._reload_every_s, _Reload())

    def _schedule(self, record: SessionRecord, now: datetime) -> bool:
        """Arm this session's open/close timers; True if it is open right now."""
        self._known[record.session_id] = record
        for timer in self._timers.pop(record.session_id, ()):
            timer.cancel()
        timers = []
        close_at = record.ends_at + LINGER_AFTER_END
        open_now = record.opens_at <= now < close_at
        if now < record.opens_at:
            timers.append(self.send_after((record.opens_at - now).total_seconds(), _Open(record.session_id)))
        if now < close_at:
            timers.append(self.send_after((close_at - now).total_seconds(), _Close(record.session_id)))
        self._timers[record.session_id] = timers
        return open_now

    async def _ensure_running(self, session_id: str) -> ActorRef:
        ref = self._sessions.lookup(session_id)
        if ref is None:
            ref = await self._sessions.start_child(ChildSpec(
                id=session_id,
                start=lambda: SessionActor(session_id, db=self._db, writer=self._writer),
                restart=Restart.TRANSIENT,
                mailbox_size=SESSION_MAILBOX,
            ))
        return ref

    async def _resolve(self, request: ResolveSession) -> SessionRoute | None:
        for record in self._known.values():
            if record.room_id == request.room_id and record.opens_at <= request.at <= record.ends_at:
                if record.status == "cancelled":
                    return None
                ref = await self._ensure_running(record.session_id)
                if datetime.now(timezone.utc) >= record.ends_at + LINGER_AFTER_END:
                    # Woken for a late (edge-buffered) scan: let it linger, then stop.
                    self.send_after(LINGER_AFTER_END.total_seconds(), _Close(record.session_id))
                return SessionRoute(record.session_id, ref, record.opens_at, record.ends_at)
        return None
