"""Train, evaluate, log and register one LightGBM model per target; gate the champion alias.

For each target: LightGBM on the training month with early stopping on the validation month;
validation RMSE/MAE/R² next to the two baselines of the same run; plots, the feature reference
profile, signature, input example and data fingerprints logged to MLflow; the version registered
and made ``@champion`` only if it beats the current champion on the same validation rows,
``@challenger`` otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm import tqdm

from ridestream.drift import reference_profile
from ridestream.evaluation import regression_metrics
from ridestream.exceptions import ConfigurationError
from ridestream.features import CATEGORICAL, FEATURES, SIMPLE_FEATURES, TREND_FEATURES, select
from ridestream.models import load_version, non_negative
from ridestream.registry import CHAMPION, MODEL_NAMES, alias_version, make_challenger, promote
from ridestream.settings import ModelSettings, Settings
from ridestream.tracking import ensure_experiment, mlflow_client
from training import plots
from training.baselines import linear_baseline, median_by_payment
from training.data import TARGET_COLUMNS, Split, load_split

logger = logging.getLogger(__name__)

_COMMON = {
    "objective": "regression",
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_cat_to_onehot": 4,
    "cat_smooth": 10,
    "num_threads": 2,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@dataclass(frozen=True)
class TargetSpec:
    """How one target is learned and judged."""

    target: str
    features: tuple[str, ...]
    params: dict[str, Any]
    max_rounds: int = 3000
    early_stopping: int = 100
    gate_metric: str = "rmse"  # the champion gate compares this validation metric (lower wins)

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return MODEL_NAMES[self.target]


# Every feature but the app-fare time index (see ridestream.features.TREND_FEATURES): a ride's
# duration and tip do not follow a platform's price list.
RIDE_FEATURES = tuple(name for name in FEATURES if name not in TREND_FEATURES)

# Chosen on February's validation RMSE/MAE *and* prediction cost: the predictors score every ride
# on one thread, so each model stays near 30 µs per ride (see README, "Model quality").
SPECS: dict[str, TargetSpec] = {
    # Huber keeps the few wild rides (negotiated fares, GPS glitches) from steering the trees;
    # capped at 300 trees, where validation RMSE has flattened and prediction stays ~35 µs.
    "duration": TargetSpec(
        "duration",
        RIDE_FEATURES,
        {
            **_COMMON,
            "objective": "huber",
            "alpha": 10.0,
            "learning_rate": 0.05,
            "num_leaves": 127,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.8,
        },
        max_rounds=300,
    ),
    # Every feature, the app-fare time index included: app-dispatched prices drift month to month.
    "cost": TargetSpec(
        "cost",
        FEATURES,
        {
            **_COMMON,
            "objective": "huber",
            "alpha": 20.0,
            "learning_rate": 0.1,
            "num_leaves": 63,
            "min_data_in_leaf": 50,
            "max_bin": 1023,
        },
    ),
    # The tip is judged on MAE (cash tips are zero: a median-like fit is what helps a rider quote).
    "tip": TargetSpec(
        "tip",
        RIDE_FEATURES,
        {
            **_COMMON,
            "objective": "regression_l1",
            "learning_rate": 0.1,
            "num_leaves": 63,
            "min_data_in_leaf": 40,
        },
        # L1 boosting creeps on for hundreds of trees for the last 0.005 of MAE; cap it.
        max_rounds=400,
        gate_metric="mae",
    ),
    # The gateway's model: six features, 15 leaves, at most 80 trees: microseconds per ride.
    "simple": TargetSpec(
        "simple",
        SIMPLE_FEATURES,
        {**_COMMON, "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 50},
        max_rounds=80,
        early_stopping=20,
    ),
}


def segments(rides: pd.DataFrame) -> dict[str, np.ndarray]:
    """Validation rides by how they are priced, where errors differ by an order of magnitude:
    metered street hails (rate code 1), negotiated fares (5) and app-dispatched rides that come
    without a rate code (their price per mile fell by a quarter from January to February)."""
    rate_code = rides["rate_code"].astype("float64").to_numpy()
    return {
        "metered": rate_code == 1,
        "negotiated": rate_code == 5,
        "no_rate_code": np.isnan(rate_code),
    }


def segment_metrics(
    rides: pd.DataFrame, actual: np.ndarray, predicted: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per segment (see :func:`segments`), per model (ours and each baseline): RMSE, MAE, rides."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for segment, mask in segments(rides).items():
        if mask.any():
            result[segment] = {
                model: {**regression_metrics(actual[mask], values[mask]), "rides": int(mask.sum())}
                for model, values in predicted.items()
            }
    return result


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
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _fit(spec: TargetSpec, train: Split, valid: Split, progress: bool) -> lgb.Booster:
    x_train, x_valid = select(train.features, spec.features), select(valid.features, spec.features)
    categorical = [name for name in spec.features if name in CATEGORICAL]
    dataset = lgb.Dataset(
        x_train,
        train.target(spec.target),
        feature_name=list(spec.features),
        categorical_feature=categorical,
    )
    validation = lgb.Dataset(x_valid, valid.target(spec.target), reference=dataset)
    with tqdm(
        total=spec.max_rounds,
        desc=f"train {spec.model_name}",
        unit="tree",
        disable=not progress,
        leave=False,
    ) as bar:
        booster = lgb.train(
            spec.params,
            dataset,
            num_boost_round=spec.max_rounds,
            valid_sets=[validation],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(spec.early_stopping, verbose=False),
                lambda _env: bar.update(1),
            ],
        )
    # Keep only the trees early stopping chose: what is registered is what was validated.
    trimmed: lgb.Booster = lgb.Booster(
        model_str=booster.model_to_string(num_iteration=booster.best_iteration)
    )
    return trimmed


def _champion_score(
    client: Any, settings: ModelSettings, spec: TargetSpec, valid: Split, actual: np.ndarray
) -> tuple[str | None, float | None]:
    """The current champion's gate metric on the same validation rows (None without one)."""
    version = alias_version(client, spec.model_name, CHAMPION)
    if version is None:
        return None, None
    champion = load_version(client, spec.model_name, version, CHAMPION, settings, threads=0)
    return version, regression_metrics(actual, champion.predict(valid.features))[spec.gate_metric]


