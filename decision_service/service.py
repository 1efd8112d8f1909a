"""The decision service: join each ride's champion predictions, decide, store, publish; evaluate
every model version against ground truth; watch the stream's features for drift.

Reads ``rides.predictions`` (read_committed), ``rides.completed`` and ``rides.started`` (for drift)
in one consumer group. Per batch (also an empty one, so expired joins are decided on time):

    decode → dead-letter what breaks the contract
    → store transaction: predictions and actuals (idempotent), open joins, decide the rides whose
      three champion predictions are in and those whose join window expired (partial), record the
      errors of predictions that have ground truth, claim the unpublished decisions (outbox)
    → Kafka transaction: the claimed decisions, the dead letters and the input offsets
    → mark the claim published

The store is written before the offsets are committed, and every store write is idempotent, so a
redelivered batch changes nothing. A decision is published exactly once: if the process dies
between the two commits, the next start reads the decisions topic from the offsets recorded with
the claim and marks what it finds published; the rest is published again (``_recover``).

Scaling: rides are keyed by ride_id, so a ride's predictions share a partition; replicas of the
service share the partitions, each sweeping and publishing only the rides of its own partitions.
Each replica needs a stable ``instance_id`` (its transactional id and its claim).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # no __all__ there
from sqlalchemy.exc import SQLAlchemyError
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from decision_service.drift import DriftMonitor
from decision_service.evaluation import OnlineEvaluator
from decision_service.metrics import DecisionMetrics
from decision_service.policy import Estimate, decide
from ridestream.clock import epoch_ms, instant, now_ms, to_ms, wall_clock
from ridestream.contracts.events import TARGETS, Decision, Prediction, RideCompleted
from ridestream.contracts.schemas import DECISION, PREDICTION, RIDE_COMPLETED
from ridestream.exceptions import RidestreamError, SchemaRegistryUnavailableError
from ridestream.kafka import dlq, transactions
from ridestream.kafka.clients import (
    Batches,
    consumer_config,
    is_transient,
    make_admin,
    unique_group_id,
)
from ridestream.kafka.decoding import BatchReader
from ridestream.observability import observe_all, serve
from ridestream.runtime import settle_for_streaming
from ridestream.serde.codecs import SingleObjectSerde, make_serde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import Settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.records import StoredPrediction

logger = logging.getLogger(__name__)

CLAIM_HEADER = "ridestream.publish.claim"
REGISTRY_WAIT_S = 60.0


def _records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the store from equally long columns (or constants), as Python values."""
    length = max(len(v) for v in columns.values() if not np.isscalar(v))
    lists = [
        [value] * length if np.isscalar(value) else np.asarray(value).tolist()
        for value in columns.values()
    ]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


def group_id(settings: Settings) -> str:
    """The decision service's consumer group (topic prefix applied, for shared clusters)."""
    return f"{settings.topics.prefix}ridestream.decisions"


