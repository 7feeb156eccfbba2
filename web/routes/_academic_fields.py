"""Typed fields of the academic API's JSON bodies and query strings, each refused with a 400 naming it.

Shared by web/routes/academic.py and web/routes/sessions_api.py. Pure
helpers over already-parsed values (bodies come from ``api._json_body``).
"""
from __future__ import annotations

import functools
from datetime import date, datetime, time
from typing import Any, Awaitable, Callable, TypeVar

from quart import request

from hub.db.academic import ID_RE, AcademicError, new_id

from ..errors import WebError, invalid

T = TypeVar("T")
MAX_TEXT = 200


def translated(view: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn the db layer's :class:`AcademicError` refusals into the API's JSON errors."""

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await view(*args, **kwargs)
        except AcademicError as exc:
            raise WebError(exc.status, exc.code, exc.message, exc.field) from None

    return wrapper


def text(body: dict, name: str, *, max_length: int = MAX_TEXT, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise invalid(f"'{name}' is required.", field=name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
        raise invalid(f"'{name}' must be a non-empty string of at most {max_length} characters.", field=name)
    return value.strip()


def optional_text(body: dict, name: str, *, max_length: int = MAX_TEXT) -> str | None:
    return None if body.get(name) is None else text(body, name, max_length=max_length)


def ident(body: dict, name: str, *, prefix: str | None = None) -> str:
    """An id: given (letters, digits, ``._-``, at most 64), or generated with ``prefix`` when absent."""
    value = body.get(name)
    if value is None and prefix is not None:
        return new_id(prefix)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise invalid(f"'{name}' must be an id: letters, digits, '.', '_' or '-', at most 64.", field=name)
    return value


def optional_ident(body: dict, name: str) -> str | None:
    return None if body.get(name) is None else ident(body, name)


def integer(body: dict, name: str, low: int, high: int, *, default: int | None = None,
            optional: bool = False) -> int | None:
    value = body.get(name, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"'{name}' must be an integer from {low} to {high}.", field=name)
    return value


def number(body: dict, name: str, low: float, high: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise invalid(f"'{name}' must be a number from {low} to {high}.", field=name)
    return float(value)


def choice(body: dict, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise invalid(f"'{name}' must be one of: {', '.join(choices)}.", field=name)
    return value


def _day(value: Any, name: str) -> date:
    try:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise invalid(f"'{name}' must be a date, YYYY-MM-DD.", field=name)


def day(body: dict, name: str, *, optional: bool = False) -> date | None:
    value = body.get(name)
    if value is None and optional:
        return None
    return _day(value, name)


def clock_time(body: dict, name: str) -> time:
    value = body.get(name)
    try:
        if isinstance(value, str) and len(value) in (5, 8):
            parsed = time.fromisoformat(value)
            return parsed.replace(second=0) if len(value) == 5 else parsed
    except ValueError:
        pass
    raise invalid(f"'{name}' must be a time of day, HH:MM.", field=name)


def _instant(value: Any, name: str) -> datetime:
    try:
        if isinstance(value, str) and len(value) <= 40:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None and 1 <= parsed.year <= 9998:
                return parsed
    except ValueError:
        pass
    raise invalid(f"'{name}' must be an ISO 8601 date-time with a timezone offset.", field=name)


def instant(body: dict, name: str) -> datetime:
    return _instant(body.get(name), name)


def string_list(body: dict, name: str, *, max_items: int, max_length: int = MAX_TEXT) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or len(value) > max_items or not all(
            isinstance(v, str) and len(v) <= max_length and "\x00" not in v for v in value):
        raise invalid(f"'{name}' must be a list of at most {max_items} strings of at most {max_length} characters.",
                      field=name)
    return value


# --- query string ----------------------------------------------------------------

def arg_id(name: str) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > 64:
        raise invalid(f"'{name}' is too long.", field=name)
    return value


def arg_day(name: str) -> date | None:
    value = request.args.get(name)
    return None if value is None else _day(value, name)


def arg_instant(name: str) -> datetime | None:
    value = request.args.get(name)
    return None if value is None else _instant(value, name)


def arg_choice(name: str, choices: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    if value not in choices:
        raise invalid(f"'{name}' must be one of: {', '.join(choices)}.", field=name)
    return value


def arg_flag(name: str) -> bool:
    value = request.args.get(name, "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise invalid(f"'{name}' must be 1/0 or true/false.", field=name)
    return value in ("1", "true")
