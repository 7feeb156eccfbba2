"""The hub's singleton services with several workers (issue 13 part 2): two instances of each service run
at once against one PostgreSQL (and one broker, for commands), as two hub workers would, and whatever the
service does happens exactly once: one publish of a command and one answer to its ack wherever it lands,
one quarantine and one end of it, one attendance warning and one attendance-marked notification, one
webhook delivery, one ticket and one auto-close and SLA breach of it, one scheduled model, one crossing
notification, one set of terminal-roster commands.

Where two workers would see the same bus messages (the live bus is bridged between workers), both
instances subscribe to one :class:`~hub.core.bus.LiveBus`. Nothing here waits on time to pass: each test
waits (bounded) for the state it expects, then checks that the other instance did not act.
"""
from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import pytest
import trio
from support.course_world import seed_course
from support.hub_fixtures import broker_client
from support.hub_helpers import eventually
from support.webhook_receiver import Receiver

from actors import Actor, ActorRef, ChildSpec, Supervisor
from hub.adapters.mosquitto_auth import MosquittoFiles, MosquittoSync
from hub.core.bus import DEVICES_TOPIC, LiveAlarm, LiveAttendance, LiveBus, session_topic
from hub.core.campus import Campus
from hub.core.config import Settings
from hub.core.metrics import HubMetrics
from hub.db import Database, open_database
from hub.db.device_commands import create_command, get_command
from hub.db.notifications import NewNotification, add_notifications
from hub.db.quarantine import QuarantinePolicy, end_quarantine, get_quarantine, start_quarantine
from hub.db.risk import list_models
from hub.db.seed import ensure_campus
from hub.db.seed.past_terms import ensure_past_terms
from hub.db.tickets import NewTicket, create_ticket, live_ticket
from hub.db.webhooks import Outcome as DeliveryOutcome
from hub.db.webhooks import claim_due, record_outcomes
from hub.mqtt import InboundMessage, TrioMqttClient
from hub.pipeline.commands import (
    COMMANDS_MAILBOX,
    CommandAckReceived,
    CommandDispatcher,
    Dispatch,
    GetOutstanding,
    IsDispatcher,
)
from hub.pipeline.quarantine import QUARANTINE_MAILBOX, ArmedTimers, QuarantineChanged, QuarantineKeeper, Release, Trip
from hub.pipeline.writer import WRITER_MAILBOX, PersistenceWriter
from hub.services.risk import RISK_MAILBOX, RiskChanged, RiskWatcher, TrainScheduled
from hub.services.terminal_rosters import TerminalRosterKeeper
from hub.services.tickets import GetDeadlines, PostgresTicketStore, TicketActor
from hub.services.warnings import WarningWatcher
from hub.services.webhooks import WebhookDispatcher
from schemas import CommandAck, CommandAckEvent, Topics, decode_command, new_event_id

pytestmark = pytest.mark.integration

#: A standby looks for a service's lock this often here (the default is seconds): failovers are quick.
LOCK_RETRY_S = 0.1


@asynccontextmanager
async def supervisors(count: int) -> AsyncIterator[list[Supervisor]]:
    """``count`` running supervisors, one per "worker"; shut down (children stopped) on the way out."""
    async with trio.open_nursery() as nursery:
        made = []
        for index in range(count):
            supervisor = Supervisor(f"worker-{index}")
            await nursery.start(supervisor.run)
            made.append(supervisor)
        try:
            yield made
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(15):
                for supervisor in made:
                    await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def start(supervisor: Supervisor, name: str, actor: Actor, **spec: Any) -> ActorRef:
    await supervisor.start_child(ChildSpec(name, lambda: actor, **spec))
    ref = supervisor.lookup(name)
    assert isinstance(ref, ActorRef)
    return ref


