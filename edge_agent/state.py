"""The agent's small durable state, in one SQLite file beside the outbox.

* ``kv``: pushed configuration overrides, the measured clock offset.
* ``commands``: hub commands already executed and their answer (a redelivered
  command is answered again, never run twice).
* ``sealed``: enrolment data (PIN/page → student maps, fingerprint templates),
  AES-256-GCM encrypted; see :mod:`edge_agent.enrolment`.
* ``adms_*``: per terminal the ATTLOG stamp, the punches already taken (so
  re-sent punches are not duplicated), punches waiting for their PIN to be
  enrolled, and commands queued for the terminal.

Concurrency: every method is synchronous and short (local SQLite); a lock
makes the object safe from any thread. Async code calls the methods through
``asyncio.to_thread`` when they write, so the event loop never waits on fsync.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

# Rollback journal, not WAL: writes are rare (commands, punches), and one file
# descriptor per agent matters when a simulator runs hundreds of agents in a process.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id BLOB PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, done_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sealed (name TEXT PRIMARY KEY, kid TEXT NOT NULL, nonce BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS adms_stamps (sn TEXT PRIMARY KEY, attlog_stamp TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adms_punches (sn TEXT NOT NULL, key TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (sn, key));
CREATE TABLE IF NOT EXISTS adms_unmapped (sn TEXT NOT NULL, key TEXT NOT NULL, pin TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, PRIMARY KEY (sn, key));
CREATE TABLE IF NOT EXISTS adms_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sn TEXT NOT NULL, cmd TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued', return_code INTEGER, created REAL NOT NULL, sent REAL, done REAL);
"""
#: Executed commands remembered (the hub never redelivers older ones: they expire).
KEEP_COMMANDS = 1000
#: Punch keys remembered per terminal: far more than a terminal re-sends after an outage.
KEEP_PUNCH_DAYS = 45


@dataclass(frozen=True)
class DoneCommand:
    status: str
    detail: str


@dataclass(frozen=True)
class Unmapped:
    sn: str
    key: str
    pin: str
    ts_ms: int


