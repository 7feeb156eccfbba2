"""Everything the web app needs from the hub, handed in by the composition root (hub/app.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from hub.bus import LiveBus
from hub.db import Database

if TYPE_CHECKING:
    import actors


@dataclass
class WebContext:
    """The web app's view of the hub.

    Concurrency contract: shared by every request and websocket task of one
    trio run; all fields are safe to use concurrently (``db`` and ``bus`` by
    their own contracts, the callables must not block).
    """

    db: Database
    bus: LiveBus
    #: HS256 key of the access tokens; at least 32 random bytes.
    jwt_secret: bytes
    #: Dynamic supervisor hosting one temporary ConnectionActor per websocket;
    #: ``None`` runs the same actor inline in the websocket's task (unit tests).
    connections: "actors.Supervisor | None"
    #: Body of GET /healthz; ``{"status": "ok", ...}`` when healthy.
    health: Callable[[], Awaitable[dict]]
    #: Body of GET /metrics in the Prometheus text format.
    metrics_text: Callable[[], str]
    #: Wall clock (unix seconds) for token lifetimes, QR windows and "today".
    now: Callable[[], float] = time.time


def current_context() -> WebContext:
    """The :class:`WebContext` of the app serving the current request or websocket."""
    from quart import current_app

    return current_app.extensions["campushub"]
