"""Archive the oldest audit entries in verifiable segment files, then prune them from the database.

A segment is a contiguous stretch of the chain (a prefix of what is left in the database),
written as JSON lines in the format of ``campushub audit export`` (so ``campushub audit verify
FILE`` re-hashes it offline), with a manifest beside it (``<segment>.manifest.json``: its id
range, entry count, the ``prev_hash`` of its first entry, the ``hash`` of its last, the file's
sha256). The database keeps the same facts as an anchor row in ``audit_archive`` (migration 0024),
so that:

- the chain left in the database verifies from the newest anchor's ``last_hash``
  (:func:`hub.db.audit.verify_chain`), and the anchors link up (each segment's first
  ``prev_hash`` is the previous segment's last ``hash``; zeros for the first);
- each segment file verifies offline, and against its anchor (:func:`check_segment_file`,
  ``campushub audit verify --archive-dir DIR``): a file edited, cut short or swapped shows.

Per segment, in one transaction: take the archive's advisory lock, lock the rows, stream them to
a temporary file beside the target, fsync it, rename it into place and fsync the directory, insert
the anchor, write the manifest the same way, delete the rows (the only DELETE the log's trigger
accepts: under the transaction-local switch ``campushub.audit_change = 'prune'``, for rows inside
an anchored segment), commit. A crash before the commit leaves a segment file with no anchor (its
entries are still in the database; the next run rewrites the file of the same range); rows are
never deleted before their file is on disk.

Concurrency contract: :func:`archive_and_prune` is a trio coroutine; safe to run from several
processes at once (the transaction-scoped advisory lock :data:`AUDIT_ARCHIVE_LOCK` serialises
segments; a second caller finds the range already archived). It blocks the calling task, never
the loop: file writes go to a worker thread. It does not take the chain lock, so appends go on
while it runs; a redaction (:func:`hub.db.audit.redact_subject`) of a row being archived waits
for the segment's commit and then finds the row gone. Cancelling it rolls back the current
segment (its file may stay, unanchored).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Mapping

import asyncpg
import trio

from ._pool import Database
from .audit import ENTRY_COLUMNS, entry_json, is_about, jsonl_chunk, redacted_entry, subject_names
from .audit_hash import ZERO_HASH, ChainCheck, MalformedLine, check_entries, exact_json, parse_entries

#: Key of the transaction-scoped advisory lock held while a segment is archived.
AUDIT_ARCHIVE_LOCK = 0x4341_4D50_4155_0024
#: Entries per segment file (about 0.5 KB each as JSON: a segment is some tens of MB).
SEGMENT_ENTRIES = 100_000
#: Rows fetched and written per step while a segment is streamed to its file.
_CHUNK = 2_000
#: The ``format`` of a manifest.
MANIFEST_FORMAT = "campushub-audit-segment/1"


class ArchiveWriteError(OSError):
    """A segment or manifest could not be written (the directory, the disk): the operator's file
    system, not the database connection (whose errors are ``OSError`` too)."""


def _file_op(fn: Any) -> Any:
    """``fn`` with its ``OSError`` raised as :class:`ArchiveWriteError`."""
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except ArchiveWriteError:
            raise
        except OSError as exc:
            raise ArchiveWriteError(exc.errno, exc.strerror or str(exc), exc.filename) from exc
    return wrapped


class BrokenChain(RuntimeError):
    """The oldest entries do not link up (or do not continue the newest anchor): nothing is
    archived from there on. Run ``campushub audit verify`` to see why."""

    def __init__(self, entry_id: int) -> None:
        super().__init__(f"audit entry {entry_id} does not continue the chain: not archived"
                         " (run `campushub audit verify`)")
        self.entry_id = entry_id


@dataclass(frozen=True)
class AuditPruneReport:
    """What :func:`archive_and_prune` did (or, for a dry run, would do)."""

    entries_archived: int
    entries_pruned: int
    #: The segment files written (a dry run: the files it would write).
    segment_paths: list[Path] = field(default_factory=list)
    dry_run: bool = False


def segment_name(first_id: int, last_id: int) -> str:
    """The file name of the segment of entries ``first_id``..``last_id``."""
    return f"audit-{first_id:012d}-{last_id:012d}.jsonl"


def manifest_path(segment: Path) -> Path:
    """Where a segment's manifest is: beside it, ``<name>.manifest.json``."""
    return segment.with_suffix(".manifest.json")


