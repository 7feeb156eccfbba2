"""web/request.py: a JSON body read into the struct that declares it, and the query-argument helpers."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any

import msgspec
import pytest
from msgspec import UNSET, Meta, UnsetType
from quart_trio import QuartTrio

from web.errors import WebError
from web.openapi import DOCUMENT, _with_generated_schemas
from web.request import (
    ClockTime,
    EmptyBody,
    Id,
    Instant,
    NonEmpty,
    Text,
    Weekday,
    choice_arg,
    day_arg,
    flag_arg,
    instant_arg,
    int_arg,
    json_body,
    one_of,
    present_fields,
    text_arg,
)

_APP = QuartTrio(__name__)


class Item(msgspec.Struct):
    sku: Id
    count: Annotated[int, Meta(ge=1, le=10)]


class Order(msgspec.Struct):
    customer: NonEmpty
    note: Text
    items: Annotated[list[Item], Meta(min_length=1)]
    size: Annotated[str, one_of(("small", "large"))] = "small"
    at: Instant | None = None
    day: date | None = None
    starts: ClockTime | None = None
    weekday: Weekday | None = None
    tags: Annotated[dict[Annotated[str, Meta(max_length=3)], int], Meta(max_length=2)] = {}


class OrderPatch(msgspec.Struct):
    note: Text | UnsetType = UNSET
    size: Annotated[str, one_of(("small", "large"))] | None | UnsetType = UNSET


_GOOD: dict[str, Any] = {"customer": "c", "note": "n", "items": [{"sku": "a-1", "count": 2}]}


async def _read(shape: type[msgspec.Struct], body: Any = None, *, data: bytes | None = None,
                content_type: str = "application/json", storable_text: bool = True) -> Any:
    raw = msgspec.json.encode(body) if data is None else data
    async with _APP.test_request_context("/x", method="POST", headers={"Content-Type": content_type}, data=raw):
        return await json_body(shape, storable_text=storable_text)


async def _refusal(shape: type[msgspec.Struct], body: Any = None, **kwargs: Any) -> dict:
    with pytest.raises(WebError) as refused:
        await _read(shape, body, **kwargs)
    return {"status": refused.value.status, **refused.value.body()["error"]}


async def test_a_valid_body_becomes_the_struct_and_unknown_fields_are_ignored():
    order = await _read(Order, {**_GOOD, "size": "large", "at": "2025-03-01T09:30+05:30", "day": "2025-03-01",
                                "starts": "09:30", "weekday": "Tuesday", "unknown": [1, 2]})
    assert order.customer == "c" and order.items == [Item("a-1", 2)] and order.size == "large"
    assert order.at == datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert order.day == date(2025, 3, 1) and order.starts == time(9, 30) and order.weekday == 1
    assert await _read(EmptyBody, {}) == EmptyBody()


async def test_the_refusals_keep_the_api_error_shapes():
    assert await _refusal(Order, data=b"customer=c", content_type="application/x-www-form-urlencoded") == {
        "status": 415, "code": "unsupported_media_type",
        "message": "Send a JSON body (Content-Type: application/json)."}
    for raw in (b"[1]", b"{", b"\xff\xfe", b"[" * 30_000):
        assert await _refusal(Order, data=raw) == {
            "status": 400, "code": "invalid_request", "message": "The body must be a JSON object."}
    nul = await _refusal(Order, {**_GOOD, "note": "a\x00b"})
    assert nul["status"] == 400 and nul["field"] == "note" and "NUL" in nul["message"]
    surrogate = await _refusal(Order, data=b'{"customer": "c", "items": [{"sku": "\\ud800"}]}')
    assert surrogate["field"] == "items"


async def test_a_route_may_let_nul_through_to_refuse_it_itself():
    assert (await _read(Order, {**_GOOD, "note": "a\x00b"}, storable_text=False)).note == "a\x00b"


@pytest.mark.parametrize("change, field, message", [
    ({"customer": None}, "customer", "'customer': Expected `str`, got `null`."),
    ({"customer": ""}, "customer", "'customer': Expected `str` of length >= 1."),
    ({"note": "   "}, "note", "'note': Expected `str` matching regex '\\\\S'."),
    ({"note": "x" * 201}, "note", "'note': Expected `str` of length <= 200."),
    ({"items": []}, "items", "'items': Expected `array` of length >= 1."),
    ({"items": [{"sku": "a", "count": 0}]}, "items[0].count", "'items[0].count': Expected `int` >= 1."),
    ({"items": [{"sku": "a b", "count": 1}]}, "items[0].sku", None),
    ({"items": [{"count": 1}]}, "items[0].sku", "'items[0].sku' is required."),
    ({"items": [{"sku": "a", "count": True}]}, "items[0].count", "'items[0].count': Expected `int`, got `bool`."),
    ({"size": "huge"}, "size", "'size' must be one of: small, large."),
    ({"size": "small\n"}, "size", "'size' must be one of: small, large."),
    ({"items": [{"sku": "a-1\n", "count": 1}]}, "items[0].sku", None),
    ({"tags": {"long": 1}}, "tags", "'tags': Expected `str` of length <= 3."),
    ({"tags": {"a": "x"}}, "tags", "'tags': Expected `int`, got `str`."),
    ({"tags": {"a": 1, "b": 2, "c": 3}}, "tags", "'tags': Expected `object` of length <= 2."),
    ({"at": "2025-03-01T09:30"}, "at", "'at': must be an ISO 8601 date-time with a timezone offset."),
    ({"at": "9999-12-31T23:00+00:00"}, "at", None),
    ({"day": "2025-02-30"}, "day", None),
    ({"starts": "25:00"}, "starts", "'starts': must be a time of day, HH:MM."),
    ({"weekday": 7}, "weekday", None),
    ({"weekday": True}, "weekday", None),
])
async def test_a_refused_field_is_named_by_its_path(change, field, message):
    refused = await _refusal(Order, {**_GOOD, **change})
    assert refused["status"] == 400 and refused["code"] == "invalid_request" and refused["field"] == field
    if message is not None:
        assert refused["message"] == message


async def test_a_missing_field_says_what_it_takes():
    refused = await _refusal(Order, {"note": "n", "items": _GOOD["items"]})
    assert refused == {"status": 400, "code": "invalid_request", "field": "customer",
                       "message": "'customer' is required (a non-empty string)."}
    assert (await _refusal(Order, {"customer": "c", "note": "n"}))["message"] == "'items' is required (a list)."


async def test_a_patch_body_names_only_the_fields_it_sets():
    assert present_fields(await _read(OrderPatch, {})) == {}
    assert present_fields(await _read(OrderPatch, {"size": None})) == {"size": None}
    assert present_fields(await _read(OrderPatch, {"note": "x", "size": "large"})) == {"note": "x", "size": "large"}
    assert (await _refusal(OrderPatch, {"note": None}))["field"] == "note"



async def test_query_arguments():
    async with _APP.test_request_context("/x?n=5&id=abc&d=2025-01-02&t=2025-01-02T03:04Z&c=b&f=true&e="):
        assert int_arg("n", 1, 0, 10) == 5 and int_arg("absent", 7, 0, 10) == 7
        assert text_arg("id") == "abc" and text_arg("e") is None and text_arg("absent") is None
        assert day_arg("d") == date(2025, 1, 2) and day_arg("absent") is None
        assert instant_arg("t") == datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc) and instant_arg("e") is None
        assert choice_arg("c", ("a", "b")) == "b" and choice_arg("e", ("a",)) is None
        assert flag_arg("f") is True and flag_arg("absent") is False
    bad = {"n=11": lambda: int_arg("n", 1, 0, 10), "n=x": lambda: int_arg("n", 1, 0, 10),
           f"n={'x' * 65}": lambda: text_arg("n"), "n=2025-1-2": lambda: day_arg("n"),
           "n=2025-01-02T03:04": lambda: instant_arg("n"), "n=c": lambda: choice_arg("n", ("a", "b")),
           "n=yes": lambda: flag_arg("n")}
    for query, read in bad.items():
        async with _APP.test_request_context(f"/x?{query}"):
            with pytest.raises(WebError) as refused:
                read()
        assert refused.value.status == 400 and refused.value.field == "n", query


def test_the_document_takes_request_bodies_from_the_structs_that_read_them():
    login = DOCUMENT["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]
    assert login["schema"] == {"$ref": "#/components/schemas/Credentials"}
    credentials = DOCUMENT["components"]["schemas"]["Credentials"]
    assert credentials["required"] == ["username", "password"]
    assert credentials["properties"]["username"] == {"type": "string", "minLength": 1}
    slot = DOCUMENT["components"]["schemas"]["SlotBody"]["properties"]
    assert slot["starts_time"]["pattern"] and "anyOf" in slot["weekday"] and slot["kind"]["enum"]
    # No struct class is left in the served document (it is JSON).
    assert msgspec.json.decode(msgspec.json.encode(DOCUMENT)) == DOCUMENT


def test_a_request_struct_may_not_shadow_a_hand_written_schema() -> None:
    class Error(msgspec.Struct):
        x: int

    paths = {"/p": {"post": {"requestBody": {"content": {"application/json": {"schema": Error}}}}}}
    with pytest.raises(RuntimeError, match="clashes"):
        _with_generated_schemas(paths, {"Error": {}})
    resolved, schemas = _with_generated_schemas(paths, {})
    assert resolved["/p"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert schemas["Error"]["required"] == ["x"]
