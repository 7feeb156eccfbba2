"""The property the partitioned hub rests on, proved against a real Mosquitto: a persistent session moves.

A partition's MQTT session has a fixed client id; whichever worker owns the
partition connects with it (clean_start False, long session expiry) and inherits
the session: its subscriptions, the messages queued while nobody was connected,
and those the last owner read but never acknowledged. The broker ends any older
connection of that client id (session takeover) -- with DISCONNECT 0x8E only from
Mosquitto 2.0.15 on; Debian 12's 2.0.11 just closes the socket, so the old owner
cannot tell a takeover from a network failure and, left to itself, reconnects and
takes the session back: it must ask whether it still owns the partition
(``run(before_reconnect=...)``).

The broker is a private Mosquitto from the generated configuration, its ACL
included, minus ``use_username_as_clientid`` (``unbind_client_ids``): with it,
every client id of the hub's account names one session, as a test below shows.
Both workers log in with the hub's account; the devices with their own.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from mqtt_helpers import receive, wait_until
from support.private_mosquitto import (
    HUB_LOGIN,
    BrokerLogin,
    PrivateMosquitto,
    mosquitto_available,
    start_private_mosquitto,
    unbind_client_ids,
)

from hub.domain.partition_topics import partition_topics
from hub.mqtt import InboundMessage, TrioMqttClient
from schemas import Topics

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")]

DEV_1 = BrokerLogin("dev-1", "password-1")
DEV_2 = BrokerLogin("dev-2", "password-2")


@pytest.fixture
def topics() -> Topics:
    return Topics(f"part-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def broker(tmp_path: Path, topics: Topics) -> Iterator[PrivateMosquitto]:
    with start_private_mosquitto(tmp_path / "broker", devices=[DEV_1, DEV_2], topics=topics,
                                 edit_conf=unbind_client_ids) as running_broker:
        yield running_broker


def worker(broker: PrivateMosquitto, client_id: str, **kw: Any) -> TrioMqttClient:
    """A worker's connection to a partition's session: the hub's account, the partition's client id."""
    return TrioMqttClient(host="127.0.0.1", port=broker.port, client_id=client_id, username=HUB_LOGIN.username,
                          password=HUB_LOGIN.password, clean_start=False, session_expiry_s=3600, **kw)


def device(broker: PrivateMosquitto, login: BrokerLogin) -> TrioMqttClient:
    return TrioMqttClient(host="127.0.0.1", port=broker.port, client_id=login.username, username=login.username,
                          password=login.password, clean_start=True, session_expiry_s=0)


class Running:
    """``client.run()`` in a task."""

    def __init__(self, client: TrioMqttClient) -> None:
        self.client = client
        self.ended = trio.Event()
        self.scope = trio.CancelScope()

    async def run(self, on_connect: Any = None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        with self.scope:
            try:
                await self.client.run(on_connect=on_connect, task_status=task_status)
            finally:
                self.ended.set()


@asynccontextmanager
async def started(*clients: TrioMqttClient) -> AsyncIterator[list[Running]]:
    async with trio.open_nursery() as nursery:
        runs = [Running(c) for c in clients]
        for r in runs:
            await nursery.start(r.run)
        yield runs
        nursery.cancel_scope.cancel()


async def publish_all(client: TrioMqttClient, topic: str, payloads: list[bytes]) -> None:
    """QoS 1, in order; returns once the broker has the last one (and so all of them)."""
    for payload in payloads[:-1]:
        await client.publish(topic, payload)
    await client.publish(topic, payloads[-1], wait_for_ack=True)


def by_topic(messages: list[InboundMessage]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for m in messages:
        out.setdefault(m.topic, []).append(m.payload)
    return out


async def receive_n(client: TrioMqttClient, n: int) -> list[InboundMessage]:
    return [await receive(client, timeout=5) for _ in range(n)]


def subscribing(topics: Topics, device_ids: list[str]) -> Callable[[TrioMqttClient], Awaitable[None]]:
    """An ``on_connect`` that subscribes a partition's exact topics for ``device_ids``, as a partition session does."""

    async def subscribe_partition(client: TrioMqttClient) -> None:
        await client.subscribe_many(sorted(partition_topics(topics, device_ids)))

    return subscribe_partition


def numbered(name: str, numbers: range) -> list[bytes]:
    return [f"{name}{i}".encode() for i in numbers]


# ------------------------------------------------------------------------------------ tests


