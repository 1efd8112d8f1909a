"""The single-row fast path answers what the booster answers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from ridestream.ml.single_row import SingleRowPredictor


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take their learned branch
    y = np.nan_to_num(x[:, 0]) * 3 + np.nan_to_num(x[:, 1]) ** 2 + rng.normal(size=2000)
    data = lgb.Dataset(x, y, params={"verbose": -1})
    return lgb.train({"objective": "l1", "num_leaves": 15, "verbose": -1}, data, 40)


def test_every_row_alone_gets_the_boosters_own_answer(booster: lgb.Booster) -> None:
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(300, 6))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    one = SingleRowPredictor(booster, 6)
    expected = booster.predict(rows)
    got = np.array([one(rows[i : i + 1])[0] for i in range(len(rows))])
    np.testing.assert_array_equal(got, expected)
    assert one(rows[0]).shape == (1,)  # a flat row is one row too


def test_a_row_of_the_wrong_width_is_an_error(booster: lgb.Booster) -> None:
    with pytest.raises(ValueError, match="expected 6 features, got 5"):
        SingleRowPredictor(booster, 6)(np.zeros((1, 5)))
