"""Fault 6: the workers of a partitioned hub (issue 13 part 2) killed and cut off; every event lands once, in order.

The hub runs as ``campushub serve`` workers with ``CAMPUSHUB_PARTITIONS`` set:
they share the rooms through partition leases in PostgreSQL, each owned
partition one persistent MQTT session on the private broker
(hub/app/partition_sessions.py). Four faults, each under load: real edge
agents publishing signed events (4 rooms: the partition split puts devices
on both workers, checked before any fault), or for the backlog a publisher
straight onto the broker:

1. kill -9 of one of two workers mid-stream: the survivor holds every
   partition within the bound below, and drains the dead one's sessions;
2. kill -9 of the only worker mid-drain of a backlog queued while it was
   stopped (its partition sessions made by a first start);
3. a PostgreSQL restart (down longer than a lease), then a broker restart,
   with two workers: both hold their share again, the same processes;
4. ``campushub serve --workers 2``: kill -9 of one child; the parent starts
   it again and both hold their share again.

After each: :func:`assert_exactly_once` (every (device, seq) once, no
rejection, the attendance and token uses the check-ins make),
:func:`assert_event_ids_once` (each event id once in ``events`` and
``sensor_readings``; the backlog's published ids too) and
:func:`assert_device_order`: per device, by ``events.committed_at`` groups,
no event committed after a later one of its device, with one exception the
pipeline makes in a single process as well: a QR scan goes through its
session actor before the writer, so the device's next readings can reach an
earlier commit (counted as ``scans_overtaken`` in the figures); scans keep
their order among themselves.

The take-over bound asserted in 1: ``LEASE_S + LEASE_S / 3 + 1 s``. The dead
worker's leases were renewed at most at the kill, so they run out at most
one lease after it (by PostgreSQL's clock, which judges them; its heartbeat,
written before each renewal, is stale by then too, so the survivor's share
becomes every partition); the survivor looks at most one round (a third of
the lease) later; 1 s is for that round's statements on a busy machine and
this test's polling. "Lease + 1 s" alone would fail whenever the expiry
falls just after a round.
"""
from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import httpx
import trio
from faults_helpers import (
    Beat,
    HubProcess,
    Item,
    Ledger,
    agent_config,
    all_committed,
    assert_device_order,
    assert_event_ids_once,
    assert_exactly_once,
    assert_published_ids_once,
    committed,
    device_of,
    edge_agents,
    eventually,
    held_by,
    hub_env,
    hub_launcher,
    live_load,
    partition_holders,
    raw_publisher,
    serve_workers,
    unique,
    until_subscribed,
    wait_futures,
    worker_env,
)
from test_faults_postgres_restart import private_postgres  # noqa: F401 - the private PostgreSQL fixture

from hub.core.campus import Campus
from hub.db import Database, open_database
from hub.db.seed import ensure_campus
from hub.domain.partitions import partition_of_room

PARTITIONS = 8
#: Short, so that a take-over fits the test; the keeper's rounds are a third of it.
LEASE_S = 3.0
TAKEOVER_BOUND_S = LEASE_S + LEASE_S / 3 + 1.0
ROOMS = 4  # rooms 001..004 fall in partitions 1, 3, 5 and 6
STUDENTS = 40
METRICS_TOKEN = "faults-workers-metrics-token"  # for the detailed /healthz (the partitions a worker holds)

# 1. kill -9 of one of two workers
KILL_READINGS = 1000
KILL_RATE = 80.0  # per device: 4 devices, ~320 events/s, ~12.5 s of load
KILL_AT = 0.35  # fraction of the load committed when the kill lands

