"""Mosquitto's ``password_file`` and ``acl_file``, generated from the device registry.

Per device (not revoked, with a broker account): ``user <username>`` may

- write ``<prefix>/v1/dev/<id>/up`` (its events),
- write ``<prefix>/v1/dev/<id>/status`` (its retained status and Last Will),
- read ``<prefix>/v1/dev/<id>/down`` (its commands),

and nothing else, so one device cannot publish as another (Mosquitto
answers PUBACK 0x87 "not authorized" and drops the message).

A device in quarantine (``MqttAccountRow.quarantined_until``, hub/db/quarantine.py)
is left out of both files: after the reload the broker closes its connection and
refuses its logins, so its agent keeps its events in its outbox until the
quarantine ends. Not an ACL denial: Mosquitto 2.0 acknowledges a denied QoS 1
publish (MQTT 5: PUBACK 0x87, which aiomqtt does not report; MQTT 3.1.1: a plain
PUBACK), so an agent would delete events the broker dropped. The hub's own
account reads every uplink and status, writes every downlink, and reads and
writes everything under ``<prefix>/v1/hub/`` (:func:`hub_topics_filter`): the live
bus between its workers (``Topics.live_bus``) and the calls between them, which
no device may touch. The one hub account serves every connection of a hub of
many workers (its partition sessions, bus and calls clients): on the device
listeners as a password login, on the hub's own listener as a client
certificate whose Common Name is that account (mosquitto_conf.HubListener). Anonymous
clients get no topic at all; the generated mosquitto.conf
(:mod:`hub.adapters.mosquitto_conf`) refuses them outright and binds each
client id to its username.

Files are written atomically (a temporary file in the same folder, then
``rename``), so Mosquitto never reads half a file; a SIGHUP (to the pid in
``pid_file``) makes it re-read both. Mosquitto applies a reload to new
connections and to new publishes of connected clients.

Configuration of a running hub (environment):
``CAMPUSHUB_MOSQUITTO_PASSWORD_FILE``, ``CAMPUSHUB_MOSQUITTO_ACL_FILE`` and
optionally ``CAMPUSHUB_MOSQUITTO_PID_FILE``: with the first two set, the hub
rewrites the files (and signals the broker) after every registration,
rotation and revocation made through the web. ``campushub devices
export-mosquitto`` does the same from the command line.
"""
from __future__ import annotations

import os
import re
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import trio

from hub.db import Database
from hub.db.device_registry import MqttAccountRow, with_mqtt_accounts_locked
from hub.domain.credentials import mosquitto_hash
from schemas import Topics

#: What Mosquitto's files can carry unambiguously: no separator, whitespace, wildcard or comment.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
_SAFE_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True)
class HubAccount:
    """The hub's broker login as it goes into the password file."""

    username: str
    password_hash: str

    @classmethod
    def from_password(cls, username: str, password: str) -> "HubAccount":
        return cls(username, mosquitto_hash(password))


@dataclass(frozen=True)
class MosquittoFiles:
    password_file: Path
    acl_file: Path
    #: Mosquitto's pid file: signalled with SIGHUP after writing, when given.
    pid_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "MosquittoFiles | None":
        """The files named by ``CAMPUSHUB_MOSQUITTO_*``; ``None`` unless both files are set."""
        env = os.environ if env is None else env
        passwd, acl = env.get("CAMPUSHUB_MOSQUITTO_PASSWORD_FILE"), env.get("CAMPUSHUB_MOSQUITTO_ACL_FILE")
        if not passwd or not acl:
            return None
        pid = env.get("CAMPUSHUB_MOSQUITTO_PID_FILE")
        return cls(Path(passwd), Path(acl), Path(pid) if pid else None)


def _check_name(what: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} cannot go into Mosquitto's files (letters, digits, _ . @ - only)")
    return value


def _check_prefix(topics: Topics) -> str:
    if not _SAFE_PREFIX.match(topics.prefix):
        raise ValueError(f"topic prefix {topics.prefix!r} cannot go into an ACL (no wildcards or spaces)")
    return topics.prefix


def hub_topics_filter(topics: Topics) -> str:
    """``<prefix>/v1/hub/#``: every topic between the hub's workers (the live bus, worker calls and
    replies), outside ``<prefix>/v1/dev/`` so that no device's ACL lines cover any of it."""
    return f"{topics.prefix}/v1/hub/#"


