"""The audit log: verify its hash chain, search it, export it (CSV or JSON lines), and redact the
personal data of one person (erasure).

The hash is written once in SQL (migrations 0004, 0013, 0024) and once in Python
(:mod:`hub.db.audit_hash`, byte-for-byte the same, for offline verification of
an export). Entries are appended only by the ``audit_log_chain`` trigger
(every attendance change through :mod:`hub.db.attendance`, every security action through
:mod:`hub.db.security_audit`); a second trigger refuses UPDATE, DELETE and TRUNCATE, except a
redaction (:func:`redact_subject`) and the pruning of archived entries
(:mod:`hub.db.audit_archive`). Each entry's ``hash`` is
``sha256(prev_hash || canonical)``, where ``canonical`` is
``audit_entry_canonical(entry)`` (SQL), so verification runs where the
canonical form is defined, in PostgreSQL, in one pass. Since migration 0024 the
canonical text holds a commitment to the entry's personal payload (actor,
entity id, student id, before/after, reason), not the payload itself: see
:mod:`hub.db.audit_hash` and docs/records.md.

Concurrency contract: the database-level functions here are trio coroutines that block the
calling task (never the loop) until PostgreSQL answers; cancelling one cancels
the query. The reads may run concurrently with the writers. The two functions taking a
``conn`` (:func:`redact_subject`, :func:`entries_about_student`) run on the asyncio side inside
the caller's ``Database.run``.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, AsyncIterator, Literal, Mapping, Sequence, TypeVar

import asyncpg

from ._pool import ConnectionWork, Database
from .audit_hash import ZERO_HASH, exact_json
from .paging import Page
from .security_audit import REDACTED

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
    #: Entries whose personal payload was redacted (erasure): verified by their links and chain
    #: fields, not by their payload. Not a failure.
    redacted: int = 0
    #: Entries moved to archived segments (hub/db/audit_archive.py) and the segments' count: the
    #: chain in the database continues the newest segment's last hash.
    archived_entries: int = 0
    archived_segments: int = 0


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
SELECT count(*) OVER () AS entries, count(*) FILTER (WHERE c.redacted) OVER () AS redacted, c.id, c.problem
FROM (
    SELECT a.id, a.redacted_at IS NOT NULL AS redacted,
           CASE
             WHEN a.hash IS NULL OR a.prev_hash IS NULL THEN 'missing_hash'
             WHEN a.prev_hash IS DISTINCT FROM coalesce(lag(a.hash) OVER w, $1::bytea) THEN 'broken_link'
             -- A redacted v1 entry's hash covered the erased payload: only its links can be checked.
             WHEN a.personal_commitment IS NULL AND a.redacted_at IS NOT NULL THEN NULL
             WHEN a.hash <> sha256(a.prev_hash || convert_to(audit_entry_canonical(a), 'UTF8')) THEN 'altered'
             WHEN a.personal_commitment IS NOT NULL AND a.redacted_at IS NULL
                  AND a.personal_commitment IS DISTINCT FROM
                      sha256(a.personal_salt || convert_to(audit_personal_canonical(a), 'UTF8')) THEN 'altered'
           END AS problem
    FROM audit_log a
    WINDOW w AS (ORDER BY a.id)
) c
ORDER BY (c.problem IS NULL), c.id
LIMIT 1
"""

#: The archive's anchors in order, each with what its first prev_hash must be (the previous
#: segment's last hash; zeros for the first) and the last entry before it.
_ANCHORS_SQL = """
SELECT first_id, last_id, entries, first_prev_hash, last_hash,
       coalesce(lag(last_hash) OVER w, $1::bytea) AS expected_prev, lag(last_id) OVER w AS previous_last_id
FROM audit_archive WINDOW w AS (ORDER BY first_id) ORDER BY first_id
"""


