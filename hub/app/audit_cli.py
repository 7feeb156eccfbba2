"""``campushub audit``: verify an exported JSON-lines file offline; export the log (wired into hub/app/cli.py).

``verify FILE`` needs no database: it re-hashes each line with
:func:`hub.db.audit_hash.entry_hash` (the same bytes as migration 0004's
trigger) and checks each link. Exit codes: 0 intact, 1 broken (or a line that
is not an entry), 2 usage (including a file that cannot be read).

``export`` writes the log (or the part at/after ``--since``) oldest first to
stdout or ``--output``, with progress on stderr; exit 2 if the output cannot
be written, 1 if the database has no audit chain yet (run ``migrate``). An export of the whole log, or
of everything since some moment, is a contiguous stretch of the chain, so
``verify`` checks every link in it; an export filtered otherwise (e.g. one
student, from the web page) skips entries, so verify it with ``--allow-gaps``.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack, ExitStack, contextmanager
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, TextIO

from hub.core.config import Settings

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2

_PROBLEMS = {
    "altered": "its content does not match its hash (it was changed after it was written)",
    "broken_link": "its prev_hash is not the previous entry's hash (an entry was removed, inserted or reordered)",
    "missing_hash": "it has no hash (written bypassing the chain)",
    "malformed": "it is not an audit entry (bad JSON or missing fields)",
}


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audit log: verify an exported file, export the log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="check the hash chain of an exported JSON-lines file (no database)")
    verify.add_argument("file", type=Path, metavar="FILE", help="a JSON-lines export ('-' for stdin)")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.add_argument("--allow-gaps", action="store_true",
                        help="the export was filtered (skips entries): count links that do not join as gaps")

    export = actions.add_parser("export", help="export the audit log, oldest first")
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl", help="default jsonl")
    export.add_argument("--since", type=_instant, help="entries at or after this ISO 8601 time (a date: UTC midnight)")
    export.add_argument("--until", type=_instant, help="entries before this ISO 8601 time (a date: UTC midnight)")
    export.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here instead of stdout")


def _instant(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), timezone.utc)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    if value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"give a UTC offset (e.g. Z or +05:30): {text!r}")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.audit_command == "verify":
        return _verify(args)
    return _export(args, settings)


# --- verify ----------------------------------------------------------------------------------

class _Malformed(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _entries(stream: TextIO) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            # Decimal: numbers must keep the digits they were hashed with (75.00 is not 75.0).
            entry = json.loads(line, parse_float=Decimal)
        except ValueError:
            raise _Malformed(number) from None
        if not isinstance(entry, dict):
            raise _Malformed(number)
        yield entry


def _verify(args: argparse.Namespace) -> int:
    from hub.db.audit_hash import ChainCheck, check_entries

    try:
        stream = sys.stdin if str(args.file) == "-" else open(args.file, encoding="utf-8", newline="\n")
    except OSError as exc:
        print(f"campushub: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    bad_line = None
    try:
        with stream:
            try:
                report = check_entries(_entries(stream), allow_gaps=args.allow_gaps)
            except _Malformed as exc:
                bad_line, report = exc.line, ChainCheck(False, 0, None, None, None, problem="malformed")
            except UnicodeDecodeError:
                bad_line, report = 0, ChainCheck(False, 0, None, None, None, problem="malformed")
    except OSError as exc:
        print(f"campushub: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    verdict = {
        "ok": report.ok, "entries": report.entries, "head_id": report.head_id, "head_hash": report.head_hash,
        "starts_after_hash": report.start_prev_hash,
        "starts_at_beginning": report.start_prev_hash == "0" * 64 if report.start_prev_hash else None,
        "gaps": report.gaps, "first_broken_id": report.first_broken_id, "problem": report.problem,
        "line": bad_line,
    }
    if args.json:
        print(json.dumps(verdict))
    else:
        print(_describe(verdict))
    return EXIT_OK if report.ok else EXIT_BROKEN


def _describe(v: dict[str, Any]) -> str:
    if v["ok"]:
        if not v["entries"]:
            return "intact: the file holds no entries"
        start = ("from the first entry of the log" if v["starts_at_beginning"]
                 else f"continuing the entry with hash {v['starts_after_hash']}")
        gaps = f", {v['gaps']} gap(s) where the export skipped entries" if v["gaps"] else ""
        return (f"intact: {v['entries']} entries {start}{gaps}\n"
                f"head: entry {v['head_id']} hash {v['head_hash']}\n"
                "(compare the head with a copy kept elsewhere: a chain cannot show its newest entries were cut off)")
    where = f"line {v['line']}" if v["line"] is not None else f"entry {v['first_broken_id']}"
    hint = ("\n(an export filtered by student, course, ... skips entries: use --allow-gaps)"
            if v["problem"] == "broken_link" else "")
    return f"BROKEN at {where}: {_PROBLEMS[v['problem']]}{hint}"


# --- export ----------------------------------------------------------------------------------

def _export(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg
    import trio

    from hub.app.environment import with_services
    from hub.db import run_with_database
    from hub.db.audit import AuditFilter, csv_chunk, csv_header, iter_audit, jsonl_chunk, search_audit

    f = AuditFilter(since=args.since, until=args.until)

    async def work(db) -> int:
        total = (await search_audit(db, f, limit=1, offset=0)).total
        print(f"audit export: {total} entries to write", file=sys.stderr)
        written = 0
        async with AsyncExitStack() as files:
            # trio's file wrappers write in a worker thread: a slow disk or pipe never stalls the loop.
            with _writing():
                out = (await files.enter_async_context(
                    await trio.open_file(args.output, "w", encoding="utf-8", newline=""))
                    if args.output else trio.wrap_file(sys.stdout))
            if args.format == "csv":
                with _writing():
                    await out.write(csv_header())
            async for chunk in iter_audit(db, f):
                with _writing():
                    await out.write(csv_chunk(chunk) if args.format == "csv" else jsonl_chunk(chunk))
                written += len(chunk)
                if total > len(chunk):
                    print(f"audit export: {written}/{total}", file=sys.stderr)
            with _writing():
                await out.flush()
        print(f"audit export: wrote {written} entries", file=sys.stderr)
        return EXIT_OK

    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)
        assert settings.database_url is not None  # with_services fills it in or raises
        try:
            return run_with_database(settings.database_url, work)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.UndefinedFunctionError):
            print("campushub: the database has no audit chain yet: run `campushub migrate`", file=sys.stderr)
            return EXIT_BROKEN
        except _Unwritable as exc:
            print(f"campushub: cannot write {args.output or 'to stdout'}: {exc.reason}", file=sys.stderr)
            return EXIT_USAGE


class _Unwritable(Exception):
    """The export's output cannot be opened or written: a usage error (exit 2), unlike an
    ``OSError`` of the database connection, which is not the operator's file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def _writing() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _Unwritable(exc.strerror or str(exc)) from exc
