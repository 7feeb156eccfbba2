"""Notifications API: the caller's notification centre, and the webhook subscriptions (admin) that
deliver the same notifications to other systems. All under ``/api/v1``.

Ownership: notifications are always the caller's own, whatever the role;
webhook subscriptions and their delivery logs are the admin's. Marking a
notification read tells the caller's other open tabs the new unread count
over the live bus. Delivery itself is the webhook actor's
(hub/services/webhooks.py); the URL target policy is
hub/domain/webhook_policy.py (docs/notifications.md).
"""
from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.core.bus import LiveUnread, user_topic
from hub.db.notifications import KINDS, list_notifications, mark_all_read, mark_read, unread_count
from hub.db.webhooks import (
    Delivery,
    Subscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_deliveries,
    list_subscriptions,
    queue_test_delivery,
    update_subscription,
)
from hub.domain.webhook_policy import redact_text, url_problem

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BOOL,
    INT,
    STR,
    TIME,
    UUID,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    operation,
    path_param,
    query_str,
    ref,
)
from ..apidoc import (
    not_found as doc_not_found,
)
from ..auth import ROLES, current_principal, require
from ..context import current_context
from ..errors import WebError, invalid, not_found
from ..feeds import utc_now
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, choice_arg, flag_arg, json_body, path_id

bp = Blueprint("notifications_api", __name__, url_prefix="/api/v1")

MAX_URL = 2000
DELIVERY_STATES = ("pending", "delivered", "failed")


WebhookUrl = Annotated[str, Meta(max_length=MAX_URL, extra_json_schema={"format": "uri"}, description=(
    "http(s) endpoint that receives POSTs. Refused (400, field `url`): userinfo, link-local, unspecified, "
    "multicast and cloud-metadata hosts/addresses (also IPv4-mapped); loopback and private ranges are "
    "allowed. The resolved address is checked again at each delivery."))]


class WebhookChange(msgspec.Struct, kw_only=True):
    """``PATCH /webhooks/{id}``: the fields given change, the others stay."""

    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    secret: Annotated[str, Meta(min_length=16, max_length=200, description=(
        "HMAC key (printable); generated (and returned once) when omitted on create."))] | msgspec.UnsetType = (
        msgspec.UNSET)
    kinds: Annotated[list[Annotated[str, Meta(min_length=1, max_length=100)]], Meta(max_length=50, description=(
        f"Notification kinds ({', '.join(KINDS)}); empty = all."))] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET


class NewWebhook(WebhookChange, kw_only=True):
    """``POST /webhooks``: ``url`` is required; the others default (kinds: all, active, a new secret)."""

    url: WebhookUrl


# --- notifications --------------------------------------------------------------------------

def _announce_unread(user_id: str, unread: int) -> None:
    """Other open tabs of the user update their badge."""
    current_context().bus.publish(user_topic(user_id), LiveUnread(unread))


@bp.get("/notifications")
@require()
async def notifications() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    items, total, unread = await list_notifications(
        ctx.db, principal.user_id, unread_only=flag_arg("unread"), limit=paging.limit, offset=paging.offset)
    return jsonify(page_json(items, total, paging, unread=unread))


@bp.get("/notifications/unread-count")
@require()
async def notifications_unread() -> Response:
    ctx, principal = current_context(), current_principal()
    return jsonify({"unread": await unread_count(ctx.db, principal.user_id)})


@bp.post("/notifications/<notification_id>/read")
@require()
async def notification_read(notification_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)  # a JSON body (may be {}): the API's CSRF defence, see web/auth.py
    row = await mark_read(ctx.db, principal.user_id, path_id(notification_id, "notification"), utc_now(ctx))
    if row is None:
        raise not_found("No such notification.")
    _announce_unread(principal.user_id, await unread_count(ctx.db, principal.user_id))
    return jsonify(row)


@bp.post("/notifications/read-all")
@require()
async def notifications_read_all() -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)  # a JSON body (may be {}): the API's CSRF defence, see web/auth.py
    updated = await mark_all_read(ctx.db, principal.user_id, utc_now(ctx))
    _announce_unread(principal.user_id, 0)
    return jsonify({"updated": updated, "unread": 0})


# --- webhooks (admin) ---------------------------------------------------------------------------

def subscription_json(s: Subscription, *, with_secret: bool = False) -> dict:
    body = {
        "id": s.id, "url": s.url, "kinds": s.kinds, "active": s.active, "description": s.description,
        "created_at": s.created_at, "created_by": s.created_by, "updated_at": s.updated_at,
        "secret_hint": "…" + s.secret[-4:],
    }
    if with_secret:
        body["secret"] = s.secret
    return body


def delivery_json(d: Delivery) -> dict:
    return {
        "id": d.id, "subscription_id": d.subscription_id, "event_id": d.event_id, "kind": d.kind,
        "state": d.state, "attempts": d.attempts, "next_attempt_at": d.next_attempt_at,
        "last_attempt_at": d.last_attempt_at, "last_status": d.last_status,
        # Redacted again here: rows recorded before errors were redacted at the source.
        "last_error": redact_text(d.last_error) if d.last_error is not None else None,
        "delivered_at": d.delivered_at, "created_at": d.created_at, "payload": d.payload,
    }


