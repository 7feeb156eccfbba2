"""Maintenance tickets in PostgreSQL: the ticket, its comments and history, the SLA policy.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` (several statements share one connection through
``db.run``) and may be called from any trio task; cancelling it rolls back
whatever it was writing. Each change to a ticket and its history entry are
written in one transaction. Changes are optimistic: :func:`update_ticket`
applies only if the ticket is still in the state (and version) the caller
judged, so two operators moving the same ticket cannot both win.

The rules (who may do what) are the caller's (``hub.domain.tickets``);
this module stores what it is told and guards only what must never be
stored. Times come from the caller's clock. Two things it decides itself,
so every front door agrees: the policy is the domain's defaults overlaid
with what an admin changed (:func:`read_policy`), and a new ticket's SLA
due time and auto-close delay come from that policy (:func:`create_ticket`,
for the web's reports and the hub's own tickets alike).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

import asyncpg

from hub.core.bus import LiveTicket, iso_fields
from hub.domain import tickets as rules

from ._pool import Database
from .paging import Page
from .security_audit import record


@dataclass(frozen=True)
class Ticket:
    id: int
    room_id: str | None
    room_name: str | None
    building: str | None
    device_id: str | None
    alarm_id: int | None
    alarm_type: str | None
    title: str
    description: str
    priority: str
    state: str
    source: str  # report | alarm | auto
    assignee: str | None
    assignee_name: str | None
    reported_by: str | None
    reporter_name: str | None
    sla_due_at: datetime
    sla_breached_at: datetime | None
    auto_close_after_s: int | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    close_reason: str

    @property
    def finished_at(self) -> datetime | None:
        """When work on it ended (resolved, or closed without a resolution), for the SLA."""
        return self.resolved_at or self.closed_at

    def sla_breached(self, now: datetime) -> bool:
        """The SLA verdict at ``now`` (the API and the live messages show it beside the columns)."""
        return rules.sla_breached(self.sla_due_at, now, self.finished_at)


def live_ticket(ticket: Ticket, now: datetime, *, origin: str, change: str) -> LiveTicket:
    """The bus message for a ticket: its columns plus the SLA verdict at ``now``. The one builder,
    for the ticket actor (``origin="hub"``) and the API (``origin="web"``); ``change`` names what
    happened (``created``, ``assigned``, ``start``, ``auto_closed``, ``sla_breached``...)."""
    return LiveTicket(origin=origin, change=change, **iso_fields(ticket), sla_breached=ticket.sla_breached(now))


@dataclass(frozen=True)
class Comment:
    id: int
    ticket_id: int
    author: str
    author_name: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class TicketEvent:
    id: int
    at: datetime
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    detail: dict
    #: Display names of the people the entry names (None: the hub, or an account that no longer exists).
    actor_name: str | None = None
    assignee_name: str | None = None
    previous_assignee_name: str | None = None


@dataclass(frozen=True)
class PriorityPolicy:
    priority: str
    resolve_within_s: int
    auto_close_after_s: int | None


@dataclass(frozen=True)
class TicketPolicy:
    """Every priority's policy (in :data:`~hub.domain.tickets.PRIORITIES` order) and the auto-raise severities."""

    priorities: tuple[PriorityPolicy, ...]
    auto_raise_severities: tuple[str, ...]
    updated_at: datetime
    updated_by: str | None

    def of(self, priority: str) -> PriorityPolicy:
        return next(p for p in self.priorities if p.priority == priority)

    def due(self, priority: str, created_at: datetime) -> datetime:
        """When a ticket of ``priority`` created at ``created_at`` must be resolved by."""
        return rules.sla_due(created_at, priority, {priority: timedelta(seconds=self.of(priority).resolve_within_s)})


@dataclass(frozen=True)
class AlarmBrief:
    id: int
    device_id: str
    room_id: str | None
    type: str
    severity: str
    state: str
    message: str
    raised_at: datetime | None
    cleared_at: datetime | None


@dataclass(frozen=True)
class NewTicket:
    """A ticket to create; its SLA due time and auto-close delay come from the policy (:func:`create_ticket`)."""

    title: str
    description: str
    priority: str
    source: str  # report | alarm | auto (raised by the hub itself)
    reported_by: str | None  # None: the hub
    room_id: str | None = None
    device_id: str | None = None
    alarm_id: int | None = None


