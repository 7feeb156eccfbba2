"""The composition root: builds the supervision tree and runs the hub.

The tree (children start in order and stop in reverse: writer, devices,
sessions, scheduler, connections, telemetry, retention, commands, warnings, risk, webhooks,
tickets, web, mqtt, ingress) and what each actor owns are described in
docs/architecture.md, "Supervision tree".
"""
from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import trio

from actors import ActorRef, ChildSpec, Supervisor
from actors.delivery import deliver
from actors.service import ServiceActor
from hub.app.broker_exposure import BrokerExposure, watch_broker_exposure
from hub.app.broker_session import SessionGuardEffects, hub_client_id
from hub.app.workers import default_worker_id
from hub.core.bus import LiveBus
from hub.core.config import HUB_MAX_UNACKED, HUB_SESSION_EXPIRY_S, MQTT_MAX_PACKET_SIZE, MqttUrl, Settings
from hub.core.metrics import HubMetrics
from hub.core.secrets_box import load_campus_key
from hub.db import Database, asyncio_loop, migrate, open_database, wait_for_database
from hub.db.quarantine import QuarantinePolicy
from hub.db.retention import policy_from_settings
from hub.db.sealed_secrets import ensure_campus_key_fits, seal_pending
from hub.db.telemetry import RetentionPolicy
from hub.db.users import count_active_admins
from hub.domain.rate_limit import RateLimit
from hub.domain.roles import MFA_REQUIRED_ROLES
from hub.mqtt import InboundMessage, TrioMqttClient
from hub.pipeline.commands import COMMANDS_MAILBOX, CommandDispatcher
from hub.pipeline.device_actor import DeviceActorFactory, device_asker
from hub.pipeline.device_alarms import ThresholdBook, thresholds_changed
from hub.pipeline.ingress import INGRESS_MAILBOX, Ingress
from hub.pipeline.ownership import EVERYTHING, OwnershipChanged, PartitionOwnership
from hub.pipeline.quarantine import QUARANTINE_MAILBOX, QuarantineKeeper, Release
from hub.pipeline.scheduler import SCHEDULER_MAILBOX, SessionsChanged, SessionScheduler
from hub.pipeline.session_actor import attendance_changed, session_caller
from hub.pipeline.session_guard import SessionGuard
from hub.pipeline.writer import WRITER_MAILBOX, PersistenceWriter
from hub.services.anomaly import ANOMALY_MAILBOX, AnomalyWatcher, anomaly_links
from hub.services.assignment_reminders import AssignmentReminders
from hub.services.collector import CollectorKeeper, collector_policy, freeze_long_lived
from hub.services.leave_documents import LeaveDocumentPurger
from hub.services.retention import RetentionKeeper
from hub.services.risk import RISK_MAILBOX, RiskWatcher, risk_links
from hub.services.telemetry import TELEMETRY_MAILBOX, TelemetryMaintenance
from hub.services.terminal_rosters import TerminalRosterKeeper
from hub.services.tickets import TICKETS_MAILBOX, PostgresTicketStore, TicketActor
from hub.services.warnings import WARNINGS_MAILBOX, WarningWatcher, also_recheck
from hub.services.webhooks import WebhookDispatcher
from schemas import Topics

log = logging.getLogger("hub")


class StartRefused(Exception):
    """The hub will not start on this configuration (e.g. a campus key that does not fit the database).

    The CLI prints its message and exits 2 instead of a traceback; it arrives wrapped in the
    nursery's exception group, so callers match it with ``except*``."""


def child_actor(root: Supervisor, child_id: str) -> ActorRef:
    """The ref of ``root``'s actor child ``child_id``; LookupError if it has none (a typed ``lookup``)."""
    found = root.lookup(child_id)
    if not isinstance(found, ActorRef):
        raise LookupError(f"no actor child {child_id!r}")
    return found


def child_supervisor(root: Supervisor, child_id: str) -> Supervisor:
    """``root``'s child supervisor ``child_id`` (its current instance); LookupError if it has none."""
    found = root.lookup(child_id)
    if not isinstance(found, Supervisor):
        raise LookupError(f"no supervisor child {child_id!r}")
    return found


