"""Rows for the decision store's writes, shaped as the decision service makes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from ridestream.clock import to_ms, wall_clock
from ridestream.contracts.events import Decision, ModelRef

PICKUP_MS = to_ms(datetime(2023, 2, 1, 8, 0))


def partial_decision(ride_id: str, model_name: str, decided_at: datetime) -> Decision:
    """A decision on the duration alone, as the policy makes one (the store's tests need no
    policy)."""
    return Decision(
        ride_id=ride_id,
        duration_minutes=10.0,
        eta=wall_clock(PICKUP_MS) + timedelta(minutes=10),
        models=[ModelRef(target="duration", model_name=model_name, model_version="1")],
        partial=True,
        decided_at=decided_at,
    )


def prediction(
    ride: str,
    target: str,
    value: float,
    version: str = "1",
    role: str = "champion",
    predicted_at_ms: int = 1_000,
) -> dict[str, object]:
    return {
        "ride_id": ride,
        "target": target,
        "model_name": f"ride-{target}",
        "model_version": version,
        "role": role,
        "value": value,
        "source_event_time_ms": 500,
        "pickup_time_ms": PICKUP_MS,
        "predicted_at_ms": predicted_at_ms,
        "stored_at_ms": 2_000,
    }


def actual(ride: str, duration: float, cost: float, tip: float) -> dict[str, object]:
    return {
        "ride_id": ride,
        "duration": duration,
        "cost": cost,
        "tip": tip,
        "dropoff_time_ms": PICKUP_MS + int(duration * 60_000),
        "event_time_ms": 3_000,
        "stored_at_ms": 3_000,
    }
