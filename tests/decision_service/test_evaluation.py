"""Online evaluation: challenger comparisons, promotion through a real MLflow registry, the
report and its plot, and the retraining trigger's cooldown against Kestra's API contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from decision_service.evaluation import OnlineEvaluator, compare_challengers, report
from decision_service.metrics import DecisionMetrics
from decision_service.retrain import Retrainer
from ridestream.kestra import KestraClient
from ridestream.ml.registry import CHALLENGER, CHAMPION, alias_version, make_challenger, promote
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import DecisionSettings, EvaluationSettings, KestraSettings, Settings
from ridestream.store.decisions import DecisionStore
from tests.conftest import TRAINING_FLOW, mlflow_settings
from tests.helpers import wait_for
from tests.kestra_contract import KestraContract


def errors(rides: int, champion_sd: float, challenger_sd: float, seed: int = 3) -> pd.DataFrame:
    """Evaluated predictions of one target by a champion (v1) and a challenger (v2) whose errors
    are the same draws scaled, so their RMSEs stand exactly in the ratio of ``sd``s."""
    rng = np.random.default_rng(seed)
    actual = rng.uniform(5, 30, rides)
    noise = rng.normal(0, 1, rides)
    rows = []
    for version, role, sd in (("1", "champion", champion_sd), ("2", "challenger", challenger_sd)):
        predicted = actual + sd * noise
        rows += [
            {
                "ride_id": f"r{i}",
                "target": "duration",
                "model_name": "ride-duration",
                "model_version": version,
                "role": role,
                "predicted": predicted[i],
                "actual": actual[i],
                "evaluated_at_ms": 1000 + i,
            }
            for i in range(rides)
        ]
    return pd.DataFrame(rows)


def test_a_clearly_better_challenger_over_enough_rides_is_recommended() -> None:
    better = compare_challengers(errors(600, 4.0, 2.0), margin=0.05, min_rides=500)
    assert len(better) == 1
    comparison = better[0]
    assert (comparison.champion_version, comparison.challenger_version) == ("1", "2")
    assert comparison.rides == 600
    assert comparison.improvement == pytest.approx(0.5)
    assert comparison.recommend


@pytest.mark.parametrize(
    ("rides", "challenger_sd", "why"),
    [(100, 2.0, "too few rides"), (600, 3.9, "inside the margin"), (600, 6.0, "worse")],
)
def test_no_recommendation_without_enough_evidence(
    rides: int, challenger_sd: float, why: str
) -> None:
    (comparison,) = compare_challengers(errors(rides, 4.0, challenger_sd), 0.05, 500)
    assert not comparison.recommend, why


def test_comparison_uses_only_rides_both_models_predicted() -> None:
    frame = errors(600, 4.0, 2.0)
    # The challenger saw only the last 200 rides.
    frame = frame[
        (frame.role == "champion") | (frame.ride_id.isin([f"r{i}" for i in range(400, 600)]))
    ]
    (comparison,) = compare_challengers(frame, 0.05, 100)
    paired = frame[frame.ride_id.isin([f"r{i}" for i in range(400, 600)])]
    champion = paired[paired.role == "champion"]
    assert comparison.rides == 200
    assert comparison.champion_rmse == pytest.approx(
        np.sqrt(((champion.predicted - champion.actual) ** 2).mean())
    )


@pytest.fixture
def filled_store(tmp_path: Path) -> DecisionStore:
    """A store holding the evaluated predictions of ``errors(600, 4, 2)``."""
    store = DecisionStore(f"sqlite:///{tmp_path / 'decisions.db'}")
    frame = errors(600, 4.0, 2.0)
    with store.begin() as conn:
        for record in frame.to_dict(orient="records"):
            store.add_predictions(
                conn,
                [
                    {
                        "ride_id": record["ride_id"],
                        "target": "duration",
                        "model_name": "ride-duration",
                        "model_version": record["model_version"],
                        "role": record["role"],
                        "value": record["predicted"],
                        "source_event_time_ms": 0,
                        "pickup_time_ms": 0,
                        "predicted_at_ms": 0,
                        "stored_at_ms": 0,
                    }
                ],
            )
        store.add_actuals(
            conn,
            [
                {
                    "ride_id": r,
                    "duration": a,
                    "cost": 10.0,
                    "tip": 1.0,
                    "dropoff_time_ms": 0,
                    "event_time_ms": 0,
                    "stored_at_ms": 0,
                }
                for r, a in frame[frame.role == "champion"][["ride_id", "actual"]].itertuples(
                    index=False
                )
            ],
        )
        store.evaluate(conn, [f"r{i}" for i in range(600)], at_ms=5_000)
    return store


def test_auto_promotion_moves_the_champion_alias_in_the_registry(
    filled_store: DecisionStore, tmp_path: Path
) -> None:
    settings = mlflow_settings(
        tmp_path,
        decisions=DecisionSettings(
            home=tmp_path, evaluation=EvaluationSettings(auto_promote=True, promote_min_rides=500)
        ),
    )
    client = mlflow_client(settings.mlflow)
    client.create_registered_model("ride-duration")
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(2):
        client.create_model_version("ride-duration", source.as_uri())
    promote(client, "ride-duration", "1")
    make_challenger(client, "ride-duration", "2")

    metrics = DecisionMetrics()
    OnlineEvaluator(settings, filled_store, metrics).maybe_refresh(force=True)
    assert alias_version(client, "ride-duration", CHAMPION) == "2"
    assert alias_version(client, "ride-duration", CHALLENGER) is None
    total = metrics.registry.get_sample_value(
        "ridestream_online_evaluated",
        {"target": "duration", "model_version": "2", "role": "challenger", "scope": "total"},
    )
    assert total == 600


def champion_with_validation_mae(tmp_path: Path, mae: float) -> Settings:
    """A registry whose ride-duration champion (v1) logged ``mae`` at validation."""
    settings = mlflow_settings(tmp_path, decisions=DecisionSettings(home=tmp_path))
    client = mlflow_client(settings.mlflow)
    experiment = client.create_experiment("validation")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "valid_mae", mae)
    client.create_registered_model("ride-duration")
    client.create_model_version("ride-duration", (tmp_path / "model").as_uri(), run.info.run_id)
    promote(client, "ride-duration", "1")
    return settings


def test_online_error_above_the_validation_mae_triggers_retraining(
    filled_store: DecisionStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = champion_with_validation_mae(tmp_path, 1.0)  # the champion's MAE online is ~3.2
    evaluator = OnlineEvaluator(settings, filled_store, DecisionMetrics())

    # The registry is read off the loop: the first refresh only asks, a later one acts.
    evaluator.maybe_refresh(force=True)
    assert filled_store.last_retrain_ms() is None
    wait_for(lambda: all(f.done() for f in evaluator._validation.values()), 30, "the registry")
    evaluator.maybe_refresh(force=True)

    assert filled_store.last_retrain_ms() is not None
    assert "online error: ride-duration v1 MAE" in caplog.text


def test_champions_read_at_start_up_serve_the_first_check(
    filled_store: DecisionStore, tmp_path: Path
) -> None:
    settings = champion_with_validation_mae(tmp_path, 1.0)
    evaluator = OnlineEvaluator(settings, filled_store, DecisionMetrics())

    assert evaluator.prefetch().result(timeout=60) == {("ride-duration", "1"): 1.0}
    evaluator.maybe_refresh(force=True)

    assert filled_store.last_retrain_ms() is not None  # no second registry read waited for


def test_the_report_has_the_table_the_comparison_and_the_plot(
    filled_store: DecisionStore, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    result = report(filled_store, settings, tmp_path / "plots" / "errors.png")
    assert {(r["model_version"], r["count"]) for r in result["total"]} == {("1", 600), ("2", 600)}
    assert result["comparisons"][0]["recommend"]
    assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_retraining_goes_to_kestra_once_per_cooldown(filled_store: DecisionStore) -> None:
    with KestraContract() as kestra:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            kestra=KestraSettings(
                url=kestra.url, username=kestra.username, password=SecretStr(kestra.password)
            ),
        )
        with KestraClient(settings.kestra) as client:
            client.deploy_flow(TRAINING_FLOW.read_text())
        metrics = DecisionMetrics()
        retrainer = Retrainer(settings, filled_store, metrics)
        first = retrainer.trigger(
            "drift", "feature drift: PSI of trip_distance is 0.9", ["duration"]
        )
        again = retrainer.trigger(
            "drift", "feature drift: PSI of trip_distance is 1.1", ["duration"]
        )
        assert first is not None
        assert again is None
        assert list(kestra.executions) == [first]
        assert kestra.executions[first]["inputs"]["targets"] == "duration"
        assert (
            metrics.registry.get_sample_value(
                "ridestream_retrain_triggers_total", {"reason": "drift", "outcome": "cooldown"}
            )
            == 1
        )


def test_without_kestra_the_trigger_is_logged_and_remembered(
    filled_store: DecisionStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (
        Retrainer(settings, filled_store, DecisionMetrics()).trigger(
            "online_error", "online error: MAE 9 vs 3", ["cost"]
        )
        is None
    )
    assert "retraining would be triggered now (no Kestra configured)" in caplog.text
    assert filled_store.last_retrain_ms() is not None


def test_an_a_b_split_is_compared_on_each_versions_own_rides() -> None:
    frame = errors(1200, 4.0, 2.0)
    # Each ride answered by one version only, as the gateway's A/B split does.
    ab = frame[
        ((frame.role == "champion") & (frame.evaluated_at_ms % 2 == 0))
        | ((frame.role == "challenger") & (frame.evaluated_at_ms % 2 == 1))
    ]
    (comparison,) = compare_challengers(ab, margin=0.05, min_rides=500)
    assert not comparison.paired
    assert comparison.rides == 600
    champion = ab[ab.role == "champion"]
    assert comparison.champion_rmse == pytest.approx(
        np.sqrt(((champion.predicted - champion.actual) ** 2).mean())
    )
    assert comparison.recommend


def test_a_due_refresh_runs_off_the_decision_loop_and_one_at_a_time(
    filled_store: DecisionStore, tmp_path: Path
) -> None:
    settings = mlflow_settings(tmp_path, decisions=DecisionSettings(home=tmp_path))
    metrics = DecisionMetrics()
    evaluator = OnlineEvaluator(settings, filled_store, metrics, refresh_interval_s=0.0)
    evaluator.maybe_refresh()
    refreshing = evaluator._refreshing
    assert refreshing is not None
    evaluator.maybe_refresh()  # due again, but the first one may still run: not a second
    assert evaluator._refreshing is refreshing or refreshing.done()
    refreshing.result(timeout=60)
    labels = {"target": "duration", "model_version": "1", "role": "champion", "scope": "total"}
    assert metrics.registry.get_sample_value("ridestream_online_evaluated", labels) == 600
