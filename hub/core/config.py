"""Hub configuration, read once from environment variables."""
from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hub.domain.checkin_network import InvalidRange, parse_ranges
from schemas import MAX_MESSAGE_BYTES

#: MQTT protocol versions a broker URL may select with ``?protocol=``.
MQTT_PROTOCOLS = ("5", "3.1.1")
#: Maximum Packet Size the hub declares in its MQTT 5 CONNECT, and the broker's own
#: ``max_packet_size``: twice the largest valid message, so a payload somewhat over
#: ``MAX_MESSAGE_BYTES`` still reaches the ingress and is rejected as ``oversize``
#: (kept and counted), plus 2 KiB for the PUBLISH's fixed header (<= 5 bytes), topic
#: (2 + prefix + ``/v1/dev/`` + a 64-character device id + ``/status``), packet id (2)
#: and properties. Anything larger the broker never delivers (docs/mqtt-tls.md).
MQTT_MAX_PACKET_SIZE = 2 * MAX_MESSAGE_BYTES + 2048
#: A device silent this long (no heartbeat, no event) is offline: the one default, which
#: ``CAMPUSHUB_DEVICE_OFFLINE_AFTER_S`` overrides. Pushed heartbeat intervals must fit it
#: (hub.domain.device_health.heartbeat_interval_problem).
DEVICE_OFFLINE_AFTER_S = 90.0
#: The Session Expiry Interval the hub asks of the broker (hub/app/supervision.py): while the hub is
#: away, the broker queues its QoS 1 messages this long, and redelivers them when it is back.
HUB_SESSION_EXPIRY_S = 3600
#: The most messages the hub holds read from the broker and not yet acknowledged (committed);
#: at this many its MQTT reader stops reading the socket and TCP slows the broker
#: (``TrioMqttClient(max_unacked=...)``). Mosquitto 2.0 ignores the hub's Receive Maximum after
#: the first PUBACK, so this, not the broker, bounds the pipeline's queues under a backlog.
#: Two writer batches (hub/pipeline/writer.py MAX_BATCH): one committing while the next fills.
HUB_MAX_UNACKED = 4000
#: The longest an edge agent's outbox may hold an event and still have it applied: the oldest
#: event the hub supports receiving, docs/data-lifecycle.md ("The dedup ledger's window").
EDGE_OUTBOX_MAX_AGE_S = 7 * 86400
#: Events signed longer ago than this when they reach the hub are refused (``expired``, the device
#: actor): a redelivery can be no older, so the dedup ledger keeps ids for this long past their
#: signed day and no more (hub/db/retention.py), and nothing is ever applied twice.
EVENT_MAX_AGE_S = HUB_SESSION_EXPIRY_S + EDGE_OUTBOX_MAX_AGE_S


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    #: "5" (default) or "3.1.1" (for brokers without MQTT 5, e.g. the embedded amqtt).
    protocol: str = "5"
    #: ``mqtts://``: TLS to the broker (CA and client certificate: ``Settings.mqtt_cafile`` etc.).
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> "MqttUrl":
        """Parse ``mqtt[s]://[user:pass@]host[:port][?protocol=5|3.1.1]``; raises ``ValueError`` on anything else.

        ``mqtts://`` (or ``ssl://``) means TLS, default port 8883; ``mqtt://`` (or ``tcp://``) plain, 1883.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("mqtt URL: not host[:port] with a numeric port") from None
        tls = parts.scheme in ("mqtts", "ssl")
        if not (tls or parts.scheme in ("mqtt", "tcp")) or not parts.hostname:
            # The URL itself stays out of the message: it may carry a password.
            raise ValueError(f"not an mqtt:// or mqtts:// URL (scheme {parts.scheme[:20]!r}, "
                             f"host {'present' if parts.hostname else 'missing'})")
        return cls(parts.hostname, port or (8883 if tls else 1883), parts.username, parts.password,
                   parse_mqtt_protocol(parts.query), tls)

    def __str__(self) -> str:
        # No credentials: this is what logs show.
        query = "" if self.protocol == "5" else f"?protocol={self.protocol}"
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}{query}"


def parse_mqtt_protocol(query: str) -> str:
    """The MQTT version an ``mqtt://`` URL's query selects: ``"5"`` unless ``protocol=3.1.1``.

    Raises ``ValueError`` for any other ``protocol`` value: a typo must not
    silently fall back to MQTT 5. Other query parameters are ignored, as before.
    The message leaves the URL out: it may carry a password.
    """
    values = parse_qs(query, keep_blank_values=True).get("protocol", ["5"])
    if len(values) != 1 or values[0] not in MQTT_PROTOCOLS:
        raise ValueError(
            f"mqtt URL: protocol must be one of {', '.join(MQTT_PROTOCOLS)}, "
            f"got {'&'.join(values)!r}")
    return values[0]


def _check_rate_limits(name: str, text: str) -> None:
    """``ValueError`` unless ``text`` is ``limits`` notation, e.g. ``10/15 minutes`` or ``60/10 seconds;600/minute``."""
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError:
        raise ValueError(f"{name}: not a rate limit such as '10/15 minutes' or '60/10 seconds;600/minute': "
                         f"{text[:100]!r}") from None


#: The most partitions a deployment may have (each owned one is an MQTT session of its worker).
MAX_PARTITIONS = 256
#: A worker id (``CAMPUSHUB_WORKER_ID``): part of MQTT client ids and topic levels
#: (hub/app/worker_calls.py validates the ids it is given against it too).
#: ``\Z``, not ``$``: msgspec matches with ``re.search``, where ``$`` also matches before a final newline.
WORKER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
_WORKER_ID = re.compile(WORKER_ID_PATTERN)


def valid_worker_id(worker_id: str) -> bool:
    """Whether ``worker_id`` has the shape of a worker id (:data:`WORKER_ID_PATTERN`)."""
    return _WORKER_ID.fullmatch(worker_id) is not None


@dataclass(frozen=True)
class Settings:
    """Everything the hub reads from its environment.

    ``database_url`` / ``mqtt_url`` of ``None`` mean "not configured": the demo
    and the test fixtures then start embedded services.
    """

    database_url: str | None = None
    #: Longest pause between attempts while PostgreSQL is unreachable: the wait before the hub starts
    #: (``hub.db.wait_for_database``) and a writer batch that could not commit (hub/pipeline/writer.py).
    #: Not environment settings: tests shorten them so a restored database is used at once.
    database_wait_max_s: float = 5.0
    writer_retry_max_s: float = 2.0
    mqtt_url: str | None = None
    #: For an ``mqtts://`` broker URL: PEM of the CA that signed the broker's certificate
    #: (``None``: the system's trust store), and the hub's own client certificate and key
    #: for a listener that requires one (``CAMPUSHUB_MQTT_CAFILE``/``_CERTFILE``/``_KEYFILE``).
    mqtt_cafile: Path | None = None
    mqtt_certfile: Path | None = None
    mqtt_keyfile: Path | None = None
    #: ``CAMPUSHUB_MQTT_HUB_URL``: the broker's listener for the hub alone (hub/adapters/mosquitto_conf.py
    #: ``HubListener``), ``mqtts://host:port``, for a hub of many workers. Every connection there (a
    #: persistent session per partition, a live-bus and a calls client per worker) logs in with the
    #: hub's client certificate (``mqtt_hub_certfile``/``_keyfile``, its Common Name the hub's broker
    #: account; a user and password in the URL are not used) and keeps the client id it asks for.
    #: ``None``: no such listener; the hub logs in on ``mqtt_url``, whose listeners bind each client id
    #: to its username (one session for the hub's account).
    mqtt_hub_url: str | None = None
    #: CA of the broker's certificate on that listener (``CAMPUSHUB_MQTT_HUB_CAFILE``); ``None``:
    #: ``mqtt_cafile``, else the system's trust store.
    mqtt_hub_cafile: Path | None = None
    #: The hub's client certificate and key for that listener (``CAMPUSHUB_MQTT_HUB_CERTFILE``/``_KEYFILE``;
    #: the key may be in the certificate's file). Required with ``mqtt_hub_url``.
    mqtt_hub_certfile: Path | None = None
    mqtt_hub_keyfile: Path | None = None
    topic_prefix: str = "campushub"
    data_dir: Path = field(default_factory=lambda: Path(".campushub"))
    jwt_secret: str | None = None
    #: The hub's MQTT client id (its persistent session on the broker). ``None``: derived from the
    #: deployment identity kept in PostgreSQL and the topic prefix (hub/db/deployment.py), so no
    #: two deployments share a session by default. ``CAMPUSHUB_HUB_CLIENT_ID`` forces one.
    hub_client_id: str | None = None
    device_offline_after_s: float = DEVICE_OFFLINE_AFTER_S
    #: Raw sensor readings are kept this many days; hourly aggregates (and health history) longer.
    telemetry_raw_days: int = 14
    telemetry_hourly_days: int = 400
    #: Retention of everything else (docs/data-lifecycle.md has the table; hub/db/retention.py prunes):
    #: accepted events (their raw bodies, QR tokens included), in daily partitions.
    retention_events_days: int = 14
    #: Kept rejections (``rejected_events``) and their per-minute tallies.
    retention_rejections_days: int = 90
    #: Check-in evidence: display check-ins (device hash, network, user agent) and used QR token windows.
    retention_checkin_evidence_days: int = 180
    retention_notifications_days: int = 180
    #: Device commands that finished (acked, failed, expired, ...).
    retention_commands_days: int = 90
    #: Webhook deliveries that finished (delivered or failed).
    retention_webhook_deliveries_days: int = 30
    #: Refresh tokens and one-time codes, counted from their expiry.
    retention_expired_credentials_days: int = 30
    #: Closed tickets (with their comments and events), counted from closing.
    retention_tickets_days: int = 730
    #: Cleared and acknowledged alarms that no kept ticket refers to, counted from clearing.
    retention_alarms_days: int = 400
    #: Attendance and its records (flags, corrections, leave, condonation, warnings, session log).
    retention_records_years: int = 7
    #: Audit log entries, archived to verifiable segments first (hub/db/audit_archive.py).
    retention_audit_years: int = 7
    #: Where the audit archive's segments go; ``None``: ``data_dir/audit-archive``.
    retention_audit_archive_dir: Path | None = None
    #: IANA timezone of the campus (terms' default; "today" of the academic API).
    timezone: str = "UTC"
    #: Failed logins allowed per account and per client address (``limits`` notation, one
    #: window each); the address limit is higher because a campus NAT puts many people behind one.
    login_limit_account: str = "10/15 minutes"
    login_limit_address: str = "100/15 minutes"
    #: Requests per user on authenticated HTTP routes: every window must allow the request,
    #: so the short one caps bursts and the long one the sustained rate.
    api_rate_limits: str = "60/10 seconds;600/minute"
    #: Per-device event limit of the ingress (a token bucket, hub/domain/rate_limit.py): events a
    #: second sustained, and at once after a quiet spell. A normal device sends ~0.3/s (heartbeat
    #: every 15 s, a sensor reading every 5 s) and a busy door ~2 scans/s; the burst equals the edge
    #: agent's default ``max_outbox_rows``, so a device back from an outage drains a full outbox
    #: unhindered. Excess events are rejected ``rate_limited`` and raise a ``rate_limited`` alarm.
    device_rate_per_s: float = 50.0
    device_burst: int = 10_000
    #: Events one device may stamp within one second of its own clock (the flood detector,
    #: hub/domain/rate_limit.py): beyond it, events are rejected ``rate_limited`` with the same alarm
    #: and broker quarantine as an empty bucket, but after this many events instead of ``device_burst``.
    #: 1,000 is 20x the sustained rate and 500x a busy door (~2 scans/s); a drained outbox carries
    #: its capture times, so it never comes near it. Synthetic load with real timestamps through few
    #: devices (bench/pipeline.py's default 20 devices: ~200/s each) stays below it too.
    device_flood_events_per_s: int = 1_000
    #: Broker-side quarantine of a device whose rate limit trips, when the hub manages the broker's
    #: files (CAMPUSHUB_MOSQUITTO_*; hub/services/quarantine.py): it lasts this many seconds, doubled
    #: for each repeat within ``quarantine_repeat_window_s`` of the previous one's start, at most
    #: ``quarantine_max_s``. Without managed files the token bucket alone applies.
    quarantine_cooldown_s: float = 300.0
    quarantine_max_s: float = 3600.0
    quarantine_repeat_window_s: float = 3600.0
    #: Rejected messages kept as rows per source (device, or "unknown") and reason a minute; the rest
    #: are counted only (``rejection_tallies``, and exactly in /metrics).
    rejections_kept_per_minute: int = 60
    #: PEM certificate chain and private key: with both, the web server speaks HTTPS only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A client that opens a connection to the HTTPS port and never completes the TLS handshake is
    #: dropped after this many seconds (not an environment setting: tests shorten it).
    tls_handshake_timeout_s: float = 10.0
    #: Cookies ``Secure`` and HSTS sent although the hub itself speaks HTTP: for a
    #: TLS-terminating proxy in front of it. Implied by ``tls_cert``.
    secure_cookies: bool = False
    #: CIDR ranges of reverse proxies whose ``X-Forwarded-For`` is believed
    #: (``CAMPUSHUB_TRUSTED_PROXIES``, comma-separated): only for a request whose peer is one of
    #: them is the client address read from that header (right to left, skipping trusted hops).
    #: Empty: the peer address is the client's. Used by display check-in's network restriction.
    trusted_proxies: tuple[str, ...] = ()
    #: When set, ``/metrics`` (and the detailed ``/healthz``) need ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    #: ``host:port`` of a listener of its own for ``/metrics`` and ``/healthz`` (plain HTTP, for
    #: a scraper on a private network); the main web port then no longer serves ``/metrics``.
    metrics_bind: str | None = None
    #: ``CAMPUSHUB_MASTER_KEY_FILE``: the campus key's file (every secret stored in PostgreSQL is
    #: sealed with it, hub/core/secrets_box.py); ``None``: ``data_dir/campus.key``, created on first use.
    master_key_file: Path | None = None
    #: ``CAMPUSHUB_MASTER_KEY``: the campus key itself instead of the file (base64 of 32 bytes, or
    #: ``ID BASE64`` entries separated by ``;`` during a rotation).
    master_key: str | None = field(default=None, repr=False)
    #: Two-factor authentication optional for every role, admin and ops included. Only
    #: ``campushub demo`` (and test fixtures) set it, so its printed logins keep working;
    #: ``from_env`` never does, so ``serve`` always requires MFA of admin and ops.
    mfa_optional_demo: bool = False
    #: The broker is known to accept anonymous clients (the shared anonymous test broker). The
    #: startup check still runs, logs and shows its finding in the detailed /healthz and in
    #: /metrics, but the status stays ``ok``. Never read from the environment: a deployment
    #: whose broker is open reports ``degraded`` (hub/app/broker_exposure.py).
    open_broker_expected: bool = False
    #: Scheduled backups (hub/services/backups.py): off unless ``CAMPUSHUB_BACKUP_DIR`` is set. One
    #: sealed backup every ``backup_interval_h`` hours into that directory, the newest ``backup_keep`` kept.
    backup_dir: Path | None = None
    backup_interval_h: float = 24.0
    backup_keep: int = 7
    #: ``CAMPUSHUB_PG_BIN_DIR``: where to look first for ``pg_dump``/``pg_restore`` of the server's version.
    pg_bin_dir: Path | None = None
    #: ``CAMPUSHUB_PARTITIONS``: 0 (the default) runs one hub process that owns every room and device
    #: on one MQTT session. N >= 1 cuts rooms into N partitions leased through PostgreSQL, each with
    #: a persistent MQTT session of its own, so several workers (``serve --workers``, or hubs on
    #: several machines with the same N) share the load (docs/scaling.md). Every worker of a
    #: deployment must use the same N.
    partitions: int = 0
    #: ``CAMPUSHUB_WORKER_ID``: this worker's name in the leases (letters, digits, ``-`` and ``_``);
    #: ``None``: ``<host>-<pid>``. Only read with ``partitions`` >= 1.
    worker_id: str | None = None
    #: ``CAMPUSHUB_PARTITION_LEASE_S``: a partition's lease; a dead worker's partitions move to the
    #: others within it (plus one renewal round, a third of it).
    partition_lease_s: float = 10.0
    #: ``CAMPUSHUB_WORKER_PEERS`` (comma-separated worker ids; ``serve --workers`` sets it): the
    #: workers started together with this one. For its first two leases this worker counts them
    #: as live before their first heartbeat, so workers started at once each claim their share
    #: straight away instead of the first claiming everything and handing half over.
    worker_peers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.backup_interval_h > 0 or self.backup_keep < 1:
            raise ValueError("CAMPUSHUB_BACKUP_INTERVAL_H must be > 0 and CAMPUSHUB_BACKUP_KEEP >= 1")
        if self.mqtt_keyfile is not None and self.mqtt_certfile is None:
            raise ValueError("CAMPUSHUB_MQTT_KEYFILE needs CAMPUSHUB_MQTT_CERTFILE (the key's certificate)")
        mqtt_tls_files = self.mqtt_cafile or self.mqtt_certfile
        if mqtt_tls_files and not (self.mqtt_url and MqttUrl.parse(self.mqtt_url).tls):
            # A CA file with a plain URL almost certainly means the URL was meant to be mqtts://.
            raise ValueError("CAMPUSHUB_MQTT_CAFILE/_CERTFILE are set but CAMPUSHUB_MQTT_URL is not mqtts://")
        self._check_mqtt_hub_listener()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (CAMPUSHUB_TLS_CERT and CAMPUSHUB_TLS_KEY)")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ValueError("CAMPUSHUB_METRICS_TOKEN must be at least 16 characters")
        if self.metrics_bind is not None:
            parse_bind(self.metrics_bind)
        for name in ("login_limit_account", "login_limit_address", "api_rate_limits"):
            _check_rate_limits(name, getattr(self, name))
        if not self.device_rate_per_s > 0 or self.device_burst < 1:
            raise ValueError("CAMPUSHUB_DEVICE_RATE_PER_S must be > 0 and CAMPUSHUB_DEVICE_BURST >= 1")
        if self.device_flood_events_per_s < 1:
            raise ValueError("CAMPUSHUB_DEVICE_FLOOD_EVENTS_PER_S must be >= 1")
        if self.rejections_kept_per_minute < 0:
            raise ValueError("CAMPUSHUB_REJECTIONS_KEPT_PER_MINUTE must be >= 0")
        if not 0 < self.quarantine_cooldown_s <= self.quarantine_max_s or self.quarantine_repeat_window_s < 0:
            raise ValueError("CAMPUSHUB_QUARANTINE_*: need 0 < COOLDOWN_S <= MAX_S and REPEAT_WINDOW_S >= 0")
        if not 0 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"CAMPUSHUB_PARTITIONS must be 0..{MAX_PARTITIONS}, got {self.partitions}")
        if not 1.0 <= self.partition_lease_s <= 300.0:
            raise ValueError("CAMPUSHUB_PARTITION_LEASE_S must be 1..300 seconds")
        if self.worker_id is not None and not valid_worker_id(self.worker_id):
            raise ValueError("CAMPUSHUB_WORKER_ID: 1-64 letters, digits, '-' or '_'")
        if not all(valid_worker_id(peer) for peer in self.worker_peers):
            raise ValueError("CAMPUSHUB_WORKER_PEERS: worker ids of 1-64 letters, digits, '-' or '_', comma-separated")
        try:
            parse_ranges(self.trusted_proxies)
        except InvalidRange as exc:
            raise ValueError(f"CAMPUSHUB_TRUSTED_PROXIES: {exc}") from None

    def _check_mqtt_hub_listener(self) -> None:
        if self.mqtt_hub_url is None:
            if self.mqtt_hub_cafile or self.mqtt_hub_certfile or self.mqtt_hub_keyfile:
                raise ValueError("CAMPUSHUB_MQTT_HUB_CAFILE/_CERTFILE/_KEYFILE are set but CAMPUSHUB_MQTT_HUB_URL is not")
            return
        if not MqttUrl.parse(self.mqtt_hub_url).tls:
            # The hub's listener takes client certificates only: a plain URL can never log in there.
            raise ValueError("CAMPUSHUB_MQTT_HUB_URL must be mqtts:// (the hub's listener takes its certificate only)")
        if self.mqtt_hub_certfile is None:
            raise ValueError("CAMPUSHUB_MQTT_HUB_URL needs CAMPUSHUB_MQTT_HUB_CERTFILE (the hub's client certificate)")

    def mqtt_hub_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of the hub's connections to its own listener (``mqtt_hub_url``), with the hub's
        client certificate; ``None`` without that listener.

        Reads the files now (``OSError``/``ssl.SSLError`` if unusable).
        """
        if self.mqtt_hub_url is None:
            return None
        from hub.mqtt import client_tls_context

        return client_tls_context(self.mqtt_hub_cafile or self.mqtt_cafile, self.mqtt_hub_certfile,
                                  self.mqtt_hub_keyfile)

    def mqtt_tls_context(self, *, client_certificate: bool = True) -> ssl.SSLContext | None:
        """The TLS context of the hub's broker connection, ``None`` unless ``mqtt_url`` is ``mqtts://``.

        ``client_certificate=False`` leaves the hub's certificate out: for the anonymous-access
        probe, which must not log in as the hub (with ``use_identity_as_username`` the
        certificate *is* the hub's login and client id, so it would take over the hub's session).
        Reads the CA and certificate files now (``OSError``/``ssl.SSLError`` if unusable).
        """
        if not (self.mqtt_url and MqttUrl.parse(self.mqtt_url).tls):
            return None
        from hub.mqtt import client_tls_context

        if not client_certificate:
            return client_tls_context(self.mqtt_cafile)
        return client_tls_context(self.mqtt_cafile, self.mqtt_certfile, self.mqtt_keyfile)

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "campus.key"

    @property
    def audit_archive_path(self) -> Path:
        return self.retention_audit_archive_dir or self.data_dir / "audit-archive"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def cookies_secure(self) -> bool:
        """Whether browsers reach the hub over HTTPS (its own TLS or a proxy's)."""
        return self.tls or self.secure_cookies

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        for renamed in ("CAMPUSHUB_SECRETS_KEY", "CAMPUSHUB_SECRETS_KEY_FILE"):
            if env.get(renamed):  # one name for the campus key: a silently ignored key would lose secrets
                raise ValueError(f"{renamed} was renamed {renamed.replace('SECRETS', 'MASTER')}; rename it")
        return cls(
            database_url=env.get("CAMPUSHUB_DATABASE_URL") or None,
            mqtt_url=env.get("CAMPUSHUB_MQTT_URL") or None,
            mqtt_cafile=_path_or_none(env.get("CAMPUSHUB_MQTT_CAFILE")),
            mqtt_certfile=_path_or_none(env.get("CAMPUSHUB_MQTT_CERTFILE")),
            mqtt_keyfile=_path_or_none(env.get("CAMPUSHUB_MQTT_KEYFILE")),
            mqtt_hub_url=env.get("CAMPUSHUB_MQTT_HUB_URL") or None,
            mqtt_hub_cafile=_path_or_none(env.get("CAMPUSHUB_MQTT_HUB_CAFILE")),
            mqtt_hub_certfile=_path_or_none(env.get("CAMPUSHUB_MQTT_HUB_CERTFILE")),
            mqtt_hub_keyfile=_path_or_none(env.get("CAMPUSHUB_MQTT_HUB_KEYFILE")),
            topic_prefix=env.get("CAMPUSHUB_TOPIC_PREFIX", "campushub"),
            data_dir=Path(env.get("CAMPUSHUB_DATA_DIR", ".campushub")),
            jwt_secret=env.get("CAMPUSHUB_JWT_SECRET") or None,
            hub_client_id=env.get("CAMPUSHUB_HUB_CLIENT_ID") or None,
            device_offline_after_s=float(env.get("CAMPUSHUB_DEVICE_OFFLINE_AFTER_S", DEVICE_OFFLINE_AFTER_S)),
            telemetry_raw_days=int(env.get("CAMPUSHUB_TELEMETRY_RAW_DAYS", "14")),
            telemetry_hourly_days=int(env.get("CAMPUSHUB_TELEMETRY_HOURLY_DAYS", "400")),
            retention_events_days=int(env.get("CAMPUSHUB_RETENTION_EVENTS_DAYS") or 14),
            retention_rejections_days=int(env.get("CAMPUSHUB_RETENTION_REJECTIONS_DAYS") or 90),
            retention_checkin_evidence_days=int(env.get("CAMPUSHUB_RETENTION_CHECKIN_EVIDENCE_DAYS") or 180),
            retention_notifications_days=int(env.get("CAMPUSHUB_RETENTION_NOTIFICATIONS_DAYS") or 180),
            retention_commands_days=int(env.get("CAMPUSHUB_RETENTION_COMMANDS_DAYS") or 90),
            retention_webhook_deliveries_days=int(env.get("CAMPUSHUB_RETENTION_WEBHOOK_DELIVERIES_DAYS") or 30),
            retention_expired_credentials_days=int(env.get("CAMPUSHUB_RETENTION_EXPIRED_CREDENTIALS_DAYS") or 30),
            retention_tickets_days=int(env.get("CAMPUSHUB_RETENTION_TICKETS_DAYS") or 730),
            retention_alarms_days=int(env.get("CAMPUSHUB_RETENTION_ALARMS_DAYS") or 400),
            retention_records_years=int(env.get("CAMPUSHUB_RETENTION_RECORDS_YEARS") or 7),
            retention_audit_years=int(env.get("CAMPUSHUB_RETENTION_AUDIT_YEARS") or 7),
            retention_audit_archive_dir=_path_or_none(env.get("CAMPUSHUB_RETENTION_AUDIT_ARCHIVE_DIR")),
            timezone=env.get("CAMPUSHUB_TIMEZONE") or "UTC",
            login_limit_account=env.get("CAMPUSHUB_LOGIN_LIMIT_ACCOUNT") or "10/15 minutes",
            login_limit_address=env.get("CAMPUSHUB_LOGIN_LIMIT_ADDRESS") or "100/15 minutes",
            api_rate_limits=env.get("CAMPUSHUB_API_RATE_LIMITS") or "60/10 seconds;600/minute",
            device_rate_per_s=float(env.get("CAMPUSHUB_DEVICE_RATE_PER_S") or 50.0),
            device_burst=int(env.get("CAMPUSHUB_DEVICE_BURST") or 10_000),
            device_flood_events_per_s=int(env.get("CAMPUSHUB_DEVICE_FLOOD_EVENTS_PER_S") or 1_000),
            rejections_kept_per_minute=int(env.get("CAMPUSHUB_REJECTIONS_KEPT_PER_MINUTE") or 60),
            quarantine_cooldown_s=float(env.get("CAMPUSHUB_QUARANTINE_COOLDOWN_S") or 300.0),
            quarantine_max_s=float(env.get("CAMPUSHUB_QUARANTINE_MAX_S") or 3600.0),
            quarantine_repeat_window_s=float(env.get("CAMPUSHUB_QUARANTINE_REPEAT_WINDOW_S") or 3600.0),
            tls_cert=_path_or_none(env.get("CAMPUSHUB_TLS_CERT")),
            tls_key=_path_or_none(env.get("CAMPUSHUB_TLS_KEY")),
            secure_cookies=_flag(env, "CAMPUSHUB_SECURE_COOKIES"),
            trusted_proxies=tuple(r.strip() for r in env.get("CAMPUSHUB_TRUSTED_PROXIES", "").split(",") if r.strip()),
            metrics_token=env.get("CAMPUSHUB_METRICS_TOKEN") or None,
            metrics_bind=env.get("CAMPUSHUB_METRICS_BIND") or None,
            backup_dir=_path_or_none(env.get("CAMPUSHUB_BACKUP_DIR")),
            backup_interval_h=float(env.get("CAMPUSHUB_BACKUP_INTERVAL_H") or 24.0),
            backup_keep=int(env.get("CAMPUSHUB_BACKUP_KEEP") or 7),
            pg_bin_dir=_path_or_none(env.get("CAMPUSHUB_PG_BIN_DIR")),
            master_key_file=_path_or_none(env.get("CAMPUSHUB_MASTER_KEY_FILE")),
            master_key=env.get("CAMPUSHUB_MASTER_KEY") or None,
            partitions=int(env.get("CAMPUSHUB_PARTITIONS") or 0),
            worker_id=env.get("CAMPUSHUB_WORKER_ID") or None,
            partition_lease_s=float(env.get("CAMPUSHUB_PARTITION_LEASE_S") or 10.0),
            worker_peers=tuple(w.strip() for w in env.get("CAMPUSHUB_WORKER_PEERS", "").split(",") if w.strip()),
        )


def _path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


def _flag(env: dict[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1 or 0, got {value!r}")


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair; ``ValueError`` with the expected form otherwise."""
    host, sep, port = bind.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or len(bind) > 300:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9100), got {bind[:80]!r}")
    return host, int(port)
