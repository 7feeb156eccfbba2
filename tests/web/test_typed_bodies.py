"""Request bodies of the devices, tickets, insights and notifications APIs are declared once, as msgspec
structs: the struct both validates the body and is the OpenAPI ``requestBody`` (web/request.py)."""
from __future__ import annotations

import json

import msgspec
import pytest
from web_helpers import bearer

from web.openapi import DOCUMENT
from web.routes import devices_api, insights, notifications_api, provisioning, tickets_api


@pytest.mark.parametrize("module", [provisioning, devices_api, tickets_api, insights, notifications_api],
                         ids=lambda m: m.__name__)
def test_every_request_body_is_a_struct_and_documented_from_it(module):
    bodies = 0
    for path, operations in module.OPENAPI_PATHS.items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            bodies += 1
            shape = operation["requestBody"]["content"]["application/json"]["schema"]
            assert isinstance(shape, type) and issubclass(shape, msgspec.Struct), f"{method} {path}"
            documented = DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
            assert documented == {"$ref": f"#/components/schemas/{shape.__name__}"}
            assert DOCUMENT["components"]["schemas"][shape.__name__]["type"] == "object"
    assert bodies > 0


async def test_a_threshold_metric_is_refused_with_a_trailing_newline(client, world):
    headers = {**await bearer(client, world.username("admin")), "Content-Type": "application/json"}
    rule = {"metric": "temperature\n", "op": "above", "value": 26, "clear_value": 24, "severity": "major"}
    response = await client.post("/api/v1/thresholds", data=json.dumps(rule), headers=headers)
    assert response.status_code == 400 and (await response.get_json())["error"]["field"] == "metric"


@pytest.mark.parametrize("args", ['{"%s": 1}' % ("k" * 65), '{"x": NaN}', '{"x": -1e999}'])
async def test_command_args_name_the_args_field(client, world, args):
    headers = {**await bearer(client, world.username("ops")), "Content-Type": "application/json"}
    response = await client.post(f"/api/v1/devices/{world.device}/commands",
                                 data='{"name": "config_push", "args": %s}' % args, headers=headers)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["field"] == "args"


async def test_a_ticket_state_is_one_of_the_states_exactly(client, world):
    headers = await bearer(client, world.username("ops"))
    response = await client.post("/api/v1/tickets/1/transition", json={"to": "open\n"}, headers=headers)
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["field"] == "to" and "open, assigned" in error["message"]
