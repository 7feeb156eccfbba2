"""``campushub audit``: verify an exported file or archived segment offline, or the database's chain;
export the log; archive and prune old entries (wired into hub/app/cli.py).

``verify FILE`` needs no database: it re-hashes each line with
:func:`hub.db.audit_hash.entry_hash` (the same bytes as the database's
trigger) and checks each link; an archived segment's manifest beside it
(``<name>.manifest.json``) is compared too (sha256, entry count, first prev_hash, last
hash, id range). ``verify`` without FILE checks the database's chain from the archive's
anchor (:func:`hub.db.audit.verify_chain`) and, with ``--archive-dir``, every archived segment
file against its anchor. Exit codes: 0 intact, 1 broken (or a line that
is not an entry, a segment missing or not matching), 2 usage (including a file that cannot be read).

``archive --older-than DAYS --output-dir DIR [--dry-run]`` runs
:func:`hub.db.audit_archive.archive_and_prune` once: exit 0, 2 if the directory cannot be
written, 1 if the database has no audit chain yet or the entries to archive do not link up.

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
from pathlib import Path
from typing import Any, Iterator

from hub.core.config import Settings

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2

_PROBLEMS = {
    "altered": "its content does not match its hash (it was changed after it was written)",
    "broken_link": "its prev_hash is not the previous entry's hash (an entry was removed, inserted or reordered)",
    "missing_hash": "it has no hash (written bypassing the chain)",
    "malformed": "it is not an audit entry (bad JSON or missing fields)",
}

_FACTS = {
    "sha256": "its sha256", "entries": "its number of entries", "first_id": "its first entry's id",
    "last_id": "its last entry's id", "first_prev_hash": "its first entry's prev_hash", "last_hash": "its last hash",
}


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audit log: verify an exported file, export the log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser(
        "verify", help="check the hash chain of an exported file or archived segment (no database),"
                       " or without FILE the database's chain")
    verify.add_argument("file", type=Path, metavar="FILE", nargs="?",
                        help="a JSON-lines export or segment ('-' for stdin); none: the database")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.add_argument("--allow-gaps", action="store_true",
                        help="the export was filtered (skips entries): count links that do not join as gaps")
    verify.add_argument("--archive-dir", type=Path, metavar="DIR",
                        help="with no FILE: also check every archived segment in DIR against its anchor")

    archive = actions.add_parser("archive", help="archive entries older than DAYS to segment files, then prune them")
    archive.add_argument("--older-than", type=_days, required=True, metavar="DAYS",
                         help="archive entries older than this many days (a prefix of the chain)")
    archive.add_argument("--output-dir", type=Path, required=True, metavar="DIR", help="where segments are written")
    archive.add_argument("--dry-run", action="store_true", help="write and delete nothing; say what would happen")
    archive.add_argument("--json", action="store_true", help="print the report as JSON")

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


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"a number of days cannot be negative: {text!r}")
    return days


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.audit_command == "verify":
        if args.file is None:
            return _verify_database(args, settings)
        if args.archive_dir is not None:
            print("campushub: --archive-dir goes with no FILE (it checks the database's anchors)", file=sys.stderr)
            return EXIT_USAGE
        return _verify(args)
    if args.audit_command == "archive":
        return _archive(args, settings)
    return _export(args, settings)


# --- verify ----------------------------------------------------------------------------------

def _verify(args: argparse.Namespace) -> int:
    from hub.db.audit_archive import SegmentCheck, check_segment_file, read_manifest
    from hub.db.audit_hash import ChainCheck, MalformedLine, check_entries, parse_entries

    manifest = None
    try:
        if str(args.file) == "-":
            try:
                check = SegmentCheck(check_entries(parse_entries(sys.stdin), allow_gaps=args.allow_gaps), "")
            except MalformedLine as exc:
                check = SegmentCheck(ChainCheck(False, 0, None, None, None, problem="malformed"), "", (), exc.line)
            except UnicodeDecodeError:
                check = SegmentCheck(ChainCheck(False, 0, None, None, None, problem="malformed"), "", (), 0)
        else:
            try:
                manifest = read_manifest(args.file)
            except ValueError:
                manifest = {}  # a manifest that is not one: every fact it should hold counts as a mismatch
            check = check_segment_file(args.file, manifest, allow_gaps=args.allow_gaps)
            if manifest == {}:
                check = SegmentCheck(check.chain, check.sha256, tuple(_FACTS), check.bad_line)
    except OSError as exc:
        print(f"campushub: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    report = check.chain
    verdict = {
        "ok": check.ok, "entries": report.entries, "head_id": report.head_id, "head_hash": report.head_hash,
        "starts_after_hash": report.start_prev_hash,
        "starts_at_beginning": report.start_prev_hash == "0" * 64 if report.start_prev_hash else None,
        "gaps": report.gaps, "redacted": report.redacted, "first_broken_id": report.first_broken_id,
        "problem": report.problem, "line": check.bad_line,
        "manifest": None if manifest is None else {"mismatches": list(check.mismatches)},
    }
    if args.json:
        print(json.dumps(verdict))
    else:
        print(_describe(verdict))
    return EXIT_OK if check.ok else EXIT_BROKEN


def _describe(v: dict[str, Any]) -> str:
    if v["ok"]:
        if not v["entries"]:
            return "intact: the file holds no entries"
        start = ("from the first entry of the log" if v["starts_at_beginning"]
                 else f"continuing the entry with hash {v['starts_after_hash']}")
        gaps = f", {v['gaps']} gap(s) where the export skipped entries" if v["gaps"] else ""
        redacted = (f"\n{v['redacted']} redacted (personal data erased: their links and chain fields verified,"
                    " their personal data cannot be)" if v["redacted"] else "")
        manifest = "\nmatches its segment manifest" if v["manifest"] is not None else ""
        return (f"intact: {v['entries']} entries {start}{gaps}{redacted}{manifest}\n"
                f"head: entry {v['head_id']} hash {v['head_hash']}\n"
                "(compare the head with a copy kept elsewhere: a chain cannot show its newest entries were cut off)")
    if v["problem"] is None:  # the chain verifies, the manifest beside it does not match
        facts = ", ".join(_FACTS.get(m, m) for m in v["manifest"]["mismatches"])
        return f"BROKEN: the file does not match its segment manifest ({facts})"
    where = f"line {v['line']}" if v["line"] is not None else f"entry {v['first_broken_id']}"
    hint = ("\n(an export filtered by student, course, ... skips entries: use --allow-gaps)"
            if v["problem"] == "broken_link" else "")
    return f"BROKEN at {where}: {_PROBLEMS[v['problem']]}{hint}"


def _verify_database(args: argparse.Namespace, settings: Settings) -> int:
    import trio

    from hub.db.audit import verify_chain
    from hub.db.audit_archive import anchored_segments, check_segment_file

    async def work(db: Any) -> dict[str, Any]:
        report = await verify_chain(db)
        verdict: dict[str, Any] = {
            "ok": report.ok, "entries": report.entries, "head_id": report.head_id, "head_hash": report.head_hash,
            "redacted": report.redacted, "archived_entries": report.archived_entries,
            "archived_segments": report.archived_segments, "first_broken_id": report.first_broken_id,
            "problem": report.problem, "segments": None,
        }
        if args.archive_dir is not None:
            segments = []
            for anchor in await anchored_segments(db):
                path = args.archive_dir / anchor.file_name
                try:
                    check = await trio.to_thread.run_sync(check_segment_file, path, anchor.expected())
                except FileNotFoundError:
                    segments.append({"file": anchor.file_name, "ok": False, "problem": "missing"})
                    continue
                segments.append({"file": anchor.file_name, "ok": check.ok,
                                 "problem": check.chain.problem or (None if check.ok else "mismatch"),
                                 "mismatches": list(check.mismatches), "line": check.bad_line,
                                 "entries": check.chain.entries, "redacted": check.chain.redacted})
            verdict["segments"] = segments
            verdict["ok"] = verdict["ok"] and all(s["ok"] for s in segments)
        return verdict

    verdict = _with_database(settings, work)
    if isinstance(verdict, int):
        return verdict
    if args.json:
        print(json.dumps(verdict))
    else:
        print(_describe_database(verdict))
    return EXIT_OK if verdict["ok"] else EXIT_BROKEN


def _describe_database(v: dict[str, Any]) -> str:
    lines = []
    if v["problem"] is None:
        archived = (f", continuing {v['archived_entries']} archived entries in {v['archived_segments']} segment(s)"
                    if v["archived_segments"] else "")
        lines.append(f"database chain intact: {v['entries']} entries{archived}")
        if v["redacted"]:
            lines.append(f"{v['redacted']} redacted (personal data erased: links and chain fields verified)")
        lines.append(f"head: entry {v['head_id']} hash {v['head_hash']}")
    else:
        lines.append(f"database chain BROKEN at entry {v['first_broken_id']}: {_PROBLEMS[v['problem']]}")
    for segment in v["segments"] or []:
        if segment["ok"]:
            redacted = f", {segment['redacted']} redacted" if segment["redacted"] else ""
            lines.append(f"segment {segment['file']}: intact ({segment['entries']} entries{redacted}),"
                         " matches its anchor")
        elif segment["problem"] == "missing":
            lines.append(f"segment {segment['file']}: MISSING")
        elif segment["problem"] == "mismatch":
            facts = ", ".join(_FACTS.get(m, m) for m in segment["mismatches"])
            lines.append(f"segment {segment['file']}: BROKEN, does not match its anchor ({facts})")
        else:
            lines.append(f"segment {segment['file']}: BROKEN: {_PROBLEMS[segment['problem']]}")
    return "\n".join(lines)


# --- archive ---------------------------------------------------------------------------------

def _archive(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from hub.db.audit_archive import ArchiveWriteError, AuditPruneReport, BrokenChain, archive_and_prune

    older_than = datetime.now(timezone.utc) - timedelta(days=args.older_than)

    async def work(db: Any) -> AuditPruneReport:
        return await archive_and_prune(db, older_than=older_than, archive_dir=args.output_dir, dry_run=args.dry_run)

    try:
        report = _with_database(settings, work)
    except ArchiveWriteError as exc:
        print(f"campushub: cannot write segments to {args.output_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenChain as exc:
        print(f"campushub: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    if isinstance(report, int):
        return report
    if args.json:
        print(json.dumps({"dry_run": report.dry_run, "older_than": older_than.isoformat(),
                          "entries_archived": report.entries_archived, "entries_pruned": report.entries_pruned,
                          "segment_paths": [str(p) for p in report.segment_paths]}))
        return EXIT_OK
    verb = "would archive" if report.dry_run else "archived"
    print(f"audit archive: {verb} {report.entries_archived} entries older than {older_than.isoformat()}"
          f" in {len(report.segment_paths)} segment(s); "
          f"{'would prune' if report.dry_run else 'pruned'} {report.entries_pruned}")
    for path in report.segment_paths:
        print(f"  {path}")
    return EXIT_OK


def _with_database(settings: Settings, work: Any) -> Any:
    """Run ``work(db)`` against the configured database; an int: the exit code of a database with
    no audit chain yet (the message is printed)."""
    import asyncpg

    from hub.app.environment import with_services
    from hub.db import run_with_database

    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)
        assert settings.database_url is not None  # with_services fills it in or raises
        try:
            return run_with_database(settings.database_url, work)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.UndefinedFunctionError):
            print("campushub: the database has no audit chain yet: run `campushub migrate`", file=sys.stderr)
            return EXIT_BROKEN


# --- export ----------------------------------------------------------------------------------

def _export(args: argparse.Namespace, settings: Settings) -> int:
    import trio

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

    try:
        return _with_database(settings, work)
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
