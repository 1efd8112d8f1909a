"""The metrics helpers and server (the metrics themselves are read in each process's own tests)."""

from __future__ import annotations

import threading

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from ridestream.observability import LATENCY_BUCKETS, observe_all, serve
from tests.conftest import free_port


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


def test_the_metrics_server_answers_probes_and_says_ready_only_when_the_service_does() -> None:
    registry = CollectorRegistry()
    Histogram("ridestream_probe_seconds", "h", registry=registry).observe(0.1)
    serving = threading.Event()
    port = free_port()
    serve(registry, port, ready=serving.is_set)
    base = f"http://127.0.0.1:{port}"

    assert httpx.get(f"{base}/healthz").json() == {"alive": True}
    not_yet = httpx.get(f"{base}/readyz")
    assert (not_yet.status_code, not_yet.json()) == (503, {"ready": False})
    serving.set()
    ready = httpx.get(f"{base}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert "ridestream_probe_seconds_count 1.0" in httpx.get(f"{base}/metrics").text
