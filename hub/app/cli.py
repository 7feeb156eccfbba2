"""``campushub``: the command line. Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 130 interrupted."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import trio

from hub.app.environment import sync_broker_accounts, with_services
from hub.core.config import MqttUrl, Settings
from hub.core.log_format import configure_logging

if TYPE_CHECKING:
    from hub.app.demo_access import DemoAddress
    from hub.app.supervision import Hub
    from hub.core.campus import Campus, LiveSession

log = logging.getLogger("campushub")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_ROOMS, DEMO_STUDENTS = 4, 60
#: How often the demo tops up its class loop (it keeps hub.db.seed.class_loop.AHEAD filled).
CLASS_LOOP_EVERY_S = 300


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campushub",
        description="CampusHub: classroom edge devices -> MQTT -> supervised actors -> PostgreSQL -> live web app.",
        epilog="Configuration: CAMPUSHUB_DATABASE_URL, CAMPUSHUB_MQTT_URL, CAMPUSHUB_TOPIC_PREFIX, "
               "CAMPUSHUB_DATA_DIR, CAMPUSHUB_JWT_SECRET (see README).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="start everything (embedded services if none configured), seed, simulate")
    demo.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    demo.add_argument("--rooms", type=int, default=DEMO_ROOMS, help=f"rooms with a live session (default {DEMO_ROOMS})")
    demo.add_argument("--students", type=int, default=DEMO_STUDENTS, help=f"students (default {DEMO_STUDENTS})")
    demo.add_argument("--no-simulator", action="store_true", help="do not start the traffic simulator")
    where = demo.add_mutually_exclusive_group()
    where.add_argument("--host", help="web bind address (default 127.0.0.1; 0.0.0.0: every interface, so phones "
                                      "on the network can follow the projector's QR code)")
    where.add_argument("--lan", action="store_true", help="listen on this machine's LAN address and show it")

    serve = sub.add_parser("serve", help="run the hub (MQTT ingress, actors, web)")
    serve.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    serve.add_argument("--host", default="127.0.0.1", help="web bind address (default 127.0.0.1)")
    serve.add_argument("--certfile", type=Path, metavar="FILE",
                       help="PEM certificate chain: serve HTTPS only, with Secure cookies and HSTS "
                            "(or CAMPUSHUB_TLS_CERT; needs --keyfile)")
    serve.add_argument("--keyfile", type=Path, metavar="FILE",
                       help="PEM private key of --certfile (or CAMPUSHUB_TLS_KEY)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="run N worker processes sharing the web port and the load, partitioned by room "
                            "(CAMPUSHUB_PARTITIONS, default 16; docs/scaling.md)")
    # A worker of `serve --workers`: the web port's socket, inherited from the parent.
    serve.add_argument("--worker-socket-fd", type=int, help=argparse.SUPPRESS)

    sub.add_parser("migrate", help="apply database migrations")

    edge = sub.add_parser("edge-agent", help="run a classroom edge agent", add_help=False)
    edge.add_argument("args", nargs=argparse.REMAINDER, help="edge agent arguments (--config FILE)")

    sim = sub.add_parser("simulate", help="seed a campus if absent and drive traffic through real edge agents")
    sim.add_argument("--rooms", type=int, required=True, help="rooms, each with a live session and an edge agent")
    sim.add_argument("--students", type=int, required=True, help="students")
    sim.add_argument("--duration", type=float, required=True, metavar="SECONDS", help="how long to run")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--json", action="store_true", help="print the counts as JSON on stdout")
    sim.add_argument("--loop", action="store_true",
                     help="the campus day on a loop: follow the classes coming up, drop one device now and then")

    from hub.app.devices_cli import add_parser as add_devices_parser

    add_devices_parser(sub)
    from hub.app.audit_cli import add_parser as add_audit_parser

    add_audit_parser(sub)
    from hub.app.users_cli import add_parser as add_users_parser

    add_users_parser(sub)
    from hub.app.retention_cli import add_parser as add_retention_parser

    add_retention_parser(sub)
    from hub.app.backup_cli import add_parser as add_backup_parser

    add_backup_parser(sub)
    from hub.app.keys_cli import add_parser as add_keys_parser

    add_keys_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["edge-agent"]:
        from edge_agent.cli import main as edge_main

        return edge_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    # Escapes control characters in every message: wire data cannot forge a log line (hub/core/log_format.py).
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, sys.stderr)
    try:
        settings = Settings.from_env()  # ValueError on a malformed variable: a usage error, not a traceback
        if settings.mqtt_url:
            MqttUrl.parse(settings.mqtt_url)
        handler = {"demo": _demo, "serve": _serve, "migrate": _migrate, "simulate": _simulate,
                   "devices": _devices, "audit": _audit, "users": _users, "retention": _retention,
                   "backup": _backup, "restore": _restore, "keys": _keys}[args.command]
        return handler(args, settings)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ValueError as exc:
        print(f"campushub: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _until_signalled(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("\ncampushub: stopping ...", file=sys.stderr)
            cancel_scope.cancel()
            return


# --- commands ---------------------------------------------------------------

def _devices(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.devices_cli import run

    return run(args, settings)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.audit_cli import run

    return run(args, settings)


def _users(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.users_cli import run

    return run(args, settings)


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.retention_cli import run

    return run(args, settings)


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.backup_cli import run_backup

    return run_backup(args, settings)


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.backup_cli import run_restore

    return run_restore(args, settings)


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.keys_cli import run

    return run(args, settings)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from hub.core.secrets_box import load_campus_key
    from hub.db import Database, Migration, available_migrations, migrate, run_with_database
    from hub.db.sealed_secrets import ensure_campus_key_fits, seal_pending

    async def migrate_and_seal(db: Database) -> tuple[list[Migration], dict[str, int]]:
        # Then the plaintext secrets older rows hold are sealed with the campus key (SQL has no key).
        applied = await migrate(db)
        await ensure_campus_key_fits(db)
        return applied, await seal_pending(db)

    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=True, broker=False)
        assert settings.database_url is not None  # with_services fills it in or raises
        applied, sealed = run_with_database(settings.database_url, migrate_and_seal, secrets=load_campus_key(settings))
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    for column, rows in sealed.items():
        if rows:
            print(f"sealed {rows} plaintext secret(s) of {column} with the campus key")
    print(f"schema at version {available_migrations()[-1].version:04d} ({len(applied)} applied now)")
    return EXIT_OK


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.supervision import run_hub

    if args.certfile or args.keyfile:
        settings = dataclasses.replace(settings, tls_cert=args.certfile, tls_key=args.keyfile)  # ValueError if one
    for pem in (settings.tls_cert, settings.tls_key):
        if pem is not None and not pem.is_file():
            raise ValueError(f"TLS file not found: {pem}")
    scheme = "https" if settings.tls else "http"
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=True)
        if args.workers is not None:
            return _serve_workers(args, settings, scheme)
        worker_fd = args.worker_socket_fd

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_signalled, nursery.cancel_scope)
                hub = await nursery.start(lambda task_status: run_hub(
                    settings, host=args.host, port=args.port, web_socket_fd=worker_fd, task_status=task_status))
                if worker_fd is None:
                    print(f"campushub: serving {scheme}://{args.host}:{hub.web_port}/", file=sys.stderr)

        return _run_hub_program(run)


def _serve_workers(args: argparse.Namespace, settings: Settings, scheme: str) -> int:
    """``serve --workers N``: the parent of N workers (hub/app/workers.py)."""
    from hub.app.supervision import load_jwt_secret
    from hub.app.workers import DEFAULT_PARTITIONS, listening_socket, plan_workers, run_workers
    from hub.core.secrets_box import load_campus_key

    assert settings.database_url and settings.mqtt_url  # with_services filled them in
    # Created here, once, before any worker could race to create its own.
    load_campus_key(settings)
    load_jwt_secret(settings)
    arguments = ["--host", args.host]
    for option, value in (("--certfile", settings.tls_cert), ("--keyfile", settings.tls_key)):
        if value is not None:
            arguments += [option, str(value)]
    plan = plan_workers(args.workers, database_url=settings.database_url, mqtt_url=settings.mqtt_url,
                        partitions=settings.partitions or DEFAULT_PARTITIONS, data_dir=settings.data_dir,
                        arguments=arguments)
    with listening_socket(args.host, args.port) as sock:
        port = sock.getsockname()[1]
        print(f"campushub: serving {scheme}://{args.host}:{port}/ with {plan.count} workers "
              f"over {plan.environment['CAMPUSHUB_PARTITIONS']} partitions", file=sys.stderr)
        return run_workers(plan, sock)


def _run_hub_program(run: Callable[[], Awaitable[None]]) -> int:
    """``trio.run(run)``; a start the hub refuses (``StartRefused``) is a message and exit 2, not a traceback."""
    from hub.app.supervision import StartRefused

    refused: list[BaseException] = []
    try:
        trio.run(run)
    except* StartRefused as group:
        refused.extend(_leaves(group))
    for exc in refused:
        print(f"campushub: {exc}", file=sys.stderr)
    return EXIT_USAGE if refused else EXIT_OK


def _leaves(error: BaseException) -> list[BaseException]:
    """The errors inside nested exception groups (``except*`` keeps the nesting)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from hub.app.demo_access import demo_address
    from hub.app.supervision import run_hub
    from hub.db import asyncio_loop, migrate, open_database
    from hub.db.seed import course_id, device_id, ensure_campus, faculty_id, room_id
    from hub.db.seed.academic import ensure_todays_past_classes  # not in ensure_campus: it writes attendance
    from hub.db.seed.checkin import ensure_checkin_demo  # after the past classes: flags one of them
    from hub.db.seed.class_loop import ensure_class_loop  # not in ensure_campus: its tests count sessions
    from hub.db.seed.device_health import ensure_alarm_demo  # not in ensure_campus: hub tests' rooms stay rule-free
    from hub.db.seed.insights import ensure_insights_demo  # not in ensure_campus: its tests count sessions
    from hub.db.seed.past_terms import ensure_past_terms, ensure_running_marks  # not in ensure_campus: it adds people
    from hub.db.seed.syllabus import ensure_syllabus_history  # after the past classes it tags
    from hub.db.seed.telemetry_anomalies import ensure_anomaly_demo  # not in ensure_campus: test hubs stay unfitted

    address = demo_address(args.host, lan=args.lan)  # ValueError: a usage error
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=True)
        # The demo's printed logins must work as printed: no second factor required (serve requires it
        # of admin and ops; docs/people.md "Two-factor authentication").
        settings = dataclasses.replace(settings, mfa_optional_demo=True)
        database_url = settings.database_url
        assert database_url is not None  # with_services fills it in or raises

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_signalled, nursery.cancel_scope)
                async with asyncio_loop(), open_database(database_url) as db:
                    await migrate(db)
                    campus = await ensure_campus(
                        db, rooms=args.rooms, students=args.students, now=datetime.now(timezone.utc))
                    await ensure_insights_demo(db, course_id=course_id(1), now=datetime.now(timezone.utc))
                    # Finished terms with outcomes for the early-warning model, and a marked quiz this term.
                    await ensure_past_terms(db, datetime.now(timezone.utc))
                    await ensure_running_marks(db, datetime.now(timezone.utc), course_ids=[course_id(1)],
                                               term_id="demo-term")
                    await ensure_todays_past_classes(db, datetime.now(timezone.utc))
                    await ensure_checkin_demo(db, faculty_id=faculty_id(1), now=datetime.now(timezone.utc))
                    await ensure_syllabus_history(db, datetime.now(timezone.utc))  # topics and levels of past classes
                    await ensure_alarm_demo(db, [room_id(n) for n in range(1, args.rooms + 1)],
                                            now=datetime.now(timezone.utc))
                    await ensure_anomaly_demo(db, [device_id(n) for n in range(1, args.rooms + 1)],
                                              now=datetime.now(timezone.utc))  # hub/db/seed/telemetry_anomalies.py
                    # Before the hub starts: its scheduler loads the first hours of the class loop at boot.
                    await ensure_class_loop(db, rooms=args.rooms, now=datetime.now(timezone.utc))
                    await sync_broker_accounts(db, settings)  # the seeded devices' broker accounts
                hub = await nursery.start(lambda task_status: run_hub(
                    settings, host=address.bind, port=args.port, task_status=task_status))
                _print_demo_banner(address, hub.web_port, campus)
                nursery.start_soon(_keep_classes_coming, database_url, hub, args.rooms)
                if not args.no_simulator:
                    nursery.start_soon(_run_simulator_process, settings, args)

        status = _run_hub_program(run)
    if status == EXIT_OK:
        print("campushub: stopped; data kept in", settings.data_dir, file=sys.stderr)
    return status


