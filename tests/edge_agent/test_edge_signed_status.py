"""The edge agent's statuses and Last Will are signed, bound to their connection, and accepted by a hub.

Two halves: against the broker alone (what goes over the wire: each status
verifies under the device's key, the Will carries its connection's ts + 1,
ts only ever grows), and against a running hub (every status and Will of a
connect / link loss / reconnect / clean stop is accepted and changes the
health as it should, with no rejection).
"""
from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edge_helpers import Collector, CuttableProxy, make_config, new_prefix, run_native
from support.hub_fixtures import edge_broker
from support.hub_helpers import AgentThread, agent_config, eventually
from support.tcp_proxy import TcpProxy

from edge_agent.agent import EdgeAgent
from hub.core.config import MqttUrl
from schemas import Topics, WireError, verify


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_statuses_and_will_are_signed_and_bound_to_their_connection(tmp_path: Path, alg: str) -> None:
    prefix = new_prefix()
    seed = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()

    async def main() -> None:
        proxy = CuttableProxy()
        await proxy.start()
        cfg = make_config(tmp_path, prefix, mqtt_url=proxy.url, alg=alg, signing_key=seed)
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = asyncio.create_task(agent.run())
            await asyncio.wait_for(agent.wait_online(), 5)
            await proxy.cut()  # the link dies: the broker publishes the Will set at connect
            await col.wait_for(lambda: [s.state for s in col.statuses(cfg.device_id)] == ["online", "offline"])
            await proxy.start()  # back: a new connection, then a clean stop
            await col.wait_for(lambda: len(col.statuses(cfg.device_id)) == 3)
            agent.stop()
            await asyncio.wait_for(task, 10)
            await col.wait_for(lambda: len(col.statuses(cfg.device_id)) == 4)
            signed = col.signed_statuses(cfg.device_id)
        await proxy.close()

        key = seed if alg == "hmac-sha256" else public
        for frame, _ in signed:
            assert frame.alg == alg
            verify(frame, key)  # raises unless the device's key signed it
            with pytest.raises(WireError):
                verify(frame, os.urandom(32))
        statuses = [status for _, status in signed]
        assert [(s.state, s.reason) for s in statuses] == [
            ("online", "connected"), ("offline", "connection lost"), ("online", "connected"), ("offline", "shutdown")]
        assert {s.device for s in statuses} == {cfg.device_id}
        online, will, again, shutdown = statuses
        assert will.ts == online.ts + 1  # the Will names its own connection
        assert online.ts < will.ts < again.ts < shutdown.ts  # the hub applies only newer statuses

    run_native(main())


async def test_a_hub_accepts_every_status_and_will_of_the_agent(hub, hub_settings, hub_campus, test_db, tmp_path):
    """Connect, lose the link (the broker fires the signed Will), reconnect, stop cleanly: four statuses,
    four accepted health changes, no rejection on the status topic."""
    device = hub_campus.devices[0]
    broker = MqttUrl.parse(hub_settings.mqtt_url)
    proxy = TcpProxy(broker.host, broker.port)

    async def health_is(online: bool, reason: str, connects: int):
        row = await test_db.fetchrow(
            "SELECT online, reason, (SELECT count(*) FROM device_health_history h"
            "  WHERE h.device_id = d.device_id AND change = 'online') AS connects"
            " FROM device_health d WHERE device_id = $1", device.device_id)
        return row is not None and (row["online"], row["reason"], row["connects"]) == (online, reason, connects)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        config = agent_config(device, **edge_broker(hub_settings, port=port), topic_prefix=hub_settings.topic_prefix,
                              outbox=tmp_path / "outbox.sqlite", reconnect_initial_s=0.1, reconnect_max_s=0.5)
        agent = await trio.to_thread.run_sync(AgentThread(config).start)
        try:
            await eventually(partial(health_is, True, "connected", 1), timeout=15)
            proxy.drop_all()  # the link dies: the broker publishes the agent's Will
            await eventually(partial(health_is, True, "connected", 2), timeout=15)  # back, by its own status
        finally:
            await trio.to_thread.run_sync(agent.stop)
        await eventually(partial(health_is, False, "shutdown", 2))
        nursery.cancel_scope.cancel()
    assert agent.error is None
    history = await test_db.fetch(
        "SELECT change, reason FROM device_health_history WHERE device_id = $1 AND change <> 'firmware' ORDER BY id",
        device.device_id)
    assert [(r["change"], r["reason"]) for r in history] == [
        ("online", "connected"), ("offline", "connection lost"), ("online", "connected"), ("offline", "shutdown")]
    topic = Topics(hub_settings.topic_prefix).status(device.device_id)
    assert await test_db.fetchval("SELECT count(*) FROM rejected_events WHERE topic = $1", topic) == 0
