"""Building blocks for the OpenAPI document (web/openapi.py assembles it).

Every API route module documents its own operations next to its routes, in
module-level ``OPENAPI_PATHS`` (path → operations) and, optionally,
``OPENAPI_SCHEMAS`` (component name → schema), built with these helpers; it
is then listed in ``web/openapi.py``'s ``DOCUMENTED_MODULES``. A request body
is not written out here: :func:`json_request` names the msgspec struct the
route reads it with (web/request.py's ``json_body``), and web/openapi.py
generates its schema. Pure data, no I/O.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

BEARER: list[dict] = [{"bearer": []}]

STR: dict = {"type": "string"}
INT: dict = {"type": "integer"}
NUMBER: dict = {"type": "number"}
BOOL: dict = {"type": "boolean"}
TIME: dict = {"type": "string", "format": "date-time"}
DATE: dict = {"type": "string", "format": "date"}
UUID: dict = {"type": "string", "format": "uuid"}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> dict:
    """A response whose body is the standard ``Error`` object; say which codes in ``description``."""
    return json_response(ref("Error"), description)


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def enum(*values: str) -> dict:
    return {"type": "string", "enum": list(values)}


def obj(properties: dict, required: list[str] | None = None, *, closed: bool = True) -> dict:
    """An object schema; every property is required unless ``required`` says otherwise."""
    return {
        "type": "object", "properties": properties,
        "required": list(properties) if required is None else required, "additionalProperties": not closed,
    }


def json_request(shape: type[msgspec.Struct], description: str) -> dict:
    """A required ``application/json`` request body read with ``json_body(shape)`` (web/request.py).

    The schema is the struct itself, which web/openapi.py replaces with a reference to the
    component it generates from it: the struct that validates the body is the one documented.
    """
    return {"required": True, "description": description + " Unknown fields are ignored.",
            "content": {"application/json": {"schema": shape}}}


def path_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or STR}


def query_int(name: str, low: int, high: int, default: int, description: str = "") -> dict:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False,
                             "schema": {"type": "integer", "minimum": low, "maximum": high, "default": default}}
    if description:
        param["description"] = description
    return param


def query_str(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STR}


UNAUTHENTICATED = error(
    "No valid credentials: `unauthenticated`, `invalid_token`, `token_expired`, `token_revoked` (logged out), "
    "`account_inactive` (the account was deactivated), or `invalid_refresh_token` "
    "when a browser's refresh cookie is refused).")
RATE_LIMITED = error("`rate_limited`: over the caller's request limits (web/protection.py); "
                     "`Retry-After` says when to retry.")
FORBIDDEN = error("`forbidden`: the role, or the ownership of the record, does not allow it.")
BAD_URL = error("`invalid_request`: a malformed parameter (or a NUL character in the URL).")
BAD_BODY = error("`invalid_request`: the body is not valid; `field` names the offending field.")
TOO_LARGE = error("`request_entity_too_large`: the body is over 64 KiB.")
NOT_JSON = error("`unsupported_media_type`: the body must be `Content-Type: application/json`.")
#: The refusals of every operation that reads a body with web/request.py's ``json_body``.
BODY_ERRORS: dict[str, dict] = {"400": BAD_BODY, "413": TOO_LARGE, "415": NOT_JSON}
CONFLICT = error("`conflict`: the request clashes with the current state (e.g. a duplicate or an overlap).")


def not_found(what: str) -> dict:
    return error(f"`not_found`: no such {what}.")


def operation(summary: str, tag: str, roles: Sequence[str], responses: dict, *, params: list | None = None,
              body: dict | None = None) -> dict:
    """One operation of a signed-in caller: ``x-roles``, and the 401/403/429 refusals added to
    ``responses``; with a ``body`` (a :func:`json_request`), the 413/415 ones too, and 400 unless
    ``responses`` words its own (``json_body`` refuses a body of the wrong shape with it)."""
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "x-roles": list(roles),
                          "responses": {**responses, "401": UNAUTHENTICATED, "403": FORBIDDEN,
                                        "429": RATE_LIMITED}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
        op["responses"].update({"413": TOO_LARGE, "415": NOT_JSON})
        op["responses"].setdefault("400", BAD_BODY)
    return op
