"""Loading models for services from the real registry: native boosters, hot swap, lleaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ridestream.ml.features import FEATURES, build_features, select
from ridestream.ml.models import AliasedModel, ModelNotFoundError, load_version
from ridestream.ml.registry import CHALLENGER, CHAMPION, promote
from ridestream.ml.tlc import load_month, month_file
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import ModelSettings, Settings
from tests.conftest import mlflow_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    rides, _ = load_month(month_file("2023-02"))
    return build_features(rides.iloc[:2000])


def test_a_champion_loads_as_its_native_booster(
    trained: tuple[Settings, list[Any]], features: np.ndarray
) -> None:
    import lightgbm as lgb
    import mlflow.pyfunc

    settings, _ = trained
    model = AliasedModel(mlflow_client(settings.mlflow), "ride-cost", CHAMPION, settings.models)
    current = model.current
    assert current is not None
    assert isinstance(current.booster, lgb.Booster)
    assert (current.name, current.version, current.role) == ("ride-cost", "1", CHAMPION)
    predictions = current.predict(features)
    assert predictions.shape == (2000,)
    # The same numbers MLflow's generic pyfunc gives, without its wrapper on the hot path.
    pyfunc = mlflow.pyfunc.load_model("models:/ride-cost@champion")
    import pandas as pd

    assert current.prior is not None  # it reads the zone-pair distance prior of its run
    frame = pd.DataFrame(current.prior.apply(features)[:50], columns=list(current.features))
    expected = np.maximum(np.asarray(pyfunc.predict(frame)).ravel(), 0.0)  # services floor at 0
    np.testing.assert_allclose(predictions[:50], expected, rtol=1e-12)


def test_one_ride_alone_gets_what_it_gets_in_a_batch(
    trained: tuple[Settings, list[Any]], features: np.ndarray
) -> None:
    settings, _ = trained
    client = mlflow_client(settings.mlflow)
    for name in ("ride-duration", "ride-tip"):  # the tip: a rate model and its scale
        model = AliasedModel(client, name, CHAMPION, settings.models).current
        assert model is not None
        batch = model.predict(features[:200])
        alone = np.concatenate([model.predict(features[i : i + 1]) for i in range(200)])
        np.testing.assert_allclose(alone, batch, rtol=1e-12, atol=1e-12)


def test_a_missing_alias_is_an_error_only_when_required(
    trained: tuple[Settings, list[Any]],
) -> None:
    settings, _ = trained
    client = mlflow_client(settings.mlflow)
    with pytest.raises(ModelNotFoundError, match="@challenger"):
        AliasedModel(client, "ride-cost", CHALLENGER, settings.models)
    assert (
        AliasedModel(client, "ride-cost", CHALLENGER, settings.models, required=False).current
        is None
    )


def test_moving_the_alias_swaps_the_model_in_use(
    tmp_path: Path, features: np.ndarray, register_simple: Callable[..., str]
) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    v1 = register_simple(settings, max_rounds=20)
    v2 = register_simple(settings, max_rounds=3)  # a challenger with other predictions
    model = AliasedModel(client, "ride-duration-simple", CHAMPION, settings.models)
    before = model.current
    assert before is not None
    assert before.version == v1
    assert model.refresh() is False  # nothing moved

    promote(client, "ride-duration-simple", v2)
    assert model.refresh() is True
    after = model.current
    assert after is not None
    assert after.version == v2
    assert not np.allclose(before.predict(features), after.predict(features))
    np.testing.assert_array_equal(
        before.predict(features), before.predict(features)
    )  # the old one is intact

    # The background poller notices a move on its own.
    model.start_polling()
    try:
        promote(client, "ride-duration-simple", v1)
        deadline = time.monotonic() + 20
        while model.current.version != v1 and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.1)
        assert model.current.version == v1  # type: ignore[union-attr]
    finally:
        model.stop()


def test_the_tip_is_its_rate_times_its_expected_cost(
    trained: tuple[Settings, list[Any]], features: np.ndarray
) -> None:
    settings, _ = trained
    tip = load_version(mlflow_client(settings.mlflow), "ride-tip", "1", CHAMPION, settings.models)
    assert tip._scale is not None
    assert tip.prior is not None
    x = tip.prior.apply(features)
    rate = tip.booster.predict(select(x, tip.features))
    cost = tip._scale(select(x, tip.scale_features))
    np.testing.assert_allclose(tip.predict(features), np.maximum(rate * np.maximum(cost, 1.0), 0))
    assert 0.1 < np.median(rate[features[:, FEATURES.index("payment_type")] == 1]) < 0.3


@pytest.mark.parametrize("name", ["ride-duration-simple", "ride-tip"])
def test_the_lleaves_backend_predicts_what_the_booster_predicts(
    trained: tuple[Settings, list[Any]], tmp_path: Path, features: np.ndarray, name: str
) -> None:
    settings, _ = trained
    client = mlflow_client(settings.mlflow)
    booster = load_version(client, name, "1", CHAMPION, settings.models)
    compiled = load_version(
        client, name, "1", CHAMPION,
        ModelSettings(backend="lleaves", cache_dir=tmp_path / "compiled"),
    )  # fmt: skip
    assert compiled.backend == "lleaves"
    np.testing.assert_allclose(
        compiled.predict(features), booster.predict(features), rtol=1e-9, atol=1e-9
    )


def test_a_vanished_champion_alias_keeps_the_model_serving(
    trained: tuple[Settings, list[Any]], tmp_path: Path, register_simple: Callable[..., str]
) -> None:
    settings = mlflow_settings(tmp_path)
    client = mlflow_client(settings.mlflow)
    register_simple(settings, max_rounds=5)
    model = AliasedModel(client, "ride-duration-simple", CHAMPION, settings.models)
    client.delete_registered_model_alias("ride-duration-simple", CHAMPION)
    assert model.refresh() is False
    assert model.current is not None  # still serving the last champion


def test_a_registry_outage_is_an_error_not_a_missing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ridestream.ml.registry import alias_version
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MlflowException):
        alias_version(MlflowClient(tracking_uri=uri, registry_uri=uri), "ride-cost", CHAMPION)


def test_an_uncompiled_version_serves_on_its_booster_at_once_then_compiled(
    trained: tuple[Settings, list[Any]], tmp_path: Path, features: np.ndarray
) -> None:
    settings, _ = trained
    client = mlflow_client(settings.mlflow)
    compiled_settings = ModelSettings(backend="lleaves", cache_dir=tmp_path / "compiled")
    model = AliasedModel(client, "ride-duration-simple", CHAMPION, compiled_settings)
    first = model.current
    assert first is not None
    assert first.backend == "booster"  # nothing compiled in this cache yet
    assert model.compiling is not None
    model.compiling.join(timeout=600)
    swapped = model.current
    assert swapped is not None
    assert swapped.backend == "lleaves"
    assert swapped.version == first.version
    np.testing.assert_allclose(
        swapped.predict(features), first.predict(features), rtol=1e-9, atol=1e-9
    )
    # A second replica on this machine finds the compiled form and starts compiled.
    replica = AliasedModel(client, "ride-duration-simple", CHAMPION, compiled_settings)
    assert replica.current is not None
    assert replica.current.backend == "lleaves"
    assert replica.compiling is None
