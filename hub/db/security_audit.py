"""THE way to record a security action (people, accounts, MFA, logins, devices, rules, webhooks,
ticket policy) in the hash-chained audit log, beside the attendance changes.

One entry says who (``actor``) did what (``action``) to which thing (``entity``/``entity_id``),
what it looked like before and after, and why. The entry joins the one chain of
``audit_log`` through its insert trigger (migration 0004; ``action`` is hashed since 0013), so
an export verifies offline like any other stretch of the log (``campushub audit verify``).

Never a secret: before/after pass through :func:`redact`, which replaces the value of every key
named like a secret (passwords and their hashes, one-time codes, TOTP secrets, keys, tokens) with
``"[redacted]"`` at any depth, so an entry still says *that* such a field changed but never *to
what*. Callers should still pass only what a reviewer needs (a role, a flag, a name), not rows.

Concurrency contract: :func:`record` runs inside the caller's transaction
(``Database.run(work, transaction=True)``, READ COMMITTED: the chain trigger refuses any other
isolation), on the caller's connection; the entry commits or rolls back with the change it
describes. The insert takes the audit chain's transaction-scoped advisory lock
(:data:`hub.db.attendance.AUDIT_CHAIN_LOCK`) -- the lock every attendance write holds -- until
the caller's transaction ends. So call it as the LAST statement of the transaction, after the
row changes it describes, and commit at once: the lock is then held for one round trip and the
commit, and no row lock is taken while holding it (which keeps the lock order of the batch
writer, chain lock then rows, from ever meeting the reverse). One round trip per entry.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

import asyncpg

#: What an entry stores in place of a secret's value.
REDACTED = "[redacted]"

#: Keys (lowercased) whose values are never stored, wherever they appear in before/after.
SECRET_NAMES = frozenset({"key", "code", "codes", "hash", "salt", "otp", "totp", "pin", "seed"})
#: ... nor those of keys ending like this (``password_hash``, ``totp_secret``, ``reset_code``,
#: ``recovery_codes``, ``hmac_key``, ``refresh_token``, ``new_password``, ...).
SECRET_SUFFIXES = ("password", "passphrase", "secret", "token", "_hash", "_key", "_code", "_codes",
                   "_otp", "_pin", "_seed", "_salt")

#: What an entity or action name looks like (also what the audit search accepts for them).
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

#: The security entities and actions recorded today, for the audit page's suggestions
#: (the log takes any name; people, accounts, MFA and logins are recorded by their own modules).
KNOWN_ACTIONS: dict[str, tuple[str, ...]] = {
    "user": ("created", "updated", "role_changed", "deactivated", "reactivated", "deleted", "imported"),
    "account": ("code_issued", "activated", "password_set_after_reset", "password_changed", "password_reset"),
    "mfa": ("enrolled", "removed", "recovery_used", "recovery_codes_replaced"),
    "login": ("login_succeeded", "login_failed"),
    "device": ("registered", "rotated", "revoked"),
    "threshold_rule": ("created", "updated", "deleted"),
    "webhook": ("created", "updated", "deleted", "test_sent"),
    "ticket_policy": ("updated",),
    "personal_data": ("exported", "erased"),
    "term": ("deleted",),
    "room": ("deleted",),
    "course": ("deleted", "credits_changed"),
    "grades": ("released", "finalized"),
    "grade_scale": ("updated",),
    "course_result": ("withdrawn",),
    "section": ("deleted",),
    "risk_model": ("pinned", "unpinned"),
}
MAX_ACTOR_CHARS = 200
MAX_ENTITY_ID_CHARS = 200
MAX_REASON_CHARS = 1000
#: Each of before/after, as stored JSON.
MAX_STATE_BYTES = 16 * 1024
_MAX_DEPTH = 8


class InvalidAuditEntry(ValueError):
    """An entry that can never be written (a bad name, a value too large or not JSON)."""


def is_secret_name(key: str) -> bool:
    """Whether a before/after key names a secret (its value is then never stored)."""
    name = key.lower()
    return name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """``value`` (JSON: dicts, lists, strings, numbers, booleans, None) with every secret-named
    key's value replaced by :data:`REDACTED`, at any depth. Raises :class:`InvalidAuditEntry`
    for anything that is not JSON (bytes, objects) or nested deeper than 8."""
    if _depth > _MAX_DEPTH:
        raise InvalidAuditEntry("an audit entry's before/after is nested too deeply")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidAuditEntry("an audit entry's before/after holds a NUL character")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidAuditEntry("an audit entry's before/after keys must be strings")
            out[key] = REDACTED if is_secret_name(key) and item is not None else redact(item, _depth=_depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item, _depth=_depth + 1) for item in value]
    raise InvalidAuditEntry(f"an audit entry's before/after holds a {type(value).__name__}, not JSON")


def _state_json(name: str, value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidAuditEntry(f"{name} must be a JSON object or None")
    try:
        text = json.dumps(redact(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN or infinity
        raise InvalidAuditEntry(f"{name}: {exc}") from None
    if len(text.encode()) > MAX_STATE_BYTES:
        raise InvalidAuditEntry(f"{name} is larger than {MAX_STATE_BYTES} bytes: record less of it")
    return text


def _check_text(name: str, value: str, limit: int, *, required: bool) -> None:
    if not isinstance(value, str):
        raise InvalidAuditEntry(f"{name} must be text")
    if required and not value:
        raise InvalidAuditEntry(f"{name} is required")
    if len(value) > limit:
        raise InvalidAuditEntry(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidAuditEntry(f"{name} holds a NUL character")


async def record(
    conn: asyncpg.Connection, *, actor: str, action: str, entity: str, entity_id: str,
    before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None, reason: str = "",
) -> None:
    """Inside the caller's transaction: append one hash-chained entry for a security action.

    ``actor``: who did it (a user id; ``cli`` or ``system`` when no user acted; for a failed
    login, the attempted username). ``action`` and ``entity``: lowercase names
    (``[a-z][a-z0-9_]*``, at most 64), e.g. ``device``/``revoked``. ``before``/``after``: JSON
    objects (secrets redacted, at most 16 KiB each) or ``None`` (the thing did not exist / no
    longer exists). Raises :class:`InvalidAuditEntry` before touching the database.
    See the module docstring for where in a transaction to call it.
    """
    for name, value in (("action", action), ("entity", entity)):
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise InvalidAuditEntry(f"{name} must be a lowercase name ([a-z][a-z0-9_]*, at most 64): {value!r:.80}")
    _check_text("actor", actor, MAX_ACTOR_CHARS, required=True)
    _check_text("entity_id", entity_id, MAX_ENTITY_ID_CHARS, required=True)
    _check_text("reason", reason, MAX_REASON_CHARS, required=False)
    before_json, after_json = _state_json("before", before), _state_json("after", after)
    await conn.execute(
        "INSERT INTO audit_log (actor, entity, action, entity_id, before, after, reason)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
        actor, entity, action, entity_id, before_json, after_json, reason)
