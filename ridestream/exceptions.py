"""The project's exception tree: one root, one-line leaves that keep the underlying cause."""

from __future__ import annotations


class RidestreamError(Exception):
    """Root of every error ridestream raises on purpose."""


class ConfigurationError(RidestreamError):
    """A setting is missing, malformed or points at something unusable."""


class SchemaError(RidestreamError):
    """An Avro contract in schemas/ is malformed or incompatible with its predecessor."""


class ValidationError(RidestreamError):
    """An event's values break its contract; ``field`` names the first offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DecodeError(RidestreamError):
    """Bytes from a topic could not be turned into a record; ``kind`` is a stable reason code."""

    kind = "decode_error"


class NotSingleObjectError(DecodeError):
    """The payload lacks the Avro single-object marker (not Avro, or another framing)."""

    kind = "bad_framing"


class UnknownSchemaError(DecodeError):
    """The writer schema's fingerprint matches no version in schemas/."""

    kind = "unknown_schema"


class WrongRecordTypeError(DecodeError):
    """The payload is a valid record of another type than the reader expects."""

    kind = "wrong_record_type"


class CorruptPayloadError(DecodeError):
    """The body does not decode with its writer schema (truncated or garbage)."""

    kind = "corrupt_payload"


class KafkaError(RidestreamError):
    """A Kafka operation failed; ``cause`` keeps librdkafka's KafkaError when there is one."""

    def __init__(self, message: str, cause: object | None = None) -> None:
        super().__init__(message if cause is None else f"{message}: {cause}")
        self.cause = cause


class SchemaRegistryUnavailableError(KafkaError):
    """The Schema Registry could not be asked (outage, auth): retry, do not dead-letter."""


class DeliveryError(KafkaError):
    """A produced message was not acknowledged by the broker."""


class QueueFullError(KafkaError):
    """The producer's local queue stayed full through every bounded retry."""


class BrokerError(RidestreamError):
    """The local Kafka broker could not be fetched, formatted, started or stopped."""
