"""Score a whole file offline with the stream's features and the champion models.

The file is read and written in chunks (pyarrow record batches in, a ParquetWriter out), so memory
stays flat however large it is. Input is a TLC trip file (its own column names) or a file of ride
columns (``ridestream.ml.features.RIDE_COLUMNS``); the output is the input plus one prediction column
and one model-version column per target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ridestream.contracts.events import TARGETS
from ridestream.ml.features import RIDE_COLUMNS, build_features
from ridestream.ml.models import LoadedModel, ModelNotFoundError, load_version
from ridestream.ml.registry import CHAMPION, MODEL_NAMES, alias_version
from ridestream.ml.tlc import is_raw_tlc, rides_from_raw
from ridestream.ml.tracking import mlflow_client
from ridestream.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did."""

    input: str
    output: str
    rows: int
    chunks: int
    versions: dict[str, str]


def champion_models(
    settings: Settings, client: Any | None = None, threads: int = 0
) -> dict[str, LoadedModel]:
    """The champion of every streamed target (duration, cost, tip); threads=0: every core."""
    client = client or mlflow_client(settings.mlflow)
    models: dict[str, LoadedModel] = {}
    for target in TARGETS:
        name = MODEL_NAMES[target]
        version = alias_version(client, name, CHAMPION)
        if version is None:
            raise ModelNotFoundError(f"{name} has no @champion: run `ridestream train` first")
        models[target] = load_version(
            client, name, version, CHAMPION, settings.models, threads=threads
        )
    return models


def predictions(frame: pd.DataFrame, models: dict[str, LoadedModel]) -> dict[str, np.ndarray]:
    """``predicted_<target>`` for a frame of TLC or ride columns."""
    rides = rides_from_raw(frame) if is_raw_tlc(frame) else frame
    missing = [c for c in RIDE_COLUMNS if c not in rides.columns]
    if missing:
        raise ValueError(f"input lacks ride columns {missing} (and is not a TLC trip file)")
    features = build_features(rides)
    return {f"predicted_{target}": model.predict(features) for target, model in models.items()}


def output_schema(source: pa.Schema, models: dict[str, LoadedModel]) -> pa.Schema:
    """The input's schema plus a prediction and a version column per target, versions in metadata."""
    fields = [*source]
    for target in models:
        fields += [
            pa.field(f"predicted_{target}", pa.float64()),
            pa.field(f"{target}_model_version", pa.string()),
        ]
    metadata = {
        **(source.metadata or {}),
        **{f"ridestream.{t}": f"{m.name}@{m.version}" for t, m in models.items()},
    }
    return pa.schema(fields, metadata=metadata)


def score_file(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    *,
    chunk_rows: int = 50_000,
    progress: bool = True,
    models: dict[str, LoadedModel] | None = None,
) -> ScoreSummary:
    """Score ``input_path`` chunk by chunk into ``output_path`` (Parquet).

    The input's columns are carried over as Arrow read them (no pandas round trip), so every
    chunk has the same types and the output file is valid even for an empty input.
    """
    models = models or champion_models(settings)
    source = pq.ParquetFile(input_path)
    schema = output_schema(source.schema_arrow, models)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        rows, chunks = _write(source, output_path, schema, models, chunk_rows, progress)
    except BaseException:
        output_path.unlink(missing_ok=True)  # no half-scored file that looks finished
        raise
    return ScoreSummary(
        str(input_path), str(output_path), rows, chunks, {t: m.version for t, m in models.items()}
    )


def _write(
    source: pq.ParquetFile,
    output_path: Path,
    schema: pa.Schema,
    models: dict[str, LoadedModel],
    chunk_rows: int,
    progress: bool,
) -> tuple[int, int]:
    rows = chunks = 0
    with (
        pq.ParquetWriter(output_path, schema) as writer,
        tqdm(
            total=source.metadata.num_rows, unit="ride", desc="score", disable=not progress
        ) as bar,
    ):
        for batch in source.iter_batches(batch_size=chunk_rows):
            columns = predictions(batch.to_pandas(), models)
            arrays = list(batch.columns)
            for target, model in models.items():
                arrays += [
                    pa.array(columns[f"predicted_{target}"]),
                    pa.array([model.version] * batch.num_rows),
                ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += batch.num_rows
            chunks += 1
            bar.update(batch.num_rows)
    return rows, chunks
