"""Schemathesis fuzzes every operation of the served OpenAPI document against a running hub.

The document is the one the hub serves (``GET /api/v1/openapi.json``, loaded
with ``schemathesis.openapi.from_dict``; ``from_url`` would leave out the
document's own operation). For each operation, positive cases (valid by the
document) and negative ones (invalid by it) are generated and sent with an
admin's bearer token; each response must not be a 5xx, and must use a
documented status code and content type and match the documented schema.
(Schemathesis' ``negative_data_rejection`` check is left out: it counts an
unknown query parameter, which the API ignores as HTTP APIs usually do, as
accepted invalid data.) Random ids only ever meet 404s, so the same checks
then run on requests with real ids, tokens and rows, to validate the 200
bodies too. Bounded and derandomized: at most :data:`MAX_EXAMPLES` cases per
operation and mode, the same ones every run.

Schemathesis and its ``requests`` transport are synchronous, so they run in
a worker thread while the hub serves on the test's trio loop.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import httpx
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.db.seed import DEMO_PASSWORD
from web.openapi import OPENAPI_PATH

#: Per operation and generation mode. With ~170 operations x 2 modes, 12 took 113 s of a suite that must
#: stay under 20 minutes; 6 keeps every operation and mode fuzzed, derandomized, and the real-row replay
#: whole. Set CAMPUSHUB_FUZZ_EXAMPLES=100 (or more) for a deep run (docs/reliability.md).
MAX_EXAMPLES = int(os.environ.get("CAMPUSHUB_FUZZ_EXAMPLES", "6"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(document: dict, base_url: str, token: str, real: list[tuple[str, dict[str, Any], int]]):
    """Fuzz every operation, then run the ``real`` requests ``(label, Case kwargs, expected status)``."""
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    statuses: dict[str, Counter] = {}
    operations = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
    for label, operation in operations.items():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            seen = statuses.setdefault(f"{label} [{mode.value}]", Counter())

            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), print_blob=False)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)
                seen[response.status_code] += 1  # noqa: B023 - run() is called below, in this same iteration

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, label  # no input to make invalid (e.g. /healthz)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported all together
                failures.append(f"{label} [{mode.value}]: {type(exc).__name__}: {exc}"[:3000])
    for label, kwargs, expected in real:
        try:
            case = operations[label].Case(**kwargs)
            response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)
            if response.status_code != expected:
                failures.append(f"{label} {kwargs}: {response.status_code}, expected {expected}")
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001
            failures.append(f"{label} {kwargs}: {type(exc).__name__}: {exc}"[:3000])
    return failures, statuses, set(operations)


async def test_schemathesis_finds_no_server_error_and_no_undocumented_response(hub, hostile_campus, test_db):
    campus = hostile_campus.campus
    session = campus.sessions[0]
    now = datetime.now(timezone.utc)
    # Rows with every optional field set, so the real requests validate full bodies.
    await test_db.execute(
        "INSERT INTO rejected_events (dedup_key, event_id, device_id, topic, kind, reason, detail, session_id,"
        " payload, received_at) VALUES ($1, $2, $3, 'campushub/v1/dev/x/up', 'qr_scan', 'bad_signature', 'test',"
        " $4, $5, $6)", os.urandom(16), uuid.uuid4(), hostile_campus.ed25519.device_id, session.session_id,
        b"payload", now)
    await test_db.execute(
        "INSERT INTO device_health (device_id, online, last_seen, last_change, reason, firmware, outbox_depth)"
        " VALUES ($1, true, $2, $2, 'connected', 'edge/9', 3)", hostile_campus.ed25519.device_id, now)
    await test_db.execute(
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source)"
        " VALUES ($1, $2, 'present', $3, 'qr')", session.session_id, session.enrolled[0], now)
    base_url = f"http://127.0.0.1:{hub.web_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        login = (await http.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})).json()
        spare = (await http.post("/api/v1/auth/login", json={"username": "ops", "password": DEMO_PASSWORD})).json()
        response = await http.get(OPENAPI_PATH)  # no credentials needed
        assert response.status_code == 200
        document = response.json()
    real = [
        ("GET /api/v1/sessions/{session_id}/roster", {"path_parameters": {"session_id": session.session_id}}, 200),
        ("GET /api/v1/students/{student_id}/attendance", {"path_parameters": {"student_id": session.enrolled[0]}},
         200),
        ("GET /api/v1/rejections", {"query": {"limit": 5, "reason": "bad_signature"}}, 200),
        ("GET /api/v1/devices", {}, 200),
        # Charts (web/routes/charts_api.py): full bodies with real rows.
        ("GET /api/v1/sessions/{session_id}/arrivals", {"path_parameters": {"session_id": session.session_id}}, 200),
        ("GET /api/v1/devices/{device_id}/uptime", {"path_parameters": {"device_id": campus.devices[0].device_id},
                                                    "query": {"days": 3}}, 200),
        ("GET /api/v1/tickets/sla-compliance", {"query": {"weeks": 2}}, 200),
        ("POST /api/v1/auth/login", {"body": {"username": "ops", "password": DEMO_PASSWORD},
                                     "media_type": "application/json"}, 200),
        ("POST /api/v1/auth/refresh", {"body": {"refresh_token": spare["refresh_token"]},
                                       "media_type": "application/json"}, 200),
        ("GET /api/v1/openapi.json", {}, 200),
        # Provisioning (docs/provisioning.md): full credential and command bodies, in this order.
        ("POST /api/v1/devices", {"body": {"device_id": "fuzz-real-ed", "room_id": session.room_id,
                                           "kind": "sensor", "alg": "ed25519"}, "media_type": "application/json"}, 201),
        ("POST /api/v1/devices/{device_id}/credentials/rotate", {
            "path_parameters": {"device_id": "fuzz-real-ed"}, "body": {}, "media_type": "application/json"}, 200),
        ("POST /api/v1/devices/{device_id}/commands", {
            "path_parameters": {"device_id": "fuzz-real-ed"}, "body": {"name": "config_push", "args": {"a": 1.5}},
            "media_type": "application/json"}, 202),
        ("GET /api/v1/devices/{device_id}/commands", {"path_parameters": {"device_id": campus.devices[0].device_id}},
         200),
        ("POST /api/v1/devices/{device_id}/revoke", {
            "path_parameters": {"device_id": "fuzz-real-ed"}, "body": {"reason": "done"},
            "media_type": "application/json"}, 200),
    ]
    failures, statuses, labels = await trio.to_thread.run_sync(_fuzz, document, base_url, login["access_token"], real)
    assert not failures, "\n\n".join(failures)
    assert labels == {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item}
    # The bearer token was used: authenticated reads succeeded while fuzzing.
    assert statuses["GET /api/v1/me [positive]"][200] > 0 and statuses["GET /api/v1/devices [positive]"][200] > 0
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert "campushub_actor_restarts_total 0.0" in (await http.get("/metrics")).text