# The eligible prefix (every entry before the first one at or after the cutoff), cut into segments.
_PLAN_SQL = """
WITH stop AS (SELECT min(id) AS id FROM audit_log WHERE at >= $1)
SELECT min(id) AS first_id, max(id) AS last_id, count(*) AS entries
FROM (SELECT a.id, (row_number() OVER (ORDER BY a.id) - 1) / $2 AS segment
      FROM audit_log a, stop WHERE stop.id IS NULL OR a.id < stop.id) s
GROUP BY segment ORDER BY segment
"""


async def archive_and_prune(db: Database, *, older_than: datetime, archive_dir: Path, dry_run: bool,
                            segment_entries: int = SEGMENT_ENTRIES) -> AuditPruneReport:
    """Archive every entry older than ``older_than`` (an aware datetime) to segment files in
    ``archive_dir`` (created if missing), then delete them from the database.

    Only a prefix of the chain is archived: it stops at the first entry whose ``at`` is not
    older, so the chain left in the database is contiguous. ``dry_run``: writes and deletes
    nothing, and reports what a run would archive and prune, and the files it would write.
    Raises ``ValueError`` for a naive ``older_than`` or a segment size below 1,
    :class:`ArchiveWriteError` (an ``OSError``) when the directory cannot be written, and
    :class:`BrokenChain` when the entries to archive do not link up (the segment being written is
    then rolled back: nothing of it deleted; segments done before it stay done).
    """
    if older_than.utcoffset() is None:
        raise ValueError("older_than needs a UTC offset")
    if segment_entries < 1:
        raise ValueError("segment_entries must be at least 1")
    if dry_run:
        plan = await db.fetch(_PLAN_SQL, older_than, segment_entries)
        total = sum(p["entries"] for p in plan)
        return AuditPruneReport(total, total, [archive_dir / segment_name(p["first_id"], p["last_id"])
                                               for p in plan], dry_run=True)
    await trio.to_thread.run_sync(_file_op(partial(archive_dir.mkdir, parents=True, exist_ok=True)))
    archived, paths = 0, list[Path]()
    while True:
        written = await db.run(partial(_archive_segment, older_than=older_than, archive_dir=archive_dir,
                                       limit=segment_entries), transaction=True)
        if written is None:
            return AuditPruneReport(archived, archived, paths)
        archived += written[1]
        paths.append(written[0])


