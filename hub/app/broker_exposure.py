"""The startup check of the hub's broker: does it let anyone in, and let anyone read everything?

Once the hub's own client is subscribed, :func:`watch_broker_exposure` tries
what an outsider would: an anonymous CONNECT, and (only if that is accepted)
an anonymous subscription to ``#``. A broker that accepts either makes
``/healthz`` report ``degraded`` with the reason (unless
``Settings.open_broker_expected``), logs one CRITICAL line, and sets
``campushub_broker_open{check=...}`` in /metrics.

Concurrency contract: :func:`watch_broker_exposure` runs as one background
task of the hub's nursery, off the ingest path; it waits for the hub's
subscription, then spends at most ``timeout`` seconds (the blocking probe in
a worker thread, abandoned on timeout), never raises for a slow, refusing or
unreachable broker, and reports through ``on_result`` once.
"""
from __future__ import annotations

import functools
import logging
import ssl
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import trio

from hub.core.config import MqttUrl
from hub.embedded import probe_mqtt
from hub.mqtt import MqttError, MqttNotConnected, TrioMqttClient

log = logging.getLogger("hub.broker_check")

#: The whole check (anonymous CONNECT, then SUBSCRIBE "#") takes at most this long.
CHECK_TIMEOUT_S = 5.0
#: After a granted "#" subscription, how long to count the retained messages it brings in.
RETAINED_WINDOW_S = 0.3


@dataclass(frozen=True)
class BrokerExposure:
    """What an anonymous client could do on the hub's broker; ``None``: not determined."""

    anonymous_connect: bool | None
    anonymous_subscribe_all: bool | None
    #: Messages (retained ones: statuses) the anonymous "#" subscriber received within the check.
    anonymous_reads: int = 0
    #: Why a check could not conclude (timeout), else "".
    note: str = ""

    def problem(self) -> str | None:
        """The ``/healthz`` reason when the broker is open to anonymous clients, else ``None``."""
        if self.anonymous_subscribe_all:
            read = f" (it read {self.anonymous_reads} retained messages within {RETAINED_WINDOW_S:g} s)" \
                if self.anonymous_reads else ""
            return ("the broker accepts an anonymous connection and an anonymous subscription to '#'" + read +
                    ": anyone on its network can read every check-in and command, and publish as any device "
                    "(docs/provisioning.md: configure it with `campushub devices export-mosquitto`)")
        if self.anonymous_connect:
            return ("the broker accepts anonymous connections (its ACL refused a '#' subscription): anyone on "
                    "its network can connect (docs/provisioning.md)")
        return None

    def as_json(self) -> dict[str, Any]:
        return {"anonymous_connect": self.anonymous_connect, "anonymous_subscribe_all": self.anonymous_subscribe_all,
                "anonymous_reads": self.anonymous_reads, "note": self.note}


async def check_broker_exposure(
    url: MqttUrl, *, tls: ssl.SSLContext | None = None, timeout: float = CHECK_TIMEOUT_S,
) -> BrokerExposure:
    """Try an anonymous CONNECT to ``url``'s broker, then an anonymous SUBSCRIBE to ``#``; at most ``timeout`` s."""
    deadline = trio.current_time() + timeout
    if tls is None:
        # A bare 3.1.1 handshake in a thread: a refusal is one quiet CONNACK, not a client's retry log.
        accepted = await trio.to_thread.run_sync(
            functools.partial(probe_mqtt, url.host, url.port, timeout), abandon_on_cancel=True)
        if not accepted:
            if trio.current_time() >= deadline - 0.05:
                # The probe ran out its timeout: no CONNACK at all, which is not a refusal.
                return BrokerExposure(None, None, note=f"no CONNACK within {timeout:.1f} s")
            return BrokerExposure(False, None)
    # Over TLS the probe above cannot speak; the anonymous client below tells a refused CONNECT by itself.
    return await _anonymous_subscription(url, tls, max(0.5, deadline - trio.current_time()))


async def _anonymous_subscription(url: MqttUrl, tls: ssl.SSLContext | None, timeout: float) -> BrokerExposure:
    client = TrioMqttClient(
        host=url.host, port=url.port, client_id=f"campushub-exposure-check-{uuid.uuid4().hex[:8]}",
        protocol=url.protocol, tls=tls, clean_start=True, session_expiry_s=0, inbound_capacity=64,
    )
    # One attempt within the timeout: the backoff tunables, overridden before run() as documented.
    client.BACKOFF_MIN_S = client.BACKOFF_MAX_S = 2 * timeout
    granted: list[bool] = []
    done = trio.Event()

    async def subscribe_all(connected: TrioMqttClient) -> None:
        try:
            await connected.subscribe("#", qos=0)
        except MqttNotConnected:
            raise
        except MqttError:
            granted.append(False)
        else:
            granted.append(True)
        done.set()

    reads = 0
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(client.run, on_connect=subscribe_all))
            await done.wait()
            if granted[0]:
                await trio.sleep(RETAINED_WINDOW_S)
                reads = client.stats.received
            nursery.cancel_scope.cancel()
    if not granted:
        if client.connected or client.generation:
            return BrokerExposure(True, None, note=f"no SUBACK within {timeout:.1f} s")
        if tls is not None and client.stats.connect_failures:
            return BrokerExposure(False, None)
        return BrokerExposure(True if tls is None else None, None, note=f"no answer within {timeout:.1f} s")
    return BrokerExposure(True, granted[0], anonymous_reads=reads)


async def watch_broker_exposure(
    url: MqttUrl, subscribed: trio.Event, on_result: Callable[[BrokerExposure], None], *,
    tls: ssl.SSLContext | None = None, expected: bool = False, timeout: float = CHECK_TIMEOUT_S,
) -> None:
    """Once the hub is subscribed (so the broker answers), check it once and report; log what was found."""
    await subscribed.wait()
    try:
        exposure = await check_broker_exposure(url, tls=tls, timeout=timeout)
    except (OSError, ssl.SSLError, MqttError) as exc:
        exposure = BrokerExposure(None, None, note=f"check failed: {type(exc).__name__}: {exc}")
    on_result(exposure)
    problem = exposure.problem()
    if problem is None:
        if exposure.note:
            log.warning("broker %s: could not tell whether it admits anonymous clients (%s)", url, exposure.note)
        else:
            log.info("broker %s refuses anonymous clients", url)
    elif expected:
        log.warning("broker %s is open, as the settings expect (open_broker_expected): %s", url, problem)
    else:
        log.critical("INSECURE BROKER %s: %s", url, problem)
