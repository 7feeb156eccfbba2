"""One actor per live class session: the single judge of its check-ins, whatever the channel.

Channels: edge QR scans and biometric matches (:class:`Scan`, from device
actors), display-mode check-ins from phones and faculty's manual or bulk
marks (:class:`~hub.domain.session_messages.DisplayCheckin`,
:class:`~hub.domain.session_messages.ManualMarks`, asked by the web), and the
scheduler's :class:`CloseSession` (auto-absent). Records changed elsewhere
(leave, corrections) are reloaded on :class:`ReloadStudents`, the roster
(enrolments, deactivated accounts) on :class:`ReloadRoster`. Faculty's topic tags and
understanding levels (``hub.domain.syllabus.TagTopics``, ``RecordUnderstanding``) are judged
against the roster and committed like marks (hub/db/syllabus.py).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Sequence

import trio

from actors import Actor, ActorRef, ActorStopped, AskTimeout, Supervisor
from actors.delivery import deliver
from hub.core.bus import LiveAttendance, LiveUpdate
from hub.core.records import (
    AttendanceMark,
    CheckinFlagRow,
    Commit,
    DisplayCheckinRow,
    Effect,
    TokenUse,
    internal_key,
)
from hub.db import Database
from hub.db.checkin import session_records
from hub.db.marks import plan_marks
from hub.db.session_snapshots import SessionSnapshot, load_session_roster, load_session_snapshot
from hub.db.syllabus import plan_syllabus
from hub.domain.checkin import (
    AUTO_ABSENT_SOURCE,
    EARLY_HORIZON,
    Accepted,
    DisplayUse,
    Flag,
    InvalidMarks,
    Mark,
    MarkChange,
    SessionState,
    SessionWindow,
    clock_skew_flag,
)
from hub.domain.session_messages import (
    CloseSession,
    DisplayCheckin,
    ManualMarks,
    Receipt,
    ReloadRoster,
    ReloadStudents,
    RosterChange,
    SessionNotLive,
)
from hub.domain.syllabus import RecordUnderstanding, SyllabusProblem, TagTopics
from hub.mqtt import InboundMessage
from hub.pipeline.commits import accept, reject, utc_from_ms, utc_from_s
from schemas import BiometricMatchEvent, QrScanEvent, parse_checkin_token

log = logging.getLogger("hub.session")

__all__ = ["CloseSession", "ReloadRoster", "ReloadStudents", "RosterStatus", "Scan", "SessionActor", "SESSION_MAILBOX",
           "session_caller"]

#: Mailbox: bounded, Overflow.BLOCK. Device actors (and web requests) wait when it is
#: full, which preserves per-device order and loses nothing.
SESSION_MAILBOX = 1024
HUB_ACTOR = "hub:session"


@dataclass(frozen=True)
class Scan:
    """A QR scan or biometric match routed here by a device actor."""

    message: InboundMessage
    event: QrScanEvent | BiometricMatchEvent
    #: The scanning device's room, when it is not this session's (a ``wrong_room`` flag).
    from_room: str | None = None
    #: The device's clock offset from its heartbeats, for a late scan (its device actor's
    #: ClockEvidence); None for a prompt scan or a device without evidence.
    clock_offset: timedelta | None = None


@dataclass(frozen=True)
class RosterStatus:
    """Ask: ``{student_id: status}`` of every record so far (for tests and the web)."""


class _Settled:
    """The outcome of one commit, set by the writer (Commit.on_done), awaited by whoever asked."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._ok = False

    def __call__(self, ok: bool) -> None:
        self._ok = ok
        self._event.set()

    async def wait(self) -> bool:
        await self._event.wait()
        return self._ok


