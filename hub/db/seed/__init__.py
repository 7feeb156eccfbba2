"""The demo campus: seed it once, find it again, keep a class running in every room.

Every seeded row has a deterministic id (``room-001``, ``stu-0001``,
``dev-room-001``...), so :func:`ensure_campus` can run on every start of the
demo (or every test session): it creates what is missing, never duplicates,
and returns the credentials the simulator and the tests need. Secrets
(students' token secrets, device keys) are random and created once; later
calls read them back.

Concurrency contract: :func:`ensure_campus` blocks the calling trio task for
one argon2 hash in a worker thread (only when users must be created) and two
database round trips; the writes run in one transaction under an advisory
lock, so concurrent callers (two hubs, two test workers) serialise and
neither sees a half-seeded campus. Cancelling it rolls the transaction back.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import asyncpg
import trio

from hub.core.campus import Campus, DemoLogin, DeviceCredentials, LiveSession, StudentCredentials
from hub.core.passwords import hash_password
from hub.core.secrets_box import SecretsBox
from hub.domain.credentials import mosquitto_hash

from .._pool import Database
from ..device_registry import opened_device_key, stored_device_key
from ..sealed_secrets import token_secret_context
from ..students import opened_token_secret
from ..users import new_token_secret
from .academic import ensure_academic_demo
from .assessments import ensure_assessments_demo
from .assignments import ensure_assignments_demo
from .console import ensure_console_demo
from .device_health import ensure_health_demo
from .grades import ensure_grades_demo
from .provisioning import seed_command_history
from .records import ensure_records_demo
from .syllabus import ensure_syllabus_demo

DEMO_PASSWORD = "campushub"
#: A new session starts this long before ``now`` (inside the default 10 min grace: scans are on time)...
SESSION_LEAD = timedelta(minutes=5)
#: ...and lasts this long.
SESSION_LENGTH = timedelta(hours=1)
#: Courses per room: room ``n`` teaches ``room_course(n, 0..)``, one at a time. Each
#: student belongs to one room's cohort and takes both of its courses, so nobody is due in two rooms at
#: once; each faculty member teaches one room's courses, so nobody teaches two live classes at once.
COURSES_PER_STUDENT = 2
DEVICE_KIND = "edge_agent"
DEVICE_ALG = "hmac-sha256"
DEVICE_MODEL = "campushub-edge-agent"

ADMIN_ID, ADMIN_USERNAME = "usr-admin", "admin"
OPS_ID, OPS_USERNAME = "usr-ops", "ops"
# Not an id of any meaning: only needs to differ from other advisory locks (migrate uses 'CAMP').
_SEED_LOCK = 0x53454544  # 'SEED'
_LIVE = ("scheduled", "open")

_BUILDINGS = ("Turing Hall", "Hopper Building", "Lovelace Centre", "Noether Wing", "Shannon Block")
_SUBJECTS = (
    "Algorithms", "Databases", "Operating Systems", "Networks", "Compilers",
    "Linear Algebra", "Statistics", "Distributed Systems", "Security", "Machine Learning",
)
_FIRST = ("Asha", "Ben", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jun",
          "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara")
#: Faculty first names: none is a student's (``_FIRST``), so no faculty member shares a student's name.
_FACULTY_FIRST = ("Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "John", "Leslie", "Margaret",
                  "Niklaus", "Radia", "Shafi", "Tony", "Vint", "Yukihiro")
_LAST = ("Adams", "Bose", "Costa", "Diaz", "Eze", "Fischer", "Gupta", "Haddad", "Ito", "Jensen",
         "Kim", "Lopez", "Mensah", "Novak", "Okafor", "Petrov", "Rao", "Silva", "Tanaka", "Weber")


# Deterministic ids. The widths are minimums, so ids stay unique past 999 rooms.
def room_id(n: int) -> str:
    return f"room-{n:03d}"


def device_id(n: int) -> str:
    return f"dev-{room_id(n)}"


def seeded_broker_password(signing_key: bytes) -> str:
    """The broker password of a seeded device, derived from its HMAC key.

    The simulator reads the key from the database (it signs with it) and derives
    the password from it, so the database keeps only the password's hash and
    nothing new is secret: whoever can read the key can already sign as the device.
    """
    digest = hmac.new(signing_key, b"campushub seeded device broker password", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def course_id(n: int) -> str:
    return f"course-{n:03d}"


def faculty_id(n: int) -> str:
    return f"fac-{n:03d}"


def faculty_username(n: int) -> str:
    return f"faculty{n}"


def student_id(n: int) -> str:
    return f"stu-{n:04d}"


def student_username(n: int) -> str:
    return f"s{n:04d}"


async def ensure_campus(
    db: Database,
    *,
    rooms: int,
    students: int,
    now: datetime,
    demo_password: str = DEMO_PASSWORD,
) -> Campus:
    """Make sure the demo campus exists and has a class live in every room at ``now``; return it.

    Rooms ``1..rooms`` and students ``1..students`` (with their users,
    courses, enrolments and one edge-agent device per room) are created if
    missing; existing rows, secrets and passwords are kept. Rows of an
    earlier, bigger seed are left alone and not returned. Every returned room
    gets a class session live at ``now`` (a new one from ``SESSION_LEAD``
    before ``now`` for ``SESSION_LENGTH``, shortened or moved so it never
    overlaps another scheduled/open session of the room) unless one is
    already live.

    The returned :class:`Campus` holds: the seeded, non-revoked devices; the
    returned students' credentials; one live session per room whose
    ``enrolled`` lists the returned students enrolled in its course (so for
    any returned student, membership is exact); and one demo login per role.
    ``demo_password`` is only used for users this call creates: the logins
    report it, so keep it the same across calls.
    """
    if rooms < 1 or students < 0:
        raise ValueError(f"need rooms >= 1 and students >= 0, got {rooms=}, {students=}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(timezone.utc)  # asyncpg hands timestamptz back in UTC: compare like with like
    plan = _Plan(rooms, students)
    missing = await db.fetchval(
        "SELECT $1::int - count(*) FROM users WHERE id = ANY($2::text[])",
        len(plan.user_ids), plan.user_ids,
    )
    password_hash = None
    if missing:
        # argon2 is ~50 ms of CPU: once, off the trio thread, shared by every seeded user.
        password_hash = await trio.to_thread.run_sync(hash_password, demo_password)
    try:
        loaded = await db.run(partial(_seed_and_load, plan=plan, now=now, password_hash=password_hash,
                                      secrets=db.secrets), transaction=True)
    except _NeedPasswordHash:
        # Users vanished between the check and the transaction: hash and redo.
        password_hash = await trio.to_thread.run_sync(hash_password, demo_password)
        loaded = await db.run(partial(_seed_and_load, plan=plan, now=now, password_hash=password_hash,
                                      secrets=db.secrets), transaction=True)
    if plan.students:  # leave and correction demo requests (hub/db/seed/records.py)
        await ensure_records_demo(db, student_id=student_id(1), decider_id=ADMIN_ID, now=now)
    return _campus(loaded, plan, demo_password, db.secrets)


# The ids ensure_campus gives its users (above); an account made any other way (``campushub users``,
# the API, an import) has a random id (hub.db.users.new_user_id) that these never match.
_SEEDED_USER_ID = r"^(usr-admin|usr-ops|fac-[0-9]{3,12}|stu-[0-9]{4,12})$"


async def count_unseeded_accounts(db: Database) -> int:
    """How many accounts of this database the demo seed did not make: 0 for an empty or demo-only database.

    ``campushub simulate`` refuses to seed its campus (and its accounts) into a
    database where this is not 0: a real campus's database.
    """
    return await db.fetchval("SELECT count(*) FROM users WHERE id !~ $1", _SEEDED_USER_ID)


class _NeedPasswordHash(Exception):
    pass


@dataclass(frozen=True)
class _Plan:
    """Everything about the campus that does not involve randomness."""

    rooms: int
    students: int

    @property
    def faculty(self) -> int:
        return self.rooms  # faculty member n teaches room n's courses (room_course)

    @property
    def courses(self) -> int:
        return self.rooms * COURSES_PER_STUDENT  # room n's are room_course(n, k)

    @property
    def user_ids(self) -> list[str]:
        return [ADMIN_ID, OPS_ID, *map(faculty_id, range(1, self.faculty + 1)),
                *map(student_id, range(1, self.students + 1))]

    def users(self, password_hash: str) -> list[tuple[str, str, str, str, str]]:
        rows = [
            (ADMIN_ID, ADMIN_USERNAME, "Campus Admin", "admin", password_hash),
            (OPS_ID, OPS_USERNAME, "Operations Desk", "ops", password_hash),
        ]
        rows += [(faculty_id(n), faculty_username(n), f"Prof. {_faculty_name(n)}", "faculty", password_hash)
                 for n in range(1, self.faculty + 1)]
        rows += [(student_id(n), student_username(n), _name(n), "student", password_hash)
                 for n in range(1, self.students + 1)]
        return rows

    def rooms_rows(self) -> list[tuple[str, str, str]]:
        return [(room_id(n), f"Room {100 + n}", _BUILDINGS[(n - 1) // 10 % len(_BUILDINGS)])
                for n in range(1, self.rooms + 1)]

    def courses_rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (course_id(n), f"CH{n:03d}",
             f"{_SUBJECTS[(n - 1) % len(_SUBJECTS)]} {(n - 1) // len(_SUBJECTS) + 1}",
             faculty_id(course_room(n)))
            for n in range(1, self.courses + 1)
        ]

    def enrolments(self) -> list[tuple[str, str]]:
        """Student ``n`` takes every course of its cohort's room (``cohort_room``, ``room_course``).

        Rooms run one class at a time, so a student is never due in two places at once; with
        two rooms or more every session has enrolled and non-enrolled students to test with.
        """
        return [
            (course_id(room_course(cohort_room(n, self.rooms), k)), student_id(n))
            for n in range(1, self.students + 1)
            for k in range(COURSES_PER_STUDENT)
        ]


def cohort_room(n: int, rooms: int) -> int:
    """The room (1-based) of student ``n``'s cohort: ``n`` wrapped round ``rooms``."""
    return (n - 1) % rooms + 1


