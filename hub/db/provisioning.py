"""Device provisioning: register, rotate, revoke. The one use case behind both front doors,
the web page/API (web/routes/devices_admin.py) and ``campushub devices`` (hub/app/devices_cli.py).

Each operation checks the request against the registry's rules, generates
the credentials (``hub.domain.credentials``), stores the change with who made
it (``hub.db.devices_admin``: ``registered_by``, ``rotated_by``,
``revoked_by``), builds the edge agent's config, and then tells whoever must
follow the registry: the front door passes ``devices_changed`` (the web:
``WebContext.devices_changed``, i.e. the running hub's ingress and the
broker's files, hub/app/provisioning.py; the CLI: the broker's files).
Credentials are returned once, in :class:`IssuedCredentials`; the database
keeps only what the hub verifies with.

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`. Each store is one transaction; ``devices_changed`` is
awaited only after it committed, so a front door that is cancelled between
the two leaves a committed change the hub learns of on its next registry
refresh (hub/pipeline/ingress.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from hub.domain.credentials import ALGORITHMS, DeviceCredentials, edge_agent_toml, new_device_credentials, new_signing_keys

from ._pool import Database
from .devices_admin import (
    DEVICE_KINDS,
    DeviceAdminRow,
    RegistryError,
    get_device_admin,
    hub_signing_key,
    register_device,
    revoke_device,
    rotate_credentials,
)

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

    device: DeviceAdminRow
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


async def _issue(db: Database, row: DeviceAdminRow, credentials: DeviceCredentials,
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
    _choice(kind, "kind", DEVICE_KINDS)
    _choice(alg, "alg", ALGORITHMS)
    _text(model, "model", MAX_MODEL)
    _text(room_id, "room_id", MAX_ROOM_ID)
    credentials = new_device_credentials(device_id, alg)
    row = await register_device(
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
    current = await get_device_admin(db, device_id)
    if current is None:
        raise RegistryError("not_found", f"No device {device_id!r}.")
    credentials = new_device_credentials(current.mqtt_username or device_id, current.alg)
    row = await rotate_credentials(
        db, device_id, key=credentials.keys.stored_key, mqtt_password_hash=credentials.mqtt.password_hash,
        mqtt_username=credentials.mqtt.username, actor=actor,
    )
    await devices_changed([device_id])
    return await _issue(db, row, credentials, setup)


async def revoke(
    db: Database, device_id: str, *, actor: str, reason: str = "", devices_changed: DevicesChanged,
) -> DeviceAdminRow:
    """Revoke a device for good (revoking again changes nothing and returns the row).

    Raises :class:`RegistryError` ``not_found``, ``invalid_request`` (field
    ``reason``) for an over-long reason.
    """
    _text(reason, "reason", MAX_REASON)
    row = await revoke_device(db, device_id, actor=actor, reason=reason)
    await devices_changed([device_id])
    return row
