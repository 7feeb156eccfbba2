"""Fault 2: restart PostgreSQL under load; nothing is lost, and ingestion resumes without touching the hub."""
from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import httpx
import pytest
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

from hub.db import migrate, open_database, run_with_database
from hub.db.seed import ensure_campus
from hub.embedded import EmbeddedPostgres, start_embedded_postgres

ROOMS = 2
READINGS_PER_DEVICE = 1200
RATE_PER_DEVICE = 150.0  # 2 devices: ~300 events/s in all
STOP_AT = 0.3  # fraction of the load committed when PostgreSQL stops
DOWN_S = 5.0


class PrivatePostgres:
    """An embedded PostgreSQL of this test alone, stoppable and restartable on its data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres | None = None
        self.database = unique("faults_pg").replace("-", "_")

    def start(self) -> EmbeddedPostgres:
        # No port: the previous run's port is reused when free, so the hub's DSN stays valid.
        self.server = start_embedded_postgres(self.data_dir)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url(self.database)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under tmp_path: as root the server runs as `pgserver`, which must traverse to its data dir,
    # and pytest chmods /tmp/pytest-of-root to 0700 (see hub.embedded.postgres).
    data_dir = Path(tempfile.mkdtemp(prefix="campushub-faults-pg-"))
    pg = PrivatePostgres(data_dir)
    try:
        pg.start()
        run_with_database(pg.server.dsn, lambda db: db.execute(f"CREATE DATABASE {pg.database}"))
        run_with_database(pg.url, migrate)
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_postgres_restart_under_load_loses_nothing_and_ingestion_resumes_by_itself(
    private_postgres, private_broker, tmp_path, aio_loop, figures,
):
    pg = private_postgres
    async with open_database(pg.url, max_size=2) as db:
        campus = await ensure_campus(db, rooms=ROOMS, students=30, now=datetime.now(timezone.utc))
    prefix = unique("faults-pg")
    env = hub_env(database_url=pg.url, mqtt_url=private_broker.url, mqtt_cafile=private_broker.cafile, topic_prefix=prefix,
                  client_id=unique("hub-faults-pg"), data_dir=tmp_path / "hub")
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
    port_before = pg.server.port
    health: list[tuple[float, int]] = []  # (seconds since the stop, /healthz status)

    async with hub_launcher(env) as hubs:
        hub = await hubs.start()
        web = httpx.AsyncClient(base_url=hub.base_url, timeout=10)
        try:
            assert (await web.get("/healthz")).status_code == 200
            async with edge_agents(configs) as agents:
                began = time.monotonic()
                futures = [a.submit_items(loads[a.device_id], RATE_PER_DEVICE) for a in agents]
                async with open_database(pg.url, max_size=1) as db:
                    await eventually(lambda: _at_least(committed(db), int(total * STOP_AT)), timeout=60,
                                     interval=0.02)
                    at_stop = await committed(db)

                await trio.to_thread.run_sync(pg.stop)
                stopped_at = time.monotonic()
                submitted_at_stop = sum(a.submitted for a in agents)
                while time.monotonic() - stopped_at < DOWN_S:
                    health.append((time.monotonic() - stopped_at, (await web.get("/healthz")).status_code))
                    await trio.sleep(0.25)
                submitted_while_down = sum(a.submitted for a in agents) - submitted_at_stop

                await trio.to_thread.run_sync(pg.start)
                restarted_at = time.monotonic()
                assert pg.server.port == port_before, "PostgreSQL came back on another port"
                async with open_database(pg.url, max_size=2) as db:
                    resumed = await eventually(lambda: _above(committed(db), at_stop), timeout=30, interval=0.02)
                    resume_s = time.monotonic() - restarted_at
                    while (status := (await web.get("/healthz")).status_code) != 200:
                        health.append((time.monotonic() - stopped_at, status))
                        assert time.monotonic() - restarted_at < 30, "/healthz did not recover"
                        await trio.sleep(0.1)
                    health.append((time.monotonic() - stopped_at, status))
                    healthy_s = time.monotonic() - restarted_at

                    for agent, results in zip(agents, await wait_futures(futures, timeout=120)):
                        ledger.record(agent.device_id, results)
                    load_s = time.monotonic() - began
                    await all_committed(db, total, timeout=60, hub=hub, agents=agents)
                    caught_up_s = time.monotonic() - restarted_at
                    await eventually(lambda: _true(all(a.outbox_depth == 0 for a in agents)), timeout=30)
                    await trio.sleep(2)  # a late redelivery would add a duplicate: give it the chance
                    counts = await assert_exactly_once(db, ledger)
                    failures = _metric((await web.get("/metrics")).text, "campushub_db_write_failures_total")
        finally:
            await web.aclose()
        # The same process throughout: nobody restarted or reconfigured the hub.
        assert hubs.started == [hub] and hub.alive, hub.log_tail()
        assert await hub.terminate() == 0, hub.log_tail()

    down = [status for _, status in health if status != 200]
    assert down and set(down) == {503}, health
    assert health[-1][1] == 200
    first_503 = next(t for t, status in health if status == 503)
    assert counts["events"] == total
    assert failures > 0, "the outage never reached the writer"
    figures.update(
        devices=len(configs), rate_per_s=round(total / load_s), **counts, committed_at_stop=at_stop,
        postgres_down_s=round(restarted_at - stopped_at, 1), submitted_while_down=submitted_while_down,
        healthz_503_after_stop_s=round(first_503, 2), healthz_200_after_restart_s=round(healthy_s, 2),
        restart_to_first_commit_s=round(resume_s, 2), restart_to_caught_up_s=round(caught_up_s, 2),
        committed_when_resumed=resumed, db_write_failures=int(failures), same_port=True,
    )


def _metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _above(count, n: int):
    value = await count
    return value if value > n else 0


async def _true(value: bool) -> bool:
    return value
