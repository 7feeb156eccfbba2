"""The ticket actor: auto-closes tickets whose alarm cleared and stayed clear, announces SLA breaches,
and (if configured) raises a ticket for a new alarm of a chosen severity.

What it learns, and from where:

- alarm changes: the live bus, :class:`~hub.core.bus.LiveAlarm` on ``DEVICES_TOPIC``
  (published by the device actors after their commit);
- ticket changes: :class:`~hub.core.bus.LiveTicket` on the same topic (published after
  the commit by the web, ``origin="web"``, and by the ticket actors, ``origin="hub"``:
  this one's and, through the bus bridge, other workers'); it re-reads those tickets;
- everything else: PostgreSQL, read at start and again whenever its bus
  subscription lags (``LAGGED``), so a dropped message never leaves a stale timer.

Timers are exact (``send_after`` per ticket and deadline, re-armed for the
remainder if one fires early), never a polling sweep. The actor subscribes
before it reads, so a change committed in between is seen (at worst twice;
every handler is idempotent).

Several workers (issue 13 part 2): every worker runs this actor, and all of them
track every live ticket: safe concurrency through the database, no owner. A
ticket for an alarm is created once (the unique index ``tickets_one_live_per_alarm``;
``create_ticket`` turns the loser's violation into :class:`~hub.db.tickets.TicketConflict`),
an auto-close is one ``SELECT ... FOR UPDATE`` of a ticket still open and an SLA
breach one conditional ``UPDATE``, so each happens once and only its winner
publishes it. Because each actor also re-reads the tickets other workers' actors
raised (their ``origin="hub"`` messages), a worker that dies leaves no ticket
without its timers.

Mailbox: :data:`TICKETS_MAILBOX`, Overflow.BLOCK. Only its own bus pump and
timers send to it; a full mailbox blocks the pump, whose bus subscription
then overflows and turns into one ``LAGGED``, i.e. a full reload: nothing is lost.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol, Sequence

import trio

from actors import Actor, Timer
from hub.core.bus import DEVICES_TOPIC, LAGGED, LiveAlarm, LiveBus, LiveTicket
from hub.db import Database
from hub.db import tickets as store_db
from hub.db.tickets import AlarmBrief, Ticket, TicketPolicy, Watch, WatchedTicket, live_ticket
from hub.domain import tickets as rules

log = logging.getLogger("hub.services.tickets")

TICKETS_MAILBOX = 256
#: The pump's bus buffer: device and alarm messages of a busy campus between two reads.
BUS_BUFFER = 1024


class TicketStore(Protocol):
    """The actor's persistence (PostgreSQL in the hub; an in-memory fake in the timing tests)."""

    async def load_watch(self, ticket_ids: Sequence[int] | None = None) -> Watch: ...

    async def close(self, ticket_id: int, at: datetime, reason: str, detail: dict) -> Ticket | None: ...

    async def mark_breached(self, ticket_id: int, at: datetime) -> Ticket | None: ...

    async def raise_for_alarm(self, alarm: AlarmBrief, priority: str, at: datetime) -> Ticket | None:
        """The hub's own ticket for ``alarm`` (due time and auto-close from the policy in force); None if
        the alarm ever had one, a live ticket watches its (device, type), or it is gone."""
        ...

    async def unticketed_alarms(self, severities: Sequence[str]) -> list[AlarmBrief]: ...


class PostgresTicketStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load_watch(self, ticket_ids: Sequence[int] | None = None) -> Watch:
        return await store_db.load_watch(self._db, ticket_ids)

    async def close(self, ticket_id: int, at: datetime, reason: str, detail: dict) -> Ticket | None:
        return await store_db.close_by_hub(self._db, ticket_id, at=at, reason=reason, detail=detail)

    async def mark_breached(self, ticket_id: int, at: datetime) -> Ticket | None:
        return await store_db.mark_sla_breached(self._db, ticket_id, at=at)

    async def raise_for_alarm(self, alarm: AlarmBrief, priority: str, at: datetime) -> Ticket | None:
        title = f"{alarm.severity.capitalize()} alarm: {alarm.type} on {alarm.device_id}"
        new = store_db.NewTicket(
            title=title[:rules.MAX_TITLE], description=alarm.message[:rules.MAX_TEXT], priority=priority,
            source="auto", reported_by=None, alarm_id=alarm.id)
        try:
            return await store_db.create_ticket(self._db, new, at=at, actor=rules.SYSTEM_USER)
        except (store_db.TicketConflict, store_db.TicketReferenceMissing):
            return None

    async def unticketed_alarms(self, severities: Sequence[str]) -> list[AlarmBrief]:
        return await store_db.unticketed_alarms(self._db, severities)


# --- messages --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlarmChanged:
    """An alarm change learnt from the bus (see the contract in docs/ops-console.md), with its times parsed."""

    alarm_id: int
    device_id: str
    alarm_type: str
    severity: str
    state: str
    raised_at: datetime | None
    cleared_at: datetime | None
    room_id: str | None = None
    message: str = ""

    @classmethod
    def from_bus(cls, alarm: LiveAlarm) -> "AlarmChanged":
        return cls(alarm.alarm_id, alarm.device_id, alarm.alarm_type, alarm.severity, alarm.state,
                   _time(alarm.raised_at), _time(alarm.cleared_at), alarm.room_id, alarm.message)


