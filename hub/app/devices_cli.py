"""``campushub devices``: register, list, rotate, revoke, export-mosquitto (wired into hub/app/cli.py).

Same rules as the web API (hub/db/devices_admin.py stores, hub/domain/
credentials.py generates); the actor recorded is ``cli:<os user>``. A running
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
from typing import Any

from hub.core.config import MqttUrl, Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    devices = sub.add_parser("devices", help="device registry: register, list, rotate, revoke, export-mosquitto")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")

    register = actions.add_parser("register", help="register a device and print its credentials (shown once)")
    register.add_argument("device_id")
    register.add_argument("--room", required=True, help="room id")
    register.add_argument("--kind", required=True, choices=("qr_camera", "fingerprint", "sensor", "edge_agent"))
    register.add_argument("--model", default="", help="model (free text)")
    register.add_argument("--alg", default="hmac-sha256", choices=("hmac-sha256", "ed25519"))
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.environment import with_services
    from hub.db import migrate, run_with_database

    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False, broker=False)

        async def work(db) -> int:
            await migrate(db)
            return await _ACTIONS[args.devices_command](db, args, settings)

        return run_with_database(settings.database_url, work)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _hub_account(args: argparse.Namespace, settings: Settings):
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


async def _sync_broker_files(db, settings: Settings) -> None:
    from hub.adapters.mosquitto_auth import MosquittoFiles, export_mosquitto
    from schemas import Topics

    files = MosquittoFiles.from_env()
    if files is None:
        return
    result = await export_mosquitto(db, Topics(settings.topic_prefix), files, _hub_account(argparse.Namespace(), settings))
    print(f"campushub: broker files rewritten ({result.devices} device accounts"
          f"{', broker reloaded' if result.reloaded else ''})", file=sys.stderr)


def _device_json(row) -> dict:
    return {
        "device_id": row.device_id, "room_id": row.room_id, "kind": row.kind, "model": row.model, "alg": row.alg,
        "mqtt_username": row.mqtt_username, "credential_version": row.credential_version,
        "created_at": row.created_at.isoformat(), "revoked": row.revoked_at is not None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None, "revoked_reason": row.revoked_reason,
    }


async def _print_credentials(db, row, credentials, settings: Settings, as_json: bool) -> None:
    from hub.db.devices_admin import hub_signing_key
    from hub.domain.credentials import edge_agent_toml, new_signing_keys

    hub_public = None
    if credentials.keys.alg == "ed25519":
        candidate = new_signing_keys("ed25519")
        _, hub_public = await hub_signing_key(db, candidate.device_key, candidate.stored_key)
    mqtt_url = str(MqttUrl.parse(settings.mqtt_url)) if settings.mqtt_url else "mqtt://127.0.0.1:1883"
    toml = edge_agent_toml(device_id=row.device_id, room_id=row.room_id, credentials=credentials,
                           mqtt_url=mqtt_url, topic_prefix=settings.topic_prefix, hub_public_key=hub_public)
    if as_json:
        print(json.dumps({
            "device": _device_json(row),
            "credentials": {"alg": credentials.keys.alg, "signing_key": credentials.keys.device_key.hex(),
                            "mqtt_username": credentials.mqtt.username, "mqtt_password": credentials.mqtt.password,
                            "hub_public_key": hub_public.hex() if hub_public else None},
            "edge_agent_toml": toml,
        }, indent=2))
    else:
        print(toml, end="")
        print("campushub: credentials shown once; keep this config secret", file=sys.stderr)


async def _register(db, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db.devices_admin import RegistryError, register_device
    from hub.domain.credentials import new_device_credentials

    credentials = new_device_credentials(args.device_id, args.alg)
    try:
        row = await register_device(
            db, device_id=args.device_id, room_id=args.room, kind=args.kind, model=args.model, alg=args.alg,
            key=credentials.keys.stored_key, mqtt_username=credentials.mqtt.username,
            mqtt_password_hash=credentials.mqtt.password_hash, actor=_actor(),
        )
    except RegistryError as exc:
        print(f"campushub: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    await _sync_broker_files(db, settings)
    await _print_credentials(db, row, credentials, settings, args.json)
    return EXIT_OK


async def _list(db, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db.devices_admin import list_devices_admin

    rows, total = await list_devices_admin(db, 10**6, 0)
    if args.json:
        print(json.dumps({"items": [_device_json(r) for r in rows], "total": total}, indent=2))
        return EXIT_OK
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else f"v{r.credential_version}"
        print(f"{r.device_id:<24} {r.room_id:<12} {r.kind:<12} {r.alg:<12} {state}")
    return EXIT_OK


async def _rotate(db, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db.devices_admin import RegistryError, get_device_admin, rotate_credentials
    from hub.domain.credentials import new_device_credentials

    current = await get_device_admin(db, args.device_id)
    if current is None:
        print(f"campushub: no device {args.device_id!r}", file=sys.stderr)
        return EXIT_FAILURE
    credentials = new_device_credentials(current.mqtt_username or current.device_id, current.alg)
    try:
        row = await rotate_credentials(
            db, args.device_id, key=credentials.keys.stored_key, mqtt_password_hash=credentials.mqtt.password_hash,
            mqtt_username=credentials.mqtt.username, actor=_actor(),
        )
    except RegistryError as exc:
        print(f"campushub: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    await _sync_broker_files(db, settings)
    await _print_credentials(db, row, credentials, settings, args.json)
    return EXIT_OK


async def _revoke(db, args: argparse.Namespace, settings: Settings) -> int:
    from hub.db.devices_admin import RegistryError, revoke_device

    try:
        row = await revoke_device(db, args.device_id, actor=_actor(), reason=args.reason)
    except RegistryError as exc:
        print(f"campushub: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    await _sync_broker_files(db, settings)
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
    return EXIT_OK


_ACTIONS = {"register": _register, "list": _list, "rotate": _rotate, "revoke": _revoke,
            "export-mosquitto": _export}