@dataclass(frozen=True)
class TicketFilter:
    states: tuple[str, ...] = ()
    priority: str | None = None
    room_id: str | None = None
    device_id: str | None = None
    assignee: str | None = None
    reported_by: str | None = None
    #: True: only breached tickets; False: only tickets within their SLA; None: both. Judged at ``now``.
    breached: bool | None = None
    now: datetime | None = None
    #: Case-insensitive search in title, description, room, building and device id.
    search: str | None = None


@dataclass(frozen=True)
class WatchedTicket:
    """What the ticket actor tracks of a live ticket."""

    id: int
    state: str
    priority: str
    device_id: str | None
    alarm_type: str | None
    sla_due_at: datetime
    sla_breached_at: datetime | None
    resolved_at: datetime | None
    auto_close_after_s: int | None

    @property
    def alarm_key(self) -> tuple[str, str] | None:
        """The (device, alarm type) whose latest alarm this ticket watches, or None."""
        if self.device_id is None or self.alarm_type is None:
            return None
        return self.device_id, self.alarm_type


@dataclass(frozen=True)
class LatestAlarm:
    """The newest alarm of one (device, type) pair."""

    alarm_id: int
    device_id: str
    type: str
    state: str
    cleared_at: datetime | None


@dataclass(frozen=True)
class Watch:
    tickets: tuple[WatchedTicket, ...]
    alarms: tuple[LatestAlarm, ...]
    policy: TicketPolicy


@dataclass(frozen=True)
class Change:
    """One change to a ticket: new column values plus its history entry (and optional comment)."""

    kind: str
    actor: str
    set: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    comment: str = ""


class TicketReferenceMissing(Exception):
    """A room, device, alarm or user the ticket names does not exist; ``field`` says which."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class TicketConflict(Exception):
    """The alarm already has a live ticket (``ticket_id``)."""

    def __init__(self, ticket_id: int | None) -> None:
        super().__init__(f"the alarm already has ticket {ticket_id}")
        self.ticket_id = ticket_id


_SELECT = """
SELECT t.id, t.room_id, r.name AS room_name, r.building, t.device_id, t.alarm_id, t.alarm_type, t.title,
       t.description, t.priority, t.state, t.source, t.assignee, ua.display_name AS assignee_name,
       t.reported_by, ur.display_name AS reporter_name, t.sla_due_at, t.sla_breached_at, t.auto_close_after_s,
       t.created_at, t.updated_at, t.resolved_at, t.closed_at, t.close_reason