async def count(db: Database, sql: str, *args: Any) -> int:
    return int(await db.fetchval(sql, *args))


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``predicate()`` holds: a counter or flag an actor updates as it works."""

    async def check() -> bool:
        return predicate()

    await eventually(check, timeout=timeout)


# --- commands ----------------------------------------------------------------------------------------

class DeviceSide:
    """The device's downlink: every command the broker delivers to it, by id, in order."""

    def __init__(self, client: TrioMqttClient) -> None:
        self.client = client
        self.received: list[uuid.UUID] = []

    async def run(self, topic: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def subscribe(client: TrioMqttClient) -> None:
            await client.subscribe(topic, qos=1)

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(self.client.run, on_connect=subscribe))  # connected and subscribed
            task_status.started()
            async for message in self.client.messages:
                _, command = decode_command(message.payload)
                self.received.append(uuid.UUID(bytes=command.id))
                self.client.ack(message)


def ack_of(device_id: str, command_id: uuid.UUID) -> CommandAckReceived:
    """What the ingress of the worker owning the device's partition tells its dispatcher."""
    event = CommandAckEvent(v=1, id=new_event_id(), device=device_id, ts=int(time.time() * 1000), seq=1,
                            body=CommandAck(command_id=command_id.bytes, status="ok", detail=""))
    message = InboundMessage(topic=f"ack/{device_id}", payload=b"", qos=1, retain=False, mid=1, generation=0,
                             received_at=time.time())
    return CommandAckReceived(message, event)


async def test_one_worker_dispatches_each_command_once_and_an_ack_is_answered_on_any_worker(
        hub_settings: Settings, hub_campus: Campus, test_db: Database) -> None:
    topics = Topics(hub_settings.topic_prefix)
    device_id = hub_campus.devices[0].device_id
    run = uuid.uuid4().hex[:8]

    async def command() -> uuid.UUID:
        row = await create_command(test_db, device_id=device_id, name="time_sync", args={}, ttl_s=600,
                                   ack_timeout_s=600, issued_by="usr-admin", now=datetime.now(timezone.utc),
                                   device_offline_after_s=30)
        return row.command_id

    async def status(command_id: uuid.UUID) -> str:
        row = await get_command(test_db, command_id)
        assert row is not None
        return row.status

    # Recorded while no worker runs: whichever dispatcher starts reloads it (a restart's path).
    before = await command()
    device = DeviceSide(broker_client(hub_settings, client_id=f"dev-{run}", clean_start=True))
    async with trio.open_nursery() as nursery, supervisors(2) as workers:
        await nursery.start(device.run, topics.downlink(device_id))
        dispatchers = []
        for index, worker in enumerate(workers):
            client = broker_client(hub_settings, client_id=f"hub-{run}-{index}", clean_start=True)
            await nursery.start(client.run)
            writer = await start(worker, "writer", PersistenceWriter(test_db, LiveBus(), HubMetrics(), lambda _: None),
                                 mailbox_size=WRITER_MAILBOX)
            dispatchers.append(await start(worker, "commands", CommandDispatcher(
                db=test_db, client=client, topics=topics, writer=writer, bus=LiveBus(), lock_retry_s=LOCK_RETRY_S),
                mailbox_size=COMMANDS_MAILBOX))
        roles = [await ref.ask(IsDispatcher()) for ref in dispatchers]
        assert sorted(roles) == [False, True]
        owner, standby = (dispatchers[0], dispatchers[1]) if roles[0] else (dispatchers[1], dispatchers[0])

        # Recorded by the standby worker's web: its Dispatch is dropped; the owner heard the insert.
        after = await command()
        await standby.tell(Dispatch(after))
        await eventually(lambda: _all_status(status, (before, after), "sent"))
        assert await standby.ask(GetOutstanding()) == {}  # the standby never published nor timed anything
        assert set(await owner.ask(GetOutstanding())) == {before, after}

        # The acks land on either worker (the device's partition): each moves its command once.
        await standby.tell(ack_of(device_id, before))
        await owner.tell(ack_of(device_id, after))
        await eventually(lambda: _all_status(status, (before, after), "acked"))
        # A redelivered ack changes nothing, on whichever worker.
        await owner.tell(ack_of(device_id, before))
        assert set(await owner.ask(GetOutstanding())) == {before}  # its timer fires later and finds it acked
        assert sorted(device.received) == sorted([before, after])

        # The owner's worker dies: the standby takes the lock and dispatches what is recorded from then on.
        await workers[dispatchers.index(owner)].stop_child("commands")
        await eventually(lambda: standby.ask(IsDispatcher()))
        third = await command()
        await eventually(lambda: _all_status(status, (third,), "sent"))
        assert device.received.count(third) == 1
        assert sorted(device.received) == sorted([before, after, third])
        assert [await status(c) for c in (before, after, third)] == ["acked", "acked", "sent"]
        nursery.cancel_scope.cancel()


