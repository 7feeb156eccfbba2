"""Serving one websocket: its task (inbound side) plus its ConnectionActor (outbound side).

::

    LiveBus ──subscription (256, LAGGED on overflow)──► pump ─┐
    client ──{"type":"resync"}──► reader ───────────────────┼─try_tell─► ConnectionActor mailbox
    token expiry ──► expiry timer ──► finish(4401)            │           (64, DROP_OLDEST)
                                                              │                 │ handle()
                                                              │                 ▼
                                                              └───────── websocket.send (JSON)

The websocket's own task (hypercorn's, running :func:`run_connection`) owns
the bus subscription and three small tasks that never block on the client:

- *pump*: bus → actor with ``try_tell``. ``LAGGED`` from the bus, or an
  eviction from the actor's full mailbox (``ref.dropped`` grew), means this
  client missed updates: it bumps the resync epoch and tells ``RESYNC``,
  which lands last in the mailbox, so the client gets a fresh snapshot after
  whatever stale updates are still queued (updates are idempotent "latest
  state" messages, so replaying stale ones before the snapshot is harmless).
- *reader*: reads client frames (ignored except ``{"type": "resync"}``, at
  most one per second); quart-trio cancels the whole task on disconnect.
- *expiry*: closes the connection (4401) when the access token expires.
- *account*: closes it (4401) at once when the account is deactivated,
  deleted or changes role (``ctx.protection.accounts.invalidate``).

Nothing in the hub ever waits for a client: ``LiveBus.publish`` is
synchronous and drops, the pump only uses ``try_tell``, and only the
actor's ``handle`` (that client's own task) waits on the socket.

The subscription is opened *before* the actor loads its first snapshot (the
first RESYNC told to it), so no update committed in between is lost (at
worst it is applied twice).

Hosting: with ``ctx.connections`` the actor is a TEMPORARY child
``ws-<uuid>`` of that supervisor (the hub's shutdown then closes every
websocket with 1001); without it (unit tests) :class:`InlineMailbox` runs the
same actor in this task's nursery with the same mailbox semantics.
"""
from __future__ import annotations

import json
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Protocol

import trio
from quart import websocket
from quart.globals import websocket_ctx

from actors import ActorStopped, ChildSpec, Overflow, Restart
from hub.core.bus import LAGGED, Subscription

from .auth import Principal
from .connection import RESYNC, ConnectionActor, ConnectionState
from .context import WebContext
from .feeds import Feed

_log = logging.getLogger("web.ws")

MAILBOX_SIZE = 64
BUS_BUFFER = 256
#: How long the supervisor lets a stopping connection finish its current send.
SHUTDOWN_TIMEOUT_S = 2.0
CLIENT_RESYNC_INTERVAL_S = 1.0


class Mailbox(Protocol):
    """The part of ``actors.ActorRef`` the websocket task uses."""

    @property
    def dropped(self) -> int: ...

    def try_tell(self, message: Any) -> bool: ...


class InlineMailbox:
    """A ConnectionActor host for when there is no supervisor: bounded, DROP_OLDEST, one task.

    Same observable semantics as an ``ActorRef`` of a DROP_OLDEST child for
    what the websocket task uses (``try_tell``, ``dropped``).
    """

    def __init__(self, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Any](capacity)
        self.capacity = capacity
        self.dropped = 0
        self._running = True

    @property
    def depth(self) -> int:
        return self._receive.statistics().current_buffer_used

    def try_tell(self, message: Any) -> bool:
        if not self._running:
            return False
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self._receive.receive_nowait()  # full, so nobody is waiting to receive: evict the oldest
            self.dropped += 1
            self._send.send_nowait(message)
        return True

    async def run(self, actor: ConnectionActor) -> None:
        try:
            async for message in self._receive:
                await actor.handle(message)
        except Exception:
            _log.exception("connection actor crashed")  # it has already finished the connection (1011)
        finally:
            self._running = False


def _resync(state: ConnectionState, mailbox: Mailbox) -> None:
    state.request_resync()
    if not mailbox.try_tell(RESYNC):
        state.finish(1011, "connection actor gone")


