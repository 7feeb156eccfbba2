"""web/console.py and web/serialize.py: the device presenters take the health fields from their one declaration
(hub.domain.device_health), so a field added there reaches the API without another list to edit."""
from __future__ import annotations

from datetime import datetime, timezone

from hub.db.device_health import DeviceOverview, HealthHistoryEntry
from hub.domain.alarms import Alarm
from hub.domain.device_health import HISTORY_HEALTH_FIELDS, PUBLISHED_HEALTH_FIELDS, DeviceHealth
from web.console import (
    alarm_json,
    alarm_record_json,
    device_json,
    devices_json,
    health_history_json,
    series_point_json,
)
from web.serialize import record_json

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HEALTH = DeviceHealth("d-1", online=True, last_seen=T0, last_change=T0, reason="connected", firmware="2.4",
                      status_ts=123, battery_pct=80.0, error_count=1)


def test_device_json_shows_every_published_health_field_and_not_the_ordering_guard() -> None:
    overview = DeviceOverview("d-1", "r-1", "Room 1", "qr", "m", False, HEALTH, active_alarms=2,
                              alarm_severity="major")
    shown = device_json(overview)
    assert set(shown) == {"device_id", "room_id", "room_name", "kind", "model", "revoked", "active_alarms",
                          "alarm_severity", *PUBLISHED_HEALTH_FIELDS}
    assert "status_ts" not in shown
    assert {f: shown[f] for f in PUBLISHED_HEALTH_FIELDS} == {f: getattr(HEALTH, f) for f in PUBLISHED_HEALTH_FIELDS}
    assert (shown["room_name"], shown["active_alarms"], shown["alarm_severity"]) == ("Room 1", 2, "major")
    offline = DeviceOverview("d-2", "r-1", "Room 1", "qr", "m", False, DeviceHealth("d-2"))
    assert devices_json([overview, offline])["online"] == 1


def test_health_history_json_shows_what_history_keeps() -> None:
    shown = health_history_json(HealthHistoryEntry(7, T0, "online", HEALTH))
    assert list(shown) == ["id", "at", "change", *HISTORY_HEALTH_FIELDS]
    assert (shown["id"], shown["at"], shown["change"], shown["firmware"]) == (7, T0, "online", "2.4")


def test_series_point_json() -> None:
    assert series_point_json((T0, 1.5, 1.0, 2.0)) == {"t": T0, "avg": 1.5, "min": 1.0, "max": 2.0}


def test_record_json_is_the_fields_by_name_one_level_deep() -> None:
    entry = HealthHistoryEntry(7, T0, "online", HEALTH)
    assert record_json(entry) == {"id": 7, "at": T0, "change": "online", "health": HEALTH}


def test_alarm_json_of_the_domain_alarm_with_its_room() -> None:
    alarm = Alarm(9, "d-1", "r-1", "offline", "major", "active_unacked", T0, message="offline", details={"a": 1})
    shown = alarm_record_json(alarm, "Room 1")
    assert (shown["alarm_id"], shown["alarm_type"], shown["room_name"], shown["details"]) == (
        9, "offline", "Room 1", {"a": 1})
    assert shown["updated_at"] == T0  # not stored yet: the raise time
    assert alarm_json(alarm) == {"alarm_id": 9, "device_id": "d-1", "alarm_type": "offline", "severity": "major",
                                 "state": "active_unacked", "raised_at": T0, "message": "offline"}
