"""Helpers shared by the MQTT adapter tests (MQTT 5 and 3.1.1)."""
from __future__ import annotations

import functools
import socket

import pytest
import trio

from hub.mqtt import InboundMessage, TrioMqttClient


async def start(nursery: trio.Nursery, client: TrioMqttClient, on_connect=None) -> TrioMqttClient:
    await nursery.start(functools.partial(client.run, on_connect=on_connect))
    return client


def subscriber(*filters: str):
    async def on_connect(c: TrioMqttClient) -> None:
        for f in filters:
            await c.subscribe(f, qos=1)

    return on_connect


async def receive(client: TrioMqttClient, timeout: float = 3.0) -> InboundMessage:
    with trio.fail_after(timeout):
        return await client.messages.receive()


async def assert_nothing(client: TrioMqttClient, wait: float = 0.5) -> None:
    with trio.move_on_after(wait):
        msg = await client.messages.receive()
        pytest.fail(f"unexpected message {msg}")


async def wait_until(pred, timeout: float = 3.0, step: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(step)


def drop_socket(client: TrioMqttClient) -> None:
    """Kill the TCP connection without DISCONNECT (as a network failure would)."""
    client._paho.socket().shutdown(socket.SHUT_RDWR)
