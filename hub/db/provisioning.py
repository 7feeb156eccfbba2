"""Device provisioning: register, rotate, revoke, and the registry's admin view. The one use case
behind both front doors, the web page/API (web/routes/provisioning.py) and ``campushub devices``
(hub/app/devices_cli.py), with the storage it needs.

Each operation checks the request against the registry's rules, generates
the credentials (``hub.domain.credentials``), stores the change with who made
it (``registered_by``, ``rotated_by``, ``revoked_by``; one transaction each,
in the private ``_insert_device``, ``_store_rotation`` and ``_store_revocation``),
builds the edge agent's config, and then tells whoever must follow the
registry: the front door passes ``devices_changed`` (the web:
``WebContext.devices_changed``, i.e. the running hub's ingress and the
broker's files, hub/app/provisioning.py; the CLI: the broker's files).
Credentials are returned once, in :class:`IssuedCredentials`; the database
keeps only what the hub verifies with. The hub's own reading of the registry
(rooms, keys, broker accounts) is hub/db/device_registry.py.

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`. Each store is one transaction (cancelling rolls it back);
``devices_changed`` is awaited only after it committed, so a front door that
is cancelled between the two leaves a committed change the hub learns of on
its next registry refresh (hub/pipeline/ingress.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Sequence

import asyncpg

from hub.domain.credentials import ALGORITHMS, DeviceCredentials, edge_agent_toml, new_device_credentials, new_signing_keys

from ._pool import Database
from .deployment import HUB_CLIENT_ID_PREFIX
from .device_registry import stored_device_key
from .paging import Page
from .sealed_secrets import hub_signing_key_context
from .security_audit import record

DEVICE_KINDS = ("qr_camera", "fingerprint", "sensor", "edge_agent")


class RegistryError(Exception):
    """A registry change that cannot be made: ``code`` is ``not_found``, ``conflict`` or ``invalid_request``."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class DeviceRegistryRow:
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


_COLUMNS = (
    "id, room_id, kind, model, alg, mqtt_username, credential_version, created_at, registered_by,"
    " rotated_at, rotated_by, revoked_at, revoked_by, revoked_reason"
)


def _row(r: asyncpg.Record) -> DeviceRegistryRow:
    return DeviceRegistryRow(
        r["id"], r["room_id"], r["kind"], r["model"], r["alg"], r["mqtt_username"], r["credential_version"],
        r["created_at"], r["registered_by"], r["rotated_at"], r["rotated_by"], r["revoked_at"],
        r["revoked_by"], r["revoked_reason"],
    )


async def _insert_device(
    db: Database, *, device_id: str, room_id: str, kind: str, model: str, alg: str, key: bytes,
    mqtt_username: str, mqtt_password_hash: str, actor: str,
) -> DeviceRegistryRow:
    """Insert a new device with its verification key and broker account.

    Raises :class:`RegistryError`: ``conflict`` if the id or MQTT username is
    taken (a revoked device keeps its id: ids are never reused, so old events
    stay attributable), ``invalid_request`` (field ``room_id``) for an unknown room.
    """

    async def work(conn: asyncpg.Connection) -> DeviceRegistryRow:
        if await conn.fetchval("SELECT 1 FROM rooms WHERE id = $1", room_id) is None:
            raise RegistryError("invalid_request", f"No room {room_id!r}.", "room_id")
        row = await conn.fetchrow(
            "INSERT INTO devices (id, room_id, kind, model, alg, key, key_sealed, mqtt_username, mqtt_password_hash,"
            " registered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            device_id, room_id, kind, model, alg, *stored_device_key(db.secrets, device_id, alg, key),
            mqtt_username, mqtt_password_hash, actor,
        )
        if row is None:
            raise RegistryError("conflict", f"A device {device_id!r} (or that MQTT username) already exists.",
                                "device_id")
        registered = _row(row)
        await record(conn, actor=actor, action="registered", entity="device", entity_id=device_id,
                     after=_audited(registered))
        return registered

    return await db.run(work, transaction=True)


