"""Secrets at rest (hub/db/sealed_secrets.py, migration 0025): a data-only dump of a seeded database holds
none of the known secrets in any form; rows written in plaintext before 0025 are sealed by the start-up
pass and still work; ``campushub keys rotate`` re-seals everything (coursework files too) so that the new
key alone opens it."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pytest

from hub.adapters.pg_dump import find_pg_tools, libpq_target
from hub.app.backup_cli import tool_dirs
from hub.app.cli import main
from hub.app.supervision import StartRefused, run_hub
from hub.core.config import Settings
from hub.core.secrets_box import KEY_ENV, SecretsBox, SecretsBoxError, load_secrets_box, parse_key_file
from hub.db import Database, run_with_database
from hub.db.assignments import AUDIENCE_SQL, NewFile, add_attachment, get_attachment
from hub.db.backup import server_version
from hub.db.device_registry import load_devices
from hub.db.leave import NewDocument, apply_for_leave, get_document
from hub.db.mfa import begin_enrolment, get_mfa, totp_context
from hub.db.provisioning import hub_signing_key
from hub.db.sealed_secrets import SEALED_COLUMNS, KeyCount, campus_key_problems, key_counts, reseal, seal_pending
from hub.db.seed import ensure_campus
from hub.db.session_snapshots import load_session_roster
from hub.db.students import student_token_secret
from hub.db.submissions import get_file, submit
from hub.db.webhooks import claim_due, create_subscription, get_subscription, update_subscription

NOW = datetime.now(timezone.utc)


@dataclass
class Known:
    """Every secret the test stored, by where it lives, to look for in dumps and to open again."""

    device_keys: dict[str, bytes] = field(default_factory=dict)
    token_secrets: dict[str, bytes] = field(default_factory=dict)
    webhook_secrets: dict[int, str] = field(default_factory=dict)
    totp_seeds: dict[str, bytes] = field(default_factory=dict)
    documents: dict[int, bytes] = field(default_factory=dict)
    #: ("attachment", assessment id, id) or ("submission", submission id, file id) -> the file's bytes.
    coursework: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    hub_seed: bytes = b""

    def values(self) -> list[tuple[str, bytes]]:
        return ([(f"device key {k}", v) for k, v in self.device_keys.items()]
                + [(f"token secret {k}", v) for k, v in self.token_secrets.items()]
                + [(f"webhook secret {k}", v.encode()) for k, v in self.webhook_secrets.items()]
                + [(f"TOTP seed {k}", v) for k, v in self.totp_seeds.items()]
                + [(f"leave document {k}", v) for k, v in self.documents.items()]
                + [(f"coursework {k}", v) for k, v in self.coursework.items()]
                + [("hub signing key", self.hub_seed)])


async def _insert_plaintext_rows(db: Database, known: Known) -> None:
    """Rows as a hub before migration 0025 wrote them: the secret in the plaintext column."""
    tag = uuid.uuid4().hex[:8]
    device_id, student, key, token = f"dev-legacy-{tag}", f"stu-legacy-{tag}", os.urandom(32), os.urandom(32)
    seed = os.urandom(32)
    secret = f"legacy-webhook-secret-{uuid.uuid4().hex}"
    document = b"%PDF-1.4 legacy " + os.urandom(4096)

    async def work(conn) -> None:
        room = await conn.fetchval("SELECT id FROM rooms ORDER BY id LIMIT 1")
        await conn.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'sensor', 'hmac-sha256', $3)",
                           device_id, room, key)
        await conn.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                           " VALUES ($1, $1, 'Legacy Student', 'student', '')", student)
        await conn.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ($1, $1, $2)", student, token)
        known.webhook_secrets[await conn.fetchval(
            "INSERT INTO webhook_subscriptions (url, secret) VALUES ('https://hooks.example.org/legacy', $1)"
            " RETURNING id", secret)] = secret
        leave_id = await conn.fetchval(
            "INSERT INTO leave_applications (student_id, starts_on, ends_on, reason)"
            " VALUES ($1, $2, $2, 'legacy') RETURNING id", student, date.today() + timedelta(days=30))
        await conn.execute(
            "INSERT INTO leave_documents (leave_id, filename, content_type, size_bytes, sha256, data)"
            " VALUES ($1, 'legacy.pdf', 'application/pdf', $2, sha256($3), $3)", leave_id, len(document), document)
        await conn.execute("INSERT INTO hub_signing_keys (alg, private_key, public_key) VALUES ('ed25519', $1, $2)",
                           seed, os.urandom(32))
        known.documents[leave_id] = document

    await db.run(work, transaction=True)
    known.device_keys[device_id], known.token_secrets[student], known.hub_seed = key, token, seed


async def _store_secrets_the_current_way(db: Database, known: Known) -> None:
    """Secrets stored through the hub's own functions: the seed, a webhook, an MFA enrolment, a leave document."""
    campus = await ensure_campus(db, rooms=2, students=6, now=NOW)
    known.device_keys.update({d.device_id: d.signing_key for d in campus.devices})
    known.token_secrets.update({s.student_id: s.token_secret for s in campus.students})
    secret = f"webhook-signing-secret-{uuid.uuid4().hex}"
    subscription = await create_subscription(db, url="https://hooks.example.org/campushub", secret=secret,
                                             kinds=[], active=True, description="", created_by="usr-admin", now=NOW)
    known.webhook_secrets[subscription.id] = secret
    seed = os.urandom(20)  # what web/mfa.py seals: the TOTP seed's bytes
    assert await begin_enrolment(db, "usr-ops", db.secrets.encrypt(seed, totp_context("usr-ops")))
    known.totp_seeds["usr-ops"] = seed
    document = b"%PDF-1.7 medical certificate " + os.urandom(200_000)
    outcome = await apply_for_leave(
        db, student_id=campus.students[0].student_id, starts_on=date.today() + timedelta(days=60),
        ends_on=date.today() + timedelta(days=61), reason="a certificate", today=date.today(),
        document=NewDocument("certificate.pdf", "application/pdf", document))
    known.documents[outcome.leave.id] = document
    await _store_coursework(db, known)


