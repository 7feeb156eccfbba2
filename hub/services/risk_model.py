"""The early-warning model: training, honest evaluation against the attendance rule, scoring and
per-prediction contributions (scikit-learn; docs/analytics.md).

The model is a ``Pipeline(StandardScaler, LogisticRegression)`` on the features of
hub/domain/risk_features.py. A linear model on standardised features explains itself: a
feature's contribution to a prediction's log-odds is its coefficient times its standardised
value, and those contributions become the prediction's reasons.

Evaluation is by time, never by random rows: train on every finished term but the latest, test
on the latest. The same held-out rows are scored by the rule "attendance below 75 %" (ranked by
attendance shortfall; its probability is the failure rate of its group in the training terms).
The model *ships* only if it beats the rule on both ROC AUC and precision at the top 10 %.

Everything here is CPU work without I/O except :func:`training_data` (hub/db reads): the
service runs :func:`train` in a worker thread (``trio.to_thread.run_sync``). A model is stored
as a joblib dump in ``risk_models.model``; :func:`load` unpickles it, which runs code, so it
is only ever called on bytes from our own database, written by :func:`train`.

scikit-learn and joblib are imported inside the functions that use them: the import costs about
a second of CPU, which every hub start (and every test that starts one) would pay for nothing
until a model is trained or loaded.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

from hub.db import Database
from hub.db.risk_features import Case, finished_terms, load_facts, training_cases
from hub.domain.risk_features import FEATURES, feature_vector, rule_score

#: Share of the held-out rows counted by "precision at the top".
TOP_SHARE = 0.10
#: Reliability bins of the calibration table.
BINS = 10
#: Fewer held-out positives or negatives than this and the figures mean nothing: no model ships.
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class Dataset:
    """Feature rows of finished terms: X (n x len(FEATURES)), y (1 = failed or withdrew), each row's term."""

    x: np.ndarray
    y: np.ndarray
    terms: list[str]


async def training_data(db: Database, today: date) -> tuple[Dataset, list[str]]:
    """Every finished term's cases as feature rows, and the finished terms oldest first."""
    terms = [t for t, _ in await finished_terms(db, today)]
    cases: list[Case] = await training_cases(db, today)
    facts = await load_facts(db, cases)
    x = np.array([feature_vector(f) for f in facts], dtype=float).reshape(len(facts), len(FEATURES))
    y = np.array([c.label for c in cases], dtype=int)
    return Dataset(x, y, [c.term_id for c in cases]), terms


def precision_at_top(scores: np.ndarray, y: np.ndarray, share: float = TOP_SHARE) -> float:
    """Share of real positives among the ``share`` highest scores (ties kept in row order)."""
    n = max(1, math.ceil(len(scores) * share))
    top = np.argsort(-scores, kind="stable")[:n]
    return float(y[top].mean())


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict[str, float | int]]:
    """Calibration table: per probability bin, its rows, mean predicted and observed failure rate."""
    table = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for k in range(bins):
        low, high = edges[k], edges[k + 1]
        inside = (probabilities >= low) & ((probabilities < high) if k < bins - 1 else (probabilities <= high))
        if inside.any():
            table.append({"from": round(float(low), 2), "to": round(float(high), 2), "rows": int(inside.sum()),
                          "predicted": round(float(probabilities[inside].mean()), 4),
                          "observed": round(float(y[inside].mean()), 4)})
    return table


def figures(scores: np.ndarray, probabilities: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """ROC AUC and precision at the top 10 % (by ``scores``), Brier score and reliability (of ``probabilities``)."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    both = len(set(y.tolist())) == 2
    return {
        "auc": round(float(roc_auc_score(y, scores)), 4) if both else None,
        "precision_at_10": round(precision_at_top(scores, y), 4),
        "brier": round(float(brier_score_loss(y, probabilities)), 4),
        "calibration": reliability(probabilities, y),
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "base_rate": round(float(y.mean()), 4) if len(y) else None,
    }


def rule_probabilities(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The rule as a probability: the training terms' failure rate of its two groups (flagged or not)."""
    flagged_train = train_x[:, 0] < 0.75
    rate_flagged = float(train_y[flagged_train].mean()) if flagged_train.any() else 1.0
    rate_clear = float(train_y[~flagged_train].mean()) if (~flagged_train).any() else 0.0
    return np.where(x[:, 0] < 0.75, rate_flagged, rate_clear)


@dataclass(frozen=True)
class Trained:
    model: bytes
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    shipped: bool
    ship_reason: str
    trained_on: list[str]
    tested_on: str
    rows_trained: int
    rows_tested: int


class NotEnoughHistory(ValueError):
    """Fewer than two finished terms with outcomes: nothing to train on and test on."""


def new_pipeline() -> Pipeline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()),
                     ("model", LogisticRegression(C=1.0, max_iter=2000))])


