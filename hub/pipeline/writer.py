"""The persistence writer: batches commits, writes them in one transaction, then acks.

Mailbox contract: bounded (see :data:`WRITER_MAILBOX`), ``Overflow.BLOCK``. A
full mailbox blocks the actors that tell it, which block the ingress, which
stops reading the MQTT socket: a slow or unavailable database pauses
ingestion instead of dropping anything. Its acknowledgements are also what
reopens the MQTT client's window of unacknowledged messages (``HUB_MAX_UNACKED``):
the messages of all the hub's queues together never exceed it.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Callable, Sequence

import asyncpg
import trio

from actors import Actor
from hub.core.bus import LiveBus, LiveUpdate
from hub.core.metrics import HubMetrics
from hub.core.records import Commit, Rejection
from hub.db import Database
from hub.db.ingest import REJECTIONS_KEPT_PER_MINUTE, BatchWritten, write_batch
from hub.mqtt import InboundMessage

log = logging.getLogger("hub.pipeline.writer")

WRITER_MAILBOX = 4096
MAX_BATCH = 2000
_RETRY_MAX_S = 2.0
# SQLSTATE classes that mean "the database is unavailable", not "this data is bad".
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "40")


def is_transient(exc: BaseException) -> bool:
    # InternalClientError: asyncpg's protocol state machine refusing a connection the server has
    # just terminated (e.g. "cannot switch to state 15; another operation (2) is in progress"
    # on a pooled connection that received the FATAL of a PostgreSQL shutdown). Never caused by data.
    if isinstance(exc, (OSError, ConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                        trio.TooSlowError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "").startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    return False


class PersistenceWriter(Actor):
    """Owns the pending batch. Flushes when its mailbox is momentarily empty or the batch is full,
    so batches grow by themselves under load while a commit is in flight."""

    def __init__(
        self, db: Database, bus: LiveBus, metrics: HubMetrics,
        acknowledge: Callable[[Sequence[InboundMessage]], None], *, max_batch: int = MAX_BATCH,
        rejections_kept_per_minute: int = REJECTIONS_KEPT_PER_MINUTE, retry_max_s: float = _RETRY_MAX_S,
    ) -> None:
        self._db = db
        self._bus = bus
        self._metrics = metrics
        self._acknowledge = acknowledge
        self._max_batch = max_batch
        #: Rejection rows kept per source and reason a minute; the rest are tallied (hub/db/ingest.py).
        #: Either way the rejection is committed, counted in the metrics, then acknowledged.
        self._kept_per_minute = rejections_kept_per_minute
        #: The longest pause between attempts at a batch while the database is unavailable.
        self._retry_max_s = retry_max_s
        self._batch: list[Commit] = []
        self._failed: set[bytes] = set()

    async def handle(self, message: Commit) -> None:
        self._batch.append(message)
        if self.ref.depth == 0 or len(self._batch) >= self._max_batch:
            batch, self._batch = self._batch, []
            await self._commit(batch)

    async def stopping(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            await self._commit(batch)

    async def _commit(self, batch: list[Commit]) -> None:
        delay = 0.05
        self._failed = set()  # dedup keys stored as persistence_error (for Commit.on_done)
        while True:
            try:
                written = await self._write(batch)
                break
            except Exception as exc:  # noqa: BLE001 - classified just below
                self._metrics.db_write_failures.inc()
                if not is_transient(exc):
                    log.warning("a batch of %d commits failed on its data (%r); retrying them one by one",
                                len(batch), exc)
                    try:
                        written = await self._commit_one_by_one(batch)
                        break
                    except Exception as again:  # noqa: BLE001
                        if not is_transient(again):
                            raise
                        # The database went away meanwhile: retry the whole batch. Crashing here
                        # would drop the batch unacknowledged (redelivered only on a reconnect).
                        exc = again
                log.warning("database unavailable (%s); retrying %d commits in %.2fs", exc, len(batch), delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
        self._after_commit(batch, written)

    async def _write(self, batch: Sequence[Commit]) -> BatchWritten:
        return await write_batch(self._db, batch, rejections_kept_per_minute=self._kept_per_minute)

    async def _commit_one_by_one(self, batch: Sequence[Commit]) -> BatchWritten:
        """A batch failed on its data: find the bad commits so the good ones still land.

        A commit that fails alone is replaced by a rejection with reason
        ``persistence_error`` (so it is kept, counted and acknowledged).
        """
        fresh: set[bytes] = set()
        live: list[LiveUpdate] = []
        for commit in batch:
            try:
                written = await self._write([commit])
            except Exception as exc:  # noqa: BLE001
                if is_transient(exc):
                    raise
                log.error("commit %r failed permanently: %s", commit.dedup_key, exc)
                self._failed.add(commit.dedup_key)
                written = await self._write([_as_persistence_error(commit, exc)])
            fresh |= written.fresh
            live += written.live
        return BatchWritten(fresh, live)

    def _after_commit(self, batch: list[Commit], written: BatchWritten) -> None:
        fresh = written.fresh
        now = time.time()
        metrics = self._metrics
        metrics.batch_size.observe(len(batch))
        outcomes: Counter[tuple[str, str]] = Counter()
        # One PUBACK write for the whole batch: per message it was 6-9 % of the hub's CPU.
        messages = [commit.message for commit in batch if commit.message is not None]
        self._acknowledge(messages)
        for message in messages:
            metrics.commit_latency.observe(now - message.received_at)
        for commit in batch:
            if commit.on_done is not None:
                commit.on_done(commit.dedup_key not in self._failed)
            if commit.dedup_key not in fresh:
                continue  # a redelivery: already committed once, changes nothing
            if commit.outcome is not None:
                outcomes[commit.outcome] += 1
            for topic, update in commit.live:
                self._bus.publish(topic, update)
        # After the commits' own updates, so a flag reaches the roster after the check-in it concerns.
        for topic, update in written.live:
            self._bus.publish(topic, update)
        # Counters once per batch and label, not once per message (measurable at thousands/s).
        for (what, label), count in outcomes.items():
            if what == "ingested":
                metrics.events_ingested.labels(kind=label).inc(count)
            else:
                metrics.events_rejected.labels(reason=label).inc(count)

def _as_persistence_error(commit: Commit, exc: Exception) -> Commit:
    message = commit.message
    rejection = Rejection(
        reason="persistence_error",
        detail=f"{type(exc).__name__}: {exc}"[:500],
        topic=message.topic if message else "(internal)",
        payload=message.payload if message else b"",
        received_at=datetime.now(timezone.utc),
    )
    # Same key, same ledger day (signed_at): a later redelivery finds it.
    return Commit(commit.dedup_key, (rejection,), message, (), ("rejected", "persistence_error"),
                  signed_at=commit.signed_at)
