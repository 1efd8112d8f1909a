"""Train, evaluate, log and register one LightGBM model per target; gate the champion alias.

For each target (recipes in ``training.specs``): fit on the training months (trees chosen on
their own tail, ``training.fit``); score on every labelled ride of the validation month, next to
the three baselines of the same run, with the segments beside it (``training.evaluate``); log
plots, the distance prior, the feature reference profile, signature, input example and data
fingerprints to MLflow; register; and gate: ``@champion`` only if it beats the current champion
on validation rows *neither* was trained on, ``@challenger`` otherwise.

With ``refit`` (what the monthly flow does, on the backtest's evidence that the latest weeks
help) the version registered is the same recipe refitted on the validation month too; the
figures logged with it are those of its twin trained without that month, whose booster and prior
are logged beside it (``twin/``) so that a later gate can still compare like with like.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm import tqdm

from ridestream.exceptions import ConfigurationError
from ridestream.ml.distance_prior import DistancePrior
from ridestream.ml.features import (
    CATEGORICAL,
    FEATURE_SET,
    PRIOR_FEATURES,
    TREND_FEATURES,
    select,
)
from ridestream.ml.models import PRIOR_ARTIFACT, SCALE_ARTIFACT, compose, load_version
from ridestream.ml.profiles import reference_profile
from ridestream.ml.registry import CHAMPION, alias_version, make_challenger, promote
from ridestream.ml.scoring import regression_metrics
from ridestream.ml.tracking import ensure_experiment, mlflow_client
from ridestream.settings import ModelSettings, Settings
from training import plots
from training.baselines import lightgbm_raw, linear_baseline, median_by_payment
from training.data import TARGET_COLUMNS, Split, load_split
from training.evaluate import ALL, scores
from training.fit import Fitted, fit
from training.specs import SPECS, TargetSpec

__all__ = ["SPECS", "TargetSpec", "TrainResult", "train_models", "train_target"]

logger = logging.getLogger(__name__)
BASELINES = ("linear", "median_by_payment", "lightgbm_raw")


@dataclass
class TrainResult:
    """What training one target produced, for the CLI, Kestra outputs and tests."""

    target: str
    model_name: str
    version: str
    role: str
    run_id: str
    best_iteration: int
    seconds: float
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    champion_before: str | None = None
    champion_score: float | None = None
    gate_metric: str = "rmse"
    refit: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _baselines(spec: TargetSpec, train: Split, valid: Split) -> dict[str, np.ndarray]:
    column = TARGET_COLUMNS[spec.target]
    objective = "regression_l1" if spec.gate_metric == "mae" else "regression"
    return {
        "linear": linear_baseline(train.rides, valid.rides, column),
        "median_by_payment": median_by_payment(train.rides, valid.rides, column),
        "lightgbm_raw": lightgbm_raw(train.rides, valid.rides, column, objective),
    }


def _unseen_champion(
    client: Any, settings: ModelSettings, spec: TargetSpec, valid: Split
) -> tuple[str | None, Any]:
    """The champion's version and a predict function of a model of it that never saw the
    validation files: the champion itself, or its twin when it was refitted on them. The
    function is None when there is no champion, or no model of it that is fair to compare."""
    version = alias_version(client, spec.model_name, CHAMPION)
    if version is None:
        return None, None
    run_id = client.get_model_version(spec.model_name, version).run_id
    tags = client.get_run(run_id).data.tags
    validation = set(valid.files)

    def saw(tag: str) -> bool:  # a version of before these tags names no files: it saw none
        return bool(set(tags.get(tag, "").split(",")) & validation)

    if not saw("train_files"):
        champion = load_version(client, spec.model_name, version, CHAMPION, settings, threads=0)
        return version, champion.predict
    if "twin_train_files" not in tags or saw("twin_train_files"):
        return version, None
    with tempfile.TemporaryDirectory() as folder:
        twin = Path(client.download_artifacts(run_id, "twin", folder))
        booster = lgb.Booster(model_file=str(twin / "model.txt"))
        prior = DistancePrior.from_dict(json.loads((twin / PRIOR_ARTIFACT).read_text()))
        scale_file = twin / SCALE_ARTIFACT
        scale = lgb.Booster(model_file=str(scale_file)) if scale_file.exists() else None
    twin_model = compose(spec.model_name, f"{version}-twin", CHAMPION, booster, prior, scale)
    return version, twin_model.predict


def _gate(
    client: Any, settings: ModelSettings, spec: TargetSpec, valid: Split
) -> tuple[str | None, float | None, str]:
    """Compare with the champion on rows neither saw: (champion version, its score, reason)."""
    version, predict = _unseen_champion(client, settings, spec, valid)
    if version is None:
        return None, None, "no champion before"
    if predict is None:
        return version, None, f"champion v{version} saw {valid.name} and has no twin that did not"
    theirs = regression_metrics(valid.target(spec.target), predict(valid.features))
    return version, theirs[spec.gate_metric], f"champion v{version} {theirs[spec.gate_metric]:.4f}"


# What the logged model needs to be served, pinned to what trained it. Said, not inferred: mlflow
# infers them by importing the model in a subprocess, seconds per model for a list known here.
SERVING_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("lightgbm", "numpy", "pandas")]


def _log_model(
    fitted: Fitted, x_example: np.ndarray, name: str | None, artifact: str = "model"
) -> str | None:
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    example = pd.DataFrame(x_example[:5], columns=list(fitted.spec.features))
    info = mlflow.lightgbm.log_model(
        fitted.booster,
        name=artifact,
        signature=infer_signature(example, fitted.booster.predict(example.to_numpy())),
        input_example=example,
        registered_model_name=name,
        pip_requirements=SERVING_REQUIREMENTS,
    )
    return None if info.registered_model_version is None else str(info.registered_model_version)


def _log_evaluation(spec: TargetSpec, valid: Split, actual: np.ndarray, predicted: np.ndarray,
                    by_population: dict[str, dict[str, dict[str, float]]], fitted: Fitted) -> None:  # fmt: skip
    import mlflow

    for population, models in by_population.items():
        prefix = "valid" if population == ALL else f"valid_{population}"
        mlflow.log_metrics({f"{prefix}_{k}": v for k, v in models["model"].items()})
        for baseline in BASELINES:
            infix = "" if population == ALL else f"_{population}"
            mlflow.log_metrics(
                {f"baseline_{baseline}{infix}_{k}": models[baseline][k] for k in ("rmse", "mae")}
            )
    title = f"{spec.model_name} on {valid.name}"
    for artifact, figure in (
        ("plots/feature_importance.png", plots.importance_figure(fitted.booster, title)),
        ("plots/residuals.png", plots.residuals_figure(actual, predicted, title)),
        ("plots/predicted_vs_actual.png", plots.predicted_vs_actual_figure(actual, predicted, title)),
    ):  # fmt: skip
        mlflow.log_figure(figure, artifact)
        plots.close(figure)


def _log_companions(fitted: Fitted, folder: str) -> None:
    """What serves beside the booster: its distance prior and, for a rate model, its scale."""
    import mlflow

    mlflow.log_dict(fitted.prior.to_dict(), f"{folder}{PRIOR_ARTIFACT}")
    if fitted.scale is not None and fitted.spec.scale is not None:
        mlflow.log_text(fitted.scale.model_to_string(), f"{folder}{SCALE_ARTIFACT}")
        mlflow.set_tag(
            "output",
            f"a rate of {fitted.spec.scale.target}: multiply by {SCALE_ARTIFACT}'s prediction "
            "(floored at 1); ridestream.ml.models.load_version does",
        )


def train_target(
    spec: TargetSpec,
    train: Split,
    valid: Split,
    client: Any,
    experiment_id: str,
    model_settings: ModelSettings,
    progress: bool = True,
    refit_on: Split | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and gate one target's model (see the module docstring)."""
    import mlflow

    started = time.monotonic()
    twin = fit(spec, train, progress=progress)
    actual = valid.target(spec.target)
    predicted = twin.predict(valid)
    baseline_predictions = _baselines(spec, train, valid)
    by_population = scores(valid.rides, actual, {"model": predicted, **baseline_predictions})
    metrics = {k: v for k, v in by_population[ALL]["model"].items() if k != "rides"}
    baselines = {name: by_population[ALL][name] for name in BASELINES}
    champion_before, champion_score, before = _gate(client, model_settings, spec, valid)
    served = fit(spec, refit_on, progress=progress) if refit_on is not None else twin
    served_on = refit_on or train

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{spec.model_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    ) as run:
        mlflow.log_params({**spec.params, "features": ",".join(spec.features), "max_rounds": spec.max_rounds,
                           "best_iteration": served.rounds, "twin_best_iteration": twin.rounds,
                           "target_column": TARGET_COLUMNS[spec.target], "refit": refit_on is not None})  # fmt: skip
        _log_evaluation(spec, valid, actual, predicted, by_population, twin)
        if champion_score is not None:
            mlflow.log_metric(f"champion_before_{spec.gate_metric}", champion_score)
        mlflow.set_tags({
            "target": spec.target, "valid_files": ",".join(valid.files), "valid_rows": valid.rows,
            "train_files": ",".join(served_on.files), "train_rows": served_on.rows,
            "train_rows_raw": sum(r.rows for r in served_on.reports.values()),
            "valid_rows_raw": sum(r.rows for r in valid.reports.values()),
            "train_fingerprint": ",".join(served_on.fingerprints[f] for f in served_on.files),
            "valid_fingerprint": ",".join(valid.fingerprints[f] for f in valid.files),
            "metrics_from": "this model" if refit_on is None else f"its twin trained on {train.name}",
        })  # fmt: skip
        _log_companions(served, "")
        # The drift reference: a time index always lies past its training range, and the prior's
        # columns only restate the zones and the distance, which are profiled themselves.
        profiled = tuple(n for n in spec.features if n not in TREND_FEATURES + PRIOR_FEATURES)
        mlflow.log_dict(
            reference_profile(
                select(served_on.features, profiled), profiled,
                tuple(n for n in profiled if n in CATEGORICAL),
            ),
            "reference_profile.json",
        )  # fmt: skip
        if refit_on is not None:
            mlflow.set_tag("twin_train_files", ",".join(train.files))
            mlflow.log_text(twin.booster.model_to_string(), "twin/model.txt")
            _log_companions(twin, "twin/")
        version = _log_model(served, twin.matrix(valid), spec.model_name)
        assert version is not None

    score = metrics[spec.gate_metric]
    wins = champion_before is None or (champion_score is not None and score < champion_score)
    if wins:
        promote(client, spec.model_name, version)
    else:
        make_challenger(client, spec.model_name, version)
    client.set_model_version_tag(
        spec.model_name, version, "gate", f"valid_{spec.gate_metric}={score:.4f} vs {before}"
    )
    client.set_model_version_tag(spec.model_name, version, "feature_set", FEATURE_SET)
    return TrainResult(
        target=spec.target,
        model_name=spec.model_name,
        version=version,
        role=CHAMPION if wins else "challenger",
        run_id=run.info.run_id,
        best_iteration=served.rounds,
        seconds=round(time.monotonic() - started, 1),
        metrics=metrics,
        baselines=baselines,
        champion_before=champion_before,
        champion_score=champion_score,
        gate_metric=spec.gate_metric,
        refit=refit_on is not None,
        extra={
            "rides": int(by_population[ALL]["model"]["rides"]),
            "segments": {k: v for k, v in by_population.items() if k != ALL},
        },
    )


