"""People: the admin's JSON API for accounts (``/api/v1/users``), which the people page is built on.

Every change commits in hub/db/users.py (one transaction, ending with its
security-audit entry) and only then takes effect live: the web's account
cache forgets the user (``ctx.protection.accounts.invalidate``), so their
very next request sees the new role or state, and a
:class:`~hub.core.bus.LiveAccountChanged` on their ``user_topic`` closes their
open websockets when they lose access. A new account gets a one-time
activation code (hub/db/accounts.py), shown in the response only; the person
chooses their own password with it. See docs/people.md.
"""
from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from hub.core.bus import LiveAccountChanged, user_topic
from hub.db.accounts import issue_code_in
from hub.db.users import (
    AccountChanges,
    AccountConflict,
    AccountError,
    AccountNotFound,
    AccountRecord,
    AccountRefused,
    NewAccount,
    deactivate_user,
    delete_user,
    get_account,
    insert_account,
    list_accounts,
    reactivate_user,
    update_user,
)
from hub.domain.people import (
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    EMAIL_PATTERN,
    PROGRAM_MAX,
    ROLL_NUMBER_MAX,
    ROLL_NUMBER_PATTERN,
    SECTION_MAX,
    USERNAME_MAX,
    USERNAME_PATTERN,
    account_problem,
)
from hub.domain.roles import ROLES, Role

from ..apidoc import (
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    BOOL,
    STR,
    TIME,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    operation,
    path_param,
    query_str,
    ref,
)
from ..apidoc import enum as doc_enum
from ..apidoc import not_found as doc_not_found
from ..auth import current_principal, require
from ..context import WebContext, current_context
from ..errors import WebError, invalid, not_found
from ..feeds import utc_now
from ..live_rosters import rosters_changed
from ..paging import page_json, page_of, page_params, page_request
from ..people import account_json
from ..request import choice_arg, json_body, storable, whole
from .terminal_roster_api import terminal_rosters_changed

bp = Blueprint("users_api", __name__, url_prefix="/api/v1")

#: The longest search text: longer than any username, email or name it could match.
MAX_QUERY = 254
MAX_REASON = 500

Username = Annotated[str, whole(USERNAME_PATTERN, max_length=USERNAME_MAX, description=(
    "3 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit."))]
DisplayName = Annotated[str, Meta(min_length=1, max_length=DISPLAY_NAME_MAX, pattern=r"\S")]
Email = Annotated[str, whole(EMAIL_PATTERN, max_length=EMAIL_MAX)]
RollNumber = Annotated[str, whole(ROLL_NUMBER_PATTERN, max_length=ROLL_NUMBER_MAX)]
Program = Annotated[str, Meta(min_length=1, max_length=PROGRAM_MAX, pattern=r"\S")]
Section = Annotated[str, Meta(min_length=1, max_length=SECTION_MAX, pattern=r"\S")]
Reason = Annotated[str, Meta(max_length=MAX_REASON, description="Why: kept in the security audit log.")]


class NewUser(msgspec.Struct):
    """``POST /users``: the account to create. Students need a roll number; no one else has one."""

    username: Username
    display_name: DisplayName
    role: Role
    email: Email | None = None
    roll_number: RollNumber | None = None
    program: Program | None = None
    section: Section | None = None


class UserEdit(msgspec.Struct):
    """``PATCH /users/{id}``: only the fields present change (null clears email, program, section)."""

    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET
    roll_number: RollNumber | msgspec.UnsetType = msgspec.UNSET
    program: Program | None | msgspec.UnsetType = msgspec.UNSET
    section: Section | None | msgspec.UnsetType = msgspec.UNSET
    role: Annotated[Role, Meta(description=(
        "Not to or from `student`; never your own, nor the last active admin's."))] | msgspec.UnsetType = msgspec.UNSET
    reason: Reason = ""


class AccountStateChange(msgspec.Struct):
    """``POST /users/{id}/deactivate`` and ``/reactivate``: `{}`, or a reason for the audit log."""

    reason: Reason = ""


def _refusal(error: AccountError) -> WebError:
    if isinstance(error, AccountNotFound):
        return not_found(error.message)
    if isinstance(error, AccountConflict):
        return WebError(409, "conflict", error.message, field=error.field)
    if isinstance(error, AccountRefused):
        return WebError(409, "refused", error.message, field=error.field)
    return invalid(error.message, field=error.field)