def room_course(room: int, k: int) -> int:
    """The number of room ``room``'s ``k``-th course (0-based ``k`` < ``COURSES_PER_STUDENT``)."""
    return (room - 1) * COURSES_PER_STUDENT + k + 1


def course_room(course: int) -> int:
    """The room (1-based) where course number ``course`` is taught, by its teacher (the room's)."""
    return (course - 1) // COURSES_PER_STUDENT + 1


def _name(n: int) -> str:
    return f"{_FIRST[n % len(_FIRST)]} {_LAST[(n // len(_FIRST)) % len(_LAST)]}"


def _faculty_name(n: int) -> str:
    return f"{_FACULTY_FIRST[n % len(_FACULTY_FIRST)]} {_LAST[(n // len(_FACULTY_FIRST) + 3) % len(_LAST)]}"


@dataclass(frozen=True)
class _Loaded:
    students: list[asyncpg.Record]
    devices: list[asyncpg.Record]
    sessions: list[dict[str, Any]]
    enrolments: list[asyncpg.Record]


async def _seed_and_load(
    conn: asyncpg.Connection, *, plan: _Plan, now: datetime, password_hash: str | None, secrets: SecretsBox,
) -> _Loaded:
    """The whole seed, on the asyncio side, in the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEED_LOCK)

    async def missing(table: str, ids: list[str]) -> set[str]:
        found = await conn.fetch(f"SELECT id FROM {table} WHERE id = ANY($1::text[])", ids)
        return set(ids) - {r["id"] for r in found}

    async def copy(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await conn.copy_records_to_table(table, records=rows, columns=columns)

    # Parents before children (foreign keys); COPY only what is missing.
    absent = await missing("users", plan.user_ids)
    if absent:
        if password_hash is None:
            raise _NeedPasswordHash
        await copy("users", ["id", "username", "display_name", "role", "password_hash"],
                   [row for row in plan.users(password_hash) if row[0] in absent])
    student_ids = [student_id(n) for n in range(1, plan.students + 1)]
    absent = await missing("students", student_ids)
    await copy("students", ["id", "roll_number", "token_secret_sealed"],
               [(sid, f"R{sid[4:]:0>6}", secrets.encrypt(new_token_secret(), token_secret_context(sid)))
                for sid in student_ids if sid in absent])
    rooms = plan.rooms_rows()
    absent = await missing("rooms", [r[0] for r in rooms])
    await copy("rooms", ["id", "name", "building"], [r for r in rooms if r[0] in absent])
    courses = plan.courses_rows()
    absent = await missing("courses", [c[0] for c in courses])
    await copy("courses", ["id", "code", "title", "faculty_id"], [c for c in courses if c[0] in absent])
    existing = await conn.fetch(
        "SELECT course_id, student_id FROM enrolments WHERE student_id = ANY($1::text[])", student_ids)
    have = {(r["course_id"], r["student_id"]) for r in existing}
    await copy("enrolments", ["course_id", "student_id"],
               [e for e in plan.enrolments() if e not in have])
    devices = [(device_id(n), room_id(n)) for n in range(1, plan.rooms + 1)]
    absent = await missing("devices", [d[0] for d in devices])
    await copy("devices", ["id", "room_id", "kind", "model", "alg", "key", "key_sealed"],
               [(did, rid, DEVICE_KIND, DEVICE_MODEL, DEVICE_ALG,
                 *stored_device_key(secrets, did, DEVICE_ALG, os.urandom(32)))
                for did, rid in devices if did in absent])
    # Each seeded device gets its broker account (username = device id, docs/provisioning.md), so
    # the simulator logs in as the device on a broker without anonymous access. Also fills in
    # devices seeded before seeds had accounts; a username already taken is left alone.
    unaccounted = await conn.fetch(
        "SELECT id, key, key_sealed FROM devices d WHERE id = ANY($1::text[]) AND mqtt_username IS NULL AND alg = $2"
        " AND NOT EXISTS (SELECT 1 FROM devices o WHERE o.mqtt_username = d.id)",
        [d[0] for d in devices], DEVICE_ALG)
    for row in unaccounted:
        await conn.execute("UPDATE devices SET mqtt_username = id, mqtt_password_hash = $2 WHERE id = $1",
                           row["id"], mosquitto_hash(seeded_broker_password(
                               opened_device_key(secrets, row["id"], row["key"], row["key_sealed"]))))

    await ensure_health_demo(conn, [r[0] for r in rooms])  # a threshold rule the simulator trips
    await seed_command_history(conn, device_id(1), now)  # hub/db/seed/provisioning.py
    await ensure_console_demo(conn, [r[0] for r in rooms], student_id=student_id(1) if plan.students else None,
                              faculty_id=faculty_id(1), now=now)  # hub/db/seed/console.py
    sessions = await _ensure_live_sessions(conn, [r[0] for r in rooms], now)
    await ensure_academic_demo(conn, [c[0] for c in courses], now)  # hub/db/seed/academic.py
    await ensure_syllabus_demo(conn, [c[0] for c in courses])  # hub/db/seed/syllabus.py
    await ensure_assessments_demo(conn, now)  # hub/db/seed/assessments.py: quiz, midterm, final sitting
    await ensure_assignments_demo(conn, now, secrets)  # hub/db/seed/assignments.py: graded, late, open, due soon
    await ensure_grades_demo(conn, [c[0] for c in courses])  # hub/db/seed/grades.py: credits 4/3/2

    return _Loaded(
        students=await conn.fetch(
            "SELECT s.id, u.username, s.token_secret, s.token_secret_sealed FROM students s JOIN users u USING (id)"
            " WHERE s.id = ANY($1::text[]) ORDER BY s.id", student_ids),
        devices=await conn.fetch(
            "SELECT id, room_id, kind, alg, key, key_sealed FROM devices"
            " WHERE id = ANY($1::text[]) AND revoked_at IS NULL ORDER BY id", [d[0] for d in devices]),
        sessions=sessions,
        enrolments=await conn.fetch(
            "SELECT course_id, student_id FROM enrolments"
            " WHERE course_id = ANY($1::text[]) AND student_id = ANY($2::text[])",
            list({s["course_id"] for s in sessions}), student_ids),
    )


async def _ensure_live_sessions(
    conn: asyncpg.Connection, room_ids: list[str], now: datetime
) -> list[dict[str, Any]]:
    """One session live at ``now`` per room (the latest-started if several); create those missing."""
    nearby = await conn.fetch(
        "SELECT id, course_id, room_id, starts_at, ends_at, grace_minutes, status FROM class_sessions"
        " WHERE room_id = ANY($1::text[]) AND starts_at < $2 AND ends_at > $3",
        room_ids, now + SESSION_LENGTH, now - SESSION_LEAD - timedelta(minutes=1),
    )
    by_room: dict[str, list[asyncpg.Record]] = {rid: [] for rid in room_ids}
    for row in nearby:
        by_room[row["room_id"]].append(row)
    taken_ids = {row["id"] for row in nearby}

    live: list[dict[str, Any]] = []
    new: list[tuple[Any, ...]] = []
    for n, rid in enumerate(room_ids, start=1):
        rows = by_room[rid]
        current = [r for r in rows if r["status"] in _LIVE and r["starts_at"] <= now < r["ends_at"]]
        if current:
            live.append(dict(max(current, key=lambda r: r["starts_at"])))
            continue
        # Nothing live: fit a new session between its scheduled/open neighbours.
        occupying = [r for r in rows if r["status"] in _LIVE]
        starts = (now - SESSION_LEAD).replace(second=0, microsecond=0)
        starts = max([starts, *(r["ends_at"] for r in occupying if r["ends_at"] <= now)])
        ends = min([starts + SESSION_LENGTH, *(r["starts_at"] for r in occupying if r["starts_at"] > now)])
        sid = base = f"ses-{rid}-{starts:%Y%m%dT%H%M%S}"
        suffix = 1
        while sid in taken_ids:  # e.g. a cancelled session with the same start
            suffix += 1
            sid = f"{base}-{suffix}"
        taken_ids.add(sid)
        session = {"id": sid, "course_id": course_id(room_course(n, 0)), "room_id": rid,
                   "starts_at": starts, "ends_at": ends, "grace_minutes": 10}
        new.append((sid, session["course_id"], rid, starts, ends, 10, "scheduled"))
        live.append(session)
    if new:
        await conn.copy_records_to_table(
            "class_sessions", records=new,
            columns=["id", "course_id", "room_id", "starts_at", "ends_at", "grace_minutes", "status"])
    return live


def _campus(loaded: _Loaded, plan: _Plan, demo_password: str, secrets: SecretsBox) -> Campus:
    enrolled: dict[str, list[str]] = {}
    for row in loaded.enrolments:
        enrolled.setdefault(row["course_id"], []).append(row["student_id"])
    logins = [DemoLogin("admin", ADMIN_USERNAME, demo_password),
              DemoLogin("ops", OPS_USERNAME, demo_password),
              DemoLogin("faculty", faculty_username(1), demo_password)]
    if plan.students:
        logins.append(DemoLogin("student", student_username(1), demo_password))
    return Campus(
        devices=tuple(
            DeviceCredentials(r["id"], r["room_id"], r["kind"], r["alg"],
                              opened_device_key(secrets, r["id"], r["key"], r["key_sealed"]))
            for r in loaded.devices
        ),
        students=tuple(
            StudentCredentials(r["id"], r["username"], secret) for r in loaded.students
            if (secret := opened_token_secret(secrets, r["id"], r["token_secret"], r["token_secret_sealed"]))
        ),
        sessions=tuple(
            LiveSession(
                session_id=s["id"], course_id=s["course_id"], room_id=s["room_id"],
                starts_at=s["starts_at"], ends_at=s["ends_at"], grace_minutes=s["grace_minutes"],
                enrolled=tuple(sorted(enrolled.get(s["course_id"], ()))),
            )
            for s in sorted(loaded.sessions, key=lambda s: s["room_id"])
        ),
        logins=tuple(logins),
    )