@dataclass
class Hub:
    """Handles to a running hub, for the CLI and the tests."""

    settings: Settings
    db: Database
    bus: LiveBus
    metrics: HubMetrics
    client: TrioMqttClient
    root: Supervisor
    web_port: int | None
    #: Set once every child has started (device actors, scheduler, subscriptions):
    #: until then /healthz says "starting" (503), so a load balancer or a
    #: restart script does not send traffic to a hub that cannot consume it yet.
    ready: bool = False
    #: Keeps another deployment's messages unacknowledged (hub/pipeline/session_guard.py).
    session_guard: SessionGuard | None = None
    #: What the startup check found an anonymous client may do on the broker (None until it ran).
    broker_exposure: BrokerExposure | None = None
    #: The rooms this worker serves (every room unless ``Settings.partitions`` >= 1).
    ownership: PartitionOwnership = EVERYTHING
    #: Many workers: the asks between them (hub/app/worker_calls.py ``WorkerCalls``); None in one process.
    worker_calls: Any = None
    #: Many workers: the live bus's bridge now running (hub/core/bus_bridge.py); None in one process.
    bus_bridge: Any = None
    #: Many workers on a password login without the hub's own listener: that username (a problem).
    shared_login: str | None = None

    def problems(self) -> list[str]:
        """Why the hub is ``degraded``: what an operator must fix although the hub serves."""
        found = []
        exposure = self.broker_exposure
        if exposure is not None and not self.settings.open_broker_expected:
            found.append(exposure.problem())
        if self.session_guard is not None:
            found.append(self.session_guard.problem())
        if self.shared_login is not None:
            found.append(
                f"the partition sessions, bus and calls clients all log in as {self.shared_login!r}: if the broker "
                "binds client ids to usernames (the generated configuration does) they take each other over; "
                "connect them through the hub's listener (CAMPUSHUB_MQTT_HUB_URL, docs/scaling.md)")
        return [problem for problem in found if problem]

    def child(self, child_id: str) -> Any:
        return self.root.lookup(child_id)

    @property
    def sessions(self) -> Supervisor:
        return child_supervisor(self.root, "sessions")

    @property
    def devices(self) -> Supervisor:
        return child_supervisor(self.root, "devices")

    async def health(self) -> dict[str, Any]:
        """``starting`` and ``unavailable`` (database or broker unreachable) are 503; ``degraded`` is 200.

        ``degraded``: the hub serves, but something needs an operator (``problems``): an
        open broker, or a foreign session it stepped away from (then the broker is down
        on purpose, not unreachable). A load balancer must not drop it for that.
        """
        db_ok = await self.db.ping()
        mqtt_ok = self.client.connected
        problems = self.problems()
        stepped_away = self.session_guard is not None and self.session_guard.stepped_away
        if not self.ready:
            status = "starting"
        elif not db_ok or not (mqtt_ok or stepped_away):
            status = "unavailable"
        else:
            status = "degraded" if problems else "ok"
        exposure = self.broker_exposure
        ownership = self.ownership
        return {
            "status": status,
            "partitions": ({"count": ownership.partitions, "owned": sorted(ownership.owned)}
                           if ownership.partitioned else None),
            "problems": problems,
            "database": {"ok": db_ok},
            "broker": {"ok": mqtt_ok, "reconnects": self.client.stats.reconnects, "client_id": self.client.client_id,
                       "anonymous_access": exposure.as_json() if exposure is not None else None,
                       "open_broker_expected": self.settings.open_broker_expected},
            "actors": {
                "total": self.root.actor_count(),
                "devices": self.devices.actor_count(),
                "sessions": self.sessions.actor_count(),
                "connections": child_supervisor(self.root, "connections").actor_count(),
                "mailbox_depth": self.root.mailbox_depth(),
                "restarts": int(self.metrics.actor_restarts._value.get()),
            },
        }


class _BusBridgeLoop(ServiceActor):
    """Many workers: the worker's own client, carrying the live bus between workers (hub/core/bus_bridge.py)."""

    def __init__(self, bridge: Any, connected: trio.Event) -> None:
        self._bridge, self._connected = bridge, connected

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._bridge.run)
            self._connected.set()


