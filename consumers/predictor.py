"""The per-target predictor: consume RideStarted, predict a batch at once, produce Predictions and
commit the input offsets in the same Kafka transaction (exactly once, read_committed downstream).

One loop, started once per target (``ridestream predict --target duration``), each target in its
own consumer group; several processes of one target share its partitions. Per batch:

    consume → decode → validate → features → champion (+ challenger as shadow) → encode
    → produce predictions and dead letters → send offsets → commit

The commit (two round trips to the coordinators) runs on a helper thread while the loop consumes
and prepares the next batch, which touches neither the producer nor a transaction; the loop waits
for it before producing again, so there is still one transaction at a time and a transaction's
offsets are the positions right after its last batch. A transaction takes more than one batch,
up to ``transaction_max_batches``, of what has already arrived: while the previous transaction
still commits (instead of waiting for it), and under a backlog (the last batch was full), where
every transaction's fixed work on the broker (offsets, markers on every partition, the
transaction log) took a share of the two cores the loop shares with it. At moderate rates
batches are not full, the commit ends first, and every batch is its own transaction. Batches
consumed across a rebalance are dropped and read again from the committed offsets.

Decoding and encoding are columnar (``ridestream.serde.columnar_encode`` and ``columnar_decode``), a batch at a time: at stream
rates fastavro's record-at-a-time calls were the largest stage after the model
(``bench/stream.py`` measures every stage).

Anything that cannot be decoded or breaks the contract goes to the DLQ in the same transaction,
so it is dead-lettered exactly once too, and the rest of the batch goes on. On a transaction
error the transaction is aborted, the consumer rewound to the committed offsets, and its batches
retried after a backoff; a fatal error (this producer was fenced) ends the loop. Models are read
once per batch from alias-following handles, so an alias move takes effect at the next batch
boundary.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from consumers.metrics import PredictorMetrics
from ridestream.contracts.events import RideStarted, utc_now
from ridestream.contracts.schemas import PREDICTION, RIDE_STARTED
from ridestream.exceptions import RidestreamError, SchemaRegistryUnavailableError
from ridestream.kafka import dlq, transactions
from ridestream.kafka.clients import Batches, consumer_config, rewind_to_committed
from ridestream.kafka.decoding import BatchReader, Decoded
from ridestream.ml.features import build_features
from ridestream.ml.models import AliasedModel, LoadedModel
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.observability import observe_all, serve
from ridestream.runtime import settle_for_streaming
from ridestream.serde.codecs import Serde, SingleObjectSerde, make_serde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import Settings

logger = logging.getLogger(__name__)


def group_id(settings: Settings, target: str) -> str:
    """The consumer group of a target's predictors (topic prefix applied, for shared clusters)."""
    return f"{settings.topics.prefix}ridestream.predictor.{target}"


@dataclass
class BatchOutcome:
    """What one committed batch did (for tests and logs)."""

    consumed: int
    predicted: int  # rides the champion predicted
    dead_letters: int
    shadowed: int = 0  # rides the challenger also predicted
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class PreparedBatch:
    """A batch up to its messages: decoded, validated, predicted and encoded, nothing produced."""

    frame: pd.DataFrame
    dead: list[dlq.DeadLetter]
    # Per model (the champion, then a shadowing challenger): its keys and encoded predictions.
    outputs: list[tuple[LoadedModel, list[str], list[bytes]]]
    outcome: BatchOutcome


@dataclass
class Committing:
    """The batches of a transaction being committed on the helper thread."""

    commit: transactions.CommitInFlight
    batches: list[PreparedBatch]


