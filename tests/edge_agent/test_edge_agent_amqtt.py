"""The edge agent on an MQTT 3.1.1-only broker: the embedded amqtt, selected by ``?protocol=3.1.1``."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Iterator

import aiomqtt
import pytest
from edge_helpers import make_config, new_prefix, run_native

from edge_agent.agent import EdgeAgent
from edge_agent.config import ConfigError, parse_mqtt_url
from hub.embedded import EmbeddedBroker, start_embedded_broker
from schemas import DeviceStatus, QrScanEvent, Topics, decode_frame, decode_status, verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with start_embedded_broker(tmp_path_factory.mktemp("amqtt"), prefer_mosquitto=False) as broker:
        yield broker


def v311_client(broker: EmbeddedBroker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V311,
                          identifier=f"{name}-{uuid.uuid4().hex[:8]}")


async def retained_status(broker: EmbeddedBroker, prefix: str, device_id: str) -> tuple[DeviceStatus, bool]:
    """What a newcomer sees on the status topic: (status, retain flag)."""
    async with v311_client(broker, "peek") as client:
        await client.subscribe(Topics(prefix).status(device_id), qos=1)
        async with asyncio.timeout(3):
            async for message in client.messages:
                return decode_status(bytes(message.payload))[1], message.retain  # type: ignore[arg-type]
    raise AssertionError("unreachable")


def test_protocol_in_the_url_is_parsed_and_checked() -> None:
    assert parse_mqtt_url("mqtt://h:1").protocol == "5"
    assert parse_mqtt_url("mqtt://h:1?protocol=5").protocol == "5"
    assert parse_mqtt_url("mqtt://u:p@h:1?protocol=3.1.1").protocol == "3.1.1"
    with pytest.raises(ConfigError, match="protocol must be one of 5, 3.1.1, got '3'"):
        parse_mqtt_url("mqtt://h:1?protocol=3")


def test_signed_event_and_retained_statuses_over_mqtt_311(tmp_path: Path, amqtt: EmbeddedBroker) -> None:
    assert amqtt.url.endswith("?protocol=3.1.1")
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix, mqtt_url=amqtt.url)
    assert cfg.endpoint.protocol == "3.1.1"
    topics = Topics(prefix)

    async def main() -> None:
        received: list[aiomqtt.Message] = []
        async with v311_client(amqtt, "collector") as collector, EdgeAgent(cfg) as agent:
            await collector.subscribe(topics.uplink(cfg.device_id), qos=1)

            async def collect() -> None:
                async for message in collector.messages:
                    received.append(message)

            collecting = asyncio.create_task(collect())
            task = asyncio.create_task(agent.run())
            try:
                await asyncio.wait_for(agent.wait_online(), 5)
                status, retained = await retained_status(amqtt, prefix, cfg.device_id)
                assert (status.state, retained) == ("online", True)

                seq = await agent.submit_qr("CH1.s-001.1234.abcdefghijklmnop", at=time.time())
                async with asyncio.timeout(5):
                    while not any(isinstance(decode_frame(bytes(m.payload))[1], QrScanEvent)  # type: ignore[arg-type]
                                  for m in received):
                        await asyncio.sleep(0.02)
                frame, event = next(
                    (f, e) for f, e in (decode_frame(bytes(m.payload)) for m in received)  # type: ignore[arg-type]
                    if isinstance(e, QrScanEvent))
                verify(frame, cfg.signing_key)
                assert event.device == cfg.device_id and event.seq == seq
                assert event.body.text == "CH1.s-001.1234.abcdefghijklmnop"
                async with asyncio.timeout(5):
                    while agent.outbox_depth:  # PUBACKed by amqtt
                        await asyncio.sleep(0.02)

                # A dead link: amqtt publishes the agent's Last Will, retained.
                assert agent.drop_connection()
                async with asyncio.timeout(5):
                    while True:
                        status, retained = await retained_status(amqtt, prefix, cfg.device_id)
                        if status.state == "offline":
                            break
                        await asyncio.sleep(0.05)
                assert (status.reason, retained) == ("connection lost", True)
                # The agent reconnects by itself and is online again.
                async with asyncio.timeout(10):
                    while (await retained_status(amqtt, prefix, cfg.device_id))[0].state != "online":
                        await asyncio.sleep(0.05)
                assert agent.stats.connects == 2
            finally:
                agent.stop()
                await asyncio.wait_for(task, 10)
                collecting.cancel()
                await asyncio.gather(collecting, return_exceptions=True)
            status, retained = await retained_status(amqtt, prefix, cfg.device_id)
            assert (status.state, status.reason, retained) == ("offline", "shutdown", True)

    run_native(main())