async def _store_coursework(db: Database, known: Known) -> None:
    """An attachment and a student's submitted file, through hub/db/assignments.py and submissions.py, on
    the seeded assignment due next (a demo-term assignment nobody has submitted to yet)."""
    row = await db.fetchrow(
        "SELECT a.id, e.student_id FROM assessments a JOIN assignments g ON g.assessment_id = a.id"
        " JOIN enrolments e ON " + AUDIENCE_SQL + " WHERE g.published_at IS NOT NULL AND g.due_at > $1"
        " ORDER BY g.due_at, e.student_id LIMIT 1", NOW)
    brief, work = (b"%PDF-1.7 coursework " + os.urandom(50_000) for _ in range(2))
    attachment = await add_attachment(db, row["id"], NewFile("brief.pdf", "application/pdf", brief), "usr-admin")
    known.coursework[("attachment", row["id"], attachment.id)] = brief
    submission = await submit(db, row["id"], row["student_id"], text="", now=NOW,
                              files=[NewFile("work.pdf", "application/pdf", work)])
    known.coursework[("submission", submission.id, submission.files[0].id)] = work


async def _assert_every_secret_opens(db: Database, known: Known) -> None:
    """Through the readers the hub uses: the registry, token secrets, rosters, webhooks, MFA, documents."""
    devices = {d.device_id: d.key for d in await load_devices(db, list(known.device_keys))}
    assert devices == known.device_keys
    for student, secret in known.token_secrets.items():
        assert await student_token_secret(db, student) == secret
    for subscription_id, secret in known.webhook_secrets.items():
        subscription = await get_subscription(db, subscription_id)
        assert subscription is not None and subscription.secret == secret
    for user_id, seed in known.totp_seeds.items():
        record = await get_mfa(db, user_id)
        assert record is not None and db.secrets.decrypt(record.secret_sealed, totp_context(user_id)) == seed
    for leave_id, data in known.documents.items():
        document = await get_document(db, leave_id)
        assert document is not None and document.data == data
    for (kind, parent, item), data in known.coursework.items():
        stored = await (get_attachment(db, parent, item) if kind == "attachment" else get_file(db, parent, item))
        assert stored is not None and stored.data == data
    assert (await hub_signing_key(db, os.urandom(32), os.urandom(32)))[0] == known.hub_seed


