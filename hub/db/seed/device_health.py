"""Demo data of device health: room-scoped CO2 threshold rules that the simulator's room climate crosses
while a class is in (hub/app/simulator.py: CO2 rises with the students present, ~900 ppm in a full room,
and falls back to ~450 ppm in the break), so ``campushub demo`` shows alarms being raised, ticketed and
cleared. Idempotent: a rule is added once per room (recognised by ``updated_by``)."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from .._pool import Database
from ..tickets import save_policy

DEMO_RULE_AUTHOR = "demo"
#: The demo rule: CO2 above this for ``CO2_FOR_S`` raises a warning; it clears at or below ``CO2_CLEAR``.
CO2_ABOVE, CO2_CLEAR, CO2_FOR_S = 700, 650, 60
#: Severities whose alarms raise a ticket in the demo (the hub's default is critical only).
DEMO_AUTO_RAISE = ("warning", "major", "critical")


async def _add_rules(conn: asyncpg.Connection, room_ids: list[str]) -> None:
    await conn.executemany(
        "INSERT INTO threshold_rules (metric, room_id, op, value, clear_value, duration_s, severity, updated_by)"
        " SELECT 'co2', $1, 'above', $3, $4, $5, 'warning', $2"
        " WHERE NOT EXISTS (SELECT 1 FROM threshold_rules WHERE room_id = $1 AND updated_by = $2)",
        [(rid, DEMO_RULE_AUTHOR, CO2_ABOVE, CO2_CLEAR, CO2_FOR_S) for rid in room_ids])


async def ensure_health_demo(conn: asyncpg.Connection, room_ids: list[str]) -> None:
    """In the caller's (seed) transaction: the demo rule for the first room, unless it exists."""
    await _add_rules(conn, room_ids[:1])


async def ensure_alarm_demo(db: Database, room_ids: list[str], *, now: datetime) -> None:
    """For ``campushub demo`` only (not in ``ensure_campus``: the hub tests' rooms stay rule-free):
    the demo rule in every room, and tickets raised by warning and major alarms too, unless an
    admin has set the auto-raise severities (then theirs stand). Blocks for a few short queries."""
    await db.run(lambda conn: _add_rules(conn, room_ids), transaction=True)
    if await db.fetchval("SELECT auto_raise_severities IS NULL FROM ticket_settings"):
        await save_policy(db, [], DEMO_AUTO_RAISE, by=DEMO_RULE_AUTHOR, at=now)
