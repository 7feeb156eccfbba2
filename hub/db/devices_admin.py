"""The device registry's admin side: register, rotate, revoke, list; the broker accounts; the hub's signing key.

Key material arrives already generated (``hub.domain.credentials``): this
module only stores it. Every function is one transaction; callers tell the
running hub afterwards (``WebContext.devices_changed``) so its ingress and
the broker's password/ACL files follow at once.

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`; each blocks its caller for one or two round trips;
cancelling rolls the transaction back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ._pool import Database

DEVICE_KINDS = ("qr_camera", "fingerprint", "sensor", "edge_agent")


class RegistryError(Exception):
    """A registry change that cannot be made: ``code`` is ``not_found``, ``conflict`` or ``invalid_request``."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class DeviceAdminRow:
    device_id: str
    room_id: str
    kind: str
    model: str
    alg: str
    mqtt_username: str | None
    credential_version: int
    created_at: datetime
    registered_by: str | None
    rotated_at: datetime | None
    rotated_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoked_reason: str | None


@dataclass(frozen=True)
class MqttAccountRow:
    device_id: str
    username: str
    password_hash: str


_COLUMNS = (
    "id, room_id, kind, model, alg, mqtt_username, credential_version, created_at, registered_by,"
    " rotated_at, rotated_by, revoked_at, revoked_by, revoked_reason"
)


def _row(r: asyncpg.Record) -> DeviceAdminRow:
    return DeviceAdminRow(
        r["id"], r["room_id"], r["kind"], r["model"], r["alg"], r["mqtt_username"], r["credential_version"],
        r["created_at"], r["registered_by"], r["rotated_at"], r["rotated_by"], r["revoked_at"],
        r["revoked_by"], r["revoked_reason"],
    )


async def register_device(
    db: Database, *, device_id: str, room_id: str, kind: str, model: str, alg: str, key: bytes,
    mqtt_username: str, mqtt_password_hash: str, actor: str,
) -> DeviceAdminRow:
    """Insert a new device with its verification key and broker account.

    Raises :class:`RegistryError`: ``conflict`` if the id or MQTT username is
    taken (a revoked device keeps its id: ids are never reused, so old events
    stay attributable), ``invalid_request`` (field ``room_id``) for an unknown room.
    """

    async def work(conn: asyncpg.Connection) -> DeviceAdminRow:
        if await conn.fetchval("SELECT 1 FROM rooms WHERE id = $1", room_id) is None:
            raise RegistryError("invalid_request", f"No room {room_id!r}.", "room_id")
        row = await conn.fetchrow(
            "INSERT INTO devices (id, room_id, kind, model, alg, key, mqtt_username, mqtt_password_hash,"
            " registered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            device_id, room_id, kind, model, alg, key, mqtt_username, mqtt_password_hash, actor,
        )
        if row is None:
            raise RegistryError("conflict", f"A device {device_id!r} (or that MQTT username) already exists.",
                                "device_id")
        return _row(row)

    return await db.run(work, transaction=True)


async def rotate_credentials(
    db: Database, device_id: str, *, key: bytes, mqtt_password_hash: str, mqtt_username: str, actor: str,
) -> DeviceAdminRow:
    """Replace a device's key and broker password; the old ones stop working at once.

    ``mqtt_username`` is set only for a device that had no broker account
    yet. Raises :class:`RegistryError` ``not_found``, or ``conflict`` for a
    revoked device (revocation is final: register a new device instead).
    """

    async def work(conn: asyncpg.Connection) -> DeviceAdminRow:
        current = await conn.fetchrow("SELECT revoked_at FROM devices WHERE id = $1 FOR UPDATE", device_id)
        if current is None:
            raise RegistryError("not_found", f"No device {device_id!r}.")
        if current["revoked_at"] is not None:
            raise RegistryError("conflict", f"Device {device_id!r} is revoked; register a new device instead.")
        try:
            row = await conn.fetchrow(
                "UPDATE devices SET key = $2, mqtt_password_hash = $3,"
                " mqtt_username = coalesce(mqtt_username, $4), credential_version = credential_version + 1,"
                f" rotated_at = now(), rotated_by = $5 WHERE id = $1 RETURNING {_COLUMNS}",
                device_id, key, mqtt_password_hash, mqtt_username, actor,
            )
        except asyncpg.UniqueViolationError:
            raise RegistryError("conflict", f"The MQTT username {mqtt_username!r} is taken.") from None
        return _row(row)

    return await db.run(work, transaction=True)


