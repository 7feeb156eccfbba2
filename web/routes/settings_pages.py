"""The settings pages: alarm (threshold) rules, webhooks, the ticket SLA policy.

Each page is a shell rendered with its choices (rooms, room types, metrics,
notification kinds, the policy's bounds); ``web/static/settings.js`` drives it
through the JSON API, so the page can do exactly what the API allows the
caller: thresholds (web/routes/devices_api.py, the preview in
web/routes/threshold_preview.py), webhooks (web/routes/notifications_api.py),
the SLA policy (web/routes/tickets_api.py; ops see it, admins change it).
"""
from __future__ import annotations

from datetime import timedelta

from quart import Blueprint

from hub.db.notifications import KINDS
from hub.db.rooms import rooms
from hub.db.thresholds import load_rule_set, recent_metric_units
from hub.db.tickets import load_policy
from hub.db.users import get_user
from hub.domain import tickets as ticket_rules
from hub.domain.alarms import SEVERITIES
from hub.domain.thresholds import OPS

from ..auth import require
from ..context import current_context
from ..feeds import utc_now
from ._pages import render_page
from .devices_api import MAX_RULE_DURATION_S

bp = Blueprint("settings_pages", __name__)

#: Metrics the rule form offers before any reading of them arrived (the simulator's and the drivers'),
#: with their units; metrics seen in the last day's aggregates are added with the unit they came with.
COMMON_METRICS = {"temperature": "°C", "co2": "ppm", "humidity": "%", "noise": "dB"}


@bp.get("/settings/thresholds")
@require("ops", "admin")
async def thresholds_page() -> str:
    ctx = current_context()
    rule_set = await load_rule_set(ctx.db)
    units = {**COMMON_METRICS, **await recent_metric_units(ctx.db, utc_now(ctx) - timedelta(days=1))}
    for rule in rule_set.rules:
        units.setdefault(rule["metric"], "")
    room_list = [{"id": r.room_id, "name": r.name, "building": r.building,
                  "room_type": rule_set.room_types.get(r.room_id, "")} for r in await rooms(ctx.db)]
    return await render_page(
        "settings_thresholds.html", rooms=room_list, room_types=sorted(set(rule_set.room_types.values())),
        units=dict(sorted(units.items())), ops=OPS, severities=SEVERITIES, max_duration_s=MAX_RULE_DURATION_S)


@bp.get("/settings/webhooks")
@require("admin")
async def webhooks_page() -> str:
    return await render_page("settings_webhooks.html", kinds=KINDS)


@bp.get("/settings/tickets")
@require("ops", "admin")
async def tickets_policy_page() -> str:
    db = current_context().db
    policy = await load_policy(db)
    changed_by = await get_user(db, policy.updated_by) if policy.updated_by else None
    return await render_page(
        "settings_tickets.html", policy=policy, changed_by=changed_by.display_name if changed_by else None,
        severities=ticket_rules.ALARM_SEVERITIES,
        min_sla_s=ticket_rules.MIN_SLA_S, max_sla_s=ticket_rules.MAX_SLA_S,
        max_auto_close_s=ticket_rules.MAX_AUTO_CLOSE_S)
