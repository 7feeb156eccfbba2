"""JSON for the API and the websockets: datetimes as ISO 8601, UUIDs as strings.

(Quart's default provider writes datetimes as HTTP dates; the bus messages
the hub publishes already carry ISO strings, so everything the browser
receives uses one format.)
"""
from __future__ import annotations

import json
import uuid
from dataclasses import fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from flask.json.provider import DefaultJSONProvider

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def record_json(record: DataclassInstance) -> dict[str, Any]:
    """A record (a frozen dataclass from hub/db) whose JSON is its fields, by their names, as they are
    (one level: :func:`json_default` writes the values). For records with a shape of their own, the
    presenters are in web/console.py, web/feeds.py and the route modules."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False)


class IsoJSONProvider(DefaultJSONProvider):
    default = staticmethod(json_default)
    sort_keys = False
