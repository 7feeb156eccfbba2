"""Regression (issue 15, wording): a ticket's history read "assigned → assigned" and "by usr-ops".

Each history entry now carries ``text``: what happened in plain words, with people's names (the hub
for the hub's own entries), never a user id or a state code repeated. The codes (``kind``,
``actor``, ``from_state``, ``to_state``) stay in the API.
"""
from __future__ import annotations

import pytest
from web_helpers import PASSWORD, bearer

from hub.core.passwords import hash_password

pytestmark = pytest.mark.integration


async def test_ticket_history_says_who_did_what_in_words(client, world, db) -> None:
    second = f"ops2_{world.suffix}"
    await db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                     " VALUES ($1, $1, 'Priya Nair', 'ops', $2)", second, hash_password(PASSWORD))
    stu1, ops = await bearer(client, world.users["stu1"]), await bearer(client, world.users["ops"])
    response = await client.post("/api/v1/tickets", headers=stu1, json={
        "title": "Projector flickers", "room_id": world.room})
    assert response.status_code == 201
    tid = (await response.get_json())["id"]
    assert (await client.post(f"/api/v1/tickets/{tid}/assign", headers=ops,
                              json={"assignee": world.users["ops"]})).status_code == 200
    assert (await client.post(f"/api/v1/tickets/{tid}/assign", headers=ops,
                              json={"assignee": second})).status_code == 200
    second_ops = await bearer(client, second)
    assert (await client.post(f"/api/v1/tickets/{tid}/transition", headers=second_ops,
                              json={"to": "in_progress"})).status_code == 200
    assert (await client.patch(f"/api/v1/tickets/{tid}", headers=ops, json={"priority": "P1"})).status_code == 200

    detail = await (await client.get(f"/api/v1/tickets/{tid}", headers=ops)).get_json()
    ops_name, stu_name = f"Ops {world.suffix}", f"Stu1 {world.suffix}"
    assert [e["text"] for e in detail["events"]] == [
        f"Reported by {stu_name}",
        f"Assigned to {ops_name} by {ops_name}",
        f"Reassigned from {ops_name} to Priya Nair by {ops_name}",
        "Work started by Priya Nair",
        f"Priority changed to P1 by {ops_name}",
    ]
    # The codes are still there for programs.
    assert [(e["kind"], e["actor"]) for e in detail["events"][:2]] == [
        ("created", world.users["stu1"]), ("assigned", world.users["ops"])]
    assert detail["events"][1]["to_state"] == "assigned"