async def _store_rotation(
    db: Database, device_id: str, *, key: bytes, mqtt_password_hash: str, mqtt_username: str, actor: str,
) -> DeviceRegistryRow:
    """Replace a device's key and broker password; the old ones stop working at once.

    ``mqtt_username`` is set only for a device that had no broker account
    yet. Raises :class:`RegistryError` ``not_found``, or ``conflict`` for a
    revoked device (revocation is final: register a new device instead).
    """

    async def work(conn: asyncpg.Connection) -> DeviceRegistryRow:
        current = await conn.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1 FOR UPDATE", device_id)
        if current is None:
            raise RegistryError("not_found", f"No device {device_id!r}.")
        if current["revoked_at"] is not None:
            raise RegistryError("conflict", f"Device {device_id!r} is revoked; register a new device instead.")
        try:
            row = await conn.fetchrow(
                "UPDATE devices SET key = $2, key_sealed = $3, mqtt_password_hash = $4,"
                " mqtt_username = coalesce(mqtt_username, $5), credential_version = credential_version + 1,"
                f" rotated_at = now(), rotated_by = $6 WHERE id = $1 RETURNING {_COLUMNS}",
                device_id, *stored_device_key(db.secrets, device_id, current["alg"], key),
                mqtt_password_hash, mqtt_username, actor,
            )
        except asyncpg.UniqueViolationError:
            raise RegistryError("conflict", f"The MQTT username {mqtt_username!r} is taken.") from None
        rotated = _row(row)
        await record(conn, actor=actor, action="rotated", entity="device", entity_id=device_id,
                     before=_audited(_row(current)), after=_audited(rotated))
        return rotated

    return await db.run(work, transaction=True)


async def _store_revocation(db: Database, device_id: str, *, actor: str, reason: str) -> DeviceRegistryRow:
    """Revoke a device for good (idempotent: revoking again changes nothing and returns the row).

    Its events are rejected as ``revoked_device``, its broker account leaves
    the generated password file, and its pending or sent commands fail.
    Raises :class:`RegistryError` ``not_found``.
    """

    async def work(conn: asyncpg.Connection) -> DeviceRegistryRow:
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
        failed = await conn.fetchval(
            "WITH failed AS (UPDATE device_commands SET status = 'failed', detail = 'device revoked',"
            " updated_at = now() WHERE device_id = $1 AND status IN ('pending', 'sent') RETURNING 1)"
            " SELECT count(*) FROM failed",
            device_id,
        )
        revoked = _row(row)
        before = dict(_audited(revoked), revoked=False)
        await record(conn, actor=actor, action="revoked", entity="device", entity_id=device_id,
                     before=before, after=dict(_audited(revoked), commands_failed=failed), reason=reason)
        return revoked

    return await db.run(work, transaction=True)


def _audited(device: DeviceRegistryRow) -> dict[str, object]:
    """What the audit log keeps of a device: never its key or its broker password's hash (the
    registry row holds neither), only what says which credentials it had and whether it works."""
    return {"room_id": device.room_id, "kind": device.kind, "model": device.model, "alg": device.alg,
            "mqtt_username": device.mqtt_username, "credential_version": device.credential_version,
            "revoked": device.revoked_at is not None}


async def get_registered_device(db: Database, device_id: str) -> DeviceRegistryRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
    return None if row is None else _row(row)


async def list_registered_devices(db: Database, limit: int, offset: int) -> Page[DeviceRegistryRow]:
    """One page of the registry, by id, and the total count."""

    async def work(conn: asyncpg.Connection) -> Page[DeviceRegistryRow]:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM devices ORDER BY id LIMIT $1 OFFSET $2", limit, offset)
        return Page([_row(r) for r in rows], await conn.fetchval("SELECT count(*) FROM devices"))

    return await db.run(work)


async def room_ids(db: Database) -> list[tuple[str, str]]:
    """``(id, label)`` of every room, for the registration form's picker: the label is the room's name and
    building (names repeat across buildings; ids are never shown)."""
    rows = await db.fetch("SELECT id, name, building FROM rooms ORDER BY building, name, id")
    return [(r["id"], f"{r['name']} ({r['building']})") for r in rows]


async def hub_signing_key(db: Database, candidate_seed: bytes, candidate_public: bytes) -> tuple[bytes, bytes]:
    """The hub's Ed25519 ``(seed, public key)``; stores the candidate if there is none yet.

    Every hub of a deployment gets the same key (the first one stored wins),
    so devices keep verifying commands across hub restarts and replicas.
    """

    context = hub_signing_key_context("ed25519")

    async def work(conn: asyncpg.Connection) -> tuple[bytes, bytes]:
        await conn.execute(
            "INSERT INTO hub_signing_keys (alg, private_key_sealed, public_key) VALUES ('ed25519', $1, $2)"
            " ON CONFLICT (alg) DO NOTHING",
            db.secrets.encrypt(candidate_seed, context), candidate_public,
        )
        row = await conn.fetchrow(
            "SELECT private_key, private_key_sealed, public_key FROM hub_signing_keys WHERE alg = 'ed25519'")
        if row["private_key_sealed"] is None:  # stored before migration 0025 and not sealed yet
            return bytes(row["private_key"]), bytes(row["public_key"])
        return db.secrets.decrypt(bytes(row["private_key_sealed"]), context), bytes(row["public_key"])

    return await db.run(work, transaction=True)

#: As the wire format's DeviceId (schemas/_envelope.py); also safe in Mosquitto's files.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_MODEL, MAX_ROOM_ID, MAX_REASON = 128, 128, 500

