"""Training end to end into a real (temporary) MLflow store, and the champion gate."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ridestream.ml.features import build_features
from ridestream.ml.models import load_version
from ridestream.ml.registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTED_FROM,
    RegistryError,
    alias_version,
    promote,
    rollback,
)
from ridestream.ml.scoring import regression_metrics
from ridestream.ml.tlc import load_month, month_file
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings
from tests.conftest import TRAIN_SAMPLE, mlflow_settings
from training.data import load_split
from training.train import SPECS, TrainResult, train_models

pytestmark = pytest.mark.slow


def test_every_target_is_trained_logged_and_registered(
    trained: tuple[Settings, list[TrainResult]],
) -> None:
    import mlflow

    settings, results = trained
    client = mlflow_client(settings.mlflow)
    assert [r.model_name for r in results] == [
        "ride-duration",
        "ride-cost",
        "ride-tip",
        "ride-duration-simple",
    ]
    for result in results:
        assert (result.version, result.role) == ("1", CHAMPION)
        assert alias_version(client, result.model_name, CHAMPION) == "1"
        run = client.get_run(result.run_id)
        assert run.data.metrics["valid_rmse"] == pytest.approx(result.metrics["rmse"])
        for metric in (
            "valid_mae",
            "valid_r2",
            "baseline_linear_rmse",
            "baseline_median_by_payment_mae",
            "baseline_lightgbm_raw_rmse",
            "valid_cleaned_rmse",
            "valid_no_distance_rmse",
            "valid_far_mae",
            "valid_metered_rmse",
            "valid_app_dispatched_mae",
            "valid_negotiated_rmse",
            "baseline_linear_metered_rmse",
            "baseline_lightgbm_raw_no_distance_rmse",
        ):
            assert metric in run.data.metrics, metric
        segments = result.extra["segments"]
        metered = segments["metered"]
        assert metered["model"]["rides"] == metered["linear"]["rides"] > 0
        assert run.data.metrics["valid_metered_rmse"] == pytest.approx(metered["model"]["rmse"])
        # The headline is every labelled ride; the cleaned subset is a part of it, beside it.
        assert run.data.tags["valid_rows"] == str(TRAIN_SAMPLE)
        assert segments["cleaned"]["model"]["rides"] < TRAIN_SAMPLE
        assert segments["no_distance"]["model"]["rides"] > 0
        assert run.data.tags["train_rows"] == str(TRAIN_SAMPLE)
        assert run.data.tags["train_files"] == "green_tripdata_2023-01.parquet"
        assert len(run.data.tags["train_fingerprint"]) == 64
        assert "distance_prior.json" in {a.path for a in client.list_artifacts(result.run_id)}
        artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
        assert artifacts == {
            "plots/feature_importance.png",
            "plots/predicted_vs_actual.png",
            "plots/residuals.png",
        }
        profile = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=result.run_id, artifact_path="reference_profile.json"
                )
            ).read_text()
        )
        # Drift has a reference for every feature the model reads but the time index and the
        # prior's columns (they restate the zones and the distance).
        assert set(profile["features"]) == set(SPECS[result.target].features) - {
            "app_fare_day", "pair_distance", "distance_estimate",
        }  # fmt: skip
        model = mlflow.models.get_model_info(f"models:/{result.model_name}/1")
        assert model.signature is not None
        assert model.saved_input_example_info is not None


def test_a_registered_version_scores_what_training_logged(
    trained: tuple[Settings, list[TrainResult]],
) -> None:
    """Train/serve identity end to end: each version as services load it (booster, distance
    prior, the tip's scale model) gives, on the same validation rows, the figure training logged."""
    settings, results = trained
    client = mlflow_client(settings.mlflow)
    valid = load_split(month_file("2023-02"), TRAIN_SAMPLE)
    for result in results:
        model = load_version(client, result.model_name, result.version, CHAMPION, settings.models)
        served = regression_metrics(valid.target(result.target), model.predict(valid.features))
        assert served[result.gate_metric] == pytest.approx(result.metrics[result.gate_metric])


def test_models_beat_the_baselines_even_on_a_sample(
    trained: tuple[Settings, list[TrainResult]],
) -> None:
    _, results = trained
    by_target = {r.target: r for r in results}
    assert by_target["duration"].metrics["rmse"] < by_target["duration"].baselines["linear"]["rmse"]
    assert by_target["cost"].metrics["rmse"] < by_target["cost"].baselines["linear"]["rmse"]
    assert by_target["tip"].metrics["mae"] < by_target["tip"].baselines["median_by_payment"]["mae"]


@pytest.mark.parametrize("target", ["duration", "simple"])
def test_rides_without_a_usable_distance_get_the_zone_pairs_typical_duration(
    trained: tuple[Settings, list[TrainResult]], target: str
) -> None:
    """Zero, missing and absurd distances are unknown: the answer is the pair's typical ride
    (it once was a one-minute ride for a zero), not far from the answer with a real distance."""
    settings, results = trained
    [result] = [r for r in results if r.target == target]
    client = mlflow_client(settings.mlflow)
    model = load_version(client, result.model_name, result.version, CHAMPION, settings.models)
    january, _ = load_month(month_file("2023-01"))
    for pickup, dropoff in ((74, 236), (75, 74), (166, 41)):
        pair = january[
            (january["pickup_zone"] == pickup) & (january["dropoff_zone"] == dropoff)
            & january["labelled"] & (january["trip_distance"] > 0)
        ]  # fmt: skip
        typical = float(pair["duration_minutes"].median())
        rides = pd.DataFrame({
            "pickup_time": [datetime(2023, 2, 1, 14, 0)] * 4, "pickup_zone": pickup,
            "dropoff_zone": dropoff,
            "trip_distance": [float(pair["trip_distance"].median()), 0.0, np.nan, 5_000.0],
            "passenger_count": 1, "vendor_id": 2, "rate_code": 1, "payment_type": 1, "trip_type": 1,
        })  # fmt: skip
        known, *unknown = model.predict(build_features(rides))
        for answer in unknown:
            assert typical / 2 <= answer <= typical * 2, (pickup, dropoff, answer, typical)
            assert abs(answer - known) < typical / 2


def train_simple(settings: Settings, refit: bool = False, **spec_changes: Any) -> TrainResult:
    spec = dataclasses.replace(SPECS["simple"], **spec_changes)
    [result] = train_models(
        settings, ["simple"], month_file("2023-01"), month_file("2023-02"),
        sample=3000, progress=False, specs={"simple": spec}, refit=refit,
    )  # fmt: skip
    return result


def test_a_refit_serves_every_month_and_the_gate_compares_it_through_its_twin(
    tmp_path: Path,
) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    refit = train_simple(settings, refit=True, max_rounds=40)
    assert (refit.role, refit.refit) == (CHAMPION, True)
    tags = client.get_run(refit.run_id).data.tags
    assert tags["train_files"] == "green_tripdata_2023-01.parquet,green_tripdata_2023-02.parquet"
    assert tags["twin_train_files"] == "green_tripdata_2023-01.parquet"
    assert tags["metrics_from"].startswith("its twin")
    twin = {a.path for a in client.list_artifacts(refit.run_id, "twin")}
    assert twin == {"twin/model.txt", "twin/distance_prior.json"}

    # The champion saw February; the next candidate is compared with its twin, which did not:
    # the same recipe on the same rows scores the same.
    again = train_simple(settings, max_rounds=40)
    assert again.champion_before == refit.version
    assert again.champion_score == pytest.approx(refit.metrics["rmse"], rel=1e-9)
    assert again.role == CHALLENGER  # not lower: a tie keeps the champion


def test_a_champion_that_saw_the_validation_month_without_a_twin_is_never_compared(
    tmp_path: Path,
) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    first = train_simple(settings, max_rounds=20)
    client.set_tag(first.run_id, "train_files", "green_tripdata_2023-02.parquet")
    second = train_simple(settings, max_rounds=80)
    assert (second.role, second.champion_score) == (CHALLENGER, None)
    gate = client.get_model_version("ride-duration-simple", second.version).tags["gate"]
    assert "saw green_tripdata_2023-02.parquet" in gate


def test_a_worse_model_becomes_challenger_and_a_better_one_champion(tmp_path: Path) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    first = train_simple(settings, max_rounds=15)
    assert first.role == CHAMPION

    worse = train_simple(settings, max_rounds=2)  # two trees: clearly worse on the same rows
    assert worse.role == CHALLENGER
    assert worse.champion_before == first.version
    assert worse.champion_score is not None  # it was compared with the champion
    assert worse.metrics["rmse"] > worse.champion_score
    assert alias_version(client, "ride-duration-simple", CHAMPION) == first.version
    assert alias_version(client, "ride-duration-simple", CHALLENGER) == worse.version

    better = train_simple(settings, max_rounds=80)
    assert better.role == CHAMPION
    assert alias_version(client, "ride-duration-simple", CHAMPION) == better.version
    assert (
        client.get_model_version("ride-duration-simple", better.version).tags[PROMOTED_FROM]
        == first.version
    )


def test_promote_and_rollback_walk_the_history(tmp_path: Path) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    v1 = train_simple(settings, max_rounds=10).version
    v2 = train_simple(settings, max_rounds=3).version  # challenger
    assert promote(client, "ride-duration-simple", v2) == v1
    assert alias_version(client, "ride-duration-simple", CHALLENGER) is None  # promoted away
    assert rollback(client, "ride-duration-simple") == (v2, v1)
    assert alias_version(client, "ride-duration-simple", CHAMPION) == v1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(client, "ride-duration-simple")
    with pytest.raises(RegistryError, match="no version 99"):
        promote(client, "ride-duration-simple", "99")
