"""Traffic simulator: realistic classroom traffic through the REAL edge agent code.

One :class:`edge_agent.EdgeAgent` per room (the room's device credentials, and
its broker account: username = device id, password derived from its key by
:func:`hub.db.seed.seeded_broker_password`, whatever credentials ``mqtt_url`` carries),
each with a :class:`devices.ScriptedQrSource` (the "camera" the simulated
students hold their phones to) and a :class:`RoomClimate` (the room's sensor).
For every session the simulator plans arrivals: most students on time, some
late, about 10 % absent; plus a few deliberate bad scans (garbage text, tokens
with a wrong MAC, a token scanned twice, students not enrolled). Tokens are
issued at scan time with the student's real secret, exactly as the phone app
would.

Time scale: a session already under way gets its arrivals within
``min(0.7 * duration_s, 15 min)`` from now. Where its real on-time deadline
(``starts_at + grace``) falls inside that window, on-time students arrive
before it and late ones after it, so the hub judges them as planned; otherwise
the window is simply split in halves (in a 3-second run everybody is on time as
far as the hub's clock goes; the ``late`` count is the *planned* lateness). A
session that has not started yet gets arrivals from ``EARLY_ARRIVAL`` before
its start to 15 min after that, split at its real deadline.

The campus day on a loop (``refresh``, what ``campushub demo`` runs): every
``refresh_every_s`` the simulator asks ``refresh()`` for the sessions live now
or starting within the next hour (the demo's class loop, hub/db/seed/class_loop.py)
and plans the ones it has not planned yet, so check-ins keep coming for as long
as it runs. ``outage_every_s``: the last room's agent drops its connection
without a goodbye (the broker publishes its Last Will: offline, "connection
lost") every so often, stays away ``outage_for_s`` (longer than the hub's
heartbeat timeout) and comes back, delivering what its outbox kept meanwhile.

Room climate: CO2 rises with the students checked in (``CO2_PER_PERSON`` over
the outdoor level, approached with a ventilation time constant) and falls back
in the break; temperature follows the day (warmest mid-afternoon) plus body
heat. A full demo class (about 13 present) takes CO2 to about 1,000 ppm, above
the demo's 700 ppm rule (hub/db/seed/device_health.py) for most of the class.

asyncio only (the agents are asyncio code); the hub CLI runs it with
``asyncio.run`` in its own process.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Sequence

# Submodule imports: tests/edge_agent/ and tests/devices/ can shadow the bare package
# names under pytest (empty namespace packages); submodules resolve regardless.
from devices.base import SensorSample
from devices.qr.source import ScriptedQrSource
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
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


# --- the room's climate ------------------------------------------------------------------------

#: Outdoor CO2 (ppm): an empty, ventilated room settles here.
CO2_OUTDOOR = 420.0
#: What each person present adds at equilibrium (ppm): a class of 13 settles near 1,000 ppm.
CO2_PER_PERSON = 45.0
#: Ventilation time constant (s): after a change in occupancy CO2 covers 63 % of the way in this time.
CO2_TAU_S = 6 * 60.0
TEMP_TAU_S = 15 * 60.0


@dataclass
class ClimateState:
    co2: float = CO2_OUTDOOR + 30.0
    temperature: float = 20.5
    humidity: float = 42.0


def climate_step(state: ClimateState, dt_s: float, occupants: int, hour_of_day: float,
                 rng: random.Random) -> ClimateState:
    """The room's climate ``dt_s`` later with ``occupants`` in it. Pure but for ``rng``; no clock read.

    Each quantity relaxes exponentially toward its target (CO2: outdoor plus
    ``CO2_PER_PERSON`` per person; temperature: a daily cycle warmest at 15:00
    plus 0.08 °C per person; humidity: 40 % plus 0.4 % per person) with a
    little noise, so readings look measured, not computed.
    """
    co2_target = CO2_OUTDOOR + CO2_PER_PERSON * occupants
    temp_target = 20.5 + 1.5 * math.sin(2 * math.pi * (hour_of_day - 9.0) / 24.0) + 0.08 * occupants
    hum_target = 40.0 + 0.4 * occupants
    co2_k = 1.0 - math.exp(-dt_s / CO2_TAU_S)
    temp_k = 1.0 - math.exp(-dt_s / TEMP_TAU_S)
    noise = math.sqrt(max(dt_s, 0.0) / 10.0)
    return ClimateState(
        co2=max(380.0, state.co2 + (co2_target - state.co2) * co2_k + rng.gauss(0.0, 4.0) * noise),
        temperature=state.temperature + (temp_target - state.temperature) * temp_k + rng.gauss(0.0, 0.03) * noise,
        humidity=min(90.0, max(15.0, state.humidity + (hum_target - state.humidity) * temp_k
                               + rng.gauss(0.0, 0.2) * noise)),
    )


class Occupancy:
    """Who is in each room: every check-in counts until its session ends. Event-loop thread only."""

    def __init__(self) -> None:
        self._until: dict[str, list[float]] = {}

    def arrive(self, room_id: str, until: float) -> None:
        self._until.setdefault(room_id, []).append(until)

    def count(self, room_id: str, now: float) -> int:
        left = [u for u in self._until.get(room_id, ()) if u > now]
        self._until[room_id] = left
        return len(left)


class RoomClimate:
    """The room's sensor: CO2, temperature and humidity from :func:`climate_step`, one sample of each
    every ``interval_s`` (the first at once). A :class:`devices.base.Source`; never blocks;
    re-iterating continues the same room (a reconnecting agent reads on)."""

    def __init__(self, room_id: str, occupancy: Occupancy, *, interval_s: float, seed: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = f"sim-climate:{room_id}"
        self.room_id = room_id
        self.interval_s = interval_s
        self._occupancy = occupancy
        self._rng = random.Random(seed)
        self._clock = clock
        self._state = ClimateState()
        self._at: float | None = None

    async def __aiter__(self) -> AsyncIterator[SensorSample]:
        while True:
            now = self._clock()
            dt = 0.0 if self._at is None else now - self._at
            self._at = now
            local = datetime.fromtimestamp(now, timezone.utc)
            self._state = climate_step(self._state, dt, self._occupancy.count(self.room_id, now),
                                       local.hour + local.minute / 60, self._rng)
            yield SensorSample("co2", round(self._state.co2), "ppm", now)
            yield SensorSample("temperature", round(self._state.temperature, 2), "°C", now)
            yield SensorSample("humidity", round(self._state.humidity, 1), "%", now)
            await asyncio.sleep(self.interval_s)


# --- arrivals over time ---------------------------------------------------------------------------

#: Students of a session that has not started yet begin arriving this long before its start.
EARLY_ARRIVAL_S = 5 * 60.0


@dataclass(order=True, frozen=True)
class _Due:
    at: float                      # wall clock (unix seconds)
    seq: int
    scan: Scan = field(compare=False)
    session_ends: float = field(compare=False)


class ArrivalBook:
    """The planned scans of every session seen so far, in time order. Pure: time is passed in.

    ``add(sessions, now)`` plans each session not seen before (and not over);
    ``due(now)`` pops the scans whose time has come; ``next_at`` is when the
    next one is. ``live_window_s`` bounds the arrival window of sessions
    already under way (the run's ``0.7 * duration_s``).
    """

    def __init__(self, campus: Campus, rng: random.Random, *, live_window_s: float = MAX_ARRIVAL_WINDOW_S) -> None:
        self._campus = campus
        self._rng = rng
        self._live_window_s = min(live_window_s, MAX_ARRIVAL_WINDOW_S)
        self._heap: list[_Due] = []
        self._seen: set[str] = set()
        self._seq = 0
        self.planned: Counter[str] = Counter()

    def add(self, sessions: Sequence[LiveSession], now: float) -> int:
        """Plan the sessions not planned before; returns how many were new."""
        new = 0
        for session in sessions:
            starts, ends = session.starts_at.timestamp(), session.ends_at.timestamp()
            if session.session_id in self._seen or ends <= now:
                continue
            self._seen.add(session.session_id)
            new += 1
            if starts <= now:  # under way: arrivals from now on
                begin, window = now, min(self._live_window_s, 0.7 * (ends - now))
            else:
                begin = max(now, starts - EARLY_ARRIVAL_S)
                window = min(starts - EARLY_ARRIVAL_S + MAX_ARRIVAL_WINDOW_S, ends) - begin
            deadline = starts + session.grace_minutes * 60 - begin
            scans, planned = plan_session(session, self._campus, self._rng, window_s=max(window, 0.1),
                                          deadline_s=deadline)
            self.planned.update(planned)
            for scan in scans:
                self._seq += 1
                heapq.heappush(self._heap, _Due(begin + scan.at_s, self._seq, scan, ends))
        return new

    @property
    def next_at(self) -> float | None:
        return self._heap[0].at if self._heap else None

    def due(self, now: float) -> list[_Due]:
        out = []
        while self._heap and self._heap[0].at <= now:
            out.append(heapq.heappop(self._heap))
        return out


# --- the agents ---------------------------------------------------------------------------------

def _agent_config(device: DeviceCredentials, *, mqtt_url: str, topic_prefix: str, outbox_dir: Path,
                  duration_s: float) -> AgentConfig:
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
        firmware="campushub-sim/0.2.0",
        reconnect_initial_s=0.2,
        reconnect_max_s=5.0,
        drain_timeout_s=DRAIN_TIMEOUT_S,
    )


def sensor_interval_s(duration_s: float) -> float:
    """One sample of each metric this often: scaled so that even a short run shows sensor traffic."""
    return min(10.0, max(0.5, duration_s / 6))


async def run_simulation(
    campus: Campus,
    *,
    mqtt_url: str,
    topic_prefix: str,
    duration_s: float,
    outbox_dir: Path,
    seed: int = 1,
    progress: Callable[[dict[str, int]], None] | None = None,
    refresh: Callable[[], Awaitable[Sequence[LiveSession]]] | None = None,
    refresh_every_s: float = 60.0,
    outage_every_s: float | None = None,
    outage_for_s: float = 180.0,
) -> dict[str, int]:
    """Drive traffic for ``duration_s`` seconds, stop the agents cleanly, return counts.

    Counts: ``qr_scan``, ``sensor_reading``, ``heartbeat`` (events the agents
    published and the broker acknowledged; ``qr_scan`` includes the bad
    scans and replays), ``invalid_token``, ``replayed_token``,
    ``not_enrolled`` (deliberate bad scans made), ``checkin`` (first scans
    of present students), ``on_time``, ``late``, ``absent`` (planned),
    ``rooms``, ``sessions`` (planned so far), ``outbox_pending`` (left
    unpublished, e.g. broker down), ``outage`` / ``recovered`` (the dropping
    device's connection cut / its agent back).

    ``refresh()`` (the campus day on a loop) is awaited every
    ``refresh_every_s`` for the sessions live now or coming up; those not yet
    planned are planned (module docstring). Without it only ``campus.sessions``
    get traffic. A failing ``refresh`` is logged and retried at the next turn.
    ``outage_every_s``: drop the last room's device that often (module docstring).

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
    occupancy = Occupancy()

    agents: dict[str, EdgeAgent] = {}
    configs: dict[str, AgentConfig] = {}
    scanners: dict[str, ScriptedQrSource] = {}
    climates: dict[str, RoomClimate] = {}
    rooms = sorted({s.room_id for s in campus.sessions})
    for i, room in enumerate(rooms):
        device = pick_device(campus, room)
        if device is None:
            log.warning("room %s has no device; its sessions get no traffic", room)
            continue
        configs[room] = _agent_config(device, mqtt_url=mqtt_url, topic_prefix=topic_prefix, outbox_dir=outbox_dir,
                                      duration_s=duration_s)
        scanners[room] = ScriptedQrSource(name=f"sim-qr:{room}")
        climates[room] = RoomClimate(room, occupancy, interval_s=sensor_interval_s(duration_s), seed=seed * 1000 + i)
        agents[room] = EdgeAgent(configs[room], sources=[scanners[room], climates[room]])
    counts["rooms"] = len(agents)

    book = ArrivalBook(campus, rng, live_window_s=duration_s * 0.7)
    retired: Counter[str] = Counter()  # what agents replaced after an outage had published
    pushed: Counter[str] = Counter()  # QR texts handed to each room's scanner

    def plan(sessions: Sequence[LiveSession]) -> int:
        new = book.add([s for s in sessions if s.room_id in agents], time.time())
        counts["sessions"] += new
        return new

    plan(campus.sessions)

    def snapshot() -> dict[str, int]:
        out = Counter(counts)
        out.update(book.planned)  # update, not +: planned zeros (e.g. absent) stay in the counts
        out.update(retired)
        for agent in agents.values():
            out.update(agent.stats.published)
        out["outbox_pending"] = sum(a.outbox_depth for a in agents.values())
        return {k: out[k] for k in sorted(out)}

    def scan(room: str, text: str) -> None:
        scanners[room].push_nowait(text)
        pushed[room] += 1

    stop_early = asyncio.Event()
    planned_more = asyncio.Event()

    async def drive() -> None:
        while True:
            next_at = book.next_at
            planned_more.clear()
            if next_at is None or next_at > time.time():
                timeout = None if next_at is None else next_at - time.time()
                try:
                    await asyncio.wait_for(planned_more.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            for due in book.due(time.time()):
                item = due.scan
                if item.text:
                    scan(item.room_id, item.text)
                    continue
                token = issue_checkin_token(item.student_id, item.secret, time.time())
                scan(item.room_id, token)
                if item.label == "checkin":
                    counts["checkin"] += 1
                    occupancy.arrive(item.room_id, due.session_ends)
                if item.replay_after_s is not None:
                    asyncio.get_running_loop().call_later(item.replay_after_s, scan, item.room_id, token)

    async def follow() -> None:
        assert refresh is not None
        while True:
            try:
                if plan(await refresh()):
                    planned_more.set()
            except Exception:
                log.exception("refreshing the sessions failed; retrying in %.0f s", refresh_every_s)
            await asyncio.sleep(refresh_every_s)

    runs: dict[str, asyncio.Task[None]] = {}

    def start(room: str) -> None:
        runs[room] = asyncio.create_task(agents[room].run(), name=f"agent:{room}")

    async def drop_out(room: str) -> None:
        """Every ``outage_every_s``: cut the room's connection (Will), stay away, come back."""
        assert outage_every_s is not None
        while True:
            await asyncio.sleep(outage_every_s)
            agent = agents[room]
            if not agent.drop_connection():
                continue  # not connected right now (broker away): try next time
            counts["outage"] += 1
            log.info("simulated outage: %s drops off the network for %.0f s", room, outage_for_s)
            agent.stop()  # its socket is gone: no offline status gets out, the broker's Will does
            await asyncio.gather(runs[room], return_exceptions=True)
            retired.update(agent.stats.published)
            agent.close()
            await asyncio.sleep(outage_for_s)
            agents[room] = EdgeAgent(configs[room], sources=[scanners[room], climates[room]])
            start(room)
            counts["recovered"] += 1

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
    for room in agents:
        start(room)
    helpers = [asyncio.create_task(drive()), asyncio.create_task(report())]
    if refresh is not None:
        helpers.append(asyncio.create_task(follow()))
    if outage_every_s is not None and agents:
        helpers.append(asyncio.create_task(drop_out(sorted(agents)[-1])))
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
                       runs: dict[str, asyncio.Task[None]]) -> None:
    """Let readers store what was scanned (≤ 1 s), stop every agent, wait (bounded), close."""
    deadline = time.monotonic() + 1.0
    # Polled: the agents' counters have no change event, and the wait is bounded by the deadline.
    while time.monotonic() < deadline and any(  # noqa: ASYNC110
            a.stats.submitted.get("qr_scan", 0) + a.stats.invalid_readings < pushed[room]
            for room, a in agents.items() if room in runs and not runs[room].done()):
        await asyncio.sleep(0.02)
    for agent in agents.values():
        agent.stop()
    tasks = [t for t in runs.values() if not t.done()]
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S + 5.0)
        for task in pending:
            log.warning("%s did not stop in time; cancelling", task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
    for agent in agents.values():
        agent.close()