class SessionActor(Actor):
    """State: the session's :class:`SessionState`, rebuilt from PostgreSQL in :meth:`started`.

    Every :class:`Scan` becomes exactly one commit for the writer (accepted or
    rejected), so every message is acknowledged once its outcome is stored.
    Asks from the web are answered with a :class:`Receipt` right after
    judging; the caller awaits ``receipt.committed()``, so this actor never
    waits for the database on anyone's behalf (except at close).
    """

    def __init__(
        self, session_id: str, *, db: Database, writer: ActorRef, snapshot: SessionSnapshot | None = None,
    ) -> None:
        self.session_id = session_id
        self._db = db
        self._writer = writer
        #: Loaded by the scheduler with every other session it opens at boot; used
        #: once. A restarted actor (after a crash) reloads its own.
        self._snapshot = snapshot
        self._state: SessionState  # set by started(), before any message is handled

    async def started(self) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is None:
            snapshot = await load_session_snapshot(self._db, self.session_id)
        if snapshot is None:
            raise LookupError(f"session {self.session_id} does not exist")
        s = snapshot.session
        self._state = SessionState(
            session_id=s.session_id,
            room_id=s.room_id,
            window=SessionWindow(s.starts_at, s.ends_at, s.grace, s.opens_before, s.late_cutoff, EARLY_HORIZON),
            roster=snapshot.roster,
        )
        self._state.restore(
            {student: Mark(status, source) for student, (status, source) in snapshot.records.items()},
            snapshot.used_tokens,
            [DisplayUse(u.student_id, u.device_hash, u.nonce, u.scanned_at, u.code_window, u.network, u.network_inside)
             for u in snapshot.display_uses],
            closed=s.status == "closed",
        )

    async def handle(self, message: Any) -> Any:
        if isinstance(message, RosterStatus):
            return self._state.checked_in
        if isinstance(message, DisplayCheckin):
            return await self._display(message)
        if isinstance(message, ManualMarks):
            return await self._marks(message)
        if isinstance(message, (TagTopics, RecordUnderstanding)):
            return await self._syllabus(message)
        if isinstance(message, ReloadStudents):
            records = await session_records(self._db, self.session_id, message.student_ids)
            self._state.reload({s: None if r is None else Mark(*r) for s, r in records.items()})
            return None
        if isinstance(message, ReloadRoster):
            return await self._reload_roster()
        if isinstance(message, CloseSession):
            return await self._close()
        try:
            await self._judge(message)
        except Exception as exc:
            # Keep the poison message with its reason (and ack it) before the
            # crash: a restart rebuilds state, and the message is not retried forever.
            if isinstance(message, Scan):
                await deliver(self._writer, reject(
                    message.message, "internal_error", f"{type(exc).__name__}: {exc}",
                    event=message.event, session_id=self.session_id,
                ))
            raise
        return None

    # --- device scans ------------------------------------------------------------------

    async def _judge(self, scan: Scan) -> None:
        state = self._state
        event = scan.event
        at = utc_from_ms(event.ts)
        if isinstance(event, QrScanEvent):
            decision = state.judge_qr(event.body.text, at)
            source = "qr"
        else:
            decision = state.judge_biometric(event.body.subject, at)
            source = "biometric"
        event_id = uuid.UUID(bytes=event.id)
        if not isinstance(decision, Accepted):
            token = parse_checkin_token(event.body.text) if isinstance(event, QrScanEvent) else None
            if token is not None and decision.reason in ("duplicate_checkin", "outside_session_window",
                                                         "after_late_cutoff"):
                state.note_token_use(token.student_id, token.window)
            commit = reject(scan.message, decision.reason, decision.detail, event=event, session_id=self.session_id)
            if decision.flags:
                flag_rows = self._flag_rows(decision.flags, source, event_id, utc_from_s(scan.message.received_at))
                # Published by the writer once stored (hub.db.checkin.announce_flags), with the flag's id.
                commit = replace(commit, effects=commit.effects + flag_rows)
            await deliver(self._writer, commit)
            return
        flags = list(decision.flags)
        skew = clock_skew_flag(decision.student_id, at, utc_from_s(scan.message.received_at), scan.clock_offset)
        if skew is not None:
            flags.append(skew)
        if scan.from_room is not None:
            flags.append(Flag("wrong_room", decision.student_id,
                              f"scanned by {event.device} in {scan.from_room}, not in {state.room_id}",
                              {"device_id": event.device, "room_id": scan.from_room}))
        state.apply(decision, source)
        effects: tuple[Effect, ...] = (
            self._mark(decision, source, event_id, f"device:{event.device}"),
        )
        if decision.token_window is not None:
            effects += (TokenUse(self.session_id, decision.student_id, decision.token_window, event_id),)
        effects += self._flag_rows(flags, source, event_id, at)
        await deliver(self._writer, accept(
            event, scan.message, effects, session_id=self.session_id,
            live=self._attendance_live(decision.student_id, decision.status, decision.at, source),
        ))

    # --- display mode -------------------------------------------------------------------------

    async def _display(self, request: DisplayCheckin) -> Receipt:
        state = self._state
        client = request.client
        decision = state.judge_display(request.student_id, request.scanned_at, request.device_hash, request.nonce,
                                       client, request.code_window)
        outcome = "accepted" if isinstance(decision, Accepted) else decision.reason
        network, inside = (client.network, client.inside) if client is not None else (None, None)
        row = DisplayCheckinRow(self.session_id, request.student_id, request.scanned_at, request.code_window,
                                request.device_hash, request.nonce, request.user_agent, outcome, network, inside)
        flags = self._flag_rows(decision.flags, "display", None, request.scanned_at)
        settled = _Settled()
        if isinstance(decision, Accepted):
            state.apply(decision, "display")
            state.apply_display(DisplayUse(request.student_id, request.device_hash, request.nonce,
                                           request.scanned_at, request.code_window, network, inside))
            effects: tuple[Effect, ...] = (self._mark(decision, "display", None, request.student_id),
                                           row, *flags)
            live = self._attendance_live(decision.student_id, decision.status, decision.at, "display")
        else:
            effects, live = (row, *flags), ()
        await deliver(self._writer, Commit(internal_key(), effects, live=live, on_done=settled))
        if isinstance(decision, Accepted):
            # Only this student's own flags: a many_networks flag may also name earlier check-ins.
            return Receipt(True, status=decision.status, at=decision.at,
                           flags=tuple(f.kind for f in decision.flags if f.student_id == request.student_id),
                           committed=settled.wait)
        return Receipt(False, decision.reason, decision.detail, committed=settled.wait)

    # --- manual marks ---------------------------------------------------------------------------

    async def _marks(self, request: ManualMarks) -> Receipt:
        # The same use case as for a session without an actor (hub/db/marks.py), on the in-memory state.
        state = self._state
        try:
            plan = plan_marks(self.session_id, state.roster, state.records, request)
        except InvalidMarks as error:
            return Receipt(False, "invalid_request", str(error), field=error.field)
        settled = _Settled()
        if not plan.changes:
            settled(True)
            return Receipt(True, changes=(), committed=settled.wait)
        state.apply_marks(plan.changes, request.source)
        await deliver(self._writer, Commit(internal_key(), plan.effects, live=plan.live, on_done=settled))
        return Receipt(True, changes=plan.changes, committed=settled.wait)

    # --- topics covered and understanding levels (hub/db/syllabus.py) ----------------------------

    async def _syllabus(self, request: TagTopics | RecordUnderstanding) -> Receipt:
        # Like marks: judged on the in-memory roster, committed through the writer (which refreshes
        # the students' topic progress in the same transaction), announced once committed.
        try:
            plan = plan_syllabus(self.session_id, self._state.roster, request)
        except SyllabusProblem as error:
            return Receipt(False, "invalid_request", error.message, field=error.field)
        settled = _Settled()
        await deliver(self._writer, Commit(internal_key(), plan.effects, live=plan.live, on_done=settled))
        return Receipt(True, committed=settled.wait)

    # --- roster ----------------------------------------------------------------------------------

    async def _reload_roster(self) -> RosterChange:
        """Swap in the roster PostgreSQL has now; records (of leavers too) stay untouched."""
        roster = await load_session_roster(self._db, self.session_id)
        old = self._state.roster
        self._state.roster = roster
        return RosterChange(tuple(sorted(roster.keys() - old.keys())), tuple(sorted(old.keys() - roster.keys())))

    # --- close ------------------------------------------------------------------------------------

    async def _close(self) -> Receipt:
        """Auto-absent; answers only once committed, so the scheduler may stop us right after."""
        absent = self._state.close()
        settled = _Settled()
        if not absent:
            return Receipt(True)
        effects = tuple(
            AttendanceMark(self.session_id, student, "absent", None, AUTO_ABSENT_SOURCE, None, HUB_ACTOR,
                           "no check-in by the end of the session")
            for student in absent
        )
        live: tuple[LiveUpdate, ...] = ()
        for student in absent:
            live += self._attendance_live(student, "absent", None, AUTO_ABSENT_SOURCE)
        await deliver(self._writer, Commit(internal_key(), effects, live=live, on_done=settled))
        ok = await settled.wait()
        return Receipt(ok, "" if ok else "persistence_error",
                       changes=tuple(MarkChange(s, "absent", None) for s in absent))

    # --- building blocks --------------------------------------------------------------------------

    def _mark(self, decision: Accepted, source: str, event_id: uuid.UUID | None, actor: str) -> AttendanceMark:
        reason = "late-arriving check-in (judged by device time)" if decision.replaces else ""
        return AttendanceMark(self.session_id, decision.student_id, decision.status, decision.at, source,
                              event_id, actor, reason)

    def _flag_rows(self, flags, source: str, event_id: uuid.UUID | None, at: datetime) -> tuple[CheckinFlagRow, ...]:
        return tuple(CheckinFlagRow(self.session_id, f.student_id, f.kind, f.detail, dict(f.evidence), source,
                                    event_id, at) for f in flags)

    def _attendance_live(self, student_id: str, status: str, at: datetime | None, source: str) -> tuple[LiveUpdate, ...]:
        return LiveAttendance(self.session_id, student_id, status, at.isoformat() if at else None, source).updates()


