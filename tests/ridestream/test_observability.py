"""The metrics helpers (the metrics themselves are read in each process's own tests)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from ridestream.observability import LATENCY_BUCKETS, observe_all


def test_observe_all_fills_a_histogram_as_observing_one_by_one() -> None:
    amounts = [0.0, *LATENCY_BUCKETS[:3], 0.004, 0.2, 0.2, 3.0, 1e9]
    one_by_one, at_once = (
        Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=CollectorRegistry()) for _ in range(2)
    )
    for amount in amounts:
        one_by_one.observe(amount)
    observe_all(at_once, np.array(amounts))

    def state(histogram: Histogram) -> list[tuple[str, str | None, float]]:
        return [
            (s.name, s.labels.get("le"), s.value)
            for s in histogram.collect()[0].samples
            if not s.name.endswith("_created")
        ]

    assert state(at_once) == state(one_by_one)
