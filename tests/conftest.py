"""Shared fixtures: real services, a database per test run, the trio-asyncio loop, a seeded campus.

Services (session-scoped, each picked once per run)
    ``database_server_url``  ``$CAMPUSHUB_TEST_DATABASE_URL`` if set; else the
        local ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers;
        else an embedded PostgreSQL 16 (``hub.embedded``) in a temp dir.
    ``mqtt_server_url``  ``$CAMPUSHUB_TEST_MQTT_URL`` if set; else the local
        ``mqtt://127.0.0.1:1883`` if it answers; else an embedded broker.
    ``CAMPUSHUB_TEST_EMBEDDED=1`` skips the local services and always embeds.
    ``CAMPUSHUB_TEST_BROKER=secure``: a private Mosquitto with authentication and
        TLS instead (``mqtts://`` with the run's credentials; ``mqtt_cafile``).
    ``open_mqtt_server_url``  a broker with anonymous access and no size limit
        (``mqtt_server_url``; in secure mode an embedded open Mosquitto), for the
        few tests about such a broker.
    The server URL's user must be allowed to create databases. On the local
    server, databases left by killed runs (dead pid in the name) are dropped.

Databases
    ``database_url`` (session)  a database ``campushub_test_<pid>_<random>``
        created and migrated for this run, dropped at the end. Shared by all
        tests of the run: keep tests independent by creating rows with unique
        ids (``uuid4``) rather than by truncating tables.
    ``fresh_database_url`` (function)  an empty, migrated database of the
        test's own (cloned from a template in ~0.2 s), for tests that need
        exact row counts or destroy things. Dropped after the test.
    ``empty_database_url`` (function)  the same without migrations (for
        migration tests).

trio-asyncio (how the loop reaches the test body)
    ``Database`` calls go through ``trio_asyncio.aio_as_trio``, which finds
    the loop in the ``trio_asyncio.current_loop`` context variable. pytest-trio
    runs every async fixture of a test and the test itself in ONE shared
    ``contextvars.Context`` (it sets ``task.context`` of each fixture task and
    of the test task to the same object), so a loop opened by an async fixture
    is visible to the test body and to fixtures set up after it. Verified
    experimentally (see ``tests/db/test_db_fixtures.py``). Hence:
    ``aio_loop`` (function, async) opens the loop and yields it; ``db``
    depends on it. A test that calls ``Database`` methods only needs ``db``;
    one that runs other asyncio code requests ``aio_loop`` directly.

    Session-scoped fixtures cannot be async under pytest-trio (each test is
    its own ``trio.run``), so the session fixtures are sync and do their
    async work in a short ``trio.run`` of their own
    (``hub.db.run_with_database``; use it too in sync fixtures of your own).

Other
    ``topic_prefix`` (session)  ``test-<uuid>``: MQTT topics of this run never
        collide with another run on a shared broker.
    ``campus`` (session)  a small seeded campus (3 rooms, 30 students) in
        ``database_url``, from ``hub.db.seed.ensure_campus``; its sessions
        are live at the time of seeding (they started 5 min before it).
"""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio
import trio_asyncio

from hub.core.campus import Campus
from hub.core.config import MqttUrl
from hub.core.secrets_box import KEY_ENV
from hub.db import Database, asyncio_loop, migrate, open_database, run_with_database
from hub.db.seed import ensure_campus
from hub.embedded import probe_mqtt, probe_postgres, start_embedded_broker, start_embedded_postgres

# The real hub (``hub``, ``hub_settings``, ``hub_campus``, ``test_db``, ``publisher``) for the
# actor, browser, hostile and CLI tests alike.
pytest_plugins = ["support.hub_fixtures"]

# One campus key for the whole run (hub/core/secrets_box.py): the fixtures that seed, the hubs under
# test (``hub_settings``) and the CLI subprocesses all seal and open with it.
os.environ.setdefault(KEY_ENV, base64.b64encode(os.urandom(32)).decode())

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_MQTT_URL = "mqtt://127.0.0.1:1883"
CAMPUS_ROOMS = 3
CAMPUS_STUDENTS = 30


# --------------------------------------------------------------------------- helpers