async def verify_chain(db: Database) -> ChainReport:
    """Recompute the whole chain; report the first entry that does not verify.

    A changed entry shows as ``altered`` (its hash no longer matches its
    content, or its personal payload no longer matches its commitment); a deleted one as a
    ``broken_link`` at the entry after it; one inserted with the triggers disabled as
    ``missing_hash`` (or a broken link after it). A redacted entry (:func:`redact_subject`) is
    counted in ``redacted``, not failed. When older entries were archived
    (:mod:`hub.db.audit_archive`), the anchors must link up (each segment continues the one before;
    a break is a ``broken_link`` at that segment's first id) and the oldest entry left must continue
    the newest anchor. Deleting the newest entries leaves a valid, shorter chain: compare
    ``head_id``/``head_hash`` with a copy kept elsewhere to detect that.
    """

    async def work(conn: asyncpg.Connection) -> ChainReport:
        anchors = await conn.fetch(_ANCHORS_SQL, ZERO_HASH)
        archived = sum(a["entries"] for a in anchors)
        start = bytes(anchors[-1]["last_hash"]) if anchors else ZERO_HASH
        row = await conn.fetchrow(_VERIFY_SQL, start)
        head = await conn.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        head_id: int | None
        head_hash: str | None
        if head is None and anchors:  # everything archived: the head is the newest anchor's end
            head_id, head_hash = anchors[-1]["last_id"], start.hex()
        else:
            head_id = None if head is None else head["id"]
            head_hash = None if head is None or head["hash"] is None else bytes(head["hash"]).hex()
        entries = 0 if row is None else row["entries"]
        redacted = 0 if row is None else row["redacted"]

        def report(problem: Problem | None = None, broken_id: int | None = None) -> ChainReport:
            return ChainReport(problem is None, entries, head_id, head_hash, broken_id, problem,
                               redacted, archived, len(anchors))

        for anchor in anchors:
            if bytes(anchor["first_prev_hash"]) != bytes(anchor["expected_prev"]) or (
                    anchor["previous_last_id"] is not None and anchor["first_id"] <= anchor["previous_last_id"]):
                return report("broken_link", anchor["first_id"])
        if anchors and row is not None:
            oldest = await conn.fetchval("SELECT min(id) FROM audit_log")
            if oldest <= anchors[-1]["last_id"]:
                return report("broken_link", oldest)
        if row is None or row["problem"] is None:
            return report()
        return report(row["problem"], row["id"])

    # REPEATABLE READ: the anchors, the entry count, the first problem and the head come from one snapshot.
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


#: The columns :func:`entry_json` reads.
ENTRY_COLUMNS = ("id, at, actor, entity, action, entity_id, session_id, student_id, course_id, before, after, reason,"
            " prev_hash, hash, personal_salt, personal_commitment, redacted_at")


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def entry_json(row: asyncpg.Record, *, exact_numbers: bool = False) -> dict[str, Any]:
    """One entry as the API and the exports show it (hashes in hex; ``row`` selected with
    ``ENTRY_COLUMNS``). ``exact_numbers``: numbers in before/after as :class:`~decimal.Decimal` (the
    exports, whose hashes must verify offline). A v2 entry carries its salt and commitment (so its
    personal payload verifies offline); ``redacted``: its payload was erased."""
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
        "prev_hash": _hex(row["prev_hash"]), "hash": _hex(row["hash"]),
        "personal_salt": _hex(row["personal_salt"]), "personal_commitment": _hex(row["personal_commitment"]),
        "redacted": row["redacted_at"] is not None,
    }


