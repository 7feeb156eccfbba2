"""Check-in network restriction settings (admin): the campus's allowed ranges and rooms' own.

``GET``/``PUT /api/v1/campus/checkin-networks`` (``{"ranges": [...]}``, empty:
no restriction; the answer also lists the rooms with a setting of their own) and
``GET``/``PUT /api/v1/rooms/{room_id}/checkin-networks`` (``{"ranges": [...]}``
replaces the campus's for that room, ``[]`` exempts it, ``null`` lets it follow
the campus). A display-mode check-in from outside what applies is accepted and
flagged ``outside_network`` for faculty review (docs/checkin.md).

Concurrency contract: each handler is one request task; a save is one
transaction (hub/db/checkin_networks.py) and is audited there.
"""
from __future__ import annotations

from typing import Annotated, Any, Sequence

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.checkin_networks import (
    CheckinNetworks,
    RoomNotFound,
    campus_networks,
    room_networks,
    room_overrides,
    set_campus_networks,
    set_room_networks,
)
from hub.domain.checkin_network import MAX_RANGE_CHARS, MAX_RANGES, InvalidRange, Network, parse_ranges

from ..apidoc import (
    BAD_URL,
    BEARER,
    STR,
    TIME,
    array,
    enum,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    operation,
    path_param,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError, invalid
from ..request import json_body

bp = Blueprint("checkin_networks_api", __name__, url_prefix="/api/v1")

RangeText = Annotated[str, Meta(max_length=MAX_RANGE_CHARS, description="A CIDR range, e.g. 192.0.2.0/24 or "
                                                                          "2001:db8::/48 (a bare address: one host).")]


class CampusNetworksBody(msgspec.Struct):
    """The campus's allowed client address ranges for display-mode check-in; ``[]``: no restriction."""

    ranges: Annotated[list[RangeText], Meta(max_length=MAX_RANGES)]


class RoomNetworksBody(msgspec.Struct):
    """A room's own ranges (``[]``: this room is not restricted), or ``null``: follow the campus."""

    ranges: Annotated[list[RangeText], Meta(max_length=MAX_RANGES)] | None


def _checked(texts: Sequence[str]) -> tuple[Network, ...]:
    try:
        return parse_ranges(texts)
    except InvalidRange as exc:
        raise invalid(f"{exc}.", field=f"ranges[{exc.index}]") from None


def _texts(ranges: Sequence[Network] | None) -> list[str] | None:
    return None if ranges is None else [str(r) for r in ranges]


def networks_json(setting: CheckinNetworks) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ranges": _texts(setting.ranges), "updated_by": setting.updated_by,
        "updated_at": setting.updated_at.isoformat() if setting.updated_at else None,
    }
    if setting.room_id is not None:
        body = {"room_id": setting.room_id, **body, "effective": _texts(setting.effective), "applies": setting.applies}
    return body


async def _campus_json() -> dict[str, Any]:
    db = current_context().db
    return {**networks_json(await campus_networks(db)), "rooms": [networks_json(r) for r in await room_overrides(db)]}


@bp.get("/campus/checkin-networks")
@require("admin")
async def campus() -> Response:
    return jsonify(await _campus_json())


@bp.put("/campus/checkin-networks")
@require("admin")
async def put_campus() -> Response:
    body = await json_body(CampusNetworksBody)
    await set_campus_networks(current_context().db, _checked(body.ranges), by=current_principal().user_id)
    return jsonify(await _campus_json())


@bp.get("/rooms/<room_id>/checkin-networks")
@require("admin")
async def room(room_id: str) -> Response:
    try:
        return jsonify(networks_json(await room_networks(current_context().db, room_id)))
    except RoomNotFound:
        raise WebError(404, "not_found", "No such room.", "room_id") from None


@bp.put("/rooms/<room_id>/checkin-networks")
@require("admin")
async def put_room(room_id: str) -> Response:
    body = await json_body(RoomNetworksBody)
    ranges = None if body.ranges is None else _checked(body.ranges)
    try:
        saved = await set_room_networks(current_context().db, room_id, ranges, by=current_principal().user_id)
    except RoomNotFound:
        raise WebError(404, "not_found", "No such room.", "room_id") from None
    return jsonify(networks_json(saved))


# --- OpenAPI ------------------------------------------------------------------------

_ADMIN = ("admin",)
_ROOM = path_param("room_id", "Room id.")
_RANGES = array({**STR, "description": "Normalised CIDR range."})
_SETTING = {"ranges": nullable(_RANGES), "updated_by": nullable(STR), "updated_at": nullable(TIME)}
_BAD_RANGES = error("`invalid_request`: a malformed body, or a range that is not CIDR or has host bits set "
                    "(`field` is `ranges[i]`).")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "RoomCheckinNetworks": obj({
        "room_id": STR, **_SETTING,
        "effective": {**_RANGES, "description": "The ranges that apply to this room's display check-ins."},
        "applies": {**enum("room", "campus", "none"), "description": "Which setting applies (`none`: no "
                                                                     "restriction)."},
    }),
    "CampusCheckinNetworks": obj({
        **_SETTING,
        "rooms": {**array(ref("RoomCheckinNetworks")), "description": "Rooms with a setting of their own."},
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/campus/checkin-networks": {
        "get": {**operation(
            "The campus's allowed networks for display-mode check-in, and rooms' own (admin)", "checkin", _ADMIN,
            {"200": json_response(ref("CampusCheckinNetworks"), "The settings.")}), "security": BEARER},
        "put": {**operation(
            "Set the campus's allowed networks (`[]`: no restriction); check-ins from outside are flagged "
            "`outside_network`, not refused (admin)", "checkin", _ADMIN,
            {"200": json_response(ref("CampusCheckinNetworks"), "Saved."), "400": _BAD_RANGES},
            body=json_request(CampusNetworksBody, "The ranges.")), "security": BEARER},
    },
    "/api/v1/rooms/{room_id}/checkin-networks": {
        "get": {**operation(
            "A room's allowed networks for display-mode check-in and what applies to it (admin)", "checkin",
            _ADMIN, {"200": json_response(ref("RoomCheckinNetworks"), "The setting."), "400": BAD_URL,
                     "404": not_found("room")}, params=[_ROOM]), "security": BEARER},
        "put": {**operation(
            "Set a room's own allowed networks (`[]`: not restricted; `null`: follow the campus) (admin)",
            "checkin", _ADMIN,
            {"200": json_response(ref("RoomCheckinNetworks"), "Saved."), "400": _BAD_RANGES,
             "404": not_found("room")},
            params=[_ROOM], body=json_request(RoomNetworksBody, "The ranges, or null.")), "security": BEARER},
    },
}
