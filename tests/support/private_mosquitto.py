"""A private Mosquitto for tests, started from the configuration the project generates.

``start_private_mosquitto(directory, ...)`` writes ``mosquitto.conf`` with
``hub.adapters.mosquitto_conf.render_mosquitto_conf`` (auth, ACL, client id bound
to username, packet size limit, optional TLS listener) and starts
``/usr/sbin/mosquitto`` on free loopback ports. Accounts:

- ``hub``: the hub's login (default :data:`HUB_LOGIN`), always written;
- ``devices``: explicit device logins, rendered into the password and ACL
  files here; or ``accounts_from_registry=True``: the caller has already written
  ``broker.files`` with ``export_mosquitto`` (the registry's accounts) and the
  helper leaves them as they are.

Use as a context manager (stops the broker), or call :meth:`PrivateMosquitto.stop`.
Blocking and synchronous (start ~50 ms); from trio use ``trio.to_thread.run_sync``.
Skip tests when :func:`mosquitto_available` is false.
"""
from __future__ import annotations

import getpass
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

from hub.adapters.mosquitto_auth import (
    HubAccount,
    MosquittoFiles,
    render_acl_file,
    render_password_file,
    write_atomically,
)
from hub.adapters.mosquitto_conf import BrokerTls, render_mosquitto_conf
from hub.db.device_registry import MqttAccountRow
from hub.domain.credentials import mosquitto_hash
from hub.embedded._common import choose_port, free_port, tcp_accepts, wait_until
from hub.embedded.broker import mosquitto_path, mqtt_broker_answers
from schemas import Topics

HOST = "127.0.0.1"


@dataclass(frozen=True)
class BrokerLogin:
    """A username and password; for a device, ``device_id`` names its topics (defaults to the username)."""

    username: str
    password: str
    device_id: str | None = None


#: The hub's account in private brokers unless a test gives another.
HUB_LOGIN = BrokerLogin("campushub-hub", "hub-password-for-tests")


def mosquitto_available() -> bool:
    return mosquitto_path() is not None


class PrivateMosquitto:
    """A running private Mosquitto. ``files`` are the password/ACL/pid files it reads."""

    def __init__(self, directory: Path, files: MosquittoFiles, config: Path, port: int,
                 tls_port: int | None) -> None:
        self.directory, self.files, self.config = directory, files, config
        self.port, self.tls_port = port, tls_port
        self._log_path = directory / "broker.log"
        self._log = open(self._log_path, "ab")
        binary = mosquitto_path()
        assert binary is not None, "mosquitto is not installed"
        self.process = subprocess.Popen([binary, "-c", str(config)], stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        assert files.pid_file is not None
        files.pid_file.write_text(f"{self.process.pid}\n")
        try:
            # An anonymous CONNECT that is refused proves the broker is up without touching a session.
            wait_until(lambda: mqtt_broker_answers(HOST, port, 0.5)
                       and (tls_port is None or tcp_accepts(HOST, tls_port, 0.5)),
                       failed=lambda: None if self.process.poll() is None
                       else f"mosquitto exited:\n{self.log_text()}",
                       timeout=10, what="private mosquitto")
        except BaseException:
            self.stop()
            raise

    def url(self, username: str, password: str, *, tls: bool = False) -> str:
        """``mqtt://user:password@127.0.0.1:port``, or ``mqtts://`` on the TLS port."""
        if tls and self.tls_port is None:
            raise ValueError("this broker has no TLS listener")
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{HOST}:{port}"

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password and ACL files (and the reloadable options)."""
        self.process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Idempotent; blocks until the broker has exited."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> "PrivateMosquitto":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def broker_files(directory: Path) -> MosquittoFiles:
    """Where a private broker in ``directory`` reads its accounts (for ``export_mosquitto`` first)."""
    return MosquittoFiles(directory / "passwd", directory / "acl", directory / "mosquitto.pid")


def write_accounts(files: MosquittoFiles, topics: Topics, hub: BrokerLogin | None,
                   devices: Sequence[BrokerLogin] = ()) -> None:
    """Render explicit accounts into the password and ACL files (what ``export_mosquitto`` does from the registry)."""
    rows = [MqttAccountRow(d.device_id or d.username, d.username, mosquitto_hash(d.password, iterations=1000))
            for d in devices]
    account = HubAccount(hub.username, mosquitto_hash(hub.password, iterations=1000)) if hub else None
    write_atomically(files.password_file, render_password_file(rows, account))
    write_atomically(files.acl_file, render_acl_file(rows, topics, hub.username if hub else None))


def unbind_client_ids(conf_text: str) -> str:
    """A rendered config without the client id bound to the username (an ``edit_conf``/``mosquitto_conf`` edit).

    For brokers that serve a whole test run under one account: it publishes as many devices under many
    client ids. The binding itself is tested on its own (tests/hub/test_mosquitto_acl.py).
    """
    return conf_text.replace("use_username_as_clientid true\n", "")


def run_account_files(directory: Path, login: BrokerLogin) -> tuple[MosquittoFiles, BrokerTls]:
    """Files for a secure broker serving a whole test run: a CA and a server certificate for 127.0.0.1
    (``trustme``; the CA is ``BrokerTls.cafile``) and one account, ``login``, allowed every topic.

    Blocking; ``directory`` is created. The broker reads ``broker_files(directory / "broker")``.
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(HOST)
    tls = BrokerTls(directory / "ca.pem", directory / "broker.crt", directory / "broker.key")
    ca.cert_pem.write_to_path(str(tls.cafile))
    server.cert_chain_pems[0].write_to_path(str(tls.certfile))
    server.private_key_pem.write_to_path(str(tls.keyfile))
    files = broker_files(directory / "broker")
    files.password_file.parent.mkdir(exist_ok=True)
    write_accounts(files, Topics(), login)
    write_atomically(files.acl_file, f"user {login.username}\ntopic readwrite #\n")
    return files, tls


def start_private_mosquitto(
    directory: Path,
    *,
    hub: BrokerLogin = HUB_LOGIN,
    devices: Sequence[BrokerLogin] = (),
    topics: Topics | None = None,
    accounts_from_registry: bool = False,
    tls: BrokerTls | None = None,
    edit_conf: Callable[[str], str] | None = None,
    **conf_overrides: Any,
) -> PrivateMosquitto:
    """Write the generated config (``conf_overrides`` go to ``render_mosquitto_conf``) and start Mosquitto.

    ``edit_conf`` changes the rendered text before it is written: only for tests that
    measure what a setting of the generated config protects against (run without it).
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    files = broker_files(directory)
    if not accounts_from_registry:
        write_accounts(files, topics or Topics(), hub, devices)
    port = choose_port(HOST, directory / "port", conf_overrides.pop("port", None))
    tls_port = conf_overrides.pop("tls_port", None) or (free_port(HOST) if tls else None)
    conf_overrides.setdefault("run_as_user", getpass.getuser())  # as root: stay root, read our 0640 files
    conf_overrides.setdefault("bind_address", HOST)
    config = directory / "mosquitto.conf"
    text = render_mosquitto_conf(password_file=files.password_file, acl_file=files.acl_file, port=port,
                                 tls=tls, tls_port=tls_port or 8883, **conf_overrides)
    config.write_text(edit_conf(text) if edit_conf else text)
    (directory / "port").write_text(f"{port}\n")
    return PrivateMosquitto(directory, files, config, port, tls_port)
