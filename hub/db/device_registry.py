"""The device registry as the hub reads it: each device's room, kind and signing key (the actors),
and the broker accounts (the Mosquitto files, hub/adapters/mosquitto_auth.py).

(Registration, rotation and revocation are hub/db/provisioning.py.)

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


@dataclass(frozen=True)
class MqttAccountRow:
    device_id: str
    username: str
    password_hash: str


async def load_devices(db: Database, device_ids: list[str] | None = None) -> list[DeviceRecord]:
    """The registered devices (all if ``device_ids`` is None), revoked ones included."""
    rows = await db.fetch(
        "SELECT id, room_id, kind, alg, key, revoked_at IS NOT NULL AS revoked FROM devices"
        " WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        device_ids,
    )
    return [DeviceRecord(r["id"], r["room_id"], r["kind"], r["alg"], bytes(r["key"]), r["revoked"]) for r in rows]


async def mqtt_accounts(db: Database) -> list[MqttAccountRow]:
    """The broker accounts of every device that has one and is not revoked, by username."""
    rows = await db.fetch(
        "SELECT id, mqtt_username, mqtt_password_hash FROM devices"
        " WHERE mqtt_username IS NOT NULL AND revoked_at IS NULL ORDER BY mqtt_username"
    )
    return [MqttAccountRow(r["id"], r["mqtt_username"], r["mqtt_password_hash"]) for r in rows]
