"""Schemathesis fuzzes every operation of the served OpenAPI document against a running hub.

The document is loaded from the hub itself (``GET /api/v1/openapi.json``).
For each operation, positive cases (valid by the document) and negative ones
(invalid by it) are generated and sent with an admin's bearer token; each
response must not be a 5xx, must use a documented status code and content
type, and must match the documented schema; invalid input must be refused
with a 4xx. Bounded and derandomized: at most :data:`MAX_EXAMPLES` cases per
operation and mode, the same ones every run.

Schemathesis and its ``requests`` transport are synchronous, so they run in
a worker thread while the hub serves on the test's trio loop.
"""
from __future__ import annotations

import httpx
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from hub.db.seed import DEMO_PASSWORD
from web.openapi import OPENAPI_PATH

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(base_url: str, token: str) -> list[str]:
    schema = schemathesis.openapi.from_url(base_url + OPENAPI_PATH, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), print_blob=False)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=10)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - reported all together below
                failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}"[:3000])
    assert len(operations) == len(schema["paths"]) or operations, "no operations loaded"
    return failures + [] if operations else ["no operations"]


async def test_schemathesis_finds_no_server_error_and_no_undocumented_response(hub):
    base_url = f"http://127.0.0.1:{hub.web_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        document = (await http.get(OPENAPI_PATH)).json()
    failures = await trio.to_thread.run_sync(_fuzz, base_url, login.json()["access_token"])
    assert not failures, "\n\n".join(failures)
    operations = sum(len(item) for item in document["paths"].values())
    assert operations >= 11
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert "campushub_actor_restarts_total 0.0" in (await http.get("/metrics")).text
