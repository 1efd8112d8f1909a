"""The publisher the ride backend imports: validated, Avro-encoded, keyed by ride_id, acknowledged.

Every event is validated against its model before anything is sent (an invalid ride raises
:class:`ridestream.contracts.exceptions.InvalidEventError` naming the field, and nothing is produced). The
producer is idempotent with ``acks=all``; a failed delivery reaches the caller on the next call or
on ``flush``/``close`` (sync), or as the awaited result (async).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from confluent_kafka import Message

from ridestream.contracts.events import Event, Prediction, RideCompleted, RideStarted, utc_now
from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.ids import random_uuids
from ridestream.contracts.schemas import PREDICTION, RIDE_COMPLETED, RIDE_STARTED
from ridestream.contracts.validation import find_problems
from ridestream.kafka.clients import producer_config
from ridestream.kafka.producer import (
    AsyncProducer,
    ClosesOnExit,
    DeliveryCallback,
    ReliableProducer,
)
from ridestream.serde.codecs import Serde, SingleObjectSerde, make_serde
from ridestream.serde.columnar_encode import ColumnarEncoder
from ridestream.settings import Settings

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


def _as_event(model: type[E], ride: E | Mapping[str, Any]) -> E:
    # A model instance was validated when it was built; a mapping is validated here.
    return ride if isinstance(ride, model) else model.parse(ride)  # type: ignore[arg-type]


class _Encoders:
    """Serdes and topics of the two ride events, built once per publisher."""

    def __init__(self, settings: Settings) -> None:
        self.started_topic = settings.topics.full("started")
        self.completed_topic = settings.topics.full("completed")
        self.started: Serde = make_serde(RIDE_STARTED, settings)
        self.completed: Serde = make_serde(RIDE_COMPLETED, settings)
        self.columnar: dict[type[Event], ColumnarEncoder] = {}
        for model, serde in ((RideStarted, self.started), (RideCompleted, self.completed)):
            if isinstance(serde, SingleObjectSerde):  # Confluent framing goes record by record
                self.columnar[model] = ColumnarEncoder(serde.schema, serde.header)

    def batch_messages(
        self, model: type[Event], rides: pd.DataFrame, **constants: Any
    ) -> tuple[list[bytes], list[str]]:
        """Validate a whole batch (nothing is encoded if a row is invalid), then encode it."""
        problems = find_problems(model, rides)
        if problems:
            first = problems[0]
            ride_id = rides["ride_id"].iloc[first.row] if "ride_id" in rides else "?"
            raise InvalidEventError(
                first.field,
                f"{first.reason} (row {first.row}, ride_id={ride_id!r}; "
                f"{len(problems)} invalid row(s) in the batch, none sent)",
            )
        n = len(rides)
        columns: dict[str, Any] = {name: rides[name] for name in rides.columns}
        columns.setdefault("event_id", random_uuids(n))
        columns.setdefault("event_time", np.full(n, int(utc_now().timestamp() * 1000)))
        for name, value in constants.items():
            columns.setdefault(name, [value] * n)
        for name, info in model.model_fields.items():  # optional fields may be left out
            if name not in columns and not info.is_required() and info.default is None:
                columns[name] = [None] * n
        keys = rides["ride_id"].tolist()
        encoder = self.columnar.get(model)
        if encoder is not None:
            return encoder.encode(columns, n), keys
        serde = self.started if model is RideStarted else self.completed
        frame = pd.DataFrame(columns)
        records = [
            model.parse({str(k): (None if pd.isna(v) else v) for k, v in row.items()})
            for row in frame.to_dict("records")
        ]
        return [serde.encode(r.to_record()) for r in records], keys

    def started_message(self, ride: RideStarted | Mapping[str, Any]) -> tuple[str, bytes, str]:
        event = _as_event(RideStarted, ride)
        topic = self.started_topic
        return topic, self.started.encode(event.to_record(), topic), event.ride_id

    def completed_message(self, ride: RideCompleted | Mapping[str, Any]) -> tuple[str, bytes, str]:
        event = _as_event(RideCompleted, ride)
        topic = self.completed_topic
        return topic, self.completed.encode(event.to_record(), topic), event.ride_id


class RidePublisher(ClosesOnExit):
    """Synchronous publisher: ``publish_*`` queue, ``flush``/``close`` wait for acknowledgements."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_delivery: DeliveryCallback | None = None,
        **producer_overrides: Any,
    ) -> None:
        """``on_delivery(err, msg)`` sees every delivery report (metrics, latency sampling)."""
        self.settings = settings
        self._encoders = _Encoders(settings)
        self._producer = ReliableProducer(
            producer_config(settings, **producer_overrides),
            queue_full_retries=settings.queue_full_retries,
            on_delivery=on_delivery,
        )

    def publish_started(self, ride: RideStarted | Mapping[str, Any]) -> None:
        """Validate, encode and queue a RideStarted keyed by its ride_id."""
        self._producer.produce(*self._encoders.started_message(ride))

    def publish_completed(self, ride: RideCompleted | Mapping[str, Any]) -> None:
        """Validate, encode and queue a RideCompleted keyed by its ride_id."""
        self._producer.produce(*self._encoders.completed_message(ride))

    def publish_started_batch(
        self, rides: pd.DataFrame, *, source: str = "backend", enhanced: bool = False
    ) -> int:
        """Validate a frame of rides (one column per RideStarted field), then encode and queue all.

        Columns absent from the frame get fresh event ids, the current event time and the given
        ``source``/``enhanced``. An invalid row raises InvalidEventError naming it, and nothing is
        sent. Returns the number of rides queued.
        """
        values, keys = self._encoders.batch_messages(
            RideStarted, rides, source=source, enhanced=enhanced
        )
        self._producer.produce_many(self._encoders.started_topic, values, keys)
        return len(values)

    def publish_completed_batch(self, rides: pd.DataFrame) -> int:
        """Validate, encode and queue a frame of RideCompleted fields; see publish_started_batch."""
        values, keys = self._encoders.batch_messages(RideCompleted, rides)
        self._producer.produce_many(self._encoders.completed_topic, values, keys)
        return len(values)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports (also done on every publish)."""
        self._producer.poll(timeout_s)

    @property
    def delivered(self) -> int:
        """Messages acknowledged so far."""
        return self._producer.delivered

    @property
    def pending(self) -> int:
        """Messages queued and not yet acknowledged."""
        return len(self._producer)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything is acknowledged; raises DeliveryError otherwise."""
        if timeout_s is None:
            timeout_s = self.settings.delivery_timeout_ms / 1000 + 5
        self._producer.flush(timeout_s)

    def close(self) -> None:
        """Flush and release the producer."""
        self.flush()