#: Many workers: the channel the partition sessions share into the ingress (as one client's own).
PARTITION_INBOUND_CAPACITY = 1024


class _MqttLoop(ServiceActor):
    def __init__(self, client: TrioMqttClient, topics: Topics, subscribed: trio.Event) -> None:
        self._client = client
        self._topics = topics
        self._subscribed = subscribed

    async def serve(self) -> None:
        async def subscribe(client: TrioMqttClient) -> None:
            await client.subscribe(self._topics.uplink_filter, qos=1)
            await client.subscribe(self._topics.status_filter, qos=1)
            self._subscribed.set()

        await self._client.run(on_connect=subscribe)


class _WebServer(ServiceActor):
    """hypercorn serving the app (HTTPS when the settings carry a certificate), and the metrics listener if configured."""

    def __init__(self, app: Any, host: str, port: int, on_port: Any, settings: Settings,
                 metrics_app: Any = None, socket_fd: int | None = None) -> None:
        self._app, self._host, self._port, self._on_port = app, host, port, on_port
        self._settings, self._metrics_app, self._socket_fd = settings, metrics_app, socket_fd

    async def serve(self) -> None:
        from hub.core.config import parse_bind
        from web.app import serve

        settings = self._settings
        async with trio.open_nursery() as nursery:
            if self._metrics_app is not None and settings.metrics_bind:
                metrics_host, metrics_port = parse_bind(settings.metrics_bind)
                await nursery.start(lambda task_status: serve(
                    self._metrics_app, host=metrics_host, port=metrics_port, task_status=task_status))
            port = await nursery.start(lambda task_status: serve(
                self._app, host=self._host, port=self._port, certfile=settings.tls_cert, keyfile=settings.tls_key,
                handshake_timeout_s=settings.tls_handshake_timeout_s, socket_fd=self._socket_fd,
                task_status=task_status))
            self._port = port  # a restart keeps the same port
            self._on_port(port)


def load_jwt_secret(settings: Settings) -> bytes:
    """The web's token-signing secret: ``CAMPUSHUB_JWT_SECRET``, else one generated once into the data dir."""
    if settings.jwt_secret:
        if len(settings.jwt_secret.encode()) < 32:
            # RFC 7518 §3.2: an HS256 key shorter than the hash is guessable.
            raise ValueError("CAMPUSHUB_JWT_SECRET must be at least 32 bytes")
        return settings.jwt_secret.encode()
    # Persist a generated secret so logins survive a restart of the hub.
    path = settings.data_dir / "jwt_secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        # Created 0600 in the same call that creates it: no moment when another user could read it
        # (a write-then-chmod leaves one). O_EXCL: two hubs starting at once keep the first one's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
    return secret


def _mosquitto_sync(db: Database, topics: Topics, mqtt_url: MqttUrl) -> Any:
    """The one writer of the broker's files when ``CAMPUSHUB_MOSQUITTO_*`` names them (else None):
    registry changes and quarantines both render through it, serialised by its lock."""
    from hub.adapters.mosquitto_auth import HubAccount, MosquittoFiles, MosquittoSync

    files = MosquittoFiles.from_env()
    hub_account = (HubAccount.from_password(mqtt_url.username, mqtt_url.password or "")
                   if mqtt_url.username else None)
    return MosquittoSync(db, topics, files, hub_account) if files else None


def _backups_spec(db: Database, settings: Settings, metrics: HubMetrics) -> ChildSpec:
    """The scheduled backups' child (hub/services/backups.py); a stop kills a dump in progress."""
    from datetime import timedelta

    from hub.app.backup_cli import tool_dirs
    from hub.services.backups import ScheduledBackups

    assert settings.backup_dir is not None
    directory, interval = settings.backup_dir, timedelta(hours=settings.backup_interval_h)
    return ChildSpec("backups", lambda: ScheduledBackups(
        db, directory, interval=interval, keep=settings.backup_keep, tool_dirs=tool_dirs(settings), metrics=metrics),
        shutdown_timeout=5)


