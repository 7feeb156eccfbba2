"""Plain words for the codes people would otherwise read: THE one mapping.

The API keeps its codes (``invalid_token``, ``replayed_token``, ``token_reuse``,
``forbidden`` ...); everything a person reads says what they mean instead.
Server-rendered pages use the Jinja filters registered by :func:`register`
(``rejection_words``, ``flag_words``, ``alarm_type_words``, ``device_kind_words`` ...); page scripts get
the tables they need embedded in their page (``FLAG_WORDS``, ``ALARM_WORDS``, ``DEVICE_WORDS``), and any other
client can read the whole mapping from ``GET /wording.json`` (:func:`wording_json`, served
by web/routes/academic_pages.py), so there is one sentence per code.

``tests/web/test_wording.py`` derives every code the hub can emit from the
source (``reject(...)``, ``Rejected(...)``, ``WireError(...)``, the check-in
flags) and checks that each has a sentence here; the device kinds, command names and statuses are checked
against the tuples that declare them (and the database's own CHECK on ``devices.kind``).
"""
from __future__ import annotations

from typing import Any

from quart import Quart

from hub.domain.checkin import FLAG_LABELS

#: Why a message or check-in was refused (rejected_events.reason, a check-in's refusal), in words.
REJECTION_WORDS: dict[str, str] = {
    "oversize": "The message was larger than the hub accepts.",
    "malformed": "The message could not be read (damaged or not in the device format).",
    "schema": "The message had missing or wrong fields (a device running other software?).",
    "bad_topic": "The message came on an address the hub does not use for devices.",
    "device_mismatch": "The message claimed to come from another device than the one that sent it.",
    "empty_status": "An empty status message (a device's retained status being cleared).",
    "unsigned_status": "A status without a signature, from an edge agent older than the hub.",
    "unknown_device": "The device is not registered.",
    "revoked_device": "The device's registration was revoked.",
    "bad_signature": "The message's signature did not match the device's key (wrong or old key, or tampering).",
    "bad_algorithm": "The message was signed in a way the hub does not accept.",
    "clock_skew": "The device's clock is ahead of the hub's, so the time of the message cannot be trusted.",
    "expired": "The message was signed too long ago to be accepted safely.",
    "stale_status": "An older status than the one already applied (a replay or a late message).",
    "rate_limited": "The device sent more messages than allowed; they were refused until it slows down.",
    "unknown_command": "The device answered a command the hub never sent it.",
    "unsupported_kind": "The device sent a kind of message the hub does not handle.",
    "no_live_session": "No class was on in the device's room at the time of the scan.",
    "invalid_token": "The code scanned is not a valid CampusHub check-in code (damaged, forged or from another campus).",
    "expired_token": "The check-in code had expired: it changes every few seconds, so scan the current one.",
    "replayed_token": "This check-in code was already used; each code counts once.",
    "not_enrolled": "The student is not on this class's roster.",
    "duplicate_checkin": "The student had already checked in to this class.",
    "outside_session_window": "The scan was outside the class's check-in time.",
    "after_late_cutoff": "The scan came after the late cut-off, so it does not count.",
    "internal_error": "Something went wrong inside the hub; the message is kept for inspection.",
    "persistence_error": "The hub could not store the message; it is kept for inspection.",
}

#: What each check-in flag means for the teacher reviewing it (the kind's label is FLAG_LABELS).
FLAG_WORDS: dict[str, str] = {
    "shared_device": "The same phone checked in more than one student within a minute.",
    "wrong_room": "The student scanned in a room other than the class's.",
    "token_reuse": "A student's personal check-in code was presented again, possibly by someone else.",
    "clock_skew": "The scanner's clock is off, so the time of this check-in may be wrong.",
    "outside_network": "The check-in came from outside the room's network.",
    "many_networks": "The same code was used from several networks at once.",
}

#: Flags whose stored detail is itself plain and useful (the network, the clock's offset), shown after the
#: sentence; the others' details name internal things (code windows, student ids) and stay in the API.
FLAG_DETAIL_SHOWN: frozenset[str] = frozenset({"outside_network", "clock_skew"})

#: Refusals of the API as a person reads them (the codes stay in the JSON).
ERROR_WORDS: dict[str, str] = {
    "unauthenticated": "Please log in.",
    "invalid_token": "Your sign-in is no longer valid. Please log in again.",
    "token_expired": "Your sign-in has expired. Please log in again.",
    "token_revoked": "You were logged out. Please log in again.",
    "account_inactive": "Your account is no longer active.",
    "forbidden": "You don't have access to this.",
    "mfa_enrollment_required": "Your role needs two-factor sign-in: set it up first.",
    "not_found": "We couldn't find that.",
    "conflict": "That clashes with something that already exists.",
    "invalid_request": "Some of what was entered is not valid.",
    "import_rejected": "The file has problems; nothing was imported.",
    "exam_clash": "That time clashes with a class or another exam for the room or the students.",
    "marks_refused": "Some of the marks are not valid; nothing was recorded.",
    "assignment_not_open": "This assignment is not open for submissions yet.",
    "assignment_closed": "The cut-off for this assignment has passed; ask your teacher about an extension.",
    "attempts_used": "You have used all the attempts this assignment allows.",
    "resubmission_after_due": "The due date has passed: your last submission is the one that counts.",
    "already_returned": "This work was already marked and returned.",
    "unsupported_document": "Only PDF, JPEG or PNG files are accepted.",
    "document_too_large": "That file is larger than allowed.",
    "unsupported_media_type": "That kind of file or request is not accepted here.",
    "request_entity_too_large": "That is too large to send.",
    "too_many_requests": "Too many attempts. Please wait a moment and try again.",
    "method_not_allowed": "That action is not possible here.",
    "unavailable": "The service is busy. Please try again in a moment.",
    "internal": "Something went wrong on our side.",
}

