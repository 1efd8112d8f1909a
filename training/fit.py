"""Fit one target's model on one training window, without looking at anything later.

The number of trees is chosen out of time *inside* the window: the model is first fitted on its
first 80% by pickup time with early stopping on the last 20%, then refitted on the whole window
with that many trees. Validation months (and the backtest's later folds) are never used to stop
early, so the figures they give are the figures of a model that never saw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm import tqdm

from ridestream.features import CATEGORICAL, DistancePrior, select
from ridestream.models import non_negative
from training.data import Split
from training.specs import TargetSpec

HOLDOUT_SHARE = 0.2


@dataclass(frozen=True)
class Fitted:
    """A trained booster with the distance prior it reads and what it was trained on."""

    spec: TargetSpec
    booster: lgb.Booster
    prior: DistancePrior
    rounds: int
    train_name: str

    def matrix(self, split: Split) -> np.ndarray:
        """The model's own input columns for a split (its prior applied)."""
        return select(self.prior.apply(split.features), self.spec.features)

    def predict(self, split: Split) -> np.ndarray:
        """Predictions for every ride of a split, floored at zero as services floor them."""
        return non_negative(np.asarray(self.booster.predict(self.matrix(split), num_threads=2)))


def _train(
    spec: TargetSpec,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    holdout: tuple[np.ndarray, np.ndarray] | None,
    progress: bool,
    desc: str,
) -> lgb.Booster:
    categorical = [name for name in spec.features if name in CATEGORICAL]
    dataset = lgb.Dataset(x, y, feature_name=list(spec.features), categorical_feature=categorical)
    extra: dict[str, Any] = {}
    callbacks: list[Any] = []
    if holdout is not None:
        extra = {"valid_sets": [lgb.Dataset(*holdout, reference=dataset)], "valid_names": ["tail"]}
        callbacks.append(lgb.early_stopping(spec.early_stopping, verbose=False))
    with tqdm(total=rounds, desc=desc, unit="tree", disable=not progress, leave=False) as bar:
        callbacks.append(lambda _env: bar.update(1))
        return lgb.train(spec.params, dataset, num_boost_round=rounds, callbacks=callbacks, **extra)


def fit(spec: TargetSpec, train: Split, *, progress: bool = False) -> Fitted:
    """Choose the number of trees on the window's own tail, then refit on all of it."""
    prior = DistancePrior.learn(train.features)
    x = select(prior.apply(train.features), spec.features)
    y = train.target(spec.target)
    tail = train.time_tail(HOLDOUT_SHARE)
    early = _train(
        spec, x[~tail], y[~tail], spec.max_rounds, (x[tail], y[tail]), progress,
        f"{spec.model_name}: trees",
    )  # fmt: skip
    rounds = max(early.best_iteration, 1)
    booster = _train(spec, x, y, rounds, None, progress, f"{spec.model_name}: refit")
    return Fitted(spec, booster, prior, rounds, train.name)