async def _keep_classes_coming(database_url: str, hub: Hub, rooms: int) -> None:
    """The demo's campus day on a loop (hub/db/seed/class_loop.py): every ``CLASS_LOOP_EVERY_S`` keep the
    next hours filled with classes and tell the scheduler the new ones, as the web does after creating one."""
    from actors import ActorRef
    from hub.db.seed.class_loop import keep_class_loop
    from hub.pipeline.scheduler import SessionsChanged

    async def tell_scheduler(created: list[str]) -> None:
        scheduler = hub.root.lookup("scheduler")
        if isinstance(scheduler, ActorRef):
            await scheduler.tell(SessionsChanged(tuple(created)))

    await keep_class_loop(database_url, rooms=rooms, every_s=CLASS_LOOP_EVERY_S, created=tell_scheduler)


def _print_demo_banner(address: DemoAddress, port: int, campus: Campus) -> None:
    from hub.app.demo_access import banner_lines

    print()
    for line in banner_lines(address, port):
        print(line)
    print()
    print("Demo logins, for this demo only: they share a well-known password, so never seed them into a")
    print("real campus's database (`campushub simulate` refuses to; docs/deployment.md sets up a campus):")
    for login in campus.logins:
        print(f"  {login.role:8} {login.username:12} password: {login.password}")
    print("Two-factor authentication is optional here for every role (`serve` requires it of admin and ops);")
    print("try it on /account/mfa.")
    print("\nPress Ctrl-C to stop.\n", flush=True)


