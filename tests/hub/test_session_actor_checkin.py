"""The session actor in the running hub: auto-absent at close, late arrivals that overturn it, replay flags."""
from __future__ import annotations

import json
import time

from support.hub_helpers import eventually, session_with_device, signed_scan, student

from hub.domain.session_messages import CloseSession, ManualMarks
from schemas import Topics, issue_checkin_token


async def test_close_marks_absent_and_a_late_arriving_scan_turns_it_present(hub, hub_settings, hub_campus, test_db,
                                                                             publisher):
    session, device = session_with_device(hub_campus)
    first = student(hub_campus, session.enrolled[0])
    ref = hub.sessions.lookup(session.session_id)
    scanned_at = time.time()  # the scan happens now, on the edge, but the agent is offline ...
    receipt = await ref.ask(CloseSession(), timeout=10)
    assert receipt.accepted and len(receipt.changes) == len(session.enrolled)
    rows = await test_db.fetch("SELECT status, source FROM attendance WHERE session_id = $1", session.session_id)
    assert {(r["status"], r["source"]) for r in rows} == {("absent", "auto_absent")} and len(rows) == len(session.enrolled)
    # ... and its buffered scan arrives after the close: judged by device time, it counts.
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    await publisher.publish(uplink, signed_scan(
        device, issue_checkin_token(first.student_id, first.token_secret, scanned_at), seq=1, at=scanned_at),
        wait_for_ack=True)

    async def present():
        return await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                      session.session_id, first.student_id) == "present"

    await eventually(present)
    audit = await test_db.fetch(
        "SELECT actor, before, after, reason FROM audit_log WHERE entity_id = $1 ORDER BY id",
        f"{session.session_id}/{first.student_id}")
    assert [json.loads(a["after"])["status"] for a in audit] == ["absent", "present"]
    assert json.loads(audit[1]["before"])["status"] == "absent"
    assert audit[1]["actor"] == f"device:{device.device_id}" and "late-arriving" in audit[1]["reason"]
    # A faculty's mark after the close goes through the same actor.
    second = session.enrolled[1]
    marks = await ref.ask(ManualMarks(((second, "excused"),), "usr-admin", "medical note"), timeout=10)
    assert marks.accepted and await marks.committed()
    assert await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, second) == "excused"


async def test_a_replayed_personal_code_is_rejected_and_flagged(hub, hub_settings, hub_campus, test_db, publisher):
    session, device = session_with_device(hub_campus)
    enrolled = student(hub_campus, session.enrolled[0])
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    token = issue_checkin_token(enrolled.student_id, enrolled.token_secret, time.time())
    await publisher.publish(uplink, signed_scan(device, token, seq=1), wait_for_ack=True)
    await publisher.publish(uplink, signed_scan(device, token, seq=2), wait_for_ack=True)
    flag = await eventually(lambda: test_db.fetchrow(
        "SELECT student_id, kind, state, source FROM checkin_flags WHERE session_id = $1", session.session_id))
    assert dict(flag) == {"student_id": enrolled.student_id, "kind": "token_reuse", "state": "open", "source": "qr"}
    assert await test_db.fetchval("SELECT count(*) FROM rejected_events WHERE reason = 'replayed_token'") == 1
    assert await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, enrolled.student_id) == "present"
