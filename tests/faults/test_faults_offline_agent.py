"""Fault 4: an edge agent offline for 10 minutes of device time, thousands of events buffered in its outbox.

The agent's broker is unreachable (connection refused; later a TCP proxy to
the private Mosquitto opens on the agent's broker port) while it takes
~3,000 events whose device timestamps span the last 10 minutes, among them
one check-in per enrolled student of the room's live session. The session's
grace period ends in the middle of that span. When the broker becomes
reachable everything arrives at once, and each check-in must be judged by
when it was scanned (device time): present before the end of grace, late
after it, though all arrive now.
"""
from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import trio
from faults_helpers import (
    CheckIn,
    Ledger,
    Sensor,
    agent_config,
    all_committed,
    assert_exactly_once,
    committed,
    device_of,
    edge_agents,
    eventually,
    hub_env,
    hub_launcher,
    secret_of,
    unique,
    wait_futures,
)
from support.tcp_proxy import TcpProxy

from hub.db import open_database
from hub.db.seed import ensure_campus

EVENTS = 3000
OFFLINE_S = 600  # device time spanned by the buffered events
GRACE_MINUTES = 2  # the seeded session started 5 min ago: grace ends 3 min ago, inside the span


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scan_status(at: float, starts_at: datetime, grace: timedelta) -> str:
    scanned_at = datetime.fromtimestamp(int(at * 1000) / 1000, timezone.utc)  # the agent sends milliseconds
    return "present" if scanned_at <= starts_at + grace else "late"


async def test_agent_offline_for_ten_minutes_delivers_everything_judged_by_device_time(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=2, students=120, now=datetime.now(timezone.utc))
        session = campus.sessions[0]
        device = device_of(campus, session)
        await db.execute("UPDATE class_sessions SET grace_minutes = $2 WHERE id = $1", session.session_id,
                         GRACE_MINUTES)
        starts_at = await db.fetchval("SELECT starts_at FROM class_sessions WHERE id = $1", session.session_id)
        grace = timedelta(minutes=GRACE_MINUTES)

        now = time.time()
        times = [now - OFFLINE_S + OFFLINE_S * (i + 0.5) / EVENTS for i in range(EVENTS)]
        scan_every = EVENTS // len(session.enrolled)
        items = []
        ledger = Ledger()
        students = iter(session.enrolled)
        for i, at in enumerate(times):
            student_id = next(students, None) if i % scan_every == scan_every // 2 else None
            if student_id is None:
                items.append(Sensor(("temperature", "humidity", "co2")[i % 3], 20 + i / 1000, "u", at=at))
            else:
                items.append(CheckIn(student_id, secret_of(campus, student_id), at=at))
                ledger.expect_attendance(session.session_id, student_id, _scan_status(at, starts_at, grace))
        expected = list(ledger.attendance.values())
        assert len(expected) == len(session.enrolled)
        assert {"present", "late"} <= set(expected), "the span must cover both sides of the grace period"

        prefix = unique("faults-offline")
        env = hub_env(database_url=fresh_database_url, mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile,
                      topic_prefix=prefix,
                      client_id=unique("hub-faults-offline"), data_dir=tmp_path / "hub")
        # The agent's broker address is a port nobody listens on yet (connection refused): the
        # classroom's uplink is down. Later a proxy to the private Mosquitto opens on that port.
        proxy = TcpProxy("127.0.0.1", private_broker.client_port)
        proxy_port = free_port()
        async with trio.open_nursery() as nursery, hub_launcher(env) as hubs:
            hub = await hubs.start()
            # reconnect_max_s: after a real 10-minute outage the agent retries every <= 30 s (its default);
            # 2 s keeps this test short. Everything else is the agent's default configuration.
            config = agent_config(device, mqtt_url=private_broker.url_through(proxy_port), mqtt_cafile=private_broker.cafile,
                                  topic_prefix=prefix,
                                  outbox_dir=tmp_path, reconnect_max_s=2.0)
            async with edge_agents([config]) as (agent,):
                began = time.monotonic()
                [results] = await wait_futures([agent.submit_items(items, rate=None)], timeout=120)
                buffer_s = time.monotonic() - began
                ledger.record(device.device_id, results)
                await trio.sleep(1)
                assert not agent.connected
                depth = agent.outbox_depth
                assert depth >= EVENTS, f"outbox holds {depth} of {EVENTS}"
                assert await committed(db) == 0, "something got through while the broker was unreachable"

                restored_at = time.monotonic()
                await nursery.start(proxy.serve, proxy_port)  # the uplink is back
                await eventually(lambda: _true(agent.connected), timeout=30)
                connected_s = time.monotonic() - restored_at
                await all_committed(db, EVENTS, timeout=60, hub=hub, agents=[agent])
                delivered_s = time.monotonic() - restored_at
                await eventually(lambda: _true(agent.outbox_depth == 0), timeout=30)
                await trio.sleep(2)  # a late redelivery would add a duplicate: give it the chance
                counts = await assert_exactly_once(db, ledger)
            assert await hub.terminate() == 0, hub.log_tail()
            nursery.cancel_scope.cancel()

    statuses = [status for status in ledger.attendance.values()]
    figures.update(
        **counts, device_time_span_s=OFFLINE_S, outbox_depth_before_reconnect=depth,
        buffering_s=round(buffer_s, 1), reconnect_after_uplink_back_s=round(connected_s, 2),
        all_delivered_after_uplink_back_s=round(delivered_s, 2),
        present=statuses.count("present"), late=statuses.count("late"),
        delivery_rate_per_s=round(EVENTS / delivered_s),
    )


async def _true(value: bool) -> bool:
    return value
