"""The audit chain's hash, in Python: the one place outside SQL that knows it.

An entry's ``hash`` is ``sha256(prev_hash || utf8(canonical))`` where
``canonical`` is the text PostgreSQL prints for the ``jsonb`` object built by
``audit_entry_canonical(entry)``. Two formats, told apart by ``personal_commitment``:

- **v1** (entries written before migration 0024; no commitment): the canonical
  object holds every field, personal data included (migration 0004; 0013 adds
  ``action`` when set).
- **v2** (migration 0024): the canonical object holds the chain fields
  (:data:`CHAIN_FIELDS`) and ``personal``, the hex of
  ``personal_commitment = sha256(personal_salt || utf8(personal_text))``, where
  ``personal_text`` is the jsonb text of the :data:`PERSONAL_FIELDS`
  (``audit_personal_canonical``). The personal payload is thus outside the
  hash: it can be redacted (pseudonymised, salt deleted) and the chain still
  verifies; such an entry is reported ``redacted``, not ``altered``.

This module reproduces those texts byte for byte, so a chain can be checked
(``campushub audit verify`` on an exported JSON-lines file or an archived
segment) without a database. ``tests/db/test_audit_hash.py`` checks it against
PostgreSQL's own output for awkward values.

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
from typing import Any, Iterable, Iterator, Literal, Mapping

ZERO_HASH = bytes(32)

#: The fields a v1 entry's hash covers, as ``audit_entry_canonical`` lists them; ``action`` too when
#: it is set (security entries, migration 0013; attendance entries and older ones have none).
HASHED_FIELDS = ("id", "at", "actor", "entity", "entity_id", "session_id", "student_id", "course_id",
                 "before", "after", "reason")

#: The fields a v2 entry's hash covers directly (plus ``personal``, the commitment's hex).
CHAIN_FIELDS = ("id", "at", "entity", "action", "session_id", "course_id")

#: A v2 entry's personal payload: what its commitment covers, and what redaction may rewrite.
PERSONAL_FIELDS = ("actor", "entity_id", "student_id", "before", "after", "reason")

#: What can be wrong with an entry, in the order verification checks it.
Problem = Literal["missing_hash", "broken_link", "altered", "malformed"]


def _hex(value: bytes | str | None) -> str | None:
    """A hash or salt as exports write it (lowercase hex); the database gives bytes."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if not isinstance(value, str):
        raise TypeError("a hash is bytes or hex text")
    return value.lower()


def is_v2(entry: Mapping[str, Any]) -> bool:
    """Whether the entry hashes a commitment to its personal payload (migration 0024 and later)."""
    return entry.get("personal_commitment") is not None


def canonical_entry(entry: Mapping[str, Any]) -> str:
    """The text an entry's hash covers. A v1 entry needs the :data:`HASHED_FIELDS`; a v2 entry the
    :data:`CHAIN_FIELDS` and ``personal_commitment`` (bytes or hex). ``at`` is an aware datetime or
    an ISO 8601 string with an offset; ``before``/``after`` are JSON values."""
    if is_v2(entry):
        values = {name: entry[name] for name in CHAIN_FIELDS}
        values["at"] = utc_text(values["at"])
        values["personal"] = _hex(entry["personal_commitment"])
        return jsonb_text(values)
    values = {name: entry[name] for name in HASHED_FIELDS}
    values["at"] = utc_text(values["at"])
    if entry.get("action") is not None:
        values["action"] = entry["action"]
    return jsonb_text(values)


def personal_text(entry: Mapping[str, Any]) -> str:
    """The text a v2 entry's commitment covers (``audit_personal_canonical`` in SQL)."""
    return jsonb_text({name: entry[name] for name in PERSONAL_FIELDS})


def personal_commitment(salt: bytes, entry: Mapping[str, Any]) -> bytes:
    """``sha256(salt || utf8(personal_text(entry)))``: the commitment a v2 entry's hash covers."""
    return hashlib.sha256(salt + personal_text(entry).encode()).digest()


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


class MalformedLine(ValueError):
    """A line of an export or segment that is not a JSON object (``line``: 1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line} is not an audit entry")
        self.line = line


def parse_entries(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """JSON-lines text (an export or an archived segment) to entries, numbers as
    :class:`~decimal.Decimal` (the digits they were hashed with: 75.00 is not 75.0); blank lines
    skipped. Raises :class:`MalformedLine` at the first line that is not a JSON object."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line, parse_float=Decimal)
        except ValueError:
            raise MalformedLine(number) from None
        if not isinstance(entry, dict):
            raise MalformedLine(number)
        yield entry


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
    #: Entries whose personal payload was redacted (erasure): their links and chain fields are
    #: checked (a v1 entry's links only), their personal payload cannot be.
    redacted: int = 0


def check_entries(entries: Iterable[Mapping[str, Any]], *, allow_gaps: bool = False) -> ChainCheck:
    """Check entries given oldest first (hashes in hex, as exported): each one's hash must match its
    content and prev_hash, and each prev_hash must be the previous entry's hash -- unless
    ``allow_gaps`` (a filtered export skips entries): then a link that does not join only counts as
    a gap. A v2 entry's personal payload must match its commitment unless the entry is marked
    ``redacted`` (then it is counted, not failed; a redacted v1 entry, whose hash covered the
    payload itself, is checked by its links only). Stops at the first entry that fails. The first
    entry's own prev_hash cannot be checked here: it is reported, so it can be compared with the
    log (all zeros for a whole-log export; an archive anchor for a segment)."""
    count, start, prev_hash = 0, None, None
    head_id, head_hash, gaps, redacted = None, None, 0, 0

    def broken(entry_id: Any, problem: Problem) -> ChainCheck:
        return ChainCheck(False, count, start, head_id, head_hash, gaps, entry_id, problem, redacted)

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
        is_redacted = entry.get("redacted") is True
        try:
            if is_redacted and not is_v2(entry):
                actual = entry["hash"]  # its hash covered what was erased: only its links can be checked
            else:
                actual = entry_hash(bytes.fromhex(entry["prev_hash"]), entry).hex()
            payload_ok = is_redacted or not is_v2(entry) or (
                entry.get("personal_salt") is not None and personal_commitment(
                    bytes.fromhex(entry["personal_salt"]), entry).hex() == _hex(entry["personal_commitment"]))
        except (KeyError, ValueError, TypeError, AttributeError):
            # A field missing or of the wrong shape: not something the log can have produced.
            return broken(entry.get("id"), "malformed")
        if actual != entry["hash"] or not payload_ok:
            return broken(entry["id"], "altered")
        redacted += is_redacted
        prev_hash, head_id, head_hash = entry["hash"], entry["id"], entry["hash"]
    return ChainCheck(True, count, start, head_id, head_hash, gaps, redacted=redacted)
