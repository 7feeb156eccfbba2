"""The webhook dispatcher (``webhooks`` in the supervision tree).

``webhooks`` (:class:`WebhookDispatcher`, a service loop)
    Drains the PostgreSQL outbox (so it survives restarts): claims due
    deliveries, posts them signed (``CampusHub-Signature: t=<unix>,v1=<hex
    HMAC-SHA256(secret, "<t>.<body>")>``), retries failures with exponential
    backoff and gives up after ``max_attempts`` (state ``failed``). It polls
    at most every ``poll_s`` while idle. A URL or resolved address the policy
    (hub/domain/webhook_policy.py) refuses fails the delivery at once, never
    retried; it connects only to the address it checked (hub/adapters/webhook_transport.py).
    Logged URLs and stored errors are redacted (no userinfo, no query values).
    See docs/notifications.md.

Several workers (issue 13 part 2) each run a dispatcher on the one outbox;
safe concurrency through the database, no owner: a claim is ``FOR UPDATE
SKIP LOCKED`` judged by the database's clock (hub/db/webhooks.py), and its
lease outlasts everything the claimant may still do with the batch: each post
is cut at ``timeout_s`` whatever the server trickles (httpx's timeout is per
read, not per request), the whole batch at :meth:`WebhookDispatcher.batch_deadline_s`,
and the lease is that plus :data:`LEASE_MARGIN_S` for recording the outcomes.
So no other worker takes a row while it is being posted; a worker that dies
mid-batch leaves its rows to be taken once the lease ends (at least once).
An outcome is recorded only while its claim holds the row.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
from datetime import datetime, timedelta
from typing import Sequence

import httpx
import trio

from actors.service import ServiceActor
from hub.adapters.webhook_transport import ForbiddenTarget, Resolver, getaddrinfo_resolver, guarded_transport
from hub.db import Database
from hub.db.webhooks import DueDelivery, Outcome, claim_due, next_due_at, record_outcomes
from hub.domain.webhook_policy import redact_text, redact_url, url_problem
from hub.pipeline.writer import is_transient
from hub.services.warnings import RETRY_S, Clock, wall_clock

log = logging.getLogger("hub.services.webhooks")

SIGNATURE_HEADER = "CampusHub-Signature"
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 10.0
BACKOFF_MAX_S = 3600.0
DELIVERY_TIMEOUT_S = 10.0
POLL_S = 2.0
BATCH = 50
CONCURRENCY = 8
#: A claim's lease is the batch's deadline plus this: time to record the outcomes after the last post.
LEASE_MARGIN_S = 30.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``CampusHub-Signature`` header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does (documented for integrators; used by the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def backoff(attempts: int, base_s: float, max_s: float = BACKOFF_MAX_S) -> float:
    """Delay before retry number ``attempts`` (1 = the first retry): base, 2·base, 4·base... capped."""
    return min(max_s, base_s * 2 ** (attempts - 1))


class WebhookDispatcher(ServiceActor):
    """See the module docstring. Takes no messages."""

    def __init__(self, db: Database, *, now: Clock = wall_clock, max_attempts: int = MAX_ATTEMPTS,
                 backoff_base_s: float = BACKOFF_BASE_S, poll_s: float = POLL_S,
                 timeout_s: float = DELIVERY_TIMEOUT_S, resolver: Resolver = getaddrinfo_resolver) -> None:
        self._db = db
        self._now = now
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._resolver = resolver  # tests inject one instead of real DNS
        #: Claims made so far (tests wait on it: each is one look at the outbox).
        self.claims = 0

    @property
    def batch_deadline_s(self) -> float:
        """The longest a claimed batch may take to post: its rounds of :data:`CONCURRENCY` posts, each cut
        at ``timeout_s``."""
        return self._timeout_s * math.ceil(BATCH / CONCURRENCY)

    @property
    def lease(self) -> timedelta:
        """How long a claim holds its rows: the batch's deadline and :data:`LEASE_MARGIN_S` to record."""
        return timedelta(seconds=self.batch_deadline_s + LEASE_MARGIN_S)

    async def serve(self) -> None:
        lease = self.lease
        async with httpx.AsyncClient(timeout=self._timeout_s, transport=guarded_transport(self._resolver),
                                     follow_redirects=False) as client:
            while True:
                try:
                    due = await claim_due(self._db, lease, BATCH)
                    self.claims += 1
                    if due:
                        await self._deliver(client, due)
                        if len(due) == BATCH:
                            continue
                    idle = await self._idle_s()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # A claimed delivery whose outcome was lost is retried after its lease.
                    log.warning("webhooks: database unavailable (%s); retrying in %.0fs", exc, RETRY_S)
                    idle = RETRY_S
                await trio.sleep(idle)

    async def _idle_s(self) -> float:
        nxt = await next_due_at(self._db)
        if nxt is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, (nxt - self._now()).total_seconds()))

    async def _deliver(self, client: httpx.AsyncClient, due: Sequence[DueDelivery]) -> None:
        outcomes: list[Outcome | None] = [None] * len(due)
        refused: set[int] = set()  # delivery ids the address policy refused: failed for good
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def one(index: int) -> None:
            async with limiter:
                outcomes[index], retryable = await self._post(client, due[index])
                if not retryable:
                    refused.add(due[index].id)

        # Within the lease, whatever the receivers do: past it another worker may take the rows.
        with trio.move_on_after(self.batch_deadline_s):
            async with trio.open_nursery() as nursery:
                for index in range(len(due)):
                    nursery.start_soon(one, index)
        finished = [outcome or Outcome(delivery.id, False, None, "not posted before the claim's lease ran out")
                    for delivery, outcome in zip(due, outcomes)]
        now = self._now()
        retry_at: list[datetime | None] = []
        for delivery, outcome in zip(due, finished):
            attempts = delivery.attempts + 1
            if outcome.ok or attempts >= self._max_attempts or delivery.id in refused:
                retry_at.append(None)
            else:
                retry_at.append(now + timedelta(seconds=backoff(attempts, self._backoff_base_s)))
            if not outcome.ok:
                log.info("webhook delivery %s to %s failed (attempt %d): %s", delivery.id,
                         redact_url(delivery.url), attempts, outcome.error or outcome.status)
        recorded = await record_outcomes(self._db, due, finished, now, retry_at)
        if recorded < len(due):
            log.warning("webhooks: %d outcome(s) not recorded: their claim's lease had ended", len(due) - recorded)

    async def _post(self, client: httpx.AsyncClient, delivery: DueDelivery) -> tuple[Outcome, bool]:
        """Post one delivery: its outcome, and whether a failure may be retried."""
        problem = url_problem(delivery.url)  # subscriptions written before the policy, or by SQL
        if problem is not None:
            return Outcome(delivery.id, False, None, redact_text(f"refused: {problem}")[:500]), False
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "CampusHub-Webhooks/1",
            "CampusHub-Event": delivery.kind,
            "CampusHub-Delivery": str(delivery.event_id),
            SIGNATURE_HEADER: sign(delivery.secret, delivery.body, int(self._now().timestamp())),
        }
        try:
            with trio.move_on_after(self._timeout_s):  # the whole request, not each read (httpx's timeout)
                response = await client.post(delivery.url, content=delivery.body, headers=headers)
                ok = 200 <= response.status_code < 300
                return Outcome(delivery.id, ok, response.status_code,
                               None if ok else f"HTTP {response.status_code}"), True
            return Outcome(delivery.id, False, None, f"no complete answer within {self._timeout_s:g} s"), True
        except (ForbiddenTarget, httpx.InvalidURL) as exc:
            return Outcome(delivery.id, False, None, redact_text(f"refused: {exc}")[:500]), False
        except httpx.HTTPError as exc:
            return Outcome(delivery.id, False, None, redact_text(f"{type(exc).__name__}: {exc}")[:500]), True
