"""hub.db.device_health: the health columns are generated from the one declaration
(hub.domain.device_health.DeviceHealth), so what the writer stores is what the actor reloads and
what the device list reads."""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.core.records import DeviceHealthHistoryRow
from hub.db import Database, open_database
from hub.db.device_health import (
    device_health_history,
    device_overview,
    devices_overview,
    load_device_snapshots,
    write_health_effects,
)
from hub.db.seed import ensure_campus
from hub.domain.device_health import HEALTH_FIELDS, HISTORY_HEALTH_FIELDS, DeviceHealth

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


def _every_field_set(device_id: str) -> DeviceHealth:
    """A health with no field at its default, so a column left out anywhere shows."""
    health = DeviceHealth(
        device_id, online=True, last_seen=T0, last_change=T0 - timedelta(minutes=1), reason="connected",
        firmware="2.4.1", uptime_s=3600, outbox_depth=3, status_ts=1_700_000_000_000,
        last_connect_at=T0 - timedelta(minutes=1), last_connect_reason="connected",
        last_disconnect_at=T0 - timedelta(hours=1), last_disconnect_reason="heartbeat timeout",
        battery_pct=64.5, signal_dbm=-71, clock_skew_ms=420, error_count=2,
    )
    defaults = DeviceHealth(device_id)
    assert all(getattr(health, f) != getattr(defaults, f) for f in HEALTH_FIELDS if f != "device_id")
    return health


async def test_the_tables_have_exactly_the_declared_fields(fresh_db: Database) -> None:
    async def columns(table: str) -> set[str]:
        rows = await fresh_db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table)
        return {r["column_name"] for r in rows}

    assert await columns("device_health") - {"updated_at"} == set(HEALTH_FIELDS) == {
        f.name for f in fields(DeviceHealth)}
    assert set(HISTORY_HEALTH_FIELDS) <= await columns("device_health_history")


async def test_what_the_writer_stores_is_what_the_actor_and_the_device_list_read(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=2, students=0, now=T0)
    heard, silent = campus.devices[0].device_id, campus.devices[1].device_id
    health = _every_field_set(heard)

    async def write(conn) -> None:
        await write_health_effects(conn, {
            DeviceHealth: [health], DeviceHealthHistoryRow: [DeviceHealthHistoryRow("online", health, T0)]})

    await fresh_db.run(write, transaction=True)

    assert (await load_device_snapshots(fresh_db, [heard]))[heard].health == health
    overview = await device_overview(fresh_db, heard)
    assert overview is not None and overview.health == health
    listed = {d.device_id: d for d in await devices_overview(fresh_db)}
    assert listed[heard].health == health
    # Never heard from: the zero values (offline, empty texts), not the domain's "never seen".
    assert listed[silent].health == DeviceHealth(
        silent, online=False, reason="", last_change=None, firmware="", status_ts=0)
    assert silent not in await load_device_snapshots(fresh_db, [silent])

    page = await device_health_history(fresh_db, heard, 10, 0)
    assert page.total == 1
    entry = page.items[0]
    assert (entry.at, entry.change) == (T0, "online")
    assert {f: getattr(entry.health, f) for f in HISTORY_HEALTH_FIELDS} == {
        f: getattr(health, f) for f in HISTORY_HEALTH_FIELDS}
