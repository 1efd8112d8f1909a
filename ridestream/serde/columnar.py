"""The field plan both columnar codecs follow: which fields of a record are columnar, how."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from ridestream.contracts.exceptions import SchemaError
from ridestream.contracts.schemas import SchemaVersion

INTS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
SUPPORTED = {"boolean", "int", "long", "float", "double", "string", "enum"}

Piece = tuple[
    np.ndarray, np.ndarray
]  # (bytes used per row, zero-padded (rows, width) uint8 matrix)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # boolean | int | long | float | double | string | enum | whole
    logical: str | None
    null_branch: int | None  # position of "null" in a ["null", T] union; None = required
    symbols: tuple[str, ...] = ()
    # kind "whole" (arrays, records, maps, other unions: encoded value by value, see _whole)
    writer: Any = None  # the field's parsed schema
    encoded: dict[Any, bytes] = dataclasses.field(default_factory=dict, compare=False)


def plan(schema: SchemaVersion, *, whole: bool = False) -> list[Field]:
    """The fields of a flat record; with ``whole``, any other field is written value by value."""
    named: dict[str, Any] = {}
    fastavro.parse_schema(schema.raw, named_schemas=named)
    fields = []
    for field in schema.raw["fields"]:
        if whole and not flat(field["type"]):
            writer = fastavro.parse_schema(field["type"], named_schemas=named)
            fields.append(Field(field["name"], "whole", None, None, writer=writer))
            continue
        avro, null_branch = field["type"], None
        if isinstance(avro, list):
            others = [b for b in avro if b != "null"]
            if len(avro) != 2 or len(others) != 1:
                raise SchemaError(
                    f"{schema.name}.{field['name']}: only [null, T] unions are columnar"
                )
            null_branch, avro = avro.index("null"), others[0]
        spec = avro if isinstance(avro, dict) else {"type": avro}
        if spec["type"] not in SUPPORTED:
            raise SchemaError(f"{schema.name}.{field['name']}: {spec['type']} is not columnar")
        fields.append(
            Field(
                field["name"],
                spec["type"],
                spec.get("logicalType"),
                null_branch,
                tuple(spec.get("symbols", ())),
            )
        )
    return fields


def flat(avro: Any) -> bool:
    """Whether a field type is columnar: a supported type, or [null, one]."""
    if isinstance(avro, list):
        others = [b for b in avro if b != "null"]
        return len(avro) == 2 and len(others) == 1 and flat(others[0])
    spec = avro if isinstance(avro, dict) else {"type": avro}
    return spec["type"] in SUPPORTED
