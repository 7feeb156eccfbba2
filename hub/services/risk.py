"""The early-warning actor (``risk`` in the supervision tree; docs/analytics.md).

``risk`` (:class:`RiskWatcher`, mailbox :data:`RISK_MAILBOX`, BLOCK)
    Owns the model in use (loaded from ``risk_models``) and a set of (student, course) pairs to
    re-score; the predictions and "already told" crossings live in ``risk_predictions`` and
    ``risk_alerts``, so a restart neither repeats nor loses an alert. Triggers:

    - every attendance update on the live bus (``ATTENDANCE_TOPIC``, the same tap as the
      warnings actor);
    - :class:`RiskChanged` told by the web after marks, submissions or understanding changed
      (``WebContext.risk_changed``, wired in hub/app/supervision.py);
    - a sweep every ``sweep_every_s``: marks, submissions, records and class ends since the
      previous sweep (catches whatever bypassed the first two);
    - a full re-score at start and when the model in use changes (:class:`ModelChanged`, after a
      training or an admin's pin/unpin).

    Re-scoring: the pairs' facts are loaded in batched SQL (hub/db/risk_features.py), scored by the
    model in use (or the attendance rule when no model shipped), and saved with their reasons and
    actions in one transaction; a student who crosses INTO high risk is notified to the course's
    faculty once per crossing. Touches arriving together are coalesced: a re-score runs when the
    mailbox is momentarily empty, at most every ``rescore_every_s`` under a stream, so a check-in
    is reflected within about a second. The bus pump hands the updates over in batches (one tell per
    what the subscription holds), so a long re-score never backs the bus up; should it lag all the
    same (a full mailbox blocks the pump), the pump tells a sweep, whose watermark window finds every
    record written since the previous one: nothing is missed, nothing piles up. (A lag used to mean a
    full re-score, ~0.15 s of PostgreSQL per worker for 20,000 enrolments, during which the bus
    lagged again: 24 of them in a 27 s drain with check-ins.)

    Training (:class:`TrainNow`; a "train now" request recorded by any process's web, taken up at the
    sweep; once at start when finished terms exist but no model does; and weekly on an exact timer:
    Monday 03:00 UTC) runs in a task of
    the actor's nursery, so scoring goes on meanwhile: data loading on the trio side, fitting in a
    worker thread (``trio.to_thread.run_sync``), all under the trainer's PostgreSQL advisory lock,
    so of several hub processes exactly one trains; the others skip. The lock alone only keeps
    trainings apart: every worker's weekly timer fires at 03:00, and one that reaches the lock after
    the first training ended would train again. So a training the hub started by itself asks, under
    the lock, whether it is still wanted (the weekly one: no model stored since its slot; the first
    one: no model at all; a waiting request: still waiting) and otherwise ends with a note.

    Several workers (issue 13 part 2) also each re-score: safe through the database, no owner. A
    crossing into high risk is an ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into
    ``risk_alerts`` (hub/db/risk.py ``save_predictions``), so of two workers re-scoring the same pair
    exactly one gets the row back and notifies.

    Final results: a course whose grades were released before its term ended gets its
    ``course_results`` (what the model trains on) only once the term is over, so the actor stores
    the due ones (:func:`hub.db.grades.finalize_due`) at start, every day at 02:00 UTC and before each
    training. Not under the trainer lock (a "train now" must not be refused because of it): the pass
    is idempotent and serialised per course-term with a release by the grades' own transaction lock.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Sequence

import trio

from actors import Actor
from hub.core.bus import ATTENDANCE_TOPIC, LiveAttendance, LiveBus
from hub.db import Database
from hub.db.grades import finalize_due
from hub.db.insights import course_faculty, held_sessions, session_pairs
from hub.db.notifications import NewNotification, add_notifications, publish_notifications
from hub.db.risk import (
    Crossing,
    NewModel,
    Prediction,
    active_model,
    any_model,
    forget_finished,
    insert_model,
    pending_training,
    save_predictions,
    touched_since,
    trained_since,
    training_finished,
    training_started,
    with_trainer_lock,
)
from hub.db.risk_features import Case, finished_terms, load_facts, running_cases
from hub.domain.risk_features import (
    FEATURES,
    CaseFacts,
    action_sentence,
    feature_vector,
    improvements,
    level_of,
    reasons,
    rule_level,
    rule_reasons,
)
from hub.pipeline.writer import is_transient
from hub.services.risk_model import LoadedModel, NotEnoughHistory, load, train, training_data

log = logging.getLogger("hub.services.risk")

RISK_MAILBOX = 256
#: Bus buffer of the actor's subscription; overflow means one sweep (module docstring).
RISK_BUS_BUFFER = 4096
SWEEP_EVERY_S = 60.0
RESCORE_EVERY_S = 0.5
#: A full re-score works in slices of this many student-courses (one batched load and save each).
SLICE = 500
RETRY_S = 5.0
#: The weekly training: this weekday (0 = Monday) and hour, UTC.
TRAIN_WEEKDAY, TRAIN_HOUR = 0, 3
#: The daily final-results pass: this hour, UTC (before a Monday's training).
RESULTS_HOUR = 2
SWEEP_OVERLAP = timedelta(minutes=2)

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.fromtimestamp(time.time(), timezone.utc)


def next_training(now: datetime) -> datetime:
    """The next weekly training instant strictly after ``now``."""
    now = now.astimezone(timezone.utc)
    at = (now.replace(hour=TRAIN_HOUR, minute=0, second=0, microsecond=0)
          + timedelta(days=(TRAIN_WEEKDAY - now.weekday()) % 7))
    return at if at > now else at + timedelta(days=7)


def next_results_pass(now: datetime) -> datetime:
    """The next daily final-results instant strictly after ``now``."""
    now = now.astimezone(timezone.utc)
    at = now.replace(hour=RESULTS_HOUR, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


@dataclass(frozen=True)
class RiskChanged:
    """Tell: these students' marks, submissions or understanding in this course changed (empty: everyone)."""

    course_id: str
    student_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainNow:
    """Ask: start a training now. Answers ``{"started": bool, "reason": str}`` at once."""

    by: str


