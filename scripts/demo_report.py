"""The demo's closing report: throughput and latencies, decisions, online error per target and
model version, dead letters; written as Markdown and JSON next to its plot, and printed.

    python scripts/demo_report.py --run demo-0930- --rides 5000 --load load.json --output-dir DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer
from sqlalchemy import func, select

from decision_service.evaluation import comparison_text
from decision_service.evaluation import report as evaluation_report
from ridestream.contracts.events import TARGETS
from ridestream.kafka.clients import batches_until_idle, consumer_config, unique_group_id
from ridestream.ml.scoring import MAX_MINUTES, MIN_MINUTES
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings, get_settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import LABELLED, actuals, predictions, rides


def dead_letters(settings: Settings) -> int:
    """Messages on the dead-letter topic (all runs), read to the end: offsets would also count
    the transaction markers the exactly-once loops write there."""
    consumer = Consumer(consumer_config(settings, unique_group_id("demo-report")))
    consumer.subscribe([settings.topics.full("dlq")])
    try:
        return sum(len(batch) for batch in batches_until_idle(consumer, idle_timeout_s=3.0))
    finally:
        consumer.close()


def run_figures(store: DecisionStore, run: str) -> dict[str, Any]:
    """Decisions of this run's rides and their event → stored decision latency."""
    mine = rides.c.ride_id.like(f"{run}%")
    with store.engine.connect() as conn:
        decided = conn.execute(
            select(
                rides.c.source_event_time_ms,
                rides.c.decided_at_ms,
                rides.c.partial,
                rides.c.actions,
            ).where(mine, rides.c.status == "decided")
        ).all()
        # Where a decision's time went, from the store's own stamps: the predictor made the
        # ride's last champion prediction, the decision service received it, then decided.
        hops = conn.execute(
            select(
                rides.c.source_event_time_ms,
                func.max(predictions.c.predicted_at_ms),
                func.max(predictions.c.stored_at_ms),
                rides.c.decided_at_ms,
            )
            .join(predictions, predictions.c.ride_id == rides.c.ride_id)
            .where(mine, rides.c.status == "decided", predictions.c.role == "champion",
                   predictions.c.target.in_(TARGETS))
            .group_by(rides.c.ride_id)
        ).all()  # fmt: skip
        mine_done = actuals.c.ride_id.like(f"{run}%")
        completed = conn.scalar(select(func.count()).where(mine_done))
        labelled = conn.scalar(select(func.count()).where(mine_done, LABELLED))
    latency = np.array([(d - e) / 1000 for e, d, _, _ in decided]) if decided else np.array([0.0])
    actions: dict[str, int] = {}
    for *_, listed in decided:
        for action in json.loads(listed or "[]"):
            actions[action] = actions.get(action, 0) + 1
    return {
        "decisions": len(decided),
        "partial": sum(bool(p) for _, _, p, _ in decided),
        "completions_stored": int(completed or 0),
        "completions_labelled": int(labelled or 0),
        "actions": actions,
        "event_to_decision_s": _quantiles(latency),
        "hops_s": {
            name: _quantiles(np.array([(row[i + 1] - row[i]) / 1000 for row in hops]))
            for i, name in enumerate(HOPS)
        },
    }


HOPS = (
    "event → last champion prediction made",
    "→ received by the decision service",
    "→ decision stored",
)


def _quantiles(seconds: np.ndarray) -> dict[str, float]:
    if not len(seconds):
        seconds = np.array([0.0])
    return {q: round(float(np.percentile(seconds, int(q[1:]))), 3) for q in ("p50", "p99")}


def offline_figures(settings: Settings, evaluation: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each evaluated version's validation figures from training (every labelled ride of the
    validation month), keyed ``name:version``: what online error should be set against."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings.mlflow)
    figures: dict[str, dict[str, float]] = {}
    for row in evaluation["total"]:
        key = f"{row['model_name']}:{row['model_version']}"
        if key in figures:
            continue
        try:
            run_id = client.get_model_version(row["model_name"], row["model_version"]).run_id
            metrics = client.get_run(run_id).data.metrics
        except MlflowException:  # a version of another store: no offline figures to show
            continue
        if "valid_mae" in metrics:
            figures[key] = {"mae": metrics["valid_mae"], "rmse": metrics["valid_rmse"]}
    return figures


