"""Syllabus, session topics, understanding levels and topic progress through the API (web/routes/syllabus_api.py).

Tagging and understanding run once through a real live SessionActor and PersistenceWriter (as the hub
wires them) and once without an actor (straight to PostgreSQL), with the same outcome and live messages.
"""
from __future__ import annotations

import pytest
import trio
from web_helpers import bearer

from actors import ChildSpec, Supervisor
from hub.core.bus import LiveTopics, LiveUnderstanding, session_topic
from hub.core.metrics import HubMetrics
from hub.pipeline.session_actor import SESSION_MAILBOX, SessionActor, session_caller
from hub.pipeline.writer import PersistenceWriter


async def recv(sub):
    with trio.fail_after(5):
        return await sub.receive()


TOPICS = [("Sets and logic", 60, "Unit 1"), ("Relations", 90, "Unit 1"), ("Functions", 60, "Unit 2"),
          ("Graphs", 120, "Unit 2")]


@pytest.fixture
async def live(ctx, world, db, bus):
    """live1's session actor running; ``ctx.session_call`` reaches it."""
    root = Supervisor("test-root")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        writer = await root.start_child(ChildSpec("writer", lambda: PersistenceWriter(
            db, bus, HubMetrics(), lambda message: None), mailbox_size=64))
        sessions = await root.start_child(ChildSpec("sessions", lambda: Supervisor("sessions")))
        await sessions.start_child(ChildSpec(
            world.sessions["live1"], lambda: SessionActor(world.sessions["live1"], db=db, writer=writer),
            mailbox_size=SESSION_MAILBOX))
        ctx.session_call = session_caller(lambda: sessions)
        yield sessions
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def _syllabus(client, world, faculty="fac1") -> list[dict]:
    headers = await bearer(client, world.username(faculty))
    ids = []
    for title, minutes, unit in TOPICS:
        r = await client.post(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=headers,
                              json={"title": title, "est_minutes": minutes, "unit": unit})
        assert r.status_code == 201, await r.get_data(as_text=True)
        ids.append((await r.get_json())["id"])
    r = await client.get(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=headers)
    return (await r.get_json())["topics"]


async def test_faculty_edit_the_syllabus_and_cycles_and_other_courses_topics_are_refused(client, world):
    fac1 = await bearer(client, world.username("fac1"))
    topics = await _syllabus(client, world)
    assert [t["title"] for t in topics] == [t[0] for t in TOPICS] and [t["position"] for t in topics] == [1, 2, 3, 4]
    sets, relations, functions, graphs = (t["id"] for t in topics)
    ok = await client.patch(f"/api/v1/syllabus/topics/{functions}", headers=fac1,
                            json={"prerequisites": [relations], "title": "Functions and maps"})
    assert ok.status_code == 200 and (await ok.get_json())["prerequisites"] == [relations]
    await client.patch(f"/api/v1/syllabus/topics/{relations}", headers=fac1, json={"prerequisites": [sets]})
    cycle = await client.patch(f"/api/v1/syllabus/topics/{sets}", headers=fac1, json={"prerequisites": [functions]})
    assert cycle.status_code == 400
    body = await cycle.get_json()
    assert body["error"]["field"] == "prerequisites" and "circle" in body["error"]["message"]
    # A topic of another course.
    fac2 = await bearer(client, world.username("fac2"))
    other = await client.post(f"/api/v1/courses/{world.courses['c2']}/syllabus", headers=fac2,
                              json={"title": "Joins", "est_minutes": 60})
    cross = await client.patch(f"/api/v1/syllabus/topics/{graphs}", headers=fac1,
                               json={"prerequisites": [(await other.get_json())["id"]]})
    assert cross.status_code == 400 and "not a topic of this course" in (await cross.get_json())["error"]["message"]
    taken = await client.post(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=fac1,
                              json={"title": "GRAPHS", "est_minutes": 30})
    assert taken.status_code == 400 and (await taken.get_json())["error"]["field"] == "title"
    # Another course's faculty may not edit it; a student of it may read it.
    assert (await client.delete(f"/api/v1/syllabus/topics/{graphs}", headers=fac2)).status_code == 403
    stu2 = await bearer(client, world.username("stu2"))
    assert (await client.get(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=stu2)).status_code == 200
    assert (await client.get(f"/api/v1/courses/{world.courses['c2']}/syllabus", headers=stu2)).status_code == 403
    # Reorder, delete: positions stay 1..n.
    order = await client.put(f"/api/v1/courses/{world.courses['c1']}/syllabus/order", headers=fac1,
                             json={"order": [relations, sets, functions, graphs]})
    assert [t["id"] for t in (await order.get_json())["topics"]] == [relations, sets, functions, graphs]
    short = await client.put(f"/api/v1/courses/{world.courses['c1']}/syllabus/order", headers=fac1,
                             json={"order": [relations, sets]})
    assert short.status_code == 400
    assert (await client.delete(f"/api/v1/syllabus/topics/{sets}", headers=fac1)).status_code == 200
    left = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=fac1)).get_json()
    assert [(t["id"], t["position"]) for t in left["topics"]] == [(relations, 1), (functions, 2), (graphs, 3)]
    assert left["topics"][0]["prerequisites"] == []  # the deleted prerequisite went with it