#: Asked under the trainer lock before a training the hub started by itself: None if it is still
#: wanted, else why not (another worker did it).
StillWanted = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class TrainScheduled:
    """Tell (the actor's own timers; tests): the weekly training of ``slot`` is due (``slot`` None: the
    first training of a campus with history and no model). Trains unless, under the trainer lock, another
    hub process already did (a model stored since ``slot``; any model, for the first one)."""

    slot: datetime | None


@dataclass(frozen=True)
class ModelChanged:
    """Tell: the model in use may have changed (pin, unpin, a training elsewhere): reload and re-score."""


@dataclass(frozen=True)
class _Marked:
    """The (session, student) records of the attendance updates the bus held when the pump last looked."""

    records: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class _Sweep:
    full: bool = False


@dataclass(frozen=True)
class _Due:
    pass


@dataclass(frozen=True)
class TrainingDone:
    """Internal (public for the tests' reading): a training ended: the new model row's id or why not."""

    model_id: int | None
    note: str


def score(model: LoadedModel | None, cases: Sequence[Case], facts: Sequence[CaseFacts]) -> list[Prediction]:
    """Predictions with reasons and actions: the model's, or the attendance rule's without a model."""
    if model is None:
        return [Prediction(c.student_id, c.course_id, c.term_id, None, "rule", None, rule_level(f),
                           [_reason_json(r) for r in rule_reasons(f)], [], dict(zip(FEATURES, feature_vector(f))))
                for c, f in zip(cases, facts)]
    vectors = [feature_vector(f) for f in facts]
    probabilities = model.probabilities(vectors)
    steps = [improvements(f) for f in facts]
    flat = [step for group in steps for step in group]
    after = iter(model.probabilities([feature_vector(s.facts) for s in flat]))
    predictions = []
    for case, f, vector, p, group in zip(cases, facts, vectors, probabilities, steps):
        level = level_of(p)
        actions = []
        for step in group:
            p_after = next(after)
            if level != "low" and p_after < p:
                actions.append({"code": step.code, "sentence": action_sentence(step, level, level_of(p_after)),
                                "level_after": level_of(p_after), "probability_after": round(p_after, 4)})
        found = reasons(f, model.contributions(vector))
        predictions.append(Prediction(case.student_id, case.course_id, case.term_id, model.model_id, "model",
                                      round(p, 4), level, [_reason_json(r) for r in found], actions,
                                      dict(zip(FEATURES, vector))))
    return predictions


def _reason_json(reason: Any) -> dict[str, Any]:
    return {"code": reason.code, "sentence": reason.sentence, "weight": round(reason.weight, 4)}


