"""Kafka operations that failed."""

from __future__ import annotations

from ridestream.exceptions import RidestreamError


class KafkaOperationError(RidestreamError):
    """A Kafka operation failed; ``cause`` keeps librdkafka's KafkaError when there is one."""

    def __init__(self, message: str, cause: object | None = None) -> None:
        super().__init__(message if cause is None else f"{message}: {cause}")
        self.cause = cause


class DeliveryError(KafkaOperationError):
    """A produced message was not acknowledged by the broker."""


class QueueFullError(KafkaOperationError):
    """The producer's local queue stayed full through every bounded retry."""


class BrokerError(RidestreamError):
    """The local Kafka broker could not be fetched, formatted, started or stopped."""
