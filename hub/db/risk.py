"""Early-warning storage: versioned models, the latest prediction per student-course, and the
high-risk crossings already told to faculty (migration 0032, docs/analytics.md).

Which model is *in use*: the pinned one if an admin pinned one, else the newest shipped one
(``status = 'active'``, at most one row). Only a shipped model (it beat the attendance rule on
the held-out term) may be in use; without one the pages show the rule's levels.

Concurrency contract: every function is a few round trips on the shared :class:`Database`
(the writers in one transaction) and may be called from any trio task. Model rows are
written only by the trainer, which holds :data:`TRAINER_LOCK` (one trainer across hub
processes); pin and unpin lock the table's active row with ``FOR UPDATE``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import asyncpg

from . import advisory, security_audit
from ._pool import Database
from .advisory import session_lock

T = TypeVar("T")

#: PostgreSQL session advisory lock of the trainer: one trainer across hub processes (hub/db/advisory.py).
TRAINER_LOCK = advisory.TRAINER_LOCK


@dataclass(frozen=True)
class ModelRow:
    id: int
    version: int
    created_at: datetime
    trained_by: str
    trained_on: list[str]
    tested_on: str
    features: list[str]
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    rows_trained: int
    rows_tested: int
    status: str
    pinned: bool
    shipped: bool
    ship_reason: str


@dataclass(frozen=True)
class NewModel:
    trained_by: str
    trained_on: Sequence[str]
    tested_on: str
    features: Sequence[str]
    model: bytes
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    rows_trained: int
    rows_tested: int
    shipped: bool
    ship_reason: str


_MODEL_COLUMNS = ("id, version, created_at, trained_by, trained_on, tested_on, features, metrics, baseline,"
                  " rows_trained, rows_tested, status, pinned, shipped, ship_reason")


def _model(row: asyncpg.Record) -> ModelRow:
    return ModelRow(**_model_values(dict(row)))


def _model_values(values: dict[str, Any]) -> dict[str, Any]:
    for key in ("metrics", "baseline"):
        if isinstance(values[key], str):
            values[key] = json.loads(values[key])
    values["trained_on"] = list(values["trained_on"])
    values["features"] = list(values["features"])
    return values


async def _activate(conn: asyncpg.Connection, model_id: int | None) -> None:
    """Make ``model_id`` the one active model (None: none); the one active before is retired."""
    await conn.execute("UPDATE risk_models SET status = 'retired' WHERE status = 'active'"
                       " AND id IS DISTINCT FROM $1", model_id)
    if model_id is not None:
        await conn.execute("UPDATE risk_models SET status = 'active' WHERE id = $1", model_id)


async def insert_model(db: Database, new: NewModel) -> ModelRow:
    """Store a trained model as the next version; a shipped one is put in use unless a model is pinned."""

    async def work(conn: asyncpg.Connection) -> ModelRow:
        await conn.execute("LOCK TABLE risk_models IN SHARE ROW EXCLUSIVE MODE")
        row = await conn.fetchrow(
            "INSERT INTO risk_models (version, trained_by, trained_on, tested_on, features, model, metrics, baseline,"
            " rows_trained, rows_tested, shipped, ship_reason)"
            " VALUES ((SELECT coalesce(max(version), 0) + 1 FROM risk_models), $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb,"
            " $8, $9, $10, $11) RETURNING id",
            new.trained_by, list(new.trained_on), new.tested_on, list(new.features), new.model,
            json.dumps(new.metrics), json.dumps(new.baseline), new.rows_trained, new.rows_tested,
            new.shipped, new.ship_reason)
        pinned = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM risk_models WHERE pinned)")
        if new.shipped and not pinned:
            await _activate(conn, row["id"])
        return _model(await conn.fetchrow(f"SELECT {_MODEL_COLUMNS} FROM risk_models WHERE id = $1", row["id"]))

    return await db.run(work, transaction=True)


async def list_models(db: Database) -> list[ModelRow]:
    """Every model, newest first (without its bytes)."""
    return [_model(r) for r in await db.fetch(f"SELECT {_MODEL_COLUMNS} FROM risk_models ORDER BY version DESC")]


async def any_model(db: Database) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM risk_models)"))


async def trained_since(db: Database, at: datetime) -> bool:
    """Whether a model was stored at or after ``at`` (a scheduled training another hub worker already ran)."""
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM risk_models WHERE created_at >= $1)", at))


async def get_model(db: Database, model_id: int) -> ModelRow | None:
    row = await db.fetchrow(f"SELECT {_MODEL_COLUMNS} FROM risk_models WHERE id = $1", model_id)
    return _model(row) if row is not None else None


async def active_model(db: Database) -> tuple[ModelRow, bytes] | None:
    """The model in use and its bytes (a joblib dump written by hub/services/risk_model.py), or None."""
    row = await db.fetchrow(f"SELECT {_MODEL_COLUMNS}, model FROM risk_models WHERE status = 'active'")
    if row is None:
        return None
    values = dict(row)
    blob = values.pop("model")
    return ModelRow(**_model_values(values)), bytes(blob)


class ModelRefused(ValueError):
    """The model cannot be put in use: ``code`` is ``not_found`` or ``not_shipped``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def pin_model(db: Database, model_id: int, by: str) -> ModelRow:
    """Put ``model_id`` in use and keep it there (a rollback when it is older); audited."""

    async def work(conn: asyncpg.Connection) -> ModelRow:
        await conn.execute("LOCK TABLE risk_models IN SHARE ROW EXCLUSIVE MODE")
        row = await conn.fetchrow("SELECT shipped, version FROM risk_models WHERE id = $1", model_id)
        if row is None:
            raise ModelRefused("not_found")
        if not row["shipped"]:
            raise ModelRefused("not_shipped")
        before = await conn.fetchval("SELECT version FROM risk_models WHERE status = 'active'")
        # Two statements: the one-pinned unique index is checked row by row, not at the statement's end.
        await conn.execute("UPDATE risk_models SET pinned = false WHERE pinned AND id <> $1", model_id)
        await conn.execute("UPDATE risk_models SET pinned = true WHERE id = $1", model_id)
        await _activate(conn, model_id)
        found = _model(await conn.fetchrow(f"SELECT {_MODEL_COLUMNS} FROM risk_models WHERE id = $1", model_id))
        await security_audit.record(conn, actor=by, action="pinned", entity="risk_model", entity_id=str(model_id),
                                    before={"version_in_use": before}, after={"version_in_use": row["version"]})
        return found

    return await db.run(work, transaction=True)