def train_target(
    spec: TargetSpec,
    train: Split,
    valid: Split,
    client: Any,
    experiment_id: str,
    model_settings: ModelSettings,
    progress: bool = True,
) -> TrainResult:
    """Train, evaluate, log, register and gate one target's model."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    started = time.monotonic()
    column = TARGET_COLUMNS[spec.target]
    actual = valid.target(spec.target)
    booster = _fit(spec, train, valid, progress)
    x_valid = select(valid.features, spec.features)
    predicted = non_negative(np.asarray(booster.predict(x_valid, num_threads=2)))
    metrics = regression_metrics(actual, predicted)
    baseline_predictions = {
        "linear": linear_baseline(train.rides, valid.rides, column),
        "median_by_payment": median_by_payment(train.rides, valid.rides, column),
    }
    baselines = {
        name: regression_metrics(actual, values) for name, values in baseline_predictions.items()
    }
    by_segment = segment_metrics(valid.rides, actual, {"model": predicted, **baseline_predictions})
    champion_before, champion_score = _champion_score(client, model_settings, spec, valid, actual)

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{spec.model_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    ) as run:
        mlflow.log_params({**spec.params, "features": ",".join(spec.features), "max_rounds": spec.max_rounds,
                           "best_iteration": booster.num_trees(), "target_column": column,
                           "train_file": train.path.name, "valid_file": valid.path.name})  # fmt: skip
        mlflow.log_metrics({f"valid_{k}": v for k, v in metrics.items()})
        for baseline, values in baselines.items():
            mlflow.log_metrics({f"baseline_{baseline}_{k}": v for k, v in values.items()})
        for segment, models in by_segment.items():
            mlflow.log_metrics(
                {f"valid_{segment}_{k}": models["model"][k] for k in ("rmse", "mae")}
            )
            mlflow.log_metric(f"baseline_linear_{segment}_rmse", models["linear"]["rmse"])
        if champion_score is not None:
            mlflow.log_metric(f"champion_before_{spec.gate_metric}", champion_score)
        mlflow.set_tags({
            "target": spec.target,
            "train_fingerprint": train.fingerprint, "train_rows": train.rows,
            "valid_fingerprint": valid.fingerprint, "valid_rows": valid.rows,
            "train_rows_raw": train.cleaning.rows_in, "valid_rows_raw": valid.cleaning.rows_in,
        })  # fmt: skip
        title = f"{spec.model_name} on {valid.path.name}"
        for artifact, figure in (
            ("plots/feature_importance.png", plots.importance_figure(booster, title)),
            ("plots/residuals.png", plots.residuals_figure(actual, predicted, title)),
            (
                "plots/predicted_vs_actual.png",
                plots.predicted_vs_actual_figure(actual, predicted, title),
            ),
        ):
            mlflow.log_figure(figure, artifact)
            plots.close(figure)
        # The drift reference: a time index always lies past its training range, so it has none.
        profiled = tuple(name for name in spec.features if name not in TREND_FEATURES)
        categorical = tuple(name for name in profiled if name in CATEGORICAL)
        mlflow.log_dict(
            reference_profile(select(train.features, profiled), profiled, categorical),
            "reference_profile.json",
        )
        example = pd.DataFrame(x_valid[:5], columns=list(spec.features))
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(example, booster.predict(example.to_numpy())),
            input_example=example,
            registered_model_name=spec.model_name,
        )
        version = str(info.registered_model_version)

    score = metrics[spec.gate_metric]
    if champion_score is None or score < champion_score:
        promote(client, spec.model_name, version)
        role = CHAMPION
    else:
        make_challenger(client, spec.model_name, version)
        role = "challenger"
    before = (
        f"champion v{champion_before} {champion_score:.4f}"
        if champion_score is not None
        else "no champion before"
    )
    client.set_model_version_tag(
        spec.model_name, version, "gate", f"valid_{spec.gate_metric}={score:.4f} vs {before}"
    )
    return TrainResult(
        target=spec.target,
        model_name=spec.model_name,
        version=version,
        role=role,
        run_id=run.info.run_id,
        best_iteration=booster.num_trees(),
        seconds=round(time.monotonic() - started, 1),
        metrics=metrics,
        baselines=baselines,
        champion_before=champion_before,
        champion_score=champion_score,
        gate_metric=spec.gate_metric,
        extra={"segments": by_segment},
    )


def train_models(
    settings: Settings,
    targets: list[str],
    train_path: Path,
    valid_path: Path,
    *,
    sample: int | None = None,
    progress: bool = True,
    specs: dict[str, TargetSpec] | None = None,
) -> list[TrainResult]:
    """Train every requested target on one load of the data."""
    specs = specs or SPECS
    unknown = sorted(set(targets) - set(specs))
    if unknown:
        raise ConfigurationError(f"unknown targets {unknown}; choose from {sorted(specs)}")
    client = mlflow_client(settings.mlflow)
    experiment_id = ensure_experiment(client, settings.mlflow)
    train, valid = load_split(train_path, sample), load_split(valid_path, sample)
    logger.info(
        "training on %s (%d rides), validating on %s (%d rides)",
        train_path.name,
        train.rows,
        valid_path.name,
        valid.rows,
    )
    results = []
    for target in tqdm(targets, desc="targets", unit="model", disable=not progress):
        result = train_target(
            specs[target], train, valid, client, experiment_id, settings.models, progress
        )
        logger.info(
            "model=%s version=%s role=%s valid_rmse=%.3f valid_mae=%.3f (linear rmse=%.3f, median mae=%.3f)",
            result.model_name, result.version, result.role, result.metrics["rmse"], result.metrics["mae"],
            result.baselines["linear"]["rmse"], result.baselines["median_by_payment"]["mae"],
        )  # fmt: skip
        results.append(result)
    return results
