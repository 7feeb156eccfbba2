"""Maintenance tickets: report a problem, the ticket board's API, the SLA policy.

Anyone logged in may report a problem in a room (and sees the tickets they
reported); ops and admin see and work every ticket, and may raise one from
an alarm. Who may move a ticket where is ``hub.domain.tickets``; this module
checks it, writes through ``hub.db.tickets`` (optimistically: a ticket that
changed since it was read answers 409), then publishes the ticket on the
live bus (``{"type": "ticket", "origin": "web", ...}`` on ``DEVICES_TOPIC``),
which both the ops console and the hub's ticket actor (timers) follow.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from hub.core.bus import DEVICES_TOPIC, LivePriority, LiveTicketComment, LiveTicketPolicy
from hub.db.tickets import (
    Change,
    Comment,
    NewTicket,
    PriorityPolicy,
    Ticket,
    TicketConflict,
    TicketEvent,
    TicketFilter,
    TicketPolicy,
    TicketReferenceMissing,
    add_comment,
    alarm_brief,
    create_ticket,
    get_ticket,
    list_staff,
    list_tickets,
    live_ticket,
    load_policy,
    save_policy,
    ticket_history,
    update_ticket,
)
from hub.db.users import get_user
from hub.domain import tickets as rules

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BOOL,
    CONFLICT,
    FORBIDDEN,
    INT,
    NOT_JSON,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    path_param,
    query_str,
    ref,
)
from ..apidoc import (
    not_found as doc_not_found,
)
from ..auth import ROLES, current_principal, require
from ..console import ticket_json
from ..context import WebContext, current_context
from ..errors import WebError, forbidden, invalid, not_found
from ..feeds import utc_now
from ..paging import page_json, page_of, page_params, page_request
from ..request import json_body, one_of

bp = Blueprint("tickets_api", __name__, url_prefix="/api/v1")

_INT64_MAX = 2**63 - 1
_ID_MAX = 128

#: A ticket's optional comment (trimmed by ``rules.clean_text``).
_Comment = Annotated[str, Meta(max_length=rules.MAX_TEXT)]
_Reference = Annotated[str, Meta(min_length=1, max_length=_ID_MAX)]
_Priority = Annotated[str, one_of(rules.PRIORITIES)]


class TicketReport(msgspec.Struct):
    """``POST /tickets``: one of room_id, device_id or alarm_id is needed (checked by the route)."""

    title: Annotated[str, Meta(min_length=1, max_length=rules.MAX_TITLE)]
    description: _Comment | None = None
    room_id: _Reference | None = None
    device_id: _Reference | None = None
    alarm_id: Annotated[int, Meta(ge=1, le=_INT64_MAX, description="ops/admin only.")] | None = None
    priority: Annotated[_Priority | None, Meta(description=(
        "Default P3 (from an alarm: by its severity). Reporters who are not staff may choose P2-P4."))] = None


class TicketAssignment(msgspec.Struct):
    assignee: Annotated[str, Meta(min_length=1, description="A user id.")]
    comment: _Comment | None = None


class TicketTransition(msgspec.Struct):
    to: Annotated[str, one_of(rules.STATES)]
    comment: Annotated[_Comment | None, Meta(description="Stored as a comment; required to cancel.")] = None


class TicketCommentBody(msgspec.Struct):
    body: Annotated[str, Meta(min_length=1, max_length=rules.MAX_TEXT)]


class TicketAmendment(msgspec.Struct):
    """``PATCH /tickets/{id}``: at least one field (checked by the route)."""

    priority: _Priority | msgspec.UnsetType = msgspec.UNSET
    auto_close_after_s: Annotated[
        Annotated[int, Meta(ge=0, le=rules.MAX_AUTO_CLOSE_S)] | None,
        Meta(description="null: never close by itself."),
    ] | msgspec.UnsetType = msgspec.UNSET


# The policy's nested fields are checked by the domain (rules.check_duration), which names the field it
# refuses ('resolve_within_s', not 'priorities[0].resolve_within_s'): the struct documents their ranges.
class PriorityPolicyChange(msgspec.Struct):
    priority: Annotated[str, Meta(extra_json_schema={"enum": list(rules.PRIORITIES)})]
    resolve_within_s: Annotated[int, Meta(extra_json_schema={
        "minimum": rules.MIN_SLA_S, "maximum": rules.MAX_SLA_S})] | msgspec.UnsetType = msgspec.UNSET
    auto_close_after_s: Annotated[int, Meta(extra_json_schema={
        "minimum": 0, "maximum": rules.MAX_AUTO_CLOSE_S})] | None | msgspec.UnsetType = msgspec.UNSET


class TicketPolicyChange(msgspec.Struct):
    """``PUT /tickets/sla-policy``: only what changes."""

    priorities: Annotated[list[PriorityPolicyChange], Meta(max_length=len(rules.PRIORITIES))] = []
    auto_raise_severities: list[Annotated[str, Meta(extra_json_schema={
        "enum": list(rules.ALARM_SEVERITIES)})]] | msgspec.UnsetType = msgspec.UNSET


def caller() -> rules.Caller:
    principal = current_principal()
    return rules.Caller(principal.user_id, principal.role)


def comment_json(c: Comment) -> dict[str, Any]:
    return {"id": c.id, "author": c.author, "author_name": c.author_name, "body": c.body, "created_at": c.created_at}


def event_json(e: TicketEvent) -> dict[str, Any]:
    return {"id": e.id, "at": e.at, "actor": e.actor, "kind": e.kind, "from_state": e.from_state,
            "to_state": e.to_state, "detail": e.detail, "text": event_text(e)}


#: A history entry's move (its ``kind``) in words, followed by "by <who>".
_MOVE_WORDS = {
    "unassign": "Unassigned", "start": "Work started", "resolve": "Resolved", "reopen": "Reopened",
    "close": "Closed", "cancel": "Closed without a fix",
}


def _duration_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
    return f"{seconds} s"


def event_text(e: TicketEvent) -> str:
    """A history entry as a person reads it: what happened and who did it, by name ("the hub" for the
    hub's own entries); never a user id or a state code (those stay in the entry's other fields)."""
    who = "the hub" if e.actor == rules.SYSTEM_USER else (e.actor_name or "a removed account")
    if e.kind == "created":
        if e.actor == rules.SYSTEM_USER:
            alarm = e.detail.get("alarm_id")
            return "Opened by the hub" + (f" for alarm #{alarm}" if alarm is not None else "")
        return f"Reported by {who}"
    if e.kind == "assigned":
        assignee = e.assignee_name or "a removed account"
        if e.detail.get("previous") and e.detail.get("previous") != e.detail.get("assignee"):
            return f"Reassigned from {e.previous_assignee_name or 'a removed account'} to {assignee} by {who}"
        return f"Assigned to {assignee} by {who}"
    if e.kind in ("auto_close", "auto_closed"):
        return "Closed automatically by the hub"
    if e.kind == "sla_breached":
        return "Passed its due time (SLA missed)"
    if e.kind == "amended":
        parts = []
        if "priority" in e.detail:
            parts.append(f"Priority changed to {e.detail['priority']}")
        if "auto_close_after_s" in e.detail:
            delay = e.detail["auto_close_after_s"]
            parts.append("Auto-close turned off" if delay is None
                         else f"Auto-close set to {_duration_words(int(delay))} after its alarm clears")
        return "; ".join(parts or ["Changed"]) + f" by {who}"
    return f"{_MOVE_WORDS.get(e.kind, e.kind.replace('_', ' ').capitalize())} by {who}"


def policy_json(policy: TicketPolicy) -> dict[str, Any]:
    return {
        "priorities": [{"priority": p.priority, "resolve_within_s": p.resolve_within_s,
                        "auto_close_after_s": p.auto_close_after_s} for p in policy.priorities],
        "auto_raise_severities": list(policy.auto_raise_severities),
        "updated_at": policy.updated_at, "updated_by": policy.updated_by,
    }


def publish_ticket(ctx: WebContext, ticket: Ticket, change: str) -> None:
    """After the commit: the console's live feed and the hub's ticket actor both follow this."""
    ctx.bus.publish(DEVICES_TOPIC, live_ticket(ticket, utc_now(ctx), origin="web", change=change))


def _refused(exc: rules.Refused) -> WebError:
    status = {"forbidden": 403, "invalid_transition": 409}.get(exc.code, 400)
    return WebError(status, exc.code, exc.message, exc.field)


def _facts(ticket: Ticket) -> rules.TicketFacts:
    return rules.TicketFacts(ticket.state, ticket.assignee, ticket.reported_by)


async def _visible_ticket(ctx: WebContext, ticket_id: int) -> Ticket:
    """The ticket if the caller may see it; 404 otherwise (whether or not it exists)."""
    ticket = await get_ticket(ctx.db, ticket_id) if 1 <= ticket_id <= _INT64_MAX else None
    if ticket is None or not rules.may_view(_facts(ticket), caller()):
        raise not_found("No such ticket.")
    return ticket


async def _apply(ctx: WebContext, ticket: Ticket, change: Change) -> Ticket:
    updated = await update_ticket(ctx.db, ticket.id, expected_state=ticket.state,
                                  expected_updated_at=ticket.updated_at, change=change, at=utc_now(ctx))
    if updated is None:
        raise WebError(409, "conflict", "The ticket changed meanwhile; reload it and try again.")
    publish_ticket(ctx, updated, change.kind)
    return updated


# --- create and read ------------------------------------------------------------------------------

@bp.post("/tickets")
@require()
async def create() -> tuple[Response, int]:
    ctx, who = current_context(), caller()
    body = await json_body(TicketReport)
    try:
        title = rules.clean_text(body.title, "title", required=True, limit=rules.MAX_TITLE)
        description = rules.clean_text(body.description, "description", required=False, limit=rules.MAX_TEXT)
    except rules.Refused as exc:
        raise _refused(exc) from None
    room_id, device_id, alarm_id, priority = body.room_id, body.device_id, body.alarm_id, body.priority
    if alarm_id is not None:
        if not who.staff:
            raise forbidden("Only ops staff raise tickets from alarms.")
        alarm = await alarm_brief(ctx.db, alarm_id)
        if alarm is None:
            raise invalid("No such alarm.", field="alarm_id")
        if priority is None:
            priority = rules.priority_for_severity(alarm.severity)
    elif room_id is None and device_id is None:
        raise invalid("Say which room (or device) the problem is in.", field="room_id")
    try:
        priority = rules.check_new_priority(priority, who)
    except rules.Refused as exc:
        raise _refused(exc) from None
    now = utc_now(ctx)
    new = NewTicket(
        title=title, description=description, priority=priority, source="alarm" if alarm_id is not None else "report",
        reported_by=who.user_id, room_id=room_id, device_id=device_id, alarm_id=alarm_id)
    try:
        ticket = await create_ticket(ctx.db, new, at=now, actor=who.user_id)
    except TicketReferenceMissing as exc:
        raise invalid(str(exc), field=exc.field) from None
    except TicketConflict as exc:
        suffix = f" (ticket {exc.ticket_id})" if exc.ticket_id else ""
        raise WebError(409, "conflict", f"That alarm already has a live ticket{suffix}.", "alarm_id") from None
    publish_ticket(ctx, ticket, "created")
    return jsonify(ticket_json(ticket, now)), 201


def _filter_from_args(who: rules.Caller, now: datetime) -> TicketFilter:
    args = request.args
    state = args.get("state") or "all"
    if state == "live":
        states: tuple[str, ...] = tuple(s for s in rules.STATES if s != "closed")
    elif state == "all":
        states = ()
    elif state in rules.STATES:
        states = (state,)
    else:
        raise invalid(f"'state' must be live, all or one of {', '.join(rules.STATES)}.", field="state")
    priority = args.get("priority") or None
    if priority is not None and priority not in rules.PRIORITIES:
        raise invalid(f"'priority' must be one of {', '.join(rules.PRIORITIES)}.", field="priority")
    breached_arg = args.get("breached")
    if breached_arg not in (None, "", "true", "false"):
        raise invalid("'breached' must be true or false.", field="breached")
    search = (args.get("q") or "").strip() or None
    if search is not None and len(search) > 200:
        raise invalid("'q' is longer than 200 characters.", field="q")
    mine = args.get("mine")
    if mine not in (None, "", "true", "false"):
        raise invalid("'mine' must be true or false.", field="mine")
    return TicketFilter(
        states=states, priority=priority, room_id=args.get("room_id") or None,
        device_id=args.get("device_id") or None, assignee=args.get("assignee") or None,
        # Anyone but staff sees only what they reported.
        reported_by=who.user_id if (not who.staff or mine == "true") else None,
        breached=None if breached_arg in (None, "") else breached_arg == "true", now=now, search=search)


@bp.get("/tickets")
@require()
async def listing() -> Response:
    ctx, who = current_context(), caller()
    paging = page_request()
    now = utc_now(ctx)
    page = await list_tickets(ctx.db, _filter_from_args(who, now), paging.limit, paging.offset)
    return jsonify(page_json([ticket_json(t, now) for t in page.items], page.total, paging))


@bp.get("/tickets/<int:ticket_id>")
@require()
async def detail(ticket_id: int) -> Response:
    ctx = current_context()
    ticket = await _visible_ticket(ctx, ticket_id)
    comments, events = await ticket_history(ctx.db, ticket.id)
    return jsonify({**ticket_json(ticket, utc_now(ctx)), "comments": [comment_json(c) for c in comments],
                    "events": [event_json(e) for e in events]})


# --- work on a ticket -----------------------------------------------------------------------------

def _comment(comment: str | None) -> str:
    try:
        return rules.clean_text(comment, "comment", required=False, limit=rules.MAX_TEXT)
    except rules.Refused as exc:
        raise _refused(exc) from None


@bp.post("/tickets/<int:ticket_id>/assign")
@require("ops", "admin")
async def assign(ticket_id: int) -> Response:
    ctx, who = current_context(), caller()
    body = await json_body(TicketAssignment)
    comment = _comment(body.comment)
    ticket = await _visible_ticket(ctx, ticket_id)
    assignee = await get_user(ctx.db, body.assignee) if len(body.assignee) <= _ID_MAX else None
    try:
        state = rules.check_assign(_facts(ticket), who, assignee.role if assignee else None)
    except rules.Refused as exc:
        raise _refused(exc) from None
    assert assignee is not None
    updated = await _apply(ctx, ticket, Change(
        "assigned", who.user_id, {"state": state, "assignee": assignee.id},
        {"assignee": assignee.id, "previous": ticket.assignee}, comment))
    return jsonify(ticket_json(updated, utc_now(ctx)))


@bp.post("/tickets/<int:ticket_id>/transition")
@require()
async def transition(ticket_id: int) -> Response:
    ctx, who = current_context(), caller()
    body = await json_body(TicketTransition)
    comment = _comment(body.comment)
    ticket = await _visible_ticket(ctx, ticket_id)
    to = body.to
    try:
        move = rules.check_transition(_facts(ticket), to, who, comment=comment)
    except rules.Refused as exc:
        raise _refused(exc) from None
    now = utc_now(ctx)
    changes: dict[str, Any] = {"state": to}
    if to == "open":
        changes["assignee"] = None
    if to == "resolved":
        changes["resolved_at"] = now
    if to == "in_progress" and ticket.state == "resolved":
        changes["resolved_at"] = None
    if to == "closed":
        changes["closed_at"] = now
        changes["close_reason"] = comment if move == "cancel" else "resolved"
    if ticket.state == "closed":  # reopened: a fresh start, same SLA due time
        changes.update(closed_at=None, resolved_at=None, close_reason="")
    updated = await _apply(ctx, ticket, Change(move, who.user_id, changes, {}, comment))
    return jsonify(ticket_json(updated, utc_now(ctx)))


@bp.post("/tickets/<int:ticket_id>/comments")
@require()
async def comment(ticket_id: int) -> tuple[Response, int]:
    ctx, who = current_context(), caller()
    body = await json_body(TicketCommentBody)
    try:
        text = rules.clean_text(body.body, "body", required=True, limit=rules.MAX_TEXT)
    except rules.Refused as exc:
        raise _refused(exc) from None
    ticket = await _visible_ticket(ctx, ticket_id)
    stored = await add_comment(ctx.db, ticket.id, author=who.user_id, body=text, at=utc_now(ctx))
    if stored is None:
        raise not_found("No such ticket.")
    ctx.bus.publish(DEVICES_TOPIC, LiveTicketComment(ticket.id, stored.id, stored.author, stored.author_name,
                                                     stored.body, stored.created_at.isoformat()))
    return jsonify(comment_json(stored)), 201


@bp.patch("/tickets/<int:ticket_id>")
@require("ops", "admin")
async def amend(ticket_id: int) -> Response:
    """Change the priority (the SLA due time follows, from the creation time) or the auto-close delay."""
    ctx, who = current_context(), caller()
    body = await json_body(TicketAmendment)
    ticket = await _visible_ticket(ctx, ticket_id)
    changes: dict[str, Any] = {}
    if body.priority is not msgspec.UNSET:
        priority = body.priority
        policy = await load_policy(ctx.db)
        changes.update(priority=priority, sla_due_at=policy.due(priority, ticket.created_at))
    if body.auto_close_after_s is not msgspec.UNSET:
        changes["auto_close_after_s"] = body.auto_close_after_s
    if not changes:
        raise invalid("Send 'priority' and/or 'auto_close_after_s'.")
    if ticket.state == "closed":
        raise WebError(409, "invalid_transition", "A closed ticket cannot be changed; reopen it first.")
    detail = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()}
    updated = await _apply(ctx, ticket, Change("amended", who.user_id, changes, detail))
    return jsonify(ticket_json(updated, utc_now(ctx)))


@bp.get("/tickets/assignees")
@require("ops", "admin")
async def assignees() -> Response:
    paging = page_request()
    staff, total = await list_staff(current_context().db, paging.limit, paging.offset)
    return jsonify(page_json([{"id": s.id, "display_name": s.display_name, "role": s.role} for s in staff],
                             total, paging))


# --- SLA policy -------------------------------------------------------------------------------------

@bp.get("/tickets/sla-policy")
@require("ops", "admin")
async def get_policy() -> Response:
    return jsonify(policy_json(await load_policy(current_context().db)))


@bp.put("/tickets/sla-policy")
@require("admin")
async def put_policy() -> Response:
    """Replace the given priorities' policy (others keep theirs) and, if given, the auto-raise severities."""
    ctx = current_context()
    body = await json_body(TicketPolicyChange)
    current = await load_policy(ctx.db)
    chosen: dict[str, PriorityPolicy] = {}
    for item in body.priorities:
        if item.priority not in rules.PRIORITIES:
            raise invalid(f"Each priority object needs 'priority' ({', '.join(rules.PRIORITIES)}).",
                          field="priorities")
        name = item.priority
        if name in chosen:
            raise invalid(f"{name} is listed twice.", field="priorities")
        before = current.of(name)
        given_within, given_after = item.resolve_within_s, item.auto_close_after_s
        try:
            within = rules.check_duration(before.resolve_within_s if given_within is msgspec.UNSET else given_within,
                                          "resolve_within_s", rules.MIN_SLA_S, rules.MAX_SLA_S, nullable=False)
            after = rules.check_duration(before.auto_close_after_s if given_after is msgspec.UNSET else given_after,
                                         "auto_close_after_s", 0, rules.MAX_AUTO_CLOSE_S, nullable=True)
        except rules.Refused as exc:
            raise _refused(exc) from None
        assert within is not None
        chosen[name] = PriorityPolicy(name, within, after)
    # Absent: unchanged (what an admin set, or the domain's default, which then keeps applying).
    severities = None if body.auto_raise_severities is msgspec.UNSET else body.auto_raise_severities
    if severities is not None and not set(severities) <= set(rules.ALARM_SEVERITIES):
        raise invalid(f"'auto_raise_severities' must be a list of {', '.join(rules.ALARM_SEVERITIES)}.",
                      field="auto_raise_severities")
    saved = await save_policy(
        ctx.db, list(chosen.values()),
        None if severities is None else sorted(set(severities), key=rules.ALARM_SEVERITIES.index),
        by=current_principal().user_id, at=utc_now(ctx))
    ctx.bus.publish(DEVICES_TOPIC, LiveTicketPolicy(
        tuple(LivePriority(p.priority, p.resolve_within_s, p.auto_close_after_s) for p in saved.priorities),
        tuple(saved.auto_raise_severities), saved.updated_at.isoformat(), saved.updated_by))
    return jsonify(policy_json(saved))


