"""Fixtures of the web tests: a small world of unique rows, a WebContext with a movable clock, a test client.

Builds on the shared ``db`` fixture (tests/conftest.py): every test inserts
its own users, courses, sessions and devices with a unique suffix, so tests
never depend on (or disturb) each other's rows in the run's shared database.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import pytest
from quart_trio import QuartTrio
from web_helpers import JWT_SECRET, PASSWORD

from hub.core.bus import LiveBus
from hub.core.passwords import hash_password
from hub.db import Database
from hub.db.sealed_secrets import token_secret_context
from web import WebContext, create_app


@lru_cache(maxsize=1)
def password_hash() -> str:
    # One argon2 hash for every test user: hashing costs ~50 ms each.
    return hash_password(PASSWORD)


class Clock:
    """The app's wall clock, movable by tests (tokens, QR windows)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    suffix: str
    now: datetime
    users: dict[str, str] = field(default_factory=dict)  # key -> user id (username = id)
    secrets: dict[str, bytes] = field(default_factory=dict)
    room: str = ""
    courses: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    device: str = ""
    reasons: dict[str, str] = field(default_factory=dict)

    def username(self, key: str) -> str:
        return self.users[key]


async def build_world(db: Database, now: datetime) -> World:
    """admin, ops, fac1 (teaches c1), fac2 (teaches c2), stu1 (c1 + c2), stu2 (c1), stu3 (c2).

    Sessions: ``live1`` (c1, started 5 min ago), ``live2`` (c2, live),
    ``past1`` (c1, two days ago, over). stu1 is present in live1 and past1.
    One device (online) in the room; rejections: 3 x ``bad_sig_<sfx>``, 1 x ``too_big_<sfx>``.
    """
    sfx = uuid.uuid4().hex[:10]
    w = World(sfx, now)
    roles = {"admin": "admin", "ops": "ops", "fac1": "faculty", "fac2": "faculty",
             "stu1": "student", "stu2": "student", "stu3": "student"}
    for key in roles:
        w.users[key] = f"{key}_{sfx}"
    for key in ("stu1", "stu2", "stu3"):
        w.secrets[key] = os.urandom(32)
    w.room = f"room_{sfx}"
    w.courses = {"c1": f"c1_{sfx}", "c2": f"c2_{sfx}"}
    w.sessions = {"live1": f"live1_{sfx}", "live2": f"live2_{sfx}", "past1": f"past1_{sfx}"}
    w.device = f"dev_{sfx}"
    w.reasons = {"bad_sig": f"bad_sig_{sfx}", "too_big": f"too_big_{sfx}"}
    pw = password_hash()

    async def work(conn) -> None:
        await conn.executemany(
            "INSERT INTO users (id, username, display_name, role, password_hash) VALUES ($1, $1, $2, $3, $4)",
            [(w.users[k], f"{k.title()} {sfx}", role, pw) for k, role in roles.items()],
        )
        await conn.executemany(  # the token secret sealed with the campus key, as the hub stores it
            "INSERT INTO students (id, roll_number, token_secret_sealed) VALUES ($1, $2, $3)",
            [(w.users[k], f"R-{k}-{sfx}", db.secrets.encrypt(w.secrets[k], token_secret_context(w.users[k])))
             for k in ("stu1", "stu2", "stu3")],
        )
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ($1, $2, 'Main')", w.room, f"Room {sfx}")
        await conn.executemany(
            "INSERT INTO courses (id, code, title, faculty_id) VALUES ($1, $2, $3, $4)",
            [(w.courses["c1"], f"C1-{sfx}", "Networks", w.users["fac1"]),
             (w.courses["c2"], f"C2-{sfx}", "Databases", w.users["fac2"])],
        )
        await conn.executemany(
            "INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
            [(w.courses["c1"], w.users["stu1"]), (w.courses["c1"], w.users["stu2"]),
             (w.courses["c2"], w.users["stu1"]), (w.courses["c2"], w.users["stu3"])],
        )
        await conn.executemany(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(w.sessions["live1"], w.courses["c1"], w.room, now - timedelta(minutes=5), now + timedelta(minutes=55), "open"),
             (w.sessions["live2"], w.courses["c2"], w.room, now - timedelta(minutes=5), now + timedelta(minutes=55), "open"),
             (w.sessions["past1"], w.courses["c1"], w.room, now - timedelta(days=2),
              now - timedelta(days=2) + timedelta(hours=1), "closed")],
        )
        await conn.executemany(
            "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source) VALUES ($1, $2, $3, $4, 'qr')",
            [(w.sessions["live1"], w.users["stu1"], "present", now - timedelta(minutes=4)),
             (w.sessions["past1"], w.users["stu1"], "present", now - timedelta(days=2))],
        )
        await conn.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'qr_camera', 'hmac-sha256', $3)",
            w.device, w.room, os.urandom(32),
        )
        await conn.execute(
            "INSERT INTO device_health (device_id, online, last_seen, last_change, firmware, outbox_depth)"
            " VALUES ($1, true, $2, $2, '1.2.3', 0)",
            w.device, now,
        )
        await conn.executemany(
            "INSERT INTO rejected_events (dedup_key, device_id, topic, reason, detail, payload, received_at)"
            " VALUES ($1, $2, 'campushub/x', $3, 'test', $4, $5)",
            [(os.urandom(16), w.device, w.reasons["bad_sig"], b"abc", now - timedelta(seconds=i)) for i in range(3)]
            + [(os.urandom(16), w.device, w.reasons["too_big"], b"abcdef", now)],
        )

    await db.run(work, transaction=True)
    return w


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def world(db: Database, clock: Clock) -> World:
    return await build_world(db, datetime.fromtimestamp(clock.now, timezone.utc))


class Health:
    def __init__(self) -> None:
        self.body = {"status": "ok", "database": "ok"}

    async def __call__(self) -> dict:
        return self.body


@pytest.fixture
def bus() -> LiveBus:
    return LiveBus()


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def ctx(db: Database, bus: LiveBus, clock: Clock, health: Health) -> WebContext:
    return WebContext(
        db=db, bus=bus, jwt_secret=JWT_SECRET, connections=None, health=health,
        metrics_text=lambda: "# HELP campushub_up Up.\n# TYPE campushub_up gauge\ncampushub_up 1.0\n",
        now=clock,
        # MFA optional for every role, so the seeded admin and ops log in with a password only;
        # tests/web/test_mfa*.py require it as `serve` does.
        mfa_required_roles=frozenset(),
    )


@pytest.fixture
def app(ctx: WebContext) -> QuartTrio:
    return create_app(ctx)


@pytest.fixture
def client(app: QuartTrio):
    return app.test_client()
