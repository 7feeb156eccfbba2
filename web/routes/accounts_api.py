"""Accounts API: the live password check, activation with a one-time code, changing one's own password,
an admin's reset, and the CSV import of people (``/api/v1``).

Every new password is judged by hub/domain/password_policy.py against the
person's username, name and email, then hashed with the bounded argon2 pool
(``hub.core.passwords``) outside any transaction, and only then stored by
hub/db/accounts.py. Requests that carry a one-time code instead of a session
(activation, and the live check while activating) are limited per client
address by the login throttle (web/protection.py), like password guesses.
See docs/people.md.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, g, jsonify, request

from hub.core.passwords import hash_password_async, verify_password_async
from hub.db.accounts import MAX_CODE_INPUT, change_password, code_holder, issue_reset, redeem_code
from hub.db.people_import import CreatedAccount, PeopleImportRejected, import_people
from hub.db.users import AccountConflict, AccountError, AccountRecord, get_account, get_user
from hub.domain.enrolment_import import RowError
from hub.domain.password_policy import PasswordVerdict, check_password
from hub.domain.people_import import parse_people_bytes, parse_people_csv

from ..apidoc import (
    BAD_BODY,
    BEARER,
    BODY_ERRORS,
    BOOL,
    FORBIDDEN,
    INT,
    STR,
    TIME,
    UNAUTHENTICATED,
    array,
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
from ..auth import authenticate, client_address, current_principal, reissue_after_password_change, require
from ..context import WebContext, current_context
from ..errors import WebError, invalid, not_found
from ..feeds import utc_now
from ..people import codes_csv
from ..request import choice_arg, flag_arg, json_body
from .auth_api import _tokens_json

bp = Blueprint("accounts_api", __name__, url_prefix="/api/v1")

#: What a password field may hold on the wire; the policy explains anything over its own maximum.
MAX_PASSWORD_INPUT = 1024
IMPORT_PATH = "/api/v1/users/import"

Password = Annotated[str, Meta(max_length=MAX_PASSWORD_INPUT)]
Code = Annotated[str, Meta(min_length=1, max_length=MAX_CODE_INPUT)]


class PasswordCheck(msgspec.Struct, forbid_unknown_fields=True):
    """A password to judge as it is typed: for the logged-in caller, or for the holder of ``code``."""

    password: Password
    code: Code | None = None


class Activation(msgspec.Struct, forbid_unknown_fields=True):
    """An activation or reset code and the new password."""

    code: Code
    password: Password


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    """The caller's current password and the new one."""

    current_password: Password
    new_password: Password


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    """Why the password is reset (kept in the audit log)."""

    reason: Annotated[str, Meta(max_length=500)] = ""


class PeopleCsv(msgspec.Struct):
    """The people import as JSON: the CSV file's text."""

    csv: str


# --- the use cases (the pages' forms call them too) ----------------------------------

def _code_key(address: str) -> str:
    # The throttle's "account" key for code guesses: per address, so one guesser locks out only itself.
    return f"one-time-code@{address}"


async def _holder_of(ctx: WebContext, code: str) -> AccountRecord:
    """The account ``code`` belongs to, counted by the login throttle; 400 ``invalid_code`` otherwise."""
    address = client_address()
    ctx.protection.logins.attempt(_code_key(address), address)
    holder = await code_holder(ctx.db, code, now=utc_now(ctx))
    if holder is None:
        ctx.protection.logins.failed(_code_key(address), address)
        raise WebError(400, "invalid_code", "This code is not valid: it may have expired or been used already. "
                                            "Ask an administrator for a new one.", field="code")
    return holder


def judge(account: AccountRecord, password: str) -> PasswordVerdict:
    return check_password(password, username=account.username, display_name=account.display_name,
                          email=account.email or "")


def _refuse_weak(verdict: PasswordVerdict, field: str) -> None:
    if not verdict.ok:
        raise WebError(400, "weak_password", verdict.reason or "Choose another password.", field=field)


