"""The vectorized validator and the pydantic model must agree on every ride."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ridestream.contracts.events import RideStarted
from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.validation import find_problems

# Values around and beyond every bound, and of the wrong kind, so both verdicts are exercised.
maybe_int = st.none() | st.integers(-5, 300)
ride_rows = st.fixed_dictionaries(
    {
        "ride_id": st.sampled_from(["r-1", "", "x" * 129, "ride"]),
        "pickup_time": st.none() | st.datetimes(datetime(2023, 1, 1), datetime(2023, 3, 1)),
        "pickup_zone": st.integers(-1, 300),
        "dropoff_zone": st.integers(-1, 300),
        "trip_distance": st.floats(-5, 250) | st.sampled_from([float("nan"), float("inf")]),
        "passenger_count": maybe_int,
        "vendor_id": maybe_int,
        "rate_code": maybe_int,
        "payment_type": maybe_int,
        "trip_type": maybe_int,
        "source": st.sampled_from(["backend", "gateway", "partner"]),
    }
)


def pydantic_verdict(row: dict[str, Any]) -> str | None:
    try:
        RideStarted.parse(row)
    except InvalidEventError as exc:
        return exc.field
    return None


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("passenger_count", "vendor_id", "rate_code", "payment_type", "trip_type"):
        frame[column] = frame[column].astype("Int64")
    return frame


@settings(max_examples=300, deadline=None)
@given(st.lists(ride_rows, min_size=1, max_size=20))
def test_batch_verdicts_equal_single_event_verdicts(rows: list[dict[str, Any]]) -> None:
    problems = {p.row: p.field for p in find_problems(RideStarted, to_frame(rows))}
    expected = {
        i: field for i, row in enumerate(rows) if (field := pydantic_verdict(row)) is not None
    }
    assert problems == expected


def one_ride(**changes: Any) -> pd.DataFrame:
    ride: dict[str, Any] = {
        "ride_id": "r", "pickup_time": datetime(2023, 2, 1), "pickup_zone": 1, "dropoff_zone": 1,
        "trip_distance": 1.0, "passenger_count": None, "vendor_id": None, "rate_code": None,
        "payment_type": None, "trip_type": None, "source": "backend",
    }  # fmt: skip
    return to_frame([{**ride, **changes}])


def test_reasons_say_what_the_rule_is() -> None:
    [problem] = find_problems(RideStarted, one_ride(pickup_zone=999))
    assert (problem.row, problem.field) == (0, "pickup_zone")
    assert "[1, 265]" in problem.reason


def test_a_ride_id_that_is_not_text_is_refused_like_the_model_does() -> None:
    frame = one_ride(ride_id=42)
    [problem] = find_problems(RideStarted, frame)
    assert problem.field == "ride_id"
    assert pydantic_verdict(frame.iloc[0].to_dict() | {"ride_id": 42}) == "ride_id"
