"""The ticket actor's timers (trio's autojump clock, an in-memory store) and its PostgreSQL store.

Timing tests use a fake store so virtual time never races a real socket;
the last tests run the same actor on the real store and database.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Sequence

import trio

from actors import ChildSpec, Supervisor
from hub.core.bus import DEVICES_TOPIC, LiveAlarm, LiveBus
from hub.db.tickets import (
    AlarmBrief,
    LatestAlarm,
    PriorityPolicy,
    Ticket,
    TicketPolicy,
    Watch,
    WatchedTicket,
    get_ticket,
    live_ticket,
    load_policy,
)
from hub.domain.tickets import DEFAULT_AUTO_CLOSE_AFTER, DEFAULT_AUTO_RAISE, DEFAULT_SLA
from hub.services.tickets import (
    GetDeadlines,
    PostgresTicketStore,
    Reload,
    TicketActor,
    TicketsChanged,
)

BASE = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
AUTO_CLOSE_S = 30 * 60
DEVICE, TYPE = "dev-1", "offline"


def clock() -> datetime:
    return BASE + timedelta(seconds=trio.current_time())


def default_policy(auto_raise: tuple[str, ...] = ("critical",)) -> TicketPolicy:
    return TicketPolicy(
        tuple(PriorityPolicy(p, int(d.total_seconds()), AUTO_CLOSE_S) for p, d in DEFAULT_SLA.items()),
        auto_raise, BASE, None)


class FakeStore:
    """The actor's store in memory: tickets and alarms as the database would hold them."""

    def __init__(self, policy: TicketPolicy | None = None) -> None:
        self.tickets: dict[int, Ticket] = {}
        self.alarms: dict[int, AlarmBrief] = {}
        self.policy = policy or default_policy()
        self.closed: list[tuple[int, datetime]] = []
        self.breached: list[tuple[int, datetime]] = []

    def add_ticket(self, **values) -> Ticket:
        ticket_id = len(self.tickets) + 1
        fields = dict(
            id=ticket_id, room_id="room-1", room_name="Room 1", building="Main", device_id=DEVICE, alarm_id=None,
            alarm_type=None, title="t", description="", priority="P2", state="open", source="alarm",
            assignee=None, assignee_name=None, reported_by="usr-ops", reporter_name="Ops",
            sla_due_at=clock() + timedelta(days=3), sla_breached_at=None, auto_close_after_s=AUTO_CLOSE_S,
            created_at=clock(), updated_at=clock(), resolved_at=None, closed_at=None, close_reason="")
        fields.update(values)
        self.tickets[ticket_id] = Ticket(**fields)
        return self.tickets[ticket_id]

    def add_alarm(self, alarm_id: int, *, state: str = "active_unacked", severity: str = "major",
                  cleared_at: datetime | None = None, device: str = DEVICE, type_: str = TYPE) -> AlarmBrief:
        self.alarms[alarm_id] = AlarmBrief(alarm_id, device, "room-1", type_, severity, state, "", clock(), cleared_at)
        return self.alarms[alarm_id]

    async def load_watch(self, ticket_ids: Sequence[int] | None = None) -> Watch:
        await trio.lowlevel.checkpoint()
        chosen = [t for t in self.tickets.values()
                  if (t.id in ticket_ids if ticket_ids is not None else t.state != "closed")]
        watched = tuple(WatchedTicket(t.id, t.state, t.priority, t.device_id, t.alarm_type, t.sla_due_at,
                                      t.sla_breached_at, t.resolved_at, t.auto_close_after_s) for t in chosen)
        keys = {(t.device_id, t.alarm_type) for t in chosen if t.alarm_type}
        latest: dict[tuple[str, str], AlarmBrief] = {}
        for a in sorted(self.alarms.values(), key=lambda a: a.id):
            if (a.device_id, a.type) in keys:
                latest[(a.device_id, a.type)] = a
        alarms = tuple(LatestAlarm(a.id, a.device_id, a.type, a.state, a.cleared_at) for a in latest.values())
        return Watch(watched, alarms, self.policy)

    async def close(self, ticket_id: int, at: datetime, reason: str, detail: dict) -> Ticket | None:
        ticket = self.tickets[ticket_id]
        if ticket.state == "closed":
            return None
        self.tickets[ticket_id] = dataclasses.replace(ticket, state="closed", closed_at=at, close_reason=reason)
        self.closed.append((ticket_id, at))
        return self.tickets[ticket_id]

    async def mark_breached(self, ticket_id: int, at: datetime) -> Ticket | None:
        ticket = self.tickets[ticket_id]
        if ticket.sla_breached_at is not None:
            return None
        self.tickets[ticket_id] = dataclasses.replace(ticket, sla_breached_at=at)
        self.breached.append((ticket_id, at))
        return self.tickets[ticket_id]

    async def raise_for_alarm(self, alarm: AlarmBrief, priority: str, at: datetime) -> Ticket | None:
        if any(t.alarm_id == alarm.id for t in self.tickets.values()):
            return None
        return self.add_ticket(alarm_id=alarm.id, alarm_type=alarm.type, device_id=alarm.device_id,
                               priority=priority, sla_due_at=self.policy.due(priority, at),
                               auto_close_after_s=self.policy.of(priority).auto_close_after_s,
                               source="auto", reported_by=None)

    async def unticketed_alarms(self, severities: Sequence[str]) -> list[AlarmBrief]:
        return [a for a in self.alarms.values()
                if a.state.startswith("active") and a.severity in severities
                and not any(t.alarm_id == a.id or (t.device_id, t.alarm_type) == (a.device_id, a.type)
                            and t.state != "closed" for t in self.tickets.values())]


