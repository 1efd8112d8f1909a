"""NYC TLC green taxi trip files: load with explicit types, clean with written-down filters.

Shared by the replayer (which turns a month into a live stream) and training (which learns from
it), so both see the same rides.

Cleaning filters, in order (each dropped row is counted under its reason):

``outside_month``  pickup not inside the file's month (the raw files hold 2008/2009 pickups)
``duration``       dropoff − pickup not within 1–60 minutes
``distance``       trip_distance not within (0, 100] miles
``amounts``        fare_amount ≤ 0, total_amount ≤ 0, tip_amount < 0, or total − tip ≤ 0
``zones``          a LocationID outside 1–265
``passengers``     passenger_count above 9 (missing counts are kept: real events miss them too)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ridestream.events import MAX_PASSENGERS, ZONE_MAX, ZONE_MIN

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_MONTH_IN_NAME = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})")

# Raw TLC column → ride column, with the type each is cast to (the months disagree on some).
COLUMNS: dict[str, tuple[str, Any]] = {
    "lpep_pickup_datetime": ("pickup_time", "datetime64[ms]"),
    "lpep_dropoff_datetime": ("dropoff_time", "datetime64[ms]"),
    "PULocationID": ("pickup_zone", "int32"),
    "DOLocationID": ("dropoff_zone", "int32"),
    "trip_distance": ("trip_distance", "float64"),
    "passenger_count": ("passenger_count", "Int32"),
    "VendorID": ("vendor_id", "Int32"),
    "RatecodeID": ("rate_code", "Int32"),
    "payment_type": ("payment_type", "Int32"),
    "trip_type": ("trip_type", "Int32"),
    "fare_amount": ("fare_amount", "float64"),
    "tip_amount": ("tip_amount", "float64"),
    "total_amount": ("total_amount", "float64"),
}
MAX_TRIP_MILES_CLEAN = 100.0
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0


def month_file(month: str) -> Path:
    """The shipped parquet file of a month, e.g. ``month_file("2023-02")``."""
    return DATA_DIR / f"green_tripdata_{month}.parquet"


@dataclass
class CleaningReport:
    """How many rows came in, went out, and why the others were dropped."""

    rows_in: int
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def is_raw_tlc(frame: pd.DataFrame) -> bool:
    """True when a frame has TLC's own column names rather than ride columns."""
    return "lpep_pickup_datetime" in frame.columns


def rides_from_raw(raw: pd.DataFrame) -> pd.DataFrame:
    """TLC columns → ride columns, each cast to its one type (the months disagree on some)."""
    return pd.DataFrame(
        {name: raw[column].astype(dtype) for column, (name, dtype) in COLUMNS.items()}
    )


def load_raw(path: Path) -> pd.DataFrame:
    """Read a TLC parquet file into ride columns with explicit types (no cleaning)."""
    return rides_from_raw(pd.read_parquet(path, columns=list(COLUMNS)))


def _month_bounds(path: Path, pickups: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    match = _MONTH_IN_NAME.search(path.name)
    if match:
        start = pd.Timestamp(int(match["year"]), int(match["month"]), 1)
    else:  # not a TLC file name: the month most pickups fall in
        start = pickups.dt.to_period("M").mode().iloc[0].to_timestamp()
    return start, start + pd.offsets.MonthBegin(1)


def clean(rides: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the module's filters; add ``duration_minutes`` and ``cost``; sort by pickup."""
    report = CleaningReport(rows_in=len(rides))
    rides = rides.assign(
        duration_minutes=(rides["dropoff_time"] - rides["pickup_time"]).dt.total_seconds() / 60.0,
        cost=rides["total_amount"] - rides["tip_amount"],
    )
    start, end = _month_bounds(path, rides["pickup_time"])
    passengers = rides["passenger_count"]
    rules: dict[str, pd.Series] = {
        "outside_month": (rides["pickup_time"] >= start) & (rides["pickup_time"] < end),
        "duration": rides["duration_minutes"].between(MIN_MINUTES, MAX_MINUTES),
        "distance": (rides["trip_distance"] > 0) & (rides["trip_distance"] <= MAX_TRIP_MILES_CLEAN),
        "amounts": (rides["fare_amount"] > 0)
        & (rides["total_amount"] > 0)
        & (rides["tip_amount"] >= 0)
        & (rides["cost"] > 0),
        "zones": rides["pickup_zone"].between(ZONE_MIN, ZONE_MAX)
        & rides["dropoff_zone"].between(ZONE_MIN, ZONE_MAX),
        "passengers": (passengers.isna() | (passengers <= MAX_PASSENGERS)).astype(bool),
    }
    keep = np.ones(len(rides), dtype=bool)
    for reason, ok in rules.items():
        ok_values = ok.to_numpy(dtype=bool, na_value=False)
        report.dropped[reason] = int((keep & ~ok_values).sum())
        keep &= ok_values
    cleaned = rides[keep].sort_values("pickup_time", kind="stable").reset_index(drop=True)
    report.rows_out = len(cleaned)
    return cleaned, report


def load_month(path: Path) -> tuple[pd.DataFrame, CleaningReport]:
    """Load and clean one TLC month: the rides of the stream and of training."""
    return clean(load_raw(path), path)
