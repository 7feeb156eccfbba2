"""Fixtures of the hostile-input tests: the real hub of tests/hub, plus an Ed25519 and a revoked device.

The hub fixtures (``hub``, ``hub_settings``, ``test_db``, ``publisher``) are
those of tests/support/hub_fixtures.py, so every directory runs the very same
hub; ``hub_campus`` is overridden to add two devices to the
seeded campus *before* the hub starts (the ingress loads its registry at boot).
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.campus import Campus, DeviceCredentials
from hub.core.config import Settings
from hub.db import run_with_database
from hub.db.seed import ensure_campus


@dataclass(frozen=True)
class HostileCampus:
    campus: Campus
    #: Ed25519 device in the room of ``campus.sessions[0]`` (signing_key = its private seed).
    ed25519: DeviceCredentials
    #: An HMAC device whose registration was revoked.
    revoked: DeviceCredentials
    #: A command sent to the Ed25519 device, awaiting its acknowledgement.
    ed25519_command: uuid.UUID


@pytest.fixture
def hub_settings(hub_settings: Settings) -> Settings:
    """The shared hub settings, keeping every rejection as a row: the MQTT corpus expects exactly one
    row per message. The per-source cap a minute is tested in tests/hub/test_bounded_intake.py."""
    return dataclasses.replace(hub_settings, rejections_kept_per_minute=100_000)


@pytest.fixture
def hostile_campus(hub_settings: Settings) -> HostileCampus:
    now = datetime.now(timezone.utc)

    async def seed(db) -> HostileCampus:
        campus = await ensure_campus(db, rooms=2, students=12, now=now)
        room = campus.sessions[0].room_id
        seed_bytes = os.urandom(32)
        public = Ed25519PrivateKey.from_private_bytes(seed_bytes).public_key().public_bytes_raw()
        ed = DeviceCredentials("hostile-ed25519", room, "qr_camera", "ed25519", seed_bytes)
        revoked = DeviceCredentials("hostile-revoked", room, "qr_camera", "hmac-sha256", os.urandom(32))
        await db.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'qr_camera', 'ed25519', $3)",
            ed.device_id, room, public)
        await db.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key, revoked_at)"
            " VALUES ($1, $2, 'qr_camera', 'hmac-sha256', $3, now())",
            revoked.device_id, room, revoked.signing_key)
        command = uuid.uuid4()
        await db.execute(
            "INSERT INTO device_commands (id, device_id, name, status, ttl_s, ack_timeout_s, issued_by, sent_at,"
            " expires_at) VALUES ($1, $2, 'time_sync', 'sent', 3600, 3600, 'usr-admin', now(),"
            " now() + interval '1 hour')",
            command, ed.device_id)
        return HostileCampus(campus, ed, revoked, command)

    return run_with_database(hub_settings.database_url, seed)


@pytest.fixture
def hub_campus(hostile_campus: HostileCampus) -> Campus:
    return hostile_campus.campus
