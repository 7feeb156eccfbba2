"""What a burst of login audit entries costs the attendance writers that share the audit chain.

Security entries (hub/db/security_audit.py) and attendance changes are one
hash chain under one advisory lock (docs/records.md, "Audit of security
actions"): while logins are being recorded, attendance writers wait for the
lock. This measures by how much.

    .venv/bin/python bench/audit_burst.py [--writers 2] [--logins 200] [--parallel 8] [--rounds 3]

Setup: one database ``campushub_bench_<random>_audit`` (migrated, the demo
campus with one live session; dropped at the end, also on Ctrl-C). Each round:

* baseline: ``--writers`` attendance writers alone for ``--baseline-s``
  seconds, each marking its own student (a status change each time, so every
  write appends an audit entry), one transaction per mark as the mark
  endpoint does (``apply_attributed_changes``);
* burst: the same writers while ``--logins`` login entries are recorded,
  ``--parallel`` at a time, each in its own transaction as web/auth.py
  ``_audit_login`` does (``security_audit.record``).

Prints, per round, the attendance writes' throughput and p50/p99 latency
alone and during the burst, the login entries' throughput and p50/p99, and
the ratios (during / alone); then the chain is verified. A measurement, not a
test: the figures depend on the machine's disk (the commit's WAL flush is
taken under the lock) and on its load, which is printed with them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    interruptible,
    is_interrupt,
    load_average,
    migrate_and_seed,
    new_run_id,
    percentile,
    progress,
    run_db,
)

STATUSES = ("present", "late", "absent", "excused")


@dataclass
class Writes:
    """Latencies (seconds) of the writes of one kind that finished inside a measured window."""

    latencies: list[float]
    window_s: float

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.window_s

    def p(self, q: float) -> float:
        """The q-th percentile latency in milliseconds (nearest rank)."""
        return percentile(sorted(self.latencies), q) * 1000


@dataclass
class Round:
    alone: Writes
    during: Writes
    logins: Writes


async def one_round(db: Any, session: Any, *, writers: int, baseline_s: float, logins: int,
                    parallel: int, round_no: int) -> Round:
    import asyncpg
    import trio

    from hub.db.attendance import AttendanceChange, apply_attributed_changes
    from hub.db.security_audit import record

    finished: list[tuple[float, float]] = []  # (perf_counter at the end, latency) of each attendance write

    async def attendance(n: int, stop: trio.Event) -> None:
        k = round_no  # each round starts on a different status: every mark is a change
        while not stop.is_set():
            change = AttendanceChange(session.session_id, session.enrolled[n], STATUSES[k % 4], "manual")

            async def work(conn: asyncpg.Connection, change: AttendanceChange = change) -> None:
                await apply_attributed_changes(conn, [(change, "bench-writer", "mark")])

            started = time.perf_counter()
            await db.run(work, transaction=True)
            ended = time.perf_counter()
            finished.append((ended, ended - started))
            k += 1

    login_latencies: list[float] = []
    per_worker = [logins // parallel + (1 if w < logins % parallel else 0) for w in range(parallel)]

    async def login_worker(worker: int) -> None:
        for n in range(per_worker[worker]):
            async def work(conn: asyncpg.Connection, n: int = n) -> None:
                await record(conn, actor=f"user{worker}", action="login_failed", entity="login",
                             entity_id=f"user{worker}", after={"address": f"10.{round_no}.{worker}.{n % 256}"})

            started = time.perf_counter()
            await db.run(work, transaction=True)
            login_latencies.append(time.perf_counter() - started)

    def window(start: float, end: float) -> Writes:
        return Writes([latency for t, latency in finished if start <= t <= end], end - start)

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for n in range(writers):
            nursery.start_soon(attendance, n, stop)
        await trio.sleep(0.2)  # warm-up: every writer has a connection and is writing
        t0 = time.perf_counter()
        await trio.sleep(baseline_s)
        t1 = time.perf_counter()
        async with trio.open_nursery() as burst:
            for worker in range(parallel):
                burst.start_soon(login_worker, worker)
        t2 = time.perf_counter()
        stop.set()
    return Round(alone=window(t0, t1), during=window(t1, t2), logins=Writes(login_latencies, t2 - t1))


async def measure(url: str, session: Any, args: argparse.Namespace) -> list[Round]:
    from hub.db import asyncio_loop, open_database

    rounds = []
    # One connection per writer and per login worker: nobody waits for the pool, only for the chain.
    async with asyncio_loop(), open_database(url, max_size=args.writers + args.parallel) as db:
        for r in range(args.rounds):
            rounds.append(await one_round(db, session, writers=args.writers, baseline_s=args.baseline_s,
                                          logins=args.logins, parallel=args.parallel, round_no=r))
            print_round(r + 1, rounds[-1], args)
    return rounds


def print_round(number: int, r: Round, args: argparse.Namespace) -> None:
    print(f"round {number}: attendance ({args.writers} writers) alone {r.alone.per_s:6.1f} writes/s,"
          f" p50 {r.alone.p(50):6.1f} ms, p99 {r.alone.p(99):6.1f} ms"
          f" | during the burst {r.during.per_s:6.1f}/s, p50 {r.during.p(50):6.1f} ms, p99 {r.during.p(99):6.1f} ms"
          f" | logins {len(r.logins.latencies)} in {r.logins.window_s:.2f} s = {r.logins.per_s:6.1f}/s,"
          f" p50 {r.logins.p(50):6.1f} ms, p99 {r.logins.p(99):6.1f} ms"
          f" | ratio during/alone: throughput {r.during.per_s / r.alone.per_s:.2f},"
          f" p50 {r.during.p(50) / r.alone.p(50):.1f}x", flush=True)


def print_summary(rounds: list[Round]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    alone, during = med([r.alone.per_s for r in rounds]), med([r.during.per_s for r in rounds])
    print(f"median of {len(rounds)} rounds: attendance alone {alone:.1f} writes/s"
          f" (p50 {med([r.alone.p(50) for r in rounds]):.1f} ms, p99 {med([r.alone.p(99) for r in rounds]):.1f} ms);"
          f" during the burst {during:.1f}/s"
          f" (p50 {med([r.during.p(50) for r in rounds]):.1f} ms, p99 {med([r.during.p(99) for r in rounds]):.1f} ms);"
          f" logins {med([r.logins.per_s for r in rounds]):.1f}/s"
          f" (p50 {med([r.logins.p(50) for r in rounds]):.1f} ms, p99 {med([r.logins.p(99) for r in rounds]):.1f} ms);"
          f" throughput ratio during/alone {during / alone:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writers", type=int, default=2, help="concurrent attendance writers")
    ap.add_argument("--logins", type=int, default=200, help="login entries per burst")
    ap.add_argument("--parallel", type=int, default=8, help="login entries recorded at a time")
    ap.add_argument("--baseline-s", type=float, default=2.0, help="how long the writers run alone, per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    args = ap.parse_args()
    if not (1 <= args.writers <= 40 and 1 <= args.parallel <= 64 and args.logins >= args.parallel
            and args.rounds >= 1 and args.baseline_s > 0):
        ap.error("need 1 <= --writers <= 40, 1 <= --parallel <= 64, --logins >= --parallel, --rounds >= 1"
                 " and --baseline-s > 0")

    import trio

    run_id = new_run_id()
    name = f"campushub_bench_{run_id}_audit"
    created: list[str] = []
    try:
        pg_version = create_databases(args.database_url, [name], created)
        url = database_url_for(args.database_url, name)
        progress(f"audit_burst: run {run_id}, database {name}: seeding...")
        campus = trio.run(interruptible, partial(migrate_and_seed, url, rooms=1, students=max(40, args.writers)))
        session = campus.sessions[0]
        if len(session.enrolled) < args.writers:
            raise SystemExit(f"the seeded session has {len(session.enrolled)} students, fewer than --writers")
        print(f"{os.cpu_count()} cores, PostgreSQL {pg_version}, load average before {load_average()}")
        rounds = trio.run(interruptible, partial(measure, url, session, args))
        print_summary(rounds)
        from hub.db.audit import verify_chain

        report = run_db(url, verify_chain)
        print(f"load average after {load_average()}; chain: {report.entries} entries,"
              f" {'verifies' if report.ok else f'BROKEN at {report.first_broken_id} ({report.problem})'}")
        if not report.ok:
            raise SystemExit(1)
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        drop_databases(args.database_url, created)


if __name__ == "__main__":
    main()
