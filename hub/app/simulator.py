"""Traffic simulator: realistic classroom traffic through the REAL edge agent code.

One :class:`edge_agent.EdgeAgent` per room (the room's device credentials, and
its broker account: username = device id, password derived from its key by
:func:`hub.db.seed.seeded_broker_password`, whatever credentials ``mqtt_url`` carries),
each with a :class:`devices.ScriptedQrSource` (the "camera" the simulated
students hold their phones to) and a simulated sensor. For every live
session the simulator plans arrivals: most students on time, some late,
about 10 % absent; plus a few deliberate bad scans (garbage text, tokens
with a wrong MAC, a token scanned twice, students not enrolled). Tokens are
issued at scan time with the student's real secret, exactly as the phone
app would.

Time scale: arrivals happen within ``min(0.7 * duration_s, 15 min)``. Where
a session's real on-time deadline (``starts_at + grace``) falls inside that
window, on-time students arrive before it and late ones after it, so the hub
judges them as planned; otherwise the window is simply split in halves (in
a 3-second run everybody is on time as far as the hub's clock goes; the
``late`` count is the *planned* lateness).

asyncio only (the agents are asyncio code); the hub CLI runs it with
``asyncio.run`` in its own process.
"""
from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

# Submodule imports: tests/edge_agent/ and tests/devices/ can shadow the bare package
# names under pytest (empty namespace packages); submodules resolve regardless.
from devices.qr.source import ScriptedQrSource
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, SimulatedSensorSourceConfig
from hub.core.campus import Campus, DeviceCredentials, LiveSession
from hub.db.seed import seeded_broker_password
from schemas import issue_checkin_token

log = logging.getLogger(__name__)

#: The largest arrival window: real students trickle in over a quarter of an hour.
MAX_ARRIVAL_WINDOW_S = 15 * 60
ABSENT_SHARE = 0.10
LATE_SHARE = 0.20
BAD_SHARE = 0.04
#: How long stopping may take: the agents' drain plus their offline status.
DRAIN_TIMEOUT_S = 5.0
_DEVICE_PREFERENCE = ("edge_agent", "qr_camera")
_GARBAGE = ("https://example.com/cafeteria-menu", "WIFI:S:campus-guest;T:WPA;P:hunter2;;",
            "CH1.not-a-token", "hello", "0123456789abcdef")


@dataclass(frozen=True)
class Scan:
    """One planned scan: at ``at_s`` seconds after the start, in ``room_id``."""

    at_s: float
    room_id: str
    label: str  # "checkin" | "invalid_token" | "not_enrolled"
    student_id: str = ""
    secret: bytes = b""
    text: str = ""          # fixed text (garbage); otherwise a token is issued at scan time
    replay_after_s: float | None = None  # scan the very same token text again this much later


def pick_device(campus: Campus, room_id: str) -> DeviceCredentials | None:
    """The device whose credentials the room's agent uses (an edge agent or QR camera first)."""
    in_room = [d for d in campus.devices if d.room_id == room_id]
    in_room.sort(key=lambda d: (_DEVICE_PREFERENCE.index(d.kind) if d.kind in _DEVICE_PREFERENCE
                                else len(_DEVICE_PREFERENCE), d.device_id))
    return in_room[0] if in_room else None


