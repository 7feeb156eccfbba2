"""The audit log: verify its hash chain, search it, export it (CSV or JSON lines).

The hash is written once in SQL (migration 0004) and once in Python
(:mod:`hub.db.audit_hash`, byte-for-byte the same, for offline verification of
an export). Entries are appended only by the ``audit_log_chain`` trigger of migration 0004
(every attendance change through :mod:`hub.db.attendance`, every security action through
:mod:`hub.db.security_audit`); a second trigger
refuses UPDATE, DELETE and TRUNCATE. Each entry's ``hash`` is
``sha256(prev_hash || canonical)``, where ``canonical`` is
``audit_entry_canonical(entry)`` (SQL), so verification runs where the
canonical form is defined, in PostgreSQL, in one pass.

Concurrency contract: every function here is a trio coroutine that blocks the
calling task (never the loop) until PostgreSQL answers; cancelling it cancels
the query. Reads only: any number may run concurrently with the writers.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, AsyncIterator, Literal, Sequence, TypeVar

import asyncpg

from ._pool import ConnectionWork, Database
from .audit_hash import ZERO_HASH, exact_json
from .paging import Page

EXPORT_CHUNK = 2000

#: What can be wrong with an entry, in the order verification checks it.
Problem = Literal["missing_hash", "broken_link", "altered"]


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`."""

    ok: bool
    entries: int
    #: The newest entry's id and hash: record them elsewhere to detect later truncation of the tail.
    head_id: int | None
    head_hash: str | None
    #: The first entry (lowest id) that does not verify, and why.
    first_broken_id: int | None = None
    problem: Problem | None = None


@dataclass(frozen=True)
class AuditFilter:
    """Search criteria; every given one must match. ``course_ids`` restricts to those courses
    (a faculty's scope); ``None`` means no restriction."""

    student_id: str | None = None
    session_id: str | None = None
    course_id: str | None = None
    actor: str | None = None
    entity: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    course_ids: Sequence[str] | None = field(default=None)


_VERIFY_SQL = """
SELECT count(*) OVER () AS entries, c.id, c.problem FROM (
    SELECT a.id,
           CASE
             WHEN a.hash IS NULL OR a.prev_hash IS NULL THEN 'missing_hash'
             WHEN a.prev_hash IS DISTINCT FROM coalesce(lag(a.hash) OVER w, $1::bytea) THEN 'broken_link'
             WHEN a.hash <> sha256(a.prev_hash || convert_to(audit_entry_canonical(a), 'UTF8')) THEN 'altered'
           END AS problem
    FROM audit_log a
    WINDOW w AS (ORDER BY a.id)
) c
ORDER BY (c.problem IS NULL), c.id
LIMIT 1
"""


async def verify_chain(db: Database) -> ChainReport:
    """Recompute the whole chain; report the first entry that does not verify.

    A changed entry shows as ``altered`` (its hash no longer matches its
    content); a deleted one as a ``broken_link`` at the entry after it; one
    inserted with the triggers disabled as ``missing_hash`` (or a broken link
    after it). Deleting the newest entries leaves a valid, shorter chain: compare
    ``head_id``/``head_hash`` with a copy kept elsewhere to detect that.
    """

    async def work(conn: asyncpg.Connection) -> ChainReport:
        row = await conn.fetchrow(_VERIFY_SQL, ZERO_HASH)
        head = await conn.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        head_id = None if head is None else head["id"]
        head_hash = None if head is None or head["hash"] is None else bytes(head["hash"]).hex()
        if row is None:
            return ChainReport(True, 0, head_id, head_hash)
        if row["problem"] is None:
            return ChainReport(True, row["entries"], head_id, head_hash)
        return ChainReport(False, row["entries"], head_id, head_hash, row["id"], row["problem"])

    # REPEATABLE READ: the entry count, the first problem and the head come from one snapshot.
    return await db.run(_repeatable_read(work))


_T = TypeVar("_T")


def _repeatable_read(work: ConnectionWork[_T]) -> ConnectionWork[_T]:
    async def wrapped(conn: asyncpg.Connection) -> _T:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await work(conn)
    return wrapped


