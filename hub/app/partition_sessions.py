"""A worker's share of a partitioned hub: its partition leases, and one MQTT session per partition it owns.

With ``Settings.partitions`` = P >= 1 (``serve --workers``, docs/scaling.md),
rooms are cut into P partitions (hub/domain/partitions.py). Each partition has
one persistent MQTT session on the broker, its client id fixed for the
deployment (``<hub client id>-p<n>``), subscribed to the exact uplink and
status topics of the partition's devices (hub/domain/partition_topics.py).
Whoever owns the partition's lease (hub/db/partition_leases.py) connects
with that client id; so the next owner inherits the session's queued and
unacknowledged messages, and nothing is lost when a worker dies.

:class:`PartitionKeeper` is the one actor that changes what this worker owns.
Every round (a third of the lease) it:

1. processes what the renewal task found lost (below): stops those rooms' actors;
2. reads the live workers and the leases, applies the domain's
   :func:`~hub.domain.partitions.balance_plan`, releases what is beyond its
   share (its session drained and closed first; its rooms' actors are stopped
   in the background, so that stopping hundreds of them never delays the
   renewals) and claims free partitions:
   for each one got, the actors start first (the scheduler opens its rooms'
   sessions, the ingress starts its devices' actors from PostgreSQL), then the
   session connects;
3. re-reads which devices are in which room (one light query) and brings each
   owned session's subscriptions up to date.

Between rounds it also LISTENs for changes of the devices' rooms
(``DEVICE_ROOMS_CHANNEL``, a trigger on ``devices``, migration 0039): a device
registered or moved on any worker is subscribed by its partition's session
within moments of the commit, not at the next round; unsubscribing stays
with the rounds (below).

The heartbeat and the renewals run in a task of their own, every third of
the lease, so a round that waits on the actors of partitions it gains (a
scheduler opening hundreds of sessions, each loading its roster) never lets
the leases it holds run out; a lease the renewal finds lost stops being
served at once (its session closes).

Workers started together (``serve --workers``, ``Settings.worker_peers``)
count each other as live for their first :data:`PEERS_GRACE_LEASES` leases,
before the first heartbeats: each claims its share at once, and none claims
everything only to hand half of it over a round later.

Exactly once, in order: an event is acknowledged to the session that brought
it, only after its commit (``InboundMessage.client``); a message still in this
worker's pipeline when its session closes is dropped there unacknowledged
(hub/pipeline/ingress.py) and redelivered to the next owner, whose commit of
an event id already stored is a no-op. Per-device order holds because one
session at a time carries a device's messages, in order. A device moved to a
room of another partition is subscribed by its new partition's session at its
owner's next round, and unsubscribed from its old one only two rounds later;
meanwhile both may bring its messages, each committed once by event id. A
device registered on any worker is subscribed when its partition's owner
hears the registration's NOTIFY (or, with that LISTEN connection down, at
the next round): what it publishes before then has no subscriber and is
dropped by the broker, so an edge agent should connect after its
registration has committed, as provisioning makes it do.

A taken-over connection: Mosquitto before 2.0.15 closes it without DISCONNECT
0x8E, like any loss; before each reconnect the session asks the database
whether the lease is still this worker's (:func:`renew`), and ends if not,
so two workers never fight over one session.

If the database cannot be reached, the keeper keeps serving what it holds
until the leases it last renewed run out (by its own monotonic clock, started
before the renewal was sent), then stops serving everything and goes on
trying.

Concurrency contract: one keeper per hub run, a :class:`ServiceActor` (no
messages). Its sessions are tasks of its own nursery; when the keeper ends
(stopped, crashed, or cancelled with the whole hub) it closes them
(DISCONNECT, so no Will), then releases its leases and removes its
heartbeat (shielded, bounded by ``STOP_TIMEOUT_S``), so the other workers
take its partitions over at their next round instead of after the lease. A
restarted keeper claims again.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from actors.service import ServiceActor
from hub.db import Database
from hub.db.device_registry import device_rooms
from hub.db.partition_leases import (
    claim,
    forget_unseen_workers,
    forget_worker,
    live_workers,
    read_leases,
    register_worker,
    release,
    renew,
)
from hub.db.pg_listen import DEVICE_ROOMS_CHANNEL, keep_listening
from hub.domain.partition_topics import partition_topics, subscription_change
from hub.domain.partitions import balance_plan, partition_of_device
from hub.mqtt import TrioMqttClient
from hub.pipeline.ownership import PartitionOwnership
from schemas import Topics

log = logging.getLogger("hub.app.partitions")

#: How long the stop may take: close the sessions, release the leases, remove the heartbeat.
STOP_TIMEOUT_S = 5.0
#: A release waits at most this long for the session's read messages to be committed and acked.
HANDOVER_DRAIN_S = 5.0
#: The round's pause while this worker is below its share (waiting for another to release).
WANTING_ROUND_S = 0.5
#: A device no longer in a session's partition stays subscribed this many more rounds (see
#: PartitionKeeper._update_subscriptions).
UNSUBSCRIBE_AFTER_ROUNDS = 2
#: A worker's heartbeat row is removed once it has not been seen for this long.
FORGET_WORKERS_AFTER_S = 3600.0
#: The LISTEN for device changes is opened again this long after its connection dropped.
LISTEN_RETRY_S = 5.0
#: A keeper counts its peers (Settings.worker_peers) as live for this many leases after its start.
PEERS_GRACE_LEASES = 2


def partition_client_id(hub_client_id: str, partition: int) -> str:
    """The client id of a partition's persistent session: the same on every worker of the deployment."""
    return f"{hub_client_id}-p{partition}"


