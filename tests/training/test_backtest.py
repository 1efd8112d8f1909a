"""The rolling-origin backtest: its windows never look back, and it scores what it says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ridestream.ml.tlc import month_file
from training.backtest import backtest, origins, refit_gains, table, windows
from training.data import Split, load_split
from training.specs import SPECS


@pytest.fixture(scope="module")
def months() -> Split:
    return load_split([month_file("2023-01"), month_file("2023-02")], sample=2500)


def test_origins_are_every_1st_and_15th_after_two_weeks(months: Split) -> None:
    assert origins(months) == [
        pd.Timestamp("2023-01-15"), pd.Timestamp("2023-02-01"), pd.Timestamp("2023-02-15"),
    ]  # fmt: skip


def test_every_window_scores_only_what_comes_after_its_origin(months: Split) -> None:
    plan = windows(months)
    assert {w.kind for w in plan} == {"next", "month", "stale"}
    for window in plan:
        assert window.origin <= window.start < window.end
    month = [w for w in plan if w.kind == "month"]
    assert [(w.start, w.end) for w in month] == [
        (pd.Timestamp("2023-02-01"), pd.Timestamp("2023-03-01"))
    ]
    # Each stale window is the next origin's fresh one: the refit comparison is on the same rides.
    fresh = {(w.start, w.end) for w in plan if w.kind == "next"}
    assert all((w.start, w.end) in fresh for w in plan if w.kind == "stale")


def test_the_backtest_scores_each_window_against_the_baseline(months: Split) -> None:
    spec = dataclasses.replace(SPECS["simple"], max_rounds=30)
    scores = backtest(months, {"simple": spec}, ["simple"], progress=False)
    assert len(scores) == len(windows(months))
    for score in scores:
        test = months.window(*score.test.split("/"), "test")
        assert score.rides == test.rows > 0
        assert 0 < score.model < 30
        assert 0 < score.baseline < 30
        assert score.trees <= 30
    assert set(refit_gains(scores)) == {"simple"}
    text = table(scores)
    assert text.count("| simple |") == len(scores)
    assert "refit" in text


def test_the_time_tail_is_the_latest_rides(months: Split) -> None:
    tail = months.time_tail(0.2)
    assert tail.sum() == pytest.approx(0.2 * months.rows, abs=1)
    pickups = months.rides["pickup_time"].to_numpy()
    assert pickups[tail].min() >= pickups[~tail].max()
    assert np.array_equal(tail, months.time_tail(0.2))