#: A course result's outcome (course_results.outcome) as a transcript shows it.
GRADE_OUTCOME_WORDS: dict[str, str] = {"passed": "Passed", "failed": "Not passed", "withdrawn": "Withdrawn"}

#: A student's progress in a syllabus topic (topic_progress.status, hub/domain/syllabus.py), in words.
TOPIC_STATUS_WORDS: dict[str, str] = {"not_started": "Not started", "in_progress": "In progress",
                                      "completed": "Completed", "mastered": "Mastered", "needs_review": "Needs review"}


def topic_status_words(code: str | None) -> str:
    """A topic progress status in words; an unknown one is shown as itself."""
    return TOPIC_STATUS_WORDS.get(code or "", code or "")

#: An error page's heading for each HTTP status: what happened, in words.
STATUS_HEADINGS: dict[int, str] = {
    400: "That request could not be understood",
    401: "Please log in",
    403: "You don't have access to this page",
    404: "We couldn't find this page",
    405: "That action is not possible here",
    409: "That clashes with something that already exists",
    413: "That is too large to send",
    415: "That kind of request is not accepted here",
    422: "Some of what was sent is not valid",
    429: "Too many attempts: please wait a moment",
    500: "Something went wrong on our side",
    503: "The service is busy: please try again in a moment",
}


#: What was unusual about an hour of telemetry (telemetry_anomalies.kind, hub/domain/anomaly.py), in words.
ANOMALY_KIND_WORDS: dict[str, str] = {
    "high": "Higher than usual for this hour",
    "low": "Lower than usual for this hour",
    "stuck": "The sensor repeated one value all hour",
    "dropout": "Fewer readings arrived than usual",
}


def anomaly_kind_words(code: str | None) -> str:
    """What an unusual hour's kind means; an unknown kind is shown as itself."""
    return ANOMALY_KIND_WORDS.get(code or "", code or "")


#: An alarm's type (alarms.type) in words: the fixed types; a threshold rule's ``<metric>_high``/``_low``
#: is worded from :data:`METRIC_WORDS` by :func:`alarm_type_words` (ops.js reads the same tables).
ALARM_TYPE_WORDS: dict[str, str] = {
    "device_offline": "Device offline",
    "rate_limited": "Sending too many messages",
    "telemetry_anomaly": "Unusual readings",
}

#: A reading's name (a threshold rule's metric), in words; a metric not listed is shown as itself.
METRIC_WORDS: dict[str, str] = {"temperature": "Temperature", "co2": "CO₂", "humidity": "Humidity", "noise": "Noise",
                                "occupancy": "Occupancy", "battery_pct": "Battery"}

#: How a threshold alarm's direction reads after the metric.
ALARM_DIRECTION_WORDS: dict[str, str] = {"high": "too high", "low": "too low"}

#: An alarm's lifecycle state (hub/domain/alarms.py STATES), in words.
ALARM_STATE_WORDS: dict[str, str] = {
    "active_unacked": "Active, not acknowledged",
    "active_acked": "Active, acknowledged",
    "cleared_unacked": "Cleared, not acknowledged",
    "cleared_acked": "Cleared, acknowledged",
}


#: A device's kind (devices.kind: hub/db/provisioning.py DEVICE_KINDS, migration 0001's CHECK), as a label.
DEVICE_KIND_WORDS: dict[str, str] = {
    "qr_camera": "QR camera",
    "fingerprint": "Fingerprint terminal",
    "sensor": "Room sensor",
    "edge_agent": "Edge agent",
}

#: A command the hub sends a device (schemas.CommandName), as what it does; this order is the ops device page's
#: command menu (the first is its default: the harmless one).
COMMAND_WORDS: dict[str, str] = {
    "time_sync": "Set the clock",
    "config_push": "Send new settings",
    "reboot": "Restart the drivers",
    "roster_sync": "Update the student list",
    "template_sync": "Update a fingerprint",
}

#: Where a command stands (device_commands.status: hub/db/device_commands.py COMMAND_STATUSES), in words.
COMMAND_STATUS_WORDS: dict[str, str] = {
    "pending": "Waiting to send",
    "sent": "Sent, no answer yet",
    "acked": "Done",
    "failed": "Failed",
    "expired": "Expired before it ran",
    "timed_out": "No answer in time",
    "unsupported": "Not supported by the device",
}