async def unpin_model(db: Database, by: str) -> ModelRow | None:
    """Stop pinning: the newest shipped model is in use again (returned; None if there is none); audited."""

    async def work(conn: asyncpg.Connection) -> ModelRow | None:
        await conn.execute("LOCK TABLE risk_models IN SHARE ROW EXCLUSIVE MODE")
        before = await conn.fetchval("SELECT version FROM risk_models WHERE status = 'active'")
        await conn.execute("UPDATE risk_models SET pinned = false WHERE pinned")
        newest = await conn.fetchval("SELECT id FROM risk_models WHERE shipped ORDER BY version DESC LIMIT 1")
        await _activate(conn, newest)
        found = (_model(await conn.fetchrow(f"SELECT {_MODEL_COLUMNS} FROM risk_models WHERE id = $1", newest))
                 if newest is not None else None)
        await security_audit.record(conn, actor=by, action="unpinned", entity="risk_model",
                                    entity_id=str(newest) if newest is not None else "none",
                                    before={"version_in_use": before},
                                    after={"version_in_use": found.version if found else None})
        return found

    return await db.run(work, transaction=True)


# --- predictions --------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    student_id: str
    course_id: str
    term_id: str
    model_id: int | None
    basis: str
    probability: float | None
    level: str
    reasons: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    features: dict[str, float]


@dataclass(frozen=True)
class Crossing:
    """A student who just crossed into high risk in a course (the faculty are told once)."""

    student_id: str
    student_name: str
    roll_number: str
    course_id: str
    course_code: str
    term_id: str
    reasons: list[dict[str, Any]]