FROM tickets t
LEFT JOIN rooms r ON r.id = t.room_id
LEFT JOIN users ua ON ua.id = t.assignee
LEFT JOIN users ur ON ur.id = t.reported_by
"""
#: Board order: live before closed, most urgent first, then the nearest deadline.
_ORDER = " ORDER BY (t.state = 'closed'), t.priority, t.sla_due_at, t.id"
_STATE_COLUMNS = ("state", "assignee", "priority", "sla_due_at", "sla_breached_at", "auto_close_after_s",
                  "resolved_at", "closed_at", "close_reason", "alarm_id", "alarm_type")


def _ticket(row: asyncpg.Record) -> Ticket:
    return Ticket(**dict(row))


async def _get(conn: asyncpg.Connection, ticket_id: int) -> Ticket | None:
    row = await conn.fetchrow(_SELECT + " WHERE t.id = $1", ticket_id)
    return _ticket(row) if row is not None else None


async def _record_event(conn: asyncpg.Connection, ticket_id: int, at: datetime, change: Change,
                        from_state: str | None, to_state: str | None) -> None:
    await conn.execute(
        "INSERT INTO ticket_events (ticket_id, at, actor, kind, from_state, to_state, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        ticket_id, at, change.actor, change.kind, from_state, to_state, json.dumps(change.detail))


# --- policy --------------------------------------------------------------------------------------

def _default_policy(priority: str) -> PriorityPolicy:
    return PriorityPolicy(priority, int(rules.DEFAULT_SLA[priority].total_seconds()),
                          int(rules.DEFAULT_AUTO_CLOSE_AFTER.total_seconds()))


async def read_policy(conn: asyncpg.Connection) -> TicketPolicy:
    """The policy in force, in the caller's connection: what an admin set, the domain's defaults elsewhere."""
    rows = await conn.fetch("SELECT priority, resolve_within_s, auto_close_after_s FROM ticket_sla_policy")
    stored = {r["priority"]: PriorityPolicy(**dict(r)) for r in rows}
    settings = await conn.fetchrow("SELECT auto_raise_severities, updated_at, updated_by FROM ticket_settings")
    severities = settings["auto_raise_severities"]
    return TicketPolicy(
        tuple(stored.get(p) or _default_policy(p) for p in rules.PRIORITIES),
        rules.DEFAULT_AUTO_RAISE if severities is None else tuple(severities),
        settings["updated_at"], settings["updated_by"])


def _audited_policy(policy: TicketPolicy) -> dict[str, Any]:
    """What the audit log keeps of the policy: its content (not who saved it when: the entry says)."""
    return {"priorities": {p.priority: {"resolve_within_s": p.resolve_within_s,
                                        "auto_close_after_s": p.auto_close_after_s} for p in policy.priorities},
            "auto_raise_severities": list(policy.auto_raise_severities)}


async def load_policy(db: Database) -> TicketPolicy:
    return await db.run(read_policy)


async def save_policy(
    db: Database, priorities: Sequence[PriorityPolicy], auto_raise_severities: Sequence[str] | None, *, by: str,
    at: datetime,
) -> TicketPolicy:
    """Set the policy of the given priorities and, unless None, the auto-raise severities; the rest keep
    following the domain's defaults. Existing tickets keep their due times. A change is audited
    (:func:`hub.db.security_audit.record`, one entry with the policy before and after)."""

    async def work(conn: asyncpg.Connection) -> TicketPolicy:
        # Two admins saving at once: the second waits here, so each entry's "before" is exact.
        await conn.execute("SELECT 1 FROM ticket_settings FOR UPDATE")
        before = await read_policy(conn)
        await conn.executemany(
            "INSERT INTO ticket_sla_policy (priority, resolve_within_s, auto_close_after_s, updated_at, updated_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (priority) DO UPDATE SET"
            " resolve_within_s = excluded.resolve_within_s, auto_close_after_s = excluded.auto_close_after_s,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            [(p.priority, p.resolve_within_s, p.auto_close_after_s, at, by) for p in priorities])
        await conn.execute(
            "UPDATE ticket_settings SET auto_raise_severities = coalesce($1, auto_raise_severities),"
            " updated_at = $2, updated_by = $3",
            None if auto_raise_severities is None else list(auto_raise_severities), at, by)
        after = await read_policy(conn)
        if _audited_policy(before) != _audited_policy(after):
            await record(conn, actor=by, action="updated", entity="ticket_policy", entity_id="campus",
                         before=_audited_policy(before), after=_audited_policy(after))
        return after

    return await db.run(work, transaction=True)


# --- reads ---------------------------------------------------------------------------------------

async def alarm_brief(db: Database, alarm_id: int) -> AlarmBrief | None:
    row = await db.fetchrow(
        "SELECT id, device_id, room_id, type, severity, state, coalesce(message, '') AS message, raised_at,"
        " cleared_at FROM alarms WHERE id = $1", alarm_id)
    return AlarmBrief(**dict(row)) if row is not None else None


async def get_ticket(db: Database, ticket_id: int) -> Ticket | None:
    return await db.run(lambda conn: _get(conn, ticket_id))


async def ticket_history(db: Database, ticket_id: int) -> tuple[list[Comment], list[TicketEvent]]:
    """The ticket's comments and history entries, oldest first."""

    async def work(conn: asyncpg.Connection) -> tuple[list[Comment], list[TicketEvent]]:
        comments = await conn.fetch(
            "SELECT c.id, c.ticket_id, c.author, u.display_name AS author_name, c.body, c.created_at"
            " FROM ticket_comments c JOIN users u ON u.id = c.author WHERE c.ticket_id = $1 ORDER BY c.id",
            ticket_id)
        events = await conn.fetch(
            "SELECT e.id, e.at, e.actor, e.kind, e.from_state, e.to_state, e.detail,"
            " actor.display_name AS actor_name, assignee.display_name AS assignee_name,"
            " previous.display_name AS previous_assignee_name FROM ticket_events e"
            " LEFT JOIN users actor ON actor.id = e.actor"
            " LEFT JOIN users assignee ON assignee.id = e.detail ->> 'assignee'"
            " LEFT JOIN users previous ON previous.id = e.detail ->> 'previous'"
            " WHERE e.ticket_id = $1 ORDER BY e.id", ticket_id)
        return ([Comment(**dict(r)) for r in comments],
                [TicketEvent(**{**dict(r), "detail": json.loads(r["detail"])}) for r in events])

    return await db.run(work)


