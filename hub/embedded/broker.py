"""An embedded MQTT broker for the demo and for tests: Mosquitto if installed, else amqtt.

Mosquitto runs as a child process on 127.0.0.1 with persistence in
``data_dir`` (persistent sessions and their queued messages survive a
restart). Its configuration comes from the caller: ``mosquitto_conf(port)``
returns the whole ``mosquitto.conf``. The composition root (hub/app/environment.py)
passes the project's generated, secure configuration
(``hub.adapters.mosquitto_conf``: no anonymous access, a hub account, the
registry's device accounts, client id bound to username); this package imports
nothing of ours, so it cannot render it itself. Without ``mosquitto_conf`` it
runs an open loopback broker, as the tests' shared local Mosquitto is, for
tests that stand in for that broker. :attr:`EmbeddedBroker.enforces_auth` says
which one runs: it is measured after start (an anonymous CONNECT is refused).
When started as root it stays root (``user root``) instead of dropping to the
``mosquitto`` user, so the files it writes in ``data_dir`` stay ours.

The fallback is amqtt's broker in a child Python process. It enforces no
authentication and no ACL at all (``enforces_auth`` is False whatever the
caller asked for: the hub must report that, see /healthz). It is 4-10x slower
than Mosquitto and speaks MQTT 3.1.1 only (no MQTT 5), so its :attr:`url`
carries ``?protocol=3.1.1``, which every client taking a broker URL (hub,
edge agent, simulator) honours. What amqtt 0.12 does and does not do for us:

- retained messages and the Last Will work;
- a persistent (Clean Session 0) subscriber gets the QoS 1 messages published
  while it was disconnected once it reconnects -- only because our auth
  plugin (``_amqtt_main.OpenAuthPlugin``) admits clients as named, not
  anonymous: amqtt drops an anonymous client's session on disconnect;
- sessions live in memory only (its persistence plugin needs SQLAlchemy,
  which we do not install): a broker restart forgets them and their queues;
- it does NOT redeliver a QoS 1 message it sent but that was not PUBACKed:
  it forgets the message when the connection drops, or when the PUBACK takes
  longer than 5 s (hard-coded). A hub crash, or a hub stalled (database
  outage, full inbound channel) for over 5 s, loses those messages. The demo
  can live with that; production uses Mosquitto (or any MQTT 5 broker);
- quirks we tolerate: it delivers at the subscription's QoS (a QoS 0 publish
  arrives as QoS 1), and hands every connecting client the retained messages
  matching *anyone's* subscriptions (so retained statuses can arrive twice,
  or unasked; status handling is idempotent).

Layout of ``data_dir``::

    mosquitto.conf / amqtt.json   generated config
    mosquitto.db                  Mosquitto's persistence file
    broker.log                    the broker's stdout/stderr
    broker.port                   the port of the last run, reused when free
    broker.pid                    pid of the broker we started (orphan cleanup)
    broker.lock                   flock held while a process owns the broker

Concurrency contract: synchronous and blocking (start ~20-50 ms for
Mosquitto, ~0.5-1 s for amqtt; stop up to ``timeout``); call from trio with
``trio.to_thread.run_sync``. A broker that fails to come up is killed before
the error propagates.
"""
from __future__ import annotations

import atexit
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Callable

from ._common import DirLock, EmbeddedServiceError, choose_port, process_alive, tail, wait_until
from .probe import _connect_packet, _recv_exactly, probe_mqtt

_HOST = "127.0.0.1"
# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
_MOSQUITTO_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin")


