"""Early-warning API (docs/analytics.md), under ``/api/v1/risk``.

Ownership: a student reads only their own risk (``/risk/me``: the id comes from the token); a
faculty member only the courses they teach; admins every course and the models (figures,
training on demand, pin and unpin). The predictions are the risk actor's (hub/services/risk.py);
this module only reads them and tells the actor what changed.
"""
from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from hub.db.insights import course_info, teaches_course
from hub.db.risk import (
    ModelRefused,
    ModelRow,
    PredictionRow,
    course_predictions,
    list_models,
    pin_model,
    request_training,
    student_predictions,
    unpin_model,
)

from ..apidoc import (
    BOOL,
    CONFLICT,
    INT,
    NUMBER,
    STR,
    TIME,
    array,
    enum,
    json_response,
    nullable,
    obj,
    operation,
    path_param,
)
from ..apidoc import not_found as doc_not_found
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, not_found
from ..feeds import utc_now
from ..request import path_id

bp = Blueprint("risk_api", __name__, url_prefix="/api/v1")


def prediction_json(p: PredictionRow, *, for_student: bool = False) -> dict[str, Any]:
    """One prediction; a student's own view leaves out the raw probability and the reasons' weights."""
    body: dict[str, Any] = {
        "course_id": p.course_id, "course_code": p.course_code, "course_title": p.course_title,
        "term_id": p.term_id, "term_name": p.term_name, "basis": p.basis, "model_version": p.model_version,
        "level": p.level, "reasons": [{"code": r["code"], "sentence": r["sentence"]} for r in p.reasons],
        "actions": [{"code": a["code"], "sentence": a["sentence"], "level_after": a["level_after"]}
                    for a in p.actions],
        "computed_at": p.computed_at.isoformat(),
    }
    if not for_student:
        body.update(student_id=p.student_id, student_name=p.student_name, roll_number=p.roll_number,
                    probability=p.probability)
    return body


def model_json(m: ModelRow) -> dict[str, Any]:
    return {
        "id": m.id, "version": m.version, "created_at": m.created_at.isoformat(), "trained_by": m.trained_by,
        "trained_on": m.trained_on, "tested_on": m.tested_on, "features": m.features,
        "rows_trained": m.rows_trained, "rows_tested": m.rows_tested, "status": m.status, "pinned": m.pinned,
        "shipped": m.shipped, "ship_reason": m.ship_reason, "metrics": m.metrics, "baseline": m.baseline,
    }


async def basis_json() -> dict[str, Any]:
    """What the levels come from: the model in use, or the rule and why (the latest training's reason)."""
    models = await list_models(current_context().db)
    active = next((m for m in models if m.status == "active"), None)
    if active is not None:
        return {"basis": "model", "model_version": active.version, "pinned": active.pinned,
                "why": active.ship_reason}
    latest = models[0] if models else None
    why = (latest.ship_reason if latest is not None
           else "No model has been trained yet: a campus needs finished terms with outcomes first.")
    return {"basis": "rule", "model_version": None, "pinned": False, "why": why}


@bp.get("/risk/me")
@require("student")
async def my_risk() -> Any:
    ctx, principal = current_context(), current_principal()
    rows = await student_predictions(ctx.db, principal.user_id, utc_now(ctx))
    return jsonify({"items": [prediction_json(p, for_student=True) for p in rows], **await basis_json()})


@bp.get("/risk/courses/<course_id>")
@require("faculty", "admin")
async def course_risk(course_id: str) -> Any:
    ctx, principal = current_context(), current_principal()
    if await course_info(ctx.db, course_id) is None:
        raise not_found("No such course.")
    if principal.role == "faculty" and not await teaches_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")
    rows = await course_predictions(ctx.db, course_id, utc_now(ctx))
    return jsonify({"course_id": course_id, "items": [prediction_json(p) for p in rows], **await basis_json()})


@bp.get("/risk/models")
@require("admin")
async def models() -> Any:
    return jsonify({"items": [model_json(m) for m in await list_models(current_context().db)],
                    **await basis_json()})


@bp.post("/risk/models/train")
@require("admin")
async def train_now() -> Any:
    """Record the request, then tell this process's risk actor; any hub process's actor takes up a request
    its own web did not pass on at its next sweep (hub/services/risk.py)."""
    ctx, principal = current_context(), current_principal()
    if not await request_training(ctx.db, principal.user_id):
        raise WebError(409, "conflict", "A training is already waiting or running; its model appears here when it ends.")
    try:
        answer = await ctx.risk_control("train", principal.user_id)
    except LookupError:
        answer = {"started": False}
    return jsonify({"started": bool(answer.get("started"))}), 202


