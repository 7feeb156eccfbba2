"""Demo data of device health: one room-scoped threshold rule that the simulator's CO2 random walk
(600 ± ~80 ppm) crosses every few minutes, so ``campushub demo`` shows alarms being raised,
acknowledged and cleared. Idempotent: the rule is added once (recognised by ``updated_by``)."""
from __future__ import annotations

import asyncpg

DEMO_RULE_AUTHOR = "demo"


async def ensure_health_demo(conn: asyncpg.Connection, room_ids: list[str]) -> None:
    """In the caller's (seed) transaction: the demo rule for the first room, unless it exists."""
    if not room_ids:
        return
    await conn.execute(
        "INSERT INTO threshold_rules (metric, room_id, op, value, clear_value, duration_s, severity, updated_by)"
        " SELECT 'co2', $1, 'above', 700, 650, 60, 'warning', $2"
        " WHERE NOT EXISTS (SELECT 1 FROM threshold_rules WHERE room_id = $1 AND updated_by = $2)",
        room_ids[0], DEMO_RULE_AUTHOR)
