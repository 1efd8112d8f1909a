"""What every service's Prometheus metrics share: buckets, a bulk observe, the /metrics server.

Each service defines its own metrics (``consumers/metrics.py``, ``decision_service/metrics.py``,
``gateway/metrics.py``), each process on its own registry (tests run several in one interpreter),
served with ``serve(registry, port)`` on 127.0.0.1 by default.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)


def observe_all(histogram: Any, amounts: np.ndarray) -> None:
    """``histogram.observe`` of every amount, one update per bucket instead of one per amount.

    The same buckets and sum as observing one by one (each amount counts in the first bucket whose
    upper bound it does not exceed), without an ``observe`` call per ride: at stream rates those
    calls cost more than the Kafka client. prometheus_client has no bulk observe, so this
    writes the histogram's own bucket and sum values.
    """
    bounds = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, amounts, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(amounts.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


def serve(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on host:port in a daemon thread (port 0: don't serve)."""
    if port:
        start_http_server(port, addr=host, registry=registry)
        logger.info("metrics on http://%s:%d/metrics", host, port)


class MetricFactory:
    """A service's metrics on its own registry, one line each: name, help, label names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter with these label names."""
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge with these label names."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        *labels: str,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A histogram with these label names (latency buckets unless told)."""
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def info(self, name: str, documentation: str, *labels: str) -> Info:
        """An info metric with these label names."""
        return Info(name, documentation, labels, registry=self.registry)
