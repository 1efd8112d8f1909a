"""The decision service's Prometheus metrics."""

from __future__ import annotations

from collections import Counter

import numpy as np
from prometheus_client import CollectorRegistry

from ridestream.clock import now_ms, to_ms
from ridestream.contracts.events import Decision
from ridestream.observability import LATENCY_BUCKETS, MetricFactory, observe_all
from ridestream.store.records import StoredPrediction


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
        self.pending = metric.gauge(
            "ridestream_pending_joins",
            "Rides of this replica waiting for predictions (held in memory)",
        )
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

    def observe_batch(
        self,
        consumed: dict[str, int],
        decisions: list[Decision],
        chosen: dict[str, dict[str, StoredPrediction]],
    ) -> None:
        """A committed batch: messages per topic, its decisions, and their latency (from each
        ride's earliest prediction's source event, its RideStarted)."""
        for topic, count in consumed.items():
            self.consumed.labels(topic).inc(count)
        if not decisions:
            return
        completeness = Counter("partial" if d.partial else "full" for d in decisions)
        for label, count in completeness.items():
            self.decisions.labels(label).inc(count)
        for action, count in Counter(a for d in decisions for a in d.actions).items():
            self.actions.labels(action).inc(count)
        source_ms = np.fromiter(
            (min(p.source_event_time_ms for p in chosen[d.ride_id].values()) for d in decisions),
            dtype=np.int64,
            count=len(decisions),
        )
        # Observed after the commit: the decision was stored at decided_at, published just now.
        decided_ms = np.fromiter(
            (to_ms(d.decided_at) for d in decisions), dtype=np.int64, count=len(decisions)
        )
        observe_all(self.latency, np.maximum(decided_ms - source_ms, 0) / 1000)
        observe_all(self.published_latency, np.maximum(now_ms() - source_ms, 0) / 1000)
