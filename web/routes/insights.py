"""Insights API: standings (percentage, max reachable, eligibility), reports + CSV, charts' series,
condonation, the notification centre and webhook subscriptions. All under ``/api/v1``.

Ownership: a student sees only their own standing, series, condonations and
notifications (the id comes from the token, or must equal it); a faculty
member only the courses they teach (coordinator or assigned); an admin
everything. Notifications are always the caller's own, whatever the role.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from hub.core.bus import LiveUnread, user_topic
from hub.db.condonation import (
    AlreadyOpen,
    Application,
    create_application,
    decide_application,
    get_application,
    list_applications,
)
from hub.db.insights import (
    CourseInfo,
    course_faculty,
    course_info,
    course_rules,
    course_timeline,
    section_course,
    standings,
    student_timeline,
    teaches_course,
)
from hub.db.notifications import (
    KINDS,
    NewNotification,
    add_notifications,
    list_notifications,
    mark_all_read,
    mark_read,
    publish_notifications,
    unread_count,
)
from hub.db.webhooks import (
    Delivery,
    Subscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_deliveries,
    list_subscriptions,
    update_subscription,
)
from hub.domain.eligibility import CONDONABLE, shown
from hub.domain.webhook_policy import redact_text, url_problem

from ..access import attendance_scope
from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BOOL,
    CONFLICT,
    FORBIDDEN,
    INT,
    NOT_JSON,
    NUMBER,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    UUID,
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
from ..auth import ROLES, Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, invalid, not_found
from ..feeds import utc_now
from ..insights import (
    course_series_json,
    report_csv,
    report_summary,
    standing_json,
    student_series_json,
)
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, NonEmpty, choice_arg, flag_arg, json_body, one_of

bp = Blueprint("insights", __name__, url_prefix="/api/v1")

MAX_REASON = 2000
MAX_URL = 2000
CONDONATION_STATES = ("pending", "approved", "rejected")
DELIVERY_STATES = ("pending", "delivered", "failed")


class CondonationRequest(msgspec.Struct):
    course_id: NonEmpty
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON, description="Why (trimmed; not blank).")]


class CondonationDecision(msgspec.Struct):
    decision: Annotated[str, one_of(("approved", "rejected"))]
    note: Annotated[str, Meta(max_length=MAX_REASON, description="Shown to the student.")] = ""


WebhookUrl = Annotated[str, Meta(max_length=MAX_URL, extra_json_schema={"format": "uri"}, description=(
    "http(s) endpoint that receives POSTs. Refused (400, field `url`): userinfo, link-local, unspecified, "
    "multicast and cloud-metadata hosts/addresses (also IPv4-mapped); loopback and private ranges are "
    "allowed. The resolved address is checked again at each delivery."))]


class WebhookChange(msgspec.Struct, kw_only=True):
    """``PATCH /webhooks/{id}``: the fields given change, the others stay."""

    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    secret: Annotated[str, Meta(min_length=16, max_length=200, description=(
        "HMAC key (printable); generated (and returned once) when omitted on create."))] | msgspec.UnsetType = (
        msgspec.UNSET)
    kinds: Annotated[list[Annotated[str, Meta(min_length=1, max_length=100)]], Meta(max_length=50, description=(
        f"Notification kinds ({', '.join(KINDS)}); empty = all."))] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET


class NewWebhook(WebhookChange, kw_only=True):
    """``POST /webhooks``: ``url`` is required; the others default (kinds: all, active, a new secret)."""

    url: WebhookUrl


def _id_arg(raw: str, what: str) -> int:
    """A numeric id from the URL (404 rather than 400 for anything that cannot be one)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise not_found(f"No such {what}.")
    return int(raw)


# --- scopes ------------------------------------------------------------------------------------

async def _course_scope(principal: Principal, course_id: str) -> CourseInfo:
    """404 for an unknown course, 403 for faculty who do not teach it."""
    ctx = current_context()
    course = await course_info(ctx.db, course_id)
    if course is None:
        raise not_found("No such course.")
    if principal.role == "faculty" and not await teaches_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")
    if principal.role not in ("faculty", "admin"):
        raise forbidden()
    return course


