"""What a flood of rejected messages costs in PostgreSQL: HEAD's one-whole-row-per-rejection
against bounded rows (size, SHA-256, 256-byte head) capped per source and reason a minute.

One sitting, three fresh databases on the same server, the same messages:

* ``head``: what HEAD's writer did, reproduced with its exact INSERT (every
  rejection a row, the payload whole) into a copy of the pre-0018 table;
* ``bounded``: ``write_batch`` with the cap off (every rejection a bounded row);
* ``capped``: ``write_batch`` with ``Settings.rejections_kept_per_minute``'s default.

The flood: ``--messages`` rejections of ``--payload`` random bytes (random, so
TOAST compression flatters nobody) from one registered device's topic, in
writer batches of ``--batch``. Prints rows, bytes on disk (table + TOAST +
indexes, after the writes) and time per batch. Nothing asserts anything.

    .venv/bin/python bench/rejection_storage.py [--messages 5000] [--payload 16384] [--batch 500]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402 - the path above first
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    migrate_and_seed,
    new_run_id,
    percentile,
    run_db,
)

# HEAD's statement (hub/db/ingest.py before issue 12), into HEAD's table shape.
_HEAD_TABLE = ("CREATE TABLE head_rejected_events (id bigserial PRIMARY KEY, dedup_key bytea NOT NULL UNIQUE,"
               " event_id uuid, device_id text, topic text NOT NULL, kind text, reason text NOT NULL,"
               " detail text NOT NULL DEFAULT '', session_id text, payload bytea NOT NULL,"
               " received_at timestamptz NOT NULL)")
_HEAD_INSERT = ("INSERT INTO head_rejected_events (dedup_key, event_id, device_id, topic, kind, reason, detail,"
                " session_id, payload, received_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                " ON CONFLICT (dedup_key) DO NOTHING")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--payload", type=int, default=16384, help="bytes per rejected payload")
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()

    import trio

    from hub.core.config import Settings

    run = new_run_id()
    names = {system: f"bench_rejections_{system}_{run}" for system in ("head", "bounded", "capped")}
    created: list[str] = []
    try:
        version = create_databases(args.database_url, list(names.values()), created)
        payloads = [os.urandom(args.payload) for _ in range(args.messages)]
        results = {}
        for system, name in names.items():
            url = database_url_for(args.database_url, name)
            campus = trio.run(partial(migrate_and_seed, url, rooms=1, students=1))
            cap = {"head": None, "bounded": 10**9, "capped": Settings.rejections_kept_per_minute}[system]
            results[system] = run_db(url, partial(_flood, args=args, campus=campus, payloads=payloads, cap=cap))
        _print(args, version, results)
    finally:
        drop_databases(args.database_url, created)


async def _flood(db, *, args, campus, payloads: list[bytes], cap: int | None) -> dict:
    from hub.core.records import Commit, Rejection, digest_key
    from hub.db.ingest import write_batch

    topic = f"campushub/v1/dev/{campus.devices[0].device_id}/up"
    if cap is None:
        await db.execute(_HEAD_TABLE)
    at = datetime.now(timezone.utc)
    commits = [Commit(digest_key(topic, p), (Rejection("oversize", "", topic, p, at),), None, (),
                      ("rejected", "oversize")) for p in payloads]
    times = []
    for start in range(0, len(commits), args.batch):
        batch = commits[start:start + args.batch]
        t = time.perf_counter()
        if cap is None:
            async def head(conn, batch=batch):
                await conn.execute("INSERT INTO processed_messages (dedup_key, ledger_day)"
                                   " SELECT unnest($1::bytea[]), current_date", [c.dedup_key for c in batch])
                await conn.executemany(_HEAD_INSERT, [
                    (c.dedup_key, None, None, topic, None, "oversize", "", None, c.effects[0].payload, at)
                    for c in batch])
            await db.run(head, transaction=True)
        else:
            await write_batch(db, batch, rejections_kept_per_minute=cap)
        times.append(time.perf_counter() - t)
    table = "head_rejected_events" if cap is None else "rejected_events"
    rows = await db.fetchval(f"SELECT count(*) FROM {table}")
    size = await db.fetchval(f"SELECT pg_total_relation_size('{table}')")
    if cap is not None:
        size += await db.fetchval("SELECT pg_total_relation_size('rejection_tallies')")
    # Partitioned since migration 0023: the parent has no storage of its own, its partitions do.
    ledger = await db.fetchval(
        "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('processed_messages')")
    times.sort()
    return {"rows": rows, "bytes": size, "ledger_bytes": ledger, "batch_p50_ms": percentile(times, 50) * 1000,
            "batch_max_ms": times[-1] * 1000, "total_s": sum(times)}


def _print(args, version: str, results: dict) -> None:
    print(f"rejection storage: {args.messages:,} rejections of {args.payload:,} random bytes from one device,"
          f" batches of {args.batch}, PostgreSQL {version}")
    print(f"{'system':<9} {'rows':>7} {'rejections MB':>14} {'dedup ledger MB':>16} {'batch p50 ms':>13}"
          f" {'batch max ms':>13} {'total s':>8}")
    for system, r in results.items():
        print(f"{system:<9} {r['rows']:>7,} {r['bytes'] / 1e6:>14.2f} {r['ledger_bytes'] / 1e6:>16.2f}"
              f" {r['batch_p50_ms']:>13.1f} {r['batch_max_ms']:>13.1f} {r['total_s']:>8.2f}")
    head = results["head"]
    for system in ("bounded", "capped"):
        r = results[system]
        print(f"{system} vs head: {head['bytes'] / r['bytes']:.0f}x fewer bytes, "
              f"{r['total_s'] / head['total_s']:.2f}x the write time")


if __name__ == "__main__":
    main()
