"""Edge agent configuration: a TOML file, parsed into a frozen :class:`AgentConfig`.

Example (relative paths are resolved against the config file's folder)::

    device_id = "room-101-edge"
    room_id = "room-101"
    alg = "hmac-sha256"            # or "ed25519" (key = 32-byte private seed)
    signing_key = "9f86d0...0f00a08"  # hex; or: key_file = "device.key" (hex text)
    mqtt_url = "mqtt://127.0.0.1:1883"  # MQTT 5; "...:1883?protocol=3.1.1" for a 3.1.1-only broker
    # username = "room-101-edge"   # optional (also accepted in the URL)
    # password = "..."
    # TLS: mqtt_url = "mqtts://broker.campus.example:8883", then optionally
    # mqtt_cafile = "ca.pem"         # CA of the broker's certificate (default: system store)
    # mqtt_certfile = "device.crt"   # client certificate, for require_certificate listeners
    # mqtt_keyfile = "device.key.pem"
    topic_prefix = "campushub"
    outbox = "outbox.sqlite"
    heartbeat_interval_s = 15
    firmware = "campushub-edge/0.1.0"
    # Optional tuning: max_outbox_rows = 10000, max_inflight = 16,
    # publish_timeout_s = 10, keepalive_s = 30, reconnect_initial_s = 0.5,
    # reconnect_max_s = 30, drain_timeout_s = 5, client_id = "..."

    [[sources]]
    type = "qr_lines"
    path = "/dev/ttyACM0"          # "-" = stdin

    [[sources]]
    type = "simulated_sensor"
    interval_s = 5
    metrics = ["temperature", "humidity", "co2"]
    seed = 1

    # Hardware: one [[devices]] table per device (see edge_agent/device_config.py
    # and docs/drivers.md for every driver and option).
    [[devices]]
    name = "door-fp"
    kind = "fingerprint"
    driver = "r30x"
    port = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"
    [devices.options]
    min_score = 0.25

    # Optional: state = "<device_id>.state.sqlite" (commands done, enrolment map,
    # terminal stamps), key_store = "<device_id>.keys.json" (AES-256-GCM keys for
    # data at rest), hub_public_key = "<hex>" (hub key for ed25519 devices).

Pure and synchronous apart from :func:`load_config` reading files.
"""
from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union
from urllib.parse import parse_qs, urlsplit

from devices.sensor.source import DEFAULT_METRICS

from .device_config import DeviceConfig, DeviceConfigError, check_devices, locate, parse_device

FIRMWARE = "campushub-edge/0.1.0"
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the wire format requires
_ALGS = ("hmac-sha256", "ed25519")
#: MQTT versions ``mqtt_url`` may select with ``?protocol=`` (as the hub's URLs).
MQTT_PROTOCOLS = ("5", "3.1.1")


class ConfigError(ValueError):
    """The configuration is unusable; the message names the offending key (and, from
    :func:`load_config`, the file and line)."""


@dataclass(frozen=True)
class QrLinesSourceConfig:
    """Read decoded QR texts line by line from ``path`` (``"-"`` = stdin)."""

    path: str


@dataclass(frozen=True)
class SimulatedSensorSourceConfig:
    interval_s: float = 5.0
    metrics: tuple[str, ...] = ("temperature", "humidity", "co2")
    seed: int | None = None