@dataclass(eq=False)
class EmbeddedBroker:
    """A running embedded broker. Use as a context manager or call :meth:`stop`."""

    data_dir: Path
    #: "mosquitto" or "amqtt".
    kind: str
    port: int
    #: ``mqtt://127.0.0.1:PORT`` (no credentials: the caller owns the accounts);
    #: amqtt: ``mqtt://127.0.0.1:PORT?protocol=3.1.1``
    url: str
    #: False if an anonymous client can connect (amqtt always; Mosquitto without a secure config).
    enforces_auth: bool
    _process: subprocess.Popen[bytes] = field(repr=False)
    _log: IO[bytes] = field(repr=False)
    _lock: DirLock | None = field(repr=False)

    @property
    def host(self) -> str:
        return _HOST

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker gracefully (SIGTERM: Mosquitto saves its persistence file), else kill it.

        Idempotent. Blocks until the process has exited.
        """
        if self._lock is None:
            return
        try:
            _terminate(self._process, timeout)
        finally:
            (self.data_dir / "broker.pid").unlink(missing_ok=True)
            self._log.close()
            atexit.unregister(self.stop)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "EmbeddedBroker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def mosquitto_path() -> str | None:
    """The ``mosquitto`` executable, or ``None`` if it is not installed."""
    found = shutil.which("mosquitto")
    if found is None:
        extra = os.pathsep.join(_MOSQUITTO_EXTRA_DIRS)
        found = shutil.which("mosquitto", path=extra)
    return found


def mqtt_broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if an MQTT broker at host:port answers an anonymous CONNECT with any CONNACK.

    A refusal ("not authorized") counts: it proves the broker is up without
    logging in. Readiness checks must not log in as the hub: under
    ``use_username_as_clientid`` a clean-session CONNECT with the hub's account
    would take over, and discard, the hub's persistent session. Blocking, at most
    about ``timeout`` seconds; never raises for an unreachable broker.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_connect_packet(None, None))
            connack = _recv_exactly(sock, 4)
            if connack[0] == 0x20 and connack[3] == 0x00:
                sock.sendall(b"\xe0\x00")  # accepted (an open broker): DISCONNECT
            return connack[0] == 0x20
    except OSError:
        return False


def start_embedded_broker(
    data_dir: Path,
    port: int | None = None,
    *,
    prefer_mosquitto: bool = True,
    timeout: float = 10.0,
    mosquitto_conf: Callable[[int], str] | None = None,
) -> EmbeddedBroker:
    """Start a broker on 127.0.0.1 and return once it answers MQTT.

    Mosquitto if ``prefer_mosquitto`` and it is installed, else amqtt.
    ``mosquitto_conf(port)``: the whole mosquitto.conf for Mosquitto listening on
    127.0.0.1:``port`` (see the module docstring); ignored by amqtt.
    ``port`` defaults to the previous run's port if free, else any free port
    (retried on another port if it is taken before the broker binds it).
    Raises :class:`EmbeddedServiceError` with the broker log's tail if it does
    not come up within ``timeout``, or if another process owns ``data_dir``.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = DirLock(data_dir / "broker.lock", "embedded broker")
    try:
        _kill_orphan(data_dir)
        mosquitto = mosquitto_path() if prefer_mosquitto else None
        kind = "mosquitto" if mosquitto else "amqtt"
        remembered = data_dir / "broker.port"
        log_path = data_dir / "broker.log"
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            chosen = choose_port(_HOST, remembered, port)
            if mosquitto:
                command = [mosquitto, "-c", str(_write_mosquitto_config(data_dir, chosen, mosquitto_conf))]
            else:
                config = _write_amqtt_config(data_dir, chosen)
                command = [sys.executable, str(Path(__file__).with_name("_amqtt_main.py")), str(config)]
            log = open(log_path, "ab")
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=data_dir,
                # Own session: a Ctrl-C meant for the demo must not kill the
                # broker before the hub has shut down over it.
                start_new_session=True,
            )
            (data_dir / "broker.pid").write_text(f"{process.pid}\n")
            try:
                wait_until(
                    # A real CONNECT/CONNACK (amqtt accepts TCP before it can serve), anonymous:
                    # a refusal counts, and no account's session is touched.
                    partial(mqtt_broker_answers, _HOST, chosen, timeout=0.5),
                    failed=partial(_exit_report, process, log_path),
                    timeout=timeout,
                    what=f"embedded {kind} broker on {_HOST}:{chosen}",
                )
                break
            except BaseException as exc:
                _terminate(process, 2.0)
                log.close()
                (data_dir / "broker.pid").unlink(missing_ok=True)
                remembered.unlink(missing_ok=True)
                # Retry (on another free port) only our own failures, e.g. a port taken meanwhile.
                if attempt == attempts - 1 or not isinstance(exc, EmbeddedServiceError):
                    raise
        remembered.write_text(f"{chosen}\n")
    except BaseException:
        lock.release()
        raise
    # amqtt refuses MQTT 5 CONNECTs ("Unsupported protocol version"): the URL
    # tells every client to speak 3.1.1 to it.
    url = f"mqtt://{_HOST}:{chosen}" + ("" if mosquitto else "?protocol=3.1.1")
    enforces_auth = bool(mosquitto) and not probe_mqtt(_HOST, chosen, timeout=2.0)
    broker = EmbeddedBroker(data_dir, kind, chosen, url, enforces_auth, process, log, lock)
    atexit.register(broker.stop)
    return broker


def _write_mosquitto_config(data_dir: Path, port: int, render: Callable[[int], str] | None) -> Path:
    path = data_dir / "mosquitto.conf"
    path.write_text(render(port) if render is not None else _open_mosquitto_config(data_dir, port))
    return path


def _open_mosquitto_config(data_dir: Path, port: int) -> str:
    """An anonymous loopback broker: only for tests standing in for the shared local Mosquitto."""
    return (
        "# Generated by hub.embedded.broker on every start; edits are lost.\n"
        "# OPEN broker (anonymous, no ACL) on loopback: the demo passes the secure generated config.\n"
        f"listener {port} {_HOST}\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {data_dir}/\n"
        "persistence_file mosquitto.db\n"
        # Saved on clean shutdown anyway; this bounds what a crash loses.
        "autosave_interval 30\n"
        # As the generated config (hub.adapters.mosquitto_conf.QueueLimits): the default
        # count limit (1000) would drop messages queued for an offline hub; bound bytes instead.
        "max_queued_messages 0\n"
        "max_queued_bytes 268435456\n"
        # As root, stay root rather than drop to `mosquitto`, which could not write data_dir.
        f"user {getpass.getuser()}\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
    )


def _write_amqtt_config(data_dir: Path, port: int) -> Path:
    path = data_dir / "amqtt.json"
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{_HOST}:{port}"}},
        # Not amqtt's AnonymousAuthPlugin: it marks every client anonymous, and
        # amqtt neither queues messages for an anonymous offline session nor
        # keeps it, which would void the hub's persistent session. This one
        # (defined in the child's script, hence __main__) admits everyone as
        # a named client; the broker listens on loopback only.
        "plugins": {"__main__.OpenAuthPlugin": {}},
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def _kill_orphan(data_dir: Path) -> None:
    """Stop a broker left running by a previous owner of ``data_dir`` that was killed.

    Called with the dir lock held, so whoever started it is gone. The pid is
    only trusted if that process's command line names a config in ``data_dir``.
    """
    pid_file = data_dir / "broker.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if str(data_dir) in cmdline:
        try:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not process_alive(pid), timeout=5.0, what="orphan broker")
        except EmbeddedServiceError:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)


def _exit_report(process: subprocess.Popen[bytes], log_path: Path) -> str | None:
    """None while ``process`` runs; once it exited, its status and the tail of its log."""
    if process.poll() is None:
        return None
    return f"exited with status {process.returncode}\n--- {log_path} ---\n{tail(log_path)}"


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