async def list_tickets(db: Database, where: TicketFilter, limit: int, offset: int) -> Page[Ticket]:
    clauses, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.states:
        clauses.append(f"t.state = ANY({arg(list(where.states))}::text[])")
    for column, value in (("priority", where.priority), ("room_id", where.room_id),
                          ("device_id", where.device_id), ("assignee", where.assignee),
                          ("reported_by", where.reported_by)):
        if value is not None:
            clauses.append(f"t.{column} = {arg(value)}")
    if where.breached is not None:
        if where.now is None:
            raise ValueError("filtering on breached needs now")
        late = f"coalesce(t.resolved_at, t.closed_at, {arg(where.now)}) > t.sla_due_at"
        clauses.append(late if where.breached else f"NOT ({late})")
    if where.search:
        pattern = arg("%" + where.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        clauses.append(
            f"(t.title ILIKE {pattern} OR t.description ILIKE {pattern} OR coalesce(t.device_id, '') ILIKE {pattern}"
            f" OR coalesce(r.name, '') ILIKE {pattern} OR coalesce(r.building, '') ILIKE {pattern})")
    condition = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    filter_args = list(args)

    async def work(conn: asyncpg.Connection) -> Page[Ticket]:
        total = await conn.fetchval(
            "SELECT count(*) FROM tickets t LEFT JOIN rooms r ON r.id = t.room_id" + condition, *filter_args)
        rows = await conn.fetch(
            _SELECT + condition + _ORDER + f" LIMIT ${len(filter_args) + 1} OFFSET ${len(filter_args) + 2}",
            *filter_args, limit, offset)
        return Page([_ticket(r) for r in rows], total)

    return await db.run(work)


# --- writes --------------------------------------------------------------------------------------

async def create_ticket(db: Database, new: NewTicket, *, at: datetime, actor: str) -> Ticket:
    """Insert a ticket and its ``created`` history entry; the one way a ticket is created.

    Its SLA due time (``at`` + the priority's resolve-within) and, for a
    ticket watching an alarm, its auto-close delay come from the policy in
    force, read in the same transaction. The room is the device's (or the
    alarm's device's) when not given. Raises :class:`TicketReferenceMissing`
    for an unknown room, device or alarm (or a device outside the given
    room), :class:`TicketConflict` if the alarm already has a live ticket;
    for the hub's own tickets (``source="auto"``) also if the alarm ever had
    a ticket (an operator's close is not undone) or a live ticket already
    watches its (device, alarm type).
    """

    async def work(conn: asyncpg.Connection) -> Ticket:
        room_id, device_id, alarm_type = new.room_id, new.device_id, None
        if new.alarm_id is not None:
            alarm = await conn.fetchrow("SELECT device_id, type FROM alarms WHERE id = $1", new.alarm_id)
            if alarm is None:
                raise TicketReferenceMissing("alarm_id", "No such alarm.")
            if device_id is not None and device_id != alarm["device_id"]:
                raise TicketReferenceMissing("device_id", "The alarm is not of this device.")
            device_id, alarm_type = alarm["device_id"], alarm["type"]
            existing = await conn.fetchval(
                "SELECT id FROM tickets WHERE alarm_id = $1 AND state <> 'closed'", new.alarm_id)
            if existing is None and new.source == "auto":
                existing = await conn.fetchval(
                    "SELECT id FROM tickets WHERE alarm_id = $1"
                    " OR (device_id = $2 AND alarm_type = $3 AND state <> 'closed') LIMIT 1",
                    new.alarm_id, device_id, alarm_type)
            if existing is not None:
                raise TicketConflict(existing)
        if device_id is not None:
            device_room = await conn.fetchval("SELECT room_id FROM devices WHERE id = $1", device_id)
            if device_room is None:
                raise TicketReferenceMissing("device_id", "No such device.")
            if room_id is not None and room_id != device_room:
                raise TicketReferenceMissing("device_id", "That device is not in that room.")
            room_id = device_room
        elif room_id is not None and await conn.fetchval("SELECT 1 FROM rooms WHERE id = $1", room_id) is None:
            raise TicketReferenceMissing("room_id", "No such room.")
        if room_id is None:
            raise TicketReferenceMissing("room_id", "Say which room (or device) the problem is in.")
        policy = await read_policy(conn)
        try:
            ticket_id = await conn.fetchval(
                "INSERT INTO tickets (room_id, device_id, alarm_id, alarm_type, title, description, priority, source,"
                " reported_by, sla_due_at, auto_close_after_s, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
                room_id, device_id, new.alarm_id, alarm_type, new.title, new.description, new.priority, new.source,
                new.reported_by, policy.due(new.priority, at),
                policy.of(new.priority).auto_close_after_s if alarm_type else None, at)
        except asyncpg.UniqueViolationError:  # raised concurrently by someone else (or the hub)
            raise TicketConflict(None) from None
        detail: dict[str, Any] = {"priority": new.priority, "source": new.source}
        if new.source == "auto":
            detail["alarm_id"] = new.alarm_id
        await _record_event(conn, ticket_id, at, Change("created", actor, detail=detail), None, "open")
        ticket = await _get(conn, ticket_id)
        assert ticket is not None
        return ticket

    return await db.run(work, transaction=True)


async def update_ticket(
    db: Database, ticket_id: int, *, expected_state: str, expected_updated_at: datetime, change: Change,
    at: datetime,
) -> Ticket | None:
    """Apply ``change`` if the ticket is still as the caller saw it; None if it changed meanwhile (or is gone).

    ``change.set`` may hold: state, assignee, priority, sla_due_at,
    sla_breached_at, auto_close_after_s, resolved_at, closed_at,
    close_reason, alarm_id, alarm_type. A non-empty ``change.comment`` is
    stored as a comment by ``change.actor`` in the same transaction.
    """
    unknown = set(change.set) - set(_STATE_COLUMNS)
    if unknown:
        raise ValueError(f"not a ticket column this may set: {sorted(unknown)}")
    columns = list(change.set)

    async def work(conn: asyncpg.Connection) -> Ticket | None:
        assignments = ", ".join(f"{c} = ${i + 4}" for i, c in enumerate(columns))
        updated = await conn.fetchval(
            f"UPDATE tickets SET updated_at = $3{', ' + assignments if assignments else ''}"
            " WHERE id = $1 AND state = $2 AND updated_at = $" + str(len(columns) + 4) + " RETURNING id",
            ticket_id, expected_state, at, *change.set.values(), expected_updated_at)
        if updated is None:
            return None
        await _record_event(conn, ticket_id, at, change, expected_state, change.set.get("state", expected_state))
        if change.comment:
            await conn.execute(
                "INSERT INTO ticket_comments (ticket_id, author, body, created_at) VALUES ($1, $2, $3, $4)",
                ticket_id, change.actor, change.comment, at)
        return await _get(conn, ticket_id)

    return await db.run(work, transaction=True)


async def add_comment(db: Database, ticket_id: int, *, author: str, body: str, at: datetime) -> Comment | None:
    """Store a comment (and bump the ticket's ``updated_at``); None if there is no such ticket."""

    async def work(conn: asyncpg.Connection) -> Comment | None:
        if await conn.fetchval("UPDATE tickets SET updated_at = greatest(updated_at, $2) WHERE id = $1"
                               " RETURNING id", ticket_id, at) is None:
            return None
        row = await conn.fetchrow(
            "WITH c AS (INSERT INTO ticket_comments (ticket_id, author, body, created_at) VALUES ($1, $2, $3, $4)"
            " RETURNING *) SELECT c.id, c.ticket_id, c.author, u.display_name AS author_name, c.body, c.created_at"
            " FROM c JOIN users u ON u.id = c.author", ticket_id, author, body, at)
        return Comment(**dict(row))

    return await db.run(work, transaction=True)


# --- what the hub's ticket actor needs ------------------------------------------------------------

_WATCH_SELECT = (
    "SELECT id, state, priority, device_id, alarm_type, sla_due_at, sla_breached_at, resolved_at,"
    " auto_close_after_s FROM tickets")


async def load_watch(db: Database, ticket_ids: Sequence[int] | None = None) -> Watch:
    """Live tickets (all, or those of ``ticket_ids``, whatever their state), the latest alarm of each
    (device, type) they watch, and the policy."""

    async def work(conn: asyncpg.Connection) -> Watch:
        if ticket_ids is None:
            rows = await conn.fetch(_WATCH_SELECT + " WHERE state <> 'closed'")
        else:
            rows = await conn.fetch(_WATCH_SELECT + " WHERE id = ANY($1::bigint[])", list(ticket_ids))
        tickets = tuple(WatchedTicket(**dict(r)) for r in rows)
        keys = {(t.device_id, t.alarm_type) for t in tickets if t.alarm_type is not None}
        alarms: list[LatestAlarm] = []
        if keys:
            devices, types = zip(*keys)
            found = await conn.fetch(
                "SELECT DISTINCT ON (a.device_id, a.type) a.id AS alarm_id, a.device_id, a.type, a.state, a.cleared_at"
                " FROM alarms a JOIN unnest($1::text[], $2::text[]) AS k(device_id, type)"
                " ON a.device_id = k.device_id AND a.type = k.type"
                " ORDER BY a.device_id, a.type, a.raised_at DESC, a.id DESC", list(devices), list(types))
            alarms = [LatestAlarm(**dict(r)) for r in found]
        return Watch(tickets, tuple(alarms), await read_policy(conn))

    return await db.run(work)


async def close_by_hub(db: Database, ticket_id: int, *, at: datetime, reason: str, detail: dict) -> Ticket | None:
    """Close a live ticket on the hub's behalf (auto-close); None if it is already closed or gone."""

    async def work(conn: asyncpg.Connection) -> Ticket | None:
        before = await conn.fetchval(
            "SELECT state FROM tickets WHERE id = $1 AND state <> 'closed' FOR UPDATE", ticket_id)
        if before is None:
            return None
        await conn.execute(
            "UPDATE tickets SET state = 'closed', closed_at = $2, resolved_at = coalesce(resolved_at, $2),"
            " close_reason = $3, updated_at = $2 WHERE id = $1", ticket_id, at, reason)
        await _record_event(conn, ticket_id, at, Change("auto_closed", "system", detail=detail), before, "closed")
        return await _get(conn, ticket_id)

    return await db.run(work, transaction=True)


async def mark_sla_breached(db: Database, ticket_id: int, *, at: datetime) -> Ticket | None:
    """Record that the hub announced the ticket's SLA breach; None if it already was (or the ticket is gone)."""

    async def work(conn: asyncpg.Connection) -> Ticket | None:
        state = await conn.fetchval(
            "UPDATE tickets SET sla_breached_at = $2 WHERE id = $1 AND sla_breached_at IS NULL RETURNING state",
            ticket_id, at)
        if state is None:
            return None
        await _record_event(conn, ticket_id, at, Change("sla_breached", "system"), state, state)
        return await _get(conn, ticket_id)

    return await db.run(work, transaction=True)


async def unticketed_alarms(db: Database, severities: Sequence[str]) -> list[AlarmBrief]:
    """Active alarms of ``severities`` that never had a ticket and whose (device, type) no live ticket watches."""
    rows = await db.fetch(
        "SELECT a.id, a.device_id, a.room_id, a.type, a.severity, a.state, coalesce(a.message, '') AS message,"
        " a.raised_at, a.cleared_at FROM alarms a"
        " WHERE a.state IN ('active_unacked', 'active_acked') AND a.severity = ANY($1::text[])"
        " AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.alarm_id = a.id"
        "   OR (t.device_id = a.device_id AND t.alarm_type = a.type AND t.state <> 'closed'))"
        " ORDER BY a.id", list(severities))
    return [AlarmBrief(**dict(r)) for r in rows]


@dataclass(frozen=True)
class StaffMember:
    id: str
    display_name: str
    role: str


async def list_staff(db: Database, limit: int, offset: int) -> Page[StaffMember]:
    """Users tickets may be assigned to (ops and admin), by name."""

    async def work(conn: asyncpg.Connection) -> Page[StaffMember]:
        total = await conn.fetchval("SELECT count(*) FROM users WHERE role IN ('ops', 'admin')")
        rows = await conn.fetch(
            "SELECT id, display_name, role FROM users WHERE role IN ('ops', 'admin')"
            " ORDER BY role DESC, display_name, id LIMIT $1 OFFSET $2", limit, offset)
        return Page([StaffMember(**dict(r)) for r in rows], total)

    return await db.run(work)
