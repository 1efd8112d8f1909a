"""Kafka operations that failed."""

from __future__ import annotations

from ridestream.exceptions import RidestreamError


class KafkaOperationError(RidestreamError):
    """A Kafka operation failed; ``cause`` keeps librdkafka's KafkaError when there is one."""

    def __init__(self, message: str, cause: object | None = None) -> None:
        super().__init__(message if cause is None else f"{message}: {cause}")
        self.cause = cause


class AccessDeniedError(KafkaOperationError):
    """The cluster refused this client: its credentials, or what its principal may do.

    No retry cures it, so services stop on it (exit code 77, EX_NOPERM) rather than retry
    in a loop: a supervisor should not restart them on that code either.
    """

    exit_code = 77


class ProducerFailedError(KafkaOperationError):
    """A transactional producer hit a fatal error: that instance can never be used again.

    ``fenced``: another producer with the same transactional id took over (a second replica
    under the same instance id, or a zombie's successor); this one must stop. Otherwise (a
    transaction the coordinator lost track of when its broker died, say) a new producer under
    the same id takes over and the batch is read again.
    """

    def __init__(self, message: str, cause: object | None = None, *, fenced: bool) -> None:
        super().__init__(message, cause)
        self.fenced = fenced


class DeliveryError(KafkaOperationError):
    """A produced message was not acknowledged by the broker."""


class QueueFullError(KafkaOperationError):
    """The producer's local queue stayed full through every bounded retry."""


class BrokerError(RidestreamError):
    """The local Kafka broker could not be fetched, formatted, started or stopped."""
