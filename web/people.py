"""People's presenters: the objects and the CSV that both the admin's API and ``campushub users`` print.

One home for each shape, shared by the routes (web/routes/users_api.py,
accounts_api.py, privacy_api.py, people_pages.py) and the CLI
(hub/app/users_cli.py), so a script reads the same JSON from either. This
module imports no quart, no route and no database adapter at run time (the
records are only type hints): a ``campushub users`` subprocess loads it
without the web app. Pure functions: no I/O, safe from any task or thread.
"""
from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.db.erasure import ErasureReport
    from hub.db.people_import import CreatedAccount
    from hub.db.users import AccountRecord

#: The people import's body limit (``POST /api/v1/users/import``, and the file ``campushub users import``
#: reads); web/uploads.py raises the app's 64 KiB default to it for that route.
IMPORT_MAX_BYTES = 2 * 1024 * 1024

#: The columns of the activation codes as CSV (``?format=csv``), ready for a mail merge.
CODES_CSV_COLUMNS = ("username", "display_name", "role", "email", "roll_number", "activation_code", "expires_at")


def account_json(account: AccountRecord) -> dict[str, Any]:
    """The API's ``User`` object (no password hash, no token secret); datetimes as they are."""
    return {
        "id": account.id, "username": account.username, "display_name": account.display_name,
        "role": account.role, "email": account.email, "active": account.active,
        "deactivated_at": account.deactivated_at, "created_at": account.created_at,
        "updated_at": account.updated_at, "roll_number": account.roll_number, "program": account.program,
        "section": account.section,
    }


def codes_csv(created: tuple[CreatedAccount, ...]) -> str:
    """The new accounts and their activation codes as CSV (the API's ``format=csv`` and the CLI's output)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CODES_CSV_COLUMNS)
    for c in created:
        # Every value was refused at import if it began like a formula, and codes begin with a letter or digit.
        writer.writerow((c.username, c.display_name, c.role, c.email or "", c.roll_number or "",
                         c.activation.code if c.activation else "",
                         c.activation.expires_at.isoformat() if c.activation else ""))
    return out.getvalue()


def erasure_json(report: ErasureReport, *, terminal_commands: int) -> dict[str, Any]:
    """The API's ``Erasure`` object (the CLI prints the same)."""
    return {"student_id": report.student_id, "pseudonym": report.pseudonym,
            "already_erased": report.already_erased, "changed": report.changed,
            "terminal_commands": terminal_commands}
