"""The decision service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ridestream.observability import LATENCY_BUCKETS, MetricFactory


class DecisionMetrics:
    """What the decision service exports: volumes, joins, decisions, online error and drift."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        metric = MetricFactory(self.registry)
        self.consumed = metric.counter(
            "ridestream_decision_messages_consumed_total",
            "Messages consumed by the decision service",
            "topic",
        )
        self.decisions = metric.counter(
            "ridestream_decisions_total", "Decisions made", "completeness"
        )
        self.actions = metric.counter(
            "ridestream_decision_actions_total", "Actions raised", "action"
        )
        self.dead_letters = metric.counter(
            "ridestream_decision_dead_letters_total", "Messages sent to the DLQ", "reason"
        )
        self.pending = metric.gauge("ridestream_pending_joins", "Rides waiting for predictions")
        self.assigned = metric.gauge(
            "ridestream_decision_assigned_partitions",
            "Partitions this replica consumes (its share of the group)",
            "topic",
        )
        self.latency = metric.histogram(
            "ridestream_event_to_decision_seconds",
            "From the RideStarted event time to the stored decision",
            buckets=LATENCY_BUCKETS,
        )
        self.published_latency = metric.histogram(
            "ridestream_event_to_decision_published_seconds",
            "From the RideStarted event time to the decision's committed publication",
            buckets=LATENCY_BUCKETS,
        )
        self.store_seconds = metric.histogram(
            "ridestream_store_write_seconds",
            "Decision store transaction time per batch",
            buckets=LATENCY_BUCKETS,
        )
        self.commit_seconds = metric.histogram(
            "ridestream_decision_commit_seconds",
            "Kafka transaction commit time per batch",
            buckets=LATENCY_BUCKETS,
        )
        self.aborts = metric.counter("ridestream_decision_aborts_total", "Failed batches", "reason")
        self.online_mae = metric.gauge(
            "ridestream_online_mae",
            "Online MAE against ground truth",
            "target",
            "model_version",
            "role",
            "scope",
        )
        self.online_rmse = metric.gauge(
            "ridestream_online_rmse",
            "Online RMSE against ground truth",
            "target",
            "model_version",
            "role",
            "scope",
        )
        self.online_count = metric.gauge(
            "ridestream_online_evaluated",
            "Rides evaluated",
            "target",
            "model_version",
            "role",
            "scope",
        )
        self.psi = metric.gauge(
            "ridestream_feature_psi",
            "Population stability index of the live window against the training profile",
            "feature",
        )
        self.retrains = metric.counter(
            "ridestream_retrain_triggers_total",
            "Retraining triggers (sent to Kestra, or logged without it)",
            "reason",
            "outcome",
        )
