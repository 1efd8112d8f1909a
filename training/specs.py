"""What each target's model is: its features, LightGBM parameters and how it is judged.

Chosen by the rolling-origin backtest (``ridestream train --backtest``, ``training.backtest``) on
every labelled ride, and by prediction cost: the predictors score every ride on one thread, so
each model's trees are capped (``python -m bench.predict`` measures them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ridestream.ml.features import FEATURES, SIMPLE_FEATURES, TREND_FEATURES
from ridestream.ml.registry import MODEL_NAMES

COMMON_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_cat_to_onehot": 4,
    "cat_smooth": 10,
    "num_threads": 2,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@dataclass(frozen=True)
class TargetSpec:
    """How one target is learned and judged."""

    target: str
    features: tuple[str, ...]
    params: dict[str, Any]
    max_rounds: int = 3000
    early_stopping: int = 100
    gate_metric: str = "rmse"  # the champion gate compares this validation metric (lower wins)
    # When set, the model learns the target as a rate of this other target's estimate (see the
    # tip's spec), and answers rate × estimate; the estimating model travels with it.
    scale: TargetSpec | None = None

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return MODEL_NAMES[self.target]

    @property
    def objective(self) -> str:
        """LightGBM's objective (the 20-line baseline is fitted with the matching L2 or L1)."""
        return str(self.params["objective"])


# The cost recipe's parameters, for the cost model and for the tip's smaller cost model alike.
COST_PARAMS: dict[str, Any] = {
    **COMMON_PARAMS,
    "objective": "huber",
    "alpha": 20.0,
    "learning_rate": 0.1,
    "num_leaves": 63,
    "min_data_in_leaf": 50,
    "max_bin": 1023,
}

# Every feature but the app-fare time index (see ridestream.ml.features.TREND_FEATURES): a ride's
# duration and tip do not follow a platform's price list.
RIDE_FEATURES = tuple(name for name in FEATURES if name not in TREND_FEATURES)

SPECS: dict[str, TargetSpec] = {
    # Huber keeps the few wild rides (negotiated fares, GPS glitches) from steering the trees;
    # capped at 300 trees, where the backtest's error has flattened.
    "duration": TargetSpec(
        "duration",
        RIDE_FEATURES,
        {
            **COMMON_PARAMS,
            "objective": "huber",
            "alpha": 10.0,
            "learning_rate": 0.05,
            "num_leaves": 127,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.8,
        },
        max_rounds=300,
    ),
    # Every feature, the app-fare time index included: app-dispatched prices drift month to month.
    "cost": TargetSpec(
        "cost",
        FEATURES,
        COST_PARAMS,
        # The backtest's error has flattened by 260 trees, and prediction cost grows with each.
        max_rounds=260,
    ),
    # The tip is judged on MAE (cash tips are zero: a median-like fit is what helps a rider
    # quote). Card tips are a share of the fare, so the model learns that share, weighted by the
    # ride's expected cost (the weighted L1 of the share *is* the tip's L1), and answers share ×
    # expected cost: learned directly, it did no better than a 20-line baseline (docs/models.md).
    # The cost estimate is a smaller cost model of its own (150 trees, out-of-fold for the
    # training rows), so the two boosters together hold about the trees the direct model had.
    "tip": TargetSpec(
        "tip",
        RIDE_FEATURES,
        {
            **COMMON_PARAMS,
            "objective": "regression_l1",
            "learning_rate": 0.1,
            "num_leaves": 63,
            "min_data_in_leaf": 40,
        },
        max_rounds=250,
        gate_metric="mae",
        scale=TargetSpec("cost", FEATURES, COST_PARAMS, max_rounds=150),
    ),
    # The gateway's model: six features, 15 leaves, at most 80 trees: microseconds per ride.
    "simple": TargetSpec(
        "simple",
        SIMPLE_FEATURES,
        {**COMMON_PARAMS, "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 50},
        max_rounds=80,
        early_stopping=20,
    ),
}