def _forms(secret: bytes) -> list[bytes]:
    """How a secret could show in a plain-format dump: raw, bytea hex (``\\x..``), base64, base32."""
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.b64encode(secret).rstrip(b"="),
            base64.b32encode(secret).rstrip(b"=")]


def _data_only_dump(database_url: str) -> bytes:
    tools = find_pg_tools(run_with_database(database_url, server_version)[0], tool_dirs(Settings()))
    target, env = libpq_target(database_url)
    return subprocess.run([str(tools.pg_dump), "--data-only", "--format=plain", "--dbname", target],
                          env=env, capture_output=True, check=True, timeout=120).stdout


@pytest.mark.integration
def test_a_dump_of_a_seeded_database_holds_no_known_secret_in_any_form(fresh_database_url):
    known = Known()

    async def seed(db: Database) -> dict[str, int]:
        await ensure_campus(db, rooms=1, students=1, now=NOW)  # a room for the pre-0025 device
        await _insert_plaintext_rows(db, known)
        sealed = await seal_pending(db)
        await _store_secrets_the_current_way(db, known)
        await _assert_every_secret_opens(db, known)
        return sealed

    sealed = run_with_database(fresh_database_url, seed)
    assert sealed == {"devices.key_sealed": 1, "students.token_secret_sealed": 1,
                      "webhook_subscriptions.secret_sealed": 1, "leave_documents.data_sealed": 1,
                      "hub_signing_keys.private_key_sealed": 1}
    assert run_with_database(fresh_database_url, seal_pending) == {name: 0 for name in sealed}  # idempotent
    dump = _data_only_dump(fresh_database_url)
    assert b"COPY public.students" in dump and b"COPY public.leave_documents" in dump  # the dump has the rows
    # ... and the scan sees bytea: each document's sha256, kept in the clear, is there in hex form.
    assert all(hashlib.sha256(data).hexdigest().encode() in dump for data in known.documents.values())
    secrets_found = [name for name, secret in known.values() for form in _forms(secret) if form in dump]
    # A leave document is found by any 64 bytes of it too (pg_dump does not split a bytea value).
    secrets_found += [f"leave document {k} (part)" for k, data in known.documents.items()
                      if data[1000:1064].hex().encode() in dump]
    secrets_found += [f"coursework {k} (part)" for k, data in known.coursework.items()
                      if data[1000:1064].hex().encode() in dump]
    assert secrets_found == []
    counts = run_with_database(fresh_database_url, key_counts)
    assert all(c.key_id is not None for c in counts)  # nothing left in plaintext
    assert {c.column for c in counts} == {column.name for column in SEALED_COLUMNS}


@pytest.mark.integration
def test_the_webhook_dispatcher_signs_with_the_opened_secret_and_a_new_secret_is_stored_sealed(fresh_database_url):
    async def work(db: Database) -> None:
        await ensure_campus(db, rooms=1, students=1, now=NOW)  # the admin who creates it
        subscription = await create_subscription(db, url="https://hooks.example.org/x", secret="first-secret-0123456789",
                                                 kinds=[], active=True, description="", created_by="usr-admin", now=NOW)
        await db.execute("INSERT INTO webhook_deliveries (subscription_id, kind, payload, next_attempt_at)"
                         " VALUES ($1, 'test', '{}'::jsonb, $2)", subscription.id, NOW - timedelta(seconds=1))
        [due] = await claim_due(db, timedelta(seconds=30), 10)
        assert due.secret == "first-secret-0123456789"
        updated = await update_subscription(db, subscription.id, {"secret": "second-secret-0123456789"}, NOW,
                                            by="usr-admin")
        assert updated is not None and updated.secret == "second-secret-0123456789"
        row = await db.fetchrow("SELECT secret, secret_sealed FROM webhook_subscriptions WHERE id = $1",
                                subscription.id)
        assert row["secret"] is None and b"second-secret" not in bytes(row["secret_sealed"])

    run_with_database(fresh_database_url, work)


