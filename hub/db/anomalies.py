"""Telemetry anomalies in PostgreSQL (migration 0033): fitted detectors, unusual hours, scored hours.

The anomaly actor (hub/services/anomaly.py) is the only writer: it reads the
hourly aggregates (:func:`load_hourly`), stores fits (:func:`save_models`),
records each scored hour with its unusual hours in one transaction
(:func:`record_hour`) and links them to the alarm the device actor raised
(:func:`link_alarm`). The web reads :func:`list_anomalies`,
:func:`list_models` and :func:`recent_anomalies`, and records ops' fit requests (:func:`request_fit`).

Concurrency contract: every function is one round trip (or one short
transaction) on the shared :class:`Database`, callable from any trio task.
:func:`anomaly_lock` holds a connection of its own for its block (a session
advisory lock: one hub process runs each pass; closing the connection, also
on cancel, releases it).
"""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator

import asyncpg

from . import advisory
from ._pool import Database
from .advisory import session_lock
from .paging import Page

#: Session advisory lock of the anomaly passes (key in hub/db/advisory.py).
ANOMALY_LOCK = advisory.ANOMALY_LOCK
#: Unusual hours and scored hours are kept as long as the hourly aggregates they were found in.
KEEP_DAYS = 400
#: Fits no longer in use are kept this long (the fit history on the API).
KEEP_OLD_MODELS_DAYS = 90


@dataclass(frozen=True)
class HourlyRow:
    device_id: str
    room_id: str | None
    room_type: str
    metric: str
    unit: str
    hour: datetime
    n: int
    mean: float
    spread: float


@dataclass(frozen=True)
class ModelRecord:
    id: int
    metric: str
    room_type: str
    detector: str
    fitted_at: datetime
    trained_from: datetime
    trained_to: datetime
    series: int
    hours: int
    metrics: dict[str, Any]
    active: bool
    state: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewModel:
    metric: str
    room_type: str
    detector: str
    series: int
    hours: int
    state: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class NewAnomaly:
    device_id: str
    room_id: str | None
    metric: str
    unit: str
    kind: str
    value: float | None
    expected: float
    readings: int
    score: float
    severity: str
    model_id: int | None


@dataclass(frozen=True)
class AnomalyRecord:
    id: int
    device_id: str
    room_id: str | None
    room_name: str | None
    metric: str
    unit: str
    hour: datetime
    kind: str
    value: float | None
    expected: float
    readings: int
    score: float
    severity: str
    model_id: int | None
    alarm_id: int | None
    alarm_state: str | None
    detected_at: datetime


@asynccontextmanager
async def anomaly_lock(db: Database) -> AsyncIterator[bool]:
    """Try the anomaly lock for the block: True if this process holds it, False if another does
    (on a connection of its own: :func:`hub.db.advisory.session_lock`)."""
    async with session_lock(db, ANOMALY_LOCK) as held:
        yield held is not None


async def load_hourly(db: Database, start: datetime, end: datetime) -> list[HourlyRow]:
    """Every hourly aggregate in [start, end) of devices that are not revoked, with the room and its type
    (``unassigned`` for a device without a room), ordered by device, metric and hour."""
    rows = await db.fetch(
        "SELECT h.device_id, d.room_id, coalesce(r.room_type, 'unassigned') AS room_type, h.metric, h.unit,"
        " h.hour, h.n, h.sum / h.n AS mean, h.max - h.min AS spread"
        " FROM sensor_readings_hourly h JOIN devices d ON d.id = h.device_id LEFT JOIN rooms r ON r.id = d.room_id"
        " WHERE h.hour >= $1 AND h.hour < $2 AND d.revoked_at IS NULL ORDER BY 1, 4, 6", start, end)
    return [HourlyRow(r["device_id"], r["room_id"], r["room_type"], r["metric"], r["unit"], r["hour"], r["n"],
                      r["mean"], r["spread"]) for r in rows]


async def device_rooms(db: Database, device_ids: list[str]) -> dict[str, tuple[str | None, str]]:
    """device id → (room id, room type) for ``device_ids``."""
    rows = await db.fetch(
        "SELECT d.id, d.room_id, coalesce(r.room_type, 'unassigned') AS room_type FROM devices d"
        " LEFT JOIN rooms r ON r.id = d.room_id WHERE d.id = ANY($1::text[])", device_ids)
    return {r["id"]: (r["room_id"], r["room_type"]) for r in rows}


_MODEL_COLUMNS = "id, metric, room_type, detector, fitted_at, trained_from, trained_to, series, hours, metrics, active"


