"""The ops console (device grid, device detail, alarm list, ticket board), the report form, the admin overview.

Pages are rendered server-side with stable hooks (``data-*``) and kept live by
``static/ops.js`` over ``/ws/devices``; everything they change goes through
the JSON API (tickets: web/routes/tickets_api.py; alarms, telemetry, health
history: the devices API; commands: web/routes/provisioning.py).
"""
from __future__ import annotations

from quart import Blueprint

from hub.db.alarms import active_alarms, open_alarm_count
from hub.db.anomalies import recent_anomalies
from hub.db.biometric_consent import device_enrolments, enrolments_of
from hub.db.campus_counts import overview_counts
from hub.db.console_overview import room_tiles
from hub.db.device_health import device_overview, devices_overview
from hub.db.quarantine import get_quarantine
from hub.db.rejections import list_rejections, list_suppressed, rejection_counts
from hub.db.rooms import RoomRow, rooms
from hub.db.students import student_choices
from hub.db.tickets import TicketFilter, list_staff, list_tickets
from hub.domain import tickets as ticket_rules
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION
from hub.domain.terminal_roster import ROSTER_KINDS

from ..auth import current_principal, require
from ..console import (
    TILE_STATES,
    device_json,
    devices_json,
    duration_text,
    grid,
    health_of,
    overview_json,
    ticket_json,
    tile_json,
)
from ..context import current_context
from ..errors import not_found
from ..feeds import utc_now
from ._pages import render_page
from .consent_api import enrolment_rows

bp = Blueprint("ops", __name__)

RECENT_REJECTIONS = 20
#: Tickets per column of the board (older ones are reached through the list API).
BOARD_COLUMN = 100
MY_REPORTS = 50
STATE_LABELS = {"open": "Open", "assigned": "Assigned", "in_progress": "In progress", "resolved": "Resolved",
                "closed": "Closed"}


@bp.get("/ops")
@require("ops", "admin")
async def overview_page() -> str:
    """The overview: one tile per room, grouped building → floor (web/console.py ``overview_json``)."""
    ctx = current_context()
    tiles = await room_tiles(ctx.db, utc_now(ctx))
    buildings = overview_json(tiles)
    devices = [d for b in buildings for f in b["floors"] for r in f["rooms"] for d in r["devices"]]
    return await render_page("ops.html", buildings=buildings, rooms_total=len(tiles), devices_total=len(devices),
                             devices_online=sum(d["online"] for d in devices), tile_states=TILE_STATES,
                             open_alarms=await open_alarm_count(ctx.db))


@bp.get("/ops/rooms/<room_id>")
@require("ops", "admin")
async def room_page(room_id: str) -> str:
    """One room: its key readings and sparklines, and a card per device (the drill-down from a tile)."""
    ctx = current_context()
    tile = next((t for t in await room_tiles(ctx.db, utc_now(ctx)) if t.room_id == room_id), None)
    if tile is None:
        raise not_found("No such room.")
    listing = [d for d in devices_json(await devices_overview(ctx.db))["devices"] if d["room_id"] == room_id]
    alarms = await active_alarms(ctx.db)
    cards = grid(listing, [RoomRow(tile.room_id, tile.name, tile.building)], alarms)
    return await render_page("ops_room.html", room=tile_json(tile),
                             devices=cards[0]["rooms"][0]["devices"] if cards else [],
                             anomalies=await recent_anomalies(ctx.db, utc_now(ctx), room_id=room_id))


@bp.get("/ops/devices/<device_id>")
@require("ops", "admin")
async def device_detail(device_id: str) -> str:
    db = current_context().db
    overview = await device_overview(db, device_id)
    if overview is None:
        raise not_found("No such device.")
    device = device_json(overview)
    room = next((r for r in await rooms(db) if r.room_id == device["room_id"]), None)
    alarms = [a for a in await active_alarms(db) if a.device_id == device_id]
    quarantine = await get_quarantine(db, device_id)  # the release button shows while one is in force
    # Fingerprint enrolments (web/routes/consent_api.py): each student of this terminal, with every terminal's state.
    students = await enrolments_of(db, [e.student_id for e in await device_enrolments(db, device_id)])
    holds_roster = device["kind"] in ROSTER_KINDS  # a terminal that keeps fingerprint pages
    return await render_page("ops_device.html", device=device, room=room, uptime=duration_text(device["uptime_s"]),
                             enrolments=enrolment_rows(device_id, students), holds_roster=holds_roster,
                             student_choices=await student_choices(db) if holds_roster else [],
                             notice_version=CURRENT_NOTICE_VERSION,
                             health=health_of(device, (a.severity for a in alarms)),
                             quarantine=quarantine if quarantine and quarantine.active_at(utc_now(current_context()))
                             else None,
                             anomalies=await recent_anomalies(db, utc_now(current_context()), device_id=device_id))


@bp.get("/ops/alarms")
@require("ops", "admin")
async def alarms_page() -> str:
    return await render_page("ops_alarms.html")


@bp.get("/ops/tickets")
@require("ops", "admin")
async def ticket_board() -> str:
    ctx = current_context()
    now = utc_now(ctx)
    columns = []
    for state in ticket_rules.STATES:
        page = await list_tickets(ctx.db, TicketFilter(states=(state,)), BOARD_COLUMN, 0)
        items = page.items
        if state == "closed":  # the most recently closed, not the most urgent
            items = tuple(sorted(items, key=lambda t: t.closed_at or t.updated_at, reverse=True))
        columns.append({"state": state, "label": STATE_LABELS[state], "total": page.total,
                        "tickets": [ticket_json(t, now) for t in items]})
    staff = (await list_staff(ctx.db, 500, 0)).items
    return await render_page("ops_tickets.html", columns=columns, staff=staff,
                             priorities=ticket_rules.PRIORITIES)


@bp.get("/report")
@require()
async def report_problem() -> str:
    ctx, principal = current_context(), current_principal()
    now = utc_now(ctx)
    mine = await list_tickets(ctx.db, TicketFilter(reported_by=principal.user_id), MY_REPORTS, 0)
    staff = principal.role in ticket_rules.STAFF_ROLES
    return await render_page(
        "report_problem.html", rooms=await rooms(ctx.db), mine=[ticket_json(t, now) for t in mine.items],
        priorities=ticket_rules.PRIORITIES if staff else ticket_rules.REPORTER_PRIORITIES,
        default_priority=ticket_rules.DEFAULT_REPORT_PRIORITY, state_labels=STATE_LABELS)


@bp.get("/admin")
@require("admin")
async def overview() -> str:
    db = current_context().db
    return await render_page(
        "admin.html",
        counts=await overview_counts(db),
        by_reason=await rejection_counts(db),
        recent=(await list_rejections(db, RECENT_REJECTIONS, 0)).items,
        suppressed=await list_suppressed(db, RECENT_REJECTIONS),
    )