@pytest.mark.integration
def test_a_sealed_secret_copied_onto_another_row_does_not_open(fresh_database_url):
    async def work(db: Database) -> None:
        campus = await ensure_campus(db, rooms=1, students=2, now=NOW)
        first, second = (s.student_id for s in campus.students)
        await db.execute("UPDATE students SET token_secret_sealed = (SELECT token_secret_sealed FROM students"
                         " WHERE id = $1) WHERE id = $2", first, second)
        with pytest.raises(SecretsBoxError):
            await student_token_secret(db, second)

    run_with_database(fresh_database_url, work)


@pytest.mark.integration
def test_rosters_hold_the_opened_token_secrets(fresh_database_url):
    async def work(db: Database) -> None:
        campus = await ensure_campus(db, rooms=2, students=8, now=NOW)
        session = campus.sessions[0]
        secrets = {s.student_id: s.token_secret for s in campus.students}
        roster = await load_session_roster(db, session.session_id)
        assert roster == {sid: secrets[sid] for sid in session.enrolled}

    run_with_database(fresh_database_url, work)


@pytest.mark.integration
def test_keys_rotate_reseals_everything_so_the_new_key_alone_opens_it(fresh_database_url, tmp_path, monkeypatch,
                                                                         capsys):
    key_file = tmp_path / "campus.key"
    known = Known()

    async def seed(db: Database) -> None:
        await ensure_campus(db, rooms=1, students=1, now=NOW)
        await _insert_plaintext_rows(db, known)  # `keys rotate` seals leftovers too
        await _store_secrets_the_current_way(db, known)

    run_with_database(fresh_database_url, seed, secrets=load_secrets_box(key_file))
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv("CAMPUSHUB_MASTER_KEY_FILE", str(key_file))
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)

    assert main(["keys", "status"]) == 0
    status = capsys.readouterr().out
    assert "key ids 1;" in status and "students.token_secret_sealed" in status and "plaintext" in status

    assert main(["keys", "rotate", "--batch", "3"]) == 0  # small batches: many short transactions
    report = capsys.readouterr().out
    assert "every secret is sealed with key 2" in report
    keys = parse_key_file(key_file.read_text())
    assert sorted(keys) == [1, 2]

    counts = run_with_database(fresh_database_url, key_counts, secrets=SecretsBox({2: keys[2]}))
    assert {c.key_id for c in counts} == {2}
    assert sum(c.rows for c in counts if c.column == "leave_documents.data_sealed") == len(known.documents)
    assert {"submission_files.data_sealed", "assignment_attachments.data_sealed"} <= {c.column for c in counts}
    # The old key is gone: everything opens with the new key alone, through the hub's readers.
    run_with_database(fresh_database_url, lambda db: _assert_every_secret_opens(db, known),
                      secrets=SecretsBox({2: keys[2]}))
    with pytest.raises(SecretsBoxError):
        run_with_database(fresh_database_url, lambda db: _assert_every_secret_opens(db, known),
                          secrets=SecretsBox({1: keys[1]}))

    assert main(["keys", "status"]) == 0
    assert "plaintext" not in capsys.readouterr().out


