"""``campushub retention run [--dry-run] [--json]``: one retention pass by hand (wired into hub/app/cli.py).

The same pass as the hub's hourly one (hub/db/retention.py ``run_pass``), under
the same advisory lock: safe while hubs run (if one of them is pruning at that
moment, the pass is skipped and says so, exit 1). ``--dry-run`` takes the lock,
counts what would be removed, and changes nothing (no partition is created or
dropped, the audit archive writes no file). It never migrates: a database
without migration 0023 is refused (exit 2) with the command to run.

Output: one line per table, what was (would be) removed: rows deleted, daily
partitions dropped and their rows; then the audit archive's segments.
Exit codes: 0 done, 1 skipped (another process held the lock), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

from hub.core.config import Settings

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE = 0, 1, 2
#: The migration that partitions ``events`` and the ledger; the pass needs it.
RETENTION_MIGRATION = 23


def add_parser(sub: Any) -> None:
    retention = sub.add_parser("retention", help="retention: prune every table by its rule (docs/data-lifecycle.md)")
    actions = retention.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run one retention pass now")
    run.add_argument("--dry-run", action="store_true", help="report what would be removed; change nothing")
    run.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.environment import with_services
    from hub.db import Database, run_with_database
    from hub.db.retention import RetentionReport, policy_from_settings, run_pass

    policy = policy_from_settings(settings)
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)
        database_url = settings.database_url
        assert database_url is not None  # with_services raised otherwise

        async def work(db: Database) -> RetentionReport | None:
            if await db.fetchval("SELECT to_regclass('schema_migrations')") is None or not await db.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", RETENTION_MIGRATION):
                return None
            return await run_pass(db, datetime.now(timezone.utc), policy, dry_run=args.dry_run)

        report = run_with_database(database_url, work)
    if report is None:
        print(f"campushub: the database lacks migration {RETENTION_MIGRATION:04d}; run `campushub migrate` first",
              file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_report(report)
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def report_json(report: Any) -> dict[str, Any]:
    """The report as plain JSON values (``--json``)."""
    audit = report.audit
    return {
        "at": report.at.isoformat(), "dry_run": report.dry_run, "skipped": report.skipped,
        "duration_s": round(report.duration_s, 3),
        "tables": {
            t.table: {"rows": t.rows, "partitions_dropped": [d.isoformat() for d in t.partitions_dropped],
                      "partition_rows": t.partition_rows, "removed": t.removed,
                      "partitions_created": [d.isoformat() for d in t.partitions_created]}
            for t in report.tables.values()
        },
        "audit": None if audit is None else {
            "entries_archived": audit.entries_archived, "entries_pruned": audit.entries_pruned,
            "segment_paths": [str(p) for p in audit.segment_paths]},
        "audit_note": report.audit_note,
    }


def print_report(report: Any, out: Any = None) -> None:
    out = out or sys.stdout
    if report.skipped:
        print("retention: skipped: another process holds the retention lock (a hub's pass is running)", file=out)
        return
    verb = "would remove" if report.dry_run else "removed"
    print(f"retention pass at {report.at.isoformat(timespec='seconds')}{' (dry run)' if report.dry_run else ''}:",
          file=out)
    for t in report.tables.values():
        line = f"  {t.table:<26} {verb} {t.removed} row(s)"
        if t.partitions_dropped:
            days = ", ".join(d.isoformat() for d in t.partitions_dropped)
            line += f" ({len(t.partitions_dropped)} daily partition(s) {days}: {t.partition_rows} row(s))"
        if t.partitions_created:
            line += f"; created {len(t.partitions_created)} partition(s)"
        print(line, file=out)
    if report.audit is not None:
        print(f"  audit archive: {'would archive' if report.dry_run else 'archived'} "
              f"{report.audit.entries_archived} entries in {len(report.audit.segment_paths)} segment(s)", file=out)
        for path in report.audit.segment_paths:
            print(f"    {path}", file=out)
    elif report.audit_note:
        print(f"  audit_log: {report.audit_note}", file=out)
    print(f"  ({report.duration_s:.2f}s)", file=out)