@bp.post("/risk/models/<raw_id>/pin")
@require("admin")
async def pin(raw_id: str) -> Any:
    ctx, principal = current_context(), current_principal()
    try:
        row = await pin_model(ctx.db, path_id(raw_id, "model"), principal.user_id)
    except ModelRefused as exc:
        if exc.code == "not_found":
            raise not_found("No such model.") from exc
        raise WebError(409, "conflict", "This model did not beat the attendance rule, so it cannot be used.") from exc
    await _control_quietly()
    return jsonify(model_json(row))


@bp.post("/risk/models/unpin")
@require("admin")
async def unpin() -> Any:
    ctx, principal = current_context(), current_principal()
    row = await unpin_model(ctx.db, principal.user_id)
    await _control_quietly()
    return jsonify({"model": model_json(row) if row is not None else None})


async def _control_quietly() -> None:
    # The change is committed; without a running actor the next start loads the model in use anyway.
    try:
        await current_context().risk_control("model_changed", current_principal().user_id)
    except LookupError:
        pass


_LEVEL = enum("low", "medium", "high")
_REASON = obj({"code": STR, "sentence": STR})
_ACTION = obj({"code": STR, "sentence": STR, "level_after": _LEVEL})
_PREDICTION_STUDENT = {
    "course_id": STR, "course_code": STR, "course_title": STR, "term_id": STR, "term_name": STR,
    "basis": enum("model", "rule"), "model_version": nullable(INT), "level": _LEVEL, "reasons": array(_REASON),
    "actions": array(_ACTION), "computed_at": TIME}
_PREDICTION = {**_PREDICTION_STUDENT, "student_id": STR, "student_name": STR, "roll_number": STR,
               "probability": nullable(NUMBER)}
_BASIS = {"basis": enum("model", "rule"), "model_version": nullable(INT), "pinned": BOOL, "why": STR}
_FIGURES = obj({}, closed=False)
_MODEL = obj({
    "id": INT, "version": INT, "created_at": TIME, "trained_by": STR, "trained_on": array(STR), "tested_on": STR,
    "features": array(STR), "rows_trained": INT, "rows_tested": INT,
    "status": enum("candidate", "active", "retired"), "pinned": BOOL, "shipped": BOOL, "ship_reason": STR,
    "metrics": _FIGURES, "baseline": _FIGURES})
_MODEL_ID = path_param("raw_id", "A model's id.", INT)

OPENAPI_PATHS: dict = {
    "/api/v1/risk/me": {"get": operation(
        "The caller's own early-warning level per running course, its reasons and what would lower it (student)",
        "risk", ["student"], {"200": json_response(obj({"items": array(obj(_PREDICTION_STUDENT)), **_BASIS}),
                                                   "Own risk.")})},
    "/api/v1/risk/courses/{course_id}": {"get": operation(
        "Students of a running course by risk, highest first, with reasons (faculty teaching it, admin)",
        "risk", ["faculty", "admin"], {
            "200": json_response(obj({"course_id": STR, "items": array(obj(_PREDICTION)), **_BASIS}), "Risk list."),
            "404": doc_not_found("course")},
        params=[path_param("course_id", "A course's id.")])},
    "/api/v1/risk/models": {"get": operation(
        "Every trained model, newest first, with its held-out figures and the rule's (admin)", "risk", ["admin"],
        {"200": json_response(obj({"items": array(_MODEL), **_BASIS}), "Models.")})},
    "/api/v1/risk/models/train": {"post": operation(
        "Ask for a training now (202; `started`: this process began it at once, else the next sweep of a"
        " running hub takes it up); its model appears in the list when it ends (admin)", "risk", ["admin"],
        {"202": json_response(obj({"started": BOOL}), "Requested."), "409": CONFLICT})},
    "/api/v1/risk/models/{raw_id}/pin": {"post": operation(
        "Use this shipped model and keep it (roll back to an older one) (admin)", "risk", ["admin"],
        {"200": json_response(_MODEL, "Pinned."), "404": doc_not_found("model"), "409": CONFLICT},
        params=[_MODEL_ID])},
    "/api/v1/risk/models/unpin": {"post": operation(
        "Stop pinning: the newest shipped model is used again (admin)", "risk", ["admin"],
        {"200": json_response(obj({"model": nullable(_MODEL)}), "Unpinned.")})},
}
