"""Rejections in storage: bounded rows (size, hash, head), a per-source cap a minute, exact tallies."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest
import trio

from hub.core.campus import Campus
from hub.core.records import Commit, Rejection, digest_key
from hub.db import Database, open_database
from hub.db.ingest import (
    REJECTED_DETAIL_CHARS,
    REJECTED_PAYLOAD_HEAD_BYTES,
    REJECTED_TOPIC_CHARS,
    UNKNOWN_SOURCE,
    write_batch,
)
from hub.db.rejections import list_rejections, list_suppressed, rejection_counts
from hub.db.seed import ensure_campus

pytestmark = pytest.mark.integration

MINUTE = datetime(2026, 3, 2, 10, 15, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


@pytest.fixture
async def campus(fresh_db: Database) -> Campus:
    return await ensure_campus(fresh_db, rooms=1, students=2, now=MINUTE)


def _rejected(topic: str, payload: bytes, reason: str = "malformed", detail: str = "",
              at: datetime = MINUTE) -> Commit:
    rejection = Rejection(reason=reason, detail=detail, topic=topic, payload=payload, received_at=at)
    return Commit(digest_key(topic, payload), (rejection,), None, (), ("rejected", reason))


async def test_a_32_mib_payload_and_a_60000_character_topic_are_kept_bounded(fresh_db, campus):
    device = campus.devices[0].device_id
    huge = os.urandom(1024) * (32 * 1024)  # 32 MiB
    long_topic = f"campushub/v1/dev/{'x' * 60_000}/up"
    await write_batch(fresh_db, [
        _rejected(f"campushub/v1/dev/{device}/up", huge, "oversize"),
        _rejected(long_topic, b"{}", "bad_topic", detail=long_topic),
    ])
    row = await fresh_db.fetchrow(
        "SELECT payload, payload_size, payload_sha256, pg_column_size(payload) AS stored FROM rejected_events"
        " WHERE reason = 'oversize'")
    assert row["payload_size"] == 33_554_432
    assert bytes(row["payload_sha256"]) == hashlib.sha256(huge).digest()
    assert bytes(row["payload"]) == huge[:REJECTED_PAYLOAD_HEAD_BYTES]
    assert row["stored"] <= REJECTED_PAYLOAD_HEAD_BYTES + 4
    topic_row = await fresh_db.fetchrow(
        "SELECT char_length(topic) AS topic, char_length(detail) AS detail FROM rejected_events"
        " WHERE reason = 'bad_topic'")
    assert (topic_row["topic"], topic_row["detail"]) == (REJECTED_TOPIC_CHARS, REJECTED_DETAIL_CHARS)
    # The console's listing reports the whole message's size and hash.
    listed = {r.reason: r for r in (await list_rejections(fresh_db, 10, 0)).items}
    assert listed["oversize"].payload_bytes == 33_554_432
    assert listed["oversize"].payload_sha256 == hashlib.sha256(huge).digest()
    # The table refuses an unbounded row, whoever writes it.
    with pytest.raises(Exception, match="rejected_events_payload_head"):
        await fresh_db.execute(
            "INSERT INTO rejected_events (dedup_key, topic, reason, payload, received_at)"
            " VALUES ($1, 't', 'x', $2, now())", os.urandom(16), b"x" * 257)


async def test_rejections_beyond_the_cap_a_minute_are_counted_exactly_and_not_stored(fresh_db, campus):
    device = campus.devices[0].device_id
    registered = f"campushub/v1/dev/{device}/up"
    cap = 10
    # Three batches from one registered device: 75 rejections, 10 rows.
    for batch in range(3):
        await write_batch(fresh_db, [_rejected(registered, b"junk%d-%d" % (batch, i)) for i in range(25)],
                          rejections_kept_per_minute=cap)
    # 30 invented device ids: one shared "unknown" source, so still 10 rows.
    await write_batch(fresh_db, [_rejected(f"campushub/v1/dev/ghost-{i}/up", b"junk") for i in range(30)],
                      rejections_kept_per_minute=cap)

    # Two writers at once (e.g. two hubs) on another reason: the cap holds exactly.
    async def concurrent(tag: int) -> None:
        await write_batch(fresh_db, [_rejected(registered, b"sig%d-%d" % (tag, i), "bad_signature")
                                     for i in range(25)], rejections_kept_per_minute=cap)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(concurrent, 1)
        nursery.start_soon(concurrent, 2)

    rows = {(r["ghost"], r["reason"]): r["n"] for r in await fresh_db.fetch(
        "SELECT coalesce(substring(topic from 'dev/([^/]+)/'), '?') LIKE 'ghost-%' AS ghost, reason,"
        " count(*) AS n FROM rejected_events GROUP BY 1, 2")}
    assert rows == {(False, "malformed"): cap, (True, "malformed"): cap, (False, "bad_signature"): cap}
    tallies = {(r["source"], r["reason"]): (r["offered"], r["suppressed"]) for r in await fresh_db.fetch(
        "SELECT source, reason, offered, suppressed FROM rejection_tallies")}
    assert tallies == {(device, "malformed"): (75, 65), (UNKNOWN_SOURCE, "malformed"): (30, 20),
                       (device, "bad_signature"): (50, 40)}
    # The console's counts per reason stay exact: kept rows plus the ones only counted.
    assert await rejection_counts(fresh_db) == {"malformed": 105, "bad_signature": 50}
    suppressed = await list_suppressed(fresh_db, 10)
    assert {(s.source, s.reason, s.suppressed) for s in suppressed} == {
        (device, "malformed", 65), (UNKNOWN_SOURCE, "malformed", 20), (device, "bad_signature", 40)}


async def test_the_cap_is_per_minute(fresh_db, campus):
    topic = f"campushub/v1/dev/{campus.devices[0].device_id}/up"
    for minute in range(3):
        at = MINUTE + timedelta(minutes=minute)
        await write_batch(fresh_db, [_rejected(topic, b"m%d-%d" % (minute, i), at=at) for i in range(5)],
                          rejections_kept_per_minute=2)
    assert await fresh_db.fetchval("SELECT count(*) FROM rejected_events") == 6
    assert await fresh_db.fetchval("SELECT sum(suppressed) FROM rejection_tallies") == 9


async def test_a_redelivered_rejection_is_neither_stored_nor_tallied_twice(fresh_db, campus):
    commit = _rejected(f"campushub/v1/dev/{campus.devices[0].device_id}/up", b"once")
    first = await write_batch(fresh_db, [commit], rejections_kept_per_minute=1)
    again = await write_batch(fresh_db, [commit, commit], rejections_kept_per_minute=1)
    assert first.fresh == {commit.dedup_key} and again.fresh == set()
    assert await fresh_db.fetchval("SELECT sum(offered) FROM rejection_tallies") == 1
    assert await fresh_db.fetchval("SELECT count(*) FROM rejected_events") == 1