async def _section_arg(course_id: str) -> str | None:
    section_id = request.args.get("section_id") or None
    if section_id is not None and await section_course(current_context().db, section_id) != course_id:
        raise invalid("No such section in this course.", field="section_id")
    return section_id


async def _visible_courses(principal: Principal, student_id: str) -> set[str] | None:
    """Authorise reading a student's figures; the courses a faculty member may see (None: all)."""
    ctx = current_context()
    faculty_id = await attendance_scope(ctx, principal, student_id)
    if faculty_id is None:
        return None
    rows = await standings(ctx.db, utc_now(ctx), student_id=student_id)
    visible = set()
    for course_id in {r.course_id for r in rows}:
        if await teaches_course(ctx.db, faculty_id, course_id):
            visible.add(course_id)
    return visible


# --- standings and series ---------------------------------------------------------------------

async def student_standings(student_id: str, visible: set[str] | None = None) -> list[dict]:
    """Per-course standing of a student (the page uses this too)."""
    ctx = current_context()
    rows = await standings(ctx.db, utc_now(ctx), student_id=student_id)
    return [standing_json(r) for r in rows if visible is None or r.course_id in visible]


@bp.get("/students/<student_id>/standing")
@require("student", "faculty", "admin")
async def student_standing(student_id: str) -> Response:
    visible = await _visible_courses(current_principal(), student_id)
    return jsonify({"student_id": student_id, "courses": await student_standings(student_id, visible)})


@bp.get("/students/<student_id>/courses/<course_id>/series")
@require("student", "faculty", "admin")
async def student_series(student_id: str, course_id: str) -> Response:
    ctx = current_context()
    visible = await _visible_courses(current_principal(), student_id)
    if visible is not None and course_id not in visible:
        raise forbidden("You do not teach this course.")
    now = utc_now(ctx)
    if not await standings(ctx.db, now, student_id=student_id, course_id=course_id):
        raise not_found("The student is not enrolled in this course.")
    rules = await course_rules(ctx.db, course_id)
    points = student_series_json(await student_timeline(ctx.db, student_id, course_id, now), rules)
    return jsonify({"student_id": student_id, "course_id": course_id,
                    "warning_pct": float(rules.warning_pct), "points": points})


async def course_report_items(course_id: str, section_id: str | None) -> list[dict]:
    ctx = current_context()
    rows = await standings(ctx.db, utc_now(ctx), course_id=course_id, section_id=section_id)
    return [standing_json(r) for r in rows]


@bp.get("/courses/<course_id>/report")
@require("faculty", "admin")
async def course_report(course_id: str) -> Response:
    ctx = current_context()
    course = await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    paging = page_request()
    items = await course_report_items(course_id, section_id)
    held = len(await course_timeline(ctx.db, course_id, utc_now(ctx), section_id))
    return jsonify(page_json(paging.of(items), len(items), paging, course=_course_json(course),
                             section_id=section_id, summary=report_summary(items, held)))


