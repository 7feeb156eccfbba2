"""Asks between workers over the broker (hub/app/worker_calls.py): two workers in one trio run.

The wire format is checked without a broker (every session ask and answer round-trips, datetimes,
bytes and nested dataclasses included; unregistered names are refused). The workers talk through the
run's broker (``mqtt_server_url``) under a topic prefix and client ids of each test's own. Most tests
serve with a small function shaped like a session actor's answers (``Desk``), so each can hold a
decision or a commit where it needs to; the last one serves with a real ``SessionActor`` and
``PersistenceWriter`` on PostgreSQL, reached from the other worker through
``session_call_across_workers``.
"""
from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, cast
from zoneinfo import ZoneInfo

import msgspec
import pytest
import trio
from support.hub_fixtures import link_client

from actors import ActorRef, ChildSpec, Supervisor
from hub.app.worker_calls import (
    SESSION_CALL_ERRORS,
    SESSION_CALL_TYPES,
    WireCall,
    WorkerCallBusy,
    WorkerCallCodec,
    WorkerCallFailed,
    WorkerCallRefused,
    WorkerCalls,
    WorkerCallTimeout,
    session_call_across_workers,
    valid_worker_id,
)
from hub.app.worker_links import DEVICE_TARGET, NoSuchDevice, call_server
from hub.core.bus import LiveBus
from hub.core.config import MqttUrl
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.sealed_secrets import token_secret_context
from hub.domain.checkin import MarkChange, Status
from hub.domain.checkin_network import ClientNetwork
from hub.domain.session_messages import (
    DisplayCheckin,
    ManualMarks,
    Receipt,
    ReloadRoster,
    ReloadStudents,
    RosterChange,
    SessionNotLive,
)
from hub.domain.syllabus import RecordUnderstanding, TagTopics
from hub.mqtt import TrioMqttClient
from hub.pipeline.session_actor import SESSION_MAILBOX, SessionActor, session_caller
from hub.pipeline.writer import PersistenceWriter
from schemas import Topics

# --------------------------------------------------------------------------- the wire format, no broker

AT = datetime(2030, 1, 7, 9, 30, 15, 123456, tzinfo=timezone.utc)


def _samples() -> list[object]:
    """One value of every type a session ask carries, with what could go wrong on the way."""
    return [
        ManualMarks((("st-1", "present"), ("st-2", "excused")), "fac-1", "medical\nnote é", "bulk"),
        DisplayCheckin("st-1", datetime(2030, 1, 7, 15, 0, 1, 5, tzinfo=ZoneInfo("Asia/Kolkata")), 41,
                       bytes(range(32)), b"\x00\xffnonce", "Mozilla/5.0", ClientNetwork("10.1.2.0/24", True, "room")),
        DisplayCheckin("st-2", datetime(2030, 1, 7, 9, 30), 42, b"", b"n", "", None),  # naive stays naive
        ReloadRoster(),
        ReloadStudents(("st-1", "st-2")),
        TagTopics((3, 1, 2), "fac-1", AT),
        RecordUnderstanding((("st-1", 4), ("st-2", 1)), None, "fac-1", AT),
        RecordUnderstanding((), 7, "fac-1", AT),
        Receipt(True, status="late", at=AT, flags=("many_networks",),
                changes=(MarkChange("st-1", "present", None), MarkChange("st-2", "absent", "late"))),
        Receipt(False, "invalid_request", "This student is not on the roster.", field="marks[1].student_id"),
        RosterChange(("st-3",), ("st-1", "st-2")),
    ]


def test_the_session_types_cover_every_ask_of_the_web_and_its_answers() -> None:
    assert {type(v) for v in _samples()} == set(SESSION_CALL_TYPES)
    assert SESSION_CALL_ERRORS == {"session_not_live": SessionNotLive}


