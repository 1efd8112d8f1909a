"""Regression metrics and the label convention, shared by training (offline) and the decision
service (online), so both score the same population."""

from __future__ import annotations

import numpy as np

# The label convention: a ride's ground truth is scored (and learned from) only when its duration
# lies within 1-60 minutes and its cost is positive. Everything else still gets predictions;
# only its recorded outcome is not trusted (forgotten meters, voids, refunds).
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0


def labelled(duration: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Where ground truth obeys the label convention."""
    duration, cost = np.asarray(duration, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    return np.asarray((duration >= MIN_MINUTES) & (duration <= MAX_MINUTES) & (cost > 0))


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² of predictions against actual values."""
    actual = np.asarray(actual, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - actual
    spread = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - float(np.sum(error**2)) / spread if spread > 0 else float("nan"),
    }