def crossing_notes(crossings: Sequence[Crossing], teachers: dict[str, set[str]]) -> list[NewNotification]:
    notes = []
    for c in crossings:
        why = "; ".join(r["sentence"] for r in c.reasons[:2]) or "several signals together"
        why = why[0].lower() + why[1:]  # it follows a colon in the sentence below
        for teacher in sorted(teachers.get(c.course_id, set())):
            notes.append(NewNotification(
                user_id=teacher, kind="support_suggested",
                title=f"{c.course_code}: {c.student_name} may need support",
                body=f"{c.student_name} ({c.roll_number}) is now at high risk in {c.course_code}: {why}.",
                link=f"/faculty/risk?course_id={c.course_id}",
                data={"student_id": c.student_id, "course_id": c.course_id, "term_id": c.term_id},
            ))
    return notes


class RiskWatcher(Actor):
    """See the module docstring. Messages: :class:`RiskChanged`, :class:`TrainNow`, :class:`ModelChanged`."""

    def __init__(self, db: Database, bus: LiveBus, *, now: Clock = wall_clock, sweep_every_s: float = SWEEP_EVERY_S,
                 rescore_every_s: float = RESCORE_EVERY_S, weekly_training: bool = True,
                 daily_results: bool = True) -> None:
        self._db = db
        self._bus = bus
        self._now = now
        self._sweep_every_s = sweep_every_s
        self._rescore_every_s = rescore_every_s
        self._weekly = weekly_training
        self._daily_results = daily_results
        self._model: LoadedModel | None = None
        self._model_loaded = False
        self._pairs: set[tuple[str, str]] = set()
        self._courses: set[str] = set()
        self._marked: set[tuple[str, str]] = set()
        self._full = False
        self._watermark: datetime | None = None
        self._last_flush = float("-inf")
        self._armed = False
        self._training = False
        #: Re-scores so far and the last training's outcome (the tests read them).
        self.rescores = 0
        self.last_training: TrainingDone | None = None
        self.trainings_done = 0
        self._training_ended = trio.Event()

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    async def wait_trainings(self, count: int) -> None:
        """Wait until ``count`` trainings have ended since the actor started (for tests and tools)."""
        while self.trainings_done < count:
            await self._training_ended.wait()

    async def started(self) -> None:
        ready = trio.Event()
        self.nursery.start_soon(self._pump, ready)
        await ready.wait()
        await self.ref.tell(_Sweep(full=True))
        self.nursery.start_soon(self._tick)
        self.nursery.start_soon(self._schedule)

    async def _schedule(self) -> None:
        """The timers: final results at start (so a first training sees them), the weekly training,
        then final results daily."""
        if self._daily_results:
            await self._store_final_results()
        if self._weekly:
            self.nursery.start_soon(self._weekly_training)
            await self._first_training()
        while self._daily_results:
            now = self._now()
            await trio.sleep((next_results_pass(now) - now).total_seconds())
            await self._store_final_results()

    async def _store_final_results(self) -> None:
        """Final results of the released course-terms whose term has ended. A failure waits for the
        next pass (or training): it must not take the scoring down."""
        try:
            stored = await finalize_due(self._db, self._now().date())
        except Exception as exc:
            if is_transient(exc):
                log.warning("risk: final results not stored, database unavailable (%s); next pass tomorrow", exc)
            else:
                log.exception("risk: storing final results failed")
            return
        if stored:
            log.info("risk: stored %d final results of finished terms", stored)

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self._sweep_every_s)
            await self.ref.tell(_Sweep())

    async def _weekly_training(self) -> None:
        while True:
            now = self._now()
            slot = next_training(now)
            await trio.sleep((slot - now).total_seconds())
            await self.ref.tell(TrainScheduled(slot))

    async def _first_training(self) -> None:
        """A campus (or the demo) with history but no model yet gets one at once, not next Monday."""
        try:
            if not await any_model(self._db) and len(await finished_terms(self._db, self._now().date())) >= 2:
                await self.ref.tell(TrainScheduled(None))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("risk: could not look for a first training (%s); the weekly one will run", exc)

    async def _pump(self, ready: trio.Event) -> None:
        with self._bus.subscribe([ATTENDANCE_TOPIC], capacity=RISK_BUS_BUFFER) as subscription:
            ready.set()
            while True:
                batch = await subscription.receive_batch()
                if isinstance(batch, list):
                    records = frozenset((item.session_id, item.student_id)
                                        for item in batch if isinstance(item, LiveAttendance))
                    if records:
                        await self.ref.tell(_Marked(records))
                else:
                    # Updates were dropped: the watermark sweep finds every record written since.
                    await self.ref.tell(_Sweep())

    async def handle(self, message: Any) -> Any:
        if isinstance(message, TrainNow):
            return self._start_training(message.by)
        if isinstance(message, TrainScheduled):
            slot = message.slot
            if slot is None:
                self._start_training("first start", self._no_model_yet)
            else:
                self._start_training("schedule", lambda: self._not_trained_since(slot))
            return None
        try:
            if isinstance(message, _Sweep):
                if not self._training:
                    waiting = await pending_training(self._db)  # "train now" from another process's web
                    if waiting is not None:
                        self._start_training(waiting, self._request_waits)
                if message.full or self._watermark is None:
                    self._full = True
                else:
                    now = self._now()
                    self._pairs |= await touched_since(self._db, self._watermark - SWEEP_OVERLAP, now)
                    self._watermark = now
            elif isinstance(message, _Marked):
                self._marked |= message.records
            elif isinstance(message, RiskChanged):
                if message.student_ids:
                    self._pairs |= {(s, message.course_id) for s in message.student_ids}
                else:
                    self._courses.add(message.course_id)
            elif isinstance(message, (ModelChanged, TrainingDone)):
                if isinstance(message, TrainingDone):
                    self.last_training = message
                    self._training = False
                    self.trainings_done += 1
                    self._training_ended.set()
                    self._training_ended = trio.Event()
                self._model_loaded = False
                self._full = True
            elif isinstance(message, _Due):
                self._armed = False
            else:
                raise TypeError(f"unexpected message {message!r}")
            if self.ref.depth == 0 and (self._pairs or self._courses or self._marked or self._full):
                wait = self._last_flush + self._rescore_every_s - trio.current_time()
                if wait <= 0:
                    await self._flush()
                elif not self._armed:
                    self._armed = True
                    self.send_after(wait, _Due())
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("risk: database unavailable (%s); retrying in %.0fs", exc, RETRY_S)
            if not self._armed:
                self._armed = True
                self.send_after(RETRY_S, _Due())
        return None

    async def _ensure_model(self) -> None:
        if self._model_loaded:
            return
        found = await active_model(self._db)
        if found is None:
            self._model = None
        elif self._model is None or self._model.model_id != found[0].id:
            row, blob = found
            self._model = await trio.to_thread.run_sync(load, row.id, row.version, blob)
        self._model_loaded = True

    async def _flush(self) -> None:
        self._last_flush = trio.current_time()
        await self._ensure_model()
        now = self._now()
        self.rescores += 1
        if self._full:
            await forget_finished(self._db, now)
            cases = await running_cases(self._db, now)
            self._watermark = now
        else:
            pairs = set(self._pairs)
            if self._marked:
                # A record of a session not yet held cannot move a feature (they count held sessions only,
                # hub/db/risk_features.py), so a burst of live check-ins costs one lookup, not a re-score;
                # those records count when the session ends (its absentees arrive on the bus, and the sweep
                # sees the class end).
                held = await held_sessions(self._db, sorted({s for s, _ in self._marked}), now)
                marked = [(s, st) for s, st in self._marked if s in held]
                if marked:
                    pairs |= await session_pairs(self._db, sorted({s for s, _ in marked}),
                                                 sorted({st for _, st in marked}))
            cases = await running_cases(self._db, now, pairs=sorted(pairs)) if pairs else []
            for course in sorted(self._courses):
                cases += await running_cases(self._db, now, course_id=course)
        pending = (set(self._pairs), set(self._courses), set(self._marked), self._full)
        crossings: list[Crossing] = []
        for start in range(0, len(cases), SLICE):
            chunk = cases[start:start + SLICE]
            facts = await load_facts(self._db, chunk)
            predictions = score(self._model, chunk, facts)
            crossings += await save_predictions(self._db, predictions, now)
            await trio.lowlevel.checkpoint()
        # Only now: on a failure above the pending work stays for the retry.
        self._pairs -= pending[0]
        self._courses -= pending[1]
        self._marked -= pending[2]
        if pending[3]:
            self._full = False
        if crossings:
            teachers = await course_faculty(self._db, {c.course_id for c in crossings})
            notes = crossing_notes(crossings, teachers)
            if notes:
                published = await self._db.run(lambda conn: add_notifications(conn, notes), transaction=True)
                publish_notifications(self._bus, published)
            log.info("risk: %d student-course pairs crossed into high risk", len(crossings))

    def _start_training(self, by: str, still_wanted: StillWanted | None = None) -> dict[str, Any]:
        if self._training:
            return {"started": False, "reason": "training_running"}
        self._training = True
        self.nursery.start_soon(self._train, by, still_wanted)
        return {"started": True, "reason": ""}

    async def _no_model_yet(self) -> str | None:
        return "a model exists already (another hub process trained it)" if await any_model(self._db) else None

    async def _not_trained_since(self, slot: datetime) -> str | None:
        if await trained_since(self._db, slot):
            return "this week's model exists already (another hub process trained it)"
        return None

    async def _request_waits(self) -> str | None:
        if await pending_training(self._db) is None:
            return "the request was taken up by another hub process"
        return None

    async def _train(self, by: str, still_wanted: StillWanted | None = None) -> None:
        note, model_id = "", None

        async def train_if_wanted() -> tuple[int | None, str]:
            unwanted = await still_wanted() if still_wanted is not None else None
            if unwanted is not None:
                return None, unwanted
            return await train_and_store(self._db, by, self._now)

        try:
            got, result = await with_trainer_lock(self._db, train_if_wanted)
            if not got:
                note = "another hub process is training"
            elif result is not None:
                model_id, note = result
        except Exception as exc:  # a failed training must not take the scoring down with it
            if is_transient(exc):
                log.warning("risk: training interrupted, database unavailable (%s)", exc)
            else:
                log.exception("risk: training failed")
            note = f"training failed: {exc}"
        log.info("risk: training by %s: %s", by, note or f"model {model_id} stored")
        await self.ref.tell(TrainingDone(model_id, note))


