"""Decisions as the service publishes them: byte for byte what fastavro writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from decision_service.policy import Estimate, decide
from decision_service.service import DecisionService
from ridestream.contracts.events import TARGETS
from ridestream.contracts.schemas import DECISION
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.settings import DecisionSettings, PolicySettings, Settings

estimate = st.one_of(
    st.none(),
    st.builds(
        Estimate,
        st.floats(-5, 500, allow_nan=False),
        st.sampled_from(["ride-duration", "ride-cost", "ride-tip"]),
        st.sampled_from(["1", "2", "17"]),
    ),
)
ride = st.tuples(
    st.text(min_size=1, max_size=20),
    st.datetimes(datetime(2023, 1, 1), datetime(2023, 3, 1)),
    st.fixed_dictionaries({target: estimate for target in TARGETS}),
    st.integers(0, 10**6),
)


def test_published_decisions_are_what_fastavro_writes(tmp_path: Path) -> None:
    service = DecisionService(
        Settings(_env_file=None, decisions=DecisionSettings(home=tmp_path))  # type: ignore[call-arg]
    )
    serde = SingleObjectSerde(DECISION)
    policy = PolicySettings()
    decided_at = datetime(2023, 2, 1, 10, tzinfo=UTC)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(ride, min_size=1, max_size=40))
    def same_bytes(rides: list[tuple[str, datetime, dict[str, Estimate | None], int]]) -> None:
        decisions = [
            decide(
                ride_id,
                pickup.replace(microsecond=pickup.microsecond // 1000 * 1000),
                {t: e for t, e in estimates.items() if e is not None},
                policy,
                decided_at + timedelta(milliseconds=ms),
            )
            for ride_id, pickup, estimates, ms in rides
        ]
        assert service.encode_decisions(decisions) == [
            serde.encode(d.to_record()) for d in decisions
        ]

    try:
        same_bytes()
    finally:
        service.close()
