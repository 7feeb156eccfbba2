"""The device registry as the hub's actors read it: each device's room, kind and signing key.

(Registration, rotation and revocation are hub/db/devices_admin.py.)

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._pool import Database


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    room_id: str
    kind: str
    alg: str
    key: bytes
    revoked: bool


async def load_devices(db: Database, device_ids: list[str] | None = None) -> list[DeviceRecord]:
    """The registered devices (all if ``device_ids`` is None), revoked ones included."""
    rows = await db.fetch(
        "SELECT id, room_id, kind, alg, key, revoked_at IS NOT NULL AS revoked FROM devices"
        " WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        device_ids,
    )
    return [DeviceRecord(r["id"], r["room_id"], r["kind"], r["alg"], bytes(r["key"]), r["revoked"]) for r in rows]