async def _archive_segment(conn: asyncpg.Connection, *, older_than: datetime, archive_dir: Path,
                           limit: int) -> tuple[Path, int] | None:
    """One segment, inside the caller's transaction (asyncio side). None: nothing left to archive."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_ARCHIVE_LOCK)
    anchor = await conn.fetchrow("SELECT last_id, last_hash FROM audit_archive ORDER BY last_id DESC LIMIT 1")
    anchored = 0 if anchor is None else anchor["last_id"]
    stop = await conn.fetchval("SELECT min(id) FROM audit_log WHERE id > $1 AND at >= $2", anchored, older_than)
    first = await conn.fetchrow(
        "SELECT id FROM audit_log WHERE id > $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id LIMIT 1",
        anchored, stop)
    if first is None:
        return None
    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(None, _file_op(_SegmentFile), archive_dir, first["id"])
    written: list[Path] = []
    try:
        facts = await _stream_rows(conn, out, anchored, stop, limit,
                                   ZERO_HASH.hex() if anchor is None else bytes(anchor["last_hash"]).hex())
        final = archive_dir / segment_name(facts["first_id"], facts["last_id"])
        digest, size = await loop.run_in_executor(None, _file_op(out.commit), final)
        written.append(final)
        segment_id = await conn.fetchval(
            "INSERT INTO audit_archive (first_id, last_id, entries, first_prev_hash, last_hash, oldest_at,"
            " newest_at, file_name, file_sha256, file_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " RETURNING segment_id",
            facts["first_id"], facts["last_id"], facts["entries"], bytes.fromhex(facts["first_prev_hash"]),
            bytes.fromhex(facts["last_hash"]), facts["oldest_at"], facts["newest_at"], final.name, digest, size)
        manifest = {
            "format": MANIFEST_FORMAT, "segment_id": segment_id, "file": final.name, "sha256": digest.hex(),
            "bytes": size, **facts,
        }
        await loop.run_in_executor(None, _file_op(_write_atomically), manifest_path(final),
                                   (exact_json(manifest) + "\n").encode())
        written.append(manifest_path(final))
        await conn.execute("SELECT set_config('campushub.audit_change', 'prune', true)")
        deleted = await conn.execute("DELETE FROM audit_log WHERE id >= $1 AND id <= $2",
                                     facts["first_id"], facts["last_id"])
        await conn.execute("SELECT set_config('campushub.audit_change', '', true)")
        if int(deleted.split()[-1]) != facts["entries"]:
            raise RuntimeError(f"audit archive: deleted {deleted.split()[-1]} entries, archived {facts['entries']}")
        return final, facts["entries"]
    except BaseException:
        # The transaction rolls back: no anchor refers to these files. Inline (a few unlinks), so a
        # cancellation cannot skip it.
        out.abandon(written)
        raise


async def _stream_rows(conn: asyncpg.Connection, out: _SegmentFile, anchored: int, stop: int | None,
                       limit: int, prev_hash: str) -> dict[str, Any]:
    """Write the segment's rows to ``out``, a chunk at a time; return what its anchor records.
    Refuses (``BrokenChain``) a row without a hash or whose link does not join ``prev_hash``, the
    hash before it: a stretch that does not verify stays in the database, as evidence."""
    loop = asyncio.get_running_loop()
    entries: list[dict[str, Any]] = []
    facts: dict[str, Any] = {"entries": 0}
    cursor = conn.cursor(
        f"SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id > $1 AND ($2::bigint IS NULL OR id < $2)"
        " ORDER BY id LIMIT $3 FOR UPDATE", anchored, stop, limit, prefetch=_CHUNK)

    async def flush() -> None:
        if not entries:
            return
        times = [e["at"] for e in entries]
        facts.setdefault("first_id", entries[0]["id"])
        facts.setdefault("first_prev_hash", entries[0]["prev_hash"])
        facts["last_id"], facts["last_hash"] = entries[-1]["id"], entries[-1]["hash"]
        # An entry's time may be given by its writer: not always in id order.
        facts["oldest_at"] = min(times + [facts.get("oldest_at", times[0])])
        facts["newest_at"] = max(times + [facts.get("newest_at", times[0])])
        facts["entries"] += len(entries)
        await loop.run_in_executor(None, _file_op(out.write), jsonl_chunk(entries))
        entries.clear()

    async for row in cursor:
        if row["hash"] is None or row["prev_hash"] is None or bytes(row["prev_hash"]).hex() != prev_hash:
            raise BrokenChain(row["id"])
        entries.append(entry_json(row, exact_numbers=True))
        prev_hash = entries[-1]["hash"]
        if len(entries) >= _CHUNK:
            await flush()
    await flush()
    return facts


class _SegmentFile:
    """A segment being written: a temporary file beside its target, hashed as it is written.
    Blocking; each method runs in a worker thread."""

    def __init__(self, directory: Path, first_id: int) -> None:
        self.tmp = directory / f".audit-{first_id:012d}.{os.getpid()}.tmp"
        self.file = open(self.tmp, "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> None:
        data = text.encode()
        self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def commit(self, final: Path) -> tuple[bytes, int]:
        """Flush and fsync, rename into place, fsync the directory; the file's sha256 and size."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, final)
        _fsync_directory(final.parent)
        return self.sha256.digest(), self.size

    def abandon(self, written: list[Path]) -> None:
        """Best effort: remove what this attempt wrote."""
        self.file.close()
        for path in [self.tmp, *written]:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- checking a segment file (offline, or against its anchor) -----------------------------------

