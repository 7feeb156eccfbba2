"""While PostgreSQL is unavailable nothing is acknowledged or dropped, and ingestion resumes by itself."""
from __future__ import annotations

import dataclasses
import time
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio
from support.hub_helpers import eventually
from support.tcp_proxy import TcpProxy

from hub.app.supervision import run_hub
from schemas import SensorReading, SensorReadingEvent, Topics, encode_event, new_event_id

BEFORE, DURING = 50, 200
#: The hub's longest pause between attempts while the database is away (defaults: 5 s before the start,
#: 2 s in the writer): short here, so the restored database is used at once rather than a backoff later.
RETRY_MAX_S = 0.25


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


METRICS_TOKEN = "outage-test-metrics-token"


async def test_ingestion_pauses_while_database_is_down_and_resumes(
    hub_settings, hub_campus, test_db, publisher, aio_loop,
):
    target = urlsplit(hub_settings.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    device = hub_campus.devices[0]
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)

    async def publish(first_seq: int, count: int) -> None:
        for seq in range(first_seq, first_seq + count):
            event = SensorReadingEvent(
                v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000), seq=seq,
                body=SensorReading(metric="co2", value=400 + seq, unit="ppm"))
            await publisher.publish(uplink, encode_event(event, device.alg, device.signing_key), qos=1)

    async def committed() -> int:
        return await test_db.fetchval("SELECT count(*) FROM sensor_readings")

    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        # The health detail needs a credential that works while the database is down: the metrics token.
        settings = dataclasses.replace(hub_settings, database_url=_via(hub_settings.database_url, port),
                                       metrics_token=METRICS_TOKEN, writer_retry_max_s=RETRY_MAX_S)
        hub = await nursery.start(partial(run_hub, settings, port=0))
        web = httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}",
                                headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

        await publish(1, BEFORE)
        await eventually(lambda: _equals(committed(), BEFORE))

        proxy.cut()
        acked_when_cut = hub.client.stats.acked
        await publish(BEFORE + 1, DURING)
        await trio.sleep(2)  # the hub receives them, tries to commit, and must not ack
        assert hub.client.stats.acked == acked_when_cut
        assert await committed() == BEFORE
        health = await web.get("/healthz")
        assert health.status_code == 503 and health.json()["database"]["ok"] is False

        proxy.restore()
        await eventually(lambda: _equals(committed(), BEFORE + DURING), timeout=30)
        # The writer acks right after its COMMIT, so the rows can be visible a moment before the acks.
        await eventually(lambda: _at_least_acked(hub, acked_when_cut + DURING))
        seqs = [r["seq"] for r in await test_db.fetch("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, BEFORE + DURING + 1))
        assert (await web.get("/healthz")).status_code == 200
        failures = next(line for line in hub.metrics.render().splitlines()
                        if line.startswith("campushub_db_write_failures_total "))
        assert float(failures.split()[1]) > 0, "the outage never reached the writer"
        await web.aclose()
        nursery.cancel_scope.cancel()


async def _equals(value, expected: int) -> bool:
    return (await value) == expected


async def test_hub_started_before_the_database_waits_for_it(hub_settings, hub_campus, aio_loop):
    target = urlsplit(hub_settings.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        proxy.cut()
        settings = dataclasses.replace(hub_settings, database_url=_via(hub_settings.database_url, port),
                                       database_wait_max_s=RETRY_MAX_S)
        started: list = []

        async def start_hub() -> None:
            started.append(await nursery.start(partial(run_hub, settings, port=None)))

        nursery.start_soon(start_hub)
        await trio.sleep(1.5)
        assert not started, "the hub claimed to be up without its database"
        proxy.restore()
        with trio.fail_after(15):
            while not started:
                await trio.sleep(0.05)
        assert started[0].root.lookup("writer").alive
        nursery.cancel_scope.cancel()


async def _at_least_acked(hub, count: int) -> bool:
    return hub.client.stats.acked >= count
