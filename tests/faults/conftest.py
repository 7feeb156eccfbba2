"""Fault-injection tests: run only by ``./dev faults`` (``CAMPUSHUB_FAULTS=1``), never by ``./dev test``.

Without ``CAMPUSHUB_FAULTS=1`` every file in this folder is ignored at
collection (not skipped), so the unit suite neither runs nor reports them.

Each test runs the real hub as a ``campushub serve`` subprocess against
PRIVATE services it starts itself (an embedded Mosquitto from the generated
configuration, with TLS under ``CAMPUSHUB_TEST_BROKER=secure``; and for the
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

import getpass
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from support.private_mosquitto import BrokerLogin, broker_files, run_account_files, unbind_client_ids

from hub.adapters.mosquitto_conf import BrokerTls, render_mosquitto_conf
from hub.embedded import EmbeddedBroker, start_embedded_broker
from hub.embedded._common import free_port

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


#: The private brokers run the generated configuration (no anonymous access, packet size, queue limits,
#: persistence) with one account for the test; ``CAMPUSHUB_TEST_BROKER=secure`` adds its TLS listener, which
#: every client then uses.
SECURE_BROKER = os.environ.get("CAMPUSHUB_TEST_BROKER", "") == "secure"
BROKER_LOGIN = BrokerLogin("campushub-faults", "faults-broker-password")


class PrivateBroker:
    """An embedded Mosquitto of the test's own that can be stopped and started again on its data dir.

    Clients connect with :attr:`url` (and :attr:`cafile` for TLS) on :attr:`client_port`; a proxy in front of the
    broker forwards to :attr:`client_port` and gives its clients :meth:`url_through`.
    """

    def __init__(self, data_dir: Path, *, tls: bool = SECURE_BROKER) -> None:
        self.data_dir = data_dir
        self.broker: EmbeddedBroker | None = None
        self.port: int | None = None
        _, server_files = run_account_files(data_dir / "accounts", BROKER_LOGIN)
        self.tls: BrokerTls | None = server_files if tls else None
        # Kept across restarts, as the plain port is: clients reconnect to the same URL.
        self.tls_port: int | None = free_port("127.0.0.1") if tls else None

    def _conf(self, port: int) -> str:
        files = broker_files(self.data_dir / "accounts" / "broker")
        return unbind_client_ids(render_mosquitto_conf(
            password_file=files.password_file, acl_file=files.acl_file, port=port, bind_address="127.0.0.1",
            tls=self.tls, tls_port=self.tls_port or 8883, persistence_dir=self.data_dir,
            run_as_user=getpass.getuser()))

    def start(self) -> EmbeddedBroker:
        # No port: the previous run's port is reused when free (clients reconnect to the same URL).
        self.broker = start_embedded_broker(self.data_dir, prefer_mosquitto=True, mosquitto_conf=self._conf)
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
    def cafile(self) -> Path | None:
        """The CA of the broker's certificate (``None``: plain MQTT)."""
        return self.tls.cafile if self.tls else None

    @property
    def client_port(self) -> int:
        """The port clients use: the TLS listener's, or the plain one."""
        port = self.tls_port if self.tls else self.port
        assert port is not None
        return port

    @property
    def url(self) -> str:
        return self.url_through(self.client_port)

    def url_through(self, port: int) -> str:
        """The broker's URL (scheme and credentials) with ``port`` of 127.0.0.1: a proxy in front of it."""
        scheme = "mqtt" if self.tls is None else "mqtts"
        return f"{scheme}://{BROKER_LOGIN.username}:{BROKER_LOGIN.password}@127.0.0.1:{port}"


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    """A private Mosquitto (the generated config, persistence on; TLS in secure mode), stopped and removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="campushub-faults-mqtt-"))
    holder = PrivateBroker(data_dir)
    try:
        holder.start()
        yield holder
    finally:
        holder.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
