"""Hub → device commands in PostgreSQL: create, list, and every status transition.

Status machine (the ``device_commands`` table of migration 0006)::

    pending ──PUBACK──► sent ──device ack──► acked | failed | expired | unsupported
       │                  └──no ack by sent_at + ack_timeout_s──► timed_out ──late ack──► (the ack's status)
       ├──not accepted by the broker before expires_at──► expired
       └──broker refused the publish / device revoked──► failed

Every transition is a conditional ``UPDATE ... WHERE status = ANY(from)``,
so a late timer, a duplicate ack (MQTT redelivery) or a concurrent
revocation changes nothing and returns ``None``.

Sealed arguments (migration 0019, schemas/_sealed.py): ``create_command``
seals the arguments :func:`schemas.sealed_arg_names` declares (roster maps,
templates, pushed secrets) to the target device before anything is written,
so their plaintext never reaches the database: ``args`` keeps the other
arguments, ``sealed`` the blob, ``sealed_keys`` / ``sealed_size`` what may be
shown. The blob lives only while the command is ``pending`` (a trigger drops
it on any other status, in the statement that changes it).

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`; one round trip each (``create_command``: one transaction,
preceded by a read of the device's key when it has arguments to seal).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence, get_args

import asyncpg
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import RuntimeError as NaclRuntimeError

from hub.domain.device_health import heartbeat_interval_problem
from schemas import MAX_SEALED_BYTES, CommandName, SealedArgs, SealError, encode_sealed, seal_args, sealed_arg_names

from ._pool import Database
from .device_registry import load_devices
from .paging import Page
from .provisioning import RegistryError

#: The commands a device understands (the wire format's CommandName).
COMMAND_NAMES: tuple[str, ...] = get_args(CommandName)
COMMAND_STATUSES = ("pending", "sent", "acked", "failed", "expired", "timed_out", "unsupported")
OUTSTANDING = ("pending", "sent")
#: The device's CommandAck status -> the command's status.
ACK_STATUS = {"ok": "acked", "failed": "failed", "expired": "expired", "unsupported": "unsupported"}
#: The edge agent's own heartbeat period, which a ``config_push`` may change (edge_agent/agent.py).
HEARTBEAT_INTERVAL_ARG = "heartbeat_interval_s"


@dataclass(frozen=True)
class CommandRow:
    command_id: uuid.UUID
    device_id: str
    name: CommandName
    args: dict[str, Any]
    status: str
    ttl_s: int
    ack_timeout_s: int
    issued_by: str
    created_at: datetime
    sent_at: datetime | None
    expires_at: datetime
    acked_at: datetime | None
    detail: str
    #: The sealed arguments (``SealedArgs`` bytes) while ``pending``; ``None`` once purged or if none.
    sealed: bytes | None = None
    #: Names of the sealed arguments and the blob's size: all that is ever shown of them.
    sealed_keys: tuple[str, ...] = ()
    sealed_size: int = 0

    @property
    def ack_deadline(self) -> datetime | None:
        """When a sent command times out (``None`` until it is sent)."""
        return None if self.sent_at is None else self.sent_at + timedelta(seconds=self.ack_timeout_s)


_COLUMNS = (
    "id, device_id, name, args, status, ttl_s, ack_timeout_s, issued_by, created_at, sent_at,"
    " expires_at, acked_at, detail, sealed, sealed_keys, sealed_size"
)


def _row(r: asyncpg.Record) -> CommandRow:
    args = r["args"]
    return CommandRow(
        r["id"], r["device_id"], r["name"], json.loads(args) if isinstance(args, str) else dict(args),
        r["status"], r["ttl_s"], r["ack_timeout_s"], r["issued_by"], r["created_at"], r["sent_at"],
        r["expires_at"], r["acked_at"], r["detail"], None if r["sealed"] is None else bytes(r["sealed"]),
        tuple(r["sealed_keys"]), r["sealed_size"],
    )


def _x25519_public_key(ed25519_public_key: bytes) -> bytes:
    """The X25519 form of a device's Ed25519 public key (libsodium's birational map).

    The device computes the matching private key from its seed
    (schemas/_sealed.py), so no extra key is provisioned.
    """
    try:
        return crypto_sign_ed25519_pk_to_curve25519(ed25519_public_key)
    except (NaclRuntimeError, ValueError, TypeError) as exc:
        raise RegistryError("conflict", f"The device's ed25519 key cannot receive sealed arguments ({exc}).") from exc


async def _seal(db: Database, device_id: str, command_id: uuid.UUID, name: str,
                secret: dict[str, Any]) -> SealedArgs:
    records = await load_devices(db, [device_id])
    if not records:
        raise RegistryError("not_found", f"No device {device_id!r}.")
    device = records[0]
    try:
        if device.alg == "ed25519":
            sealed = seal_args(secret, device_id=device_id, command_id=command_id.bytes, name=name,
                               x25519_public_key=_x25519_public_key(device.key))
        else:
            sealed = seal_args(secret, device_id=device_id, command_id=command_id.bytes, name=name,
                               hmac_key=device.key)
    except SealError as exc:
        raise RegistryError("conflict", f"Cannot seal arguments to {device_id!r}: {exc}") from exc
    if len(sealed.ciphertext) > MAX_SEALED_BYTES:
        raise RegistryError("invalid_request", f"'args' is too large to seal (over {MAX_SEALED_BYTES} bytes).",
                            "args")
    return sealed


async def create_command(
    db: Database, *, device_id: str, name: str, args: dict[str, Any], ttl_s: int, ack_timeout_s: int,
    issued_by: str, now: datetime, device_offline_after_s: float, command_id: uuid.UUID | None = None,
) -> CommandRow:
    """Record a new ``pending`` command; it expires ``ttl_s`` after ``now`` (the hub's clock).

    Raises :class:`RegistryError` ``invalid_request`` (field ``args``) for a
    ``config_push`` whose ``heartbeat_interval_s`` does not fit the hub's
    ``device_offline_after_s`` (the device would flap offline), ``not_found``
    for an unknown device and ``conflict`` for a revoked one (checked under a
    row lock, so a concurrent revocation cannot slip in between).

    Arguments that :func:`schemas.sealed_arg_names` declares are sealed here
    to the device's current key (a rotation before delivery makes the device
    answer ``failed``: issue the command again). ``args`` may be given in
    clear by every caller: only the sealed form is stored.
    """
    if name == "config_push" and HEARTBEAT_INTERVAL_ARG in args:
        problem = heartbeat_interval_problem(args[HEARTBEAT_INTERVAL_ARG], device_offline_after_s)
        if problem is not None:
            raise RegistryError("invalid_request", f"'args.{HEARTBEAT_INTERVAL_ARG}': {problem}.", "args")

    command_id = command_id or uuid.uuid4()
    secret_names = sealed_arg_names(name, args)
    plain = {k: v for k, v in args.items() if k not in secret_names}
    sealed_blob: bytes | None = None
    if secret_names:
        if "sealed" in plain:  # command_json shows the sealed summary under that name
            raise RegistryError("invalid_request", "'args.sealed' is a reserved name.", "args")
        sealed_blob = encode_sealed(
            await _seal(db, device_id, command_id, name, {k: args[k] for k in secret_names}))

    async def work(conn: asyncpg.Connection) -> CommandRow:
        device = await conn.fetchrow("SELECT revoked_at FROM devices WHERE id = $1 FOR SHARE", device_id)
        if device is None:
            raise RegistryError("not_found", f"No device {device_id!r}.")
        if device["revoked_at"] is not None:
            raise RegistryError("conflict", f"Device {device_id!r} is revoked.")
        row = await conn.fetchrow(
            "INSERT INTO device_commands (id, device_id, name, args, ttl_s, ack_timeout_s, issued_by,"
            " created_at, expires_at, updated_at, sealed, sealed_keys, sealed_size)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $8, $10, $11, $12)"
            f" RETURNING {_COLUMNS}",
            command_id, device_id, name, json.dumps(plain), ttl_s, ack_timeout_s, issued_by,
            now, now + timedelta(seconds=ttl_s), sealed_blob, list(secret_names),
            0 if sealed_blob is None else len(sealed_blob),
        )
        return _row(row)

    return await db.run(work, transaction=True)


async def get_command(db: Database, command_id: uuid.UUID) -> CommandRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM device_commands WHERE id = $1", command_id)
    return None if row is None else _row(row)


async def list_commands(
    db: Database, device_id: str, limit: int, offset: int, status: str | None = None,
) -> Page[CommandRow]:
    """One page of a device's commands, newest first, and the total (both filtered by ``status``)."""

    async def work(conn: asyncpg.Connection) -> Page[CommandRow]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM device_commands WHERE device_id = $1 AND ($2::text IS NULL OR status = $2)"
            " ORDER BY created_at DESC, seq DESC LIMIT $3 OFFSET $4",
            device_id, status, limit, offset,
        )
        total = await conn.fetchval(
            "SELECT count(*) FROM device_commands WHERE device_id = $1 AND ($2::text IS NULL OR status = $2)",
            device_id, status,
        )
        return Page([_row(r) for r in rows], total)

    return await db.run(work)