def _provisioning_links(root: Supervisor, mosquitto: Any) -> Any:
    """The web's provisioning callables; the broker's files are kept in step when configured."""
    from hub.app.provisioning import ProvisioningLinks

    return ProvisioningLinks(root, mosquitto)


def _command_sender(root: Supervisor) -> Any:
    """Hands a recorded command to the running dispatcher (for children that queue commands)."""
    from hub.app.provisioning import ProvisioningLinks

    return ProvisioningLinks(root, None).send_command


class _WorkerCallsLoop(ServiceActor):
    """Many workers: answers the other workers' asks from this worker's actors (hub/app/worker_calls.py)."""

    def __init__(self, calls: Any) -> None:
        self._calls = calls

    async def serve(self) -> None:
        await self._calls.run()


def _worker_links(
    hub: Hub, settings: Settings, db: Database, topics: Topics, worker_id: str, ownership: PartitionOwnership,
    base_client_id: str, new_client: Callable[..., TrioMqttClient], local_session_call: Any, local_ask_device: Any,
    local_thresholds_changed: Any,
) -> tuple[Any, ChildSpec]:
    """Many workers: the web's session and device asks routed to the owning worker (hub/app/worker_links.py),
    and the child that serves the other workers' asks."""
    from hub.app.worker_calls import WorkerCalls
    from hub.app.worker_links import CALL_ERRORS, CALL_TYPES, call_server, worker_links
    from hub.db.device_registry import load_devices

    async def owns_device(device_id: str) -> bool:
        records = await load_devices(db, [device_id])
        return bool(records) and ownership.owns_room(records[0].room_id)

    calls = WorkerCalls(
        new_client(f"{base_client_id}-calls-{worker_id}", clean_start=True, session_expiry_s=60), topics, worker_id,
        call_server(local_session_call, local_ask_device, local_thresholds_changed, owns_device),
        message_types=CALL_TYPES, error_types=CALL_ERRORS)

    hub.worker_calls = calls
    links = worker_links(db, ownership, calls, lease_s=settings.partition_lease_s,
                         local_session_call=local_session_call, local_ask_device=local_ask_device,
                         local_thresholds_changed=local_thresholds_changed, owns_device=owns_device)
    return links, ChildSpec("calls", lambda: _WorkerCallsLoop(calls), shutdown_timeout=2)


