"""Websockets: snapshots, forwarded bus messages, resyncs, refusals, expiry, and the supervised actor."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import trio
import trio.testing
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from web_helpers import JWT_SECRET, bearer, page_login

import web.ws
from actors import Supervisor
from hub.core.bus import (
    DEVICES_TOPIC,
    LiveAttendance,
    LiveBus,
    LiveMessage,
    LiveUnread,
    live_device,
    session_topic,
    student_topic,
)
from hub.domain.device_health import DeviceHealth
from web import WebContext, create_app
from web.auth import ACCESS_TTL_S
from web.connection import RESYNC, ConnectionState
from web.ws import BUS_BUFFER, MAILBOX_SIZE, InlineMailbox, _pump


async def recv(ws, timeout: float = 5.0) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.receive())


async def refused(ws) -> int:
    with pytest.raises(WebsocketResponseError) as refusal:
        await recv(ws)
    return refusal.value.response.status_code


async def closed_with(ws) -> int:
    with pytest.raises(WebsocketDisconnectError) as closing:
        await recv(ws)
    return closing.value.args[0]


def attendance(world, student: str, status: str = "present", session: str = "live1") -> LiveAttendance:
    return LiveAttendance(world.sessions[session], world.users[student], status,
                          datetime.now(timezone.utc).isoformat(), "qr")


def sent(message: LiveMessage) -> dict:
    """What the browser receives for a bus message."""
    return json.loads(message.json)


# --- the roster feed ----------------------------------------------------------------

async def test_roster_websocket_sends_snapshot_then_attendance_from_the_bus(client, world, bus):
    await page_login(client, world.username("fac1"))
    live1 = world.sessions["live1"]
    async with client.websocket(f"/ws/sessions/{live1}") as ws:
        snapshot = await recv(ws)
        assert (snapshot["type"], snapshot["feed"], snapshot["reason"]) == ("snapshot", "session", "initial")
        assert snapshot["session"]["session_id"] == live1
        assert {s["student_id"]: s["status"] for s in snapshot["students"]} == {
            world.users["stu1"]: "present", world.users["stu2"]: "not-yet",
        }
        bus.publish(session_topic(world.sessions["live2"]), attendance(world, "stu3", session="live2"))
        message = attendance(world, "stu2", "late")
        bus.publish(session_topic(live1), message)
        assert await recv(ws) == sent(message)  # forwarded unchanged; the other session's message was not


async def test_lagged_subscription_gets_a_fresh_snapshot(client, world, bus):
    await page_login(client, world.username("fac1"))
    live1 = world.sessions["live1"]
    async with client.websocket(f"/ws/sessions/{live1}") as ws:
        await recv(ws)
        # One synchronous burst overflows the subscription's buffer: the bus answers LAGGED.
        for _ in range(BUS_BUFFER + 50):
            bus.publish(session_topic(live1), attendance(world, "stu2", "late"))
        forwarded = 0
        while (message := await recv(ws))["type"] != "snapshot":
            forwarded += 1
        assert message["reason"] == "resync"
        assert forwarded < BUS_BUFFER  # the stale backlog was dropped, not replayed
        assert message["students"]  # a full roster again


async def test_slow_client_overflowing_its_mailbox_gets_a_resync(client, world, bus, monkeypatch):
    mailboxes: list[InlineMailbox] = []

    class RecordingMailbox(InlineMailbox):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            mailboxes.append(self)

    monkeypatch.setattr(web.ws, "InlineMailbox", RecordingMailbox)
    await page_login(client, world.username("fac1"))
    live1 = world.sessions["live1"]
    async with client.websocket(f"/ws/sessions/{live1}") as ws:
        await recv(ws)
        # The client reads nothing: sends block, the actor's mailbox fills and drops its oldest.
        # Publishing one at a time (and letting the pump run) keeps the bus itself from lagging.
        for _ in range(MAILBOX_SIZE * 3):
            bus.publish(session_topic(live1), attendance(world, "stu2", "late"))
            await trio.testing.wait_all_tasks_blocked()
        received = []
        while (message := await recv(ws))["type"] != "snapshot":
            received.append(message)
        assert message["reason"] == "resync"
        assert len(received) < MAILBOX_SIZE * 3
        [mailbox] = mailboxes
        assert mailbox.dropped > 0  # the mailbox overflowed (DROP_OLDEST), not the bus subscription


async def test_client_can_ask_for_a_resync(client, world):
    await page_login(client, world.username("fac1"))
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "resync"}))
        assert (await recv(ws))["reason"] == "resync"


async def test_pump_enqueues_resync_last_when_the_mailbox_evicts():
    bus = LiveBus()
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    state = ConnectionState(send_text)
    mailbox = InlineMailbox(4)
    with bus.subscribe(["t"]) as subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, subscription, mailbox, state)
            for i in range(6):
                bus.publish("t", LiveUnread(i))
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    queued = []
    while mailbox.depth:
        queued.append(mailbox._receive.receive_nowait())
    assert mailbox.dropped >= 2 and state.resync_epoch >= 1
    assert queued[-1] is RESYNC and len(queued) == 4


# --- other feeds ------------------------------------------------------------------------

async def test_devices_websocket(client, world, bus):
    await page_login(client, world.username("ops"))
    async with client.websocket("/ws/devices") as ws:
        snapshot = await recv(ws)
        assert snapshot["feed"] == "devices"
        assert world.device in {d["device_id"] for d in snapshot["devices"]}
        message = live_device(DeviceHealth(world.device, online=False, reason="heartbeat timeout", firmware="1.2.4",
                                           outbox_depth=7), None)
        bus.publish(DEVICES_TOPIC, message)
        assert await recv(ws) == sent(message)


async def test_student_websocket_carries_only_their_own_topic(client, world, bus):
    await page_login(client, world.username("stu1"))
    async with client.websocket("/ws/student") as ws:
        snapshot = await recv(ws)
        assert snapshot["feed"] == "student" and snapshot["student"]["student_id"] == world.users["stu1"]
        bus.publish(student_topic(world.users["stu2"]), attendance(world, "stu2"))
        mine = attendance(world, "stu1")
        bus.publish(student_topic(world.users["stu1"]), mine)
        assert await recv(ws) == sent(mine)


# --- refusals and expiry --------------------------------------------------------------------

async def test_handshake_refusals(client, world):
    live1 = f"/ws/sessions/{world.sessions['live1']}"
    async with client.websocket(live1) as ws:
        assert await refused(ws) == 401
    for key, path, status in [
        ("stu1", live1, 403), ("fac2", live1, 403), ("ops", "/ws/student", 403),
        ("fac1", "/ws/devices", 403), ("admin", f"/ws/sessions/nope_{world.suffix}", 404),
    ]:
        async with client.websocket(path, headers=await bearer(client, world.username(key))) as ws:
            assert await refused(ws) == status, (key, path)


async def test_cross_origin_handshake_is_refused(client, world):
    await page_login(client, world.username("fac1"))
    path = f"/ws/sessions/{world.sessions['live1']}"
    async with client.websocket(path, headers={"Origin": "https://evil.example"}) as ws:
        assert await refused(ws) == 403
    async with client.websocket(path, headers={"Origin": "http://localhost"}) as ws:
        assert (await recv(ws))["type"] == "snapshot"


async def test_handshake_with_expired_cookie_is_401_not_refreshed(client, world, clock):
    await page_login(client, world.username("fac1"))
    clock.advance(ACCESS_TTL_S + 1)
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        assert await refused(ws) == 401
    # The refresh cookie is still good: the page script's /api/v1/me call refreshes the session.
    assert (await client.get("/api/v1/me")).status_code == 200


async def test_websocket_closes_4401_when_its_token_expires(client, world, clock):
    clock.now = float(int(clock.now))  # tokens carry whole seconds
    await page_login(client, world.username("fac1"))
    clock.advance(ACCESS_TTL_S - 0.3)
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        assert (await recv(ws))["type"] == "snapshot"
        assert await closed_with(ws) == 4401


# --- under a real supervisor -------------------------------------------------------------------

async def test_supervised_connection_actor_lifecycle(db, bus, clock, health, world):
    supervisor = Supervisor("connections")
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        ctx = WebContext(db=db, bus=bus, jwt_secret=JWT_SECRET, connections=supervisor,
                         health=health, metrics_text=lambda: "", now=clock)
        client = create_app(ctx).test_client()
        await page_login(client, world.username("fac1"))
        path = f"/ws/sessions/{world.sessions['live1']}"

        async with client.websocket(path) as ws:
            assert (await recv(ws))["reason"] == "initial"
            [child] = supervisor.child_ids()
            assert child.startswith("ws-")
            message = attendance(world, "stu2")
            bus.publish(session_topic(world.sessions["live1"]), message)
            assert await recv(ws) == sent(message)
        with trio.fail_after(3):
            while supervisor.child_ids():  # the disconnect removed the child
                await trio.sleep(0.01)
        assert bus.subscriber_count == 0

        async with client.websocket(path) as ws:
            await recv(ws)
            await supervisor.shutdown()
            assert await closed_with(ws) == 1001
        nursery.cancel_scope.cancel()
