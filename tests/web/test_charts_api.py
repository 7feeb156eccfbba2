"""The chart endpoints (web/routes/charts_api.py over hub/db/charts.py), with every expected figure
worked out by hand below from the rows each test inserts.

World (tests/web/conftest.py): c1 (fac1; stu1, stu2 enrolled), c2 (fac2), one device in the room.
The run's database is shared by every test, so the SLA tests use weeks far ahead (a random Monday in
2040–2079) where no other test has a ticket due, and the uptime tests the world's own device.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from web_helpers import bearer

from hub.db.charts import device_uptime, sla_compliance

pytestmark = pytest.mark.integration

UTC = timezone.utc


async def executemany(db, sql: str, rows: list[tuple]) -> None:
    async def work(conn) -> None:
        await conn.executemany(sql, rows)
    await db.run(work, transaction=True)


# --- arrival curve -------------------------------------------------------------------------------

async def _arrival_session(db, world, name: str, starts: datetime, grace_minutes: int) -> str:
    sid = f"{name}_{world.suffix}"
    await db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, grace_minutes, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'closed')",
        sid, world.courses["c1"], world.room, starts, starts + timedelta(hours=1), grace_minutes)
    return sid


async def test_arrival_curve_is_cumulative_per_minute_from_the_start(client, db, world) -> None:
    # c1 gets a third student (enrolled = 3). Scans at start − 90 s, start + 60 s and start + 6 min 30 s:
    # minutes (rounded down) −2, 1 and 6; cumulative 1, 2, 3. Grace 5 min: the first two are within it.
    await db.execute("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                     world.courses["c1"], world.users["stu3"])
    starts = world.now - timedelta(days=3)
    sid = await _arrival_session(db, world, "arrivals", starts, grace_minutes=5)
    await executemany(db,
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source) VALUES ($1, $2, $3, $4, 'qr')",
        [(sid, world.users["stu1"], "present", starts - timedelta(seconds=90)),
         (sid, world.users["stu2"], "present", starts + timedelta(seconds=60)),
         (sid, world.users["stu3"], "late", starts + timedelta(minutes=6, seconds=30))])

    response = await client.get(f"/api/v1/sessions/{sid}/arrivals", headers=await bearer(client, world.users["fac1"]))
    assert response.status_code == 200
    body = await response.get_json()
    assert body["points"] == [{"minute": -2, "checked_in": 1}, {"minute": 1, "checked_in": 2},
                              {"minute": 6, "checked_in": 3}]
    assert (body["enrolled"], body["checked_in"], body["before_start"], body["within_grace"]) == (3, 3, 1, 2)
    assert body["grace_minutes"] == 5


async def test_arrival_curve_counts_scans_only_and_same_minute_once(client, db, world) -> None:
    # A faculty mark has no scan time (not an arrival), an excused record neither counts;
    # two scans within minute 0 (start + 5 s, start + 59 s) are one point with 2 arrivals.
    starts = world.now - timedelta(days=4)
    sid = await _arrival_session(db, world, "marks", starts, grace_minutes=10)
    await executemany(db,
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source) VALUES ($1, $2, $3, $4, $5)",
        [(sid, world.users["stu1"], "present", starts + timedelta(seconds=5), "qr"),
         (sid, world.users["stu2"], "present", starts + timedelta(seconds=59), "qr")])
    empty = await _arrival_session(db, world, "marked", starts + timedelta(days=1), grace_minutes=10)
    await executemany(db,
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source) VALUES ($1, $2, $3, $4, $5)",
        [(empty, world.users["stu1"], "present", None, "faculty"),
         (empty, world.users["stu2"], "excused", None, "leave")])
    headers = await bearer(client, world.users["admin"])

    body = await (await client.get(f"/api/v1/sessions/{sid}/arrivals", headers=headers)).get_json()
    assert body["points"] == [{"minute": 0, "checked_in": 2}]
    assert (body["enrolled"], body["checked_in"], body["before_start"], body["within_grace"]) == (2, 2, 0, 2)
    body = await (await client.get(f"/api/v1/sessions/{empty}/arrivals", headers=headers)).get_json()
    assert (body["points"], body["checked_in"]) == ([], 0)


async def test_arrival_curve_is_for_the_course_faculty_and_admin_only(client, world) -> None:
    path = f"/api/v1/sessions/{world.sessions['live1']}/arrivals"
    fac2 = await client.get(path, headers=await bearer(client, world.users["fac2"]))
    assert fac2.status_code == 403
    student = await client.get(path, headers=await bearer(client, world.users["stu1"]))
    assert student.status_code == 403
    unknown = await client.get(f"/api/v1/sessions/nope_{world.suffix}/arrivals",
                               headers=await bearer(client, world.users["admin"]))
    assert unknown.status_code == 404


# --- device uptime --------------------------------------------------------------------------------

# History (UTC): online from 2 Mar 06:00, offline 3 Mar 12:00–18:00, online since; an offline row on
# 20 Feb before all that. "now" is 4 Mar 12:00.
NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)


async def _history(db, device_id: str) -> None:
    await executemany(db,
        "INSERT INTO device_health_history (device_id, at, change, online) VALUES ($1, $2, $3, $4)",
        [(device_id, datetime(2030, 2, 20, 9, 0, tzinfo=UTC), "offline", False),
         (device_id, datetime(2030, 3, 2, 6, 0, tzinfo=UTC), "online", True),
         (device_id, datetime(2030, 3, 3, 12, 0, tzinfo=UTC), "offline", False),
         (device_id, datetime(2030, 3, 3, 18, 0, tzinfo=UTC), "online", True)])


async def test_uptime_per_day_from_the_history(client, db, world, clock) -> None:
    # A fresh device: nothing known before its first row (1 Mar: null).
    # 2 Mar: known 06:00–24:00 = 18 h, all online: 100 %. 3 Mar: online 12 h + 6 h of 24 h: 75 %.
    # 4 Mar: until now (12:00), online: 100 %. Whole period: 48 h online of 54 h known = 88.888… → 88.88.
    fresh = f"fresh_{world.suffix}"
    await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'qr_camera', 'hmac-sha256', $3)",
                     fresh, world.room, b"k" * 32)
    await executemany(db,
        "INSERT INTO device_health_history (device_id, at, change, online) VALUES ($1, $2, $3, $4)",
        [(fresh, datetime(2030, 3, 2, 6, 0, tzinfo=UTC), "online", True),
         (fresh, datetime(2030, 3, 3, 12, 0, tzinfo=UTC), "offline", False),
         (fresh, datetime(2030, 3, 3, 18, 0, tzinfo=UTC), "online", True)])
    clock.now = NOW.timestamp()
    response = await client.get(f"/api/v1/devices/{fresh}/uptime?days=4", headers=await bearer(client, world.users["ops"]))
    assert response.status_code == 200
    body = await response.get_json()
    assert body["timezone"] == "UTC"
    assert [(d["day"], d["online_s"], d["known_s"], d["online_pct"]) for d in body["days"]] == [
        ("2030-03-01", 0, 0, None),
        ("2030-03-02", 18 * 3600, 18 * 3600, 100.0),
        ("2030-03-03", 18 * 3600, 24 * 3600, 75.0),
        ("2030-03-04", 12 * 3600, 12 * 3600, 100.0)]
    assert body["online_pct"] == 88.88


async def test_uptime_window_starts_in_the_state_of_the_last_earlier_row(db, world) -> None:
    # Window 3–4 Mar: the state at 3 Mar 00:00 is the 2 Mar 06:00 row's (online), not the 20 Feb one's.
    await _history(db, world.device)
    days = await device_uptime(db, world.device, date(2030, 3, 3), date(2030, 3, 4), "UTC", NOW)
    assert [(d.day, d.online_s, d.known_s) for d in days] == [
        (date(2030, 3, 3), 18 * 3600, 24 * 3600), (date(2030, 3, 4), 12 * 3600, 12 * 3600)]


async def test_uptime_days_are_the_campus_timezones(db, world) -> None:
    # Kolkata is UTC+05:30: 2 Mar there is 1 Mar 18:30 – 2 Mar 18:30 UTC. Offline (20 Feb row) until
    # 06:00 UTC = 11.5 h, then online 12.5 h: known 24 h, online 12.5 h = 45,000 s.
    await _history(db, world.device)
    days = await device_uptime(db, world.device, date(2030, 3, 2), date(2030, 3, 2), "Asia/Kolkata", NOW)
    assert [(d.day, d.online_s, d.known_s) for d in days] == [(date(2030, 3, 2), 45000, 24 * 3600)]


async def test_uptime_refuses_unknown_devices_and_bad_days(client, world) -> None:
    ops = await bearer(client, world.users["ops"])
    assert (await client.get(f"/api/v1/devices/nope_{world.suffix}/uptime", headers=ops)).status_code == 404
    bad = await client.get(f"/api/v1/devices/{world.device}/uptime?days=91", headers=ops)
    assert bad.status_code == 400
    assert (await bad.get_json())["error"]["field"] == "days"
    faculty = await client.get(f"/api/v1/devices/{world.device}/uptime", headers=await bearer(client, world.users["fac1"]))
    assert faculty.status_code == 403


# --- ticket SLA compliance ----------------------------------------------------------------------------

def _far_monday() -> date:
    day = date(random.randrange(2040, 2080), 1, 1) + timedelta(days=random.randrange(0, 300))
    return day - timedelta(days=day.weekday())


async def _tickets(db, world, w1: date) -> datetime:
    """Tickets due in weeks w1 and w2 = w1 + 7 days (and two outside them); returns "now" (w2's Wednesday noon).

    w1: A P1 due Tue, resolved 1 h before: on time. B P1 due Wed, resolved a day late: breached.
        C P3 due Thu, still open at now: breached.
    w2: D P2 due Mon 10:00, closed (cancelled) the day before: on time (finished by its due time).
        E P2 due Fri, open: pending. F P0 due Sun 23:00, open: pending.
    Outside: G P1 due the Sunday before w1 (on time), H P1 due the Monday after w2 (open).
    """
    def at(days: int, hour: int) -> datetime:
        return datetime(w1.year, w1.month, w1.day, hour, tzinfo=UTC) + timedelta(days=days)

    now = at(9, 12)
    rows = [  # priority, due, state, resolved_at, closed_at
        ("P1", at(1, 10), "resolved", at(1, 9), None),
        ("P1", at(2, 10), "resolved", at(3, 10), None),
        ("P3", at(3, 10), "open", None, None),
        ("P2", at(7, 10), "closed", None, at(6, 10)),
        ("P2", at(11, 10), "open", None, None),
        ("P0", at(13, 23), "open", None, None),
        ("P1", at(-1, 10), "resolved", at(-1, 9), None),
        ("P1", at(14, 10), "open", None, None),
    ]
    await executemany(db,
        "INSERT INTO tickets (room_id, title, priority, state, source, sla_due_at, resolved_at, closed_at, created_at)"
        " VALUES ($1, 'SLA chart test', $2, $3, 'report', $4, $5, $6, $7)",
        [(world.room, p, state, due, resolved, closed, due - timedelta(days=1))
         for p, due, state, resolved, closed in rows])
    return now


async def test_sla_compliance_per_week_and_priority(db, world) -> None:
    w1 = _far_monday()
    w2 = w1 + timedelta(days=7)
    now = await _tickets(db, world, w1)
    rows = await sla_compliance(db, w1, w2, "UTC", now)
    got = {(r.week, r.priority): (r.on_time, r.breached, r.pending) for r in rows}
    assert len(got) == 10  # 2 weeks x 5 priorities, zeros included
    assert got[(w1, "P1")] == (1, 1, 0)
    assert got[(w1, "P3")] == (0, 1, 0)
    assert got[(w2, "P2")] == (1, 0, 1)
    assert got[(w2, "P0")] == (0, 0, 1)
    assert sum(sum(v) for v in got.values()) == 6


async def test_sla_compliance_api(client, db, world, clock) -> None:
    # Whole weeks: w1 on time 1 of 3 decided = 33.33 %; w2 1 of 1 = 100 %, 2 pending; overall 2 of 4 = 50 %.
    w1 = _far_monday()
    now = await _tickets(db, world, w1)
    clock.now = now.timestamp()
    ops = await bearer(client, world.users["ops"])
    body = await (await client.get("/api/v1/tickets/sla-compliance?weeks=2", headers=ops)).get_json()
    assert [(w["week"], w["on_time"], w["breached"], w["pending"], w["on_time_pct"]) for w in body["weeks"]] == [
        (w1.isoformat(), 1, 2, 0, 33.33), ((w1 + timedelta(days=7)).isoformat(), 1, 0, 2, 100.0)]
    assert (body["on_time"], body["breached"], body["on_time_pct"]) == (2, 2, 50.0)
    assert body["weeks"][0]["by_priority"]["P1"] == {"on_time": 1, "breached": 1, "pending": 0}

    only_p1 = await (await client.get("/api/v1/tickets/sla-compliance?weeks=2&priority=P1", headers=ops)).get_json()
    assert [(w["on_time"], w["breached"], w["pending"], w["on_time_pct"]) for w in only_p1["weeks"]] == [
        (1, 1, 0, 50.0), (0, 0, 0, None)]
    assert list(only_p1["weeks"][0]["by_priority"]) == ["P1"]
    bad = await client.get("/api/v1/tickets/sla-compliance?priority=P9", headers=ops)
    assert bad.status_code == 400
    student = await client.get("/api/v1/tickets/sla-compliance", headers=await bearer(client, world.users["stu1"]))
    assert student.status_code == 403
