"""The anomaly actor: scores every room's new hour of telemetry, fits the detectors daily and on demand.

**Scoring.** After each hourly roll-up (the telemetry actor tells it
:class:`HourRolledUp`; a fallback timer runs :data:`AFTER_THE_HOUR_S` past
every hour in case that pass ran in another hub process) it scores every
complete hour not yet scored, at most :data:`BACKFILL_HOURS` back, oldest
first: for each fitted series (a device's metric, hub/services/anomaly_model.py)
the hour's aggregate is scored (an hour without readings is a dropout), the
unusual ones are stored with the scored hour in one transaction
(hub/db/anomalies.py), and each device with an unusual metric, or with an
open ``telemetry_anomaly`` alarm, is asked :class:`~hub.domain.anomaly.AnomalyReport`
(with how many of its hours just before were unusual: an alarm needs two in three).
Its device actor raises, updates or clears the alarm through the same
lifecycle as every alarm (hub/pipeline/device_alarms.py), so acknowledgement,
the ops pages, the live bus and tickets work as for any alarm.

**Fitting.** Daily at :data:`FIT_AT_UTC` (and at start when no fit is a day
old, and when ops ask: :class:`FitNow` from this process's web, or a request
any web recorded in ``anomaly_fit_requests``, taken at the next pass): the last :data:`HISTORY_DAYS` days of hourly
aggregates are read, and the detector is fitted per (metric, room type) in a
worker thread (``trio.to_thread.run_sync``: the event loop never waits on
scikit-learn or numpy); the fits are stored and become current in one
transaction. The same pass prunes old anomaly rows.

**One owner.** Each pass takes the PostgreSQL session advisory lock of
hub/db/anomalies.py on a connection of its own; another hub process holding it
means this one skips the pass (the hours it would have scored are then scored,
once, by the holder: ``anomaly_scored_hours``); each score pass first adopts fits
another process stored.

Concurrency contract: one actor; its messages are handled one at a time, so a
score pass never overlaps a fit. Mailbox :data:`ANOMALY_MAILBOX` (BLOCK); the
telemetry hook uses ``try_tell`` (a full mailbox means a pass is queued
anyway). A failed pass is logged and retried by the next timer, never crashes
the actor. Device asks run one at a time and give up after the device actor's
own timeout (a device removed meanwhile is skipped).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import trio

from actors import Actor, Timer
from hub.db import Database
from hub.db.anomalies import (
    HourlyRow,
    ModelRecord,
    NewAnomaly,
    NewModel,
    active_models,
    anomaly_lock,
    device_rooms,
    link_alarm,
    load_hourly,
    newest_fit,
    open_anomaly_alarms,
    prune,
    record_hour,
    save_models,
    scored_since,
    take_fit_request,
    unusual_hours_since,
)
from hub.domain.anomaly import (
    ANOMALY_ALARM,
    RAISE_WINDOW_HOURS,
    AnomalyFinding,
    AnomalyReport,
    epoch_hour,
    hour_floor,
    severity_for,
)
from hub.pipeline.writer import is_transient
from hub.services.anomaly_model import (
    HUB_DETECTOR,
    Fitted,
    SeriesHistory,
    dense_series,
    fit_groups,
    fitted_from_state,
)
from hub.services.telemetry import seconds_to_next_run

log = logging.getLogger("hub.services.anomaly")

ANOMALY_MAILBOX = 16
#: The fallback score pass runs this long after each UTC hour (the telemetry roll-up runs at :01).
AFTER_THE_HOUR_S = 600.0
#: Complete hours scored at most this far back (a hub that was down longer skips the rest).
BACKFILL_HOURS = 48
#: Days of hourly history each fit reads.
HISTORY_DAYS = 28
#: The daily fit's time of day (UTC, seconds after midnight): 03:15, after the night's roll-ups.
FIT_AT_UTC = 3 * 3600 + 15 * 60
#: At start, fit this soon when the newest fit is older than a day (or there is none).
FIRST_FIT_S = 30.0
#: The first score pass runs this soon after start.
FIRST_SCORE_S = 20.0
#: After a pass failed because PostgreSQL was unavailable, retry this soon.
RETRY_S = 60.0


@dataclass(frozen=True)
class HourRolledUp:
    """Tell: the telemetry actor rolled up the hours before ``before`` (hub/services/telemetry.py)."""

    before: datetime


@dataclass(frozen=True)
class ScoreNow:
    """Ask: score the unscored complete hours now; reply a :class:`ScoreReport`."""


@dataclass(frozen=True)
class FitNow:
    """Ask: fit now. ``wait``: reply the :class:`FitReport` when done; else reply at once
    ``{"started": bool, "reason": str}`` and fit right after."""

    by: str = "system"
    wait: bool = False


@dataclass(frozen=True)
class _ScoreTick:
    pass


@dataclass(frozen=True)
class _FitTick:
    by: str = "schedule"


@dataclass
class ScoreReport:
    hours: list[datetime] = field(default_factory=list)
    series: int = 0
    anomalies: int = 0
    alarms_changed: int = 0
    skipped: bool = False


@dataclass
class FitReport:
    models: list[ModelRecord] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class _Current:
    model: ModelRecord
    fitted: Fitted


def seconds_to_next_fit(now_s: float) -> float:
    """Seconds from ``now_s`` (unix) to the next :data:`FIT_AT_UTC`."""
    day = (now_s // 86400) * 86400
    at = day + FIT_AT_UTC
    return at - now_s if at > now_s else at + 86400 - now_s


def series_from_rows(rows: list[HourlyRow], start_hour: int, end_hour: int,
                     from_first_row: bool = True) -> list[SeriesHistory]:
    """Dense series of [start_hour, end_hour) from hourly rows (see :func:`dense_series`)."""
    grouped: dict[tuple[str, str], list[HourlyRow]] = defaultdict(list)
    for r in rows:
        grouped[(r.device_id, r.metric)].append(r)
    out = []
    for (device, metric), members in grouped.items():
        last = members[-1]
        series = dense_series(device, metric, last.room_type, last.unit,
                              ((epoch_hour(r.hour), r.n, r.mean, r.spread) for r in members), start_hour, end_hour)
        if not from_first_row and series.hours.size and series.hours[0] > start_hour:
            series = _pad_front(series, start_hour)
        out.append(series)
    return out


def _pad_front(s: SeriesHistory, start_hour: int) -> SeriesHistory:
    import numpy as np

    missing = int(s.hours[0] - start_hour)
    return SeriesHistory(s.device_id, s.metric, s.room_type, s.unit,
                         np.concatenate([np.arange(start_hour, s.hours[0], dtype=np.int64), s.hours]),
                         np.concatenate([np.zeros(missing, dtype=np.int64), s.n]),
                         np.concatenate([np.full(missing, np.nan), s.mean]),
                         np.concatenate([np.zeros(missing), s.spread]))


def _fit(rows: list[HourlyRow], start_hour: int, end_hour: int, detector: str) -> list[Any]:
    """Worker-thread body of a fit: build the series and fit every group."""
    return fit_groups(series_from_rows(rows, start_hour, end_hour), detector)


class AnomalyWatcher(Actor):
    """See the module docstring. ``ask_device(device_id, message)`` asks a device's actor (starting it if
    needed: hub.pipeline.device_actor.device_asker, given by the composition root)."""

    def __init__(self, db: Database, ask_device: Callable[[str, object], Awaitable[Any]], *,
                 detector: str = HUB_DETECTOR, clock: Callable[[], float] = time.time,
                 fit_at_start: bool = True) -> None:
        self._db = db
        self._ask_device = ask_device
        self._detector = detector
        self._clock = clock
        self._fit_at_start = fit_at_start
        self._current: dict[tuple[str, str], _Current] = {}
        self._score_timer: Timer | None = None
        self._fit_timer: Timer | None = None
        self._fit_queued = False

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    async def started(self) -> None:
        first_fit = seconds_to_next_fit(self._clock())
        try:
            models = await active_models(self._db)
            self._adopt(models)
            newest = await newest_fit(self._db)
            # Refit soon when the fits are old, missing, or not stored as state (the forest is refitted).
            if self._fit_at_start and (newest is None or self._now() - newest > timedelta(days=1)
                                       or len(self._current) < len(models)):
                first_fit = FIRST_FIT_S
        except Exception as exc:  # noqa: BLE001 - a down database must not stop the tree; the timers retry
            log.warning("anomaly: could not load the detectors at start (%s); fitting soon", exc)
            first_fit = FIRST_FIT_S
        self._fit_timer = self.send_after(first_fit, _FitTick())
        self._score_timer = self.send_after(FIRST_SCORE_S, _ScoreTick())

    async def handle(self, message: object) -> Any:
        if isinstance(message, ScoreNow):
            return await self.score_pass()
        if isinstance(message, FitNow):
            if message.wait:
                return await self.fit_pass()
            if not self._fit_queued:
                self._fit_queued = True
                self.send_after(0, _FitTick(message.by))
            return {"started": True, "reason": ""}
        if isinstance(message, HourRolledUp):
            await self._guarded(self.score_pass, "score")
            return None
        if isinstance(message, _ScoreTick):
            delay = seconds_to_next_run(self._clock(), AFTER_THE_HOUR_S)
            await self._guarded(self._requested_fit, "fit")
            if not await self._guarded(self.score_pass, "score"):
                delay = min(delay, RETRY_S)
            self._score_timer = self.send_after(delay, _ScoreTick())
            return None
        if isinstance(message, _FitTick):
            self._fit_queued = False
            if message.by == "schedule":
                delay = seconds_to_next_fit(self._clock() + 1)
                if not await self._guarded(self.fit_pass, "fit"):
                    delay = min(delay, RETRY_S * 10)
                self._fit_timer = self.send_after(delay, _FitTick())
            else:
                await self._guarded(self._requested_fit, "fit")
            # Hours left unscored for want of a fit (a new hub, new devices) are scored at once.
            await self._guarded(self.score_pass, "score")
            return None
        raise TypeError(f"AnomalyWatcher cannot handle {message!r}")

    async def _guarded(self, work: Callable[[], Awaitable[Any]], what: str) -> bool:
        """Run a pass; log a failure instead of crashing (False when it failed transiently)."""
        try:
            await work()
            return True
        except Exception as exc:  # noqa: BLE001 - logged; the next timer retries
            if is_transient(exc):
                log.warning("anomaly %s pass: database unavailable (%s)", what, exc)
                return False
            log.exception("anomaly %s pass failed", what)
            return True

    async def _requested_fit(self) -> None:
        """Fit if ops asked for one (``anomaly_fit_requests``; taken by one actor only)."""
        by = await take_fit_request(self._db)
        if by is not None:
            log.info("anomaly: fit asked by %s", by)
            await self.fit_pass()

    async def _adopt_newer_fits(self) -> None:
        """Adopt fits stored since ours (another hub process held the lock at the daily fit). One query."""
        newest = await newest_fit(self._db)
        mine = max((c.model.fitted_at for c in self._current.values()), default=None)
        if newest is not None and (mine is None or newest > mine):
            self._adopt(await active_models(self._db))

    def _adopt(self, models: list[ModelRecord]) -> None:
        current: dict[tuple[str, str], _Current] = {}
        for m in models:
            fitted = fitted_from_state(m.detector, m.state or {})
            if fitted is not None:
                current[(m.metric, m.room_type)] = _Current(m, fitted)
        self._current = current

    # --- fitting --------------------------------------------------------------------------------

    async def fit_pass(self) -> FitReport:
        """Fit every (metric, room type) on the last :data:`HISTORY_DAYS` days; store and adopt the fits."""
        report = FitReport()
        async with anomaly_lock(self._db) as held:
            if not held:
                report.skipped = True
                return report
            started = time.perf_counter()
            now = self._now()
            end = hour_floor(now)
            start = end - timedelta(days=HISTORY_DAYS)
            rows = await load_hourly(self._db, start, end)
            report.rows = len(rows)
            groups = await trio.to_thread.run_sync(_fit, rows, epoch_hour(start), epoch_hour(end), self._detector)
            if groups:
                report.models = await save_models(self._db, [
                    NewModel(g.metric, g.room_type, g.fitted.detector, g.report.series, g.report.hours,
                             g.fitted.state(), g.report.json()) for g in groups],
                    fitted_at=now, trained_from=start, trained_to=end)
                fitted = {(g.metric, g.room_type): g.fitted for g in groups}
                self._current.update({(m.metric, m.room_type): _Current(m, fitted[(m.metric, m.room_type)])
                                      for m in report.models})
            await prune(self._db, now)
            report.seconds = time.perf_counter() - started
        log.info("anomaly: fitted %d detectors on %d hourly rows in %.1fs", len(report.models), report.rows,
                 report.seconds)
        return report

    # --- scoring --------------------------------------------------------------------------------

    async def score_pass(self) -> ScoreReport:
        """Score every complete hour not scored yet (at most :data:`BACKFILL_HOURS` back), oldest first."""
        report = ScoreReport()
        await self._adopt_newer_fits()
        if not self._current:
            return report
        async with anomaly_lock(self._db) as held:
            if not held:
                report.skipped = True
                return report
            end = hour_floor(self._now())
            first = end - timedelta(hours=BACKFILL_HOURS)
            done = await scored_since(self._db, first)
            todo = [first + timedelta(hours=i) for i in range(BACKFILL_HOURS) if first + timedelta(hours=i) not in done]
            if not todo:
                return report
            context = todo[0] - timedelta(hours=1)  # the hour before, for features built on the change
            rows = await load_hourly(self._db, context, end)
            series = {s.key: s for s in series_from_rows(rows, epoch_hour(context), epoch_hour(end),
                                                         from_first_row=False)}
            await self._add_silent_series(series, epoch_hour(context), epoch_hour(end))
            open_alarms = await open_anomaly_alarms(self._db, ANOMALY_ALARM)
            recent = await unusual_hours_since(self._db, todo[0] - timedelta(hours=RAISE_WINDOW_HOURS))
            for hour in todo:
                await self._score_hour(hour, series, open_alarms, recent, report)
        if report.anomalies:
            log.info("anomaly: scored %d hours, %d unusual hours, %d alarm changes", len(report.hours),
                     report.anomalies, report.alarms_changed)
        return report

    async def _add_silent_series(self, series: dict[tuple[str, str], SeriesHistory], start: int, end: int) -> None:
        """Fitted series with no row at all in the window: every hour is a dropout (the sensor went silent)."""
        import numpy as np

        silent = [(device, metric, room_type) for (metric, room_type), c in self._current.items()
                  for device in _fitted_devices(c.fitted) if (device, metric) not in series]
        if not silent:
            return
        rooms = await device_rooms(self._db, sorted({d for d, _, _ in silent}))
        for device, metric, room_type in silent:
            if device not in rooms or rooms[device][1] != room_type:
                continue  # removed, or moved to a room of another type (its new group fits it next time)
            size = end - start
            series[(device, metric)] = SeriesHistory(
                device, metric, room_type, "",
                np.arange(start, end, dtype=np.int64), np.zeros(size, dtype=np.int64), np.full(size, np.nan),
                np.zeros(size))

    async def _score_hour(self, hour: datetime, series: dict[tuple[str, str], SeriesHistory],
                          open_alarms: set[str], recent: dict[str, set[datetime]], report: ScoreReport) -> None:
        """Score one hour of every series, store it, and report to each device concerned (``open_alarms`` and
        ``recent``, each device's unusual hours, are kept up to date for the next hour)."""
        index = epoch_hour(hour)
        findings: dict[str, list[AnomalyFinding]] = defaultdict(list)
        rows: list[NewAnomaly] = []
        scored_devices: set[str] = set()
        scored = 0
        for s in series.values():
            current = self._current.get(s.group)
            if current is None:
                continue
            where = int(index - s.hours[0]) if s.hours.size else -1
            if where < 0 or where >= s.hours.size:
                continue
            window = SeriesHistory(s.device_id, s.metric, s.room_type, s.unit, s.hours[:where + 1],
                                   s.n[:where + 1], s.mean[:where + 1], s.spread[:where + 1])
            scores = current.fitted.score(window, where)
            if not scores:
                continue  # this device was not fitted (too little history when the fit ran)
            scored += 1
            scored_devices.add(s.device_id)
            score = scores[0]
            if not score.unusual:
                continue
            n = int(s.n[where])
            value = None if n == 0 else float(s.mean[where])
            finding = AnomalyFinding(s.metric, score.kind, score.score, value, score.expected, s.unit)
            findings[s.device_id].append(finding)
            rows.append(NewAnomaly(s.device_id, None, s.metric, s.unit, score.kind, value, score.expected, n,
                                   score.score, severity_for(score.score) or "warning", current.model.id))
        if rows:
            located = await device_rooms(self._db, sorted(findings))
            rows = [replace(a, room_id=located.get(a.device_id, (None, ""))[0]) for a in rows]
        new_ids = await record_hour(self._db, hour, rows, scored)
        report.hours.append(hour)
        report.series += scored
        report.anomalies += len(rows)
        for device in findings:
            recent.setdefault(device, set()).add(hour)
        for device in sorted(set(findings) | (open_alarms & scored_devices)):
            before = sum(1 for k in range(1, RAISE_WINDOW_HOURS) if hour - timedelta(hours=k) in recent.get(device, ()))
            try:
                alarm = await self._ask_device(device, AnomalyReport(hour, tuple(findings.get(device, ())), before))
            except LookupError:
                continue  # the device was removed meanwhile
            except Exception as exc:  # noqa: BLE001 - one device's trouble must not stop the others' alarms
                log.warning("anomaly: device %s did not take the report of %s (%s)", device, hour, exc)
                continue
            if alarm is None:
                open_alarms.discard(device)
                continue
            report.alarms_changed += 1
            if alarm.active:
                open_alarms.add(device)
            else:
                open_alarms.discard(device)
            if new_ids.get(device):  # this hour's rows, and the earlier ones of the window that raised it
                await link_alarm(self._db, device, hour - timedelta(hours=RAISE_WINDOW_HOURS - 1), hour, alarm.id)


def _fitted_devices(fitted: Fitted) -> list[str]:
    fits = getattr(fitted, "fits", None) or getattr(fitted, "norms", None) or {}
    return list(fits)


def anomaly_links(lookup: Callable[[], Any]) -> tuple[Callable[[datetime], None], Callable[[str], Awaitable[dict]]]:
    """The telemetry actor's after-roll-up hook and the web's ``anomaly_fit`` (web/context.py), given a lookup
    of the running anomaly actor. The hook never waits (``try_tell``); ``anomaly_fit`` raises LookupError while
    the actor is not running and answers at once (the fit runs after)."""

    def rolled_up(before: datetime) -> None:
        ref = lookup()
        if ref is not None:
            ref.try_tell(HourRolledUp(before))

    async def fit(by: str) -> dict:
        ref = lookup()
        if ref is None:
            raise LookupError("the anomaly actor is not running")
        return await ref.ask(FitNow(by), timeout=10)

    return rolled_up, fit

