"""The audit chain's hash, in Python: the one place outside SQL that knows it.

An entry's ``hash`` is ``sha256(prev_hash || utf8(canonical))`` where
``canonical`` is the text PostgreSQL prints for the ``jsonb`` object built by
``audit_entry_canonical(entry)`` (migration 0004; 0013 adds ``action`` when set). This module reproduces that
text byte for byte, so a chain can be checked (``campushub audit verify`` on an
exported JSON-lines file) or extended (:mod:`hub.db.attendance` hashes a batch
before inserting it) without a database. ``tests/db/test_audit_hash.py`` checks
it against PostgreSQL's own output for awkward values.

How ``jsonb`` prints, and so what this reproduces: object keys ordered by their
UTF-8 length, then bytewise (the last of duplicate keys wins); ``", "`` between
members and ``": "`` after keys; strings escape only ``"``, ``\\``, and control
characters (``\\b \\f \\n \\r \\t``, others as ``\\u00xx``), everything else
raw UTF-8; numbers as ``numeric`` prints them (plain digits, the scale written,
never an exponent). Numbers must therefore be parsed as :class:`~decimal.Decimal`
(``json.loads(text, parse_float=Decimal)``) to verify an exported entry exactly:
a float would turn ``75.00`` into ``75.0``.

Pure: no I/O, safe to call from any thread or task.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Literal, Mapping

ZERO_HASH = bytes(32)

#: The fields an entry's hash covers, as ``audit_entry_canonical`` lists them; ``action`` too when
#: it is set (security entries, migration 0013; attendance entries and older ones have none).
HASHED_FIELDS = ("id", "at", "actor", "entity", "entity_id", "session_id", "student_id", "course_id",
                 "before", "after", "reason")

#: What can be wrong with an entry, in the order verification checks it.
Problem = Literal["missing_hash", "broken_link", "altered", "malformed"]


def canonical_entry(entry: Mapping[str, Any]) -> str:
    """The text an entry's hash covers. ``entry`` needs the :data:`HASHED_FIELDS`; ``at`` is an
    aware datetime or an ISO 8601 string with an offset; ``before``/``after`` are JSON values."""
    values = {name: entry[name] for name in HASHED_FIELDS}
    values["at"] = utc_text(values["at"])
    if entry.get("action") is not None:
        values["action"] = entry["action"]
    return jsonb_text(values)


def entry_hash(prev_hash: bytes, entry: Mapping[str, Any]) -> bytes:
    """``sha256(prev_hash || utf8(canonical_entry(entry)))``: the hash the chain stores."""
    return hashlib.sha256(prev_hash + canonical_entry(entry).encode()).digest()


def utc_text(at: datetime | str) -> str:
    """An instant as the canonical form writes it: UTC, microseconds, ``Z``."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.utcoffset() is None:
        raise ValueError("an audit entry's 'at' needs a UTC offset")
    u = at.astimezone(timezone.utc)
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f".{u.microsecond:06d}Z")


def jsonb_text(value: Any) -> str:
    """``value`` as PostgreSQL prints it once stored as ``jsonb``."""
    return _json(value, jsonb=True)


def exact_json(value: Any) -> str:
    """Compact JSON keeping each object's key order and each number's exact digits
    (:class:`~decimal.Decimal`), datetimes in ISO 8601: how exports write entries, so that
    reading one back with ``parse_float=Decimal`` gives what was hashed."""
    return _json(value, jsonb=False)


def _json(value: Any, *, jsonb: bool) -> str:
    if isinstance(value, datetime) and not jsonb:
        return json.dumps(value.isoformat())
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (Decimal, float)):
        return _numeric_text(value)
    comma, colon = (", ", ": ") if jsonb else (",", ":")
    if isinstance(value, Mapping):
        keys = list(value)
        if jsonb:
            keys = sorted(keys, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + comma.join(
            f"{json.dumps(k, ensure_ascii=False)}{colon}{_json(value[k], jsonb=jsonb)}" for k in keys) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + comma.join(_json(v, jsonb=jsonb) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _numeric_text(number: Decimal | float) -> str:
    # A float is what json.dumps would have sent PostgreSQL: its shortest repr, parsed as numeric.
    d = number if isinstance(number, Decimal) else Decimal(repr(number))
    if not d.is_finite():
        raise ValueError("JSON has no NaN or Infinity")
    if d.is_zero():
        d = abs(d)  # numeric has no negative zero
    return format(d, "f")


@dataclass(frozen=True)
class ChainCheck:
    """The verdict on a sequence of entries (see :func:`check_entries`)."""

    ok: bool
    entries: int
    #: The first entry's prev_hash (all zeros: the chain starts at the log's first entry).
    start_prev_hash: str | None
    head_id: int | None
    head_hash: str | None
    #: Places where an entry's prev_hash is not the previous entry's hash, when gaps are allowed.
    gaps: int = 0
    first_broken_id: int | None = None
    problem: Problem | None = None


def check_entries(entries: Iterable[Mapping[str, Any]], *, allow_gaps: bool = False) -> ChainCheck:
    """Check entries given oldest first (hashes in hex, as exported): each one's hash must match its
    content and prev_hash, and each prev_hash must be the previous entry's hash -- unless
    ``allow_gaps`` (a filtered export skips entries): then a link that does not join only counts as
    a gap. Stops at the first entry that fails. The first entry's own prev_hash cannot be checked
    here: it is reported, so it can be compared with the log (all zeros for a whole-log export)."""
    count, start, prev_hash = 0, None, None
    head_id, head_hash, gaps = None, None, 0

    def broken(entry_id: Any, problem: Problem) -> ChainCheck:
        return ChainCheck(False, count, start, head_id, head_hash, gaps, entry_id, problem)

    for entry in entries:
        count += 1
        if not isinstance(entry, Mapping):
            return broken(None, "malformed")
        if not entry.get("hash") or not entry.get("prev_hash"):
            return broken(entry.get("id"), "missing_hash")
        if prev_hash is None:
            start = entry["prev_hash"]
        elif entry["prev_hash"] != prev_hash:
            if not allow_gaps:
                return broken(entry["id"], "broken_link")
            gaps += 1
        try:
            actual = entry_hash(bytes.fromhex(entry["prev_hash"]), entry).hex()
        except (KeyError, ValueError, TypeError):
            # A field missing or of the wrong shape: not something the log can have produced.
            return broken(entry.get("id"), "malformed")
        if actual != entry["hash"]:
            return broken(entry["id"], "altered")
        prev_hash, head_id, head_hash = entry["hash"], entry["id"], entry["hash"]
    return ChainCheck(True, count, start, head_id, head_hash, gaps)
