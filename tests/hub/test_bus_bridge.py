"""The live bus across workers (hub/core/bus_bridge.py): two buses, two bridges, one real broker.

The wire format is checked without a broker (every message kind round-trips); the bridges run
on the run's broker (``mqtt_server_url``) with a topic prefix and client ids of each test's own.
The broker's ACL for the live bus is checked on a private Mosquitto with the generated files.
"""
from __future__ import annotations

import inspect as pyinspect
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest
import trio
import trio.testing
from support.hub_fixtures import link_client
from support.private_mosquitto import HUB_LOGIN, BrokerLogin, mosquitto_available, start_private_mosquitto

import hub.core.bus as bus_module
from hub.adapters.mosquitto_auth import render_acl_file
from hub.core.bus import (
    ATTENDANCE_TOPIC,
    DEVICES_TOPIC,
    LAGGED,
    LiveAttendance,
    LiveBus,
    LiveMessage,
    LiveNotification,
    LiveUnread,
    Subscription,
    session_topic,
    user_topic,
)
from hub.core.bus_bridge import LIVE_MESSAGE_TYPES, LiveBusBridge, WireLive, decode_live, encode_live
from hub.core.config import MQTT_MAX_PACKET_SIZE, MqttUrl
from hub.db.device_registry import MqttAccountRow
from hub.mqtt import MqttError, TrioMqttClient
from schemas import Topics

# --------------------------------------------------------------------------- the wire format, no broker


def _sample(t: msgspec.inspect.Type, n: int) -> Any:
    """A value of type ``t`` (distinct per ``n``) that survives MessagePack unchanged."""
    mi = msgspec.inspect
    if isinstance(t, mi.StrType):
        return f"text-{n}\n\u2028é"
    if isinstance(t, mi.BoolType):
        return n % 2 == 0
    if isinstance(t, mi.IntType):
        return 1000 + n
    if isinstance(t, mi.FloatType):
        return n + 0.25
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.UnionType):
        return _sample(next(x for x in t.types if not isinstance(x, mi.NoneType)), n)
    if isinstance(t, mi.VarTupleType):
        return (_sample(t.item_type, n), _sample(t.item_type, n + 1))
    if isinstance(t, mi.TupleType):
        return tuple(_sample(item, n + i) for i, item in enumerate(t.item_types))
    if isinstance(t, mi.DictType):
        return {"name": f"value-{n}", "count": n, "nested": {"ok": True}, "missing": None}
    if isinstance(t, mi.AnyType):
        return f"any-{n}"
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: _sample(f.type, n + i) for i, f in enumerate(t.fields)})
    raise AssertionError(f"no sample for {t!r}: teach _sample this type")


def _message(cls: type[LiveMessage], n: int = 0) -> LiveMessage:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return cls(**{f.name: _sample(f.type, n + i) for i, f in enumerate(info.fields)})


def test_the_union_covers_every_live_message_declared_on_the_bus() -> None:
    declared = {obj for _, obj in pyinspect.getmembers(bus_module, pyinspect.isclass)
                if issubclass(obj, LiveMessage) and obj is not LiveMessage}
    assert declared and set(LIVE_MESSAGE_TYPES) == declared
    assert len(LIVE_MESSAGE_TYPES) == len(declared)  # each once


