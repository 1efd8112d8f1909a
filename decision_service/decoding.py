"""A decision service batch, decoded: each topic's messages as validated rows for the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Message

from ridestream.clock import epoch_ms, now_ms
from ridestream.contracts.events import Prediction, RideCompleted
from ridestream.contracts.schemas import PREDICTION, RIDE_COMPLETED
from ridestream.kafka import dlq
from ridestream.kafka.decoding import EventDecoder
from ridestream.serde.codecs import SingleObjectSerde, make_serde
from ridestream.settings import Settings


def records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the store from equally long columns (or constants), as Python values."""
    length = max(len(v) for v in columns.values() if not np.isscalar(v))
    lists = [
        [value] * length if np.isscalar(value) else np.asarray(value).tolist()
        for value in columns.values()
    ]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


@dataclass
class DecodedBatch:
    """The store's rows of one batch, the started rides for drift, and the dead letters."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)  # of each prediction
    completions: list[dict[str, Any]] = field(default_factory=list)
    started: list[Message] = field(default_factory=list)  # read by the drift monitor
    dead: list[dlq.DeadLetter] = field(default_factory=list)


class BatchDecoder:
    """Decodes the decision service's input topics."""

    def __init__(self, settings: Settings) -> None:
        topics = settings.topics
        self.predictions_topic = topics.full("predictions")
        self.completed_topic = topics.full("completed")
        self.started_topic = topics.full("started")
        self.prediction_reader = EventDecoder(Prediction, SingleObjectSerde(PREDICTION))
        self.completed_reader = EventDecoder(RideCompleted, make_serde(RIDE_COMPLETED, settings))

    def decode(self, messages: list[Message]) -> DecodedBatch:
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
        decoded = DecodedBatch()
        received = now_ms()
        predictions = self.prediction_reader.read(by_topic[self.predictions_topic])
        completions = self.completed_reader.read(by_topic[self.completed_topic])
        decoded.dead = predictions.dead + completions.dead
        frame = predictions.frame
        if not frame.empty:
            decoded.predictions = records(
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
            decoded.completions = records(
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
