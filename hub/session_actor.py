"""One actor per live class session: it alone decides check-ins for its session."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from actors import Actor, ActorRef
from hub.bus import session_topic, student_topic
from hub.delivery import deliver
from hub.commits import accept, reject, utc_from_ms
from hub.db import Database
from hub.db.state import load_session_snapshot
from hub.domain.checkin import Accepted, SessionState, SessionWindow
from hub.mqtt import InboundMessage
from hub.records import AttendanceMark, TokenUse
from schemas import BiometricMatchEvent, QrScanEvent, parse_checkin_token

log = logging.getLogger("hub.session")

#: Mailbox: bounded, Overflow.BLOCK. Device actors wait when it is full, which
#: preserves per-device order and loses nothing.
SESSION_MAILBOX = 1024


@dataclass(frozen=True)
class Scan:
    """A QR scan or biometric match routed here by a device actor."""

    message: InboundMessage
    event: QrScanEvent | BiometricMatchEvent


@dataclass(frozen=True)
class RosterStatus:
    """Ask: ``{student_id: status}`` of everyone checked in so far (for tests and the web)."""


class SessionActor(Actor):
    """State: the session's :class:`SessionState`, rebuilt from PostgreSQL in :meth:`started`.

    Every :class:`Scan` becomes exactly one commit for the writer (accepted or
    rejected), so every message is acknowledged once its outcome is stored.
    """

    def __init__(self, session_id: str, *, db: Database, writer: ActorRef) -> None:
        self.session_id = session_id
        self._db = db
        self._writer = writer
        self._state: SessionState | None = None

    async def started(self) -> None:
        snapshot = await load_session_snapshot(self._db, self.session_id)
        if snapshot is None:
            raise LookupError(f"session {self.session_id} does not exist")
        s = snapshot.session
        self._state = SessionState(
            session_id=s.session_id,
            room_id=s.room_id,
            window=SessionWindow(s.starts_at, s.ends_at, s.grace, s.opens_before),
            roster=snapshot.roster,
        )
        self._state.restore(snapshot.checked_in, snapshot.used_tokens)  # type: ignore[arg-type]

    async def handle(self, message: Scan | RosterStatus) -> dict[str, str] | None:
        if isinstance(message, RosterStatus):
            return dict(self._state.checked_in)
        try:
            await self._judge(message)
        except Exception as exc:
            # Keep the poison message with its reason (and ack it) before the
            # crash: a restart rebuilds state, and the message is not retried forever.
            await deliver(self._writer, reject(
                message.message, "internal_error", f"{type(exc).__name__}: {exc}",
                event=message.event, session_id=self.session_id,
            ))
            raise
        return None

    async def _judge(self, scan: Scan) -> None:
        log.debug("session %s: judging %s", self.session_id, scan.event.kind)
        state = self._state
        event = scan.event
        at = utc_from_ms(event.ts)
        if isinstance(event, QrScanEvent):
            decision = state.judge_qr(event.body.text, at)
            source = "qr"
        else:
            decision = state.judge_biometric(event.body.subject, at)
            source = "biometric"
        if not isinstance(decision, Accepted):
            token = parse_checkin_token(event.body.text) if isinstance(event, QrScanEvent) else None
            if token is not None and decision.reason in ("duplicate_checkin", "outside_session_window"):
                state.note_token_use(token.student_id, token.window)
            await deliver(self._writer, reject(
                scan.message, decision.reason, decision.detail, event=event, session_id=self.session_id,
            ))
            return
        state.apply(decision)
        event_id = uuid.UUID(bytes=event.id)
        effects: tuple = (
            AttendanceMark(self.session_id, decision.student_id, decision.status, decision.at, source,
                           event_id, actor=f"device:{event.device}"),
        )
        if decision.token_window is not None:
            effects += (TokenUse(self.session_id, decision.student_id, decision.token_window, event_id),)
        update = {
            "type": "attendance", "session_id": self.session_id, "student_id": decision.student_id,
            "status": decision.status, "checked_in_at": decision.at.isoformat(), "source": source,
        }
        await deliver(self._writer, accept(
            event, scan.message, effects, session_id=self.session_id,
            live=((session_topic(self.session_id), update), (student_topic(decision.student_id), update)),
        ))
