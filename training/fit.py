"""Fit one target's model on one training window, without looking at anything later.

The number of trees is chosen out of time *inside* the window: the model is first fitted on its
first 80% by pickup time with early stopping on the last 20%, then refitted on the whole window
with that many trees. Validation months (and the backtest's later folds) are never used to stop
early, so the figures they give are the figures of a model that never saw them.

A spec with a ``scale`` (the tip) learns the target as a rate of another target's estimate:
the estimating model is fitted first (a fixed number of trees), its out-of-fold estimates of the
training rows become the rate's denominator and weights, and the answer is rate × estimate, as
``ridestream.ml.models`` serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import KFold
from tqdm import tqdm

from ridestream.ml.distance_prior import DistancePrior
from ridestream.ml.features import CATEGORICAL, select
from ridestream.ml.models import SCALE_FLOOR, LoadedModel, compose
from training.data import Split
from training.specs import TargetSpec

HOLDOUT_SHARE = 0.2
SCALE_FOLDS = 5


@dataclass(frozen=True)
class Fitted:
    """A trained booster with the distance prior it reads, its scale model if any, and what it
    was trained on."""

    spec: TargetSpec
    booster: lgb.Booster
    prior: DistancePrior
    rounds: int
    train_name: str
    scale: lgb.Booster | None = None

    def loaded(self, name: str = "fitted", version: str = "0") -> LoadedModel:
        """The model as services hold it: the same predict path, prior and scale."""
        return compose(name, version, "champion", self.booster, self.prior, self.scale)

    def matrix(self, split: Split) -> np.ndarray:
        """The booster's own input columns for a split (its prior applied)."""
        return select(self.prior.apply(split.features), self.spec.features)

    def predict(self, split: Split) -> np.ndarray:
        """Predictions for every ride of a split, exactly as a service makes them."""
        return self.loaded().predict(split.features)


def _train(
    spec: TargetSpec,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    *,
    weight: np.ndarray | None = None,
    holdout: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
    progress: bool = False,
    desc: str = "",
) -> lgb.Booster:
    categorical = [name for name in spec.features if name in CATEGORICAL]
    dataset = lgb.Dataset(
        x, y, weight=weight, feature_name=list(spec.features), categorical_feature=categorical
    )
    extra: dict[str, Any] = {}
    callbacks: list[Any] = []
    if holdout is not None:
        hx, hy, hw = holdout
        extra = {"valid_sets": [lgb.Dataset(hx, hy, weight=hw, reference=dataset)],
                 "valid_names": ["tail"]}  # fmt: skip
        callbacks.append(lgb.early_stopping(spec.early_stopping, verbose=False))
    with tqdm(total=rounds, desc=desc, unit="tree", disable=not progress, leave=False) as bar:
        callbacks.append(lambda _env: bar.update(1))
        return lgb.train(spec.params, dataset, num_boost_round=rounds, callbacks=callbacks, **extra)


def _scale(
    spec: TargetSpec, features: np.ndarray, train: Split, progress: bool
) -> tuple[lgb.Booster, np.ndarray]:
    """The scale model on the whole window, and out-of-fold estimates of its rows."""
    x, y = select(features, spec.features), train.target(spec.target)
    estimates = np.empty(len(y))
    for inside, outside in KFold(SCALE_FOLDS, shuffle=True, random_state=42).split(x):
        fold = _train(spec, x[inside], y[inside], spec.max_rounds)
        estimates[outside] = fold.predict(x[outside])
    booster = _train(spec, x, y, spec.max_rounds, progress=progress, desc="scale")
    return booster, np.maximum(estimates, SCALE_FLOOR)


def fit(spec: TargetSpec, train: Split, *, progress: bool = False) -> Fitted:
    """Choose the number of trees on the window's own tail, then refit on all of it."""
    prior = DistancePrior.learn(train.features)
    features = prior.apply(train.features)
    x, y = select(features, spec.features), train.target(spec.target)
    scale, weight = None, np.ones(len(y))
    if spec.scale is not None:
        scale, weight = _scale(spec.scale, features, train, progress)
        y = y / weight
    tail = train.time_tail(HOLDOUT_SHARE)
    early = _train(
        spec, x[~tail], y[~tail], spec.max_rounds, weight=weight[~tail],
        holdout=(x[tail], y[tail], weight[tail]), progress=progress,
        desc=f"{spec.model_name}: trees",
    )  # fmt: skip
    rounds = max(early.best_iteration, 1)
    booster = _train(
        spec, x, y, rounds, weight=weight, progress=progress, desc=f"{spec.model_name}: refit"
    )
    return Fitted(spec, booster, prior, rounds, train.name, scale)