def alarm_message(alarm_id: int, state: str, *, severity: str = "major", cleared_at: datetime | None = None,
                  device: str = DEVICE, type_: str = TYPE) -> LiveAlarm:
    return LiveAlarm(alarm_id, device, "room-1", type_, severity, state, clock().isoformat(),
                     cleared_at.isoformat() if cleared_at else None, None, None, "m")


async def start_actor(nursery, store, bus):
    root = Supervisor("root")
    await nursery.start(root.run)
    ref = await root.start_child(ChildSpec("tickets", lambda: TicketActor(store=store, bus=bus, clock=clock),
                                           mailbox_size=64))
    return root, ref


async def settle() -> None:
    """Let the pump and the actor handle what was published (virtual time: costs nothing)."""
    await trio.sleep(0.001)


async def test_ticket_closes_after_its_alarm_stays_clear(autojump_clock):
    store, bus = FakeStore(), LiveBus()
    store.add_alarm(1)
    ticket = store.add_ticket(alarm_id=1, alarm_type=TYPE, state="in_progress", assignee="usr-ops")
    with bus.subscribe([DEVICES_TOPIC]) as watcher:
        async with trio.open_nursery() as nursery:
            root, ref = await start_actor(nursery, store, bus)
            assert (await ref.ask(GetDeadlines()))[ticket.id][0] is None  # alarm active: no countdown
            cleared = clock()
            store.add_alarm(1, state="cleared_unacked", cleared_at=cleared)
            bus.publish(DEVICES_TOPIC, alarm_message(1, "cleared_unacked", cleared_at=cleared))
            await settle()
            assert (await ref.ask(GetDeadlines()))[ticket.id][0] == cleared + timedelta(seconds=AUTO_CLOSE_S)
            await trio.sleep(AUTO_CLOSE_S - 1)
            assert store.closed == []
            await trio.sleep(2)
            assert store.closed == [(ticket.id, cleared + timedelta(seconds=AUTO_CLOSE_S))]
            await root.shutdown()
            nursery.cancel_scope.cancel()
        published = [m for m in await drain(watcher) if m["type"] == "ticket"]
    assert [(m["id"], m["state"], m["change"], m["origin"]) for m in published] == [
        (ticket.id, "closed", "auto_closed", "hub")]


async def test_a_re_raise_before_the_deadline_cancels_the_countdown(autojump_clock):
    store, bus = FakeStore(), LiveBus()
    cleared = clock()
    store.add_alarm(1, state="cleared_acked", cleared_at=cleared)
    ticket = store.add_ticket(alarm_id=1, alarm_type=TYPE)
    async with trio.open_nursery() as nursery:
        root, ref = await start_actor(nursery, store, bus)
        # Reloaded from the store at start: the countdown from the clear is armed.
        assert (await ref.ask(GetDeadlines()))[ticket.id][0] == cleared + timedelta(seconds=AUTO_CLOSE_S)
        await trio.sleep(20 * 60)
        bus.publish(DEVICES_TOPIC, alarm_message(2, "active_unacked"))  # the same device and type again
        await settle()
        assert (await ref.ask(GetDeadlines()))[ticket.id][0] is None
        await trio.sleep(AUTO_CLOSE_S)
        assert store.closed == []
        # A stale message about the old alarm changes nothing.
        bus.publish(DEVICES_TOPIC, alarm_message(1, "cleared_acked", cleared_at=cleared))
        await settle()
        assert (await ref.ask(GetDeadlines()))[ticket.id][0] is None
        # The re-raised alarm clears: a fresh countdown from that clear.
        second_clear = clock()
        bus.publish(DEVICES_TOPIC, alarm_message(2, "cleared_unacked", cleared_at=second_clear))
        await trio.sleep(AUTO_CLOSE_S + 1)
        assert store.closed == [(ticket.id, second_clear + timedelta(seconds=AUTO_CLOSE_S))]
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def test_sla_breach_is_announced_once_at_the_due_time(autojump_clock):
    store, bus = FakeStore(), LiveBus()
    due = clock() + timedelta(hours=4)
    late = store.add_ticket(priority="P0", sla_due_at=due, source="report", device_id=None)
    done = store.add_ticket(priority="P0", sla_due_at=due, source="report", device_id=None,
                            state="resolved", resolved_at=clock())
    with bus.subscribe([DEVICES_TOPIC]) as watcher:
        async with trio.open_nursery() as nursery:
            root, ref = await start_actor(nursery, store, bus)
            await trio.sleep(4 * 3600 - 1)
            assert store.breached == []
            await trio.sleep(2)
            assert store.breached == [(late.id, due)]
            # A reload (as after a lagging bus) re-arms nothing for an announced breach.
            await ref.tell(Reload())
            await trio.sleep(3600)
            assert store.breached == [(late.id, due)] and done.id not in {i for i, _ in store.breached}
            await root.shutdown()
            nursery.cancel_scope.cancel()
        breaches = [m for m in await drain(watcher) if m.get("change") == "sla_breached"]
    assert len(breaches) == 1 and breaches[0]["id"] == late.id and breaches[0]["sla_breached"] is True


