"""The webhook dispatcher against a real local HTTP receiver: signed, retried after a 500, given up after N.

The receiver is a raw trio socket server speaking just enough HTTP/1.1; the
dispatcher runs supervised, as in the hub, on a database of the test's own.
"""
from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import AsyncIterator

import pytest
import trio
from support.webhook_receiver import Receiver

from actors import ChildSpec, Supervisor
from hub.db import Database, open_database
from hub.db.notifications import NewNotification, add_notifications
from hub.services.webhooks import SIGNATURE_HEADER, WebhookDispatcher, backoff, sign, verify

SECRET = "whsec_" + "k" * 26


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def queue_one(db: Database, url: str, kind: str = "attendance_warning") -> int:
    """A user, a subscription and one notification: returns the queued delivery's id."""

    async def work(conn) -> int:
        await conn.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                           " VALUES ('u1', 'u1', 'U One', 'student', 'x') ON CONFLICT DO NOTHING")
        await conn.execute("INSERT INTO webhook_subscriptions (url, secret) VALUES ($1, $2)", url, SECRET)
        await add_notifications(conn, [NewNotification("u1", kind, "Below 75%", "You are at 70.00%.",
                                                       data={"percentage": "70.00"})])
        return await conn.fetchval("SELECT max(id) FROM webhook_deliveries")

    return await db.run(work, transaction=True)


async def wait_for_state(db: Database, delivery_id: int, state: str, timeout: float = 10.0) -> dict:
    with trio.fail_after(timeout):
        while True:
            row = await db.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
            if row["state"] == state:
                return dict(row)
            await trio.sleep(0.02)


async def run_dispatcher(nursery: trio.Nursery, db: Database, **options) -> Supervisor:
    supervisor = Supervisor("test")
    await nursery.start(supervisor.run)
    await supervisor.start_child(ChildSpec("webhooks", lambda: WebhookDispatcher(
        db, backoff_base_s=0.05, poll_s=0.05, timeout_s=2.0, **options), shutdown_timeout=1))
    return supervisor


async def test_signed_delivery_is_retried_after_a_500_then_delivered(fresh_db):
    receiver = Receiver([500, 200])
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        delivery_id = await queue_one(fresh_db, receiver.url)
        supervisor = await run_dispatcher(nursery, fresh_db)
        row = await wait_for_state(fresh_db, delivery_id, "delivered")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()

    assert len(receiver.requests) == 2
    assert (row["attempts"], row["last_status"], row["last_error"]) == (2, 200, None)
    first, second = receiver.requests
    assert first.headers["campushub-delivery"] == second.headers["campushub-delivery"] == str(row["event_id"])
    for request in receiver.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["campushub-event"] == "attendance_warning"
        assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER.lower()], time.time())
        assert not verify("another-secret-of-enough-length", request.body,
                          request.headers[SIGNATURE_HEADER.lower()], time.time())
    payload = json.loads(second.body)
    assert payload["type"] == "attendance_warning"
    assert payload["notification"]["user_id"] == "u1" and payload["notification"]["data"] == {"percentage": "70.00"}


async def test_gives_up_after_the_maximum_attempts(fresh_db):
    receiver = Receiver([503])
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        delivery_id = await queue_one(fresh_db, receiver.url)
        supervisor = await run_dispatcher(nursery, fresh_db, max_attempts=3)
        row = await wait_for_state(fresh_db, delivery_id, "failed")
        # A failed delivery is never claimed again: give the dispatcher a few more polls (50 ms
        # apart) to prove it (it passes whatever the timing if the dispatcher is right).
        await trio.sleep(0.2)
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 3
    assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 503, "HTTP 503")


async def test_an_unreachable_endpoint_is_recorded_and_retried_from_the_outbox(fresh_db):
    # Nothing listens on this port; the outbox row survives in PostgreSQL, so a dispatcher
    # started later (a restarted hub) delivers it once the endpoint is up.
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = Receiver([200], port=port)
    delivery_id = await queue_one(fresh_db, receiver.url)
    async with trio.open_nursery() as nursery:
        supervisor = await run_dispatcher(nursery, fresh_db)
        with trio.fail_after(10):
            while (await fresh_db.fetchval("SELECT attempts FROM webhook_deliveries WHERE id = $1", delivery_id)) < 1:
                await trio.sleep(0.02)
        await supervisor.shutdown()
        row = await fresh_db.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
        assert row["state"] == "pending" and row["last_status"] is None and "Connect" in row["last_error"]

        await nursery.start(partial(trio.serve_tcp, receiver.handle, port, host="127.0.0.1"))
        supervisor = await run_dispatcher(nursery, fresh_db)
        delivered = await wait_for_state(fresh_db, delivery_id, "delivered")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()
    assert delivered["last_status"] == 200 and len(receiver.requests) == 1


