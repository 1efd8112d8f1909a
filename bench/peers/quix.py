"""Running the Quix Streams peer (``quix_predictor.py``) from the main virtualenv.

The peer has a virtualenv of its own (``bench/peers/.venv``, made here from the pinned
``requirements.txt`` when missing or out of date). It gets the champion as a LightGBM model file
and the feature lookups as JSON, both exported from this side, and its feature function
(``ride_features.py``) is checked against ``ridestream.ml.features.build_features`` on real rides
before it runs: a peer that computed other features would be measuring another task.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from bench.peers.ride_features import ride_features, tables_from_payload
from ridestream.contracts.schemas import PREDICTION
from ridestream.ml.distance_prior import DistancePrior
from ridestream.ml.features import (
    FEATURES,
    build_features,
    holiday_dates,
    zone_tables,
)
from ridestream.ml.models import LoadedModel
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import Settings

PEERS = Path(__file__).resolve().parent
VENV = PEERS / ".venv"
REQUIREMENTS = PEERS / "requirements.txt"
SCHEMAS = PEERS.parent.parent / "schemas"


def peer_python() -> Path:
    """The peer's interpreter; its virtualenv is (re)made when the pinned requirements changed."""
    python, stamp = VENV / "bin" / "python", VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    base = shutil.which("python3")
    if base is None:
        raise RuntimeError("python3 is needed to make the Quix Streams peer's virtualenv")
    print(f"making the Quix Streams peer's virtualenv in {VENV} ...", flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted)
    return python


def tables_payload(prior: DistancePrior | None) -> dict[str, Any]:
    """The lookups of ``ridestream.ml.features`` and a model's distance prior as JSON (NaN as
    null; the prior's unknown pairs left out)."""
    borough, airport, yellow, _ = zone_tables()
    miles = prior.miles if prior is not None else np.full((1, 1), np.nan)

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values.tolist()]

    return {
        "borough": listed(borough),
        "airport": listed(airport),
        "yellow": listed(yellow),
        "holidays": [str(day) for day in holiday_dates().tolist()],
        "pair_miles": [
            [int(pu), int(do), float(miles[pu, do])] for pu, do in np.argwhere(~np.isnan(miles))
        ],
    }


def check_features(records: list[Mapping[str, Any]], prior: DistancePrior | None) -> int:
    """Fail unless the peer's per-ride features equal ``build_features`` (with the model's prior
    applied) on these decoded rides."""
    tables = tables_from_payload(tables_payload(prior))
    expected = build_features(pd.DataFrame(records))
    if prior is not None:
        expected = prior.apply(expected)
    theirs = np.array(
        [[ride_features(record, tables)[name] for name in FEATURES] for record in records]
    )
    for column, name in enumerate(FEATURES):
        if not np.array_equal(expected[:, column], theirs[:, column], equal_nan=True):
            row = int(
                np.flatnonzero(
                    ~np.isclose(expected[:, column], theirs[:, column], rtol=0, equal_nan=True)
                )[0]
            )
            raise RuntimeError(
                f"the peer's feature {name!r} differs from build_features on ride {row}: "
                f"{theirs[row, column]} != {expected[row, column]}"
            )
    return len(records)


def start_peer(
    settings: Settings,
    model: LoadedModel,
    input_topic: str,
    output_topic: str,
    group: str,
    workdir: Path,
    log: IO[bytes],
) -> subprocess.Popen[bytes]:
    """Start ``quix_predictor.py`` on ``input_topic`` (stop it with SIGTERM)."""
    python = peer_python()
    workdir.mkdir(parents=True, exist_ok=True)
    model_file, tables_file = workdir / "model.txt", workdir / "tables.json"
    model.booster.save_model(str(model_file))
    tables_file.write_text(json.dumps(tables_payload(model.prior)))
    command = [
        str(python), str(PEERS / "quix_predictor.py"),
        "--broker", settings.bootstrap_servers, "--input", input_topic, "--output", output_topic,
        "--group", group, "--model", str(model_file), "--tables", str(tables_file),
        "--schemas", str(SCHEMAS), "--model-version", model.version,
        "--prediction-header", SingleObjectSerde(PREDICTION).header.hex(),
        "--state-dir", str(workdir / "state"),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
