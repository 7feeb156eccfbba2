"""Biometric consent and fingerprint enrolment from the web, and the student's privacy page.

The student gives and withdraws their own consent (``/student/privacy``, and
the API below); an admin records a consent given on paper or withdraws one
on the student's behalf; admin and ops enrol a consenting student on a
terminal's fingerprint page (optionally with the template, which goes out
sealed to the terminal and is never stored in the hub) and remove them.
Every change is audited by hub/db (hub/db/biometric_consent.py,
hub/db/terminal_roster.py ``assign_page``). The commands go out through the
command dispatcher (``WebContext.send_command``); each terminal's acks show
as the state of its row (the device page, the student's page, the API).

Routes: ``GET``/``POST /api/v1/students/{id}/biometric-consent``,
``POST /api/v1/students/{id}/biometric-consent/withdraw``,
``GET /api/v1/devices/{id}/enrolments``, ``POST``/``DELETE
/api/v1/devices/{id}/enrolments/{student_id}``; page ``GET /student/privacy``.

Concurrency contract: request tasks; each change is one transaction in
hub/db, then one ``create_command`` per command after its commit.
"""
from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.biometric_consent import (
    ConsentRecord,
    TerminalEnrolment,
    consent_history,
    device_enrolments,
    give_consent,
    remove_enrolment,
    student_enrolments,
    withdraw_consent,
)
from hub.db.device_commands import command_json
from hub.db.provisioning import RegistryError, get_registered_device
from hub.db.students import student_profile
from hub.db.terminal_roster import assign_page
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION, MAX_REASON_CHARS, MAX_TEMPLATE_BYTES, NOTICES
from hub.domain.terminal_roster import MAX_PAGE

from ..apidoc import (
    BEARER,
    BODY_ERRORS,
    INT,
    STR,
    array,
    enum,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    operation,
    path_param,
    ref,
)
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, invalid
from ..feeds import utc_now
from ..request import json_body
from ._pages import render_page
from .terminal_roster_api import queue_page_change, send_planned

bp = Blueprint("consent_api", __name__)


def _refusal(exc: RegistryError) -> WebError:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 400)
    return WebError(status, exc.code, exc.message, exc.field)


def _own_or(principal: Principal, student_id: str) -> None:
    """A student acts only on their own consent (403 otherwise, without saying whether the id exists)."""
    if principal.role == "student" and principal.user_id != student_id:
        raise forbidden("You can only see and change your own consent.")


def consent_json(c: ConsentRecord) -> dict[str, Any]:
    return {"consent_id": c.consent_id, "student_id": c.student_id, "notice_version": c.notice_version,
            "given_by": c.given_by, "given_at": c.given_at, "withdrawn_at": c.withdrawn_at,
            "withdrawn_by": c.withdrawn_by, "withdrawal_reason": c.withdrawal_reason, "active": c.active}


def enrolment_json(e: TerminalEnrolment) -> dict[str, Any]:
    return {"device_id": e.device_id, "device_kind": e.device_kind, "student_id": e.student_id, "page": e.page,
            "removal": e.removal, "state": e.state, "consent_id": e.consent_id, "page_source": e.page_source,
            "changed_at": e.changed_at,
            "commands": [{"command_id": str(a.command_id), "name": a.name, "status": a.status,
                          "acked_at": a.acked_at, "detail": a.detail} for a in e.commands]}


def enrolment_rows(device_id: str, enrolments: list[TerminalEnrolment]) -> list[dict[str, Any]]:
    """The device page's rows: each student on ``device_id`` (enrolled or removal recorded), its state
    here, and every other terminal of theirs with its state (which terminals confirmed)."""
    rows = []
    for here in (e for e in enrolments if e.device_id == device_id):
        rows.append({**enrolment_json(here), "terminals": [
            {"device_id": e.device_id, "page": e.page, "state": e.state}
            for e in enrolments if e.student_id == here.student_id]})
    return rows


def _notice_json() -> dict[str, str]:
    return {"version": CURRENT_NOTICE_VERSION, "text": NOTICES[CURRENT_NOTICE_VERSION]}


async def _consent_view(student_id: str) -> dict[str, Any]:
    ctx = current_context()
    history = await consent_history(ctx.db, student_id)
    active = next((c for c in history if c.active), None)
    return {"student_id": student_id, "notice": _notice_json(),
            "active": None if active is None else consent_json(active),
            "history": [consent_json(c) for c in history],
            "enrolments": [enrolment_json(e) for e in await student_enrolments(ctx.db, student_id)]}


@bp.get("/api/v1/students/<student_id>/biometric-consent")
@require("student", "admin", "ops")
async def get_consent(student_id: str) -> Response:
    """The student's consent (active and past), the current notice, and every terminal's enrolment state."""
    _own_or(current_principal(), student_id)
    if await student_profile(current_context().db, student_id) is None:
        raise WebError(404, "not_found", "No such student.")
    return jsonify(await _consent_view(student_id))