class Predictor:
    """The exactly-once predict loop of one target."""

    def __init__(
        self,
        settings: Settings,
        target: str,
        *,
        champion: AliasedModel | None = None,
        challenger: AliasedModel | None = None,
        metrics: PredictorMetrics | None = None,
    ) -> None:
        if target not in ("duration", "cost", "tip"):
            raise RidestreamError(f"unknown target {target!r}: duration, cost or tip")
        self.settings = settings
        self.target = target
        self.group = group_id(settings, target)
        self.config = settings.predictor
        topics = settings.topics
        self.input_topic, self.output_topic, self.dlq_topic = (
            topics.full("started"),
            topics.full("predictions"),
            topics.full("dlq"),
        )
        self.metrics = metrics or PredictorMetrics(target)
        if champion is None:
            client = mlflow_client(settings.mlflow)
            name = MODEL_NAMES[target]
            champion = AliasedModel(client, name, CHAMPION, settings.models)
            if settings.predictor.shadow:
                challenger = AliasedModel(client, name, CHALLENGER, settings.models, required=False)
        self.champion, self.challenger = champion, challenger
        self.serde: Serde = make_serde(RIDE_STARTED, settings)
        prediction_serde = SingleObjectSerde(PREDICTION)
        self.encoder = ColumnarEncoder(prediction_serde.schema, prediction_serde.header)
        self.reader = BatchReader(RideStarted, self.serde)
        if self.reader.decoder is None:
            logger.info("input framing is Confluent; predictions stay single-object framed")
        instance = self.config.instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.transactional_id = f"{self.group}.{instance}"
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._committing: Committing | None = None
        # One commit at a time, on one thread (started at the first commit).
        self._commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._rebalances = 0  # revocations and losses so far: a batch read across one is dropped

    # -- lifecycle ------------------------------------------------------------------------------
    def _connect(self) -> tuple[Consumer, Producer]:
        consumer = Consumer(
            {
                **consumer_config(
                    self.settings,
                    self.group,
                    **{"statistics.interval.ms": self.config.statistics_interval_ms},
                ),
                "stats_cb": self.metrics.librdkafka_statistics,  # a callable: no config value
            }
        )
        producer = transactions.transactional_producer(
            self.settings, self.transactional_id, self.config.transaction_timeout_ms
        )
        # Fences any earlier producer with this id and aborts what it left open.
        producer.init_transactions(30)
        consumer.subscribe([self.input_topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        return consumer, producer

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Rebalance callbacks run inside consume(): no transaction is open for producing then,
        # though the last transaction may still be committing on the helper thread. It is not
        # waited for here (its offset commit may be refused until the rebalance ends): it commits
        # its outputs and offsets together or not at all, the partitions' next owner reads
        # committed offsets only once no transaction holds them (read_committed asks for stable
        # offsets), and the loop aborts and rewinds if it failed.
        self._rebalances += 1
        logger.info("partitions revoked: %s", [f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        logger.warning(
            "partitions lost (nothing is committed for them): %s",
            [f"{p.topic}[{p.partition}]" for p in partitions],
        )

    def run(
        self, stop: threading.Event, on_batch: Callable[[BatchOutcome], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set; the transaction in flight is finished or aborted, then
        the clients close."""
        serve(self.metrics.registry, self.config.metrics_port, self.config.metrics_host)
        self.champion.start_polling()
        if self.challenger is not None:
            self.challenger.start_polling()
        consumer, producer = self.consumer, self.producer = self._connect()
        settle_for_streaming()  # models and clients loaded: what stays from here is steady
        backoff = self.config.retry_backoff_s
        logger.info(
            "predictor target=%s group=%s transactional.id=%s started",
            self.target,
            self.group,
            self.transactional_id,
        )
        try:
            batches = Batches(
                consumer,
                self.config.batch_max_messages,
                self.config.batch_max_wait_s,
                self.config.batch_linger_s,
            )
            while not stop.is_set():
                rebalances = self._rebalances
                messages = batches.next()
                try:
                    prepared = [self.prepare(messages)] if messages else []
                    while prepared and self._takes_another(prepared):
                        more = batches.ready()
                        if not more:
                            break
                        prepared.append(self.prepare(more))
                    self._settle(on_batch)  # the previous transaction, overlapped until here
                    if not prepared:
                        continue
                    if self._rebalances != rebalances:
                        # Read across a rebalance: some of it may be another consumer's now.
                        rewind_to_committed(consumer)
                        continue
                    self._committing = self.publish(prepared)
                except (KafkaException, SchemaRegistryUnavailableError) as exc:
                    self._settle_quietly(on_batch)
                    self._abort_and_rewind(exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.retry_backoff_max_s)
                    continue
                backoff = self.config.retry_backoff_s
        finally:
            try:
                self._settle(on_batch)  # the last transaction commits before the clients close
            except KafkaException as exc:
                logger.warning("the last transaction's commit failed (%s); aborting it", exc)
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(10)
            self._commits.shutdown()
            self.champion.stop()
            if self.challenger is not None:
                self.challenger.stop()
            consumer.close()
            producer.flush(10)
            logger.info("predictor target=%s stopped", self.target)

    def _abort_and_rewind(self, exc: Exception) -> None:
        assert self.consumer is not None
        assert self.producer is not None
        reason = transactions.abort_and_rewind(self.producer, self.consumer, exc)
        self.metrics.aborts.labels(self.target, reason).inc()

    # -- one batch ------------------------------------------------------------------------------
    def prepare(self, messages: list[Message]) -> PreparedBatch:
        """Everything a batch needs before its transaction: no producer, no Kafka calls."""
        for msg in messages:
            if msg.error():
                raise KafkaException(msg.error())
        champion, challenger = (
            self.champion.current,
            self.challenger.current if self.challenger else None,
        )
        assert champion is not None, "the champion handle always holds a model"
        frame, dead = self.validate(self.decode(messages))
        self.metrics.consumed.labels(self.target).inc(len(messages))
        self.metrics.batch_size.labels(self.target).observe(len(messages))
        outputs = []
        if not frame.empty:
            features = build_features(frame)
            for model in (champion, challenger) if challenger is not None else (champion,):
                outputs.append((model, *self._predict(model, frame, features)))
        outcome = BatchOutcome(
            consumed=len(messages),
            predicted=len(frame) if outputs else 0,
            dead_letters=len(dead),
            shadowed=len(frame) if len(outputs) > 1 else 0,
            versions={
                CHAMPION: champion.version,
                **({CHALLENGER: challenger.version} if challenger else {}),
            },
        )
        return PreparedBatch(frame, dead, outputs, outcome)

    def publish(self, prepared: list[PreparedBatch]) -> Committing:
        """Produce prepared batches, all consumed since the last transaction, in a new one, and
        start committing it with the consumer's positions after them."""
        assert self.consumer is not None
        assert self.producer is not None
        producer = self.producer
        producer.begin_transaction()
        for batch in prepared:
            for model, ride_ids, encoded in batch.outputs:
                transactions.produce_all(producer, self.output_topic, encoded, ride_ids)
                self.metrics.predictions.labels(self.target, model.role, model.version).inc(
                    len(ride_ids)
                )
                self.metrics.model_in_use(model.role, model.name, model.version)
            transactions.produce_dead_letters(producer, self.dlq_topic, batch.dead, self.group)
            for letter in batch.dead:
                self.metrics.dead_letters.labels(self.target, letter.kind).inc()
        commit = transactions.CommitInFlight(producer, self.consumer, self._commits)
        return Committing(commit, prepared)

    def _takes_another(self, prepared: list[PreparedBatch]) -> bool:
        """Whether the next transaction takes another batch, if one has already arrived: while
        the previous transaction still commits (the loop would only wait for it), or under a
        backlog (the last batch was full), up to ``transaction_max_batches``."""
        if len(prepared) >= self.config.transaction_max_batches:
            return False
        if prepared[-1].outcome.consumed >= self.config.batch_max_messages:
            return True
        committing = self._committing
        return committing is not None and not committing.commit.done()

    def _settle(self, on_batch: Callable[[BatchOutcome], None] | None) -> None:
        """Wait for the transaction being committed; raises its commit's error."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        self.metrics.commit_seconds.labels(self.target).observe(committing.commit.wait())
        self.metrics.transaction_batches.labels(self.target).observe(len(committing.batches))
        for batch in committing.batches:
            self._observe_latency(batch.frame)
            if on_batch is not None:
                on_batch(batch.outcome)

    def _settle_quietly(self, on_batch: Callable[[BatchOutcome], None] | None) -> None:
        # Before an abort: a commit still running must end first; if it failed, the abort and
        # rewind that follow deal with it.
        with contextlib.suppress(KafkaException):
            self._settle(on_batch)

    def decode(self, messages: list[Message]) -> Decoded:
        """Decode a batch into one frame (see :class:`ridestream.kafka.decoding.BatchReader`)."""
        return self.reader.decode(messages)

    def validate(self, decoded: Decoded) -> tuple[pd.DataFrame, list[dlq.DeadLetter]]:
        """The events that keep the contract, and every dead letter (undecodable or invalid)."""
        valid = self.reader.validate(decoded)
        return valid.frame, valid.dead

    def _predict(
        self, model: LoadedModel, frame: pd.DataFrame, features: np.ndarray
    ) -> tuple[list[str], list[bytes]]:
        started = time.perf_counter()
        values = model.predict(features)
        self.metrics.predict_seconds.labels(self.target, model.role).observe(
            time.perf_counter() - started
        )
        return self.encode_predictions(model, frame, values)

    def encode_predictions(
        self, model: LoadedModel, frame: pd.DataFrame, values: np.ndarray
    ) -> tuple[list[str], list[bytes]]:
        """The Prediction messages of a batch (keys and values), encoded column by column."""
        n = len(frame)
        ride_ids: list[str] = frame["ride_id"].tolist()
        encoded = self.encoder.encode(
            {
                "ride_id": ride_ids,
                "target": [self.target] * n,
                "value": values,
                "model_name": [model.name] * n,
                "model_version": [model.version] * n,
                "role": [model.role] * n,
                "source_event_id": frame["event_id"].tolist(),
                "source_event_time": frame["event_time"],
                "pickup_time": frame["pickup_time"],
                "predicted_at": np.full(n, int(utc_now().timestamp() * 1000)),
            },
            n,
        )
        return ride_ids, encoded

    def _observe_latency(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        # In numpy: pandas' datetime arithmetic cost ~0.5 ms per batch of 1,000, more than the
        # Kafka client's produce calls for it.
        event_ms = frame["event_time"].dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
        ages = (time.time() * 1000.0 - event_ms.view(np.int64)) / 1000.0
        observe_all(self.metrics.latency.labels(self.target), np.maximum(ages, 0.0))
