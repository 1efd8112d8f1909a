"""The gateway's Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from ridestream.observability import MetricFactory


class GatewayMetrics:
    """What the gateway exports: requests by route and status, latency, answers per model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        metric = MetricFactory(self.registry)
        self.requests = metric.counter(
            "ridestream_gateway_requests_total", "HTTP requests", "route", "method", "status"
        )
        self.latency = metric.histogram(
            "ridestream_gateway_request_seconds",
            "HTTP request latency",
            "route",
            "method",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.predictions = metric.counter(
            "ridestream_gateway_predictions_total",
            "Synchronous answers, per simple-model version",
            "role",
            "model_version",
        )
        self.enhanced = metric.counter(
            "ridestream_gateway_enhanced_total", "Opted-in requests by outcome", "status"
        )
        self.store_reads = metric.counter(
            "ridestream_gateway_store_reads_total",
            "Reads of the decision store, by why (lookup, wait: a waiting stream's read)",
            "why",
        )
        self.waiting = metric.gauge(
            "ridestream_gateway_waiting_rides", "Rides that open streams and long-polls wait for"
        )
        waits = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
        self.decision_delivery = metric.histogram(
            "ridestream_gateway_decision_delivery_seconds",
            "From a decision's decided_at to the gateway reading it off rides.decisions",
            buckets=waits,
        )
        self.enhanced_result = metric.histogram(
            "ridestream_gateway_enhanced_result_seconds",
            "From an opted-in ride acknowledged by the broker to its decided result reaching the rider",
            "via",
            buckets=waits,
        )
        self.model = metric.info("ridestream_gateway_model", "Simple-model versions in use", "role")

    def model_in_use(self, champion: Any, challenger: Any) -> None:
        """Record the versions serving (``LoadedModel`` or None)."""
        for role, model in (("champion", champion), ("challenger", challenger)):
            if model is not None:
                self.model.labels(role).info({"name": model.name, "version": model.version})