async def test_a_new_owner_inherits_queued_and_unacknowledged_messages_without_subscribing(
        broker: PrivateMosquitto, topics: Topics) -> None:
    session_id = f"campushub-{uuid.uuid4().hex[:6]}-p003"
    up_1, up_2, status_1 = topics.uplink("dev-1"), topics.uplink("dev-2"), topics.status("dev-1")
    # Worker A's Will proves the broker saw A die without DISCONNECT: it is published only then.
    will_topic = topics.downlink("dev-1")
    a = worker(broker, session_id, will=(will_topic, b"worker A is gone", 1, False))

    subscribe_partition = subscribing(topics, ["dev-1", "dev-2"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            d1, d2 = device(broker, DEV_1), device(broker, DEV_2)
            async with started(d1, d2):
                await d1.subscribe(will_topic)  # the device's own downlink: what its ACL lets it read

                run_a = Running(a)
                await nursery.start(run_a.run, subscribe_partition)
                assert not a.session_present  # a session of its own, new
                await publish_all(d1, up_1, numbered("u", range(1, 6)))
                await publish_all(d2, up_2, numbered("v", range(1, 6)))
                got = await receive_n(a, 10)
                assert by_topic(got) == {up_1: numbered("u", range(1, 6)), up_2: numbered("v", range(1, 6))}
                # A commits and acks the first three of each device; the last two it never acks.
                a.ack_many([m for m in got if m.payload[1:] in (b"1", b"2", b"3")])
                assert a.stats.acked == 6 and a.unacked == 4
                # The broker handles A's packets in order: once this PUBACK is back, so are the acks above.
                await a.publish(topics.downlink("dev-2"), b"acks flushed", wait_for_ack=True)

                # A dies: its socket closes without DISCONNECT, and it never comes back.
                a.drop_connection("worker A crashed", reconnect_after_s=3600)
                run_a.scope.cancel()
                will = await receive(d1, timeout=5)
                assert will.payload == b"worker A is gone"
                d1.ack(will)

                # Nobody is connected to the session: the broker queues for it.
                await publish_all(d1, up_1, numbered("u", range(6, 8)))
                await d1.publish(status_1, b"online", wait_for_ack=True)
                await publish_all(d2, up_2, numbered("v", range(6, 8)))

                # Worker B resumes the session: no subscribe of its own.
                b = worker(broker, session_id)
                run_b = Running(b)
                await nursery.start(run_b.run)
                assert b.session_present and b.generation == 1
                inherited = await receive_n(b, 9)
                await d1.publish(up_1, b"after the takeover", wait_for_ack=True)
                last = await receive(b)
                b.ack_many([*inherited, last])
                assert by_topic(inherited) == {
                    # redelivered (read, never acked), then queued, in publish order
                    up_1: [b"u4", b"u5", b"u6", b"u7"],
                    status_1: [b"online"],
                    up_2: [b"v4", b"v5", b"v6", b"v7"],
                }
                assert last.payload == b"after the takeover"  # nothing else was waiting
                assert b.connected
                nursery.cancel_scope.cancel()


async def test_the_broker_hands_a_live_session_to_the_new_owner(broker: PrivateMosquitto, topics: Topics) -> None:
    """B connects with the partition's client id while A is connected: the broker ends A's connection and B
    gets the session, with what A read and never acknowledged. A stops, as its lease loop would make it."""
    session_id = f"campushub-{uuid.uuid4().hex[:6]}-p007"
    up_1 = topics.uplink("dev-1")
    a, b = worker(broker, session_id), worker(broker, session_id)
    a.BACKOFF_MIN_S = 60.0  # A must not come back within the test: see the fight below

    subscribe_partition = subscribing(topics, ["dev-1"])
    with trio.fail_after(30):
        async with started(device(broker, DEV_1)) as [d1_run], trio.open_nursery() as nursery:
            d1 = d1_run.client
            run_a = Running(a)
            await nursery.start(run_a.run, subscribe_partition)
            await d1.publish(up_1, b"read by A, never acked", wait_for_ack=True)
            held = await receive(a)

            await nursery.start(Running(b).run)  # the same client id while A is connected
            await wait_until(lambda: not a.connected, timeout=5)
            run_a.scope.cancel()
            a.ack(held)  # too late: no connection; a no-op
            assert a.stats.acked == 0

            assert b.session_present and b.connected
            again = await receive(b)
            assert again.payload == b"read by A, never acked"
            await d1.publish(up_1, b"for B", wait_for_ack=True)
            fresh = await receive(b)
            assert fresh.payload == b"for B"
            b.ack_many([again, fresh])
            assert b.generation == 1 and b.connected
            nursery.cancel_scope.cancel()


async def test_two_default_clients_of_one_client_id_fight_for_the_session(
        broker: PrivateMosquitto, topics: Topics) -> None:
    """A taken-over client reconnects like after any loss, and takes the session back: two such clients
    pass the session back and forth for as long as both run. A worker that lost its partition must stop its
    session itself: its lease loop, through ``run(before_reconnect=...)``."""
    session_id = f"campushub-{uuid.uuid4().hex[:6]}-p008"
    a = worker(broker, session_id)
    b = worker(broker, session_id)
    with trio.fail_after(30):
        async with started(a, b):
            # Each took the session back from the other at least twice.
            await wait_until(lambda: a.generation >= 3 and b.generation >= 3, timeout=10)


class LeaseLost(Exception):
    """What a partition's lease loop would raise: another worker owns the partition now."""


async def test_before_reconnect_lets_the_old_owner_stop_on_any_broker(broker: PrivateMosquitto, topics: Topics) -> None:
    """Whether or not the broker says 0x8E: A asks before reconnecting, learns it lost the partition, stops."""
    session_id = f"campushub-{uuid.uuid4().hex[:6]}-p010"
    a = worker(broker, session_id)
    b = worker(broker, session_id)
    asked: list[int] = []
    a_stopped = trio.Event()

    async def lease_still_mine(client: TrioMqttClient) -> None:
        asked.append(client.generation)
        raise LeaseLost(f"partition of {client.client_id} has a new owner")

    async def run_a(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await a.run(before_reconnect=lease_still_mine, task_status=task_status)
        except LeaseLost:
            a_stopped.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_a)
            async with started(b):
                await a_stopped.wait()
                assert asked == [1] and a.generation == 1 and not a.connected
                # A never came back: B's first connection still holds the session.
                assert b.connected and b.generation == 1 and b.session_present
            nursery.cancel_scope.cancel()


async def test_the_generated_config_as_is_makes_every_client_id_of_the_hubs_account_one_session(
        tmp_path: Path, topics: Topics) -> None:
    """``use_username_as_clientid``: the broker renames every client to its username, so two partitions'
    client ids under the hub's account are one session, and the second takes the first over. The
    partitioned hub needs an account per partition, or a listener without that option for the hub."""
    with start_private_mosquitto(tmp_path / "broker", topics=topics) as generated:
        base = f"campushub-{uuid.uuid4().hex[:6]}"
        p0 = worker(generated, f"{base}-p000")
        p0.BACKOFF_MIN_S = 60.0
        p1 = worker(generated, f"{base}-p001")
        with trio.fail_after(30):
            async with started(p0), started(p1):
                await wait_until(lambda: not p0.connected, timeout=5)
                assert p1.connected and p1.session_present  # p000's session, under another name


async def test_a_drained_hand_over_leaves_nothing_to_redeliver(broker: PrivateMosquitto, topics: Topics) -> None:
    """A release (hub/app/partition_sessions.py): the old owner holds its reads, acks what it read, then closes.
    The next owner gets exactly what was never read, once: no redelivery of work already committed."""
    session_id = f"campushub-{uuid.uuid4().hex[:6]}-p011"
    up_1 = topics.uplink("dev-1")
    a = worker(broker, session_id, max_unacked=4)

    subscribe_partition = subscribing(topics, ["dev-1"])
    with trio.fail_after(30):
        async with started(device(broker, DEV_1)) as [d1_run], trio.open_nursery() as nursery:
            d1 = d1_run.client
            run_a = Running(a)
            await nursery.start(run_a.run, subscribe_partition)
            await publish_all(d1, up_1, numbered("m", range(1, 11)))
            read = await receive_n(a, 4)  # the window: A reads 4, then leaves the socket alone
            a.hold_reads()
            assert not await a.wait_all_acked(0.2)  # nothing acked yet: it waits
            a.ack_many(read)  # the pipeline commits and acks what it holds
            assert await a.wait_all_acked(5)
            # Held: the 6 others stay with the broker; nothing more reached A's channel.
            with trio.move_on_after(0.3):
                extra = await a.messages.receive()
                pytest.fail(f"read while held: {extra}")
            run_a.scope.cancel()
            await run_a.ended.wait()

            b = worker(broker, session_id)
            run_b = Running(b)
            await nursery.start(run_b.run)
            rest = await receive_n(b, 6)
            b.ack_many(rest)
            assert [m.payload for m in read] == numbered("m", range(1, 5))
            assert [m.payload for m in rest] == numbered("m", range(5, 11))  # each once, in order
            nursery.cancel_scope.cancel()
