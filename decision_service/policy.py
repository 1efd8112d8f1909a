"""The decision policy: from a ride's champion predictions to a quote, an ETA, a tip expectation
and actions. A pure function of its inputs and thresholds (``PolicySettings``), so the same
predictions always give the same decision, whenever and however often they arrive.

Rules:
- quote: the predicted cost rounded half-up to the price increment (none without a cost);
- ETA: pickup time + predicted duration (none without a duration);
- expected tip: the predicted tip, to the cent;
- ``driver_incentive``: a long ride (duration ≥ long_ride_minutes) expecting a low tip (< low_tip);
- ``review_cost``: an implausible cost per minute (outside [min, max]), or a non-positive duration
  with a cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from ridestream.contracts.events import TARGETS, Decision, ModelRef
from ridestream.settings import PolicySettings

DRIVER_INCENTIVE = "driver_incentive"
REVIEW_COST = "review_cost"


@dataclass(frozen=True)
class Estimate:
    """One target's champion prediction, as the policy needs it."""

    value: float
    model_name: str
    model_version: str


def round_price(amount: float, increment: float) -> float:
    """``amount`` rounded half-up to a multiple of ``increment`` (decimal arithmetic: 12.345 with
    a cent increment is 12.35, not binary floating point's 12.34)."""
    step = Decimal(str(increment))
    steps = (Decimal(str(amount)) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(steps * step)


@lru_cache(maxsize=256)
def model_ref(target: str, model_name: str, model_version: str) -> ModelRef:
    """The (immutable) reference to a model version: a handful exist, thousands of decisions
    name them."""
    return ModelRef(target=target, model_name=model_name, model_version=model_version)  # type: ignore[arg-type]


def decide(
    ride_id: str,
    pickup_time: datetime,
    estimates: Mapping[str, Estimate],
    policy: PolicySettings,
    decided_at: datetime,
) -> Decision:
    """The decision for a ride from the champion estimates that arrived (partial if not all)."""
    duration = estimates.get("duration")
    cost = estimates.get("cost")
    tip = estimates.get("tip")
    actions: set[str] = set()
    if (
        duration is not None
        and tip is not None
        and duration.value >= policy.long_ride_minutes
        and tip.value < policy.low_tip
    ):
        actions.add(DRIVER_INCENTIVE)
    if cost is not None and duration is not None:
        if duration.value <= 0:
            actions.add(REVIEW_COST)
        else:
            per_minute = cost.value / duration.value
            if not policy.min_cost_per_minute <= per_minute <= policy.max_cost_per_minute:
                actions.add(REVIEW_COST)
    return Decision(
        ride_id=ride_id,
        quote=round_price(cost.value, policy.price_increment) if cost is not None else None,
        duration_minutes=duration.value if duration is not None else None,
        # Whole milliseconds, as the wire carries it: the stored and the published ETA are equal.
        eta=(
            pickup_time + timedelta(milliseconds=round(duration.value * 60_000))
            if duration is not None
            else None
        ),
        expected_tip=round_price(tip.value, 0.01) if tip is not None else None,
        actions=sorted(actions),
        models=[
            model_ref(target, e.model_name, e.model_version)
            for target in TARGETS
            if (e := estimates.get(target)) is not None
        ],
        partial=len(estimates) < len(TARGETS),
        decided_at=decided_at,
    )
