"""The decision service: join each ride's champion predictions, decide, store, publish; evaluate
every model version against ground truth; watch the stream's features for drift.

Reads ``rides.predictions`` (read_committed), ``rides.completed`` and ``rides.started`` (for drift)
in one consumer group, in the exactly-once loop (:class:`ridestream.kafka.loop.ExactlyOnceLoop`).
Per batch (also an empty one, so expired joins are decided on time):

    decode → dead-letter what breaks the contract
    → store transaction (``prepare``): predictions and actuals (idempotent), open joins, decide
      the rides whose three champion predictions are in and those whose join window expired
      (partial), record the errors of predictions that have ground truth, claim the unpublished
      decisions (outbox)
    → Kafka transaction (``publish``): the claimed decisions, the dead letters, the input offsets
    → mark the claim published (``committed``)

The store is written before the offsets are committed, and every store write is idempotent, so a
redelivered batch changes nothing. A decision is published exactly once: if the process dies
between the two commits, the next start reads the decisions topic from the offsets recorded with
the claim and marks what it finds published; the rest is published again
(``decision_service/recovery.py``).

Scaling: rides are keyed by ride_id, so a ride's predictions share a partition; replicas of the
service share the partitions, each sweeping and publishing only the rides of its own partitions.
Each replica needs a stable ``instance_id`` (its transactional id and its claim).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy.exc import SQLAlchemyError

from decision_service.decoding import BatchDecoder, DecodedBatch
from decision_service.drift import DriftMonitor
from decision_service.evaluation import OnlineEvaluator
from decision_service.joins import PendingJoins
from decision_service.metrics import DecisionMetrics
from decision_service.policy import Estimate, decide
from decision_service.recovery import CLAIM_HEADER, PublicationRecovery
from ridestream.clock import instant, now_ms, to_ms, wall_clock
from ridestream.contracts.events import TARGETS, Decision
from ridestream.contracts.schemas import DECISION
from ridestream.kafka import transactions
from ridestream.kafka.loop import ExactlyOnceLoop, group_name
from ridestream.kafka.loop_config import LoopConfig
from ridestream.observability import serve
from ridestream.serde.codecs import SingleObjectSerde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.serde.exceptions import SchemaRegistryUnavailableError
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.records import StoredPrediction

logger = logging.getLogger(__name__)

REGISTRY_WAIT_S = 60.0


@dataclass
class DecisionOutcome:
    """What one batch did (for tests and logs)."""

    consumed: int
    predictions: int = 0
    completions: int = 0
    decided: int = 0
    partial: int = 0
    published: int = 0
    dead_letters: int = 0
    decisions: list[Decision] = field(default_factory=list)


@dataclass
class DecidedBatch:
    """A batch up to its Kafka transaction: stored and decided, the claim to publish."""

    messages: list[Message]
    decoded: DecodedBatch
    decisions: list[Decision]
    chosen: dict[str, dict[str, StoredPrediction]]
    claimed: list[Decision]
    token: str
    outcome: DecisionOutcome


class DecisionService:
    """The join-decide-store-publish loop, with online evaluation and drift watching."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: DecisionStore | None = None,
        metrics: DecisionMetrics | None = None,
        evaluator: OnlineEvaluator | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.config = config = settings.decisions
        topics = settings.topics
        self.predictions_topic = topics.full("predictions")
        self.completed_topic = topics.full("completed")
        self.started_topic = topics.full("started")
        self.decisions_topic = topics.full("decisions")
        self.dlq_topic = topics.full("dlq")
        self.group = group_name(settings, "decisions")
        self.transactional_id = f"{self.group}.{config.instance_id}"
        self.store = store or DecisionStore(config.resolved_store_url)
        self.metrics = metrics or DecisionMetrics()
        self.evaluator = evaluator or OnlineEvaluator(settings, self.store, self.metrics)
        self.drift = drift or DriftMonitor(settings, self.store, self.metrics)
        self.decoder = BatchDecoder(settings)
        self.joins = PendingJoins(self.store, int(config.join_window_s * 1000))
        self.recovery = PublicationRecovery(settings, self.store, self.group)
        decision_serde = SingleObjectSerde(DECISION)
        self.decision_encoder = ColumnarEncoder(decision_serde.schema, decision_serde.header)
        # Per partition of the decisions topic, an offset at or below where the next publication
        # lands: recorded with each claim so a crash can be settled by reading from there.
        self._decision_floor: dict[int, int] = {}
        self._outcomes: list[DecisionOutcome] = []  # committed since the last cycle ended
        topic_names = [self.predictions_topic, self.completed_topic]
        if config.drift.enabled:
            topic_names.append(self.started_topic)
        self.loop: ExactlyOnceLoop[DecidedBatch] = ExactlyOnceLoop(
            settings,
            self,
            LoopConfig.of(
                config,
                # The outbox holds one claim per instance: a batch is published and settled
                # before the next one claims.
                overlap=False,
                empty_batches=True,  # expired joins are decided on time
                retriable=(SQLAlchemyError, SchemaRegistryUnavailableError),
                # Static membership: a restarted replica takes its partitions back at once
                # instead of the group waiting out the dead member's session.
                consumer_overrides={"group.instance.id": self.transactional_id},
                on_assignment=self._assignment,
            ),
            group=self.group,
            transactional_id=self.transactional_id,
            topics=topic_names,
            name="decision service",
        )

    def run(
        self, stop: threading.Event, on_batch: Callable[[DecisionOutcome], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set; the batch in flight is finished or aborted, then close."""
        serve(
            self.metrics.registry,
            self.config.metrics_port,
            self.config.metrics_host,
            ready=lambda: self.loop.ready,
        )
        self._read_registry()
        logger.info(
            "decision service store=%s",
            self.store.engine.url.render_as_string(hide_password=True),
        )

        def started() -> None:
            # The producer has fenced an earlier incarnation and aborted what it left open: the
            # fate of its last publication is settled, and can be read.
            self.recovery.recover()
            self._decision_floor = self.recovery.end_offsets()

        def after_cycle() -> None:
            self.evaluator.maybe_refresh()
            self.drift.maybe_check()
            outcomes, self._outcomes = self._outcomes, []
            for outcome in outcomes:
                if on_batch is not None and (outcome.consumed or outcome.decided):
                    on_batch(outcome)

        self.loop.run(stop, started=started, after_cycle=after_cycle)

    def _read_registry(self) -> None:
        """Start the registry reads the loop needs later (the champions' validation MAEs, the
        drift profile) and wait for them a while: mlflow's import alone is seconds of CPU, better
        spent before the first batch than, GIL-bound, in the middle of the stream, where it holds
        the decisions back. A registry that does not answer in time
        is waited for in the background."""
        reads: list[Future[Any]] = [self.evaluator.prefetch()]
        if self.config.drift.enabled:
            reads.append(self.drift.prefetch())
        _, pending = wait(reads, timeout=REGISTRY_WAIT_S)
        if pending:
            logger.warning(
                "the model registry did not answer in %.0f s; online-error and drift checks "
                "start when it does",
                REGISTRY_WAIT_S,
            )

    def close(self) -> None:
        """Release the store (the Kafka clients close when ``run`` ends)."""
        self.store.close()

    # -- one batch ------------------------------------------------------------------------------
    def prepare(self, messages: list[Message]) -> DecidedBatch | None:
        """Store and decide one batch (possibly empty: expired joins still get decided) and claim
        what to publish; None when there is nothing to publish or commit."""
        assert self.loop.consumer is not None
        decoded = self.decoder.decode(messages)
        partitions = {
            tp.partition
            for tp in self.loop.consumer.assignment()
            if tp.topic == self.predictions_topic
        }
        outcome = DecisionOutcome(consumed=len(messages), dead_letters=len(decoded.dead))
        outcome.predictions, outcome.completions = (
            len(decoded.predictions),
            len(decoded.completions),
        )
        if not messages and not partitions:
            return None

        started = time.perf_counter()
        token = uuid.uuid4().hex
        with self.store.begin() as conn:
            at = now_ms()
            self.joins.hold(conn, partitions, at)
            self.joins.tidy(conn, at)
            self.store.add_predictions(conn, decoded.predictions)
            self.store.add_actuals(conn, decoded.completions)
            seen = {
                row["ride_id"]: (partition, row["source_event_time_ms"])
                for row, partition in zip(decoded.predictions, decoded.partitions, strict=True)
                if row["role"] == "champion"
            }
            self.store.open_joins(conn, seen, at)
            # The rides whose last champion prediction just arrived decide from memory; those
            # that waited too long, from the store.
            joined = self.joins.join(decoded.predictions, decoded.partitions)
            expired = self.store.expired(
                conn, at - int(self.config.join_window_s * 1000), partitions
            )
            chosen = {
                ride_id: by_target
                for ride_id, by_target in joined.items()
                if len(by_target) == len(TARGETS)
            }
            chosen.update(self.store.champion_predictions(conn, expired, pending_only=True))
            # One decision time for the batch: the transaction that stores them all.
            decided_at = instant(at)
            decisions = [
                self._decide(ride_id, estimates, decided_at)
                for ride_id, estimates in chosen.items()
            ]
            if self.store.record_decisions(conn, decisions) < len(decisions):
                # Some ride was decided before (elsewhere, or by a batch now redelivered): the
                # store keeps that decision, and it is the store's that gets published.
                stored = self.store.decided_at(conn, [d.ride_id for d in decisions])
                decisions = [d for d in decisions if stored.get(d.ride_id) == at]
            evaluated = {row["ride_id"] for row in decoded.completions} | {
                row["ride_id"] for row in decoded.predictions
            }
            self.store.evaluate(conn, sorted(evaluated), at)
            claimed = (
                self.store.claim_unpublished(
                    conn,
                    self.config.instance_id,
                    token,
                    partitions,
                    dict(self._decision_floor),
                    known={d.ride_id: d for d in decisions},
                )
                if partitions
                else []
            )
        self.joins.committed(joined, chosen, at)  # every ride chosen is decided now
        self.metrics.pending.set(len(self.joins))
        self.metrics.store_seconds.observe(time.perf_counter() - started)
        outcome.decided = len(decisions)
        outcome.partial = sum(d.partial for d in decisions)
        outcome.published = len(claimed)
        outcome.decisions = decisions
        if not messages and not claimed:
            return None
        return DecidedBatch(messages, decoded, decisions, chosen, claimed, token, outcome)

    def publish(self, producer: Producer, batches: list[DecidedBatch]) -> None:
        """The claimed decisions and the dead letters into the open transaction."""
        for batch in batches:
            headers: list[tuple[str, str | bytes | None]] = [(CLAIM_HEADER, batch.token.encode())]
            values = self.encode_decisions(batch.claimed)
            for decision, value in zip(batch.claimed, values, strict=True):
                transactions.produce(
                    producer,
                    self.decisions_topic,
                    value,
                    decision.ride_id,
                    headers,
                    self._on_decision_delivered,
                )
            transactions.produce_dead_letters(
                producer, self.dlq_topic, batch.decoded.dead, self.group
            )
            for letter in batch.decoded.dead:
                self.metrics.dead_letters.labels(letter.kind).inc()

    def committed(self, batches: list[DecidedBatch], seconds: float) -> None:
        """After the Kafka commit: the claims are published; metrics."""
        self.metrics.commit_seconds.observe(seconds)
        for batch in batches:
            if batch.claimed:
                self.store.settle(self.config.instance_id, batch.token)
            self.drift.keep(batch.decoded.started)
            decoded = batch.decoded
            self.metrics.observe_batch(
                {
                    self.predictions_topic: len(decoded.predictions),
                    self.completed_topic: len(decoded.completions),
                    self.started_topic: len(decoded.started),
                },
                batch.decisions,
                batch.chosen,
            )
            self._outcomes.append(batch.outcome)

    def aborted(self, reason: str) -> None:
        """After a failed batch was aborted and rewound."""
        self.metrics.aborts.labels(reason).inc()

    def _assignment(self, partitions: dict[str, int]) -> None:
        for topic, count in partitions.items():
            self.metrics.assigned.labels(topic).set(count)

    def _decide(
        self, ride_id: str, chosen: dict[str, StoredPrediction], decided_at: datetime
    ) -> Decision:
        estimates = {
            target: Estimate(p.value, p.model_name, p.model_version) for target, p in chosen.items()
        }
        pickup = wall_clock(next(iter(chosen.values())).pickup_time_ms)
        return decide(ride_id, pickup, estimates, self.config.policy, decided_at=decided_at)

    def encode_decisions(self, decisions: list[Decision]) -> list[bytes]:
        """The Decision messages' values, encoded column by column (byte for byte what fastavro
        writes: tests/decision_service/test_encoding.py holds them to it)."""
        # Typed arrays (missing as NaN/NaT), not lists of objects: the encoder then needs no
        # pandas to find the missing values.
        return self.decision_encoder.encode(
            {
                "ride_id": [d.ride_id for d in decisions],
                "quote": np.array([d.quote for d in decisions], dtype=np.float64),
                "duration_minutes": np.array(
                    [d.duration_minutes for d in decisions], dtype=np.float64
                ),
                "eta": np.array([d.eta for d in decisions], dtype="datetime64[ms]"),
                "expected_tip": np.array([d.expected_tip for d in decisions], dtype=np.float64),
                # Tuples: a handful of distinct values, each encoded once (see ridestream.serde.columnar_encode).
                "actions": [tuple(d.actions) for d in decisions],
                "models": [tuple(d.models) for d in decisions],
                "partial": np.array([d.partial for d in decisions], dtype=bool),
                "decided_at": np.array([to_ms(d.decided_at) for d in decisions], dtype=np.int64),
            },
            len(decisions),
        )

    def _on_decision_delivered(self, error: KafkaError | None, msg: Message) -> None:
        # Where our next publication can start at the earliest: past our own last decision.
        # (Other replicas may have written since; reading their records on recovery is harmless.)
        if error is None:
            partition, offset = msg.partition() or 0, msg.offset() or 0
            self._decision_floor[partition] = max(
                self._decision_floor.get(partition, 0), offset + 1
            )