async def test_csv_import_previews_then_applies_and_lists_every_bad_line(client, world):
    fac1 = await bearer(client, world.username("fac1"))
    url = f"/api/v1/courses/{world.courses['c1']}/syllabus/import"
    bad = await client.post(url, headers={**fac1, "Content-Type": "text/csv"},
                            data="title,duration,prerequisites\nA,60,\nB,soon,A\nC,30,Nowhere\n")
    assert bad.status_code == 422
    assert [(e["line"], e["field"]) for e in (await bad.get_json())["errors"]] == [(3, "est_minutes")]
    unknown = await client.post(url, headers=fac1, json={"csv": "title,duration,prerequisites\nA,60,\nC,30,Nowhere\n"})
    assert unknown.status_code == 422
    assert (await unknown.get_json())["errors"][0] == {
        "line": 3, "field": "prerequisites", "reason": "“Nowhere” is not a topic of this file or of the syllabus"}
    circle = await client.post(url, headers=fac1, json={"csv": "title,duration,prerequisites\nA,60,B\nB,30,A\n"})
    assert circle.status_code == 422 and "circle" in (await circle.get_json())["errors"][0]["reason"]
    text = "title,duration,unit,prerequisites\nSets,1h,Unit 1,\nRelations,90,Unit 1,Sets\n"
    preview = await client.post(url + "?dry_run=1", headers=fac1, json={"csv": text})
    body = await preview.get_json()
    assert preview.status_code == 200 and body["dry_run"] and body["created"] == 2
    assert [t["title"] for t in body["topics"]] == ["Sets", "Relations"]
    empty = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/syllabus", headers=fac1)).get_json()
    assert empty["topics"] == []  # a preview changes nothing
    applied = await (await client.post(url, headers=fac1, json={"csv": text})).get_json()
    assert applied["created"] == 2 and not applied["dry_run"] and applied["total_minutes"] == 150
    sets_id = applied["topics"][0]["id"]
    assert applied["topics"][1]["prerequisites"] == [sets_id]
    # Again with a change and a new topic first: matched by title, updated in place.
    again = await (await client.post(url, headers=fac1, json={
        "csv": "title,duration\nIntro,30\nsets,45\n"})).get_json()
    assert (again["created"], again["updated"], again["kept"]) == (1, 1, 1)
    assert [(t["title"], t["est_minutes"]) for t in again["topics"]] == [("Intro", 30), ("sets", 45), ("Relations", 90)]
    assert again["topics"][1]["id"] == sets_id
    assert (await client.post(url, headers=await bearer(client, world.username("fac2")),
                              json={"csv": text})).status_code == 403


