"""The ops console's room overview: every room with its devices' health, key readings, sparklines, occupancy.

One statement, so one round trip however many rooms (the overview must stay
usable at 1,000 rooms and 3,000 devices: bench/console_scale.py measures it).
Each key reading is the latest raw reading of the last :data:`LATEST_WITHIN`
(an index probe per device and metric on ``sensor_readings_device_metric_ts``);
each sparkline is the room's hourly averages of the last :data:`SPARK_HOURS`
complete hours (a primary-key range scan of ``sensor_readings_hourly`` per
device and metric); occupancy is the number of students present or late in
the room's session under way, if there is one.

Concurrency contract: one round trip on the shared :class:`Database`, callable
from any trio task; nothing here writes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._pool import Database

#: The metrics a room tile shows (the room sensor's; hub/app/simulator.py names the same).
KEY_METRICS = ("temperature", "co2")
#: A key reading older than this is not shown (the sensor has gone quiet).
LATEST_WITHIN = timedelta(hours=1)
#: Hours of hourly averages in a sparkline.
SPARK_HOURS = 24


@dataclass(frozen=True)
class TileDevice:
    """A device of a room tile: what its health colour needs (web/console.py ``health_of``)."""

    device_id: str
    kind: str
    revoked: bool
    online: bool
    outbox_depth: int
    error_count: int
    #: Severities of its active (not cleared) alarms.
    severities: tuple[str, ...]


@dataclass(frozen=True)
class Reading:
    value: float
    unit: str
    at: datetime


@dataclass(frozen=True)
class RoomTile:
    room_id: str
    name: str
    building: str
    devices: tuple[TileDevice, ...]
    #: metric → its latest reading (only metrics heard from in the last :data:`LATEST_WITHIN`).
    readings: dict[str, Reading]
    #: metric → hourly averages, oldest first (hours without readings are skipped).
    sparks: dict[str, tuple[float, ...]]
    #: Students present or late in the session under way; None when no session is under way.
    occupancy: int | None


_OVERVIEW = """
WITH active AS (
    SELECT device_id, array_agg(severity ORDER BY severity) AS severities FROM alarms
    WHERE state IN ('active_unacked', 'active_acked') GROUP BY device_id
), dev AS (
    SELECT d.room_id, json_agg(json_build_object(
        'device_id', d.id, 'kind', d.kind, 'revoked', d.revoked_at IS NOT NULL,
        'online', coalesce(h.online, false), 'outbox_depth', coalesce(h.outbox_depth, 0),
        'error_count', coalesce(h.error_count, 0), 'severities', coalesce(a.severities, '{}'::text[]))
        ORDER BY d.id) AS devices
    FROM devices d LEFT JOIN device_health h ON h.device_id = d.id LEFT JOIN active a ON a.device_id = d.id
    GROUP BY d.room_id
), latest AS (
    SELECT room_id, json_object_agg(metric, json_build_object('value', value, 'unit', unit, 'at', device_ts))
        AS readings
    FROM (SELECT DISTINCT ON (d.room_id, m.metric) d.room_id, m.metric, l.value, l.unit, l.device_ts
          FROM devices d CROSS JOIN unnest($1::text[]) AS m(metric)
          CROSS JOIN LATERAL (
              SELECT s.value, s.unit, s.device_ts FROM sensor_readings s
              WHERE s.device_id = d.id AND s.metric = m.metric AND s.device_ts >= $2 AND s.device_ts <= $4
              ORDER BY s.device_ts DESC LIMIT 1) l
          WHERE d.revoked_at IS NULL
          ORDER BY d.room_id, m.metric, l.device_ts DESC) newest
    GROUP BY room_id
), hours AS (
    SELECT d.room_id, h.metric, h.hour, sum(h.sum) / sum(h.n) AS avg
    FROM devices d CROSS JOIN unnest($1::text[]) AS m(metric)
    JOIN sensor_readings_hourly h ON h.device_id = d.id AND h.metric = m.metric AND h.hour >= $3 AND h.hour < $4
    GROUP BY d.room_id, h.metric, h.hour
), spark AS (
    SELECT room_id, json_object_agg(metric, points) AS sparks
    FROM (SELECT room_id, metric, array_agg(round(avg::numeric, 1) ORDER BY hour) AS points
          FROM hours GROUP BY room_id, metric) per_metric
    GROUP BY room_id
), occ AS (
    SELECT cs.room_id, count(a.student_id) FILTER (WHERE a.status IN ('present', 'late'))::int AS present
    FROM class_sessions cs LEFT JOIN attendance a ON a.session_id = cs.id
    WHERE cs.starts_at <= $4 AND cs.ends_at > $4 AND cs.status <> 'cancelled'
    GROUP BY cs.room_id
)
SELECT r.id AS room_id, r.name, r.building, dev.devices, latest.readings, spark.sparks, occ.present
FROM rooms r LEFT JOIN dev ON dev.room_id = r.id LEFT JOIN latest ON latest.room_id = r.id
LEFT JOIN spark ON spark.room_id = r.id LEFT JOIN occ ON occ.room_id = r.id
ORDER BY r.building, r.name, r.id
"""


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _tile(row: Any) -> RoomTile:
    devices = tuple(TileDevice(d["device_id"], d["kind"], d["revoked"], d["online"], d["outbox_depth"],
                               d["error_count"], tuple(d["severities"])) for d in _decoded(row["devices"]) or ())
    readings = {metric: Reading(r["value"], r["unit"], datetime.fromisoformat(r["at"]))
                for metric, r in (_decoded(row["readings"]) or {}).items()}
    sparks = {metric: tuple(float(v) for v in points) for metric, points in (_decoded(row["sparks"]) or {}).items()}
    return RoomTile(row["room_id"], row["name"], row["building"], devices, readings, sparks, row["present"])


async def room_tiles(db: Database, now: datetime, metrics: tuple[str, ...] = KEY_METRICS) -> list[RoomTile]:
    """Every room (with or without devices), by building then name, as the overview's tiles at ``now``."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    rows = await db.fetch(_OVERVIEW, list(metrics), now - LATEST_WITHIN, this_hour - timedelta(hours=SPARK_HOURS), now)
    return [_tile(r) for r in rows]