class _LeaseLost(Exception):
    """The partition's lease is no longer this worker's: its session must not reconnect."""


@dataclass
class _Session:
    """One owned partition's session: its client, what it subscribed, and how to end it."""

    partition: int
    client: TrioMqttClient
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: The filters subscribed on the current connection (replaced at every connect).
    subscribed: frozenset[str] = frozenset()
    #: Subscribed filters no longer wanted, with the rounds they have been so (see _update_subscriptions).
    unwanted_rounds: dict[str, int] = field(default_factory=dict)
    ended: trio.Event = field(default_factory=trio.Event)
    #: Its client's task was started (a claimed partition connects once its actors run).
    running: bool = False


@dataclass(frozen=True)
class KeeperStats:
    """What the keeper did, for /healthz and the tests (a snapshot)."""

    owned: tuple[int, ...]
    rounds: int
    claimed: int
    lost: int
    released: int


class PartitionKeeper(ServiceActor):
    """Keeps this worker's leases and runs the sessions of its partitions (see the module doc).

    ``make_client(partition)``: a new, unstarted :class:`TrioMqttClient` for that partition's
    session (client id :func:`partition_client_id`, persistent, feeding the ingress' shared
    channel). ``owned_changed()``: awaited after each change of ``ownership.owned``; it asks the
    scheduler and the ingress to start and stop actors, and returns when they have.
    """

    def __init__(
        self, *, db: Database, topics: Topics, worker_id: str, host: str, pid: int,
        ownership: PartitionOwnership, lease_s: float,
        make_client: Callable[[int], TrioMqttClient], owned_changed: Callable[[], Awaitable[None]],
        peers: frozenset[str] = frozenset(),
    ) -> None:
        if not ownership.partitioned:
            raise ValueError("a partition keeper needs a partitioned ownership (Settings.partitions >= 1)")
        self._db, self._topics = db, topics
        self._worker_id, self._host, self._pid = worker_id, host, pid
        self._ownership = ownership
        self._lease_s = lease_s
        self._round_s = lease_s / 3
        self._make_client = make_client
        self._owned_changed = owned_changed
        self._sessions: dict[int, _Session] = {}
        #: device id -> room id of every device not revoked, as last read.
        self._device_rooms: dict[str, str] = {}
        #: By this worker's monotonic clock: when the leases last renewed (or claimed) run out.
        self._deadline = -math.inf
        self._rounds = self._claimed = self._lost = self._released = 0
        self._forgotten = False
        #: The last round left this worker below its share (see serve).
        self._wanting = False
        #: Serialises the calls of owned_changed (see _tell_owned_changed).
        self._changing = trio.Lock()
        #: Partitions the renewal found lost (sessions closed); the next round stops their actors.
        self._lost_pending: set[int] = set()
        #: Workers started with this one, counted as live until ``_peers_until`` (see started()).
        self._peers = peers - {worker_id}
        self._peers_until = -math.inf
        #: Set by the device-rooms NOTIFY (and each re-LISTEN): _follow_devices re-reads the rooms.
        self._devices_changed = trio.Event()
        #: Serialises subscription updates (the rounds and _follow_devices).
        self._subscribing = trio.Lock()

    @property
    def stats(self) -> KeeperStats:
        return KeeperStats(tuple(sorted(self._ownership.owned)), self._rounds, self._claimed, self._lost,
                           self._released)

    async def started(self) -> None:
        # The first round runs before the start is reported: a single worker serves everything
        # once started. The sessions are tasks of the actor's nursery, so they end with it.
        # Peers (workers started together with this one) count as live for PEERS_GRACE_LEASES
        # leases, before their first heartbeat: each claims its share at once, and none claims
        # everything only to hand half of it over a round later. A peer that has not come up by
        # then leaves its share to the others.
        self._peers_until = trio.current_time() + PEERS_GRACE_LEASES * self._lease_s
        if self._ownership.owned:
            # A restarted keeper: its previous incarnation handed its leases back (serve's finally),
            # but the actors of those rooms still run. Stop them before claiming anew.
            self._ownership.owned = frozenset()
            await self._tell_owned_changed()
        await register_worker(self._db, self._worker_id, self._host, self._pid)
        await self._round_safely()
        self.nursery.start_soon(self.serve)
        self.nursery.start_soon(self._renew_loop)
        self.nursery.start_soon(self._follow_devices)
        await self.nursery.start(partial(
            keep_listening, self._db, DEVICE_ROOMS_CHANNEL, self._on_devices_notify, self._on_devices_listening,
            retry_s=LISTEN_RETRY_S, name="partition keeper"))

    def _on_devices_notify(self, _payload: str) -> None:
        self._devices_changed.set()

    async def _on_devices_listening(self) -> None:
        self._devices_changed.set()  # what changed while nobody listened: re-read

    async def _follow_devices(self) -> None:
        """Subscribe at once what the owned sessions newly want when PostgreSQL announces a change of
        the devices' rooms; coalesced (one re-read for a burst). A failed re-read waits for the round."""
        while True:
            await self._devices_changed.wait()
            self._devices_changed = trio.Event()
            try:
                self._device_rooms = await device_rooms(self._db)
            except Exception as exc:  # noqa: BLE001 - the database is the rounds' concern; they re-read
                log.info("partitions: devices' rooms not re-read now (%s); the next round will", exc)
                continue
            for session in list(self._sessions.values()):
                await self._update_subscriptions(session, in_round=False)

    async def _renew_loop(self) -> None:
        """The heartbeat and the renewals, in a task of their own: a round may wait long on the
        actors of partitions it gains (hundreds of session actors loading their rosters), and the
        leases it holds must not run out meanwhile. A lease found lost stops being served at once
        (its session is closed); the next round stops its actors."""
        while True:
            await trio.sleep(self._round_s)
            await self._unless_database_down(self._renew)

    async def _renew(self) -> None:
        db, me, lease_s = self._db, self._worker_id, self._lease_s
        sent_at = trio.current_time()
        await register_worker(db, me, self._host, self._pid)
        held = set(self._sessions)
        if not held:
            return
        kept = await renew(db, me, sorted(held), lease_s)
        self._deadline = sent_at + lease_s
        lost = (held - kept) & set(self._sessions)
        if lost:
            self._lost += len(lost)
            log.warning("partitions: lost %s (expired, perhaps taken); stopping them", sorted(lost))
            for partition in lost:
                self._sessions[partition].scope.cancel()
            self._lost_pending |= lost

    async def serve(self) -> None:
        try:
            while True:
                # Below its share, a worker is waiting for another to give partitions up: it looks
                # again soon, so a hand-over stalls those rooms for a fraction of a round.
                await trio.sleep(WANTING_ROUND_S if self._wanting else self._round_s)
                await self._round_safely()
        finally:
            # Also when the hub is cancelled from outside (no stopping() then): the other workers
            # should not wait a whole lease for partitions nobody serves.
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT_S):
                await self._hand_back()

    async def stopping(self) -> None:
        """An orderly stop: hand the partitions back, and stop the actors of what was owned."""
        owned = bool(self._ownership.owned)
        with trio.move_on_after(STOP_TIMEOUT_S):
            await self._hand_back()
            if owned:
                self._ownership.owned = frozenset()
                try:
                    await self._owned_changed()
                except Exception as exc:  # noqa: BLE001 - the hub is stopping: those actors stop anyway
                    log.info("partitions: actors not told of the stop (%s)", exc)

    async def _hand_back(self) -> None:
        """Close every session (DISCONNECT: no Will), then release its lease and the heartbeat. Idempotent."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.scope.cancel()
        for session in sessions:
            if session.running:
                await session.ended.wait()  # the client's DISCONNECT is bounded by the client itself
        try:
            if sessions:
                await release(self._db, self._worker_id, sorted(s.partition for s in sessions))
            if not self._forgotten:
                self._forgotten = True
                await forget_worker(self._db, self._worker_id)
        except Exception as exc:  # noqa: BLE001 - the leases then simply run out
            log.warning("partitions: could not hand back %s (%s); they expire within the lease",
                        sorted(s.partition for s in sessions), exc)

    # ------------------------------------------------------------------ rounds

    async def _round_safely(self) -> None:
        await self._unless_database_down(self._round)

    async def _unless_database_down(self, work: Callable[[], Awaitable[None]]) -> None:
        """``work()``; a database error is not a crash but :meth:`_database_unreachable`."""
        try:
            await work()
        except (OSError, ConnectionError) as exc:
            await self._database_unreachable(exc)
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors share no base with OSError
            if type(exc).__module__.startswith("asyncpg"):
                await self._database_unreachable(exc)
            else:
                raise

    async def _database_unreachable(self, exc: BaseException) -> None:
        if trio.current_time() < self._deadline or not self._sessions:
            log.warning("partitions: lease round failed (%s); serving until the leases run out", exc)
            return
        # Another worker may own them by now: no session, and no actor (whose timers would
        # still write, e.g. a device "offline" that another worker hears). Claimed again once
        # the database answers.
        log.error("partitions: the database is unreachable (%s) and the leases ran out; "
                  "stopping every session and actor until it is back", exc)
        try:
            await self._give_up(set(self._sessions))
        except Exception as stop_error:  # noqa: BLE001 - the sessions are closed; actors stop at the next change
            log.warning("partitions: actors not all stopped (%s)", stop_error)

    async def _round(self) -> None:
        self._rounds += 1
        db, me, lease_s = self._db, self._worker_id, self._lease_s
        if self._lost_pending:
            lost, self._lost_pending = self._lost_pending, set()
            await self._give_up(lost & set(self._sessions))
        live = set(await live_workers(db, lease_s))
        if self._peers and trio.current_time() < self._peers_until:
            live |= self._peers
        plan = balance_plan(self._ownership.partitions, live, await read_leases(db, self._ownership.partitions), me)
        if plan.release:
            # Stop serving first, then release: never two owners at once. Handed over drained:
            # what was read is committed and acknowledged before the session closes.
            await self._give_up(set(plan.release) & set(self._sessions), drain=True)
            self._released += len(await release(db, me, plan.release))
        self._device_rooms = await device_rooms(db)
        # Heartbeat rows of workers gone for good (killed, or their machine retired): not live for an
        # hour, so never one that is merely slow. A tiny table: the DELETE costs nothing per round.
        await forget_unseen_workers(db, max(FORGET_WORKERS_AFTER_S, 10 * lease_s))
        # A worker restarted under the same id finds leases of its own unexpired: serve them now
        # rather than let them sit idle until they run out (a claim of one's own lease keeps it).
        to_claim = sorted(set(plan.claim) | (set(plan.keep) - set(self._sessions)))
        if to_claim:
            sent_at = trio.current_time()
            got = set(await claim(db, me, to_claim, lease_s)) - set(self._sessions)
            if got:
                self._claimed += len(got)
                self._deadline = min(self._deadline, sent_at + lease_s) if self._sessions else sent_at + lease_s
                log.info("partitions: %s claimed %s", me, sorted(got))
                # Held (and renewed by the renewal task) from now on, connected once the actors run.
                for partition in got:
                    self._sessions[partition] = _Session(partition, self._make_client(partition))
                self._ownership.owned = self._ownership.owned | frozenset(got)
                await self._tell_owned_changed()
                for partition in sorted(got):
                    session = self._sessions.get(partition)
                    if session is not None and not session.running:
                        session.running = True
                        self.nursery.start_soon(self._run_session, session)
        for session in list(self._sessions.values()):
            await self._update_subscriptions(session)
        self._wanting = len(self._sessions) < plan.share

    async def _give_up(self, partitions: set[int], *, drain: bool = False) -> None:
        """Close these partitions' sessions (waiting for each to end), then stop their actors.

        ``drain`` (a release, the lease still ours): first stop reading and let the pipeline
        commit and acknowledge what it holds (at most ``HANDOVER_DRAIN_S``), so the next owner
        gets no redeliveries. A lost lease closes at once: the partition may be served already.
        """
        if not partitions:
            return
        if drain:
            held = [self._sessions[p].client for p in partitions if p in self._sessions]
            for client in held:
                client.hold_reads()
            for client in held:
                await client.wait_all_acked(HANDOVER_DRAIN_S)
        for partition in partitions:
            session = self._sessions.get(partition)
            if session is not None:
                session.scope.cancel()
        for partition in partitions:
            session = self._sessions.pop(partition, None)
            if session is not None and session.running:
                with trio.move_on_after(STOP_TIMEOUT_S):  # DISCONNECT is bounded by the client itself
                    await session.ended.wait()
        self._ownership.owned = self._ownership.owned - frozenset(partitions)
        # Stopping the rooms' actors can take long (each stop waits for the actor's message, up to its
        # shutdown timeout, one after another): in the background, so that the rounds, and with them
        # the renewals of what this worker keeps, go on. Nothing reaches those actors any more.
        self.nursery.start_soon(self._tell_owned_changed)

    async def _tell_owned_changed(self) -> None:
        """``owned_changed()``, one at a time (a gain waits for a stop in progress: its actors start after).

        A failure (an ask timing out behind hundreds of actor starts) is logged, not a crash: the
        sessions still connect, the ingress starts device actors as their messages come, and the
        next change reconciles again."""
        async with self._changing:
            try:
                await self._owned_changed()
            except Exception as exc:  # noqa: BLE001 - see the docstring
                log.warning("partitions: the actors did not all follow the change of ownership (%s: %s)",
                            type(exc).__name__, exc)

    # ------------------------------------------------------------------ sessions

    def _all_topics(self) -> frozenset[str]:
        return partition_topics(self._topics, (
            device_id for device_id in self._device_rooms if self._topics.valid_device_id(device_id)))

    def _wanted(self, partition: int) -> frozenset[str]:
        partitions = self._ownership.partitions
        return partition_topics(self._topics, (
            device_id for device_id, room_id in self._device_rooms.items()
            if self._topics.valid_device_id(device_id)
            and partition_of_device(device_id, room_id, partitions) == partition))

    async def _run_session(self, session: _Session) -> None:
        """Run one partition's client until its scope is cancelled or its lease is found lost."""
        partition = session.partition

        async def on_connect(client: TrioMqttClient) -> None:
            wanted = self._wanted(partition)
            if client.session_present:
                # A resumed session may still carry devices that are no longer in this partition
                # (moved to another room, or the partition count changed while it was offline):
                # nobody here knew them. One pipelined round trip, at connect only.
                await client.unsubscribe_many(sorted(self._all_topics() - wanted))
            # All of them at every connect: a resumed session may lack some (subscribed by an
            # owner that crashed before its SUBACK); a SUBSCRIBE of a filter it has is a no-op.
            await client.subscribe_many(sorted(wanted), qos=1)
            session.subscribed = wanted

        async def before_reconnect(client: TrioMqttClient) -> None:
            if not await renew(self._db, self._worker_id, [partition], self._lease_s):
                raise _LeaseLost(partition)

        try:
            with session.scope:
                await session.client.run(on_connect=on_connect, before_reconnect=before_reconnect)
        except _LeaseLost:
            # The next round's renewal finds it lost too, and stops its actors.
            log.warning("partitions: the session of partition %d was taken over; not reconnecting", partition)
        finally:
            session.ended.set()

    async def _update_subscriptions(self, session: _Session, *, in_round: bool = True) -> None:
        """Subscribe what is newly wanted at once; unsubscribe what is no longer wanted only after
        ``UNSUBSCRIBE_AFTER_ROUNDS`` rounds (``in_round=False``: between rounds, subscribe only). A
        device moved to another partition is then carried by both sessions for a while (each event
        committed once, by id), never by neither."""
        async with self._subscribing:
            await self._change_subscriptions(session, in_round)

    async def _change_subscriptions(self, session: _Session, count_round: bool) -> None:
        change = subscription_change(session.subscribed, self._wanted(session.partition))
        if count_round:
            unwanted = {topic: session.unwanted_rounds.get(topic, 0) + 1 for topic in change.unsubscribe}
            session.unwanted_rounds = unwanted
        else:
            unwanted = session.unwanted_rounds
        unsubscribe = sorted(topic for topic, rounds in unwanted.items()
                             if count_round and rounds > UNSUBSCRIBE_AFTER_ROUNDS)
        if not (unsubscribe or change.subscribe) or not session.client.connected:
            return  # the next connect subscribes what is wanted then
        try:
            if unsubscribe:
                await session.client.unsubscribe_many(unsubscribe)
            if change.subscribe:
                await session.client.subscribe_many(change.subscribe, qos=1)
        except Exception as exc:  # noqa: BLE001 - a lost connection: its next connect subscribes all
            log.info("partitions: subscriptions of partition %d not updated now (%s)", session.partition, exc)
            return
        for topic in unsubscribe:
            del unwanted[topic]
        session.subscribed = (session.subscribed - set(unsubscribe)) | set(change.subscribe)
