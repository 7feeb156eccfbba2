"""What the ops console shows: rooms by building, a health colour per device, active alarms, live tickets.

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

from datetime import datetime
from typing import Any, Iterable

from hub.db.ops_console import ActiveAlarm, RoomRow, active_alarms, rooms
from hub.db.tickets import TicketFilter, list_tickets
from hub.domain import tickets as ticket_rules

from .context import WebContext

OUTBOX_WARNING = 100
#: Live tickets a console snapshot carries (the board pages through the API beyond this).
SNAPSHOT_TICKETS = 200
HEALTH_ORDER = ("offline", "critical", "warning", "ok", "revoked")


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


def room_json(room: RoomRow) -> dict:
    return {"room_id": room.room_id, "name": room.name, "building": room.building}


def alarm_json(alarm: ActiveAlarm) -> dict:
    """The same fields as the bus's alarm message."""
    return {"alarm_id": alarm.alarm_id, "device_id": alarm.device_id, "alarm_type": alarm.alarm_type,
            "severity": alarm.severity, "state": alarm.state, "raised_at": alarm.raised_at,
            "message": alarm.message}


async def console_extras(ctx: WebContext, now: datetime) -> dict[str, Any]:
    """``rooms``, active ``alarms`` and live ``tickets``: what the console needs besides the devices."""
    page = await list_tickets(ctx.db, TicketFilter(states=tuple(s for s in ticket_rules.STATES if s != "closed")),
                              SNAPSHOT_TICKETS, 0)
    return {
        "rooms": [room_json(r) for r in await rooms(ctx.db)],
        "alarms": [alarm_json(a) for a in await active_alarms(ctx.db)],
        "tickets": [{**t.fields(), "sla_breached": ticket_rules.sla_breached(t.sla_due_at, now, t.finished_at)}
                    for t in page.items],
    }


def grid(devices: list[dict], room_rows: list[RoomRow], alarms: list[ActiveAlarm]) -> list[dict]:
    """Devices grouped building → room (rooms without devices left out), each with its health and alarms."""
    by_device: dict[str, list[ActiveAlarm]] = {}
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
