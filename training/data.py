"""The training and validation months as feature matrices and targets, with a fingerprint of each
file so a model version names exactly the data it learned from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ridestream.features import build_features
from ridestream.tlc import CleaningReport, load_month

# Target → the cleaned TLC column it is learned from.
TARGET_COLUMNS = {
    "duration": "duration_minutes",
    "cost": "cost",
    "tip": "tip_amount",
    "simple": "duration_minutes",
}


def file_fingerprint(path: Path) -> str:
    """sha256 of a data file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """One month, cleaned, with its features computed once for every target."""

    path: Path
    rides: pd.DataFrame
    features: np.ndarray
    cleaning: CleaningReport
    fingerprint: str

    @property
    def rows(self) -> int:
        """Rows after cleaning (and sampling)."""
        return len(self.rides)

    def target(self, name: str) -> np.ndarray:
        """The values of one target."""
        return self.rides[TARGET_COLUMNS[name]].to_numpy(dtype=np.float64)


def load_split(path: Path, sample: int | None = None, seed: int = 42) -> Split:
    """Load, clean and featurize a month; ``sample`` keeps a random subset (quick runs, tests)."""
    rides, report = load_month(path)
    if sample is not None and sample < len(rides):
        rides = (
            rides.sample(sample, random_state=seed)
            .sort_values("pickup_time")
            .reset_index(drop=True)
        )
    return Split(path, rides, build_features(rides), report, file_fingerprint(path))
