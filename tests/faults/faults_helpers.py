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
from datetime import datetime
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


# --------------------------------------------------------------------------- many workers (issue 13 part 2)


def worker_env(env: dict[str, str], worker_id: str, *, partitions: int, lease_s: float) -> dict[str, str]:
    """``env`` (:func:`hub_env`) for one worker of a partitioned hub: ``CAMPUSHUB_PARTITIONS``,
    ``CAMPUSHUB_PARTITION_LEASE_S`` and its own ``CAMPUSHUB_WORKER_ID``. The workers of one deployment
    share everything else, the hub client id above all (their partition sessions' ids derive from it)."""
    return dict(env, CAMPUSHUB_PARTITIONS=str(partitions), CAMPUSHUB_PARTITION_LEASE_S=f"{lease_s:g}",
                CAMPUSHUB_WORKER_ID=worker_id)


async def partition_holders(db: Database, partitions: int, *,
                            expiring_after: datetime | None = None) -> dict[int, str | None]:
    """Who holds each of partitions ``0..partitions-1`` now, by the database's clock (None: free, expired or
    never claimed). ``expiring_after``: a lease counts only if it also runs past that moment; the database's
    ``now()`` at a kill plus the lease admits only leases claimed or renewed after the kill, by a live process
    (a killed worker's last renewal runs out within a lease of its death)."""
    rows = await db.fetch(
        "SELECT partition, CASE WHEN expires_at > greatest(now(), $2::timestamptz) THEN owner END AS holder"
        " FROM partition_leases WHERE partition < $1", partitions, expiring_after)
    holders: dict[int, str | None] = dict.fromkeys(range(partitions))
    holders.update((r["partition"], r["holder"]) for r in rows)
    return holders


def held_by(holders: dict[int, str | None]) -> dict[str, set[int]]:
    """``partition_holders`` turned around: worker id -> the partitions it holds."""
    by_worker: dict[str, set[int]] = defaultdict(set)
    for partition, holder in holders.items():
        if holder is not None:
            by_worker[holder].add(partition)
    return dict(by_worker)


async def assert_event_ids_once(db: Database) -> dict[str, int]:
    """Every committed event id is stored once in ``events``, and each sensor reading's once in
    ``sensor_readings`` too, the two sets equal (an edge agent's event id is fixed with its seq when it
    enters the outbox, so with :func:`assert_exactly_once`'s (device, seq) check: each published id once)."""
    rows, ids = await _counts(db, "SELECT count(*), count(DISTINCT event_id) FROM events")
    assert rows == ids, f"{rows - ids} event rows repeat an event id"
    readings, reading_ids = await _counts(db, "SELECT count(*), count(DISTINCT event_id) FROM sensor_readings")
    assert readings == reading_ids, f"{readings - reading_ids} sensor_readings rows repeat an event id"
    unmatched = await db.fetchval("""
        SELECT count(*) FROM (
            (SELECT event_id FROM events WHERE kind = 'sensor_reading' EXCEPT SELECT event_id FROM sensor_readings)
            UNION ALL
            (SELECT event_id FROM sensor_readings EXCEPT SELECT event_id FROM events WHERE kind = 'sensor_reading')
        ) d""")
    assert unmatched == 0, f"{unmatched} sensor reading ids in only one of events and sensor_readings"
    return {"event_ids": ids, "reading_ids": reading_ids}


async def _counts(db: Database, sql: str) -> tuple[int, int]:
    row = await db.fetchrow(sql)
    assert row is not None
    return row[0], row[1]


#: The kinds a device actor hands to its room's session actor, which judges them and tells the writer:
#: that detour lets a device's later readings and heartbeats reach an earlier commit.
SCAN_KINDS = frozenset({"qr_scan", "biometric_match"})


