"""Fault-injection tests: run only by ``./dev faults`` (``CAMPUSHUB_FAULTS=1``), never by ``./dev test``.

Without ``CAMPUSHUB_FAULTS=1`` every file in this folder is ignored at
collection (not skipped), so the unit suite neither runs nor reports them.

Each test runs the real hub as a ``campushub serve`` subprocess against
PRIVATE services it starts itself (an embedded Mosquitto, and for the
PostgreSQL restart an embedded PostgreSQL) or a database of its own on the
shared PostgreSQL, with its own topic prefix and MQTT client ids; it never
stops or restarts the shared services. Every process and private service is
stopped in a ``finally``.

The figures each test measured are printed at the end of the run
("fault figures"); docs/reliability.md quotes them. A failing test prints the
hub's log tail; ``CAMPUSHUB_FAULTS_LOGS=DIR`` also keeps every hub's whole log
in DIR.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from hub.embedded import EmbeddedBroker, start_embedded_broker

RUN_FAULTS = os.environ.get("CAMPUSHUB_FAULTS", "") == "1"

if not RUN_FAULTS:
    collect_ignore_glob = ["*"]

#: test name -> the figures it measured, printed in the terminal summary.
FIGURES: dict[str, dict] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not FIGURES:
        return
    terminalreporter.section("fault figures")
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures, sort_keys=False)}")


@pytest.fixture
def figures(request) -> dict:
    """A dict the test fills with what it measured (shown in the terminal summary)."""
    record: dict = {}
    FIGURES[request.node.name] = record
    return record


class PrivateBroker:
    """An embedded Mosquitto of the test's own that can be stopped and started again on its data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.broker: EmbeddedBroker | None = None
        self.port: int | None = None

    def start(self) -> EmbeddedBroker:
        # No port: the previous run's port is reused when free (clients reconnect to the same URL).
        self.broker = start_embedded_broker(self.data_dir, prefer_mosquitto=True)
        if self.broker.kind != "mosquitto":
            # amqtt neither persists sessions across a restart nor redelivers unacked messages.
            self.broker.stop()
            pytest.fail("the fault tests need Mosquitto (apt-get install mosquitto)")
        self.port = self.broker.port
        return self.broker

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    """A private Mosquitto (persistence on, max_queued_messages 100,000), stopped and removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="campushub-faults-mqtt-"))
    holder = PrivateBroker(data_dir)
    try:
        holder.start()
        yield holder
    finally:
        holder.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
