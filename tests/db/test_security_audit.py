"""Security actions in the audit chain (hub/db/security_audit.py): one chain with attendance
changes that verifies online and offline, secrets never stored, bad entries refused before any
SQL, and every wired action (devices, threshold rules, webhooks, ticket policy) audited exactly once.

Each test has its own database (exact chains).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, AsyncIterator

import asyncpg
import pytest
import trio

from hub.core.campus import Campus
from hub.db import Database, open_database
from hub.db.attendance import AttendanceChange, apply_attributed_changes
from hub.db.audit import AuditFilter, iter_audit, jsonl_chunk, search_audit, verify_chain
from hub.db.audit_hash import canonical_entry, check_entries
from hub.db.provisioning import EdgeAgentSetup, RegistryError, register, revoke, rotate
from hub.db.security_audit import REDACTED, InvalidAuditEntry, is_secret_name, record, redact
from hub.db.seed import ensure_campus
from hub.db.thresholds import create_rule, delete_rule, update_rule
from hub.db.tickets import PriorityPolicy, save_policy
from hub.db.webhooks import create_subscription, delete_subscription, update_subscription

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
SETUP = EdgeAgentSetup("mqtt://127.0.0.1:1883", "campus")


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=8) as database:
        yield database


@pytest.fixture
async def small_campus(fresh_db: Database) -> Campus:
    return await ensure_campus(fresh_db, rooms=1, students=4, now=NOW)


async def audit(db: Database, **kwargs) -> None:
    await db.run(lambda conn: record(conn, **kwargs), transaction=True)


async def entries(db: Database, entity: str | None = None) -> list[dict]:
    rows = await db.fetch("SELECT actor, entity, action, entity_id, before, after, reason FROM audit_log"
                          " WHERE $1::text IS NULL OR entity = $1 ORDER BY id", entity)
    return [{**dict(r), "before": r["before"] and json.loads(r["before"]),
             "after": r["after"] and json.loads(r["after"])} for r in rows]


async def mark(db: Database, change: AttendanceChange, actor: str) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        await apply_attributed_changes(conn, [(change, actor, "mark")])

    await db.run(work, transaction=True)


async def nothing_changed(*_: object) -> None:
    return None


# --- the recording function ---------------------------------------------------------------------

async def test_security_and_attendance_entries_keep_one_chain(fresh_db: Database, small_campus: Campus) -> None:
    session = small_campus.sessions[0]
    statuses = ("present", "late", "absent", "excused")

    async def attendance(n: int) -> None:
        for round_ in range(5):
            change = AttendanceChange(session.session_id, session.enrolled[n], statuses[(n + round_) % 4], "manual")
            await mark(fresh_db, change, f"fac-{n}")

    async def logins(n: int) -> None:
        for round_ in range(5):
            await audit(fresh_db, actor=f"user{n}", action="login_failed" if round_ % 2 else "login_succeeded",
                        entity="login", entity_id=f"user{n}", after={"address": "10.0.0.1", "n": 1.50})

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(attendance, n)
            nursery.start_soon(logins, n)
    report = await verify_chain(fresh_db)
    assert report.ok and report.entries == 30, report
    kinds = {(r["entity"], r["action"]) for r in await fresh_db.fetch("SELECT entity, action FROM audit_log")}
    assert kinds == {("attendance", None), ("login", "login_failed"), ("login", "login_succeeded")}

    # Offline: the export re-hashes to the same head (Python's canonical text includes the action).
    exported = "".join([jsonl_chunk(chunk) async for chunk in iter_audit(fresh_db, AuditFilter())])
    offline = check_entries(json.loads(line, parse_float=Decimal) for line in exported.splitlines())
    assert offline.ok and (offline.entries, offline.head_hash) == (30, report.head_hash)
    row = await fresh_db.fetchrow("SELECT a.*, audit_entry_canonical(a) AS canonical FROM audit_log a"
                                  " WHERE action IS NOT NULL ORDER BY id LIMIT 1")
    assert row is not None
    entry = {**dict(row), "after": json.loads(row["after"], parse_float=Decimal)}
    assert canonical_entry(entry) == row["canonical"] and '"action": "login_' in row["canonical"]

    # Filters: by entity and action, and newest first.
    page = await search_audit(fresh_db, AuditFilter(entity="login", action="login_failed"), limit=50, offset=0)
    assert page.total == 6 and {e["action"] for e in page.items} == {"login_failed"}
    page = await search_audit(fresh_db, AuditFilter(entity="attendance"), limit=50, offset=0)
    assert page.total == 15 and all(e["action"] is None for e in page.items)


async def test_changing_or_clearing_an_action_is_caught(fresh_db: Database) -> None:
    for n in range(3):
        await audit(fresh_db, actor="usr-admin", action="revoked", entity="device", entity_id=f"d{n}")
    middle = await fresh_db.fetchval("SELECT id FROM audit_log ORDER BY id OFFSET 1 LIMIT 1")
    for forged in ("registered", None):
        async def tamper(conn: asyncpg.Connection, forged=forged) -> None:
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE audit_log SET action = $2 WHERE id = $1", middle, forged)

        await fresh_db.run(tamper, transaction=True)
        report = await verify_chain(fresh_db)
        assert (report.ok, report.first_broken_id, report.problem) == (False, middle, "altered")


async def test_secrets_are_never_stored(fresh_db: Database) -> None:
    secrets = {
        "password": "hunter2-password", "password_hash": "$argon2id$v=19$abc", "totp_secret": "JBSWY3DPEHPK3PXP",
        "recovery_codes": ["rc-1111", "rc-2222"], "activation_code": "act-3333", "key": "k-4444",
        "hmac_key": "k-5555", "refresh_token": "tok-6666", "Secret": "webhook-7777", "otp": "123456",
    }
    after = {"username": "alice", "role": "admin", **secrets,
             "nested": {"mfa": [{"seed": "seed-8888", "label": "phone"}], "new_password": "np-9999"}}
    await audit(fresh_db, actor="usr-admin", action="created", entity="user", entity_id="usr-alice",
                before={"reset_code": "rc-0000"}, after=after)
    raw = await fresh_db.fetchrow("SELECT before::text AS before, after::text AS after FROM audit_log")
    assert raw is not None
    stored = raw["before"] + raw["after"]
    for value in ["hunter2", "argon2", "JBSWY3", "rc-1111", "rc-2222", "act-3333", "k-4444", "k-5555", "tok-6666",
                  "webhook-7777", "123456", "seed-8888", "np-9999", "rc-0000"]:
        assert value not in stored, value
    (entry,) = await entries(fresh_db)
    assert entry["after"]["username"] == "alice" and entry["after"]["role"] == "admin"
    assert all(entry["after"][k] == REDACTED for k in secrets)
    assert entry["after"]["nested"] == {"mfa": [{"seed": REDACTED, "label": "phone"}], "new_password": REDACTED}
    # A secret that was absent stays visibly absent; names that only look alike are kept.
    assert redact({"password_hash": None, "keyboard": "x", "course_code_count": 2}) == {
        "password_hash": None, "keyboard": "x", "course_code_count": 2}
    assert [is_secret_name(n) for n in ("mqtt_password_hash", "api_key", "display_name", "role")] == [
        True, True, False, False]


async def test_bad_entries_are_refused_before_any_sql(fresh_db: Database) -> None:
    good: dict[str, Any] = {"actor": "usr-admin", "action": "created", "entity": "user", "entity_id": "u1"}
    bad: list[dict[str, Any]] = [
        {"action": "Created"}, {"action": "drop table; --"}, {"action": ""}, {"action": "a" * 65},
        {"entity": "user x"}, {"actor": ""}, {"actor": "x" * 201}, {"entity_id": ""}, {"entity_id": "i" * 201},
        {"reason": "r" * 1001}, {"reason": "nul\x00"}, {"actor": "nul\x00"},
        {"after": {"blob": "x" * 20_000}}, {"after": {"bytes": b"raw"}}, {"after": {"nan": float("nan")}},
        {"after": {"text": "nul\x00"}}, {"after": ["not", "an", "object"]}, {"after": {1: "int key"}},
        {"before": _nested(12)},
    ]
    for override in bad:
        with pytest.raises(InvalidAuditEntry):
            await audit(fresh_db, **{**good, **override})
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 0
    await audit(fresh_db, **good)
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 1


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"inner": value}
    return value


async def test_an_entry_rolls_back_with_its_transaction(fresh_db: Database) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        await record(conn, actor="usr-admin", action="deactivated", entity="user", entity_id="u1")
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await fresh_db.run(work, transaction=True)
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_a_burst_of_login_entries_beside_attendance_writes(fresh_db: Database,
                                                                  small_campus: Campus) -> None:
    """200 login entries (one transaction each, 8 at a time) while two attendance writers keep
    writing: every entry and every write commits, and the chain verifies. (What the burst costs
    the writers is measured by bench/audit_burst.py, not here.)"""
    session = small_campus.sessions[0]
    statuses = ("present", "late", "absent", "excused")
    attendance_writes = 0

    async def attendance(n: int, stop: trio.Event) -> None:
        nonlocal attendance_writes
        round_ = 0
        while not stop.is_set():
            change = AttendanceChange(session.session_id, session.enrolled[n], statuses[round_ % 4], "manual")
            await mark(fresh_db, change, "writer")
            attendance_writes += 1
            round_ += 1

    async def logins(worker: int) -> None:
        for n in range(25):
            await audit(fresh_db, actor=f"user{worker}", action="login_failed", entity="login",
                        entity_id=f"user{worker}", after={"address": f"10.0.{worker}.{n}"})

    stop = trio.Event()
    async with trio.open_nursery() as outer:
        for n in range(2):
            outer.start_soon(attendance, n, stop)
        async with trio.open_nursery() as burst:
            for worker in range(8):
                burst.start_soon(logins, worker)
        stop.set()
    assert attendance_writes > 0
    counts = dict(await fresh_db.fetch("SELECT entity, count(*) FROM audit_log GROUP BY entity"))
    assert counts == {"login": 200, "attendance": attendance_writes}
    report = await verify_chain(fresh_db)
    assert report.ok and report.entries == 200 + attendance_writes, report


# --- the wired actions: exactly one entry each, with actor, before and after ---------------------

async def test_device_registration_rotation_and_revocation_are_audited(fresh_db: Database,
                                                                       small_campus: Campus) -> None:
    room_id = await fresh_db.fetchval("SELECT id FROM rooms ORDER BY id LIMIT 1")
    issued = await register(fresh_db, device_id="cam-audit", room_id=room_id, kind="qr_camera", model="m1",
                            actor="usr-ops", setup=SETUP, devices_changed=nothing_changed)
    await rotate(fresh_db, "cam-audit", actor="usr-admin", setup=SETUP, devices_changed=nothing_changed)
    await revoke(fresh_db, "cam-audit", actor="usr-admin", reason="stolen", devices_changed=nothing_changed)
    await revoke(fresh_db, "cam-audit", actor="usr-admin", reason="again", devices_changed=nothing_changed)
    registered, rotated, revoked = await entries(fresh_db, "device")  # the second revoke changed nothing
    assert (registered["actor"], registered["action"], registered["entity_id"], registered["before"]) == (
        "usr-ops", "registered", "cam-audit", None)
    assert registered["after"]["room_id"] == room_id and registered["after"]["credential_version"] == 1
    assert (rotated["actor"], rotated["action"]) == ("usr-admin", "rotated")
    assert (rotated["before"]["credential_version"], rotated["after"]["credential_version"]) == (1, 2)
    assert (revoked["action"], revoked["reason"]) == ("revoked", "stolen")
    assert (revoked["before"]["revoked"], revoked["after"]["revoked"]) == (False, True)
    # Neither the signing key nor the broker password leaves a trace.
    text = json.dumps([registered, rotated, revoked])
    assert issued.credentials.mqtt.password not in text and "password_hash" not in text
    # A refused registration (duplicate id) records nothing.
    with pytest.raises(RegistryError):
        await register(fresh_db, device_id="cam-audit", room_id=room_id, kind="qr_camera", actor="usr-ops",
                       setup=SETUP, devices_changed=nothing_changed)
    assert len(await entries(fresh_db, "device")) == 3


async def test_threshold_rule_changes_are_audited(fresh_db: Database) -> None:
    fields = {"metric": "co2", "room_type": None, "room_id": None, "op": "above", "value": 1200.0,
              "clear_value": 1000.0, "duration_s": 60, "severity": "major", "enabled": True}
    rule = await create_rule(fresh_db, fields, "usr-ops")
    await update_rule(fresh_db, rule["id"], {**fields, "value": 1500.0}, "usr-admin")
    await update_rule(fresh_db, rule["id"], {**fields, "value": 1500.0}, "usr-admin")  # no change: no entry
    assert await update_rule(fresh_db, 999_999, fields, "usr-admin") is None
    assert await delete_rule(fresh_db, rule["id"], by="usr-admin")
    assert not await delete_rule(fresh_db, rule["id"], by="usr-admin")
    created, updated, deleted = await entries(fresh_db, "threshold_rule")
    assert (created["actor"], created["action"], created["entity_id"]) == ("usr-ops", "created", str(rule["id"]))
    assert created["before"] is None and created["after"]["value"] == 1200.0
    assert (updated["actor"], updated["before"]["value"], updated["after"]["value"]) == ("usr-admin", 1200.0, 1500.0)
    assert (deleted["action"], deleted["before"]["metric"], deleted["after"]) == ("deleted", "co2", None)


async def test_webhook_changes_are_audited_without_secret_or_full_url(fresh_db: Database,
                                                                      small_campus: Campus) -> None:
    url = "https://hooks.example.org/services/T000/B000/very-secret-path-token?sig=abc"
    sub = await create_subscription(fresh_db, url=url, secret="whsec-1234567890abcdef", kinds=["alarm_raised"], active=True,
                                    description="ops chat", created_by="usr-admin", now=NOW)
    await update_subscription(fresh_db, sub.id, {"active": False, "secret": "whsec-fedcba0987654321"}, NOW, by="usr-ops")
    assert await delete_subscription(fresh_db, sub.id, by="usr-admin")
    created, updated, deleted = await entries(fresh_db, "webhook")
    assert (created["actor"], created["action"], created["after"]["url_origin"]) == (
        "usr-admin", "created", "https://hooks.example.org")
    assert (updated["actor"], updated["before"]["active"], updated["after"]["active"]) == ("usr-ops", True, False)
    assert updated["after"]["secret_replaced"] is True
    assert deleted["action"] == "deleted" and deleted["after"] is None
    text = json.dumps([created, updated, deleted])
    assert "whsec" not in text and "very-secret-path-token" not in text and "sig=abc" not in text


async def test_ticket_policy_changes_are_audited(fresh_db: Database) -> None:
    await save_policy(fresh_db, [PriorityPolicy("P3", 3600, None)], ["critical", "major"], by="usr-admin", at=NOW)
    await save_policy(fresh_db, [PriorityPolicy("P3", 3600, None)], ["critical", "major"], by="usr-admin", at=NOW)
    (entry,) = await entries(fresh_db, "ticket_policy")  # the second save changed nothing
    assert (entry["actor"], entry["action"], entry["entity_id"]) == ("usr-admin", "updated", "campus")
    assert entry["before"]["priorities"]["P3"] == {"resolve_within_s": 7 * 86400, "auto_close_after_s": 1800}
    assert entry["after"]["priorities"]["P3"] == {"resolve_within_s": 3600, "auto_close_after_s": None}
    assert (entry["before"]["auto_raise_severities"], entry["after"]["auto_raise_severities"]) == (
        ["critical"], ["critical", "major"])
