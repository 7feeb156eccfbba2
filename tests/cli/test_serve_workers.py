"""`campushub serve --workers N` (hub/app/workers.py): one web port, N workers dividing the partitions."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from hub.app.workers import plan_workers, worker_ids
from hub.db import run_with_database

pytestmark = pytest.mark.integration


def test_worker_ids_are_stable_and_name_the_host():
    assert worker_ids(3, "lab 7.campus") == ("lab-7-campus-w0", "lab-7-campus-w1", "lab-7-campus-w2")


def test_the_plan_gives_every_worker_the_resolved_services_and_the_partition_count(tmp_path):
    plan = plan_workers(2, database_url="postgresql://db/x", mqtt_url="mqtt://broker", partitions=8,
                        data_dir=tmp_path, arguments=["--host", "0.0.0.0"], environment={"PATH": "/bin"})
    assert plan.environment == {"PATH": "/bin", "CAMPUSHUB_DATABASE_URL": "postgresql://db/x",
                                "CAMPUSHUB_MQTT_URL": "mqtt://broker", "CAMPUSHUB_PARTITIONS": "8",
                                "CAMPUSHUB_DATA_DIR": str(tmp_path),
                                "CAMPUSHUB_WORKER_PEERS": ",".join(plan.worker_ids)}
    assert len(plan.worker_ids) == 2
    with pytest.raises(ValueError, match="at least 1"):
        plan_workers(0, database_url="x", mqtt_url="y", partitions=8, data_dir=tmp_path, arguments=[])
    with pytest.raises(ValueError, match="at most the partition count"):
        plan_workers(9, database_url="x", mqtt_url="y", partitions=8, data_dir=tmp_path, arguments=[])


def _leases(database_url: str) -> dict[int, str | None]:
    rows = run_with_database(database_url, lambda db: db.fetch(
        "SELECT partition, owner FROM partition_leases WHERE expires_at > now()"))
    return {r["partition"]: r["owner"] for r in rows}


def test_two_workers_share_the_port_and_the_partitions_and_stop_cleanly(
    fresh_database_url, mqtt_server_url, topic_prefix, tmp_path,
):
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_MQTT_URL=mqtt_server_url,
               CAMPUSHUB_TOPIC_PREFIX=f"{topic_prefix}/workers", CAMPUSHUB_DATA_DIR=str(tmp_path),
               CAMPUSHUB_PARTITIONS="4", CAMPUSHUB_PARTITION_LEASE_S="3")
    parent = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--workers", "2", "--port", "0"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "serving http://" not in line and time.monotonic() < deadline:
            line = parent.stderr.readline()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        # Both workers hold an even share (two partitions each) within a few lease rounds.
        owners: dict[int, str | None] = {}
        while time.monotonic() < deadline:
            owners = _leases(fresh_database_url)
            if len(owners) == 4 and sorted(list(owners.values()).count(w) for w in set(owners.values())) == [2, 2]:
                break
            time.sleep(0.3)
        assert len(set(owners.values())) == 2 and len(owners) == 4, owners
        # Either worker answers on the one port.
        for _ in range(4):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code in (200, 503)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(40) == 0
        # Each worker handed its partitions back as it stopped: nothing waits for a lease to run out.
        assert _leases(fresh_database_url) == {}
        assert run_with_database(fresh_database_url, lambda db: db.fetchval("SELECT count(*) FROM hub_workers")) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
