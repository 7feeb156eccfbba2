"""The attendance-warnings actor (``warnings`` in the supervision tree).

``warnings`` (:class:`WarningWatcher`, mailbox :data:`WARNINGS_MAILBOX`, BLOCK)
    Owns nothing but a set of (student, course) pairs to re-check and a sweep
    watermark; the "already warned" state lives in ``attendance_warnings`` so a
    restart neither repeats nor loses a warning. Triggers:

    - every attendance update on the live bus (``ATTENDANCE_TOPIC``): the
      student also gets an ``attendance_marked`` notification;
    - :class:`AttendanceChanged` told by the web after it changed records
      (corrections, leave, manual marking; wired in hub/app/supervision.py);
    - a sweep every ``sweep_every_s``: records written and sessions ended since
      the previous sweep (catches anything that bypassed the bus, e.g. a
      session ending with students who never checked in);
    - a full recomputation at start and when it takes the lock (it yields
      every :data:`RECHECK_SLICE` standings, so it never stalls the hub's
      other actors).

    The bus pump hands the updates over in batches (everything the
    subscription holds when it looks: one tell per batch), so a long re-check
    never backs the bus up. Should the subscription lag all the same (updates
    dropped), the pump tells a sweep: the records are in PostgreSQL, and the
    watermark sweep re-checks every record written since the previous one.
    Only the dropped updates' ``attendance_marked`` notifications are lost.
    (A lag used to mean a full recomputation: during a drain with check-ins
    each took ~0.75 s of PostgreSQL for 20,000 enrolments, during which the
    bus lagged again: 9 of them in 27 s, a quarter of PostgreSQL's time.)

    A check-in into a session that is not yet *held* (``hub.db.insights``'s
    one definition: closed, or its end has passed) cannot move a standing:
    until then the session counts as "remaining" whatever its record says.
    So the attendance updates of a batch cost one primary-key lookup (which
    of their sessions are held, ``held_sessions``) and only the records of
    held sessions (a late scan, an auto-absent at close) are re-checked; the
    rest reach the standing when the session ends, through the sweep (a
    session that ended since the last sweep re-checks everyone enrolled).

    Each re-check recomputes the pairs' percentages with
    :mod:`hub.domain.eligibility` and, on a downward crossing of the course's
    warning line, notifies the student and everyone teaching the course, in
    the transaction that records the new state. Touches arriving together are
    coalesced: the pairs are re-checked once the mailbox is momentarily empty,
    and at most every ``recheck_every_s`` (0.5 s) under a steady stream.
    A full mailbox blocks the bus pump, whose subscription then lags, which
    turns into one sweep: nothing is missed, nothing piles up.

    One owner among the hub's workers (issue 13 part 2): every worker runs this
    actor, but only the holder of the advisory lock ``WARNINGS_LOCK``
    (``hub.db.advisory.hold_session_lock``) re-checks and notifies. With the live
    bus bridged between workers every worker sees every attendance update, and
    a crossing is decided by reading then writing ``attendance_warnings``: two
    deciders would each send the ``attendance_marked`` notification and could
    each send the same warning. The others are standbys: they drop what they
    are told and look for the lock every :data:`LOCK_RETRY_S`; the one that
    takes it (its holder died: the lock's connection closed) starts with a full
    recomputation, as at start. A holder whose lock connection drops (PostgreSQL
    restarting) keeps collecting what it is told, without notifying, until it
    takes the lock again (then it flushes) or finds another worker holding it
    (then it drops what it collected: the new holder's full recomputation
    covers the standings; attendance-marked notifications of that gap are lost,
    as across a restart). Changes told by a standby's web reach the holder's
    sweep (at most ``sweep_every_s`` later).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any, Callable, Sequence

import asyncpg
import trio

from actors import Actor
from hub.core.bus import ATTENDANCE_TOPIC, LiveAttendance, LiveBus
from hub.db import Database
from hub.db.advisory import WARNINGS_LOCK, Holding, hold_session_lock
from hub.db.insights import (
    StandingRow,
    course_faculty,
    enrolment_pairs,
    held_sessions,
    record_warning_states,
    session_pairs,
    standings,
    touched_pairs,
    warning_states,
)
from hub.db.notifications import NewNotification, add_notifications, publish_notifications
from hub.domain.eligibility import shown, warning_due
from hub.pipeline.writer import is_transient

log = logging.getLogger("hub.services.warnings")

WARNINGS_MAILBOX = 1024
#: Bus buffer of the warnings actor's subscription; overflow means one sweep (module docstring).
WARNINGS_BUS_BUFFER = 4096
SWEEP_EVERY_S = 60.0
#: Under a stream of attendance changes, re-checks run at most this often (the first after a quiet
#: spell runs at once). A re-check is ~5 round trips whatever its size: one per momentarily empty
#: mailbox was ~800 re-checks for 6,000 check-ins, a third of the hub process's CPU in the
#: ingest benchmark (docs/performance.md).
RECHECK_EVERY_S = 0.5
#: A re-check yields to other tasks after this many standings, so a full recomputation
#: (34,000 enrolments: ~1 s of CPU) never stalls ingestion for more than a few milliseconds.
RECHECK_SLICE = 200
#: A full recomputation reads and re-checks this many enrolments at a time: the standings of
#: 60,000 at once held ~130 MB more at the holder's peak RSS (a drain with check-ins).
FULL_PASS_CHUNK = 5000
#: Sweep windows overlap by this much: a record's updated_at is its transaction's start, so a
#: transaction still open at one sweep is seen by the next one.
SWEEP_OVERLAP = timedelta(minutes=2)
#: After a database error, pending work is retried this much later.
RETRY_S = 5.0
#: A standby worker looks for the warnings lock this often (at most this long without a warnings
#: actor after its holder died; the holder's first pass is a full recomputation).
LOCK_RETRY_S = 30.0

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.fromtimestamp(time.time(), timezone.utc)


@dataclass(frozen=True)
class AttendanceChanged:
    """Tell: these students' records in this session changed (``None``: possibly everyone enrolled)."""

    session_id: str
    student_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Marked:
    """An attendance update seen on the bus."""

    session_id: str
    student_id: str
    status: str
    source: str


