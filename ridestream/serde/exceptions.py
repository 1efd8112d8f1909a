"""Bytes that cannot become a record, and a registry that cannot be asked."""

from __future__ import annotations

from ridestream.exceptions import RidestreamError


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


class SchemaRegistryUnavailableError(RidestreamError):
    """The Schema Registry could not be asked (outage, auth): retry, do not dead-letter."""