async def save_predictions(db: Database, predictions: Sequence[Prediction], now: datetime) -> list[Crossing]:
    """Upsert the predictions and update the crossings in one transaction; returns the students who
    crossed INTO high risk (no alert row yet). Leaving high deletes the alert row, so a later
    crossing is told again."""
    if not predictions:
        return []
    cols = (
        [p.student_id for p in predictions], [p.course_id for p in predictions], [p.term_id for p in predictions],
        [p.model_id for p in predictions], [p.basis for p in predictions], [p.probability for p in predictions],
        [p.level for p in predictions], [json.dumps(p.reasons) for p in predictions],
        [json.dumps(p.actions) for p in predictions], [json.dumps(p.features) for p in predictions],
    )

    async def work(conn: asyncpg.Connection) -> list[Crossing]:
        await conn.execute(
            "INSERT INTO risk_predictions (student_id, course_id, term_id, model_id, basis, probability, level,"
            " reasons, actions, features, computed_at)"
            " SELECT s, c, t, m, b, p, l, r::jsonb, a::jsonb, f::jsonb, $11 FROM unnest($1::text[], $2::text[],"
            " $3::text[], $4::bigint[], $5::text[], $6::float8[], $7::text[], $8::text[], $9::text[], $10::text[])"
            " AS x (s, c, t, m, b, p, l, r, a, f)"
            " ON CONFLICT (student_id, course_id, term_id) DO UPDATE SET model_id = excluded.model_id,"
            " basis = excluded.basis, probability = excluded.probability, level = excluded.level,"
            " reasons = excluded.reasons, actions = excluded.actions, features = excluded.features,"
            " computed_at = excluded.computed_at", *cols, now)
        await conn.execute(
            "DELETE FROM risk_alerts ra USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x (s, c, t, l)"
            " WHERE ra.student_id = x.s AND ra.course_id = x.c AND ra.term_id = x.t AND x.l <> 'high'",
            cols[0], cols[1], cols[2], cols[6])
        rows = await conn.fetch(
            "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x (s, c, t, l)"
            "  WHERE l = 'high'),"
            " new AS (INSERT INTO risk_alerts (student_id, course_id, term_id, crossed_at)"
            "  SELECT s, c, t, $5 FROM x ON CONFLICT DO NOTHING RETURNING student_id, course_id, term_id)"
            " SELECT n.student_id, u.display_name AS student_name, st.roll_number, n.course_id, c.code AS course_code,"
            "  n.term_id, p.reasons FROM new n JOIN users u ON u.id = n.student_id"
            "  JOIN students st ON st.id = n.student_id JOIN courses c ON c.id = n.course_id"
            "  JOIN risk_predictions p ON p.student_id = n.student_id AND p.course_id = n.course_id"
            "   AND p.term_id = n.term_id",
            cols[0], cols[1], cols[2], cols[6], now)
        return [Crossing(r["student_id"], r["student_name"], r["roll_number"], r["course_id"], r["course_code"],
                         r["term_id"], json.loads(r["reasons"])) for r in rows]

    return await db.run(work, transaction=True)


@dataclass(frozen=True)
class PredictionRow:
    student_id: str
    student_name: str
    roll_number: str
    course_id: str
    course_code: str
    course_title: str
    term_id: str
    term_name: str
    basis: str
    model_version: int | None
    probability: float | None
    level: str
    reasons: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    computed_at: datetime


_PREDICTION_SELECT = """
SELECT p.student_id, u.display_name AS student_name, st.roll_number, p.course_id, c.code AS course_code,
       c.title AS course_title, p.term_id, t.name AS term_name, p.basis, m.version AS model_version,
       p.probability, p.level, p.reasons, p.actions, p.computed_at
FROM risk_predictions p
JOIN users u ON u.id = p.student_id JOIN students st ON st.id = p.student_id
JOIN courses c ON c.id = p.course_id JOIN terms t ON t.id = p.term_id
LEFT JOIN risk_models m ON m.id = p.model_id
JOIN enrolments e ON e.student_id = p.student_id AND e.course_id = p.course_id
WHERE t.starts_on <= $1::date AND t.ends_on >= $1::date"""

_LEVEL_ORDER = "CASE p.level WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END"


def _prediction(row: asyncpg.Record) -> PredictionRow:
    values = dict(row)
    for key in ("reasons", "actions"):
        if isinstance(values[key], str):
            values[key] = json.loads(values[key])
    return PredictionRow(**values)


async def course_predictions(db: Database, course_id: str, today: datetime) -> list[PredictionRow]:
    """The running term's predictions of a course, highest risk first."""
    rows = await db.fetch(
        _PREDICTION_SELECT + f" AND p.course_id = $2 ORDER BY {_LEVEL_ORDER}, p.probability DESC NULLS LAST,"
        " st.roll_number", today.date(), course_id)
    return [_prediction(r) for r in rows]


async def student_predictions(db: Database, student_id: str, today: datetime) -> list[PredictionRow]:
    """One student's predictions in their running courses, by course code."""
    rows = await db.fetch(_PREDICTION_SELECT + " AND p.student_id = $2 ORDER BY c.code", today.date(), student_id)
    return [_prediction(r) for r in rows]