@dataclass(frozen=True)
class SegmentCheck:
    """The verdict on one segment file: its chain, and how it compares with what its manifest or
    anchor records (``mismatches`` names each fact that differs: ``sha256``, ``entries``,
    ``first_prev_hash``, ``last_hash``, ``last_id``, ``first_id``)."""

    chain: ChainCheck
    sha256: str
    mismatches: tuple[str, ...] = ()
    #: The line that is not an entry, when the chain check stopped on one.
    bad_line: int | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.mismatches


def check_segment_file(path: Path, expected: Mapping[str, Any] | None = None, *,
                       allow_gaps: bool = False) -> SegmentCheck:
    """Re-hash a segment (or any JSON-lines export) and compare it with ``expected``, a manifest
    or an anchor (hashes in hex; keys ``sha256``, ``entries``, ``first_id``, ``last_id``,
    ``first_prev_hash``, ``last_hash``; missing keys are not compared). ``allow_gaps``: as
    :func:`~hub.db.audit_hash.check_entries` (a filtered export). Blocking file I/O: call it
    from a worker thread inside trio. Raises ``OSError`` if the file cannot be read."""
    digest = hashlib.sha256()
    first_id: list[Any] = []

    def entries() -> Iterator[dict[str, Any]]:
        with open(path, "rb") as f:
            for entry in parse_entries(_hashed_lines(f, digest)):
                if not first_id:
                    first_id.append(entry.get("id"))
                yield entry

    bad_line = None
    try:
        chain = check_entries(entries(), allow_gaps=allow_gaps)
    except MalformedLine as exc:
        bad_line, chain = exc.line, ChainCheck(False, 0, None, None, None, problem="malformed")
    except UnicodeDecodeError:
        bad_line, chain = 0, ChainCheck(False, 0, None, None, None, problem="malformed")
    if bad_line is not None or not chain.ok:  # the check stopped early: the sha256 is the whole file's
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(partial(f.read, 1 << 20), b""):
                digest.update(block)
    sha256 = digest.hexdigest()
    actual: dict[str, Any] = {"sha256": sha256, "entries": chain.entries, "first_id": first_id[0] if first_id else None,
              "last_id": chain.head_id, "first_prev_hash": chain.start_prev_hash, "last_hash": chain.head_hash}
    mismatches = () if expected is None or not chain.ok else tuple(
        key for key, value in actual.items() if key in expected and expected[key] != value
        # A segment redacted after it was archived (redact_archived_subject) has new bytes, and the
        # same entries, ids and hashes: every entry still verifies, the redacted ones are counted.
        and not (key == "sha256" and chain.redacted))
    if expected is not None and not chain.ok and "sha256" in expected and expected["sha256"] != sha256:
        mismatches = ("sha256",)
    return SegmentCheck(chain, sha256, mismatches, bad_line)


def _hashed_lines(f: Any, digest: Any) -> Iterator[str]:
    for raw in f:
        digest.update(raw)
        yield raw.decode("utf-8")


def read_manifest(segment: Path) -> dict[str, Any] | None:
    """The manifest beside ``segment``, or None if there is none. Raises ``ValueError`` for one
    that is not a JSON object, ``OSError`` if it cannot be read."""
    path = manifest_path(segment)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    manifest = json.loads(text)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a segment manifest")
    return manifest


@dataclass(frozen=True)
class AnchoredSegment:
    """One row of ``audit_archive`` (hashes in hex)."""

    segment_id: int
    first_id: int
    last_id: int
    entries: int
    first_prev_hash: str
    last_hash: str
    file_name: str
    sha256: str
    archived_at: datetime

    def expected(self) -> dict[str, Any]:
        """What :func:`check_segment_file` compares the file with."""
        return {"sha256": self.sha256, "entries": self.entries, "first_id": self.first_id,
                "last_id": self.last_id, "first_prev_hash": self.first_prev_hash, "last_hash": self.last_hash}