async def _all_status(status: Any, ids: Sequence[uuid.UUID], wanted: str) -> bool:
    return all([await status(command_id) == wanted for command_id in ids])


# --- quarantine --------------------------------------------------------------------------------------

async def test_a_quarantine_starts_once_is_timed_by_every_worker_and_ends_once(
        hub_settings: Settings, hub_campus: Campus, test_db: Database, tmp_path: Path) -> None:
    topics = Topics(hub_settings.topic_prefix)
    flooder, other = hub_campus.devices[0].device_id, hub_campus.devices[1].device_id
    long_policy = QuarantinePolicy(base_s=600, max_s=1200, repeat_window_s=3600)
    told: list[list[tuple[str, QuarantineChanged]]] = [[], []]

    def audited(device_id: str, action: str) -> Any:
        return count(test_db, "SELECT count(*) FROM audit_log WHERE entity = 'device' AND entity_id = $1"
                              " AND action = $2", device_id, action)

    async with supervisors(2) as workers:
        keepers = []
        for index, worker in enumerate(workers):
            files = MosquittoFiles(tmp_path / f"w{index}.passwd", tmp_path / f"w{index}.acl")

            async def tell(device_id: str, message: object, index: int = index) -> None:
                assert isinstance(message, QuarantineChanged)
                told[index].append((device_id, message))

            keepers.append(await start(worker, "quarantine", QuarantineKeeper(
                test_db, MosquittoSync(test_db, topics, files, None), long_policy, HubMetrics(), tell),
                mailbox_size=QUARANTINE_MAILBOX))
        a, b = keepers

        # The flooder trips on worker A (its partition's owner) twice: one quarantine, rendered by A.
        await a.tell(Trip(flooder, "bucket empty"))
        await a.tell(Trip(flooder, "bucket empty"))
        first = await eventually(lambda: get_quarantine(test_db, flooder))
        assert first.strikes == 1
        # Every worker times it (B heard it), and A's files leave the device out.
        for keeper in keepers:
            await eventually(lambda keeper=keeper: _armed(keeper, {flooder: first.until}))
        assert flooder not in (tmp_path / "w0.passwd").read_text() and other in (tmp_path / "w0.passwd").read_text()
        assert await audited(flooder, "quarantined") == 1

        # Ops release it on worker B: ended once; A forgets its timer and tells the device's actor.
        ended = await b.ask(Release(flooder, "usr-ops"))
        assert ended is not None and ended.until == first.until
        assert await b.ask(Release(flooder, "usr-ops")) is None
        await eventually(lambda: _armed(a, {}))
        await until(lambda: (flooder, QuarantineChanged(None, "usr-ops")) in told[0])
        assert await audited(flooder, "released") == 1

        # It floods again: a second quarantine, doubled. A timer armed for the first ends nothing now.
        await a.tell(Trip(flooder, "flood"))
        second = await eventually(lambda: _active(test_db, flooder))
        assert second.strikes == 2 and second.until != first.until
        assert await end_quarantine(test_db, flooder, by="system", now=datetime.now(timezone.utc),
                                    until=first.until) is None
        assert (await get_quarantine(test_db, flooder)).released_at is None

        # A quarantine started elsewhere (a third worker) with a short cool-down: both keepers time it
        # and both timers fire; it ends once.
        short = await start_quarantine(test_db, other, reason="rate limited: test", now=datetime.now(timezone.utc),
                                       policy=QuarantinePolicy(base_s=0.5, max_s=1, repeat_window_s=0))
        await eventually(lambda: _released(test_db, other), timeout=15)
        for keeper in keepers:
            await eventually(lambda keeper=keeper: _armed(keeper, {flooder: second.until}))
        assert await audited(other, "quarantined") == 1 and await audited(other, "released") == 1
        for index in (0, 1):  # each worker told its device actor (were it running there) of the start and end, once
            assert [m for d, m in told[index] if d == other] == [QuarantineChanged(short.until),
                                                                 QuarantineChanged(None, "system")]