def plan_session(session: LiveSession, campus: Campus, rng: random.Random, *,
                 window_s: float, deadline_s: float | None) -> tuple[list[Scan], Counter[str]]:
    """The scans of one session and the planned counts (on_time, late, absent, bad cases).

    ``deadline_s``: seconds from now to the session's on-time deadline, if known.
    """
    secrets = {s.student_id: s.token_secret for s in campus.students}
    enrolled = [sid for sid in session.enrolled if sid in secrets]
    rng.shuffle(enrolled)
    n = len(enrolled)
    n_absent = round(n * ABSENT_SHARE)
    present = enrolled[n_absent:]
    n_late = round(len(present) * LATE_SHARE)
    on_time, late = present[n_late:], present[:n_late]
    split = deadline_s if deadline_s is not None and 0 < deadline_s < window_s else window_s / 2
    planned: Counter[str] = Counter(on_time=len(on_time), late=len(late), absent=n_absent)
    room = session.room_id
    scans: list[Scan] = []

    def some(share_of: int) -> int:
        return max(1, round(share_of * BAD_SHARE))

    replayers = set(rng.sample(present, min(len(present), some(n)))) if present else set()
    for sid in on_time:
        # Bunched before the deadline, a few right at the door.
        at = min(split * 0.95, abs(rng.gauss(split * 0.45, split * 0.25)))
        scans.append(Scan(at, room, "checkin", sid, secrets[sid],
                          replay_after_s=rng.uniform(0.2, 0.8) if sid in replayers else None))
    for sid in late:
        at = rng.uniform(split + (window_s - split) * 0.05, window_s)
        scans.append(Scan(at, room, "checkin", sid, secrets[sid],
                          replay_after_s=rng.uniform(0.2, 0.8) if sid in replayers else None))
    planned["replayed_token"] = len(replayers)

    for _ in range(some(n)):  # garbage: someone scans the wrong QR code
        scans.append(Scan(rng.uniform(0, window_s), room, "invalid_token", text=rng.choice(_GARBAGE)))
    for _ in range(some(n) if enrolled else 0):  # well-formed token, MAC under a wrong secret
        sid = rng.choice(enrolled)
        scans.append(Scan(rng.uniform(0, window_s), room, "invalid_token", sid, rng.randbytes(32)))
    planned["invalid_token"] = sum(1 for s in scans if s.label == "invalid_token")

    outsiders = [s.student_id for s in campus.students if s.student_id not in set(session.enrolled)]
    for i in range(some(n)):  # a real student (or a visitor) who is not on this roster
        if outsiders:
            sid = rng.choice(outsiders)
            secret = secrets[sid]
        else:
            sid, secret = f"visitor{i}", rng.randbytes(32)
        scans.append(Scan(rng.uniform(0, window_s), room, "not_enrolled", sid, secret))
    planned["not_enrolled"] = sum(1 for s in scans if s.label == "not_enrolled")
    return scans, planned


def _agent_config(device: DeviceCredentials, *, mqtt_url: str, topic_prefix: str, outbox_dir: Path,
                  duration_s: float, seed: int) -> AgentConfig:
    return AgentConfig(
        device_id=device.device_id,
        room_id=device.room_id,
        alg=device.alg,  # type: ignore[arg-type]
        signing_key=device.signing_key,
        mqtt_url=mqtt_url,
        # The device's own broker account (the seed creates it), never the URL's (maybe the hub's).
        username=device.device_id,
        password=seeded_broker_password(device.signing_key),
        topic_prefix=topic_prefix,
        outbox_path=outbox_dir / f"{device.device_id}.outbox.sqlite",
        # Scaled so that even a short run shows heartbeats and sensor traffic.
        heartbeat_interval_s=min(15.0, max(1.0, duration_s / 4)),
        firmware="campushub-sim/0.1.0",
        sources=(SimulatedSensorSourceConfig(interval_s=min(10.0, max(0.5, duration_s / 6)), seed=seed),),
        reconnect_initial_s=0.2,
        reconnect_max_s=5.0,
        drain_timeout_s=DRAIN_TIMEOUT_S,
    )