# 2. the backlog: 20 devices x 1,000 readings (+ a check-in of each enrolled student) = 20,060 events,
# published straight to the broker (edge agents' outboxes queue only ~400 events/s here). The issue's
# 300,000 would take 1.5-4 minutes to drain on this shared 2-core machine (1,200-6,600 events/s measured
# for one worker) and about one more to publish; each start of the worker costs 3-8 s besides. 20,000
# queue in 4-6 s and drain in 9-11 s with the kill and a restart (the test: 25-60 s), and the kill (at
# 30 %) lands with messages in every state: committed and acknowledged, committed but not yet
# acknowledged (up to 500 per partition session), delivered but not committed, and queued. 1,000 per
# device stays far inside the hub's per-device burst (CAMPUSHUB_DEVICE_BURST, 10,000), and device times
# 2 ms apart inside its flood threshold (1,000 a second of the device's clock): a backlog, not a flood.
BACKLOG_ROOMS = 20
BACKLOG_STUDENTS = 60
BACKLOG_READINGS = 1000
BACKLOG_KILL_AT = 0.3  # fraction of the backlog committed when the kill lands

# 3. PostgreSQL, then the broker
RESTART_READINGS = 1600
RESTART_RATE = 50.0  # per device: 4 devices, ~200 events/s, ~32 s of load: both restarts fall inside it
PG_STOP_AT = 0.2
DOWN_S = 5.0  # PostgreSQL: longer than a lease, so the workers stop serving and claim again

# 4. serve --workers 2
LAUNCHER_READINGS = 1000
LAUNCHER_RATE = 80.0
LAUNCHER_KILL_AT = 0.35


def _env(database_url: str, broker, prefix: str, tmp_path: Path) -> dict[str, str]:
    return dict(hub_env(database_url=database_url, mqtt_url=broker.url, mqtt_cafile=broker.cafile,
                        topic_prefix=prefix, client_id=unique("hub-faults-workers"), data_dir=tmp_path / "hub"),
                CAMPUSHUB_METRICS_TOKEN=METRICS_TOKEN)


def _worker(env: dict[str, str], worker_id: str) -> dict[str, str]:
    return worker_env(env, worker_id, partitions=PARTITIONS, lease_s=LEASE_S)


def _loads(campus: Campus, readings: int) -> tuple[dict[str, list[Item]], Ledger]:
    """Each room's device: ``readings`` readings with a live check-in of each enrolled student among them."""
    ledger = Ledger()
    loads = {}
    for session in campus.sessions:
        loads[device_of(campus, session).device_id] = live_load(campus, session, readings)
        for student_id in session.enrolled:
            ledger.expect_attendance(session.session_id, student_id, "present")
    return loads, ledger


def _configs(campus: Campus, broker, prefix: str, tmp_path: Path) -> list:
    return [agent_config(device_of(campus, s), mqtt_url=broker.url, mqtt_cafile=broker.cafile, topic_prefix=prefix,
                         outbox_dir=tmp_path) for s in campus.sessions]


async def _subscribed(db: Database, agents) -> int:
    """Heartbeats until each agent's device has an event committed: its partition session is subscribed
    (before a session's first subscription the broker drops what the device publishes)."""
    by_id = {a.device_id: a for a in agents}

    async def probe(missing: list[str]) -> None:
        await wait_futures([by_id[d].submit_items([Beat()], None) for d in missing], timeout=30)

    return await until_subscribed(db, list(by_id), probe)


