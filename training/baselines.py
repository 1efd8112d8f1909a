"""The baselines every model is reported against, computed in the same run on the same rows.

- ``linear``: the MLOps Zoomcamp course's model — one-hot pickup_dropoff pair plus trip distance
  (DictVectorizer) into a LinearRegression.
- ``median_by_payment``: the training median of the target per payment type (missing is a type).
"""

from __future__ import annotations

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
