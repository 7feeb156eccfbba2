"""Hub → device commands at the edge, through the real Mosquitto: verify, expire, execute, acknowledge."""
from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from edge_helpers import (
    Collector,
    CuttableProxy,
    acks,
    broker_client,
    command,
    make_config,
    new_prefix,
    publish,
    run_native,
)
from edge_helpers import (
    start_agent as start,
)
from edge_helpers import (
    stop_agent as stop,
)
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from edge_agent.agent import EdgeAgent
from edge_agent.device_config import DeviceConfig
from edge_agent.state import AgentState
from schemas import Command, HeartbeatEvent, Topics, seal_args


def test_commands_are_executed_and_acknowledged(tmp_path: Path) -> None:
    prefix = new_prefix()
    sensor = DeviceConfig("room-sensor", "sensor", "simulated",
                          options=dict(interval_s=60.0, metrics=["co2"], seed=1))
    cfg = make_config(tmp_path, prefix, devices=(sensor,))

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            sent = {
                "config": command(cfg, "config_push", {"heartbeat_interval_s": 120}),
                "roster": command(cfg, "roster_sync", {"pins": "1001=s-001;1002=s-002", "pages": "7=s-001"}),
                "reboot": command(cfg, "reboot"),
                "bad_config": command(cfg, "config_push", {"room-sensor.interval_s": 1}),  # not pushable
                "bad_args": command(cfg, "reboot", {"now": True}),
                "template": command(cfg, "template_sync", {"page": 1, "student": "s-1", "template": "AAAA"}),
                # Last: from now on the agent judges expiry by the hub's clock (90 s ahead here).
                "time": command(cfg, "time_sync", hub_ts=int(time.time() * 1000) + 90_000),
            }
            for cmd in sent.values():
                await publish(prefix, cmd, cfg.signing_key)
            await col.wait_for(lambda: len(acks(col)) == len(sent))
            got = {k: acks(col)[c.id].body for k, c in sent.items()}
            assert {k: b.status for k, b in got.items()} == {
                "time": "ok", "config": "ok", "roster": "ok", "reboot": "ok",
                "bad_config": "failed", "bad_args": "failed", "template": "unsupported"}
            offset = int(got["time"].detail.removeprefix("offset_ms="))
            assert 89_000 < offset <= 90_000 and agent.stats.clock_offset_ms == offset
            assert "heartbeat_interval_s" in got["config"].detail and agent.heartbeat_interval_s == 120
            assert "cannot be pushed" in got["bad_config"].detail
            assert got["roster"].detail.startswith("pins=2 pages=1")
            assert got["reboot"].detail == "drivers restarted: room-sensor"
            assert agent.enrolment.student_for_pin("1002") == "s-002"
            assert agent.stats.commands["executed"] == 7
            for _, event in col.events():  # acks are signed events like any other
                assert event.device == cfg.device_id
            await stop(agent, task)

        # Everything the commands changed is durable: a restarted agent has it.
        async with EdgeAgent(cfg) as again:
            assert again.heartbeat_interval_s == 120 and again.clock_offset_ms == offset
            assert again.enrolment.student_for_page(7) == "s-001"

    run_native(main())


