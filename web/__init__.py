"""CampusHub's web layer: a quart-trio app (pages, JSON API, live websockets) served by hypercorn.

Exports :func:`create_app`, :func:`serve` and :class:`WebContext`; the hub's
composition root (hub/app/supervision.py) builds the context and runs :func:`serve`
as a supervised child.
"""
from .app import create_app, serve
from .context import WebContext

__all__ = ["WebContext", "create_app", "serve"]
