"""The months training and evaluation read, as feature matrices and targets, with a fingerprint of
each file so a model version names exactly the data it learned from.

A split holds every ride of its months that the label convention accepts
(``ridestream.ml.tlc.labelled_mask``): nothing a backend would publish is dropped for its features
(a zero or absurd distance stays in), only rides whose ground truth is broken. Its features are
``build_features``' own, before any distance prior (each model applies the prior it learned).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ridestream.ml.features import build_features
from ridestream.ml.tlc import MonthReport, load_month

# Target → the TLC column it is learned from.
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
    """Labelled rides of one or more months, with their features computed once for every target."""

    name: str
    rides: pd.DataFrame
    features: np.ndarray
    fingerprints: dict[str, str]  # file name → sha256
    reports: dict[str, MonthReport] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Labelled rides (after sampling)."""
        return len(self.rides)

    @property
    def files(self) -> list[str]:
        """The data files the split comes from."""
        return sorted(self.fingerprints)

    def target(self, name: str) -> np.ndarray:
        """The values of one target."""
        return self.rides[TARGET_COLUMNS[name]].to_numpy(dtype=np.float64)

    def window(self, start: str | pd.Timestamp, end: str | pd.Timestamp, name: str) -> Split:
        """The rides picked up in ``[start, end)``."""
        pickup = self.rides["pickup_time"]
        keep = ((pickup >= pd.Timestamp(start)) & (pickup < pd.Timestamp(end))).to_numpy()
        return replace(
            self, name=name, rides=self.rides[keep].reset_index(drop=True),
            features=self.features[keep],
        )  # fmt: skip

    def time_tail(self, share: float) -> np.ndarray:
        """A mask of the last ``share`` of the rides by pickup time (an out-of-time holdout)."""
        pickup = self.rides["pickup_time"].to_numpy()
        order = np.argsort(pickup, kind="stable")
        tail = np.zeros(len(pickup), dtype=bool)
        tail[order[int(len(pickup) * (1.0 - share)) :]] = True
        return tail


def load_split(paths: Path | list[Path], sample: int | None = None, seed: int = 42) -> Split:
    """Load and featurize the labelled rides of one or more months; ``sample`` keeps a random
    subset of each month (quick runs, tests)."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    frames, reports = [], {}
    for path in paths:
        rides, report = load_month(path)
        rides = rides[rides["labelled"]]
        if sample is not None and sample < len(rides):
            rides = rides.sample(sample, random_state=seed)
        frames.append(rides)
        reports[path.name] = report
    rides = pd.concat(frames).sort_values("pickup_time", kind="stable").reset_index(drop=True)
    return Split(
        "+".join(path.name for path in paths),
        rides,
        build_features(rides),
        {path.name: file_fingerprint(path) for path in paths},
        reports,
    )
