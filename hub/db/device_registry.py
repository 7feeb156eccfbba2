"""The device registry as the hub reads it: each device's room, kind and signing key (the actors),
and the broker accounts (the Mosquitto files, hub/adapters/mosquitto_auth.py).

(Registration, rotation and revocation are hub/db/provisioning.py.)

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
    #: When the device's broker quarantine ends (hub/db/quarantine.py); None: not quarantined.
    quarantined_until: datetime | None = None


async def load_devices(db: Database, device_ids: list[str] | None = None) -> list[DeviceRecord]:
    """The registered devices (all if ``device_ids`` is None), revoked ones included."""
    rows = await db.fetch(
        "SELECT id, room_id, kind, alg, key, revoked_at IS NOT NULL AS revoked FROM devices"
        " WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        device_ids,
    )
    return [DeviceRecord(r["id"], r["room_id"], r["kind"], r["alg"], bytes(r["key"]), r["revoked"]) for r in rows]


async def mqtt_accounts(db: Database) -> list[MqttAccountRow]:
    """The broker accounts of every device that has one and is not revoked, by username,
    each with the end of its quarantine if one is in force (by the database's clock)."""
    rows = await db.fetch(
        "SELECT d.id, d.mqtt_username, d.mqtt_password_hash, q.until FROM devices d"
        " LEFT JOIN device_quarantines q ON q.device_id = d.id AND q.released_at IS NULL AND q.until > now()"
        " WHERE d.mqtt_username IS NOT NULL AND d.revoked_at IS NULL ORDER BY d.mqtt_username"
    )
    return [MqttAccountRow(r["id"], r["mqtt_username"], r["mqtt_password_hash"], r["until"]) for r in rows]
