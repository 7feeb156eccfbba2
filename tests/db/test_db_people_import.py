"""Applying a people CSV (hub/db/people_import.py) against the real PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.accounts import code_holder
from hub.db.people_import import PeopleImportRejected, import_people
from hub.db.students import student_token_secret
from hub.domain.people_import import parse_people_csv

pytestmark = pytest.mark.integration

NOW = datetime(2031, 5, 5, 8, 0, tzinfo=timezone.utc)
FILE = ("role,name,username,email,roll_number,program,section\n"
        "student,Asha Rao,,asha@campus.example,21CS001,B.Tech CSE,A\n"
        "faculty,Meera Iyer,miyer,meera@campus.example,,,\n"
        "ops,Olu Ade,olu,,,,\n")


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        await database.execute(
            "INSERT INTO users (id, username, display_name, role, password_hash, email) VALUES"
            " ('u-admin', 'boss', 'The Admin', 'admin', 'x', 'boss@campus.example')")
        yield database


def _rows(text: str):
    parsed = parse_people_csv(text)
    assert parsed.ok, parsed.errors
    return parsed.rows


async def test_import_creates_accounts_with_activation_codes_and_student_secrets(fresh_db: Database) -> None:
    result = await import_people(fresh_db, _rows(FILE), actor="u-admin", dry_run=False, now=NOW)
    assert [(c.line, c.username, c.role) for c in result.created] == [
        (2, "21CS001", "student"), (3, "miyer", "faculty"), (4, "olu", "ops")]
    student = result.created[0]
    assert student.user_id.startswith("stu-") and student.activation is not None
    row = await fresh_db.fetchrow("SELECT roll_number, program, section FROM students WHERE id = $1", student.user_id)
    assert row is not None and dict(row) == {"roll_number": "21CS001", "program": "B.Tech CSE", "section": "A"}
    assert len(await student_token_secret(fresh_db, student.user_id) or b"") == 32
    assert await fresh_db.fetchval("SELECT password_hash FROM users WHERE id = $1", student.user_id) == ""
    for created in result.created:
        assert created.activation is not None
        holder = await code_holder(fresh_db, created.activation.code, now=NOW)
        assert holder is not None and holder.id == created.user_id
    entries = await fresh_db.fetch("SELECT actor, entity, action, after FROM audit_log WHERE entity = 'user'")
    assert [(e["actor"], e["action"]) for e in entries] == [("u-admin", "imported")]


async def test_reimporting_the_same_file_changes_nothing(fresh_db: Database) -> None:
    await import_people(fresh_db, _rows(FILE), actor="u-admin", dry_run=False, now=NOW)
    before = await fresh_db.fetchval("SELECT count(*) FROM one_time_codes")
    again = await import_people(fresh_db, _rows(FILE), actor="u-admin", dry_run=False, now=NOW)
    assert again.created == () and again.unchanged == 3
    assert await fresh_db.fetchval("SELECT count(*) FROM one_time_codes") == before
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log WHERE entity = 'user'") == 1


async def test_a_dry_run_writes_nothing(fresh_db: Database) -> None:
    result = await import_people(fresh_db, _rows(FILE), actor="u-admin", dry_run=True, now=NOW)
    assert result.dry_run and len(result.created) == 3 and all(c.activation is None for c in result.created)
    assert await fresh_db.fetchval("SELECT count(*) FROM users") == 1


async def test_all_or_nothing_with_every_conflict_reported(fresh_db: Database) -> None:
    await import_people(fresh_db, _rows(FILE), actor="u-admin", dry_run=False, now=NOW)
    text = ("role,name,username,email,roll_number\n"
            "faculty,New Person,newp,,\n"                      # 2 fine on its own
            "faculty,Meera I.,miyer,meera@campus.example,\n"   # 3 existing, different name
            "student,Someone,someone,,21CS001\n"               # 4 roll number taken
            "ops,Other,other,BOSS@campus.example,\n"           # 5 email taken
            "admin,Olu Ade,OLU,,\n")                           # 6 existing, different role
    with pytest.raises(PeopleImportRejected) as rejected:
        await import_people(fresh_db, _rows(text), actor="u-admin", dry_run=False, now=NOW)
    assert [(e.line, e.field) for e in rejected.value.errors] == [
        (3, "name"), (4, "roll_number"), (5, "email"), (6, "role")]
    assert "the import only adds people" in rejected.value.errors[0].reason
    assert await fresh_db.fetchval("SELECT count(*) FROM users WHERE username = 'newp'") == 0
