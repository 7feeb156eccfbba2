"""CampusHub's web layer: a quart-trio app (pages, JSON API, live websockets) served by hypercorn.

Exports :func:`create_app`, :func:`serve` and :class:`WebContext`; the hub's
composition root (hub/app/supervision.py) builds the context and runs :func:`serve`
as a supervised child.

They are loaded on first use (PEP 562), not when the package is: importing any
``web.<module>`` runs this file first, and the app (quart, hypercorn, every
route and the OpenAPI document: over a second) must not come with a small
module such as web/people.py, which the ``campushub users`` CLI imports.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app, serve
    from .context import WebContext

__all__ = ["WebContext", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    if name == "WebContext":
        from .context import WebContext

        return WebContext
    raise AttributeError(f"module 'web' has no attribute {name!r}")