def _partition_keeper_spec(
    settings: Settings, db: Database, topics: Topics, worker_id: str, ownership: PartitionOwnership,
    base_client_id: str, new_client: Callable[..., TrioMqttClient],
    inbound: trio.MemorySendChannel[InboundMessage], ref: Callable[[str], ActorRef],
) -> ChildSpec:
    """Many workers: the lease keeper and its partition sessions (hub/app/partition_sessions.py),
    started after the ingress and stopped before it (it releases the leases as the hub stops)."""
    from hub.app.partition_sessions import PartitionKeeper, partition_client_id

    partitions = settings.partitions
    # Each session's share of the hub's bound on unacknowledged messages: a worker holding every
    # partition holds at most HUB_MAX_UNACKED, as a single-process hub does.
    per_session = max(100, HUB_MAX_UNACKED // partitions)

    def make_client(partition: int) -> TrioMqttClient:
        return new_client(partition_client_id(base_client_id, partition), session_expiry_s=HUB_SESSION_EXPIRY_S,
                          max_unacked=per_session, receive_maximum=per_session, inbound=inbound)

    async def owned_changed() -> None:
        # Sessions first (a device actor asks the scheduler for its room's session), then devices.
        await ref("scheduler").ask(OwnershipChanged(), timeout=120)
        await ref("ingress").ask(OwnershipChanged(), timeout=120)

    return ChildSpec("partitions", lambda: PartitionKeeper(
        db=db, topics=topics, worker_id=worker_id, host=socket.gethostname(), pid=os.getpid(),
        ownership=ownership, lease_s=settings.partition_lease_s, peers=frozenset(settings.worker_peers),
        make_client=make_client, owned_changed=owned_changed), shutdown_timeout=10)


#: Logged once at boot when no active admin exists (a new campus): nobody could manage people.
NO_ADMIN_HINT = ("no active admin account: create the first one with "
                 "`campushub users create-admin USERNAME --password-stdin` (docs/people.md)")


async def run_hub(
    settings: Settings, *, host: str = "127.0.0.1", port: int | None = 8080, web_socket_fd: int | None = None,
    task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the hub until cancelled. ``port=None`` runs without the web server; ``web_socket_fd``:
    the web serves on that inherited listening socket (``serve --workers``) instead of ``host:port``.

    Reports a :class:`Hub` once every child is up. Cancelling it shuts the
    tree down in reverse start order (the writer, last, flushes its batch).
    """
    if not settings.database_url or not settings.mqtt_url:
        raise ValueError("run_hub needs database_url and mqtt_url (the CLI starts embedded ones)")
    mqtt_url = MqttUrl.parse(settings.mqtt_url)
    jwt_secret = load_jwt_secret(settings) if port is not None else b""
    async with asyncio_loop():
        await wait_for_database(settings.database_url, max_delay_s=settings.database_wait_max_s,
                                on_retry=lambda exc, delay: log.warning(
                                    "database not reachable (%s); retrying in %.1fs", exc, delay))
        async with open_database(settings.database_url, secrets=load_campus_key(settings)) as db:
            await _run_tree(settings, db, mqtt_url, jwt_secret, host, port, web_socket_fd, task_status)


async def _run_tree(
    settings: Settings, db: Database, mqtt_url: MqttUrl, jwt_secret: bytes, host: str, port: int | None,
    web_socket_fd: int | None, task_status: trio.TaskStatus[Hub],
) -> None:
    topics = Topics(settings.topic_prefix)
    applied = await migrate(db)
    if applied:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    try:  # stop here, clearly, rather than fail on every device, token and webhook later
        await ensure_campus_key_fits(db)
    except ValueError as exc:
        log.critical("%s", exc)
        raise StartRefused(str(exc)) from exc
    sealed = await seal_pending(db)
    if any(sealed.values()):
        log.info("sealed plaintext secrets with the campus key: %s", sealed)
    if port is not None and not await count_active_admins(db):
        log.warning(NO_ADMIN_HINT)
    metrics = HubMetrics()
    bus = LiveBus()
    base_client_id = await hub_client_id(settings, db)
    partitioned = settings.partitions > 0
    worker_id = settings.worker_id or default_worker_id()
    ownership = PartitionOwnership(settings.partitions) if partitioned else EVERYTHING
    # Many workers hold many sessions of the hub's account at once: through the hub's own listener
    # when configured (client ids not bound to the username; the certificate is the login).
    hub_listener = MqttUrl.parse(settings.mqtt_hub_url) if partitioned and settings.mqtt_hub_url else None
    login_url = hub_listener or mqtt_url
    tls = settings.mqtt_hub_tls_context() if hub_listener else settings.mqtt_tls_context()

    def new_client(client_id: str, **options: Any) -> TrioMqttClient:
        """A client of the hub's broker login (every connection of the hub is one of these)."""
        return TrioMqttClient(
            host=login_url.host, port=login_url.port, client_id=client_id, username=login_url.username,
            password=login_url.password, protocol=login_url.protocol, tls=tls, max_packet_size=MQTT_MAX_PACKET_SIZE,
            **options)

    if partitioned:
        # The worker's own client: the live bus between workers and commands to devices. Device
        # traffic comes through the partition sessions (hub/app/partition_sessions.py).
        # A wide publish window: the live bus carries a message per commit's update, and with 50 in
        # flight (the default) a drain with check-ins outran it (bench/drain.py --workers 2).
        client = new_client(f"{base_client_id}-bus-{worker_id}", clean_start=True, session_expiry_s=60,
                            max_inflight=1000)
    else:
        client = new_client(base_client_id, session_expiry_s=HUB_SESSION_EXPIRY_S, max_unacked=HUB_MAX_UNACKED)
    inbound_send, inbound_receive = trio.open_memory_channel[InboundMessage](PARTITION_INBOUND_CAPACITY)
    root = Supervisor("root", observer=metrics, max_restarts=10, within_s=10)
    hub = Hub(settings, db, bus, metrics, client, root, None)
    hub.ownership = ownership
    if partitioned and hub_listener is None and mqtt_url.username:
        hub.shared_login = mqtt_url.username
        log.warning("%s", hub.problems()[-1])
    if not partitioned:
        # One session with wildcard subscriptions: it may be another deployment's (the partition
        # sessions' ids are derived from this deployment, and subscribe exact topics only).
        hub.session_guard = SessionGuard(
            (topics.uplink_filter, topics.status_filter), SessionGuardEffects(client, metrics),
            clock=trio.current_time, client_id=client.client_id)

    def acknowledge(messages: Sequence[InboundMessage]) -> None:
        # Each message to the client that read it (many workers: one per partition session).
        # Looked up per call, so a wrapped client.ack_many (the benchmarks') is the one used.
        first = messages[0].client if messages else None
        if all(m.client is first for m in messages):
            (first or client).ack_many(messages)
            return
        by_client: dict[Any, list[InboundMessage]] = {}
        for message in messages:
            by_client.setdefault(message.client, []).append(message)
        for reader, group in by_client.items():
            (reader or client).ack_many(group)

    web_listening = trio.Event()
    subscribed = trio.Event()

    def on_web_port(bound_port: int) -> None:
        hub.web_port = bound_port
        web_listening.set()

    def ref(child_id: str) -> ActorRef:
        return child_actor(root, child_id)

    # The campus's threshold rules, loaded once here; device actors read it as they start.
    thresholds = ThresholdBook()
    await thresholds.reload(db)

    @functools.cache
    def device_actors() -> DeviceActorFactory:
        # Built once, on first use (the web's or the ingress' start): by then the writer,
        # the devices supervisor and the scheduler run, and their refs outlive restarts.
        return DeviceActorFactory(
            devices=child_supervisor(root, "devices"), db=db, writer=ref("writer"), scheduler=ref("scheduler"),
            offline_after_s=settings.device_offline_after_s, thresholds=thresholds)

    mosquitto = _mosquitto_sync(db, topics, mqtt_url)

    async def tell_device(device_id: str, message: object) -> None:
        running = device_actors().running(device_id)
        if running is not None:
            await deliver(running, message)

    async def release_quarantine(device_id: str, by: str) -> Any:
        return await ref("quarantine").ask(Release(device_id, by), timeout=15)

    retention = RetentionPolicy(raw_days=settings.telemetry_raw_days, hourly_days=settings.telemetry_hourly_days)
    anomaly_rolled_up, anomaly_fit = anomaly_links(lambda: root.lookup("anomaly"))
    retention_periods = policy_from_settings(settings)  # a bad CAMPUSHUB_RETENTION_* stops the start, clearly

    specs = [
        ChildSpec("writer", lambda: PersistenceWriter(
            db, bus, metrics, acknowledge, rejections_kept_per_minute=settings.rejections_kept_per_minute,
            retry_max_s=settings.writer_retry_max_s),
                  mailbox_size=WRITER_MAILBOX, shutdown_timeout=15),
        ChildSpec("devices", lambda: Supervisor("devices", max_restarts=100, within_s=10)),
        ChildSpec("quarantine", lambda: QuarantineKeeper(
            db, mosquitto, QuarantinePolicy(settings.quarantine_cooldown_s, settings.quarantine_max_s,
                                            settings.quarantine_repeat_window_s), metrics, tell_device),
                  mailbox_size=QUARANTINE_MAILBOX, shutdown_timeout=5),
        ChildSpec("sessions", lambda: Supervisor("sessions", max_restarts=100, within_s=10)),
        ChildSpec("scheduler", lambda: SessionScheduler(
            db=db, sessions=child_supervisor(root, "sessions"), writer=ref("writer"), ownership=ownership),
            mailbox_size=SCHEDULER_MAILBOX),
        ChildSpec("connections", lambda: Supervisor("connections", max_restarts=1000, within_s=1)),
        ChildSpec("telemetry", lambda: TelemetryMaintenance(db, retention, after_rollup=anomaly_rolled_up),
                  mailbox_size=TELEMETRY_MAILBOX),
        ChildSpec("retention", lambda: RetentionKeeper(db, retention_periods, metrics),
                  shutdown_timeout=5),
        ChildSpec("commands", lambda: CommandDispatcher(
            db=db, client=client, topics=topics, writer=ref("writer"), bus=bus), mailbox_size=COMMANDS_MAILBOX),
        ChildSpec("warnings", lambda: WarningWatcher(db, bus), mailbox_size=WARNINGS_MAILBOX),
        ChildSpec("risk", lambda: RiskWatcher(db, bus), mailbox_size=RISK_MAILBOX, shutdown_timeout=2),
        ChildSpec("webhooks", lambda: WebhookDispatcher(db), shutdown_timeout=2),
        ChildSpec("tickets", lambda: TicketActor(store=PostgresTicketStore(db), bus=bus), mailbox_size=TICKETS_MAILBOX),
        ChildSpec("collector", CollectorKeeper),
        ChildSpec("leave_documents", lambda: LeaveDocumentPurger(db), shutdown_timeout=2),
        ChildSpec("assignment_reminders", lambda: AssignmentReminders(db, bus), shutdown_timeout=2),
        # Its device asks go to the device's own worker (many workers: ask_device, chosen below).
        ChildSpec("anomaly", lambda: AnomalyWatcher(db, lambda device_id, message: ask_device(device_id, message)),
                  mailbox_size=ANOMALY_MAILBOX,
                  shutdown_timeout=2),
        ChildSpec("terminal_rosters", lambda: TerminalRosterKeeper(
            db, _command_sender(root), device_offline_after_s=settings.device_offline_after_s), shutdown_timeout=2),
    ]
    if settings.backup_dir is not None:  # scheduled backups are off unless CAMPUSHUB_BACKUP_DIR is set
        specs.append(_backups_spec(db, settings, metrics))
    local_session_call = session_caller(lambda: child_supervisor(root, "sessions"))
    local_ask_device = device_asker(device_actors)

    async def local_thresholds_changed() -> None:
        await thresholds_changed(db, thresholds, child_supervisor(root, "devices"))

    session_call, ask_device, thresholds_now_changed = local_session_call, local_ask_device, local_thresholds_changed
    if partitioned:
        links, calls_spec = _worker_links(hub, settings, db, topics, worker_id, ownership, base_client_id, new_client,
                                          local_session_call, local_ask_device, local_thresholds_changed)
        specs.append(calls_spec)
        session_call, ask_device, thresholds_now_changed = links.session_call, links.ask_device, links.thresholds_changed
    if port is not None:
        from web.app import create_app, create_metrics_app
        from web.context import WebContext
        from web.protection import Protection

        provisioning = _provisioning_links(root, mosquitto)
        # One for the hub's life: a restart of the web child keeps the counts and the recalled tokens.
        protection = Protection(settings, metrics.limiter_decisions)
        # Admin and ops must use a second factor; only the demo (never `serve`) makes it optional.
        mfa_required_roles = frozenset() if settings.mfa_optional_demo else MFA_REQUIRED_ROLES

        async def sessions_changed(session_ids: Sequence[str]) -> None:
            if session_ids:
                await ref("scheduler").tell(SessionsChanged(tuple(session_ids)))

        risk_changed, risk_control = risk_links(lambda: root.lookup("risk"))

        def make_web() -> _WebServer:
            web_context = WebContext(
                db=db, bus=bus, jwt_secret=jwt_secret,
                connections=child_supervisor(root, "connections"), health=hub.health, metrics_text=metrics.render,
                devices_changed=provisioning.devices_changed, send_command=provisioning.send_command,
                device_mqtt_url=str(mqtt_url), topic_prefix=topics.prefix,
                device_offline_after_s=settings.device_offline_after_s,
                session_call=session_call,
                attendance_changed=also_recheck(attendance_changed(session_call), lambda: root.lookup("warnings")),
                sessions_changed=sessions_changed, campus_timezone=settings.timezone,
                ask_device=ask_device, thresholds_changed=thresholds_now_changed,
                protection=protection, mfa_required_roles=mfa_required_roles,
                release_quarantine=release_quarantine, audit_archive_dir=settings.audit_archive_path,
                risk_changed=risk_changed, risk_control=risk_control, anomaly_fit=anomaly_fit,
            )
            web_app = create_app(web_context, secure_cookies=settings.cookies_secure,
                                 metrics_token=settings.metrics_token, serve_metrics=settings.metrics_bind is None,
                                 trusted_proxies=settings.trusted_proxies)
            metrics_app = (create_metrics_app(web_context, metrics_token=settings.metrics_token)
                           if settings.metrics_bind else None)
            return _WebServer(web_app, host, hub.web_port or port, on_web_port, settings, metrics_app,
                              socket_fd=web_socket_fd)

        specs.append(ChildSpec("web", make_web, shutdown_timeout=3))
    if partitioned:
        from hub.core.bus_bridge import LiveBusBridge

        def bridge_loop() -> _BusBridgeLoop:
            hub.bus_bridge = LiveBusBridge(bus, client, topics, worker_id)  # a new one at each restart
            return _BusBridgeLoop(hub.bus_bridge, subscribed)

        specs.append(ChildSpec("mqtt", bridge_loop, shutdown_timeout=2))
        metrics.watch_counters(
            "campushub_live_bridge", "The live bus between workers (hub/core/bus_bridge.py BridgeStats), by"
            " counter: sent, dropped, gaps, lagged...", lambda: hub.bus_bridge.stats if hub.bus_bridge else None)
        metrics.watch_counters(
            "campushub_worker_calls", "Asks between workers (hub/app/worker_calls.py WorkerCallStats), by counter:"
            " asked, timeouts, served...", lambda: hub.worker_calls.stats if hub.worker_calls else None)
    else:
        specs.append(ChildSpec("mqtt", lambda: _MqttLoop(client, topics, subscribed), shutdown_timeout=2))
    specs.append(ChildSpec("ingress", lambda: Ingress(
        client=client, topics=topics, db=db, writer=ref("writer"), device_actors=device_actors(),
        commands=ref("commands"),
        device_rate=RateLimit(settings.device_rate_per_s, settings.device_burst),
        session_guard=hub.session_guard,
        flood_events_per_s=settings.device_flood_events_per_s, quarantine=ref("quarantine"),
        inbound=inbound_receive if partitioned else None, ownership=ownership,
    ), shutdown_timeout=1, mailbox_size=INGRESS_MAILBOX))
    if partitioned:
        specs.append(_partition_keeper_spec(settings, db, topics, worker_id, ownership, base_client_id,
                                            new_client, inbound_send, ref))
    metrics.watch_actors(root.mailbox_depth, root.actor_count)
    with collector_policy():
        async with trio.open_nursery() as nursery:
            await nursery.start(root.run)

            def exposure_found(exposure: BrokerExposure) -> None:
                hub.broker_exposure = exposure
                for check, value in (("anonymous_connect", exposure.anonymous_connect),
                                     ("anonymous_subscribe_all", exposure.anonymous_subscribe_all)):
                    if value is not None:
                        metrics.broker_open.labels(check=check).set(int(value))

            # Off the hot path: once subscribed, bounded by its own timeout, never raises.
            nursery.start_soon(functools.partial(
                watch_broker_exposure, mqtt_url, subscribed, exposure_found,
                tls=settings.mqtt_tls_context(client_certificate=False),
                expected=settings.open_broker_expected))
            for spec in specs:
                await root.start_child(spec)
            if port is not None:
                with trio.fail_after(10):
                    await web_listening.wait()
            # A hub whose broker is down still starts (and says so in /healthz);
            # otherwise report started only once messages can flow.
            with trio.move_on_after(10) as waited:
                await subscribed.wait()
            if waited.cancelled_caught:
                log.warning("broker %s not reachable yet; starting without it", mqtt_url)
            # Everything built so far (registry, actors, rosters, the app) lives as
            # long as the hub: out of the collector's generations (hub/services/collector.py).
            freeze_long_lived()
            hub.ready = True
            task_status.started(hub)
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(30):
                        await root.shutdown()