async def _armed(keeper: ActorRef, expected: dict[str, datetime]) -> bool:
    return await keeper.ask(ArmedTimers()) == expected


async def _active(db: Database, device_id: str) -> Any:
    quarantine = await get_quarantine(db, device_id)
    return quarantine if quarantine is not None and quarantine.released_at is None else None


async def _released(db: Database, device_id: str) -> bool:
    quarantine = await get_quarantine(db, device_id)
    return quarantine is not None and quarantine.released_at is not None


# --- attendance warnings -----------------------------------------------------------------------------

@pytest.fixture
async def fresh_db(aio_loop: Any, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=8) as database:
        yield database


async def notes(db: Database, kind: str) -> int:
    return await count(db, "SELECT count(*) FROM notifications WHERE kind = $1", kind)


async def test_one_worker_warns_and_notifies_once_and_a_standby_takes_over_without_repeating(fresh_db) -> None:
    db, bus = fresh_db, LiveBus()  # one bus: what the bridge makes of the workers' buses
    sessions = await seed_course(db, ["present"] * 7 + ["absent"] * 3)  # 70 %: below the 75 % line
    async with supervisors(2) as workers:
        watchers = [WarningWatcher(db, bus, sweep_every_s=3600, lock_retry_s=LOCK_RETRY_S) for _ in workers]
        for worker, watcher in zip(workers, watchers):
            await start(worker, "warnings", watcher, mailbox_size=64)
        await until(lambda: sorted(w.owner for w in watchers) == [False, True])
        owner = next(w for w in watchers if w.owner)
        standby = next(w for w in watchers if not w.owner)

        # One downward crossing: the student and both teachers, once.
        await eventually(lambda: _equals(notes(db, "attendance_warning"), 3))
        # One check-in seen on every worker's bus: one attendance-marked notification.
        bus.publish(session_topic(sessions[0]), LiveAttendance(
            sessions[0], "s1", "present", datetime.now(timezone.utc).isoformat(), "qr"))
        await eventually(lambda: _equals(notes(db, "attendance_marked"), 1))
        assert standby.rechecks == 0 and standby.pairs_rechecked == 0

        # The owner's worker dies: the standby takes the lock, recomputes everything, repeats nothing.
        await workers[watchers.index(owner)].stop_child("warnings")
        await until(lambda: standby.owner)
        await until(lambda: standby.pairs_rechecked > 0)
        bus.publish(session_topic(sessions[1]), LiveAttendance(
            sessions[1], "s1", "present", datetime.now(timezone.utc).isoformat(), "qr"))
        await eventually(lambda: _equals(notes(db, "attendance_marked"), 2))
        assert await notes(db, "attendance_warning") == 3


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


# --- webhooks ----------------------------------------------------------------------------------------

class HeldReceiver(Receiver):
    """A receiver that keeps its first request unanswered until ``release`` is set (a slow integrator)."""

    def __init__(self) -> None:
        super().__init__([200])
        self.first_arrived = trio.Event()
        self.release = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            await self.release.wait()
        await super().handle(stream)


