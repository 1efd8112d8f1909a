"""The one feature function: training, batch scoring, the predictors and the gateway all call it,
so there is no train/serve skew by construction.

It is vectorized over a batch with numpy (no per-row Python) and takes either a DataFrame or a
mapping of columns (lists or arrays), so a single gateway request and a decoded Kafka batch go
through the same code as a training month. What real events carry is handled here: missing
passenger count, rate code, payment type or trip type become NaN (LightGBM routes missing values
itself), zones outside the TLC lookup become NaN, and any pickup time yields an hour and weekday.

An estimated distance that is missing, zero or implausible (above ``MAX_PLAUSIBLE_MILES``) is
*unknown*: ``trip_distance`` is NaN for it, and the model answers from what it does know, instead
of reading a 0 as a one-minute ride (docs/models.md). Two more columns carry the zone pair's
typical distance, ``pair_distance``, and ``distance_estimate`` (the ride's own distance when known,
else the pair's). The pair's distance is learned from training data (:class:`DistancePrior`) and
travels with each model as an artifact: ``build_features`` leaves ``pair_distance`` NaN and the
model's prior fills both columns (:meth:`DistancePrior.apply`) just before it predicts, in
training and serving alike.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import cache
from typing import Any

import holidays
import numpy as np
import pandas as pd

from ridestream.ml.tlc import DATA_DIR

# The input columns: what a RideStarted carries about the ride.
RIDE_COLUMNS = (
    "pickup_time", "pickup_zone", "dropoff_zone", "trip_distance", "passenger_count",
    "vendor_id", "rate_code", "payment_type", "trip_type",
)  # fmt: skip

FEATURES = (
    "trip_distance",
    "pickup_zone",
    "dropoff_zone",
    "pickup_borough",
    "dropoff_borough",
    "same_zone",
    "same_borough",
    "airport_trip",
    "pickup_hour",
    "day_of_week",
    "is_weekend",
    "passenger_count",
    "vendor_id",
    "rate_code",
    "payment_type",
    "trip_type",
    "holiday",
    "missing_info",
    "peak",
    "overnight",
    "congestion",
    "app_fare_day",
    "pair_distance",
    "distance_estimate",
)
# Bumped whenever a feature's meaning changes: a model version tagged with another feature set
# (``feature_set``) was trained on other semantics, and the demo and benchmarks retrain it.
# 2: missing, zero and implausible distances are unknown; the zone-pair distance prior.
FEATURE_SET = "2"
# Distances filled in from a model's DistancePrior (NaN / the known distance until then).
PRIOR_FEATURES = ("pair_distance", "distance_estimate")
# An estimate above this many miles is taken as unknown: NYC's longest 1-hour taxi rides (to the
# far end of Long Island or New Jersey) stay well under it, while the TLC files hold 37-38 rides
# a month with estimates of 100 to 180,000 miles.
MAX_PLAUSIBLE_MILES = 100.0
# A time index: the pickup's day (days since 1970, fractional) for app-dispatched rides, NaN for
# metered and negotiated ones. Metered fares follow the TLC's rate card; app-dispatched rides are
# priced by their platform, and that price drifts: their median price per mile went from $6.63 in
# January 2023 (already $5.77 in its last days) to $4.99 in February. With this column the trees
# carry the latest level they saw forward (beyond the training range a tree answers with its last
# split), which cut the cost model's February RMSE on those rides from -13% to -34% against the
# linear baseline. Only the cost model reads it; its live values lie past the training range by
# design, so drift (PSI) leaves it out.
TREND_FEATURES = ("app_fare_day",)
# Integer codes LightGBM should split as categories, not as ordered numbers.
CATEGORICAL = (
    "pickup_zone", "dropoff_zone", "pickup_borough", "dropoff_borough",
    "vendor_id", "rate_code", "payment_type", "trip_type",
)  # fmt: skip
# The gateway's small model: a handful of cheap, always-present features.
SIMPLE_FEATURES = (
    "distance_estimate",
    "pickup_hour",
    "day_of_week",
    "pickup_borough",
    "dropoff_borough",
    "airport_trip",
)

ZONE_COUNT = 265
AIRPORT_ZONES = (1, 132, 138)  # Newark, JFK, LaGuardia


HOLIDAY_YEARS = range(2009, 2041)  # the TLC's records start in 2009


@cache
def holiday_dates() -> np.ndarray:
    """US federal holidays (observed days included), from the `holidays` package."""
    return np.array(
        sorted(holidays.country_holidays("US", years=HOLIDAY_YEARS)), dtype="datetime64[D]"
    )


@cache
def zone_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Per LocationID: borough code, airport flag, and whether it is a TLC "Yellow Zone" (Manhattan
    below E 96th / W 110th, where the congestion surcharge applies). Unknown ids map to NaN / 0."""
    borough = np.full(ZONE_COUNT + 1, np.nan)
    airport = np.zeros(ZONE_COUNT + 1)
    yellow = np.zeros(ZONE_COUNT + 1)
    with (DATA_DIR / "taxi_zone_lookup.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = tuple(sorted({row["Borough"] for row in rows}))
    for row in rows:
        zone = int(row["LocationID"])
        borough[zone] = names.index(row["Borough"])
        airport[zone] = zone in AIRPORT_ZONES
        yellow[zone] = row["service_zone"] == "Yellow Zone"
    return borough, airport, yellow, names


def _numbers(column: Any) -> np.ndarray:
    """Any column (list with None, nullable pandas, numpy) as float64 with NaN for missing."""
    # Always a fresh array: callers mark bad values in place.
    if isinstance(column, pd.Series):
        if isinstance(column.dtype, np.dtype):  # nothing missing to map: a plain copy
            return column.to_numpy(dtype=np.float64, copy=True)
        return np.array(column.to_numpy(dtype=np.float64, na_value=np.nan))
    array = np.asarray(column)
    if array.dtype == object:
        return np.array(pd.Series(array).to_numpy(dtype=np.float64, na_value=np.nan))
    return array.astype(np.float64)


def _zones(column: Any) -> np.ndarray:
    zones = _numbers(column)
    zones[~((zones >= 1) & (zones <= ZONE_COUNT) & (zones == np.round(zones)))] = np.nan
    return zones


def _timestamps(column: Any) -> np.ndarray:
    if isinstance(column, pd.Series) and isinstance(column.dtype, np.dtype):
        column = column.to_numpy()
    if isinstance(column, np.ndarray) and np.issubdtype(column.dtype, np.datetime64):
        return column.astype("datetime64[s]")  # already parsed: skip pandas' parser
    if isinstance(column, pd.Series) and column.dt.tz is not None:
        column = column.dt.tz_localize(None)
    return np.asarray(pd.to_datetime(column)).astype("datetime64[s]")


def _is_holiday(days: np.ndarray) -> np.ndarray:
    # holiday_dates() is sorted: a binary search per day, cheaper than np.isin's sort of both.
    dates = holiday_dates()
    found = np.minimum(np.searchsorted(dates, days), len(dates) - 1)
    return np.asarray(dates[found] == days)


# Where each feature sits in the matrix.
COLUMN = {name: index for index, name in enumerate(FEATURES)}
# Features that are unknown (NaN) when the pickup time is.
_TIME_FEATURES = tuple(
    COLUMN[name]
    for name in (
        "pickup_hour", "day_of_week", "is_weekend", "holiday", "peak", "overnight", "app_fare_day",
    )
)  # fmt: skip


def build_features(rides: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
    """The feature matrix (rows × FEATURES, float64, C order) of a batch of rides.

    Written column by column into one preallocated matrix: a single gateway request pays for
    every numpy call here, whatever its size, and stacking a dict of columns at the end costs
    one more copy of everything.
    """
    borough, airport, yellow, _ = zone_tables()
    pickup = _timestamps(rides["pickup_time"])
    pickup_zone, dropoff_zone = _zones(rides["pickup_zone"]), _zones(rides["dropoff_zone"])
    known_pickup, known_dropoff = ~np.isnan(pickup_zone), ~np.isnan(dropoff_zone)
    pu_index = np.where(known_pickup, pickup_zone, 0).astype(np.int64)
    do_index = np.where(known_dropoff, dropoff_zone, 0).astype(np.int64)
    pu_borough, do_borough = borough[pu_index], borough[do_index]

    days = pickup.astype("datetime64[D]")
    unknown_time = np.isnat(pickup)
    # NaT's integers are garbage: every time feature is overwritten with NaN for those rows below.
    hour = (pickup - days).astype(np.int64) / 3600.0
    day_of_week = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    holiday = _is_holiday(days)
    distance = _numbers(rides["trip_distance"])
    distance[~((distance > 0) & (distance <= MAX_PLAUSIBLE_MILES))] = np.nan  # unknown
    rate_code = _numbers(rides["rate_code"])
    # App-dispatched rides arrive without rate code, payment and trip type, and price apart.
    app_dispatched = np.isnan(rate_code)

    out = np.empty((len(pickup), len(FEATURES)), dtype=np.float64)
    column = COLUMN
    out[:, column["trip_distance"]] = distance
    out[:, column["pickup_zone"]] = pickup_zone
    out[:, column["dropoff_zone"]] = dropoff_zone
    out[:, column["pickup_borough"]] = pu_borough
    out[:, column["dropoff_borough"]] = do_borough
    out[:, column["same_zone"]] = np.where(
        known_pickup & known_dropoff, pickup_zone == dropoff_zone, np.nan
    )
    out[:, column["same_borough"]] = np.where(
        np.isnan(pu_borough) | np.isnan(do_borough), np.nan, pu_borough == do_borough
    )
    out[:, column["airport_trip"]] = np.maximum(airport[pu_index], airport[do_index])
    out[:, column["pickup_hour"]] = hour
    out[:, column["day_of_week"]] = day_of_week
    out[:, column["is_weekend"]] = day_of_week >= 5
    out[:, column["passenger_count"]] = _numbers(rides["passenger_count"])
    out[:, column["vendor_id"]] = _numbers(rides["vendor_id"])
    out[:, column["rate_code"]] = rate_code
    out[:, column["payment_type"]] = _numbers(rides["payment_type"])
    out[:, column["trip_type"]] = _numbers(rides["trip_type"])
    out[:, column["holiday"]] = holiday
    out[:, column["missing_info"]] = app_dispatched
    out[:, column["peak"]] = (day_of_week < 5) & (hour >= 16) & (hour < 20) & ~holiday
    out[:, column["overnight"]] = (hour >= 20) | (hour < 6)
    out[:, column["congestion"]] = np.maximum(yellow[pu_index], yellow[do_index])
    out[:, column["app_fare_day"]] = np.where(
        app_dispatched, pickup.astype(np.int64) / 86400.0, np.nan
    )
    out[:, column["pair_distance"]] = np.nan
    out[:, column["distance_estimate"]] = distance
    if unknown_time.any():
        out[np.ix_(unknown_time, _TIME_FEATURES)] = np.nan
    return out


@cache
def columns(names: tuple[str, ...]) -> np.ndarray:
    """The positions of these features in the matrix ``build_features`` returns."""
    return np.array([FEATURES.index(name) for name in names], dtype=np.intp)


def select(matrix: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The columns of a feature matrix that a model was trained on, in its order."""
    if names == FEATURES:
        return matrix
    return np.ascontiguousarray(matrix[:, columns(names)])