class ConsentGiven(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /students/{id}/biometric-consent``: the notice version read (the current one)."""

    notice_version: Annotated[str, Meta(min_length=1, max_length=64)]


@bp.post("/api/v1/students/<student_id>/biometric-consent")
@require("student", "admin")
async def post_consent(student_id: str) -> Response:
    """Give consent (the student), or record one given on paper (an admin: ``given_by`` is the admin)."""
    principal = current_principal()
    _own_or(principal, student_id)
    body = await json_body(ConsentGiven)
    ctx = current_context()
    try:
        consent = await give_consent(ctx.db, student_id, given_by=principal.user_id,
                                     notice_version=body.notice_version, now=utc_now(ctx))
    except RegistryError as exc:
        raise _refusal(exc) from None
    response = jsonify(consent_json(consent))
    response.status_code = 201
    return response


class ConsentWithdrawn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /students/{id}/biometric-consent/withdraw``: an optional reason."""

    reason: Annotated[str, Meta(max_length=MAX_REASON_CHARS)] = ""


@bp.post("/api/v1/students/<student_id>/biometric-consent/withdraw")
@require("student", "admin")
async def post_withdrawal(student_id: str) -> Response:
    """Withdraw the consent: the student's fingerprint is deleted from every terminal (acks show per terminal)."""
    principal = current_principal()
    _own_or(principal, student_id)
    body = await json_body(ConsentWithdrawn)
    ctx = current_context()
    try:
        withdrawal = await withdraw_consent(ctx.db, student_id, withdrawn_by=principal.user_id,
                                            reason=body.reason, now=utc_now(ctx))
    except RegistryError as exc:
        raise _refusal(exc) from None
    commands = await send_planned(ctx, withdrawal.commands, principal.user_id)
    answer = jsonify({"consent": consent_json(withdrawal.consent), "commands": [command_json(c) for c in commands]})
    answer.status_code = 202
    return answer


@bp.get("/api/v1/devices/<device_id>/enrolments")
@require("admin", "ops")
async def list_device_enrolments(device_id: str) -> Response:
    """Who is enrolled on this terminal (and whose removal is recorded), with what the terminal confirmed."""
    ctx = current_context()
    if await get_registered_device(ctx.db, device_id) is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    return jsonify({"device_id": device_id,
                    "enrolments": [enrolment_json(e) for e in await device_enrolments(ctx.db, device_id)]})


class TerminalEnrolmentRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /devices/{id}/enrolments/{student_id}``: the fingerprint page, and optionally the template to load."""

    page: Annotated[int, Meta(ge=0, le=MAX_PAGE)]
    #: The template (base64, at most 4,096 bytes decoded): sealed to the terminal, never stored in the hub.
    template: str | None = None
    #: Which of the agent's fingerprint modules (its ``[[devices]]`` name); all of them when absent.
    module: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


def _template_args(body: TerminalEnrolmentRequest, student_id: str) -> dict[str, Any] | None:
    if body.template is None:
        if body.module is not None:
            raise invalid("'module' needs a 'template'.", field="module")
        return None
    try:
        raw = base64.b64decode(body.template, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("'template' is not valid base64.", field="template") from None
    if not 0 < len(raw) <= MAX_TEMPLATE_BYTES:
        raise invalid(f"'template' must be 1..{MAX_TEMPLATE_BYTES} bytes.", field="template")
    args: dict[str, Any] = {"page": body.page, "student": student_id, "template": body.template}
    if body.module is not None:
        args["device"] = body.module
    return args


@bp.post("/api/v1/devices/<device_id>/enrolments/<student_id>")
@require("admin", "ops")
async def enrol(device_id: str, student_id: str) -> Response:
    """Enrol a consenting student on a terminal's fingerprint page (and load the template if given)."""
    body = await json_body(TerminalEnrolmentRequest)
    template = _template_args(body, student_id)
    ctx = current_context()
    actor = current_principal().user_id
    try:
        change = await assign_page(ctx.db, device_id, body.page, student_id, actor=actor, source="ops",
                                   now=utc_now(ctx), template=template)
    except RegistryError as exc:
        raise _refusal(exc) from None
    return await queue_page_change(ctx, device_id, change.commands, actor)


@bp.delete("/api/v1/devices/<device_id>/enrolments/<student_id>")
@require("admin", "ops")
async def unenrol(device_id: str, student_id: str) -> Response:
    """Delete the student's fingerprint from this terminal (or send again a removal it has not confirmed)."""
    ctx = current_context()
    actor = current_principal().user_id
    try:
        planned = await remove_enrolment(ctx.db, device_id, student_id, actor=actor, now=utc_now(ctx))
    except RegistryError as exc:
        raise _refusal(exc) from None
    return await queue_page_change(ctx, device_id, planned, actor)


@bp.get("/student/privacy")
@require("student")
async def privacy_page() -> str:
    """The student's privacy page: the biometric consent section (and the data export, issue 14 §5)."""
    principal = current_principal()
    view = await _consent_view(principal.user_id)
    return await render_page("student_privacy.html", consent=view, student_id=principal.user_id)


# --- OpenAPI ------------------------------------------------------------------------

_STUDENT = path_param("student_id", "Student id.")
_DEVICE = path_param("device_id", "Device id.")
_WHEN = nullable({"type": "string", "format": "date-time"})
_STATE = enum("pending", "confirmed", "failed", "removal_pending", "removed", "removal_failed")
_QUEUED = json_response(obj({"device_id": STR, "commands": array(ref("DeviceCommand"))}), "Queued.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "BiometricConsentRecord": obj({
        "consent_id": INT, "student_id": STR, "notice_version": STR,
        "given_by": {**STR, "description": "Who recorded it: the student, or an admin (paper form)."},
        "given_at": {"type": "string", "format": "date-time"}, "withdrawn_at": _WHEN,
        "withdrawn_by": nullable(STR), "withdrawal_reason": nullable(STR), "active": {"type": "boolean"},
    }),
    "TerminalEnrolment": obj({
        "device_id": STR, "device_kind": STR, "student_id": STR,
        "page": {**INT, "description": "The fingerprint page (the removed page for a removal)."},
        "removal": {"type": "boolean"}, "state": _STATE, "consent_id": nullable(INT),
        "page_source": nullable(STR), "changed_at": {"type": "string", "format": "date-time"},
        "commands": array(obj({"command_id": STR, "name": STR, "status": nullable(STR), "acked_at": _WHEN,
                               "detail": STR})),
    }),
    "BiometricConsent": obj({
        "student_id": STR, "notice": obj({"version": STR, "text": STR}),
        "active": {**ref("BiometricConsentRecord"), "nullable": True},
        "history": array(ref("BiometricConsentRecord")),
        "enrolments": array(ref("TerminalEnrolment")),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/students/{student_id}/biometric-consent": {
        "get": {**operation(
            "A student's biometric consent, the current notice, and each terminal's enrolment state "
            "(the student themself, admin, ops)", "students", ("student", "admin", "ops"),
            {"200": json_response(ref("BiometricConsent"), "The consent view."), "404": not_found("student")},
            params=[_STUDENT]), "security": BEARER},
        "post": {**operation(
            "Give biometric consent (the student) or record one given on paper (admin)", "students",
            ("student", "admin"),
            {"201": json_response(ref("BiometricConsentRecord"), "The consent."), **BODY_ERRORS,
             "404": not_found("student"), "409": error("`conflict`: the student already has an active consent.")},
            params=[_STUDENT], body=json_request(ConsentGiven, "The notice version read (the current one).")),
            "security": BEARER},
    },
    "/api/v1/students/{student_id}/biometric-consent/withdraw": {"post": {**operation(
        "Withdraw biometric consent: the fingerprint is deleted from every terminal (the student themself, admin)",
        "students", ("student", "admin"),
        {"202": json_response(obj({"consent": ref("BiometricConsentRecord"), "commands": array(ref("DeviceCommand"))}),
                              "Withdrawn; the removal commands are queued."),
         **BODY_ERRORS, "404": not_found("student"), "409": error("`conflict`: no active consent.")},
        params=[_STUDENT], body=json_request(ConsentWithdrawn, "An optional reason.")), "security": BEARER}},
    "/api/v1/devices/{device_id}/enrolments": {"get": {**operation(
        "Who is enrolled on a terminal's fingerprint pages, and what the terminal confirmed (admin, ops)",
        "devices", ("admin", "ops"),
        {"200": json_response(obj({"device_id": STR, "enrolments": array(ref("TerminalEnrolment"))}),
                              "The enrolments and recorded removals."), "404": not_found("device")},
        params=[_DEVICE]), "security": BEARER}},
    "/api/v1/devices/{device_id}/enrolments/{student_id}": {
        "post": {**operation(
            "Enrol a consenting student on a terminal's fingerprint page, optionally loading the template "
            "(sealed to the terminal, never stored) (admin, ops)", "devices", ("admin", "ops"),
            {"202": _QUEUED, **BODY_ERRORS,
             "404": not_found("device or student"),
             "409": error("`conflict`: the device is revoked, or the student deactivated or without active "
                          "biometric consent.")},
            params=[_DEVICE, _STUDENT], body=json_request(TerminalEnrolmentRequest, "The page, and the template.")),
            "security": BEARER},
        "delete": {**operation(
            "Delete a student's fingerprint from a terminal (template and page), or resend an unconfirmed removal "
            "(admin, ops)", "devices", ("admin", "ops"),
            {"202": _QUEUED, "400": error("`invalid_request`: a device that holds no roster."),
             "404": not_found("device, or enrolment of the student on it"),
             "409": error("`conflict`: the device is revoked.")},
            params=[_DEVICE, _STUDENT]), "security": BEARER},
    },
}
