"""``campushub backup`` and ``campushub restore``: sealed backups of the whole database (wired into hub/app/cli.py).

``backup --output FILE`` runs ``pg_dump --format=custom`` (one snapshot, so
consistent while the hub runs) and seals it chunk by chunk under a key
derived from the campus key (format: hub/adapters/backup_format.py; how:
hub/adapters/pg_dump.py). ``restore --input FILE --database-url URL`` restores
it into an EMPTY database in one transaction, verifying every chunk before
pg_restore reads it, then checks the audit chain there. ``restore --input FILE
--verify-only`` verifies every chunk and restores nothing (no database needed).

The campus key is the hub's (``CAMPUSHUB_MASTER_KEY`` or the key file): a
backup restores only where that key is. Back the key up separately from the
backups (docs/data-lifecycle.md, "Backups and restore").

Exit codes: 0 done, 1 failed (the message says why; a restore that failed
left the target database empty), 2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.config import Settings

if TYPE_CHECKING:  # imported lazily at run time: every CLI command builds this parser
    from hub.core.secrets_box import SecretsBox

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    backup = sub.add_parser("backup", help="write an encrypted, consistent backup of the database")
    backup.add_argument("--output", "-o", type=Path, required=True, metavar="FILE",
                        help="the backup file to write (replaced if it exists; written as FILE.partial first)")

    restore = sub.add_parser("restore", help="restore a backup into an empty database")
    restore.add_argument("--input", "-i", type=Path, required=True, metavar="FILE", help="a `campushub backup` file")
    target = restore.add_mutually_exclusive_group(required=True)
    target.add_argument("--database-url", metavar="URL",
                        help="the EMPTY database to restore into (postgresql://...); refused if it holds anything")
    target.add_argument("--verify-only", action="store_true",
                        help="verify every chunk of the file with the campus key; restore nothing")


def tool_dirs(settings: Settings) -> list[Path]:
    """Where to look for pg_dump/pg_restore: CAMPUSHUB_PG_BIN_DIR, PATH, Debian's, the embedded server's."""
    from hub.adapters.pg_dump import candidate_dirs
    from hub.embedded import client_tools_dir

    embedded = client_tools_dir()
    return candidate_dirs(settings.pg_bin_dir, [embedded] if embedded else [])


def run_backup(args: argparse.Namespace, settings: Settings) -> int:
    from hub.adapters.backup_format import BackupFormatError
    from hub.adapters.pg_dump import BackupError, backup_database
    from hub.app.environment import with_services
    from hub.db import Database, run_with_database

    output: Path = args.output
    if not output.parent.is_dir():
        raise ValueError(f"the directory of --output does not exist: {output.parent}")
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=True, broker=False)
        database_url = settings.database_url
        assert database_url is not None  # with_services fills it in or raises

        async def work(db: Database) -> Any:
            return await backup_database(db, output, tool_dirs(settings))

        try:
            result = run_with_database(database_url, work)
        except (BackupError, BackupFormatError) as exc:
            print(f"campushub backup: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:  # the output cannot be written, or the database cannot be reached
            print(f"campushub backup: failed, no backup written: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"campushub backup: wrote {result.path} ({result.file_bytes:,} bytes sealed, "
          f"{result.dump_bytes:,} bytes of pg_dump archive) in {result.seconds:.1f} s; "
          f"sealed with campus key {result.key_id}", file=sys.stderr)
    return EXIT_OK


def run_restore(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from hub.adapters.backup_format import BackupFormatError
    from hub.adapters.pg_dump import BackupError
    from hub.core.secrets_box import load_campus_key

    try:
        if args.verify_only:
            return _verify_only(args.input, load_campus_key(settings))
        return _restore(args.input, args.database_url, settings)
    except BackupFormatError as exc:
        print(f"campushub restore: {args.input} refused: {exc}. Nothing was restored.", file=sys.stderr)
        return EXIT_FAILED
    except BackupError as exc:
        print(f"campushub restore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, asyncpg.PostgresError) as exc:  # the target cannot be reached (or does not exist)
        print(f"campushub restore: cannot use the target database: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _verify_only(path: Path, campus_key: SecretsBox) -> int:
    from hub.adapters.backup_format import KEY_PURPOSE, iter_plaintext

    try:
        file = path.open("rb")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        total = sum(len(chunk) for chunk in iter_plaintext(
            file.read, lambda key_id, salt: campus_key.derive_key(KEY_PURPOSE, key_id=key_id, salt=salt)[1]))
    print(f"campushub restore: {path} verifies: every chunk intact, {total:,} bytes of pg_dump archive",
          file=sys.stderr)
    return EXIT_OK


def _restore(path: Path, database_url: str, settings: Settings) -> int:
    from hub.adapters.pg_dump import restore_database
    from hub.db import Database, run_with_database
    from hub.db.audit import verify_chain
    from hub.db.backup import table_row_counts

    if not path.is_file():
        raise ValueError(f"no such backup file: {path}")

    async def work(db: Database) -> tuple[Any, dict[str, int], Any]:
        result = await restore_database(db, path, tool_dirs(settings))
        return result, await table_row_counts(db), await verify_chain(db)

    result, counts, chain = run_with_database(database_url, work)
    created = result.metadata.get("created_at", "an unknown time")
    print(f"campushub restore: restored the backup of {created} in {result.seconds:.1f} s: "
          f"{len(counts)} tables, {sum(counts.values()):,} rows", file=sys.stderr)
    if not chain.ok:
        print(f"campushub restore: WARNING: the audit chain does not verify in the restored database: entry "
              f"{chain.first_broken_id} is {chain.problem}", file=sys.stderr)
        return EXIT_FAILED
    print(f"campushub restore: audit chain intact: {chain.entries} entries, head {chain.head_id}", file=sys.stderr)
    return EXIT_OK
