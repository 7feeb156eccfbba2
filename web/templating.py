"""Jinja filters: times are rendered in the server's zone and wrapped in <time datetime> for the browser.

app.js rewrites every ``<time datetime>`` into the browser's own zone, so the
server-side text is only what shows before the script runs.
"""
from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape
from quart import Quart

from hub.domain.checkin import FLAG_LABELS

from .feeds import STATUS_LABELS


def _local(value: datetime) -> datetime:
    return value.astimezone()


def time_tag(value: datetime | str | None, fmt: str = "time") -> Markup:
    """``<time datetime="iso" data-format="time|datetime">HH:MM</time>``, or an em dash."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    shown = _local(value).strftime("%H:%M" if fmt == "time" else "%d %b %H:%M")
    return Markup('<time datetime="{}" data-format="{}">{}</time>').format(
        value.isoformat(), escape(fmt), shown
    )


def register(app: Quart) -> None:
    app.add_template_filter(time_tag, "time_tag")
    app.jinja_env.globals["STATUS_LABELS"] = STATUS_LABELS  # a mapping, not a function: no add_template_global
    app.jinja_env.globals["FLAG_LABELS"] = FLAG_LABELS  # flag kinds in plain words (roster.js shows them)
