"""NYC TLC green taxi trip files: load with explicit types, and name the populations they hold.

Shared by the replayer (which turns a month into a live stream), training and evaluation, so all
of them see the same rides. Three populations, from widest to narrowest:

- **published**: every row of a month's file. This is what a backend would send: nothing is
  dropped for being odd (a zero, missing or absurd estimated distance is an ordinary ride);
  rows the RideStarted contract refuses are the contract's business (``ridestream.contracts.validation``).
- **labelled**: the label convention used for *scoring* and for *training*: a duration of 1–60
  minutes and a positive cost (the MLOps Zoomcamp course's convention), and a tip that is not
  negative. Rides outside it still get predictions; their ground truth is not trusted.
- **cleaned**: the stricter filters the first models were trained and reported on (pickup inside
  the file's month, a distance in (0, 100] miles, positive fare and total, zones 1–265, at most
  nine passengers). It survives only as a *segment* that reports sit beside the headline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ridestream.contracts.events import MAX_PASSENGERS, ZONE_MAX, ZONE_MIN
from ridestream.ml.scoring import MAX_MINUTES, MIN_MINUTES, labelled

__all__ = ["MAX_MINUTES", "MIN_MINUTES", "load_month", "load_raw", "month_file"]

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # the repository's data/
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
MAX_TRIP_MILES_CLEAN = 100.0  # the cleaned segment's distance bound (not a serving rule)


def month_file(month: str) -> Path:
    """The shipped parquet file of a month, e.g. ``month_file("2023-02")``."""
    return DATA_DIR / f"green_tripdata_{month}.parquet"


@dataclass
class MonthReport:
    """How many rides a month holds in each population, and why rides fall outside the cleaned
    one (each counted under the first filter it fails)."""

    rows: int
    labelled: int = 0
    cleaned: int = 0
    outside_month: int = 0
    not_cleaned: dict[str, int] = field(default_factory=dict)


def is_raw_tlc(frame: pd.DataFrame) -> bool:
    """True when a frame has TLC's own column names rather than ride columns."""
    return "lpep_pickup_datetime" in frame.columns


def rides_from_raw(raw: pd.DataFrame) -> pd.DataFrame:
    """TLC columns → ride columns, each cast to its one type (the months disagree on some)."""
    return pd.DataFrame(
        {name: raw[column].astype(dtype) for column, (name, dtype) in COLUMNS.items()}
    )


def load_raw(path: Path) -> pd.DataFrame:
    """Read a TLC parquet file into ride columns with explicit types (no rows dropped)."""
    return rides_from_raw(pd.read_parquet(path, columns=list(COLUMNS)))


def with_labels(rides: pd.DataFrame) -> pd.DataFrame:
    """The rides with their two derived targets, ``duration_minutes`` and ``cost``."""
    return rides.assign(
        duration_minutes=(rides["dropoff_time"] - rides["pickup_time"]).dt.total_seconds() / 60.0,
        cost=rides["total_amount"] - rides["tip_amount"],
    )


def labelled_mask(rides: pd.DataFrame) -> np.ndarray:
    """Rides whose ground truth obeys the label convention (see the module's docstring)."""
    tip_ok = (rides["tip_amount"] >= 0).to_numpy(dtype=bool, na_value=False)
    return labelled(rides["duration_minutes"].to_numpy(), rides["cost"].to_numpy()) & tip_ok


def month_bounds(path: Path, pickups: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The month a file holds: from its TLC name, else the month most pickups fall in."""
    match = _MONTH_IN_NAME.search(path.name)
    if match:
        start = pd.Timestamp(int(match["year"]), int(match["month"]), 1)
    else:
        start = pickups.dt.to_period("M").mode().iloc[0].to_timestamp()
    return start, start + pd.offsets.MonthBegin(1)


def cleaned_rules(rides: pd.DataFrame, path: Path) -> dict[str, np.ndarray]:
    """The cleaned segment's filters, in order, each a mask of the rides it keeps."""
    start, end = month_bounds(path, rides["pickup_time"])
    passengers = rides["passenger_count"]
    rules = {
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
    return {reason: ok.to_numpy(dtype=bool, na_value=False) for reason, ok in rules.items()}


def load_month(path: Path) -> tuple[pd.DataFrame, MonthReport]:
    """Every ride of a TLC month, in pickup order, with its labels and two flags: ``labelled``
    (the label convention holds) and ``cleaned`` (the cleaned segment's filters hold)."""
    rides = with_labels(load_raw(path))
    report = MonthReport(rows=len(rides))
    cleaned = np.ones(len(rides), dtype=bool)
    for reason, ok in cleaned_rules(rides, path).items():
        report.not_cleaned[reason] = int((cleaned & ~ok).sum())
        cleaned &= ok
    labelled = labelled_mask(rides)
    report.labelled, report.cleaned = int(labelled.sum()), int(cleaned.sum())
    report.outside_month = report.not_cleaned["outside_month"]
    rides = rides.assign(labelled=labelled, cleaned=cleaned)
    return rides.sort_values("pickup_time", kind="stable").reset_index(drop=True), report
