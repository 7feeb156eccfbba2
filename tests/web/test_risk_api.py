"""Early-warning API: who sees which risk (a student only their own, faculty only their courses, admin the
models), pin and unpin (rollback), and training on demand through the running actor.

World (tests/web/conftest.py): fac1 teaches c1 (stu1, stu2), fac2 teaches c2 (stu1, stu3). Here both
courses get a running term; stu2 missed most of c1's classes. Predictions are made by the actor's own
scoring path (hub.services.risk.score, without a model: the attendance rule).
"""
from __future__ import annotations

import io
from datetime import timedelta

import joblib
import numpy as np
import trio
from web_helpers import bearer, page_login

from actors import ChildSpec, Supervisor
from hub.db.risk import NewModel, insert_model, list_models
from hub.db.risk_features import load_facts, running_cases
from hub.domain.risk_features import FEATURES
from hub.services.risk import RiskWatcher, risk_links, score
from hub.services.risk_model import new_pipeline


async def running_term(db, world) -> None:
    """A term around today for c1 and c2 (sections A, every student in it), and c1's history:
    stu1 present at 5 classes, stu2 absent at 4 of them (and at the world's past1, without a record)."""
    sfx = world.suffix
    today = world.now.date()

    async def work(conn) -> None:
        await conn.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, 'Now', $2, $3)",
                           f"t_{sfx}", today - timedelta(days=40), today + timedelta(days=40))
        for key in ("c1", "c2"):
            await conn.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A')",
                               f"{key}A_{sfx}", world.courses[key], f"t_{sfx}")
            await conn.execute("UPDATE enrolments SET section_id = $1 WHERE course_id = $2",
                               f"{key}A_{sfx}", world.courses[key])
        for i in range(5):
            sid = f"hist{i}_{sfx}"
            start = world.now - timedelta(days=20 - 3 * i)
            await conn.execute("INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
                               " VALUES ($1, $2, $3, $4, $5, 'closed')", sid, world.courses["c1"], world.room,
                               start, start + timedelta(hours=1))
            await conn.executemany(
                "INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, $2, $3, 'manual')",
                [(sid, world.users["stu1"], "present"), (sid, world.users["stu2"], "present" if i == 0 else "absent")])

    await db.run(work, transaction=True)
    from hub.db.risk import save_predictions

    cases = [c for c in await running_cases(db, world.now) if c.course_id in world.courses.values()]
    await save_predictions(db, score(None, cases, await load_facts(db, cases)), world.now)


async def test_each_role_sees_only_what_it_may(client, db, world):
    await running_term(db, world)
    stu1 = await bearer(client, world.username("stu1"))
    r = await client.get("/api/v1/risk/me", headers=stu1)
    assert r.status_code == 200
    body = await r.get_json()
    assert sorted(i["course_id"] for i in body["items"]) == sorted(world.courses.values())
    assert all("student_id" not in i and "probability" not in i for i in body["items"])
    assert body["basis"] in ("rule", "model")

    fac1 = await bearer(client, world.username("fac1"))
    r = await client.get(f"/api/v1/risk/courses/{world.courses['c1']}", headers=fac1)
    assert r.status_code == 200
    items = (await r.get_json())["items"]
    assert [i["student_id"] for i in items] == [world.users["stu2"], world.users["stu1"]]  # highest first
    stu2 = items[0]
    assert stu2["level"] == "high" and stu2["basis"] == "rule"
    assert stu2["reasons"][0]["sentence"] == "Attended 17 % of 6 classes so far; missed the last 5 classes in a row"

    assert (await client.get(f"/api/v1/risk/courses/{world.courses['c1']}",
                             headers=await bearer(client, world.username("fac2")))).status_code == 403
    assert (await client.get(f"/api/v1/risk/courses/{world.courses['c1']}", headers=stu1)).status_code == 403
    assert (await client.get("/api/v1/risk/me", headers=fac1)).status_code == 403
    assert (await client.get("/api/v1/risk/models", headers=fac1)).status_code == 403
    assert (await client.get("/api/v1/risk/courses/nope", headers=fac1)).status_code == 404

    # The pages: the faculty list shows the student and the reason; the student sees supportive words.
    await page_login(client, world.username("fac1"))
    page = await (await client.get(f"/faculty/risk?course_id={world.courses['c1']}")).get_data(as_text=True)
    assert "Attended 17 % of 6 classes so far" in page and "attendance rule" in page
    await page_login(client, world.username("stu2"))
    page = await (await client.get("/student/risk")).get_data(as_text=True)
    assert "What we noticed" in page and "not a grade" in page and "Alumnus" not in page


def _model_bytes() -> bytes:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, len(FEATURES)))
    buffer = io.BytesIO()
    joblib.dump(new_pipeline().fit(x, (x[:, 0] > 0).astype(int)), buffer)
    return buffer.getvalue()