def session_caller(sessions: Callable[[], Supervisor]) -> Callable[[str, object], Awaitable[Any]]:
    """``WebContext.session_call``: ask the live actor of a session; :class:`SessionNotLive` if none.

    Concurrency contract: called from web request tasks; waits at most 10 s
    for the answer (mailbox full, or the actor busy), then raises
    :class:`SessionNotLive` too, so a request never hangs on a stuck actor.
    """

    async def call(session_id: str, message: object) -> Any:
        ref = sessions().lookup(session_id)
        if ref is None or not isinstance(ref, ActorRef):
            raise SessionNotLive(session_id)
        try:
            return await ref.ask(message, timeout=10)
        except (ActorStopped, AskTimeout) as exc:
            raise SessionNotLive(session_id) from exc

    return call


def attendance_changed(call: Callable[[str, object], Awaitable[Any]]) -> Callable[[str, Sequence[str]], Awaitable[None]]:
    """``WebContext.attendance_changed``: the live actor of the session (if any) reloads these students."""

    async def changed(session_id: str, student_ids: Sequence[str]) -> None:
        if not student_ids:
            return
        try:
            await call(session_id, ReloadStudents(tuple(student_ids)))
        except SessionNotLive:
            pass  # no actor: the next one loads everything from PostgreSQL anyway

    return changed
