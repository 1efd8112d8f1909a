from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ridestream.events import RideStarted
from ridestream.tlc import MAX_MINUTES, MIN_MINUTES, clean, load_month, load_raw, month_file


@pytest.fixture(scope="module")
def february() -> tuple[pd.DataFrame, object]:
    return load_month(month_file("2023-02"))


def test_both_months_load_with_the_same_types() -> None:
    january, february = load_raw(month_file("2023-01")), load_raw(month_file("2023-02"))
    assert (january.dtypes == february.dtypes).all()
    assert len(january) == 68_211
    assert len(february) == 64_809


def test_cleaned_rides_satisfy_every_filter(february: tuple[pd.DataFrame, object]) -> None:
    rides, report = february
    assert report.rows_in == report.rows_out + sum(report.dropped.values())
    assert rides["duration_minutes"].between(MIN_MINUTES, MAX_MINUTES).all()
    assert (rides["pickup_time"].dt.to_period("M") == pd.Period("2023-02")).all()
    assert ((rides["trip_distance"] > 0) & (rides["trip_distance"] <= 100)).all()
    assert (rides["cost"] > 0).all()
    assert (rides["tip_amount"] >= 0).all()
    assert rides["pickup_time"].is_monotonic_increasing
    assert report.dropped["duration"] > 0
    assert report.dropped["distance"] > 0


def test_missing_values_survive_cleaning_as_real_events_carry_them(
    february: tuple[pd.DataFrame, object],
) -> None:
    rides, _ = february
    assert rides["payment_type"].isna().sum() > 1000
    assert rides["passenger_count"].isna().sum() > 1000


def test_every_cleaned_ride_is_a_valid_event(february: tuple[pd.DataFrame, object]) -> None:
    rides, _ = february
    sample = rides.sample(2000, random_state=7)
    for row in sample.itertuples():
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
    raw = load_raw(month_file("2023-02")).head(500)
    cleaned, report = clean(raw, tmp_path / "rides.parquet")
    assert (cleaned["pickup_time"].dt.month == 2).all()
    assert report.rows_out > 400
