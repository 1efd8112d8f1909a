from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ridestream.contracts.events import RideStarted
from ridestream.ml.tlc import (
    MAX_MINUTES,
    MIN_MINUTES,
    MonthReport,
    load_month,
    load_raw,
    month_bounds,
    month_file,
)


@pytest.fixture(scope="module")
def february() -> tuple[pd.DataFrame, MonthReport]:
    return load_month(month_file("2023-02"))


def test_both_months_load_with_the_same_types() -> None:
    january, february = load_raw(month_file("2023-01")), load_raw(month_file("2023-02"))
    assert (january.dtypes == february.dtypes).all()
    assert len(january) == 68_211
    assert len(february) == 64_809


def test_a_month_keeps_every_ride_a_backend_would_publish(
    february: tuple[pd.DataFrame, MonthReport],
) -> None:
    rides, report = february
    assert len(rides) == report.rows == 64_809
    assert rides["pickup_time"].is_monotonic_increasing
    # Zero and absurd distances are rides like any other.
    assert (rides["trip_distance"] == 0).sum() > 1_000
    assert (rides["trip_distance"] > 100).sum() > 10


def test_the_label_convention_marks_rides_whose_ground_truth_is_scored(
    february: tuple[pd.DataFrame, MonthReport],
) -> None:
    rides, report = february
    labelled = rides[rides["labelled"]]
    # Every February ride of 1-60 minutes and positive cost (late reports included).
    assert len(labelled) == report.labelled == 62_459
    assert labelled["duration_minutes"].between(MIN_MINUTES, MAX_MINUTES).all()
    assert (labelled["cost"] > 0).all()
    assert not rides.loc[~rides["labelled"], "duration_minutes"].between(1, 60).all()


def test_the_cleaned_segment_applies_the_old_filters(
    february: tuple[pd.DataFrame, MonthReport],
) -> None:
    rides, report = february
    cleaned = rides[rides["cleaned"]]
    assert len(cleaned) == report.cleaned
    assert report.rows == report.cleaned + sum(report.not_cleaned.values())
    assert ((cleaned["trip_distance"] > 0) & (cleaned["trip_distance"] <= 100)).all()
    assert (cleaned["pickup_time"].dt.to_period("M") == pd.Period("2023-02")).all()
    assert report.not_cleaned["distance"] > 1_000
    assert report.outside_month == 26
    assert cleaned["labelled"].all()


def test_missing_values_are_kept_as_real_events_carry_them(
    february: tuple[pd.DataFrame, MonthReport],
) -> None:
    rides, _ = february
    assert rides["payment_type"].isna().sum() > 1000
    assert rides["passenger_count"].isna().sum() > 1000


def test_every_ride_of_the_month_is_a_valid_event(
    february: tuple[pd.DataFrame, MonthReport],
) -> None:
    rides, _ = february
    odd = rides[(rides["trip_distance"] == 0) | (rides["trip_distance"] > 100)].head(500)
    for row in pd.concat([rides.sample(1500, random_state=7), odd]).itertuples():
        RideStarted.parse(
            {
                "ride_id": f"r{row.Index}",
                "pickup_time": row.pickup_time.to_pydatetime(),
                "pickup_zone": row.pickup_zone,
                "dropoff_zone": row.dropoff_zone,
                "trip_distance": row.trip_distance,
                "passenger_count": None
                if pd.isna(row.passenger_count)
                else int(row.passenger_count),
                "vendor_id": None if pd.isna(row.vendor_id) else int(row.vendor_id),
                "rate_code": None if pd.isna(row.rate_code) else int(row.rate_code),
                "payment_type": None if pd.isna(row.payment_type) else int(row.payment_type),
                "trip_type": None if pd.isna(row.trip_type) else int(row.trip_type),
            }
        )


def test_a_file_without_a_month_in_its_name_uses_the_most_common_month(tmp_path: Path) -> None:
    pickups = load_raw(month_file("2023-02")).head(500)["pickup_time"]
    start, end = month_bounds(tmp_path / "rides.parquet", pickups)
    assert (start, end) == (pd.Timestamp("2023-02-01"), pd.Timestamp("2023-03-01"))
