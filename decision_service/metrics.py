"""The decision service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ridestream.observability import LATENCY_BUCKETS


class DecisionMetrics:
    """What the decision service exports: volumes, joins, decisions, online error and drift."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.consumed = Counter(
            "ridestream_decision_messages_consumed_total",
            "Messages consumed by the decision service",
            ["topic"],
            registry=registry,
        )
        self.decisions = Counter(
            "ridestream_decisions_total",
            "Decisions made",
            ["completeness"],  # full | partial
            registry=registry,
        )
        self.actions = Counter(
            "ridestream_decision_actions_total", "Actions raised", ["action"], registry=registry
        )
        self.dead_letters = Counter(
            "ridestream_decision_dead_letters_total",
            "Messages sent to the DLQ",
            ["reason"],
            registry=registry,
        )
        self.pending = Gauge(
            "ridestream_pending_joins", "Rides waiting for predictions", registry=registry
        )
        self.latency = Histogram(
            "ridestream_event_to_decision_seconds",
            "From the RideStarted event time to the stored decision",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_seconds = Histogram(
            "ridestream_store_write_seconds",
            "Decision store transaction time per batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "ridestream_decision_commit_seconds",
            "Kafka transaction commit time per batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.aborts = Counter(
            "ridestream_decision_aborts_total", "Failed batches", ["reason"], registry=registry
        )
        self.online_mae = Gauge(
            "ridestream_online_mae",
            "Online MAE against ground truth",
            ["target", "model_version", "role", "scope"],  # scope: window | total
            registry=registry,
        )
        self.online_rmse = Gauge(
            "ridestream_online_rmse",
            "Online RMSE against ground truth",
            ["target", "model_version", "role", "scope"],
            registry=registry,
        )
        self.online_count = Gauge(
            "ridestream_online_evaluated",
            "Rides evaluated",
            ["target", "model_version", "role", "scope"],
            registry=registry,
        )
        self.psi = Gauge(
            "ridestream_feature_psi",
            "Population stability index of the live window against the training profile",
            ["feature"],
            registry=registry,
        )
        self.retrains = Counter(
            "ridestream_retrain_triggers_total",
            "Retraining triggers (sent to Kestra, or logged without it)",
            ["reason", "outcome"],
            registry=registry,
        )