async def _tag_and_rate(client, world, bus, topics) -> None:
    fac1 = await bearer(client, world.username("fac1"))
    session = world.sessions["live1"]
    sets, relations = topics[0]["id"], topics[1]["id"]
    state = await (await client.get(f"/api/v1/sessions/{session}/syllabus-topics", headers=fac1)).get_json()
    assert [s["topic_id"] for s in state["suggestions"]][:2] == [sets, relations] and state["tagged"] == []
    with bus.subscribe([session_topic(session)]) as sub:
        tagged = await client.put(f"/api/v1/sessions/{session}/syllabus-topics", headers=fac1,
                                  json={"topic_ids": [sets, relations]})
        assert tagged.status_code == 200, await tagged.get_data(as_text=True)
        assert (await tagged.get_json())["tagged"] == [sets, relations]
        message = await recv(sub)
        assert isinstance(message, LiveTopics) and message.topic_ids == (sets, relations)
        rated = await client.post(f"/api/v1/sessions/{session}/understanding", headers=fac1, json={
            "levels": [{"student_id": world.users["stu1"], "level": 5}, {"student_id": world.users["stu2"], "level": 2}]})
        assert rated.status_code == 200, await rated.get_data(as_text=True)
        message = await recv(sub)
        assert isinstance(message, LiveUnderstanding) and message.levels == ((world.users["stu1"], 5), (world.users["stu2"], 2))
    # A level for one topic replaces the session's for that topic.
    one = await client.post(f"/api/v1/sessions/{session}/understanding", headers=fac1, json={
        "topic_id": relations, "levels": [{"student_id": world.users["stu1"], "level": 3}]})
    assert one.status_code == 200
    # Refusals: a student not on the roster (nothing applied), a topic not tagged, another course's faculty.
    stranger = await client.post(f"/api/v1/sessions/{session}/understanding", headers=fac1, json={
        "levels": [{"student_id": world.users["stu1"], "level": 1}, {"student_id": world.users["stu3"], "level": 4}]})
    assert stranger.status_code == 400 and (await stranger.get_json())["error"]["field"] == "levels[1].student_id"
    untagged = await client.post(f"/api/v1/sessions/{session}/understanding", headers=fac1, json={
        "topic_id": topics[3]["id"], "levels": [{"student_id": world.users["stu1"], "level": 4}]})
    assert untagged.status_code == 400 and (await untagged.get_json())["error"]["field"] == "topic_id"
    fac2 = await bearer(client, world.username("fac2"))
    assert (await client.put(f"/api/v1/sessions/{session}/syllabus-topics", headers=fac2,
                             json={"topic_ids": [sets]})).status_code == 403
    # Progress: stu1 attended (present) -> levels count; stu2 has no record yet but was judged at 2.
    stu1 = await bearer(client, world.username("stu1"))
    mine = await (await client.get(f"/api/v1/students/{world.users['stu1']}/progress", headers=stu1)).get_json()
    course = next(c for c in mine["courses"] if c["course_id"] == world.courses["c1"])
    by_title = {t["title"]: t for t in course["topics"]}
    assert by_title["Sets and logic"]["status"] == "completed" and by_title["Sets and logic"]["competency"] == 5.0
    assert by_title["Relations"]["status"] == "completed" and by_title["Relations"]["last_level"] == 3
    assert by_title["Relations"]["minutes_spent"] == 30  # a 60-minute session shared by two topics
    assert by_title["Functions"]["status"] == "not_started"
    assert course["pace"]["topics_covered"] == 2 and course["pace"]["topics_done"] == 2
    stu2 = await bearer(client, world.username("stu2"))
    theirs = await (await client.get(f"/api/v1/students/{world.users['stu2']}/progress", headers=stu2)).get_json()
    assert {t["title"]: t["status"] for t in theirs["courses"][0]["topics"]}["Sets and logic"] == "needs_review"
    # A student never reads another's progress; faculty of another course see none of this course.
    assert (await client.get(f"/api/v1/students/{world.users['stu2']}/progress", headers=stu1)).status_code == 403
    other = await client.get(f"/api/v1/students/{world.users['stu1']}/progress", headers=fac2)
    assert other.status_code == 200 and all(c["course_id"] != world.courses["c1"]
                                            for c in (await other.get_json())["courses"])
    coverage = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/coverage", headers=fac1)).get_json()
    assert coverage["topics_covered"] == 2 and coverage["covered_minutes"] == 150
    assert coverage["planned_total_minutes"] == sum(t[1] for t in TOPICS)
    assert [p["held"] for p in coverage["points"]] == [True, True]
    assert coverage["points"][-1]["covered_minutes"] == 150