async def _model(db, shipped: bool) -> int:
    row = await insert_model(db, NewModel(
        trained_by="test", trained_on=["a"], tested_on="b", features=list(FEATURES), model=_model_bytes(),
        metrics={"auc": 0.8, "precision_at_10": 0.5, "brier": 0.1, "calibration": []},
        baseline={"auc": 0.7, "precision_at_10": 0.4, "brier": 0.2, "calibration": []},
        rows_trained=60, rows_tested=20, shipped=shipped, ship_reason="test"))
    return row.id


async def test_admin_pins_an_older_model_and_unpins_back_to_the_newest(client, db, world):
    try:
        await _pin_and_unpin(client, db, world)
    finally:  # the run's database is shared: leave no test model in use for other tests
        await db.execute("DELETE FROM risk_models WHERE trained_by = 'test'")


async def _pin_and_unpin(client, db, world) -> None:
    admin = await bearer(client, world.username("admin"))
    older = await _model(db, True)
    newer = await _model(db, True)
    rejected = await _model(db, False)
    by_id = {m.id: m for m in await list_models(db)}
    assert by_id[newer].status == "active" and by_id[older].status == "retired"
    assert by_id[rejected].status == "candidate"

    r = await client.post(f"/api/v1/risk/models/{rejected}/pin", headers=admin)
    assert r.status_code == 409
    r = await client.post(f"/api/v1/risk/models/{newer}/pin", headers=admin)
    assert r.status_code == 200
    r = await client.post(f"/api/v1/risk/models/{older}/pin", headers=admin)  # re-pinning moves the pin
    assert r.status_code == 200 and (await r.get_json())["pinned"] is True
    assert [m.id for m in await list_models(db) if m.pinned] == [older]
    # A model trained while one is pinned does not replace it.
    newest = await _model(db, True)
    by_id = {m.id: m for m in await list_models(db)}
    assert by_id[older].status == "active" and by_id[newest].status == "candidate"
    body = await (await client.get("/api/v1/risk/models", headers=admin)).get_json()
    assert body["basis"] == "model" and body["pinned"] is True and body["model_version"] == by_id[older].version

    r = await client.post("/api/v1/risk/models/unpin", headers=admin)
    assert r.status_code == 200 and (await r.get_json())["model"]["id"] == newest
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE entity = 'risk_model'") >= 2
    assert (await client.post("/api/v1/risk/models/999999/pin", headers=admin)).status_code == 404
    await page_login(client, world.username("admin"))
    page = await (await client.get("/admin/models")).get_data(as_text=True)
    assert "Calibration of version" in page and "Use this version" in page


async def test_train_now_is_recorded_and_the_actor_takes_it_up(client, ctx, db, bus, world):
    admin = await bearer(client, world.username("admin"))
    await db.execute("UPDATE risk_training_requests SET finished_at = now() WHERE finished_at IS NULL")
    r = await client.post("/api/v1/risk/models/train", headers=admin)
    assert r.status_code == 202 and (await r.get_json()) == {"started": False}  # no hub in this app: recorded
    assert (await client.post("/api/v1/risk/models/train", headers=admin)).status_code == 409  # one at a time

    async with trio.open_nursery() as nursery:
        made: list[RiskWatcher] = []
        supervisor = Supervisor("test")
        await nursery.start(supervisor.run)
        await supervisor.start_child(ChildSpec("risk", lambda: made.append(
            RiskWatcher(db, bus, sweep_every_s=3600, weekly_training=False)) or made[-1], mailbox_size=16))
        with trio.fail_after(30):  # its first sweep takes the waiting request up
            await made[-1].wait_trainings(1)
        # What this shared test database holds depends on the tests before (other tests' ended terms
        # with results): either a model or "nothing to train on", and the request records that outcome.
        done = made[-1].last_training
        assert done is not None and done.note
        row = await db.fetchrow("SELECT requested_by, finished_at, note FROM risk_training_requests"
                                " ORDER BY id DESC LIMIT 1")
        assert row["requested_by"] == world.users["admin"] and row["finished_at"] is not None
        assert row["note"] == done.note

        # Wired like the hub: the request starts at once in this process.
        ctx.risk_changed, ctx.risk_control = risk_links(lambda: supervisor.lookup("risk"))
        r = await client.post("/api/v1/risk/models/train", headers=admin)
        assert r.status_code == 202 and (await r.get_json()) == {"started": True}
        with trio.fail_after(30):
            await made[-1].wait_trainings(2)
        await page_login(client, world.username("admin"))
        page = await (await client.get("/admin/models")).get_data(as_text=True)
        assert "Last &#34;Train now&#34;" in page or 'Last "Train now"' in page
        nursery.cancel_scope.cancel()
