"""Daily range partitions of a table: list, create (moving rows out of DEFAULT), drop.

One home for the partition mechanics shared by telemetry (``sensor_readings``,
hub/db/telemetry.py) and retention (``events``, ``processed_messages``,
hub/db/retention.py). A :class:`DailyPartitions` names a parent table that is
``PARTITION BY RANGE (column)`` with a DEFAULT partition ``<parent>_default``
and one partition per UTC day, ``<parent>_pYYYYMMDD``. The column is a
``timestamptz`` or a ``date`` (``by_date``).

Concurrency contract: every function here runs on the caller's connection
(inside the caller's advisory lock); :func:`create_partition` is one
transaction that holds the DEFAULT partition ``ACCESS EXCLUSIVE`` from the
move to the attach (the batch writer's inserts into DEFAULT wait that long),
:func:`drop_partition` is one ``DROP TABLE`` in the caller's transaction.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import asyncpg

log = logging.getLogger("hub.db.partitions")


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


@dataclass(frozen=True)
class DailyPartitions:
    """A table range-partitioned by UTC day on ``column``, with a DEFAULT partition."""

    parent: str
    column: str
    #: The partition key is a ``date`` (else a ``timestamptz``).
    by_date: bool = False

    @property
    def default(self) -> str:
        return f"{self.parent}_default"

    def name(self, day: date) -> str:
        return f"{self.parent}_p{day:%Y%m%d}"

    def bounds(self, day: date) -> tuple[date | datetime, date | datetime]:
        """The query parameters of ``day``'s range, [lo, hi), in the key column's type."""
        nxt = day + timedelta(days=1)
        return (day, nxt) if self.by_date else (day_start(day), day_start(nxt))

    def _literal(self, day: date) -> str:
        # DDL takes no parameters; the value is a date we built, never client input.
        return f"'{day:%Y-%m-%d}'" if self.by_date else f"'{day:%Y-%m-%d} 00:00:00+00'"

    async def existing(self, conn: asyncpg.Connection) -> dict[date, str]:
        """The daily partitions attached now, by day (one catalog query)."""
        pattern = re.compile(rf"^{re.escape(self.parent)}_p(\d{{8}})$")
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = $1::regclass", self.parent)
        found = {}
        for r in rows:
            match = pattern.match(r["relname"])
            if match:
                found[datetime.strptime(match.group(1), "%Y%m%d").date()] = r["relname"]
        return found

    async def create_partition(self, conn: asyncpg.Connection, day: date) -> int:
        """Create ``day``'s partition, moving the DEFAULT partition's rows of that day into it first.

        Returns the number of rows moved. One transaction.
        """
        name = self.name(day)
        lo, hi = self.bounds(day)
        async with conn.transaction():
            # Hold off the writer's inserts into DEFAULT until the new partition is attached:
            # a row of that day inserted in between would make the ATTACH's check of DEFAULT fail.
            await conn.execute(f"LOCK TABLE {self.default} IN ACCESS EXCLUSIVE MODE")
            await conn.execute(f"CREATE TABLE {name} (LIKE {self.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            status = await conn.execute(
                f"WITH moved AS (DELETE FROM {self.default} WHERE {self.column} >= $1 AND {self.column} < $2"
                f" RETURNING *) INSERT INTO {name} SELECT * FROM moved", lo, hi)
            await conn.execute(
                f"ALTER TABLE {self.parent} ATTACH PARTITION {name}"
                f" FOR VALUES FROM ({self._literal(day)}) TO ({self._literal(day + timedelta(days=1))})")
        return int(status.split()[-1])

    async def create_missing(self, conn: asyncpg.Connection, existing: dict[date, str], first: date,
                             last: date) -> tuple[list[date], int]:
        """Create every partition of [first, last] that is not in ``existing``: (days created, rows moved).

        Under a ``lock_timeout`` set by the caller, a lock not granted in time stops the
        creation there (logged; what was created is returned): the rows of the days still
        missing wait in DEFAULT for the next pass.
        """
        created: list[date] = []
        moved = 0
        day = first
        while day <= last:
            if day not in existing:
                try:
                    moved += await self.create_partition(conn, day)
                except asyncpg.LockNotAvailableError:
                    log.warning("%s is busy (lock timeout): partitions from %s on are created next pass",
                                self.default, day)
                    break
                created.append(day)
            day += timedelta(days=1)
        return created, moved

    async def partition_rows(self, conn: asyncpg.Connection, name: str) -> int:
        """The planner's estimate of a partition's rows (no scan: for reports and dry runs)."""
        estimate = await conn.fetchval("SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", name)
        return max(0, int(estimate or 0))

    async def drop_partition(self, conn: asyncpg.Connection, name: str) -> None:
        """Drop one daily partition (its rows go with it)."""
        await conn.execute(f"DROP TABLE {name}")