async def assert_device_order(db: Database) -> dict[str, int]:
    """Per device, commits follow the device's order (``seq``), commits told apart by ``committed_at`` (their
    transaction's start): no event is committed after a later event of its device, except a scan after a
    later non-scan (the session actor's detour, :data:`SCAN_KINDS`, in one process as in many); and every
    scan is committed after the earlier scans. ``{"commits": ..., "scans_overtaken": ...}``: the commits
    checked, and the scans that a later reading or heartbeat of their device overtook.

    A failure names the first events committed out of order, with the later-seq commit they follow.
    """
    rows = await db.fetch("SELECT device_id, committed_at, seq, kind FROM events ORDER BY device_id, committed_at, seq")
    by_commit: dict[str, dict[Any, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_commit[r["device_id"]][r["committed_at"]].append(r)
    out_of_order: list[str] = []
    overtaken_scans = commits = 0
    for device_id, device_commits in by_commit.items():
        before = before_scan = -1  # the highest seq of the commits so far: of any kind, of scans
        for committed_at, events in device_commits.items():  # in commit order
            commits += 1
            for event in events:
                scan = event["kind"] in SCAN_KINDS
                if event["seq"] < (before_scan if scan else before):
                    out_of_order.append(f"{device_id}: seq {event['seq']} ({event['kind']}) committed at "
                                        f"{committed_at:%H:%M:%S.%f}, after seq {before_scan if scan else before}")
                elif scan and event["seq"] < before:
                    overtaken_scans += 1
            before = max(before, max(e["seq"] for e in events))
            before_scan = max([before_scan, *(e["seq"] for e in events if e["kind"] in SCAN_KINDS)])
    assert not out_of_order, "events committed out of device order:\n" + "\n".join(out_of_order[:10])
    return {"commits": commits, "scans_overtaken": overtaken_scans}


#: The parent's line for each worker it starts (hub/app/workers.py).
WORKER_STARTED = re.compile(r"campushub: worker (\S+) started \(pid (\d+)\)")


class WorkersParent(HubProcess):
    """``campushub serve --workers N``: the parent process, whose stderr carries its workers' logs too.

    :attr:`worker_pids` lists, per worker id, the pid of each start the parent reported, in order.
    """

    def __init__(self, process: trio.Process, port: int, startup_s: float) -> None:
        super().__init__(process, port, startup_s)
        self.worker_pids: dict[str, list[int]] = defaultdict(list)
        self._partial = ""

    def _keep(self, data: bytes) -> None:
        super()._keep(data)
        lines = (self._partial + data.decode(errors="replace")).split("\n")
        self._partial = lines.pop()  # a line cut by the pipe's chunking waits for its end
        for line in lines:
            if started := WORKER_STARTED.search(line):
                self.worker_pids[started.group(1)].append(int(started.group(2)))

    def current_worker_pids(self) -> list[int]:
        """The latest pid of each worker that is still this parent's child."""
        return [pids[-1] for pids in self.worker_pids.values() if _parent_of(pids[-1]) == self.pid]


def _parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)


@asynccontextmanager
async def serve_workers(env: dict[str, str], count: int, *, timeout: float = 30) -> AsyncIterator[WorkersParent]:
    """``campushub serve --workers count --port 0`` with ``env``; yields once the parent serves (its
    workers are still starting: watch their leases). On exit the parent is stopped with SIGTERM (it
    stops its workers); if it does not end, the workers it still has and then the parent are killed."""
    async with trio.open_nursery() as nursery:
        began = time.monotonic()
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "hub", "serve", "--workers", str(count), "--port", "0"], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        parent: WorkersParent | None = None
        stderr = process.stderr
        assert stderr is not None
        try:
            seen = b""
            with trio.fail_after(timeout):
                while (match := re.search(rb"serving http://[^/\s]+:(\d+)/ with", seen)) is None:
                    chunk = bytes(await stderr.receive_some(4096))
                    assert chunk, f"serve --workers exited early:\n{seen.decode(errors='replace')}"
                    seen += chunk
            parent = WorkersParent(process, int(match.group(1)), time.monotonic() - began)
            if os.environ.get("CAMPUSHUB_FAULTS_LOGS"):
                parent.log_file = Path(os.environ["CAMPUSHUB_FAULTS_LOGS"]) / f"workers-{parent.pid}.log"
            parent._keep(seen)
            nursery.start_soon(parent._drain)
            yield parent
        except BaseException:
            if parent is not None:
                print(f"--- serve --workers pid {parent.pid} (exit status {process.returncode}), "
                      f"workers {dict(parent.worker_pids)} ---")
                print("problems:\n" + "\n".join(parent.problems[-40:]))
                print("tail:\n" + parent.log_tail(120))
            raise
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(40):  # the parent gives its workers 30 s
                        await process.wait()
                if process.returncode is None:
                    for pid in parent.current_worker_pids() if parent is not None else ():
                        os.kill(pid, signal.SIGKILL)
                    process.kill()
                    await process.wait()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- probes, and a backlog straight onto the broker


@dataclass(frozen=True)
class Beat:
    """A heartbeat, as a probe: not counted (:data:`COUNTED_KINDS`), so a probe the broker dropped (no
    subscription yet) costs nothing; never record its result in a :class:`Ledger`."""

    kind = "heartbeat"

    async def submit(self, agent: EdgeAgent) -> int | None:
        return await agent.submit_heartbeat()


async def until_subscribed(db: Database, device_ids: Sequence[str],
                           probe: Callable[[list[str]], Awaitable[Any]], *, timeout: float = 30) -> int:
    """Until every device has an event committed, ``probe(devices without one)`` (send each a :class:`Beat`)
    every half second. Then each device's session (a partitioned hub: its partition's) is subscribed; a
    message published before its topic's first subscription would be dropped by the broker for good.
    Returns the rounds of probes sent."""
    rounds = 0

    async def missing() -> list[str]:
        seen = {r["device_id"] for r in await db.fetch(
            "SELECT DISTINCT device_id FROM events WHERE device_id = ANY($1::text[])", list(device_ids))}
        return [d for d in device_ids if d not in seen]

    with trio.fail_after(timeout):
        while waiting := await missing():
            rounds += 1
            await probe(waiting)
            with trio.move_on_after(0.5):
                while await missing() == waiting:
                    await trio.sleep(0.05)
    return rounds