class AgentState:
    def __init__(self, path: "str | Path") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> "_Tx":
        return _Tx(self._db, self._lock)

    # ----------------------------------------------------------------- kv

    def get_json(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_json(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (key, json.dumps(value)))

    # ----------------------------------------------------------- commands

    def done_command(self, command_id: bytes) -> DoneCommand | None:
        with self._lock:
            row = self._db.execute("SELECT status, detail FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else DoneCommand(*row)

    def record_command(self, command_id: bytes, name: str, status: str, detail: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO commands VALUES (?, ?, ?, ?, ?)",
                       (command_id, name, status, detail, time.time()))
            db.execute("DELETE FROM commands WHERE id NOT IN "
                       "(SELECT id FROM commands ORDER BY done_at DESC LIMIT ?)", (KEEP_COMMANDS,))

    # ------------------------------------------------------------- sealed

    def sealed_rows(self) -> list[tuple[str, str, bytes, bytes]]:
        with self._lock:
            return self._db.execute("SELECT name, kid, nonce, data FROM sealed ORDER BY name").fetchall()

    def put_sealed(self, rows: Iterable[tuple[str, str, bytes, bytes]], delete: Iterable[str] = ()) -> None:
        """Write and delete sealed rows in one transaction (a rotation is all or nothing)."""
        with self._tx() as db:
            db.executemany("DELETE FROM sealed WHERE name = ?", [(n,) for n in delete])
            db.executemany("INSERT OR REPLACE INTO sealed VALUES (?, ?, ?, ?)", list(rows))

    # --------------------------------------------------------------- ADMS

    def attlog_stamp(self, sn: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT attlog_stamp FROM adms_stamps WHERE sn = ?", (sn,)).fetchone()
        return None if row is None else row[0]

    def new_punch_keys(self, sn: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` this terminal has not delivered before."""
        keys = list(dict.fromkeys(keys))
        with self._lock:
            seen = {k for (k,) in self._db.execute(
                f"SELECT key FROM adms_punches WHERE sn = ? AND key IN ({','.join('?' * len(keys))})",
                (sn, *keys))} if keys else set()
        return set(keys) - seen

    def record_punches(self, sn: str, keys: Iterable[str], stamp: str | None,
                       unmapped: Iterable[Unmapped] = ()) -> None:
        """After the punches are in the outbox (or parked as unmapped): remember them and the stamp."""
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO adms_punches VALUES (?, ?, ?)", [(sn, k, now) for k in keys])
            db.executemany("INSERT OR IGNORE INTO adms_unmapped VALUES (?, ?, ?, ?)",
                           [(u.sn, u.key, u.pin, u.ts_ms) for u in unmapped])
            if stamp:
                db.execute("INSERT INTO adms_stamps VALUES (?, ?) ON CONFLICT (sn) DO UPDATE "
                           "SET attlog_stamp = excluded.attlog_stamp", (sn, stamp))
            db.execute("DELETE FROM adms_punches WHERE seen_at < ?", (now - KEEP_PUNCH_DAYS * 86400,))

    def unmapped_punches(self, pins: Iterable[str]) -> list[Unmapped]:
        pins = list(pins)
        if not pins:
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT sn, key, pin, ts_ms FROM adms_unmapped WHERE pin IN ({','.join('?' * len(pins))}) "
                "ORDER BY ts_ms", pins).fetchall()
        return [Unmapped(*r) for r in rows]

    def count_unmapped(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM adms_unmapped").fetchone()[0]

    def forget_unmapped(self, items: Iterable[Unmapped]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM adms_unmapped WHERE sn = ? AND key = ?", [(u.sn, u.key) for u in items])

    def queue_terminal_commands(self, sns: Iterable[str], cmds: Iterable[str]) -> None:
        now = time.time()
        cmds = list(cmds)
        with self._tx() as db:
            db.executemany("INSERT INTO adms_commands (sn, cmd, created) VALUES (?, ?, ?)",
                           [(sn, c, now) for sn in sns for c in cmds])

    def take_terminal_commands(self, sn: str, limit: int = 20) -> list[tuple[int, str]]:
        """Queued commands for ``sn``, marked sent (a terminal that never reports keeps them 'sent')."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute("SELECT id, cmd FROM adms_commands WHERE sn = ? AND state = 'queued' "
                              "ORDER BY id LIMIT ?", (sn, limit)).fetchall()
            db.executemany("UPDATE adms_commands SET state = 'sent', sent = ? WHERE id = ?",
                           [(now, i) for i, _ in rows])
        return rows

    def finish_terminal_commands(self, sn: str, results: Iterable[tuple[int, int]]) -> int:
        """Record ``(id, return code)`` results; returns how many matched a sent command."""
        now = time.time()
        n = 0
        with self._tx() as db:
            for command_id, code in results:
                cur = db.execute("UPDATE adms_commands SET state = ?, return_code = ?, done = ? "
                                 "WHERE id = ? AND sn = ? AND state = 'sent'",
                                 ("ok" if code >= 0 else "failed", code, now, command_id, sn))
                n += cur.rowcount
        return n

    def terminal_commands(self, sn: str) -> list[tuple[int, str, str, int | None]]:
        with self._lock:
            return self._db.execute("SELECT id, cmd, state, return_code FROM adms_commands WHERE sn = ? "
                                    "ORDER BY id", (sn,)).fetchall()

    def known_terminals(self) -> list[str]:
        with self._lock:
            return [sn for (sn,) in self._db.execute("SELECT sn FROM adms_stamps ORDER BY sn")]

    def note_terminal(self, sn: str) -> None:
        """A terminal shook hands: remember it (roster pushes go to every known terminal)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO adms_stamps VALUES (?, '')", (sn,))


class _Tx:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