async def activate(ctx: WebContext, code: str, password: str) -> AccountRecord:
    """Set the password of the code's account; the account it was."""
    holder = await _holder_of(ctx, code)
    _refuse_weak(judge(holder, password), "password")
    password_hash = await hash_password_async(password)
    try:
        await redeem_code(ctx.db, code=code, user_id=holder.id, password_hash=password_hash, now=utc_now(ctx))
    except AccountError as refused:
        raise WebError(400, "invalid_code", refused.message, field="code") from None
    address = client_address()
    ctx.protection.logins.succeeded(_code_key(address), address)
    ctx.protection.accounts.invalidate(holder.id)
    return holder


async def change_own_password(ctx: WebContext, user_id: str, current_password: str, new_password: str) -> None:
    """The caller's password change; a wrong current password counts as a failed login."""
    user = await get_user(ctx.db, user_id)
    account = await get_account(ctx.db, user_id)
    if user is None or account is None:
        raise WebError(401, "account_inactive", "Your account is no longer active.")
    address = client_address()
    ctx.protection.logins.attempt(user.username, address)
    if not await verify_password_async(user.password_hash or None, current_password):
        ctx.protection.logins.failed(user.username, address)
        raise invalid("The current password is not correct.", field="current_password")
    ctx.protection.logins.succeeded(user.username, address)  # like a login: the account's failures are forgiven
    if new_password == current_password:
        raise WebError(400, "weak_password", "Choose a password different from the current one.",
                       field="new_password")
    _refuse_weak(judge(account, new_password), "new_password")
    password_hash = await hash_password_async(new_password)
    try:
        await change_password(ctx.db, user_id=user_id, verified_hash=user.password_hash,
                              password_hash=password_hash, now=utc_now(ctx))
    except AccountError as refused:
        raise invalid(refused.message, field=refused.field) from None
    ctx.protection.accounts.invalidate(user_id)


# --- routes --------------------------------------------------------------------------

@bp.post("/password-check")
async def password_check() -> Response:
    """Judge a password as it is typed (debounced by the page); changes nothing."""
    ctx = current_context()
    body = await json_body(PasswordCheck)
    if body.code is not None:
        account = await _holder_of(ctx, body.code)
        ctx.protection.logins.succeeded(_code_key(client_address()), client_address())
    else:
        principal = await authenticate(ctx)
        ctx.protection.api.request(principal.user_id)
        found = await get_account(ctx.db, principal.user_id)
        if found is None:
            raise WebError(401, "account_inactive", "Your account is no longer active.")
        account = found
    return jsonify(judge(account, body.password).as_dict())


@bp.post("/activate")
async def activate_account() -> Response:
    """Choose a password with a one-time activation or reset code (no session needed)."""
    body = await json_body(Activation)
    holder = await activate(current_context(), body.code, body.password)
    return jsonify({"username": holder.username})


@bp.post("/account/password")
@require(during_mfa_enrolment=True)
async def change_password_route() -> Response:
    """Every session of the caller ends with the change; this one goes on with a fresh token pair."""
    body = await json_body(PasswordChange)
    ctx = current_context()
    user_id = current_principal().user_id
    await change_own_password(ctx, user_id, body.current_password, body.new_password)
    pair = await reissue_after_password_change(ctx, user_id)
    answer: dict[str, Any] = {"changed": True}
    if request.headers.get("Authorization") is None:
        g.issued_tokens = pair  # a browser: the app's after-request hook sets the cookies
    else:
        answer["tokens"] = _tokens_json(pair)
    return jsonify(answer)


@bp.post("/users/<user_id>/reset")
@require("admin")
async def reset_password(user_id: str) -> Response:
    """Blank the user's password and hand the admin a reset code, once."""
    body = await json_body(PasswordReset)
    ctx = current_context()
    actor = current_principal().user_id
    if user_id == actor:
        raise WebError(409, "refused", "Change your own password on your account page instead.", field="user_id")
    if len(user_id) > 64:
        raise not_found("No such user.")
    try:
        issued = await issue_reset(ctx.db, user_id=user_id, actor=actor, reason=body.reason, now=utc_now(ctx))
    except AccountError as refused:
        raise not_found(refused.message) from None
    ctx.protection.accounts.invalidate(user_id)
    return jsonify({"user_id": user_id, "code": issued.code, "expires_at": issued.expires_at})


