"""Durable SQLite outbox: every event is stored, signed, before it is published.

Lifecycle of a row: ``append`` (encode + sign + insert, one transaction) →
published with QoS 1 → ``delete`` after the broker's PUBACK. A crash at any
point leaves the row in place and it is published again after restart
(at-least-once; the hub deduplicates by event id).

Durability settings: WAL journal + ``synchronous=FULL``. In WAL mode NORMAL
already survives a *process* crash, but a power cut may roll back the last
commits; a classroom PC that is simply unplugged must not lose a student's
check-in, so each commit fsyncs the WAL. Measured on the dev VM (virtio disk,
500 single-row transactions): NORMAL 16 µs/append, FULL ~330 µs/append,
~380 µs/delete. Cheap at classroom rates (a few events per second), but an
fsync on an SD card can take tens of ms, which is why :class:`AsyncOutbox`
runs every call in one dedicated thread instead of on the event loop.

Sequence numbers: ``seq`` comes from a counter kept in the same database
(``meta.next_seq``), committed together with the row, so it is strictly
increasing per device across restarts, even when the table becomes empty
(SQLite would reuse a deleted max rowid).

Bounding: at most ``max_rows`` rows. When full, the oldest *telemetry* row
(``sensor_reading`` or ``heartbeat``) is evicted to make room; if there is
none and the new event is telemetry, the new one is dropped. Check-ins
(``qr_scan``, ``biometric_match``) are never evicted: when the outbox is full
of them, ``append`` raises :class:`OutboxFull`, so the caller knows (and can
tell the student to rescan) instead of losing it silently. Both are counted
in the persistent ``counters`` table (``dropped.<kind>``, ``rejected_full``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")

#: Kinds that may be evicted when the outbox is full (stale telemetry is cheap to lose).
DROPPABLE_KINDS = frozenset({"sensor_reading", "heartbeat"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS meta (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT    NOT NULL,
    next_seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be used (e.g. it belongs to another device)."""


class OutboxFull(RuntimeError):
    """The outbox is full of events that must not be dropped; the new check-in was refused."""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    payload: bytes
    created_ms: int