SourceConfig = Union[QrLinesSourceConfig, SimulatedSensorSourceConfig]


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: str | None
    #: "5" (default) or "3.1.1" (for brokers without MQTT 5, e.g. the hub's embedded amqtt).
    protocol: str = "5"
    #: ``mqtts://``: TLS, verifying the broker's certificate and host name.
    tls: bool = False


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse ``mqtt[s]://[user:pass@]host[:port][?protocol=5|3.1.1]``.

    ``mqtts://`` (or ``ssl://``) is TLS, port 8883 by default; ``mqtt://`` (or ``tcp://``) plain, 1883.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"mqtt_url: {exc}") from None
    tls = parts.scheme in ("mqtts", "ssl")
    if not (tls or parts.scheme in ("mqtt", "tcp")) or not parts.hostname:
        # The URL stays out of the message: it may carry a password.
        raise ConfigError(f"mqtt_url: expected mqtt://host:port or mqtts://host:port, "
                          f"got scheme {parts.scheme[:20]!r}")
    # Same rule as the hub's MqttUrl; an unknown version must not quietly mean MQTT 5.
    protocols = parse_qs(parts.query, keep_blank_values=True).get("protocol", ["5"])
    if len(protocols) != 1 or protocols[0] not in MQTT_PROTOCOLS:
        raise ConfigError(f"mqtt_url: protocol must be one of {', '.join(MQTT_PROTOCOLS)}, "
                          f"got {'&'.join(protocols)!r}")
    return MqttEndpoint(parts.hostname, port or (8883 if tls else 1883), parts.username, parts.password,
                        protocols[0], tls)


@dataclass(frozen=True)
class AgentConfig:
    """Everything one edge agent needs. Validated on construction (raises :class:`ConfigError`)."""

    device_id: str
    room_id: str
    alg: Literal["hmac-sha256", "ed25519"]
    signing_key: bytes = field(repr=False)
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = "campushub"
    outbox_path: Path = Path("outbox.sqlite")
    heartbeat_interval_s: float = 15.0
    firmware: str = FIRMWARE
    sources: tuple[SourceConfig, ...] = ()
    max_outbox_rows: int = 10_000
    max_inflight: int = 16
    publish_timeout_s: float = 10.0
    keepalive_s: int = 30
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    drain_timeout_s: float = 5.0
    client_id: str | None = None
    devices: tuple[DeviceConfig, ...] = ()
    #: Agent state (executed commands, enrolment map, terminal stamps); default beside the outbox.
    state_path: Path | None = None
    #: AES-256-GCM keys sealing enrolment data at rest; default beside the outbox.
    key_store_path: Path | None = None
    #: Ed25519 public key of the hub, to verify commands to an ed25519 device.
    hub_public_key: bytes | None = field(default=None, repr=False)
    #: ``mqtts://`` only: CA of the broker's certificate (``None``: the system store), and
    #: this device's client certificate and key for a listener that requires one.
    mqtt_cafile: Path | None = None
    mqtt_certfile: Path | None = None
    mqtt_keyfile: Path | None = None

    def __post_init__(self) -> None:
        if not _DEVICE_ID_RE.match(self.device_id):
            raise ConfigError(f"device_id: {self.device_id!r} must match {_DEVICE_ID_RE.pattern}")
        if not self.room_id:
            raise ConfigError("room_id: must not be empty")
        if self.alg not in _ALGS:
            raise ConfigError(f"alg: must be one of {', '.join(_ALGS)}, got {self.alg!r}")
        if self.alg == "ed25519" and len(self.signing_key) != 32:
            raise ConfigError(f"signing_key: an ed25519 seed is 32 bytes, got {len(self.signing_key)}")
        if self.alg == "hmac-sha256" and len(self.signing_key) < 16:
            raise ConfigError(f"signing_key: an HMAC key needs >= 16 bytes, got {len(self.signing_key)}")
        endpoint = parse_mqtt_url(self.mqtt_url)
        if (self.mqtt_cafile or self.mqtt_certfile or self.mqtt_keyfile) and not endpoint.tls:
            raise ConfigError("mqtt_cafile/mqtt_certfile/mqtt_keyfile: set, but mqtt_url is not mqtts://")
        if self.mqtt_keyfile is not None and self.mqtt_certfile is None:
            raise ConfigError("mqtt_keyfile: needs mqtt_certfile (the key's certificate)")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "+#"):
            raise ConfigError(f"topic_prefix: {self.topic_prefix!r} is not a usable topic prefix")
        if not 0 < len(self.firmware) <= 128:
            raise ConfigError("firmware: must be 1..128 characters")
        for name in ("heartbeat_interval_s", "publish_timeout_s", "reconnect_initial_s",
                     "reconnect_max_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0")
        for name in ("max_outbox_rows", "max_inflight", "keepalive_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
        for i, src in enumerate(self.sources):
            if isinstance(src, SimulatedSensorSourceConfig):
                if not src.interval_s > 0:
                    raise ConfigError(f"sources[{i}].interval_s: must be > 0")
                unknown = [m for m in src.metrics if m not in DEFAULT_METRICS]
                if unknown or not src.metrics:
                    raise ConfigError(
                        f"sources[{i}].metrics: unknown {unknown} (known: {', '.join(DEFAULT_METRICS)})"
                    )

        try:
            check_devices(self.devices)
        except DeviceConfigError as exc:
            raise ConfigError(str(exc)) from None
        if self.hub_public_key is not None and len(self.hub_public_key) != 32:
            raise ConfigError("hub_public_key: an Ed25519 public key is 32 bytes")

    @property
    def state_file(self) -> Path:
        return self.state_path or self.outbox_path.parent / f"{self.device_id}.state.sqlite"

    @property
    def key_store_file(self) -> Path:
        return self.key_store_path or self.outbox_path.parent / f"{self.device_id}.keys.json"

    @property
    def endpoint(self) -> MqttEndpoint:
        """Host/port, protocol and credentials; explicit ``username``/``password`` beat the URL's."""
        ep = parse_mqtt_url(self.mqtt_url)
        return MqttEndpoint(ep.host, ep.port, self.username or ep.username,
                            self.password if self.password is not None else ep.password, ep.protocol, ep.tls)

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """TLS context for ``mqtts://`` (``None`` for ``mqtt://``): verifies the broker's
        certificate and host name; presents ``mqtt_certfile`` if set. Reads the files now."""
        if not self.endpoint.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.mqtt_cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.mqtt_certfile is not None:
            context.load_cert_chain(self.mqtt_certfile, self.mqtt_keyfile)
        return context

    @property
    def mqtt_client_id(self) -> str:
        # The prefix keeps two deployments (or test runs) on one broker from
        # kicking each other off through a shared client id.
        return self.client_id or f"{self.topic_prefix}/edge/{self.device_id}"


_KEYS = {
    "device_id", "room_id", "alg", "signing_key", "key_file", "mqtt_url", "username", "password",
    "topic_prefix", "outbox", "heartbeat_interval_s", "firmware", "sources", "max_outbox_rows",
    "max_inflight", "publish_timeout_s", "keepalive_s", "reconnect_initial_s", "reconnect_max_s",
    "drain_timeout_s", "client_id", "devices", "state", "key_store", "hub_public_key",
    "mqtt_cafile", "mqtt_certfile", "mqtt_keyfile",
}


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    value = data[key]
    # bool is an int subclass; "true" is never a sensible number here.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}{key}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("number" if k is float else {str: "string", int: "integer",
                                                     list: "array"}.get(k, k.__name__) for k in kinds)