async def _pump(subscription: Subscription, mailbox: Mailbox, state: ConnectionState) -> None:
    async for item in subscription:
        if item is LAGGED:
            _resync(state, mailbox)
            continue
        dropped = mailbox.dropped
        if not mailbox.try_tell(item):  # only when the actor is gone for good
            state.finish(1011, "connection actor gone")
            return
        if mailbox.dropped != dropped:
            _resync(state, mailbox)


async def _read_client(mailbox: Mailbox, state: ConnectionState) -> None:
    last_request = -CLIENT_RESYNC_INTERVAL_S
    while True:
        data = await websocket.receive()
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            continue
        if isinstance(message, dict) and message.get("type") == "resync":
            if trio.current_time() - last_request >= CLIENT_RESYNC_INTERVAL_S:
                last_request = trio.current_time()
                _resync(state, mailbox)


async def _watch_account(ctx: WebContext, principal: Principal, state: ConnectionState) -> None:
    """Close (4401) as soon as the account is deactivated, deleted, changes role or its password.

    Woken by ``ctx.protection.accounts.invalidate(user_id)``, which every account
    change calls after its commit; the client re-authenticates and reconnects
    (or is sent to the login page).
    """
    accounts = ctx.protection.accounts
    while True:
        await accounts.changed(principal.user_id)
        standing = await accounts.standing(ctx.db, principal.user_id)
        if not standing.active or standing.role != principal.role or not standing.admits(principal.issued_at):
            state.finish(4401, "account changed")
            return


async def _expire(ctx: WebContext, principal: Principal, state: ConnectionState) -> None:
    await trio.sleep(max(0.0, principal.expires_at - ctx.now()))
    state.finish(4401, "access token expired")


@asynccontextmanager
async def _hosted(ctx: WebContext, feed: Feed, state: ConnectionState) -> AsyncIterator[Mailbox | None]:
    """Start the connection's actor; yields its mailbox (None if the hub is shutting down); stops it on exit."""
    if ctx.connections is None:
        mailbox = InlineMailbox(MAILBOX_SIZE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mailbox.run, ConnectionActor(feed, state))
            try:
                yield mailbox
            finally:
                nursery.cancel_scope.cancel()
        return

    supervisor = ctx.connections
    child_id = f"ws-{uuid.uuid4().hex}"
    try:
        ref = await supervisor.start_child(ChildSpec(
            id=child_id,
            start=lambda: ConnectionActor(feed, state),
            restart=Restart.TEMPORARY,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            mailbox_size=MAILBOX_SIZE,
            overflow=Overflow.DROP_OLDEST,
        ))
    except ActorStopped:  # the hub is shutting down
        state.finish(1001, "hub shutting down")
        yield None
        return
    try:
        yield ref  # type: ignore[misc]
    finally:
        # Shielded so that a disconnect (quart-trio cancels this task) still
        # removes the child; stop_child is a no-op if it has already ended.
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT_S + 1.0):
            await supervisor.stop_child(child_id)


async def run_connection(ctx: WebContext, feed: Feed, principal: Principal) -> None:
    """Serve the current (authorised) websocket until the client leaves, the token expires or the hub stops.

    Call from a websocket view after authorisation: it accepts the handshake.
    Returns after closing the socket with the connection's close code.
    """
    ws = websocket_ctx.websocket  # the object, not the proxy: the actor sends from its own task
    await ws.accept()
    state = ConnectionState(ws.send)
    with ctx.bus.subscribe(feed.topics, capacity=BUS_BUFFER) as subscription:
        async with _hosted(ctx, feed, state) as mailbox:
            if mailbox is None:
                state.finish(1011, "connection actor did not start")
            else:
                _resync(state, mailbox)  # the initial snapshot, queued ahead of any bus message
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, subscription, mailbox, state)
                    nursery.start_soon(_read_client, mailbox, state)
                    nursery.start_soon(_expire, ctx, principal, state)
                    nursery.start_soon(_watch_account, ctx, principal, state)
                    await state.done.wait()
                    nursery.cancel_scope.cancel()
    await ws.close(state.close_code, state.close_reason)