class Outbox:
    """The outbox database of one device. Blocking; not thread-safe.

    Use it from one thread only (SQLite's ``check_same_thread`` enforces it);
    :class:`AsyncOutbox` provides that thread for asyncio code. ``depth``,
    ``next_seq`` and ``counters`` are plain attributes, replaced (never mutated
    in place), so other threads may read them.
    """

    def __init__(self, path: "str | Path", *, device_id: str, max_rows: int = 10_000) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.path = Path(path)
        self.device_id = device_id
        self.max_rows = max_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE/COMMIT ourselves.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            with self._txn():
                row = self._db.execute("SELECT device_id, next_seq FROM meta").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta (id, device_id, next_seq) VALUES (1, ?, 1)",
                                     (device_id,))
                    row = (device_id, 1)
            if row[0] != device_id:
                raise OutboxError(f"{self.path} is the outbox of device {row[0]!r}, not {device_id!r}")
            self.next_seq: int = row[1]
            self.depth: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            #: Held while ``depth`` drops in :meth:`delete` together with the caller's own
            #: bookkeeping (``then``), so a reader on another thread never sees one without the other.
            self.depth_lock = threading.Lock()
            self.counters: dict[str, int] = dict(self._db.execute("SELECT name, value FROM counters"))
        except BaseException:
            self._db.close()
            raise

    def _txn(self) -> "_Txn":
        return _Txn(self._db)

    def _bump(self, name: str) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))
        # Copy-on-write: other threads may be reading (copying) the dict right now.
        self.counters = {**self.counters, name: self.counters.get(name, 0) + 1}

    def append(self, kind: str, encode: Callable[[int], bytes]) -> int | None:
        """Assign the next ``seq``, call ``encode(seq)`` for the signed bytes and store them.

        Returns the seq, or ``None`` if the outbox was full and this telemetry
        event was dropped. Raises :class:`OutboxFull` for a check-in that does
        not fit, and whatever ``encode`` raises (nothing is stored then and the
        seq is not used).
        """
        seq = self.next_seq
        payload = encode(seq)  # first: if it raises, nothing has changed yet
        with self._txn():
            evicted: tuple[int, str] | None = None
            if self.depth >= self.max_rows:
                evicted = self._db.execute(
                    "SELECT seq, kind FROM outbox WHERE kind IN ({}) ORDER BY seq LIMIT 1".format(
                        ",".join("?" * len(DROPPABLE_KINDS))), tuple(DROPPABLE_KINDS)).fetchone()
                if evicted is None:
                    if kind in DROPPABLE_KINDS:
                        self._bump(f"dropped.{kind}")
                        return None
                    self._bump("rejected_full")
                    # Commit the counter, then refuse: the caller must hear about it.
                    raise _Refuse()
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (evicted[0],))
                self._bump(f"dropped.{evicted[1]}")
            self._db.execute("INSERT INTO outbox (seq, kind, payload, created_ms) VALUES (?, ?, ?, ?)",
                             (seq, kind, payload, int(time.time() * 1000)))
            self._db.execute("UPDATE meta SET next_seq = ?", (seq + 1,))
        self.next_seq = seq + 1
        if evicted is None:
            self.depth += 1
        return seq

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Rows with ``seq > after_seq`` in seq order (oldest first)."""
        cur = self._db.execute(
            "SELECT seq, kind, payload, created_ms FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit))
        return [OutboxRow(*r) for r in cur]

    def delete(self, seqs: Iterable[int], then: Callable[[], object] | None = None) -> int:
        """Remove acknowledged rows (one transaction); unknown seqs are ignored. Returns rows removed.

        ``then`` runs after the commit, under ``depth_lock``, in the same step as ``depth`` drops.
        """
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._txn():
            removed = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]).rowcount
        with self.depth_lock:
            self.depth -= removed
            if then is not None:
                then()
        return removed

    def count_by_kind(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT kind, count(*) FROM outbox GROUP BY kind"))

    def close(self) -> None:
        self._db.close()


class _Refuse(Exception):
    """Internal: commit the transaction, then raise OutboxFull."""


class _Txn:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rollback on error, but commit on :class:`_Refuse`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None or exc_type is _Refuse:
            self._db.execute("COMMIT")
            if exc_type is _Refuse:
                raise OutboxFull("outbox is full of check-ins; the new one was refused") from None
        else:
            self._db.execute("ROLLBACK")


class AsyncOutbox:
    """An :class:`Outbox` owned by one dedicated worker thread, for asyncio code.

    Every method runs in that thread, in call order, so SQLite access is
    serialized without locks and fsyncs never stall the event loop.
    Construction and :meth:`close` block the caller briefly (open/close the
    file). Cancellation: cancelling an awaiting task does not undo the
    operation, which still completes in the thread; an ``append`` whose
    caller was cancelled may therefore still be published (at-least-once).
    """

    def __init__(self, path: "str | Path", *, device_id: str, max_rows: int = 10_000) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"outbox-{device_id}")
        try:
            self._outbox: Outbox = self._executor.submit(
                Outbox, path, device_id=device_id, max_rows=max_rows).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise OutboxError("outbox is closed")
        # submit + wrap_future rather than loop.run_in_executor(executor): trio-asyncio
        # loops (what asyncio.run() creates once trio_asyncio is imported, as in the
        # hub's processes) refuse executors other than their own.
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    @property
    def depth(self) -> int:
        return self._outbox.depth

    @property
    def next_seq(self) -> int:
        return self._outbox.next_seq

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._outbox.counters)

    async def append(self, kind: str, encode: Callable[[int], bytes]) -> int | None:
        return await self._call(self._outbox.append, kind, encode)

    async def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        return await self._call(self._outbox.pending, after_seq, limit)

    async def delete(self, seqs: Iterable[int], then: Callable[[], object] | None = None) -> int:
        return await self._call(self._outbox.delete, list(seqs), then)

    @property
    def depth_lock(self) -> threading.Lock:
        return self._outbox.depth_lock

    async def count_by_kind(self) -> dict[str, int]:
        return await self._call(self._outbox.count_by_kind)

    def close(self) -> None:
        """Close the database and stop the thread (waits for queued operations). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._outbox.close).result()
        self._executor.shutdown(wait=True)
