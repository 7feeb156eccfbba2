"""The served OpenAPI document lists exactly the app's routes, so it cannot drift silently."""
from __future__ import annotations

import re

import msgspec
import pytest

from hub.core.bus import LiveBus
from web import WebContext, create_app
from web.openapi import DOCUMENT, OPENAPI_PATH, _with_generated_schemas

_IGNORED_METHODS = {"HEAD", "OPTIONS"}
#: Documented besides /api/v1: unauthenticated system endpoints.
_SYSTEM = {"/healthz", "/metrics"}


def _app():
    async def health() -> dict:
        return {"status": "ok"}

    # No database: building the app and serving the document need none.
    return create_app(WebContext(db=None, bus=LiveBus(), jwt_secret=b"x" * 32, connections=None,  # type: ignore[arg-type]
                                 health=health, metrics_text=lambda: ""))


def _app_routes(app) -> dict[str, set[str]]:
    """``{openapi path: {methods}}`` of every HTTP route under /api/v1 plus /healthz and /metrics."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if getattr(rule, "websocket", False):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        if path.startswith("/api/v1/") or path in _SYSTEM:
            routes.setdefault(path, set()).update(m.lower() for m in rule.methods - _IGNORED_METHODS)
    return routes


def _documented() -> dict[str, set[str]]:
    return {path: set(item) for path, item in DOCUMENT["paths"].items()}


def test_the_document_lists_exactly_the_apps_api_routes():
    assert _documented() == _app_routes(_app())


def test_every_path_parameter_is_documented():
    for path, item in DOCUMENT["paths"].items():
        in_path = set(re.findall(r"{([^}]+)}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, path


def test_every_operation_documents_its_errors_with_the_error_schema():
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            for code, response in responses.items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == error_ref, (method, path, code)
            if operation.get("security", DOCUMENT["security"]):
                assert "401" in responses and "403" in responses or path == "/api/v1/me", (method, path)


def test_every_schema_reference_resolves():
    text = repr(DOCUMENT)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in DOCUMENT["components"]["schemas"], name
    assert DOCUMENT["openapi"].startswith("3.1")
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_the_document_is_served_without_authentication():
    client = _app().test_client()
    response = await client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.content_type.startswith("application/json")
    assert await response.get_json() == DOCUMENT


def test_two_request_structs_of_one_name_are_refused():
    # A reference names the struct alone: two `Body` structs would leave one reference dangling.
    first = msgspec.defstruct("Body", [("a", int)], module="first")
    second = msgspec.defstruct("Body", [("b", int)], module="second")
    with pytest.raises(RuntimeError, match="same name"):
        _with_generated_schemas({"/x": {"post": {"body": first}}, "/y": {"post": {"body": second}}}, {})