def _account_changed(ctx: WebContext, account: AccountRecord, *, deleted: bool = False) -> None:
    """After the commit: the user's next request and open websockets see the change."""
    ctx.protection.accounts.invalidate(account.id)
    ctx.bus.publish(user_topic(account.id), LiveAccountChanged(
        user_id=account.id, role=account.role, active=account.active and not deleted, deleted=deleted,
        changed_at=utc_now(ctx).isoformat(),
    ))


@bp.get("/users")
@require("admin")
async def users_list() -> Response:
    paging = page_request()
    q = _query_text("q")
    role = choice_arg("role", ROLES)
    state = choice_arg("state", ("active", "deactivated"))
    items, total = await list_accounts(
        current_context().db, q=q, role=role, active=None if state is None else state == "active",
        limit=paging.limit, offset=paging.offset,
    )
    return jsonify(page_json([account_json(a) for a in items], total, paging))


def _query_text(name: str) -> str | None:
    """A free-text query argument, stripped; None when absent or blank."""
    value = (request.args.get(name) or "").strip()
    if not value:
        return None
    if len(value) > MAX_QUERY:
        raise invalid(f"'{name}' is at most {MAX_QUERY} characters.", field=name)
    if not storable(value):
        raise invalid(f"'{name}' must not contain NUL characters or unpaired surrogates.", field=name)
    return value


@bp.post("/users")
@require("admin")
async def users_create() -> tuple[Response, int]:
    body = await json_body(NewUser)
    account = NewAccount(
        username=body.username, display_name=body.display_name.strip(), role=body.role,
        email=body.email, roll_number=body.roll_number, program=_strip(body.program), section=_strip(body.section),
    )
    problem = account_problem(username=account.username, display_name=account.display_name, role=account.role,
                              email=account.email, roll_number=account.roll_number, program=account.program,
                              section=account.section)
    if problem is not None:
        raise invalid(problem[1], field=problem[0])
    ctx = current_context()
    actor = current_principal().user_id

    async def work(conn: asyncpg.Connection) -> tuple[AccountRecord, Any]:
        made = await insert_account(conn, account, secrets=ctx.db.secrets, actor=actor)
        code = await issue_code_in(conn, user_id=made.id, purpose="activation", actor=actor,
                                   now=utc_now(ctx), audit=False)
        return made, code

    try:
        made, code = await ctx.db.run(work, transaction=True)
    except AccountError as error:
        raise _refusal(error) from None
    return jsonify({"user": account_json(made),
                    "activation": {"code": code.code, "expires_at": code.expires_at}}), 201


def _strip(value: str | None) -> str | None:
    return None if value is None else value.strip()


@bp.get("/users/<user_id>")
@require("admin")
async def users_get(user_id: str) -> Response:
    account = await get_account(current_context().db, user_id)
    if account is None:
        raise not_found("No such user.")
    return jsonify(account_json(account))


@bp.patch("/users/<user_id>")
@require("admin")
async def users_patch(user_id: str) -> Response:
    body = await json_body(UserEdit)
    given: dict[str, Any] = {
        k: (_strip(v) if isinstance(v, str) and k in ("display_name", "program", "section") else v)
        for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET and k != "reason"}
    if not given:
        raise invalid("Nothing to change.")
    ctx = current_context()
    try:
        before = await get_account(ctx.db, user_id)
        after = await update_user(ctx.db, user_id, AccountChanges(**given), actor=current_principal().user_id,
                                  reason=body.reason)
    except AccountError as error:
        raise _refusal(error) from None
    if before is not None and before.role != after.role:
        _account_changed(ctx, after)
    return jsonify(account_json(after))


@bp.delete("/users/<user_id>")
@require("admin")
async def users_delete(user_id: str) -> Response | tuple[str, int]:
    ctx = current_context()
    try:
        before = await get_account(ctx.db, user_id)
        outcome = await delete_user(ctx.db, user_id, actor=current_principal().user_id)
    except AccountError as error:
        raise _refusal(error) from None
    if not outcome.deleted:
        raise WebError(409, "records_kept", outcome.refusal or "The account's records must be kept.")
    if before is not None:
        _account_changed(ctx, before, deleted=True)
        if before.role == "student":  # their PIN and pages leave the terminals
            await terminal_rosters_changed(ctx, issued_by=current_principal().user_id, student_ids=[before.id])
    return "", 204