@pytest.mark.parametrize("cls", LIVE_MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_every_live_message_round_trips_through_the_wire_format(cls: type[LiveMessage]) -> None:
    message = _message(cls, 7)
    wire = WireLive("worker-1", 2**62 + 3, 41, "session:s-1", message)
    [decoded] = decode_live(encode_live(wire))
    assert decoded == wire
    assert type(decoded.message) is cls
    assert decoded.message.json == message.json  # the browser's text is the same on every worker


def test_what_is_not_a_live_message_does_not_decode() -> None:
    good = encode_live(WireLive("w", 1, 1, DEVICES_TOPIC, LiveUnread(3)))
    assert [wire.message for wire in decode_live(good)] == [LiveUnread(3)]
    for payload in (b"", b"\xc1", msgspec.msgpack.encode(["w", 1, [[1, "t"]]]),
                    msgspec.msgpack.encode(["w", 1, 1, "t", {"type": "unread", "unread": 1}]),  # no batch
                    msgspec.msgpack.encode(["w", 1, [[1, "t", {"type": "no-such-kind"}]]]),
                    msgspec.msgpack.encode(["w", 1, [[1, "t", {"type": "unread", "unread": "many"}]]]),
                    msgspec.msgpack.encode(["w", "one", [[1, "t", {"type": "unread", "unread": 1}]]])):
        with pytest.raises(msgspec.DecodeError):
            decode_live(payload)


def test_one_payload_carries_several_messages_of_one_origin_in_order() -> None:
    wires = [WireLive("w", 5, seq, user_topic("u"), LiveUnread(seq)) for seq in (3, 4, 6)]
    assert decode_live(encode_live(*wires)) == wires
    with pytest.raises(ValueError):
        encode_live()
    with pytest.raises(ValueError):
        encode_live(wires[0], WireLive("other", 5, 7, user_topic("u"), LiveUnread(7)))


def test_the_live_topic_is_no_device_topic_and_only_the_hub_account_has_it() -> None:
    topics = Topics("campus")
    assert topics.live_bus == "campus/v1/hub/live"
    assert topics.parse(topics.live_bus) is None
    acl = render_acl_file([MqttAccountRow("dev-1", "dev-1", "$7$1$AA==$AA==")], topics, "hub")
    blocks = {block.strip().splitlines()[0]: block for block in acl.split("\n\n") if block.strip().startswith("user")}
    assert f"topic readwrite {topics.live_bus}" in blocks["user hub"].splitlines()
    assert "live" not in blocks["user dev-1"]


def test_a_full_buffer_drops_counts_and_never_blocks() -> None:
    bus = LiveBus()
    client = TrioMqttClient(host="127.0.0.1", client_id=f"unused-{uuid.uuid4().hex[:8]}")
    bridge = LiveBusBridge(bus, client, Topics("t"), "w-1", buffer=2)
    for n in range(5):
        bridge.forward(user_topic("u"), LiveUnread(n))  # outside trio: synchronous, no await anywhere
    assert (bridge.stats.dropped, bridge.stats.sent) == (3, 0)


async def test_lag_all_wakes_a_waiting_subscriber_and_marks_a_full_one() -> None:
    bus = LiveBus()
    with bus.subscribe([user_topic("a")], capacity=4) as waiting, \
            bus.subscribe([user_topic("b")], capacity=1) as full:
        bus.publish(user_topic("b"), LiveUnread(1))
        got: list[object] = []

        async def receive_one() -> None:
            got.append(await waiting.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_one)
            await trio.testing.wait_all_tasks_blocked()
            bus.lag_all()
        assert got == [LAGGED]
        assert await full.receive() is LAGGED  # the full buffer is stale once a resync is due
        bus.publish(user_topic("b"), LiveUnread(2))
        assert await full.receive() == LiveUnread(2)


async def test_receive_batch_takes_what_is_buffered_and_keeps_lagged_apart() -> None:
    bus = LiveBus()
    with bus.subscribe([user_topic("a")], capacity=8) as subscription:
        for n in range(5):
            bus.publish(user_topic("a"), LiveUnread(n))
        assert await subscription.receive_batch(limit=3) == [LiveUnread(0), LiveUnread(1), LiveUnread(2)]
        assert await subscription.receive_batch() == [LiveUnread(3), LiveUnread(4)]
        bus.publish(user_topic("a"), LiveUnread(5))
        bus.lag_all()  # LAGGED travels behind message 5: the batch ends before it
        assert await subscription.receive_batch() == [LiveUnread(5)]
        assert await subscription.receive_batch() is LAGGED
        for n in range(10):  # overflows the 8 buffered: the next answer is LAGGED, the stale 8 dropped
            bus.publish(user_topic("a"), LiveUnread(n))
        assert await subscription.receive_batch() is LAGGED
        bus.publish(user_topic("a"), LiveUnread(99))
        assert await subscription.receive_batch() == [LiveUnread(99)]


# --------------------------------------------------------------------------- two workers on the broker

integration = pytest.mark.integration


class Worker:
    def __init__(self, url: MqttUrl, topics: Topics, name: str, **bridge_options: Any) -> None:
        self.bus = LiveBus()
        self.bridge = LiveBusBridge(self.bus, link_client(url, f"{topics.prefix}-{name}"), topics, name,
                                    **bridge_options)


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for worker in workers:
            with trio.fail_after(10):
                await nursery.start(worker.bridge.run)
        yield
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_publisher(url: MqttUrl, topics: Topics) -> AsyncIterator[TrioMqttClient]:
    """A plain client on the live topic, to put on the wire what no bridge would."""
    client = link_client(url, f"{topics.prefix}-raw")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(lambda task_status: client.run(task_status=task_status))
        yield client
        nursery.cancel_scope.cancel()


async def next_of(subscription: Subscription) -> object:
    with trio.fail_after(5):
        return await subscription.receive()


async def until(predicate: Any) -> None:
    """Wait (bounded) for a counter the bridge updates as it handles what the broker delivers."""
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.01)


