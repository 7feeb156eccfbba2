"""Fault 3: restart the broker under load; the edge keeps accepting events (outbox); all arrive exactly once."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import trio
from faults_helpers import (
    Ledger,
    agent_config,
    all_committed,
    assert_exactly_once,
    committed,
    device_of,
    edge_agents,
    eventually,
    hub_env,
    hub_launcher,
    live_load,
    unique,
    wait_futures,
)

from hub.db import open_database
from hub.db.seed import ensure_campus

ROOMS = 3
READINGS_PER_DEVICE = 1000
RATE_PER_DEVICE = 100.0  # 3 devices: ~300 events/s in all
STOP_AT = 0.3  # fraction of the load committed when the broker stops
DOWN_S = 5.0


async def test_broker_restart_under_load_loses_and_duplicates_nothing(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=ROOMS, students=30, now=datetime.now(timezone.utc))
        prefix = unique("faults-broker")
        env = hub_env(database_url=fresh_database_url, mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile,
                      topic_prefix=prefix,
                      client_id=unique("hub-faults-broker"), data_dir=tmp_path / "hub")
        ledger = Ledger()
        loads = {}
        for session in campus.sessions:
            loads[device_of(campus, session).device_id] = live_load(campus, session, READINGS_PER_DEVICE)
            for student_id in session.enrolled:
                ledger.expect_attendance(session.session_id, student_id, "present")
        total = sum(len(items) for items in loads.values())
        configs = [agent_config(device_of(campus, s), mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile,
                                topic_prefix=prefix,
                                outbox_dir=tmp_path) for s in campus.sessions]
        port_before = private_broker.port

        async with hub_launcher(env) as hubs:
            hub = await hubs.start()
            async with edge_agents(configs) as agents:
                began = time.monotonic()
                futures = [a.submit_items(loads[a.device_id], RATE_PER_DEVICE) for a in agents]
                await eventually(lambda: _at_least(committed(db), int(total * STOP_AT)), timeout=60, interval=0.02)

                await trio.to_thread.run_sync(private_broker.stop)
                stopped_at = time.monotonic()
                at_stop = await committed(db)
                submitted_at_stop = sum(a.submitted for a in agents)
                await trio.sleep(DOWN_S)  # the agents keep submitting: their outboxes fill
                buffered = sum(a.outbox_depth for a in agents)
                submitted_while_down = sum(a.submitted for a in agents) - submitted_at_stop
                drained_while_down = await committed(db)
                assert submitted_while_down > 0 and buffered > 0, "nothing was buffered at the edge"
                assert all(not a.connected for a in agents)

                await trio.to_thread.run_sync(private_broker.start)
                restarted_at = time.monotonic()
                assert private_broker.port == port_before, "the broker came back on another port"
                resumed = await eventually(lambda: _above(committed(db), drained_while_down), timeout=40,
                                           interval=0.02)
                resume_s = time.monotonic() - restarted_at
                await eventually(lambda: _true(all(a.connected for a in agents)), timeout=40)
                agents_back_s = time.monotonic() - restarted_at

                for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                    ledger.record(agent.device_id, results)
                load_s = time.monotonic() - began
                await all_committed(db, total, timeout=60, hub=hub, agents=agents)
                caught_up_s = time.monotonic() - restarted_at
                await eventually(lambda: _true(all(a.outbox_depth == 0 for a in agents)), timeout=30)
                await trio.sleep(2)  # a late redelivery would add a duplicate: give it the chance
                counts = await assert_exactly_once(db, ledger)
            assert hub.alive, "the hub died with the broker:\n" + hub.log_tail()
            assert await hub.terminate() == 0, hub.log_tail()

    assert counts["events"] == total
    figures.update(
        devices=len(configs), rate_per_s=round(total / load_s), **counts,
        committed_at_stop=at_stop, committed_while_down=drained_while_down - at_stop,
        broker_down_s=round(restarted_at - stopped_at, 1), submitted_while_down=submitted_while_down,
        outbox_depth_at_restart=buffered, restart_to_first_commit_s=round(resume_s, 2),
        restart_to_all_agents_connected_s=round(agents_back_s, 2),
        restart_to_caught_up_s=round(caught_up_s, 2), committed_when_resumed=resumed,
    )


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _above(count, n: int):
    value = await count
    return value if value > n else 0


async def _true(value: bool) -> bool:
    return value
