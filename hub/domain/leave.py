"""Leave rules (pure): validation, overlap, which sessions a leave covers, what approving and
cancelling do to each attendance record, and which documents are accepted.

No I/O and no clock: "today" and "now" are passed in.

Decisions (docs/records.md):

- A leave excuses *absences*: a covered session whose record is missing or
  ``absent`` becomes ``excused``. A ``present`` or ``late`` record is left
  alone (the student attended), and so is a record already ``excused`` by
  something else.
- A check-in during an approved leave wins: the hub's writer lets a check-in
  replace ``excused`` (the student came after all), and cancelling the leave
  later leaves that record alone.
- Cancelling restores exactly what each record held before the leave, but
  only where the record still holds the leave's ``excused``; a record that
  did not exist is removed again, or, if its session has ended meanwhile,
  becomes ``absent`` (what the close of the session would have made it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence

LEAVE_STATUSES = ("applied", "approved", "rejected", "cancelled")
#: Applications that block an overlapping one.
ACTIVE_STATUSES = frozenset({"applied", "approved"})
#: Source of the records a leave changes (and of the ones its cancellation restores to "absent").
LEAVE_SOURCE = "leave"
MAX_LEAVE_DAYS = 60
#: How far back a leave may start (a sick note handed in after the illness).
MAX_BACKDATE_DAYS = 30
#: How far ahead a leave may start.
MAX_AHEAD_DAYS = 365
MAX_REASON_CHARS = 2000
MAX_NOTE_CHARS = 1000
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_FILENAME_CHARS = 200
#: All leave documents a student has stored at once, cancelled applications' included until they
#: are purged: applying and cancelling over and over cannot fill the database.
DOCUMENT_QUOTA_BYTES = 25 * 1024 * 1024
#: A cancelled application's document is deleted this long after the cancellation (the application
#: itself stays, with its history); decided applications keep theirs (docs/records.md).
CANCELLED_DOCUMENT_GRACE = timedelta(days=7)


def document_quota_problem(stored_bytes: int, new_bytes: int) -> str | None:
    """Why a new document of ``new_bytes`` would exceed the student's quota, or None if it fits."""
    if stored_bytes + new_bytes <= DOCUMENT_QUOTA_BYTES:
        return None
    mib = 1024 * 1024
    return (f"Your leave documents would take {(stored_bytes + new_bytes) / mib:.1f} MB; the limit is "
            f"{DOCUMENT_QUOTA_BYTES // mib} MB per student ({stored_bytes / mib:.1f} MB stored now, documents of "
            f"cancelled applications included until they are deleted {CANCELLED_DOCUMENT_GRACE.days} days after "
            "the cancellation).")

#: Magic bytes → the only content types a document may have.
_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
DOCUMENT_TYPES = tuple(t for _, t in _MAGIC)


class LeaveRuleError(ValueError):
    """A leave request or action the rules refuse. ``code`` is the API's error code."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass(frozen=True)
class LeavePeriod:
    id: int
    starts_on: date
    ends_on: date
    status: str


@dataclass(frozen=True)
class SessionSlot:
    """A class session as leave coverage sees it; ``local_date`` in its term's timezone."""

    session_id: str
    course_id: str
    section_id: str | None
    local_date: date
    status: str


@dataclass(frozen=True)
class RecordValue:
    status: str
    checked_in_at: datetime | None
    source: str


@dataclass(frozen=True)
class Restore:
    """What cancelling a leave writes to one record: ``status=None`` removes it."""

    session_id: str
    status: str | None
    checked_in_at: datetime | None
    source: str


@dataclass(frozen=True)
class LeaveEntry:
    """A record an approved leave changed, with its value before (``prior=None``: no record)."""

    session_id: str
    prior: RecordValue | None


# --------------------------------------------------------------------------- applying


def validate_period(starts_on: date, ends_on: date, today: date) -> None:
    if ends_on < starts_on:
        raise LeaveRuleError("The leave must end on or after the day it starts.", field="ends_on")
    if (ends_on - starts_on).days + 1 > MAX_LEAVE_DAYS:
        raise LeaveRuleError(f"A leave may last at most {MAX_LEAVE_DAYS} days.", field="ends_on")
    if (today - starts_on).days > MAX_BACKDATE_DAYS:
        raise LeaveRuleError(f"A leave may start at most {MAX_BACKDATE_DAYS} days ago.", field="starts_on")
    if (starts_on - today).days > MAX_AHEAD_DAYS:
        raise LeaveRuleError(f"A leave may start at most {MAX_AHEAD_DAYS} days ahead.", field="starts_on")


