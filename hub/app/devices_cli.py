"""``campushub devices``: register, list, rotate, revoke, export-mosquitto (wired into hub/app/cli.py).

The same use case as the web API (hub/db/provisioning.py: the registry's
rules, credentials, the edge-agent config); the actor recorded is
``cli:<os user>``. Refused input exits 2, a refused change (unknown or
revoked device, id taken) exits 1. A running
hub learns of a CLI change without being told: a new id is loaded when it
first speaks, a rotated key on the first signature that fails with the old
one, and a revocation within 30 s (the ingress' registry refresh). With
``CAMPUSHUB_MOSQUITTO_PASSWORD_FILE`` / ``_ACL_FILE`` set, every change also
rewrites the broker's files (and signals ``CAMPUSHUB_MOSQUITTO_PID_FILE``).
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from hub.core.config import MqttUrl, Settings

if TYPE_CHECKING:  # the actions import these lazily: `campushub --help` stays fast
    from hub.adapters.mosquitto_auth import HubAccount
    from hub.db import Database
    from hub.db.provisioning import DeviceRegistryRow, DevicesChanged, EdgeAgentSetup, IssuedCredentials, RegistryError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    devices = sub.add_parser("devices", help="device registry: register, list, rotate, revoke, export-mosquitto")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")

    register = actions.add_parser("register", help="register a device and print its credentials (shown once)")
    register.add_argument("device_id")
    register.add_argument("--room", required=True, help="room id")
    # Kinds and algorithms are checked by the use case (hub/db/provisioning.py), their one home:
    # importing it here would slow every `campushub` start. A wrong one exits 2 with the list.
    register.add_argument("--kind", required=True, help="qr_camera, fingerprint, sensor, edge_agent, ...")
    register.add_argument("--model", default="", help="model (free text)")
    register.add_argument("--alg", default="hmac-sha256", help="hmac-sha256 (default) or ed25519")
    register.add_argument("--json", action="store_true", help="print JSON instead of the edge-agent config")

    listing = actions.add_parser("list", help="list registered devices")
    listing.add_argument("--json", action="store_true", help="print JSON")

    rotate = actions.add_parser("rotate", help="new key and broker password; the old ones stop working")
    rotate.add_argument("device_id")
    rotate.add_argument("--json", action="store_true", help="print JSON instead of the edge-agent config")

    revoke = actions.add_parser("revoke", help="revoke a device for good")
    revoke.add_argument("device_id")
    revoke.add_argument("--reason", default="", help="why (kept with the device)")

    export = actions.add_parser("export-mosquitto", help="write Mosquitto's password and ACL files from the registry")
    export.add_argument("--passwd", required=True, type=Path, metavar="FILE", help="password_file to write")
    export.add_argument("--acl", required=True, type=Path, metavar="FILE", help="acl_file to write")
    export.add_argument("--pid-file", type=Path, metavar="FILE", help="Mosquitto's pid file: SIGHUP it to reload")
    export.add_argument("--hub-username", help="the hub's broker login (default: from CAMPUSHUB_MQTT_URL)")
    export.add_argument("--hub-password", help="the hub's broker password (default: from CAMPUSHUB_MQTT_URL)")
    conf = export.add_argument_group("mosquitto.conf (hub/adapters/mosquitto_conf.py; written only with --conf)")
    conf.add_argument("--conf", type=Path, metavar="FILE", help="also write the whole mosquitto.conf")
    conf.add_argument("--port", type=int, default=1883, help="plain MQTT listener (default 1883)")
    conf.add_argument("--bind", metavar="ADDRESS", help="listen on this address only (default: every interface)")
    conf.add_argument("--tls-port", type=int, default=8883, help="TLS listener, with --cafile etc. (default 8883)")
    conf.add_argument("--cafile", type=Path, help="CA that signed the broker's (and devices') certificates")
    conf.add_argument("--certfile", type=Path, help="the broker's certificate")
    conf.add_argument("--keyfile", type=Path, help="the broker's private key")
    conf.add_argument("--require-certificate", action="store_true",
                      help="TLS clients must present a certificate; its CN is their username")
    conf.add_argument("--persistence-dir", type=Path, metavar="DIR", help="keep sessions on disk here")
    conf.add_argument("--run-as-user", metavar="USER", help="the user Mosquitto drops root privileges to")
    from hub.adapters.mosquitto_conf import QueueLimits

    for name in ("max-queued-messages", "max-queued-bytes", "max-inflight-messages", "max-inflight-bytes"):
        default = getattr(QueueLimits(), name.replace("-", "_"))
        conf.add_argument(f"--{name}", type=int, default=default,
                          help=f"0 = unlimited (default {default}, measured: see QueueLimits)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.environment import with_services
    from hub.db import migrate, run_with_database

    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)
        database_url = settings.database_url
        assert database_url is not None  # with_services raised otherwise

        async def work(db: Database) -> int:
            await migrate(db)
            return await _ACTIONS[args.devices_command](db, args, settings)

        return run_with_database(database_url, work)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _hub_account(args: argparse.Namespace, settings: Settings) -> HubAccount | None:
    from hub.adapters.mosquitto_auth import HubAccount

    username = getattr(args, "hub_username", None)
    password = getattr(args, "hub_password", None)
    if username is None and settings.mqtt_url:
        url = MqttUrl.parse(settings.mqtt_url)
        username, password = url.username, password if password is not None else url.password
    if username is None:
        print("campushub: no hub account (set --hub-username/--hub-password or credentials in CAMPUSHUB_MQTT_URL);"
              " the hub will not be able to log in to a broker using these files", file=sys.stderr)
        return None
    return HubAccount.from_password(username, password or "")


def _broker_files_sync(db: Database, settings: Settings) -> DevicesChanged:
    """The CLI's ``devices_changed``: rewrite the broker's files when CAMPUSHUB_MOSQUITTO_* name them.

    A running hub is not told (it may be on another machine): see the module docstring.
    """
    from hub.adapters.mosquitto_auth import MosquittoFiles, export_mosquitto
    from schemas import Topics

    async def devices_changed(device_ids: Sequence[str]) -> None:
        files = MosquittoFiles.from_env()
        if files is None:
            return
        result = await export_mosquitto(db, Topics(settings.topic_prefix), files,
                                        _hub_account(argparse.Namespace(), settings))
        print(f"campushub: broker files rewritten ({result.devices} device accounts"
              f"{', broker reloaded' if result.reloaded else ''})", file=sys.stderr)

    return devices_changed


def _edge_agent_setup(settings: Settings) -> EdgeAgentSetup:
    from hub.db.provisioning import EdgeAgentSetup

    # str(MqttUrl) leaves the hub's own credentials out of a device's config.
    mqtt_url = str(MqttUrl.parse(settings.mqtt_url)) if settings.mqtt_url else "mqtt://127.0.0.1:1883"
    return EdgeAgentSetup(mqtt_url, settings.topic_prefix)


def _refused(exc: RegistryError) -> int:
    print(f"campushub: {exc.message}", file=sys.stderr)
    return EXIT_USAGE if exc.code == "invalid_request" else EXIT_FAILURE


def _device_json(row: DeviceRegistryRow) -> dict[str, Any]:
    return {
        "device_id": row.device_id, "room_id": row.room_id, "kind": row.kind, "model": row.model, "alg": row.alg,
        "mqtt_username": row.mqtt_username, "credential_version": row.credential_version,
        "created_at": row.created_at.isoformat(), "revoked": row.revoked_at is not None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None, "revoked_reason": row.revoked_reason,
    }


def _print_credentials(issued: IssuedCredentials, as_json: bool) -> None:
    if as_json:
        credentials, hub_public = issued.credentials, issued.hub_public_key
        print(json.dumps({
            "device": _device_json(issued.device),
            "credentials": {"alg": credentials.keys.alg, "signing_key": credentials.keys.device_key.hex(),
                            "mqtt_username": credentials.mqtt.username, "mqtt_password": credentials.mqtt.password,
                            "hub_public_key": hub_public.hex() if hub_public else None},
            "edge_agent_toml": issued.edge_agent_toml,
        }, indent=2))
    else:
        print(issued.edge_agent_toml, end="")
        print("campushub: credentials shown once; keep this config secret", file=sys.stderr)


async def _register(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db import provisioning
    from hub.db.provisioning import RegistryError

    try:
        issued = await provisioning.register(
            db, device_id=args.device_id, room_id=args.room, kind=args.kind, model=args.model, alg=args.alg,
            actor=_actor(), setup=_edge_agent_setup(settings), devices_changed=_broker_files_sync(db, settings),
        )
    except RegistryError as exc:
        return _refused(exc)
    _print_credentials(issued, args.json)
    return EXIT_OK


async def _list(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db.provisioning import list_registered_devices

    rows, total = await list_registered_devices(db, 10**6, 0)
    if args.json:
        print(json.dumps({"items": [_device_json(r) for r in rows], "total": total}, indent=2))
        return EXIT_OK
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else f"v{r.credential_version}"
        print(f"{r.device_id:<24} {r.room_id:<12} {r.kind:<12} {r.alg:<12} {state}")
    return EXIT_OK


async def _rotate(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db import provisioning
    from hub.db.provisioning import RegistryError

    try:
        issued = await provisioning.rotate(db, args.device_id, actor=_actor(), setup=_edge_agent_setup(settings),
                                           devices_changed=_broker_files_sync(db, settings))
    except RegistryError as exc:
        return _refused(exc)
    _print_credentials(issued, args.json)
    return EXIT_OK


async def _revoke(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db import provisioning
    from hub.db.provisioning import RegistryError

    try:
        row = await provisioning.revoke(db, args.device_id, actor=_actor(), reason=args.reason,
                                        devices_changed=_broker_files_sync(db, settings))
    except RegistryError as exc:
        return _refused(exc)
    assert row.revoked_at is not None  # revoke returns the revoked row
    print(f"revoked {row.device_id} at {row.revoked_at.isoformat()}")
    return EXIT_OK


async def _export(db, args: argparse.Namespace, settings: Settings) -> int:
    from hub.adapters.mosquitto_auth import MosquittoFiles, export_mosquitto
    from schemas import Topics

    files = MosquittoFiles(args.passwd, args.acl, args.pid_file)
    try:
        result = await export_mosquitto(db, Topics(settings.topic_prefix), files, _hub_account(args, settings))
    except (OSError, ValueError) as exc:
        print(f"campushub: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {args.passwd} and {args.acl}: {result.devices} device accounts"
          + ("; broker reloaded" if result.reloaded else ""))
    if args.conf is not None:
        try:
            _write_conf(args)
        except (OSError, ValueError) as exc:
            print(f"campushub: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"wrote {args.conf}")
    return EXIT_OK


def _write_conf(args: argparse.Namespace) -> None:
    """``--conf``: the generated mosquitto.conf naming the files just written (absolute paths)."""
    from hub.adapters.mosquitto_auth import write_atomically
    from hub.adapters.mosquitto_conf import BrokerTls, QueueLimits, render_mosquitto_conf

    tls_files = (args.cafile, args.certfile, args.keyfile)
    if any(tls_files) and not all(tls_files):
        raise ValueError("a TLS listener needs --cafile, --certfile and --keyfile")
    if args.require_certificate and not all(tls_files):
        raise ValueError("--require-certificate needs a TLS listener (--cafile, --certfile, --keyfile)")
    tls = (BrokerTls(args.cafile.absolute(), args.certfile.absolute(), args.keyfile.absolute(),
                     args.require_certificate) if all(tls_files) else None)
    text = render_mosquitto_conf(
        password_file=args.passwd.absolute(), acl_file=args.acl.absolute(), port=args.port,
        bind_address=args.bind, tls=tls, tls_port=args.tls_port,
        queue=QueueLimits(args.max_queued_messages, args.max_queued_bytes,
                          args.max_inflight_messages, args.max_inflight_bytes),
        persistence_dir=args.persistence_dir.absolute() if args.persistence_dir else None,
        run_as_user=args.run_as_user)
    write_atomically(args.conf, text, mode=0o644)


_ACTIONS = {"register": _register, "list": _list, "rotate": _rotate, "revoke": _revoke,
            "export-mosquitto": _export}