def _model(row: asyncpg.Record, with_state: bool) -> ModelRecord:
    return ModelRecord(row["id"], row["metric"], row["room_type"], row["detector"], row["fitted_at"],
                       row["trained_from"], row["trained_to"], row["series"], row["hours"],
                       json.loads(row["metrics"]), row["active"],
                       json.loads(row["state"]) if with_state else None)


async def save_models(db: Database, models: list[NewModel], *, fitted_at: datetime, trained_from: datetime,
                      trained_to: datetime) -> list[ModelRecord]:
    """Store a fit: the new rows become the active ones of their (metric, room type), in one transaction."""

    async def work(conn: asyncpg.Connection) -> list[ModelRecord]:
        out = []
        for m in models:
            await conn.execute("UPDATE anomaly_models SET active = false WHERE metric = $1 AND room_type = $2"
                               " AND active", m.metric, m.room_type)
            row = await conn.fetchrow(
                "INSERT INTO anomaly_models (metric, room_type, detector, fitted_at, trained_from, trained_to,"
                " series, hours, state, metrics) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)"
                f" RETURNING {_MODEL_COLUMNS}, state", m.metric, m.room_type, m.detector, fitted_at, trained_from,
                trained_to, m.series, m.hours, json.dumps(m.state), json.dumps(m.metrics))
            out.append(_model(row, True))
        return out

    return await db.run(work, transaction=True)


async def active_models(db: Database) -> list[ModelRecord]:
    """The models in use, with their fitted state."""
    rows = await db.fetch(f"SELECT {_MODEL_COLUMNS}, state FROM anomaly_models WHERE active ORDER BY metric, room_type")
    return [_model(r, True) for r in rows]


async def list_models(db: Database, *, include_history: bool = False) -> list[ModelRecord]:
    """The models in use (and, with ``include_history``, earlier fits), newest first; without their state."""
    rows = await db.fetch(f"SELECT {_MODEL_COLUMNS} FROM anomaly_models WHERE active OR $1"
                          " ORDER BY active DESC, fitted_at DESC, metric, room_type LIMIT 500", include_history)
    return [_model(r, False) for r in rows]


async def newest_fit(db: Database) -> datetime | None:
    return await db.fetchval("SELECT max(fitted_at) FROM anomaly_models WHERE active")


async def scored_since(db: Database, since: datetime) -> set[datetime]:
    """The hours at or after ``since`` already scored."""
    return {r["hour"] for r in await db.fetch("SELECT hour FROM anomaly_scored_hours WHERE hour >= $1", since)}


async def record_hour(db: Database, hour: datetime, anomalies: list[NewAnomaly], series: int) -> dict[str, list[int]]:
    """Store one scored hour and its unusual hours (one transaction; an hour scored twice keeps its first
    rows). Returns the new anomaly ids by device."""

    async def work(conn: asyncpg.Connection) -> dict[str, list[int]]:
        done = await conn.fetchval(
            "INSERT INTO anomaly_scored_hours (hour, series, anomalies) VALUES ($1, $2, $3)"
            " ON CONFLICT (hour) DO NOTHING RETURNING hour", hour, series, len(anomalies))
        if done is None:
            return {}
        out: dict[str, list[int]] = {}
        for a in anomalies:
            new_id = await conn.fetchval(
                "INSERT INTO telemetry_anomalies (device_id, room_id, metric, unit, hour, kind, value, expected,"
                " readings, score, severity, model_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT (device_id, metric, hour) DO NOTHING RETURNING id",
                a.device_id, a.room_id, a.metric, a.unit, hour, a.kind, a.value, a.expected, a.readings,
                a.score, a.severity, a.model_id)
            if new_id is not None:
                out.setdefault(a.device_id, []).append(new_id)
        return out

    return await db.run(work, transaction=True)


async def link_alarm(db: Database, device_id: str, since: datetime, until: datetime, alarm_id: int) -> None:
    """Record the alarm raised or updated by the device's unusual hours in [since, until] not linked yet
    (if that alarm was stored)."""
    await db.execute(
        "UPDATE telemetry_anomalies SET alarm_id = $4 WHERE device_id = $1 AND hour >= $2 AND hour <= $3"
        " AND alarm_id IS NULL AND EXISTS (SELECT 1 FROM alarms WHERE id = $4)", device_id, since, until, alarm_id)