def validate_text(value: str, *, field: str, limit: int, required: bool) -> str:
    """Trimmed text within ``limit`` characters; required text must not be blank."""
    text = value.strip()
    if required and not text:
        raise LeaveRuleError(f"'{field}' must not be blank.", field=field)
    if len(text) > limit:
        raise LeaveRuleError(f"'{field}' may be at most {limit} characters.", field=field)
    return text


def find_overlap(starts_on: date, ends_on: date, existing: Iterable[LeavePeriod]) -> LeavePeriod | None:
    """The first active application (applied or approved) sharing a day with the period, if any."""
    for period in sorted(existing, key=lambda p: (p.starts_on, p.id)):
        if period.status in ACTIVE_STATUSES and period.starts_on <= ends_on and starts_on <= period.ends_on:
            return period
    return None


def sniff_document(data: bytes) -> str | None:
    """The content type ``data`` really has (by magic bytes), or ``None`` if it is not accepted."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return None


def validate_document(data: bytes, declared_type: str | None, filename: str) -> tuple[str, str]:
    """``(content_type, clean filename)`` of an acceptable document; refuses empty, oversized,
    unknown or mislabelled files (the declared type must match what the bytes are)."""
    if not data:
        raise LeaveRuleError("The document is empty.", field="document")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise LeaveRuleError(f"The document may be at most {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.",
                             field="document", code="document_too_large")
    actual = sniff_document(data)
    if actual is None:
        raise LeaveRuleError("The document must be a PDF, JPEG or PNG file.", field="document",
                             code="unsupported_document")
    if declared_type is not None and declared_type != actual:
        raise LeaveRuleError(f"The document is a {actual} file, not {declared_type}.", field="document",
                             code="unsupported_document")
    return actual, clean_filename(filename, actual)


def clean_filename(filename: str, content_type: str) -> str:
    """A safe display name: no path, no control or quote characters, bounded, never empty."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>;')
    base = base.strip()[:MAX_FILENAME_CHARS]
    if not base or base in (".", ".."):
        base = "document." + {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}[content_type]
    return base


# --------------------------------------------------------------------------- deciding


def next_status(current: str, action: str) -> str:
    """The status after ``action`` (approve | reject | cancel); refuses what the current one forbids.

    applied → approved | rejected | cancelled; approved → cancelled; rejected
    and cancelled are final.
    """
    allowed = {
        ("applied", "approve"): "approved",
        ("applied", "reject"): "rejected",
        ("applied", "cancel"): "cancelled",
        ("approved", "cancel"): "cancelled",
    }
    try:
        return allowed[(current, action)]
    except KeyError:
        raise LeaveRuleError(f"A leave that is {current} cannot be {_past(action)}.", code="conflict") from None


def _past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}.get(action, action)


def covered_sessions(
    starts_on: date,
    ends_on: date,
    sessions: Iterable[SessionSlot],
    enrolments: Mapping[str, str | None],
    holidays: Sequence[tuple[date, date]],
) -> list[str]:
    """Ids of the sessions a leave covers, in date order.

    A session is covered when it falls on a day of the leave (in its term's
    timezone), belongs to a course the student is enrolled in (and to their
    section, when they have one and the session names one), is not
    cancelled, and is not on a holiday.
    """
    chosen = []
    for s in sorted(sessions, key=lambda s: (s.local_date, s.session_id)):
        if not starts_on <= s.local_date <= ends_on or s.status == "cancelled":
            continue
        if s.course_id not in enrolments:
            continue
        section = enrolments[s.course_id]
        if section is not None and s.section_id is not None and s.section_id != section:
            continue
        if any(first <= s.local_date <= last for first, last in holidays):
            continue
        chosen.append(s.session_id)
    return chosen


def excuse_plan(covered: Sequence[str], current: Mapping[str, RecordValue | None]) -> list[str]:
    """Which covered sessions approving the leave marks excused: no record yet, or absent."""
    plan = []
    for session_id in covered:
        record = current.get(session_id)
        if record is None or record.status == "absent":
            plan.append(session_id)
    return plan


def revert_plan(
    entries: Sequence[LeaveEntry],
    current: Mapping[str, RecordValue | None],
    ended: Mapping[str, bool],
) -> list[Restore]:
    """What cancelling an approved leave writes (see the module docstring)."""
    restores = []
    for entry in entries:
        record = current.get(entry.session_id)
        if record is None or record.status != "excused" or record.source != LEAVE_SOURCE:
            continue  # changed since (a check-in, a correction): that newer value stands
        if entry.prior is not None:
            restores.append(Restore(entry.session_id, entry.prior.status, entry.prior.checked_in_at,
                                    entry.prior.source))
        elif ended.get(entry.session_id, False):
            restores.append(Restore(entry.session_id, "absent", None, LEAVE_SOURCE))
        else:
            restores.append(Restore(entry.session_id, None, None, LEAVE_SOURCE))
    return restores