@dataclass(frozen=True)
class TicketsChanged:
    """These tickets changed in PostgreSQL (the web committed a change): re-read them."""

    ticket_ids: tuple[int, ...]


@dataclass(frozen=True)
class Reload:
    """Re-read every live ticket and alarm (the bus subscription lagged)."""


@dataclass(frozen=True)
class GetDeadlines:
    """Ask: ``{ticket_id: (auto_close_at | None, sla_due_at | None)}`` of the armed timers (for tests and ops)."""


@dataclass(frozen=True)
class _AutoCloseDue:
    ticket_id: int


@dataclass(frozen=True)
class _SlaDue:
    ticket_id: int


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class _Alarm:
    """The newest alarm of one (device, type)."""

    alarm_id: int
    state: str
    cleared_at: datetime | None

    @property
    def watch(self) -> rules.AlarmWatch:
        return rules.alarm_watch(self.state, self.cleared_at)


def _wall_clock() -> datetime:
    return datetime.now(timezone.utc)


class TicketActor(Actor):
    """Owns the hub's ticket timers. See the module docstring for what it learns and when.

    ``clock`` gives the wall-clock time deadlines are compared with; timers
    wait ``deadline - clock()`` on trio's clock, and re-check on firing.
    """

    def __init__(self, *, store: TicketStore, bus: LiveBus, clock: Callable[[], datetime] = _wall_clock) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._tickets: dict[int, WatchedTicket] = {}
        self._alarms: dict[tuple[str, str], _Alarm] = {}
        self._policy: TicketPolicy | None = None
        self._close_timers: dict[int, tuple[datetime, Timer]] = {}
        self._sla_timers: dict[int, tuple[datetime, Timer]] = {}

    async def started(self) -> None:
        await self.nursery.start(self._pump)  # subscribed before the first read: nothing slips between
        await self._reload()

    async def handle(self, message: Any) -> Any:
        if isinstance(message, AlarmChanged):
            await self._on_alarm(message)
        elif isinstance(message, TicketsChanged):
            await self._refresh(message.ticket_ids)
        elif isinstance(message, _AutoCloseDue):
            await self._on_auto_close_due(message.ticket_id)
        elif isinstance(message, _SlaDue):
            await self._on_sla_due(message.ticket_id)
        elif isinstance(message, Reload):
            await self._reload()
        elif isinstance(message, GetDeadlines):
            ids = set(self._close_timers) | set(self._sla_timers)
            return {i: (self._close_timers.get(i, (None,))[0], self._sla_timers.get(i, (None,))[0]) for i in ids}
        return None

    # --- inputs ---------------------------------------------------------------------------------

    async def _pump(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._bus.subscribe([DEVICES_TOPIC], capacity=BUS_BUFFER) as subscription:
            task_status.started()
            async for item in subscription:
                if item is LAGGED:
                    await self.ref.tell(Reload())
                elif isinstance(item, LiveAlarm):
                    await self.ref.tell(AlarmChanged.from_bus(item))
                elif isinstance(item, LiveTicket):
                    # The web's changes, and the tickets another worker's actor raised or changed (its
                    # own too: one re-read, cheaper than telling them apart).
                    await self.ref.tell(TicketsChanged((item.id,)))

    async def _reload(self) -> None:
        watch = await self._store.load_watch()
        for _, timer in [*self._close_timers.values(), *self._sla_timers.values()]:
            timer.cancel()
        self._close_timers.clear()
        self._sla_timers.clear()
        self._tickets = {t.id: t for t in watch.tickets}
        self._alarms = {(a.device_id, a.type): _Alarm(a.alarm_id, a.state, a.cleared_at) for a in watch.alarms}
        self._policy = watch.policy
        for ticket_id in list(self._tickets):
            await self._rearm(ticket_id)
        # Alarms raised while nobody listened (the hub was down, or the bus lagged).
        for alarm in await self._store.unticketed_alarms(self._policy.auto_raise_severities):
            await self._raise(alarm)

    async def _refresh(self, ticket_ids: Sequence[int]) -> None:
        watch = await self._store.load_watch(ticket_ids)
        self._policy = watch.policy
        fresh = {t.id: t for t in watch.tickets}
        for alarm in watch.alarms:
            self._note_alarm(alarm.device_id, alarm.type, _Alarm(alarm.alarm_id, alarm.state, alarm.cleared_at))
        for ticket_id in ticket_ids:
            ticket = fresh.get(ticket_id)
            if ticket is None or ticket.state == "closed":
                self._tickets.pop(ticket_id, None)
            else:
                self._tickets[ticket_id] = ticket
            await self._rearm(ticket_id)

    def _note_alarm(self, device_id: str, alarm_type: str, alarm: _Alarm) -> bool:
        """Keep the newest alarm of the pair (a higher id is a later raise); False if ``alarm`` is stale."""
        known = self._alarms.get((device_id, alarm_type))
        if known is not None and alarm.alarm_id < known.alarm_id:
            return False
        self._alarms[(device_id, alarm_type)] = alarm
        return True

    async def _on_alarm(self, alarm: AlarmChanged) -> None:
        key = (alarm.device_id, alarm.alarm_type)
        if not self._note_alarm(*key, _Alarm(alarm.alarm_id, alarm.state, alarm.cleared_at)):
            return
        watching = [t.id for t in self._tickets.values() if (t.device_id, t.alarm_type) == key]
        for ticket_id in watching:
            await self._rearm(ticket_id)
        policy = self._policy
        # Not only on the raise: an alarm may escalate into an auto-raise severity. The store
        # refuses an alarm that ever had a ticket, so an operator's close is not undone.
        if (not watching and policy is not None
                and rules.should_auto_raise(alarm.severity, alarm.state, policy.auto_raise_severities)):
            await self._raise(AlarmBrief(
                alarm.alarm_id, alarm.device_id, alarm.room_id, alarm.alarm_type, alarm.severity, alarm.state,
                alarm.message, alarm.raised_at, alarm.cleared_at))

    async def _raise(self, alarm: AlarmBrief) -> None:
        now = self._clock()
        ticket = await self._store.raise_for_alarm(alarm, rules.priority_for_severity(alarm.severity), now)
        if ticket is None:
            return
        log.info("raised ticket %s for %s alarm %s on %s", ticket.id, alarm.severity, alarm.id, alarm.device_id)
        self._publish(ticket, "created")
        await self._refresh((ticket.id,))

    # --- timers ---------------------------------------------------------------------------------

    async def _rearm(self, ticket_id: int) -> None:
        """Arm, move or cancel this ticket's two timers to match what is known now; act on passed deadlines."""
        ticket = self._tickets.get(ticket_id)
        close_at = sla_at = None
        if ticket is not None:
            key = ticket.alarm_key
            watch = self._alarms.get(key) if key is not None else None
            after = None if ticket.auto_close_after_s is None else timedelta(seconds=ticket.auto_close_after_s)
            close_at = rules.auto_close_at(ticket.state, after, watch.watch if watch else None)
            if ticket.resolved_at is None and ticket.sla_breached_at is None:
                sla_at = ticket.sla_due_at
        self._arm(self._close_timers, ticket_id, close_at, _AutoCloseDue(ticket_id))
        self._arm(self._sla_timers, ticket_id, sla_at, _SlaDue(ticket_id))

    def _arm(self, timers: dict[int, tuple[datetime, Timer]], ticket_id: int, at: datetime | None,
             message: Any) -> None:
        current = timers.get(ticket_id)
        if current is not None and current[0] == at:
            return
        if current is not None:
            current[1].cancel()
            del timers[ticket_id]
        if at is not None:
            delay = max(0.0, (at - self._clock()).total_seconds())
            timers[ticket_id] = (at, self.send_after(delay, message))

    def _fire(self, timers: dict[int, tuple[datetime, Timer]], ticket_id: int) -> datetime | None:
        """The deadline if it has passed; otherwise re-arm for the remainder (the clocks drifted) and None."""
        armed = timers.pop(ticket_id, None)
        if armed is None:
            return None
        at = armed[0]
        if self._clock() < at:
            message = _AutoCloseDue(ticket_id) if timers is self._close_timers else _SlaDue(ticket_id)
            timers[ticket_id] = (at, self.send_after((at - self._clock()).total_seconds(), message))
            return None
        return at

    async def _on_auto_close_due(self, ticket_id: int) -> None:
        if self._fire(self._close_timers, ticket_id) is None:
            return
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            return
        key = ticket.alarm_key
        alarm = self._alarms.get(key) if key is not None else None
        after = ticket.auto_close_after_s or 0
        closed = await self._store.close(
            ticket_id, self._clock(), f"alarm cleared and stayed clear for {after // 60} min",
            {"alarm_id": alarm.alarm_id if alarm else None, "cleared_at": alarm.cleared_at.isoformat()
             if alarm and alarm.cleared_at else None, "after_s": after})
        self._tickets.pop(ticket_id, None)
        await self._rearm(ticket_id)
        if closed is not None:
            log.info("auto-closed ticket %s", ticket_id)
            self._publish(closed, "auto_closed")

    async def _on_sla_due(self, ticket_id: int) -> None:
        if self._fire(self._sla_timers, ticket_id) is None:
            return
        ticket = self._tickets.get(ticket_id)
        if ticket is None or ticket.resolved_at is not None:
            return
        now = self._clock()
        marked = await self._store.mark_breached(ticket_id, now)
        self._tickets[ticket_id] = replace(ticket, sla_breached_at=now)
        if marked is not None:
            log.info("ticket %s breached its SLA (%s)", ticket_id, ticket.priority)
            self._publish(marked, "sla_breached")

    def _publish(self, ticket: Ticket, change: str) -> None:
        self._bus.publish(DEVICES_TOPIC, live_ticket(ticket, self._clock(), origin="hub", change=change))
