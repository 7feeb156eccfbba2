"""Asks between the hub's workers over the broker: the web on one worker reaches an actor on another.

The hub runs as several workers sharing one PostgreSQL and one broker (issue 13 part 2). A class
session's actor lives only in the worker that owns its room's partition, while the web runs in every
worker. :class:`WorkerCalls` carries an ask (``target``, ``message``) from one worker to another and
its answer back; :func:`session_call_across_workers` is ``WebContext.session_call`` over it: the local
actor first, else the owner's, through the broker.

Topics (:meth:`schemas.Topics.worker_calls` / :meth:`~schemas.Topics.worker_replies`):
``{prefix}/v1/hub/workers/{worker_id}/calls`` and ``.../replies``, QoS 1, never retained, outside
``{prefix}/v1/dev/`` (no device topic, filter or ACL covers them; the hub's account only). A worker id
is one topic level: 1-64 letters, digits, ``-`` or ``_`` (:func:`valid_worker_id`).

Wire format: one MessagePack map per message (msgspec), a union of three kinds (its ``kind`` field):

- ``call``: ``id`` (correlation id, random), ``reply_to`` (the asking worker), ``target`` (e.g. a
  session id), ``timeout_ms`` (the asker's patience), ``type`` and ``body``;
- ``reply``: ``id``, ``type`` and ``body`` of the answer (``type`` ``None``: the answer is ``None``),
  or ``error`` and ``detail``; ``commit_follows`` when the answer is a receipt (below);
- ``commit``: ``id`` and ``committed``, the boolean outcome of a receipt's commit.

A ``body`` is ``msgspec.to_builtins`` of a dataclass (or msgspec Struct) whose class is registered
(``message_types``: every ask and every answer that may travel; nested dataclasses such as
``MarkChange`` and ``ClientNetwork`` follow from the annotations), and is read back with
``msgspec.convert`` against the registered class of that name only: nothing is ever evaluated or
unpickled, and a name not registered is refused (:attr:`WorkerCallStats.unknown_type`) with an error
the asker sees as :class:`WorkerCallRefused`. Datetimes travel as RFC 3339 text (naive stays naive, an
offset keeps its value), bytes as MessagePack binary, tuples as arrays.

Receipts: an answer with a callable ``committed`` field (``hub.domain.session_messages.Receipt``:
the decision now, the commit later) is sent at once without it, with ``commit_follows``; the serving
worker then awaits ``committed()`` (at most ``commit_timeout_s``; no outcome by then is ``False``) and
sends the boolean as a ``commit`` message. The asker gets the receipt as soon as the decision arrives,
with a ``committed()`` that waits for that boolean (``False`` if it has not come ``commit_timeout_s``
plus a margin after the decision): so, as for a local actor, the ask's timeout covers the judgement
and the commit has a bound of its own.

Errors: an exception of ``serve`` whose class is in ``error_types`` (``{"session_not_live":
SessionNotLive}``) travels by that name with ``str(exc)`` and is raised again by :meth:`WorkerCalls.ask`
as ``error_types[name](detail)``. Every other failure raises a :class:`WorkerCallError`:
:class:`WorkerCallTimeout` (no answer in time: the worker is not running, is cut off, or is slow;
the call may still be served), :class:`WorkerCallBusy` (the asker's pending asks or the server's calls
are at their cap; not served), :class:`WorkerCallRefused` (not decodable, or a type not registered on
one side; not served), :class:`WorkerCallFailed` (``serve`` raised something else, or the answer could
not be sent; the outcome is unknown).

Delivery: at most once. A call is acknowledged as soon as it is read and served once per id (a QoS 1
redelivery of an id seen among the last :data:`SEEN_CALL_IDS` is dropped:
:attr:`WorkerCallStats.duplicates`). A call carries an MQTT 5 Message Expiry of the asker's timeout
(rounded up), so the broker never hands a worker an ask queued for it longer than that, and the server
stops serving it once the asker's timeout has passed since it was read
(:attr:`WorkerCallStats.serve_timeouts`; no reply). A reply whose ask is gone (timed out, cancelled)
is dropped (:attr:`WorkerCallStats.late_replies`).

Concurrency contract: one :class:`WorkerCalls` per worker, in the worker's trio run. :meth:`run` owns
its ``TrioMqttClient`` (it runs it, is the only reader of its ``messages`` and acknowledges them):
give it a client of its own, built with ``clean_start=True``. One task of ``run`` reads both topics in
order and never waits on ``serve``: replies settle their asks at once; each call is served in a task
of its own, at most ``max_concurrent_calls`` at once (a slot is held until the receipt's commit
outcome is sent); a call beyond that is refused at once with ``busy``. :meth:`ask` may be called from
any task of the run once ``run`` has started; at most ``max_pending_asks`` wait at once, and one more
raises :class:`WorkerCallBusy` without publishing; at most as many received receipts wait for their
commit outcome, and one more gives up the oldest (its ``committed()`` answers ``False``). Refusals
(``busy``, ``unknown_type``, ``undecodable``) are sent from tasks of their own, at most
``max_concurrent_calls`` at once; beyond that none is sent and the asker times out. Counters are
plain ints, read them any time.
Cancel ``run`` to stop; asks still waiting then raise :class:`WorkerCallFailed`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections import OrderedDict
from typing import Annotated, Any, Awaitable, Callable, Mapping, Sequence, Union

import msgspec
import trio

from hub.core.config import MQTT_MAX_PACKET_SIZE, WORKER_ID_PATTERN, valid_worker_id
from hub.core.log_format import escape_controls
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
from hub.mqtt import InboundMessage, MqttError, TrioMqttClient, receive_batches
from schemas import Topics

log = logging.getLogger("hub.worker_calls")

__all__ = [
    "SESSION_CALL_ERRORS", "SESSION_CALL_TYPES", "WORKER_ID_PATTERN", "WorkerCallBusy", "WorkerCallCodec",
    "WorkerCallError", "WorkerCallFailed", "WorkerCallRefused", "WorkerCallStats", "WorkerCallTimeout",
    "WorkerCalls", "session_call_across_workers", "valid_worker_id",
]

#: What ``WebContext.session_call`` sends a session actor and what it answers: the asks and answers of
#: hub/domain/session_messages.py and the syllabus asks of hub/domain/syllabus.py (all answered with a
#: ``Receipt``, but ``ReloadRoster`` (a ``RosterChange``) and ``ReloadStudents`` (``None``)).
SESSION_CALL_TYPES: tuple[type, ...] = (
    ManualMarks, DisplayCheckin, ReloadRoster, ReloadStudents, TagTopics, RecordUnderstanding,
    Receipt, RosterChange,
)
#: The errors a session ask raises on purpose, by their wire names.
SESSION_CALL_ERRORS: Mapping[str, type[Exception]] = {"session_not_live": SessionNotLive}

#: Serve-side bound on a receipt's commit, as the web's own wait (web/checkin_flow.COMMIT_TIMEOUT_S).
DEFAULT_COMMIT_TIMEOUT_S = 15.0
#: Calls served at once per worker before one more is refused ``busy`` (each holds a task; a receipt's
#: slot is held until its commit outcome is sent).
DEFAULT_MAX_CONCURRENT_CALLS = 256
#: Asks of this worker waiting for an answer (and receipts waiting for their commit outcome) at once.
DEFAULT_MAX_PENDING_ASKS = 1024
#: Call ids remembered to drop a QoS 1 redelivery (at-most-once serving).
SEEN_CALL_IDS = 4096
#: Extra wait of an asker's ``committed()`` over the server's commit bound, for the trip of the outcome.
_COMMIT_MARGIN_S = 5.0
#: Room left in a packet for the PUBLISH's fixed header, topic, packet id and properties.
_PACKET_OVERHEAD = 512
#: How many received messages the receiving task handles (and acknowledges in one write) at once.
_RECEIVE_BATCH = 256
#: Error names of the protocol itself; ``error_types`` may not use them.
_BUSY, _UNKNOWN_TYPE, _UNDECODABLE, _FAILED = "busy", "unknown_type", "undecodable", "failed"
_RESERVED_ERRORS = frozenset({_BUSY, _UNKNOWN_TYPE, _UNDECODABLE, _FAILED})
#: The field of an answer that makes it a receipt whose commit outcome follows (``Receipt.committed``).
_COMMIT_FIELD = "committed"


def _check_worker_id(worker_id: str) -> str:
    if not isinstance(worker_id, str) or not valid_worker_id(worker_id):
        raise ValueError(f"not a worker id (1-64 letters, digits, '-' or '_'): {worker_id!r}")
    return worker_id


# ---------------------------------------------------------------------------------------------- errors

class WorkerCallError(Exception):
    """An ask of another worker that got no answer of its own (see the subclasses)."""


class WorkerCallTimeout(WorkerCallError):
    """No answer within the ask's timeout: the worker is not running, is cut off, or is slow (the call
    may still be served after this)."""


class WorkerCallBusy(WorkerCallError):
    """Not served: this worker's pending asks, or the other worker's served calls, are at their cap."""


class WorkerCallRefused(WorkerCallError):
    """Not served (or its answer not taken): a message or answer of a type not registered on one side,
    not decodable, or too large for the broker."""


class WorkerCallFailed(WorkerCallError):
    """Served, but ``serve`` raised an error not in ``error_types``, or the answer could not be sent:
    the outcome is unknown. Also raised by asks still waiting when :meth:`WorkerCalls.run` stops."""


# ---------------------------------------------------------------------------------------------- wire

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_WorkerId = Annotated[str, msgspec.Meta(pattern=WORKER_ID_PATTERN)]
_TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class WireCall(msgspec.Struct, frozen=True, tag_field="kind", tag="call"):
    """An ask of another worker (see the module doc)."""

    id: _Id
    reply_to: _WorkerId
    target: Annotated[str, msgspec.Meta(max_length=256)]
    timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]
    type: _TypeName
    body: Any = None


class WireReply(msgspec.Struct, frozen=True, tag_field="kind", tag="reply"):
    """The answer to one :class:`WireCall`: ``type``/``body``, or ``error``/``detail``."""

    id: _Id
    type: _TypeName | None = None
    body: Any = None
    commit_follows: bool = False
    error: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    detail: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class WireCommit(msgspec.Struct, frozen=True, tag_field="kind", tag="commit"):
    """The commit outcome of a receipt sent before with ``commit_follows``."""

    id: _Id
    committed: bool


_DECODER = msgspec.msgpack.Decoder(Union[WireCall, WireReply, WireCommit])
_ENCODER = msgspec.msgpack.Encoder()


class WorkerCallCodec:
    """Registered message and answer types by name: ``encode`` to ``(name, builtins)``, ``decode`` back.

    Pure, no I/O; one per :class:`WorkerCalls`, shareable. ``types``: dataclasses or msgspec Structs,
    no two of the same ``__name__`` (``ValueError``).
    """

    def __init__(self, types: Sequence[type]) -> None:
        by_name: dict[str, type] = {}
        for cls in types:
            if not isinstance(cls, type) or not (dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct)):
                raise ValueError(f"not a dataclass or msgspec Struct: {cls!r}")
            if by_name.setdefault(cls.__name__, cls) is not cls:
                raise ValueError(f"two registered types named {cls.__name__!r}")
        self._by_name = by_name

    @property
    def names(self) -> frozenset[str]:
        """The registered names."""
        return frozenset(self._by_name)

    def encode(self, value: object) -> tuple[str | None, Any]:
        """``(type name, body)`` of ``value`` (``(None, None)`` for ``None``); a receipt's ``committed`` is
        left out. ``WorkerCallRefused`` for a type not registered, or a field that cannot be carried."""
        if value is None:
            return None, None
        cls = type(value)
        if self._by_name.get(cls.__name__) is not cls:
            raise WorkerCallRefused(f"{cls.__module__}.{cls.__qualname__} is not a registered worker-call type")
        if _has_commit_field(cls) and getattr(value, _COMMIT_FIELD) is not None:
            value = _with_committed(value, None)
        try:
            return cls.__name__, msgspec.to_builtins(value, builtin_types=(bytes,))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise WorkerCallRefused(f"a {cls.__name__} cannot be sent to another worker: {exc}") from None

    def decode(self, name: str | None, body: Any) -> object:
        """The value named ``name`` built from ``body`` (``None`` for ``None``). ``WorkerCallRefused`` for a name
        not registered (nothing is looked up anywhere else) or a body that does not fit its type."""
        if name is None:
            return None
        cls = self._by_name.get(name)
        if cls is None:
            raise WorkerCallRefused(f"{name!r} is not a registered worker-call type")
        try:
            return msgspec.convert(body, cls)
        except msgspec.ValidationError as exc:
            raise WorkerCallRefused(f"not a valid {name}: {exc}") from None


def _has_commit_field(cls: type) -> bool:
    return dataclasses.is_dataclass(cls) and any(f.name == _COMMIT_FIELD for f in dataclasses.fields(cls))


def _with_committed(receipt: Any, committed: Callable[[], Awaitable[bool]] | None) -> Any:
    """A copy of ``receipt`` (a dataclass instance with a ``committed`` field) with ``committed`` replaced."""
    return dataclasses.replace(receipt, **{_COMMIT_FIELD: committed})


# ---------------------------------------------------------------------------------------------- state

@dataclasses.dataclass(slots=True)
class WorkerCallStats:
    """Counters of one :class:`WorkerCalls`; plain ints, read them any time."""

    asked: int = 0  # calls published by ask()
    answered: int = 0  # asks settled by a reply (an answer or an error)
    timeouts: int = 0  # asks that got no reply in time
    busy: int = 0  # asks refused here because max_pending_asks were waiting (never published)
    served: int = 0  # calls handed to serve
    refused_busy: int = 0  # calls refused because max_concurrent_calls were being served
    serve_errors: int = 0  # calls whose serve raised (mapped or not)
    serve_timeouts: int = 0  # calls whose serve outlived the asker's timeout (no reply sent)
    commit_timeouts: int = 0  # receipts whose commit gave no outcome within commit_timeout_s (sent as False)
    unknown_type: int = 0  # calls or answers of a type not registered here (refused)
    undecodable: int = 0  # payloads that are not one of ours, or bodies that do not fit their type
    duplicates: int = 0  # redelivered calls (an id already served), dropped
    late_replies: int = 0  # replies and commit outcomes for asks no longer waiting, dropped


class _PendingAsk:
    """One ask waiting for its reply; settled once by the receiving task."""

    __slots__ = ("done", "answer", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: object = None
        self.error: BaseException | None = None

    def settle(self, answer: object = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.answer, self.error = answer, error
            self.done.set()


class _CommitOutcome:
    """The commit outcome of one receipt received from another worker; ``False`` after ``deadline``."""

    __slots__ = ("done", "committed", "deadline")

    def __init__(self, deadline: float) -> None:
        self.done = trio.Event()
        self.committed = False
        self.deadline = deadline

    def settle(self, committed: bool) -> None:
        if not self.done.is_set():
            self.committed = committed
            self.done.set()

    async def wait(self) -> bool:
        with trio.move_on_at(self.deadline):
            await self.done.wait()
        return self.committed


# ---------------------------------------------------------------------------------------------- calls

class WorkerCalls:
    """Asks other workers (:meth:`ask`) and serves their asks with ``serve`` (:meth:`run`), through ``client``.

    ``worker_id``: this worker's id (:func:`valid_worker_id`), unique in the deployment. ``client``: a
    ``TrioMqttClient`` of its own, not yet run, with ``clean_start=True`` (a short ``session_expiry_s``
    keeps what arrives during a short disconnect; calls expire on the broker anyway). ``serve(target,
    message)``: answers one call, in this worker only (never across workers: pass the local
    ``session_caller``, or calls could go round); its answer must be ``None`` or of a registered type.
    ``message_types``: every type that may travel, asks and answers (:data:`SESSION_CALL_TYPES`).
    ``error_types``: the exceptions of ``serve`` that travel by name (:data:`SESSION_CALL_ERRORS`); the
    names ``busy``, ``unknown_type``, ``undecodable`` and ``failed`` are the protocol's own.

    Bounds (see the module doc): ``max_concurrent_calls`` served at once, one more refused ``busy`` at
    once; ``max_pending_asks`` waiting here at once, one more raises :class:`WorkerCallBusy`;
    ``commit_timeout_s`` for a receipt's commit, on the serving side; ``max_payload_bytes`` per message
    (the broker's packet limit): a larger ask raises :class:`WorkerCallRefused`, a larger answer is
    sent as ``failed``.
    """

    def __init__(
        self,
        client: TrioMqttClient,
        topics: Topics,
        worker_id: str,
        serve: Callable[[str, object], Awaitable[object]],
        *,
        message_types: Sequence[type],
        error_types: Mapping[str, type[Exception]],
        max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS,
        max_pending_asks: int = DEFAULT_MAX_PENDING_ASKS,
        commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S,
        max_payload_bytes: int = MQTT_MAX_PACKET_SIZE - _PACKET_OVERHEAD,
    ) -> None:
        self.worker_id = _check_worker_id(worker_id)
        if max_concurrent_calls < 1 or max_pending_asks < 1:
            raise ValueError("max_concurrent_calls and max_pending_asks must be at least 1")
        if not commit_timeout_s > 0:
            raise ValueError("commit_timeout_s must be positive")
        reserved = _RESERVED_ERRORS & set(error_types)
        if reserved:
            raise ValueError(f"error names reserved by the protocol: {sorted(reserved)}")
        self._client = client
        self._topics = topics
        self._calls_topic = topics.worker_calls(worker_id)
        self._replies_topic = topics.worker_replies(worker_id)
        self._serve = serve
        self.codec = WorkerCallCodec(message_types)
        self._error_types = dict(error_types)
        self._max_concurrent_calls = max_concurrent_calls
        self._max_pending_asks = max_pending_asks
        self._commit_timeout_s = commit_timeout_s
        self._max_payload_bytes = max_payload_bytes
        self.stats = WorkerCallStats()
        self._pending: dict[str, _PendingAsk] = {}
        #: Receipts' commit outcomes still to come, oldest first (each expires commit bound + margin after).
        self._commits: OrderedDict[str, _CommitOutcome] = OrderedDict()
        self._seen_calls: OrderedDict[str, None] = OrderedDict()
        self._serving = 0
        self._refusing = 0
        self._nursery: trio.Nursery | None = None
        self._stopped = False

    # ------------------------------------------------------------------ asking side

    async def ask(self, worker_id: str, target: str, message: object, *, timeout: float) -> object:
        """Ask the worker ``worker_id`` to serve ``message`` for ``target``; its answer, decoded.

        Raises, as ``error_types[name]``, an error ``serve`` raised there; :class:`WorkerCallTimeout`
        after ``timeout`` seconds without a reply; :class:`WorkerCallBusy` when ``max_pending_asks`` are
        already waiting (nothing published); :class:`WorkerCallRefused` for a message of an unregistered
        type, too large, or refused there, or an answer of a type not registered here;
        :class:`WorkerCallFailed` when it failed there or :meth:`run` stops. A receipt comes back with a
        ``committed()`` that waits for the other worker's commit outcome. ``ValueError`` for a malformed
        worker id or our own (never ask yourself over the broker). Any task of the run, once :meth:`run`
        has started; cancellation withdraws the wait, not the call.
        """
        if _check_worker_id(worker_id) == self.worker_id:
            raise ValueError("a worker does not ask itself over the broker")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if self._stopped:
            raise WorkerCallFailed("worker calls are not running")
        name, body = self.codec.encode(message)
        if name is None:
            raise WorkerCallRefused("None is not a message")
        if len(self._pending) >= self._max_pending_asks:
            self.stats.busy += 1
            raise WorkerCallBusy(f"{len(self._pending)} asks of other workers are waiting already")
        call_id = uuid.uuid4().hex
        payload = _ENCODER.encode(WireCall(call_id, self.worker_id, target, max(1, math.ceil(timeout * 1000)),
                                           name, body))
        if len(payload) > self._max_payload_bytes:
            raise WorkerCallRefused(f"a {name} of {len(payload)} bytes is over the {self._max_payload_bytes} "
                                    "the broker takes")
        pending = self._pending[call_id] = _PendingAsk()  # before publishing: the reply may come at once
        try:
            with trio.move_on_after(timeout):
                await self._client.publish(self._topics.worker_calls(worker_id), payload, qos=1,
                                           message_expiry_s=max(1, math.ceil(timeout)))
                self.stats.asked += 1
                await pending.done.wait()
        finally:
            del self._pending[call_id]
        if not pending.done.is_set():
            self.stats.timeouts += 1
            raise WorkerCallTimeout(f"no answer from worker {worker_id} within {timeout:g} s")
        if pending.error is not None:
            raise pending.error
        return pending.answer

    def _settle_reply(self, reply: WireReply) -> None:
        pending = self._pending.get(reply.id)
        if pending is None or pending.done.is_set():
            self.stats.late_replies += 1
            return
        self.stats.answered += 1
        if reply.error is not None:
            pending.settle(error=self._error_from(reply.error, reply.detail))
            return
        try:
            answer = self.codec.decode(reply.type, reply.body)
        except WorkerCallRefused as exc:
            self._count_refusal(reply.type)
            log.warning("worker calls %s: refusing an answer: %s", self.worker_id, escape_controls(str(exc)))
            pending.settle(error=exc)
            return
        if reply.commit_follows and _has_commit_field(type(answer)):
            outcome = self._expect_commit(reply.id)
            answer = _with_committed(answer, outcome.wait)
        pending.settle(answer)

    def _count_refusal(self, name: str | None) -> None:
        if name is not None and name not in self.codec.names:
            self.stats.unknown_type += 1
        else:
            self.stats.undecodable += 1

    def _error_from(self, name: str, detail: str) -> BaseException:
        cls = self._error_types.get(name)
        if cls is not None:
            try:
                return cls(detail)
            except Exception:  # an error class that does not take one message
                return WorkerCallFailed(f"{name}: {detail}")
        if name == _BUSY:
            return WorkerCallBusy(detail)
        if name in (_UNKNOWN_TYPE, _UNDECODABLE):
            return WorkerCallRefused(detail)
        return WorkerCallFailed(f"{name}: {detail}" if name != _FAILED else detail)

    def _expect_commit(self, call_id: str) -> _CommitOutcome:
        now = trio.current_time()
        self._expire_commits(now)
        while len(self._commits) >= self._max_pending_asks:
            # Over the cap: the oldest receipt's outcome is given up (its committed() answers False).
            _, oldest = self._commits.popitem(last=False)
            oldest.settle(False)
        outcome = self._commits[call_id] = _CommitOutcome(now + self._commit_timeout_s + _COMMIT_MARGIN_S)
        return outcome

    def _expire_commits(self, now: float) -> None:
        # Every outcome gets the same bound, so the oldest expires first.
        while self._commits:
            call_id, outcome = next(iter(self._commits.items()))
            if outcome.deadline > now:
                break
            del self._commits[call_id]
            outcome.settle(False)

    def _settle_commit(self, commit: WireCommit) -> None:
        outcome = self._commits.pop(commit.id, None)
        if outcome is None:
            self.stats.late_replies += 1
            return
        outcome.settle(commit.committed)

    # ------------------------------------------------------------------ serving side

    def _take_call(self, call: WireCall) -> None:
        """Decide about one call, synchronously: refuse it, drop it, or start serving it."""
        if call.id in self._seen_calls:
            self.stats.duplicates += 1
            return
        self._seen_calls[call.id] = None
        if len(self._seen_calls) > SEEN_CALL_IDS:
            self._seen_calls.popitem(last=False)
        try:
            message = self.codec.decode(call.type, call.body)
        except WorkerCallRefused as exc:
            self._count_refusal(call.type)
            log.warning("worker calls %s: refusing a call from %s: %s", self.worker_id, call.reply_to,
                        escape_controls(str(exc)))
            unknown = call.type not in self.codec.names
            self._reply_soon(call, WireReply(call.id, error=_UNKNOWN_TYPE if unknown else _UNDECODABLE,
                                             detail=str(exc)[:2000]))
            return
        if self._serving >= self._max_concurrent_calls:
            self.stats.refused_busy += 1
            self._reply_soon(call, WireReply(call.id, error=_BUSY, detail=(
                f"worker {self.worker_id} is serving {self._serving} calls already")))
            return
        assert self._nursery is not None
        self._serving += 1
        self._nursery.start_soon(self._serve_call, call, message)

    def _reply_soon(self, call: WireCall, reply: WireReply) -> None:
        # A refusal is sent from a task of its own, so the receiving task never waits on the broker; at
        # most max_concurrent_calls of them at once, beyond that none is sent (the asker times out).
        if self._refusing >= self._max_concurrent_calls:
            return
        assert self._nursery is not None
        self._refusing += 1
        self._nursery.start_soon(self._send_refusal, call, reply)

    async def _send_refusal(self, call: WireCall, reply: WireReply) -> None:
        try:
            await self._send_reply(call, reply)
        finally:
            self._refusing -= 1

    async def _serve_call(self, call: WireCall, message: object) -> None:
        try:
            self.stats.served += 1
            with trio.move_on_after(call.timeout_ms / 1000) as scope:
                try:
                    answer = await self._serve(call.target, message)
                except Exception as exc:
                    self.stats.serve_errors += 1
                    await self._send_reply(call, self._error_reply(call, exc))
                    return
            if scope.cancelled_caught:
                self.stats.serve_timeouts += 1  # the asker has given up: no reply
                return
            committed = getattr(answer, _COMMIT_FIELD, None) if _has_commit_field(type(answer)) else None
            try:
                name, body = self.codec.encode(answer)
                reply = WireReply(call.id, name, body, commit_follows=committed is not None)
            except WorkerCallRefused as exc:
                log.error("worker calls %s: cannot send the answer to a %s: %s", self.worker_id, call.type,
                          escape_controls(str(exc)))
                await self._send_reply(call, WireReply(call.id, error=_FAILED, detail=str(exc)[:2000]))
                return
            if not await self._send_reply(call, reply) or committed is None:
                return
            ok = False
            with trio.move_on_after(self._commit_timeout_s) as commit_scope:
                ok = bool(await committed())
            if commit_scope.cancelled_caught:
                self.stats.commit_timeouts += 1
            await self._send_reply(call, WireCommit(call.id, ok))
        except Exception:
            log.exception("worker calls %s: serving a %s from %s failed", self.worker_id, call.type, call.reply_to)
        finally:
            self._serving -= 1

    def _error_reply(self, call: WireCall, exc: Exception) -> WireReply:
        for name, cls in self._error_types.items():
            if isinstance(exc, cls):
                return WireReply(call.id, error=name, detail=str(exc)[:2000])
        log.error("worker calls %s: serving a %s for %s raised", self.worker_id, call.type,
                  escape_controls(call.target), exc_info=exc)
        return WireReply(call.id, error=_FAILED, detail=f"{type(exc).__name__}: {exc}"[:2000])

    async def _send_reply(self, call: WireCall, reply: WireReply | WireCommit) -> bool:
        """Publish ``reply`` to the asker; whether it went (an oversize answer goes as ``failed``)."""
        payload = _ENCODER.encode(reply)
        if len(payload) > self._max_payload_bytes and isinstance(reply, WireReply):
            log.error("worker calls %s: the answer to a %s is %d bytes, over the %d the broker takes",
                      self.worker_id, call.type, len(payload), self._max_payload_bytes)
            payload = _ENCODER.encode(WireReply(call.id, error=_FAILED, detail=(
                f"the answer is {len(payload)} bytes, over the {self._max_payload_bytes} the broker takes")))
            sent_answer = False
        else:
            sent_answer = True
        expiry = call.timeout_ms / 1000 if isinstance(reply, WireReply) else self._commit_timeout_s + _COMMIT_MARGIN_S
        try:
            await self._client.publish(self._topics.worker_replies(call.reply_to), payload, qos=1,
                                       message_expiry_s=max(1, math.ceil(expiry)))
        except MqttError as exc:
            log.warning("worker calls %s: could not answer %s: %s", self.worker_id, call.reply_to, exc)
            return False
        return sent_answer

    # ------------------------------------------------------------------ receiving

    async def _on_connect(self, client: TrioMqttClient) -> None:
        await client.subscribe_many([self._calls_topic, self._replies_topic], qos=1)

    def _receive_one(self, inbound: InboundMessage) -> None:
        try:
            wire = _DECODER.decode(inbound.payload)
        except msgspec.DecodeError as exc:
            self._undecodable(inbound, str(exc))
            return
        if inbound.topic == self._calls_topic and isinstance(wire, WireCall):
            self._take_call(wire)
        elif inbound.topic == self._replies_topic and isinstance(wire, WireReply):
            self._settle_reply(wire)
        elif inbound.topic == self._replies_topic and isinstance(wire, WireCommit):
            self._settle_commit(wire)
        else:
            self._undecodable(inbound, f"a {type(wire).__name__} on the wrong topic")

    def _undecodable(self, inbound: InboundMessage, reason: str) -> None:
        self.stats.undecodable += 1
        log.warning("worker calls %s: ignoring an undecodable message (%d bytes on %s): %s", self.worker_id,
                    len(inbound.payload), escape_controls(inbound.topic), escape_controls(reason))

    async def _receive_loop(self) -> None:
        async for batch in receive_batches(self._client.messages, _RECEIVE_BATCH):
            # Acknowledged as read: a call is served at most once (an asker that hears nothing times out).
            self._client.ack_many(batch)
            for inbound in batch:
                self._receive_one(inbound)
            self._expire_commits(trio.current_time())

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe to this worker's calls and replies, then serve and settle until cancelled.

        ``task_status.started()`` once the first connection is subscribed (asks may be made from then
        on). Serving tasks run inside: cancelling ``run`` cancels them (their askers time out), and asks
        still waiting raise :class:`WorkerCallFailed`. Single use, as its client.
        """
        if self._nursery is not None or self._stopped:
            raise RuntimeError("WorkerCalls.run() may only be called once")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(lambda task_status: self._client.run(
                    on_connect=self._on_connect, task_status=task_status))
                nursery.start_soon(self._receive_loop)
                task_status.started()
        finally:
            self._stopped = True
            stopped = WorkerCallFailed(f"worker calls of {self.worker_id} stopped")
            for pending in self._pending.values():
                pending.settle(error=stopped)
            for outcome in self._commits.values():
                outcome.settle(False)
            self._commits.clear()


def session_call_across_workers(
    local_call: Callable[[str, object], Awaitable[Any]],
    owner_of_session: Callable[[str], Awaitable[str | None]],
    calls: WorkerCalls,
    *,
    timeout: float = 10.0,
) -> Callable[[str, object], Awaitable[Any]]:
    """``WebContext.session_call`` for a hub of several workers: the local actor, else its owner's.

    ``local_call``: the local ``session_caller`` (raises ``SessionNotLive`` when this worker has no
    actor for the session). ``owner_of_session(session_id)``: the worker that owns the session's
    partition now, or ``None``. When the owner is another worker, the ask goes to it through ``calls``
    (at most ``timeout`` seconds for the answer; a receipt's commit has its own bound). Raises
    ``SessionNotLive`` when there is no owner, when the owner is this worker (no local actor: never
    ask yourself over the broker), or when the ask got no answer (timeout, either side busy, refused,
    failed: as a local ask that times out). Errors of ``owner_of_session`` propagate.

    Concurrency contract: called from web request tasks of the worker's trio run, any number at
    once; each waits at most for the local ask, the owner lookup and ``timeout``.
    """

    async def call(session_id: str, message: object) -> Any:
        try:
            return await local_call(session_id, message)
        except SessionNotLive:
            pass
        owner = await owner_of_session(session_id)
        if owner is None or owner == calls.worker_id:
            raise SessionNotLive(session_id)
        try:
            return await calls.ask(owner, session_id, message, timeout=timeout)
        except (WorkerCallTimeout, WorkerCallBusy) as exc:
            raise SessionNotLive(session_id) from exc
        except WorkerCallError as exc:
            log.warning("session %s: the ask of worker %s failed: %s", escape_controls(session_id),
                        escape_controls(owner), escape_controls(str(exc)))
            raise SessionNotLive(session_id) from exc

    return call
