from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from ridestream.contracts.ids import random_uuids
from ridestream.contracts.schemas import RIDE_STARTED
from ridestream.ml.features import (
    FEATURES,
    RIDE_COLUMNS,
    SIMPLE_FEATURES,
    build_features,
    select,
)
from ridestream.ml.tlc import load_month, month_file
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_encode import ColumnarEncoder


@pytest.fixture(scope="module")
def february() -> pd.DataFrame:
    rides, _ = load_month(month_file("2023-02"))
    return rides.sample(3000, random_state=3).reset_index(drop=True)


def column(matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, FEATURES.index(name)]


def test_training_frames_and_decoded_events_give_identical_features(february: pd.DataFrame) -> None:
    """No train/serve skew: a month as training reads it, and the same rides off the wire."""
    serde = SingleObjectSerde(RIDE_STARTED)
    n = len(february)
    columns = {name: february[name] for name in RIDE_COLUMNS}
    columns.update(ride_id=[f"r{i}" for i in range(n)], event_id=random_uuids(n), event_time=np.zeros(n, dtype=np.int64),
                   source=["backend"] * n, enhanced=[False] * n)  # fmt: skip
    wire = ColumnarEncoder(serde.schema, serde.header).encode(columns, n)
    events = [serde.decode(data) for data in wire]  # what a predictor holds after decoding
    as_columns = {name: [event[name] for event in events] for name in RIDE_COLUMNS}
    from_training = build_features(february)
    from_events = build_features(as_columns)
    np.testing.assert_array_equal(from_training, from_events)  # NaN == NaN here, bit for bit


def test_one_ride_gets_the_same_features_alone_as_in_a_batch(february: pd.DataFrame) -> None:
    batch = build_features(february)
    for i in (0, 17, 2999):
        one = {name: [february[name].iloc[i]] for name in RIDE_COLUMNS}
        np.testing.assert_array_equal(build_features(one)[0], batch[i])


def ride(**changes: object) -> dict[str, list[object]]:
    base: dict[str, object] = {
        "pickup_time": datetime(2023, 2, 4, 23, 45),  # a Saturday, late
        "pickup_zone": 132,  # JFK
        "dropoff_zone": 230,
        "trip_distance": 17.5,
        "passenger_count": 2,
        "vendor_id": 2,
        "rate_code": 2,
        "payment_type": 1,
        "trip_type": 1,
    }
    base.update(changes)
    return {key: [value] for key, value in base.items()}


def test_calendar_and_geography() -> None:
    features = build_features(ride())
    assert column(features, "pickup_hour")[0] == pytest.approx(23.75)
    assert column(features, "day_of_week")[0] == 5
    assert column(features, "is_weekend")[0] == 1
    assert column(features, "airport_trip")[0] == 1
    assert column(features, "same_zone")[0] == 0


def test_what_real_events_miss_becomes_nan_not_an_error() -> None:
    features = build_features(
        ride(passenger_count=None, rate_code=None, payment_type=None, trip_type=None)
    )
    for name in ("passenger_count", "rate_code", "payment_type", "trip_type"):
        assert np.isnan(column(features, name)[0]), name
    assert column(features, "trip_distance")[0] == 17.5


def test_unknown_zones_and_negative_distances_are_missing() -> None:
    features = build_features(ride(pickup_zone=999, dropoff_zone=0, trip_distance=-2.0))
    for name in (
        "pickup_zone",
        "dropoff_zone",
        "pickup_borough",
        "dropoff_borough",
        "same_zone",
        "same_borough",
        "trip_distance",
    ):
        assert np.isnan(column(features, name)[0]), name
    assert column(features, "airport_trip")[0] == 0


def test_odd_hours_and_timezone_aware_times() -> None:
    midnight = build_features(ride(pickup_time=datetime(2023, 2, 6, 0, 0, 1)))
    assert column(midnight, "pickup_hour")[0] == pytest.approx(1 / 3600)
    assert column(midnight, "day_of_week")[0] == 0  # Monday
    aware = build_features(
        {
            **ride(),
            "pickup_time": pd.Series(pd.to_datetime(["2023-02-04 23:45"]).tz_localize("UTC")),
        }
    )
    assert column(aware, "pickup_hour")[0] == pytest.approx(23.75)


def test_select_keeps_a_models_columns_in_its_order() -> None:
    matrix = build_features(ride())
    simple = select(matrix, SIMPLE_FEATURES)
    assert simple.shape == (1, len(SIMPLE_FEATURES))
    assert simple[0, 0] == column(matrix, SIMPLE_FEATURES[0])[0]
    assert select(matrix, FEATURES) is matrix


def test_a_missing_pickup_time_leaves_the_time_features_missing() -> None:
    features = build_features(ride(pickup_time=None))
    for name in ("pickup_hour", "day_of_week", "is_weekend"):
        assert np.isnan(column(features, name)[0]), name
    assert column(features, "trip_distance")[0] == 17.5


def test_holidays_rush_hours_nights_and_the_congestion_zone() -> None:
    mlk_evening = build_features(ride(pickup_time=datetime(2023, 1, 16, 17, 30), pickup_zone=4))
    assert column(mlk_evening, "holiday")[0] == 1  # Martin Luther King Jr. Day
    assert column(mlk_evening, "peak")[0] == 0  # no rush hour on a holiday
    assert column(mlk_evening, "congestion")[0] == 1  # Alphabet City is a Yellow Zone
    tuesday_evening = build_features(
        ride(pickup_time=datetime(2023, 1, 17, 17, 30), pickup_zone=3, dropoff_zone=3)
    )
    assert column(tuesday_evening, "holiday")[0] == 0
    assert column(tuesday_evening, "peak")[0] == 1
    assert column(tuesday_evening, "overnight")[0] == 0
    assert column(tuesday_evening, "congestion")[0] == 0  # Bronx to Bronx
    assert column(build_features(ride()), "overnight")[0] == 1  # 23:45
    assert column(build_features(ride(rate_code=None)), "missing_info")[0] == 1


def test_the_app_fare_day_is_the_pickup_day_of_app_dispatched_rides_only() -> None:
    app_ride = build_features(ride(rate_code=None, pickup_time=datetime(2023, 2, 1, 12, 0)))
    days = (datetime(2023, 2, 1, 12, 0) - datetime(1970, 1, 1)).total_seconds() / 86400
    assert column(app_ride, "app_fare_day")[0] == pytest.approx(days)  # 19389.5
    assert np.isnan(column(build_features(ride(rate_code=1)), "app_fare_day")[0])  # metered
    assert np.isnan(
        column(build_features(ride(rate_code=None, pickup_time=None)), "app_fare_day")[0]
    )


@pytest.mark.parametrize("distance", [0.0, None, float("nan"), 100.01, 5_000.0])
def test_a_missing_zero_or_implausible_distance_is_unknown(distance: float | None) -> None:
    matrix = build_features(ride(trip_distance=distance))
    assert np.isnan(column(matrix, "trip_distance")[0])
    assert np.isnan(column(matrix, "distance_estimate")[0])
    assert np.isnan(column(matrix, "pair_distance")[0])  # until a model's prior fills it
