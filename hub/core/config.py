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
#: (hub.domain.health.heartbeat_interval_problem).
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
        )
