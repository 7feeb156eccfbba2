"""What the ops console and the devices API show: devices with their health, rooms by building, a health
colour per device, alarms, health history, live tickets. The JSON presenters of those records live here.

The devices feed's snapshot (``/ws/devices``) carries :func:`console_extras`
beside the device list, so a console page that resyncs gets everything its
live messages (``device``, ``alarm``, ``ticket``) then keep current.

Health colour of a device (``static/ops.js`` applies the same rule to live updates):

- ``revoked``: its credentials were revoked;
- ``offline``: not connected (whatever its alarms);
- ``critical``: a critical or major alarm is active;
- ``warning``: a minor or warning alarm is active, or its outbox holds more than
  :data:`OUTBOX_WARNING` events (it cannot deliver), or it reports errors;
- ``ok``: otherwise.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterable

from hub.core.bus import iso_fields
from hub.db.alarms import RoomAlarm, active_alarms
from hub.db.console_overview import RoomTile
from hub.db.device_health import DeviceOverview, HealthHistoryEntry
from hub.db.rooms import RoomRow, rooms
from hub.db.tickets import Ticket, TicketFilter, list_tickets
from hub.domain import tickets as ticket_rules
from hub.domain.alarms import Alarm
from hub.domain.device_health import HISTORY_HEALTH_FIELDS, PUBLISHED_HEALTH_FIELDS, DeviceHealth

from .context import WebContext

OUTBOX_WARNING = 100
#: Live tickets a console snapshot carries (the board pages through the API beyond this).
SNAPSHOT_TICKETS = 200
HEALTH_ORDER = ("offline", "critical", "warning", "ok", "revoked")
#: A room tile's colour: the worst of its devices' (HEALTH_ORDER, worst first); ``empty``: no device.
TILE_STATES = (*HEALTH_ORDER, "empty")
_ROOM_NUMBER = re.compile(r"\d+")


def health_of(device: dict, severities: Iterable[str]) -> str:
    """The colour of ``device`` (a ``device_json`` dict) given the severities of its active alarms."""
    severities = set(severities)
    if device.get("revoked"):
        return "revoked"
    if not device.get("online"):
        return "offline"
    if severities & {"critical", "major"}:
        return "critical"
    if severities or (device.get("outbox_depth") or 0) > OUTBOX_WARNING or (device.get("error_count") or 0) > 0:
        return "warning"
    return "ok"


def health_json(health: DeviceHealth, names: Iterable[str] = PUBLISHED_HEALTH_FIELDS) -> dict[str, Any]:
    """The health fields the browser is shown (``names``), by the names the domain declares."""
    return {name: getattr(health, name) for name in names}


def device_json(d: DeviceOverview) -> dict[str, Any]:
    """A superset of the bus's device message, so the browser applies both the same way."""
    return {
        "device_id": d.device_id, "room_id": d.room_id, "room_name": d.room_name, "kind": d.kind,
        "model": d.model, "revoked": d.revoked, **health_json(d.health),
        "active_alarms": d.active_alarms, "alarm_severity": d.alarm_severity,
    }


def devices_json(devices: list[DeviceOverview]) -> dict[str, Any]:
    return {"devices": [device_json(d) for d in devices], "online": sum(d.health.online for d in devices)}


def health_history_json(entry: HealthHistoryEntry) -> dict[str, Any]:
    """One transition of a device's health history: when, what changed, and the health then."""
    return {"id": entry.id, "at": entry.at, "change": entry.change, **health_json(entry.health, HISTORY_HEALTH_FIELDS)}


def series_point_json(point: tuple[datetime, float, float, float]) -> dict[str, Any]:
    """One point of a telemetry series (hub/db/telemetry.py): time, average, minimum, maximum."""
    t, avg, low, high = point
    return {"t": t, "avg": avg, "min": low, "max": high}


def alarm_record_json(alarm: Alarm, room_name: str | None) -> dict[str, Any]:
    """An alarm as the API shows it (list, detail, after an acknowledgement or clear): a superset of
    the bus's alarm message. ``updated_at`` is the raise time until the alarm's first step is stored."""
    return {
        "alarm_id": alarm.id, "device_id": alarm.device_id, "room_id": alarm.room_id, "room_name": room_name,
        "alarm_type": alarm.type, "severity": alarm.severity, "state": alarm.state, "raised_at": alarm.raised_at,
        "acked_at": alarm.acked_at, "acked_by": alarm.acked_by, "cleared_at": alarm.cleared_at,
        "cleared_by": alarm.cleared_by, "value": alarm.value, "message": alarm.message,
        "details": dict(alarm.details), "updated_at": alarm.updated_at or alarm.raised_at,
    }


def room_alarm_json(listed: RoomAlarm) -> dict[str, Any]:
    return alarm_record_json(listed.alarm, listed.room_name)


def ticket_json(ticket: Ticket, now: datetime) -> dict[str, Any]:
    """A ticket as the API, the pages and the live feed show it (with the SLA verdict at ``now``)."""
    return {**iso_fields(ticket), "sla_breached": ticket.sla_breached(now)}


