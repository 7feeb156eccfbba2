"""The alarm lifecycle, escalation and the offline alarm (hub/domain/alarms.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.alarms import (
    OFFLINE_ALARM,
    AlarmTransitionError,
    most_severe,
    new_alarm,
    offline_change,
    severity_rank,
)

T0 = datetime(2026, 5, 4, 13, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alarm(severity: str = "major"):
    return new_alarm(1, "d", "r", "co2_high", severity, at(0), value=1600.0, message="co2 1600 above 1500")


def test_the_four_states_ack_then_clear():
    a = alarm()
    assert a.state == "active_unacked" and a.active and not a.acked
    a = a.acknowledge("ops-1", at(10))
    assert (a.state, a.acked_by, a.acked_at) == ("active_acked", "ops-1", at(10))
    a = a.clear("system", at(20))
    assert (a.state, a.cleared_by, a.cleared_at) == ("cleared_acked", "system", at(20))


def test_the_four_states_clear_then_ack():
    a = alarm().clear("ops-2", at(5))
    assert a.state == "cleared_unacked" and not a.active
    a = a.acknowledge("ops-1", at(9))
    assert a.state == "cleared_acked"


def test_steps_the_state_does_not_allow_are_refused_with_a_code():
    acked = alarm().acknowledge("ops", at(1))
    with pytest.raises(AlarmTransitionError) as err:
        acked.acknowledge("ops", at(2))
    assert err.value.code == "already_acked"
    with pytest.raises(AlarmTransitionError) as err:
        acked.clear("ops", at(3)).clear("ops", at(4))
    assert err.value.code == "already_cleared"


def test_escalation_needs_a_fresh_acknowledgement_and_keeps_the_peak():
    a = alarm("minor").acknowledge("ops", at(1))
    up = a.with_severity("critical", at(2), 2600.0, "co2 2600")
    assert (up.severity, up.state, up.acked_by) == ("critical", "active_unacked", None)
    down = up.acknowledge("ops", at(3)).with_severity("major", at(4), 1600.0, "co2 1600")
    assert (down.severity, down.state) == ("major", "active_acked")
    assert down.details["peak_severity"] == "critical"


def test_severity_order():
    assert [severity_rank(s) for s in ("warning", "minor", "major", "critical")] == [1, 2, 3, 4]
    assert most_severe(["minor", "critical", "warning"]) == "critical" and most_severe([]) is None
    with pytest.raises(ValueError):
        new_alarm(1, "d", "r", "x", "indeterminate", at(0))


def test_offline_raises_a_major_alarm_and_online_clears_it():
    change = offline_change(None, online=False, reason="connection lost", at=at(0), device_id="d", room_id="r")
    assert change.kind == "raised" and change.alarm.type == OFFLINE_ALARM and change.alarm.severity == "major"
    raised = change.alarm
    # Offline again while already alarmed (another source agreeing): nothing new.
    assert offline_change(raised, online=False, reason="heartbeat timeout", at=at(5), device_id="d",
                          room_id="r") is None
    back = offline_change(raised, online=True, reason="connected", at=at(60), device_id="d", room_id="r")
    assert back.kind == "cleared" and back.alarm.state == "cleared_unacked" and back.alarm.cleared_by == "system"
    assert offline_change(None, online=True, reason="connected", at=at(61), device_id="d", room_id="r") is None


def test_a_clean_shutdown_is_a_warning_that_becomes_major_if_the_device_then_vanishes():
    shutdown = offline_change(None, online=False, reason="shutdown", at=at(0), device_id="d", room_id="r").alarm
    assert shutdown.severity == "warning"
    worse = offline_change(shutdown, online=False, reason="connection lost", at=at(9), device_id="d", room_id="r")
    assert worse.kind == "updated" and worse.alarm.severity == "major" and worse.alarm.id == shutdown.id
