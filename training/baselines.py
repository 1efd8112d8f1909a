"""The baselines every model is reported against, computed in the same run on the same rows.

- ``linear``: the MLOps Zoomcamp course's model — one-hot pickup_dropoff pair plus trip distance
  (DictVectorizer) into a LinearRegression.
- ``median_by_payment``: the training median of the target per payment type (missing is a type).
- ``lightgbm_raw``: the model a newcomer writes in 20 lines: LightGBM (300 trees, 63 leaves) on
  ten raw columns (the eight TLC fields a ride starts with, the pickup's hour and weekday; zones
  as categories), L2 for duration and cost, L1 for the tip. Ours must beat it on every ride.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression


def _course_dicts(rides: pd.DataFrame) -> list[dict[str, object]]:
    pairs = rides["pickup_zone"].astype(str) + "_" + rides["dropoff_zone"].astype(str)
    return [
        {"PU_DO": pair, "trip_distance": distance}
        for pair, distance in zip(pairs, rides["trip_distance"].to_numpy(), strict=True)
    ]


def linear_baseline(train: pd.DataFrame, valid: pd.DataFrame, column: str) -> np.ndarray:
    """Validation predictions of the course's linear regression for one target column."""
    vectorizer = DictVectorizer()
    model = LinearRegression().fit(vectorizer.fit_transform(_course_dicts(train)), train[column])
    return np.asarray(model.predict(vectorizer.transform(_course_dicts(valid))))


def median_by_payment(train: pd.DataFrame, valid: pd.DataFrame, column: str) -> np.ndarray:
    """Validation predictions of the per-payment-type training median."""
    medians = train.groupby(_payment_key(train))[column].median()
    fallback = float(train[column].median())
    return _payment_key(valid).map(medians).fillna(fallback).to_numpy(dtype=np.float64)


def _payment_key(rides: pd.DataFrame) -> pd.Series:
    return rides["payment_type"].astype("float64").fillna(-1.0)


RAW_COLUMNS = (
    "pickup_zone", "dropoff_zone", "trip_distance", "passenger_count", "vendor_id", "rate_code",
    "payment_type", "trip_type",
)  # fmt: skip


def _raw_frame(rides: pd.DataFrame) -> pd.DataFrame:
    frame = rides[list(RAW_COLUMNS)].astype("float64")
    return frame.assign(
        hour=rides["pickup_time"].dt.hour, weekday=rides["pickup_time"].dt.day_of_week
    )


def lightgbm_raw(
    train: pd.DataFrame, valid: pd.DataFrame, column: str, objective: str = "regression"
) -> np.ndarray:
    """Validation predictions of the 20-line LightGBM (``objective`` "regression_l1" for MAE)."""
    params = {"objective": objective, "num_leaves": 63, "num_threads": 2, "seed": 42,
              "deterministic": True, "force_row_wise": True, "verbose": -1}  # fmt: skip
    dataset = lgb.Dataset(
        _raw_frame(train), train[column], categorical_feature=["pickup_zone", "dropoff_zone"]
    )
    booster = lgb.train(params, dataset, num_boost_round=300)
    return np.asarray(booster.predict(_raw_frame(valid)))