async def test_web_changes_re_arm_the_ticket(autojump_clock):
    """Resolving (on the web) stops the SLA timer; reopening re-arms it against the original due time."""
    store, bus = FakeStore(), LiveBus()
    due = clock() + timedelta(hours=1)
    ticket = store.add_ticket(priority="P0", sla_due_at=due, source="report", device_id=None)
    async with trio.open_nursery() as nursery:
        root, ref = await start_actor(nursery, store, bus)
        store.tickets[ticket.id] = dataclasses.replace(ticket, state="resolved", resolved_at=clock())
        bus.publish(DEVICES_TOPIC, live_ticket(store.tickets[ticket.id], clock(), origin="web", change="resolved"))
        await trio.sleep(2 * 3600)
        assert store.breached == []
        store.tickets[ticket.id] = dataclasses.replace(ticket, state="in_progress", resolved_at=None)
        reopened_at = clock()
        await ref.tell(TicketsChanged((ticket.id,)))
        await settle()
        assert store.breached == [(ticket.id, reopened_at)]  # already past due: announced at once
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def test_critical_alarm_raises_a_ticket_by_itself(autojump_clock):
    store, bus = FakeStore(), LiveBus()
    async with trio.open_nursery() as nursery:
        root, ref = await start_actor(nursery, store, bus)
        store.add_alarm(7, severity="critical")
        raised_at = clock()
        bus.publish(DEVICES_TOPIC, alarm_message(7, "active_unacked", severity="critical"))
        store.add_alarm(8, severity="minor", type_="temp_high")
        bus.publish(DEVICES_TOPIC, alarm_message(8, "active_unacked", severity="minor", type_="temp_high"))
        await settle()
        raised = [t for t in store.tickets.values() if t.source == "auto"]
        assert [(t.alarm_id, t.priority) for t in raised] == [(7, "P1")]
        assert raised[0].sla_due_at == raised_at + DEFAULT_SLA["P1"]
        # The ack of the same alarm raises nothing more.
        bus.publish(DEVICES_TOPIC, alarm_message(7, "active_acked", severity="critical"))
        await settle()
        assert len(store.tickets) == 1
        # Its clear starts the auto-close countdown of the raised ticket.
        bus.publish(DEVICES_TOPIC, alarm_message(7, "cleared_acked", severity="critical", cleared_at=clock()))
        await trio.sleep(AUTO_CLOSE_S + 1)
        assert [i for i, _ in store.closed] == [raised[0].id]
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def test_lagged_bus_reloads_and_catches_up(autojump_clock):
    """A flood overflows the actor's subscription: the LAGGED reload still sees the clear it dropped."""
    store, bus = FakeStore(), LiveBus()
    store.add_alarm(1)
    ticket = store.add_ticket(alarm_id=1, alarm_type=TYPE)
    async with trio.open_nursery() as nursery:
        root, ref = await start_actor(nursery, store, bus)
        cleared = clock()
        store.add_alarm(1, state="cleared_unacked", cleared_at=cleared)
        for i in range(5000):  # device chatter, published synchronously: far beyond the buffer
            bus.publish(DEVICES_TOPIC, {"type": "device", "device_id": f"d{i}", "online": True})
        bus.publish(DEVICES_TOPIC, alarm_message(1, "cleared_unacked", cleared_at=cleared))  # dropped
        await settle()
        assert (await ref.ask(GetDeadlines()))[ticket.id][0] == cleared + timedelta(seconds=AUTO_CLOSE_S)
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def drain(subscription) -> list[dict]:
    """The bus messages received within a second, as the browser receives them."""
    out = []
    with trio.move_on_after(1):
        while True:
            out.append(json.loads((await subscription.receive()).json))
    return out