async def search_audit(db: Database, f: AuditFilter, *, limit: int, offset: int) -> Page[dict[str, Any]]:
    """One page of matching entries, newest first, and how many match in all."""
    where, args = _where(f)
    n = len(args)

    async def work(conn: asyncpg.Connection) -> Page[dict[str, Any]]:
        total = await conn.fetchval(f"SELECT count(*) FROM audit_log{where}", *args)
        rows = await conn.fetch(
            f"SELECT {ENTRY_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
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
            f"SELECT {ENTRY_COLUMNS} FROM audit_log{where}{joiner}id > ${n + 1} ORDER BY id LIMIT ${n + 2}",
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


# --- one person's entries: export and erasure ------------------------------------------------

#: Keys of before/after that name or locate a person (the user record's ``audit_state``, a login's
#: client address): redacted in the entries about the erased person.
PERSONAL_KEYS = frozenset({"username", "display_name", "name", "email", "roll_number", "program", "section",
                           "address", "phone", "user_agent"})

#: Where an id can sit inside an ``entity_id`` (``<session>/<student>``, ``<section>:<student>``).
_ENTITY_ID_PARTS = re.compile(r"([:/])")

# The entries about a person: theirs as a student (index audit_log_student), as an actor (their
# user id, or their username for logins: audit_log_actor), and the security entries (the partial
# index of migration 0013) whose entity id or before/after names them (a user's own entries, an
# enrolment, a terminal page, a CSV import listing the account). $1: the id, $2: the names.
_ABOUT_SQL = f"""
SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE student_id = $1
    UNION SELECT id FROM audit_log WHERE actor = ANY($2::text[])
    UNION SELECT id FROM audit_log WHERE action IS NOT NULL AND (
        regexp_split_to_array(entity_id, '[:/]') && $2::text[]
        OR EXISTS (SELECT 1 FROM unnest($2::text[]) AS n(name)
                   WHERE strpos(coalesce(before::text, '') || coalesce(after::text, ''), to_jsonb(n.name)::text) > 0))
)"""


async def subject_names(conn: asyncpg.Connection, student_id: str) -> list[str]:
    """The names the person appears under in the log: their id, and their username while the
    ``users`` row still has it."""
    username = await conn.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    return [student_id] if username is None or username == student_id else [student_id, username]


async def entries_about_student(conn: asyncpg.Connection, student_id: str) -> list[dict[str, Any]]:
    """Every audit entry about the student, oldest first, as the JSON-lines export writes them
    (:func:`entry_json` with exact numbers: :func:`jsonl_chunk` turns them into lines that
    ``campushub audit verify --allow-gaps`` checks offline). "About": the same selection as
    :func:`redact_subject` (their attendance, what they did, the security entries naming them; the
    username is looked up in ``users``). After a redaction the entries carry the pseudonym: pass
    the pseudonym to find them. Archived entries (:mod:`hub.db.audit_archive`) are not in the
    database and not included. Read only; runs on the caller's connection."""
    _check_subject_text("student_id", student_id)
    rows = await conn.fetch(_ABOUT_SQL + " ORDER BY id", student_id, await subject_names(conn, student_id))
    return [entry_json(r, exact_numbers=True) for r in rows]


async def redact_subject(conn: asyncpg.Connection, *, student_id: str, pseudonym: str) -> int:
    """Inside the caller's transaction: erase the student's personal data from the audit log,
    keeping every entry and the chain. Returns how many entries it redacted.

    In each entry about the student (:func:`entries_about_student`) not yet redacted: the student
    id, an actor or an ``entity_id`` part equal to their id or username become ``pseudonym``; in
    the entries about them (theirs as student, actor or entity) the ``reason`` (free text) becomes
    ``"[redacted]"`` and so do the values of :data:`PERSONAL_KEYS` in before/after; elsewhere in
    before/after their id or username become the pseudonym. Attendance before/after (status, time,
    source, event id: the record's history, which is kept) stay. The entry's salt is deleted and
    ``redacted_at`` set, so verification reports it ``redacted``: its chain fields and links still
    verify, its payload no longer can (nor can anyone test a guess of the erased payload against
    the commitment without the salt). An entry from before migration 0024 (whose hash covered the
    payload) is then verified by its links only.

    Call it BEFORE renaming or blanking the ``users`` row (the username is looked up there). Takes
    row locks on those audit entries only (not the chain lock), so it may come anywhere in the
    transaction. Idempotent: a second call finds nothing left and returns 0. Entries already archived
    to segment files are not in the database: :func:`hub.db.audit_archive.redact_archived_subject`
    applies the same rule to them, after the commit. Raises :class:`ValueError` for an
    empty id or pseudonym, or a pseudonym equal to the id.
    """
    _check_subject_text("student_id", student_id)
    _check_subject_text("pseudonym", pseudonym)
    if pseudonym == student_id:
        raise ValueError("the pseudonym must differ from the student id")
    names = await subject_names(conn, student_id)
    rows = await conn.fetch(_ABOUT_SQL + " AND redacted_at IS NULL ORDER BY id FOR UPDATE", student_id, names)
    if not rows:
        return 0
    redactions = []
    for row in rows:
        entry = redacted_entry(_parsed(row), frozenset(names), student_id, pseudonym)
        redactions.append((entry["id"], entry["actor"], entry["entity_id"], entry["student_id"],
                           _state_text(entry["before"]), _state_text(entry["after"]), entry["reason"]))
    await conn.execute("SELECT set_config('campushub.audit_change', 'redact', true)")
    status = await conn.execute(
        "UPDATE audit_log a SET actor = u.actor, entity_id = u.entity_id, student_id = u.student_id,"
        " before = u.before::jsonb, after = u.after::jsonb, reason = u.reason,"
        " personal_salt = NULL, redacted_at = now()"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
        "      AS u(id, actor, entity_id, student_id, before, after, reason)"
        " WHERE a.id = u.id AND a.redacted_at IS NULL",
        *(list(column) for column in zip(*redactions)))
    await conn.execute("SELECT set_config('campushub.audit_change', '', true)")
    return int(status.split()[-1])


def _check_subject_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{name} must be non-empty text without NUL")


def _parsed(row: asyncpg.Record) -> dict[str, Any]:
    """The fields redaction reads, before/after parsed with exact numbers."""
    entry = {k: row[k] for k in ("id", "entity", "action", "actor", "entity_id", "student_id", "reason")}
    for name in ("before", "after"):
        entry[name] = None if row[name] is None else json.loads(row[name], parse_float=Decimal)
    return entry


def _state_text(value: Any) -> str | None:
    return None if value is None else exact_json(value)


def is_about(entry: Mapping[str, Any], names: frozenset[str], student_id: str) -> bool:
    """Whether an entry (as exported) is about the person: the Python twin of ``_ABOUT_SQL``, for
    archived segments (:func:`hub.db.audit_archive.redact_archived_subject`)."""
    if entry.get("student_id") == student_id or entry.get("actor") in names:
        return True
    if entry.get("action") is None:
        return False
    if any(part in names for part in _ENTITY_ID_PARTS.split(str(entry.get("entity_id") or ""))):
        return True
    text = exact_json([entry.get("before"), entry.get("after")])
    return any(json.dumps(name, ensure_ascii=False) in text for name in names)


def redacted_entry(entry: Mapping[str, Any], names: frozenset[str], student_id: str, pseudonym: str,
                   ) -> dict[str, Any]:
    """``entry`` (its personal fields; before/after parsed) with the person's data erased, as
    :func:`redact_subject` describes. Pure: the database's redaction and the archived segments'
    use this one rule."""
    parts = _ENTITY_ID_PARTS.split(entry["entity_id"])
    about = entry["student_id"] == student_id or entry["actor"] in names or any(p in names for p in parts)

    def state(value: Any) -> Any:
        if value is None or entry["entity"] == "attendance":
            return value
        return _pseudonymised(value, names, pseudonym, about)

    return {
        **entry,
        "actor": pseudonym if entry["actor"] in names else entry["actor"],
        "entity_id": "".join(pseudonym if p in names else p for p in parts),
        "student_id": pseudonym if entry["student_id"] == student_id else entry["student_id"],
        "before": state(entry["before"]), "after": state(entry["after"]),
        "reason": REDACTED if about and entry["reason"] else entry["reason"],
    }


def _pseudonymised(value: Any, names: frozenset[str], pseudonym: str, about: bool) -> Any:
    if isinstance(value, str):
        return pseudonym if value in names else value
    if isinstance(value, list):
        return [_pseudonymised(v, names, pseudonym, about) for v in value]
    if isinstance(value, dict):
        return {k: REDACTED if about and k in PERSONAL_KEYS and v is not None
                else _pseudonymised(v, names, pseudonym, about) for k, v in value.items()}
    return value


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