def device_kind_words(code: str | None) -> str:
    """A device kind as a label (``qr_camera`` -> "QR camera"); an unknown one is shown as itself."""
    return DEVICE_KIND_WORDS.get(code or "", code or "")


def command_words(code: str | None) -> str:
    """A command's name as what it does (``time_sync`` -> "Set the clock"); an unknown one is shown as itself."""
    return COMMAND_WORDS.get(code or "", code or "")


def command_status_words(code: str | None) -> str:
    """A command's status in words; an unknown one is shown as itself."""
    return COMMAND_STATUS_WORDS.get(code or "", code or "")


def device_words() -> dict[str, Any]:
    """The device tables for scripts: ops.js words a device's kind and its commands' names and statuses."""
    return {"kinds": DEVICE_KIND_WORDS, "commands": COMMAND_WORDS, "command_statuses": COMMAND_STATUS_WORDS}


def alarm_type_words(code: str | None) -> str:
    """An alarm type in words (``co2_high`` -> "CO₂ too high"); an unknown type is shown as itself."""
    if not code:
        return ""
    if code in ALARM_TYPE_WORDS:
        return ALARM_TYPE_WORDS[code]
    metric, _, direction = code.rpartition("_")
    if metric and direction in ALARM_DIRECTION_WORDS:
        return f"{METRIC_WORDS.get(metric, metric)} {ALARM_DIRECTION_WORDS[direction]}"
    return code


def metric_words(code: str | None) -> str:
    """A reading's name in words (``co2`` -> "CO₂"); an unknown one is shown as itself."""
    return METRIC_WORDS.get(code or "", code or "")


def alarm_state_words(code: str | None) -> str:
    """An alarm state in words; an unknown one is shown as itself."""
    return ALARM_STATE_WORDS.get(code or "", code or "")


def rejection_words(code: str | None) -> str:
    """A refusal reason in words; an unknown code is shown as itself (never hidden)."""
    if not code:
        return ""
    return REJECTION_WORDS.get(code, f"Refused ({code}).")


def flag_words(kind: str | None, detail: str = "") -> str:
    """What a check-in flag means, with its detail when that is plain (:data:`FLAG_DETAIL_SHOWN`);
    an unknown kind is shown as itself."""
    if not kind:
        return ""
    sentence = FLAG_WORDS.get(kind, FLAG_LABELS.get(kind, kind))
    return f"{sentence.rstrip('.')}: {detail}." if detail and kind in FLAG_DETAIL_SHOWN else sentence


def grade_outcome_words(code: str | None) -> str:
    """A course result's outcome in words; an unknown one is shown as itself."""
    return GRADE_OUTCOME_WORDS.get(code or "", code or "")


def status_heading(status: int) -> str:
    """An error page's heading: what happened, in words."""
    if status in STATUS_HEADINGS:
        return STATUS_HEADINGS[status]
    return "Something went wrong on our side" if status >= 500 else "That request could not be completed"


def wording_json() -> dict[str, Any]:
    """Everything above, for scripts (``GET /wording.json``)."""
    return {"rejections": REJECTION_WORDS, "flags": FLAG_WORDS, "flag_labels": FLAG_LABELS,
            "flag_detail_shown": sorted(FLAG_DETAIL_SHOWN), "errors": ERROR_WORDS, "grade_outcomes": GRADE_OUTCOME_WORDS,
            "anomaly_kinds": ANOMALY_KIND_WORDS, "alarms": alarm_words(), "devices": device_words()}


def alarm_words() -> dict[str, Any]:
    """The alarm tables for scripts: ops.js words types and states with them (same rule as :func:`alarm_type_words`)."""
    return {"types": ALARM_TYPE_WORDS, "metrics": METRIC_WORDS, "directions": ALARM_DIRECTION_WORDS,
            "states": ALARM_STATE_WORDS}


def register(app: Quart) -> None:
    app.add_template_filter(rejection_words, "rejection_words")
    app.add_template_filter(flag_words, "flag_words")
    app.add_template_filter(grade_outcome_words, "grade_outcome_words")
    app.add_template_filter(topic_status_words, "topic_status_words")
    app.add_template_filter(anomaly_kind_words, "anomaly_kind_words")
    app.add_template_filter(alarm_type_words, "alarm_type_words")
    app.add_template_filter(alarm_state_words, "alarm_state_words")
    app.add_template_filter(metric_words, "metric_words")
    app.add_template_filter(device_kind_words, "device_kind_words")
    app.add_template_filter(command_words, "command_words")
    app.add_template_filter(command_status_words, "command_status_words")
    app.add_template_global(status_heading, "status_heading")
    app.jinja_env.globals["ALARM_WORDS"] = alarm_words()  # ops templates hand it to ops.js (#alarm-words)
    app.jinja_env.globals["DEVICE_WORDS"] = device_words()  # ops_device.html hands it to ops.js (#device-words)
    app.jinja_env.globals["FLAG_WORDS"] = FLAG_WORDS  # a mapping (roster.js shows each flag's meaning)
    app.jinja_env.globals["FLAG_DETAIL_SHOWN"] = sorted(FLAG_DETAIL_SHOWN)