def signed_event(device: DeviceCredentials, item: Item | Beat, seq: int, at: float) -> tuple[bytes, bytes]:
    """``(event id, signed frame)`` of ``item`` as ``device``'s edge agent would publish it, stamped ``at``
    (a check-in's token issued for ``at``, as the student's phone would)."""
    from schemas import (
        PROTOCOL_VERSION,
        Heartbeat,
        HeartbeatEvent,
        QrScan,
        QrScanEvent,
        SensorReading,
        SensorReadingEvent,
        encode_event,
        new_event_id,
    )

    event_id, ts = new_event_id(), int(at * 1000)
    event: SensorReadingEvent | QrScanEvent | HeartbeatEvent
    if isinstance(item, Sensor):
        event = SensorReadingEvent(v=PROTOCOL_VERSION, id=event_id, device=device.device_id, ts=ts, seq=seq,
                                   body=SensorReading(item.metric, float(item.value), item.unit))
    elif isinstance(item, CheckIn):
        event = QrScanEvent(v=PROTOCOL_VERSION, id=event_id, device=device.device_id, ts=ts, seq=seq,
                            body=QrScan(issue_checkin_token(item.student_id, item.secret, at)))
    else:
        event = HeartbeatEvent(v=PROTOCOL_VERSION, id=event_id, device=device.device_id, ts=ts, seq=seq,
                               body=Heartbeat(uptime_s=1, firmware="faults", outbox_depth=0))
    return event_id, encode_event(event, device.alg, device.signing_key)  # type: ignore[arg-type]


class RawPublisher:
    """Signed events of many devices published straight to the broker (QoS 1, no outbox), for a backlog
    bigger than edge agents queue in the time. Use :func:`raw_publisher`.

    Each device's seqs run from 1 over every :meth:`publish`. :attr:`ids`: the event id of every counted
    event (:data:`COUNTED_KINDS`) whose PUBACK came back (the broker holds it for its subscribers).
    """

    def __init__(self, client: Any, topic_prefix: str) -> None:
        from schemas import Topics

        self._client = client
        self._topics = Topics(topic_prefix)
        self._next_seq: dict[str, int] = defaultdict(lambda: 1)
        self.ids: list[bytes] = []

    async def publish(self, loads: dict[DeviceCredentials, Sequence[Item | Beat]], *,
                      spacing_s: float = 0.002) -> dict[str, list[tuple[str, int]]]:
        """Publish each device's items in order; ``[(kind, seq), ...]`` per device (what
        :meth:`Ledger.record` takes), once every PUBACK is back.

        A device's events go one at a time (each awaits its PUBACK: nothing overtakes), the devices at
        once. Device times are ``spacing_s`` apart and end now: no device stamps more than ``1 / spacing_s``
        events in a second of its clock (the hub's flood detector counts those).
        """
        results: dict[str, list[tuple[str, int]]] = {}

        async def one_device(device: DeviceCredentials, items: Sequence[Item | Beat]) -> None:
            topic, sent = self._topics.uplink(device.device_id), results.setdefault(device.device_id, [])
            first_at = time.time() - (len(items) - 1) * spacing_s
            for i, item in enumerate(items):
                seq = self._next_seq[device.device_id]
                self._next_seq[device.device_id] = seq + 1
                event_id, frame = signed_event(device, item, seq, first_at + i * spacing_s)
                await self._client.publish(topic, frame, qos=1, wait_for_ack=True)
                if item.kind in COUNTED_KINDS:
                    self.ids.append(event_id)
                sent.append((item.kind, seq))

        async with trio.open_nursery() as nursery:
            for device, items in loads.items():
                nursery.start_soon(one_device, device, items)
        return results


@asynccontextmanager
async def raw_publisher(mqtt_url: str, cafile: Path | None, topic_prefix: str) -> AsyncIterator[RawPublisher]:
    """A :class:`RawPublisher` on its own connection (a clean session) to the broker at ``mqtt_url``."""
    from hub.core.config import MqttUrl
    from hub.mqtt import TrioMqttClient, client_tls_context

    url = MqttUrl.parse(mqtt_url)
    client = TrioMqttClient(host=url.host, port=url.port, client_id=unique("faults-publisher"), protocol=url.protocol,
                            username=url.username, password=url.password,
                            tls=client_tls_context(cafile) if url.tls else None, clean_start=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield RawPublisher(client, topic_prefix)
        nursery.cancel_scope.cancel()


async def assert_published_ids_once(db: Database, published: Iterable[bytes]) -> int:
    """Each id in ``published`` is stored once in ``events``, and ``events`` holds no other event of the counted kinds."""
    expected = {uuid.UUID(bytes=event_id) for event_id in published}
    rows = await db.fetch("SELECT event_id FROM events WHERE kind = ANY($1::text[])", list(COUNTED_KINDS))
    stored = Counter(r["event_id"] for r in rows)
    missing, twice = expected - set(stored), [i for i, n in stored.items() if n > 1]
    unexpected = set(stored) - expected
    assert not (missing or twice or unexpected), (
        f"of {len(expected)} published ids: {len(missing)} missing (e.g. {sorted(map(str, missing))[:5]}), "
        f"{len(twice)} stored twice, {len(unexpected)} stored but not published")
    return len(expected)
