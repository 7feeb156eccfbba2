"""Where the CLI's database and broker come from: configured URLs, a running demo's, or new embedded ones.

Shared by every subcommand (``campushub serve``, ``devices``, ``audit`` ...). Blocking and
synchronous: call it before entering trio. Embedded services it starts are stopped by ``stack``.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hub.core.config import Settings

if TYPE_CHECKING:  # imported lazily: every CLI command imports this module
    from hub.db import Database

#: Written by a running ``campushub demo`` so other commands in its directory find its services.
SERVICES_FILE = "services.json"


def with_services(settings: Settings, stack: ExitStack, *, start_embedded: bool, broker: bool = True) -> Settings:
    """Fill in database (and, with ``broker``, MQTT) URLs: configured ones, a running demo's, or new embedded ones."""
    if settings.database_url and (settings.mqtt_url or not broker):
        return settings
    running = running_demo_services(settings.data_dir)
    if running:
        return replace(settings, database_url=settings.database_url or running["database_url"],
                       mqtt_url=settings.mqtt_url or running["mqtt_url"])
    if not start_embedded:
        raise ValueError(
            "no database/broker configured: set CAMPUSHUB_DATABASE_URL and CAMPUSHUB_MQTT_URL, "
            "or start `campushub demo` in this directory")
    from hub.embedded import start_embedded_postgres

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database_url, mqtt_url = settings.database_url, settings.mqtt_url
    if not database_url:
        print("campushub: starting embedded PostgreSQL ...", file=sys.stderr)
        pg = start_embedded_postgres(settings.data_dir / "postgres")
        stack.callback(pg.stop)
        database_url = pg.dsn
    if broker and not mqtt_url:
        print("campushub: starting embedded MQTT broker ...", file=sys.stderr)
        mqtt_url = _start_secure_broker(settings, stack, database_url)
    if broker:
        # Lets `campushub simulate` / `migrate` in this directory find a running demo's services.
        # 0600: the broker URL carries the hub's broker password.
        services = settings.data_dir / SERVICES_FILE
        services.unlink(missing_ok=True)
        fd = os.open(services, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"database_url": database_url, "mqtt_url": mqtt_url, "pid": os.getpid()}))
        stack.callback(lambda: services.unlink(missing_ok=True))
    return replace(settings, database_url=database_url, mqtt_url=mqtt_url)


def running_demo_services(data_dir: Path) -> dict | None:
    path = data_dir / SERVICES_FILE
    try:
        found = json.loads(path.read_text())
        os.kill(int(found["pid"]), 0)
        return found
    except (OSError, ValueError, KeyError):
        return None


#: The embedded broker's account for the hub (its broker is private to the data dir).
EMBEDDED_HUB_USERNAME = "campushub-hub"
_MOSQUITTO_ENV = ("CAMPUSHUB_MOSQUITTO_PASSWORD_FILE", "CAMPUSHUB_MOSQUITTO_ACL_FILE", "CAMPUSHUB_MOSQUITTO_PID_FILE")


def _start_secure_broker(settings: Settings, stack: ExitStack, database_url: str) -> str:
    """The embedded broker with the project's generated config; returns its URL with the hub's login.

    No anonymous access: the hub logs in with a password generated once and kept
    in ``broker/hub_password`` (0600); every device of the registry gets its
    account (rendered now, after migrating, and re-rendered by the hub and by
    the seeding commands on every change through ``CAMPUSHUB_MOSQUITTO_*``, set
    here for this process and its children). amqtt, the fallback without a
    Mosquitto binary, enforces none of it; the returned URL still carries the login.
    """
    from urllib.parse import quote

    from hub.adapters.mosquitto_auth import HubAccount, MosquittoFiles, export_mosquitto
    from hub.adapters.mosquitto_conf import QueueLimits, render_mosquitto_conf
    from hub.db import migrate, run_with_database
    from hub.embedded import start_embedded_broker
    from schemas import Topics

    broker_dir = (settings.data_dir / "broker").resolve()
    broker_dir.mkdir(parents=True, exist_ok=True)
    password = _kept_secret(broker_dir / "hub_password")
    # broker.pid is where the embedded broker records its pid: the SIGHUP target after a re-render.
    files = MosquittoFiles(broker_dir / "passwd", broker_dir / "acl", broker_dir / "broker.pid")
    hub = HubAccount.from_password(EMBEDDED_HUB_USERNAME, password)

    async def render_accounts(db: Database) -> None:
        await migrate(db)
        await export_mosquitto(db, Topics(settings.topic_prefix), files, hub)

    run_with_database(database_url, render_accounts)

    def conf(port: int) -> str:
        return render_mosquitto_conf(
            password_file=files.password_file, acl_file=files.acl_file, port=port, bind_address="127.0.0.1",
            persistence_dir=broker_dir, run_as_user=getpass.getuser(),
            queue=QueueLimits())

    embedded = start_embedded_broker(broker_dir, mosquitto_conf=conf)
    stack.callback(embedded.stop)
    if not embedded.enforces_auth:
        print(f"campushub: WARNING: the embedded {embedded.kind} broker accepts anonymous clients "
              "(no Mosquitto installed): any local process can read and publish device traffic", file=sys.stderr)
    previous = {name: os.environ.get(name) for name in _MOSQUITTO_ENV}
    os.environ.update(dict(zip(_MOSQUITTO_ENV, map(str, (files.password_file, files.acl_file, files.pid_file)))))
    stack.callback(_restore_env, previous)
    head, _, tail = embedded.url.partition("://")
    return f"{head}://{EMBEDDED_HUB_USERNAME}:{quote(password, safe='')}@{tail}"


def _kept_secret(path: Path) -> str:
    """A random secret created once (0600, in the same call that creates the file) and read back later."""
    import secrets

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def _restore_env(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


async def sync_broker_accounts(db: Database, settings: Settings) -> None:
    """Re-render the broker's files from the registry when ``CAMPUSHUB_MOSQUITTO_*`` name them.

    For commands that add devices outside the hub's web (seeding): the broker
    must know the new accounts before their agents connect. Blocks like
    :func:`hub.adapters.mosquitto_auth.export_mosquitto`; does nothing otherwise.
    """
    from hub.adapters.mosquitto_auth import HubAccount, MosquittoFiles, export_mosquitto
    from hub.core.config import MqttUrl
    from schemas import Topics

    files = MosquittoFiles.from_env()
    if files is None:
        return
    url = MqttUrl.parse(settings.mqtt_url) if settings.mqtt_url else None
    hub = HubAccount.from_password(url.username, url.password or "") if url and url.username else None
    await export_mosquitto(db, Topics(settings.topic_prefix), files, hub)