@bp.get("/courses/<course_id>/report.csv")
@require("faculty", "admin")
async def course_report_csv(course_id: str) -> Response:
    course = await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    body = report_csv(await course_report_items(course_id, section_id))
    name = f"{course.code}{'-' + section_id if section_id else ''}-attendance.csv"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return Response(body, content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@bp.get("/courses/<course_id>/series")
@require("faculty", "admin")
async def course_series(course_id: str) -> Response:
    ctx = current_context()
    await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    rules = await course_rules(ctx.db, course_id)
    points = course_series_json(await course_timeline(ctx.db, course_id, utc_now(ctx), section_id), rules)
    return jsonify({"course_id": course_id, "section_id": section_id,
                    "warning_pct": float(rules.warning_pct), "points": points})


def _course_json(course: CourseInfo) -> dict:
    return {"course_id": course.course_id, "course_code": course.code, "course_title": course.title}


# --- condonation ---------------------------------------------------------------------------

def application_json(a: Application) -> dict:
    return {
        "id": a.id, "student_id": a.student_id, "student_name": a.student_name, "roll_number": a.roll_number,
        "course_id": a.course_id, "course_code": a.course_code, "course_title": a.course_title,
        "reason": a.reason, "percentage": float(a.percentage), "state": a.state, "created_at": a.created_at,
        "decided_at": a.decided_at, "decided_by": a.decided_by, "decision_note": a.decision_note,
    }


@bp.post("/condonations")
@require("student")
async def apply_condonation() -> tuple[Response, int]:
    """A student applies for their own course; only while their band is condonable."""
    ctx, principal = current_context(), current_principal()
    body = await json_body(CondonationRequest)
    reason = body.reason.strip()
    if not reason:
        raise invalid(f"'reason' must be 1 to {MAX_REASON} characters.", field="reason")
    now = utc_now(ctx)
    rows = await standings(ctx.db, now, student_id=principal.user_id, course_id=body.course_id)
    if not rows:
        raise invalid("You are not enrolled in this course.", field="course_id")
    st = rows[0].standing()
    if st.band != CONDONABLE:
        raise WebError(409, "not_condonable",
                       f"Condonation is only for attendance in the condonable band; yours is {st.band}.")
    assert st.percentage is not None  # a condonable band has a percentage (hub/domain/eligibility.py's band)
    pct = shown(st.percentage)
    teachers = (await course_faculty(ctx.db, [rows[0].course_id])).get(rows[0].course_id, set())

    async def work(conn) -> tuple[Application, list[dict]]:
        application = await create_application(conn, principal.user_id, rows[0].course_id, reason, pct, now)
        notes = [NewNotification(
            user_id=t, kind="condonation_requested",
            title=f"{rows[0].course_code}: condonation requested by {rows[0].student_name}",
            body=f"{rows[0].student_name} ({rows[0].roll_number}) is at {pct}% and asks for condonation.",
            link=f"/faculty/reports?course_id={rows[0].course_id}",
            data={"application_id": application.id, "course_id": rows[0].course_id,
                  "student_id": principal.user_id},
        ) for t in sorted(teachers)]
        return application, await add_notifications(conn, notes)

    try:
        application, published = await ctx.db.run(work, transaction=True)
    except AlreadyOpen:
        raise WebError(409, "conflict", "You already have a pending or approved application for this course.") from None
    publish_notifications(ctx.bus, published)
    return jsonify(application_json(application)), 201


@bp.get("/condonations")
@require("student", "faculty", "admin")
async def condonations() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    state = choice_arg("state", CONDONATION_STATES)
    items, total = await list_applications(
        ctx.db,
        student_id=principal.user_id if principal.role == "student" else None,
        faculty_id=principal.user_id if principal.role == "faculty" else None,
        course_id=request.args.get("course_id") or None, state=state, limit=paging.limit, offset=paging.offset,
    )
    return jsonify(page_json([application_json(a) for a in items], total, paging))


@bp.post("/condonations/<application_id>/decision")
@require("faculty", "admin")
async def decide_condonation(application_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    found = await get_application(ctx.db, _id_arg(application_id, "application"))
    if found is None:
        raise not_found("No such application.")
    await _course_scope(principal, found.course_id)
    body = await json_body(CondonationDecision)
    note = body.note
    now = utc_now(ctx)

    async def work(conn) -> tuple[Application | None, list[dict]]:
        decided = await decide_application(conn, found.id, body.decision == "approved", principal.user_id,
                                           note, now)
        if decided is None:
            return None, []
        return decided, await add_notifications(conn, [NewNotification(
            user_id=decided.student_id, kind="condonation_decided",
            title=f"{decided.course_code}: condonation {decided.state}",
            body=note or f"Your condonation application for {decided.course_code} was {decided.state}.",
            link="/student", data={"application_id": decided.id, "course_id": decided.course_id,
                                   "state": decided.state},
        )])

    decided, published = await ctx.db.run(work, transaction=True)
    if decided is None:
        raise WebError(409, "conflict", "This application has already been decided.")
    publish_notifications(ctx.bus, published)
    return jsonify(application_json(decided))


# --- notifications --------------------------------------------------------------------------

def _announce_unread(user_id: str, unread: int) -> None:
    """Other open tabs of the user update their badge."""
    current_context().bus.publish(user_topic(user_id), LiveUnread(unread))


@bp.get("/notifications")
@require()
async def notifications() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    items, total, unread = await list_notifications(
        ctx.db, principal.user_id, unread_only=flag_arg("unread"), limit=paging.limit, offset=paging.offset)
    return jsonify(page_json(items, total, paging, unread=unread))


@bp.get("/notifications/unread-count")
@require()
async def notifications_unread() -> Response:
    ctx, principal = current_context(), current_principal()
    return jsonify({"unread": await unread_count(ctx.db, principal.user_id)})


@bp.post("/notifications/<notification_id>/read")
@require()
async def notification_read(notification_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)  # a JSON body (may be {}): the API's CSRF defence, see web/auth.py
    row = await mark_read(ctx.db, principal.user_id, _id_arg(notification_id, "notification"), utc_now(ctx))
    if row is None:
        raise not_found("No such notification.")
    _announce_unread(principal.user_id, await unread_count(ctx.db, principal.user_id))
    return jsonify(row)


@bp.post("/notifications/read-all")
@require()
async def notifications_read_all() -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)  # a JSON body (may be {}): the API's CSRF defence, see web/auth.py
    updated = await mark_all_read(ctx.db, principal.user_id, utc_now(ctx))
    _announce_unread(principal.user_id, 0)
    return jsonify({"updated": updated, "unread": 0})


# --- webhooks (admin) ---------------------------------------------------------------------------

def subscription_json(s: Subscription, *, with_secret: bool = False) -> dict:
    body = {
        "id": s.id, "url": s.url, "kinds": s.kinds, "active": s.active, "description": s.description,
        "created_at": s.created_at, "created_by": s.created_by, "updated_at": s.updated_at,
        "secret_hint": "…" + s.secret[-4:],
    }
    if with_secret:
        body["secret"] = s.secret
    return body


def delivery_json(d: Delivery) -> dict:
    return {
        "id": d.id, "subscription_id": d.subscription_id, "event_id": d.event_id, "kind": d.kind,
        "state": d.state, "attempts": d.attempts, "next_attempt_at": d.next_attempt_at,
        "last_attempt_at": d.last_attempt_at, "last_status": d.last_status,
        # Redacted again here: rows recorded before errors were redacted at the source.
        "last_error": redact_text(d.last_error) if d.last_error is not None else None,
        "delivered_at": d.delivered_at, "created_at": d.created_at, "payload": d.payload,
    }


def _subscription_fields(body: WebhookChange) -> dict[str, Any]:
    """The fields ``body`` gives, past the rules a type cannot say (the URL's target policy, a
    printable secret); a new subscription without a secret gets a generated one."""
    fields = {name: value for name, value in msgspec.structs.asdict(body).items() if value is not msgspec.UNSET}
    if "url" in fields:
        url = fields["url"]
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed "[" of an IPv6 literal
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(
                ch.isspace() for ch in url):
            raise invalid("'url' must be an absolute http(s) URL.", field="url")
        problem = url_problem(url)  # the target policy: docs/notifications.md
        if problem is not None:
            raise invalid(f"'url' is not allowed: {problem}.", field="url")
    if "secret" in fields and not fields["secret"].isprintable():
        raise invalid("'secret' must be 16 to 200 printable characters.", field="secret")
    if "secret" not in fields and isinstance(body, NewWebhook):
        fields["secret"] = secrets.token_urlsafe(32)
    if "kinds" in fields:
        fields["kinds"] = sorted(set(fields["kinds"]))
    return fields


async def _subscription_or_404(raw_id: str) -> Subscription:
    found = await get_subscription(current_context().db, _id_arg(raw_id, "webhook"))
    if found is None:
        raise not_found("No such webhook.")
    return found


@bp.get("/webhooks")
@require("admin")
async def webhooks() -> Response:
    paging = page_request()
    items, total = await list_subscriptions(current_context().db, paging.limit, paging.offset)
    return jsonify(page_json([subscription_json(s) for s in items], total, paging))


@bp.post("/webhooks")
@require("admin")
async def create_webhook() -> tuple[Response, int]:
    ctx = current_context()
    fields = _subscription_fields(await json_body(NewWebhook))
    created = await create_subscription(
        ctx.db, url=fields["url"], secret=fields["secret"], kinds=fields.get("kinds", []),
        active=fields.get("active", True), description=fields.get("description", ""),
        created_by=current_principal().user_id, now=utc_now(ctx),
    )
    return jsonify(subscription_json(created, with_secret=True)), 201


@bp.get("/webhooks/<webhook_id>")
@require("admin")
async def webhook(webhook_id: str) -> Response:
    return jsonify(subscription_json(await _subscription_or_404(webhook_id)))


@bp.patch("/webhooks/<webhook_id>")
@require("admin")
async def update_webhook(webhook_id: str) -> Response:
    ctx = current_context()
    found = await _subscription_or_404(webhook_id)
    fields = _subscription_fields(await json_body(WebhookChange))
    updated = await update_subscription(ctx.db, found.id, fields, utc_now(ctx))
    if updated is None:
        raise not_found("No such webhook.")
    return jsonify(subscription_json(updated, with_secret="secret" in fields))


@bp.delete("/webhooks/<webhook_id>")
@require("admin")
async def delete_webhook(webhook_id: str) -> Response:
    found = await _subscription_or_404(webhook_id)
    if not await delete_subscription(current_context().db, found.id):
        raise not_found("No such webhook.")
    return Response(b"", status=204)


@bp.get("/webhooks/<webhook_id>/deliveries")
@require("admin")
async def webhook_deliveries(webhook_id: str) -> Response:
    found = await _subscription_or_404(webhook_id)
    paging = page_request()
    state = choice_arg("state", DELIVERY_STATES)
    items, total = await list_deliveries(current_context().db, found.id, state, paging.limit, paging.offset)
    return jsonify(page_json([delivery_json(d) for d in items], total, paging))


# --- OpenAPI ----------------------------------------------------------------------------------------

_PCT = nullable(NUMBER)
_BAND = enum("eligible", "condonable", "barred")

OPENAPI_SCHEMAS: dict = {
    "Standing": obj({
        "student_id": STR, "student_name": STR, "roll_number": STR,
        "course_id": STR, "course_code": STR, "course_title": STR,
        "section_id": nullable(STR), "section_name": nullable(STR),
        "counts": obj({k: INT for k in ("present", "late", "absent", "excused", "held", "remaining")}),
        "percentage": {**_PCT, "description": "Weighted percentage so far, two decimals rounded down; null "
                                              "while no session counts."},
        "max_reachable": {**NUMBER, "description": "Percentage at the end of term if every remaining session "
                                                   "is attended."},
        "band": _BAND, "best_band": _BAND,
        "eligibility": enum("eligible", "condoned", "condonable", "barred"),
        "below_warning": BOOL,
        "needed_for_eligible": {**nullable(INT), "description": "Remaining sessions to attend to end eligible; "
                                                                "null if no longer possible."},
        "rules": obj({"late_weight": NUMBER, "warning_pct": NUMBER, "eligible_pct": NUMBER,
                      "condonable_pct": NUMBER, "excused_counts": BOOL}),
        "condonation": nullable(obj({"id": INT, "state": enum(*CONDONATION_STATES)})),
    }),
    "CondonationApplication": obj({
        "id": INT, "student_id": STR, "student_name": STR, "roll_number": STR, "course_id": STR,
        "course_code": STR, "course_title": STR, "reason": STR, "percentage": NUMBER,
        "state": enum(*CONDONATION_STATES), "created_at": TIME, "decided_at": nullable(TIME),
        "decided_by": nullable(STR), "decision_note": STR,
    }),
    "Notification": obj({
        "id": INT, "user_id": STR, "kind": STR, "title": STR, "body": STR, "link": nullable(STR),
        "data": {"type": "object"}, "created_at": TIME, "read_at": nullable(TIME), "read": BOOL,
    }),
    "Webhook": obj({
        "id": INT, "url": STR, "kinds": array(STR), "active": BOOL, "description": STR, "created_at": TIME,
        "created_by": nullable(STR), "updated_at": TIME, "secret_hint": STR,
        "secret": {**STR, "description": "Only when created, or when PATCH set a new one."},
    }, required=["id", "url", "kinds", "active", "description", "created_at", "created_by", "updated_at",
                 "secret_hint"]),
    "WebhookDelivery": obj({
        "id": INT, "subscription_id": INT, "event_id": UUID, "kind": STR,
        "state": enum(*DELIVERY_STATES), "attempts": INT, "next_attempt_at": TIME,
        "last_attempt_at": nullable(TIME), "last_status": nullable(INT), "last_error": nullable(STR),
        "delivered_at": nullable(TIME), "created_at": TIME, "payload": {"type": "object"},
    }),
}

_STUDENTS = ["student", "faculty", "admin"]
_TEACHERS = ["faculty", "admin"]
_ADMIN = ["admin"]
_EVERYONE = list(ROLES)


def _op(summary: str, tag: str, roles: Sequence[str], responses: dict, *, params: list | None = None,
        body: dict | None = None) -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "x-roles": list(roles),
          "responses": {**responses, "401": UNAUTHENTICATED, "403": FORBIDDEN}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
        op["responses"].update({"413": TOO_LARGE, "415": NOT_JSON})
    return op


_PAGE = page_params()
_STUDENT = path_param("student_id", "Student (user) id.")
_COURSE = path_param("course_id", "Course id.")
_SECTION = query_str("section_id", "Only this section of the course.")
_SERIES_POINTS = {"warning_pct": NUMBER}
_WEBHOOK_ID = path_param("webhook_id", "Webhook subscription id.")
_EMPTY_BODY = json_request(EmptyBody, "Any JSON object, e.g. `{}`.")

OPENAPI_PATHS: dict = {
    "/api/v1/students/{student_id}/standing": {"get": _op(
        "A student's percentage, max reachable and eligibility per course (the student, their faculty, admin)",
        "insights", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "courses": array(ref("Standing"))}), "Standing."),
            "400": BAD_URL, "404": doc_not_found("student")},
        params=[_STUDENT])},
    "/api/v1/students/{student_id}/courses/{course_id}/series": {"get": _op(
        "The student's cumulative percentage after each counted session of a course (for a chart)",
        "insights", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "course_id": STR, **_SERIES_POINTS, "points": array(obj({
                "session_id": STR, "starts_at": TIME, "status": enum("present", "late", "absent", "excused"),
                "percentage": _PCT}))}), "Series."),
            "400": BAD_URL, "404": doc_not_found("student or enrolment")},
        params=[_STUDENT, _COURSE])},
    "/api/v1/courses/{course_id}/report": {"get": _op(
        "Course (or section) report: every enrolled student's standing, with a summary (paginated)",
        "insights", _TEACHERS, {
            "200": json_response(page_of(ref("Standing"), course=obj({
                "course_id": STR, "course_code": STR, "course_title": STR}),
                section_id=nullable(STR), summary=obj({
                    "students": INT, "sessions_held": INT, "average_percentage": _PCT,
                    "bands": obj({"eligible": INT, "condonable": INT, "barred": INT}),
                    "condoned": INT, "below_warning": INT})), "Report."),
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION, *_PAGE])},
    "/api/v1/courses/{course_id}/report.csv": {"get": _op(
        "The same report as CSV (every student, same figures)", "insights", _TEACHERS, {
            "200": {"description": "CSV with a header row.", "content": {"text/csv": {"schema": STR}}},
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION])},
    "/api/v1/courses/{course_id}/series": {"get": _op(
        "Attendance rate of each ended session of a course (or section), for a chart", "insights", _TEACHERS, {
            "200": json_response(obj({"course_id": STR, "section_id": nullable(STR), **_SERIES_POINTS,
                                      "points": array(obj({
                                          "session_id": STR, "starts_at": TIME, "present": INT, "late": INT,
                                          "absent": INT, "excused": INT, "percentage": _PCT}))}), "Series."),
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION])},
    "/api/v1/condonations": {
        "get": _op("Condonation applications, newest first (own / taught courses / all)", "condonation",
                   _STUDENTS, {"200": json_response(page_of(ref("CondonationApplication")), "One page."),
                               "400": BAD_URL},
                   params=[query_str("state", "Only this state.", enum(*CONDONATION_STATES)),
                           query_str("course_id", "Only this course."), *_PAGE]),
        "post": _op("Apply for condonation (students in the condonable band)", "condonation", ["student"], {
            "201": json_response(ref("CondonationApplication"), "Applied."), "400": BAD_BODY,
            "409": error("`not_condonable`: the band is not condonable; `conflict`: already applied.")},
            body=json_request(CondonationRequest, "The course and why.")),
    },
    "/api/v1/condonations/{application_id}/decision": {"post": _op(
        "Approve or reject a pending application (faculty teaching the course, admin)", "condonation", _TEACHERS, {
            "200": json_response(ref("CondonationApplication"), "Decided."), "400": BAD_BODY,
            "404": doc_not_found("application"), "409": CONFLICT},
        params=[path_param("application_id", "Application id.")],
        body=json_request(CondonationDecision, "The decision."))},
    "/api/v1/notifications": {"get": _op(
        "The caller's notifications, newest first", "notifications", _EVERYONE, {
            "200": json_response(page_of(ref("Notification"), unread=INT), "One page."), "400": BAD_URL},
        params=[query_str("unread", "Only unread ones.", enum("true", "false", "1", "0")), *_PAGE])},
    "/api/v1/notifications/unread-count": {"get": _op(
        "How many of the caller's notifications are unread", "notifications", _EVERYONE, {
            "200": json_response(obj({"unread": INT}), "Count.")})},
    "/api/v1/notifications/{notification_id}/read": {"post": _op(
        "Mark one of the caller's notifications read (idempotent)", "notifications", _EVERYONE, {
            "200": json_response(ref("Notification"), "Marked."), "400": BAD_BODY,
            "404": doc_not_found("notification")},
        params=[path_param("notification_id", "Notification id.")], body=_EMPTY_BODY)},
    "/api/v1/notifications/read-all": {"post": _op(
        "Mark all of the caller's notifications read", "notifications", _EVERYONE, {
            "200": json_response(obj({"updated": INT, "unread": INT}), "Marked."), "400": BAD_BODY},
        body=_EMPTY_BODY)},
    "/api/v1/webhooks": {
        "get": _op("Webhook subscriptions (admin)", "webhooks", _ADMIN, {
            "200": json_response(page_of(ref("Webhook")), "One page."), "400": BAD_URL}, params=_PAGE),
        "post": _op("Subscribe an endpoint to notifications (admin); the secret is shown once", "webhooks",
                    _ADMIN, {"201": json_response(ref("Webhook"), "Created."), "400": BAD_BODY},
                    body=json_request(NewWebhook, "The subscription.")),
    },
    "/api/v1/webhooks/{webhook_id}": {
        "get": _op("One webhook subscription (admin)", "webhooks", _ADMIN, {
            "200": json_response(ref("Webhook"), "The subscription."), "404": doc_not_found("webhook")},
            params=[_WEBHOOK_ID]),
        "patch": _op("Change a webhook subscription (admin)", "webhooks", _ADMIN, {
            "200": json_response(ref("Webhook"), "Changed."), "400": BAD_BODY, "404": doc_not_found("webhook")},
            params=[_WEBHOOK_ID],
            body=json_request(WebhookChange, "Fields to change.")),
        "delete": _op("Delete a webhook subscription and its delivery log (admin)", "webhooks", _ADMIN, {
            "204": {"description": "Deleted."}, "404": doc_not_found("webhook")}, params=[_WEBHOOK_ID]),
    },
    "/api/v1/webhooks/{webhook_id}/deliveries": {"get": _op(
        "A subscription's deliveries, newest first (admin)", "webhooks", _ADMIN, {
            "200": json_response(page_of(ref("WebhookDelivery")), "One page."), "400": BAD_URL,
            "404": doc_not_found("webhook")},
        params=[_WEBHOOK_ID, query_str("state", "Only this state.", enum(*DELIVERY_STATES)), *_PAGE])},
}