def render_password_file(accounts: Sequence[MqttAccountRow], hub: HubAccount | None) -> str:
    """``username:$7$...`` lines: the hub first, then every device account."""
    lines = []
    if hub is not None:
        lines.append(f"{_check_name('hub username', hub.username)}:{hub.password_hash}")
    for account in accounts:
        if account.quarantined_until is not None:
            continue  # quarantined: the broker refuses its login until the files are rendered again
        lines.append(f"{_check_name('MQTT username', account.username)}:{account.password_hash}")
    return "\n".join(lines) + ("\n" if lines else "")


def render_acl_file(accounts: Sequence[MqttAccountRow], topics: Topics, hub_username: str | None) -> str:
    """The ACL: the hub's account, then one block per device account."""
    _check_prefix(topics)
    out = ["# Generated by CampusHub from the device registry; edits are overwritten.",
           "# No rules before the first 'user' line: anonymous clients may do nothing.", ""]
    if hub_username is not None:
        any_device = "+"
        out += [
            f"user {_check_name('hub username', hub_username)}",
            f"topic read {topics.uplink(any_device)}",
            f"topic read {topics.status(any_device)}",
            f"topic write {topics.downlink(any_device)}",
            f"topic readwrite {topics.live_bus}",  # also under the line below; named for readers of the file
            f"topic readwrite {hub_topics_filter(topics)}",
            "",
        ]
    for account in accounts:
        _check_name("device id", account.device_id)
        if account.quarantined_until is not None:
            out += [f"# {_check_name('MQTT username', account.username)}: quarantined until "
                    f"{account.quarantined_until.isoformat()} (no login, no topic)", ""]
            continue
        out += [
            f"user {_check_name('MQTT username', account.username)}",
            f"topic write {topics.uplink(account.device_id)}",
            f"topic write {topics.status(account.device_id)}",
            f"topic read {topics.downlink(account.device_id)}",
            "",
        ]
    return "\n".join(out)


def write_atomically(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace ``path`` with ``text`` in one ``rename``: readers see the old file or the new one.

    Synchronous and blocking (call it from trio via ``trio.to_thread.run_sync``).
    ``mode`` 0640: the hashes are not secret enough to need 0600, and a broker
    running as its own user in the file's group must be able to read them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def signal_reload(pid_file: Path) -> bool:
    """SIGHUP the process named in ``pid_file`` (Mosquitto re-reads its password and ACL files).

    Returns False if the file is missing or the process is gone.
    """
    try:
        pid = int(Path(pid_file).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ExportResult:
    devices: int
    reloaded: bool


async def export_mosquitto(
    db: Database, topics: Topics, files: MosquittoFiles, hub: HubAccount | None,
) -> ExportResult:
    """Render both files from the registry, write them atomically, then signal the broker.

    Blocks the calling trio task for one transaction and two small file writes (in a worker thread).
    Raises ``ValueError`` if a name cannot go into the files, ``OSError`` if
    they cannot be written. Calls from any number of hub processes (several
    workers on the broker's machine) are serialised by a transaction advisory
    lock (``MOSQUITTO_FILES_LOCK``) held from the read to the write, so the
    files always end as the newest registry renders them.
    """

    def render_and_write(accounts: list[MqttAccountRow]) -> None:
        # Under the lock (the point of it), in a worker thread: two small files, milliseconds.
        write_atomically(files.password_file, render_password_file(accounts, hub))
        write_atomically(files.acl_file, render_acl_file(accounts, topics, hub.username if hub else None))

    devices = await with_mqtt_accounts_locked(db, render_and_write)
    pid_file = files.pid_file
    reloaded = await trio.to_thread.run_sync(signal_reload, pid_file) if pid_file is not None else False
    return ExportResult(devices, reloaded)


class MosquittoSync:
    """Keeps the broker's files in step with the registry inside a running hub.

    Calls are serialised by a lock so a slower render can never overwrite a
    newer one; each call renders from the registry as it is then. For trio
    tasks of the hub's run; blocks for what :func:`export_mosquitto` does.
    """

    def __init__(self, db: Database, topics: Topics, files: MosquittoFiles, hub: HubAccount | None) -> None:
        self._db, self._topics, self._files, self._hub = db, topics, files, hub
        self._lock = trio.Lock()

    async def sync(self) -> ExportResult:
        async with self._lock:
            return await export_mosquitto(self._db, self._topics, self._files, self._hub)
