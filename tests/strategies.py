"""Hypothesis strategies derived from Avro schemas, so every record type gets round-trip tests
without a hand-written generator to drift from its ``.avsc``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Millisecond-precision instants inside what Python's datetime can hold.
_MIN_DT = datetime(1971, 1, 1)
_MAX_DT = datetime(2200, 1, 1)


def _millis(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _logical(schema: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    logical = schema.get("logicalType")
    if logical == "uuid":
        return st.uuids()
    if logical == "timestamp-millis":
        return st.datetimes(_MIN_DT, _MAX_DT, timezones=st.just(UTC)).map(_millis)
    if logical == "local-timestamp-millis":
        return st.datetimes(_MIN_DT, _MAX_DT).map(_millis)
    return None


def from_avro(schema: Any) -> st.SearchStrategy[Any]:
    """Values valid for an Avro schema (self-contained: named types defined inline)."""
    if isinstance(schema, list):
        return st.one_of([from_avro(branch) for branch in schema])
    if isinstance(schema, str):
        schema = {"type": schema}
    kind = schema["type"]
    if isinstance(kind, (dict, list)):
        return from_avro(kind)
    logical = _logical(schema)
    if logical is not None:
        return logical
    primitives: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=40),
        "bytes": st.binary(max_size=40),
    }
    if kind in primitives:
        return primitives[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(from_avro(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), from_avro(schema["values"]), max_size=4)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: from_avro(f["type"]) for f in schema["fields"]})
    raise NotImplementedError(f"no strategy for Avro type {kind!r}")