def markdown(result: dict[str, Any]) -> str:
    run, load, evaluation = result["run"], result["gateway_load"], result["evaluation"]
    lines = [
        f"# ridestream demo report — run `{result['prefix']}`",
        "",
        "## Stream",
        f"- rides replayed: {result['rides']} (with their completions)",
        f"- decisions: {run['decisions']} ({run['partial']} on partial predictions); "
        f"completions stored: {run['completions_stored']}",
        f"- event → stored decision: p50 {run['event_to_decision_s']['p50']} s, "
        f"p99 {run['event_to_decision_s']['p99']} s; per hop: "
        + "; ".join(f"{hop} p50 {q['p50']} / p99 {q['p99']} s" for hop, q in run["hops_s"].items()),
        f"- actions: {run['actions'] or 'none'}",
        f"- dead letters on the DLQ (all runs): {result['dead_letters']}",
        "",
        "## Gateway",
        f"- {load['requests']} requests from {load['concurrency']} clients in {load['seconds']} s: "
        f"{load['requests_per_s']} requests/s, p50 {load['latency_ms']['p50']} ms, "
        f"p99 {load['latency_ms']['p99']} ms (client side, through the whole stack's CPU load)",
        f"- statuses: {load['statuses']}; answers per simple-model version: "
        f"{load['answers_by_simple_version']}",
        f"- opted in: {load['opted_in']} → pending {load['enhanced_pending']}, unavailable "
        f"{load['enhanced_unavailable']}",
        "",
        "## Online evaluation (every model version against ground truth, all runs in the store)",
        "",
        f"Scored: every completed ride whose ground truth obeys the label convention "
        f"({MIN_MINUTES:g}-{MAX_MINUTES:g} minutes, positive cost), whatever its estimated distance "
        f"(this run: {run['completions_labelled']} of {run['completions_stored']} completions), as "
        "training scores its validation month. Offline: the version's figures on every labelled "
        "ride of its validation month.",
        "",
        "| target | model | version | role | rides | MAE | RMSE | offline MAE | offline RMSE |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    offline = result.get("offline", {})
    for row in evaluation["total"]:
        known = offline.get(f"{row['model_name']}:{row['model_version']}")
        tail = f"{known['mae']:.3f} | {known['rmse']:.3f}" if known else "- | -"
        lines.append(
            f"| {row['target']} | {row['model_name']} | {row['model_version']} | {row['role']} | "
            f"{row['count']} | {row['mae']:.3f} | {row['rmse']:.3f} | {tail} |"
        )
    lines.append("")
    lines += [f"- {comparison_text(c)}" for c in evaluation["comparisons"]]
    lines += ["", f"Plot: {evaluation['plot']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="ride id prefix of this run")
    parser.add_argument("--rides", type=int, required=True)
    parser.add_argument("--load", type=Path, required=True, help="demo_load.py's summary")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = get_settings()
    store = DecisionStore(settings.decisions.resolved_store_url)
    try:
        result = {
            "prefix": args.run,
            "rides": args.rides,
            "run": run_figures(store, args.run),
            "gateway_load": json.loads(args.load.read_text()),
            "dead_letters": dead_letters(settings),
            "evaluation": evaluation_report(store, settings, args.output_dir / "evaluation.png"),
        }
        result["offline"] = offline_figures(settings, result["evaluation"])
    finally:
        store.close()
    text = markdown(result)
    (args.output_dir / "report.md").write_text(text)
    (args.output_dir / "report.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(text)
    print(f"written: {args.output_dir / 'report.md'}, report.json, evaluation.png")


if __name__ == "__main__":
    main()