@pytest.mark.parametrize("value", _samples(), ids=lambda v: type(v).__name__)
def test_every_session_ask_and_answer_round_trips_through_messagepack(value: object) -> None:
    codec = WorkerCallCodec(SESSION_CALL_TYPES)
    name, body = codec.encode(value)
    decoded = codec.decode(name, msgspec.msgpack.decode(msgspec.msgpack.encode(body)))
    assert decoded == value and type(decoded) is type(value)
    for field_name in ("scanned_at", "at"):
        sent, got = getattr(value, field_name, None), getattr(decoded, field_name, None)
        if isinstance(sent, datetime):
            assert isinstance(got, datetime)
            assert got.utcoffset() == sent.utcoffset()  # naive stays naive, +05:30 stays +05:30
    if isinstance(value, DisplayCheckin):
        assert isinstance(decoded, DisplayCheckin) and type(decoded.device_hash) is bytes
        assert decoded.client == value.client and (decoded.client is None or type(decoded.client) is ClientNetwork)
    if isinstance(value, Receipt):
        assert isinstance(decoded, Receipt) and all(type(c) is MarkChange for c in decoded.changes)


def test_a_receipt_travels_without_its_commit_callable() -> None:
    async def committed() -> bool:
        return True

    codec = WorkerCallCodec(SESSION_CALL_TYPES)
    name, body = codec.encode(Receipt(True, committed=committed))
    assert name == "Receipt" and body["committed"] is None
    assert codec.encode(None) == (None, None) and codec.decode(None, None) is None


@dataclass(frozen=True)
class Unregistered:
    text: str


def test_what_is_not_registered_or_does_not_fit_is_refused() -> None:
    codec = WorkerCallCodec(SESSION_CALL_TYPES)
    with pytest.raises(WorkerCallRefused, match="not a registered"):
        codec.encode(Unregistered("x"))
    for name in ("Unregistered", "os.system", "__import__('os')", "SessionNotLive", "Receipt "):
        with pytest.raises(WorkerCallRefused, match="not a registered"):
            codec.decode(name, {"text": "x"})
    with pytest.raises(WorkerCallRefused, match="not a valid Receipt"):  # a status outside the Literal
        codec.decode("Receipt", {"accepted": True, "changes": [{"student_id": "s", "status": "gone", "before": None}]})
    with pytest.raises(WorkerCallRefused, match="not a valid Receipt"):  # a callable cannot come off the wire
        codec.decode("Receipt", {"accepted": True, "committed": "print"})
    with pytest.raises(WorkerCallRefused, match="not a valid ManualMarks"):
        codec.decode("ManualMarks", {"marks": "all", "actor": "a", "reason": "r"})
    with pytest.raises(ValueError, match="two registered types"):
        WorkerCallCodec([Unregistered, replace_named(Unregistered)])


def replace_named(cls: type) -> type:
    """Another dataclass with the same ``__name__`` as ``cls``."""
    return dataclass(frozen=True)(type(cls.__name__, (), {"__annotations__": {"other": "int"}}))


