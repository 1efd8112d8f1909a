"""Scores on what the stream carries: every labelled ride, with the segments beside it.

The headline of every report (training's table, MLflow, the gate, the backtest) is all labelled
rides of the period. Beside it, per segment: the cleaned subset the first models were reported
on, rides without a usable distance, rides with an absurd one, and the three ways a ride is
priced (metered street hails, negotiated fares, app-dispatched rides that come without a rate
code), where errors differ by an order of magnitude.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ridestream.ml.features import MAX_PLAUSIBLE_MILES
from ridestream.ml.scoring import regression_metrics

ALL = "all"


def segments(rides: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of the reported segments of a frame of rides."""
    distance = rides["trip_distance"].astype("float64").to_numpy()
    rate_code = rides["rate_code"].astype("float64").to_numpy()
    return {
        "cleaned": rides["cleaned"].to_numpy(dtype=bool),
        "no_distance": ~(distance > 0),  # zero or missing
        "far": distance > MAX_PLAUSIBLE_MILES,
        "app_dispatched": np.isnan(rate_code),
        "negotiated": rate_code == 5,
        "metered": rate_code == 1,
    }


def scores(
    rides: pd.DataFrame, actual: np.ndarray, predicted: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """Population (``all``, then each segment) → model → RMSE, MAE, R² and rides."""
    populations = {ALL: np.ones(len(rides), dtype=bool), **segments(rides)}
    result: dict[str, dict[str, dict[str, float]]] = {}
    for population, mask in populations.items():
        if mask.any():
            result[population] = {
                model: {**regression_metrics(actual[mask], values[mask]), "rides": int(mask.sum())}
                for model, values in predicted.items()
            }
    return result