async def queue_delivery(db: Database, url: str) -> int:
    async def work(conn: Any) -> int:
        await conn.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                           " VALUES ('u1', 'u1', 'U One', 'student', 'x') ON CONFLICT DO NOTHING")
        await conn.execute("INSERT INTO webhook_subscriptions (url, secret) VALUES ($1, $2)", url, "whsec_" + "k" * 26)
        await add_notifications(conn, [NewNotification("u1", "attendance_warning", "Below 75%", "70.00%.")])
        return int(await conn.fetchval("SELECT max(id) FROM webhook_deliveries"))

    return await db.run(work, transaction=True)


async def test_a_webhook_is_delivered_once_while_another_worker_whose_clock_runs_ahead_polls(fresh_db) -> None:
    db = fresh_db
    receiver = HeldReceiver()
    ahead = timedelta(hours=1)  # far beyond any lease: only the database's clock may judge claims
    async with trio.open_nursery() as nursery, supervisors(2) as workers:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        delivery_id = await queue_delivery(db, receiver.url)
        first = WebhookDispatcher(db, poll_s=0.05, timeout_s=5.0)
        await start(workers[0], "webhooks", first, shutdown_timeout=1)
        await receiver.first_arrived.wait()  # the first worker posts it; the receiver holds the request
        later = WebhookDispatcher(db, poll_s=0.05, timeout_s=5.0,
                                  now=lambda: datetime.now(timezone.utc) + ahead)
        await start(workers[1], "webhooks", later, shutdown_timeout=1)
        await until(lambda: later.claims >= 3)
        receiver.release.set()
        await eventually(lambda: _equals(db.fetchval("SELECT state FROM webhook_deliveries WHERE id = $1",
                                                     delivery_id), "delivered"))
        claims = later.claims
        await until(lambda: later.claims >= claims + 2)
        nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 1
    row = await db.fetchrow("SELECT attempts, last_status FROM webhook_deliveries WHERE id = $1", delivery_id)
    assert (row["attempts"], row["last_status"]) == (1, 200)


async def test_an_outcome_is_recorded_only_while_its_claim_holds_the_row(fresh_db) -> None:
    db = fresh_db
    delivery_id = await queue_delivery(db, "http://127.0.0.1:9/hooks")
    [stale] = await claim_due(db, timedelta(seconds=-1), 10)  # a lease already over: another worker may take it
    [taken] = await claim_due(db, timedelta(minutes=5), 10)
    assert stale.id == taken.id == delivery_id and taken.claimed_until != stale.claimed_until
    now = datetime.now(timezone.utc)
    assert await record_outcomes(db, [stale], [DeliveryOutcome(delivery_id, False, None, "late")], now, [now]) == 0
    assert await record_outcomes(db, [taken], [DeliveryOutcome(delivery_id, True, 200, None)], now, [None]) == 1
    row = await db.fetchrow("SELECT state, attempts, last_error FROM webhook_deliveries WHERE id = $1", delivery_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 1, None)


# --- tickets -----------------------------------------------------------------------------------------

async def alarm_row(db: Database, device_id: str, type_: str, severity: str, state: str, raised_at: datetime,
                    cleared_at: datetime | None = None) -> int:
    return int(await db.fetchval(
        "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, cleared_at, message)"
        " SELECT id, room_id, $2, $3, $4, $5, $6, 'test' FROM devices WHERE id = $1 RETURNING id",
        device_id, type_, severity, state, raised_at, cleared_at))


async def events_of(db: Database, ticket_id: int) -> list[str]:
    return [r["kind"] for r in await db.fetch("SELECT kind FROM ticket_events WHERE ticket_id = $1 ORDER BY id",
                                              ticket_id)]