async def _import_parsed() -> Any:
    """The uploaded file, parsed: a ``text/csv`` body (bytes, so a wrong encoding names its line) or JSON."""
    if request.mimetype == "text/csv":
        raw = await request.get_data(as_text=False)
        assert isinstance(raw, bytes)  # as_text=False; quart's stub says str | bytes
        return parse_people_bytes(raw)
    if request.is_json:
        return parse_people_csv((await json_body(PeopleCsv, storable_text=False)).csv)
    raise WebError(415, "unsupported_media_type", "Send text/csv, or application/json with a 'csv' field.")


def _created_json(created: CreatedAccount) -> dict[str, Any]:
    return {
        "line": created.line, "user_id": created.user_id or None, "username": created.username,
        "display_name": created.display_name, "role": created.role, "email": created.email,
        "roll_number": created.roll_number,
        "activation_code": None if created.activation is None else created.activation.code,
        "expires_at": None if created.activation is None else created.activation.expires_at,
    }


def _codes_csv_response(created: tuple[CreatedAccount, ...]) -> Response:
    response = Response(codes_csv(created), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="activation-codes.csv"'
    return response


@bp.post("/users/import")
@require("admin")
async def import_users() -> Response:
    """All or nothing: 422 with every bad row, or the new accounts with their activation codes (shown once)."""
    parsed = await _import_parsed()
    dry_run = flag_arg("dry_run")
    as_csv = choice_arg("format", ("json", "csv")) == "csv"
    ctx = current_context()
    errors: list[RowError] = list(parsed.errors)
    result = None
    try:
        if parsed.rows:
            # With problems in the file, the parsed rows are still checked (a dry run), so one answer lists all.
            result = await import_people(ctx.db, parsed.rows, actor=current_principal().user_id,
                                         dry_run=dry_run or bool(errors), now=utc_now(ctx))
    except PeopleImportRejected as rejected:
        errors += rejected.errors
    except AccountConflict as conflict:  # a concurrent change took a username, email or roll number
        raise WebError(409, "conflict", f"{conflict.message} Nothing was imported; try again.",
                       field=conflict.field) from None
    if errors:
        response = jsonify({
            "error": {"code": "import_rejected", "field": "csv",
                      "message": f"{len(errors)} problem(s) in the file; nothing was imported."},
            "errors": [e.as_dict() for e in sorted(errors, key=lambda e: (e.line, e.field or ""))],
        })
        response.status_code = 422
        return response
    assert result is not None  # a file without rows is an error (the parser)
    if as_csv and not result.dry_run:
        return _codes_csv_response(result.created)
    return jsonify({"dry_run": result.dry_run, "created": [_created_json(c) for c in result.created],
                    "unchanged": result.unchanged})


# --- OpenAPI -------------------------------------------------------------------------

_ADMIN = ["admin"]
_ANYONE: list[str] = []
_VERDICT = ref("PasswordVerdict")
_WEAK = error("`weak_password`: the password breaks the policy (`message` says how); `invalid`, `bad_request`: "
              "a malformed body.")
_CODE_REFUSED = error("`invalid_code`: the code is unknown, used or expired; `weak_password`: the policy's reason.")
_THROTTLED = error("`rate_limited`: too many attempts from this address; retry after `Retry-After` seconds.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "PasswordVerdict": obj({
        "ok": BOOL, "reason": {**nullable(STR), "description": "Why it is refused, for the person."},
        "score": {**INT, "description": "zxcvbn's 0 (guessable) to 4 (very strong)."},
        "suggestions": array(STR),
    }, ["ok", "reason", "score", "suggestions"]),
    "ImportedAccount": obj({
        "line": INT, "user_id": nullable(STR), "username": STR, "display_name": STR, "role": STR,
        "email": nullable(STR), "roll_number": nullable(STR),
        "activation_code": {**nullable(STR), "description": "Shown once; null in a dry run."},
        "expires_at": nullable(TIME),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/password-check": {
        "post": {
            "summary": "Judge a password against the policy as it is typed (logged in, or with a one-time code)",
            "tags": ["accounts"], "security": [], "x-roles": _ANYONE,
            "description": "Without `code`, the caller's session (bearer token or cookies) says whose password it "
                           "is, and 401 answers a caller without one. Changes nothing.",
            "requestBody": json_request(PasswordCheck, "The password, and the code when activating."),
            "responses": {"200": json_response(_VERDICT, "The verdict."), **BODY_ERRORS,
                          "401": UNAUTHENTICATED, "429": _THROTTLED},
        },
    },
    "/api/v1/activate": {
        "post": {
            "summary": "Choose a password with a one-time activation or reset code", "tags": ["accounts"],
            "security": [], "x-roles": _ANYONE,
            "requestBody": json_request(Activation, "The code (case, spaces and dashes ignored) and the password."),
            "responses": {"200": json_response(obj({"username": STR}), "The password is set; log in with it."),
                          **BODY_ERRORS, "400": _CODE_REFUSED, "429": _THROTTLED},
        },
    },
    "/api/v1/account/password": {
        "post": {**operation(
            "Change your own password (the current one is required). Every other session of yours ends;"
            " this one is renewed (cookies, or `tokens` for a Bearer caller).", "accounts",
            ["admin", "faculty", "student", "ops"],
            {"200": json_response(obj({"changed": BOOL, "tokens": ref("Tokens")}, required=["changed"]), "Changed."),
             "400": _WEAK, "429": _THROTTLED},
            body=json_request(PasswordChange, "The current and the new password."),
        ), "security": BEARER},
    },
    "/api/v1/users/{user_id}/reset": {
        "post": {**operation(
            "Reset a user's password: the old one stops working, their sessions end, and a reset code is "
            "returned once (admin)", "accounts", _ADMIN,
            {"200": json_response(obj({"user_id": STR, "code": STR, "expires_at": TIME}),
                                  "The code, shown once; valid 72 hours."),
             **BODY_ERRORS, "404": doc_not_found("user"),
             "409": error("`refused`: your own account (change your password instead).")},
            params=[path_param("user_id", "The account's id.")],
            body=json_request(PasswordReset, "`{}`, or a reason for the audit log."),
        ), "security": BEARER},
    },
    IMPORT_PATH: {
        "post": {
            "summary": "Import people from a student-information system's CSV, all or nothing (admin)",
            "tags": ["accounts"], "security": BEARER, "x-roles": _ADMIN,
            "description": "UTF-8, header row in any order: `role`, `name` (required), `username` (a student's "
                           "defaults to the roll number), `email`, `roll_number`, `program`, `section`. New "
                           "accounts get an activation code, returned once (`format=csv`: as a CSV file). "
                           "Re-importing the same file changes nothing. Up to 2 MiB.",
            "parameters": [query_str("dry_run", "`1`/`true`: validate only.", doc_enum("0", "1", "true", "false")),
                           query_str("format", "`csv`: the new accounts and codes as CSV.",
                                     doc_enum("json", "csv"))],
            "requestBody": {"required": True, "content": {
                "text/csv": {"schema": STR},
                "application/json": {"schema": PeopleCsv},
            }},
            "responses": {
                "200": {"description": "Imported (or, with dry_run, would be).", "content": {
                    "application/json": {"schema": obj({"dry_run": BOOL, "created": array(ref("ImportedAccount")),
                                                        "unchanged": INT})},
                    "text/csv": {"schema": STR},
                }},
                "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN,
                "409": error("`conflict`: another change took a username, email or roll number meanwhile."),
                "413": error("`request_entity_too_large`: the file is over 2 MiB."),
                "415": error("`unsupported_media_type`: send text/csv or application/json."),
                "422": error("`import_rejected`: the file has bad rows; `errors` lists each (line, field, "
                             "reason). Nothing was imported."),
            },
        },
    },
}
