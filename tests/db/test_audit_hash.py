"""hub.db.audit_hash writes exactly the text (and so the hash) PostgreSQL's audit_entry_canonical
does, for awkward strings and numbers, and check_entries agrees with verify_chain."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import AsyncIterator

import asyncpg
import pytest

from hub.db import Database, open_database
from hub.db.audit import AuditFilter, iter_audit, jsonl_chunk, verify_chain
from hub.db.audit_hash import (
    ZERO_HASH,
    canonical_entry,
    check_entries,
    entry_hash,
    jsonb_text,
    personal_commitment,
    personal_text,
)

pytestmark = pytest.mark.integration

STRINGS = ["plain", "é ü 日本 😀", 'quote " back \\ slash /', "ctl \x01\x1f\x7f \b\f\n\r\t", "\u2028\u2029", "=cmd"]
VALUES = [
    None,
    {"b": 1, "aa": 2, "a": [1, 2.5, None, True, False, {"z": "y"}], "é": 0, "e": -0.0, "n1": "1.50",
     "big": 1e30, "small": 1e-7, "k": {}, "l": [], "ab": {"bb": 1, "b": 2, "ä": 3, "z": 4}},
]
# Written as JSON text, so PostgreSQL parses the numbers itself (scale kept, exponents expanded).
NUMBERS = '{"n": 75.00, "m": 1.0e1, "o": 100e-2, "p": -0.0, "q": 1E+3, "r": -12.3400, "s": 0.000001}'


#: audit_log's columns in table order (a row value is built from them).
_AUDIT_LOG_COLUMNS = ("id", "at", "actor", "entity", "entity_id", "before", "after", "reason", "session_id",
                      "student_id", "course_id", "prev_hash", "hash", "action", "personal_salt",
                      "personal_commitment", "redacted_at")


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_python_canonical_text_is_postgresqls(fresh_db: Database) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        for text in STRINGS:
            for before in VALUES:
                await conn.execute(
                    "INSERT INTO audit_log (actor, entity, entity_id, student_id, before, after, reason)"
                    " VALUES ($1, 'x', $1, NULL, $2::jsonb, $3::jsonb, $1)",
                    text, None if before is None else json.dumps(before), NUMBERS)

    await fresh_db.run(work, transaction=True)
    rows = await fresh_db.fetch("SELECT a.*, audit_entry_canonical(a) AS canonical,"
                                " audit_personal_canonical(a) AS personal FROM audit_log a ORDER BY id")
    assert len(rows) == len(STRINGS) * len(VALUES)
    prev = ZERO_HASH
    for row in rows:
        entry = dict(row)
        for name in ("before", "after"):
            entry[name] = None if entry[name] is None else json.loads(entry[name], parse_float=Decimal)
        # The awkward values are in the personal payload (migration 0024): its text and commitment...
        assert personal_text(entry) == row["personal"]
        assert personal_commitment(bytes(row["personal_salt"]), entry) == bytes(row["personal_commitment"])
        # ... and the chain's text, which holds the commitment.
        assert canonical_entry(entry) == row["canonical"]
        assert entry_hash(prev, entry) == bytes(row["hash"])  # the trigger's hash, recomputed in Python
        prev = bytes(row["hash"])
        # The same entry in the format before 0024 (no commitment: the payload itself hashed).
        v1 = await fresh_db.fetchval(
            "SELECT audit_entry_canonical(a) FROM (SELECT (r).* FROM (SELECT $1::audit_log AS r) x) a",
            tuple({**dict(row), "personal_commitment": None}[k] for k in _AUDIT_LOG_COLUMNS))
        assert canonical_entry({**entry, "personal_commitment": None}) == v1
    # Python floats (as json.dumps would send them) print as PostgreSQL would print the same text.
    assert jsonb_text({"x": 0.1, "y": 1e16, "z": -0.0}) == await fresh_db.fetchval(
        "SELECT $1::jsonb::text", json.dumps({"x": 0.1, "y": 1e16, "z": -0.0}))

    # The export round-trips: its lines re-hash to the database's chain.
    exported = "".join([jsonl_chunk(chunk) async for chunk in iter_audit(fresh_db, AuditFilter())])
    offline = check_entries(json.loads(line, parse_float=Decimal) for line in exported.split("\n") if line)
    online = await verify_chain(fresh_db)
    assert offline.ok and online.ok and (offline.entries, offline.head_hash) == (online.entries, online.head_hash)
