"""The web tells the early-warning actor after marks change: a mark recorded through the API is in a new
prediction within seconds, with the actor's sweep set an hour away (so only the tell can bring it).

World (tests/web/conftest.py, with test_risk_api.running_term): fac1 teaches c1 (stu1, stu2) in a running term.
"""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import trio
from test_risk_api import running_term
from web_helpers import bearer

from actors import ChildSpec, Supervisor
from hub.db.assessments import NewAssessment, create_assessment
from hub.services.risk import RiskWatcher, risk_links


async def _features(db, student: str, course: str) -> dict | None:
    raw = await db.fetchval("SELECT features FROM risk_predictions WHERE student_id = $1 AND course_id = $2",
                            student, course)
    return None if raw is None else json.loads(raw)


async def test_a_mark_recorded_through_the_api_is_rescored_within_seconds(client, ctx, db, bus, world):
    await running_term(db, world)
    course, student = world.courses["c1"], world.users["stu2"]
    quiz = await create_assessment(db, NewAssessment(
        course_id=course, term_id=f"t_{world.suffix}", kind="quiz", title="Quiz (risk wiring)",
        max_marks=Decimal(10), weight=Decimal(10), held_on=world.now.date() - timedelta(days=2)),
        actor=world.users["fac1"])
    fac1 = await bearer(client, world.username("fac1"))

    async with trio.open_nursery() as nursery:
        made: list[RiskWatcher] = []
        supervisor = Supervisor("test")
        await nursery.start(supervisor.run)
        await supervisor.start_child(ChildSpec("risk", lambda: made.append(RiskWatcher(
            db, bus, sweep_every_s=3600, weekly_training=False, daily_results=False)) or made[-1], mailbox_size=16))
        ctx.risk_changed, ctx.risk_control = risk_links(lambda: supervisor.lookup("risk"))
        with trio.fail_after(30):  # the full re-score at start: no mark yet
            while made[-1].rescores < 1:
                await trio.sleep(0.05)
        before = await _features(db, student, course)
        assert before is not None and before["no_marks_yet"] == 1.0

        r = await client.put(f"/api/v1/assessments/{quiz.id}/marks/{student}", headers=fac1,
                             json={"status": "graded", "marks": 2})
        assert r.status_code == 200 and (await r.get_json())["changed"]
        with trio.fail_after(5):  # the tell after the commit, not the hourly sweep
            while (after := await _features(db, student, course))["no_marks_yet"] != 0.0:
                await trio.sleep(0.05)
        assert after["marks_shortfall"] == 0.8  # 2 of 10: 80 % short
        nursery.cancel_scope.cancel()
