"""The per-target predictor: consume RideStarted, predict a batch at once, produce Predictions and
commit the input offsets in the same Kafka transaction (exactly once, read_committed downstream).

One loop, started once per target (``ridestream predict --target duration``), each target in its
own consumer group; several processes of one target share its partitions. Per batch:

    consume → decode → validate → features → champion (+ challenger as shadow) → encode
    → produce predictions and dead letters → send offsets → commit

The cycle itself — transactions, overlapped commits, several batches a transaction under a
backlog, rebalances, abort and rewind, stopping — is :class:`ridestream.kafka.loop.ExactlyOnceLoop`;
this module is the predictor's part of it: ``prepare`` (decode, validate, predict, encode: no
producer), ``publish`` (produce into the open transaction) and ``committed`` (metrics, latency).
The predictor commits with ``overlap``: the commit (two round trips to the coordinators) runs on
a helper thread while the next batch is consumed and prepared.

Decoding and encoding are columnar (``ridestream.serde.columnar_decode``, ``columnar_encode``), a
batch at a time. Anything that cannot be decoded or breaks the contract goes to the DLQ in the
same transaction, so it is dead-lettered exactly once too, and the rest of the batch goes on.
Models are read once per batch from alias-following handles, so an alias move takes effect at the
next batch boundary.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from confluent_kafka import (
    Message,
    Producer,
)

from consumers.metrics import PredictorMetrics
from ridestream.contracts.events import RideStarted, utc_now
from ridestream.contracts.schemas import PREDICTION, RIDE_STARTED
from ridestream.exceptions import RidestreamError
from ridestream.kafka import dlq, transactions
from ridestream.kafka.decoding import DecodedEvents, EventDecoder
from ridestream.kafka.loop import ExactlyOnceLoop, group_name
from ridestream.kafka.loop_config import LoopConfig
from ridestream.ml.features import build_features
from ridestream.ml.models import AliasedModel, LoadedModel
from ridestream.ml.registry import CHALLENGER, CHAMPION, MODEL_NAMES
from ridestream.ml.tracking import mlflow_client
from ridestream.observability import observe_all, serve
from ridestream.serde.codecs import Serde, SingleObjectSerde, make_serde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.serde.exceptions import SchemaRegistryUnavailableError
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

# Rides in the warm-up batch: enough for the batch paths (columnar decode, the models' threads).
WARM_UP_RIDES = 256


@dataclass
class PredictionOutcome:
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
    outcome: PredictionOutcome


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
        self.group = group_name(settings, "predictor", target)
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
        self.reader = EventDecoder(RideStarted, self.serde)
        if self.reader.decoder is None:
            logger.info("input framing is Confluent; predictions stay single-object framed")
        instance = self.config.instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.transactional_id = f"{self.group}.{instance}"
        self._on_batch: Callable[[PredictionOutcome], None] | None = None
        config = self.config
        self.loop: ExactlyOnceLoop[PreparedBatch] = ExactlyOnceLoop(
            settings,
            self,
            LoopConfig.of(
                config,
                transaction_max_batches=config.transaction_max_batches,
                overlap=True,
                retriable=(SchemaRegistryUnavailableError,),
                consumer_overrides={"statistics.interval.ms": config.statistics_interval_ms},
                stats_cb=self.metrics.librdkafka_statistics,
                on_assignment=self.metrics.assignment,
            ),
            group=self.group,
            transactional_id=self.transactional_id,
            topics=[self.input_topic],
            name=f"predictor target={target}",
        )

    def run(
        self, stop: threading.Event, on_batch: Callable[[PredictionOutcome], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set; the transaction in flight is finished or aborted, then
        the clients close."""
        serve(
            self.metrics.registry,
            self.config.metrics_port,
            self.config.metrics_host,
            ready=lambda: self.loop.ready,
        )
        self._on_batch = on_batch
        self.champion.start_polling()
        if self.challenger is not None:
            self.challenger.start_polling()
        try:
            self.loop.run(stop, started=self.warm_up)
        finally:
            self.champion.stop()
            if self.challenger is not None:
                self.challenger.stop()

    def warm_up(self) -> None:
        """One made-up batch through the path a batch takes (decode, validate, features, each
        model, encode), before the group hands this replica its partitions: first calls pay for
        what later ones reuse (lazy imports, allocations, the models' thread pools), and the
        first real rides should not. Triton's model warm-up, for the same reason. Nothing is
        published or counted; a warm-up that fails is logged and the loop serves regardless."""
        ride = RideStarted(
            ride_id="warm-up", pickup_time=datetime(2023, 1, 2, 8), pickup_zone=74,
            dropoff_zone=236, trip_distance=2.5, passenger_count=1, vendor_id=2, rate_code=1,
            payment_type=1, trip_type=1,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            value = self.serde.encode(ride.to_record(), self.input_topic)
            messages = [
                Message(topic=self.input_topic, partition=0, offset=i, key=b"warm-up", value=value)
                for i in range(WARM_UP_RIDES)
            ]
            frame, _ = self.validate(self.decode(messages))
            features = build_features(frame)
            handles = (self.champion, self.challenger)
            for model in (h.current for h in handles if h is not None):
                if model is not None:
                    self.encode_predictions(model, frame, model.predict(features))
        except Exception:  # an optimisation only: serving does not depend on it
            logger.warning("warm-up failed; serving without it", exc_info=True)
            return
        logger.info("warmed up in %.0f ms", (time.perf_counter() - started) * 1000)

    # -- one batch ------------------------------------------------------------------------------
    def prepare(self, messages: list[Message]) -> PreparedBatch:
        """Everything a batch needs before its transaction: no producer, no Kafka calls."""
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
        outcome = PredictionOutcome(
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

    def publish(self, producer: Producer, prepared: list[PreparedBatch]) -> None:
        """Produce prepared batches into the open transaction."""
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

    def committed(self, prepared: list[PreparedBatch], seconds: float) -> None:
        """After a transaction's commit: its timings, each batch's latency and outcome."""
        self.metrics.commit_seconds.labels(self.target).observe(seconds)
        self.metrics.transaction_batches.labels(self.target).observe(len(prepared))
        for batch in prepared:
            self._observe_latency(batch.frame)
            if self._on_batch is not None:
                self._on_batch(batch.outcome)

    def aborted(self, reason: str) -> None:
        """After a failed transaction was aborted and its batches rewound."""
        self.metrics.aborts.labels(self.target, reason).inc()

    def decode(self, messages: list[Message]) -> DecodedEvents:
        """Decode a batch into one frame (see :class:`ridestream.kafka.decoding.EventDecoder`)."""
        return self.reader.decode(messages)

    def validate(self, decoded: DecodedEvents) -> tuple[pd.DataFrame, list[dlq.DeadLetter]]:
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
        # In numpy: pandas' datetime arithmetic would cost more than the Kafka client's produce
        # calls for the batch.
        event_ms = frame["event_time"].dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
        ages = (time.time() * 1000.0 - event_ms.view(np.int64)) / 1000.0
        observe_all(self.metrics.latency.labels(self.target), np.maximum(ages, 0.0))
