"""Threshold rules: the hub's load of all of them, and the web's CRUD.

Concurrency contract: every function is one round trip on the shared
:class:`Database`, callable from any trio task. Writes are single
statements (each its own transaction); the caller tells the hub afterwards
(``WebContext.thresholds_changed``) so device actors pick the change up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from ._pool import Database

RULE_COLUMNS = (
    "id", "metric", "room_type", "room_id", "op", "value", "clear_value", "duration_s", "severity", "enabled",
    "created_at", "updated_at", "updated_by",
)
#: Fields a client may set.
EDITABLE = ("metric", "room_type", "room_id", "op", "value", "clear_value", "duration_s", "severity", "enabled")
_SELECT = f"SELECT {', '.join(RULE_COLUMNS)} FROM threshold_rules"


@dataclass(frozen=True)
class RuleSet:
    """Every rule (enabled or not) and the type of every room."""

    rules: tuple[dict[str, Any], ...]
    room_types: dict[str, str]


async def load_rule_set(db: Database) -> RuleSet:
    async def work(conn: asyncpg.Connection) -> RuleSet:
        rules = await conn.fetch(_SELECT + " ORDER BY id")
        rooms = await conn.fetch("SELECT id, room_type FROM rooms")
        return RuleSet(tuple(dict(r) for r in rules), {r["id"]: r["room_type"] for r in rooms})

    return await db.run(work)


@dataclass(frozen=True)
class RulePage:
    total: int
    items: tuple[dict[str, Any], ...]


async def list_rules(
    db: Database, limit: int, offset: int, *, metric: str | None = None, room_id: str | None = None,
    room_type: str | None = None,
) -> RulePage:
    where = ("($1::text IS NULL OR metric = $1) AND ($2::text IS NULL OR room_id = $2)"
             " AND ($3::text IS NULL OR room_type = $3)")

    async def work(conn: asyncpg.Connection) -> RulePage:
        total = await conn.fetchval(f"SELECT count(*) FROM threshold_rules WHERE {where}", metric, room_id, room_type)
        rows = await conn.fetch(
            f"{_SELECT} WHERE {where} ORDER BY metric, op, value, id LIMIT $4 OFFSET $5",
            metric, room_id, room_type, limit, offset)
        return RulePage(total, tuple(dict(r) for r in rows))

    return await db.run(work)


async def get_rule(db: Database, rule_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(_SELECT + " WHERE id = $1", rule_id)
    return None if row is None else dict(row)


async def room_exists(db: Database, room_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", room_id))


async def create_rule(db: Database, fields: dict[str, Any], by: str) -> dict[str, Any]:
    """Insert a rule (``fields``: every key of :data:`EDITABLE`, already validated)."""
    columns = [*EDITABLE, "updated_by"]
    row = await db.fetchrow(
        f"INSERT INTO threshold_rules ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
        f" RETURNING {', '.join(RULE_COLUMNS)}",
        *(fields[c] for c in EDITABLE), by)
    assert row is not None  # INSERT ... RETURNING returns the inserted row
    return dict(row)


async def update_rule(db: Database, rule_id: int, fields: dict[str, Any], by: str) -> dict[str, Any] | None:
    """Replace a rule's editable fields (all of :data:`EDITABLE`); None if no such rule."""
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(EDITABLE, start=2))
    row = await db.fetchrow(
        f"UPDATE threshold_rules SET {sets}, updated_by = ${len(EDITABLE) + 2}, updated_at = now()"
        f" WHERE id = $1 RETURNING {', '.join(RULE_COLUMNS)}",
        rule_id, *(fields[c] for c in EDITABLE), by)
    return None if row is None else dict(row)


async def delete_rule(db: Database, rule_id: int) -> bool:
    return await db.fetchval("DELETE FROM threshold_rules WHERE id = $1 RETURNING true", rule_id) is not None