def room_json(room: RoomRow) -> dict:
    return {"room_id": room.room_id, "name": room.name, "building": room.building}


def alarm_json(alarm: Alarm) -> dict:
    """An active alarm on the console: the bus alarm message's fields that the grid shows."""
    return {"alarm_id": alarm.id, "device_id": alarm.device_id, "alarm_type": alarm.type,
            "severity": alarm.severity, "state": alarm.state, "raised_at": alarm.raised_at,
            "message": alarm.message}


async def console_extras(ctx: WebContext, now: datetime) -> dict[str, Any]:
    """``rooms``, active ``alarms`` and live ``tickets``: what the console needs besides the devices."""
    page = await list_tickets(ctx.db, TicketFilter(states=tuple(s for s in ticket_rules.STATES if s != "closed")),
                              SNAPSHOT_TICKETS, 0)
    return {
        "rooms": [room_json(r) for r in await rooms(ctx.db)],
        "alarms": [alarm_json(a) for a in await active_alarms(ctx.db)],
        "tickets": [ticket_json(t, now) for t in page.items],
    }


def grid(devices: list[dict], room_rows: list[RoomRow], alarms: list[Alarm]) -> list[dict]:
    """Devices grouped building → room (rooms without devices left out), each with its health and alarms."""
    by_device: dict[str, list[Alarm]] = {}
    for alarm in alarms:
        by_device.setdefault(alarm.device_id, []).append(alarm)
    by_room: dict[str, list[dict]] = {}
    for device in devices:
        mine = by_device.get(device["device_id"], [])
        by_room.setdefault(device["room_id"], []).append({
            **device, "health": health_of(device, (a.severity for a in mine)),
            "alarms": [alarm_json(a) for a in mine],
        })
    buildings: dict[str, list[dict]] = {}
    for room in room_rows:
        if room.room_id in by_room:
            buildings.setdefault(room.building, []).append({**room_json(room), "devices": by_room[room.room_id]})
    return [{"building": name, "rooms": rooms_} for name, rooms_ in buildings.items()]


def floor_of(room_name: str) -> str:
    """The floor a room is on, from its (first) number by the usual convention: the digits before the last two
    ("Room 214" → "2", "B-1105" → "11"), "G" for numbers below 100; "" when the name has no number.
    (Rooms have no floor column: the number is what people read on the door.)"""
    match = _ROOM_NUMBER.search(room_name)
    if match is None:
        return ""
    number = match.group(0)
    return number[:-2].lstrip("0") or "G" if len(number) > 2 else "G"


def worst_health(healths: Iterable[str]) -> str:
    """The worst of ``healths`` by :data:`HEALTH_ORDER`; ``empty`` for none."""
    ranked = sorted(healths, key=HEALTH_ORDER.index)
    return ranked[0] if ranked else "empty"


def tile_json(tile: RoomTile) -> dict[str, Any]:
    """A room tile of the overview: its devices with their health colours, the room's worst colour,
    key readings (value, unit, time), sparklines (hourly averages, oldest first) and occupancy."""
    healths = [health_of({"revoked": d.revoked, "online": d.online, "outbox_depth": d.outbox_depth,
                          "error_count": d.error_count}, d.severities) for d in tile.devices]
    devices = [{"device_id": d.device_id, "kind": d.kind, "revoked": d.revoked, "online": d.online,
                "outbox_depth": d.outbox_depth, "error_count": d.error_count, "severities": list(d.severities),
                "health": health} for d, health in zip(tile.devices, healths)]
    return {
        "room_id": tile.room_id, "name": tile.name, "building": tile.building, "floor": floor_of(tile.name),
        "health": worst_health(healths), "devices": devices,
        "readings": {m: {"value": r.value, "unit": r.unit, "at": r.at} for m, r in tile.readings.items()},
        "sparks": {m: list(points) for m, points in tile.sparks.items()}, "occupancy": tile.occupancy,
    }


def overview_json(tiles: list[RoomTile]) -> list[dict[str, Any]]:
    """Room tiles grouped building → floor (floors in number order, ground first), rooms by name."""
    buildings: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for tile in tiles:
        shown = tile_json(tile)
        buildings.setdefault(tile.building, {}).setdefault(shown["floor"], []).append(shown)

    def floor_key(floor: str) -> tuple[int, int]:
        return (0, 0) if floor == "G" else (1, int(floor)) if floor.isdigit() else (2, 0)

    return [{"building": name, "floors": [{"floor": f, "rooms": floors[f]} for f in sorted(floors, key=floor_key)]}
            for name, floors in sorted(buildings.items())]


def duration_text(seconds: int | None) -> str:
    """A duration as people say it ("18 min", "3 h 5 min", "2 d 4 h"); ``static/ops.js`` ``duration`` is the same."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if s < 60:
        return f"{s} s"
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