@dataclass(frozen=True)
class DeliveryReceipt:
    """Where the broker stored an event."""

    topic: str
    partition: int
    offset: int


def _receipt(msg: Message) -> DeliveryReceipt:
    # A delivered message always has its coordinates; only failed ones lack them.
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None
    assert partition is not None
    assert offset is not None
    return DeliveryReceipt(topic, partition, offset)


class AsyncRidePublisher:
    """asyncio publisher for the gateway: each ``await publish_*`` returns its delivery receipt."""

    def __init__(self, settings: Settings, **producer_overrides: Any) -> None:
        self._encoders = _Encoders(settings)
        self._predictions_topic = settings.topics.full("predictions")
        self._prediction_serde = SingleObjectSerde(PREDICTION)  # as the predictors frame them
        self._producer = AsyncProducer(
            producer_config(settings, **producer_overrides),
            queue_full_retries=settings.queue_full_retries,
        )

    async def publish_started(self, ride: RideStarted | Mapping[str, Any]) -> DeliveryReceipt:
        """Validate, encode, produce and wait for the broker's acknowledgement."""
        topic, value, key = self._encoders.started_message(ride)
        return _receipt(await self._producer.send(topic, value, key))

    async def publish_completed(self, ride: RideCompleted | Mapping[str, Any]) -> DeliveryReceipt:
        """Validate, encode, produce and wait for the broker's acknowledgement."""
        topic, value, key = self._encoders.completed_message(ride)
        return _receipt(await self._producer.send(topic, value, key))

    async def publish_prediction(self, prediction: Prediction) -> DeliveryReceipt:
        """A prediction made outside the predictors (the gateway's simple model), so the decision
        service evaluates it against the ride's ground truth like any other model version."""
        value = self._prediction_serde.encode(prediction.to_record())
        return _receipt(
            await self._producer.send(self._predictions_topic, value, prediction.ride_id)
        )

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and stop the delivery thread."""
        self._producer.close(timeout_s)
