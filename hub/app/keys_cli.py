"""``campushub keys``: the campus key's status and rotation (wired into hub/app/cli.py).

``keys status`` lists the key ids the campus key holds and, for every sealed column
(hub/db/sealed_secrets.py), how many rows each key id sealed (and how many still wait in
plaintext for the hub's start-up seal pass).

``keys rotate`` re-encrypts everything under a new key without downtime:

1. it adds a key with the next id to the key file (an atomic rename: running hubs re-read the
   file when it changes, so they open the new blobs at once and seal new secrets with it);
2. it seals any leftover plaintext, then re-seals every blob not under the new key, in
   batches of ``--batch`` rows, each in a short transaction (hub/db/sealed_secrets.py: reseal);
3. it reports the rows moved and what is left under older keys. When nothing is, the old key
   lines may be removed from the key file (keep them with the backups they sealed: a backup
   restores only with the key it names).

With ``CAMPUSHUB_MASTER_KEY`` (no key file) the command cannot add the key itself: append an
``ID BASE64`` entry to the variable on every hub, restart them, then run ``keys rotate --resume``
(step 2 and 3 only). ``--resume`` also finishes an interrupted rotation.

Exit codes: 0 done, 1 some rows are not under the current key (the report says which), 2 usage
or configuration error.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

import asyncpg

from hub.core.config import Settings
from hub.core.secrets_box import SecretsBox, add_key, load_campus_key

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="the campus key that seals secrets at rest: status, rotate")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser("status", help="key ids of the campus key and the rows each one sealed, per column")
    rotate = actions.add_parser("rotate", help="add a new key and re-seal every secret under it, without downtime")
    rotate.add_argument("--resume", action="store_true",
                        help="add no key: re-seal everything under the current (highest) key only")
    rotate.add_argument("--batch", type=int, default=500, metavar="N",
                        help="rows per transaction (default 500; documents go 4 at a time)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.environment import with_services
    from hub.db import run_with_database
    from hub.db.sealed_secrets import ensure_campus_key_fits

    if args.keys_command == "rotate" and not args.resume:
        if settings.master_key:
            raise ValueError(
                "the campus key comes from CAMPUSHUB_MASTER_KEY, which this command cannot change: append a new "
                "entry ('ID BASE64', ';'-separated, ID one above the highest; a key is `head -c32 /dev/urandom "
                "| base64`) on every hub, restart them, then run `campushub keys rotate --resume`")
        if not settings.master_key_path.is_file():
            raise ValueError(f"no campus key file at {settings.master_key_path} (CAMPUSHUB_MASTER_KEY_FILE)")
    if args.keys_command == "rotate" and args.batch < 1:
        raise ValueError("--batch must be at least 1")
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=True, broker=False)
        assert settings.database_url is not None  # with_services fills it in or raises
        box = load_campus_key(settings)  # before any change: a malformed key file stops here
        try:
            if args.keys_command == "status":
                return _status(settings.database_url, box)
            if not args.resume:
                # Only a key that opens what is sealed now may be rotated away from.
                run_with_database(settings.database_url, ensure_campus_key_fits, secrets=box)
                new_id = add_key(settings.master_key_path)
                print(f"campushub keys: added key {new_id} to {settings.master_key_path}", file=sys.stderr)
                box = load_campus_key(settings)
            return _rotate(settings.database_url, box, args.batch)
        except asyncpg.UndefinedColumnError:
            raise ValueError("the database predates sealed secrets: run `campushub migrate` first") from None


def _status(database_url: str, box: SecretsBox) -> int:
    from hub.db import run_with_database
    from hub.db.sealed_secrets import key_counts

    counts = run_with_database(database_url, key_counts, secrets=box)
    print(f"campus key: key ids {', '.join(map(str, box.key_ids))}; new secrets are sealed with {box.current_key_id}")
    print(f"{'column':<42} {'key':>9} {'rows':>10}")
    for count in counts:
        key = "plaintext" if count.key_id is None else str(count.key_id)
        print(f"{count.column:<42} {key:>9} {count.rows:>10}")
    if not counts:
        print("(no secrets stored yet)")
    return EXIT_OK


def _rotate(database_url: str, box: SecretsBox, batch: int) -> int:
    from hub.db import Database, run_with_database
    from hub.db.sealed_secrets import KeyCount, ResealReport, key_counts, reseal, seal_pending

    async def work(db: Database) -> tuple[dict[str, int], list[ResealReport], list[KeyCount]]:
        sealed = await seal_pending(db, batch=batch)
        reports = await reseal(db, batch=batch)
        return sealed, reports, await key_counts(db)

    sealed, reports, counts = run_with_database(database_url, work, secrets=box)
    current = box.current_key_id
    for column, rows in sealed.items():
        if rows:
            print(f"sealed {rows} plaintext row(s) of {column}")
    for report in reports:
        line = f"{report.column}: re-sealed {report.resealed} row(s) under key {current}"
        if report.unopenable:
            line += f"; {report.unopenable} did NOT open (sealed by a key missing from the campus key?): left as they are"
        print(line)
    behind = [c for c in counts if c.key_id != current]
    if behind:
        print("not under the current key yet (re-run `campushub keys rotate --resume`):", file=sys.stderr)
        for c in behind:
            print(f"  {c.column}: {c.rows} row(s) under {'plaintext' if c.key_id is None else f'key {c.key_id}'}",
                  file=sys.stderr)
        return EXIT_INCOMPLETE
    retired = [k for k in box.key_ids if k != current]
    print(f"every secret is sealed with key {current}"
          + (f"; keys {', '.join(map(str, retired))} seal nothing in the database now (keep them only for the "
             "backups made before this rotation)" if retired else ""))
    return EXIT_OK

