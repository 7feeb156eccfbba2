"""Reading requests: a JSON body into a typed struct, and typed query arguments.

Every API route reads its body with :func:`json_body`, naming a msgspec
:class:`msgspec.Struct` that declares the body once: the same struct
validates the request (types, ``msgspec.Meta`` lengths, ranges and patterns)
and is the ``requestBody`` schema of the OpenAPI document (a route module
names it in its ``OPENAPI_PATHS`` with :func:`web.apidoc.json_request`;
web/openapi.py generates the schema). Unknown fields are ignored.

Every refusal is a :class:`~web.errors.WebError` with the API's shapes:

- 415 ``unsupported_media_type``: the body is not ``application/json`` (part
  of the CSRF defence, see web/auth.py);
- 413 ``request_entity_too_large``: over the app's body limit (web/app.py,
  raised by quart before a route reads the body);
- 400 ``invalid_request``: not a JSON object, a string holding NUL or an
  unpaired surrogate anywhere (PostgreSQL text cannot store either), or a
  field the struct refuses; ``field`` is the offending field's path
  (``reason``, ``marks[0].status``), as the domain's own refusals name it.

Query arguments: :func:`int_arg`, :func:`text_arg`, :func:`day_arg`,
:func:`instant_arg`, :func:`choice_arg` and :func:`flag_arg`, each refusing a
bad value with a 400 naming it. All of these read the current quart request,
so call them only inside a request. A numeric id in the URL path:
:func:`path_id` (404 when it cannot be one).
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from typing import Annotated, Any, Sequence, TypeVar

import msgspec
import msgspec.inspect as mi
from msgspec import Meta
from quart import request

from hub.db.academic import ID_RE
from hub.domain.timetable import WEEKDAYS

from .errors import WebError, invalid, not_found

S = TypeVar("S", bound=msgspec.Struct)

#: Longest free text a body field takes unless its struct says otherwise.
MAX_TEXT = 200


def whole(pattern: str, **meta: Any) -> Meta:
    """The constraint of a string the whole of which matches ``pattern``.

    msgspec's (and JSON Schema's) ``pattern`` is a search; ``$`` would also match before a final
    newline in Python, hence the ``(?!\\n)``, which means the same in ECMA-262 (the document's regexes).
    """
    return Meta(pattern=f"^(?:{pattern})$(?!\n)", **meta)


#: A caller-chosen id: letters, digits, ``._-``, at most 64 (hub/db/academic.py's ID_RE, without a final newline).
Id = Annotated[str, whole(ID_RE.pattern.removeprefix("^").removesuffix("$"), max_length=64,
                          description="An id: letters, digits, '.', '_' or '-', at most 64.")]
#: Required text: not blank, at most :data:`MAX_TEXT` characters (routes strip it).
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT, pattern=r"\S")]
#: A non-empty string (a token, a password): no other rule.
NonEmpty = Annotated[str, Meta(min_length=1)]


class ClockTime(time):
    """A time of day, ``HH:MM`` (or ``HH:MM:SS``), in a request body."""


class Instant(datetime):
    """An ISO 8601 date-time with a timezone offset (years 1 to 9998), in a request body."""


class Weekday(int):
    """A day of the week in a request body: 0 (Monday) to 6, or its English name in any case."""


class EmptyBody(msgspec.Struct):
    """The body of a POST that takes no fields: any JSON object (``{}``), as every state-changing call sends."""


def _decode_custom(kind: type, value: Any) -> Any:
    """msgspec's ``dec_hook``: the body types msgspec's own parsers are stricter about than the API."""
    if kind is ClockTime:
        if isinstance(value, str) and len(value) in (5, 8):
            try:
                parsed = time.fromisoformat(value)
                return ClockTime(parsed.hour, parsed.minute, parsed.second if len(value) == 8 else 0)
            except ValueError:
                pass
        raise ValueError("must be a time of day, HH:MM")
    if kind is Instant:
        if isinstance(value, str) and len(value) <= 40:
            try:
                moment: datetime | None = datetime.fromisoformat(value)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None and 1 <= moment.year <= 9998:
                return Instant(moment.year, moment.month, moment.day, moment.hour, moment.minute,
                               moment.second, moment.microsecond, moment.tzinfo)
        raise ValueError("must be an ISO 8601 date-time with a timezone offset")
    if kind is Weekday:
        if isinstance(value, str) and value.lower() in WEEKDAYS:
            return Weekday(WEEKDAYS.index(value.lower()))
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
            return Weekday(value)
        raise ValueError("must be an integer from 0 (Monday) to 6, or a weekday's name")
    raise NotImplementedError(kind)


def schema_hook(kind: type) -> dict[str, Any]:
    """The JSON schema of the custom body types (web/openapi.py passes it to msgspec)."""
    if kind is ClockTime:
        return {"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2})?$", "description": "HH:MM"}
    if kind is Instant:
        return {"type": "string", "format": "date-time", "description": "With a timezone offset."}
    if kind is Weekday:
        return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 6}, {"type": "string", "enum": list(WEEKDAYS)}],
                "description": "0 = Monday."}
    raise NotImplementedError(kind)


async def json_body(shape: type[S], *, storable_text: bool = True) -> S:
    """The request's JSON object, validated into ``shape`` (see the module docstring for the refusals).

    ``storable_text=False`` lets NUL and unpaired surrogates through, for a route that refuses them
    itself with a better answer (the enrolment import names the CSV line they are on).
    """
    body = await _json_object(storable_text)
    try:
        return msgspec.convert(body, shape, dec_hook=_decode_custom)
    except msgspec.ValidationError as error:
        field, message = _explain(str(error), shape)
        raise invalid(message, field=field) from None


async def _json_object(storable_text: bool = True) -> dict[str, Any]:
    if not request.is_json:
        raise WebError(415, "unsupported_media_type", "Send a JSON body (Content-Type: application/json).")
    try:
        # Not request.get_json(silent=True): it lets a body that is not UTF-8
        # (UnicodeDecodeError) or nests too deep (RecursionError) escape as a 500.
        body = json.loads(await request.get_data())
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    for name, value in body.items() if storable_text else ():
        if not storable(name) or not storable(value):
            raise invalid(f"'{name}' must not contain NUL characters or unpaired surrogates.",
                          field=name if storable(name) else None)
    return body


def present_fields(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body names (those not left ``msgspec.UNSET``), by name."""
    return {name: value for name in body.__struct_fields__
            if (value := getattr(body, name)) is not msgspec.UNSET}


def storable(value: object) -> bool:
    """True if every string in ``value`` (a parsed JSON value) is text PostgreSQL can hold.

    JSON may spell NUL (``\\u0000``) and unpaired surrogates (``\\ud800``); neither fits in a
    ``text`` or ``jsonb`` column, so any route storing them failed in its query (a 500).
    Refused here once for every route. Iterative: nesting is bounded only by the body size.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


_MISSING = re.compile(r"^Object missing required field `([^`]*)`(?: - at `\$(.*)`)?$")
_AT = re.compile(r"^(.*) - at (?:`key` in )?`\$(.*)`$", re.DOTALL)
_ONE_OF = re.compile(r"^Expected `str` matching regex '\^\(\?:([\w|-]*)\)\$\(\?!\\n\)'$")


def _explain(error: str, shape: type[msgspec.Struct]) -> tuple[str | None, str]:
    """``(field, message)`` of a msgspec validation error; ``field`` is the offending field's path in the
    body, as the domain's own refusals name it: ``reason``, ``marks[0].status``, ``document.filename``."""
    missing = _MISSING.match(error)
    if missing:
        name, path = missing.group(1), (missing.group(2) or "").lstrip(".")
        field = f"{path}.{name}" if path else name
        expected = None if path else _describe(shape, name)
        return field, f"'{field}' is required ({expected})." if expected else f"'{field}' is required."
    located = _AT.match(error)
    if located and located.group(2).startswith("."):
        # msgspec spells "some entry of this object" as "[...]": the object is the field.
        field, detail = located.group(2)[1:].removesuffix("[...]"), located.group(1)
        choices = _ONE_OF.match(detail)
        if choices:  # a one_of() field: name the choices, not the regex
            return field, f"'{field}' must be one of: {', '.join(choices.group(1).split('|'))}."
        return field, f"'{field}': {detail}."
    return None, f"The body is not valid: {error}."


def _describe(shape: type[msgspec.Struct], name: str) -> str | None:
    """What the top-level field ``name`` of ``shape`` takes, in words (for a missing field's message)."""
    info = mi.type_info(shape)
    assert isinstance(info, mi.StructType)
    for field in info.fields:
        if field.encode_name == name:
            kind = field.type
            while isinstance(kind, mi.Metadata):
                kind = kind.type
            if isinstance(kind, mi.StrType):
                return "a non-empty string" if (kind.min_length or 0) >= 1 else "a string"
            if isinstance(kind, mi.CustomType):
                return {ClockTime: "a time of day, HH:MM", Instant: "a date-time with a timezone offset"}.get(kind.cls)
            return {mi.IntType: "an integer", mi.FloatType: "a number", mi.BoolType: "true or false",
                    mi.DateType: "a date, YYYY-MM-DD", mi.ListType: "a list",
                    mi.StructType: "an object"}.get(type(kind))
    return None


def one_of(values: Sequence[str]) -> Meta:
    """The constraint of a string field that must be one of ``values`` (declared where they are)."""
    return whole("|".join(re.escape(v) for v in values), extra_json_schema={"enum": list(values)})


# --- query arguments ------------------------------------------------------------------------

def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query argument from ``low`` to ``high``; ``default`` when absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"'{name}' must be an integer.", field=name) from None
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low} and {high}.", field=name)
    return value