def nothing_buffered(subscription: Subscription) -> bool:
    return subscription._receive.statistics().current_buffer_used == 0 and not subscription._lagged


@pytest.fixture
def broker(mqtt_server_url: str) -> MqttUrl:
    return MqttUrl.parse(mqtt_server_url)


@pytest.fixture
def topics() -> Topics:
    return Topics(f"test-bridge-{uuid.uuid4().hex[:12]}")


def _attendance(student: str) -> LiveAttendance:
    return LiveAttendance("s-1", student, "present", "2030-01-07T09:30:00+00:00", "qr")


@integration
async def test_a_message_reaches_the_other_worker_once_and_is_not_echoed(broker: MqttUrl, topics: Topics) -> None:
    a, b = Worker(broker, topics, "w-a"), Worker(broker, topics, "w-b")
    topic = session_topic("s-1")
    async with running(a, b):
        with a.bus.subscribe([topic]) as at_a, b.bus.subscribe([topic]) as at_b:
            first = _attendance("st-1")
            a.bus.publish(topic, first)
            assert await next_of(at_a) is first  # the local fan-out, as before
            got = await next_of(at_b)
            assert got == first and got is not first and type(got) is LiveAttendance
            assert got.json == first.json
            # Our own message comes back from the broker and is ignored: nothing more for A's subscriber.
            await until(lambda: a.bridge.stats.own == 1)
            assert nothing_buffered(at_a)
            # B published it locally only: it did not send it back out.
            assert (b.bridge.stats.sent, b.bridge.stats.received, a.bridge.stats.received) == (0, 1, 0)
            # Once: the next message of A is the next thing B's subscriber sees.
            second = _attendance("st-2")
            a.bus.publish(topic, second)
            assert await next_of(at_a) is second
            assert await next_of(at_b) == second
            # And the other way round, without loops.
            from_b = _attendance("st-3")
            b.bus.publish(topic, from_b)
            assert await next_of(at_b) is from_b
            assert await next_of(at_a) == from_b
            await until(lambda: a.bridge.stats.own == 2 and b.bridge.stats.own == 1)
            assert nothing_buffered(at_a) and nothing_buffered(at_b)
            assert (a.bridge.stats.sent, b.bridge.stats.sent) == (2, 1)
            assert a.bridge.stats.lagged == b.bridge.stats.lagged == 0
    assert a.bus.on_publish is None and b.bus.on_publish is None  # detached when stopped