async def _balanced(db: Database, workers: Sequence[str] | int, *,
                    renewed_after: datetime | None = None) -> dict[str, set[int]] | None:
    """Who holds what, once the given workers (or that many) hold an even share each of every partition
    (``renewed_after``: by leases claimed or renewed after that moment of the database's clock)."""
    expiring_after = None if renewed_after is None else renewed_after + timedelta(seconds=LEASE_S)
    by_worker = held_by(await partition_holders(db, PARTITIONS, expiring_after=expiring_after))
    count = workers if isinstance(workers, int) else len(workers)
    if isinstance(workers, int) or set(by_worker) == set(workers):
        if len(by_worker) == count and all(len(held) == PARTITIONS // count for held in by_worker.values()):
            return by_worker
    return None


def _devices_of(campus: Campus, partitions: set[int]) -> list[str]:
    return [d.device_id for d in campus.devices if partition_of_room(d.room_id, PARTITIONS) in partitions]


async def _owned_in_memory(hub: HubProcess) -> list[int]:
    """The partitions the worker serves by its own account (detailed /healthz, with the metrics token)."""
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=10) as web:
        health = await web.get("/healthz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    return list(health.json()["partitions"]["owned"])


async def _committed_of(db: Database, devices: Sequence[str]) -> int:
    return await db.fetchval("SELECT count(*) FROM events WHERE device_id = ANY($1::text[])", list(devices))


async def _final_checks(db: Database, ledger: Ledger, total: int, hub: HubProcess, agents) -> dict:
    await all_committed(db, total, timeout=60, hub=hub, agents=agents)
    await eventually(lambda: _true(all(a.outbox_depth == 0 for a in agents)), timeout=30)
    await trio.sleep(2)  # a redelivery arriving late would add a duplicate: give it the chance
    counts = await assert_exactly_once(db, ledger)
    assert counts["events"] == total
    ids = await assert_event_ids_once(db)
    order = await assert_device_order(db)
    return {**counts, **ids, "commits_in_device_order": order["commits"], "scans_overtaken": order["scans_overtaken"]}


# --------------------------------------------------------------------------- 1. kill -9 of one of two workers


async def test_kill9_of_one_of_two_workers_moves_its_partitions_and_loses_nothing(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=ROOMS, students=STUDENTS, now=datetime.now(timezone.utc))
        prefix = unique("faults-workers-kill")
        env = _env(fresh_database_url, private_broker, prefix, tmp_path)
        loads, ledger = _loads(campus, KILL_READINGS)
        load_total = sum(len(items) for items in loads.values())

        async with hub_launcher(_worker(env, "w1")) as first, hub_launcher(_worker(env, "w2")) as second:
            workers = {"w1": await first.start(), "w2": await second.start()}
            shares = await eventually(lambda: _balanced(db, list(workers)), timeout=30)
            devices = {w: _devices_of(campus, shares[w]) for w in workers}
            assert all(devices.values()), f"a worker serves no device, nothing would be tested: {shares}"
            victim_id, survivor_id = "w1", "w2"
            victim, survivor = workers[victim_id], workers[survivor_id]
            async with edge_agents(_configs(campus, private_broker, prefix, tmp_path)) as agents:
                await _subscribed(db, agents)
                total = load_total
                began = time.monotonic()
                futures = [a.submit_items(loads[a.device_id], KILL_RATE) for a in agents]
                await eventually(lambda: _at_least(committed(db), int(total * KILL_AT)), timeout=60, interval=0.02)
                moved_at_kill = await _committed_of(db, devices[victim_id])
                victim.kill9()
                killed_at = time.monotonic()
                await victim.process.wait()
                at_kill = await committed(db)
                submitted = sum(a.submitted for a in agents)
                assert submitted < total, "the load ended before the kill; nothing was tested"

                async def survivor_holds_all() -> bool:
                    return held_by(await partition_holders(db, PARTITIONS)) == {survivor_id: set(range(PARTITIONS))}

                await eventually(survivor_holds_all, timeout=TAKEOVER_BOUND_S + 20, interval=0.05)
                takeover_s = time.monotonic() - killed_at
                assert takeover_s <= TAKEOVER_BOUND_S, (
                    f"the survivor held every partition {takeover_s:.2f} s after the kill, beyond the lease "
                    f"({LEASE_S:g} s) + a round ({LEASE_S / 3:g} s) + 1 s")
                await eventually(lambda: _above(_committed_of(db, devices[victim_id]), moved_at_kill), timeout=30,
                                 interval=0.02)
                moved_s = time.monotonic() - killed_at

                for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                    ledger.record(agent.device_id, results)
                load_s = time.monotonic() - began
                counts = await _final_checks(db, ledger, total, survivor, agents)
                # The survivor serves them by its own account too, not only by the leases.
                await eventually(lambda: _is(_owned_in_memory(survivor), list(range(PARTITIONS))), timeout=10)
            assert victim.process.returncode == -signal.SIGKILL
            assert await survivor.terminate() == 0, survivor.log_tail()

    figures.update(
        workers=2, partitions=PARTITIONS, lease_s=LEASE_S, devices=len(agents),
        devices_per_worker={w: len(d) for w, d in devices.items()}, rate_per_s=round(load_total / load_s),
        committed_at_kill=at_kill, submitted_at_kill=submitted, kill_to_all_partitions_held_s=round(takeover_s, 2),
        bound_s=round(TAKEOVER_BOUND_S, 2), kill_to_first_commit_of_moved_device_s=round(moved_s, 2), **counts,
    )


# --------------------------------------------------------------------------- 2. kill -9 mid-drain of a backlog


async def test_kill9_of_the_only_worker_mid_drain_of_a_backlog_loses_nothing(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=BACKLOG_ROOMS, students=BACKLOG_STUDENTS,
                                     now=datetime.now(timezone.utc))
        prefix = unique("faults-workers-backlog")
        env = _worker(_env(fresh_database_url, private_broker, prefix, tmp_path), "w1")
        loads, ledger = _loads(campus, BACKLOG_READINGS)
        devices = {device_of(campus, s): loads[device_of(campus, s).device_id] for s in campus.sessions}
        backlog = sum(len(items) for items in loads.values())

        async with hub_launcher(env) as hubs, raw_publisher(private_broker.url, private_broker.cafile,
                                                             prefix) as publisher:
            hub = await hubs.start()
            # The first start makes the partition sessions and subscribes them; a clean stop keeps them
            # on the broker and releases the leases.
            by_id = {d.device_id: d for d in devices}
            await until_subscribed(db, list(by_id), lambda missing: publisher.publish(
                {by_id[d]: [Beat()] for d in missing}))
            assert await hub.terminate() == 0, hub.log_tail()
            assert set((await partition_holders(db, PARTITIONS)).values()) == {None}

            queue_began = time.monotonic()
            for device_id, results in (await publisher.publish(devices)).items():
                ledger.record(device_id, results)
            queued_s = time.monotonic() - queue_began  # every PUBACK back: all of it waits in the sessions
            total = backlog
            assert await committed(db) == 0, "something drained the backlog while no worker ran"

            hub = await hubs.start()
            drain_began = time.monotonic()
            await eventually(lambda: _at_least(committed(db), int(total * BACKLOG_KILL_AT)), timeout=60,
                             interval=0.02)
            hub.kill9()
            killed_at = time.monotonic()
            await hub.process.wait()
            at_kill = await committed(db)
            assert at_kill < total, "the drain ended before the kill; nothing was tested"
            first_drain_rate = at_kill / (killed_at - drain_began)

            hub = await hubs.start()
            restarted_at = time.monotonic()
            await eventually(lambda: _above(committed(db), at_kill), timeout=30, interval=0.02)
            first_new_commit_s = time.monotonic() - restarted_at
            counts = await _final_checks(db, ledger, total, hub, ())
            drained_s = time.monotonic() - drain_began
            published = await assert_published_ids_once(db, publisher.ids)
            assert await hub.terminate() == 0, hub.log_tail()

    figures.update(
        backlog=backlog, devices=len(devices), queued_s=round(queued_s, 1), committed_at_kill=at_kill,
        drain_rate_before_kill_per_s=round(first_drain_rate), restart_to_serving_s=round(hub.startup_s, 2),
        restart_to_first_new_commit_s=round(first_new_commit_s, 2), drain_with_kill_s=round(drained_s, 1),
        published_ids=published, **counts,
    )


# --------------------------------------------------------------------------- 3. PostgreSQL, then the broker


async def test_postgres_and_broker_restarts_with_two_workers_lose_nothing(
    private_postgres, private_broker, tmp_path, aio_loop, figures,  # noqa: F811 - the imported fixture
):
    pg = private_postgres
    async with open_database(pg.url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=ROOMS, students=STUDENTS, now=datetime.now(timezone.utc))
    prefix = unique("faults-workers-restarts")
    env = _env(pg.url, private_broker, prefix, tmp_path)
    loads, ledger = _loads(campus, RESTART_READINGS)
    load_total = sum(len(items) for items in loads.values())
    worker_ids = ["w1", "w2"]

    async with hub_launcher(_worker(env, "w1")) as first, hub_launcher(_worker(env, "w2")) as second:
        workers = [await first.start(), await second.start()]
        async with open_database(pg.url, max_size=2) as db:
            await eventually(lambda: _balanced(db, worker_ids), timeout=30)
        async with edge_agents(_configs(campus, private_broker, prefix, tmp_path)) as agents:
            async with open_database(pg.url, max_size=2) as db:
                await _subscribed(db, agents)
                total = load_total
                began = time.monotonic()
                futures = [a.submit_items(loads[a.device_id], RESTART_RATE) for a in agents]
                await eventually(lambda: _at_least(committed(db), int(total * PG_STOP_AT)), timeout=60, interval=0.02)

            # PostgreSQL down for longer than a lease: the workers stop serving, then claim again.
            await trio.to_thread.run_sync(pg.stop)
            pg_stopped_at = time.monotonic()
            await trio.sleep(DOWN_S)
            submitted_at_pg_back = sum(a.submitted for a in agents)
            await trio.to_thread.run_sync(pg.start)
            pg_back_at = time.monotonic()
            async with open_database(pg.url, max_size=2) as db:
                at_pg_restart = await committed(db)
                await eventually(lambda: _above(committed(db), at_pg_restart), timeout=30, interval=0.02)
                pg_first_commit_s = time.monotonic() - pg_back_at
                await eventually(lambda: _balanced(db, worker_ids), timeout=30, interval=0.05)
                pg_balanced_s = time.monotonic() - pg_back_at
                for hub in workers:  # the outage outlasted the leases: each worker stopped serving, then claimed
                    assert any("leases ran out" in line for line in hub.problems), hub.log_tail()
                assert sum(a.submitted for a in agents) < total, "the load ended before the broker restart"

                # The broker: every partition session (and the edge agents) reconnect to it.
                await trio.to_thread.run_sync(private_broker.stop)
                broker_stopped_at = time.monotonic()
                at_broker_stop = await committed(db)
                await trio.sleep(DOWN_S)
                buffered = sum(a.outbox_depth for a in agents)
                await trio.to_thread.run_sync(private_broker.start)
                broker_back_at = time.monotonic()
                drained_while_down = await committed(db)
                await eventually(lambda: _above(committed(db), drained_while_down), timeout=40, interval=0.02)
                broker_first_commit_s = time.monotonic() - broker_back_at
                await eventually(lambda: _balanced(db, worker_ids), timeout=30, interval=0.05)
                broker_balanced_s = time.monotonic() - broker_back_at

                for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                    ledger.record(agent.device_id, results)
                load_s = time.monotonic() - began
                counts = await _final_checks(db, ledger, total, workers[0], agents)
                shares = await eventually(lambda: _balanced(db, worker_ids), timeout=10)
        for hub, worker_id in zip(workers, worker_ids):
            # Both started once and never died: they rode out both outages in the same processes.
            assert hub.alive, f"{worker_id} died:\n{hub.log_tail()}"
            assert sorted(await _owned_in_memory(hub)) == sorted(shares[worker_id])
        assert first.started == [workers[0]] and second.started == [workers[1]]
        for hub in workers:
            assert await hub.terminate() == 0, hub.log_tail()

    figures.update(
        workers=2, devices=len(agents), rate_per_s=round(load_total / load_s), postgres_down_s=round(
            pg_back_at - pg_stopped_at, 1), submitted_at_pg_back=submitted_at_pg_back,
        pg_restart_to_first_commit_s=round(pg_first_commit_s, 2), pg_restart_to_balanced_s=round(pg_balanced_s, 2),
        broker_down_s=round(broker_back_at - broker_stopped_at, 1), committed_at_broker_stop=at_broker_stop,
        outbox_depth_at_broker_restart=buffered, broker_restart_to_first_commit_s=round(broker_first_commit_s, 2),
        broker_restart_to_balanced_s=round(broker_balanced_s, 2), **counts,
    )


# --------------------------------------------------------------------------- 4. serve --workers 2


async def test_serve_workers_restarts_a_killed_worker_and_loses_nothing(
    fresh_database_url, private_broker, tmp_path, aio_loop, figures,
):
    async with open_database(fresh_database_url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=ROOMS, students=STUDENTS, now=datetime.now(timezone.utc))
        prefix = unique("faults-workers-launcher")
        # No worker id: the parent names its workers <host>-w0 and <host>-w1.
        env = dict(_env(fresh_database_url, private_broker, prefix, tmp_path),
                   CAMPUSHUB_PARTITIONS=str(PARTITIONS), CAMPUSHUB_PARTITION_LEASE_S=f"{LEASE_S:g}")
        env.pop("CAMPUSHUB_WORKER_ID", None)
        loads, ledger = _loads(campus, LAUNCHER_READINGS)
        load_total = sum(len(items) for items in loads.values())

        async with serve_workers(env, 2) as parent:
            began_serving = time.monotonic()
            shares = await eventually(lambda: _balanced(db, 2), timeout=60, interval=0.1)
            both_holding_s = time.monotonic() - began_serving
            assert set(shares) == set(parent.worker_pids), (shares, dict(parent.worker_pids))
            victim_id = sorted(shares)[0]
            async with edge_agents(_configs(campus, private_broker, prefix, tmp_path)) as agents:
                await _subscribed(db, agents)
                total = load_total
                futures = [a.submit_items(loads[a.device_id], LAUNCHER_RATE) for a in agents]
                await eventually(lambda: _at_least(committed(db), int(total * LAUNCHER_KILL_AT)), timeout=60,
                                 interval=0.02)
                victim_pid = parent.worker_pids[victim_id][-1]
                killed_in_db = await db.fetchval("SELECT now()")
                os.kill(victim_pid, signal.SIGKILL)
                killed_at = time.monotonic()
                at_kill = await committed(db)
                assert sum(a.submitted for a in agents) < total, "the load ended before the kill; nothing was tested"

                await eventually(lambda: _true(len(parent.worker_pids[victim_id]) == 2), timeout=30)
                restarted_s = time.monotonic() - killed_at
                assert parent.worker_pids[victim_id][-1] != victim_pid
                assert parent.worker_pids[victim_id][-1] in parent.current_worker_pids()  # a child of the parent
                # Leases renewed after the kill: held by the live processes, the new one among them (the
                # dead one's leases stay in the table, under the same worker id, until they run out).
                again = await eventually(lambda: _balanced(db, list(shares), renewed_after=killed_in_db), timeout=60,
                                         interval=0.05)
                balanced_s = time.monotonic() - killed_at

                for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                    ledger.record(agent.device_id, results)
                counts = await _final_checks(db, ledger, total, parent, agents)
                assert await _balanced(db, list(shares)), "a worker lost its share after the kill"
            assert parent.alive and len(parent.worker_pids) == 2
            assert await parent.terminate(timeout=45) == 0, parent.log_tail()
            assert set((await partition_holders(db, PARTITIONS)).values()) == {None}  # released as they stopped

    figures.update(
        workers=2, devices=len(agents), serving_to_both_holding_s=round(both_holding_s, 2), committed_at_kill=at_kill,
        kill_to_restarted_s=round(restarted_s, 2), kill_to_both_holding_again_s=round(balanced_s, 2),
        shares_after={w: len(p) for w, p in again.items()}, **counts,
    )


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _above(count, n: int):
    value = await count
    return value if value > n else 0


async def _is(value, expected) -> bool:
    return (await value) == expected


async def _true(value: bool) -> bool:
    return value
