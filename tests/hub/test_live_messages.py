"""The live-bus messages (hub/core/bus.py): the JSON the browser receives, one encoding per message,
the attendance mirror, and the declarations kept in step with the records they show."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import msgspec
import pytest

from hub.core.bus import (
    ATTENDANCE_TOPIC,
    DEVICES_TOPIC,
    LiveAlarm,
    LiveAttendance,
    LiveBus,
    LiveCommand,
    LiveDevice,
    LiveFlag,
    LiveMessage,
    LiveNotification,
    LivePriority,
    LiveTicket,
    LiveTicketComment,
    LiveTicketPolicy,
    LiveUnread,
    iso_fields,
    live_device,
    session_topic,
    student_topic,
)
from hub.db.tickets import Ticket, live_ticket
from hub.domain.device_health import PUBLISHED_HEALTH_FIELDS, DeviceHealth

AT = datetime(2030, 1, 7, 9, 30, 15, 123456, tzinfo=timezone.utc)


def received(message: LiveMessage) -> list[tuple[str, object]]:
    """What the browser parses, with the key order kept."""
    return list(json.loads(message.json, object_pairs_hook=lambda pairs: pairs))


def test_attendance_json_and_topics():
    message = LiveAttendance("ses-1", "stu-1", "late", AT.isoformat(), "qr")
    assert received(message) == [
        ("type", "attendance"), ("session_id", "ses-1"), ("student_id", "stu-1"), ("status", "late"),
        ("checked_in_at", "2030-01-07T09:30:15.123456+00:00"), ("source", "qr"),
    ]
    assert message.updates() == ((session_topic("ses-1"), message), (student_topic("stu-1"), message))


def test_device_and_alarm_json():
    device = live_device(DeviceHealth(
        "dev-1", online=True, last_seen=AT, last_change=AT, reason="online", firmware="1.2.4", uptime_s=60,
        outbox_depth=3, status_ts=99, last_connect_at=AT, last_connect_reason="boot", battery_pct=87.5, signal_dbm=-61,
        clock_skew_ms=12), "room-1")
    assert json.loads(device.json) == {
        "type": "device", "device_id": "dev-1", "room_id": "room-1", "online": True,
        "last_seen": AT.isoformat(), "firmware": "1.2.4", "outbox_depth": 3, "reason": "online",
        "last_change": AT.isoformat(), "uptime_s": 60, "last_connect_at": AT.isoformat(),
        "last_connect_reason": "boot", "last_disconnect_at": None, "last_disconnect_reason": "",
        "battery_pct": 87.5, "signal_dbm": -61, "clock_skew_ms": 12, "error_count": 0,
    }
    alarm = LiveAlarm(7, "dev-1", None, "device_offline", "major", "active_unacked", AT.isoformat(), None, None,
                      None, "offline")
    assert json.loads(alarm.json) == {
        "type": "alarm", "alarm_id": 7, "device_id": "dev-1", "room_id": None, "alarm_type": "device_offline",
        "severity": "major", "state": "active_unacked", "raised_at": AT.isoformat(), "cleared_at": None,
        "acked_by": None, "value": None, "message": "offline",
    }


def test_device_message_publishes_exactly_the_published_health_fields():
    fields = [name for name in LiveDevice.__struct_fields__ if name != "room_id"]
    assert sorted(fields) == sorted(PUBLISHED_HEALTH_FIELDS)


def test_device_message_carries_each_health_value_with_times_as_iso():
    health = DeviceHealth("dev-2", online=False, last_seen=AT, last_change=AT, reason="shutdown", firmware="2.0",
                          uptime_s=5, outbox_depth=1, status_ts=7, last_disconnect_at=AT,
                          last_disconnect_reason="shutdown", error_count=3)
    shown = json.loads(live_device(health, None).json)
    assert shown.pop("type") == "device" and shown.pop("room_id") is None
    assert shown == {name: getattr(health, name).isoformat() if isinstance(getattr(health, name), datetime)
                     else getattr(health, name) for name in PUBLISHED_HEALTH_FIELDS}
    assert isinstance(live_device(health, None), LiveDevice)


def _ticket(**changes) -> Ticket:
    values: dict = dict(
        id=5, room_id="room-1", room_name="Room 1", building="Main", device_id=None, alarm_id=None,
        alarm_type=None, title="Projector", description="flickers", priority="P2", state="open", source="report",
        assignee=None, assignee_name=None, reported_by="usr-1", reporter_name="Ann", sla_due_at=AT,
        sla_breached_at=None, auto_close_after_s=None, created_at=AT, updated_at=AT, resolved_at=None,
        closed_at=None, close_reason="")
    values.update(changes)
    return Ticket(**values)


def test_ticket_json_is_its_fields_plus_origin_change_and_the_sla_verdict():
    ticket = _ticket()
    message = live_ticket(ticket, AT.replace(hour=23), origin="hub", change="sla_breached")
    assert received(message)[:3] == [("type", "ticket"), ("origin", "hub"), ("change", "sla_breached")]
    assert json.loads(message.json) == {
        "type": "ticket", "origin": "hub", "change": "sla_breached", **iso_fields(ticket), "sla_breached": True}


def test_ticket_message_declares_every_ticket_column():
    columns = [f.name for f in dataclasses.fields(Ticket)]
    assert list(LiveTicket.__struct_fields__) == ["origin", "change", *columns, "sla_breached"]


def test_ticket_comment_policy_and_command_json():
    comment = LiveTicketComment(5, 9, "usr-1", "Ann", "on it", AT.isoformat())
    assert json.loads(comment.json) == {"type": "ticket_comment", "ticket_id": 5, "id": 9, "author": "usr-1",
                                        "author_name": "Ann", "body": "on it", "created_at": AT.isoformat()}
    policy = LiveTicketPolicy((LivePriority("P0", 3600, None), LivePriority("P2", 86400, 1800)), ("critical",),
                              AT.isoformat(), "usr-admin")
    assert json.loads(policy.json) == {
        "type": "ticket_policy",
        "priorities": [{"priority": "P0", "resolve_within_s": 3600, "auto_close_after_s": None},
                       {"priority": "P2", "resolve_within_s": 86400, "auto_close_after_s": 1800}],
        "auto_raise_severities": ["critical"], "updated_at": AT.isoformat(), "updated_by": "usr-admin",
    }
    command = {"command_id": "0b6c", "device_id": "dev-1", "name": "reboot", "args": {"delay_s": 5},
               "status": "pending", "ttl_s": 60, "ack_timeout_s": 30, "issued_by": "usr-ops",
               "created_at": AT.isoformat(), "sent_at": None, "expires_at": AT.isoformat(), "ack_deadline": None,
               "acked_at": None, "detail": ""}
    assert json.loads(LiveCommand(**command).json) == {"type": "command", **command}


def test_flag_notification_and_unread_json():
    flag = {"id": 3, "session_id": "ses-1", "student_id": "stu-1", "state": "open", "evidence": {"room_id": "x"}}
    message = LiveFlag("ses-1", "stu-1", "wrong_room", "scanned elsewhere", "open", flag)
    assert json.loads(message.json) == {"type": "flag", "session_id": "ses-1", "student_id": "stu-1",
                                        "kind": "wrong_room", "detail": "scanned elsewhere", "state": "open",
                                        "flag": flag}
    note = {"id": 1, "user_id": "usr-1", "kind": "leave_decided", "read": False, "title": "Leave approved ✓"}
    assert json.loads(LiveNotification(note).json) == {"type": "notification", "notification": note}
    assert "✓" in LiveNotification(note).json  # UTF-8 as is, like the API
    assert LiveUnread(4).json == '{"type":"unread","unread":4}'


def test_a_message_is_encoded_once_and_immutable():
    message = LiveUnread(4)
    assert message.json is message.json
    with pytest.raises(AttributeError):
        message.unread = 5
    assert msgspec.structs.asdict(message) == {"unread": 4}  # the cache is not a field


async def test_attendance_on_a_session_topic_is_mirrored_to_attendance_observers():
    bus = LiveBus()
    attendance = LiveAttendance("ses-1", "stu-1", "present", None, "qr")
    with bus.subscribe([ATTENDANCE_TOPIC]) as observer, bus.subscribe([session_topic("ses-1")]) as roster:
        for topic, message in attendance.updates():
            bus.publish(topic, message)
        bus.publish(DEVICES_TOPIC, LiveUnread(1))
        bus.publish(session_topic("ses-1"), LiveFlag("ses-1", "stu-1", "k", "", "open", {}))
        assert await observer.receive() is attendance
        assert observer._receive.statistics().current_buffer_used == 0  # once, and nothing else
        assert await roster.receive() is attendance
        assert isinstance(await roster.receive(), LiveFlag)
