"""What a student's data export costs: time, archive size and the exporting process's peak memory.

    .venv/bin/python bench/privacy_export.py [--documents 5] [--document-mib 5] [--sessions 2000] [--rounds 3]

Setup: one database ``campushub_bench_<random>_privacy`` (migrated; dropped at the end, also on
Ctrl-C) holding one student with ``--sessions`` attendance records (each with its audit entry)
and ``--documents`` leave documents of ``--document-mib`` MiB of random bytes (the campus quota
is 25 MiB: 5 x 5 MiB is the largest a student can hold). Each round runs
``hub.db.personal_data.export_zip`` to the end, discarding the pieces as a streaming response
would, and measures wall time, bytes produced, the largest single piece and the Python heap's
peak (tracemalloc) during the export. A measurement, not a test: the figures depend on the
machine and its load, which is printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    load_average,
    new_run_id,
    progress,
    run_db,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default=os.environ.get("CAMPUSHUB_BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--document-mib", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("CAMPUSHUB_MASTER_KEY", __import__("base64").b64encode(os.urandom(32)).decode())

    name = f"campushub_bench_{new_run_id()}_privacy"
    created: list[str] = []
    try:
        create_databases(args.server_url, [name], created)
        url = database_url_for(args.server_url, name)
        student = run_db(url, lambda db: _seed(db, args))
        progress(f"seeded: {args.sessions} records, {args.documents} x {args.document_mib} MiB documents")
        for round_no in range(1, args.rounds + 1):
            figures = run_db(url, lambda db: _export(db, student))
            print(f"round {round_no}: {figures['seconds']:.2f} s, {figures['bytes'] / 2**20:.1f} MiB zip in "
                  f"{figures['pieces']} pieces (largest {figures['largest'] / 2**20:.1f} MiB), "
                  f"Python heap peak {figures['peak'] / 2**20:.1f} MiB; load {load_average()}")
    finally:
        drop_databases(args.server_url, created)


async def _seed(db, args) -> str:
    from hub.db import migrate
    from hub.db.attendance import AttendanceChange, apply_attendance_changes
    from hub.db.leave import NewDocument, apply_for_leave
    from hub.db.users import NewAccount, create_user

    await migrate(db)
    faculty = await create_user(db, NewAccount("benchfac", "Bench Faculty", "faculty"), actor="bench")
    student = await create_user(db, NewAccount("benchstu", "Bench Student", "student", roll_number="B0001",
                                               email="bench@example.org"), actor="bench")
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=args.sessions)

    async def frame(conn) -> None:
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ('r', 'R', 'B')")
        await conn.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c', 'C', 'C', $1)", faculty.id)
        await conn.execute("INSERT INTO enrolments (course_id, student_id) VALUES ('c', $1)", student.id)
        await conn.executemany(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ($1, 'c', 'r', $2, $3, 'closed')",
            [(f"s{i}", start + timedelta(days=i), start + timedelta(days=i, hours=1)) for i in range(args.sessions)])
        await apply_attendance_changes(conn, [
            AttendanceChange(f"s{i}", student.id, "present", "qr", start + timedelta(days=i))
            for i in range(args.sessions)], actor=faculty.id, reason="bench")

    await db.run(frame, transaction=True)
    size = int(args.document_mib * 2**20)
    today = date.today()
    for i in range(args.documents):
        data = b"%PDF-1.4\n" + os.urandom(size - 9)
        await apply_for_leave(db, student_id=student.id, starts_on=today + timedelta(days=2 * i + 1),
                              ends_on=today + timedelta(days=2 * i + 1), reason=f"bench {i}",
                              document=NewDocument(f"d{i}.pdf", "application/pdf", data), today=today)
    return student.id


async def _export(db, student_id: str) -> dict[str, float]:
    from hub.db.personal_data import export_zip

    tracemalloc.start()
    started = time.perf_counter()
    total = pieces = largest = 0
    async for piece in export_zip(db, student_id, now=datetime.now(timezone.utc)):
        total += len(piece)
        pieces += 1
        largest = max(largest, len(piece))
        del piece
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": seconds, "bytes": total, "pieces": pieces, "largest": largest, "peak": peak}


if __name__ == "__main__":
    main()