@dataclass(frozen=True)
class _MarkedBatch:
    """The attendance updates the bus held when the pump last looked (one tell per batch)."""

    items: tuple[_Marked, ...]


@dataclass(frozen=True)
class _Sweep:
    """Re-check what changed since the last sweep (everything, while no sweep has completed)."""


@dataclass(frozen=True)
class _RecheckDue:
    """The coalescing interval since the last re-check has passed."""


@dataclass(frozen=True)
class _Retry:
    """Re-run pending work after a database outage."""


@dataclass(frozen=True)
class _Holding:
    """From the lock task: where this worker stands (:class:`~hub.db.advisory.Holding`)."""

    state: Holding


class WarningWatcher(Actor):
    """See the module docstring. Messages: :class:`AttendanceChanged` (and internal ones)."""

    def __init__(self, db: Database, bus: LiveBus, *, now: Clock = wall_clock,
                 sweep_every_s: float = SWEEP_EVERY_S, recheck_every_s: float = RECHECK_EVERY_S,
                 lock_retry_s: float = LOCK_RETRY_S) -> None:
        self._db = db
        self._lock_retry_s = lock_retry_s
        #: "owner" (holds WARNINGS_LOCK: re-checks and notifies), "orphan" (lost the lock's connection:
        #: collects, does not notify) or "standby" (another worker holds it: drops everything).
        self._role = "standby"
        self._bus = bus
        self._now = now
        self._sweep_every_s = sweep_every_s
        self._sessions: dict[str, set[str] | None] = {}  # session -> students touched (None: all)
        self._marked: list[_Marked] = []
        self._watermark: datetime | None = None
        self._retry_armed = False
        self._recheck_every_s = recheck_every_s
        self._last_flush = float("-inf")
        self._recheck_armed = False
        #: Re-checks run so far, and (student, course) pairs recomputed by them (the tests read both).
        self.rechecks = 0
        self.pairs_rechecked = 0

    @property
    def owner(self) -> bool:
        """Whether this worker's watcher is the one that re-checks and notifies (holds the lock)."""
        return self._role == "owner"

    async def started(self) -> None:
        # Subscribe before the first full sweep (the lock's first taking) so no update falls between.
        ready = trio.Event()
        self.nursery.start_soon(self._pump, ready)
        await ready.wait()
        # After the first try of the lock: a watcher that can own it does before its first message.
        await self.nursery.start(partial(hold_session_lock, self._db, WARNINGS_LOCK, self._on_holding,
                                         retry_s=self._lock_retry_s, name="attendance warnings"))
        self.nursery.start_soon(self._tick)

    async def _on_holding(self, state: Holding, _conn: object) -> None:
        await self.ref.tell(_Holding(state))

    def _on_lock(self, state: Holding) -> None:
        if state is Holding.HELD:
            self._role = "owner"
            self._watermark = None  # the owner's first flush is a full recomputation
            self._retry_armed = True  # ... right away (handle() flushes after this message)
            log.info("attendance warnings: this worker re-checks standings and notifies")
        elif state is Holding.LOST:
            if self._role == "owner":
                self._role = "orphan"
        else:
            self._role = "standby"
            self._sessions.clear()
            self._marked.clear()
            self._watermark = None

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self._sweep_every_s)
            await self.ref.tell(_Sweep())

    async def _pump(self, ready: trio.Event) -> None:
        with self._bus.subscribe([ATTENDANCE_TOPIC], capacity=WARNINGS_BUS_BUFFER) as subscription:
            ready.set()
            while True:
                batch = await subscription.receive_batch()
                if self._role == "standby":
                    continue  # the owner (another worker) hears the same bus
                if isinstance(batch, list):
                    marked = tuple(_Marked(item.session_id, item.student_id, item.status, item.source)
                                   for item in batch if isinstance(item, LiveAttendance))
                    if marked:  # LiveAttendance: the only kind the bus offers on ATTENDANCE_TOPIC
                        await self.ref.tell(_MarkedBatch(marked))
                else:
                    # Updates were dropped: the records are in PostgreSQL, and the watermark
                    # sweep re-checks every record written since the last sweep.
                    await self.ref.tell(_Sweep())

    async def handle(self, message: Any) -> None:
        try:
            if isinstance(message, _Holding):
                self._on_lock(message.state)
            elif self._role == "standby":
                if isinstance(message, _Retry):
                    self._retry_armed = False
                elif isinstance(message, _RecheckDue):
                    self._recheck_armed = False
                return  # another worker's watcher owns the warnings
            elif isinstance(message, _Sweep):
                if self._role == "owner":
                    await self._sweep()
            elif isinstance(message, _MarkedBatch):
                self._marked.extend(message.items)  # which need a re-check is decided at the flush
            elif isinstance(message, AttendanceChanged):
                self._touch(message.session_id, message.student_ids)
            elif isinstance(message, _RecheckDue):
                self._recheck_armed = False
            elif not isinstance(message, _Retry):
                raise TypeError(f"unexpected message {message!r}")
            if self._role != "owner":
                return  # an orphan collects; it notifies once it holds the lock again
            if self.ref.depth == 0 and (self._sessions or self._marked or self._retry_armed):
                wait = self._last_flush + self._recheck_every_s - trio.current_time()
                if wait <= 0 or self._retry_armed:
                    await self._flush()
                elif not self._recheck_armed:
                    self._recheck_armed = True
                    self.send_after(wait, _RecheckDue())
        except Exception as exc:
            # PostgreSQL unavailable: crashing would only make the supervisor retry faster than
            # the database comes back (and escalate); keep what is pending and retry later.
            if not is_transient(exc):
                raise
            log.warning("warnings: database unavailable (%s); retrying in %.0fs", exc, RETRY_S)
            if not self._retry_armed:
                self._retry_armed = True
                self.send_after(RETRY_S, _Retry())

    def _touch(self, session_id: str, student_ids: Sequence[str] | None) -> None:
        if student_ids is None:
            self._sessions[session_id] = None
        elif self._sessions.get(session_id, set()) is not None:
            self._sessions.setdefault(session_id, set()).update(student_ids)  # type: ignore[union-attr]

    async def _flush(self) -> None:
        self._retry_armed = False
        self._last_flush = trio.current_time()
        if self._watermark is None:
            await self._sweep()  # a full pass is owed (the lock was just taken, or it failed earlier)
        if not self._sessions and not self._marked:
            return
        self.rechecks += 1
        sessions, marked = dict(self._sessions), list(self._marked)
        await self._recheck_sessions(sessions, marked)
        # Only now: on a failure above, the pending work stays for the retry.
        for session_id in sessions:
            self._sessions.pop(session_id, None)
        del self._marked[:len(marked)]

    async def _recheck_sessions(self, sessions: dict[str, set[str] | None], marked: list[_Marked]) -> None:
        pairs: set[tuple[str, str]] = set()
        everyone = [s for s, students in sessions.items() if students is None]
        some = {s: students for s, students in sessions.items() if students is not None}
        if everyone:
            pairs |= await session_pairs(self._db, everyone, None)
        if some:
            students = sorted({st for group in some.values() for st in group})
            pairs |= await session_pairs(self._db, sorted(some), students)
        if marked:
            # Only records of held sessions can move a standing (module docstring). A pair of a
            # student not enrolled in the course has no standing: standings() skips it.
            held = await held_sessions(self._db, sorted({m.session_id for m in marked}), self._now())
            pairs |= {(m.student_id, held[m.session_id]) for m in marked if m.session_id in held}
        await self._recheck(sorted(pairs), marked)

    async def _sweep(self) -> None:
        """A full pass while no sweep has completed (no watermark), else the records since the last one."""
        now = self._now()
        if self._watermark is None:
            await self._full_pass()
        else:
            await self._recheck(sorted(await touched_pairs(self._db, self._watermark - SWEEP_OVERLAP, now)), [])
        self._watermark = now

    async def _full_pass(self) -> None:
        """Recompute every enrolment, :data:`FULL_PASS_CHUNK` at a time."""
        everyone = await enrolment_pairs(self._db)
        for start in range(0, len(everyone), FULL_PASS_CHUNK):
            await self._recheck(everyone[start:start + FULL_PASS_CHUNK], [])

    async def _recheck(self, pairs: Sequence[tuple[str, str]], marked: Sequence[_Marked]) -> None:
        """Recompute ``pairs`` and notify on downward crossings; ``marked`` updates get their notification."""
        if not pairs and not marked:
            return
        now = self._now()
        rows = await standings(self._db, now, pairs=pairs) if pairs else []
        self.pairs_rechecked += len(rows)
        was_below = await warning_states(self._db, pairs) if pairs else {}
        changes: list[tuple[str, str, bool, Decimal | None, bool]] = []
        crossed: list[StandingRow] = []
        for index, row in enumerate(rows):
            if index % RECHECK_SLICE == RECHECK_SLICE - 1:
                await trio.lowlevel.checkpoint()
            st = row.standing()
            key = (row.student_id, row.course_id)
            before = was_below.get(key)
            warn = warning_due(bool(before), st.percentage, st.rules)
            if warn:
                crossed.append(row)
            if before is None and not st.below_warning:
                continue  # nothing to remember for a student who has never been below
            pct = shown(st.percentage) if st.percentage is not None else None
            if warn or before != st.below_warning:
                changes.append((row.student_id, row.course_id, st.below_warning, pct, warn))
        teachers = await course_faculty(self._db, {r.course_id for r in crossed}) if crossed else {}
        notes = [note for row in crossed for note in _warning_notes(row, teachers.get(row.course_id, set()))]
        notes += [_marked_note(m) for m in marked]
        if not changes and not notes:
            return

        async def work(conn: asyncpg.Connection) -> list[dict]:
            await record_warning_states(conn, changes, now)
            return await add_notifications(conn, notes)

        published = await self._db.run(work, transaction=True)
        publish_notifications(self._bus, published)
        if crossed:
            log.info("attendance warnings sent for %d student-course pairs", len(crossed))


