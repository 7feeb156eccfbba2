"""Every reason code the hub can emit has a sentence (web/wording.py), derived from the source itself."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from hub.domain.checkin import FLAG_KINDS
from web import wording

ROOT = Path(__file__).resolve().parents[2]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def emitted_reasons() -> set[str]:
    """Reason codes written as literals in ``reject(message, "code", ...)``, ``Rejected("code", ...)``,
    ``WireError("code", ...)`` across hub/ and schemas/, and the ``("code", detail)`` problems of the
    pipeline (the ingress's ``_record_problem``; elsewhere ``*_problem`` names form fields)."""
    codes: set[str] = set()
    for path in [*ROOT.joinpath("hub").rglob("*.py"), *ROOT.joinpath("schemas").rglob("*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name, args = _name(node), node.args
                if name == "reject" and len(args) >= 2:
                    code = _literal(args[1])
                elif name in ("Rejected", "WireError") and args:
                    code = _literal(args[0])
                else:
                    code = None
                if code:
                    codes.add(code)
            elif isinstance(node, ast.FunctionDef) and node.name.endswith("_problem") and "pipeline" in path.parts:
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple) and ret.value.elts:
                        code = _literal(ret.value.elts[0])
                        if code:
                            codes.add(code)
    return codes


def test_the_source_scan_finds_the_known_codes():
    found = emitted_reasons()
    # A sample from each layer, so a scan that silently finds nothing cannot pass.
    assert {"bad_topic", "unknown_device", "bad_signature", "oversize", "invalid_token", "replayed_token",
            "no_live_session", "rate_limited", "after_late_cutoff"} <= found


def test_every_emitted_reason_has_a_sentence():
    missing = sorted(emitted_reasons() - set(wording.REJECTION_WORDS))
    assert not missing, f"reason codes without words in web/wording.py: {missing}"


def test_every_flag_kind_has_a_sentence():
    assert set(FLAG_KINDS) <= set(wording.FLAG_WORDS)


def test_sentences_are_sentences_not_codes():
    for table in (wording.REJECTION_WORDS, wording.FLAG_WORDS, wording.ERROR_WORDS):
        for code, text in table.items():
            assert text[0].isupper() and text.endswith("."), code
            assert "_" not in text, (code, text)


def test_unknown_codes_are_shown_not_hidden():
    assert wording.rejection_words("brand_new_reason") == "Refused (brand_new_reason)."
    assert wording.rejection_words("replayed_token") == "This check-in code was already used; each code counts once."
    assert wording.status_heading(403) == "You don't have access to this page"
    assert wording.status_heading(599) == "Something went wrong on our side"
    # A flag's detail shows only where it is plain (the network), never a code window.
    assert wording.flag_words("outside_network", "checked in from 127.0.0.0/24") == (
        "The check-in came from outside the room's network: checked in from 127.0.0.0/24.")
    assert "window" not in wording.flag_words("token_reuse", "personal code of window 119774294 presented again")


async def test_wording_is_served_once_for_scripts(client):
    response = await client.get("/wording.json")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["rejections"]["invalid_token"] == wording.REJECTION_WORDS["invalid_token"]
    assert body["flags"]["token_reuse"] == wording.FLAG_WORDS["token_reuse"]


async def test_admin_console_shows_rejection_reasons_in_words(client, world, db):
    from web_helpers import page_login

    await page_login(client, world.username("admin"))
    html = await (await client.get("/admin")).get_data(as_text=True)
    assert "<td>bad_signature</td>" not in html and "<td>invalid_token</td>" not in html


def test_alarm_types_and_states_have_words():
    from hub.domain.alarms import OFFLINE_ALARM, RATE_LIMIT_ALARM, STATES
    from hub.domain.anomaly import ANOMALY_ALARM
    from hub.domain.thresholds import alarm_type

    for code in (OFFLINE_ALARM, RATE_LIMIT_ALARM, ANOMALY_ALARM):
        assert "_" not in wording.alarm_type_words(code), code
    assert wording.alarm_type_words(alarm_type("co2", "above")) == "CO₂ too high"
    assert wording.alarm_type_words(alarm_type("temperature", "below")) == "Temperature too low"
    assert wording.alarm_type_words(alarm_type("light_level", "above")) == "light_level too high"  # unlisted metric: itself
    assert wording.alarm_type_words("brand_new") == "brand_new"  # an unknown type is shown, never hidden
    for state in STATES:
        assert "_" not in wording.alarm_state_words(state), state
    assert wording.wording_json()["alarms"]["types"][ANOMALY_ALARM] == "Unusual readings"


async def _checked_values(db, table: str, column: str) -> set[str]:
    """The values the database's own CHECK allows in ``table.column`` (``column IN ('a', 'b')``, which
    PostgreSQL shows as ``((column = ANY (ARRAY['a'::text, 'b'::text])))``)."""
    definitions = await db.fetch(
        "SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c"
        " WHERE c.conrelid = $1::regclass AND c.contype = 'c'", table)
    mine = [d["def"] for d in definitions if re.search(rf"\({column} = ANY \(ARRAY\[", d["def"])]
    assert len(mine) == 1, (table, column, [d["def"] for d in definitions])
    return set(re.findall(r"'([^']+)'::text", mine[0]))


async def test_device_kinds_and_commands_have_words_and_no_stale_ones(db):
    from hub.db.device_commands import COMMAND_NAMES, COMMAND_STATUSES
    from hub.db.provisioning import DEVICE_KINDS
    from schemas import CommandName

    # Where the codes are declared: the registry's tuple, the wire format, and the database's CHECKs.
    assert set(DEVICE_KINDS) == await _checked_values(db, "devices", "kind") == set(wording.DEVICE_KIND_WORDS)
    assert set(get_args(CommandName)) == set(COMMAND_NAMES) == set(wording.COMMAND_WORDS)
    assert set(COMMAND_NAMES) == await _checked_values(db, "device_commands", "name")
    assert set(COMMAND_STATUSES) == await _checked_values(db, "device_commands", "status")
    assert set(COMMAND_STATUSES) == set(wording.COMMAND_STATUS_WORDS)
    for table in (wording.DEVICE_KIND_WORDS, wording.COMMAND_WORDS, wording.COMMAND_STATUS_WORDS):
        for code, text in table.items():
            assert text[0].isupper() and "_" not in text and not text.endswith("."), (code, text)
    assert wording.device_kind_words("qr_camera") == "QR camera"
    assert wording.command_words("time_sync") == "Set the clock"
    assert wording.command_status_words("timed_out") == "No answer in time"
    # An unknown code is shown as itself, never hidden.
    assert wording.device_kind_words("lidar") == "lidar" and wording.command_words("self_test") == "self_test"
    assert wording.wording_json()["devices"] == wording.device_words()


async def test_ops_pages_show_device_kinds_and_commands_in_words(client, world, db):
    from web_helpers import page_login

    await page_login(client, world.username("ops"))  # the world's device is a qr_camera
    device = await (await client.get(f"/ops/devices/{world.device}")).get_data(as_text=True)
    assert '<span class="kind" data-kind="qr_camera">QR camera</span>' in device
    for code, words in wording.COMMAND_WORDS.items():  # the menu sends the code, shows the words
        assert f'<option value="{code}">{words}</option>' in device
    assert 'id="device-words"' in device  # the table ops.js words the command history with
    room = await (await client.get(f"/ops/rooms/{world.room}")).get_data(as_text=True)
    assert '<span class="kind">QR camera</span>' in room
    overview = await (await client.get("/ops")).get_data(as_text=True)
    assert f'data-kind="qr_camera" title="{world.device} (QR camera): ' in overview and ">QR camera</a>" in overview
    register = await (await client.get("/devices/register")).get_data(as_text=True)
    assert '<option value="edge_agent" selected>Edge agent</option>' in register
    for html in (device, room, overview, register):
        assert ">qr_camera<" not in html and ">edge_agent<" not in html and ">time_sync<" not in html
    # The API keeps its codes.
    listing = await (await client.get(f"/api/v1/devices/{world.device}")).get_json()
    assert listing["device"]["kind"] == "qr_camera"
