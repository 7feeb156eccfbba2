"""A student with personal data in every holding of the personal data map, and another student beside them.

Built through the hub's own functions wherever one exists (accounts, attendance with its audit
entries, leave with a document, corrections, condonation, flags with their notifications,
webhook copies), so the rows look like the real ones: names and roll numbers end up where the
hub puts them (notifications to faculty, audit before/after), which is what erasure must find.
Every marker text is unique per world (``sfx``), so a dump of a shared database can be scanned.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.records import CheckinFlagRow
from hub.db import Database
from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.checkin import announce_flags, insert_flags
from hub.db.condonation import create_application
from hub.db.corrections import request_correction
from hub.db.leave import NewDocument, apply_for_leave
from hub.db.notifications import NewNotification, add_notifications
from hub.db.users import NewAccount, create_user, deactivate_user
from hub.db.webhooks import create_subscription

#: A small valid PDF (the leave rules check the magic bytes).
PDF_HEAD = b"%PDF-1.4\n"


@dataclass
class Person:
    id: str
    username: str
    name: str
    email: str
    roll_number: str
    #: Free text this person wrote (leave reason, correction reason, condonation reason).
    texts: list[str] = field(default_factory=list)
    document: bytes = b""


@dataclass
class PrivacyWorld:
    sfx: str
    admin: str
    faculty: str
    course: str
    sessions: list[str]
    target: Person
    other: Person
    usernames: dict[str, str] = field(default_factory=dict)

    def markers(self, who: Person) -> list[str]:
        """What must not be found anywhere once ``who`` is erased."""
        return [who.name, who.email, who.roll_number, *who.texts]


async def build_privacy_world(db: Database, now: datetime, *, webhook: bool = True,
                              password_hash: str | None = None) -> PrivacyWorld:
    """``password_hash``: every account's (so the web tests can log in); None: no password."""
    sfx = uuid.uuid4().hex[:10]
    admin = await create_user(db, NewAccount(f"adm{sfx}", f"Admin {sfx}", "admin", password_hash=password_hash),
                              actor="test")
    faculty = await create_user(db, NewAccount(f"fac{sfx}", f"Faculty {sfx}", "faculty",
                                               password_hash=password_hash), actor="test")

    async def student(first: str) -> Person:
        name = f"{first} Privacytest{sfx}"
        email = f"{first.lower()}.{sfx}@example.org"
        roll = f"RP{first[:3].upper()}{sfx}"
        made = await create_user(db, NewAccount(f"{first.lower()}{sfx}", name, "student", email=email,
                                                roll_number=roll, program="B.Tech CSE", section="A",
                                                password_hash=password_hash),
                                 actor=admin.id)
        return Person(made.id, made.username, name, email, roll)

    target, other = await student("Quenby"), await student("Ottoline")
    course = f"pc_{sfx}"
    room = f"pr_{sfx}"
    sessions = [f"ps{i}_{sfx}" for i in range(3)]
    device = f"pd_{sfx}"
    if webhook:
        await create_subscription(db, url="https://hooks.example.org/campushub", secret="s" * 32, kinds=[],
                                  active=True, description="privacy test", created_by=admin.id, now=now)

    async def frame(conn) -> None:
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ($1, $1, 'Main')", room)
        await conn.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ($1, $2, 'Privacy', $3)",
                           course, f"PC-{sfx}", faculty.id)
        await conn.executemany("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                               [(course, target.id), (course, other.id)])
        await conn.executemany(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ($1, $2, $3, $4, $5, 'closed')",
            [(s, course, room, now - timedelta(days=3 - i), now - timedelta(days=3 - i) + timedelta(hours=1))
             for i, s in enumerate(sessions)])
        await conn.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'fingerprint', 'ed25519', $3)",
            device, room, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        changes = [AttendanceChange(s, p.id, "present", "qr", now - timedelta(days=3 - i))
                   for i, s in enumerate(sessions[:2]) for p in (target, other)]
        await apply_attendance_changes(conn, changes, actor=faculty.id, reason=f"marked by hand {sfx}")

    await db.run(frame, transaction=True)

    for p in (target, other):
        leave_reason = f"Family wedding of {p.name} cousin {sfx}"
        p.document = PDF_HEAD + f"medical certificate of {p.name} {uuid.uuid4().hex}".encode() + b"\n%%EOF\n"
        today = now.date()
        await apply_for_leave(db, student_id=p.id, starts_on=today + timedelta(days=7),
                              ends_on=today + timedelta(days=8), reason=leave_reason,
                              document=NewDocument("certificate.pdf", "application/pdf", p.document), today=today)
        correction_reason = f"I was there {p.name[:6]} {sfx} correction"
        await request_correction(db, student_id=p.id, session_id=sessions[2], requested_status="present",
                                 reason=correction_reason, now=now)
        condonation_reason = f"Illness note {sfx} {p.roll_number} condonation"
        p.texts += [leave_reason, correction_reason, condonation_reason]

        async def rest(conn, p: Person = p, condonation_reason: str = condonation_reason) -> None:
            await create_application(conn, p.id, course, condonation_reason, Decimal("61.50"), now)
            ids = await insert_flags(conn, [CheckinFlagRow(sessions[1], p.id, "shared_device", "the same phone",
                                                           {"other_students": []}, "display", None, now)])
            await announce_flags(conn, ids)
            await add_notifications(conn, [NewNotification(p.id, "attendance_marked", "Marked present",
                                                           "Your attendance was recorded as present.")])
            await conn.execute(
                "INSERT INTO display_checkins (session_id, student_id, scanned_at, code_window, device_hash, nonce,"
                " user_agent, outcome) VALUES ($1, $2, $3, 1, $4, $5, $6, 'accepted')",
                sessions[1], p.id, now, os.urandom(32), os.urandom(16), f"Mozilla/5.0 ({p.name} phone)")
            await conn.execute(
                "INSERT INTO token_uses (session_id, student_id, token_window, event_id) VALUES ($1, $2, 7, $3)",
                sessions[0], p.id, uuid.uuid4())
            await conn.execute(
                "INSERT INTO attendance_warnings (student_id, course_id, below, percentage) VALUES ($1, $2, true, 61.5)",
                p.id, course)
            await conn.execute(
                "INSERT INTO terminal_roster (device_id, student_id, pin, updated_at)"
                " SELECT $1, id, terminal_pin, $3 FROM students WHERE id = $2", device, p.id, now)
            ticket = await conn.fetchval(
                "INSERT INTO tickets (room_id, title, description, priority, source, reported_by, sla_due_at)"
                " VALUES ($1, $2, 'It flickers when the lights are off.', 'P3', 'report', $3, $4) RETURNING id",
                room, f"Projector flickers {p.id}", p.id, now + timedelta(days=2))
            await conn.execute("INSERT INTO ticket_comments (ticket_id, author, body) VALUES ($1, $2, 'Still broken.')",
                               ticket, p.id)
            if await conn.fetchval("SELECT to_regclass('biometric_consents') IS NOT NULL"):
                await conn.execute(
                    "INSERT INTO biometric_consents (student_id, notice_version, given_by, given_at)"
                    " VALUES ($1, 'v1', $1, $2)", p.id, now - timedelta(days=1))

        await db.run(rest, transaction=True)
    return PrivacyWorld(sfx, admin.id, faculty.id, course, sessions, target, other,
                        usernames={"admin": admin.username, "faculty": faculty.username})


async def make_former(db: Database, world: PrivacyWorld, person: Person) -> None:
    """Deactivate the student (what makes them a former student)."""
    await deactivate_user(db, person.id, actor=world.admin, reason="left the campus")
