"""The early-warning evaluation as a benchmark: train on earlier terms, test on the latest finished term,
and print the model's figures beside the rule "attendance below 75 %" on the same held-out rows.

    .venv/bin/python bench/risk_eval.py [--terms 4] [--students 150] [--courses 4] [--seed 16]

Setup: one database ``campushub_bench_<random>_risk`` (migrated; dropped at the end, also on Ctrl-C)
with the demo campus (hub.db.seed.ensure_campus) and ``--terms`` finished terms of seeded history
(hub/db/seed/past_terms.py: ``--students`` alumni per term, each in ``--courses`` courses, outcomes
from a hidden noisy combination that is not the 75 % rule). Then exactly what the hub's trainer does
(hub/services/risk_model.py ``training_data`` and ``train``): rows at 30/50/70 % of each term,
fitted on the earlier terms, scored on the latest. Prints ROC AUC, precision at the top 10 %,
Brier score and the reliability table for both, the ship decision, and the times taken.
A measurement, not a test: synthetic data checks the pipeline, not a campus (docs/analytics.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    load_average,
    new_run_id,
    progress,
    run_db,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default=os.environ.get("CAMPUSHUB_BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--terms", type=int, default=4)
    parser.add_argument("--students", type=int, default=150)
    parser.add_argument("--courses", type=int, default=4)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (for bench/harness.py)")
    args = parser.parse_args()
    os.environ.setdefault("CAMPUSHUB_MASTER_KEY", __import__("base64").b64encode(os.urandom(32)).decode())
    name = f"campushub_bench_{new_run_id()}_risk"
    created: list[str] = []
    try:
        create_databases(args.server_url, [name], created)
        url = database_url_for(args.server_url, name)
        run_db(url, lambda db: _evaluate(db, args))
    finally:
        drop_databases(args.server_url, created)


def _table(label: str, fig: dict) -> None:
    print(f"{label}: ROC AUC {fig['auc']:.3f}, precision at top 10 % {fig['precision_at_10']:.3f},"
          f" Brier {fig['brier']:.4f} ({fig['rows']} held-out rows, {fig['positives']} failed or withdrew,"
          f" base rate {fig['base_rate']:.3f})")
    print("  reliability: bin | rows | mean predicted | observed")
    for b in fig["calibration"]:
        print(f"    {b['from']:.1f}-{b['to']:.1f} | {b['rows']:5d} | {b['predicted']:.3f} | {b['observed']:.3f}")


async def _evaluate(db, args) -> None:
    import trio

    from hub.db import migrate
    from hub.db.seed import ensure_campus
    from hub.db.seed.past_terms import ensure_past_terms
    from hub.services.risk_model import train, training_data

    await migrate(db)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    await ensure_campus(db, rooms=max(2, args.courses // 2), students=8, now=now)
    await ensure_past_terms(db, now, terms=args.terms, students=args.students, courses=args.courses, seed=args.seed)
    progress(f"seeded in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    data, terms = await training_data(db, now.date())
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    trained = await trio.to_thread.run_sync(train, data, terms)
    fitted = time.perf_counter() - started
    if args.json:
        import json

        print(json.dumps({
            "config": {"terms": args.terms, "students": args.students, "courses": args.courses, "seed": args.seed,
                       "trained_on": trained.trained_on, "tested_on": trained.tested_on,
                       "rows_trained": trained.rows_trained, "rows_tested": trained.rows_tested},
            "results": {"model": trained.metrics, "rule": trained.baseline, "shipped": trained.shipped,
                        "ship_reason": trained.ship_reason, "load_s": round(loaded, 2), "fit_s": round(fitted, 2)},
        }))
        return
    print(f"terms: trained on {', '.join(trained.trained_on)} ({trained.rows_trained} rows),"
          f" tested on {trained.tested_on} ({trained.rows_tested} rows)")
    print(f"features loaded in {loaded:.2f} s, trained and evaluated in {fitted:.2f} s; load {load_average()}")
    _table("model (logistic regression)", trained.metrics)
    _table("rule (attendance below 75 %)", trained.baseline)
    print(f"shipped: {trained.shipped} - {trained.ship_reason}")
    print("coefficients (standardised):", ", ".join(f"{k} {v:+.2f}" for k, v in trained.metrics["coefficients"].items()))


if __name__ == "__main__":
    main()