def _subscription_fields(body: WebhookChange) -> dict[str, Any]:
    """The fields ``body`` gives, past the rules a type cannot say (the URL's target policy, a
    printable secret); a new subscription without a secret gets a generated one."""
    fields = {name: value for name, value in msgspec.structs.asdict(body).items() if value is not msgspec.UNSET}
    if "url" in fields:
        url = fields["url"]
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed "[" of an IPv6 literal
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(
                ch.isspace() for ch in url):
            raise invalid("'url' must be an absolute http(s) URL.", field="url")
        problem = url_problem(url)  # the target policy: docs/notifications.md
        if problem is not None:
            raise invalid(f"'url' is not allowed: {problem}.", field="url")
    if "secret" in fields and not fields["secret"].isprintable():
        raise invalid("'secret' must be 16 to 200 printable characters.", field="secret")
    if "secret" not in fields and isinstance(body, NewWebhook):
        fields["secret"] = secrets.token_urlsafe(32)
    if "kinds" in fields:
        fields["kinds"] = sorted(set(fields["kinds"]))
    return fields


async def _subscription_or_404(raw_id: str) -> Subscription:
    found = await get_subscription(current_context().db, path_id(raw_id, "webhook"))
    if found is None:
        raise not_found("No such webhook.")
    return found


@bp.get("/webhooks")
@require("admin")
async def webhooks() -> Response:
    paging = page_request()
    items, total = await list_subscriptions(current_context().db, paging.limit, paging.offset)
    return jsonify(page_json([subscription_json(s) for s in items], total, paging))


@bp.post("/webhooks")
@require("admin")
async def create_webhook() -> tuple[Response, int]:
    ctx = current_context()
    fields = _subscription_fields(await json_body(NewWebhook))
    created = await create_subscription(
        ctx.db, url=fields["url"], secret=fields["secret"], kinds=fields.get("kinds", []),
        active=fields.get("active", True), description=fields.get("description", ""),
        created_by=current_principal().user_id, now=utc_now(ctx),
    )
    return jsonify(subscription_json(created, with_secret=True)), 201


@bp.get("/webhooks/<webhook_id>")
@require("admin")
async def webhook(webhook_id: str) -> Response:
    return jsonify(subscription_json(await _subscription_or_404(webhook_id)))


@bp.patch("/webhooks/<webhook_id>")
@require("admin")
async def update_webhook(webhook_id: str) -> Response:
    ctx = current_context()
    found = await _subscription_or_404(webhook_id)
    fields = _subscription_fields(await json_body(WebhookChange))
    updated = await update_subscription(ctx.db, found.id, fields, utc_now(ctx), by=current_principal().user_id)
    if updated is None:
        raise not_found("No such webhook.")
    return jsonify(subscription_json(updated, with_secret="secret" in fields))


@bp.delete("/webhooks/<webhook_id>")
@require("admin")
async def delete_webhook(webhook_id: str) -> Response:
    found = await _subscription_or_404(webhook_id)
    if not await delete_subscription(current_context().db, found.id, by=current_principal().user_id):
        raise not_found("No such webhook.")
    return Response(b"", status=204)


@bp.get("/webhooks/<webhook_id>/deliveries")
@require("admin")
async def webhook_deliveries(webhook_id: str) -> Response:
    found = await _subscription_or_404(webhook_id)
    paging = page_request()
    state = choice_arg("state", DELIVERY_STATES)
    items, total = await list_deliveries(current_context().db, found.id, state, paging.limit, paging.offset)
    return jsonify(page_json([delivery_json(d) for d in items], total, paging))


@bp.post("/webhooks/<webhook_id>/test")
@require("admin")
async def test_webhook(webhook_id: str) -> tuple[Response, int]:
    """Queue a ``webhook_test`` delivery: the webhook dispatcher posts it like any notification, so
    its outcome (in the delivery log) says whether the endpoint receives and answers 2xx."""
    await json_body(EmptyBody)  # a JSON body (may be {}): the API's CSRF defence, see web/auth.py
    ctx, principal = current_context(), current_principal()
    found = await _subscription_or_404(webhook_id)
    if not found.active:
        raise WebError(409, "webhook_inactive", "This webhook is turned off: turn it on to send a test.")
    now = utc_now(ctx)
    queued = await queue_test_delivery(ctx.db, found.id, {
        "type": "webhook_test", "created_at": now.isoformat(),
        "test": {"requested_by": principal.user_id,
                 "message": "A test delivery from CampusHub; no action is needed."},
    }, by=principal.user_id)
    if queued is None:
        raise not_found("No such webhook.")
    return jsonify(delivery_json(queued)), 202


# --- OpenAPI ----------------------------------------------------------------------------------------