def _hex_key(text: str, where: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: not valid hex") from None


def _source(raw: Any, i: int, base_dir: Path) -> SourceConfig:
    where = f"sources[{i}]."
    if not isinstance(raw, dict):
        raise ConfigError(f"sources[{i}]: expected a table")
    kind = raw.get("type")
    if kind == "qr_lines":
        extra = set(raw) - {"type", "path"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {sorted(extra)}")
        if "path" not in raw:
            raise ConfigError(f"{where}path: required for type qr_lines")
        path = _get(raw, "path", str, where)
        return QrLinesSourceConfig(path if path == "-" else str(base_dir / path))
    if kind == "simulated_sensor":
        extra = set(raw) - {"type", "interval_s", "metrics", "seed"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {sorted(extra)}")
        defaults = SimulatedSensorSourceConfig()
        metrics = _get(raw, "metrics", list, where) if "metrics" in raw else list(defaults.metrics)
        if not all(isinstance(m, str) for m in metrics):
            raise ConfigError(f"{where}metrics: expected an array of strings")
        return SimulatedSensorSourceConfig(
            interval_s=float(_get(raw, "interval_s", (int, float), where)) if "interval_s" in raw
            else defaults.interval_s,
            metrics=tuple(metrics),
            seed=_get(raw, "seed", int, where) if "seed" in raw else None,
        )
    raise ConfigError(f"{where}type: expected 'qr_lines' or 'simulated_sensor', got {kind!r}")


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path = Path(".")) -> AgentConfig:
    """Build an :class:`AgentConfig` from parsed TOML; raises :class:`ConfigError`."""
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(sorted(unknown))}")
    for key in ("device_id", "room_id", "alg"):
        if key not in data:
            raise ConfigError(f"{key}: required")
    if ("signing_key" in data) == ("key_file" in data):
        raise ConfigError("signing_key: give exactly one of signing_key (hex) or key_file")
    if "signing_key" in data:
        signing_key = _hex_key(_get(data, "signing_key", str), "signing_key")
    else:
        key_path = base_dir / _get(data, "key_file", str)
        try:
            signing_key = _hex_key(key_path.read_text(), f"key_file ({key_path})")
        except OSError as exc:
            raise ConfigError(f"key_file: cannot read {key_path}: {exc.strerror}") from None
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("sources: expected an array of tables ([[sources]])")

    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list):
        raise ConfigError("devices: expected an array of tables ([[devices]])")
    try:
        devices = tuple(parse_device(raw, i, base_dir) for i, raw in enumerate(raw_devices))
    except DeviceConfigError as exc:
        raise ConfigError(str(exc)) from None

    kwargs: dict[str, Any] = {}
    if "state" in data:
        kwargs["state_path"] = base_dir / _get(data, "state", str)
    if "key_store" in data:
        kwargs["key_store_path"] = base_dir / _get(data, "key_store", str)
    if "hub_public_key" in data:
        kwargs["hub_public_key"] = _hex_key(_get(data, "hub_public_key", str), "hub_public_key")
    for key in ("mqtt_cafile", "mqtt_certfile", "mqtt_keyfile"):
        if key in data:
            kwargs[key] = base_dir / _get(data, key, str)
    for key in ("mqtt_url", "username", "password", "topic_prefix", "firmware", "client_id"):
        if key in data:
            kwargs[key] = _get(data, key, str)
    for key in ("heartbeat_interval_s", "publish_timeout_s", "reconnect_initial_s",
                "reconnect_max_s", "drain_timeout_s"):
        if key in data:
            kwargs[key] = float(_get(data, key, (int, float)))
    for key in ("max_outbox_rows", "max_inflight", "keepalive_s"):
        if key in data:
            kwargs[key] = _get(data, key, int)
    if "outbox" in data:
        kwargs["outbox_path"] = base_dir / _get(data, "outbox", str)
    else:
        kwargs["outbox_path"] = base_dir / f"{data['device_id']}.outbox.sqlite"
    config = AgentConfig(
        device_id=_get(data, "device_id", str),
        room_id=_get(data, "room_id", str),
        alg=_get(data, "alg", str),
        signing_key=signing_key,
        sources=tuple(_source(raw, i, base_dir) for i, raw in enumerate(raw_sources)),
        devices=devices,
        **kwargs,
    )
    try:
        config.mqtt_tls_context()  # unreadable or malformed CA/certificate/key: now, not at each reconnect
    except (OSError, ssl.SSLError) as exc:
        key = "mqtt_cafile" if config.mqtt_certfile is None else "mqtt_cafile/mqtt_certfile/mqtt_keyfile"
        raise ConfigError(f"{key}: unusable: {getattr(exc, 'strerror', None) or exc}") from None
    return config


def load_config(path: "str | Path") -> AgentConfig:
    """Read and validate a TOML config file; raises :class:`ConfigError` (also for I/O and TOML errors)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return config_from_mapping(data, base_dir=path.resolve().parent)
    except ConfigError as exc:
        message = str(exc)
        line = locate(text, message.split(":", 1)[0])
        raise ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}") from None