#: Told the ids of devices just registered, rotated or revoked (after the commit).
DevicesChanged = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(frozen=True)
class EdgeAgentSetup:
    """What a new edge-agent config needs besides the device: the broker as devices reach it
    (without credentials) and the topic prefix."""

    mqtt_url: str
    topic_prefix: str


@dataclass(frozen=True)
class IssuedCredentials:
    """A registration's or rotation's result. ``credentials`` (the signing key, the MQTT password)
    exist only here: show them once."""

    device: DeviceRegistryRow
    credentials: DeviceCredentials
    #: The Ed25519 key the hub signs this device's commands with (ed25519 devices), else None.
    hub_public_key: bytes | None
    edge_agent_toml: str


def _text(value: str, field: str, limit: int) -> str:
    if len(value) > limit or "\x00" in value:
        raise RegistryError("invalid_request", f"'{field}' must be a string of at most {limit} characters.", field)
    return value


def _choice(value: str, field: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise RegistryError("invalid_request", f"'{field}' must be one of: {', '.join(choices)}.", field)
    return value


async def _issue(db: Database, row: DeviceRegistryRow, credentials: DeviceCredentials,
                 setup: EdgeAgentSetup) -> IssuedCredentials:
    hub_public: bytes | None = None
    if credentials.keys.alg == "ed25519":
        candidate = new_signing_keys("ed25519")
        _, hub_public = await hub_signing_key(db, candidate.device_key, candidate.stored_key)
    toml = edge_agent_toml(device_id=row.device_id, room_id=row.room_id, credentials=credentials,
                           mqtt_url=setup.mqtt_url, topic_prefix=setup.topic_prefix, hub_public_key=hub_public)
    return IssuedCredentials(row, credentials, hub_public, toml)


async def register(
    db: Database, *, device_id: str, room_id: str, kind: str, model: str = "", alg: str = "hmac-sha256",
    actor: str, setup: EdgeAgentSetup, devices_changed: DevicesChanged,
) -> IssuedCredentials:
    """Register a new device with fresh credentials.

    Raises :class:`RegistryError`: ``invalid_request`` (``field`` set) for a
    malformed id, an unknown kind, algorithm or room, an over-long model;
    ``conflict`` if the id or its MQTT username is taken (ids are never reused).
    """
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise RegistryError("invalid_request", "'device_id': 1-64 letters, digits, '_', '.' or '-', starting with"
                            " a letter or digit.", "device_id")
    if device_id.lower().startswith(HUB_CLIENT_ID_PREFIX):
        # A device's id is its broker username and client id: this one could take over one of the
        # hub's own MQTT sessions (a partition's, the live bus's) and read what is queued there.
        raise RegistryError("invalid_request", f"'device_id': ids starting with {HUB_CLIENT_ID_PREFIX!r} are"
                            " reserved for the hub's own MQTT sessions.", "device_id")
    _choice(kind, "kind", DEVICE_KINDS)
    _choice(alg, "alg", ALGORITHMS)
    _text(model, "model", MAX_MODEL)
    _text(room_id, "room_id", MAX_ROOM_ID)
    credentials = new_device_credentials(device_id, alg)
    row = await _insert_device(
        db, device_id=device_id, room_id=room_id, kind=kind, model=model, alg=alg,
        key=credentials.keys.stored_key, mqtt_username=credentials.mqtt.username,
        mqtt_password_hash=credentials.mqtt.password_hash, actor=actor,
    )
    await devices_changed([device_id])
    return await _issue(db, row, credentials, setup)


async def rotate(
    db: Database, device_id: str, *, actor: str, setup: EdgeAgentSetup, devices_changed: DevicesChanged,
) -> IssuedCredentials:
    """New key and broker password for a device; the old ones stop working at once.

    Raises :class:`RegistryError` ``not_found``, or ``conflict`` for a revoked device.
    """
    current = await get_registered_device(db, device_id)
    if current is None:
        raise RegistryError("not_found", f"No device {device_id!r}.")
    credentials = new_device_credentials(current.mqtt_username or device_id, current.alg)
    row = await _store_rotation(
        db, device_id, key=credentials.keys.stored_key, mqtt_password_hash=credentials.mqtt.password_hash,
        mqtt_username=credentials.mqtt.username, actor=actor,
    )
    await devices_changed([device_id])
    return await _issue(db, row, credentials, setup)


async def revoke(
    db: Database, device_id: str, *, actor: str, reason: str = "", devices_changed: DevicesChanged,
) -> DeviceRegistryRow:
    """Revoke a device for good (revoking again changes nothing and returns the row).

    Raises :class:`RegistryError` ``not_found``, ``invalid_request`` (field
    ``reason``) for an over-long reason.
    """
    _text(reason, "reason", MAX_REASON)
    row = await _store_revocation(db, device_id, actor=actor, reason=reason)
    await devices_changed([device_id])
    return row
