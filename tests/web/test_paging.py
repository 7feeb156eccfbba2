"""web/paging.py: the one home of the ``limit``/``offset`` arguments and the page envelope."""
from __future__ import annotations

import pytest
from quart_trio import QuartTrio

from web.errors import WebError
from web.openapi import DOCUMENT
from web.paging import (
    DEFAULT_PAGE,
    MAX_OFFSET,
    MAX_PAGE,
    PageRequest,
    page_json,
    page_of,
    page_params,
    page_request,
)

_APP = QuartTrio(__name__)


async def _asked(query: str, default_limit: int = DEFAULT_PAGE) -> PageRequest:
    async with _APP.test_request_context(f"/listing?{query}"):
        return page_request(default_limit)


async def test_absent_arguments_take_the_defaults():
    assert await _asked("") == PageRequest(DEFAULT_PAGE, 0)
    assert await _asked("", default_limit=100) == PageRequest(100, 0)


async def test_the_bounds_are_inclusive():
    assert await _asked(f"limit=1&offset={MAX_OFFSET}") == PageRequest(1, MAX_OFFSET)
    assert await _asked(f"limit={MAX_PAGE}&offset=0") == PageRequest(MAX_PAGE, 0)


@pytest.mark.parametrize("query, field, message", [
    ("limit=0", "limit", f"'limit' must be between 1 and {MAX_PAGE}."),
    (f"limit={MAX_PAGE + 1}", "limit", f"'limit' must be between 1 and {MAX_PAGE}."),
    ("limit=x", "limit", "'limit' must be an integer."),
    ("offset=-1", "offset", f"'offset' must be between 0 and {MAX_OFFSET}."),
    (f"offset={MAX_OFFSET + 1}", "offset", f"'offset' must be between 0 and {MAX_OFFSET}."),
    ("offset=1.5", "offset", "'offset' must be an integer."),
    ("limit=0&offset=-1", "limit", f"'limit' must be between 1 and {MAX_PAGE}."),  # limit is read first
])
async def test_a_bad_argument_is_a_400_naming_it(query, field, message):
    with pytest.raises(WebError) as refused:
        await _asked(query)
    assert (refused.value.status, refused.value.code, refused.value.field) == (400, "invalid_request", field)
    assert refused.value.message == message


def test_the_envelope_carries_the_slice_asked_for_and_any_extra_keys():
    asked = PageRequest(limit=2, offset=4)
    assert page_json(iter(["a", "b"]), 7, asked) == {"items": ["a", "b"], "total": 7, "limit": 2, "offset": 4}
    assert page_json([], 0, asked, unread=3)["unread"] == 3


def test_a_listing_held_in_memory_is_sliced_as_asked():
    items = list(range(10))
    assert PageRequest(limit=3, offset=4).of(items) == [4, 5, 6]
    assert PageRequest(limit=3, offset=9).of(items) == [9]
    assert PageRequest(limit=3, offset=20).of(items) == []


def test_the_documented_parameters_are_the_parsed_bounds():
    limit, offset = page_params(100)
    assert (limit["name"], limit["schema"]) == ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                                          "default": 100})
    assert (offset["name"], offset["schema"]) == ("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                                                             "default": 0})
    schema = page_of({"type": "string"}, unread={"type": "integer"})
    assert schema["required"] == ["items", "total", "limit", "offset", "unread"]
    assert schema["properties"]["items"] == {"type": "array", "items": {"type": "string"}}


def _resolved(schema: dict) -> dict:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_documented_listing_takes_the_page_arguments_and_answers_the_envelope():
    listings = 0
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            if not names & {"limit", "offset"}:
                continue
            listings += 1
            assert {"limit", "offset"} <= names, f"{method} {path}"
            for param in operation["parameters"]:
                if param["name"] in ("limit", "offset"):
                    assert param["schema"]["maximum"] == (MAX_PAGE if param["name"] == "limit" else MAX_OFFSET)
            body = _resolved(operation["responses"]["200"]["content"]["application/json"]["schema"])
            assert {"items", "total", "limit", "offset"} <= set(body["required"]), f"{method} {path}"
    assert listings >= 20
