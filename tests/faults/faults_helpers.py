"""What the fault tests share: the hub as a subprocess, real edge agents in threads, load, exactly-once checks."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import httpx
import pyotp
import trio

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from hub.core.campus import Campus, DeviceCredentials, LiveSession
from hub.db import Database
from schemas import issue_checkin_token

ROOT = Path(__file__).resolve().parents[2]
#: The kinds a fault test submits and counts (heartbeats come and go with agent restarts).
COUNTED_KINDS = ("sensor_reading", "qr_scan")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- the hub process


def hub_env(*, database_url: str, mqtt_url: str, topic_prefix: str, client_id: str,
            data_dir: Path, mqtt_cafile: Path | None = None) -> dict[str, str]:
    """The hub's environment; ``mqtt_cafile``: the CA of an ``mqtts://`` broker (``PrivateBroker.cafile``)."""
    env = dict(
        os.environ,
        CAMPUSHUB_DATABASE_URL=database_url, CAMPUSHUB_MQTT_URL=mqtt_url,
        CAMPUSHUB_TOPIC_PREFIX=topic_prefix, CAMPUSHUB_HUB_CLIENT_ID=client_id,
        CAMPUSHUB_DATA_DIR=str(data_dir), CAMPUSHUB_JWT_SECRET="faults-jwt-secret-at-least-32-bytes-long",
        CAMPUSHUB_DEVICE_OFFLINE_AFTER_S="600",
    )
    if mqtt_cafile is not None:
        env["CAMPUSHUB_MQTT_CAFILE"] = str(mqtt_cafile)
    return env


class HubProcess:
    """One ``campushub serve --port 0`` subprocess; its stderr tail is kept for failure messages."""

    def __init__(self, process: trio.Process, port: int, startup_s: float) -> None:
        self.process = process
        self.port = port
        #: From spawn to "serving http://...": imports, database, subscription, web server.
        self.startup_s = startup_s
        self._log: deque[str] = deque(maxlen=300)
        #: Lines that say something went wrong (kept whole, for failure messages).
        self.problems: list[str] = []
        self.log_file: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._log)[-lines:])

    def _keep(self, data: bytes) -> None:
        text = data.decode(errors="replace")
        lines = text.splitlines()
        self._log.extend(lines)
        self.problems.extend(line for line in lines if re.search(r" (ERROR|CRITICAL) |crash|restart", line))
        if self.log_file is not None:
            with self.log_file.open("a") as f:
                f.write(text)

    async def _drain(self) -> None:  # keeps the stderr pipe from filling up
        while chunk := await self.process.stderr.receive_some(65536):
            self._keep(chunk)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, as an operator stops it; SIGKILL after ``timeout``. Returns the exit status."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(timeout):
                await self.process.wait()
            if self.alive:
                self.process.kill()
        return await self.process.wait()

    def rss_kb(self) -> int:
        """Resident set size of the hub process, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for {self.pid}")


class HubLauncher:
    """Starts hub processes with one environment; every one still alive is killed on exit."""

    def __init__(self, env: dict[str, str], nursery: trio.Nursery) -> None:
        self.env = env
        self._nursery = nursery
        self.started: list[HubProcess] = []

    async def start(self, timeout: float = 30) -> HubProcess:
        began = time.monotonic()
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "hub", "serve", "--port", "0"], env=self.env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = b""
        try:
            with trio.fail_after(timeout):
                while (match := re.search(rb"serving http://[^/\s]+:(\d+)/", seen)) is None:
                    chunk = await process.stderr.receive_some(4096)
                    assert chunk, f"hub exited early:\n{seen.decode(errors='replace')}"
                    seen += chunk
        except BaseException:
            with trio.CancelScope(shield=True):
                process.kill()
                await process.wait()
            raise
        hub = HubProcess(process, int(match.group(1)), time.monotonic() - began)
        if os.environ.get("CAMPUSHUB_FAULTS_LOGS"):  # debugging: whole hub logs in that folder
            hub.log_file = Path(os.environ["CAMPUSHUB_FAULTS_LOGS"]) / f"hub-{hub.pid}.log"
        hub._keep(seen)
        self.started.append(hub)
        self._nursery.start_soon(hub._drain)
        return hub


@asynccontextmanager
async def hub_launcher(env: dict[str, str]) -> AsyncIterator[HubLauncher]:
    async with trio.open_nursery() as nursery:
        launcher = HubLauncher(env, nursery)
        try:
            yield launcher
        except BaseException:
            for hub in launcher.started:  # shown with the failure (captured stdout)
                print(f"--- hub pid {hub.pid} (exit status {hub.process.returncode}) ---")
                print("problems:\n" + "\n".join(hub.problems[-40:]))
                print("tail:\n" + hub.log_tail(80))
            raise
        finally:
            with trio.CancelScope(shield=True):
                for hub in launcher.started:
                    if hub.alive:
                        hub.process.kill()
                        await hub.process.wait()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- edge agents


@dataclass(frozen=True)
class Sensor:
    """A sensor reading to submit at the edge (``at``: device time, default now)."""

    metric: str
    value: float
    unit: str
    at: float | None = None
    kind = "sensor_reading"

    async def submit(self, agent: EdgeAgent) -> int | None:
        return await agent.submit_sensor(self.metric, self.value, self.unit, self.at)


@dataclass(frozen=True)
class CheckIn:
    """A student's QR shown at the edge; the token is issued for the scan's time, as the student's phone would."""

    student_id: str
    secret: bytes = field(repr=False)
    at: float | None = None
    kind = "qr_scan"

    async def submit(self, agent: EdgeAgent) -> int | None:
        at = self.at if self.at is not None else time.time()
        return await agent.submit_qr(issue_checkin_token(self.student_id, self.secret, at), self.at)