async def test_tagging_and_understanding_through_the_live_session_actor(client, world, bus, live, db):
    topics = await _syllabus(client, world)
    await _tag_and_rate(client, world, bus, topics)
    assert await db.fetchval("SELECT count(*) FROM topic_understanding WHERE session_id = $1",
                             world.sessions["live1"]) == 3


async def test_tagging_and_understanding_without_a_live_actor(client, world, bus, db):
    topics = await _syllabus(client, world)
    await _tag_and_rate(client, world, bus, topics)
    assert await db.fetchval("SELECT count(*) FROM topic_understanding WHERE session_id = $1",
                             world.sessions["live1"]) == 3


async def test_absent_from_the_covering_session_means_catch_up(client, world, db):
    topics = await _syllabus(client, world)
    fac1 = await bearer(client, world.username("fac1"))
    await db.execute("INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, $2, 'absent', 'manual')",
                     world.sessions["past1"], world.users["stu2"])
    r = await client.put(f"/api/v1/sessions/{world.sessions['past1']}/syllabus-topics", headers=fac1,
                         json={"topic_ids": [topics[0]["id"]]})
    assert r.status_code == 200
    # The next session's suggestions start after what past1 covered.
    state = await (await client.get(f"/api/v1/sessions/{world.sessions['live1']}/syllabus-topics",
                                    headers=fac1)).get_json()
    assert state["suggestions"][0] == {"topic_id": topics[1]["id"], "why": "next"}
    admin = await bearer(client, world.username("admin"))
    got = await (await client.get(f"/api/v1/students/{world.users['stu2']}/progress", headers=admin)).get_json()
    first = got["courses"][0]["topics"][0]
    assert (first["status"], first["missed"]) == ("not_started", True)
    assert got["courses"][0]["pace"]["topics_missed"] == 1


async def test_the_demo_seeds_syllabi_tagged_history_and_every_kind_of_progress(db):
    from datetime import datetime, timezone

    from hub.db.seed import course_id, ensure_campus
    from hub.db.seed.insights import ensure_insights_demo
    from hub.db.seed.syllabus import ensure_syllabus_history
    from hub.db.syllabus import list_topics, student_pace

    now = datetime.now(timezone.utc)
    await ensure_campus(db, rooms=2, students=8, now=now)
    course = course_id(1)
    topics = await list_topics(db, course)
    assert 10 <= len(topics) <= 16 and any(t.prerequisites for t in topics)
    await ensure_insights_demo(db, course_id=course, now=now)
    await ensure_syllabus_history(db, now, [course])
    assert await ensure_syllabus_history(db, now, [course]) == 0  # idempotent
    statuses = {r["status"] for r in await db.fetch(
        "SELECT DISTINCT p.status FROM topic_progress p JOIN syllabus_topics t ON t.id = p.topic_id"
        " WHERE t.course_id = $1", course)}
    assert {"not_started", "completed", "needs_review"} <= statuses
    paces = await student_pace(db, course_ids=[course])
    assert paces and all(p.topics_covered > 0 and p.planned_minutes > 0 for p in paces)
