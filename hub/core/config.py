"""Hub configuration, read once from environment variables."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

#: MQTT protocol versions a broker URL may select with ``?protocol=``.
MQTT_PROTOCOLS = ("5", "3.1.1")
#: A device silent this long (no heartbeat, no event) is offline: the one default, which
#: ``CAMPUSHUB_DEVICE_OFFLINE_AFTER_S`` overrides. Pushed heartbeat intervals must fit it
#: (hub.domain.device_health.heartbeat_interval_problem).
DEVICE_OFFLINE_AFTER_S = 90.0


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    #: "5" (default) or "3.1.1" (for brokers without MQTT 5, e.g. the embedded amqtt).
    protocol: str = "5"

    @classmethod
    def parse(cls, url: str) -> "MqttUrl":
        """Parse ``mqtt://[user:pass@]host[:port][?protocol=5|3.1.1]``; raises ``ValueError`` on anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"not an mqtt:// URL: {url!r}")
        return cls(parts.hostname, parts.port or 1883, parts.username, parts.password,
                   parse_mqtt_protocol(parts.query))

    def __str__(self) -> str:
        # No credentials: this is what logs show.
        query = "" if self.protocol == "5" else f"?protocol={self.protocol}"
        return f"mqtt://{self.host}:{self.port}{query}"


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


@dataclass(frozen=True)
class Settings:
    """Everything the hub reads from its environment.

    ``database_url`` / ``mqtt_url`` of ``None`` mean "not configured": the demo
    and the test fixtures then start embedded services.
    """

    database_url: str | None = None
    mqtt_url: str | None = None
    topic_prefix: str = "campushub"
    data_dir: Path = field(default_factory=lambda: Path(".campushub"))
    jwt_secret: str | None = None
    hub_client_id: str = "campushub-hub"
    device_offline_after_s: float = DEVICE_OFFLINE_AFTER_S
    #: Raw sensor readings are kept this many days; hourly aggregates (and health history) longer.
    telemetry_raw_days: int = 14
    telemetry_hourly_days: int = 400
    #: IANA timezone of the campus (terms' default; "today" of the academic API).
    timezone: str = "UTC"
    #: Failed logins allowed per account and per client address (``limits`` notation, one
    #: window each); the address limit is higher because a campus NAT puts many people behind one.
    login_limit_account: str = "10/15 minutes"
    login_limit_address: str = "100/15 minutes"
    #: Requests per user on authenticated HTTP routes: every window must allow the request,
    #: so the short one caps bursts and the long one the sustained rate.
    api_rate_limits: str = "60/10 seconds;600/minute"
    #: PEM certificate chain and private key: with both, the web server speaks HTTPS only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Cookies ``Secure`` and HSTS sent although the hub itself speaks HTTP: for a
    #: TLS-terminating proxy in front of it. Implied by ``tls_cert``.
    secure_cookies: bool = False
    #: When set, ``/metrics`` (and the detailed ``/healthz``) need ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    #: ``host:port`` of a listener of its own for ``/metrics`` and ``/healthz`` (plain HTTP, for
    #: a scraper on a private network); the main web port then no longer serves ``/metrics``.
    metrics_bind: str | None = None
    #: Key file of the secrets box (TOTP seeds encrypted at rest, hub/core/secrets_box.py);
    #: ``None``: ``data_dir/secrets.key``. ``CAMPUSHUB_SECRETS_KEY`` (a base64 key) replaces the file.
    secrets_key_file: Path | None = None
    #: ``CAMPUSHUB_SECRETS_KEY``: the secrets box's key (base64 of 32 bytes) instead of the key file.
    secrets_key: str | None = field(default=None, repr=False)
    #: Two-factor authentication optional for every role, admin and ops included. Only
    #: ``campushub demo`` (and test fixtures) set it, so its printed logins keep working;
    #: ``from_env`` never does, so ``serve`` always requires MFA of admin and ops.
    mfa_optional_demo: bool = False

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (CAMPUSHUB_TLS_CERT and CAMPUSHUB_TLS_KEY)")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ValueError("CAMPUSHUB_METRICS_TOKEN must be at least 16 characters")
        if self.metrics_bind is not None:
            parse_bind(self.metrics_bind)
        for name in ("login_limit_account", "login_limit_address", "api_rate_limits"):
            _check_rate_limits(name, getattr(self, name))

    @property
    def secrets_key_path(self) -> Path:
        return self.secrets_key_file or self.data_dir / "secrets.key"

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
        return cls(
            database_url=env.get("CAMPUSHUB_DATABASE_URL") or None,
            mqtt_url=env.get("CAMPUSHUB_MQTT_URL") or None,
            topic_prefix=env.get("CAMPUSHUB_TOPIC_PREFIX", "campushub"),
            data_dir=Path(env.get("CAMPUSHUB_DATA_DIR", ".campushub")),
            jwt_secret=env.get("CAMPUSHUB_JWT_SECRET") or None,
            hub_client_id=env.get("CAMPUSHUB_HUB_CLIENT_ID", "campushub-hub"),
            device_offline_after_s=float(env.get("CAMPUSHUB_DEVICE_OFFLINE_AFTER_S", DEVICE_OFFLINE_AFTER_S)),
            telemetry_raw_days=int(env.get("CAMPUSHUB_TELEMETRY_RAW_DAYS", "14")),
            telemetry_hourly_days=int(env.get("CAMPUSHUB_TELEMETRY_HOURLY_DAYS", "400")),
            timezone=env.get("CAMPUSHUB_TIMEZONE") or "UTC",
            login_limit_account=env.get("CAMPUSHUB_LOGIN_LIMIT_ACCOUNT") or "10/15 minutes",
            login_limit_address=env.get("CAMPUSHUB_LOGIN_LIMIT_ADDRESS") or "100/15 minutes",
            api_rate_limits=env.get("CAMPUSHUB_API_RATE_LIMITS") or "60/10 seconds;600/minute",
            tls_cert=_path_or_none(env.get("CAMPUSHUB_TLS_CERT")),
            tls_key=_path_or_none(env.get("CAMPUSHUB_TLS_KEY")),
            secure_cookies=_flag(env, "CAMPUSHUB_SECURE_COOKIES"),
            metrics_token=env.get("CAMPUSHUB_METRICS_TOKEN") or None,
            metrics_bind=env.get("CAMPUSHUB_METRICS_BIND") or None,
            secrets_key_file=_path_or_none(env.get("CAMPUSHUB_SECRETS_KEY_FILE")),
            secrets_key=env.get("CAMPUSHUB_SECRETS_KEY") or None,
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