@dataclass
class BatchOutcome:
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
class _Decoded:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)  # of each prediction
    completions: list[dict[str, Any]] = field(default_factory=list)
    started: list[Message] = field(default_factory=list)  # read by the drift monitor
    dead: list[dlq.DeadLetter] = field(default_factory=list)


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
        self.config = settings.decisions
        topics = settings.topics
        self.predictions_topic = topics.full("predictions")
        self.completed_topic = topics.full("completed")
        self.started_topic = topics.full("started")
        self.decisions_topic = topics.full("decisions")
        self.dlq_topic = topics.full("dlq")
        self.group = group_id(settings)
        self.transactional_id = f"{self.group}.{self.config.instance_id}"
        self.store = store or DecisionStore(self.config.resolved_store_url)
        self.metrics = metrics or DecisionMetrics()
        self.evaluator = evaluator or OnlineEvaluator(settings, self.store, self.metrics)
        self.drift = drift or DriftMonitor(settings, self.store, self.metrics)
        self.prediction_reader = BatchReader(Prediction, SingleObjectSerde(PREDICTION))
        self.completed_reader = BatchReader(RideCompleted, make_serde(RIDE_COMPLETED, settings))
        decision_serde = SingleObjectSerde(DECISION)
        self.decision_encoder = ColumnarEncoder(decision_serde.schema, decision_serde.header)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        # Per partition of the decisions topic, an offset at or below where the next publication
        # lands: recorded with each claim so a crash can be settled by reading from there.
        self._decision_floor: dict[int, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def _connect(self) -> tuple[Consumer, Producer]:
        consumer = Consumer(
            consumer_config(
                self.settings,
                self.group,
                # Static membership: a restarted replica takes its partitions back at once instead
                # of the group waiting out the dead member's session.
                **{"group.instance.id": self.transactional_id},
            )
        )
        producer = transactions.transactional_producer(
            self.settings, self.transactional_id, self.config.transaction_timeout_ms
        )
        # Fences an earlier incarnation and aborts what it left open: after this, the fate of its
        # last publication is settled and _recover can read it.
        producer.init_transactions(30)
        topics = [self.predictions_topic, self.completed_topic]
        if self.config.drift.enabled:
            topics.append(self.started_topic)
        consumer.subscribe(topics)
        return consumer, producer

    def run(
        self, stop: threading.Event, on_batch: Callable[[BatchOutcome], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set; the batch in flight is finished or aborted, then close."""
        serve(self.metrics.registry, self.config.metrics_port, self.config.metrics_host)
        self._read_registry()
        consumer, producer = self.consumer, self.producer = self._connect()
        settle_for_streaming()  # models and clients loaded: what stays from here is steady
        self._recover()
        self._decision_floor = self._end_offsets()
        backoff = self.config.retry_backoff_s
        logger.info(
            "decision service group=%s transactional.id=%s store=%s started",
            self.group,
            self.transactional_id,
            self.store.engine.url.render_as_string(hide_password=True),
        )
        try:
            batches = Batches(
                consumer,
                self.config.batch_max_messages,
                self.config.batch_max_wait_s,
                self.config.batch_linger_s,
            )
            while not stop.is_set():
                messages = batches.next()
                try:
                    outcome = self.process(messages)
                except (KafkaException, SQLAlchemyError, SchemaRegistryUnavailableError) as exc:
                    self._abort_and_rewind(exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.retry_backoff_max_s)
                    continue
                backoff = self.config.retry_backoff_s
                self.evaluator.maybe_refresh()
                self.drift.maybe_check()
                if on_batch is not None and (outcome.consumed or outcome.decided):
                    on_batch(outcome)
        finally:
            consumer.close()
            producer.flush(10)
            logger.info("decision service stopped")

    def _read_registry(self) -> None:
        """Start the registry reads the loop needs later (the champions' validation MAEs, the
        drift profile) and wait for them a while: mlflow's import alone is seconds of CPU, better
        spent before the first batch than, GIL-bound, in the middle of the stream (it held the
        decisions of a 2,000 rides/s stream back ~10 s). A registry that does not answer in time
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

    def _abort_and_rewind(self, exc: Exception) -> None:
        assert self.consumer is not None
        assert self.producer is not None
        reason = transactions.abort_and_rewind(self.producer, self.consumer, exc)
        self.metrics.aborts.labels(reason).inc()

    # -- one batch ------------------------------------------------------------------------------
    def process(self, messages: list[Message]) -> BatchOutcome:
        """Store, decide and publish one batch (possibly empty: expired joins still get decided)."""
        assert self.consumer is not None
        assert self.producer is not None
        for msg in messages:
            if msg.error():
                raise KafkaException(msg.error())
        decoded = self._decode(messages)
        partitions = {
            tp.partition for tp in self.consumer.assignment() if tp.topic == self.predictions_topic
        }
        outcome = BatchOutcome(consumed=len(messages), dead_letters=len(decoded.dead))
        outcome.predictions, outcome.completions = (
            len(decoded.predictions),
            len(decoded.completions),
        )
        if not messages and not partitions:
            return outcome

        started = time.perf_counter()
        token = uuid.uuid4().hex
        with self.store.begin() as conn:
            at = now_ms()
            self.store.add_predictions(conn, decoded.predictions)
            self.store.add_actuals(conn, decoded.completions)
            seen = {
                row["ride_id"]: (partition, row["source_event_time_ms"])
                for row, partition in zip(decoded.predictions, decoded.partitions, strict=True)
                if row["role"] == "champion"
            }
            self.store.open_joins(conn, seen, at)
            expired = self.store.expired(
                conn, at - int(self.config.join_window_s * 1000), partitions
            )
            # The rides that got a champion prediction now or waited too long, if still pending.
            chosen = self.store.champion_predictions(
                conn, sorted({*seen, *expired}), pending_only=True
            )
            expired_set = set(expired)
            # One decision time for the batch: the transaction that stores them all.
            decided_at = instant(at)
            decisions = [
                self._decide(ride_id, estimates, decided_at)
                for ride_id, estimates in chosen.items()
                if len(estimates) == len(TARGETS) or ride_id in expired_set
            ]
            self.store.record_decisions(conn, decisions)
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
        self.metrics.store_seconds.observe(time.perf_counter() - started)

        self._publish(messages, claimed, decoded.dead, token)
        if claimed:
            self.store.settle(self.config.instance_id, token)
        self.drift.keep(decoded.started)
        self._observe(decisions, chosen, decoded)
        outcome.decided = len(decisions)
        outcome.partial = sum(d.partial for d in decisions)
        outcome.published = len(claimed)
        outcome.decisions = decisions
        return outcome

    def _decide(
        self, ride_id: str, chosen: dict[str, StoredPrediction], decided_at: datetime
    ) -> Decision:
        estimates = {
            target: Estimate(p.value, p.model_name, p.model_version) for target, p in chosen.items()
        }
        pickup = wall_clock(next(iter(chosen.values())).pickup_time_ms)
        return decide(ride_id, pickup, estimates, self.config.policy, decided_at=decided_at)

    def _publish(
        self,
        messages: list[Message],
        claimed: list[Decision],
        dead: list[dlq.DeadLetter],
        token: str,
    ) -> None:
        """One Kafka transaction: the claimed decisions, the dead letters and the input offsets."""
        assert self.consumer is not None
        assert self.producer is not None
        if not messages and not claimed:
            return
        producer = self.producer
        producer.begin_transaction()
        headers: list[tuple[str, str | bytes | None]] = [(CLAIM_HEADER, token.encode())]
        for decision, value in zip(claimed, self.encode_decisions(claimed), strict=True):
            transactions.produce(
                producer,
                self.decisions_topic,
                value,
                decision.ride_id,
                headers,
                self._on_decision_delivered,
            )
        transactions.produce_dead_letters(producer, self.dlq_topic, dead, self.group)
        for letter in dead:
            self.metrics.dead_letters.labels(letter.kind).inc()
        self.metrics.commit_seconds.observe(transactions.commit(producer, self.consumer))

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

    @retry(
        # A leader being elected (a new topic, a broker restart) is a moment, not a failure.
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def _end_offsets(self) -> dict[int, int]:
        """The decisions topic's end offset per partition, in one admin request."""
        admin = make_admin(self.settings)
        topic = self.decisions_topic
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
            request_timeout=10,
        )
        return {tp.partition: future.result().offset for tp, future in futures.items()}

    def _on_decision_delivered(self, error: KafkaError | None, msg: Message) -> None:
        # Where our next publication can start at the earliest: past our own last decision.
        # (Other replicas may have written since; reading their records on recovery is harmless.)
        if error is None:
            partition, offset = msg.partition() or 0, msg.offset() or 0
            self._decision_floor[partition] = max(
                self._decision_floor.get(partition, 0), offset + 1
            )

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self, messages: list[Message]) -> _Decoded:
        """Each topic's messages as a validated frame (column by column where possible), then the
        store's rows; what breaks a contract becomes a dead letter (not rides.started's: the
        predictors dead-letter bad rides; the drift monitor reads them, and keeps the bad ones out)."""
        by_topic: dict[str, list[Message]] = {
            self.predictions_topic: [],
            self.completed_topic: [],
            self.started_topic: [],
        }
        for msg in messages:
            by_topic[msg.topic() or ""].append(msg)
        decoded = _Decoded()
        received = now_ms()
        predictions = self.prediction_reader.read(by_topic[self.predictions_topic])
        completions = self.completed_reader.read(by_topic[self.completed_topic])
        decoded.dead = predictions.dead + completions.dead
        frame = predictions.frame
        if not frame.empty:
            decoded.predictions = _records(
                {
                    "ride_id": frame["ride_id"],
                    "target": frame["target"],
                    "model_name": frame["model_name"],
                    "model_version": frame["model_version"],
                    "role": frame["role"],
                    "value": frame["value"].astype(float),
                    "source_event_time_ms": epoch_ms(frame["source_event_time"]),
                    "pickup_time_ms": epoch_ms(frame["pickup_time"]),
                    "predicted_at_ms": epoch_ms(frame["predicted_at"]),
                    "stored_at_ms": received,
                }
            )
            decoded.partitions = [msg.partition() or 0 for msg in predictions.messages]
        frame = completions.frame
        if not frame.empty:
            decoded.completions = _records(
                {
                    "ride_id": frame["ride_id"],
                    "duration": frame["duration_minutes"].astype(float),
                    "cost": (frame["total_amount"] - frame["tip_amount"]).astype(float),
                    "tip": frame["tip_amount"].astype(float),
                    "dropoff_time_ms": epoch_ms(frame["dropoff_time"]),
                    "event_time_ms": epoch_ms(frame["event_time"]),
                    "stored_at_ms": received,
                }
            )
        decoded.started = by_topic[self.started_topic]
        return decoded

    # -- metrics --------------------------------------------------------------------------------
    def _observe(
        self,
        decisions: list[Decision],
        chosen: dict[str, dict[str, StoredPrediction]],
        decoded: _Decoded,
    ) -> None:
        m = self.metrics
        m.consumed.labels(self.predictions_topic).inc(len(decoded.predictions))
        m.consumed.labels(self.completed_topic).inc(len(decoded.completions))
        m.consumed.labels(self.started_topic).inc(len(decoded.started))
        if not decisions:
            return
        completeness = Counter("partial" if d.partial else "full" for d in decisions)
        for label, count in completeness.items():
            m.decisions.labels(label).inc(count)
        for action, count in Counter(a for d in decisions for a in d.actions).items():
            m.actions.labels(action).inc(count)
        # A ride's latency runs from its earliest prediction's source event (its RideStarted).
        source_ms = np.fromiter(
            (min(p.source_event_time_ms for p in chosen[d.ride_id].values()) for d in decisions),
            dtype=np.int64,
            count=len(decisions),
        )
        observe_all(m.latency, np.maximum(now_ms() - source_ms, 0) / 1000)

    # -- recovery -------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Settle the publication a crash left between the store's claim and its confirmation."""
        claim = self.store.in_flight(self.config.instance_id)
        if claim is None:
            return
        token, start = claim
        published = self._published_with(token, start)
        logger.warning(
            "resolving an interrupted publication: %d decisions had been published", len(published)
        )
        self.store.settle(self.config.instance_id, token, published)

    def _published_with(self, token: str, start: dict[int, int]) -> set[str]:
        """Ride ids of the committed decisions carrying ``token``, read from ``start`` to the end."""
        reader = Consumer(
            consumer_config(
                self.settings,
                unique_group_id(f"{self.group}.recovery"),
                **{"enable.partition.eof": True},
            )
        )
        try:
            ends = self._end_offsets()
            remaining = {p for p in start if ends[p] > start[p]}
            reader.assign([TopicPartition(self.decisions_topic, p, start[p]) for p in remaining])
            published: set[str] = set()
            # Open transactions of other replicas can hold the stable offset back for at most
            # their transaction timeout.
            deadline = time.monotonic() + self.config.transaction_timeout_ms / 1000 + 30
            while remaining:
                if time.monotonic() > deadline:
                    raise RidestreamError(
                        f"could not read {self.decisions_topic} to its end to settle publication "
                        f"{token}; refusing to guess (partitions {sorted(remaining)})"
                    )
                msg = reader.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if (msg.offset() or 0) >= ends[msg.partition() or 0]:
                            remaining.discard(msg.partition() or 0)
                        continue
                    raise KafkaException(error)
                if dlq.header(msg, CLAIM_HEADER) == token:
                    published.add((msg.key() or b"").decode())
            return published
        finally:
            reader.close()
