"""What ``ridestream train`` prints: the headline on every labelled ride, the segments beside it,
and the backtest's table (also logged to MLflow as a run of its own)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ridestream.ml.tracking import ensure_experiment, mlflow_client
from ridestream.settings import Settings
from training.backtest import FoldScore, backtest, refit_gains, table
from training.data import load_split
from training.evaluate import ALL
from training.specs import SPECS
from training.train import TrainResult

SEGMENT_ORDER = ("cleaned", "no_distance", "far", "app_dispatched", "negotiated", "metered")


def train_table(results: Sequence[TrainResult]) -> str:
    """The models' headline figures and, per model, every segment next to the 20-line baseline."""
    rides = results[0].extra.get("rides", 0) if results else 0
    lines = [
        f"every labelled ride of the validation month ({rides:,}: duration 1-60 min, cost > 0); "
        "figures of models that never saw it",
        f"{'model':<22}{'version':>8}  {'role':<11}{'metric':<7}{'ours':>8}{'20-line':>9}"
        f"{'linear':>9}{'median':>9}{'R2':>7}{'trees':>7}",
    ]
    for r in results:
        metric = r.gate_metric
        lines.append(
            f"{r.model_name:<22}{r.version:>8}  {r.role:<11}{metric.upper():<7}{r.metrics[metric]:>8.3f}"
            f"{r.baselines['lightgbm_raw'][metric]:>9.3f}{r.baselines['linear'][metric]:>9.3f}"
            f"{r.baselines['median_by_payment'][metric]:>9.3f}{r.metrics['r2']:>7.3f}"
            f"{r.best_iteration:>7}" + ("  (served: refit; figures: its twin)" if r.refit else "")
        )
    lines += ["", f"{'segment':<16}{'rides':>8}  " + "".join(f"{r.target:>18}" for r in results)]
    lines.append(f"{'':<26}" + "".join(f"{'ours / 20-line':>18}" for _ in results))
    segments = results[0].extra["segments"] if results else {}
    for segment in (s for s in SEGMENT_ORDER if s in segments):
        rides = segments[segment]["model"]["rides"]
        cells = []
        for r in results:
            scores = r.extra["segments"].get(segment)
            cells.append(
                f"{scores['model'][r.gate_metric]:>8.3f} / {scores['lightgbm_raw'][r.gate_metric]:<7.3f}"
                if scores
                else f"{'-':>18}"
            )
        lines.append(f"{segment:<16}{rides:>8,}  " + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def backtest_run(
    settings: Settings,
    targets: list[str],
    months: list[Path],
    *,
    sample: int | None = None,
    progress: bool = True,
) -> tuple[list[FoldScore], str]:
    """Run the backtest over the months, log it to MLflow, return its scores and table."""
    import mlflow

    split = load_split(months, sample)
    scores = backtest(split, SPECS, targets, progress=progress)
    text = table(scores)
    client = mlflow_client(settings.mlflow)
    experiment_id = ensure_experiment(client, settings.mlflow)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"backtest-{time.strftime('%Y%m%d-%H%M%S')}"
    ):
        mlflow.set_tags({"kind": "backtest", "months": split.name, "targets": ",".join(targets)})
        for i, s in enumerate(scores):
            mlflow.log_metrics({f"fold{i}_{s.kind}_{s.target}_{s.metric}": s.model,
                                f"fold{i}_{s.kind}_{s.target}_baseline_{s.metric}": s.baseline})  # fmt: skip
        for target, gains in refit_gains(scores).items():
            mlflow.log_metric(f"refit_gain_{target}", sum(gains) / len(gains))
        mlflow.log_text(text, "backtest.md")
        mlflow.log_dict({"scores": [s.as_dict() for s in scores]}, "backtest.json")
    return scores, f"rolling-origin backtest over {split.name} ({ALL} labelled rides)\n{text}"