def test_signature_scheme_and_backoff():
    body = b'{"a":1}'
    header = sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, body, header, 1_700_000_100)
    assert not verify(SECRET, body + b" ", header, 1_700_000_100)
    assert not verify(SECRET, body, header, 1_700_001_000)  # too old: replay protection
    assert not verify(SECRET, body, "garbage", 1_700_000_000)
    assert [backoff(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(30, 10) == 3600


def resolving(table: dict[str, list[str]]):
    """A test resolver (instead of real DNS): host name -> addresses; IP literals resolve to themselves."""
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return table.get(host, [host])

    resolve.looked_up = looked_up  # type: ignore[attr-defined]
    return resolve


async def test_a_host_resolving_to_a_forbidden_address_is_refused_and_never_retried(fresh_db, caplog):
    caplog.set_level(logging.INFO, logger="hub.services.webhooks")
    # Registration saw a harmless name; at delivery it resolves to the metadata service (one of
    # its addresses is enough). Nothing is posted, and the failure is final.
    resolver = resolving({"hooks.campus.test": ["10.0.0.7", "169.254.169.254"]})
    delivery_id = await queue_one(fresh_db, "http://hooks.campus.test:8080/in?token=s3cret")
    async with trio.open_nursery() as nursery:
        supervisor = await run_dispatcher(nursery, fresh_db, resolver=resolver)
        row = await wait_for_state(fresh_db, delivery_id, "failed")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()
    assert row["attempts"] == 1 and row["last_status"] is None
    assert row["last_error"] == ("refused: hooks.campus.test resolves to a forbidden address: 169.254.169.254 "
                                 "is a link-local address (cloud metadata lives there)")
    assert resolver.looked_up == ["hooks.campus.test"]
    assert "s3cret" not in caplog.text and "hooks.campus.test:8080/in?token=***" in caplog.text


async def test_the_connection_goes_to_the_checked_address(fresh_db):
    # The resolver's answer is what is connected to (no second lookup): the name exists only in it.
    receiver = Receiver([200])
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        resolver = resolving({"hooks.campus.test": ["127.0.0.1"]})
        delivery_id = await queue_one(fresh_db, f"http://hooks.campus.test:{receiver.port}/in")
        supervisor = await run_dispatcher(nursery, fresh_db, resolver=resolver)
        row = await wait_for_state(fresh_db, delivery_id, "delivered")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()
    assert row["last_status"] == 200 and resolver.looked_up == ["hooks.campus.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.campus.test:{receiver.port}"


async def test_urls_stored_before_the_policy_are_refused_and_redacted(fresh_db, caplog):
    caplog.set_level(logging.INFO, logger="hub.services.webhooks")
    # Written with SQL, bypassing the API's check: userinfo, and a metadata host.
    userinfo = await queue_one(fresh_db, "https://svc:hunter2@hooks.campus.test/in")
    metadata = await queue_one(fresh_db, "http://metadata.google.internal/computeMetadata/v1/?recursive=true")
    resolver = resolving({})
    async with trio.open_nursery() as nursery:
        supervisor = await run_dispatcher(nursery, fresh_db, resolver=resolver)
        first = await wait_for_state(fresh_db, userinfo, "failed")
        second = await wait_for_state(fresh_db, metadata, "failed")
        await supervisor.shutdown()
        nursery.cancel_scope.cancel()
    assert first["attempts"] == 1 and "user name or password" in first["last_error"]
    assert second["attempts"] == 1 and "metadata.google.internal is a cloud metadata host" in second["last_error"]
    assert resolver.looked_up == []  # refused before any lookup or connection
    assert "https://hooks.campus.test/in" in caplog.text and "computeMetadata/v1/?recursive=***" in caplog.text
    assert "hunter2" not in caplog.text and "svc" not in caplog.text and "recursive=true" not in caplog.text
