"""Demo data of the ops console: a few maintenance tickets in different states, one past its SLA,
so ``campushub demo`` shows the ticket board, SLA highlighting and "My reports" at once.
Idempotent: seeded once, recognised by the ``demo`` flag of their ``created`` history entry."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from ..tickets import read_policy

#: (title, description, priority, state, room index, reporter, assignee, age)
_DEMO = (
    ("Projector flickers", "The image flickers every few seconds, worst on white slides.", "P3", "open",
     0, "student", None, timedelta(hours=2)),
    ("No sound from ceiling speakers", "Microphone works, speakers silent.", "P2", "in_progress",
     1, "faculty", "usr-ops", timedelta(hours=20)),
    ("Door access panel unresponsive", "Badge reader shows no light.", "P1", "assigned",
     0, "usr-ops", "usr-ops", timedelta(hours=30)),
)


async def ensure_console_demo(conn: asyncpg.Connection, room_ids: list[str], *, student_id: str | None,
                              faculty_id: str | None, now: datetime) -> None:
    """In the caller's (seed) transaction: the demo tickets, unless they were seeded before."""
    if not room_ids or await conn.fetchval(
            "SELECT 1 FROM ticket_events WHERE kind = 'created' AND detail ->> 'demo' = 'true' LIMIT 1"):
        return
    reporters = {"student": student_id, "faculty": faculty_id, "usr-ops": "usr-ops"}
    policy = await read_policy(conn)
    for title, description, priority, state, room, reporter, assignee, age in _DEMO:
        reported_by = reporters[reporter] or "usr-ops"
        created = now - age
        ticket_id = await conn.fetchval(
            "INSERT INTO tickets (room_id, title, description, priority, state, source, assignee, reported_by,"
            " sla_due_at, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, 'report', $6, $7, $8, $9, $9) RETURNING id",
            room_ids[min(room, len(room_ids) - 1)], title, description, priority, state, assignee, reported_by,
            policy.due(priority, created), created)
        await conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, actor, kind, to_state, detail) VALUES ($1, $2, $3, 'created',"
            " 'open', $4::jsonb)", ticket_id, created, reported_by, json.dumps({"priority": priority, "demo": True}))
        if assignee:
            await conn.execute(
                "INSERT INTO ticket_events (ticket_id, at, actor, kind, from_state, to_state, detail)"
                " VALUES ($1, $2, 'usr-ops', 'assigned', 'open', 'assigned', $3::jsonb)",
                ticket_id, created + timedelta(minutes=10), json.dumps({"assignee": assignee}))
