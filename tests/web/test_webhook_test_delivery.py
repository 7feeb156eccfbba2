"""POST /api/v1/webhooks/{id}/test: a test event goes through the real dispatcher to a real local receiver.

The web app and the dispatcher share a database of this test's own (so the dispatcher never
touches other tests' outbox rows); the receiver is a raw trio HTTP server.
"""
from __future__ import annotations

import json
import time
from functools import partial
from typing import AsyncIterator

import pytest
import trio
from support.webhook_receiver import Receiver
from web_helpers import bearer

from actors import ChildSpec, Supervisor
from hub.db import Database, open_database
from hub.services.webhooks import SIGNATURE_HEADER, WebhookDispatcher, verify


@pytest.fixture
async def db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    """This module's database: a fresh one (overrides the shared ``db`` the web fixtures build on)."""
    async with open_database(fresh_database_url, min_size=1, max_size=4) as database:
        yield database


async def delivery_after_attempt(client, headers, webhook_id: int, delivery_id: int) -> dict:
    """Poll the deliveries API, as the page does, until the test delivery has been attempted."""
    with trio.fail_after(15):
        while True:
            page = await (await client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers)).get_json()
            mine = [d for d in page["items"] if d["id"] == delivery_id]
            if mine and mine[0]["attempts"] > 0:
                return mine[0]
            await trio.sleep(0.05)


async def test_a_test_event_is_delivered_signed_and_its_result_recorded(client, world, db):
    receiver = Receiver([200, 500])
    admin = await bearer(client, world.username("admin"))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        created = await (await client.post("/api/v1/webhooks", json={"url": receiver.url, "kinds": ["leave_decided"]},
                                           headers=admin)).get_json()
        supervisor = Supervisor("test")
        await nursery.start(supervisor.run)
        await supervisor.start_child(ChildSpec("webhooks", lambda: WebhookDispatcher(
            db, backoff_base_s=60, poll_s=0.05, timeout_s=2.0), shutdown_timeout=1))

        response = await client.post(f"/api/v1/webhooks/{created['id']}/test", json={}, headers=admin)
        assert response.status_code == 202
        queued = await response.get_json()
        assert (queued["kind"], queued["state"], queued["attempts"]) == ("webhook_test", "pending", 0)
        delivered = await delivery_after_attempt(client, admin, created["id"], queued["id"])
        assert (delivered["state"], delivered["last_status"], delivered["last_error"]) == ("delivered", 200, None)

        # A second test meets a failing endpoint: the result says so (and the dispatcher will retry).
        second = await (await client.post(f"/api/v1/webhooks/{created['id']}/test", json={}, headers=admin)).get_json()
        failed = await delivery_after_attempt(client, admin, created["id"], second["id"])
        assert (failed["state"], failed["last_status"], failed["last_error"]) == ("pending", 500, "HTTP 500")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()

    first = receiver.requests[0]
    assert first.headers["campushub-event"] == "webhook_test"
    assert first.headers["campushub-delivery"] == str(queued["event_id"])
    assert verify(created["secret"], first.body, first.headers[SIGNATURE_HEADER.lower()], time.time())
    payload = json.loads(first.body)
    assert payload["type"] == "webhook_test" and payload["test"]["requested_by"] == world.users["admin"]
    # Audited, like every webhook change.
    entries = await db.fetch("SELECT action, after FROM audit_log WHERE entity = 'webhook' AND entity_id = $1"
                             " ORDER BY id", str(created["id"]))
    assert [e["action"] for e in entries] == ["created", "test_sent", "test_sent"]


async def test_a_turned_off_or_unknown_webhook_cannot_be_tested(client, world):
    admin = await bearer(client, world.username("admin"))
    created = await (await client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "active": False},
                                       headers=admin)).get_json()
    off = await client.post(f"/api/v1/webhooks/{created['id']}/test", json={}, headers=admin)
    assert off.status_code == 409 and (await off.get_json())["error"]["code"] == "webhook_inactive"
    assert (await client.post("/api/v1/webhooks/987654321/test", json={}, headers=admin)).status_code == 404
    ops = await bearer(client, world.username("ops"))
    assert (await client.post(f"/api/v1/webhooks/{created['id']}/test", json={}, headers=ops)).status_code == 403
    page = await (await client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=admin)).get_json()
    assert page["total"] == 0
