"""Batch scoring: the same features and champion models, chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.score import champion_models, score_file
from ridestream.ml.features import RIDE_COLUMNS, build_features
from ridestream.ml.tlc import load_raw, month_file
from ridestream.settings import Settings
from training.train import TrainResult

pytestmark = pytest.mark.slow


def test_scoring_a_tlc_file_equals_the_models_predictions(
    trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    settings, _ = trained
    source = tmp_path / "rides.parquet"
    pd.read_parquet(month_file("2023-02")).head(12_345).to_parquet(source)
    output = tmp_path / "scored.parquet"
    summary = score_file(settings, source, output, chunk_rows=5000, progress=False)
    assert (summary.rows, summary.chunks) == (12_345, 3)

    scored = pd.read_parquet(output)
    models = champion_models(settings, threads=1)
    features = build_features(load_raw(source))
    for target, model in models.items():
        np.testing.assert_allclose(
            scored[f"predicted_{target}"], model.predict(features), rtol=1e-12
        )
        assert set(scored[f"{target}_model_version"]) == {model.version}
    metadata = pq.read_schema(output).metadata
    assert metadata[b"ridestream.duration"] == b"ride-duration@1"


def test_ride_columns_score_the_same_as_the_tlc_file(
    trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    settings, _ = trained
    raw_file, ride_file = tmp_path / "raw.parquet", tmp_path / "rides.parquet"
    raw = pd.read_parquet(month_file("2023-02")).head(500)
    raw.to_parquet(raw_file)
    load_raw(raw_file)[list(RIDE_COLUMNS)].to_parquet(ride_file)
    score_file(settings, raw_file, tmp_path / "a.parquet", progress=False)
    score_file(settings, ride_file, tmp_path / "b.parquet", progress=False)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    for target in ("duration", "cost", "tip"):
        np.testing.assert_array_equal(a[f"predicted_{target}"], b[f"predicted_{target}"])


def test_a_file_without_ride_columns_is_refused_with_what_is_missing(
    trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    settings, _ = trained
    source = tmp_path / "odd.parquet"
    pd.DataFrame(
        {"pickup_time": pd.to_datetime(["2023-02-01"]), "trip_distance": [1.0]}
    ).to_parquet(source)
    with pytest.raises(ValueError, match="lacks ride columns"):
        score_file(settings, source, tmp_path / "out.parquet", progress=False)


def test_chunks_with_and_without_nulls_write_one_valid_file(
    trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    settings, _ = trained
    raw = pd.read_parquet(month_file("2023-02"))
    # First chunk without any missing payment type, second with: the types must not drift.
    complete = raw[raw["payment_type"].notna()].head(300)
    partial = raw[raw["payment_type"].isna()].head(300)
    source = tmp_path / "mixed.parquet"
    pd.concat([complete, partial]).to_parquet(source)
    output = tmp_path / "scored.parquet"
    summary = score_file(settings, source, output, chunk_rows=300, progress=False)
    assert (summary.rows, summary.chunks) == (600, 2)
    scored = pd.read_parquet(output)
    assert scored["payment_type"].isna().sum() == 300
    assert scored["predicted_tip"].notna().all()


def test_an_empty_input_gives_an_empty_but_valid_output(
    trained: tuple[Settings, list[TrainResult]], tmp_path: Path
) -> None:
    settings, _ = trained
    source = tmp_path / "empty.parquet"
    pd.read_parquet(month_file("2023-02")).head(0).to_parquet(source)
    summary = score_file(settings, source, tmp_path / "out.parquet", progress=False)
    assert summary.rows == 0
    assert "predicted_cost" in pq.read_schema(tmp_path / "out.parquet").names