async def test_tickets_are_raised_closed_and_breached_once_and_every_worker_times_every_ticket(
        hub_settings: Settings, hub_campus: Campus, test_db: Database) -> None:
    db, bus = test_db, LiveBus()  # one bus: what the bridge makes of the workers' buses
    now = datetime.now(timezone.utc)
    dev_a, dev_b = hub_campus.devices[0].device_id, hub_campus.devices[1].device_id
    cleared = await alarm_row(db, dev_a, "device_offline", "major", "cleared_unacked", now - timedelta(hours=1),
                              now - timedelta(minutes=40))
    from_alarm = await create_ticket(db, NewTicket("Camera offline", "", "P2", "alarm", "usr-ops", alarm_id=cleared),
                                     at=now - timedelta(hours=1), actor="usr-ops")
    overdue = await create_ticket(db, NewTicket("Projector flickers", "", "P0", "report", "usr-ops",
                                                room_id=hub_campus.devices[0].room_id),
                                  at=now - timedelta(hours=5), actor="usr-ops")
    async with supervisors(2) as workers:
        actors = [await start(worker, "tickets", TicketActor(store=PostgresTicketStore(db), bus=bus))
                  for worker in workers]
        # Both start on the same backlog: one auto-close, one breach.
        await eventually(lambda: _equals(events_of(db, from_alarm.id), ["created", "auto_closed"]))
        await eventually(lambda: _equals(events_of(db, overdue.id), ["created", "sla_breached"]))

        # A critical alarm both workers hear of (the device's partition published it; the bridge carried it).
        critical = await alarm_row(db, dev_b, "temperature_high", "critical", "active_unacked", now)
        room = hub_campus.devices[1].room_id
        bus.publish(DEVICES_TOPIC, LiveAlarm(critical, dev_b, room, "temperature_high", "critical", "active_unacked",
                                             now.isoformat(), None, None, 41.0, "test"))
        raised = await eventually(lambda: db.fetchval("SELECT id FROM tickets WHERE alarm_id = $1", critical))
        assert await count(db, "SELECT count(*) FROM tickets WHERE alarm_id = $1", critical) == 1
        # Every worker times it, not only the one whose create won: a worker may die.
        for actor in actors:
            await eventually(lambda actor=actor: _deadline_known(actor, raised))

        # Its SLA passes (an admin moved it: the web's message): breached once, by whichever worker.
        await db.execute("UPDATE tickets SET sla_due_at = $2, updated_at = $3 WHERE id = $1", raised,
                         now - timedelta(minutes=1), now)
        ticket = await create_or_get(db, raised)
        bus.publish(DEVICES_TOPIC, live_ticket(ticket, now, origin="web", change="priority"))
        await eventually(lambda: _equals(events_of(db, raised), ["created", "sla_breached"]))
        for actor in actors:
            await eventually(lambda actor=actor: _sla_timer_gone(actor, raised))


async def create_or_get(db: Database, ticket_id: int) -> Any:
    from hub.db.tickets import get_ticket

    ticket = await get_ticket(db, ticket_id)
    assert ticket is not None
    return ticket


async def _deadline_known(actor: ActorRef, ticket_id: int) -> bool:
    deadlines = await actor.ask(GetDeadlines())
    return ticket_id in deadlines and deadlines[ticket_id][1] is not None


async def _sla_timer_gone(actor: ActorRef, ticket_id: int) -> bool:
    deadlines = await actor.ask(GetDeadlines())
    return ticket_id not in deadlines or deadlines[ticket_id][1] is None


# --- early warning: training and crossings -----------------------------------------------------------