async def run_simulation(
    campus: Campus,
    *,
    mqtt_url: str,
    topic_prefix: str,
    duration_s: float,
    outbox_dir: Path,
    seed: int = 1,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Drive traffic for ``duration_s`` seconds, stop the agents cleanly, return counts.

    Counts: ``qr_scan``, ``sensor_reading``, ``heartbeat`` (events the agents
    published and the broker acknowledged; ``qr_scan`` includes the bad
    scans and replays), ``invalid_token``, ``replayed_token``,
    ``not_enrolled`` (deliberate bad scans made), ``checkin`` (first scans
    of present students), ``on_time``, ``late``, ``absent`` (planned),
    ``rooms``, ``outbox_pending`` (left unpublished, e.g. broker down).

    ``progress(counts)`` is called about once a second. SIGTERM or SIGINT
    (when run in the main thread) end the run early, like reaching
    ``duration_s``; a cancellation also stops the agents cleanly before it
    propagates. Stopping waits at most ``DRAIN_TIMEOUT_S`` plus a few seconds.

    Each agent's outbox lives in ``outbox_dir/<device>.outbox.sqlite`` and is
    kept between runs, like a real agent's: seq numbers keep increasing, and
    events left over by an interrupted run are delivered first (and counted).
    """
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    rng = random.Random(seed)
    outbox_dir = Path(outbox_dir)
    outbox_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()

    agents: dict[str, EdgeAgent] = {}
    scanners: dict[str, ScriptedQrSource] = {}
    rooms = sorted({s.room_id for s in campus.sessions})
    for i, room in enumerate(rooms):
        device = pick_device(campus, room)
        if device is None:
            log.warning("room %s has no device; its sessions get no traffic", room)
            continue
        cfg = _agent_config(device, mqtt_url=mqtt_url, topic_prefix=topic_prefix, outbox_dir=outbox_dir,
                            duration_s=duration_s, seed=seed * 1000 + i)
        scanners[room] = ScriptedQrSource(name=f"sim-qr:{room}")
        agents[room] = EdgeAgent(cfg, sources=[scanners[room]])
    counts["rooms"] = len(agents)

    window_s = min(duration_s * 0.7, MAX_ARRIVAL_WINDOW_S)
    now = datetime.now(timezone.utc)
    plan: list[Scan] = []
    for session in campus.sessions:
        if session.room_id not in agents:
            continue
        deadline = session.starts_at.timestamp() + session.grace_minutes * 60 - now.timestamp()
        scans, planned = plan_session(session, campus, rng, window_s=window_s, deadline_s=deadline)
        plan.extend(scans)
        counts.update(planned)
    plan.sort(key=lambda s: s.at_s)
    pushed: Counter[str] = Counter()  # QR texts handed to each room's scanner

    def snapshot() -> dict[str, int]:
        out = Counter(counts)
        for agent in agents.values():
            out.update(agent.stats.published)
        out["outbox_pending"] = sum(a.outbox_depth for a in agents.values())
        return {k: out[k] for k in sorted(out)}

    def scan(room: str, text: str) -> None:
        scanners[room].push_nowait(text)
        pushed[room] += 1

    start = time.monotonic()
    stop_early = asyncio.Event()

    async def drive() -> None:
        for item in plan:
            delay = start + item.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if item.text:
                scan(item.room_id, item.text)
                continue
            token = issue_checkin_token(item.student_id, item.secret, time.time())
            scan(item.room_id, token)
            if item.label == "checkin":
                counts["checkin"] += 1
            if item.replay_after_s is not None:
                asyncio.get_running_loop().call_later(item.replay_after_s, scan, item.room_id, token)

    async def report() -> None:
        while True:
            await asyncio.sleep(1.0)
            if progress is not None:
                try:
                    progress(snapshot())
                except Exception:
                    log.exception("progress callback failed")

    loop = asyncio.get_running_loop()
    on_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (the demo stopping its simulator process) and Ctrl-C end the run
    # early but cleanly. Handled here because asyncio.run's own SIGINT handling
    # does not reach the task on a trio-asyncio loop (what the hub CLI gets).
    stop_signals = (signal.SIGTERM, signal.SIGINT) if on_main_thread else ()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop_early.set)
    runs = [asyncio.create_task(a.run(), name=f"agent:{room}") for room, a in agents.items()]
    helpers = [asyncio.create_task(drive()), asyncio.create_task(report())]
    try:
        try:
            await asyncio.wait_for(stop_early.wait(), duration_s)
        except asyncio.TimeoutError:
            pass
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        for h in helpers:
            h.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await _stop_agents(agents, pushed, runs)
    result = snapshot()
    if progress is not None:
        progress(result)
    return result


async def _stop_agents(agents: dict[str, EdgeAgent], pushed: Counter[str],
                       runs: list[asyncio.Task[None]]) -> None:
    """Let readers store what was scanned (≤ 1 s), stop every agent, wait (bounded), close."""
    deadline = time.monotonic() + 1.0
    # Polled: the agents' counters have no change event, and the wait is bounded by the deadline.
    while time.monotonic() < deadline and any(  # noqa: ASYNC110
            a.stats.submitted.get("qr_scan", 0) + a.stats.invalid_readings < pushed[room]
            for room, a in agents.items()):
        await asyncio.sleep(0.02)
    for agent in agents.values():
        agent.stop()
    if runs:
        done, pending = await asyncio.wait(runs, timeout=DRAIN_TIMEOUT_S + 5.0)
        for task in pending:
            log.warning("%s did not stop in time; cancelling", task.get_name())
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
    for agent in agents.values():
        agent.close()
