"""hub/db/users.py people management against the real PostgreSQL: create (a student gets its
token secret), edit, role, deactivate/reactivate, delete and its refusals, search and paging,
the self and last-admin guards, and the security-audit entry of each change."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.students import student_token_secret
from hub.db.users import (
    AccountChanges,
    AccountConflict,
    AccountError,
    AccountNotFound,
    AccountRefused,
    NewAccount,
    count_active_admins,
    create_user,
    deactivate_user,
    delete_user,
    get_account,
    get_user,
    list_accounts,
    reactivate_user,
    set_role,
    update_user,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


def _admin(name: str = "root") -> NewAccount:
    return NewAccount(username=name, display_name=f"Admin {name}", role="admin", password_hash="h")


def _student(n: int, **fields) -> NewAccount:
    return NewAccount(username=f"student{n}", display_name=f"Student {n}", role="student",
                      roll_number=f"R{n:04d}", **fields)


async def _audit(db: Database, user_id: str) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT actor, action FROM audit_log WHERE entity = 'user' AND entity_id = $1 ORDER BY id",
                          user_id)
    return [(r["actor"], r["action"]) for r in rows]


async def test_create_student_gets_token_secret_and_audit(fresh_db: Database) -> None:
    made = await create_user(fresh_db, _student(1, email="s1@example.edu", program="B.Tech", section="A"),
                             actor="cli")
    assert made.id.startswith("stu-") and made.role == "student" and made.active
    assert (made.roll_number, made.program, made.section, made.email) == ("R0001", "B.Tech", "A", "s1@example.edu")
    secret = await student_token_secret(fresh_db, made.id)
    assert isinstance(secret, bytes) and len(secret) == 32
    other = await create_user(fresh_db, _student(2), actor="cli")
    assert await student_token_secret(fresh_db, other.id) != secret
    # No password yet: the hash is empty and cannot verify.
    assert (await get_user(fresh_db, made.id)).password_hash == ""
    assert await _audit(fresh_db, made.id) == [("cli", "created")]


async def test_create_staff_has_no_student_row(fresh_db: Database) -> None:
    made = await create_user(fresh_db, NewAccount("prof", "Prof X", "faculty", password_hash="h"), actor="cli")
    assert made.id.startswith("usr-") and made.roll_number is None
    assert await fresh_db.fetchval("SELECT count(*) FROM students WHERE id = $1", made.id) == 0


async def test_create_conflicts_name_the_field(fresh_db: Database) -> None:
    await create_user(fresh_db, _student(1, email="a@example.edu"), actor="cli")
    with pytest.raises(AccountConflict) as taken:
        await create_user(fresh_db, NewAccount("STUDENT1", "x", "ops", password_hash="h"), actor="cli")
    assert taken.value.field == "username"
    with pytest.raises(AccountConflict) as email:
        await create_user(fresh_db, NewAccount("other", "x", "ops", password_hash="h", email="A@example.edu"),
                          actor="cli")
    assert email.value.field == "email"
    with pytest.raises(AccountConflict) as roll:
        await create_user(fresh_db, NewAccount("other", "x", "student", roll_number="R0001"), actor="cli")
    assert roll.value.field == "roll_number"
    assert await fresh_db.fetchval("SELECT count(*) FROM users") == 1


async def test_update_details(fresh_db: Database) -> None:
    admin = await create_user(fresh_db, _admin(), actor="cli")
    student = await create_user(fresh_db, _student(1), actor="cli")
    changed = await update_user(fresh_db, student.id, AccountChanges(display_name="New Name", section="B",
                                                                     email="n@example.edu"), actor=admin.id)
    assert (changed.display_name, changed.section, changed.email, changed.program) == ("New Name", "B",
                                                                                        "n@example.edu", None)
    cleared = await update_user(fresh_db, student.id, AccountChanges(email=None), actor=admin.id)
    assert cleared.email is None
    with pytest.raises(AccountError) as staff_roll:
        await update_user(fresh_db, admin.id, AccountChanges(roll_number="X1"), actor=admin.id)
    assert staff_roll.value.field == "roll_number"
    with pytest.raises(AccountError) as bad_email:
        await update_user(fresh_db, student.id, AccountChanges(email="not-an-address"), actor=admin.id)
    assert bad_email.value.field == "email"
    unchanged = await update_user(fresh_db, student.id, AccountChanges(display_name="New Name"), actor=admin.id)
    assert unchanged == cleared  # nothing changed: no entry
    assert await _audit(fresh_db, student.id) == [("cli", "created"), (admin.id, "updated"), (admin.id, "updated")]
    with pytest.raises(AccountNotFound):
        await update_user(fresh_db, "usr-nobody", AccountChanges(display_name="x"), actor=admin.id)


async def test_role_change_and_guards(fresh_db: Database) -> None:
    root = await create_user(fresh_db, _admin("root"), actor="cli")
    ops = await create_user(fresh_db, NewAccount("opsy", "Ops", "ops", password_hash="h"), actor="cli")
    student = await create_user(fresh_db, _student(1), actor="cli")
    with pytest.raises(AccountRefused, match="your own"):
        await set_role(fresh_db, root.id, "faculty", actor=root.id)
    with pytest.raises(AccountRefused, match="last active admin"):
        await set_role(fresh_db, root.id, "faculty", actor="cli")
    with pytest.raises(AccountRefused, match="student"):
        await set_role(fresh_db, student.id, "faculty", actor=root.id)
    with pytest.raises(AccountRefused, match="student"):
        await set_role(fresh_db, ops.id, "student", actor=root.id)
    promoted = await set_role(fresh_db, ops.id, "admin", actor=root.id)
    assert promoted.role == "admin" and await count_active_admins(fresh_db) == 2
    assert (await get_user(fresh_db, ops.id)).role == "admin"
    demoted = await set_role(fresh_db, root.id, "faculty", actor=ops.id)  # another admin remains
    assert demoted.role == "faculty"
    assert await _audit(fresh_db, ops.id) == [("cli", "created"), (root.id, "role_changed")]


async def test_deactivate_reactivate(fresh_db: Database) -> None:
    root = await create_user(fresh_db, _admin("root"), actor="cli")
    student = await create_user(fresh_db, _student(1), actor="cli")
    await fresh_db.execute("INSERT INTO refresh_tokens (token_hash, user_id, expires_at)"
                           " VALUES ('\\x01', $1, now() + interval '1 day')", student.id)
    with pytest.raises(AccountRefused):
        await deactivate_user(fresh_db, root.id, actor=root.id)
    with pytest.raises(AccountRefused, match="last active admin"):
        await deactivate_user(fresh_db, root.id, actor="cli")
    off = await deactivate_user(fresh_db, student.id, actor=root.id, reason="left the college")
    assert not off.active and not (await get_user(fresh_db, student.id)).active
    assert await fresh_db.fetchval("SELECT revoked_at IS NOT NULL FROM refresh_tokens WHERE user_id = $1", student.id)
    again = await deactivate_user(fresh_db, student.id, actor=root.id)
    assert again.deactivated_at == off.deactivated_at
    on = await reactivate_user(fresh_db, student.id, actor=root.id)
    assert on.active
    assert await _audit(fresh_db, student.id) == [("cli", "created"), (root.id, "deactivated"),
                                                  (root.id, "reactivated")]
    reason = await fresh_db.fetchval("SELECT reason FROM audit_log WHERE entity_id = $1 AND action = 'deactivated'",
                                     student.id)
    assert reason == "left the college"


async def test_delete_without_records_and_refusals(fresh_db: Database) -> None:
    root = await create_user(fresh_db, _admin("root"), actor="cli")
    mistake = await create_user(fresh_db, _student(9), actor=root.id)
    await fresh_db.execute("INSERT INTO notifications (user_id, kind, title) VALUES ($1, 'x', 't')", mistake.id)
    assert (await delete_user(fresh_db, mistake.id, actor=root.id)).deleted
    assert await get_account(fresh_db, mistake.id) is None
    assert await _audit(fresh_db, mistake.id) == [(root.id, "created"), (root.id, "deleted")]

    with pytest.raises(AccountRefused):
        await delete_user(fresh_db, root.id, actor=root.id)
    with pytest.raises(AccountRefused, match="last active admin"):
        await delete_user(fresh_db, root.id, actor="cli")
    # root acted (created an account): its audit entries must be kept.
    second = await create_user(fresh_db, _admin("second"), actor="cli")
    refused = await delete_user(fresh_db, root.id, actor=second.id)
    assert not refused.deleted and "audit log" in refused.refusal and "deactivate" in refused.refusal
    assert await get_account(fresh_db, root.id) is not None

    teacher = await create_user(fresh_db, NewAccount("prof", "Prof", "faculty", password_hash="h"), actor="cli")
    await fresh_db.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c1', 'C1', 'T', $1)", teacher.id)
    outcome = await delete_user(fresh_db, teacher.id, actor=second.id)
    assert outcome == type(outcome)(False, "The account teaches courses; deactivate it instead.")
    with pytest.raises(AccountNotFound):
        await delete_user(fresh_db, "usr-nobody", actor=second.id)


async def test_delete_refused_for_attendance(fresh_db: Database) -> None:
    root = await create_user(fresh_db, _admin("root"), actor="cli")
    student = await create_user(fresh_db, _student(1), actor="cli")
    await fresh_db.execute("INSERT INTO rooms (id, name, building) VALUES ('r1', 'R1', 'B')")
    await fresh_db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                           " VALUES ('fac', 'fac', 'F', 'faculty', 'x')")
    await fresh_db.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c1', 'C1', 'T', 'fac')")
    await fresh_db.execute("INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at)"
                           " VALUES ('s1', 'c1', 'r1', now(), now() + interval '1 hour')")
    await fresh_db.execute("INSERT INTO attendance (session_id, student_id, status, checked_in_at, source)"
                           " VALUES ('s1', $1, 'present', now(), 'manual')", student.id)
    outcome = await delete_user(fresh_db, student.id, actor=root.id)
    assert not outcome.deleted and outcome.refusal == "The account has attendance records; deactivate it instead."


async def test_list_search_and_paging(fresh_db: Database) -> None:
    await create_user(fresh_db, _admin("root"), actor="cli")
    for n in range(1, 8):
        await create_user(fresh_db, _student(n, email=f"person{n}@example.edu"), actor="cli")
    await create_user(fresh_db, NewAccount("prof_100%", "Dr. Percent", "faculty", password_hash="h"), actor="cli")
    page, total = await list_accounts(fresh_db, limit=3, offset=0)
    assert total == 9 and [a.username for a in page] == ["prof_100%", "root", "student1"]
    page, total = await list_accounts(fresh_db, limit=3, offset=6)
    assert total == 9 and [a.username for a in page] == ["student5", "student6", "student7"]
    assert [a.username for a in (await list_accounts(fresh_db, q="R0003", limit=10, offset=0))[0]] == ["student3"]
    assert [a.username for a in (await list_accounts(fresh_db, q="PERSON4@", limit=10, offset=0))[0]] == ["student4"]
    assert [a.username for a in (await list_accounts(fresh_db, q="percent", limit=10, offset=0))[0]] == ["prof_100%"]
    # LIKE wildcards in the query are literal.
    assert [a.username for a in (await list_accounts(fresh_db, q="0%", limit=10, offset=0))[0]] == ["prof_100%"]
    assert (await list_accounts(fresh_db, q="_", limit=10, offset=0))[1] == 1
    assert (await list_accounts(fresh_db, role="student", limit=1, offset=0))[1] == 7
    student = (await list_accounts(fresh_db, q="student2", limit=1, offset=0))[0][0]
    await deactivate_user(fresh_db, student.id, actor="cli")
    assert (await list_accounts(fresh_db, active=False, limit=10, offset=0))[1] == 1
    assert (await list_accounts(fresh_db, active=True, limit=10, offset=0))[1] == 8


async def test_role_and_details_change_together_or_not_at_all(fresh_db: Database) -> None:
    await create_user(fresh_db, _admin("root"), actor="cli")
    student = await create_user(fresh_db, _student(1), actor="cli")
    with pytest.raises(AccountRefused):
        await update_user(fresh_db, student.id, AccountChanges(display_name="Renamed", role="ops"), actor="cli")
    assert (await get_account(fresh_db, student.id)).display_name == "Student 1"


async def test_two_admins_demoting_each_other_at_once_leave_one(fresh_db: Database) -> None:
    import trio

    first = await create_user(fresh_db, _admin("first"), actor="cli")
    second = await create_user(fresh_db, _admin("second"), actor="cli")
    outcomes: list[str] = []

    async def demote(target: str, actor: str) -> None:
        try:
            await deactivate_user(fresh_db, target, actor=actor)
            outcomes.append("done")
        except AccountRefused:
            outcomes.append("refused")

    for _ in range(5):  # several rounds: the two transactions interleave differently
        outcomes.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(demote, first.id, second.id)
            nursery.start_soon(demote, second.id, first.id)
        assert sorted(outcomes) == ["done", "refused"]
        assert await count_active_admins(fresh_db) == 1
        for admin in (first, second):
            await reactivate_user(fresh_db, admin.id, actor="cli")


async def test_create_admin_only_first_unless_forced(fresh_db: Database) -> None:
    from hub.db.users import create_admin

    made = await create_admin(fresh_db, _admin("first"), actor="cli:test")
    assert made.role == "admin"
    with pytest.raises(AccountRefused, match="--force"):
        await create_admin(fresh_db, _admin("second"), actor="cli:test")
    assert (await create_admin(fresh_db, _admin("second"), actor="cli:test", force=True)).role == "admin"
    with pytest.raises(ValueError):
        await create_admin(fresh_db, _student(1), actor="cli:test", force=True)
