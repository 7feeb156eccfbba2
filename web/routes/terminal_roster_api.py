"""Terminal rosters from the web: follow people and enrolment changes; ops' resync and registry view.

:func:`terminal_rosters_changed` is what every front door that changes who
may punch where calls after its commit, beside ``web.live_rosters.rosters_changed``
(deactivation, reactivation, deletion, the enrolment import, unenrolment): it
plans the terminal changes of those students in one go (hub/db/terminal_roster.py),
queues them as few ``roster_sync`` commands per terminal and hands each to the
command dispatcher (``WebContext.send_command``).

Routes (admin and ops): ``GET /api/v1/devices/{id}/roster`` lists what the hub
told a terminal; ``POST /api/v1/devices/{id}/roster-sync`` resends its whole
roster with ``replace=true`` (recovery: a terminal reset or replaced);
``PUT``/``DELETE /api/v1/devices/{id}/roster/pages/{page}`` record a
fingerprint page enrolled on (or cleared from) the terminal (only for a
student with active biometric consent; the enrolment API with templates and
withdrawals is web/routes/consent_api.py, which shares :func:`send_planned`).

Concurrency contract: called from a web request task after the commit; the
plan is one transaction, then one ``create_command`` per command.
"""
from __future__ import annotations

from typing import Annotated, Any, Sequence

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.device_commands import CommandRow, command_json
from hub.db.provisioning import RegistryError, get_registered_device
from hub.db.terminal_roster import (
    PageChange,
    PlannedCommand,
    RosterSyncResult,
    assign_page,
    queue_plan,
    queue_planned,
    reconcile,
    resync_device,
    terminal_entries,
)
from hub.domain.terminal_roster import MAX_PAGE, RosterEntry

from ..apidoc import (
    BEARER,
    INT,
    STR,
    array,
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
from ..auth import current_principal, require
from ..context import WebContext, current_context
from ..errors import WebError, invalid
from ..feeds import utc_now
from ..request import EmptyBody, json_body

bp = Blueprint("terminal_roster_api", __name__, url_prefix="/api/v1")


async def terminal_rosters_changed(ctx: WebContext, *, issued_by: str, student_ids: Sequence[str] = (),
                                   roll_numbers: Sequence[str] = ()) -> RosterSyncResult | None:
    """Queue the terminal changes these students' change needs; ``None`` when no one was named."""
    if not student_ids and not roll_numbers:
        return None
    now = utc_now(ctx)
    plan = await reconcile(ctx.db, now=now, student_ids=list(student_ids), roll_numbers=list(roll_numbers))
    if plan.empty:
        return RosterSyncResult(plan, ())
    result = await queue_plan(ctx.db, plan, issued_by=issued_by, now=now,
                              device_offline_after_s=ctx.device_offline_after_s)
    for command in result.commands:
        await ctx.send_command(command.command_id)
    return result


def entry_json(entry: RosterEntry) -> dict[str, Any]:
    return {"student_id": entry.student_id, "pin": entry.pin, "page": entry.page, "page_source": entry.page_source}


def _refusal(exc: RegistryError) -> WebError:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 400)
    return WebError(status, exc.code, exc.message, exc.field)


@bp.get("/devices/<device_id>/roster")
@require("admin", "ops")
async def device_roster(device_id: str) -> Response:
    """What the hub has queued for this terminal: each student's PIN and page."""
    ctx = current_context()
    if await get_registered_device(ctx.db, device_id) is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    entries = await terminal_entries(ctx.db, device_id)
    return jsonify({"device_id": device_id, "entries": [entry_json(e) for e in entries]})


@bp.post("/devices/<device_id>/roster-sync")
@require("admin", "ops")
async def roster_resync(device_id: str) -> Response:
    """Bring the registry up to date for this terminal, then send it its whole roster (``replace=true``)."""
    await json_body(EmptyBody)
    ctx = current_context()
    try:
        result = await resync_device(ctx.db, device_id, issued_by=current_principal().user_id, now=utc_now(ctx),
                                     device_offline_after_s=ctx.device_offline_after_s)
    except RegistryError as exc:
        raise _refusal(exc) from None
    for command in result.commands:
        await ctx.send_command(command.command_id)
    response = jsonify({"device_id": device_id, "commands": [command_json(c) for c in result.commands]})
    response.status_code = 202
    return response


class PageAssignment(msgspec.Struct):
    """``PUT /devices/{id}/roster/pages/{page}``: whose finger is enrolled on this page of the terminal."""

    student_id: Annotated[str, Meta(min_length=1, max_length=64)]


def _page(page: int) -> int:
    if not 0 <= page <= MAX_PAGE:
        raise invalid(f"'page' must be 0..{MAX_PAGE}.", field="page")
    return page


