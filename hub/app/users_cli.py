"""``campushub users``: create the first admin, list people, import them from CSV (wired into hub/app/cli.py).

``create-admin USERNAME --password-stdin`` works on an empty database (it
applies the migrations first) and refuses while an active admin exists,
unless ``--force``. The password is read from the first line of stdin (never
from the command line, where ``ps`` and shell history would keep it) and must
pass the password policy (hub/domain/password_policy.py). The actor recorded
in the security audit log is ``cli:<os user>``.

``erase STUDENT_ID --yes`` erases a former (deactivated) student
(hub/db/erasure.py; refused with exit 1 for an active account or an unknown id).

Exit codes: 0 done; 1 refused (an admin exists, the username is taken); 2
usage (a bad username, name, email or password, no database configured); 130
interrupted (hub/app/cli.py).
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from hub.core.config import Settings

if TYPE_CHECKING:  # the actions import these lazily: `campushub --help` stays fast
    from hub.db import Database

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: The longest password line read from stdin (the policy's own limit is lower; this bounds the read).
MAX_PASSWORD_LINE = 4096
#: Accounts fetched per query by ``list``.
LIST_PAGE = 500
MAX_MFA_RESET_REASON = 500


def add_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="people: create the first admin, list accounts, import a CSV")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    admin = actions.add_parser(
        "create-admin", help="create an admin account (refused while an active admin exists, unless --force)",
        description="Create an admin account. Works on an empty database: migrations are applied first. "
                    "The password is read from stdin, e.g. `printf '%s\\n' \"$PW\" | campushub users "
                    "create-admin alice --password-stdin`.")
    admin.add_argument("username")
    admin.add_argument("--password-stdin", action="store_true", required=True,
                       help="read the password from the first line of stdin (required)")
    admin.add_argument("--display-name", default="Administrator", help="the name shown (default Administrator)")
    admin.add_argument("--email", help="contact address (optional)")
    admin.add_argument("--force", action="store_true", help="create it even though an active admin exists")

    listing = actions.add_parser("list", help="list every account, by username")
    listing.add_argument("--json", action="store_true", help="print JSON ({items, total})")

    # --- reset-mfa (G3) ---
    reset_mfa = actions.add_parser(
        "reset-mfa", help="turn off someone's two-factor authentication (a lost phone); they enrol again",
        description="Turn off an account's two-factor authentication, e.g. the only admin lost their phone. "
                    "The person then logs in with their password and, if their role requires MFA, enrols "
                    "again at once. Recorded in the security audit log.")
    reset_mfa.add_argument("username")
    reset_mfa.add_argument("--reason", default="", help="why (kept in the audit log; at most 500 characters)")

    # --- erase (issue 14 §5) ---
    erase = actions.add_parser(
        "erase", help="erase a former (deactivated) student: personal data removed, records kept under a pseudonym",
        description="Erase a former student (docs/privacy.md, Export and erasure): their name, username, email, "
                    "roll number, PIN, token secret, documents, free-text reasons and notifications are removed "
                    "or pseudonymised; attendance, marks, leave and audit records stay under the pseudonym and "
                    "the audit chain still verifies. Refused for an active account (deactivate it first). The "
                    "running hub's terminal-roster keeper removes anything the terminals still hold within 15 "
                    "minutes. Recorded in the audit log.")
    erase.add_argument("student_id", help="the student's account id (stu-...)")
    erase.add_argument("--yes", action="store_true", required=True, help="confirm: this cannot be undone")
    erase.add_argument("--reason", default="", help="why: a request or case number, not the name (audit log; "
                                                    f"at most {MAX_MFA_RESET_REASON} characters)")
    erase.add_argument("--json", action="store_true", help="print the report as JSON")

    # --- import (G2) ---
    people = actions.add_parser(
        "import", help="import people from a CSV file, all or nothing (docs/people.md)",
        description="Import people from a student-information system's CSV (UTF-8; columns role, name, "
                    "username, email, roll_number, program, section). Every bad row is reported and nothing "
                    "is imported; re-importing the same file changes nothing. The new accounts' one-time "
                    "activation codes are printed once, as CSV, on stdout (or written to --codes FILE).")
    people.add_argument("file", help="the CSV file (at most 2 MiB)")
    people.add_argument("--dry-run", action="store_true", help="check the file and report; change nothing")
    people.add_argument("--codes", metavar="FILE",
                        help="write the activation codes to FILE (created, mode 0600; refused if it exists)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.environment import with_services
    from hub.db import migrate, run_with_database

    if args.users_command == "create-admin":
        password = _read_password()
        if password is None:
            return EXIT_USAGE
        args.password = password
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)
        database_url = settings.database_url
        assert database_url is not None  # with_services raised otherwise

        args.audit_archive_dir = settings.audit_archive_path

        async def work(db: Database) -> int:
            await migrate(db)
            return await _ACTIONS[args.users_command](db, args)

        return run_with_database(database_url, work)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _read_password() -> str | None:
    line = sys.stdin.readline(MAX_PASSWORD_LINE + 1)
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        print("campushub: no password on stdin (give it on the first line)", file=sys.stderr)
        return None
    if len(password) > MAX_PASSWORD_LINE:
        print("campushub: the password line is too long", file=sys.stderr)
        return None
    return password


async def _create_admin(db: Database, args: argparse.Namespace) -> int:
    import trio

    from hub.core.passwords import hash_password
    from hub.db.users import AccountConflict, AccountRefused, NewAccount, create_admin
    from hub.domain.password_policy import check_password
    from hub.domain.people import account_problem

    display_name = args.display_name.strip()
    problem = account_problem(username=args.username, display_name=display_name, role="admin", email=args.email)
    if problem is not None:
        print(f"campushub: {problem[0]}: {problem[1]}", file=sys.stderr)
        return EXIT_USAGE
    verdict = check_password(args.password, username=args.username, display_name=display_name,
                             email=args.email or "")
    if not verdict.ok:
        print(f"campushub: password refused: {verdict.reason}", file=sys.stderr)
        return EXIT_USAGE
    password_hash = await trio.to_thread.run_sync(hash_password, args.password)
    account = NewAccount(username=args.username, display_name=display_name, role="admin",
                         password_hash=password_hash, email=args.email)
    try:
        made = await create_admin(db, account, actor=_actor(), force=args.force)
    except (AccountRefused, AccountConflict) as refused:
        print(f"campushub: {refused.message}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"created admin {made.username} ({made.id}); log in at the hub's web address")
    return EXIT_OK


async def _list(db: Database, args: argparse.Namespace) -> int:
    from hub.db.users import AccountRecord, list_accounts
    from web.people import account_json  # the API's object, so scripts read one shape from either

    accounts: list[AccountRecord] = []
    while True:
        page, total = await list_accounts(db, limit=LIST_PAGE, offset=len(accounts))
        accounts.extend(page)
        if not page or len(accounts) >= total:
            break
    if args.json:
        print(json.dumps({"items": [account_json(a) for a in accounts], "total": len(accounts)}, default=_iso))
        return EXIT_OK
    print(f"{'USERNAME':<24} {'ROLE':<8} {'STATE':<12} {'ROLL':<12} NAME")
    for a in accounts:
        state = "active" if a.active else "deactivated"
        print(f"{a.username:<24} {a.role:<8} {state:<12} {a.roll_number or '-':<12} {a.display_name}")
    print(f"{len(accounts)} account(s)", file=sys.stderr)
    return EXIT_OK


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _read_at_most(path: str, limit: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(limit)


async def _import(db: Database, args: argparse.Namespace) -> int:
    import os

    import trio

    from hub.db.people_import import PeopleImportRejected, import_people
    from hub.db.users import AccountConflict
    from hub.domain.people_import import parse_people_bytes
    from web.people import IMPORT_MAX_BYTES, codes_csv

    try:
        data = await trio.to_thread.run_sync(_read_at_most, args.file, IMPORT_MAX_BYTES + 1)
    except OSError as exc:
        print(f"campushub: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if len(data) > IMPORT_MAX_BYTES:
        print(f"campushub: {args.file} is larger than {IMPORT_MAX_BYTES // (1024 * 1024)} MiB; split it",
              file=sys.stderr)
        return EXIT_USAGE
    parsed = parse_people_bytes(data)
    errors = list(parsed.errors)
    result = None
    try:
        if parsed.rows:
            result = await import_people(db, parsed.rows, actor=_actor(), dry_run=args.dry_run or bool(errors))
    except PeopleImportRejected as rejected:
        errors += rejected.errors
    except AccountConflict as conflict:
        print(f"campushub: {conflict.message} Nothing was imported; try again.", file=sys.stderr)
        return EXIT_FAILURE
    if errors:
        for e in sorted(errors, key=lambda e: (e.line, e.field or "")):
            print(f"{args.file}:{e.line}: {e.field or '-'}: {e.reason}", file=sys.stderr)
        print(f"campushub: {len(errors)} problem(s); nothing was imported", file=sys.stderr)
        return EXIT_FAILURE
    assert result is not None  # a file without rows is an error (the parser)
    verb = "would create" if result.dry_run else "created"
    print(f"{verb} {len(result.created)} account(s); {result.unchanged} already there, unchanged", file=sys.stderr)
    if result.dry_run or not result.created:
        return EXIT_OK
    text = codes_csv(result.created)
    if args.codes:
        try:
            descriptor = os.open(args.codes, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            # The accounts exist now: print the codes rather than lose them.
            print(f"campushub: cannot create {args.codes} ({exc.strerror}); the codes follow", file=sys.stderr)
            sys.stdout.write(text)
            return EXIT_FAILURE
        with os.fdopen(descriptor, "w", newline="") as out:
            out.write(text)
        print(f"activation codes written to {args.codes}: give each person theirs, then delete the file",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def _reset_mfa(db: Database, args: argparse.Namespace) -> int:
    from hub.db.mfa import remove_mfa
    from hub.db.users import get_user_by_username

    if len(args.reason) > MAX_MFA_RESET_REASON:
        print(f"campushub: --reason is at most {MAX_MFA_RESET_REASON} characters", file=sys.stderr)
        return EXIT_USAGE
    user = await get_user_by_username(db, args.username) if "\x00" not in args.username else None
    if user is None:
        print(f"campushub: no account {args.username!r}", file=sys.stderr)
        return EXIT_FAILURE
    # Ends their sessions too; a running hub notices within its account-cache TTL (30 s, web/protection.py).
    if not await remove_mfa(db, user.id, actor=_actor(), reason=args.reason,
                            end_sessions_at=datetime.now(timezone.utc)):
        print(f"campushub: {user.username} has no two-factor authentication", file=sys.stderr)
        return EXIT_FAILURE
    print(f"two-factor authentication of {user.username} turned off; they enrol again at their next login")
    return EXIT_OK


async def _erase(db: Database, args: argparse.Namespace) -> int:
    import dataclasses

    from hub.db.erasure import ErasureRefused, erase_from_archive, erase_student
    from web.people import erasure_json

    if len(args.reason) > MAX_MFA_RESET_REASON or "\x00" in args.reason + args.student_id:
        print(f"campushub: --reason is at most {MAX_MFA_RESET_REASON} characters, without NUL", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = await erase_student(db, args.student_id, actor=_actor(), now=datetime.now(timezone.utc),
                                     reason=args.reason)
    except ErasureRefused as refused:
        print(f"campushub: {refused.message}", file=sys.stderr)
        return EXIT_FAILURE
    archived = await erase_from_archive(db, report, archive_dir=args.audit_archive_dir)
    report = dataclasses.replace(report, changed={**report.changed, "audit_archive:redacted": archived})
    if args.json:
        # The API's object; the terminals are the running hub's keeper's (no commands queued here).
        print(json.dumps(erasure_json(report, terminal_commands=0)))
    elif report.already_erased:
        print(f"{args.student_id} was already erased ({report.pseudonym}); "
              + (f"{archived} archived audit entries redacted now" if archived else "nothing changed"))
    else:
        changed = ", ".join(f"{k} {v}" for k, v in report.changed.items() if v)
        print(f"erased {args.student_id}: now {report.pseudonym}; rows changed: {changed or 'none'}")
    return EXIT_OK


_ACTIONS = {"create-admin": _create_admin, "list": _list, "import": _import, "reset-mfa": _reset_mfa,
            "erase": _erase}