def text_arg(name: str, max_length: int = 64) -> str | None:
    """An optional text filter (an id, by default: at most 64 characters); ``None`` when absent or empty."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise invalid(f"'{name}' is too long.", field=name)
    return value


def _day(value: str, name: str) -> date:
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise invalid(f"'{name}' must be a date, YYYY-MM-DD.", field=name)


def day_arg(name: str) -> date | None:
    """An optional date, ``YYYY-MM-DD``."""
    value = request.args.get(name)
    return None if value is None else _day(value, name)


def instant_arg(name: str) -> datetime | None:
    """An optional ISO 8601 date-time with a timezone offset; ``None`` when absent or empty."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        return _decode_custom(Instant, value)
    except ValueError:
        raise invalid(f"'{name}' must be an ISO 8601 date-time with a timezone offset.", field=name) from None


def choice_arg(name: str, choices: Sequence[str]) -> str | None:
    """An optional argument that must be one of ``choices``; ``None`` when absent or empty."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise invalid(f"'{name}' must be one of: {', '.join(choices)}.", field=name)
    return value


def flag_arg(name: str) -> bool:
    """A boolean argument: ``1``/``true`` or ``0``/``false`` (the default)."""
    value = request.args.get(name, "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise invalid(f"'{name}' must be 1/0 or true/false.", field=name)
    return value in ("1", "true")


# --- path arguments ------------------------------------------------------------------------

def path_id(raw: str, what: str) -> int:
    """A numeric record id from the URL path: 404 ``No such {what}`` for anything that cannot be one
    (rather than 400: an id that cannot exist is a record that does not exist)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # isdigit() alone takes "²"
        raise not_found(f"No such {what}.")
    return int(raw)
