"""The model features of one ride, in plain Python, for the Quix Streams peer.

The peer runs in its own virtualenv (Quix Streams pins versions of confluent-kafka and pydantic
the project cannot take), so it cannot import ``ridestream.ml.features``. This is that function
restated for one ride at a time, the way a per-message processor computes it; the lookup tables it
needs (boroughs, airports, congestion zones, holidays) are exported from ``ridestream.ml.features``
itself (:func:`tables_from_payload`), and ``bench/stream.py`` checks on real rides that it returns
exactly what ``build_features`` returns before the peer is measured. Standard library only, so
both virtualenvs import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

ZONE_COUNT = 265
NAN = math.nan
EPOCH = datetime(1970, 1, 1)  # pickup times are naive: "days since 1970" of the wall clock
MAX_PLAUSIBLE_MILES = (
    100.0  # ridestream.ml.features.MAX_PLAUSIBLE_MILES (checked by check_features)
)


@dataclass(frozen=True)
class Tables:
    """Per-LocationID lookups (index 0 = unknown zone) and the holiday dates."""

    borough: tuple[float, ...]
    airport: tuple[float, ...]
    yellow: tuple[float, ...]
    holidays: frozenset[date]
    pair_miles: Mapping[tuple[int, int], float]  # the model's distance prior (known pairs only)


def tables_from_payload(payload: Mapping[str, Any]) -> Tables:
    """Tables from their JSON form (``None`` stands for NaN; dates as ISO strings)."""

    def floats(values: list[float | None]) -> tuple[float, ...]:
        return tuple(NAN if v is None else float(v) for v in values)

    return Tables(
        floats(payload["borough"]),
        floats(payload["airport"]),
        floats(payload["yellow"]),
        frozenset(date.fromisoformat(d) for d in payload["holidays"]),
        {(int(pu), int(do)): float(miles) for pu, do, miles in payload["pair_miles"]},
    )


def _number(value: Any) -> float:
    return NAN if value is None else float(value)


def _zone(value: Any) -> float:
    zone = _number(value)
    return zone if 1 <= zone <= ZONE_COUNT and zone == round(zone) else NAN


def _flag(condition: bool) -> float:
    return 1.0 if condition else 0.0


def ride_features(ride: Mapping[str, Any], tables: Tables) -> dict[str, float]:
    """Feature name → value for one decoded RideStarted (``pickup_time`` a naive datetime)."""
    pickup: datetime = ride["pickup_time"]
    pickup_zone, dropoff_zone = _zone(ride["pickup_zone"]), _zone(ride["dropoff_zone"])
    known_pickup, known_dropoff = not math.isnan(pickup_zone), not math.isnan(dropoff_zone)
    pu = int(pickup_zone) if known_pickup else 0
    do = int(dropoff_zone) if known_dropoff else 0
    pu_borough, do_borough = tables.borough[pu], tables.borough[do]
    # The vectorized function works in whole seconds (datetime64[s]); so does this.
    hour = (pickup.hour * 3600 + pickup.minute * 60 + pickup.second) / 3600.0
    day_of_week = pickup.weekday()
    holiday = pickup.date() in tables.holidays
    distance = _number(ride["trip_distance"])
    if not 0 < distance <= MAX_PLAUSIBLE_MILES:  # missing, zero or absurd: unknown
        distance = NAN
    pair = tables.pair_miles.get((pu, do), NAN) if known_pickup and known_dropoff else NAN
    rate_code = _number(ride["rate_code"])
    return {
        "trip_distance": distance,
        "pickup_zone": pickup_zone,
        "dropoff_zone": dropoff_zone,
        "pickup_borough": pu_borough,
        "dropoff_borough": do_borough,
        "same_zone": _flag(pickup_zone == dropoff_zone) if known_pickup and known_dropoff else NAN,
        "same_borough": NAN
        if math.isnan(pu_borough) or math.isnan(do_borough)
        else _flag(pu_borough == do_borough),
        "airport_trip": max(tables.airport[pu], tables.airport[do]),
        "pickup_hour": hour,
        "day_of_week": float(day_of_week),
        "is_weekend": _flag(day_of_week >= 5),
        "passenger_count": _number(ride["passenger_count"]),
        "vendor_id": _number(ride["vendor_id"]),
        "rate_code": rate_code,
        "payment_type": _number(ride["payment_type"]),
        "trip_type": _number(ride["trip_type"]),
        "holiday": _flag(holiday),
        "missing_info": _flag(math.isnan(rate_code)),
        "peak": _flag(day_of_week < 5 and 16 <= hour < 20 and not holiday),
        "overnight": _flag(hour >= 20 or hour < 6),
        "congestion": max(tables.yellow[pu], tables.yellow[do]),
        "app_fare_day": (pickup - EPOCH).total_seconds() / 86400.0
        if math.isnan(rate_code)
        else NAN,
        "pair_distance": pair,
        "distance_estimate": pair if math.isnan(distance) else distance,
    }