async def _run_simulator_process(settings: Settings, args: argparse.Namespace) -> None:
    """The simulator runs in its own process, as it would on real classroom computers."""
    assert settings.database_url is not None and settings.mqtt_url is not None  # the demo's with_services set both
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=settings.database_url, CAMPUSHUB_MQTT_URL=settings.mqtt_url,
               CAMPUSHUB_TOPIC_PREFIX=settings.topic_prefix, CAMPUSHUB_DATA_DIR=str(settings.data_dir))
    # --loop: it follows the demo's class loop for as long as the demo runs (a year is "forever" here).
    command = [sys.executable, "-m", "hub", "simulate", "--rooms", str(args.rooms),
               "--students", str(args.students), "--duration", str(365 * 24 * 3600), "--loop"]
    log_path = settings.data_dir / "simulator.log"
    print(f"campushub: simulator running; its progress is in {log_path}", file=sys.stderr)
    # Cancelling run_process terminates the child, which stops its agents cleanly on SIGTERM.
    async with await trio.open_file(log_path, "ab") as log_file:
        await trio.run_process(command, env=env, check=False, stdout=log_file.wrapped, stderr=log_file.wrapped)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import secrets

    from hub.app.environment import running_demo_services
    from hub.db import migrate, run_with_database
    from hub.db.seed import count_unseeded_accounts, ensure_campus

    if args.rooms < 1 or args.students < 1 or args.duration <= 0:
        raise ValueError("--rooms, --students and --duration must be positive")
    with ExitStack() as stack:
        settings = with_services(settings, stack, start_embedded=False)
        demo = running_demo_services(settings.data_dir)
        demos_database = demo is not None and demo.get("database_url") == settings.database_url

        async def seed(db):
            await migrate(db)
            if not demos_database and (foreign := await count_unseeded_accounts(db)):
                raise ValueError(
                    f"this database holds {foreign} account(s) the demo did not seed: it looks like a real "
                    "campus, so simulate will not seed demo rooms, students and logins into it. Point "
                    "CAMPUSHUB_DATABASE_URL at an empty database, or run `campushub demo`.")
            # Accounts it creates never get the demo's well-known password: that belongs to `campushub demo`.
            campus = await ensure_campus(db, rooms=args.rooms, students=args.students,
                                         now=datetime.now(timezone.utc), demo_password=secrets.token_urlsafe(24))
            await sync_broker_accounts(db, settings)  # the seeded devices log in with their own accounts
            return campus

        assert settings.database_url is not None  # with_services fills it in or raises
        campus = run_with_database(settings.database_url, seed)
        counts = _drive(campus, settings, args)
    if args.json:
        print(json.dumps(counts, sort_keys=True))
    else:
        width = max(len(k) for k in counts) if counts else 0
        for kind, count in sorted(counts.items()):
            print(f"{kind:<{width}}  {count}")
    return EXIT_OK


