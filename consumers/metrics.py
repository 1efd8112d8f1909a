"""The predictor's Prometheus metrics."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from ridestream.observability import BATCH_BUCKETS, LATENCY_BUCKETS, MetricFactory


class PredictorMetrics:
    """What a predictor exports: volumes, errors, timings, lag and the models in use."""

    def __init__(self, target: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.target = target
        metric = MetricFactory(self.registry)
        self.consumed = metric.counter(
            "ridestream_events_consumed_total", "RideStarted messages consumed", "target"
        )
        self.predictions = metric.counter(
            "ridestream_predictions_total",
            "Predictions produced",
            "target",
            "role",
            "model_version",
        )
        self.dead_letters = metric.counter(
            "ridestream_dead_letters_total", "Messages sent to the DLQ", "target", "reason"
        )
        self.batch_size = metric.histogram(
            "ridestream_batch_size", "Messages per batch", "target", buckets=BATCH_BUCKETS
        )
        self.predict_seconds = metric.histogram(
            "ridestream_predict_seconds",
            "Model time per batch",
            "target",
            "role",
            buckets=LATENCY_BUCKETS,
        )
        self.latency = metric.histogram(
            "ridestream_event_to_prediction_seconds",
            "From the RideStarted event time to the committed prediction",
            "target",
            buckets=LATENCY_BUCKETS,
        )
        self.commit_seconds = metric.histogram(
            "ridestream_transaction_commit_seconds",
            "Kafka transaction commit time",
            "target",
            buckets=LATENCY_BUCKETS,
        )
        self.transaction_batches = metric.histogram(
            "ridestream_transaction_batches",
            "Batches per committed transaction (above 1: batches were ready before the previous "
            "transaction had committed)",
            "target",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16),
        )
        self.aborts = metric.counter(
            "ridestream_transaction_aborts_total", "Aborted transactions", "target", "reason"
        )
        self.lag = metric.gauge(
            "ridestream_consumer_lag", "Consumer lag per partition", "target", "topic", "partition"
        )
        self.model = metric.info("ridestream_model", "Model versions in use", "target", "role")
        self.assigned = metric.gauge(
            "ridestream_assigned_partitions",
            "Partitions this replica consumes (its share of the target's group)",
            "target",
            "topic",
        )

    def assignment(self, partitions: dict[str, int]) -> None:
        """Record how many partitions of each topic this replica holds."""
        for topic, count in partitions.items():
            self.assigned.labels(self.target, topic).set(count)

    def model_in_use(self, role: str, name: str, version: str) -> None:
        """Record which model version serves a role."""
        self.model.labels(self.target, role).info({"name": name, "version": version})

    def librdkafka_statistics(self, stats_json: str) -> None:
        """Consumer lag per partition from librdkafka's statistics callback."""
        stats: dict[str, Any] = json.loads(stats_json)
        for topic, entry in stats.get("topics", {}).items():
            for partition, values in entry.get("partitions", {}).items():
                lag = values.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    self.lag.labels(self.target, topic, partition).set(lag)