_STATUS_WORDS = {"present": "present", "late": "late", "absent": "absent", "excused": "excused"}


def _marked_note(m: _Marked) -> NewNotification:
    word = _STATUS_WORDS.get(m.status, m.status)
    via = f" ({m.source})" if m.source else ""
    return NewNotification(
        user_id=m.student_id, kind="attendance_marked", title=f"Marked {word}",
        body=f"Your attendance was recorded as {word}{via}.", link="/student",
        data={"session_id": m.session_id, "status": m.status, "source": m.source},
    )


def _warning_notes(row: StandingRow, teachers: set[str]) -> list[NewNotification]:
    st = row.standing()
    pct = shown(st.percentage) if st.percentage is not None else Decimal(0)
    data = {
        "student_id": row.student_id, "course_id": row.course_id, "percentage": str(pct),
        "warning_pct": str(row.warning_pct), "max_reachable": str(shown(st.max_reachable)), "band": st.band,
    }
    notes = [NewNotification(
        user_id=row.student_id, kind="attendance_warning",
        title=f"{row.course_code}: attendance {pct}% is below {row.warning_pct.normalize():f}%",
        body=(f"Your attendance in {row.course_code} {row.course_title} is {pct}%. "
              f"Attending every remaining session would bring it to {shown(st.max_reachable)}%."),
        link="/student", data=data,
    )]
    for teacher in sorted(teachers):
        notes.append(NewNotification(
            user_id=teacher, kind="attendance_warning",
            title=f"{row.course_code}: {row.student_name} fell below {row.warning_pct.normalize():f}%",
            body=f"{row.student_name} ({row.roll_number}) is at {pct}% in {row.course_code}.",
            link=f"/faculty/reports?course_id={row.course_id}", data=data,
        ))
    return notes


# --- webhooks ---------------------------------------------------------------------------------

def also_recheck(
    inner: Callable[[str, Sequence[str]], Any], warnings: Callable[[], Any],
) -> Callable[[str, Sequence[str]], Any]:
    """Wrap ``WebContext.attendance_changed`` so the warnings actor re-checks those students too.

    The tell never waits (``try_tell``): if the warnings mailbox is full the
    next sweep (at most ``SWEEP_EVERY_S`` later) finds the change anyway.
    """

    async def changed(session_id: str, student_ids: Sequence[str]) -> None:
        await inner(session_id, student_ids)
        if student_ids:
            ref = warnings()
            if ref is not None:  # None before it started: its first full sweep covers this
                ref.try_tell(AttendanceChanged(session_id, tuple(student_ids)))

    return changed
