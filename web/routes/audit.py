"""The audit log API: search, export (CSV, JSON lines) and chain verification.

An admin sees every entry (attendance changes and security actions,
hub/db/security_audit.py); a faculty member only entries of the courses they
manage (coordinator or assigned), so never a security entry (those belong to
no course). Verification covers the one chain of the whole log, so it is for
admins only.
"""
from __future__ import annotations

from typing import AsyncIterator

from quart import Blueprint, Response, jsonify

from hub.db.academic import manages_sql
from hub.db.audit import (
    AuditFilter,
    csv_chunk,
    csv_header,
    iter_audit,
    jsonl_chunk,
    search_audit,
    verify_chain,
)
from hub.db.security_audit import NAME_RE

from ..apidoc import (
    BAD_URL,
    BEARER,
    BOOL,
    FORBIDDEN,
    INT,
    STR,
    TIME,
    UNAUTHENTICATED,
    enum,
    json_response,
    nullable,
    obj,
    query_str,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import invalid
from ..paging import page_json, page_of, page_params, page_request
from ..request import choice_arg, instant_arg, text_arg

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

_TEXT_FILTERS = ("student_id", "session_id", "course_id", "actor", "entity", "action")
_MAX_FILTER_CHARS = 200


async def _filter() -> AuditFilter:
    """The query's filters, narrowed to a faculty member's courses."""
    values = {name: text_arg(name, _MAX_FILTER_CHARS) for name in _TEXT_FILTERS}
    for name in ("entity", "action"):
        if values[name] is not None and not NAME_RE.fullmatch(values[name] or ""):
            raise invalid(f"'{name}' must be a lowercase name: letters, digits and '_', at most 64.", field=name)
    return AuditFilter(**values, since=instant_arg("since"), until=instant_arg("until"),
                       course_ids=await scope_course_ids())


async def scope_course_ids() -> list[str] | None:
    """The courses whose entries the current user may see: ``None`` (all) for an admin, the
    courses a faculty member manages (coordinator or assigned). Used by the API and the page."""
    principal = current_principal()
    if principal.role != "faculty":
        return None
    rows = await current_context().db.fetch(
        "SELECT c.id FROM courses c WHERE " + manages_sql("c.id", "$1") + " ORDER BY c.code", principal.user_id)
    return [r["id"] for r in rows]


@bp.get("")
@require("admin", "faculty")
async def search() -> Response:
    paging = page_request()
    page = await search_audit(current_context().db, await _filter(), limit=paging.limit, offset=paging.offset)
    return jsonify(page_json(page.items, page.total, paging))


@bp.get("/export")
@require("admin", "faculty")
async def export() -> Response:
    fmt = choice_arg("format", ("csv", "jsonl")) or "csv"
    f = await _filter()
    db = current_context().db

    async def body() -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield csv_header().encode()
        async for chunk in iter_audit(db, f):
            yield (csv_chunk(chunk) if fmt == "csv" else jsonl_chunk(chunk)).encode()

    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return Response(body(), content_type=content_type,
                    headers={"Content-Disposition": f'attachment; filename="audit-log.{fmt}"'})


@bp.get("/verify")
@require("admin")
async def verify() -> Response:
    report = await verify_chain(current_context().db)
    return jsonify({
        "ok": report.ok, "entries": report.entries, "head_id": report.head_id, "head_hash": report.head_hash,
        "first_broken_id": report.first_broken_id, "problem": report.problem, "redacted": report.redacted,
        "archived_entries": report.archived_entries, "archived_segments": report.archived_segments,
    })


# --- OpenAPI ------------------------------------------------------------------------------------

_FILTERS = [
    query_str("student_id", "Only entries about this student."),
    query_str("session_id", "Only entries about this session."),
    query_str("course_id", "Only entries about this course."),
    query_str("actor", "Only entries made by this actor (a user id, `device:<id>`, `hub`)."),
    query_str("entity", "Only entries about this kind of thing (`attendance`, `user`, `login`, `device`,"
                        " `threshold_rule`, `webhook`, `ticket_policy`, ...)."),
    query_str("action", "Only entries of this action (`registered`, `revoked`, `login_failed`, ...;"
                        " attendance entries have none)."),
    query_str("since", "Entries at or after this instant.", TIME),
    query_str("until", "Entries before this instant.", TIME),
]

OPENAPI_SCHEMAS: dict = {
    "AuditEntry": obj({
        "id": INT, "at": TIME, "actor": STR, "entity": STR, "action": nullable(STR), "entity_id": STR,
        "session_id": nullable(STR), "student_id": nullable(STR), "course_id": nullable(STR),
        "before": nullable({"type": "object"}), "after": nullable({"type": "object"}), "reason": STR,
        "prev_hash": nullable(STR), "hash": nullable(STR),
        "personal_salt": nullable(STR), "personal_commitment": nullable(STR), "redacted": BOOL,
    }),
}

OPENAPI_PATHS: dict = {
    "/api/v1/audit": {"get": {
        "summary": "Search the audit log, newest first (admin: all; faculty: their courses' entries)",
        "tags": ["audit"], "security": BEARER, "x-roles": ["admin", "faculty"],
        "parameters": [*page_params(), *_FILTERS],
        "responses": {"200": json_response(page_of(ref("AuditEntry")), "A page."), "400": BAD_URL,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN},
    }},
    "/api/v1/audit/export": {"get": {
        "summary": "Export matching entries, oldest first, as CSV or JSON lines (same scope as the search)",
        "tags": ["audit"], "security": BEARER, "x-roles": ["admin", "faculty"],
        "parameters": [query_str("format", "`csv` (default) or `jsonl`.", enum("csv", "jsonl")), *_FILTERS],
        "responses": {
            "200": {"description": "The entries (streamed).", "content": {
                "text/csv; charset=utf-8": {"schema": STR}, "application/x-ndjson": {"schema": STR}}},
            "400": BAD_URL, "401": UNAUTHENTICATED, "403": FORBIDDEN,
        },
    }},
    "/api/v1/audit/verify": {"get": {
        "summary": "Recompute the hash chain; report the first entry that does not verify (admin)",
        "tags": ["audit"], "security": BEARER, "x-roles": ["admin"],
        "responses": {
            "200": json_response(obj({
                "ok": BOOL, "entries": INT, "head_id": nullable(INT), "head_hash": nullable(STR),
                "first_broken_id": nullable(INT),
                "problem": nullable(enum("missing_hash", "broken_link", "altered")),
                "redacted": INT, "archived_entries": INT, "archived_segments": INT,
            }), "The verdict (redacted: entries whose personal data was erased, verified by their"
                " links and chain fields; archived: entries moved to segment files, which the chain"
                " in the database continues)."),
            "401": UNAUTHENTICATED, "403": FORBIDDEN,
        },
    }},
}
