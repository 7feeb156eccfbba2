"""The simulator's campus day on a loop: arrivals keep coming hour after hour (on a controlled clock), the
room climate crosses the demo's CO2 rule while a class is in, and one device drops out and comes back."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from edge_helpers import RUNNERS, Collector, new_prefix
from test_edge_simulator import tiny_campus

from hub.app.simulator import (
    ArrivalBook,
    ClimateState,
    Occupancy,
    climate_step,
    run_simulation,
)
from hub.core.campus import Campus, LiveSession, StudentCredentials

#: The demo's rule (hub/db/seed/device_health.py): CO2 above 700 ppm for 60 s.
CO2_ABOVE, CO2_CLEAR, FOR_S = 700, 650, 60
TICK_S = 10.0  # the demo's sensor interval


def hourly_campus(start: datetime, hours: int, *, enrolled: int = 15) -> tuple[Campus, list[LiveSession]]:
    """A room with a 50-minute class every hour from ``start`` (the demo's class loop, one room)."""
    rng = random.Random(3)
    students = tuple(StudentCredentials(f"stu-{i:04d}", f"s{i:04d}", rng.randbytes(32)) for i in range(1, 31))
    roster = tuple(s.student_id for s in students[:enrolled])
    sessions = [LiveSession(f"ses-{h}", "course-001", "room-001", start + timedelta(hours=h),
                            start + timedelta(hours=h, minutes=50), 10, roster) for h in range(hours)]
    return Campus(devices=(), students=students, sessions=(), logins=()), sessions


def run_day(start: datetime, hours: int, *, refresh_every_s: float = 60.0) -> tuple[list, dict[int, Counter[str]]]:
    """Drive an ArrivalBook on a controlled clock, asking every minute for the sessions of the next hour
    (what ``refresh`` returns in the demo); returns the check-in scans made and the labels per hour."""
    campus, sessions = hourly_campus(start, hours)
    book = ArrivalBook(campus, random.Random(1))
    made: list = []
    per_hour: dict[int, Counter[str]] = {}
    t = start.timestamp() - 3600
    end = t + (hours + 1) * 3600
    while t < end:
        now = datetime.fromtimestamp(t, timezone.utc)
        book.add([s for s in sessions if s.ends_at > now and s.starts_at <= now + timedelta(hours=1)], t)
        for due in book.due(t):
            made.append(due)
            # Hour h's arrivals begin 5 min before it starts.
            per_hour.setdefault(int((due.at - start.timestamp() + 300) // 3600), Counter())[due.scan.label] += 1
        t += refresh_every_s
    return made, per_hour


def test_check_ins_keep_coming_every_hour_past_the_first_quarter_hour() -> None:
    start = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    made, per_hour = run_day(start, hours=5)
    # Before: one plan at start, nothing after 15 min. Now every hour's class gets its arrival wave.
    for hour in range(5):
        assert per_hour[hour]["checkin"] >= 10, (hour, per_hour)
        assert per_hour[hour]["invalid_token"] >= 1 and per_hour[hour]["not_enrolled"] >= 1
    checkins = [d for d in made if d.scan.label == "checkin"]
    assert max(d.at for d in checkins) > start.timestamp() + 4 * 3600
    # Arrival waves around each start: from 5 min before to 15 min after, none after the class ended.
    for d in checkins:
        offset = (d.at - start.timestamp()) % 3600
        assert offset <= 15 * 60 or offset >= 3600 - 5 * 60, offset
    # Each student checks in once per class: never twice, never in two classes at once.
    per_session = Counter((d.scan.student_id, int((d.at - start.timestamp() + 300) // 3600)) for d in checkins)
    assert set(per_session.values()) == {1}


def test_a_session_is_planned_once_however_often_it_is_seen() -> None:
    start = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    campus, sessions = hourly_campus(start, 1)
    book = ArrivalBook(campus, random.Random(1))
    assert book.add(sessions, start.timestamp() - 600) == 1
    assert book.add(sessions, start.timestamp() - 540) == 0
    assert book.add(sessions, sessions[0].ends_at.timestamp()) == 0  # over: nothing new either
    planned = book.planned
    assert planned["on_time"] + planned["late"] + planned["absent"] == 15 and planned["absent"] >= 1
    assert planned["late"] >= 1


def co2_during_a_class(occupants_by_minute: list[int], seed: int = 1) -> list[float]:
    state, rng, out = ClimateState(), random.Random(seed), []
    for minute, occupants in enumerate(occupants_by_minute):
        for _ in range(int(60 / TICK_S)):
            state = climate_step(state, TICK_S, occupants, 10 + minute / 60, rng)
            out.append(state.co2)
    return out


def first_breach_s(co2: list[float]) -> float | None:
    """When the rule would raise: the end of the first run of readings above 700 lasting FOR_S."""
    run = 0
    for i, value in enumerate(co2):
        run = run + 1 if value > CO2_ABOVE else 0
        if run * TICK_S > FOR_S:
            return (i + 1) * TICK_S
    return None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_full_class_crosses_the_co2_rule_within_20_minutes_and_clears_in_the_break(seed: int) -> None:
    # 13 of 15 present by 10 minutes in (the simulator's arrival wave), 50 minutes, then a 10-minute break.
    arriving = [min(13, round(13 * m / 10)) for m in range(50)]
    co2 = co2_during_a_class(arriving + [0] * 10, seed)
    breach = first_breach_s(co2)
    assert breach is not None and breach <= 20 * 60, breach
    assert max(co2) < 1300  # a stuffy classroom, not a fire
    assert co2[-1] <= CO2_CLEAR  # cleared before the next class


def test_an_empty_room_never_trips_the_rule() -> None:
    co2 = co2_during_a_class([0] * 240)
    assert first_breach_s(co2) is None and max(co2) < 550


def test_temperature_follows_the_day_and_the_crowd() -> None:
    rng = random.Random(1)
    state = ClimateState()
    by_hour = {}
    for step in range(int(24 * 3600 / 60)):
        state = climate_step(state, 60.0, 0, step / 60.0, rng)
        by_hour[int(step / 60)] = state.temperature
    assert by_hour[15] > by_hour[3] + 2  # warmest mid-afternoon, coolest at night
    assert all(17 < t < 25 for t in by_hour.values())
    crowded = ClimateState(temperature=by_hour[15])
    for _ in range(120):
        crowded = climate_step(crowded, 30.0, 15, 15.0, rng)
    assert crowded.temperature > by_hour[15] + 0.5


def test_occupancy_counts_check_ins_until_their_class_ends() -> None:
    occupancy = Occupancy()
    occupancy.arrive("room-001", until=100.0)
    occupancy.arrive("room-001", until=200.0)
    occupancy.arrive("room-002", until=200.0)
    assert occupancy.count("room-001", 50.0) == 2
    assert occupancy.count("room-001", 150.0) == 1
    assert occupancy.count("room-001", 250.0) == 0 and occupancy.count("room-003", 0.0) == 0


@pytest.mark.parametrize("loop", ["trio_asyncio"])  # how the hub CLI runs it
def test_the_loop_follows_new_sessions_and_one_device_drops_out_and_returns(
        tmp_path: Path, loop: str, open_mqtt_server_url: str) -> None:
    campus = tiny_campus()
    prefix = new_prefix()
    now = datetime.now(timezone.utc)
    # A session that refresh() reveals only after the run started (scheduled late, already under way):
    # its students must get traffic too, within the run's arrival window.
    later = LiveSession("sess-later", "course-0", "room-0", now - timedelta(minutes=1), now + timedelta(hours=1), 10,
                        tuple(s.student_id for s in campus.students[:5]))
    asked: list[int] = []

    async def refresh() -> list[LiveSession]:
        asked.append(1)
        return [*campus.sessions, later] if len(asked) > 1 else list(campus.sessions)

    async def main() -> tuple[dict[str, int], Collector]:
        async with Collector(prefix, open_mqtt_server_url) as col:
            counts = await run_simulation(
                campus, mqtt_url=open_mqtt_server_url, topic_prefix=prefix, duration_s=6.0,
                outbox_dir=tmp_path / "outbox", seed=7, refresh=refresh, refresh_every_s=0.5,
                outage_every_s=1.5, outage_for_s=1.0)
            await col.wait_for(lambda: len(col.statuses("room-1-edge")) >= 4)
        return counts, col

    counts, col = RUNNERS[loop](main())

    assert len(asked) >= 3 and counts["sessions"] == 3
    # The late session's students were sent too: 2 live sessions + 1 new, 5 enrolled each, ~10 % absent.
    assert counts["checkin"] == counts["on_time"] + counts["late"] >= 13
    assert counts["outage"] >= 1 and counts["recovered"] >= 1
    # room-1 (the last room) dropped without a goodbye: the broker published its Will, then it came back.
    states = [(s.state, s.reason) for s in col.statuses("room-1-edge")]
    assert states[0] == ("online", "connected")
    will = states.index(("offline", "connection lost"))
    assert ("online", "connected") in states[will + 1:], states
    assert ("offline", "connection lost") not in [(s.state, s.reason) for s in col.statuses("room-0-edge")]
    received = Counter(type(e).__struct_config__.tag for _, e in col.events())
    assert received["qr_scan"] == counts["qr_scan"] and counts["outbox_pending"] == 0
