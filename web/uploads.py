"""Per-route request body limits: the app refuses bodies over 64 KiB, except on the few
routes that take an upload (a leave application's document, base64 in JSON).

quart creates the request body, with its size limit, before any route code
runs (and enforces it while the body streams in), so the limit is chosen
here, in the request class, from the method and path.
"""
from __future__ import annotations

from typing import Any

from quart_trio.wrappers import TrioRequest

#: (method, path) → the largest body accepted. 5 MB of document is 6.7 MB in base64, plus the rest.
LARGE_BODIES: dict[tuple[str, str], int] = {
    ("POST", "/api/v1/leave"): 7 * 1024 * 1024 + 64 * 1024,
    # An enrolment CSV (web/routes/academic.py, IMPORT_MAX_BYTES).
    ("POST", "/api/v1/enrolments/import"): 2 * 1024 * 1024,
    # A people CSV (web/routes/accounts_api.py, IMPORT_MAX_BYTES).
    ("POST", "/api/v1/users/import"): 2 * 1024 * 1024,
}


class SizedRequest(TrioRequest):
    """A :class:`TrioRequest` whose body limit comes from :data:`LARGE_BODIES` when listed."""

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        limit = LARGE_BODIES.get((method, path))
        if limit is not None:
            kwargs["max_content_length"] = limit
        super().__init__(method, scheme, path, *args, **kwargs)