async def revoke_device(db: Database, device_id: str, *, actor: str, reason: str) -> DeviceAdminRow:
    """Revoke a device for good (idempotent: revoking again changes nothing and returns the row).

    Its events are rejected as ``revoked_device``, its broker account leaves
    the generated password file, and its pending or sent commands fail.
    Raises :class:`RegistryError` ``not_found``.
    """

    async def work(conn: asyncpg.Connection) -> DeviceAdminRow:
        row = await conn.fetchrow(
            "UPDATE devices SET revoked_at = now(), revoked_by = $2, revoked_reason = $3"
            f" WHERE id = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}",
            device_id, actor, reason,
        )
        if row is None:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
            if row is None:
                raise RegistryError("not_found", f"No device {device_id!r}.")
            return _row(row)
        await conn.execute(
            "UPDATE device_commands SET status = 'failed', detail = 'device revoked', updated_at = now()"
            " WHERE device_id = $1 AND status IN ('pending', 'sent')",
            device_id,
        )
        return _row(row)

    return await db.run(work, transaction=True)


async def get_device_admin(db: Database, device_id: str) -> DeviceAdminRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
    return None if row is None else _row(row)


async def list_devices_admin(db: Database, limit: int, offset: int) -> tuple[list[DeviceAdminRow], int]:
    """One page of the registry, by id, and the total count."""

    async def work(conn: asyncpg.Connection) -> tuple[list[DeviceAdminRow], int]:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM devices ORDER BY id LIMIT $1 OFFSET $2", limit, offset)
        return [_row(r) for r in rows], await conn.fetchval("SELECT count(*) FROM devices")

    return await db.run(work)


async def room_ids(db: Database) -> list[tuple[str, str]]:
    """``(id, name)`` of every room, for the registration form."""
    return [(r["id"], r["name"]) for r in await db.fetch("SELECT id, name FROM rooms ORDER BY id")]


async def mqtt_accounts(db: Database) -> list[MqttAccountRow]:
    """The broker accounts of every device that has one and is not revoked, by username."""
    rows = await db.fetch(
        "SELECT id, mqtt_username, mqtt_password_hash FROM devices"
        " WHERE mqtt_username IS NOT NULL AND revoked_at IS NULL ORDER BY mqtt_username"
    )
    return [MqttAccountRow(r["id"], r["mqtt_username"], r["mqtt_password_hash"]) for r in rows]


async def hub_signing_key(db: Database, candidate_seed: bytes, candidate_public: bytes) -> tuple[bytes, bytes]:
    """The hub's Ed25519 ``(seed, public key)``; stores the candidate if there is none yet.

    Every hub of a deployment gets the same key (the first one stored wins),
    so devices keep verifying commands across hub restarts and replicas.
    """

    async def work(conn: asyncpg.Connection) -> tuple[bytes, bytes]:
        await conn.execute(
            "INSERT INTO hub_signing_keys (alg, private_key, public_key) VALUES ('ed25519', $1, $2)"
            " ON CONFLICT (alg) DO NOTHING",
            candidate_seed, candidate_public,
        )
        row = await conn.fetchrow("SELECT private_key, public_key FROM hub_signing_keys WHERE alg = 'ed25519'")
        return bytes(row["private_key"]), bytes(row["public_key"])

    return await db.run(work, transaction=True)
