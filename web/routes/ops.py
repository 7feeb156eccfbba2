"""The ops console (device grid, device detail, alarm list, ticket board), the report form, the admin overview.

Pages are rendered server-side with stable hooks (``data-*``) and kept live by
``static/ops.js`` over ``/ws/devices``; everything they change goes through
the JSON API (tickets: web/routes/tickets_api.py; alarms, telemetry, health
history: the devices API; commands: web/routes/provisioning.py).
"""
from __future__ import annotations

from quart import Blueprint

from hub.db.alarms import active_alarms
from hub.db.campus_counts import overview_counts
from hub.db.device_health import devices_overview
from hub.db.quarantine import get_quarantine
from hub.db.rejections import list_rejections, list_suppressed, rejection_counts
from hub.db.rooms import rooms
from hub.db.tickets import TicketFilter, list_staff, list_tickets
from hub.domain import tickets as ticket_rules

from ..auth import current_principal, require
from ..console import HEALTH_ORDER, devices_json, grid, health_of, ticket_json
from ..context import current_context
from ..errors import not_found
from ..feeds import utc_now
from ._pages import render_page

bp = Blueprint("ops", __name__)

RECENT_REJECTIONS = 20
#: Tickets per column of the board (older ones are reached through the list API).
BOARD_COLUMN = 100
MY_REPORTS = 50
STATE_LABELS = {"open": "Open", "assigned": "Assigned", "in_progress": "In progress", "resolved": "Resolved",
                "closed": "Closed"}


@bp.get("/ops")
@require("ops", "admin")
async def devices() -> str:
    db = current_context().db
    listing = devices_json(await devices_overview(db))
    alarms = await active_alarms(db)
    buildings = grid(listing["devices"], await rooms(db), alarms)
    kinds = sorted({d["kind"] for d in listing["devices"]})
    return await render_page("ops.html", devices=listing, buildings=buildings, kinds=kinds,
                             health_order=HEALTH_ORDER, alarm_total=len(alarms))


@bp.get("/ops/devices/<device_id>")
@require("ops", "admin")
async def device_detail(device_id: str) -> str:
    db = current_context().db
    device = next((d for d in devices_json(await devices_overview(db))["devices"] if d["device_id"] == device_id),
                  None)
    if device is None:
        raise not_found("No such device.")
    room = next((r for r in await rooms(db) if r.room_id == device["room_id"]), None)
    alarms = [a for a in await active_alarms(db) if a.device_id == device_id]
    quarantine = await get_quarantine(db, device_id)  # the release button shows while one is in force
    return await render_page("ops_device.html", device=device, room=room,
                             health=health_of(device, (a.severity for a in alarms)),
                             quarantine=quarantine if quarantine and quarantine.active_at(utc_now(current_context()))
                             else None)


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
