"""Where the CLI's database and broker come from: configured URLs, a running demo's, or new embedded ones.

Shared by every subcommand (``campushub serve``, ``devices``, ``audit`` ...). Blocking and
synchronous: call it before entering trio. Embedded services it starts are stopped by ``stack``.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from hub.core.config import Settings

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
    from hub.embedded import start_embedded_broker, start_embedded_postgres

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database_url, mqtt_url = settings.database_url, settings.mqtt_url
    if not database_url:
        print("campushub: starting embedded PostgreSQL ...", file=sys.stderr)
        pg = start_embedded_postgres(settings.data_dir / "postgres")
        stack.callback(pg.stop)
        database_url = pg.dsn
    if broker and not mqtt_url:
        print("campushub: starting embedded MQTT broker ...", file=sys.stderr)
        embedded_broker = start_embedded_broker(settings.data_dir / "broker")
        stack.callback(embedded_broker.stop)
        mqtt_url = embedded_broker.url
    if broker:
        # Lets `campushub simulate` / `migrate` in this directory find a running demo's services.
        services = settings.data_dir / SERVICES_FILE
        services.write_text(json.dumps({"database_url": database_url, "mqtt_url": mqtt_url, "pid": os.getpid()}))
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
