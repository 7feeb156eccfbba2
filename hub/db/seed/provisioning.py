"""Demo data for provisioning: a short command history on the first seeded device.

So the ops console's command list (web/static/ops.js) shows every outcome from the
first start of ``campushub demo``: an acked time sync, a failed config push,
a reboot that timed out and a roster sync that expired. Idempotent (fixed
ids, ``ON CONFLICT DO NOTHING``); runs inside the seeding transaction.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

_NAMESPACE = uuid.UUID("6f1d7c52-93a4-4c1e-9d8e-0c0b5e4a6d10")

# (name, args, status, minutes before now it was created, detail)
_HISTORY: tuple[tuple[str, dict[str, Any], str, int, str], ...] = (
    ("time_sync", {}, "acked", 180, "clock adjusted by +0.4 s"),
    ("config_push", {"heartbeat_interval_s": 10}, "failed", 120, "heartbeat_interval_s below the minimum of 15"),
    ("reboot", {}, "timed_out", 60, "no acknowledgement within 90 s of sending"),
    ("roster_sync", {"session": "next"}, "expired", 30, "device answered expired"),
)


async def seed_command_history(conn: asyncpg.Connection, device_id: str, now: datetime) -> None:
    """Insert the demo history for ``device_id`` unless it is already there."""
    rows = []
    for name, args, status, minutes_ago, detail in _HISTORY:
        created = now - timedelta(minutes=minutes_ago)
        sent = created + timedelta(seconds=1)
        answered = None if status == "timed_out" else sent + timedelta(seconds=2)
        rows.append((
            uuid.uuid5(_NAMESPACE, f"{device_id}/{name}"), device_id, name, args, status, 60, 90, "usr-ops",
            created, sent, created + timedelta(seconds=60), answered, detail,
        ))
    await conn.executemany(
        "INSERT INTO device_commands (id, device_id, name, args, status, ttl_s, ack_timeout_s, issued_by,"
        " created_at, sent_at, expires_at, acked_at, detail, updated_at)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $9) ON CONFLICT (id) DO NOTHING",
        [(r[0], r[1], r[2], json.dumps(r[3]), *r[4:]) for r in rows],
    )

