"""Fault 1: kill -9 the hub twice under sustained load from real edge agents; every event lands exactly once."""
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

ROOMS = 4
READINGS_PER_DEVICE = 800
RATE_PER_DEVICE = 80.0  # 4 devices: ~320 events/s in all
KILL_AT = (0.2, 0.55)  # fractions of the load committed when each kill -9 lands


async def test_hub_killed_twice_under_load_commits_every_event_exactly_once(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        await _run(db, fresh_database_url, private_broker, tmp_path, figures)


async def _run(db, database_url, private_broker, tmp_path, figures) -> None:
    campus = await ensure_campus(db, rooms=ROOMS, students=40, now=datetime.now(timezone.utc))
    prefix = unique("faults-kill")
    env = hub_env(database_url=database_url, mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile, topic_prefix=prefix,
                  client_id=unique("hub-faults-kill"), data_dir=tmp_path / "hub")
    ledger = Ledger()
    loads = {}
    for session in campus.sessions:
        device = device_of(campus, session)
        loads[device.device_id] = live_load(campus, session, READINGS_PER_DEVICE)
        for student_id in session.enrolled:
            ledger.expect_attendance(session.session_id, student_id, "present")
    total = sum(len(items) for items in loads.values())
    configs = [agent_config(device_of(campus, s), mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile,
                            topic_prefix=prefix,
                            outbox_dir=tmp_path) for s in campus.sessions]

    async with hub_launcher(env) as hubs:
        hub = await hubs.start()
        async with edge_agents(configs) as agents:
            began = time.monotonic()
            futures = [a.submit_items(loads[a.device_id], RATE_PER_DEVICE) for a in agents]
            kills = []
            for fraction in KILL_AT:
                await eventually(lambda threshold=int(total * fraction): _at_least(committed(db), threshold), timeout=60,
                                 interval=0.02)
                hub.kill9()
                await hub.process.wait()
                at_kill = await committed(db)
                submitted = sum(a.submitted for a in agents)
                assert submitted < total, "the load ended before the kill; nothing was tested"
                restart_began = time.monotonic()
                hub = await hubs.start()
                resumed = await eventually(lambda at_kill=at_kill: _above(committed(db), at_kill), timeout=30, interval=0.02)
                kills.append({"committed_at_kill": at_kill, "submitted_at_kill": submitted,
                              "restart_to_serving_s": round(hub.startup_s, 2),
                              "kill_to_first_new_commit_s": round(time.monotonic() - restart_began, 2),
                              "committed_when_resumed": resumed})
            for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                ledger.record(agent.device_id, results)
            load_s = time.monotonic() - began
            await all_committed(db, total, timeout=60, hub=hub, agents=agents)
            done_s = time.monotonic() - began
            await eventually(lambda: _all_zero(a.outbox_depth for a in agents), timeout=30)
            await trio.sleep(2)  # a redelivery arriving late would add a duplicate: give it the chance
            counts = await assert_exactly_once(db, ledger)
        assert await hub.terminate() == 0, hub.log_tail()

    assert counts["events"] == total
    figures.update(
        devices=len(configs), rate_per_s=round(total / load_s), load_s=round(load_s, 1),
        all_committed_after_s=round(done_s, 1), kills=kills, **counts,
    )


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _above(count, n: int):
    value = await count
    return value if value > n else 0


async def _all_zero(values) -> bool:
    return all(v == 0 for v in values)