def database_url_for(server_url: str, database: str) -> str:
    """``server_url`` with its database (the URL path) replaced; query (e.g. ``?host=``) kept."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _unique_database_name(suffix: str = "") -> str:
    return f"campushub_test_{os.getpid()}_{uuid.uuid4().hex[:8]}{suffix}"


def _create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    clause = f" TEMPLATE {template}" if template else ""
    run_with_database(server_url, lambda db: db.execute(f"CREATE DATABASE {name}{clause}"))
    return database_url_for(server_url, name)


def _drop_database(server_url: str, name: str) -> None:
    # FORCE (PostgreSQL 13+): a pool a test leaked must not keep the database alive.
    run_with_database(server_url, lambda db: db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _sweep_abandoned_databases(server_url: str) -> None:
    """Drop ``campushub_test_<pid>_*`` databases of runs that were killed before their teardown.

    Only for a server on this machine (the pid in the name is only meaningful
    here), only if that pid is gone, and without FORCE: a database somebody is
    connected to is left alone.
    """

    async def sweep(db: Database) -> None:
        names = [r["datname"] for r in await db.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'campushub\\_test\\_%'")]
        for name in names:
            pid = name.split("_")[2]
            if pid.isdigit() and not await trio.Path(f"/proc/{pid}").exists():
                try:
                    await db.execute(f"DROP DATABASE IF EXISTS {name}")
                except Exception:  # in use, or dropped by a concurrent sweep
                    pass

    run_with_database(server_url, sweep)


def _force_embedded() -> bool:
    return os.environ.get("CAMPUSHUB_TEST_EMBEDDED", "") not in ("", "0")


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def database_server_url() -> Iterator[str]:
    """A PostgreSQL server to create test databases on (see the module docstring)."""
    configured = os.environ.get("CAMPUSHUB_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    if not _force_embedded() and probe_postgres(LOCAL_DATABASE_URL, timeout=2.0):
        _sweep_abandoned_databases(LOCAL_DATABASE_URL)
        yield LOCAL_DATABASE_URL
        return
    # Not under tmp_path: as root, PostgreSQL runs as the `pgserver` user, which
    # must traverse to its data dir, and a concurrent pytest session chmods
    # /tmp/pytest-of-root back to 0700 (see hub.embedded.postgres).
    data_dir = Path(tempfile.mkdtemp(prefix="campushub-test-pg-"))
    server = start_embedded_postgres(data_dir)
    try:
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


#: ``CAMPUSHUB_TEST_BROKER=secure``: the run's broker is a private Mosquitto with the generated
#: configuration's authentication, TLS and packet size (see ``_secure_broker``).
SECURE_TEST_BROKER = os.environ.get("CAMPUSHUB_TEST_BROKER", "") == "secure"
SECURE_TEST_LOGIN = ("campushub-test-run", "test-run-password-" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def _secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path] | None]:
    """``(mqtts:// URL with credentials, CA file)`` of the secure test broker, or ``None`` when not asked for.

    One private Mosquitto for the session from ``render_mosquitto_conf`` (no anonymous
    access, TLS listener, max_packet_size) with one account for the whole run. Tests
    publish as many fake devices under many prefixes, so this account may use any topic
    and any client id: the generated ACL and the client id bound to the username are
    removed here and tested on their own (tests/hub/test_mosquitto_acl.py). The CA is
    also exported as ``SSL_CERT_FILE``, so clients that build a default TLS context
    without a CA file (edge agents, ad-hoc test clients) trust the test broker.
    """
    if not SECURE_TEST_BROKER:
        yield None
        return
    from support.private_mosquitto import BrokerLogin, run_account_files, start_private_mosquitto, unbind_client_ids

    directory = tmp_path_factory.mktemp("secure-broker")
    user, password = SECURE_TEST_LOGIN
    _, tls = run_account_files(directory, BrokerLogin(user, password))
    cafile = tls.cafile
    broker = start_private_mosquitto(
        directory / "broker", accounts_from_registry=True, tls=tls, edit_conf=unbind_client_ids)
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cafile)
    try:
        yield broker.url(user, password, tls=True), cafile
    finally:
        if previous is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = previous
        broker.stop()


@pytest.fixture(scope="session", autouse=True)
def _secure_broker_in_environment(request: pytest.FixtureRequest) -> Iterator[None]:
    """Secure mode: ``CAMPUSHUB_TEST_MQTT_URL`` is the secure broker's URL for the whole run, for the helpers that
    take the broker from the environment (tests/edge_agent/edge_helpers.py). Nothing otherwise."""
    if not SECURE_TEST_BROKER:
        yield
        return
    url, _ = request.getfixturevalue("_secure_broker")
    previous = os.environ.get("CAMPUSHUB_TEST_MQTT_URL")
    os.environ["CAMPUSHUB_TEST_MQTT_URL"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CAMPUSHUB_TEST_MQTT_URL", None)
        else:
            os.environ["CAMPUSHUB_TEST_MQTT_URL"] = previous


@pytest.fixture(scope="session")
def mqtt_cafile(_secure_broker: tuple[str, Path] | None) -> Path | None:
    """The CA file clients need for ``mqtt_server_url`` (``None``: plain MQTT, or the system store)."""
    return _secure_broker[1] if _secure_broker else None


@pytest.fixture(scope="session")
def mqtt_server_url(tmp_path_factory: pytest.TempPathFactory, _secure_broker: tuple[str, Path] | None) -> Iterator[str]:
    """An MQTT broker URL, ``mqtt://host:port``, or with ``CAMPUSHUB_TEST_BROKER=secure``
    ``mqtts://user:password@host:port`` (see the module docstring and ``_secure_broker``)."""
    if _secure_broker is not None:
        yield _secure_broker[0]
        return
    configured = os.environ.get("CAMPUSHUB_TEST_MQTT_URL")
    if configured:
        yield configured
        return
    local = MqttUrl.parse(LOCAL_MQTT_URL)
    if not _force_embedded() and probe_mqtt(local.host, local.port, timeout=2.0):
        yield LOCAL_MQTT_URL
        return
    broker = start_embedded_broker(tmp_path_factory.mktemp("embedded-broker"))
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def open_mqtt_server_url(tmp_path_factory: pytest.TempPathFactory, mqtt_server_url: str,
                         _secure_broker: tuple[str, Path] | None) -> Iterator[str]:
    """A broker with anonymous access and no packet size limit, for tests of what the hub itself does on such a
    broker (open-broker detection, its own size bounds): ``mqtt_server_url``, or with
    ``CAMPUSHUB_TEST_BROKER=secure`` an embedded open Mosquitto of the run's own."""
    if _secure_broker is None:
        yield mqtt_server_url
        return
    broker = start_embedded_broker(tmp_path_factory.mktemp("open-broker"))
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def topic_prefix() -> str:
    """A topic prefix unique to this run, so runs sharing a broker never see each other's messages."""
    return f"test-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def database_url(database_server_url: str) -> Iterator[str]:
    """This run's migrated database (shared by all its tests); dropped at the end."""
    name = _unique_database_name()
    url = _create_database(database_server_url, name)
    try:
        run_with_database(url, migrate)
        yield url
    finally:
        _drop_database(database_server_url, name)


@pytest.fixture(scope="session")
def _template_database(database_server_url: str) -> Iterator[str]:
    """A migrated database nobody connects to, cloned by ``fresh_database_url``.

    (``CREATE DATABASE ... TEMPLATE`` fails while the template has connections.)
    """
    name = _unique_database_name("_tpl")
    url = _create_database(database_server_url, name)
    try:
        run_with_database(url, migrate)
        yield name
    finally:
        _drop_database(database_server_url, name)


@pytest.fixture
def fresh_database_url(database_server_url: str, _template_database: str) -> Iterator[str]:
    """An empty, migrated database for this test alone; dropped afterwards."""
    name = _unique_database_name()
    url = _create_database(database_server_url, name, template=_template_database)
    try:
        yield url
    finally:
        _drop_database(database_server_url, name)


@pytest.fixture
def empty_database_url(database_server_url: str) -> Iterator[str]:
    """A database with no tables at all (not even migrations); dropped afterwards."""
    name = _unique_database_name()
    url = _create_database(database_server_url, name)
    try:
        yield url
    finally:
        _drop_database(database_server_url, name)


# --------------------------------------------------------------------------- async (per test)


@pytest.fixture
async def aio_loop() -> AsyncIterator[trio_asyncio.TrioEventLoop]:
    """The trio-asyncio loop, active for the test body and every fixture set up after this one."""
    async with asyncio_loop():
        yield trio_asyncio.current_loop.get()


@pytest.fixture
async def db(aio_loop: trio_asyncio.TrioEventLoop, database_url: str) -> AsyncIterator[Database]:
    """An open :class:`Database` on this run's database."""
    async with open_database(database_url, min_size=1, max_size=4) as database:
        yield database


# --------------------------------------------------------------------------- campus


@pytest.fixture(scope="session")
def campus(database_url: str) -> Campus:
    """A small seeded campus in ``database_url``; treat it as read-only."""
    now = datetime.now(timezone.utc)
    return run_with_database(
        database_url,
        lambda db: ensure_campus(db, rooms=CAMPUS_ROOMS, students=CAMPUS_STUDENTS, now=now),
    )
