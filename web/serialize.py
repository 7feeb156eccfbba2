"""JSON for the API and the websockets: datetimes as ISO 8601, UUIDs as strings.

(Quart's default provider writes datetimes as HTTP dates; the bus messages
the hub publishes already carry ISO strings, so everything the browser
receives uses one format.)
"""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from flask.json.provider import DefaultJSONProvider


def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False)


class IsoJSONProvider(DefaultJSONProvider):
    default = staticmethod(json_default)  # type: ignore[assignment]
    sort_keys = False