async def outstanding_commands(db: Database) -> list[CommandRow]:
    """Every ``pending`` or ``sent`` command, oldest first (what a restarted dispatcher picks up)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM device_commands WHERE status = ANY($1::text[]) ORDER BY created_at, seq",
        list(OUTSTANDING),
    )
    return [_row(r) for r in rows]


async def transition(
    db: Database, command_id: uuid.UUID, *, from_statuses: Sequence[str], to_status: str, at: datetime,
    detail: str | None = None, sent: bool = False, acked: bool = False, device_id: str | None = None,
) -> CommandRow | None:
    """Move a command from one of ``from_statuses`` to ``to_status``; ``None`` if it was not in one.

    ``sent`` / ``acked`` also stamp ``sent_at`` / ``acked_at`` with ``at``;
    ``detail`` (if given) replaces the detail; ``device_id`` (if given) must
    match, so a device cannot answer another device's command.
    """
    row = await db.fetchrow(
        "UPDATE device_commands SET status = $3, updated_at = $4,"
        " sent_at = CASE WHEN $5 THEN $4 ELSE sent_at END,"
        " acked_at = CASE WHEN $6 THEN $4 ELSE acked_at END,"
        " detail = coalesce($7, detail)"
        " WHERE id = $1 AND status = ANY($2::text[]) AND ($8::text IS NULL OR device_id = $8)"
        f" RETURNING {_COLUMNS}",
        command_id, list(from_statuses), to_status, at, sent, acked, detail, device_id,
    )
    return None if row is None else _row(row)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def shown_args(row: CommandRow) -> dict[str, Any]:
    """The arguments as anyone may see them: sealed ones only as ``"sealed": {"sealed": true, "size",
    "keys", "purged"}`` (names and size, never content)."""
    if not row.sealed_keys:
        return dict(row.args)
    return {**row.args, "sealed": {"sealed": True, "size": row.sealed_size, "keys": list(row.sealed_keys),
                                   "purged": row.sealed is None}}


def command_json(row: CommandRow) -> dict[str, Any]:
    """The one JSON form of a command: the API's items and the live ``{"type": "command"}`` messages.

    Sealed arguments appear redacted (:func:`shown_args`).
    """
    return {
        "command_id": str(row.command_id), "device_id": row.device_id, "name": row.name, "args": shown_args(row),
        "status": row.status, "ttl_s": row.ttl_s, "ack_timeout_s": row.ack_timeout_s, "issued_by": row.issued_by,
        "created_at": _iso(row.created_at), "sent_at": _iso(row.sent_at), "expires_at": _iso(row.expires_at),
        "ack_deadline": _iso(row.ack_deadline), "acked_at": _iso(row.acked_at), "detail": row.detail,
    }