@pytest.mark.integration
def test_reseal_reports_a_blob_it_cannot_open_and_goes_on(fresh_database_url):
    old, new = os.urandom(32), os.urandom(32)

    async def work(db: Database) -> None:
        await ensure_campus(db, rooms=1, students=3, now=NOW)

    run_with_database(fresh_database_url, work, secrets=SecretsBox({1: old}))
    foreign = SecretsBox({7: os.urandom(32)}).encrypt(os.urandom(32), b"token-secret:stu-0002")
    run_with_database(fresh_database_url, lambda db: db.execute(
        "UPDATE students SET token_secret_sealed = $1 WHERE id = 'stu-0002'", foreign))

    async def rotate(db: Database) -> tuple[list, list[KeyCount]]:
        return await reseal(db, batch=2), await key_counts(db)

    reports, counts = run_with_database(fresh_database_url, rotate, secrets=SecretsBox({1: old, 2: new}))
    students = next(r for r in reports if r.column == "students.token_secret_sealed")
    assert (students.resealed, students.unopenable) == (2, 1)
    assert KeyCount("students.token_secret_sealed", 7, 1) in counts
    assert run_with_database(fresh_database_url, lambda db: db.fetchval(
        "SELECT token_secret_sealed FROM students WHERE id = 'stu-0002'")) == foreign  # left as it was


def test_keys_rotate_with_an_environment_key_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    assert main(["keys", "rotate"]) == 2
    assert "--resume" in capsys.readouterr().err



@pytest.mark.integration
def test_a_campus_key_that_does_not_fit_the_database_is_named_before_the_hub_starts(fresh_database_url):
    right = SecretsBox({1: os.urandom(32)})
    run_with_database(fresh_database_url, lambda db: ensure_campus(db, rooms=1, students=2, now=NOW), secrets=right)
    assert run_with_database(fresh_database_url, campus_key_problems, secrets=right) == []
    regenerated = run_with_database(fresh_database_url, campus_key_problems, secrets=SecretsBox({1: os.urandom(32)}))
    assert any("students.token_secret_sealed: key 1 of the campus key does not open" in p for p in regenerated)
    other_id = run_with_database(fresh_database_url, campus_key_problems, secrets=SecretsBox({2: os.urandom(32)}))
    assert any("sealed with key 1, which the campus key lacks" in p for p in other_id)


@pytest.mark.integration
def test_campushub_migrate_seals_plaintext_rows_and_refuses_a_key_that_does_not_fit(fresh_database_url, monkeypatch,
                                                                                     capsys, mqtt_server_url):
    known = Known()

    async def seed(db: Database) -> None:
        await ensure_campus(db, rooms=1, students=1, now=NOW)
        await _insert_plaintext_rows(db, known)

    run_with_database(fresh_database_url, seed)
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "sealed 1 plaintext secret(s) of students.token_secret_sealed" in out
    assert "sealed 1 plaintext secret(s) of leave_documents.data_sealed" in out
    run_with_database(fresh_database_url, lambda db: _assert_every_secret_opens(db, known))
    assert all(c.key_id is not None for c in run_with_database(fresh_database_url, key_counts))

    monkeypatch.setenv(KEY_ENV, base64.b64encode(os.urandom(32)).decode())  # not the key that sealed them
    assert main(["migrate"]) == 2
    assert "does not fit this database" in capsys.readouterr().err
    monkeypatch.setenv("CAMPUSHUB_MQTT_URL", mqtt_server_url)
    assert main(["serve", "--port", "0"]) == 2  # a message, not a traceback out of trio's nursery
    assert "campushub: the campus key" in capsys.readouterr().err


def _errors(error: BaseException) -> list[BaseException]:
    """``error`` and, if it is a group, every error inside it."""
    if isinstance(error, BaseExceptionGroup):
        return [e for inner in error.exceptions for e in _errors(inner)]
    return [error]


@pytest.mark.integration
async def test_the_hub_refuses_to_start_with_a_campus_key_that_does_not_fit(hub_settings, hub_campus):
    settings = dataclasses.replace(hub_settings, master_key=base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(BaseException) as caught:
        await run_hub(settings, port=None)
    assert any(isinstance(e, StartRefused) and "does not fit this database" in str(e) for e in _errors(caught.value))
