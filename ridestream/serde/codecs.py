"""Avro serde for the contracts in ``schemas/``: bytes in, dicts out, and back.

Default framing is the Avro specification's single-object encoding: ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema, then the body. A reader finds the
writer schema by fingerprint among every version in ``schemas/`` and resolves it to its own reader
schema, so producers and consumers upgrade independently. With a Schema Registry configured, the
Confluent wire format (magic byte, schema id) through ``confluent_kafka.schema_registry`` is used
instead.

Decoding failures raise :class:`ridestream.serde.exceptions.DecodeError` subclasses whose ``kind`` is the
reason a dead letter carries.
"""

from __future__ import annotations

import io
from typing import Any, Protocol, cast

import fastavro

from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import SchemaStore, SchemaVersion, load_store
from ridestream.exceptions import ConfigurationError
from ridestream.serde.exceptions import (
    CorruptPayloadError,
    DecodeError,
    NotSingleObjectError,
    SchemaRegistryUnavailableError,
    UnknownSchemaError,
    WrongRecordTypeError,
)
from ridestream.settings import Settings

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8

Record = dict[str, Any]


class Serde(Protocol):
    """Encodes and decodes records of one type."""

    name: str

    def encode(self, record: Record, topic: str = "") -> bytes:
        """Record → framed Avro bytes."""
        ...

    def decode(self, data: bytes, topic: str = "") -> Record:
        """Framed Avro bytes → record, resolved to this serde's reader schema."""
        ...


class SingleObjectSerde:
    """Avro single-object encoding with writer-schema lookup by fingerprint."""

    def __init__(self, name: str, store: SchemaStore | None = None, version: int | None = None):
        self.store = store or load_store()
        self.name = name
        self.schema: SchemaVersion = (
            self.store.latest(name) if version is None else self.store.get(name, version)
        )
        self.header = MARKER + self.schema.fingerprint

    def encode(self, record: Record, topic: str = "") -> bytes:
        """Write ``record`` with this serde's schema; a value that does not fit raises InvalidEventError."""
        buffer = io.BytesIO()
        buffer.write(self.header)
        try:
            fastavro.schemaless_writer(
                buffer, self.schema.parsed, record, strict_allow_default=True
            )
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise InvalidEventError(_field_of(record, self.schema), str(exc)) from exc
        return buffer.getvalue()

    def writer_schema(self, data: bytes) -> SchemaVersion:
        """The schema version that wrote ``data``, from its fingerprint."""
        if len(data) < HEADER_SIZE or data[:2] != MARKER:
            raise NotSingleObjectError(
                f"not an Avro single-object payload (starts {data[:4].hex() or 'empty'})"
            )
        writer = self.store.by_fingerprint(data[2:HEADER_SIZE])
        if writer is None:
            raise UnknownSchemaError(
                f"writer fingerprint {data[2:HEADER_SIZE].hex()} matches no schema version"
            )
        if writer.name != self.name:
            raise WrongRecordTypeError(f"expected {self.name}, got {writer.name} v{writer.version}")
        return writer

    def decode(self, data: bytes, topic: str = "") -> Record:
        """Decode ``data`` written by any known version of this record type."""
        writer = self.writer_schema(data)
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_SIZE)
        try:
            record = cast(
                Record, fastavro.schemaless_reader(buffer, writer.parsed, self.schema.parsed)
            )
        except DecodeError:
            raise
        except Exception as exc:  # fastavro raises whatever the bytes provoke: all mean corrupt
            raise CorruptPayloadError(
                f"{self.name} body does not decode with v{writer.version}: {exc!r}"
            ) from exc
        if buffer.tell() != len(data):
            raise CorruptPayloadError(
                f"{len(data) - buffer.tell()} trailing bytes after a {self.name} v{writer.version}"
            )
        return record


class ConfluentSerde:
    """The Confluent wire format (magic byte + schema id) through a Schema Registry."""

    def __init__(self, name: str, registry: Any, store: SchemaStore | None = None):
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

        self.store = store or load_store()
        self.name = name
        self.registry = registry
        self.schema = self.store.latest(name)
        schema_str = self.schema.path.read_text()
        self._serializer = AvroSerializer(
            registry, schema_str, conf={"auto.register.schemas": True}
        )
        self._deserializer = AvroDeserializer(registry, schema_str)

    @staticmethod
    def _context(topic: str) -> Any:
        from confluent_kafka.serialization import MessageField, SerializationContext

        return SerializationContext(topic, MessageField.VALUE)

    def encode(self, record: Record, topic: str = "") -> bytes:
        """Register (once) and write ``record`` under the topic's value subject."""
        from confluent_kafka.serialization import SerializationError

        try:
            data: bytes = self._serializer(record, self._context(topic))
        except (SerializationError, ValueError, TypeError) as exc:
            raise InvalidEventError(_field_of(record, self.schema), str(exc)) from exc
        return data

    def decode(self, data: bytes, topic: str = "") -> Record:
        """Fetch the writer schema by id (cached) and resolve it to this reader schema."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import SerializationError

        if not data or data[0] != 0:
            raise NotSingleObjectError(f"not Confluent-framed (starts {data[:4].hex() or 'empty'})")
        try:
            record: Record = self._deserializer(data, self._context(topic))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                schema_id = int.from_bytes(data[1:5], "big")
                raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
            # An outage is not the message's fault: never dead-letter good data for it.
            raise SchemaRegistryUnavailableError("schema registry request failed", exc) from exc
        except SerializationError as exc:
            raise CorruptPayloadError(str(exc)) from exc
        except Exception as exc:  # whatever the bytes provoke in the Avro reader
            raise CorruptPayloadError(repr(exc)) from exc
        return record


def _field_of(record: Record, schema: SchemaVersion) -> str:
    """The first field fastavro's validator rejects (only called once encoding has failed)."""
    from fastavro.validation import ValidationError as AvroValidationError
    from fastavro.validation import validate

    try:
        validate(record, schema.parsed, raise_errors=True)
    except AvroValidationError as exc:
        field: str = exc.errors[0].field or schema.name
        return field.rsplit(".", 1)[-1]
    except Exception:  # not even a mapping; the record as a whole is at fault
        return schema.name
    return schema.name


def make_serde(name: str, settings: Settings, store: SchemaStore | None = None) -> Serde:
    """The serde the settings ask for: Confluent framing with a registry URL, else single-object."""
    store = store or load_store(settings.schemas_dir)
    if settings.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf = {"url": settings.schema_registry_url, **settings.schema_registry_config}
        try:
            registry = SchemaRegistryClient.new_client(conf)
        except Exception as exc:
            raise ConfigurationError(f"schema registry client: {exc}") from exc
        return ConfluentSerde(name, registry, store)
    return SingleObjectSerde(name, store)