@integration
async def test_a_burst_travels_in_a_few_publishes_and_none_is_dropped(broker: MqttUrl, topics: Topics) -> None:
    """A commit fans out hundreds of live messages at once: they travel batched, so bursts of 300,
    three times the bridge's buffer in all, reach the other worker whole and in order."""
    a, b = Worker(broker, topics, "w-a", buffer=400), Worker(broker, topics, "w-b")
    async with running(a, b):
        with b.bus.subscribe([ATTENDANCE_TOPIC], capacity=2000) as at_b:
            for burst in range(4):
                for n in range(300):
                    a.bus.publish(session_topic("s-1"), _attendance(f"st-{burst}-{n}"))
                await trio.sleep(0.005)  # the writer's next commit comes milliseconds later
            got = [await next_of(at_b) for _ in range(1200)]
            assert [m.student_id for m in got] == [f"st-{burst}-{n}" for burst in range(4) for n in range(300)]
            assert (a.bridge.stats.dropped, b.bridge.stats.lagged) == (0, 0)
            assert a.bridge.stats.sent == 1200 and a.bridge.stats.publishes <= 12, a.bridge.stats


@integration
async def test_attendance_from_another_worker_reaches_the_attendance_observers(broker: MqttUrl, topics: Topics) -> None:
    a, b = Worker(broker, topics, "w-a"), Worker(broker, topics, "w-b")
    async with running(a, b):
        with b.bus.subscribe([ATTENDANCE_TOPIC]) as observer:
            a.bus.publish(session_topic("s-1"), _attendance("st-1"))
            assert await next_of(observer) == _attendance("st-1")