async def touched_since(db: Database, since: datetime, until: datetime) -> set[tuple[str, str]]:
    """(student, course) pairs whose marks, submissions or understanding changed in (since, until],
    and whose classes ended then (the sweep's catch-all besides the bus and the web's tells)."""

    async def work(conn: asyncpg.Connection) -> set[tuple[str, str]]:
        parts = [
            "SELECT m.student_id, a.course_id FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id"
            " WHERE m.graded_at > $1 AND m.graded_at <= $2",
            "SELECT e.student_id, e.course_id FROM class_sessions s JOIN enrolments e ON e.course_id = s.course_id"
            " WHERE s.ends_at > $1 AND s.ends_at <= $2 AND s.status <> 'cancelled'",
            "SELECT a.student_id, s.course_id FROM attendance a JOIN class_sessions s ON s.id = a.session_id"
            " WHERE a.updated_at > $1 AND a.updated_at <= $2",
        ]
        if await conn.fetchval("SELECT to_regclass('assignment_submissions') IS NOT NULL"):
            parts.append(
                "SELECT x.student_id, a.course_id FROM assignment_submissions x JOIN assessments a"
                " ON a.id = x.assessment_id WHERE x.submitted_at > $1 AND x.submitted_at <= $2")
        if await conn.fetchval("SELECT to_regclass('topic_understanding') IS NOT NULL"):
            parts.append(
                "SELECT u.student_id, s.course_id FROM topic_understanding u JOIN class_sessions s"
                " ON s.id = u.session_id WHERE u.at > $1 AND u.at <= $2")
        rows = await conn.fetch(" UNION ".join(parts), since, until)
        return {(r["student_id"], r["course_id"]) for r in rows}

    return await db.run(work)


async def forget_finished(db: Database, today: datetime) -> int:
    """Drop predictions and alerts of terms that have ended (kept only while a course runs)."""

    async def work(conn: asyncpg.Connection) -> int:
        await conn.execute("DELETE FROM risk_alerts ra USING terms t WHERE t.id = ra.term_id AND t.ends_on < $1::date",
                           today.date())
        done = await conn.execute(
            "DELETE FROM risk_predictions p USING terms t WHERE t.id = p.term_id AND t.ends_on < $1::date",
            today.date())
        return int(done.split()[-1])

    return await db.run(work, transaction=True)


async def with_trainer_lock(db: Database, work: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run the trio coroutine function ``work`` holding :data:`TRAINER_LOCK`: ``(True, result)``, or
    ``(False, None)`` at once when another hub process is training.

    The lock is held on a connection of its own (:func:`hub.db.advisory.session_lock`), not one of
    the pool's, for the whole of ``work`` (which uses pooled connections for its own queries);
    closing it when ``work`` ends, is cancelled or fails releases the lock.
    """
    async with session_lock(db, TRAINER_LOCK) as held:
        if held is None:
            return False, None
        return True, await work()


# --- training requests ----------------------------------------------------------------------

async def request_training(db: Database, by: str) -> bool:
    """Record a "train now" (False, nothing recorded: one is already waiting or running)."""
    return bool(await db.fetchval(
        "INSERT INTO risk_training_requests (requested_by) SELECT $1"
        " WHERE NOT EXISTS (SELECT 1 FROM risk_training_requests WHERE finished_at IS NULL"
        # A request unfinished for an hour was abandoned (its hub stopped): it no longer blocks.
        "  AND requested_at > now() - interval '1 hour') RETURNING true", by))


async def pending_training(db: Database) -> str | None:
    """Who asked for the oldest training not started yet (None: none waits)."""
    return await db.fetchval(
        "SELECT requested_by FROM risk_training_requests WHERE started_at IS NULL ORDER BY id LIMIT 1")


async def training_started(db: Database, now: datetime) -> None:
    await db.execute("UPDATE risk_training_requests SET started_at = $1 WHERE started_at IS NULL", now)


async def training_finished(db: Database, now: datetime, model_id: int | None, note: str) -> None:
    await db.execute("UPDATE risk_training_requests SET finished_at = $1, model_id = $2, note = $3"
                     " WHERE finished_at IS NULL AND started_at IS NOT NULL", now, model_id, note)


async def latest_training(db: Database) -> dict[str, Any] | None:
    """The newest request: who, when, and what became of it (for the admin page)."""
    row = await db.fetchrow(
        "SELECT r.requested_by, r.requested_at, r.started_at, r.finished_at, r.note, m.version"
        " FROM risk_training_requests r LEFT JOIN risk_models m ON m.id = r.model_id ORDER BY r.id DESC LIMIT 1")
    return dict(row) if row is not None else None