def train_models(
    settings: Settings,
    targets: list[str],
    train_path: Path | list[Path],
    valid_path: Path,
    *,
    sample: int | None = None,
    progress: bool = True,
    specs: dict[str, TargetSpec] | None = None,
    refit: bool = False,
) -> list[TrainResult]:
    """Train every requested target on one load of the data."""
    specs = specs or SPECS
    unknown = sorted(set(targets) - set(specs))
    if unknown:
        raise ConfigurationError(f"unknown targets {unknown}; choose from {sorted(specs)}")
    client = mlflow_client(settings.mlflow)
    experiment_id = ensure_experiment(client, settings.mlflow)
    train_paths = [train_path] if isinstance(train_path, Path) else list(train_path)
    train, valid = load_split(train_paths, sample), load_split(valid_path, sample)
    everything = load_split([*train_paths, valid_path], sample) if refit else None
    logger.info("training on %s (%d rides), validating on %s (%d rides)%s", train.name, train.rows,
                valid.name, valid.rows, f", serving a refit on {everything.name}" if everything else "")  # fmt: skip
    results = []
    for target in tqdm(targets, desc="targets", unit="model", disable=not progress):
        result = train_target(specs[target], train, valid, client, experiment_id, settings.models,
                              progress, refit_on=everything)  # fmt: skip
        logger.info(
            "model=%s version=%s role=%s valid_rmse=%.3f valid_mae=%.3f (20-line lightgbm rmse=%.3f mae=%.3f)",
            result.model_name, result.version, result.role, result.metrics["rmse"], result.metrics["mae"],
            result.baselines["lightgbm_raw"]["rmse"], result.baselines["lightgbm_raw"]["mae"],
        )  # fmt: skip
        results.append(result)
    return results