async def train_and_store(db: Database, by: str, clock: Clock = wall_clock) -> tuple[int | None, str]:
    """Load every finished term, train and evaluate in a worker thread, store the new version; mark the
    waiting "train now" requests started and then finished. Stores the due final results first
    (:func:`hub.db.grades.finalize_due`). Call it holding the trainer lock
    (:func:`hub.db.risk.with_trainer_lock`). Returns the new model's id (None: nothing to train on) and
    the ship decision or why there is no model."""
    await training_started(db, clock())
    try:
        await finalize_due(db, clock().date())  # released early, ended since: train on its outcomes too
        data, terms = await training_data(db, clock().date())
        trained = await trio.to_thread.run_sync(train, data, terms)
    except NotEnoughHistory as exc:
        await training_finished(db, clock(), None, str(exc))
        return None, str(exc)
    row = await insert_model(db, NewModel(
        trained_by=by, trained_on=trained.trained_on, tested_on=trained.tested_on, features=list(FEATURES),
        model=trained.model, metrics=trained.metrics, baseline=trained.baseline, rows_trained=trained.rows_trained,
        rows_tested=trained.rows_tested, shipped=trained.shipped, ship_reason=trained.ship_reason))
    await training_finished(db, clock(), row.id, trained.ship_reason)
    return row.id, trained.ship_reason


def risk_links(lookup: Callable[[], Any]) -> tuple[Callable[[str, Sequence[str]], Any], Callable[[str, str], Any]]:
    """The web's ``risk_changed`` and ``risk_control`` (web/context.py), given a lookup of the running actor.

    ``risk_changed`` never waits (``try_tell``): with a full mailbox the next sweep finds the change.
    ``risk_control`` raises LookupError while the actor is not running.
    """

    async def changed(course_id: str, student_ids: Sequence[str]) -> None:
        ref = lookup()
        if ref is not None:
            ref.try_tell(RiskChanged(course_id, tuple(student_ids)))

    async def control(command: str, by: str) -> dict:
        ref = lookup()
        if ref is None:
            raise LookupError("the early-warning actor is not running")
        if command == "train":
            return await ref.ask(TrainNow(by), timeout=10)
        if command == "model_changed":
            await ref.tell(ModelChanged())
            return {"started": False, "reason": ""}
        raise ValueError(f"unknown risk command {command!r}")

    return changed, control