Item = Sensor | CheckIn


class EdgeAgentThread:
    """A real :class:`EdgeAgent` (SQLite outbox, aiomqtt) on its own asyncio loop in a thread."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.device_id = config.device_id
        self.agent: EdgeAgent | None = None
        self.error: BaseException | None = None
        #: Items submitted so far by :meth:`submit_items` (read from other threads).
        self.submitted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"agent-{config.device_id}", daemon=True)

    def start(self) -> "EdgeAgentThread":
        self._thread.start()
        if not self._ready.wait(15) or self.error is not None:
            raise RuntimeError(f"edge agent did not start: {self.error!r}")
        return self

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self.agent = EdgeAgent(self.config)
            self._ready.set()
            try:
                await self.agent.run()
            finally:
                self.agent.close()

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self._ready.set()

    def submit_items(self, items: Sequence[Item], rate: float | None) -> concurrent.futures.Future:
        """Submit ``items`` in order, ``rate`` per second (None: as fast as the outbox takes them).

        Returns a future of ``[(kind, seq), ...]``, one per item.
        """
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._submit_items(items, rate), self._loop)

    async def _submit_items(self, items: Sequence[Item], rate: float | None) -> list[tuple[str, int | None]]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        results = []
        for i, item in enumerate(items):
            if rate:
                delay = began + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            results.append((item.kind, await item.submit(self.agent)))
            self.submitted += 1
        return results

    @property
    def outbox_depth(self) -> int:
        return self.agent.outbox_depth if self.agent is not None else -1

    @property
    def connected(self) -> bool:
        return self.agent is not None and self.agent.connected

    def stop(self) -> None:
        if self._loop is not None and self.agent is not None:
            try:
                self._loop.call_soon_threadsafe(self.agent.stop)
            except RuntimeError:  # the loop has already ended
                pass
        self._thread.join(30)


@asynccontextmanager
async def edge_agents(configs: Iterable[AgentConfig]) -> AsyncIterator[list[EdgeAgentThread]]:
    agents: list[EdgeAgentThread] = []
    try:
        for config in configs:
            agents.append(await trio.to_thread.run_sync(EdgeAgentThread(config).start))
        yield agents
    finally:
        with trio.CancelScope(shield=True):
            for agent in agents:
                await trio.to_thread.run_sync(agent.stop)


def agent_config(device: DeviceCredentials, *, mqtt_url: str, topic_prefix: str, outbox_dir: Path,
                 **overrides: Any) -> AgentConfig:
    overrides.setdefault("heartbeat_interval_s", 3600.0)  # one heartbeat per start; the load is what counts
    return AgentConfig(
        device_id=device.device_id, room_id=device.room_id, alg=device.alg, signing_key=device.signing_key,
        mqtt_url=mqtt_url, topic_prefix=topic_prefix, outbox_path=outbox_dir / f"{device.device_id}.sqlite",
        **overrides,
    )


def device_of(campus: Campus, session: LiveSession) -> DeviceCredentials:
    return next(d for d in campus.devices if d.room_id == session.room_id)


def secret_of(campus: Campus, student_id: str) -> bytes:
    return next(s.token_secret for s in campus.students if s.student_id == student_id)


def live_load(campus: Campus, session: LiveSession, readings: int) -> list[Item]:
    """``readings`` sensor readings with one live check-in of every enrolled student spread among them."""
    metrics = ("temperature", "humidity", "co2")
    items: list[Item] = [Sensor(metrics[i % 3], 20 + i / 1000, "u") for i in range(readings)]
    enrolled = list(session.enrolled)
    step = max(1, readings // (len(enrolled) + 1))
    for k, student_id in enumerate(enrolled):
        items.insert((k + 1) * step + k, CheckIn(student_id, secret_of(campus, student_id)))
    return items


# --------------------------------------------------------------------------- what was sent, what was committed


class Ledger:
    """What the edge agents accepted (seq per device and kind), and the attendance that must result."""

    def __init__(self) -> None:
        self.seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.attendance: dict[tuple[str, str], str] = {}

    def record(self, device_id: str, results: Iterable[tuple[str, int | None]]) -> None:
        for kind, seq in results:
            assert seq is not None, f"{device_id}: the outbox dropped a {kind}"
            self.seqs[(device_id, kind)].append(seq)

    def expect_attendance(self, session_id: str, student_id: str, status: str) -> None:
        self.attendance[(session_id, student_id)] = status

    def count(self, kind: str | None = None) -> int:
        return sum(len(s) for (_, k), s in self.seqs.items() if kind is None or k == kind)


async def committed(db: Database) -> int:
    """Accepted sensor readings and check-ins committed so far."""
    return await db.fetchval("SELECT count(*) FROM events WHERE kind = ANY($1::text[])", list(COUNTED_KINDS))


async def assert_exactly_once(db: Database, ledger: Ledger) -> dict[str, int]:
    """Every submitted event committed once: no loss, no duplicate, no rejection; attendance as expected."""
    rows = await db.fetch(
        "SELECT device_id, kind, seq FROM events WHERE kind = ANY($1::text[])", list(COUNTED_KINDS))
    got: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in rows:
        got[(r["device_id"], r["kind"])].append(r["seq"])
    for key in set(got) | set(ledger.seqs):
        expected, actual = sorted(ledger.seqs.get(key, [])), sorted(got.get(key, []))
        if expected != actual:
            missing = sorted(Counter(expected) - Counter(actual))
            extra = sorted(Counter(actual) - Counter(expected))
            raise AssertionError(f"{key}: {len(actual)} committed, {len(expected)} sent; "
                                 f"missing {missing[:20]}, duplicated/unexpected {extra[:20]}")
    duplicated = await db.fetchval(
        "SELECT count(*) FROM (SELECT device_id, seq FROM events GROUP BY 1, 2 HAVING count(*) > 1) d")
    assert duplicated == 0, f"{duplicated} (device, seq) pairs committed more than once"
    readings = await db.fetch("SELECT device_id, count(*) AS n FROM sensor_readings GROUP BY 1")
    assert {r["device_id"]: r["n"] for r in readings} == {
        device: len(seqs) for (device, kind), seqs in ledger.seqs.items() if kind == "sensor_reading"}
    rejected = await db.fetch("SELECT reason, count(*) AS n FROM rejected_events GROUP BY 1")
    assert not rejected, f"rejections: {[dict(r) for r in rejected]}"
    attendance = await db.fetch("SELECT session_id, student_id, status FROM attendance")
    assert {(r["session_id"], r["student_id"]): r["status"] for r in attendance} == ledger.attendance
    token_uses = await db.fetchval("SELECT count(*) FROM token_uses")
    assert token_uses == ledger.count("qr_scan")
    return {"events": len(rows), "sensor_readings": ledger.count("sensor_reading"),
            "check_ins": ledger.count("qr_scan"), "attendance": len(attendance)}


# --------------------------------------------------------------------------- small things


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value after ``timeout``."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = await check()
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


async def all_committed(db: Database, total: int, *, timeout: float, hub: "HubProcess",
                        agents: Sequence["EdgeAgentThread"] = ()) -> None:
    """Wait until ``total`` events are committed; on timeout, fail with what would explain why."""
    try:
        await eventually(lambda: _at_least(committed(db), total), timeout=timeout)
    except AssertionError:
        now = await committed(db)
        rejected = await db.fetch("SELECT reason, count(*) AS n FROM rejected_events GROUP BY 1")
        raise AssertionError(
            f"{now} of {total} committed after {timeout}s; rejected {[tuple(r) for r in rejected]}; "
            f"outboxes {[(a.device_id, a.outbox_depth, a.connected) for a in agents]}; "
            f"hub alive: {hub.alive}\n--- hub log ---\n{hub.log_tail(60)}") from None


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return (await count) >= n


async def wait_futures(futures: Iterable[concurrent.futures.Future], timeout: float) -> list[Any]:
    return [await trio.to_thread.run_sync(f.result, timeout) for f in futures]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def ops_token_with_mfa(web: httpx.AsyncClient) -> str:
    """Log in as the seeded ops user and enrol TOTP, as a real operator must (admin and ops need MFA).

    The hub under test is a real ``campushub serve``, which never exempts anyone from MFA: the
    access token returned is the one re-issued after enrolment.
    """
    login = await web.post("/api/v1/auth/login", json={"username": "ops", "password": "campushub"})
    token = login.raise_for_status().json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    enrolment = (await web.post("/api/v1/me/mfa/enrolment", json={}, headers=bearer)).raise_for_status().json()
    confirmed = await web.post("/api/v1/me/mfa/enrolment/confirm", headers=bearer,
                               json={"code": pyotp.TOTP(enrolment["secret"]).now()})
    return str(confirmed.raise_for_status().json()["tokens"]["access_token"])
