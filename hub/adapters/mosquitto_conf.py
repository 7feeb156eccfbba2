"""The whole ``mosquitto.conf`` the project generates (Mosquitto 2.0), secure by default.

One source for every broker we configure: ``campushub devices export-mosquitto
--conf``, the docker-compose broker (its init container runs that command), the
embedded demo broker (hub/app/environment.py) and the tests' private brokers
(tests/support/private_mosquitto.py).

What the rendered file enforces (measured against Mosquitto 2.0.11 in
tests/hub/test_broker_config.py, the hub's listener in
tests/hub/test_mosquitto_many_sessions.py):

- ``allow_anonymous false`` with the generated ``password_file``/``acl_file``
  (hub/adapters/mosquitto_auth.py), and ``per_listener_settings false`` so
  the same accounts and ACL apply to every listener;
- ``use_username_as_clientid true`` on every device listener: the broker
  replaces every client id by the client's username. A device can therefore
  never take over the hub's sessions nor another device's (its session is
  always its own username). The cost: one session per account on those
  listeners;
- optionally (:class:`HubListener`) a listener of the hub's own, where only a
  client certificate from a CA that signs the hub's certificates alone logs
  in (its Common Name is the hub's account), and client ids are kept as asked:
  a hub of many workers opens one persistent session per partition and a
  live-bus and a calls client per worker, each with its own client id, all
  under the one hub account and its ACL block. Why a certificate and not a
  password file of its own (``per_listener_settings true``): see
  :class:`HubListener`;
- ``max_packet_size``: a client that sends a bigger packet is disconnected and
  the packet is dropped before it reaches anyone (MQTT 5 clients also learn
  the limit from the CONNACK);
- the queue limits (:class:`QueueLimits`) and persistence.

Pure: renders text, does no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hub.core.config import MQTT_MAX_PACKET_SIZE
from schemas import MAX_MESSAGE_BYTES

#: The biggest packet the broker accepts from any client: the same number the hub declares as
#: Maximum Packet Size in its CONNECT (``hub.core.config.MQTT_MAX_PACKET_SIZE``, one source):
#: twice the 8 KiB message limit plus 2 KiB of headers. A payload somewhat over the message limit
#: still reaches the hub, which rejects it as ``oversize`` and keeps and counts it (a device
#: misbehaving is seen, not silently cut off); anything bigger (the issue's 32 MiB publish, a
#: 60,000-character topic) is an attack, and the broker drops it with the connection.
DEFAULT_MAX_PACKET_SIZE = MQTT_MAX_PACKET_SIZE

_SAFE_ADDRESS = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SAFE_DURATION = re.compile(r"^[0-9]+[hdwmy]$")


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener's files. ``require_certificate``: clients must present a certificate
    signed by ``cafile``, and its Common Name becomes their username (``use_identity_as_username``),
    so a device certificate's CN must be the device's MQTT username."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


@dataclass(frozen=True)
class HubListener:
    """The hub's own listener: only the hub's client certificate logs in, and client ids are free.

    A hub of many workers needs many sessions under its one account: a persistent session per
    partition (``{hub_client_id}-p{n}``, inherited by whichever worker owns the partition next) and
    a clean live-bus and calls client per worker. On the device listeners
    ``use_username_as_clientid`` renames every one of them to the hub's username, so they would
    take each other over. This listener leaves that option out and lets nobody but the hub in:

    - ``require_certificate true`` with ``cafile`` the CA of the hub's client certificates, and
      ``use_identity_as_username true``: the certificate's Common Name is the login (it must be
      the hub's account, whose ACL block then applies; the password file is not consulted). A
      device has no such certificate: its TLS handshake fails, whatever password it knows.
      ``cafile`` must sign nothing else: a device certificate from it would log in here, under
      its own name, with any client id (so :func:`render_mosquitto_conf` refuses the device TLS
      listener's CA file here);
    - ``certfile``/``keyfile``: the broker's own certificate on this port (the TLS listener's
      may serve), naming the host the workers put in ``CAMPUSHUB_MQTT_HUB_URL``;
    - ``bind_address``: ``None`` binds what the other listeners bind; a private interface keeps
      the port off the devices' network besides.

    Why a certificate and not a password file of the listener's own (``per_listener_settings
    true``): with that setting Mosquitto 2.0.12 to 2.0.22 drops the messages queued for a
    disconnected persistent session (eclipse-mosquitto issue 2618, fixed in 2.0.23), which is
    what a partition's session is between two owners; 2.0.11 predates the bug, so a test here
    would not show it. Why not a login per session (username = client id, under
    ``use_username_as_clientid``): the password file would have to name every session before it
    connects, two per worker id, so each new worker on any machine would wait for the files to
    be rewritten and the broker reloaded. This listener is static: workers and partitions come
    and go without touching the broker. (EMQX, for a clustered broker: the same shape, a
    listener with ``verify_peer``/``fail_if_no_peer_cert`` and the certificate's CN as username
    in a zone without ``use_username_as_clientid``; not tested here.)
    """

    port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    bind_address: str | None = None


@dataclass(frozen=True)
class QueueLimits:
    """Mosquitto's per-client queue settings (0 means unlimited).

    The defaults were chosen from ``bench/broker_flood.py`` on Mosquitto 2.0.11
    (docs/reliability.md, "The broker queue configuration, measured"). Mosquitto
    acknowledges a QoS 1 publish even when it then drops it for a full
    subscriber queue, so every limit is a point where acknowledged messages are
    lost:

    - ``max_queued_messages`` 0: a count limit drops far too early (the default
      1000 lost 16 % of acknowledged device messages under a flood);
    - ``max_queued_bytes`` 256 MiB: the memory bound (about 0.8 GiB of broker
      RSS at ~496 B a queued message). Nothing acknowledged is dropped while
      the hub's session holds less payload than this: about 28 minutes of hub
      outage at 1,000 events/s. Beyond it Mosquitto drops and logs
      "Outgoing messages are being dropped": alert on it;
    - ``max_inflight_messages`` 20: the Receive Maximum the broker advertises,
      above the edge agent's 16 in flight (Mosquitto does not enforce it on
      incoming publishes, so it throttles nothing);
    - ``max_inflight_bytes`` 0: it only concerns outgoing messages.

    No ``memory_limit``: when reached, it disconnects clients and lost
    acknowledged messages in 3 of 8 measured runs.
    """

    max_queued_messages: int = 0
    max_queued_bytes: int = 256 * 1024 * 1024
    max_inflight_messages: int = 20
    max_inflight_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_inflight_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = unlimited)")


def render_mosquitto_conf(
    *,
    password_file: Path,
    acl_file: Path,
    port: int = 1883,
    bind_address: str | None = None,
    tls: BrokerTls | None = None,
    tls_port: int = 8883,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    queue: QueueLimits = QueueLimits(),
    persistence_dir: Path | None = None,
    autosave_interval: int = 30,
    persistent_client_expiration: str | None = None,
    run_as_user: str | None = None,
    log_types: tuple[str, ...] = ("error", "warning", "notice"),
    hub_listener: HubListener | None = None,
) -> str:
    """The complete ``mosquitto.conf``: listeners, authentication, ACL, limits, persistence.

    ``bind_address`` None listens on every interface (a container); the TLS
    listener, when given, binds the same address. ``persistence_dir`` None
    keeps sessions in memory only. ``persistent_client_expiration`` (e.g.
    ``"14d"``) lets Mosquitto forget sessions of clients gone that long.
    ``run_as_user``: Mosquitto drops root privileges to this user (its default is
    ``mosquitto``; give the files' owner when it must read them as another user).
    ``hub_listener``: the hub's own listener (:class:`HubListener`) for a hub of many workers;
    ``None``: the hub logs in on the device listeners, with one session.
    Raises ``ValueError`` for a value that cannot go into the file safely.
    """
    if not 20 <= max_packet_size <= 268_435_455:  # MQTT's smallest useful and largest encodable packet
        raise ValueError(f"max_packet_size {max_packet_size} is outside 20..268435455")
    for number in (port, tls_port):
        if not 0 < number < 65536:
            raise ValueError(f"port {number} is not a TCP port")
    if tls is not None and tls_port == port:
        raise ValueError("the TLS listener needs a port of its own")
    if hub_listener is not None:
        _check_hub_listener(hub_listener, taken=(port, tls_port) if tls is not None else (port,),
                            device_ca=tls.cafile if tls is not None else None)
    if bind_address is not None and not _SAFE_ADDRESS.match(bind_address):
        raise ValueError(f"bind address {bind_address!r} is not a host name or IP address")
    if run_as_user is not None and not _SAFE_USER.match(run_as_user):
        raise ValueError(f"user {run_as_user!r} cannot go into mosquitto.conf")
    if persistent_client_expiration is not None and not _SAFE_DURATION.match(persistent_client_expiration):
        raise ValueError("persistent_client_expiration is a number and one of h d w m y, e.g. '14d'")
    files = [password_file, acl_file] + ([tls.cafile, tls.certfile, tls.keyfile] if tls else [])
    if hub_listener is not None:
        files += [hub_listener.cafile, hub_listener.certfile, hub_listener.keyfile]
    if persistence_dir is not None:
        files.append(persistence_dir)
    for path in files:
        _check_path(path)

    bind = f" {bind_address}" if bind_address else ""
    out = [
        "# Generated by CampusHub (hub/adapters/mosquitto_conf.py); edits are overwritten.",
        "# Trust model: docs/provisioning.md. One set of accounts and ACL for every listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        f"# Bigger packets drop the connection (the hub's message limit is {MAX_MESSAGE_BYTES} bytes;"
        " a little over it still reaches the hub, to be rejected, kept and counted).",
        f"max_packet_size {max_packet_size}",
        "# 0 = unlimited. Mosquitto drops messages beyond a queue limit: see QueueLimits.",
        f"max_queued_messages {queue.max_queued_messages}",
        f"max_queued_bytes {queue.max_queued_bytes}",
        f"max_inflight_messages {queue.max_inflight_messages}",
        f"max_inflight_bytes {queue.max_inflight_bytes}",
    ]
    if persistent_client_expiration is not None:
        out.append(f"persistent_client_expiration {persistent_client_expiration}")
    if persistence_dir is not None:
        out += ["persistence true", f"persistence_location {str(persistence_dir).rstrip('/')}/",
                "persistence_file mosquitto.db",
                "# Saved on clean shutdown anyway; this bounds what a crash loses.",
                f"autosave_interval {autosave_interval}"]
    else:
        out.append("persistence false")
    if run_as_user is not None:
        out.append(f"user {run_as_user}")
    out.append("log_dest stderr")
    out += [f"log_type {kind}" for kind in log_types]
    # A listener option (one per listener): the client id is the username, so nobody can take
    # over another account's session.
    out += ["", f"listener {port}{bind}", "use_username_as_clientid true"]
    if tls is not None:
        out += ["", f"listener {tls_port}{bind}", "use_username_as_clientid true",
                f"cafile {tls.cafile}", f"certfile {tls.certfile}", f"keyfile {tls.keyfile}",
                "tls_version tlsv1.2",
                f"require_certificate {'true' if tls.require_certificate else 'false'}"]
        if tls.require_certificate:
            out.append("use_identity_as_username true")
    if hub_listener is not None:
        hub_bind = f" {hub_listener.bind_address}" if hub_listener.bind_address else bind
        # No use_username_as_clientid here: each of the hub's connections keeps its own client id.
        # Only a certificate of the hub's CA gets in, and its CN is the login.
        out += ["", "# The hub's own listener: its client certificate only; client ids as asked (HubListener).",
                f"listener {hub_listener.port}{hub_bind}",
                f"cafile {hub_listener.cafile}", f"certfile {hub_listener.certfile}",
                f"keyfile {hub_listener.keyfile}", "tls_version tlsv1.2",
                "require_certificate true", "use_identity_as_username true"]
    return "\n".join(out) + "\n"


def _check_hub_listener(hub: HubListener, *, taken: tuple[int, ...], device_ca: Path | None) -> None:
    if not 0 < hub.port < 65536:
        raise ValueError(f"port {hub.port} is not a TCP port")
    if hub.port in taken:
        raise ValueError("the hub's listener needs a port of its own")
    if hub.bind_address is not None and not _SAFE_ADDRESS.match(hub.bind_address):
        raise ValueError(f"bind address {hub.bind_address!r} is not a host name or IP address")
    if device_ca is not None and Path(hub.cafile) == Path(device_ca):
        # Every certificate that CA signs would log in on the hub's listener with free client ids.
        raise ValueError("the hub's listener needs a CA of its own, which signs only the hub's certificates")


def _check_path(path: Path) -> None:
    text = str(path)
    if not text.startswith("/") or any(ch.isspace() or ch == "#" for ch in text):
        raise ValueError(f"{text!r}: mosquitto.conf needs absolute paths without spaces or '#'")