@integration
async def test_an_undecodable_payload_is_counted_and_ignored(broker: MqttUrl, topics: Topics,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    a, b = Worker(broker, topics, "w-a"), Worker(broker, topics, "w-b")
    async with running(a, b), raw_publisher(broker, topics) as raw:
        with b.bus.subscribe([user_topic("u-1")]) as at_b:
            await raw.publish(topics.live_bus, b"\x93garbage\n\x1b[31m", qos=1, wait_for_ack=True)
            await until(lambda: b.bridge.stats.undecodable == 1 and a.bridge.stats.undecodable == 1)
            assert nothing_buffered(at_b)
            a.bus.publish(user_topic("u-1"), LiveUnread(4))  # the bridge carries on
            assert await next_of(at_b) == LiveUnread(4)
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.bus_bridge"]
    assert any("undecodable" in line for line in lines)
    assert not any("\n" in line or "\x1b" in line for line in lines)  # escaped


@integration
async def test_a_gap_a_restart_of_the_origin_and_a_duplicate(broker: MqttUrl, topics: Topics) -> None:
    """Numbers skipped by an origin, or a new incarnation of it, give every local subscriber LAGGED
    before the next message; a number already seen is a redelivery and is dropped."""
    b = Worker(broker, topics, "w-b")
    topic = user_topic("u-1")
    async with running(b), raw_publisher(broker, topics) as raw:
        async def send(incarnation: int, seq: int, unread: int) -> None:
            await raw.publish(topics.live_bus, encode_live(WireLive("w-x", incarnation, seq, topic, LiveUnread(unread))),
                              qos=1, wait_for_ack=True)

        with b.bus.subscribe([topic]) as at_b, b.bus.subscribe([DEVICES_TOPIC]) as elsewhere:
            await send(1, 1, 1)
            assert await next_of(at_b) == LiveUnread(1)
            await send(1, 1, 1)  # a redelivery
            await send(1, 3, 3)  # 2 was lost
            assert await next_of(at_b) is LAGGED
            assert await next_of(at_b) == LiveUnread(3)
            assert await next_of(elsewhere) is LAGGED  # nobody knows which topic 2 was for
            await send(2, 1, 10)  # w-x restarted
            assert await next_of(at_b) is LAGGED
            assert await next_of(at_b) == LiveUnread(10)
            await raw.publish(topics.live_bus, encode_live(WireLive("w-y", 5, 7, topic, LiveUnread(7))),
                              qos=1, wait_for_ack=True)  # first heard of w-y at its number 7: 1-6 unseen
            assert await next_of(at_b) is LAGGED
            assert await next_of(at_b) == LiveUnread(7)
            assert (b.bridge.stats.duplicates, b.bridge.stats.gaps, b.bridge.stats.lagged) == (1, 2, 3)
            assert b.bridge.stats.received == 4


@integration
async def test_messages_dropped_by_a_full_buffer_make_the_other_worker_resync(broker: MqttUrl, topics: Topics) -> None:
    a, b = Worker(broker, topics, "w-a", buffer=2), Worker(broker, topics, "w-b")
    topic = user_topic("u-1")
    async with running(b):
        with b.bus.subscribe([topic]) as at_b:
            for n in (1, 2, 3):  # before A runs: two wait in its buffer, the third is dropped
                a.bridge.forward(topic, LiveUnread(n))
            assert a.bridge.stats.dropped == 1
            async with running(a):
                assert await next_of(at_b) == LiveUnread(1)
                assert await next_of(at_b) == LiveUnread(2)
                a.bus.publish(topic, LiveUnread(4))
                assert await next_of(at_b) is LAGGED
                assert await next_of(at_b) == LiveUnread(4)
            assert b.bridge.stats.gaps == 1


@integration
async def test_a_message_too_big_for_the_broker_is_not_sent_and_seen_as_a_gap(broker: MqttUrl, topics: Topics) -> None:
    a, b = Worker(broker, topics, "w-a"), Worker(broker, topics, "w-b")
    topic = user_topic("u-1")
    async with running(a, b):
        with b.bus.subscribe([topic]) as at_b:
            a.bus.publish(topic, LiveNotification({"body": "x" * MQTT_MAX_PACKET_SIZE}))
            a.bus.publish(topic, LiveUnread(1))
            assert await next_of(at_b) is LAGGED  # the first B hears of A is its number 2
            assert await next_of(at_b) == LiveUnread(1)
            assert a.bridge.stats.oversize == 1
            a.bus.publish(topic, LiveNotification({"body": "y" * MQTT_MAX_PACKET_SIZE}))
            a.bus.publish(topic, LiveUnread(2))
            assert await next_of(at_b) is LAGGED
            assert await next_of(at_b) == LiveUnread(2)
            assert (a.bridge.stats.oversize, a.bridge.stats.sent, b.bridge.stats.gaps) == (2, 2, 2)


async def test_one_bridge_per_bus() -> None:
    bus = LiveBus()
    bus.on_publish = lambda topic, message: None
    bridge = LiveBusBridge(bus, TrioMqttClient(host="127.0.0.1", client_id="unused"), Topics("t"), "w")
    with pytest.raises(RuntimeError, match="on_publish"):
        await bridge.run()


# --------------------------------------------------------------------------- the broker's ACL


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")
async def test_the_generated_acl_lets_the_hub_use_the_live_bus_and_no_device(tmp_path: Path) -> None:
    topics = Topics(f"acl-{uuid.uuid4().hex[:8]}")
    device = BrokerLogin("dev-live", "device-password")
    broker = await trio.to_thread.run_sync(lambda: start_private_mosquitto(
        tmp_path / "broker", topics=topics, devices=[device]))
    try:
        def login(user: BrokerLogin) -> MqttUrl:
            return MqttUrl("127.0.0.1", broker.port, user.username, user.password)

        a = Worker(login(HUB_LOGIN), topics, "w-a")
        async with running(a):
            with a.bus.subscribe([user_topic("u")]) as at_a:
                a.bus.publish(user_topic("u"), LiveUnread(1))
                assert await next_of(at_a) == LiveUnread(1)
                await until(lambda: a.bridge.stats.own == 1)  # the hub's account wrote it and read it back
            device_client = link_client(login(device), device.username)
            async with trio.open_nursery() as nursery:
                with trio.fail_after(10):
                    await nursery.start(lambda task_status: device_client.run(task_status=task_status))
                with pytest.raises(MqttError):
                    await device_client.publish(topics.live_bus, encode_live(
                        WireLive("w-evil", 1, 1, user_topic("u"), LiveUnread(99))), qos=1, wait_for_ack=True)
                with pytest.raises(MqttError):
                    await device_client.subscribe(topics.live_bus, qos=1)
                nursery.cancel_scope.cancel()
            assert a.bridge.stats.received == 0
    finally:
        await trio.to_thread.run_sync(broker.stop)
