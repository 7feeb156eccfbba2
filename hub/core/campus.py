"""Plain descriptions of a seeded campus, shared by the seeder, the simulator and the demo."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: str
    room_id: str
    kind: str
    alg: str  # "hmac-sha256" or "ed25519"
    #: HMAC secret, or Ed25519 private seed (32 bytes): what the device signs with.
    signing_key: bytes


@dataclass(frozen=True)
class StudentCredentials:
    student_id: str
    username: str
    token_secret: bytes


@dataclass(frozen=True)
class LiveSession:
    session_id: str
    course_id: str
    room_id: str
    starts_at: datetime
    ends_at: datetime
    grace_minutes: int
    enrolled: tuple[str, ...]


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str


@dataclass(frozen=True)
class Campus:
    devices: tuple[DeviceCredentials, ...]
    students: tuple[StudentCredentials, ...]
    sessions: tuple[LiveSession, ...]
    logins: tuple[DemoLogin, ...]