def _drive(campus, settings: Settings, args: argparse.Namespace) -> dict[str, int]:
    import asyncio

    from hub.app.simulator import run_simulation

    started = time.monotonic()

    def progress(counts: dict[str, int]) -> None:
        done = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        print(f"simulate: {time.monotonic() - started:5.1f}s/{args.duration:g}s {done}", file=sys.stderr)

    assert settings.mqtt_url is not None  # _simulate's with_services fills it in or raises
    refresh = _upcoming_sessions(settings, campus) if args.loop else None
    return asyncio.run(run_simulation(
        campus, mqtt_url=settings.mqtt_url, topic_prefix=settings.topic_prefix, duration_s=args.duration,
        outbox_dir=settings.data_dir / "sim-outbox", seed=args.seed, progress=progress,
        refresh=refresh, outage_every_s=SIM_OUTAGE_EVERY_S if args.loop else None,
    ))


#: ``simulate --loop``: the last room's device drops off the network this often (for 3 min).
SIM_OUTAGE_EVERY_S = 20 * 60.0


def _upcoming_sessions(settings: Settings, campus: Campus) -> Callable[[], Awaitable[Sequence[LiveSession]]]:
    """``simulate --loop``'s ``refresh``: the sessions of the campus's rooms live now or starting within the
    hour, read in a worker thread (a trio run of its own: the simulator's loop is asyncio)."""
    import asyncio
    from datetime import timedelta

    from hub.db import run_with_database
    from hub.db.seed.class_loop import upcoming_sessions

    rooms = sorted({s.room_id for s in campus.sessions})
    url = settings.database_url
    assert url is not None

    def read() -> list[LiveSession]:
        return run_with_database(url, lambda db: upcoming_sessions(
            db, rooms, datetime.now(timezone.utc), timedelta(hours=1)))

    async def refresh() -> list[LiveSession]:
        return await asyncio.to_thread(read)

    return refresh
