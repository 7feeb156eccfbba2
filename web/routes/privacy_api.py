"""A student's data: export it (the student themself, or an admin) and erase a former student (admin).

``GET /api/v1/students/{id}/export`` streams a zip of JSON and CSV files and
the leave documents, with a README.txt (hub/db/personal_data.py
``export_zip``); the export is written to the audit log before the first
byte leaves. ``POST /api/v1/students/{id}/erase`` erases a deactivated
student (hub/db/erasure.py; an active biometric consent is withdrawn through
the consent registry first, so the fingerprint leaves every terminal), then
queues the removal of whatever the terminals still hold of them
(``terminal_rosters_changed``) and redacts the audit archive's segment files
(``WebContext.audit_archive_dir``). What each
does to each table: the personal data map, docs/privacy.md "Export and erasure".
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Any, AsyncIterator

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.biometric_consent import withdraw_consent
from hub.db.erasure import ErasureRefused, erase_from_archive, erase_student, erasure_refusal
from hub.db.personal_data import export_zip, record_export
from hub.db.provisioning import RegistryError
from hub.db.students import student_profile

from ..apidoc import (
    BEARER,
    BODY_ERRORS,
    BOOL,
    INT,
    STR,
    error,
    json_request,
    json_response,
    obj,
    operation,
    path_param,
    ref,
)
from ..apidoc import not_found as doc_not_found
from ..auth import current_principal, require
from ..context import WebContext, current_context
from ..errors import WebError, forbidden, invalid, not_found
from ..feeds import utc_now
from ..people import erasure_json
from ..request import json_body
from .terminal_roster_api import send_planned, terminal_rosters_changed

bp = Blueprint("privacy_api", __name__, url_prefix="/api/v1")

MAX_REASON = 500


class ErasureRequest(msgspec.Struct):
    """``POST /students/{id}/erase``: ``confirm`` repeats the student's id (a typed confirmation)."""

    confirm: Annotated[str, Meta(max_length=200, description="The student's id, typed again.")]
    reason: Annotated[str, Meta(max_length=MAX_REASON, description=(
        "Why (a request or case number): kept in the audit log. Not the person's name."))] = ""


@bp.get("/students/<student_id>/export")
@require("student", "admin")
async def student_export(student_id: str) -> Response:
    ctx = current_context()
    principal = current_principal()
    if principal.role == "student" and principal.user_id != student_id:
        raise forbidden("You can only export your own data.")
    if await student_profile(ctx.db, student_id) is None:
        raise not_found("No such student.")
    await record_export(ctx.db, student_id=student_id, actor=principal.user_id)
    now = utc_now(ctx)

    async def body() -> AsyncIterator[bytes]:
        async for piece in export_zip(ctx.db, student_id, now=now):
            if piece:
                yield piece

    return Response(body(), content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="campushub-{student_id}-{now:%Y%m%d}.zip"',
        "Cache-Control": "no-store",
    })


@bp.post("/students/<student_id>/erase")
@require("admin")
async def student_erase(student_id: str) -> Response:
    body = await json_body(ErasureRequest)
    if body.confirm != student_id:
        raise invalid("Type the student's id in `confirm` to erase them.", field="confirm")
    ctx = current_context()
    actor = current_principal().user_id
    try:
        refusal = await erasure_refusal(ctx.db, student_id)
        if refusal is not None:
            raise refusal
        # An active consent is withdrawn the consent registry's way first: its withdrawal deletes the
        # fingerprint on every terminal (erasure alone would only close the record).
        withdrawn = await _withdraw_consent(ctx, student_id, actor)
        report = await erase_student(ctx.db, student_id, actor=actor, now=utc_now(ctx), reason=body.reason)
    except ErasureRefused as refused:
        raise WebError(404 if refused.code == "not_found" else 409, refused.code, refused.message) from None
    queued = await terminal_rosters_changed(ctx, issued_by=actor, student_ids=[student_id])
    if ctx.audit_archive_dir is not None:
        archived = await erase_from_archive(ctx.db, report, archive_dir=ctx.audit_archive_dir)
        report = dataclasses.replace(report, changed={**report.changed, "audit_archive:redacted": archived})
    return jsonify(erasure_json(report, terminal_commands=withdrawn + (0 if queued is None else len(queued.commands))))


async def _withdraw_consent(ctx: WebContext, student_id: str, actor: str) -> int:
    """Withdraw the student's active biometric consent, if any; how many terminal commands it sent."""
    try:
        withdrawal = await withdraw_consent(ctx.db, student_id, withdrawn_by=actor, reason="account erased",
                                            now=utc_now(ctx))
    except RegistryError as exc:
        if exc.code == "conflict":  # no active consent
            return 0
        raise
    return len(await send_planned(ctx, withdrawal.commands, actor))


# --- OpenAPI ---------------------------------------------------------------------------------------

_STUDENT_PARAM = path_param("student_id", "The student's account id.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Erasure": obj({
        "student_id": STR, "pseudonym": STR, "already_erased": BOOL,
        "changed": {"type": "object", "additionalProperties": INT,
                    "description": "Rows changed per `table:action` (and `audit_log:redacted`)."},
        "terminal_commands": {**INT, "description": "Roster commands queued to remove the student from terminals."},
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/students/{student_id}/export": {"get": {**operation(
        "Everything held about a student, as a zip of JSON and CSV files, documents and a README "
        "(the student themself, or an admin); written to the audit log", "privacy", ("student", "admin"),
        {"200": {"description": "The archive (streamed).", "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
         "404": doc_not_found("student")},
        params=[_STUDENT_PARAM]), "security": BEARER}},
    "/api/v1/students/{student_id}/erase": {"post": {**operation(
        "Erase a former (deactivated) student: personal data removed or pseudonymised, records kept under "
        "the pseudonym, the audit chain still verifying; removal from terminals queued (admin)", "privacy",
        ("admin",),
        {"200": json_response(ref("Erasure"), "Erased (or already erased)."),
         **BODY_ERRORS, "404": doc_not_found("student"),
         "409": error("`active`: the account is active; deactivate it first.")},
        params=[_STUDENT_PARAM], body=json_request(ErasureRequest, "The confirmation and a reason.")),
        "security": BEARER}},
}
