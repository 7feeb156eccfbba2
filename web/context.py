"""Everything the web app needs from the hub, handed in by the composition root (hub/app/supervision.py)."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

from hub.core.bus import LiveBus
from hub.core.config import DEVICE_OFFLINE_AFTER_S
from hub.core.secrets_box import SecretsBox
from hub.db import Database
from hub.domain.roles import MFA_REQUIRED_ROLES

from .protection import Protection

if TYPE_CHECKING:
    import actors


async def _nothing_changed(device_ids: Sequence[str]) -> None:
    return None


async def _nothing_to_send(command_id: uuid.UUID) -> None:
    return None


async def _no_sessions_changed(session_ids: Sequence[str]) -> None:
    return None


async def _no_attendance_changed(session_id: str, student_ids: Sequence[str]) -> None:
    return None


async def _no_device_actors(device_id: str, message: object) -> object:
    raise LookupError("no device actors: the hub is not running")


async def _no_quarantine_keeper(device_id: str, by: str) -> object:
    raise LookupError("no quarantine keeper: the hub is not running")


async def _no_thresholds_changed() -> None:
    return None


async def _no_risk_changed(course_id: str, student_ids: Sequence[str]) -> None:
    return None


async def _no_risk_actor(command: str, by: str) -> dict:
    raise LookupError("no early-warning actor: the hub is not running")


async def _no_anomaly_actor(by: str) -> dict:
    raise LookupError("no anomaly actor: the hub is not running")


async def _no_live_sessions(session_id: str, message: object) -> object:
    from hub.domain.session_messages import SessionNotLive

    raise SessionNotLive(session_id)


@dataclass
class WebContext:
    """The web app's view of the hub.

    Concurrency contract: shared by every request and websocket task of one
    trio run; all fields are safe to use concurrently (``db`` and ``bus`` by
    their own contracts, the callables must not block).
    """

    db: Database
    bus: LiveBus
    #: HS256 key of the access tokens; at least 32 random bytes.
    jwt_secret: bytes
    #: Dynamic supervisor hosting one temporary ConnectionActor per websocket;
    #: ``None`` runs the same actor inline in the websocket's task (unit tests).
    connections: "actors.Supervisor | None"
    #: Body of GET /healthz: ``status`` is ``ok``, ``degraded`` (serving, with ``problems``: reasons an
    #: operator must fix, e.g. an open broker), ``unavailable`` (database or broker unreachable) or
    #: ``starting``; web/routes/system.py maps the first two to 200 and the others to 503.
    health: Callable[[], Awaitable[dict]]
    #: Body of GET /metrics in the Prometheus text format.
    metrics_text: Callable[[], str]
    #: Wall clock (unix seconds) for token lifetimes, QR windows and "today".
    now: Callable[[], float] = time.time
    #: Check-in: these students' records of this session changed in PostgreSQL
    #: (call after the commit); its live session actor, if any, reloads them.
    attendance_changed: Callable[[str, Sequence[str]], Awaitable[None]] = _no_attendance_changed
    #: Ask the live actor of a session a hub.domain.session_messages message; raises
    #: ``SessionNotLive`` when it has none. Waits at most ~10 s.
    session_call: Callable[[str, object], Awaitable[object]] = _no_live_sessions
    #: Provisioning: tell the hub these devices were registered, rotated or
    #: revoked (after the commit); its ingress reloads their keys and, when configured, the
    #: broker's password/ACL files are rewritten. Must not block for long.
    devices_changed: Callable[[Sequence[str]], Awaitable[None]] = _nothing_changed
    #: Tell the command dispatcher a ``pending`` command was recorded (after the commit).
    send_command: Callable[[uuid.UUID], Awaitable[None]] = _nothing_to_send
    #: The broker as devices reach it (no credentials) and the topic prefix: for the
    #: edge-agent config shown at registration.
    device_mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "campushub"
    #: The hub's device offline timeout (Settings.device_offline_after_s): a ``config_push``
    #: whose heartbeat interval does not fit it is refused.
    device_offline_after_s: float = DEVICE_OFFLINE_AFTER_S
    #: Academic: tell the scheduler these sessions were created, rescheduled,
    #: cancelled, opened, closed or (re)generated, after the commit; it re-reads them and
    #: re-arms their timers. Never blocks for long (a bounded mailbox put).
    sessions_changed: Callable[[Sequence[str]], Awaitable[None]] = _no_sessions_changed
    #: IANA timezone of the campus: default of new terms, and "today" of the academic API.
    campus_timezone: str = "UTC"
    #: Device health: ask a device's actor (started if needed) a message of
    #: hub/domain/alarms.py (AckAlarm, ClearAlarm); raises LookupError for an unknown device
    #: (or with no hub), actors.AskTimeout if the actor does not answer in time.
    ask_device: Callable[[str, object], Awaitable[object]] = _no_device_actors
    #: Tell the hub threshold rules changed (after the commit): it reloads them and tells
    #: every running device actor. Waits only on full device mailboxes.
    thresholds_changed: Callable[[], Awaitable[None]] = _no_thresholds_changed
    #: Login and API limiters and the account-standing cache (web/protection.py). After
    #: changing an account's role or status, call ``protection.accounts.invalidate(user_id)``.
    protection: Protection = field(default_factory=Protection)
    #: Roles that must have two-factor authentication: without it they may only enrol (403
    #: ``mfa_enrollment_required`` elsewhere). Empty only for the demo (Settings.mfa_optional_demo).
    mfa_required_roles: frozenset[str] = MFA_REQUIRED_ROLES
    #: End a device's broker quarantine now (hub/pipeline/quarantine.py, ``Release``): returns the
    #: ended ``hub.db.quarantine.Quarantine`` or None if it had none; raises LookupError with no hub,
    #: OSError/ValueError if the broker's files could not be rewritten. Waits at most ~15 s.
    release_quarantine: Callable[[str, str], Awaitable[object]] = _no_quarantine_keeper
    #: The audit archive's segment files (Settings.audit_archive_path): erasure redacts the
    #: archived entries there too (hub/db/erasure.py ``erase_from_archive``). None: no archive.
    audit_archive_dir: Path | None = None
    #: Early warning: these students' marks, submissions or understanding in this course changed
    #: (after the commit; empty: the whole course); the risk actor re-scores them. Never blocks.
    risk_changed: Callable[[str, Sequence[str]], Awaitable[None]] = _no_risk_changed
    #: Early warning: ``("train", by)`` starts a training (answers ``{"started", "reason"}`` at once);
    #: ``("model_changed", by)`` after a pin or unpin. Raises LookupError with no hub.
    risk_control: Callable[[str, str], Awaitable[dict]] = _no_risk_actor
    #: Predictive maintenance: fit the telemetry anomaly detectors now (hub/services/anomaly.py); answers
    #: ``{"started", "reason"}`` at once, the fit runs after. Raises LookupError with no hub.
    anomaly_fit: Callable[[str], Awaitable[dict]] = _no_anomaly_actor

    @property
    def secrets(self) -> SecretsBox:
        """The campus key (hub/core/secrets_box.py): the database's own, so what one seals the other opens."""
        return self.db.secrets


def current_context() -> WebContext:
    """The :class:`WebContext` of the app serving the current request or websocket."""
    from quart import current_app

    return current_app.extensions["campushub"]