OPENAPI_SCHEMAS: dict = {
    "Notification": obj({
        "id": INT, "user_id": STR, "kind": STR, "title": STR, "body": STR, "link": nullable(STR),
        "data": {"type": "object"}, "created_at": TIME, "read_at": nullable(TIME), "read": BOOL,
    }),
    "Webhook": obj({
        "id": INT, "url": STR, "kinds": array(STR), "active": BOOL, "description": STR, "created_at": TIME,
        "created_by": nullable(STR), "updated_at": TIME, "secret_hint": STR,
        "secret": {**STR, "description": "Only when created, or when PATCH set a new one."},
    }, required=["id", "url", "kinds", "active", "description", "created_at", "created_by", "updated_at",
                 "secret_hint"]),
    "WebhookDelivery": obj({
        "id": INT, "subscription_id": INT, "event_id": UUID, "kind": STR,
        "state": enum(*DELIVERY_STATES), "attempts": INT, "next_attempt_at": TIME,
        "last_attempt_at": nullable(TIME), "last_status": nullable(INT), "last_error": nullable(STR),
        "delivered_at": nullable(TIME), "created_at": TIME, "payload": {"type": "object"},
    }),
}

_ADMIN = ["admin"]
_EVERYONE = list(ROLES)
_PAGE = page_params()
_WEBHOOK_ID = path_param("webhook_id", "Webhook subscription id.")
_EMPTY_BODY = json_request(EmptyBody, "Any JSON object, e.g. `{}`.")

OPENAPI_PATHS: dict = {
    "/api/v1/notifications": {"get": operation(
        "The caller's notifications, newest first", "notifications", _EVERYONE, {
            "200": json_response(page_of(ref("Notification"), unread=INT), "One page."), "400": BAD_URL},
        params=[query_str("unread", "Only unread ones.", enum("true", "false", "1", "0")), *_PAGE])},
    "/api/v1/notifications/unread-count": {"get": operation(
        "How many of the caller's notifications are unread", "notifications", _EVERYONE, {
            "200": json_response(obj({"unread": INT}), "Count.")})},
    "/api/v1/notifications/{notification_id}/read": {"post": operation(
        "Mark one of the caller's notifications read (idempotent)", "notifications", _EVERYONE, {
            "200": json_response(ref("Notification"), "Marked."), "400": BAD_BODY,
            "404": doc_not_found("notification")},
        params=[path_param("notification_id", "Notification id.")], body=_EMPTY_BODY)},
    "/api/v1/notifications/read-all": {"post": operation(
        "Mark all of the caller's notifications read", "notifications", _EVERYONE, {
            "200": json_response(obj({"updated": INT, "unread": INT}), "Marked."), "400": BAD_BODY},
        body=_EMPTY_BODY)},
    "/api/v1/webhooks": {
        "get": operation("Webhook subscriptions (admin)", "webhooks", _ADMIN, {
            "200": json_response(page_of(ref("Webhook")), "One page."), "400": BAD_URL}, params=_PAGE),
        "post": operation("Subscribe an endpoint to notifications (admin); the secret is shown once", "webhooks",
                          _ADMIN, {"201": json_response(ref("Webhook"), "Created."), "400": BAD_BODY},
                          body=json_request(NewWebhook, "The subscription.")),
    },
    "/api/v1/webhooks/{webhook_id}": {
        "get": operation("One webhook subscription (admin)", "webhooks", _ADMIN, {
            "200": json_response(ref("Webhook"), "The subscription."), "404": doc_not_found("webhook")},
            params=[_WEBHOOK_ID]),
        "patch": operation("Change a webhook subscription (admin)", "webhooks", _ADMIN, {
            "200": json_response(ref("Webhook"), "Changed."), "400": BAD_BODY, "404": doc_not_found("webhook")},
            params=[_WEBHOOK_ID],
            body=json_request(WebhookChange, "Fields to change.")),
        "delete": operation("Delete a webhook subscription and its delivery log (admin)", "webhooks", _ADMIN, {
            "204": {"description": "Deleted."}, "404": doc_not_found("webhook")}, params=[_WEBHOOK_ID]),
    },
    "/api/v1/webhooks/{webhook_id}/test": {"post": operation(
        "Send a test event (`webhook_test`) through the dispatcher (admin); poll its deliveries for the result",
        "webhooks", _ADMIN, {
            "202": json_response(ref("WebhookDelivery"), "Queued (state `pending`)."), "400": BAD_BODY,
            "404": doc_not_found("webhook"),
            "409": error("`webhook_inactive`: the subscription is turned off.")},
        params=[_WEBHOOK_ID], body=_EMPTY_BODY)},
    "/api/v1/webhooks/{webhook_id}/deliveries": {"get": operation(
        "A subscription's deliveries, newest first (admin)", "webhooks", _ADMIN, {
            "200": json_response(page_of(ref("WebhookDelivery")), "One page."), "400": BAD_URL,
            "404": doc_not_found("webhook")},
        params=[_WEBHOOK_ID, query_str("state", "Only this state.", enum(*DELIVERY_STATES)), *_PAGE])},
}