def train(data: Dataset, terms: Sequence[str]) -> Trained:
    """Fit on every finished term but the latest, evaluate on the latest against the rule, then refit
    the shipped model on every finished term (the figures stay those of the held-out term).
    CPU-bound: call it in a worker thread."""
    if len(terms) < 2:
        raise NotEnoughHistory(f"need two finished terms with outcomes, have {len(terms)}")
    test_term = terms[-1]
    is_test = np.array([t == test_term for t in data.terms])
    train_x, train_y = data.x[~is_test], data.y[~is_test]
    test_x, test_y = data.x[is_test], data.y[is_test]
    if len(set(train_y.tolist())) < 2:
        raise NotEnoughHistory("the training terms have only one outcome")
    held_out = new_pipeline().fit(train_x, train_y)
    probabilities = held_out.predict_proba(test_x)[:, 1]
    metrics = figures(probabilities, probabilities, test_y)
    rule_scores = np.array([rule_score(v) for v in test_x])
    baseline = figures(rule_scores, rule_probabilities(train_x, train_y, test_x), test_y)
    shipped, reason = ship_decision(metrics, baseline, test_y)
    final = new_pipeline().fit(data.x, data.y)
    metrics["coefficients"] = dict(zip(FEATURES, (round(float(c), 4) for c in final.named_steps["model"].coef_[0])))
    import joblib

    buffer = io.BytesIO()
    joblib.dump(final, buffer)
    return Trained(buffer.getvalue(), metrics, baseline, shipped, reason, [t for t in terms if t != test_term],
                   test_term, int(len(train_y)), int(len(test_y)))


def ship_decision(metrics: dict[str, Any], baseline: dict[str, Any], test_y: np.ndarray) -> tuple[bool, str]:
    """Ship only if the model beats the rule on the held-out term on both AUC and precision at 10 %."""
    positives, negatives = int(test_y.sum()), int(len(test_y) - test_y.sum())
    if min(positives, negatives) < MIN_CLASS_ROWS:
        return False, (f"the held-out term has too few outcomes of one kind ({positives} failed or withdrew,"
                       f" {negatives} passed) to judge the model")
    auc, rule_auc = metrics["auc"], baseline["auc"]
    p10, rule_p10 = metrics["precision_at_10"], baseline["precision_at_10"]
    if auc > rule_auc and p10 > rule_p10:
        return True, (f"beats the attendance rule on the held-out term: ROC AUC {auc:.3f} vs {rule_auc:.3f},"
                      f" precision at the top 10 % {p10:.1%} vs {rule_p10:.1%}")
    return False, (f"does not beat the attendance rule on the held-out term (ROC AUC {auc:.3f} vs {rule_auc:.3f},"
                   f" precision at the top 10 % {p10:.1%} vs {rule_p10:.1%}); the rule's flags are shown instead")


@dataclass(frozen=True)
class LoadedModel:
    """A stored model ready to score; ``model_id`` is its risk_models row."""

    model_id: int
    version: int
    pipeline: Pipeline

    def probabilities(self, vectors: Sequence[Sequence[float]]) -> list[float]:
        if not vectors:
            return []
        x = np.array(vectors, dtype=float).reshape(len(vectors), len(FEATURES))
        return [float(p) for p in self.pipeline.predict_proba(x)[:, 1]]

    def contributions(self, vector: Sequence[float]) -> dict[str, float]:
        """Each feature's share of the log-odds: coefficient x standardised value."""
        scaler: StandardScaler = self.pipeline.named_steps["scale"]
        model: LogisticRegression = self.pipeline.named_steps["model"]
        z = scaler.transform(np.array([vector], dtype=float))[0]
        return {name: float(c * v) for name, c, v in zip(FEATURES, model.coef_[0], z)}


def load(model_id: int, version: int, blob: bytes) -> LoadedModel:
    """Unpickle a model written by :func:`train` (ONLY bytes from our own ``risk_models`` table)."""
    import joblib
    from sklearn.pipeline import Pipeline

    pipeline = joblib.load(io.BytesIO(blob))
    if not isinstance(pipeline, Pipeline):
        raise ValueError("risk_models holds something that is not a scikit-learn Pipeline")
    return LoadedModel(model_id, version, pipeline)
