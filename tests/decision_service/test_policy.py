"""The decision policy: each rule, rounding, partial decisions, determinism."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decision_service.policy import DRIVER_INCENTIVE, REVIEW_COST, Estimate, decide, round_price
from ridestream.settings import PolicySettings

PICKUP = datetime(2023, 2, 1, 8, 30)
DECIDED_AT = datetime(2023, 2, 1, 13, 30, 1, tzinfo=UTC)
POLICY = PolicySettings()


def estimates(duration: float | None = 12.0, cost: float | None = 18.0, tip: float | None = 2.5):
    values = {"duration": duration, "cost": cost, "tip": tip}
    return {
        target: Estimate(value, f"ride-{target}", "3")
        for target, value in values.items()
        if value is not None
    }


def test_a_full_decision_quotes_the_cost_gives_the_eta_and_the_tip() -> None:
    decision = decide("r1", PICKUP, estimates(), POLICY, DECIDED_AT)
    assert decision.quote == 18.0
    assert decision.eta == datetime(2023, 2, 1, 8, 42)
    assert decision.duration_minutes == 12.0
    assert decision.expected_tip == 2.5
    assert decision.actions == []
    assert not decision.partial
    assert [(m.target, m.model_name, m.model_version) for m in decision.models] == [
        ("duration", "ride-duration", "3"),
        ("cost", "ride-cost", "3"),
        ("tip", "ride-tip", "3"),
    ]


@pytest.mark.parametrize(
    ("amount", "increment", "expected"),
    [
        (12.345, 0.01, 12.35),
        (12.324, 0.05, 12.3),
        (12.325, 0.05, 12.35),
        (7.49, 0.5, 7.5),
        (0, 1, 0),
    ],
)
def test_quotes_round_half_up_to_the_price_increment(
    amount: float, increment: float, expected: float
) -> None:
    assert round_price(amount, increment) == expected


def test_a_long_ride_with_a_low_expected_tip_earns_the_driver_an_incentive() -> None:
    long_low = decide("r", PICKUP, estimates(duration=45.0, cost=60.0, tip=0.4), POLICY, DECIDED_AT)
    assert long_low.actions == [DRIVER_INCENTIVE]
    long_generous = decide("r", PICKUP, estimates(45.0, 60.0, 9.0), POLICY, DECIDED_AT)
    short_low = decide("r", PICKUP, estimates(10.0, 15.0, 0.0), POLICY, DECIDED_AT)
    assert long_generous.actions == short_low.actions == []


@pytest.mark.parametrize(
    ("duration", "cost"),
    [(10.0, 80.0), (60.0, 5.0), (0.0, 12.0)],  # 8 $/min, 0.08 $/min, no time at all
)
def test_an_implausible_cost_per_minute_is_flagged_for_review(duration: float, cost: float) -> None:
    decision = decide("r", PICKUP, estimates(duration, cost, 3.0), POLICY, DECIDED_AT)
    assert REVIEW_COST in decision.actions


def test_thresholds_come_from_the_settings() -> None:
    strict = PolicySettings(max_cost_per_minute=1.0, long_ride_minutes=10.0, low_tip=5.0)
    decision = decide("r", PICKUP, estimates(12.0, 18.0, 2.5), strict, DECIDED_AT)
    assert decision.actions == [DRIVER_INCENTIVE, REVIEW_COST]


def test_a_partial_decision_uses_what_arrived() -> None:
    decision = decide("r", PICKUP, estimates(cost=None), POLICY, DECIDED_AT)
    assert decision.partial
    assert decision.quote is None
    assert decision.eta == datetime(2023, 2, 1, 8, 42)
    assert [m.target for m in decision.models] == ["duration", "tip"]
    assert REVIEW_COST not in decision.actions  # no cost, nothing to judge


@given(
    duration=st.floats(0, 300),
    cost=st.floats(0, 500),
    tip=st.floats(0, 100),
)
def test_the_same_predictions_always_give_the_same_decision(
    duration: float, cost: float, tip: float
) -> None:
    first = decide("r", PICKUP, estimates(duration, cost, tip), POLICY, DECIDED_AT)
    again = decide(
        "r", PICKUP, dict(reversed(estimates(duration, cost, tip).items())), POLICY, DECIDED_AT
    )
    assert first == again
