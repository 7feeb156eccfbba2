"""Uploads and downloads of files: per-route request body limits, and the header a stored file is
served with.

The app refuses bodies over 64 KiB, except on the few routes that take an upload (a leave
application's document, assignment work and attachments: base64 in JSON). quart creates the
request body, with its size limit, before any route code runs (and enforces it while the body
streams in), so the limit is chosen here, in the request class, from the method and path.

A file someone uploaded is served as an attachment (:func:`attachment_disposition`), never
rendered as one of our pages.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from quart_trio.wrappers import TrioRequest

from .people import IMPORT_MAX_BYTES as PEOPLE_IMPORT_MAX_BYTES

#: (method, path) → the largest body accepted. 5 MB of document is 6.7 MB in base64, plus the rest.
LARGE_BODIES: dict[tuple[str, str], int] = {
    ("POST", "/api/v1/leave"): 7 * 1024 * 1024 + 64 * 1024,
    # An enrolment CSV (web/routes/academic.py, IMPORT_MAX_BYTES).
    ("POST", "/api/v1/enrolments/import"): 2 * 1024 * 1024,
    # A people CSV.
    ("POST", "/api/v1/users/import"): PEOPLE_IMPORT_MAX_BYTES,
}

#: Upload routes with an id in their path: (method, full-match pattern, the largest body accepted).
#: Assignment work: up to 3 files of 5 MB (6.7 MB each in base64) plus text; an attachment: one file.
LARGE_BODY_PATTERNS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"/api/v1/assignments/\d{1,19}/submissions"), 21 * 1024 * 1024),
    ("POST", re.compile(r"/api/v1/assignments/\d{1,19}/attachments"), 7 * 1024 * 1024 + 64 * 1024),
    # A marks CSV (web/routes/assignments_api.py, IMPORT_MAX_BYTES).
    ("POST", re.compile(r"/api/v1/assignments/\d{1,19}/marks/import"), 2 * 1024 * 1024),
)


def body_limit(method: str, path: str) -> int | None:
    """The route's own body limit, or None for the app's default."""
    limit = LARGE_BODIES.get((method, path))
    if limit is None:
        limit = next((n for m, pattern, n in LARGE_BODY_PATTERNS if m == method and pattern.fullmatch(path)), None)
    return limit


class SizedRequest(TrioRequest):
    """A :class:`TrioRequest` whose body limit comes from :data:`LARGE_BODIES` when listed."""

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        limit = body_limit(method, path)
        if limit is not None:
            kwargs["max_content_length"] = limit
        super().__init__(method, scheme, path, *args, **kwargs)


def attachment_disposition(filename: str) -> str:
    """The ``Content-Disposition`` of a stored file's download, for any file name someone chose: an ASCII
    fallback plus the RFC 5987 UTF-8 form (leave documents, assignment attachments, submitted work)."""
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
