"""Backup and restore time (RPO/RTO inputs) for the demo campus and for a campus of 50,000 students.

    .venv/bin/python bench/backup_restore.py                      # the demo campus, then 50,000 students
    .venv/bin/python bench/backup_restore.py --only large --students 50000 --weeks 6
    .venv/bin/python bench/backup_restore.py --only demo

Each campus gets its own database ``campushub_bench_<run>_<name>`` (migrated), and
its restore target ``..._restored`` (empty); both are dropped at the end, also on
Ctrl-C. What is measured is exactly what ``campushub backup`` / ``campushub restore``
run (``hub.adapters.pg_dump.backup_database`` / ``restore_database``, the server's
own pg_dump/pg_restore, sealing with the campus key), in this process.

Campuses:

* ``demo``: what ``campushub demo`` seeds (4 rooms, 60 students, today's past
  classes, the insights history, the check-in demo).
* ``large``: the demo's base plus ``--students`` students (sealed token secrets, as
  the hub stores them), each enrolled in ``--courses-per-student`` of
  ``--courses`` courses, every course meeting twice a week for ``--weeks`` weeks
  (closed sessions, spread over 50 rooms without overlaps) with one attendance row
  per enrolled student per session (80 % present, 7 % late, 10 % absent, 3 % excused;
  present/late with a check-in time). Loaded with COPY in batches, so it takes
  seconds, not hours. Accepted events, sensor readings and the audit log of a live
  campus come on top (their size is bounded by retention: docs/data-lifecycle.md).

Prints per campus: database size, rows, pg_dump archive bytes, sealed file bytes,
backup seconds, restore seconds (pg_restore in one transaction, indexes and
constraints included), and the check afterwards (row counts of every table equal,
audit chain verifies) with its seconds. A measurement, not a test: the machine's
load is printed beside the figures (other processes share the CPU and disk).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    is_interrupt,
    load_average,
    new_run_id,
    progress,
    run_db,
)

ROOMS = 50
STATUS_WEIGHTS = (("present", 80), ("late", 7), ("absent", 10), ("excused", 3))


async def _seed_demo(db: Any) -> None:
    from hub.db import migrate
    from hub.db.seed import course_id, ensure_campus, faculty_id
    from hub.db.seed.academic import ensure_todays_past_classes
    from hub.db.seed.checkin import ensure_checkin_demo
    from hub.db.seed.insights import ensure_insights_demo

    now = datetime.now(timezone.utc)
    await migrate(db)
    await ensure_campus(db, rooms=4, students=60, now=now)
    await ensure_insights_demo(db, course_id=course_id(1), now=now)
    await ensure_todays_past_classes(db, now)
    await ensure_checkin_demo(db, faculty_id=faculty_id(1), now=now)


def _seed_large(args: argparse.Namespace):
    async def seed(db: Any) -> None:
        from hub.db.sealed_secrets import token_secret_context
        from hub.db.seed import faculty_id

        await _seed_demo(db)
        rng = random.Random(args.seed)
        password_hash = await db.fetchval("SELECT password_hash FROM users WHERE role = 'student' LIMIT 1")
        faculty = faculty_id(1)
        started = time.monotonic()

        async def load(conn: Any) -> None:
            await conn.copy_records_to_table("rooms", columns=["id", "name", "building"], records=[
                (f"bench-room-{r:03d}", f"Bench room {r}", "Bench block") for r in range(ROOMS)])
            students = [f"bench-st-{n:06d}" for n in range(args.students)]
            await conn.copy_records_to_table(
                "users", columns=["id", "username", "display_name", "role", "password_hash"],
                records=[(s, s.replace("bench-st-", "bs"), f"Bench Student {n}", "student", password_hash)
                         for n, s in enumerate(students)])
            await conn.copy_records_to_table(
                "students", columns=["id", "roll_number", "token_secret_sealed"],
                records=[(s, f"BR{n:07d}", db.secrets.encrypt(os.urandom(32), token_secret_context(s)))
                         for n, s in enumerate(students)])
            progress(f"  {args.students} students in {time.monotonic() - started:.1f} s")
            courses = [f"bench-course-{c:04d}" for c in range(args.courses)]
            await conn.copy_records_to_table("courses", columns=["id", "code", "title", "faculty_id"], records=[
                (c, f"BC{i:04d}", f"Bench course {i}", faculty) for i, c in enumerate(courses)])
            roster: dict[str, list[str]] = {c: [] for c in courses}
            for n, s in enumerate(students):
                for k in range(args.courses_per_student):  # distinct courses, spread evenly
                    roster[courses[(n * args.courses_per_student + k) % args.courses]].append(s)
            await conn.copy_records_to_table("enrolments", columns=["course_id", "student_id"], records=[
                (c, s) for c, enrolled in roster.items() for s in enrolled])
            progress(f"  {sum(map(len, roster.values()))} enrolments in {time.monotonic() - started:.1f} s")
            # Course i meets in room i % ROOMS at hour 8 + 2 * (i // ROOMS) % 10: no two share a room slot.
            first_monday = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
            first_monday -= timedelta(days=first_monday.weekday() + 7 * args.weeks)
            rows = 0
            for i, course in enumerate(courses):
                sessions = []
                for week in range(args.weeks):
                    for day in (i % 2, 2 + i % 3):
                        start = first_monday + timedelta(weeks=week, days=day, hours=8 + (2 * (i // ROOMS)) % 10)
                        sessions.append((f"{course}-w{week:02d}d{day}", course, f"bench-room-{i % ROOMS:03d}",
                                         start, start + timedelta(minutes=90), "closed"))
                await conn.copy_records_to_table(
                    "class_sessions", columns=["id", "course_id", "room_id", "starts_at", "ends_at", "status"],
                    records=sessions)
                records = []
                for session_id, _, _, start, _, _ in sessions:
                    for s in roster[course]:
                        status = rng.choices([w[0] for w in STATUS_WEIGHTS], [w[1] for w in STATUS_WEIGHTS])[0]
                        at = start + timedelta(seconds=rng.randrange(0, 1500)) if status in ("present", "late") \
                            else None
                        records.append((session_id, s, status, at, "qr", start + timedelta(minutes=100)))
                await conn.copy_records_to_table(
                    "attendance", columns=["session_id", "student_id", "status", "checked_in_at", "source",
                                           "updated_at"], records=records)
                rows += len(records)
                if i % 50 == 49:
                    progress(f"  {i + 1}/{len(courses)} courses, {rows:,} attendance rows, "
                             f"{time.monotonic() - started:.1f} s")

        await db.run(load, transaction=True)
        await db.execute("ANALYZE")
        progress(f"  seeded in {time.monotonic() - started:.1f} s")

    return seed


def _measure(name: str, url: str, restored_url: str, directory: Path) -> dict[str, Any]:
    from hub.adapters.pg_dump import backup_database, restore_database
    from hub.app.backup_cli import tool_dirs
    from hub.core.config import Settings
    from hub.db.audit import verify_chain
    from hub.db.backup import table_row_counts

    dirs = tool_dirs(Settings.from_env())
    path = directory / f"{name}.chbackup"

    async def facts(db: Any) -> tuple[int, dict[str, int]]:
        return int(await db.fetchval("SELECT pg_database_size(current_database())")), await table_row_counts(db)

    db_bytes, source_counts = run_db(url, facts)
    load_before = load_average()
    result = run_db(url, lambda db: backup_database(db, path, dirs))
    progress(f"{name}: backup {result.seconds:.1f} s, {result.file_bytes:,} bytes")
    restored = run_db(restored_url, lambda db: restore_database(db, path, dirs))
    progress(f"{name}: restore {restored.seconds:.1f} s")

    async def check(db: Any) -> tuple[dict[str, int], Any, float]:
        started = time.monotonic()
        counts = await table_row_counts(db)
        chain = await verify_chain(db)
        return counts, chain, time.monotonic() - started

    counts, chain, check_s = run_db(restored_url, check)
    path.unlink()
    return {
        "campus": name, "database_bytes": db_bytes, "tables": len(source_counts),
        "rows": sum(source_counts.values()), "attendance_rows": source_counts.get("public.attendance", 0),
        "dump_bytes": result.dump_bytes, "file_bytes": result.file_bytes,
        "backup_s": round(result.seconds, 2), "restore_s": round(restored.seconds, 2),
        "check_s": round(check_s, 2), "counts_equal": counts == source_counts,
        "chain_ok": chain.ok, "chain_entries": chain.entries,
        "load_average_before": load_before, "load_average_after": load_average(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default=os.environ.get("CAMPUSHUB_BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--only", choices=("demo", "large"), help="measure one campus only")
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--courses", type=int, default=250)
    parser.add_argument("--courses-per-student", type=int, default=5)
    parser.add_argument("--weeks", type=int, default=6, help="weeks of past classes (two sessions a week)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = parser.parse_args()
    if args.courses_per_student > args.courses:
        parser.error("--courses-per-student must not exceed --courses")
    run = new_run_id()
    created: list[str] = []
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="campushub-bench-backup-") as tmp:
            for name in ("demo", "large"):
                if args.only and args.only != name:
                    continue
                source, target = f"campushub_bench_{run}_{name}", f"campushub_bench_{run}_{name}_restored"
                pg_version = create_databases(args.server_url, [source, target], created)
                url = database_url_for(args.server_url, source)
                progress(f"{name}: seeding ...")
                run_db(url, _seed_demo if name == "demo" else _seed_large(args))
                results.append(_measure(name, url, database_url_for(args.server_url, target), Path(tmp)))
                results[-1]["postgres"] = pg_version
                drop_databases(args.server_url, [source, target])
                created = [c for c in created if c not in (source, target)]
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            return 130
        raise
    finally:
        drop_databases(args.server_url, created)
    for r in results:
        if args.json:
            print(json.dumps(r, sort_keys=True))
            continue
        print(f"{r['campus']}: database {r['database_bytes'] / 1e6:.1f} MB, {r['tables']} tables, {r['rows']:,} rows "
              f"({r['attendance_rows']:,} attendance); pg_dump archive {r['dump_bytes'] / 1e6:.1f} MB, sealed file "
              f"{r['file_bytes'] / 1e6:.1f} MB; backup {r['backup_s']:.1f} s, restore {r['restore_s']:.1f} s, "
              f"check {r['check_s']:.1f} s (counts equal: {r['counts_equal']}, audit chain ok: {r['chain_ok']}, "
              f"{r['chain_entries']} entries); load average before {r['load_average_before']}, "
              f"after {r['load_average_after']}; PostgreSQL {r['postgres']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
