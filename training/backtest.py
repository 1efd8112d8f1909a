"""Rolling-origin backtest: how the recipe does on periods later than anything it trained on.

The months are put end to end and cut at every origin (each month's 1st and 15th after the first
two weeks). Each origin trains one model per target on everything before it (expanding window,
its trees chosen on its own tail: ``training.fit``) and scores it, on every labelled ride,
against the 20-line baseline trained on the same rows:

- **next**: the half month after its origin (how the recipe does on fresh data);
- **month**: a whole later month, for origins on a month boundary (what ``ridestream train``
  reports, counted by pickup time here);
- **stale**: the half month *after the next one*, i.e. the same model used half a month
  longer. Set against the next origin's ``next`` row on the same rides, it says whether refitting
  on the latest data pays: the question behind training the serving model on every month up to
  the last one.

Nothing here is registered; the results go to the table, JSON and an MLflow run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ridestream.ml.scoring import regression_metrics
from training.baselines import lightgbm_raw
from training.data import TARGET_COLUMNS, Split
from training.evaluate import segments
from training.fit import fit
from training.specs import TargetSpec


@dataclass(frozen=True)
class Window:
    """A scored period: the model trained before ``origin`` on ``test``."""

    kind: str  # next | month | stale
    origin: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def name(self) -> str:
        """``train <first day>–<origin> → test <start>–<end>`` in days."""
        last = self.end - pd.Timedelta(days=1)
        return f"→{self.origin:%b %d}, test {self.start:%b %d}–{last:%b %d}"


@dataclass(frozen=True)
class FoldScore:
    """One window, one target: the recipe's and the baseline's error."""

    window: str
    kind: str
    test: str  # the scored period, "<first day>/<day after the last>"
    target: str
    metric: str
    rides: int
    model: float
    baseline: float
    no_distance: float
    trees: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def span(split: Split) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first day of the split's first month and the end of its last one. TLC files hold a
    few pickups from other years (2009, late reports): quantiles keep them from moving it."""
    pickups = split.rides["pickup_time"]
    low, high = pickups.quantile([0.001, 0.999])
    first = pd.Timestamp(low).to_period("M").to_timestamp()
    last = pd.Timestamp(high).to_period("M").to_timestamp()
    return first, last + pd.offsets.MonthBegin(1)


def origins(split: Split) -> list[pd.Timestamp]:
    """Every month's 1st and 15th after the data's first two weeks, before its last day."""
    first, end = span(split)
    last = end - pd.Timedelta(days=1)
    points = []
    month = first
    while month <= last:
        points += [month, month + pd.Timedelta(days=14)]
        month += pd.offsets.MonthBegin(1)
    return [p for p in points if first + pd.Timedelta(days=14) <= p < last]


def windows(split: Split) -> list[Window]:
    """The scored windows of every origin (see the module's docstring)."""
    cuts = origins(split)
    bounds = [*cuts, span(split)[1]]
    result = []
    for i, origin in enumerate(cuts):
        result.append(Window("next", origin, origin, bounds[i + 1]))
        if origin.day == 1:
            result.append(Window("month", origin, origin, origin + pd.offsets.MonthBegin(1)))
        if i + 2 < len(bounds):
            result.append(Window("stale", origin, bounds[i + 1], bounds[i + 2]))
    return result


def backtest(
    split: Split, specs: dict[str, TargetSpec], targets: list[str], *, progress: bool = True
) -> list[FoldScore]:
    """Score every target's recipe on every window of the split's months."""
    first = span(split)[0]
    plan = windows(split)
    scores: list[FoldScore] = []
    for origin in tqdm(origins(split), desc="backtest origins", disable=not progress):
        train = split.window(first, origin, f"→{origin:%Y-%m-%d}")
        for target in targets:
            spec = specs[target]
            fitted = fit(spec, train)
            for window in (w for w in plan if w.origin == origin):
                test = split.window(window.start, window.end, window.name)
                scores.append(_score(spec, fitted, train, test, window))
    return scores


def _score(spec: TargetSpec, fitted: Any, train: Split, test: Split, window: Window) -> FoldScore:
    column = TARGET_COLUMNS[spec.target]
    actual = test.target(spec.target)
    predicted = fitted.predict(test)
    objective = "regression_l1" if spec.gate_metric == "mae" else "regression"
    baseline = lightgbm_raw(train.rides, test.rides, column, objective)
    no_distance = segments(test.rides)["no_distance"]
    metric = spec.gate_metric
    return FoldScore(
        window=window.name,
        kind=window.kind,
        test=f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}",
        target=spec.target,
        metric=metric,
        rides=test.rows,
        model=regression_metrics(actual, predicted)[metric],
        baseline=regression_metrics(actual, baseline)[metric],
        no_distance=regression_metrics(actual[no_distance], predicted[no_distance])[metric]
        if no_distance.any()
        else float("nan"),
        trees=fitted.rounds,
    )


def refit_gains(scores: list[FoldScore]) -> dict[str, list[float]]:
    """Per target, how much lower (share) the error of a model refitted at the latest origin is
    than the same recipe's half-month-older model, on the same rides."""
    fresh = {(s.target, s.test): s.model for s in scores if s.kind == "next"}
    gains: dict[str, list[float]] = {}
    for s in scores:
        if s.kind == "stale":
            key = (s.target, s.test)
            if key in fresh:
                gains.setdefault(s.target, []).append(1.0 - fresh[key] / s.model)
    return gains


def table(scores: list[FoldScore]) -> str:
    """The backtest as a Markdown table, then the refit verdict per target."""
    lines = [
        "| window | kind | target | rides | metric | ours | 20-line LightGBM | ours, no distance | trees |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for s in scores:
        lines.append(
            f"| {s.window} | {s.kind} | {s.target} | {s.rides:,} | {s.metric.upper()} "
            f"| {s.model:.3f} | {s.baseline:.3f} | {s.no_distance:.3f} | {s.trees} |"
        )
    lines.append("")
    for target, gains in refit_gains(scores).items():
        shares = ", ".join(f"{g:+.1%}" for g in gains)
        verdict = "refit pays" if gains and np.mean(gains) > 0 else "refit does not pay"
        lines.append(
            f"- {target}: refitted at the latest origin vs half a month older: {shares} ({verdict})"
        )
    return "\n".join(lines)
