"""The outbound side of one websocket: a :class:`ConnectionActor`.

One actor per websocket, a TEMPORARY child of the hub's ``connections``
supervisor (or hosted inline by web/ws.py when there is none). Its mailbox
holds the bus messages still to be sent to that client; ``handle`` sends them
one at a time, so a slow client slows only its own actor.

Messages it handles:
- :data:`RESYNC`: send a fresh snapshot, unless one already was since the
  latest resync request. Its host tells one first (the initial snapshot),
  then again whenever the client may have missed updates (its mailbox
  overflowed, its bus subscription lagged, or the client asked);
- a bus message (:class:`~hub.core.bus.LiveMessage`): sent to the client as
  its :attr:`~hub.core.bus.LiveMessage.json` (encoded once, shared by every
  connection that forwards it).

It never calls back into its host: it reports the end of the connection
through :class:`ConnectionState` (``finish``), and the websocket task then
stops the actor and closes the socket with the recorded code.

Close codes: 1000 normal, 1001 hub shutting down, 1011 internal error,
4401 access token expired (re-authenticate, then reconnect), 4408 the client
did not accept a message within :data:`SEND_TIMEOUT_S`.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

import trio

from actors import Actor
from hub.core.bus import LiveMessage

from .feeds import Feed
from .serialize import dumps

_log = logging.getLogger("web.connection")

#: How long one send may wait on the client (TCP backpressure) before the connection is dropped.
SEND_TIMEOUT_S = 10.0


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


#: Mailbox message: send a fresh snapshot.
RESYNC = _Resync()


class ConnectionState:
    """What the websocket task and its actor share.

    Concurrency contract: touched only from trio tasks of one run; every
    method is synchronous, so no locking is needed.
    """

    def __init__(self, send_text: Callable[[str], Awaitable[None]]) -> None:
        self.send_text = send_text
        #: Set once the connection must end; see close_code / close_reason.
        self.done = trio.Event()
        self.close_code = 1000
        self.close_reason = ""
        #: Bumped on every resync request; the actor remembers the value its last snapshot covered.
        self.resync_epoch = 0

    def finish(self, code: int, reason: str = "") -> None:
        """End the connection; the first caller's code wins."""
        if not self.done.is_set():
            self.close_code, self.close_reason = code, reason
            self.done.set()

    def request_resync(self) -> None:
        self.resync_epoch += 1


class ConnectionActor(Actor):
    """Sends one client its snapshot, then its bus messages, resyncing when told.

    Concurrency contract: runs in the task its host gives it; ``started`` and
    ``handle`` are never concurrent. Sending may block on the client for up
    to :data:`SEND_TIMEOUT_S`; meanwhile new messages wait in the mailbox
    (bounded, DROP_OLDEST), never in the hub.
    """

    def __init__(self, feed: Feed, state: ConnectionState) -> None:
        self._feed = feed
        self._state = state
        self._synced_epoch = -1

    # No started() work: the first snapshot is the first RESYNC its host tells it,
    # because a supervisor holds its lock while started() runs and every
    # websocket's actor shares one supervisor (connects must not queue behind
    # each other's snapshot queries).

    async def handle(self, message: LiveMessage | _Resync) -> None:
        if isinstance(message, _Resync):
            if self._synced_epoch != self._state.resync_epoch:
                await self._guard(self._snapshot("initial" if self._synced_epoch < 0 else "resync"))
        else:
            await self._guard(self._send(message.json))

    async def stopping(self) -> None:
        # Reached when the supervisor stops us first (hub shutdown); otherwise finish() is a no-op.
        self._state.finish(1001, "hub shutting down")

    async def _guard(self, work: Awaitable[None]) -> None:
        """A failure (e.g. the database is down during a snapshot) ends this connection with 1011.

        The error is re-raised so the supervisor records the crash; the child
        is TEMPORARY, so nothing is restarted and the browser reconnects with
        backoff instead.
        """
        try:
            await work
        except Exception:
            self._state.finish(1011, "internal error")
            raise

    async def _snapshot(self, reason: str) -> None:
        epoch = self._state.resync_epoch  # read first: a request arriving during the query needs another one
        body = await self._feed.snapshot()
        self._synced_epoch = epoch
        # Not a bus message: its body is an API response, so it is encoded as the API encodes.
        await self._send(dumps({"type": "snapshot", "feed": self._feed.name, "reason": reason, **body}))

    async def _send(self, text: str) -> None:
        if self._state.done.is_set():
            return
        with trio.move_on_after(SEND_TIMEOUT_S) as timeout:
            try:
                await self._state.send_text(text)
            except Exception as error:
                # The peer is gone (the ASGI server refuses sends after a disconnect);
                # that is the end of this connection, not a bug of this actor.
                _log.debug("websocket send failed: %r", error)
                self._state.finish(1000, "client gone")
                return
        if timeout.cancelled_caught:
            self._state.finish(4408, "client too slow")