async def test_a_crossing_is_told_once_and_a_scheduled_training_stores_one_model(fresh_db) -> None:
    db, bus = fresh_db, LiveBus()
    now = datetime.now(timezone.utc)
    await ensure_campus(db, rooms=2, students=6, now=now)
    await ensure_past_terms(db, now, terms=3, students=40, courses=2, seed=6)
    await add_history(db, "stu-0001", "course-001", ["present", "absent", "absent", "present", "absent", "absent"])
    slot = now - timedelta(minutes=1)  # this week's 03:00, as each worker's timer computed it
    async with supervisors(2) as workers:
        watchers = []
        for worker in workers:
            watcher = RiskWatcher(db, bus, sweep_every_s=3600, weekly_training=False, daily_results=False)
            await start(worker, "risk", watcher, mailbox_size=RISK_MAILBOX)
            watchers.append(watcher)
        refs = [worker.lookup("risk") for worker in workers]
        # An ask is answered once what was queued before it is handled: both start-up re-scores are done.
        for ref in refs:
            await ref.ask(RiskChanged("no-such-course"))
        assert all(w.rescores >= 1 for w in watchers)
        sent = await notes(db, "support_suggested")
        told = await count(db, "SELECT count(DISTINCT (user_id, data->>'student_id', data->>'course_id'))"
                               " FROM notifications WHERE kind = 'support_suggested'")
        assert sent == told > 0  # each crossing into high risk told to each of the course's faculty, once

        # Both workers' weekly timers fire at once: one trains (the lock), the other skips.
        for ref in refs:
            await ref.tell(TrainScheduled(slot))
        with trio.fail_after(120):
            for watcher in watchers:
                await watcher.wait_trainings(1)
        assert len(await list_models(db)) == 1
        # One worker reaches the lock only after that training ended: still one model this week.
        late = watchers[0]
        await refs[0].tell(TrainScheduled(slot))
        with trio.fail_after(60):
            await late.wait_trainings(2)
        assert late.last_training is not None and late.last_training.model_id is None
        assert "another hub process" in late.last_training.note
        assert len(await list_models(db)) == 1


async def add_history(db: Database, student: str, course: str, statuses: list[str]) -> None:
    """Closed classes of ``course`` in the last weeks: ``student`` with these statuses, everyone else present."""
    now = datetime.now(timezone.utc)

    async def work(conn: Any) -> None:
        room = await conn.fetchval("SELECT room_id FROM class_sessions WHERE course_id = $1 LIMIT 1", course)
        section = await conn.fetchval("SELECT section_id FROM class_sessions WHERE course_id = $1 LIMIT 1", course)
        students = [r["student_id"] for r in await conn.fetch(
            "SELECT student_id FROM enrolments WHERE course_id = $1", course)]
        for i, status in enumerate(statuses):
            sid = f"hist-{i:02d}"
            start_at = now - timedelta(days=2 * (len(statuses) - i) + 1)
            await conn.execute("INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status,"
                               " section_id) VALUES ($1, $2, $3, $4, $5, 'closed', $6)",
                               sid, course, room, start_at, start_at + timedelta(minutes=50), section)
            await conn.executemany(
                "INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, $2, $3, 'manual')",
                [(sid, st, status if st == student else "present") for st in students])
    await db.run(work, transaction=True)


# --- terminal rosters --------------------------------------------------------------------------------

async def test_two_reconciles_at_once_queue_each_roster_change_once(
        hub_settings: Settings, hub_campus: Campus, test_db: Database) -> None:
    sent: list[list[uuid.UUID]] = [[], []]

    def keeper(index: int) -> TerminalRosterKeeper:
        async def send(command_id: uuid.UUID) -> None:
            sent[index].append(command_id)

        return TerminalRosterKeeper(test_db, send, device_offline_after_s=30)

    a, b = keeper(0), keeper(1)
    results: list[Any] = [None, None]
    roster_commands = "SELECT count(*) FROM device_commands WHERE name = 'roster_sync'"
    seeded = await count(test_db, roster_commands)

    async def reconcile(index: int, which: TerminalRosterKeeper) -> None:
        results[index] = await which.reconcile_all()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reconcile, 0, a)
        nursery.start_soon(reconcile, 1, b)
    queued = await count(test_db, roster_commands) - seeded
    assert queued > 0, "the seeded campus has terminals with students to place"
    assert sorted(len(r.commands) for r in results) == [0, queued]  # the second planned after the first's commit
    assert sorted(map(len, sent)) == [0, queued]
    again = await a.reconcile_all()
    assert again.commands == () and await count(test_db, roster_commands) == seeded + queued