@bp.post("/users/<user_id>/deactivate")
@require("admin")
async def users_deactivate(user_id: str) -> Response:
    body = await json_body(AccountStateChange)
    ctx = current_context()
    try:
        account = await deactivate_user(ctx.db, user_id, actor=current_principal().user_id, reason=body.reason,
                                        now=utc_now(ctx))
    except AccountError as error:
        raise _refusal(error) from None
    _account_changed(ctx, account)
    if account.role == "student":
        await rosters_changed(ctx, student_ids=[account.id])  # they leave (or rejoin) live rosters at once
        await terminal_rosters_changed(ctx, issued_by=current_principal().user_id, student_ids=[account.id])
    return jsonify(account_json(account))


@bp.post("/users/<user_id>/reactivate")
@require("admin")
async def users_reactivate(user_id: str) -> Response:
    body = await json_body(AccountStateChange)
    ctx = current_context()
    try:
        account = await reactivate_user(ctx.db, user_id, actor=current_principal().user_id, reason=body.reason)
    except AccountError as error:
        raise _refusal(error) from None
    _account_changed(ctx, account)
    if account.role == "student":
        await rosters_changed(ctx, student_ids=[account.id])  # they leave (or rejoin) live rosters at once
        await terminal_rosters_changed(ctx, issued_by=current_principal().user_id, student_ids=[account.id])
    return jsonify(account_json(account))


# --- OpenAPI ---------------------------------------------------------------------------------------

_ADMIN = ("admin",)
_USER_PARAM = path_param("user_id", "The account's id.")
_NOT_FOUND = {"404": doc_not_found("user")}
_REFUSED = error("`refused`: not your own account, nor the last active admin; a student keeps the student "
                 "role. `conflict`: the username, email or roll number is taken (`field` names it).")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Account": obj({
        "id": STR, "username": STR, "display_name": STR, "role": doc_enum(*ROLES), "email": nullable(STR),
        "active": BOOL, "deactivated_at": nullable(TIME), "created_at": TIME, "updated_at": TIME,
        "roll_number": {**nullable(STR), "description": "Students only."},
        "program": nullable(STR), "section": nullable(STR),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/users": {
        "get": {**operation(
            "People, by username; search by username, name, email or roll number (admin)", "users", _ADMIN,
            {"200": json_response(page_of(ref("Account")), "One page."), "400": BAD_URL},
            params=[*page_params(),
                    query_str("q", f"Text found anywhere in the username, name, email or roll number "
                                   f"(case-insensitive, at most {MAX_QUERY} characters)."),
                    query_str("role", "Only this role.", doc_enum(*ROLES)),
                    query_str("state", "Only active or only deactivated accounts.", doc_enum("active", "deactivated"))],
        ), "security": BEARER},
        "post": {**operation(
            "Create an account; the response carries its one-time activation code, shown once (admin)", "users",
            _ADMIN,
            {"201": json_response(obj({"user": ref("Account"), "activation": obj({"code": STR, "expires_at": TIME})}),
                                  "Created."),
             **BODY_ERRORS, "409": _REFUSED},
            body=json_request(NewUser, "The account."),
        ), "security": BEARER},
    },
    "/api/v1/users/{user_id}": {
        "get": {**operation("One account (admin)", "users", _ADMIN,
                            {"200": json_response(ref("Account"), "The account."), **_NOT_FOUND},
                            params=[_USER_PARAM]), "security": BEARER},
        "patch": {**operation(
            "Edit an account's details and role, all or nothing; its next request sees the new role (admin)",
            "users", _ADMIN,
            {"200": json_response(ref("Account"), "The account after the change."), **BODY_ERRORS, **_NOT_FOUND,
             "409": _REFUSED},
            params=[_USER_PARAM], body=json_request(UserEdit, "The fields to change."),
        ), "security": BEARER},
        "delete": {**operation(
            "Delete an account made by mistake; refused when records must be kept (admin)", "users", _ADMIN,
            {"204": {"description": "Deleted."}, **_NOT_FOUND,
             "409": error("`records_kept`: the message says which records, and to deactivate instead; "
                          "`refused`: your own account or the last active admin.")},
            params=[_USER_PARAM],
        ), "security": BEARER},
    },
    **{
        f"/api/v1/users/{{user_id}}/{step}": {"post": {**operation(
            summary, "users", _ADMIN,
            {"200": json_response(ref("Account"), "The account (unchanged if it already was)."), **BODY_ERRORS,
             **_NOT_FOUND, "409": _REFUSED},
            params=[_USER_PARAM], body=json_request(AccountStateChange, "`{}`, or a reason."),
        ), "security": BEARER}}
        for step, summary in (
            ("deactivate", "Deactivate an account: it keeps its records; its tokens and websockets stop at once "
                           "(admin)"),
            ("reactivate", "Let a deactivated account log in again (admin)"),
        )
    },
}
