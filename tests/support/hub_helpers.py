"""Helpers for tests that run the whole hub: an edge agent in its own thread, polling, signing."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from hub.core.campus import Campus, DeviceCredentials, LiveSession, StudentCredentials
from schemas import Event, QrScan, QrScanEvent, encode_event, new_event_id


class AgentThread:
    """A real :class:`EdgeAgent` on its own asyncio loop in a thread, as on a classroom computer.

    ``submit_qr`` blocks the calling thread until the event is in the outbox:
    call it from trio through ``trio.to_thread.run_sync``.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.agent: EdgeAgent | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"agent-{config.device_id}", daemon=True)

    def start(self) -> "AgentThread":
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("edge agent did not start")
        return self

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self.agent = EdgeAgent(self.config)
            self._ready.set()
            try:
                await self.agent.run()
            finally:
                self.agent.close()

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self._ready.set()

    def call(self, coroutine_function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine_function(*args), self._loop).result(15)

    def submit_qr(self, text: str, at: float | None = None) -> Any:
        return self.call(self.agent.submit_qr, text, at)

    def stop(self) -> None:
        if self._loop is not None and self.agent is not None:
            self._loop.call_soon_threadsafe(self.agent.stop)
        self._thread.join(20)


def agent_config(device: DeviceCredentials, *, mqtt_url: str, topic_prefix: str, outbox: Path,
                 **overrides: Any) -> AgentConfig:
    return AgentConfig(
        device_id=device.device_id, room_id=device.room_id, alg=device.alg, signing_key=device.signing_key,
        mqtt_url=mqtt_url, topic_prefix=topic_prefix, outbox_path=outbox, **overrides,
    )


def session_with_device(campus: Campus, index: int = 0) -> tuple[LiveSession, DeviceCredentials]:
    session = campus.sessions[index]
    device = next(d for d in campus.devices if d.room_id == session.room_id)
    return session, device


def student(campus: Campus, student_id: str) -> StudentCredentials:
    return next(s for s in campus.students if s.student_id == student_id)


def signed_scan(device: DeviceCredentials, text: str, *, seq: int, at: float | None = None) -> bytes:
    """A correctly signed QR scan frame, built the way a device builds one."""
    event: Event = QrScanEvent(
        v=1, id=new_event_id(), device=device.device_id, ts=int((at or time.time()) * 1000), seq=seq,
        body=QrScan(text=text),
    )
    return encode_event(event, device.alg, device.signing_key)


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value after ``timeout``."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = await check()
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")