def test_worker_ids_are_single_topic_levels() -> None:
    topics = Topics("campus")
    assert topics.worker_calls("w-1") == "campus/v1/hub/workers/w-1/calls"
    assert topics.worker_replies("w_2") == "campus/v1/hub/workers/w_2/replies"
    assert topics.parse(topics.worker_calls("w-1")) is None  # never taken for a device topic
    for bad in ("", "a/b", "+", "#", "w\0"):
        with pytest.raises(ValueError):
            topics.worker_calls(bad)
        with pytest.raises(ValueError):
            topics.worker_replies(bad)
    assert valid_worker_id("host-1_2") and valid_worker_id("x" * 64)
    for bad in ("", "x" * 65, "a.b", "a b", "a/b", "+", "é", "w-1\n"):
        assert not valid_worker_id(bad)
    client = TrioMqttClient(host="127.0.0.1", client_id=f"unused-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ValueError, match="not a worker id"):
        WorkerCalls(client, topics, "a/b", _never_serve, message_types=SESSION_CALL_TYPES, error_types={})
    with pytest.raises(ValueError, match="reserved"):
        WorkerCalls(client, topics, "w-1", _never_serve, message_types=SESSION_CALL_TYPES,
                    error_types={"busy": SessionNotLive})


async def _never_serve(target: str, message: object) -> object:
    raise AssertionError("not served")


# --------------------------------------------------------------------------- two workers on the broker

integration = pytest.mark.integration


class Desk:
    """What a worker serves with in these tests: answers shaped like a session actor's, for the sessions
    in ``live``; each decision and each commit can be held by the test (``hold_decisions``,
    ``hold_commits``), and ``entered`` tells when a call is being served."""

    def __init__(self, live: Sequence[str] = ("s-1",), *, committed: bool = True) -> None:
        self.live = set(live)
        self.committed = committed
        self.served: list[tuple[str, object]] = []
        self.entered = trio.Event()
        self.hold_decisions: trio.Event | None = None
        self.hold_commits: trio.Event | None = None
        self.never_commit = False

    async def __call__(self, target: str, message: object) -> object:
        self.served.append((target, message))
        self.entered.set()
        if self.hold_decisions is not None:
            await self.hold_decisions.wait()
        if target not in self.live:
            raise SessionNotLive(target)
        if isinstance(message, ManualMarks):
            hold, outcome, never = self.hold_commits, self.committed, self.never_commit

            async def committed() -> bool:
                if never:
                    await trio.sleep_forever()
                if hold is not None:
                    await hold.wait()
                return outcome

            changes = tuple(MarkChange(student, cast(Status, status), None) for student, status in message.marks)
            return Receipt(True, changes=changes, committed=committed)
        if isinstance(message, ReloadStudents):
            return RosterChange((target,), message.student_ids)
        if isinstance(message, ReloadRoster):
            return None
        raise RuntimeError(f"the desk cannot serve a {type(message).__name__}")


class Worker:
    def __init__(self, url: MqttUrl, topics: Topics, name: str, serve: Callable[[str, object], Awaitable[object]],
                 *, types: Sequence[type] = SESSION_CALL_TYPES, **options: Any) -> None:
        self.calls = WorkerCalls(link_client(url, f"{topics.prefix}-{name}"), topics, name, serve,
                                 message_types=types, error_types=SESSION_CALL_ERRORS, **options)

    @property
    def stats(self) -> Any:
        return self.calls.stats


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for worker in workers:
            with trio.fail_after(10):
                await nursery.start(worker.calls.run)
        yield
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_worker(url: MqttUrl, topics: Topics, name: str) -> AsyncIterator[tuple[TrioMqttClient, trio.MemoryReceiveChannel]]:
    """A plain client subscribed to the replies of worker ``name``: to put on the wire what no WorkerCalls would."""
    client = link_client(url, f"{topics.prefix}-{name}")

    async def subscribe(c: TrioMqttClient) -> None:
        await c.subscribe(topics.worker_replies(name), qos=1)

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(lambda task_status: client.run(on_connect=subscribe, task_status=task_status))
        yield client, client.messages
        nursery.cancel_scope.cancel()


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for a counter the worker updates as it handles what the broker delivers."""
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.01)


async def next_reply(messages: trio.MemoryReceiveChannel) -> dict[str, Any]:
    with trio.fail_after(5):
        inbound = await messages.receive()
    return msgspec.msgpack.decode(inbound.payload)


def _wire_call(call_id: str, reply_to: str, type_name: str, body: Any, target: str) -> bytes:
    """A call as a worker would publish it (to put on the wire what the test needs)."""
    return msgspec.msgpack.encode(WireCall(call_id, reply_to, target, 5000, type_name, body))


@pytest.fixture
def broker(mqtt_server_url: str) -> MqttUrl:
    return MqttUrl.parse(mqtt_server_url)


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics(f"{topic_prefix}-calls-{uuid.uuid4().hex[:8]}")


MARKS = ManualMarks((("st-1", "present"), ("st-2", "excused")), "fac-1", "medical")


@integration
@pytest.mark.parametrize("outcome", [True, False])
async def test_a_receipt_comes_back_at_the_decision_and_its_commit_outcome_after(
        broker: MqttUrl, topics: Topics, outcome: bool) -> None:
    desk = Desk(committed=outcome)
    desk.hold_commits = trio.Event()
    a, b = Worker(broker, topics, "w-a", _never_serve), Worker(broker, topics, "w-b", desk)
    async with running(a, b):
        with trio.fail_after(10):
            receipt = await a.calls.ask("w-b", "s-1", MARKS, timeout=5)
        # The decision is here while the commit is still held on the other worker.
        assert isinstance(receipt, Receipt) and receipt.accepted
        assert receipt.changes == (MarkChange("st-1", "present", None), MarkChange("st-2", "excused", None))
        assert receipt.committed is not None
        assert desk.served == [("s-1", MARKS)] and desk.served[0][1] is not MARKS
        desk.hold_commits.set()
        with trio.fail_after(10):
            assert await receipt.committed() is outcome
        assert (a.stats.asked, a.stats.answered, b.stats.served) == (1, 1, 1)
        assert a.stats.late_replies == b.stats.undecodable == b.stats.commit_timeouts == 0


@integration
async def test_a_commit_without_outcome_in_time_is_false_on_both_sides(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    desk.never_commit = True
    a, b = Worker(broker, topics, "w-a", _never_serve), Worker(broker, topics, "w-b", desk, commit_timeout_s=0.2)
    async with running(a, b):
        receipt = await a.calls.ask("w-b", "s-1", MARKS, timeout=5)
        assert isinstance(receipt, Receipt) and receipt.committed is not None
        with trio.fail_after(10):
            assert await receipt.committed() is False
        assert b.stats.commit_timeouts == 1


@integration
async def test_answers_without_commit_none_and_errors_by_name(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    a, b = Worker(broker, topics, "w-a", _never_serve), Worker(broker, topics, "w-b", desk)
    async with running(a, b):
        assert await a.calls.ask("w-b", "s-1", ReloadStudents(("st-9",)), timeout=5) == RosterChange(("s-1",), ("st-9",))
        assert await a.calls.ask("w-b", "s-1", ReloadRoster(), timeout=5) is None
        # The serving side's SessionNotLive comes back as one, with its text.
        with pytest.raises(SessionNotLive) as not_live:
            await a.calls.ask("w-b", "s-gone", ReloadRoster(), timeout=5)
        assert not_live.value.args == ("s-gone",)
        # Anything else it raises is a failure of unknown outcome, not a SessionNotLive.
        with pytest.raises(WorkerCallFailed, match="RuntimeError: the desk cannot serve a TagTopics"):
            await a.calls.ask("w-b", "s-1", TagTopics((1,), "fac-1", AT), timeout=5)
        assert (b.stats.served, b.stats.serve_errors, a.stats.answered) == (4, 2, 4)


@integration
async def test_no_answer_from_a_worker_that_is_not_running_is_a_timeout(broker: MqttUrl, topics: Topics) -> None:
    a = Worker(broker, topics, "w-a", _never_serve)
    async with running(a):
        with pytest.raises(WorkerCallTimeout, match="w-gone"):
            await a.calls.ask("w-gone", "s-1", MARKS, timeout=0.3)
        assert (a.stats.asked, a.stats.timeouts, a.stats.answered) == (1, 1, 0)
        with pytest.raises(ValueError, match="does not ask itself"):
            await a.calls.ask("w-a", "s-1", MARKS, timeout=1)
        with pytest.raises(ValueError, match="not a worker id"):
            await a.calls.ask("w/b", "s-1", MARKS, timeout=1)


@integration
async def test_unregistered_types_are_refused_on_each_side(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    # B is an older worker: it does not know ReloadStudents; A does not know RosterChange.
    older = tuple(t for t in SESSION_CALL_TYPES if t is not ReloadStudents)
    newer = tuple(t for t in SESSION_CALL_TYPES if t is not RosterChange)
    a = Worker(broker, topics, "w-a", _never_serve, types=newer)
    b = Worker(broker, topics, "w-b", desk, types=older)
    async with running(a, b):
        with pytest.raises(WorkerCallRefused, match="not a registered"):
            await a.calls.ask("w-b", "s-1", Unregistered("rm -rf"), timeout=5)
        assert a.stats.asked == 0  # refused before anything is published
        with pytest.raises(WorkerCallRefused, match="'ReloadStudents' is not a registered"):
            await a.calls.ask("w-b", "s-1", ReloadStudents(("st-1",)), timeout=5)
        assert b.stats.unknown_type == 1 and desk.served == []
        # An answer of a type A does not know is refused there, though B served it.
        c = Worker(broker, topics, "w-c", desk)
        async with running(c):
            with pytest.raises(WorkerCallRefused, match="'RosterChange' is not a registered"):
                await a.calls.ask("w-c", "s-1", ReloadStudents(("st-1",)), timeout=5)
        assert a.stats.unknown_type == 1 and len(desk.served) == 1


@integration
async def test_what_is_not_a_call_is_counted_and_refused_with_a_clear_error(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    b = Worker(broker, topics, "w-b", desk)
    async with running(b), raw_worker(broker, topics, "w-raw") as (raw, replies):
        calls = topics.worker_calls("w-b")
        await raw.publish(calls, _wire_call("c-1", "w-raw", "__import__('os').system", {"cmd": "id"}, "s-1"),
                          qos=1, wait_for_ack=True)
        reply = await next_reply(replies)
        assert (reply["kind"], reply["id"], reply["error"]) == ("reply", "c-1", "unknown_type")
        assert "not a registered" in reply["detail"]
        await raw.publish(calls, _wire_call("c-2", "w-raw", "ManualMarks", {"marks": 3}, "s-1"), qos=1,
                          wait_for_ack=True)
        reply = await next_reply(replies)
        assert (reply["id"], reply["error"]) == ("c-2", "undecodable")
        # Not an envelope at all, or a reply on the calls topic: counted and dropped, nobody to answer.
        await raw.publish(calls, b"\x93garbage\n\x1b[31m", qos=1, wait_for_ack=True)
        await raw.publish(calls, msgspec.msgpack.encode({"kind": "reply", "id": "x"}), qos=1, wait_for_ack=True)
        await raw.publish(calls, msgspec.msgpack.encode({"kind": "call", "id": "c-3", "reply_to": "a/b#",
                                                         "target": "s", "timeout_ms": 10, "type": "x"}),
                          qos=1, wait_for_ack=True)
        # A reply-to that is a worker id plus a newline would put a newline in the reply's topic.
        await raw.publish(calls, _wire_call("c-4", "w-raw\n", "ManualMarks", {"marks": []}, "s-1"), qos=1,
                          wait_for_ack=True)
        await until(lambda: b.stats.undecodable == 5)
        assert b.stats.unknown_type == 1 and desk.served == []


@integration
async def test_a_redelivered_call_is_served_once(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    b = Worker(broker, topics, "w-b", desk)
    async with running(b), raw_worker(broker, topics, "w-raw") as (raw, replies):
        call = _wire_call("c-1", "w-raw", "ReloadRoster", {}, "s-1")
        await raw.publish(topics.worker_calls("w-b"), call, qos=1, wait_for_ack=True)
        await raw.publish(topics.worker_calls("w-b"), call, qos=1, wait_for_ack=True)
        reply = await next_reply(replies)
        assert (reply["id"], reply.get("error"), reply.get("body")) == ("c-1", None, None)
        await until(lambda: b.stats.duplicates == 1)
        assert len(desk.served) == 1 and b.stats.served == 1


@integration
async def test_concurrent_asks_each_get_their_own_answer(broker: MqttUrl, topics: Topics) -> None:
    count = 40
    targets = [f"s-{n}" for n in range(count)]
    desk = Desk(targets)
    gates = {target: trio.Event() for target in targets}
    entered: set[str] = set()
    all_entered = trio.Event()

    async def serve(target: str, message: object) -> object:
        entered.add(target)
        if len(entered) == count:
            all_entered.set()
        await gates[target].wait()  # answered in reverse order of the asks
        return await desk(target, message)

    a, b = Worker(broker, topics, "w-a", _never_serve), Worker(broker, topics, "w-b", serve)
    answers: dict[str, object] = {}

    async def ask(target: str) -> None:
        answers[target] = await a.calls.ask("w-b", target, ReloadStudents((f"st-of-{target}",)), timeout=10)

    async with running(a, b):
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for target in targets:
                    nursery.start_soon(ask, target)
                await all_entered.wait()
                for target in reversed(targets):
                    gates[target].set()
    assert answers == {target: RosterChange((target,), (f"st-of-{target}",)) for target in targets}
    assert (a.stats.asked, a.stats.answered, a.stats.late_replies, b.stats.served) == (count, count, 0, count)


@integration
async def test_caps_refuse_at_once_on_both_sides(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk()
    desk.hold_decisions = trio.Event()
    a = Worker(broker, topics, "w-a", _never_serve, max_pending_asks=1)
    c = Worker(broker, topics, "w-c", _never_serve)
    b = Worker(broker, topics, "w-b", desk, max_concurrent_calls=1)
    async with running(a, b, c):
        first: list[object] = []
        async with trio.open_nursery() as nursery:
            async def ask_first() -> None:
                first.append(await a.calls.ask("w-b", "s-1", ReloadRoster(), timeout=10))

            nursery.start_soon(ask_first)
            with trio.fail_after(10):
                await desk.entered.wait()
            # A already waits for one answer: one more is refused here, never published.
            with pytest.raises(WorkerCallBusy):
                await a.calls.ask("w-b", "s-1", ReloadRoster(), timeout=10)
            assert (a.stats.busy, a.stats.asked) == (1, 1)
            # B already serves one call: one more (from C) is refused there, at once.
            with pytest.raises(WorkerCallBusy, match="serving 1 calls"):
                await c.calls.ask("w-b", "s-1", ReloadRoster(), timeout=10)
            assert b.stats.refused_busy == 1
            desk.hold_decisions.set()
        assert first == [None] and b.stats.served == 1


@integration
async def test_the_web_call_tries_the_local_actor_then_the_owner(broker: MqttUrl, topics: Topics) -> None:
    desk = Desk(("s-remote",))
    owners = {"s-local": "w-a", "s-remote": "w-b", "s-mine-not-live": "w-a", "s-orphan": "w-gone"}
    asked_owner: list[str] = []

    async def local(session_id: str, message: object) -> object:
        if session_id != "s-local":
            raise SessionNotLive(session_id)
        return "the local actor's answer"

    async def owner_of_session(session_id: str) -> str | None:
        asked_owner.append(session_id)
        return owners.get(session_id)

    a, b = Worker(broker, topics, "w-a", _never_serve), Worker(broker, topics, "w-b", desk)
    call = session_call_across_workers(local, owner_of_session, a.calls, timeout=0.5)
    async with running(a, b):
        assert await call("s-local", ReloadRoster()) == "the local actor's answer"
        assert asked_owner == [] and a.stats.asked == 0
        receipt = await call("s-remote", MARKS)
        assert isinstance(receipt, Receipt) and receipt.accepted and receipt.committed is not None
        assert await receipt.committed() is True
        for session_id in ("s-mine-not-live", "s-unowned", "s-orphan"):
            with pytest.raises(SessionNotLive):
                await call(session_id, MARKS)
        # Its own sessions are never asked over the broker; the orphan's owner is, and times out.
        assert (a.stats.asked, a.stats.timeouts, b.stats.served) == (2, 1, 1)


# --------------------------------------------------------------------------- a real session actor on the other worker


async def _open_session(db: Database) -> tuple[str, list[str]]:
    """A faculty, two enrolled students and an open class session of theirs; ``(session id, students)``."""
    sfx = uuid.uuid4().hex[:10]
    faculty, students = f"fac_{sfx}", [f"stu1_{sfx}", f"stu2_{sfx}"]
    room, course, session = f"room_{sfx}", f"c_{sfx}", f"live_{sfx}"
    now = datetime.now(timezone.utc)

    async def work(conn: Any) -> None:
        await conn.executemany(
            "INSERT INTO users (id, username, display_name, role, password_hash) VALUES ($1, $1, $1, $2, 'x')",
            [(faculty, "faculty")] + [(s, "student") for s in students])
        await conn.executemany(
            "INSERT INTO students (id, roll_number, token_secret_sealed) VALUES ($1, $2, $3)",
            [(s, f"R-{s}", db.secrets.encrypt(os.urandom(32), token_secret_context(s))) for s in students])
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ($1, $1, 'Main')", room)
        await conn.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ($1, $1, 'Networks', $2)",
                           course, faculty)
        await conn.executemany("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                               [(course, s) for s in students])
        await conn.execute(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ($1, $2, $3, $4, $5, 'open')",
            session, course, room, now - timedelta(minutes=5), now + timedelta(minutes=55))

    await db.run(work, transaction=True)
    return session, students


@integration
async def test_marks_asked_on_one_worker_are_judged_and_committed_by_the_actor_on_the_other(
        broker: MqttUrl, topics: Topics, db: Database) -> None:
    session, (stu1, stu2) = await _open_session(db)
    root = Supervisor("test-root")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        writer = await root.start_child(ChildSpec("writer", lambda: PersistenceWriter(
            db, LiveBus(), HubMetrics(), lambda messages: None), mailbox_size=64))
        b_sessions = await root.start_child(ChildSpec("b-sessions", lambda: Supervisor("b-sessions")))
        a_sessions = await root.start_child(ChildSpec("a-sessions", lambda: Supervisor("a-sessions")))
        assert isinstance(writer, ActorRef) and isinstance(b_sessions, Supervisor) and isinstance(a_sessions, Supervisor)
        await b_sessions.start_child(ChildSpec(session, lambda: SessionActor(session, db=db, writer=writer),
                                               mailbox_size=SESSION_MAILBOX))
        b = Worker(broker, topics, "w-b", session_caller(lambda: b_sessions))
        a = Worker(broker, topics, "w-a", _never_serve)

        async def owner_of_session(session_id: str) -> str | None:
            return "w-b" if session_id == session else None

        session_call = session_call_across_workers(session_caller(lambda: a_sessions), owner_of_session, a.calls)
        async with running(a, b):
            receipt = await session_call(session, ManualMarks(((stu1, "present"), (stu2, "excused")), "fac", "medical"))
            assert isinstance(receipt, Receipt) and receipt.accepted and receipt.committed is not None
            assert receipt.changes == (MarkChange(stu1, "present", None), MarkChange(stu2, "excused", None))
            with trio.fail_after(15):
                assert await receipt.committed() is True
            rows = await db.fetch("SELECT student_id, status, source FROM attendance WHERE session_id = $1", session)
            assert {(r["student_id"], r["status"], r["source"]) for r in rows} == {
                (stu1, "present", "manual"), (stu2, "excused", "manual")}
            # The actor judged on its own state: the same marks again change nothing.
            again = await session_call(session, ManualMarks(((stu1, "present"),), "fac", "again"))
            assert isinstance(again, Receipt) and again.accepted and again.changes == ()
            assert again.committed is not None and await again.committed() is True
            # Refusals come back with their field; other asks with their own answers.
            refused = await session_call(session, RecordUnderstanding((("someone-else", 3),), None, "fac",
                                                                     datetime.now(timezone.utc)))
            assert isinstance(refused, Receipt) and not refused.accepted
            assert (refused.reason, refused.field) == ("invalid_request", "levels[0].student_id")
            assert await session_call(session, ReloadRoster()) == RosterChange()
            assert await session_call(session, ReloadStudents((stu1,))) is None
            # A display check-in's datetimes, bytes and network reach the actor intact and are judged there.
            display = await session_call(session, DisplayCheckin(
                stu1, datetime.now(timezone.utc), 0, os.urandom(32), os.urandom(16), "phone",
                ClientNetwork("10.0.0.0/24", None)))
            assert isinstance(display, Receipt) and not display.accepted and display.reason
            assert display.committed is not None and await display.committed() is True
            kept = await db.fetchrow("SELECT outcome, network::text AS network FROM display_checkins"
                                     " WHERE session_id = $1", session)
            assert kept is not None and kept["outcome"] == display.reason and kept["network"] == "10.0.0.0/24"
            with pytest.raises(SessionNotLive):
                await session_call(f"{session}-other", ReloadRoster())
        assert b.stats.served == 6 and a.stats.asked == 6
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def test_a_device_ask_for_a_device_no_longer_ours_starts_no_actor_here() -> None:
    """The asker chose this worker from the leases just before a hand-over: answering would start the
    device's actor here, a second one beside the new owner's."""
    asked: list[str] = []

    async def ask_device(device_id: str, message: object) -> object:
        asked.append(device_id)
        return "answered"

    async def owns(device_id: str) -> bool:
        return device_id == "ours"

    serve = call_server(_never_serve, ask_device, _never_called, owns)
    assert await serve(DEVICE_TARGET + "ours", object()) == "answered"
    with pytest.raises(NoSuchDevice, match="not served by this worker"):
        await serve(DEVICE_TARGET + "moved", object())
    assert asked == ["ours"]


async def _never_called() -> None:
    raise AssertionError("not called")