def _where(f: AuditFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    for column, value in (("student_id", f.student_id), ("session_id", f.session_id),
                          ("course_id", f.course_id), ("actor", f.actor), ("entity", f.entity),
                          ("action", f.action)):
        if value is not None:
            add(f"{column} = {{}}", value)
    if f.since is not None:
        add("at >= {}", f.since)
    if f.until is not None:
        add("at < {}", f.until)
    if f.course_ids is not None:
        add("course_id = ANY({}::text[])", list(f.course_ids))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_COLUMNS = ("id, at, actor, entity, action, entity_id, session_id, student_id, course_id, before, after, reason,"
            " prev_hash, hash")


def entry_json(row: asyncpg.Record, *, exact_numbers: bool = False) -> dict[str, Any]:
    """One entry as the API and the exports show it (hashes in hex). ``exact_numbers``: numbers in
    before/after as :class:`~decimal.Decimal` (the exports, whose hashes must verify offline)."""
    def parse(text: str | None) -> Any:
        if text is None:
            return None
        return json.loads(text, parse_float=Decimal) if exact_numbers else json.loads(text)

    return {
        "id": row["id"], "at": row["at"], "actor": row["actor"], "entity": row["entity"],
        "action": row["action"], "entity_id": row["entity_id"], "session_id": row["session_id"], "student_id": row["student_id"],
        "course_id": row["course_id"],
        "before": parse(row["before"]), "after": parse(row["after"]),
        "reason": row["reason"],
        "prev_hash": None if row["prev_hash"] is None else bytes(row["prev_hash"]).hex(),
        "hash": None if row["hash"] is None else bytes(row["hash"]).hex(),
    }


async def search_audit(db: Database, f: AuditFilter, *, limit: int, offset: int) -> Page[dict[str, Any]]:
    """One page of matching entries, newest first, and how many match in all."""
    where, args = _where(f)
    n = len(args)

    async def work(conn: asyncpg.Connection) -> Page[dict[str, Any]]:
        total = await conn.fetchval(f"SELECT count(*) FROM audit_log{where}", *args)
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
            *args, limit, offset)
        return Page([entry_json(r) for r in rows], total)

    return await db.run(_repeatable_read(work))


async def iter_audit(db: Database, f: AuditFilter, *, chunk: int = EXPORT_CHUNK) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching entry, oldest first, in chunks (keyset pagination by id: each chunk is one
    short query, so a large export holds no transaction open and never skips or repeats an entry)."""
    where, args = _where(f)
    n = len(args)
    joiner = " AND " if where else " WHERE "
    after_id = 0
    while True:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM audit_log{where}{joiner}id > ${n + 1} ORDER BY id LIMIT ${n + 2}",
            *args, after_id, chunk)
        if not rows:
            return
        yield [entry_json(r, exact_numbers=True) for r in rows]
        if len(rows) < chunk:
            return
        after_id = rows[-1]["id"]


async def search_choices(db: Database, course_ids: Sequence[str] | None, *, max_students: int = 2000,
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """What the audit page's search form offers in the given scope (``None``: everything): the
    courses, and the students enrolled in them (at most ``max_students``, by roll number; the flag
    says whether there were more -- the form still takes any id typed in)."""

    async def work(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        scope = "" if course_ids is None else " WHERE c.id = ANY($1::text[])"
        args: list[Any] = [] if course_ids is None else [list(course_ids)]
        courses = await conn.fetch(f"SELECT c.id, c.code, c.title FROM courses c{scope} ORDER BY c.code", *args)
        enrolled = "" if course_ids is None else (
            " WHERE s.id IN (SELECT e.student_id FROM enrolments e WHERE e.course_id = ANY($1::text[]))")
        students = await conn.fetch(
            f"SELECT s.id, s.roll_number, u.display_name FROM students s JOIN users u ON u.id = s.id{enrolled}"
            f" ORDER BY s.roll_number LIMIT {int(max_students) + 1}", *args)
        return [dict(r) for r in courses], [dict(r) for r in students[:max_students]], len(students) > max_students

    return await db.run(work)


CSV_FIELDS = ("id", "at", "actor", "entity", "action", "entity_id", "session_id", "student_id", "course_id",
              "before", "after", "reason", "prev_hash", "hash")


def csv_header() -> str:
    return _csv_rows([dict(zip(CSV_FIELDS, CSV_FIELDS))], header=True)


def csv_chunk(entries: list[dict[str, Any]]) -> str:
    """Entries as CSV lines (before/after as compact JSON; formula-leading text neutralised)."""
    return _csv_rows(entries, header=False)


def _csv_rows(entries: list[dict[str, Any]], *, header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for e in entries:
        writer.writerow([e[k] if header else _csv_cell(e[k]) for k in CSV_FIELDS])
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        value = exact_json(value)
    text = str(value)
    # A spreadsheet would run "=..." as a formula (CSV injection through a reason or an actor).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def jsonl_chunk(entries: list[dict[str, Any]]) -> str:
    """One entry per line, numbers exact: ``campushub audit verify`` re-hashes these lines."""
    return "".join(exact_json(e) + "\n" for e in entries)