async def unusual_hours_since(db: Database, since: datetime) -> dict[str, set[datetime]]:
    """Each device's hours at or after ``since`` with an unusual metric."""
    out: dict[str, set[datetime]] = {}
    for r in await db.fetch("SELECT DISTINCT device_id, hour FROM telemetry_anomalies WHERE hour >= $1", since):
        out.setdefault(r["device_id"], set()).add(r["hour"])
    return out


async def open_anomaly_alarms(db: Database, alarm_type: str) -> set[str]:
    """Devices with an active alarm of ``alarm_type``."""
    rows = await db.fetch("SELECT device_id FROM alarms WHERE type = $1 AND state IN ('active_unacked',"
                          " 'active_acked')", alarm_type)
    return {r["device_id"] for r in rows}


_SELECT = (
    "SELECT t.id, t.device_id, t.room_id, r.name AS room_name, t.metric, t.unit, t.hour, t.kind, t.value,"
    " t.expected, t.readings, t.score, t.severity, t.model_id, t.alarm_id, a.state AS alarm_state, t.detected_at"
    " FROM telemetry_anomalies t LEFT JOIN rooms r ON r.id = t.room_id LEFT JOIN alarms a ON a.id = t.alarm_id"
)


def _anomaly(r: asyncpg.Record) -> AnomalyRecord:
    return AnomalyRecord(r["id"], r["device_id"], r["room_id"], r["room_name"], r["metric"], r["unit"], r["hour"],
                         r["kind"], r["value"], r["expected"], r["readings"], r["score"], r["severity"],
                         r["model_id"], r["alarm_id"], r["alarm_state"], r["detected_at"])


async def list_anomalies(db: Database, limit: int, offset: int, *, device_id: str | None = None,
                         room_id: str | None = None, metric: str | None = None,
                         since: datetime | None = None) -> Page[AnomalyRecord]:
    """One page of unusual hours, newest hour first, with the total matching."""
    where = ("($1::text IS NULL OR t.device_id = $1) AND ($2::text IS NULL OR t.room_id = $2)"
             " AND ($3::text IS NULL OR t.metric = $3) AND ($4::timestamptz IS NULL OR t.hour >= $4)")
    args = (device_id, room_id, metric, since)

    async def work(conn: asyncpg.Connection) -> Page[AnomalyRecord]:
        total = await conn.fetchval(f"SELECT count(*) FROM telemetry_anomalies t WHERE {where}", *args)
        rows = await conn.fetch(f"{_SELECT} WHERE {where} ORDER BY t.hour DESC, t.id DESC LIMIT $5 OFFSET $6",
                                *args, limit, offset)
        return Page([_anomaly(r) for r in rows], total)

    return await db.run(work)


async def recent_anomalies(db: Database, now: datetime, *, room_id: str | None = None, device_id: str | None = None,
                           days: int = 7, limit: int = 20) -> list[AnomalyRecord]:
    """The newest unusual hours of a room or device within ``days`` (the ops pages)."""
    return list((await list_anomalies(db, limit, 0, device_id=device_id, room_id=room_id,
                                      since=now - timedelta(days=days))).items)


async def request_fit(db: Database, by: str) -> bool:
    """Ask for a fit (ops' "fit now"); False if one is already waiting."""
    return await db.fetchval(
        "INSERT INTO anomaly_fit_requests (requested_by) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
        by) is not None


async def take_fit_request(db: Database) -> str | None:
    """Take the waiting fit request, if any: who asked (None: none waits). Only one taker wins it."""
    return await db.fetchval(
        "UPDATE anomaly_fit_requests SET taken_at = now() WHERE taken_at IS NULL RETURNING requested_by")


async def prune(db: Database, now: datetime) -> int:
    """Delete unusual and scored hours older than :data:`KEEP_DAYS` and unused fits older than
    :data:`KEEP_OLD_MODELS_DAYS`; returns the rows deleted."""

    async def work(conn: asyncpg.Connection) -> int:
        deleted = 0
        for sql, cutoff in (
            ("DELETE FROM telemetry_anomalies WHERE hour < $1", now - timedelta(days=KEEP_DAYS)),
            ("DELETE FROM anomaly_scored_hours WHERE hour < $1", now - timedelta(days=KEEP_DAYS)),
            ("DELETE FROM anomaly_models WHERE NOT active AND fitted_at < $1",
             now - timedelta(days=KEEP_OLD_MODELS_DAYS)),
            ("DELETE FROM anomaly_fit_requests WHERE taken_at < $1", now - timedelta(days=KEEP_OLD_MODELS_DAYS)),
        ):
            deleted += int((await conn.execute(sql, cutoff)).split()[-1])
        return deleted

    return await db.run(work)