async def send_planned(ctx: WebContext, planned: Sequence[PlannedCommand], issued_by: str) -> tuple[CommandRow, ...]:
    """Create commands decided by a registry transaction (their ids recorded there) and hand them to the dispatcher."""
    commands = await queue_planned(ctx.db, planned, issued_by=issued_by, now=utc_now(ctx),
                                   device_offline_after_s=ctx.device_offline_after_s)
    for command in commands:
        await ctx.send_command(command.command_id)
    return commands


async def queue_page_change(ctx: WebContext, device_id: str, planned: Sequence[PlannedCommand],
                            issued_by: str) -> Response:
    """:func:`send_planned` for one terminal's page change: the 202 answer."""
    commands = await send_planned(ctx, planned, issued_by)
    response = jsonify({"device_id": device_id, "commands": [command_json(c) for c in commands]})
    response.status_code = 202
    return response


async def _queue_page_change(ctx: WebContext, change: PageChange, issued_by: str) -> Response:
    return await queue_page_change(ctx, change.change.device_id, change.commands, issued_by)


@bp.put("/devices/<device_id>/roster/pages/<int:page>")
@require("admin", "ops")
async def assign_roster_page(device_id: str, page: int) -> Response:
    """Record a fingerprint page enrolled on the terminal, and tell the terminal's map."""
    body = await json_body(PageAssignment)
    ctx = current_context()
    actor = current_principal().user_id
    try:
        change = await assign_page(ctx.db, device_id, _page(page), body.student_id, actor=actor, source="ops",
                                   now=utc_now(ctx))
    except RegistryError as exc:
        raise _refusal(exc) from None
    return await _queue_page_change(ctx, change, actor)


@bp.delete("/devices/<device_id>/roster/pages/<int:page>")
@require("admin", "ops")
async def clear_roster_page(device_id: str, page: int) -> Response:
    """The page was cleared on the terminal (or should be): forget it and tell the terminal's map."""
    ctx = current_context()
    actor = current_principal().user_id
    try:
        change = await assign_page(ctx.db, device_id, _page(page), None, actor=actor, source="ops", now=utc_now(ctx))
    except RegistryError as exc:
        raise _refusal(exc) from None
    return await _queue_page_change(ctx, change, actor)


# --- OpenAPI ------------------------------------------------------------------------

_ROLES = ("admin", "ops")
_DEVICE = path_param("device_id", "Device id.")
_PAGE = path_param("page", "The fingerprint page.", {"type": "integer", "minimum": 0, "maximum": MAX_PAGE})
_QUEUED = json_response(obj({"device_id": STR, "commands": array(ref("DeviceCommand"))}), "Queued.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "TerminalRoster": obj({
        "device_id": STR,
        "entries": array(obj({
            "student_id": STR, "pin": {**nullable(STR), "description": "The student's campus-wide PIN."},
            "page": {**nullable(INT), "description": "The student's fingerprint page on this terminal."},
            "page_source": nullable(STR),
        })),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/devices/{device_id}/roster": {"get": {**operation(
        "What the hub told a terminal: each student's PIN and page (admin, ops)", "devices", _ROLES,
        {"200": json_response(ref("TerminalRoster"), "The registry rows."),
         "404": not_found("device")},
        params=[_DEVICE]), "security": BEARER}},
    "/api/v1/devices/{device_id}/roster-sync": {"post": {**operation(
        "Resend a terminal its whole roster with replace=true, as `roster_sync` commands (admin, ops)", "devices",
        _ROLES,
        {"202": _QUEUED,
         "400": error("`invalid_request`: this kind of device holds no roster; or a malformed body."),
         "404": not_found("device"), "409": error("`conflict`: the device is revoked.")},
        params=[_DEVICE], body=json_request(EmptyBody, "`{}`.")), "security": BEARER}},
    "/api/v1/devices/{device_id}/roster/pages/{page}": {
        "put": {**operation(
            "Record whose finger is enrolled on a page of a fingerprint terminal; its map follows (admin, ops)",
            "devices", _ROLES,
            {"202": _QUEUED, "400": error("`invalid_request`: a page outside 0..65535, a device that holds no "
                                          "roster, or a malformed body."),
             "404": not_found("device or student"),
             "409": error("`conflict`: the device is revoked, or the student deactivated or without active "
                          "biometric consent.")},
            params=[_DEVICE, _PAGE], body=json_request(PageAssignment, "The student.")), "security": BEARER},
        "delete": {**operation(
            "Forget a fingerprint page (cleared on the terminal); its map follows (admin, ops)", "devices", _ROLES,
            {"202": _QUEUED, "400": error("`invalid_request`: a page outside 0..65535, or a device that holds "
                                          "no roster."),
             "404": not_found("device, or holder of the page"), "409": error("`conflict`: the device is revoked.")},
            params=[_DEVICE, _PAGE]), "security": BEARER},
    },
}