async def anchored_segments(db: Database) -> list[AnchoredSegment]:
    """Every archived segment, oldest first."""
    rows = await db.fetch("SELECT segment_id, first_id, last_id, entries, first_prev_hash, last_hash, file_name,"
                          " file_sha256, archived_at FROM audit_archive ORDER BY first_id")
    return [AnchoredSegment(r["segment_id"], r["first_id"], r["last_id"], r["entries"],
                            bytes(r["first_prev_hash"]).hex(), bytes(r["last_hash"]).hex(), r["file_name"],
                            bytes(r["file_sha256"]).hex(), r["archived_at"]) for r in rows]



# --- erasure in archived segments ------------------------------------------------------------

async def redact_archived_subject(db: Database, *, archive_dir: Path, student_id: str, pseudonym: str,
                                  usernames: tuple[str, ...] = ()) -> int:
    """Erase the person's data from the archived segment files in ``archive_dir``, as
    :func:`hub.db.audit.redact_subject` does in the database (the same rule,
    :func:`hub.db.audit.redacted_entry`), and return how many entries it redacted.

    Each anchored segment holding entries about the person is rewritten (temporary file, fsync,
    rename, directory fsync) with those entries redacted (salt removed, ``redacted`` true) and
    its manifest updated (sha256, size, ``redacted_entries``). The chain in the file still
    verifies: a v2 entry's hash covers only its commitment; a redacted v1 entry is checked by its
    links. The anchor keeps the sha256 the segment had when archived; :func:`check_segment_file`
    accepts a different one only when the file's every entry verifies and some are redacted.

    The username is looked up in ``users`` (call it before the users row is blanked) and
    ``usernames`` adds any others. Holds the archive's advisory lock (one writer of the segment
    files at a time); runs in its own transaction, not the caller's: call it after the erasure
    commits (a failure leaves the files as they were, or wholly redacted, never half written).
    Segment files that are missing are skipped. Raises :class:`ArchiveWriteError` if a segment
    cannot be rewritten, :class:`~hub.db.audit_hash.MalformedLine` for a segment that is not JSON lines.
    """
    if not student_id or not pseudonym or pseudonym == student_id:
        raise ValueError("give a student id and a different, non-empty pseudonym")

    async def work(conn: asyncpg.Connection) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_ARCHIVE_LOCK)
        names = frozenset([*await subject_names(conn, student_id), *usernames])
        files = [r["file_name"] for r in await conn.fetch("SELECT file_name FROM audit_archive ORDER BY first_id")]
        loop = asyncio.get_running_loop()
        redacted = 0
        for name in files:
            redacted += await loop.run_in_executor(
                None, partial(_redact_segment, archive_dir / name, names=names, student_id=student_id,
                              pseudonym=pseudonym))
        return redacted

    return await db.run(work, transaction=True)


def _redact_segment(path: Path, *, names: frozenset[str], student_id: str, pseudonym: str) -> int:
    """Rewrite one segment with the person's entries redacted; how many. Blocking."""
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            entries = list(parse_entries(f))
    except FileNotFoundError:
        return 0
    count = 0
    for i, entry in enumerate(entries):
        if entry.get("redacted") is True or not is_about(entry, names, student_id):
            continue
        entries[i] = {**redacted_entry(entry, names, student_id, pseudonym), "personal_salt": None,
                      "redacted": True}
        count += 1
    if not count:
        return 0
    data = "".join(exact_json(e) + "\n" for e in entries).encode()
    _file_op(_write_atomically)(path, data)
    manifest = read_manifest(path)
    if manifest is not None:
        manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                        redacted_entries=int(manifest.get("redacted_entries", 0)) + count)
        _file_op(_write_atomically)(manifest_path(path), (json.dumps(manifest) + "\n").encode())
    return count