def test_expired_forged_misaddressed_and_repeated_commands(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            stale = command(cfg, "reboot", hub_ts=int(time.time() * 1000) - 60_000, ttl_s=30)
            forged = command(cfg, "reboot")
            other = command(cfg, "reboot", device="someone-else")
            twice = command(cfg, "time_sync")
            await publish(prefix, stale, cfg.signing_key)
            await publish(prefix, forged, secrets.token_bytes(32))     # not the device key
            await publish(prefix, other, cfg.signing_key, to=cfg.device_id)  # our topic, another id
            async with broker_client(identifier=f"x-{uuid.uuid4().hex[:6]}") as c:
                await c.publish(Topics(prefix).downlink(cfg.device_id), b"\x93\xc4garbage", qos=1)
            await publish(prefix, twice, cfg.signing_key)
            await publish(prefix, twice, cfg.signing_key)               # a redelivery
            await col.wait_for(lambda: agent.stats.commands["duplicates"] == 1)
            await col.wait_for(lambda: len(acks(col)) == 2)
            got = acks(col)
            assert got[stale.id].body.status == "expired" and "expires_ts" in got[stale.id].body.detail
            assert got[twice.id].body.status == "ok"
            assert forged.id not in got and other.id not in got  # ignored, no answer at all
            stats = agent.stats.commands
            assert (stats["forged"], stats["misaddressed"], stats["invalid"], stats["expired"]) == (1, 1, 1, 1)
            # Refused commands count as errors in the next heartbeat.
            await agent.submit_heartbeat()
            await col.wait_for(lambda: any(e.body.error_count >= 2 for e in col.of_kind("heartbeat")))
            await stop(agent, task)
        state = AgentState(cfg.state_file)
        assert state.done_command(stale.id).status == "expired"  # type: ignore[union-attr]
        state.close()

    run_native(main())


def test_an_ack_written_while_offline_is_delivered_after_reconnecting(tmp_path: Path) -> None:
    prefix = new_prefix()

    async def main() -> None:
        proxy = CuttableProxy()
        await proxy.start()
        cfg = make_config(tmp_path, prefix, mqtt_url=proxy.url)

        async def reboot_cuts_the_network() -> str:
            await proxy.cut()  # the link drops while the command runs: its ack must wait in the outbox
            return "rebooted (test hook)"

        async with Collector(prefix) as col, EdgeAgent(cfg, reboot_hook=reboot_cuts_the_network) as agent:
            task = await start(agent)
            cmd = command(cfg, "reboot")
            await publish(prefix, cmd, cfg.signing_key)
            await col.wait_for(lambda: agent.stats.submitted.get("command_ack") == 1)
            await col.wait_for(lambda: not agent.connected)
            assert agent.outbox_depth >= 1 and cmd.id not in acks(col)
            await proxy.start()
            await col.wait_for(lambda: cmd.id in acks(col), timeout=10)
            ack = acks(col)[cmd.id].body
            assert (ack.status, ack.detail) == ("ok", "rebooted (test hook)")
            assert isinstance(col.of_kind("heartbeat")[0], HeartbeatEvent)
            await stop(agent, task)
        await proxy.close()

    run_native(main())


def test_ed25519_devices_verify_commands_with_the_hubs_public_key(tmp_path: Path) -> None:
    prefix = new_prefix()
    hub_seed = secrets.token_bytes(32)
    hub_public = Ed25519PrivateKey.from_private_bytes(hub_seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    cfg = make_config(tmp_path, prefix, alg="ed25519", signing_key=secrets.token_bytes(32),
                      hub_public_key=hub_public)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            good, by_device_key, by_hmac = command(cfg, "time_sync"), command(cfg, "reboot"), command(cfg, "reboot")
            await publish(prefix, by_device_key, cfg.signing_key, alg="ed25519")  # not the hub's key
            await publish(prefix, by_hmac, cfg.signing_key)                       # wrong algorithm
            await publish(prefix, good, hub_seed, alg="ed25519")
            await col.wait_for(lambda: good.id in acks(col) and agent.stats.commands["forged"] == 2)
            assert set(acks(col)) == {good.id}
            await stop(agent, task)

    run_native(main())


def _sealed(cmd: Command, args: dict[str, Any], **key: bytes) -> Command:
    """``cmd`` with ``args`` sealed as the hub seals them (hub/db/device_commands.py)."""
    return msgspec.structs.replace(cmd, sealed=seal_args(args, device_id=cmd.device, command_id=cmd.id,
                                                         name=cmd.name, **key))


def test_sealed_arguments_open_only_on_their_device_and_command(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)
    other_key = secrets.token_bytes(32)
    roster = {"pins": "1001=s-001", "pages": "7=s-001"}

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            good = _sealed(command(cfg, "roster_sync"), roster, hmac_key=cfg.signing_key)
            # Sealed to another device (its id and key), then carried in a frame to this one.
            to_other = command(cfg, "roster_sync")
            foreign = msgspec.structs.replace(to_other, sealed=seal_args(
                {"pins": "6666=s-666"}, device_id="room-2-edge", command_id=to_other.id, name="roster_sync",
                hmac_key=other_key))
            # This device's own blob replayed under another command id.
            replayed = msgspec.structs.replace(command(cfg, "roster_sync"), sealed=good.sealed)
            # Sealed for a roster_sync, replayed as a template_sync (under a new id: a known id is ignored).
            renamed = msgspec.structs.replace(good, name="template_sync", id=uuid.uuid4().bytes)
            for cmd in (good, foreign, replayed, renamed):
                await publish(prefix, cmd, cfg.signing_key)
            await col.wait_for(lambda: len(acks(col)) == 4)
            got = {name: acks(col)[cmd.id].body for name, cmd in
                   (("good", good), ("foreign", foreign), ("replayed", replayed), ("renamed", renamed))}
            assert got["good"].status == "ok" and got["good"].detail.startswith("pins=1 pages=1")
            for name in ("foreign", "replayed", "renamed"):
                assert got[name].status == "failed", name
                assert got[name].detail.startswith("sealed arguments:") and "fail authentication" in got[name].detail
            assert agent.enrolment.student_for_pin("1001") == "s-001"
            assert agent.enrolment.student_for_pin("6666") is None
            assert agent.stats.commands["unsealable"] == 3
            await stop(agent, task)

    run_native(main())


def test_personal_arguments_in_clear_are_refused(tmp_path: Path) -> None:
    """A roster, template or secret sent in clear (a leaky tool, not the hub) is never applied."""
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            clear_roster = msgspec.structs.replace(command(cfg, "roster_sync"), args={"pins": "4242=s-042"})
            clear_secret = msgspec.structs.replace(command(cfg, "config_push"), args={"wifi_password": "hunter2"})
            for cmd in (clear_roster, clear_secret):
                await publish(prefix, cmd, cfg.signing_key)
            await col.wait_for(lambda: len(acks(col)) == 2)
            assert acks(col)[clear_roster.id].body.detail == (
                "sealed arguments: argument 'pins' carries personal data or a secret and must be sealed")
            assert acks(col)[clear_secret.id].body.detail.endswith("'wifi_password' carries personal data or a secret"
                                                                   " and must be sealed")
            assert {acks(col)[c.id].body.status for c in (clear_roster, clear_secret)} == {"failed"}
            assert agent.enrolment.student_for_pin("4242") is None
            await stop(agent, task)

    run_native(main())


def test_ed25519_devices_open_arguments_sealed_to_their_public_key(tmp_path: Path) -> None:
    prefix = new_prefix()
    hub_seed, device_seed = secrets.token_bytes(32), secrets.token_bytes(32)

    def public(seed: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    cfg = make_config(tmp_path, prefix, alg="ed25519", signing_key=device_seed, hub_public_key=public(hub_seed))
    # What the hub holds: the device's Ed25519 public key only, converted for X25519.
    x25519_public = crypto_sign_ed25519_pk_to_curve25519(public(device_seed))

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            good = _sealed(command(cfg, "roster_sync"), {"pins": "2002=s-002"}, x25519_public_key=x25519_public)
            wrong = _sealed(command(cfg, "roster_sync"), {"pins": "3003=s-003"},
                            x25519_public_key=crypto_sign_ed25519_pk_to_curve25519(public(secrets.token_bytes(32))))
            hmac_sealed = _sealed(command(cfg, "roster_sync"), {"pins": "4004=s-004"}, hmac_key=device_seed)
            for cmd in (good, wrong, hmac_sealed):
                await publish(prefix, cmd, hub_seed, alg="ed25519")
            await col.wait_for(lambda: len(acks(col)) == 3)
            assert acks(col)[good.id].body.status == "ok"
            assert "fail authentication" in acks(col)[wrong.id].body.detail
            assert "this device signs with ed25519" in acks(col)[hmac_sealed.id].body.detail
            assert agent.enrolment.pins == {"2002": "s-002"}
            await stop(agent, task)

    run_native(main())
