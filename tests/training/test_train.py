"""Training end to end into a real (temporary) MLflow store, and the champion gate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ridestream.registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTED_FROM,
    RegistryError,
    alias_version,
    promote,
    rollback,
)
from ridestream.settings import Settings
from ridestream.tlc import month_file
from ridestream.tracking import mlflow_client
from tests.conftest import TRAIN_SAMPLE, mlflow_settings
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
            "valid_metered_rmse",
            "valid_no_rate_code_mae",
            "baseline_linear_metered_rmse",
        ):
            assert metric in run.data.metrics
        metered = result.extra["segments"]["metered"]
        assert metered["model"]["rides"] == metered["linear"]["rides"] > 0
        assert run.data.metrics["valid_metered_rmse"] == pytest.approx(metered["model"]["rmse"])
        assert run.data.tags["train_rows"] == str(TRAIN_SAMPLE)
        assert len(run.data.tags["train_fingerprint"]) == 64
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
        # Drift has a reference for every feature the model reads but the time index.
        assert set(profile["features"]) == set(SPECS[result.target].features) - {"app_fare_day"}
        model = mlflow.models.get_model_info(f"models:/{result.model_name}/1")
        assert model.signature is not None
        assert model.saved_input_example_info is not None


def test_models_beat_the_baselines_even_on_a_sample(
    trained: tuple[Settings, list[TrainResult]],
) -> None:
    _, results = trained
    by_target = {r.target: r for r in results}
    assert by_target["duration"].metrics["rmse"] < by_target["duration"].baselines["linear"]["rmse"]
    assert by_target["cost"].metrics["rmse"] < by_target["cost"].baselines["linear"]["rmse"]
    assert by_target["tip"].metrics["mae"] < by_target["tip"].baselines["median_by_payment"]["mae"]


def train_simple(settings: Settings, **spec_changes: Any) -> TrainResult:
    spec = dataclasses.replace(SPECS["simple"], **spec_changes)
    [result] = train_models(
        settings, ["simple"], month_file("2023-01"), month_file("2023-02"),
        sample=3000, progress=False, specs={"simple": spec},
    )  # fmt: skip
    return result


def test_a_worse_model_becomes_challenger_and_a_better_one_champion(tmp_path: Path) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    first = train_simple(settings, max_rounds=15)
    assert first.role == CHAMPION

    worse = train_simple(settings, max_rounds=2)  # two trees: clearly worse on the same rows
    assert worse.role == CHALLENGER
    assert worse.champion_before == first.version
    assert worse.metrics["rmse"] > (worse.champion_score or 0)
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
