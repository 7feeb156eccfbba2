"""Two partitioned workers in one trio run, on the real PostgreSQL and broker (hub/app/partition_sessions.py).

Each worker is a whole hub (``run_hub``) with ``Settings.partitions`` set: they
split the partitions by their leases, each subscribes its partitions' devices
on a persistent session of its own, and every event is committed once. When
one stops, the other takes its partitions over, with the sessions' queued
messages. (kill -9 of a worker process: tests/faults/test_faults_workers.py.)
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.hub_helpers import eventually

from hub.app.supervision import Hub, run_hub
from hub.core.bus import session_topic
from hub.core.campus import Campus, DeviceCredentials
from hub.core.config import Settings
from hub.db import run_with_database
from hub.db.provisioning import EdgeAgentSetup, register
from hub.db.seed import DEMO_PASSWORD, ensure_campus
from hub.domain.partitions import partition_of_room
from schemas import SensorReading, SensorReadingEvent, Topics, encode_event, new_event_id

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def worker_settings(hub_settings: Settings) -> Settings:
    # A short lease keeps the take-over quick; rounds are a third of it.
    return dataclasses.replace(hub_settings, partitions=PARTITIONS, partition_lease_s=3.0)


@pytest.fixture
def campus_of_rooms(worker_settings: Settings) -> Campus:
    now = datetime.now(timezone.utc)
    return run_with_database(worker_settings.database_url,
                             lambda db: ensure_campus(db, rooms=8, students=12, now=now))


def _reading(device: DeviceCredentials, seq: int) -> bytes:
    event = SensorReadingEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000),
                               seq=seq, body=SensorReading(metric="co2", value=400.0 + seq, unit="ppm"))
    return encode_event(event, device.alg, device.signing_key)


async def _start(nursery: trio.Nursery, settings: Settings, worker_id: str,
                 port: int | None = None) -> tuple[Hub, trio.CancelScope]:
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[Hub]) -> None:
        with scope:
            await run_hub(dataclasses.replace(settings, worker_id=worker_id), port=port, task_status=task_status)

    return await nursery.start(run), scope


async def test_two_workers_split_the_partitions_and_commit_every_event_once(
    worker_settings, campus_of_rooms, test_db, publisher, aio_loop,
):
    topics = Topics(worker_settings.topic_prefix)
    devices = campus_of_rooms.devices
    partitions_used = {partition_of_room(d.room_id, PARTITIONS) for d in devices}
    assert len(partitions_used) > 1  # the campus's rooms fall in several partitions

    async def committed() -> int:
        return await test_db.fetchval("SELECT count(DISTINCT event_id) FROM sensor_readings")

    async def rows() -> int:
        return await test_db.fetchval("SELECT count(*) FROM sensor_readings")

    async with trio.open_nursery() as nursery:
        first, first_scope = await _start(nursery, worker_settings, "w1")
        second, _ = await _start(nursery, worker_settings, "w2")

        def actors_follow_ownership(hub: Hub) -> bool:
            # Device actors run only for the devices of owned partitions (they start just after the claim).
            return set(hub.devices.child_ids()) == {d.device_id for d in devices if hub.ownership.owns_room(d.room_id)}

        async def balanced() -> bool:
            a, b = first.ownership.owned, second.ownership.owned
            return (len(a) == len(b) == PARTITIONS // 2 and not a & b
                    and actors_follow_ownership(first) and actors_follow_ownership(second))

        await eventually(balanced, timeout=20)

        per_device = 5
        for device in devices:
            for seq in range(1, per_device + 1):
                await publisher.publish(topics.uplink(device.device_id), _reading(device, seq), qos=1)
        total = per_device * len(devices)
        await eventually(lambda: _is(committed(), total), timeout=20)

        # The first worker stops: its partitions and their queued messages move to the second.
        first_scope.cancel()
        for device in devices:
            for seq in range(per_device + 1, 2 * per_device + 1):
                await publisher.publish(topics.uplink(device.device_id), _reading(device, seq), qos=1)

        async def took_over() -> bool:
            return second.ownership.owned == frozenset(range(PARTITIONS))

        await eventually(took_over, timeout=20)
        await eventually(lambda: _is(committed(), 2 * total), timeout=20)
        assert await rows() == 2 * total  # nothing twice
        assert set(second.devices.child_ids()) == {d.device_id for d in devices}
        # Per device, commits follow the sent order: every event of an earlier commit (transaction)
        # has a lower sequence number than every event of a later one.
        for device in devices:
            commits = [(r["low"], r["high"]) for r in await test_db.fetch(
                "SELECT min(seq) AS low, max(seq) AS high FROM events WHERE device_id = $1"
                " GROUP BY committed_at ORDER BY committed_at", device.device_id)]
            assert all(earlier[1] < later[0] for earlier, later in zip(commits, commits[1:])), commits
            assert commits[0][0] == 1 and commits[-1][1] == 2 * per_device
        nursery.cancel_scope.cancel()


async def test_workers_started_together_claim_their_shares_at_once(worker_settings, campus_of_rooms, test_db):
    """Peers (``serve --workers`` names them) count as live before their first heartbeat: the first
    worker up claims only its half, and no partition changes hands when the second arrives."""
    peers = dataclasses.replace(worker_settings, worker_peers=("w1", "w2"))
    async with trio.open_nursery() as nursery:
        first, _ = await _start(nursery, peers, "w1")
        assert len(first.ownership.owned) == PARTITIONS // 2  # its first round ran before the start
        second, _ = await _start(nursery, peers, "w2")

        async def balanced() -> bool:
            a, b = first.ownership.owned, second.ownership.owned
            return len(a) == len(b) == PARTITIONS // 2 and not a & b

        await eventually(balanced, timeout=20)
        owners = await test_db.fetch("SELECT owner, fence FROM partition_leases WHERE expires_at > now()")
        assert sorted(r["owner"] for r in owners) == ["w1"] * 2 + ["w2"] * 2
        assert {r["fence"] for r in owners} == {1}  # each claimed once, by its first and only owner
        nursery.cancel_scope.cancel()


async def _nothing_to_tell(device_ids) -> None:
    """Registered from outside the hub (another worker's web): nobody in this process is told."""


async def test_a_device_registered_while_running_is_subscribed_within_moments(
    worker_settings, campus_of_rooms, test_db, publisher, aio_loop,
):
    """The registration's NOTIFY (migration 0039) makes the partition's owner subscribe the new device at
    once, not at its next round (here 10 s away): a reading it sends 3 s after its registration is kept.
    The broker drops a message nobody subscribes to, so without this it would be lost."""
    settings = dataclasses.replace(worker_settings, partition_lease_s=30.0)  # rounds 10 s apart
    topics = Topics(settings.topic_prefix)
    room_id = campus_of_rooms.devices[0].room_id
    async with trio.open_nursery() as nursery:
        hub, _ = await _start(nursery, settings, "w1")
        assert hub.ownership.owns_room(room_id)
        issued = await register(test_db, device_id=f"late-{uuid.uuid4().hex[:6]}", room_id=room_id,
                                kind="edge_agent", actor="test", devices_changed=_nothing_to_tell,
                                setup=EdgeAgentSetup("mqtt://127.0.0.1:1883", topics.prefix))
        keys = issued.credentials.keys
        device = DeviceCredentials(issued.device.device_id, room_id, "edge_agent", keys.alg, keys.device_key)
        await trio.sleep(3)
        await publisher.publish(topics.uplink(device.device_id), _reading(device, 1), qos=1)
        await eventually(lambda: _is(test_db.fetchval(
            "SELECT count(*) FROM sensor_readings WHERE device_id = $1", device.device_id), 1), timeout=10)
        nursery.cancel_scope.cancel()


async def _is(value, expected) -> bool:
    return await value == expected


async def test_the_web_of_one_worker_reaches_the_session_actor_of_the_other(
    worker_settings, campus_of_rooms, test_db, aio_loop,
):
    async with trio.open_nursery() as nursery:
        first, _ = await _start(nursery, worker_settings, "w1", port=0)
        second, _ = await _start(nursery, worker_settings, "w2", port=0)

        async def balanced() -> bool:
            return len(first.ownership.owned) == len(second.ownership.owned) == PARTITIONS // 2

        await eventually(balanced, timeout=20)
        # A live session whose room the second worker serves: its actor runs there only.
        session = next(s for s in campus_of_rooms.sessions if second.ownership.owns_room(s.room_id))
        await eventually(lambda: _has_actor(second, session.session_id), timeout=20)
        assert first.sessions.lookup(session.session_id) is None
        student_id = session.enrolled[0]

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.web_port}", timeout=20) as http:
            login = await http.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
            assert login.status_code == 200, login.text
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            served_before = second.worker_calls.stats.served
            # A browser on the first worker follows the session: its live bus hears the second's commit.
            with first.bus.subscribe([session_topic(session.session_id)]) as live:
                marked = await http.post(f"/api/v1/sessions/{session.session_id}/marks", json={
                    "marks": [{"student_id": student_id, "status": "excused"}], "reason": "doctor's note"})
                with trio.fail_after(10):
                    heard = await live.receive()
            assert student_id in heard.json
            assert marked.status_code == 200, marked.text
            assert marked.json()["changed"] == [{"student_id": student_id, "status": "excused", "before": None}]
            # Judged and committed by the second worker's actor, asked over the broker.
            assert second.worker_calls.stats.served == served_before + 1
            status = await test_db.fetchval(
                "SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                session.session_id, student_id)
            assert status == "excused"
            # The actor holds the mark in memory: the same mark again changes nothing.
            again = await http.post(f"/api/v1/sessions/{session.session_id}/marks", json={
                "marks": [{"student_id": student_id, "status": "excused"}], "reason": "doctor's note"})
            assert again.status_code == 200 and again.json()["changed"] == []
        # Both sides of the traffic are in each worker's metrics (read from the live objects at scrape time).
        first_metrics, second_metrics = _counters(first.metrics.render()), _counters(second.metrics.render())
        assert first_metrics[("campushub_live_bridge_total", "received")] >= 1
        assert second_metrics[("campushub_live_bridge_total", "sent")] >= 1
        assert second_metrics[("campushub_live_bridge_total", "dropped")] == 0
        assert first_metrics[("campushub_worker_calls_total", "asked")] >= 2
        assert second_metrics[("campushub_worker_calls_total", "served")] == second.worker_calls.stats.served
        nursery.cancel_scope.cancel()


def _counters(exposition: str) -> dict[tuple[str, str], float]:
    """``{(name, counter label): value}`` of the labelled counter families in a /metrics text."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if "counter" in sample.labels:
                found[(sample.name, sample.labels["counter"])] = sample.value
    return found


async def _has_actor(hub: Hub, session_id: str) -> bool:
    return hub.sessions.lookup(session_id) is not None
