"""Building blocks for the OpenAPI document (web/openapi.py assembles it).

Every API route module documents its own operations next to its routes, in
module-level ``OPENAPI_PATHS`` (path → operations) and, optionally,
``OPENAPI_SCHEMAS`` (component name → schema), built with these helpers; it
is then listed in ``web/openapi.py``'s ``DOCUMENTED_MODULES``. Pure data, no I/O.
"""
from __future__ import annotations

from typing import Any

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


def json_request(schema: dict, description: str) -> dict:
    """A required ``application/json`` request body."""
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": schema}}}


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


def page_params(max_page: int, default_page: int) -> list[dict]:
    """``limit`` and ``offset``, as every paginated listing takes them."""
    return [query_int("limit", 1, max_page, default_page), query_int("offset", 0, 10**9, 0)]


def page_of(item: dict) -> dict:
    """The envelope of every paginated listing: ``items``, ``total``, ``limit``, ``offset``."""
    return obj({"items": array(item), "total": INT, "limit": INT, "offset": INT})


UNAUTHENTICATED = error(
    "No valid credentials: `unauthenticated`, `invalid_token`, `token_expired` (or `invalid_refresh_token` "
    "when a browser's refresh cookie is refused).")
FORBIDDEN = error("`forbidden`: the role, or the ownership of the record, does not allow it.")
BAD_URL = error("`invalid_request`: a malformed parameter (or a NUL character in the URL).")
BAD_BODY = error("`invalid_request`: the body is not valid; `field` names the offending field.")
TOO_LARGE = error("`request_entity_too_large`: the body is over 64 KiB.")
NOT_JSON = error("`unsupported_media_type`: the body must be `Content-Type: application/json`.")
CONFLICT = error("`conflict`: the request clashes with the current state (e.g. a duplicate or an overlap).")


def not_found(what: str) -> dict:
    return error(f"`not_found`: no such {what}.")