# --- the real store --------------------------------------------------------------------------------

async def _alarm_row(db, device_id: str, type_: str, severity: str, state: str, raised_at: datetime,
                     cleared_at: datetime | None = None) -> int:
    return await db.fetchval(
        "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, cleared_at, message)"
        " SELECT id, room_id, $2, $3, $4, $5, $6, 'test' FROM devices WHERE id = $1 RETURNING id",
        device_id, type_, severity, state, raised_at, cleared_at)


async def test_postgres_store_catches_up_at_start(hub_campus, test_db):
    """Started late: closes what stayed clear, announces a passed SLA, raises the unticketed critical alarm."""
    from hub.db.tickets import NewTicket, create_ticket

    now = datetime.now(timezone.utc)
    dev_a, dev_b = hub_campus.devices[0].device_id, hub_campus.devices[1].device_id
    cleared = await _alarm_row(test_db, dev_a, "device_offline", "major", "cleared_unacked",
                               now - timedelta(hours=1), now - timedelta(minutes=40))
    critical = await _alarm_row(test_db, dev_b, "temperature_high", "critical", "active_unacked", now)
    from_alarm = await create_ticket(test_db, NewTicket(
        "Camera offline", "", "P2", "alarm", "usr-ops", alarm_id=cleared),
        at=now - timedelta(hours=1), actor="usr-ops")
    overdue = await create_ticket(test_db, NewTicket(
        "Projector flickers", "", "P0", "report", "usr-ops",
        room_id=hub_campus.sessions[0].room_id), at=now - timedelta(hours=5), actor="usr-ops")
    assert from_alarm.device_id == dev_a and from_alarm.alarm_type == "device_offline"
    bus = LiveBus()
    with bus.subscribe([DEVICES_TOPIC]) as watcher:
        async with trio.open_nursery() as nursery:
            root = Supervisor("root")
            await nursery.start(root.run)
            await root.start_child(ChildSpec("tickets", lambda: TicketActor(
                store=PostgresTicketStore(test_db), bus=bus)))
            changes: dict[tuple[str, int], dict] = {}  # (change, ticket id); the seeded demo tickets speak too
            with trio.fail_after(10):
                while not {("auto_closed", from_alarm.id), ("sla_breached", overdue.id)} <= set(changes) or not any(
                        change == "created" for change, _ in changes):
                    message = json.loads((await watcher.receive()).json)
                    changes[(message["change"], message["id"])] = message
            await root.shutdown()
            nursery.cancel_scope.cancel()
    closed = await get_ticket(test_db, from_alarm.id)
    assert closed.state == "closed" and closed.close_reason.startswith("alarm cleared")
    assert (await get_ticket(test_db, overdue.id)).sla_breached_at is not None
    assert changes[("sla_breached", overdue.id)]["sla_breached"] is True
    raised = next(m for (change, _), m in changes.items() if change == "created")
    assert (raised["alarm_id"], raised["priority"], raised["source"], raised["reported_by"]) == (
        critical, "P1", "auto", None)
    assert raised["room_id"] == hub_campus.devices[1].room_id
    policy = await load_policy(test_db)
    assert policy.auto_raise_severities == ("critical",) and policy.of("P0").resolve_within_s == 4 * 3600
    kinds = [r["kind"] for r in await test_db.fetch(
        "SELECT kind FROM ticket_events WHERE ticket_id = $1 ORDER BY id", from_alarm.id)]
    assert kinds == ["created", "auto_closed"]


async def test_the_policy_is_the_domains_defaults_until_an_admin_sets_a_priority(hub_campus, test_db):
    from hub.db.tickets import save_policy

    policy = await load_policy(test_db)
    assert policy.priorities == tuple(
        PriorityPolicy(p, int(d.total_seconds()), int(DEFAULT_AUTO_CLOSE_AFTER.total_seconds()))
        for p, d in DEFAULT_SLA.items())
    assert policy.auto_raise_severities == DEFAULT_AUTO_RAISE
    at = datetime.now(timezone.utc)
    try:
        saved = await save_policy(test_db, [PriorityPolicy("P3", 3600, None)], None, by="usr-admin", at=at)
        assert saved.of("P3") == PriorityPolicy("P3", 3600, None) and saved.due("P3", at) == at + timedelta(hours=1)
        # The other priorities and the auto-raise severities keep following the domain's defaults.
        assert saved.of("P2") == policy.of("P2") and saved.auto_raise_severities == DEFAULT_AUTO_RAISE
        assert saved.updated_by == "usr-admin"
    finally:
        await test_db.execute("DELETE FROM ticket_sla_policy WHERE priority = 'P3'")