# --- OpenAPI --------------------------------------------------------------------------------------

_ALL = {"x-roles": list(ROLES)}
_STAFF = {"x-roles": ["ops", "admin"]}
_ADMIN = {"x-roles": ["admin"]}
_TICKET_PARAM = path_param("ticket_id", "The ticket's id.", {"type": "integer", "minimum": 1})
_NO_TICKET = doc_not_found("ticket (or not one you may see)")
_WRITE_ERRORS = {"400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "413": TOO_LARGE, "415": NOT_JSON}
_MOVE_CONFLICT = error("`invalid_transition`: the workflow does not allow it from the ticket's state; "
                       "`conflict`: the ticket changed meanwhile.")
_PRIORITY = enum(*rules.PRIORITIES)
_STATE = enum(*rules.STATES)

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Ticket": obj({
        "id": INT, "room_id": nullable(STR), "room_name": nullable(STR), "building": nullable(STR),
        "device_id": nullable(STR), "alarm_id": nullable(INT), "alarm_type": nullable(STR),
        "title": STR, "description": STR, "priority": _PRIORITY, "state": _STATE,
        "source": enum("report", "alarm", "auto"), "assignee": nullable(STR), "assignee_name": nullable(STR),
        "reported_by": {**nullable(STR), "description": "null: raised by the hub."},
        "reporter_name": nullable(STR), "sla_due_at": TIME,
        "sla_breached_at": {**nullable(TIME), "description": "When the hub announced the breach."},
        "auto_close_after_s": {**nullable(INT), "description": "null: never closes by itself."},
        "created_at": TIME, "updated_at": TIME, "resolved_at": nullable(TIME), "closed_at": nullable(TIME),
        "close_reason": STR,
        "sla_breached": {**BOOL, "description": "Unresolved at or past its due time, or resolved after it."},
    }),
    "TicketComment": obj({"id": INT, "author": STR, "author_name": STR, "body": STR, "created_at": TIME}),
    "TicketPolicy": obj({
        "priorities": array(obj({"priority": _PRIORITY, "resolve_within_s": INT,
                                 "auto_close_after_s": nullable(INT)})),
        "auto_raise_severities": array(enum(*rules.ALARM_SEVERITIES)),
        "updated_at": TIME, "updated_by": nullable(STR),
    }),
}
OPENAPI_SCHEMAS["TicketDetail"] = {
    **OPENAPI_SCHEMAS["Ticket"],
    "properties": {
        **OPENAPI_SCHEMAS["Ticket"]["properties"],
        "comments": array(ref("TicketComment")),
        "events": array(obj({"id": INT, "at": TIME, "actor": STR, "kind": STR, "from_state": nullable(STR),
                             "to_state": nullable(STR), "detail": {"type": "object"},
                             "text": {**STR, "description": "The entry in words, with names: what the page shows."}})),
    },
    "required": [*OPENAPI_SCHEMAS["Ticket"]["required"], "comments", "events"],
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/tickets": {
        "post": {
            "summary": "Report a problem in a room (anyone), or raise a ticket from an alarm (ops, admin)", **_ALL,
            "tags": ["tickets"], "security": BEARER,
            "requestBody": json_request(TicketReport, "The problem. One of room_id, device_id or alarm_id is needed."),
            "responses": {"201": json_response(ref("Ticket"), "Created (state open)."), **_WRITE_ERRORS,
                          "409": CONFLICT},
        },
        "get": {
            "summary": "Tickets, most urgent first (staff: all; others: those they reported)", **_ALL,
            "tags": ["tickets"], "security": BEARER,
            "parameters": [
                *page_params(),
                query_str("state", "live (not closed), all (default), or one state.",
                          enum("live", "all", *rules.STATES)),
                query_str("priority", "Only this priority.", _PRIORITY),
                query_str("room_id", "Only this room."), query_str("device_id", "Only this device."),
                query_str("assignee", "Only tickets assigned to this user."),
                query_str("breached", "Only breached (true) or within SLA (false).", enum("true", "false")),
                query_str("mine", "Only tickets I reported.", enum("true", "false")),
                query_str("q", "Search title, description, room, building and device.", {"type": "string",
                                                                                          "maxLength": 200}),
            ],
            "responses": {"200": json_response(page_of(ref("Ticket")), "One page."), "400": BAD_URL,
                          "401": UNAUTHENTICATED, "403": FORBIDDEN},
        },
    },
    "/api/v1/tickets/{ticket_id}": {
        "get": {
            "summary": "A ticket with its comments and history", **_ALL, "tags": ["tickets"], "security": BEARER,
            "parameters": [_TICKET_PARAM],
            "responses": {"200": json_response(ref("TicketDetail"), "The ticket."), "401": UNAUTHENTICATED,
                          "403": FORBIDDEN, "404": _NO_TICKET},
        },
        "patch": {
            "summary": "Change priority (the SLA due time follows) or the auto-close delay (ops, admin)", **_STAFF,
            "tags": ["tickets"], "security": BEARER, "parameters": [_TICKET_PARAM],
            "requestBody": json_request(TicketAmendment, "At least one field."),
            "responses": {"200": json_response(ref("Ticket"), "Changed."), **_WRITE_ERRORS, "404": _NO_TICKET,
                          "409": _MOVE_CONFLICT},
        },
    },
    "/api/v1/tickets/{ticket_id}/assign": {"post": {
        "summary": "Assign to an ops (or admin) user; the ticket becomes assigned (ops, admin)", **_STAFF,
        "tags": ["tickets"], "security": BEARER, "parameters": [_TICKET_PARAM],
        "requestBody": json_request(TicketAssignment, "Who, and an optional comment."),
        "responses": {"200": json_response(ref("Ticket"), "Assigned."), **_WRITE_ERRORS, "404": _NO_TICKET,
                      "409": _MOVE_CONFLICT},
    }},
    "/api/v1/tickets/{ticket_id}/transition": {"post": {
        "summary": "Move a ticket (start, resolve, close, reopen, unassign, cancel); who may is in "
                   "docs/ops-console.md", **_ALL,
        "tags": ["tickets"], "security": BEARER, "parameters": [_TICKET_PARAM],
        "requestBody": json_request(TicketTransition, "The new state."),
        "responses": {"200": json_response(ref("Ticket"), "Moved."), **_WRITE_ERRORS, "404": _NO_TICKET,
                      "409": _MOVE_CONFLICT},
    }},
    "/api/v1/tickets/{ticket_id}/comments": {"post": {
        "summary": "Comment on a ticket (anyone who may see it)", **_ALL, "tags": ["tickets"], "security": BEARER,
        "parameters": [_TICKET_PARAM],
        "requestBody": json_request(TicketCommentBody, "The comment."),
        "responses": {"201": json_response(ref("TicketComment"), "Stored."), **_WRITE_ERRORS, "404": _NO_TICKET},
    }},
    "/api/v1/tickets/assignees": {"get": {
        "summary": "Users tickets may be assigned to (ops, admin)", **_STAFF, "tags": ["tickets"],
        "security": BEARER, "parameters": page_params(),
        "responses": {"200": json_response(page_of(obj({"id": STR, "display_name": STR, "role": enum("ops", "admin")})),
                                           "One page."),
                      "400": BAD_URL, "401": UNAUTHENTICATED, "403": FORBIDDEN},
    }},
    "/api/v1/tickets/sla-policy": {
        "get": {
            "summary": "SLA per priority, auto-close delays, auto-raise severities (ops, admin)", **_STAFF,
            "tags": ["tickets"], "security": BEARER,
            "responses": {"200": json_response(ref("TicketPolicy"), "The policy."), "401": UNAUTHENTICATED,
                          "403": FORBIDDEN},
        },
        "put": {
            "summary": "Change the policy of some priorities and/or the auto-raise severities (admin); "
                       "existing tickets keep their due times", **_ADMIN,
            "tags": ["tickets"], "security": BEARER,
            "requestBody": json_request(TicketPolicyChange, "Only what changes."),
            "responses": {"200": json_response(ref("TicketPolicy"), "The new policy."), **_WRITE_ERRORS},
        },
    },
}
