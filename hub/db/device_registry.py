"""The device registry as the hub reads it: each device's room, kind and signing key (the actors),
and the broker accounts (the Mosquitto files, hub/adapters/mosquitto_auth.py).

(Registration, rotation and revocation are hub/db/provisioning.py.)

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hub.core.secrets_box import SecretsBox

from ._pool import Database
from .advisory import MOSQUITTO_FILES_LOCK
from .sealed_secrets import device_key_context


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


def stored_device_key(secrets: SecretsBox, device_id: str, alg: str, key: bytes) -> tuple[bytes | None, bytes | None]:
    """``(key, key_sealed)`` as the devices table stores them: an HMAC secret sealed with the
    campus key, an Ed25519 public key (not a secret) as it is."""
    if alg == "ed25519":
        return key, None
    return None, secrets.encrypt(key, device_key_context(device_id))


def opened_device_key(secrets: SecretsBox, device_id: str, key: bytes | None, key_sealed: bytes | None) -> bytes:
    """The verification key of a devices row (the inverse of :func:`stored_device_key`).

    Raises :class:`~hub.core.secrets_box.SecretsBoxError` if the sealed key does not open.
    """
    if key_sealed is not None:
        return secrets.decrypt(bytes(key_sealed), device_key_context(device_id))
    if key is None:  # the migration's CHECK makes this impossible; say so rather than verify with b""
        raise ValueError(f"device {device_id!r} has no key stored")
    return bytes(key)  # an Ed25519 public key, or an HMAC key written before migration 0025 not sealed yet


async def load_devices(db: Database, device_ids: list[str] | None = None) -> list[DeviceRecord]:
    """The registered devices (all if ``device_ids`` is None), revoked ones included.

    HMAC keys are opened here, once per load, so verifying an event never pays for AES-GCM.
    """
    rows = await db.fetch(
        "SELECT id, room_id, kind, alg, key, key_sealed, revoked_at IS NOT NULL AS revoked FROM devices"
        " WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        device_ids,
    )
    return [DeviceRecord(r["id"], r["room_id"], r["kind"], r["alg"],
                         opened_device_key(db.secrets, r["id"], r["key"], r["key_sealed"]), r["revoked"])
            for r in rows]


async def device_rooms(db: Database) -> dict[str, str]:
    """Every device not revoked, with its room (what a partition's subscriptions are made of):
    one light query, no keys opened."""
    rows = await db.fetch("SELECT id, room_id FROM devices WHERE revoked_at IS NULL")
    return {r["id"]: r["room_id"] for r in rows}


MQTT_ACCOUNTS_SQL = (
    "SELECT d.id, d.mqtt_username, d.mqtt_password_hash, q.until FROM devices d"
    " LEFT JOIN device_quarantines q ON q.device_id = d.id AND q.released_at IS NULL AND q.until > now()"
    " WHERE d.mqtt_username IS NOT NULL AND d.revoked_at IS NULL ORDER BY d.mqtt_username"
)


def mqtt_account_rows(rows: Sequence[asyncpg.Record]) -> list[MqttAccountRow]:
    """:data:`MQTT_ACCOUNTS_SQL`'s rows as records (for a caller that runs it on a connection of its own)."""
    return [MqttAccountRow(r["id"], r["mqtt_username"], r["mqtt_password_hash"], r["until"]) for r in rows]


async def with_mqtt_accounts_locked(db: Database, write: Callable[[list[MqttAccountRow]], None]) -> int:
    """Read the broker accounts and call ``write(accounts)`` in one transaction holding the
    broker files' advisory lock (``MOSQUITTO_FILES_LOCK``): across every hub process, one render
    and write at a time, each from the registry as it is then. ``write`` runs in a worker
    thread (it writes and fsyncs files: on the connection's event loop it would stall the hub's
    one thread). Returns the number of accounts."""

    async def locked(conn: asyncpg.Connection) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MOSQUITTO_FILES_LOCK)
        accounts = mqtt_account_rows(await conn.fetch(MQTT_ACCOUNTS_SQL))
        await asyncio.get_running_loop().run_in_executor(None, write, accounts)
        return len(accounts)

    return await db.run(locked, transaction=True)


async def mqtt_accounts(db: Database) -> list[MqttAccountRow]:
    """The broker accounts of every device that has one and is not revoked, by username,
    each with the end of its quarantine if one is in force (by the database's clock)."""
    return mqtt_account_rows(await db.fetch(MQTT_ACCOUNTS_SQL))
